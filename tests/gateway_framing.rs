//! Request framing on both listeners (the public gateway and the private
//! API), written byte by byte on raw connections: every malformed case is
//! a 400 with the connection closed, never a 5xx, and the upstream never
//! gets a request the filters did not allow or one that arrived inside a
//! body. Which cases hyper refuses itself and which sessiond checks is
//! docs/gateway.md §2.

mod common;

use common::gateway::*;
use common::*;

/// Who answers a malformed case: hyper's parser before any handler (an
/// empty 400), or sessiond (a JSON 400 with this error code).
#[derive(Clone, Copy, Debug, PartialEq)]
enum By {
    Hyper,
    Sessiond(&'static str),
}

/// Header lines and body of each malformed request, after the request
/// line, `Host` and (on the gateway) the cookie.
const CASES: &[(&str, &str, By)] = &[
    ("differing Content-Lengths", "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", By::Hyper),
    ("a Content-Length list", "Content-Length: 5, 6\r\n\r\nhello!", By::Hyper),
    ("a signed Content-Length", "Content-Length: +5\r\n\r\nhello", By::Hyper),
    (
        "a last coding that is not chunked",
        "Transfer-Encoding: chunked, identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        By::Hyper,
    ),
    ("identity alone", "Transfer-Encoding: identity\r\n\r\nhello", By::Hyper),
    ("an unknown coding alone", "Transfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", By::Hyper),
    ("an obsolete line folding", "X-Note: a\r\n b\r\nContent-Length: 0\r\n\r\n", By::Hyper),
    ("a folded Content-Length", "Content-Length:\r\n 5\r\n\r\nhello", By::Hyper),
    ("whitespace before the colon", "Content-Length : 5\r\n\r\nhello", By::Hyper),
    ("bare-LF chunk lines", "Transfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n", By::Sessiond("bad_body")),
    ("a bare LF after chunk data", "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n", By::Sessiond("bad_body")),
    (
        "a chunk size that is not hex",
        "Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        By::Sessiond("bad_body"),
    ),
    (
        "a bare LF in a chunk extension",
        "Transfer-Encoding: chunked\r\n\r\n5;x\nhello\r\n0\r\n\r\n",
        By::Sessiond("bad_body"),
    ),
    (
        "an unknown coding before chunked",
        "Transfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        By::Sessiond("bad_transfer_encoding"),
    ),
    (
        "chunked twice",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        By::Sessiond("bad_transfer_encoding"),
    ),
    (
        "another coding on an earlier line",
        "Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        By::Sessiond("bad_transfer_encoding"),
    ),
];

fn ok_upstream() -> Recorder {
    Recorder::start(|_, _, w| {
        let _ = std::io::Write::write_all(w, b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
    })
}

fn login(g: &Gw) -> String {
    let r = request(
        "POST",
        &g.url("/.sessiond/login"),
        &[("content-type", "application/json")],
        Some(br#"{"user":"alice","password":"secret"}"#),
    );
    assert_eq!(r.status, 204, "login: {}", r.text());
    cookie_of(&r)
}

/// How many sessions the private listener lists.
fn sessions(g: &Gw) -> usize {
    let r = get(&g.server.url("/v1/sessions?limit=1000"));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["sessions"].as_array().unwrap().len()
}

/// Checks one exchange: a single 400 from `by`, the connection closed.
fn assert_refused(what: &str, x: &Exchange, by: By) {
    assert!(x.closed, "{what}: the connection stays open: {x:?}");
    assert_eq!(x.responses.len(), 1, "{what}: {x:?}");
    let r = &x.responses[0];
    assert_eq!(r.status, 400, "{what}: {r:?}");
    match by {
        By::Hyper => assert!(r.body.is_empty(), "{what}: refused by hyper, before sessiond: {r:?}"),
        By::Sessiond(code) => {
            assert_eq!(r.error().as_deref(), Some(code), "{what}: {r:?}");
            assert_eq!(r.header("connection"), Some("close"), "{what}: {r:?}");
        }
    }
}

#[test]
fn malformed_framing_is_400_and_closes_the_connection_on_both_listeners() {
    let up = ok_upstream();
    let g = start_gateway(up.port, None, "", "categories = [\"public\"]\n", &[]);
    let cookie = login(&g);
    for (what, rest, by) in CASES {
        // The gateway: an allowed path, so only the framing can refuse it.
        let before = up.count();
        let x = exchange(&g.gw, format!("POST /public/x HTTP/1.1\r\nHost: x\r\ncookie: {cookie}\r\n{rest}").as_bytes());
        assert_refused(&format!("gateway, {what}"), &x, *by);
        assert_eq!(up.count(), before, "gateway, {what}: a malformed request reached the upstream");
        // A route that answers locally reads the body first: the malformed
        // one is still the 400, and the logout does not happen.
        let x = exchange(
            &g.gw,
            format!("POST /.sessiond/logout HTTP/1.1\r\nHost: x\r\ncookie: {cookie}\r\n{rest}").as_bytes(),
        );
        assert_refused(&format!("gateway logout, {what}"), &x, *by);
        let x =
            exchange(&g.gw, format!("POST /private/x HTTP/1.1\r\nHost: x\r\ncookie: {cookie}\r\n{rest}").as_bytes());
        assert_refused(&format!("gateway, filtered path, {what}"), &x, *by);
        let x = exchange(&g.gw, format!("POST /.sessiond/login HTTP/1.1\r\nHost: x\r\n{rest}").as_bytes());
        assert_refused(&format!("gateway login, {what}"), &x, *by);

        // The private listener: a route that ignores its body, and one that reads it.
        let n = sessions(&g);
        let x = exchange(&g.server.addr, format!("POST /v1/sessions HTTP/1.1\r\nHost: x\r\n{rest}").as_bytes());
        assert_refused(&format!("private, {what}"), &x, *by);
        assert_eq!(sessions(&g), n, "private, {what}: a malformed request created a session");
        let id = create(&g.server);
        let x = exchange(
            &g.server.addr,
            format!("PUT /v1/sessions/{id}/attributes/a HTTP/1.1\r\nHost: x\r\n{rest}").as_bytes(),
        );
        assert_refused(&format!("private PUT, {what}"), &x, *by);
        let r = get(&g.server.url(&format!("/v1/sessions/{id}/attributes/a")));
        assert_eq!(r.status, 404, "private PUT, {what}: the malformed value was stored: {}", r.text());
    }
    // The session survived every malformed logout.
    let r = request("GET", &g.url("/public/still-here"), &[("cookie", &cookie)], None);
    assert_eq!(r.status, 200, "{}", r.text());
    // And an HTTP/1.0 request with a Transfer-Encoding, which hyper refuses.
    for addr in [&g.gw, &g.server.addr] {
        let x = exchange(addr, b"POST /public/x HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
        assert_refused(&format!("{addr}: HTTP/1.0 with Transfer-Encoding"), &x, By::Hyper);
    }
}

#[test]
fn content_length_with_transfer_encoding_is_read_as_chunked_and_nothing_after_it_is_a_request() {
    let up = ok_upstream();
    let g = start_gateway(up.port, None, "", "categories = [\"public\", \"private\"]\n", &[]);
    let cookie = login(&g);
    // Both orders of the two headers. The Content-Length would end the body
    // early; the smuggled request after the chunked body is never read.
    let smuggled = "GET /private/smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    for heads in ["Content-Length: 4\r\nTransfer-Encoding: chunked", "Transfer-Encoding: chunked\r\nContent-Length: 4"]
    {
        let before = up.count();
        let x = exchange(
            &g.gw,
            format!("POST /public/te-cl HTTP/1.1\r\nHost: x\r\ncookie: {cookie}\r\n{heads}\r\n\r\n3\r\nabc\r\n0\r\n\r\n{smuggled}")
                .as_bytes(),
        );
        assert!(x.closed, "{heads:?}: {x:?}");
        assert_eq!(x.responses.len(), 1, "{heads:?}: one answer, then the connection closes: {x:?}");
        assert!(x.responses[0].status < 500, "{heads:?}: {x:?}");
        let seen = up.all()[before..].to_vec();
        assert_eq!(seen.len(), 1, "{heads:?}: {seen:?}");
        assert_eq!((seen[0].target.as_str(), seen[0].body.as_slice()), ("/public/te-cl", &b"abc"[..]));
        assert!(seen[0].header("content-length").is_none_or(|l| l == "3"), "{seen:?}");

        let x = exchange(
            &g.server.addr,
            format!("POST /v1/sessions HTTP/1.1\r\nHost: x\r\n{heads}\r\n\r\n3\r\nabc\r\n0\r\n\r\n{smuggled}")
                .as_bytes(),
        );
        assert!(x.closed && x.responses.len() == 1 && x.responses[0].status < 500, "private, {heads:?}: {x:?}");
    }
    assert!(up.all().iter().all(|s| !s.target.contains("smuggled")));
}

#[test]
fn pipelined_requests_are_each_filtered_and_a_body_never_becomes_a_request() {
    let up = ok_upstream();
    let g = start_gateway(up.port, None, "", "categories = [\"public\"]\n", &[]);
    let cookie = login(&g);
    let c = format!("Host: x\r\ncookie: {cookie}\r\n");
    let inner = format!("GET /private/in-body HTTP/1.1\r\n{c}\r\n");
    let before = up.count();
    let x = exchange(
        &g.gw,
        format!(
            "GET /public/a HTTP/1.1\r\n{c}\r\n\
             GET /private/b HTTP/1.1\r\n{c}\r\n\
             POST /public/c HTTP/1.1\r\n{c}Content-Length: {}\r\n\r\n{inner}\
             GET /public/../private/d HTTP/1.1\r\n{c}\r\n\
             GET /public/%252e%252e/private/e HTTP/1.1\r\n{c}\r\n\
             GET /public/f HTTP/1.1\r\n{c}Connection: close\r\n\r\n",
            inner.len()
        )
        .as_bytes(),
    );
    let statuses: Vec<u16> = x.responses.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 403, 200, 403, 400, 200], "{x:?}");
    assert_eq!(x.responses[4].error().as_deref(), Some("ambiguous_path"));
    let seen = up.all()[before..].to_vec();
    let targets: Vec<&str> = seen.iter().map(|s| s.target.as_str()).collect();
    assert_eq!(targets, ["/public/a", "/public/c", "/public/f"], "{seen:?}");
    assert_eq!(seen[1].body, inner.as_bytes(), "the body is passed on as a body");

    // A malformed body in the middle: the requests after it are never read.
    let before = up.count();
    let x = exchange(
        &g.gw,
        format!(
            "GET /public/g HTTP/1.1\r\n{c}\r\n\
             POST /public/h HTTP/1.1\r\n{c}Transfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n\
             GET /public/after HTTP/1.1\r\n{c}\r\n"
        )
        .as_bytes(),
    );
    let statuses: Vec<u16> = x.responses.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 400], "{x:?}");
    assert!(x.closed, "{x:?}");
    let targets: Vec<String> = up.all()[before..].iter().map(|s| s.target.clone()).collect();
    assert_eq!(targets, ["/public/g"], "nothing after the malformed body reached the upstream");
}
