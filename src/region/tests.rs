//! Unit tests of the region: expiry, full policies, migration, header and
//! Version cases, and a model-based property test against a HashMap.

use super::open::read_header;
use super::*;
use crate::datadir::{self, DataDirLock};
use proptest::prelude::*;
use std::collections::HashMap;

fn cfg(name: &str, sessions: u32, locks: u32) -> RegionConfig {
    RegionConfig {
        context: name.into(),
        layout: LayoutParams {
            max_sessions: sessions,
            max_values: 4,
            max_name_size: 16,
            max_value_size: 64,
            max_locks: locks,
        },
        node_id: 7,
        timeout_s: 60,
        absolute_timeout_s: 0,
        when_full: WhenFull::Refuse,
        lock_timeout: Duration::from_millis(500),
    }
}

fn fresh(c: &RegionConfig) -> (tempfile::TempDir, Region) {
    let dir = tempfile::tempdir().unwrap();
    let r = Region::create_file(&dir.path().join("r.region"), c).unwrap();
    (dir, r)
}

const T0: u64 = 1_700_000_000_000;

#[test]
fn create_get_set_remove_roundtrip() {
    let (_d, r) = fresh(&cfg("default", 10, 2));
    let m = r.create(T0).unwrap();
    assert!(m.is_new);
    r.update(&m.id, &[("a", Some(b"1")), ("b", Some(&[0xff, 0, 1]))], T0).unwrap();
    let mut buf = Vec::new();
    assert!(r.get_attr(&m.id, "b", false, T0, &mut buf).unwrap());
    assert_eq!(buf, [0xff, 0, 1]);
    r.remove_attr(&m.id, "a", T0).unwrap();
    assert!(!r.get_attr(&m.id, "a", false, T0, &mut buf).unwrap());
    let s = r.get(&m.id, true, T0 + 5).unwrap();
    assert_eq!(s.attributes, vec![("b".to_string(), vec![0xff, 0, 1])]);
    assert!(!r.get(&m.id, false, T0 + 6).unwrap().meta.is_new, "touch clears the new flag");
    let w = r.create(T0).unwrap().id;
    r.set_attr(&w, "k", b"v", T0 + 1).unwrap();
    let after_write = r.get(&w, false, T0 + 2).unwrap().meta;
    assert!(after_write.is_new, "a write alone does not mean the client came back");
    assert_eq!(after_write.last_access_ms, T0 + 1, "but it refreshes the last access");
    assert!(r.verify().is_empty(), "{:?}", r.verify());
}

#[test]
fn update_is_all_or_nothing_at_the_value_limit() {
    let (_d, r) = fresh(&cfg("default", 10, 2));
    let id = r.create(T0).unwrap().id;
    r.update(&id, &[("a", Some(b"1")), ("b", Some(b"2")), ("c", Some(b"3"))], T0).unwrap();
    let e = r.update(&id, &[("d", Some(b"4")), ("e", Some(b"5"))], T0).unwrap_err();
    assert!(matches!(e, RegionError::TooManyValues { max: 4 }));
    assert_eq!(r.get(&id, false, T0).unwrap().attributes.len(), 3, "nothing applied");
    // Add-before-remove at the limit must not write past the slot.
    r.update(&id, &[("d", Some(b"4"))], T0).unwrap();
    r.update(&id, &[("z", Some(b"9")), ("d", None)], T0).unwrap();
    let names: Vec<String> = r.get(&id, false, T0).unwrap().attributes.into_iter().map(|(n, _)| n).collect();
    assert_eq!(names.len(), 4);
    assert!(names.contains(&"z".to_string()) && !names.contains(&"d".to_string()));
    assert!(r.verify().is_empty());
    // Later changes to one name win.
    r.update(&id, &[("z", None), ("z", Some(b"again"))], T0).unwrap();
    let mut buf = Vec::new();
    assert!(r.get_attr(&id, "z", false, T0, &mut buf).unwrap());
    assert_eq!(buf, b"again");
    r.update(&id, &[("z", None)], T0).unwrap();
    // Removing one and adding two in the same call nets to four: allowed.
    r.update(&id, &[("a", None), ("d", Some(b"4")), ("e", Some(b"5"))], T0).unwrap();
    assert_eq!(r.get(&id, false, T0).unwrap().attributes.len(), 4);
    let e = r.set_attr(&id, "x", &[0u8; 65], T0).unwrap_err();
    assert!(matches!(e, RegionError::ValueTooLarge { len: 65, max: 64 }));
    let long = "n".repeat(17);
    assert!(matches!(r.set_attr(&id, &long, b"v", T0), Err(RegionError::NameTooLong { len: 17, max: 16 })));
    assert!(matches!(r.set_attr(&id, "", b"v", T0), Err(RegionError::EmptyName)));
}

#[test]
fn idle_expiry_is_lazy_and_touch_extends_it() {
    let (_d, r) = fresh(&cfg("default", 10, 2));
    let id = r.create(T0).unwrap().id;
    r.touch(&id, T0 + 50_000).unwrap();
    assert!(r.get(&id, false, T0 + 100_000).is_ok(), "touched at +50s, timeout 60s");
    assert!(matches!(r.get(&id, false, T0 + 110_000), Err(RegionError::NotFound)));
    assert_eq!(r.live(), 0, "lazy expiry freed the slot");
    assert_eq!(r.stats().total(StripeCounter::Expired), 1);
}

#[test]
fn absolute_timeout_wins_over_touches() {
    let mut c = cfg("default", 10, 2);
    c.absolute_timeout_s = 100;
    let (_d, r) = fresh(&c);
    let id = r.create(T0).unwrap().id;
    for t in (0..100_000).step_by(30_000) {
        r.touch(&id, T0 + t).unwrap();
    }
    assert!(matches!(r.get(&id, false, T0 + 100_000), Err(RegionError::NotFound)));
}

#[test]
fn reaper_frees_only_expired_slots() {
    let (_d, r) = fresh(&cfg("default", 100, 8));
    let ids: Vec<_> = (0..50).map(|_| r.create(T0).unwrap().id).collect();
    for id in &ids[..20] {
        r.touch(id, T0 + 30_000).unwrap();
    }
    let rep = r.reap(T0 + 70_000).unwrap();
    assert_eq!(rep.freed, 30);
    assert_eq!(rep.next_deadline_ms, Some(T0 + 90_000));
    assert_eq!(r.live(), 20);
    for id in &ids[..20] {
        assert!(r.get(id, false, T0 + 70_000).is_ok());
    }
    assert!(r.verify().is_empty());
    assert_eq!(r.stats().reap_sweeps, 1);
}

#[test]
fn refuse_policy_uses_every_free_slot_then_refuses() {
    let (_d, r) = fresh(&cfg("default", 13, 4));
    for _ in 0..13 {
        r.create(T0).unwrap();
    }
    assert!(matches!(r.create(T0), Err(RegionError::Full { max_sessions: 13, .. })));
    assert_eq!(r.stats().refused, 1);
}

#[test]
fn full_region_reuses_expired_slots_before_refusing() {
    let (_d, r) = fresh(&cfg("default", 4, 2));
    for _ in 0..4 {
        r.create(T0).unwrap();
    }
    assert!(r.create(T0 + 61_000).is_ok(), "expired sessions make room");
}

#[test]
fn evict_oldest_replaces_the_least_recently_used() {
    let mut c = cfg("default", 4, 1);
    c.when_full = WhenFull::EvictOldest;
    let (_d, r) = fresh(&c);
    let ids: Vec<_> = (0..4).map(|k| r.create(T0 + k).unwrap().id).collect();
    r.touch(&ids[0], T0 + 10).unwrap();
    let new = r.create(T0 + 20).unwrap();
    assert!(r.get(&ids[1], false, T0 + 20).is_err(), "ids[1] was least recently used");
    for id in [&ids[0], &ids[2], &ids[3], &new.id] {
        assert!(r.get(id, false, T0 + 20).is_ok());
    }
    assert_eq!(r.stats().total(StripeCounter::Evicted), 1);
}

#[test]
fn forged_stale_and_foreign_ids_are_not_found() {
    let (_d, r) = fresh(&cfg("default", 10, 1));
    let id = r.create(T0).unwrap().id;
    let mut forged = id;
    forged.token[0] ^= 1;
    assert!(matches!(r.get(&forged, false, T0), Err(RegionError::NotFound)));
    let mut other_ctx = id;
    other_ctx.context ^= 1;
    assert!(matches!(r.get(&other_ctx, false, T0), Err(RegionError::NotFound)));
    let mut out_of_range = id;
    out_of_range.slot = 10;
    assert!(matches!(r.get(&out_of_range, false, T0), Err(RegionError::NotFound)));
    r.invalidate(&id, T0).unwrap();
    let reused = r.create(T0).unwrap();
    assert_eq!(reused.id.slot, id.slot, "slot reused (LIFO free list)");
    assert!(matches!(r.get(&id, false, T0), Err(RegionError::NotFound)), "stale id");
}

#[test]
fn rotate_keeps_data_and_kills_old_id() {
    let (_d, r) = fresh(&cfg("default", 10, 2));
    let id = r.create(T0).unwrap().id;
    r.set_attr(&id, "k", b"v", T0).unwrap();
    let new = r.rotate(&id, T0).unwrap().id;
    assert_ne!(new, id);
    assert!(matches!(r.get(&id, false, T0), Err(RegionError::NotFound)));
    assert_eq!(r.get(&new, false, T0).unwrap().attributes[0].1, b"v");
}

#[test]
fn torn_slot_is_dropped_by_repair_and_others_survive() {
    let (_d, r) = fresh(&cfg("default", 8, 1));
    let a = r.create(T0).unwrap().id;
    let b = r.create(T0).unwrap().id;
    r.set_attr(&a, "x", b"keep", T0).unwrap();
    // Simulate a torn write: odd sequence number.
    let off = r.geo.slot_off(b.slot);
    r.wr64(off + SL_SEQ as u64, 3);
    assert_eq!(r.verify().len(), 1);
    assert!(matches!(r.get(&b, false, T0), Err(RegionError::NotFound)));
    assert!(r.verify().is_empty(), "{:?}", r.verify());
    assert_eq!(r.get(&a, false, T0).unwrap().attributes[0].1, b"keep");
    assert_eq!(r.live(), 1);
}

#[test]
fn damaged_lengths_never_panic() {
    let (_d, r) = fresh(&cfg("default", 8, 1));
    let a = r.create(T0).unwrap().id;
    r.set_attr(&a, "x", b"v", T0).unwrap();
    let off = r.geo.slot_off(a.slot);
    r.wr32(off + r.geo.entry_off(0) + E_VALUE_LEN as u64, u32::MAX);
    assert!(!r.verify().is_empty());
    // Access must not panic or read out of bounds; the value is clamped or dropped.
    let _ = r.get(&a, false, T0);
    r.wr32(off + SL_NVALUES as u64, 9999);
    assert!(matches!(r.get(&a, false, T0), Err(RegionError::NotFound)));
    assert!(r.verify().is_empty());
}

#[test]
fn over_long_names_are_absent_and_damaged_times_are_reported_not_panicked_on() {
    let (_d, r) = fresh(&cfg("default", 8, 1));
    let a = r.create(T0).unwrap().id;
    r.set_attr(&a, "x", b"v", T0).unwrap();
    let mut buf = Vec::new();
    let long = "x".repeat(5000);
    assert!(!r.get_attr(&a, &long, false, T0, &mut buf).unwrap(), "a name no entry can hold is absent");
    assert!(!r.get_attr(&a, "", false, T0, &mut buf).unwrap());
    let off = r.geo.slot_off(a.slot);
    r.wr64(off + SL_CREATED as u64, u64::MAX);
    let problems = r.verify();
    assert!(problems.iter().any(|p| p.contains("year 9999")), "{problems:?}");
    let _ = r.get(&a, false, T0);
    let _ = r.list(0, 10, T0);
}

#[test]
fn a_live_slot_with_every_time_zero_is_swept_not_leaked() {
    // The fuzz corpus input region_open/crash-92ab25cb: a live slot whose
    // last access, own timeout and deadline are all 0 had deadline 0, the
    // expiry array's "free", so no sweep, listing or eviction ever saw it.
    let (_d, r) = fresh(&cfg("default", 8, 1));
    let a = r.create(T0).unwrap().id;
    let off = r.geo.slot_off(a.slot);
    r.wr64(off + SL_LAST_ACCESS as u64, 0);
    r.wr32(off + SL_TIMEOUT as u64, 0);
    r.wr32(off + SL_FLAGS as u64, FLAG_TIMEOUT_SET);
    r.repair_stripe_locked(0, None);
    assert!(r.verify().is_empty(), "{:?}", r.verify());
    assert_eq!(r.expiry(a.slot).load(Ordering::Relaxed), 1, "a live slot's expiry word is never 0");
    assert_eq!(r.reap(T0).unwrap().freed, 1);
    assert_eq!(r.live(), 0);
}

#[test]
fn reap_clears_stale_expiry_words_on_free_slots() {
    let (_d, r) = fresh(&cfg("default", 8, 1));
    let a = r.create(T0).unwrap().id;
    r.invalidate(&a, T0).unwrap();
    r.expiry(a.slot).store(T0 - 1, Ordering::Relaxed);
    assert!(r.verify().iter().any(|p| p.contains("free slot has expiry word")));
    assert_eq!(r.reap(T0).unwrap().freed, 0);
    assert!(r.verify().is_empty(), "{:?}", r.verify());
}

#[test]
fn evict_oldest_never_evicts_while_a_slot_is_free() {
    let mut c = cfg("default", 4, 1);
    c.when_full = WhenFull::EvictOldest;
    let (_d, r) = fresh(&c);
    let ids: Vec<_> = (0..3).map(|k| r.create(T0 + k).unwrap().id).collect();
    // Make the lock-free hint claim the stripe is full while one slot is free.
    r.live_word(0).store(4, Ordering::Relaxed);
    r.create(T0 + 10).unwrap();
    for id in &ids {
        assert!(r.get(id, false, T0 + 10).is_ok(), "no live session was evicted");
    }
    assert_eq!(r.stats().total(StripeCounter::Evicted), 0);
}

fn lock_dir() -> (tempfile::TempDir, DataDirLock) {
    let d = tempfile::tempdir().unwrap();
    let l = DataDirLock::acquire(d.path()).unwrap();
    (d, l)
}

#[test]
fn reopen_keeps_sessions_and_repairs() {
    let (_d, l) = lock_dir();
    let c = cfg("default", 10, 2);
    let (r, rep) = datadir::open_regions(&l, std::slice::from_ref(&c)).unwrap().remove(0);
    assert!(rep.created);
    let id = r.create(T0).unwrap().id;
    r.set_attr(&id, "k", b"v", T0).unwrap();
    r.close_clean().unwrap();
    drop(r);
    let (r, rep) = datadir::open_regions(&l, std::slice::from_ref(&c)).unwrap().remove(0);
    assert!(!rep.created && rep.was_clean && rep.rebuilt.is_none());
    assert_eq!(r.get(&id, false, T0).unwrap().attributes[0].1, b"v");
}

#[test]
fn missing_version_file_clears_every_region() {
    let (d, l) = lock_dir();
    let c = cfg("default", 10, 2);
    let (r, _) = datadir::open_regions(&l, std::slice::from_ref(&c)).unwrap().remove(0);
    let id = r.create(T0).unwrap().id;
    drop(r);
    std::fs::remove_file(d.path().join("Version")).unwrap();
    let (r, rep) = datadir::open_regions(&l, std::slice::from_ref(&c)).unwrap().remove(0);
    assert!(rep.created);
    assert!(r.get(&id, false, T0).is_err());
    assert_eq!(std::fs::read_to_string(d.path().join("Version")).unwrap().trim(), FORMAT_VERSION.to_string());
}

#[test]
fn foreign_version_file_clears_every_region() {
    let (d, l) = lock_dir();
    let c = cfg("default", 10, 2);
    let (r, _) = datadir::open_regions(&l, std::slice::from_ref(&c)).unwrap().remove(0);
    r.create(T0).unwrap();
    drop(r);
    std::fs::write(d.path().join("Version"), "99\n").unwrap();
    let (r, rep) = datadir::open_regions(&l, std::slice::from_ref(&c)).unwrap().remove(0);
    assert!(rep.created);
    assert_eq!(r.live(), 0);
}

#[test]
fn bad_headers_are_set_aside_and_rebuilt() {
    type Damage = fn(&std::path::Path);
    let cases: [(&str, Damage); 5] = [
        ("bad magic", |p| write_at(p, 0, b"XXXXXXXX")),
        ("format version", |p| write_at(p, std::mem::offset_of!(Header, format) as u64, &9u32.to_le_bytes())),
        ("impossible layout", |p| write_at(p, std::mem::offset_of!(Header, max_locks) as u64, &0u32.to_le_bytes())),
        ("truncated", |p| {
            let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
            f.set_len(5000).unwrap();
        }),
        ("describes", |p| {
            let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
            let n = f.metadata().unwrap().len();
            f.set_len(n + 4096).unwrap();
        }),
    ];
    for (what, damage) in cases {
        let (_d, l) = lock_dir();
        let c = cfg("default", 10, 2);
        let (r, _) = datadir::open_regions(&l, std::slice::from_ref(&c)).unwrap().remove(0);
        r.create(T0).unwrap();
        let path = r.path().to_path_buf();
        drop(r);
        damage(&path);
        let err = read_header(&path).unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()), "{what}: {err}");
        let (r, rep) = datadir::open_regions(&l, std::slice::from_ref(&c)).unwrap().remove(0);
        assert!(rep.rebuilt.is_some(), "{what}");
        assert!(path.with_extension("region.corrupt").exists(), "{what}: damaged file kept for forensics");
        assert_eq!(r.live(), 0);
        assert!(r.verify().is_empty());
    }
}

fn write_at(p: &std::path::Path, off: u64, b: &[u8]) {
    use std::os::unix::fs::FileExt;
    std::fs::OpenOptions::new().write(true).open(p).unwrap().write_all_at(b, off).unwrap();
}

#[test]
fn changed_layout_migrates_what_fits_and_counts_the_rest() {
    let (_d, l) = lock_dir();
    let c = cfg("default", 20, 4);
    // Migration runs at the real clock, so the sessions must be live now.
    let t0 = crate::clock::now_ms();
    let (r, _) = datadir::open_regions(&l, std::slice::from_ref(&c)).unwrap().remove(0);
    let small = r.create(t0).unwrap().id;
    r.set_attr(&small, "k", b"short", t0).unwrap();
    let big = r.create(t0).unwrap().id;
    r.set_attr(&big, "k", &[7u8; 60], t0).unwrap();
    let seq_before = r.change_mark(small.slot).unwrap().unwrap();
    drop(r);
    // Shrink max_value_size below `big`'s value and change the lock count.
    let mut c2 = c.clone();
    c2.layout.max_value_size = 32;
    c2.layout.max_locks = 3;
    let (r, rep) = datadir::open_regions(&l, std::slice::from_ref(&c2)).unwrap().remove(0);
    assert_eq!(rep.migrated, Some((1, 1)));
    assert_eq!(r.geometry().params.max_value_size, 32);
    assert_eq!(r.get(&small, false, t0).unwrap().attributes[0].1, b"short", "same id still works");
    // The copy's change sequence continues the old one (a store holding
    // `seq_before` takes the copy as newer) and the slot is marked.
    assert_eq!(r.change_mark(small.slot).unwrap(), Some(seq_before + 1));
    assert!(r.get(&big, false, t0).is_err());
    assert!(r.verify().is_empty(), "{:?}", r.verify());
    assert_eq!(r.live(), 1);
    // The new region still allocates fine (free lists were rebuilt).
    for _ in 0..19 {
        r.create(t0).unwrap();
    }
    assert!(r.create(t0).is_err());
}

#[test]
fn files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let (_d, r) = fresh(&cfg("default", 4, 1));
    let mode = std::fs::metadata(r.path()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn second_lock_holder_is_refused_with_pid() {
    let (d, _l) = lock_dir();
    let e = DataDirLock::acquire(d.path()).unwrap_err().to_string();
    assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
}

#[derive(Debug, Clone)]
enum Op {
    Create,
    Set(usize, u8, Vec<u8>),
    Remove(usize, u8),
    Invalidate(usize),
    Rotate(usize),
    Advance(u64),
    Reap,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Create),
        5 => (any::<usize>(), 0u8..6, proptest::collection::vec(any::<u8>(), 0..70)).prop_map(|(i, n, v)| Op::Set(i, n, v)),
        2 => (any::<usize>(), 0u8..6).prop_map(|(i, n)| Op::Remove(i, n)),
        1 => any::<usize>().prop_map(Op::Invalidate),
        1 => any::<usize>().prop_map(Op::Rotate),
        1 => (0u64..40_000).prop_map(Op::Advance),
        1 => Just(Op::Reap),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn region_matches_a_hashmap_model(ops in proptest::collection::vec(op(), 1..120)) {
        let (_d, r) = fresh(&cfg("default", 6, 3));
        // model: id -> (last access, attributes)
        let mut model: HashMap<SessionId, (u64, HashMap<String, Vec<u8>>)> = HashMap::new();
        let mut known: Vec<SessionId> = Vec::new();
        let mut now = T0;
        for op in ops {
            model.retain(|_, (t, _)| now < *t + 60_000);
            match op {
                Op::Create => match r.create(now) {
                    Ok(m) => { model.insert(m.id, (now, HashMap::new())); known.push(m.id); }
                    Err(RegionError::Full { .. }) => prop_assert_eq!(model.len(), 6),
                    Err(e) => prop_assert!(false, "{e}"),
                },
                Op::Set(i, n, v) if !known.is_empty() => {
                    let id = known[i % known.len()];
                    let name = format!("n{n}");
                    let res = r.set_attr(&id, &name, &v, now);
                    match model.get_mut(&id) {
                        // Limits are checked before the lookup.
                        _ if v.len() > 64 => prop_assert!(matches!(res, Err(RegionError::ValueTooLarge { .. })), "expected ValueTooLarge"),
                        None => prop_assert!(matches!(res, Err(RegionError::NotFound)), "expected NotFound"),
                        Some((t, attrs)) => {
                            if !attrs.contains_key(&name) && attrs.len() == 4 {
                                prop_assert!(matches!(res, Err(RegionError::TooManyValues { .. })), "expected TooManyValues");
                            } else {
                                prop_assert!(res.is_ok());
                                attrs.insert(name, v);
                                *t = now;
                            }
                        }
                    }
                }
                Op::Remove(i, n) if !known.is_empty() => {
                    let id = known[i % known.len()];
                    let res = r.remove_attr(&id, &format!("n{n}"), now);
                    match model.get_mut(&id) {
                        None => prop_assert!(res.is_err()),
                        Some((t, attrs)) => { prop_assert!(res.is_ok()); attrs.remove(&format!("n{n}")); *t = now; }
                    }
                }
                Op::Invalidate(i) if !known.is_empty() => {
                    let id = known[i % known.len()];
                    prop_assert_eq!(r.invalidate(&id, now).is_ok(), model.remove(&id).is_some());
                }
                Op::Rotate(i) if !known.is_empty() => {
                    let id = known[i % known.len()];
                    match (r.rotate(&id, now), model.remove(&id)) {
                        (Ok(m), Some((_, attrs))) => { model.insert(m.id, (now, attrs)); known.push(m.id); }
                        (Err(RegionError::NotFound), None) => {}
                        (a, b) => prop_assert!(false, "rotate {:?} vs model {:?}", a.map(|m| m.id), b.is_some()),
                    }
                }
                Op::Advance(ms) => now += ms,
                Op::Reap => { r.reap(now).unwrap(); }
                _ => {}
            }
            prop_assert!(r.verify().is_empty(), "{:?}", r.verify());
        }
        model.retain(|_, (t, _)| now < *t + 60_000);
        for id in &known {
            match model.get(id) {
                Some((_, attrs)) => {
                    let s = r.get(id, false, now).unwrap();
                    let got: HashMap<String, Vec<u8>> = s.attributes.into_iter().collect();
                    prop_assert_eq!(&got, attrs);
                }
                None => prop_assert!(r.get(id, false, now).is_err()),
            }
        }
    }
}

#[test]
fn a_slot_verify_calls_damaged_is_never_served_by_get() {
    let c = cfg("default", 8, 2);
    let (_d, r) = fresh(&c);
    let id = r.create(T0).unwrap().id;
    r.set_attr(&id, "user", b"alice", T0).unwrap();
    let ok = r.create(T0).unwrap().id;
    // Plant damage that the old lookup did not check: an attribute value
    // length over max_value_size (the sequence is even and nvalues sane).
    let off = r.geo.slot_off(id.slot);
    r.wr32(off + r.geo.entry_off(0) + E_VALUE_LEN as u64, 10_000);
    let problems = r.verify();
    assert!(
        problems.iter().any(|p| p.contains(&format!("slot {}", id.slot)) && p.contains("value length")),
        "{problems:?}"
    );
    assert!(matches!(r.get(&id, false, T0), Err(RegionError::NotFound)));
    assert!(matches!(r.get_attr(&id, "user", false, T0, &mut Vec::new()), Err(RegionError::NotFound)));
    // The lookup repaired the stripe: verify is clean, the other session lives.
    assert!(r.verify().is_empty(), "{:?}", r.verify());
    assert!(r.get(&ok, false, T0).is_ok());
    // A name that is not UTF-8 is the same damage for every reader.
    let id2 = r.create(T0).unwrap().id;
    r.set_attr(&id2, "ab", b"v", T0).unwrap();
    let off2 = r.geo.slot_off(id2.slot);
    r.copy_in(off2 + r.geo.entry_off(0) + E_NAME as u64, &[0xff, 0xfe]);
    assert!(!r.verify().is_empty());
    assert!(r.snapshot_slot(id2.slot, T0).unwrap().is_none());
    assert!(matches!(r.get(&id2, false, T0), Err(RegionError::NotFound)));
}

#[test]
fn every_change_records_one_event_in_order_with_rising_change_sequence() {
    let c = cfg("default", 4, 1);
    let (_d, r) = fresh(&c);
    let mut v = Vec::new();
    let mut ev = EventBuf::collect(&mut v);
    let id = r.create_ev(T0, &mut ev).unwrap().id;
    r.update_ev(&id, &[("a", Some(b"1")), ("b", None)], T0 + 1, &mut ev).unwrap();
    r.get_ev(&id, true, T0 + 2, &mut ev).unwrap();
    r.get_ev(&id, false, T0 + 3, &mut ev).unwrap(); // a peek records nothing
    let new = r.rotate_ev(&id, T0 + 4, &mut ev).unwrap().id;
    r.invalidate_ev(&new, T0 + 5, &mut ev).unwrap();
    let gone = r.create_ev(T0, &mut ev).unwrap().id;
    assert!(r.get_ev(&gone, false, T0 + 3_600_000, &mut ev).is_err()); // lazy expiry
    assert_eq!(ev.lost(), 0);
    let kinds: Vec<_> = v.iter().map(|e| e.kind).collect();
    use EventKind::*;
    assert_eq!(kinds, [Created, Changed, Touched, Rotated, Invalidated, Created, Expired]);
    assert_eq!((v[0].id, v[1].id, v[2].id), (id, id, id));
    assert_eq!((v[3].old, v[3].id), (Some(id), new));
    assert_eq!(v[4].id, new);
    assert_eq!(v[6].id, gone);
    // The change sequence rises with every change of the slot; touches carry 0.
    let seqs: Vec<u64> = v[..5].iter().map(|e| e.seq).collect();
    assert!(seqs[0] < seqs[1] && seqs[2] == 0 && seqs[1] < seqs[3] && seqs[3] < seqs[4], "{seqs:?}");
    assert_eq!(v[1].at_ms, T0 + 1);
}

#[test]
fn a_discarding_buffer_and_a_full_buffer_never_block_or_grow_under_the_lock() {
    let c = cfg("default", 4, 1);
    let (_d, r) = fresh(&c);
    let mut ev = EventBuf::discard();
    let id = r.create_ev(T0, &mut ev).unwrap().id;
    assert_eq!(ev.lost(), 0);
    // A reap sweep reserves one stripe's room before each lock, and a
    // flushing buffer hands the events on between stripes.
    let c = cfg("default", 64, 8);
    let (_d2, r2) = fresh(&c);
    for _ in 0..64 {
        r2.create(T0).unwrap();
    }
    let seen = std::cell::RefCell::new(Vec::new());
    let flush = |v: &mut Vec<RegionEvent>| seen.borrow_mut().append(v);
    let mut v = Vec::new();
    let mut ev = EventBuf::collect_flushing(&mut v, &flush);
    assert_eq!(r2.reap_ev(T0 + 3_600_000, &mut ev).unwrap().freed, 64);
    assert_eq!(ev.lost(), 0);
    flush(&mut v);
    assert_eq!(seen.borrow().len(), 64);
    assert!(seen.borrow().iter().all(|e| e.kind == EventKind::Expired));
    assert!(r.get(&id, false, T0).is_ok());
}

#[test]
fn change_marks_follow_writes_and_clear_only_on_a_current_acknowledgement() {
    let c = cfg("default", 130, 3);
    let (_d, r) = fresh(&c);
    assert_eq!(r.changed_count(), 0);
    let id = r.create(T0).unwrap().id;
    let seq = r.change_mark(id.slot).unwrap().expect("a create marks the slot");
    assert_eq!(r.changed_slots(0, 10), vec![id.slot]);
    assert!(r.acknowledge(id.slot, seq).unwrap());
    assert_eq!(r.change_mark(id.slot).unwrap(), None);
    // Reads and touches do not mark; writes do.
    r.get(&id, true, T0).unwrap();
    assert_eq!(r.change_mark(id.slot).unwrap(), None);
    r.set_attr(&id, "a", b"1", T0).unwrap();
    let s2 = r.change_mark(id.slot).unwrap().unwrap();
    assert!(s2 > seq);
    // A stale acknowledgement (of an older change) leaves the mark.
    assert!(!r.acknowledge(id.slot, seq).unwrap());
    r.invalidate(&id, T0).unwrap();
    let s3 = r.change_mark(id.slot).unwrap().unwrap();
    assert!(!r.acknowledge(id.slot, s2).unwrap());
    assert!(r.acknowledge(id.slot, s3).unwrap());
    assert_eq!(r.changed_count(), 0);
    // Marks of slots sharing a bitmap word across stripes stay separate.
    let ids: Vec<_> = (0..130).map(|_| r.create(T0).unwrap().id).collect();
    assert_eq!(r.changed_count(), 130);
    assert_eq!(r.changed_slots(0, 1000).len(), 130);
    assert_eq!(r.changed_slots(64, 1000).len(), 66);
    for id in &ids {
        let s = r.change_mark(id.slot).unwrap().unwrap();
        assert!(r.acknowledge(id.slot, s).unwrap());
    }
    assert_eq!(r.changed_count(), 0);
    assert!(r.verify().is_empty());
}

#[test]
fn a_format_1_region_migrates_to_format_2_keeping_every_session_and_marking_it_changed() {
    let (d, l) = lock_dir();
    let c = cfg("default", 20, 4);
    let path = Region::path_for(d.path(), "default");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let old = Region::create_file_format(&path, &c, 1).unwrap();
    assert_eq!(old.stats().format_version, 1);
    let now = crate::clock::now_ms();
    let mut ids = Vec::new();
    for k in 0..20u32 {
        let id = old.create(now).unwrap().id;
        old.set_attr(&id, "k", k.to_string().as_bytes(), now).unwrap();
        if k % 2 == 0 {
            old.get(&id, true, now).unwrap(); // not new any more
        }
        ids.push(id);
    }
    assert_eq!(old.changed_count(), 0, "format 1 has no change marks");
    drop(old);
    std::fs::write(d.path().join("Version"), "1\n").unwrap();
    let (r, rep) = datadir::open_regions(&l, std::slice::from_ref(&c)).unwrap().remove(0);
    assert_eq!(rep.migrated, Some((20, 0)), "{rep:?}");
    assert!(!rep.created);
    assert_eq!(r.stats().format_version, FORMAT_VERSION);
    assert_eq!(read_header(&path).unwrap().format, FORMAT_VERSION);
    assert_eq!(std::fs::read_to_string(d.path().join("Version")).unwrap().trim(), FORMAT_VERSION.to_string());
    for (k, id) in ids.iter().enumerate() {
        let s = r.get(id, false, now).unwrap();
        assert_eq!(s.attributes, vec![("k".to_string(), k.to_string().into_bytes())]);
        assert_eq!(s.meta.is_new, k % 2 == 1);
        assert!(r.change_mark(id.slot).unwrap().is_some());
    }
    assert_eq!(r.changed_count(), 20);
    assert!(r.verify().is_empty(), "{:?}", r.verify());
}

#[test]
fn header_codec_round_trips_and_reads_the_full_timeout() {
    let mut c = cfg("ctx-name", 10, 2);
    c.timeout_s = u32::MAX;
    c.absolute_timeout_s = 77;
    let (d, _r) = fresh(&c);
    let h = read_header(&d.path().join("r.region")).unwrap();
    assert_eq!((h.timeout_s, h.absolute_timeout_s, h.context.as_str(), h.node_id), (u32::MAX, 77, "ctx-name", 7));
    assert!(h.created_ms > 0);
    // A timeout word with high bits set is damage, not a truncated read.
    write_at(&d.path().join("r.region"), H_TIMEOUT as u64, &(u32::MAX as u64 + 1).to_le_bytes());
    let e = read_header(&d.path().join("r.region")).unwrap_err().to_string();
    assert!(e.contains("idle timeout") && e.contains("4294967296"), "{e}");
}

#[test]
fn long_multibyte_names_are_checked_across_chunk_boundaries() {
    let mut c = cfg("default", 4, 1);
    c.layout.max_name_size = 1024;
    let (_d, r) = fresh(&c);
    let id = r.create(T0).unwrap().id;
    // 2-, 3- and 4-byte sequences, so some straddle the 64-byte chunks.
    let name: String = "é€😀a".repeat(100);
    assert!(name.len() <= 1024);
    r.set_attr(&id, &name, b"v", T0).unwrap();
    assert!(r.verify().is_empty(), "{:?}", r.verify());
    assert_eq!(r.get(&id, false, T0).unwrap().attributes[0].0, name);
    // Break one continuation byte in the middle: damage, not served.
    let off = r.geo.slot_off(id.slot) + r.geo.entry_off(0) + E_NAME as u64;
    r.copy_in(off + 65, b"A");
    assert!(r.verify().iter().any(|p| p.contains("not UTF-8")), "{:?}", r.verify());
    assert!(matches!(r.get(&id, false, T0), Err(RegionError::NotFound)));
}

#[test]
fn an_eviction_records_the_victim_then_the_new_session() {
    let mut c = cfg("default", 2, 1);
    c.when_full = WhenFull::EvictOldest;
    let (_d, r) = fresh(&c);
    let a = r.create(T0).unwrap().id;
    let b = r.create(T0 + 1).unwrap().id;
    let mut v = Vec::new();
    let mut ev = EventBuf::collect(&mut v);
    let n = r.create_ev(T0 + 2, &mut ev).unwrap().id;
    assert_eq!(ev.lost(), 0);
    let kinds: Vec<_> = v.iter().map(|e| (e.kind, e.id)).collect();
    assert_eq!(kinds, [(EventKind::Evicted, a), (EventKind::Created, n)], "the oldest goes first");
    assert!(v[0].seq < v[1].seq, "the same slot's change sequence rises: {v:?}");
    assert!(r.get(&b, false, T0 + 2).is_ok());
}

#[test]
fn versions_change_with_every_change_and_never_with_a_touch() {
    let (_d, r) = fresh(&cfg("default", 10, 2));
    let id = r.create(T0).unwrap().id;
    let v0 = r.get(&id, false, T0).unwrap().meta.version;
    assert_eq!(v0, 1);
    r.touch(&id, T0 + 1).unwrap();
    r.get(&id, true, T0 + 2).unwrap();
    assert_eq!(r.get(&id, false, T0 + 2).unwrap().meta.version, v0, "reads and touches keep the version");
    r.set_attr(&id, "a", b"1", T0 + 3).unwrap();
    let v1 = r.get(&id, false, T0 + 3).unwrap().meta.version;
    assert!(v1 > v0);
    // A stale If-Match changes nothing, and says which version is current.
    let stale = Edit { changes: &[("a", Some(b"2"))], expect: Some(v0), ..Edit::default() };
    match r.edit_ev(&id, &stale, T0 + 4, &mut EventBuf::discard()) {
        Err(RegionError::VersionMismatch { expected, current }) => assert_eq!((expected, current), (v0, v1)),
        other => panic!("{other:?}"),
    }
    assert_eq!(r.get(&id, false, T0 + 4).unwrap().attributes[0].1, b"1");
    let fresh_edit = Edit { changes: &[("a", Some(b"2"))], expect: Some(v1), ..Edit::default() };
    let m = r.edit_ev(&id, &fresh_edit, T0 + 5, &mut EventBuf::discard()).unwrap();
    assert!(m.version > v1);
    // Rotation and an end honour the condition too.
    assert!(matches!(
        r.rotate_if_ev(&id, Some(v1), T0 + 6, &mut EventBuf::discard()),
        Err(RegionError::VersionMismatch { .. })
    ));
    let rotated = r.rotate_if_ev(&id, Some(m.version), T0 + 6, &mut EventBuf::discard()).unwrap();
    assert!(rotated.version > m.version);
    assert!(matches!(
        r.end_ev(&rotated.id, Some(m.version), EventKind::Invalidated, T0 + 7, &mut EventBuf::discard()),
        Err(RegionError::VersionMismatch { .. })
    ));
    r.end_ev(&rotated.id, Some(rotated.version), EventKind::Invalidated, T0 + 7, &mut EventBuf::discard()).unwrap();
    assert!(matches!(r.get(&rotated.id, false, T0 + 7), Err(RegionError::NotFound)));
}

#[test]
fn a_session_s_own_timeout_and_deadline_expire_it_and_survive_a_reload() {
    let (_d, l) = lock_dir();
    let c = cfg("default", 10, 2);
    let now = crate::clock::now_ms();
    let (r, _) = datadir::open_regions(&l, std::slice::from_ref(&c)).unwrap().remove(0);
    let short = r.create(now).unwrap().id;
    let long = r.create(now).unwrap().id;
    let plain = r.create(now).unwrap().id;
    let dl = r.create(now).unwrap().id;
    let set = |id: &SessionId, meta: MetaChange<'_>| {
        r.edit_ev(id, &Edit { meta, ..Edit::default() }, now, &mut EventBuf::discard()).unwrap()
    };
    let m = set(&short, MetaChange { timeout_s: Some(Some(5)), ..Default::default() });
    assert!(m.timeout_set && m.timeout_s == 5 && m.expires_ms == now + 5000);
    set(&long, MetaChange { timeout_s: Some(Some(600)), ..Default::default() });
    let m = set(&dl, MetaChange { deadline_ms: Some(Some(now + 30_000)), ..Default::default() });
    assert_eq!((m.deadline_ms, m.expires_ms), (Some(now + 30_000), now + 30_000));
    // The reaper and the lazy check honour each session's own deadline.
    let rep = r.reap(now + 6000).unwrap();
    assert_eq!(rep.freed, 1, "only `short` is past its own 5 s: {rep:?}");
    assert!(matches!(r.get(&short, false, now + 6000), Err(RegionError::NotFound)));
    assert!(r.get(&plain, false, now + 59_000).is_ok(), "the context's 60 s for the others");
    assert!(r.get(&long, false, now + 61_000).is_ok(), "600 s outlives the context's 60 s");
    drop(r);
    // A reload with another context timeout keeps the overrides.
    let mut c2 = c.clone();
    c2.timeout_s = 120;
    c2.absolute_timeout_s = 3600;
    let (r, _) = datadir::open_regions(&l, std::slice::from_ref(&c2)).unwrap().remove(0);
    let get = |id: &SessionId| r.get(id, false, now).unwrap().meta;
    assert_eq!((get(&long).timeout_s, get(&long).timeout_set), (600, true));
    assert_eq!((get(&plain).timeout_s, get(&plain).timeout_set), (120, false));
    assert_eq!(get(&dl).deadline_ms, Some(now + 30_000), "its own deadline, not created + 3600 s");
    assert_eq!(get(&plain).expires_ms, now + 120_000);
    // Back to the context's values.
    let m = r
        .edit_ev(
            &long,
            &Edit {
                meta: MetaChange { timeout_s: Some(None), deadline_ms: Some(None), ..Default::default() },
                ..Edit::default()
            },
            now,
            &mut EventBuf::discard(),
        )
        .unwrap();
    assert_eq!((m.timeout_s, m.timeout_set, m.deadline_ms), (120, false, None));
    assert!(matches!(r.get(&dl, false, now + 30_000), Err(RegionError::NotFound)), "past its own deadline");
}

#[test]
fn principals_are_found_through_the_hash_array_and_checked_under_the_lock() {
    let (_d, r) = fresh(&cfg("default", 64, 4));
    let mut alice = Vec::new();
    for k in 0..10 {
        let id = r.create(T0).unwrap().id;
        let who = if k % 2 == 0 { "alice" } else { "bob" };
        r.edit_ev(
            &id,
            &Edit { meta: MetaChange { principal: Some(Some(who)), ..Default::default() }, ..Edit::default() },
            T0,
            &mut EventBuf::discard(),
        )
        .unwrap();
        if who == "alice" {
            alice.push(id);
        }
    }
    let (found, next) = r.principal_sessions("alice", 0, 100, T0).unwrap();
    assert_eq!(next, None);
    let mut got: Vec<_> = found.iter().map(|m| m.id).collect();
    got.sort_by_key(|i| i.slot);
    alice.sort_by_key(|i| i.slot);
    assert_eq!(got, alice);
    assert!(found.iter().all(|m| m.principal.as_deref() == Some("alice")));
    // Pages.
    let (p1, c1) = r.principal_sessions("alice", 0, 2, T0).unwrap();
    let (p2, _) = r.principal_sessions("alice", c1.unwrap(), 100, T0).unwrap();
    assert_eq!(p1.len() + p2.len(), 5);
    // A hash word pointing at a slot of someone else is checked, not trusted.
    let h = principal_hash("alice");
    let bob = r.principal_sessions("bob", 0, 1, T0).unwrap().0[0].id;
    r.principal_word(bob.slot).store(h, Ordering::Relaxed);
    assert_eq!(r.principal_sessions("alice", 0, 100, T0).unwrap().0.len(), 5);
    // Ended, cleared and expired sessions drop out.
    r.invalidate(&alice[0], T0).unwrap();
    r.edit_ev(
        &alice[1],
        &Edit { meta: MetaChange { principal: Some(None), ..Default::default() }, ..Edit::default() },
        T0,
        &mut EventBuf::discard(),
    )
    .unwrap();
    assert_eq!(r.principal_sessions("alice", 0, 100, T0).unwrap().0.len(), 3);
    assert_eq!(r.principal_sessions("alice", 0, 100, T0 + 61_000).unwrap().0.len(), 0);
    assert!(r.principal_sessions("carol", 0, 100, T0).unwrap().0.is_empty());
    let long = "x".repeat(MAX_PRINCIPAL + 1);
    assert!(matches!(
        r.edit_ev(
            &alice[2],
            &Edit { meta: MetaChange { principal: Some(Some(&long)), ..Default::default() }, ..Edit::default() },
            T0,
            &mut EventBuf::discard(),
        ),
        Err(RegionError::PrincipalTooLong { .. })
    ));
    // Repair rebuilds the hash words from the slots.
    r.principal_word(bob.slot).store(0, Ordering::Relaxed);
    let g = r.lock_stripe(r.geo.stripe_of(bob.slot)).unwrap();
    r.repair_stripe_locked(r.geo.stripe_of(bob.slot), None);
    drop(g);
    assert_eq!(r.principal_word(bob.slot).load(Ordering::Relaxed), principal_hash("bob"));
    assert!(r.verify().is_empty(), "{:?}", r.verify());
}

#[test]
fn a_format_2_region_migrates_to_format_3_keeping_sessions_and_change_sequences() {
    let (d, l) = lock_dir();
    let c = cfg("default", 20, 4);
    let path = Region::path_for(d.path(), "default");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let old = Region::create_file_format(&path, &c, 2).unwrap();
    let now = crate::clock::now_ms();
    let mut ids = Vec::new();
    for k in 0..10u32 {
        let id = old.create(now).unwrap().id;
        old.set_attr(&id, "k", k.to_string().as_bytes(), now).unwrap();
        ids.push((id, old.change_mark(id.slot).unwrap().unwrap()));
    }
    drop(old);
    std::fs::write(d.path().join("Version"), "2\n").unwrap();
    let (r, rep) = datadir::open_regions(&l, std::slice::from_ref(&c)).unwrap().remove(0);
    assert_eq!(rep.migrated, Some((10, 0)), "{rep:?}");
    assert_eq!(r.stats().format_version, 3);
    for (k, (id, seq)) in ids.iter().enumerate() {
        let s = r.get(id, false, now).unwrap();
        assert_eq!(s.attributes, vec![("k".to_string(), k.to_string().into_bytes())]);
        assert_eq!((s.meta.version, s.meta.principal.as_deref(), s.meta.timeout_set), (1, None, false));
        assert_eq!(r.change_mark(id.slot).unwrap(), Some(seq + 1));
    }
    assert!(r.verify().is_empty(), "{:?}", r.verify());
}
