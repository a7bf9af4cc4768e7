//! `leadscore replay`: events through the rules on the embedded engine; the JSON contract of
//! SPEC §4 or a table for people.

use crate::ReplayFormat;
use leadscore_core::engine::Engine;
use leadscore_core::output::{
    lead_object, notification_object, replay_document, sorted_leads, sorted_notifications,
    summary_object,
};
use leadscore_core::segment::{parse_body, Call, CallError, TimePolicy};
use rayon::prelude::*;
use serde_json::Value;
use std::io::Write;
use std::path::Path;

type Line = Result<Vec<Result<Call, CallError>>, CallError>;

/// Lines parsed per chunk: parsing of one chunk overlaps applying the previous one.
const CHUNK: usize = 8192;

/// The non-blank lines of an events file with their numbers (from 1).
fn numbered_lines(text: &str) -> Vec<(usize, &str)> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| (i + 1, l))
        .collect()
}

/// Runs `replay`; returns the exit status.
pub fn run(
    rules: &Path,
    events: &Path,
    format: ReplayFormat,
    strict: bool,
    as_of: Option<&str>,
) -> u8 {
    let program = match crate::events::load_rules(rules) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let as_of = match crate::events::parse_as_of(as_of) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let text = match std::fs::read_to_string(events) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot read `{}`: {e}", events.display());
            return 2;
        }
    };
    let name = events.display().to_string();
    let lines = numbered_lines(&text);
    let lines = &lines;
    // a merge reads the merged leads' calls again from their lines
    let loader = move |line: u32, index: u32| -> Option<Call> {
        let at = lines
            .binary_search_by_key(&(line as usize), |(n, _)| *n)
            .ok()?;
        let calls = parse_body(lines[at].1, &TimePolicy::Required).ok()?;
        calls.into_iter().nth(index as usize)?.ok()
    };
    let mut engine = Engine::with_loader(&program, Box::new(loader));
    engine.reserve(text.len() / 128, text.len() / 2048);
    let mut rejected = 0u64;
    let stderr = std::io::stderr();
    let mut err = stderr.lock();
    let timing = std::env::var_os("LEADSCORE_TIMING").is_some();
    let t0 = std::time::Instant::now();
    let bar = crate::events::progress(lines.len());
    // Parse chunks on the thread pool while this thread applies the previous chunk.
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<(usize, Line)>>(2);
        scope.spawn(move || {
            for chunk in lines.chunks(CHUNK) {
                let parsed: Vec<(usize, Line)> = chunk
                    .par_iter()
                    .with_min_len(256)
                    .map(|(n, l)| (*n, parse_body(l, &TimePolicy::Required)))
                    .collect();
                if tx.send(parsed).is_err() {
                    break;
                }
            }
        });
        let mut busy = std::time::Duration::ZERO;
        for parsed in rx {
            let t = std::time::Instant::now();
            let parsed_chunk = parsed;
            for (line, parsed) in &parsed_chunk {
                let line = *line;
                match parsed {
                    Err(e) => {
                        rejected += 1;
                        let _ = writeln!(err, "{name}:{line}: {e}");
                    }
                    Ok(calls) => {
                        for (index, call) in calls.iter().enumerate() {
                            match call {
                                Ok(call) => {
                                    #[allow(clippy::cast_possible_truncation)]
                                    engine.process_line(call, line as u32, index as u32);
                                }
                                Err(e) => {
                                    rejected += 1;
                                    let _ = writeln!(err, "{name}:{line}: {e}");
                                }
                            }
                        }
                    }
                }
            }
            busy += t.elapsed();
            bar.inc(parsed_chunk.len() as u64);
            // free the chunk's calls on the pool, not on this thread
            rayon::spawn(move || drop(parsed_chunk));
        }
        if timing {
            eprintln!("timing: applying {busy:?}");
        }
    });
    bar.finish_and_clear();
    if timing {
        eprintln!("timing: parse and apply {:?}", t0.elapsed());
    }
    if let Some(at) = as_of {
        engine.tick_all(at);
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    let written = match format {
        ReplayFormat::Json => write_json(&mut out, &engine, rejected),
        ReplayFormat::Table => write_table(&mut out, &engine, rejected),
    };
    if let Err(e) = written.and_then(|()| out.flush()) {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("error: cannot write the output: {e}");
            return 2;
        }
    }
    if timing {
        eprintln!("timing: total {:?}", t0.elapsed());
    }
    // The process ends here: freeing a million calls one by one would take longer than the
    // replay itself, and the operating system reclaims the memory at once.
    std::mem::forget(engine);
    if strict && rejected > 0 {
        return 2;
    }
    0
}

/// Writes the JSON document exactly as `serde_json::to_writer_pretty` would, rendering the
/// lead objects on all cores.
fn write_json(out: &mut impl Write, engine: &Engine<'_>, rejected: u64) -> std::io::Result<()> {
    let program = engine.program();
    let leads = sorted_leads(engine);
    let rendered: Vec<String> = leads
        .par_iter()
        .with_min_len(512)
        .map(|(id, state)| indented(&lead_object(program, id, state), 4))
        .collect();
    let notes: Vec<String> = sorted_notifications(engine)
        .par_iter()
        .with_min_len(512)
        .map(|n| indented(&notification_object(program, n), 4))
        .collect();
    let summary = indented(&summary_object(program, &leads, rejected), 2);
    let name = serde_json::to_string(&program.name).map_err(std::io::Error::other)?;
    writeln!(out, "{{\n  \"ruleset\": {name},")?;
    write_list(out, "leads", &rendered)?;
    writeln!(out, ",")?;
    write_list(out, "notifications", &notes)?;
    writeln!(out, ",\n  \"summary\": {}\n}}", summary.trim_start())
}

fn write_list(out: &mut impl Write, key: &str, items: &[String]) -> std::io::Result<()> {
    if items.is_empty() {
        return write!(out, "  \"{key}\": []");
    }
    writeln!(out, "  \"{key}\": [")?;
    for (i, item) in items.iter().enumerate() {
        out.write_all(item.as_bytes())?;
        out.write_all(if i + 1 < items.len() { b",\n" } else { b"\n" })?;
    }
    write!(out, "  ]")
}

/// Pretty JSON of a value, every line indented by `by` spaces.
fn indented(value: &impl serde::Serialize, by: usize) -> String {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    let pad = " ".repeat(by);
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for (i, line) in text.lines().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&pad);
        out.push_str(line);
    }
    out
}

fn write_table(out: &mut impl Write, engine: &Engine<'_>, rejected: u64) -> std::io::Result<()> {
    let program = engine.program();
    let doc = serde_json::to_value(replay_document(engine, rejected)).unwrap_or(Value::Null);
    writeln!(out, "rule set `{}`", program.name)?;
    writeln!(out)?;
    let header = [
        "lead",
        "score",
        "fit",
        "engagement",
        "stage",
        "conversions",
        "source",
        "events",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| (*s).to_string()).collect()];
    let mut ids: Vec<&String> = engine.leads().map(|(id, _)| id).collect();
    ids.sort();
    for id in ids {
        let Some(rec) = engine.lead(id) else { continue };
        let lead =
            serde_json::to_value(lead_object(program, id, &rec.state)).unwrap_or(Value::Null);
        let s = |k: &str| match &lead[k] {
            Value::Null => "-".to_string(),
            Value::String(s) => s.clone(),
            v => v.to_string(),
        };
        let convs = lead["conversions"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c["name"].as_str().map(|n| format!("{n}×{}", c["count"])))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "-".into());
        rows.push(vec![
            id.clone(),
            s("score"),
            s("fit"),
            s("engagement"),
            s("stage"),
            convs,
            s("source"),
            s("events"),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for (i, row) in rows.iter().enumerate() {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, v)| {
                let pad = widths[c] - v.chars().count();
                if (1..=3).contains(&c) {
                    format!("{}{v}", " ".repeat(pad))
                } else {
                    format!("{v}{}", " ".repeat(pad))
                }
            })
            .collect();
        writeln!(out, "{}", cells.join("  ").trim_end())?;
        if i == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            writeln!(out, "{}", rule.join("  "))?;
        }
    }
    let notes = doc["notifications"].as_array().map_or(0, Vec::len);
    let summary = &doc["summary"];
    writeln!(out)?;
    writeln!(
        out,
        "{} leads, {} converted ({}%), {} notifications, {} rejected",
        summary["leads"], summary["converted"], summary["conversion_rate"], notes, rejected
    )?;
    if let Some(reached) = summary["reached"].as_object() {
        if !reached.is_empty() {
            let parts: Vec<String> = program
                .stages
                .iter()
                .filter_map(|s| reached.get(&s.name).map(|n| format!("{} {n}", s.name)))
                .collect();
            writeln!(out, "reached: {}", parts.join(", "))?;
        }
    }
    Ok(())
}
