//! The lead object and the replay document of SPEC §4: the one JSON shape that `replay`,
//! `GET /leads/{id}` and the tests agree on.

use crate::store::engine::{Engine, Notification};
use leadscore_rules::eval::{LeadState, Transition};
use leadscore_rules::time::{format_rfc3339, rfc3339_seconds, Micros, SECOND};
use leadscore_rules::Program;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

/// From 2^52 on every `f64` is a whole number: nothing to round.
const WHOLE_FROM: f64 = 4_503_599_627_370_496.0;

/// Rounds to at most 2 digits after the point, without `-0`. A number too large to have a
/// fraction is kept as it is (multiplying it by 100 could overflow to infinity, which JSON
/// prints as `null`).
pub fn round2(x: f64) -> f64 {
    let r = if x.abs() < WHOLE_FROM {
        (x * 100.0).round() / 100.0
    } else {
        x
    };
    if r == 0.0 {
        0.0
    } else {
        r
    }
}

/// Rounds a score to at most 2 digits after the point ([`round2`]); whole numbers print
/// without `.0`.
pub fn score_value(x: f64) -> Value {
    let r = round2(x);
    if r.fract() == 0.0 && r.abs() < 9.0e15 {
        #[allow(clippy::cast_possible_truncation)]
        return Value::from(r as i64);
    }
    Value::from(r)
}

/// An ordered JSON object (keys in insertion order, unlike `serde_json::Map`, which sorts).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ordered(pub Vec<(String, Node)>);

/// A JSON value whose objects keep their key order.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// A plain value (scalars, or objects whose order does not matter).
    V(Value),
    /// An ordered object.
    O(Ordered),
    /// A list.
    L(Vec<Node>),
}

impl From<Value> for Node {
    fn from(v: Value) -> Self {
        Node::V(v)
    }
}

impl From<Ordered> for Node {
    fn from(o: Ordered) -> Self {
        Node::O(o)
    }
}

impl Ordered {
    /// Appends a key with a plain JSON value.
    pub fn push_node(&mut self, key: &str, value: Value) {
        self.push(key, value);
    }

    /// Appends a key with a value or an ordered object.
    pub fn push(&mut self, key: &str, value: impl Into<Node>) {
        self.0.push((key.to_string(), value.into()));
    }
}

impl Serialize for Ordered {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl Serialize for Node {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Node::V(v) => v.serialize(s),
            Node::O(o) => o.serialize(s),
            Node::L(l) => l.serialize(s),
        }
    }
}

/// The conversions a lead made, by index, in the contract's order: by first time, then
/// declaration order.
fn made_conversions(state: &LeadState) -> Vec<(usize, &leadscore_rules::eval::ConversionState)> {
    let mut convs: Vec<(usize, &leadscore_rules::eval::ConversionState)> = state
        .conversions
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.as_ref().map(|c| (i, c)))
        .collect();
    convs.sort_by_key(|(i, c)| (c.at, *i));
    convs
}

/// A lead as the contract prints it.
pub fn lead_object(program: &Program, id: &str, state: &LeadState) -> Ordered {
    let mut reached = Ordered::default();
    for (stage, at) in program.stages.iter().zip(&state.reached) {
        if let Some(at) = at {
            reached.push(&stage.name, Value::String(format_rfc3339(*at)));
        }
    }
    let convs = made_conversions(state);
    let conversions: Vec<Node> = convs
        .into_iter()
        .map(|(i, c)| {
            let rule = &program.conversions[i];
            let mut o = Ordered::default();
            o.push("name", Value::String(rule.name.clone()));
            o.push("at", Value::String(format_rfc3339(c.at)));
            o.push("count", Value::from(c.count));
            if rule.value.is_some() {
                o.push("value", Value::from(round2(c.value)));
            }
            let secs = (c.at - state.first_seen).div_euclid(SECOND);
            o.push("seconds_to_convert", Value::from(secs));
            Node::O(o)
        })
        .collect();
    let seen = |t| {
        if state.events == 0 {
            Value::Null
        } else {
            Value::String(format_rfc3339(t))
        }
    };
    let mut o = Ordered::default();
    o.push("id", Value::String(id.to_string()));
    o.push("score", score_value(state.score()));
    o.push("fit", score_value(state.fit));
    o.push("engagement", score_value(state.engagement));
    o.push(
        "stage",
        state
            .stage(program)
            .map_or(Value::Null, |s| Value::String(s.into())),
    );
    o.push("reached", reached);
    o.push("conversions", Node::L(conversions));
    o.push(
        "source",
        state
            .source
            .as_deref()
            .map_or(Value::Null, |s| Value::String(s.to_owned())),
    );
    o.push("first_seen", seen(state.first_seen));
    o.push("last_seen", seen(state.last_seen));
    o.push("events", Value::from(state.events));
    o
}

/// Appends a lead exactly as `serde_json`'s pretty printer writes [`lead_object`] when the
/// lead sits `depth` levels deep in a document (every line after the first indented by two
/// spaces per level), without building the object. `replay` writes its leads this way: they
/// are most of its output. A test holds the two together.
pub fn write_lead_pretty(
    buf: &mut Vec<u8>,
    depth: usize,
    program: &Program,
    id: &str,
    state: &LeadState,
) -> serde_json::Result<()> {
    let at = |level: usize| Line(depth + level);
    let seen = |buf: &mut Vec<u8>, t| {
        if state.events == 0 {
            buf.extend_from_slice(b"null");
            Ok(())
        } else {
            write_time(buf, t)
        }
    };
    buf.reserve(1024);
    buf.push(b'{');
    at(1).key(buf, b"\"id\": ", true);
    write_str(buf, id)?;
    at(1).key(buf, b"\"score\": ", false);
    serde_json::to_writer(&mut *buf, &score_value(state.score()))?;
    at(1).key(buf, b"\"fit\": ", false);
    serde_json::to_writer(&mut *buf, &score_value(state.fit))?;
    at(1).key(buf, b"\"engagement\": ", false);
    serde_json::to_writer(&mut *buf, &score_value(state.engagement))?;
    at(1).key(buf, b"\"stage\": ", false);
    match state.stage(program) {
        Some(stage) => write_str(buf, stage)?,
        None => buf.extend_from_slice(b"null"),
    }
    at(1).key(buf, b"\"reached\": ", false);
    buf.push(b'{');
    let mut first = true;
    for (stage, reached) in program.stages.iter().zip(&state.reached) {
        if let Some(t) = reached {
            at(2).line(buf, first);
            write_str(buf, &stage.name)?;
            buf.extend_from_slice(b": ");
            write_time(buf, *t)?;
            first = false;
        }
    }
    if !first {
        at(1).line(buf, true);
    }
    buf.push(b'}');
    at(1).key(buf, b"\"conversions\": ", false);
    buf.push(b'[');
    let convs = made_conversions(state);
    for (n, &(i, c)) in convs.iter().enumerate() {
        let rule = &program.conversions[i];
        at(2).line(buf, n == 0);
        buf.push(b'{');
        at(3).key(buf, b"\"name\": ", true);
        write_str(buf, &rule.name)?;
        at(3).key(buf, b"\"at\": ", false);
        write_time(buf, c.at)?;
        at(3).key(buf, b"\"count\": ", false);
        serde_json::to_writer(&mut *buf, &c.count)?;
        if rule.value.is_some() {
            at(3).key(buf, b"\"value\": ", false);
            serde_json::to_writer(&mut *buf, &Value::from(round2(c.value)))?;
        }
        at(3).key(buf, b"\"seconds_to_convert\": ", false);
        serde_json::to_writer(&mut *buf, &(c.at - state.first_seen).div_euclid(SECOND))?;
        at(2).line(buf, true);
        buf.push(b'}');
    }
    if !convs.is_empty() {
        at(1).line(buf, true);
    }
    buf.push(b']');
    at(1).key(buf, b"\"source\": ", false);
    match &state.source {
        Some(source) => write_str(buf, source)?,
        None => buf.extend_from_slice(b"null"),
    }
    at(1).key(buf, b"\"first_seen\": ", false);
    seen(buf, state.first_seen)?;
    at(1).key(buf, b"\"last_seen\": ", false);
    seen(buf, state.last_seen)?;
    at(1).key(buf, b"\"events\": ", false);
    serde_json::to_writer(&mut *buf, &state.events)?;
    at(0).line(buf, true);
    buf.push(b'}');
    Ok(())
}

/// A line break of the pretty printer, followed by the indent of a nesting level.
#[derive(Clone, Copy)]
struct Line(usize);

/// `,`, a line break and an indent of 32 levels, sliced for the indent of a [`Line`] (deeper
/// levels are padded).
const BREAK: &[u8; 2 + 2 * 32] =
    b",\n                                                                ";

impl Line {
    /// `\n` (before the first member) or `,\n`, then the indent.
    #[inline]
    fn line(self, buf: &mut Vec<u8>, first: bool) {
        let from = usize::from(first);
        match BREAK.get(from..2 + 2 * self.0) {
            Some(text) => buf.extend_from_slice(text),
            None => {
                buf.extend_from_slice(&BREAK[from..2]);
                buf.resize(buf.len() + 2 * self.0, b' ');
            }
        }
    }

    /// A line with an object key: `key` is the key with its quotes and `: `.
    #[inline]
    fn key(self, buf: &mut Vec<u8>, key: &[u8], first: bool) {
        self.line(buf, first);
        buf.extend_from_slice(key);
    }
}

/// A JSON string as `serde_json` writes it: copied when nothing needs an escape.
fn write_str(buf: &mut Vec<u8>, s: &str) -> serde_json::Result<()> {
    if s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        return serde_json::to_writer(buf, s);
    }
    buf.push(b'"');
    buf.extend_from_slice(s.as_bytes());
    buf.push(b'"');
    Ok(())
}

/// A time as the contract prints it ([`format_rfc3339`]), as a JSON string.
fn write_time(buf: &mut Vec<u8>, at: Micros) -> serde_json::Result<()> {
    match rfc3339_seconds(at) {
        Some(text) => {
            let mut quoted = [b'"'; 22];
            quoted[1..21].copy_from_slice(&text);
            buf.extend_from_slice(&quoted);
            Ok(())
        }
        None => write_str(buf, &format_rfc3339(at)),
    }
}

/// A notification as the contract prints it, serialised straight from the notification:
/// the same JSON as [`notification_object`].
pub struct NotificationJson<'a> {
    /// The program that produced it.
    pub program: &'a Program,
    /// The notification.
    pub notification: &'a Notification,
}

impl Serialize for NotificationJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let n = self.notification;
        let (kind, key, name, at) = notification_parts(n);
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("target", &n.target)?;
        map.serialize_entry("kind", kind)?;
        map.serialize_entry("lead", &n.lead)?;
        map.serialize_entry(key, name)?;
        map.serialize_entry("at", &format_rfc3339(at))?;
        if let Some(cause) = n.cause {
            map.serialize_entry("cause", cause.as_str())?;
        }
        map.end()
    }
}

/// A notification's `kind`, the key that names what happened, its name and its time.
fn notification_parts(n: &Notification) -> (&'static str, &'static str, &str, Micros) {
    match n.transition {
        Transition::StageReached { at, .. } => ("stage_reached", "stage", &n.name, at),
        Transition::Converted { at, .. } => ("converted", "conversion", &n.name, at),
    }
}

/// A notification as the contract prints it (with `cause` when it has one).
pub fn notification_object(_program: &Program, n: &Notification) -> Node {
    let mut o = Ordered::default();
    o.push("target", Value::String(n.target.clone()));
    let (kind, key, name, at) = notification_parts(n);
    o.push("kind", Value::String(kind.into()));
    o.push("lead", Value::String(n.lead.clone()));
    o.push(key, Value::String(name.to_string()));
    o.push("at", Value::String(format_rfc3339(at)));
    if let Some(cause) = n.cause {
        o.push("cause", Value::String(cause.as_str().into()));
    }
    Node::O(o)
}

/// The leads of an engine, sorted by id (the contract's order).
pub fn sorted_leads<'e>(engine: &'e Engine<'_>) -> Vec<(&'e str, &'e LeadState)> {
    let mut leads: Vec<(&str, &LeadState)> = engine.leads().map(|(id, r)| (id, &r.state)).collect();
    leads.sort_unstable_by(|a, b| a.0.cmp(b.0));
    leads
}

/// The notifications, sorted by time, then lead, then the order one step produced them.
pub fn sorted_notifications<'e>(engine: &'e Engine<'_>) -> Vec<&'e Notification> {
    let mut notes: Vec<&Notification> = engine.notifications().iter().collect();
    notes.sort_by(|a, b| {
        (a.transition.at(), &a.lead, a.seq).cmp(&(b.transition.at(), &b.lead, b.seq))
    });
    notes
}

/// The `summary` object: leads, leads per stage reached, converted leads, conversion rate
/// (converted ÷ leads × 100) and rejected calls.
pub fn summary_object(
    program: &Program,
    leads: &[(&str, &LeadState)],
    rejected: u64,
    duplicates: u64,
) -> Ordered {
    let mut reached_counts = vec![0u64; program.stages.len()];
    let mut converted = 0u64;
    for (_, s) in leads {
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
            reached.push(&stage.name, Value::from(*n));
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
    summary.push("leads", Value::from(total));
    summary.push("reached", reached);
    summary.push("converted", Value::from(converted));
    summary.push("conversion_rate", score_value(rate));
    summary.push("rejected", Value::from(rejected));
    summary.push("duplicates", Value::from(duplicates));
    summary
}

/// The rules a result was computed under (SPEC §7): `{"ruleset": NAME, "version": VERSION}`.
pub fn rules_object(program: &Program) -> Ordered {
    let mut rules = Ordered::default();
    rules.push("ruleset", Value::String(program.name.clone()));
    rules.push("version", Value::String(program.version.clone()));
    rules
}

/// The whole `replay --format json` document.
pub fn replay_document(engine: &Engine<'_>, rejected: u64) -> Ordered {
    let program = engine.program();
    let leads = sorted_leads(engine);
    let notes = sorted_notifications(engine);
    let mut doc = Ordered::default();
    doc.push("ruleset", Value::String(program.name.clone()));
    doc.push("rules", rules_object(program));
    let leads_json: Vec<Node> = leads
        .iter()
        .map(|(id, s)| Node::O(lead_object(program, id, s)))
        .collect();
    doc.push("leads", Node::L(leads_json));
    let notes: Vec<Node> = notes
        .iter()
        .map(|n| notification_object(program, n))
        .collect();
    doc.push("notifications", Node::L(notes));
    doc.push(
        "summary",
        summary_object(program, &leads, rejected, engine.duplicates()),
    );
    doc
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::ingest::call::TimePolicy;
    use crate::ingest::segment::normalize_call;
    use crate::store::engine::Engine;
    use serde_json::json;
    use std::sync::Arc;

    #[test]
    fn rounding_keeps_large_numbers_and_drops_negative_zero() {
        assert_eq!(round2(12.3456), 12.35);
        assert_eq!(round2(1e308), 1e308);
        assert_eq!(round2(-1e308), -1e308);
        assert_eq!(round2(f64::MAX), f64::MAX);
        assert_eq!(round2(1e15 + 0.5), 1e15 + 0.5);
        assert!(round2(-0.001).is_sign_positive());
        assert_eq!(score_value(1e308), json!(1e308));
        assert_eq!(score_value(-0.004), json!(0));
        assert_eq!(score_value(40.0), json!(40));
    }

    /// A conversion value near the largest `f64` prints as itself, not as `null` (rounding
    /// used to multiply it by 100, to infinity).
    #[test]
    fn a_huge_conversion_value_prints_as_a_number() {
        let text = "ruleset \"t\"\nscore \"Order\" +10 on \"Order Completed\"\nconversion \"Purchase\" on \"Order Completed\" value revenue\n";
        let (program, _, _) = crate::rules::compile_text("t.rules", text).unwrap();
        let mut engine = Engine::new(&program);
        let v = json!({"type": "track", "event": "Order Completed", "userId": "u1",
            "messageId": "m1", "timestamp": "2026-01-01T00:00:00Z",
            "properties": {"revenue": 1e308}});
        engine.process(Arc::new(
            normalize_call(&v, "", &TimePolicy::Required).unwrap(),
        ));
        let lead = serde_json::to_value(lead_object(
            &program,
            "u1",
            &engine.lead("u1").unwrap().state,
        ))
        .unwrap();
        assert_eq!(lead["conversions"][0]["value"], json!(1e308), "{lead}");
    }
}
