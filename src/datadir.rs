//! The data directory: the `Version` file and the set of context regions.
//!
//! Owns the rules around region files, not their bytes: iPlanet's
//! cache-clearing gesture (a missing or foreign `Version` file deletes
//! every region file before the regions are opened), and opening every
//! context's region under the locks of [`crate::dirlock`]. It never reads
//! or writes inside a region; that is `region`'s job. (The cluster's
//! backing store is something else: `crate::store`.)

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

pub use crate::dirlock::{DataDirLock, DirLockError, INIT_LOCK_FILE, InitLock, LOCK_FILE, recorded_pid, running_pid};
use crate::region::{FORMAT_VERSION, MIGRATES_FROM, OpenReport, Region, RegionConfig, RegionError};

/// Name of the version file inside the data directory.
pub const VERSION_FILE: &str = "Version";

/// Errors of data-directory handling.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// A lock could not be taken.
    #[error(transparent)]
    Lock(#[from] DirLockError),
    /// A system call failed.
    #[error("{call} on {path} failed: {source}")]
    Io {
        /// The call.
        call: String,
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A region could not be opened.
    #[error(transparent)]
    Region(#[from] RegionError),
}

fn io(call: &str, path: &Path) -> impl FnOnce(std::io::Error) -> DataDirError {
    let (call, path) = (call.to_string(), path.to_path_buf());
    move |source| DataDirError::Io { call, path, source }
}

/// Why the caches must be cleared, if they must.
pub fn version_problem(dir: &Path) -> Option<String> {
    let path = dir.join(VERSION_FILE);
    match std::fs::read_to_string(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(format!("{} is missing", path.display())),
        Err(e) => {
            // A transient or permission error is not the operator's "clear
            // the cache" gesture: keep the sessions; rewriting Version will
            // fail loudly if the problem persists.
            log::warn!("{} is unreadable ({e}); not clearing the session caches", path.display());
            None
        }
        Ok(s) if s.trim() == FORMAT_VERSION.to_string() => None,
        // An older format this build migrates: each region migrates itself
        // when it opens (docs/design.md §10.5), keeping every session.
        Ok(s) if MIGRATES_FROM.iter().any(|v| s.trim() == v.to_string()) => None,
        Ok(s) => Some(format!(
            "{} holds format {:?}, this build writes {FORMAT_VERSION}",
            path.display(),
            s.trim().chars().take(32).collect::<String>()
        )),
    }
}

/// Every region file under `dir/contexts/*/`.
pub fn region_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir.join("contexts")) {
        for e in rd.flatten() {
            let p = e.path().join("sessions.region");
            if p.is_file() {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Opens (creating, rebuilding or migrating as needed) one region per
/// context. If `Version` is missing or foreign, every region file is
/// deleted first and `Version` is rewritten afterwards.
pub fn open_regions(lock: &DataDirLock, cfgs: &[RegionConfig]) -> Result<Vec<(Region, OpenReport)>, DataDirError> {
    // Wait (bounded) for tools that have a region attached to finish.
    let init = InitLock::acquire(lock.dir(), true, std::time::Duration::from_secs(10))?;
    open_regions_locked(lock, &init, cfgs)
}

/// [`open_regions`] for a caller that already holds the init lock
/// exclusively (the master takes it before it drains workers at a reload,
/// so a busy tool makes the reload fail early instead of after the drain).
pub fn open_regions_locked(
    lock: &DataDirLock,
    _init: &InitLock,
    cfgs: &[RegionConfig],
) -> Result<Vec<(Region, OpenReport)>, DataDirError> {
    let dir = lock.dir();
    if let Some(why) = version_problem(dir) {
        let files = region_files(dir);
        if files.is_empty() && !dir.join(VERSION_FILE).exists() {
            // A brand-new data directory: nothing to clear, nothing to warn about.
            log::info!("{}: new data directory; creating the regions and {VERSION_FILE}", dir.display());
        } else {
            log::warn!("{why}: clearing the session caches ({} region file(s) deleted)", files.len());
        }
        for f in files {
            std::fs::remove_file(&f).map_err(io("unlink", &f))?;
        }
    }
    let mut out = Vec::with_capacity(cfgs.len());
    for cfg in cfgs {
        let path = Region::path_for(dir, &cfg.context);
        let parent = path.parent().unwrap_or(dir);
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(parent).map_err(io("mkdir -p", parent))?;
        out.push(Region::open_serving(&path, cfg, lock)?);
    }
    let vpath = dir.join(VERSION_FILE);
    let tmp = dir.join("Version.tmp");
    std::fs::write(&tmp, format!("{FORMAT_VERSION}\n")).map_err(io("write", &tmp))?;
    std::fs::rename(&tmp, &vpath).map_err(io("rename(to Version)", &tmp))?;
    Ok(out)
}
