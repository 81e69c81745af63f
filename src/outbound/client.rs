//! The one HTTP client builder: hyper-util's pooled legacy client over a
//! hyper-rustls http-or-https connector, HTTP/1.1.
//!
//! # When the TLS roots are missing
//! One policy for every client: if the system's root certificates cannot
//! be loaded, the builder logs one warning naming the client, `http://`
//! still works, and every `https://` request fails at once with
//! [`OutboundError::NoTlsRoots`], which says why. Nothing falls back to an
//! unverified connection.
//!
//! Build clients after `fork`, inside the process's runtime: the pool's
//! timer and the resolver run on it.

use std::sync::Arc;
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::{Request, Response};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// How a client connects and pools.
#[derive(Clone, Copy, Debug)]
pub struct ClientOptions {
    /// Limit for the TCP connect (none: the caller's own timeout covers it).
    pub connect_timeout: Option<Duration>,
    /// How long an idle keep-alive connection is kept.
    pub pool_idle_timeout: Duration,
    /// Idle connections kept per host.
    pub pool_max_idle_per_host: usize,
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            connect_timeout: None,
            pool_idle_timeout: Duration::from_secs(30),
            pool_max_idle_per_host: usize::MAX,
        }
    }
}

/// Why an outbound request failed.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    /// The URL is `https://` but this process could not load TLS roots.
    #[error("https:// needs TLS roots, and the system's could not be loaded ({0})")]
    NoTlsRoots(Arc<str>),
    /// Connecting, the TLS handshake or the HTTP exchange failed (the
    /// message is the error with its sources).
    #[error("{0}")]
    Http(String),
}

/// A pooled, keep-alive HTTP/1.1 client for `http://` and `https://` URLs.
pub struct HttpClient<B> {
    /// The hyper-util client.
    inner: Client<HttpsConnector<HttpConnector>, B>,
    /// Why the TLS roots could not be loaded, if they could not.
    no_roots: Option<Arc<str>>,
}

impl<B> std::fmt::Debug for HttpClient<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient").field("no_roots", &self.no_roots).finish_non_exhaustive()
    }
}

impl<B> HttpClient<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// Builds a client; `what` names it in the warning about missing TLS
    /// roots (e.g. "webhook https://example.com/h (sessiond worker 3)").
    /// Call inside the process's runtime, after `fork`.
    pub fn new(opts: ClientOptions, what: &str) -> HttpClient<B> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(opts.connect_timeout);
        let (tls, no_roots) = match HttpsConnectorBuilder::new().with_native_roots() {
            Ok(b) => (b, None),
            Err(e) => {
                log::warn!(
                    "{what}: cannot load the system's TLS root certificates ({e}); \
                     only http:// URLs can be reached"
                );
                let empty = rustls::ClientConfig::builder()
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth();
                (HttpsConnectorBuilder::new().with_tls_config(empty), Some(Arc::from(e.to_string())))
            }
        };
        let inner = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(opts.pool_idle_timeout)
            .pool_max_idle_per_host(opts.pool_max_idle_per_host)
            .build(tls.https_or_http().enable_http1().wrap_connector(http));
        HttpClient { inner, no_roots }
    }

    /// Sends one request and returns the response head.
    pub async fn request(&self, req: Request<B>) -> Result<Response<Incoming>, OutboundError> {
        if let Some(why) = &self.no_roots
            && req.uri().scheme_str().is_some_and(|s| s.eq_ignore_ascii_case("https"))
        {
            return Err(OutboundError::NoTlsRoots(why.clone()));
        }
        self.inner.request(req).await.map_err(|e| OutboundError::Http(super::error_chain(&e)))
    }
}
