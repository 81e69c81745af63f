//! The session gateway: sessiond in front of an application, as ZeroC
//! Glacier2's router is. A second, public listener logs people in
//! (password verifier, session-manager hook), keeps their session in the
//! gateway context's region, and forwards the requests each session's
//! filters allow to the configured upstreams.
//!
//! | module | concept |
//! | --- | --- |
//! | [`path`] | normalising a request path, the only form filters ever see |
//! | [`filters`] | Glacier2's per-session filters: categories, adapter ids, identities |
//! | [`verifier`] | the htpasswd password verifier (bcrypt, argon2id) |
//! | [`throttle`] | login failure throttling per client address and per user |

pub mod filters;
pub mod path;
pub mod throttle;
pub mod verifier;
