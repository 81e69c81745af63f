//! The session model frameworks need (issue 16), against the real binary:
//! per-session timeouts and deadlines with their bounds and a reload that
//! keeps them, versions (`ETag`, 304, 412) across two workers, merges that
//! keep concurrent changes, touch, sessions by principal ("log out
//! everywhere"), and the per-principal cap under both policies, the
//! gateway's login included.

mod common;

use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

fn url(s: &Server, path: &str) -> String {
    s.url(path)
}

fn post_json(s: &Server, path: &str, body: &Value) -> Resp {
    let b = body.to_string();
    request("POST", &url(s, path), &[("Content-Type", "application/json")], Some(b.as_bytes()))
}

fn patch(s: &Server, id: &str, body: &Value, headers: &[(&str, &str)]) -> Resp {
    let b = body.to_string();
    let mut h = vec![("Content-Type", "application/json")];
    h.extend_from_slice(headers);
    request("PATCH", &url(s, &format!("/v1/sessions/{id}")), &h, Some(b.as_bytes()))
}

fn peek(s: &Server, id: &str) -> Resp {
    request("GET", &url(s, &format!("/v1/sessions/{id}?touch=false")), &[], None)
}

fn create_with(s: &Server, body: &Value) -> Value {
    let r = post_json(s, "/v1/sessions", body);
    assert_eq!(r.status, 201, "{}", r.text());
    assert!(r.header("etag").is_some(), "a create answers with the ETag");
    r.json()
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

#[test]
fn own_timeouts_expire_on_time_both_ways_and_show_in_the_json() {
    // The context's timeout is 3 s; one session asks for 1 s, one for 30 s.
    let s = Server::start(&["--set", "sessions.timeout=3", "--set", "sessions.reap_interval=1"]);
    let short = create_with(&s, &json!({"timeout": 1}));
    let long = create_with(&s, &json!({"timeout": 30, "attributes": {"k": "v"}}));
    let plain = create_with(&s, &json!({}));
    assert_eq!((short["timeout"].as_u64(), short["timeout_override"].as_u64()), (Some(1), Some(1)));
    assert_eq!(long["attributes"]["k"], "v", "a create may carry its first attributes");
    assert_eq!((plain["timeout"].as_u64(), plain["timeout_override"].clone()), (Some(3), Value::Null));
    std::thread::sleep(Duration::from_millis(1600));
    assert_eq!(peek(&s, &id_of(&short)).status, 404, "1 s timeout, idle 1.6 s");
    assert_eq!(peek(&s, &id_of(&plain)).status, 200, "the context's 3 s still holds");
    std::thread::sleep(Duration::from_millis(3000));
    assert_eq!(peek(&s, &id_of(&plain)).status, 404, "the context's 3 s ran out");
    assert_eq!(peek(&s, &id_of(&long)).status, 200, "30 s outlives the context's 3 s");

    // A deadline ends a session whatever its activity; PATCH sets one later.
    let dl = create_with(&s, &json!({}));
    let soon = humantime::format_rfc3339_millis(std::time::SystemTime::now() + Duration::from_millis(1500));
    let r = patch(&s, &id_of(&dl), &json!({"deadline": soon.to_string()}), &[]);
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(peek(&s, &id_of(&dl)).json()["deadline"].as_str().map(|d| &d[..19]), Some(&soon.to_string()[..19]));
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(500));
        let _ = request("POST", &url(&s, &format!("/v1/sessions/{}/touch", id_of(&dl))), &[], None);
    }
    assert_eq!(peek(&s, &id_of(&dl)).status, 404, "past its deadline, touches or not");

    // null goes back to the context's value.
    let r = patch(&s, &id_of(&long), &json!({"timeout": null}), &[]);
    assert_eq!(r.status, 204);
    let j = peek(&s, &id_of(&long)).json();
    assert_eq!((j["timeout"].as_u64(), j["timeout_override"].clone()), (Some(3), Value::Null));
}

#[test]
fn bounds_are_refused_naming_the_field_the_value_and_the_bound() {
    let s = Server::start(&["--set", "sessions.max_timeout=100"]);
    let cases = [
        (json!({"timeout": 101}), "bad_timeout", vec!["101", "100", "sessions.max_timeout"]),
        (json!({"timeout": 0}), "bad_timeout", vec!["0", "between 1 and 100"]),
        (json!({"timeout": 1u64 << 40}), "bad_timeout", vec!["1099511627776"]),
        (json!({"timeout": "ten"}), "bad_json", vec!["timeout"]),
        (json!({"deadline": "2001-01-01T00:00:00Z"}), "bad_deadline", vec!["2001-01-01", "not in the future"]),
        (json!({"deadline": "2999-01-01T00:00:00Z"}), "bad_deadline", vec!["2999-01-01", "100 s"]),
        (json!({"deadline": "tomorrow"}), "bad_deadline", vec!["tomorrow", "RFC 3339"]),
        (json!({"principal": ""}), "bad_principal", vec!["empty"]),
        (json!({"principal": "x".repeat(257)}), "bad_principal", vec!["257", "256"]),
        (json!({"principal": "al\u{7}ice"}), "bad_principal", vec!["control"]),
        (json!({"bogus": 1}), "bad_json", vec!["bogus"]),
    ];
    let id = create(&s);
    for (body, code, words) in &cases {
        for r in [post_json(&s, "/v1/sessions", body), patch(&s, &id, body, &[])] {
            assert_eq!(r.status, 400, "{body}: {}", r.text());
            let j = r.json();
            assert_eq!(j["error"], *code, "{body}: {j}");
            let msg = j["message"].as_str().unwrap();
            for w in words {
                assert!(msg.contains(w), "{body}: the message names {w:?}: {msg}");
            }
        }
    }
    // Nothing was created by a refused create, and the session is unchanged.
    let list = request("GET", &url(&s, "/v1/sessions"), &[], None).json();
    assert_eq!(list["sessions"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(peek(&s, &id).header("etag"), Some("\"v1\""));
    // At the bound is fine.
    assert_eq!(patch(&s, &id, &json!({"timeout": 100}), &[]).status, 204);
}

#[test]
fn a_reload_keeps_an_own_timeout_and_moves_the_others_to_the_new_default() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sessiond.toml");
    std::fs::write(&cfg, "[sessions]\ntimeout = 1800\n").unwrap();
    let s = Server::start(&["--config", cfg.to_str().unwrap()]);
    let own = id_of(&create_with(&s, &json!({"timeout": 600})));
    let plain = id_of(&create_with(&s, &json!({})));
    std::fs::write(&cfg, "[sessions]\ntimeout = 900\n").unwrap();
    s.signal(nix::sys::signal::Signal::SIGHUP);
    s.wait_log("reload done", WAIT);
    let o = peek(&s, &own).json();
    let p = peek(&s, &plain).json();
    assert_eq!((o["timeout"].as_u64(), o["timeout_override"].as_u64()), (Some(600), Some(600)), "{}", s.log());
    assert_eq!((p["timeout"].as_u64(), p["timeout_override"].clone()), (Some(900), Value::Null), "{}", s.log());
}

#[test]
fn etags_give_304_and_412_across_two_workers_and_a_touch_keeps_them() {
    let s = Server::start(&[]);
    let id = create(&s);
    let get = |h: &[(&str, &str)]| request("GET", &url(&s, &format!("/v1/sessions/{id}")), h, None);
    let tag = get(&[]).header("etag").unwrap().to_string();
    assert!(!tag.contains(&id[..8]), "the tag says nothing of the id");
    // Each request on a fresh connection, so the two workers both answer.
    for _ in 0..40 {
        let r = get(&[("If-None-Match", &tag)]);
        assert_eq!(r.status, 304, "{}", r.text());
        assert_eq!(r.header("etag"), Some(tag.as_str()));
        assert!(r.body.is_empty());
    }
    // A touch does not change the version.
    let r = request("POST", &url(&s, &format!("/v1/sessions/{id}/touch")), &[], None);
    assert_eq!((r.status, r.header("etag")), (204, Some(tag.as_str())));
    // A change does; the old tag then gets 412 from every change route.
    let r = patch(&s, &id, &json!({"attributes": {"a": "1"}}), &[("If-Match", &tag)]);
    assert_eq!(r.status, 204, "{}", r.text());
    let tag2 = r.header("etag").unwrap().to_string();
    assert_ne!(tag, tag2);
    assert_eq!(get(&[("If-None-Match", &tag)]).status, 200);
    let stale: &[(&str, &str)] = &[("If-Match", &tag)];
    for _ in 0..10 {
        let r = patch(&s, &id, &json!({"attributes": {"a": "2"}}), stale);
        assert_eq!((r.status, r.json()["error"].clone()), (412, json!("precondition_failed")));
        let attr = url(&s, &format!("/v1/sessions/{id}/attributes/a"));
        assert_eq!(request("PUT", &attr, stale, Some(b"3")).status, 412);
        assert_eq!(request("DELETE", &attr, stale, None).status, 412);
        assert_eq!(request("POST", &url(&s, &format!("/v1/sessions/{id}/rotate")), stale, None).status, 412);
        assert_eq!(request("DELETE", &url(&s, &format!("/v1/sessions/{id}")), stale, None).status, 412);
        assert_eq!(
            request(
                "PATCH",
                &url(&s, &format!("/v1/sessions/{id}")),
                &[("If-Match", "W/\"v2\"")],
                Some(br#"{"attributes": {"a": "9"}}"#)
            )
            .status,
            412,
            "a weak tag never matches"
        );
    }
    let j = get(&[]).json();
    assert_eq!(j["attributes"]["a"], "1", "no refused change landed");
    // The current tag works on every route; a missing session is 404, not 412.
    let cur: &[(&str, &str)] = &[("If-Match", &tag2)];
    let r = request("PUT", &url(&s, &format!("/v1/sessions/{id}/attributes/b")), cur, Some(b"x"));
    assert_eq!(r.status, 204);
    let tag3 = r.header("etag").unwrap().to_string();
    let r = request("POST", &url(&s, &format!("/v1/sessions/{id}/rotate")), &[("If-Match", &tag3)], None);
    assert_eq!(r.status, 200, "{}", r.text());
    let new_id = id_of(&r.json());
    let tag4 = r.header("etag").unwrap().to_string();
    assert_eq!(
        request("DELETE", &url(&s, &format!("/v1/sessions/{new_id}")), &[("If-Match", &tag4)], None).status,
        204
    );
    assert_eq!(patch(&s, &new_id, &json!({"attributes": {"a": "1"}}), &[("If-Match", &tag4)]).status, 404);
    assert_eq!(patch(&s, &new_id, &json!({"attributes": {"a": "1"}}), &[]).status, 404, "a PATCH never creates");
}

#[test]
fn concurrent_patches_of_different_attributes_all_land() {
    let s = Arc::new(Server::start(&["--set", "sessions.max_values_per_session=16"]));
    let id = create(&s);
    let n = 8;
    let barrier = Arc::new(Barrier::new(n));
    let threads: Vec<_> = (0..n)
        .map(|k| {
            let (s, id, barrier) = (s.clone(), id.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                for round in 0..25 {
                    let r = patch(&s, &id, &json!({"attributes": {format!("k{k}"): format!("{round}")}}), &[]);
                    assert_eq!(r.status, 204, "{}", r.text());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let j = peek(&s, &id).json();
    for k in 0..n {
        assert_eq!(j["attributes"][format!("k{k}")], "24", "every writer's last change is there: {j}");
    }
    assert_eq!(peek(&s, &id).header("etag"), Some(format!("\"v{}\"", 1 + n * 25).as_str()), "one version per change");
}

#[test]
fn touch_refreshes_the_session_without_data_and_clears_new() {
    let s = Server::start(&["--set", "sessions.timeout=2"]);
    let id = create(&s);
    assert_eq!(peek(&s, &id).json()["new"], true);
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(800));
        let r = request("POST", &url(&s, &format!("/v1/sessions/{id}/touch")), &[], None);
        assert_eq!(r.status, 204);
        assert!(r.body.is_empty());
    }
    let j = peek(&s, &id).json();
    assert_eq!(j["new"], false, "a touch is a read: {j}");
    let missing = format!("/v1/sessions/{}/touch", "A".repeat(id.len()));
    assert_eq!(request("POST", &url(&s, &missing), &[], None).status, 404);
    assert_eq!(request("GET", &url(&s, &format!("/v1/sessions/{id}/touch")), &[], None).status, 405);
}

#[test]
fn a_principal_s_sessions_are_listed_in_every_context_and_logged_out_everywhere() {
    use std::os::unix::fs::PermissionsExt;
    let hook = common::gateway::Recorder::start(|_seen, _r, w| {
        let _ = std::io::Write::write_all(w, b"HTTP/1.1 204 No Content\r\n\r\n");
    });
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("hook.secret");
    std::fs::write(&secret, "test-webhook-secret-0123456789").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let cfg = dir.path().join("sessiond.toml");
    std::fs::write(
        &cfg,
        format!(
            "[events]\nurl = \"http://127.0.0.1:{}/hook\"\nsecret_file = \"{}\"\n[[contexts]]\nname = \"admin\"\n",
            hook.port,
            secret.display()
        ),
    )
    .unwrap();
    let s = Server::start(&["--config", cfg.to_str().unwrap()]);
    let mut alice = Vec::new();
    for k in 0..5 {
        let path = if k % 2 == 0 { "/v1/sessions" } else { "/v1/sessions?context=admin" };
        alice.push(id_of(&post_json(&s, path, &json!({"principal": "alice"})).json()));
    }
    let bob = id_of(&create_with(&s, &json!({"principal": "bob"})));
    let later = create(&s);
    assert_eq!(patch(&s, &later, &json!({"principal": "alice"}), &[]).status, 204);
    alice.push(later.clone());
    // Listed across contexts, two per page.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("/v1/principals/alice/sessions?limit=2&cursor={c}"),
            None => "/v1/principals/alice/sessions?limit=2".to_string(),
        };
        let j = request("GET", &url(&s, &q), &[], None).json();
        let page = j["sessions"].as_array().unwrap();
        assert!(page.len() <= 2);
        seen.extend(page.iter().map(|m| (id_of(m), m["context"].as_str().unwrap().to_string())));
        match j["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let mut ids: Vec<_> = seen.iter().map(|(i, _)| i.clone()).collect();
    ids.sort();
    let mut want = alice.clone();
    want.sort();
    assert_eq!(ids, want);
    assert!(seen.iter().any(|(_, c)| c == "admin") && seen.iter().any(|(_, c)| c == "default"));
    // Clearing the principal takes a session out.
    assert_eq!(patch(&s, &later, &json!({"principal": null}), &[]).status, 204);
    assert_eq!(peek(&s, &later).json()["principal"], Value::Null);
    // Log out everywhere.
    let r = request("DELETE", &url(&s, "/v1/principals/alice/sessions"), &[], None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["invalidated"], 5);
    for id in &alice[..5] {
        assert_eq!(peek(&s, id).status, 404);
    }
    assert_eq!(peek(&s, &bob).status, 200);
    assert_eq!(peek(&s, &later).status, 200);
    let j = request("GET", &url(&s, "/v1/principals/alice/sessions"), &[], None).json();
    assert_eq!(j["sessions"].as_array().unwrap().len(), 0);
    // Each ended with an `invalidated` event that says why.
    let ends = || -> Vec<Value> {
        hook.all()
            .iter()
            .filter_map(|h| serde_json::from_slice::<Value>(&h.body).ok())
            .flat_map(|v| v["events"].as_array().cloned().unwrap_or_default())
            .filter(|e| e["type"] == "session.invalidated" && e["reason"] == "logout_everywhere")
            .collect()
    };
    let t = std::time::Instant::now();
    while ends().len() < 5 && t.elapsed() < WAIT {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(ends().len(), 5, "{:?}", ends());
    assert_eq!(request("GET", &url(&s, "/v1/principals/%01x/sessions"), &[], None).status, 400);
}

#[test]
fn the_cap_refuses_or_evicts_the_least_recently_used() {
    let s = Server::start(&[
        "--set",
        "sessions.max_sessions_per_principal=2",
        "--set",
        "sessions.when_principal_full=refuse",
    ]);
    let a = id_of(&create_with(&s, &json!({"principal": "carol"})));
    let _b = id_of(&create_with(&s, &json!({"principal": "carol"})));
    let r = post_json(&s, "/v1/sessions", &json!({"principal": "carol"}));
    assert_eq!(r.status, 409, "{}", r.text());
    let j = r.json();
    assert_eq!(j["error"], "too_many_sessions");
    assert!(j["message"].as_str().unwrap().contains("max_sessions_per_principal = 2"), "{j}");
    let c = create(&s);
    assert_eq!(patch(&s, &c, &json!({"principal": "carol"}), &[]).status, 409, "setting it later obeys the cap too");
    assert_eq!(patch(&s, &a, &json!({"principal": "carol"}), &[]).status, 204, "a session of hers may set it again");
    let list = request("GET", &url(&s, "/v1/sessions"), &[], None).json();
    assert_eq!(list["sessions"].as_array().unwrap().len(), 3, "the refused create left nothing: {list}");
    drop(s);

    let s = Server::start(&["--set", "sessions.max_sessions_per_principal=2"]);
    let a = id_of(&create_with(&s, &json!({"principal": "carol"})));
    std::thread::sleep(Duration::from_millis(20));
    let b = id_of(&create_with(&s, &json!({"principal": "carol"})));
    std::thread::sleep(Duration::from_millis(20));
    // `a` is used again, so `b` is the least recently used.
    assert_eq!(request("POST", &url(&s, &format!("/v1/sessions/{a}/touch")), &[], None).status, 204);
    let c = id_of(&create_with(&s, &json!({"principal": "carol"})));
    assert_eq!(peek(&s, &a).status, 200);
    assert_eq!(peek(&s, &b).status, 404, "evicted");
    assert_eq!(peek(&s, &c).status, 200);
    let j = request("GET", &url(&s, "/v1/principals/carol/sessions"), &[], None).json();
    assert_eq!(j["sessions"].as_array().unwrap().len(), 2);
    let _ = b;
}

#[test]
fn a_gateway_login_names_the_principal_and_obeys_the_cap() {
    use common::gateway::{cookie_of, serve_http, start_gateway};
    let upstream = serve_http(|_seen, _r, w| {
        let _ = std::io::Write::write_all(w, b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
    });
    let gw = start_gateway(upstream, None, "", "", &["--set", "sessions.max_sessions_per_principal=1"]);
    let login = || {
        let body = json!({"user": "alice", "password": "secret"}).to_string();
        let r = request(
            "POST",
            &gw.url("/.sessiond/login"),
            &[("content-type", "application/json")],
            Some(body.as_bytes()),
        );
        assert_eq!(r.status, 204, "{}", r.text());
        cookie_of(&r)
    };
    let app = |cookie: &str| request("GET", &gw.url("/app"), &[("cookie", cookie)], None);
    let first = login();
    let j = request("GET", &gw.server.url("/v1/principals/alice/sessions"), &[], None).json();
    assert_eq!(j["sessions"].as_array().unwrap().len(), 1, "{j}");
    assert_eq!(app(&first).status, 200);
    let second = login();
    assert_ne!(first, second);
    let j = request("GET", &gw.server.url("/v1/principals/alice/sessions"), &[], None).json();
    let list = j["sessions"].as_array().unwrap();
    assert_eq!(list.len(), 1, "the cap of 1 evicted the first login: {j}");
    assert_eq!(app(&first).status, 401, "the first login's cookie is dead");
    assert_eq!(app(&second).status, 200);
}
