//! Rule tests (`leadscore test`): `NAME.test` files kept beside the `.rules` files, written
//! by the people who write the rules. A test gives a lead a profile, sends it events and
//! states what the scores, stages, conversions and notifications must be:
//!
//! ```text
//! test "VP at a mid-size company who asks for a demo becomes SQL"
//!   given lead.title = "VP Marketing", lead.company.employees = 120
//!   at 2026-01-01T09:00:00Z page path = "/pricing"
//!   expect engagement = 10, stage = none
//!   at +1d "Form Submitted" form = "demo"
//!   expect fit = 25, engagement = 50, score = 75, stage = "sql"
//!   expect reached mql at 2026-01-02T09:00:00Z
//!   expect notified sales sql
//! ```
//!
//! An `expect` line is checked right after the event line above it (before any event: on the
//! `given` profile). The format is described in the language reference, "Testing rules".
//! Parsing is [`parse`], checking names against a program [`check`], running [`run`].

use leadscore_core::output::round2;
use leadscore_core::output::score_value;
use leadscore_rules::diagnostic::did_you_mean;
use leadscore_rules::eval::{self, compute_fit, LeadState, Transition};
use leadscore_rules::program::{Matcher, Pred};
use leadscore_rules::time::{format_rfc3339, parse_rfc3339, Micros, SECOND};
use leadscore_rules::{CallKind, Event, Program, Properties};
use serde_json::{Map, Value};
use std::fmt;
use std::path::{Path, PathBuf};

/// A problem in a test file: `file:line:col: error: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestError {
    /// The file as given.
    pub file: String,
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1, in characters.
    pub col: usize,
    /// What is wrong (lowercase, no trailing period).
    pub message: String,
}

impl fmt::Display for TestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: error: {}",
            self.file, self.line, self.col, self.message
        )
    }
}

/// One of the three numbers of a lead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// fit + engagement.
    Score,
    /// fit.
    Fit,
    /// engagement.
    Engagement,
}

impl Metric {
    fn as_str(self) -> &'static str {
        match self {
            Metric::Score => "score",
            Metric::Fit => "fit",
            Metric::Engagement => "engagement",
        }
    }
}

/// What an `expect` states.
#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    /// `score = 75` (compared to 2 digits after the point).
    Number {
        /// Which number.
        metric: Metric,
        /// Its expected value.
        value: f64,
    },
    /// `stage = "sql"`, `stage = none`.
    Stage(Option<String>),
    /// `reached mql [at TIME]`.
    Reached {
        /// The stage.
        stage: String,
        /// When, if stated.
        at: Option<Micros>,
    },
    /// `not reached sql`.
    NotReached(String),
    /// `converted "Purchase" [count N] [value V]`.
    Converted {
        /// The conversion.
        name: String,
        /// How many times, if stated.
        count: Option<u64>,
        /// The summed value, if stated.
        value: Option<f64>,
    },
    /// `not converted "Signup"`.
    NotConverted(String),
    /// `notified TARGET [STAGE | CONVERSION]`.
    Notified {
        /// The target.
        target: String,
        /// The stage or conversion it was told about, if stated.
        about: Option<String>,
    },
    /// `not notified TARGET [STAGE | CONVERSION]`.
    NotNotified {
        /// The target.
        target: String,
        /// The stage or conversion, if stated.
        about: Option<String>,
    },
    /// `no notifications`.
    NoNotifications,
}

/// One expectation and where it is written.
#[derive(Debug, Clone, PartialEq)]
pub struct Expectation {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub col: usize,
    /// What it states.
    pub expect: Expect,
}

/// A step of a test, in the order written.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// `at TIME EVENT [key = value ...]`: a call for the lead.
    Event {
        /// Line, from 1.
        line: usize,
        /// Column of the event's name, from 1.
        col: usize,
        /// The event (its time resolved).
        event: Event,
    },
    /// `at TIME tick`: time passes with no event (decay, then the stages).
    Tick {
        /// Line, from 1.
        line: usize,
        /// When.
        at: Micros,
    },
    /// `expect ...`: checked at this point.
    Expect(Vec<Expectation>),
}

/// One `test "NAME"` block.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleTest {
    /// Its name.
    pub name: String,
    /// The line of `test`.
    pub line: usize,
    /// The profile the lead starts with (`given`): paths without `lead.`, and values.
    pub given: Vec<(Vec<String>, Value)>,
    /// Events, ticks and expectations.
    pub steps: Vec<Step>,
}

/// A parsed test file.
#[derive(Debug, Clone, PartialEq)]
pub struct TestFile {
    /// The file as given.
    pub file: String,
    /// Its tests, in order.
    pub tests: Vec<RuleTest>,
}

/// A failed expectation: `file:line: expected X, got Y`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The line of the expectation.
    pub line: usize,
    /// What was expected.
    pub expected: String,
    /// What the rules gave.
    pub got: String,
}

/// The result of one test.
#[derive(Debug, Clone, PartialEq)]
pub struct TestResult {
    /// The test's name.
    pub name: String,
    /// The line of `test`.
    pub line: usize,
    /// Every failed expectation (empty: the test passed).
    pub failures: Vec<Failure>,
}

impl TestResult {
    /// Whether every expectation held.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

// ---------------------------------------------------------------------------------------------
// parsing
// ---------------------------------------------------------------------------------------------

/// A cursor over one line.
struct Cursor<'t> {
    text: &'t str,
    pos: usize,
    line: usize,
}

type Res<T> = Result<T, (usize, String)>;

impl<'t> Cursor<'t> {
    fn col(&self, pos: usize) -> usize {
        self.text[..pos.min(self.text.len())].chars().count() + 1
    }

    fn skip_ws(&mut self) {
        while let Some(c) = self.text[self.pos..].chars().next() {
            if c == ' ' || c == '\t' {
                self.pos += c.len_utf8();
            } else {
                break;
            }
        }
    }

    fn at_end(&mut self) -> bool {
        self.skip_ws();
        self.pos >= self.text.len()
    }

    fn peek(&mut self) -> Option<char> {
        self.skip_ws();
        self.text[self.pos..].chars().next()
    }

    fn err<T>(&self, pos: usize, message: impl Into<String>) -> Res<T> {
        Err((pos, message.into()))
    }

    /// A word: letters, digits and `_ . : + -` (names, paths, times, numbers, durations).
    fn word(&mut self) -> Option<(usize, &'t str)> {
        self.skip_ws();
        let start = self.pos;
        let len = self.text[start..]
            .char_indices()
            .find(|(_, c)| !(c.is_alphanumeric() || "_.:+-".contains(*c)))
            .map_or(self.text.len() - start, |(i, _)| i);
        if len == 0 {
            return None;
        }
        self.pos += len;
        Some((start, &self.text[start..start + len]))
    }

    fn peek_word(&mut self) -> Option<&'t str> {
        let save = self.pos;
        let w = self.word().map(|(_, w)| w);
        self.pos = save;
        w
    }

    fn keyword(&mut self, kw: &str) -> bool {
        if self.peek_word() == Some(kw) {
            self.word();
            true
        } else {
            false
        }
    }

    fn punct(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    /// A quoted string (JSON escapes).
    fn string(&mut self) -> Res<Option<String>> {
        if self.peek() != Some('"') {
            return Ok(None);
        }
        let start = self.pos;
        match self.json() {
            Ok(Value::String(s)) => Ok(Some(s)),
            _ => self.err(
                start,
                "unterminated string: a name is written in double quotes",
            ),
        }
    }

    /// A JSON value.
    fn json(&mut self) -> Res<Value> {
        self.skip_ws();
        let start = self.pos;
        let rest = &self.text[start..];
        let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
        match stream.next() {
            Some(Ok(v)) => {
                self.pos = start + stream.byte_offset();
                Ok(v)
            }
            _ => {
                let shown: String = rest
                    .chars()
                    .take_while(|c| !c.is_whitespace() && *c != ',')
                    .collect();
                if shown.is_empty() {
                    return self.err(
                        start,
                        "expected a value (JSON: `\"text\"`, `120`, `true`, `[\"a\"]`)",
                    );
                }
                self.err(
                    start,
                    format!("`{shown}` is not a value: write text in double quotes (`\"{shown}\"`), numbers as `120`, or `true`, `false`, `null`"),
                )
            }
        }
    }

    /// A name: a quoted string or a word.
    fn name(&mut self, what: &str) -> Res<(usize, String)> {
        self.skip_ws();
        let start = self.pos;
        if let Some(s) = self.string()? {
            return Ok((start, s));
        }
        match self.word() {
            Some((p, w)) => Ok((p, w.to_string())),
            None => self.err(start, format!("expected {what}")),
        }
    }

    fn number(&mut self, what: &str) -> Res<f64> {
        self.skip_ws();
        let start = self.pos;
        match self.word() {
            Some((_, w)) => match w.parse::<f64>() {
                Ok(n) if n.is_finite() => Ok(n),
                _ => self.err(start, format!("expected {what}, found `{w}`")),
            },
            None => self.err(start, format!("expected {what}")),
        }
    }

    fn expect_end(&mut self) -> Res<()> {
        if self.at_end() {
            return Ok(());
        }
        let rest: String = self.text[self.pos..].trim_end().to_string();
        self.err(self.pos, format!("unexpected `{rest}`"))
    }
}

/// Cuts a `#` comment (outside strings) from a line.
fn strip_comment(line: &str) -> &str {
    let mut in_str = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        if in_str {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
            }
        } else if c == '"' {
            in_str = true;
        } else if c == '#' {
            return &line[..i];
        }
    }
    line
}

/// Parses a duration: a whole number and `s`, `m`, `h`, `d` or `w`.
fn duration(text: &str) -> Option<Micros> {
    let unit = text.chars().last()?;
    let n: i64 = text[..text.len() - unit.len_utf8()].parse().ok()?;
    let secs = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        'w' => 604_800,
        _ => return None,
    };
    n.checked_mul(secs)?.checked_mul(SECOND)
}

/// A dotted path (`lead.company.employees`, `product.sku`) split into its parts.
fn split_path(cur: &Cursor<'_>, start: usize, text: &str) -> Res<Vec<String>> {
    let parts: Vec<String> = text.split('.').map(str::to_string).collect();
    let ok = parts.iter().all(|p| {
        !p.is_empty()
            && p.chars().all(|c| c.is_alphanumeric() || c == '_')
            && !p.starts_with(|c: char| c.is_ascii_digit())
    });
    if ok {
        Ok(parts)
    } else {
        cur.err(
            start,
            format!("`{text}` is not a name: use letters, digits and `_`, joined by dots"),
        )
    }
}

/// `key = value` pairs, separated by spaces or commas, to the end of the line.
fn pairs(cur: &mut Cursor<'_>, strip_lead: bool) -> Res<Vec<(Vec<String>, Value)>> {
    let mut out = Vec::new();
    loop {
        if cur.at_end() {
            return Ok(out);
        }
        let start = cur.pos;
        let Some((_, key)) = cur.word() else {
            return cur.err(start, "expected `name = value`");
        };
        let mut path = split_path(cur, start, key)?;
        if strip_lead && path.len() > 1 && path[0] == "lead" {
            path.remove(0);
        }
        if !cur.punct('=') {
            return cur.err(cur.pos, format!("expected `=` after `{key}`"));
        }
        let value = cur.json()?;
        out.push((path, value));
        cur.punct(',');
    }
}

/// Inserts a value at a dotted path, making objects on the way.
fn insert_path(properties: &mut Properties, path: &[String], value: Value) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        properties.insert(first.clone(), value);
        return;
    }
    let slot = properties.get_or_insert_with(first, || Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    if let Value::Object(map) = slot {
        insert_map_path(map, rest, value);
    }
}

fn insert_map_path(map: &mut Map<String, Value>, path: &[String], value: Value) {
    let Some((last, init)) = path.split_last() else {
        return;
    };
    let mut cur = map;
    for seg in init {
        let slot = cur
            .entry(seg.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        let Value::Object(next) = slot else { return };
        cur = next;
    }
    cur.insert(last.clone(), value);
}

fn parse_at(cur: &mut Cursor<'_>, prev: Option<Micros>) -> Res<(usize, Micros)> {
    cur.skip_ws();
    let start = cur.pos;
    let Some((_, w)) = cur.word() else {
        return cur.err(
            start,
            "expected a time after `at`: `2026-01-01T09:00:00Z` or `+2d`",
        );
    };
    if let Some(rel) = w.strip_prefix('+') {
        let Some(d) = duration(rel) else {
            return cur.err(
                start,
                format!("`{w}` is not a duration: write `+30m`, `+12h`, `+7d`"),
            );
        };
        let Some(prev) = prev else {
            return cur.err(start, format!("`{w}` is relative to the event before, and there is none: give the first event a full time (`2026-01-01T09:00:00Z`)"));
        };
        return Ok((start, prev + d));
    }
    match parse_rfc3339(w) {
        Some(t) => Ok((start, t)),
        None => cur.err(
            start,
            format!("`{w}` is not an RFC 3339 time (e.g. `2026-01-01T09:00:00Z`) or `+DURATION`"),
        ),
    }
}

fn parse_event(cur: &mut Cursor<'_>, line: usize, time: Micros) -> Res<Step> {
    cur.skip_ws();
    let start = cur.pos;
    let (kind, name) = if let Some(s) = cur.string()? {
        (CallKind::Track, s)
    } else {
        match cur.word() {
            Some((_, "page")) => (CallKind::Page, String::new()),
            Some((_, "screen")) => (CallKind::Screen, String::new()),
            Some((_, "identify")) => (CallKind::Identify, String::new()),
            Some((_, "group")) => (CallKind::Group, String::new()),
            Some((_, "tick")) => {
                cur.expect_end()?;
                return Ok(Step::Tick { line, at: time });
            }
            Some((_, w)) if w.chars().all(|c| c.is_alphanumeric() || c == '_') => {
                (CallKind::Track, w.to_string())
            }
            Some((_, w)) => {
                return cur.err(start, format!("`{w}` is not an event: write `page`, `screen`, `identify`, `group`, `tick` or a quoted track event name"));
            }
            None => {
                return cur.err(start, "expected an event after the time: `page`, `screen`, `identify`, `group`, `tick` or a quoted track event name");
            }
        }
    };
    let mut properties = Properties::new();
    for (path, value) in pairs(cur, false)? {
        insert_path(&mut properties, &path, value);
    }
    Ok(Step::Event {
        line,
        col: cur.col(start),
        event: Event {
            kind,
            name: name.into(),
            time,
            properties,
            source: None,
        },
    })
}

fn parse_expect_one(cur: &mut Cursor<'_>) -> Res<Expect> {
    cur.skip_ws();
    let start = cur.pos;
    let Some((_, w)) = cur.word() else {
        return cur.err(start, "expected an expectation: `score = N`, `stage = \"sql\"`, `reached STAGE`, `converted NAME`, `notified TARGET`, `no notifications`");
    };
    let eq = |cur: &mut Cursor<'_>| -> Res<()> {
        if cur.punct('=') {
            cur.punct('=');
            Ok(())
        } else {
            cur.err(cur.pos, format!("expected `=` after `{w}`"))
        }
    };
    match w {
        "score" | "fit" | "engagement" => {
            eq(cur)?;
            let metric = match w {
                "score" => Metric::Score,
                "fit" => Metric::Fit,
                _ => Metric::Engagement,
            };
            let value = cur.number("a number")?;
            Ok(Expect::Number { metric, value })
        }
        "stage" => {
            eq(cur)?;
            if cur.keyword("none") {
                return Ok(Expect::Stage(None));
            }
            let (_, name) = cur.name("a stage name or `none`")?;
            Ok(Expect::Stage(Some(name)))
        }
        "reached" => {
            let (_, stage) = cur.name("a stage name")?;
            let at = if cur.keyword("at") {
                Some(parse_at(cur, None)?.1)
            } else {
                None
            };
            Ok(Expect::Reached { stage, at })
        }
        "converted" => {
            let (_, name) = cur.name("a conversion name")?;
            let mut count = None;
            let mut value = None;
            loop {
                if cur.keyword("count") {
                    let p = cur.pos;
                    let n = cur.number("a count")?;
                    if n < 0.0 || n.fract() != 0.0 {
                        return cur.err(p, "a count is a whole number");
                    }
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                    {
                        count = Some(n as u64);
                    }
                } else if cur.keyword("value") {
                    value = Some(cur.number("a value")?);
                } else {
                    break;
                }
            }
            Ok(Expect::Converted { name, count, value })
        }
        "notified" => {
            let (target, about) = notified_args(cur)?;
            Ok(Expect::Notified { target, about })
        }
        "not" => {
            let p = cur.pos;
            match cur.word() {
                Some((_, "reached")) => Ok(Expect::NotReached(cur.name("a stage name")?.1)),
                Some((_, "converted")) => {
                    Ok(Expect::NotConverted(cur.name("a conversion name")?.1))
                }
                Some((_, "notified")) => {
                    let (target, about) = notified_args(cur)?;
                    Ok(Expect::NotNotified { target, about })
                }
                _ => cur.err(p, "expected `reached`, `converted` or `notified` after `not`"),
            }
        }
        "no" => {
            if cur.keyword("notifications") {
                Ok(Expect::NoNotifications)
            } else {
                cur.err(cur.pos, "expected `notifications` after `no`")
            }
        }
        other => cur.err(
            start,
            format!("unknown expectation `{other}`: use `score`, `fit`, `engagement`, `stage`, `reached`, `not reached`, `converted`, `not converted`, `notified`, `not notified` or `no notifications`"),
        ),
    }
}

fn notified_args(cur: &mut Cursor<'_>) -> Res<(String, Option<String>)> {
    let (_, target) = cur.name("a notify target")?;
    let about = if cur.at_end() || cur.peek() == Some(',') {
        None
    } else {
        Some(cur.name("a stage or conversion name")?.1)
    };
    Ok((target, about))
}

/// Parses a test file. Every error is reported, not only the first.
pub fn parse(file: &str, text: &str) -> Result<TestFile, Vec<TestError>> {
    let mut tests: Vec<RuleTest> = Vec::new();
    let mut errors = Vec::new();
    let mut prev_time: Option<Micros> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let body = strip_comment(raw);
        if body.trim().is_empty() {
            continue;
        }
        let mut cur = Cursor {
            text: body,
            pos: 0,
            line,
        };
        let result = parse_line(&mut cur, &mut tests, &mut prev_time);
        if let Err((pos, message)) = result {
            errors.push(TestError {
                file: file.to_string(),
                line: cur.line,
                col: cur.col(pos),
                message,
            });
        }
    }
    let checked = if errors.is_empty() {
        tests.as_slice()
    } else {
        &[]
    };
    for test in checked {
        if !test.steps.iter().any(|s| matches!(s, Step::Expect(_))) {
            errors.push(TestError {
                file: file.to_string(),
                line: test.line,
                col: 1,
                message: format!(
                    "test `{}` checks nothing: add an `expect` line (for example `expect score = 10`)",
                    test.name
                ),
            });
        }
    }
    if tests.is_empty() && errors.is_empty() {
        errors.push(TestError {
            file: file.to_string(),
            line: 1,
            col: 1,
            message: "no tests in this file: a test starts with `test \"NAME\"`".into(),
        });
    }
    if errors.is_empty() {
        Ok(TestFile {
            file: file.to_string(),
            tests,
        })
    } else {
        Err(errors)
    }
}

fn parse_line(
    cur: &mut Cursor<'_>,
    tests: &mut Vec<RuleTest>,
    prev_time: &mut Option<Micros>,
) -> Res<()> {
    let line = cur.line;
    cur.skip_ws();
    let start = cur.pos;
    let Some((_, kw)) = cur.word() else {
        return cur.err(start, "expected `test`, `given`, `at` or `expect`");
    };
    if kw == "test" {
        let (_, name) = match cur.string()? {
            Some(s) => (start, s),
            None => {
                return cur.err(
                    cur.pos,
                    "a test's name is written in double quotes: `test \"NAME\"`",
                )
            }
        };
        cur.expect_end()?;
        if let Some(dup) = tests.iter().find(|t| t.name == name) {
            return cur.err(
                start,
                format!("a test named `{name}` is already at line {}", dup.line),
            );
        }
        tests.push(RuleTest {
            name,
            line,
            given: Vec::new(),
            steps: Vec::new(),
        });
        *prev_time = None;
        return Ok(());
    }
    let Some(test) = tests.last_mut() else {
        return cur.err(
            start,
            format!("`{kw}` before any test: start a test with `test \"NAME\"`"),
        );
    };
    match kw {
        "given" => {
            if test.steps.iter().any(|s| !matches!(s, Step::Expect(_))) {
                return cur.err(start, "`given` comes before the test's first event (to change the profile later, send `identify` or `group`)");
            }
            let pairs = pairs(cur, true)?;
            if pairs.is_empty() {
                return cur.err(cur.pos, "expected `lead.TRAIT = value` after `given`");
            }
            test.given.extend(pairs);
        }
        "at" => {
            let (_, time) = parse_at(cur, *prev_time)?;
            let step = parse_event(cur, line, time)?;
            *prev_time = Some(time);
            test.steps.push(step);
        }
        "expect" => {
            let mut list = Vec::new();
            loop {
                cur.skip_ws();
                let col = cur.col(cur.pos);
                let expect = parse_expect_one(cur)?;
                list.push(Expectation { line, col, expect });
                if cur.punct(',') {
                    continue;
                }
                cur.expect_end()?;
                break;
            }
            test.steps.push(Step::Expect(list));
        }
        other => {
            return cur.err(
                start,
                format!("unknown line `{other}`: a test holds `given`, `at` and `expect` lines"),
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// checking names against the rules
// ---------------------------------------------------------------------------------------------

fn unknown(what: &str, name: &str, candidates: &[&str]) -> String {
    let mut msg = format!("unknown {what} `{name}`");
    if let Some(c) = did_you_mean(name, candidates.iter().copied()) {
        msg.push_str(&format!("; did you mean `{c}`?"));
    } else if !candidates.is_empty() {
        let list: Vec<String> = candidates.iter().map(|c| format!("`{c}`")).collect();
        msg.push_str(&format!(" (the rules have {})", list.join(", ")));
    }
    msg
}

/// Checks the names a test file uses (stages, conversions, notify targets) against the
/// rules: a misspelt name is an error with a "did you mean".
pub fn check(program: &Program, tests: &TestFile) -> Vec<TestError> {
    let stages: Vec<&str> = program.stages.iter().map(|s| s.name.as_str()).collect();
    let convs: Vec<&str> = program
        .conversions
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    let mut targets: Vec<&str> = program.notifies.iter().map(|n| n.target.as_str()).collect();
    targets.dedup();
    let abouts: Vec<&str> = stages.iter().chain(convs.iter()).copied().collect();
    let mut events: Vec<&str> = program.by_track.keys().map(|k| &**k).collect();
    for stage in &program.stages {
        track_events(&stage.when, &mut events);
    }
    let mut errors = Vec::new();
    for test in &tests.tests {
        for step in &test.steps {
            if let Step::Event { line, col, event } = step {
                // a track event no rule uses, close to one that a rule uses: a misspelling
                if event.kind == CallKind::Track && !events.contains(&event.name.as_str()) {
                    if let Some(close) = did_you_mean(&event.name, events.iter().copied()) {
                        errors.push(TestError {
                            file: tests.file.clone(),
                            line: *line,
                            col: *col,
                            message: format!(
                                "no rule uses the event `{}`; did you mean `{close}`?",
                                event.name
                            ),
                        });
                    }
                }
            }
            let Step::Expect(list) = step else { continue };
            for e in list {
                let mut bad = |msg: String| {
                    errors.push(TestError {
                        file: tests.file.clone(),
                        line: e.line,
                        col: e.col,
                        message: msg,
                    });
                };
                let stage_ok = |s: &str| stages.contains(&s);
                match &e.expect {
                    Expect::Stage(Some(s))
                    | Expect::Reached { stage: s, .. }
                    | Expect::NotReached(s)
                        if !stage_ok(s) =>
                    {
                        bad(unknown("stage", s, &stages));
                    }
                    Expect::Converted { name, .. } | Expect::NotConverted(name)
                        if !convs.contains(&name.as_str()) =>
                    {
                        bad(unknown("conversion", name, &convs));
                    }
                    Expect::Notified { target, about } | Expect::NotNotified { target, about } => {
                        if !targets.contains(&target.as_str()) {
                            bad(unknown("notify target", target, &targets));
                        } else if let Some(a) = about {
                            if !abouts.contains(&a.as_str()) {
                                bad(unknown("stage or conversion", a, &abouts));
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    errors
}

/// The track event names a condition's `event` predicates use.
fn track_events<'p>(pred: &'p Pred, out: &mut Vec<&'p str>) {
    match pred {
        Pred::And(ps) | Pred::Or(ps) => ps.iter().for_each(|p| track_events(p, out)),
        Pred::Not(p) => track_events(p, out),
        Pred::Event(Matcher::Track(name), _) => out.push(name),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// running
// ---------------------------------------------------------------------------------------------

fn show_score(x: f64) -> String {
    score_value(x).to_string()
}

/// A notification a test saw: the target and what it was about.
struct Seen {
    target: String,
    about: String,
}

fn about_name(program: &Program, t: &Transition) -> String {
    match t {
        Transition::StageReached { stage, .. } => program
            .stages
            .get(*stage)
            .map_or_else(String::new, |s| s.name.clone()),
        Transition::Converted { conversion, .. } => program
            .conversions
            .get(*conversion)
            .map_or_else(String::new, |c| c.name.clone()),
    }
}

fn show_seen(seen: &[Seen]) -> String {
    if seen.is_empty() {
        return "no notifications".into();
    }
    let parts: Vec<String> = seen
        .iter()
        .map(|s| format!("{} {}", s.target, s.about))
        .collect();
    format!("notifications: {}", parts.join(", "))
}

fn quote(name: &str) -> String {
    if !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_') {
        name.to_string()
    } else {
        format!("{name:?}")
    }
}

/// Checks one expectation against the lead as it stands; `Err((expected, got))` on failure.
fn verify(
    program: &Program,
    state: &LeadState,
    seen: &[Seen],
    expect: &Expect,
) -> Result<(), (String, String)> {
    match expect {
        Expect::Number { metric, value } => {
            let actual = match metric {
                Metric::Score => state.score(),
                Metric::Fit => state.fit,
                Metric::Engagement => state.engagement,
            };
            if (round2(actual) - round2(*value)).abs() < 1e-6 {
                Ok(())
            } else {
                Err((
                    format!("{} = {}", metric.as_str(), show_score(*value)),
                    show_score(actual),
                ))
            }
        }
        Expect::Stage(want) => {
            let got = state.stage(program);
            if got == want.as_deref() {
                Ok(())
            } else {
                let show =
                    |s: Option<&str>| s.map_or_else(|| "none".to_string(), |s| format!("{s:?}"));
                Err((format!("stage = {}", show(want.as_deref())), show(got)))
            }
        }
        Expect::Reached { stage, at } => {
            let got = program
                .stage_index(stage)
                .and_then(|i| state.reached.get(i).copied().flatten());
            let expected = match at {
                Some(t) => format!("reached {stage} at {}", format_rfc3339(*t)),
                None => format!("reached {stage}"),
            };
            match (got, at) {
                (None, _) => Err((expected, "not reached".into())),
                (Some(g), Some(t)) if g != *t => {
                    Err((expected, format!("reached at {}", format_rfc3339(g))))
                }
                _ => Ok(()),
            }
        }
        Expect::NotReached(stage) => {
            let got = program
                .stage_index(stage)
                .and_then(|i| state.reached.get(i).copied().flatten());
            match got {
                Some(g) => Err((
                    format!("not reached {stage}"),
                    format!("reached at {}", format_rfc3339(g)),
                )),
                None => Ok(()),
            }
        }
        Expect::Converted { name, count, value } => {
            let got = program
                .conversions
                .iter()
                .position(|c| &c.name == name)
                .and_then(|i| state.conversions.get(i).cloned().flatten());
            let mut expected = format!("converted {name:?}");
            if let Some(n) = count {
                expected.push_str(&format!(" count {n}"));
            }
            if let Some(v) = value {
                expected.push_str(&format!(" value {}", show_score(*v)));
            }
            let Some(c) = got else {
                return Err((expected, "not converted".into()));
            };
            let count_ok = count.is_none_or(|n| n == c.count);
            let value_ok = value.is_none_or(|v| (round2(v) - round2(c.value)).abs() < 1e-6);
            if count_ok && value_ok {
                Ok(())
            } else {
                Err((
                    expected,
                    format!("converted count {} value {}", c.count, show_score(c.value)),
                ))
            }
        }
        Expect::NotConverted(name) => {
            let got = program
                .conversions
                .iter()
                .position(|c| &c.name == name)
                .and_then(|i| state.conversions.get(i).cloned().flatten());
            match got {
                Some(c) => Err((
                    format!("not converted {name:?}"),
                    format!("converted at {} (count {})", format_rfc3339(c.at), c.count),
                )),
                None => Ok(()),
            }
        }
        Expect::Notified { target, about } | Expect::NotNotified { target, about } => {
            let found = seen
                .iter()
                .any(|s| &s.target == target && about.as_ref().is_none_or(|a| &s.about == a));
            let positive = matches!(expect, Expect::Notified { .. });
            if found == positive {
                return Ok(());
            }
            let what = match about {
                Some(a) => format!("{target} {}", quote(a)),
                None => target.clone(),
            };
            let expected = if positive {
                format!("notified {what}")
            } else {
                format!("not notified {what}")
            };
            Err((expected, show_seen(seen)))
        }
        Expect::NoNotifications => {
            if seen.is_empty() {
                Ok(())
            } else {
                Err(("no notifications".into(), show_seen(seen)))
            }
        }
    }
}

/// The lead a test starts with: a new lead whose profile holds the `given` traits.
pub fn initial_state(program: &Program, test: &RuleTest) -> LeadState {
    let mut state = LeadState::new(program);
    for (path, value) in &test.given {
        insert_path(&mut state.profile, path, value.clone());
    }
    state.fit = compute_fit(program, &state.profile);
    state
}

/// Runs one test against a program.
pub fn run_test(program: &Program, test: &RuleTest) -> TestResult {
    let mut state = initial_state(program, test);
    let mut seen: Vec<Seen> = Vec::new();
    let mut failures = Vec::new();
    for step in &test.steps {
        let mut transitions = Vec::new();
        match step {
            Step::Event { event, .. } => {
                eval::apply(program, &mut state, event, &mut transitions);
            }
            Step::Tick { at, .. } => {
                eval::tick(program, &mut state, *at, &mut transitions);
            }
            Step::Expect(list) => {
                for e in list {
                    if let Err((expected, got)) = verify(program, &state, &seen, &e.expect) {
                        failures.push(Failure {
                            line: e.line,
                            expected,
                            got,
                        });
                    }
                }
            }
        }
        for (n, t) in eval::announce(program, &mut state, &transitions) {
            if let Some(rule) = program.notifies.get(n) {
                seen.push(Seen {
                    target: rule.target.clone(),
                    about: about_name(program, &t),
                });
            }
        }
    }
    TestResult {
        name: test.name.clone(),
        line: test.line,
        failures,
    }
}

/// Runs every test of a file against a program.
pub fn run(program: &Program, tests: &TestFile) -> Vec<TestResult> {
    tests.tests.iter().map(|t| run_test(program, t)).collect()
}

// ---------------------------------------------------------------------------------------------
// finding tests
// ---------------------------------------------------------------------------------------------

/// A rule set and the test files kept beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suite {
    /// The rule set: a `.rules` file or a folder of them.
    pub rules: PathBuf,
    /// Its `.test` files, in name order.
    pub tests: Vec<PathBuf>,
}

fn files_with(dir: &Path, ext: &str) -> std::io::Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == ext))
        .collect();
    out.sort();
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<Suite>) -> std::io::Result<()> {
    if !files_with(dir, "rules")?.is_empty() {
        out.push(Suite {
            rules: dir.to_path_buf(),
            tests: files_with(dir, "test")?,
        });
    }
    let mut subdirs: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    subdirs.sort();
    for d in subdirs {
        walk(&d, out)?;
    }
    Ok(())
}

/// Finds the suites for the paths given to `leadscore test`: a folder is searched, with its
/// subfolders, for folders of `.rules` files (each one rule set, tested by the `.test` files
/// beside it); a `.rules` file is tested by the `.test` file of the same name; a `.test` file
/// runs against the rule set of its folder.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<Suite>, String> {
    let mut out = Vec::new();
    for path in paths {
        let shown = path.display();
        if path.is_dir() {
            walk(path, &mut out).map_err(|e| format!("cannot read `{shown}`: {e}"))?;
        } else if path.extension().is_some_and(|e| e == "test") {
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            out.push(Suite {
                rules: dir.to_path_buf(),
                tests: vec![path.clone()],
            });
        } else if path.is_file() {
            let test = path.with_extension("test");
            out.push(Suite {
                rules: path.clone(),
                tests: if test.is_file() {
                    vec![test]
                } else {
                    Vec::new()
                },
            });
        } else {
            return Err(format!("cannot read `{shown}`: no such file or folder"));
        }
    }
    Ok(out)
}
