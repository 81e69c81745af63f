//! Login failure throttling for the gateway, per client address and,
//! separately, per user name.
//!
//! # What it owns
//! - A sliding window per key: the instants of the key's last
//!   `max_failures` failed logins. A key with `max_failures` failures
//!   younger than `window` is refused until the oldest of them is `window`
//!   old. The ring is capped at `max_failures` instants, so a key costs at
//!   most that many `Instant`s whatever a client sends.
//! - The keys: an IPv4 address; an IPv6 address's /64 prefix, because one
//!   host (or one customer) is routinely given a whole /64 and can pick any
//!   of its 2^64 addresses, so per-address counting would not slow it at
//!   all; an IPv4-mapped IPv6 address counts as its IPv4 address. A user
//!   name is compared exactly, on its first 256 bytes.
//! - Bounded memory: at most `max_entries` keys. When a failure would go
//!   beyond, the least recently updated keys are evicted first, and an
//!   evicted key forgets its failures: a flood of distinct addresses can
//!   wash an older address's record out. That trades exactness for a fixed
//!   ceiling; size `max_entries` above the number of keys expected to fail
//!   within one window.
//!
//! # What it must never do
//! - Sleep or block beyond its mutex: callers answer a refused login at
//!   once, with the `Retry-After` this module computes.
//! - Read the clock: callers pass `now`, so tests drive time explicitly.
//! - Share state across processes: each worker process throttles on its
//!   own, so the effective limit is up to `max_failures` per worker.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Bytes of a user name that make up its key.
pub const MAX_USER_KEY_LEN: usize = 256;

/// What failures are counted against.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    /// An IPv4 address (IPv4-mapped IPv6 addresses included).
    V4(u32),
    /// The /64 prefix of an IPv6 address.
    V6Prefix(u64),
    /// The first [`MAX_USER_KEY_LEN`] bytes of a user name.
    User(Box<[u8]>),
}

impl Key {
    /// The key of a client address: IPv4 as is, IPv6 by its /64.
    fn addr(addr: IpAddr) -> Key {
        match addr.to_canonical() {
            IpAddr::V4(v4) => Key::V4(u32::from(v4)),
            IpAddr::V6(v6) => Key::V6Prefix((u128::from(v6) >> 64) as u64),
        }
    }

    /// The key of a user name, capped at [`MAX_USER_KEY_LEN`] bytes.
    fn user(user: &str) -> Key {
        let bytes = user.as_bytes();
        Key::User(bytes[..bytes.len().min(MAX_USER_KEY_LEN)].into())
    }
}

/// One key's recent failures.
struct Failures {
    /// Failure instants, oldest first; at most `max_failures` of them.
    times: VecDeque<Instant>,
    /// When the key was last updated, as a sequence number; its entry in
    /// [`State::by_update`].
    updated: u64,
}

/// Everything behind the mutex.
#[derive(Default)]
struct State {
    /// Each key's failures.
    keys: HashMap<Key, Failures>,
    /// Keys by last update, oldest first: the eviction order.
    by_update: BTreeMap<u64, Key>,
    /// The next update's sequence number.
    next_update: u64,
}

impl State {
    /// Drops `key`'s failures that are `window` old at `now`, and the key
    /// itself when none is left.
    fn prune(&mut self, key: &Key, window: Duration, now: Instant) {
        let Some(failures) = self.keys.get_mut(key) else {
            return;
        };
        while let Some(&oldest) = failures.times.front() {
            if now.saturating_duration_since(oldest) >= window {
                failures.times.pop_front();
            } else {
                break;
            }
        }
        if failures.times.is_empty() {
            self.remove(key);
        }
    }

    /// Forgets `key`.
    fn remove(&mut self, key: &Key) {
        if let Some(failures) = self.keys.remove(key) {
            self.by_update.remove(&failures.updated);
        }
    }
}

/// Login failure throttling for one process (see the module doc).
pub struct Throttle {
    /// Failures per key allowed within `window`; the next attempt is refused.
    max_failures: u32,
    /// How long a failure counts.
    window: Duration,
    /// Most keys kept; least recently updated are evicted beyond it.
    max_entries: usize,
    /// The keys and their failures. Login is rare, so one mutex is enough.
    state: Mutex<State>,
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle")
            .field("max_failures", &self.max_failures)
            .field("window", &self.window)
            .field("max_entries", &self.max_entries)
            .field("entries", &self.lock().keys.len())
            .finish()
    }
}

impl Throttle {
    /// At most `max_failures` failed logins per client address and,
    /// separately, per user name within `window`; beyond it, refused until
    /// the window's oldest failure ages out.
    ///
    /// `max_entries` bounds memory: the least recently updated entries are
    /// evicted first, and an evicted entry forgets its failures.
    /// `max_failures` is raised to 1 (0 would refuse everyone with no
    /// failure to age out) and `max_entries` to 2 (one failure's two keys).
    pub fn new(max_failures: u32, window: Duration, max_entries: usize) -> Throttle {
        Throttle {
            max_failures: max_failures.max(1),
            window,
            max_entries: max_entries.max(2),
            state: Mutex::new(State::default()),
        }
    }

    /// Called before verifying: `Err(retry_after)` when either the address
    /// or the user is over the limit; `retry_after` is at least 1 s, rounded
    /// up to whole seconds, for a `Retry-After` header.
    pub fn check(&self, addr: IpAddr, user: &str, now: Instant) -> Result<(), Duration> {
        let mut state = self.lock();
        let mut wait = Duration::ZERO;
        for key in [Key::addr(addr), Key::user(user)] {
            state.prune(&key, self.window, now);
            let Some(failures) = state.keys.get(&key) else {
                continue;
            };
            if failures.times.len() >= self.max_failures as usize {
                let oldest = failures.times[0];
                wait = wait.max((oldest + self.window).saturating_duration_since(now));
            }
        }
        if wait.is_zero() { Ok(()) } else { Err(round_up_to_seconds(wait)) }
    }

    /// Records a failure for both keys.
    pub fn failure(&self, addr: IpAddr, user: &str, now: Instant) {
        let mut state = self.lock();
        for key in [Key::addr(addr), Key::user(user)] {
            state.prune(&key, self.window, now);
            let updated = state.next_update;
            state.next_update += 1;
            let failures = state.keys.entry(key.clone()).or_insert_with(|| Failures {
                times: VecDeque::with_capacity(self.max_failures.min(64) as usize),
                updated,
            });
            let previous = std::mem::replace(&mut failures.updated, updated);
            if failures.times.len() >= self.max_failures as usize {
                failures.times.pop_front();
            }
            failures.times.push_back(now);
            state.by_update.remove(&previous);
            state.by_update.insert(updated, key);
        }
        while state.keys.len() > self.max_entries {
            let Some((_, oldest)) = state.by_update.pop_first() else {
                break;
            };
            state.keys.remove(&oldest);
        }
    }

    /// A success clears the user's failures (not the address's: an address
    /// guessing many users' passwords keeps its count when one guess is
    /// right).
    pub fn success(&self, addr: IpAddr, user: &str) {
        let _ = addr;
        self.lock().remove(&Key::user(user));
    }

    /// The state, even if a thread panicked holding it: at worst a key
    /// lingers until evicted, which only throttles harder.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keys held, for tests of the memory bound.
    #[cfg(test)]
    fn entries(&self) -> usize {
        let state = self.lock();
        assert_eq!(state.keys.len(), state.by_update.len());
        state.keys.len()
    }
}

/// `wait` rounded up to whole seconds, at least one.
fn round_up_to_seconds(wait: Duration) -> Duration {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    Duration::from_secs(secs.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const MINUTE: Duration = Duration::from_secs(60);

    fn v4(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }

    fn v6(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn limit_reached_refuses_with_retry_after_until_oldest_ages_out() {
        let t = Throttle::new(3, MINUTE, 100);
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(t.check(v4(1), "alice", t0 + secs(i as f64)), Ok(()));
            t.failure(v4(1), "alice", t0 + secs(i as f64));
        }
        assert_eq!(t.check(v4(1), "alice", t0 + secs(3.0)), Err(secs(57.0)));
        // Rounded up to whole seconds.
        assert_eq!(t.check(v4(1), "alice", t0 + secs(2.5)), Err(secs(58.0)));
        // Never below one second.
        assert_eq!(t.check(v4(1), "alice", t0 + secs(59.9)), Err(secs(1.0)));
        // The oldest failure ages out: one attempt more is allowed.
        assert_eq!(t.check(v4(1), "alice", t0 + MINUTE), Ok(()));
        t.failure(v4(1), "alice", t0 + MINUTE);
        // Now the oldest is t0 + 1 s.
        assert_eq!(t.check(v4(1), "alice", t0 + MINUTE), Err(secs(1.0)));
        assert_eq!(t.check(v4(1), "alice", t0 + secs(61.0)), Ok(()));
        // Long after, everything has aged out.
        assert_eq!(t.check(v4(1), "alice", t0 + secs(200.0)), Ok(()));
    }

    #[test]
    fn address_and_user_are_limited_separately() {
        let t = Throttle::new(2, MINUTE, 100);
        let t0 = Instant::now();
        // One user from many addresses.
        t.failure(v4(1), "alice", t0);
        t.failure(v4(2), "alice", t0 + secs(1.0));
        assert_eq!(t.check(v4(3), "alice", t0 + secs(2.0)), Err(secs(58.0)));
        // One address trying many users.
        t.failure(v4(9), "u1", t0);
        t.failure(v4(9), "u2", t0);
        assert_eq!(t.check(v4(9), "u3", t0 + secs(2.0)), Err(secs(58.0)));
        // Neither key over the limit.
        assert_eq!(t.check(v4(4), "bob", t0 + secs(2.0)), Ok(()));
    }

    #[test]
    fn retry_after_is_the_longer_of_both_keys() {
        let t = Throttle::new(1, MINUTE, 100);
        let t0 = Instant::now();
        t.failure(v4(1), "x", t0);
        t.failure(v4(2), "alice", t0 + secs(30.0));
        assert_eq!(t.check(v4(1), "alice", t0 + secs(40.0)), Err(secs(50.0)));
    }

    #[test]
    fn success_clears_the_user_but_not_the_address() {
        let t = Throttle::new(3, MINUTE, 100);
        let t0 = Instant::now();
        for i in 0..3 {
            t.failure(v4(1), "alice", t0 + secs(i as f64));
        }
        assert!(t.check(v4(2), "alice", t0 + secs(3.0)).is_err());
        t.success(v4(1), "alice");
        assert_eq!(t.check(v4(2), "alice", t0 + secs(3.0)), Ok(()));
        assert_eq!(t.check(v4(1), "bob", t0 + secs(3.0)), Err(secs(57.0)));
    }

    #[test]
    fn ipv6_is_throttled_per_64() {
        let t = Throttle::new(2, MINUTE, 100);
        let t0 = Instant::now();
        t.failure(v6("2001:db8:0:0::1"), "a", t0);
        t.failure(v6("2001:db8::ffff:ffff:ffff:fffe"), "b", t0);
        // Same /64, another address and user: refused.
        assert!(t.check(v6("2001:db8::1234"), "c", t0).is_err());
        // The neighbouring /64 is another key.
        assert_eq!(t.check(v6("2001:db8:0:1::1"), "c", t0), Ok(()));
    }

    #[test]
    fn ipv4_mapped_ipv6_counts_as_ipv4() {
        let t = Throttle::new(1, MINUTE, 100);
        let t0 = Instant::now();
        t.failure(v6("::ffff:192.0.2.7"), "a", t0);
        assert!(t.check(v4(7), "b", t0).is_err());
        assert_eq!(t.check(v4(8), "b", t0), Ok(()));
        // Another IPv4 in the same ::ffff:0:0/96 is not grouped with it.
        assert_eq!(t.check(v6("::ffff:192.0.2.8"), "b", t0), Ok(()));
    }

    #[test]
    fn user_names_compare_exactly_on_their_first_256_bytes() {
        let t = Throttle::new(1, MINUTE, 100);
        let t0 = Instant::now();
        t.failure(v4(1), "Alice", t0);
        assert_eq!(t.check(v4(2), "alice", t0), Ok(()));
        let long = "x".repeat(MAX_USER_KEY_LEN);
        t.failure(v4(3), &format!("{long}-one"), t0);
        assert!(t.check(v4(4), &format!("{long}-two"), t0).is_err());
        // A name cut inside a multi-byte character still works.
        let odd = format!("{}é", "y".repeat(MAX_USER_KEY_LEN - 1));
        t.failure(v4(5), &odd, t0);
        assert!(t.check(v4(6), &odd, t0).is_err());
    }

    #[test]
    fn memory_stays_bounded_and_least_recently_updated_is_evicted() {
        let max_entries = 1000;
        let t = Throttle::new(1, MINUTE, max_entries);
        let t0 = Instant::now();
        t.failure(v4(1), "first", t0);
        assert!(t.check(v4(1), "someone", t0).is_err());
        for i in 0..10_000u32 {
            let addr = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            t.failure(addr, &format!("user{i}"), t0 + secs(0.001 * f64::from(i)));
            assert!(t.entries() <= max_entries);
        }
        assert_eq!(t.entries(), max_entries);
        // The first address was evicted, and forgot its failure.
        assert_eq!(t.check(v4(1), "someone", t0 + secs(10.0)), Ok(()));
        // The latest ones are still held.
        let last = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + 9_999));
        assert!(t.check(last, "nobody", t0 + secs(10.0)).is_err());
        assert!(t.check(v4(200), "user9999", t0 + secs(10.0)).is_err());
    }

    #[test]
    fn aged_out_keys_are_dropped_when_checked() {
        let t = Throttle::new(2, MINUTE, 100);
        let t0 = Instant::now();
        t.failure(v4(1), "alice", t0);
        assert_eq!(t.entries(), 2);
        assert_eq!(t.check(v4(1), "alice", t0 + MINUTE), Ok(()));
        assert_eq!(t.entries(), 0);
    }

    #[test]
    fn zero_limits_are_raised() {
        let t = Throttle::new(0, MINUTE, 0);
        let t0 = Instant::now();
        assert_eq!(t.check(v4(1), "alice", t0), Ok(()));
        t.failure(v4(1), "alice", t0);
        assert_eq!(t.entries(), 2);
        assert!(t.check(v4(1), "alice", t0).is_err());
    }
}
