//! The one place every session lifecycle change passes through.
//!
//! Creation, rotation, invalidation, expiry and eviction each end in
//! `Region::emit`, which bumps the stripe's counter and hands a
//! [`LifecycleEvent`] to the region's [`LifecycleObserver`]. The gateway
//! phase hooks an external session manager here; the cluster phase hooks
//! its shared store here. Observers run while the stripe lock is held, so
//! they must be quick and must never block or call back into the region.

use super::id::SessionId;

/// A change in a session's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LifecycleEvent {
    /// A new session was created.
    Created(SessionId),
    /// A session got a new id; its data stayed.
    Rotated {
        /// The id that stopped working.
        old: SessionId,
        /// The id that replaced it.
        new: SessionId,
    },
    /// A client or a tool invalidated the session.
    Invalidated(SessionId),
    /// The session passed its idle or absolute deadline.
    Expired(SessionId),
    /// The session was dropped to make room (`when_full = "evict-oldest"`).
    Evicted(SessionId),
}

/// Receives every lifecycle event of a region.
pub trait LifecycleObserver: Send + Sync {
    /// Called with the stripe lock held: be quick, never block.
    fn on_event(&self, context: &str, event: &LifecycleEvent);
}

/// The default observer: debug-level log lines with hashed ids only.
#[derive(Debug, Default)]
pub struct LogObserver;

impl LifecycleObserver for LogObserver {
    fn on_event(&self, context: &str, event: &LifecycleEvent) {
        if !log::log_enabled!(log::Level::Debug) {
            return;
        }
        match event {
            LifecycleEvent::Created(id) => log::debug!("context={context} created {}", id.log_hash()),
            LifecycleEvent::Rotated { old, new } => {
                log::debug!("context={context} rotated {} -> {}", old.log_hash(), new.log_hash())
            }
            LifecycleEvent::Invalidated(id) => log::debug!("context={context} invalidated {}", id.log_hash()),
            LifecycleEvent::Expired(id) => log::debug!("context={context} expired {}", id.log_hash()),
            LifecycleEvent::Evicted(id) => log::debug!("context={context} evicted {}", id.log_hash()),
        }
    }
}
