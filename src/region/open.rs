//! Creating, validating, opening and migrating region files.
//!
//! Owns the header's reading and writing and the rules of `docs/design.md`
//! "Opening": a server opens a region only while it holds the data
//! directory's exclusive lock ([`crate::store::DataDirLock`]), and then
//! re-initialises every mutex and repairs every stripe, because a machine
//! crash leaves stale lock words. A header that is not ours (bad magic,
//! other format, impossible sizes, truncated file) is an error value with
//! the reason, never a panic. Tools attach without any of that.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use memmap2::MmapOptions;

use super::layout::*;
use super::{LogObserver, Region, RegionConfig, RegionError, WhenFull, lock};
use crate::store::DataDirLock;

/// What opening a region for serving found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OpenReport {
    /// A new, empty file was created.
    pub created: bool,
    /// The old file was unusable and was set aside; the reason.
    pub rebuilt: Option<String>,
    /// Layout changed: (sessions migrated, sessions that did not fit).
    pub migrated: Option<(u64, u64)>,
    /// Slots dropped by the open-time repair.
    pub repaired: u64,
    /// The previous shutdown set the clean flag.
    pub was_clean: bool,
}

/// Header values read from a file.
#[derive(Debug, Clone)]
pub struct HeaderInfo {
    /// Geometry derived from the header's parameters.
    pub geometry: Geometry,
    /// Node id.
    pub node_id: u32,
    /// Context tag.
    pub tag: u16,
    /// Idle timeout (s).
    pub timeout_s: u32,
    /// Absolute lifetime (s).
    pub absolute_timeout_s: u64,
    /// Clean flag.
    pub clean: bool,
    /// Context name.
    pub context: String,
}

fn io_err(call: impl Into<String>, path: &Path, source: std::io::Error) -> RegionError {
    RegionError::Io { call: call.into(), path: path.to_path_buf(), source }
}

fn corrupt(path: &Path, what: impl Into<String>) -> RegionError {
    RegionError::Corrupt { path: path.to_path_buf(), what: what.into() }
}

fn u32_at(h: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(h[off..off + 4].try_into().unwrap_or_default())
}
fn u64_at(h: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(h[off..off + 8].try_into().unwrap_or_default())
}

/// Reads and validates a region header; every failure says what was wrong.
pub fn read_header(path: &Path) -> Result<HeaderInfo, RegionError> {
    let mut f = File::open(path).map_err(|e| io_err("open(O_RDONLY)", path, e))?;
    let len = f.metadata().map_err(|e| io_err("fstat", path, e))?.len();
    let mut h = vec![0u8; HEADER_SIZE as usize];
    if len < HEADER_SIZE {
        return Err(corrupt(path, format!("file is {len} bytes, shorter than the {HEADER_SIZE}-byte header")));
    }
    f.read_exact(&mut h).map_err(|e| io_err("read(header)", path, e))?;
    if h[H_MAGIC..H_MAGIC + 8] != MAGIC {
        return Err(corrupt(path, "bad magic: not a sessiond region file"));
    }
    let format = u32_at(&h, H_FORMAT);
    if format != FORMAT_VERSION {
        return Err(corrupt(path, format!("format version {format}, this build reads {FORMAT_VERSION}")));
    }
    if u32_at(&h, H_HEADER_SIZE) as u64 != HEADER_SIZE
        || u32_at(&h, H_MUTEX_SIZE) != MUTEX_SIZE
        || u32_at(&h, H_STRIPE_STRIDE) as u64 != STRIPE_STRIDE
    {
        return Err(corrupt(
            path,
            format!(
                "header/mutex/stripe sizes {}/{}/{} differ from this build's {HEADER_SIZE}/{MUTEX_SIZE}/{STRIPE_STRIDE}",
                u32_at(&h, H_HEADER_SIZE),
                u32_at(&h, H_MUTEX_SIZE),
                u32_at(&h, H_STRIPE_STRIDE)
            ),
        ));
    }
    let params = LayoutParams {
        max_sessions: u32_at(&h, H_MAX_SESSIONS),
        max_values: u32_at(&h, H_MAX_VALUES),
        max_name_size: u32_at(&h, H_MAX_NAME),
        max_value_size: u32_at(&h, H_MAX_VALUE),
        max_locks: u32_at(&h, H_MAX_LOCKS),
    };
    let geometry = Geometry::new(params).map_err(|e| corrupt(path, format!("impossible layout in header: {e}")))?;
    if u32_at(&h, H_SLOT_SIZE) as u64 != geometry.slot_size || u64_at(&h, H_FILE_SIZE) != geometry.file_size {
        return Err(corrupt(path, "slot or file size in the header does not follow from its parameters"));
    }
    if len != geometry.file_size {
        return Err(corrupt(
            path,
            format!(
                "file is {len} bytes but its header describes {} bytes (truncated or extended)",
                geometry.file_size
            ),
        ));
    }
    let clen = (u32_at(&h, H_CONTEXT_LEN) as usize).min(MAX_CONTEXT_NAME);
    let context = String::from_utf8(h[H_CONTEXT_NAME..H_CONTEXT_NAME + clen].to_vec())
        .map_err(|_| corrupt(path, "context name in the header is not UTF-8"))?;
    Ok(HeaderInfo {
        geometry,
        node_id: u32_at(&h, H_NODE_ID),
        tag: u32_at(&h, H_CONTEXT_TAG) as u16,
        timeout_s: u32_at(&h, H_TIMEOUT),
        absolute_timeout_s: u64_at(&h, H_ABS_TIMEOUT),
        clean: u32_at(&h, H_CLEAN) == 1,
        context,
    })
}

fn map_file(path: &Path, geo: Geometry, cfg: RegionConfig) -> Result<Region, RegionError> {
    let file = OpenOptions::new().read(true).write(true).open(path).map_err(|e| io_err("open(O_RDWR)", path, e))?;
    let len = file.metadata().map_err(|e| io_err("fstat", path, e))?.len();
    if len != geo.file_size {
        return Err(corrupt(path, format!("file is {len} bytes, expected {}", geo.file_size)));
    }
    let map = MmapOptions::new()
        .len(geo.file_size as usize)
        .map_raw(&file)
        .map_err(|e| io_err(format!("mmap(MAP_SHARED, {})", geo.file_size), path, e))?;
    let tag = context_tag(&cfg.context);
    Ok(Region { map, geo, cfg, tag, path: path.to_path_buf(), observer: Arc::new(LogObserver) })
}

impl Region {
    /// Creates a fresh, empty region file at `path` (replacing any file
    /// there), with space reserved by `fallocate` so a full disk cannot
    /// SIGBUS a process later. Written to a temporary name, then renamed.
    pub fn create_file(path: &Path, cfg: &RegionConfig) -> Result<Region, RegionError> {
        let geo = Geometry::new(cfg.layout).map_err(|e| corrupt(path, e))?;
        if cfg.node_id > super::id::MAX_NODE_ID || cfg.context.len() > MAX_CONTEXT_NAME || cfg.context.is_empty() {
            return Err(corrupt(
                path,
                format!(
                    "refusing to create: node_id {} must be at most {} and the context name 1 to {MAX_CONTEXT_NAME} bytes",
                    cfg.node_id,
                    super::id::MAX_NODE_ID
                ),
            ));
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let _ = std::fs::remove_file(&tmp);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| io_err("open(O_CREAT|O_EXCL, 0600)", &tmp, e))?;
        let r = crate::sys::fallocate(&file, geo.file_size);
        if let Err(e) = r {
            let _ = std::fs::remove_file(&tmp);
            return Err(io_err(format!("fallocate(0, {} bytes)", geo.file_size), &tmp, e));
        }
        let mut h = vec![0u8; HEADER_SIZE as usize];
        h[H_MAGIC..H_MAGIC + 8].copy_from_slice(&MAGIC);
        let mut put32 = |off: usize, v: u32| h[off..off + 4].copy_from_slice(&v.to_le_bytes());
        put32(H_FORMAT, FORMAT_VERSION);
        put32(H_HEADER_SIZE, HEADER_SIZE as u32);
        put32(H_MUTEX_SIZE, MUTEX_SIZE);
        put32(H_STRIPE_STRIDE, STRIPE_STRIDE as u32);
        put32(H_MAX_SESSIONS, cfg.layout.max_sessions);
        put32(H_MAX_VALUES, cfg.layout.max_values);
        put32(H_MAX_NAME, cfg.layout.max_name_size);
        put32(H_MAX_VALUE, cfg.layout.max_value_size);
        put32(H_MAX_LOCKS, cfg.layout.max_locks);
        put32(H_SLOT_SIZE, geo.slot_size as u32);
        put32(H_NODE_ID, cfg.node_id);
        put32(H_CONTEXT_TAG, context_tag(&cfg.context) as u32);
        put32(H_CLEAN, 0);
        let name = cfg.context.as_bytes();
        let clen = name.len().min(MAX_CONTEXT_NAME);
        put32(H_CONTEXT_LEN, clen as u32);
        h[H_CONTEXT_NAME..H_CONTEXT_NAME + clen].copy_from_slice(&name[..clen]);
        h[H_TIMEOUT..H_TIMEOUT + 8].copy_from_slice(&(cfg.timeout_s as u64).to_le_bytes());
        h[H_ABS_TIMEOUT..H_ABS_TIMEOUT + 8].copy_from_slice(&cfg.absolute_timeout_s.to_le_bytes());
        h[H_FILE_SIZE..H_FILE_SIZE + 8].copy_from_slice(&geo.file_size.to_le_bytes());
        h[H_CREATED_MS..H_CREATED_MS + 8].copy_from_slice(&crate::clock::now_ms().to_le_bytes());
        file.write_all_at(&h, 0).map_err(|e| io_err("pwrite(header)", &tmp, e))?;
        drop(file);
        let region = map_file(&tmp, geo, cfg.clone())?;
        region.init_locks_and_repair(None)?;
        region.flush()?;
        std::fs::rename(&tmp, path).map_err(|e| io_err(format!("rename(to {})", path.display()), &tmp, e))?;
        let mut region = region;
        region.path = path.to_path_buf();
        Ok(region)
    }

    /// Re-initialises every mutex and repairs every stripe. Only safe while
    /// no other process uses the file (exclusive data-dir lock held).
    fn init_locks_and_repair(&self, retime: Option<(u32, u64)>) -> Result<u64, RegionError> {
        let mut dropped = 0;
        for s in 0..self.geo.params.max_locks {
            // SAFETY: the mutex lies inside the map at a 64-aligned offset;
            // the caller guarantees no other process uses the region now.
            unsafe { lock::init(self.mutex_ptr(s)) }
                .map_err(|e| io_err(format!("init stripe {s} mutex"), &self.path, e))?;
            let g = self.lock_stripe(s)?;
            dropped += self.repair_stripe_locked(s, retime);
            drop(g);
        }
        Ok(dropped)
    }

    /// Opens `path` for serving under the exclusive data-dir lock: creates
    /// it if missing, sets a damaged file aside (`*.corrupt`) and rebuilds,
    /// migrates live sessions if the layout changed, and otherwise
    /// re-initialises the locks and repairs every stripe.
    pub fn open_serving(
        path: &Path,
        cfg: &RegionConfig,
        _lock: &DataDirLock,
    ) -> Result<(Region, OpenReport), RegionError> {
        let mut report = OpenReport::default();
        if !path.exists() {
            report.created = true;
            return Ok((Region::create_file(path, cfg)?, report));
        }
        let info = match read_header(path) {
            Ok(info) => info,
            Err(RegionError::Corrupt { what, .. }) => {
                let aside = path.with_extension("region.corrupt");
                log::warn!(
                    "{}: unusable region file ({what}); moved it to {} and created a new, empty region",
                    path.display(),
                    aside.display()
                );
                std::fs::rename(path, &aside).map_err(|e| io_err("rename(to *.corrupt)", path, e))?;
                report.rebuilt = Some(what);
                return Ok((Region::create_file(path, cfg)?, report));
            }
            Err(e) => return Err(e),
        };
        report.was_clean = info.clean;
        let retime = Some((cfg.timeout_s, cfg.absolute_timeout_s));
        if info.geometry.params == cfg.layout && info.tag == context_tag(&cfg.context) {
            let region = map_file(path, info.geometry, cfg.clone())?;
            report.repaired = region.init_locks_and_repair(retime)?;
            region.set_header_fields(cfg);
            return Ok((region, report));
        }
        // Layout changed: copy every live session that fits into a new file
        // at the same slot, so ids stay valid.
        let old_cfg = RegionConfig { layout: info.geometry.params, ..cfg.clone() };
        let old = map_file(path, info.geometry, old_cfg)?;
        report.repaired = old.init_locks_and_repair(retime)?;
        let new_path = path.with_extension("region.new");
        let new = Region::create_file(&new_path, cfg)?;
        let (moved, dropped) = migrate(&old, &new)?;
        new.flush()?;
        drop(old);
        std::fs::rename(&new_path, path).map_err(|e| io_err(format!("rename(to {})", path.display()), &new_path, e))?;
        let mut new = new;
        new.path = path.to_path_buf();
        new.set_migration_counters(moved, dropped);
        log::info!(
            "{}: layout changed from {:?} to {:?}: migrated {moved} session(s), {dropped} did not fit the new limits and were dropped",
            path.display(),
            info.geometry.params,
            cfg.layout
        );
        report.migrated = Some((moved, dropped));
        Ok((new, report))
    }

    fn set_header_fields(&self, cfg: &RegionConfig) {
        self.wr64(H_TIMEOUT as u64, cfg.timeout_s as u64);
        self.wr64(H_ABS_TIMEOUT as u64, cfg.absolute_timeout_s);
        self.wr32(H_NODE_ID as u64, cfg.node_id);
        self.atomic32(H_CLEAN as u64).store(0, std::sync::atomic::Ordering::Release);
    }

    fn set_migration_counters(&self, moved: u64, dropped: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        self.header_counter(HeaderCounter::Migrated).store(moved, Relaxed);
        self.header_counter(HeaderCounter::MigrationDropped).store(dropped, Relaxed);
    }

    /// Attaches to an existing region without the exclusive lock and
    /// without touching the locks (for tools). The configuration comes from
    /// the header.
    pub fn attach(path: &Path, lock_timeout: Duration) -> Result<Region, RegionError> {
        let info = read_header(path)?;
        let cfg = RegionConfig {
            context: info.context.clone(),
            layout: info.geometry.params,
            node_id: info.node_id,
            timeout_s: info.timeout_s,
            absolute_timeout_s: info.absolute_timeout_s,
            when_full: WhenFull::Refuse,
            lock_timeout,
        };
        let mut r = map_file(path, info.geometry, cfg)?;
        r.tag = info.tag;
        Ok(r)
    }

    /// Path of the region file for `context` under `data_dir`.
    pub fn path_for(data_dir: &Path, context: &str) -> PathBuf {
        data_dir.join("contexts").join(context).join("sessions.region")
    }
}

/// Copies every live session of `old` that fits `new`'s limits into the
/// same slot of `new`. Returns (moved, did not fit).
fn migrate(old: &Region, new: &Region) -> Result<(u64, u64), RegionError> {
    let now = crate::clock::now_ms();
    let np = new.geo.params;
    let (mut moved, mut dropped) = (0, 0);
    for slot in 0..old.geo.params.max_sessions {
        let Some(sess) = old.snapshot_slot(slot, now)? else { continue };
        let fits = slot < np.max_sessions
            && sess.attributes.len() <= np.max_values as usize
            && sess
                .attributes
                .iter()
                .all(|(n, v)| n.len() <= np.max_name_size as usize && v.len() <= np.max_value_size as usize);
        if !fits {
            dropped += 1;
            continue;
        }
        new.install(slot, &sess)?;
        moved += 1;
    }
    // One pass per stripe rebuilds free lists, live counts and expiry words.
    for s in 0..np.max_locks {
        let g = new.lock_stripe(s)?;
        new.repair_stripe_locked(s, None);
        drop(g);
    }
    Ok((moved, dropped))
}

impl Region {
    /// Writes a copied session into a free slot of this region (migration).
    /// The caller rebuilds free lists afterwards.
    fn install(&self, slot: u32, sess: &super::Session) -> Result<(), RegionError> {
        let s = self.geo.stripe_of(slot);
        let g = self.lock_stripe(s)?;
        let off = self.geo.slot_off(slot);
        self.begin_write(off);
        self.wr32(off + SL_STATE as u64, STATE_LIVE);
        self.wr32(off + SL_FLAGS as u64, if sess.meta.is_new { FLAG_NEW } else { 0 });
        self.copy_in(off + SL_TOKEN as u64, &sess.meta.id.token);
        self.wr64(off + SL_CREATED as u64, sess.meta.created_ms);
        self.wr64(off + SL_LAST_ACCESS as u64, sess.meta.last_access_ms);
        let abs = self.cfg.absolute_timeout_s;
        self.wr64(
            off + SL_ABS_DEADLINE as u64,
            if abs == 0 { 0 } else { sess.meta.created_ms.saturating_add(abs.saturating_mul(1000)) },
        );
        self.wr32(off + SL_TIMEOUT as u64, self.cfg.timeout_s);
        for (e, (name, value)) in sess.attributes.iter().enumerate() {
            let eo = off + self.geo.entry_off(e as u32);
            self.wr32(eo + E_NAME_LEN as u64, name.len() as u32);
            self.copy_in(eo + E_NAME as u64, name.as_bytes());
            self.write_value(eo, value);
        }
        self.wr32(off + SL_NVALUES as u64, sess.attributes.len() as u32);
        self.end_write(off);
        drop(g);
        Ok(())
    }
}
