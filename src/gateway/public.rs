//! The public listener: what browsers and API clients reach.
//!
//! - `GET /.sessiond/login`: the login form (built in, or `login_template`);
//!   `POST /.sessiond/login`: form or JSON `{"user","password","rd"}`.
//! - `POST /.sessiond/logout`, `GET /.sessiond/session`.
//! - `/.sessiond/auth`: forward-auth for nginx `auth_request` and Traefik
//!   `forwardAuth`.
//! - Anything else is forwarded to the upstream with the longest matching
//!   prefix, when the session's filters allow it.
//!
//! Every route is chosen on the normalised path (under
//! `gateway.allow_encoded_percent`), and a request's framing is checked
//! first ([`framing`]): a body that is neither forwarded nor
//! read by its route is read to its end before the answer, so malformed
//! framing is always that request's 400. Password hashing runs on the
//! blocking pool (`spawn_blocking`), never on the worker's runtime thread.
//! Session ids travel only in this client's own `Set-Cookie`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};

use super::filters::{FilterKind, Filters};
use super::path::{NormalPath, PathError, normalise, normalise_with};
use super::proxy::{self, Forward, GwResp, Identity, Upstream, UpstreamClient, full, json_error};
use super::session_manager::{Decision, ManagerClient};
use super::throttle::Throttle;
use super::verifier::Verifier;
use super::{GATEWAY_ATTR, GatewayCore, GatewaySession, control, initial_filters};
use crate::config::Config;
use crate::contexts::{Context, Contexts};
use crate::region::{Change, SessionId};
use crate::session::SessionError;
use crate::web::framing::{self, FramingError};

/// Largest login body.
pub const MAX_LOGIN_BODY: usize = 8 * 1024;
/// Longest user name and password accepted at login.
pub const MAX_USER: usize = 256;
/// Longest password accepted at login.
pub const MAX_PASSWORD: usize = 1024;
/// Seconds a client is told to wait when no session manager answered.
pub const MANAGER_RETRY_AFTER: u64 = 5;

/// The built-in login page; `{{rd}}` and `{{error}}` are filled in (HTML-escaped).
const LOGIN_PAGE: &str = include_str!("login.html");

/// One worker's gateway.
pub struct Gateway {
    /// Settings, secret, outbox.
    pub core: Arc<GatewayCore>,
    /// The open contexts.
    pub contexts: Arc<Contexts>,
    /// The effective configuration.
    pub config: Arc<Config>,
    /// The password file.
    pub verifier: Arc<Verifier>,
    /// Login failure throttling (per process).
    pub throttle: Throttle,
    /// The session-manager hook.
    pub hook: ManagerClient,
    /// The upstream client pool.
    pub client: UpstreamClient,
    /// The upstreams, parsed.
    pub upstreams: Vec<Upstream>,
    /// The login page template.
    pub login_page: String,
    /// Bounds concurrent password checks (the blocking pool is shared).
    pub hashing: tokio::sync::Semaphore,
}

/// The session a request's cookie names: its id here, its gateway data,
/// and the id to re-issue when a cluster takeover gave it a new one.
type Current = (SessionId, GatewaySession, Option<SessionId>);

impl Gateway {
    /// Builds one worker's gateway, after `fork`, inside its runtime.
    pub fn start(core: Arc<GatewayCore>, contexts: Arc<Contexts>, config: Arc<Config>) -> Result<Gateway, String> {
        let g = &core.cfg;
        let verifier = Verifier::load(&g.verifier).map_err(|e| e.to_string())?;
        let upstreams =
            g.upstreams.iter().map(|u| Upstream::new(&u.name, &u.url, &u.prefix)).collect::<Result<Vec<_>, _>>()?;
        let login_page = match &g.login_template {
            Some(p) => std::fs::read_to_string(p)
                .map_err(|e| format!("gateway.login_template {}: cannot read it: {e}", p.display()))?,
            None => LOGIN_PAGE.to_string(),
        };
        let hook = ManagerClient::new(g.session_manager.clone(), g.session_manager_timeout, core.secret.clone());
        let throttle = Throttle::new(g.login_max_failures, g.login_window, 100_000);
        Ok(Gateway {
            core,
            contexts,
            config,
            verifier: Arc::new(verifier),
            throttle,
            hook,
            client: proxy::client(),
            upstreams,
            login_page,
            hashing: tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get())),
        })
    }

    fn ctx(&self) -> &Context {
        self.core.context(&self.contexts)
    }

    /// Reads to its end the body of a request that no one else reads
    /// ([`framing::drain`]); a malformed one gives the 400 to answer instead.
    async fn drain(&self, req: &mut Request<Incoming>) -> Result<(), GwResp> {
        framing::drain(req.body_mut(), self.config.request_timeout).await.map_err(|e| proxy::framing_refusal(&e))
    }

    /// `answer`, or the framing's 400 when the body of the request (which
    /// no one else reads) turns out malformed.
    async fn answer_unread(&self, req: &mut Request<Incoming>, answer: GwResp) -> GwResp {
        self.drain(req).await.err().unwrap_or(answer)
    }

    /// Whether the peer may speak for the client (`Forwarded`,
    /// `X-Forwarded-*`). A Unix-socket peer (`None`) is a local process that
    /// the socket's file permissions let in: the proxy in front, trusted.
    fn trusted(&self, peer: Option<SocketAddr>) -> bool {
        match peer {
            None => true,
            Some(p) => self.core.cfg.trusted_proxies.iter().any(|n| n.contains(&p.ip())),
        }
    }

    /// The session named by the request's cookie, with its gateway data
    /// (touching it when `touch`). In cluster mode a session another node
    /// held is taken over from the store first; a store that cannot be
    /// reached for that answers 503 (never "log in again", which would
    /// leave the session behind).
    async fn current(&self, req: &Request<Incoming>, touch: bool) -> Result<Option<Current>, GwResp> {
        let ctx = self.ctx();
        let mut asked = crate::web::lookup::cookie_candidates(req.headers(), &ctx.cfg.cookie_name);
        let tag = ctx.sessions.tag();
        asked.retain(|id| id.context == tag);
        let mut buf = Vec::new();
        match ctx.sessions.get_attr(asked.as_slice(), GATEWAY_ATTR, touch, crate::clock::now_ms(), &mut buf).await {
            Ok(f) if f.value => Ok(GatewaySession::decode(&buf).map(|gw| (f.id, gw, f.reissued))),
            Ok(_) => Ok(None),
            Err(e @ SessionError::Unavailable(_)) => Err(api_error(e.into())),
            Err(_) => Ok(None),
        }
    }

    /// Adds the re-issued id's cookie to `r`, if any.
    fn reissue(&self, r: GwResp, id: Option<SessionId>) -> GwResp {
        match id {
            Some(id) => with_header(r, "set-cookie", &crate::web::set_cookie(self.ctx(), Some(&id))),
            None => r,
        }
    }
}

fn wants_html(req: &Request<Incoming>) -> bool {
    req.headers().get_all(hyper::header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).any(|v| v.contains("text/html"))
}

fn status(s: StatusCode) -> GwResp {
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = s;
    r
}

fn with_header(mut r: GwResp, name: &'static str, value: &str) -> GwResp {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().append(name, v);
    }
    r
}

fn json_resp(s: StatusCode, v: Value) -> GwResp {
    with_header(
        {
            let mut r = Response::new(full(v.to_string()));
            *r.status_mut() = s;
            r
        },
        "content-type",
        "application/json",
    )
}

/// HTML-escapes text for the login page.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// A redirect target is accepted only as a path on this origin: it
/// starts with one '/', has no '\\', no scheme or authority, no control
/// characters, and is at most 2 KiB.
pub fn safe_redirect(rd: &str) -> bool {
    rd.len() <= 2048
        && rd.starts_with('/')
        && !rd.starts_with("//")
        && !rd.starts_with("/\\")
        && !rd.contains('\\')
        && !rd.bytes().any(|b| b.is_ascii_control() || b == b' ')
        && normalise(rd.split(['?', '#']).next().unwrap_or("/")).is_ok()
}

/// The 400 answer to a refused path: `ambiguous_path` for one encoded more
/// than once, `bad_path` otherwise.
fn path_refusal(e: &PathError) -> GwResp {
    json_error(StatusCode::BAD_REQUEST, e.code(), &e.to_string())
}

/// Handles one request on the public listener.
pub async fn handle(
    gw: Arc<Gateway>,
    peer: Option<SocketAddr>,
    mut req: Request<Incoming>,
) -> Result<GwResp, std::convert::Infallible> {
    if let Err(e) = framing::check_head(req.headers()) {
        return Ok(proxy::framing_refusal(&e));
    }
    // The parsed URI never holds a fragment, and `normalise` refuses a '#'.
    let path = match normalise_with(req.uri().path(), gw.core.path_rules()) {
        Ok(p) => p,
        Err(e) => return Ok(path_refusal(&e)),
    };
    if path.category() == Some(".sessiond") {
        let m = req.method().clone();
        // Only a login reads its body.
        if (path.as_str(), &m) != ("/.sessiond/login", &Method::POST)
            && let Err(r) = gw.drain(&mut req).await
        {
            return Ok(r);
        }
        return Ok(match (path.as_str(), m) {
            ("/.sessiond/login", Method::GET) => login_page(&gw, &req, None, StatusCode::OK),
            ("/.sessiond/login", Method::POST) => login(&gw, peer, req).await,
            ("/.sessiond/logout", Method::POST) => logout(&gw, &req).await,
            ("/.sessiond/session", Method::GET) => session(&gw, &req).await,
            ("/.sessiond/auth", _) => auth(&gw, &req).await,
            ("/.sessiond/login", _) => with_header(status(StatusCode::METHOD_NOT_ALLOWED), "allow", "GET, POST"),
            ("/.sessiond/logout", _) => with_header(status(StatusCode::METHOD_NOT_ALLOWED), "allow", "POST"),
            ("/.sessiond/session", _) => with_header(status(StatusCode::METHOD_NOT_ALLOWED), "allow", "GET"),
            _ => json_error(StatusCode::NOT_FOUND, "route_not_found", "no such gateway endpoint"),
        });
    }
    Ok(forward(&gw, peer, path, req).await)
}

fn unauthenticated(req: &Request<Incoming>) -> GwResp {
    if wants_html(req) {
        let pq = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let rd = percent_encoding::utf8_percent_encode(pq, percent_encoding::NON_ALPHANUMERIC).to_string();
        with_header(status(StatusCode::FOUND), "location", &format!("/.sessiond/login?rd={rd}"))
    } else {
        json_error(StatusCode::UNAUTHORIZED, "unauthenticated", "log in first: POST /.sessiond/login")
    }
}

async fn forward(gw: &Arc<Gateway>, peer: Option<SocketAddr>, path: NormalPath, mut req: Request<Incoming>) -> GwResp {
    // A request answered here is not forwarded: its body is read first.
    let (id, session, re) = match gw.current(&req, true).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            let r = unauthenticated(&req);
            return gw.answer_unread(&mut req, r).await;
        }
        Err(r) => return gw.answer_unread(&mut req, r).await,
    };
    let Some(upstream) = proxy::route(&gw.upstreams, &path) else {
        let r = json_error(StatusCode::NOT_FOUND, "no_upstream", "no upstream serves this path");
        return gw.answer_unread(&mut req, r).await;
    };
    if !session.filters.allows(&path, Some(&upstream.name)) {
        let r = json_error(StatusCode::FORBIDDEN, "filtered", "this session may not reach this path");
        return gw.answer_unread(&mut req, r).await;
    }
    let handle = gw.core.handle_of(&id);
    // Only an upgrade becomes a tunnel; it lives while its session exists
    // and its filters still allow it.
    let alive: Option<Arc<dyn Fn() -> bool + Send + Sync>> = proxy::wants_upgrade(req.headers()).then(|| {
        let g2 = gw.clone();
        let (tunnel_path, adapter) = (path.clone(), upstream.name.clone());
        Arc::new(move || {
            let mut buf = Vec::new();
            matches!(g2.ctx().sessions.peek_attr(&id, GATEWAY_ATTR, crate::clock::now_ms(), &mut buf), Ok(true))
                && GatewaySession::decode(&buf).is_some_and(|s| s.filters.allows(&tunnel_path, Some(&adapter)))
        }) as Arc<dyn Fn() -> bool + Send + Sync>
    });
    let f = Forward {
        client: &gw.client,
        upstream,
        path: &path,
        identity: Identity { user: &session.user, handle: &handle },
        peer,
        trusted: gw.trusted(peer),
        cookie_name: &gw.ctx().cfg.cookie_name,
        timeout: gw.core.cfg.upstream_timeout,
        alive,
        max_tunnels: gw.config.max_connections as usize,
    };
    gw.reissue(proxy::forward(f, req).await, re)
}

async fn session(gw: &Gateway, req: &Request<Incoming>) -> GwResp {
    let (id, _, re) = match gw.current(req, true).await {
        Ok(Some(c)) => c,
        Ok(None) => return json_error(StatusCode::UNAUTHORIZED, "unauthenticated", "no session"),
        Err(r) => return r,
    };
    match control::read(&gw.ctx().sessions, &id) {
        Ok((meta, s)) => gw.reissue(json_resp(StatusCode::OK, control::view(&meta, &s)), re),
        Err(_) => json_error(StatusCode::UNAUTHORIZED, "unauthenticated", "no session"),
    }
}

/// Forward-auth: nginx `auth_request` and Traefik `forwardAuth`.
async fn auth(gw: &Gateway, req: &Request<Incoming>) -> GwResp {
    let (id, session, re) = match gw.current(req, true).await {
        Ok(Some(c)) => c,
        Ok(None) => return json_error(StatusCode::UNAUTHORIZED, "unauthenticated", "no session"),
        Err(r) => return r,
    };
    // Traefik sets X-Forwarded-Uri, nginx's snippet X-Original-URI; a
    // client may send either itself, and a proxy may pass the other one
    // through untouched. So every value present must agree, or the
    // question is ambiguous and refused: a forged header can never pick
    // the path that is judged.
    let mut uris = req
        .headers()
        .get_all("x-forwarded-uri")
        .iter()
        .chain(req.headers().get_all("x-original-uri").iter())
        .map(|v| v.to_str().unwrap_or("\u{0}"));
    let Some(first) = uris.next() else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "missing_uri",
            "forward-auth needs X-Forwarded-Uri or X-Original-URI: the path to judge",
        );
    };
    if uris.any(|u| u != first) {
        return json_error(
            StatusCode::BAD_REQUEST,
            "ambiguous_uri",
            "X-Forwarded-Uri and X-Original-URI disagree; the proxy must set the one it sends (see docs/gateway-proxies.md)",
        );
    }
    let uri = first;
    if uri.contains('#') {
        return json_error(StatusCode::BAD_REQUEST, "bad_path", "a '#' fragment is never sent by a browser");
    }
    // The same rules as a forwarded request's path, multiple encoding included.
    let raw = uri.split('?').next().unwrap_or("/");
    let path = match normalise_with(raw, gw.core.path_rules()) {
        Ok(p) => p,
        Err(e) => return path_refusal(&e),
    };
    let adapter = proxy::route(&gw.upstreams, &path).map(|u| u.name.as_str());
    if !session.filters.allows(&path, adapter) {
        return json_error(StatusCode::FORBIDDEN, "filtered", "this session may not reach this path");
    }
    let r = gw.reissue(status(StatusCode::NO_CONTENT), re);
    let mut r = with_header(r, "x-sessiond-session", &gw.core.handle_of(&id));
    r.headers_mut().insert("x-sessiond-user", proxy::header_user(&session.user));
    r
}

fn login_page(gw: &Gateway, req: &Request<Incoming>, error: Option<&str>, code: StatusCode) -> GwResp {
    let rd = req
        .uri()
        .query()
        .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "rd").map(|(_, v)| v.into_owned()))
        .filter(|rd| safe_redirect(rd))
        .unwrap_or_else(|| "/".into());
    page(gw, &rd, error, code)
}

fn page(gw: &Gateway, rd: &str, error: Option<&str>, code: StatusCode) -> GwResp {
    let html = gw.login_page.replace("{{rd}}", &escape(rd)).replace(
        "{{error}}",
        &error.map(|e| format!("<p role=\"alert\" class=\"error\">{}</p>", escape(e))).unwrap_or_default(),
    );
    let mut r = Response::new(full(html));
    *r.status_mut() = code;
    let r = with_header(r, "content-type", "text/html; charset=utf-8");
    let r = with_header(r, "cache-control", "no-store");
    let r = with_header(r, "x-frame-options", "DENY");
    with_header(
        r,
        "content-security-policy",
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
    )
}

/// The credentials of a login request.
struct Credentials {
    user: String,
    password: String,
    rd: Option<String>,
    form: bool,
}

async fn read_credentials(req: Request<Incoming>, timeout: Duration) -> Result<Credentials, GwResp> {
    let is_json = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let body = match tokio::time::timeout(timeout, Limited::new(req.into_body(), MAX_LOGIN_BODY).collect()).await {
        Err(_) => {
            return Err(json_error(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                "the login body did not arrive in time",
            ));
        }
        Ok(Err(e)) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            return Err(json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                &format!("a login body is at most {MAX_LOGIN_BODY} bytes"),
            ));
        }
        Ok(Err(e)) => return Err(proxy::framing_refusal(&FramingError::body(&*e))),
        Ok(Ok(b)) => b.to_bytes(),
    };
    let (user, password, rd) = if is_json {
        let v: Value = serde_json::from_slice(&body)
            .map_err(|e| json_error(StatusCode::BAD_REQUEST, "bad_json", &format!("invalid login body: {e}")))?;
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        (s("user"), s("password"), s("rd"))
    } else {
        let mut u = None;
        let mut p = None;
        let mut rd = None;
        for (k, v) in form_urlencoded::parse(&body) {
            match &*k {
                "user" => u = Some(v.into_owned()),
                "password" => p = Some(v.into_owned()),
                "rd" => rd = Some(v.into_owned()),
                _ => {}
            }
        }
        (u, p, rd)
    };
    let (Some(user), Some(password)) = (user, password) else {
        return Err(json_error(StatusCode::BAD_REQUEST, "bad_login", "give \"user\" and \"password\""));
    };
    if user.is_empty() || user.len() > MAX_USER || user.chars().any(char::is_control) || password.len() > MAX_PASSWORD {
        return Err(json_error(
            StatusCode::BAD_REQUEST,
            "bad_login",
            &format!(
                "a user name is 1 to {MAX_USER} bytes without control characters; a password at most {MAX_PASSWORD} bytes"
            ),
        ));
    }
    Ok(Credentials { user, password, rd, form: !is_json })
}

/// Whether a browser's `Origin` (when sent) is this listener's own.
fn same_origin(req: &Request<Incoming>) -> bool {
    let Some(origin) = req.headers().get(hyper::header::ORIGIN).and_then(|v| v.to_str().ok()) else { return true };
    let Some(host) = req.headers().get(hyper::header::HOST).and_then(|v| v.to_str().ok()) else { return false };
    origin.split_once("://").is_some_and(|(_, rest)| rest.trim_end_matches('/') == host)
}

async fn login(gw: &Arc<Gateway>, peer: Option<SocketAddr>, req: Request<Incoming>) -> GwResp {
    if !same_origin(&req) {
        return json_error(StatusCode::FORBIDDEN, "bad_origin", "a login must come from this site's own page");
    }
    let trusted = gw.trusted(peer);
    let addr = proxy::client_addr(peer, req.headers(), trusted).unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
    let old = gw.current(&req, false).await.ok().flatten().map(|(id, s, _)| (id, s));
    let user_agent =
        req.headers().get(hyper::header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let timeout = gw.config.request_timeout;
    let c = match read_credentials(req, timeout).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    // At most as many password checks at once as the machine has cores;
    // the throttle is consulted once a check may run, so parallel
    // attempts cannot all slip past it.
    let Ok(_permit) = gw.hashing.acquire().await else {
        return json_error(StatusCode::SERVICE_UNAVAILABLE, "stopping", "the server is stopping");
    };
    if let Err(wait) = gw.throttle.check(addr, &c.user, Instant::now()) {
        let secs = wait.as_secs().max(1);
        let r = json_error(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            &format!("too many failed logins; try again in {secs} s"),
        );
        return with_header(r, "retry-after", &secs.to_string());
    }
    // Hashing is slow by design: the blocking pool, never this thread.
    let v = gw.verifier.clone();
    let (user, password) = (c.user.clone(), c.password.clone());
    let ok = tokio::task::spawn_blocking(move || v.check(&user, &password)).await.unwrap_or(false);
    if !ok {
        gw.throttle.failure(addr, &c.user, Instant::now());
        log::info!("gateway: login refused for user {:?} from {addr}: wrong user or password", c.user);
        if c.form {
            let rd = c.rd.as_deref().filter(|r| safe_redirect(r)).unwrap_or("/");
            return page(gw, rd, Some("Wrong user name or password."), StatusCode::UNAUTHORIZED);
        }
        return json_error(StatusCode::UNAUTHORIZED, "permission_denied", "wrong user name or password");
    }
    gw.throttle.success(addr, &c.user);
    let ctx = gw.ctx();
    let now = crate::clock::now_ms();
    // The new session is announced (events) only once it is complete and
    // in the store: every refusal below drops it as if it never was.
    let pending = match ctx.sessions.begin_create(now) {
        Ok(p) => p,
        Err(e) => return api_error(e.into()),
    };
    let id = pending.meta().id;
    let handle = gw.core.handle_of(&id);
    let old_handle = old.as_ref().map(|(oid, _)| gw.core.handle_of(oid));
    let mut filters = match initial_filters(&gw.core, &c.user) {
        Ok(f) => f,
        Err(e) => {
            pending.abort();
            log::error!("gateway: the configured filters are invalid: {e}");
            return json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the gateway's filters are misconfigured",
            );
        }
    };
    let mut attributes = serde_json::Map::new();
    if gw.hook.enabled() {
        let request = json!({
            "type": "session.create",
            "user": c.user,
            "session": handle,
            "control": format!("/v1/gateway/sessions/{handle}"),
            "replaces": old_handle,
            "client": {"addr": addr.to_string(), "user_agent": user_agent},
        });
        match gw.hook.create(&request).await {
            Ok(Decision::Allow { filters: f, attributes: a }) => {
                if let Some(f) = f {
                    match filters_from_json(&f) {
                        Ok(f) => filters = f,
                        Err(e) => {
                            pending.abort();
                            log::warn!("gateway: the session manager's filters were refused: {e}");
                            return manager_unavailable();
                        }
                    }
                }
                attributes = a;
            }
            Ok(Decision::Refuse { reason }) => {
                pending.abort();
                log::info!("gateway: the session manager refused user {:?}: {reason}", c.user);
                return json_resp(StatusCode::FORBIDDEN, json!({"error": "session_refused", "reason": reason}));
            }
            Err(e) => {
                pending.abort();
                log::warn!("gateway: login of user {:?} failed: {e}", c.user);
                return manager_unavailable();
            }
        }
    }
    let gw_value = GatewaySession { user: c.user.clone(), filters }.encode();
    let mut changes: Vec<Change<'_>> = vec![(GATEWAY_ATTR, Some(&gw_value))];
    let kept: Vec<(String, Vec<u8>)> = attributes
        .iter()
        .filter(|(k, _)| !crate::session::is_reserved(k))
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().as_bytes().to_vec()))
        .collect();
    changes.extend(kept.iter().map(|(k, v)| (k.as_str(), Some(v.as_slice()))));
    // The session belongs to the user: listed and ended with the user's
    // other sessions, and counted against sessions.max_sessions_per_principal.
    let principal = match crate::session::check_principal(&c.user) {
        Ok(()) => Some(c.user.as_str()),
        Err(e) => {
            log::warn!("gateway: user {:?} cannot be a session principal ({e}); the session has none", c.user);
            None
        }
    };
    let edit = crate::region::Edit {
        changes: &changes,
        meta: crate::region::MetaChange { principal: principal.map(Some), ..Default::default() },
        expect: None,
    };
    // Cluster mode: the login is in the store before the cookie is sent.
    if let Err(e) = pending.commit_edit(&edit, crate::clock::now_ms()).await {
        log::warn!("gateway: cannot store the new session of {:?}: {e}", c.user);
        return api_error(e.into());
    }
    gw.core.record_live(&handle, &c.user).await;
    // A login with a valid session replaces it: a new id on login, against fixation.
    if let Some((oid, old_gw)) = old
        && ctx.sessions.invalidate(std::slice::from_ref(&oid), crate::clock::now_ms()).await.is_ok()
    {
        gw.core.notify_destroyed(&gw.core.handle_of(&oid), &old_gw.user, "replaced").await;
    }
    log::info!("gateway: user {:?} logged in from {addr}", c.user);
    let cookie = crate::web::set_cookie(ctx, Some(&id));
    let resp = match c.rd.as_deref().filter(|r| safe_redirect(r)) {
        Some(rd) => with_header(status(StatusCode::SEE_OTHER), "location", rd),
        None => status(StatusCode::NO_CONTENT),
    };
    with_header(with_header(resp, "set-cookie", &cookie), "cache-control", "no-store")
}

/// A session-layer refusal as the gateway's JSON answer (the same status,
/// code and `Retry-After` as on the private listener).
fn api_error(e: crate::web::ApiError) -> GwResp {
    let r = json_error(e.status, e.code, &e.message);
    match &e.header {
        Some((name, value)) => with_header(r, name, value),
        None => r,
    }
}

fn manager_unavailable() -> GwResp {
    with_header(
        json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "session_manager_unavailable",
            "the session manager did not answer; try again shortly",
        ),
        "retry-after",
        &MANAGER_RETRY_AFTER.to_string(),
    )
}

/// Filters a session manager granted (`{"categories":[…], …}`).
fn filters_from_json(v: &Value) -> Result<Filters, String> {
    let mut f = Filters::default();
    let o = v.as_object().ok_or("filters must be an object")?;
    for (k, items) in o {
        let kind: FilterKind = k.parse().map_err(|e| format!("{e}"))?;
        let items: Vec<String> = items
            .as_array()
            .ok_or_else(|| format!("filters.{k} must be an array of strings"))?
            .iter()
            .map(|i| i.as_str().map(str::to_string).ok_or_else(|| format!("filters.{k} must be an array of strings")))
            .collect::<Result<_, _>>()?;
        f.add(kind, &items).map_err(|e| e.to_string())?;
    }
    Ok(f)
}

async fn logout(gw: &Gateway, req: &Request<Incoming>) -> GwResp {
    if !same_origin(req) {
        return json_error(StatusCode::FORBIDDEN, "bad_origin", "a logout must come from this site's own page");
    }
    let ctx = gw.ctx();
    if let Ok(Some((id, s, _))) = gw.current(req, false).await
        && let Ok(ended) = ctx.sessions.invalidate(std::slice::from_ref(&id), crate::clock::now_ms()).await
    {
        if let Err(e) = ended.store {
            log::warn!("gateway: logout of {:?}: {e}; the change is kept and flushed when the store returns", s.user);
        }
        gw.core.notify_destroyed(&gw.core.handle_of(&id), &s.user, "logout").await;
        log::info!("gateway: user {:?} logged out", s.user);
    }
    let cookie = crate::web::set_cookie(ctx, None);
    let resp = if wants_html(req) {
        with_header(status(StatusCode::SEE_OTHER), "location", "/.sessiond/login")
    } else {
        status(StatusCode::NO_CONTENT)
    };
    with_header(resp, "set-cookie", &cookie)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_same_origin_paths_are_redirect_targets() {
        for ok in ["/", "/app", "/app/x?y=1", "/a%20b"] {
            assert!(safe_redirect(ok), "{ok}");
        }
        for bad in [
            "https://evil.example/",
            "//evil.example",
            "/\\evil.example",
            "\\\\evil",
            "javascript:alert(1)",
            "evil.example",
            "/a\r\nSet-Cookie: x",
            "",
            "/%2f%2fevil",
        ] {
            assert!(!safe_redirect(bad), "{bad:?}");
        }
        assert_eq!(escape("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
    }
}
