//! Session endpoints: `/v1/sessions…` addressed by id, and `/v1/session…`
//! addressed by the request's cookie, URL path parameter or header.
//!
//! Both forms resolve to a [`Target`] (a context and candidate ids) and
//! then share the same handlers. Values are binary-safe: a value that is
//! valid UTF-8 appears in JSON as a string; any other value appears as
//! `{"base64": "<standard base64>"}`, and PATCH accepts both forms.

use std::borrow::Cow;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, SET_COOKIE};
use hyper::{Request, StatusCode};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

use super::{ApiError, AppState, Resp, lookup, read_body, respond};
use crate::clock::now_ms;
use crate::clock::rfc3339_millis as rfc3339;
use crate::contexts::Context;
use crate::region::{SessionId, SessionMeta};

/// Largest page of `GET /v1/sessions`.
pub const MAX_LIST_LIMIT: usize = 1000;

/// The session(s) a request addresses.
pub struct Target<'a> {
    /// The context.
    pub ctx: &'a Context,
    /// Candidate ids, best first (may be empty for the current session).
    pub ids: lookup::Ids,
}

fn query(req: &Request<Incoming>, key: &str) -> Option<String> {
    let q = req.uri().query()?;
    form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == key).map(|(_, v)| v.into_owned())
}

fn context<'a>(st: &'a AppState, req: &Request<Incoming>) -> Result<&'a Context, ApiError> {
    match query(req, "context") {
        None => Ok(st.contexts.default_context()),
        Some(name) => st.contexts.by_name(&name).ok_or_else(|| {
            let shown: String = name.chars().take(64).collect();
            ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_context",
                format!("no context named {shown:?}; see GET /v1/contexts"),
            )
        }),
    }
}

impl<'a> Target<'a> {
    /// `/v1/sessions/{id}`: the id names its context.
    pub fn by_id(st: &'a AppState, raw: &str) -> Result<Target<'a>, ApiError> {
        let id = SessionId::parse(raw.as_bytes()).ok_or_else(ApiError::session_not_found)?;
        let ctx = st.contexts.by_tag(id.context).ok_or_else(ApiError::session_not_found)?;
        Ok(Target { ctx, ids: lookup::Ids::one(id) })
    }

    /// `/v1/session`: the context from `?context=`, ids from the request.
    pub fn current(st: &'a AppState, req: &Request<Incoming>, params: &[(&str, &str)]) -> Result<Target<'a>, ApiError> {
        let ctx = context(st, req)?;
        let mut ids = lookup::candidates(params, req.headers(), &ctx.cfg.url_param, &ctx.cfg.cookie_name);
        let tag = ctx.sessions.tag();
        ids.retain(|id| id.context == tag);
        Ok(Target { ctx, ids })
    }
}

fn value_json(v: &[u8]) -> Value {
    match std::str::from_utf8(v) {
        Ok(s) => Value::String(s.to_string()),
        Err(_) => serde_json::json!({ "base64": STANDARD.encode(v) }),
    }
}

fn meta_json(ctx: &Context, m: &SessionMeta) -> Map<String, Value> {
    let mut o = Map::new();
    o.insert("id".into(), m.id.to_string().into());
    o.insert("context".into(), ctx.cfg.name.clone().into());
    o.insert("created_at".into(), rfc3339(m.created_ms).into());
    o.insert("last_accessed_at".into(), rfc3339(m.last_access_ms).into());
    o.insert("expires_at".into(), rfc3339(m.expires_ms).into());
    o.insert("timeout".into(), m.timeout_s.into());
    o.insert("new".into(), m.is_new.into());
    o
}

/// A JSON answer.
pub(super) fn json(status: StatusCode, v: Value) -> Resp {
    respond(status, Some("application/json"), v.to_string())
}

fn empty(status: StatusCode) -> Resp {
    respond(status, None, Bytes::new())
}

fn session_response(ctx: &Context, status: StatusCode, m: &SessionMeta, attrs: &[(String, Vec<u8>)]) -> Resp {
    let mut o = meta_json(ctx, m);
    // Reserved attributes (the gateway's user and filters) are sessiond's own.
    let a: Map<String, Value> = attrs
        .iter()
        .filter(|(k, _)| !crate::session::is_reserved(k))
        .map(|(k, v)| (k.clone(), value_json(v)))
        .collect();
    o.insert("attributes".into(), Value::Object(a));
    json(status, Value::Object(o))
}

use crate::web::set_cookie;

fn with_cookie(mut r: Resp, ctx: &Context, id: Option<&SessionId>) -> Resp {
    if let Ok(v) = HeaderValue::from_str(&set_cookie(ctx, id)) {
        r.headers_mut().append(SET_COOKIE, v);
    }
    r
}

/// Adds the re-issued id's cookie, if any.
fn reissue(r: Resp, ctx: &Context, id: Option<SessionId>) -> Resp {
    match id {
        Some(id) => with_cookie(r, ctx, Some(&id)),
        None => r,
    }
}

fn touch_param(req: &Request<Incoming>) -> bool {
    query(req, "touch").is_none_or(|v| v != "false" && v != "0")
}

/// `POST /v1/sessions`.
pub async fn create(st: &AppState, req: &Request<Incoming>) -> Result<Resp, ApiError> {
    let ctx = context(st, req)?;
    let m = ctx.sessions.create(now_ms()).await?;
    Ok(with_cookie(session_response(ctx, StatusCode::CREATED, &m, &[]), ctx, Some(&m.id)))
}

/// `POST /v1/session`: the current valid session (200) or a new one (201).
pub async fn get_or_create(t: Result<Target<'_>, ApiError>) -> Result<Resp, ApiError> {
    let t = t?;
    let now = now_ms();
    match t.ctx.sessions.get(t.ids.as_slice(), true, now).await.map_err(ApiError::from) {
        Ok(f) => {
            Ok(reissue(session_response(t.ctx, StatusCode::OK, &f.value.meta, &f.value.attributes), t.ctx, f.reissued))
        }
        Err(e) if e.status == StatusCode::NOT_FOUND => {
            let m = t.ctx.sessions.create(now).await?;
            Ok(with_cookie(session_response(t.ctx, StatusCode::CREATED, &m, &[]), t.ctx, Some(&m.id)))
        }
        Err(e) => Err(e),
    }
}

/// `GET /v1/sessions/{id}` and `GET /v1/session`.
pub async fn get(req: &Request<Incoming>, t: Result<Target<'_>, ApiError>) -> Result<Resp, ApiError> {
    let t = t?;
    let f = t.ctx.sessions.get(t.ids.as_slice(), touch_param(req), now_ms()).await?;
    Ok(reissue(session_response(t.ctx, StatusCode::OK, &f.value.meta, &f.value.attributes), t.ctx, f.reissued))
}

/// `DELETE` of a session.
pub async fn delete(t: Result<Target<'_>, ApiError>) -> Result<Resp, ApiError> {
    let t = t?;
    t.ctx.sessions.invalidate(t.ids.as_slice(), now_ms()).await?.store?;
    Ok(with_cookie(empty(StatusCode::NO_CONTENT), t.ctx, None))
}

/// `POST …/rotate`.
pub async fn rotate(t: Result<Target<'_>, ApiError>) -> Result<Resp, ApiError> {
    let t = t?;
    let m = t.ctx.sessions.rotate(t.ids.as_slice(), now_ms()).await?.value;
    let mut o = meta_json(t.ctx, &m);
    o.insert("values".into(), m.values.into());
    Ok(with_cookie(json(StatusCode::OK, Value::Object(o)), t.ctx, Some(&m.id)))
}

/// Largest PATCH body for a context: every attribute at full size, with
/// JSON escaping (up to 6 bytes per value byte) and names.
pub fn patch_limit(ctx: &Context) -> usize {
    let c = &ctx.cfg;
    let per = 6 * c.max_name_size as usize + 6 * c.max_value_size as usize + 64;
    (c.max_values_per_session as usize * 2 * per + 1024).min(64 << 20)
}

/// A PATCH body's attribute changes, in order, duplicates rejected.
struct Changes(Vec<(String, Option<Vec<u8>>)>);

impl<'de> serde::Deserialize<'de> for Changes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Changes;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of attribute name to string, {\"base64\": ...} or null")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Changes, A::Error> {
                use serde::de::Error;
                let mut out: Vec<(String, Option<Vec<u8>>)> = Vec::new();
                let mut seen = std::collections::HashSet::new();
                while let Some((k, v)) = m.next_entry::<String, Value>()? {
                    if !seen.insert(k.clone()) {
                        return Err(A::Error::custom(format!("attribute {k:?} appears twice")));
                    }
                    if out.len() >= 4096 {
                        return Err(A::Error::custom("more than 4096 attribute changes"));
                    }
                    let val = match v {
                        Value::Null => None,
                        Value::String(s) => Some(s.into_bytes()),
                        Value::Object(o) if o.len() == 1 && o.get("base64").is_some_and(Value::is_string) => {
                            let b64 = o["base64"].as_str().unwrap_or_default();
                            Some(
                                STANDARD
                                    .decode(b64)
                                    .map_err(|e| A::Error::custom(format!("attribute {k:?}: bad base64: {e}")))?,
                            )
                        }
                        _ => {
                            return Err(A::Error::custom(format!(
                                "attribute {k:?}: expected a string, {{\"base64\": \"...\"}} or null"
                            )));
                        }
                    };
                    out.push((k, val));
                }
                Ok(Changes(out))
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchBody {
    attributes: Changes,
}

/// `PATCH`: set and remove several attributes atomically.
pub async fn patch(st: &AppState, t: Target<'_>, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let timeout = Duration::from_secs_f64(st.config.request_timeout);
    let body = read_body(req, patch_limit(t.ctx), timeout, "PATCH body").await?;
    let parsed: PatchBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("bad_json", format!("invalid PATCH body: {e}")))?;
    let changes: Vec<(&str, Option<&[u8]>)> =
        parsed.attributes.0.iter().map(|(k, v)| (k.as_str(), v.as_deref())).collect();
    // Bounds the work done under the stripe lock: a legitimate PATCH removes
    // at most every attribute and sets at most as many new ones.
    let most = 2 * t.ctx.cfg.max_values_per_session as usize;
    if changes.len() > most {
        return Err(ApiError::bad_request(
            "too_many_changes",
            format!(
                "the PATCH names {} attributes; at most {most} (twice max_values_per_session) are allowed in one call",
                changes.len()
            ),
        ));
    }
    for (name, _) in &changes {
        if name.chars().any(char::is_control) {
            return Err(ApiError::bad_request(
                "invalid_name",
                format!("attribute name {name:?} contains a control character"),
            ));
        }
    }
    let f = t.ctx.sessions.update(t.ids.as_slice(), &changes, now_ms()).await?;
    Ok(reissue(empty(StatusCode::NO_CONTENT), t.ctx, f.reissued))
}

/// `GET …/attributes/{name}`: the raw value.
pub async fn attr_get(
    req: &Request<Incoming>,
    t: Result<Target<'_>, ApiError>,
    name: Result<Cow<'_, str>, ApiError>,
) -> Result<Resp, ApiError> {
    let (t, name) = (t?, name?);
    t.ctx.sessions.check_change(&name, None)?;
    let mut buf = Vec::new();
    let f = t.ctx.sessions.get_attr(t.ids.as_slice(), &name, touch_param(req), now_ms(), &mut buf).await?;
    let re = f.reissued;
    if !f.value {
        let shown: String = name.chars().take(64).collect();
        let e = ApiError::new(
            StatusCode::NOT_FOUND,
            "attribute_not_found",
            format!("the session has no attribute named {shown:?}"),
        );
        return Ok(reissue(e.into_response(), t.ctx, re));
    }
    Ok(reissue(respond(StatusCode::OK, Some("application/octet-stream"), buf), t.ctx, re))
}

/// `PUT …/attributes/{name}`: the raw body becomes the value.
pub async fn attr_put(
    st: &AppState,
    t: Target<'_>,
    name: Cow<'_, str>,
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    t.ctx.sessions.check_change(&name, None)?;
    let timeout = Duration::from_secs_f64(st.config.request_timeout);
    let body = read_body(req, t.ctx.cfg.max_value_size as usize, timeout, "value").await?;
    let f = t.ctx.sessions.set_attr(t.ids.as_slice(), &name, &body, now_ms()).await?;
    Ok(reissue(empty(StatusCode::NO_CONTENT), t.ctx, f.reissued))
}

/// `DELETE …/attributes/{name}`: 204 also when absent.
pub async fn attr_delete(
    t: Result<Target<'_>, ApiError>,
    name: Result<Cow<'_, str>, ApiError>,
) -> Result<Resp, ApiError> {
    let (t, name) = (t?, name?);
    t.ctx.sessions.check_change(&name, None)?;
    let f = t.ctx.sessions.remove_attr(t.ids.as_slice(), &name, now_ms()).await?;
    Ok(reissue(empty(StatusCode::NO_CONTENT), t.ctx, f.reissued))
}

/// `GET /v1/sessions?context=&limit=&cursor=`: ids and metadata, no values.
pub fn list(st: &AppState, req: &Request<Incoming>) -> Result<Resp, ApiError> {
    let ctx = context(st, req)?;
    let limit = match query(req, "limit") {
        None => 100,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=MAX_LIST_LIMIT).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_request(
                    "bad_limit",
                    format!(
                        "limit {:?} must be a number from 1 to {MAX_LIST_LIMIT}",
                        v.chars().take(32).collect::<String>()
                    ),
                ));
            }
        },
    };
    let cursor = match query(req, "cursor") {
        None => 0,
        Some(v) => v.parse::<u32>().map_err(|_| {
            let shown: String = v.chars().take(32).collect();
            ApiError::bad_request(
                "bad_cursor",
                format!("cursor {shown:?} is not the next_cursor value of a previous page"),
            )
        })?,
    };
    let (metas, next) = ctx.sessions.list(cursor, limit, now_ms())?;
    let items: Vec<Value> = metas
        .iter()
        .map(|m| {
            let mut o = meta_json(ctx, m);
            o.insert("values".into(), m.values.into());
            Value::Object(o)
        })
        .collect();
    Ok(json(
        StatusCode::OK,
        serde_json::json!({"context": ctx.cfg.name, "sessions": items, "next_cursor": next.map(|c| c.to_string())}),
    ))
}
