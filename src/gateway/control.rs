//! The control API's operations, Glacier2's `SessionControl` for HTTP:
//! read a gateway session, read and change its filters, destroy it. The
//! private listener (the `http` module) routes to these; the backend
//! names a session by its control handle, never by its id.
//!
//! Filter changes are one atomic read-modify-write of the session's
//! reserved attribute (`Sessions::modify_attr`), so two workers changing
//! the same session's filters at once never lose an update, and every
//! worker sees a change at its next request for that session.

use serde_json::{Value, json};

use super::filters::{FilterError, FilterKind};
use super::{GATEWAY_ATTR, GatewayCore, GatewaySession, handle::Handle};
use crate::clock::rfc3339_seconds as rfc3339;
use crate::region::{RegionError, SessionId, SessionMeta};
use crate::session::Sessions;

/// Why a control call failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No such session (stale or malformed handle, or not a gateway session).
    #[error("no such gateway session (the handle is stale or malformed)")]
    NotFound,
    /// A filter change was refused.
    #[error("{0}")]
    Filter(#[from] FilterError),
    /// The filters would not fit in the session (`max_value_size`).
    #[error("the filters would take {len} bytes, more than max_value_size = {max} of the gateway context")]
    TooLarge {
        /// Their encoded size.
        len: usize,
        /// The limit.
        max: u32,
    },
    /// A region error (lock timeout, I/O).
    #[error(transparent)]
    Region(RegionError),
    /// The store refused or cannot be reached (cluster mode).
    #[error(transparent)]
    Session(crate::session::SessionError),
}

impl From<crate::session::SessionError> for ControlError {
    fn from(e: crate::session::SessionError) -> ControlError {
        match e {
            crate::session::SessionError::Region(r) => r.into(),
            e => ControlError::Session(e),
        }
    }
}

impl From<RegionError> for ControlError {
    fn from(e: RegionError) -> ControlError {
        match e {
            RegionError::NotFound => ControlError::NotFound,
            RegionError::ValueTooLarge { len, max } => ControlError::TooLarge { len, max },
            e => ControlError::Region(e),
        }
    }
}

/// Resolves a handle to the session it names now.
pub fn resolve(core: &GatewayCore, sessions: &Sessions, handle: &str) -> Result<SessionId, ControlError> {
    let h = Handle::parse(handle).ok_or(ControlError::NotFound)?;
    let id = sessions.id_in_slot(h.slot, crate::clock::now_ms())?.ok_or(ControlError::NotFound)?;
    if h.names(&core.secret, &id) { Ok(id) } else { Err(ControlError::NotFound) }
}

/// Reads a gateway session without touching it (the session this node
/// holds in the handle's slot: no store call).
pub fn read(sessions: &Sessions, id: &SessionId) -> Result<(SessionMeta, GatewaySession), ControlError> {
    let s = sessions.peek(id, crate::clock::now_ms())?;
    let gw = s
        .attributes
        .iter()
        .find(|(n, _)| n == GATEWAY_ATTR)
        .and_then(|(_, v)| GatewaySession::decode(v))
        .ok_or(ControlError::NotFound)?;
    Ok((s.meta, gw))
}

/// The JSON view of a gateway session (what `GET …/sessions/{handle}` and
/// the public `/.sessiond/session` answer).
pub fn view(meta: &SessionMeta, gw: &GatewaySession) -> Value {
    json!({
        "user": gw.user,
        "created_at": rfc3339(meta.created_ms),
        "last_accessed_at": rfc3339(meta.last_access_ms),
        "expires_at": rfc3339(meta.expires_ms),
        "filters": {
            "categories": gw.filters.categories,
            "adapter_ids": gw.filters.adapter_ids,
            "identities": gw.filters.identities,
        },
    })
}

/// Adds or removes filter items atomically, written through in cluster
/// mode; returns the resulting set.
pub async fn change_filters(
    sessions: &Sessions,
    id: &SessionId,
    kind: FilterKind,
    items: &[String],
    add: bool,
) -> Result<Vec<String>, ControlError> {
    let mut result = Vec::new();
    sessions
        .modify_attr(id, GATEWAY_ATTR, crate::clock::now_ms(), |cur| {
            let mut gw = cur.and_then(GatewaySession::decode).ok_or(ControlError::NotFound)?;
            if add {
                gw.filters.add(kind, items)?;
            } else {
                gw.filters.remove(kind, items)?;
            }
            result = gw.filters.get(kind);
            Ok::<_, ControlError>(Some(gw.encode()))
        })
        .await?;
    Ok(result)
}
