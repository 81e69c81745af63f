//! The data directory's two locks: the exclusive serving lock
//! (`sessiond.lock`, one server per data directory, naming its pid) and the
//! init lock (`init.lock`, which orders lock re-initialisation against
//! tools). A leaf module: it knows nothing of regions or configuration, so
//! `region` can demand a [`DataDirLock`] as proof without a cycle.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// Name of the lock file inside the data directory.
pub const LOCK_FILE: &str = "sessiond.lock";

/// Errors of the data-directory locks.
#[derive(Debug, thiserror::Error)]
pub enum DirLockError {
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
}

fn io(call: &str, path: &Path) -> impl FnOnce(std::io::Error) -> DirLockError {
    let (call, path) = (call.to_string(), path.to_path_buf());
    move |source| DirLockError::Io { call, path, source }
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
    pub fn acquire(dir: &Path) -> Result<DataDirLock, DirLockError> {
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
                Err(DirLockError::InUse { path: dir.to_path_buf(), pid })
            }
            Err((_, errno)) => Err(DirLockError::Io {
                call: "flock(LOCK_EX|LOCK_NB)".into(),
                path,
                source: std::io::Error::from(errno),
            }),
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
    pub fn acquire(dir: &Path, exclusive: bool, timeout: std::time::Duration) -> Result<InitLock, DirLockError> {
        Self::try_acquire(dir, exclusive, timeout)?.ok_or_else(|| DirLockError::Io {
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
    ) -> Result<Option<InitLock>, DirLockError> {
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
                    return Err(DirLockError::Io {
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
