//! The master process: prepares the data directory and regions, binds the
//! socket, forks `max_procs` workers and one reaper, and supervises them.
//!
//! It is a plain loop (nginx's `ngx_master_process_cycle`): with its
//! signals blocked it sleeps in `sigtimedwait` until a signal arrives or
//! the next deadline of its process table (a restart, a SIGKILL) is due.
//! SIGTERM/SIGINT/SIGQUIT stop, SIGHUP reloads, SIGCHLD reaps and restarts
//! dead children with a back-off. No signal handler runs at all. It must
//! never start tokio or any thread: it forks, and a forked child of a
//! threaded parent may inherit held locks.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use sd_notify::NotifyState;

use crate::bootstrap::{EXIT_FATAL, EXIT_OK, EXIT_RETRY, Role};
use crate::config::{Applies, Config, KEYS, Listen, Overrides, Scope};
use crate::contexts::Contexts;
use crate::datadir::{self, DataDirLock};
use crate::metrics::{MasterCounter, ServerStats};
use crate::outbound::retry::Backoff;
use crate::sys::{self, Bound, Forked};
use crate::{reaper, worker};

/// Name of the pid file.
pub const PID_FILE: &str = "sessiond.pid";

/// The delay before restarting a child that crashed N times in a row:
/// 200 ms, doubling, at most 10 s.
const RESTART_BACKOFF: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));

/// The signals the master takes, all blocked and waited for.
const SIGNALS: [Signal; 5] = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGQUIT, Signal::SIGHUP, Signal::SIGCHLD];

/// One entry of the process table: a child and its respawn state.
struct Child {
    /// What runs in it.
    role: Role,
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
    /// The process table: the current generation of children.
    children: Vec<Child>,
    /// Old processes draining after a reload: pid and the time to SIGKILL.
    retiring: Vec<(Pid, Instant)>,
    pid: Pid,
    pid_file: PathBuf,
    /// The blocked signals the loop waits for.
    signals: nix::sys::signal::SigSet,
    /// A stop signal taken while the master waited for something else.
    stop_requested: bool,
    /// A SIGHUP taken while the master waited for something else.
    reload_requested: bool,
}

/// Why the master could not start (it exits 1).
#[derive(Debug, thiserror::Error)]
enum StartError {
    /// A system call failed (blocking signals, binding, privileges, the counter file).
    #[error(transparent)]
    Sys(#[from] sys::SysError),
    /// The data-directory lock is held or cannot be taken.
    #[error(transparent)]
    Lock(#[from] datadir::DirLockError),
    /// The session regions could not be opened.
    #[error("cannot open the session regions: {0}")]
    Regions(datadir::DataDirError),
    /// Cluster mode's shared files could not be made.
    #[error("cannot prepare the cluster files in {dir}: {source}")]
    ClusterFiles {
        /// The data directory.
        dir: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The gateway's public socket could not be bound.
    #[error("gateway.listen: {0}")]
    GatewayListen(sys::SysError),
    /// The pid file could not be written.
    #[error("write({path}) failed: {source}")]
    PidFile {
        /// The pid file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Why a reload was refused; the running configuration stays.
#[derive(Debug, thiserror::Error)]
enum ReloadRefused {
    /// The new configuration does not load (or its password file does not parse).
    #[error("reload refused, the running configuration stays: {0}")]
    Invalid(String),
    /// `[gateway]` was added: its socket is bound only at start.
    #[error("reload refused: [gateway] was added; it needs a restart to bind gateway.listen")]
    GatewayAdded,
    /// The regions must be reopened but a tool holds them.
    #[error("reload refused, the running configuration stays: {0} (is a sessionctl still running?)")]
    RegionsBusy(String),
}

/// Runs the master until it is told to stop; returns the exit code.
pub fn run(overrides: Overrides, cfg: Config) -> i32 {
    crate::logging::set_role(crate::logging::Role::Master);
    match start(overrides, cfg) {
        Ok(mut m) => m.main_loop(),
        Err(e) => {
            log::error!("{e}");
            EXIT_RETRY
        }
    }
}

fn start(overrides: Overrides, cfg: Config) -> Result<Master, StartError> {
    // Blocked before any child exists, so none of their exits or a stop
    // signal can be lost before the loop waits for them.
    let signals = sys::block_signals(&SIGNALS)?;
    let lock = DataDirLock::acquire(&cfg.data_dir)?;
    let contexts = Contexts::open(&lock, &cfg).map_err(StartError::Regions)?;
    crate::session::cluster::prepare_files(&cfg, contexts.iter().map(|c| &c.sessions))
        .map_err(|source| StartError::ClusterFiles { dir: cfg.data_dir.display().to_string(), source })?;
    let stats = ServerStats::create(&cfg.data_dir, (cfg.max_procs as usize * 2).max(2))?;
    stats.set_master(MasterCounter::StartTime, crate::clock::now_ms() / 1000);
    let listener = match sys::socket_from_systemd()? {
        Some(l) => {
            log::info!("using the listening socket passed by systemd (LISTEN_FDS)");
            Some(l)
        }
        None if worker::binds_own_socket(&cfg) => None,
        None => Some(sys::bind(&cfg.listen, false)?),
    };
    let mut reuse_sockets: Vec<Bound> = Vec::new();
    if listener.is_none() {
        let first = sys::bind(&cfg.listen, true)?;
        // With port 0, every further socket must join the first one's port.
        let actual = reuse_addr(&first, &cfg.listen);
        reuse_sockets.push(first);
        for _ in 1..cfg.max_procs {
            reuse_sockets.push(sys::bind(&actual, true)?);
        }
    }
    // The gateway's public socket, bound before any privilege drop or fork.
    let gateway_listener = match &cfg.gateway {
        Some(g) => {
            let b = sys::bind(&g.listen, false).map_err(StartError::GatewayListen)?;
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
        .map_err(|source| StartError::PidFile { path: pid_file.display().to_string(), source })?;
    if let Some(user) = &cfg.user {
        if sys::is_root() {
            sys::chown_tree(&cfg.data_dir, user)?;
            sys::drop_privileges(user)?;
            log::info!("switched to user {user}");
        } else {
            log::warn!("user = {user:?} is set but sessiond did not start as root; staying as the current user");
        }
    }
    let n = cfg.max_procs as usize;
    let children = process_table(cfg.max_procs);
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
        children,
        retiring: Vec::new(),
        pid: nix::unistd::getpid(),
        pid_file,
        signals,
        stop_requested: false,
        reload_requested: false,
    })
}

/// A fresh process table: `max_procs` workers and the reaper, all due now.
fn process_table(max_procs: u32) -> Vec<Child> {
    let mut children: Vec<Child> = (0..max_procs as usize).map(|i| Child::new(Role::Worker(i))).collect();
    children.push(Child::new(Role::Reaper));
    children
}

impl Child {
    fn new(role: Role) -> Child {
        Child { role, pid: None, started: Instant::now(), failures: 0, respawn_at: Some(Instant::now()), fatal: false }
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

/// Tells systemd (when it started us with `NOTIFY_SOCKET`) what the master is doing.
fn tell_systemd(states: &[NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_some()
        && let Err(e) = sd_notify::notify(false, states)
    {
        log::warn!("sd_notify failed: {e}");
    }
}

impl Master {
    fn main_loop(&mut self) -> i32 {
        sys::set_title("sessiond: master", "sessiond-master");
        self.spawn_due();
        tell_systemd(&[NotifyState::Ready, NotifyState::Status("serving")]);
        loop {
            if std::mem::take(&mut self.stop_requested) {
                return self.shutdown();
            }
            if std::mem::take(&mut self.reload_requested) {
                self.reload();
                continue;
            }
            if let Some(code) = self.all_failed() {
                self.shutdown();
                return code;
            }
            self.wait_for_signal();
            self.reap_children();
            self.spawn_due();
            self.kill_overdue_retirees();
        }
    }

    /// `Some(exit code)` when the children failed so that serving cannot go
    /// on: every worker, or the reaper, exited fatally.
    fn all_failed(&self) -> Option<i32> {
        let workers = || self.children.iter().filter(|c| matches!(c.role, Role::Worker(_)));
        if !self.children.is_empty() && workers().all(|c| c.fatal) {
            log::error!("every worker failed fatally; stopping");
            return Some(EXIT_RETRY);
        }
        if self.children.iter().any(|c| c.role == Role::Reaper && c.fatal) {
            log::error!("the reaper failed fatally; stopping");
            return Some(EXIT_RETRY);
        }
        None
    }

    /// The next time the loop must act without a signal: a restart or a
    /// SIGKILL that is due.
    fn next_deadline(&self) -> Option<Instant> {
        let restarts = self.children.iter().filter(|c| c.pid.is_none() && !c.fatal).filter_map(|c| c.respawn_at);
        restarts.chain(self.retiring.iter().map(|(_, t)| *t)).min()
    }

    /// Sleeps in `sigtimedwait` until a signal arrives or the next deadline
    /// passes. A stop or reload signal is remembered for the loop; SIGCHLD
    /// needs nothing more (the caller reaps).
    fn wait_for_signal(&mut self) {
        let timeout = self.next_deadline().map(|t| t.saturating_duration_since(Instant::now()));
        match sys::wait_signal(&self.signals, timeout) {
            Ok(Some(Signal::SIGTERM | Signal::SIGINT | Signal::SIGQUIT)) => self.stop_requested = true,
            Ok(Some(Signal::SIGHUP)) => self.reload_requested = true,
            Ok(_) => {}
            Err(e) => {
                // Cannot happen with a valid set and timeout; a master that
                // cannot wait for signals stops rather than spin.
                log::error!("{e}; stopping");
                self.stop_requested = true;
            }
        }
    }

    fn spawn_due(&mut self) {
        let now = Instant::now();
        for i in 0..self.children.len() {
            let c = &self.children[i];
            if c.pid.is_some() || c.fatal || c.respawn_at.is_none_or(|t| t > now) {
                continue;
            }
            let role = c.role;
            match self.fork_child(role) {
                Ok(pid) => {
                    let c = &mut self.children[i];
                    c.pid = Some(pid);
                    c.started = Instant::now();
                    c.respawn_at = None;
                    log::debug!("started {role} (pid {pid})");
                }
                Err(e) => {
                    log::error!("cannot start {role}: {e}; retrying in 1s");
                    self.children[i].respawn_at = Some(now + Duration::from_secs(1));
                }
            }
        }
    }

    fn fork_child(&self, role: Role) -> Result<Pid, sys::SysError> {
        let shared = match role {
            Role::Worker(n) => self.listener.as_ref().or_else(|| {
                (!self.reuse_sockets.is_empty()).then(|| &self.reuse_sockets[n % self.reuse_sockets.len()])
            }),
            Role::Reaper => None,
        };
        let dup = |e| sys::SysError { call: "dup(listening socket)".into(), source: e };
        let listener = match shared {
            Some(Bound::Tcp(l)) => Some(Bound::Tcp(l.try_clone().map_err(dup)?)),
            Some(Bound::Unix(l)) => Some(Bound::Unix(l.try_clone().map_err(dup)?)),
            None => None,
        };
        let gateway_listener = match (role, &self.gateway_listener, &self.cfg.gateway) {
            (Role::Worker(_), Some(Bound::Tcp(l)), Some(_)) => Some(Bound::Tcp(l.try_clone().map_err(dup)?)),
            (Role::Worker(_), Some(Bound::Unix(l)), Some(_)) => Some(Bound::Unix(l.try_clone().map_err(dup)?)),
            _ => None,
        };
        match sys::fork()? {
            Forked::Parent(pid) => Ok(pid),
            Forked::Child => {
                if let Err(e) = sys::die_with_parent(self.pid) {
                    log::error!("{e}");
                    std::process::exit(EXIT_RETRY);
                }
                let code = match role {
                    Role::Worker(n) => worker::run(
                        n,
                        listener,
                        gateway_listener,
                        self.contexts.clone(),
                        self.cfg.clone(),
                        self.stats.clone(),
                    ),
                    Role::Reaper => reaper::run(self.contexts.clone(), self.cfg.clone(), self.stats.clone()),
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
            let Some(child) = self.children.iter_mut().find(|c| c.pid == Some(pid)) else { continue };
            child.pid = None;
            let lived = child.started.elapsed();
            if code == Some(EXIT_FATAL) {
                child.fatal = true;
                log::error!("{} (pid {pid}) {how}: a fatal error; not restarting it", child.role);
                continue;
            }
            // Back off only when the child failed on its own soon after it
            // started (a crash loop). A SIGKILL from outside (an operator, the
            // OOM killer) is not a loop of ours: restart at once, as nginx does.
            let killed_from_outside = matches!(status, WaitStatus::Signaled(_, Signal::SIGKILL, _));
            child.failures =
                if lived < Duration::from_secs(2) && !killed_from_outside { child.failures + 1 } else { 0 };
            let delay = if child.failures == 0 { Duration::ZERO } else { RESTART_BACKOFF.delay(child.failures) };
            child.respawn_at = Some(Instant::now() + delay);
            log::warn!(
                "{} (pid {pid}) {how} after {:.1}s; restarting it{}",
                child.role,
                lived.as_secs_f64(),
                if delay.is_zero() {
                    String::new()
                } else {
                    format!(" in {delay:?} (crashed {} time(s) in a row)", child.failures)
                }
            );
            self.stats.add_master(
                if child.role == Role::Reaper { MasterCounter::ReaperRestarts } else { MasterCounter::WorkerRestarts },
                1,
            );
        }
    }

    /// Sends SIGTERM to every current child and moves it to the retiring list.
    fn retire_all(&mut self) {
        let children = std::mem::take(&mut self.children);
        self.retire(children);
    }

    /// Sends SIGTERM to the processes of `children` and lets them drain,
    /// bounded by `shutdown_timeout` (then SIGKILL).
    fn retire(&mut self, children: Vec<Child>) {
        let deadline = Instant::now() + self.cfg.shutdown_timeout + Duration::from_secs(2);
        for pid in children.into_iter().filter_map(|c| c.pid) {
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

    /// Waits (in `sigtimedwait`, woken by SIGCHLD or the next SIGKILL
    /// deadline) until every retiring process is gone.
    fn wait_retirees(&mut self) {
        while !self.retiring.is_empty() {
            self.wait_for_signal();
            self.reap_children();
            self.kill_overdue_retirees();
            // A retiree already reaped by someone else would never be removed.
            self.retiring.retain(|(pid, _)| kill(*pid, None).is_ok());
        }
    }

    fn new_table(&mut self) {
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
        self.children = process_table(self.cfg.max_procs);
    }

    /// SIGHUP: loads the configuration again and applies it, in named
    /// steps; a refusal at any step leaves the running configuration as it is.
    fn reload(&mut self) {
        tell_systemd(&[NotifyState::Reloading, NotifyState::Status("reloading")]);
        log::info!("SIGHUP: reloading the configuration");
        match self.apply_reload() {
            Ok(()) => {
                self.stats.add_master(MasterCounter::Reloads, 1);
                log::info!("reload done: {} worker(s)", self.cfg.max_procs);
                tell_systemd(&[NotifyState::Ready, NotifyState::Status("serving")]);
            }
            Err(refused) => {
                log::error!("{refused}");
                self.stats.add_master(MasterCounter::ReloadFailures, 1);
                tell_systemd(&[NotifyState::Ready, NotifyState::Status("serving (last reload refused)")]);
            }
        }
    }

    /// The reload's steps: load and check, keep what needs a restart, then
    /// either reopen the regions or roll a new generation of children.
    fn apply_reload(&mut self) -> Result<(), ReloadRefused> {
        let mut new = load_checked(&self.overrides)?;
        self.keep_restart_only(&mut new)?;
        let version_gone = datadir::version_problem(&self.cfg.data_dir);
        let regions_of = |c: &Config| c.contexts.iter().map(|k| k.region_config(c.node_id)).collect::<Vec<_>>();
        let new = Arc::new(new);
        if version_gone.is_some() || regions_of(&new) != regions_of(&self.cfg) {
            self.reopen_regions(new, version_gone.unwrap_or_else(|| "session limits changed".into()))?;
        } else {
            self.roll_generation(new);
        }
        self.spawn_due();
        Ok(())
    }

    /// Puts back every setting that takes effect only at a restart (the
    /// socket, the data directory, the user, the log level, the cluster),
    /// warning about each that changed. `[gateway]` added is refused: its
    /// socket is bound only at start.
    fn keep_restart_only(&self, new: &mut Config) -> Result<(), ReloadRefused> {
        // The top-level keys that KEYS marks restart-only; the gateway's and
        // the cluster's are handled below, as whole tables.
        for k in KEYS.iter().filter(|k| k.scope == Scope::Server && k.applies == Applies::Restart) {
            if new.keep(&self.cfg, k.name) {
                log::warn!("reload: `{}` changed; it takes effect only at the next restart", k.name);
            }
        }
        // The gateway's socket is bound once, at start: a gateway added by a
        // reload has none, and a changed gateway.listen needs a restart.
        match (&mut new.gateway, &self.gateway_listener, &self.cfg.gateway) {
            (Some(_), None, _) => return Err(ReloadRefused::GatewayAdded),
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
        Ok(())
    }

    /// The regions must be rebuilt or migrated (`why`): drain every child,
    /// reopen the regions under the init lock with the new limits (the old
    /// ones if that fails), and start a fresh table.
    fn reopen_regions(&mut self, new: Arc<Config>, why: String) -> Result<(), ReloadRefused> {
        // Take the init lock first: if a tool holds the regions, refuse
        // the reload now rather than after draining every worker.
        let init = datadir::InitLock::acquire(&self.cfg.data_dir, true, Duration::from_secs(10))
            .map_err(|e| ReloadRefused::RegionsBusy(e.to_string()))?;
        // Regions are reopened (rebuilt or migrated): stop every process
        // that maps them first. New connections wait in the backlog.
        log::info!("reload: {why}; draining the workers before reopening the regions");
        self.retire_all();
        self.wait_retirees();
        // Nobody maps the regions now: flush them and mark them clean, so
        // the reopen does not report an unclean shutdown.
        self.contexts.close_clean();
        match Contexts::open_locked(&self.lock, &init, &new) {
            Ok(c) => {
                self.contexts = Arc::new(c);
                self.cfg = new;
            }
            Err(e) => {
                log::error!("reload: cannot open the regions with the new limits ({e}); reopening with the old ones");
                match Contexts::open_locked(&self.lock, &init, &self.cfg) {
                    Ok(c) => self.contexts = Arc::new(c),
                    Err(e) => {
                        log::error!("cannot reopen the regions: {e}; stopping");
                        std::process::exit(EXIT_RETRY);
                    }
                }
            }
        }
        self.new_table();
        Ok(())
    }

    /// Same regions, possibly new cookie, URL-parameter or reaper settings:
    /// start the new generation first, then let the old one drain.
    fn roll_generation(&mut self, new: Arc<Config>) {
        let old = std::mem::take(&mut self.children);
        self.contexts = Arc::new(self.contexts.with_configs(&new.contexts));
        self.cfg = new;
        self.new_table();
        self.spawn_due();
        self.retire(old);
    }

    fn shutdown(&mut self) -> i32 {
        tell_systemd(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
        log::info!("stopping: draining requests in flight (at most {:?})", self.cfg.shutdown_timeout);
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
        EXIT_OK
    }
}

/// Reload step one: the configuration as the files and flags say now, with
/// the gateway's password file parsed, so a bad line refuses the reload
/// instead of failing in every new worker.
fn load_checked(overrides: &Overrides) -> Result<Config, ReloadRefused> {
    let c = Config::load(overrides).map_err(|e| ReloadRefused::Invalid(e.to_string()))?;
    if let Some(g) = &c.gateway {
        crate::gateway::verifier::Verifier::load(&g.verifier)
            .map_err(|e| ReloadRefused::Invalid(format!("gateway.verifier: {e}")))?;
    }
    Ok(c)
}
