//! Cluster mode: nodes share sessions through PostgreSQL or Redis, with
//! smart ids and failover (docs/cluster.md is the protocol).
//!
//! The region stays the fast path: a request for a session this node owns
//! is served from the region without asking the store. The store is
//! written through before a change is acknowledged, and told of last
//! accesses at most once per `save_period` per session. A request whose id
//! names another node, or whose slot here no longer holds it, loads the
//! session from the store, takes ownership with a fenced compare-and-set
//! on the owner epoch, and answers with the id re-issued for this node
//! (same token, this node and slot).
//!
//! It lives in the session layer because the session layer is the one
//! door: [`crate::session::Sessions`] calls these steps around its region
//! operations, and no front end names them. The store itself is
//! [`crate::store`].
//!
//! | module | concept |
//! | --- | --- |
//! | [`shared`] | what a node's processes share: owner epochs per slot, store state, counters |
//! | [`background`] | the reaper's part: reconcile at start, flush change marks, the elected store sweep |
//!
//! A [`Cluster`] is built by each child after `fork`, inside its runtime;
//! nothing here connects before a store call is made from that runtime.
//! No call here holds a stripe lock across an await: every region call
//! returns before the store is asked.

pub mod background;
pub mod shared;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::{SessionError, Sessions};
use crate::config::{ClusterConfig, Config, StoreDown};
use crate::region::{Adopt, RegionError, Session, SessionId, SessionMeta};
use crate::store::{BackingStore, Moved, Owner, Record, StoreError, StoreKey, store_key};
use shared::{NodeState, Owners, Word, tag_of};

/// One node's view of the cluster, per process.
pub struct Cluster {
    store: Arc<dyn BackingStore>,
    cfg: ClusterConfig,
    node: u32,
    state: NodeState,
    /// The owner table of each context, by id tag.
    owners: Vec<(u16, Owners)>,
    /// How long after expiry the store sweep takes a session, ms.
    sweep_grace_ms: u64,
}

/// A found session: the id this node holds it under, and whether that id
/// differs from the one the client sent (the answer must re-issue it).
#[derive(Clone, Copy, Debug)]
pub struct Resolved {
    /// The id here.
    pub id: SessionId,
    /// Whether the client must be given `id`.
    pub reissued: bool,
}

/// Creates or resizes the node's shared cluster files (the master, before
/// it forks) and marks the node unreconciled: until the reaper has checked
/// this node's sessions against the store, workers ask the store before
/// serving a local copy.
pub fn prepare_files<'a>(config: &Config, contexts: impl Iterator<Item = &'a Sessions>) -> std::io::Result<()> {
    if config.cluster.is_none() {
        return Ok(());
    }
    for s in contexts {
        Owners::open(&config.data_dir, s.context(), s.geometry().params.max_sessions)?;
    }
    let st = NodeState::open(&config.data_dir)?;
    st.set(Word::Reconciled, 0);
    st.set(Word::Leader, 0);
    st.set(Word::StartedMs, crate::clock::now_ms());
    // A lease from before the start says nothing about this run.
    st.set(Word::LeaseUntilMs, 0);
    Ok(())
}

/// A store key's first 4 bytes, for debug logs: enough to follow one
/// session through the nodes' logs, nothing of its token (the key is a
/// SHA-256 of it).
pub fn key_short(k: &StoreKey) -> String {
    format!("key {:02x}{:02x}{:02x}{:02x}", k[0], k[1], k[2], k[3])
}

/// Why this process's cluster view could not be built.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The store's settings are unusable.
    #[error(transparent)]
    Store(#[from] crate::store::OpenError),
    /// A node file under `data_dir/cluster/` could not be opened.
    #[error("{}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// [`Cluster::with_store`] was called on a config without `[cluster]`.
    #[error("no [cluster] table")]
    NoCluster,
}

impl Cluster {
    /// This process's cluster view over the sessions of `contexts`, or
    /// `None` without `[cluster]`. `max_reap_interval_s` is the longest
    /// region reap period of the node's contexts (the store sweep's grace).
    pub fn open(
        config: &Config,
        contexts: &[&Sessions],
        max_reap_interval_s: u64,
    ) -> Result<Option<Arc<Cluster>>, OpenError> {
        let Some(cfg) = &config.cluster else { return Ok(None) };
        let grace = background::sweep_grace_ms(cfg, max_reap_interval_s);
        let store = crate::store::open_store(cfg, grace)?;
        Self::with_store(config, contexts, store, grace).map(Some)
    }

    /// [`Self::open`] with a given store (tests: [`crate::store::memory`]).
    pub fn with_store(
        config: &Config,
        contexts: &[&Sessions],
        store: Arc<dyn BackingStore>,
        sweep_grace_ms: u64,
    ) -> Result<Arc<Cluster>, OpenError> {
        let Some(cfg) = &config.cluster else { return Err(OpenError::NoCluster) };
        let dir: &Path = &config.data_dir;
        let state =
            NodeState::open(dir).map_err(|source| OpenError::File { path: dir.join("cluster/state"), source })?;
        let mut owners = Vec::new();
        for s in contexts {
            let o = Owners::open(dir, s.context(), s.geometry().params.max_sessions)
                .map_err(|source| OpenError::File { path: Owners::path(dir, s.context()), source })?;
            owners.push((s.tag(), o));
        }
        Ok(Arc::new(Cluster { store, cfg: cfg.clone(), node: config.node_id, state, owners, sweep_grace_ms }))
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn BackingStore> {
        &self.store
    }

    /// The settings.
    pub fn settings(&self) -> &ClusterConfig {
        &self.cfg
    }

    /// The node's shared state.
    pub fn state(&self) -> &NodeState {
        &self.state
    }

    /// This node's id.
    pub fn node(&self) -> u32 {
        self.node
    }

    fn owners(&self, tag: u16) -> Option<&Owners> {
        self.owners.iter().find(|(t, _)| *t == tag).map(|(_, o)| o)
    }

    /// The owner-table tag of `id`'s session.
    fn tag(id: &SessionId) -> u64 {
        tag_of(&store_key(id.context, &id.token))
    }

    /// This node as the owner of the session with store key `key` in `id`'s
    /// slot (epoch 0 when it has no record of holding it: the store refuses
    /// writes carrying that).
    fn owner_at(&self, id: &SessionId, key: &StoreKey) -> Owner {
        let epoch = self.owners(id.context).map_or(0, |o| o.epoch(id.slot, tag_of(key)));
        Owner { node: self.node, slot: id.slot, epoch }
    }

    /// [`Self::owner_at`] for `id`'s own key.
    fn owner_of(&self, id: &SessionId) -> Owner {
        self.owner_at(id, &store_key(id.context, &id.token))
    }

    /// Records that this node holds `id` at `epoch` from now on.
    fn record_owner(&self, id: &SessionId, epoch: u64, saved_access_ms: u64) {
        if let Some(o) = self.owners(id.context) {
            o.set(id.slot, epoch, saved_access_ms, Self::tag(id), crate::clock::now_ms());
        }
    }

    /// Drops this node's copy of `id` because another node holds the
    /// session now (not because it ended), and says so in the owner table
    /// for the gateway's expiry reconciliation.
    pub fn drop_moved(&self, sessions: &Sessions, id: &SessionId, now_ms: u64) -> bool {
        if let Some(o) = self.owners(id.context) {
            o.mark_moved(id.slot, Self::tag(id));
        }
        log::debug!(
            "context {}: dropping the copy of {}… ({}): another node holds it",
            sessions.context(),
            id.short(),
            key_short(&store_key(id.context, &id.token))
        );
        sessions.drop_stale(id, now_ms).is_ok()
    }

    /// Whether the session `id` (which ended in its slot here) left because
    /// another node took it over.
    pub fn moved_away(&self, id: &SessionId) -> bool {
        self.owners(id.context).is_some_and(|o| o.moved(id.slot, Self::tag(id)))
    }

    /// Whether this node took or created `id` since it started (so it is
    /// its own without asking the store, even before reconciliation).
    fn fresh(&self, id: &SessionId) -> bool {
        self.owners(id.context)
            .and_then(|o| o.entry(id.slot, Self::tag(id)))
            .is_some_and(|e| e.since_ms >= self.state.get(Word::StartedMs))
    }

    /// Whether `/healthz` should say "degraded": the store is down.
    pub fn degraded(&self) -> bool {
        self.state.is_down()
    }

    /// Records a store call's outcome in the node's store health (and
    /// logs the transitions).
    pub(crate) fn note(&self, r: &Result<impl Sized, StoreError>) {
        let now = crate::clock::now_ms();
        match r {
            Ok(_) | Err(StoreError::Fenced { .. }) => {
                if self.state.store_ok() {
                    log::warn!("session store {}: reachable again", self.store.describe());
                }
            }
            Err(e) => {
                if self.state.store_failed(now) {
                    log::error!(
                        "{e}; {}",
                        match self.cfg.when_store_down {
                            StoreDown::ServeLocal =>
                                "serving owned sessions from the region and keeping their changes marked until it returns (when_store_down = serve-local)",
                            StoreDown::FailClosed =>
                                "changes answer 503 until it returns (when_store_down = fail-closed)",
                        }
                    );
                }
            }
        }
    }

    /// The 503 a store failure answers.
    pub(crate) fn unavailable(&self, e: &StoreError) -> SessionError {
        SessionError::Unavailable(format!("{e}; retry shortly"))
    }

    /// Refuses a change up front while the store is known to be down
    /// under `when_store_down = "fail-closed"`.
    pub fn check_writable(&self) -> Result<(), SessionError> {
        if self.fail_closed() && self.state.is_down() {
            return Err(SessionError::Unavailable(format!(
                "session store {} is down and when_store_down = fail-closed; retry shortly",
                self.store.describe()
            )));
        }
        Ok(())
    }

    /// The lease of §6.11: how long a heartbeat that came back through the
    /// notice subscription lets this node serve its own copies under
    /// `fail-closed`. Twice `store_timeout`.
    pub fn lease(&self) -> Duration {
        self.store_timeout() * 2
    }

    /// Whether `when_store_down = "fail-closed"`: reads answer only what
    /// the store holds, and only under the lease (§6.11).
    pub fn fail_closed(&self) -> bool {
        self.cfg.when_store_down == StoreDown::FailClosed
    }

    /// The 503 of a read under `fail-closed` whose session has a change the
    /// store has not confirmed within `store_timeout`.
    pub(crate) fn unconfirmed(&self, id: &SessionId) -> SessionError {
        SessionError::Unavailable(format!(
            "session {}… has a change that {} has not confirmed within {:?} (cluster.store_timeout; \
             when_store_down = fail-closed answers only what the store holds); retry shortly",
            id.short(),
            self.store.describe(),
            self.store_timeout()
        ))
    }

    /// `cluster.store_timeout`.
    pub fn store_timeout(&self) -> Duration {
        self.cfg.store_timeout
    }

    /// How often the reaper sends a heartbeat: half of `store_timeout`, so
    /// that three heartbeats in a row must go missing before the lease runs
    /// out.
    pub fn beat_every(&self) -> Duration {
        (self.store_timeout() / 2).max(Duration::from_millis(20))
    }

    /// Under `fail-closed`, refuses to serve this node's own copy once its
    /// lease ran out: the node cannot tell whether another node took the
    /// session over (its notice subscription is down or the store cut off),
    /// so serving would be a stale read of unbounded age (§6.11).
    fn check_lease(&self, now_ms: u64) -> Result<(), SessionError> {
        if self.fail_closed() && now_ms >= self.state.get(Word::LeaseUntilMs) {
            return Err(SessionError::Unavailable(format!(
                "this node cannot confirm it still owns its sessions: its takeover-notice subscription to {} \
                 has not answered within the lease of {:?} (when_store_down = fail-closed); retry shortly",
                self.store.describe(),
                self.lease()
            )));
        }
        Ok(())
    }

    /// The record of a session copied out of this node's region, owned at
    /// `epoch`, or at the epoch the owner table records for it when `None`
    /// (its store key is hashed once for both).
    fn record(&self, s: Session, seq: u64, epoch: Option<u64>) -> Record {
        let id = s.meta.id;
        let key = store_key(id.context, &id.token);
        let owner = match epoch {
            Some(epoch) => Owner { node: self.node, slot: id.slot, epoch },
            None => self.owner_at(&id, &key),
        };
        Record {
            key,
            context: id.context,
            owner,
            seq,
            created_ms: s.meta.created_ms,
            last_access_ms: s.meta.last_access_ms,
            expires_ms: s.meta.expires_ms,
            is_new: s.meta.is_new,
            settings: crate::store::record::Settings {
                version: s.meta.version,
                timeout_s: s.meta.timeout_set.then_some(s.meta.timeout_s),
                deadline_ms: s.meta.deadline_ms,
                principal: s.meta.principal,
            },
            attributes: s.attributes,
        }
    }

    /// Finds the session of the first candidate that names one: from the
    /// region when this node owns it, else from the store with a takeover.
    /// `Ok(None)`: no candidate names a live session.
    ///
    /// With `verify_local` false, an id that names this node is trusted
    /// once the node is reconciled, without looking at the region: the
    /// caller's own region call finds out whether the slot holds it, and
    /// asks again with `verify_local` when it does not (one stripe lock
    /// per owner-local request instead of two).
    pub async fn resolve(
        &self,
        sessions: &Sessions,
        ids: &[SessionId],
        now_ms: u64,
        verify_local: bool,
    ) -> Result<Option<Resolved>, SessionError> {
        for id in ids {
            if id.context != sessions.tag() {
                continue;
            }
            if !verify_local && id.node == self.node && self.state.get(Word::Reconciled) == 1 {
                self.check_lease(now_ms)?;
                return Ok(Some(Resolved { id: *id, reissued: false }));
            }
            if let Some(f) = self.resolve_one(sessions, id, now_ms).await? {
                return Ok(Some(f));
            }
        }
        Ok(None)
    }

    fn holds(sessions: &Sessions, id: &SessionId, now_ms: u64) -> Result<Option<SessionId>, RegionError> {
        Ok(sessions.id_in_slot(id.slot, now_ms)?.filter(|l| id.token_matches(&l.token)))
    }

    async fn resolve_one(
        &self,
        sessions: &Sessions,
        id: &SessionId,
        now_ms: u64,
    ) -> Result<Option<Resolved>, SessionError> {
        let tag = sessions.tag();
        if id.node == self.node
            && let Some(local) = Self::holds(sessions, id, now_ms)?
        {
            // The fast path: no hashing, no store.
            if self.state.get(Word::Reconciled) == 1 || self.fresh(&local) {
                self.check_lease(now_ms)?;
                return Ok(Some(Resolved { id: local, reissued: false }));
            }
            let key = store_key(tag, &id.token);
            // Not yet reconciled after a start: the store says whether this
            // copy is still ours.
            let want = self.owner_of(&local);
            let r = self.store.owners(std::slice::from_ref(&key)).await;
            self.note(&r);
            match r {
                Ok(v) if v.first().copied().flatten() == Some(want) => {
                    return Ok(Some(Resolved { id: local, reissued: false }));
                }
                Ok(v) if v.first().copied().flatten().is_none() && sessions.change_mark(local.slot)?.is_some() => {
                    // Created or changed while the store was away: ours.
                    return Ok(Some(Resolved { id: local, reissued: false }));
                }
                Ok(_) => {
                    self.drop_moved(sessions, &local, now_ms);
                    self.state.add(Word::Dropped, 1);
                }
                Err(e) => return Err(self.unavailable(&e)),
            }
        }
        let key = store_key(tag, &id.token);
        for _attempt in 0..3 {
            let r = self.store.load(&key, now_ms).await;
            self.note(&r);
            let rec = match r {
                Ok(Some(rec)) if rec.context == tag => rec,
                Ok(_) => return Ok(None),
                Err(e) => return Err(self.unavailable(&e)),
            };
            if rec.owner.node == self.node
                && let Some(o) = self.owners(tag)
                && o.epoch(rec.owner.slot, tag_of(&key)) == rec.owner.epoch
            {
                let here = SessionId { node: self.node, context: tag, slot: rec.owner.slot, token: id.token };
                if let Some(local) = Self::holds(sessions, &here, now_ms)? {
                    return Ok(Some(Resolved { id: local, reissued: local != *id }));
                }
            }
            match self.take_over(sessions, &rec, id.token, now_ms).await {
                Ok(local) => return Ok(Some(Resolved { id: local, reissued: true })),
                // A sibling worker of this node won (find its copy), or the
                // owner wrote after the load (take the newer data).
                Err(SessionError::Moved { owner }) if owner == self.node || owner == rec.owner.node => continue,
                Err(e) => return Err(e),
            }
        }
        // It kept moving under us: not "no such session" (that would mint a
        // new one or log the user out), but try again.
        Err(SessionError::Raced)
    }

    /// Installs `rec` here and takes ownership in the store.
    /// The store keeps only the key, never the token: the session is
    /// rebuilt with the token the client presented, whose key matched.
    async fn take_over(
        &self,
        sessions: &Sessions,
        rec: &Record,
        token: [u8; crate::region::TOKEN_LEN],
        now_ms: u64,
    ) -> Result<SessionId, SessionError> {
        if store_key(rec.context, &token) != rec.key {
            return Err(SessionError::Moved { owner: 0 });
        }
        let a = Adopt {
            token,
            created_ms: rec.created_ms,
            last_access_ms: rec.last_access_ms,
            is_new: rec.is_new,
            attributes: &rec.attributes,
            version: rec.settings.version,
            timeout_s: rec.settings.timeout_s,
            deadline_ms: rec.settings.deadline_ms,
            principal: rec.settings.principal.as_deref(),
        };
        let meta: SessionMeta = sessions.adopt(&a, now_ms)?;
        let slot = meta.id.slot;
        let mark = sessions.change_mark(slot)?;
        // The node it comes from drops its copy on this notice, not at its
        // next write or restart.
        let notice = (rec.owner.node != self.node).then_some(Moved {
            from: rec.owner.node,
            context: rec.context,
            slot: rec.owner.slot,
            key: rec.key,
        });
        if self.fail_closed()
            && let Some(m) = &notice
        {
            // Under fail-closed the notice goes out before the store names
            // this node: were it sent after and lost, the store would name
            // this node while the old holder, never told, went on serving
            // its copy (and the next takeover's notice would name this node,
            // not it). Sent first, a lost notice leaves the store as it was,
            // and a takeover that then loses the race only makes the old
            // holder drop a copy it takes back from the store (§6.11).
            let r = self.store.announce(m).await;
            self.note(&r);
            if let Err(e) = r {
                let _ = sessions.drop_stale(&meta.id, now_ms);
                return Err(self.unavailable(&e));
            }
        }
        let r = self.store.take_over(&rec.key, rec.owner.epoch, rec.seq, self.node, slot, now_ms).await;
        self.note(&r);
        match r {
            Ok(epoch) => {
                self.record_owner(&meta.id, epoch, rec.last_access_ms);
                if rec.owner.node == self.node
                    && rec.owner.slot != slot
                    && let Ok(Some(old)) = sessions.id_in_slot(rec.owner.slot, now_ms)
                    && store_key(old.context, &old.token) == rec.key
                {
                    // Taken over from a sibling worker of this node (its copy
                    // was not yet recorded when this worker looked): no
                    // notice names this node's own slots, so drop that copy
                    // here, or it would serve the old epoch for good.
                    self.drop_moved(sessions, &old, now_ms);
                    self.state.add(Word::Dropped, 1);
                }
                if let Some(seq) = mark {
                    sessions.acknowledge(slot, seq)?;
                }
                self.state.add(Word::Takeovers, 1);
                if !self.fail_closed()
                    && let Some(m) = &notice
                {
                    let r = self.store.announce(m).await;
                    self.note(&r);
                }
                log::info!(
                    "context {}: took over session {}… ({}) from node {} (epoch {epoch})",
                    sessions.context(),
                    meta.id.short(),
                    key_short(&rec.key),
                    rec.owner.node
                );
                Ok(meta.id)
            }
            Err(e) => {
                let _ = sessions.drop_stale(&meta.id, now_ms);
                match e {
                    StoreError::Fenced { owner } => {
                        self.state.add(Word::Fenced, 1);
                        Err(SessionError::Moved { owner })
                    }
                    e => Err(self.unavailable(&e)),
                }
            }
        }
    }

    /// Write-through after a change to `id` (set, remove, create): saves
    /// the slot as of its change mark and clears the mark. Under
    /// `serve-local` an unreachable store leaves the mark for the reaper's
    /// flush; under `fail-closed` it is an error.
    ///
    /// `pending`: the slot carried a change mark before this change. If the
    /// store then refuses the save because another node took the session
    /// over, the earlier changes (acknowledged under `serve-local` while the
    /// store was away) are lost with this one: counted and logged as a
    /// conflict, as the flush does.
    pub async fn changed(
        &self,
        sessions: &Sessions,
        id: &SessionId,
        pending: bool,
        now_ms: u64,
    ) -> Result<(), SessionError> {
        let slot = id.slot;
        // No mark: a later change was saved with this one in it.
        let Some(seq) = sessions.change_mark(slot)? else { return Ok(()) };
        let Some(s) = sessions.snapshot_slot(slot, now_ms)?.filter(|s| id.token_matches(&s.meta.id.token)) else {
            return Err(SessionError::Raced);
        };
        let rec = self.record(s, seq, None);
        let ours = rec.owner.epoch;
        let r = match self.settle_retired(sessions, slot, now_ms).await {
            Ok(()) => self.store.save(&rec).await,
            Err(e) => Err(e),
        };
        if let Err(StoreError::Fenced { owner }) = r
            && pending
            && !self.fail_closed()
            && Self::holds(sessions, id, now_ms).ok().flatten().is_some()
        {
            background::lost_write(self, sessions, id, ours, owner, seq, now_ms).await;
        }
        self.settle(sessions, id, seq, r, now_ms)
    }

    /// Write-through of a new session: this node owns it at epoch 1.
    pub async fn created(&self, sessions: &Sessions, meta: &SessionMeta, now_ms: u64) -> Result<(), SessionError> {
        self.record_owner(&meta.id, 1, meta.created_ms);
        self.changed(sessions, &meta.id, false, now_ms).await
    }

    /// Records, before the region rotates `id`, that its store key is to
    /// be retired: a worker killed between the region's rotation and its
    /// store write then leaves the reaper's flush the key to retire before
    /// it saves the new one, so the old key never stays live beside the
    /// new (a fork). Returns whether it recorded one; undo it with
    /// [`Self::not_rotated`] if the region does not rotate.
    pub fn rotating(&self, id: &SessionId) -> bool {
        let key = store_key(id.context, &id.token);
        let epoch = self.owner_at(id, &key).epoch;
        let Some(o) = self.owners(id.context) else { return false };
        if epoch == 0 || o.retired(id.slot).is_some() {
            return false;
        }
        o.retire(id.slot, &key, epoch);
        true
    }

    /// The region refused the rotation [`Self::rotating`] recorded.
    pub fn not_rotated(&self, id: &SessionId) {
        let key = store_key(id.context, &id.token);
        if let Some(o) = self.owners(id.context)
            && o.retired(id.slot).is_some_and(|(k, _)| k == key)
        {
            o.clear_retired(id.slot);
        }
    }

    /// Write-through of a rotation from `old` to `new` (same slot). If the
    /// store cannot be told, the old key is remembered in the owner table
    /// and removed by the reaper's flush when the store returns, so the
    /// old id never comes back through the store.
    pub async fn rotated(
        &self,
        sessions: &Sessions,
        old: &SessionId,
        new: &SessionId,
        now_ms: u64,
    ) -> Result<(), SessionError> {
        let slot = new.slot;
        let old_key = store_key(old.context, &old.token);
        let epoch = self.owners(new.context).map_or(0, |o| o.retag(slot, tag_of(&old_key), Self::tag(new)));
        let Some(seq) = sessions.change_mark(slot)? else { return Ok(()) };
        let Some(s) = sessions.snapshot_slot(slot, now_ms)?.filter(|s| new.token_matches(&s.meta.id.token)) else {
            return Err(SessionError::Raced);
        };
        let rec = self.record(s, seq, Some(epoch));
        // The old key is recorded as retired before the store hears of the
        // rotation, so that a flush after a crash here removes it before it
        // saves the new key, and never forks the session (background.rs
        // `end_rotated`). It is cleared once the store has both.
        let owners = self.owners(new.context);
        if let Some(o) = owners {
            o.retire(slot, &old_key, epoch);
        }
        let r = match self.settle_retired(sessions, slot, now_ms).await {
            Ok(()) => self.store.rotate(&old_key, &rec).await,
            Err(e) => Err(e),
        };
        log::debug!(
            "context {}: rotated {}… ({} -> {}, epoch {epoch}): {r:?}",
            sessions.context(),
            new.short(),
            key_short(&old_key),
            key_short(&rec.key)
        );
        if let Some(o) = owners
            && !matches!(r, Err(StoreError::Unavailable { .. } | StoreError::TlsRefused { .. }))
            && o.retired(slot).is_some_and(|(k, e)| k == old_key && e == epoch)
        {
            o.clear_retired(slot);
        }
        self.settle(sessions, new, seq, r, now_ms)
    }

    /// Write-through of a logout, which is final on every node: the store
    /// ends the session whoever owns it there (a tombstone for the rest of
    /// its lifetime), and the node that held it drops its copy on the
    /// notice. If the store cannot be told, the slot's change mark and its
    /// "final" flag stay, and the reaper's flush ends it when the store
    /// returns (or, if the slot is reused first, the new occupant keeps the
    /// token until then: see `Region::retired`).
    pub async fn invalidated(&self, sessions: &Sessions, id: &SessionId, now_ms: u64) -> Result<(), SessionError> {
        let seq = sessions.change_mark(id.slot)?;
        let key = store_key(id.context, &id.token);
        let r = self.end_final(&key, id.slot, now_ms).await;
        self.note(&r);
        self.state.add(Word::Writes, 1);
        match r {
            Ok(()) => {
                // Clear the mark only while the slot still holds the ended
                // session: a create that reused it has a newer sequence.
                if let Some(seq) = seq
                    && sessions.ended_id(id.slot)?.is_some_and(|e| id.token_matches(&e.token))
                {
                    sessions.acknowledge(id.slot, seq)?;
                }
                Ok(())
            }
            Err(e) if self.fail_closed() => Err(self.unavailable(&e)),
            // The mark stays; the flush ends it when the store returns.
            Err(_) => Ok(()),
        }
    }

    /// Ends `key` in the store for good and tells its holder (another node,
    /// or another slot here) to drop its copy.
    pub(crate) async fn end_final(&self, key: &StoreKey, slot: u32, now_ms: u64) -> Result<(), StoreError> {
        if let Some(m) = self.store.end(key, now_ms).await?
            && (m.from != self.node || m.slot != slot)
        {
            let r = self.store.announce(&m).await;
            self.note(&r);
            self.state.add(Word::Takeovers, 1);
        }
        Ok(())
    }

    /// Ends in the store a session another node holds (a principal's
    /// logout everywhere, or its cap) and sends the holder the notice;
    /// `Ok(false)` if the store had no live record. Needs the store under
    /// either `when_store_down`: 503 while it is down.
    pub(crate) async fn end_elsewhere(&self, key: &StoreKey, now_ms: u64) -> Result<bool, SessionError> {
        self.check_writable()?;
        let r = self.store.end(key, now_ms).await;
        self.note(&r);
        self.state.add(Word::Writes, 1);
        match r {
            Ok(None) => Ok(false),
            Ok(Some(m)) => {
                let r = self.store.announce(&m).await;
                self.note(&r);
                self.state.add(Word::Takeovers, 1);
                Ok(true)
            }
            Err(e) => Err(self.unavailable(&e)),
        }
    }

    /// Whether the node serves from its region while the store is down.
    pub(crate) fn serves_local(&self) -> bool {
        self.cfg.when_store_down == StoreDown::ServeLocal
    }

    /// Before a store write of `slot`: if the slot keeps a logged-out
    /// predecessor the store has not ended yet (its slot was reused during
    /// an outage), ends it first, so no node can take it over.
    pub(crate) async fn settle_retired(&self, sessions: &Sessions, slot: u32, now_ms: u64) -> Result<(), StoreError> {
        let Ok(Some(old)) = sessions.retired(slot) else { return Ok(()) };
        let key = store_key(old.context, &old.token);
        self.end_final(&key, slot, now_ms).await?;
        let _ = sessions.clear_retired(slot, &old.token);
        log::info!(
            "context {}: ended in the store the session {}… logged out while it was away (its slot was reused since)",
            sessions.context(),
            old.short()
        );
        Ok(())
    }

    /// What a failed store write answers under `when_store_down`.
    fn down_outcome(&self, e: &StoreError) -> Result<(), SessionError> {
        match self.cfg.when_store_down {
            StoreDown::ServeLocal => Ok(()),
            StoreDown::FailClosed => Err(self.unavailable(e)),
        }
    }

    fn settle(
        &self,
        sessions: &Sessions,
        id: &SessionId,
        seq: u64,
        r: Result<(), StoreError>,
        now_ms: u64,
    ) -> Result<(), SessionError> {
        self.note(&r);
        self.state.add(Word::Writes, 1);
        match r {
            Ok(()) => {
                sessions.acknowledge(id.slot, seq)?;
                Ok(())
            }
            Err(StoreError::Fenced { owner }) => {
                // Another node owns it: this copy is stale and goes.
                self.drop_moved(sessions, id, now_ms);
                self.state.add(Word::Fenced, 1);
                self.state.add(Word::Dropped, 1);
                log::warn!(
                    "context {}: the store refused a change to session {}… (owned by node {owner} now); dropped this node's copy",
                    sessions.context(),
                    id.short()
                );
                Err(SessionError::Moved { owner })
            }
            Err(e) => self.down_outcome(&e),
        }
    }

    /// A read that touched `id`: sends its last access to the store at
    /// most once per `save_period` across the node's processes, in the
    /// background (the answer does not wait for it).
    pub fn accessed(self: &Arc<Self>, sessions: &Sessions, id: &SessionId, now_ms: u64) {
        let Some(o) = self.owners(id.context) else { return };
        if !o.claim_touch(id.slot, now_ms, u64::from(self.cfg.save_period) * 1000) {
            return;
        }
        let Ok(Some(s)) = sessions.snapshot_slot(id.slot, now_ms) else { return };
        if !id.token_matches(&s.meta.id.token) {
            return;
        }
        let me = self.clone();
        let rec = self.record(s, 0, None);
        tokio::spawn(async move {
            let r = me.store.touch(&rec.key, rec.owner, rec.last_access_ms, rec.expires_ms).await;
            me.note(&r);
            me.state.add(Word::Touches, 1);
            me.state.add(Word::Writes, 1);
            if let Ok(false) = r {
                // The store lost it (swept while this node could not reach
                // it): write it whole again.
                let r = me.store.save(&Record { seq: 1, ..rec }).await;
                me.note(&r);
            }
        });
    }
}

/// The cluster's lines of `/metrics` (Prometheus text format).
pub fn metrics_text(c: &Cluster, pending: u64, now_ms: u64) -> String {
    use std::fmt::Write;
    let st = c.state();
    let mut o = String::new();
    let mut line = |name: &str, kind: &str, help: &str, v: u64| {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
    };
    line("sessiond_store_up", "gauge", "1 while the session store answers.", u64::from(!st.is_down()));
    let since = st.get(Word::DownSinceMs);
    line(
        "sessiond_store_lag_seconds",
        "gauge",
        "How long the store has been unreachable (changes wait that long at most).",
        if st.is_down() && since > 0 { now_ms.saturating_sub(since) / 1000 } else { 0 },
    );
    line(
        "sessiond_store_pending_changes",
        "gauge",
        "Sessions changed here that the store has not acknowledged.",
        pending,
    );
    line(
        "sessiond_store_reconciled",
        "gauge",
        "1 once this node's sessions were checked against the store after start.",
        st.get(Word::Reconciled),
    );
    line("sessiond_store_leader", "gauge", "1 while this node sweeps the store.", st.get(Word::Leader));
    // The counters, each a word of `cluster/state`.
    const COUNTERS: [(&str, &str, Word); 12] = [
        ("sessiond_store_writes_total", "Store writes (saves, touches, removals).", Word::Writes),
        ("sessiond_store_touches_total", "Coalesced last-access writes.", Word::Touches),
        ("sessiond_store_takeovers_total", "Sessions this node took over from another.", Word::Takeovers),
        ("sessiond_store_fenced_total", "Takeovers lost and writes the store refused (another owner).", Word::Fenced),
        ("sessiond_store_errors_total", "Store calls that failed.", Word::Errors),
        ("sessiond_store_flushed_total", "Changes flushed after an outage or a crash.", Word::Flushed),
        ("sessiond_store_dropped_total", "Stale local copies dropped.", Word::Dropped),
        ("sessiond_store_sweeps_total", "Store sweeps this node ran.", Word::Sweeps),
        (
            "sessiond_store_lost_writes_total",
            "Sessions whose changes accepted here the store refused at the flush (another node took them over).",
            Word::LostWrites,
        ),
        ("sessiond_store_swept_total", "Expired sessions this node's sweeps removed.", Word::Swept),
        (
            "sessiond_store_resets_total",
            "Times the store's generation changed (it lost its data) and this node re-seeded it.",
            Word::StoreResets,
        ),
        (
            "sessiond_store_reseeded_total",
            "Sessions this node wrote again into a store that lost its data.",
            Word::Reseeded,
        ),
    ];
    for (name, help, w) in COUNTERS {
        line(name, "counter", help, st.get(w));
    }
    o
}
