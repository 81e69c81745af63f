//! Operational endpoints: `/healthz`, `/v1/contexts` and `/metrics`.
//!
//! They read only counters and configuration; none takes a stripe lock.

use hyper::StatusCode;

use super::{ApiError, AppState, Resp};

fn body(status: StatusCode, content_type: &'static str, b: String) -> Resp {
    super::respond(status, Some(content_type), b)
}

/// `GET /healthz`: 200 while this worker serves.
pub fn healthz() -> Result<Resp, ApiError> {
    Ok(body(StatusCode::OK, "application/json", "{\"status\":\"ok\"}".into()))
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
    Ok(body(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", st.stats.render(&regions, st.config.max_procs)))
}
