//! Disk space for shared mappings: a leaf module that imports nothing from
//! the crate, so both `region` and `sys` reserve their files' blocks the
//! same way without a cycle.
//!
//! A page of a `MAP_SHARED` file that the file system cannot allocate on a
//! full disk raises SIGBUS in the process that first writes to it. Every
//! mapped file of sessiond (regions, counter files) reserves its blocks
//! with [`fallocate`] before it is mapped. The wrapper returns the OS
//! error; callers name the call and its arguments in their own errors.

use std::io;

/// Reserves `len` bytes of disk for `file` (`posix_fallocate`), so later
/// writes through a shared mapping cannot hit a full disk (SIGBUS).
pub fn fallocate(file: &std::fs::File, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let len = libc::off_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    // SAFETY: plain syscall on a descriptor the caller owns; no memory is
    // passed.
    let r = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
    if r == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(r)) }
}
