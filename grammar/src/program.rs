//! `syntax → program`: checks a parsed rule set and compiles it into the form the evaluator
//! runs. Names are resolved, regexes compiled, event patterns indexed, and the history each
//! `limit`, `count` and `sum` needs is worked out here, once.

use crate::diagnostic::{did_you_mean, Code, Diagnostic, SourceFile, Span};
use crate::event::{CallKind, Event};
use crate::syntax::{
    self, CmpOp, Cond, ItemKind, Literal, Modifier, NotifyOn, Operand, PatternKind, Test,
};
use crate::time::Micros;
use ahash::AHashMap;
use serde_json::Value;
use std::collections::HashMap;

/// How many entries a `sum(...)` keeps at most before merging neighbours.
pub const SUM_KEEP: usize = 256;
/// How many event times a `count(...)` keeps when it is not compared with a literal number.
pub const COUNT_KEEP_DEFAULT: usize = 1000;

/// A compiled event pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Matcher {
    /// Page calls.
    Page,
    /// Screen calls.
    Screen,
    /// Track events of this name.
    Track(Box<str>),
}

impl Matcher {
    /// Whether the event matches.
    #[inline]
    pub fn matches(&self, event: &Event) -> bool {
        match self {
            Matcher::Page => event.kind == CallKind::Page,
            Matcher::Screen => event.kind == CallKind::Screen,
            Matcher::Track(name) => event.kind == CallKind::Track && *event.name == **name,
        }
    }

    /// The pattern as written in rules (`page`, `"Form Submitted"`).
    pub fn describe(&self) -> String {
        match self {
            Matcher::Page => "page".to_string(),
            Matcher::Screen => "screen".to_string(),
            Matcher::Track(n) => format!("{n:?}"),
        }
    }
}

impl From<&PatternKind> for Matcher {
    fn from(kind: &PatternKind) -> Self {
        match kind {
            PatternKind::Page => Matcher::Page,
            PatternKind::Screen => Matcher::Screen,
            PatternKind::Track(n) => Matcher::Track(n.as_str().into()),
        }
    }
}

/// A value in a compiled condition.
#[derive(Debug, Clone)]
pub enum Expr {
    /// A literal.
    Const(Value),
    /// An event property (path).
    Prop(Box<[Box<str>]>),
    /// A profile trait (path after `lead.`).
    Trait(Box<[Box<str>]>),
    /// `score` (fit + engagement).
    Score,
    /// `fit`.
    Fit,
    /// `engagement`.
    Engagement,
    /// An aggregate slot (`count`/`sum`).
    Agg(usize),
}

/// A compiled condition.
#[derive(Debug, Clone)]
pub enum Pred {
    /// Always this.
    Const(bool),
    /// All hold.
    And(Vec<Pred>),
    /// One holds.
    Or(Vec<Pred>),
    /// Does not hold.
    Not(Box<Pred>),
    /// A binary comparison.
    Cmp(CmpOp, Expr, Expr),
    /// A regex search.
    Matches(Expr, regex::Regex),
    /// Inclusive range.
    Between(Expr, Expr, Expr),
    /// Membership in a list.
    In(Expr, Expr),
    /// Present and not null.
    Exists(Expr),
    /// Is `true`.
    Truthy(Expr),
    /// The current event matches.
    Event(Matcher, Option<Box<Pred>>),
    /// A stage is reached.
    Reached(usize),
}

/// A `fit` rule.
#[derive(Debug, Clone)]
pub struct FitRule {
    /// Its name.
    pub name: String,
    /// Its points.
    pub points: f64,
    /// Its condition on the profile.
    pub when: Pred,
    /// Where it is declared.
    pub span: Span,
}

/// A `score` rule.
#[derive(Debug, Clone)]
pub struct ScoreRule {
    /// Its name.
    pub name: String,
    /// Its points.
    pub points: f64,
    /// What it matches.
    pub on: Matcher,
    /// Its filter.
    pub filter: Option<Pred>,
    /// `once`.
    pub once: bool,
    /// `limit N per D`: (N, D, slot in `LeadState::limits`).
    pub limit: Option<(usize, Micros, usize)>,
    /// Where it is declared.
    pub span: Span,
}

/// A `stage`.
#[derive(Debug, Clone)]
pub struct StageRule {
    /// Its name.
    pub name: String,
    /// When it is reached.
    pub when: Pred,
    /// Where it is declared.
    pub span: Span,
}

/// A `conversion`.
#[derive(Debug, Clone)]
pub struct ConversionRule {
    /// Its name.
    pub name: String,
    /// What it matches.
    pub on: Matcher,
    /// Its filter.
    pub filter: Option<Pred>,
    /// The property that holds the value.
    pub value: Option<Box<[Box<str>]>>,
    /// Where it is declared.
    pub span: Span,
}

/// What a `notify` line waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyWhen {
    /// A stage is reached.
    Reached(usize),
    /// Any conversion (None) or one conversion happens for the first time.
    Converted(Option<usize>),
}

/// A `notify` line.
#[derive(Debug, Clone)]
pub struct NotifyRule {
    /// The target's name.
    pub target: String,
    /// What it waits for.
    pub when: NotifyWhen,
}

/// What an aggregate computes.
#[derive(Debug, Clone, PartialEq)]
pub enum AggKind {
    /// `count(...)`; keeps at most this many event times.
    Count {
        /// Entries kept.
        keep: usize,
    },
    /// `sum(PROP of ...)`.
    Sum {
        /// The property summed.
        property: Box<[Box<str>]>,
    },
}

/// A `count(...)` or `sum(...)` aggregate: a slot of history in the lead's state.
#[derive(Debug, Clone)]
pub struct Aggregate {
    /// The events it looks at.
    pub on: Matcher,
    /// Which of them (event properties only).
    pub filter: Option<Pred>,
    /// The window.
    pub within: Micros,
    /// Count or sum.
    pub kind: AggKind,
    /// Where it is written.
    pub span: Span,
    /// Its canonical text (`count("Feature Used") within 14d`): what stored state names its
    /// window by.
    pub key: String,
}

/// The rule indexes an event of one name walks.
#[derive(Debug, Clone, Default)]
pub struct Slots {
    /// Score rules, in file order.
    pub scores: Vec<usize>,
    /// Aggregates.
    pub aggregates: Vec<usize>,
    /// Conversions, in declaration order.
    pub conversions: Vec<usize>,
}

/// A compiled rule set: what the evaluator runs.
#[derive(Debug, Clone, Default)]
pub struct Program {
    /// The `ruleset` name.
    pub name: String,
    /// A stable hash of the source files as written (FNV-1a, hex).
    pub hash: String,
    /// The rule set's version (SPEC §7): a hash of its canonical, comment-free form (files
    /// in name order) and of [`ENGINE_SEMANTICS`]. Formatting, comments and the ruleset's
    /// name leave it as it is.
    pub version: String,
    /// Fit rules.
    pub fits: Vec<FitRule>,
    /// Score rules, in file order.
    pub scores: Vec<ScoreRule>,
    /// Decay half-life.
    pub half_life: Option<Micros>,
    /// Engagement cap.
    pub cap: Option<f64>,
    /// Engagement floor.
    pub floor: Option<f64>,
    /// Stages, in declaration order.
    pub stages: Vec<StageRule>,
    /// Conversions, in declaration order.
    pub conversions: Vec<ConversionRule>,
    /// Notify lines, in order.
    pub notifies: Vec<NotifyRule>,
    /// Aggregates (`count`, `sum`).
    pub aggregates: Vec<Aggregate>,
    /// Number of `limit` slots.
    pub limit_slots: usize,
    /// Rules by track event name.
    pub by_track: AHashMap<Box<str>, Slots>,
    /// Rules for page calls.
    pub by_page: Slots,
    /// Rules for screen calls.
    pub by_screen: Slots,
    /// The longest window or limit period (how far back history is exact).
    pub longest_window: Micros,
    /// Whether time passing alone can change a lead (decay, or windows in stage conditions).
    pub time_dependent: bool,
}

impl Program {
    /// The rule slots an event walks.
    #[inline]
    pub fn slots(&self, event: &Event) -> Option<&Slots> {
        match event.kind {
            CallKind::Page => Some(&self.by_page),
            CallKind::Screen => Some(&self.by_screen),
            CallKind::Track => self.by_track.get(event.name.as_str()),
            _ => None,
        }
    }

    /// The index of a stage by name.
    pub fn stage_index(&self, name: &str) -> Option<usize> {
        self.stages.iter().position(|s| s.name == name)
    }
}

/// Which keys of one object a program can read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keys {
    /// Every key (a rule reads the object itself).
    All,
    /// Only these.
    Some(KeySet),
}

impl Keys {
    /// Whether a rule can read `key`.
    #[inline]
    pub fn contains(&self, key: &str) -> bool {
        match self {
            Keys::All => true,
            Keys::Some(keys) => keys.contains(key),
        }
    }

    fn add(&mut self, key: Option<&str>) {
        match (self, key) {
            (Keys::All, _) => {}
            (this, None) => *this = Keys::All,
            (Keys::Some(keys), Some(k)) => keys.insert(k),
        }
    }
}

/// A few keys, asked about once per key of every call parsed: the lengths present are a
/// bit mask, so most keys that are not there are turned away without a comparison.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeySet {
    /// The keys, sorted, each once.
    keys: Vec<Box<str>>,
    /// Bit `n` is set when a key of `n` bytes is there (bit 63: 63 bytes or more).
    lengths: u64,
}

impl KeySet {
    /// No keys.
    pub fn new() -> Self {
        KeySet::default()
    }

    fn bit(len: usize) -> u64 {
        1 << len.min(63)
    }

    /// Whether `key` is there.
    #[inline]
    pub fn contains(&self, key: &str) -> bool {
        self.lengths & KeySet::bit(key.len()) != 0 && self.keys.iter().any(|k| **k == *key)
    }

    /// Adds `key`.
    pub fn insert(&mut self, key: &str) {
        if let Err(i) = self.keys.binary_search_by(|k| (**k).cmp(key)) {
            self.keys.insert(i, key.into());
            self.lengths |= KeySet::bit(key.len());
        }
    }

    /// The keys in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| &**k)
    }
}

impl<K: AsRef<str>> FromIterator<K> for KeySet {
    fn from_iter<I: IntoIterator<Item = K>>(iter: I) -> Self {
        let mut set = KeySet::new();
        for k in iter {
            set.insert(k.as_ref());
        }
        set
    }
}

/// What of a call a program can read: the top-level keys of event `properties`, of the
/// profile (`lead.x` reads `x`) and of the company (`lead.company.x` reads `x` under
/// `company`). A call stripped of every other key evaluates exactly as the whole call, so
/// `replay` skips the rest while parsing instead of keeping it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reads {
    /// Top-level keys of event properties.
    pub properties: Keys,
    /// Top-level keys of the profile (identify traits).
    pub traits: Keys,
    /// Keys under `company` (group traits).
    pub company: Keys,
}

impl Reads {
    fn expr(&mut self, e: &Expr) {
        match e {
            Expr::Prop(path) => self.properties.add(path.first().map(|k| &**k)),
            Expr::Trait(path) => {
                let first = path.first().map(|k| &**k);
                self.traits.add(first);
                if first == Some("company") {
                    self.company.add(path.get(1).map(|k| &**k));
                }
            }
            Expr::Const(_) | Expr::Score | Expr::Fit | Expr::Engagement | Expr::Agg(_) => {}
        }
    }

    fn pred(&mut self, p: &Pred) {
        match p {
            Pred::Const(_) | Pred::Reached(_) => {}
            Pred::And(ps) | Pred::Or(ps) => ps.iter().for_each(|p| self.pred(p)),
            Pred::Not(p) => self.pred(p),
            Pred::Cmp(_, a, b) | Pred::In(a, b) => {
                self.expr(a);
                self.expr(b);
            }
            Pred::Between(a, b, c) => {
                self.expr(a);
                self.expr(b);
                self.expr(c);
            }
            Pred::Matches(e, _) | Pred::Exists(e) | Pred::Truthy(e) => self.expr(e),
            Pred::Event(_, filter) => {
                if let Some(f) = filter {
                    self.pred(f);
                }
            }
        }
    }
}

impl Program {
    /// What of a call this program can read (see [`Reads`]).
    pub fn reads(&self) -> Reads {
        let none = || Keys::Some(KeySet::new());
        let mut r = Reads {
            properties: none(),
            traits: none(),
            company: none(),
        };
        for f in &self.fits {
            r.pred(&f.when);
        }
        for s in &self.scores {
            s.filter.iter().for_each(|p| r.pred(p));
        }
        for s in &self.stages {
            r.pred(&s.when);
        }
        for c in &self.conversions {
            c.filter.iter().for_each(|p| r.pred(p));
            if let Some(v) = &c.value {
                r.properties.add(v.first().map(|k| &**k));
            }
        }
        for a in &self.aggregates {
            a.filter.iter().for_each(|p| r.pred(p));
            if let AggKind::Sum { property } = &a.kind {
                r.properties.add(property.first().map(|k| &**k));
            }
        }
        r
    }
}

/// The result of compiling a rule set: the program when there are no errors, and every
/// diagnostic (errors and warnings) in source order.
#[derive(Debug)]
pub struct Compiled {
    /// The program, when there is no error.
    pub program: Option<Program>,
    /// All diagnostics.
    pub diagnostics: Vec<Diagnostic>,
}

/// Parses, checks and compiles a rule set made of these files (in this order).
pub fn compile(files: &[SourceFile]) -> Compiled {
    let mut diags = Vec::new();
    let mut parsed = Vec::new();
    for (i, f) in files.iter().enumerate() {
        parsed.push(syntax::parse_file(i, &f.text, &mut diags));
    }
    let items: Vec<&syntax::Item> = parsed.iter().flat_map(|f| f.items.iter()).collect();
    let mut c = Compiler {
        diags: &mut diags,
        program: Program::default(),
        agg_keep: Vec::new(),
        files,
    };
    c.compile(&items, files);
    let Compiler { program, .. } = c;
    diags.sort_by_key(|d| (d.span.file, d.span.start));
    let ok = !diags.iter().any(Diagnostic::is_error);
    Compiled {
        program: ok.then_some(program),
        diagnostics: diags,
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scope {
    Fit,
    ScoreWhere,
    ConversionWhere,
    Stage,
    StageEventWhere,
    AggWhere,
}

impl Scope {
    fn is_where(self) -> bool {
        !matches!(self, Scope::Fit | Scope::Stage)
    }
    fn describe(self) -> &'static str {
        match self {
            Scope::Fit => "a fit condition",
            Scope::ScoreWhere => "the `where` of a score rule",
            Scope::ConversionWhere => "the `where` of a conversion",
            Scope::Stage => "a stage condition",
            Scope::StageEventWhere => "the `where` of an `event` predicate",
            Scope::AggWhere => "the `where` inside `count(...)` or `sum(...)`",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Number,
    String,
    Other,
}

struct Compiler<'d> {
    diags: &'d mut Vec<Diagnostic>,
    program: Program,
    /// Per aggregate: the largest literal it is compared against, or None when unknown.
    agg_keep: Vec<Option<usize>>,
    /// The source files, to point at earlier declarations.
    files: &'d [SourceFile],
}

/// The number of the evaluation semantics: bumped whenever the same rules would score the same
/// events differently, so every lead is rescored under the new engine (part of
/// [`Program::version`]). 2: late awards and counts are held until the clock has moved on by
/// their period.
pub const ENGINE_SEMANTICS: u32 = 2;

/// The version of a rule set made of these files (already in name order): see
/// [`Program::version`].
pub fn rules_version(files: &[SourceFile]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(format!("leadscore engine {ENGINE_SEMANTICS}\n").as_bytes());
    for f in files {
        // one item a line: splitting a file in two, or joining two, changes nothing
        hasher.update(crate::format::canonical_form(&f.text).as_bytes());
    }
    let digest = hasher.finalize();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

fn fnv1a(files: &[SourceFile]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for f in files {
        for b in f.text.as_bytes().iter().chain([0xffu8].iter()) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

impl Compiler<'_> {
    fn err(&mut self, code: Code, message: String, span: Span) -> &mut Diagnostic {
        self.diags.push(Diagnostic::error(code, message, span));
        let last = self.diags.len() - 1;
        &mut self.diags[last]
    }

    fn warn(&mut self, code: Code, message: String, span: Span) -> &mut Diagnostic {
        self.diags.push(Diagnostic::warning(code, message, span));
        let last = self.diags.len() - 1;
        &mut self.diags[last]
    }

    fn compile(&mut self, items: &[&syntax::Item], files: &[SourceFile]) {
        self.program.hash = fnv1a(files);
        self.program.version = rules_version(files);
        // Declarations first, so that references may point forward.
        let mut stage_names: HashMap<String, Span> = HashMap::new();
        let mut conversion_names: HashMap<String, Span> = HashMap::new();
        let mut ruleset: Option<Span> = None;
        for item in items {
            match &item.kind {
                ItemKind::Stage { name, .. } => {
                    if let Some(first) = stage_names.get(&name.text) {
                        let line = *first;
                        self.duplicate("stage", &name.text, name.span, line);
                    } else {
                        stage_names.insert(name.text.clone(), name.span);
                    }
                }
                ItemKind::Conversion { name, .. } => {
                    if let Some(first) = conversion_names.get(&name.text) {
                        let line = *first;
                        self.duplicate("conversion", &name.text, name.span, line);
                    } else {
                        conversion_names.insert(name.text.clone(), name.span);
                    }
                }
                ItemKind::Ruleset(name) => {
                    if ruleset.is_some() {
                        self.err(
                            Code::Ruleset,
                            "a rule set has one `ruleset` line".into(),
                            item.span,
                        )
                        .help =
                            Some("remove this line, or merge the files into one rule set".into());
                    } else {
                        ruleset = Some(item.span);
                        self.program.name = name.text.clone();
                    }
                }
                _ => {}
            }
        }
        let stage_list: Vec<String> = items
            .iter()
            .filter_map(|i| match &i.kind {
                ItemKind::Stage { name, .. } => Some(name.text.clone()),
                _ => None,
            })
            .collect();
        // Keep the first declaration of each stage as the stage list.
        let mut seen = std::collections::HashSet::new();
        for name in &stage_list {
            if seen.insert(name.clone()) {
                self.program.stages.push(StageRule {
                    name: name.clone(),
                    when: Pred::Const(false),
                    span: stage_names.get(name).copied().unwrap_or_default(),
                });
            }
        }
        let mut fit_names: HashMap<String, Span> = HashMap::new();
        let mut score_names: HashMap<String, Span> = HashMap::new();
        let mut seen_conv = std::collections::HashSet::new();
        let mut seen_stage = std::collections::HashSet::new();
        let mut single: HashMap<&'static str, Span> = HashMap::new();
        let mut notify_seen: HashMap<(String, String), Span> = HashMap::new();
        let mut event_names: Vec<(String, Span)> = Vec::new();
        for item in items {
            match &item.kind {
                ItemKind::Ruleset(_) => {}
                ItemKind::Fit { name, points, cond } => {
                    if let Some(first) = fit_names.get(&name.text).copied() {
                        self.duplicate("fit rule", &name.text, name.span, first);
                    }
                    fit_names.insert(name.text.clone(), name.span);
                    let when = self.pred(cond, Scope::Fit);
                    self.never_fires(&when, "fit rule", &name.text, item.span);
                    self.program.fits.push(FitRule {
                        name: name.text.clone(),
                        points: *points,
                        when,
                        span: item.span,
                    });
                }
                ItemKind::Score {
                    name,
                    points,
                    pattern,
                    filter,
                    modifier,
                } => {
                    if let Some(first) = score_names.get(&name.text).copied() {
                        self.duplicate("score rule", &name.text, name.span, first);
                    }
                    score_names.insert(name.text.clone(), name.span);
                    if let PatternKind::Track(n) = &pattern.kind {
                        event_names.push((n.clone(), pattern.span));
                    }
                    let filter = filter.as_ref().map(|f| self.pred(f, Scope::ScoreWhere));
                    if let Some(f) = &filter {
                        self.never_fires(f, "score rule", &name.text, item.span);
                    }
                    let mut once = false;
                    let mut limit = None;
                    match modifier {
                        Some(Modifier::Once(_)) => once = true,
                        Some(Modifier::Limit {
                            count,
                            count_span,
                            per,
                        }) => {
                            if count.fract() != 0.0 || *count < 1.0 || *count > 100_000.0 {
                                self.err(
                                    Code::BadLiteral,
                                    format!(
                                        "`limit {count}` must be a whole number from 1 to 100000"
                                    ),
                                    *count_span,
                                );
                            } else {
                                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                                let n = *count as usize;
                                limit = Some((n, per.micros, self.program.limit_slots));
                                self.program.limit_slots += 1;
                                self.program.longest_window =
                                    self.program.longest_window.max(per.micros);
                            }
                        }
                        None => {}
                    }
                    let index = self.program.scores.len();
                    let on = Matcher::from(&pattern.kind);
                    self.slots_mut(&on).scores.push(index);
                    self.program.scores.push(ScoreRule {
                        name: name.text.clone(),
                        points: *points,
                        on,
                        filter,
                        once,
                        limit,
                        span: item.span,
                    });
                }
                ItemKind::Decay(d) => {
                    if self.single(&mut single, "decay", item.span) {
                        self.program.half_life = Some(d.micros);
                        self.program.time_dependent = true;
                    }
                }
                ItemKind::Cap(n, _) => {
                    if self.single(&mut single, "cap", item.span) {
                        self.program.cap = Some(*n);
                    }
                }
                ItemKind::Floor(n, _) => {
                    if self.single(&mut single, "floor", item.span) {
                        self.program.floor = Some(*n);
                    }
                }
                ItemKind::Stage { name, cond } => {
                    if !seen_stage.insert(name.text.clone()) {
                        continue;
                    }
                    let when = self.pred(cond, Scope::Stage);
                    let index = self.program.stage_index(&name.text).unwrap_or(0);
                    if refers_to_stage(&when, index) && !has_or_not(&when) {
                        self.warn(
                            Code::NeverFires,
                            format!("stage `{}` can never be reached: its condition needs the stage itself", name.text),
                            item.span,
                        )
                        .help = Some("remove `reached` of this stage from its own condition".into());
                    } else {
                        self.never_fires(&when, "stage", &name.text, item.span);
                    }
                    collect_event_names(cond, &mut event_names);
                    if let Some(stage) = self.program.stages.get_mut(index) {
                        stage.when = when;
                        stage.span = item.span;
                    }
                }
                ItemKind::Conversion {
                    name,
                    pattern,
                    filter,
                    value,
                } => {
                    if !seen_conv.insert(name.text.clone()) {
                        continue;
                    }
                    if let PatternKind::Track(n) = &pattern.kind {
                        event_names.push((n.clone(), pattern.span));
                    }
                    let filter = filter
                        .as_ref()
                        .map(|f| self.pred(f, Scope::ConversionWhere));
                    if let Some(f) = &filter {
                        self.never_fires(f, "conversion", &name.text, item.span);
                    }
                    let value = value.as_ref().map(|p| property_path(&p.segments));
                    let on = Matcher::from(&pattern.kind);
                    let index = self.program.conversions.len();
                    self.slots_mut(&on).conversions.push(index);
                    self.program.conversions.push(ConversionRule {
                        name: name.text.clone(),
                        on,
                        filter,
                        value,
                        span: item.span,
                    });
                }
                ItemKind::Notify { target, on } => {
                    let (key, when) = match on {
                        NotifyOn::Reached(stage) => {
                            let idx = self.stage_ref(&stage.text, stage.span, &stage_list);
                            (
                                format!("reached {}", stage.text),
                                idx.map(NotifyWhen::Reached),
                            )
                        }
                        NotifyOn::Converted(None) => {
                            ("converted".to_string(), Some(NotifyWhen::Converted(None)))
                        }
                        NotifyOn::Converted(Some(conv)) => {
                            let names: Vec<&str> =
                                conversion_names.keys().map(String::as_str).collect();
                            let idx = items
                                .iter()
                                .filter_map(|i| match &i.kind {
                                    ItemKind::Conversion { name, .. } => Some(name.text.as_str()),
                                    _ => None,
                                })
                                .scan(std::collections::HashSet::new(), |seen, n| {
                                    Some(seen.insert(n).then_some(n))
                                })
                                .flatten()
                                .position(|n| n == conv.text);
                            if idx.is_none() {
                                let hint = did_you_mean(&conv.text, names.iter().copied())
                                    .map(|b| format!("did you mean `{b}`?"));
                                let w = self.warn(
                                    Code::UnknownConversion,
                                    format!("no conversion is named `{}`; this notification is never sent", conv.text),
                                    conv.span,
                                );
                                w.help = hint.or_else(|| {
                                    Some("declare it with `conversion \"...\" on ...`".into())
                                });
                            }
                            (
                                format!("converted {}", conv.text),
                                idx.map(|i| NotifyWhen::Converted(Some(i))),
                            )
                        }
                    };
                    if let Some(first) = notify_seen
                        .get(&(target.text.clone(), key.clone()))
                        .copied()
                    {
                        self.duplicate(
                            "notification",
                            &format!("{} when {key}", target.text),
                            item.span,
                            first,
                        );
                        continue;
                    }
                    notify_seen.insert((target.text.clone(), key), item.span);
                    if let Some(when) = when {
                        self.program.notifies.push(NotifyRule {
                            target: target.text.clone(),
                            when,
                        });
                    }
                }
            }
        }
        if ruleset.is_none() {
            let span = items
                .first()
                .map_or(Span::default(), |i| Span::new(i.span.file, 0, 0));
            self.err(
                Code::Ruleset,
                "the rule set has no `ruleset` line".into(),
                span,
            )
            .help = Some("add a first line such as `ruleset \"acme-b2b\"`".into());
        }
        if let (Some(cap), Some(floor)) = (self.program.cap, self.program.floor) {
            if cap < floor {
                let span = single.get("cap").copied().unwrap_or_default();
                self.err(
                    Code::BadLiteral,
                    format!("the cap ({cap}) is below the floor ({floor})"),
                    span,
                );
            }
        }
        self.misspelt_events(&event_names);
        // Finish aggregates: how many entries each count keeps.
        for (i, agg) in self.program.aggregates.iter_mut().enumerate() {
            if let AggKind::Count { keep } = &mut agg.kind {
                *keep = match self.agg_keep.get(i).copied().flatten() {
                    Some(k) => k,
                    None => COUNT_KEEP_DEFAULT,
                };
            }
        }
    }

    fn slots_mut(&mut self, on: &Matcher) -> &mut Slots {
        match on {
            Matcher::Page => &mut self.program.by_page,
            Matcher::Screen => &mut self.program.by_screen,
            Matcher::Track(n) => self.program.by_track.entry(n.clone()).or_default(),
        }
    }

    fn single(
        &mut self,
        seen: &mut HashMap<&'static str, Span>,
        what: &'static str,
        span: Span,
    ) -> bool {
        if seen.contains_key(what) {
            self.err(Code::Duplicate, format!("`{what}` is declared twice"), span)
                .help = Some(format!("a rule set has at most one `{what}` line"));
            false
        } else {
            seen.insert(what, span);
            true
        }
    }

    fn duplicate(&mut self, what: &str, name: &str, span: Span, first: Span) {
        let help = match self.files.get(first.file) {
            Some(f) => {
                let at = crate::diagnostic::line_col(&f.text, first.start);
                format!(
                    "the first one is at {}:{}:{}; give each one its own name",
                    f.name, at.line, at.column
                )
            }
            None => "give each one its own name".to_string(),
        };
        self.err(
            Code::Duplicate,
            format!("the {what} `{name}` is declared twice"),
            span,
        )
        .help = Some(help);
    }

    fn stage_ref(&mut self, name: &str, span: Span, stages: &[String]) -> Option<usize> {
        if let Some(i) = self.program.stage_index(name) {
            return Some(i);
        }
        let hint = did_you_mean(name, stages.iter().map(String::as_str));
        let help = match hint {
            Some(b) => format!("did you mean `{b}`?"),
            None if stages.is_empty() => "declare it with `stage NAME when ...`".to_string(),
            None => format!(
                "the stages are {}",
                stages
                    .iter()
                    .map(|s| format!("`{s}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        self.err(Code::UnknownStage, format!("unknown stage `{name}`"), span)
            .help = Some(help);
        None
    }

    fn never_fires(&mut self, pred: &Pred, what: &str, name: &str, span: Span) {
        // An error inside the rule already says what is wrong with it (and turned the broken
        // part into `false`): no warning on top of it.
        let has_error = self.diags.iter().any(|d| {
            d.is_error()
                && d.span.file == span.file
                && d.span.start >= span.start
                && d.span.end <= span.end
        });
        if has_error {
            return;
        }
        if matches!(pred, Pred::Const(false)) {
            self.warn(
                Code::NeverFires,
                format!("the {what} `{name}` can never fire: its condition is always false"),
                span,
            );
        } else if let Some((a, b)) = conflicting_events(pred) {
            self.warn(
                Code::NeverFires,
                format!("the {what} `{name}` can never fire: one event cannot be both {a} and {b}"),
                span,
            )
            .help =
                Some("to need both events, count one of them: `count(...) within D >= 1`".into());
        }
    }

    fn misspelt_events(&mut self, names: &[(String, Span)]) {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for (n, _) in names {
            *counts.entry(n.as_str()).or_default() += 1;
        }
        let distinct: Vec<&str> = {
            let mut v: Vec<&str> = counts.keys().copied().collect();
            v.sort_unstable();
            v
        };
        let mut warned = std::collections::HashSet::new();
        for (n, span) in names {
            if warned.contains(n.as_str()) || n.chars().count() < 4 {
                continue;
            }
            let mine = counts.get(n.as_str()).copied().unwrap_or(0);
            let close = distinct.iter().copied().find(|other| {
                *other != n.as_str()
                    && strsim::levenshtein(&other.to_lowercase(), &n.to_lowercase()) <= 2
                    && (counts.get(other).copied().unwrap_or(0) > mine
                        || (counts.get(other).copied().unwrap_or(0) == mine && *other < n.as_str()))
            });
            if let Some(other) = close {
                warned.insert(n.clone());
                self.warn(
                    Code::MaybeMisspelt,
                    format!("the event `{n}` looks like a misspelling of `{other}`"),
                    *span,
                )
                .help = Some(format!("did you mean `{other}`?"));
            }
        }
    }

    fn pred(&mut self, cond: &Cond, scope: Scope) -> Pred {
        match cond {
            Cond::And(parts) => {
                let parts: Vec<Pred> = parts.iter().map(|p| self.pred(p, scope)).collect();
                if parts.iter().any(|p| matches!(p, Pred::Const(false))) {
                    return Pred::Const(false);
                }
                let parts: Vec<Pred> = parts
                    .into_iter()
                    .filter(|p| !matches!(p, Pred::Const(true)))
                    .collect();
                match parts.len() {
                    0 => Pred::Const(true),
                    1 => parts.into_iter().next().unwrap_or(Pred::Const(true)),
                    _ => Pred::And(parts),
                }
            }
            Cond::Or(parts) => {
                let parts: Vec<Pred> = parts.iter().map(|p| self.pred(p, scope)).collect();
                if parts.iter().any(|p| matches!(p, Pred::Const(true))) {
                    return Pred::Const(true);
                }
                let parts: Vec<Pred> = parts
                    .into_iter()
                    .filter(|p| !matches!(p, Pred::Const(false)))
                    .collect();
                match parts.len() {
                    0 => Pred::Const(false),
                    1 => parts.into_iter().next().unwrap_or(Pred::Const(false)),
                    _ => Pred::Or(parts),
                }
            }
            Cond::Not(inner) => match self.pred(inner, scope) {
                Pred::Const(b) => Pred::Const(!b),
                p => Pred::Not(Box::new(p)),
            },
            Cond::Reached(name) => {
                if scope != Scope::Stage {
                    self.not_allowed("`reached`", scope, name.span);
                    return Pred::Const(false);
                }
                let stages: Vec<String> =
                    self.program.stages.iter().map(|s| s.name.clone()).collect();
                match self.stage_ref(&name.text, name.span, &stages) {
                    Some(i) => Pred::Reached(i),
                    None => Pred::Const(false),
                }
            }
            Cond::Event {
                pattern,
                filter,
                span,
            } => {
                if scope != Scope::Stage {
                    self.not_allowed("`event`", scope, *span);
                    return Pred::Const(false);
                }
                let filter = filter
                    .as_ref()
                    .map(|f| Box::new(self.pred(f, Scope::StageEventWhere)));
                if matches!(filter.as_deref(), Some(Pred::Const(false))) {
                    return Pred::Const(false);
                }
                let filter = filter.filter(|f| !matches!(**f, Pred::Const(true)));
                Pred::Event(Matcher::from(&pattern.kind), filter)
            }
            Cond::Compare { left, test, span } => self.compare(left, test.as_ref(), *span, scope),
        }
    }

    fn not_allowed(&mut self, what: &str, scope: Scope, span: Span) {
        let help = match what {
            "`reached`" | "`event`" | "`count(...)`" | "`sum(...)`" => {
                "use it in a `stage` condition".to_string()
            }
            _ => "see the language reference for what each place allows".to_string(),
        };
        self.err(
            Code::NotAllowed,
            format!("{what} cannot be used in {}", scope.describe()),
            span,
        )
        .help = Some(help);
    }

    fn compare(&mut self, left: &Operand, test: Option<&Test>, span: Span, scope: Scope) -> Pred {
        let lkind = self.kind_of(left);
        let l = self.expr(left, scope);
        let Some(test) = test else {
            return match l {
                Some(Expr::Const(v)) => Pred::Const(v == Value::Bool(true)),
                Some(e) => Pred::Truthy(e),
                None => Pred::Const(false),
            };
        };
        match test {
            Test::Exists => match l {
                Some(Expr::Const(v)) => Pred::Const(!v.is_null()),
                Some(e) => Pred::Exists(e),
                None => Pred::Const(false),
            },
            Test::In(right) => {
                if let Operand::Literal(lit, s) = right {
                    if !matches!(lit, Literal::List(_)) {
                        self.err(
                            Code::NotAllowed,
                            "`in` takes a list: `in [\"a\", \"b\"]`".into(),
                            *s,
                        );
                        return Pred::Const(false);
                    }
                }
                let r = self.expr(right, scope);
                match (l, r) {
                    (Some(l), Some(r)) => {
                        self.record_count_bound(&l, &r);
                        Pred::In(l, r)
                    }
                    _ => Pred::Const(false),
                }
            }
            Test::Between(low, high) => {
                let (lo_k, hi_k) = (self.kind_of(low), self.kind_of(high));
                for (k, o) in [(lo_k, low), (hi_k, high)] {
                    self.type_check(lkind, k, o.span(), "between");
                }
                if let (
                    Operand::Literal(Literal::Number(a), _),
                    Operand::Literal(Literal::Number(b), _),
                ) = (low, high)
                {
                    if a > b {
                        self.err(
                            Code::BetweenOrder,
                            format!("`between {a} and {b}` is never true: the low bound is above the high one"),
                            Span::new(span.file, low.span().start, high.span().end),
                        )
                        .help = Some(format!("write `between {b} and {a}`"));
                        return Pred::Const(false);
                    }
                }
                let lo = self.expr(low, scope);
                let hi = self.expr(high, scope);
                match (l, lo, hi) {
                    (Some(l), Some(lo), Some(hi)) => {
                        self.record_count_bound(&l, &lo);
                        self.record_count_bound(&l, &hi);
                        self.record_count_bound(&lo, &hi);
                        Pred::Between(l, lo, hi)
                    }
                    _ => Pred::Const(false),
                }
            }
            Test::Cmp(CmpOp::Matches, right) => {
                let regex = match right {
                    Operand::Literal(
                        Literal::Regex {
                            source,
                            ignore_case,
                        },
                        s,
                    ) => self.regex(source, *ignore_case, *s),
                    Operand::Literal(Literal::String(source), s) => self.regex(source, false, *s),
                    other => {
                        self.err(
                            Code::NotAllowed,
                            "`matches` takes a regex: `matches /^vp/i`".into(),
                            other.span(),
                        );
                        None
                    }
                };
                match (l, regex) {
                    (Some(l), Some(r)) => Pred::Matches(l, r),
                    _ => Pred::Const(false),
                }
            }
            Test::Cmp(op, right) => {
                let rkind = self.kind_of(right);
                self.type_check(lkind, rkind, right.span(), op.as_str());
                if matches!(op, CmpOp::StartsWith | CmpOp::EndsWith) && rkind == Kind::Number {
                    self.err(
                        Code::TypeMismatch,
                        format!("`{}` compares strings, and this is a number", op.as_str()),
                        right.span(),
                    )
                    .help = Some("write the number as a string: \"...\"".into());
                }
                let r = self.expr(right, scope);
                let (Some(l), Some(r)) = (l, r) else {
                    return Pred::Const(false);
                };
                self.record_count_bound(&l, &r);
                if let (Expr::Const(a), Expr::Const(b)) = (&l, &r) {
                    let ctx = crate::eval::ConstCtx;
                    return Pred::Const(crate::eval::compare_values(
                        *op,
                        &ctx.value(a),
                        &ctx.value(b),
                    ));
                }
                Pred::Cmp(*op, l, r)
            }
        }
    }

    /// Records what a `count(...)` is compared with, so that it keeps enough history: one
    /// more than the largest literal number it is compared against, and
    /// `COUNT_KEEP_DEFAULT` when it is compared with anything else (a trait, a score,
    /// another aggregate).
    fn record_count_bound(&mut self, l: &Expr, r: &Expr) {
        for (agg, other) in [(l, r), (r, l)] {
            let Expr::Agg(slot) = agg else { continue };
            let need = match other {
                Expr::Const(Value::Number(n)) => n.as_f64().map(count_keep_for),
                Expr::Const(Value::Array(items)) => items
                    .iter()
                    .map(|v| v.as_f64().map(count_keep_for))
                    .try_fold(1, |acc, n| n.map(|n| n.max(acc))),
                _ => None,
            };
            if let Some(keep) = self.agg_keep.get_mut(*slot) {
                *keep = match (*keep, need) {
                    (Some(k), Some(n)) => Some(k.max(n)),
                    _ => None,
                };
            }
        }
    }

    fn type_check(&mut self, a: Kind, b: Kind, span: Span, op: &str) {
        if (a == Kind::Number && b == Kind::String) || (a == Kind::String && b == Kind::Number) {
            let help = if b == Kind::String {
                "values are not converted: write the number without quotes"
            } else {
                "values are not converted: write the string in quotes, or compare with a number"
            };
            self.err(
                Code::TypeMismatch,
                format!("`{op}` compares a string with a number, which is never true"),
                span,
            )
            .help = Some(help.into());
        }
    }

    fn kind_of(&self, op: &Operand) -> Kind {
        match op {
            Operand::Literal(Literal::Number(_), _) => Kind::Number,
            Operand::Literal(Literal::String(_), _) => Kind::String,
            Operand::Count { .. } | Operand::Sum { .. } => Kind::Number,
            Operand::Path(p)
                if p.segments.len() == 1
                    && matches!(p.segments[0].as_str(), "score" | "fit" | "engagement") =>
            {
                Kind::Number
            }
            _ => Kind::Other,
        }
    }

    fn regex(&mut self, source: &str, ignore_case: bool, span: Span) -> Option<regex::Regex> {
        match regex::RegexBuilder::new(source)
            .case_insensitive(ignore_case)
            .size_limit(1 << 20)
            .build()
        {
            Ok(r) => Some(r),
            Err(e) => {
                let text = e.to_string();
                let detail = text
                    .lines()
                    .rev()
                    .find(|l| l.trim_start().starts_with("error:"))
                    .map_or(text.as_str(), |l| {
                        l.trim_start().trim_start_matches("error:").trim()
                    });
                self.err(
                    Code::BadRegex,
                    format!("invalid regex `/{source}/`: {detail}"),
                    span,
                )
                .help = Some("regexes use Rust regex syntax; escape `/` as `\\/`".into());
                None
            }
        }
    }

    fn expr(&mut self, op: &Operand, scope: Scope) -> Option<Expr> {
        match op {
            Operand::Literal(lit, span) => match lit {
                Literal::Regex { .. } => {
                    self.err(
                        Code::NotAllowed,
                        "a regex can only follow `matches`".into(),
                        *span,
                    );
                    None
                }
                Literal::Duration(_) => {
                    self.err(
                        Code::NotAllowed,
                        "a duration can only be used after `within`, `per` or `half_life`".into(),
                        *span,
                    );
                    None
                }
                other => literal_value(other).map(Expr::Const).or_else(|| {
                    self.err(
                        Code::NotAllowed,
                        "a list holds numbers, strings and booleans".into(),
                        *span,
                    );
                    None
                }),
            },
            Operand::Path(path) => self.path(path, scope),
            Operand::Count {
                pattern,
                filter,
                within,
                span,
            } => self.aggregate(pattern, filter.as_deref(), within, *span, scope, None),
            Operand::Sum {
                property,
                pattern,
                filter,
                within,
                span,
            } => {
                let prop = property_path(&property.segments);
                self.aggregate(pattern, filter.as_deref(), within, *span, scope, Some(prop))
            }
        }
    }

    fn aggregate(
        &mut self,
        pattern: &syntax::Pattern,
        filter: Option<&Cond>,
        within: &syntax::Duration,
        span: Span,
        scope: Scope,
        sum: Option<Box<[Box<str>]>>,
    ) -> Option<Expr> {
        let what = if sum.is_some() {
            "`sum(...)`"
        } else {
            "`count(...)`"
        };
        if scope != Scope::Stage {
            self.not_allowed(what, scope, span);
            return None;
        }
        let filter = filter.map(|f| self.pred(f, Scope::AggWhere));
        let on = Matcher::from(&pattern.kind);
        let index = self.program.aggregates.len();
        self.slots_mut(&on).aggregates.push(index);
        let kind = match sum {
            Some(property) => AggKind::Sum { property },
            None => AggKind::Count { keep: 1 },
        };
        let keep0 = if matches!(kind, AggKind::Count { .. }) {
            Some(1)
        } else {
            None
        };
        let key = self
            .files
            .get(span.file)
            .and_then(|f| f.text.get(span.start..span.end))
            .map(crate::format::respaced)
            .unwrap_or_default();
        self.program.aggregates.push(Aggregate {
            on,
            filter,
            within: within.micros,
            kind,
            span,
            key,
        });
        self.agg_keep.push(keep0);
        self.program.longest_window = self.program.longest_window.max(within.micros);
        self.program.time_dependent = true;
        Some(Expr::Agg(index))
    }

    fn path(&mut self, path: &syntax::Path, scope: Scope) -> Option<Expr> {
        let segs = &path.segments;
        let head = segs[0].as_str();
        if head == "lead" {
            if segs.len() == 1 {
                self.err(
                    Code::BareName,
                    "`lead` needs a trait name: `lead.title`".into(),
                    path.span,
                );
                return None;
            }
            if scope == Scope::AggWhere {
                self.err(
                    Code::NotAllowed,
                    format!("`{}` cannot be used in {}: an event is counted when it happens, from its own properties", path.dotted(), scope.describe()),
                    path.span,
                );
                return None;
            }
            return Some(Expr::Trait(to_path(&segs[1..])));
        }
        if segs.len() == 1 && matches!(head, "score" | "fit" | "engagement") {
            let e = match head {
                "score" => Expr::Score,
                "fit" => Expr::Fit,
                _ => Expr::Engagement,
            };
            match scope {
                Scope::Fit => {
                    self.err(
                        Code::NotAllowed,
                        format!("`{head}` cannot be used in a fit condition: fit depends only on the profile"),
                        path.span,
                    )
                    .help = Some("fit conditions use profile traits: `lead.title`".into());
                    return None;
                }
                Scope::AggWhere => {
                    self.err(
                        Code::NotAllowed,
                        format!("`{head}` cannot be used in {}: an event is counted when it happens, from its own properties", scope.describe()),
                        path.span,
                    );
                    return None;
                }
                _ => return Some(e),
            }
        }
        if scope.is_where() {
            return Some(Expr::Prop(property_path(segs)));
        }
        let dotted = path.dotted();
        let help = if scope == Scope::Fit {
            format!("a profile trait is written `lead.{dotted}`")
        } else {
            format!(
                "a profile trait is written `lead.{dotted}`; an event property is used after `where`, as in `event \"...\" where {dotted} == ...`"
            )
        };
        self.err(
            Code::BareName,
            format!("unknown name `{dotted}` in {}", scope.describe()),
            path.span,
        )
        .help = Some(help);
        None
    }
}

/// How many event times a count compared against the number `n` keeps: `n + 1`.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn count_keep_for(n: f64) -> usize {
    if n < 0.0 {
        1
    } else {
        (n.floor() as usize)
            .saturating_add(1)
            .min(COUNT_KEEP_DEFAULT * 100)
    }
}

fn to_path(segs: &[String]) -> Box<[Box<str>]> {
    segs.iter().map(|s| Box::<str>::from(s.as_str())).collect()
}

/// An event property path: `properties.x` is the explicit spelling of `x`.
fn property_path(segs: &[String]) -> Box<[Box<str>]> {
    if segs.len() > 1 && segs[0] == "properties" {
        to_path(&segs[1..])
    } else {
        to_path(segs)
    }
}

fn literal_value(lit: &Literal) -> Option<Value> {
    Some(match lit {
        Literal::Number(n) => serde_json::Number::from_f64(*n).map(Value::Number)?,
        Literal::String(s) => Value::String(s.clone()),
        Literal::Bool(b) => Value::Bool(*b),
        Literal::List(items) => Value::Array(
            items
                .iter()
                .map(literal_value)
                .collect::<Option<Vec<_>>>()?,
        ),
        Literal::Regex { .. } | Literal::Duration(_) => return None,
    })
}

fn refers_to_stage(pred: &Pred, index: usize) -> bool {
    match pred {
        Pred::Reached(i) => *i == index,
        Pred::And(ps) => ps.iter().any(|p| refers_to_stage(p, index)),
        _ => false,
    }
}

fn has_or_not(pred: &Pred) -> bool {
    match pred {
        Pred::Or(_) | Pred::Not(_) => true,
        Pred::And(ps) => ps.iter().any(has_or_not),
        _ => false,
    }
}

/// Two `event` predicates joined by `and` that name different events.
fn conflicting_events(pred: &Pred) -> Option<(String, String)> {
    let Pred::And(parts) = pred else { return None };
    let events: Vec<&Matcher> = parts
        .iter()
        .filter_map(|p| match p {
            Pred::Event(m, _) => Some(m),
            _ => None,
        })
        .collect();
    for (i, a) in events.iter().enumerate() {
        for b in &events[i + 1..] {
            if a != b {
                return Some((a.describe(), b.describe()));
            }
        }
    }
    None
}

fn collect_event_names(cond: &Cond, out: &mut Vec<(String, Span)>) {
    let mut add = |p: &syntax::Pattern| {
        if let PatternKind::Track(n) = &p.kind {
            out.push((n.clone(), p.span));
        }
    };
    match cond {
        Cond::And(ps) | Cond::Or(ps) => ps.iter().for_each(|p| collect_event_names(p, out)),
        Cond::Not(p) => collect_event_names(p, out),
        Cond::Event { pattern, .. } => add(pattern),
        Cond::Compare { left, test, .. } => {
            let mut ops = vec![left];
            match test {
                Some(Test::Between(a, b)) => ops.extend([a, b]),
                Some(Test::In(a) | Test::Cmp(_, a)) => ops.push(a),
                _ => {}
            }
            for o in ops {
                if let Operand::Count { pattern, .. } | Operand::Sum { pattern, .. } = o {
                    add(pattern);
                }
            }
        }
        Cond::Reached(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// A key set answers as a `BTreeSet` of the same keys, long keys included.
        #[test]
        fn key_sets_answer_as_a_set(
            keys in proptest::collection::vec("[ab]{0,3}|[ab]{62,66}", 0..8),
            asked in proptest::collection::vec("[ab]{0,3}|[ab]{62,66}", 0..16),
        ) {
            let set: KeySet = keys.iter().collect();
            let reference: std::collections::BTreeSet<&str> =
                keys.iter().map(String::as_str).collect();
            prop_assert!(set.iter().eq(reference.iter().copied()));
            for k in keys.iter().chain(&asked) {
                prop_assert_eq!(set.contains(k), reference.contains(k.as_str()), "{}", k);
            }
        }
    }
}
