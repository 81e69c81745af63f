//! Criterion benchmarks of the session region (results and the machine
//! they came from go in `docs/benchmarks.md`):
//!
//! - `single/*`: one process, one thread: `get_attr` and `set_attr` of a
//!   1 KiB value, `create` + `invalidate` as a pair, and `create` alone
//!   (the region is emptied outside the timed part so it never fills).
//! - `reap_1m_idle/*`: one reaper sweep over 1,000,000 slots of which none
//!   has expired, with every slot free and with every slot live.
//! - `principal_1m/*`: 1,000,000 live sessions with principals (5 per
//!   principal): a reaper pass, a principal lookup (region, and the
//!   session layer), and a cap check refused at the cap.
//! - `multiprocess/locks-L/P`: P forked processes each doing
//!   [`OPS_PER_PROCESS`] operations (half `get_attr`, half `set_attr`, 1 KiB
//!   values) on one shared region with L stripes, every process over all
//!   [`SHARED_SESSIONS`] sessions; the figure is the wall time of the whole
//!   fork/join, reported as operations per second.
//! - `multiprocess/locks-64-own-stripes/P`: the same, but process p only
//!   touches sessions in stripes `s % P == p`, so no lock, stripe counter,
//!   slot or expiry word is shared: the scaling the machine allows when
//!   nothing in the region moves between CPUs.
//! - `fork_join_only/P`: the same fork/join with no operations: the fixed
//!   cost included in every `multiprocess` figure.
//!
//! - `session_layer/<op>/<path>`: the same operations through the session
//!   layer (`session::Sessions`) against the bare region call: `direct`
//!   (the region API), `service` (the service, no event hub: events are
//!   discarded), and `service+subscriber` (an event hub with a subscriber
//!   that takes every batch; the dispatcher's drain runs on the same thread
//!   every 256 operations, as a worker's does between requests, so its cost
//!   is included). The difference is the cost of the event hand-off.
//!
//! Run: `cargo bench --bench region`. Sample sizes and measurement times
//! are kept small so the run itself takes under three minutes.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork};
use sessiond::region::{LayoutParams, Region, RegionConfig, SessionId, WhenFull};
use sessiond::session::{ContextNames, Event, EventHub, Sessions, Subscriber};

/// A fixed "now"; sessions live an hour past it, so nothing expires.
const T0: u64 = 1_700_000_000_000;
/// Operations each forked process runs per measured iteration: enough that
/// fork, first-touch page faults and waking an idle CPU are a small part.
const OPS_PER_PROCESS: u64 = 200_000;
/// Sessions shared by the forked processes.
const SHARED_SESSIONS: u32 = 1024;

fn cfg(max_sessions: u32, max_values: u32, max_value_size: u32, max_locks: u32) -> RegionConfig {
    RegionConfig {
        context: "bench".into(),
        layout: LayoutParams { max_sessions, max_values, max_name_size: 16, max_value_size, max_locks },
        node_id: 1,
        timeout_s: 3600,
        absolute_timeout_s: 0,
        when_full: WhenFull::Refuse,
        lock_timeout: Duration::from_secs(10),
    }
}

fn region(dir: &Path, c: &RegionConfig) -> Region {
    Region::create_file(&dir.join("sessions.region"), c).expect("create_file")
}

/// A region of `n` sessions, each holding "v" = 1 KiB.
fn region_of_1k_values(dir: &Path, n: u32, max_locks: u32) -> (Region, Vec<SessionId>) {
    let r = region(dir, &cfg(n, 4, 1024, max_locks));
    let value = vec![0x5a; 1024];
    let ids = (0..n)
        .map(|_| {
            let id = r.create(T0).unwrap().id;
            r.set_attr(&id, "v", &value, T0).unwrap();
            id
        })
        .collect();
    (r, ids)
}

fn single(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (r, ids) = region_of_1k_values(dir.path(), 1024, 16);
    let id = ids[517];
    let mut g = c.benchmark_group("single");
    g.sample_size(50).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(2));

    let mut buf = Vec::with_capacity(1024);
    g.bench_function("get_attr_1k", |b| {
        b.iter(|| {
            assert!(r.get_attr(black_box(&id), "v", false, T0, &mut buf).unwrap());
            black_box(buf.len())
        })
    });
    g.bench_function("get_attr_1k_touch", |b| {
        b.iter(|| {
            assert!(r.get_attr(black_box(&id), "v", true, T0, &mut buf).unwrap());
            black_box(buf.len())
        })
    });
    let value = vec![0xa5; 1024];
    g.bench_function("set_attr_1k", |b| b.iter(|| r.set_attr(black_box(&id), "v", black_box(&value), T0).unwrap()));

    // Creation: a separate, small-slot region with room to spare.
    let dir2 = tempfile::tempdir().unwrap();
    let small = region(dir2.path(), &cfg(65_536, 1, 16, 64));
    g.bench_function("create_invalidate", |b| {
        b.iter(|| {
            let m = small.create(T0).unwrap();
            small.invalidate(&m.id, T0).unwrap();
        })
    });
    // Never fill more than half the region, so `create` does not start
    // skipping full stripes; the emptying is not timed.
    let batch = 32_768u64;
    let mut made = Vec::with_capacity(batch as usize);
    g.bench_function("create", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(batch);
                let t = Instant::now();
                for _ in 0..n {
                    made.push(small.create(T0).unwrap().id);
                }
                timed += t.elapsed();
                for id in made.drain(..) {
                    small.invalidate(&id, T0).unwrap();
                }
                left -= n;
            }
            timed
        })
    });
    g.finish();
}

/// Takes every batch and keeps only a count (what a quick subscriber costs).
struct CountingSubscriber(std::sync::atomic::AtomicU64);

impl Subscriber for CountingSubscriber {
    fn name(&self) -> &'static str {
        "count"
    }
    fn deliver(&self, _: &ContextNames, batch: &[Event]) {
        self.0.fetch_add(batch.len() as u64, std::sync::atomic::Ordering::Relaxed);
    }
}

fn session_layer(c: &mut Criterion) {
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let (r, ids) = region_of_1k_values(dir.path(), 1024, 16);
    let id = ids[517];
    let direct = Arc::new(r);
    let service = Sessions::new(direct.clone());
    let sub = Arc::new(CountingSubscriber(Default::default()));
    let hub = Arc::new(EventHub::new(4096, vec![sub.clone()], ContextNames::default(), None));
    let with_sub = service.with_hub(Some(hub.clone()));
    let mut g = c.benchmark_group("session_layer");
    g.sample_size(50).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(2));

    // Runs `op` iters times; with a hub, drains it every 256 operations.
    fn timed(iters: u64, hub: Option<&EventHub>, mut op: impl FnMut()) -> Duration {
        let t = Instant::now();
        for i in 0..iters {
            op();
            if let Some(h) = hub
                && i % 256 == 255
            {
                h.dispatch();
            }
        }
        let e = t.elapsed();
        if let Some(h) = hub {
            h.dispatch();
        }
        e
    }

    /// A door call outside cluster mode never waits: polled once, it is done.
    fn now<T, E: std::fmt::Debug>(f: impl std::future::Future<Output = Result<T, E>>) -> T {
        futures_util::FutureExt::now_or_never(f).expect("a local door call completes at once").unwrap()
    }
    let mut buf = Vec::with_capacity(1024);
    g.bench_function("get_attr_1k_touch/direct", |b| {
        b.iter_custom(|n| timed(n, None, || assert!(direct.get_attr(black_box(&id), "v", true, T0, &mut buf).unwrap())))
    });
    g.bench_function("get_attr_1k_touch/service", |b| {
        b.iter_custom(|n| {
            timed(n, None, || {
                assert!(now(service.get_attr(black_box(std::slice::from_ref(&id)), "v", true, T0, &mut buf)).value)
            })
        })
    });
    g.bench_function("get_attr_1k_touch/service+subscriber", |b| {
        b.iter_custom(|n| {
            timed(n, Some(&hub), || {
                assert!(now(with_sub.get_attr(black_box(std::slice::from_ref(&id)), "v", true, T0, &mut buf)).value)
            })
        })
    });
    let value = vec![0xa5; 1024];
    g.bench_function("set_attr_1k/direct", |b| {
        b.iter_custom(|n| timed(n, None, || direct.set_attr(black_box(&id), "v", black_box(&value), T0).unwrap()))
    });
    g.bench_function("set_attr_1k/service", |b| {
        b.iter_custom(|n| {
            timed(n, None, || {
                now(service.set_attr(black_box(std::slice::from_ref(&id)), "v", black_box(&value), T0)).value
            })
        })
    });
    g.bench_function("set_attr_1k/service+subscriber", |b| {
        b.iter_custom(|n| {
            timed(n, Some(&hub), || {
                now(with_sub.set_attr(black_box(std::slice::from_ref(&id)), "v", black_box(&value), T0)).value
            })
        })
    });
    let dir2 = tempfile::tempdir().unwrap();
    let small = Arc::new(region(dir2.path(), &cfg(65_536, 1, 16, 64)));
    let small_service = Sessions::new(small.clone());
    let small_sub = small_service.with_hub(Some(hub.clone()));
    g.bench_function("create_invalidate/direct", |b| {
        b.iter_custom(|n| {
            timed(n, None, || {
                let m = small.create(T0).unwrap();
                small.invalidate(&m.id, T0).unwrap();
            })
        })
    });
    g.bench_function("create_invalidate/service", |b| {
        b.iter_custom(|n| {
            timed(n, None, || {
                let m = now(small_service.create(T0));
                now(small_service.invalidate(std::slice::from_ref(&m.id), T0));
            })
        })
    });
    g.bench_function("create_invalidate/service+subscriber", |b| {
        b.iter_custom(|n| {
            timed(n, Some(&hub), || {
                let m = now(small_sub.create(T0));
                now(small_sub.invalidate(std::slice::from_ref(&m.id), T0));
            })
        })
    });
    g.finish();
    assert!(hub.dropped() == 0, "the bench queue overflowed: {} events dropped", hub.dropped());
    // (Nothing ran when a filter skipped this group.)
    assert!(hub.published() == 0 || sub.0.load(std::sync::atomic::Ordering::Relaxed) > 0);
}

fn reap_1m_idle(c: &mut Criterion) {
    const SLOTS: u32 = 1_000_000;
    let mut g = c.benchmark_group("reap_1m_idle");
    g.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(2));
    let dir = tempfile::tempdir().unwrap();
    // 1 value x 16 bytes: 128-byte slots, a 136 MB file.
    let r = region(dir.path(), &cfg(SLOTS, 1, 16, 64));
    g.bench_function("all_free", |b| {
        b.iter(|| {
            let rep = r.reap(T0).unwrap();
            assert_eq!(rep.freed, 0);
            black_box(rep)
        })
    });
    for _ in 0..SLOTS {
        r.create(T0).unwrap();
    }
    assert_eq!(r.live(), SLOTS as u64);
    g.bench_function("all_live", |b| {
        b.iter(|| {
            let rep = r.reap(T0).unwrap();
            assert_eq!(rep.freed, 0);
            black_box(rep)
        })
    });
    g.finish();
}

/// 1,000,000 live sessions, each with a principal (200,000 principals of
/// 5 sessions): a reaper pass of that region beside a principal lookup
/// (all of one principal's sessions, through the region and through the
/// session layer) and a cap check (a create for a principal at its cap of
/// 5 under `refuse`: the create, the check, which refuses, and the undo).
fn principal_1m(c: &mut Criterion) {
    use sessiond::config::WhenPrincipalFull;
    use sessiond::region::{Edit, MetaChange};
    use sessiond::session::{Policy, SessionError};
    const SLOTS: u32 = 1_000_000;
    const PRINCIPALS: u32 = 200_000;
    let mut g = c.benchmark_group("principal_1m");
    g.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    let dir = tempfile::tempdir().unwrap();
    let r = std::sync::Arc::new(region(dir.path(), &cfg(SLOTS + 1, 1, 16, 64)));
    for i in 0..SLOTS {
        let id = r.create(T0).unwrap().id;
        let name = format!("user-{}", i % PRINCIPALS);
        let meta = MetaChange { principal: Some(Some(&name)), ..MetaChange::default() };
        r.edit_ev(&id, &Edit { meta, ..Edit::default() }, T0, &mut sessiond::region::EventBuf::discard()).unwrap();
    }
    assert_eq!(r.live(), SLOTS as u64);
    g.bench_function("reap_pass", |b| {
        b.iter(|| {
            let rep = r.reap(T0).unwrap();
            assert_eq!(rep.freed, 0);
            black_box(rep)
        })
    });
    g.bench_function("lookup/region", |b| {
        b.iter(|| {
            let (v, next) = r.principal_sessions(black_box("user-4242"), 0, 1000, T0).unwrap();
            assert_eq!((v.len(), next), (5, None));
            black_box(v)
        })
    });
    let policy = Policy { max_timeout_s: 86_400, max_per_principal: 5, when_principal_full: WhenPrincipalFull::Refuse };
    let s = Sessions::new(r.clone()).with_policy(policy);
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    g.bench_function("lookup/session_layer", |b| {
        b.iter(|| {
            let (v, next) = rt.block_on(s.principal_page(black_box("user-4242"), None, 1000, T0)).unwrap();
            assert_eq!((v.len(), next), (5, None));
            black_box(v)
        })
    });
    g.bench_function("cap_check_refused", |b| {
        b.iter(|| {
            let p = s.begin_create(T0).unwrap();
            let meta = MetaChange { principal: Some(Some("user-4242")), ..MetaChange::default() };
            let r = rt.block_on(p.commit_edit(&Edit { meta, ..Edit::default() }, T0));
            assert!(matches!(r, Err(SessionError::TooManySessions { count: 5, cap: 5 })), "{r:?}");
        })
    });
    assert_eq!(r.live(), SLOTS as u64, "every refused create was undone");
    g.finish();
}

/// One forked worker: `ops` alternating `get_attr` and `set_attr` over the
/// shared sessions in an order of its own. Returns false on any error.
fn worker(r: &Region, ids: &[SessionId], seed: u64, ops: u64) -> bool {
    let value = vec![seed as u8; 1024];
    let mut buf = Vec::with_capacity(1024);
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for k in 0..ops {
        // xorshift64: a cheap, per-process sequence of sessions.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let id = &ids[(x % ids.len() as u64) as usize];
        let ok = if k % 2 == 0 {
            matches!(r.get_attr(id, "v", false, T0, &mut buf), Ok(true))
        } else {
            r.set_attr(id, "v", &value, T0).is_ok()
        };
        if !ok {
            return false;
        }
    }
    true
}

/// Forks one worker per entry of `sets` (worker p uses `sets[p]`), each
/// running `ops` operations, and waits for all of them; panics if one
/// failed.
fn fork_join(r: &Region, sets: &[Vec<SessionId>], ops: u64) {
    let mut pids = Vec::with_capacity(sets.len());
    for (p, ids) in sets.iter().enumerate() {
        // SAFETY: criterion runs benchmarks on one thread, so no other
        // thread's lock is copied held into the child; the child only runs
        // region calls on the inherited MAP_SHARED mapping and `_exit`s.
        match unsafe { fork() }.expect("fork()") {
            ForkResult::Parent { child } => pids.push(child),
            ForkResult::Child => {
                let ok = worker(r, ids, p as u64 + 1, ops);
                // SAFETY: ends the child at once, without running the
                // parent's destructors or atexit handlers.
                unsafe { libc::_exit(if ok { 0 } else { 1 }) }
            }
        }
    }
    for pid in pids {
        match waitpid(pid, None).expect("waitpid") {
            WaitStatus::Exited(_, 0) => {}
            other => panic!("worker {pid} failed: {other:?}"),
        }
    }
}

fn multiprocess(c: &mut Criterion) {
    let mut g = c.benchmark_group("multiprocess");
    // Flat sampling: ten samples of equal size, so the slow, contended
    // one-lock cases stay within the time budget.
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for (name, locks, own) in [("locks-1", 1u32, false), ("locks-64", 64, false), ("locks-64-own-stripes", 64, true)] {
        let dir = tempfile::tempdir().unwrap();
        let (r, ids) = region_of_1k_values(dir.path(), SHARED_SESSIONS, locks);
        // With one process "own stripes" is the plain case: skip it.
        for procs in [1u64, 2, 4].into_iter().filter(|&p| !(own && p == 1)) {
            let sets: Vec<Vec<SessionId>> = (0..procs)
                .map(|p| {
                    if own {
                        ids.iter().copied().filter(|id| r.stripe_of(id.slot) as u64 % procs == p).collect()
                    } else {
                        ids.clone()
                    }
                })
                .collect();
            g.throughput(Throughput::Elements(procs * OPS_PER_PROCESS));
            g.bench_with_input(BenchmarkId::new(name, procs), &sets, |b, sets| {
                b.iter_custom(|iters| {
                    let t = Instant::now();
                    for _ in 0..iters {
                        fork_join(&r, sets, OPS_PER_PROCESS);
                    }
                    t.elapsed()
                })
            });
        }
        assert!(r.verify().is_empty(), "{:?}", r.verify());
    }
    g.finish();
}

fn fork_join_only(c: &mut Criterion) {
    let mut g = c.benchmark_group("fork_join_only");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    let dir = tempfile::tempdir().unwrap();
    let (r, ids) = region_of_1k_values(dir.path(), SHARED_SESSIONS, 64);
    for procs in [1usize, 2, 4] {
        let sets = vec![ids.clone(); procs];
        g.bench_with_input(BenchmarkId::from_parameter(procs), &sets, |b, sets| {
            b.iter_custom(|iters| {
                let t = Instant::now();
                for _ in 0..iters {
                    fork_join(&r, sets, 0);
                }
                t.elapsed()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, single, session_layer, reap_1m_idle, principal_1m, multiprocess, fork_join_only);
criterion_main!(benches);
