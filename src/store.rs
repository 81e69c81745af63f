//! The data directory: its exclusive lock, the `Version` file and the set
//! of context regions.
//!
//! Owns the rules around region files, not their bytes: one serving process
//! per data directory (an `flock` on `sessiond.lock` that names the holder's
//! pid), and iPlanet's cache-clearing gesture: a missing or foreign
//! `Version` file deletes every region file before the regions are opened.
//! It never reads or writes inside a region; that is `region`'s job.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::region::layout::FORMAT_VERSION;
use crate::region::open::OpenReport;
use crate::region::{Region, RegionConfig, RegionError};

/// Name of the lock file inside the data directory.
pub const LOCK_FILE: &str = "sessiond.lock";
/// Name of the version file inside the data directory.
pub const VERSION_FILE: &str = "Version";

/// Errors of data-directory handling.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process holds the data directory.
    #[error("data_dir {path} is in use by another sessiond (pid {pid}); stop it or choose another data_dir")]
    InUse {
        /// The data directory.
        path: PathBuf,
        /// The holder's pid as written in the lock file ("unknown" if unreadable).
        pid: String,
    },
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

fn io(call: &str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let (call, path) = (call.to_string(), path.to_path_buf());
    move |source| StoreError::Io { call, path, source }
}

/// Proof that this process holds the data directory exclusively. Regions
/// are opened for serving only with one of these. Dropping it (or the
/// death of every process sharing its descriptor) releases the lock.
#[derive(Debug)]
pub struct DataDirLock {
    _lock: Flock<File>,
    dir: PathBuf,
}

impl DataDirLock {
    /// Creates `dir` (mode 0700) if needed and takes its exclusive lock
    /// without waiting; refuses with the holder's pid if it is taken.
    pub fn acquire(dir: &Path) -> Result<DataDirLock, StoreError> {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io("mkdir -p", dir))?;
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io("open(O_CREAT, 0600)", &path))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut lock) => {
                lock.set_len(0).map_err(io("ftruncate", &path))?;
                lock.rewind().map_err(io("lseek", &path))?;
                writeln!(lock, "{}", std::process::id()).map_err(io("write(pid)", &path))?;
                Ok(DataDirLock { _lock: lock, dir: dir.to_path_buf() })
            }
            Err((mut file, errno)) if errno == nix::errno::Errno::EWOULDBLOCK => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = if pid.trim().is_empty() { "unknown".to_string() } else { pid.trim().to_string() };
                Err(StoreError::InUse { path: dir.to_path_buf(), pid })
            }
            Err((_, errno)) => {
                Err(StoreError::Io { call: "flock(LOCK_EX|LOCK_NB)".into(), path, source: std::io::Error::from(errno) })
            }
        }
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Reads the pid recorded in a data directory's lock file, if any.
pub fn recorded_pid(dir: &Path) -> Option<i32> {
    std::fs::read_to_string(dir.join(LOCK_FILE)).ok()?.trim().parse().ok()
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
pub fn open_regions(lock: &DataDirLock, cfgs: &[RegionConfig]) -> Result<Vec<(Region, OpenReport)>, StoreError> {
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
) -> Result<Vec<(Region, OpenReport)>, StoreError> {
    let dir = lock.dir();
    if let Some(why) = version_problem(dir) {
        let files = region_files(dir);
        log::warn!("{why}: clearing the session caches ({} region file(s) deleted)", files.len());
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

/// Name of the file that orders lock re-initialisation against tools.
pub const INIT_LOCK_FILE: &str = "init.lock";

/// Held while a server (re)initialises region locks, or while a tool has a
/// region attached. The server holds it exclusively only while it opens
/// regions; tools hold it shared, so a server never zeroes a mutex that a
/// tool holds or waits on (the LMDB rule: re-initialise under an exclusive
/// lock).
#[derive(Debug)]
pub struct InitLock {
    _lock: Flock<File>,
}

impl InitLock {
    /// Takes the init lock, exclusive or shared, waiting at most `timeout`.
    /// Only the server (exclusive) creates the file; a tool (shared) opens
    /// it read-only and gets `None` if no server ever created it, so a tool
    /// run as root cannot leave a root-owned lock file behind.
    pub fn acquire(dir: &Path, exclusive: bool, timeout: std::time::Duration) -> Result<InitLock, StoreError> {
        Self::try_acquire(dir, exclusive, timeout)?.ok_or_else(|| StoreError::Io {
            call: "open(O_RDONLY)".into(),
            path: dir.join(INIT_LOCK_FILE),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        })
    }

    /// As [`Self::acquire`], but `Ok(None)` when a tool finds no lock file.
    pub fn try_acquire(
        dir: &Path,
        exclusive: bool,
        timeout: std::time::Duration,
    ) -> Result<Option<InitLock>, StoreError> {
        let path = dir.join(INIT_LOCK_FILE);
        let opened = if exclusive {
            OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(&path)
        } else {
            match File::open(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                r => r,
            }
        };
        let mut file = opened.map_err(io(if exclusive { "open(O_CREAT, 0600)" } else { "open(O_RDONLY)" }, &path))?;
        let arg = if exclusive { FlockArg::LockExclusiveNonblock } else { FlockArg::LockSharedNonblock };
        let start = std::time::Instant::now();
        loop {
            match Flock::lock(file, arg) {
                Ok(l) => return Ok(Some(InitLock { _lock: l })),
                Err((f, e)) if e == nix::errno::Errno::EWOULDBLOCK && start.elapsed() < timeout => {
                    file = f;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err((_, e)) => {
                    return Err(StoreError::Io {
                        call: format!(
                            "flock({}, {})",
                            if exclusive { "LOCK_EX" } else { "LOCK_SH" },
                            timeout.as_secs_f64()
                        ),
                        path,
                        source: std::io::Error::from(e),
                    });
                }
            }
        }
    }
}

/// The pid of the sessiond holding `dir`, if one is running (the data-dir
/// lock is held). Does not create or change anything.
pub fn running_pid(dir: &Path) -> Option<i32> {
    let file = File::open(dir.join(LOCK_FILE)).ok()?;
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        Ok(_) => None,
        Err((_, e)) if e == nix::errno::Errno::EWOULDBLOCK => Some(recorded_pid(dir).unwrap_or(0)),
        Err(_) => None,
    }
}
