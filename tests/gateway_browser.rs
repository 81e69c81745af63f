//! The gateway in a real browser: headless Chromium (Debian's `chromium`),
//! driven over the W3C WebDriver protocol by Debian's `chromedriver`, logs
//! in through the login form, lands on the upstream page, reloads with the
//! cookie, logs out and is sent back to the login form.
//!
//! Each step leaves a PNG screenshot in
//! `target/test-output/gateway_browser/` (under `CARGO_TARGET_DIR` when
//! set) so a human can look at what the browser showed.
//!
//! A missing browser or driver fails the test with the command that installs
//! them; it never skips.

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::gateway::*;
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const INSTALL_HINT: &str =
    "run `apt-get install -y chromium chromium-driver` as root (or `bash tools/test`, which installs them)";

/// How long any wait for the browser (a URL, an element, a text) may take.
const WAIT: Duration = Duration::from_secs(20);

/// The key under which WebDriver returns an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

// ---- the upstream ----

/// One request as the upstream saw it.
#[derive(Clone, Debug)]
struct Seen {
    /// Request target (path and query).
    target: String,
    /// `X-Sessiond-User` as the gateway sent it.
    user: Option<String>,
    /// Every `Cookie` header the gateway forwarded.
    cookies: Vec<String>,
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The application behind the gateway: every request gets an HTML page that
/// greets the `X-Sessiond-User`, numbers the request (so a reload is visibly
/// a new answer) and offers a logout form.
struct Upstream {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Upstream {
    fn start() -> Upstream {
        let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));
        let s2 = seen.clone();
        let port = serve_http(move |req, _, w| {
            let user = req.header("x-sessiond-user").map(str::to_string);
            let cookies = req.all("cookie").into_iter().map(str::to_string).collect();
            let target = req.target;
            let n = {
                let mut s = s2.lock().unwrap();
                s.push(Seen { target: target.clone(), user: user.clone(), cookies });
                s.len()
            };
            let body = format!(
                "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>App</title></head>\n\
                 <body><h1 id=\"hello\">Hello, {}</h1>\n<p id=\"served\">Answer {n} for {}</p>\n\
                 <form method=\"post\" action=\"/.sessiond/logout\"><button id=\"logout\">Log out</button></form>\n\
                 </body></html>\n",
                html_escape(user.as_deref().unwrap_or("nobody")),
                html_escape(&target),
            );
            let _ = write!(
                w,
                "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\ncache-control: no-store\r\n\
                 content-length: {}\r\n\r\n{body}",
                body.len()
            );
        });
        Upstream { port, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
    /// The requests for `target`, in order (the browser also asks for a favicon).
    fn for_target(&self, target: &str) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.target == target).collect()
    }
}

// ---- the gateway ----

/// Starts sessiond with a gateway in front of `up`, users alice/bob
/// (password "secret").
fn start(up: &Upstream) -> Gw {
    start_gateway(up.port, None, "", "", &[])
}

// ---- the browser ----

/// A WebDriver error: HTTP status and the `value` object
/// (`{"error": "no such element", "message": …}`).
struct WdError {
    status: u16,
    value: Value,
}

impl std::fmt::Display for WdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {}: {} ({})", self.status, self.value["error"], self.value["message"])
    }
}

impl WdError {
    fn is(&self, code: &str) -> bool {
        self.value["error"] == code
    }
}

/// `chromedriver` as a child process with one Chromium session; both end on drop.
struct Browser {
    driver: Child,
    base: String,
    session: String,
    agent: ureq::Agent,
    /// Chromium's profile and the driver's log.
    dir: tempfile::TempDir,
}

/// Fails (never skips) when the browser or its driver is not installed.
fn require_tools() {
    for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
        assert!(
            Path::new(path).exists(),
            "{path} is missing (Debian package {package}); this test needs a real browser: {INSTALL_HINT}"
        );
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Browser {
    fn start() -> Browser {
        require_tools();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("chromedriver.log");
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {CHROMEDRIVER}: {e}; {INSTALL_HINT}"));
        // Browser start-up on a busy machine is slow; each call gets a generous
        // timeout, and the waits below poll instead of sleeping a fixed time.
        let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(120)).redirects(0).build();
        let mut b = Browser { driver, base: format!("http://127.0.0.1:{port}"), session: String::new(), agent, dir };
        let t = Instant::now();
        loop {
            if let Some(st) = b.driver.try_wait().unwrap() {
                panic!("chromedriver exited ({st}) before it was ready; its log:\n{}", b.driver_log());
            }
            if b.call("GET", "/status", None).is_ok_and(|v| v["ready"] == true) {
                break;
            }
            assert!(
                t.elapsed() < WAIT,
                "chromedriver not ready on port {port} within {WAIT:?}; log:\n{}",
                b.driver_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = b.dir.path().join("profile");
        let caps = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": CHROMIUM,
                        "args": [
                            "--headless=new",
                            "--no-sandbox",
                            "--disable-gpu",
                            "--disable-dev-shm-usage",
                            "--disable-quic",
                            "--no-first-run",
                            "--disable-background-networking",
                            "--disable-component-update",
                            "--disable-sync",
                            "--window-size=1024,768",
                            format!("--user-data-dir={}", profile.display()),
                        ],
                        "prefs": {
                            "credentials_enable_service": false,
                            "profile.password_manager_enabled": false,
                            "profile.password_manager_leak_detection": false,
                        },
                    },
                },
            },
        });
        let v = b
            .call("POST", "/session", Some(caps))
            .unwrap_or_else(|e| panic!("new WebDriver session failed: {e}; chromedriver log:\n{}", b.driver_log()));
        b.session = v["sessionId"].as_str().unwrap_or_else(|| panic!("no sessionId in {v}")).to_string();
        b
    }

    /// The last lines of chromedriver's log, for failure messages.
    fn driver_log(&self) -> String {
        let all = std::fs::read_to_string(self.dir.path().join("chromedriver.log")).unwrap_or_default();
        let lines: Vec<&str> = all.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// One WebDriver command; returns its `value`.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, WdError> {
        let req = self.agent.request(method, &format!("{}{path}", self.base));
        let r = match body {
            Some(b) => req.set("content-type", "application/json").send_string(&b.to_string()),
            None => req.call(),
        };
        let (status, resp) = match r {
            Ok(r) => (r.status(), r),
            Err(ureq::Error::Status(s, r)) => (s, r),
            Err(e) => {
                return Err(WdError { status: 0, value: json!({"error": "transport", "message": e.to_string()}) });
            }
        };
        let text = resp.into_string().unwrap_or_default();
        let v: Value =
            serde_json::from_str(&text).unwrap_or_else(|_| json!({"value": {"error": "not json", "message": text}}));
        if status == 200 { Ok(v["value"].clone()) } else { Err(WdError { status, value: v["value"].clone() }) }
    }

    /// A command in this session that must succeed.
    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path} failed: {e}"))
    }

    fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }

    fn current_url(&self) -> String {
        self.cmd("GET", "/url", None).as_str().unwrap_or_default().to_string()
    }

    /// The first element matching `css`, if any.
    fn find(&self, css: &str) -> Option<String> {
        match self.call(
            "POST",
            &format!("/session/{}/element", self.session),
            Some(json!({"using": "css selector", "value": css})),
        ) {
            Ok(v) => Some(v[ELEMENT_KEY].as_str().unwrap_or_else(|| panic!("no element reference in {v}")).to_string()),
            Err(e) if e.is("no such element") => None,
            Err(e) => panic!("find {css:?}: {e}"),
        }
    }

    /// The element matching `css`, waiting for it to appear.
    fn wait_element(&self, css: &str) -> String {
        self.wait_for(&format!("an element {css:?}"), || self.find(css))
    }

    /// The rendered text of the element matching `css` ("" once it is gone,
    /// as when a navigation replaced the page in between).
    fn text(&self, css: &str) -> String {
        let Some(e) = self.find(css) else { return String::new() };
        match self.call("GET", &format!("/session/{}/element/{e}/text", self.session), None) {
            Ok(v) => v.as_str().unwrap_or_default().to_string(),
            Err(e) if e.is("stale element reference") => String::new(),
            Err(e) => panic!("text of {css:?}: {e}"),
        }
    }

    fn property(&self, element: &str, name: &str) -> Option<String> {
        self.cmd("GET", &format!("/element/{element}/property/{name}"), None).as_str().map(str::to_string)
    }

    fn type_into(&self, css: &str, text: &str) {
        let e = self.wait_element(css);
        self.cmd("POST", &format!("/element/{e}/clear"), Some(json!({})));
        self.cmd("POST", &format!("/element/{e}/value"), Some(json!({ "text": text })));
    }

    fn click(&self, css: &str) {
        let e = self.wait_element(css);
        self.cmd("POST", &format!("/element/{e}/click"), Some(json!({})));
    }

    /// Every cookie the browser holds for the current page.
    fn cookies(&self) -> Vec<Value> {
        self.cmd("GET", "/cookie", None).as_array().cloned().unwrap_or_default()
    }

    fn cookie(&self, name: &str) -> Option<Value> {
        self.cookies().into_iter().find(|c| c["name"] == name)
    }

    /// Saves a screenshot of the viewport as `dir/name` and prints its path.
    fn screenshot(&self, dir: &Path, name: &str) -> PathBuf {
        let b64 = self.cmd("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().expect("the screenshot is a base64 string"))
            .expect("the screenshot is valid base64");
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "the screenshot is not a PNG");
        let path = dir.join(name);
        std::fs::write(&path, &png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        println!("screenshot: {}", path.display());
        path
    }

    /// Polls `f` until it yields a value; on timeout fails with what the
    /// browser was showing.
    fn wait_for<T>(&self, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let t = Instant::now();
        loop {
            if let Some(v) = f() {
                return v;
            }
            if t.elapsed() > WAIT {
                let source = self.call("GET", &format!("/session/{}/source", self.session), None);
                panic!(
                    "waited {WAIT:?} for {what}; the browser is at {} showing:\n{}",
                    self.current_url(),
                    source.map(|v| v.as_str().unwrap_or_default().to_string()).unwrap_or_else(|e| e.to_string())
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the current URL's path is `path`; returns the whole URL.
    fn wait_path(&self, path: &str) -> String {
        self.wait_for(&format!("the URL path {path:?}"), || {
            let url = self.current_url();
            (path_of(&url) == path).then_some(url)
        })
    }

    /// Waits until the element `css` shows text containing `want`.
    fn wait_text(&self, css: &str, want: &str) -> String {
        self.wait_for(&format!("{css:?} to contain {want:?}"), || {
            let t = self.text(css);
            t.contains(want).then_some(t)
        })
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            // Quits Chromium; best effort, as this may run while a test unwinds.
            let _ = self.call("DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// The path of an absolute URL (`http://host:port/a/b?c` → `/a/b`).
fn path_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path = rest.find('/').map_or("/", |i| &rest[i..]);
    path.split(['?', '#']).next().unwrap_or("/")
}

/// `target/test-output/gateway_browser/`, under `CARGO_TARGET_DIR` when set.
fn output_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| manifest.join("target"), |t| manifest.join(t));
    let dir = target.join("test-output").join("gateway_browser");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

#[test]
fn a_browser_logs_in_through_the_form_reloads_with_the_cookie_and_logs_out() {
    require_tools();
    let out = output_dir();
    let up = Upstream::start();
    let g = start(&up);
    let browser = Browser::start();

    // 1. No session: the gateway sends the browser to the login form, with
    //    the page it asked for as `rd`.
    browser.goto(&g.url("/app/home"));
    let url = browser.wait_path("/.sessiond/login");
    assert!(url.ends_with("/.sessiond/login?rd=%2Fapp%2Fhome"), "redirected to {url}");
    let user = browser.wait_element("input#user[name=user]");
    browser.wait_element("input#password[name=password][type=password]");
    // Each field has a visible label tied to it by `for`.
    for (field, label) in [("user", "User name"), ("password", "Password")] {
        browser.wait_element(&format!("label[for={field}]"));
        assert_eq!(browser.text(&format!("label[for={field}]")), label);
    }
    assert_eq!(
        browser.cmd("GET", &format!("/element/{user}/property/required"), None),
        true,
        "the user name is required"
    );
    let rd = browser.wait_element("input[type=hidden][name=rd]");
    assert_eq!(browser.property(&rd, "value").as_deref(), Some("/app/home"));
    assert!(up.seen().is_empty(), "nothing reached the upstream without a session: {:?}", up.seen());
    let shot1 = browser.screenshot(&out, "1-login-form.png");

    // 1b. A wrong password: the form again, with an alert, and no cookie.
    browser.type_into("input[name=user]", "alice");
    browser.type_into("input[name=password]", "not-the-password");
    browser.click("button[type=submit]");
    let alert = browser.wait_text("[role=alert]", "Wrong user name or password");
    assert_eq!(alert, "Wrong user name or password.");
    assert_eq!(path_of(&browser.current_url()), "/.sessiond/login");
    let rd = browser.wait_element("input[type=hidden][name=rd]");
    assert_eq!(browser.property(&rd, "value").as_deref(), Some("/app/home"), "the form keeps where to go");
    assert!(browser.cookie("SESSIONID").is_none_or(|c| c["value"] == ""), "{:?}", browser.cookies());
    assert!(up.seen().is_empty(), "a failed login reaches nothing: {:?}", up.seen());
    let shot1b = browser.screenshot(&out, "1b-wrong-password.png");

    // 2. The right password: straight on to the page first asked for.
    browser.type_into("input[name=user]", "alice");
    browser.type_into("input[name=password]", "secret");
    browser.click("button[type=submit]");
    browser.wait_path("/app/home");
    let hello = browser.wait_text("#hello", "Hello, ");
    assert_eq!(hello, "Hello, alice");
    let cookie = browser.cookie("SESSIONID").unwrap_or_else(|| panic!("no SESSIONID: {:?}", browser.cookies()));
    assert_eq!(cookie["httpOnly"], true, "{cookie}");
    assert_eq!(cookie["sameSite"], "Lax", "{cookie}");
    let sid = cookie["value"].as_str().unwrap_or_default().to_string();
    assert!(!sid.is_empty(), "{cookie}");
    let pages = up.for_target("/app/home");
    assert_eq!(pages.len(), 1, "{pages:?}");
    assert_eq!(pages[0].user.as_deref(), Some("alice"));
    assert!(pages[0].cookies.iter().all(|c| !c.contains("SESSIONID")), "the session cookie stays at the gateway");
    let served = browser.text("#served");
    let shot2 = browser.screenshot(&out, "2-after-login.png");

    // 3. A reload: the cookie alone carries the session to a new answer.
    browser.cmd("POST", "/refresh", Some(json!({})));
    browser.wait_for("a new answer from the upstream", || {
        let t = browser.text("#served");
        (!t.is_empty() && t != served).then_some(t)
    });
    assert_eq!(browser.wait_text("#hello", "Hello, "), "Hello, alice");
    let pages = up.for_target("/app/home");
    assert_eq!(pages.len(), 2, "the reload reached the upstream once more: {pages:?}");
    assert_eq!(pages[1].user.as_deref(), Some("alice"));
    assert_eq!(browser.cookie("SESSIONID").map(|c| c["value"].clone()), Some(json!(sid)), "same session");
    let shot3 = browser.screenshot(&out, "3-after-reload.png");

    // 4. Log out: back to the login form, the cookie is gone, and the page
    //    asks for a login again.
    browser.click("button#logout");
    browser.wait_path("/.sessiond/login");
    browser.wait_element("input[name=user]");
    assert!(
        browser.cookie("SESSIONID").is_none_or(|c| c["value"] == ""),
        "the cookie must be gone after logout: {:?}",
        browser.cookies()
    );
    let shot4 = browser.screenshot(&out, "4-after-logout.png");
    let before = up.for_target("/app/home").len();
    browser.goto(&g.url("/app/home"));
    let url = browser.wait_path("/.sessiond/login");
    assert!(url.ends_with("?rd=%2Fapp%2Fhome"), "{url}");
    browser.wait_element("input[name=password]");
    assert_eq!(up.for_target("/app/home").len(), before, "after logout nothing reaches the upstream");

    println!("screenshots in {}:", out.display());
    for p in [shot1, shot1b, shot2, shot3, shot4] {
        println!("  {}", p.display());
    }
}
