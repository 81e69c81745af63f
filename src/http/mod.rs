//! The HTTP session API: routing, request limits and metrics recording.
//!
//! # Layout
//! | file | concern |
//! | --- | --- |
//! | `mod.rs` | [`AppState`], the router, body limits, per-request metrics |
//! | [`sessions`] | `/v1/sessions…` (by id) and `/v1/session…` (current session) |
//! | [`admin`] | `/v1/contexts`, `/healthz`, `/metrics` |
//! | [`gateway`] | `/v1/gateway/sessions/{handle}…`: the gateway's control API |
//!
//! Id lookup, the session cookie and JSON errors are shared with the
//! gateway and live in [`crate::web`].
//!
//! It talks to sessions only through the region's safe API and never
//! reaches into region bytes. One request's failure is that request's
//! answer; nothing here can take the worker down. A request's framing is
//! checked as on the gateway ([`crate::web::framing`]): a refused one,
//! and a malformed body, get 400 with the connection closed.

pub mod admin;
pub mod gateway;
pub mod sessions;

pub use crate::web::{error, lookup};

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};

use crate::config::Config;
use crate::contexts::Contexts;
use crate::metrics::{Route, ServerStats};
use crate::web::framing::{self, FramingError};
pub use error::ApiError;

/// What a worker's request handlers share.
pub struct AppState {
    /// Open contexts (regions inherited from the master).
    pub contexts: Arc<Contexts>,
    /// Effective configuration.
    pub config: Arc<Config>,
    /// Shared server counters.
    pub stats: Arc<ServerStats>,
    /// This worker's number (its metrics block).
    pub worker: usize,
    /// The gateway's core, when `[gateway]` is configured (control API).
    pub gateway: Option<Arc<crate::gateway::GatewayCore>>,
    /// The bearer token the private listener requires (`api_token_file`).
    pub api_token: Option<Vec<u8>>,
}

/// A response with a fully buffered body.
pub type Resp = Response<Full<Bytes>>;

/// Builds a response: status, optional `Content-Type`, body. The one place
/// responses are assembled.
pub fn respond(status: StatusCode, content_type: Option<&'static str>, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Some(ct) = content_type {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(ct));
    }
    r
}

/// Handles one request and records it in the shared metrics.
pub async fn handle(state: Arc<AppState>, req: Request<Incoming>) -> Result<Resp, std::convert::Infallible> {
    let start = Instant::now();
    let (route, result) = match authorised(&state, &req) {
        Ok(()) => dispatch(&state, req).await,
        Err(e) => (Route::Other, Err(e)),
    };
    let resp = result.unwrap_or_else(ApiError::into_response);
    state.stats.record(state.worker, route, resp.status().as_u16(), start.elapsed());
    Ok(resp)
}

/// With `api_token_file`, every request needs `Authorization: Bearer
/// <token>`, compared in constant time.
fn authorised(st: &AppState, req: &Request<Incoming>) -> Result<(), ApiError> {
    let Some(want) = &st.api_token else { return Ok(()) };
    let given = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .unwrap_or_default();
    // Digests of both, compared in constant time: not even the length leaks.
    if crate::crypto::digests_eq(given, want) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this listener requires Authorization: Bearer <the token in api_token_file>",
        )
        .with_header("www-authenticate", "Bearer".into()))
    }
}

fn method_not_allowed(allow: &'static str) -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", format!("this path allows {allow}"))
        .with_header("allow", allow.to_string())
}

impl From<FramingError> for ApiError {
    fn from(e: FramingError) -> ApiError {
        ApiError::bad_request(e.code(), e.to_string()).with_header("connection", "close".into())
    }
}

/// Whether the route of `segments` and `m` takes no request body, so that
/// [`dispatch`] reads any body to its end first ([`framing::drain`]) and a
/// malformed one is that request's 400 rather than a success and a closed
/// connection. Listed by what is known to take none (methods without a body,
/// the POSTs that create or rotate), so that a route that reads its body is
/// never drained by mistake: a new one is simply not listed.
fn takes_no_body(segments: &[&str], m: &Method) -> bool {
    match *m {
        Method::GET | Method::HEAD | Method::DELETE | Method::OPTIONS => true,
        Method::POST => matches!(
            segments,
            ["v1", "session"]
                | ["v1", "sessions", _, "rotate"]
                | ["v1", "session", "rotate"]
                | ["v1", "sessions", _, "touch"]
                | ["v1", "session", "touch"]
        ),
        _ => false,
    }
}

async fn dispatch(st: &AppState, mut req: Request<Incoming>) -> (Route, Result<Resp, ApiError>) {
    if let Err(e) = framing::check_head(req.headers()) {
        return (Route::Other, Err(e.into()));
    }
    // A refcounted clone (no copy): the path outlives `req`, which PUT and
    // PATCH hand over to body reading.
    let uri = req.uri().clone();
    let path = uri.path();
    let Some(sp) = lookup::split_path(path) else {
        return (
            Route::Other,
            Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "route_not_found",
                format!("path has more than {} segments", lookup::MAX_SEGMENTS),
            )),
        );
    };
    let m = req.method().clone();
    if takes_no_body(sp.segments(), &m)
        && let Err(e) = framing::drain(req.body_mut(), st.config.request_timeout).await
    {
        return (Route::Other, Err(e.into()));
    }
    use sessions as s;
    match (sp.segments(), &m) {
        (["healthz"], &Method::GET) => (Route::Health, admin::healthz(st)),
        (["metrics"], &Method::GET) => (Route::Metrics, admin::metrics(st)),
        (["v1", "contexts"], &Method::GET) => (Route::Contexts, admin::contexts(st)),
        (["healthz"] | ["metrics"] | ["v1", "contexts"], _) => (Route::Other, Err(method_not_allowed("GET"))),

        (["v1", "gateway", "sessions", rest @ ..], _) if !rest.is_empty() => {
            let rest: Vec<&str> = rest.to_vec();
            (Route::GatewayControl, gateway::route(st, req, &rest).await)
        }
        (["v1", "sessions"], &Method::POST) => (Route::Create, s::create(st, req).await),
        (["v1", "sessions"], &Method::GET) => (Route::List, s::list(st, &req)),
        (["v1", "sessions"], _) => (Route::Other, Err(method_not_allowed("GET, POST"))),
        (["v1", "sessions", id], _) => {
            let t = s::Target::by_id(st, id);
            match m {
                Method::GET => (Route::Get, s::get(&req, t).await),
                Method::PATCH => (Route::Patch, async { s::patch(st, t?, req).await }.await),
                Method::DELETE => (Route::Delete, s::delete(&req, t).await),
                _ => (Route::Other, Err(method_not_allowed("GET, PATCH, DELETE"))),
            }
        }
        (["v1", "sessions", id, "rotate"], &Method::POST) => {
            (Route::Rotate, s::rotate(&req, s::Target::by_id(st, id)).await)
        }
        (["v1", "sessions", id, "touch"], &Method::POST) => (Route::Touch, s::touch(s::Target::by_id(st, id)).await),
        (["v1", "principals", name, "sessions"], _) => match m {
            Method::GET => (Route::Principal, s::principal_list(st, &req, name).await),
            Method::DELETE => (Route::Principal, s::principal_delete(st, name).await),
            _ => (Route::Other, Err(method_not_allowed("GET, DELETE"))),
        },
        (["v1", "sessions", id, "attributes", name], _) => {
            let t = s::Target::by_id(st, id);
            attr_route(st, req, t, name).await
        }

        (["v1", "session"], _) => {
            let t = s::Target::current(st, &req, sp.params());
            match m {
                Method::POST => (Route::Current, s::get_or_create(t).await),
                Method::GET => (Route::Get, s::get(&req, t).await),
                Method::PATCH => (Route::Patch, async { s::patch(st, t?, req).await }.await),
                Method::DELETE => (Route::Delete, s::delete(&req, t).await),
                _ => (Route::Other, Err(method_not_allowed("GET, POST, PATCH, DELETE"))),
            }
        }
        (["v1", "session", "rotate"], &Method::POST) => {
            (Route::Rotate, s::rotate(&req, s::Target::current(st, &req, sp.params())).await)
        }
        (["v1", "session", "touch"], &Method::POST) => {
            (Route::Touch, s::touch(s::Target::current(st, &req, sp.params())).await)
        }
        (["v1", "session", "attributes", name], _) => {
            let t = s::Target::current(st, &req, sp.params());
            attr_route(st, req, t, name).await
        }
        (
            ["v1", "sessions", _, "rotate"]
            | ["v1", "session", "rotate"]
            | ["v1", "sessions", _, "touch"]
            | ["v1", "session", "touch"],
            _,
        ) => (Route::Other, Err(method_not_allowed("POST"))),
        _ => {
            (Route::Other, Err(ApiError::new(StatusCode::NOT_FOUND, "route_not_found", format!("no route for {path}"))))
        }
    }
}

async fn attr_route(
    st: &AppState,
    req: Request<Incoming>,
    t: Result<sessions::Target<'_>, ApiError>,
    raw_name: &str,
) -> (Route, Result<Resp, ApiError>) {
    let name = lookup::decode_name(raw_name).map_err(|why| {
        let shown: String = raw_name.chars().take(64).collect();
        ApiError::bad_request("invalid_name", format!("{why}: {shown:?} (percent-encoded as sent)"))
    });
    match *req.method() {
        Method::GET => (Route::AttrGet, sessions::attr_get(&req, t, name).await),
        Method::PUT => (Route::AttrPut, async { sessions::attr_put(st, t?, name?, req).await }.await),
        Method::DELETE => (Route::AttrDelete, sessions::attr_delete(&req, t, name).await),
        _ => (Route::Other, Err(method_not_allowed("GET, PUT, DELETE"))),
    }
}

/// Reads a request body of at most `limit` bytes within `timeout`.
/// A declared or actual size over the limit is 413; a body that does not
/// arrive in time is 408.
pub async fn read_body(req: Request<Incoming>, limit: usize, timeout: Duration, what: &str) -> Result<Bytes, ApiError> {
    if let Some(len) =
        req.headers().get(hyper::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        && len > limit as u64
    {
        return Err(too_large(len, limit, what));
    }
    let body = Limited::new(req.into_body(), limit);
    match tokio::time::timeout(timeout, body.collect()).await {
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!("request body not received within {timeout:?} (request_timeout)"),
        )),
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            Err(too_large(limit as u64 + 1, limit, what))
        }
        Ok(Err(e)) => Err(FramingError::body(&*e).into()),
    }
}

fn too_large(len: u64, limit: usize, what: &str) -> ApiError {
    let shown = if len > limit as u64 + 1 { format!("is {len} bytes") } else { "is longer".to_string() };
    let (code, key) = if what == "value" {
        ("value_too_large", "max_value_size")
    } else {
        ("body_too_large", "a bound derived from max_values_per_session, max_name_size and max_value_size")
    };
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, code, format!("{what} {shown}; the limit is {limit} bytes ({key})"))
}
