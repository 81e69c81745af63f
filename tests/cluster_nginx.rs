//! A two-node cluster behind a real nginx configured with
//! `examples/cluster-nginx.conf` (read from that file, so the example and
//! the test cannot drift): sticky routing by the node in the session id,
//! then node 1's master killed with SIGKILL under load. nginx retries on
//! node 2, node 2 takes the sessions over and re-issues their ids, every
//! request gets an answer, and no acknowledged write is lost. Runs for
//! PostgreSQL and Redis.
//!
//! Needs nginx and the stores `bash tools/test` installs and starts
//! (SESSIOND_TEST_PG, SESSIOND_TEST_REDIS); without them each test fails
//! naming that command. It never skips.

mod common;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::cluster::{Kind, Store, metric, node, node_of, reissued, wait_until};
use common::nginx::{Conf, Nginx};
use common::{Resp, Server, children_of, request_on};

/// The example this test runs.
const EXAMPLE: &str = include_str!("../examples/cluster-nginx.conf");
/// The addresses in the example that a run replaces.
const EX_NODE1: &str = "127.0.0.1:8081";
const EX_NODE2: &str = "127.0.0.1:8082";
const EX_LISTEN: &str = "listen 127.0.0.1:8000;";

/// Sessions created through nginx; the load threads share them out.
const SESSIONS: usize = 24;
/// Load threads, each owning `SESSIONS / THREADS` sessions.
const THREADS: usize = 8;
/// Load before the kill, and after it.
const BEFORE_KILL: Duration = Duration::from_millis(1500);
const AFTER_KILL: Duration = Duration::from_millis(3000);
/// After this long past the kill, nginx has marked node 1 down and every
/// request must succeed.
const SETTLE: Duration = Duration::from_secs(1);

/// The two scenarios are timed (a kill under load, a deadline after it):
/// they run one at a time rather than share two cores with each other.
static SERIAL: Mutex<()> = Mutex::new(());

/// The example with its node addresses and listen address replaced.
fn example_for(listen_port: u16, node1: &str, node2: &str) -> String {
    for (needle, n) in [(EX_NODE1, 3), (EX_NODE2, 3), (EX_LISTEN, 1)] {
        assert_eq!(
            EXAMPLE.matches(needle).count(),
            n,
            "examples/cluster-nginx.conf has {needle:?} {n} times (once per pool, or one listen)"
        );
    }
    // Through markers, so that one replacement never rewrites another's output.
    EXAMPLE
        .replace(EX_NODE1, "\u{1}NODE1\u{1}")
        .replace(EX_NODE2, "\u{1}NODE2\u{1}")
        .replace("\u{1}NODE1\u{1}", node1)
        .replace("\u{1}NODE2\u{1}", node2)
        .replace(EX_LISTEN, &format!("listen 127.0.0.1:{listen_port};"))
}

/// Starts nginx with the example pointed at the two nodes (`host:port`).
/// The access log records which upstreams each request went to
/// (`method status "upstreams" "statuses"`).
fn start_nginx(node1: &str, node2: &str) -> Nginx {
    let conf = Conf {
        worker_connections: 1024,
        log_format: Some(("upstreams", "'$request_method $status \"$upstream_addr\" \"$upstream_status\"'")),
    };
    Nginx::start(&conf, |port| example_for(port, node1, node2))
}

/// A keep-alive client (one per thread); redirects are never followed.
fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().timeout(Duration::from_secs(15)).redirects(0).build()
}

/// Sends a request with the session cookie `cookie`; 4xx/5xx are
/// answers. Status 0: no answer (the connection failed).
fn call(a: &ureq::Agent, method: &str, url: &str, cookie: Option<&str>, body: Option<&[u8]>) -> Resp {
    let cookie = cookie.map(|c| format!("SESSIONID={c}"));
    let headers: Vec<(&str, &str)> = cookie.iter().map(|c| ("cookie", c.as_str())).collect();
    request_on(a, method, url, &headers, body)
}

/// One counter of `sessiond_http_requests_total`.
fn requests(s: &Server, route: &str, code: u16) -> u64 {
    metric(s, &format!("sessiond_http_requests_total{{route=\"{route}\",code=\"{code}\"}}"))
}

/// A process as `/proc` shows it now: (pid, start time), to tell it from a
/// later process that reuses the pid.
fn proc_start(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split_whitespace().collect();
    // A zombie (or dead) process runs nothing: its new parent just has not
    // reaped it yet.
    if matches!(fields.first(), Some(&"Z") | Some(&"X")) {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// A session one load thread owns.
struct Sess {
    /// Index into the created sessions.
    idx: usize,
    /// The node that created it.
    created_on: u32,
    /// The id it was created with.
    first_id: String,
    /// The cookie the client sends now.
    cookie: String,
    /// The next value to PUT (values only grow).
    next: u64,
    /// The last value a 2xx acknowledged.
    acked: u64,
    /// Values sent after `acked` whose answer was not a 2xx: each may or
    /// may not have been applied.
    unknown: Vec<u64>,
}

/// Sets the flag when dropped.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// One PUT of the load.
struct Outcome {
    /// Sent and answered, since the load started.
    sent: Duration,
    done: Duration,
    status: u16,
    sess: usize,
    value: u64,
    /// The node the cookie named, and the node of a re-issued id.
    cookie_node: u32,
    reissued_to: Option<u32>,
    body: String,
}

fn failover_under_load(kind: Kind) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let store = Store::new(kind, false);
    let mut n1 = node(&store, 1, &[]);
    let n2 = node(&store, 2, &[]);
    let nginx = start_nginx(&n1.addr, &n2.addr);
    let logs = |n1: &Server| {
        format!(
            "node 1:\n{}\nnode 2:\n{}\nnginx error.log:\n{}",
            n1.log(),
            n2.log(),
            nginx.error_log().lines().rev().take(60).collect::<Vec<_>>().join("\n")
        )
    };
    let a = agent();

    // 1. Sessions created through nginx without a cookie: round robin over
    //    both nodes, each id naming the node that created it.
    let mut ids = Vec::new();
    for _ in 0..SESSIONS {
        let r = call(&a, "POST", &nginx.url("/v1/session"), None, None);
        assert_eq!(r.status, 201, "POST /v1/session through nginx: {}\n{}", r.text(), logs(&n1));
        let id = reissued(&r).expect("a new session's id in Set-Cookie");
        assert_eq!(r.json()["id"], id.as_str());
        ids.push(id);
    }
    let on = |n: u32| ids.iter().filter(|id| node_of(id) == n).count() as u64;
    let (on1, on2) = (on(1), on(2));
    assert_eq!(on1 + on2, SESSIONS as u64, "every id names node 1 or 2: {ids:?}");
    assert!(on1 > 0 && on2 > 0, "round robin gave both nodes sessions: {on1} on node 1, {on2} on node 2");
    assert!(ids.iter().all(|id| id.starts_with(if node_of(id) == 1 { "AAAB" } else { "AAAC" })));
    assert_eq!((requests(&n1, "current", 201), requests(&n2, "current", 201)), (on1, on2));

    // 2. Sticky routing: each session's requests reach the node its cookie
    //    names (the per-route counters of each node), and no node takes a
    //    session over.
    for id in &ids {
        let r = call(&a, "PUT", &nginx.url("/v1/session/attributes/n"), Some(id), Some(b"0"));
        assert_eq!(r.status, 204, "PUT through nginx: {}\n{}", r.text(), logs(&n1));
        assert_eq!(reissued(&r), None, "served by its own node: no re-issued id");
        let r = call(&a, "GET", &nginx.url("/v1/session/attributes/n"), Some(id), None);
        assert_eq!((r.status, r.text().as_str()), (200, "0"), "GET through nginx");
        assert_eq!(reissued(&r), None);
    }
    assert_eq!((requests(&n1, "attr_put", 204), requests(&n2, "attr_put", 204)), (on1, on2), "PUTs per node");
    assert_eq!((requests(&n1, "attr_get", 200), requests(&n2, "attr_get", 200)), (on1, on2), "GETs per node");
    for s in [&n1, &n2] {
        assert_eq!(metric(s, "sessiond_store_takeovers_total"), 0, "sticky routing: no takeovers");
    }

    // 3. Load: THREADS clients, each owning some sessions, PUT a growing
    //    counter into `n` through nginx, one request at a time, following
    //    any re-issued cookie. Node 1's master is killed with SIGKILL in the
    //    middle.
    let mut shares: Vec<Vec<Sess>> = (0..THREADS).map(|_| Vec::new()).collect();
    for (idx, id) in ids.iter().enumerate() {
        shares[idx % THREADS].push(Sess {
            idx,
            created_on: node_of(id),
            first_id: id.clone(),
            cookie: id.clone(),
            next: 1,
            acked: 0,
            unknown: Vec::new(),
        });
    }
    let stop = AtomicBool::new(false);
    let put_url = nginx.url("/v1/session/attributes/n");
    let t0 = Instant::now();
    let mut kill_at = Duration::ZERO;
    let mut takeovers_before_kill = (0, 0);
    let mut n1_children = Vec::new();
    let results: Vec<(Vec<Sess>, Vec<Outcome>)> = std::thread::scope(|sc| {
        let handles: Vec<_> = shares
            .into_iter()
            .map(|mut mine| {
                let (stop, put_url) = (&stop, &put_url);
                sc.spawn(move || {
                    let a = agent();
                    let mut out = Vec::new();
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let k = i % mine.len();
                        let s = &mut mine[k];
                        i += 1;
                        let value = s.next;
                        s.next += 1;
                        let sent = t0.elapsed();
                        let r = call(&a, "PUT", put_url, Some(&s.cookie), Some(value.to_string().as_bytes()));
                        let done = t0.elapsed();
                        let re = reissued(&r);
                        if (200..300).contains(&r.status) {
                            s.acked = value;
                            s.unknown.clear();
                        } else {
                            s.unknown.push(value);
                        }
                        out.push(Outcome {
                            sent,
                            done,
                            status: r.status,
                            sess: s.idx,
                            value,
                            cookie_node: node_of(&s.cookie),
                            reissued_to: re.as_deref().map(node_of),
                            body: r.text(),
                        });
                        if let Some(id) = re {
                            s.cookie = id;
                        }
                    }
                    (mine, out)
                })
            })
            .collect();

        // Stops the load also when an assertion below fails, so that the
        // scope's join does not wait forever.
        let _stop_on_panic = StopOnDrop(&stop);
        std::thread::sleep(BEFORE_KILL);
        takeovers_before_kill =
            (metric(&n1, "sessiond_store_takeovers_total"), metric(&n2, "sessiond_store_takeovers_total"));
        // Node 1's workers and reaper, to watch them die with their master.
        n1_children = children_of(n1.pid(), "sessiond: ")
            .into_iter()
            .map(|pid| {
                let title = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let title = String::from_utf8_lossy(&title).trim_end_matches('\0').replace('\0', " ");
                (pid, proc_start(pid).expect("a live child"), title)
            })
            .collect::<Vec<_>>();
        kill_at = t0.elapsed();
        n1.signal(nix::sys::signal::Signal::SIGKILL);
        n1.wait_exit(Duration::from_secs(5));
        // PR_SET_PDEATHSIG: the children get SIGKILL when the master dies.
        wait_until("node 1's workers and reaper died with its master", Duration::from_secs(3), || {
            n1_children.iter().all(|(pid, start, _)| proc_start(*pid) != Some(*start))
        });
        let left = AFTER_KILL.saturating_sub(t0.elapsed() - kill_at);
        std::thread::sleep(left);
        stop.store(true, Ordering::Relaxed);
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let load_time = t0.elapsed();
    let titles: Vec<&str> = n1_children.iter().map(|(_, _, t)| t.as_str()).collect();
    assert!(
        titles.iter().any(|t| t.starts_with("sessiond: worker"))
            && titles.iter().any(|t| t.starts_with("sessiond: reaper")),
        "node 1 had workers and a reaper before the kill: {n1_children:?}"
    );
    assert_eq!(takeovers_before_kill, (0, 0), "under load, before the kill, sticky routing needs no takeover");

    // 4. Every request got an answer; 5xx only for requests in flight at the
    //    kill or sent within SETTLE after it (nginx could not retry them),
    //    none later; anything else is a 204.
    let mut sessions: Vec<Sess> = Vec::new();
    let mut outcomes: Vec<Outcome> = Vec::new();
    for (s, o) in results {
        sessions.extend(s);
        outcomes.extend(o);
    }
    sessions.sort_by_key(|s| s.idx);
    outcomes.sort_by_key(|o| o.sent);
    let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
    for o in &outcomes {
        *by_status.entry(o.status).or_default() += 1;
    }
    let tolerated = |o: &Outcome| matches!(o.status, 502..=504) && o.done >= kill_at && o.sent < kill_at + SETTLE;
    let mut bad = Vec::new();
    let mut fivexx = 0;
    for o in &outcomes {
        let line = format!(
            "session {} value {} cookie node {} sent {:?} answered {:?} (kill at {kill_at:?}): {} {}",
            o.sess,
            o.value,
            o.cookie_node,
            o.sent,
            o.done,
            o.status,
            o.body.chars().take(200).collect::<String>()
        );
        if o.status >= 500 {
            fivexx += 1;
            eprintln!("cluster_nginx {kind:?}: 5xx: {line}");
        }
        if o.status != 204 && !tolerated(o) {
            bad.push(line);
        }
    }
    let access = nginx.access_log();
    let retried = access.lines().filter(|l| l.contains("PUT") && l.contains(", ")).count();
    let after_kill = outcomes.iter().filter(|o| o.sent >= kill_at).count();
    let late = outcomes.iter().filter(|o| o.sent >= kill_at + SETTLE).count();
    assert!(
        bad.is_empty(),
        "{} of {} requests failed outside what nginx cannot retry (no answer = status 0; 5xx later than \
         {SETTLE:?} after the kill):\n{}\nstatuses {by_status:?}\n{}",
        bad.len(),
        outcomes.len(),
        bad.join("\n"),
        logs(&n1)
    );
    assert!(late > 0, "the load kept going after the kill ({after_kill} requests after it, none late)");
    for n in [1, 2] {
        assert!(
            outcomes.iter().any(|o| o.cookie_node == n && o.sent < kill_at && o.status == 204),
            "before the kill, node {n}'s sessions were written through nginx"
        );
    }

    // 5. Nothing acknowledged is lost: each session's value, read through
    //    nginx with the latest cookie, is the last acknowledged one (or one
    //    sent after it whose answer was an error). Every session lives on
    //    node 2 now; node 1's were taken over once each and re-issued.
    let mut finals = Vec::new();
    for s in &sessions {
        assert_eq!(
            node_of(&s.cookie),
            2,
            "session {} ({} created on node {}) not re-issued to node 2",
            s.idx,
            s.first_id,
            s.created_on
        );
        if s.created_on == 2 {
            assert_eq!(s.cookie, s.first_id, "node 2's own session {} kept its id", s.idx);
        } else {
            assert!(s.cookie.starts_with("AAAC") && s.cookie[12..] == s.first_id[12..], "same token, node 2");
        }
        let r = call(&a, "GET", &nginx.url("/v1/session/attributes/n"), Some(&s.cookie), None);
        assert_eq!(r.status, 200, "session {}: {}\n{}", s.idx, r.text(), logs(&n1));
        assert_eq!(reissued(&r), None, "session {}: already on node 2", s.idx);
        let got: u64 = r.text().parse().unwrap_or_else(|_| panic!("session {}: value {:?}", s.idx, r.text()));
        assert!(
            got == s.acked || s.unknown.contains(&got),
            "session {} (created on node {}): read {got}, last acknowledged {}, unacknowledged after it {:?}; \
             its requests:\n{}",
            s.idx,
            s.created_on,
            s.acked,
            s.unknown,
            outcomes
                .iter()
                .filter(|o| o.sess == s.idx)
                .rev()
                .take(8)
                .map(|o| format!("{} {:?}..{:?} {} re-issued {:?}", o.value, o.sent, o.done, o.status, o.reissued_to))
                .collect::<Vec<_>>()
                .join("\n")
        );
        finals.push(got);
    }
    let takeovers = metric(&n2, "sessiond_store_takeovers_total");
    assert!(takeovers > 0);
    assert_eq!(takeovers, on1, "node 2 took each of node 1's sessions over exactly once");
    let reissues = outcomes.iter().filter(|o| o.reissued_to == Some(2)).count() as u64;
    assert!(reissues >= on1, "every session of node 1 got a re-issued id naming node 2 ({reissues})");
    assert_eq!(store.sessions(), SESSIONS, "the store holds the sessions, and no extra one");
    // Node 2 answered from its memory; the store holds the same values (a
    // node that never saw these sessions loads them from there).
    let n3 = node(&store, 3, &[]);
    for (s, got) in sessions.iter().zip(&finals) {
        let r = call(&a, "GET", &n3.url(&format!("/v1/sessions/{}/attributes/n", s.cookie)), None, None);
        assert_eq!((r.status, r.text()), (200, got.to_string()), "session {}: the store's value", s.idx);
    }

    let unacked: usize = sessions.iter().map(|s| s.unknown.len()).sum();
    eprintln!(
        "cluster_nginx {kind:?}: {} PUTs in {load_time:?} ({} after the kill at {kill_at:?}, {late} later than \
         {SETTLE:?} after it); statuses {by_status:?}; 5xx {fivexx}; PUTs nginx sent to a second node {retried}; \
         node 1 children killed {titles:?}; sessions {on1} on node 1 + {on2} on node 2; takeovers on node 2 \
         {takeovers}; re-issued answers {reissues}; unacknowledged values outstanding {unacked}; whole test {:?}",
        outcomes.len(),
        after_kill,
        started.elapsed()
    );
}

#[test]
fn pg_failover_through_nginx_loses_no_acknowledged_write() {
    failover_under_load(Kind::Pg);
}

#[test]
fn redis_failover_through_nginx_loses_no_acknowledged_write() {
    failover_under_load(Kind::Redis);
}
