//! Session endpoints: `/v1/sessions…` addressed by id, and `/v1/session…`
//! addressed by the request's cookie, URL path parameter or header.
//!
//! Both forms resolve to a [`Target`] (a context and candidate ids) and
//! then share the same handlers. Values are binary-safe: a value that is
//! valid UTF-8 appears in JSON as a string; any other value appears as
//! `{"base64": "<standard base64>"}`, and PATCH accepts both forms.

use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{ETAG, HeaderValue, IF_MATCH, IF_NONE_MATCH, SET_COOKIE};
use hyper::{Request, StatusCode};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

use super::{ApiError, AppState, Resp, lookup, read_body, respond};
use crate::clock::now_ms;
use crate::clock::rfc3339_millis as rfc3339;
use crate::contexts::Context;
use crate::region::{Change, Edit, MetaChange, SessionId, SessionMeta};

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
    o.insert("timeout_override".into(), if m.timeout_set { m.timeout_s.into() } else { Value::Null });
    o.insert("deadline".into(), m.deadline_ms.map_or(Value::Null, |d| rfc3339(d).into()));
    o.insert("principal".into(), m.principal.clone().map_or(Value::Null, Value::String));
    o.insert("new".into(), m.is_new.into());
    o
}

/// The session's `ETag`: its version, which every change bumps and a touch
/// does not. It says nothing of the id or the token.
/// Written without `format!`: it is on every write's answer, and the
/// formatting machinery cost more than the rest of the header (callgrind,
/// `benches/callgrind.sh`).
pub fn etag(m: &SessionMeta) -> HeaderValue {
    etag_of(m.version)
}

fn etag_of(version: u64) -> HeaderValue {
    let mut buf = [0u8; 23]; // '"' 'v' up to 20 digits '"'
    let mut at = buf.len() - 1;
    buf[at] = b'"';
    let mut v = version;
    loop {
        at -= 1;
        buf[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    buf[at - 2] = b'"';
    buf[at - 1] = b'v';
    HeaderValue::from_bytes(&buf[at - 2..]).expect("quotes, 'v' and digits are a valid header value")
}

/// Sets the `ETag` of `m` on `r`.
fn with_etag(mut r: Resp, m: &SessionMeta) -> Resp {
    r.headers_mut().insert(ETAG, etag(m));
    r
}

/// The version an `If-Match` header requires, or `None` without one (or
/// with `*`, which any existing session meets). A tag that is not one of
/// this server's strong tags, a weak tag (`W/`), or a list of several,
/// can never match: it requires version 0, which no session has, so the
/// change answers 412 and nothing is done.
fn if_match(req: &Request<Incoming>) -> Option<u64> {
    let v = req.headers().get(IF_MATCH)?.to_str().unwrap_or("");
    let v = v.trim();
    if v == "*" {
        return None;
    }
    Some(parse_tag(v).unwrap_or(0))
}

/// `"v<n>"` to n.
fn parse_tag(t: &str) -> Option<u64> {
    t.strip_prefix("\"v")?.strip_suffix('"')?.parse().ok().filter(|&n| n > 0)
}

/// Whether `If-None-Match` names `m`'s current tag (or is `*`): the
/// client's copy is current (weak comparison, as RFC 9110 asks for GET).
fn none_match_hits(req: &Request<Incoming>, m: &SessionMeta) -> bool {
    let Some(v) = req.headers().get(IF_NONE_MATCH).and_then(|v| v.to_str().ok()) else { return false };
    v.split(',').take(64).map(str::trim).any(|t| t == "*" || parse_tag(t.trim_start_matches("W/")) == Some(m.version))
}

/// A JSON answer.
pub(super) fn json(status: StatusCode, v: Value) -> Resp {
    respond(status, Some("application/json"), v.to_string())
}

fn empty(status: StatusCode) -> Resp {
    respond(status, None, Bytes::new())
}

/// The session as JSON, with its `ETag`.
fn session_response(ctx: &Context, status: StatusCode, m: &SessionMeta, attrs: &[(String, Vec<u8>)]) -> Resp {
    let mut o = meta_json(ctx, m);
    // Reserved attributes (the gateway's user and filters) are sessiond's own.
    let a: Map<String, Value> = attrs
        .iter()
        .filter(|(k, _)| !crate::session::is_reserved(k))
        .map(|(k, v)| (k.clone(), value_json(v)))
        .collect();
    o.insert("attributes".into(), Value::Object(a));
    with_etag(json(status, Value::Object(o)), m)
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

/// `POST /v1/sessions`, with an optional JSON body of first attributes
/// and the session's own settings (`timeout`, `deadline`, `principal`).
pub async fn create(st: &AppState, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let ctx = context(st, &req)?;
    let timeout = st.config.request_timeout;
    let body = read_body(req, patch_limit(ctx), timeout, "create body").await?;
    let now = now_ms();
    let parsed: SessionBody =
        if body.iter().all(u8::is_ascii_whitespace) { SessionBody::default() } else { parse_body(&body, "create")? };
    let changes = parsed.changes(ctx)?;
    let meta = parsed.meta()?;
    if changes.iter().any(|(_, v)| v.is_none()) {
        return Err(ApiError::bad_request("bad_json", "a new session has no attribute to remove: drop the nulls"));
    }
    let pending = ctx.sessions.begin_create(now)?;
    let m = pending.commit_edit(&Edit { changes: &changes, meta, expect: None }, now).await?;
    let attrs: Vec<(String, Vec<u8>)> =
        parsed.attributes.map(|c| c.0).unwrap_or_default().into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect();
    Ok(with_cookie(session_response(ctx, StatusCode::CREATED, &m, &attrs), ctx, Some(&m.id)))
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

/// `GET /v1/sessions/{id}` and `GET /v1/session`; 304 when
/// `If-None-Match` names the current version (the read still counts as an
/// access).
pub async fn get(req: &Request<Incoming>, t: Result<Target<'_>, ApiError>) -> Result<Resp, ApiError> {
    let t = t?;
    let f = t.ctx.sessions.get(t.ids.as_slice(), touch_param(req), now_ms()).await?;
    let m = &f.value.meta;
    if none_match_hits(req, m) {
        return Ok(reissue(with_etag(empty(StatusCode::NOT_MODIFIED), m), t.ctx, f.reissued));
    }
    Ok(reissue(session_response(t.ctx, StatusCode::OK, m, &f.value.attributes), t.ctx, f.reissued))
}

/// `POST …/touch`: refreshes the last access and clears "new", as a read
/// does, and answers 204 without the data.
pub async fn touch(t: Result<Target<'_>, ApiError>) -> Result<Resp, ApiError> {
    let t = t?;
    let f = t.ctx.sessions.touch(t.ids.as_slice(), now_ms()).await?;
    Ok(reissue(with_etag(empty(StatusCode::NO_CONTENT), &f.value), t.ctx, f.reissued))
}

/// `DELETE` of a session (`If-Match` honoured).
pub async fn delete(req: &Request<Incoming>, t: Result<Target<'_>, ApiError>) -> Result<Resp, ApiError> {
    let t = t?;
    t.ctx.sessions.invalidate_if(t.ids.as_slice(), if_match(req), now_ms()).await?.store?;
    Ok(with_cookie(empty(StatusCode::NO_CONTENT), t.ctx, None))
}

/// `POST …/rotate` (`If-Match` honoured).
pub async fn rotate(req: &Request<Incoming>, t: Result<Target<'_>, ApiError>) -> Result<Resp, ApiError> {
    let t = t?;
    let m = t.ctx.sessions.rotate_if(t.ids.as_slice(), if_match(req), now_ms()).await?.value;
    let mut o = meta_json(t.ctx, &m);
    o.insert("values".into(), m.values.into());
    Ok(with_etag(with_cookie(json(StatusCode::OK, Value::Object(o)), t.ctx, Some(&m.id)), &m))
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

/// Parses a create or PATCH body; the error names the field at fault.
fn parse_body(body: &[u8], what: &str) -> Result<SessionBody, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("bad_json", format!("the {what} body is empty; send a JSON object")));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed: SessionBody = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let at = e.path().to_string();
        let at = if at == "." { String::new() } else { format!(" at `{at}`") };
        ApiError::bad_request("bad_json", format!("invalid {what} body{at}: {}", e.inner()))
    })?;
    de.end().map_err(|e| ApiError::bad_request("bad_json", format!("invalid {what} body: {e}")))?;
    Ok(parsed)
}

/// `Some(v)` for a field that is present, even as `null` (then `Some(None)`).
fn present<'de, D: Deserializer<'de>, T: serde::Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    <Option<T> as serde::Deserialize>::deserialize(d).map(Some)
}

/// A create or PATCH body: attribute changes (a merge) and the session's
/// own settings, each absent (unchanged), `null` (back to the context's,
/// or cleared) or a value.
#[derive(Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionBody {
    #[serde(default)]
    attributes: Option<Changes>,
    #[serde(default, deserialize_with = "present")]
    timeout: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present")]
    deadline: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    principal: Option<Option<String>>,
}

impl SessionBody {
    /// Whether it names no field at all (`{}`).
    fn is_empty(&self) -> bool {
        self.attributes.is_none() && self.timeout.is_none() && self.deadline.is_none() && self.principal.is_none()
    }

    /// The attribute changes, bounded and checked before any lock.
    fn changes(&self, ctx: &Context) -> Result<Vec<Change<'_>>, ApiError> {
        let given = self.attributes.as_ref().map_or(&[][..], |c| &c.0[..]);
        let changes: Vec<(&str, Option<&[u8]>)> = given.iter().map(|(k, v)| (k.as_str(), v.as_deref())).collect();
        // Bounds the work done under the stripe lock: a legitimate PATCH removes
        // at most every attribute and sets at most as many new ones.
        let most = 2 * ctx.cfg.max_values_per_session as usize;
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
        Ok(changes)
    }

    /// The settings change; the session layer checks the bounds.
    fn meta(&self) -> Result<MetaChange<'_>, ApiError> {
        let timeout_s = match self.timeout {
            None => None,
            Some(None) => Some(None),
            Some(Some(t)) => Some(Some(u32::try_from(t).map_err(|_| {
                ApiError::bad_request("bad_timeout", format!("timeout = {t} s is out of range (sessions.max_timeout)"))
            })?)),
        };
        let deadline_ms = match &self.deadline {
            None => None,
            Some(None) => Some(None),
            Some(Some(d)) => Some(Some(crate::clock::parse_rfc3339(d).ok_or_else(|| {
                let shown: String = d.chars().take(64).collect();
                ApiError::bad_request(
                    "bad_deadline",
                    format!("deadline {shown:?} is not an RFC 3339 time such as 2026-12-31T23:59:59Z"),
                )
            })?)),
        };
        let principal = self.principal.as_ref().map(|p| p.as_deref());
        Ok(MetaChange { timeout_s, deadline_ms, principal })
    }
}

/// `PATCH`: set and remove several attributes, and change the session's
/// own settings, atomically; with `If-Match`, only if the session is still
/// at that version (412 otherwise). Without it, a merge: attributes the
/// body does not name stay as they are, so two requests that change
/// different attributes both land.
pub async fn patch(st: &AppState, t: Target<'_>, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let expect = if_match(&req);
    let timeout = st.config.request_timeout;
    let body = read_body(req, patch_limit(t.ctx), timeout, "PATCH body").await?;
    let parsed = parse_body(&body, "PATCH")?;
    if parsed.is_empty() {
        return Err(ApiError::bad_request(
            "bad_json",
            "the PATCH body names nothing to change: give `attributes`, `timeout`, `deadline` or `principal`",
        ));
    }
    let changes = parsed.changes(t.ctx)?;
    let meta = parsed.meta()?;
    let f = t.ctx.sessions.edit(t.ids.as_slice(), &Edit { changes: &changes, meta, expect }, now_ms()).await?;
    Ok(reissue(with_etag(empty(StatusCode::NO_CONTENT), &f.value), t.ctx, f.reissued))
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
    let expect = if_match(&req);
    let timeout = st.config.request_timeout;
    let body = read_body(req, t.ctx.cfg.max_value_size as usize, timeout, "value").await?;
    let changes = [(&*name, Some(&body[..]))];
    let edit = Edit { changes: &changes, meta: MetaChange::default(), expect };
    let f = t.ctx.sessions.edit(t.ids.as_slice(), &edit, now_ms()).await?;
    Ok(reissue(with_etag(empty(StatusCode::NO_CONTENT), &f.value), t.ctx, f.reissued))
}

/// `DELETE …/attributes/{name}`: 204 also when absent (`If-Match` honoured).
pub async fn attr_delete(
    req: &Request<Incoming>,
    t: Result<Target<'_>, ApiError>,
    name: Result<Cow<'_, str>, ApiError>,
) -> Result<Resp, ApiError> {
    let (t, name) = (t?, name?);
    t.ctx.sessions.check_change(&name, None)?;
    let changes = [(&*name, None)];
    let edit = Edit { changes: &changes, meta: MetaChange::default(), expect: if_match(req) };
    let f = t.ctx.sessions.edit(t.ids.as_slice(), &edit, now_ms()).await?;
    Ok(reissue(with_etag(empty(StatusCode::NO_CONTENT), &f.value), t.ctx, f.reissued))
}

/// A listing's `limit` and `cursor` query parameters.
fn page_params(req: &Request<Incoming>) -> Result<(usize, u64), ApiError> {
    let limit = limit_param(req)?;
    let cursor = match query(req, "cursor") {
        None => 0,
        Some(v) => v.parse::<u64>().map_err(|_| {
            let shown: String = v.chars().take(32).collect();
            ApiError::bad_request(
                "bad_cursor",
                format!("cursor {shown:?} is not the next_cursor value of a previous page"),
            )
        })?,
    };
    Ok((limit, cursor))
}

/// `limit=` of a listing: 1 to [`MAX_LIST_LIMIT`], 100 when absent.
fn limit_param(req: &Request<Incoming>) -> Result<usize, ApiError> {
    Ok(match query(req, "limit") {
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
    })
}

/// `GET /v1/sessions?context=&limit=&cursor=`: ids and metadata, no values.
pub fn list(st: &AppState, req: &Request<Incoming>) -> Result<Resp, ApiError> {
    let ctx = context(st, req)?;
    let (limit, cursor) = page_params(req)?;
    let cursor = u32::try_from(cursor).map_err(|_| {
        ApiError::bad_request("bad_cursor", format!("cursor {cursor} is not the next_cursor value of a previous page"))
    })?;
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

/// The principal a `/v1/principals/{name}/…` path names, percent-decoded
/// and checked (400 `bad_principal`).
fn principal_of(raw: &str) -> Result<String, ApiError> {
    let name = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| ApiError::bad_request("bad_principal", "principal is not UTF-8 after percent-decoding"))?;
    crate::session::check_principal(&name)?;
    Ok(name.into_owned())
}

/// `GET /v1/principals/{name}/sessions?limit=&cursor=`: the principal's
/// live sessions in every context, paginated like `GET /v1/sessions`. The
/// cursor is `<context index>.<that context's cursor>`. In cluster mode a
/// session another node holds is listed without its id, by `node`.
pub async fn principal_list(st: &AppState, req: &Request<Incoming>, raw: &str) -> Result<Resp, ApiError> {
    let name = principal_of(raw)?;
    let limit = limit_param(req)?;
    let now = now_ms();
    let n = st.contexts.iter().count();
    let bad = |v: &str| {
        let shown: String = v.chars().take(32).collect();
        ApiError::bad_request("bad_cursor", format!("cursor {shown:?} is not the next_cursor value of a previous page"))
    };
    let (ci, mut inner): (usize, Option<String>) = match query(req, "cursor") {
        None => (0, None),
        Some(v) => {
            let (a, b) = v.split_once('.').ok_or_else(|| bad(&v))?;
            let ci = a.parse::<usize>().ok().filter(|&c| c < n).ok_or_else(|| bad(&v))?;
            (ci, (!b.is_empty()).then(|| b.to_string()))
        }
    };
    let mut items = Vec::new();
    let mut next = None;
    for (k, ctx) in st.contexts.iter().enumerate().skip(ci) {
        let (page, more) =
            ctx.sessions.principal_page(&name, inner.take().as_deref(), limit - items.len(), now).await?;
        for s in &page {
            items.push(Value::Object(principal_json(ctx, &name, s)));
        }
        if let Some(c) = more {
            next = Some(format!("{k}.{c}"));
            break;
        }
        if items.len() >= limit {
            next = (k + 1 < n).then(|| format!("{}.", k + 1));
            break;
        }
    }
    Ok(json(StatusCode::OK, serde_json::json!({"principal": name, "sessions": items, "next_cursor": next})))
}

/// One entry of a principal listing.
fn principal_json(ctx: &Context, name: &str, s: &crate::session::PrincipalSession) -> Map<String, Value> {
    use crate::session::PrincipalSession;
    match s {
        PrincipalSession::Here(m) => {
            let mut o = meta_json(ctx, m);
            o.insert("node".into(), m.id.node.into());
            o.insert("values".into(), m.values.into());
            o
        }
        PrincipalSession::Elsewhere(l) => {
            let mut o = Map::new();
            o.insert("id".into(), Value::Null);
            o.insert("node".into(), l.owner.into());
            o.insert("context".into(), ctx.cfg.name.clone().into());
            o.insert("created_at".into(), rfc3339(l.created_ms).into());
            o.insert("last_accessed_at".into(), rfc3339(l.last_access_ms).into());
            o.insert("expires_at".into(), rfc3339(l.expires_ms).into());
            o.insert("principal".into(), name.into());
            o.insert("new".into(), l.is_new.into());
            o
        }
    }
}

/// `DELETE /v1/principals/{name}/sessions`: "log out everywhere". Ends
/// every live session of the principal in every context, each with an
/// `invalidated` event whose reason is `logout_everywhere`; answers 200
/// with the count.
pub async fn principal_delete(st: &AppState, raw: &str) -> Result<Resp, ApiError> {
    let name = principal_of(raw)?;
    let now = now_ms();
    let mut n = 0;
    for ctx in st.contexts.iter() {
        n += ctx.sessions.end_principal(&name, now).await?;
    }
    Ok(json(StatusCode::OK, serde_json::json!({"principal": name, "invalidated": n})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_are_the_version_quoted_and_parse_back() {
        for v in [0, 1, 9, 10, 4_294_967_296, u64::MAX] {
            let tag = etag_of(v);
            assert_eq!(tag.to_str().unwrap(), format!("\"v{v}\""));
            assert_eq!(parse_tag(tag.to_str().unwrap()), (v > 0).then_some(v));
        }
    }
}
