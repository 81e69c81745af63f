//! The reaper process: frees expired slots in every context, each on its
//! own `reap_interval`, with one sweep at start so sessions that expired
//! while the server was down are freed at once.
//!
//! A sweep reads only each region's dense expiry array and locks only the
//! stripes that hold an expired slot; it never touches slot bodies of live
//! sessions. It must never hold a lock between sweeps.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::clock::now_ms;
use crate::contexts::Contexts;
use crate::sys;

/// Runs until SIGTERM/SIGINT; returns the exit code.
pub fn run(contexts: Arc<Contexts>) -> i32 {
    crate::logging::set_role(crate::logging::Role::Reaper);
    sys::set_title("sessiond: reaper", "sessiond-reaper");
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT, signal_hook::consts::SIGQUIT] {
        if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
            log::error!("reaper: cannot install the handler for signal {sig}: {e}");
            return crate::worker::EXIT_FATAL;
        }
    }
    let start = Instant::now();
    let mut next: Vec<Instant> = contexts.iter().map(|_| start).collect();
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        for (c, due) in contexts.iter().zip(next.iter_mut()) {
            if now < *due {
                continue;
            }
            let t = Instant::now();
            match c.region.reap(now_ms()) {
                Ok(r) if r.skipped_stripes > 0 => log::warn!(
                    "reaper: context {}: freed {} session(s) but skipped {} stripe(s) whose lock timed out",
                    c.cfg.name,
                    r.freed,
                    r.skipped_stripes
                ),
                Ok(r) if r.freed > 0 => log::info!(
                    "reaper: context {}: freed {} expired session(s) in {:?}; {} live",
                    c.cfg.name,
                    r.freed,
                    t.elapsed(),
                    c.region.live()
                ),
                Ok(_) => log::debug!("reaper: context {}: nothing expired ({:?})", c.cfg.name, t.elapsed()),
                Err(e) => log::warn!("reaper: context {}: sweep stopped early: {e}", c.cfg.name),
            }
            *due = now + Duration::from_secs(c.cfg.reap_interval);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    0
}
