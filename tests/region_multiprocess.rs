//! Multi-process behaviour of the session region, with real `fork()`ed
//! processes sharing one mmap'd file: concurrent creates, writes, reads and
//! invalidations keep every session and counter exact (with one lock and
//! with many); a writer SIGKILLed mid-write is repaired by the next locker;
//! a stopped lock holder costs only its own stripe a `LockTimeout`; and a
//! copy of the file taken mid-write (a machine crash) reopens with fresh
//! locks and the torn slot dropped.
//!
//! Children never return into the test harness: they run only region calls
//! and file writes, report failures into a file, and leave with `_exit`.
//! Every test that forks holds [`FORK_LOCK`], so no child inherits another
//! test's pipes and the tests do not steal each other's CPU.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork};
use sessiond::region::StripeCounter;
use sessiond::region::{LayoutParams, Region, RegionConfig, RegionError, SessionId, WhenFull};

/// A fixed "now": sessions live for an hour, so nothing expires mid-test.
const T0: u64 = 1_700_000_000_000;
/// Longest a healthy child may take before the test calls it hung.
const CHILD_DEADLINE: Duration = Duration::from_secs(60);
/// Longest wait for a child's "I am in position" byte.
const SIGNAL_DEADLINE: Duration = Duration::from_secs(20);

/// Serialises the forking tests of this binary (see the module doc).
static FORK_LOCK: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    FORK_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn cfg(max_sessions: u32, max_locks: u32, lock_timeout: Duration) -> RegionConfig {
    RegionConfig {
        context: "default".into(),
        layout: LayoutParams { max_sessions, max_values: 4, max_name_size: 16, max_value_size: 256, max_locks },
        node_id: 3,
        timeout_s: 3600,
        absolute_timeout_s: 0,
        when_full: WhenFull::Refuse,
        lock_timeout,
    }
}

// ---------- child processes ----------

/// A forked child. Dropping it without [`Child::join`] or [`Child::kill9`]
/// kills and reaps it, so a failing test leaves no process behind.
struct Child {
    pid: Pid,
    /// Where the child writes why it failed.
    err: PathBuf,
    reaped: bool,
}

/// Forks; the child runs `f` and exits 0 on `Ok`, 1 on `Err` (message in
/// `err`), 2 on panic. The parent gets a [`Child`]; its copy of `f` (and of
/// every pipe end `f` captured) is dropped unrun.
fn spawn<F: FnOnce() -> Result<(), String>>(err: PathBuf, f: F) -> Child {
    // SAFETY: the child only runs `f` (region calls, file and pipe writes,
    // allocation, which glibc keeps usable after fork) and then `_exit`s;
    // it never returns into the test harness, whose other threads' locks
    // it does not touch.
    match unsafe { fork() }.expect("fork()") {
        ForkResult::Parent { child } => {
            drop(f);
            Child { pid: child, err, reaped: false }
        }
        ForkResult::Child => {
            let code = match catch_unwind(AssertUnwindSafe(f)) {
                Ok(Ok(())) => 0,
                Ok(Err(msg)) => {
                    let _ = std::fs::write(&err, msg);
                    1
                }
                Err(payload) => {
                    let msg = payload
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    let _ = std::fs::write(&err, format!("child panicked: {msg}"));
                    2
                }
            };
            // SAFETY: _exit ends the process at once, skipping atexit
            // handlers and destructors the parent still owns.
            unsafe { libc::_exit(code) }
        }
    }
}

impl Child {
    /// Waits for a clean exit; the error carries the child's own report.
    fn join(mut self) -> Result<(), String> {
        let deadline = Instant::now() + CHILD_DEADLINE;
        loop {
            match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
                Ok(WaitStatus::StillAlive) => {
                    return Err(format!("child {} still running after {CHILD_DEADLINE:?}", self.pid));
                }
                Ok(WaitStatus::Exited(_, 0)) => {
                    self.reaped = true;
                    return Ok(());
                }
                Ok(WaitStatus::Exited(_, code)) => {
                    self.reaped = true;
                    let why = std::fs::read_to_string(&self.err).unwrap_or_default();
                    return Err(format!("child {} exited with {code}: {why}", self.pid));
                }
                Ok(WaitStatus::Signaled(_, sig, _)) => {
                    self.reaped = true;
                    return Err(format!("child {} killed by {sig}", self.pid));
                }
                Ok(_) => {}
                Err(e) => return Err(format!("waitpid({}) failed: {e}", self.pid)),
            }
        }
    }

    /// SIGKILLs the child and reaps it; returns how it ended.
    #[cfg(feature = "fault-injection")]
    fn kill9(mut self) -> WaitStatus {
        kill(self.pid, Signal::SIGKILL).expect("kill(SIGKILL)");
        let status = waitpid(self.pid, None).expect("waitpid");
        self.reaped = true;
        status
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = kill(self.pid, Signal::SIGKILL);
            let _ = waitpid(self.pid, None);
        }
    }
}

/// A pipe as (read end, write end).
fn pipe() -> (File, File) {
    let (r, w) = nix::unistd::pipe().expect("pipe()");
    (File::from(r), File::from(w))
}

/// Reads one byte, waiting at most [`SIGNAL_DEADLINE`]. `None` on timeout
/// or end of file (the writer is gone).
fn read_byte(r: &mut File) -> Option<u8> {
    let mut pfd = libc::pollfd { fd: r.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: pfd is one valid pollfd on our stack and we pass a count of 1.
    let n = unsafe { libc::poll(&mut pfd, 1, SIGNAL_DEADLINE.as_millis() as libc::c_int) };
    if n != 1 {
        return None;
    }
    let mut b = [0u8; 1];
    match r.read(&mut b) {
        Ok(1) => Some(b[0]),
        _ => None,
    }
}

/// Sleeps until killed (a child parked in position).
#[cfg(feature = "fault-injection")]
fn park() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn region_in(dir: &Path, c: &RegionConfig) -> Region {
    Region::create_file(&dir.join("sessions.region"), c).expect("create_file")
}

// ---------- the hammer ----------

/// Sessions each hammer child creates.
const PER_CHILD: u32 = 400;
/// Hammer children.
const CHILDREN: u32 = 4;
/// Rewrites of the "round" attribute of each kept session.
const ROUNDS: u32 = 3;

fn owner_value(c: u32, i: u32) -> Vec<u8> {
    format!("child {c} session {i}").into_bytes()
}

/// 1..=256 bytes, different for every (child, session).
fn blob_value(c: u32, i: u32) -> Vec<u8> {
    let len = 1 + ((c * 97 + i * 13) % 256) as usize;
    (0..len).map(|k| (k as u32 * 31 + c * 7 + i) as u8).collect()
}

fn round_value(c: u32, i: u32, round: u32) -> Vec<u8> {
    format!("{c}/{i}/{round}").into_bytes()
}

fn kept(i: u32) -> bool {
    i % 3 != 0
}

/// One hammer child's work. Writes "K <i> <id>" or "X <i> <id>" (kept or
/// invalidated) per session to `report`.
fn hammer_child(r: &Region, c: u32, go: &mut File, report: &Path) -> Result<(), String> {
    if read_byte(go).is_none() {
        return Err("no start signal".into());
    }
    let mut lines = String::new();
    let mut mine = Vec::new();
    let mut buf = Vec::new();
    let check = |id: &SessionId, name: &str, want: &[u8], buf: &mut Vec<u8>| -> Result<(), String> {
        match r.get_attr(id, name, false, T0, buf) {
            Ok(true) if buf.as_slice() == want => Ok(()),
            other => Err(format!("child {c}: get_attr({name}) gave {other:?} / {buf:?}, wanted {want:?}")),
        }
    };
    for i in 0..PER_CHILD {
        let id = r.create(T0).map_err(|e| format!("child {c}: create #{i}: {e}"))?.id;
        r.set_attr(&id, "owner", &owner_value(c, i), T0).map_err(|e| format!("child {c}: set owner #{i}: {e}"))?;
        r.set_attr(&id, "blob", &blob_value(c, i), T0).map_err(|e| format!("child {c}: set blob #{i}: {e}"))?;
        check(&id, "owner", &owner_value(c, i), &mut buf)?;
        check(&id, "blob", &blob_value(c, i), &mut buf)?;
        if kept(i) {
            mine.push((i, id));
            lines.push_str(&format!("K {i} {id}\n"));
        } else {
            r.invalidate(&id, T0).map_err(|e| format!("child {c}: invalidate #{i}: {e}"))?;
            match r.get(&id, false, T0) {
                Err(RegionError::NotFound) => {}
                other => return Err(format!("child {c}: invalidated #{i} still answers: {:?}", other.map(|s| s.meta))),
            }
            lines.push_str(&format!("X {i} {id}\n"));
        }
    }
    for round in 0..ROUNDS {
        for (i, id) in &mine {
            let v = round_value(c, *i, round);
            r.set_attr(id, "round", &v, T0).map_err(|e| format!("child {c}: set round {round} #{i}: {e}"))?;
            check(id, "round", &v, &mut buf)?;
        }
    }
    std::fs::write(report, lines).map_err(|e| format!("child {c}: write report: {e}"))
}

fn hammer(max_locks: u32) {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let r = region_in(dir.path(), &cfg(2000, max_locks, Duration::from_secs(10)));
    let (mut go_rx, mut go_tx) = pipe();
    let children: Vec<Child> = (0..CHILDREN)
        .map(|c| {
            let report = dir.path().join(format!("child-{c}.ids"));
            let (r, go) = (&r, &mut go_rx);
            spawn(dir.path().join(format!("child-{c}.err")), move || hammer_child(r, c, go, &report))
        })
        .collect();
    // Release every child at once so their operations interleave.
    go_tx.write_all(&[b'!'; CHILDREN as usize]).unwrap();
    for child in children {
        child.join().unwrap();
    }

    let invalidated = (0..PER_CHILD).filter(|&i| !kept(i)).count() as u64;
    let kept_n = PER_CHILD as u64 - invalidated;
    let n = CHILDREN as u64;
    let st = r.stats();
    assert_eq!(st.total(StripeCounter::Created), n * PER_CHILD as u64);
    assert_eq!(st.total(StripeCounter::Invalidated), n * invalidated);
    assert_eq!(st.total(StripeCounter::Writes), n * (2 * PER_CHILD as u64 + ROUNDS as u64 * kept_n));
    assert_eq!(st.total(StripeCounter::Reads), n * (2 * PER_CHILD as u64 + ROUNDS as u64 * kept_n));
    for c in [StripeCounter::Expired, StripeCounter::Evicted, StripeCounter::Repairs, StripeCounter::Dropped] {
        assert_eq!(st.total(c), 0, "{c:?}");
    }
    assert_eq!(st.total(StripeCounter::Timeouts), 0);
    assert_eq!(st.refused, 0);
    assert_eq!(r.live(), n * kept_n);
    assert_eq!(st.live, n * kept_n);

    let mut slots = std::collections::HashSet::new();
    let mut seen = 0u64;
    for c in 0..CHILDREN {
        let report = std::fs::read_to_string(dir.path().join(format!("child-{c}.ids"))).unwrap();
        for line in report.lines() {
            let mut f = line.split(' ');
            let (kind, i, id) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
            let i: u32 = i.parse().unwrap();
            let id = SessionId::parse(id.as_bytes()).expect("child reported a well-formed id");
            assert_eq!(kind == "K", kept(i), "{line}");
            if kind == "X" {
                assert!(matches!(r.get(&id, false, T0), Err(RegionError::NotFound)), "child {c} #{i} invalidated");
                continue;
            }
            seen += 1;
            assert!(slots.insert(id.slot), "slot {} handed out twice", id.slot);
            let s = r.get(&id, false, T0).unwrap_or_else(|e| panic!("child {c} #{i}: {e}"));
            assert_eq!(
                s.attributes,
                vec![
                    ("owner".to_string(), owner_value(c, i)),
                    ("blob".to_string(), blob_value(c, i)),
                    ("round".to_string(), round_value(c, i, ROUNDS - 1)),
                ],
                "child {c} #{i}"
            );
            assert_eq!((s.meta.created_ms, s.meta.last_access_ms, s.meta.values), (T0, T0, 3));
            assert!(s.meta.is_new, "writes refresh the session but leave it new (no touching read happened)");
        }
    }
    assert_eq!(seen, n * kept_n);
    assert!(r.verify().is_empty(), "{:?}", r.verify());
}

#[test]
fn forked_processes_hammer_one_region_and_counts_match() {
    hammer(16);
}

#[test]
fn max_locks_1_serialises_but_stays_correct() {
    hammer(1);
}

// ---------- faults ----------

/// Creates `n` sessions with two attributes each; returns their ids.
#[cfg(feature = "fault-injection")]
fn populate(r: &Region, n: u32) -> Vec<SessionId> {
    (0..n)
        .map(|i| {
            let id = r.create(T0).unwrap().id;
            r.update(&id, &[("owner", Some(&owner_value(9, i))), ("blob", Some(&blob_value(9, i)))], T0).unwrap();
            id
        })
        .collect()
}

/// Every session as it is now, by id.
#[cfg(feature = "fault-injection")]
fn snapshot(r: &Region, ids: &[SessionId]) -> Vec<(SessionId, sessiond::region::Session)> {
    ids.iter().map(|id| (*id, r.get(id, false, T0).unwrap())).collect()
}

/// A stripe holding at least three of `ids`, and those ids.
#[cfg(feature = "fault-injection")]
fn crowded_stripe(r: &Region, ids: &[SessionId]) -> (u32, Vec<SessionId>) {
    (0..r.geometry().params.max_locks)
        .map(|s| (s, ids.iter().copied().filter(|id| r.stripe_of(id.slot) == s).collect::<Vec<_>>()))
        .find(|(_, v)| v.len() >= 3)
        .expect("some stripe holds three sessions")
}

/// Forks a child that starts a torn write to `victim`, sends one byte on
/// the returned pipe while holding the lock mid-write, and parks.
#[cfg(feature = "fault-injection")]
fn torn_writer(r: &Region, victim: SessionId, dir: &Path) -> (Child, File) {
    let (mut rx, tx) = pipe();
    let child = spawn(dir.join("torn.err"), move || {
        let mut tx = tx;
        r.fault_torn_write(&victim, T0, move || {
            let _ = tx.write_all(b"T");
            park()
        })
        .map_err(|e| format!("fault_torn_write: {e}"))?;
        Err("fault_torn_write returned".into())
    });
    assert_eq!(read_byte(&mut rx), Some(b'T'), "the child did not reach the middle of its write");
    (child, rx)
}

#[cfg(feature = "fault-injection")]
fn counter(r: &Region, s: u32, c: StripeCounter) -> u64 {
    r.stats().stripes[s as usize].counters[c as usize]
}

#[cfg(feature = "fault-injection")]
#[test]
fn writer_killed_mid_write_is_repaired_by_next_locker() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let r = region_in(dir.path(), &cfg(64, 4, Duration::from_secs(5)));
    let ids = populate(&r, 32);
    let before = snapshot(&r, &ids);
    let (s, in_stripe) = crowded_stripe(&r, &ids);
    let victim = in_stripe[0];
    let live_before = r.live();

    let (child, _rx) = torn_writer(&r, victim, dir.path());
    let status = child.kill9();
    assert!(matches!(status, WaitStatus::Signaled(_, Signal::SIGKILL, _)), "{status:?}");

    // The next locker of the stripe inherits EOWNERDEAD and repairs.
    let neighbour = r.get(&in_stripe[1], false, T0).expect("the stripe works after its owner died");
    assert_eq!(neighbour, before.iter().find(|(id, _)| *id == in_stripe[1]).unwrap().1);
    assert_eq!(counter(&r, s, StripeCounter::Repairs), 1);
    assert_eq!(r.stats().total(StripeCounter::Repairs), 1);
    // Before anyone looks at the victim: the owner-dead repair already left
    // no odd sequence number, bad length or stale count anywhere.
    assert!(r.verify().is_empty(), "{:?}", r.verify());

    let victim_before = &before.iter().find(|(id, _)| *id == victim).unwrap().1;
    match r.get(&victim, false, T0) {
        Err(RegionError::NotFound) => {
            assert_eq!(r.live(), live_before - 1);
            assert_eq!(counter(&r, s, StripeCounter::Dropped), 1);
        }
        Ok(whole) => {
            assert_eq!(&whole, victim_before, "the victim is either gone or whole, never torn");
            assert_eq!(r.live(), live_before);
        }
        Err(e) => panic!("victim: {e}"),
    }
    for (id, sess) in before.iter().filter(|(id, _)| *id != victim) {
        assert_eq!(&r.get(id, false, T0).unwrap(), sess, "slot {}", id.slot);
    }
    assert!(r.verify().is_empty(), "{:?}", r.verify());
}

#[cfg(feature = "fault-injection")]
#[test]
fn stopped_lock_holder_times_out_other_stripes_serve() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let r = region_in(dir.path(), &cfg(64, 4, Duration::from_secs(5)));
    let ids = populate(&r, 16);
    let before = snapshot(&r, &ids);
    let held = ids[0];
    let s = r.stripe_of(held.slot);
    let free = *ids.iter().find(|id| r.stripe_of(id.slot) != s).expect("a session in another stripe");

    let (mut rx, tx) = pipe();
    let holder = &r;
    let child = spawn(dir.path().join("holder.err"), move || {
        let mut tx = tx;
        let _guard = holder.fault_hold_stripe(s).map_err(|e| format!("fault_hold_stripe({s}): {e}"))?;
        let _ = tx.write_all(b"H");
        park()
    });
    assert_eq!(read_byte(&mut rx), Some(b'H'), "the child did not take the lock");
    kill(child.pid, Signal::SIGSTOP).unwrap();

    let p = Region::attach(r.path(), Duration::from_millis(200)).unwrap();
    match p.get(&held, false, T0) {
        Err(RegionError::LockTimeout { stripe, waited }) => {
            assert_eq!((stripe, waited), (s, Duration::from_millis(200)));
        }
        other => panic!("expected LockTimeout on stripe {s}, got {:?}", other.map(|x| x.meta)),
    }
    assert_eq!(p.get(&free, false, T0).unwrap(), before.iter().find(|(id, _)| *id == free).unwrap().1);
    let st = p.stats();
    assert_eq!(st.lock_timeouts, 1);
    assert_eq!(st.stripes[s as usize].counters[StripeCounter::Timeouts as usize], 1);

    let status = child.kill9();
    assert!(matches!(status, WaitStatus::Signaled(_, Signal::SIGKILL, _)), "{status:?}");
    for (id, sess) in &before {
        assert_eq!(&p.get(id, false, T0).unwrap(), sess, "slot {}", id.slot);
    }
    assert_eq!(counter(&p, s, StripeCounter::Repairs), 1, "the first locker after the kill repaired");
    assert_eq!(p.stats().total(StripeCounter::Dropped), 0, "holding a lock tears nothing");
    assert_eq!(p.live(), 16);
    assert!(p.verify().is_empty(), "{:?}", p.verify());
}

#[cfg(feature = "fault-injection")]
#[test]
fn copy_taken_mid_write_reopens_with_fresh_locks_and_torn_slot_dropped() {
    use sessiond::datadir::{self, DataDirLock};

    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(64, 4, Duration::from_secs(5));
    let r = region_in(dir.path(), &c);
    let ids = populate(&r, 24);
    let before = snapshot(&r, &ids);
    let (s, in_stripe) = crowded_stripe(&r, &ids);
    let victim = in_stripe[0];

    // The "machine crash": the file as it is while a writer is mid-write,
    // its lock word still saying "held".
    let (child, _rx) = torn_writer(&r, victim, dir.path());
    let image = std::fs::read(r.path()).unwrap();
    child.kill9();
    drop(r);

    let dir2 = tempfile::tempdir().unwrap();
    let lock = DataDirLock::acquire(dir2.path()).unwrap();
    std::fs::write(dir2.path().join("Version"), format!("{}\n", sessiond::region::FORMAT_VERSION)).unwrap();
    let path = Region::path_for(dir2.path(), "default");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &image).unwrap();

    // Precondition: the copied lock is stale, so a tool that attaches
    // without re-initialising the locks waits in vain.
    let stale = Region::attach(&path, Duration::from_millis(200)).unwrap();
    assert!(
        matches!(stale.get(&in_stripe[1], false, T0), Err(RegionError::LockTimeout { stripe, .. }) if stripe == s),
        "the copy should carry the held lock of stripe {s}"
    );
    drop(stale);

    let c2 = RegionConfig { lock_timeout: Duration::from_millis(200), ..c };
    let (r2, rep) = datadir::open_regions(&lock, std::slice::from_ref(&c2)).unwrap().remove(0);
    assert!(!rep.created && rep.rebuilt.is_none() && rep.migrated.is_none() && !rep.was_clean, "{rep:?}");
    assert_eq!(rep.repaired, 1, "the torn slot was dropped at open");
    // Every stripe lock is free again: verify takes each within 200 ms.
    assert!(r2.verify().is_empty(), "{:?}", r2.verify());
    assert!(matches!(r2.get(&victim, false, T0), Err(RegionError::NotFound)));
    for (id, sess) in before.iter().filter(|(id, _)| *id != victim) {
        assert_eq!(&r2.get(id, false, T0).unwrap(), sess, "slot {}", id.slot);
    }
    assert_eq!(r2.live(), 23);
    assert_eq!(r2.stats().total(StripeCounter::Dropped), 1);
    // And the stripe takes writes again.
    r2.set_attr(&in_stripe[1], "after", b"crash", T0).unwrap();
    let mut buf = Vec::new();
    assert!(r2.get_attr(&in_stripe[1], "after", false, T0, &mut buf).unwrap());
    assert_eq!(buf, b"crash");
}

/// The durable change mark: a worker that writes and is SIGKILLed before
/// any lifecycle event left its process (its event queue is never
/// drained here) still leaves the slot marked changed, and the mark
/// survives a server restart (locks re-initialised, stripes repaired).
#[test]
fn a_write_killed_before_its_events_were_delivered_is_still_marked_changed_after_restart() {
    use sessiond::datadir::{self, DataDirLock};
    use sessiond::session::{ContextNames, Event, EventHub, Sessions, Subscriber};
    use std::sync::Arc;

    struct Never;
    impl Subscriber for Never {
        fn name(&self) -> &'static str {
            "never"
        }
        fn deliver(&self, _: &ContextNames, _: &[Event]) {
            unreachable!("nothing dispatches in this test")
        }
    }

    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let lock = DataDirLock::acquire(dir.path()).unwrap();
    let c = cfg(64, 4, Duration::from_secs(5));
    let (r, _) = datadir::open_regions(&lock, std::slice::from_ref(&c)).unwrap().remove(0);
    let hub = Arc::new(EventHub::new(64, vec![Arc::new(Never)], ContextNames::default(), None));
    let sessions = Sessions::new(Arc::new(r)).with_hub(Some(hub.clone()));
    // A door call outside cluster mode never waits: polled once, it is done.
    use futures_util::FutureExt;
    let id = sessions.create(T0).now_or_never().unwrap().unwrap().id;
    let acked = sessions.change_mark(id.slot).unwrap().expect("create marks the slot");
    assert!(sessions.acknowledge(id.slot, acked).unwrap(), "a store saw the session");
    assert_eq!(sessions.change_mark(id.slot).unwrap(), None);
    assert_eq!(hub.published(), 1, "the create queued its event in this process");

    let err = dir.path().join("child.err");
    let child = spawn(err, || {
        sessions
            .set_attr(&[id], "paid", b"yes", T0)
            .now_or_never()
            .ok_or("set_attr waited")?
            .map_err(|e| format!("set_attr: {e}"))?;
        // Killed with the event still in this process's queue.
        kill(nix::unistd::getpid(), Signal::SIGKILL).map_err(|e| format!("kill: {e}"))?;
        Err("still alive after SIGKILL".into())
    });
    let why = child.join().unwrap_err();
    assert!(why.contains("SIGKILL"), "the child should die by SIGKILL: {why}");
    assert_eq!(hub.published(), 1, "the child's event never reached this process");
    drop(sessions);

    // Restart: the regions are opened again, locks re-initialised, stripes repaired.
    let (r2, rep) = datadir::open_regions(&lock, std::slice::from_ref(&c)).unwrap().remove(0);
    assert_eq!(rep.repaired, 0, "{rep:?}");
    let after = Sessions::new(Arc::new(r2));
    let seq = after.change_mark(id.slot).unwrap().expect("the killed writer's change is still marked");
    assert!(seq > acked, "change sequence {seq} should be past the acknowledged {acked}");
    assert_eq!(after.changed_slots(0, 100), vec![id.slot]);
    let mut v = Vec::new();
    assert!(after.get_attr(&[id], "paid", false, T0, &mut v).now_or_never().unwrap().unwrap().value);
    assert_eq!(v, b"yes");
    assert!(after.acknowledge(id.slot, seq).unwrap());
    assert_eq!(after.stats().changed, 0);
}

/// A writer SIGKILLed in the middle of a write: repair drops the torn
/// slot, and its change mark stays set, so a store learns that the
/// session it may hold is gone.
#[cfg(feature = "fault-injection")]
#[test]
fn a_torn_write_leaves_the_dropped_slot_marked_changed() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(16, 2, Duration::from_secs(5));
    let r = region_in(dir.path(), &c);
    let ids = populate(&r, 4);
    let victim = ids[0];
    for id in &ids {
        let s = r.change_mark(id.slot).unwrap().unwrap();
        assert!(r.acknowledge(id.slot, s).unwrap());
    }
    let (child, _rx) = torn_writer(&r, victim, dir.path());
    assert!(matches!(child.kill9(), WaitStatus::Signaled(_, Signal::SIGKILL, _)));
    // The next locker repairs the stripe; the victim is gone and marked.
    assert!(matches!(r.get(&victim, false, T0), Err(RegionError::NotFound)));
    assert!(r.change_mark(victim.slot).unwrap().is_some(), "the dropped slot must stay marked");
    for id in &ids[1..] {
        assert_eq!(r.change_mark(id.slot).unwrap(), None, "slot {} was not touched", id.slot);
    }
}
