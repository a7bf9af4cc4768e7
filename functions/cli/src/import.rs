//! `leadscore import csv`: a lead export (one row per lead) becomes Segment calls, one JSON
//! object per line (SPEC §4): an identify per row whose traits are the columns, and a track
//! event for the rows that converted.

use leadscore_core::output::{Node, Ordered};
use leadscore_rules::time::{format_rfc3339, parse_rfc3339, Micros, SECOND};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// `import` formats.
#[derive(clap::Subcommand, Debug)]
pub enum ImportCommand {
    /// A lead export, one row per lead, with a header row.
    Csv {
        /// The CSV file.
        file: PathBuf,
        /// The column holding the lead's id (becomes `userId`).
        #[arg(long, value_name = "COLUMN")]
        id: String,
        /// The column holding the lead's source (becomes `context.campaign.source`).
        #[arg(long, value_name = "COLUMN")]
        source: Option<String>,
        /// The column saying whether the lead converted (`true`, `yes` or `1`).
        #[arg(long, value_name = "COLUMN")]
        convert: Option<String>,
        /// The name of the track event for converted rows.
        #[arg(long, value_name = "NAME", default_value = "Converted")]
        convert_event: String,
        /// The column holding each row's time (RFC 3339, `YYYY-MM-DD HH:MM:SS` or `YYYY-MM-DD`, UTC).
        #[arg(long, value_name = "COLUMN", conflicts_with = "at")]
        timestamp: Option<String>,
        /// One time for every row (RFC 3339).
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
        /// Write the calls to this file instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

/// Runs an `import` subcommand; returns the exit status.
pub fn dispatch(command: &ImportCommand) -> u8 {
    match command {
        ImportCommand::Csv {
            file,
            id,
            source,
            convert,
            convert_event,
            timestamp,
            at,
            out,
        } => run(&CsvImport {
            file,
            id,
            source: source.as_deref(),
            convert: convert.as_deref(),
            convert_event,
            timestamp: timestamp.as_deref(),
            at: at.as_deref(),
            out: out.as_deref(),
        }),
    }
}

/// What `import csv` was asked to do.
pub struct CsvImport<'a> {
    /// The CSV file.
    pub file: &'a Path,
    /// The column holding the lead's id (`userId`).
    pub id: &'a str,
    /// The column holding the first-touch source (`context.campaign.source`).
    pub source: Option<&'a str>,
    /// The column saying whether the lead converted.
    pub convert: Option<&'a str>,
    /// The name of the conversion event.
    pub convert_event: &'a str,
    /// The column holding each row's time.
    pub timestamp: Option<&'a str>,
    /// One time for every row.
    pub at: Option<&'a str>,
    /// Where to write (standard output when `None`).
    pub out: Option<&'a Path>,
}

/// A column name in snake_case: `Total Time Spent on Website` → `total_time_spent_on_website`,
/// `TotalVisits` → `total_visits`.
pub fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.trim().chars().collect();
    let mut out = String::new();
    let mut gap = false;
    for (i, &c) in chars.iter().enumerate() {
        if c.is_alphanumeric() {
            let prev = i.checked_sub(1).map(|j| chars[j]);
            let next = chars.get(i + 1).copied();
            let boundary = c.is_uppercase()
                && prev.is_some_and(|p| {
                    p.is_lowercase()
                        || p.is_ascii_digit()
                        || (p.is_uppercase() && next.is_some_and(char::is_lowercase))
                });
            if (gap || boundary) && !out.is_empty() {
                out.push('_');
            }
            gap = false;
            out.extend(c.to_lowercase());
        } else {
            gap = true;
        }
    }
    out
}

/// A cell as a JSON value: a JSON number (`12`, `-0.5`, `1e3`; not `007` or `+1`) becomes a
/// number, anything else stays a string.
pub fn cell_value(cell: &str) -> Value {
    let b = cell.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    let int_start = i;
    let int_len = digits(&mut i);
    let mut ok = int_len > 0 && !(int_len > 1 && b[int_start] == b'0');
    if ok && b.get(i) == Some(&b'.') {
        i += 1;
        ok = digits(&mut i) > 0;
    }
    if ok && matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        ok = digits(&mut i) > 0;
    }
    if ok && i == b.len() {
        if let Ok(n) = cell.parse::<i64>() {
            return Value::from(n);
        }
        if let Some(n) = cell
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite())
            .and_then(serde_json::Number::from_f64)
        {
            return Value::Number(n);
        }
    }
    Value::String(cell.to_string())
}

/// Whether a convert cell says yes: `true`, `yes` or `1`, in any case.
pub fn is_yes(cell: &str) -> bool {
    let c = cell.trim();
    c.eq_ignore_ascii_case("true") || c.eq_ignore_ascii_case("yes") || c == "1"
}

/// A time cell: RFC 3339, or `YYYY-MM-DD HH:MM:SS` / `YYYY-MM-DDTHH:MM:SS` / `YYYY-MM-DD`
/// read as UTC.
pub fn parse_time(cell: &str) -> Option<Micros> {
    let cell = cell.trim();
    if let Some(t) = parse_rfc3339(cell) {
        return Some(t);
    }
    for format in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(cell, format) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    chrono::NaiveDate::parse_from_str(cell, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_micros())
}

fn s(v: &str) -> Node {
    Node::V(Value::String(v.to_string()))
}

/// Runs `import csv`; returns the exit status.
pub fn run(args: &CsvImport<'_>) -> u8 {
    let at = match (args.timestamp, args.at) {
        (None, None) => {
            eprintln!(
                "error: the calls need a time: pass `--timestamp COLUMN` or `--at TIME` \
                 (offline tools reject events without one)"
            );
            return 2;
        }
        (_, Some(t)) => match parse_time(t) {
            Some(at) => Some(at),
            None => {
                eprintln!("error: `--at {t}` is not an RFC 3339 time (e.g. 2026-01-01T00:00:00Z)");
                return 2;
            }
        },
        (Some(_), None) => None,
    };
    let name = args.file.display().to_string();
    let mut reader = match csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(args.file)
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot read `{name}`: {e}");
            return 2;
        }
    };
    let headers = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            eprintln!("error: cannot read the header of `{name}`: {e}");
            return 2;
        }
    };
    let column = |wanted: &str, flag: &str| -> Result<usize, u8> {
        headers
            .iter()
            .position(|h| h.trim() == wanted)
            .ok_or_else(|| {
                let names: Vec<String> = headers
                    .iter()
                    .filter(|h| !h.trim().is_empty())
                    .map(|h| format!("`{h}`"))
                    .collect();
                eprintln!(
                    "error: `{name}` has no column `{wanted}` (for `{flag}`); its columns: {}",
                    names.join(", ")
                );
                2
            })
    };
    let id_col = match column(args.id, "--id") {
        Ok(c) => c,
        Err(code) => return code,
    };
    let optional = |c: Option<&str>, flag: &str| c.map(|c| column(c, flag)).transpose();
    let (source_col, convert_col, time_col) = match (
        optional(args.source, "--source"),
        optional(args.convert, "--convert"),
        optional(args.timestamp, "--timestamp"),
    ) {
        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
        (Err(code), _, _) | (_, Err(code), _) | (_, _, Err(code)) => return code,
    };
    // trait names, with the columns that have none (an empty header) left out
    let mut traits: Vec<Option<String>> = Vec::new();
    let mut seen: HashMap<String, &str> = HashMap::new();
    for h in &headers {
        let key = snake_case(h);
        if key.is_empty() {
            traits.push(None);
            continue;
        }
        if let Some(other) = seen.insert(key.clone(), h) {
            eprintln!("error: `{name}`: columns `{other}` and `{h}` both become the trait `{key}`");
            return 2;
        }
        traits.push(Some(key));
    }
    let out: Box<dyn Write> = match args.out {
        Some(path) => match std::fs::File::create(path) {
            Ok(f) => Box::new(f),
            Err(e) => {
                eprintln!("error: cannot write `{}`: {e}", path.display());
                return 2;
            }
        },
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = std::io::BufWriter::new(out);
    let mut ids: HashMap<String, u64> = HashMap::new();
    let (mut rows, mut skipped, mut conversions) = (0u64, 0u64, 0u64);
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                skipped += 1;
                let line = e.position().map_or(0, csv::Position::line);
                eprintln!("{name}:{line}: {e}");
                continue;
            }
        };
        let line = record.position().map_or(0, csv::Position::line);
        let cell = |c: usize| record.get(c).map(str::trim).unwrap_or_default();
        let id = cell(id_col);
        if id.is_empty() {
            skipped += 1;
            eprintln!("{name}:{line}: empty id in column `{}`", args.id);
            continue;
        }
        if let Some(first) = ids.get(id) {
            skipped += 1;
            eprintln!("{name}:{line}: id `{id}` already imported from line {first}");
            continue;
        }
        let time = match (at, time_col) {
            (Some(t), _) => t,
            (None, Some(c)) => match parse_time(cell(c)) {
                Some(t) => t,
                None => {
                    skipped += 1;
                    let column = args.timestamp.unwrap_or_default();
                    eprintln!(
                        "{name}:{line}: `{}` in column `{column}` is not a time \
                         (e.g. 2026-01-01T00:00:00Z)",
                        cell(c)
                    );
                    continue;
                }
            },
            (None, None) => continue,
        };
        ids.insert(id.to_string(), line);
        rows += 1;
        let mut profile = Map::new();
        let mut ordered = Vec::new();
        for (i, key) in traits.iter().enumerate() {
            let (Some(key), v) = (key, cell(i)) else {
                continue;
            };
            if v.is_empty() {
                continue;
            }
            let value = cell_value(v);
            profile.insert(key.clone(), value.clone());
            ordered.push((key.clone(), Node::V(value)));
        }
        let mut identify = Ordered(vec![
            ("type".into(), s("identify")),
            ("messageId".into(), s(&format!("import:{id}:identify"))),
            ("userId".into(), s(id)),
            ("timestamp".into(), s(&format_rfc3339(time))),
            ("traits".into(), Node::O(Ordered(ordered))),
        ]);
        if let Some(source) = source_col.map(cell).filter(|v| !v.is_empty()) {
            let campaign = Ordered(vec![("source".into(), s(source))]);
            identify.0.push((
                "context".into(),
                Node::O(Ordered(vec![("campaign".into(), Node::O(campaign))])),
            ));
        }
        let mut lines = vec![identify];
        if convert_col.is_some_and(|c| is_yes(cell(c))) {
            conversions += 1;
            lines.push(Ordered(vec![
                ("type".into(), s("track")),
                ("event".into(), s(args.convert_event)),
                ("messageId".into(), s(&format!("import:{id}:convert"))),
                ("userId".into(), s(id)),
                ("timestamp".into(), s(&format_rfc3339(time + SECOND))),
            ]));
        }
        for l in &lines {
            let written = serde_json::to_writer(&mut out, l)
                .map_err(std::io::Error::other)
                .and_then(|()| writeln!(out));
            if let Err(e) = written {
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    return 0;
                }
                eprintln!("error: cannot write the output: {e}");
                return 2;
            }
        }
    }
    if let Err(e) = out.flush() {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("error: cannot write the output: {e}");
            return 2;
        }
    }
    if args.out.is_some() {
        eprintln!("imported {rows} leads ({conversions} converted), skipped {skipped} rows");
    }
    0
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn snake_case_names() {
        assert_eq!(
            snake_case("Total Time Spent on Website"),
            "total_time_spent_on_website"
        );
        assert_eq!(snake_case("TotalVisits"), "total_visits");
        assert_eq!(snake_case("Prospect ID"), "prospect_id");
        assert_eq!(snake_case("HTTPServer"), "http_server");
        assert_eq!(
            snake_case("I agree to pay the amount through cheque"),
            "i_agree_to_pay_the_amount_through_cheque"
        );
        assert_eq!(snake_case("  A -- b  "), "a_b");
        assert_eq!(snake_case(""), "");
        assert_eq!(snake_case("page_views"), "page_views");
    }

    #[test]
    fn numbers_and_strings() {
        assert_eq!(cell_value("12"), Value::from(12));
        assert_eq!(cell_value("-2.5"), Value::from(-2.5));
        assert_eq!(cell_value("1e3"), Value::from(1000.0));
        assert_eq!(cell_value("0"), Value::from(0));
        assert_eq!(cell_value("007"), Value::from("007"));
        assert_eq!(cell_value("+1"), Value::from("+1"));
        assert_eq!(cell_value("02.Medium"), Value::from("02.Medium"));
        assert_eq!(cell_value("1."), Value::from("1."));
        assert_eq!(cell_value("NaN"), Value::from("NaN"));
        assert_eq!(cell_value("inf"), Value::from("inf"));
    }

    #[test]
    fn yes_values() {
        for y in ["1", "yes", "YES", "True", " true "] {
            assert!(is_yes(y), "{y}");
        }
        for n in ["0", "no", "false", "", "y", "2"] {
            assert!(!is_yes(n), "{n}");
        }
    }

    #[test]
    fn times() {
        let t = parse_rfc3339("2026-01-02T03:04:05Z");
        assert_eq!(parse_time("2026-01-02T03:04:05Z"), t);
        assert_eq!(parse_time("2026-01-02 03:04:05"), t);
        assert_eq!(
            parse_time("2026-01-02"),
            parse_rfc3339("2026-01-02T00:00:00Z")
        );
        assert_eq!(parse_time("yesterday"), None);
    }
}
