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

/// Parses an RFC 3339 time (`2026-12-02T10:00:00Z`, fractions and
/// `+01:00`-style offsets allowed) into ms since the epoch; `None` if it is
/// not one, or before 1970, or past [`MAX_TIME_MS`].
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    if s.len() < 20 || s.len() > 40 || !s.is_ascii() {
        return None;
    }
    let (base, offset_s): (&str, i64) = if let Some(b) = s.strip_suffix('Z').or_else(|| s.strip_suffix('z')) {
        (b, 0)
    } else {
        let (b, off) = s.split_at(s.len() - 6);
        let o = off.as_bytes();
        let sign = match o[0] {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        if o[3] != b':' {
            return None;
        }
        let h: i64 = off[1..3].parse().ok()?;
        let m: i64 = off[4..6].parse().ok()?;
        if h > 23 || m > 59 {
            return None;
        }
        (b, sign * (h * 3600 + m * 60))
    };
    let t = humantime::parse_rfc3339(&format!("{base}Z")).ok()?;
    let ms = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as i64 - offset_s * 1000;
    u64::try_from(ms).ok().filter(|&ms| ms <= MAX_TIME_MS)
}

#[cfg(test)]
mod parse_tests {
    use super::*;

    #[test]
    fn rfc3339_with_zone_offsets_and_fractions() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01Z"), Some(1000));
        assert_eq!(parse_rfc3339("1970-01-01T01:00:01+01:00"), Some(1000));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01.250Z"), Some(1250));
        assert_eq!(parse_rfc3339("2026-12-02T10:00:00Z"), parse_rfc3339("2026-12-02T05:00:00-05:00"));
        for bad in ["", "tomorrow", "2026-12-02T10:00:00", "2026-12-02T10:00:00+1:00", "1969-12-31T23:59:59Z"] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
