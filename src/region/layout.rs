//! Every byte offset of the session region file, in one place.
//!
//! `docs/design.md` ("Region file layout") is the spec; this module is its
//! only implementation. Each offset is built from the one before it, so a
//! field cannot silently overlap its neighbour, and compile-time asserts pin
//! the sizes the format depends on. Nothing here touches memory: it only
//! computes numbers, and it validates header values read from an untrusted
//! file into a [`Geometry`] or an error string.

use std::mem::size_of;

/// Magic bytes at offset 0 of every region file.
pub const MAGIC: [u8; 8] = *b"SESSRGN\0";
/// Current on-disk format version (see the version log in docs/design.md).
pub const FORMAT_VERSION: u32 = 3;
/// Older formats this build migrates from when it opens them for serving.
pub const MIGRATES_FROM: &[u32] = &[1, 2];
/// The header occupies the first page.
pub const HEADER_SIZE: u64 = 4096;
/// Bytes reserved for each stripe: the mutex, then the stripe's metadata.
pub const STRIPE_STRIDE: u64 = 256;
/// Bytes of the pthread mutex on this platform; recorded in the header so a
/// build with a different mutex layout refuses the file (LMDB's format word).
pub const MUTEX_SIZE: u32 = size_of::<libc::pthread_mutex_t>() as u32;
/// Longest context name stored in the header.
pub const MAX_CONTEXT_NAME: usize = 64;

/// The fixed fields at the start of the header page, exactly as stored
/// (little-endian, no padding). The one codec for the header: it is read
/// with [`bytemuck::pod_read_unaligned`] from the bytes `pread` fills and
/// written with [`bytemuck::bytes_of`] at create. Words that change while
/// the file is mapped (`clean`, and the timeouts and node id rewritten at
/// open) are addressed through the `H_*` offsets below, which come from
/// this struct.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Header {
    /// [`MAGIC`].
    pub magic: [u8; 8],
    /// Format version ([`FORMAT_VERSION`] when created by this build).
    pub format: u32,
    /// [`HEADER_SIZE`].
    pub header_size: u32,
    /// [`MUTEX_SIZE`] of the build that created the file.
    pub mutex_size: u32,
    /// [`STRIPE_STRIDE`].
    pub stripe_stride: u32,
    /// N, slots.
    pub max_sessions: u32,
    /// V, attribute entries per slot.
    pub max_values: u32,
    /// Longest attribute name.
    pub max_name_size: u32,
    /// Longest attribute value.
    pub max_value_size: u32,
    /// L, stripes.
    pub max_locks: u32,
    /// Bytes per slot; must follow from the parameters.
    pub slot_size: u32,
    /// Node id of the last server that opened the file.
    pub node_id: u32,
    /// Context tag in the low 16 bits; the high 16 bits are zero.
    pub context_tag: u32,
    /// Idle timeout (s) as last configured; must fit in u32.
    pub timeout_s: u64,
    /// Absolute lifetime (s) as last configured; 0 = off.
    pub absolute_timeout_s: u64,
    /// File size; must follow from the parameters and equal the file length.
    pub file_size: u64,
    /// When the file was created, ms since the epoch (shown by `sessionctl stats`).
    pub created_ms: u64,
    /// Clean-shutdown flag (1 = `close_clean` ran last); accessed atomically in the map.
    pub clean: u32,
    /// Length of the context name, 1 to [`MAX_CONTEXT_NAME`].
    pub context_len: u32,
    /// The context name, UTF-8, zero-padded.
    pub context_name: [u8; MAX_CONTEXT_NAME],
}
const _: () = assert!(size_of::<Header>() == 160);

// ---- header fields (offsets from the start of the file), from the struct ----
pub const H_NODE_ID: usize = std::mem::offset_of!(Header, node_id);
pub const H_TIMEOUT: usize = std::mem::offset_of!(Header, timeout_s);
pub const H_ABS_TIMEOUT: usize = std::mem::offset_of!(Header, absolute_timeout_s);
pub const H_CLEAN: usize = std::mem::offset_of!(Header, clean);
pub const H_CREATED_MS: usize = std::mem::offset_of!(Header, created_ms);
/// Region-wide counters (atomic u64s) start on their own cache line.
pub const H_COUNTERS: usize = 256;
const _: () = assert!(size_of::<Header>() <= H_COUNTERS);
const _: () = assert!(std::mem::offset_of!(Header, max_sessions) == 24 && H_TIMEOUT == 56 && H_TIMEOUT % 8 == 0);
const _: () = assert!(H_CLEAN == 88 && H_CLEAN % 4 == 0 && std::mem::offset_of!(Header, context_name) == 96);

/// Region-wide counters kept in the header (index into the counter array).
/// Hot per-operation counters live per stripe instead, so processes do not
/// bounce one cache line.
#[derive(Clone, Copy, Debug)]
#[repr(usize)]
pub enum HeaderCounter {
    /// Creations refused because every stripe was full.
    Refused = 0,
    /// Lock waits that ran out of `lock_timeout`.
    LockTimeouts = 1,
    /// Completed reaper sweeps.
    ReapSweeps = 2,
    /// Duration of the last reaper sweep, microseconds.
    LastReapMicros = 3,
    /// Wall time at the end of the last sweep, ms since the epoch.
    LastReapAtMs = 4,
    /// Sessions copied in by the last migration.
    Migrated = 5,
    /// Sessions that did not fit the new layout at the last migration.
    MigrationDropped = 6,
    /// Last time (ms) a create on a full region swept expired slots.
    LastFullSweepMs = 7,
    /// Last time (ms) a "full" refusal was logged (rate limit, all processes).
    LastFullLogMs = 8,
    /// Refusals not logged since the last logged one.
    FullLogSuppressed = 9,
}
/// Number of counter words reserved in the header.
pub const HEADER_COUNTERS: usize = 64;
const _: () = assert!(H_COUNTERS as u64 + 8 * HEADER_COUNTERS as u64 <= HEADER_SIZE);

// ---- stripe entry (offsets from the start of the stripe's 256 bytes) ----
pub const S_MUTEX: usize = 0;
pub const S_FREE_HEAD: usize = 64;
pub const S_LIVE: usize = S_FREE_HEAD + size_of::<u32>();
/// First per-stripe counter (u64s, see [`StripeCounter`]).
pub const S_COUNTERS: usize = S_LIVE + size_of::<u32>();
const _: () = assert!(size_of::<libc::pthread_mutex_t>() <= S_FREE_HEAD);
const _: () = assert!(S_COUNTERS % 8 == 0);

/// Per-stripe counters. Only the lock holder writes them, except
/// `Timeouts`, which is updated atomically by the waiter that gave up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum StripeCounter {
    /// Lock acquisitions.
    Acquisitions = 0,
    /// Acquisitions that had to wait (the try-lock failed).
    Contended = 1,
    /// Waits that ran out of `lock_timeout`.
    Timeouts = 2,
    /// Owner-dead repairs of this stripe.
    Repairs = 3,
    /// Sessions created.
    Created = 4,
    /// Sessions invalidated by a client or a tool.
    Invalidated = 5,
    /// Sessions expired (lazily on access, or by the reaper).
    Expired = 6,
    /// Sessions evicted under `when_full = "evict-oldest"`.
    Evicted = 7,
    /// Session ids rotated.
    Rotated = 8,
    /// Attribute and session reads.
    Reads = 9,
    /// Attribute writes (each set or remove counts once).
    Writes = 10,
    /// Slots dropped by repair (torn writes or damaged bytes).
    Dropped = 11,
}
/// Number of per-stripe counters.
pub const STRIPE_COUNTERS: usize = 12;
const _: () = assert!(S_COUNTERS + 8 * STRIPE_COUNTERS <= STRIPE_STRIDE as usize);

// ---- slot (offsets from the start of the slot) ----
pub const SL_SEQ: usize = 0;
pub const SL_STATE: usize = SL_SEQ + size_of::<u64>();
pub const SL_FLAGS: usize = SL_STATE + size_of::<u32>();
pub const SL_TOKEN: usize = SL_FLAGS + size_of::<u32>();
/// Random bytes of a session id stored in its slot.
pub const TOKEN_LEN: usize = 18;
pub const SL_NEXT_FREE: usize = SL_TOKEN + TOKEN_LEN + 2;
pub const SL_CREATED: usize = SL_NEXT_FREE + size_of::<u32>();
pub const SL_LAST_ACCESS: usize = SL_CREATED + size_of::<u64>();
pub const SL_ABS_DEADLINE: usize = SL_LAST_ACCESS + size_of::<u64>();
pub const SL_TIMEOUT: usize = SL_ABS_DEADLINE + size_of::<u64>();
pub const SL_NVALUES: usize = SL_TIMEOUT + size_of::<u32>();
/// Change sequence (format 2): bumped under the stripe lock by every change
/// a backing store must see; never goes back, across occupants too.
pub const SL_CHANGE: usize = SL_NVALUES + size_of::<u32>();
/// Slot header size in formats 1 and 2; attribute entries follow.
pub const SL_ENTRIES_V2: usize = 80;
/// Version (format 3): the session's change count, bumped under the
/// stripe lock by every change of its attributes, timeouts or principal,
/// never by a touch. The HTTP `ETag` is made from it, and it travels with
/// the session to the store, so a condition holds across nodes.
pub const SL_VERSION: usize = SL_CHANGE + size_of::<u64>();
/// Length of the principal (format 3), 0 = none.
pub const SL_PRINCIPAL_LEN: usize = SL_VERSION + size_of::<u64>();
/// The principal's UTF-8 bytes (format 3), [`MAX_PRINCIPAL`] reserved.
pub const SL_PRINCIPAL: usize = SL_PRINCIPAL_LEN + 2 * size_of::<u32>();
/// Longest principal, bytes.
pub const MAX_PRINCIPAL: usize = 256;
/// Slot header size in format 3; attribute entries follow.
pub const SL_ENTRIES: usize = SL_PRINCIPAL + MAX_PRINCIPAL;
const _: () = assert!(SL_NEXT_FREE == 36 && SL_CREATED == 40 && SL_NVALUES == 68);
const _: () = assert!(SL_CHANGE == 72 && SL_CHANGE + size_of::<u64>() <= SL_ENTRIES_V2 && SL_VERSION == 80);
const _: () = assert!(SL_PRINCIPAL == 96 && SL_ENTRIES == 352 && SL_ENTRIES % 8 == 0);
const _: () = assert!(SL_CREATED % 8 == 0 && SL_ABS_DEADLINE % 8 == 0);

/// Slot state word: free.
pub const STATE_FREE: u32 = 0;
/// Slot state word: holds a live session.
pub const STATE_LIVE: u32 = 1;
/// Slot flag: the client has not come back with the id yet.
pub const FLAG_NEW: u32 = 1;
/// Slot flag (format 3): the idle timeout is the session's own, so a
/// reload that changes the context's `timeout` leaves it alone.
pub const FLAG_TIMEOUT_SET: u32 = 2;
/// Slot flag (format 3): the absolute deadline is the session's own.
pub const FLAG_DEADLINE_SET: u32 = 4;
/// `free_head` / `next_free` value meaning "none".
pub const NO_SLOT: u32 = u32::MAX;

// ---- attribute entry (offsets from the start of the entry) ----
pub const E_NAME_LEN: usize = 0;
pub const E_VALUE_LEN: usize = 4;
pub const E_NAME: usize = 8;

// ---- limits on the layout parameters ----
/// Largest `max_sessions` (ids carry the slot as u32; NO_SLOT is reserved).
pub const LIMIT_MAX_SESSIONS: u32 = 1 << 28;
/// Largest `max_values_per_session`.
pub const LIMIT_MAX_VALUES: u32 = 1024;
/// Largest `max_name_size`.
pub const LIMIT_MAX_NAME: u32 = 1024;
/// Largest `max_value_size` (16 MiB).
pub const LIMIT_MAX_VALUE: u32 = 16 << 20;
/// Largest `max_locks`.
pub const LIMIT_MAX_LOCKS: u32 = 4096;
/// Largest region file (1 TiB); a bigger one is almost surely a typo.
pub const LIMIT_FILE_SIZE: u64 = 1 << 40;

/// The layout parameters that fix a region file's geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayoutParams {
    /// Number of slots.
    pub max_sessions: u32,
    /// Attribute entries per slot.
    pub max_values: u32,
    /// Longest attribute name in bytes.
    pub max_name_size: u32,
    /// Longest attribute value in bytes.
    pub max_value_size: u32,
    /// Number of stripes (robust mutexes).
    pub max_locks: u32,
}

/// Offsets and sizes derived from [`LayoutParams`]; everything the region
/// code needs to address a byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// The parameters this geometry was derived from.
    pub params: LayoutParams,
    /// Offset of the first stripe entry.
    pub stripes_off: u64,
    /// Format version the offsets are for.
    pub format: u32,
    /// Offset of the expiry array (one u64 per slot).
    pub expiry_off: u64,
    /// Offset of the change-mark bitmap (one bit per slot, in u64 words);
    /// 0 in format 1, which has none.
    pub dirty_off: u64,
    /// Offset of the principal-hash array (one u64 per slot, 0 = none);
    /// 0 before format 3, which has none.
    pub principal_off: u64,
    /// Offset of slot 0.
    pub slots_off: u64,
    /// Bytes of slot header before the first attribute entry.
    pub entries_off: u64,
    /// Bytes per attribute entry.
    pub entry_size: u64,
    /// Bytes per slot.
    pub slot_size: u64,
    /// Total file size.
    pub file_size: u64,
}

const fn round_up(v: u64, to: u64) -> u64 {
    v.div_ceil(to) * to
}

impl Geometry {
    /// Validates the parameters and derives the geometry of a file in the
    /// current format; the error names the parameter, its value and the
    /// allowed range.
    pub fn new(p: LayoutParams) -> Result<Geometry, String> {
        Self::for_format(p, FORMAT_VERSION)
    }

    /// As [`Self::new`], for format `format` (the current one or one this
    /// build migrates from).
    pub fn for_format(p: LayoutParams, format: u32) -> Result<Geometry, String> {
        if format != FORMAT_VERSION && !MIGRATES_FROM.contains(&format) {
            return Err(format!(
                "format version {format}, this build reads {FORMAT_VERSION} and migrates {MIGRATES_FROM:?}"
            ));
        }
        check("max_sessions", p.max_sessions, 1, LIMIT_MAX_SESSIONS)?;
        check("max_values_per_session", p.max_values, 1, LIMIT_MAX_VALUES)?;
        check("max_name_size", p.max_name_size, 1, LIMIT_MAX_NAME)?;
        check("max_value_size", p.max_value_size, 1, LIMIT_MAX_VALUE)?;
        check("max_locks", p.max_locks, 1, LIMIT_MAX_LOCKS)?;
        if p.max_locks > p.max_sessions {
            return Err(format!(
                "max_locks = {} is larger than max_sessions = {}; use at most one lock per session",
                p.max_locks, p.max_sessions
            ));
        }
        let entry_size = round_up(8 + p.max_name_size as u64 + p.max_value_size as u64, 8);
        let entries_off = if format >= 3 { SL_ENTRIES } else { SL_ENTRIES_V2 } as u64;
        let slot_size = round_up(entries_off + p.max_values as u64 * entry_size, 64);
        let stripes_off = HEADER_SIZE;
        let expiry_off = stripes_off + p.max_locks as u64 * STRIPE_STRIDE;
        let after_expiry = expiry_off + 8 * p.max_sessions as u64;
        let (dirty_off, after_dirty) = if format >= 2 {
            (after_expiry, after_expiry + 8 * (p.max_sessions as u64).div_ceil(64))
        } else {
            (0, after_expiry)
        };
        let (principal_off, after_principal) =
            if format >= 3 { (after_dirty, after_dirty + 8 * p.max_sessions as u64) } else { (0, after_dirty) };
        let slots_off = round_up(after_principal, 4096);
        let file_size =
            slots_off.checked_add(slot_size.checked_mul(p.max_sessions as u64).ok_or("overflow")?).ok_or("overflow")?;
        if slot_size > u32::MAX as u64 {
            return Err(format!(
                "one slot would be {slot_size} bytes (max_values_per_session = {} x max_value_size = {}), \
                 more than the 4 GiB slot limit; lower max_values_per_session or max_value_size",
                p.max_values, p.max_value_size
            ));
        }
        if file_size > LIMIT_FILE_SIZE {
            return Err(format!(
                "the region would be {file_size} bytes ({slot_size} per slot x max_sessions = {}), more than the \
                 {LIMIT_FILE_SIZE}-byte limit; lower max_sessions, max_values_per_session or max_value_size",
                p.max_sessions
            ));
        }
        Ok(Geometry {
            params: p,
            format,
            stripes_off,
            expiry_off,
            dirty_off,
            principal_off,
            slots_off,
            entries_off,
            entry_size,
            slot_size,
            file_size,
        })
    }

    /// Offset of stripe `s`'s entry.
    pub fn stripe_off(&self, s: u32) -> u64 {
        debug_assert!(s < self.params.max_locks);
        self.stripes_off + s as u64 * STRIPE_STRIDE
    }

    /// Offset of slot `i`.
    pub fn slot_off(&self, i: u32) -> u64 {
        debug_assert!(i < self.params.max_sessions);
        self.slots_off + i as u64 * self.slot_size
    }

    /// Offset of entry `e` inside a slot.
    pub fn entry_off(&self, e: u32) -> u64 {
        debug_assert!(e < self.params.max_values);
        self.entries_off + e as u64 * self.entry_size
    }

    /// First slot of stripe `s`; stripes split the slots into contiguous,
    /// balanced runs: stripe `s` holds `[start(s), start(s+1))`.
    pub fn stripe_start(&self, s: u32) -> u32 {
        ((s as u64 * self.params.max_sessions as u64) / self.params.max_locks as u64) as u32
    }

    /// The stripe that owns slot `i` (the inverse of [`Self::stripe_start`]).
    pub fn stripe_of(&self, i: u32) -> u32 {
        let l = self.params.max_locks as u64;
        let s = ((i as u64 * l + l - 1) / self.params.max_sessions as u64) as u32;
        debug_assert!(self.stripe_start(s) <= i && i < self.stripe_start(s + 1));
        s
    }
}

fn check(name: &str, v: u32, lo: u32, hi: u32) -> Result<(), String> {
    if v < lo || v > hi {
        Err(format!("{name} = {v} is out of range; it must be between {lo} and {hi}"))
    } else {
        Ok(())
    }
}

/// The principal-hash word of `name`: the first 8 bytes of its SHA-256,
/// never 0 (0 means "no principal"). Lookups compare these words without
/// locks and then check each candidate's stored name under its lock.
pub fn principal_hash(name: &str) -> u64 {
    use sha2::Digest;
    let d = sha2::Sha256::digest(name.as_bytes());
    u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]).max(1)
}

/// A 16-bit tag for a context name, carried in session ids (FNV-1a folded).
/// Config validation refuses two contexts whose tags collide.
pub fn context_tag(name: &str) -> u16 {
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h ^= b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    ((h >> 16) ^ (h & 0xffff)) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: u32, v: u32, n: u32, val: u32, l: u32) -> LayoutParams {
        LayoutParams { max_sessions: s, max_values: v, max_name_size: n, max_value_size: val, max_locks: l }
    }

    #[test]
    fn geometry_offsets_follow_each_other() {
        let g = Geometry::new(p(1000, 10, 64, 4096, 16)).unwrap();
        assert_eq!(g.stripes_off, 4096);
        assert_eq!(g.expiry_off, 4096 + 16 * 256);
        assert_eq!(g.slots_off % 4096, 0);
        assert!(g.slots_off >= g.expiry_off + 8000);
        assert_eq!(g.entry_size, 8 + 64 + 4096);
        assert_eq!(g.slot_size % 64, 0);
        assert!(g.slot_size >= SL_ENTRIES as u64 + 10 * g.entry_size);
        assert!(g.principal_off >= g.dirty_off + 8 * 16 && g.slots_off >= g.principal_off + 8000);
        let old = Geometry::for_format(p(1000, 10, 64, 4096, 16), 2).unwrap();
        assert_eq!((old.entries_off, old.principal_off), (80, 0));
        assert_eq!(g.file_size, g.slots_off + 1000 * g.slot_size);
        assert_eq!(g.slot_off(1), g.slots_off + g.slot_size);
    }

    #[test]
    fn stripes_partition_slots_contiguously() {
        for (s, l) in [(10u32, 4u32), (1000, 16), (7, 7), (1, 1), (100, 64), (65, 64)] {
            let g = Geometry::new(p(s, 1, 1, 1, l)).unwrap();
            let mut expect = 0;
            for st in 0..l {
                assert_eq!(g.stripe_start(st), expect.min(s));
                let end = g.stripe_start(st + 1);
                assert!(end > g.stripe_start(st), "stripe {st} of {s}/{l} is empty");
                for i in g.stripe_start(st)..end {
                    assert_eq!(g.stripe_of(i), st);
                }
                expect = end;
            }
            assert_eq!(expect, s);
        }
    }

    #[test]
    fn geometry_rejects_bad_params_by_name() {
        let e = Geometry::new(p(0, 1, 1, 1, 1)).unwrap_err();
        assert!(e.contains("max_sessions = 0"), "{e}");
        let e = Geometry::new(p(10, 1, 1, 1, 11)).unwrap_err();
        assert!(e.contains("max_locks = 11"), "{e}");
        let e = Geometry::new(p(LIMIT_MAX_SESSIONS, 1024, 1024, 1 << 20, 1)).unwrap_err();
        assert!(e.contains("limit"), "{e}");
    }

    #[test]
    fn context_tags_differ_for_common_names() {
        assert_ne!(context_tag("default"), context_tag("admin"));
        assert_eq!(context_tag("default"), context_tag("default"));
    }
}
