//! `leadscore replay`: events through the rules on the embedded engine; the JSON contract of
//! SPEC §4 or a table for people.

use crate::ReplayFormat;
use leadscore_core::ingest::call::{Call, CallError, LineCalls, TimePolicy};
use leadscore_core::ingest::parse_line_reading;
use leadscore_core::output::{
    lead_object, replay_document, rules_object, sorted_notifications, summary_object,
    write_lead_pretty, NotificationJson,
};
use leadscore_core::store::engine::{Engine, MessageKey, MessageKeys};
use leadscore_rules::program::Reads;
use rayon::prelude::*;
use serde_json::Value;
use std::io::Write;
use std::path::Path;

type Line = Result<LineCalls, CallError>;

/// A parsed line: its number, its calls, and the message key of its first call (computed
/// with the parse; a batch's other calls get theirs when they are applied).
type Parsed = (usize, Line, Option<MessageKey>);

/// Bytes read per block: the parsers parse the next blocks while the applying thread
/// applies one. The file is streamed, never held whole in memory.
const BLOCK: usize = 1 << 19;

/// One block of the input: whole lines, parsed.
struct Block {
    /// The non-blank lines, parsed.
    parsed: Vec<Parsed>,
    /// The byte offset of each line of the block, blank ones included.
    starts: Vec<u64>,
    /// The offset of the block's first byte.
    start: u64,
    /// The offset just past the block.
    end: u64,
    /// The block's text, kept when the input cannot be read again (a pipe).
    text: Option<String>,
}

/// Calls per step of the prefetch pipeline: before a group is applied, the next group's
/// lead state, the group after's records and the third group's table places are fetched
/// ([`Engine::prefetch_tables`]).
const GROUP: usize = 16;

/// The message key of call `index` of a line: the first's was computed with the parse.
#[inline]
fn message_key(
    keys: MessageKeys,
    call: &Call,
    index: usize,
    first: Option<MessageKey>,
) -> MessageKey {
    match first {
        Some(key) if index == 0 => key,
        _ => keys.key(&call.message_id),
    }
}

/// Where a merge reads a lead's earlier lines again.
struct Lines {
    /// The byte offset of line `n` at `n - 1`.
    starts: Vec<u64>,
    /// The offset just past the last line read.
    end: u64,
    /// The events file, opened again (a regular file).
    file: Option<std::fs::File>,
    /// Otherwise the text, in blocks by start offset.
    blocks: Vec<(u64, String)>,
}

impl Lines {
    /// The text of line `n` (from 1) without its line ending.
    fn line(&self, n: u32) -> Option<String> {
        use std::io::{Read, Seek, SeekFrom};
        let i = (n as usize).checked_sub(1)?;
        let start = *self.starts.get(i)?;
        let end = self.starts.get(i + 1).copied().unwrap_or(self.end);
        let len = usize::try_from(end.checked_sub(start)?).ok()?;
        let raw = if let Some(file) = &self.file {
            let mut buf = vec![0u8; len];
            let mut file = file;
            file.seek(SeekFrom::Start(start)).ok()?;
            file.read_exact(&mut buf).ok()?;
            String::from_utf8(buf).ok()?
        } else {
            let b = self
                .blocks
                .partition_point(|(s, _)| *s <= start)
                .checked_sub(1)?;
            let (s, text) = &self.blocks[b];
            let from = usize::try_from(start - s).ok()?;
            text.get(from..from.checked_add(len)?)?.to_string()
        };
        Some(content(&raw).to_string())
    }
}

/// A line without its ending, exactly as `str::lines` gives it.
fn content(line: &str) -> &str {
    let Some(line) = line.strip_suffix('\n') else {
        return line;
    };
    line.strip_suffix('\r').unwrap_or(line)
}

/// The text of one block as read, before it is parsed: whole lines.
struct Raw {
    /// The text.
    text: String,
    /// The number of the block's first line (from 1).
    first_line: usize,
    /// The byte offset of each line of the block, blank ones included.
    starts: Vec<u64>,
    /// The offset of the block's first byte.
    start: u64,
    /// The lines that are not UTF-8 (blanked in `text`): their numbers and errors.
    not_text: Vec<(usize, CallError)>,
}

/// What goes back to a parser once its block has been applied, to be freed where it was
/// allocated (the allocator frees memory of its own thread fastest).
type Spent = (Vec<Parsed>, Vec<u64>);

/// The threads that parse blocks: block `k` is parsed by parser `k % parsers`, which also
/// frees it once it has been applied.
fn parsers() -> usize {
    std::thread::available_parallelism()
        .map_or(2, std::num::NonZero::get)
        .saturating_sub(1)
        .clamp(2, 8)
}

/// Reads `input` block by block (each ends after a line ending, or at the end of the input)
/// and hands block `k` to parser `k % to.len()`; stops at the first read error, which it
/// hands on in place of the block. Buffers come back through `recycled`.
fn read_blocks(
    mut input: std::fs::File,
    to: &[std::sync::mpsc::SyncSender<std::io::Result<Raw>>],
    recycled: &std::sync::mpsc::Receiver<Vec<u8>>,
) {
    use std::io::Read;
    let mut buf: Vec<u8> = Vec::with_capacity(BLOCK + (BLOCK >> 2));
    let mut offset = 0u64;
    let mut line_no = 0usize;
    // the block about to be read, counted from 0
    let mut k = 0usize;
    loop {
        let to = &to[k % to.len()];
        let n = match (&mut input).take(BLOCK as u64).read_to_end(&mut buf) {
            Ok(n) => n,
            Err(e) => {
                let _ = to.send(Err(e));
                return;
            }
        };
        let eof = n < BLOCK;
        let cut = if eof {
            buf.len()
        } else {
            // what was carried over has no line ending: only the bytes just read can
            let read_from = buf.len() - n;
            match memchr::memrchr(b'\n', &buf[read_from..]) {
                Some(i) => read_from + i + 1,
                None => continue, // a line longer than a block: read on
            }
        };
        if cut == 0 {
            return;
        }
        // the lines, as `split_inclusive('\n')` gives them
        let mut starts = Vec::with_capacity(cut / 128);
        starts.push(offset);
        starts.extend(
            memchr::memchr_iter(b'\n', &buf[..cut])
                .map(|i| offset + i as u64 + 1)
                .filter(|&s| s < offset + cut as u64),
        );
        let first_line = line_no + 1;
        line_no += starts.len();
        // the next block starts with what follows the cut
        let mut next = recycled
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BLOCK + (BLOCK >> 2)));
        next.clear();
        next.extend_from_slice(&buf[cut..]);
        let mut block = std::mem::replace(&mut buf, next);
        block.truncate(cut);
        // a line that is not UTF-8 is that line's error (blanked here, reported in order)
        let (text, not_text) =
            leadscore_core::ingest::lines::blank_invalid_lines(block, first_line);
        let raw = Raw {
            text,
            first_line,
            starts,
            start: offset,
            not_text,
        };
        offset += cut as u64;
        k += 1;
        if to.send(Ok(raw)).is_err() || eof {
            return;
        }
    }
}

/// A parser: parses the blocks it is handed, line by line, and sends them on in the same
/// order; frees the blocks that come back once applied.
fn parse_blocks(
    from: &std::sync::mpsc::Receiver<std::io::Result<Raw>>,
    to: std::sync::mpsc::SyncSender<std::io::Result<Block>>,
    spent: &std::sync::mpsc::Receiver<Spent>,
    recycle: &std::sync::mpsc::Sender<Vec<u8>>,
    keep_text: bool,
    reads: &Reads,
    keys: MessageKeys,
) {
    for raw in from {
        spent.try_iter().for_each(drop);
        let block = raw.map(|raw| parse_block(raw, recycle, keep_text, reads, keys));
        // after an error the reader has stopped, and so does the applying thread
        let stop = block.is_err();
        if to.send(block).is_err() || stop {
            return;
        }
    }
    // the input has ended (which the applying thread learns when `to` closes); the last
    // blocks come back after that
    drop(to);
    spent.iter().for_each(drop);
}

/// Parses the non-blank lines of one block; hands its buffer back to the reader, unless the
/// block keeps its text.
fn parse_block(
    raw: Raw,
    recycle: &std::sync::mpsc::Sender<Vec<u8>>,
    keep_text: bool,
    reads: &Reads,
    keys: MessageKeys,
) -> Block {
    let text = raw.text.as_str();
    let end = raw.start + text.len() as u64;
    let mut parsed: Vec<Parsed> = Vec::with_capacity(raw.starts.len());
    for (i, &from) in raw.starts.iter().enumerate() {
        let to = raw.starts.get(i + 1).copied().unwrap_or(end);
        #[allow(clippy::cast_possible_truncation)] // offsets within one block
        let Some(l) = text.get((from - raw.start) as usize..(to - raw.start) as usize) else {
            continue;
        };
        let l = content(l);
        if l.trim().is_empty() {
            continue;
        }
        let line = parse_line_reading(l, &TimePolicy::Required, Some(reads));
        let first = match &line {
            Ok(calls) => match calls.first() {
                Some(Ok(call)) => Some(keys.key(&call.message_id)),
                _ => None,
            },
            Err(_) => None,
        };
        parsed.push((raw.first_line + i, line, first));
    }
    if !raw.not_text.is_empty() {
        parsed.extend(raw.not_text.into_iter().map(|(n, e)| (n, Err(e), None)));
        parsed.sort_by_key(|(n, _, _)| *n);
    }
    let text = if keep_text {
        Some(raw.text)
    } else {
        let _ = recycle.send(raw.text.into_bytes());
        None
    };
    Block {
        parsed,
        starts: raw.starts,
        start: raw.start,
        end,
        text,
    }
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
    let cannot_read = |e: std::io::Error| {
        eprintln!("error: cannot read `{}`: {e}", events.display());
        2
    };
    let input = match std::fs::File::open(events) {
        Ok(f) => f,
        Err(e) => return cannot_read(e),
    };
    // a regular file is read again at merges; anything else (a pipe) is kept in memory
    let size = match input.metadata() {
        Ok(m) if m.is_file() => Some(m.len()),
        Ok(_) => None,
        Err(e) => return cannot_read(e),
    };
    let again = match size {
        Some(_) => match std::fs::File::open(events) {
            Ok(f) => Some(f),
            Err(e) => return cannot_read(e),
        },
        None => None,
    };
    let keep_text = again.is_none();
    let name = events.display().to_string();
    // one line start per line: about one per 128 bytes of a file of Segment calls
    let expected_lines = usize::try_from(size.unwrap_or(0) / 128).unwrap_or(0);
    let lines = std::cell::RefCell::new(Lines {
        starts: Vec::with_capacity(expected_lines),
        end: 0,
        file: again,
        blocks: Vec::new(),
    });
    let lines = &lines;
    // calls keep only what the rules read (Program::reads): they evaluate the same, and
    // cost less to build, apply and drop
    let reads = program.reads();
    let reads = &reads;
    // a merge reads the merged leads' calls again from their lines
    let loader = move |line: u32, index: u32| -> Option<Call> {
        let text = lines.borrow().line(line)?;
        let calls = parse_line_reading(&text, &TimePolicy::Required, Some(reads)).ok()?;
        calls.into_iter().nth(index as usize)?.ok()
    };
    let mut engine = Engine::with_loader(&program, Box::new(loader));
    let len = usize::try_from(size.unwrap_or(0)).unwrap_or(usize::MAX);
    engine.reserve(len / 128, len / 1024);
    let mut rejected = 0u64;
    // rejected lines are reported once the whole input has been read (a read error reports
    // only itself)
    let mut report: Vec<u8> = Vec::new();
    let mut read_error = None;
    let timing = std::env::var_os("LEADSCORE_TIMING").is_some();
    let t0 = std::time::Instant::now();
    let bar = crate::events::progress_bytes(size.unwrap_or(0));
    // The parsers parse the next blocks while this thread applies one.
    std::thread::scope(|scope| {
        use std::sync::mpsc::{channel, sync_channel};
        let keys = engine.message_keys();
        let (recycle, recycled) = channel::<Vec<u8>>();
        let mut raws = Vec::new();
        let mut blocks = Vec::new();
        let mut spent = Vec::new();
        for _ in 0..parsers() {
            let (raw_tx, raw_rx) = sync_channel::<std::io::Result<Raw>>(1);
            let (block_tx, block_rx) = sync_channel::<std::io::Result<Block>>(1);
            let (spent_tx, spent_rx) = channel::<Spent>();
            let recycle = recycle.clone();
            scope.spawn(move || {
                parse_blocks(
                    &raw_rx, block_tx, &spent_rx, &recycle, keep_text, reads, keys,
                );
            });
            raws.push(raw_tx);
            blocks.push(block_rx);
            spent.push(spent_tx);
        }
        drop(recycle);
        scope.spawn(move || read_blocks(input, &raws, &recycled));
        let mut busy = std::time::Duration::ZERO;
        // block k comes from parser k % n, and goes back to it to be freed
        let in_order =
            (0..).map_while(|k| Some((k % blocks.len(), blocks[k % blocks.len()].recv().ok()?)));
        for (parser, block) in in_order {
            let t = std::time::Instant::now();
            let block = match block {
                Ok(b) => b,
                Err(e) => {
                    read_error = Some(e);
                    break;
                }
            };
            {
                let mut lines = lines.borrow_mut();
                lines.starts.extend_from_slice(&block.starts);
                lines.end = block.end;
                if let Some(text) = block.text {
                    lines.blocks.push((block.start, text));
                }
            }
            let parsed_chunk = block.parsed;
            // the block's calls in order, and its rejected lines
            let mut calls = Vec::with_capacity(parsed_chunk.len());
            let mut places = Vec::with_capacity(parsed_chunk.len());
            for (line, parsed, first) in &parsed_chunk {
                let line = *line;
                match parsed {
                    Err(e) => {
                        rejected += 1;
                        let _ = writeln!(report, "{name}:{line}: {e}");
                    }
                    Ok(line_calls) => {
                        for (index, call) in line_calls.iter().enumerate() {
                            match call {
                                Ok(call) => {
                                    let message = message_key(keys, call, index, *first);
                                    calls.push(engine.ahead(call, message));
                                    #[allow(clippy::cast_possible_truncation)]
                                    places.push((line as u32, index as u32));
                                }
                                Err(e) => {
                                    rejected += 1;
                                    let _ = writeln!(report, "{name}:{line}: {e}");
                                }
                            }
                        }
                    }
                }
            }
            // apply them a group at a time, fetching ahead what later groups will read
            let group = |g: usize| {
                let from = (g * GROUP).min(calls.len());
                &calls[from..((g + 1) * GROUP).min(calls.len())]
            };
            // step s: group s enters the pipeline; group s - 3 leaves it, applied
            for step in 0..calls.len().div_ceil(GROUP) + 3 {
                engine.prefetch_tables(group(step));
                if let Some(g) = step.checked_sub(1) {
                    engine.prefetch_records(group(g));
                }
                if let Some(g) = step.checked_sub(2) {
                    engine.prefetch_state(group(g));
                }
                if let Some(g) = step.checked_sub(3) {
                    for (ahead, &(line, index)) in group(g).iter().zip(&places[g * GROUP..]) {
                        engine.process_line_keyed(ahead.call, ahead.message, line, index);
                    }
                }
            }
            busy += t.elapsed();
            bar.inc(block.end - block.start);
            // the parser that allocated the block's calls frees them
            let _ = spent[parser].send((parsed_chunk, block.starts));
        }
        if timing {
            eprintln!("timing: applying {busy:?}");
        }
    });
    if let Some(e) = read_error {
        bar.finish_and_clear();
        std::mem::forget(engine);
        return cannot_read(e);
    }
    bar.finish_and_clear();
    if !report.is_empty() {
        let _ = std::io::stderr().lock().write_all(&report);
    }
    if timing {
        eprintln!("timing: parse and apply {:?}", t0.elapsed());
    }
    if let Some(at) = as_of {
        engine.tick_all(at);
    }
    if let Err(code) = write_document(&engine, format, rejected) {
        return code;
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

/// Writes the document in `format` to standard output; `Err(2)` when it cannot be written
/// (a closed pipe is not an error).
fn write_document(engine: &Engine<'_>, format: ReplayFormat, rejected: u64) -> Result<(), u8> {
    if engine.duplicates() > 0 {
        // not errors (`--strict` does not fail on them), but never silent
        eprintln!(
            "note: {} call(s) skipped: their `messageId` was applied before (duplicates)",
            engine.duplicates()
        );
    }
    let stdout = std::io::stdout();
    // small: the rendered chunks of the document are larger, and go straight through
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let written = match format {
        ReplayFormat::Json => write_json(&mut out, engine, rejected),
        ReplayFormat::Table => write_table(&mut out, engine, rejected),
    };
    match written.and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("error: cannot write the output: {e}");
            Err(2)
        }
        _ => Ok(()),
    }
}

/// `replay` of several `--rules`/`--events` pairs, applied in turn: the first rule set runs
/// its events, then each later one rescores every lead ([`Engine::change_rules`]) and runs
/// its own. Rejected lines are reported as `replay` reports them; the output is that of the
/// last rule set.
pub fn run_pairs(
    rules: &[std::path::PathBuf],
    events: &[std::path::PathBuf],
    format: ReplayFormat,
    strict: bool,
    as_of: Option<&str>,
) -> u8 {
    if rules.len() != events.len() {
        eprintln!(
            "error: `--rules` and `--events` go in pairs: {} `--rules`, {} `--events`",
            rules.len(),
            events.len()
        );
        return 2;
    }
    let mut programs = Vec::with_capacity(rules.len());
    for path in rules {
        match crate::events::load_rules(path) {
            Ok(p) => programs.push(p),
            Err(code) => return code,
        }
    }
    let as_of = match crate::events::parse_as_of(as_of) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let Some(first) = programs.first() else {
        return 2;
    };
    let mut engine = Engine::new(first);
    let mut rejected = 0u64;
    let mut report: Vec<u8> = Vec::new();
    for (program, path) in programs.iter().zip(events) {
        engine.change_rules(program);
        let bytes = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: cannot read `{}`: {e}", path.display());
                return 2;
            }
        };
        let name = path.display();
        for (line_no, line) in leadscore_core::ingest::lines::text_lines(&bytes) {
            let parsed = line
                .and_then(|line| leadscore_core::ingest::parse_body(line, &TimePolicy::Required));
            match parsed {
                Err(e) => {
                    rejected += 1;
                    let _ = writeln!(report, "{name}:{line_no}: {e}");
                }
                Ok(calls) => {
                    for call in calls {
                        match call {
                            Ok(call) => {
                                engine.process(std::sync::Arc::new(call));
                            }
                            Err(e) => {
                                rejected += 1;
                                let _ = writeln!(report, "{name}:{line_no}: {e}");
                            }
                        }
                    }
                }
            }
        }
    }
    let _ = std::io::stderr().lock().write_all(&report);
    if let Some(at) = as_of {
        engine.tick_all(at);
    }
    if let Err(code) = write_document(&engine, format, rejected) {
        return code;
    }
    if strict && rejected > 0 {
        return 2;
    }
    0
}

/// Leads (or notifications) rendered per task on the thread pool.
const RENDER_CHUNK: usize = 1024;

/// Writes the JSON document exactly as `serde_json::to_writer_pretty` would write
/// [`replay_document`](leadscore_core::output::replay_document), rendering the leads and
/// notifications straight from the engine on all cores.
fn write_json(out: &mut impl Write, engine: &Engine<'_>, rejected: u64) -> std::io::Result<()> {
    let program = engine.program();
    let mut leads: Vec<(&str, &leadscore_rules::LeadState)> =
        engine.leads().map(|(id, r)| (id, &r.state)).collect();
    leads.par_sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut summary = Vec::new();
    pretty_at(
        &mut summary,
        1,
        &summary_object(program, &leads, rejected, engine.duplicates()),
    )?;
    let name = serde_json::to_string(&program.name).map_err(std::io::Error::other)?;
    writeln!(out, "{{\n  \"ruleset\": {name},")?;
    write!(out, "  \"rules\": ")?;
    let mut rules = Vec::new();
    pretty_at(&mut rules, 1, &rules_object(program))?;
    out.write_all(&rules)?;
    writeln!(out, ",")?;
    let mut buffers = Vec::new();
    write_list(out, "leads", &leads, &mut buffers, |buf, (id, state)| {
        write_lead_pretty(buf, 2, program, id, state).map_err(std::io::Error::other)
    })?;
    writeln!(out, ",")?;
    let notifications = sorted_notifications(engine);
    write_list(
        out,
        "notifications",
        &notifications,
        &mut buffers,
        |buf, n| {
            let json = NotificationJson {
                program,
                notification: n,
            };
            pretty_at(buf, 2, &json)
        },
    )?;
    write!(out, ",\n  \"summary\": ")?;
    out.write_all(&summary)?;
    writeln!(out, "\n}}")
}

/// Appends the pretty JSON of a value that sits `depth` levels deep in the document.
fn pretty_at(
    buf: &mut Vec<u8>,
    depth: usize,
    value: &impl serde::Serialize,
) -> std::io::Result<()> {
    let nested = Nested {
        depth,
        has_value: false,
    };
    value
        .serialize(&mut serde_json::Serializer::with_formatter(buf, nested))
        .map_err(std::io::Error::other)
}

/// Chunks rendered at once: the pool renders a round of them, this thread writes it, and the
/// next round renders into the same buffers (no fresh memory for the kernel to clear).
const ROUND: usize = 8;

/// Writes one list of the document: its items as `render` pretty-prints them at the depth of
/// the list's items (4 spaces), separated by `,\n`, rendered in chunks on the thread pool.
fn write_list<T: Sync>(
    out: &mut impl Write,
    key: &str,
    items: &[T],
    buffers: &mut Vec<Vec<u8>>,
    render: impl Fn(&mut Vec<u8>, &T) -> std::io::Result<()> + Sync,
) -> std::io::Result<()> {
    if items.is_empty() {
        return write!(out, "  \"{key}\": []");
    }
    writeln!(out, "  \"{key}\": [")?;
    buffers.resize_with(ROUND, || Vec::with_capacity(RENDER_CHUNK * 512));
    let last = items.len() - 1;
    for (r, round) in items.chunks(RENDER_CHUNK * ROUND).enumerate() {
        round
            .par_chunks(RENDER_CHUNK)
            .zip(buffers.par_iter_mut())
            .enumerate()
            .try_for_each(|(c, (chunk, buf))| {
                buf.clear();
                let first = (r * ROUND + c) * RENDER_CHUNK;
                for (i, item) in chunk.iter().enumerate() {
                    buf.extend_from_slice(b"    ");
                    render(buf, item)?;
                    buf.extend_from_slice(if first + i < last { b",\n" } else { b"\n" });
                }
                Ok::<(), std::io::Error>(())
            })?;
        let used = round.len().div_ceil(RENDER_CHUNK);
        for buf in &buffers[..used] {
            out.write_all(buf)?;
        }
    }
    write!(out, "  ]")
}

/// `serde_json`'s pretty printer with an indent of two spaces, for a value printed `depth`
/// levels deep: every line break is followed by the indent of its depth, and nothing else
/// differs (the same output as indenting each line of the pretty text by `2 × depth`).
struct Nested {
    depth: usize,
    has_value: bool,
}

impl Nested {
    fn line<W: ?Sized + Write>(&self, w: &mut W, first: bool) -> std::io::Result<()> {
        w.write_all(if first { b"\n" } else { b",\n" })?;
        self.indent(w)
    }

    fn indent<W: ?Sized + Write>(&self, w: &mut W) -> std::io::Result<()> {
        for _ in 0..self.depth {
            w.write_all(b"  ")?;
        }
        Ok(())
    }

    fn begin<W: ?Sized + Write>(&mut self, w: &mut W, open: &[u8]) -> std::io::Result<()> {
        self.depth += 1;
        self.has_value = false;
        w.write_all(open)
    }

    fn end<W: ?Sized + Write>(&mut self, w: &mut W, close: &[u8]) -> std::io::Result<()> {
        self.depth = self.depth.saturating_sub(1);
        if self.has_value {
            w.write_all(b"\n")?;
            self.indent(w)?;
        }
        w.write_all(close)
    }
}

impl serde_json::ser::Formatter for Nested {
    fn begin_array<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.begin(w, b"[")
    }

    fn end_array<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.end(w, b"]")
    }

    fn begin_array_value<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.line(w, first)
    }

    fn end_array_value<W: ?Sized + Write>(&mut self, _w: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }

    fn begin_object<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.begin(w, b"{")
    }

    fn end_object<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.end(w, b"}")
    }

    fn begin_object_key<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.line(w, first)
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }

    fn end_object_value<W: ?Sized + Write>(&mut self, _w: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }
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
    let mut ids: Vec<&str> = engine.leads().map(|(id, _)| id).collect();
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
            id.to_string(),
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
        "{} leads, {} converted ({}%), {} notifications, {} rejected{}",
        summary["leads"],
        summary["converted"],
        summary["conversion_rate"],
        notes,
        rejected,
        match engine.duplicates() {
            0 => String::new(),
            n => format!(", {n} duplicates"),
        }
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use leadscore_core::ingest::segment::normalize_call;
    use leadscore_rules::{compile, SourceFile};
    use std::sync::Arc;

    /// The document rendered on the thread pool is byte for byte what
    /// `serde_json::to_writer_pretty` writes for the contract document: nested objects and
    /// lists, empty ones, notifications, strings that need escaping, more leads than one
    /// render chunk.
    #[test]
    fn write_json_is_the_pretty_contract_document() {
        let rules = r#"
ruleset "pretty \"doc\""
fit "Senior" +15 when lead.title matches /vp/i
score "Pricing" +10 on page where path starts_with "/pricing"
score "Demo" +40 on "Form Submitted" where form == "demo"
stage mql when score >= 20
stage sql when reached mql and event "Form Submitted" where form == "demo"
conversion "Purchase" on "Order Completed" value revenue
notify sales when reached sql
notify revenue when converted
"#;
        let compiled = compile(&[SourceFile {
            name: "t.rules".into(),
            text: rules.into(),
        }]);
        let program = compiled.program.expect("rules compile");
        let mut engine = Engine::new(&program);
        let mut n = 0;
        let mut send = |engine: &mut Engine<'_>, mut call: Value| {
            n += 1;
            call["messageId"] = Value::from(format!("m{n}"));
            call["timestamp"] = Value::from(format!("2026-01-01T00:{:02}:00Z", n % 60));
            let call = normalize_call(&call, "", &TimePolicy::Required).unwrap();
            engine.process(Arc::new(call));
        };
        // more leads than one round of chunks, more notifications than one chunk
        let leads = ROUND * RENDER_CHUNK + RENDER_CHUNK + 7;
        for i in 0..leads {
            let id = format!("u{i}\t\"é\"");
            send(
                &mut engine,
                serde_json::json!({"type": "page", "userId": id, "properties": {"path": "/pricing"},
                                   "context": {"campaign": {"source": "ads \"q\""}}}),
            );
            if i % 3 != 0 {
                send(
                    &mut engine,
                    serde_json::json!({"type": "identify", "userId": id, "traits": {"title": "VP"}}),
                );
                send(
                    &mut engine,
                    serde_json::json!({"type": "track", "event": "Form Submitted", "userId": id,
                                       "properties": {"form": "demo"}}),
                );
            }
            if i % 5 == 0 {
                send(
                    &mut engine,
                    serde_json::json!({"type": "track", "event": "Order Completed", "userId": id,
                                       "properties": {"revenue": 49.5}}),
                );
            }
        }
        assert_eq!(engine.leads().count(), leads);
        assert!(engine.notifications().len() > RENDER_CHUNK);
        let mut out = Vec::new();
        write_json(&mut out, &engine, 3).unwrap();
        let expected = serde_json::to_string_pretty(&replay_document(&engine, 3)).unwrap() + "\n";
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }
}
