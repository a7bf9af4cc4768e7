//! `leadscore fmt`: one canonical layout for a rules file.
//!
//! The layout:
//! - words and tokens single-spaced (`count(`, `(a or b)`, `["a", "b"]`), points always signed
//!   (`+10`, `-5`);
//! - one item per line when it fits in [`WIDTH`] columns, else continuation lines indented by
//!   4 spaces: a `score` or `conversion` breaks before `where` and `once`/`limit`/`value`, a
//!   condition before its top-level `or` (or `and`), nested conditions 4 spaces deeper;
//! - consecutive `fit`, `score`, `conversion` or `notify` items (no blank line between them;
//!   comment lines do not interrupt) line up: names padded to the same width and, for `fit` and
//!   `score`, the points right-aligned in a column;
//! - runs of blank lines collapse to one; no blank lines at the start or the end of the file.
//!
//! Comments never move relative to the code: a comment on a line of its own stays on a line of
//! its own between the same items, an end-of-line comment stays at the end of the line that
//! holds the item's last word. An item with a comment inside it (between two of its words) keeps
//! its line breaks exactly as written; only the spacing within each of its lines is normalised.
//!
//! Expressions are printed again from the syntax tree with parentheses only where the tree
//! needs them, so formatting never changes what the rules mean (or the tree they parse to).
//! The formatter is pure, and idempotent: formatting formatted text changes nothing.

use crate::diagnostic::{Code, Diagnostic, Span};
use crate::syntax::{self, Cond, Item, ItemKind, Modifier, NotifyOn, Operand, Test};

/// The width the formatter fits items into, in characters.
pub const WIDTH: usize = 120;

/// The indentation of a continuation line.
const INDENT: usize = 4;

/// Formats the text of one rules file. A file with syntax errors is not formatted: its
/// diagnostics come back instead (with spans in file `0`).
pub fn format_source(text: &str) -> Result<String, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let parsed = syntax::parse_file(0, text, &mut diags);
    if diags.iter().any(Diagnostic::is_error) {
        return Err(diags);
    }
    let chunks = syntax::split_items(0, text, &mut Vec::new());
    if chunks.len() != parsed.items.len() {
        return Err(vec![internal(0)]);
    }
    let lines = Lines::new(text);
    let tokens = lex(text, 0);
    let mut blocks: Vec<Block> = Vec::new();
    let mut items: Vec<ItemText> = Vec::new();

    let first_item_line = chunks
        .first()
        .map_or(lines.count(), |c| lines.line_of(c.start));
    push_trivia(&mut blocks, &lines, 0, first_item_line);
    for (chunk, item) in chunks.iter().zip(&parsed.items) {
        let from = tokens.partition_point(|t| t.start < chunk.start);
        let to = tokens.partition_point(|t| t.start < chunk.end);
        let toks: Vec<&Tok> = tokens.get(from..to).unwrap_or(&[]).iter().collect();
        let Some(last_code) = toks.iter().rfind(|t| t.kind != TokKind::Comment) else {
            return Err(vec![internal(chunk.start)]);
        };
        let first_line = lines.line_of(chunk.start);
        let last_line = last_code.line;
        let mut trailing = None;
        let mut verbatim = false;
        for t in toks.iter().filter(|t| t.kind == TokKind::Comment) {
            if t.line < last_line {
                verbatim = true;
            } else if t.line == last_line {
                trailing = Some(comment_text(text, t));
            }
        }
        let code: Vec<&Tok> = toks
            .iter()
            .copied()
            .filter(|t| t.kind != TokKind::Comment && t.line <= last_line)
            .collect();
        let item_toks: Vec<&Tok> = toks
            .iter()
            .copied()
            .filter(|t| t.line <= last_line)
            .collect();
        items.push(ItemText {
            item,
            code: code.iter().map(|t| tok_text(text, t).to_string()).collect(),
            verbatim: verbatim.then(|| verbatim_lines(text, &lines, item, first_line, &item_toks)),
            trailing,
            align: None,
        });
        blocks.push(Block::Item(items.len() - 1));
        let end_line = if chunk.end >= text.len() {
            lines.count()
        } else {
            lines.line_of(chunk.end)
        };
        push_trivia(&mut blocks, &lines, last_line + 1, end_line);
    }

    align_runs(&blocks, &mut items);

    let printer = Printer { text };
    let mut out: Vec<String> = Vec::new();
    for block in &blocks {
        match block {
            Block::Blank => {
                if out.last().is_some_and(|l| !l.is_empty()) {
                    out.push(String::new());
                }
            }
            Block::Comment(line) => out.push(line.clone()),
            Block::Item(i) => {
                let Some(it) = items.get(*i) else {
                    return Err(vec![internal(0)]);
                };
                out.extend(printer.item(it));
            }
        }
    }
    while out.last().is_some_and(String::is_empty) {
        out.pop();
    }
    if out.is_empty() {
        return Ok(String::new());
    }
    let mut result = out.join("\n");
    result.push('\n');
    Ok(result)
}

/// The canonical, comment-free form of one rules file, the text a rule set's version is
/// computed from (SPEC §7): the file formatted without its comments, one item per line with
/// single spacing, the `ruleset` line left out. Reformatting, comments and the ruleset's name
/// do not change it; any change to what the rules mean does.
pub fn canonical_form(text: &str) -> String {
    let mut stripped = String::with_capacity(text.len());
    let mut at = 0;
    for t in lex(text, 0).iter().filter(|t| t.kind == TokKind::Comment) {
        stripped.push_str(text.get(at..t.start).unwrap_or(""));
        at = t.end;
    }
    stripped.push_str(text.get(at..).unwrap_or(""));
    let formatted = format_source(&stripped).unwrap_or(stripped);
    let tokens = lex(&formatted, 0);
    let mut out = String::new();
    for chunk in syntax::split_items(0, &formatted, &mut Vec::new()) {
        let from = tokens.partition_point(|t| t.start < chunk.start);
        let to = tokens.partition_point(|t| t.start < chunk.end);
        let toks: Vec<&str> = tokens
            .get(from..to)
            .unwrap_or(&[])
            .iter()
            .map(|t| tok_text(&formatted, t))
            .collect();
        if toks.first().is_none_or(|&kw| kw == "ruleset") {
            continue;
        }
        out.push_str(&join_tokens(&toks));
        out.push('\n');
    }
    out
}

/// A piece of rule text (an aggregate, a condition) with canonical spacing and no comments:
/// how stored state names an aggregate's window.
pub fn respaced(text: &str) -> String {
    let toks: Vec<&str> = lex(text, 0)
        .iter()
        .filter(|t| t.kind != TokKind::Comment)
        .map(|t| tok_text(text, t))
        .collect();
    join_tokens(&toks)
}

fn internal(at: usize) -> Diagnostic {
    Diagnostic::error(
        Code::Syntax,
        "this file could not be formatted".to_string(),
        Span::new(0, at, at),
    )
}

// ---------------------------------------------------------------------------------------------
// lines, tokens and comments
// ---------------------------------------------------------------------------------------------

/// The lines of a file: their start offsets and texts (without `\n` or `\r`).
struct Lines<'a> {
    starts: Vec<usize>,
    texts: Vec<&'a str>,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        let mut starts = Vec::new();
        let mut texts = Vec::new();
        let mut offset = 0;
        for line in text.split_inclusive('\n') {
            starts.push(offset);
            texts.push(line.trim_end_matches('\n').trim_end_matches('\r'));
            offset += line.len();
        }
        Lines { starts, texts }
    }

    fn count(&self) -> usize {
        self.texts.len()
    }

    /// The index of the line that holds byte `offset`.
    fn line_of(&self, offset: usize) -> usize {
        self.starts
            .partition_point(|s| *s <= offset)
            .saturating_sub(1)
    }

    fn text(&self, line: usize) -> &'a str {
        self.texts.get(line).copied().unwrap_or("")
    }
}

/// A piece of an item or of the text between items.
enum Block {
    /// A blank line (runs collapse to one).
    Blank,
    /// A comment on a line of its own, as written (indentation kept, trailing blanks removed).
    Comment(String),
    /// An item (an index into the items).
    Item(usize),
}

fn push_trivia(blocks: &mut Vec<Block>, lines: &Lines<'_>, from: usize, to: usize) {
    for line in from..to {
        let l = lines.text(line).trim_end();
        if l.trim_start().is_empty() {
            blocks.push(Block::Blank);
        } else {
            blocks.push(Block::Comment(l.to_string()));
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokKind {
    /// A name, keyword, number, duration or points.
    Word,
    /// A quoted string.
    Str,
    /// A regex with its flags.
    Regex,
    /// An operator or a bracket.
    Punct,
    /// `#` to the end of the line.
    Comment,
}

#[derive(Debug, Clone)]
pub(crate) struct Tok {
    pub(crate) kind: TokKind,
    pub(crate) start: usize,
    pub(crate) end: usize,
    line: usize,
}

fn tok_text<'a>(text: &'a str, t: &Tok) -> &'a str {
    text.get(t.start..t.end).unwrap_or("")
}

fn comment_text(text: &str, t: &Tok) -> String {
    tok_text(text, t).trim_end().to_string()
}

/// Splits text into tokens the way the grammar sees them (a `#` inside a string or a regex is
/// part of it). `base` is added to every offset.
pub(crate) fn lex(text: &str, base: usize) -> Vec<Tok> {
    let bytes = text.as_bytes();
    let mut toks = Vec::new();
    let mut i = 0;
    let mut line = 0;
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'.';
    while i < bytes.len() {
        let b = bytes[i];
        let start = i;
        let kind = match b {
            b'\n' => {
                line += 1;
                i += 1;
                continue;
            }
            b' ' | b'\t' | b'\r' => {
                i += 1;
                continue;
            }
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                TokKind::Comment
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' && i + 1 < bytes.len() && bytes[i + 1] != b'\n' {
                        2
                    } else {
                        1
                    };
                }
                if i < bytes.len() && bytes[i] == b'"' {
                    i += 1;
                }
                TokKind::Str
            }
            b'/' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'/' && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' && i + 1 < bytes.len() && bytes[i + 1] != b'\n' {
                        2
                    } else {
                        1
                    };
                }
                if i < bytes.len() && bytes[i] == b'/' {
                    i += 1;
                    if i < bytes.len() && bytes[i] == b'i' {
                        i += 1;
                    }
                }
                TokKind::Regex
            }
            b'+' | b'-' if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                i += 1;
                while i < bytes.len() && is_word(bytes[i]) {
                    i += 1;
                }
                TokKind::Word
            }
            _ if is_word(b) => {
                while i < bytes.len() && is_word(bytes[i]) {
                    i += 1;
                }
                TokKind::Word
            }
            b'=' | b'!' | b'<' | b'>' => {
                i += if bytes.get(i + 1) == Some(&b'=') {
                    2
                } else {
                    1
                };
                TokKind::Punct
            }
            _ => {
                // One character (brackets, commas, anything else), whole UTF-8 sequence.
                i += 1;
                while i < bytes.len() && !text.is_char_boundary(i) {
                    i += 1;
                }
                TokKind::Punct
            }
        };
        toks.push(Tok {
            kind,
            start: base + start,
            end: base + i,
            line,
        });
    }
    toks
}

/// Joins tokens with the canonical spacing: one space, none inside brackets, none before a
/// comma and none between `count`/`sum` and their parenthesis.
fn join_tokens<S: AsRef<str>>(toks: &[S]) -> String {
    let mut out = String::new();
    let mut prev: Option<&str> = None;
    for tok in toks {
        let tok = tok.as_ref();
        if let Some(p) = prev {
            let tight = matches!(p, "(" | "[")
                || matches!(tok, ")" | "]" | ",")
                || (tok == "(" && matches!(p, "count" | "sum"));
            if !tight {
                out.push(' ');
            }
        }
        out.push_str(tok);
        prev = Some(tok);
    }
    out
}

/// Points with their sign (`+10`, `-5`).
fn signed(points: &str) -> String {
    if points.starts_with(['+', '-']) {
        points.to_string()
    } else {
        format!("+{points}")
    }
}

/// Which token of an item holds its points, if it has any.
fn points_index(kind: &ItemKind) -> Option<usize> {
    matches!(kind, ItemKind::Fit { .. } | ItemKind::Score { .. }).then_some(2)
}

/// The lines of an item with a comment inside, as written: each line's tokens re-spaced,
/// continuation lines keep their indentation, blank lines inside the item are dropped.
fn verbatim_lines(
    text: &str,
    lines: &Lines<'_>,
    item: &Item,
    first_line: usize,
    toks: &[&Tok],
) -> Vec<String> {
    let points_at = points_index(&item.kind);
    let mut code_index = 0usize;
    let mut out = Vec::new();
    let last_line = toks.last().map_or(first_line, |t| t.line);
    for line in first_line..=last_line {
        let on_line: Vec<&&Tok> = toks.iter().filter(|t| t.line == line).collect();
        if on_line.is_empty() {
            continue;
        }
        let mut words: Vec<String> = Vec::new();
        let mut comment = None;
        for t in on_line {
            if t.kind == TokKind::Comment {
                comment = Some(comment_text(text, t));
                continue;
            }
            let word = tok_text(text, t);
            if Some(code_index) == points_at {
                words.push(signed(word));
            } else {
                words.push(word.to_string());
            }
            code_index += 1;
        }
        let raw = lines.text(line);
        let indent = if line == first_line {
            ""
        } else {
            &raw[..raw.len() - raw.trim_start().len()]
        };
        let mut l = format!("{indent}{}", join_tokens(&words));
        if let Some(c) = comment {
            if !words.is_empty() {
                l.push_str("  ");
            }
            l.push_str(&c);
        }
        out.push(l);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// alignment
// ---------------------------------------------------------------------------------------------

/// One item and what the printer needs besides its syntax tree.
struct ItemText<'a> {
    item: &'a Item,
    /// The item's tokens as written, comments left out.
    code: Vec<String>,
    /// The item's lines when it has a comment inside (kept as written).
    verbatim: Option<Vec<String>>,
    /// The comment at the end of the item's last line.
    trailing: Option<String>,
    /// Column widths shared with the neighbouring items of the same kind.
    align: Option<Align>,
}

#[derive(Debug, Clone, Copy)]
struct Align {
    /// The width names are padded to.
    name: usize,
    /// The width points are right-aligned in (`fit` and `score`).
    points: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AlignKind {
    Fit,
    Score,
    Conversion,
    Notify,
}

fn align_kind(it: &ItemText<'_>) -> Option<AlignKind> {
    if it.verbatim.is_some() {
        return None;
    }
    match it.item.kind {
        ItemKind::Fit { .. } => Some(AlignKind::Fit),
        ItemKind::Score { .. } => Some(AlignKind::Score),
        ItemKind::Conversion { .. } => Some(AlignKind::Conversion),
        ItemKind::Notify { .. } => Some(AlignKind::Notify),
        _ => None,
    }
}

/// Lines up runs of items of one kind: consecutive, with comment lines but no blank line
/// between them.
fn align_runs(blocks: &[Block], items: &mut [ItemText<'_>]) {
    let mut run: Vec<usize> = Vec::new();
    let mut kind: Option<AlignKind> = None;
    for block in blocks {
        match block {
            Block::Blank => {
                set_align(&run, items);
                run.clear();
                kind = None;
            }
            Block::Comment(_) => {}
            Block::Item(i) => {
                let k = items.get(*i).and_then(align_kind);
                if k.is_none() || k != kind {
                    set_align(&run, items);
                    run.clear();
                }
                kind = k;
                if k.is_some() {
                    run.push(*i);
                }
            }
        }
    }
    set_align(&run, items);
}

fn set_align(run: &[usize], items: &mut [ItemText<'_>]) {
    if run.len() < 2 {
        return;
    }
    let width = |i: &usize, n: usize| {
        items
            .get(*i)
            .and_then(|it| it.code.get(n))
            .map_or(0, |s| s.chars().count())
    };
    let name = run.iter().map(|i| width(i, 1)).max().unwrap_or(0);
    let points = run
        .iter()
        .map(|i| {
            items
                .get(*i)
                .and_then(|it| it.code.get(2))
                .map_or(0, |s| signed(s).chars().count())
        })
        .max()
        .unwrap_or(0)
        .max(4);
    for i in run {
        if let Some(it) = items.get_mut(*i) {
            it.align = Some(Align { name, points });
        }
    }
}

// ---------------------------------------------------------------------------------------------
// documents: a small Wadler-style pretty printer
// ---------------------------------------------------------------------------------------------

/// A layout document.
enum Doc {
    /// Text without line breaks.
    Text(String),
    /// A space, or a line break when the enclosing group does not fit.
    Line,
    /// Line breaks inside are indented this much more.
    Nest(usize, Box<Doc>),
    /// Printed on one line when it fits, else its own line breaks all break.
    Group(Box<Doc>),
    /// One after the other.
    Cat(Vec<Doc>),
}

fn text(s: impl Into<String>) -> Doc {
    Doc::Text(s.into())
}

fn nest(d: Doc) -> Doc {
    Doc::Nest(INDENT, Box::new(d))
}

fn group(d: Doc) -> Doc {
    Doc::Group(Box::new(d))
}

/// Lays a document out in `width` columns.
fn layout(doc: &Doc, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    let mut col = 0usize;
    let mut stack: Vec<(usize, bool, &Doc)> = vec![(0, false, doc)];
    while let Some((indent, flat, d)) = stack.pop() {
        match d {
            Doc::Text(s) => {
                if let Some(l) = lines.last_mut() {
                    l.push_str(s);
                }
                col += s.chars().count();
            }
            Doc::Line => {
                if flat {
                    if let Some(l) = lines.last_mut() {
                        l.push(' ');
                    }
                    col += 1;
                } else {
                    lines.push(" ".repeat(indent));
                    col = indent;
                }
            }
            Doc::Nest(n, inner) => stack.push((indent + n, flat, inner)),
            Doc::Cat(parts) => {
                for p in parts.iter().rev() {
                    stack.push((indent, flat, p));
                }
            }
            Doc::Group(inner) => {
                let room = width as isize - col as isize;
                let flat = flat || fits(room, inner, &stack);
                stack.push((indent, flat, inner));
            }
        }
    }
    lines
}

/// Whether `doc`, flat, and what follows it up to the next line break fit in `room` columns.
fn fits(mut room: isize, doc: &Doc, rest: &[(usize, bool, &Doc)]) -> bool {
    let mut work: Vec<(bool, &Doc)> = vec![(true, doc)];
    let mut rest_at = rest.len();
    loop {
        if room < 0 {
            return false;
        }
        let (flat, d) = match work.pop() {
            Some(w) => w,
            None => {
                if rest_at == 0 {
                    return true;
                }
                rest_at -= 1;
                let (_, flat, d) = rest[rest_at];
                (flat, d)
            }
        };
        match d {
            Doc::Text(s) => room -= s.chars().count() as isize,
            Doc::Line => {
                if flat {
                    room -= 1;
                } else {
                    return true;
                }
            }
            Doc::Nest(_, inner) | Doc::Group(inner) => work.push((flat, inner)),
            Doc::Cat(parts) => {
                for p in parts.iter().rev() {
                    work.push((flat, p));
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// printing items
// ---------------------------------------------------------------------------------------------

struct Printer<'a> {
    text: &'a str,
}

impl Printer<'_> {
    fn src(&self, span: Span) -> &str {
        self.text.get(span.start..span.end).unwrap_or("")
    }

    /// The source text of a span with canonical spacing (for literals: lists).
    fn respaced(&self, span: Span) -> String {
        let src = self.src(span);
        let toks: Vec<&str> = lex(src, 0).iter().map(|t| tok_text(src, t)).collect();
        join_tokens(&toks)
    }

    fn item(&self, it: &ItemText<'_>) -> Vec<String> {
        let mut lines = match &it.verbatim {
            Some(lines) => lines.clone(),
            None => layout(&self.item_doc(it), WIDTH)
                .into_iter()
                .map(|l| l.trim_end().to_string())
                .collect(),
        };
        if it.verbatim.is_none() {
            if let (Some(comment), Some(last)) = (&it.trailing, lines.last_mut()) {
                last.push_str("  ");
                last.push_str(comment);
            }
        }
        lines
    }

    /// The keyword and name of an item, the name padded to the run's width.
    fn head(&self, it: &ItemText<'_>) -> String {
        let kw = it.code.first().map_or("", String::as_str);
        let name = it.code.get(1).map_or("", String::as_str);
        let mut out = format!("{kw} {name}");
        if let Some(align) = it.align {
            let pad = align.name.saturating_sub(name.chars().count());
            out.push_str(&" ".repeat(pad));
        }
        out
    }

    /// The keyword, name and points of a `fit` or `score` rule.
    fn head_with_points(&self, it: &ItemText<'_>) -> String {
        let points = signed(it.code.get(2).map_or("", String::as_str));
        let head = self.head(it);
        match it.align {
            Some(align) => {
                let pad = align.points.saturating_sub(points.chars().count());
                format!("{head}  {}{points}", " ".repeat(pad))
            }
            None => format!("{head} {points}"),
        }
    }

    fn item_doc(&self, it: &ItemText<'_>) -> Doc {
        match &it.item.kind {
            ItemKind::Ruleset(_) => text(join_tokens(&it.code)),
            ItemKind::Fit { cond, .. } => Doc::Cat(vec![
                text(format!("{} when ", self.head_with_points(it))),
                nest(self.cond(cond)),
            ]),
            ItemKind::Score {
                pattern,
                filter,
                modifier,
                ..
            } => {
                let mut parts = vec![text(format!(
                    "{} on {}",
                    self.head_with_points(it),
                    self.src(pattern.span)
                ))];
                if let Some(f) = filter {
                    parts.push(self.clause("where ", nest(self.cond(f))));
                }
                match modifier {
                    Some(Modifier::Once(_)) => parts.push(self.clause("once", text(""))),
                    Some(Modifier::Limit {
                        count_span, per, ..
                    }) => parts.push(self.clause(
                        "limit ",
                        text(format!(
                            "{} per {}",
                            self.src(*count_span),
                            self.src(per.span)
                        )),
                    )),
                    None => {}
                }
                group(Doc::Cat(parts))
            }
            ItemKind::Decay(d) => text(format!("decay engagement half_life {}", self.src(d.span))),
            ItemKind::Cap(_, span) => text(format!("cap engagement at {}", self.src(*span))),
            ItemKind::Floor(_, span) => text(format!("floor engagement at {}", self.src(*span))),
            ItemKind::Stage { cond, .. } => Doc::Cat(vec![
                text(format!("{} when ", self.head(it))),
                nest(self.cond(cond)),
            ]),
            ItemKind::Conversion {
                pattern,
                filter,
                value,
                ..
            } => {
                let mut parts = vec![text(format!(
                    "{} on {}",
                    self.head(it),
                    self.src(pattern.span)
                ))];
                if let Some(f) = filter {
                    parts.push(self.clause("where ", nest(self.cond(f))));
                }
                if let Some(v) = value {
                    parts.push(self.clause("value ", text(v.dotted())));
                }
                group(Doc::Cat(parts))
            }
            ItemKind::Notify { on, .. } => {
                let what = match on {
                    NotifyOn::Reached(stage) => format!("reached {}", self.src(stage.span)),
                    NotifyOn::Converted(Some(name)) => {
                        format!("converted {}", self.src(name.span))
                    }
                    NotifyOn::Converted(None) => "converted".to_string(),
                };
                text(format!("{} when {what}", self.head(it)))
            }
        }
    }

    /// A clause of a `score` or `conversion`: on the item's line, or on a line of its own.
    fn clause(&self, keyword: &str, body: Doc) -> Doc {
        nest(Doc::Cat(vec![Doc::Line, text(keyword), body]))
    }

    fn paren(&self, d: Doc) -> Doc {
        Doc::Cat(vec![text("("), nest(d), text(")")])
    }

    /// A condition where any condition may stand (no parentheses needed around it).
    fn cond(&self, c: &Cond) -> Doc {
        match c {
            Cond::Or(parts) => self.chain("or ", parts, |p| match p {
                Cond::Or(_) => self.paren(self.cond(p)),
                Cond::And(_) => nest(self.cond(p)),
                _ => self.cond(p),
            }),
            Cond::And(parts) => self.chain("and ", parts, |p| match p {
                Cond::Or(_) | Cond::And(_) => self.paren(self.cond(p)),
                _ => self.cond(p),
            }),
            // `not (a == b)`, as the language reference writes it: `not` reads as applying to
            // the whole comparison. `not lead.vip`, `not reached mql` need no parentheses.
            Cond::Not(inner) => Doc::Cat(vec![
                text("not "),
                match **inner {
                    Cond::Or(_) | Cond::And(_) | Cond::Compare { test: Some(_), .. } => {
                        self.paren(self.cond(inner))
                    }
                    _ => self.cond(inner),
                },
            ]),
            // A lone `event` or `reached` (a property of that name, tested for `true`) keeps
            // its parentheses: bare, it would swallow the next word as an event or a stage.
            Cond::Compare {
                left: Operand::Path(path),
                test: None,
                ..
            } if path.segments.len() == 1
                && path
                    .segments
                    .first()
                    .is_some_and(|s| s == "event" || s == "reached") =>
            {
                self.paren(text(path.dotted()))
            }
            Cond::Compare { left, test, .. } => {
                let mut parts = vec![self.operand(left)];
                match test {
                    None => {}
                    Some(Test::Exists) => parts.push(text(" exists")),
                    Some(Test::In(list)) => {
                        parts.push(text(" in "));
                        parts.push(self.operand(list));
                    }
                    Some(Test::Between(low, high)) => {
                        parts.push(text(" between "));
                        parts.push(self.operand(low));
                        parts.push(text(" and "));
                        parts.push(self.operand(high));
                    }
                    Some(Test::Cmp(op, right)) => {
                        parts.push(text(format!(" {} ", op.as_str())));
                        parts.push(self.operand(right));
                    }
                }
                Doc::Cat(parts)
            }
            Cond::Event {
                pattern, filter, ..
            } => {
                let mut parts = vec![text(format!("event {}", self.src(pattern.span)))];
                if let Some(f) = filter {
                    parts.push(text(" where "));
                    // `where` inside a condition takes one comparison, or parentheses.
                    parts.push(match **f {
                        Cond::Compare { .. } => self.cond(f),
                        _ => self.paren(self.cond(f)),
                    });
                }
                Doc::Cat(parts)
            }
            Cond::Reached(stage) => text(format!("reached {}", self.src(stage.span))),
        }
    }

    fn chain<'c>(&self, op: &str, parts: &'c [Cond], part: impl Fn(&'c Cond) -> Doc) -> Doc {
        let mut out = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                out.push(Doc::Line);
                out.push(text(op));
            }
            out.push(part(p));
        }
        group(Doc::Cat(out))
    }

    fn operand(&self, o: &Operand) -> Doc {
        match o {
            Operand::Literal(_, span) => text(self.respaced(*span)),
            Operand::Path(p) => text(p.dotted()),
            Operand::Count {
                pattern,
                filter,
                within,
                ..
            } => self.aggregate(
                format!("count({}", self.src(pattern.span)),
                filter.as_deref(),
                self.src(within.span),
            ),
            Operand::Sum {
                property,
                pattern,
                filter,
                within,
                ..
            } => self.aggregate(
                format!("sum({} of {}", property.dotted(), self.src(pattern.span)),
                filter.as_deref(),
                self.src(within.span),
            ),
        }
    }

    fn aggregate(&self, head: String, filter: Option<&Cond>, within: &str) -> Doc {
        let mut parts = vec![text(head)];
        if let Some(f) = filter {
            parts.push(text(" where "));
            parts.push(nest(self.cond(f)));
        }
        parts.push(text(format!(") within {within}")));
        Doc::Cat(parts)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn lexes_comments_outside_strings_and_regexes() {
        let src = "fit \"a#b\" +1 when lead.x matches /#x\\/y/i # c\n";
        let toks = lex(src, 0);
        let kinds: Vec<TokKind> = toks.iter().map(|t| t.kind).collect();
        assert_eq!(
            kinds,
            vec![
                TokKind::Word,
                TokKind::Str,
                TokKind::Word,
                TokKind::Word,
                TokKind::Word,
                TokKind::Word,
                TokKind::Regex,
                TokKind::Comment
            ]
        );
    }

    #[test]
    fn joins_tokens_canonically() {
        assert_eq!(
            join_tokens(&["count", "(", "x", ")", "in", "[", "\"a\"", ",", "\"b\"", "]"]),
            "count(x) in [\"a\", \"b\"]"
        );
    }
}
