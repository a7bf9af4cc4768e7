//! Diagnostics: every problem found in rules files, with its place, code and help.
//!
//! Rendered for people as
//! ```text
//! rules/acme.rules:3:31: error[E002]: unknown stage `mqll`
//!   3 | stage sql when reached mqll and score >= 100
//!     |                        ^^^^
//!     = help: did you mean `mql`?
//! ```
//! and as JSON for editors. `Diagnostic` also implements `miette::Diagnostic`.

use serde::Serialize;
use std::fmt;

/// A byte range in one source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Span {
    /// Index of the file in the rule set.
    pub file: usize,
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    /// A span in file `file` from `start` to `end`.
    pub fn new(file: usize, start: usize, end: usize) -> Self {
        Span {
            file,
            start,
            end: end.max(start),
        }
    }
}

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The rules cannot be used.
    Error,
    /// The rules work, but something is likely wrong.
    Warning,
}

/// The code of a diagnostic; documented in the language reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// E001: the text does not follow the grammar.
    Syntax,
    /// E002: a stage name that is not declared.
    UnknownStage,
    /// E003: a name declared twice.
    Duplicate,
    /// E004: a bare name outside `where`.
    BareName,
    /// E005: a regular expression that does not compile.
    BadRegex,
    /// E006: `between` with the low bound above the high one.
    BetweenOrder,
    /// E007: a literal string compared with a number (or the other way round).
    TypeMismatch,
    /// E008: a construct used where it is not allowed.
    NotAllowed,
    /// E009: no `ruleset` line, or more than one.
    Ruleset,
    /// E010: a number or duration that cannot be used.
    BadLiteral,
    /// W001: a rule that can never fire.
    NeverFires,
    /// W002: an event name that looks like a misspelling of another.
    MaybeMisspelt,
    /// W003: a notification for a conversion that does not exist.
    UnknownConversion,
}

impl Code {
    /// The code as printed (`E002`).
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Syntax => "E001",
            Code::UnknownStage => "E002",
            Code::Duplicate => "E003",
            Code::BareName => "E004",
            Code::BadRegex => "E005",
            Code::BetweenOrder => "E006",
            Code::TypeMismatch => "E007",
            Code::NotAllowed => "E008",
            Code::Ruleset => "E009",
            Code::BadLiteral => "E010",
            Code::NeverFires => "W001",
            Code::MaybeMisspelt => "W002",
            Code::UnknownConversion => "W003",
        }
    }
}

/// One problem in the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The code.
    pub code: Code,
    /// Lowercase, no trailing period, user input in backticks.
    pub message: String,
    /// Where.
    pub span: Span,
    /// What to do about it.
    pub help: Option<String>,
}

impl Diagnostic {
    /// An error.
    pub fn error(code: Code, message: String, span: Span) -> Self {
        Diagnostic {
            severity: Severity::Error,
            code,
            message,
            span,
            help: None,
        }
    }

    /// A warning.
    pub fn warning(code: Code, message: String, span: Span) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            code,
            message,
            span,
            help: None,
        }
    }

    /// The same diagnostic with help text.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Whether this is an error.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Diagnostic {}

impl miette::Diagnostic for Diagnostic {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.code.as_str()))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        let span = miette::SourceSpan::from(self.span.start..self.span.end);
        Some(Box::new(std::iter::once(miette::LabeledSpan::underline(
            span,
        ))))
    }
}

/// A source file of a rule set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// The name shown in diagnostics (the path as given).
    pub name: String,
    /// The text.
    pub text: String,
}

/// A line and column, both from 1; the column counts characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LineCol {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1, in characters.
    pub column: usize,
}

/// The line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> LineCol {
    let offset = floor_char_boundary(text, offset.min(text.len()));
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = text[line_start..offset].chars().count() + 1;
    LineCol { line, column }
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Renders a diagnostic for a terminal: `file:line:col: error[E001]: message`, the source
/// line with a caret under the span, and the help.
pub fn render(diag: &Diagnostic, files: &[SourceFile]) -> String {
    let kind = match diag.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let Some(file) = files.get(diag.span.file) else {
        return format!("{kind}[{}]: {}\n", diag.code.as_str(), diag.message);
    };
    let text = file.text.as_str();
    let start = line_col(text, diag.span.start);
    let mut out = format!(
        "{}:{}:{}: {kind}[{}]: {}\n",
        file.name,
        start.line,
        start.column,
        diag.code.as_str(),
        diag.message
    );
    let line_start = floor_char_boundary(text, diag.span.start.min(text.len()));
    let line_start = text[..line_start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[line_start..]
        .find('\n')
        .map_or(text.len(), |i| line_start + i);
    let line_text = text[line_start..line_end].trim_end_matches('\r');
    let number = start.line.to_string();
    let pad = " ".repeat(number.len());
    out.push_str(&format!("{number} | {line_text}\n"));
    let span_end = floor_char_boundary(text, diag.span.end.min(line_end).max(diag.span.start));
    let span_chars = text
        .get(floor_char_boundary(text, diag.span.start.min(text.len()))..span_end)
        .map_or(0, |s| s.chars().count())
        .max(1);
    let indent: String = line_text
        .chars()
        .take(start.column - 1)
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    out.push_str(&format!("{pad} | {indent}{}\n", "^".repeat(span_chars)));
    if let Some(help) = &diag.help {
        out.push_str(&format!("{pad} = help: {help}\n"));
    }
    out
}

/// A diagnostic as JSON for editors.
#[derive(Debug, Clone, Serialize)]
pub struct JsonDiagnostic {
    /// The file name.
    pub file: String,
    /// `error` or `warning`.
    pub severity: Severity,
    /// The code (`E002`).
    pub code: &'static str,
    /// The message.
    pub message: String,
    /// Where the span starts.
    pub start: LineCol,
    /// Where the span ends.
    pub end: LineCol,
    /// The help, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

/// Converts a diagnostic for `--format json`.
pub fn to_json(diag: &Diagnostic, files: &[SourceFile]) -> JsonDiagnostic {
    let (name, start, end) = match files.get(diag.span.file) {
        Some(f) => (
            f.name.clone(),
            line_col(&f.text, diag.span.start),
            line_col(&f.text, diag.span.end),
        ),
        None => (
            String::new(),
            LineCol { line: 1, column: 1 },
            LineCol { line: 1, column: 1 },
        ),
    };
    JsonDiagnostic {
        file: name,
        severity: diag.severity,
        code: diag.code.as_str(),
        message: diag.message.clone(),
        start,
        end,
        help: diag.help.clone(),
    }
}

/// The closest candidate to `word`, if one is close enough to be a likely misspelling.
pub fn did_you_mean<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let lower = word.to_lowercase();
    let mut best: Option<(&'a str, f64)> = None;
    for cand in candidates {
        if cand == word {
            continue;
        }
        let score = strsim::jaro_winkler(&lower, &cand.to_lowercase());
        let dist = strsim::levenshtein(&lower, &cand.to_lowercase());
        let close = dist <= 2.max(cand.len() / 4) || score >= 0.88;
        if close && best.is_none_or(|(_, s)| score > s) {
            best = Some((cand, score));
        }
    }
    best.map(|(c, _)| c)
}
