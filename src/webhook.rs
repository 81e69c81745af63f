//! Lifecycle-event webhooks: delivers batches of session events to one
//! receiver URL, signed the Standard Webhooks way.
//!
//! This module owns the webhook subscriber's delivery engine: a bounded
//! backlog of batches, one delivery task per process that POSTs them in
//! order, retries with jittered exponential back-off, and the counters behind
//! [`WebhookStats`]. It also owns the secret-file format ([`parse_secret`])
//! and the one struct of webhook settings ([`WebhookConfig`]). The client,
//! the signature, the back-off and the URL rules are the outbound module's
//! ([`crate::outbound`]), shared with the gateway.
//!
//! It must never slow a request: the only call made from the event dispatcher
//! is [`Webhook::offer`], which neither blocks nor awaits, and drops the batch
//! (counting it) when the backlog is full. It must never create a thread or a
//! runtime (the caller's tokio runtime runs the delivery task), and never log a
//! secret, a request body or a URL's query string.
//!
//! # Wire format
//! Each batch is one `POST` of `{"events":[...]}` with
//! `content-type: application/json` and the three Standard Webhooks headers
//! ([`crate::outbound::sign`]): `webhook-id` (`msg_` + 22 base64url
//! characters, the same on every retry of a batch), `webhook-timestamp`
//! (unix seconds of the attempt) and `webhook-signature` (`v1,` + base64 of
//! HMAC-SHA256 over `"{id}.{timestamp}.{body}"`, computed per attempt). A
//! 2xx answer delivers the batch; `410 Gone` drops it at once; anything
//! else, a connection error or a timeout is retried until `max_attempts`.
//!
//! Host names are resolved by hyper-util's resolver, which runs on the
//! caller's runtime's blocking pool; IP-literal URLs need no resolution.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::HeaderValue;
use hyper::{StatusCode, Uri};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::logging::RateLimit;
use crate::outbound::retry::{Backoff, Jitter};
use crate::outbound::sign::MessageIds;
pub use crate::outbound::sign::sign;
use crate::outbound::url::{Rules, Shown, UrlError, redact};
use crate::outbound::{ClientOptions, HttpClient, OutboundError};

/// Prefix of a secret file in the Standard Webhooks form.
const SECRET_PREFIX: &[u8] = b"whsec_";

/// Delay before the first retry of a batch; doubled after each further failed
/// attempt up to [`MAX_BACKOFF`]. Tests use a short one so they run quickly.
#[cfg(not(test))]
const INITIAL_BACKOFF: Duration = Duration::from_millis(500);
/// Delay before the first retry of a batch (short in tests).
#[cfg(test)]
const INITIAL_BACKOFF: Duration = Duration::from_millis(5);

/// Longest delay between two attempts at one batch.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// At most one warning line of a kind per this interval, in ms; the rest are counted.
const WARN_INTERVAL_MS: u64 = 10_000;

/// How much of a response body is read (and thrown away) so the connection
/// can go back to the pool; a longer body just closes the connection.
const MAX_RESPONSE_BODY: usize = 64 * 1024;

/// How long an idle keep-alive connection to the receiver is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a webhook could not be configured or its secret read.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The URL is not an absolute http:// or https:// URL with a host, or
    /// carries credentials.
    #[error("webhook url {url:?}: {why}; give an absolute http:// or https:// URL such as https://example.com/hooks")]
    BadUrl {
        /// The URL as configured (user:password@, if any, removed).
        url: String,
        /// What is wrong with it.
        why: UrlError,
    },
    /// The secret is empty (or is `whsec_` with nothing after it).
    #[error("webhook secret is empty; put the key, raw or as whsec_<base64>, in the secret file")]
    EmptySecret,
    /// The secret starts with `whsec_` but the rest is not standard base64.
    #[error(
        "webhook secret starts with \"whsec_\" but the rest is not standard base64; \
         check the secret file (the value is not shown)"
    )]
    BadSecretBase64,
    /// A count or duration is zero or too large.
    #[error("webhook {field} is {value}; it must be {want}")]
    OutOfRange {
        /// The configuration field.
        field: &'static str,
        /// The value given.
        value: String,
        /// The accepted range, in words.
        want: String,
    },
    /// The origin cannot be sent in an HTTP header (control characters or non-ASCII).
    #[error("webhook origin {origin:?} cannot go in an HTTP header; use printable ASCII")]
    BadOrigin {
        /// The origin as configured.
        origin: String,
    },
    /// The operating system's random source failed (message ids and jitter need it).
    #[error("getrandom failed while starting the webhook: {0}")]
    Random(getrandom::Error),
    /// [`Webhook::start`] was called outside a tokio runtime.
    #[error("Webhook::start must be called inside a tokio runtime (after fork, on the process's runtime)")]
    NoRuntime,
    /// `events.url` is set but `events.secret_file` is not.
    #[error("events.url is set but events.secret_file is not; point it at a file holding the signing secret")]
    NoSecretFile,
    /// The secret file could not be read, or its content is not a secret.
    #[error("{0}")]
    SecretFile(String),
}

/// The lifecycle webhook's settings: what it delivers to, how hard it
/// tries, and what the subscriber sends (the one struct for them; the
/// configuration's `[events]` table is read into it by
/// [`crate::session::lifecycle_webhook::webhook_settings`]).
#[derive(Clone)]
pub struct WebhookConfig {
    /// The receiver: an absolute `http://` or `https://` URL.
    pub url: String,
    /// Raw HMAC key bytes (see [`parse_secret`] for the file forms).
    pub secret: Vec<u8>,
    /// Limit for one attempt: connect, TLS, request and response head (reading
    /// the response body afterwards has its own limit of the same length).
    pub timeout: Duration,
    /// Attempts per batch before it is dropped (at least 1).
    pub max_attempts: u32,
    /// Batches that may wait behind the one being delivered; beyond it `offer` drops.
    pub backlog: usize,
    /// Who is sending, e.g. "sessiond worker 3": in the `user-agent` header and log lines.
    pub origin: String,
    /// Events per POST (the subscriber's batching).
    pub max_batch: usize,
    /// Whether `touched` events are sent.
    pub include_touched: bool,
    /// Node id, carried in each event.
    pub node_id: u32,
}

impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &log_url_of(&self.url))
            .field("secret", &format_args!("<{} bytes, not shown>", self.secret.len()))
            .field("timeout", &self.timeout)
            .field("max_attempts", &self.max_attempts)
            .field("backlog", &self.backlog)
            .field("origin", &self.origin)
            .field("max_batch", &self.max_batch)
            .field("include_touched", &self.include_touched)
            .field("node_id", &self.node_id)
            .finish()
    }
}
/// A copy of a webhook's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WebhookStats {
    /// Batches the receiver answered with 2xx.
    pub delivered_batches: u64,
    /// Events in those batches.
    pub delivered_events: u64,
    /// Attempts that got no 2xx: other statuses (410 included), connection errors, timeouts.
    pub failed_attempts: u64,
    /// Batches given up: refused by a full backlog, out of attempts, or answered 410.
    pub dropped_batches: u64,
    /// Events in those batches.
    pub dropped_events: u64,
    /// Batches queued now behind the one being delivered.
    pub backlog: u64,
}

/// Counters shared by the handles and the delivery task.
#[derive(Debug, Default)]
struct Counters {
    /// See [`WebhookStats::delivered_batches`].
    delivered_batches: AtomicU64,
    /// See [`WebhookStats::delivered_events`].
    delivered_events: AtomicU64,
    /// See [`WebhookStats::failed_attempts`].
    failed_attempts: AtomicU64,
    /// See [`WebhookStats::dropped_batches`].
    dropped_batches: AtomicU64,
    /// See [`WebhookStats::dropped_events`].
    dropped_events: AtomicU64,
    /// Batches `offer` refused (also in `dropped_batches`), kept apart so the
    /// delivery task can log them: `offer` itself never logs.
    refused_batches: AtomicU64,
}

impl Counters {
    /// Counts one dropped batch of `events` events.
    fn dropped(&self, events: u64) {
        self.dropped_batches.fetch_add(1, Ordering::Relaxed);
        self.dropped_events.fetch_add(events, Ordering::Relaxed);
    }
}

/// A running webhook: the handle through which events are offered.
///
/// Cloning is cheap; the delivery task ends once every clone is dropped and
/// the backlog is drained (or when the runtime shuts down).
#[derive(Clone, Debug)]
pub struct Webhook {
    /// The backlog's sending side; its capacity is `backlog`.
    tx: mpsc::Sender<Vec<Value>>,
    /// Counters shared with the delivery task.
    counters: Arc<Counters>,
}

impl Webhook {
    /// Validates `cfg`, builds the client ([`crate::outbound::client`]) and
    /// spawns the delivery task with `tokio::spawn`.
    ///
    /// Must be called inside a tokio runtime (after fork: the task lives on
    /// the calling process's runtime). If the TLS roots cannot be loaded the
    /// outbound client's one policy applies: a warning, `http://` works, and
    /// attempts at an `https://` URL fail, each with that reason.
    pub fn start(cfg: WebhookConfig) -> Result<Webhook, WebhookError> {
        tokio::runtime::Handle::try_current().map_err(|_| WebhookError::NoRuntime)?;
        let uri = parse_url(&cfg.url)?;
        if cfg.secret.is_empty() {
            return Err(WebhookError::EmptySecret);
        }
        if cfg.timeout.is_zero() {
            return Err(out_of_range("timeout", format!("{:?}", cfg.timeout), "more than zero".into()));
        }
        if cfg.max_attempts == 0 {
            return Err(out_of_range("max_attempts", "0".into(), "at least 1".into()));
        }
        if cfg.backlog == 0 || cfg.backlog > tokio::sync::Semaphore::MAX_PERMITS {
            return Err(out_of_range(
                "backlog",
                cfg.backlog.to_string(),
                format!("between 1 and {}", tokio::sync::Semaphore::MAX_PERMITS),
            ));
        }
        let user_agent = HeaderValue::try_from(format!("sessiond/{} ({})", env!("CARGO_PKG_VERSION"), cfg.origin))
            .map_err(|_| WebhookError::BadOrigin { origin: cfg.origin.clone() })?;
        let ids = MessageIds::new().map_err(WebhookError::Random)?;
        let mut rng = [0u8; 8];
        getrandom::getrandom(&mut rng).map_err(WebhookError::Random)?;
        let log_url = log_url_of(&cfg.url);
        let opts = ClientOptions {
            connect_timeout: Some(cfg.timeout),
            pool_idle_timeout: POOL_IDLE_TIMEOUT,
            pool_max_idle_per_host: 1,
        };
        let client = HttpClient::new(opts, &format!("webhook {log_url} ({})", cfg.origin));
        let counters = Arc::new(Counters::default());
        let (tx, rx) = mpsc::channel(cfg.backlog);
        let deliverer = Deliverer {
            client,
            uri,
            log_url,
            secret: cfg.secret,
            user_agent,
            origin: cfg.origin,
            timeout: cfg.timeout,
            max_attempts: cfg.max_attempts,
            backlog: cfg.backlog,
            counters: counters.clone(),
            ids,
            jitter: Jitter::new(u64::from_le_bytes(rng)),
            failure_warn: RateLimit::new(WARN_INTERVAL_MS),
            refused_warn: RateLimit::new(WARN_INTERVAL_MS),
            refused_reported: 0,
        };
        tokio::spawn(deliverer.run(rx));
        Ok(Webhook { tx, counters })
    }

    /// Queues one batch (event objects, sent as `{"events":[...]}`) for
    /// delivery. Never blocks and never awaits.
    ///
    /// Returns false, and counts a dropped batch, when the backlog is full or
    /// the delivery task has ended. An empty batch is accepted and not sent.
    pub fn offer(&self, events: Vec<Value>) -> bool {
        if events.is_empty() {
            return true;
        }
        let n = events.len() as u64;
        match self.tx.try_send(events) {
            Ok(()) => true,
            Err(_) => {
                self.counters.refused_batches.fetch_add(1, Ordering::Relaxed);
                self.counters.dropped(n);
                false
            }
        }
    }

    /// A copy of the counters (each read atomically, not all at one instant).
    pub fn stats(&self) -> WebhookStats {
        let c = &self.counters;
        WebhookStats {
            delivered_batches: c.delivered_batches.load(Ordering::Relaxed),
            delivered_events: c.delivered_events.load(Ordering::Relaxed),
            failed_attempts: c.failed_attempts.load(Ordering::Relaxed),
            dropped_batches: c.dropped_batches.load(Ordering::Relaxed),
            dropped_events: c.dropped_events.load(Ordering::Relaxed),
            backlog: self.tx.max_capacity().saturating_sub(self.tx.capacity()) as u64,
        }
    }
}

/// Reads a secret file's bytes.
///
/// `whsec_<base64>` (the Standard Webhooks form; surrounding whitespace such
/// as a final newline is ignored) is decoded to the key. Anything else is the
/// key itself, byte for byte, a final newline included. Errors never contain
/// the secret.
pub fn parse_secret(bytes: &[u8]) -> Result<Vec<u8>, WebhookError> {
    let key = match bytes.trim_ascii().strip_prefix(SECRET_PREFIX) {
        Some(b64) => STANDARD.decode(b64).map_err(|_| WebhookError::BadSecretBase64)?,
        None => bytes.to_vec(),
    };
    if key.is_empty() {
        return Err(WebhookError::EmptySecret);
    }
    Ok(key)
}

/// Builds an [`WebhookError::OutOfRange`].
fn out_of_range(field: &'static str, value: String, want: String) -> WebhookError {
    WebhookError::OutOfRange { field, value, want }
}

/// Parses and checks the receiver URL ([`Rules::RECEIVER`]: no credentials).
fn parse_url(url: &str) -> Result<Uri, WebhookError> {
    crate::outbound::url::check(url, Rules::RECEIVER).map_err(|why| WebhookError::BadUrl { url: log_url_of(url), why })
}

/// The URL as log lines show it: no credentials, and the query string (which
/// often carries a token) replaced by `?…`.
fn log_url_of(url: &str) -> String {
    redact(url, Shown::QueryElided)
}

/// " (N similar warning(s) suppressed)", or nothing.
fn suppressed_note(n: u64) -> String {
    if n == 0 { String::new() } else { format!(" ({n} similar warning(s) suppressed)") }
}

/// Why one delivery attempt failed.
#[derive(Debug)]
enum Failure {
    /// The receiver answered with a status outside 2xx.
    Status(StatusCode),
    /// Connecting, the TLS handshake or the HTTP exchange failed, or
    /// https:// could not be tried without TLS roots.
    Send(OutboundError),
    /// No response head within the per-attempt timeout.
    Timeout(Duration),
    /// The batch could not be encoded or the request built (a bug here, not the receiver's fault).
    Local(String),
}

impl Failure {
    /// True when retrying cannot help: 410 Gone, or a local failure.
    fn is_final(&self) -> bool {
        matches!(self, Failure::Status(StatusCode::GONE) | Failure::Local(_))
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Status(s) => write!(f, "HTTP {s}"),
            Failure::Send(e) => write!(f, "{e}"),
            Failure::Timeout(t) => write!(f, "no response within {t:?}"),
            Failure::Local(e) => write!(f, "could not build the request: {e}"),
        }
    }
}

/// The delivery task's state: it owns the backlog's receiving side and sends
/// one batch at a time.
struct Deliverer {
    /// The HTTP client, pooled and keep-alive.
    client: HttpClient<Full<Bytes>>,
    /// The receiver URL.
    uri: Uri,
    /// The URL as log lines show it.
    log_url: String,
    /// The HMAC key.
    secret: Vec<u8>,
    /// The `user-agent` header: crate version and origin.
    user_agent: HeaderValue,
    /// Who is sending, for log lines.
    origin: String,
    /// Limit for one attempt.
    timeout: Duration,
    /// Attempts per batch.
    max_attempts: u32,
    /// Backlog capacity, for log lines.
    backlog: usize,
    /// Counters shared with the handles.
    counters: Arc<Counters>,
    /// Message ids: one per batch, kept across its retries.
    ids: MessageIds,
    /// Back-off jitter.
    jitter: Jitter,
    /// Limits "batch dropped" warnings.
    failure_warn: RateLimit,
    /// Limits "backlog full" warnings.
    refused_warn: RateLimit,
    /// `refused_batches` as of the last "backlog full" warning.
    refused_reported: u64,
}

impl Deliverer {
    /// Delivers batches in order until every handle is gone and the backlog is empty.
    async fn run(mut self, mut rx: mpsc::Receiver<Vec<Value>>) {
        while let Some(events) = rx.recv().await {
            self.report_refused();
            self.deliver(events).await;
        }
        log::debug!("webhook {} ({}): every handle dropped; delivery task ends", self.log_url, self.origin);
    }

    /// Sends one batch, retrying as the rules say, and counts the outcome.
    async fn deliver(&mut self, events: Vec<Value>) {
        let count = events.len() as u64;
        let id = self.ids.next_id();
        let body = match serde_json::to_vec(&serde_json::json!({ "events": events })) {
            Ok(b) => Bytes::from(b),
            Err(e) => return self.drop_batch(&id, count, 0, &Failure::Local(e.to_string())),
        };
        let backoff = Backoff::new(INITIAL_BACKOFF, MAX_BACKOFF);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let failure = match self.attempt(&id, &body).await {
                Ok(()) => {
                    self.counters.delivered_batches.fetch_add(1, Ordering::Relaxed);
                    self.counters.delivered_events.fetch_add(count, Ordering::Relaxed);
                    if attempt > 1 {
                        log::debug!("webhook {}: batch {id} delivered at attempt {attempt}", self.log_url);
                    }
                    return;
                }
                Err(f) => f,
            };
            self.counters.failed_attempts.fetch_add(1, Ordering::Relaxed);
            log::debug!(
                "webhook {}: batch {id} attempt {attempt}/{} failed: {failure}",
                self.log_url,
                self.max_attempts
            );
            self.report_refused();
            if failure.is_final() || attempt >= self.max_attempts {
                return self.drop_batch(&id, count, attempt, &failure);
            }
            let pause = self.jitter.apply(backoff.delay(attempt));
            tokio::time::sleep(pause).await;
        }
    }

    /// One attempt: signs with this attempt's timestamp, sends, and reads the
    /// status. Ok means 2xx.
    async fn attempt(&self, id: &str, body: &Bytes) -> Result<(), Failure> {
        let req = crate::outbound::sign::signed_post(&self.secret, self.uri.clone(), self.user_agent.clone(), id, body)
            .map_err(|e| Failure::Local(e.to_string()))?;
        let resp = match tokio::time::timeout(self.timeout, self.client.request(req)).await {
            Ok(r) => r.map_err(Failure::Send)?,
            Err(_) => return Err(Failure::Timeout(self.timeout)),
        };
        let status = resp.status();
        // Read the body (bounded in size and time) so the connection can be
        // reused; its content and any error reading it do not matter.
        let _ = tokio::time::timeout(self.timeout, Limited::new(resp.into_body(), MAX_RESPONSE_BODY).collect()).await;
        if status.is_success() { Ok(()) } else { Err(Failure::Status(status)) }
    }

    /// Gives a batch up: counts it and logs (rate-limited) why.
    fn drop_batch(&mut self, id: &str, count: u64, attempts: u32, failure: &Failure) {
        self.counters.dropped(count);
        if let Some(suppressed) = self.failure_warn.allow(crate::clock::now_ms()) {
            let why = if failure.is_final() { " (final: not retried)" } else { "" };
            log::warn!(
                "webhook {} ({}): dropped batch {id} of {count} event(s) after {attempts} attempt(s); \
                 last error: {failure}{why}{}",
                self.log_url,
                self.origin,
                suppressed_note(suppressed)
            );
        }
    }

    /// Logs (rate-limited) batches that `offer` refused since the last report.
    fn report_refused(&mut self) {
        let total = self.counters.refused_batches.load(Ordering::Relaxed);
        if total == self.refused_reported || self.refused_warn.allow(crate::clock::now_ms()).is_none() {
            return;
        }
        log::warn!(
            "webhook {} ({}): backlog of {} batch(es) full; dropped {} new batch(es) since the last report",
            self.log_url,
            self.origin,
            self.backlog,
            total - self.refused_reported
        );
        self.refused_reported = total;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use std::time::Instant;

    use http_body_util::Empty;
    use hyper::HeaderMap;
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use serde_json::json;
    use tokio::net::TcpListener;

    use hmac::{Hmac, Mac};
    use hyper::body::Incoming;
    use hyper::{Method, Request, Response};
    use sha2::Sha256;

    use super::*;

    /// The Standard Webhooks specification's published example.
    const SPEC_SECRET: &[u8] = b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TIMESTAMP: i64 = 1_614_265_330;
    const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    /// The key the receivers in these tests share with the sender.
    const KEY: &[u8] = b"test key: not a real secret";

    /// One request as the test receiver saw it.
    struct Seen {
        /// The method.
        method: Method,
        /// The headers.
        headers: HeaderMap,
        /// The body bytes.
        body: Bytes,
    }

    impl Seen {
        fn header(&self, name: &str) -> &str {
            self.headers.get(name).unwrap_or_else(|| panic!("no {name} header")).to_str().unwrap()
        }

        /// Checks the signature the way a receiver would, with hmac directly.
        fn assert_signed_with(&self, key: &[u8]) {
            let id = self.header("webhook-id");
            let ts: i64 = self.header("webhook-timestamp").parse().unwrap();
            let sig = self.header("webhook-signature").strip_prefix("v1,").expect("v1 signature");
            let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
            mac.update(format!("{id}.{ts}.").as_bytes());
            mac.update(&self.body);
            mac.verify_slice(&STANDARD.decode(sig).unwrap()).expect("signature verifies");
        }

        fn json(&self) -> Value {
            serde_json::from_slice(&self.body).unwrap()
        }
    }

    /// Starts an HTTP/1.1 receiver on 127.0.0.1 that answers each request with
    /// the next of `statuses` (204 once they run out) and passes it on.
    async fn receiver(statuses: &[u16]) -> (String, mpsc::UnboundedReceiver<Seen>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks/sessions", listener.local_addr().unwrap());
        let script = Arc::new(Mutex::new(statuses.iter().copied().collect::<VecDeque<u16>>()));
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (tx, script) = (tx.clone(), script.clone());
                let svc = service_fn(move |req: Request<Incoming>| {
                    let (tx, script) = (tx.clone(), script.clone());
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await?.to_bytes();
                        let _ = tx.send(Seen { method: parts.method, headers: parts.headers, body });
                        let status = script.lock().unwrap().pop_front().unwrap_or(204);
                        Ok::<_, hyper::Error>(Response::builder().status(status).body(Empty::<Bytes>::new()).unwrap())
                    }
                });
                tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), svc));
            }
        });
        (url, rx)
    }

    fn config(url: &str) -> WebhookConfig {
        WebhookConfig {
            url: url.to_string(),
            secret: KEY.to_vec(),
            timeout: Duration::from_secs(5),
            max_attempts: 3,
            backlog: 8,
            origin: "sessiond worker 3".into(),
            max_batch: 100,
            include_touched: false,
            node_id: 1,
        }
    }

    /// Next request the receiver saw (a generous deadline so a hang fails the test).
    async fn next(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
        tokio::time::timeout(Duration::from_secs(30), rx.recv()).await.expect("a request arrives").unwrap()
    }

    /// Waits (up to a generous deadline) until `done` holds for the stats, and returns them.
    async fn stats_when(hook: &Webhook, done: impl Fn(&WebhookStats) -> bool) -> WebhookStats {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = hook.stats();
            if done(&s) || Instant::now() > deadline {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[test]
    fn sign_matches_the_standard_webhooks_example_and_plain_hmac() {
        let key = parse_secret(SPEC_SECRET).unwrap();
        assert_eq!(sign(&key, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY), SPEC_SIGNATURE);

        let mut mac = Hmac::<Sha256>::new_from_slice(b"k3y").unwrap();
        mac.update(b"msg_1.-5.{\"events\":[]}");
        let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
        assert_eq!(sign(b"k3y", "msg_1", -5, br#"{"events":[]}"#), expected);
    }

    #[test]
    fn parse_secret_decodes_whsec_keeps_raw_and_rejects_empty_or_bad_base64() {
        let decoded = STANDARD.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(parse_secret(SPEC_SECRET).unwrap(), decoded);
        assert_eq!(parse_secret(b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n").unwrap(), decoded);
        assert_eq!(parse_secret(b"hunter2").unwrap(), b"hunter2");
        assert_eq!(parse_secret(b"hunter2\n").unwrap(), b"hunter2\n");
        assert!(matches!(parse_secret(b""), Err(WebhookError::EmptySecret)));
        assert!(matches!(parse_secret(b"whsec_"), Err(WebhookError::EmptySecret)));
        let err = parse_secret(b"whsec_sup3r-s3cret!").unwrap_err();
        assert!(matches!(err, WebhookError::BadSecretBase64));
        assert!(!err.to_string().contains("sup3r"), "error echoes the secret: {err}");
    }

    #[test]
    fn start_refuses_bad_config_naming_the_value() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        assert!(matches!(Webhook::start(config("http://127.0.0.1:9/")), Err(WebhookError::NoRuntime)));
        rt.block_on(async {
            for url in ["ftp://example.com/x", "/relative", "not a url", "http://"] {
                let err = Webhook::start(config(url)).unwrap_err();
                assert!(matches!(err, WebhookError::BadUrl { .. }), "{url}: {err}");
            }
            let err = Webhook::start(config("https://alice:pa55word@example.com/h")).unwrap_err();
            assert!(err.to_string().contains("example.com") && !err.to_string().contains("pa55word"), "{err}");
            let err = Webhook::start(config("ftp://example.com/x")).unwrap_err();
            assert!(err.to_string().contains("ftp://example.com/x"), "{err}");
            let err = Webhook::start(WebhookConfig { backlog: 0, ..config("http://127.0.0.1:9/") }).unwrap_err();
            assert!(err.to_string().contains("backlog is 0"), "{err}");
            let err = Webhook::start(WebhookConfig { max_attempts: 0, ..config("http://127.0.0.1:9/") }).unwrap_err();
            assert!(err.to_string().contains("max_attempts is 0"), "{err}");
            let err = Webhook::start(WebhookConfig { secret: vec![], ..config("http://127.0.0.1:9/") }).unwrap_err();
            assert!(matches!(err, WebhookError::EmptySecret));
            let err = Webhook::start(WebhookConfig { origin: "bad\norigin".into(), ..config("http://127.0.0.1:9/") })
                .unwrap_err();
            assert!(matches!(err, WebhookError::BadOrigin { .. }));
        });
    }

    #[test]
    fn config_debug_and_log_url_hide_secrets() {
        let cfg = WebhookConfig { secret: b"sup3r".to_vec(), ..config("https://u:pw@example.com/h?token=t0k#f") };
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("sup3r") && !shown.contains("t0k") && !shown.contains("pw@"), "{shown}");
        assert_eq!(log_url_of("https://u:pw@example.com/h?token=t0k"), "https://example.com/h?…");
        assert_eq!(log_url_of("http://example.com:8080/h"), "http://example.com:8080/h");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn receiver_gets_signed_batches_in_order() {
        let (url, mut rx) = receiver(&[]).await;
        let hook = Webhook::start(config(&url)).unwrap();
        let first = vec![json!({"type": "created", "session": "3f2a…", "context": "shop"})];
        let second =
            vec![json!({"type": "expired", "session": "77c1…"}), json!({"type": "deleted", "session": "0b9e…"})];
        assert!(hook.offer(first.clone()));
        assert!(hook.offer(second.clone()));

        let a = next(&mut rx).await;
        let b = next(&mut rx).await;
        for (seen, events) in [(&a, &first), (&b, &second)] {
            assert_eq!(seen.method, Method::POST);
            assert_eq!(seen.header("content-type"), "application/json");
            assert!(seen.header("user-agent").contains("sessiond worker 3"));
            assert!(seen.header("webhook-id").starts_with("msg_"));
            seen.assert_signed_with(KEY);
            assert_eq!(seen.json(), json!({ "events": events }));
        }
        assert_ne!(a.header("webhook-id"), b.header("webhook-id"));

        let s = stats_when(&hook, |s| s.delivered_batches == 2).await;
        assert_eq!(
            s,
            WebhookStats { delivered_batches: 2, delivered_events: 3, ..WebhookStats::default() },
            "all delivered, nothing failed or queued"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn batch_is_retried_after_500_with_the_same_id_and_fresh_signatures() {
        let (url, mut rx) = receiver(&[500, 500]).await;
        let hook = Webhook::start(config(&url)).unwrap();
        let events = vec![json!({"type": "touched", "session": "a1b2…"})];
        assert!(hook.offer(events.clone()));

        let tries = [next(&mut rx).await, next(&mut rx).await, next(&mut rx).await];
        let id = tries[0].header("webhook-id");
        let mut last_ts = i64::MIN;
        for seen in &tries {
            assert_eq!(seen.header("webhook-id"), id, "every retry carries the batch's id");
            seen.assert_signed_with(KEY);
            let ts: i64 = seen.header("webhook-timestamp").parse().unwrap();
            assert!(ts >= last_ts, "timestamps never go back");
            last_ts = ts;
            assert_eq!(seen.json(), json!({ "events": events }));
        }

        let s = stats_when(&hook, |s| s.delivered_batches == 1).await;
        assert_eq!(s, WebhookStats { delivered_batches: 1, delivered_events: 1, failed_attempts: 2, ..s });
        assert_eq!((s.dropped_batches, s.dropped_events, s.backlog), (0, 0, 0));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn gone_drops_the_batch_without_retrying_and_the_next_one_still_goes() {
        let (url, mut rx) = receiver(&[410]).await;
        let hook = Webhook::start(config(&url)).unwrap();
        assert!(hook.offer(vec![json!({"n": 1})]));
        assert!(hook.offer(vec![json!({"n": 2})]));

        let a = next(&mut rx).await;
        let b = next(&mut rx).await;
        assert_eq!(a.json(), json!({"events": [{"n": 1}]}));
        assert_eq!(b.json(), json!({"events": [{"n": 2}]}), "the 410'd batch was not sent again");
        assert_ne!(a.header("webhook-id"), b.header("webhook-id"));

        let s = stats_when(&hook, |s| s.delivered_batches == 1).await;
        assert_eq!(
            s,
            WebhookStats {
                delivered_batches: 1,
                delivered_events: 1,
                failed_attempts: 1,
                dropped_batches: 1,
                dropped_events: 1,
                backlog: 0
            }
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn dead_receiver_never_blocks_offer_and_overflow_is_counted() {
        // A port nobody listens on: connections are refused.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        drop(listener);
        let cfg = WebhookConfig { backlog: 4, max_attempts: 2, ..config(&url) };
        let hook = Webhook::start(cfg).unwrap();

        // Nothing here awaits, so the delivery task cannot run: the backlog fills
        // and every later offer must return false at once.
        let accepted: Vec<bool> = (0..20).map(|i| hook.offer(vec![json!({"n": i}), json!({"n": i})])).collect();
        assert_eq!(accepted[..4], [true; 4]);
        assert!(accepted[4..].iter().all(|a| !a), "{accepted:?}");
        let s = hook.stats();
        assert_eq!((s.dropped_batches, s.dropped_events, s.backlog), (16, 32, 4));

        // The queued ones fail their attempts and are dropped too.
        let s = stats_when(&hook, |s| s.dropped_batches == 20).await;
        assert_eq!(
            s,
            WebhookStats {
                delivered_batches: 0,
                delivered_events: 0,
                failed_attempts: 8,
                dropped_batches: 20,
                dropped_events: 40,
                backlog: 0
            }
        );
        assert!(hook.offer(vec![json!({"n": "after"})]), "room again once the backlog drained");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn silent_receiver_times_out_each_attempt() {
        // Accepts connections and never answers.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let cfg = WebhookConfig { timeout: Duration::from_millis(100), max_attempts: 2, backlog: 1, ..config(&url) };
        let hook = Webhook::start(cfg).unwrap();
        assert!(hook.offer(vec![json!({"n": 1})]));

        let s = stats_when(&hook, |s| s.dropped_batches == 1).await;
        assert_eq!(
            s,
            WebhookStats { failed_attempts: 2, dropped_batches: 1, dropped_events: 1, ..WebhookStats::default() }
        );
    }
}
