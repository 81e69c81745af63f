//! `/v1/gateway/sessions/{handle}…`: the gateway's control API on the
//! private listener (Glacier2's `SessionControl`). The backend names a
//! session by its control handle; a stale handle is 404.
//!
//! | method and path | answer |
//! | --- | --- |
//! | `GET …/{handle}` | `{"user","created_at","last_accessed_at","expires_at","filters"}` |
//! | `GET …/{handle}/filters/{kind}` | `{"items":[…]}` |
//! | `POST …/{handle}/filters/{kind}/add` / `remove`, body `{"items":[…]}` | the resulting `{"items":[…]}` |
//! | `DELETE …/{handle}` | 204, also when the session is already gone |

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde_json::json;

use super::sessions::json;
use super::{ApiError, AppState, Resp, read_body, respond};
use crate::gateway::control::{self, ControlError};
use crate::gateway::filters::FilterKind;

/// Largest filter-change body.
const MAX_BODY: usize = 256 * 1024;

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> ApiError {
        match e {
            ControlError::NotFound => {
                ApiError::new(StatusCode::NOT_FOUND, "session_not_found", "no such gateway session (stale handle)")
            }
            ControlError::Filter(f) => ApiError::bad_request("bad_filter", f.to_string()),
            e @ ControlError::TooLarge { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "value_too_large", e.to_string())
            }
            ControlError::Region(r) => ApiError::from(r),
            ControlError::Session(e) => ApiError::from(e),
        }
    }
}

fn no_gateway() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "route_not_found", "no [gateway] is configured")
}

/// Routes one control request; `rest` is the path after `/v1/gateway/sessions/`.
pub async fn route(st: &AppState, req: Request<Incoming>, rest: &[&str]) -> Result<Resp, ApiError> {
    let core = st.gateway.as_ref().ok_or_else(no_gateway)?;
    let sessions = &core.context(&st.contexts).sessions;
    let method = req.method().clone();
    match (rest, method) {
        ([handle], Method::GET) => {
            let id = control::resolve(core, sessions, handle)?;
            let (meta, gw) = control::read(sessions, &id)?;
            Ok(json(StatusCode::OK, control::view(&meta, &gw)))
        }
        ([handle], Method::DELETE) => {
            match control::resolve(core, sessions, handle) {
                Ok(id) => {
                    let user = control::read(sessions, &id).map(|(_, g)| g.user).unwrap_or_default();
                    if let Ok(ended) = sessions.invalidate(std::slice::from_ref(&id), crate::clock::now_ms()).await {
                        if let Err(e) = ended.store {
                            log::warn!("gateway: destroy of user {user:?}'s session: {e}");
                        }
                        // The canonical handle, whatever spelling the caller used.
                        core.notify_destroyed(&core.handle_of(&id), &user, "control").await;
                        log::info!("gateway: session of user {user:?} destroyed through the control API");
                    }
                }
                Err(ControlError::NotFound) => {}
                Err(e) => return Err(e.into()),
            }
            Ok(respond(StatusCode::NO_CONTENT, None, bytes::Bytes::new()))
        }
        ([_], _) => Err(ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "use GET or DELETE")
            .with_header("allow", "GET, DELETE".into())),
        ([handle, "filters", kind], Method::GET) => {
            let kind: FilterKind = kind.parse().map_err(|e| ApiError::bad_request("bad_filter", format!("{e}")))?;
            let id = control::resolve(core, sessions, handle)?;
            let (_, gw) = control::read(sessions, &id)?;
            Ok(json(StatusCode::OK, json!({"items": gw.filters.get(kind)})))
        }
        ([handle, "filters", kind, op @ ("add" | "remove")], Method::POST) => {
            let kind: FilterKind = kind.parse().map_err(|e| ApiError::bad_request("bad_filter", format!("{e}")))?;
            let add = *op == "add";
            let id = control::resolve(core, sessions, handle)?;
            let timeout = st.config.request_timeout;
            let body = read_body(req, MAX_BODY, timeout, "filter change").await?;
            #[derive(serde::Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Items {
                items: Vec<String>,
            }
            let items: Items = serde_json::from_slice(&body)
                .map_err(|e| ApiError::bad_request("bad_json", format!("expected {{\"items\": [\"…\"]}}: {e}")))?;
            // Cluster mode: the narrowed filters are in the store before the answer.
            let result = control::change_filters(sessions, &id, kind, &items.items, add).await?;
            Ok(json(StatusCode::OK, json!({"items": result})))
        }
        ([_, "filters", _], _) | ([_, "filters", _, "add" | "remove"], _) => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "GET the set, POST to …/add or …/remove",
        )),
        _ => Err(ApiError::new(StatusCode::NOT_FOUND, "route_not_found", "no such control route")),
    }
}
