//! Server-wide metrics: counters shared by every process, and their
//! Prometheus text rendering.
//!
//! HTTP counters live in `<data_dir>/server.stats` ([`crate::sys::CounterFile`]),
//! one block per worker number so workers rarely share a cache line; a
//! scrape sums the blocks, so `/metrics` shows server-wide totals whichever
//! worker answers. Session counters come from each region's header and
//! stripes. The text format is written by hand: the values already live in
//! shared memory, and registry crates (prometheus, prometheus-client) want
//! to own their counters per process, which would mean copying every
//! shared value into a throwaway registry per scrape for four line types.
//! `promtool check metrics` guards the output in the tests.

use std::fmt::Write;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::region::RegionStats;
use crate::region::StripeCounter;
use crate::sys::{CounterFile, SysError};

/// Route classes for request metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// POST /v1/sessions
    Create,
    /// GET /v1/sessions (list)
    List,
    /// GET /v1/sessions/{id}
    Get,
    /// PATCH /v1/sessions/{id}
    Patch,
    /// DELETE /v1/sessions/{id}
    Delete,
    /// POST …/rotate
    Rotate,
    /// GET …/attributes/{name}
    AttrGet,
    /// PUT …/attributes/{name}
    AttrPut,
    /// DELETE …/attributes/{name}
    AttrDelete,
    /// POST /v1/session (get or create)
    Current,
    /// POST …/touch
    Touch,
    /// GET or DELETE /v1/principals/{name}/sessions
    Principal,
    /// GET /v1/contexts
    Contexts,
    /// GET /healthz
    Health,
    /// GET /metrics
    Metrics,
    /// A request on the gateway's public listener.
    Gateway,
    /// A call to the gateway's control API.
    GatewayControl,
    /// Anything else (404/405).
    Other,
}

/// Every route class, in counter order.
pub const ROUTES: [Route; 18] = [
    Route::Create,
    Route::List,
    Route::Get,
    Route::Patch,
    Route::Delete,
    Route::Rotate,
    Route::AttrGet,
    Route::AttrPut,
    Route::AttrDelete,
    Route::Current,
    Route::Touch,
    Route::Principal,
    Route::Contexts,
    Route::Health,
    Route::Metrics,
    Route::Gateway,
    Route::GatewayControl,
    Route::Other,
];

impl Route {
    /// Label value.
    pub fn name(self) -> &'static str {
        match self {
            Route::Create => "create",
            Route::List => "list",
            Route::Get => "get",
            Route::Patch => "patch",
            Route::Delete => "delete",
            Route::Rotate => "rotate",
            Route::AttrGet => "attr_get",
            Route::AttrPut => "attr_put",
            Route::AttrDelete => "attr_delete",
            Route::Current => "current",
            Route::Touch => "touch",
            Route::Principal => "principal",
            Route::Contexts => "contexts",
            Route::Health => "health",
            Route::Metrics => "metrics",
            Route::Gateway => "gateway",
            Route::GatewayControl => "gateway_control",
            Route::Other => "other",
        }
    }
}

/// Status codes counted individually; anything else counts as "other".
pub const STATUSES: [u16; 24] = [
    101, 200, 201, 204, 302, 303, 304, 400, 401, 403, 404, 405, 408, 409, 411, 412, 413, 415, 429, 431, 500, 502, 503,
    504,
];
/// Latency histogram upper bounds, seconds.
pub const BUCKETS: [f64; 15] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

const NS: usize = STATUSES.len() + 1;
const NB: usize = BUCKETS.len() + 1;
/// Words per route inside a worker block: statuses, buckets (+Inf last), sum µs.
const PER_ROUTE: usize = NS + NB + 1;
/// Per-worker counters after the route table.
#[derive(Clone, Copy, Debug)]
#[repr(usize)]
pub enum WorkerCounter {
    /// Connections accepted.
    ConnectionsAccepted = 0,
    /// Connections closed at once because the worker was at `max_connections`.
    ConnectionsRefused = 1,
    /// Lifecycle events queued for subscribers.
    EventsPublished = 2,
    /// Lifecycle events dropped because the process's queue was full.
    EventsDropped = 3,
    /// Events the webhook receiver acknowledged (2xx).
    WebhookDeliveredEvents = 4,
    /// Webhook POSTs that failed (status, connection error or timeout).
    WebhookFailedAttempts = 5,
    /// Events dropped by the webhook (backlog full, attempts exhausted, 410).
    WebhookDroppedEvents = 6,
}
const WORKER_EXTRA: usize = 8;
const BLOCK: usize = ROUTES.len() * PER_ROUTE + WORKER_EXTRA;

/// Master-owned counters at the start of the file.
#[derive(Clone, Copy, Debug)]
#[repr(usize)]
pub enum MasterCounter {
    /// Workers restarted after dying.
    WorkerRestarts = 0,
    /// Reaper restarts.
    ReaperRestarts = 1,
    /// Successful reloads.
    Reloads = 2,
    /// Reloads refused (bad config).
    ReloadFailures = 3,
    /// Unix time the master started, seconds.
    StartTime = 4,
}
const MASTER_WORDS: usize = 16;

/// The shared server counters.
pub struct ServerStats {
    file: CounterFile,
    blocks: usize,
}

/// Name of the counters file inside `data_dir`.
pub const STATS_FILE: &str = "server.stats";

impl ServerStats {
    /// Creates a zeroed counters file with `blocks` worker blocks.
    pub fn create(data_dir: &Path, blocks: usize) -> Result<ServerStats, SysError> {
        let blocks = blocks.max(1);
        let file = CounterFile::create(&data_dir.join(STATS_FILE), MASTER_WORDS + blocks * BLOCK)?;
        Ok(ServerStats { file, blocks })
    }

    /// Maps an existing counters file (tools).
    pub fn open(data_dir: &Path) -> Result<ServerStats, SysError> {
        let file = CounterFile::open(&data_dir.join(STATS_FILE))?;
        let blocks = file.len().saturating_sub(MASTER_WORDS) / BLOCK;
        Ok(ServerStats { file, blocks })
    }

    fn block_base(&self, worker: usize) -> usize {
        MASTER_WORDS + (worker % self.blocks) * BLOCK
    }

    /// Records one request.
    pub fn record(&self, worker: usize, route: Route, status: u16, elapsed: Duration) {
        let r = ROUTES.iter().position(|x| *x == route).unwrap_or(ROUTES.len() - 1);
        let base = self.block_base(worker) + r * PER_ROUTE;
        let si = STATUSES.iter().position(|s| *s == status).unwrap_or(STATUSES.len());
        self.file.at(base + si).fetch_add(1, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        let bi = BUCKETS.iter().position(|b| secs <= *b).unwrap_or(BUCKETS.len());
        self.file.at(base + NS + bi).fetch_add(1, Ordering::Relaxed);
        self.file.at(base + NS + NB).fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    /// Adds to a worker counter.
    pub fn add_worker(&self, worker: usize, c: WorkerCounter, n: u64) {
        self.file.at(self.block_base(worker) + ROUTES.len() * PER_ROUTE + c as usize).fetch_add(n, Ordering::Relaxed);
    }

    /// Adds to a master counter.
    pub fn add_master(&self, c: MasterCounter, n: u64) {
        self.file.at(c as usize).fetch_add(n, Ordering::Relaxed);
    }

    /// Sets a master counter.
    pub fn set_master(&self, c: MasterCounter, v: u64) {
        self.file.at(c as usize).store(v, Ordering::Relaxed);
    }

    /// Reads a master counter.
    pub fn master(&self, c: MasterCounter) -> u64 {
        self.file.at(c as usize).load(Ordering::Relaxed)
    }

    /// Sum over workers of word `off` inside a block.
    fn sum(&self, off: usize) -> u64 {
        (0..self.blocks).map(|w| self.file.at(MASTER_WORDS + w * BLOCK + off).load(Ordering::Relaxed)).sum()
    }

    /// Total of a worker counter.
    pub fn worker_total(&self, c: WorkerCounter) -> u64 {
        self.sum(ROUTES.len() * PER_ROUTE + c as usize)
    }

    /// Renders the Prometheus text exposition format.
    pub fn render(&self, regions: &[RegionStats], workers: u32) -> String {
        let mut o = String::with_capacity(16 * 1024);
        o.push_str("# HELP sessiond_http_requests_total HTTP requests by route class and status code.\n");
        o.push_str("# TYPE sessiond_http_requests_total counter\n");
        for (r, route) in ROUTES.iter().enumerate() {
            for si in 0..NS {
                let v = self.sum(r * PER_ROUTE + si);
                if v == 0 {
                    continue;
                }
                let code = STATUSES.get(si).map(|s| s.to_string()).unwrap_or_else(|| "other".into());
                let _ = writeln!(o, "sessiond_http_requests_total{{route=\"{}\",code=\"{code}\"}} {v}", route.name());
            }
        }
        o.push_str("# HELP sessiond_http_request_duration_seconds Time from request head to response head.\n");
        o.push_str("# TYPE sessiond_http_request_duration_seconds histogram\n");
        for (r, route) in ROUTES.iter().enumerate() {
            let base = r * PER_ROUTE + NS;
            let mut cum = 0;
            for (bi, b) in BUCKETS.iter().enumerate() {
                cum += self.sum(base + bi);
                let _ = writeln!(
                    o,
                    "sessiond_http_request_duration_seconds_bucket{{route=\"{}\",le=\"{b}\"}} {cum}",
                    route.name()
                );
            }
            cum += self.sum(base + BUCKETS.len());
            let _ = writeln!(
                o,
                "sessiond_http_request_duration_seconds_bucket{{route=\"{}\",le=\"+Inf\"}} {cum}",
                route.name()
            );
            let sum = self.sum(base + NB) as f64 / 1e6;
            let _ = writeln!(o, "sessiond_http_request_duration_seconds_sum{{route=\"{}\"}} {sum}", route.name());
            let _ = writeln!(o, "sessiond_http_request_duration_seconds_count{{route=\"{}\"}} {cum}", route.name());
        }
        let simple = |o: &mut String, name: &str, kind: &str, help: &str, v: u64| {
            let _ = write!(o, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n");
        };
        simple(
            &mut o,
            "sessiond_connections_accepted_total",
            "counter",
            "Connections accepted by workers.",
            self.worker_total(WorkerCounter::ConnectionsAccepted),
        );
        simple(
            &mut o,
            "sessiond_connections_refused_total",
            "counter",
            "Connections closed at once because a worker was at max_connections.",
            self.worker_total(WorkerCounter::ConnectionsRefused),
        );
        for (name, help, c) in [
            (
                "sessiond_events_published_total",
                "Lifecycle events queued for subscribers (workers and reaper).",
                WorkerCounter::EventsPublished,
            ),
            (
                "sessiond_events_dropped_total",
                "Lifecycle events dropped because a process's event queue was full (events.queue_size).",
                WorkerCounter::EventsDropped,
            ),
            (
                "sessiond_webhook_delivered_events_total",
                "Lifecycle events the webhook receiver acknowledged with a 2xx.",
                WorkerCounter::WebhookDeliveredEvents,
            ),
            (
                "sessiond_webhook_failed_attempts_total",
                "Webhook POSTs that failed (non-2xx, connection error or timeout); each is retried with back-off.",
                WorkerCounter::WebhookFailedAttempts,
            ),
            (
                "sessiond_webhook_dropped_events_total",
                "Lifecycle events the webhook gave up on (backlog full, attempts exhausted, or 410 Gone).",
                WorkerCounter::WebhookDroppedEvents,
            ),
        ] {
            simple(&mut o, name, "counter", help, self.worker_total(c));
        }
        simple(
            &mut o,
            "sessiond_worker_restarts_total",
            "counter",
            "Workers restarted after they died.",
            self.master(MasterCounter::WorkerRestarts),
        );
        simple(
            &mut o,
            "sessiond_reaper_restarts_total",
            "counter",
            "Reaper restarts after it died.",
            self.master(MasterCounter::ReaperRestarts),
        );
        simple(
            &mut o,
            "sessiond_reloads_total",
            "counter",
            "Configuration reloads applied.",
            self.master(MasterCounter::Reloads),
        );
        simple(
            &mut o,
            "sessiond_reload_failures_total",
            "counter",
            "Reloads refused because the new configuration was invalid.",
            self.master(MasterCounter::ReloadFailures),
        );
        simple(&mut o, "sessiond_workers", "gauge", "Configured worker processes (max_procs).", workers as u64);
        simple(
            &mut o,
            "sessiond_start_time_seconds",
            "gauge",
            "Unix time the master started.",
            self.master(MasterCounter::StartTime),
        );
        render_regions(&mut o, regions);
        o
    }
}

fn render_regions(o: &mut String, regions: &[RegionStats]) {
    type Get = fn(&RegionStats) -> u64;
    let families: [(&str, &str, &str, Get); 16] = [
        ("sessiond_sessions_live", "gauge", "Live sessions.", |s| s.live),
        ("sessiond_sessions_capacity", "gauge", "Slots (max_sessions).", |s| s.max_sessions as u64),
        ("sessiond_sessions_created_total", "counter", "Sessions created.", |s| s.total(StripeCounter::Created)),
        ("sessiond_sessions_expired_total", "counter", "Sessions expired.", |s| s.total(StripeCounter::Expired)),
        ("sessiond_sessions_evicted_total", "counter", "Sessions evicted when full.", |s| {
            s.total(StripeCounter::Evicted)
        }),
        ("sessiond_sessions_refused_total", "counter", "Creations refused when full.", |s| s.refused),
        ("sessiond_sessions_invalidated_total", "counter", "Sessions invalidated.", |s| {
            s.total(StripeCounter::Invalidated)
        }),
        ("sessiond_sessions_rotated_total", "counter", "Session ids rotated.", |s| s.total(StripeCounter::Rotated)),
        ("sessiond_attribute_reads_total", "counter", "Session and attribute reads.", |s| {
            s.total(StripeCounter::Reads)
        }),
        ("sessiond_attribute_writes_total", "counter", "Attribute sets and removes.", |s| {
            s.total(StripeCounter::Writes)
        }),
        ("sessiond_lock_acquisitions_total", "counter", "Stripe lock acquisitions.", |s| {
            s.total(StripeCounter::Acquisitions)
        }),
        ("sessiond_lock_waits_total", "counter", "Stripe lock acquisitions that had to wait.", |s| {
            s.total(StripeCounter::Contended)
        }),
        ("sessiond_lock_timeouts_total", "counter", "Stripe lock waits that ran out of lock_timeout.", |s| {
            s.lock_timeouts
        }),
        ("sessiond_lock_owner_dead_repairs_total", "counter", "Stripes repaired after a lock owner died.", |s| {
            s.total(StripeCounter::Repairs)
        }),
        ("sessiond_slots_dropped_total", "counter", "Damaged or half-written slots dropped by repair.", |s| {
            s.total(StripeCounter::Dropped)
        }),
        ("sessiond_reaper_sweeps_total", "counter", "Reaper sweeps.", |s| s.reap_sweeps),
    ];
    for (name, kind, help, get) in families {
        let _ = write!(o, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
        for s in regions {
            let _ = writeln!(o, "{name}{{context=\"{}\"}} {}", s.context, get(s));
        }
    }
    let name = "sessiond_reaper_last_sweep_seconds";
    let _ = write!(o, "# HELP {name} Duration of the last reaper sweep.\n# TYPE {name} gauge\n");
    for s in regions {
        let _ = writeln!(o, "{name}{{context=\"{}\"}} {}", s.context, s.last_reap_micros as f64 / 1e6);
    }
}
