//! Robust, process-shared pthread mutexes living inside the region map.
//!
//! Written by hand because no crate is good enough: `raw_sync` and
//! `shared_mutex` do not set `PTHREAD_MUTEX_ROBUST`, so a process killed
//! while holding a lock would wedge every other process forever. This module
//! wraps exactly four libc calls (`init`, `timedlock`, `consistent`,
//! `unlock`) and never decides what "repair" means: the caller gets
//! [`Acquired::OwnerDead`] and must repair the stripe *before* calling
//! [`consistent`], as LMDB does.
//!
//! It must never hold a reference to the mutex: it only ever passes raw
//! pointers to libc.

use std::io;
use std::time::Duration;

/// How a lock was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acquired {
    /// Normal acquisition; `contended` says whether the try-lock failed first.
    Clean {
        /// The fast try-lock failed and we had to wait.
        contended: bool,
    },
    /// The previous owner died holding the lock: the protected data may be
    /// half-written. Repair it, then call [`consistent`].
    OwnerDead,
}

/// Why a lock could not be obtained.
#[derive(Debug)]
pub enum LockFailure {
    /// The wait ran out of the configured timeout.
    Timeout,
    /// The mutex was unlocked without being made consistent after an
    /// owner died; only re-initialisation (under the data-dir lock) helps.
    NotRecoverable,
    /// Any other error from `pthread_mutex_timedlock`.
    Os(io::Error),
}

/// Initialises a robust, process-shared mutex at `m`.
///
/// # Safety
/// `m` must be valid for writes of `pthread_mutex_t`, suitably aligned, and
/// no process may be using the mutex (the caller holds the exclusive
/// data-dir lock or the file is brand new).
pub unsafe fn init(m: *mut libc::pthread_mutex_t) -> io::Result<()> {
    let mut attr = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
    // SAFETY: attr is a local, valid for writes; the calls below only run
    // after a successful init, and destroy is called on every path after it.
    unsafe {
        check("pthread_mutexattr_init", libc::pthread_mutexattr_init(attr.as_mut_ptr()))?;
        let a = attr.as_mut_ptr();
        let r = (|| {
            check(
                "pthread_mutexattr_setpshared(PTHREAD_PROCESS_SHARED)",
                libc::pthread_mutexattr_setpshared(a, libc::PTHREAD_PROCESS_SHARED),
            )?;
            check(
                "pthread_mutexattr_setrobust(PTHREAD_MUTEX_ROBUST)",
                libc::pthread_mutexattr_setrobust(a, libc::PTHREAD_MUTEX_ROBUST),
            )?;
            // Zero the old bytes first: a stale lock word from a crashed
            // machine must not influence init.
            std::ptr::write_bytes(m as *mut u8, 0, std::mem::size_of::<libc::pthread_mutex_t>());
            check("pthread_mutex_init", libc::pthread_mutex_init(m, a))
        })();
        libc::pthread_mutexattr_destroy(a);
        r
    }
}

/// Locks `m`, waiting at most `timeout`.
///
/// # Safety
/// `m` must point to a mutex initialised by [`init`] inside a live mapping.
pub unsafe fn lock(m: *mut libc::pthread_mutex_t, timeout: Duration) -> Result<Acquired, LockFailure> {
    // SAFETY: m is an initialised mutex (caller's contract).
    let r = unsafe { libc::pthread_mutex_trylock(m) };
    match r {
        0 => return Ok(Acquired::Clean { contended: false }),
        libc::EOWNERDEAD => return Ok(Acquired::OwnerDead),
        libc::ENOTRECOVERABLE => return Err(LockFailure::NotRecoverable),
        libc::EBUSY => {}
        e => return Err(LockFailure::Os(io::Error::from_raw_os_error(e))),
    }
    let deadline = realtime_deadline(timeout);
    // SAFETY: as above; deadline is a valid timespec on our stack.
    let r = unsafe { libc::pthread_mutex_timedlock(m, &deadline) };
    match r {
        0 => Ok(Acquired::Clean { contended: true }),
        libc::EOWNERDEAD => Ok(Acquired::OwnerDead),
        libc::ETIMEDOUT => Err(LockFailure::Timeout),
        libc::ENOTRECOVERABLE => Err(LockFailure::NotRecoverable),
        e => Err(LockFailure::Os(io::Error::from_raw_os_error(e))),
    }
}

/// Marks a mutex obtained with [`Acquired::OwnerDead`] consistent again.
/// Call only after the protected data has been repaired.
///
/// # Safety
/// The calling thread must hold `m`, obtained with `OwnerDead`.
pub unsafe fn consistent(m: *mut libc::pthread_mutex_t) -> io::Result<()> {
    // SAFETY: caller holds the mutex in the owner-dead state.
    check("pthread_mutex_consistent", unsafe { libc::pthread_mutex_consistent(m) })
}

/// Unlocks `m`.
///
/// # Safety
/// The calling thread must hold `m`, and if it was obtained with
/// `OwnerDead`, [`consistent`] must have been called first.
pub unsafe fn unlock(m: *mut libc::pthread_mutex_t) {
    // SAFETY: caller holds the mutex.
    let r = unsafe { libc::pthread_mutex_unlock(m) };
    debug_assert_eq!(r, 0, "pthread_mutex_unlock failed: {r}");
}

fn realtime_deadline(timeout: Duration) -> libc::timespec {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: now is a valid out-pointer; CLOCK_REALTIME always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) };
    let total_ns = now.tv_nsec as u64 + timeout.subsec_nanos() as u64;
    libc::timespec {
        tv_sec: now.tv_sec + timeout.as_secs() as libc::time_t + (total_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (total_ns % 1_000_000_000) as libc::c_long,
    }
}

fn check(call: &str, r: libc::c_int) -> io::Result<()> {
    if r == 0 {
        Ok(())
    } else {
        let e = io::Error::from_raw_os_error(r);
        Err(io::Error::new(e.kind(), format!("{call} failed: {e}")))
    }
}
