//! Reading an events file into one or more embedded engines, as `replay` does (SPEC §3): one
//! call or batch per line, a bad call reported as `FILE:LINE: path: message` and skipped.
//! `report` and `compare` share it; a progress bar shows on a terminal.

use indicatif::{ProgressBar, ProgressStyle};
use leadscore_core::ingest::call::CallError;
use leadscore_core::rules::load;
use leadscore_core::store::engine::Engine;
use leadscore_rules::eval::LeadState;
use leadscore_rules::time::{parse_rfc3339, Micros};
use leadscore_rules::Program;
use rayon::prelude::*;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

/// Lines parsed in parallel per chunk.
const CHUNK: usize = 8192;

/// Loads a rule set, printing its warnings; `Err(2)` after printing the error.
pub fn load_rules(path: &Path) -> Result<Program, u8> {
    match load(&[path.to_path_buf()]) {
        Ok((program, compiled, files)) => {
            for w in &compiled.diagnostics {
                eprint!("{}", leadscore_rules::diagnostic::render(w, &files));
            }
            Ok(program)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Err(2)
        }
    }
}

/// Parses `--as-of`; `Err(2)` after printing the error.
pub fn parse_as_of(as_of: Option<&str>) -> Result<Option<Micros>, u8> {
    match as_of {
        None => Ok(None),
        Some(t) => match parse_rfc3339(t) {
            Some(at) => Ok(Some(at)),
            None => {
                eprintln!(
                    "error: `--as-of {t}` is not an RFC 3339 time (e.g. 2026-02-01T00:00:00Z)"
                );
                Err(2)
            }
        },
    }
}

/// A progress bar over `len` lines, hidden when stderr is not a terminal or the file is small.
pub fn progress(len: usize) -> ProgressBar {
    if !std::io::stderr().is_terminal() || len < CHUNK {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64);
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} lines ({eta})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message("reading events");
    bar
}

/// A counter of `what` on standard error while `doing` goes on, when it is a terminal.
pub fn progress_spinner(doing: &str, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template(&format!(
        "{{spinner}} {doing}: {{pos}} {what} ({{per_sec}})"
    )) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

/// A progress bar over `len` of `what` on standard error while `doing` goes on, when it is a
/// terminal, with a message beside it (hidden otherwise).
pub fn progress_items(doing: &str, len: u64, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(&format!(
        "{{spinner}} {doing} [{{bar:30}}] {{pos}}/{{len}} {what} ({{eta}}) {{msg}}"
    )) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

/// A progress bar over the bytes of an input on a terminal (hidden otherwise, or for a small
/// input).
pub fn progress_bytes(len: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() || len < 1 << 20 {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} ({eta})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message("reading events");
    bar
}

/// The final states of one engine's leads, sorted by id.
pub fn states<'e>(engine: &'e Engine<'_>) -> Vec<(&'e str, &'e LeadState)> {
    let mut v: Vec<(&str, &LeadState)> = engine.leads().map(|(id, r)| (id, &r.state)).collect();
    v.sort_by(|a, b| a.0.cmp(b.0));
    v
}

/// Runs the events of `events` through one engine per program (the file is read and parsed
/// once), ticks every lead at `as_of` when given, and hands the engines and the number of
/// rejected calls to `then`. `Err(2)` when the file cannot be read.
pub fn run_events<R>(
    programs: &[&Program],
    events: &PathBuf,
    as_of: Option<Micros>,
    then: impl FnOnce(&[Engine<'_>], u64) -> R,
) -> Result<R, u8> {
    let text = match std::fs::read(events) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot read `{}`: {e}", events.display());
            return Err(2);
        }
    };
    let name = events.display().to_string();
    // a line that is not UTF-8 is that line's error
    let lines: Vec<(usize, Result<&str, CallError>)> =
        leadscore_core::ingest::lines::text_lines(&text).collect();
    let lines = &lines;
    let mut engines: Vec<Engine<'_>> = programs
        .iter()
        .map(|p| {
            // a merge reads the merged leads' calls again from their lines
            let loader = move |line: u32, index: u32| {
                let at = lines
                    .binary_search_by_key(&(line as usize), |(n, _)| *n)
                    .ok()?;
                let calls = parse_body(lines[at].1.as_ref().ok()?).ok()?;
                calls.into_iter().nth(index as usize)?.ok()
            };
            let mut e = Engine::with_loader(p, Box::new(loader));
            e.reserve(text.len() / 128, text.len() / 1024);
            e
        })
        .collect();
    let bar = progress(lines.len());
    let stderr = std::io::stderr();
    let mut rejected = 0u64;
    for chunk in lines.chunks(CHUNK) {
        let parsed: Vec<_> = chunk
            .par_iter()
            .with_min_len(256)
            .map(|(n, l)| (*n, l.clone().and_then(parse_body)))
            .collect();
        for (line, parsed) in &parsed {
            let line = *line;
            match parsed {
                Err(e) => {
                    rejected += 1;
                    bar.suspend(|| {
                        let _ = writeln!(stderr.lock(), "{name}:{line}: {e}");
                    });
                }
                Ok(calls) => {
                    for (index, call) in calls.iter().enumerate() {
                        match call {
                            Ok(call) => {
                                for engine in &mut engines {
                                    #[allow(clippy::cast_possible_truncation)]
                                    engine.process_line(call, line as u32, index as u32);
                                }
                            }
                            Err(e) => {
                                rejected += 1;
                                bar.suspend(|| {
                                    let _ = writeln!(stderr.lock(), "{name}:{line}: {e}");
                                });
                            }
                        }
                    }
                }
            }
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    if let Some(at) = as_of {
        for engine in &mut engines {
            engine.tick_all(at);
        }
    }
    Ok(then(&engines, rejected))
}

type Parsed = Result<Vec<Result<leadscore_core::ingest::call::Call, CallError>>, CallError>;

fn parse_body(line: &str) -> Parsed {
    leadscore_core::ingest::parse_body(line, &leadscore_core::ingest::call::TimePolicy::Required)
}

/// Writes `text` to `out` (a file) or standard output; the exit status.
pub fn write_output(out: Option<&Path>, text: &str) -> u8 {
    let result = match out {
        Some(path) => std::fs::write(path, text)
            .map_err(|e| format!("cannot write `{}`: {e}", path.display())),
        None => {
            let mut stdout = std::io::stdout().lock();
            match stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
            {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                r => r.map_err(|e| format!("cannot write the output: {e}")),
            }
        }
    };
    match result {
        Ok(()) => 0,
        Err(message) => {
            eprintln!("error: {message}");
            2
        }
    }
}
