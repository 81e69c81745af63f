//! Plain system calls with no policy: a leaf module that imports nothing
//! from the crate, so both `region` and `sys` can use it without a cycle.
//! Each wrapper returns the OS error; callers name the call and its
//! arguments in their own error values.

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

/// Whether we run as root (effective uid 0).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}
