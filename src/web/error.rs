//! API errors and their JSON form: `{"error": "<code>", "message": "..."}`.
//!
//! Owns the mapping from region and session-layer errors to HTTP
//! statuses, so every handler of both listeners answers a given failure the
//! same way. Unknown, forged, malformed, stale
//! and expired ids all map to the same 404 body.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::HeaderValue;
use hyper::{Response, StatusCode};

use crate::region::RegionError;
use crate::session::SessionError;

/// An error answered to the client.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Human-readable message with the value and the limit.
    pub message: String,
    /// Extra header (Allow, Retry-After).
    pub header: Option<(&'static str, String)>,
}

impl ApiError {
    /// Builds an error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), header: None }
    }
    /// The one "session not found" answer.
    pub fn session_not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "session_not_found", "no such session (unknown, expired or invalid id)")
    }
    /// 400 with a code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }
    /// Adds a header.
    pub fn with_header(mut self, name: &'static str, value: String) -> ApiError {
        self.header = Some((name, value));
        self
    }

    /// The JSON response.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let body = serde_json::json!({"error": self.code, "message": self.message}).to_string();
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = self.status;
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some((name, value)) = self.header
            && let Ok(v) = HeaderValue::from_str(&value)
        {
            r.headers_mut().insert(name, v);
        }
        r
    }
}

impl From<RegionError> for ApiError {
    fn from(e: RegionError) -> ApiError {
        use StatusCode as S;
        match e {
            RegionError::NotFound => ApiError::session_not_found(),
            RegionError::Full { .. } => ApiError::new(S::SERVICE_UNAVAILABLE, "max_sessions", e.to_string())
                .with_header("retry-after", "5".into()),
            RegionError::TooManyValues { .. } => ApiError::new(S::CONFLICT, "too_many_values", e.to_string()),
            RegionError::EmptyName | RegionError::NameTooLong { .. } => {
                ApiError::bad_request("invalid_name", e.to_string())
            }
            RegionError::ValueTooLarge { .. } => ApiError::new(S::PAYLOAD_TOO_LARGE, "value_too_large", e.to_string()),
            RegionError::VersionMismatch { .. } => ApiError::new(
                S::PRECONDITION_FAILED,
                "precondition_failed",
                format!("{e}: read the session again (its ETag) and retry the change"),
            ),
            RegionError::PrincipalTooLong { .. } => ApiError::bad_request("bad_principal", e.to_string()),
            RegionError::LockTimeout { .. } => {
                static LIMIT: crate::logging::RateLimit = crate::logging::RateLimit::new(1000);
                if let Some(n) = LIMIT.allow(crate::clock::now_ms()) {
                    log::warn!(
                        "{e}; answering 503 ({n} more lock timeout(s) in this process not logged since the last line)"
                    );
                }
                ApiError::new(S::SERVICE_UNAVAILABLE, "lock_timeout", e.to_string())
                    .with_header("retry-after", "1".into())
            }
            RegionError::LockBroken { .. } | RegionError::Corrupt { .. } | RegionError::Io { .. } => {
                log::error!("{e}");
                ApiError::new(S::INTERNAL_SERVER_ERROR, "internal", "internal error; see the server log")
            }
        }
    }
}

impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> ApiError {
        match e {
            SessionError::Unavailable(msg) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", msg)
                .with_header("retry-after", "1".into()),
            SessionError::Moved { owner: 0 } => ApiError::session_not_found(),
            SessionError::Moved { owner } => ApiError::new(
                StatusCode::CONFLICT,
                "session_moved",
                format!(
                    "node {owner} took this session over; this node's change was not applied: send the request again \
                     (the front proxy routes it to the owner)"
                ),
            ),
            SessionError::Raced => {
                ApiError::new(StatusCode::CONFLICT, "session_moved", SessionError::Raced.to_string())
            }
            SessionError::Invalid { code, message } => ApiError::bad_request(code, message),
            SessionError::TooManySessions { .. } => {
                ApiError::new(StatusCode::CONFLICT, "too_many_sessions", e.to_string())
            }
            SessionError::Region(e) => ApiError::from(e),
        }
    }
}
