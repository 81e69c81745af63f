//! An in-memory [`BackingStore`], for unit tests of the cluster protocol
//! (takeover, fencing, re-issue) without a server, as redb's
//! `InMemoryBackend` lets its core run in `cargo test` with no disk.
//!
//! It keeps the same rules as the Redis store's scripts, each step atomic
//! under one mutex: fenced saves that keep the highest change sequence,
//! tombstones that outlive a removal by [`TOMBSTONE_MS`], touches that only
//! move forward, takeovers that compare the epoch and the sequence, a
//! lease for the elected sweep, and takeover notices to every subscriber.
//! It can be switched off ([`MemoryStore::set_down`]) to play an outage.
//! It is not a store for production: nothing is persisted or shared
//! between processes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::record::TOMBSTONE_MS;
use super::{
    BackingStore, Listed, MAX_PRINCIPAL_PAGE, Moved, MovedFeed, Owner, Record, StoreError, StoreFuture, StoreKey,
    Swept, cut_page, key_from_hex,
};

/// One stored session: the record, and whether it is a tombstone (and
/// until when).
#[derive(Clone)]
struct Entry {
    rec: Record,
    removed_until_ms: Option<u64>,
    /// The tombstone is a rotation's retire by this owner.
    retired: bool,
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<StoreKey, Entry>,
    lease: Option<(u32, u64)>,
    generation: u64,
    subscribers: Vec<mpsc::UnboundedSender<Moved>>,
}

/// The in-memory store (see the module doc).
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    down: AtomicBool,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Arc<MemoryStore> {
        Arc::new(MemoryStore::default())
    }

    /// Loses every record, lease and the generation, as a Redis restarted
    /// without persistence does (subscribers stay).
    pub fn lose_data(&self) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.sessions.clear();
        g.lease = None;
        g.generation = 0;
    }

    /// While `down`, every call fails with [`StoreError::Unavailable`].
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// The record under `key`, tombstones included (tests look inside).
    pub fn peek(&self, key: &StoreKey) -> Option<(Record, bool)> {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.sessions.get(key).map(|e| (e.rec.clone(), e.removed_until_ms.is_some()))
    }

    /// How many live (not removed) sessions the store holds.
    pub fn live(&self) -> usize {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.sessions.values().filter(|e| e.removed_until_ms.is_none()).count()
    }

    fn step<T>(&self, f: impl FnOnce(&mut Inner) -> Result<T, StoreError>) -> Result<T, StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable { store: self.describe(), why: "switched off (test)".into() });
        }
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }
}

fn fenced(owner: u32) -> StoreError {
    StoreError::Fenced { owner }
}

impl BackingStore for MemoryStore {
    fn describe(&self) -> String {
        "memory".into()
    }

    fn prepare(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move { self.step(|_| Ok(())) })
    }

    fn generation(&self, fresh: u64) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            self.step(|g| {
                if g.generation == 0 {
                    g.generation = fresh;
                }
                Ok(g.generation)
            })
        })
    }

    fn save<'a>(&'a self, rec: &'a Record) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.step(|g| match g.sessions.get_mut(&rec.key) {
                None => {
                    g.sessions.insert(rec.key, Entry { rec: rec.clone(), removed_until_ms: None, retired: false });
                    Ok(())
                }
                Some(e) if e.removed_until_ms.is_some() => Err(fenced(0)),
                Some(e) if e.rec.owner.epoch < rec.owner.epoch => {
                    e.rec = rec.clone();
                    Ok(())
                }
                Some(e) if e.rec.owner.node != rec.owner.node || e.rec.owner.epoch != rec.owner.epoch => {
                    Err(fenced(e.rec.owner.node))
                }
                Some(e) if e.rec.seq >= rec.seq => Ok(()),
                Some(e) => {
                    let (a, x) = (e.rec.last_access_ms.max(rec.last_access_ms), e.rec.expires_ms.max(rec.expires_ms));
                    let (created, context) = (e.rec.created_ms, e.rec.context);
                    e.rec = Record { last_access_ms: a, expires_ms: x, created_ms: created, context, ..rec.clone() };
                    Ok(())
                }
            })
        })
    }

    fn touch<'a>(
        &'a self,
        key: &'a StoreKey,
        owner: Owner,
        last_access_ms: u64,
        expires_ms: u64,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            self.step(|g| match g.sessions.get_mut(key) {
                None => Ok(false),
                Some(e) if e.removed_until_ms.is_some() => Err(fenced(0)),
                Some(e) if e.rec.owner.node != owner.node || e.rec.owner.epoch != owner.epoch => {
                    Err(fenced(e.rec.owner.node))
                }
                Some(e) => {
                    e.rec.last_access_ms = e.rec.last_access_ms.max(last_access_ms);
                    e.rec.expires_ms = e.rec.expires_ms.max(expires_ms);
                    e.rec.is_new = false;
                    Ok(true)
                }
            })
        })
    }

    fn remove<'a>(&'a self, key: &'a StoreKey, owner: Owner) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.step(|g| match g.sessions.get_mut(key) {
                None => Ok(()),
                Some(e) if e.removed_until_ms.is_some() => Ok(()),
                Some(e) if e.rec.owner.node != owner.node || e.rec.owner.epoch != owner.epoch => {
                    Err(fenced(e.rec.owner.node))
                }
                Some(e) => {
                    e.rec.attributes.clear();
                    e.removed_until_ms = Some(crate::clock::now_ms() + TOMBSTONE_MS);
                    Ok(())
                }
            })
        })
    }

    fn retire<'a>(&'a self, key: &'a StoreKey, owner: Owner) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let ours = |r: &Record| r.owner.node == owner.node && r.owner.epoch == owner.epoch;
            self.step(|g| match g.sessions.get_mut(key) {
                None => Ok(()),
                Some(e) if e.removed_until_ms.is_some() => {
                    if e.retired && ours(&e.rec) {
                        Ok(())
                    } else {
                        Err(fenced(0))
                    }
                }
                Some(e) if !ours(&e.rec) => Err(fenced(e.rec.owner.node)),
                Some(e) => {
                    e.rec.attributes.clear();
                    e.removed_until_ms = Some(crate::clock::now_ms() + TOMBSTONE_MS);
                    e.retired = true;
                    Ok(())
                }
            })
        })
    }

    fn end<'a>(&'a self, key: &'a StoreKey, now_ms: u64) -> StoreFuture<'a, Option<Moved>> {
        Box::pin(async move {
            self.step(|g| match g.sessions.get_mut(key) {
                Some(e) if e.removed_until_ms.is_none() => {
                    e.rec.attributes.clear();
                    e.removed_until_ms = Some(e.rec.expires_ms.max(now_ms + TOMBSTONE_MS));
                    let o = e.rec.owner;
                    Ok(Some(Moved { from: o.node, context: e.rec.context, slot: o.slot, key: *key }))
                }
                _ => Ok(None),
            })
        })
    }

    fn load<'a>(&'a self, key: &'a StoreKey, now_ms: u64) -> StoreFuture<'a, Option<Record>> {
        Box::pin(async move {
            self.step(|g| {
                Ok(g.sessions
                    .get(key)
                    .filter(|e| e.removed_until_ms.is_none() && e.rec.expires_ms > now_ms)
                    .map(|e| e.rec.clone()))
            })
        })
    }

    fn take_over<'a>(
        &'a self,
        key: &'a StoreKey,
        seen_epoch: u64,
        seen_seq: u64,
        node: u32,
        slot: u32,
        now_ms: u64,
    ) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            self.step(|g| match g.sessions.get_mut(key) {
                None => Err(fenced(0)),
                Some(e) if e.removed_until_ms.is_some() => Err(fenced(0)),
                Some(e) if e.rec.owner.epoch != seen_epoch || e.rec.seq != seen_seq || e.rec.expires_ms <= now_ms => {
                    Err(fenced(e.rec.owner.node))
                }
                Some(e) => {
                    let epoch = e.rec.owner.epoch + 1;
                    e.rec.owner = Owner { node, slot, epoch };
                    e.rec.seq = 0;
                    Ok(epoch)
                }
            })
        })
    }

    fn principal_sessions<'a>(
        &'a self,
        principal: &'a str,
        context: u16,
        cursor: Option<&'a str>,
        limit: u32,
        now_ms: u64,
    ) -> StoreFuture<'a, (Vec<Listed>, Option<String>)> {
        Box::pin(async move {
            let after = cursor.and_then(key_from_hex);
            self.step(|g| {
                // A full scan: this store is for tests; the real stores
                // keep an index.
                let mut v: Vec<Listed> = g
                    .sessions
                    .values()
                    .filter(|e| e.removed_until_ms.is_none() && e.rec.expires_ms > now_ms && e.rec.context == context)
                    .filter(|e| e.rec.settings.principal.as_deref() == Some(principal))
                    .filter(|e| after.is_none_or(|a| e.rec.key > a))
                    .map(|e| Listed {
                        key: e.rec.key,
                        owner: e.rec.owner.node,
                        created_ms: e.rec.created_ms,
                        last_access_ms: e.rec.last_access_ms,
                        expires_ms: e.rec.expires_ms,
                        is_new: e.rec.is_new,
                    })
                    .collect();
                v.sort_by_key(|l| l.key);
                let next = cut_page(&mut v, limit.clamp(1, MAX_PRINCIPAL_PAGE) as usize);
                Ok((v, next))
            })
        })
    }

    fn cursor_ok(&self, cursor: &str) -> bool {
        key_from_hex(cursor).is_some()
    }

    fn owners<'a>(&'a self, keys: &'a [StoreKey]) -> StoreFuture<'a, Vec<Option<Owner>>> {
        Box::pin(async move {
            self.step(|g| {
                Ok(keys
                    .iter()
                    .map(|k| g.sessions.get(k).filter(|e| e.removed_until_ms.is_none()).map(|e| e.rec.owner))
                    .collect())
            })
        })
    }

    fn sweep(&self, before_ms: u64, batch: u32) -> StoreFuture<'_, Vec<Swept>> {
        Box::pin(async move {
            self.step(|g| {
                let now = crate::clock::now_ms();
                g.sessions.retain(|_, e| e.removed_until_ms.is_none_or(|until| until > now));
                let due: Vec<StoreKey> = g
                    .sessions
                    .iter()
                    .filter(|(_, e)| e.removed_until_ms.is_none() && e.rec.expires_ms < before_ms)
                    .map(|(k, _)| *k)
                    .take(batch as usize)
                    .collect();
                Ok(due
                    .into_iter()
                    .filter_map(|k| g.sessions.remove(&k))
                    .map(|e| Swept { context: e.rec.context, key: e.rec.key, owner: e.rec.owner.node })
                    .collect())
            })
        })
    }

    fn elect(&self, node: u32, lease_ms: u64) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            self.step(|g| {
                let now = crate::clock::now_ms();
                match g.lease {
                    Some((holder, until)) if holder != node && until > now => Ok(false),
                    _ => {
                        g.lease = Some((node, now + lease_ms));
                        Ok(true)
                    }
                }
            })
        })
    }

    fn announce<'a>(&'a self, m: &'a Moved) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.step(|g| {
                g.subscribers.retain(|tx| tx.send(*m).is_ok());
                Ok(())
            })
        })
    }

    fn subscribe(&self) -> StoreFuture<'_, Box<dyn MovedFeed>> {
        Box::pin(async move {
            self.step(|g| {
                let (tx, rx) = mpsc::unbounded_channel();
                g.subscribers.push(tx);
                Ok(Box::new(Feed(rx)) as Box<dyn MovedFeed>)
            })
        })
    }
}

struct Feed(mpsc::UnboundedReceiver<Moved>);

impl MovedFeed for Feed {
    fn next(&mut self) -> StoreFuture<'_, Option<Moved>> {
        Box::pin(async move { Ok(self.0.recv().await) })
    }
}
