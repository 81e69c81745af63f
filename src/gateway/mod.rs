//! The session gateway: sessiond in front of an application, as ZeroC
//! Glacier2's router is. A second, public listener logs people in
//! (password verifier, session managers), keeps their session in the
//! gateway context's region, and forwards the requests each session's
//! filters allow to the configured upstreams.
//!
//! | module | concept |
//! | --- | --- |
//! | [`path`] | normalising a request path, the only form filters ever see |
//! | [`filters`] | Glacier2's per-session filters: categories, adapter ids, identities |
//! | [`verifier`] | the htpasswd password verifier (bcrypt, argon2id) |
//! | [`throttle`] | login failure throttling per client address and per user |
//! | [`handle`] | control handles: naming a session to the backend without its id |
//! | [`session_manager`] | the session-manager client (create, destroy), Glacier2's `SessionManager` |
//! | [`outbox`] | live records and the durable outbox of destroy notices |
//! | [`public`] | the public listener: login, logout, session, forward-auth, forwarding |
//! | [`proxy`] | forwarding one request upstream: headers, streaming, WebSocket tunnels |
//! | [`control`] | the control API's operations (served on the private listener by `http`) |
//!
//! What it must never do: match a filter on anything but the normalised
//! path; forward a client's own identity headers; hash a password on a
//! runtime thread; send a session id anywhere but to its own client.

pub mod control;
pub mod filters;
pub mod handle;
pub mod outbox;
pub mod path;
pub mod proxy;
pub mod public;
pub mod session_manager;
pub mod throttle;
pub mod verifier;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{Config, GatewayConfig};
use crate::contexts::{Context, Contexts};
use filters::{AcceptUser, Filters};

/// The reserved attribute holding a gateway session's user and filters.
pub const GATEWAY_ATTR: &str = "\u{1}gateway";

/// What the gateway keeps in a session (one reserved attribute, JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewaySession {
    /// The user who logged in.
    pub user: String,
    /// The session's filters.
    pub filters: Filters,
}

impl GatewaySession {
    /// Reads the attribute's bytes; `None` if they are not ours.
    pub fn decode(bytes: &[u8]) -> Option<GatewaySession> {
        serde_json::from_slice(bytes).ok()
    }
    /// The attribute's bytes.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The gateway's settings and secret, shared by the public listener and
/// the control API of one process.
pub struct GatewayCore {
    /// Effective configuration.
    pub cfg: GatewayConfig,
    /// Index of the gateway context in [`Contexts`].
    pub ctx: usize,
    /// Signs session-manager calls and control handles.
    pub secret: Vec<u8>,
    /// Live records and destroy notices (when a session manager is configured).
    pub outbox: Option<outbox::Outbox>,
}

impl GatewayCore {
    /// Builds the core from the configuration (reads the secret file).
    pub fn new(config: &Config, contexts: &Contexts) -> Result<Option<Arc<GatewayCore>>, String> {
        let Some(g) = &config.gateway else { return Ok(None) };
        let ctx = contexts
            .iter()
            .position(|c| c.cfg.name == g.context)
            .ok_or_else(|| format!("gateway.context = {:?} names no configured context", g.context))?;
        let secret =
            crate::config::read_secret_file("gateway.secret_file", &g.secret_file).map_err(|e| e.to_string())?;
        let outbox = if g.session_manager.is_empty() {
            None
        } else {
            Some(outbox::Outbox::open(&config.data_dir).map_err(|e| format!("gateway outbox: {e}"))?)
        };
        Ok(Some(Arc::new(GatewayCore { cfg: g.clone(), ctx, secret, outbox })))
    }

    /// The gateway context.
    pub fn context<'a>(&self, contexts: &'a Contexts) -> &'a Context {
        contexts.iter().nth(self.ctx).expect("the gateway context index was checked at start")
    }

    /// What the path normaliser lets through beyond its default rules
    /// (`gateway.allow_encoded_percent`).
    pub fn path_rules(&self) -> path::Allow {
        path::Allow { encoded_percent: self.cfg.allow_encoded_percent }
    }

    /// The accept-user rule (`gateway.filters.accept_user`).
    pub fn accept_user(&self) -> AcceptUser {
        self.cfg.filters.accept_user
    }

    /// The control handle of a session.
    pub fn handle_of(&self, id: &crate::region::SessionId) -> String {
        handle::handle_of(&self.secret, id)
    }

    /// Queues a destroy notice (when a manager is configured). The file is
    /// written and synced on the blocking pool, never on the runtime
    /// thread, and is durable when this returns. Failures are logged,
    /// never answered to the client (the reaper's reconciliation catches a
    /// missing notice).
    pub async fn notify_destroyed(&self, handle: &str, user: &str, reason: &str) {
        let Some(o) = self.outbox.clone() else { return };
        let (h, u, r) = (handle.to_string(), user.to_string(), reason.to_string());
        let done = tokio::task::spawn_blocking(move || o.queue(&h, &u, &r, crate::clock::now_ms())).await;
        match done {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => log::warn!(
                "gateway: cannot queue the destroy notice ({reason}): {e}; the reaper will report it as expired"
            ),
            Err(e) => log::warn!("gateway: the destroy notice task failed ({reason}): {e}"),
        }
    }

    /// Records a new gateway session's live record (on the blocking pool).
    pub async fn record_live(&self, handle: &str, user: &str) {
        let Some(o) = self.outbox.clone() else { return };
        let (h, u) = (handle.to_string(), user.to_string());
        match tokio::task::spawn_blocking(move || o.record_live(&h, &u)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => log::warn!("gateway: cannot record session {handle}: {e}; its expiry will not be reported"),
            Err(e) => log::warn!("gateway: the live-record task failed: {e}"),
        }
    }
}

/// How long the reaper waits between outbox passes.
pub const OUTBOX_PERIOD: Duration = Duration::from_secs(1);
/// Most notices one outbox pass tries to deliver.
pub const OUTBOX_BATCH: usize = 32;

/// The reaper's share of the gateway: reconcile live records against the
/// region (every session gone without a notice gets an `expired` one), then
/// deliver due notices. Runs on the reaper's runtime until the process ends.
pub async fn run_outbox(core: Arc<GatewayCore>, contexts: Arc<Contexts>) {
    let Some(outbox) = core.outbox.clone() else { return };
    let managers = session_manager::ManagerClient::new(
        core.cfg.session_manager.clone(),
        core.cfg.session_manager_timeout,
        core.secret.clone(),
    );
    let mut tick = tokio::time::interval(OUTBOX_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let warned = crate::logging::RateLimit::new(60_000);
    loop {
        tick.tick().await;
        let sessions = &core.context(&contexts).sessions;
        let now = crate::clock::now_ms();
        for h in outbox.live_handles() {
            let Some(parsed) = handle::Handle::parse(&h) else { continue };
            let alive = match sessions.id_in_slot(parsed.slot, now) {
                Ok(Some(id)) => parsed.names(&core.secret, &id),
                Ok(None) => false,
                // A busy stripe: look again next time.
                Err(_) => continue,
            };
            if !alive {
                // Cluster mode: a session that moved to another node did not
                // end; its record goes without a notice.
                if let Ok(Some(gone)) = sessions.ended_id(parsed.slot)
                    && parsed.names(&core.secret, &gone)
                    && sessions.moved_away(&gone)
                {
                    outbox.forget_live(&h);
                    continue;
                }
                let user = outbox.live_user(&h).unwrap_or_default();
                if let Err(e) = outbox.queue(&h, &user, "expired", now) {
                    log::warn!("gateway: cannot queue an expiry notice: {e}");
                }
            }
        }
        // At most OUTBOX_BATCH deliveries per pass, so a long outage's
        // backlog never holds the reaper's loop for long.
        let due = outbox.pending().into_iter().filter(|(_, n)| n.next_ms <= now).take(OUTBOX_BATCH);
        for (file, notice) in due {
            if now.saturating_sub(notice.ended_ms) > outbox::GIVE_UP_AFTER.as_millis() as u64 {
                log::warn!(
                    "gateway: giving up on the destroy notice for session {} (user {:?}, {}) after {} attempts over 24 h",
                    notice.session,
                    notice.user,
                    notice.reason,
                    notice.attempts
                );
                outbox.done(&file);
                continue;
            }
            let body = bytes::Bytes::from(notice.body().to_string());
            match managers.destroy(body).await {
                Ok(()) => outbox.done(&file),
                Err(why) => {
                    if warned.allow(now).is_some() {
                        log::warn!(
                            "gateway: destroy notice not delivered (attempt {}): {why}; retrying with back-off",
                            notice.attempts + 1
                        );
                    }
                    if let Err(e) = outbox.retry_later(&file, notice, now) {
                        log::warn!("gateway: cannot reschedule a destroy notice: {e}");
                    }
                }
            }
        }
    }
}

/// The initial filters of a new session for `user`.
pub fn initial_filters(core: &GatewayCore, user: &str) -> Result<Filters, filters::FilterError> {
    let f = &core.cfg.filters;
    Filters::initial(&f.categories, &f.adapter_ids, &f.identities, core.accept_user(), user)
}
