//! The HTTP API against the real binary: every endpoint and status code of
//! the README's API section, the three ways to name the current session
//! (cookie, `;sessionid=` URL rewriting, `X-Session-Id`), binary values
//! round-tripped byte for byte, hostile input (oversized heads, bodies that
//! never end or lie about their length, percent-encoding tricks, hostile
//! PATCH JSON) and a cross-worker consistency check.
//!
//! Each test starts its own server (two workers unless said otherwise), so
//! tests share no state. Hostile requests that a normal client cannot send
//! go over a raw [`TcpStream`]; after each one the test checks that the
//! session it aimed at still holds exactly the bytes it held before.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use common::*;
use serde_json::{Value, json};

// ---------- helpers ----------

/// Every byte value once, in order.
fn all_bytes() -> Vec<u8> {
    (0..=255u8).collect()
}

fn sess_url(s: &Server, id: &str, rest: &str) -> String {
    s.url(&format!("/v1/sessions/{id}{rest}"))
}

fn put(s: &Server, id: &str, name: &str, body: &[u8]) -> Resp {
    request("PUT", &sess_url(s, id, &format!("/attributes/{name}")), &[], Some(body))
}

fn get_attr(s: &Server, id: &str, name: &str) -> Resp {
    request("GET", &sess_url(s, id, &format!("/attributes/{name}?touch=false")), &[], None)
}

fn patch(s: &Server, id: &str, body: &[u8]) -> Resp {
    request("PATCH", &sess_url(s, id, ""), &[("Content-Type", "application/json")], Some(body))
}

/// The session JSON without touching it.
fn peek(s: &Server, id: &str) -> Value {
    let r = request("GET", &sess_url(s, id, "?touch=false"), &[], None);
    assert_eq!(r.status, 200, "peek {id}: {}", r.text());
    r.json()
}

/// Decodes one attribute value of the session JSON.
fn value_bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::String(s) => s.as_bytes().to_vec(),
        Value::Object(o) if o.len() == 1 => STANDARD.decode(o["base64"].as_str().expect("base64 string")).unwrap(),
        other => panic!("not a value form: {other}"),
    }
}

/// All attributes of a session, decoded, read without touching it.
fn attrs(s: &Server, id: &str) -> BTreeMap<String, Vec<u8>> {
    let j = peek(s, id);
    j["attributes"].as_object().expect("attributes object").iter().map(|(k, v)| (k.clone(), value_bytes(v))).collect()
}

fn map(pairs: &[(&str, &[u8])]) -> BTreeMap<String, Vec<u8>> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_vec())).collect()
}

/// Asserts the status and the JSON error code.
#[track_caller]
fn assert_error(r: &Resp, status: u16, code: &str) {
    assert_eq!(r.status, status, "body: {}", r.text());
    let j = r.json();
    assert_eq!(j["error"], code, "body: {j}");
    assert!(j["message"].as_str().is_some_and(|m| !m.is_empty()), "error without a message: {j}");
    assert_eq!(r.header("content-type"), Some("application/json"));
}

/// A session holding `keep` = all 256 byte values and `note` = "intact".
fn session_with_known_data(s: &Server) -> (String, BTreeMap<String, Vec<u8>>) {
    let id = create(s);
    assert_eq!(put(s, &id, "keep", &all_bytes()).status, 204);
    assert_eq!(put(s, &id, "note", b"intact").status, 204);
    let want = map(&[("keep", &all_bytes()), ("note", b"intact")]);
    assert_eq!(attrs(s, &id), want);
    (id, want)
}

/// Splits a `Set-Cookie` value into `name=value` and its attributes
/// (lower-cased).
fn parse_set_cookie(v: &str) -> (String, BTreeSet<String>) {
    let mut parts = v.split(';').map(str::trim);
    let first = parts.next().unwrap().to_string();
    (first, parts.map(str::to_ascii_lowercase).collect())
}

fn ts(v: &Value) -> SystemTime {
    humantime::parse_rfc3339(v.as_str().unwrap_or_else(|| panic!("not a timestamp: {v}"))).unwrap()
}

/// A syntactically valid id that differs from `id` in its token.
fn forge(id: &str) -> String {
    let mut b = URL_SAFE_NO_PAD.decode(id).unwrap();
    assert_eq!(b.len(), 27);
    for x in &mut b[9..] {
        *x ^= 0x5a;
    }
    URL_SAFE_NO_PAD.encode(b)
}

/// `id` pointed at another slot (same context and token).
fn with_slot(id: &str, slot: u32) -> String {
    let mut b = URL_SAFE_NO_PAD.decode(id).unwrap();
    b[5..9].copy_from_slice(&slot.to_be_bytes());
    URL_SAFE_NO_PAD.encode(b)
}

// ---------- raw connections ----------

/// One response read off a raw connection.
#[derive(Debug)]
struct RawResp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// How a raw connection ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The server closed it (FIN).
    Closed,
    /// The server reset it.
    Reset,
    /// Nothing more arrived within the read timeout: the server kept it open.
    TimedOut,
}

/// Everything a raw connection produced.
#[derive(Debug)]
struct RawOutcome {
    responses: Vec<RawResp>,
    end: End,
}

impl RawResp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

impl RawOutcome {
    /// The first response's status, or `None` if the connection ended first.
    fn first_status(&self) -> Option<u16> {
        self.responses.first().map(|r| r.status)
    }
    /// No response was a server error.
    #[track_caller]
    fn assert_no_5xx(&self) {
        for r in &self.responses {
            assert!(r.status < 500, "server error: {} {}", r.status, String::from_utf8_lossy(&r.body));
        }
    }
}

/// Parses one complete response at the start of `buf`; returns it and the
/// bytes it used. Our server always sends `Content-Length` (or no body).
fn parse_response(buf: &[u8]) -> Option<(RawResp, usize)> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status: u16 = status_line.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len =
        headers.iter().find(|(k, _)| k == "content-length").map(|(_, v)| v.parse::<usize>().unwrap()).unwrap_or(0);
    if buf.len() < head_end + len {
        return None;
    }
    let body = buf[head_end..head_end + len].to_vec();
    Some((RawResp { status, headers, body }, head_end + len))
}

/// Sends `head`, then the chunks of `body` with `gap` between them, while
/// another thread reads responses. Writing stops when a response arrives,
/// the server stops reading, or `body` runs out; the connection is never
/// half-closed by us, so a server waiting for more bytes must time out on
/// its own. The reader gives up after 10 s of silence.
fn exchange(s: &Server, head: &[u8], body: impl IntoIterator<Item = Vec<u8>>, gap: Duration) -> RawOutcome {
    let mut w = TcpStream::connect(&s.addr).unwrap();
    w.set_nodelay(true).unwrap();
    w.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = w.try_clone().unwrap();
    r.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let ended = Arc::new(AtomicBool::new(false));
    let (seen2, ended2) = (seen.clone(), ended.clone());
    let reader = std::thread::spawn(move || {
        let (mut buf, mut out, mut chunk) = (Vec::new(), Vec::new(), vec![0u8; 16 * 1024]);
        let end = loop {
            while let Some((resp, used)) = parse_response(&buf) {
                out.push(resp);
                buf.drain(..used);
                seen2.fetch_add(1, Ordering::SeqCst);
            }
            match r.read(&mut chunk) {
                Ok(0) => break End::Closed,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                    break End::TimedOut;
                }
                Err(_) => break End::Reset,
            }
        };
        ended2.store(true, Ordering::SeqCst);
        RawOutcome { responses: out, end }
    });
    if w.write_all(head).is_ok() {
        for c in body {
            if seen.load(Ordering::SeqCst) > 0 || ended.load(Ordering::SeqCst) || w.write_all(&c).is_err() {
                break;
            }
            if !gap.is_zero() {
                std::thread::sleep(gap);
            }
        }
    }
    let out = reader.join().unwrap();
    drop(w);
    out
}

/// A request head for `method path` with extra header lines.
fn head(method: &str, path: &str, extra: &[String]) -> Vec<u8> {
    let mut h = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n");
    for l in extra {
        h.push_str(l);
        h.push_str("\r\n");
    }
    h.push_str("\r\n");
    h.into_bytes()
}

/// `n` chunks of chunked transfer coding, 1 KiB of `b` each, never terminated.
fn endless_chunks(b: u8, n: usize) -> impl Iterator<Item = Vec<u8>> {
    (0..n).map(move |_| {
        let mut c = b"400\r\n".to_vec();
        c.extend(std::iter::repeat_n(b, 1024));
        c.extend_from_slice(b"\r\n");
        c
    })
}

/// The server refused an oversized body: a 413, or it closed the connection
/// before answering. Waiting forever (timed out) or a 5xx fails.
#[track_caller]
fn assert_refused_too_large(o: &RawOutcome) {
    o.assert_no_5xx();
    match o.first_status() {
        Some(st) => assert_eq!(st, 413, "{o:?}"),
        None => assert_ne!(o.end, End::TimedOut, "the server neither answered nor closed: {o:?}"),
    }
}

// ---------- basics ----------

#[test]
fn healthz_is_200() {
    let s = Server::start(&[]);
    let r = get(&s.url("/healthz"));
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"status": "ok"}));
}

#[test]
fn create_is_201_with_session_json_and_httponly_samesite_cookie() {
    let s = Server::start(&[]);
    let r = request("POST", &s.url("/v1/sessions"), &[], None);
    assert_eq!(r.status, 201, "{}", r.text());
    let j = r.json();
    let id = j["id"].as_str().unwrap();
    assert_eq!(id.len(), 36);
    assert_eq!(j["context"], "default");
    assert_eq!(j["new"], true);
    assert_eq!(j["timeout"], 1800);
    assert_eq!(j["attributes"], json!({}));
    let (nv, a) = parse_set_cookie(r.header("set-cookie").expect("Set-Cookie"));
    assert_eq!(nv, format!("SESSIONID={id}"));
    assert!(a.contains("httponly"), "{a:?}");
    assert!(a.contains("samesite=lax"), "{a:?}");
    assert!(a.contains("path=/"), "{a:?}");
    assert!(!a.contains("secure"), "Secure only when configured: {a:?}");
    assert_eq!(peek(&s, id)["id"], id);
}

#[test]
fn create_cookie_is_secure_when_configured() {
    let s = Server::start(&["--set", "sessions.cookie_secure=true"]);
    let r = request("POST", &s.url("/v1/sessions"), &[], None);
    assert_eq!(r.status, 201);
    let (_, a) = parse_set_cookie(r.header("set-cookie").unwrap());
    assert!(a.contains("secure") && a.contains("httponly"), "{a:?}");
}

#[test]
fn create_when_full_under_refuse_is_503_with_retry_after() {
    let s = Server::start(&["--max-sessions", "2", "--max-locks", "1", "--when-full", "refuse"]);
    let a = create(&s);
    let b = create(&s);
    for path in ["/v1/sessions", "/v1/session"] {
        let r = request("POST", &s.url(path), &[], None);
        assert_error(&r, 503, "max_sessions");
        let ra: u64 = r.header("retry-after").expect("Retry-After").parse().unwrap();
        assert!(ra > 0);
        assert!(r.header("set-cookie").is_none());
    }
    // The existing sessions still work, and freeing one makes room.
    assert_eq!(put(&s, &a, "x", b"1").status, 204);
    assert_eq!(request("DELETE", &sess_url(&s, &b, ""), &[], None).status, 204);
    assert_eq!(request("POST", &s.url("/v1/sessions"), &[], None).status, 201);
}

#[test]
fn get_returns_every_field_and_touches() {
    let s = Server::start(&[]);
    let c = request("POST", &s.url("/v1/sessions"), &[], None).json();
    let id = c["id"].as_str().unwrap();
    assert_eq!(put(&s, id, "user", b"alice").status, 204);
    std::thread::sleep(Duration::from_millis(30));
    let r = request("GET", &sess_url(&s, id, ""), &[], None);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let j = r.json();
    let keys: BTreeSet<&str> = j.as_object().unwrap().keys().map(String::as_str).collect();
    let want: BTreeSet<&str> =
        ["id", "context", "created_at", "last_accessed_at", "expires_at", "timeout", "new", "attributes"]
            .into_iter()
            .chain(["timeout_override", "deadline", "principal"]) // the session's own settings (issue 16)
            .collect();
    assert_eq!(keys, want);
    assert_eq!(j["id"], id);
    assert_eq!(j["context"], "default");
    assert_eq!(j["created_at"], c["created_at"]);
    assert_eq!(j["attributes"], json!({"user": "alice"}));
    assert!(ts(&j["last_accessed_at"]) > ts(&c["last_accessed_at"]), "GET touches: {j} vs {c}");
    assert_eq!(ts(&j["expires_at"]).duration_since(ts(&j["last_accessed_at"])).unwrap(), Duration::from_secs(1800));
    // The touch was stored.
    assert_eq!(peek(&s, id)["last_accessed_at"], j["last_accessed_at"]);
}

#[test]
fn get_with_touch_false_only_peeks() {
    let s = Server::start(&[]);
    let c = request("POST", &s.url("/v1/sessions"), &[], None).json();
    let id = c["id"].as_str().unwrap();
    std::thread::sleep(Duration::from_millis(30));
    let p = peek(&s, id);
    assert_eq!(p["last_accessed_at"], c["last_accessed_at"]);
    assert_eq!(p["expires_at"], c["expires_at"]);
    assert_eq!(p["new"], true);
    // Peeking the current session and an attribute does not touch either.
    let r = request("GET", &s.url("/v1/session?touch=false"), &[("X-Session-Id", id)], None);
    assert_eq!((r.status, &r.json()["new"]), (200, &json!(true)));
    let r = request("GET", &sess_url(&s, id, "/attributes/none?touch=false"), &[], None);
    assert_error(&r, 404, "attribute_not_found");
    let p = peek(&s, id);
    assert_eq!((&p["last_accessed_at"], &p["new"]), (&c["last_accessed_at"], &json!(true)));
}

#[test]
fn new_flag_stays_true_until_the_client_comes_back() {
    let s = Server::start(&[]);
    let r = request("POST", &s.url("/v1/session"), &[], None);
    assert_eq!(r.status, 201);
    let j = r.json();
    let id = j["id"].as_str().unwrap();
    assert_eq!(j["new"], true);
    assert_eq!(peek(&s, id)["new"], true);
    assert_eq!(peek(&s, id)["new"], true, "peeking twice still leaves it new");
    // The application writes the new session before answering the client.
    let put = request("PUT", &s.url(&format!("/v1/sessions/{id}/attributes/user")), &[], Some(b"alice"));
    assert_eq!(put.status, 204);
    assert_eq!(peek(&s, id)["new"], true, "an application write is not the client coming back");
    // The client comes back with its cookie: from now on the session is not new.
    let cookie = format!("SESSIONID={id}");
    let r = request("POST", &s.url("/v1/session"), &[("Cookie", &cookie)], None);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["id"], id);
    assert_eq!(r.json()["new"], false);
    assert_eq!(peek(&s, id)["new"], false);
}

// ---------- values ----------

#[test]
fn utf8_values_are_json_strings_and_other_bytes_are_base64() {
    let s = Server::start(&[]);
    let id = create(&s);
    assert_eq!(put(&s, &id, "text", "héllo ✓".as_bytes()).status, 204);
    assert_eq!(put(&s, &id, "bin", &[0xff, 0x00, 0x01]).status, 204);
    assert_eq!(put(&s, &id, "empty", b"").status, 204);
    let j = peek(&s, &id);
    assert_eq!(j["attributes"], json!({"text": "héllo ✓", "bin": {"base64": "/wAB"}, "empty": ""}));
}

#[test]
fn put_and_get_raw_round_trip_all_256_byte_values() {
    let s = Server::start(&[]);
    let id = create(&s);
    let mut v = all_bytes();
    v.extend(all_bytes().iter().rev());
    assert_eq!(put(&s, &id, "blob", &v).status, 204);
    let r = get_attr(&s, &id, "blob");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert_eq!(r.body, v);
    assert_eq!(peek(&s, &id)["attributes"]["blob"], json!({"base64": STANDARD.encode(&v)}));
}

#[test]
fn patch_base64_round_trips_all_256_byte_values() {
    let s = Server::start(&[]);
    let id = create(&s);
    let v = all_bytes();
    let body = json!({"attributes": {"blob": {"base64": STANDARD.encode(&v)}, "s": "plain"}}).to_string();
    assert_eq!(patch(&s, &id, body.as_bytes()).status, 204);
    assert_eq!(get_attr(&s, &id, "blob").body, v);
    let j = peek(&s, &id);
    assert_eq!(j["attributes"]["blob"], json!({"base64": STANDARD.encode(&v)}));
    assert_eq!(j["attributes"]["s"], "plain");
    // A valid UTF-8 value sent as base64 comes back as a string.
    let body = json!({"attributes": {"u": {"base64": STANDARD.encode("ü")}}}).to_string();
    assert_eq!(patch(&s, &id, body.as_bytes()).status, 204);
    assert_eq!(peek(&s, &id)["attributes"]["u"], "ü");
}

#[test]
fn patch_sets_and_removes_atomically() {
    let s = Server::start(&[]);
    let id = create(&s);
    assert_eq!(put(&s, &id, "b", b"old").status, 204);
    assert_eq!(put(&s, &id, "c", b"stays").status, 204);
    let r = patch(&s, &id, br#"{"attributes": {"a": "x", "b": null, "gone": null}}"#);
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(r.body.is_empty());
    assert_eq!(attrs(&s, &id), map(&[("a", b"x"), ("c", b"stays")]));
}

#[test]
fn patch_of_the_largest_legitimate_size_is_accepted() {
    let s = Server::start(&[]);
    let id = create(&s);
    // Every attribute at full size, written the longest way JSON allows
    // without padding: control bytes, which serde_json escapes as \u00XX.
    let value: String = (0..4096).map(|i| char::from(1 + (i % 31) as u8)).collect();
    let mut changes = serde_json::Map::new();
    for k in 0..10 {
        changes.insert(format!("{k}{}", "é".repeat(31)) + "n", Value::String(value.clone()));
    }
    let body = json!({"attributes": changes}).to_string();
    assert!(body.len() > 200_000, "{}", body.len());
    let r = patch(&s, &id, body.as_bytes());
    assert_eq!(r.status, 204, "{}", r.text());
    let got = attrs(&s, &id);
    assert_eq!(got.len(), 10);
    for (k, v) in &got {
        assert_eq!(k.len(), 64, "{k}");
        assert_eq!(v, value.as_bytes(), "{k}");
    }
}

#[test]
fn patch_over_max_values_is_409_too_many_values_and_nothing_applied() {
    let s = Server::start(&["--max-values-per-session", "3"]);
    let id = create(&s);
    assert_eq!(patch(&s, &id, br#"{"attributes": {"a": "1", "b": "2"}}"#).status, 204);
    let before = attrs(&s, &id);
    let r = patch(&s, &id, br#"{"attributes": {"a": "changed", "c": "3", "d": "4"}}"#);
    assert_error(&r, 409, "too_many_values");
    assert_eq!(attrs(&s, &id), before, "no part of a refused PATCH applies");
    // Removals count first: removing one and adding two fits exactly.
    let r = patch(&s, &id, br#"{"attributes": {"a": null, "c": "3", "d": "4"}}"#);
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(attrs(&s, &id), map(&[("b", b"2"), ("c", b"3"), ("d", b"4")]));
}

#[test]
fn get_absent_attribute_is_404_attribute_not_found() {
    let s = Server::start(&[]);
    let id = create(&s);
    assert_error(&get_attr(&s, &id, "nope"), 404, "attribute_not_found");
    // Distinct from a missing session.
    assert_error(&get_attr(&s, &forge(&id), "nope"), 404, "session_not_found");
}

#[test]
fn put_over_max_value_size_is_413_and_session_intact() {
    let s = Server::start(&[]);
    let (id, want) = session_with_known_data(&s);
    let r = put(&s, &id, "keep", &vec![b'x'; 4097]);
    assert_error(&r, 413, "value_too_large");
    assert!(r.json()["message"].as_str().unwrap().contains("4096"), "names the limit: {}", r.text());
    assert_eq!(attrs(&s, &id), want);
    // Exactly at the limit is fine.
    let v: Vec<u8> = (0..4096u32).map(|i| i as u8).collect();
    assert_eq!(put(&s, &id, "big", &v).status, 204);
    assert_eq!(get_attr(&s, &id, "big").body, v);
}

#[test]
fn put_new_name_when_session_full_is_409_but_replacing_is_allowed() {
    let s = Server::start(&["--max-values-per-session", "2"]);
    let id = create(&s);
    assert_eq!(put(&s, &id, "a", b"1").status, 204);
    assert_eq!(put(&s, &id, "b", b"2").status, 204);
    assert_error(&put(&s, &id, "c", b"3"), 409, "too_many_values");
    assert_eq!(put(&s, &id, "a", b"replaced").status, 204);
    assert_eq!(attrs(&s, &id), map(&[("a", b"replaced"), ("b", b"2")]));
}

#[test]
fn put_empty_name_is_400_invalid_name() {
    let s = Server::start(&[]);
    let (id, want) = session_with_known_data(&s);
    assert_error(&put(&s, &id, "", b"v"), 400, "invalid_name");
    assert_eq!(attrs(&s, &id), want);
}

#[test]
fn put_name_over_max_name_size_is_400_and_at_the_limit_is_accepted() {
    let s = Server::start(&[]);
    let (id, mut want) = session_with_known_data(&s);
    assert_error(&put(&s, &id, &"n".repeat(65), b"v"), 400, "invalid_name");
    // The limit counts bytes after percent-decoding: 32 × "é" is 64 bytes.
    let e = "%C3%A9".repeat(32);
    assert_error(&put(&s, &id, &format!("{e}a"), b"v"), 400, "invalid_name");
    assert_eq!(attrs(&s, &id), want);
    assert_eq!(put(&s, &id, &"n".repeat(64), b"v").status, 204);
    assert_eq!(put(&s, &id, &e, b"w").status, 204);
    want.insert("n".repeat(64), b"v".to_vec());
    want.insert("é".repeat(32), b"w".to_vec());
    assert_eq!(attrs(&s, &id), want);
}

#[test]
fn delete_attribute_is_204_also_when_absent() {
    let s = Server::start(&[]);
    let id = create(&s);
    assert_eq!(put(&s, &id, "a", b"1").status, 204);
    assert_eq!(put(&s, &id, "b", b"2").status, 204);
    let u = sess_url(&s, &id, "/attributes/a");
    assert_eq!(request("DELETE", &u, &[], None).status, 204);
    assert_eq!(request("DELETE", &u, &[], None).status, 204, "absent is fine");
    assert_eq!(attrs(&s, &id), map(&[("b", b"2")]));
    assert_error(&get_attr(&s, &id, "a"), 404, "attribute_not_found");
}

#[test]
fn delete_session_is_204_then_404() {
    let s = Server::start(&[]);
    let id = create(&s);
    let r = request("DELETE", &sess_url(&s, &id, ""), &[], None);
    assert_eq!(r.status, 204);
    let (nv, a) = parse_set_cookie(r.header("set-cookie").expect("the cookie is expired"));
    assert_eq!(nv, "SESSIONID=");
    assert!(a.contains("max-age=0"), "{a:?}");
    assert_error(&request("GET", &sess_url(&s, &id, ""), &[], None), 404, "session_not_found");
    assert_error(&request("DELETE", &sess_url(&s, &id, ""), &[], None), 404, "session_not_found");
    assert_error(&put(&s, &id, "a", b"1"), 404, "session_not_found");
}

#[test]
fn rotate_gives_a_new_id_and_cookie_keeps_data_and_kills_the_old_id() {
    let s = Server::start(&[]);
    let (old, want) = session_with_known_data(&s);
    let r = request("POST", &sess_url(&s, &old, "/rotate"), &[], None);
    assert_eq!(r.status, 200, "{}", r.text());
    let new = r.json()["id"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    assert_eq!(new.len(), 36);
    let (nv, a) = parse_set_cookie(r.header("set-cookie").expect("Set-Cookie"));
    assert_eq!(nv, format!("SESSIONID={new}"));
    assert!(a.contains("httponly"));
    assert_eq!(attrs(&s, &new), want);
    let not_found = get(&sess_url(&s, "not-an-id", "")).body;
    for method in ["GET", "DELETE"] {
        let r = request(method, &sess_url(&s, &old, ""), &[], None);
        assert_error(&r, 404, "session_not_found");
        assert_eq!(r.body, not_found);
    }
    assert_error(&request("POST", &sess_url(&s, &old, "/rotate"), &[], None), 404, "session_not_found");
    assert_error(&put(&s, &old, "keep", b"overwrite"), 404, "session_not_found");
    assert_eq!(attrs(&s, &new), want);
}

#[test]
fn unknown_expired_forged_malformed_and_deleted_ids_get_the_same_404() {
    let s = Server::start(&["--timeout", "1"]);
    let live = create(&s);
    let expired = create(&s);
    let deleted = create(&s);
    assert_eq!(request("DELETE", &sess_url(&s, &deleted, ""), &[], None).status, 204);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(get(&sess_url(&s, &live, "")).status, 200);
    // `expired` was created over a second ago by the time it is read.
    std::thread::sleep(Duration::from_millis(1300));
    assert_eq!(get(&sess_url(&s, &live, "")).status, 404, "idle timeout is 1 s");
    let ids = [
        ("expired", expired.clone()),
        ("deleted", deleted.clone()),
        ("forged token", forge(&deleted)),
        ("other slot", with_slot(&deleted, 999_999)),
        ("unknown context", "A".repeat(36)),
        ("malformed", "not-a-session-id".to_string()),
        ("too long", format!("{deleted}A")),
        ("bad base64", format!("{}!", &deleted[..35])),
    ];
    let reference = get(&sess_url(&s, &expired, ""));
    assert_error(&reference, 404, "session_not_found");
    for (what, id) in &ids {
        for (method, rest) in [("GET", ""), ("DELETE", ""), ("POST", "/rotate"), ("GET", "/attributes/a")] {
            let r = request(method, &sess_url(&s, id, rest), &[], None);
            assert_eq!((r.status, &r.body), (404, &reference.body), "{what}: {method} {rest}");
        }
        assert_eq!(put(&s, id, "a", b"1").body, reference.body, "{what}: PUT");
        assert_eq!(patch(&s, id, br#"{"attributes":{"a":"1"}}"#).body, reference.body, "{what}: PATCH");
        let r = request("GET", &s.url("/v1/session"), &[("X-Session-Id", id)], None);
        assert_eq!((r.status, &r.body), (404, &reference.body), "{what}: current session");
    }
    // The client holding the expired cookie gets a fresh session.
    let r = request("POST", &s.url("/v1/session"), &[("Cookie", &format!("SESSIONID={expired}"))], None);
    assert_eq!(r.status, 201);
    assert_ne!(r.json()["id"], expired.as_str());
}

// ---------- the current session ----------

#[test]
fn current_session_is_found_by_cookie() {
    let s = Server::start(&[]);
    let id = create(&s);
    let cookie = format!("theme=dark; SESSIONID={id}; other=1");
    let h = [("Cookie", cookie.as_str())];
    let r = request("GET", &s.url("/v1/session"), &h, None);
    assert_eq!((r.status, &r.json()["id"]), (200, &json!(id)));
    assert_eq!(request("PUT", &s.url("/v1/session/attributes/cart"), &h, Some(b"3 apples")).status, 204);
    let r = request("GET", &s.url("/v1/session/attributes/cart"), &h, None);
    assert_eq!((r.status, r.body.as_slice()), (200, &b"3 apples"[..]));
    assert_eq!(request("PATCH", &s.url("/v1/session"), &h, Some(br#"{"attributes":{"n":"1"}}"#)).status, 204);
    assert_eq!(request("DELETE", &s.url("/v1/session/attributes/cart"), &h, None).status, 204);
    assert_eq!(attrs(&s, &id), map(&[("n", b"1")]));
    let r = request("DELETE", &s.url("/v1/session"), &h, None);
    assert_eq!(r.status, 204);
    assert!(r.header("set-cookie").unwrap().contains("Max-Age=0"), "{:?}", r.header("set-cookie"));
    assert_error(&request("GET", &s.url("/v1/session"), &h, None), 404, "session_not_found");
}

#[test]
fn current_session_is_found_by_url_rewriting() {
    let s = Server::start(&[]);
    let id = create(&s);
    let r = request("PUT", &s.url(&format!("/v1/session;sessionid={id}/attributes/cart")), &[], Some(b"2 pears"));
    assert_eq!(r.status, 204, "{}", r.text());
    let r = get(&s.url(&format!("/v1/session;sessionid={id}/attributes/cart")));
    assert_eq!((r.status, r.body.as_slice()), (200, &b"2 pears"[..]));
    // Servlet style: the parameter on the last segment.
    let r = get(&s.url(&format!("/v1/session/attributes/cart;sessionid={id}")));
    assert_eq!((r.status, r.body.as_slice()), (200, &b"2 pears"[..]));
    let r = get(&s.url(&format!("/v1/session;sessionid={id}")));
    assert_eq!((r.status, &r.json()["attributes"]), (200, &json!({"cart": "2 pears"})));
    let r = request("POST", &s.url(&format!("/v1/session;sessionid={id}")), &[], None);
    assert_eq!((r.status, &r.json()["id"]), (200, &json!(id)));
    // The wrong parameter name is not an id.
    assert_error(&get(&s.url(&format!("/v1/session;jsessionid={id}"))), 404, "session_not_found");
}

#[test]
fn current_session_is_found_by_x_session_id_header() {
    let s = Server::start(&[]);
    let id = create(&s);
    let h = [("X-Session-Id", id.as_str())];
    assert_eq!(request("PUT", &s.url("/v1/session/attributes/k"), &h, Some(&all_bytes())).status, 204);
    let r = request("GET", &s.url("/v1/session"), &h, None);
    assert_eq!((r.status, &r.json()["id"]), (200, &json!(id)));
    assert_eq!(request("GET", &s.url("/v1/session/attributes/k"), &h, None).body, all_bytes());
    assert_eq!(get_attr(&s, &id, "k").body, all_bytes());
}

#[test]
fn current_session_without_an_id_is_404() {
    let s = Server::start(&[]);
    create(&s);
    assert_error(&get(&s.url("/v1/session")), 404, "session_not_found");
    assert_error(&request("PUT", &s.url("/v1/session/attributes/a"), &[], Some(b"x")), 404, "session_not_found");
    assert_error(&request("POST", &s.url("/v1/session/rotate"), &[], None), 404, "session_not_found");
    assert_error(
        &request("GET", &s.url("/v1/session"), &[("Cookie", "SESSIONID=garbage")], None),
        404,
        "session_not_found",
    );
}

#[test]
fn cookie_header_with_non_ascii_bytes_in_other_cookies_still_finds_the_session() {
    let s = Server::start(&[]);
    let (id, want) = session_with_known_data(&s);
    // Another application on the same site set a UTF-8 (or Latin-1) cookie.
    for other in ["pref=caf\u{e9}".as_bytes(), b"pref=caf\xe9", b"\xff\xfe=\x80"] {
        let mut line = b"Cookie: ".to_vec();
        line.extend_from_slice(other);
        line.extend_from_slice(format!("; SESSIONID={id}").as_bytes());
        let mut req = b"GET /v1/session/attributes/note HTTP/1.1\r\nHost: test\r\nConnection: close\r\n".to_vec();
        req.extend_from_slice(&line);
        req.extend_from_slice(b"\r\n\r\n");
        let o = exchange(&s, &req, [], Duration::ZERO);
        let r = o.responses.first().unwrap_or_else(|| panic!("no response: {o:?}"));
        assert_eq!((r.status, r.body.as_slice()), (200, &b"intact"[..]), "{}", String::from_utf8_lossy(&r.body));
    }
    assert_eq!(attrs(&s, &id), want);
}

#[test]
fn stale_ids_do_not_hide_a_valid_one() {
    let s = Server::start(&[]);
    let id = create(&s);
    let gone = create(&s);
    assert_eq!(request("DELETE", &sess_url(&s, &gone, ""), &[], None).status, 204);
    let cookie = format!("SESSIONID={gone}; SESSIONID={id}");
    let r = request("GET", &s.url("/v1/session"), &[("Cookie", &cookie)], None);
    assert_eq!((r.status, &r.json()["id"]), (200, &json!(id)));
    let cookie = format!("SESSIONID={id}");
    let r = request(
        "GET",
        &s.url(&format!("/v1/session;sessionid={gone}")),
        &[("X-Session-Id", "junk"), ("Cookie", &cookie)],
        None,
    );
    assert_eq!((r.status, &r.json()["id"]), (200, &json!(id)));
}

#[test]
fn post_current_session_returns_the_live_one_or_creates_one() {
    let s = Server::start(&[]);
    let r = request("POST", &s.url("/v1/session"), &[], None);
    assert_eq!(r.status, 201);
    let id = r.json()["id"].as_str().unwrap().to_string();
    let (nv, a) = parse_set_cookie(r.header("set-cookie").expect("Set-Cookie on create"));
    assert_eq!(nv, format!("SESSIONID={id}"));
    assert!(a.contains("httponly") && a.contains("samesite=lax") && a.contains("path=/"), "{a:?}");
    assert_eq!(put(&s, &id, "a", b"1").status, 204);
    let cookie = format!("SESSIONID={id}");
    let r = request("POST", &s.url("/v1/session"), &[("Cookie", &cookie)], None);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["id"], id.as_str());
    assert_eq!(r.json()["attributes"], json!({"a": "1"}));
    // A stale cookie gets a fresh session.
    assert_eq!(request("DELETE", &sess_url(&s, &id, ""), &[], None).status, 204);
    let r = request("POST", &s.url("/v1/session"), &[("Cookie", &cookie)], None);
    assert_eq!(r.status, 201);
    let fresh = r.json()["id"].as_str().unwrap().to_string();
    assert_ne!(fresh, id);
    assert_eq!(r.json()["new"], true);
    assert!(r.header("set-cookie").unwrap().starts_with(&format!("SESSIONID={fresh}")));
}

#[test]
fn current_session_rotate_sets_the_new_cookie() {
    let s = Server::start(&[]);
    let (old, want) = session_with_known_data(&s);
    let cookie = format!("SESSIONID={old}");
    let r = request("POST", &s.url("/v1/session/rotate"), &[("Cookie", &cookie)], None);
    assert_eq!(r.status, 200, "{}", r.text());
    let new = r.json()["id"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    assert!(r.header("set-cookie").unwrap().starts_with(&format!("SESSIONID={new};")));
    assert_error(&request("GET", &s.url("/v1/session"), &[("Cookie", &cookie)], None), 404, "session_not_found");
    let r = request("GET", &s.url(&format!("/v1/session;sessionid={new}/attributes/keep")), &[], None);
    assert_eq!(r.body, all_bytes());
    assert_eq!(attrs(&s, &new), want);
}

// ---------- listing, contexts, routing ----------

#[test]
fn list_pages_through_every_session_without_values() {
    let s = Server::start(&[]);
    let mut want = BTreeSet::new();
    for _ in 0..5 {
        let id = create(&s);
        assert_eq!(put(&s, &id, "secret", b"do not list me").status, 204);
        want.insert(id);
    }
    let mut got = BTreeSet::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let q = match &cursor {
            Some(c) => format!("/v1/sessions?context=default&limit=2&cursor={c}"),
            None => "/v1/sessions?context=default&limit=2".to_string(),
        };
        let r = get(&s.url(&q));
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(!r.text().contains("do not list me"), "values never listed: {}", r.text());
        let j = r.json();
        let items = j["sessions"].as_array().unwrap();
        assert!(items.len() <= 2);
        for it in items {
            assert!(it.get("attributes").is_none(), "{it}");
            assert_eq!(it["values"], 1);
            assert_eq!(it["context"], "default");
            assert!(got.insert(it["id"].as_str().unwrap().to_string()), "listed twice: {it}");
        }
        pages += 1;
        match j["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => {
                assert!(j["next_cursor"].is_null());
                break;
            }
        }
        assert!(pages < 10, "paging does not end");
    }
    assert_eq!(got, want);
    assert_eq!(pages, 3);
}

#[test]
fn list_with_a_bad_limit_or_cursor_is_400() {
    let s = Server::start(&[]);
    create(&s);
    for l in ["0", "1001", "abc", "-1", "", "1e3"] {
        assert_error(&get(&s.url(&format!("/v1/sessions?limit={l}"))), 400, "bad_limit");
    }
    assert_error(&get(&s.url("/v1/sessions?cursor=xyz")), 400, "bad_cursor");
    assert_eq!(get(&s.url("/v1/sessions?limit=1000")).status, 200);
}

#[test]
fn contexts_lists_limits_and_live_counts() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sessiond.toml");
    std::fs::write(&cfg, "[[contexts]]\nname = \"admin\"\nmax_sessions = 50\nmax_values_per_session = 3\n").unwrap();
    let s = Server::start(&["--config", cfg.to_str().unwrap()]);
    create(&s);
    let admin_ids: Vec<String> = (0..2)
        .map(|_| {
            let r = request("POST", &s.url("/v1/sessions?context=admin"), &[], None);
            assert_eq!(r.status, 201);
            r.json()["id"].as_str().unwrap().to_string()
        })
        .collect();
    let r = get(&s.url("/v1/contexts"));
    assert_eq!(r.status, 200);
    let j = r.json();
    let list = j["contexts"].as_array().unwrap();
    let names: Vec<&str> = list.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["default", "admin"]);
    assert_eq!(
        (&list[0]["live"], &list[0]["max_sessions"], &list[0]["max_values_per_session"]),
        (&json!(1), &json!(1000), &json!(10))
    );
    assert_eq!(
        (&list[1]["live"], &list[1]["max_sessions"], &list[1]["max_values_per_session"]),
        (&json!(2), &json!(50), &json!(3))
    );
    assert_eq!(
        (&list[0]["max_value_size"], &list[0]["max_name_size"], &list[0]["timeout"]),
        (&json!(4096), &json!(64), &json!(1800))
    );
    // The live count follows deletes.
    assert_eq!(request("DELETE", &sess_url(&s, &admin_ids[0], ""), &[], None).status, 204);
    let j = get(&s.url("/v1/contexts")).json();
    assert_eq!((&j["contexts"][0]["live"], &j["contexts"][1]["live"]), (&json!(1), &json!(1)));
}

#[test]
fn configured_context_has_its_own_cookie_path_and_scope() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sessiond.toml");
    std::fs::write(&cfg, "[[contexts]]\nname = \"admin\"\ncookie_name = \"ADMINSID\"\ncookie_path = \"/admin\"\n")
        .unwrap();
    let s = Server::start(&["--config", cfg.to_str().unwrap()]);
    let r = request("POST", &s.url("/v1/sessions?context=admin"), &[], None);
    assert_eq!(r.status, 201);
    let id = r.json()["id"].as_str().unwrap().to_string();
    assert_eq!(r.json()["context"], "admin");
    let (nv, a) = parse_set_cookie(r.header("set-cookie").unwrap());
    assert_eq!(nv, format!("ADMINSID={id}"));
    assert!(a.contains("path=/admin") && a.contains("httponly"), "{a:?}");
    // By id, the id names its context.
    assert_eq!(peek(&s, &id)["context"], "admin");
    // As the current session, only in its own context.
    let ck = format!("ADMINSID={id}");
    let r = request("GET", &s.url("/v1/session?context=admin"), &[("Cookie", &ck)], None);
    assert_eq!((r.status, &r.json()["id"]), (200, &json!(id)));
    let r = request("GET", &s.url("/v1/session"), &[("X-Session-Id", &id)], None);
    assert_error(&r, 404, "session_not_found");
    let r = request("GET", &s.url("/v1/session?context=admin"), &[("Cookie", &format!("SESSIONID={id}"))], None);
    assert_error(&r, 404, "session_not_found");
}

#[test]
fn unknown_context_is_404_and_path_like_names_are_not_contexts() {
    let s = Server::start(&[]);
    for q in ["../etc", "..%2Fetc", "nope", "", "default%00"] {
        assert_error(&request("POST", &s.url(&format!("/v1/sessions?context={q}")), &[], None), 404, "unknown_context");
        assert_error(&get(&s.url(&format!("/v1/sessions?context={q}"))), 404, "unknown_context");
        assert_error(&request("POST", &s.url(&format!("/v1/session?context={q}")), &[], None), 404, "unknown_context");
    }
    let r = get(&s.url("/v1/contexts"));
    assert_eq!(r.json()["contexts"][0]["live"], 0, "nothing was created");
}

#[test]
fn wrong_method_on_a_known_path_is_405_with_allow() {
    let s = Server::start(&[]);
    let id = create(&s);
    let cases = [
        ("POST", "/healthz".to_string(), "GET"),
        ("DELETE", "/v1/contexts".to_string(), "GET"),
        ("PUT", "/v1/sessions".to_string(), "GET, POST"),
        ("PUT", format!("/v1/sessions/{id}"), "GET, PATCH, DELETE"),
        ("POST", format!("/v1/sessions/{id}"), "GET, PATCH, DELETE"),
        ("POST", format!("/v1/sessions/{id}/attributes/a"), "GET, PUT, DELETE"),
        ("GET", format!("/v1/sessions/{id}/rotate"), "POST"),
        ("PUT", "/v1/session".to_string(), "GET, POST, PATCH, DELETE"),
        ("GET", "/v1/session/rotate".to_string(), "POST"),
        ("PATCH", "/v1/session/attributes/a".to_string(), "GET, PUT, DELETE"),
    ];
    for (m, p, allow) in cases {
        let r = request(m, &s.url(&p), &[], None);
        assert_error(&r, 405, "method_not_allowed");
        assert_eq!(r.header("allow"), Some(allow), "{m} {p}");
    }
    assert_eq!(attrs(&s, &id), BTreeMap::new());
}

#[test]
fn unknown_path_is_404_json() {
    let s = Server::start(&[]);
    let id = create(&s);
    for p in [
        "/".to_string(),
        "/nope".to_string(),
        "/v1".to_string(),
        "/v2/sessions".to_string(),
        format!("/v1/sessions/{id}/attributes"),
        format!("/v1/sessions/{id}/attributes/a/b"),
        "/a/b/c/d/e/f/g/h/i/j".to_string(),
    ] {
        assert_error(&get(&s.url(&p)), 404, "route_not_found");
    }
}

// ---------- names: percent-encoding tricks ----------

#[test]
fn name_with_percent_00_is_400_and_session_intact() {
    let s = Server::start(&[]);
    let (id, want) = session_with_known_data(&s);
    assert_error(&put(&s, &id, "a%00b", b"v"), 400, "invalid_name");
    assert_error(&put(&s, &id, "keep%00", b"v"), 400, "invalid_name");
    assert_error(&put(&s, &id, "%0A", b"v"), 400, "invalid_name");
    assert_error(&get_attr(&s, &id, "keep%00"), 400, "invalid_name");
    assert_error(&request("DELETE", &sess_url(&s, &id, "/attributes/keep%00"), &[], None), 400, "invalid_name");
    assert_eq!(attrs(&s, &id), want);
}

#[test]
fn name_with_encoded_slash_is_one_name() {
    let s = Server::start(&[]);
    let (id, mut want) = session_with_known_data(&s);
    assert_eq!(put(&s, &id, "a%2Fb", b"slash").status, 204);
    assert_eq!(get_attr(&s, &id, "a%2fb").body, b"slash", "hex case does not matter");
    want.insert("a/b".into(), b"slash".to_vec());
    assert_eq!(attrs(&s, &id), want);
    // An unencoded slash is another path, not this name.
    assert_error(&put(&s, &id, "a/b", b"x"), 404, "route_not_found");
    assert_eq!(attrs(&s, &id), want);
}

#[test]
fn overlong_utf8_name_is_400() {
    let s = Server::start(&[]);
    let (id, want) = session_with_known_data(&s);
    for n in ["%C0%AF", "a%C0%AFb", "%E0%80%AF", "%ED%A0%80"] {
        assert_error(&put(&s, &id, n, b"v"), 400, "invalid_name");
    }
    assert_eq!(attrs(&s, &id), want);
}

#[test]
fn non_utf8_name_is_400() {
    let s = Server::start(&[]);
    let (id, want) = session_with_known_data(&s);
    for n in ["%FF", "keep%FF", "%C3", "%80"] {
        assert_error(&put(&s, &id, n, b"v"), 400, "invalid_name");
        assert_error(&get_attr(&s, &id, n), 400, "invalid_name");
    }
    assert_eq!(attrs(&s, &id), want);
}

#[test]
fn names_are_percent_decoded_exactly_once() {
    let s = Server::start(&[]);
    let id = create(&s);
    assert_eq!(put(&s, &id, "a%2541", b"1").status, 204);
    assert_eq!(put(&s, &id, "a%3Bb", b"2").status, 204);
    assert_eq!(put(&s, &id, "caf%C3%A9", b"3").status, 204);
    assert_eq!(put(&s, &id, "sp%20ace", b"4").status, 204);
    assert_eq!(attrs(&s, &id), map(&[("a%41", b"1"), ("a;b", b"2"), ("café", b"3"), ("sp ace", b"4")]));
    assert_error(&get_attr(&s, &id, "aA"), 404, "attribute_not_found");
    assert_eq!(get_attr(&s, &id, "a%2541").body, b"1");
    assert_eq!(get_attr(&s, &id, "caf%c3%a9").body, b"3");
}

// ---------- hostile PATCH bodies ----------

#[test]
fn patch_body_over_the_bound_is_413_and_session_intact() {
    let s = Server::start(&[]);
    let (id, want) = session_with_known_data(&s);
    // The bound for the defaults is about 490 KiB; send 1 MiB.
    let mut body = br#"{"attributes": {"keep": ""#.to_vec();
    body.extend(std::iter::repeat_n(b'x', 1 << 20));
    body.extend_from_slice(br#""}}"#);
    let h = head("PATCH", &format!("/v1/sessions/{id}"), &[format!("Content-Length: {}", body.len())]);
    let chunks: Vec<Vec<u8>> = body.chunks(16 * 1024).map(<[u8]>::to_vec).collect();
    let o = exchange(&s, &h, chunks, Duration::ZERO);
    assert_eq!(o.first_status(), Some(413), "{o:?}");
    let j: Value = serde_json::from_slice(&o.responses[0].body).unwrap();
    assert_eq!(j["error"], "body_too_large");
    assert_eq!(o.responses[0].header("content-type"), Some("application/json"));
    assert_eq!(attrs(&s, &id), want);
}

#[test]
fn patch_deeply_nested_json_is_400_and_session_intact() {
    let s = Server::start(&[]);
    let (id, want) = session_with_known_data(&s);
    let deep = "[".repeat(10_000);
    for body in [deep.clone(), format!(r#"{{"attributes": {{"keep": {deep}"#), format!(r#"{{"attributes": {deep}"#)] {
        assert_error(&patch(&s, &id, body.as_bytes()), 400, "bad_json");
    }
    let closed = format!(r#"{{"attributes": {{"keep": {}{}}}}}"#, "[".repeat(10_000), "]".repeat(10_000));
    assert_error(&patch(&s, &id, closed.as_bytes()), 400, "bad_json");
    assert_eq!(attrs(&s, &id), want);
}

#[test]
fn patch_duplicate_attribute_names_are_400_and_nothing_applied() {
    let s = Server::start(&[]);
    let (id, want) = session_with_known_data(&s);
    for body in [
        r#"{"attributes": {"a": "1", "a": "2"}}"#,
        r#"{"attributes": {"keep": "1", "note": null, "keep": null}}"#,
        r#"{"attributes": {"a": "1"}, "attributes": {"b": "2"}}"#,
    ] {
        assert_error(&patch(&s, &id, body.as_bytes()), 400, "bad_json");
    }
    assert_eq!(attrs(&s, &id), want);
}

#[test]
fn patch_malformed_bodies_are_400_and_nothing_applied() {
    let s = Server::start(&[]);
    let (id, want) = session_with_known_data(&s);
    let bad_json = [
        "",
        "not json",
        "{}",
        "[]",
        r#"{"attributes": []}"#,
        r#"{"attributes": {"a": 1}}"#,
        r#"{"attributes": {"a": true}}"#,
        r#"{"attributes": {"a": ["x"]}}"#,
        r#"{"attributes": {"a": {"base64": "!!!"}}}"#,
        r#"{"attributes": {"a": {"base64": 5}}}"#,
        r#"{"attributes": {"a": {"base64": "AA==", "x": 1}}}"#,
        r#"{"attributes": {"a": {}}}"#,
        r#"{"attributes": {"a": "x"}, "extra": 1}"#,
        r#"{"attributes": {"a": "x"}} trailing"#,
        r#"{"attributes": {"a": "\ud800"}}"#,
    ];
    for body in bad_json {
        assert_error(&patch(&s, &id, body.as_bytes()), 400, "bad_json");
    }
    let too_long = format!(r#"{{"attributes": {{"a": "1", "{}": "x"}}}}"#, "n".repeat(65));
    for body in [r#"{"attributes": {"a": "1", "b\u0000": "x"}}"#, r#"{"attributes": {"a": "1", "": "x"}}"#, &too_long] {
        assert_error(&patch(&s, &id, body.as_bytes()), 400, "invalid_name");
    }
    let many: Vec<String> = (0..4097).map(|i| format!(r#""n{i}": null"#)).collect();
    let many = format!(r#"{{"attributes": {{{}}}}}"#, many.join(", "));
    assert_error(&patch(&s, &id, many.as_bytes()), 400, "bad_json");
    let big = format!(r#"{{"attributes": {{"a": "1", "keep": "{}"}}}}"#, "v".repeat(4097));
    assert_error(&patch(&s, &id, big.as_bytes()), 413, "value_too_large");
    assert_eq!(attrs(&s, &id), want);
}

// ---------- hostile heads and bodies on raw connections ----------

#[test]
fn headers_over_the_cap_are_431_and_session_intact() {
    let s = Server::start(&[]);
    let (id, want) = session_with_known_data(&s);
    let h = head("GET", &format!("/v1/sessions/{id}"), &[format!("X-Pad: {}", "a".repeat(32 * 1024))]);
    let o = exchange(&s, &h, [], Duration::ZERO);
    assert_eq!(o.first_status(), Some(431), "{o:?}");
    // The same, spread over many header lines and ending in a cookie.
    let mut lines: Vec<String> = (0..40).map(|i| format!("X-Pad-{i}: {}", "b".repeat(500))).collect();
    lines.push(format!("Cookie: SESSIONID={id}"));
    let o = exchange(&s, &head("DELETE", "/v1/session", &lines), [], Duration::ZERO);
    assert_eq!(o.first_status(), Some(431), "{o:?}");
    // Small, but too many header lines (hyper allows 100).
    let mut lines: Vec<String> = (0..150).map(|i| format!("X-Session-Id: junk{i}")).collect();
    lines.push(format!("Cookie: SESSIONID={id}"));
    let o = exchange(&s, &head("DELETE", "/v1/session", &lines), [], Duration::ZERO);
    assert_eq!(o.first_status(), Some(431), "{o:?}");
    assert_eq!(attrs(&s, &id), want);
}

#[test]
fn headers_under_the_cap_are_accepted() {
    let s = Server::start(&[]);
    let (id, want) = session_with_known_data(&s);
    let cookie = format!("junk={}; SESSIONID={id}", "c".repeat(10 * 1024));
    let r = request("GET", &s.url("/v1/session/attributes/keep"), &[("Cookie", &cookie)], None);
    assert_eq!((r.status, &r.body), (200, &all_bytes()));
    assert_eq!(attrs(&s, &id), want);
}

#[test]
fn header_cap_follows_max_header_size() {
    let s = Server::start(&["--set", "max_header_size=8192"]);
    let (id, want) = session_with_known_data(&s);
    let ok = head(
        "GET",
        &format!("/v1/sessions/{id}?touch=false"),
        &[format!("X-Pad: {}", "a".repeat(6 * 1024)), "Connection: close".into()],
    );
    let o = exchange(&s, &ok, [], Duration::ZERO);
    assert_eq!(o.first_status(), Some(200), "{o:?}");
    let big = head("GET", &format!("/v1/sessions/{id}"), &[format!("X-Pad: {}", "a".repeat(10 * 1024))]);
    let o = exchange(&s, &big, [], Duration::ZERO);
    assert_eq!(o.first_status(), Some(431), "{o:?}");
    assert_eq!(attrs(&s, &id), want);
}

#[test]
fn oversized_request_target_is_refused_with_4xx() {
    let s = Server::start(&[]);
    let (id, want) = session_with_known_data(&s);
    let h = head("GET", &format!("/v1/sessions/{id}/attributes/{}", "n".repeat(32 * 1024)), &[]);
    let o = exchange(&s, &h, [], Duration::ZERO);
    assert!(matches!(o.first_status(), Some(414 | 431)), "{o:?}");
    assert_eq!(attrs(&s, &id), want);
}

#[test]
fn expect_continue_with_an_oversized_length_is_413_without_inviting_the_body() {
    let s = Server::start(&[]);
    let (id, want) = session_with_known_data(&s);
    let h = head(
        "PUT",
        &format!("/v1/sessions/{id}/attributes/keep"),
        &["Content-Length: 100000".into(), "Expect: 100-continue".into()],
    );
    let o = exchange(&s, &h, [], Duration::ZERO);
    assert_eq!(o.first_status(), Some(413), "no 100 Continue for a body that will be refused: {o:?}");
    assert_eq!(attrs(&s, &id), want);
}

#[test]
fn chunked_value_body_that_never_ends_is_413_or_closed_and_session_intact() {
    let s = Server::start(&[]);
    let (id, want) = session_with_known_data(&s);
    let h = head("PUT", &format!("/v1/sessions/{id}/attributes/keep"), &["Transfer-Encoding: chunked".into()]);
    let o = exchange(&s, &h, endless_chunks(b'z', 8 * 1024), Duration::ZERO);
    assert_refused_too_large(&o);
    assert_eq!(attrs(&s, &id), want);
}

#[test]
fn chunked_patch_body_that_never_ends_is_413_or_closed_and_session_intact() {
    let s = Server::start(&[]);
    let (id, want) = session_with_known_data(&s);
    let h = head("PATCH", &format!("/v1/sessions/{id}"), &["Transfer-Encoding: chunked".into()]);
    let start = br#"{"attributes": {"keep": ""#;
    let first = [format!("{:x}\r\n", start.len()).into_bytes(), start.to_vec(), b"\r\n".to_vec()].concat();
    let o = exchange(&s, &h, std::iter::once(first).chain(endless_chunks(b'z', 8 * 1024)), Duration::ZERO);
    assert_refused_too_large(&o);
    assert_eq!(attrs(&s, &id), want);
}

#[test]
fn content_length_larger_than_sent_is_408_or_closed_after_request_timeout() {
    let s = Server::start(&["--set", "request_timeout=1"]);
    let (id, want) = session_with_known_data(&s);
    let h = head("PUT", &format!("/v1/sessions/{id}/attributes/keep"), &["Content-Length: 1000".into()]);
    let o = exchange(&s, &h, [vec![b'p'; 10]], Duration::ZERO);
    o.assert_no_5xx();
    match o.first_status() {
        Some(st) => assert_eq!(st, 408, "{o:?}"),
        None => assert_ne!(o.end, End::TimedOut, "the server waited longer than request_timeout: {o:?}"),
    }
    if let Some(r) = o.responses.first() {
        assert_eq!(serde_json::from_slice::<Value>(&r.body).unwrap()["error"], "body_timeout");
    }
    assert_eq!(attrs(&s, &id), want);
}

#[test]
fn slow_body_is_408_after_request_timeout() {
    let s = Server::start(&["--set", "request_timeout=1"]);
    let (id, want) = session_with_known_data(&s);
    let h = head("PATCH", &format!("/v1/sessions/{id}"), &["Content-Length: 30".into()]);
    // 30 bytes, one every 200 ms: six seconds in all, far past the limit.
    let body = br#"{"attributes":{"keep":"slow"}}"#;
    assert_eq!(body.len(), 30);
    let o = exchange(&s, &h, body.iter().map(|b| vec![*b]), Duration::from_millis(200));
    assert_eq!(o.first_status(), Some(408), "{o:?}");
    assert_eq!(serde_json::from_slice::<Value>(&o.responses[0].body).unwrap()["error"], "body_timeout");
    assert_eq!(attrs(&s, &id), want);
}

#[test]
fn content_length_smaller_than_sent_stores_only_the_declared_bytes() {
    let s = Server::start(&[]);
    let (id, mut want) = session_with_known_data(&s);
    let mut req = head("PUT", &format!("/v1/sessions/{id}/attributes/short"), &["Content-Length: 5".into()]);
    req.extend_from_slice(b"hello\x00\x01 these bytes are not a request\r\n\r\n");
    let o = exchange(&s, &req, [], Duration::ZERO);
    o.assert_no_5xx();
    assert_eq!(o.first_status(), Some(204), "{o:?}");
    if let Some(second) = o.responses.get(1) {
        assert_eq!(second.status, 400, "the excess bytes are a bad request: {o:?}");
    }
    assert_ne!(o.end, End::TimedOut, "the server closes after the bad bytes: {o:?}");
    want.insert("short".into(), b"hello".to_vec());
    assert_eq!(attrs(&s, &id), want);
}

#[test]
fn conflicting_content_lengths_are_400_and_nothing_stored() {
    let s = Server::start(&[]);
    let (id, want) = session_with_known_data(&s);
    let mut req = head(
        "PUT",
        &format!("/v1/sessions/{id}/attributes/keep"),
        &["Content-Length: 3".into(), "Content-Length: 5".into()],
    );
    req.extend_from_slice(b"abcde");
    let o = exchange(&s, &req, [], Duration::ZERO);
    assert_eq!(o.first_status(), Some(400), "{o:?}");
    assert_eq!(attrs(&s, &id), want);
}

// ---------- many clients, two workers ----------

/// The value thread `t` writes to attribute `k` in round `round`: a readable
/// tag, then all 256 byte values shifted by a per-write amount.
fn payload(t: usize, k: usize, round: usize) -> Vec<u8> {
    let mut v = format!("t{t}k{k}r{round}:").into_bytes();
    let shift = (t * 31 + k * 7 + round * 13) as u8;
    v.extend((0..=255u8).map(|b| b.wrapping_add(shift)));
    v
}

/// Checks that `v` is exactly some `payload(t, k, round)`; returns `round`.
fn check_payload(v: &[u8], t: usize, k: usize) -> usize {
    let colon = v.iter().position(|&b| b == b':').unwrap_or_else(|| panic!("no tag in {v:?}"));
    let tag = std::str::from_utf8(&v[..colon]).unwrap();
    let round: usize = tag.rsplit_once('r').unwrap().1.parse().unwrap();
    assert_eq!(v, payload(t, k, round).as_slice(), "torn or foreign value, tag {tag}");
    round
}

#[test]
fn concurrent_clients_across_workers_see_every_acknowledged_write() {
    const THREADS: usize = 16;
    const PER_THREAD: usize = 2;
    const KEYS: usize = 2;
    const ROUNDS: usize = 20;
    let s = Server::start(&[]); // the harness runs two workers
    assert_eq!(s.children("sessiond: worker").len(), 2);
    let ids: Mutex<Vec<Option<String>>> = Mutex::new(vec![None; THREADS * PER_THREAD]);
    // acked[session * KEYS + k] = last acknowledged round + 1 (0 = none yet).
    let acked: Vec<AtomicUsize> = (0..THREADS * PER_THREAD * KEYS).map(|_| AtomicUsize::new(0)).collect();
    let barrier = Barrier::new(THREADS);
    std::thread::scope(|sc| {
        for t in 0..THREADS {
            let (s, ids, acked, barrier) = (&s, &ids, &acked, &barrier);
            sc.spawn(move || {
                for j in 0..PER_THREAD {
                    ids.lock().unwrap()[t * PER_THREAD + j] = Some(create(s));
                }
                barrier.wait();
                let all: Vec<String> = ids.lock().unwrap().iter().map(|i| i.clone().unwrap()).collect();
                for round in 0..ROUNDS {
                    for j in 0..PER_THREAD {
                        let sess = t * PER_THREAD + j;
                        for k in 0..KEYS {
                            let v = payload(t, k, round);
                            let r = put(s, &all[sess], &format!("k{k}"), &v);
                            assert_eq!(r.status, 204, "t{t} PUT: {}", r.text());
                            acked[sess * KEYS + k].store(round + 1, Ordering::SeqCst);
                            let r = get_attr(s, &all[sess], &format!("k{k}"));
                            assert_eq!((r.status, &r.body), (200, &v), "t{t} reads its own write");
                        }
                    }
                    // Read another thread's session: every value is whole, and
                    // no older than the last write acknowledged before the read.
                    let other = (t + 1 + round) % THREADS;
                    let sess = other * PER_THREAD + round % PER_THREAD;
                    let floors: Vec<usize> = (0..KEYS).map(|k| acked[sess * KEYS + k].load(Ordering::SeqCst)).collect();
                    let r = request("GET", &sess_url(s, &all[sess], "?touch=false"), &[], None);
                    assert_eq!(r.status, 200, "t{t} reads t{other}: {}", r.text());
                    let a = r.json()["attributes"].clone();
                    for (k, floor) in floors.into_iter().enumerate() {
                        match a.get(format!("k{k}")) {
                            Some(v) => {
                                let seen = check_payload(&value_bytes(v), other, k);
                                assert!(seen + 1 >= floor, "stale read: round {seen} after {floor} was acked");
                            }
                            None => assert_eq!(floor, 0, "an acknowledged write vanished"),
                        }
                    }
                }
            });
        }
    });
    let all: Vec<String> = ids.into_inner().unwrap().into_iter().map(Option::unwrap).collect();
    assert_eq!(all.iter().collect::<BTreeSet<_>>().len(), THREADS * PER_THREAD, "ids are unique");
    for (sess, id) in all.iter().enumerate() {
        let t = sess / PER_THREAD;
        let want: BTreeMap<String, Vec<u8>> = (0..KEYS).map(|k| (format!("k{k}"), payload(t, k, ROUNDS - 1))).collect();
        assert_eq!(attrs(&s, id), want, "session {sess}");
        for k in 0..KEYS {
            assert_eq!(get_attr(&s, id, &format!("k{k}")).body, payload(t, k, ROUNDS - 1));
        }
    }
}
