//! The lead object and the replay document of SPEC §4: the one JSON shape that `replay`,
//! `GET /leads/{id}` and the tests agree on.

use crate::engine::{Engine, Notification};
use leadscore_rules::eval::{LeadState, Transition};
use leadscore_rules::time::{format_rfc3339, SECOND};
use leadscore_rules::Program;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{json, Value};

/// Rounds a score to at most 2 digits after the point; whole numbers print without `.0`.
pub fn score_value(x: f64) -> Value {
    let r = (x * 100.0).round() / 100.0;
    let r = if r == 0.0 { 0.0 } else { r }; // no `-0`
    if r.fract() == 0.0 && r.abs() < 9.0e15 {
        #[allow(clippy::cast_possible_truncation)]
        return Value::from(r as i64);
    }
    Value::from(r)
}

/// An ordered JSON object (keys in insertion order, unlike `serde_json::Map`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ordered(pub Vec<(String, Value)>);

impl Serialize for Ordered {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// A lead as the contract prints it.
pub fn lead_object(program: &Program, id: &str, state: &LeadState) -> Ordered {
    let mut reached = Ordered::default();
    for (stage, at) in program.stages.iter().zip(&state.reached) {
        if let Some(at) = at {
            reached
                .0
                .push((stage.name.clone(), Value::String(format_rfc3339(*at))));
        }
    }
    let mut convs: Vec<(usize, &leadscore_rules::eval::ConversionState)> = state
        .conversions
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.as_ref().map(|c| (i, c)))
        .collect();
    convs.sort_by_key(|(i, c)| (c.at, *i));
    let conversions: Vec<Ordered> = convs
        .into_iter()
        .map(|(i, c)| {
            let rule = &program.conversions[i];
            let mut o = Ordered::default();
            o.0.push(("name".into(), Value::String(rule.name.clone())));
            o.0.push(("at".into(), Value::String(format_rfc3339(c.at))));
            o.0.push(("count".into(), Value::from(c.count)));
            if rule.value.is_some() {
                o.0.push((
                    "value".into(),
                    Value::from((c.value * 100.0).round() / 100.0),
                ));
            }
            let secs = (c.at - state.first_seen).div_euclid(SECOND);
            o.0.push(("seconds_to_convert".into(), Value::from(secs)));
            o
        })
        .collect();
    let mut o = Ordered::default();
    let push = |o: &mut Ordered, k: &str, v: Value| o.0.push((k.to_string(), v));
    push(&mut o, "id", Value::String(id.to_string()));
    push(&mut o, "score", score_value(state.score()));
    push(&mut o, "fit", score_value(state.fit));
    push(&mut o, "engagement", score_value(state.engagement));
    push(
        &mut o,
        "stage",
        state
            .stage(program)
            .map_or(Value::Null, |s| Value::String(s.into())),
    );
    push(
        &mut o,
        "reached",
        serde_json::to_value(&reached).unwrap_or(Value::Null),
    );
    push(
        &mut o,
        "conversions",
        serde_json::to_value(&conversions).unwrap_or(Value::Null),
    );
    push(
        &mut o,
        "source",
        state.source.clone().map_or(Value::Null, Value::String),
    );
    let seen = |t| {
        if state.events == 0 {
            Value::Null
        } else {
            Value::String(format_rfc3339(t))
        }
    };
    push(&mut o, "first_seen", seen(state.first_seen));
    push(&mut o, "last_seen", seen(state.last_seen));
    push(&mut o, "events", Value::from(state.events));
    o
}

/// A notification as the contract prints it.
pub fn notification_object(program: &Program, n: &Notification) -> Value {
    match n.transition {
        Transition::StageReached { stage, at } => json!({
            "target": n.target, "kind": "stage_reached", "lead": n.lead,
            "stage": program.stages[stage].name, "at": format_rfc3339(at),
        }),
        Transition::Converted { conversion, at } => json!({
            "target": n.target, "kind": "converted", "lead": n.lead,
            "conversion": program.conversions[conversion].name, "at": format_rfc3339(at),
        }),
    }
}

/// The whole `replay --format json` document.
pub fn replay_document(engine: &Engine<'_>, rejected: u64) -> Ordered {
    let program = engine.program();
    let mut leads: Vec<(&String, &LeadState)> =
        engine.leads().map(|(id, r)| (id, &r.state)).collect();
    leads.sort_by(|a, b| a.0.cmp(b.0));
    let mut notes: Vec<&Notification> = engine.notifications().iter().collect();
    notes.sort_by(|a, b| {
        (a.transition.at(), &a.lead, a.seq).cmp(&(b.transition.at(), &b.lead, b.seq))
    });
    let mut reached_counts = vec![0u64; program.stages.len()];
    let mut converted = 0u64;
    for (_, s) in &leads {
        for (i, r) in s.reached.iter().enumerate() {
            if r.is_some() {
                reached_counts[i] += 1;
            }
        }
        if s.conversions.iter().any(Option::is_some) {
            converted += 1;
        }
    }
    let mut reached = Ordered::default();
    for (stage, n) in program.stages.iter().zip(&reached_counts) {
        if *n > 0 {
            reached.0.push((stage.name.clone(), Value::from(*n)));
        }
    }
    let total = leads.len() as u64;
    #[allow(clippy::cast_precision_loss)]
    let rate = if total == 0 {
        0.0
    } else {
        converted as f64 / total as f64 * 100.0
    };
    let mut summary = Ordered::default();
    summary.0.push(("leads".into(), Value::from(total)));
    summary.0.push((
        "reached".into(),
        serde_json::to_value(&reached).unwrap_or(Value::Null),
    ));
    summary.0.push(("converted".into(), Value::from(converted)));
    summary
        .0
        .push(("conversion_rate".into(), score_value(rate)));
    summary.0.push(("rejected".into(), Value::from(rejected)));
    let mut doc = Ordered::default();
    doc.0
        .push(("ruleset".into(), Value::String(program.name.clone())));
    let leads_json: Vec<Value> = leads
        .iter()
        .map(|(id, s)| serde_json::to_value(lead_object(program, id, s)).unwrap_or(Value::Null))
        .collect();
    doc.0.push(("leads".into(), Value::Array(leads_json)));
    doc.0.push((
        "notifications".into(),
        Value::Array(
            notes
                .iter()
                .map(|n| notification_object(program, n))
                .collect(),
        ),
    ));
    doc.0.push((
        "summary".into(),
        serde_json::to_value(&summary).unwrap_or(Value::Null),
    ));
    doc
}
