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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::bootstrap::{self, BootError, Process, Role, Shutdown};
use crate::config::{Config, Listen};
use crate::contexts::Contexts;
use crate::gateway::public::Gateway;
use crate::http::{AppState, handle};
use crate::metrics::{ServerStats, WorkerCounter};
use crate::sys::Bound;

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
    let role = Role::Worker(n);
    let started = bootstrap::start(role, &contexts, &config, stats.clone(), n)
        .and_then(|p| serving(p, n, listener, gateway_listener, &config, stats));
    match started {
        Ok((p, serve)) => p.rt.block_on(serve),
        Err(e) => {
            log::error!("{role}: {e}");
            e.exit_code()
        }
    }
}

/// What a started worker needs beyond [`bootstrap::start`]: its sockets,
/// the API token, the gateway. Returns the process and its serving future.
fn serving(
    p: Process,
    n: usize,
    listener: Option<Bound>,
    gateway_listener: Option<Bound>,
    config: &Arc<Config>,
    stats: Arc<ServerStats>,
) -> Result<(Process, impl std::future::Future<Output = i32> + use<>), BootError> {
    let listener = listener.ok_or(BootError::NoListener)?;
    let api_token = match &config.api_token_file {
        Some(path) => Some(
            crate::config::read_secret_file("api_token_file", path).map_err(|e| BootError::ApiToken(e.to_string()))?,
        ),
        None => None,
    };
    let core = p.gateway_core(config)?;
    let gateway = match (&core, gateway_listener) {
        (Some(core), Some(l)) => {
            let _rt = p.rt.enter();
            let g = Gateway::start(core.clone(), p.contexts.clone(), config.clone()).map_err(BootError::Gateway)?;
            Some((Arc::new(g), l))
        }
        (Some(_), None) => return Err(BootError::NoGatewayListener),
        _ => None,
    };
    let state = Arc::new(AppState {
        contexts: p.contexts.clone(),
        config: config.clone(),
        stats,
        worker: n,
        gateway: core,
        api_token,
    });
    let fut = serve(n, listener, gateway, state, p.shutdown.clone());
    Ok((p, fut))
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
    mut shutdown: Shutdown,
) -> i32 {
    let registered = register(bound)
        .map_err(|source| BootError::Register { what: "listening socket", source })
        .and_then(|l| match gateway {
            Some((g, b)) => register(b)
                .map(|gl| (l, Some(g), Some(gl)))
                .map_err(|source| BootError::Register { what: "gateway socket", source }),
            None => Ok((l, None, None)),
        });
    let (listener, gw, gw_listener) = match registered {
        Ok(x) => x,
        Err(e) => {
            log::error!("worker {n}: {e}");
            return e.exit_code();
        }
    };
    let cfg = state.config.clone();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.header_timeout)
        .max_buf_size(cfg.max_header_size as usize)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    // Gateway connections may be upgraded (WebSocket), which hyper-util's
    // GracefulShutdown cannot watch: they get this signal instead.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let active = Arc::new(OpenConnections::default());
    log::debug!("worker {n}: serving on {}", cfg.listen);
    loop {
        let accepted = tokio::select! {
            r = accept(&listener) => r.map(|c| (c, Side::Private)),
            r = accept_opt(gw_listener.as_ref()) => r.map(|c| (c, Side::Gateway)),
            _ = shutdown.recv() => break,
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
        if active.count() >= cfg.max_connections as usize {
            state.stats.add_worker(n, WorkerCounter::ConnectionsRefused, 1);
            drop(io);
            continue;
        }
        state.stats.add_worker(n, WorkerCounter::ConnectionsAccepted, 1);
        active.opened();
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
    let open = active.count();
    log::info!("stopping; draining {open} open connection(s)");
    let limit = cfg.shutdown_timeout;
    let _ = stop_tx.send(true);
    let drained = async {
        graceful.shutdown().await;
        active.closed_all().await;
    };
    tokio::select! {
        _ = drained => {}
        _ = tokio::time::sleep(limit) => {
            log::warn!(
                "{} connection(s) still open after shutdown_timeout = {limit:?}; closing them",
                active.count()
            );
        }
    }
    bootstrap::EXIT_OK
}

/// The open connections of this worker: counted for `max_connections`,
/// awaited (not polled) when draining.
#[derive(Debug, Default)]
struct OpenConnections {
    /// Connections open now.
    n: AtomicUsize,
    /// Woken when the last one closes.
    none_left: tokio::sync::Notify,
}

impl OpenConnections {
    /// Connections open now.
    fn count(&self) -> usize {
        self.n.load(Ordering::Relaxed)
    }

    /// One more connection.
    fn opened(&self) {
        self.n.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection closed.
    fn closed(&self) {
        if self.n.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.none_left.notify_waiters();
        }
    }

    /// Resolves once no connection is open.
    async fn closed_all(&self) {
        loop {
            let woken = self.none_left.notified();
            let mut woken = std::pin::pin!(woken);
            // Registered before the check, so a close in between is not missed.
            woken.as_mut().enable();
            if self.n.load(Ordering::Acquire) == 0 {
                return;
            }
            woken.await;
        }
    }
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
    active: Arc<OpenConnections>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // A client that stops reading its response must not hold the
    // connection forever: writes that stall past send_timeout fail. The
    // timer is armed only while a write is pending, so the hot path pays
    // nothing.
    let mut io = tokio_io_timeout::TimeoutStream::new(io);
    io.set_write_timeout(Some(st.config.send_timeout));
    let conn = builder.serve_connection(TokioIo::new(Box::pin(io)), service_fn(move |req| handle(st.clone(), req)));
    let fut = graceful.watch(conn);
    tokio::spawn(async move {
        if let Err(e) = fut.await {
            log::debug!("connection ended with an error: {e}");
        }
        active.closed();
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
    active: Arc<OpenConnections>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut io = tokio_io_timeout::TimeoutStream::new(io);
    io.set_write_timeout(Some(st.config.send_timeout));
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
        active.closed();
    });
}

/// Whether `listen` needs a socket bound per worker.
pub fn binds_own_socket(cfg: &Config) -> bool {
    cfg.reuse_port && matches!(cfg.listen, Listen::Tcp(_))
}
