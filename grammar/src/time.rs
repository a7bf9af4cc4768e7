//! Event time: microseconds since the Unix epoch, parsed from and printed as RFC 3339.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};

/// A point in time in microseconds since 1970-01-01T00:00:00Z.
pub type Micros = i64;

/// Microseconds in one second.
pub const SECOND: Micros = 1_000_000;

/// Parses an RFC 3339 time (`2026-01-01T09:00:00Z`, `2026-01-01T10:00:00+01:00`,
/// fractions allowed). Returns `None` when the text is not an RFC 3339 time.
pub fn parse_rfc3339(text: &str) -> Option<Micros> {
    if let Some(at) = parse_utc_seconds(text) {
        return Some(at);
    }
    let parsed = DateTime::parse_from_rfc3339(text).ok()?;
    Some(parsed.timestamp_micros())
}

/// The form senders use most, `YYYY-MM-DDTHH:MM:SSZ`, read directly; `None` for anything
/// else (other forms, a leap second, an invalid date), which chrono then decides.
#[inline]
fn parse_utc_seconds(text: &str) -> Option<Micros> {
    let b: &[u8; 20] = text.as_bytes().try_into().ok()?;
    let sep = |i: usize, c: u8| b[i] == c;
    if !(sep(4, b'-') && sep(7, b'-') && sep(10, b'T') && sep(13, b':') && sep(16, b':'))
        || b[19] != b'Z'
    {
        return None;
    }
    let num = |from: usize, len: usize| -> Option<i64> {
        b[from..from + len].iter().try_fold(0i64, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
        })
    };
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if day < 1 || day > days_in_month || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    // days from 1970-01-01 to the date (H. Hinnant, `days_from_civil`)
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + hour) * 60 + minute) * 60 * SECOND + second * SECOND)
}

/// Prints a time in UTC as RFC 3339 with `Z`, with a fraction only when the time has one
/// (`2026-01-01T09:00:00Z`, `2026-01-01T09:00:00.25Z`).
pub fn format_rfc3339(at: Micros) -> String {
    if let Some(text) = rfc3339_seconds(at) {
        return text.iter().map(|&b| char::from(b)).collect();
    }
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

/// [`format_rfc3339`] of a time in whole seconds of the years 0 to 9999
/// (`YYYY-MM-DDTHH:MM:SSZ`, ASCII), written without allocating; `None` for any other time.
pub fn rfc3339_seconds(at: Micros) -> Option<[u8; 20]> {
    if at.rem_euclid(SECOND) != 0 {
        return None;
    }
    let seconds = at / SECOND;
    let days = seconds.div_euclid(86_400);
    let of_day = seconds.rem_euclid(86_400);
    // the date of a day count from 1970-01-01 (H. Hinnant, `civil_from_days`)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    if !(0..=9999).contains(&year) {
        return None;
    }
    let mut out = *b"0000-00-00T00:00:00Z";
    let mut put = |pos: usize, n: i64, width: usize| {
        let mut n = n;
        for i in (pos..pos + width).rev() {
            out[i] = b'0' + u8::try_from(n % 10).unwrap_or(0);
            n /= 10;
        }
    };
    put(0, year, 4);
    put(5, month, 2);
    put(8, day, 2);
    put(11, of_day / 3600, 2);
    put(14, of_day / 60 % 60, 2);
    put(17, of_day % 60, 2);
    Some(out)
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

    /// Whole seconds are written as chrono writes them, over the whole range of years.
    #[test]
    fn writes_utc_seconds_as_chrono_does() {
        use proptest::prelude::*;
        let format_utc_seconds =
            |s: i64| rfc3339_seconds(s * SECOND).map(|b| String::from_utf8(b.to_vec()).unwrap());
        let chrono = |s: i64| {
            Utc.timestamp_opt(s, 0)
                .single()
                .map(|d| d.to_rfc3339_opts(SecondsFormat::Secs, true))
        };
        let mut runner = proptest::test_runner::TestRunner::default();
        runner
            .run(&(-62_167_219_200i64..253_402_300_800), |s| {
                prop_assert_eq!(format_utc_seconds(s), chrono(s), "{}", s);
                Ok(())
            })
            .unwrap();
        for s in [
            0,
            -1,
            951_782_400,
            1_767_225_599,
            -62_167_219_200,
            253_402_300_799,
        ] {
            assert_eq!(format_utc_seconds(s), chrono(s), "{s}");
        }
        assert_eq!(format_utc_seconds(253_402_300_800), None);
        assert_eq!(format_utc_seconds(-62_167_219_201), None);
        assert_eq!(format_rfc3339(-SECOND), "1969-12-31T23:59:59Z");
        assert_eq!(rfc3339_seconds(SECOND / 2), None);
    }

    /// The direct reading of `YYYY-MM-DDTHH:MM:SSZ` gives what chrono gives, and leaves to
    /// chrono what it cannot read.
    #[test]
    fn reads_utc_seconds_as_chrono_does() {
        use proptest::prelude::*;
        let chrono = |t: &str| {
            DateTime::parse_from_rfc3339(t)
                .ok()
                .map(|d| d.timestamp_micros())
        };
        let mut runner = proptest::test_runner::TestRunner::default();
        runner
            .run(
                &(
                    0u32..10_000,
                    0u32..14,
                    0u32..33,
                    0u32..25,
                    0u32..61,
                    0u32..62,
                ),
                |(y, mo, d, h, mi, s)| {
                    let t = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z");
                    if let Some(at) = parse_utc_seconds(&t) {
                        prop_assert_eq!(Some(at), chrono(&t), "{}", t);
                    }
                    prop_assert_eq!(parse_rfc3339(&t), chrono(&t), "{}", t);
                    Ok(())
                },
            )
            .unwrap();
        for t in [
            "2024-02-29T23:59:59Z",
            "2023-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2000-02-29T00:00:00Z",
            "1969-12-31T23:59:59Z",
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
            "2026-01-01T00:00:60Z",
            "2026-01-01t00:00:00z",
            "2026-01-01 00:00:00Z",
            "2026-01-01T00:00:00+00:00",
            "2026-01-01T00:00:0aZ",
            "+026-01-01T00:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(t), chrono(t), "{t}");
        }
        assert_eq!(
            parse_utc_seconds("2026-01-01T00:00:00Z"),
            Some(1_767_225_600 * SECOND)
        );
    }

    #[test]
    fn rejects_non_rfc3339() {
        assert!(parse_rfc3339("2026-01-01").is_none());
        assert!(parse_rfc3339("yesterday").is_none());
        assert!(parse_rfc3339("2026-13-01T00:00:00Z").is_none());
    }
}
