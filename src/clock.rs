//! Wall-clock milliseconds, the one time unit stored in regions.
//!
//! Region operations take `now_ms` as an argument so that tests can drive
//! time; servers call [`now_ms`] once per request.

/// Largest time sessiond stores or prints: 9999-12-31T23:59:59.999Z in ms
/// (the region treats anything later as damage).
pub const MAX_TIME_MS: u64 = 253_402_300_799_999;

/// `ms` as RFC 3339 UTC with whole seconds, clamped to [`MAX_TIME_MS`]
/// (humantime cannot format years past 9999).
pub fn rfc3339_seconds(ms: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.min(MAX_TIME_MS)))
        .to_string()
}

/// `ms` as RFC 3339 UTC with milliseconds, clamped to [`MAX_TIME_MS`].
pub fn rfc3339_millis(ms: u64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.min(MAX_TIME_MS)))
        .to_string()
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
