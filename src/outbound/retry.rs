//! The one back-off policy: a delay that doubles after each failure up to
//! a cap, optionally with equal jitter.
//!
//! Written here rather than taken from `backon`: two of its three users
//! keep their retry state outside any future (the master's process table,
//! which must not run tokio, and the gateway's outbox files, which outlive
//! the process), so what they need is the delay for failure number N, not
//! a retrying combinator. The webhook, which could use one, uses the same
//! function so the three cannot drift.

use std::time::Duration;

/// Doubling back-off: `first` after the first failure, doubled after each
/// further one, never more than `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first failure.
    pub first: Duration,
    /// Longest delay.
    pub max: Duration,
}

impl Backoff {
    /// A policy of `first` doubling up to `max`.
    pub const fn new(first: Duration, max: Duration) -> Backoff {
        Backoff { first, max }
    }

    /// The delay after failure number `failed` (1-based; 0 counts as 1).
    pub fn delay(&self, failed: u32) -> Duration {
        let doublings = failed.saturating_sub(1).min(31);
        self.first.saturating_mul(1u32 << doublings).min(self.max)
    }
}

/// Equal jitter: spreads retries of many senders so they do not arrive in
/// step. xorshift64*, seeded once from the OS; not for secrets.
#[derive(Clone, Debug)]
pub struct Jitter {
    /// The generator's state (never zero).
    state: u64,
}

impl Jitter {
    /// A generator seeded from `seed` (any value; zero is made odd).
    pub fn new(seed: u64) -> Jitter {
        Jitter { state: seed | 1 }
    }

    /// `d` with equal jitter: uniform in [d/2, d).
    pub fn apply(&mut self, d: Duration) -> Duration {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        let unit = (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64;
        let half = d / 2;
        half + half.mul_f64(unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The webhook's policy (moved here from `webhook.rs` with its test).
    const MAX_BACKOFF: Duration = Duration::from_secs(60);

    fn backoff(initial: Duration, failed: u32) -> Duration {
        Backoff::new(initial, MAX_BACKOFF).delay(failed)
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let ms = Duration::from_millis;
        assert_eq!(backoff(ms(500), 1), ms(500));
        assert_eq!(backoff(ms(500), 2), ms(1000));
        assert_eq!(backoff(ms(500), 4), ms(4000));
        assert_eq!(backoff(ms(500), 8), MAX_BACKOFF);
        assert_eq!(backoff(ms(500), u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn the_outbox_and_restart_schedules_are_this_policy() {
        // The outbox's old `1000 << min(n, 9)` ms, at most 300 s.
        let outbox = Backoff::new(Duration::from_secs(2), Duration::from_secs(300));
        for n in 1..40u32 {
            assert_eq!(outbox.delay(n), Duration::from_millis((1000u64 << n.min(9)).min(300_000)), "{n}");
        }
        // The master's old `100 << min(n, 7)` ms, at most 10 s.
        let restart = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        for n in 1..40u32 {
            assert_eq!(restart.delay(n), Duration::from_millis(100u64 << n.min(7)).min(Duration::from_secs(10)), "{n}");
        }
    }

    #[test]
    fn jitter_stays_in_the_upper_half() {
        let mut j = Jitter::new(0);
        for _ in 0..1000 {
            let d = j.apply(Duration::from_millis(1000));
            assert!(d >= Duration::from_millis(500) && d < Duration::from_millis(1000), "{d:?}");
        }
    }
}
