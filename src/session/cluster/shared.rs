//! What every process of one node shares about the cluster: the owner
//! table of each context and the node's store state.
//!
//! Both are small memory-mapped files in `data_dir` (mode 0600) made of
//! 64-bit words that processes only ever touch with atomic operations, so
//! no lock is needed and a process killed at any point leaves nothing
//! half-written that matters:
//!
//! - `cluster/<context>.owners`: per slot of the context's region, which
//!   session the entry is about (a tag: the first 8 bytes of its store key,
//!   so an entry left by the slot's previous occupant is never taken for
//!   the current one), the owner epoch this node holds it at (the fencing
//!   token of its store writes), when this node started holding it, the
//!   last access it sent to the store (the `save_period` coalescing, across
//!   every worker), and a store key a rotation retired while the store was
//!   away, to be removed when it returns.
//! - `cluster/state`: the store's state as the processes last saw it, the
//!   reconciliation flag, and counters for `/metrics`.
//!
//! Both are [`crate::sys::CounterFile`]s, the crate's one SIGBUS-safe
//! mapped file of atomic words; the region's stripe locks would be the
//! wrong tool (the words are updated without reading anything else). Damage cannot make a process
//! panic: any value is a valid epoch or time, and a wrong epoch only makes
//! the store refuse a write (the safe side).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::sys::CounterFile;

/// Words per slot in an owner table: epoch, saved access, tag, since,
/// retired flag, retired epoch, the retired key's 4 words, then the tag of
/// the last session that left the slot because another node took it.
const SLOT_WORDS: usize = 11;
const W_EPOCH: usize = 0;
const W_SAVED: usize = 1;
const W_TAG: usize = 2;
const W_SINCE: usize = 3;
const W_RETIRED: usize = 4;
const W_RETIRED_EPOCH: usize = 5;
const W_RETIRED_KEY: usize = 6;
const W_MOVED: usize = 10;

/// The tag of a store key: its first 8 bytes.
pub fn tag_of(key: &[u8; 32]) -> u64 {
    u64::from_le_bytes([key[0], key[1], key[2], key[3], key[4], key[5], key[6], key[7]])
}

/// What this node knows of the session in one slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The owner epoch this node holds it at.
    pub epoch: u64,
    /// When this node started holding it, ms.
    pub since_ms: u64,
}

/// One fixed-size array of atomic words in a shared file: the crate's one
/// counter-file type, whose blocks are reserved before mapping (no SIGBUS on
/// a full disk).
struct Words {
    file: CounterFile,
}

impl Words {
    /// Opens (creating or resizing to `len` words) the file at `path`. A
    /// file of another size is extended with zeros or cut: entries of slots
    /// that remain are kept.
    fn open(path: &Path, len: usize) -> io::Result<Words> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
            // Like every directory under data_dir: the owner only.
            std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        }
        let file = CounterFile::open_sized(path, len).map_err(|e| io::Error::new(e.source.kind(), e.to_string()))?;
        Ok(Words { file })
    }

    /// Word `i`, or `None` past the end.
    fn word(&self, i: usize) -> Option<&AtomicU64> {
        self.file.get(i)
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

    fn w(&self, slot: u32, k: usize) -> Option<&AtomicU64> {
        if slot >= self.slots {
            return None;
        }
        self.words.word(slot as usize * SLOT_WORDS + k)
    }

    /// What this node recorded for the session with store-key tag `tag`
    /// in `slot`; `None` when the entry is about another session (or none).
    pub fn entry(&self, slot: u32, tag: u64) -> Option<Entry> {
        let epoch = self.w(slot, W_EPOCH)?.load(Ordering::Acquire);
        if epoch == 0 || self.w(slot, W_TAG)?.load(Ordering::Acquire) != tag {
            return None;
        }
        Some(Entry { epoch, since_ms: self.w(slot, W_SINCE)?.load(Ordering::Acquire) })
    }

    /// The epoch this node holds the session with tag `tag` in `slot` at
    /// (0: not recorded; the store refuses a write carrying it).
    pub fn epoch(&self, slot: u32, tag: u64) -> u64 {
        self.entry(slot, tag).map_or(0, |e| e.epoch)
    }

    /// Records that this node holds the session with tag `tag` in `slot`
    /// at `epoch`, since `since_ms`, and that the store has its last
    /// access as of `saved_access_ms`. The epoch is written last and
    /// cleared first, so a reader never pairs one session's tag with
    /// another's epoch.
    pub fn set(&self, slot: u32, epoch: u64, saved_access_ms: u64, tag: u64, since_ms: u64) {
        let (Some(e), Some(sa), Some(t), Some(si)) =
            (self.w(slot, W_EPOCH), self.w(slot, W_SAVED), self.w(slot, W_TAG), self.w(slot, W_SINCE))
        else {
            return;
        };
        e.store(0, Ordering::Release);
        sa.store(saved_access_ms, Ordering::Release);
        t.store(tag, Ordering::Release);
        si.store(since_ms, Ordering::Release);
        e.store(epoch, Ordering::Release);
    }

    /// A rotation moved `slot`'s session from tag `old` to tag `new`: the
    /// entry follows it, keeping its epoch. Returns the epoch.
    pub fn retag(&self, slot: u32, old: u64, new: u64) -> u64 {
        let Some(e) = self.entry(slot, old) else { return 0 };
        let saved = self.w(slot, W_SAVED).map_or(0, |w| w.load(Ordering::Acquire));
        self.set(slot, e.epoch, saved, new, e.since_ms);
        e.epoch
    }

    /// Remembers a store key a rotation retired while the store could not
    /// be told, unless one is already waiting (that one is older and is
    /// the one the store still holds).
    pub fn retire(&self, slot: u32, key: &[u8; 32], epoch: u64) {
        let Some(flag) = self.w(slot, W_RETIRED) else { return };
        if flag.load(Ordering::Acquire) != 0 {
            return;
        }
        if let Some(w) = self.w(slot, W_RETIRED_EPOCH) {
            w.store(epoch, Ordering::Release);
        }
        for (i, c) in key.chunks_exact(8).enumerate() {
            if let Some(w) = self.w(slot, W_RETIRED_KEY + i) {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                w.store(u64::from_le_bytes(b), Ordering::Release);
            }
        }
        flag.store(1, Ordering::Release);
    }

    /// The retired key waiting in `slot`, with its epoch.
    pub fn retired(&self, slot: u32) -> Option<([u8; 32], u64)> {
        if self.w(slot, W_RETIRED)?.load(Ordering::Acquire) == 0 {
            return None;
        }
        let epoch = self.w(slot, W_RETIRED_EPOCH)?.load(Ordering::Acquire);
        let mut key = [0u8; 32];
        for i in 0..4 {
            let v = self.w(slot, W_RETIRED_KEY + i)?.load(Ordering::Acquire);
            key[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        Some((key, epoch))
    }

    /// The session with tag `tag` left `slot` because another node took it
    /// over (not because it ended): the gateway does not report it expired.
    pub fn mark_moved(&self, slot: u32, tag: u64) {
        if let Some(w) = self.w(slot, W_MOVED) {
            w.store(tag, Ordering::Release);
        }
    }

    /// Whether the session with tag `tag` left `slot` by moving away.
    pub fn moved(&self, slot: u32, tag: u64) -> bool {
        tag != 0 && self.w(slot, W_MOVED).is_some_and(|w| w.load(Ordering::Acquire) == tag)
    }

    /// The retired key of `slot` is gone from the store.
    pub fn clear_retired(&self, slot: u32) {
        if let Some(w) = self.w(slot, W_RETIRED) {
            w.store(0, Ordering::Release);
        }
    }

    /// Claims the right to send `slot`'s last access `now_ms` to the store:
    /// true for exactly one caller per `period_ms` across every process.
    pub fn claim_touch(&self, slot: u32, now_ms: u64, period_ms: u64) -> bool {
        let Some(w) = self.w(slot, W_SAVED) else { return false };
        let saved = w.load(Ordering::Acquire);
        now_ms >= saved.saturating_add(period_ms)
            && w.compare_exchange(saved, now_ms, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }
}

/// The node-wide words of `cluster/state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Word {
    /// When the store went down, ms; 0 while it answers (the last store
    /// call of any process decides).
    DownSinceMs = 0,
    /// 1 once the reaper reconciled this node's sessions with the store
    /// after start; until then workers check ownership with the store.
    Reconciled,
    /// 1 while this node holds the store-wide reaper lease.
    Leader,
    /// When the master started, ms: sessions this node took or created
    /// since are its own without asking the store.
    StartedMs,
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
    /// Sessions whose acknowledged changes were lost: the flush after an
    /// outage found another node had taken them over (`serve-local`).
    LostWrites,
    /// Until when this node may serve its own copies under `fail-closed`
    /// (ms): a heartbeat's send time plus the lease, renewed when the
    /// heartbeat comes back through the notice subscription (cluster.md
    /// §6.11); 0 until the first one.
    LeaseUntilMs,
    /// The store's generation as this node last saw it (cluster.md
    /// §6.12); 0 until the reaper first asks.
    Generation,
    /// Times this node found the store's generation changed (the store
    /// lost its data) and re-seeded it.
    StoreResets,
    /// Sessions marked for the store by those re-seeds.
    Reseeded,
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

    /// Sets a word from `old` to `new`; whether it held `old`.
    pub fn swap(&self, k: Word, old: u64, new: u64) -> bool {
        self.w(k).compare_exchange(old, new, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    /// Adds to a counter.
    pub fn add(&self, k: Word, n: u64) {
        self.w(k).fetch_add(n, Ordering::Relaxed);
    }

    /// Records a store answer; returns true if the store was down before.
    pub fn store_ok(&self) -> bool {
        self.get(Word::DownSinceMs) != 0 && self.w(Word::DownSinceMs).swap(0, Ordering::AcqRel) != 0
    }

    /// Records a failed store call; returns true if the store was up before.
    pub fn store_failed(&self, now_ms: u64) -> bool {
        self.add(Word::Errors, 1);
        // A clock at 0 ms cannot be: 1 stands in so that "down" stays nonzero.
        let since = now_ms.max(1);
        self.w(Word::DownSinceMs).compare_exchange(0, since, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    /// Whether the store is down as far as this node knows.
    pub fn is_down(&self) -> bool {
        self.get(Word::DownSinceMs) != 0
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
        a.set(3, 7, 1_000, 0xabc, 500);
        assert_eq!(b.epoch(3, 0xabc), 7);
        assert_eq!(b.epoch(3, 0xdef), 0, "an entry about another session is not this one's");
        assert_eq!(b.entry(3, 0xabc), Some(Entry { epoch: 7, since_ms: 500 }));
        assert!(!b.claim_touch(3, 1_500, 1_000));
        assert!(b.claim_touch(3, 2_000, 1_000));
        assert!(!a.claim_touch(3, 2_000, 1_000));
        assert_eq!(a.epoch(99, 0xabc), 0);
        a.set(99, 1, 1, 1, 1);
        assert_eq!(a.retag(3, 0xabc, 0x123), 7);
        assert_eq!(b.epoch(3, 0x123), 7);
        assert_eq!(b.epoch(3, 0xabc), 0);
        assert_eq!(a.retired(3), None);
        a.retire(3, &[5; 32], 7);
        a.retire(3, &[6; 32], 8);
        assert_eq!(b.retired(3), Some(([5; 32], 7)), "the older retired key is kept");
        b.clear_retired(3);
        assert_eq!(a.retired(3), None);
        assert!(!a.moved(3, 0x123));
        b.mark_moved(3, 0x123);
        assert!(a.moved(3, 0x123) && !a.moved(3, 0x124));
        let c = Owners::open(dir.path(), "default", 16).unwrap();
        assert_eq!(c.epoch(3, 0x123), 7, "a resized table keeps the slots that remain");
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
        assert!(s.store_ok());
        assert!(!s.is_down());
        assert_eq!(s.get(Word::Errors), 2);
    }
}
