//! Operational endpoints: `/healthz`, `/v1/contexts` and `/metrics`.
//!
//! They read only counters and configuration; none takes a stripe lock.

use hyper::StatusCode;

use super::{ApiError, AppState, Resp};

fn body(status: StatusCode, content_type: &'static str, b: String) -> Resp {
    super::respond(status, Some(content_type), b)
}

/// `GET /healthz`: 200 while this worker serves; in cluster mode the body
/// says `"degraded"` while the store is down (the node still serves the
/// sessions it owns under `serve-local`), with the pending changes.
pub fn healthz(st: &AppState) -> Result<Resp, ApiError> {
    let Some(h) = st.contexts.default_context().sessions.store_health() else {
        return Ok(body(StatusCode::OK, "application/json", "{\"status\":\"ok\"}".into()));
    };
    let pending: u64 = st.contexts.iter().map(|c| c.sessions.pending_changes()).sum();
    let v = if h.down {
        serde_json::json!({"status": "degraded", "store": "down", "pending_changes": pending,
            "when_store_down": h.when_store_down})
    } else {
        serde_json::json!({"status": "ok", "store": "up", "pending_changes": pending})
    };
    Ok(body(StatusCode::OK, "application/json", v.to_string()))
}

/// `GET /v1/contexts`: each context's limits and live count.
pub fn contexts(st: &AppState) -> Result<Resp, ApiError> {
    let list: Vec<serde_json::Value> = st
        .contexts
        .iter()
        .map(|c| {
            let k = &c.cfg;
            serde_json::json!({
                "name": k.name,
                "live": c.sessions.live(),
                "max_sessions": k.max_sessions,
                "max_values_per_session": k.max_values_per_session,
                "max_name_size": k.max_name_size,
                "max_value_size": k.max_value_size,
                "max_locks": k.max_locks,
                "timeout": k.timeout,
                "absolute_timeout": k.absolute_timeout,
                "reap_interval": k.reap_interval,
                "when_full": k.when_full,
                "cookie_name": k.cookie_name,
                "url_param": k.url_param,
            })
        })
        .collect();
    Ok(body(StatusCode::OK, "application/json", serde_json::json!({ "contexts": list }).to_string()))
}

/// `GET /metrics`: Prometheus text format, server-wide totals.
pub fn metrics(st: &AppState) -> Result<Resp, ApiError> {
    let regions: Vec<_> = st.contexts.iter().map(|c| c.sessions.stats()).collect();
    let mut text = st.stats.render(&regions, st.config.max_procs);
    let pending: u64 = st.contexts.iter().map(|c| c.sessions.pending_changes()).sum();
    text.push_str(&st.contexts.default_context().sessions.store_metrics(pending, crate::clock::now_ms()));
    Ok(body(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", text))
}
