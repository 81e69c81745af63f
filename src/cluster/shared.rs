//! What every process of one node shares about the cluster: the owner
//! table of each context and the node's store state.
//!
//! Both are small memory-mapped files in `data_dir` (mode 0600) made of
//! 64-bit words that processes only ever touch with atomic operations, so
//! no lock is needed and a process killed at any point leaves nothing
//! half-written that matters:
//!
//! - `cluster/<context>.owners`: per slot of the context's region, the owner
//!   epoch this node holds the session at (the fencing token of its store
//!   writes) and the last access this node sent to the store (the
//!   `save_period` coalescing, across every worker).
//! - `cluster/state`: the store's state as the processes last saw it, the
//!   reconciliation flag, and counters for `/metrics`.
//!
//! Written by hand over memmap2 because these are plain arrays of atomics;
//! the region's stripe locks would be the wrong tool (the words are
//! updated without reading anything else). Damage cannot make a process
//! panic: any value is a valid epoch or time, and a wrong epoch only makes
//! the store refuse a write (the safe side).

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::MmapMut;

/// Words per slot in an owner table.
const SLOT_WORDS: usize = 2;

/// One fixed-size array of atomic words in a shared file.
struct Words {
    map: MmapMut,
    len: usize,
}

impl Words {
    /// Opens (creating or resizing to `len` words) the file at `path`. A
    /// file of another size is reset to zeros.
    fn open(path: &Path, len: usize) -> io::Result<Words> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let f = OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(path)?;
        let bytes = (len.max(1) * 8) as u64;
        if f.metadata()?.len() != bytes {
            f.set_len(0)?;
            f.set_len(bytes)?;
        }
        // SAFETY: the file is ours (mode 0600 in data_dir, sized above); every
        // access goes through `word`, which hands out atomics only.
        let map = unsafe { MmapMut::map_mut(&f)? };
        Ok(Words { map, len })
    }

    /// Word `i`, or `None` past the end.
    fn word(&self, i: usize) -> Option<&AtomicU64> {
        if i >= self.len {
            return None;
        }
        // SAFETY: `i < len` and the map holds `len` 8-byte words, page
        // aligned, so the pointer is in bounds and aligned for AtomicU64.
        // Every process reaches these bytes only through atomics.
        Some(unsafe { AtomicU64::from_ptr(self.map.as_ptr().add(i * 8) as *mut u64) })
    }
}

/// The owner table of one context.
pub struct Owners {
    words: Words,
    slots: u32,
}

impl Owners {
    /// The table's file for `context` in `data_dir`.
    pub fn path(data_dir: &Path, context: &str) -> PathBuf {
        data_dir.join("cluster").join(format!("{context}.owners"))
    }

    /// Opens the table of a region of `slots` slots.
    pub fn open(data_dir: &Path, context: &str, slots: u32) -> io::Result<Owners> {
        let words = Words::open(&Self::path(data_dir, context), slots as usize * SLOT_WORDS)?;
        Ok(Owners { words, slots })
    }

    /// The epoch this node holds `slot`'s session at (0: unknown).
    pub fn epoch(&self, slot: u32) -> u64 {
        self.words.word(slot as usize * SLOT_WORDS).map_or(0, |w| w.load(Ordering::Acquire))
    }

    /// Records the epoch and the last access the store has for `slot`.
    pub fn set(&self, slot: u32, epoch: u64, saved_access_ms: u64) {
        if slot >= self.slots {
            return;
        }
        if let Some(w) = self.words.word(slot as usize * SLOT_WORDS + 1) {
            w.store(saved_access_ms, Ordering::Release);
        }
        if let Some(w) = self.words.word(slot as usize * SLOT_WORDS) {
            w.store(epoch, Ordering::Release);
        }
    }

    /// Claims the right to send `slot`'s last access `now_ms` to the store:
    /// true for exactly one caller per `period_ms` across every process.
    pub fn claim_touch(&self, slot: u32, now_ms: u64, period_ms: u64) -> bool {
        let Some(w) = self.words.word(slot as usize * SLOT_WORDS + 1) else { return false };
        let saved = w.load(Ordering::Acquire);
        now_ms >= saved.saturating_add(period_ms)
            && w.compare_exchange(saved, now_ms, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }
}

/// The node-wide words of `cluster/state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Word {
    /// 1 while the last store call of any process failed (the store is down).
    Down = 0,
    /// When the store last answered, ms.
    LastOkMs,
    /// When the store went down (0 while up), ms.
    DownSinceMs,
    /// 1 once the reaper reconciled this node's sessions with the store
    /// after start; until then workers check ownership with the store.
    Reconciled,
    /// 1 while this node holds the store-wide reaper lease.
    Leader,
    /// Store writes (saves, touches, removes, rotations) sent.
    Writes,
    /// Of which: last-access touches.
    Touches,
    /// Takeovers won.
    Takeovers,
    /// Takeovers lost to another node, and writes the store refused.
    Fenced,
    /// Store calls that failed.
    Errors,
    /// Sessions the store sweeps removed.
    Swept,
    /// Changes flushed by the reaper after an outage or a crash.
    Flushed,
    /// Stale local copies dropped (reconciliation, fenced writes).
    Dropped,
    /// Store sweeps run by this node.
    Sweeps,
}

/// Words in `cluster/state`.
const STATE_WORDS: usize = 64;

/// The node's store state, shared by its processes.
pub struct NodeState {
    words: Words,
}

impl NodeState {
    /// Opens `data_dir/cluster/state`.
    pub fn open(data_dir: &Path) -> io::Result<NodeState> {
        Ok(NodeState { words: Words::open(&data_dir.join("cluster").join("state"), STATE_WORDS)? })
    }

    fn w(&self, k: Word) -> &AtomicU64 {
        // STATE_WORDS exceeds every Word; a smaller file was resized at open.
        self.words.word(k as usize).unwrap_or_else(|| unreachable!("state word {k:?} out of range"))
    }

    /// Reads a word.
    pub fn get(&self, k: Word) -> u64 {
        self.w(k).load(Ordering::Acquire)
    }

    /// Sets a word.
    pub fn set(&self, k: Word, v: u64) {
        self.w(k).store(v, Ordering::Release)
    }

    /// Adds to a counter.
    pub fn add(&self, k: Word, n: u64) {
        self.w(k).fetch_add(n, Ordering::Relaxed);
    }

    /// Records a store answer; returns true if the store was down before.
    pub fn store_ok(&self, now_ms: u64) -> bool {
        self.set(Word::LastOkMs, now_ms);
        if self.get(Word::Down) == 0 {
            return false;
        }
        self.set(Word::DownSinceMs, 0);
        self.w(Word::Down).swap(0, Ordering::AcqRel) == 1
    }

    /// Records a failed store call; returns true if the store was up before.
    pub fn store_failed(&self, now_ms: u64) -> bool {
        self.add(Word::Errors, 1);
        let was_up = self.w(Word::Down).swap(1, Ordering::AcqRel) == 0;
        if was_up {
            let _ = self.w(Word::DownSinceMs).compare_exchange(0, now_ms, Ordering::AcqRel, Ordering::Acquire);
        }
        was_up
    }

    /// Whether the store is down as far as this node knows.
    pub fn is_down(&self) -> bool {
        self.get(Word::Down) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_words_are_shared_and_touches_are_claimed_once_per_period() {
        let dir = tempfile::tempdir().unwrap();
        let a = Owners::open(dir.path(), "default", 8).unwrap();
        let b = Owners::open(dir.path(), "default", 8).unwrap();
        a.set(3, 7, 1_000);
        assert_eq!(b.epoch(3), 7);
        assert!(!b.claim_touch(3, 1_500, 1_000));
        assert!(b.claim_touch(3, 2_000, 1_000));
        assert!(!a.claim_touch(3, 2_000, 1_000));
        assert_eq!(a.epoch(99), 0);
        a.set(99, 1, 1);
        let c = Owners::open(dir.path(), "default", 16).unwrap();
        assert_eq!(c.epoch(3), 0, "a resized table starts empty");
        let mode = std::fs::metadata(Owners::path(dir.path(), "default")).unwrap().permissions();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600);
    }

    #[test]
    fn state_tracks_down_and_up() {
        let dir = tempfile::tempdir().unwrap();
        let s = NodeState::open(dir.path()).unwrap();
        assert!(!s.is_down());
        assert!(s.store_failed(10));
        assert!(!s.store_failed(20));
        assert_eq!(s.get(Word::DownSinceMs), 10);
        assert!(s.store_ok(30));
        assert!(!s.is_down());
        assert_eq!(s.get(Word::Errors), 2);
    }
}
