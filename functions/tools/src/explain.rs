//! `leadscore explain`: which rule gave which points when, and why each stage was or was not
//! reached, for one lead of a replayed events file.
//!
//! The engine keeps each lead's accepted calls; the lead's steps are evaluated again here with
//! a tracer, in the order the engine evaluated them: when leads merged, the combined history
//! up to the last merge in time order, then the later calls as they arrived (SPEC §5).

use leadscore_core::ingest::call::Call;
use leadscore_core::output::{lead_object, score_value};
use leadscore_core::store::engine::{Engine, Kept};
use leadscore_rules::eval::{self, Ctx, LeadState, TraceEntry, Transition};
use leadscore_rules::explain::{explain_pred, show_value, PredNode};
use leadscore_rules::time::{format_rfc3339, Micros};
use leadscore_rules::{CallKind, Event, Program};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// What happened at one step, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Happened {
    /// Decay took engagement from one value to another.
    Decayed {
        /// Before.
        from: f64,
        /// After.
        to: f64,
    },
    /// Fit was recomputed after the profile changed.
    Fit {
        /// Before.
        from: f64,
        /// After.
        to: f64,
    },
    /// A score rule matched and gave points.
    Scored {
        /// The rule's name.
        rule: String,
        /// The points it gave (after the cap or floor).
        points: f64,
        /// The points it is written with.
        written: f64,
    },
    /// A score rule matched and its award was refused.
    Refused {
        /// The rule's name.
        rule: String,
        /// Its points.
        points: f64,
        /// `once` or `limit`.
        kind: String,
        /// Why, in words.
        detail: String,
    },
    /// The cap or the floor clamped engagement.
    Clamped {
        /// Before.
        from: f64,
        /// After.
        to: f64,
    },
    /// A stage was reached.
    Reached {
        /// The stage.
        stage: String,
    },
    /// A conversion matched.
    Converted {
        /// The conversion.
        name: String,
        /// Whether it was the first time.
        first: bool,
        /// Its count after this step.
        count: u64,
    },
}

/// One event of the lead and what it did.
#[derive(Debug, Clone, PartialEq)]
pub struct StepExplain {
    /// The event's time.
    pub at: Micros,
    /// The line of the events file, when known.
    pub line: Option<usize>,
    /// The call type.
    pub kind: CallKind,
    /// The event as people read it (`page /pricing`, `"Form Submitted" {"form": "demo"}`).
    pub event: String,
    /// What happened, in order.
    pub happened: Vec<Happened>,
    /// The lead's numbers after the step.
    pub score: f64,
    /// Fit after the step.
    pub fit: f64,
    /// Engagement after the step.
    pub engagement: f64,
}

/// Why a stage was or was not reached.
#[derive(Debug, Clone, PartialEq)]
pub struct StageExplain {
    /// The stage.
    pub name: String,
    /// When it was reached (the engine's time), if it was.
    pub reached: Option<Micros>,
    /// The condition part by part: at the step that reached it, or at the end.
    pub condition: PredNode,
    /// A remark (a time kept from before a merge).
    pub note: Option<String>,
}

/// The explanation of one lead.
#[derive(Debug, Clone)]
pub struct Explanation {
    /// The id asked for.
    pub asked: String,
    /// The lead it stands for (after merges).
    pub lead: String,
    /// The lead's steps.
    pub steps: Vec<StepExplain>,
    /// Each stage, in declaration order.
    pub stages: Vec<StageExplain>,
    /// Remarks about the replay (merges).
    pub notes: Vec<String>,
    /// The lead object of the replay contract.
    pub lead_object: Value,
}

/// Why a lead cannot be explained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExplainError {
    /// No lead with this id; the closest ids and a few others.
    UnknownLead {
        /// The id asked for.
        id: String,
        /// A likely misspelling's correct id.
        did_you_mean: Option<String>,
        /// A few lead ids, sorted.
        some: Vec<String>,
    },
    /// The engine keeps line references, not calls.
    NotInMemory,
}

impl std::fmt::Display for ExplainError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExplainError::UnknownLead { id, .. } => write!(f, "no lead `{id}` in the events"),
            ExplainError::NotInMemory => {
                write!(f, "explain needs an engine that keeps the calls in memory")
            }
        }
    }
}

/// The leads' calls in the order the engine evaluated the final state: up to the last merge
/// that absorbed a lead, the history in time order; after it, arrival order.
fn evaluation_order(mut calls: Vec<(u64, Arc<Call>)>) -> (Vec<(u64, Arc<Call>)>, Option<u64>) {
    calls.sort_by_key(|(seq, _)| *seq);
    let mut exists: HashSet<String> = HashSet::new();
    let mut aliases: HashMap<String, String> = HashMap::new();
    let mut last_merge = None;
    for (seq, call) in &calls {
        let key = aliases
            .get(call.lead_id())
            .cloned()
            .unwrap_or_else(|| call.lead_id().to_string());
        let other = match call.event.kind {
            CallKind::Alias => call.previous_id.as_deref(),
            _ if call.user_id.is_some() => call.anonymous_id.as_deref(),
            _ => None,
        };
        if let Some(other) = other {
            if other != key && !aliases.contains_key(other) {
                aliases.insert(other.to_string(), key.clone());
                if exists.remove(other) {
                    for target in aliases.values_mut() {
                        if target == other {
                            *target = key.clone();
                        }
                    }
                    last_merge = Some(*seq);
                }
            }
        }
        exists.insert(key);
    }
    if let Some(m) = last_merge {
        let split = calls.partition_point(|(seq, _)| *seq < m);
        calls[..split].sort_by_key(|(seq, call)| (call.event.time, *seq));
    }
    (calls, last_merge)
}

fn describe_event(event: &Event) -> String {
    let props = |skip: &[&str]| {
        let map: serde_json::Map<String, Value> = event
            .properties
            .iter()
            .filter(|(k, _)| !skip.contains(k))
            .map(|(k, v)| (k.to_owned(), v.clone()))
            .collect();
        if map.is_empty() {
            return String::new();
        }
        let mut text = Value::Object(map).to_string();
        if text.chars().count() > 80 {
            text = text.chars().take(77).collect::<String>() + "...";
        }
        format!(" {text}")
    };
    match event.kind {
        CallKind::Track => format!("{:?}{}", event.name, props(&[])),
        CallKind::Page => {
            let path = event
                .properties
                .get("path")
                .and_then(Value::as_str)
                .unwrap_or("");
            format!("page {path}").trim_end().to_string()
        }
        CallKind::Screen => {
            let name = event
                .properties
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("");
            format!("screen {name}").trim_end().to_string()
        }
        CallKind::Identify => format!("identify{}", props(&[])),
        CallKind::Group => format!("group{}", props(&[])),
        CallKind::Alias => "alias".to_string(),
    }
}

fn split_reason(reason: &str) -> (String, String) {
    match reason.split_once(": ") {
        Some((k, d)) => (k.to_string(), d.to_string()),
        None => (reason.to_string(), String::new()),
    }
}

/// Explains one lead of an engine built with [`Engine::new`] and [`Engine::process`] (the
/// calls kept in memory). `lines` gives the events file's line of a `messageId`, when known.
pub fn explain_lead(
    engine: &Engine<'_>,
    id: &str,
    lines: &HashMap<String, usize>,
) -> Result<Explanation, ExplainError> {
    let program: &Program = engine.program();
    let lead = engine.resolve(id).to_string();
    let Some(record) = engine.lead(&lead) else {
        let mut ids: Vec<&str> = engine.leads().map(|(k, _)| k).collect();
        ids.sort_unstable();
        let did_you_mean =
            leadscore_rules::diagnostic::did_you_mean(id, ids.iter().copied()).map(str::to_string);
        return Err(ExplainError::UnknownLead {
            id: id.to_string(),
            did_you_mean,
            some: ids.iter().take(5).map(|s| (*s).to_string()).collect(),
        });
    };
    let mut calls = Vec::new();
    for (seq, kept) in engine.history(&lead) {
        match kept {
            Kept::Call(call) => calls.push((seq, call)),
            Kept::Line { .. } => return Err(ExplainError::NotInMemory),
        }
    }
    let (calls, last_merge) = evaluation_order(calls);
    let mut notes = Vec::new();
    if let Some(m) = last_merge {
        if let Some((_, call)) = calls.iter().find(|(s, _)| *s == m) {
            let at = lines
                .get(call.message_id.as_str())
                .map_or_else(String::new, |l| format!(" (line {l})"));
            notes.push(format!(
                "identities merged at {}{at}: the combined history before it is evaluated in time order",
                format_rfc3339(call.event.time)
            ));
        }
    }

    let mut state = LeadState::new(program);
    let mut steps = Vec::new();
    let mut at_reach: Vec<Option<PredNode>> = vec![None; program.stages.len()];
    for (_, call) in &calls {
        let event = &call.event;
        let mut trace: Vec<TraceEntry> = Vec::new();
        let mut transitions = Vec::new();
        let before = state.clone();
        eval::apply_traced(program, &mut state, event, &mut transitions, &mut trace);
        let mut happened: Vec<Happened> = trace
            .into_iter()
            .map(|entry| match entry {
                TraceEntry::Decayed { from, to } => Happened::Decayed { from, to },
                TraceEntry::Fit { from, to } => Happened::Fit { from, to },
                TraceEntry::Scored { rule, points } => {
                    let r = program.scores.get(rule);
                    Happened::Scored {
                        rule: r.map_or_else(String::new, |r| r.name.clone()),
                        points,
                        written: r.map_or(points, |r| r.points),
                    }
                }
                TraceEntry::Refused { rule, reason } => {
                    let r = program.scores.get(rule);
                    let (kind, detail) = split_reason(&reason);
                    Happened::Refused {
                        rule: r.map_or_else(String::new, |r| r.name.clone()),
                        points: r.map_or(0.0, |r| r.points),
                        kind,
                        detail,
                    }
                }
                TraceEntry::Clamped { from, to } => Happened::Clamped { from, to },
            })
            .collect();
        for t in &transitions {
            match t {
                Transition::StageReached { stage, .. } => {
                    // the condition as the stage saw it: later stages of this step not yet
                    let mut seen = state.clone();
                    for later in transitions.iter() {
                        if let Transition::StageReached { stage: s, .. } = later {
                            if s >= stage {
                                seen.reached[*s] = None;
                            }
                        }
                    }
                    if let Some(rule) = program.stages.get(*stage) {
                        let ctx = Ctx::for_state(program, &seen, Some(event), event.time);
                        at_reach[*stage] = Some(explain_pred(&ctx, program, &rule.when));
                        happened.push(Happened::Reached {
                            stage: rule.name.clone(),
                        });
                    }
                }
                Transition::Converted { .. } => {}
            }
        }
        // conversions: every match, first or not
        for (i, conv) in program.conversions.iter().enumerate() {
            let (Some(after), old) = (&state.conversions[i], before.conversions.get(i)) else {
                continue;
            };
            let old_count = old.and_then(Option::as_ref).map_or(0, |c| c.count);
            if after.count > old_count {
                happened.push(Happened::Converted {
                    name: conv.name.clone(),
                    first: old_count == 0,
                    count: after.count,
                });
            }
        }
        steps.push(StepExplain {
            at: event.time,
            line: lines.get(call.message_id.as_str()).copied(),
            kind: event.kind,
            event: describe_event(event),
            happened,
            score: state.score(),
            fit: state.fit,
            engagement: state.engagement,
        });
    }

    let last = calls.last().map(|(_, c)| &c.event);
    let now = last.map_or(0, |e| e.time);
    let mut stages = Vec::new();
    for (i, rule) in program.stages.iter().enumerate() {
        let engine_at = record.state.reached.get(i).copied().flatten();
        let mine = state.reached.get(i).copied().flatten();
        let condition = match at_reach[i].take() {
            Some(node) => node,
            None => {
                let ctx = Ctx::for_state(program, &state, last, now);
                explain_pred(&ctx, program, &rule.when)
            }
        };
        let note = match (engine_at, mine) {
            (Some(a), Some(b)) if a != b => Some(format!(
                "kept from before the merge; the combined history reaches it at {}",
                format_rfc3339(b)
            )),
            (Some(_), None) => Some("kept from before the merge".to_string()),
            _ => None,
        };
        stages.push(StageExplain {
            name: rule.name.clone(),
            reached: engine_at,
            condition,
            note,
        });
    }
    let lead_object =
        serde_json::to_value(lead_object(program, &lead, &record.state)).unwrap_or(Value::Null);
    Ok(Explanation {
        asked: id.to_string(),
        lead,
        steps,
        stages,
        notes,
        lead_object,
    })
}

fn num(x: f64) -> String {
    score_value(x).to_string()
}

fn signed(x: f64) -> String {
    let s = num(x);
    if x >= 0.0 && !s.starts_with('-') {
        format!("+{s}")
    } else {
        s
    }
}

fn shown(v: Option<&Value>) -> String {
    match v {
        None => "missing".to_string(),
        Some(Value::Number(n)) => n.as_f64().map_or_else(|| n.to_string(), num),
        Some(v) => show_value(v),
    }
}

fn leaf_line(node: &PredNode) -> String {
    let values: Vec<String> = node
        .values
        .iter()
        .filter(|v| v.name != node.text)
        .map(|v| format!("{} = {}", v.name, shown(v.value.as_ref())))
        .collect();
    let values = if values.is_empty() {
        String::new()
    } else {
        format!("  ({})", values.join(", "))
    };
    format!("{:<5} {}{values}", node.holds, node.text)
}

/// The explanation for people.
pub fn render_text(x: &Explanation) -> String {
    let mut out = String::new();
    let push = |out: &mut String, s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    if x.asked == x.lead {
        push(&mut out, format!("lead `{}`", x.lead));
    } else {
        push(
            &mut out,
            format!("lead `{}` (merged into `{}`)", x.asked, x.lead),
        );
    }
    for n in &x.notes {
        push(&mut out, format!("note: {n}"));
    }
    out.push('\n');
    for step in &x.steps {
        let line = step
            .line
            .map_or_else(String::new, |l| format!("  (line {l})"));
        push(
            &mut out,
            format!("{}  {}{line}", format_rfc3339(step.at), step.event),
        );
        for h in &step.happened {
            let text = match h {
                Happened::Decayed { from, to } if num(*from) == num(*to) => continue,
                Happened::Decayed { from, to } => {
                    format!("decay: engagement {} -> {}", num(*from), num(*to))
                }
                Happened::Fit { from, to } => format!("fit: {} -> {}", num(*from), num(*to)),
                Happened::Scored {
                    rule,
                    points,
                    written,
                } => {
                    if (points - written).abs() < 1e-9 {
                        format!("{} {rule}", signed(*points))
                    } else {
                        format!(
                            "{} {rule} (written {}, clamped)",
                            signed(*points),
                            signed(*written)
                        )
                    }
                }
                Happened::Refused {
                    rule,
                    points,
                    kind,
                    detail,
                } => {
                    let detail = if detail.is_empty() {
                        String::new()
                    } else {
                        format!(" ({detail})")
                    };
                    format!("refused: {kind} {} {rule}{detail}", signed(*points))
                }
                Happened::Clamped { from, to } => {
                    format!("clamped: engagement {} -> {}", num(*from), num(*to))
                }
                Happened::Reached { stage } => format!("reached {stage}"),
                Happened::Converted { name, first, count } => {
                    if *first {
                        format!("converted {name:?}")
                    } else {
                        format!("converted {name:?} again (count {count})")
                    }
                }
            };
            push(&mut out, format!("    {text}"));
        }
        push(
            &mut out,
            format!(
                "    = score {}, fit {}, engagement {}",
                num(step.score),
                num(step.fit),
                num(step.engagement)
            ),
        );
    }
    if x.steps.is_empty() {
        push(&mut out, "no events".into());
    }
    out.push('\n');
    push(&mut out, "stages".into());
    for s in &x.stages {
        let head = match s.reached {
            Some(at) => format!("  {}: reached at {}", s.name, format_rfc3339(at)),
            None => format!("  {}: not reached", s.name),
        };
        let note = s
            .note
            .as_ref()
            .map_or_else(String::new, |n| format!(" ({n})"));
        push(&mut out, format!("{head}{note}"));
        let when = if s.reached.is_some() && s.note.is_none() {
            "when reached"
        } else {
            "at the end"
        };
        push(
            &mut out,
            format!("    {} ({when}): {}", s.condition.text, s.condition.holds),
        );
        for leaf in s.condition.leaves() {
            push(&mut out, format!("      {}", leaf_line(leaf)));
        }
    }
    out.push('\n');
    let lo = &x.lead_object;
    push(
        &mut out,
        format!(
            "final: score {}, fit {}, engagement {}, stage {}",
            lo["score"],
            lo["fit"],
            lo["engagement"],
            lo["stage"].as_str().unwrap_or("none")
        ),
    );
    out
}

fn happened_json(h: &Happened) -> Value {
    match h {
        Happened::Decayed { from, to } => {
            json!({"kind": "decay", "from": score_value(*from), "to": score_value(*to)})
        }
        Happened::Fit { from, to } => {
            json!({"kind": "fit", "from": score_value(*from), "to": score_value(*to)})
        }
        Happened::Scored {
            rule,
            points,
            written,
        } => json!({"kind": "scored", "rule": rule, "points": score_value(*points),
                    "written": score_value(*written)}),
        Happened::Refused {
            rule,
            points,
            kind,
            detail,
        } => json!({"kind": "refused", "rule": rule, "points": score_value(*points),
                    "reason": kind, "detail": detail}),
        Happened::Clamped { from, to } => {
            json!({"kind": "clamped", "from": score_value(*from), "to": score_value(*to)})
        }
        Happened::Reached { stage } => json!({"kind": "reached", "stage": stage}),
        Happened::Converted { name, first, count } => {
            json!({"kind": "converted", "conversion": name, "first": first, "count": count})
        }
    }
}

fn node_json(n: &PredNode) -> Value {
    let mut v = json!({"condition": n.text, "holds": n.holds});
    if !n.values.is_empty() {
        v["values"] = n
            .values
            .iter()
            .map(|r| json!({"name": r.name, "value": r.value}))
            .collect();
    }
    if !n.parts.is_empty() {
        v["parts"] = n.parts.iter().map(node_json).collect();
    }
    v
}

/// The explanation as one JSON document.
pub fn to_json(x: &Explanation) -> Value {
    let steps: Vec<Value> = x
        .steps
        .iter()
        .map(|s| {
            json!({
                "at": format_rfc3339(s.at),
                "line": s.line,
                "type": s.kind.as_str(),
                "event": s.event,
                "happened": s.happened.iter().map(happened_json).collect::<Vec<_>>(),
                "score": score_value(s.score),
                "fit": score_value(s.fit),
                "engagement": score_value(s.engagement),
            })
        })
        .collect();
    let stages: Vec<Value> = x
        .stages
        .iter()
        .map(|s| {
            json!({
                "stage": s.name,
                "reached": s.reached.map(format_rfc3339),
                "condition": node_json(&s.condition),
                "note": s.note,
            })
        })
        .collect();
    json!({
        "lead": x.lead,
        "asked": x.asked,
        "notes": x.notes,
        "steps": steps,
        "stages": stages,
        "final": x.lead_object,
    })
}
