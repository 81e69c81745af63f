//! The session layer: one door to sessions.
//!
//! [`Sessions`] is the per-context service that every front end calls: the
//! HTTP API, `sessionctl`, the reaper, and later the gateway. It owns the
//! context's region (`Arc<Region>`), the region's settings, the process's
//! lifecycle event hub, and an optional backing store. Nothing above it
//! touches a `Region`.
//!
//! Every operation runs the region call with an event buffer and, once the
//! call has returned (so its stripe lock is released), publishes what the
//! call recorded to the hub. Without a hub the buffer discards and the
//! operation costs what the bare region call costs.
//!
//! | module | concept |
//! | --- | --- |
//! | [`events`] | the event hub: bounded queue, subscribers, dispatcher, log subscriber |
//! | [`lifecycle_webhook`] | the lifecycle webhook subscriber (Standard Webhooks) |
//! | [`backing`] | the backing-store trait the cluster implements |
//!
//! This module must never hold a lock across a publish, and never block:
//! the hub's push drops when the queue is full.

pub mod backing;
pub mod events;
pub mod lifecycle_webhook;

use std::cell::RefCell;
use std::path::Path;
use std::sync::Arc;

pub use events::{ContextNames, Event, EventHub, HubMetrics, LogSubscriber, Subscriber};

use crate::region::{
    Adopt, Change, EventBuf, Geometry, ReapReport, Region, RegionConfig, RegionError, RegionEvent, RegionStats,
    Session, SessionId, SessionMeta,
};

/// Attribute names starting with this character are reserved for sessiond
/// itself (the gateway's user and filters). The session API refuses names
/// with control characters, so a client can neither read nor write them,
/// and session listings leave them out.
pub const RESERVED_PREFIX: char = '\u{1}';

/// Whether an attribute name is reserved (see [`RESERVED_PREFIX`]).
pub fn is_reserved(name: &str) -> bool {
    name.starts_with(RESERVED_PREFIX)
}

thread_local! {
    /// The reusable event vector of this thread: region calls reserve room
    /// in it before they lock, so a steady state allocates nothing.
    static EVENTS: RefCell<Vec<RegionEvent>> = RefCell::new(Vec::with_capacity(16));
}

/// One context's sessions.
pub struct Sessions {
    /// The shared region.
    region: Arc<Region>,
    /// This process's event hub; `None` discards events.
    hub: Option<Arc<EventHub>>,
    /// The backing store (cluster mode); `None` keeps sessions local.
    store: Option<Arc<dyn backing::BackingStore>>,
}

impl Sessions {
    /// The service over `region`, with no hub and no store.
    pub fn new(region: Arc<Region>) -> Sessions {
        Sessions { region, hub: None, store: None }
    }

    /// Attaches to an existing region file for a tool: no data-dir lock,
    /// no lock re-initialisation, settings from the file's header, no hub
    /// (a tool's events are counted by the region but go to no subscriber).
    pub fn attach(path: &Path, lock_timeout: std::time::Duration) -> Result<Sessions, RegionError> {
        Ok(Sessions::new(Arc::new(Region::attach(path, lock_timeout)?)))
    }

    /// The same region with `hub` installed: each child process builds
    /// its own after `fork`, before it shares the service.
    pub fn with_hub(&self, hub: Option<Arc<EventHub>>) -> Sessions {
        Sessions { region: self.region.clone(), hub, store: self.store.clone() }
    }

    /// The same service with a backing store installed.
    pub fn with_store(self, store: Arc<dyn backing::BackingStore>) -> Sessions {
        Sessions { store: Some(store), ..self }
    }

    /// Runs one region operation with an event buffer and publishes what
    /// it recorded after it returned (no lock held by then).
    #[inline]
    fn run<T, E>(
        &self,
        changes: Option<&[Change<'_>]>,
        op: impl FnOnce(&Region, &mut EventBuf<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let Some(hub) = &self.hub else {
            return op(&self.region, &mut EventBuf::discard());
        };
        EVENTS.with(|cell| {
            let mut v = cell.borrow_mut();
            let (r, lost) = {
                let mut ev = EventBuf::collect(&mut v);
                let r = op(&self.region, &mut ev);
                (r, ev.lost())
            };
            hub.publish(&mut v, changes, lost);
            r
        })
    }

    // ---------- sessions ----------

    /// Creates a session.
    pub fn create(&self, now_ms: u64) -> Result<SessionMeta, RegionError> {
        self.run(None, |r, ev| r.create_ev(now_ms, ev))
    }

    /// The whole session; `touch` refreshes it and clears "new".
    pub fn get(&self, id: &SessionId, touch: bool, now_ms: u64) -> Result<Session, RegionError> {
        self.run(None, |r, ev| r.get_ev(id, touch, now_ms, ev))
    }

    /// One attribute into `out`; `Ok(false)` if the session lacks it.
    pub fn get_attr(
        &self,
        id: &SessionId,
        name: &str,
        touch: bool,
        now_ms: u64,
        out: &mut Vec<u8>,
    ) -> Result<bool, RegionError> {
        self.run(None, |r, ev| r.get_attr_ev(id, name, touch, now_ms, out, ev))
    }

    /// Sets and removes attributes atomically.
    pub fn update(&self, id: &SessionId, changes: &[Change<'_>], now_ms: u64) -> Result<(), RegionError> {
        self.run(Some(changes), |r, ev| r.update_ev(id, changes, now_ms, ev))
    }

    /// Sets one attribute.
    pub fn set_attr(&self, id: &SessionId, name: &str, value: &[u8], now_ms: u64) -> Result<(), RegionError> {
        self.update(id, &[(name, Some(value))], now_ms)
    }

    /// Removes one attribute (absent is fine).
    pub fn remove_attr(&self, id: &SessionId, name: &str, now_ms: u64) -> Result<(), RegionError> {
        self.update(id, &[(name, None)], now_ms)
    }

    /// Atomic read-modify-write of one attribute (see
    /// `Region::modify_attr_ev`): `f` runs under the stripe lock with a
    /// copy of the current value and must be quick.
    pub fn modify_attr<E: From<RegionError>>(
        &self,
        id: &SessionId,
        name: &str,
        now_ms: u64,
        f: impl FnOnce(Option<&[u8]>) -> Result<Option<Vec<u8>>, E>,
    ) -> Result<(), E> {
        let changes: [Change<'_>; 1] = [(name, None)];
        self.run(Some(&changes), |r, ev| r.modify_attr_ev(id, name, now_ms, ev, f))
    }

    /// Installs a session another node held (a cluster takeover); see
    /// `Region::adopt`. No event: the session moved, it did not start.
    pub fn adopt(&self, a: &Adopt<'_>, now_ms: u64) -> Result<SessionMeta, RegionError> {
        self.region.adopt(a, now_ms)
    }

    /// The id of the session that last ended in `slot` while it is free
    /// (for a store that must still remove it).
    pub fn ended_id(&self, slot: u32) -> Result<Option<SessionId>, RegionError> {
        self.region.ended_id(slot)
    }

    /// Ends the session now without an event: this node's copy was stale
    /// (another node owns the session).
    pub fn drop_stale(&self, id: &SessionId, now_ms: u64) -> Result<(), RegionError> {
        self.region.invalidate(id, now_ms)
    }

    /// The id of the live session in `slot`, if any (no touch).
    pub fn id_in_slot(&self, slot: u32, now_ms: u64) -> Result<Option<SessionId>, RegionError> {
        self.region.id_in_slot(slot, now_ms)
    }

    /// Refreshes the last access.
    pub fn touch(&self, id: &SessionId, now_ms: u64) -> Result<SessionMeta, RegionError> {
        self.run(None, |r, ev| r.touch_ev(id, now_ms, ev))
    }

    /// Ends the session now.
    pub fn invalidate(&self, id: &SessionId, now_ms: u64) -> Result<(), RegionError> {
        self.run(None, |r, ev| r.invalidate_ev(id, now_ms, ev))
    }

    /// Gives the session a new id, keeping its data.
    pub fn rotate(&self, id: &SessionId, now_ms: u64) -> Result<SessionMeta, RegionError> {
        self.run(None, |r, ev| r.rotate_ev(id, now_ms, ev))
    }

    /// Checks one change against the limits, before any lock.
    pub fn check_change(&self, name: &str, value: Option<&[u8]>) -> Result<(), RegionError> {
        self.region.check_change(name, value)
    }

    /// A page of live sessions from slot `cursor` on.
    pub fn list(&self, cursor: u32, limit: usize, now_ms: u64) -> Result<(Vec<SessionMeta>, Option<u32>), RegionError> {
        self.region.list(cursor, limit, now_ms)
    }

    /// The live session in `slot`, copied out without touching it.
    pub fn snapshot_slot(&self, slot: u32, now_ms: u64) -> Result<Option<Session>, RegionError> {
        self.region.snapshot_slot(slot, now_ms)
    }

    /// A reaper sweep. Events are handed on between stripes, so a sweep of
    /// a large region needs room for one stripe's worth at a time.
    pub fn reap(&self, now_ms: u64) -> Result<ReapReport, RegionError> {
        let Some(hub) = &self.hub else {
            return self.region.reap(now_ms);
        };
        let flush = |v: &mut Vec<RegionEvent>| hub.publish(v, None, 0);
        let mut v = Vec::new();
        let (r, lost) = {
            let mut ev = EventBuf::collect_flushing(&mut v, &flush);
            let r = self.region.reap_ev(now_ms, &mut ev);
            (r, ev.lost())
        };
        hub.publish(&mut v, None, lost);
        r
    }

    // ---------- change marks, for a backing store ----------

    /// `Some(change sequence)` if `slot` changed since a store last
    /// acknowledged it.
    pub fn change_mark(&self, slot: u32) -> Result<Option<u64>, RegionError> {
        self.region.change_mark(slot)
    }

    /// A store holds `slot` as of change `seq`; clears the mark if current.
    pub fn acknowledge(&self, slot: u32, seq: u64) -> Result<bool, RegionError> {
        self.region.acknowledge(slot, seq)
    }

    /// How many slots carry a change mark (a store has yet to hear of them).
    pub fn pending_changes(&self) -> u64 {
        self.region.changed_count()
    }

    /// Slots with a change mark, from `from` on, at most `limit`.
    pub fn changed_slots(&self, from: u32, limit: usize) -> Vec<u32> {
        self.region.changed_slots(from, limit)
    }

    // ---------- the context ----------

    /// The context name.
    pub fn context(&self) -> &str {
        self.region.context()
    }

    /// The 16-bit tag carried in this context's ids.
    pub fn tag(&self) -> u16 {
        self.region.tag()
    }

    /// The region's settings (limits, timeouts, policy).
    pub fn settings(&self) -> &RegionConfig {
        self.region.config()
    }

    /// The region's geometry.
    pub fn geometry(&self) -> &Geometry {
        self.region.geometry()
    }

    /// The region file.
    pub fn path(&self) -> &Path {
        self.region.path()
    }

    /// Live sessions, without locks.
    pub fn live(&self) -> u64 {
        self.region.live()
    }

    /// Every counter, without locks.
    pub fn stats(&self) -> RegionStats {
        self.region.stats()
    }

    /// Every problem in the region (each stripe checked under its lock).
    pub fn verify(&self) -> Vec<String> {
        self.region.verify()
    }

    /// Whether a backing store is installed.
    pub fn has_store(&self) -> bool {
        self.store.is_some()
    }

    /// The event hub, if events are collected in this process.
    pub fn hub(&self) -> Option<&Arc<EventHub>> {
        self.hub.as_ref()
    }

    /// Flushes and sets the clean flag (the master, last, at exit).
    pub fn close_clean(&self) -> Result<(), RegionError> {
        self.region.close_clean()
    }
}
