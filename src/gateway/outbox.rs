//! The durable side of the session-manager hook: which gateway sessions
//! exist (live records) and which destroy notices are still owed (the
//! outbox), as files under `<data_dir>/gateway/`.
//!
//! - `live/<handle>`: written at login after the session exists; holds the
//!   user. It is how an expiry or eviction, which frees the slot and its
//!   attributes, can still be reported with the user.
//! - `outbox/<handle>.json`: one destroy notice, written (temp file, then a
//!   hard link, so the first writer wins and a reader never sees half a
//!   file) *after* the session is gone, then the live record is removed.
//!
//! Who writes what: a worker queues `logout`, `control` and `replaced`
//! notices as it destroys the session. The reaper reconciles: every live
//! record whose session is no longer in its slot gets an `expired` notice
//! (this also covers a worker killed between the destroy and the queueing:
//! nothing is lost, only the reason may read `expired`). The reaper alone
//! delivers the outbox, with back-off, for up to 24 h. A notice may be
//! delivered more than once (a crash between the manager's 2xx and the
//! unlink); managers must treat destroy as idempotent.
//!
//! File I/O only: it never touches a region and never holds a lock.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// When a notice that failed is tried again: 2 s after the first failure,
/// doubling, at most 5 min.
const RETRY: crate::outbound::retry::Backoff =
    crate::outbound::retry::Backoff::new(Duration::from_secs(2), Duration::from_secs(300));

/// How long a notice is retried before it is dropped (with a warning).
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(24 * 3600);

/// One owed destroy notice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// The session's control handle.
    pub session: String,
    /// Its user.
    pub user: String,
    /// `logout`, `expired`, `control`, `replaced` or `evicted`.
    pub reason: String,
    /// When the session ended, ms since the epoch.
    pub ended_ms: u64,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// Not before this time (ms since the epoch).
    pub next_ms: u64,
}

impl Notice {
    /// The body POSTed to the manager.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "type": "session.destroy",
            "session": self.session,
            "user": self.user,
            "reason": self.reason,
        })
    }
}

/// The gateway's files in a data directory.
#[derive(Clone, Debug)]
pub struct Outbox {
    /// `<data_dir>/gateway/live`.
    live: PathBuf,
    /// `<data_dir>/gateway/outbox`.
    outbox: PathBuf,
}

fn io_err(call: &str, p: &Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{call} {}: {e}", p.display()))
}

/// Handles are `[0-9a-f]+.[A-Za-z0-9_-]+`; anything else never becomes a
/// file name.
fn safe_name(handle: &str) -> bool {
    !handle.is_empty()
        && handle.len() <= super::handle::MAX_HANDLE_LEN
        && handle.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
        && !handle.starts_with('.')
}

impl Outbox {
    /// Opens (creating, mode 0700) the gateway directories under `data_dir`.
    pub fn open(data_dir: &Path) -> std::io::Result<Outbox> {
        let base = data_dir.join("gateway");
        let (live, outbox) = (base.join("live"), base.join("outbox"));
        for d in [&live, &outbox] {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(d).map_err(|e| io_err("mkdir -p", d, e))?;
        }
        Ok(Outbox { live, outbox })
    }

    fn write_new(&self, dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<bool> {
        let mut rnd = [0u8; 8];
        let _ = getrandom::getrandom(&mut rnd);
        let tmp = dir.join(format!(".tmp-{}-{}", std::process::id(), u64::from_le_bytes(rnd)));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| io_err("open(O_CREAT|O_EXCL)", &tmp, e))?;
        f.write_all(bytes).and_then(|_| f.sync_data()).map_err(|e| io_err("write", &tmp, e))?;
        drop(f);
        let dst = dir.join(name);
        let r = std::fs::hard_link(&tmp, &dst);
        let _ = std::fs::remove_file(&tmp);
        match r {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(io_err("link", &dst, e)),
        }
    }

    /// Records a new gateway session (after it exists).
    pub fn record_live(&self, handle: &str, user: &str) -> std::io::Result<()> {
        if !safe_name(handle) {
            return Err(std::io::Error::other(format!("refusing a handle that is not a file name: {handle:?}")));
        }
        let body = serde_json::json!({ "user": user }).to_string();
        // A stale record under the same handle cannot exist (a handle names one token).
        self.write_new(&self.live, handle, body.as_bytes()).map(|_| ())
    }

    /// The user of a live record.
    pub fn live_user(&self, handle: &str) -> Option<String> {
        if !safe_name(handle) {
            return None;
        }
        let text = std::fs::read(self.live.join(handle)).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&text).ok()?;
        v.get("user")?.as_str().map(str::to_string)
    }

    /// Every live record's handle.
    pub fn live_handles(&self) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(&self.live) else { return Vec::new() };
        rd.flatten().filter_map(|e| e.file_name().into_string().ok()).filter(|n| safe_name(n)).collect()
    }

    /// Queues a destroy notice for a session that is gone, then forgets its
    /// live record. Returns false when a notice for it was already queued
    /// (the first reason wins).
    pub fn queue(&self, handle: &str, user: &str, reason: &str, now_ms: u64) -> std::io::Result<bool> {
        if !safe_name(handle) {
            return Err(std::io::Error::other(format!("refusing a handle that is not a file name: {handle:?}")));
        }
        let n = Notice {
            session: handle.to_string(),
            user: user.to_string(),
            reason: reason.to_string(),
            ended_ms: now_ms,
            attempts: 0,
            next_ms: now_ms,
        };
        let body = serde_json::to_vec(&n).map_err(std::io::Error::other)?;
        let queued = self.write_new(&self.outbox, &format!("{handle}.json"), &body)?;
        let _ = std::fs::remove_file(self.live.join(handle));
        Ok(queued)
    }

    /// Forgets a live record without a notice: the session did not end
    /// here, it moved to another node (cluster mode).
    pub fn forget_live(&self, handle: &str) {
        if safe_name(handle) {
            let _ = std::fs::remove_file(self.live.join(handle));
        }
    }

    /// Every queued notice, oldest first, with its file.
    pub fn pending(&self) -> Vec<(PathBuf, Notice)> {
        let Ok(rd) = std::fs::read_dir(&self.outbox) else { return Vec::new() };
        let mut out: Vec<(PathBuf, Notice)> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .filter_map(|p| match std::fs::read(&p).ok().and_then(|b| serde_json::from_slice::<Notice>(&b).ok()) {
                Some(n) => Some((p, n)),
                None => {
                    log::warn!("gateway outbox: {} is unreadable; moved aside", p.display());
                    let _ = std::fs::rename(&p, p.with_extension("bad"));
                    None
                }
            })
            .collect();
        out.sort_by_key(|(_, n)| n.ended_ms);
        out
    }

    /// Records a failed attempt: the next one waits twice as long (1 s to 5 min).
    pub fn retry_later(&self, file: &Path, mut n: Notice, now_ms: u64) -> std::io::Result<()> {
        n.attempts = n.attempts.saturating_add(1);
        n.next_ms = now_ms + RETRY.delay(n.attempts).as_millis() as u64;
        let tmp = file.with_extension("retry");
        std::fs::write(&tmp, serde_json::to_vec(&n).map_err(std::io::Error::other)?)
            .map_err(|e| io_err("write", &tmp, e))?;
        std::fs::rename(&tmp, file).map_err(|e| io_err("rename", file, e))
    }

    /// Removes a delivered (or abandoned) notice.
    pub fn done(&self, file: &Path) {
        let _ = std::fs::remove_file(file);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_is_queued_once_and_the_live_record_goes() {
        let d = tempfile::tempdir().unwrap();
        let o = Outbox::open(d.path()).unwrap();
        o.record_live("2a.AAAA", "alice").unwrap();
        assert_eq!(o.live_user("2a.AAAA").as_deref(), Some("alice"));
        assert_eq!(o.live_handles(), vec!["2a.AAAA".to_string()]);
        assert!(o.queue("2a.AAAA", "alice", "logout", 5).unwrap());
        assert!(!o.queue("2a.AAAA", "alice", "expired", 6).unwrap(), "the first reason wins");
        assert!(o.live_handles().is_empty());
        let p = o.pending();
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].1.reason.as_str(), p[0].1.user.as_str()), ("logout", "alice"));
        o.retry_later(&p[0].0, p[0].1.clone(), 10).unwrap();
        let p = o.pending();
        assert_eq!((p[0].1.attempts, p[0].1.next_ms), (1, 2010));
        o.done(&p[0].0);
        assert!(o.pending().is_empty());
        assert!(o.record_live("../x", "u").is_err());
        assert!(o.live_user("../x").is_none());
    }
}
