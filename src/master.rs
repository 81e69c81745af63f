//! The master process: prepares the data directory and regions, binds the
//! socket, forks `max_procs` workers and one reaper, and supervises them.
//!
//! It is a plain loop over flags set by signal handlers (nginx's
//! `ngx_master_process_cycle`): SIGTERM/SIGINT stop, SIGHUP reloads, and a
//! `waitpid(WNOHANG)` pass every tick restarts dead children with a
//! back-off. It must never start tokio or any thread: it forks, and a forked
//! child of a threaded parent may inherit held locks.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use sd_notify::NotifyState;

use crate::config::{Config, Listen, Overrides};
use crate::contexts::Contexts;
use crate::datadir::{self, DataDirLock};
use crate::metrics::{MasterCounter, ServerStats};
use crate::sys::{self, Bound, Forked};
use crate::{reaper, worker};

/// Name of the pid file.
pub const PID_FILE: &str = "sessiond.pid";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Worker(usize),
    Reaper,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Kind::Worker(n) => write!(f, "worker {n}"),
            Kind::Reaper => f.write_str("reaper"),
        }
    }
}

/// One entry of the process table.
struct Slot {
    /// What runs in it.
    kind: Kind,
    /// Current pid, if running.
    pid: Option<Pid>,
    /// When the current process started.
    started: Instant,
    /// Consecutive short-lived exits (drives the back-off).
    failures: u32,
    /// When to start it again, if it is down.
    respawn_at: Option<Instant>,
    /// A fatal exit: do not restart.
    fatal: bool,
}

/// The master's state.
struct Master {
    overrides: Overrides,
    cfg: Arc<Config>,
    lock: DataDirLock,
    contexts: Arc<Contexts>,
    stats: Arc<ServerStats>,
    listener: Option<Bound>,
    /// With `reuse_port`: one SO_REUSEPORT socket per worker number, bound
    /// by the master (before any privilege drop) and kept across worker
    /// restarts, so connections hashed to a dead worker's socket wait for
    /// its replacement instead of being refused.
    reuse_sockets: Vec<Bound>,
    /// The gateway's public socket, when `[gateway]` was configured at start.
    gateway_listener: Option<Bound>,
    slots: Vec<Slot>,
    /// Old processes draining after a reload: pid and the time to SIGKILL.
    retiring: Vec<(Pid, Instant)>,
    pid: Pid,
    pid_file: PathBuf,
}

/// Runs the master until it is told to stop; returns the exit code.
pub fn run(overrides: Overrides, cfg: Config) -> i32 {
    crate::logging::set_role(crate::logging::Role::Master);
    match start(overrides, cfg) {
        Ok(mut m) => m.main_loop(),
        Err(e) => {
            log::error!("{e}");
            1
        }
    }
}

fn start(overrides: Overrides, cfg: Config) -> Result<Master, String> {
    let lock = DataDirLock::acquire(&cfg.data_dir).map_err(|e| e.to_string())?;
    let contexts = Contexts::open(&lock, &cfg).map_err(|e| format!("cannot open the session regions: {e}"))?;
    crate::session::cluster::prepare_files(&cfg, contexts.iter().map(|c| &c.sessions))
        .map_err(|e| format!("cannot prepare the cluster files in {}: {e}", cfg.data_dir.display()))?;
    let stats = ServerStats::create(&cfg.data_dir, (cfg.max_procs as usize * 2).max(2)).map_err(|e| e.to_string())?;
    stats.set_master(MasterCounter::StartTime, crate::clock::now_ms() / 1000);
    let listener = match sys::socket_from_systemd().map_err(|e| e.to_string())? {
        Some(l) => {
            log::info!("using the listening socket passed by systemd (LISTEN_FDS)");
            Some(l)
        }
        None if worker::binds_own_socket(&cfg) => None,
        None => Some(sys::bind(&cfg.listen, false).map_err(|e| e.to_string())?),
    };
    let mut reuse_sockets: Vec<Bound> = Vec::new();
    if listener.is_none() {
        let first = sys::bind(&cfg.listen, true).map_err(|e| e.to_string())?;
        // With port 0, every further socket must join the first one's port.
        let actual = reuse_addr(&first, &cfg.listen);
        reuse_sockets.push(first);
        for _ in 1..cfg.max_procs {
            reuse_sockets.push(sys::bind(&actual, true).map_err(|e| e.to_string())?);
        }
    }
    // The gateway's public socket, bound before any privilege drop or fork.
    let gateway_listener = match &cfg.gateway {
        Some(g) => {
            let b = sys::bind(&g.listen, false).map_err(|e| format!("gateway.listen: {e}"))?;
            log::info!("gateway: public listener on {} (context {})", b.describe(), g.context);
            Some(b)
        }
        None => None,
    };
    let run_dir = std::env::var_os("RUNTIME_DIRECTORY")
        .map(|s| PathBuf::from(s.to_string_lossy().split(':').next().unwrap_or("").to_string()))
        .unwrap_or_else(|| cfg.data_dir.clone());
    let pid_file = run_dir.join(PID_FILE);
    std::fs::write(&pid_file, format!("{}\n", std::process::id()))
        .map_err(|e| format!("write({}) failed: {e}", pid_file.display()))?;
    if let Some(user) = &cfg.user {
        if sys::is_root() {
            sys::chown_tree(&cfg.data_dir, user).map_err(|e| e.to_string())?;
            sys::drop_privileges(user).map_err(|e| e.to_string())?;
            log::info!("switched to user {user}");
        } else {
            log::warn!("user = {user:?} is set but sessiond did not start as root; staying as the current user");
        }
    }
    let n = cfg.max_procs as usize;
    let slots = process_table(cfg.max_procs);
    log::info!(
        "sessiond {} listening on {} with {n} worker(s) and a reaper; data_dir {}",
        env!("CARGO_PKG_VERSION"),
        match (&listener, reuse_sockets.first()) {
            (Some(l), _) => l.describe(),
            (None, Some(r)) => format!("{} (SO_REUSEPORT, one socket per worker)", r.describe()),
            (None, None) => cfg.listen.to_string(),
        },
        cfg.data_dir.display()
    );
    Ok(Master {
        overrides,
        cfg: Arc::new(cfg),
        lock,
        contexts: Arc::new(contexts),
        stats: Arc::new(stats),
        listener,
        gateway_listener,
        reuse_sockets,
        slots,
        retiring: Vec::new(),
        pid: nix::unistd::getpid(),
        pid_file,
    })
}

/// A fresh process table: `max_procs` workers and the reaper, all due now.
fn process_table(max_procs: u32) -> Vec<Slot> {
    let mut slots: Vec<Slot> = (0..max_procs as usize).map(|i| Slot::new(Kind::Worker(i))).collect();
    slots.push(Slot::new(Kind::Reaper));
    slots
}

impl Slot {
    fn new(kind: Kind) -> Slot {
        Slot { kind, pid: None, started: Instant::now(), failures: 0, respawn_at: Some(Instant::now()), fatal: false }
    }
}

/// The address a further SO_REUSEPORT socket must bind to: the first
/// socket's real address (so `listen` with port 0 still means one port).
fn reuse_addr(first: &Bound, configured: &Listen) -> Listen {
    match first {
        Bound::Tcp(l) => l.local_addr().map(Listen::Tcp).unwrap_or_else(|_| configured.clone()),
        Bound::Unix(_) => configured.clone(),
    }
}

fn notify(states: &[NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_some()
        && let Err(e) = sd_notify::notify(false, states)
    {
        log::warn!("sd_notify failed: {e}");
    }
}

impl Master {
    fn main_loop(&mut self) -> i32 {
        let term = Arc::new(AtomicBool::new(false));
        let hup = Arc::new(AtomicBool::new(false));
        for (sig, flag) in [
            (signal_hook::consts::SIGTERM, &term),
            (signal_hook::consts::SIGINT, &term),
            (signal_hook::consts::SIGQUIT, &term),
            (signal_hook::consts::SIGHUP, &hup),
        ] {
            if let Err(e) = signal_hook::flag::register(sig, flag.clone()) {
                log::error!("cannot install the handler for signal {sig}: {e}");
                return 1;
            }
        }
        sys::set_title("sessiond: master", "sessiond-master");
        self.spawn_due();
        notify(&[NotifyState::Ready, NotifyState::Status("serving")]);
        loop {
            std::thread::sleep(Duration::from_millis(50));
            self.reap_children();
            if term.load(Ordering::Relaxed) {
                return self.shutdown();
            }
            if hup.swap(false, Ordering::Relaxed) {
                self.reload();
            }
            self.spawn_due();
            self.kill_overdue_retirees();
            if !self.slots.is_empty()
                && self.slots.iter().filter(|s| matches!(s.kind, Kind::Worker(_))).all(|s| s.fatal)
            {
                log::error!("every worker failed fatally; stopping");
                self.shutdown();
                return 1;
            }
            if self.slots.iter().any(|s| matches!(s.kind, Kind::Reaper) && s.fatal) {
                log::error!("the reaper failed fatally; stopping");
                self.shutdown();
                return 1;
            }
        }
    }

    fn spawn_due(&mut self) {
        let now = Instant::now();
        for i in 0..self.slots.len() {
            let s = &self.slots[i];
            if s.pid.is_some() || s.fatal || s.respawn_at.is_none_or(|t| t > now) {
                continue;
            }
            let kind = s.kind;
            match self.fork_child(kind) {
                Ok(pid) => {
                    let s = &mut self.slots[i];
                    s.pid = Some(pid);
                    s.started = Instant::now();
                    s.respawn_at = None;
                    log::debug!("started {kind} (pid {pid})");
                }
                Err(e) => {
                    log::error!("cannot start {kind}: {e}; retrying in 1s");
                    self.slots[i].respawn_at = Some(now + Duration::from_secs(1));
                }
            }
        }
    }

    fn fork_child(&self, kind: Kind) -> Result<Pid, sys::SysError> {
        let shared = match kind {
            Kind::Worker(n) => self.listener.as_ref().or_else(|| {
                (!self.reuse_sockets.is_empty()).then(|| &self.reuse_sockets[n % self.reuse_sockets.len()])
            }),
            Kind::Reaper => None,
        };
        let dup = |e| sys::SysError { call: "dup(listening socket)".into(), source: e };
        let listener = match shared {
            Some(Bound::Tcp(l)) => Some(Bound::Tcp(l.try_clone().map_err(dup)?)),
            Some(Bound::Unix(l)) => Some(Bound::Unix(l.try_clone().map_err(dup)?)),
            None => None,
        };
        let gateway_listener = match (kind, &self.gateway_listener, &self.cfg.gateway) {
            (Kind::Worker(_), Some(Bound::Tcp(l)), Some(_)) => Some(Bound::Tcp(l.try_clone().map_err(dup)?)),
            (Kind::Worker(_), Some(Bound::Unix(l)), Some(_)) => Some(Bound::Unix(l.try_clone().map_err(dup)?)),
            _ => None,
        };
        match sys::fork()? {
            Forked::Parent(pid) => Ok(pid),
            Forked::Child => {
                if let Err(e) = sys::die_with_parent(self.pid) {
                    log::error!("{e}");
                    std::process::exit(1);
                }
                let code = match kind {
                    Kind::Worker(n) => worker::run(
                        n,
                        listener,
                        gateway_listener,
                        self.contexts.clone(),
                        self.cfg.clone(),
                        self.stats.clone(),
                    ),
                    Kind::Reaper => reaper::run(self.contexts.clone(), self.cfg.clone(), self.stats.clone()),
                };
                std::process::exit(code);
            }
        }
    }

    fn reap_children(&mut self) {
        loop {
            let status = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(s) => s,
            };
            let (pid, how, code) = match status {
                WaitStatus::Exited(pid, code) => (pid, format!("exited with status {code}"), Some(code)),
                WaitStatus::Signaled(pid, sig, core) => {
                    (pid, format!("was killed by signal {sig}{}", if core { " (core dumped)" } else { "" }), None)
                }
                _ => continue,
            };
            if let Some(k) = self.retiring.iter().position(|(p, _)| *p == pid) {
                self.retiring.remove(k);
                log::debug!("retired process {pid} {how}");
                continue;
            }
            let Some(slot) = self.slots.iter_mut().find(|s| s.pid == Some(pid)) else { continue };
            slot.pid = None;
            let lived = slot.started.elapsed();
            if code == Some(worker::EXIT_FATAL) {
                slot.fatal = true;
                log::error!("{} (pid {pid}) {how}: a fatal error; not restarting it", slot.kind);
                continue;
            }
            // Back off only when the child failed on its own soon after it
            // started (a crash loop). A SIGKILL from outside (an operator, the
            // OOM killer) is not a loop of ours: restart at once, as nginx does.
            let killed_from_outside = matches!(status, WaitStatus::Signaled(_, Signal::SIGKILL, _));
            slot.failures = if lived < Duration::from_secs(2) && !killed_from_outside { slot.failures + 1 } else { 0 };
            let delay = if slot.failures == 0 {
                Duration::ZERO
            } else {
                Duration::from_millis(100u64 << slot.failures.min(7)).min(Duration::from_secs(10))
            };
            slot.respawn_at = Some(Instant::now() + delay);
            log::warn!(
                "{} (pid {pid}) {how} after {:.1}s; restarting it{}",
                slot.kind,
                lived.as_secs_f64(),
                if delay.is_zero() {
                    String::new()
                } else {
                    format!(" in {delay:?} (crashed {} time(s) in a row)", slot.failures)
                }
            );
            self.stats.add_master(
                if slot.kind == Kind::Reaper { MasterCounter::ReaperRestarts } else { MasterCounter::WorkerRestarts },
                1,
            );
        }
    }

    /// Sends SIGTERM to every current child and moves it to the retiring list.
    fn retire_all(&mut self) {
        let slots = std::mem::take(&mut self.slots);
        self.retire(slots);
    }

    /// Sends SIGTERM to the processes of `slots` and lets them drain,
    /// bounded by `shutdown_timeout` (then SIGKILL).
    fn retire(&mut self, slots: Vec<Slot>) {
        let deadline = Instant::now() + Duration::from_secs_f64(self.cfg.shutdown_timeout) + Duration::from_secs(2);
        for pid in slots.into_iter().filter_map(|s| s.pid) {
            let _ = kill(pid, Signal::SIGTERM);
            self.retiring.push((pid, deadline));
        }
    }

    fn kill_overdue_retirees(&mut self) {
        let now = Instant::now();
        for (pid, deadline) in &self.retiring {
            if *deadline <= now {
                log::warn!("process {pid} did not finish draining in time; sending SIGKILL");
                let _ = kill(*pid, Signal::SIGKILL);
            }
        }
    }

    fn wait_retirees(&mut self) {
        while !self.retiring.is_empty() {
            std::thread::sleep(Duration::from_millis(20));
            self.reap_children();
            self.kill_overdue_retirees();
            // A retiree already reaped by someone else would never be removed.
            self.retiring.retain(|(pid, _)| kill(*pid, None).is_ok());
        }
    }

    fn new_slots(&mut self) {
        if !self.reuse_sockets.is_empty() {
            // Fewer workers: close the extra sockets, or the kernel would keep
            // hashing connections to sockets nobody accepts from.
            self.reuse_sockets.truncate((self.cfg.max_procs as usize).max(1));
            let actual = reuse_addr(&self.reuse_sockets[0], &self.cfg.listen);
            while self.reuse_sockets.len() < self.cfg.max_procs as usize {
                match sys::bind(&actual, true) {
                    Ok(b) => self.reuse_sockets.push(b),
                    Err(e) => {
                        log::error!("{e}; extra workers share the existing SO_REUSEPORT sockets");
                        break;
                    }
                }
            }
        }
        self.slots = process_table(self.cfg.max_procs);
    }

    fn reload(&mut self) {
        notify(&[NotifyState::Reloading, NotifyState::Status("reloading")]);
        log::info!("SIGHUP: reloading the configuration");
        let loaded = Config::load(&self.overrides).map_err(|e| e.to_string()).and_then(|c| {
            // The gateway's password file, parsed now, so a bad line refuses
            // the reload instead of failing in every new worker.
            match &c.gateway {
                Some(g) => crate::gateway::verifier::Verifier::load(&g.verifier)
                    .map(|_| c)
                    .map_err(|e| format!("gateway.verifier: {e}")),
                None => Ok(c),
            }
        });
        let mut new = match loaded {
            Ok(c) => c,
            Err(e) => {
                log::error!("reload refused, the running configuration stays: {e}");
                self.stats.add_master(MasterCounter::ReloadFailures, 1);
                notify(&[NotifyState::Ready, NotifyState::Status("serving (last reload refused)")]);
                return;
            }
        };
        for (key, changed) in [
            ("listen", new.listen != self.cfg.listen),
            ("reuse_port", new.reuse_port != self.cfg.reuse_port),
            ("data_dir", new.data_dir != self.cfg.data_dir),
            ("user", new.user != self.cfg.user),
            ("log_level", new.log_level != self.cfg.log_level),
        ] {
            if changed {
                log::warn!("reload: `{key}` changed; it takes effect only at the next restart");
            }
        }
        // The gateway's socket is bound once, at start: a gateway added by a
        // reload has none, and a changed gateway.listen needs a restart.
        match (&mut new.gateway, &self.gateway_listener, &self.cfg.gateway) {
            (Some(_), None, _) => {
                log::error!("reload refused: [gateway] was added; it needs a restart to bind gateway.listen");
                self.stats.add_master(MasterCounter::ReloadFailures, 1);
                notify(&[NotifyState::Ready, NotifyState::Status("serving (last reload refused)")]);
                return;
            }
            (Some(g), Some(_), Some(old)) if g.listen != old.listen => {
                log::warn!("reload: `gateway.listen` changed; it takes effect only at the next restart");
                g.listen = old.listen.clone();
            }
            _ => {}
        }
        // Cluster mode is fixed at start: its files, its reconciliation and
        // every node's fencing assume the same store and node id throughout.
        if new.cluster != self.cfg.cluster || (self.cfg.cluster.is_some() && new.node_id != self.cfg.node_id) {
            log::warn!("reload: [cluster] or node_id changed; cluster settings take effect only at the next restart");
            new.cluster = self.cfg.cluster.clone();
            if self.cfg.cluster.is_some() {
                new.node_id = self.cfg.node_id;
            }
        }
        new.listen = self.cfg.listen.clone();
        new.reuse_port = self.cfg.reuse_port;
        new.data_dir = self.cfg.data_dir.clone();
        new.user = self.cfg.user.clone();
        new.log_level = self.cfg.log_level.clone();
        let regions_of = |c: &Config| c.contexts.iter().map(|k| k.region_config(c.node_id)).collect::<Vec<_>>();
        let version_gone = datadir::version_problem(&self.cfg.data_dir);
        let regions_change = version_gone.is_some() || regions_of(&new) != regions_of(&self.cfg);
        let new = Arc::new(new);
        if regions_change {
            // Take the init lock first: if a tool holds the regions, refuse
            // the reload now rather than after draining every worker.
            let init = match datadir::InitLock::acquire(&self.cfg.data_dir, true, Duration::from_secs(10)) {
                Ok(l) => l,
                Err(e) => {
                    log::error!(
                        "reload refused, the running configuration stays: {e} (is a sessionctl still running?)"
                    );
                    self.stats.add_master(MasterCounter::ReloadFailures, 1);
                    notify(&[NotifyState::Ready, NotifyState::Status("serving (last reload refused)")]);
                    return;
                }
            };
            // Regions are reopened (rebuilt or migrated): stop every process
            // that maps them first. New connections wait in the backlog.
            log::info!(
                "reload: {}; draining the workers before reopening the regions",
                version_gone.unwrap_or_else(|| "session limits changed".into())
            );
            self.retire_all();
            self.wait_retirees();
            // Nobody maps the regions now: flush them and mark them clean, so
            // the reopen does not report an unclean shutdown.
            self.contexts.close_clean();
            let old = self.cfg.clone();
            match Contexts::open_locked(&self.lock, &init, &new) {
                Ok(c) => {
                    self.contexts = Arc::new(c);
                    self.cfg = new;
                }
                Err(e) => {
                    log::error!(
                        "reload: cannot open the regions with the new limits ({e}); reopening with the old ones"
                    );
                    match Contexts::open_locked(&self.lock, &init, &old) {
                        Ok(c) => self.contexts = Arc::new(c),
                        Err(e) => {
                            log::error!("cannot reopen the regions: {e}; stopping");
                            std::process::exit(1);
                        }
                    }
                }
            }
            self.new_slots();
        } else {
            // Start the new generation first, then let the old one drain.
            let old_slots = std::mem::take(&mut self.slots);
            // Same regions, possibly new cookie, URL-parameter or reaper settings.
            self.contexts = Arc::new(self.contexts.with_configs(&new.contexts));
            self.cfg = new;
            self.new_slots();
            self.spawn_due();
            self.retire(old_slots);
        }
        self.spawn_due();
        self.stats.add_master(MasterCounter::Reloads, 1);
        log::info!("reload done: {} worker(s)", self.cfg.max_procs);
        notify(&[NotifyState::Ready, NotifyState::Status("serving")]);
    }

    fn shutdown(&mut self) -> i32 {
        notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
        log::info!("stopping: draining requests in flight (at most {}s)", self.cfg.shutdown_timeout);
        self.retire_all();
        self.wait_retirees();
        self.contexts.close_clean();
        let _ = std::fs::remove_file(&self.pid_file);
        if let (Some(Bound::Unix(_)), Listen::Unix(p)) = (&self.listener, &self.cfg.listen) {
            let _ = std::fs::remove_file(p);
        }
        if let (Some(Bound::Unix(_)), Some(g)) = (&self.gateway_listener, &self.cfg.gateway)
            && let Listen::Unix(p) = &g.listen
        {
            let _ = std::fs::remove_file(p);
        }
        log::info!("stopped cleanly");
        0
    }
}
