//! The gateway's forward-auth endpoint behind a real nginx: Debian's
//! `/usr/sbin/nginx` with `auth_request`, configured with the block that
//! `docs/gateway-proxies.md` documents (read out of that file, so the two
//! cannot drift), a real sessiond with a `[gateway]`, and a small upstream
//! in the test that records what reached it.
//!
//! nginx is required: when it is missing these tests fail and name the
//! command that installs it. They never skip.

mod common;

use std::io::Write;

use common::gateway::*;
use common::nginx::{Conf, Nginx};
use common::*;
use serde_json::json;

/// The doc whose nginx block these tests run.
const DOC: &str = include_str!("../docs/gateway-proxies.md");
/// The line after which the tested block starts.
const DOC_MARKER: &str = "<!-- tests/gateway_nginx.rs reads the first nginx block after this line. -->";
/// The addresses in the documented block that a run replaces.
const DOC_LISTEN: &str = "listen 80;";
const DOC_GATEWAY: &str = "server 127.0.0.1:8443;";
const DOC_APP: &str = "server 127.0.0.1:8080;";

/// The first ```` ```nginx ```` block after [`DOC_MARKER`] in the doc.
fn documented_nginx_block() -> &'static str {
    let after = DOC.split_once(DOC_MARKER).expect("docs/gateway-proxies.md has the tested-block marker").1;
    let start = after.find("```nginx\n").expect("an ```nginx block after the marker") + "```nginx\n".len();
    let len = after[start..].find("\n```").expect("the nginx block is closed");
    &after[start..start + len + 1]
}

/// The application behind nginx: answers every request with 200 and a
/// JSON echo of its target, and records what it saw.
type Upstream = Recorder;

/// Starts the upstream.
fn start_upstream() -> Upstream {
    Recorder::start(move |req, _, w| {
        let body = json!({"target": req.target}).to_string();
        let _ = write!(
            w,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
    })
}

/// Starts sessiond with a gateway whose upstreams point at `up` (`app` at
/// `/`, `admin` at `/admin`), users alice/bob (password "secret"), nginx
/// on 127.0.0.1 as a trusted proxy, and `filters` as `[gateway.filters]`.
fn start_gateway_for(up: &Upstream, filters: &str) -> Gw {
    start_gateway(up.port, None, "trusted_proxies = [\"127.0.0.1\"]\n", filters, &[])
}

/// Starts nginx with the documented block, its addresses pointed at
/// `gateway` (`host:port`) and the upstream.
fn start_nginx(gateway: &str, up: &Upstream) -> Nginx {
    let block = documented_nginx_block();
    for needle in [DOC_LISTEN, DOC_GATEWAY, DOC_APP] {
        assert_eq!(block.matches(needle).count(), 1, "the documented nginx block has {needle:?} once:\n{block}");
    }
    let conf = Conf { worker_connections: 256, log_format: None };
    Nginx::start(&conf, |port| {
        block
            .replace(DOC_LISTEN, &format!("listen 127.0.0.1:{port};"))
            .replace(DOC_GATEWAY, &format!("server {gateway};"))
            .replace(DOC_APP, &format!("server 127.0.0.1:{};", up.port))
    })
}

/// sessiond, the upstream and nginx in front of both.
struct Stack {
    up: Upstream,
    gw: Gw,
    nginx: Nginx,
}

fn stack(filters: &str) -> Stack {
    let up = start_upstream();
    let gw = start_gateway_for(&up, filters);
    let nginx = start_nginx(&gw.gw, &up);
    Stack { up, gw, nginx }
}

impl Stack {
    /// The sessiond and nginx logs, for failure messages.
    fn logs(&self) -> String {
        format!("sessiond:\n{}\nnginx error.log:\n{}", self.gw.server.log(), self.nginx.error_log())
    }
}

/// Logs in with JSON through nginx; the cookie.
fn login(s: &Stack, user: &str) -> String {
    let r = request(
        "POST",
        &s.nginx.url("/.sessiond/login"),
        &[("content-type", "application/json")],
        Some(json!({"user": user, "password": "secret"}).to_string().as_bytes()),
    );
    assert_eq!(r.status, 204, "login through nginx: {}\n{}", r.text(), s.logs());
    cookie_of(&r)
}

fn get_with(url: &str, headers: &[(&str, &str)]) -> Resp {
    request("GET", url, headers, None)
}

#[test]
fn nginx_auth_request_redirects_to_login_forwards_the_identity_and_logs_out() {
    let s = stack("categories = [\"app\"]\n");
    // No cookie: nginx's @login answers 302 to the gateway's form, and the
    // application sees nothing.
    let r = get_with(&s.nginx.url("/app/x"), &[]);
    assert_eq!(r.status, 302, "{}\n{}", r.text(), s.logs());
    let loc = r.header("location").unwrap_or_default().to_string();
    assert!(
        loc.starts_with("http://") && loc.ends_with("/.sessiond/login?rd=/app/x"),
        "nginx makes the redirect absolute: {loc}"
    );
    assert_eq!(s.up.count(), 0, "nothing reached the upstream without a session");
    // The form is served by the gateway through nginx, without a session.
    let r = get_with(&s.nginx.url("/.sessiond/login?rd=/app/x"), &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("<form") && r.text().contains("value=\"/app/x\""), "{}", r.text());
    // JSON login through nginx; the cookie opens /app/x.
    let cookie = login(&s, "alice");
    let r = get_with(&s.nginx.url("/app/x?y=1"), &[("cookie", &cookie)]);
    assert_eq!(r.status, 200, "{}\n{}", r.text(), s.logs());
    let seen = s.up.last();
    assert_eq!(seen.target, "/app/x?y=1");
    assert_eq!(seen.all("x-sessiond-user"), ["alice"], "{seen:?}");
    assert!(seen.header("x-sessiond-session").is_some_and(|h| h.contains('.')), "a control handle: {seen:?}");
    assert_eq!(s.up.count(), 1);
    // Logout through nginx, then /app/x is back to the login redirect.
    let r = request("POST", &s.nginx.url("/.sessiond/logout"), &[("cookie", &cookie)], None);
    assert_eq!(r.status, 204, "{}", r.text());
    let r = get_with(&s.nginx.url("/app/x"), &[("cookie", &cookie)]);
    assert_eq!(r.status, 302, "{}", r.text());
    assert!(r.header("location").is_some_and(|l| l.ends_with("/.sessiond/login?rd=/app/x")));
    assert_eq!(s.up.count(), 1, "nothing reached the upstream after logout");
}

#[test]
fn a_browser_form_login_through_nginx_passes_the_origin_check() {
    // `proxy_set_header Host $http_host` in /.sessiond/ is what lets the
    // browser's Origin match the Host that sessiond sees.
    let s = stack("");
    let origin = format!("http://{}", s.nginx.addr);
    let r = request(
        "POST",
        &s.nginx.url("/.sessiond/login"),
        &[("content-type", "application/x-www-form-urlencoded"), ("origin", &origin)],
        Some(b"user=bob&password=secret&rd=%2Fapp%2Fhome"),
    );
    assert_eq!(r.status, 303, "{}\n{}", r.text(), s.logs());
    assert_eq!(r.header("location"), Some("/app/home"));
    let cookie = cookie_of(&r);
    assert_eq!(get_with(&s.nginx.url("/app/home"), &[("cookie", &cookie)]).status, 200);
    assert_eq!(s.up.last().all("x-sessiond-user"), ["bob"]);
    // A cross-site form post through nginx is still refused.
    let r = request(
        "POST",
        &s.nginx.url("/.sessiond/login"),
        &[("content-type", "application/x-www-form-urlencoded"), ("origin", "https://evil.example")],
        Some(b"user=bob&password=secret"),
    );
    assert_eq!(r.status, 403, "{}", r.text());
    let r = request("POST", &s.nginx.url("/.sessiond/logout"), &[("cookie", &cookie), ("origin", &origin)], None);
    assert_eq!(r.status, 204, "a browser logout through nginx: {}", r.text());
}

#[test]
fn nginx_auth_request_keeps_filters_paths_and_identity_out_of_the_clients_hands() {
    let s = stack("categories = [\"app\"]\n");
    let cookie = login(&s, "alice");
    // Filtered: 403 through nginx, nothing upstream.
    let r = get_with(&s.nginx.url("/admin/x"), &[("cookie", &cookie)]);
    assert_eq!(r.status, 403, "{}\n{}", r.text(), s.logs());
    assert_eq!(s.up.count(), 0);
    // A client-sent identity never reaches the application: nginx's
    // proxy_set_header replaces it with sessiond's answer.
    let r = get_with(
        &s.nginx.url("/app/x"),
        &[("cookie", &cookie), ("x-sessiond-user", "root"), ("x-sessiond-session", "forged")],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = s.up.last();
    assert_eq!(seen.all("x-sessiond-user"), ["alice"], "{seen:?}");
    assert_eq!(seen.all("x-sessiond-session").len(), 1, "{seen:?}");
    assert_ne!(seen.header("x-sessiond-session"), Some("forged"));
    let before = s.up.count();
    // A client cannot pick the path sessiond judges: the auth subrequest
    // carries the client's headers, and sessiond reads X-Forwarded-Uri
    // first, so the documented block sets both.
    for hdr in ["x-forwarded-uri", "x-original-uri"] {
        let r = get_with(&s.nginx.url("/admin/x"), &[("cookie", &cookie), (hdr, "/app/x")]);
        assert_eq!(r.status, 403, "{hdr}: /app/x must not stand in for /admin/x: {}", r.text());
    }
    // Paths nginx merges for its own routing reach sessiond as sent
    // ($request_uri); sessiond normalises them to /admin itself.
    for path in ["/app/../admin", "/app/%2e%2e/admin", "/app/..;/admin", "/app/.%2E/admin/x"] {
        let (status, text) = raw(
            &s.nginx.addr,
            &format!("GET {path} HTTP/1.1\r\nhost: x\r\ncookie: {cookie}\r\nconnection: close\r\n\r\n"),
        );
        assert_eq!(status, 403, "{path}: {text}\n{}", s.logs());
    }
    // A path sessiond cannot normalise is a 400 from it, which
    // auth_request turns into a 500.
    let (status, text) = raw(
        &s.nginx.addr,
        &format!("GET /app/a%2fb HTTP/1.1\r\nhost: x\r\ncookie: {cookie}\r\nconnection: close\r\n\r\n"),
    );
    assert_eq!(status, 500, "{text}");
    assert_eq!(s.up.count(), before, "no refused request reached the upstream");
    // The internal location is not reachable from outside.
    assert_eq!(get_with(&s.nginx.url("/_sessiond_auth"), &[("cookie", &cookie)]).status, 404);
}
