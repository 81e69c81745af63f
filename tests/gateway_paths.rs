//! Path tricks against the gateway: a differential property test of the
//! normaliser against a careless upstream (`common::paths`), and a
//! generated attack corpus sent through a real gateway to a recording
//! upstream, counting what reaches it.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use common::gateway::*;
use common::paths::*;
use common::*;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use sessiond::gateway::filters::{AcceptUser, Filters};
use sessiond::gateway::path::{Allow, NormalPath, normalise, normalise_with};

/// Strict percent-decoding, once: what an upstream that decodes correctly
/// does with the forwarded path.
fn decode_once(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8().expect("a forwarded path decodes to UTF-8").into_owned()
}

/// A session allowed only the `public` category.
fn public_only() -> Filters {
    Filters::initial(&["public".into()], &[], &[], AcceptUser::None, "alice").unwrap()
}

/// The three properties, for one raw path that `allow` lets through.
fn check(raw: &str, p: &NormalPath, allow: Allow) -> Result<(), TestCaseError> {
    let forwarded = p.encoded();
    // The path the filters judge is the path an upstream decodes.
    let mut judged = p.as_str().to_string();
    if p.has_trailing_slash() {
        judged.push('/');
    }
    prop_assert_eq!(decode_once(&forwarded), judged, "raw {:?} forwarded {:?}", raw, forwarded);
    // Normalising the normal form changes nothing.
    prop_assert_eq!(normalise_with(&forwarded, allow), Ok(p.clone()), "raw {:?}", raw);
    Ok(())
}

fn token() -> impl Strategy<Value = &'static str> {
    let all: Vec<&'static str> = DOTS.iter().chain(SEPARATORS).chain(OTHERS).copied().collect();
    prop::sample::select(all)
}

/// A raw path: an allowed start, then a run of the pieces attacks are made
/// of (dots and separators in every spelling, parameters, escapes).
fn raw_path() -> impl Strategy<Value = String> {
    let start = prop::sample::select(vec!["/public/", "/public", "/", "//public/", "/public/./", "/public;x/"]);
    (start, prop::collection::vec(token(), 0..24)).prop_map(|(s, t)| format!("{s}{}", t.concat()))
}

proptest! {
    // Failing cases are kept where the unit tests' are (proptest cannot
    // find a lib.rs beside a file in tests/).
    #![proptest_config(ProptestConfig {
        cases: 4096,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("proptest-regressions/gateway_paths.txt"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn what_the_filters_judge_is_what_is_forwarded_and_no_reading_leaves_the_prefix(raw in raw_path()) {
        let filters = public_only();
        if let Ok(p) = normalise(&raw) {
            check(&raw, &p, Allow::default())?;
            if filters.allows(&p, Some("app")) {
                let forwarded = p.encoded();
                prop_assert!(
                    !escapes(&forwarded, "/public"),
                    "raw {:?} was allowed as {:?} and forwarded as {:?}, which a careless upstream reads as {:?}",
                    raw, p.as_str(), forwarded, careless_readings(&forwarded)
                );
            }
        }
        // With literal %xx allowed, the first two properties still hold.
        let literal = Allow { encoded_percent: true };
        if let Ok(p) = normalise_with(&raw, literal) {
            check(&raw, &p, literal)?;
        }
    }
}

#[test]
fn the_careless_upstream_model_sees_through_every_spelling() {
    for escaping in [
        "/public/../private",
        "/public/%2e%2e/private",
        "/public/%252e%252e/private",
        "/public/..%252fprivate",
        "/public/..%255cprivate",
        "/public/%25c0%25ae%25c0%25ae%25c0%25afprivate",
        "/public/%c0%ae%c0%ae/private",
        "/public/..\\private",
        "/public/..;/private",
        "/public/%25252e%25252e/private",
    ] {
        assert!(escapes(escaping, "/public"), "{escaping:?}: {:?}", careless_readings(escaping));
    }
    for inside in ["/public", "/public/x", "/public/%2561", "/public/%EF%BC%8E%EF%BC%8E%EF%BC%8Fx", "/public/a/../b"] {
        assert!(!escapes(inside, "/public"), "{inside:?}: {:?}", careless_readings(inside));
    }
    // The key exists for applications that decode once: with it on, a
    // double-encoded traversal is forwarded as it came, and a careless
    // upstream leaves the prefix. That is what the default refuses.
    let literal = Allow { encoded_percent: true };
    let p = normalise_with("/public/%252e%252e/private", literal).unwrap();
    assert!(public_only().allows(&p, Some("app")));
    assert!(escapes(&p.encoded(), "/public"), "{}", p.encoded());
    assert_eq!(normalise("/public/%252e%252e/private").map_err(|e| e.code()), Err("ambiguous_path"));
}

/// The corpus: the traversal unit `<dot><dot><separator>`, each spelled
/// every way (`DOTS` × `DOTS` × `SEPARATORS`), repeated 1 to `depth` times
/// after `/public/` and followed by `private/secret`.
fn corpus(depth: usize) -> Vec<String> {
    let mut out = Vec::new();
    for d in 1..=depth {
        for a in DOTS {
            for b in DOTS {
                for s in SEPARATORS {
                    out.push(format!("/public/{}private/secret", format!("{a}{b}{s}").repeat(d)));
                }
            }
        }
    }
    out
}

/// What the corpus run saw.
#[derive(Debug, Default)]
struct Counts {
    sent: usize,
    forwarded: usize,
    refused: usize,
    escaped: usize,
    server_errors: usize,
}

/// Sends every path of `paths` through the gateway (4 kept-alive
/// connections) with `cookie`, and classifies each by what the upstream
/// recorded.
fn run_corpus(g: &Gw, up: &Recorder, cookie: &str, paths: &[String]) -> (Counts, Vec<String>) {
    let statuses: Arc<Mutex<HashMap<usize, u16>>> = Default::default();
    let threads = 4;
    std::thread::scope(|scope| {
        for t in 0..threads {
            let statuses = statuses.clone();
            let addr = g.gw.clone();
            scope.spawn(move || {
                let mut conn = RawConn::new(&addr);
                for (n, path) in paths.iter().enumerate().skip(t).step_by(threads) {
                    let r = conn
                        .send(format!("GET {path}?n={n} HTTP/1.1\r\nhost: x\r\ncookie: {cookie}\r\n\r\n").as_bytes());
                    statuses.lock().unwrap().insert(n, r.status);
                }
            });
        }
    });
    let statuses = statuses.lock().unwrap();
    let forwarded: HashMap<usize, String> = up
        .all()
        .into_iter()
        .filter_map(|s| {
            let (path, n) = s.target.split_once("?n=")?;
            Some((n.parse().ok()?, path.to_string()))
        })
        .collect();
    let mut c = Counts { sent: paths.len(), ..Default::default() };
    let mut examples = Vec::new();
    for n in 0..paths.len() {
        let status = statuses[&n];
        if status >= 500 {
            c.server_errors += 1;
            examples.push(format!("{status} for {}", paths[n]));
        }
        match forwarded.get(&n) {
            Some(f) => {
                c.forwarded += 1;
                assert_eq!(status, 200, "{} was forwarded as {f}", paths[n]);
                if escapes(f, "/public") {
                    c.escaped += 1;
                    examples.push(format!("{} forwarded as {f} escapes: {:?}", paths[n], careless_readings(f)));
                }
            }
            None => {
                assert!((400..500).contains(&status), "{} was neither forwarded nor refused: {status}", paths[n]);
                c.refused += 1;
            }
        }
    }
    (c, examples)
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

fn ok_upstream() -> Recorder {
    Recorder::start(|_, _, w| {
        let _ = std::io::Write::write_all(w, b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
    })
}

#[test]
fn a_generated_traversal_corpus_never_gets_out_of_the_allowed_prefix() {
    let up = ok_upstream();
    let g = start_gateway(up.port, None, "", "categories = [\"public\"]\n", &[]);
    let cookie = login(&g);
    let paths = corpus(8);
    let (c, examples) = run_corpus(&g, &up, &cookie, &paths);
    eprintln!(
        "traversal corpus ({} dot spellings x {} x {} separator spellings, depths 1-8): sent {}, forwarded {}, \
         refused {}, escaped {}, 5xx {}",
        DOTS.len(),
        DOTS.len(),
        SEPARATORS.len(),
        c.sent,
        c.forwarded,
        c.refused,
        c.escaped,
        c.server_errors
    );
    assert_eq!(c.forwarded + c.refused, c.sent, "{c:?}");
    assert_eq!((c.escaped, c.server_errors), (0, 0), "{c:?}: {examples:#?}");
    // Both outcomes occur: the fullwidth spellings are text and pass inside
    // /public/, everything else that would climb is refused.
    assert!(c.forwarded > 0 && c.refused > 0, "{c:?}");
}

#[test]
fn with_literal_percent_allowed_the_corpus_shows_what_the_default_prevents() {
    let up = ok_upstream();
    let g = start_gateway(up.port, None, "allow_encoded_percent = true\n", "categories = [\"public\"]\n", &[]);
    let cookie = login(&g);
    let paths = corpus(1);
    let (c, _) = run_corpus(&g, &up, &cookie, &paths);
    eprintln!(
        "traversal corpus at depth 1 with gateway.allow_encoded_percent = true: sent {}, forwarded {}, refused {}, \
         escaped {}, 5xx {}",
        c.sent, c.forwarded, c.refused, c.escaped, c.server_errors
    );
    assert_eq!(c.server_errors, 0, "{c:?}");
    assert!(c.escaped > 0, "double-encoded traversals reach the upstream with the key on: {c:?}");
}
