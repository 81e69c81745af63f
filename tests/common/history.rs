//! Jepsen-style histories of per-session registers, and a checker for them.
//!
//! A test records every operation it sends: the invoke time, the completion
//! time and the outcome, on one monotonic clock. An operation that timed
//! out, lost its connection or got a 5xx is *indeterminate* (Jepsen's
//! `:info`): it may or may not have taken effect, so the checker lets it
//! take effect at any point after its invoke, or never. A definite refusal
//! (404, 409) took no effect and is left out.
//!
//! Each session is one register whose value is the attribute `v`; every
//! write writes a value no other write uses, so a read names the write it
//! saw. The state is `Alive(value)` or `Ended`: a logout is final, so a
//! read that sees a value after an acknowledged invalidation has no
//! linearization.
//!
//! [`check_session`] is Wing and Gong's search with Lowe's memo of
//! (linearized set, state) pairs (G. Lowe, "Testing for linearizability",
//! 2017): it walks the invoke and return events in time order, linearizes a
//! pending operation when the model allows it, and backtracks when an
//! operation returns before it could be linearized. Reads may be given a
//! staleness allowance: a read may then take effect up to that much before
//! its invoke, which checks "never staler than the bound" in the same
//! search. Written here: the search is small, and a crate for it would
//! bring a model framework the tests do not need.
//!
//! Beside linearizability the history yields the figures the cluster tests
//! report: acknowledged writes lost (a write that completed before the
//! write of the session's final value began), stale reads and how stale,
//! ids forked into two successors, and logouts undone.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What an operation asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// Set the register to a value no other write uses.
    Write(u64),
    /// Read the register.
    Read,
    /// End the session (a logout).
    Invalidate,
    /// A rotation that got no answer: it may have moved the session to an
    /// id the client never learnt, which ends the session for the client.
    /// (An answered rotation does not change the register and is not
    /// recorded.)
    Rotate,
}

/// How an operation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Acknowledged. For a read: `Some(value)`, or `None` when the session
    /// was not found (recorded only for the final reads, where "not found"
    /// must mean "ended").
    Ok(Option<u64>),
    /// A definite refusal: no effect.
    Fail,
    /// Timed out, connection lost, 5xx: may or may not have taken effect.
    Unknown,
}

/// One operation of one client on one session.
#[derive(Clone, Debug)]
pub struct Event {
    /// The session (the register).
    pub session: usize,
    /// The client thread.
    pub process: usize,
    /// The node it was sent to.
    pub node: u32,
    /// What it asked.
    pub op: Op,
    /// When it was sent, since the history began.
    pub invoke: Duration,
    /// When its answer came (`None` until then, and for an indeterminate one).
    pub complete: Option<Duration>,
    /// How it ended.
    pub outcome: Outcome,
    /// The HTTP status (0: no answer), for the printed history.
    pub status: u16,
}

/// A history being recorded by several client threads.
pub struct History {
    start: Instant,
    events: Mutex<Vec<Event>>,
    /// Successors of each id: an id that gets two is forked.
    successors: Mutex<BTreeMap<String, HashSet<String>>>,
}

impl Default for History {
    fn default() -> Self {
        History::new()
    }
}

impl History {
    /// An empty history; its clock starts now.
    pub fn new() -> History {
        History { start: Instant::now(), events: Mutex::new(Vec::new()), successors: Mutex::new(BTreeMap::new()) }
    }

    /// Records an invoke; returns its index for [`History::complete`].
    pub fn invoke(&self, session: usize, process: usize, node: u32, op: Op) -> usize {
        let mut ev = self.events.lock().unwrap();
        ev.push(Event {
            session,
            process,
            node,
            op,
            invoke: self.start.elapsed(),
            complete: None,
            outcome: Outcome::Unknown,
            status: 0,
        });
        ev.len() - 1
    }

    /// Records the completion of operation `i`.
    pub fn complete(&self, i: usize, outcome: Outcome, status: u16) {
        let now = self.start.elapsed();
        let mut ev = self.events.lock().unwrap();
        ev[i].outcome = outcome;
        ev[i].status = status;
        if outcome != Outcome::Unknown {
            ev[i].complete = Some(now);
        }
    }

    /// Records that `old` was answered with the new id `new` (a rotation or
    /// a re-issue after a takeover).
    pub fn successor(&self, old: &str, new: &str) {
        if old != new {
            self.successors.lock().unwrap().entry(old.to_string()).or_default().insert(new.to_string());
        }
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    /// Every (id, successor) answered, for a printed fork.
    pub fn successor_edges(&self) -> Vec<(String, String)> {
        let g = self.successors.lock().unwrap();
        g.iter().flat_map(|(k, v)| v.iter().map(move |n| (k.clone(), n.clone()))).collect()
    }

    /// Ids answered with two different successors.
    ///
    /// A re-issue after a takeover names the new owner's slot, so two
    /// different nodes taking the same id over one after the other give
    /// two successors legitimately (the id is still valid for the second);
    /// only two successors that are both *live* are a fork, which is why
    /// the caller checks the ids this returns against the nodes.
    pub fn multi_successors(&self) -> Vec<(String, Vec<String>)> {
        self.successors
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, s)| s.len() > 1)
            .map(|(k, s)| (k.clone(), s.iter().cloned().collect()))
            .collect()
    }
}

/// The register's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum State {
    Alive(u64),
    Ended,
}

/// One operation as the search sees it.
#[derive(Clone, Copy, Debug)]
struct COp {
    op: Op,
    /// For a read, what it saw (`None`: not found).
    seen: Option<u64>,
    call: Duration,
    /// `None`: indeterminate, returns "at infinity".
    ret: Option<Duration>,
}

fn step(s: State, o: &COp) -> Option<State> {
    match (o.op, s) {
        (Op::Write(v), State::Alive(_)) => Some(State::Alive(v)),
        (Op::Write(_), State::Ended) => None,
        (Op::Read, State::Alive(x)) if o.seen == Some(x) => Some(s),
        (Op::Read, State::Ended) if o.seen.is_none() => Some(s),
        (Op::Read, _) => None,
        (Op::Invalidate | Op::Rotate, _) => Some(State::Ended),
    }
}

/// The operations of the history that enter the search, in `events` order:
/// acknowledged ones and indeterminate changes. Definite refusals and
/// indeterminate reads cannot constrain anything and are left out.
///
/// Indeterminate changes are narrowed first, without losing a
/// linearization, or the search would try each of them at every later
/// point:
/// - a write whose value no read saw is left out: applying it can only make
///   later reads fail;
/// - a write whose value a read saw took effect before that read returned:
///   it returns then;
/// - an indeterminate end (a logout, an unanswered rotation) takes effect
///   after every read that saw a value began, if at all.
fn ops_of(events: &[&Event], read_slack: Duration) -> Vec<COp> {
    let mut seen_by: BTreeMap<u64, Duration> = BTreeMap::new();
    let mut last_value_read = Duration::ZERO;
    for e in events {
        if let (Op::Read, Outcome::Ok(Some(x)), Some(done)) = (e.op, e.outcome, e.complete) {
            let t = seen_by.entry(x).or_insert(done);
            *t = (*t).min(done);
            last_value_read = last_value_read.max(e.invoke);
        }
    }
    events
        .iter()
        .filter_map(|e| match (e.op, e.outcome) {
            (_, Outcome::Fail) | (Op::Read, Outcome::Unknown) => None,
            (Op::Read, Outcome::Ok(seen)) => {
                Some(COp { op: e.op, seen, call: e.invoke.saturating_sub(read_slack), ret: e.complete })
            }
            (_, Outcome::Ok(_)) => Some(COp { op: e.op, seen: None, call: e.invoke, ret: e.complete }),
            (Op::Write(x), Outcome::Unknown) => {
                let ret = *seen_by.get(&x)?;
                Some(COp { op: e.op, seen: None, call: e.invoke, ret: Some(ret.max(e.invoke)) })
            }
            (_, Outcome::Unknown) => Some(COp { op: e.op, seen: None, call: e.invoke.max(last_value_read), ret: None }),
        })
        .collect()
}

/// Whether `ops`, starting from `init`, have a linearization.
fn linearizable(init: u64, ops: &[COp]) -> bool {
    let n = ops.len();
    // Events: (time, is_return, op). At equal times returns go first, so
    // operations that only touch are not concurrent.
    let mut evs: Vec<(Duration, bool, usize)> = Vec::with_capacity(2 * n);
    for (i, o) in ops.iter().enumerate() {
        evs.push((o.call, false, i));
        evs.push((o.ret.unwrap_or(Duration::MAX), true, i));
    }
    evs.sort_by_key(|&(t, is_ret, i)| (t, !is_ret, i));
    // A doubly linked list over evs, with a head sentinel at index m.
    let m = evs.len();
    let mut next: Vec<usize> = (1..=m).collect();
    next.push(0);
    // prev[0] is the head; prev[j] = j - 1 after it; the head's own is unused.
    let mut prev: Vec<usize> = std::iter::once(m).chain(0..m.saturating_sub(1)).chain(std::iter::once(m)).collect();
    next[m] = if m > 0 { 0 } else { usize::MAX };
    if m > 0 {
        next[m - 1] = usize::MAX;
    }
    let mut ret_of = vec![0usize; n];
    for (j, &(_, is_ret, i)) in evs.iter().enumerate() {
        if is_ret {
            ret_of[i] = j;
        }
    }
    let unlink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, j: usize| {
        let (p, nx) = (prev[j], next[j]);
        next[p] = nx;
        if nx != usize::MAX {
            prev[nx] = p;
        }
    };
    let relink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, j: usize| {
        let (p, nx) = (prev[j], next[j]);
        next[p] = j;
        if nx != usize::MAX {
            prev[nx] = j;
        }
    };
    let determinate = ops.iter().filter(|o| o.ret.is_some()).count();
    let mut done_determinate = 0usize;
    let words = n.div_ceil(64).max(1);
    let mut bits = vec![0u64; words];
    let mut cache: HashSet<(Vec<u64>, State)> = HashSet::new();
    let mut stack: Vec<(usize, State)> = Vec::new();
    let mut state = State::Alive(init);
    let mut cur = next[m];
    loop {
        if done_determinate == determinate {
            return true;
        }
        if cur == usize::MAX {
            // Only indeterminate returns are left unreachable; cannot happen
            // while a determinate op is pending, but stay safe.
            return false;
        }
        let (_, is_ret, i) = evs[cur];
        if !is_ret {
            if let Some(ns) = step(state, &ops[i]) {
                bits[i / 64] |= 1 << (i % 64);
                if cache.insert((bits.clone(), ns)) {
                    stack.push((cur, state));
                    state = ns;
                    if ops[i].ret.is_some() {
                        done_determinate += 1;
                    }
                    unlink(&mut next, &mut prev, cur);
                    unlink(&mut next, &mut prev, ret_of[i]);
                    cur = next[m];
                    continue;
                }
                bits[i / 64] &= !(1 << (i % 64));
            }
            cur = next[cur];
        } else {
            // Operation i returned before it could be linearized: undo the last choice.
            let Some((c, s)) = stack.pop() else { return false };
            let (_, _, ci) = evs[c];
            state = s;
            bits[ci / 64] &= !(1 << (ci % 64));
            if ops[ci].ret.is_some() {
                done_determinate -= 1;
            }
            relink(&mut next, &mut prev, ret_of[ci]);
            relink(&mut next, &mut prev, c);
            cur = next[c];
        }
    }
}

/// What the checker found in one session's history.
#[derive(Debug, Default)]
pub struct Verdict {
    /// Whether a linearization exists (with the read allowance given).
    pub linearizable: bool,
    /// When not: a smallest subset of the session's events that still has
    /// none, one per line.
    pub minimal: Vec<String>,
    /// Acknowledged writes that completed before the write of the final
    /// value began (or any acknowledged write, when the session is gone at
    /// the end without an acknowledged logout).
    pub lost_writes: usize,
    /// Reads that saw a value older than a write acknowledged before the
    /// read began.
    pub stale_reads: usize,
    /// The largest such staleness: from the newer write's acknowledgement
    /// to the stale read's invoke.
    pub max_staleness: Duration,
    /// Reads that saw a value later than the read allowance after a logout
    /// was acknowledged.
    pub logouts_undone: usize,
}

/// One event as the printed histories show it.
pub fn show(e: &Event) -> String {
    let done = match e.complete {
        Some(c) => format!("{:>9.3}", c.as_secs_f64() * 1e3),
        None => "        ?".to_string(),
    };
    format!(
        "  [{:>9.3} .. {done} ms] client {} node {} {:?} -> {:?} (HTTP {})",
        e.invoke.as_secs_f64() * 1e3,
        e.process,
        e.node,
        e.op,
        e.outcome,
        e.status
    )
}

/// Checks one session's events (already filtered to that session), whose
/// register starts at `init`. `read_slack` is the staleness allowed to a
/// read (zero: linearizable).
pub fn check_session(init: u64, events: &[&Event], read_slack: Duration) -> Verdict {
    let mut v = Verdict { linearizable: linearizable(init, &ops_of(events, read_slack)), ..Default::default() };
    if !v.linearizable {
        // Drop events one at a time while the rest still fails (1-minimal).
        // A write goes with the reads that saw its value: a read of a value
        // nobody wrote would fail for a reason the history never had.
        let mut keep: Vec<&Event> = events.to_vec();
        let mut i = 0;
        while i < keep.len() {
            let gone = keep[i];
            let without: Vec<&Event> = keep
                .iter()
                .enumerate()
                .filter(|&(j, e)| {
                    j != i && !matches!((gone.op, e.op, e.outcome), (Op::Write(x), Op::Read, Outcome::Ok(Some(y))) if x == y)
                })
                .map(|(_, e)| *e)
                .collect();
            if !linearizable(init, &ops_of(&without, read_slack)) {
                keep = without;
            } else {
                i += 1;
            }
        }
        v.minimal = keep.iter().map(|e| show(e)).collect();
    }
    // Writes by value, for lost and stale.
    let writes: BTreeMap<u64, &Event> = events
        .iter()
        .filter_map(|e| match e.op {
            Op::Write(x) => Some((x, *e)),
            _ => None,
        })
        .collect();
    let acked = |e: &&&Event| e.outcome == Outcome::Ok(None) || matches!(e.outcome, Outcome::Ok(Some(_)));
    let acked_writes: Vec<&&Event> = events.iter().filter(|e| matches!(e.op, Op::Write(_))).filter(acked).collect();
    let logout_acked = events.iter().filter(|e| e.op == Op::Invalidate).filter(acked).filter_map(|e| e.complete).min();
    // The final value: the last read's (events are in record order; the
    // final reads come last).
    let last_read = events.iter().rev().find(|e| e.op == Op::Read && matches!(e.outcome, Outcome::Ok(_)));
    if let Some(r) = last_read {
        match r.outcome {
            Outcome::Ok(Some(x)) => {
                v.lost_writes = if x == init {
                    acked_writes.len()
                } else {
                    // Writes that began after the final value's write was
                    // acknowledged should have replaced it. (When that write
                    // is indeterminate, nothing is counted: it may have
                    // taken effect last.)
                    match writes.get(&x).and_then(|w| w.complete) {
                        Some(done) => acked_writes.iter().filter(|w| w.invoke > done).count(),
                        None => 0,
                    }
                };
            }
            Outcome::Ok(None) if logout_acked.is_none() => {
                // An unanswered logout or rotation may have taken effect:
                // either ends the session for this client (a rotation's new
                // id never reached it), as the model's `step` says.
                let ended_unanswered =
                    events.iter().any(|e| matches!(e.op, Op::Invalidate | Op::Rotate) && e.outcome == Outcome::Unknown);
                if !ended_unanswered {
                    v.lost_writes = acked_writes.len().max(1);
                }
            }
            _ => {}
        }
    }
    for r in events.iter().filter(|e| e.op == Op::Read) {
        let Outcome::Ok(Some(x)) = r.outcome else { continue };
        // Within the allowance it is a stale read (counted below); past it
        // the session came back.
        if logout_acked.is_some_and(|l| l + read_slack < r.invoke) {
            v.logouts_undone += 1;
        }
        let seen_done =
            if x == init { Duration::ZERO } else { writes.get(&x).and_then(|w| w.complete).unwrap_or(Duration::ZERO) };
        let newer = acked_writes
            .iter()
            .filter(|w| w.invoke > seen_done && w.op != Op::Write(x))
            .filter_map(|w| w.complete)
            .filter(|&c| c < r.invoke)
            .min();
        if let Some(c) = newer {
            v.stale_reads += 1;
            v.max_staleness = v.max_staleness.max(r.invoke - c);
        }
    }
    v
}
