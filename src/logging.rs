//! Log output: one line per event on stderr, in a form journald handles.
//!
//! Under journald (`JOURNAL_STREAM` set) each line starts with the syslog
//! priority `<N>` so journald files it at the right level and adds its own
//! timestamp and pid; elsewhere lines carry a UTC timestamp, the level and
//! the process role. The level comes from `RUST_LOG` when set, otherwise
//! from the `log_level` config key. Never log a full session id: use
//! `SessionId::log_hash`.

use std::io::Write;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Which process is logging.
#[derive(Clone, Copy, Debug)]
pub enum Role {
    /// The master.
    Master,
    /// The reaper.
    Reaper,
    /// Worker N.
    Worker(u32),
    /// A command-line tool.
    Tool,
}

static ROLE: AtomicU32 = AtomicU32::new(0);

/// Sets this process's role (after fork).
pub fn set_role(r: Role) {
    ROLE.store(
        match r {
            Role::Master => 0,
            Role::Reaper => 1,
            Role::Tool => 2,
            Role::Worker(n) => 3 + n,
        },
        Ordering::Relaxed,
    );
}

fn role_name() -> String {
    match ROLE.load(Ordering::Relaxed) {
        0 => "master".into(),
        1 => "reaper".into(),
        2 => "tool".into(),
        n => format!("worker {}", n - 3),
    }
}

/// Installs the logger; `level` is used when `RUST_LOG` is unset.
pub fn init(level: &str) {
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let mut b = env_logger::Builder::new();
    b.parse_filters(level);
    if let Ok(s) = std::env::var("RUST_LOG") {
        b.parse_filters(&s);
    }
    b.format(move |f, rec| {
        let prio = match rec.level() {
            log::Level::Error => 3,
            log::Level::Warn => 4,
            log::Level::Info => 6,
            log::Level::Debug | log::Level::Trace => 7,
        };
        if journald {
            writeln!(f, "<{prio}>{}: {}", role_name(), rec.args())
        } else {
            writeln!(
                f,
                "{} {:5} sessiond[{}] {}: {}",
                humantime::format_rfc3339_millis(std::time::SystemTime::now()),
                rec.level(),
                std::process::id(),
                role_name(),
                rec.args()
            )
        }
    });
    let _ = b.try_init();
}

/// The rate-limit step over two counter words, which may live in process
/// memory ([`RateLimit`]) or in a shared region (one line per period across
/// all processes): `Some(lines suppressed since the last one)` when a line
/// may be logged now.
pub fn allow_line(last_ms: &AtomicU64, suppressed: &AtomicU64, now_ms: u64, period_ms: u64) -> Option<u64> {
    let prev = last_ms.load(Ordering::Relaxed);
    if now_ms >= prev.saturating_add(period_ms)
        && last_ms.compare_exchange(prev, now_ms, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    {
        Some(suppressed.swap(0, Ordering::Relaxed))
    } else {
        suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// At most one log line per period from one process; counts the rest.
/// The crate's one log rate limiter (the webhook, the gateway's outbox and
/// the event hub use it).
#[derive(Debug)]
pub struct RateLimit {
    /// When the last line was let through, ms.
    last_ms: AtomicU64,
    /// Lines held back since then.
    suppressed: AtomicU64,
    /// Shortest time between two lines, ms.
    period_ms: u64,
}

impl RateLimit {
    /// A limiter allowing one line per `period_ms`.
    pub const fn new(period_ms: u64) -> RateLimit {
        RateLimit { last_ms: AtomicU64::new(0), suppressed: AtomicU64::new(0), period_ms }
    }

    /// `Some(lines suppressed since the last one)` when a line may be logged now.
    pub fn allow(&self, now_ms: u64) -> Option<u64> {
        allow_line(&self.last_ms, &self.suppressed, now_ms, self.period_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Moved from the webhook's own limiter, which this one replaced.
    #[test]
    fn warn_limiter_lets_one_line_per_interval_and_counts_the_rest() {
        let t0 = 1_000_000;
        let l = RateLimit::new(10_000);
        assert_eq!(l.allow(t0), Some(0));
        assert_eq!(l.allow(t0 + 1_000), None);
        assert_eq!(l.allow(t0 + 9_000), None);
        assert_eq!(l.allow(t0 + 10_000), Some(2));
        assert_eq!(l.allow(t0 + 11_000), None);
    }
}
