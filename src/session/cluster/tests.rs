//! The cluster protocol through the door, against the in-memory store:
//! takeover, fencing, re-issue and a refused create, in `cargo test --lib`
//! with no server. Each "node" is its own data directory and region with
//! its own [`Cluster`] view; both share one [`MemoryStore`].

use std::sync::Arc;

use futures_util::FutureExt;

use super::Cluster;
use crate::config::{Config, Overrides};
use crate::datadir::{self, DataDirLock};
use crate::session::{ContextNames, Event, EventHub, SessionError, Sessions, Subscriber};
use crate::store::memory::MemoryStore;
use crate::store::{BackingStore, store_key};

struct Node {
    sessions: Sessions,
    cluster: Arc<Cluster>,
    _lock: DataDirLock,
    _dir: tempfile::TempDir,
}

struct Quiet;
impl Subscriber for Quiet {
    fn name(&self) -> &'static str {
        "quiet"
    }
    fn deliver(&self, _: &ContextNames, _: &[Event]) {}
}

fn node(id: u32, store: &Arc<MemoryStore>, when_down: &str, hub: Option<Arc<EventHub>>) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("sessiond.toml");
    std::fs::write(
        &conf,
        format!(
            "data_dir = {:?}\nnode_id = {id}\n[cluster]\nstore = \"redis://127.0.0.1:1/\"\nwhen_store_down = \"{when_down}\"\n",
            dir.path().join("data")
        ),
    )
    .unwrap();
    let cfg = Config::load(&Overrides { config: Some(conf), pairs: Vec::new() }).unwrap();
    std::fs::create_dir_all(&cfg.data_dir).unwrap();
    let lock = DataDirLock::acquire(&cfg.data_dir).unwrap();
    let rc = cfg.contexts[0].region_config(cfg.node_id);
    let (region, _) = datadir::open_regions(&lock, std::slice::from_ref(&rc)).unwrap().remove(0);
    let local = Sessions::new(Arc::new(region)).with_hub(hub);
    super::prepare_files(&cfg, std::iter::once(&local)).unwrap();
    let store: Arc<dyn BackingStore> = store.clone();
    let cluster = Cluster::with_store(&cfg, &[&local], store, 0).unwrap();
    Node { sessions: local.with_cluster(Some(cluster.clone())), cluster, _lock: lock, _dir: dir }
}

/// Every door call here completes without waiting (the memory store
/// answers at once), so polling once is enough.
fn now<T>(f: impl std::future::Future<Output = T>) -> T {
    f.now_or_never().expect("a call against the memory store completes at once")
}

#[test]
fn a_session_moves_with_its_token_and_the_stale_copy_is_fenced() {
    let store = MemoryStore::new();
    let (n1, n2) = (node(1, &store, "serve-local", None), node(2, &store, "serve-local", None));
    let t = crate::clock::now_ms();
    let m = now(n1.sessions.create(t)).unwrap();
    now(n1.sessions.set_attr(&[m.id], "cart", b"3 apples", t)).unwrap();
    let key = store_key(m.id.context, &m.id.token);
    let (rec, removed) = store.peek(&key).expect("written through at create");
    assert!(!removed);
    assert_eq!((rec.owner.node, rec.owner.epoch), (1, 1));

    // Node 2 has never seen it: it takes it over and re-issues the id.
    let f = now(n2.sessions.get(&[m.id], true, t)).unwrap();
    let re = f.reissued.expect("a takeover re-issues the id");
    assert_eq!(re.node, 2);
    assert_eq!(re.token, m.id.token, "the token travels; only node and slot change");
    assert_eq!(f.value.attributes, vec![("cart".to_string(), b"3 apples".to_vec())]);
    let (rec, _) = store.peek(&key).unwrap();
    assert_eq!((rec.owner.node, rec.owner.epoch), (2, 2));

    // Node 1's copy is stale now: its write is fenced and its copy dropped.
    let e = now(n1.sessions.set_attr(&[m.id], "cart", b"stale", t)).unwrap_err();
    assert!(matches!(e, SessionError::Moved { owner: 2 }), "{e:?}");
    let (rec, _) = store.peek(&key).unwrap();
    assert_eq!(rec.attributes, vec![("cart".to_string(), b"3 apples".to_vec())], "the fenced write never landed");

    // The re-issued id works on node 2 without the store; the old id on
    // node 1 takes the session back, with node 2's data.
    now(n2.sessions.set_attr(&[re], "cart", b"4 apples", t)).unwrap();
    let back = now(n1.sessions.get(&[m.id], false, t)).unwrap();
    assert_eq!(back.value.attributes, vec![("cart".to_string(), b"4 apples".to_vec())]);
    assert_eq!(back.reissued.map(|i| i.node), Some(1));
    assert_eq!(store.peek(&key).unwrap().0.owner.epoch, 3, "every takeover bumps the epoch");
}

#[test]
fn a_logout_on_a_stale_node_ends_the_session_at_its_owner() {
    let store = MemoryStore::new();
    let (n1, n2) = (node(1, &store, "serve-local", None), node(2, &store, "serve-local", None));
    let t = crate::clock::now_ms();
    let m = now(n1.sessions.create(t)).unwrap();
    let re = now(n2.sessions.get(&[m.id], false, t)).unwrap().reissued.unwrap();
    // Node 1 still holds a (stale) copy; its logout ends the session in the store.
    let ended = now(n1.sessions.invalidate(&[m.id], t)).unwrap();
    ended.store.unwrap();
    let key = store_key(m.id.context, &m.id.token);
    assert!(store.peek(&key).unwrap().1, "the store keeps a tombstone");
    assert_eq!(store.live(), 0);
    // Node 2's copy is fenced at its next write.
    let e = now(n2.sessions.set_attr(&[re], "x", b"y", t)).unwrap_err();
    assert!(matches!(e, SessionError::Moved { .. }), "{e:?}");
    // And no node can take it over again.
    let n3 = node(3, &store, "serve-local", None);
    assert!(now(n3.sessions.get(&[m.id], false, t)).unwrap_err().is_not_found());
}

#[test]
fn a_create_the_store_refuses_never_happened() {
    let store = MemoryStore::new();
    let hub = Arc::new(EventHub::new(64, vec![Arc::new(Quiet)], ContextNames::default(), None));
    let n1 = node(1, &store, "fail-closed", Some(hub.clone()));
    let t = crate::clock::now_ms();
    store.set_down(true);
    let e = now(n1.sessions.create(t)).unwrap_err();
    assert!(matches!(e, SessionError::Unavailable(_)), "{e:?}");
    assert_eq!(n1.sessions.live(), 0, "the refused session is gone from the region");
    assert_eq!(hub.published(), 0, "no event for a session no client saw");
    // Known down: the next create is refused up front.
    assert!(matches!(now(n1.sessions.create(t)), Err(SessionError::Unavailable(_))));
    store.set_down(false);
    // A store call that succeeds marks the store up again; then creates land
    // with exactly one event each.
    let stranger =
        crate::region::SessionId { node: 1, context: n1.sessions.tag(), slot: 0, token: [9; crate::region::TOKEN_LEN] };
    let _ = now(n1.sessions.get(&[stranger], false, t));
    let m = now(n1.sessions.create(t)).unwrap();
    assert_eq!(hub.published(), 1);
    assert!(store.peek(&store_key(m.id.context, &m.id.token)).is_some());
}

#[test]
fn a_store_that_lost_its_data_is_reseeded_and_a_stale_copy_never_wins() {
    use super::background::{Unrecorded, flush, reconcile};
    use super::shared::Word;
    let store = MemoryStore::new();
    let (n1, n2) = (node(1, &store, "serve-local", None), node(2, &store, "serve-local", None));
    let t = crate::clock::now_ms();
    let a = now(n1.sessions.create(t)).unwrap();
    now(n1.sessions.set_attr(&[a.id], "cart", b"3 apples", t)).unwrap();
    // b moves to node 2 (epoch 2), which changes it; node 1 keeps a stale
    // copy (no notice reaches it here).
    let b = now(n1.sessions.create(t)).unwrap();
    let b2 = now(n2.sessions.get(&[b.id], false, t)).unwrap().reissued.unwrap();
    now(n2.sessions.set_attr(&[b2], "k", b"new", t)).unwrap();
    let (s1, s2) = ([n1.sessions.clone()], [n2.sessions.clone()]);
    assert_eq!(now(reconcile(&n1.cluster, &s1)).unwrap(), 1, "node 1 drops its stale copy of b");
    // c moves the same way after that reconciliation, so node 1 keeps a
    // stale copy of it into the data loss.
    let b_stale = {
        let c = now(n1.sessions.create(t)).unwrap();
        let c2 = now(n2.sessions.get(&[c.id], false, t)).unwrap().reissued.unwrap();
        now(n2.sessions.set_attr(&[c2], "k", b"node 2's", t)).unwrap();
        (c, c2)
    };
    assert_eq!(now(reconcile(&n2.cluster, &s2)).unwrap(), 0);
    assert_eq!(n1.cluster.state().get(Word::Generation), n2.cluster.state().get(Word::Generation));
    assert_ne!(n1.cluster.state().get(Word::Generation), 0);

    // Whatever was pending reaches the store first.
    now(flush(&n1.cluster, &n1.sessions, &mut Unrecorded::new()));
    now(flush(&n2.cluster, &n2.sessions, &mut Unrecorded::new()));
    // The store loses everything (a Redis restarted without persistence).
    store.lose_data();
    assert_eq!(store.live(), 0);
    // Node 1 reconciles first, and re-seeds with its stale copy of c too.
    assert_eq!(now(reconcile(&n1.cluster, &s1)).unwrap(), 0, "nothing dropped: the copies are re-seeded");
    assert_eq!(n1.cluster.state().get(Word::StoreResets), 1);
    assert_eq!(n1.cluster.state().get(Word::Reseeded), 2, "a and the stale c");
    assert_eq!(now(flush(&n1.cluster, &n1.sessions, &mut Unrecorded::new())), 2);
    let key = |id: &crate::region::SessionId| store_key(id.context, &id.token);
    let (rec, _) = store.peek(&key(&a.id)).expect("a is back");
    assert_eq!(rec.attributes, vec![("cart".to_string(), b"3 apples".to_vec())]);
    assert_eq!(store.peek(&key(&b_stale.0.id)).unwrap().0.owner.node, 1, "the stale copy landed first");
    // Node 2 re-seeds its newer copy of c (epoch 2), which replaces the stale one.
    now(reconcile(&n2.cluster, &s2)).unwrap();
    assert_eq!(n2.cluster.state().get(Word::StoreResets), 1);
    now(flush(&n2.cluster, &n2.sessions, &mut Unrecorded::new()));
    let (rec, _) = store.peek(&key(&b_stale.1)).unwrap();
    assert_eq!((rec.owner.node, rec.owner.epoch), (2, 2));
    assert_eq!(rec.attributes, vec![("k".to_string(), b"node 2's".to_vec())]);
    // The stale copy is fenced at its next write; the epoch never went back.
    let e = now(n1.sessions.set_attr(&[b_stale.0.id], "k", b"stale", t)).unwrap_err();
    assert!(matches!(e, SessionError::Moved { .. }), "{e:?}");
    // A later check finds the new generation unchanged: no second re-seed.
    assert_eq!(now(reconcile(&n1.cluster, &s1)).unwrap(), 0);
    assert_eq!(n1.cluster.state().get(Word::StoreResets), 1);
}

#[test]
fn a_stale_rotation_after_another_nodes_rotation_never_forks_the_session() {
    let store = MemoryStore::new();
    let (n1, n2) = (node(1, &store, "serve-local", None), node(2, &store, "serve-local", None));
    let t = crate::clock::now_ms();
    let m = now(n1.sessions.create(t)).unwrap();
    // Node 2 takes it over and rotates it; node 1 hears nothing.
    let re = now(n2.sessions.get(&[m.id], false, t)).unwrap().reissued.unwrap();
    let b = now(n2.sessions.rotate(&[re], t)).unwrap().value.id;
    assert_eq!(store.live(), 1);
    // Node 1 rotates its stale copy: the old key is a tombstone of node 2's
    // rotation, so the rotation is refused and no second token goes live.
    let e = now(n1.sessions.rotate(&[m.id], t)).unwrap_err();
    assert!(matches!(e, SessionError::Moved { .. }) || e.is_not_found(), "{e:?}");
    assert_eq!(store.live(), 1, "one live token: node 2's rotation");
    let key = store_key(b.context, &b.token);
    assert!(!store.peek(&key).unwrap().1, "node 2's rotated session lives");
    // The same owner's retry of its own retire succeeds (a save that failed
    // after the old key went), and a logout's tombstone refuses it.
    use crate::store::Owner;
    let c = now(n2.sessions.create(t)).unwrap();
    let ck = store_key(c.id.context, &c.id.token);
    let own = store.peek(&ck).unwrap().0.owner;
    now(store.retire(&ck, own)).unwrap();
    now(store.retire(&ck, own)).unwrap();
    let other = Owner { node: 3, ..own };
    assert!(now(store.retire(&ck, other)).is_err(), "another owner's retry");
    let d = now(n2.sessions.create(t)).unwrap();
    let dk = store_key(d.id.context, &d.id.token);
    let own = store.peek(&dk).unwrap().0.owner;
    now(store.end(&dk, t)).unwrap();
    assert!(now(store.retire(&dk, own)).is_err(), "a logout's tombstone refuses a rotation");
}

#[test]
fn a_takeover_from_a_sibling_worker_drops_the_siblings_copy() {
    let store = MemoryStore::new();
    let (n1, n2) = (node(1, &store, "fail-closed", None), node(2, &store, "fail-closed", None));
    let t = crate::clock::now_ms();
    let m = now(n1.sessions.create(t)).unwrap();
    let a = now(n2.sessions.get(&[m.id], false, t)).unwrap().reissued.unwrap();
    assert_eq!(n2.sessions.live(), 1);
    // A sibling worker looks before this copy's owner entry is written (the
    // race of two workers taking the same session over at once).
    n2.cluster.owners(a.context).unwrap().set(a.slot, 0, 0, 0, 0);
    let b = now(n2.sessions.get(&[m.id], false, t)).unwrap().reissued.unwrap();
    assert_ne!(a.slot, b.slot, "the sibling adopted it into a slot of its own");
    assert_eq!(n2.sessions.live(), 1, "the first copy is dropped, not left serving the old epoch");
    let (rec, _) = store.peek(&store_key(m.id.context, &m.id.token)).unwrap();
    assert_eq!((rec.owner.node, rec.owner.slot), (2, b.slot));
}
