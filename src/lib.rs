//! sessiond: web sessions in shared memory.
//!
//! # Layout
//! | module | concept |
//! | --- | --- |
//! | [`session`] | the session layer: one door to sessions for every front end; lifecycle events, the event hub and its subscribers (log, webhook), the backing-store contract |
//! | [`region`] | the mmap'd session file of one context: layout, robust stripe locks, ids, expiry, repair, migration |
//! | [`dirlock`] | the data directory's locks: one server per directory, and the init lock that keeps tools out while locks are re-initialised (leaf) |
//! | [`datadir`] | the data directory: `Version` file, opening every context's region |
//! | [`syscalls`] | plain system calls with no policy (leaf) |
//! | [`clock`] | wall-clock milliseconds |
//! | [`config`] | TOML file, command-line overrides, iPlanet aliases, validation |
//! | [`ctl`] | `sessionctl` commands: stats, list, show, expire, clear, verify |
//! | [`contexts`] | the open contexts and their regions, by name and by id tag |
//! | [`master`] | the master process: fork, supervise, reload, stop |
//! | [`worker`] | a worker process: tokio current-thread runtime + hyper |
//! | [`reaper`] | the reaper process: periodic expiry sweeps |
//! | [`http`] | the HTTP API: routing, handlers, errors, id lookup |
//! | [`metrics`] | server-wide shared counters and Prometheus rendering |
//! | [`webhook`] | lifecycle-event webhook delivery: Standard Webhooks signing, bounded backlog, retries |
//! | [`logging`] | journald-friendly log lines |
//! | [`sys`] | fork, prctl, process titles, sockets, privilege drop, counter files |
//!
//! The crate is Linux-only: robust process-shared mutexes, `prctl` and the
//! region's little-endian layout are part of its contract.

#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(not(all(target_os = "linux", target_endian = "little")))]
compile_error!(
    "sessiond supports little-endian Linux only (robust pthread mutexes, prctl, little-endian region files)"
);

pub mod clock;
pub mod config;
pub mod contexts;
pub mod ctl;
pub mod datadir;
pub mod dirlock;
pub mod http;
pub mod logging;
pub mod master;
pub mod metrics;
pub mod reaper;
pub mod region;
pub mod session;
pub mod sys;
pub mod syscalls;
pub mod webhook;
pub mod worker;
