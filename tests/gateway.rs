//! The gateway end to end: the real binary with a `[gateway]`, a real
//! upstream (a small HTTP/1.1 server in the test that echoes what it got),
//! a real session-manager hook server, real passwords (bcrypt).

mod common;

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::gateway::*;
use common::*;
use serde_json::{Value, json};

/// The upstream: answers every request with 200 and a JSON echo of the
/// method, target and headers; a WebSocket upgrade gets 101 and an echo
/// of every byte.
type Upstream = Recorder;

/// Starts the upstream.
fn start_upstream() -> Upstream {
    Recorder::start(move |req, r, w| {
        if req.header("upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket")) {
            let _ = write!(
                w,
                "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-accept: x\r\n\r\n"
            );
            let mut buf = [0u8; 1024];
            loop {
                match r.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if w.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                }
            }
        }
        let cookie_hdr = if req.target.contains("setcookie") {
            "set-cookie: SESSIONID=from-the-app; Path=/\r\nset-cookie: app=1; Path=/\r\n"
        } else {
            ""
        };
        let body = json!({
            "method": req.method, "target": req.target,
            "headers": req.headers.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>(),
        })
        .to_string();
        let _ = write!(
            w,
            "HTTP/1.1 200 OK\r\n{cookie_hdr}content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
    })
}

/// The session manager: answers `session.create` with the scripted
/// answers (then `{"allow":true}`), `session.destroy` with the scripted
/// statuses (then 204); `hang_create` never answers a create.
struct Manager {
    port: u16,
    got: Arc<Mutex<Vec<Value>>>,
    create: Arc<Mutex<VecDeque<Value>>>,
    destroy_status: Arc<Mutex<VecDeque<u16>>>,
    hang_create: Arc<std::sync::atomic::AtomicBool>,
}

impl Manager {
    fn start() -> Manager {
        let got: Arc<Mutex<Vec<Value>>> = Default::default();
        let create: Arc<Mutex<VecDeque<Value>>> = Default::default();
        let destroy_status: Arc<Mutex<VecDeque<u16>>> = Default::default();
        let hang_create: Arc<std::sync::atomic::AtomicBool> = Default::default();
        let (g, c, d, h) = (got.clone(), create.clone(), destroy_status.clone(), hang_create.clone());
        let port = serve_http(move |req, _, w| {
            let v: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
            assert!(req.header("webhook-signature").is_some_and(|s| s.starts_with("v1,")), "{req:?}");
            g.lock().unwrap().push(v.clone());
            let (status, body) = if v["type"] == "session.create" {
                if h.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_secs(3600));
                }
                (200, c.lock().unwrap().pop_front().unwrap_or(json!({"allow": true})).to_string())
            } else {
                (d.lock().unwrap().pop_front().unwrap_or(204), String::new())
            };
            let _ = write!(
                w,
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
        });
        Manager { port, got, create, destroy_status, hang_create }
    }
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/sessions", self.port)
    }
    fn destroys(&self) -> Vec<Value> {
        self.got.lock().unwrap().iter().filter(|v| v["type"] == "session.destroy").cloned().collect()
    }
    fn creates(&self) -> Vec<Value> {
        self.got.lock().unwrap().iter().filter(|v| v["type"] == "session.create").cloned().collect()
    }
    fn wait_destroy(&self, pred: impl Fn(&Value) -> bool, what: &str) -> Value {
        let t = Instant::now();
        loop {
            if let Some(v) = self.destroys().into_iter().find(|v| pred(v)) {
                return v;
            }
            assert!(t.elapsed() < Duration::from_secs(30), "no destroy notice for {what}; got {:#?}", self.destroys());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Starts sessiond with a gateway in front of `up`, users alice/bob
/// (password "secret"), and `extra` appended to the `[gateway]` table.
fn start(up: &Upstream, manager: Option<&Manager>, extra: &str, filters: &str, args: &[&str]) -> Gw {
    let m = manager.map(Manager::url);
    start_gateway(up.port, m.as_deref(), extra, filters, args)
}

fn login(g: &Gw, user: &str) -> (Resp, String) {
    let r = request(
        "POST",
        &g.url("/.sessiond/login"),
        &[("content-type", "application/json")],
        Some(json!({"user": user, "password": "secret"}).to_string().as_bytes()),
    );
    assert_eq!(r.status, 204, "login: {}", r.text());
    let c = cookie_of(&r);
    (r, c)
}

fn get_with(url: &str, cookie: &str) -> Resp {
    request("GET", url, &[("cookie", cookie)], None)
}

fn control(g: &Gw, method: &str, path: &str, body: Option<Value>) -> Resp {
    let b = body.map(|v| v.to_string());
    request(method, &g.server.url(path), &[("content-type", "application/json")], b.as_deref().map(str::as_bytes))
}

#[test]
fn login_forward_logout_and_every_login_status() {
    let up = start_upstream();
    let g = start(&up, None, "", "", &[]);
    // No session: 401 JSON, or 302 to the login form for a browser.
    let r = get(&g.url("/app/page"));
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["error"], "unauthenticated");
    let r = request("GET", &g.url("/app/page?x=1"), &[("accept", "text/html")], None);
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location"), Some("/.sessiond/login?rd=%2Fapp%2Fpage%3Fx%3D1"));
    assert_eq!(up.count(), 0, "nothing reached the upstream without a session");
    // The form.
    let r = get(&g.url("/.sessiond/login?rd=/app"));
    assert_eq!(r.status, 200);
    assert!(r.text().contains("<form") && r.text().contains("value=\"/app\""), "{}", r.text());
    // Wrong password and unknown user: the same 401.
    for (u, p) in [("alice", "nope"), ("nobody", "secret")] {
        let r = request(
            "POST",
            &g.url("/.sessiond/login"),
            &[("content-type", "application/json")],
            Some(json!({"user": u, "password": p}).to_string().as_bytes()),
        );
        assert_eq!(r.status, 401, "{u}: {}", r.text());
        assert_eq!(r.json()["error"], "permission_denied");
        assert!(r.header("set-cookie").is_none());
    }
    // A form login with rd: 303 to it, with the cookie.
    let r = request(
        "POST",
        &g.url("/.sessiond/login"),
        &[("content-type", "application/x-www-form-urlencoded")],
        Some(b"user=bob&password=secret&rd=%2Fapp%2Fhome"),
    );
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location"), Some("/app/home"));
    let sc = r.header("set-cookie").unwrap();
    assert!(sc.contains("HttpOnly") && sc.contains("SameSite=Lax"), "{sc}");
    // Forwarding: the upstream gets the path, the query and the identity.
    let (_, cookie) = login(&g, "alice");
    let r = get_with(&g.url("/app/items?q=1&b=%20"), &cookie);
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(seen.target, "/app/items?q=1&b=%20");
    assert_eq!(seen.header("x-sessiond-user"), Some("alice"));
    assert!(seen.header("x-sessiond-session").is_some_and(|h| h.contains('.')));
    assert!(
        seen.header("x-forwarded-for").is_some()
            && seen.header("forwarded").is_some_and(|f| f.contains("for=127.0.0.1"))
    );
    assert!(seen.all("cookie").iter().all(|c| !c.contains("SESSIONID")), "sessiond's cookie stays here: {seen:?}");
    // /.sessiond/session.
    let r = get_with(&g.url("/.sessiond/session"), &cookie);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["user"], "alice");
    assert!(r.json()["expires_at"].is_string() && r.json()["filters"].is_object());
    // The session API never shows the gateway's reserved attribute.
    let id = cookie.split('=').nth(1).unwrap();
    let r = get(&g.server.url(&format!("/v1/sessions/{id}")));
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["attributes"], json!({}), "{}", r.text());
    // Logout: idempotent, cookie expired, session gone.
    for _ in 0..2 {
        let r = request("POST", &g.url("/.sessiond/logout"), &[("cookie", &cookie)], None);
        assert_eq!(r.status, 204);
        assert!(r.header("set-cookie").is_some_and(|c| c.contains("Max-Age=0") || c.contains("Expires")));
    }
    assert_eq!(get_with(&g.url("/app/items"), &cookie).status, 401);
    assert_eq!(get_with(&g.url("/.sessiond/session"), &cookie).status, 401);
    // Method checks.
    assert_eq!(request("GET", &g.url("/.sessiond/logout"), &[], None).status, 405);
    assert_eq!(request("PUT", &g.url("/.sessiond/login"), &[], None).status, 405);
}

#[test]
fn a_login_with_a_valid_session_replaces_it_with_a_new_id() {
    let up = start_upstream();
    let m = Manager::start();
    let g = start(&up, Some(&m), "", "", &[]);
    let (_, c1) = login(&g, "alice");
    let r = request(
        "POST",
        &g.url("/.sessiond/login"),
        &[("content-type", "application/json"), ("cookie", &c1)],
        Some(br#"{"user":"alice","password":"secret"}"#),
    );
    assert_eq!(r.status, 204);
    let c2 = cookie_of(&r);
    assert_ne!(c1, c2, "a new id on login (fixation)");
    assert_eq!(get_with(&g.url("/app"), &c1).status, 401, "the old session is gone");
    assert_eq!(get_with(&g.url("/app"), &c2).status, 200);
    let creates = m.creates();
    assert_eq!(creates.len(), 2);
    assert!(creates[1]["replaces"].is_string() && creates[0]["replaces"].is_null(), "{creates:#?}");
    assert_eq!(creates[1]["client"]["addr"], "127.0.0.1");
    m.wait_destroy(|v| v["reason"] == "replaced" && v["session"] == creates[1]["replaces"], "replaced");
}

#[test]
fn the_session_manager_can_refuse_grant_or_be_unavailable() {
    let up = start_upstream();
    let m = Manager::start();
    let g = start(&up, Some(&m), "", "", &[]);
    m.create.lock().unwrap().push_back(json!({"allow": false, "reason": "account locked"}));
    let r = request(
        "POST",
        &g.url("/.sessiond/login"),
        &[("content-type", "application/json")],
        Some(br#"{"user":"alice","password":"secret"}"#),
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json(), json!({"error": "session_refused", "reason": "account locked"}));
    assert!(r.header("set-cookie").is_none());
    // Garbage is "unavailable": 503 with Retry-After, no session.
    m.create.lock().unwrap().push_back(json!("not an object"));
    let r = request(
        "POST",
        &g.url("/.sessiond/login"),
        &[("content-type", "application/json")],
        Some(br#"{"user":"alice","password":"secret"}"#),
    );
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["error"], "session_manager_unavailable");
    assert!(r.header("retry-after").is_some());
    // A grant with filters and attributes.
    m.create
        .lock()
        .unwrap()
        .push_back(json!({"allow": true, "filters": {"categories": ["app"]}, "attributes": {"role": "viewer"}}));
    let (_, c) = login(&g, "alice");
    assert_eq!(get_with(&g.url("/app/x"), &c).status, 200);
    let r = get_with(&g.url("/other"), &c);
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["error"], "filtered");
    let id = c.split('=').nth(1).unwrap();
    assert_eq!(get(&g.server.url(&format!("/v1/sessions/{id}/attributes/role"))).text(), "viewer");
    // A hanging manager: 503 within the timeout, and other requests go on meanwhile.
    m.hang_create.store(true, std::sync::atomic::Ordering::Relaxed);
    let addr = g.gw.clone();
    let slow = std::thread::spawn(move || {
        request(
            "POST",
            &format!("http://{addr}/.sessiond/login"),
            &[("content-type", "application/json")],
            Some(br#"{"user":"bob","password":"secret"}"#),
        )
    });
    std::thread::sleep(Duration::from_millis(200));
    for _ in 0..20 {
        assert_eq!(get_with(&g.url("/app/y"), &c).status, 200, "a hanging hook must not hold other requests");
    }
    let r = slow.join().unwrap();
    assert_eq!(r.status, 503, "{}", r.text());
}

#[test]
fn filters_match_only_the_normalised_path_and_bypass_attempts_fail() {
    let up = start_upstream();
    let g = start(&up, None, "", "categories = [\"public\"]\nidentities = [\"/docs/readme\"]\n", &[]);
    let (_, cookie) = login(&g, "alice");
    assert_eq!(get_with(&g.url("/public/a"), &cookie).status, 200);
    assert_eq!(up.last().target, "/public/a");
    assert_eq!(get_with(&g.url("/docs/readme"), &cookie).status, 200);
    assert_eq!(get_with(&g.url("/docs/other"), &cookie).status, 403);
    assert_eq!(get_with(&g.url("/admin/x"), &cookie).status, 403);
    // Each bypass attempt is refused (403 or 400) or lands where its
    // normal form says, and the upstream sees only the normal form.
    let cases: [(&str, &[u16], Option<&str>); 9] = [
        ("/public/../admin/x", &[403], None),
        ("/public/%2e%2e/admin/x", &[403], None),
        ("/public/.%2E/admin/x", &[403], None),
        ("//admin/x", &[403], None),
        ("/public/..;/admin/x", &[403], None),
        ("/public;x=1/ok", &[200], Some("/public/ok")),
        ("/public/a%2fb", &[400], None),
        ("/public/a%5c..%5cadmin", &[400], None),
        // A fragment is not part of the path: the filters and the
        // upstream both see the path without it (or it is refused).
        ("/admin#/public/x", &[400, 403], None),
    ];
    for (path, want, upstream_target) in cases {
        let before = up.count();
        let (status, text) =
            raw(&g.gw, &format!("GET {path} HTTP/1.1\r\nhost: x\r\ncookie: {cookie}\r\nconnection: close\r\n\r\n"));
        assert!(want.contains(&status), "{path}: got {status}: {text}");
        match upstream_target {
            Some(t) => assert_eq!(up.last().target, t, "{path}"),
            None => assert_eq!(up.count(), before, "{path} must not reach the upstream"),
        }
    }
    // A trick to reach the adapter through the category filter also fails.
    let (status, _) = raw(
        &g.gw,
        &format!("GET /public/../../admin HTTP/1.1\r\nhost: x\r\ncookie: {cookie}\r\nconnection: close\r\n\r\n"),
    );
    assert_eq!(status, 403);
}

#[test]
fn multiple_encoding_is_refused_as_ambiguous_in_paths_and_forward_auth_unless_allowed() {
    let up = start_upstream();
    let g = start(&up, None, "", "categories = [\"public\"]\n", &[]);
    let (_, cookie) = login(&g, "alice");
    let send = |g: &Gw, path: &str| {
        raw(&g.gw, &format!("GET {path} HTTP/1.1\r\nhost: x\r\ncookie: {cookie}\r\nconnection: close\r\n\r\n"))
    };
    let error_of = |text: &str| {
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
        serde_json::from_str::<Value>(body).ok().and_then(|v| v["error"].as_str().map(str::to_string))
    };
    // Encoded more than once: 400 ambiguous_path, nothing forwarded.
    let twice = [
        "/public/..%252fprivate",
        "/public/%252e%252e/private",
        "/public/..%255cprivate",
        "/public/x%2500",
        "/public/%25c0%25af",
        "/public/%2561",
        "/public/%25%32%65%25%32%65/private",
    ];
    for path in twice {
        let before = up.count();
        let (status, text) = send(&g, path);
        assert_eq!((status, error_of(&text).as_deref()), (400, Some("ambiguous_path")), "{path}: {text}");
        assert_eq!(up.count(), before, "{path} must not reach the upstream");
    }
    // Overlong and broken UTF-8 stays refused as a bad path.
    for path in
        ["/public/%c0%ae%c0%ae/private", "/public/%c0%af", "/public/%e0%80%ae", "/public/a%80", "/public/%u002e"]
    {
        let (status, text) = send(&g, path);
        assert_eq!((status, error_of(&text).as_deref()), (400, Some("bad_path")), "{path}: {text}");
    }
    // Single-encoded characters pass as before; fullwidth dots and solidus
    // are text inside /public/, forwarded encoded.
    for (path, forwarded) in [
        ("/public/a%20b/%41/caf%C3%A9", "/public/a%20b/A/caf%C3%A9"),
        ("/public/%ef%bc%8e%ef%bc%8e%ef%bc%8fprivate", "/public/%EF%BC%8E%EF%BC%8E%EF%BC%8Fprivate"),
        ("/public/100%25", "/public/100%25"),
    ] {
        let (status, text) = send(&g, path);
        assert_eq!(status, 200, "{path}: {text}");
        assert_eq!(up.last().target, forwarded, "{path}");
    }
    // Forward-auth judges its URI headers by the same rules.
    for hdr in ["x-forwarded-uri", "x-original-uri"] {
        for uri in ["/public/%252e%252e/admin", "/public/..%252fadmin?x=1"] {
            let r = request("GET", &g.url("/.sessiond/auth"), &[("cookie", &cookie), (hdr, uri)], None);
            assert_eq!((r.status, r.json()["error"].as_str()), (400, Some("ambiguous_path")), "{hdr}: {uri}");
        }
        let r = request("GET", &g.url("/.sessiond/auth"), &[("cookie", &cookie), (hdr, "/public/%ef%bc%8e")], None);
        assert_eq!(r.status, 204, "{hdr}: {}", r.text());
    }

    // gateway.allow_encoded_percent = true: literal %xx text passes, once
    // decoded, and is forwarded as it came (the application decodes once).
    let lit = start(&up, None, "allow_encoded_percent = true\n", "categories = [\"public\"]\n", &[]);
    let (_, cookie) = login(&lit, "alice");
    let (status, text) = raw(
        &lit.gw,
        &format!("GET /public/%2561 HTTP/1.1\r\nhost: x\r\ncookie: {cookie}\r\nconnection: close\r\n\r\n"),
    );
    assert_eq!(status, 200, "{text}");
    assert_eq!(up.last().target, "/public/%2561");
    let r = request(
        "GET",
        &lit.url("/.sessiond/auth"),
        &[("cookie", &cookie), ("x-forwarded-uri", "/public/%252e%252e/x")],
        None,
    );
    assert_eq!(r.status, 204, "{}", r.text());
    // Everything else is still refused.
    let (status, text) = raw(
        &lit.gw,
        &format!("GET /public/a%2fb HTTP/1.1\r\nhost: x\r\ncookie: {cookie}\r\nconnection: close\r\n\r\n"),
    );
    assert_eq!((status, error_of(&text).as_deref()), (400, Some("bad_path")), "{text}");
}

#[test]
fn client_identity_headers_are_stripped_and_forwarded_headers_rewritten() {
    let up = start_upstream();
    let g = start(&up, None, "", "", &[]);
    let (_, cookie) = login(&g, "alice");
    let r = request(
        "GET",
        &g.url("/app"),
        &[
            ("cookie", &format!("theme=dark; {cookie}; lang=en")),
            ("x-sessiond-user", "root"),
            ("x-sessiond-session", "forged"),
            ("x-forwarded-user", "root"),
            ("x-forwarded-for", "6.6.6.6"),
            ("forwarded", "for=6.6.6.6"),
            ("x-forwarded-host", "evil.example"),
        ],
        None,
    );
    assert_eq!(r.status, 200);
    let s = up.last();
    assert_eq!(s.all("x-sessiond-user"), ["alice"]);
    assert_ne!(s.header("x-sessiond-session"), Some("forged"));
    assert!(s.header("x-forwarded-user").is_none());
    assert_eq!(s.header("x-forwarded-for"), Some("127.0.0.1"));
    assert!(!s.header("forwarded").unwrap().contains("6.6.6.6"));
    assert_ne!(s.header("x-forwarded-host"), Some("evil.example"));
    assert_eq!(s.all("cookie"), ["theme=dark; lang=en"]);
    // Underscore spellings (CGI/WSGI fold them into the same variable) and a
    // session id in a header never reach the upstream.
    let id = cookie.split('=').nth(1).unwrap();
    let (status, _) = raw(
        &g.gw,
        &format!(
            "GET /app HTTP/1.1\r\nhost: x\r\ncookie: {cookie}\r\nX_Sessiond_User: root\r\nx-session-id: {id}\r\nconnection: close\r\n\r\n"
        ),
    );
    assert_eq!(status, 200);
    let s = up.last();
    assert!(s.headers.iter().all(|(k, _)| k != "x_sessiond_user" && k != "x-session-id"), "{s:?}");
    assert!(s.headers.iter().all(|(_, v)| !v.contains(id)), "the session id reached the upstream: {s:?}");
    // The application cannot overwrite the gateway's cookie; its own cookies pass.
    let r = get_with(&g.url("/app/setcookie"), &cookie);
    assert_eq!(r.status, 200);
    let set: Vec<&str> =
        r.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie")).map(|(_, v)| v.as_str()).collect();
    assert_eq!(set, ["app=1; Path=/"], "{set:?}");
    // Only WebSocket upgrades are tunnelled; any other protocol is a plain request.
    let (status, _) = raw(
        &g.gw,
        &format!(
            "GET /app/h2 HTTP/1.1\r\nhost: x\r\ncookie: {cookie}\r\nconnection: Upgrade, HTTP2-Settings\r\nupgrade: h2c\r\nhttp2-settings: AAMAAABkAAQAAP__\r\n\r\n"
        ),
    );
    assert_eq!(status, 200);
    let s = up.last();
    assert!(s.header("upgrade").is_none() && s.header("http2-settings").is_none(), "{s:?}");
}

#[test]
fn open_redirects_are_refused() {
    let up = start_upstream();
    let g = start(&up, None, "", "", &[]);
    for rd in ["https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)", "http:/evil"] {
        let body = format!("user=alice&password=secret&rd={}", percent(rd));
        let r = request(
            "POST",
            &g.url("/.sessiond/login"),
            &[("content-type", "application/x-www-form-urlencoded")],
            Some(body.as_bytes()),
        );
        assert_eq!(r.status, 204, "{rd}: a refused rd logs in without redirecting: {}", r.text());
        assert!(r.header("location").is_none(), "{rd}");
    }
    // A cross-site form post is refused outright.
    let r = request(
        "POST",
        &g.url("/.sessiond/login"),
        &[("content-type", "application/x-www-form-urlencoded"), ("origin", "https://evil.example")],
        Some(b"user=alice&password=secret"),
    );
    assert_eq!(r.status, 403);
}

fn percent(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

#[test]
fn forward_auth_answers_nginx_and_traefik() {
    let up = start_upstream();
    let g = start(&up, None, "", "categories = [\"app\"]\n", &[]);
    let (_, cookie) = login(&g, "alice");
    let auth =
        |uri: &str, hdr: &str, c: &str| request("GET", &g.url("/.sessiond/auth"), &[("cookie", c), (hdr, uri)], None);
    let r = auth("/app/x?y=1", "x-original-uri", &cookie);
    assert_eq!(r.status, 204);
    assert_eq!(r.header("x-sessiond-user"), Some("alice"));
    assert!(r.header("x-sessiond-session").is_some());
    assert_eq!(auth("/admin", "x-forwarded-uri", &cookie).status, 403);
    assert_eq!(auth("/app/../admin", "x-forwarded-uri", &cookie).status, 403);
    assert_eq!(auth("/app", "x-forwarded-uri", "SESSIONID=nope").status, 401);
    // A forged second header cannot pick the path that is judged.
    let r = request(
        "GET",
        &g.url("/.sessiond/auth"),
        &[("cookie", &cookie), ("x-original-uri", "/admin"), ("x-forwarded-uri", "/app/x")],
        None,
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"], "ambiguous_uri");
    // No path to judge is a question sessiond does not answer with "/".
    let r = get_with(&g.url("/.sessiond/auth"), &cookie);
    assert_eq!((r.status, r.json()["error"].as_str()), (400, Some("missing_uri")));
    assert_eq!(up.count(), 0, "forward-auth forwards nothing");
}

#[test]
fn control_api_reads_and_changes_filters_live_across_workers() {
    let up = start_upstream();
    let g = start(&up, None, "", "categories = [\"app\"]\n", &["--max-procs", "2"]);
    let (_, cookie) = login(&g, "alice");
    let r = request("GET", &g.url("/.sessiond/auth"), &[("cookie", &cookie), ("x-forwarded-uri", "/app")], None);
    assert_eq!(r.status, 204, "{}", r.text());
    let handle = r.header("x-sessiond-session").unwrap().to_string();
    let base = format!("/v1/gateway/sessions/{handle}");
    let r = control(&g, "GET", &base, None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["user"], "alice");
    assert_eq!(r.json()["filters"]["categories"], json!(["app"]));
    // Add twice (idempotent), then the new category works on every worker.
    for _ in 0..2 {
        let r = control(&g, "POST", &format!("{base}/filters/categories/add"), Some(json!({"items": ["reports"]})));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["items"], json!(["app", "reports"]));
    }
    for _ in 0..10 {
        // New connections spread over both workers.
        let (status, _) =
            raw(&g.gw, &format!("GET /reports/q HTTP/1.1\r\nhost: x\r\ncookie: {cookie}\r\nconnection: close\r\n\r\n"));
        assert_eq!(status, 200);
    }
    for _ in 0..2 {
        let r = control(
            &g,
            "POST",
            &format!("{base}/filters/categories/remove"),
            Some(json!({"items": ["reports", "absent"]})),
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["items"], json!(["app"]));
    }
    for _ in 0..10 {
        let (status, _) =
            raw(&g.gw, &format!("GET /reports/q HTTP/1.1\r\nhost: x\r\ncookie: {cookie}\r\nconnection: close\r\n\r\n"));
        assert_eq!(status, 403);
    }
    let r = control(&g, "GET", &format!("{base}/filters/categories"), None);
    assert_eq!(r.json()["items"], json!(["app"]));
    assert_eq!(control(&g, "GET", &format!("{base}/filters/colours"), None).status, 400);
    // Identities are normalised when added.
    let r = control(&g, "POST", &format!("{base}/filters/identities/add"), Some(json!({"items": ["/x/../admin/y"]})));
    assert_eq!(r.json()["items"], json!(["/admin/y"]));
    assert_eq!(get_with(&g.url("/admin/y"), &cookie).status, 200);
    // A stale or forged handle is 404; the handle is not the id.
    let id = cookie.split('=').nth(1).unwrap();
    assert!(!handle.contains(id));
    assert_eq!(control(&g, "GET", "/v1/gateway/sessions/0.AAAAAAAAAAAAAAAAAAAAAA", None).status, 404);
    // Destroy: 204, then 204 again; the session is gone.
    assert_eq!(control(&g, "DELETE", &base, None).status, 204);
    assert_eq!(control(&g, "DELETE", &base, None).status, 204);
    assert_eq!(control(&g, "GET", &base, None).status, 404);
    assert_eq!(get_with(&g.url("/app"), &cookie).status, 401);
}

#[test]
fn destroy_notices_reach_the_manager_for_logout_control_and_expiry() {
    let up = start_upstream();
    let m = Manager::start();
    let g = start(&up, Some(&m), "", "", &["--set", "timeout=2", "--set", "reap_interval=1"]);
    let (_, c1) = login(&g, "alice");
    assert_eq!(request("POST", &g.url("/.sessiond/logout"), &[("cookie", &c1)], None).status, 204);
    let h1 = m.creates()[0]["session"].as_str().unwrap().to_string();
    let d = m.wait_destroy(|v| v["session"] == h1, "logout");
    assert_eq!((d["reason"].as_str(), d["user"].as_str()), (Some("logout"), Some("alice")));
    let (_, _c2) = login(&g, "bob");
    let h2 = m.creates()[1]["session"].as_str().unwrap().to_string();
    assert_eq!(control(&g, "DELETE", &format!("/v1/gateway/sessions/{h2}"), None).status, 204);
    let d = m.wait_destroy(|v| v["session"] == h2, "control destroy");
    assert_eq!((d["reason"].as_str(), d["user"].as_str()), (Some("control"), Some("bob")));
    let (_, _c3) = login(&g, "alice");
    let h3 = m.creates()[2]["session"].as_str().unwrap().to_string();
    let d = m.wait_destroy(|v| v["session"] == h3, "idle expiry");
    assert_eq!(d["reason"], "expired");
    assert_eq!(m.destroys().iter().filter(|v| v["session"] == h1).count(), 1, "one notice per session");
}

#[test]
fn a_destroy_notice_survives_killed_processes_and_a_manager_outage() {
    let up = start_upstream();
    let m = Manager::start();
    let g = start(&up, Some(&m), "", "", &[]);
    // The manager fails every destroy for a while.
    m.destroy_status.lock().unwrap().extend([500u16; 3]);
    let (_, c) = login(&g, "alice");
    let h = m.creates()[0]["session"].as_str().unwrap().to_string();
    assert_eq!(request("POST", &g.url("/.sessiond/logout"), &[("cookie", &c)], None).status, 204);
    // SIGKILL every child (workers and the reaper, which delivers); the
    // master starts new ones.
    for role in ["sessiond: worker", "sessiond: reaper"] {
        for pid in g.server.children(role) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
    // Three attempts answered 500, then one taken: four in all.
    let t = Instant::now();
    while m.destroys().iter().filter(|v| v["session"] == h).count() < 4 {
        assert!(t.elapsed() < Duration::from_secs(60), "the notice was not retried to success: {:#?}", m.destroys());
        std::thread::sleep(Duration::from_millis(100));
    }
    let all = m.destroys();
    assert!(
        all.iter().filter(|v| v["session"] == h).all(|d| d["reason"] == "logout" && d["user"] == "alice"),
        "{all:#?}"
    );
    assert!(m.destroy_status.lock().unwrap().is_empty(), "every scripted failure was used");
}

#[test]
fn repeated_login_failures_are_throttled() {
    let up = start_upstream();
    let g = start(&up, None, "login_max_failures = 3\nlogin_window = 60\n", "", &["--max-procs", "1"]);
    for _ in 0..3 {
        let r = request(
            "POST",
            &g.url("/.sessiond/login"),
            &[("content-type", "application/json")],
            Some(br#"{"user":"alice","password":"bad"}"#),
        );
        assert_eq!(r.status, 401);
    }
    let r = request(
        "POST",
        &g.url("/.sessiond/login"),
        &[("content-type", "application/json")],
        Some(br#"{"user":"alice","password":"secret"}"#),
    );
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.header("retry-after").and_then(|v| v.parse::<u64>().ok()).is_some_and(|s| s >= 1));
}

#[test]
fn upstream_down_is_502_and_a_websocket_closes_at_logout() {
    let up = start_upstream();
    let dead = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    let g = start(&up, None, "", "", &[]);
    let (_, cookie) = login(&g, "alice");
    // WebSocket through the gateway.
    let mut ws = TcpStream::connect(&g.gw).unwrap();
    ws.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        ws,
        "GET /app/ws HTTP/1.1\r\nhost: x\r\ncookie: {cookie}\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(ws.read(&mut b).unwrap(), 1, "handshake cut: {}", String::from_utf8_lossy(&head));
        head.push(b[0]);
    }
    assert!(String::from_utf8_lossy(&head).starts_with("HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    ws.write_all(b"ping").unwrap();
    let mut echo = [0u8; 4];
    ws.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"ping");
    assert_eq!(request("POST", &g.url("/.sessiond/logout"), &[("cookie", &cookie)], None).status, 204);
    let t = Instant::now();
    let mut buf = [0u8; 16];
    let closed = loop {
        match ws.read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
                break false;
            }
            Err(_) => break true,
        }
    };
    assert!(closed, "the tunnel must close when its session is destroyed (waited {:?})", t.elapsed());
    // An upstream that is down: 502 JSON; one that never answers: 504.
    drop(g);
    let down = Recorder::at(dead_port);
    let g = start(&down, None, "", "", &[]);
    let (_, cookie) = login(&g, "alice");
    let r = get_with(&g.url("/app"), &cookie);
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.json()["error"], "upstream_unreachable");
    drop(g);
    let mute = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent = Recorder::at(mute.local_addr().unwrap().port());
    let g = start(&silent, None, "upstream_timeout = 1\n", "", &[]);
    let (_, cookie) = login(&g, "alice");
    let r = get_with(&g.url("/app"), &cookie);
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(r.json()["error"], "upstream_timeout");
    drop(mute);
}

#[test]
fn a_bad_password_file_stops_the_start_naming_the_line() {
    let up = start_upstream();
    let g = start(&up, None, "", "", &[]);
    let cfg = g.dir.path().join("sessiond.toml");
    // An Apache MD5 hash on line 3: refused, by line, without the hash.
    std::fs::write(g.dir.path().join("users"), "# users\nalice:$2b$04$abcdefghijklmnopqrstuuJq5eHuTz0pZQoA3/zm9yE2t0RW1.QyG\ncarol:$apr1$salt$abcdefghijklmnopqrstuv\n")
        .unwrap();
    for args in [
        &["--config", cfg.to_str().unwrap(), "--check-config"][..],
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            g.dir.path().join("d2").to_str().unwrap(),
        ][..],
    ] {
        let out = std::process::Command::new(sessiond_bin()).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("gateway.verifier") && err.contains("line 3") && err.contains("carol"), "{err}");
        assert!(!err.contains("$apr1$salt"), "the hash must not be printed: {err}");
    }
}

#[test]
fn an_api_token_guards_the_whole_private_listener() {
    let up = start_upstream();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("api.token");
    std::fs::write(&token, "s3cr3t-token-for-the-private-api\n").unwrap();
    std::fs::set_permissions(&token, <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600))
        .unwrap();
    let t = format!("api_token_file={}", token.display());
    let g = start(&up, None, "", "", &["--set", &t]);
    for path in ["/v1/sessions", "/metrics", "/v1/gateway/sessions/0.AAAAAAAAAAAAAAAAAAAAAA"] {
        for auth in [
            None,
            Some("Bearer wrong"),
            Some("Bearer s3cr3t-token-for-the-private-ap"),
            Some("s3cr3t-token-for-the-private-api"),
        ] {
            let h: Vec<(&str, &str)> = auth.map(|a| vec![("authorization", a)]).unwrap_or_default();
            let r = request("GET", &g.server.url(path), &h, None);
            assert_eq!(r.status, 401, "{path} with {auth:?}: {}", r.text());
            assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        }
        let r =
            request("GET", &g.server.url(path), &[("authorization", "Bearer s3cr3t-token-for-the-private-api")], None);
        assert_ne!(r.status, 401, "{path} with the token: {}", r.text());
    }
    // The public gateway listener does not take the token: it has its own login.
    assert_eq!(get(&g.url("/app")).status, 401);
    let (_, cookie) = login(&g, "alice");
    assert_eq!(get_with(&g.url("/app"), &cookie).status, 200);
}
