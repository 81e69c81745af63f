//! The session-manager hook: the application's say on gateway sessions,
//! as Glacier2's `SessionManager` has.
//!
//! - `create` is called at login, before a session exists, and may refuse
//!   with a reason (Glacier2's `CannotCreateSessionException`) or grant
//!   initial filters and attributes. The managers are tried in turn; none
//!   answering in time, or only with garbage, is "unavailable" and no
//!   session is created (fail closed).
//! - `destroy` notices are sent after the session is gone, from the
//!   durable outbox ([`super::outbox`]), until a manager answers 2xx, 404
//!   or 410.
//!
//! Every call is a POST signed the Standard Webhooks way with the gateway
//! secret, over the outbound module's one client and signer
//! ([`crate::outbound`]). The client is built per process, after `fork`,
//! on that process's runtime. It never logs a body, a secret, a URL's
//! credentials or query, or a full session id.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Uri;
use hyper::header::HeaderValue;
use serde_json::Value;

use crate::outbound::sign::{MessageIds, signed_post};
use crate::outbound::url::{Shown, redact as redact_url};
use crate::outbound::{ClientOptions, HttpClient};

/// Largest manager answer read (a `create` answer carries filters and
/// attributes; anything bigger is garbage).
pub const MAX_ANSWER: usize = 256 * 1024;

/// What a manager decided at login.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Create the session.
    Allow {
        /// Filters to start from instead of the configured ones, as JSON
        /// (`{"categories":[…],"adapter_ids":[…],"identities":[…]}`).
        filters: Option<Value>,
        /// Attributes to store in the session (name → string).
        attributes: serde_json::Map<String, Value>,
    },
    /// Refuse, with the manager's reason (shown to the client).
    Refuse {
        /// Why.
        reason: String,
    },
}

/// Why no manager decided.
#[derive(Debug, thiserror::Error)]
#[error("no session manager answered: {0}")]
pub struct Unavailable(pub String);

/// Why no manager took a destroy notice: each manager's reason, joined.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotDelivered(pub String);

/// Why one call to one manager failed (URLs shown without credentials or query).
#[derive(Debug, thiserror::Error)]
enum CallError {
    /// The OS random source failed at start: no message ids to sign with.
    #[error("getrandom failed: no message ids")]
    NoMessageIds,
    /// The request could not be built from the URL.
    #[error("bad request to {url}: {why}")]
    BadRequest {
        /// The manager.
        url: String,
        /// Why.
        why: String,
    },
    /// Connecting or the exchange failed.
    #[error("{url}: {source}")]
    Send {
        /// The manager.
        url: String,
        /// The outbound error.
        source: crate::outbound::OutboundError,
    },
    /// The answer could not be read.
    #[error("{url}: reading the answer: {why}")]
    Read {
        /// The manager.
        url: String,
        /// Why.
        why: String,
    },
    /// No answer in time.
    #[error("{url}: no answer within {timeout:?}")]
    Timeout {
        /// The manager.
        url: String,
        /// The per-call limit.
        timeout: Duration,
    },
}

/// The session-manager client of one process.
pub struct ManagerClient {
    /// Manager URLs, tried in order.
    urls: Vec<String>,
    /// Per-attempt timeout.
    timeout: Duration,
    /// Signing key.
    secret: Vec<u8>,
    /// Pooled client.
    client: HttpClient<Full<Bytes>>,
    /// Message ids (each call is its own message).
    ids: Option<MessageIds>,
}

impl ManagerClient {
    /// A client for `urls` (empty: no manager). Call inside the process's runtime.
    pub fn new(urls: Vec<String>, timeout: Duration, secret: Vec<u8>) -> ManagerClient {
        let opts = ClientOptions { pool_idle_timeout: Duration::from_secs(30), ..ClientOptions::default() };
        let ids = match MessageIds::new() {
            Ok(ids) => Some(ids),
            Err(e) => {
                log::error!("gateway: getrandom failed ({e}); session-manager calls will fail");
                None
            }
        };
        ManagerClient { urls, timeout, secret, client: HttpClient::new(opts, "gateway: session managers"), ids }
    }

    /// Whether any manager is configured.
    pub fn enabled(&self) -> bool {
        !self.urls.is_empty()
    }

    /// One signed POST; `Ok((status, body))` or why it failed.
    async fn post(&self, url: &str, body: &Bytes) -> Result<(u16, Bytes), CallError> {
        let shown = || redact(url);
        let Some(ids) = &self.ids else { return Err(CallError::NoMessageIds) };
        let uri: Uri = url.parse().map_err(|e| CallError::BadRequest { url: shown(), why: format!("{e}") })?;
        let agent = HeaderValue::from_static(concat!("sessiond/", env!("CARGO_PKG_VERSION"), " (gateway)"));
        let req = signed_post(&self.secret, uri, agent, &ids.next_id(), body)
            .map_err(|e| CallError::BadRequest { url: shown(), why: e.to_string() })?;
        let fut = async {
            let resp = self.client.request(req).await.map_err(|source| CallError::Send { url: shown(), source })?;
            let status = resp.status().as_u16();
            let body = Limited::new(resp.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| CallError::Read { url: shown(), why: e.to_string() })?
                .to_bytes();
            Ok((status, body))
        };
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(CallError::Timeout { url: shown(), timeout: self.timeout }),
        }
    }

    /// Asks the managers, in turn, whether a session may be created.
    pub async fn create(&self, request: &Value) -> Result<Decision, Unavailable> {
        let body = Bytes::from(request.to_string());
        let mut why = Vec::new();
        for url in &self.urls {
            match self.post(url, &body).await {
                Ok((status, answer)) if (200..300).contains(&status) => match parse_decision(&answer) {
                    Ok(d) => return Ok(d),
                    Err(e) => why.push(format!("{}: {e}", redact(url))),
                },
                Ok((status, _)) => why.push(format!("{}: status {status}", redact(url))),
                Err(e) => why.push(e.to_string()),
            }
        }
        Err(Unavailable(why.join("; ")))
    }

    /// Sends one destroy notice; `Ok` when a manager took it (2xx) or
    /// does not know the session (404, 410), `Err` with the reasons otherwise.
    pub async fn destroy(&self, body: Bytes) -> Result<(), NotDelivered> {
        let mut why = Vec::new();
        for url in &self.urls {
            match self.post(url, &body).await {
                Ok((s, _)) if (200..300).contains(&s) || s == 404 || s == 410 => return Ok(()),
                Ok((s, _)) => why.push(format!("{}: status {s}", redact(url))),
                Err(e) => why.push(e.to_string()),
            }
        }
        Err(NotDelivered(why.join("; ")))
    }
}

/// A URL for logs: no user info, no query ([`Shown::PathOnly`]).
pub fn redact(url: &str) -> String {
    redact_url(url, Shown::PathOnly)
}

/// Parses a `create` answer: `{"allow": true, "filters"?: {…}, "attributes"?: {…}}`
/// or `{"allow": false, "reason": "…"}`. Anything else is garbage.
pub fn parse_decision(answer: &[u8]) -> Result<Decision, String> {
    let v: Value = serde_json::from_slice(answer).map_err(|e| format!("answer is not JSON: {e}"))?;
    let o = v.as_object().ok_or("answer is not a JSON object")?;
    match o.get("allow") {
        Some(Value::Bool(true)) => {
            let filters = match o.get("filters") {
                None | Some(Value::Null) => None,
                Some(f @ Value::Object(_)) => Some(f.clone()),
                Some(_) => return Err("\"filters\" must be an object".into()),
            };
            let attributes = match o.get("attributes") {
                None | Some(Value::Null) => serde_json::Map::new(),
                Some(Value::Object(a)) if a.values().all(Value::is_string) => a.clone(),
                Some(_) => return Err("\"attributes\" must be an object of strings".into()),
            };
            Ok(Decision::Allow { filters, attributes })
        }
        Some(Value::Bool(false)) => {
            let reason = o.get("reason").and_then(Value::as_str).unwrap_or("refused by the session manager");
            // A reason reaches the client: keep it short and printable.
            let reason: String = reason.chars().filter(|c| !c.is_control()).take(512).collect();
            Ok(Decision::Refuse { reason })
        }
        _ => Err("answer has no boolean \"allow\"".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_parse_and_garbage_is_refused() {
        assert_eq!(
            parse_decision(br#"{"allow":false,"reason":"account locked"}"#).unwrap(),
            Decision::Refuse { reason: "account locked".into() }
        );
        let d =
            parse_decision(br#"{"allow":true,"filters":{"categories":["a"]},"attributes":{"role":"admin"}}"#).unwrap();
        assert!(matches!(d, Decision::Allow { filters: Some(_), ref attributes } if attributes["role"] == "admin"));
        for bad in [&b"nope"[..], b"[]", b"{}", br#"{"allow":"yes"}"#, br#"{"allow":true,"attributes":{"n":1}}"#] {
            assert!(parse_decision(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(redact("http://u:p@sm.example:9000/sessions?token=x"), "http://sm.example:9000/sessions");
    }
}
