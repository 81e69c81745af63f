//! The per-process event hub: a bounded lock-free queue between the
//! session layer (which publishes after every operation, with no lock
//! held) and the subscribers (which a dispatcher feeds in batches).
//!
//! Flow, in one process (docs/design.md §11):
//! 1. A region operation records [`RegionEvent`]s under its stripe lock
//!    into room reserved before the lock (`region::events`).
//! 2. After the operation returns, [`EventHub::publish`] turns each into an
//!    [`Event`] and pushes it on a `crossbeam` [`ArrayQueue`]. The push
//!    never blocks and never waits: when the queue is full the event is
//!    dropped and counted (a metric and a rate-limited log line).
//! 3. A dispatcher drains the queue in batches and hands each batch to
//!    every [`Subscriber`]: a task on the worker's runtime every
//!    [`DISPATCH_PERIOD`], or the reaper's loop.
//!
//! The hub is built per process, after `fork`, and its subscribers are
//! fixed when it is built: nothing is installed once the service is shared.
//! It must never be called with a stripe lock held, and a subscriber must
//! never block the dispatcher (the webhook subscriber only offers batches
//! to its own bounded backlog).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crossbeam::queue::ArrayQueue;

use crate::logging::RateLimit;
use crate::metrics::{ServerStats, WorkerCounter};
use crate::region::{Change, EventKind, RegionEvent, SessionId};

/// How often a worker's dispatcher drains the queue.
pub const DISPATCH_PERIOD: Duration = Duration::from_millis(10);
/// Most events handed to subscribers in one batch.
pub const DISPATCH_BATCH: usize = 1024;

/// One lifecycle event as subscribers see it, packed small (at most 80
/// bytes) so the hand-off through the queue stays cheap: the old token of
/// a rotation and the attribute names of a change share one inline field,
/// and names go to the heap only when they do not fit in [`NAMES_INLINE`]
/// bytes. It holds the full id for in-process use; a subscriber that
/// sends events anywhere must turn it into something that is not a
/// credential (the webhook sends a keyed hash).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The slot's change sequence after the change (orders one session's
    /// events across processes; 0 for `Touched`).
    pub seq: u64,
    /// When, ms since the epoch.
    pub at_ms: u64,
    /// The session (its new id, for `Rotated`).
    pub id: SessionId,
    /// The old token of a rotation, or the names of a change.
    extra: Extra,
    /// Why an `invalidated` or `evicted` session ended, when the session
    /// layer knows more than the kind says.
    pub reason: Option<EndReason>,
}

/// Why the session layer ended a session (an event's `reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// "Log out everywhere": every session of the principal ended.
    LogoutEverywhere,
    /// The principal's cap made room for a newer session.
    PrincipalCap,
}

impl EndReason {
    /// The name in logs and webhook payloads.
    pub fn name(self) -> &'static str {
        match self {
            EndReason::LogoutEverywhere => "logout_everywhere",
            EndReason::PrincipalCap => "principal_cap",
        }
    }
}

/// Bytes of attribute names an [`Event`] holds without allocating.
pub const NAMES_INLINE: usize = 30;

/// The variable part of an [`Event`].
#[derive(Clone, PartialEq, Eq)]
enum Extra {
    /// Nothing.
    None,
    /// `Rotated`: the token of the id that stopped working (same node,
    /// context and slot as the new one).
    OldToken([u8; crate::region::TOKEN_LEN]),
    /// `Changed`: names, each as a u8 length and its bytes, inline.
    Names {
        /// Encoded bytes used.
        len: u8,
        /// Encoded names.
        bytes: [u8; NAMES_INLINE],
    },
    /// `Changed`: names, each as a u16 length and its bytes, on the heap.
    HeapNames(Box<[u8]>),
}

impl std::fmt::Debug for Extra {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Extra::None => f.write_str("None"),
            // Never print a token.
            Extra::OldToken(_) => f.write_str("OldToken(..)"),
            Extra::Names { .. } | Extra::HeapNames(_) => f.write_str("Names(..)"),
        }
    }
}

impl Event {
    /// Builds an event; `names` are used only for `Changed`.
    pub fn new<'a>(e: &RegionEvent, names: impl Iterator<Item = &'a str> + Clone) -> Event {
        let extra = match (e.kind, &e.old) {
            (EventKind::Rotated, Some(old)) => Extra::OldToken(old.token),
            (EventKind::Changed, _) => encode_names(names),
            _ => Extra::None,
        };
        Event { kind: e.kind, seq: e.seq, at_ms: e.at_ms, id: e.id, extra, reason: None }
    }

    /// The id that stopped working, for `Rotated`.
    pub fn old(&self) -> Option<SessionId> {
        match &self.extra {
            Extra::OldToken(t) => Some(SessionId { token: *t, ..self.id }),
            _ => None,
        }
    }

    /// For `Changed`: the attribute names set or removed, in request order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        let (bytes, wide): (&[u8], bool) = match &self.extra {
            Extra::Names { len, bytes } => (&bytes[..*len as usize], false),
            Extra::HeapNames(b) => (b, true),
            _ => (&[], false),
        };
        let mut at = 0;
        std::iter::from_fn(move || {
            let (n, head) = if wide {
                (u16::from_le_bytes([*bytes.get(at)?, *bytes.get(at + 1)?]) as usize, 2)
            } else {
                (*bytes.get(at)? as usize, 1)
            };
            let s = bytes.get(at + head..at + head + n)?;
            at += head + n;
            // Encoded from &str, so always UTF-8.
            Some(std::str::from_utf8(s).unwrap_or("\u{fffd}"))
        })
    }
}

/// Encodes names inline (u8 lengths) when they fit, on the heap (u16
/// lengths; names are at most 1024 bytes) otherwise.
fn encode_names<'a>(names: impl Iterator<Item = &'a str> + Clone) -> Extra {
    let total: usize = names.clone().map(|n| 1 + n.len()).sum();
    if total <= NAMES_INLINE && names.clone().all(|n| n.len() <= u8::MAX as usize) {
        let mut bytes = [0u8; NAMES_INLINE];
        let mut at = 0;
        for n in names {
            bytes[at] = n.len() as u8;
            bytes[at + 1..at + 1 + n.len()].copy_from_slice(n.as_bytes());
            at += 1 + n.len();
        }
        return Extra::Names { len: at as u8, bytes };
    }
    let mut v = Vec::with_capacity(total + names.clone().count());
    for n in names {
        let b = &n.as_bytes()[..n.len().min(u16::MAX as usize)];
        v.extend_from_slice(&(b.len() as u16).to_le_bytes());
        v.extend_from_slice(b);
    }
    Extra::HeapNames(v.into_boxed_slice())
}

/// Receives batches of events from the dispatcher, outside every lock.
pub trait Subscriber: Send + Sync {
    /// A short name for logs.
    fn name(&self) -> &'static str;
    /// Whether it wants `touched` events (they are the most frequent).
    fn wants_touched(&self) -> bool {
        false
    }
    /// Takes a batch. Must not block: queue or drop, never wait.
    fn deliver(&self, contexts: &ContextNames, batch: &[Event]);
    /// Called on every dispatcher tick, events or not (metrics upkeep).
    fn tick(&self) {}
}

/// Context names by id tag, for subscribers that print them.
#[derive(Clone, Debug, Default)]
pub struct ContextNames(Vec<(u16, String)>);

impl ContextNames {
    /// From (tag, name) pairs.
    pub fn new(pairs: Vec<(u16, String)>) -> ContextNames {
        ContextNames(pairs)
    }
    /// The name of the context with this tag ("?" if unknown).
    pub fn name(&self, tag: u16) -> &str {
        self.0.iter().find(|(t, _)| *t == tag).map_or("?", |(_, n)| n.as_str())
    }
}

/// The default subscriber: one debug-level line per event, ids hashed.
#[derive(Debug, Default)]
pub struct LogSubscriber;

impl Subscriber for LogSubscriber {
    fn name(&self) -> &'static str {
        "log"
    }
    fn wants_touched(&self) -> bool {
        log::log_enabled!(log::Level::Trace)
    }
    fn deliver(&self, contexts: &ContextNames, batch: &[Event]) {
        for e in batch {
            let ctx = contexts.name(e.id.context);
            match (e.kind, e.old()) {
                (EventKind::Rotated, Some(old)) => {
                    log::debug!("context={ctx} rotated {} -> {} seq={}", old.log_hash(), e.id.log_hash(), e.seq)
                }
                (EventKind::Changed, _) => {
                    log::debug!(
                        "context={ctx} changed {} seq={} names={:?}",
                        e.id.log_hash(),
                        e.seq,
                        e.names().collect::<Vec<_>>()
                    )
                }
                (EventKind::Touched, _) => log::trace!("context={ctx} touched {}", e.id.log_hash()),
                (k, _) => log::debug!("context={ctx} {} {} seq={}", k.name(), e.id.log_hash(), e.seq),
            }
        }
    }
}

/// Where the hub counts into `/metrics`: the shared counters and this
/// process's block in them.
#[derive(Clone)]
pub struct HubMetrics {
    /// The server counters.
    pub stats: Arc<ServerStats>,
    /// This process's block (a worker's number; the reaper's is past the workers').
    pub block: usize,
}

/// The per-process queue and its subscribers.
pub struct EventHub {
    /// The bounded queue between publishers and the dispatcher.
    queue: ArrayQueue<Event>,
    /// Fixed at construction.
    subscribers: Vec<Arc<dyn Subscriber>>,
    /// Whether any subscriber wants `touched` events.
    wants_touched: bool,
    /// Context names for subscribers.
    contexts: ContextNames,
    /// Events queued.
    published: AtomicU64,
    /// Events dropped because the queue was full (or lost for want of
    /// reserved room, which would be a bug).
    dropped: AtomicU64,
    /// One "queue full" line per 10 s.
    drop_log: RateLimit,
    /// Shared counters, if the process has them.
    metrics: Option<HubMetrics>,
}

impl EventHub {
    /// A hub with room for `capacity` queued events (at least 1).
    pub fn new(
        capacity: usize,
        subscribers: Vec<Arc<dyn Subscriber>>,
        contexts: ContextNames,
        metrics: Option<HubMetrics>,
    ) -> EventHub {
        let wants_touched = subscribers.iter().any(|s| s.wants_touched());
        EventHub {
            queue: ArrayQueue::new(capacity.max(1)),
            subscribers,
            wants_touched,
            contexts,
            published: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            drop_log: RateLimit::new(10_000),
            metrics,
        }
    }

    /// Whether any subscriber wants `touched` events.
    pub fn wants_touched(&self) -> bool {
        self.wants_touched
    }

    /// Queues the events of one operation (and drains `v`). Called with no
    /// lock held. `changes` names the attributes of a `Changed` event.
    /// Never blocks: a full queue drops and counts.
    pub fn publish(&self, v: &mut Vec<RegionEvent>, changes: Option<&[Change<'_>]>, lost: u64) {
        self.publish_why(v, changes, lost, None)
    }

    /// [`Self::publish`], with the reason the session layer gives for the
    /// ends among them.
    pub fn publish_why(
        &self,
        v: &mut Vec<RegionEvent>,
        changes: Option<&[Change<'_>]>,
        lost: u64,
        reason: Option<EndReason>,
    ) {
        let mut dropped = lost;
        for e in v.drain(..) {
            if e.kind == EventKind::Touched && !self.wants_touched {
                continue;
            }
            let mut ev = Event::new(&e, changes.unwrap_or_default().iter().map(|(n, _)| *n));
            if matches!(e.kind, EventKind::Invalidated | EventKind::Evicted) {
                ev.reason = reason;
            }
            if self.queue.push(ev).is_err() {
                dropped += 1;
            }
        }
        if dropped > 0 {
            self.count_dropped(dropped);
        }
    }

    fn count_dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
        if let Some(m) = &self.metrics {
            m.stats.add_worker(m.block, WorkerCounter::EventsDropped, n);
        }
        if let Some(suppressed) = self.drop_log.allow(crate::clock::now_ms()) {
            log::warn!(
                "lifecycle event queue full ({} events): dropped {n} event(s), {suppressed} more drop(s) not logged \
                 since the last line; subscribers ({}) are not keeping up, raise events.queue_size",
                self.queue.capacity(),
                self.subscriber_names()
            );
        }
    }

    fn subscriber_names(&self) -> String {
        self.subscribers.iter().map(|s| s.name()).collect::<Vec<_>>().join(", ")
    }

    /// Drains up to `max` events, in queue order. The consumer counts
    /// them (the publishers' hot path does no shared increment).
    pub fn drain(&self, max: usize) -> Vec<Event> {
        let mut out = Vec::with_capacity(self.queue.len().min(max));
        while out.len() < max {
            match self.queue.pop() {
                Some(e) => out.push(e),
                None => break,
            }
        }
        if !out.is_empty() {
            self.published.fetch_add(out.len() as u64, Ordering::Relaxed);
            if let Some(m) = &self.metrics {
                m.stats.add_worker(m.block, WorkerCounter::EventsPublished, out.len() as u64);
            }
        }
        out
    }

    /// Hands everything queued now to every subscriber, in batches of at
    /// most [`DISPATCH_BATCH`]; returns how many events went out.
    pub fn dispatch(&self) -> usize {
        let mut total = 0;
        loop {
            let batch = self.drain(DISPATCH_BATCH);
            if batch.is_empty() {
                return total;
            }
            total += batch.len();
            for s in &self.subscribers {
                s.deliver(&self.contexts, &batch);
            }
        }
    }

    /// The dispatcher of a process with a runtime: drains every
    /// [`DISPATCH_PERIOD`] until the process exits.
    pub async fn run(self: Arc<Self>) {
        let mut tick = tokio::time::interval(DISPATCH_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.dispatch();
            for s in &self.subscribers {
                s.tick();
            }
        }
    }

    /// Events queued and taken by the dispatcher so far (plus those
    /// still waiting in the queue).
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed) + self.queue.len() as u64
    }

    /// Events taken by the dispatcher so far.
    pub fn dispatched(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// Events dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Collect(Mutex<Vec<Event>>);
    impl Subscriber for Collect {
        fn name(&self) -> &'static str {
            "collect"
        }
        fn deliver(&self, _: &ContextNames, batch: &[Event]) {
            self.0.lock().unwrap().extend_from_slice(batch);
        }
    }

    fn ev(kind: EventKind, seq: u64) -> RegionEvent {
        let id = SessionId { node: 1, context: 2, slot: 3, token: [seq as u8; crate::region::TOKEN_LEN] };
        RegionEvent { kind, id, old: None, seq, at_ms: 10 + seq }
    }

    #[test]
    fn a_full_queue_drops_and_counts_and_never_blocks() {
        let sub = Arc::new(Collect::default());
        let hub = EventHub::new(4, vec![sub.clone()], ContextNames::default(), None);
        let mut v: Vec<_> = (1..=10).map(|s| ev(EventKind::Created, s)).collect();
        hub.publish(&mut v, None, 0);
        assert!(v.is_empty());
        assert_eq!((hub.published(), hub.dropped()), (4, 6));
        assert_eq!(hub.dispatch(), 4);
        let got: Vec<u64> = sub.0.lock().unwrap().iter().map(|e| e.seq).collect();
        assert_eq!(got, [1, 2, 3, 4], "the first four, in order");
        // Room again after the drain.
        let mut v = vec![ev(EventKind::Invalidated, 11)];
        hub.publish(&mut v, None, 0);
        assert_eq!((hub.published(), hub.dropped()), (5, 6));
    }

    #[test]
    fn changed_events_carry_the_names_and_touches_go_only_to_those_who_want_them() {
        let sub = Arc::new(Collect::default());
        let hub = EventHub::new(16, vec![sub.clone()], ContextNames::default(), None);
        let changes: [Change<'_>; 2] = [("cart", None), ("user", Some(b"x"))];
        let mut v = vec![ev(EventKind::Touched, 0), ev(EventKind::Changed, 5)];
        hub.publish(&mut v, Some(&changes), 0);
        hub.dispatch();
        let got = sub.0.lock().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].names().collect::<Vec<_>>(), ["cart", "user"]);
        // Names past the inline room go to the heap, intact.
        let long: Vec<String> = (0..20).map(|i| format!("attribute-{i:02}")).collect();
        let e = Event::new(&ev(EventKind::Changed, 1), long.iter().map(String::as_str));
        assert_eq!(e.names().collect::<Vec<_>>(), long);
        let big = "n".repeat(300);
        let e = Event::new(&ev(EventKind::Changed, 1), [big.as_str()].into_iter());
        assert_eq!(e.names().collect::<Vec<_>>(), [big.as_str()]);
        assert!(Event::new(&ev(EventKind::Created, 1), long.iter().map(String::as_str)).names().next().is_none());
        assert!(std::mem::size_of::<Event>() <= 80, "{}", std::mem::size_of::<Event>());
    }
}
