//! The backing-store contract: what a shared store behind the region
//! (PostgreSQL or Redis, in cluster mode) must provide to the session
//! layer. This issue defines the contract and the region's durable change
//! marks that feed it; the cluster implements it.
//!
//! The rules a store relies on (docs/design.md §11.3):
//! - The store is called by the session layer only, never with a stripe
//!   lock held, and from the process's own runtime (connections are made
//!   after `fork`).
//! - Every change of a slot bumps the slot's change sequence and sets its
//!   change mark in the region before any data byte is written, so a
//!   process killed after a write and before any event was delivered
//!   still leaves the slot marked. A store that comes up later walks
//!   `Sessions::changed_slots`, saves each slot, and clears the mark with
//!   `Sessions::acknowledge(slot, seq)`, which only clears it if no change
//!   came after `seq`.
//! - Keys are derived from the context and the token, never the raw
//!   token: a session keeps its key when a node re-issues its id with
//!   another node and slot.

use std::future::Future;
use std::pin::Pin;

use crate::region::{Session, SessionId};

/// A boxed future, as a store's methods return.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Errors a store reports.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached; the message names the store (never its password).
    #[error("session store {store} unavailable: {why}")]
    Unavailable {
        /// Which store (URL without credentials).
        store: String,
        /// Why.
        why: String,
    },
    /// Another node took the session over (its owner epoch is newer).
    #[error("session was taken over by node {owner}; this node's copy is stale")]
    Fenced {
        /// The node that owns it now.
        owner: u32,
    },
}

/// A shared store behind the local regions.
pub trait BackingStore: Send + Sync {
    /// A short description for logs (URL without credentials).
    fn describe(&self) -> String;
    /// Saves a session as of change `seq` (write-through).
    fn save<'a>(&'a self, context: &'a str, session: &'a Session, seq: u64) -> StoreFuture<'a, ()>;
    /// Removes a session that ended.
    fn remove<'a>(&'a self, context: &'a str, id: &'a SessionId, seq: u64) -> StoreFuture<'a, ()>;
    /// Loads a session this node does not hold.
    fn load<'a>(&'a self, context: &'a str, id: &'a SessionId) -> StoreFuture<'a, Option<Session>>;
}
