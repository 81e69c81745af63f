//! `sessiond-bench-scale`: region-level scale figures for docs/benchmarks.md.
//!
//! Creates a region of `--sessions` slots (4 values x 256 bytes by default)
//! in a temporary directory and prints, as CSV lines:
//! - `fill,<bucket_end>,<creates_per_sec>` for each bucket of `--bucket`
//!   creates from empty to full (create is O(1): the rate should stay flat);
//! - `reap,<live>,<micros>` the time of a reaper sweep with nothing expired
//!   at each bucket boundary;
//! - `reap_expired,<freed>,<micros>` one sweep that frees every session.
//!
//! It measures the region API directly, so HTTP costs are not included.

use std::time::{Duration, Instant};

use clap::Parser;
use sessiond::region::{LayoutParams, Region, RegionConfig, WhenFull};

#[derive(Parser)]
struct Args {
    /// Slots in the region.
    #[arg(long, default_value_t = 1_000_000)]
    sessions: u32,
    /// Creates per bucket.
    #[arg(long, default_value_t = 100_000)]
    bucket: u32,
    /// Stripe locks.
    #[arg(long, default_value_t = 64)]
    locks: u32,
}

fn main() {
    let a = Args::parse();
    let dir = tempfile_dir();
    let cfg = RegionConfig {
        context: "scale".into(),
        layout: LayoutParams {
            max_sessions: a.sessions,
            max_values: 4,
            max_name_size: 16,
            max_value_size: 256,
            max_locks: a.locks,
        },
        node_id: 0,
        timeout_s: 1800,
        absolute_timeout_s: 0,
        when_full: WhenFull::Refuse,
        lock_timeout: Duration::from_secs(1),
    };
    let r = Region::create_file(&dir.join("scale.region"), &cfg).expect("create region");
    eprintln!("region: {} bytes", r.geometry().file_size);
    let now = sessiond::clock::now_ms();
    let mut made = 0u32;
    while made < a.sessions {
        let n = a.bucket.min(a.sessions - made);
        let t = Instant::now();
        for _ in 0..n {
            r.create(now).expect("create");
        }
        made += n;
        println!("fill,{made},{:.0}", n as f64 / t.elapsed().as_secs_f64());
        let t = Instant::now();
        let rep = r.reap(now).expect("reap");
        assert_eq!(rep.freed, 0);
        println!("reap,{made},{}", t.elapsed().as_micros());
    }
    let t = Instant::now();
    let rep = r.reap(now + 1801 * 1000).expect("reap");
    println!("reap_expired,{},{}", rep.freed, t.elapsed().as_micros());
    drop(r);
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("sessiond-scale-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("mkdir");
    d
}
