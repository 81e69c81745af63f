//! The reaper's part of cluster mode, run on the reaper's own runtime:
//!
//! 1. **Prepare and reconcile at start.** Create the schema if missing
//!    (and refuse a newer one), then check every session in this node's
//!    regions against the store: a copy another node took over while this
//!    one was away, or one the store no longer has and that carries no
//!    change mark, is dropped. Until this is done, workers ask the store
//!    before serving a local copy.
//! 2. **Flush change marks.** Slots whose change the store has not
//!    acknowledged (an outage under `serve-local`, a worker killed between
//!    its region write and its store write) are saved, or removed when the
//!    session ended, and acknowledged, in slot order, oldest first.
//! 3. **The store sweep.** Under `reaper = "elect"` one node at a time
//!    (a PostgreSQL advisory lock, a Redis lease) deletes expired sessions
//!    in bounded batches, and publishes an `expired` event for each
//!    session it removed (owner nodes publish their own when their region
//!    expires them; the store sweep covers nodes that are gone).

use std::sync::Arc;
use std::time::Duration;

use super::Cluster;
use super::shared::Word;
use crate::config::StoreReaper;
use crate::region::{EventKind, RegionEvent, SessionId, TOKEN_LEN};
use crate::session::{EventHub, Sessions};
use crate::store::{Moved, MovedFeed, Owner, SWEPT_SLOT, StoreError, store_key};

/// Every context's sessions of this process, as the background jobs walk them.
pub type AllSessions = Arc<[Sessions]>;

fn by_tag(contexts: &[Sessions], tag: u16) -> Option<&Sessions> {
    contexts.iter().find(|s| s.tag() == tag)
}

/// Slots flushed per pass per context.
const FLUSH_BATCH: usize = 512;
/// Sessions whose owner one reconciliation query asks for.
const RECONCILE_BATCH: usize = 500;
/// Most sweep batches in one round (the next round goes on).
const SWEEP_ROUNDS: usize = 100;

/// Runs the reaper's cluster duties until the process stops; returns only
/// on a fatal error (a store schema newer than this build), logged.
pub async fn run(cluster: Arc<Cluster>, contexts: AllSessions, hub: Option<Arc<EventHub>>) {
    let store = cluster.store().describe();
    // 1. Schema, then reconciliation; both retry until the store answers.
    let mut wait = Duration::from_millis(200);
    loop {
        match cluster.store().prepare().await {
            Ok(()) => break,
            Err(e @ StoreError::SchemaTooNew { .. }) => {
                // Nothing may write to a store of a newer schema: the
                // reaper exits fatally and the master stops the node.
                log::error!("session store {store}: {e}; stopping this node");
                return;
            }
            Err(e @ StoreError::TlsRefused { .. }) => {
                // A server whose certificate fails the URL's sslmode is
                // not the store configured: stop the same way.
                log::error!("{e}; stopping this node");
                return;
            }
            Err(e) => {
                cluster.note(&Err::<(), _>(e));
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
    // Takeover notices: subscribe before reconciling, so nothing that moves
    // after the reconciliation's reads is missed.
    let (subscribed_tx, subscribed_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(listen(cluster.clone(), contexts.clone(), subscribed_tx));
    let _ = subscribed_rx.await;
    loop {
        match reconcile(&cluster, &contexts).await {
            Ok(dropped) => {
                cluster.state().set(Word::Reconciled, 1);
                log::info!(
                    "session store {store}: reconciled this node's sessions with the store; dropped {dropped} stale cop{}",
                    if dropped == 1 { "y" } else { "ies" }
                );
                break;
            }
            Err(e) => {
                log::warn!("session store {store}: reconciliation waits for the store: {e}");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
    // The store's generation: learnt now, then checked every heartbeat
    // period for a store that lost its data.
    let gen_every = cluster.beat_every();
    let mut next_gen = tokio::time::Instant::now();
    // 2 and 3 on their own periods.
    let sweep_every = cluster.settings().sweep_interval;
    let mut next_sweep = tokio::time::Instant::now();
    let mut flush_tick = tokio::time::interval(Duration::from_millis(250));
    flush_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut unrecorded = Unrecorded::new();
    loop {
        flush_tick.tick().await;
        if tokio::time::Instant::now() >= next_gen {
            next_gen = tokio::time::Instant::now() + gen_every;
            let r = check_generation(&cluster, &contexts).await;
            cluster.note(&r);
        }
        for s in contexts.iter() {
            flush(&cluster, s, &mut unrecorded).await;
        }
        // Forget what was recorded or saved meanwhile (bounded by the marks).
        if unrecorded.len() > 4096 {
            unrecorded.clear();
        }
        if tokio::time::Instant::now() >= next_sweep {
            next_sweep = tokio::time::Instant::now() + sweep_every;
            sweep(&cluster, &contexts, hub.as_ref()).await;
        }
    }
}

/// Drops this node's copies of sessions other nodes took over, as their
/// notices arrive. A subscription that ends (a lost connection, a full
/// queue) may have missed notices: the next one reconciles in full.
///
/// It also keeps the node's lease (cluster.md §6.11): every
/// [`Cluster::beat_every`] it sends a heartbeat through the store's notice
/// channel, and when that heartbeat comes back on this subscription every
/// notice sent before it has been handled, so the node may serve its own
/// copies until the heartbeat's send time plus [`Cluster::lease`]. The
/// first subscription reports `subscribed` only once its first heartbeat
/// came back.
async fn listen(cluster: Arc<Cluster>, contexts: AllSessions, subscribed: tokio::sync::oneshot::Sender<()>) {
    let mut subscribed = Some(subscribed);
    let mut wait = Duration::from_millis(200);
    // Notes a failure; the back-off to sleep before the next attempt.
    let failed = |cluster: &Cluster, e: StoreError, wait: &mut Duration| {
        cluster.note(&Err::<(), _>(e));
        let w = *wait;
        *wait = (w * 2).min(Duration::from_secs(5));
        w
    };
    loop {
        let mut feed = match cluster.store().subscribe().await {
            Ok(f) => f,
            Err(e) => {
                tokio::time::sleep(failed(&cluster, e, &mut wait)).await;
                continue;
            }
        };
        // After a gap, notices sent meanwhile are lost: reconcile before the
        // lease is renewed, so that a copy another node took over during the
        // gap is dropped before this node may serve it again (§6.11). (At
        // start the node is not reconciled yet and asks the store instead.)
        if subscribed.is_none() {
            match reconcile(&cluster, &contexts).await {
                Ok(n) => log::info!(
                    "session store {}: takeover notices resumed; reconciled, dropped {n} stale cop{}",
                    cluster.store().describe(),
                    if n == 1 { "y" } else { "ies" }
                ),
                Err(e) => {
                    tokio::time::sleep(failed(&cluster, e, &mut wait)).await;
                    continue;
                }
            }
        }
        // The first heartbeat: the subscription delivers, and the lease holds.
        if let Err(e) = first_beat(&cluster, &contexts, feed.as_mut()).await {
            tokio::time::sleep(failed(&cluster, e, &mut wait)).await;
            continue;
        }
        if let Some(tx) = subscribed.take() {
            let _ = tx.send(());
        }
        wait = Duration::from_millis(200);
        let mut beat = tokio::time::interval(cluster.beat_every());
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                m = feed.next() => match m {
                    Ok(Some(m)) => {
                        handle_notice(&cluster, &contexts, &m);
                    }
                    _ => break,
                },
                _ = beat.tick() => {
                    // On its own task: a slow store must not hold up the notices.
                    let c = cluster.clone();
                    tokio::spawn(async move {
                        let r = c.store().announce(&Moved::beat(c.node(), crate::clock::now_ms())).await;
                        c.note(&r);
                    });
                }
            }
        }
    }
}

/// Sends a heartbeat and handles notices until it comes back, within
/// `store_timeout`.
async fn first_beat(cluster: &Cluster, contexts: &[Sessions], feed: &mut dyn MovedFeed) -> Result<(), StoreError> {
    let sent = crate::clock::now_ms();
    let timeout = cluster.beat_every() * 2;
    tokio::time::timeout(timeout, async {
        cluster.store().announce(&Moved::beat(cluster.node(), sent)).await?;
        loop {
            match feed.next().await? {
                Some(m) if handle_notice(cluster, contexts, &m) == Some(sent) => return Ok(()),
                Some(_) => {}
                None => {
                    return Err(StoreError::Unavailable {
                        store: cluster.store().describe(),
                        why: "the notice subscription ended before its first heartbeat came back".into(),
                    });
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        Err(StoreError::Unavailable {
            store: cluster.store().describe(),
            why: format!("the notice subscription's first heartbeat did not come back within {timeout:?}"),
        })
    })
}

/// Handles one notice: this node's own heartbeat renews its lease (and is
/// returned, by its send time); a move from this node drops its copy.
fn handle_notice(cluster: &Cluster, contexts: &[Sessions], m: &Moved) -> Option<u64> {
    if m.from != cluster.node() {
        return None;
    }
    if let Some(sent) = m.beat_sent_ms() {
        let until = sent + cluster.lease().as_millis() as u64;
        let st = cluster.state();
        if until > st.get(Word::LeaseUntilMs) {
            st.set(Word::LeaseUntilMs, until);
        }
        return Some(sent);
    }
    let s = by_tag(contexts, m.context)?;
    let now = crate::clock::now_ms();
    if let Ok(Some(id)) = s.id_in_slot(m.slot, now)
        && store_key(id.context, &id.token) == m.key
        && cluster.drop_moved(s, &id, now)
    {
        cluster.state().add(Word::Dropped, 1);
        log::debug!("context {}: session {}… moved to another node; dropped this copy", s.context(), id.short());
    }
    None
}

/// Removes the key a rotation of `slot` retired, if one waits in its owner
/// entry, fenced with the epoch recorded with it. It goes before the new
/// key is saved: if another node took the old key over meanwhile, the
/// removal is refused (`Fenced`), the rotation lost, and saving the new
/// key would fork the session into two live ones; the caller then drops
/// this copy as it drops any fenced one.
async fn end_rotated(cluster: &Cluster, s: &Sessions, slot: u32) -> Result<(), StoreError> {
    let Some(o) = cluster.owners(s.tag()) else { return Ok(()) };
    let Some((key, epoch)) = o.retired(slot) else { return Ok(()) };
    // Recorded by `Cluster::rotating` for a rotation the region has not
    // made (in flight, or its worker died first): the key is still the
    // slot's own, not retired.
    if let Ok(Some(id)) = s.id_in_slot(slot, crate::clock::now_ms())
        && store_key(id.context, &id.token) == key
    {
        return Ok(());
    }
    let r = cluster.store().retire(&key, Owner { node: cluster.node(), slot, epoch }).await;
    cluster.note(&r);
    match r {
        Ok(()) => {
            o.clear_retired(slot);
            Ok(())
        }
        Err(e @ StoreError::Fenced { .. }) => {
            o.clear_retired(slot);
            Err(e)
        }
        Err(e) => Err(e),
    }
}

/// Every live session of `s`, [`RECONCILE_BATCH`] at a time; a page that
/// cannot be read ends the pass, logged with `what` (the pass's name).
fn pages<'a>(s: &'a Sessions, what: &'a str) -> impl Iterator<Item = Vec<crate::region::SessionMeta>> + 'a {
    let mut cursor = Some(0);
    std::iter::from_fn(move || match s.list(cursor?, RECONCILE_BATCH, crate::clock::now_ms()) {
        Ok((metas, next)) => {
            cursor = next;
            Some(metas)
        }
        Err(e) => {
            log::warn!("context {}: {what} stopped early: {e}", s.context());
            cursor = None;
            None
        }
    })
}

/// Checks every live local session against the store; returns how many
/// stale copies were dropped.
pub async fn reconcile(cluster: &Cluster, contexts: &[Sessions]) -> Result<u64, StoreError> {
    // A store that lost its data answers "not stored" for every session:
    // re-seed first, so those copies are kept (change-marked), not dropped.
    check_generation(cluster, contexts).await?;
    let mut dropped = 0;
    for s in contexts.iter() {
        for metas in pages(s, "reconciliation") {
            let now = crate::clock::now_ms();
            let keys: Vec<_> = metas.iter().map(|m| store_key(m.id.context, &m.id.token)).collect();
            let owners = cluster.store().owners(&keys).await?;
            for (m, o) in metas.iter().zip(owners) {
                let want = cluster.owner_of(&m.id);
                let mark = s.change_mark(m.id.slot).ok().flatten();
                let keep = match o {
                    // An older epoch than ours is a stale copy that re-seeded
                    // a store which lost its data before this node did: ours
                    // wins at its flush (the save replaces older epochs).
                    Some(o) => o == want || o.epoch < want.epoch,
                    // Not in the store: ours only if a change of it is
                    // still waiting to be flushed (made while it was away).
                    None => mark.is_some(),
                };
                if !keep && cluster.drop_moved(s, &m.id, now) {
                    dropped += 1;
                    // Another node took it over while a change made here
                    // (acknowledged under serve-local) waited for the store:
                    // that change is lost, and said so (by whoever dropped
                    // the copy: this or the flush, never both).
                    if let (Some(o), Some(seq)) = (o, mark) {
                        lost_write(cluster, s, &m.id, want.epoch, o.node, seq, now).await;
                    }
                }
            }
        }
    }
    cluster.state().add(Word::Dropped, dropped);
    Ok(dropped)
}

/// Asks the store for its generation (cluster.md §6.12). The first
/// answer is remembered in the node's state; a later different one means
/// the store lost its data since (a Redis restarted without persistence):
/// every live session of this node is marked for the next flush, which
/// writes it again (a save inserts what is absent, and replaces a copy
/// under an older epoch that a stale node re-seeded first). Returns how
/// many sessions were marked.
pub async fn check_generation(cluster: &Cluster, contexts: &[Sessions]) -> Result<u64, StoreError> {
    let mut b = [0u8; 8];
    if getrandom::getrandom(&mut b).is_err() {
        // Only needs to differ from the last generation: the clock will do.
        b = crate::clock::now_ms().to_ne_bytes();
    }
    let fresh = u64::from_ne_bytes(b).max(1);
    let now_gen = cluster.store().generation(fresh).await?;
    let st = cluster.state();
    let known = st.get(Word::Generation);
    if known == now_gen {
        return Ok(0);
    }
    if known == 0 {
        st.set(Word::Generation, now_gen);
        return Ok(0);
    }
    // Marks first, the word after: a reconciliation racing this one (after
    // the notice gap the same restart caused) sees the old word, marks the
    // same sessions itself, and so never drops a copy the store forgot.
    let mut marked = 0u64;
    for s in contexts.iter() {
        for metas in pages(s, "re-seed") {
            marked += metas.iter().filter(|m| s.remark(&m.id).unwrap_or(false)).count() as u64;
        }
    }
    if !st.swap(Word::Generation, known, now_gen) {
        // A racing check recorded it (and counts and logs it).
        return Ok(marked);
    }
    st.add(Word::StoreResets, 1);
    st.add(Word::Reseeded, marked);
    log::error!(
        "session store {}: its generation changed from {known:016x} to {now_gen:016x}: the store lost its data \
         (restarted without persistence, or re-created); re-seeding it with this node's {marked} live session(s) \
         (sessiond_store_resets_total). Logouts made before the loss stay final only where the node that made \
         them still holds the ended slot; give the store persistence (Redis appendonly yes) to keep them all",
        cluster.store().describe()
    );
    Ok(marked)
}

/// Slots seen change-marked but not recorded by their worker, with when
/// the flush first saw them so (by context tag, slot and change sequence).
pub type Unrecorded = std::collections::HashMap<(u16, u32, u64), u64>;

/// Saves or removes every change-marked slot of one context; stops at the
/// first store failure (the marks stay for the next pass).
pub async fn flush(cluster: &Cluster, s: &Sessions, unrecorded: &mut Unrecorded) -> usize {
    let mut done = 0;
    let mut from = 0;
    loop {
        let slots = s.changed_slots(from, FLUSH_BATCH);
        let Some(&last) = slots.last() else { break };
        for slot in slots {
            let now = crate::clock::now_ms();
            let Ok(Some(seq)) = s.change_mark(slot) else { continue };
            let r = match s.snapshot_slot(slot, now) {
                Ok(Some(sess)) => {
                    let id = sess.meta.id;
                    let created_ms = sess.meta.created_ms;
                    let mut rec = cluster.record(sess, seq, None);
                    if rec.owner.epoch == 0 {
                        // Its worker has not recorded it yet (a create or a
                        // takeover in flight): the worker writes it itself.
                        // Unless the worker died first: a slot still
                        // unrecorded well after its last change is claimed
                        // as a create (epoch 1). Were it a takeover the
                        // store knows under a newer epoch, the save is
                        // fenced and the copy dropped; its client takes it
                        // over again.
                        let quiet_ms = 2 * cluster.settings().store_timeout.as_millis() as u64 + 1000;
                        let since = *unrecorded.entry((s.tag(), slot, seq)).or_insert(now);
                        if now < since.saturating_add(quiet_ms) {
                            continue;
                        }
                        unrecorded.remove(&(s.tag(), slot, seq));
                        cluster.record_owner(&id, 1, created_ms);
                        rec.owner.epoch = 1;
                    }
                    let r = match cluster.settle_retired(s, slot, now).await {
                        Ok(()) => match end_rotated(cluster, s, slot).await {
                            Ok(()) => cluster.store().save(&rec).await,
                            Err(e) => Err(e),
                        },
                        Err(e) => Err(e),
                    };
                    if let Err(StoreError::Fenced { owner }) = r
                        && cluster.drop_moved(s, &id, now)
                    {
                        lost_write(cluster, s, &id, rec.owner.epoch, owner, seq, now).await;
                        cluster.state().add(Word::Dropped, 1);
                    }
                    r
                }
                Ok(None) => match s.ended_id(slot) {
                    Ok(Some(id)) => {
                        let key = store_key(id.context, &id.token);
                        if s.ended_final(slot).unwrap_or(false) {
                            // A logout: final whoever owns it in the store now.
                            cluster.end_final(&key, slot, now).await
                        } else if cluster.moved_away(&id) {
                            // Dropped because another node holds it (or is
                            // taking it over): nothing of ours to remove, and
                            // removing it would delete the session.
                            let _ = s.acknowledge(slot, seq);
                            continue;
                        } else {
                            let owner = cluster.owner_at(&id, &key);
                            if owner.epoch == 0 {
                                // Never recorded as ours: nothing of ours in the store.
                                let _ = s.acknowledge(slot, seq);
                                continue;
                            }
                            cluster.store().remove(&key, owner).await
                        }
                    }
                    // Live but expired: the region's reaper frees it, then
                    // it is flushed as ended.
                    _ => continue,
                },
                Err(_) => continue,
            };
            cluster.note(&r);
            match r {
                Ok(()) => {
                    cluster.state().add(Word::Writes, 1);
                    // An ended slot's rotation: its old key goes too (or
                    // another node holds it now: nothing of ours to remove).
                    match end_rotated(cluster, s, slot).await {
                        Ok(()) | Err(StoreError::Fenced { .. }) => {}
                        Err(_) => return done,
                    }
                    if s.acknowledge(slot, seq).unwrap_or(false) {
                        done += 1;
                    }
                }
                // Another node owns it: nothing of ours to write.
                Err(StoreError::Fenced { .. }) => {
                    let _ = s.acknowledge(slot, seq);
                }
                Err(_) => return done,
            }
        }
        from = last + 1;
    }
    if done > 0 {
        cluster.state().add(Word::Flushed, done as u64);
        log::info!("context {}: flushed {done} change(s) to the session store", s.context());
    }
    done
}

/// A flush found the store refusing changes this node accepted (under
/// `serve-local`, acknowledged to the client) because another node took
/// the session over meanwhile: those changes are lost. Counted
/// (`sessiond_store_lost_writes_total`), logged as a conflict with the
/// session's hash and both epochs, and published as a `conflict` event.
pub(super) async fn lost_write(
    cluster: &Cluster,
    s: &Sessions,
    id: &SessionId,
    ours: u64,
    owner: u32,
    seq: u64,
    now_ms: u64,
) {
    cluster.state().add(Word::LostWrites, 1);
    let key = store_key(id.context, &id.token);
    let theirs = match cluster.store().owners(std::slice::from_ref(&key)).await {
        Ok(v) => v.first().copied().flatten().map_or("none (it ended)".to_string(), |o| o.epoch.to_string()),
        Err(_) => "unknown (store unreachable)".to_string(),
    };
    log::warn!(
        "context {}: conflict: session {} was changed here at epoch {ours} while the store was away, and node {owner} \
         took it over meanwhile (store epoch {theirs}); this node's changes since are lost (counted in \
         sessiond_store_lost_writes_total) and its copy dropped",
        s.context(),
        id.log_hash()
    );
    s.publish_one(RegionEvent { kind: EventKind::Conflict, id: *id, old: None, seq, at_ms: now_ms }, None);
}

/// How long after its expiry the store sweep takes a session: a live owner
/// expires its own sessions at its region's next reap (so the owner, not
/// the sweep, reports them), and the store's last access lags by up to
/// `save_period`; plus clock skew. The sweep thus collects what nodes that
/// are gone left behind.
/// `max_reap_interval_s` is the longest reap period of the node's contexts.
pub fn sweep_grace_ms(cfg: &crate::config::ClusterConfig, max_reap_interval_s: u64) -> u64 {
    (max_reap_interval_s + 2 * u64::from(cfg.save_period)) * 1000 + 5000
}

/// One sweep round, if this node is the reaper.
async fn sweep(cluster: &Cluster, contexts: &[Sessions], hub: Option<&Arc<EventHub>>) {
    let cfg = cluster.settings();
    let lead = match cfg.reaper {
        StoreReaper::Never => false,
        StoreReaper::Always => true,
        StoreReaper::Elect => {
            let lease_ms = 3 * cfg.sweep_interval.as_millis() as u64 + 1000;
            let r = cluster.store().elect(cluster.node(), lease_ms).await;
            cluster.note(&r);
            r.unwrap_or(false)
        }
    };
    let was = cluster.state().get(Word::Leader) == 1;
    cluster.state().set(Word::Leader, u64::from(lead));
    if lead != was {
        if lead {
            log::info!(
                "session store {}: this node sweeps expired sessions now (reaper = {:?})",
                cluster.store().describe(),
                cfg.reaper
            );
        } else {
            log::info!("session store {}: another node sweeps expired sessions now", cluster.store().describe());
        }
    }
    if !lead {
        return;
    }
    cluster.state().add(Word::Sweeps, 1);
    let grace = cluster.sweep_grace_ms;
    for _ in 0..SWEEP_ROUNDS {
        let before = crate::clock::now_ms().saturating_sub(grace);
        let r = cluster.store().sweep(before, cfg.sweep_batch).await;
        cluster.note(&r);
        let Ok(swept) = r else { return };
        let n = swept.len();
        cluster.state().add(Word::Swept, n as u64);
        if let Some(hub) = hub {
            let now = crate::clock::now_ms();
            let mut v: Vec<RegionEvent> = swept
                .iter()
                .filter(|w| by_tag(contexts, w.context).is_some())
                .map(|w| {
                    let mut token = [0u8; TOKEN_LEN];
                    token.copy_from_slice(&w.key[..TOKEN_LEN]);
                    let id = SessionId { node: w.owner, context: w.context, slot: SWEPT_SLOT, token };
                    RegionEvent { kind: EventKind::Expired, id, old: None, seq: 0, at_ms: now }
                })
                .collect();
            hub.publish(&mut v, None, 0);
        }
        if n > 0 {
            log::debug!("session store {}: swept {n} expired session(s)", cluster.store().describe());
        }
        if n < cfg.sweep_batch as usize {
            break;
        }
    }
}
