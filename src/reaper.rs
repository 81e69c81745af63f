//! The reaper process: frees expired slots in every context, each on its
//! own `reap_interval`, with one sweep at start so sessions that expired
//! while the server was down are freed at once.
//!
//! A sweep reads only each region's dense expiry array and locks only the
//! stripes that hold an expired slot; it never touches slot bodies of live
//! sessions. It must never hold a lock between sweeps.
//!
//! Expiries are lifecycle events like any other: the reaper builds a
//! current-thread runtime after `fork` for its event hub's dispatcher and
//! webhook sender, and runs its sweeps between the runtime's ticks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::bootstrap::{self, Role, Shutdown};
use crate::clock::now_ms;
use crate::config::Config;
use crate::contexts::Contexts;
use crate::metrics::ServerStats;

/// Runs until SIGTERM/SIGINT; returns the exit code.
pub fn run(contexts: Arc<Contexts>, config: Arc<Config>, stats: Arc<ServerStats>) -> i32 {
    // The reaper's counters go to the block after the workers'.
    let p = match bootstrap::start(Role::Reaper, &contexts, &config, stats, config.max_procs as usize) {
        Ok(p) => p,
        Err(e) => {
            log::error!("reaper: {e}");
            return e.exit_code();
        }
    };
    let contexts = p.contexts.clone();
    // Cluster mode: reconcile at start, flush change marks, sweep the store.
    let cluster_task = p.cluster.clone().map(|c| {
        let hub = contexts.iter().next().and_then(|c| c.sessions.hub().cloned());
        p.rt.spawn(crate::session::cluster::background::run(c, contexts.all_sessions(), hub))
    });
    // The gateway's destroy notices: reconcile and deliver (one process
    // delivers, so a notice is never claimed twice).
    match p.gateway_core(&config) {
        Ok(Some(core)) => {
            p.rt.spawn(crate::gateway::run_outbox(core, contexts.clone()));
        }
        Ok(None) => {}
        Err(e) => log::error!("reaper: the gateway's destroy notices will not be delivered: {e}"),
    }
    let shutdown = p.shutdown.clone();
    let fatal = p.rt.block_on(async {
        match cluster_task {
            None => {
                sweep_loop(&contexts, shutdown).await;
                false
            }
            Some(task) => tokio::select! {
                _ = sweep_loop(&contexts, shutdown) => false,
                // The cluster task ends only on a fatal error (logged).
                r = task => r.is_ok(),
            },
        }
    });
    if fatal {
        return bootstrap::EXIT_FATAL;
    }
    // Give the dispatcher one last pass so the final sweep's events are
    // offered before the process exits.
    // The sleep is built inside block_on: a timer needs the runtime's context.
    p.rt.block_on(async { tokio::time::sleep(2 * crate::session::events::DISPATCH_PERIOD).await });
    bootstrap::EXIT_OK
}

/// Sweeps each context when it is due, sleeping until the next one is due
/// or the process is told to stop, whichever comes first.
async fn sweep_loop(contexts: &Contexts, mut shutdown: Shutdown) {
    let start = Instant::now();
    let mut next: Vec<Instant> = contexts.iter().map(|_| start).collect();
    while !shutdown.is_shutdown() {
        let now = Instant::now();
        for (c, due) in contexts.iter().zip(next.iter_mut()) {
            if now < *due {
                continue;
            }
            let t = Instant::now();
            match c.sessions.reap(now_ms()) {
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
                    c.sessions.live()
                ),
                Ok(_) => log::debug!("reaper: context {}: nothing expired ({:?})", c.cfg.name, t.elapsed()),
                Err(e) => log::warn!("reaper: context {}: sweep stopped early: {e}", c.cfg.name),
            }
            *due = now + Duration::from_secs(c.cfg.reap_interval);
        }
        let Some(wake) = next.iter().min().copied() else {
            // No context: nothing to sweep, only a stop to wait for.
            shutdown.recv().await;
            return;
        };
        tokio::select! {
            _ = tokio::time::sleep_until(wake.into()) => {}
            _ = shutdown.recv() => return,
        }
    }
}
