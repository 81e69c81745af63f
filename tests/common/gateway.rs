//! Shared by the gateway tests: a sessiond with a `[gateway]` (users alice
//! and bob, password "secret", bcrypt), the request a test HTTP server saw,
//! and a raw client for paths an HTTP library would normalise.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use super::{Resp, Server};

/// The gateway's signing secret in tests.
pub const SECRET: &[u8] = b"gateway-test-secret-0123456789abcdef";

/// One HTTP request as a test server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// The method.
    pub method: String,
    /// The request target, as sent.
    pub target: String,
    /// Header names lowercased, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Seen {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    /// Every value of a header.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }
}

/// Reads one request from `r`; `None` at end of stream.
pub fn read_request(r: &mut BufReader<TcpStream>) -> Option<Seen> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let len: usize = headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).ok()?;
    Some(Seen { method, target, headers, body })
}

/// Serves HTTP/1.1 on a fresh loopback port, a thread per connection:
/// `answer` gets each request, the connection's reader (for a tunnel after
/// an upgrade) and its writer, and writes the response. Returns the port.
pub fn serve_http<F>(answer: F) -> u16
where
    F: Fn(Seen, &mut BufReader<TcpStream>, &mut TcpStream) + Send + Sync + 'static,
{
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let answer = std::sync::Arc::new(answer);
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            let answer = answer.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(c.try_clone().unwrap());
                let mut w = c;
                while let Some(req) = read_request(&mut r) {
                    answer(req, &mut r, &mut w);
                }
            });
        }
    });
    port
}

/// A test HTTP server that records every request it sees, then lets
/// `answer` reply (as [`serve_http`]).
pub struct Recorder {
    /// Its port on 127.0.0.1.
    pub port: u16,
    seen: std::sync::Arc<std::sync::Mutex<Vec<Seen>>>,
}

impl Recorder {
    /// Starts it.
    pub fn start<F>(answer: F) -> Recorder
    where
        F: Fn(&Seen, &mut BufReader<TcpStream>, &mut TcpStream) + Send + Sync + 'static,
    {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let s2 = seen.clone();
        let port = serve_http(move |req, r, w| {
            s2.lock().unwrap().push(req.clone());
            answer(&req, r, w);
        });
        Recorder { port, seen }
    }

    /// A stand-in for an upstream at `port` that this test does not serve
    /// (a dead or a silent one): it records nothing.
    pub fn at(port: u16) -> Recorder {
        Recorder { port, seen: Default::default() }
    }

    /// The last request it saw.
    pub fn last(&self) -> Seen {
        self.seen.lock().unwrap().last().cloned().expect("the upstream saw a request")
    }

    /// How many requests it saw.
    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

/// sessiond with a gateway; its public listener's address.
pub struct Gw {
    /// The server (private listener: `server.url`).
    pub server: Server,
    /// The gateway's `host:port`.
    pub gw: String,
    /// Owns the config, users and secret files.
    pub dir: tempfile::TempDir,
}

impl Gw {
    /// A URL on the gateway.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.gw, path)
    }
}

/// Starts sessiond with a gateway whose upstreams are `app` at `/` and
/// `admin` at `/admin`, both on `upstream_port`; `manager` as the session
/// manager; `extra` appended to `[gateway]`, `filters` as
/// `[gateway.filters]`, `args` on the command line.
pub fn start_gateway(upstream_port: u16, manager: Option<&str>, extra: &str, filters: &str, args: &[&str]) -> Gw {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    let h = |u: &str| format!("{u}:{}\n", bcrypt::hash("secret", 4).unwrap());
    std::fs::write(&users, format!("# test users\n{}{}", h("alice"), h("bob"))).unwrap();
    let secret = dir.path().join("gw.secret");
    std::fs::write(&secret, SECRET).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let sm = manager.map(|m| format!("session_manager = [\"{m}\"]\nsession_manager_timeout = 1\n")).unwrap_or_default();
    let cfg = dir.path().join("sessiond.toml");
    std::fs::write(
        &cfg,
        format!(
            "[gateway]\nlisten = \"127.0.0.1:0\"\nverifier = \"htpasswd:{}\"\nsecret_file = \"{}\"\n{sm}{extra}\n\
             [[gateway.upstreams]]\nname = \"app\"\nurl = \"http://127.0.0.1:{upstream_port}\"\nprefix = \"/\"\n\
             [[gateway.upstreams]]\nname = \"admin\"\nurl = \"http://127.0.0.1:{upstream_port}\"\nprefix = \"/admin\"\n\
             [gateway.filters]\n{filters}\n",
            users.display(),
            secret.display(),
        ),
    )
    .unwrap();
    let cfg = cfg.display().to_string();
    let mut all = vec!["--config", cfg.as_str()];
    all.extend_from_slice(args);
    let server = Server::start(&all);
    let line = server.wait_log("gateway: public listener on ", Duration::from_secs(20));
    let gw = line.split("gateway: public listener on ").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
    Gw { server, gw, dir }
}

/// The `name=value` part of a response's `Set-Cookie`.
pub fn cookie_of(r: &Resp) -> String {
    let sc = r.header("set-cookie").unwrap_or_else(|| panic!("no Set-Cookie: {} {}", r.status, r.text()));
    sc.split(';').next().unwrap().to_string()
}

/// A raw request (paths an HTTP library would normalise, odd headers);
/// the status and the whole answer. Send `connection: close`.
pub fn raw(addr: &str, req: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, text)
}
