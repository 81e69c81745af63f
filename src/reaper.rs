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
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::clock::now_ms;
use crate::config::Config;
use crate::contexts::Contexts;
use crate::metrics::ServerStats;
use crate::sys;

/// Runs until SIGTERM/SIGINT; returns the exit code.
pub fn run(contexts: Arc<Contexts>, config: Arc<Config>, stats: Arc<ServerStats>) -> i32 {
    crate::logging::set_role(crate::logging::Role::Reaper);
    sys::set_title("sessiond: reaper", "sessiond-reaper");
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT, signal_hook::consts::SIGQUIT] {
        if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
            log::error!("reaper: cannot install the handler for signal {sig}: {e}");
            return crate::worker::EXIT_FATAL;
        }
    }
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            log::error!("reaper: cannot build the tokio runtime: {e}");
            return 1;
        }
    };
    // The reaper's counters go to the block after the workers'.
    let metrics = crate::session::HubMetrics { stats, block: config.max_procs as usize };
    let hub = {
        let _rt = rt.enter();
        crate::session::lifecycle_webhook::hub_for_process(&config, contexts.names(), metrics, "sessiond reaper")
    };
    let hub = match hub {
        Ok(h) => h,
        Err(e) => {
            log::error!("reaper: cannot start the lifecycle webhook: {e}");
            return crate::worker::EXIT_FATAL;
        }
    };
    if let Some(h) = &hub {
        rt.spawn(h.clone().run());
    }
    let contexts = Arc::new(contexts.with_hub(hub));
    // Cluster mode: reconcile at start, flush change marks, sweep the store.
    let cluster = match crate::cluster::Cluster::open(&config, &contexts) {
        Ok(c) => c,
        Err(e) => {
            log::error!("reaper: cluster: {e}");
            return crate::worker::EXIT_FATAL;
        }
    };
    let cluster_task = cluster.clone().map(|c| {
        let hub = contexts.iter().next().and_then(|c| c.sessions.hub().cloned());
        rt.spawn(crate::cluster::background::run(c, contexts.clone(), hub))
    });
    // The gateway's destroy notices: reconcile and deliver (one process
    // delivers, so a notice is never claimed twice).
    match crate::gateway::GatewayCore::new(&config, &contexts) {
        Ok(Some(core)) => {
            rt.spawn(crate::gateway::run_outbox(core, contexts.clone(), cluster.clone()));
        }
        Ok(None) => {}
        Err(e) => log::error!("reaper: the gateway's destroy notices will not be delivered: {e}"),
    }
    let fatal = rt.block_on(async {
        match cluster_task {
            None => {
                sweep_loop(&contexts, &stop).await;
                false
            }
            Some(task) => tokio::select! {
                _ = sweep_loop(&contexts, &stop) => false,
                // The cluster task ends only on a fatal error (logged).
                r = task => r.is_ok(),
            },
        }
    });
    if fatal {
        return crate::worker::EXIT_FATAL;
    }
    // Give the dispatcher one last pass so the final sweep's events are
    // offered before the process exits.
    // The sleep is built inside block_on: a timer needs the runtime's context.
    rt.block_on(async { tokio::time::sleep(2 * crate::session::events::DISPATCH_PERIOD).await });
    0
}

async fn sweep_loop(contexts: &Contexts, stop: &AtomicBool) {
    let start = Instant::now();
    let mut next: Vec<Instant> = contexts.iter().map(|_| start).collect();
    while !stop.load(Ordering::Relaxed) {
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
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
