//! `sessionctl`'s commands: read (and for `expire`/`clear`, change) a data
//! directory's regions directly, whether or not a server runs.
//!
//! Tools attach to regions without the data-dir lock and never re-initialise
//! mutexes; they hold the shared init lock ([`crate::datadir::InitLock`]) while
//! attached so a starting server waits for them. `verify` changes no session
//! data; like every locker it counts its lock acquisitions and repairs a
//! stripe whose previous lock owner died.
//!
//! Exit codes (stable, documented in docs/operations.md):
//! 0 success; 1 `verify` found problems, or `show`/`expire` found no such
//! session; 2 usage or configuration error; 3 a region or data directory
//! could not be opened or read.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::clock::now_ms;
use crate::clock::rfc3339_seconds as ts;
use crate::datadir::{self, InitLock};
use crate::metrics::{MasterCounter, ServerStats};
use crate::region::layout::StripeCounter;
use crate::region::{RegionError, SessionId, SessionMeta};
use crate::session::Sessions;

/// Exit code: success.
pub const EXIT_OK: i32 = 0;
/// Exit code: problems found / not found.
pub const EXIT_PROBLEMS: i32 = 1;
/// Exit code: usage or configuration error.
pub const EXIT_USAGE: i32 = 2;
/// Exit code: cannot open or read.
pub const EXIT_IO: i32 = 3;

/// A command's failure: message and exit code.
#[derive(Debug)]
pub struct CtlError {
    /// What went wrong, naming the file.
    pub message: String,
    /// Exit code.
    pub code: i32,
}

fn io_fail(message: impl Into<String>) -> CtlError {
    CtlError { message: message.into(), code: EXIT_IO }
}

/// Output options.
#[derive(Clone, Copy, Debug, Default)]
pub struct Out {
    /// Print JSON.
    pub json: bool,
}

/// An attached data directory.
pub struct Attached {
    dir: PathBuf,
    regions: Vec<Sessions>,
    _init: Option<InitLock>,
}

/// How long a tool waits for a stripe lock.
const TOOL_LOCK_TIMEOUT: Duration = Duration::from_secs(2);

impl Attached {
    /// Attaches every region under `dir/contexts/`.
    pub fn open(dir: &Path) -> Result<Attached, CtlError> {
        if !dir.is_dir() {
            return Err(io_fail(format!("data_dir {} does not exist; pass --data-dir or --config", dir.display())));
        }
        let init = InitLock::try_acquire(dir, false, Duration::from_secs(10)).map_err(|e| io_fail(e.to_string()))?;
        let mut regions = Vec::new();
        for f in datadir::region_files(dir) {
            regions.push(Sessions::attach(&f, TOOL_LOCK_TIMEOUT).map_err(|e| io_fail(e.to_string()))?);
        }
        Ok(Attached { dir: dir.to_path_buf(), regions, _init: init })
    }

    fn region(&self, context: Option<&str>) -> Result<&Sessions, CtlError> {
        let name = context.unwrap_or("default");
        self.regions.iter().find(|r| r.context() == name).ok_or_else(|| CtlError {
            message: format!("no context {name:?} in {}", self.dir.display()),
            code: EXIT_USAGE,
        })
    }

    fn find(&self, id: &str) -> Result<(&Sessions, SessionId), CtlError> {
        let not_found = || CtlError { message: "no such session".into(), code: EXIT_PROBLEMS };
        let id = SessionId::parse(id.trim().as_bytes()).ok_or_else(not_found)?;
        let r = self.regions.iter().find(|r| r.tag() == id.context).ok_or_else(not_found)?;
        Ok((r, id))
    }
}

fn region_err(e: RegionError) -> CtlError {
    match e {
        RegionError::NotFound => CtlError { message: "no such session".into(), code: EXIT_PROBLEMS },
        e => io_fail(e.to_string()),
    }
}

/// `sessionctl stats`.
pub fn stats(a: &Attached, out: Out) -> Result<String, CtlError> {
    let server = ServerStats::open(&a.dir).ok();
    let running = datadir::running_pid(&a.dir);
    let mut ctxs = Vec::new();
    for r in &a.regions {
        let s = r.stats();
        let stripes: Vec<Value> = s
            .stripes
            .iter()
            .enumerate()
            .map(|(i, st)| {
                json!({
                    "stripe": i, "capacity": st.capacity, "live": st.live,
                    "acquisitions": st.counters[StripeCounter::Acquisitions as usize],
                    "contended": st.counters[StripeCounter::Contended as usize],
                    "timeouts": st.counters[StripeCounter::Timeouts as usize],
                    "owner_dead_repairs": st.counters[StripeCounter::Repairs as usize],
                })
            })
            .collect();
        ctxs.push(json!({
            "context": s.context, "path": r.path().display().to_string(), "format_version": s.format_version,
            "clean_shutdown": s.clean, "capacity": s.max_sessions, "live": s.live,
            "free": s.max_sessions as u64 - s.live.min(s.max_sessions as u64),
            "file_size": s.file_size, "max_locks": s.max_locks,
            "created": s.total(StripeCounter::Created), "expired": s.total(StripeCounter::Expired),
            "evicted": s.total(StripeCounter::Evicted), "refused": s.refused,
            "invalidated": s.total(StripeCounter::Invalidated), "rotated": s.total(StripeCounter::Rotated),
            "reads": s.total(StripeCounter::Reads), "writes": s.total(StripeCounter::Writes),
            "lock_acquisitions": s.total(StripeCounter::Acquisitions), "lock_contended": s.total(StripeCounter::Contended),
            "lock_timeouts": s.lock_timeouts, "owner_dead_repairs": s.total(StripeCounter::Repairs),
            "slots_dropped": s.total(StripeCounter::Dropped), "reaper_sweeps": s.reap_sweeps,
            "last_reap_micros": s.last_reap_micros, "region_created": ts(s.created_ms),
            "changed_since_store": s.changed, "stripes": stripes,
        }));
    }
    let doc = json!({
        "data_dir": a.dir.display().to_string(),
        "running_pid": running,
        "version_file": datadir::version_problem(&a.dir).map_or("ok".to_string(), |p| p),
        "worker_restarts": server.as_ref().map(|s| s.master(MasterCounter::WorkerRestarts)),
        "reaper_restarts": server.as_ref().map(|s| s.master(MasterCounter::ReaperRestarts)),
        "contexts": ctxs,
    });
    if out.json {
        return Ok(format!("{doc:#}\n"));
    }
    let mut o = String::new();
    use std::fmt::Write;
    let _ = writeln!(
        o,
        "data_dir {}  server: {}  Version: {}",
        a.dir.display(),
        running.map_or("not running".to_string(), |p| format!("running (pid {p})")),
        doc["version_file"].as_str().unwrap_or("?")
    );
    if let Some(s) = &server {
        let _ = writeln!(
            o,
            "restarts: workers {}  reaper {}",
            s.master(MasterCounter::WorkerRestarts),
            s.master(MasterCounter::ReaperRestarts)
        );
    }
    for c in &ctxs {
        let _ = writeln!(
            o,
            "\ncontext {}  format v{}  clean shutdown flag: {}\n  capacity {}  live {}  free {}  ({:.1}% full)  file {} bytes",
            c["context"].as_str().unwrap_or("?"),
            c["format_version"],
            c["clean_shutdown"],
            c["capacity"],
            c["live"],
            c["free"],
            100.0 * c["live"].as_f64().unwrap_or(0.0) / c["capacity"].as_f64().unwrap_or(1.0),
            c["file_size"]
        );
        let _ = writeln!(
            o,
            "  sessions: created {}  expired {}  evicted {}  refused {}  invalidated {}  rotated {}",
            c["created"], c["expired"], c["evicted"], c["refused"], c["invalidated"], c["rotated"]
        );
        let _ = writeln!(
            o,
            "  locks: acquisitions {}  contended {}  timeouts {}  owner-dead repairs {}  slots dropped {}",
            c["lock_acquisitions"],
            c["lock_contended"],
            c["lock_timeouts"],
            c["owner_dead_repairs"],
            c["slots_dropped"]
        );
        let _ = writeln!(o, "  reaper: {} sweeps, last took {} us", c["reaper_sweeps"], c["last_reap_micros"]);
        let _ = writeln!(o, "  stripe  live/capacity  acquisitions  contended  timeouts  repairs");
        for st in c["stripes"].as_array().into_iter().flatten() {
            let n = |k: &str| st[k].as_u64().unwrap_or(0);
            let _ = writeln!(
                o,
                "  {:>6}  {:>6}/{:<6}  {:>12}  {:>9}  {:>8}  {:>7}",
                n("stripe"),
                n("live"),
                n("capacity"),
                n("acquisitions"),
                n("contended"),
                n("timeouts"),
                n("owner_dead_repairs")
            );
        }
    }
    Ok(o)
}

fn short(id: &SessionId, full: bool) -> String {
    let s = id.to_string();
    if full { s } else { format!("{}…", &s[..12]) }
}

fn meta_json(m: &SessionMeta, full: bool) -> Value {
    json!({
        "id": short(&m.id, full), "created_at": ts(m.created_ms), "last_accessed_at": ts(m.last_access_ms),
        "expires_at": ts(m.expires_ms), "new": m.is_new, "values": m.values,
    })
}

/// `sessionctl list`.
pub fn list(a: &Attached, context: Option<&str>, limit: usize, full_ids: bool, out: Out) -> Result<String, CtlError> {
    let r = a.region(context)?;
    let (metas, _) = r.list(0, limit, now_ms()).map_err(region_err)?;
    if out.json {
        let v: Vec<Value> = metas.iter().map(|m| meta_json(m, full_ids)).collect();
        return Ok(format!("{:#}\n", json!({"context": r.context(), "sessions": v})));
    }
    let mut o = format!("{:<40} {:<20} {:<20} {:<20} {:>6}\n", "ID", "CREATED", "LAST ACCESS", "EXPIRES", "VALUES");
    for m in &metas {
        o.push_str(&format!(
            "{:<40} {:<20} {:<20} {:<20} {:>6}\n",
            short(&m.id, full_ids),
            ts(m.created_ms),
            ts(m.last_access_ms),
            ts(m.expires_ms),
            m.values
        ));
    }
    o.push_str(&format!("{} session(s) shown in context {}\n", metas.len(), r.context()));
    Ok(o)
}

fn printable(v: &[u8]) -> Option<&str> {
    std::str::from_utf8(v).ok().filter(|s| s.chars().all(|c| !c.is_control() || c == '\n' || c == '\t'))
}

fn hex(v: &[u8]) -> String {
    v.iter().map(|b| format!("{b:02x}")).collect()
}

/// `sessionctl show ID`.
pub fn show(a: &Attached, id: &str, out: Out) -> Result<String, CtlError> {
    let (r, id) = a.find(id)?;
    let s = r.peek(&id, now_ms()).map_err(region_err)?;
    if out.json {
        let mut m = meta_json(&s.meta, true);
        m["context"] = r.context().into();
        m["attributes"] = s
            .attributes
            .iter()
            .map(|(k, v)| {
                let val = match printable(v) {
                    Some(t) => json!({"text": t}),
                    None => json!({"hex": hex(v)}),
                };
                (k.clone(), val)
            })
            .collect::<serde_json::Map<_, _>>()
            .into();
        return Ok(format!("{m:#}\n"));
    }
    let m = &s.meta;
    let mut o = format!(
        "id          {}\ncontext     {}\ncreated     {}\nlast access {}\nexpires     {}\ntimeout     {}s\nnew         {}\n",
        m.id,
        r.context(),
        ts(m.created_ms),
        ts(m.last_access_ms),
        ts(m.expires_ms),
        m.timeout_s,
        m.is_new
    );
    o.push_str(&format!("attributes  {}\n", s.attributes.len()));
    for (k, v) in &s.attributes {
        match printable(v) {
            Some(t) => o.push_str(&format!("  {k} ({} bytes, text): {t}\n", v.len())),
            None => o.push_str(&format!("  {k} ({} bytes, hex): {}\n", v.len(), hex(v))),
        }
    }
    Ok(o)
}

/// `sessionctl expire ID`.
pub fn expire(a: &Attached, id: &str) -> Result<String, CtlError> {
    let (r, sid) = a.find(id)?;
    r.invalidate_local(&sid, now_ms()).map_err(region_err)?;
    Ok(format!("session {} invalidated\n", sid.log_hash()))
}

/// `sessionctl clear`: deletes Version and asks a running master to rebuild.
pub fn clear(dir: &Path) -> Result<String, CtlError> {
    let v = dir.join(datadir::VERSION_FILE);
    match std::fs::remove_file(&v) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_fail(format!("unlink({}) failed: {e}", v.display()))),
    }
    match datadir::running_pid(dir) {
        Some(pid) if pid > 0 => {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGHUP)
                .map_err(|e| io_fail(format!("kill({pid}, SIGHUP) failed: {e}")))?;
            Ok(format!(
                "deleted {}; sent SIGHUP to sessiond (pid {pid}), which is rebuilding the caches now\n",
                v.display()
            ))
        }
        Some(_) => Ok(format!(
            "deleted {}; a sessiond holds this data_dir but its pid is unreadable: send its master SIGHUP \
             (systemctl reload sessiond) to rebuild now\n",
            v.display()
        )),
        None => {
            Ok(format!("deleted {}; sessiond is not running, so the next start rebuilds the caches\n", v.display()))
        }
    }
}

/// `sessionctl verify`: every problem found, or a clean report.
pub fn verify(dir: &Path, out: Out) -> Result<(String, bool), CtlError> {
    let mut problems: Vec<String> = Vec::new();
    if let Some(p) = datadir::version_problem(dir) {
        problems.push(p);
    }
    let files = datadir::region_files(dir);
    let mut checked = 0;
    let _init = InitLock::try_acquire(dir, false, Duration::from_secs(10)).map_err(|e| io_fail(e.to_string()))?;
    for f in &files {
        // attach validates the header and names the file in its error.
        match Sessions::attach(f, TOOL_LOCK_TIMEOUT) {
            Ok(r) => {
                checked += 1;
                problems.extend(r.verify().into_iter().map(|p| format!("{}: {p}", f.display())));
            }
            Err(e) => problems.push(e.to_string()),
        }
    }
    let ok = problems.is_empty();
    let text = if out.json {
        format!("{:#}\n", json!({"ok": ok, "regions_checked": checked, "problems": problems}))
    } else if ok {
        format!("ok: {checked} region(s) verified, no problems\n")
    } else {
        let mut o: String = problems.iter().map(|p| format!("problem: {p}\n")).collect();
        o.push_str(&format!("{} problem(s) in {} region file(s)\n", problems.len(), files.len()));
        o
    };
    Ok((text, ok))
}
