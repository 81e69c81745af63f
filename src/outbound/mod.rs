//! Every outbound HTTP call of sessiond goes through this module, as every
//! outbound connection of pingora goes through its `connectors`.
//!
//! | file | what it owns |
//! | --- | --- |
//! | [`client`] | the one hyper-util/hyper-rustls client builder, and the one policy when the system's TLS roots are missing |
//! | [`sign`] | Standard Webhooks signing: message ids, the signature, the signed POST |
//! | [`retry`] | the one back-off policy (doubling, capped, optional jitter) |
//! | [`url`] | the one URL check and the one URL redaction for logs and messages |
//!
//! Its users are the lifecycle webhook ([`crate::webhook`]), the gateway's
//! session-manager client ([`crate::gateway::session_manager`]) and the
//! gateway's upstream client ([`crate::gateway::proxy`]). The log rate
//! limiter they share is [`crate::logging::RateLimit`].
//!
//! It sits just above the leaves: it imports only [`crate::crypto`], so
//! configuration, the session layer and the front ends can all use it. It
//! must never build a client before `fork` (a client belongs to one
//! process's runtime), never log a secret, a body or a URL's credentials
//! or query, and never start a thread or a runtime.

pub mod client;
pub mod retry;
pub mod sign;
pub mod url;

pub use client::{ClientOptions, HttpClient, OutboundError};

/// `e` and its sources, joined by ": " (hyper's errors keep the useful part
/// in their sources).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        next = cause.source();
    }
    s
}
