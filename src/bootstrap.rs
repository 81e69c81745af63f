//! One start-up for every child process (nginx's one child init): after
//! `fork`, a worker and the reaper both run [`start`], which names the
//! process, builds its tokio runtime, turns SIGTERM/SIGINT/SIGQUIT into a
//! [`Shutdown`] value, builds its event hub and cluster client, and hands
//! back a [`Process`]; what only one of them needs (the worker's sockets
//! and gateway, the reaper's sweeps) stays in `worker` and `reaper`.
//!
//! Every way start-up can fail is a [`BootError`] variant, and the exit
//! codes the master acts on live here ([`EXIT_RETRY`], [`EXIT_FATAL`]).
//! It runs only in a freshly forked child: it must never be called in the
//! master, which must not start a runtime or a thread.

use std::io;
use std::sync::Arc;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::config::Config;
use crate::contexts::Contexts;
use crate::gateway::GatewayCore;
use crate::metrics::ServerStats;
use crate::session::HubMetrics;
use crate::session::cluster::Cluster;
use crate::webhook::WebhookError;

/// Exit code of a process that stopped as it was told to.
pub const EXIT_OK: i32 = 0;
/// Exit code of a failure a restart may cure (the master restarts the
/// process, with a back-off); the master itself exits with it on an error.
pub const EXIT_RETRY: i32 = 1;
/// Exit code of a child that restarting cannot help (a bad socket, a bad
/// secret file): the master does not restart it.
pub const EXIT_FATAL: i32 = 2;

/// Which child this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Worker number N.
    Worker(usize),
    /// The reaper.
    Reaper,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Role::Worker(n) => write!(f, "worker {n}"),
            Role::Reaper => f.write_str("reaper"),
        }
    }
}

/// Why a child could not start.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// The tokio runtime could not be built.
    #[error("cannot build the tokio runtime: {0}")]
    Runtime(io::Error),
    /// A signal handler could not be installed.
    #[error("cannot install the handler for {signal}: {source}")]
    Signal {
        /// The signal's name.
        signal: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// The lifecycle webhook's settings or secret are unusable.
    #[error("cannot start the lifecycle webhook: {0}")]
    Webhook(#[from] WebhookError),
    /// The cluster client could not be made.
    #[error("cluster: {0}")]
    Cluster(crate::session::cluster::OpenError),
    /// The gateway's settings are unusable (its secret, its context).
    #[error("{0}")]
    GatewayCore(String),
    /// The worker's gateway could not be started.
    #[error("cannot start the gateway: {0}")]
    Gateway(String),
    /// The master passed no listening socket.
    #[error("no listening socket was passed from the master")]
    NoListener,
    /// `[gateway]` is configured but the master passed no gateway socket.
    #[error("[gateway] is configured but no gateway socket was passed from the master")]
    NoGatewayListener,
    /// A socket could not be registered with the runtime.
    #[error("cannot register the {what} with the runtime: {source}")]
    Register {
        /// Which socket.
        what: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// The API token file could not be read.
    #[error("{0}")]
    ApiToken(String),
}

impl BootError {
    /// The exit code for this failure: only a runtime that could not be
    /// built is worth a restart.
    pub fn exit_code(&self) -> i32 {
        match self {
            BootError::Runtime(_) => EXIT_RETRY,
            _ => EXIT_FATAL,
        }
    }
}

/// Shutdown as a value (mini-redis's `Shutdown`): resolves once the
/// process is told to stop. Cloning is cheap; every clone sees the same
/// signal.
#[derive(Clone, Debug)]
pub struct Shutdown {
    /// Becomes true when a stop signal arrives.
    rx: watch::Receiver<bool>,
}

impl Shutdown {
    /// Turns SIGTERM, SIGINT and SIGQUIT into a shutdown. Call inside the
    /// runtime: the handlers are installed now (they only wake the runtime),
    /// and a task on the runtime forwards the first signal.
    pub fn on_signals() -> Result<Shutdown, BootError> {
        let install = |kind: SignalKind, name: &'static str| {
            signal(kind).map_err(|source| BootError::Signal { signal: name, source })
        };
        let mut term = install(SignalKind::terminate(), "SIGTERM")?;
        let mut int = install(SignalKind::interrupt(), "SIGINT")?;
        let mut quit = install(SignalKind::quit(), "SIGQUIT")?;
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
                _ = quit.recv() => {}
            }
            let _ = tx.send(true);
        });
        Ok(Shutdown { rx })
    }

    /// Waits until the process is told to stop.
    pub async fn recv(&mut self) {
        // An error means the sender is gone (the runtime is shutting down):
        // that is a stop too.
        let _ = self.rx.wait_for(|stop| *stop).await;
    }

    /// Whether the process has been told to stop.
    pub fn is_shutdown(&self) -> bool {
        *self.rx.borrow()
    }
}

/// A started child: its runtime and what every child shares.
pub struct Process {
    /// Which child this is.
    pub role: Role,
    /// The process's current-thread runtime.
    pub rt: tokio::runtime::Runtime,
    /// The contexts, with this process's event hub installed.
    pub contexts: Arc<Contexts>,
    /// Cluster mode: this process's store client (connected on first use).
    pub cluster: Option<Arc<Cluster>>,
    /// Resolves when the process is told to stop.
    pub shutdown: Shutdown,
}

/// Starts a child after `fork`: title, runtime, signals, event hub,
/// cluster client. `stats` block `block` takes the hub's counters.
pub fn start(
    role: Role,
    contexts: &Contexts,
    config: &Config,
    stats: Arc<ServerStats>,
    block: usize,
) -> Result<Process, BootError> {
    let (title, comm, origin) = match role {
        Role::Worker(n) => {
            crate::logging::set_role(crate::logging::Role::Worker(n as u32));
            (format!("sessiond: worker {n}"), format!("sessiond-w{n}"), format!("sessiond worker {n}"))
        }
        Role::Reaper => {
            crate::logging::set_role(crate::logging::Role::Reaper);
            ("sessiond: reaper".to_string(), "sessiond-reaper".to_string(), "sessiond reaper".to_string())
        }
    };
    crate::sys::set_title(&title, &comm);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(BootError::Runtime)?;
    let _entered = rt.enter();
    let shutdown = Shutdown::on_signals()?;
    // The master waits for signals with them blocked; a child takes them
    // as they come, now that its handlers are in place.
    crate::sys::unblock_signals();
    // The event hub is this process's own, built inside its runtime and
    // installed before the contexts are shared with anything.
    let metrics = HubMetrics { stats, block };
    let hub = crate::session::lifecycle_webhook::hub_for_process(config, contexts.names(), metrics, &origin)?;
    if let Some(h) = &hub {
        rt.spawn(h.clone().run());
    }
    let contexts = contexts.with_hub(hub);
    // Cluster mode: this process's store client, made now (after fork) and
    // connected on first use from this runtime; installed in every
    // context's session service, the one door.
    let cluster = contexts.open_cluster(config).map_err(BootError::Cluster)?;
    let contexts = Arc::new(contexts.with_cluster(cluster.clone()));
    drop(_entered);
    Ok(Process { role, rt, contexts, cluster, shutdown })
}

impl Process {
    /// The gateway's shared state, when `[gateway]` is configured.
    pub fn gateway_core(&self, config: &Config) -> Result<Option<Arc<GatewayCore>>, BootError> {
        GatewayCore::new(config, &self.contexts).map_err(BootError::GatewayCore)
    }
}
