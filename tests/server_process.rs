//! The process model of the real binary: restart and reload keep (or, when
//! asked, clear) sessions, killed children are replaced, nothing outlives a
//! killed master, systemd integration (notify socket, unit files), config
//! errors, graceful stop and process titles.
mod common;
use common::*;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Generous bound for anything the server does in the background.
const WAIT: Duration = Duration::from_secs(10);

fn attr_url(s: &Server, id: &str, name: &str) -> String {
    s.url(&format!("/v1/sessions/{id}/attributes/{name}"))
}

/// PUTs `value` as attribute `name`; returns the status.
fn put(s: &Server, id: &str, name: &str, value: &[u8]) -> u16 {
    request("PUT", &attr_url(s, id, name), &[], Some(value)).status
}

/// Reads attribute `name` without touching the session.
fn read_attr(s: &Server, id: &str, name: &str) -> Resp {
    get(&format!("{}?touch=false", attr_url(s, id, name)))
}

/// Reads the session's metadata without touching it.
fn peek(s: &Server, id: &str) -> Resp {
    get(&s.url(&format!("/v1/sessions/{id}?touch=false")))
}

/// Polls `cond` until it holds; panics naming `what` on timeout.
fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the log holds at least `n` lines containing `pat`.
fn wait_log_count(s: &Server, pat: &str, n: usize) {
    let t = Instant::now();
    while s.count_log(pat) < n {
        assert!(t.elapsed() < WAIT, "fewer than {n} log lines containing {pat:?}; log:\n{}", s.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `pid` is a live process (a zombie counts as dead: it runs no
/// code and holds no descriptors).
fn running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => kill(Pid::from_raw(pid), None).is_ok(),
    }
}

/// The process title as `ps` shows it (argv joined, trailing NULs cut).
fn title(pid: i32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let s = String::from_utf8_lossy(&raw).replace('\0', " ");
    s.trim_end().to_string()
}

fn write_config(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

fn only_child(s: &Server, role: &str) -> i32 {
    let pids = s.children(role);
    assert_eq!(pids.len(), 1, "expected one {role:?}, found {pids:?}; log:\n{}", s.log());
    pids[0]
}

#[test]
fn restart_keeps_sessions_and_their_remaining_idle_time() {
    let args = ["--timeout", "5"];
    let mut s = Server::start(&args);
    let id = create(&s);
    assert_eq!(put(&s, &id, "cart", b"3 apples"), 204);
    let before = peek(&s, &id);
    assert_eq!(before.status, 200, "{}", before.text());
    let expires = before.json()["expires_at"].as_str().unwrap().to_string();
    assert_eq!(s.stop(), Some(0), "{}", s.log());

    let s2 = Server::start_with(Opts { args: &args, data_dir: Some(&s.data_dir), ..Default::default() });
    let r = read_attr(&s2, &id, "cart");
    assert_eq!((r.status, r.text().as_str()), (200, "3 apples"), "log:\n{}", s2.log());
    let after = peek(&s2, &id);
    assert_eq!(after.status, 200, "{}", after.text());
    assert_eq!(
        after.json()["expires_at"].as_str().unwrap(),
        expires,
        "a restart must keep the remaining idle time, not restart the clock"
    );
}

#[test]
fn a_brand_new_data_dir_is_created_quietly_not_cleared() {
    let mut s = Server::start(&[]);
    let log = s.log();
    assert!(log.contains("new data directory; creating the regions and Version"), "{log}");
    assert!(!log.contains("clearing the session caches"), "a new data dir is not a cache clear:\n{log}");
    assert!(
        !log.lines().any(|l| l.contains("WARN") && l.contains("Version")),
        "no warning about Version on a first start:\n{log}"
    );
    assert_eq!(
        std::fs::read_to_string(s.data_dir.join("Version")).unwrap().trim(),
        sessiond::region::FORMAT_VERSION.to_string()
    );
    // A clean stop: every process exits without a panic (the reaper's last
    // dispatch pass once built a timer outside its runtime).
    assert_eq!(s.stop(), Some(0), "{}", s.log());
    let log = s.log();
    assert!(!log.contains("panicked") && !log.contains("exited with status"), "{log}");
}

#[test]
fn deleting_version_then_restart_clears_sessions() {
    let mut s = Server::start(&[]);
    let id = create(&s);
    assert_eq!(put(&s, &id, "k", b"v"), 204);
    assert_eq!(s.stop(), Some(0), "{}", s.log());
    std::fs::remove_file(s.data_dir.join("Version")).unwrap();

    let s2 = Server::start_with(Opts { data_dir: Some(&s.data_dir), ..Default::default() });
    assert_eq!(peek(&s2, &id).status, 404, "the old session must be gone; log:\n{}", s2.log());
    assert!(s2.log().contains("clearing the session caches (1 region file(s) deleted)"), "{}", s2.log());
    assert!(s2.data_dir.join("Version").is_file(), "Version is rewritten after clearing");
    let id2 = create(&s2);
    assert_eq!(put(&s2, &id2, "k", b"new"), 204);
    assert_eq!(read_attr(&s2, &id2, "k").text(), "new");
}

#[test]
fn deleting_version_then_sighup_clears_sessions() {
    let s = Server::start(&[]);
    let id = create(&s);
    assert_eq!(put(&s, &id, "k", b"v"), 204);
    std::fs::remove_file(s.data_dir.join("Version")).unwrap();
    s.signal(Signal::SIGHUP);
    s.wait_log("reload done", WAIT);
    assert!(s.log().contains("Version is missing"), "{}", s.log());
    assert_eq!(peek(&s, &id).status, 404, "the old session must be gone; log:\n{}", s.log());
    assert!(s.data_dir.join("Version").is_file(), "Version is rewritten after clearing");
    let id2 = create(&s);
    assert_eq!(put(&s, &id2, "k", b"new"), 204);
    let r = read_attr(&s, &id2, "k");
    assert_eq!((r.status, r.text().as_str()), (200, "new"));
}

#[test]
fn sighup_with_changed_limits_migrates_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sessiond.toml");
    write_config(&cfg, "[sessions]\nmax_value_size = 100\n");
    let s = Server::start(&["--config", cfg.to_str().unwrap()]);
    let small = create(&s);
    assert_eq!(put(&s, &small, "k", b"small"), 204);
    let big = create(&s);
    assert_eq!(put(&s, &big, "k", &[b'x'; 90]), 204);

    write_config(&cfg, "[sessions]\nmax_value_size = 50\n");
    s.signal(Signal::SIGHUP);
    s.wait_log("reload done", WAIT);
    let r = read_attr(&s, &small, "k");
    assert_eq!((r.status, r.text().as_str()), (200, "small"), "log:\n{}", s.log());
    assert_eq!(peek(&s, &big).status, 404, "a session whose value no longer fits is dropped");
    assert!(
        s.log().contains("migrated 1 session(s) to the new layout; 1 did not fit"),
        "the log says how many moved and how many did not fit:\n{}",
        s.log()
    );
    assert_eq!(put(&s, &small, "k2", &[b'y'; 60]), 413, "the new limit applies");
    assert_eq!(put(&s, &small, "k2", &[b'y'; 50]), 204);
}

#[test]
fn invalid_config_at_reload_is_refused_and_old_config_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sessiond.toml");
    write_config(&cfg, "[sessions]\nmax_value_size = 100\n");
    let s = Server::start(&["--config", cfg.to_str().unwrap()]);
    let id = create(&s);
    assert_eq!(put(&s, &id, "k", b"kept"), 204);
    let workers = s.children("sessiond: worker");

    write_config(&cfg, "[sessions]\nmax_value_size = 50\nbogus_key = 1\n");
    s.signal(Signal::SIGHUP);
    let line = s.wait_log("reload refused", WAIT);
    assert!(line.contains("bogus_key"), "the refusal names the key: {line}");

    write_config(&cfg, "this is [not toml\n");
    s.signal(Signal::SIGHUP);
    wait_log_count(&s, "reload refused", 2);

    assert_eq!(s.count_log("reload done"), 0, "{}", s.log());
    assert_eq!(s.children("sessiond: worker"), workers, "a refused reload restarts nothing");
    let r = read_attr(&s, &id, "k");
    assert_eq!((r.status, r.text().as_str()), (200, "kept"));
    assert_eq!(put(&s, &id, "k", &[b'z'; 90]), 204, "the old max_value_size = 100 still applies");
}

/// SIGKILLs one of the `count` children titled `role` and checks that
/// requests keep succeeding and that it is replaced in the same role.
fn kill_child_and_check_replacement(s: &Server, role: &str, count: usize) {
    let id = create(s);
    assert_eq!(put(s, &id, "k", b"v"), 204);
    let before = s.children(role);
    assert_eq!(before.len(), count, "{}", s.log());
    let victim = before[0];
    let victim_title = title(victim);
    let name = victim_title.strip_prefix("sessiond: ").unwrap().to_string();

    kill(Pid::from_raw(victim), Signal::SIGKILL).unwrap();
    wait_until("the killed process to die", WAIT, || !running(victim));
    for i in 0..20 {
        let r = read_attr(s, &id, "k");
        assert_eq!((r.status, r.text().as_str()), (200, "v"), "request {i} after the kill; log:\n{}", s.log());
    }
    wait_until(&format!("{count} {role} process(es) again"), WAIT, || {
        let now = s.children(role);
        now.len() == count && !now.contains(&victim)
    });
    let replacement = *s.children(role).iter().find(|p| !before.contains(p)).unwrap();
    assert_eq!(title(replacement), victim_title, "the replacement takes the same role");
    let expected = format!("{name} (pid {victim}) was killed by signal SIGKILL");
    s.wait_log(&expected, WAIT);
    let r = read_attr(s, &id, "k");
    assert_eq!((r.status, r.text().as_str()), (200, "v"));
}

#[test]
fn killed_worker_is_replaced_while_service_goes_on() {
    let s = Server::start(&[]);
    kill_child_and_check_replacement(&s, "sessiond: worker", 2);
}

#[test]
fn reaper_killed_is_restarted() {
    let s = Server::start(&[]);
    kill_child_and_check_replacement(&s, "sessiond: reaper", 1);
}

#[test]
fn sigkill_of_master_leaves_no_orphans() {
    let mut s = Server::start(&[]);
    let id = create(&s);
    assert_eq!(put(&s, &id, "k", b"survives"), 204);
    let mut pids = s.children("sessiond: worker");
    pids.extend(s.children("sessiond: reaper"));
    assert_eq!(pids.len(), 3, "{}", s.log());

    s.signal(Signal::SIGKILL);
    assert_eq!(s.wait_exit(WAIT), None, "killed by a signal, so no exit code");
    wait_until("every worker and the reaper to die with the master", WAIT, || !pids.iter().any(|&p| running(p)));

    let s2 = Server::start_with(Opts { data_dir: Some(&s.data_dir), ..Default::default() });
    let r = read_attr(&s2, &id, "k");
    assert_eq!((r.status, r.text().as_str()), (200, "survives"), "log:\n{}", s2.log());
    assert!(s2.log().contains("previous shutdown was not clean"), "{}", s2.log());
}

/// Receives datagrams until one contains `want`; returns everything seen.
fn recv_until(sock: &UnixDatagram, want: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n =
            sock.recv(&mut buf).unwrap_or_else(|e| panic!("no notify message containing {want:?} (got {seen:?}): {e}"));
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        let done = msg.lines().any(|l| l == want);
        seen.push(msg);
        if done {
            return seen;
        }
    }
}

#[test]
fn notify_socket_receives_ready() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let env = [("NOTIFY_SOCKET", path.to_str().unwrap())];
    let mut s = Server::start_with(Opts { env: &env, ..Default::default() });

    let seen = recv_until(&sock, "READY=1");
    assert_eq!(seen.len(), 1, "READY=1 is the first message: {seen:?}");

    s.signal(Signal::SIGHUP);
    let seen = recv_until(&sock, "RELOADING=1");
    assert_eq!(seen.len(), 1, "RELOADING=1 comes first after SIGHUP: {seen:?}");
    let seen = recv_until(&sock, "READY=1");
    assert_eq!(seen.len(), 1, "then READY=1: {seen:?}");
    s.wait_log("reload done", WAIT);

    s.signal(Signal::SIGTERM);
    let seen = recv_until(&sock, "STOPPING=1");
    assert_eq!(seen.len(), 1, "STOPPING=1 is the only message at stop: {seen:?}");
    assert_eq!(s.wait_exit(WAIT), Some(0), "{}", s.log());
}

#[test]
fn second_server_on_same_data_dir_is_refused_with_pid() {
    let s = Server::start(&[]);
    let id = create(&s);
    let mut second = Server::start_with(Opts { data_dir: Some(&s.data_dir), wait_ready: false, ..Default::default() });
    let code = second.wait_exit(WAIT);
    assert!(code.is_some_and(|c| c != 0), "the second server must fail, got {code:?}");
    let expected = format!("in use by another sessiond (pid {})", s.pid());
    // The log reader may lag the exit; wait for the line rather than peek.
    second.wait_log(&expected, WAIT);
    assert_eq!(peek(&s, &id).status, 200, "the first server keeps serving");
}

/// Runs the binary with `args` and a hermetic environment.
fn run_bin(args: &[&str]) -> Output {
    Command::new(sessiond_bin())
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS")
        .env_remove("STATE_DIRECTORY")
        .stdin(Stdio::null())
        .output()
        .expect("run sessiond")
}

#[test]
fn config_error_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.toml");
    write_config(&empty, "");
    let empty = empty.to_str().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();

    let out = run_bin(&["--config", empty, "--data-dir", data, "--set", "sessions.max_locks=0"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert!(err.contains("`sessions.max_locks`: 0 "), "stderr names key and value: {err}");

    let bad = dir.path().join("bad.toml");
    write_config(&bad, "[sessions]\nbogus_key = 7\n");
    let out = run_bin(&["--config", bad.to_str().unwrap(), "--data-dir", data]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert!(err.contains("bogus_key"), "stderr names the unknown key: {err}");

    let out = run_bin(&["--config", empty, "--data-dir", data, "--check-config"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    assert!(text.lines().any(|l| l.starts_with("max_procs = ")), "{text}");

    let out = run_bin(&[
        "--config",
        empty,
        "--data-dir",
        data,
        "--init-args",
        "maxSessions=20,timeOut=300",
        "--check-config",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    assert!(lines.contains(&"max_sessions = 20"), "{text}");
    assert!(lines.contains(&"timeout = 300"), "{text}");
    assert!(!Path::new(data).exists(), "checking the config touches no data directory");
}

#[test]
fn a_default_max_locks_adapts_to_a_small_max_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.toml");
    write_config(&empty, "");
    let empty = empty.to_str().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();

    let out = run_bin(&["--config", empty, "--data-dir", data, "--init-args", "maxSessions=3", "--check-config"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    assert!(lines.contains(&"max_sessions = 3") && lines.contains(&"max_locks = 3"), "{text}");
    assert!(text.contains("# note: context default: max_locks defaults to 16 but max_sessions = 3"), "{text}");

    let out = run_bin(&["--config", empty, "--data-dir", data, "--init-args", "maxSessions=3,maxLocks=16"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "an explicit max_locks above max_sessions is refused: {err}");
    assert!(err.contains("`sessions.maxLocks`: 16") && err.contains("`sessions.maxSessions` = 3"), "{err}");
    assert!(!Path::new(data).exists(), "checking the config touches no data directory");

    // A running server logs the note at info level once logging is up.
    let s = Server::start(&["--max-sessions", "3"]);
    s.wait_log("max_locks defaults to 16 but max_sessions = 3; using max_locks = 3", WAIT);
}

#[test]
fn systemd_units_verify_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd");
    let bin = sessiond_bin();
    for name in ["sessiond.service", "sessiond.socket"] {
        let text = std::fs::read_to_string(root.join(name)).unwrap();
        if name == "sessiond.service" {
            assert!(text.contains("/usr/local/bin/sessiond "), "ExecStart path changed; update this test");
        }
        std::fs::write(dir.path().join(name), text.replace("/usr/local/bin/sessiond", bin.to_str().unwrap())).unwrap();
    }
    let out = match Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.path().join("sessiond.service"))
        .arg(dir.path().join("sessiond.socket"))
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
    {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("systemd-analyze not found: install the `systemd` package (apt-get install systemd); CI installs it")
        }
        Err(e) => panic!("cannot run systemd-analyze: {e}"),
    };
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success() && stdout.trim().is_empty() && stderr.trim().is_empty(),
        "systemd-analyze verify: {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
}

/// Reads one HTTP/1.1 response (headers and a Content-Length body).
fn read_response(stream: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = stream.read(&mut chunk).expect("read response");
        assert!(n > 0, "connection closed mid-response: {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let n = stream.read(&mut chunk).expect("read body");
        assert!(n > 0, "connection closed mid-body");
        body.extend_from_slice(&chunk[..n]);
    }
    (head, body)
}

#[test]
fn sigterm_lets_requests_in_flight_finish() {
    let mut s = Server::start(&[]);
    let id = create(&s);
    let mut c = TcpStream::connect(&s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    // A first request proves a worker has accepted this connection.
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let (head, _) = read_response(&mut c);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // The PUT's head goes now; its body only after the server got SIGTERM.
    write!(c, "PUT /v1/sessions/{id}/attributes/late HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n").unwrap();
    c.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    s.signal(Signal::SIGTERM);
    // Both workers have stopped accepting and are draining.
    wait_log_count(&s, "stopping; draining", 2);
    c.write_all(b"0123456789").unwrap();
    let (head, _) = read_response(&mut c);
    assert!(head.starts_with("HTTP/1.1 204"), "the request in flight completes: {head}\nlog:\n{}", s.log());
    assert_eq!(s.wait_exit(Duration::from_secs(30)), Some(0), "{}", s.log());

    let s2 = Server::start_with(Opts { data_dir: Some(&s.data_dir), ..Default::default() });
    let r = read_attr(&s2, &id, "late");
    assert_eq!((r.status, r.text().as_str()), (200, "0123456789"), "the late write was stored");
}

#[test]
fn process_titles_name_their_roles() {
    let s = Server::start(&[]);
    assert!(title(s.pid()).starts_with("sessiond: master"), "master title: {:?}", title(s.pid()));
    let mut workers: Vec<String> = s.children("sessiond: worker").into_iter().map(title).collect();
    workers.sort();
    assert_eq!(workers, ["sessiond: worker 0", "sessiond: worker 1"]);
    let reaper = only_child(&s, "sessiond: reaper");
    assert_eq!(title(reaper), "sessiond: reaper");
}
