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
    let chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        read_chunked(r)?
    } else {
        let len: usize =
            headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
        let mut body = vec![0u8; len];
        r.read_exact(&mut body).ok()?;
        body
    };
    Some(Seen { method, target, headers, body })
}

/// Reads a chunked body (what the gateway's client sends for a streamed
/// request body); `None` at end of stream or on a malformed chunk, which
/// ends the connection as a strict server would.
fn read_chunked(r: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 || !line.ends_with("\r\n") {
            return None;
        }
        let size = usize::from_str_radix(line.trim_end().split(';').next()?, 16).ok()?;
        if size == 0 {
            // Trailers, if any, up to the empty line.
            loop {
                let mut t = String::new();
                if r.read_line(&mut t).ok()? == 0 {
                    return None;
                }
                if t == "\r\n" {
                    return Some(body);
                }
            }
        }
        let mut chunk = vec![0u8; size + 2];
        r.read_exact(&mut chunk).ok()?;
        if !chunk.ends_with(b"\r\n") {
            return None;
        }
        body.extend_from_slice(&chunk[..size]);
    }
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

    /// Every request it saw, in order.
    pub fn all(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
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

/// One response read off a raw connection.
#[derive(Clone, Debug)]
pub struct RawResp {
    /// The status code.
    pub status: u16,
    /// Header names lowercased, in order.
    pub headers: Vec<(String, String)>,
    /// The body (by `Content-Length`, or chunked).
    pub body: Vec<u8>,
}

impl RawResp {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    /// The `error` code of a JSON error body, if it is one.
    pub fn error(&self) -> Option<String> {
        let v: serde_json::Value = serde_json::from_slice(&self.body).ok()?;
        v["error"].as_str().map(str::to_string)
    }
}

/// Reads one response; `None` at end of stream (or on garbage).
pub fn read_response(r: &mut impl BufRead) -> Option<RawResp> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let status = line.split_whitespace().nth(1)?.parse().ok()?;
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
    let chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            let mut chunk = vec![0u8; n + 2];
            r.read_exact(&mut chunk).ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else {
        let len: usize =
            headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
        body.resize(len, 0);
        r.read_exact(&mut body).ok()?;
    }
    Some(RawResp { status, headers, body })
}

/// What came back for bytes written on a fresh connection.
#[derive(Debug)]
pub struct Exchange {
    /// Every response, in order.
    pub responses: Vec<RawResp>,
    /// Whether the server closed the connection (rather than leaving it
    /// open until the 10 s read timeout). The client never closes first.
    pub closed: bool,
}

/// Writes `bytes` on a fresh connection to `addr` (without closing the
/// writing side) and reads responses until the server closes or 10 s pass
/// without a byte.
pub fn exchange(addr: &str, bytes: &[u8]) -> Exchange {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let closed = s.read_to_end(&mut out).is_ok();
    let mut r = std::io::Cursor::new(out);
    let mut responses = Vec::new();
    while let Some(resp) = read_response(&mut r) {
        responses.push(resp);
    }
    Exchange { responses, closed }
}

/// A kept-alive raw connection for many requests in a row; reconnects when
/// the server closed the last one.
pub struct RawConn {
    addr: String,
    conn: Option<(BufReader<TcpStream>, TcpStream)>,
}

impl RawConn {
    /// A connection to `addr` (opened at the first request).
    pub fn new(addr: &str) -> RawConn {
        RawConn { addr: addr.to_string(), conn: None }
    }

    /// Sends one request, written as given, and reads its response.
    pub fn send(&mut self, req: &[u8]) -> RawResp {
        let (r, w) = self.conn.get_or_insert_with(|| {
            let s = TcpStream::connect(&self.addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            (BufReader::new(s.try_clone().unwrap()), s)
        });
        w.write_all(req).unwrap();
        let resp = read_response(r).expect("a response");
        if resp.header("connection").is_some_and(|c| c.eq_ignore_ascii_case("close")) {
            self.conn = None;
        }
        resp
    }
}
