//! sessiond: web sessions in shared memory.
//!
//! # Layout
//! Layered top to bottom; a module uses only modules below it
//! (`tests/layering.rs` checks that the graph has no cycle).
//!
//! | layer | module | concept |
//! | --- | --- | --- |
//! | processes | [`master`] | the master process: fork, supervise, reload, stop |
//! | | [`worker`] | a worker process: tokio current-thread runtime + hyper, its event hub |
//! | | [`reaper`] | the reaper process: periodic expiry sweeps, its event hub |
//! | | [`bootstrap`] | one start-up for every child after `fork`: runtime, signals as a `Shutdown` value, event hub, cluster client; the exit codes |
//! | front ends | [`http`] | the HTTP API: routing, handlers, errors, id lookup |
//! | | [`gateway`] | the public gateway listener: login, filters, forwarding (Glacier2's router for HTTP) |
//! | | [`ctl`] | `sessionctl` commands: stats, list, show, expire, clear, verify |
//! | | [`web`] | what both HTTP front ends share: id lookup, the session cookie, JSON errors |
//! | cluster | [`cluster`] | cluster mode: the PostgreSQL and Redis stores, write-through, takeover with fencing, reconcile, flush, the elected store sweep |
//! | contexts | [`contexts`] | the open contexts, each with its settings and its [`session::Sessions`], by name and by id tag |
//! | session layer | [`session`] | one door to sessions for every front end; lifecycle events, the event hub and its subscribers (log, webhook), the backing-store contract |
//! | | [`webhook`] | the lifecycle webhook's delivery engine: bounded backlog, retries, counters, its settings |
//! | | [`metrics`] | server-wide shared counters and Prometheus rendering |
//! | data directory | [`datadir`] | the `Version` file, opening every context's region |
//! | configuration | [`config`] | one table of keys: TOML, command line, iPlanet aliases, validation, the reference |
//! | region | [`region`] | the mmap'd session file of one context: layout, robust stripe locks, ids, expiry, repair, migration, change marks, events recorded under the lock |
//! | outbound | [`outbound`] | every outbound HTTP call: the one client builder, Standard Webhooks signing, back-off, URL checks and redaction |
//! | system | [`sys`] | fork, prctl, signals, process titles, sockets, privilege drop, counter files |
//! | leaves | [`dirlock`] | the data directory's two locks: one server per directory; tools kept out while locks are re-initialised |
//! | | [`disk`] | reserving a mapped file's blocks (`posix_fallocate`), so a full disk never SIGBUSes |
//! | | [`crypto`] | HMAC-SHA256 and constant-time comparison |
//! | | [`clock`] | wall-clock milliseconds |
//! | | [`logging`] | journald-friendly log lines, rate limits |
//!
//! The crate is Linux-only: robust process-shared mutexes, `prctl` and the
//! region's little-endian layout are part of its contract.

#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(not(all(target_os = "linux", target_endian = "little")))]
compile_error!(
    "sessiond supports little-endian Linux only (robust pthread mutexes, prctl, little-endian region files)"
);

pub mod bootstrap;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod contexts;
pub mod crypto;
pub mod ctl;
pub mod datadir;
pub mod dirlock;
pub mod disk;
pub mod gateway;
pub mod http;
pub mod logging;
pub mod master;
pub mod metrics;
pub mod outbound;
pub mod reaper;
pub mod region;
pub mod session;
pub mod sys;
pub mod web;
pub mod webhook;
pub mod worker;
