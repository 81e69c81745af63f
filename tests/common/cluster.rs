//! Cluster test harness: the real stores `bash tools/test` starts, one
//! private database (PostgreSQL) or database index (Redis) per test, nodes
//! on one store, and a cuttable proxy in front of the store's unix socket
//! to take the store "down" and bring it back.
//!
//! A test that finds no store fails and names the command to run; it never
//! skips.

use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Opts, Server};

/// Which store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// PostgreSQL.
    Pg,
    /// Redis.
    Redis,
}

fn env_or_fail(var: &str, what: &str) -> String {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{var} is not set: the cluster tests need a real {what}. Run the suite with `bash tools/test` \
             (it installs PostgreSQL and Redis when missing, starts throwaway servers on unix sockets and sets \
             SESSIOND_TEST_PG and SESSIOND_TEST_REDIS), or set {var} yourself"
        ),
    }
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A store private to one test.
pub struct Store {
    /// The kind.
    pub kind: Kind,
    /// The URL nodes get (through the proxy when one is in front).
    pub url: String,
    /// The unix socket of the real server.
    pub socket: PathBuf,
    /// psql connection string or redis db index for inspection.
    inspect: String,
    /// The proxy, when the test wants to cut the store.
    pub proxy: Option<Proxy>,
    _tmp: tempfile::TempDir,
}

/// Splits `postgres://user@host/db?host=/dir` into (dir, user).
fn pg_parts(url: &str) -> (String, String) {
    let dir =
        url.split("host=").nth(1).map(|s| s.split('&').next().unwrap().to_string()).expect("host= in SESSIOND_TEST_PG");
    let user = url.split("://").nth(1).and_then(|r| r.split('@').next()).unwrap_or("postgres").to_string();
    (dir, user)
}

impl Store {
    /// A fresh store of `kind`; with `proxied`, nodes reach it through a
    /// [`Proxy`] the test can cut.
    pub fn new(kind: Kind, proxied: bool) -> Store {
        let tmp = tempfile::tempdir().unwrap();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        match kind {
            Kind::Pg => {
                let base = env_or_fail("SESSIOND_TEST_PG", "PostgreSQL server");
                let (dir, user) = pg_parts(&base);
                let db = format!("sd_{}_{}", std::process::id(), n);
                psql(&dir, &user, "postgres", &format!("DROP DATABASE IF EXISTS {db}"));
                psql(&dir, &user, "postgres", &format!("CREATE DATABASE {db}"));
                let socket = PathBuf::from(&dir).join(".s.PGSQL.5432");
                let (host_dir, proxy) = if proxied {
                    let p = Proxy::start(&socket, &tmp.path().join(".s.PGSQL.5432"));
                    (tmp.path().display().to_string(), Some(p))
                } else {
                    (dir.clone(), None)
                };
                let url = format!("postgres://{user}@localhost/{db}?host={host_dir}");
                Store { kind, url, socket, inspect: format!("{dir}|{user}|{db}"), proxy, _tmp: tmp }
            }
            Kind::Redis => {
                let base = env_or_fail("SESSIOND_TEST_REDIS", "Redis server");
                let path =
                    base.strip_prefix("redis+unix://").expect("SESSIOND_TEST_REDIS=redis+unix:///path").to_string();
                let path = path.split('?').next().unwrap().to_string();
                // Databases 1..15, one per test in this process (0 is for people).
                let db = 1 + (std::process::id() + n) % 15;
                redis_cli(&path, db, &["FLUSHDB"]);
                let socket = PathBuf::from(&path);
                let (sock, proxy) = if proxied {
                    let local = tmp.path().join("redis.sock");
                    let p = Proxy::start(&socket, &local);
                    (local, Some(p))
                } else {
                    (socket.clone(), None)
                };
                let url = format!("redis+unix://{}?db={db}", sock.display());
                Store { kind, url, socket, inspect: format!("{path}|{db}"), proxy, _tmp: tmp }
            }
        }
    }

    /// A store on a Redis this test runs itself ([`PrivateRedis`]), with a
    /// proxy in front for node 1, so a test can restart the server.
    pub fn on_private_redis(r: &PrivateRedis) -> Store {
        let tmp = tempfile::tempdir().unwrap();
        let socket = r.socket();
        let local = tmp.path().join("redis.sock");
        let proxy = Proxy::start(&socket, &local);
        let url = format!("redis+unix://{}", local.display());
        Store {
            kind: Kind::Redis,
            url,
            socket: socket.clone(),
            inspect: format!("{}|0", socket.display()),
            proxy: Some(proxy),
            _tmp: tmp,
        }
    }

    /// A store on a PostgreSQL this test runs itself ([`PrivatePg`]), with
    /// a proxy in front for node 1, so a test can restart the server.
    pub fn on_private_pg(pg: &PrivatePg) -> Store {
        let tmp = tempfile::tempdir().unwrap();
        let socket = PathBuf::from(pg.dir()).join(".s.PGSQL.5432");
        let proxy = Proxy::start(&socket, &tmp.path().join(".s.PGSQL.5432"));
        let url = format!("postgres://postgres@localhost/sessiond?host={}", tmp.path().display());
        let inspect = format!("{}|postgres|sessiond", pg.dir());
        Store { kind: Kind::Pg, url, socket, inspect, proxy: Some(proxy), _tmp: tmp }
    }

    /// [`Self::sql`], or `None` while the server does not answer.
    pub fn try_sql(&self, q: &str) -> Option<String> {
        let p: Vec<&str> = self.inspect.split('|').collect();
        let out = Command::new("psql")
            .args(["-h", p[0], "-U", p[1], "-d", p[2], "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", q])
            .output()
            .ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// [`Self::redis`], or `None` while the server does not answer (a
    /// restart).
    pub fn try_redis(&self, args: &[&str]) -> Option<String> {
        let p: Vec<&str> = self.inspect.split('|').collect();
        let out = Command::new("redis-cli").args(["-s", p[0], "-n", p[1]]).args(args).output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.success() && !text.starts_with("Could not connect") && !text.starts_with("ERR")).then_some(text)
    }

    /// The URL of the real server, past any proxy: a node started with it
    /// keeps its store when the test cuts the proxy (an asymmetric
    /// partition: the other nodes are cut, this one is not).
    pub fn direct_url(&self) -> String {
        let p: Vec<&str> = self.inspect.split('|').collect();
        match self.kind {
            Kind::Pg => format!("postgres://{}@localhost/{}?host={}", p[1], p[2], p[0]),
            Kind::Redis => format!("redis+unix://{}?db={}", p[0], p[1]),
        }
    }

    /// Runs SQL (PostgreSQL) and returns psql's unaligned output.
    pub fn sql(&self, q: &str) -> String {
        let p: Vec<&str> = self.inspect.split('|').collect();
        psql(p[0], p[1], p[2], q)
    }

    /// Runs a redis-cli command in this test's database.
    pub fn redis(&self, args: &[&str]) -> String {
        let p: Vec<&str> = self.inspect.split('|').collect();
        redis_cli(p[0], p[1].parse().unwrap(), args)
    }

    /// Sessions the store holds (not removed).
    pub fn sessions(&self) -> usize {
        match self.kind {
            Kind::Pg => self.sql("SELECT count(*) FROM sessiond_session WHERE NOT removed").trim().parse().unwrap_or(0),
            Kind::Redis => {
                let keys = self.redis(&["--scan", "--pattern", "sd:{*}"]);
                keys.lines().filter(|k| !k.is_empty()).filter(|k| self.redis(&["HGET", k, "r"]).trim() != "1").count()
            }
        }
    }
}

fn psql(dir: &str, user: &str, db: &str, q: &str) -> String {
    let out = Command::new("psql")
        .args(["-h", dir, "-U", user, "-d", db, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", q])
        .output()
        .expect("psql (package postgresql-client; `bash tools/test` installs it)");
    assert!(out.status.success(), "psql {q}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Debian's PostgreSQL programs (`SESSIOND_TEST_PG_BIN`, which `bash
/// tools/test` sets), for tests that run a PostgreSQL of their own.
pub fn pg_bin() -> PathBuf {
    match std::env::var("SESSIOND_TEST_PG_BIN") {
        Ok(v) if !v.is_empty() => PathBuf::from(v),
        _ => panic!(
            "SESSIOND_TEST_PG_BIN is not set: this test runs its own PostgreSQL. Run the suite with \
             `bash tools/test` (it installs PostgreSQL when missing and sets it), or set it to Debian's \
             /usr/lib/postgresql/<version>/bin"
        ),
    }
}

/// Whether the tests run as root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Runs a PostgreSQL program; as root, as user postgres (PostgreSQL
/// refuses to run as root; tools/test's `as_pg` does the same).
pub fn as_pg(program: &Path, args: &[&str]) -> std::process::Output {
    let mut c = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    c.args(args).output().unwrap_or_else(|e| panic!("{}: {e}", program.display()))
}

/// A PostgreSQL of the test's own, on a unix socket only, in a temp dir
/// under /tmp (user postgres must reach it), with a database `sessiond`;
/// it can be stopped and started again with its data (a store restart).
/// Stopped on drop.
pub struct PrivatePg {
    dir: tempfile::TempDir,
    bin: PathBuf,
}

impl PrivatePg {
    /// `initdb`, start, `CREATE DATABASE sessiond`.
    pub fn start() -> PrivatePg {
        let bin = pg_bin();
        let dir = tempfile::Builder::new().prefix("sd-pg").tempdir_in("/tmp").unwrap();
        if is_root() {
            let u = nix::unistd::User::from_name("postgres").unwrap().expect("user postgres (package postgresql)");
            std::os::unix::fs::chown(dir.path(), Some(u.uid.as_raw()), Some(u.gid.as_raw())).unwrap();
        }
        let data = dir.path().join("pg");
        let out = as_pg(
            &bin.join("initdb"),
            &["-D", data.to_str().unwrap(), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale=C"],
        );
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        let pg = PrivatePg { dir, bin };
        pg.up();
        psql(&pg.dir(), "postgres", "postgres", "CREATE DATABASE sessiond");
        pg
    }

    /// The socket directory.
    pub fn dir(&self) -> String {
        self.dir.path().display().to_string()
    }

    /// Starts the server (again) on the same data.
    pub fn up(&self) {
        let data = self.dir.path().join("pg");
        let log = self.dir.path().join("postgres.log");
        let opts = format!("-c listen_addresses='' -k {} -c fsync=off -c max_connections=200", self.dir());
        let out = as_pg(
            &self.bin.join("pg_ctl"),
            &["-D", data.to_str().unwrap(), "-l", log.to_str().unwrap(), "-w", "-t", "60", "-o", &opts, "start"],
        );
        assert!(out.status.success(), "pg_ctl start: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Stops the server cleanly (`pg_ctl -m fast`: sessions are ended and
    /// committed data kept).
    pub fn down(&self) {
        let data = self.dir.path().join("pg");
        let _ = as_pg(&self.bin.join("pg_ctl"), &["-D", data.to_str().unwrap(), "-m", "fast", "-w", "stop"]);
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let data = self.dir.path().join("pg");
        let _ = as_pg(&self.bin.join("pg_ctl"), &["-D", data.to_str().unwrap(), "-m", "immediate", "-w", "stop"]);
    }
}

/// A Redis server of the test's own, on a unix socket in a temp dir, with
/// its data in an append-only file fsynced at every write, so it can be
/// stopped and started again with its data (a store restart). Killed on
/// drop.
pub struct PrivateRedis {
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl PrivateRedis {
    /// Starts it (`SESSIOND_TEST_REDIS_SERVER` names redis-server).
    pub fn start() -> PrivateRedis {
        let mut r = PrivateRedis { dir: tempfile::tempdir().unwrap(), child: None };
        r.up();
        r
    }

    /// Its unix socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("r.sock")
    }

    /// Starts the server (again) on the same files.
    pub fn up(&mut self) {
        let bin = env_or_fail("SESSIOND_TEST_REDIS_SERVER", "redis-server binary");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("log")).unwrap();
        let child = Command::new(bin)
            .args(["--port", "0", "--unixsocket"])
            .arg(self.socket())
            .args(["--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir"])
            .arg(self.dir.path())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let sock = self.socket();
        wait_until("the private Redis answering PING", Duration::from_secs(10), || {
            Command::new("redis-cli")
                .arg("-s")
                .arg(&sock)
                .arg("PING")
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "PONG")
        });
    }

    /// Stops the server cleanly (`SIGTERM`: it finishes its file and exits).
    pub fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), nix::sys::signal::SIGTERM);
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn redis_cli(path: &str, db: u32, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-s", path, "-n", &db.to_string()])
        .args(args)
        .output()
        .expect("redis-cli (package redis-tools; `bash tools/test` installs it)");
    assert!(out.status.success(), "redis-cli {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A unix-socket proxy that can be cut: while down it closes every
/// connection it carries and refuses new ones, as a dead store would.
pub struct Proxy {
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<UnixStream>>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    fn start(target: &Path, listen: &Path) -> Proxy {
        let l = UnixListener::bind(listen).unwrap();
        l.set_nonblocking(true).unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<UnixStream>>> = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (u, c, s, t) = (up.clone(), conns.clone(), stop.clone(), target.to_path_buf());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        if !u.load(Ordering::Relaxed) {
                            drop(client);
                            continue;
                        }
                        let Ok(server) = UnixStream::connect(&t) else { continue };
                        c.lock().unwrap().push(client.try_clone().unwrap());
                        c.lock().unwrap().push(server.try_clone().unwrap());
                        for (mut a, mut b) in
                            [(client.try_clone().unwrap(), server.try_clone().unwrap()), (server, client)]
                        {
                            std::thread::spawn(move || {
                                let _ = std::io::copy(&mut a, &mut b);
                                let _ = b.shutdown(std::net::Shutdown::Both);
                                let _ = a.shutdown(std::net::Shutdown::Both);
                            });
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Proxy { up, conns, stop }
    }

    /// Cuts the store off: every carried connection closes, new ones are refused.
    pub fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Lets connections through again.
    pub fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.down();
    }
}

/// Starts a node on `store` with `node_id` and extra `--set` pairs.
pub fn node(store: &Store, node_id: u32, extra: &[&str]) -> Server {
    node_in(store, node_id, extra, None)
}

/// [`node`] on the store's real server, past the proxy (see
/// [`Store::direct_url`]).
pub fn node_direct(store: &Store, node_id: u32, extra: &[&str]) -> Server {
    node_at(&store.direct_url(), node_id, extra, None)
}

/// [`node`] with a given data directory (restarts).
pub fn node_in(store: &Store, node_id: u32, extra: &[&str], data_dir: Option<&Path>) -> Server {
    node_at(&store.url, node_id, extra, data_dir)
}

/// A node on the store at `url` with its data in `dir` (kept across a
/// restart of the node).
pub fn node_at_dir(url: &str, node_id: u32, extra: &[&str], dir: &Path) -> Server {
    node_at(url, node_id, extra, Some(dir))
}

/// A node on the store at `url` (a store the test runs itself).
pub fn node_at(url: &str, node_id: u32, extra: &[&str], data_dir: Option<&Path>) -> Server {
    let mut args: Vec<String> = vec![
        "--set".into(),
        format!("node_id={node_id}"),
        "--set".into(),
        format!("cluster.store={url}"),
        "--set".into(),
        "cluster.sweep_interval=0.5".into(),
    ];
    for e in extra {
        args.push("--set".into());
        args.push(e.to_string());
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let s = Server::start_with(Opts { args: &refs, data_dir, ..Default::default() });
    s.wait_log("reconciled this node's sessions", Duration::from_secs(20));
    s
}

/// One metric's value from `/metrics` (0 when absent).
pub fn metric(s: &Server, name: &str) -> u64 {
    let text = super::get(&s.url("/metrics")).text();
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// Waits until `f` holds, or panics with `what`.
pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < timeout, "{what} not reached within {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The session id in a `Set-Cookie` of `r` (the re-issued id), if any.
pub fn reissued(r: &super::Resp) -> Option<String> {
    r.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .find_map(|(_, v)| v.strip_prefix("SESSIONID=")?.split(';').next().map(str::to_string))
        .filter(|v| !v.is_empty())
}

/// The node an id names (its first 4 base64url characters).
pub fn node_of(id: &str) -> u32 {
    use base64::Engine;
    let b = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&id[..4]).unwrap();
    u32::from_be_bytes([0, b[0], b[1], b[2]])
}
