//! `region_open`: a damaged region file, opened.
//!
//! The input is the whole file: it is written as `sessions.region` in a
//! fresh temporary data directory, then
//! 1. `read_header` and `Region::attach` (the tools' path, which takes no
//!    lock) answer a value, and an attached region's lock-free figures
//!    (`stats`, `live`) are read;
//! 2. `Region::open_serving` under the data directory's lock (the server's
//!    path) must succeed: a file it cannot use is set aside and rebuilt, a
//!    damaged slot is dropped. The region it returns passes `verify`, every
//!    session it lists can be read, changed, touched, rotated and ended, new
//!    sessions can be created, and a sweep leaves it passing `verify`.
//!
//! No step may panic, and every refusal is an error value. The seeds
//! (`fuzz/corpus/region_open/`) are real files of [`config`]'s layout with a
//! few sessions in them, so mutations reach the slots and not only the
//! header.

use std::time::Duration;

use sessiond::dirlock::DataDirLock;
use sessiond::region::{LayoutParams, MAX_TIME_MS, Region, RegionConfig, WhenFull, read_header};

/// The clock every operation of the region targets uses, ms (2023-11-14).
pub const NOW_MS: u64 = 1_700_000_000_000;

/// The idle timeout of [`config`], seconds.
pub const TIMEOUT_S: u32 = 60;

/// The small region both region targets use: 4 slots in 2 stripes, 3
/// attributes of at most 8-byte names and 16-byte values (a file of about
/// 10 KiB, so a seed stays small).
pub fn config() -> RegionConfig {
    RegionConfig {
        context: "fuzz".into(),
        layout: LayoutParams { max_sessions: 4, max_values: 3, max_name_size: 8, max_value_size: 16, max_locks: 2 },
        node_id: 7,
        timeout_s: TIMEOUT_S,
        absolute_timeout_s: 0,
        when_full: WhenFull::Refuse,
        lock_timeout: Duration::from_millis(100),
    }
}

/// Writes `data` as a region file and opens it both ways; panics if
/// anything but an error value comes back, or the served region is not
/// consistent.
pub fn check(data: &[u8]) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("sessions.region");
    std::fs::write(&path, data).expect("write the region file");

    let _ = read_header(&path).map(|h| h.geometry);
    if let Ok(r) = Region::attach(&path, Duration::from_millis(10)) {
        // Lock-free reads only: the file's mutex words are not initialised
        // (attach is for a live server's file, whose locks are).
        let _ = (r.stats(), r.live());
    }

    let lock = DataDirLock::acquire(dir.path()).expect("data directory lock");
    let cfg = config();
    let (region, _report) = match Region::open_serving(&path, &cfg, &lock) {
        Ok(r) => r,
        Err(e) => panic!("open_serving refused a damaged file instead of rebuilding it: {e}"),
    };
    let problems = region.verify();
    assert!(problems.is_empty(), "a region opened for serving fails verify: {problems:?}");
    exercise(&region);
    let problems = region.verify();
    assert!(problems.is_empty(), "operations left the region failing verify: {problems:?}");
}

/// Every operation on every session the region lists, then creates and a
/// sweep.
fn exercise(region: &Region) {
    let now = NOW_MS;
    let (listed, _) = region.list(0, 64, now).expect("list");
    for m in &listed {
        // Listed means live, undamaged and unexpired at `now`: readable.
        let s = region
            .get(&m.id, false, now)
            .unwrap_or_else(|e| panic!("listed session slot {} unreadable: {e}", m.id.slot));
        assert_eq!(s.meta.id, m.id);
        assert!(region.snapshot_slot(m.id.slot, now).expect("snapshot").is_some(), "listed slot not servable");
        for (name, _) in &s.attributes {
            let mut out = Vec::new();
            assert!(region.get_attr(&m.id, name, false, now, &mut out).expect("get_attr"), "attribute {name:?} lost");
        }
        if let Some(p) = &s.meta.principal {
            let (found, _) = region.principal_sessions(p, 0, 16, now).expect("principal lookup");
            assert!(found.iter().any(|f| f.id == m.id), "principal {p:?} does not find its session");
        }
        // From here on a session whose own timeout is tiny may expire:
        // only no panic, and a rotation retires the old id.
        let _ = region.get(&m.id, true, now);
        let _ = region.set_attr(&m.id, "fz", b"value", now);
        let _ = region.remove_attr(&m.id, s.attributes.first().map_or("x", |(n, _)| n.as_str()), now);
        let _ = region.touch(&m.id, now);
        if let Ok(new) = region.rotate(&m.id, now) {
            assert!(region.get(&m.id, false, now).is_err(), "the old id still works after a rotation");
            if m.id.slot % 2 == 0 {
                let _ = region.invalidate(&new.id, now);
            }
        }
    }
    for _ in 0..2 {
        let _ = region.create(now + 6);
    }
    for slot in 0..region.geometry().params.max_sessions + 1 {
        let _ = (region.ended_final(slot), region.retired(slot), region.change_mark(slot), region.ended_id(slot));
    }
    let _ = region.changed_slots(0, 16);
    // Past every deadline a slot can hold: its last access is at most
    // MAX_TIME_MS (else it is damage) and its idle timeout a u32 of seconds.
    region.reap(MAX_TIME_MS + 1000 * u32::MAX as u64 + 1).expect("reap");
    assert_eq!(region.live(), 0, "a sweep past every deadline left sessions");
}
