//! Lifecycle-event webhooks: delivers batches of session events to one
//! receiver URL, signed the Standard Webhooks way.
//!
//! This module owns the webhook subscriber's delivery engine: a bounded
//! backlog of batches, one delivery task per process that POSTs them in
//! order, retries with jittered exponential back-off, and the counters behind
//! [`WebhookStats`]. It also owns the signature ([`sign`]) and the secret-file
//! format ([`parse_secret`]).
//!
//! It must never slow a request: the only call made from the event dispatcher
//! is [`Webhook::offer`], which neither blocks nor awaits, and drops the batch
//! (counting it) when the backlog is full. It must never create a thread or a
//! runtime (the caller's tokio runtime runs the delivery task), and never log a
//! secret, a request body or a URL's query string.
//!
//! # Wire format
//! Each batch is one `POST` of `{"events":[...]}` with
//! `content-type: application/json` and the three Standard Webhooks headers:
//! `webhook-id` (`msg_` + 22 base64url characters, the same on every retry of
//! a batch), `webhook-timestamp` (unix seconds of the attempt) and
//! `webhook-signature` (`v1,` + base64 of HMAC-SHA256 over
//! `"{id}.{timestamp}.{body}"`, computed per attempt). A 2xx answer delivers
//! the batch; `410 Gone` drops it at once; anything else, a connection error
//! or a timeout is retried until `max_attempts`.
//!
//! Signing is a few lines over `hmac` and `sha2`, which the crate already
//! uses; the tests check it against the specification's published vector.
//! Host names are resolved by hyper-util's resolver, which runs on the
//! caller's runtime's blocking pool; IP-literal URLs need no resolution.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue, USER_AGENT};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde_json::Value;
use sha2::Sha256;
use tokio::sync::mpsc;

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

/// At most one warning line of a kind per this interval; the rest are counted.
const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// How much of a response body is read (and thrown away) so the connection
/// can go back to the pool; a longer body just closes the connection.
const MAX_RESPONSE_BODY: usize = 64 * 1024;

/// How long an idle keep-alive connection to the receiver is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a webhook could not be configured or its secret read.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The URL does not parse, or is not an absolute http:// or https:// URL with a host.
    #[error("webhook url {url:?}: {why}; give an absolute http:// or https:// URL such as https://example.com/hooks")]
    BadUrl {
        /// The URL as configured (user:password@, if any, removed).
        url: String,
        /// What is wrong with it.
        why: &'static str,
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
}

/// What a webhook delivers to and how hard it tries.
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
    /// Validates `cfg`, loads the system's TLS roots and spawns the delivery
    /// task with `tokio::spawn`.
    ///
    /// Must be called inside a tokio runtime (after fork: the task lives on
    /// the calling process's runtime). If the TLS roots cannot be loaded it
    /// logs a warning and still serves `http://` URLs; attempts at an
    /// `https://` URL then fail, each with that reason.
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
        let (mut id_prefix, mut rng) = ([0u8; 8], [0u8; 8]);
        getrandom::getrandom(&mut id_prefix).map_err(WebhookError::Random)?;
        getrandom::getrandom(&mut rng).map_err(WebhookError::Random)?;
        let log_url = log_url_of(&cfg.url);
        let transport = Transport::new(cfg.timeout, &log_url, &cfg.origin);
        let counters = Arc::new(Counters::default());
        let (tx, rx) = mpsc::channel(cfg.backlog);
        let deliverer = Deliverer {
            transport,
            uri,
            log_url,
            secret: cfg.secret,
            user_agent,
            origin: cfg.origin,
            timeout: cfg.timeout,
            max_attempts: cfg.max_attempts,
            backlog: cfg.backlog,
            counters: counters.clone(),
            id_prefix,
            next_seq: 0,
            rng: u64::from_le_bytes(rng) | 1,
            failure_warn: WarnLimiter::new(WARN_INTERVAL),
            refused_warn: WarnLimiter::new(WARN_INTERVAL),
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

/// HMAC-SHA256 of the concatenation of `parts` under `key`: the one MAC of
/// the crate (webhook signatures, session keys, control handles).
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC takes a key of any length: this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// Signs one delivery: `"v1,"` + standard base64 of
/// HMAC-SHA256(`secret`, `"{msg_id}.{timestamp}.{body}"`).
pub fn sign(secret: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    let mac = hmac_sha256(secret, &[msg_id.as_bytes(), b".", ts.as_bytes(), b".", body]);
    format!("v1,{}", STANDARD.encode(mac))
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

/// Parses and checks the receiver URL.
fn parse_url(url: &str) -> Result<Uri, WebhookError> {
    let bad = |why| WebhookError::BadUrl { url: without_userinfo(url), why };
    let uri: Uri = url.parse().map_err(|_| bad("not a valid URL"))?;
    match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https") => {}
        Some(_) => return Err(bad("the scheme must be http or https")),
        None => return Err(bad("the URL must be absolute, starting with http:// or https://")),
    }
    let Some(authority) = uri.authority() else {
        return Err(bad("the URL has no host"));
    };
    if authority.as_str().contains('@') {
        return Err(bad("credentials in the URL (user:password@) are not supported"));
    }
    if authority.host().is_empty() {
        return Err(bad("the URL has no host"));
    }
    Ok(uri)
}

/// `url` with any `user:password@` removed, for error messages.
fn without_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// The URL as log lines show it: no credentials, and the query string (which
/// often carries a token) replaced by `?…`.
fn log_url_of(url: &str) -> String {
    let clean = without_userinfo(url);
    let clean = clean.split_once('#').map_or(clean.as_str(), |(u, _)| u);
    match clean.split_once('?') {
        Some((u, _)) => format!("{u}?…"),
        None => clean.to_string(),
    }
}

/// Unix seconds now (0 if the clock is before 1970).
fn unix_seconds() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Delay before the attempt that follows failed attempt number `failed`
/// (1-based): `initial` doubled per further failure, at most [`MAX_BACKOFF`].
fn backoff(initial: Duration, failed: u32) -> Duration {
    let doublings = failed.saturating_sub(1).min(31);
    initial.saturating_mul(1u32 << doublings).min(MAX_BACKOFF)
}

/// `e` and its sources, joined by ": ".
fn error_chain(e: &dyn StdError) -> String {
    let mut s = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        next = cause.source();
    }
    s
}

/// Lets one line of a kind through per interval and counts the rest.
#[derive(Debug)]
struct WarnLimiter {
    /// Shortest time between two lines.
    interval: Duration,
    /// When the last line went out.
    last: Option<Instant>,
    /// Lines held back since then.
    suppressed: u64,
}

impl WarnLimiter {
    /// A limiter that has let nothing through yet.
    fn new(interval: Duration) -> WarnLimiter {
        WarnLimiter { interval, last: None, suppressed: 0 }
    }

    /// `Some(lines held back since the last one)` if a line may go out at
    /// `now`; otherwise counts one more held-back line and returns `None`.
    fn admit(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.interval => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
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
    /// Connecting, the TLS handshake or the HTTP exchange failed.
    Transport(String),
    /// No response head within the per-attempt timeout.
    Timeout(Duration),
    /// The URL is https:// but this process could not load TLS roots.
    NoTls(String),
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
            Failure::Transport(e) => f.write_str(e),
            Failure::Timeout(t) => write!(f, "no response within {t:?}"),
            Failure::NoTls(why) => write!(f, "https:// needs TLS roots, and the system's could not be loaded ({why})"),
            Failure::Local(e) => write!(f, "could not build the request: {e}"),
        }
    }
}

/// The HTTP client, pooled and keep-alive.
enum Transport {
    /// TLS roots loaded: `http://` and `https://` URLs.
    Tls(Client<HttpsConnector<HttpConnector>, Full<Bytes>>),
    /// TLS roots could not be loaded: `http://` only.
    Plain {
        /// A plain-HTTP client.
        client: Client<HttpConnector, Full<Bytes>>,
        /// Why the roots could not be loaded.
        roots_error: String,
    },
}

impl Transport {
    /// Builds the client; `log_url` and `origin` only name the webhook in a warning.
    fn new(timeout: Duration, log_url: &str, origin: &str) -> Transport {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeout));
        let mut builder = Client::builder(TokioExecutor::new());
        builder.pool_timer(TokioTimer::new()).pool_idle_timeout(POOL_IDLE_TIMEOUT).pool_max_idle_per_host(1);
        match HttpsConnectorBuilder::new().with_native_roots() {
            Ok(tls) => Transport::Tls(builder.build(tls.https_or_http().enable_http1().wrap_connector(http))),
            Err(e) => {
                log::warn!(
                    "webhook {log_url} ({origin}): cannot load the system's TLS root certificates ({e}); \
                     only http:// receivers can be reached"
                );
                http.enforce_http(true);
                Transport::Plain { client: builder.build(http), roots_error: e.to_string() }
            }
        }
    }

    /// Sends one request and returns the response head.
    async fn send(&self, req: Request<Full<Bytes>>) -> Result<Response<Incoming>, Failure> {
        let result = match self {
            Transport::Tls(client) => client.request(req).await,
            Transport::Plain { client, roots_error } => {
                if req.uri().scheme_str().is_some_and(|s| s.eq_ignore_ascii_case("https")) {
                    return Err(Failure::NoTls(roots_error.clone()));
                }
                client.request(req).await
            }
        };
        result.map_err(|e| Failure::Transport(error_chain(&e)))
    }
}

/// The delivery task's state: it owns the backlog's receiving side and sends
/// one batch at a time.
struct Deliverer {
    /// The HTTP client.
    transport: Transport,
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
    /// Random per-process half of every message id.
    id_prefix: [u8; 8],
    /// Sequence half of the next message id.
    next_seq: u64,
    /// xorshift64* state for back-off jitter (never zero).
    rng: u64,
    /// Limits "batch dropped" warnings.
    failure_warn: WarnLimiter,
    /// Limits "backlog full" warnings.
    refused_warn: WarnLimiter,
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

    /// A fresh message id: `msg_` + base64url(random prefix ‖ sequence).
    fn next_id(&mut self) -> String {
        let mut raw = [0u8; 16];
        raw[..8].copy_from_slice(&self.id_prefix);
        raw[8..].copy_from_slice(&self.next_seq.to_be_bytes());
        self.next_seq = self.next_seq.wrapping_add(1);
        format!("msg_{}", URL_SAFE_NO_PAD.encode(raw))
    }

    /// `d` with equal jitter: uniform in [d/2, d).
    fn jittered(&mut self, d: Duration) -> Duration {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        let unit = (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64;
        let half = d / 2;
        half + half.mul_f64(unit)
    }

    /// Sends one batch, retrying as the rules say, and counts the outcome.
    async fn deliver(&mut self, events: Vec<Value>) {
        let count = events.len() as u64;
        let id = self.next_id();
        let body = match serde_json::to_vec(&serde_json::json!({ "events": events })) {
            Ok(b) => Bytes::from(b),
            Err(e) => return self.drop_batch(&id, count, 0, &Failure::Local(e.to_string())),
        };
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
            let pause = self.jittered(backoff(INITIAL_BACKOFF, attempt));
            tokio::time::sleep(pause).await;
        }
    }

    /// One attempt: signs with this attempt's timestamp, sends, and reads the
    /// status. Ok means 2xx.
    async fn attempt(&self, id: &str, body: &Bytes) -> Result<(), Failure> {
        let timestamp = unix_seconds();
        let req = Request::builder()
            .method(Method::POST)
            .uri(self.uri.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(USER_AGENT, self.user_agent.clone())
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp)
            .header("webhook-signature", sign(&self.secret, id, timestamp, body))
            .body(Full::new(body.clone()))
            .map_err(|e| Failure::Local(e.to_string()))?;
        let resp = match tokio::time::timeout(self.timeout, self.transport.send(req)).await {
            Ok(r) => r?,
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
        if let Some(suppressed) = self.failure_warn.admit(Instant::now()) {
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
        if total == self.refused_reported || self.refused_warn.admit(Instant::now()).is_none() {
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

    use http_body_util::Empty;
    use hyper::HeaderMap;
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use serde_json::json;
    use tokio::net::TcpListener;

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

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let ms = Duration::from_millis;
        assert_eq!(backoff(ms(500), 1), ms(500));
        assert_eq!(backoff(ms(500), 2), ms(1000));
        assert_eq!(backoff(ms(500), 4), ms(4000));
        assert_eq!(backoff(ms(500), 8), MAX_BACKOFF);
        assert_eq!(backoff(ms(500), u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn warn_limiter_lets_one_line_per_interval_and_counts_the_rest() {
        let t0 = Instant::now();
        let mut l = WarnLimiter::new(Duration::from_secs(10));
        assert_eq!(l.admit(t0), Some(0));
        assert_eq!(l.admit(t0 + Duration::from_secs(1)), None);
        assert_eq!(l.admit(t0 + Duration::from_secs(9)), None);
        assert_eq!(l.admit(t0 + Duration::from_secs(10)), Some(2));
        assert_eq!(l.admit(t0 + Duration::from_secs(11)), None);
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
