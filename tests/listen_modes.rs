//! Ways of listening and running: a Unix socket, SO_REUSEPORT per worker,
//! systemd socket activation (`LISTEN_FDS`), the pid file in
//! `$RUNTIME_DIRECTORY`, and dropping privileges to `user`.
mod common;
use common::*;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};

use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn serves_on_a_unix_socket_and_removes_it_at_exit() {
    let tmp = tempfile::tempdir().unwrap();
    let sock = tmp.path().join("http.sock");
    let listen = format!("listen=unix:{}", sock.display());
    let mut s = Server::start_with(Opts { args: &["--set", &listen], wait_ready: false, ..Default::default() });
    s.wait_log("listening on unix:", Duration::from_secs(20));
    let mut c = UnixStream::connect(&sock).unwrap();
    c.write_all(b"POST /v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 201"), "{out}");
    assert_eq!(s.stop(), Some(0));
    assert!(!sock.exists(), "socket file removed on clean exit");
}

#[test]
fn reuse_port_gives_each_worker_its_own_socket() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let set = format!("listen={listen}");
    let mut s = Server::start_with(Opts {
        args: &["--set", &set, "--reuse-port", "true"],
        wait_ready: false,
        ..Default::default()
    });
    s.wait_log("SO_REUSEPORT, one socket per worker", Duration::from_secs(20));
    s.addr = listen.clone();
    s.wait_healthy(Duration::from_secs(20));
    let ids: Vec<String> = (0..20).map(|_| create(&s)).collect();
    for id in &ids {
        assert_eq!(get(&s.url(&format!("/v1/sessions/{id}"))).status, 200);
    }
    // Two listening sockets on the port, one per worker (/proc/net/tcp: state 0A = LISTEN).
    let hex_port = format!(":{port:04X}");
    let listening = std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1].ends_with(&hex_port) && f[3] == "0A"
        })
        .count();
    assert_eq!(listening, 2, "one SO_REUSEPORT listening socket per worker");
    assert_eq!(s.stop(), Some(0));
}

#[test]
fn systemd_socket_activation_uses_the_passed_socket() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let data = tmp.path().join("data");
    let mut child = Command::new("systemd-socket-activate")
        .arg("-l")
        .arg(&addr)
        .arg(sessiond_bin())
        .arg("--data-dir")
        .arg(&data)
        .arg("--max-procs")
        .arg("2")
        .arg("--listen")
        .arg("127.0.0.1:1") // must be ignored in favour of LISTEN_FDS
        .env_remove("NOTIFY_SOCKET")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("systemd-socket-activate (Debian package systemd) is needed; CI installs it");
    let t = Instant::now();
    let r = loop {
        let r = get(&format!("http://{addr}/healthz"));
        if r.status == 200 {
            break r;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "no answer through the activated socket");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(r.status, 200);
    let created = request("POST", &format!("http://{addr}/v1/sessions"), &[], None);
    assert_eq!(created.status, 201);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let _ = child.wait();
    let mut log = String::new();
    child.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    assert!(log.contains("using the listening socket passed by systemd"), "{log}");
}

#[test]
fn pid_file_goes_to_runtime_directory_and_is_removed_at_exit() {
    let run = tempfile::tempdir().unwrap();
    let rd = run.path().to_str().unwrap().to_string();
    let mut s = Server::start_with(Opts { env: &[("RUNTIME_DIRECTORY", &rd)], ..Default::default() });
    let pid = std::fs::read_to_string(run.path().join("sessiond.pid")).unwrap();
    assert_eq!(pid.trim(), s.pid().to_string());
    assert!(!s.data_dir.join("sessiond.pid").exists());
    assert_eq!(s.stop(), Some(0));
    assert!(!run.path().join("sessiond.pid").exists());
}

#[test]
fn root_drops_privileges_to_user_after_binding() {
    if !nix::unistd::geteuid().is_root() {
        panic!("this test needs root (CI runs as root)");
    }
    // The data dir's parent must be reachable by `nobody`.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let data = tmp.path().join("data");
    // A symlink planted in data_dir must not make root chown its target.
    let outside = tmp.path().join("outside");
    std::fs::write(&outside, "root's").unwrap();
    std::fs::create_dir_all(&data).unwrap();
    std::os::unix::fs::symlink(&outside, data.join("planted")).unwrap();
    let mut s = Server::start_with(Opts { args: &["--user", "nobody"], data_dir: Some(&data), ..Default::default() });
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&outside).unwrap().uid(), 0, "symlink target left alone");
    assert_eq!(std::fs::metadata(data.join("Version")).unwrap().uid(), 65534, "data_dir files handed to the user");
    let id = create(&s);
    assert_eq!(request("PUT", &s.url(&format!("/v1/sessions/{id}/attributes/a")), &[], Some(b"v")).status, 204);
    let uid_of = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2).map(str::to_string))
            .unwrap()
    };
    assert_eq!(uid_of(s.pid()), "65534", "master runs as nobody");
    for w in s.children("sessiond: worker") {
        assert_eq!(uid_of(w), "65534", "worker runs as nobody");
    }
    assert!(s.log().contains("switched to user nobody"), "{}", s.log());
    // A reload reopens files as the unprivileged user.
    s.signal(nix::sys::signal::Signal::SIGHUP);
    s.wait_log("reload done", Duration::from_secs(20));
    assert_eq!(get(&s.url(&format!("/v1/sessions/{id}/attributes/a"))).status, 200);
    assert_eq!(s.stop(), Some(0));
}
