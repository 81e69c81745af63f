//! sessiond: web sessions in shared memory.
//!
//! # Layout
//! Layered top to bottom: a module uses only modules in rows below its own
//! (`tests/layering.rs` reads this table and fails on any edge that points
//! up; docs/design.md §2.10 states the same order).
//!
//! | layer | module | concept |
//! | --- | --- | --- |
//! | processes | [`master`] | the master process: fork, supervise, reload, stop |
//! | | [`reaper`] | the reaper process: periodic expiry sweeps, the cluster's store jobs, its event hub |
//! | | [`worker`] | a worker process: tokio current-thread runtime + hyper, its event hub |
//! | | [`bootstrap`] | one start-up for every child after `fork`: runtime, signals as a `Shutdown` value, event hub, cluster client; the exit codes |
//! | front ends | [`http`] | the HTTP API: routing, handlers, errors, id lookup |
//! | | [`ctl`] | `sessionctl` commands: stats, list, show, expire, clear, verify |
//! | | [`gateway`] | the public gateway listener: login, filters, forwarding (Glacier2's router for HTTP) |
//! | | [`web`] | what both HTTP front ends share: id lookup, the session cookie, request framing, JSON errors |
//! | contexts | [`contexts`] | the open contexts, each with its settings and its [`session::Sessions`], by name and by id tag |
//! | session layer | [`session`] | the one door to sessions for every front end: resolve, operate, write through, re-issue; lifecycle events and their subscribers; the cluster protocol |
//! | | [`webhook`] | the lifecycle webhook's delivery engine: bounded backlog, retries, counters, its settings |
//! | store | [`store`] | the backing-store contract and its PostgreSQL, Redis and in-memory implementations |
//! | data directory | [`datadir`] | the `Version` file, opening every context's region |
//! | observability | [`metrics`] | server-wide shared counters and Prometheus rendering |
//! | system | [`sys`] | fork, prctl, signals, process titles, sockets, privilege drop, counter files |
//! | configuration | [`config`] | typed serde structs over TOML and the command line, iPlanet aliases, validation; the key table behind the reference |
//! | outbound | [`outbound`] | every outbound HTTP call: the one client builder, Standard Webhooks signing, back-off, URL checks and redaction |
//! | region | [`region`] | the mmap'd session file of one context: layout, robust stripe locks, ids, expiry, repair, migration, change marks, events recorded under the lock |
//! | leaves | [`dirlock`], [`disk`], [`crypto`], [`clock`], [`logging`] | the data directory's two locks; reserving a mapped file's blocks (`posix_fallocate`) so a full disk never SIGBUSes; HMAC-SHA256 and constant-time comparison; wall-clock milliseconds; journald-friendly log lines and rate limits |
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
pub mod store;
pub mod sys;
pub mod web;
pub mod webhook;
pub mod worker;
