//! Smoke test of the real binary: start, create, write, read, stop cleanly.
mod common;
use common::*;

#[test]
fn starts_serves_and_stops_cleanly() {
    let mut s = Server::start(&[]);
    let id = create(&s);
    let r = request("PUT", &s.url(&format!("/v1/sessions/{id}/attributes/cart")), &[], Some(b"3 apples"));
    assert_eq!(r.status, 204);
    let r = request("GET", &s.url("/v1/session/attributes/cart"), &[("Cookie", &format!("SESSIONID={id}"))], None);
    assert_eq!((r.status, r.text().as_str()), (200, "3 apples"));
    assert_eq!(s.children("sessiond: worker").len(), 2);
    assert_eq!(s.children("sessiond: reaper").len(), 1);
    assert_eq!(s.stop(), Some(0));
    s.wait_log("stopped cleanly", std::time::Duration::from_secs(5));
    assert!(!s.data_dir.join("sessiond.pid").exists(), "pid file removed on clean exit");
}
