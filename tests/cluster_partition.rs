//! The cluster under an asymmetric partition (issue 18): one node cut from
//! the store, not from its clients, while another node reaches it. Under
//! `serve-local` the cut node acknowledges writes it cannot store; those
//! that another node's takeover overrides are lost, by design, and each
//! is detected at the flush: counted in `sessiond_store_lost_writes_total`,
//! logged as a conflict with both epochs. Writes nobody overrode are
//! flushed and not counted. Each scenario for PostgreSQL and for Redis.
//!
//! Needs the servers `bash tools/test` starts (SESSIOND_TEST_PG,
//! SESSIOND_TEST_REDIS); without them each test fails naming that command.

mod common;

use std::time::Duration;

use common::cluster::{Kind, Store, metric, node, node_direct, reissued, wait_until};
use common::{Server, request};
use serde_json::json;

fn patch(s: &Server, id: &str, body: &serde_json::Value) -> common::Resp {
    let b = body.to_string();
    request("PATCH", &s.url(&format!("/v1/sessions/{id}")), &[], Some(b.as_bytes()))
}

fn create(s: &Server, body: &serde_json::Value) -> String {
    let b = body.to_string();
    let r = request("POST", &s.url("/v1/sessions"), &[], Some(b.as_bytes()));
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["id"].as_str().unwrap().to_string()
}

fn lost_writes_are_counted(kind: Kind) {
    let store = Store::new(kind, true);
    let proxy = store.proxy.as_ref().unwrap();
    let n1 = node(&store, 1, &["cluster.store_timeout=0.5", "cluster.when_store_down=serve-local"]);
    let n2 = node_direct(&store, 2, &[]);
    let taken = create(&n1, &json!({"attributes": {"v": "0"}}));
    let kept = create(&n1, &json!({"attributes": {"v": "0"}}));
    proxy.down();
    // Node 2 takes one session over and writes to it.
    let r = request("GET", &n2.url(&format!("/v1/sessions/{taken}")), &[], None);
    assert_eq!(r.status, 200, "node 2 takes it over: {}", r.text());
    let taken2 = reissued(&r).expect("re-issued by node 2");
    assert_eq!(patch(&n2, &taken2, &json!({"attributes": {"v": "n2"}})).status, 204);
    // Node 1, cut off, acknowledges writes to both (serve-local).
    for id in [&taken, &kept] {
        let r = patch(&n1, id, &json!({"attributes": {"v": "n1"}}));
        assert_eq!(r.status, 204, "serve-local acknowledges: {}", r.text());
    }
    assert_eq!(metric(&n1, "sessiond_store_lost_writes_total"), 0, "nothing found lost yet");
    proxy.up();
    wait_until("node 1 flushed", Duration::from_secs(20), || metric(&n1, "sessiond_store_pending_changes") == 0);
    assert_eq!(metric(&n1, "sessiond_store_lost_writes_total"), 1, "exactly the overridden session is counted");
    let log = n1.log();
    assert!(log.contains("conflict: session") && log.contains("node 2 took it over"), "{log}");
    // Node 2's write stands; node 1's write to the other session landed.
    let r = request("GET", &n2.url(&format!("/v1/sessions/{taken2}")), &[], None);
    assert_eq!(r.json()["attributes"]["v"], "n2", "{}", r.text());
    let r = request("GET", &n2.url(&format!("/v1/sessions/{kept}")), &[], None);
    assert_eq!(r.status, 200, "{}", r.text());
    let kept_now = reissued(&r).unwrap_or_else(|| kept.clone());
    let r = request("GET", &n2.url(&format!("/v1/sessions/{kept_now}")), &[], None);
    assert_eq!(r.json()["attributes"]["v"], "n1", "the write nobody overrode was flushed: {}", r.text());
    assert_eq!(metric(&n2, "sessiond_store_lost_writes_total"), 0);
}

#[test]
fn pg_lost_writes_are_counted() {
    lost_writes_are_counted(Kind::Pg);
}

#[test]
fn redis_lost_writes_are_counted() {
    lost_writes_are_counted(Kind::Redis);
}
