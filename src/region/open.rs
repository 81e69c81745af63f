//! Creating, validating, opening and migrating region files.
//!
//! Owns the header's reading and writing and the rules of `docs/design.md`
//! "Opening": a server opens a region only while it holds the data
//! directory's exclusive lock ([`crate::dirlock::DataDirLock`]), and then
//! re-initialises every mutex and repairs every stripe, because a machine
//! crash leaves stale lock words. A header that is not ours (bad magic,
//! other format, impossible sizes, truncated file) is an error value with
//! the reason, never a panic. Tools attach without any of that.

use std::fs::{File, OpenOptions};
use std::mem::size_of;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use memmap2::MmapOptions;

use super::layout::*;
use super::{Region, RegionConfig, RegionError, WhenFull, lock};
use crate::dirlock::DataDirLock;

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
    /// Format version.
    pub format: u32,
    /// When the file was created, ms since the epoch.
    pub created_ms: u64,
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

/// Reads and validates a region header; every failure says what was wrong.
/// The fixed fields are decoded by the one codec, `layout::Header`, from the bytes
/// `pread` fills.
pub fn read_header(path: &Path) -> Result<HeaderInfo, RegionError> {
    let f = File::open(path).map_err(|e| io_err("open(O_RDONLY)", path, e))?;
    let len = f.metadata().map_err(|e| io_err("fstat", path, e))?.len();
    if len < HEADER_SIZE {
        return Err(corrupt(path, format!("file is {len} bytes, shorter than the {HEADER_SIZE}-byte header")));
    }
    let mut raw = [0u8; size_of::<Header>()];
    f.read_exact_at(&mut raw, 0).map_err(|e| io_err(format!("pread({} bytes at 0)", raw.len()), path, e))?;
    let h: Header = bytemuck::pod_read_unaligned(&raw);
    if h.magic != MAGIC {
        return Err(corrupt(path, "bad magic: not a sessiond region file"));
    }
    if h.format != FORMAT_VERSION && !MIGRATES_FROM.contains(&h.format) {
        return Err(corrupt(
            path,
            format!("format version {}, this build reads {FORMAT_VERSION} and migrates {MIGRATES_FROM:?}", h.format),
        ));
    }
    if h.header_size as u64 != HEADER_SIZE || h.mutex_size != MUTEX_SIZE || h.stripe_stride as u64 != STRIPE_STRIDE {
        return Err(corrupt(
            path,
            format!(
                "header/mutex/stripe sizes {}/{}/{} differ from this build's {HEADER_SIZE}/{MUTEX_SIZE}/{STRIPE_STRIDE}",
                h.header_size, h.mutex_size, h.stripe_stride
            ),
        ));
    }
    let params = LayoutParams {
        max_sessions: h.max_sessions,
        max_values: h.max_values,
        max_name_size: h.max_name_size,
        max_value_size: h.max_value_size,
        max_locks: h.max_locks,
    };
    let geometry = Geometry::for_format(params, h.format)
        .map_err(|e| corrupt(path, format!("impossible layout in header: {e}")))?;
    if h.slot_size as u64 != geometry.slot_size || h.file_size != geometry.file_size {
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
    let timeout_s = u32::try_from(h.timeout_s)
        .map_err(|_| corrupt(path, format!("idle timeout {} s in the header does not fit in 32 bits", h.timeout_s)))?;
    if h.context_tag > u16::MAX as u32 {
        return Err(corrupt(path, format!("context tag word {:#x} has bits above the low 16", h.context_tag)));
    }
    let clen = (h.context_len as usize).min(MAX_CONTEXT_NAME);
    let context = String::from_utf8(h.context_name[..clen].to_vec())
        .map_err(|_| corrupt(path, "context name in the header is not UTF-8"))?;
    Ok(HeaderInfo {
        geometry,
        format: h.format,
        node_id: h.node_id,
        tag: h.context_tag as u16,
        timeout_s,
        absolute_timeout_s: h.absolute_timeout_s,
        created_ms: h.created_ms,
        clean: h.clean == 1,
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
    Ok(Region { map, geo, cfg, tag, path: path.to_path_buf() })
}

impl Region {
    /// Creates a fresh, empty region file at `path` (replacing any file
    /// there), with space reserved by `fallocate` so a full disk cannot
    /// SIGBUS a process later. Written to a temporary name, then renamed.
    pub fn create_file(path: &Path, cfg: &RegionConfig) -> Result<Region, RegionError> {
        Self::create_file_format(path, cfg, FORMAT_VERSION)
    }

    /// [`Self::create_file`] in format `format`; older formats only for
    /// migration tests.
    pub(crate) fn create_file_format(path: &Path, cfg: &RegionConfig, format: u32) -> Result<Region, RegionError> {
        let geo = Geometry::for_format(cfg.layout, format).map_err(|e| corrupt(path, e))?;
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
        let r = crate::disk::fallocate(&file, geo.file_size);
        if let Err(e) = r {
            let _ = std::fs::remove_file(&tmp);
            return Err(io_err(format!("fallocate(0, {} bytes)", geo.file_size), &tmp, e));
        }
        let name = cfg.context.as_bytes();
        let mut context_name = [0u8; MAX_CONTEXT_NAME];
        context_name[..name.len()].copy_from_slice(name);
        let header = Header {
            magic: MAGIC,
            format: geo.format,
            header_size: HEADER_SIZE as u32,
            mutex_size: MUTEX_SIZE,
            stripe_stride: STRIPE_STRIDE as u32,
            max_sessions: cfg.layout.max_sessions,
            max_values: cfg.layout.max_values,
            max_name_size: cfg.layout.max_name_size,
            max_value_size: cfg.layout.max_value_size,
            max_locks: cfg.layout.max_locks,
            slot_size: geo.slot_size as u32,
            node_id: cfg.node_id,
            context_tag: context_tag(&cfg.context) as u32,
            timeout_s: cfg.timeout_s as u64,
            absolute_timeout_s: cfg.absolute_timeout_s,
            file_size: geo.file_size,
            created_ms: crate::clock::now_ms(),
            clean: 0,
            context_len: name.len() as u32,
            context_name,
        };
        let h = bytemuck::bytes_of(&header);
        file.write_all_at(h, 0).map_err(|e| io_err(format!("pwrite({} bytes at 0)", h.len()), &tmp, e))?;
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
        if info.format == FORMAT_VERSION && info.geometry.params == cfg.layout && info.tag == context_tag(&cfg.context)
        {
            let region = map_file(path, info.geometry, cfg.clone())?;
            report.repaired = region.init_locks_and_repair(retime)?;
            region.set_header_fields(cfg);
            return Ok((region, report));
        }
        // Layout or format changed: copy every live session that fits into a
        // new file at the same slot, so ids stay valid.
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
            "{}: layout changed from format {} {:?} to format {FORMAT_VERSION} {:?}: migrated {moved} session(s), \
             {dropped} did not fit the new limits and were dropped",
            path.display(),
            info.format,
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
        new.install(slot, &sess, old.change_seq(slot))?;
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
    /// The change sequence of `slot` (0 in a format without one).
    fn change_seq(&self, slot: u32) -> u64 {
        if self.geo.dirty_off == 0 || slot >= self.geo.params.max_sessions {
            return 0;
        }
        self.atomic64(self.geo.slot_off(slot) + SL_CHANGE as u64).load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Writes a copied session into a free slot of this region (migration).
    /// The caller rebuilds free lists afterwards.
    /// `seq` is the slot's change sequence in the old region: the copy's
    /// sequence continues from it, so a store that holds a change at `seq`
    /// takes the copy as newer.
    fn install(&self, slot: u32, sess: &super::Session, seq: u64) -> Result<(), RegionError> {
        let s = self.geo.stripe_of(slot);
        let g = self.lock_stripe(s)?;
        let off = self.geo.slot_off(slot);
        self.begin_write(off);
        if self.geo.dirty_off != 0 {
            self.atomic64(off + SL_CHANGE as u64).store(seq, std::sync::atomic::Ordering::Relaxed);
        }
        // A store has not seen this copy: mark it changed.
        self.mark_changed(slot, off);
        self.wr32(off + SL_STATE as u64, STATE_LIVE);
        self.copy_in(off + SL_TOKEN as u64, &sess.meta.id.token);
        let m = &sess.meta;
        let copy = super::Adopt {
            token: m.id.token,
            created_ms: m.created_ms,
            last_access_ms: m.last_access_ms,
            is_new: m.is_new,
            attributes: &sess.attributes,
            version: m.version,
            timeout_s: m.timeout_set.then_some(m.timeout_s),
            deadline_ms: m.deadline_ms,
            principal: m.principal.as_deref(),
        };
        self.write_copy(slot, off, &copy);
        self.end_write(off);
        drop(g);
        Ok(())
    }
}
