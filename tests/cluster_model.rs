//! The session model in cluster mode (issue 16), against real stores,
//! each scenario for PostgreSQL and for Redis: a version condition holds
//! across nodes (412 on a node whose tag is stale), a session's own
//! timeout holds in the store as in the region, and a logout is final
//! under the two faults `docs/cluster.md` once listed as gaps: a stale
//! logout during a partition, and a logged-out session's slot reused
//! before the store heard of the logout.
//!
//! Needs the servers `bash tools/test` starts (SESSIOND_TEST_PG,
//! SESSIOND_TEST_REDIS); without them each test fails naming that command.

mod common;

use std::time::Duration;

use common::cluster::{Kind, Store, metric, node, node_direct, reissued, wait_until};
use common::{Server, request};
use serde_json::json;

fn patch(s: &Server, id: &str, body: &serde_json::Value, headers: &[(&str, &str)]) -> common::Resp {
    let b = body.to_string();
    request("PATCH", &s.url(&format!("/v1/sessions/{id}")), headers, Some(b.as_bytes()))
}

fn peek(s: &Server, id: &str) -> common::Resp {
    request("GET", &s.url(&format!("/v1/sessions/{id}")), &[], None)
}

fn create(s: &Server, body: &serde_json::Value) -> (String, String) {
    let b = body.to_string();
    let r = request("POST", &s.url("/v1/sessions"), &[], Some(b.as_bytes()));
    assert_eq!(r.status, 201, "{}", r.text());
    (r.json()["id"].as_str().unwrap().to_string(), r.header("etag").unwrap().to_string())
}

/// 412 across two nodes, and own timeouts in the store.
fn conditions_and_timeouts_hold_across_nodes(kind: Kind) {
    let store = Store::new(kind, false);
    let set = ["sessions.timeout=4", "cluster.save_period=1"];
    let n1 = node(&store, 1, &set);
    let n2 = node(&store, 2, &set);
    let (id, tag1) = create(&n1, &json!({"attributes": {"a": "1"}}));
    // Node 2 changes it under the current tag (a takeover) ...
    let r = patch(&n2, &id, &json!({"attributes": {"a": "2"}}), &[("If-Match", &tag1)]);
    assert_eq!(r.status, 204, "{}", r.text());
    let tag2 = r.header("etag").unwrap().to_string();
    assert_ne!(tag1, tag2);
    // Node 1 hears of the takeover (its notice) and drops its copy; before
    // that, its own copy would answer a stale write 409 `session_moved`
    // (docs/cluster.md §9), not 412.
    wait_until("node 1 dropping its copy on the takeover notice", Duration::from_secs(10), || {
        metric(&n1, "sessiond_store_dropped_total") >= 1
    });
    // ... so node 1's client, still holding the first tag, gets 412 there.
    let r = patch(&n1, &id, &json!({"attributes": {"a": "3"}}), &[("If-Match", &tag1)]);
    assert_eq!(r.status, 412, "a stale tag on the other node: {}", r.text());
    let r = peek(&n1, &id);
    assert_eq!(r.json()["attributes"]["a"], "2", "nothing of the refused change landed");
    assert_eq!(r.header("etag"), Some(tag2.as_str()), "the version travelled with the session");
    let r = patch(&n1, &id, &json!({"attributes": {"a": "4"}}), &[("If-Match", &tag2)]);
    assert_eq!(r.status, 204, "the current tag works on the other node: {}", r.text());

    // A session's own timeout holds in the store: shorter and longer than
    // the context's 4 s, read from the node that did not create it. One
    // at or under save_period is refused: the store could expire it in use.
    let r = request("POST", &n1.url("/v1/sessions"), &[], Some(br#"{"timeout": 1}"#));
    assert_eq!((r.status, r.json()["error"].clone()), (400, json!("bad_timeout")), "{}", r.text());
    assert!(r.text().contains("cluster.save_period"), "{}", r.text());
    let (short, _) = create(&n1, &json!({"timeout": 2}));
    let (long, _) = create(&n1, &json!({"timeout": 60}));
    let (plain, _) = create(&n1, &json!({}));
    std::thread::sleep(Duration::from_millis(2600));
    assert_eq!(peek(&n2, &short).status, 404, "2 s in the store too");
    assert_eq!(peek(&n1, &short).status, 404);
    std::thread::sleep(Duration::from_millis(2000));
    assert_eq!(peek(&n2, &plain).status, 404, "the context's 4 s");
    let r = peek(&n2, &long);
    assert_eq!(r.status, 200, "60 s outlives the context's 4 s in the store: {}", r.text());
    assert_eq!(r.json()["timeout_override"], 60, "the override travelled with the takeover");
}

#[test]
fn pg_conditions_and_timeouts_hold_across_nodes() {
    conditions_and_timeouts_hold_across_nodes(Kind::Pg);
}

#[test]
fn redis_conditions_and_timeouts_hold_across_nodes() {
    conditions_and_timeouts_hold_across_nodes(Kind::Redis);
}

/// Node 1 is cut from the store (node 2 is not); node 2 takes the session
/// over; the logout lands on node 1, whose copy is stale, and is answered
/// (serve-local). When node 1 is back, its flush ends the session in the
/// store whoever owns it, and node 2 drops its copy.
fn a_stale_logout_during_a_partition_is_final(kind: Kind) {
    let store = Store::new(kind, true);
    let proxy = store.proxy.as_ref().unwrap();
    let n1 = node(&store, 1, &["cluster.store_timeout=0.5"]);
    let n2 = node_direct(&store, 2, &[]);
    let (id, _) = create(&n1, &json!({"attributes": {"user": "ann"}}));
    proxy.down();
    let r = peek(&n2, &id);
    assert_eq!(r.status, 200, "node 2 takes it over: {}", r.text());
    let id2 = reissued(&r).expect("re-issued by node 2");
    let r = request("DELETE", &n1.url(&format!("/v1/sessions/{id}")), &[], None);
    assert_eq!(r.status, 204, "serve-local answers the logout: {}", r.text());
    assert_eq!(peek(&n2, &id2).status, 200, "node 2 has not heard yet");
    proxy.up();
    wait_until("node 1 flushed the logout", Duration::from_secs(20), || {
        metric(&n1, "sessiond_store_pending_changes") == 0
    });
    wait_until("node 2 dropped its copy", Duration::from_secs(10), || peek(&n2, &id2).status == 404);
    assert_eq!(peek(&n2, &id).status, 404, "the old id is not taken over again");
    let r = peek(&n1, &id);
    assert_eq!(r.status, 404, "{}", r.text());
    let n3 = node_direct(&store, 3, &[]);
    assert_eq!(peek(&n3, &id).status, 404, "a fresh node cannot bring it back");
    assert_eq!(peek(&n3, &id2).status, 404);
}

#[test]
fn pg_a_stale_logout_during_a_partition_is_final() {
    a_stale_logout_during_a_partition_is_final(Kind::Pg);
}

#[test]
fn redis_a_stale_logout_during_a_partition_is_final() {
    a_stale_logout_during_a_partition_is_final(Kind::Redis);
}

/// A one-slot region: a logout during an outage, then a new session in the
/// same slot before the store returns. The store still ends the logged-out
/// session: no node takes it over afterwards.
fn a_logout_survives_the_reuse_of_its_slot(kind: Kind) {
    let store = Store::new(kind, true);
    let proxy = store.proxy.as_ref().unwrap();
    let one = ["cluster.store_timeout=0.5", "sessions.max_sessions=1", "sessions.max_locks=1"];
    let n1 = node(&store, 1, &one);
    let n2 = node_direct(&store, 2, &[]);
    let (gone, _) = create(&n1, &json!({"attributes": {"user": "ann"}}));
    proxy.down();
    assert_eq!(request("DELETE", &n1.url(&format!("/v1/sessions/{gone}")), &[], None).status, 204);
    let (next, _) = create(&n1, &json!({"attributes": {"user": "bob"}}));
    assert_eq!(common::cluster::node_of(&next), 1);
    proxy.up();
    wait_until("node 1 flushed", Duration::from_secs(20), || metric(&n1, "sessiond_store_pending_changes") == 0);
    assert_eq!(peek(&n2, &gone).status, 404, "the logged-out session stays ended");
    let r = peek(&n2, &next);
    assert_eq!((r.status, r.json()["attributes"]["user"].clone()), (200, json!("bob")), "the new one is stored");
    assert!(n1.log().contains("logged out while it was away"), "{}", n1.log());
}

#[test]
fn pg_a_logout_survives_the_reuse_of_its_slot() {
    a_logout_survives_the_reuse_of_its_slot(Kind::Pg);
}

#[test]
fn redis_a_logout_survives_the_reuse_of_its_slot() {
    a_logout_survives_the_reuse_of_its_slot(Kind::Redis);
}

fn listing(s: &Server, name: &str, limit: usize) -> Vec<serde_json::Value> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..50 {
        let path = match &cursor {
            Some(c) => format!("/v1/principals/{name}/sessions?limit={limit}&cursor={c}"),
            None => format!("/v1/principals/{name}/sessions?limit={limit}"),
        };
        let r = request("GET", &s.url(&path), &[], None);
        assert_eq!(r.status, 200, "{}", r.text());
        let j = r.json();
        all.extend(j["sessions"].as_array().unwrap().iter().cloned());
        match j["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return all,
        }
    }
    panic!("the listing of {name} did not end within 50 pages");
}

/// A principal's sessions on two nodes: each node lists all of them (its
/// own with ids, the other's by node only), the cap counts both nodes'
/// (evict-oldest ends the other node's session; refuse counts it), and
/// "log out everywhere" on one node ends the other's too, which drop
/// their copies at once; a fresh node cannot bring any back.
fn principals_span_the_nodes(kind: Kind) {
    let store = Store::new(kind, false);
    let cap = ["sessions.max_sessions_per_principal=3", "sessions.when_principal_full=evict-oldest"];
    let n1 = node(&store, 1, &cap);
    let n2 = node(&store, 2, &cap);
    let (a1, _) = create(&n1, &json!({"principal": "alice"}));
    std::thread::sleep(Duration::from_millis(20));
    let (a2, _) = create(&n1, &json!({"principal": "alice"}));
    let (a3, _) = create(&n2, &json!({"principal": "alice"}));
    let (b1, _) = create(&n2, &json!({"principal": "bob"}));
    for (s, own, other) in [(&n1, 1, 2), (&n2, 2, 1)] {
        for limit in [100, 1] {
            let l = listing(s, "alice", limit);
            assert_eq!(l.len(), 3, "node {own}, limit {limit}: {l:?}");
            let mine: Vec<&str> = l.iter().filter(|e| e["node"] == own).map(|e| e["id"].as_str().unwrap()).collect();
            let theirs: Vec<&serde_json::Value> = l.iter().filter(|e| e["node"] == other).collect();
            let want: Vec<&str> = if own == 1 { vec![a1.as_str(), a2.as_str()] } else { vec![a3.as_str()] };
            let mut mine_sorted = mine.clone();
            mine_sorted.sort();
            let mut want_sorted = want.clone();
            want_sorted.sort();
            assert_eq!(mine_sorted, want_sorted, "node {own} lists its own with ids: {l:?}");
            assert_eq!(theirs.len(), 3 - want.len(), "{l:?}");
            assert!(theirs.iter().all(|e| e["id"].is_null()), "no full id of another node's session: {l:?}");
            assert!(l.iter().all(|e| e["principal"] == "alice"), "{l:?}");
        }
    }
    // The cap counts both nodes: a fourth on node 2 evicts the least
    // recently used, node 1's a1, and node 1 drops it at once.
    let (a4, _) = create(&n2, &json!({"principal": "alice"}));
    wait_until("node 1 dropped the evicted a1", Duration::from_secs(10), || peek(&n1, &a1).status == 404);
    assert_eq!(listing(&n1, "alice", 100).len(), 3);
    for id in [&a2, &a3, &a4] {
        assert_eq!(peek(&n1, id).status, 200, "{id} lives");
    }
    // Refuse counts the other node's sessions too.
    let n3 = node(&store, 3, &["sessions.max_sessions_per_principal=3", "sessions.when_principal_full=refuse"]);
    let r = request("POST", &n3.url("/v1/sessions"), &[], Some(br#"{"principal": "alice"}"#));
    assert_eq!(r.status, 409, "alice holds 3 on nodes 1 and 2: {}", r.text());
    // Log out everywhere, from node 2.
    let r = request("DELETE", &n2.url("/v1/principals/alice/sessions"), &[], None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["invalidated"], 3, "{}", r.text());
    wait_until("node 1 dropped a2", Duration::from_secs(10), || peek(&n1, &a2).status == 404);
    for s in [&n1, &n2, &n3] {
        for id in [&a1, &a2, &a3, &a4] {
            assert_eq!(peek(s, id).status, 404, "{id} stays ended");
        }
        assert!(listing(s, "alice", 100).is_empty());
    }
    assert_eq!(peek(&n1, &b1).status, 200, "bob's session is not alice's");
    assert_eq!(listing(&n1, "bob", 100).len(), 1);
}

#[test]
fn pg_principals_span_the_nodes() {
    principals_span_the_nodes(Kind::Pg);
}

#[test]
fn redis_principals_span_the_nodes() {
    principals_span_the_nodes(Kind::Redis);
}
