//! The session layer: one door to sessions.
//!
//! [`Sessions`] is the per-context service that every front end calls: the
//! HTTP API, the gateway, `sessionctl` and the reaper. It owns the
//! context's region (`Arc<Region>`), the region's settings, the process's
//! lifecycle event hub, and in cluster mode the process's [`cluster::Cluster`].
//! Nothing above it touches a `Region` or a store.
//!
//! # The door
//! A front end asks for an operation on the candidate ids a request
//! carries: [`Sessions::get`], [`Sessions::get_attr`], [`Sessions::update`],
//! [`Sessions::rotate`], [`Sessions::invalidate`], [`Sessions::touch`],
//! [`Sessions::modify_attr`] (a reserved attribute), and
//! [`Sessions::begin_create`] / [`Pending::commit`] for a new session. The
//! layer resolves the id (in cluster mode: a session another node holds is
//! taken over from the store), runs the region operation, settles a miss
//! once more through the region and the store, writes the change through,
//! and reports in [`Found::reissued`] the id the client must be given. It
//! answers with one typed error, [`SessionError`].
//!
//! A create the store refuses never happened: its events are held until
//! the store has it, and dropped with the session otherwise, so no
//! subscriber hears of a session no client saw.
//!
//! # Events
//! Every operation runs the region call with an event buffer and, once the
//! call has returned (so its stripe lock is released), publishes what the
//! call recorded to the hub. Without a hub the buffer discards and the
//! operation costs what the bare region call costs.
//!
//! | module | concept |
//! | --- | --- |
//! | [`events`] | the event hub: bounded queue, subscribers, dispatcher, log subscriber |
//! | [`lifecycle_webhook`] | the lifecycle webhook subscriber (Standard Webhooks) |
//! | [`principals`] | sessions by principal: listing, "log out everywhere", the cap per principal, on every node |
//! | [`cluster`] | cluster mode's protocol over a [`crate::store`]: write-through, takeover, fencing, re-issue; the reaper's store jobs |
//!
//! This module must never hold a lock across a publish or an await, and
//! never block: the hub's push drops when the queue is full.

pub mod cluster;
pub mod events;
pub mod lifecycle_webhook;
pub mod principals;

use std::cell::RefCell;
use std::path::Path;
use std::sync::Arc;

pub use events::{ContextNames, EndReason, Event, EventHub, HubMetrics, LogSubscriber, Subscriber};
pub use principals::PrincipalSession;

use crate::config::WhenPrincipalFull;
use crate::region::{
    Adopt, Change, Edit, EventBuf, EventKind, Geometry, MAX_PRINCIPAL, MetaChange, ReapReport, Region, RegionConfig,
    RegionError, RegionEvent, RegionStats, Session, SessionId, SessionMeta,
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

/// What the door answers besides success.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The session store cannot be reached and this operation needs it.
    #[error("{0}")]
    Unavailable(String),
    /// Another node owns the session now: this node's change was refused.
    #[error("session is owned by node {owner} now; this node's change was refused by the store")]
    Moved {
        /// The node that owns it (0: it ended).
        owner: u32,
    },
    /// The session moved or ended while the change was being made; the
    /// change did not reach the store.
    #[error("the session moved to another node or ended while this change was made; the change was not applied")]
    Raced,
    /// A session setting out of its bounds (`code` names the field:
    /// `bad_timeout`, `bad_deadline`, `bad_principal`); the message names
    /// the value and the bound.
    #[error("{message}")]
    Invalid {
        /// The error code.
        code: &'static str,
        /// What was wrong, with the value and the bound.
        message: String,
    },
    /// The principal holds its cap of sessions and the policy is `refuse`.
    #[error(
        "the principal already has {count} session(s), the cap (sessions.max_sessions_per_principal = {cap}, \
         when_principal_full = refuse); end one of them first"
    )]
    TooManySessions {
        /// Its live sessions.
        count: usize,
        /// The cap.
        cap: u32,
    },
    /// The region refused (not found, full, damaged, limits).
    #[error(transparent)]
    Region(#[from] RegionError),
}

/// What a context lets a session set for itself: the bound on its own
/// timeout and deadline (`sessions.max_timeout`) and the cap on sessions
/// per principal (`sessions.max_sessions_per_principal`,
/// `sessions.when_principal_full`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Longest own idle timeout, and furthest own deadline from now, s.
    pub max_timeout_s: u32,
    /// Most live sessions one principal may hold; 0 = no cap.
    pub max_per_principal: u32,
    /// What a create past the cap does.
    pub when_principal_full: WhenPrincipalFull,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy { max_timeout_s: 86_400, max_per_principal: 0, when_principal_full: WhenPrincipalFull::EvictOldest }
    }
}

/// Checks a principal name: 1 to [`MAX_PRINCIPAL`] bytes of UTF-8 with no
/// control character. The error names the rule it broke.
pub fn check_principal(name: &str) -> Result<(), SessionError> {
    let bad = |why: String| Err(SessionError::Invalid { code: "bad_principal", message: why });
    if name.is_empty() {
        return bad("principal is empty; it must be 1 to 256 bytes of UTF-8".into());
    }
    if name.len() > MAX_PRINCIPAL {
        return bad(format!("principal is {} bytes; the limit is {MAX_PRINCIPAL}", name.len()));
    }
    if name.chars().any(char::is_control) {
        return bad("principal contains a control character".into());
    }
    Ok(())
}

impl SessionError {
    /// Whether this is "no such session".
    pub fn is_not_found(&self) -> bool {
        matches!(self, SessionError::Region(RegionError::NotFound))
    }
}

/// A door operation's result: the id the session is held under here, the
/// operation's value, and the id the client must be given when it differs
/// from the one it sent (a cluster takeover re-issued it).
#[derive(Debug)]
pub struct Found<T> {
    /// The id here.
    pub id: SessionId,
    /// What the operation returned.
    pub value: T,
    /// `Some(id)` when the answer must re-issue the id (`Set-Cookie`).
    pub reissued: Option<SessionId>,
}

/// The outcome of an invalidation: it ended here; `store` says whether the
/// store has heard (cluster mode; `Ok` outside it). The HTTP API answers
/// the store's error, the gateway logs it: the local end stands either way.
#[derive(Debug)]
pub struct Ended {
    /// The id that ended.
    pub id: SessionId,
    /// The write-through's outcome.
    pub store: Result<(), SessionError>,
}

/// A session created but not yet announced: its events wait for
/// [`Pending::commit`] (which also writes it through), and
/// [`Pending::abort`] (or a drop) ends it without any event.
pub struct Pending<'a> {
    sessions: &'a Sessions,
    meta: SessionMeta,
    created: Vec<RegionEvent>,
    lost: u64,
    done: bool,
}

impl Pending<'_> {
    /// The new session's metadata (its id, for a handle or a hook).
    pub fn meta(&self) -> &SessionMeta {
        &self.meta
    }

    /// Sets `changes` (may be empty), writes the session through to the
    /// store (cluster mode), then announces it. On any refusal the session
    /// is dropped without an event and the error returned.
    pub async fn commit(self, changes: &[Change<'_>], now_ms: u64) -> Result<SessionMeta, SessionError> {
        self.commit_edit(&Edit { changes, ..Edit::default() }, now_ms).await
    }

    /// [`Self::commit`] with the session's own settings too (timeout,
    /// deadline, principal; checked against the context's [`Policy`]). A
    /// principal at its cap is made room for first, or refused.
    pub async fn commit_edit(mut self, edit: &Edit<'_>, now_ms: u64) -> Result<SessionMeta, SessionError> {
        let s = self.sessions;
        let id = self.meta.id;
        s.check_meta(&edit.meta, now_ms)?;
        let principal = edit.meta.principal.flatten();
        if let Some(p) = principal {
            s.make_room(p, &id.token, now_ms).await?;
        }
        let mut changed = Vec::new();
        let mut lost = self.lost;
        if !edit.changes.is_empty() || !edit.meta.is_empty() {
            let r = {
                let mut ev = if s.hub.is_some() { EventBuf::collect(&mut changed) } else { EventBuf::discard() };
                let r = s.region.edit_ev(&id, edit, now_ms, &mut ev);
                lost += ev.lost();
                r
            };
            self.meta = r?;
        }
        // Two creates for one principal may have passed the check at once:
        // the later one makes room again, or gives way.
        if let Some(p) = principal {
            s.make_room(p, &id.token, now_ms).await?;
        }
        let changes = edit.changes;
        if let Some(c) = &s.cluster {
            c.created(s, &self.meta, now_ms).await?;
        }
        self.done = true;
        if let Some(hub) = &s.hub {
            hub.publish(&mut self.created, None, lost);
            hub.publish(&mut changed, Some(changes), 0);
        }
        Ok(self.meta.clone())
    }

    /// Ends the session without an event: it never happened.
    pub fn abort(mut self) {
        self.done = true;
        let _ = self.sessions.region.forget(&self.meta.id, crate::clock::now_ms());
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.sessions.region.forget(&self.meta.id, crate::clock::now_ms());
        }
    }
}

/// The store's state as `/healthz` reports it.
#[derive(Clone, Copy, Debug)]
pub struct StoreHealth {
    /// The store is unreachable.
    pub down: bool,
    /// What the node does meanwhile.
    pub when_store_down: crate::config::StoreDown,
}

/// One context's sessions.
#[derive(Clone)]
pub struct Sessions {
    /// The shared region.
    region: Arc<Region>,
    /// This process's event hub; `None` discards events.
    hub: Option<Arc<EventHub>>,
    /// Cluster mode: this process's view of the store; `None` keeps
    /// sessions local.
    cluster: Option<Arc<cluster::Cluster>>,
    /// What a session may set for itself.
    policy: Policy,
}

impl Sessions {
    /// The service over `region`, with no hub and no cluster.
    pub fn new(region: Arc<Region>) -> Sessions {
        Sessions { region, hub: None, cluster: None, policy: Policy::default() }
    }

    /// The same service under `policy` (the context's settings).
    pub fn with_policy(&self, policy: Policy) -> Sessions {
        Sessions { policy, ..self.clone() }
    }

    /// The context's [`Policy`].
    pub fn policy(&self) -> &Policy {
        &self.policy
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
        Sessions { hub, ..self.clone() }
    }

    /// The same service with this process's cluster view installed (each
    /// child builds its own after `fork`).
    pub fn with_cluster(&self, cluster: Option<Arc<cluster::Cluster>>) -> Sessions {
        Sessions { cluster, ..self.clone() }
    }

    /// Publishes one event the session layer makes itself (no region call
    /// recorded it: a session ended on another node, a lost write).
    pub(crate) fn publish_one(&self, e: RegionEvent, reason: Option<EndReason>) {
        if let Some(hub) = &self.hub {
            hub.publish_why(&mut vec![e], None, 0, reason);
        }
    }

    /// Runs one region operation with an event buffer and publishes what
    /// it recorded after it returned (no lock held by then).
    #[inline]
    fn run<T, E>(
        &self,
        changes: Option<&[Change<'_>]>,
        op: impl FnOnce(&Region, &mut EventBuf<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        self.run_why(changes, None, op)
    }

    /// [`Self::run`], with the reason its ends are published with.
    #[inline]
    fn run_why<T, E>(
        &self,
        changes: Option<&[Change<'_>]>,
        reason: Option<EndReason>,
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
            hub.publish_why(&mut v, changes, lost, reason);
            r
        })
    }

    // ---------- the door ----------

    /// Runs `op` on the first candidate that names a live session and
    /// reports which id that was. In cluster mode the candidates are
    /// resolved first: an id naming this node is trusted once the node is
    /// reconciled (the op itself looks at the slot); if the op then finds
    /// no session there (a slot that no longer holds it, or a copy dropped
    /// on another node's takeover notice), the candidates are resolved once
    /// more through the region and then the store (a takeover), so the op
    /// lands on the current copy instead of answering "not found". With
    /// `write`, a change is refused up front while the store is down under
    /// `fail-closed`.
    async fn resolved<T>(
        &self,
        ids: &[SessionId],
        write: bool,
        now_ms: u64,
        mut op: impl FnMut(&SessionId) -> Result<T, RegionError>,
    ) -> Result<Found<T>, SessionError> {
        let first = |op: &mut dyn FnMut(&SessionId) -> Result<T, RegionError>, ids: &[SessionId]| {
            for id in ids {
                match op(id) {
                    Err(RegionError::NotFound) => continue,
                    r => return r.map(|v| (*id, v)),
                }
            }
            Err(RegionError::NotFound)
        };
        let Some(c) = &self.cluster else {
            let (id, value) = first(&mut op, ids)?;
            return Ok(Found { id, value, reissued: None });
        };
        let mut r = c.resolve(self, ids, now_ms, false).await?;
        if write {
            c.check_writable()?;
        }
        for verify_local in [false, true] {
            let Some(f) = r else { return Err(RegionError::NotFound.into()) };
            match first(&mut op, std::slice::from_ref(&f.id)) {
                Err(RegionError::NotFound) if !verify_local => r = c.resolve(self, ids, now_ms, true).await?,
                res => {
                    let (id, mut value) = res?;
                    if !write && c.fail_closed() {
                        // Only what the store holds: a change whose write-through
                        // is still out may yet be refused and undone (cluster.md
                        // §6.11), so a read waits for its answer.
                        let give_up = std::time::Instant::now() + c.store_timeout();
                        while self.region.change_marked(id.slot) {
                            if std::time::Instant::now() >= give_up {
                                return Err(c.unconfirmed(&id));
                            }
                            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                            value = first(&mut op, std::slice::from_ref(&id))?.1;
                        }
                    }
                    return Ok(Found { id, value, reissued: f.reissued.then_some(f.id) });
                }
            }
        }
        Err(RegionError::NotFound.into())
    }

    /// Cluster mode: a read that touched `id` (its last access reaches the
    /// store at most once per `save_period`, in the background).
    fn accessed(&self, id: &SessionId, touch: bool, now_ms: u64) {
        if let (true, Some(c)) = (touch, &self.cluster) {
            c.accessed(self, id, now_ms);
        }
    }

    /// Cluster mode: writes a change of `id` through to the store.
    /// `pending`: the slot already carried a change mark before this change
    /// (an earlier change the store has not heard of yet).
    async fn written(&self, id: &SessionId, pending: bool, now_ms: u64) -> Result<(), SessionError> {
        match &self.cluster {
            Some(c) => c.changed(self, id, pending, now_ms).await,
            None => Ok(()),
        }
    }

    /// Creates a session whose events wait for [`Pending::commit`] (see
    /// there); refused up front while the store is down under
    /// `fail-closed`.
    pub fn begin_create(&self, now_ms: u64) -> Result<Pending<'_>, SessionError> {
        if let Some(c) = &self.cluster {
            c.check_writable()?;
        }
        let mut created = Vec::new();
        let (meta, lost) = {
            let mut ev = if self.hub.is_some() { EventBuf::collect(&mut created) } else { EventBuf::discard() };
            let m = self.region.create_ev(now_ms, &mut ev)?;
            (m, ev.lost())
        };
        Ok(Pending { sessions: self, meta, created, lost, done: false })
    }

    /// Creates a session and writes it through; a create the store refused
    /// never happened (no event, no session).
    pub async fn create(&self, now_ms: u64) -> Result<SessionMeta, SessionError> {
        self.begin_create(now_ms)?.commit(&[], now_ms).await
    }

    /// The whole session; `touch` refreshes it and clears "new".
    pub async fn get(&self, ids: &[SessionId], touch: bool, now_ms: u64) -> Result<Found<Session>, SessionError> {
        let f = self.resolved(ids, false, now_ms, |id| self.run(None, |r, ev| r.get_ev(id, touch, now_ms, ev))).await?;
        self.accessed(&f.id, touch, now_ms);
        Ok(f)
    }

    /// One attribute into `out`; `value` is `false` if the session lacks it.
    pub async fn get_attr(
        &self,
        ids: &[SessionId],
        name: &str,
        touch: bool,
        now_ms: u64,
        out: &mut Vec<u8>,
    ) -> Result<Found<bool>, SessionError> {
        let f = self
            .resolved(ids, false, now_ms, |id| self.run(None, |r, ev| r.get_attr_ev(id, name, touch, now_ms, out, ev)))
            .await?;
        self.accessed(&f.id, touch, now_ms);
        Ok(f)
    }

    /// Refreshes the last access and clears "new", as a read does.
    pub async fn touch(&self, ids: &[SessionId], now_ms: u64) -> Result<Found<SessionMeta>, SessionError> {
        let f = self.resolved(ids, false, now_ms, |id| self.run(None, |r, ev| r.touch_ev(id, now_ms, ev))).await?;
        self.accessed(&f.id, true, now_ms);
        Ok(f)
    }

    /// Sets and removes attributes atomically, and writes the change
    /// through. Names not in `changes` are left as they are (a merge).
    pub async fn update(
        &self,
        ids: &[SessionId],
        changes: &[Change<'_>],
        now_ms: u64,
    ) -> Result<Found<()>, SessionError> {
        let f = self.edit(ids, &Edit { changes, ..Edit::default() }, now_ms).await?;
        Ok(Found { id: f.id, value: (), reissued: f.reissued })
    }

    /// Applies an [`Edit`] atomically (attributes, the session's own
    /// settings, and its `If-Match` version, checked under the same lock),
    /// and writes it through; `value` is the new metadata (its version is
    /// the new `ETag`). Setting a principal obeys the principal's cap.
    pub async fn edit(
        &self,
        ids: &[SessionId],
        edit: &Edit<'_>,
        now_ms: u64,
    ) -> Result<Found<SessionMeta>, SessionError> {
        self.check_meta(&edit.meta, now_ms)?;
        let principal = edit.meta.principal.flatten();
        if let (Some(p), Some(first)) = (principal, ids.first()) {
            self.make_room(p, &first.token, now_ms).await?;
        }
        let changes = edit.changes;
        let mut pending = false;
        let f = self
            .resolved(ids, true, now_ms, |id| {
                pending = self.cluster.is_some() && self.region.change_marked(id.slot);
                self.run(Some(changes), |r, ev| r.edit_ev(id, edit, now_ms, ev))
            })
            .await?;
        self.written(&f.id, pending, now_ms).await?;
        Ok(f)
    }

    /// Checks a session's own settings against the context's [`Policy`]:
    /// a timeout of 1 s to `max_timeout`, a deadline after now and at most
    /// `max_timeout` from now, a valid principal.
    pub fn check_meta(&self, m: &MetaChange<'_>, now_ms: u64) -> Result<(), SessionError> {
        let max = self.policy.max_timeout_s;
        if let Some(Some(t)) = m.timeout_s
            && (t == 0 || t > max)
        {
            return Err(SessionError::Invalid {
                code: "bad_timeout",
                message: format!(
                    "timeout = {t} s is out of range; it must be between 1 and {max} s (sessions.max_timeout)"
                ),
            });
        }
        // In cluster mode the store hears of a touch at most once per
        // save_period: a shorter timeout would let it expire a session in use.
        if let (Some(Some(t)), Some(c)) = (m.timeout_s, &self.cluster)
            && t <= c.settings().save_period
        {
            let p = c.settings().save_period;
            return Err(SessionError::Invalid {
                code: "bad_timeout",
                message: format!(
                    "timeout = {t} s is not longer than cluster.save_period = {p} s, so the store could expire the \
                     session while it is in use; ask for more than {p} s or lower save_period"
                ),
            });
        }
        if let Some(Some(d)) = m.deadline_ms {
            let latest = now_ms.saturating_add(u64::from(max) * 1000);
            let shown = crate::clock::rfc3339_millis(d);
            if d <= now_ms {
                return Err(SessionError::Invalid {
                    code: "bad_deadline",
                    message: format!("deadline {shown} is not in the future; give a later time, or null for none"),
                });
            }
            if d > latest {
                return Err(SessionError::Invalid {
                    code: "bad_deadline",
                    message: format!(
                        "deadline {shown} is past now + sessions.max_timeout ({max} s), the latest allowed being {}",
                        crate::clock::rfc3339_millis(latest)
                    ),
                });
            }
        }
        if let Some(Some(p)) = m.principal {
            check_principal(p)?;
        }
        Ok(())
    }

    /// Sets one attribute.
    pub async fn set_attr(
        &self,
        ids: &[SessionId],
        name: &str,
        value: &[u8],
        now_ms: u64,
    ) -> Result<Found<()>, SessionError> {
        self.update(ids, &[(name, Some(value))], now_ms).await
    }

    /// Removes one attribute (absent is fine).
    pub async fn remove_attr(&self, ids: &[SessionId], name: &str, now_ms: u64) -> Result<Found<()>, SessionError> {
        self.update(ids, &[(name, None)], now_ms).await
    }

    /// Atomic read-modify-write of one attribute of the session `id` holds
    /// here (see `Region::modify_attr_ev`): `f` runs under the stripe lock
    /// with a copy of the current value and must be quick. Written through
    /// like any change.
    pub async fn modify_attr<E: From<RegionError> + From<SessionError>>(
        &self,
        id: &SessionId,
        name: &str,
        now_ms: u64,
        f: impl FnOnce(Option<&[u8]>) -> Result<Option<Vec<u8>>, E>,
    ) -> Result<(), E> {
        if let Some(c) = &self.cluster {
            c.check_writable()?;
        }
        let changes: [Change<'_>; 1] = [(name, None)];
        let pending = self.cluster.is_some() && self.region.change_marked(id.slot);
        self.run(Some(&changes), |r, ev| r.modify_attr_ev(id, name, now_ms, ev, f))?;
        self.written(id, pending, now_ms).await?;
        Ok(())
    }

    /// Ends the session now, and tells the store (cluster mode: a stale
    /// copy's logout ends the session at its owner too). The outcome's
    /// `store` says whether the store heard.
    pub async fn invalidate(&self, ids: &[SessionId], now_ms: u64) -> Result<Ended, SessionError> {
        self.invalidate_if(ids, None, now_ms).await
    }

    /// [`Self::invalidate`] if the session is at version `expect` when
    /// given (`If-Match`), checked under the lock that ends it.
    pub async fn invalidate_if(
        &self,
        ids: &[SessionId],
        expect: Option<u64>,
        now_ms: u64,
    ) -> Result<Ended, SessionError> {
        let f = self
            .resolved(ids, true, now_ms, |id| {
                self.run(None, |r, ev| r.end_ev(id, expect, EventKind::Invalidated, now_ms, ev))
            })
            .await?;
        let store = match &self.cluster {
            Some(c) => c.invalidated(self, &f.id, now_ms).await,
            None => Ok(()),
        };
        Ok(Ended { id: f.id, store })
    }

    /// Gives the session a new id, keeping its data, and writes the
    /// rotation through; `Found::id` is the old id, `value` the new meta.
    pub async fn rotate(&self, ids: &[SessionId], now_ms: u64) -> Result<Found<SessionMeta>, SessionError> {
        self.rotate_if(ids, None, now_ms).await
    }

    /// [`Self::rotate`] if the session is at version `expect` when given.
    pub async fn rotate_if(
        &self,
        ids: &[SessionId],
        expect: Option<u64>,
        now_ms: u64,
    ) -> Result<Found<SessionMeta>, SessionError> {
        let f = self
            .resolved(ids, true, now_ms, |id| {
                let recorded = self.cluster.as_ref().filter(|c| c.rotating(id));
                let r = self.run(None, |r, ev| r.rotate_if_ev(id, expect, now_ms, ev));
                if r.is_err()
                    && let Some(c) = recorded
                {
                    c.not_rotated(id);
                }
                r
            })
            .await?;
        if let Some(c) = &self.cluster {
            c.rotated(self, &f.id, &f.value.id, now_ms).await?;
        }
        Ok(f)
    }

    /// Whether the session `id` (which ended in its slot here) left
    /// because another node took it over (cluster mode), not because it
    /// ended.
    pub fn moved_away(&self, id: &SessionId) -> bool {
        self.cluster.as_ref().is_some_and(|c| c.moved_away(id))
    }

    // ---------- what the cluster protocol needs of the region ----------

    /// Installs a session another node held (a cluster takeover); see
    /// `Region::adopt`. No event: the session moved, it did not start.
    fn adopt(&self, a: &Adopt<'_>, now_ms: u64) -> Result<SessionMeta, RegionError> {
        self.region.adopt(a, now_ms)
    }

    /// The id of the session that last ended in `slot` while it is free
    /// (for a store that must still remove it).
    pub fn ended_id(&self, slot: u32) -> Result<Option<SessionId>, RegionError> {
        self.region.ended_id(slot)
    }

    /// Ends the session now without an event: this node's copy was stale
    /// (another node owns the session), or a create the store refused.
    fn drop_stale(&self, id: &SessionId, now_ms: u64) -> Result<(), RegionError> {
        self.region.forget(id, now_ms)
    }

    /// Whether `slot` is free and its last session was logged out, which
    /// the store must make final whoever holds the session there.
    pub fn ended_final(&self, slot: u32) -> Result<bool, RegionError> {
        self.region.ended_final(slot)
    }

    /// The logged-out predecessor `slot` keeps until the store ends it.
    pub fn retired(&self, slot: u32) -> Result<Option<SessionId>, RegionError> {
        self.region.retired(slot)
    }

    /// The store ended the predecessor `token` of `slot`.
    pub fn clear_retired(&self, slot: u32, token: &[u8; crate::region::TOKEN_LEN]) -> Result<(), RegionError> {
        self.region.clear_retired(slot, token)
    }

    /// The session `id` names in this node's region, without touching it,
    /// resolving it or asking the store (a handle's session, a tool's look).
    pub fn peek(&self, id: &SessionId, now_ms: u64) -> Result<Session, RegionError> {
        self.region.get_ev(id, false, now_ms, &mut EventBuf::discard())
    }

    /// One attribute of the session `id` names here, into `out`, without
    /// touching it (a tunnel's liveness check); `Ok(false)` if it lacks it.
    pub fn peek_attr(&self, id: &SessionId, name: &str, now_ms: u64, out: &mut Vec<u8>) -> Result<bool, RegionError> {
        self.region.get_attr_ev(id, name, false, now_ms, out, &mut EventBuf::discard())
    }

    /// Ends the session `id` names in this node's region, for a tool
    /// working on the region file (`sessionctl expire`): no store call;
    /// in cluster mode the slot's change mark carries the end to the store
    /// at the reaper's next flush.
    pub fn invalidate_local(&self, id: &SessionId, now_ms: u64) -> Result<(), RegionError> {
        self.run(None, |r, ev| r.invalidate_ev(id, now_ms, ev))
    }

    /// The id of the live session in `slot`, if any (no touch).
    pub fn id_in_slot(&self, slot: u32, now_ms: u64) -> Result<Option<SessionId>, RegionError> {
        self.region.id_in_slot(slot, now_ms)
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

    /// Marks `id` for the next flush as it is (a store re-seed).
    pub fn remark(&self, id: &SessionId) -> Result<bool, RegionError> {
        self.region.remark(id)
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

    /// Cluster mode: the store's health for `/healthz` (`None` outside
    /// cluster mode).
    pub fn store_health(&self) -> Option<StoreHealth> {
        self.cluster.as_ref().map(|c| StoreHealth { down: c.degraded(), when_store_down: c.settings().when_store_down })
    }

    /// Cluster mode: the store's lines of `/metrics`, with `pending`
    /// unacknowledged changes across the node's contexts (empty outside
    /// cluster mode).
    pub fn store_metrics(&self, pending: u64, now_ms: u64) -> String {
        self.cluster.as_ref().map(|c| cluster::metrics_text(c, pending, now_ms)).unwrap_or_default()
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
