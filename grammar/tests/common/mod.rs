//! Helpers shared by the integration tests: compile a source string, build events, run a lead.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use leadscore_rules::diagnostic::{render, Diagnostic};
use leadscore_rules::eval::{self, LeadState, Transition};
use leadscore_rules::time::{parse_rfc3339, Micros};
use leadscore_rules::{compile, CallKind, Compiled, Event, Program, SourceFile};
use serde_json::{json, Map, Value};

pub use leadscore_rules::time::SECOND;

/// One minute, in microseconds.
pub const MINUTE: Micros = 60 * SECOND;
/// One hour.
pub const HOUR: Micros = 60 * MINUTE;
/// One day.
pub const DAY: Micros = 24 * HOUR;
/// One week.
pub const WEEK: Micros = 7 * DAY;

/// An RFC 3339 time.
pub fn at(text: &str) -> Micros {
    parse_rfc3339(text).unwrap_or_else(|| panic!("bad time {text}"))
}

/// 2026-01-01T00:00:00Z, the start of most tests.
pub fn t0() -> Micros {
    at("2026-01-01T00:00:00Z")
}

/// One source file named `test.rules`.
pub fn file(text: &str) -> Vec<SourceFile> {
    vec![SourceFile {
        name: "test.rules".to_string(),
        text: text.to_string(),
    }]
}

/// Compiles files; returns the result and the files (for rendering).
pub fn compile_files(files: &[(&str, &str)]) -> (Compiled, Vec<SourceFile>) {
    let files: Vec<SourceFile> = files
        .iter()
        .map(|(name, text)| SourceFile {
            name: (*name).to_string(),
            text: (*text).to_string(),
        })
        .collect();
    (compile(&files), files)
}

/// Every diagnostic of a compile, rendered, joined.
pub fn rendered(compiled: &Compiled, files: &[SourceFile]) -> String {
    compiled
        .diagnostics
        .iter()
        .map(|d| render(d, files))
        .collect::<String>()
}

/// Compiles one source text that must have no errors.
pub fn program(text: &str) -> Program {
    let files = file(text);
    let compiled = compile(&files);
    match compiled.program {
        Some(p) => p,
        None => panic!(
            "rules did not compile:\n{}",
            rendered(&compile(&files), &files)
        ),
    }
}

/// The diagnostics of one source text named `test.rules`.
pub fn diagnostics(text: &str) -> Vec<Diagnostic> {
    compile(&file(text)).diagnostics
}

/// A JSON object from a `json!` value.
pub fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        Value::Null => Map::new(),
        other => panic!("not an object: {other}"),
    }
}

fn event(kind: CallKind, name: &str, time: Micros, properties: Value) -> Event {
    Event {
        kind,
        name: name.into(),
        time,
        properties: obj(properties).into(),
        source: None,
    }
}

/// A track event.
pub fn track(name: &str, time: Micros, properties: Value) -> Event {
    event(CallKind::Track, name, time, properties)
}

/// A track event without properties.
pub fn hit(name: &str, time: Micros) -> Event {
    track(name, time, json!({}))
}

/// A page call.
pub fn page(time: Micros, properties: Value) -> Event {
    event(CallKind::Page, "", time, properties)
}

/// A screen call.
pub fn screen(time: Micros, properties: Value) -> Event {
    event(CallKind::Screen, "", time, properties)
}

/// An identify call.
pub fn identify(time: Micros, traits: Value) -> Event {
    event(CallKind::Identify, "", time, traits)
}

/// A group call.
pub fn group(time: Micros, traits: Value) -> Event {
    event(CallKind::Group, "", time, traits)
}

/// An event with a campaign source.
pub fn with_source(mut e: Event, source: &str) -> Event {
    e.source = Some(source.into());
    e
}

/// A compiled program and one lead's state.
pub struct Lead {
    /// The program.
    pub program: Program,
    /// The lead.
    pub state: LeadState,
}

impl Lead {
    /// A new lead under rules `body`, with `ruleset "t"` prepended.
    pub fn new(body: &str) -> Self {
        let program = program(&format!("ruleset \"t\"\n{body}"));
        let state = LeadState::new(&program);
        Lead { program, state }
    }

    /// Applies one event; returns its transitions.
    pub fn apply(&mut self, e: &Event) -> Vec<Transition> {
        let mut out = Vec::new();
        eval::apply(&self.program, &mut self.state, e, &mut out);
        out
    }

    /// Applies several events; returns all their transitions.
    pub fn run(&mut self, events: &[Event]) -> Vec<Transition> {
        events.iter().flat_map(|e| self.apply(e)).collect()
    }

    /// Ticks the lead at `at`; returns the transitions.
    pub fn tick(&mut self, time: Micros) -> Vec<Transition> {
        let mut out = Vec::new();
        eval::tick(&self.program, &mut self.state, time, &mut out);
        out
    }

    /// A copy of the lead, to try a tick on.
    pub fn clone_lead(&self) -> Lead {
        Lead {
            program: self.program.clone(),
            state: self.state.clone(),
        }
    }

    /// The lead's engagement.
    pub fn engagement(&self) -> f64 {
        self.state.engagement
    }

    /// The lead's fit.
    pub fn fit(&self) -> f64 {
        self.state.fit
    }

    /// The lead's score.
    pub fn score(&self) -> f64 {
        self.state.score()
    }

    /// The lead's stage (last-declared reached).
    pub fn stage(&self) -> Option<&str> {
        self.state.stage(&self.program)
    }

    /// When a stage was reached.
    pub fn reached(&self, stage: &str) -> Option<Micros> {
        let i = self
            .program
            .stage_index(stage)
            .unwrap_or_else(|| panic!("no stage {stage}"));
        self.state.reached[i]
    }

    /// The index of a conversion by name.
    pub fn conversion(&self, name: &str) -> usize {
        self.program
            .conversions
            .iter()
            .position(|c| c.name == name)
            .unwrap_or_else(|| panic!("no conversion {name}"))
    }

    /// A stage-reached transition.
    pub fn stage_t(&self, stage: &str, time: Micros) -> Transition {
        Transition::StageReached {
            stage: self.program.stage_index(stage).unwrap(),
            at: time,
        }
    }

    /// A converted transition.
    pub fn conv_t(&self, name: &str, time: Micros) -> Transition {
        Transition::Converted {
            conversion: self.conversion(name),
            at: time,
        }
    }
}

/// Asserts two floats are equal to within 1e-9 (relative) or 1e-9 (absolute).
#[track_caller]
pub fn approx(actual: f64, expected: f64) {
    let tol = 1e-9_f64.max(expected.abs() * 1e-9);
    assert!(
        (actual - expected).abs() <= tol,
        "expected {expected}, got {actual}"
    );
}
