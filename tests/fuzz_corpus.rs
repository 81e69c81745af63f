//! The committed fuzz corpus, replayed by `cargo test`: every file under
//! `fuzz/corpus/<target>/` runs through the same check the fuzz target runs
//! (`tests/fuzz_checks/`), so every input the fuzzer kept, and every crash
//! it found, stays a regression test without cargo-fuzz (docs/fuzzing.md).
//!
//! `write_seed_corpus` (ignored; run it by hand after a format change,
//! `cargo test --test fuzz_corpus -- --ignored`) writes the hand-made
//! seeds, named `seed-*`; the rest of the corpus is what `tools/fuzz` runs
//! found and kept.

mod fuzz_checks;

use std::path::{Path, PathBuf};

fn corpus(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target)
}

/// Runs `check` on every file of the target's corpus; fails naming each
/// file whose check panicked, and fails on an empty or missing corpus.
fn replay(target: &str, check: fn(&[u8])) {
    let dir = corpus(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}; the corpus is committed with the repository", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{}: only {} inputs; the seed corpus is missing", dir.display(), files.len());
    let failed: Vec<String> = files
        .iter()
        .filter(|f| {
            let data = std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            std::panic::catch_unwind(|| check(&data)).is_err()
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(failed.is_empty(), "{target}: the check fails on {failed:?} (reproduce: cargo fuzz run {target} FILE)");
}

#[test]
fn region_open_corpus_replays() {
    replay("region_open", fuzz_checks::region_open::check);
}

#[test]
fn region_model_corpus_replays() {
    replay("region_model", fuzz_checks::region_model::check);
}

#[test]
fn gateway_path_corpus_replays() {
    replay("gateway_path", fuzz_checks::gateway_path::check);
}

#[test]
fn store_codec_corpus_replays() {
    replay("store_codec", fuzz_checks::store_codec::check);
}

#[test]
fn config_parse_corpus_replays() {
    replay("config_parse", fuzz_checks::config_parse::check);
}

/// Writes `data` as `fuzz/corpus/<target>/seed-<name>`.
fn seed(target: &str, name: &str, data: &[u8]) {
    let dir = corpus(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("seed-{name}")), data).unwrap();
}

#[test]
#[ignore = "writes the hand-made seeds into fuzz/corpus; run by hand after a format change"]
fn write_seed_corpus() {
    region_open_seeds();
    region_model_seeds();
    gateway_path_seeds();
    store_codec_seeds();
    config_parse_seeds();
}

fn region_open_seeds() {
    use fuzz_checks::region_open::{NOW_MS, config};
    use sessiond::region::{Edit, EventBuf, MetaChange, Region};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.region");
    let r = Region::create_file(&path, &config()).unwrap();
    let empty = std::fs::read(&path).unwrap();
    seed("region_open", "empty", &empty);
    let a = r.create(NOW_MS).unwrap();
    r.update(&a.id, &[("user", Some(b"ann")), ("cart", Some(&[0, 1, 2, 255]))], NOW_MS).unwrap();
    let b = r.create(NOW_MS).unwrap();
    let edit = Edit {
        changes: &[("role", Some(b"admin"))],
        meta: MetaChange {
            timeout_s: Some(Some(5)),
            deadline_ms: Some(Some(NOW_MS + 9000)),
            principal: Some(Some("alice")),
        },
        expect: None,
    };
    r.edit_ev(&b.id, &edit, NOW_MS, &mut EventBuf::discard()).unwrap();
    let c = r.create(NOW_MS).unwrap();
    r.invalidate(&c.id, NOW_MS).unwrap();
    r.flush().unwrap();
    let three = std::fs::read(&path).unwrap();
    seed("region_open", "sessions", &three);
    r.close_clean().unwrap();
    seed("region_open", "clean", &std::fs::read(&path).unwrap());
    // A torn write: an odd sequence number in the first live slot.
    let slots = r.geometry().slots_off as usize;
    let slot_size = r.geometry().slot_size as usize;
    let mut torn = three.clone();
    torn[slots + a.id.slot as usize * slot_size] |= 1;
    seed("region_open", "torn", &torn);
    seed("region_open", "truncated", &three[..three.len() - 100]);
    seed("region_open", "header-only", &three[..4096]);
    seed("region_open", "garbage", b"not a region file at all");
}

fn region_model_seeds() {
    // Five creates (one refused), writes, reads, time passing, a full
    // create that sweeps, a reboot each way.
    seed("region_model", "fill", &[0, 0, 0, 0, 0, 2, 0, 1, 10, 200, 10, 200, 0, 11]);
    seed(
        "region_model",
        "attrs",
        &[0, 4, 0, 0, 3, 7, 4, 0, 1, 16, 9, 4, 0, 2, 5, 1, 6, 0, 3, 0, 1, 2, 5, 1, 1, 9, 2, 0, 1],
    );
    seed("region_model", "limits", &[0, 4, 0, 6, 1, 4, 0, 7, 3, 18, 1, 4, 0, 7, 0, 1, 4, 0, 3, 0, 2, 4, 0, 3, 4, 2]);
    seed("region_model", "rotate", &[0, 9, 0, 2, 0, 0, 2, 1, 1, 8, 1, 8, 0, 2, 2, 1]);
    seed("region_model", "reboot", &[0, 4, 0, 0, 3, 7, 12, 1, 2, 0, 1, 12, 0, 2, 0, 0, 10, 255, 2, 0, 0]);
    seed("region_model", "expire", &[0, 0, 10, 130, 7, 0, 10, 130, 11, 2, 0, 0, 2, 1, 0, 7, 1]);
    seed("region_model", "forged", &[2, 0, 9, 9, 0, 2, 1, 3, 0, 8, 1, 5]);
}

fn gateway_path_seeds() {
    let paths = [
        "/",
        "/a/b/c",
        "/a/../b",
        "/a/%2e%2e/b",
        "//admin//x/",
        "/public/..;/admin",
        "/admin;jsessionid=abc",
        "/a/%252e%252e/b",
        "/files/my%20doc",
        "/%ef%bc%8e%ef%bc%8e/x",
        "/a/%2F/b",
        "/a/%3b/b",
        "/%c0%ae%c0%ae/",
        "/x/%25zz/y",
        "/%2561dmin",
        "/caf%c3%a9/é",
        "/a/./b/..",
        "/..",
        "/a?b",
        "/a#b",
        "/a\\b",
        "/%00",
        "*",
    ];
    for (i, p) in paths.iter().enumerate() {
        seed("gateway_path", &format!("{i:02}"), p.as_bytes());
    }
    seed("gateway_path", "long", format!("/{}", "a/".repeat(300)).as_bytes());
}

fn store_codec_seeds() {
    use sessiond::store::record::{Settings, encode};
    let attrs = vec![("user".to_string(), b"ann".to_vec()), ("\u{1}gw".to_string(), vec![0, 255])];
    let full = Settings {
        version: 7,
        timeout_s: Some(60),
        deadline_ms: Some(1_900_000_000_000),
        principal: Some("alice".into()),
    };
    let blob = encode(&attrs, &full);
    seed("store_codec", "full", &blob);
    seed("store_codec", "default", &encode(&[], &Settings::default()));
    seed("store_codec", "no-trailer", &blob[..blob.len() - (4 + 8 + 4 + 8 + 2 + 5)]);
    seed("store_codec", "one-attr", &encode(&attrs[..1], &Settings { version: 1, ..Settings::default() }));
    seed("store_codec", "moved", b"3 17 4660 00112233445566778899aabbccddeeff0011");
    seed("store_codec", "count-too-big", &[0xff, 0xff, 0xff, 0xff]);
}

fn config_parse_seeds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    seed("config_parse", "gateway-example", &std::fs::read(root.join("examples/gateway.toml")).unwrap());
    seed("config_parse", "empty", b"");
    seed(
        "config_parse",
        "contexts",
        b"listen = \"127.0.0.1:0\"\nnode_id = 3\n[sessions]\nmax_sessions = 100\ntimeout = \"30m\"\n\
          [[contexts]]\nname = \"admin\"\nmax_sessions = 10\nwhen_full = \"evict-oldest\"\n",
    );
    seed("config_parse", "set-pairs", b"max_procs = 2\n\0timeout=90\nmaxSessions=20\ncontexts[admin].timeout=5\n");
    seed("config_parse", "cluster", b"[cluster]\nstore = \"memory:\"\nstore_down = \"fail-closed\"\n");
    seed("config_parse", "bad-type", b"max_procs = \"many\"\n[events]\nwebhook = 3\n");
    seed("config_parse", "events", b"[events]\nurl = \"https://example.com/hook\"\nsecret_file = \"/nonexistent\"\n");
}
