//! Wall-clock milliseconds, the one time unit stored in regions.
//!
//! Region operations take `now_ms` as an argument so that tests can drive
//! time; servers call [`now_ms`] once per request.

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
