//! Event time: microseconds since the Unix epoch, parsed from and printed as RFC 3339.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};

/// A point in time in microseconds since 1970-01-01T00:00:00Z.
pub type Micros = i64;

/// Microseconds in one second.
pub const SECOND: Micros = 1_000_000;

/// Parses an RFC 3339 time (`2026-01-01T09:00:00Z`, `2026-01-01T10:00:00+01:00`,
/// fractions allowed). Returns `None` when the text is not an RFC 3339 time.
pub fn parse_rfc3339(text: &str) -> Option<Micros> {
    let parsed = DateTime::parse_from_rfc3339(text).ok()?;
    Some(parsed.timestamp_micros())
}

/// Prints a time in UTC as RFC 3339 with `Z`, with a fraction only when the time has one
/// (`2026-01-01T09:00:00Z`, `2026-01-01T09:00:00.25Z`).
pub fn format_rfc3339(at: Micros) -> String {
    let Some(dt) = Utc.timestamp_micros(at).single() else {
        return at.to_string();
    };
    if at.rem_euclid(SECOND) == 0 {
        return dt.to_rfc3339_opts(SecondsFormat::Secs, true);
    }
    let full = dt.to_rfc3339_opts(SecondsFormat::Micros, true);
    // trim trailing zeros of the fraction: `.250000Z` -> `.25Z`
    let body = full.trim_end_matches('Z').trim_end_matches('0');
    format!("{body}Z")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_whole_and_fractional_seconds() {
        let t = parse_rfc3339("2026-01-01T09:00:00Z").unwrap();
        assert_eq!(format_rfc3339(t), "2026-01-01T09:00:00Z");
        let t = parse_rfc3339("2026-01-01T09:00:00.25Z").unwrap();
        assert_eq!(format_rfc3339(t), "2026-01-01T09:00:00.25Z");
        let t = parse_rfc3339("2026-01-01T10:00:00.123456+01:00").unwrap();
        assert_eq!(format_rfc3339(t), "2026-01-01T09:00:00.123456Z");
    }

    #[test]
    fn rejects_non_rfc3339() {
        assert!(parse_rfc3339("2026-01-01").is_none());
        assert!(parse_rfc3339("yesterday").is_none());
        assert!(parse_rfc3339("2026-13-01T00:00:00Z").is_none());
    }
}
