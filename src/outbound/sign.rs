//! Standard Webhooks signing, the one implementation for the lifecycle
//! webhook and the gateway's session-manager calls.
//!
//! Each request carries `webhook-id` (`msg_` + 22 base64url characters: a
//! random per-process half and a sequence half, so ids never repeat within
//! a process and collide across processes only by chance),
//! `webhook-timestamp` (unix seconds of the attempt) and
//! `webhook-signature` (`v1,` + base64 of HMAC-SHA256 over
//! `"{id}.{timestamp}.{body}"`). A retry keeps its id and is signed anew.
//! The secret-file format is the webhook's ([`crate::webhook::parse_secret`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue, USER_AGENT};
use hyper::{Method, Request, Uri};

/// Signs one delivery: `"v1,"` + standard base64 of
/// HMAC-SHA256(`secret`, `"{msg_id}.{timestamp}.{body}"`).
pub fn sign(secret: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    let mac = crate::crypto::hmac_sha256(secret, &[msg_id.as_bytes(), b".", ts.as_bytes(), b".", body]);
    format!("v1,{}", STANDARD.encode(mac))
}

/// Unix seconds now (0 if the clock is before 1970).
pub fn unix_seconds() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Message ids of one process: `msg_` + base64url(random prefix ‖ sequence).
#[derive(Debug)]
pub struct MessageIds {
    /// Random per-process half of every id.
    prefix: [u8; 8],
    /// Sequence half of the next id.
    next: AtomicU64,
}

impl MessageIds {
    /// A generator with a fresh random prefix.
    pub fn new() -> Result<MessageIds, getrandom::Error> {
        let mut prefix = [0u8; 8];
        getrandom::getrandom(&mut prefix)?;
        Ok(MessageIds { prefix, next: AtomicU64::new(0) })
    }

    /// A fresh message id.
    pub fn next_id(&self) -> String {
        let mut raw = [0u8; 16];
        raw[..8].copy_from_slice(&self.prefix);
        raw[8..].copy_from_slice(&self.next.fetch_add(1, Ordering::Relaxed).to_be_bytes());
        format!("msg_{}", URL_SAFE_NO_PAD.encode(raw))
    }
}

/// A signed JSON `POST` of `body` to `uri` as message `msg_id`, stamped and
/// signed now (call once per attempt).
pub fn signed_post(
    secret: &[u8],
    uri: Uri,
    user_agent: HeaderValue,
    msg_id: &str,
    body: &Bytes,
) -> Result<Request<Full<Bytes>>, hyper::http::Error> {
    let timestamp = unix_seconds();
    Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .header(USER_AGENT, user_agent)
        .header("webhook-id", msg_id)
        .header("webhook-timestamp", timestamp)
        .header("webhook-signature", sign(secret, msg_id, timestamp, body))
        .body(Full::new(body.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_msg_and_22_base64url_characters_and_never_repeat() {
        let ids = MessageIds::new().unwrap();
        let (a, b) = (ids.next_id(), ids.next_id());
        assert!(a.starts_with("msg_") && a.len() == 4 + 22, "{a}");
        assert_ne!(a, b);
    }
}
