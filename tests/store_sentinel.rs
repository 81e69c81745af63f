//! Redis Sentinel: a real master, a replica and three sentinels on
//! 127.0.0.1 (ephemeral ports, `redis-server --sentinel` from
//! SESSIOND_TEST_REDIS_SERVER), two sessiond nodes on a
//! `redis+sentinel://` URL under `when_store_down = "fail-closed"`, and a
//! `SENTINEL FAILOVER` under write load. Every write that got a 2xx must
//! read back after the failover, and the nodes must serve again without a
//! restart.
//!
//! Needs SESSIOND_TEST_REDIS_SERVER (`bash tools/test` sets it); without
//! it the test fails naming that command.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::{node_at, wait_until};
use common::request;

fn redis_server() -> PathBuf {
    match std::env::var("SESSIOND_TEST_REDIS_SERVER") {
        Ok(v) if !v.is_empty() => PathBuf::from(v),
        _ => panic!(
            "SESSIOND_TEST_REDIS_SERVER is not set: this test runs its own Redis master, replica and sentinels. \
             Run the suite with `bash tools/test` (it installs redis-server when missing and sets it), or set it \
             to the path of redis-server"
        ),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A Redis process, killed on drop.
struct Proc {
    child: Child,
    port: u16,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(bin: &Path, dir: &Path, name: &str, args: &[String]) -> Proc {
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    let child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
    let port = args.iter().position(|a| a == "--port").map(|i| args[i + 1].parse().unwrap()).unwrap_or(0);
    Proc { child, port }
}

/// redis-cli against 127.0.0.1:`port`; its output lines.
fn cli(port: u16, args: &[&str]) -> Vec<String> {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli (package redis-tools; `bash tools/test` installs it)");
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

/// A field of `SENTINEL MASTER mymaster` (redis-cli prints name, value lines).
fn sentinel_field(port: u16, field: &str) -> Option<String> {
    let lines = cli(port, &["SENTINEL", "MASTER", "mymaster"]);
    lines.chunks(2).find(|kv| kv[0] == field).and_then(|kv| kv.get(1).cloned())
}

/// The master, its replica and three sentinels watching it.
struct Topology {
    master: Proc,
    replica: Proc,
    sentinels: Vec<Proc>,
    _dir: tempfile::TempDir,
}

impl Topology {
    fn start() -> Topology {
        let bin = redis_server();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let server = |name: &str, port: u16, extra: &[String]| {
            let sub = d.join(name);
            std::fs::create_dir(&sub).unwrap();
            let mut args: Vec<String> =
                ["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
            args.extend(["--dir".to_string(), sub.display().to_string()]);
            args.extend(extra.iter().cloned());
            spawn(&bin, d, name, &args)
        };
        let mp = free_port();
        let master = server("master", mp, &[]);
        let replica = server("replica", free_port(), &["--replicaof".into(), "127.0.0.1".into(), mp.to_string()]);
        let mut sentinels = Vec::new();
        for i in 0..3 {
            let port = free_port();
            let conf = d.join(format!("sentinel{i}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor mymaster 127.0.0.1 {mp} 2\n\
                     sentinel down-after-milliseconds mymaster 1000\nsentinel failover-timeout mymaster 10000\n",
                    d.display()
                ),
            )
            .unwrap();
            let args = vec![conf.display().to_string(), "--sentinel".to_string()];
            let mut p = spawn(&bin, d, &format!("sentinel{i}"), &args);
            p.port = port;
            sentinels.push(p);
        }
        let t = Topology { master, replica, sentinels, _dir: dir };
        wait_until("the replica in sync with the master", Duration::from_secs(20), || {
            cli(t.master.port, &["INFO", "replication"]).iter().any(|l| l.contains("state=online"))
        });
        for s in &t.sentinels {
            wait_until("every sentinel sees the replica and the other two", Duration::from_secs(30), || {
                sentinel_field(s.port, "num-other-sentinels").as_deref() == Some("2")
                    && sentinel_field(s.port, "num-slaves").as_deref() == Some("1")
            });
        }
        t
    }

    fn url(&self) -> String {
        let hosts: Vec<String> = self.sentinels.iter().map(|s| format!("127.0.0.1:{}", s.port)).collect();
        format!("redis+sentinel://{}/mymaster/0", hosts.join(","))
    }

    /// The port the sentinels name as the master.
    fn master_port(&self) -> Option<u16> {
        let a = cli(self.sentinels[0].port, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"]);
        a.get(1)?.parse().ok()
    }
}

/// What one writer saw.
#[derive(Default)]
struct Tally {
    /// The last value a PUT answered 2xx for.
    last_acked: Option<u64>,
    acked: u64,
    acked_after_failover: u64,
    refused: u64,
    /// When its last 2xx came.
    last_ack_at: Option<Instant>,
    /// The longest time between two of its 2xx answers (the outage it saw).
    max_gap: Duration,
    other: Vec<u16>,
}

#[test]
fn sentinel_failover_under_write_load_loses_no_acknowledged_write() {
    let topo = Topology::start();
    let url = topo.url();
    let opts = ["cluster.when_store_down=fail-closed", "cluster.store_timeout=1"];
    let mut n1 = node_at(&url, 1, &opts, None);
    let n2 = node_at(&url, 2, &opts, None);
    let pid1 = n1.pid();

    const WRITERS: usize = 6;
    let ids: Vec<String> = (0..WRITERS).map(|_| common::create(&n1)).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let failover_at: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let base = n1.url("");
    let served_again: Arc<Vec<AtomicU64>> = Arc::new((0..WRITERS).map(|_| AtomicU64::new(0)).collect());
    let mut handles = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let (id, stop, at, base) = (id.clone(), stop.clone(), failover_at.clone(), base.clone());
        let served_again = served_again.clone();
        handles.push(std::thread::spawn(move || {
            let mut t = Tally::default();
            let mut v = 0u64;
            while !stop.load(Ordering::Relaxed) {
                v += 1;
                let url = format!("{base}/v1/sessions/{id}/attributes/v");
                let r = request("PUT", &url, &[], Some(v.to_string().as_bytes()));
                let started = *at.lock().unwrap();
                match r.status {
                    200..=299 => {
                        t.acked += 1;
                        t.last_acked = Some(v);
                        let now = Instant::now();
                        if let Some(prev) = t.last_ack_at {
                            t.max_gap = t.max_gap.max(now - prev);
                        }
                        t.last_ack_at = Some(now);
                        if started.is_some() {
                            t.acked_after_failover += 1;
                            served_again[i].fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    503 => {
                        t.refused += 1;
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    s => {
                        t.other.push(s);
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            }
            t
        }));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let old = topo.master_port();
    *failover_at.lock().unwrap() = Some(Instant::now());
    let t0 = Instant::now();
    let ok = cli(topo.sentinels[0].port, &["SENTINEL", "FAILOVER", "mymaster"]);
    assert_eq!(ok.first().map(String::as_str), Some("OK"), "SENTINEL FAILOVER: {ok:?}");
    wait_until("the sentinels name the replica as master", Duration::from_secs(30), || {
        topo.master_port() == Some(topo.replica.port)
    });
    let promoted = t0.elapsed();
    // Load goes on until the old master replicates the new one and every
    // writer had writes acknowledged since the failover.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let synced = cli(topo.replica.port, &["INFO", "replication"]).iter().any(|l| l.contains("state=online"));
        if (synced && served_again.iter().all(|n| n.load(Ordering::Relaxed) >= 10)) || Instant::now() > deadline {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let tallies: Vec<Tally> = handles.into_iter().map(|h| h.join().unwrap()).collect();

    // Every acknowledged write reads back, on the other node (which loads
    // the session from the new master).
    let mut lost = Vec::new();
    for (id, t) in ids.iter().zip(&tallies) {
        let get = || request("GET", &n2.url(&format!("/v1/sessions/{id}/attributes/v")), &[], None);
        let mut r = get();
        let until = Instant::now() + Duration::from_secs(10);
        while r.status == 503 && Instant::now() < until {
            // Unavailable is not lost: the takeover's write waits for a replica.
            std::thread::sleep(Duration::from_millis(200));
            r = get();
        }
        assert_eq!(r.status, 200, "node 2 reads session {id} after the failover: {}\nlog:\n{}", r.text(), n2.log());
        let got: u64 = r.text().parse().unwrap();
        if let Some(want) = t.last_acked
            && got < want
        {
            lost.push((id.clone(), want, got));
        }
    }
    let acked: u64 = tallies.iter().map(|t| t.acked).sum();
    let after: u64 = tallies.iter().map(|t| t.acked_after_failover).sum();
    let refused: u64 = tallies.iter().map(|t| t.refused).sum();
    let gap = tallies.iter().map(|t| t.max_gap).max().unwrap_or_default();
    println!(
        "sentinel failover: {acked} writes acknowledged ({after} after SENTINEL FAILOVER), {refused} answered 503, \
         {} lost; sentinels named the new master after {promoted:?}; the longest a writer went \
         without a 2xx was {gap:?} (old master port {old:?}, new {:?})",
        lost.len(),
        topo.master_port()
    );
    assert!(lost.is_empty(), "acknowledged writes lost (session, last acked, read back): {lost:?}");
    for t in &tallies {
        assert!(t.other.is_empty(), "fail-closed answers 2xx or 503 only; also saw {:?}", t.other);
        assert!(
            t.acked_after_failover > 0,
            "a writer got no write acknowledged after the failover; log:\n{}",
            n1.log()
        );
    }
    assert_eq!(n1.pid(), pid1, "node 1 was not restarted");
    assert!(n1.child.try_wait().unwrap().is_none(), "node 1 still runs");
    // The writes after the failover are on the new master.
    assert_eq!(topo.master_port(), Some(topo.replica.port));
    let keys = cli(topo.replica.port, &["DBSIZE"]);
    assert!(keys.first().and_then(|k| k.parse::<u64>().ok()).unwrap_or(0) >= WRITERS as u64, "{keys:?}");
}
