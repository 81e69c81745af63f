//! A worker process: one tokio current-thread runtime serving HTTP/1.1
//! with hyper on the inherited (or its own SO_REUSEPORT) listening socket.
//!
//! Built only after `fork()`. Region calls run inline on the runtime's one
//! thread: they take well under a microsecond and never block longer than
//! `lock_timeout`. On SIGTERM/SIGINT the worker stops accepting, lets
//! requests in flight finish for at most `shutdown_timeout`, and exits 0.
//! It must never touch the data-dir lock or set a region's clean flag:
//! those belong to the master.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::config::{Config, Listen};
use crate::contexts::Contexts;
use crate::gateway::public::Gateway;
use crate::http::{AppState, handle};
use crate::metrics::{ServerStats, WorkerCounter};
use crate::sys::{self, Bound};

/// Exit code a child uses when restarting it cannot help (bad socket).
pub const EXIT_FATAL: i32 = 2;

/// Runs worker `n` until told to stop; returns the process exit code.
/// `gateway_listener` is the gateway's public socket, when `[gateway]` is
/// configured.
pub fn run(
    n: usize,
    listener: Option<Bound>,
    gateway_listener: Option<Bound>,
    contexts: Arc<Contexts>,
    config: Arc<Config>,
    stats: Arc<ServerStats>,
) -> i32 {
    crate::logging::set_role(crate::logging::Role::Worker(n as u32));
    sys::set_title(&format!("sessiond: worker {n}"), &format!("sessiond-w{n}"));
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT, signal_hook::consts::SIGQUIT] {
        if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
            log::error!("worker {n}: cannot install the handler for signal {sig}: {e}");
            return EXIT_FATAL;
        }
    }
    let Some(listener) = listener else {
        log::error!("worker {n}: no listening socket was passed from the master");
        return EXIT_FATAL;
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            log::error!("worker {n}: cannot build the tokio runtime: {e}");
            return 1;
        }
    };
    // The event hub is this process's own, built inside its runtime and
    // installed before the contexts are shared with any connection.
    let metrics = crate::session::HubMetrics { stats: stats.clone(), block: n };
    let hub = {
        let _rt = rt.enter();
        crate::session::lifecycle_webhook::hub_for_process(
            &config,
            contexts.names(),
            metrics,
            &format!("sessiond worker {n}"),
        )
    };
    let hub = match hub {
        Ok(h) => h,
        Err(e) => {
            log::error!("worker {n}: cannot start the lifecycle webhook: {e}");
            return EXIT_FATAL;
        }
    };
    if let Some(h) = &hub {
        rt.spawn(h.clone().run());
    }
    let contexts = Arc::new(contexts.with_hub(hub));
    let api_token = match &config.api_token_file {
        Some(p) => match crate::config::read_secret_file("api_token_file", p) {
            Ok(t) => Some(t),
            Err(e) => {
                log::error!("worker {n}: {e}");
                return EXIT_FATAL;
            }
        },
        None => None,
    };
    // Cluster mode: this worker's store client, made now (after fork) and
    // connected on first use from this runtime.
    let cluster = match crate::cluster::Cluster::open(&config, &contexts) {
        Ok(c) => c,
        Err(e) => {
            log::error!("worker {n}: cluster: {e}");
            return EXIT_FATAL;
        }
    };
    let core = match crate::gateway::GatewayCore::new(&config, &contexts) {
        Ok(c) => c,
        Err(e) => {
            log::error!("worker {n}: {e}");
            return EXIT_FATAL;
        }
    };
    let gateway = match (&core, gateway_listener) {
        (Some(core), Some(l)) => {
            let _rt = rt.enter();
            match crate::gateway::public::Gateway::start(
                core.clone(),
                contexts.clone(),
                config.clone(),
                cluster.clone(),
            ) {
                Ok(g) => Some((Arc::new(g), l)),
                Err(e) => {
                    log::error!("worker {n}: cannot start the gateway: {e}");
                    return EXIT_FATAL;
                }
            }
        }
        (Some(_), None) => {
            log::error!("worker {n}: [gateway] is configured but no gateway socket was passed from the master");
            return EXIT_FATAL;
        }
        _ => None,
    };
    let state =
        Arc::new(AppState { contexts, config: config.clone(), stats, worker: n, gateway: core, api_token, cluster });
    rt.block_on(serve(n, listener, gateway, state, stop))
}

enum Listener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

fn register(bound: Bound) -> std::io::Result<Listener> {
    match bound {
        Bound::Tcp(l) => l.set_nonblocking(true).and_then(|_| tokio::net::TcpListener::from_std(l)).map(Listener::Tcp),
        Bound::Unix(l) => {
            l.set_nonblocking(true).and_then(|_| tokio::net::UnixListener::from_std(l)).map(Listener::Unix)
        }
    }
}

/// What a connection serves.
#[derive(Clone, Copy)]
enum Side {
    /// The private API.
    Private,
    /// The gateway's public listener.
    Gateway,
}

async fn serve(
    n: usize,
    bound: Bound,
    gateway: Option<(Arc<Gateway>, Bound)>,
    state: Arc<AppState>,
    stop: Arc<AtomicBool>,
) -> i32 {
    let listener = match register(bound) {
        Ok(l) => l,
        Err(e) => {
            log::error!("worker {n}: cannot register the listening socket with the runtime: {e}");
            return EXIT_FATAL;
        }
    };
    let (gw, gw_listener) = match gateway {
        Some((g, b)) => match register(b) {
            Ok(l) => (Some(g), Some(l)),
            Err(e) => {
                log::error!("worker {n}: cannot register the gateway socket with the runtime: {e}");
                return EXIT_FATAL;
            }
        },
        None => (None, None),
    };
    let cfg = state.config.clone();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs_f64(cfg.header_timeout))
        .max_buf_size(cfg.max_header_size as usize)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    // Gateway connections may be upgraded (WebSocket), which hyper-util's
    // GracefulShutdown cannot watch: they get this signal instead.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let active = Arc::new(AtomicUsize::new(0));
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    log::debug!("worker {n}: serving on {}", cfg.listen);
    loop {
        let accepted = tokio::select! {
            r = accept(&listener) => r.map(|c| (c, Side::Private)),
            r = accept_opt(gw_listener.as_ref()) => r.map(|c| (c, Side::Gateway)),
            _ = tick.tick() => {
                if stop.load(Ordering::Relaxed) { break; }
                continue;
            }
        };
        let (io, side) = match accepted {
            Ok(x) => x,
            Err(e) => {
                log::warn!("worker {n}: accept() failed: {e}");
                // EMFILE and friends: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if active.load(Ordering::Relaxed) >= cfg.max_connections as usize {
            state.stats.add_worker(n, WorkerCounter::ConnectionsRefused, 1);
            drop(io);
            continue;
        }
        state.stats.add_worker(n, WorkerCounter::ConnectionsAccepted, 1);
        active.fetch_add(1, Ordering::Relaxed);
        let st = state.clone();
        let done = active.clone();
        match (side, io, &gw) {
            (Side::Gateway, Conn::Tcp(s), Some(g)) => {
                let peer = s.peer_addr().ok();
                spawn_gateway_conn(&builder, stop_rx.clone(), s, peer, g.clone(), st, done)
            }
            (Side::Gateway, Conn::Unix(s), Some(g)) => {
                spawn_gateway_conn(&builder, stop_rx.clone(), s, None, g.clone(), st, done)
            }
            (_, Conn::Tcp(s), _) => spawn_conn(&builder, &graceful, s, st, done),
            (_, Conn::Unix(s), _) => spawn_conn(&builder, &graceful, s, st, done),
        }
    }
    drop(listener);
    drop(gw_listener);
    let open = active.load(Ordering::Relaxed);
    log::info!("stopping; draining {open} open connection(s)");
    let limit = Duration::from_secs_f64(cfg.shutdown_timeout);
    let _ = stop_tx.send(true);
    let drained = async {
        graceful.shutdown().await;
        while active.load(Ordering::Relaxed) > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::select! {
        _ = drained => {}
        _ = tokio::time::sleep(limit) => {
            log::warn!(
                "{} connection(s) still open after shutdown_timeout = {limit:?}; closing them",
                active.load(Ordering::Relaxed)
            );
        }
    }
    0
}

enum Conn {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept_opt(l: Option<&Listener>) -> std::io::Result<Conn> {
    match l {
        Some(l) => accept(l).await,
        None => std::future::pending().await,
    }
}

async fn accept(l: &Listener) -> std::io::Result<Conn> {
    match l {
        Listener::Tcp(l) => {
            let (s, _) = l.accept().await?;
            let _ = s.set_nodelay(true);
            Ok(Conn::Tcp(s))
        }
        Listener::Unix(l) => Ok(Conn::Unix(l.accept().await?.0)),
    }
}

fn spawn_conn<I>(
    builder: &http1::Builder,
    graceful: &GracefulShutdown,
    io: I,
    st: Arc<AppState>,
    active: Arc<AtomicUsize>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // A client that stops reading its response must not hold the
    // connection forever: writes that stall past send_timeout fail. The
    // timer is armed only while a write is pending, so the hot path pays
    // nothing.
    let mut io = tokio_io_timeout::TimeoutStream::new(io);
    io.set_write_timeout(Some(Duration::from_secs_f64(st.config.send_timeout)));
    let conn = builder.serve_connection(TokioIo::new(Box::pin(io)), service_fn(move |req| handle(st.clone(), req)));
    let fut = graceful.watch(conn);
    tokio::spawn(async move {
        if let Err(e) = fut.await {
            log::debug!("connection ended with an error: {e}");
        }
        active.fetch_sub(1, Ordering::Relaxed);
    });
}

/// Serves one gateway connection: upgrades (WebSocket) allowed, the peer
/// address passed to the handler, each request recorded in the metrics.
fn spawn_gateway_conn<I>(
    builder: &http1::Builder,
    mut stop: tokio::sync::watch::Receiver<bool>,
    io: I,
    peer: Option<std::net::SocketAddr>,
    gw: Arc<Gateway>,
    st: Arc<AppState>,
    active: Arc<AtomicUsize>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut io = tokio_io_timeout::TimeoutStream::new(io);
    io.set_write_timeout(Some(Duration::from_secs_f64(st.config.send_timeout)));
    let svc = service_fn(move |req| {
        let (gw, st) = (gw.clone(), st.clone());
        async move {
            let start = std::time::Instant::now();
            let r = crate::gateway::public::handle(gw, peer, req).await;
            if let Ok(resp) = &r {
                st.stats.record(st.worker, crate::metrics::Route::Gateway, resp.status().as_u16(), start.elapsed());
            }
            r
        }
    });
    let conn = builder.serve_connection(TokioIo::new(Box::pin(io)), svc).with_upgrades();
    tokio::spawn(async move {
        let mut conn = std::pin::pin!(conn);
        let stopped = async move {
            loop {
                let now = *stop.borrow_and_update();
                if now || stop.changed().await.is_err() {
                    return;
                }
            }
        };
        let r = tokio::select! {
            r = conn.as_mut() => r,
            _ = stopped => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(e) = r {
            log::debug!("gateway connection ended with an error: {e}");
        }
        active.fetch_sub(1, Ordering::Relaxed);
    });
}

/// Whether `listen` needs a socket bound per worker.
pub fn binds_own_socket(cfg: &Config) -> bool {
    cfg.reuse_port && matches!(cfg.listen, Listen::Tcp(_))
}
