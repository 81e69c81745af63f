//! A real nginx for the tests that put one in front of sessiond: Debian's
//! `/usr/sbin/nginx` (or one on `PATH`) started in the foreground with its
//! own prefix directory, the test's http-level configuration, and
//! everything it would write kept inside that directory.
//!
//! nginx is required: when it is missing a test fails and names
//! `bash tools/test`, which installs it. It never skips.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::children_of;

/// The nginx binary: Debian's, or one on `PATH`; a test without it fails.
fn nginx_bin() -> PathBuf {
    let debian = PathBuf::from("/usr/sbin/nginx");
    if debian.is_file() {
        return debian;
    }
    if let Some(p) = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("nginx"))
        .find(|p| p.is_file())
    {
        return p;
    }
    panic!(
        "nginx is not installed (no /usr/sbin/nginx, none on PATH); the nginx tests need it and never skip. \
         Run the suite with `bash tools/test`, which installs it (or `apt-get install -y nginx` as root)"
    );
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// What differs between the tests' nginx.conf outside their own `http`
/// text.
pub struct Conf<'a> {
    /// `events { worker_connections N; }`.
    pub worker_connections: u32,
    /// A `log_format` for the access log as (name, format string with its
    /// quotes); `None` keeps nginx's default `combined`.
    pub log_format: Option<(&'a str, &'a str)>,
}

/// The whole nginx.conf: everything nginx would write outside `dir` is
/// pointed inside it, and `http` (the test's servers and upstreams) goes
/// in the `http` block.
fn nginx_conf(dir: &Path, conf: &Conf, http: &str) -> String {
    let d = dir.display();
    let access_log = match conf.log_format {
        Some((name, format)) => format!("log_format {name} {format};\naccess_log {d}/access.log {name};\n"),
        None => format!("access_log {d}/access.log;\n"),
    };
    format!(
        "daemon off;\nmaster_process on;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
         events {{ worker_connections {}; }}\n\
         http {{\n\
         {access_log}\
         client_body_temp_path {d}/client_body_temp;\n\
         proxy_temp_path {d}/proxy_temp;\n\
         fastcgi_temp_path {d}/fastcgi_temp;\n\
         uwsgi_temp_path {d}/uwsgi_temp;\n\
         scgi_temp_path {d}/scgi_temp;\n\
         {http}\n}}\n",
        conf.worker_connections
    )
}

/// A running nginx (master and one worker) with its own prefix directory.
pub struct Nginx {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// Starts nginx in the foreground with `conf` and the http-level text
    /// `http(port)` returns for the port it must listen on. Retries with
    /// another port if the chosen one was taken meanwhile.
    pub fn start(conf: &Conf, http: impl Fn(u16) -> String) -> Nginx {
        let bin = nginx_bin();
        let mut last_err = String::new();
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            // The worker runs as nobody when the tests run as root: let it
            // reach its temp directories.
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            let port = free_port();
            let text = nginx_conf(dir.path(), conf, &http(port));
            std::fs::write(dir.path().join("nginx.conf"), text).unwrap();
            let mut child = Command::new(&bin)
                .arg("-p")
                .arg(dir.path())
                .arg("-c")
                .arg(dir.path().join("nginx.conf"))
                .arg("-e")
                .arg(dir.path().join("error.log"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
            let t = Instant::now();
            loop {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Nginx { child, addr: format!("127.0.0.1:{port}"), dir };
                }
                if let Some(st) = child.try_wait().unwrap() {
                    let mut stderr = String::new();
                    let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
                    let log = std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default();
                    last_err = format!("nginx exited with {st}; stderr:\n{stderr}\nerror.log:\n{log}");
                    break;
                }
                assert!(t.elapsed() < Duration::from_secs(20), "nginx did not listen on {port} within 20 s");
                std::thread::sleep(Duration::from_millis(20));
            }
            if !last_err.contains("Address already in use") {
                break;
            }
        }
        panic!("{last_err}");
    }

    /// `http://127.0.0.1:PORT` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// nginx's error log so far, for failure messages.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// nginx's access log so far, in the [`Conf::log_format`] it was
    /// started with.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        let pid = self.child.id() as i32;
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        // SIGTERM is nginx's fast shutdown; the master stops its worker.
        let workers = children_of(pid, "nginx: worker");
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for w in workers {
            let _ = kill(Pid::from_raw(w), Signal::SIGKILL);
        }
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}
