//! `region_model`: region operations against a plain model, with reboots,
//! as redb and sled fuzz their stores.
//!
//! The input is a program: each op is one byte (its kind) and the bytes its
//! arguments need (see [`Op`]'s decoding in [`check`]). It runs on a
//! region of [`super::region_open::config`]'s layout (4 slots, 3
//! attributes) and, side by side, on [`Model`]: a `BTreeMap` from slot to
//! the session it holds, with the rules `docs/design.md` states (idle
//! expiry, lazy freeing, a sweep on a full create at most once a second,
//! attribute limits, versions). After every op the answers must agree
//! (value, error kind, metadata, attributes), the region's live count
//! must equal the model's, and `verify` must find nothing. A reboot closes
//! the region (cleanly or not) and opens the file again for serving: every
//! session survives it.

use std::collections::BTreeMap;

use sessiond::dirlock::DataDirLock;
use sessiond::region::{Change, Region, RegionError, SessionId, SessionMeta, TOKEN_LEN};

use super::Bytes;
use super::region_open::{NOW_MS, TIMEOUT_S, config};

/// Attribute names the ops use: a few that fit, the longest that fits
/// (8 bytes), one too long and the empty one.
const NAMES: [&str; 8] = ["a", "b", "c", "dd", "é", "eeeeeeee", "ninebytes", ""];
/// The most ops one input runs.
const MAX_OPS: usize = 256;

/// One session as the model holds it.
#[derive(Clone, Debug)]
struct Entry {
    id: SessionId,
    attrs: BTreeMap<String, Vec<u8>>,
    created_ms: u64,
    last_access_ms: u64,
    version: u64,
    is_new: bool,
}

impl Entry {
    fn deadline(&self) -> u64 {
        self.last_access_ms + 1000 * TIMEOUT_S as u64
    }
}

/// What the region should hold.
struct Model {
    /// Slots the region still holds a session in, expired ones included
    /// until the region frees them (a lookup, a sweep or the full create's
    /// sweep).
    slots: BTreeMap<u32, Entry>,
    /// The time of the last sweep a full create made (0: none yet).
    last_full_sweep_ms: u64,
    max_sessions: usize,
    max_values: usize,
}

impl Model {
    /// The entry `id` names, if the region serves it at `now`. An expired
    /// one is dropped, as the region frees it on the lookup.
    fn find(&mut self, id: &SessionId, tag: u16, now: u64) -> Option<&mut Entry> {
        let e = self.slots.get(&id.slot)?;
        if id.context != tag || e.id.token != id.token {
            return None;
        }
        if now >= e.deadline() {
            self.slots.remove(&id.slot);
            return None;
        }
        self.slots.get_mut(&id.slot)
    }

    /// Frees every expired slot, as a sweep does; returns how many.
    fn sweep(&mut self, now: u64) -> u64 {
        let before = self.slots.len();
        self.slots.retain(|_, e| e.deadline() > now);
        (before - self.slots.len()) as u64
    }
}

/// What an edit should answer, checked in the order the region checks.
fn expected_edit(m: &mut Model, id: &SessionId, tag: u16, changes: &[Change<'_>], now: u64) -> Result<(), String> {
    for (name, value) in changes {
        if name.is_empty() {
            return Err("EmptyName".into());
        }
        if name.len() > 8 {
            return Err("NameTooLong".into());
        }
        if value.is_some_and(|v| v.len() > 16) {
            return Err("ValueTooLarge".into());
        }
    }
    let max_values = m.max_values;
    let Some(e) = m.find(id, tag, now) else { return Err("NotFound".into()) };
    let mut after = e.attrs.clone();
    for (name, value) in changes {
        match value {
            Some(v) => after.insert(name.to_string(), v.to_vec()),
            None => after.remove(*name),
        };
    }
    // The region counts each name's final state, so an attribute set and
    // removed again in one edit never counts.
    if after.len() > max_values {
        return Err("TooManyValues".into());
    }
    e.attrs = after;
    e.version += 1;
    e.last_access_ms = now;
    Ok(())
}

/// The error's variant name, for comparing with the model's.
fn kind(e: &RegionError) -> String {
    let d = format!("{e:?}");
    d.split([' ', '{', '(']).next().unwrap_or("").to_string()
}

/// Panics unless `meta` is what the model holds for its slot.
fn same_meta(meta: &SessionMeta, e: &Entry, what: &str) {
    assert_eq!((meta.id.slot, meta.id.token), (e.id.slot, e.id.token), "{what}: id");
    assert_eq!(meta.created_ms, e.created_ms, "{what}: created");
    assert_eq!(meta.last_access_ms, e.last_access_ms, "{what}: last access");
    assert_eq!(meta.expires_ms, e.deadline(), "{what}: deadline");
    assert_eq!(meta.is_new, e.is_new, "{what}: is_new");
    assert_eq!(meta.version, e.version, "{what}: version");
    assert_eq!(meta.values as usize, e.attrs.len(), "{what}: attribute count");
    assert_eq!(meta.timeout_s, TIMEOUT_S, "{what}: timeout");
    assert!(!meta.timeout_set && meta.deadline_ms.is_none() && meta.principal.is_none(), "{what}: settings");
}

/// The id an op names: a known one (live or not), or a forged one (a
/// known slot with a wrong token, or any slot before the first create).
fn id_arg(b: &mut Bytes<'_>, known: &[SessionId], node: u32, tag: u16) -> SessionId {
    let k = b.pick(known.len() + 1);
    if let Some(id) = known.get(k) {
        return *id;
    }
    match known.last() {
        Some(last) => {
            let mut id = *last;
            id.token[TOKEN_LEN - 1] ^= 1 + b.byte() % 255;
            id
        }
        None => SessionId { node, context: tag, slot: b.byte() as u32 % 5, token: [b.byte(); TOKEN_LEN] },
    }
}

/// Runs the program `data` on a region and on the model; panics at the
/// first disagreement.
pub fn check(data: &[u8]) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("sessions.region");
    let lock = DataDirLock::acquire(dir.path()).expect("data directory lock");
    let cfg = config();
    let mut region = Region::open_serving(&path, &cfg, &lock).expect("create the region").0;
    let tag = region.tag();
    let mut m = Model {
        slots: BTreeMap::new(),
        last_full_sweep_ms: 0,
        max_sessions: cfg.layout.max_sessions as usize,
        max_values: cfg.layout.max_values as usize,
    };
    // Every id handed out, live or not, for the ops to name.
    let mut known: Vec<SessionId> = Vec::new();
    let mut now = NOW_MS;
    let mut b = Bytes::new(data);
    let mut step = 0;
    while !b.is_empty() && step < MAX_OPS {
        step += 1;
        let op = b.pick(13);
        let what = format!("step {step} (op {op})");
        match op {
            // Create.
            0 | 1 => {
                if m.slots.len() == m.max_sessions && now >= m.last_full_sweep_ms.saturating_add(1000) {
                    m.last_full_sweep_ms = now;
                    m.sweep(now);
                }
                match region.create(now) {
                    Ok(meta) => {
                        assert!(m.slots.len() < m.max_sessions, "{what}: create succeeded on a full region");
                        assert!(!m.slots.contains_key(&meta.id.slot), "{what}: create reused a held slot");
                        let e = Entry {
                            id: meta.id,
                            attrs: BTreeMap::new(),
                            created_ms: now,
                            last_access_ms: now,
                            version: 1,
                            is_new: true,
                        };
                        same_meta(&meta, &e, &what);
                        m.slots.insert(meta.id.slot, e);
                        if known.len() < 64 {
                            known.push(meta.id);
                        }
                    }
                    Err(RegionError::Full { .. }) => {
                        assert_eq!(m.slots.len(), m.max_sessions, "{what}: create refused with free slots")
                    }
                    Err(e) => panic!("{what}: create: {e}"),
                }
            }
            // Get, with or without a touch.
            2 => {
                let id = id_arg(&mut b, &known, cfg.node_id, tag);
                let touch = b.byte() & 1 == 1;
                let got = region.get(&id, touch, now);
                match (got, m.find(&id, tag, now)) {
                    (Ok(s), Some(e)) => {
                        if touch {
                            e.last_access_ms = now;
                            e.is_new = false;
                        }
                        same_meta(&s.meta, e, &what);
                        let attrs: BTreeMap<String, Vec<u8>> = s.attributes.into_iter().collect();
                        assert_eq!(attrs, e.attrs, "{what}: attributes");
                    }
                    (Err(RegionError::NotFound), None) => {}
                    (got, want) => panic!("{what}: get answered {got:?}, the model holds {want:?}"),
                }
            }
            // One attribute.
            3 => {
                let id = id_arg(&mut b, &known, cfg.node_id, tag);
                let name = NAMES[b.pick(NAMES.len())];
                let mut out = Vec::new();
                let got = region.get_attr(&id, name, false, now, &mut out);
                match (got, m.find(&id, tag, now)) {
                    (Ok(present), Some(e)) => {
                        assert_eq!(present.then_some(&out), e.attrs.get(name), "{what}: attribute {name:?}")
                    }
                    (Err(RegionError::NotFound), None) => {}
                    (got, want) => panic!("{what}: get_attr answered {got:?}, the model holds {want:?}"),
                }
            }
            // An edit: set, remove, or up to three changes at once.
            4..=6 => {
                let id = id_arg(&mut b, &known, cfg.node_id, tag);
                let n = if op == 6 { 1 + b.pick(3) } else { 1 };
                let mut owned: Vec<(&str, Option<Vec<u8>>)> = Vec::new();
                for _ in 0..n {
                    let name = NAMES[b.pick(NAMES.len())];
                    let set = op == 4 || (op == 6 && b.byte() & 1 == 1);
                    let value = set.then(|| {
                        let len = b.pick(19);
                        let fill = b.byte();
                        vec![fill; len]
                    });
                    owned.push((name, value));
                }
                let changes: Vec<Change<'_>> = owned.iter().map(|(n, v)| (*n, v.as_deref())).collect();
                let got = region.update(&id, &changes, now).map_err(|e| kind(&e));
                let want = expected_edit(&mut m, &id, tag, &changes, now);
                assert_eq!(got, want, "{what}: update {changes:?}");
            }
            // Touch.
            7 => {
                let id = id_arg(&mut b, &known, cfg.node_id, tag);
                match (region.touch(&id, now), m.find(&id, tag, now)) {
                    (Ok(meta), Some(e)) => {
                        e.last_access_ms = now;
                        e.is_new = false;
                        same_meta(&meta, e, &what);
                    }
                    (Err(RegionError::NotFound), None) => {}
                    (got, want) => panic!("{what}: touch answered {got:?}, the model holds {want:?}"),
                }
            }
            // Invalidate.
            8 => {
                let id = id_arg(&mut b, &known, cfg.node_id, tag);
                match (region.invalidate(&id, now), m.find(&id, tag, now).is_some()) {
                    (Ok(()), true) => drop(m.slots.remove(&id.slot)),
                    (Err(RegionError::NotFound), false) => {}
                    (got, want) => panic!("{what}: invalidate answered {got:?}, the model holds it: {want}"),
                }
            }
            // Rotate: a new id for the same slot and data.
            9 => {
                let id = id_arg(&mut b, &known, cfg.node_id, tag);
                match (region.rotate(&id, now), m.find(&id, tag, now)) {
                    (Ok(meta), Some(e)) => {
                        assert_eq!(meta.id.slot, id.slot, "{what}: rotation moved the session");
                        assert_ne!(meta.id.token, id.token, "{what}: rotation kept the token");
                        e.id = meta.id;
                        e.version += 1;
                        e.last_access_ms = now;
                        same_meta(&meta, e, &what);
                        if known.len() < 64 {
                            known.push(meta.id);
                        }
                    }
                    (Err(RegionError::NotFound), None) => {}
                    (got, want) => panic!("{what}: rotate answered {got:?}, the model holds {want:?}"),
                }
            }
            // Time passes: up to 127.5 s, two idle timeouts.
            10 => now += b.byte() as u64 * 500,
            // A reaper sweep.
            11 => {
                let report = region.reap(now).unwrap_or_else(|e| panic!("{what}: reap: {e}"));
                assert_eq!(report.freed, m.sweep(now), "{what}: reap freed");
                let next = m.slots.values().map(Entry::deadline).min();
                assert_eq!(report.next_deadline_ms, next, "{what}: next deadline");
            }
            // Reboot: close (cleanly or not) and open the file again.
            _ => {
                let clean = b.byte() & 1 == 1;
                if clean {
                    region.close_clean().unwrap_or_else(|e| panic!("{what}: close_clean: {e}"));
                }
                drop(region);
                let (r, report) =
                    Region::open_serving(&path, &cfg, &lock).unwrap_or_else(|e| panic!("{what}: reopen: {e}"));
                assert!(
                    !report.created && report.rebuilt.is_none() && report.migrated.is_none() && report.repaired == 0,
                    "{what}: reopen did more than reopen: {report:?}"
                );
                assert_eq!(report.was_clean, clean, "{what}: clean flag");
                region = r;
            }
        }
        assert_eq!(region.live(), m.slots.len() as u64, "{what}: live count");
        let problems = region.verify();
        assert!(problems.is_empty(), "{what}: verify: {problems:?}");
    }
}
