//! Lifecycle events end to end: the real server, a real webhook receiver
//! (a small HTTP/1.1 server in the test), Standard Webhooks signatures
//! checked independently with hmac + sha2.

mod common;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::*;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

const SECRET: &[u8] = b"test-webhook-secret-0123456789";

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Hook {
    id: String,
    timestamp: String,
    signature: String,
    body: Vec<u8>,
}

impl Hook {
    fn events(&self) -> Vec<Value> {
        let v: Value = serde_json::from_slice(&self.body).expect("webhook body is JSON");
        v["events"].as_array().expect("an events array").clone()
    }

    /// Checks the signature the Standard Webhooks way, independently of
    /// sessiond's own code.
    fn verify(&self) -> bool {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(SECRET).unwrap();
        m.update(format!("{}.{}.", self.id, self.timestamp).as_bytes());
        m.update(&self.body);
        let want = format!("v1,{}", STANDARD.encode(m.finalize().into_bytes()));
        self.signature.split(' ').any(|s| s == want)
    }
}

/// A webhook receiver: answers each request with the next scripted status
/// (204 when the script is empty), or never answers when `hang` is set.
struct Receiver {
    port: u16,
    got: Arc<Mutex<Vec<Hook>>>,
}

impl Receiver {
    fn start(script: Vec<u16>, hang: bool) -> Receiver {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let g = got.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(conn) = conn else { continue };
                let (g, script) = (g.clone(), script.clone());
                std::thread::spawn(move || serve(conn, g, script, hang));
            }
        });
        Receiver { port, got }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    fn hooks(&self) -> Vec<Hook> {
        self.got.lock().unwrap().clone()
    }

    /// Every event received so far, in arrival order.
    fn events(&self) -> Vec<Value> {
        self.hooks().iter().flat_map(|h| h.events()).collect()
    }

    fn wait_events(&self, pred: impl Fn(&[Value]) -> bool, what: &str) -> Vec<Value> {
        let t = Instant::now();
        loop {
            let ev = self.events();
            if pred(&ev) {
                return ev;
            }
            assert!(t.elapsed() < Duration::from_secs(20), "timed out waiting for {what}; got {ev:#?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn serve(conn: TcpStream, got: Arc<Mutex<Vec<Hook>>>, script: Arc<Mutex<VecDeque<u16>>>, hang: bool) {
    let mut r = BufReader::new(conn.try_clone().unwrap());
    let mut w = conn;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end().to_string();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let hv = |k: &str| headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
        let len: usize = hv("content-length").parse().unwrap_or(0);
        let mut body = vec![0u8; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        got.lock().unwrap().push(Hook {
            id: hv("webhook-id"),
            timestamp: hv("webhook-timestamp"),
            signature: hv("webhook-signature"),
            body,
        });
        if hang {
            std::thread::sleep(Duration::from_secs(3600));
            return;
        }
        let status = script.lock().unwrap().pop_front().unwrap_or(204);
        let _ = write!(w, "HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n");
    }
}

/// A config file with an `[events]` table and a 0600 secret file.
fn events_config(dir: &std::path::Path, url: &str, extra: &str) -> String {
    let secret = dir.join("hook.secret");
    std::fs::write(&secret, SECRET).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let cfg = dir.join("sessiond.toml");
    std::fs::write(&cfg, format!("[events]\nurl = \"{url}\"\nsecret_file = \"{}\"\n{extra}\n", secret.display()))
        .unwrap();
    cfg.display().to_string()
}

fn types(ev: &[Value]) -> Vec<String> {
    ev.iter().map(|e| e["type"].as_str().unwrap_or("?").to_string()).collect()
}

#[test]
fn webhook_receives_signed_batches_for_every_lifecycle_change_in_order() {
    let rx = Receiver::start(vec![], false);
    let tmp = tempfile::tempdir().unwrap();
    let cfg = events_config(tmp.path(), &rx.url(), "include_touched = true");
    let s = Server::start(&["--config", &cfg, "--max-procs", "1"]);
    let id = create(&s);
    let r = request(
        "PATCH",
        &s.url(&format!("/v1/sessions/{id}")),
        &[],
        Some(br#"{"attributes":{"user":"alice","cart":null}}"#),
    );
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(get(&s.url(&format!("/v1/sessions/{id}"))).status, 200);
    let r = request("POST", &s.url(&format!("/v1/sessions/{id}/rotate")), &[], None);
    assert_eq!(r.status, 200);
    let new = r.json()["id"].as_str().unwrap().to_string();
    assert_eq!(request("DELETE", &s.url(&format!("/v1/sessions/{new}")), &[], None).status, 204);

    let ev = rx.wait_events(|e| e.len() >= 5, "five events");
    assert_eq!(
        types(&ev),
        ["session.created", "session.changed", "session.touched", "session.rotated", "session.invalidated"]
    );
    // Every batch is signed; ids differ per batch.
    let hooks = rx.hooks();
    assert!(hooks.iter().all(Hook::verify), "a batch failed signature verification: {hooks:?}");
    assert!(hooks.iter().all(|h| h.id.starts_with("msg_") && h.timestamp.parse::<i64>().is_ok()));
    // The same session key until the rotation, then the new one, which the
    // rotated event links to the old one.
    let key = ev[0]["session"].as_str().unwrap();
    assert_eq!((ev[1]["session"].as_str(), ev[2]["session"].as_str()), (Some(key), Some(key)));
    assert_eq!(ev[3]["previous"].as_str(), Some(key));
    assert_ne!(ev[3]["session"].as_str(), Some(key));
    assert_eq!(ev[4]["session"], ev[3]["session"]);
    assert_eq!(ev[1]["names"], serde_json::json!(["user", "cart"]));
    // Change sequence numbers rise; the context is named.
    let seq = |i: usize| ev[i]["seq"].as_u64().unwrap();
    assert!(seq(0) < seq(1) && seq(1) < seq(3) && seq(3) < seq(4), "{ev:#?}");
    assert!(ev.iter().all(|e| e["context"] == "default"));
    // No event, header or body carries a full session id.
    for h in &hooks {
        let body = String::from_utf8_lossy(&h.body);
        assert!(!body.contains(&id) && !body.contains(&new), "a session id leaked into a webhook: {body}");
    }
}

#[test]
fn webhook_retries_after_a_500_with_the_same_message_id() {
    let rx = Receiver::start(vec![500], false);
    let tmp = tempfile::tempdir().unwrap();
    let cfg = events_config(tmp.path(), &rx.url(), "");
    let s = Server::start(&["--config", &cfg, "--max-procs", "1"]);
    create(&s);
    let t = Instant::now();
    while rx.hooks().len() < 2 {
        assert!(t.elapsed() < Duration::from_secs(20), "no retry after the 500: {:?}", rx.hooks());
        std::thread::sleep(Duration::from_millis(20));
    }
    let hooks = rx.hooks();
    assert_eq!(hooks[0].id, hooks[1].id, "a retry keeps the webhook-id");
    assert_eq!(hooks[0].body, hooks[1].body);
    assert!(hooks[0].verify() && hooks[1].verify());
    assert_eq!(types(&hooks[1].events()), ["session.created"]);
    // The metrics count the failed attempt and the delivery.
    let t = Instant::now();
    loop {
        let m = get(&s.url("/metrics")).text();
        let v = |name: &str| {
            m.lines()
                .find(|l| l.starts_with(&format!("{name} ")))
                .and_then(|l| l.split(' ').nth(1)?.parse::<u64>().ok())
        };
        if v("sessiond_webhook_failed_attempts_total") == Some(1)
            && v("sessiond_webhook_delivered_events_total") == Some(1)
        {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "metrics never showed 1 failed attempt and 1 delivery:\n{m}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_dead_webhook_receiver_never_holds_up_a_request_and_a_full_queue_drops_and_counts() {
    // The receiver reads each POST and never answers; attempts time out
    // after 60 s, so deliveries stall for the whole test.
    let rx = Receiver::start(vec![], true);
    let tmp = tempfile::tempdir().unwrap();
    let cfg = events_config(tmp.path(), &rx.url(), "timeout = 60\nqueue_size = 16\nmax_batch = 1");
    let s = Server::start(&["--config", &cfg, "--max-procs", "1"]);
    // Every request completes: with a blocking hand-off the first stalled
    // delivery would hold them all (the client gives up after 10 s).
    for i in 0..400 {
        let r = request("POST", &s.url("/v1/sessions"), &[], None);
        assert_eq!(r.status, 201, "request {i} failed while the webhook receiver was dead: {}", r.text());
    }
    assert!(!rx.hooks().is_empty(), "the receiver saw the first POST");
    let m = get(&s.url("/metrics")).text();
    let v = |name: &str| {
        m.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .and_then(|l| l.split(' ').nth(1)?.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{m}"))
    };
    assert_eq!(v("sessiond_webhook_delivered_events_total"), 0);
    assert!(v("sessiond_events_published_total") >= 16, "{m}");
    // 400 events into a backlog of 16 one-event batches behind a stalled
    // POST: the webhook must have dropped (and counted) most of them.
    let dropped = v("sessiond_webhook_dropped_events_total") + v("sessiond_events_dropped_total");
    assert!(dropped >= 300, "expected most of 400 events dropped and counted, got {dropped}:\n{m}");
}

#[test]
fn expiries_from_the_reaper_reach_the_webhook() {
    let rx = Receiver::start(vec![], false);
    let tmp = tempfile::tempdir().unwrap();
    let cfg = events_config(tmp.path(), &rx.url(), "");
    let s = Server::start(&["--config", &cfg, "--max-procs", "1", "--set", "timeout=1", "--set", "reap_interval=1"]);
    create(&s);
    let ev = rx.wait_events(|e| types(e).contains(&"session.expired".to_string()), "an expired event");
    let created = ev.iter().find(|e| e["type"] == "session.created").unwrap();
    let expired = ev.iter().find(|e| e["type"] == "session.expired").unwrap();
    assert_eq!(created["session"], expired["session"]);
    assert!(expired["seq"].as_u64() > created["seq"].as_u64());
}

#[test]
fn a_world_readable_secret_file_stops_startup_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = events_config(tmp.path(), "http://127.0.0.1:9/hook", "");
    std::fs::set_permissions(tmp.path().join("hook.secret"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = std::process::Command::new(sessiond_bin()).args(["--config", &cfg, "--check-config"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("events.secret_file") && err.contains("chmod"), "{err}");
    assert!(!err.contains(std::str::from_utf8(SECRET).unwrap()), "the secret leaked: {err}");
}
