//! sessionctl against a live and a stopped server, `verify` on damaged
//! copies, `/metrics` totals across workers, promtool, and log rules.
mod common;
use common::*;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

fn ctl(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(sessionctl_bin()).arg("--data-dir").arg(dir).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn metric(text: &str, line_prefix: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or(0)
}

#[test]
fn sessionctl_commands_work_live_and_stopped() {
    let mut s = Server::start(&[]);
    let dir = s.data_dir.clone();
    let a = create(&s);
    let b = create(&s);
    assert_eq!(request("PUT", &s.url(&format!("/v1/sessions/{a}/attributes/t")), &[], Some(b"text value")).status, 204);
    assert_eq!(
        request("PUT", &s.url(&format!("/v1/sessions/{a}/attributes/bin")), &[], Some(&[0, 1, 255])).status,
        204
    );

    for phase in ["live", "stopped"] {
        let (code, out, err) = ctl(&dir, &["stats"]);
        assert_eq!(code, 0, "{phase}: {err}");
        assert!(out.contains("capacity 1000") && out.contains("live 2"), "{phase}: {out}");
        let (code, out, _) = ctl(&dir, &["--json", "stats"]);
        assert_eq!(code, 0);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let c = &v["contexts"][0];
        assert_eq!(
            (c["live"].as_u64(), c["created"].as_u64(), c["format_version"].as_u64()),
            (Some(2), Some(2), Some(sessiond::region::FORMAT_VERSION as u64))
        );
        // No store has seen either session: both slots carry a change mark.
        assert_eq!(c["changed_since_store"].as_u64(), Some(2), "{phase}");
        assert!(c["region_created"].as_str().is_some_and(|t| t.starts_with("20")), "{phase}: {c}");
        assert_eq!(c["stripes"].as_array().unwrap().len(), 16);
        assert_eq!(c["clean_shutdown"].as_bool(), Some(phase == "stopped"), "{phase}");

        let (code, out, _) = ctl(&dir, &["list"]);
        assert_eq!(code, 0);
        assert!(out.contains(&a[..12]) && !out.contains(&a), "{phase}: ids are shortened: {out}");
        let (_, out, _) = ctl(&dir, &["list", "--full-ids"]);
        assert!(out.contains(&a) && out.contains(&b), "{phase}: {out}");

        let (code, out, _) = ctl(&dir, &["show", &a]);
        assert_eq!(code, 0);
        assert!(out.contains("text value") && out.contains("0001ff"), "{phase}: text and hex: {out}");
        let (code, out, _) = ctl(&dir, &["verify"]);
        assert_eq!((code, out.starts_with("ok:")), (0, true), "{phase}: {out}");
        let (code, _, err) = ctl(&dir, &["show", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]);
        assert_eq!(code, 1, "{phase}: {err}");
        if phase == "live" {
            assert!(ctl(&dir, &["stats"]).1.contains(&format!("running (pid {})", s.pid())));
            assert_eq!(s.stop(), Some(0));
        } else {
            assert!(ctl(&dir, &["stats"]).1.contains("not running"));
        }
    }
    // expire works on a stopped server, and the next start sees it.
    let (code, out, _) = ctl(&dir, &["expire", &b]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains(&b), "never print the full id: {out}");
    let s = Server::start_with(Opts { data_dir: Some(&dir), ..Default::default() });
    assert_eq!(get(&s.url(&format!("/v1/sessions/{b}"))).status, 404);
    assert_eq!(get(&s.url(&format!("/v1/sessions/{a}?touch=false"))).status, 200);
    // clear against a live server: SIGHUP rebuild.
    let (code, out, _) = ctl(&dir, &["clear"]);
    assert_eq!(code, 0);
    assert!(out.contains("SIGHUP"), "{out}");
    s.wait_log("reload done", std::time::Duration::from_secs(20));
    assert_eq!(get(&s.url(&format!("/v1/sessions/{a}"))).status, 404);
}

#[test]
fn clear_on_a_stopped_server_rebuilds_at_next_start() {
    let mut s = Server::start(&[]);
    let dir = s.data_dir.clone();
    let a = create(&s);
    s.stop();
    let (code, out, _) = ctl(&dir, &["clear"]);
    assert_eq!(code, 0);
    assert!(out.contains("next start"), "{out}");
    assert!(!dir.join("Version").exists());
    let s = Server::start_with(Opts { data_dir: Some(&dir), ..Default::default() });
    assert_eq!(get(&s.url(&format!("/v1/sessions/{a}"))).status, 404);
}

#[test]
fn verify_reports_each_kind_of_damage() {
    let mut s = Server::start(&["--max-sessions", "64", "--max-locks", "4"]);
    let dir = s.data_dir.clone();
    let ids: Vec<String> = (0..8).map(|_| create(&s)).collect();
    for id in &ids {
        request("PUT", &s.url(&format!("/v1/sessions/{id}/attributes/k")), &[], Some(b"v"));
    }
    s.stop();
    let region = dir.join("contexts/default/sessions.region");
    let geo_slot = |id: &str| {
        let sid = sessiond::region::SessionId::parse(id.as_bytes()).unwrap();
        let r = sessiond::region::Region::attach(&region, std::time::Duration::from_secs(1)).unwrap();
        let g = r.geometry();
        (g.slot_off(sid.slot), g.slot_off(sid.slot) + g.entry_off(0))
    };
    type Damage<'a> = (&'a str, Box<dyn Fn(&Path)>, &'a str);
    // The slot, and its first attribute entry (after the slot header,
    // whose size depends on the format: design §4.6).
    let (off, entry0) = geo_slot(&ids[0]);
    let cases: Vec<Damage> = vec![
        ("torn slot", Box::new(move |p| write_at(p, off, &3u64.to_le_bytes())), "odd sequence"),
        ("bad length", Box::new(move |p| write_at(p, entry0 + 4, &u32::MAX.to_le_bytes())), "value length"),
        ("bad magic", Box::new(|p| write_at(p, 0, b"garbage!")), "bad magic"),
        (
            "truncated",
            Box::new(|p| std::fs::OpenOptions::new().write(true).open(p).unwrap().set_len(10_000).unwrap()),
            "truncated",
        ),
        ("wrong size", Box::new(|p| write_at(p, 24, &65u32.to_le_bytes())), "does not follow"),
    ];
    for (what, damage, expect) in cases {
        let copy = tempfile::tempdir().unwrap();
        let cdir = copy.path().join("data");
        std::fs::create_dir_all(cdir.join("contexts/default")).unwrap();
        std::fs::copy(dir.join("Version"), cdir.join("Version")).unwrap();
        let creg = cdir.join("contexts/default/sessions.region");
        std::fs::copy(&region, &creg).unwrap();
        assert_eq!(ctl(&cdir, &["verify"]).0, 0, "{what}: the copy starts clean");
        damage(&creg);
        let (code, out, err) = ctl(&cdir, &["verify"]);
        assert_eq!(code, 1, "{what}: {out}{err}");
        assert!(out.contains(expect), "{what}: expected {expect:?} in: {out}");
        assert!(out.contains("sessions.region"), "{what}: names the file: {out}");
    }
}

fn write_at(p: &Path, off: u64, b: &[u8]) {
    std::fs::OpenOptions::new().write(true).open(p).unwrap().write_all_at(b, off).unwrap();
}

#[test]
fn metrics_are_server_wide_and_pass_promtool() {
    let s = Server::start(&["--max-sessions", "20", "--max-locks", "4"]);
    // Many short connections so that both workers answer.
    let n = 40;
    let ids: Vec<String> = (0..20).map(|_| create(&s)).collect();
    for i in 0..n {
        let id = &ids[i % ids.len()];
        assert_eq!(request("PUT", &s.url(&format!("/v1/sessions/{id}/attributes/a")), &[], Some(b"x")).status, 204);
        assert_eq!(get(&s.url(&format!("/v1/sessions/{id}/attributes/a"))).status, 200);
    }
    for _ in 0..3 {
        assert_eq!(request("POST", &s.url("/v1/sessions"), &[], None).status, 503);
    }
    for id in &ids[..5] {
        assert_eq!(request("DELETE", &s.url(&format!("/v1/sessions/{id}")), &[], None).status, 204);
    }
    let m = get(&s.url("/metrics"));
    assert_eq!(m.status, 200);
    let text = m.text();
    assert_eq!(metric(&text, "sessiond_http_requests_total{route=\"create\",code=\"201\"}"), 20);
    assert_eq!(metric(&text, "sessiond_http_requests_total{route=\"create\",code=\"503\"}"), 3);
    assert_eq!(metric(&text, "sessiond_http_requests_total{route=\"attr_put\",code=\"204\"}"), n as u64);
    assert_eq!(metric(&text, "sessiond_http_requests_total{route=\"attr_get\",code=\"200\"}"), n as u64);
    assert_eq!(metric(&text, "sessiond_sessions_created_total{context=\"default\"}"), 20);
    assert_eq!(metric(&text, "sessiond_sessions_refused_total{context=\"default\"}"), 3);
    assert_eq!(metric(&text, "sessiond_sessions_invalidated_total{context=\"default\"}"), 5);
    assert_eq!(metric(&text, "sessiond_sessions_live{context=\"default\"}"), 15);
    assert_eq!(metric(&text, "sessiond_sessions_capacity{context=\"default\"}"), 20);
    assert_eq!(metric(&text, "sessiond_attribute_writes_total{context=\"default\"}"), n as u64);
    assert_eq!(metric(&text, "sessiond_http_request_duration_seconds_count{route=\"attr_get\"}"), n as u64);
    // Both workers answered: the worker blocks were summed, not one block read.
    let before = metric(&text, "sessiond_connections_accepted_total");
    assert!(before >= 60, "one connection per request: {before}");

    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("m.txt");
    std::fs::write(&f, &text).unwrap();
    let out = Command::new("promtool")
        .arg("check")
        .arg("metrics")
        .stdin(std::fs::File::open(&f).unwrap())
        .output()
        .expect("promtool missing: install Debian's `prometheus` package (CI does)");
    let complaints = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && complaints.trim().is_empty(), "promtool: {complaints}");
}

#[test]
fn full_refusals_are_logged_at_most_once_a_second() {
    let s = Server::start(&["--max-sessions", "2", "--max-locks", "1"]);
    create(&s);
    create(&s);
    for _ in 0..30 {
        assert_eq!(request("POST", &s.url("/v1/sessions"), &[], None).status, 503);
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    let lines = s.count_log("full, refused a new session");
    assert!((1..=2).contains(&lines), "rate-limited: {lines} lines\n{}", s.log());
}

#[test]
fn logs_never_contain_a_full_session_id() {
    let s = Server::start(&["--log-level", "debug"]);
    let id = create(&s);
    request("DELETE", &s.url(&format!("/v1/sessions/{id}")), &[], None);
    s.wait_log("invalidated sid#", std::time::Duration::from_secs(5));
    assert!(!s.log().contains(&id), "full id leaked into the log");
}
