//! Redis Sentinel: a real master, replicas and three sentinels on
//! 127.0.0.1 (ephemeral ports, `redis-server --sentinel` from
//! SESSIOND_TEST_REDIS_SERVER), two sessiond nodes on a
//! `redis+sentinel://` URL under `when_store_down = "fail-closed"`, and a
//! failover under write load: a `SENTINEL FAILOVER`, and a master cut off
//! from its replicas and then killed. Every write that got a 2xx must read
//! back after the failover, and the nodes must serve again without a
//! restart.
//!
//! Needs SESSIOND_TEST_REDIS_SERVER (`bash tools/test` sets it); without
//! it the test fails naming that command.

mod common;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::{node_at, wait_until};
use common::{Server, request};

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

/// A TCP proxy in front of the master for the replicas' links: cut, it
/// closes what it carries and refuses new connections (a partition between
/// the master and its replicas; the nodes and sentinels still reach it).
struct Cut {
    port: u16,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Cut {
    fn start(target: u16) -> Cut {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
        let (u, c) = (up.clone(), conns.clone());
        std::thread::spawn(move || {
            for client in l.incoming() {
                let Ok(client) = client else { continue };
                if !u.load(Ordering::SeqCst) {
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else { continue };
                c.lock().unwrap().extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                for (mut a, mut b) in [(client.try_clone().unwrap(), server.try_clone().unwrap()), (server, client)] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut a, &mut b);
                        let _ = b.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Cut { port, up, conns }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// The master, its replicas and three sentinels watching it.
struct Topology {
    master: Proc,
    replicas: Vec<Proc>,
    sentinels: Vec<Proc>,
    /// Between the replicas and the master, when asked for.
    link: Option<Cut>,
    _dir: tempfile::TempDir,
}

impl Topology {
    fn start(replicas: usize, cuttable: bool) -> Topology {
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
        let link = cuttable.then(|| Cut::start(mp));
        let upstream = link.as_ref().map_or(mp, |c| c.port);
        let replicas: Vec<Proc> = (0..replicas)
            .map(|i| {
                server(
                    &format!("replica{i}"),
                    free_port(),
                    &["--replicaof".into(), "127.0.0.1".into(), upstream.to_string()],
                )
            })
            .collect();
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
        let t = Topology { master, replicas, sentinels, link, _dir: dir };
        let n = t.replicas.len();
        wait_until("the replicas in sync with the master", Duration::from_secs(20), || {
            cli(t.master.port, &["INFO", "replication"]).iter().filter(|l| l.contains("state=online")).count() == n
        });
        for s in &t.sentinels {
            wait_until("every sentinel sees the replicas and the other two", Duration::from_secs(30), || {
                sentinel_field(s.port, "num-other-sentinels").as_deref() == Some("2")
                    && sentinel_field(s.port, "num-slaves") == Some(n.to_string())
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
    /// Each 2xx: when, and the value written.
    acks: Vec<(Instant, u64)>,
    refused: u64,
    other: Vec<u16>,
}

/// A new session on `node`; a 503 (no replica confirmed it yet) is tried
/// again for up to 60 s.
fn create(node: &Server) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = request("POST", &node.url("/v1/sessions"), &[], None);
        if r.status == 201 {
            return r.json()["id"].as_str().unwrap().to_string();
        }
        assert!(
            r.status == 503 && Instant::now() < deadline,
            "create: {} {}\nlog:\n{}",
            r.status,
            r.text(),
            node.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Writers, one per session, each `PUT`ting 1, 2, 3… to its own session.
struct Load {
    ids: Vec<String>,
    stop: Arc<AtomicBool>,
    /// Acknowledged writes so far, per writer.
    acked: Arc<Vec<AtomicU64>>,
    handles: Vec<std::thread::JoinHandle<Tally>>,
}

impl Load {
    fn start(node: &Server, writers: usize) -> Load {
        let ids: Vec<String> = (0..writers).map(|_| create(node)).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let acked: Arc<Vec<AtomicU64>> = Arc::new((0..writers).map(|_| AtomicU64::new(0)).collect());
        let base = node.url("");
        let handles = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let (url, stop, acked) = (format!("{base}/v1/sessions/{id}/attributes/v"), stop.clone(), acked.clone());
                std::thread::spawn(move || {
                    let mut t = Tally::default();
                    let mut v = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        v += 1;
                        let r = request("PUT", &url, &[], Some(v.to_string().as_bytes()));
                        match r.status {
                            200..=299 => {
                                t.acks.push((Instant::now(), v));
                                acked[i].fetch_add(1, Ordering::Relaxed);
                            }
                            503 => t.refused += 1,
                            s => t.other.push(s),
                        }
                        if r.status != 204 {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    }
                    t
                })
            })
            .collect();
        Load { ids, stop, acked, handles }
    }

    fn counts(&self) -> Vec<u64> {
        self.acked.iter().map(|n| n.load(Ordering::Relaxed)).collect()
    }

    /// Waits until every writer had `n` more writes acknowledged than at
    /// `since` (and `also` holds), within `timeout`.
    fn until_served(&self, since: &[u64], n: u64, timeout: Duration, also: impl Fn() -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let now = self.counts();
            if (now.iter().zip(since).all(|(a, b)| a - b >= n) && also()) || Instant::now() > deadline {
                return;
            }
        }
    }

    fn finish(self) -> (Vec<String>, Vec<Tally>) {
        self.stop.store(true, Ordering::Relaxed);
        (self.ids, self.handles.into_iter().map(|h| h.join().unwrap()).collect())
    }
}

/// Reads every session on `reader` (a takeover from the current master)
/// and returns (session, last acknowledged, read back) for each one that
/// reads back less than its last 2xx.
fn lost_writes(reader: &Server, ids: &[String], tallies: &[Tally]) -> Vec<(String, u64, u64)> {
    let mut lost = Vec::new();
    for (id, t) in ids.iter().zip(tallies) {
        let get = || request("GET", &reader.url(&format!("/v1/sessions/{id}/attributes/v")), &[], None);
        let mut r = get();
        let until = Instant::now() + Duration::from_secs(60);
        while r.status == 503 && Instant::now() < until {
            // Unavailable is not lost: the takeover's write waits for a replica.
            std::thread::sleep(Duration::from_millis(200));
            r = get();
        }
        assert_eq!(r.status, 200, "node 2 reads session {id} after the failover: {}\nlog:\n{}", r.text(), reader.log());
        let got: u64 = r.text().parse().unwrap();
        if let Some(&(_, want)) = t.acks.last()
            && got < want
        {
            lost.push((id.clone(), want, got));
        }
    }
    lost
}

fn check_answers(tallies: &[Tally]) {
    for t in tallies {
        assert!(t.other.is_empty(), "fail-closed answers 2xx or 503 only; also saw {:?}", t.other);
    }
}

const OPTS: [&str; 2] = ["cluster.when_store_down=fail-closed", "cluster.store_timeout=1"];

/// After a failover at `fault`: node 1 (not restarted) serves new writes
/// again; returns how long after `fault` its first one was acknowledged.
fn serves_again(n1: &mut Server, pid1: i32, fault: Instant) -> Duration {
    let load = Load::start(n1, 3);
    load.until_served(&[0, 0, 0], 10, Duration::from_secs(60), || true);
    let (_, tallies) = load.finish();
    check_answers(&tallies);
    for t in &tallies {
        assert!(t.acks.len() >= 10, "node 1 does not serve writes again after the failover; log:\n{}", n1.log());
    }
    assert_eq!(n1.pid(), pid1, "node 1 was not restarted");
    assert!(n1.child.try_wait().unwrap().is_none(), "node 1 still runs");
    tallies.iter().filter_map(|t| t.acks.first().map(|(at, _)| *at - fault)).min().unwrap()
}

fn summary(tallies: &[Tally]) -> (usize, u64) {
    (tallies.iter().map(|t| t.acks.len()).sum(), tallies.iter().map(|t| t.refused).sum())
}

/// `SENTINEL FAILOVER` while six writers write: once the sentinels name
/// the replica, the writers stop and every session is read on node 2 from
/// the new master; each must read back its last 2xx. (A write the old
/// master acknowledged between the promotion and its demotion would be
/// lost; `WAIT` refuses it, since the promoted replica no longer follows.
/// With `?wait_replicas=0` in the URL this test fails: every session lost
/// its last writes.)
#[test]
fn sentinel_failover_under_write_load_loses_no_acknowledged_write() {
    let topo = Topology::start(1, false);
    let url = topo.url();
    let mut n1 = node_at(&url, 1, &OPTS, None);
    let n2 = node_at(&url, 2, &OPTS, None);
    let pid1 = n1.pid();
    let load = Load::start(&n1, 6);
    std::thread::sleep(Duration::from_millis(1500));
    let old = topo.master_port();
    let t0 = Instant::now();
    let ok = cli(topo.sentinels[0].port, &["SENTINEL", "FAILOVER", "mymaster"]);
    assert_eq!(ok.first().map(String::as_str), Some("OK"), "SENTINEL FAILOVER: {ok:?}");
    let new = topo.replicas[0].port;
    wait_until("the sentinels name the replica as master", Duration::from_secs(30), || topo.master_port() == Some(new));
    let promoted = t0.elapsed();
    let (ids, tallies) = load.finish();
    check_answers(&tallies);
    let lost = lost_writes(&n2, &ids, &tallies);
    let back = serves_again(&mut n1, pid1, t0);
    let (acked, refused) = summary(&tallies);
    let after: usize = tallies.iter().map(|t| t.acks.iter().filter(|(at, _)| *at >= t0).count()).sum();
    println!(
        "SENTINEL FAILOVER under load: {acked} writes acknowledged ({after} after the command), {refused} answered \
         503, {} lost; the sentinels named the new master after {promoted:?}; node 1 acknowledged new writes \
         {back:?} after the command (master port {old:?} -> {new})",
        lost.len(),
    );
    assert!(lost.is_empty(), "acknowledged writes lost (session, last acked, read back): {lost:?}");
    assert_eq!(topo.master_port(), Some(new));
}

/// The case `WAIT` is for: the master is cut off from its replicas but
/// still reached by the nodes, accepts writes no replica gets, and dies;
/// a replica is promoted without them. Every session is then read on node
/// 2 from the new master: with `wait_replicas` the writes during the cut
/// answered 503, so each reads back its last 2xx. (With
/// `?wait_replicas=0` in the URL this test fails: the writes made during
/// the cut are acknowledged, and lost.)
#[test]
fn sentinel_master_cut_off_then_killed_loses_no_acknowledged_write() {
    let mut topo = Topology::start(2, true);
    let url = topo.url();
    let mut n1 = node_at(&url, 1, &OPTS, None);
    let n2 = node_at(&url, 2, &OPTS, None);
    let pid1 = n1.pid();
    let load = Load::start(&n1, 6);
    std::thread::sleep(Duration::from_millis(1500));
    let t_cut = Instant::now();
    topo.link.as_ref().unwrap().cut();
    std::thread::sleep(Duration::from_millis(1500));
    let (ids, tallies) = load.finish();
    check_answers(&tallies);
    let t_kill = Instant::now();
    let _ = topo.master.child.kill();
    let _ = topo.master.child.wait();
    let old = topo.master.port;
    wait_until("the sentinels name a replica as master", Duration::from_secs(30), || {
        topo.master_port().is_some_and(|p| p != old)
    });
    let promoted = t_kill.elapsed();
    let new = topo.master_port().unwrap();
    let lost = lost_writes(&n2, &ids, &tallies);
    let back = serves_again(&mut n1, pid1, t_kill);
    let (acked, refused) = summary(&tallies);
    let in_cut: usize = tallies.iter().map(|t| t.acks.iter().filter(|(at, _)| *at >= t_cut).count()).sum();
    println!(
        "master cut off from its replicas for 1.5 s under load, then kill -9: {acked} writes acknowledged \
         ({in_cut} during the cut), {refused} answered 503, {} lost; the sentinels named the new master \
         {promoted:?} after the kill; node 1 acknowledged new writes {back:?} after the kill (master port {old} -> \
         {new})",
        lost.len(),
    );
    assert!(lost.is_empty(), "acknowledged writes lost (session, last acked, read back): {lost:?}");
}
