//! Shared harness for integration tests: starts the real `sessiond` binary
//! on an ephemeral port with a temporary data directory, captures its log,
//! and offers a small blocking HTTP client (ureq) that never treats a 4xx
//! or 5xx as an error.
#![allow(dead_code)]

pub mod cluster;
pub mod gateway;
pub mod history;
pub mod nginx;
pub mod paths;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Path of the built `sessiond` binary.
pub fn sessiond_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sessiond"))
}

/// Path of the built `sessionctl` binary.
pub fn sessionctl_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sessionctl"))
}

/// A running server.
pub struct Server {
    /// The master process.
    pub child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// Data directory (inside `tmp` unless given).
    pub data_dir: PathBuf,
    /// Owns the temporary directory.
    pub tmp: Option<tempfile::TempDir>,
    log: Arc<Mutex<Vec<String>>>,
}

/// Options for [`Server::start_with`].
pub struct Opts<'a> {
    /// Extra command-line arguments.
    pub args: &'a [&'a str],
    /// Use this data dir instead of a fresh temp dir.
    pub data_dir: Option<&'a Path>,
    /// Extra environment.
    pub env: &'a [(&'a str, &'a str)],
    /// Wait for the "listening on" line.
    pub wait_ready: bool,
}

impl Default for Opts<'_> {
    fn default() -> Self {
        Opts { args: &[], data_dir: None, env: &[], wait_ready: true }
    }
}

impl Server {
    /// Starts with 2 workers on an ephemeral port and a fresh data dir.
    pub fn start(args: &[&str]) -> Server {
        Server::start_with(Opts { args, ..Default::default() })
    }

    /// Starts with options.
    pub fn start_with(o: Opts<'_>) -> Server {
        let tmp = if o.data_dir.is_none() { Some(tempfile::tempdir().unwrap()) } else { None };
        let data_dir = o.data_dir.map(Path::to_path_buf).unwrap_or_else(|| tmp.as_ref().unwrap().path().join("data"));
        let mut cmd = Command::new(sessiond_bin());
        cmd.arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--max-procs")
            .arg("2")
            .args(o.args)
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("LISTEN_FDS")
            .env_remove("JOURNAL_STREAM")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in o.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn sessiond");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let l2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("SESSIOND_TEST_ECHO").is_some() {
                    eprintln!("[sessiond] {line}");
                }
                l2.lock().unwrap().push(line);
            }
        });
        let mut s = Server { child, addr: String::new(), data_dir, tmp, log };
        if o.wait_ready {
            let line = s.wait_log("listening on ", Duration::from_secs(20));
            let rest = line.split("listening on ").nth(1).unwrap();
            s.addr = rest.split_whitespace().next().unwrap().to_string();
            s.wait_healthy(Duration::from_secs(20));
        }
        s
    }

    /// Base URL.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Everything logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Waits for a log line containing `pat`; panics with the log on timeout.
    pub fn wait_log(&self, pat: &str, timeout: Duration) -> String {
        let t = Instant::now();
        loop {
            if let Some(l) = self.log.lock().unwrap().iter().find(|l| l.contains(pat)) {
                return l.clone();
            }
            assert!(t.elapsed() < timeout, "no log line containing {pat:?} within {timeout:?}; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Counts log lines containing `pat`.
    pub fn count_log(&self, pat: &str) -> usize {
        self.log.lock().unwrap().iter().filter(|l| l.contains(pat)).count()
    }

    /// Waits until `/healthz` answers 200 (or 401 `unauthorized`: a server
    /// configured with `api_token_file` is serving, and wants the token).
    pub fn wait_healthy(&self, timeout: Duration) {
        let t = Instant::now();
        while t.elapsed() < timeout {
            let r = get(&self.url("/healthz"));
            if r.status == 200 || (r.status == 401 && r.text().contains("api_token_file")) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("server not healthy within {timeout:?}; log:\n{}", self.log());
    }

    /// The master's pid.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends a signal to the master.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).unwrap();
    }

    /// Pids of the master's children with the given title prefix
    /// (`sessiond: worker`, `sessiond: reaper`).
    pub fn children(&self, title: &str) -> Vec<i32> {
        children_of(self.pid(), title)
    }

    /// SIGTERM, then waits for exit; returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        self.wait_exit(Duration::from_secs(30))
    }

    /// Waits for the master to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let t = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code();
            }
            assert!(t.elapsed() < timeout, "sessiond did not exit within {timeout:?}; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), nix::sys::signal::Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// Pids whose parent is `ppid` and whose command line starts with `title`.
pub fn children_of(ppid: i32, title: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some(after) = stat.rsplit_once(") ") else { continue };
        let fields: Vec<&str> = after.1.split_whitespace().collect();
        if fields.get(1).and_then(|p| p.parse::<i32>().ok()) != Some(ppid) {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).starts_with(title) {
            out.push(pid);
        }
    }
    out.sort();
    out
}

/// A response.
pub struct Resp {
    /// Status code.
    pub status: u16,
    /// Headers (lower-case names), in order.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Resp {
    /// First header value by name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    /// Body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    /// Body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn agent() -> ureq::Agent {
    // Redirects are answers to check, never followed.
    ureq::AgentBuilder::new().timeout(Duration::from_secs(10)).redirects(0).build()
}

/// Sends a request; 4xx/5xx are returned, not errors. Status 0 means the
/// connection failed.
pub fn request(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Resp {
    request_on(&agent(), method, url, headers, body)
}

/// [`request`] on a given agent (a kept-alive client of its own).
pub fn request_on(a: &ureq::Agent, method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Resp {
    let mut req = a.request(method, url);
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let r = match body {
        Some(b) => req.send_bytes(b),
        None => req.call(),
    };
    let resp = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(_) => return Resp { status: 0, headers: vec![], body: vec![] },
    };
    let status = resp.status();
    let headers = resp
        .headers_names()
        .into_iter()
        .flat_map(|n| resp.all(&n).into_iter().map(|v| (n.clone(), v.to_string())).collect::<Vec<_>>())
        .collect();
    let mut body = Vec::new();
    let _ = std::io::Read::read_to_end(&mut resp.into_reader(), &mut body);
    Resp { status, headers, body }
}

/// GET.
pub fn get(url: &str) -> Resp {
    request("GET", url, &[], None)
}

/// Creates a session in the default context; returns its id.
pub fn create(s: &Server) -> String {
    let r = request("POST", &s.url("/v1/sessions"), &[], None);
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["id"].as_str().unwrap().to_string()
}
