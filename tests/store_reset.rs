//! A Redis restarted without persistence, which loses every session, every
//! tombstone and every epoch (issue 18, cluster.md §6.12): two nodes on a
//! Redis this test runs itself (its own unix socket, `--save ''
//! --appendonly no`), killed with SIGKILL and started again empty.
//!
//! What must hold afterwards: both nodes see the store's new generation and
//! re-seed it from their regions (`sessiond_store_resets_total`); a session
//! is served again by the other node with the value it had, a session that
//! had moved keeps its newest owner and value, and a logout made before
//! the loss stays final.
//!
//! Needs `redis-server` (SESSIOND_TEST_REDIS_SERVER, which `bash tools/test`
//! sets); without it the test fails naming that command.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::cluster::{metric, node_at, reissued, wait_until};
use common::{Server, request};

fn redis_server() -> PathBuf {
    match std::env::var("SESSIOND_TEST_REDIS_SERVER") {
        Ok(v) if !v.is_empty() => PathBuf::from(v),
        _ => panic!(
            "SESSIOND_TEST_REDIS_SERVER is not set: this test restarts its own Redis. Run the suite with \
             `bash tools/test` (it installs redis-server when missing and sets it), or set it to the path of \
             redis-server"
        ),
    }
}

/// A Redis without persistence on `dir/redis.sock`, killed on drop.
struct Redis(Child);

impl Redis {
    fn start(dir: &Path) -> Redis {
        let sock = dir.join("redis.sock");
        let _ = std::fs::remove_file(&sock);
        let log = std::fs::File::create(dir.join("redis.log")).unwrap();
        let child = Command::new(redis_server())
            .args(["--port", "0", "--unixsocket"])
            .arg(&sock)
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("redis-server starts");
        wait_until("redis answering PING", Duration::from_secs(10), || cli(dir, &["PING"]) == "PONG");
        Redis(child)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn cli(dir: &Path, args: &[&str]) -> String {
    Command::new("redis-cli")
        .arg("-s")
        .arg(dir.join("redis.sock"))
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn put(s: &Server, id: &str, name: &str, v: &str) -> common::Resp {
    request("PUT", &s.url(&format!("/v1/sessions/{id}/attributes/{name}")), &[], Some(v.as_bytes()))
}

fn attr(s: &Server, id: &str, name: &str) -> common::Resp {
    request("GET", &s.url(&format!("/v1/sessions/{id}/attributes/{name}")), &[], None)
}

#[test]
fn a_redis_restarted_empty_is_reseeded_and_logouts_stay_final() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = Redis::start(dir.path());
    let url = format!("redis+unix://{}", dir.path().join("redis.sock").display());
    let extra = ["cluster.store_timeout=0.5"];
    let n1 = node_at(&url, 1, &extra, None);
    let n2 = node_at(&url, 2, &extra, None);

    // a: lives on node 1. b: moves to node 2 and changes there. l: logged out.
    let a = common::create(&n1);
    assert_eq!(put(&n1, &a, "cart", "3 apples").status, 204);
    let b = common::create(&n1);
    assert_eq!(put(&n1, &b, "k", "node 1").status, 204);
    let r = put(&n2, &b, "k", "node 2");
    assert_eq!(r.status, 204, "{}", r.text());
    let b2 = reissued(&r).expect("the takeover re-issues b");
    let l = common::create(&n1);
    assert_eq!(put(&n1, &l, "user", "ann").status, 204);
    assert_eq!(request("DELETE", &n1.url(&format!("/v1/sessions/{l}")), &[], None).status, 204);
    let keys_before: usize = cli(dir.path(), &["DBSIZE"]).parse().unwrap();
    assert!(keys_before >= 3, "the store holds the sessions before the restart ({keys_before} keys)");

    // The restart that loses the data.
    drop(redis);
    redis = Redis::start(dir.path());
    assert_eq!(cli(dir.path(), &["DBSIZE"]), "0", "a restart without persistence starts empty");

    for n in [&n1, &n2] {
        wait_until("the node finds the store's new generation", Duration::from_secs(20), || {
            metric(n, "sessiond_store_resets_total") >= 1
        });
    }
    assert!(n1.log().contains("lost its data"), "node 1 logs the loss:\n{}", n1.log());
    // Each node re-seeded what it owns: a (node 1) and b (node 2).
    assert!(metric(&n1, "sessiond_store_reseeded_total") >= 1);
    assert!(metric(&n2, "sessiond_store_reseeded_total") >= 1);
    wait_until("both live sessions back in the store", Duration::from_secs(20), || {
        cli(dir.path(), &["--scan", "--pattern", "sd:{*"]).lines().count() >= 2
    });

    // a is served by node 2 with the value it had (a takeover from the
    // re-seeded record), b keeps node 2's value, l stays logged out.
    let r = attr(&n2, &a, "cart");
    assert_eq!((r.status, r.text().as_str()), (200, "3 apples"), "a after the loss, on node 2");
    let r = attr(&n2, &b2, "k");
    assert_eq!((r.status, r.text().as_str()), (200, "node 2"), "b after the loss");
    let r = attr(&n1, &b, "k");
    assert_eq!((r.status, r.text().as_str()), (200, "node 2"), "b through its old id on node 1");
    for n in [&n1, &n2] {
        assert_eq!(attr(n, &l, "user").status, 404, "a logout made before the loss stays final");
    }
    drop(redis);
}
