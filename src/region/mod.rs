//! The shared session region: one mmap'd file per context, fixed slots,
//! striped robust locks, lazy expiry, crash repair.
//!
//! # What this module owns
//! Every access to a region's bytes. The layout lives in `layout`, the
//! mutex wrapper in `lock`, ids in [`id`], lifecycle events in
//! [`events`], and opening, validation and migration in `open`.
//!
//! # What it must never do
//! - Hand out `&` or `&mut` into the map. Slot bytes are copied in and out
//!   with raw pointers while the stripe lock is held. The only references
//!   ever formed are `&AtomicU64`/`&AtomicU32` to counter, live-count and
//!   expiry words; atomics are built for concurrent mutation, so such a
//!   reference stays sound while other processes write the same word.
//! - Trust the bytes. Another process, a crash or a disk can leave anything
//!   there: a damaged slot is dropped by stripe repair and reported as an
//!   error value, never a panic.
//! - Hold a stripe lock across anything slow: no I/O, no allocation
//!   proportional to anything but the copied value, no logging above debug
//!   except for repairs.
//!
//! See `docs/design.md` for the byte layout, the lock protocol and the
//! crash-repair argument.

pub mod events;
pub mod id;
pub(crate) mod layout;
pub(crate) mod lock;
pub(crate) mod open;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, compiler_fence};
use std::time::Duration;

use memmap2::MmapRaw;

pub use events::{EventBuf, EventKind, RegionEvent};
pub use id::SessionId;
pub use layout::{
    FORMAT_VERSION, Geometry, LIMIT_MAX_LOCKS, LIMIT_MAX_NAME, LIMIT_MAX_SESSIONS, LIMIT_MAX_VALUE, LIMIT_MAX_VALUES,
    LayoutParams, MAX_PRINCIPAL, MIGRATES_FROM, StripeCounter, TOKEN_LEN, principal_hash,
};
pub use open::{OpenReport, read_header};

use layout::*;

/// What happens when a context is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WhenFull {
    /// Refuse the new session (iPlanet's behaviour).
    #[default]
    Refuse,
    /// Evict the session nearest its deadline in the stripe the create
    /// started from (every stripe is full at that point).
    EvictOldest,
}

/// Everything needed to open or create one context's region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionConfig {
    /// Context name (also the directory name).
    pub context: String,
    /// Geometry-fixing parameters.
    pub layout: LayoutParams,
    /// Node id carried in every session id.
    pub node_id: u32,
    /// Idle timeout, seconds.
    pub timeout_s: u32,
    /// Absolute lifetime, seconds; 0 = off.
    pub absolute_timeout_s: u64,
    /// Policy at `max_sessions`.
    pub when_full: WhenFull,
    /// Longest wait for a stripe lock.
    pub lock_timeout: Duration,
}

/// Errors of region operations. Each variant says what went wrong and,
/// where a client caused it, with which value and which limit.
#[derive(Debug, thiserror::Error)]
pub enum RegionError {
    /// Unknown, forged, malformed, stale or expired id: always the same.
    #[error("session not found")]
    NotFound,
    /// Every slot is taken and the policy is "refuse".
    #[error("context '{context}' is full: all {max_sessions} sessions are in use (max_sessions)")]
    Full {
        /// Context name.
        context: String,
        /// Its capacity.
        max_sessions: u32,
    },
    /// The session already holds `max_values_per_session` attributes.
    #[error("the session already holds {max} attributes (max_values_per_session = {max}); remove one first")]
    TooManyValues {
        /// The limit.
        max: u32,
    },
    /// An attribute name is empty.
    #[error("attribute name is empty")]
    EmptyName,
    /// An attribute name is longer than `max_name_size`.
    #[error("attribute name is {len} bytes; the limit is max_name_size = {max}")]
    NameTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: u32,
    },
    /// A value is larger than `max_value_size`.
    #[error("value is {len} bytes; the limit is max_value_size = {max}")]
    ValueTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: u32,
    },
    /// The request named a version (`If-Match`) and the session has
    /// changed since: nothing was done.
    #[error("the session changed since version {expected}; it is at version {current} now")]
    VersionMismatch {
        /// The version the request expected.
        expected: u64,
        /// The session's version now.
        current: u64,
    },
    /// A principal longer than [`MAX_PRINCIPAL`] bytes (the session layer
    /// checks the rest: empty, control characters).
    #[error("principal is {len} bytes; the limit is {MAX_PRINCIPAL}")]
    PrincipalTooLong {
        /// Its length.
        len: usize,
    },
    /// The stripe lock could not be taken within `lock_timeout`.
    #[error("stripe {stripe} lock not acquired within {waited:?} (lock_timeout)")]
    LockTimeout {
        /// The stripe.
        stripe: u32,
        /// How long we waited.
        waited: Duration,
    },
    /// A mutex is unusable until the region is reopened by a server.
    #[error("stripe {stripe} lock is not recoverable; restart sessiond to re-initialise the locks")]
    LockBroken {
        /// The stripe.
        stripe: u32,
    },
    /// Region bytes failed validation.
    #[error("{path}: {what}")]
    Corrupt {
        /// The region file.
        path: PathBuf,
        /// What was wrong.
        what: String,
    },
    /// A system call failed.
    #[error("{call} on {path} failed: {source}")]
    Io {
        /// The call and its arguments.
        call: String,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Metadata of one session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionMeta {
    /// Its id.
    pub id: SessionId,
    /// Creation time, ms since the epoch.
    pub created_ms: u64,
    /// Last access, ms since the epoch.
    pub last_access_ms: u64,
    /// When it expires unless touched, ms since the epoch.
    pub expires_ms: u64,
    /// Idle timeout, seconds.
    pub timeout_s: u32,
    /// The client has not come back with the id yet.
    pub is_new: bool,
    /// Number of attributes.
    pub values: u32,
    /// Its version: bumped by every change, not by a touch (the `ETag`).
    pub version: u64,
    /// The idle timeout is the session's own, not the context's.
    pub timeout_set: bool,
    /// Its own absolute deadline, ms, if it has one (else the context's
    /// absolute lifetime applies).
    pub deadline_ms: Option<u64>,
    /// The principal it belongs to, if any.
    pub principal: Option<String>,
}

/// A change of a session's own settings, beside its attributes: each
/// field `None` leaves the setting, `Some(None)` goes back to the
/// context's (or clears), `Some(Some(v))` sets it. Bounds are the session
/// layer's to check; the region only keeps what it can store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetaChange<'a> {
    /// Idle timeout, seconds (at least 1).
    pub timeout_s: Option<Option<u32>>,
    /// Absolute deadline, ms since the epoch.
    pub deadline_ms: Option<Option<u64>>,
    /// Principal, 1 to [`MAX_PRINCIPAL`] bytes.
    pub principal: Option<Option<&'a str>>,
}

impl MetaChange<'_> {
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.timeout_s.is_none() && self.deadline_ms.is_none() && self.principal.is_none()
    }
}

/// One atomic edit of a session: attribute changes, settings changes, and
/// the version it must still be at (`If-Match`), checked under the same
/// lock as the change.
#[derive(Clone, Copy, Debug, Default)]
pub struct Edit<'a> {
    /// Attribute changes (a merge: names not listed stay).
    pub changes: &'a [Change<'a>],
    /// Settings changes.
    pub meta: MetaChange<'a>,
    /// `Some(v)`: refuse with [`RegionError::VersionMismatch`] unless the
    /// session is at version `v`.
    pub expect: Option<u64>,
}

/// A whole session, copied out of the region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// Metadata.
    pub meta: SessionMeta,
    /// Attributes in storage order.
    pub attributes: Vec<(String, Vec<u8>)>,
}

/// A session that another node held, to install in this region with its
/// own token, times and attributes (a cluster takeover).
#[derive(Clone, Copy, Debug)]
pub struct Adopt<'a> {
    /// The session's secret token (kept across nodes).
    pub token: [u8; TOKEN_LEN],
    /// When it was created, ms.
    pub created_ms: u64,
    /// Its last access, ms.
    pub last_access_ms: u64,
    /// Whether the client has not come back since it was created.
    pub is_new: bool,
    /// Its attributes.
    pub attributes: &'a [(String, Vec<u8>)],
    /// Its version (kept, so a condition holds across nodes).
    pub version: u64,
    /// Its own idle timeout, seconds, if it has one.
    pub timeout_s: Option<u32>,
    /// Its own absolute deadline, ms, if it has one.
    pub deadline_ms: Option<u64>,
    /// Its principal.
    pub principal: Option<&'a str>,
}

impl Adopt<'static> {
    /// A new session's starting state: new, no attributes, version 1, the
    /// context's timeouts, no principal.
    pub fn fresh(token: [u8; TOKEN_LEN], now_ms: u64) -> Adopt<'static> {
        Adopt {
            token,
            created_ms: now_ms,
            last_access_ms: now_ms,
            is_new: true,
            attributes: &[],
            version: 1,
            timeout_s: None,
            deadline_ms: None,
            principal: None,
        }
    }
}

/// Result of a reaper sweep.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReapReport {
    /// Slots freed.
    pub freed: u64,
    /// Earliest remaining deadline (ms), if any session is live.
    pub next_deadline_ms: Option<u64>,
    /// Stripes skipped because their lock was not acquired in time.
    pub skipped_stripes: u32,
}

/// One stripe's figures.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct StripeStats {
    /// Slots in the stripe.
    pub capacity: u32,
    /// Live slots.
    pub live: u32,
    /// Counters by [`StripeCounter`] order.
    pub counters: [u64; STRIPE_COUNTERS],
}

/// A region's figures, read without locks (each number is exact, the set
/// is not a single snapshot).
#[derive(Clone, Debug, serde::Serialize)]
pub struct RegionStats {
    /// Context name.
    pub context: String,
    /// Format version in the header.
    pub format_version: u32,
    /// Clean-shutdown flag.
    pub clean: bool,
    /// Layout parameters.
    pub max_sessions: u32,
    /// Attributes per session.
    pub max_values: u32,
    /// Longest name.
    pub max_name_size: u32,
    /// Longest value.
    pub max_value_size: u32,
    /// Stripes.
    pub max_locks: u32,
    /// File size in bytes.
    pub file_size: u64,
    /// Live sessions (sum over stripes).
    pub live: u64,
    /// Per-stripe figures.
    pub stripes: Vec<StripeStats>,
    /// Sum of the per-stripe counters.
    pub totals: [u64; STRIPE_COUNTERS],
    /// Creations refused when full.
    pub refused: u64,
    /// Lock timeouts.
    pub lock_timeouts: u64,
    /// Reaper sweeps.
    pub reap_sweeps: u64,
    /// Duration of the last sweep, µs.
    pub last_reap_micros: u64,
    /// When the file was created, ms since the epoch.
    pub created_ms: u64,
    /// Slots whose change mark is set: changed since a backing store last
    /// acknowledged them (always 0 in format 1, which has no marks).
    pub changed: u64,
}

impl RegionStats {
    /// A stripe counter summed over stripes.
    pub fn total(&self, c: StripeCounter) -> u64 {
        self.totals[c as usize]
    }
}

/// An open region. Cheap to share between threads of one process; each
/// process maps the file itself (or inherits the mapping across fork).
pub struct Region {
    map: MmapRaw,
    geo: Geometry,
    cfg: RegionConfig,
    tag: u16,
    path: PathBuf,
}

/// A held stripe lock; unlocks on drop. Not `Send`: a robust mutex must be
/// unlocked by the thread that locked it.
struct StripeGuard<'r> {
    r: &'r Region,
    s: u32,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Drop for StripeGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: the guard exists only while this thread holds the mutex,
        // and an owner-dead acquisition was made consistent before the guard
        // was built.
        unsafe { lock::unlock(self.r.mutex_ptr(self.s)) }
    }
}

/// Largest timestamp a slot may hold (9999-12-31T23:59:59.999Z in ms);
/// anything later is damage.
pub const MAX_TIME_MS: u64 = crate::clock::MAX_TIME_MS;

/// One attribute change in an atomic update: `None` removes the name.
pub type Change<'a> = (&'a str, Option<&'a [u8]>);

/// Why a slot is damaged (see `Region::slot_damage`, the one definition).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotDamage {
    /// The sequence number is odd: a write never finished.
    TornWrite {
        /// The sequence number found.
        seq: u64,
    },
    /// The state word is neither free nor live.
    UnknownState {
        /// The word found.
        state: u32,
    },
    /// More attributes than the layout allows.
    TooManyValues {
        /// The count found.
        n: u32,
        /// `max_values_per_session`.
        max: u32,
    },
    /// A timestamp past the year 9999.
    TimeTooLate {
        /// Which timestamp.
        field: &'static str,
        /// Its value, ms.
        t: u64,
    },
    /// An attribute name length outside 1..=max_name_size.
    NameLength {
        /// The entry.
        entry: u32,
        /// The length found.
        len: u32,
        /// `max_name_size`.
        max: u32,
    },
    /// An attribute value longer than max_value_size.
    ValueLength {
        /// The entry.
        entry: u32,
        /// The length found.
        len: u32,
        /// `max_value_size`.
        max: u32,
    },
    /// An attribute name that is not UTF-8.
    NameNotUtf8 {
        /// The entry.
        entry: u32,
    },
    /// A principal length over [`MAX_PRINCIPAL`].
    PrincipalLength {
        /// The length found.
        len: u32,
    },
    /// A principal that is not UTF-8.
    PrincipalNotUtf8,
}

impl std::fmt::Display for SlotDamage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            SlotDamage::TornWrite { seq } => write!(f, "odd sequence number {seq} (torn write)"),
            SlotDamage::UnknownState { state } => write!(f, "unknown state word {state}"),
            SlotDamage::TooManyValues { n, max } => {
                write!(f, "{n} attributes, more than max_values_per_session = {max}")
            }
            SlotDamage::TimeTooLate { field, t } => write!(f, "{field} time {t} ms is past the year 9999"),
            SlotDamage::NameLength { entry, len, max } => {
                write!(f, "attribute {entry}: name length {len} outside 1..={max}")
            }
            SlotDamage::ValueLength { entry, len, max } => {
                write!(f, "attribute {entry}: value length {len} over max_value_size = {max}")
            }
            SlotDamage::NameNotUtf8 { entry } => write!(f, "attribute {entry}: name is not UTF-8"),
            SlotDamage::PrincipalLength { len } => write!(f, "principal length {len} over {MAX_PRINCIPAL}"),
            SlotDamage::PrincipalNotUtf8 => write!(f, "principal is not UTF-8"),
        }
    }
}

impl Region {
    // ---------- raw access (the only place that computes pointers) ----------

    fn ptr(&self, off: u64) -> *mut u8 {
        debug_assert!(off < self.geo.file_size);
        // SAFETY: off < file_size == map length (checked at open), so the
        // result stays inside the mapping.
        unsafe { self.map.as_mut_ptr().add(off as usize) }
    }
    fn rd32(&self, off: u64) -> u32 {
        // SAFETY: every caller passes an offset derived from the geometry
        // with 4 bytes of room; read_unaligned has no alignment demand.
        unsafe { std::ptr::read_unaligned(self.ptr(off) as *const u32) }
    }
    fn rd64(&self, off: u64) -> u64 {
        // SAFETY: as rd32, with 8 bytes of room.
        unsafe { std::ptr::read_unaligned(self.ptr(off) as *const u64) }
    }
    fn wr32(&self, off: u64, v: u32) {
        // SAFETY: as rd32; callers hold the stripe lock that owns the word.
        unsafe { std::ptr::write_unaligned(self.ptr(off) as *mut u32, v) }
    }
    fn wr64(&self, off: u64, v: u64) {
        // SAFETY: as rd64; callers hold the stripe lock that owns the word.
        unsafe { std::ptr::write_unaligned(self.ptr(off) as *mut u64, v) }
    }
    fn copy_out(&self, off: u64, dst: &mut [u8]) {
        debug_assert!(off + dst.len() as u64 <= self.geo.file_size);
        // SAFETY: callers bound dst.len() by a validated length that fits
        // the field at off; dst is a private buffer, never inside the map.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr(off), dst.as_mut_ptr(), dst.len()) }
    }
    fn copy_in(&self, off: u64, src: &[u8]) {
        debug_assert!(off + src.len() as u64 <= self.geo.file_size);
        // SAFETY: callers checked src.len() against the field's limit; src
        // is a private buffer, never inside the map.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr(off), src.len()) }
    }
    fn atomic64(&self, off: u64) -> &AtomicU64 {
        debug_assert!(off % 8 == 0);
        // SAFETY: off is 8-aligned inside the page-aligned map; the word is
        // only ever accessed atomically, and the reference lives no longer
        // than &self, which keeps the mapping alive.
        unsafe { AtomicU64::from_ptr(self.ptr(off) as *mut u64) }
    }
    fn atomic32(&self, off: u64) -> &AtomicU32 {
        debug_assert!(off % 4 == 0);
        // SAFETY: as atomic64, for a 4-aligned word.
        unsafe { AtomicU32::from_ptr(self.ptr(off) as *mut u32) }
    }
    fn mutex_ptr(&self, s: u32) -> *mut libc::pthread_mutex_t {
        self.ptr(self.geo.stripe_off(s) + S_MUTEX as u64) as *mut libc::pthread_mutex_t
    }
    fn expiry(&self, i: u32) -> &AtomicU64 {
        self.atomic64(self.geo.expiry_off + 8 * i as u64)
    }
    fn live_word(&self, s: u32) -> &AtomicU32 {
        self.atomic32(self.geo.stripe_off(s) + S_LIVE as u64)
    }
    fn stripe_counter(&self, s: u32, c: StripeCounter) -> &AtomicU64 {
        self.atomic64(self.geo.stripe_off(s) + S_COUNTERS as u64 + 8 * c as u64)
    }
    fn header_counter(&self, c: HeaderCounter) -> &AtomicU64 {
        self.atomic64(H_COUNTERS as u64 + 8 * c as u64)
    }
    /// Bump a stripe counter; the caller holds the stripe lock, so a plain
    /// load and store (no locked RMW) is exact.
    fn bump(&self, s: u32, c: StripeCounter, by: u64) {
        let a = self.stripe_counter(s, c);
        a.store(a.load(Ordering::Relaxed).wrapping_add(by), Ordering::Relaxed);
    }

    // ---------- accessors ----------

    /// The region's geometry.
    pub fn geometry(&self) -> &Geometry {
        &self.geo
    }
    /// The configuration it was opened with.
    pub fn config(&self) -> &RegionConfig {
        &self.cfg
    }
    /// The context name.
    pub fn context(&self) -> &str {
        &self.cfg.context
    }
    /// The 16-bit context tag carried in ids.
    pub fn tag(&self) -> u16 {
        self.tag
    }
    /// The file path.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Live sessions, summed over stripes without locking.
    pub fn live(&self) -> u64 {
        (0..self.geo.params.max_locks).map(|s| self.live_word(s).load(Ordering::Relaxed) as u64).sum()
    }

    // ---------- locking ----------

    fn lock_stripe(&self, s: u32) -> Result<StripeGuard<'_>, RegionError> {
        let m = self.mutex_ptr(s);
        // SAFETY: m points at a mutex initialised when the region was created
        // or opened for serving.
        match unsafe { lock::lock(m, self.cfg.lock_timeout) } {
            Ok(lock::Acquired::Clean { contended }) => {
                let g = StripeGuard { r: self, s, _not_send: std::marker::PhantomData };
                self.bump(s, StripeCounter::Acquisitions, 1);
                if contended {
                    self.bump(s, StripeCounter::Contended, 1);
                }
                Ok(g)
            }
            Ok(lock::Acquired::OwnerDead) => {
                // Repair first, then mark consistent, then build the guard:
                // unlocking without consistent would make it unrecoverable.
                let dropped = self.repair_stripe_locked(s, None);
                self.bump(s, StripeCounter::Repairs, 1);
                log::warn!(
                    "{}: stripe {s}: previous lock owner died; repaired the stripe, dropped {dropped} half-written slot(s)",
                    self.path.display()
                );
                // SAFETY: we hold m in the owner-dead state and repaired it.
                if let Err(e) = unsafe { lock::consistent(m) } {
                    log::error!(
                        "{}: stripe {s}: {e}; the lock is unusable until sessiond restarts",
                        self.path.display()
                    );
                    // Unlocking without consistent makes the mutex
                    // ENOTRECOVERABLE, so every process gets LockBroken at
                    // once instead of waiting out lock_timeout on a lock
                    // this thread would otherwise keep forever.
                    // SAFETY: this thread holds m.
                    unsafe { lock::unlock(m) };
                    return Err(RegionError::LockBroken { stripe: s });
                }
                self.bump(s, StripeCounter::Acquisitions, 1);
                Ok(StripeGuard { r: self, s, _not_send: std::marker::PhantomData })
            }
            Err(lock::LockFailure::Timeout) => {
                self.stripe_counter(s, StripeCounter::Timeouts).fetch_add(1, Ordering::Relaxed);
                self.header_counter(HeaderCounter::LockTimeouts).fetch_add(1, Ordering::Relaxed);
                Err(RegionError::LockTimeout { stripe: s, waited: self.cfg.lock_timeout })
            }
            Err(lock::LockFailure::NotRecoverable) => Err(RegionError::LockBroken { stripe: s }),
            Err(lock::LockFailure::Os(e)) => Err(RegionError::Io {
                call: format!("pthread_mutex_timedlock(stripe {s})"),
                path: self.path.clone(),
                source: e,
            }),
        }
    }

    /// Test-only fault hook: take a stripe's lock and keep it until the
    /// returned guard is dropped (or the process dies or is stopped).
    #[cfg(feature = "fault-injection")]
    pub fn fault_hold_stripe(&self, stripe: u32) -> Result<impl Drop + '_, RegionError> {
        self.lock_stripe(stripe)
    }

    /// Test-only fault hook: start a write to the session (odd sequence),
    /// scribble half a value, and call `then` while still holding the lock
    /// mid-write. Used to SIGKILL a writer at the worst moment.
    #[cfg(feature = "fault-injection")]
    pub fn fault_torn_write(&self, id: &SessionId, now_ms: u64, then: impl FnOnce()) -> Result<(), RegionError> {
        let (g, off) = self.find(id, now_ms, &mut EventBuf::discard())?;
        self.begin_write(off);
        self.wr32(off + self.geo.entry_off(0), 0xdead);
        then();
        self.end_write(off);
        drop(g);
        Ok(())
    }

    /// The stripe of a slot.
    pub fn stripe_of(&self, slot: u32) -> u32 {
        self.geo.stripe_of(slot)
    }

    // ---------- slot helpers (stripe lock held) ----------

    /// Marks a slot as being written (odd sequence). The compiler fence
    /// keeps the data stores after this one, so a process killed mid-write
    /// always leaves an odd number behind (x86-64 and AArch64 stores from one
    /// thread reach memory that survives the process in program order once
    /// the compiler keeps it).
    fn begin_write(&self, off: u64) {
        let seq = self.atomic64(off + SL_SEQ as u64);
        seq.store(seq.load(Ordering::Relaxed) | 1, Ordering::Relaxed);
        compiler_fence(Ordering::SeqCst);
    }
    /// Marks the write done (even sequence), after every data store.
    fn end_write(&self, off: u64) {
        compiler_fence(Ordering::SeqCst);
        let seq = self.atomic64(off + SL_SEQ as u64);
        seq.store((seq.load(Ordering::Relaxed) | 1).wrapping_add(1), Ordering::Release);
    }
    fn read_token(&self, off: u64) -> [u8; TOKEN_LEN] {
        let mut t = [0u8; TOKEN_LEN];
        self.copy_out(off + SL_TOKEN as u64, &mut t);
        t
    }
    /// The slot's deadline, ms: its idle deadline, or its absolute one if
    /// earlier. Never 0, which the expiry array reserves for a free slot: a
    /// damaged live slot whose times and timeout are all 0 (found by the
    /// `region_open` fuzz target) expires at 1 ms, so the sweep frees it,
    /// instead of holding a slot the reaper, `list` and eviction never see.
    fn deadline_of(&self, off: u64) -> u64 {
        let idle =
            self.rd64(off + SL_LAST_ACCESS as u64).saturating_add(1000 * self.rd32(off + SL_TIMEOUT as u64) as u64);
        match self.rd64(off + SL_ABS_DEADLINE as u64) {
            0 => idle,
            abs => idle.min(abs),
        }
        .max(1)
    }
    fn id_of(&self, slot: u32, off: u64) -> SessionId {
        SessionId { node: self.cfg.node_id, context: self.tag, slot, token: self.read_token(off) }
    }
    fn meta_of(&self, slot: u32, off: u64) -> SessionMeta {
        let flags = self.rd32(off + SL_FLAGS as u64);
        SessionMeta {
            id: self.id_of(slot, off),
            created_ms: self.rd64(off + SL_CREATED as u64),
            last_access_ms: self.rd64(off + SL_LAST_ACCESS as u64),
            expires_ms: self.deadline_of(off),
            timeout_s: self.rd32(off + SL_TIMEOUT as u64),
            is_new: flags & FLAG_NEW != 0,
            values: self.rd32(off + SL_NVALUES as u64),
            version: if self.v3() { self.rd64(off + SL_VERSION as u64) } else { 0 },
            timeout_set: flags & FLAG_TIMEOUT_SET != 0,
            deadline_ms: (flags & FLAG_DEADLINE_SET != 0).then(|| self.rd64(off + SL_ABS_DEADLINE as u64)),
            principal: self.read_principal(off),
        }
    }

    /// Whether the file has format 3's per-session fields (version,
    /// principal); a serving region always has, an old file being migrated
    /// may not.
    fn v3(&self) -> bool {
        self.geo.principal_off != 0
    }
    /// Slot `i`'s principal-hash word (format 3 only).
    fn principal_word(&self, i: u32) -> &AtomicU64 {
        debug_assert!(self.v3());
        self.atomic64(self.geo.principal_off + 8 * i as u64)
    }
    /// The stored principal's length, bounded by the field (stripe lock
    /// held; `slot_damage` refuses a longer one).
    fn principal_len(&self, off: u64) -> usize {
        if self.v3() { (self.rd32(off + SL_PRINCIPAL_LEN as u64) as usize).min(MAX_PRINCIPAL) } else { 0 }
    }
    /// The slot's principal, if any (stripe lock held).
    fn read_principal(&self, off: u64) -> Option<String> {
        let n = self.principal_len(off);
        if n == 0 {
            return None;
        }
        let mut b = vec![0u8; n];
        self.copy_out(off + SL_PRINCIPAL as u64, &mut b);
        String::from_utf8(b).ok()
    }
    /// Whether the slot's principal is `name` (stripe lock held).
    fn principal_is(&self, off: u64, name: &str) -> bool {
        if self.principal_len(off) != name.len() {
            return false;
        }
        let mut b = [0u8; MAX_PRINCIPAL];
        self.copy_out(off + SL_PRINCIPAL as u64, &mut b[..name.len()]);
        &b[..name.len()] == name.as_bytes()
    }
    /// Stores the slot's principal and its hash word (stripe lock held,
    /// inside a write; `name` fits, checked by the caller).
    fn write_principal(&self, i: u32, off: u64, name: Option<&str>) {
        if !self.v3() {
            return;
        }
        let name = name.unwrap_or("");
        debug_assert!(name.len() <= MAX_PRINCIPAL);
        self.wr32(off + SL_PRINCIPAL_LEN as u64, name.len() as u32);
        self.copy_in(off + SL_PRINCIPAL as u64, name.as_bytes());
        let h = if name.is_empty() { 0 } else { principal_hash(name) };
        self.principal_word(i).store(h, Ordering::Relaxed);
    }
    /// Bumps the slot's version (stripe lock held, inside a write).
    fn bump_version(&self, off: u64) -> u64 {
        if !self.v3() {
            return 0;
        }
        let v = self.rd64(off + SL_VERSION as u64).wrapping_add(1).max(1);
        self.wr64(off + SL_VERSION as u64, v);
        v
    }

    /// The one definition of a damaged slot, used by lookup (`find`, hence
    /// every read and write), `snapshot_slot`, `verify` and repair: a slot
    /// this calls damaged is never served. Stripe lock held; allocates
    /// nothing (the reason is an enum, formatted by whoever reports it).
    fn slot_damage(&self, off: u64) -> Option<SlotDamage> {
        let p = &self.geo.params;
        let seq = self.atomic64(off + SL_SEQ as u64).load(Ordering::Relaxed);
        if seq & 1 == 1 {
            return Some(SlotDamage::TornWrite { seq });
        }
        match self.rd32(off + SL_STATE as u64) {
            STATE_FREE => return None,
            STATE_LIVE => {}
            state => return Some(SlotDamage::UnknownState { state }),
        }
        let n = self.rd32(off + SL_NVALUES as u64);
        if n > p.max_values {
            return Some(SlotDamage::TooManyValues { n, max: p.max_values });
        }
        for (field, at) in
            [("created", SL_CREATED), ("last access", SL_LAST_ACCESS), ("absolute deadline", SL_ABS_DEADLINE)]
        {
            let t = self.rd64(off + at as u64);
            if t > MAX_TIME_MS {
                return Some(SlotDamage::TimeTooLate { field, t });
            }
        }
        if self.v3() {
            let len = self.rd32(off + SL_PRINCIPAL_LEN as u64);
            if len as usize > MAX_PRINCIPAL {
                return Some(SlotDamage::PrincipalLength { len });
            }
            if !self.is_utf8(off + SL_PRINCIPAL as u64, len as usize) {
                return Some(SlotDamage::PrincipalNotUtf8);
            }
        }
        for e in 0..n {
            let eo = off + self.geo.entry_off(e);
            let nl = self.rd32(eo + E_NAME_LEN as u64);
            let vl = self.rd32(eo + E_VALUE_LEN as u64);
            if nl == 0 || nl > p.max_name_size {
                return Some(SlotDamage::NameLength { entry: e, len: nl, max: p.max_name_size });
            }
            if vl > p.max_value_size {
                return Some(SlotDamage::ValueLength { entry: e, len: vl, max: p.max_value_size });
            }
            if !self.is_utf8(eo + E_NAME as u64, nl as usize) {
                return Some(SlotDamage::NameNotUtf8 { entry: e });
            }
        }
        None
    }

    /// Whether the `len` bytes at `off` are UTF-8, checked through a
    /// 64-byte stack buffer (no allocation, and no 1 KiB buffer to zero on
    /// every lookup): a sequence cut at a chunk's end is carried over.
    fn is_utf8(&self, off: u64, len: usize) -> bool {
        // Fast path, no copy: ASCII names (the usual case) read as u64 words
        // with no high bit set. Anything else takes the general check below.
        let mut i = 0;
        while i + 8 <= len {
            if self.rd64(off + i as u64) & 0x8080_8080_8080_8080 != 0 {
                break;
            }
            i += 8;
        }
        if i + 8 > len {
            let mut tail = [0u8; 8];
            self.copy_out(off + i as u64, &mut tail[..len - i]);
            if tail.iter().all(|b| b.is_ascii()) {
                return true;
            }
        }
        let mut buf = [0u8; 64];
        let (mut done, mut carry) = (0usize, 0usize);
        while done < len {
            let n = (len - done).min(buf.len() - carry);
            self.copy_out(off + done as u64, &mut buf[carry..carry + n]);
            done += n;
            let have = carry + n;
            match std::str::from_utf8(&buf[..have]) {
                Ok(_) => carry = 0,
                // An incomplete sequence at the end (at most 3 bytes) may
                // complete in the next chunk; anything else is invalid.
                Err(e) if e.error_len().is_none() && done < len => {
                    let valid = e.valid_up_to();
                    buf.copy_within(valid..have, 0);
                    carry = have - valid;
                }
                Err(_) => return false,
            }
        }
        carry == 0
    }

    /// Repairs stripe `s` while holding its lock: drops every torn or
    /// damaged slot, rebuilds the free list, the live count and the expiry
    /// words. If `retime` is given, re-applies the idle timeout and absolute
    /// lifetime to every live slot. Returns how many slots were dropped.
    fn repair_stripe_locked(&self, s: u32, retime: Option<(u32, u64)>) -> u64 {
        let (start, end) = (self.geo.stripe_start(s), self.geo.stripe_start(s + 1));
        let mut dropped = 0;
        let mut live = 0u32;
        let mut head = NO_SLOT;
        for i in (start..end).rev() {
            let off = self.geo.slot_off(i);
            if let Some(why) = self.slot_damage(off) {
                log::warn!("{}: slot {i} (stripe {s}) dropped by repair: {why}", self.path.display());
                dropped += 1;
                self.clear_slot(i, off);
            }
            if self.rd32(off + SL_STATE as u64) == STATE_LIVE {
                // A session's own timeout and deadline survive a reload.
                let flags = self.rd32(off + SL_FLAGS as u64);
                if let Some((timeout, abs)) = retime {
                    if flags & FLAG_TIMEOUT_SET == 0 {
                        self.wr32(off + SL_TIMEOUT as u64, timeout);
                    }
                    if flags & FLAG_DEADLINE_SET == 0 {
                        let abs_deadline = if abs == 0 {
                            0
                        } else {
                            self.rd64(off + SL_CREATED as u64).saturating_add(abs.saturating_mul(1000))
                        };
                        self.wr64(off + SL_ABS_DEADLINE as u64, abs_deadline);
                    }
                }
                live += 1;
                self.expiry(i).store(self.deadline_of(off), Ordering::Relaxed);
                if self.v3() {
                    let h = self.read_principal(off).map_or(0, |p| principal_hash(&p));
                    self.principal_word(i).store(h, Ordering::Relaxed);
                }
            } else {
                self.wr32(off + SL_NEXT_FREE as u64, head);
                head = i;
                self.expiry(i).store(0, Ordering::Relaxed);
                if self.v3() {
                    self.principal_word(i).store(0, Ordering::Relaxed);
                }
            }
        }
        self.wr32(self.geo.stripe_off(s) + S_FREE_HEAD as u64, head);
        self.live_word(s).store(live, Ordering::Relaxed);
        if dropped > 0 {
            self.bump(s, StripeCounter::Dropped, dropped);
        }
        dropped
    }

    /// Turns a damaged slot into a free one; the sequence becomes even
    /// only after the state says free, so a repairer killed here leaves a
    /// slot the next repair drops again. The change mark is set: a store
    /// that held the session must learn it is gone.
    fn clear_slot(&self, i: u32, off: u64) {
        self.begin_write(off);
        self.mark_changed(i, off);
        self.wr32(off + SL_STATE as u64, STATE_FREE);
        self.wr32(off + SL_FLAGS as u64, 0);
        self.wr32(off + SL_NVALUES as u64, 0);
        self.end_write(off);
    }

    /// Frees a live slot and records `kind` for `id` (stripe lock held).
    #[allow(clippy::too_many_arguments)]
    fn free_slot(&self, s: u32, i: u32, off: u64, kind: EventKind, id: SessionId, now_ms: u64, ev: &mut EventBuf<'_>) {
        self.begin_write(off);
        let seq = self.mark_changed(i, off);
        self.wr32(off + SL_STATE as u64, STATE_FREE);
        self.wr32(off + SL_NVALUES as u64, 0);
        let so = self.geo.stripe_off(s);
        self.wr32(off + SL_NEXT_FREE as u64, self.rd32(so + S_FREE_HEAD as u64));
        self.wr32(so + S_FREE_HEAD as u64, i);
        self.end_write(off);
        self.expiry(i).store(0, Ordering::Relaxed);
        if self.v3() {
            self.principal_word(i).store(0, Ordering::Relaxed);
        }
        let lw = self.live_word(s);
        lw.store(lw.load(Ordering::Relaxed).saturating_sub(1), Ordering::Relaxed);
        self.emit(s, ev, RegionEvent { kind, id, old: None, seq, at_ms: now_ms });
    }

    /// Sets slot `i`'s change mark and bumps its change sequence; returns
    /// the new sequence. Called right after `begin_write`, before any data
    /// store, so a process killed anywhere in the write leaves the mark
    /// set (stripe lock held). Format-1 files have no marks.
    fn mark_changed(&self, i: u32, off: u64) -> u64 {
        if self.geo.dirty_off == 0 {
            return 0;
        }
        let c = self.atomic64(off + SL_CHANGE as u64);
        let seq = c.load(Ordering::Relaxed).wrapping_add(1);
        c.store(seq, Ordering::Relaxed);
        // Words are shared by neighbouring stripes: a locked OR.
        self.dirty_word(i).fetch_or(1u64 << (i % 64), Ordering::Release);
        seq
    }

    /// Whether slot `i` carries a change mark (the store has not heard of
    /// its last change).
    fn is_marked(&self, i: u32) -> bool {
        self.geo.dirty_off != 0 && self.dirty_word(i).load(Ordering::Acquire) & (1u64 << (i % 64)) != 0
    }

    fn dirty_word(&self, i: u32) -> &AtomicU64 {
        debug_assert!(self.geo.dirty_off != 0);
        self.atomic64(self.geo.dirty_off + 8 * (i as u64 / 64))
    }

    /// The one place lifecycle events go through: counts the lifecycle
    /// kinds, then stores the event in reserved room (stripe lock held; no
    /// call out, no allocation).
    #[inline]
    fn emit(&self, s: u32, ev: &mut EventBuf<'_>, e: RegionEvent) {
        let c = match e.kind {
            EventKind::Created => Some(StripeCounter::Created),
            EventKind::Rotated => Some(StripeCounter::Rotated),
            EventKind::Invalidated => Some(StripeCounter::Invalidated),
            EventKind::Expired => Some(StripeCounter::Expired),
            EventKind::Evicted => Some(StripeCounter::Evicted),
            EventKind::Changed | EventKind::Touched | EventKind::Conflict => None,
        };
        if let Some(c) = c {
            self.bump(s, c, 1);
        }
        ev.push(e);
    }

    /// Locks the id's stripe and checks the id; returns the guard and the
    /// slot offset. Expired sessions are freed here (lazy expiry).
    /// Events a single-session operation may record: a lazy expiry, or an
    /// eviction plus a creation, with one to spare.
    const OP_EVENTS: usize = 3;

    fn find(&self, id: &SessionId, now_ms: u64, ev: &mut EventBuf<'_>) -> Result<(StripeGuard<'_>, u64), RegionError> {
        if id.context != self.tag || id.slot >= self.geo.params.max_sessions {
            return Err(RegionError::NotFound);
        }
        ev.before_lock(Self::OP_EVENTS);
        let s = self.geo.stripe_of(id.slot);
        let g = self.lock_stripe(s)?;
        let off = self.geo.slot_off(id.slot);
        if self.rd32(off + SL_STATE as u64) != STATE_LIVE || !id.token_matches(&self.read_token(off)) {
            return Err(RegionError::NotFound);
        }
        if let Some(why) = self.slot_damage(off) {
            // Damage seen under a clean lock: repair the stripe, report absent.
            let dropped = self.repair_stripe_locked(s, None);
            log::warn!(
                "{}: stripe {s} slot {}: damaged slot found on access ({why}); repaired, dropped {dropped}",
                self.path.display(),
                id.slot
            );
            return Err(RegionError::NotFound);
        }
        if now_ms >= self.deadline_of(off) {
            self.free_slot(s, id.slot, off, EventKind::Expired, *id, now_ms, ev);
            return Err(RegionError::NotFound);
        }
        Ok((g, off))
    }

    /// A read access: the client is back, so the session is no longer new.
    fn touch_locked(&self, s: u32, id: &SessionId, off: u64, now_ms: u64, ev: &mut EventBuf<'_>) {
        let f = self.rd32(off + SL_FLAGS as u64);
        if f & FLAG_NEW != 0 {
            self.wr32(off + SL_FLAGS as u64, f & !FLAG_NEW);
        }
        self.refresh_locked(id, off, now_ms);
        self.emit(s, ev, RegionEvent { kind: EventKind::Touched, id: *id, old: None, seq: 0, at_ms: now_ms });
    }

    /// A write access: refreshes the last access and the deadline but
    /// leaves the "new" flag, since an application typically writes a
    /// session right after creating it, before the client has come back.
    fn refresh_locked(&self, id: &SessionId, off: u64, now_ms: u64) {
        self.wr64(off + SL_LAST_ACCESS as u64, now_ms);
        self.expiry(id.slot).store(self.deadline_of(off), Ordering::Relaxed);
    }

    /// Finds an attribute by name; returns (entry index, entry offset).
    fn find_attr(&self, off: u64, name: &[u8]) -> Option<(u32, u64)> {
        // A name no entry can hold is absent; this also keeps every copy
        // below inside the entry's name field.
        if name.is_empty() || name.len() > self.geo.params.max_name_size as usize {
            return None;
        }
        let n = self.rd32(off + SL_NVALUES as u64).min(self.geo.params.max_values);
        let mut buf = [0u8; 64];
        let mut big;
        let cmp: &mut [u8] = if name.len() <= 64 {
            &mut buf[..name.len()]
        } else {
            big = vec![0u8; name.len()];
            &mut big[..]
        };
        for e in 0..n {
            let eo = off + self.geo.entry_off(e);
            if self.rd32(eo + E_NAME_LEN as u64) as usize != name.len() {
                continue;
            }
            self.copy_out(eo + E_NAME as u64, cmp);
            if cmp == name {
                return Some((e, eo));
            }
        }
        None
    }

    /// Copies an entry's value out, bounding the stored length.
    fn read_value(&self, eo: u64, out: &mut Vec<u8>) {
        let vl = (self.rd32(eo + E_VALUE_LEN as u64)).min(self.geo.params.max_value_size) as usize;
        out.clear();
        out.resize(vl, 0);
        self.copy_out(eo + E_NAME as u64 + self.geo.params.max_name_size as u64, out);
    }

    // ---------- the public API ----------

    /// Creates a session. Tries every stripe with a free slot before it
    /// gives up; when full, either refuses or evicts (see [`WhenFull`]).
    pub fn create(&self, now_ms: u64) -> Result<SessionMeta, RegionError> {
        self.create_ev(now_ms, &mut EventBuf::discard())
    }

    /// [`Self::create`], recording its events in `ev`.
    pub fn create_ev(&self, now_ms: u64, ev: &mut EventBuf<'_>) -> Result<SessionMeta, RegionError> {
        self.create_inner(now_ms, None, ev)
    }

    /// Installs a session another node held, keeping its token, times and
    /// attributes, in a free slot of this region (a cluster takeover). It
    /// records no event: the session did not start, it moved. The slot is
    /// change-marked like any write. An adopted session past its deadline
    /// is refused as `NotFound`.
    pub fn adopt(&self, a: &Adopt<'_>, now_ms: u64) -> Result<SessionMeta, RegionError> {
        if a.attributes.len() > self.geo.params.max_values as usize {
            return Err(RegionError::TooManyValues { max: self.geo.params.max_values });
        }
        for (name, value) in a.attributes {
            // Reserved names (the gateway's) carry a control character the
            // public check refuses; only sizes matter here.
            if name.is_empty() {
                return Err(RegionError::EmptyName);
            }
            if name.len() > self.geo.params.max_name_size as usize {
                return Err(RegionError::NameTooLong { len: name.len(), max: self.geo.params.max_name_size });
            }
            if value.len() > self.geo.params.max_value_size as usize {
                return Err(RegionError::ValueTooLarge { len: value.len(), max: self.geo.params.max_value_size });
            }
        }
        if let Some(p) = a.principal
            && p.len() > MAX_PRINCIPAL
        {
            return Err(RegionError::PrincipalTooLong { len: p.len() });
        }
        let mut ev = EventBuf::discard();
        self.create_inner(now_ms, Some(a), &mut ev)
    }

    fn create_inner(
        &self,
        now_ms: u64,
        seed: Option<&Adopt<'_>>,
        ev: &mut EventBuf<'_>,
    ) -> Result<SessionMeta, RegionError> {
        let n = self.geo.params.max_locks;
        // One getrandom call: 18 bytes of token, 4 more (never shown in the
        // id) to pick the first stripe to try.
        let mut rnd = [0u8; TOKEN_LEN + 4];
        getrandom::getrandom(&mut rnd).map_err(|e| RegionError::Io {
            call: "getrandom".into(),
            path: self.path.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let mut token = [0u8; TOKEN_LEN];
        token.copy_from_slice(&rnd[..TOKEN_LEN]);
        if let Some(a) = seed {
            token = a.token;
        }
        let mut id = SessionId { node: self.cfg.node_id, context: self.tag, slot: 0, token };
        let start = u32::from_le_bytes([rnd[18], rnd[19], rnd[20], rnd[21]]) % n;
        let mut timed_out = None;
        for pass in 0..2 {
            for k in 0..n {
                let s = (start + k) % n;
                let cap = self.geo.stripe_start(s + 1) - self.geo.stripe_start(s);
                if self.live_word(s).load(Ordering::Relaxed) >= cap {
                    continue;
                }
                // A stuck stripe must not fail the create: try the next one.
                ev.before_lock(Self::OP_EVENTS);
                let g = match self.lock_stripe(s) {
                    Ok(g) => g,
                    Err(e @ RegionError::LockTimeout { .. }) => {
                        timed_out = Some(e);
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                if let Some(meta) = self.alloc_locked(&g, &mut id, now_ms, seed, ev) {
                    return Ok(meta);
                }
            }
            if pass == 0 && self.sweep_when_full(now_ms, ev)? == 0 {
                break;
            }
        }
        if let Some(e) = timed_out {
            return Err(e);
        }
        if self.cfg.when_full == WhenFull::EvictOldest {
            ev.before_lock(Self::OP_EVENTS);
            let g = self.lock_stripe(start)?;
            // A slot may have been freed since the scan: never evict then.
            if let Some(meta) = self.alloc_locked(&g, &mut id, now_ms, seed, ev) {
                return Ok(meta);
            }
            let (from, to) = (self.geo.stripe_start(start), self.geo.stripe_start(start + 1));
            let victim = (from..to)
                .filter(|&i| self.expiry(i).load(Ordering::Relaxed) != 0)
                .min_by_key(|&i| self.expiry(i).load(Ordering::Relaxed));
            if let Some(v) = victim {
                let off = self.geo.slot_off(v);
                if self.rd32(off + SL_STATE as u64) == STATE_LIVE {
                    let old = self.id_of(v, off);
                    let kind = if self.deadline_of(off) <= now_ms { EventKind::Expired } else { EventKind::Evicted };
                    self.free_slot(start, v, off, kind, old, now_ms, ev);
                }
            }
            if let Some(meta) = self.alloc_locked(&g, &mut id, now_ms, seed, ev) {
                return Ok(meta);
            }
        }
        self.header_counter(HeaderCounter::Refused).fetch_add(1, Ordering::Relaxed);
        self.log_full_refusal(now_ms);
        Err(RegionError::Full { context: self.cfg.context.clone(), max_sessions: self.geo.params.max_sessions })
    }

    /// Logs a "full" refusal at most once a second per region across every
    /// process, with the number of refusals not logged since the last line.
    fn log_full_refusal(&self, now_ms: u64) {
        let last = self.header_counter(HeaderCounter::LastFullLogMs);
        let suppressed = self.header_counter(HeaderCounter::FullLogSuppressed);
        if let Some(n) = crate::logging::allow_line(last, suppressed, now_ms, 1000) {
            log::warn!(
                "context {}: full, refused a new session (max_sessions = {}); {n} more refusal(s) not logged since the last line",
                self.cfg.context,
                self.geo.params.max_sessions
            );
        }
    }

    /// When no stripe has room, frees expired slots at most once a second
    /// so a region full of dead sessions does not refuse creates until the
    /// reaper's next run.
    fn sweep_when_full(&self, now_ms: u64, ev: &mut EventBuf<'_>) -> Result<u64, RegionError> {
        let last = self.header_counter(HeaderCounter::LastFullSweepMs);
        let prev = last.load(Ordering::Relaxed);
        if now_ms < prev.saturating_add(1000)
            || last.compare_exchange(prev, now_ms, Ordering::Relaxed, Ordering::Relaxed).is_err()
        {
            return Ok(0);
        }
        Ok(self.reap_inner(now_ms, ev)?.freed)
    }

    fn alloc_locked(
        &self,
        g: &StripeGuard<'_>,
        id: &mut SessionId,
        now_ms: u64,
        seed: Option<&Adopt<'_>>,
        ev: &mut EventBuf<'_>,
    ) -> Option<SessionMeta> {
        let s = g.s;
        let so = self.geo.stripe_off(s);
        let (from, to) = (self.geo.stripe_start(s), self.geo.stripe_start(s + 1));
        let mut head = self.rd32(so + S_FREE_HEAD as u64);
        if head != NO_SLOT
            && (head < from || head >= to || self.rd32(self.geo.slot_off(head) + SL_STATE as u64) != STATE_FREE)
        {
            let dropped = self.repair_stripe_locked(s, None);
            log::warn!("{}: stripe {s}: free list damaged; rebuilt it, dropped {dropped} slot(s)", self.path.display());
            head = self.rd32(so + S_FREE_HEAD as u64);
        }
        if head == NO_SLOT && self.live_word(s).load(Ordering::Relaxed) < to - from {
            // Free slots that fell off the list (a repairer died mid-way):
            // rebuild the list from the state words.
            let dropped = self.repair_stripe_locked(s, None);
            log::warn!("{}: stripe {s}: free list lost slots; rebuilt it, dropped {dropped}", self.path.display());
            head = self.rd32(so + S_FREE_HEAD as u64);
        }
        if head == NO_SLOT {
            return None;
        }
        let off = self.geo.slot_off(head);
        id.slot = head;
        // A slot whose last session was logged out before the store heard
        // of it keeps that session's token, so the store still ends it. If
        // it already keeps one, the session in between never reached the
        // store (a store write settles the kept token first).
        let prev_flags = self.rd32(off + SL_FLAGS as u64);
        let keep_retired =
            self.v3() && (prev_flags & FLAG_RETIRED != 0 || (prev_flags & FLAG_FINAL != 0 && self.is_marked(head)));
        self.begin_write(off);
        if keep_retired && prev_flags & FLAG_RETIRED == 0 {
            self.copy_in(off + SL_RETIRED as u64, &self.read_token(off));
        }
        let seq = self.mark_changed(head, off);
        self.wr32(so + S_FREE_HEAD as u64, self.rd32(off + SL_NEXT_FREE as u64));
        self.wr32(off + SL_STATE as u64, STATE_LIVE);
        self.copy_in(off + SL_TOKEN as u64, &id.token);
        self.wr32(off + SL_NEXT_FREE as u64, NO_SLOT);
        match seed {
            // Checked by `adopt` before the lock: counts and sizes fit.
            Some(a) => self.write_copy(head, off, &Adopt { last_access_ms: a.last_access_ms.min(now_ms), ..*a }),
            None => self.write_copy(head, off, &Adopt::fresh(id.token, now_ms)),
        }
        if keep_retired {
            let f = self.rd32(off + SL_FLAGS as u64);
            self.wr32(off + SL_FLAGS as u64, f | FLAG_RETIRED);
        }
        self.end_write(off);
        self.expiry(head).store(self.deadline_of(off), Ordering::Relaxed);
        let lw = self.live_word(s);
        lw.store(lw.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        if seed.is_none() {
            self.emit(s, ev, RegionEvent { kind: EventKind::Created, id: *id, old: None, seq, at_ms: now_ms });
        }
        Some(self.meta_of(head, off))
    }

    /// Returns the whole session; `touch` updates its last access and clears
    /// the "new" flag.
    pub fn get(&self, id: &SessionId, touch: bool, now_ms: u64) -> Result<Session, RegionError> {
        self.get_ev(id, touch, now_ms, &mut EventBuf::discard())
    }

    /// [`Self::get`], recording its events in `ev`.
    pub fn get_ev(
        &self,
        id: &SessionId,
        touch: bool,
        now_ms: u64,
        ev: &mut EventBuf<'_>,
    ) -> Result<Session, RegionError> {
        let (g, off) = self.find(id, now_ms, ev)?;
        let attributes = self.read_attributes(off);
        if touch {
            self.touch_locked(g.s, id, off, now_ms, ev);
        }
        self.bump(g.s, StripeCounter::Reads, 1);
        Ok(Session { meta: self.meta_of(id.slot, off), attributes })
    }

    /// Copies every attribute of the slot at `off` out (stripe lock held,
    /// and `slot_damage` found nothing under it, so every length is within
    /// its limit and every name is UTF-8).
    fn read_attributes(&self, off: u64) -> Vec<(String, Vec<u8>)> {
        let n = self.rd32(off + SL_NVALUES as u64).min(self.geo.params.max_values);
        let mut attributes = Vec::with_capacity(n as usize);
        for e in 0..n {
            let eo = off + self.geo.entry_off(e);
            let nl = self.rd32(eo + E_NAME_LEN as u64).min(self.geo.params.max_name_size) as usize;
            let mut name = vec![0u8; nl];
            self.copy_out(eo + E_NAME as u64, &mut name);
            let mut v = Vec::new();
            self.read_value(eo, &mut v);
            let name = String::from_utf8(name).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
            attributes.push((name, v));
        }
        attributes
    }

    /// Copies one attribute into `out`; `Ok(false)` when the session exists
    /// but has no such attribute.
    pub fn get_attr(
        &self,
        id: &SessionId,
        name: &str,
        touch: bool,
        now_ms: u64,
        out: &mut Vec<u8>,
    ) -> Result<bool, RegionError> {
        self.get_attr_ev(id, name, touch, now_ms, out, &mut EventBuf::discard())
    }

    /// [`Self::get_attr`], recording its events in `ev`.
    pub fn get_attr_ev(
        &self,
        id: &SessionId,
        name: &str,
        touch: bool,
        now_ms: u64,
        out: &mut Vec<u8>,
        ev: &mut EventBuf<'_>,
    ) -> Result<bool, RegionError> {
        let (g, off) = self.find(id, now_ms, ev)?;
        if touch {
            self.touch_locked(g.s, id, off, now_ms, ev);
        }
        self.bump(g.s, StripeCounter::Reads, 1);
        match self.find_attr(off, name.as_bytes()) {
            Some((_, eo)) => {
                self.read_value(eo, out);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Atomic read-modify-write of one attribute, under one lock: `f` gets
    /// the current value (`None` if absent) and returns the new one
    /// (`None` leaves the session unchanged) or an error that aborts with
    /// nothing written. `f` runs with the stripe lock held, so it must be
    /// quick and must not call back into the region (it gets a copy; the
    /// session layer uses it to update a gateway session's filters without
    /// losing a concurrent update from another worker).
    pub fn modify_attr_ev<E: From<RegionError>>(
        &self,
        id: &SessionId,
        name: &str,
        now_ms: u64,
        ev: &mut EventBuf<'_>,
        f: impl FnOnce(Option<&[u8]>) -> Result<Option<Vec<u8>>, E>,
    ) -> Result<(), E> {
        self.check_change(name, None)?;
        let (g, off) = self.find(id, now_ms, ev)?;
        let mut cur = Vec::new();
        let entry = self.find_attr(off, name.as_bytes()).map(|(_, eo)| eo);
        if let Some(eo) = entry {
            self.read_value(eo, &mut cur);
        }
        let Some(new) = f(entry.map(|_| cur.as_slice()))? else { return Ok(()) };
        self.check_change(name, Some(&new))?;
        if entry.is_none() && self.rd32(off + SL_NVALUES as u64) >= self.geo.params.max_values {
            return Err(RegionError::TooManyValues { max: self.geo.params.max_values }.into());
        }
        self.begin_write(off);
        let seq = self.mark_changed(id.slot, off);
        match entry {
            Some(eo) => self.write_value(eo, &new),
            None => {
                let n = self.rd32(off + SL_NVALUES as u64);
                let eo = off + self.geo.entry_off(n);
                self.wr32(eo + E_NAME_LEN as u64, name.len() as u32);
                self.copy_in(eo + E_NAME as u64, name.as_bytes());
                self.write_value(eo, &new);
                self.wr32(off + SL_NVALUES as u64, n + 1);
            }
        }
        self.bump_version(off);
        self.refresh_locked(id, off, now_ms);
        self.end_write(off);
        self.bump(g.s, StripeCounter::Writes, 1);
        self.emit(g.s, ev, RegionEvent { kind: EventKind::Changed, id: *id, old: None, seq, at_ms: now_ms });
        Ok(())
    }

    /// Validates one change against the limits, before any lock is taken.
    pub fn check_change(&self, name: &str, value: Option<&[u8]>) -> Result<(), RegionError> {
        let p = &self.geo.params;
        if name.is_empty() {
            return Err(RegionError::EmptyName);
        }
        if name.len() > p.max_name_size as usize {
            return Err(RegionError::NameTooLong { len: name.len(), max: p.max_name_size });
        }
        if let Some(v) = value
            && v.len() > p.max_value_size as usize
        {
            return Err(RegionError::ValueTooLarge { len: v.len(), max: p.max_value_size });
        }
        Ok(())
    }

    /// Sets and removes attributes in one atomic step: either all changes
    /// apply or none do. Later changes to the same name win. Touches the
    /// session.
    pub fn update(&self, id: &SessionId, changes: &[Change<'_>], now_ms: u64) -> Result<(), RegionError> {
        self.update_ev(id, changes, now_ms, &mut EventBuf::discard())
    }

    /// [`Self::update`], recording its events in `ev`.
    pub fn update_ev(
        &self,
        id: &SessionId,
        changes: &[Change<'_>],
        now_ms: u64,
        ev: &mut EventBuf<'_>,
    ) -> Result<(), RegionError> {
        self.edit_ev(id, &Edit { changes, ..Edit::default() }, now_ms, ev).map(|_| ())
    }

    /// Applies an [`Edit`] in one atomic step under the stripe lock: the
    /// version check, the attribute changes and the settings changes all
    /// happen or none does. Bumps the version and refreshes the last
    /// access; returns the new metadata.
    pub fn edit_ev(
        &self,
        id: &SessionId,
        edit: &Edit<'_>,
        now_ms: u64,
        ev: &mut EventBuf<'_>,
    ) -> Result<SessionMeta, RegionError> {
        let changes = edit.changes;
        for (name, value) in changes {
            self.check_change(name, *value)?;
        }
        if let Some(Some(p)) = edit.meta.principal
            && p.len() > MAX_PRINCIPAL
        {
            return Err(RegionError::PrincipalTooLong { len: p.len() });
        }
        let (g, off) = self.find(id, now_ms, ev)?;
        self.check_version(off, edit.expect)?;
        // Count the attributes after the update, without changing anything.
        let n = self.rd32(off + SL_NVALUES as u64);
        let mut present: Vec<(&str, bool)> = Vec::with_capacity(changes.len());
        let mut count = n as i64;
        for (name, value) in changes {
            let was = match present.iter().rposition(|(p, _)| p == name) {
                Some(k) => present[k].1,
                None => self.find_attr(off, name.as_bytes()).is_some(),
            };
            let will = value.is_some();
            count += will as i64 - was as i64;
            present.push((name, will));
        }
        let max = self.geo.params.max_values;
        if count > max as i64 {
            return Err(RegionError::TooManyValues { max });
        }
        self.begin_write(off);
        let seq = self.mark_changed(id.slot, off);
        // The final value of each name is its last change. Removals go
        // first so that the count never passes max_values in between.
        let last_change = |k: usize| !changes[k + 1..].iter().any(|(n, _)| n == &changes[k].0);
        for (k, (name, value)) in changes.iter().enumerate() {
            if value.is_none()
                && last_change(k)
                && let Some((e, eo)) = self.find_attr(off, name.as_bytes())
            {
                let last = self.rd32(off + SL_NVALUES as u64) - 1;
                if e != last {
                    self.move_entry(off + self.geo.entry_off(last), eo);
                }
                self.wr32(off + SL_NVALUES as u64, last);
            }
        }
        for (k, (name, value)) in changes.iter().enumerate() {
            let Some(v) = value else { continue };
            if !last_change(k) {
                continue;
            }
            match self.find_attr(off, name.as_bytes()) {
                Some((_, eo)) => self.write_value(eo, v),
                None => {
                    let n = self.rd32(off + SL_NVALUES as u64);
                    if n >= max {
                        // Unreachable after the count above; never write past the slot.
                        debug_assert!(false, "attribute count check failed");
                        break;
                    }
                    let eo = off + self.geo.entry_off(n);
                    self.wr32(eo + E_NAME_LEN as u64, name.len() as u32);
                    self.copy_in(eo + E_NAME as u64, name.as_bytes());
                    self.write_value(eo, v);
                    self.wr32(off + SL_NVALUES as u64, n + 1);
                }
            }
        }
        self.apply_meta(id.slot, off, &edit.meta);
        self.bump_version(off);
        self.refresh_locked(id, off, now_ms);
        self.end_write(off);
        self.bump(g.s, StripeCounter::Writes, changes.len() as u64);
        self.emit(g.s, ev, RegionEvent { kind: EventKind::Changed, id: *id, old: None, seq, at_ms: now_ms });
        Ok(self.meta_of(id.slot, off))
    }

    /// `VersionMismatch` unless the slot at `off` is at `expect` (stripe
    /// lock held; `None` expects nothing).
    fn check_version(&self, off: u64, expect: Option<u64>) -> Result<(), RegionError> {
        let Some(expected) = expect.filter(|_| self.v3()) else { return Ok(()) };
        match self.rd64(off + SL_VERSION as u64) {
            current if current != expected => Err(RegionError::VersionMismatch { expected, current }),
            _ => Ok(()),
        }
    }

    /// Applies a settings change to slot `i` (stripe lock held, inside a
    /// write; the principal's length was checked).
    fn apply_meta(&self, i: u32, off: u64, m: &MetaChange<'_>) {
        let mut flags = self.rd32(off + SL_FLAGS as u64);
        if let Some(t) = m.timeout_s {
            self.wr32(off + SL_TIMEOUT as u64, t.unwrap_or(self.cfg.timeout_s).max(1));
            flags = if t.is_some() { flags | FLAG_TIMEOUT_SET } else { flags & !FLAG_TIMEOUT_SET };
        }
        if let Some(d) = m.deadline_ms {
            let created = self.rd64(off + SL_CREATED as u64);
            self.wr64(off + SL_ABS_DEADLINE as u64, d.unwrap_or_else(|| self.context_deadline(created)));
            flags = if d.is_some() { flags | FLAG_DEADLINE_SET } else { flags & !FLAG_DEADLINE_SET };
        }
        self.wr32(off + SL_FLAGS as u64, flags);
        if let Some(p) = m.principal {
            self.write_principal(i, off, p);
        }
    }

    /// Writes a session's flags, times, settings, principal and
    /// attributes into slot `i` at `off` (a create, a takeover or a
    /// migration). The caller holds the stripe lock, is inside
    /// `begin_write`, and checked that the attributes and principal fit.
    pub(super) fn write_copy(&self, i: u32, off: u64, a: &Adopt<'_>) {
        let mut flags = if a.is_new { FLAG_NEW } else { 0 };
        if a.timeout_s.is_some() {
            flags |= FLAG_TIMEOUT_SET;
        }
        if a.deadline_ms.is_some() {
            flags |= FLAG_DEADLINE_SET;
        }
        self.wr32(off + SL_FLAGS as u64, flags);
        self.wr32(off + SL_TIMEOUT as u64, a.timeout_s.unwrap_or(self.cfg.timeout_s));
        self.wr64(off + SL_CREATED as u64, a.created_ms);
        self.wr64(off + SL_LAST_ACCESS as u64, a.last_access_ms);
        self.wr64(off + SL_ABS_DEADLINE as u64, a.deadline_ms.unwrap_or_else(|| self.context_deadline(a.created_ms)));
        if self.v3() {
            self.wr64(off + SL_VERSION as u64, a.version.max(1));
        }
        self.write_principal(i, off, a.principal);
        let attrs = a.attributes;
        for (k, (name, value)) in attrs.iter().enumerate() {
            let eo = off + self.geo.entry_off(k as u32);
            self.wr32(eo + E_NAME_LEN as u64, name.len() as u32);
            self.copy_in(eo + E_NAME as u64, name.as_bytes());
            self.write_value(eo, value);
        }
        self.wr32(off + SL_NVALUES as u64, attrs.len() as u32);
    }

    /// The absolute deadline the context's `absolute_timeout` gives a
    /// session created at `created_ms` (0: none).
    fn context_deadline(&self, created_ms: u64) -> u64 {
        let abs = self.cfg.absolute_timeout_s;
        if abs == 0 { 0 } else { created_ms.saturating_add(abs.saturating_mul(1000)) }
    }

    fn write_value(&self, eo: u64, v: &[u8]) {
        self.wr32(eo + E_VALUE_LEN as u64, v.len() as u32);
        self.copy_in(eo + E_NAME as u64 + self.geo.params.max_name_size as u64, v);
    }

    fn move_entry(&self, from: u64, to: u64) {
        let p = &self.geo.params;
        let nl = self.rd32(from + E_NAME_LEN as u64).min(p.max_name_size) as usize;
        let vl = self.rd32(from + E_VALUE_LEN as u64).min(p.max_value_size) as usize;
        let mut tmp = vec![0u8; nl.max(vl)];
        self.copy_out(from + E_NAME as u64, &mut tmp[..nl]);
        self.copy_in(to + E_NAME as u64, &tmp[..nl]);
        let vo = E_NAME as u64 + p.max_name_size as u64;
        self.copy_out(from + vo, &mut tmp[..vl]);
        self.copy_in(to + vo, &tmp[..vl]);
        self.wr32(to + E_NAME_LEN as u64, nl as u32);
        self.wr32(to + E_VALUE_LEN as u64, vl as u32);
    }

    /// Sets one attribute (a one-change [`Self::update`]).
    pub fn set_attr(&self, id: &SessionId, name: &str, value: &[u8], now_ms: u64) -> Result<(), RegionError> {
        self.update(id, &[(name, Some(value))], now_ms)
    }

    /// Removes one attribute; absent is fine.
    pub fn remove_attr(&self, id: &SessionId, name: &str, now_ms: u64) -> Result<(), RegionError> {
        self.update(id, &[(name, None)], now_ms)
    }

    /// Updates the last access; returns the new metadata.
    pub fn touch(&self, id: &SessionId, now_ms: u64) -> Result<SessionMeta, RegionError> {
        self.touch_ev(id, now_ms, &mut EventBuf::discard())
    }

    /// [`Self::touch`], recording its events in `ev`.
    pub fn touch_ev(&self, id: &SessionId, now_ms: u64, ev: &mut EventBuf<'_>) -> Result<SessionMeta, RegionError> {
        let (g, off) = self.find(id, now_ms, ev)?;
        self.touch_locked(g.s, id, off, now_ms, ev);
        Ok(self.meta_of(id.slot, off))
    }

    /// Ends the session now.
    pub fn invalidate(&self, id: &SessionId, now_ms: u64) -> Result<(), RegionError> {
        self.invalidate_ev(id, now_ms, &mut EventBuf::discard())
    }

    /// [`Self::invalidate`], recording its events in `ev`.
    pub fn invalidate_ev(&self, id: &SessionId, now_ms: u64, ev: &mut EventBuf<'_>) -> Result<(), RegionError> {
        self.end_ev(id, None, EventKind::Invalidated, now_ms, ev)
    }

    /// Ends the session with event `kind` (`Invalidated`, or `Evicted` for
    /// a principal's cap), if it is at version `expect` when given.
    pub fn end_ev(
        &self,
        id: &SessionId,
        expect: Option<u64>,
        kind: EventKind,
        now_ms: u64,
        ev: &mut EventBuf<'_>,
    ) -> Result<(), RegionError> {
        let (g, off) = self.find(id, now_ms, ev)?;
        self.check_version(off, expect)?;
        let live = self.id_of(id.slot, off);
        self.free_slot(g.s, id.slot, off, kind, live, now_ms, ev);
        // A logout is final: the flush ends it in the store whoever owns
        // it there, and a reuse of the slot keeps its token until then.
        let f = self.rd32(off + SL_FLAGS as u64);
        self.wr32(off + SL_FLAGS as u64, f | FLAG_FINAL);
        Ok(())
    }

    /// Frees the session's slot without an event and without making its
    /// end final: this node's copy was stale (another node holds the
    /// session), or a create never happened.
    pub fn forget(&self, id: &SessionId, now_ms: u64) -> Result<(), RegionError> {
        let mut ev = EventBuf::discard();
        let (g, off) = self.find(id, now_ms, &mut ev)?;
        let live = self.id_of(id.slot, off);
        self.free_slot(g.s, id.slot, off, EventKind::Invalidated, live, now_ms, &mut ev);
        let f = self.rd32(off + SL_FLAGS as u64);
        self.wr32(off + SL_FLAGS as u64, f & !FLAG_FINAL);
        Ok(())
    }

    /// Whether `slot` is free and its last session was logged out (see
    /// [`FLAG_FINAL`]).
    pub fn ended_final(&self, slot: u32) -> Result<bool, RegionError> {
        if !self.v3() || slot >= self.geo.params.max_sessions {
            return Ok(false);
        }
        let off = self.geo.slot_off(slot);
        let _g = self.lock_stripe(self.geo.stripe_of(slot))?;
        Ok(self.rd32(off + SL_STATE as u64) == STATE_FREE && self.rd32(off + SL_FLAGS as u64) & FLAG_FINAL != 0)
    }

    /// The logged-out predecessor `slot` still keeps for the store (see
    /// [`FLAG_RETIRED`]), as an id of this node.
    pub fn retired(&self, slot: u32) -> Result<Option<SessionId>, RegionError> {
        if !self.v3() || slot >= self.geo.params.max_sessions {
            return Ok(None);
        }
        let off = self.geo.slot_off(slot);
        let _g = self.lock_stripe(self.geo.stripe_of(slot))?;
        if self.rd32(off + SL_STATE as u64) != STATE_LIVE || self.rd32(off + SL_FLAGS as u64) & FLAG_RETIRED == 0 {
            return Ok(None);
        }
        let mut token = [0u8; TOKEN_LEN];
        self.copy_out(off + SL_RETIRED as u64, &mut token);
        Ok(Some(SessionId { node: self.cfg.node_id, context: self.tag, slot, token }))
    }

    /// The store has ended the predecessor with `token`: `slot` stops
    /// keeping it (if it still keeps that one).
    pub fn clear_retired(&self, slot: u32, token: &[u8; TOKEN_LEN]) -> Result<(), RegionError> {
        if !self.v3() || slot >= self.geo.params.max_sessions {
            return Ok(());
        }
        let off = self.geo.slot_off(slot);
        let _g = self.lock_stripe(self.geo.stripe_of(slot))?;
        let mut kept = [0u8; TOKEN_LEN];
        self.copy_out(off + SL_RETIRED as u64, &mut kept);
        let f = self.rd32(off + SL_FLAGS as u64);
        if f & FLAG_RETIRED != 0 && kept == *token {
            self.wr32(off + SL_FLAGS as u64, f & !FLAG_RETIRED);
        }
        Ok(())
    }

    /// Gives the session a new id and keeps its data; the old id stops
    /// working at once.
    pub fn rotate(&self, id: &SessionId, now_ms: u64) -> Result<SessionMeta, RegionError> {
        self.rotate_ev(id, now_ms, &mut EventBuf::discard())
    }

    /// [`Self::rotate`], recording its events in `ev`.
    pub fn rotate_ev(&self, id: &SessionId, now_ms: u64, ev: &mut EventBuf<'_>) -> Result<SessionMeta, RegionError> {
        self.rotate_if_ev(id, None, now_ms, ev)
    }

    /// [`Self::rotate_ev`] if the session is at version `expect` when given.
    pub fn rotate_if_ev(
        &self,
        id: &SessionId,
        expect: Option<u64>,
        now_ms: u64,
        ev: &mut EventBuf<'_>,
    ) -> Result<SessionMeta, RegionError> {
        let new = SessionId::generate(self.cfg.node_id, self.tag, id.slot).map_err(|e| RegionError::Io {
            call: "getrandom".into(),
            path: self.path.clone(),
            source: e,
        })?;
        let (g, off) = self.find(id, now_ms, ev)?;
        self.check_version(off, expect)?;
        let old = self.id_of(id.slot, off);
        self.begin_write(off);
        let seq = self.mark_changed(id.slot, off);
        self.copy_in(off + SL_TOKEN as u64, &new.token);
        self.bump_version(off);
        self.end_write(off);
        self.refresh_locked(&new, off, now_ms);
        self.emit(g.s, ev, RegionEvent { kind: EventKind::Rotated, id: new, old: Some(old), seq, at_ms: now_ms });
        Ok(self.meta_of(id.slot, off))
    }

    /// Copies out the session in `slot`, if live and unexpired (for tools
    /// and migration; no id needed, no touch).
    pub fn snapshot_slot(&self, slot: u32, now_ms: u64) -> Result<Option<Session>, RegionError> {
        if slot >= self.geo.params.max_sessions {
            return Ok(None);
        }
        let off = self.geo.slot_off(slot);
        let _g = self.lock_stripe(self.geo.stripe_of(slot))?;
        Ok(self
            .servable(off, now_ms)
            .then(|| Session { meta: self.meta_of(slot, off), attributes: self.read_attributes(off) }))
    }

    /// Whether the slot at `off` holds a live, undamaged, unexpired session
    /// (stripe lock held).
    fn servable(&self, off: u64, now_ms: u64) -> bool {
        self.rd32(off + SL_STATE as u64) == STATE_LIVE
            && self.slot_damage(off).is_none()
            && self.deadline_of(off) > now_ms
    }

    /// The id of the live, undamaged, unexpired session in `slot`, if any,
    /// without copying its attributes or touching it (gateway handles).
    pub fn id_in_slot(&self, slot: u32, now_ms: u64) -> Result<Option<SessionId>, RegionError> {
        if slot >= self.geo.params.max_sessions {
            return Ok(None);
        }
        let off = self.geo.slot_off(slot);
        let _g = self.lock_stripe(self.geo.stripe_of(slot))?;
        Ok(self.servable(off, now_ms).then(|| self.id_of(slot, off)))
    }

    /// The id of the session that last ended in `slot`, if the slot is free
    /// now: a free slot keeps its last token until it is reused, so a store
    /// that lagged (cluster mode) can still remove the ended session.
    pub fn ended_id(&self, slot: u32) -> Result<Option<SessionId>, RegionError> {
        if slot >= self.geo.params.max_sessions {
            return Ok(None);
        }
        let off = self.geo.slot_off(slot);
        let _g = self.lock_stripe(self.geo.stripe_of(slot))?;
        Ok((self.rd32(off + SL_STATE as u64) == STATE_FREE).then(|| self.id_of(slot, off)))
    }

    /// Lists live sessions from slot `cursor` on, at most `limit`; returns
    /// them and the cursor of the next page.
    pub fn list(&self, cursor: u32, limit: usize, now_ms: u64) -> Result<(Vec<SessionMeta>, Option<u32>), RegionError> {
        let mut out = Vec::new();
        let max = self.geo.params.max_sessions;
        let mut i = cursor;
        while i < max {
            let s = self.geo.stripe_of(i);
            let end = self.geo.stripe_start(s + 1);
            if self.live_word(s).load(Ordering::Relaxed) == 0 {
                i = end;
                continue;
            }
            let _g = self.lock_stripe(s)?;
            while i < end {
                let off = self.geo.slot_off(i);
                if self.expiry(i).load(Ordering::Relaxed) > now_ms && self.rd32(off + SL_STATE as u64) == STATE_LIVE {
                    if out.len() == limit {
                        return Ok((out, Some(i)));
                    }
                    out.push(self.meta_of(i, off));
                }
                i += 1;
            }
        }
        Ok((out, None))
    }

    /// The live sessions of principal `name` from slot `cursor` on, at
    /// most `limit`, and the cursor of the next page. The scan reads only
    /// the dense principal-hash array, without locks, as the reaper reads
    /// the expiry array; each candidate is checked under its stripe lock
    /// (live, unexpired, and the stored name equal to `name`).
    pub fn principal_sessions(
        &self,
        name: &str,
        cursor: u32,
        limit: usize,
        now_ms: u64,
    ) -> Result<(Vec<SessionMeta>, Option<u32>), RegionError> {
        let mut out = Vec::new();
        if !self.v3() || name.is_empty() || name.len() > MAX_PRINCIPAL {
            return Ok((out, None));
        }
        let h = principal_hash(name);
        let max = self.geo.params.max_sessions;
        let mut i = cursor;
        while i < max {
            if self.principal_word(i).load(Ordering::Relaxed) != h {
                i += 1;
                continue;
            }
            let s = self.geo.stripe_of(i);
            let end = self.geo.stripe_start(s + 1);
            let _g = self.lock_stripe(s)?;
            while i < end {
                if self.principal_word(i).load(Ordering::Relaxed) == h {
                    let off = self.geo.slot_off(i);
                    if self.servable(off, now_ms) && self.principal_is(off, name) {
                        if out.len() == limit {
                            return Ok((out, Some(i)));
                        }
                        out.push(self.meta_of(i, off));
                    }
                }
                i += 1;
            }
        }
        Ok((out, None))
    }

    /// Frees expired slots one stripe at a time. The scan reads only the
    /// dense expiry array; a stripe is locked only if it has a candidate.
    pub fn reap(&self, now_ms: u64) -> Result<ReapReport, RegionError> {
        self.reap_ev(now_ms, &mut EventBuf::discard())
    }

    /// [`Self::reap`], recording its events in `ev` (room for one stripe's
    /// worth is reserved before each stripe's lock; a flushing buffer hands
    /// them on between stripes).
    pub fn reap_ev(&self, now_ms: u64, ev: &mut EventBuf<'_>) -> Result<ReapReport, RegionError> {
        let t = std::time::Instant::now();
        let r = self.reap_inner(now_ms, ev)?;
        self.header_counter(HeaderCounter::ReapSweeps).fetch_add(1, Ordering::Relaxed);
        self.header_counter(HeaderCounter::LastReapMicros).store(t.elapsed().as_micros() as u64, Ordering::Relaxed);
        self.header_counter(HeaderCounter::LastReapAtMs).store(now_ms, Ordering::Relaxed);
        Ok(r)
    }

    fn reap_inner(&self, now_ms: u64, ev: &mut EventBuf<'_>) -> Result<ReapReport, RegionError> {
        let mut report = ReapReport::default();
        let mut next = u64::MAX;
        let base = self.ptr(self.geo.expiry_off) as *const u64;
        for s in 0..self.geo.params.max_locks {
            let (from, to) = (self.geo.stripe_start(s), self.geo.stripe_start(s + 1));
            // Lock-free scan of the stripe's expiry words. Plain loads of
            // u64 words are what AtomicU64::load(Relaxed) compiles to; we go
            // through the atomic API to stay free of data races.
            let mut any = false;
            for i in from..to {
                // SAFETY: i < max_sessions, so the word is inside the expiry
                // array; it is 8-aligned and only accessed atomically.
                let d = unsafe { AtomicU64::from_ptr(base.add(i as usize) as *mut u64) }.load(Ordering::Relaxed);
                if d != 0 {
                    if d <= now_ms {
                        any = true;
                    } else {
                        next = next.min(d);
                    }
                }
            }
            if !any {
                continue;
            }
            // A stuck stripe must not stop the sweep of the others.
            ev.before_lock((to - from) as usize);
            let g = match self.lock_stripe(s) {
                Ok(g) => g,
                Err(e @ RegionError::LockTimeout { .. }) => {
                    log::warn!("{}: reap skipped stripe {s}: {e}", self.path.display());
                    report.skipped_stripes += 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            for i in from..to {
                let d = self.expiry(i).load(Ordering::Relaxed);
                if d == 0 {
                    continue;
                }
                let off = self.geo.slot_off(i);
                if self.rd32(off + SL_STATE as u64) != STATE_LIVE {
                    // A stale word on a free slot: clear it so this stripe is
                    // not locked again on every sweep.
                    self.expiry(i).store(0, Ordering::Relaxed);
                } else if self.deadline_of(off) <= now_ms {
                    let id = self.id_of(i, off);
                    self.free_slot(g.s, i, off, EventKind::Expired, id, now_ms, ev);
                    report.freed += 1;
                } else {
                    // Keep the word equal to the slot's deadline.
                    let dl = self.deadline_of(off);
                    self.expiry(i).store(dl, Ordering::Relaxed);
                    next = next.min(dl);
                }
            }
        }
        report.next_deadline_ms = (next != u64::MAX).then_some(next);
        Ok(report)
    }

    // ---------- change marks (docs/design.md §4.6, §11.3) ----------

    /// Slots whose change mark is set, counted without locks.
    pub fn changed_count(&self) -> u64 {
        if self.geo.dirty_off == 0 {
            return 0;
        }
        let words = (self.geo.params.max_sessions as u64).div_ceil(64);
        (0..words).map(|w| self.atomic64(self.geo.dirty_off + 8 * w).load(Ordering::Acquire).count_ones() as u64).sum()
    }

    /// The change mark and change sequence of `slot`, read under its
    /// stripe lock: `Some(seq)` if the slot changed since a store last
    /// acknowledged it, `None` if not (or the slot does not exist).
    pub fn change_mark(&self, slot: u32) -> Result<Option<u64>, RegionError> {
        if self.geo.dirty_off == 0 || slot >= self.geo.params.max_sessions {
            return Ok(None);
        }
        let _g = self.lock_stripe(self.geo.stripe_of(slot))?;
        let set = self.dirty_word(slot).load(Ordering::Acquire) & (1u64 << (slot % 64)) != 0;
        Ok(set.then(|| self.atomic64(self.geo.slot_off(slot) + SL_CHANGE as u64).load(Ordering::Relaxed)))
    }

    /// Sets the change mark of `id`'s slot again, without a new change, so
    /// the next flush writes the session to the store as it is: the re-seed
    /// of a store that lost its data (cluster.md §6.12). `false` if `id`
    /// no longer lives there.
    pub fn remark(&self, id: &SessionId) -> Result<bool, RegionError> {
        let slot = id.slot;
        if self.geo.dirty_off == 0 || slot >= self.geo.params.max_sessions {
            return Ok(false);
        }
        let _g = self.lock_stripe(self.geo.stripe_of(slot))?;
        let off = self.geo.slot_off(slot);
        if self.rd32(off + SL_STATE as u64) != STATE_LIVE || !id.token_matches(&self.read_token(off)) {
            return Ok(false);
        }
        self.dirty_word(slot).fetch_or(1u64 << (slot % 64), Ordering::Release);
        Ok(true)
    }

    /// Whether `slot` carries a change mark, read without the stripe lock.
    /// Exact for a caller that has just read the slot under its lock: a
    /// change sets the mark before its first data byte under that lock, so a
    /// read that saw the change sees the mark until a store acknowledged it.
    pub fn change_marked(&self, slot: u32) -> bool {
        if self.geo.dirty_off == 0 || slot >= self.geo.params.max_sessions {
            return false;
        }
        self.dirty_word(slot).load(Ordering::Acquire) & (1u64 << (slot % 64)) != 0
    }

    /// A store acknowledges that it holds `slot` as of change `seq`: the
    /// mark is cleared only if no change happened since (under the stripe
    /// lock). Returns whether it was cleared.
    pub fn acknowledge(&self, slot: u32, seq: u64) -> Result<bool, RegionError> {
        if self.geo.dirty_off == 0 || slot >= self.geo.params.max_sessions {
            return Ok(false);
        }
        let _g = self.lock_stripe(self.geo.stripe_of(slot))?;
        if self.atomic64(self.geo.slot_off(slot) + SL_CHANGE as u64).load(Ordering::Relaxed) != seq {
            return Ok(false);
        }
        self.dirty_word(slot).fetch_and(!(1u64 << (slot % 64)), Ordering::Release);
        Ok(true)
    }

    /// Slots with the change mark set, from `from` on, at most `limit`
    /// (a lock-free scan of the bitmap; confirm each with
    /// [`Self::change_mark`]).
    pub fn changed_slots(&self, from: u32, limit: usize) -> Vec<u32> {
        let mut out = Vec::new();
        if self.geo.dirty_off == 0 {
            return out;
        }
        let n = self.geo.params.max_sessions;
        let mut w = from / 64;
        while (w as u64) < (n as u64).div_ceil(64) && out.len() < limit {
            let mut bits = self.atomic64(self.geo.dirty_off + 8 * w as u64).load(Ordering::Acquire);
            while bits != 0 && out.len() < limit {
                let i = w * 64 + bits.trailing_zeros();
                bits &= bits - 1;
                if i >= from && i < n {
                    out.push(i);
                }
            }
            w += 1;
        }
        out
    }

    /// Reads every counter without locks.
    pub fn stats(&self) -> RegionStats {
        let p = self.geo.params;
        let mut totals = [0u64; STRIPE_COUNTERS];
        let stripes: Vec<StripeStats> = (0..p.max_locks)
            .map(|s| {
                let mut counters = [0u64; STRIPE_COUNTERS];
                for (k, c) in counters.iter_mut().enumerate() {
                    *c = self
                        .atomic64(self.geo.stripe_off(s) + S_COUNTERS as u64 + 8 * k as u64)
                        .load(Ordering::Relaxed);
                    totals[k] = totals[k].wrapping_add(*c);
                }
                StripeStats {
                    capacity: self.geo.stripe_start(s + 1) - self.geo.stripe_start(s),
                    live: self.live_word(s).load(Ordering::Relaxed),
                    counters,
                }
            })
            .collect();
        RegionStats {
            context: self.cfg.context.clone(),
            format_version: self.geo.format,
            clean: self.atomic32(H_CLEAN as u64).load(Ordering::Acquire) == 1,
            max_sessions: p.max_sessions,
            max_values: p.max_values,
            max_name_size: p.max_name_size,
            max_value_size: p.max_value_size,
            max_locks: p.max_locks,
            file_size: self.geo.file_size,
            live: stripes.iter().map(|s| s.live as u64).sum(),
            stripes,
            totals,
            refused: self.header_counter(HeaderCounter::Refused).load(Ordering::Relaxed),
            lock_timeouts: self.header_counter(HeaderCounter::LockTimeouts).load(Ordering::Relaxed),
            reap_sweeps: self.header_counter(HeaderCounter::ReapSweeps).load(Ordering::Relaxed),
            last_reap_micros: self.header_counter(HeaderCounter::LastReapMicros).load(Ordering::Relaxed),
            created_ms: self.rd64(H_CREATED_MS as u64),
            changed: self.changed_count(),
        }
    }

    /// Checks the whole region under each stripe's lock, changing nothing:
    /// sequence numbers even, lengths within limits, free list consistent
    /// with slot states, counts matching. Returns every problem found.
    pub fn verify(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let p = self.geo.params;
        for s in 0..p.max_locks {
            let g = match self.lock_stripe(s) {
                Ok(g) => g,
                Err(e) => {
                    problems.push(format!("stripe {s}: {e}"));
                    continue;
                }
            };
            let (from, to) = (self.geo.stripe_start(s), self.geo.stripe_start(s + 1));
            let mut live = 0u32;
            let mut free_states = 0u32;
            for i in from..to {
                let off = self.geo.slot_off(i);
                let damage = self.slot_damage(off);
                if let Some(why) = &damage {
                    problems.push(format!("stripe {s} slot {i}: {why}"));
                }
                if self.rd32(off + SL_STATE as u64) == STATE_LIVE {
                    live += 1;
                    if damage.is_some() {
                        continue;
                    }
                    let d = self.expiry(i).load(Ordering::Relaxed);
                    if d != self.deadline_of(off) {
                        problems.push(format!(
                            "stripe {s} slot {i}: expiry word {d} does not match the slot's deadline {}",
                            self.deadline_of(off)
                        ));
                    }
                } else {
                    free_states += 1;
                    let d = self.expiry(i).load(Ordering::Relaxed);
                    if d != 0 {
                        problems.push(format!("stripe {s} slot {i}: free slot has expiry word {d}, expected 0"));
                    }
                }
            }
            let recorded = self.live_word(s).load(Ordering::Relaxed);
            if recorded != live {
                problems.push(format!("stripe {s}: live count {recorded} but {live} live slots"));
            }
            // Walk the free list, bounded by the stripe size.
            let mut cur = self.rd32(self.geo.stripe_off(s) + S_FREE_HEAD as u64);
            let mut walked = 0u32;
            while cur != NO_SLOT {
                if cur < from || cur >= to {
                    problems.push(format!("stripe {s}: free list points outside the stripe (slot {cur})"));
                    break;
                }
                if self.rd32(self.geo.slot_off(cur) + SL_STATE as u64) != STATE_FREE {
                    problems.push(format!("stripe {s}: free list holds live slot {cur}"));
                    break;
                }
                walked += 1;
                if walked > to - from {
                    problems.push(format!("stripe {s}: free list has a cycle"));
                    break;
                }
                cur = self.rd32(self.geo.slot_off(cur) + SL_NEXT_FREE as u64);
            }
            if cur == NO_SLOT && walked != free_states {
                problems.push(format!("stripe {s}: free list has {walked} slots but {free_states} are free"));
            }
            drop(g);
        }
        problems
    }

    /// Flushes the map to disk (msync).
    pub fn flush(&self) -> Result<(), RegionError> {
        self.map.flush().map_err(|e| RegionError::Io {
            call: format!("msync(MS_SYNC, {})", self.geo.file_size),
            path: self.path.clone(),
            source: e,
        })
    }

    /// Flushes and sets the clean-shutdown flag; the serving process calls
    /// this once, last, on a clean exit.
    pub fn close_clean(&self) -> Result<(), RegionError> {
        self.flush()?;
        self.atomic32(H_CLEAN as u64).store(1, Ordering::Release);
        self.flush()
    }
}

#[cfg(test)]
mod tests;
