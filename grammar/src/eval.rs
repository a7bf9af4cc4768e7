//! `program → evaluation`: the pure step function `(state, event, program) → (state', effects)`.
//!
//! No clocks, no I/O: replaying the same events in the same order gives the same state.

use crate::event::{CallKind, Event, Properties};
use crate::program::{AggKind, Expr, NotifyWhen, Pred, Program, SUM_KEEP};
use crate::stored::{Announced, AnnouncedKind};
use crate::syntax::CmpOp;
use crate::time::Micros;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use smallvec::SmallVec;

/// When each stage was reached, by stage index. Held in the lead's record itself (not
/// behind a pointer) for up to four stages.
pub type Reached = SmallVec<[Option<Micros>; 4]>;

/// Each conversion's state, by conversion index; inline for up to two conversions.
pub type Conversions = SmallVec<[Option<ConversionState>; 2]>;

/// Award times of one `limit` slot, oldest first; inline up to four awards.
pub type LimitWindow = SmallVec<[Micros; 4]>;

/// (time, value) entries of one aggregate slot, oldest first; inline up to two entries.
pub type AggregateWindow = SmallVec<[(Micros, f64); 2]>;

/// The first time a conversion happened, and its running count and value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversionState {
    /// When the first match was processed (its own event time).
    pub at: Micros,
    /// How many matches.
    pub count: u64,
    /// The summed value.
    pub value: f64,
}

/// Everything kept about one lead. Its size is bounded by the rules, never by the number of
/// events (see the language reference, "How much history is kept").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct LeadState {
    /// Profile traits (identify), with the company (group) under `company`.
    pub profile: Properties,
    /// Current fit.
    pub fit: f64,
    /// Current engagement (as of `clock`).
    pub engagement: f64,
    /// The lead's clock: the latest time it was evaluated at (`None` for a new lead).
    pub clock: Option<Micros>,
    /// Earliest event time.
    pub first_seen: Micros,
    /// Latest event time.
    pub last_seen: Micros,
    /// `context.campaign.source` of the first call that arrived.
    pub source: Option<compact_str::CompactString>,
    /// Accepted calls.
    pub events: u64,
    /// When each stage was reached, by stage index.
    pub reached: Reached,
    /// Each conversion's first time, count and value, by conversion index.
    pub conversions: Conversions,
    /// Score rules (by index) whose `once` award was given.
    pub once_fired: SmallVec<[u32; 4]>,
    /// Award times per `limit` slot, oldest first.
    pub limits: SmallVec<[LimitWindow; 3]>,
    /// (time, value) entries per aggregate slot, oldest first.
    pub aggregates: SmallVec<[AggregateWindow; 1]>,
    /// Every (stage or conversion, target) already announced, by name, whatever rules were
    /// in force then: never announced again, never pruned.
    #[serde(default)]
    pub announced: Vec<Announced>,
    /// Until the clock reaches this time, windowed history older than its window is kept
    /// (0: no hold): set when a late event is awarded or counted, so a burst of late events
    /// is held to `limit` and counted among themselves (SPEC §2).
    #[serde(default)]
    pub hold_until: Micros,
}

impl LeadState {
    /// A new lead: an empty profile and the fit of an empty profile.
    pub fn new(program: &Program) -> Self {
        let mut state = LeadState {
            reached: smallvec::smallvec![None; program.stages.len()],
            conversions: smallvec::smallvec![None; program.conversions.len()],
            limits: smallvec::smallvec![LimitWindow::new(); program.limit_slots],
            aggregates: smallvec::smallvec![AggregateWindow::new(); program.aggregates.len()],
            ..LeadState::default()
        };
        state.fit = compute_fit(program, &state.profile);
        state
    }

    /// Fit + engagement.
    pub fn score(&self) -> f64 {
        self.fit + self.engagement
    }

    /// The last-declared stage reached, if any.
    pub fn stage<'p>(&self, program: &'p Program) -> Option<&'p str> {
        program
            .stages
            .iter()
            .zip(&self.reached)
            .rev()
            .find(|(_, r)| r.is_some())
            .map(|(s, _)| s.name.as_str())
    }

    /// Records as announced every notification the stages and conversions already reached
    /// asked for: for a state kept before announcements were recorded, when each of them was
    /// announced as it happened.
    pub fn assume_announced(&mut self, program: &Program) {
        let mut done = Vec::new();
        for (stage, at) in self.reached.iter().enumerate() {
            if let Some(at) = at {
                done.push(Transition::StageReached { stage, at: *at });
            }
        }
        for (conversion, made) in self.conversions.iter().enumerate() {
            if let Some(made) = made {
                done.push(Transition::Converted {
                    conversion,
                    at: made.at,
                });
            }
        }
        announce(program, self, &done);
    }

    /// Makes the vectors fit the program (after a rule change adds stages or slots).
    pub fn fit_to(&mut self, program: &Program) {
        self.reached.resize(program.stages.len(), None);
        self.conversions.resize(program.conversions.len(), None);
        self.limits.resize(program.limit_slots, LimitWindow::new());
        self.aggregates
            .resize(program.aggregates.len(), AggregateWindow::new());
    }
}

/// A change one step made that others may be told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Transition {
    /// A stage (index) was reached at this time.
    StageReached {
        /// Stage index.
        stage: usize,
        /// When.
        at: Micros,
    },
    /// A conversion (index) happened for the first time.
    Converted {
        /// Conversion index.
        conversion: usize,
        /// When.
        at: Micros,
    },
}

impl Transition {
    /// When it happened.
    pub fn at(&self) -> Micros {
        match self {
            Transition::StageReached { at, .. } | Transition::Converted { at, .. } => *at,
        }
    }
}

/// Why a step did what it did, for `explain` and for the latest rule hits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TraceEntry {
    /// Decay took engagement from one value to another.
    Decayed {
        /// Before.
        from: f64,
        /// After.
        to: f64,
    },
    /// Fit was recomputed.
    Fit {
        /// Before.
        from: f64,
        /// After.
        to: f64,
    },
    /// A score rule gave points.
    Scored {
        /// Rule index.
        rule: usize,
        /// Points given after clamping.
        points: f64,
    },
    /// A score rule matched but its award was refused.
    Refused {
        /// Rule index.
        rule: usize,
        /// `once` or `limit`.
        reason: String,
    },
    /// The cap or the floor clamped engagement.
    Clamped {
        /// Before.
        from: f64,
        /// After.
        to: f64,
    },
}

/// Collects trace entries when asked to.
pub trait Tracer {
    /// Records one entry.
    fn record(&mut self, entry: TraceEntry);
}

/// A tracer that records nothing (the fast path).
pub struct NoTrace;

impl Tracer for NoTrace {
    #[inline]
    fn record(&mut self, _entry: TraceEntry) {}
}

impl Tracer for Vec<TraceEntry> {
    fn record(&mut self, entry: TraceEntry) {
        self.push(entry);
    }
}

/// Computes fit from a profile.
pub fn compute_fit(program: &Program, profile: &Properties) -> f64 {
    let ctx = Ctx {
        profile,
        fit: 0.0,
        engagement: 0.0,
        event: None,
        reached: &[],
        aggregates: &[],
        program,
        now: 0,
    };
    program
        .fits
        .iter()
        .filter(|f| ctx.holds(&f.when))
        .map(|f| f.points)
        .sum()
}

fn clamp(program: &Program, engagement: f64) -> f64 {
    let mut e = engagement;
    if let Some(cap) = program.cap {
        e = e.min(cap);
    }
    if let Some(floor) = program.floor {
        e = e.max(floor);
    }
    e
}

fn clamp_traced(program: &Program, state: &mut LeadState, tracer: &mut impl Tracer) {
    let clamped = clamp(program, state.engagement);
    if clamped != state.engagement {
        tracer.record(TraceEntry::Clamped {
            from: state.engagement,
            to: clamped,
        });
        state.engagement = clamped;
    }
}

/// Advances the lead's clock to `at` (never backwards), decaying engagement.
fn advance(program: &Program, state: &mut LeadState, at: Micros, tracer: &mut impl Tracer) {
    let Some(clock) = state.clock else {
        state.clock = Some(at);
        return;
    };
    if at <= clock {
        return;
    }
    if let Some(half_life) = program.half_life {
        #[allow(clippy::cast_precision_loss)]
        let halves = (at - clock) as f64 / half_life as f64;
        let before = state.engagement;
        state.engagement *= (-halves).exp2();
        if before != state.engagement {
            tracer.record(TraceEntry::Decayed {
                from: before,
                to: state.engagement,
            });
        }
    }
    state.clock = Some(at);
}

/// Applies one accepted call to a lead (SPEC §3), appending the transitions it caused.
pub fn apply(program: &Program, state: &mut LeadState, event: &Event, out: &mut Vec<Transition>) {
    apply_traced(program, state, event, out, &mut NoTrace);
}

/// [`apply`], recording why each thing happened.
pub fn apply_traced(
    program: &Program,
    state: &mut LeadState,
    event: &Event,
    out: &mut Vec<Transition>,
    tracer: &mut impl Tracer,
) {
    let t = event.time;
    // 1. decay to the event's time (never backwards); times seen
    if state.clock.is_none() {
        state.first_seen = t;
        state.last_seen = t;
        state.source = event.source.clone();
    } else {
        state.first_seen = state.first_seen.min(t);
        state.last_seen = state.last_seen.max(t);
    }
    advance(program, state, t, tracer);
    clamp_traced(program, state, tracer);
    state.events += 1;

    // 2. identify / group: merge traits, recompute fit
    match event.kind {
        CallKind::Identify => {
            state.profile.merge_traits(&event.properties);
            refit(program, state, tracer);
        }
        CallKind::Group => {
            let company = state
                .profile
                .get_or_insert_with("company", || Value::Object(Map::new()));
            if !company.is_object() {
                *company = Value::Object(Map::new());
            }
            if let Value::Object(map) = company {
                for (k, v) in &event.properties {
                    if v.is_null() {
                        map.remove(k);
                    } else {
                        map.insert(k.to_owned(), v.clone());
                    }
                }
            }
            refit(program, state, tracer);
        }
        _ => {}
    }

    let slots = program.slots(event);
    if let Some(slots) = slots {
        // 3. score rules in file order
        for &i in &slots.scores {
            let rule = &program.scores[i];
            if let Some(filter) = &rule.filter {
                if !ctx(program, state, Some(event), t).holds(filter) {
                    continue;
                }
            }
            if rule.once {
                #[allow(clippy::cast_possible_truncation)]
                let id = i as u32;
                if state.once_fired.contains(&id) {
                    tracer.record(TraceEntry::Refused {
                        rule: i,
                        reason: "once: already given".into(),
                    });
                    continue;
                }
                state.once_fired.push(id);
            }
            if let Some((n, per, slot)) = rule.limit {
                let awards = &mut state.limits[slot];
                let in_window = awards.iter().filter(|&&a| a > t - per && a <= t).count();
                if in_window >= n {
                    tracer.record(TraceEntry::Refused {
                        rule: i,
                        reason: format!(
                            "limit: {in_window} awards already in the last {}",
                            crate::format_duration(per)
                        ),
                    });
                    continue;
                }
                insert_sorted(awards, t);
                let clock = state.clock.unwrap_or(t);
                let horizon = clock.saturating_sub(per.saturating_mul(2));
                if t <= horizon {
                    // a late award: kept until the clock has moved on by the period
                    state.hold_until = state.hold_until.max(clock.saturating_add(per));
                }
                let holding = clock < state.hold_until;
                if !holding {
                    awards.retain(|a| *a > horizon);
                }
                // room for the latest awards near the clock, and, while holding, as many
                // late ones
                let keep = n.saturating_mul(if holding { 3 } else { 2 });
                if awards.len() > keep {
                    awards.drain(..awards.len() - keep);
                }
            }
            let before = state.engagement;
            state.engagement = clamp(program, state.engagement + rule.points);
            tracer.record(TraceEntry::Scored {
                rule: i,
                points: state.engagement - before,
            });
        }
        // aggregates: remember the matching event
        for &a in &slots.aggregates {
            let agg = &program.aggregates[a];
            if let Some(filter) = &agg.filter {
                if !ctx(program, state, Some(event), t).holds(filter) {
                    continue;
                }
            }
            let value = match &agg.kind {
                AggKind::Count { .. } => 1.0,
                AggKind::Sum { property } => match lookup_in(&event.properties, property) {
                    Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
                    _ => continue,
                },
            };
            let entries = &mut state.aggregates[a];
            let pos = entries.partition_point(|&(at, _)| at <= t);
            entries.insert(pos, (t, value));
            let clock = state.clock.unwrap_or(t);
            let horizon = clock.saturating_sub(agg.within.saturating_mul(2));
            if t <= horizon {
                // a late event: counted among the late ones until the clock moves on
                state.hold_until = state.hold_until.max(clock.saturating_add(agg.within));
            }
            let holding = clock < state.hold_until;
            if !holding && entries.first().is_some_and(|&(at, _)| at <= horizon) {
                entries.retain(|e| e.0 > horizon);
            }
            match agg.kind {
                AggKind::Count { keep } => {
                    let keep = if holding {
                        keep.saturating_mul(2)
                    } else {
                        keep
                    };
                    if entries.len() > keep {
                        entries.drain(..entries.len() - keep);
                    }
                }
                AggKind::Sum { .. } => {
                    while entries.len() > SUM_KEEP {
                        merge_closest(entries);
                    }
                }
            }
        }
    }

    // 4. stages
    evaluate_stages(program, state, Some(event), t, out);

    // 5. conversions
    if let Some(slots) = slots {
        for &c in &slots.conversions {
            let conv = &program.conversions[c];
            if let Some(filter) = &conv.filter {
                if !ctx(program, state, Some(event), t).holds(filter) {
                    continue;
                }
            }
            let value = conv
                .value
                .as_ref()
                .and_then(|p| lookup_in(&event.properties, p))
                .and_then(Value::as_f64)
                .unwrap_or(0.0);
            match &mut state.conversions[c] {
                Some(cs) => {
                    cs.count += 1;
                    cs.value += value;
                }
                slot @ None => {
                    *slot = Some(ConversionState {
                        at: t,
                        count: 1,
                        value,
                    });
                    out.push(Transition::Converted {
                        conversion: c,
                        at: t,
                    });
                }
            }
        }
    }
}

/// A tick at time `at` with no event (SPEC §6 `decay`): decay to `at`, then the stages.
pub fn tick(program: &Program, state: &mut LeadState, at: Micros, out: &mut Vec<Transition>) {
    if state.clock.is_none() {
        return;
    }
    advance(program, state, at, &mut NoTrace);
    state.engagement = clamp(program, state.engagement);
    let now = state.clock.unwrap_or(at);
    evaluate_stages(program, state, None, now, out);
}

fn evaluate_stages(
    program: &Program,
    state: &mut LeadState,
    event: Option<&Event>,
    t: Micros,
    out: &mut Vec<Transition>,
) {
    for (i, stage) in program.stages.iter().enumerate() {
        if state.reached[i].is_some() {
            continue;
        }
        if ctx(program, state, event, t).holds(&stage.when) {
            state.reached[i] = Some(t);
            out.push(Transition::StageReached { stage: i, at: t });
        }
    }
}

fn refit(program: &Program, state: &mut LeadState, tracer: &mut impl Tracer) {
    let fit = compute_fit(program, &state.profile);
    if fit != state.fit {
        tracer.record(TraceEntry::Fit {
            from: state.fit,
            to: fit,
        });
        state.fit = fit;
    }
}

fn insert_sorted(v: &mut LimitWindow, t: Micros) {
    let pos = v.partition_point(|&a| a <= t);
    v.insert(pos, t);
}

/// Merges the two entries closest in time; the merged entry carries the later time.
pub(crate) fn merge_closest(entries: &mut AggregateWindow) {
    let Some(best) =
        (0..entries.len().saturating_sub(1)).min_by_key(|&i| entries[i + 1].0 - entries[i].0)
    else {
        return;
    };
    let (_, v) = entries.remove(best);
    entries[best].1 += v;
}

/// The notifications a step's transitions produce: (notify line index, transition), stages in
/// declaration order then conversions, each in the order of the `notify` lines. A target gets
/// exactly one notification per transition, even when several of its lines ask for it (the
/// index is that of its first such line).
pub fn notifications(program: &Program, transitions: &[Transition]) -> Vec<(usize, Transition)> {
    let mut out = Vec::new();
    let stages = transitions
        .iter()
        .filter(|t| matches!(t, Transition::StageReached { .. }));
    let convs = transitions
        .iter()
        .filter(|t| matches!(t, Transition::Converted { .. }));
    for t in stages.chain(convs) {
        let mut asked: Vec<&str> = Vec::new();
        for (n, rule) in program.notifies.iter().enumerate() {
            let wants = match (&rule.when, t) {
                (NotifyWhen::Reached(s), Transition::StageReached { stage, .. }) => s == stage,
                (NotifyWhen::Converted(None), Transition::Converted { .. }) => true,
                (NotifyWhen::Converted(Some(c)), Transition::Converted { conversion, .. }) => {
                    c == conversion
                }
                _ => false,
            };
            if wants && !asked.contains(&rule.target.as_str()) {
                asked.push(rule.target.as_str());
                out.push((n, *t));
            }
        }
    }
    out
}

/// The notifications of a step's transitions ([`notifications`]) that were not announced
/// before, recorded in the lead's `announced` set as they are returned: a (stage or
/// conversion, target) is announced once per lead, whatever rule changes come between.
pub fn announce(
    program: &Program,
    state: &mut LeadState,
    transitions: &[Transition],
) -> Vec<(usize, Transition)> {
    let mut out = notifications(program, transitions);
    out.retain(|(n, t)| {
        let (kind, name) = match *t {
            Transition::StageReached { stage, .. } => (
                AnnouncedKind::Stage,
                program.stages.get(stage).map(|s| s.name.as_str()),
            ),
            Transition::Converted { conversion, .. } => (
                AnnouncedKind::Conversion,
                program.conversions.get(conversion).map(|c| c.name.as_str()),
            ),
        };
        let (Some(name), Some(rule)) = (name, program.notifies.get(*n)) else {
            return false;
        };
        let target = rule.target.as_str();
        if state
            .announced
            .iter()
            .any(|a| a.kind == kind && a.name == name && a.target == target)
        {
            return false;
        }
        state.announced.push(Announced {
            kind,
            name: name.into(),
            target: target.into(),
        });
        true
    });
    out
}

fn ctx<'a>(
    program: &'a Program,
    state: &'a LeadState,
    event: Option<&'a Event>,
    now: Micros,
) -> Ctx<'a> {
    Ctx {
        profile: &state.profile,
        fit: state.fit,
        engagement: state.engagement,
        event,
        reached: &state.reached,
        aggregates: &state.aggregates,
        program,
        now,
    }
}

/// Looks up a dotted path in an event's properties or a profile; `null` counts as missing.
#[inline]
pub fn lookup_in<'a>(properties: &'a Properties, path: &[Box<str>]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    follow(properties.get(first)?, rest)
}

/// The value at `rest` under `v`; `null` counts as missing.
#[inline]
fn follow<'a>(mut v: &'a Value, rest: &[Box<str>]) -> Option<&'a Value> {
    for seg in rest {
        v = v.as_object()?.get(&**seg)?;
    }
    (!v.is_null()).then_some(v)
}

/// A value during evaluation.
#[derive(Debug, Clone, Copy)]
pub enum V<'a> {
    /// Missing or null.
    Missing,
    /// A number.
    Num(f64),
    /// A string.
    Str(&'a str),
    /// A boolean.
    Bool(bool),
    /// A list.
    List(&'a [Value]),
    /// An object.
    Obj(&'a Map<String, Value>),
}

impl<'a> V<'a> {
    fn of(v: Option<&'a Value>) -> Self {
        match v {
            None | Some(Value::Null) => V::Missing,
            Some(Value::Number(n)) => n.as_f64().map_or(V::Missing, V::Num),
            Some(Value::String(s)) => V::Str(s),
            Some(Value::Bool(b)) => V::Bool(*b),
            Some(Value::Array(a)) => V::List(a),
            Some(Value::Object(o)) => V::Obj(o),
        }
    }
}

/// Folds constant comparisons at compile time.
pub(crate) struct ConstCtx;

impl ConstCtx {
    pub(crate) fn value<'a>(&self, v: &'a Value) -> V<'a> {
        V::of(Some(v))
    }
}

fn json_eq(a: &V<'_>, b: &Value) -> bool {
    eq(a, &V::of(Some(b)))
}

fn eq(a: &V<'_>, b: &V<'_>) -> bool {
    match (a, b) {
        (V::Num(x), V::Num(y)) => x == y,
        (V::Str(x), V::Str(y)) => x == y,
        (V::Bool(x), V::Bool(y)) => x == y,
        (V::List(x), V::List(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y.iter())
                    .all(|(p, q)| json_eq(&V::of(Some(p)), q))
        }
        (V::Obj(x), V::Obj(y)) => x == y,
        _ => false,
    }
}

/// Compares two values with an operator: false on missing values and across types.
pub fn compare_values(op: CmpOp, a: &V<'_>, b: &V<'_>) -> bool {
    match op {
        CmpOp::Eq => eq(a, b),
        CmpOp::Ne => !eq(a, b),
        CmpOp::Lt | CmpOp::Le | CmpOp::Gt | CmpOp::Ge => {
            let ord = match (a, b) {
                (V::Num(x), V::Num(y)) => x.partial_cmp(y),
                (V::Str(x), V::Str(y)) => Some(x.cmp(y)),
                _ => None,
            };
            let Some(ord) = ord else { return false };
            match op {
                CmpOp::Lt => ord.is_lt(),
                CmpOp::Le => ord.is_le(),
                CmpOp::Gt => ord.is_gt(),
                _ => ord.is_ge(),
            }
        }
        CmpOp::Contains => match (a, b) {
            (V::Str(x), V::Str(y)) => x.contains(y),
            (V::List(items), needle) if !matches!(needle, V::Missing) => {
                items.iter().any(|i| eq(&V::of(Some(i)), needle))
            }
            _ => false,
        },
        CmpOp::StartsWith => matches!((a, b), (V::Str(x), V::Str(y)) if x.starts_with(y)),
        CmpOp::EndsWith => matches!((a, b), (V::Str(x), V::Str(y)) if x.ends_with(y)),
        CmpOp::Matches => false,
    }
}

/// The values a condition reads.
pub struct Ctx<'a> {
    profile: &'a Properties,
    fit: f64,
    engagement: f64,
    event: Option<&'a Event>,
    reached: &'a [Option<Micros>],
    aggregates: &'a [AggregateWindow],
    program: &'a Program,
    now: Micros,
}

impl<'a> Ctx<'a> {
    fn value(&self, e: &'a Expr) -> V<'a> {
        match e {
            Expr::Const(v) => V::of(Some(v)),
            Expr::Prop(path) => V::of(self.event.and_then(|ev| lookup_in(&ev.properties, path))),
            Expr::Trait(path) => V::of(lookup_in(self.profile, path)),
            Expr::Score => V::Num(self.fit + self.engagement),
            Expr::Fit => V::Num(self.fit),
            Expr::Engagement => V::Num(self.engagement),
            Expr::Agg(i) => V::Num(self.aggregate(*i)),
        }
    }

    fn aggregate(&self, i: usize) -> f64 {
        let Some(agg) = self.program.aggregates.get(i) else {
            return 0.0;
        };
        let Some(entries) = self.aggregates.get(i) else {
            return 0.0;
        };
        let from = self.now.saturating_sub(agg.within);
        entries
            .iter()
            .filter(|(at, _)| *at > from && *at <= self.now)
            .map(|(_, v)| v)
            .sum()
    }

    /// Whether a condition holds.
    pub fn holds(&self, p: &'a Pred) -> bool {
        match p {
            Pred::Const(b) => *b,
            Pred::And(ps) => ps.iter().all(|p| self.holds(p)),
            Pred::Or(ps) => ps.iter().any(|p| self.holds(p)),
            Pred::Not(p) => !self.holds(p),
            Pred::Cmp(op, a, b) => compare_values(*op, &self.value(a), &self.value(b)),
            Pred::Matches(a, re) => matches!(self.value(a), V::Str(s) if re.is_match(s)),
            Pred::Between(x, lo, hi) => {
                let x = self.value(x);
                compare_values(CmpOp::Ge, &x, &self.value(lo))
                    && compare_values(CmpOp::Le, &x, &self.value(hi))
            }
            Pred::In(x, list) => match self.value(list) {
                V::List(items) => {
                    let x = self.value(x);
                    !matches!(x, V::Missing) && items.iter().any(|i| eq(&x, &V::of(Some(i))))
                }
                _ => false,
            },
            Pred::Exists(x) => !matches!(self.value(x), V::Missing),
            Pred::Truthy(x) => matches!(self.value(x), V::Bool(true)),
            Pred::Event(m, filter) => match self.event {
                Some(ev) if m.matches(ev) => filter.as_ref().is_none_or(|f| self.holds(f)),
                _ => false,
            },
            Pred::Reached(i) => self.reached.get(*i).is_some_and(Option::is_some),
        }
    }
}

impl<'a> Ctx<'a> {
    /// The values a condition reads for this lead at time `now`, while `event` is processed
    /// (`None` in a tick). For `explain` and rule tests; the step function builds its own.
    pub fn for_state(
        program: &'a Program,
        state: &'a LeadState,
        event: Option<&'a Event>,
        now: Micros,
    ) -> Self {
        ctx(program, state, event, now)
    }

    /// The value of an expression as JSON; `None` when it is missing (or `null`).
    pub fn value_json(&self, e: &'a Expr) -> Option<Value> {
        match self.value(e) {
            V::Missing => None,
            V::Num(n) => serde_json::Number::from_f64(n).map(Value::Number),
            V::Str(s) => Some(Value::String(s.to_string())),
            V::Bool(b) => Some(Value::Bool(b)),
            V::List(items) => Some(Value::Array(items.to_vec())),
            V::Obj(map) => Some(Value::Object(map.clone())),
        }
    }
}
