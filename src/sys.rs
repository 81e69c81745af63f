//! System calls the server needs around processes: fork, parent-death
//! signals, waiting for signals, process titles, privilege drop, socket
//! setup, counter files.
//!
//! This is the only module besides `region` that holds `unsafe`. Every
//! failure names the call and its arguments (nginx style). It never starts a
//! thread: the master calls it before forking.

use std::ffi::{CStr, CString, c_char, c_int};
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use nix::unistd::{ForkResult, Pid};

use crate::config::Listen;

/// Errors of system calls, naming the call.
#[derive(Debug, thiserror::Error)]
#[error("{call} failed: {source}")]
pub struct SysError {
    /// The call and its arguments.
    pub call: String,
    /// The OS error.
    pub source: io::Error,
}

fn err(call: impl Into<String>) -> impl FnOnce(io::Error) -> SysError {
    let call = call.into();
    move |source| SysError { call, source }
}

/// Which side of a fork we are on.
pub enum Forked {
    /// The parent, with the child's pid.
    Parent(Pid),
    /// The child.
    Child,
}

/// `fork()`. The caller must be single-threaded (the master never starts a
/// thread), which is what makes the child safe to continue in Rust.
pub fn fork() -> Result<Forked, SysError> {
    // SAFETY: the master is single-threaded when it forks (it never starts
    // threads or a runtime), so the child inherits no lock held by another
    // thread.
    match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Parent { child }) => Ok(Forked::Parent(child)),
        Ok(ForkResult::Child) => Ok(Forked::Child),
        Err(e) => Err(SysError { call: "fork()".into(), source: e.into() }),
    }
}

/// In a freshly forked child: ask for SIGKILL when the parent dies, and
/// exit at once if it already has.
pub fn die_with_parent(parent: Pid) -> Result<(), SysError> {
    // SAFETY: prctl with integer arguments only.
    let r = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) };
    if r != 0 {
        return Err(SysError { call: "prctl(PR_SET_PDEATHSIG, SIGKILL)".into(), source: io::Error::last_os_error() });
    }
    if nix::unistd::getppid() != parent {
        // The parent died between fork and prctl.
        std::process::exit(0);
    }
    Ok(())
}

/// Blocks `signals` for this (single-threaded) process and returns the set,
/// for [`wait_signal`]: the master takes its signals synchronously, as
/// nginx's master does in `sigsuspend`, so no handler runs at all. Children
/// inherit the mask and undo it with [`unblock_signals`].
pub fn block_signals(signals: &[nix::sys::signal::Signal]) -> Result<nix::sys::signal::SigSet, SysError> {
    let mut set = nix::sys::signal::SigSet::empty();
    for s in signals {
        set.add(*s);
    }
    set.thread_block().map_err(|e| SysError { call: "sigprocmask(SIG_BLOCK)".into(), source: e.into() })?;
    Ok(set)
}

/// Unblocks every signal (a child, after its handlers are installed).
pub fn unblock_signals() {
    let _ = nix::sys::signal::SigSet::empty().thread_set_mask();
}

/// Waits (`sigtimedwait`) until one of the blocked `set` is pending and
/// takes it; `None` when `timeout` passed first (or a signal outside the
/// set interrupted the wait). No timeout: wait as long as it takes.
pub fn wait_signal(
    set: &nix::sys::signal::SigSet,
    timeout: Option<std::time::Duration>,
) -> Result<Option<nix::sys::signal::Signal>, SysError> {
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: libc::time_t::try_from(t.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: t.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `set` is a valid, initialised sigset_t; the info pointer may be
    // null; `ts_ptr` is null or points at `ts`, which outlives the call.
    let r = unsafe { libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), ts_ptr) };
    if r < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(None),
            _ => Err(SysError { call: "sigtimedwait()".into(), source: e }),
        };
    }
    Ok(nix::sys::signal::Signal::try_from(r).ok())
}

static ARGV_START: AtomicPtr<c_char> = AtomicPtr::new(std::ptr::null_mut());
static ARGV_LEN: AtomicUsize = AtomicUsize::new(0);

/// glibc calls `.init_array` functions with (argc, argv, envp), as std does
/// for `std::env::args`; we remember the contiguous argv area so the
/// process title can be rewritten in place (what `ps` shows).
extern "C" fn capture_argv(argc: c_int, argv: *const *const c_char, _envp: *const *const c_char) {
    if argc <= 0 || argv.is_null() {
        return;
    }
    // SAFETY: glibc passes the real argv with argc valid, NUL-terminated
    // entries; we only read pointers and string lengths.
    unsafe {
        let first = *argv;
        let last = *argv.add(argc as usize - 1);
        if first.is_null() || last.is_null() {
            return;
        }
        // Use the area only if every string follows the previous one's NUL
        // (the kernel lays argv out that way; check rather than assume).
        for i in 0..argc as usize - 1 {
            let (a, b) = (*argv.add(i), *argv.add(i + 1));
            if a.is_null() || b.is_null() || a.add(CStr::from_ptr(a).to_bytes().len() + 1) != b {
                return;
            }
        }
        let end = last.add(CStr::from_ptr(last).to_bytes().len());
        ARGV_START.store(first as *mut c_char, Ordering::Relaxed);
        ARGV_LEN.store(end.offset_from(first) as usize, Ordering::Relaxed);
    }
}

// SAFETY: `.init_array` entries are called once by glibc's startup code with
// (argc, argv, envp) before main, exactly as std's own argv capture is; the
// function only reads argv and stores two atomics.
#[used]
#[unsafe(link_section = ".init_array")]
static CAPTURE_ARGV: extern "C" fn(c_int, *const *const c_char, *const *const c_char) = capture_argv;

/// Sets the process title shown by `ps` (e.g. `sessiond: worker 1`) and
/// the kernel's 15-byte `comm` name (e.g. `sessiond-w1`).
pub fn set_title(title: &str, comm: &str) {
    let start = ARGV_START.load(Ordering::Relaxed);
    let len = ARGV_LEN.load(Ordering::Relaxed);
    if !start.is_null() && len > 0 {
        let bytes = title.as_bytes();
        let n = bytes.len().min(len);
        // SAFETY: [start, start+len] (len+1 bytes with the final NUL) is the
        // process's own argv area captured at startup; it is writable. The
        // binary parses its flags before it sets a title, so nothing reads
        // the old arguments afterwards.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), start as *mut u8, n);
            std::ptr::write_bytes((start as *mut u8).add(n), 0, len + 1 - n);
        }
    }
    if let Ok(c) = CString::new(comm.bytes().take(15).collect::<Vec<u8>>()) {
        // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
        unsafe { libc::prctl(libc::PR_SET_NAME, c.as_ptr() as libc::c_ulong, 0, 0, 0) };
    }
}

/// A bound, listening socket.
pub enum Bound {
    /// TCP.
    Tcp(TcpListener),
    /// Unix.
    Unix(UnixListener),
}

impl Bound {
    /// The bound address as `host:port` or `unix:/path` (tests read the
    /// real port from the startup log line when `listen` used port 0).
    pub fn describe(&self) -> String {
        match self {
            Bound::Tcp(l) => l.local_addr().map(|a| a.to_string()).unwrap_or_else(|_| "?".into()),
            Bound::Unix(l) => l
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p| format!("unix:{}", p.display())))
                .unwrap_or_else(|| "unix:?".into()),
        }
    }
}

/// Binds `listen` (SO_REUSEADDR; SO_REUSEPORT when asked), with a deep
/// backlog so connections queue while workers are replaced.
pub fn bind(listen: &Listen, reuse_port: bool) -> Result<Bound, SysError> {
    match listen {
        Listen::Tcp(addr) => bind_tcp(*addr, reuse_port).map(Bound::Tcp),
        Listen::Unix(path) => {
            if path.exists() {
                // A stale socket from a previous run; the data-dir lock already
                // proves no other sessiond of ours is running on this config.
                let _ = std::fs::remove_file(path);
            }
            let l = UnixListener::bind(path).map_err(err(format!("bind(unix:{})", path.display())))?;
            Ok(Bound::Unix(l))
        }
    }
}

fn bind_tcp(addr: SocketAddr, reuse_port: bool) -> Result<TcpListener, SysError> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None).map_err(err(format!("socket({addr})")))?;
    s.set_reuse_address(true).map_err(err("setsockopt(SO_REUSEADDR)"))?;
    if reuse_port {
        s.set_reuse_port(true).map_err(err("setsockopt(SO_REUSEPORT)"))?;
    }
    s.set_nodelay(true).map_err(err("setsockopt(TCP_NODELAY)"))?;
    s.bind(&addr.into()).map_err(err(format!("bind({addr})")))?;
    s.listen(4096).map_err(err(format!("listen({addr}, 4096)")))?;
    Ok(s.into())
}

/// Takes the first socket passed by systemd socket activation, if any.
pub fn socket_from_systemd() -> Result<Option<Bound>, SysError> {
    let fds: Vec<_> = match sd_notify::listen_fds() {
        Ok(f) => f.collect(),
        Err(_) => return Ok(None),
    };
    let Some(&fd) = fds.first() else { return Ok(None) };
    // SAFETY: systemd passed this descriptor to us (LISTEN_PID matched); we
    // take sole ownership of it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let is_unix = nix::sys::socket::getsockname::<nix::sys::socket::UnixAddr>(fd).is_ok_and(|a| a.path().is_some());
    Ok(Some(if is_unix { Bound::Unix(UnixListener::from(owned)) } else { Bound::Tcp(TcpListener::from(owned)) }))
}

/// Switches to `user` (and its primary group and supplementary groups).
pub fn drop_privileges(user: &str) -> Result<(), SysError> {
    let u = nix::unistd::User::from_name(user)
        .map_err(|e| SysError { call: format!("getpwnam({user})"), source: e.into() })?
        .ok_or_else(|| SysError { call: format!("getpwnam({user})"), source: io::Error::other("no such user") })?;
    let name =
        CString::new(user).map_err(|_| SysError { call: "user name".into(), source: io::Error::other("NUL") })?;
    nix::unistd::initgroups(&name, u.gid)
        .map_err(|e| SysError { call: format!("initgroups({user})"), source: e.into() })?;
    nix::unistd::setgid(u.gid).map_err(|e| SysError { call: format!("setgid({})", u.gid), source: e.into() })?;
    nix::unistd::setuid(u.uid).map_err(|e| SysError { call: format!("setuid({})", u.uid), source: e.into() })?;
    Ok(())
}

/// Changes the owner of every file under `dir` (and `dir`) to `user`.
pub fn chown_tree(dir: &Path, user: &str) -> Result<(), SysError> {
    let u = nix::unistd::User::from_name(user)
        .ok()
        .flatten()
        .ok_or_else(|| SysError { call: format!("getpwnam({user})"), source: io::Error::other("no such user") })?;
    // Never follow a symlink: data_dir belongs to the unprivileged user
    // after the first start, and a link planted there must not make root
    // chown (or recurse into) anything outside it.
    fn walk(p: &Path, uid: nix::unistd::Uid, gid: nix::unistd::Gid, depth: u32) -> Result<(), SysError> {
        let meta = std::fs::symlink_metadata(p).map_err(err(format!("lstat({})", p.display())))?;
        if meta.file_type().is_symlink() {
            log::warn!("{} is a symlink; not changing its owner", p.display());
            return Ok(());
        }
        nix::unistd::fchownat(None, p, Some(uid), Some(gid), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(|e| SysError { call: format!("lchown({}, {uid})", p.display()), source: e.into() })?;
        if meta.is_dir() && depth < 4 {
            for e in std::fs::read_dir(p).map_err(err(format!("opendir({})", p.display())))?.flatten() {
                walk(&e.path(), uid, gid, depth + 1)?;
            }
        }
        Ok(())
    }
    walk(dir, u.uid, u.gid, 0)
}

pub use crate::disk::fallocate;

/// Whether we run as root (effective uid 0).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A file of u64 words, mapped shared, updated atomically by every process:
/// the server-wide HTTP metrics (recreated at each start, [`CounterFile::create`])
/// and the cluster's owner tables and node state (kept across restarts,
/// [`CounterFile::open_sized`]). Its blocks are reserved before it is
/// mapped, so a full disk is an error at open, never a SIGBUS later.
pub struct CounterFile {
    map: memmap2::MmapRaw,
    words: usize,
}

/// Absorbs out-of-range counter indexes instead of panicking.
static SPARE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl CounterFile {
    /// Creates (or truncates) `path` with `words` zeroed counters, mode 0600.
    pub fn create(path: &Path, words: usize) -> Result<CounterFile, SysError> {
        use std::os::unix::fs::OpenOptionsExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(err(format!("open({}, O_CREAT|O_TRUNC, 0600)", path.display())))?;
        let len = (words * 8) as u64;
        f.set_len(len).map_err(err(format!("ftruncate({}, {len})", path.display())))?;
        // Reserve the blocks now: a sparse page that cannot be allocated on
        // a full disk would SIGBUS the first process that writes to it.
        fallocate(&f, len).map_err(err(format!("fallocate({}, {len} bytes)", path.display())))?;
        Self::map(&f, path)
    }

    /// Opens (creating it, mode 0600) the file of `words` counters at
    /// `path` and keeps what it holds: a file of another size is extended
    /// with zeros or cut, so the counters that remain keep their values
    /// (files that outlive a restart, such as the cluster's shared words).
    pub fn open_sized(path: &Path, words: usize) -> Result<CounterFile, SysError> {
        use std::os::unix::fs::OpenOptionsExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(err(format!("open({}, O_CREAT, 0600)", path.display())))?;
        let len = (words.max(1) * 8) as u64;
        let now = f.metadata().map_err(err(format!("fstat({})", path.display())))?.len();
        if now != len {
            f.set_len(len).map_err(err(format!("ftruncate({}, {len})", path.display())))?;
        }
        // As in `create`: a full disk must fail here, not SIGBUS a writer later.
        fallocate(&f, len).map_err(err(format!("fallocate({}, {len} bytes)", path.display())))?;
        Self::map(&f, path)
    }

    /// Maps an existing counter file.
    pub fn open(path: &Path) -> Result<CounterFile, SysError> {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(err(format!("open({}, O_RDWR)", path.display())))?;
        Self::map(&f, path)
    }

    fn map(f: &std::fs::File, path: &Path) -> Result<CounterFile, SysError> {
        let len = f.metadata().map_err(err(format!("fstat({})", path.display())))?.len() as usize;
        let map = memmap2::MmapOptions::new()
            .len(len)
            .map_raw(f)
            .map_err(err(format!("mmap(MAP_SHARED, {len}) of {}", path.display())))?;
        Ok(CounterFile { map, words: len / 8 })
    }

    /// Number of counters.
    pub fn len(&self) -> usize {
        self.words
    }

    /// Whether the file holds no counters.
    pub fn is_empty(&self) -> bool {
        self.words == 0
    }

    /// Counter `i`; an index past the end yields a spare counter.
    pub fn at(&self, i: usize) -> &std::sync::atomic::AtomicU64 {
        self.get(i).unwrap_or_else(|| {
            debug_assert!(false, "counter index {i} out of range {}", self.words);
            &SPARE
        })
    }

    /// Counter `i`, or `None` past the end.
    pub fn get(&self, i: usize) -> Option<&std::sync::atomic::AtomicU64> {
        if i >= self.words {
            return None;
        }
        // SAFETY: i < words, so the 8-byte word lies inside the page-aligned
        // mapping and is 8-aligned; every process accesses it only
        // atomically, and the reference cannot outlive &self (the mapping).
        Some(unsafe { std::sync::atomic::AtomicU64::from_ptr((self.map.as_mut_ptr() as *mut u64).add(i)) })
    }
}
