//! What the two HTTP front ends share (the private session API in
//! [`crate::http`] and the gateway's public listener in
//! [`crate::gateway`]): finding session ids in a request, the session
//! cookie, and JSON errors with one status per region error. It sits
//! below both, so neither imports the other's internals.
//!
//! | module | concept |
//! | --- | --- |
//! | [`lookup`] | finding ids in path parameters, headers and cookies |
//! | [`error`] | JSON errors and the region- and session-error → status mapping |
//! | [`framing`] | request framing hyper leaves to sessiond (transfer codings, malformed bodies), on both listeners |

pub mod error;
pub mod framing;
pub mod lookup;

pub use error::ApiError;

use crate::contexts::Context;
use crate::region::SessionId;

/// The `Set-Cookie` value for `id` in `ctx` (`remove` expires it).
pub fn set_cookie(ctx: &Context, id: Option<&SessionId>) -> String {
    let c = &ctx.cfg;
    let value = id.map(|i| i.to_string()).unwrap_or_default();
    let mut b = cookie::Cookie::build((c.cookie_name.clone(), value))
        .path(c.cookie_path.clone())
        .http_only(true)
        .secure(c.cookie_secure)
        .same_site(c.cookie_same_site);
    if id.is_none() {
        b = b.max_age(cookie::time::Duration::ZERO);
    }
    b.build().to_string()
}
