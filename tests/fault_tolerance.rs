//! Fault tolerance with real processes and real signals: workers, the
//! reaper and the master killed under load, a frozen lock holder, damaged
//! regions, a full disk, a simulated machine crash, and 10,000 idle
//! connections. Each test prints a `FIGURES` line that docs/reliability.md
//! quotes. Soak variants: set `SESSIOND_SOAK_SECS` (default 20).
mod common;
use common::*;

use std::collections::HashMap;
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

fn soak_secs() -> u64 {
    std::env::var("SESSIOND_SOAK_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(20)
}

/// Load from `clients` threads: each creates a session, writes one unique
/// value, records it only if the write was acknowledged, and re-reads its
/// own acknowledged sessions. Returns the shared results.
struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    mismatches: Arc<AtomicU64>,
    worst_us: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(base: &str, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(HashMap::new()));
        let (ok, failed, mismatches, worst_us) = Default::default();
        let mut l = Load { stop, acked, ok, failed, mismatches, worst_us, threads: vec![] };
        for t in 0..clients {
            let (stop, acked, ok, failed, mism, worst) = (
                l.stop.clone(),
                l.acked.clone(),
                l.ok.clone(),
                l.failed.clone(),
                l.mismatches.clone(),
                l.worst_us.clone(),
            );
            let base = base.to_string();
            l.threads.push(std::thread::spawn(move || {
                let mut mine: Vec<(String, Vec<u8>)> = Vec::new();
                let mut i = 0u64;
                let timed = |f: &mut dyn FnMut() -> Resp| {
                    let t0 = Instant::now();
                    let r = f();
                    worst.fetch_max(t0.elapsed().as_micros() as u64, Ordering::Relaxed);
                    if r.status == 0 || r.status >= 500 {
                        failed.fetch_add(1, Ordering::Relaxed);
                    } else {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    r
                };
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let r = timed(&mut || request("POST", &format!("{base}/v1/sessions"), &[], None));
                    if r.status != 201 {
                        continue;
                    }
                    let id = r.json()["id"].as_str().unwrap().to_string();
                    let value = format!("client {t} write {i} {}", "x".repeat((i % 200) as usize)).into_bytes();
                    let url = format!("{base}/v1/sessions/{id}/attributes/v");
                    let r = timed(&mut || request("PUT", &url, &[], Some(&value)));
                    if r.status == 204 {
                        acked.lock().unwrap().insert(id.clone(), value.clone());
                        mine.push((id, value));
                    }
                    if let Some((id, v)) = mine.get((i as usize * 7) % mine.len().max(1)) {
                        let url = format!("{base}/v1/sessions/{id}/attributes/v");
                        let r = timed(&mut || request("GET", &url, &[], None));
                        if r.status == 200 && r.body != *v {
                            mism.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
        l
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            t.join().unwrap();
        }
    }
}

/// Verifies every acknowledged write byte for byte; returns how many were lost.
fn lost_writes(base: &str, acked: &HashMap<String, Vec<u8>>) -> usize {
    acked
        .iter()
        .filter(|(id, v)| {
            let r = get(&format!("{base}/v1/sessions/{id}/attributes/v?touch=false"));
            r.status != 200 || r.body != **v
        })
        .count()
}

fn ctl_verify(dir: &Path) -> (i32, String) {
    let out = std::process::Command::new(sessionctl_bin()).arg("--data-dir").arg(dir).arg("verify").output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

fn kill_under_load(title: &str, extra: &[&str]) {
    let mut args = vec![
        "--max-sessions",
        "200000",
        "--max-locks",
        "64",
        "--max-value-size",
        "512",
        "--max-values-per-session",
        "2",
    ];
    args.extend_from_slice(extra);
    let s = Server::start(&args);
    let base = s.url("");
    let mut load = Load::start(&base, 64);
    let secs = soak_secs();
    let t0 = Instant::now();
    let mut kills = 0u64;
    let mut killed = Vec::new();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    while t0.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_millis(200));
        let pids = s.children(title);
        if pids.is_empty() {
            continue;
        }
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let pid = pids[(rng % pids.len() as u64) as usize];
        if kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
            kills += 1;
            killed.push(pid);
        }
    }
    let recovery_start = Instant::now();
    let want = if title.contains("worker") { 2 } else { 1 };
    while s.children(title).len() < want {
        assert!(recovery_start.elapsed() < Duration::from_secs(15), "{title} not replaced:\n{}", s.log());
        std::thread::sleep(Duration::from_millis(10));
    }
    let recovery = recovery_start.elapsed();
    load.stop();
    let now = s.children(title);
    assert!(killed.iter().all(|p| !now.contains(p)), "every killed {title} was replaced by a new pid");
    let acked = load.acked.lock().unwrap().clone();
    let lost = lost_writes(&base, &acked);
    let (vcode, vout) = ctl_verify(&s.data_dir);
    let metrics = get(&s.url("/metrics")).text();
    let restarts_metric =
        if title.contains("worker") { "sessiond_worker_restarts_total " } else { "sessiond_reaper_restarts_total " };
    let restarts: u64 = metrics
        .lines()
        .find(|l| l.starts_with(restarts_metric))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0);
    let worst = Duration::from_micros(load.worst_us.load(Ordering::Relaxed));
    println!(
        "FIGURES {title} killed: kills={kills} restarts={restarts} served={} failed={} acked_writes={} lost={lost} \
         read_mismatches={} worst_latency={worst:?} recovery_after_last_kill={recovery:?} secs={secs}",
        load.ok.load(Ordering::Relaxed),
        load.failed.load(Ordering::Relaxed),
        acked.len(),
        load.mismatches.load(Ordering::Relaxed),
    );
    assert!(kills >= secs * 3, "the killer ran: {kills} kills");
    assert!(restarts >= kills, "restarts {restarts} < kills {kills}");
    assert!(acked.len() > 100, "load ran: {} acknowledged writes", acked.len());
    assert_eq!(lost, 0, "acknowledged writes lost");
    assert_eq!(load.mismatches.load(Ordering::Relaxed), 0, "a read returned other bytes than the acknowledged write");
    assert!(worst < Duration::from_secs(2), "a request waited {worst:?}");
    assert_eq!(vcode, 0, "sessionctl verify: {vout}");
}

#[test]
fn workers_killed_under_load_lose_no_acknowledged_write() {
    kill_under_load("sessiond: worker", &[]);
}

#[test]
fn reaper_killed_under_load_loses_nothing() {
    kill_under_load("sessiond: reaper", &["--reap-interval", "1", "--timeout", "3600"]);
}

#[test]
fn master_killed_under_load_leaves_no_children_and_next_start_serves_everything() {
    let args =
        ["--max-sessions", "100000", "--max-locks", "64", "--max-value-size", "512", "--max-values-per-session", "2"];
    let mut s = Server::start(&args);
    let dir = s.data_dir.clone();
    let _keep = s.tmp.take();
    let base = s.url("");
    let mut load = Load::start(&base, 64);
    std::thread::sleep(Duration::from_secs(3));
    let children: Vec<i32> = [s.children("sessiond: worker"), s.children("sessiond: reaper")].concat();
    assert_eq!(children.len(), 3);
    s.signal(Signal::SIGKILL);
    let t = Instant::now();
    while children.iter().any(|p| kill(Pid::from_raw(*p), None).is_ok() && !is_zombie(*p)) {
        assert!(t.elapsed() < Duration::from_secs(10), "children outlived the master");
        std::thread::sleep(Duration::from_millis(10));
    }
    let orphan_gone = t.elapsed();
    load.stop();
    let acked = load.acked.lock().unwrap().clone();
    let t = Instant::now();
    let s2 = Server::start_with(Opts { data_dir: Some(&dir), args: &args, ..Default::default() });
    let restart = t.elapsed();
    let lost = lost_writes(&s2.url(""), &acked);
    println!(
        "FIGURES master killed: served={} failed={} acked_writes={} lost={lost} children_gone_after={orphan_gone:?} restart_to_healthy={restart:?}",
        load.ok.load(Ordering::Relaxed),
        load.failed.load(Ordering::Relaxed),
        acked.len()
    );
    assert!(acked.len() > 50);
    assert_eq!(lost, 0);
    assert!(s2.log().contains("previous shutdown was not clean"), "{}", s2.log());
    assert_eq!(ctl_verify(&dir).0, 0);
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')))
        .unwrap_or(true)
}

/// A forked child attaches the region, takes `stripe`'s lock, signals, and
/// stops itself with SIGSTOP while holding it.
#[cfg(feature = "fault-injection")]
fn fork_lock_holder(region: &Path, stripe: u32) -> Pid {
    use nix::unistd::{ForkResult, fork, pipe, read, write};
    let (rx, tx) = pipe().unwrap();
    // SAFETY: the child only attaches the region, locks, writes one byte
    // and stops; it never returns into the test harness.
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            let code = (|| {
                let r = sessiond::region::Region::attach(region, Duration::from_secs(5)).ok()?;
                let g = r.fault_hold_stripe(stripe).ok()?;
                write(&tx, b"1").ok()?;
                kill(nix::unistd::getpid(), Signal::SIGSTOP).ok()?;
                // Continued: hold a little longer, then release and exit.
                std::thread::sleep(Duration::from_millis(100));
                drop(g);
                Some(0)
            })()
            .unwrap_or(1);
            // SAFETY: leave the forked child without running the harness.
            unsafe { libc::_exit(code) };
        }
        ForkResult::Parent { child } => {
            let mut b = [0u8; 1];
            assert_eq!(read(rx.as_raw_fd(), &mut b).unwrap(), 1, "lock holder did not start");
            child
        }
    }
}

#[cfg(feature = "fault-injection")]
#[test]
fn frozen_lock_holder_gives_503_on_its_stripe_only_and_service_recovers() {
    let s = Server::start(&["--max-sessions", "64", "--max-locks", "4", "--lock-timeout", "0.3"]);
    let ids: Vec<String> = (0..24).map(|_| create(&s)).collect();
    let stripe_of = |id: &str| {
        let sid = sessiond::region::SessionId::parse(id.as_bytes()).unwrap();
        (sid.slot as u64 * 4 + 3) as u32 / 64
    };
    let victim = ids[0].clone();
    let frozen = stripe_of(&victim);
    let other = ids.iter().find(|i| stripe_of(i) != frozen).unwrap().clone();
    let region = s.data_dir.join("contexts/default/sessions.region");
    let holder = fork_lock_holder(&region, frozen);
    let t = Instant::now();
    let r = get(&s.url(&format!("/v1/sessions/{victim}")));
    let waited = t.elapsed();
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["error"], "lock_timeout");
    assert!(waited >= Duration::from_millis(250), "answered only after lock_timeout: {waited:?}");
    assert_eq!(get(&s.url(&format!("/v1/sessions/{other}"))).status, 200, "other stripes serve");
    assert_eq!(request("POST", &s.url("/v1/sessions"), &[], None).status, 201, "creates skip the stuck stripe");
    kill(holder, Signal::SIGCONT).unwrap();
    nix::sys::wait::waitpid(holder, None).unwrap();
    let t = Instant::now();
    assert_eq!(get(&s.url(&format!("/v1/sessions/{victim}"))).status, 200, "recovered after SIGCONT");
    println!("FIGURES frozen lock holder: wait_before_503={waited:?} recovery_after_sigcont={:?}", t.elapsed());
    let m = get(&s.url("/metrics")).text();
    assert!(
        m.lines().any(|l| l.starts_with("sessiond_lock_timeouts_total{context=\"default\"}") && !l.ends_with(" 0"))
    );
}

#[cfg(feature = "fault-injection")]
#[test]
fn machine_crash_copy_with_a_lock_held_mid_write_is_repaired_at_start() {
    use nix::unistd::{ForkResult, fork, pipe, read, write};
    let mut s = Server::start(&["--max-sessions", "16", "--max-locks", "1"]);
    let ids: Vec<String> = (0..4).map(|_| create(&s)).collect();
    for id in &ids {
        request("PUT", &s.url(&format!("/v1/sessions/{id}/attributes/k")), &[], Some(id.as_bytes()));
    }
    let region = s.data_dir.join("contexts/default/sessions.region");
    let copy = tempfile::tempdir().unwrap();
    let cdir = copy.path().join("data");
    std::fs::create_dir_all(cdir.join("contexts/default")).unwrap();
    std::fs::copy(s.data_dir.join("Version"), cdir.join("Version")).unwrap();
    let (rx, tx) = pipe().unwrap();
    let (rx2, tx2) = pipe().unwrap();
    let victim = sessiond::region::SessionId::parse(ids[0].as_bytes()).unwrap();
    // SAFETY: the child only touches the region and pipes, then _exits.
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            let r = sessiond::region::Region::attach(&region, Duration::from_secs(5)).unwrap();
            let _ = r.fault_torn_write(&victim, sessiond::clock::now_ms(), || {
                let _ = write(&tx, b"1");
                let mut b = [0u8; 1];
                let _ = read(rx2.as_raw_fd(), &mut b);
            });
            // SAFETY: leave the forked child without running the harness.
            unsafe { libc::_exit(0) };
        }
        ForkResult::Parent { child } => {
            let mut b = [0u8; 1];
            read(rx.as_raw_fd(), &mut b).unwrap();
            // The "machine crash": the file as it is with the lock held mid-write.
            std::fs::copy(&region, cdir.join("contexts/default/sessions.region")).unwrap();
            write(&tx2, b"1").unwrap();
            nix::sys::wait::waitpid(child, None).unwrap();
        }
    }
    s.stop();
    let s2 = Server::start_with(Opts { data_dir: Some(&cdir), ..Default::default() });
    assert!(s2.log().contains("repair dropped 1 slot"), "{}", s2.log());
    assert_eq!(get(&s2.url(&format!("/v1/sessions/{}", ids[0]))).status, 404, "torn session dropped, not served");
    for id in &ids[1..] {
        let r = get(&s2.url(&format!("/v1/sessions/{id}/attributes/k")));
        assert_eq!((r.status, r.body.as_slice()), (200, id.as_bytes()), "other sessions intact");
    }
    assert_eq!(request("POST", &s2.url("/v1/sessions"), &[], None).status, 201, "locks re-initialised: no timeout");
    println!("FIGURES machine crash: torn=1 dropped=1 others_intact={}", ids.len() - 1);
}

#[test]
fn damaged_regions_are_repaired_or_rebuilt_with_a_warning_never_served() {
    use std::os::unix::fs::FileExt;
    type Damage = fn(&Path, u64);
    let cases: [(&str, Damage, &str); 4] = [
        ("random header bytes", |p, _| write_at(p, 8, &[0xa5; 64]), "moved it to"),
        ("torn slot", |p, slot_off| write_at(p, slot_off, &7u64.to_le_bytes()), "repair dropped 1 slot"),
        (
            "truncated file",
            |p, _| std::fs::OpenOptions::new().write(true).open(p).unwrap().set_len(6000).unwrap(),
            "moved it to",
        ),
        ("wrong size", |p, _| write_at(p, 24, &999u32.to_le_bytes()), "moved it to"),
    ];
    fn write_at(p: &Path, off: u64, b: &[u8]) {
        std::fs::OpenOptions::new().write(true).open(p).unwrap().write_all_at(b, off).unwrap();
    }
    for (what, damage, expect) in cases {
        let mut s = Server::start(&["--max-sessions", "32", "--max-locks", "2"]);
        let dir = s.data_dir.clone();
        let _keep = s.tmp.take();
        let a = create(&s);
        let b = create(&s);
        request("PUT", &s.url(&format!("/v1/sessions/{b}/attributes/k")), &[], Some(b"keep"));
        s.stop();
        let region = dir.join("contexts/default/sessions.region");
        let slot = sessiond::region::SessionId::parse(a.as_bytes()).unwrap().slot;
        let slot_off =
            sessiond::region::Region::attach(&region, Duration::from_secs(1)).unwrap().geometry().slot_off(slot);
        damage(&region, slot_off);
        assert_eq!(ctl_verify(&dir).0, 1, "{what}: verify reports it");
        let s = Server::start_with(Opts { data_dir: Some(&dir), ..Default::default() });
        let line = s.wait_log(expect, Duration::from_secs(5));
        assert!(line.contains("sessions.region"), "{what}: the warning names the file: {line}");
        assert_eq!(get(&s.url(&format!("/v1/sessions/{a}"))).status, 404, "{what}: damaged session never served");
        if what == "torn slot" {
            let r = get(&s.url(&format!("/v1/sessions/{b}/attributes/k")));
            assert_eq!((r.status, r.body.as_slice()), (200, &b"keep"[..]), "{what}: the rest survives");
        }
        assert_eq!(request("POST", &s.url("/v1/sessions"), &[], None).status, 201, "{what}: serving");
        assert_eq!(ctl_verify(&dir).0, 0, "{what}: clean after start");
        assert!(s.children("sessiond: worker").len() == 2, "{what}: no crash loop");
        println!("FIGURES damaged region ({what}): started=yes action={expect:?}");
    }
}

struct Tmpfs(std::path::PathBuf);
impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn full_disk_fails_startup_clearly_and_never_sigbuses_later() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let st =
        std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"]).arg(&mnt).status().unwrap();
    assert!(st.success(), "mounting a tmpfs needs root (CI runs as root)");
    let _guard = Tmpfs(mnt.clone());
    // 1. A region that does not fit: startup fails and says why.
    let dir = mnt.join("data");
    let mut s = Server::start_with(Opts {
        data_dir: Some(&dir),
        args: &["--max-sessions", "100000"],
        wait_ready: false,
        ..Default::default()
    });
    let code = s.wait_exit(Duration::from_secs(20));
    assert_eq!(code, Some(1), "{}", s.log());
    // The log reader thread may still be draining the pipe: wait for the line.
    let line = s.wait_log("No space left", Duration::from_secs(5));
    assert!(line.contains("fallocate") && line.contains("sessions.region"), "{line}");
    // 2. A region that fits; then fill the disk; writes keep working (no SIGBUS).
    let s = Server::start_with(Opts { data_dir: Some(&dir), args: &["--max-sessions", "100"], ..Default::default() });
    let filler = mnt.join("filler");
    let _ = std::fs::write(&filler, vec![0u8; 16 << 20]);
    let mut written = 0;
    for _ in 0..100 {
        let id = create(&s);
        assert_eq!(
            request("PUT", &s.url(&format!("/v1/sessions/{id}/attributes/v")), &[], Some(&[7u8; 4000])).status,
            204
        );
        written += 1;
    }
    assert_eq!(s.children("sessiond: worker").len(), 2);
    assert_eq!(s.count_log("was killed by signal"), 0, "no worker died (SIGBUS): {}", s.log());
    println!("FIGURES full disk: startup_refused=yes writes_after_disk_full={written} worker_deaths=0");
}

#[test]
fn ten_thousand_idle_connections_do_not_lock_out_a_new_client() {
    // 10,000 client sockets need a descriptor limit above the common 1024:
    // raise the soft limit to the hard one (the server inherits it).
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    assert!(lim.rlim_max >= 12_000, "RLIMIT_NOFILE hard limit {} is too low for this test", lim.rlim_max);
    let s = Server::start(&["--set", "max_connections=2000", "--set", "header_timeout=1"]);
    let addr = s.addr.clone();
    let mut idle = Vec::new();
    for _ in 0..10_000 {
        match TcpStream::connect(&addr) {
            Ok(c) => idle.push(c),
            Err(_) => break,
        }
    }
    let opened = idle.len();
    let t = Instant::now();
    let mut attempts = 0;
    let answered = loop {
        attempts += 1;
        let r = get(&s.url("/healthz"));
        if r.status == 200 {
            break t.elapsed();
        }
        assert!(t.elapsed() < Duration::from_secs(10), "no answer within 10 s");
        std::thread::sleep(Duration::from_millis(20));
    };
    let m = get(&s.url("/metrics")).text();
    println!("FIGURES slowloris: idle_opened={opened} new_client_answered_after={answered:?} attempts={attempts}");
    println!("{}", m.lines().filter(|l| l.starts_with("sessiond_connections")).collect::<Vec<_>>().join("\n"));
    assert_eq!(opened, 10_000);
    // Bounded by header_timeout (1 s) plus scheduling: idle connections are cut, capacity returns.
    assert!(answered < Duration::from_secs(5), "{answered:?}");
    drop(idle);
}

#[test]
fn client_that_stops_reading_is_cut_after_send_timeout() {
    use std::io::{Read, Write};
    let s = Server::start(&[
        "--max-sessions",
        "2",
        "--max-locks",
        "1",
        "--max-values-per-session",
        "1",
        "--max-value-size",
        "16777216",
        "--set",
        "send_timeout=1",
    ]);
    let id = create(&s);
    let big = vec![b'z'; 16 << 20];
    assert_eq!(request("PUT", &s.url(&format!("/v1/sessions/{id}/attributes/big")), &[], Some(&big)).status, 204);
    let mut c = TcpStream::connect(&s.addr).unwrap();
    c.write_all(format!("GET /v1/sessions/{id}/attributes/big HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).unwrap();
    // Do not read: the server's writes stall once the socket buffers fill.
    std::thread::sleep(Duration::from_secs(3));
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match c.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    println!("FIGURES slow reader: bytes_received_before_cut={got} of {}", big.len());
    assert!(got < big.len(), "the stalled response was cut, not delivered in full ({got} bytes)");
    assert_eq!(get(&s.url("/healthz")).status, 200, "the worker keeps serving");
}
