//! The lifecycle webhook subscriber: turns event batches into JSON that
//! never carries a session id, and offers them to the signed, retrying
//! sender in [`crate::webhook`].
//!
//! A session is named by a *session key*: HMAC-SHA256 of its context tag
//! and token under a key derived from the webhook secret, base64url, 128
//! bits. It is stable for the life of one id (a rotation gives a new key
//! and the event names both) and cannot be turned back into the id. Full
//! ids never leave the process.
//!
//! It must never block the dispatcher: `deliver` only formats and offers;
//! a full backlog drops the batch, counted.

use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::events::{ContextNames, Event, HubMetrics, Subscriber};
use crate::metrics::WorkerCounter;
use crate::region::{EventKind, SessionId};
use crate::webhook::{Webhook, WebhookConfig, WebhookError, WebhookStats};

/// Derives the key that names sessions from the webhook secret (so the
/// signing key itself never touches session data).
fn session_key_secret(secret: &[u8]) -> Vec<u8> {
    crate::crypto::hmac_sha256(secret, &[b"sessiond session key v1"]).to_vec()
}

/// The session key of `id` (see the module doc): 22 base64url characters.
///
/// It is derived from the session's store key (`backing::store_key`), so
/// an `expired` event of the cluster's store sweep, which knows only that
/// key, carries the same session key as the session's other events.
pub fn session_key(key: &[u8], id: &SessionId) -> String {
    let sk = crate::store::store_key(id.context, &id.token);
    let part: &[u8] = if id.slot == crate::store::SWEPT_SLOT { &id.token } else { &sk[..crate::region::TOKEN_LEN] };
    let mac = crate::crypto::hmac_sha256(key, &[&id.context.to_be_bytes(), part]);
    URL_SAFE_NO_PAD.encode(&mac[..16])
}

/// One event as JSON (no session id in it).
pub fn event_json(contexts: &ContextNames, key: &[u8], node_id: u32, e: &Event) -> Value {
    let at = crate::clock::rfc3339_millis(e.at_ms);
    let mut o = json!({
        "type": format!("session.{}", e.kind.name()),
        "context": contexts.name(e.id.context),
        "session": session_key(key, &e.id),
        "node": node_id,
        "seq": e.seq,
        "at": at,
    });
    if let (EventKind::Rotated, Some(old)) = (e.kind, e.old()) {
        o["previous"] = Value::String(session_key(key, &old));
    }
    if e.kind == EventKind::Changed {
        o["names"] = json!(e.names().collect::<Vec<_>>());
    }
    if let Some(why) = e.reason {
        o["reason"] = Value::String(why.name().into());
    }
    o
}

/// The subscriber.
pub struct WebhookSubscriber {
    /// The sender (its delivery task runs on this process's runtime).
    hook: Webhook,
    /// Key for session keys.
    key: Vec<u8>,
    /// Settings.
    settings: WebhookConfig,
    /// Where to count, and the last stats already counted.
    metrics: Option<(HubMetrics, Mutex<WebhookStats>)>,
}

impl WebhookSubscriber {
    /// Starts the sender; must run inside the process's runtime (after fork).
    pub fn start(settings: WebhookConfig, metrics: Option<HubMetrics>) -> Result<WebhookSubscriber, WebhookError> {
        let hook = Webhook::start(settings.clone())?;
        let key = session_key_secret(&settings.secret);
        Ok(WebhookSubscriber {
            hook,
            key,
            settings,
            metrics: metrics.map(|m| (m, Mutex::new(WebhookStats::default()))),
        })
    }

    /// The sender's counters.
    pub fn stats(&self) -> WebhookStats {
        self.hook.stats()
    }
}

impl Subscriber for WebhookSubscriber {
    fn name(&self) -> &'static str {
        "webhook"
    }

    fn wants_touched(&self) -> bool {
        self.settings.include_touched
    }

    fn deliver(&self, contexts: &ContextNames, batch: &[Event]) {
        let wanted = batch.iter().filter(|e| e.kind != EventKind::Touched || self.settings.include_touched);
        let mut chunk = Vec::with_capacity(self.settings.max_batch.min(batch.len()));
        for e in wanted {
            chunk.push(event_json(contexts, &self.key, self.settings.node_id, e));
            if chunk.len() == self.settings.max_batch {
                self.hook.offer(std::mem::take(&mut chunk));
            }
        }
        if !chunk.is_empty() {
            self.hook.offer(chunk);
        }
    }

    fn tick(&self) {
        let Some((m, last)) = &self.metrics else { return };
        let now = self.hook.stats();
        let Ok(mut last) = last.lock() else { return };
        let add = |c: WorkerCounter, new: u64, old: u64| {
            if new > old {
                m.stats.add_worker(m.block, c, new - old);
            }
        };
        add(WorkerCounter::WebhookDeliveredEvents, now.delivered_events, last.delivered_events);
        add(WorkerCounter::WebhookFailedAttempts, now.failed_attempts, last.failed_attempts);
        add(WorkerCounter::WebhookDroppedEvents, now.dropped_events, last.dropped_events);
        *last = now;
    }
}

/// The webhook settings of `config`, reading the secret file now (after
/// `fork`, so each process reads it itself); `None` when `[events] url` is
/// not set. The error names the key and the file, never the secret.
pub fn webhook_settings(config: &crate::config::Config, origin: &str) -> Result<Option<WebhookConfig>, WebhookError> {
    let e = &config.events;
    let Some(url) = &e.url else { return Ok(None) };
    let Some(file) = &e.secret_file else {
        return Err(WebhookError::NoSecretFile);
    };
    let raw = crate::config::read_secret_file("events.secret_file", file)
        .map_err(|e| WebhookError::SecretFile(e.to_string()))?;
    let secret = crate::webhook::parse_secret(&raw)
        .map_err(|e| WebhookError::SecretFile(format!("events.secret_file {}: {e}", file.display())))?;
    Ok(Some(WebhookConfig {
        url: url.clone(),
        secret,
        timeout: e.timeout,
        max_attempts: e.max_attempts,
        max_batch: e.max_batch as usize,
        backlog: (e.queue_size as usize / e.max_batch.max(1) as usize).max(16),
        include_touched: e.include_touched,
        node_id: config.node_id,
        origin: origin.to_string(),
    }))
}

/// This process's hub from the configuration: the webhook settings (the
/// secret file read now) and the log subscriber; `Err` names what is wrong.
/// Call inside the process's runtime, after `fork`.
pub fn hub_for_process(
    config: &crate::config::Config,
    contexts: ContextNames,
    metrics: HubMetrics,
    origin: &str,
) -> Result<Option<std::sync::Arc<super::EventHub>>, WebhookError> {
    let webhook = webhook_settings(config, origin)?;
    build_hub(webhook, config.events.queue_size as usize, contexts, Some(metrics))
}

/// Builds this process's event hub, after `fork` and inside its runtime
/// (the webhook's delivery task is spawned on it): the log subscriber when
/// debug logging is on, the webhook when configured. `None` when nobody
/// listens, so operations skip event collection entirely.
pub fn build_hub(
    webhook: Option<WebhookConfig>,
    queue_size: usize,
    contexts: ContextNames,
    metrics: Option<HubMetrics>,
) -> Result<Option<std::sync::Arc<super::EventHub>>, WebhookError> {
    let mut subs: Vec<std::sync::Arc<dyn Subscriber>> = Vec::new();
    if log::log_enabled!(log::Level::Debug) {
        subs.push(std::sync::Arc::new(super::LogSubscriber));
    }
    if let Some(w) = webhook {
        subs.push(std::sync::Arc::new(WebhookSubscriber::start(w, metrics.clone())?));
    }
    if subs.is_empty() {
        return Ok(None);
    }
    Ok(Some(std::sync::Arc::new(super::EventHub::new(queue_size, subs, contexts, metrics))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_keys_are_stable_distinct_and_never_contain_the_id() {
        let id = SessionId { node: 1, context: 7, slot: 9, token: [42; crate::region::TOKEN_LEN] };
        let mut other = id;
        other.token[0] = 43;
        let k = session_key_secret(b"secret");
        assert_eq!(session_key(&k, &id), session_key(&k, &id));
        assert_ne!(session_key(&k, &id), session_key(&k, &other));
        assert_ne!(session_key(&k, &id), session_key(&session_key_secret(b"other"), &id));
        assert_eq!(session_key(&k, &id).len(), 22);
        // Another node and slot for the same token keep the key (re-issued ids).
        let moved = SessionId { node: 2, slot: 3, ..id };
        assert_eq!(session_key(&k, &id), session_key(&k, &moved));
        let re =
            crate::region::RegionEvent { kind: EventKind::Rotated, id: other, old: Some(id), seq: 4, at_ms: 1_000 };
        let e = Event::new(&re, std::iter::empty());
        let j = event_json(&ContextNames::new(vec![(7, "default".into())]), &k, 1, &e).to_string();
        assert!(!j.contains(&id.to_string()) && !j.contains(&other.to_string()), "{j}");
        assert_eq!(e.old(), Some(id));
        assert!(j.contains("\"type\":\"session.rotated\"") && j.contains("\"previous\""), "{j}");
        assert!(j.contains("\"context\":\"default\"") && j.contains("1970-01-01T00:00:01.000Z"), "{j}");
    }
}
