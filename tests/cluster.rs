//! Cluster mode against real stores: two and three nodes (separate data
//! dirs, different `node_id`) on one PostgreSQL database or one Redis
//! database, each test with its own. Every scenario runs for both stores.
//!
//! Needs the servers `bash tools/test` starts (SESSIOND_TEST_PG,
//! SESSIOND_TEST_REDIS); without them each test fails naming that command.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::cluster::{Kind, Store, metric, node, node_in, node_of, reissued, wait_until};
use common::{Server, request};

fn put(s: &Server, id: &str, name: &str, v: &str) -> common::Resp {
    request("PUT", &s.url(&format!("/v1/sessions/{id}/attributes/{name}")), &[], Some(v.as_bytes()))
}

fn attr(s: &Server, id: &str, name: &str) -> common::Resp {
    request("GET", &s.url(&format!("/v1/sessions/{id}/attributes/{name}")), &[], None)
}

/// Create on node 1, read and write on node 2 (takeover, re-issued id),
/// the old id still works, node 1's late write with the old id is refused,
/// a third node takes it over next, and an invalidation reaches the store.
fn takeover_and_reissue(kind: Kind) {
    let store = Store::new(kind, false);
    let n1 = node(&store, 1, &[]);
    let n2 = node(&store, 2, &[]);
    let n3 = node(&store, 3, &[]);
    let id = common::create(&n1);
    assert_eq!(node_of(&id), 1);
    assert_eq!(put(&n1, &id, "user", "ann").status, 204);
    assert_eq!(store.sessions(), 1, "write-through: the store holds the session before the answer");

    // Node 2 has never seen it: it loads, takes over and re-issues.
    let r = attr(&n2, &id, "user");
    assert_eq!((r.status, r.text().as_str()), (200, "ann"), "raw read on node 2");
    let id2 = reissued(&r).expect("a raw attribute read that took the session over re-issues the id in Set-Cookie");
    assert_eq!(node_of(&id2), 2);
    assert_eq!(id2[12..], id[12..], "same secret token, new node and slot");
    assert_ne!(id2, id);
    assert_eq!(put(&n2, &id2, "user", "bob").status, 204);

    // The old id still finds the session through the store, on node 2.
    let r = request("GET", &n2.url(&format!("/v1/sessions/{id}")), &[], None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["id"], id2.as_str(), "the JSON carries the re-issued id");
    assert_eq!(r.json()["attributes"]["user"], "bob");
    assert_eq!(reissued(&r).as_deref(), Some(id2.as_str()));

    // Node 1 heard of the takeover and dropped its copy; with the old id
    // it takes the session back from the store, with node 2's write.
    wait_until("node 1 dropped its copy", Duration::from_secs(5), || metric(&n1, "sessiond_store_dropped_total") >= 1);
    let r = attr(&n1, &id, "user");
    assert_eq!((r.status, r.text().as_str()), (200, "bob"), "node 1 must serve node 2's write, not its old copy");
    let id1b = reissued(&r).expect("re-issued on node 1");
    assert_eq!(node_of(&id1b), 1);
    assert_eq!(put(&n1, &id1b, "user", "carl").status, 204);

    // A third node takes it over from node 1.
    let r = request("PATCH", &n3.url(&format!("/v1/sessions/{id2}")), &[], Some(br#"{"attributes":{"cart":"3"}}"#));
    assert_eq!(r.status, 204, "{}", r.text());
    let id3 = reissued(&r).expect("PATCH re-issues too");
    assert_eq!(node_of(&id3), 3);
    let r = request("GET", &n3.url(&format!("/v1/sessions/{id3}")), &[], None);
    assert_eq!(r.json()["attributes"], serde_json::json!({"user": "carl", "cart": "3"}));
    assert!(metric(&n3, "sessiond_store_takeovers_total") >= 1);

    // The nodes it moved away from dropped their copies when they heard of
    // the takeovers.
    wait_until("node 2 dropped its copy", Duration::from_secs(5), || metric(&n2, "sessiond_store_dropped_total") >= 1);
    wait_until("node 1 dropped its copy", Duration::from_secs(5), || metric(&n1, "sessiond_store_dropped_total") >= 2);

    // Rotation on the owner: the old token stops working everywhere.
    let r = request("POST", &n3.url(&format!("/v1/sessions/{id3}/rotate")), &[], None);
    assert_eq!(r.status, 200, "{}", r.text());
    let rotated = r.json()["id"].as_str().unwrap().to_string();
    for s in [&n1, &n2] {
        assert_eq!(attr(s, &id2, "user").status, 404, "a rotated-away token must not come back through the store");
    }
    assert_eq!(attr(&n2, &rotated, "user").text(), "carl");

    // Invalidation on the new owner reaches the store; nobody finds it after.
    let owner_id = reissued(&attr(&n2, &rotated, "user")).unwrap_or(rotated.clone());
    assert_eq!(request("DELETE", &n2.url(&format!("/v1/sessions/{owner_id}")), &[], None).status, 204);
    assert_eq!(store.sessions(), 0);
    for s in [&n1, &n3] {
        assert_eq!(attr(s, &rotated, "user").status, 404);
    }
}

#[test]
fn pg_takeover_and_reissue() {
    takeover_and_reissue(Kind::Pg);
}

#[test]
fn redis_takeover_and_reissue() {
    takeover_and_reissue(Kind::Redis);
}

/// Reads on the owner send last access to the store at most once per
/// `save_period` per session, and never move it backwards.
fn last_access_is_coalesced(kind: Kind) {
    let store = Store::new(kind, false);
    let n1 = node(&store, 1, &["cluster.save_period=2"]);
    let ids: Vec<String> = (0..5).map(|_| common::create(&n1)).collect();
    let before = metric(&n1, "sessiond_store_touches_total");
    let t = std::time::Instant::now();
    let mut reads = 0;
    while t.elapsed() < Duration::from_millis(5200) {
        for id in &ids {
            assert_eq!(request("GET", &n1.url(&format!("/v1/sessions/{id}")), &[], None).status, 200);
            reads += 1;
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let touches = metric(&n1, "sessiond_store_touches_total") - before;
    // 5.2 s at one per 2 s: at most 3 per session (at 0, 2 and 4 s).
    assert!(touches <= 3 * ids.len() as u64, "{touches} touches for {reads} reads of {} sessions", ids.len());
    assert!(touches >= ids.len() as u64, "last access never reached the store ({touches} touches, {reads} reads)");
    // The store's last access is recent (coalesced, not lost).
    let r = attr(&node(&store, 2, &[]), &ids[0], "x");
    assert_eq!(r.status, 404, "attribute absent, session found: {}", r.text());
    assert_eq!(r.json()["error"], "attribute_not_found");
}

#[test]
fn pg_last_access_is_coalesced() {
    last_access_is_coalesced(Kind::Pg);
}

#[test]
fn redis_last_access_is_coalesced() {
    last_access_is_coalesced(Kind::Redis);
}

/// A webhook receiver keeping every body.
fn receiver() -> (String, Arc<Mutex<Vec<String>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    let port = common::gateway::serve_http(move |seen, _r, w| {
        g.lock().unwrap().push(String::from_utf8_lossy(&seen.body).into_owned());
        let _ = w.write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n");
    });
    (format!("http://127.0.0.1:{port}/hook"), got)
}

/// Exactly one node sweeps the store; kill it and another takes over; the
/// sessions of a node that died are swept with `expired` events.
fn elected_sweep(kind: Kind) {
    let store = Store::new(kind, false);
    let (url, got) = receiver();
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("hook.secret");
    std::fs::write(&secret, "whsec_dGVzdHNlY3JldHRlc3RzZWNyZXQ=").unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let ev_url = format!("events.url={url}");
    let ev_secret = format!("events.secret_file={}", secret.display());
    let extra = ["timeout=2", "reap_interval=1", "cluster.save_period=1", ev_url.as_str(), ev_secret.as_str()];
    let mut nodes: Vec<Server> = (1..=3).map(|n| node(&store, n, &extra)).collect();
    let leaders = |nodes: &[Server]| nodes.iter().filter(|s| metric(s, "sessiond_store_leader") == 1).count();
    wait_until("one leader", Duration::from_secs(10), || leaders(&nodes) == 1);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(leaders(&nodes), 1, "exactly one node sweeps");
    let lead = nodes.iter().position(|s| metric(s, "sessiond_store_leader") == 1).unwrap();

    // A session on the leader; then the leader's whole node dies.
    let id = common::create(&nodes[lead]);
    assert_eq!(store.sessions(), 1);
    let victim = nodes.remove(lead);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(victim.pid()), nix::sys::signal::Signal::SIGKILL).unwrap();
    drop(victim);
    wait_until("another node leads", Duration::from_secs(15), || leaders(&nodes) == 1);

    // Its session expires (timeout 2 s; sweep grace (reap_interval + 2 × save_period) s + 5 s = 8 s) and is
    // swept by the new leader, which reports it.
    wait_until("the dead node's session swept", Duration::from_secs(30), || store.sessions() == 0);
    let swept: u64 = nodes.iter().map(|s| metric(s, "sessiond_store_swept_total")).sum();
    assert_eq!(swept, 1, "one session swept, by one node");
    wait_until("an expired event", Duration::from_secs(10), || {
        got.lock().unwrap().iter().any(|b| b.contains("\"session.expired\""))
    });
    let bodies = got.lock().unwrap().join("\n");
    assert!(!bodies.contains(&id), "events never carry the id");
    assert_eq!(nodes.iter().map(|s| metric(s, "sessiond_store_leader")).sum::<u64>(), 1);
}

#[test]
fn pg_elected_sweep() {
    elected_sweep(Kind::Pg);
}

#[test]
fn redis_elected_sweep() {
    elected_sweep(Kind::Redis);
}

/// Many takeovers of one session racing on two nodes: every write is
/// either acknowledged and kept, or refused (409); none is lost.
fn racing_takeovers(kind: Kind) {
    let store = Store::new(kind, false);
    let n1 = node(&store, 1, &[]);
    let n2 = node(&store, 2, &[]);
    let n3 = node(&store, 3, &[]);
    let reader = node(&store, 4, &[]);
    for round in 0..20 {
        let id = common::create(&n1);
        assert_eq!(put(&n1, &id, "v", "0").status, 204);
        let (a, b) = std::thread::scope(|sc| {
            let a = sc.spawn(|| put(&n2, &id, "v", "2").status);
            let b = sc.spawn(|| put(&n3, &id, "v", "3").status);
            (a.join().unwrap(), b.join().unwrap())
        });
        for st in [a, b] {
            assert!(st == 204 || st == 409, "round {round}: status {st}");
        }
        assert!(a == 204 || b == 204, "round {round}: nobody won");
        // What a node that never held it reads is an acknowledged write.
        let fresh = attr(&reader, &id, "v").text();
        let acked: Vec<&str> = [(a, "2"), (b, "3")].iter().filter(|(s, _)| *s == 204).map(|(_, v)| *v).collect();
        assert!(acked.contains(&fresh.as_str()), "round {round}: read {fresh:?}, acknowledged {acked:?}");
        if acked.len() == 1 {
            // The loser's value must never appear.
            assert_ne!(fresh, if a == 204 { "3" } else { "2" });
        }
    }
}

#[test]
fn pg_racing_takeovers() {
    racing_takeovers(Kind::Pg);
}

#[test]
fn redis_racing_takeovers() {
    racing_takeovers(Kind::Redis);
}

/// A node restarted after its sessions were taken over serves none of its
/// stale copies.
fn restarted_node_drops_stale_copies(kind: Kind) {
    let store = Store::new(kind, false);
    let dir = tempfile::tempdir().unwrap();
    let d1 = dir.path().join("n1");
    let mut n1 = node_in(&store, 1, &[], Some(&d1));
    let n2 = node(&store, 2, &[]);
    let ids: Vec<String> = (0..3).map(|_| common::create(&n1)).collect();
    for id in &ids {
        assert_eq!(put(&n1, id, "v", "old").status, 204);
    }
    assert_eq!(n1.stop(), Some(0));
    // Node 2 takes two of them over and changes them.
    for id in &ids[..2] {
        let r = put(&n2, id, "v", "new");
        assert_eq!(r.status, 204, "{}", r.text());
    }
    let n1 = node_in(&store, 1, &[], Some(&d1));
    n1.wait_log("dropped 2 stale copies", Duration::from_secs(10));
    for id in &ids[..2] {
        let r = attr(&n1, id, "v");
        assert_eq!((r.status, r.text().as_str()), (200, "new"), "node 1 must not serve its stale copy");
        assert_eq!(node_of(&reissued(&r).expect("taken back, re-issued")), 1);
    }
    let r = attr(&n1, &ids[2], "v");
    assert_eq!((r.status, r.text().as_str()), (200, "old"));
    assert!(reissued(&r).is_none(), "its own untouched session is served locally, id unchanged");
}

#[test]
fn pg_restarted_node_drops_stale_copies() {
    restarted_node_drops_stale_copies(Kind::Pg);
}

#[test]
fn redis_restarted_node_drops_stale_copies() {
    restarted_node_drops_stale_copies(Kind::Redis);
}

/// The store goes down under load. `serve-local`: no 5xx for owned
/// sessions, a takeover answers 503 (never 404, never a new session), and
/// every change is flushed when the store returns. `fail-closed`: changes
/// answer 503.
fn store_down(kind: Kind) {
    let store = Store::new(kind, true);
    let proxy = store.proxy.as_ref().unwrap();
    let n1 = node(&store, 1, &["cluster.store_timeout=0.5"]);
    let n2 = node(&store, 2, &["cluster.store_timeout=0.5"]);
    let nf = node(&store, 3, &["cluster.store_timeout=0.5", "cluster.when_store_down=fail-closed"]);
    let ids: Vec<String> = (0..8).map(|_| common::create(&n1)).collect();
    let fid = common::create(&nf);
    proxy.down();

    // Load on the owner while the store is away.
    let mut last = std::collections::HashMap::new();
    for round in 0..25 {
        for id in &ids {
            let v = format!("{round}");
            let r = put(&n1, id, "v", &v);
            assert_eq!(r.status, 204, "serve-local write during the outage: {}", r.text());
            last.insert(id.clone(), v);
            let r = attr(&n1, id, "v");
            assert_eq!(r.status, 200, "serve-local read during the outage: {}", r.text());
        }
    }
    let h = common::get(&n1.url("/healthz")).json();
    assert_eq!(h["status"], "degraded", "{h}");
    assert!(metric(&n1, "sessiond_store_pending_changes") >= ids.len() as u64);
    assert_eq!(metric(&n1, "sessiond_store_up"), 0);

    // A takeover is impossible: 503, never 404 or a fresh session.
    let r = attr(&n2, &ids[0], "v");
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["error"], "store_unavailable");
    assert!(reissued(&r).is_none());
    let r = request("POST", &n2.url("/v1/session"), &[("Cookie", &format!("SESSIONID={}", ids[0]))], None);
    assert_eq!(r.status, 503, "POST /v1/session must not mint a new session for a known id: {}", r.text());

    // fail-closed: the first change finds the store gone, later ones are refused up front.
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(put(&nf, &fid, "v", "x").status);
    }
    assert!(statuses.iter().all(|s| *s == 503), "fail-closed writes: {statuses:?}");
    assert_eq!(common::get(&nf.url("/healthz")).json()["status"], "degraded");

    // A rotation during the outage: the old id must not come back through
    // the store once it returns.
    let r = request("POST", &n1.url(&format!("/v1/sessions/{}/rotate", ids[1])), &[], None);
    assert_eq!(r.status, 200, "serve-local rotation: {}", r.text());
    let rotated = r.json()["id"].as_str().unwrap().to_string();

    // The store returns: every change is flushed, in order, and nothing is lost.
    proxy.up();
    wait_until("pending changes flushed", Duration::from_secs(20), || {
        metric(&n1, "sessiond_store_pending_changes") == 0
    });
    assert_eq!(common::get(&n1.url("/healthz")).json()["status"], "ok");
    for id in &ids {
        if *id == ids[1] {
            continue;
        }
        let r = attr(&n2, id, "v");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.text(), last[id], "the last change made during the outage reached the store");
    }
    let r = attr(&n2, &ids[1], "v");
    assert_eq!(r.status, 404, "the id rotated away during the outage came back: {}", r.text());
    let r = attr(&n2, &rotated, "v");
    assert_eq!((r.status, r.text()), (200, last[&ids[1]].clone()), "the rotated session moved with its data");
}

/// A logout (DELETE) on a node whose copy is stale (it has not heard of
/// the takeover yet) still ends the session on its owner and in the store.
fn stale_logout_ends_the_session(kind: Kind) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let store = Store::new(kind, false);
    let n1 = node(&store, 1, &[]);
    let n2 = node(&store, 2, &[]);
    let id = common::create(&n1);
    assert_eq!(put(&n1, &id, "user", "ann").status, 204);
    // Node 1's reaper (which hears takeover notices) is paused.
    let reaper = n1.children("sessiond: reaper");
    assert_eq!(reaper.len(), 1);
    kill(Pid::from_raw(reaper[0]), Signal::SIGSTOP).unwrap();
    let r = attr(&n2, &id, "user");
    assert_eq!(r.status, 200);
    let id2 = reissued(&r).unwrap();
    // The logout lands on node 1, whose copy is stale.
    let r = request("DELETE", &n1.url(&format!("/v1/sessions/{id}")), &[], None);
    kill(Pid::from_raw(reaper[0]), Signal::SIGCONT).unwrap();
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(store.sessions(), 0, "the session is ended in the store");
    wait_until("node 2 dropped its copy", Duration::from_secs(5), || metric(&n2, "sessiond_store_dropped_total") >= 1);
    assert_eq!(attr(&n2, &id2, "user").status, 404, "the owner's copy is gone too");
    assert_eq!(attr(&n2, &id, "user").status, 404);
}

#[test]
fn pg_stale_logout_ends_the_session() {
    stale_logout_ends_the_session(Kind::Pg);
}

#[test]
fn redis_stale_logout_ends_the_session() {
    stale_logout_ends_the_session(Kind::Redis);
}

#[test]
fn pg_store_down() {
    store_down(Kind::Pg);
}

#[test]
fn redis_store_down() {
    store_down(Kind::Redis);
}

/// Start refuses node_id 0 in cluster mode and a schema newer than it knows.
#[test]
fn start_refuses_node_zero_and_newer_schema() {
    let store = Store::new(Kind::Pg, false);
    let tmp = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(common::sessiond_bin())
        .args(["--data-dir", tmp.path().to_str().unwrap(), "--set"])
        .arg(format!("cluster.store={}", store.url))
        .arg("--check-config")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("node_id") && err.contains("other than 0"), "{err}");

    let bad = std::process::Command::new(common::sessiond_bin())
        .args(["--data-dir", tmp.path().to_str().unwrap(), "--set", "node_id=1", "--set"])
        .arg("cluster.store=postgres://sessiond:hunter2@db1/sessions?sslmode=bogus")
        .arg("--check-config")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{err}");
    assert!(err.contains("cluster.store") && !err.contains("hunter2"), "{err}");

    // A newer schema: the node says so and does not touch the store.
    let n = node(&store, 1, &[]);
    drop(n);
    store.sql("UPDATE sessiond_meta SET value = '99' WHERE key = 'schema_version'");
    // It may stop before it ever answers /healthz: do not wait for that.
    let url = format!("cluster.store={}", store.url);
    let args = ["--set", "node_id=1", "--set", &url];
    let mut s = Server::start_with(common::Opts { args: &args, wait_ready: false, ..Default::default() });
    s.wait_log("schema is version 99; this sessiond understands up to 1", Duration::from_secs(10));
    assert_eq!(s.wait_exit(Duration::from_secs(20)), Some(1), "a node must not run against a newer schema");
}

/// The gateway in cluster mode: a user logged in through node 1's gateway
/// stays logged in through node 2's (takeover, re-issued cookie), node 2
/// forwards to the upstream, and a logout on node 2 ends the session in
/// the store.
fn gateway_login_moves_between_nodes(kind: Kind) {
    use common::gateway::{cookie_of, serve_http, start_gateway};
    let store = Store::new(kind, false);
    let upstream = serve_http(|seen, _r, w| {
        let body =
            format!("hello {}", seen.headers.iter().find(|(k, _)| k == "x-sessiond-user").map_or("", |(_, v)| v));
        let _ = write!(w, "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}", body.len());
    });
    let sets = |n: u32| {
        vec!["--set".to_string(), format!("node_id={n}"), "--set".to_string(), format!("cluster.store={}", store.url)]
    };
    // A session manager that answers each create after 400 ms (a slow login
    // must not race the reaper's flush) and records every notice.
    let notices: Arc<Mutex<Vec<serde_json::Value>>> = Default::default();
    let n2 = notices.clone();
    let manager = serve_http(move |seen, _r, w| {
        let v: serde_json::Value = serde_json::from_slice(&seen.body).unwrap_or(serde_json::Value::Null);
        let body = if v["type"] == "session.create" {
            std::thread::sleep(Duration::from_millis(400));
            r#"{"allow":true}"#.to_string()
        } else {
            String::new()
        };
        n2.lock().unwrap().push(v);
        let _ = write!(
            w,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
    });
    let manager_url = format!("http://127.0.0.1:{manager}/hook");
    let a1 = sets(1);
    let a2 = sets(2);
    let g1 = start_gateway(upstream, Some(&manager_url), "", "", &a1.iter().map(String::as_str).collect::<Vec<_>>());
    let g2 = start_gateway(upstream, Some(&manager_url), "", "", &a2.iter().map(String::as_str).collect::<Vec<_>>());
    for g in [&g1, &g2] {
        g.server.wait_log("reconciled this node's sessions", Duration::from_secs(20));
    }
    let r = request(
        "POST",
        &g1.url("/.sessiond/login"),
        &[("content-type", "application/json")],
        Some(br#"{"user": "alice", "password": "secret"}"#),
    );
    assert_eq!(r.status, 204, "login: {}", r.text());
    let c1 = cookie_of(&r);
    assert_eq!(store.sessions(), 1, "the login is in the store before the cookie is sent");

    // Node 1 is gone for this user; node 2 serves them without a new login.
    let r = request("GET", &g2.url("/app/page"), &[("cookie", &c1)], None);
    assert_eq!((r.status, r.text().as_str()), (200, "hello alice"), "node 2 forwards the logged-in user");
    let c2 = cookie_of(&r);
    let id2 = c2.split_once('=').unwrap().1.to_string();
    assert_eq!(node_of(&id2), 2, "re-issued for node 2: {c2}");
    let r = request("GET", &g2.url("/.sessiond/session"), &[("cookie", &c2)], None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["user"], "alice");
    // Node 1 dropped its copy on node 2's notice; its reaper must not tell
    // the session manager that the session expired (it moved).
    wait_until("node 1 dropped its copy", Duration::from_secs(5), || {
        metric(&g1.server, "sessiond_store_dropped_total") >= 1
    });
    std::thread::sleep(Duration::from_millis(2500));
    let destroys: Vec<_> = notices.lock().unwrap().iter().filter(|v| v["type"] == "session.destroy").cloned().collect();
    assert!(destroys.is_empty(), "a session that moved was reported ended: {destroys:?}");

    // Logout on node 2 ends it everywhere.
    let r = request("POST", &g2.url("/.sessiond/logout"), &[("cookie", &c2)], None);
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(store.sessions(), 0);
    let r = request("GET", &g1.url("/app/page"), &[("cookie", &c1)], None);
    assert_eq!(r.status, 401, "the old cookie on node 1 must not come back: {}", r.text());
}

#[test]
fn pg_gateway_login_moves_between_nodes() {
    gateway_login_moves_between_nodes(Kind::Pg);
}

#[test]
fn redis_gateway_login_moves_between_nodes() {
    gateway_login_moves_between_nodes(Kind::Redis);
}

/// A session whose worker died between its region write and recording it
/// as this node's (simulated: another process creates it in the region
/// directly) is claimed by the reaper's flush and reaches the store.
fn unrecorded_create_is_claimed_by_the_flush(kind: Kind) {
    let store = Store::new(kind, false);
    let n1 = node(&store, 1, &["cluster.store_timeout=0.5"]);
    let region = n1.data_dir.join("contexts/default/sessions.region");
    let r = sessiond::region::Region::attach(&region, Duration::from_secs(5)).unwrap();
    let m = r.create(sessiond::clock::now_ms()).unwrap();
    r.set_attr(&m.id, "user", b"ann", sessiond::clock::now_ms()).unwrap();
    drop(r);
    wait_until("the flush claimed and saved it", Duration::from_secs(15), || store.sessions() == 1);
    let n2 = node(&store, 2, &[]);
    let r = attr(&n2, &m.id.to_string(), "user");
    assert_eq!((r.status, r.text().as_str()), (200, "ann"), "another node reads it from the store");
    // Node 1 drops its copy on node 2's notice and clears the slot's mark.
    wait_until("node 1 has nothing pending", Duration::from_secs(10), || {
        metric(&n1, "sessiond_store_pending_changes") == 0
    });
}

#[test]
fn pg_unrecorded_create_is_claimed_by_the_flush() {
    unrecorded_create_is_claimed_by_the_flush(Kind::Pg);
}

#[test]
fn redis_unrecorded_create_is_claimed_by_the_flush() {
    unrecorded_create_is_claimed_by_the_flush(Kind::Redis);
}
