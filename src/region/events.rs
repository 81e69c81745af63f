//! Lifecycle events as the region produces them, and the buffer that
//! carries them out from under the stripe lock.
//!
//! Every change to a session produces one [`RegionEvent`] while the stripe
//! lock is held, so the event carries the slot's change sequence number
//! read under that lock (events of one session are totally ordered by it,
//! across processes). The event is pushed into an [`EventBuf`], never
//! handed to anyone under the lock: the buffer only stores into capacity
//! reserved before the lock was taken, so the hot path neither blocks nor
//! allocates while it holds a lock. The caller (the session layer,
//! `crate::session`) hands the buffered events on after the operation
//! returns, that is after the lock is released.
//!
//! This module must never call out of the region: it has no subscribers,
//! no queue and no I/O.

use super::id::SessionId;

/// What happened to a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A new session was created.
    Created,
    /// The session got a new id; its data stayed (`old` holds the old id).
    Rotated,
    /// A client or a tool invalidated the session.
    Invalidated,
    /// The session passed its idle or absolute deadline.
    Expired,
    /// The session was dropped to make room (`when_full = "evict-oldest"`).
    Evicted,
    /// Attributes were set or removed (the session layer adds the names).
    Changed,
    /// A read access refreshed the last access time.
    Touched,
    /// Cluster mode, `serve-local`: changes this node acknowledged while
    /// the store was away were lost, because another node took the
    /// session over meanwhile (found at the flush; this node's copy is
    /// dropped, the session lives on at the other node).
    Conflict,
}

impl EventKind {
    /// The name used in logs and webhook payloads (`session.<name>`).
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Created => "created",
            EventKind::Rotated => "rotated",
            EventKind::Invalidated => "invalidated",
            EventKind::Expired => "expired",
            EventKind::Evicted => "evicted",
            EventKind::Changed => "changed",
            EventKind::Touched => "touched",
            EventKind::Conflict => "conflict",
        }
    }

    /// Whether the event ends the session.
    pub fn ends_session(self) -> bool {
        matches!(self, EventKind::Invalidated | EventKind::Expired | EventKind::Evicted)
    }
}

/// One change, as recorded under the stripe lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionEvent {
    /// What happened.
    pub kind: EventKind,
    /// The session's id (after the change, for `Rotated`).
    pub id: SessionId,
    /// The id that stopped working, for `Rotated`.
    pub old: Option<SessionId>,
    /// The slot's change sequence after the change (format 2; 0 for
    /// `Touched`, which does not change what a store keeps, and in
    /// format-1 files).
    pub seq: u64,
    /// When it happened, ms since the epoch.
    pub at_ms: u64,
}

/// The hook a flushing [`EventBuf`] hands collected events to.
pub type FlushFn<'a> = &'a dyn Fn(&mut Vec<RegionEvent>);

/// Where region operations put their events.
///
/// A buffer is either *collecting* (it borrows a reusable vector, normally
/// a per-thread one owned by the session layer) or *discarding* (tools and
/// tests that have no subscriber). Region code calls `before_lock`
/// with the most events it may push under the next lock; under the lock it
/// only calls `push`, which never grows the vector: an event that
/// finds no reserved room is counted in [`Self::lost`] instead.
pub struct EventBuf<'a> {
    /// Collected events; `None` discards.
    items: Option<&'a mut Vec<RegionEvent>>,
    /// Called with the collected events when a multi-lock operation (a
    /// sweep) needs room before its next lock; it must drain the vector.
    flush: Option<FlushFn<'a>>,
    /// Events that found no reserved room (a bug if ever non-zero).
    lost: u64,
}

impl<'a> EventBuf<'a> {
    /// A buffer that drops every event (the region's counters still count).
    pub fn discard() -> EventBuf<'static> {
        EventBuf { items: None, flush: None, lost: 0 }
    }

    /// A buffer collecting into `items`.
    pub fn collect(items: &'a mut Vec<RegionEvent>) -> EventBuf<'a> {
        EventBuf { items: Some(items), flush: None, lost: 0 }
    }

    /// A buffer collecting into `items` that hands them to `flush` between
    /// the locks of a sweep, so a sweep of a large region needs room for
    /// one stripe at a time.
    pub fn collect_flushing(items: &'a mut Vec<RegionEvent>, flush: FlushFn<'a>) -> EventBuf<'a> {
        EventBuf { items: Some(items), flush: Some(flush), lost: 0 }
    }

    /// Called with no lock held: makes room for `n` more events, first
    /// handing collected ones to the flush hook if there is one.
    pub(crate) fn before_lock(&mut self, n: usize) {
        let Some(v) = self.items.as_deref_mut() else { return };
        if let Some(f) = self.flush
            && !v.is_empty()
        {
            f(v);
        }
        if v.capacity() - v.len() < n {
            v.reserve(n);
        }
    }

    /// Called under a stripe lock: stores the event if room was reserved.
    #[inline]
    pub(crate) fn push(&mut self, e: RegionEvent) {
        match self.items.as_deref_mut() {
            Some(v) if v.len() < v.capacity() => v.push(e),
            Some(_) => self.lost += 1,
            None => {}
        }
    }

    /// Whether events are being collected at all.
    pub fn is_collecting(&self) -> bool {
        self.items.is_some()
    }

    /// Events that found no reserved room.
    pub fn lost(&self) -> u64 {
        self.lost
    }
}
