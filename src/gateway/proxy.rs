//! Forwarding one request upstream (Go's `httputil.ReverseProxy` is the
//! model): the upstream gets the normalised path the filters saw,
//! re-encoded, plus the original query; hop-by-hop headers, sessiond's
//! cookie and every identity header a client sent are removed; the
//! identity headers and `X-Forwarded-*` / RFC 7239 `Forwarded` are set by
//! sessiond. Bodies stream both ways. A WebSocket upgrade becomes a tunnel
//! that is closed as soon as its session is gone.
//!
//! A request body whose framing turns out malformed while it streams
//! (chunk lines ended by a bare LF, say) is the client's fault: it is
//! answered `400 bad_body` with the connection closed, never `502`.
//!
//! It must never forward the raw path, never pass on a client's
//! `X-Sessiond-*` or `X-Forwarded-User`, and never trust a client's
//! `Forwarded` / `X-Forwarded-*` unless the peer is a trusted proxy.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;

use super::path::NormalPath;
use crate::web::framing::FramingError;

/// The body type of every gateway response.
pub type GwBody = BoxBody<Bytes, hyper::Error>;
/// A gateway response.
pub type GwResp = Response<GwBody>;
/// The pooled upstream client of one worker.
pub type UpstreamClient = crate::outbound::HttpClient<GwBody>;

/// How often a WebSocket tunnel checks that its session still exists.
pub const TUNNEL_CHECK: Duration = Duration::from_millis(500);

/// Open WebSocket tunnels in this process. An upgraded connection leaves
/// hyper's connection count, so tunnels are bounded here instead.
static TUNNELS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Open tunnels in this process.
pub fn open_tunnels() -> usize {
    TUNNELS.load(std::sync::atomic::Ordering::Relaxed)
}

/// A buffered body.
pub fn full(b: impl Into<Bytes>) -> GwBody {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// A JSON error answer `{"error","message"}`.
pub fn json_error(status: StatusCode, code: &str, message: &str) -> GwResp {
    let body = serde_json::json!({"error": code, "message": message}).to_string();
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(hyper::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// The answer to a request whose framing is refused: 400 with the
/// [`FramingError`]'s code, and `Connection: close`, since the rest of what
/// the client sent cannot be told apart from a next request.
pub fn framing_refusal(e: &FramingError) -> GwResp {
    let mut r = json_error(StatusCode::BAD_REQUEST, e.code(), &e.to_string());
    r.headers_mut().insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// Builds the upstream client (after `fork`, inside the worker's runtime),
/// with the outbound module's one builder and TLS-roots policy.
pub fn client() -> UpstreamClient {
    let opts = crate::outbound::ClientOptions {
        connect_timeout: Some(Duration::from_secs(5)),
        pool_idle_timeout: Duration::from_secs(60),
        pool_max_idle_per_host: 256,
    };
    crate::outbound::HttpClient::new(opts, "gateway: upstreams")
}

/// One configured upstream, parsed.
#[derive(Clone, Debug)]
pub struct Upstream {
    /// Its name (Glacier2's adapter id).
    pub name: String,
    /// `http` or `https`.
    pub scheme: String,
    /// `host[:port]`.
    pub authority: String,
    /// A base path prepended to every forwarded path ("" for none).
    pub base: String,
    /// The normalised path prefix it serves ("/" for everything).
    pub prefix: String,
}

impl Upstream {
    /// Parses a configured upstream; the error names the URL.
    pub fn new(name: &str, url: &str, prefix: &str) -> Result<Upstream, String> {
        let u: Uri = url.parse().map_err(|e| format!("gateway upstream {name}: url {url:?}: {e}"))?;
        let scheme = u.scheme_str().unwrap_or("http").to_string();
        let authority = u.authority().ok_or_else(|| format!("gateway upstream {name}: url {url:?} has no host"))?;
        Ok(Upstream {
            name: name.to_string(),
            scheme,
            authority: authority.to_string(),
            base: u.path().trim_end_matches('/').to_string(),
            prefix: prefix.to_string(),
        })
    }
}

/// The upstream with the longest prefix matching `path` (segment-wise).
pub fn route<'a>(upstreams: &'a [Upstream], path: &NormalPath) -> Option<&'a Upstream> {
    upstreams.iter().filter(|u| path.starts_with(&u.prefix)).max_by_key(|u| u.prefix.len())
}

/// Headers that describe one connection, never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
];

/// Client-sent headers that claim an identity or a route; removed always.
/// Header names are compared with `_` read as `-`: CGI, WSGI and Rack
/// servers fold both into `HTTP_X_…`, so `X_Sessiond_User` would reach an
/// application as the identity header.
fn canonical(name: &str) -> std::borrow::Cow<'_, str> {
    if name.contains('_') { std::borrow::Cow::Owned(name.replace('_', "-")) } else { std::borrow::Cow::Borrowed(name) }
}

fn is_identity_header(name: &str) -> bool {
    let name = canonical(name);
    name.starts_with("x-sessiond-")
        || name == "x-forwarded-user"
        || name == "x-auth-request-user"
        // A session id in a header is for sessiond, never for the upstream.
        || name == "x-session-id"
}

/// Client-sent headers about the client's address and the original
/// request; kept only from a trusted proxy.
fn is_forwarding_header(name: &str) -> bool {
    let name = canonical(name);
    name == "forwarded" || name == "x-real-ip" || name == "x-original-uri" || name.starts_with("x-forwarded-")
}

/// Removes hop-by-hop headers, including every header the `Connection`
/// header names.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<HeaderName> = h
        .get_all(hyper::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in HOP_BY_HOP {
        h.remove(n);
    }
}

/// Removes the `name=…` pairs from every `Cookie` header (drops a header
/// left empty).
pub fn strip_cookie(h: &mut HeaderMap, name: &str) {
    // The usual case on the hot path: our cookie is not among them.
    let ours = |v: &HeaderValue| v.as_bytes().windows(name.len()).any(|w| w == name.as_bytes());
    if !h.get_all(hyper::header::COOKIE).iter().any(ours) {
        return;
    }
    let kept: Vec<String> = h
        .get_all(hyper::header::COOKIE)
        .iter()
        .map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .split(';')
                .map(str::trim)
                .filter(|p| !p.is_empty() && p.split_once('=').map_or(p.trim(), |(k, _)| k.trim()) != name)
                .collect::<Vec<_>>()
                .join("; ")
        })
        .filter(|s| !s.is_empty())
        .collect();
    h.remove(hyper::header::COOKIE);
    for v in kept {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.append(hyper::header::COOKIE, v);
        }
    }
}

/// Removes an upstream's `Set-Cookie` for sessiond's own cookie: the
/// application must not overwrite (or fix) the gateway's session.
pub fn strip_set_cookie(h: &mut HeaderMap, name: &str) {
    let kept: Vec<HeaderValue> = h
        .get_all(hyper::header::SET_COOKIE)
        .iter()
        .filter(|v| {
            let s = String::from_utf8_lossy(v.as_bytes());
            s.split(';').next().and_then(|p| p.split_once('=')).is_none_or(|(k, _)| k.trim() != name)
        })
        .cloned()
        .collect();
    h.remove(hyper::header::SET_COOKIE);
    for v in kept {
        h.append(hyper::header::SET_COOKIE, v);
    }
}

/// A header-safe form of a user name: percent-encoded UTF-8 (unreserved
/// characters as they are).
pub fn header_user(user: &str) -> HeaderValue {
    let enc = percent_encoding::utf8_percent_encode(user, percent_encoding::NON_ALPHANUMERIC).to_string();
    // Keep the common punctuation readable.
    let enc = enc.replace("%2D", "-").replace("%2E", ".").replace("%5F", "_").replace("%40", "@");
    HeaderValue::from_str(&enc).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// The client's address as far as trusted proxies say.
pub fn client_addr(peer: Option<SocketAddr>, headers: &HeaderMap, trusted: bool) -> Option<IpAddr> {
    if trusted
        && let Some(last) = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .rfind(|s| !s.is_empty())
        && let Ok(ip) = last.parse::<IpAddr>()
    {
        return Some(ip);
    }
    peer.map(|p| p.ip())
}

/// Who the upstream is told the session belongs to.
pub struct Identity<'a> {
    /// The user.
    pub user: &'a str,
    /// The control handle.
    pub handle: &'a str,
}

/// Everything `forward` needs besides the request.
pub struct Forward<'a> {
    /// The pooled client.
    pub client: &'a UpstreamClient,
    /// The upstream chosen by `route`.
    pub upstream: &'a Upstream,
    /// The normalised path the filters allowed.
    pub path: &'a NormalPath,
    /// The session's identity.
    pub identity: Identity<'a>,
    /// The TCP peer (None on a Unix socket).
    pub peer: Option<SocketAddr>,
    /// Whether the peer is a trusted proxy.
    pub trusted: bool,
    /// sessiond's cookie name (removed from `Cookie`).
    pub cookie_name: &'a str,
    /// Time allowed for the upstream's response head.
    pub timeout: Duration,
    /// For a WebSocket upgrade: whether its session still exists and may
    /// still reach the path (`None` for an ordinary request).
    pub alive: Option<Arc<dyn Fn() -> bool + Send + Sync>>,
    /// Most tunnels open at once in this process (`max_connections`).
    pub max_tunnels: usize,
}

/// Sets the forwarding headers on an upstream request.
fn set_forwarding(h: &mut HeaderMap, f: &Forward<'_>, orig_host: Option<HeaderValue>) {
    let client = f.peer.map(|p| p.ip().to_string()).unwrap_or_else(|| "unknown".into());
    let prior_xff: Vec<String> = if f.trusted {
        h.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok().map(str::to_string)).collect()
    } else {
        Vec::new()
    };
    let prior_fwd: Vec<String> = if f.trusted {
        h.get_all("forwarded").iter().filter_map(|v| v.to_str().ok().map(str::to_string)).collect()
    } else {
        Vec::new()
    };
    let proto = if f.trusted { h.get("x-forwarded-proto").cloned() } else { None };
    let host = if f.trusted { h.get("x-forwarded-host").cloned() } else { None };
    // Usually nothing to remove: collect only the names that go.
    let names: Vec<HeaderName> = h
        .keys()
        .filter(|n| is_identity_header(n.as_str()) || (!f.trusted && is_forwarding_header(n.as_str())))
        .cloned()
        .collect();
    for n in names {
        h.remove(&n);
    }
    let mut xff = prior_xff.join(", ");
    if !xff.is_empty() {
        xff.push_str(", ");
    }
    xff.push_str(&client);
    let proto = proto.unwrap_or_else(|| HeaderValue::from_static("http"));
    let host = host.or(orig_host);
    let for_part = match f.peer.map(|p| p.ip()) {
        Some(IpAddr::V6(a)) => format!("for=\"[{a}]\""),
        Some(IpAddr::V4(a)) => format!("for={a}"),
        None => "for=unknown".into(),
    };
    let mut fwd = format!("{for_part};proto={}", proto.to_str().unwrap_or("http"));
    if let Some(hv) = host.as_ref().and_then(|h| h.to_str().ok()) {
        fwd.push_str(&format!(";host=\"{}\"", hv.replace('"', "")));
    }
    let fwd = if prior_fwd.is_empty() { fwd } else { format!("{}, {fwd}", prior_fwd.join(", ")) };
    let set = |h: &mut HeaderMap, n: &'static str, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(n, v);
        }
    };
    set(h, "x-forwarded-for", &xff);
    h.insert("x-forwarded-proto", proto);
    if let Some(host) = host {
        h.insert("x-forwarded-host", host);
    }
    set(h, "forwarded", &fwd);
    h.insert("x-sessiond-user", header_user(f.identity.user));
    set(h, "x-sessiond-session", f.identity.handle);
}

/// Whether the request asks for a WebSocket tunnel.
pub fn wants_upgrade(h: &HeaderMap) -> bool {
    is_upgrade(h).is_some()
}

fn is_upgrade(h: &HeaderMap) -> Option<HeaderValue> {
    let conn_upgrade = h
        .get_all(hyper::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    // Only WebSocket is tunnelled: another protocol (h2c, raw TCP) would
    // give the client a channel the filters never see again.
    let up = h.get(hyper::header::UPGRADE)?;
    let websocket = up.to_str().is_ok_and(|v| v.split(',').any(|p| p.trim().eq_ignore_ascii_case("websocket")));
    if conn_upgrade && websocket { Some(HeaderValue::from_static("websocket")) } else { None }
}

/// Forwards `req` (already allowed by the filters) and returns the
/// upstream's answer, or a JSON 502/504, or 400 when the client's body
/// turned out malformed before the upstream answered.
pub async fn forward(f: Forward<'_>, mut req: Request<Incoming>) -> GwResp {
    let query = req.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
    let target =
        format!("{}://{}{}{}{}", f.upstream.scheme, f.upstream.authority, f.upstream.base, f.path.encoded(), query);
    let uri: Uri = match target.parse() {
        Ok(u) => u,
        Err(_) => return json_error(StatusCode::BAD_REQUEST, "bad_path", "the request path cannot be forwarded"),
    };
    let upgrade = f.alive.as_ref().and_then(|_| is_upgrade(req.headers()));
    if upgrade.is_some() && open_tunnels() >= f.max_tunnels {
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_tunnels",
            &format!("this worker has {} WebSocket tunnels open (max_connections)", f.max_tunnels),
        );
    }
    let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let orig_host = parts.headers.get(hyper::header::HOST).cloned();
    strip_hop_by_hop(&mut parts.headers);
    strip_cookie(&mut parts.headers, f.cookie_name);
    parts.headers.remove(hyper::header::HOST);
    set_forwarding(&mut parts.headers, &f, orig_host);
    if let Some(u) = &upgrade {
        parts.headers.insert(hyper::header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(hyper::header::UPGRADE, u.clone());
    }
    parts.uri = uri;
    parts.version = hyper::Version::HTTP_11;
    // A body error is the client's (hyper's decoder refused its framing):
    // remembered here, so that the failed upstream request is answered as
    // the client's 400 and not as the upstream's 502.
    let body_failed: Arc<std::sync::OnceLock<FramingError>> = Arc::default();
    let failed = body_failed.clone();
    let body = body.map_err(move |e| {
        let _ = failed.set(FramingError::body(&e));
        e
    });
    let up_req = Request::from_parts(parts, body.boxed());
    let resp = match tokio::time::timeout(f.timeout, f.client.request(up_req)).await {
        Err(_) => {
            return json_error(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                &format!("upstream {} did not answer within {:?}", f.upstream.name, f.timeout),
            );
        }
        Ok(Err(e)) => {
            if let Some(bad) = body_failed.get() {
                log::debug!("gateway: a request body for upstream {} was refused: {bad}", f.upstream.name);
                return framing_refusal(bad);
            }
            log::debug!("gateway: upstream {} failed: {e}", f.upstream.name);
            return json_error(
                StatusCode::BAD_GATEWAY,
                "upstream_unreachable",
                &format!("upstream {} could not be reached", f.upstream.name),
            );
        }
        Ok(Ok(r)) => r,
    };
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS
        && let Some(client_upgrade) = client_upgrade
    {
        let mut resp = resp;
        let upstream_upgrade = hyper::upgrade::on(&mut resp);
        if let Some(alive) = f.alive.clone() {
            tokio::spawn(tunnel(client_upgrade, upstream_upgrade, alive));
        }
        let (parts, _) = resp.into_parts();
        return Response::from_parts(parts, full(Bytes::new()));
    }
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    strip_set_cookie(&mut parts.headers, f.cookie_name);
    Response::from_parts(parts, body.boxed())
}

/// Copies both ways until either side closes or the session is gone.
async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    alive: Arc<dyn Fn() -> bool + Send + Sync>,
) {
    let (c, u) = tokio::join!(client, upstream);
    let (Ok(c), Ok(u)) = (c, u) else {
        log::debug!("gateway: a WebSocket upgrade did not complete");
        return;
    };
    struct Open;
    impl Drop for Open {
        fn drop(&mut self) {
            TUNNELS.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
    TUNNELS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let _open = Open;
    let (mut c, mut u) = (TokioIo::new(c), TokioIo::new(u));
    let watch = async {
        let mut tick = tokio::time::interval(TUNNEL_CHECK);
        loop {
            tick.tick().await;
            if !alive() {
                return;
            }
        }
    };
    tokio::select! {
        r = tokio::io::copy_bidirectional(&mut c, &mut u) => {
            if let Err(e) = r {
                log::debug!("gateway: WebSocket tunnel ended: {e}");
            }
        }
        _ = watch => log::debug!("gateway: WebSocket tunnel closed: its session is gone"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_named_headers_go_and_our_cookie_is_removed() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("keep-alive, x-secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("accept", HeaderValue::from_static("*/*"));
        h.append("cookie", HeaderValue::from_static("a=1; SESSIONID=abc; b=2"));
        h.append("cookie", HeaderValue::from_static("SESSIONID=def"));
        strip_hop_by_hop(&mut h);
        strip_cookie(&mut h, "SESSIONID");
        assert!(h.get("x-secret").is_none() && h.get("te").is_none() && h.get("connection").is_none());
        assert_eq!(h.get_all("cookie").iter().collect::<Vec<_>>(), ["a=1; b=2"]);
        assert_eq!(h.get("accept").unwrap(), "*/*");
        assert_eq!(header_user("alice@example.com"), "alice@example.com");
        assert_eq!(header_user("bob smith\r\nx: y"), "bob%20smith%0D%0Ax%3A%20y");
    }
}
