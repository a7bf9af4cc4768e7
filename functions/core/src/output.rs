//! The lead object and the replay document of SPEC §4: the one JSON shape that `replay`,
//! `GET /leads/{id}` and the tests agree on.

use crate::engine::{Engine, Notification};
use leadscore_rules::eval::{LeadState, Transition};
use leadscore_rules::time::{format_rfc3339, Micros, SECOND};
use leadscore_rules::Program;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

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

    fn push(&mut self, key: &str, value: impl Into<Node>) {
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
                o.push("value", Value::from((c.value * 100.0).round() / 100.0));
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
        state.source.clone().map_or(Value::Null, Value::String),
    );
    o.push("first_seen", seen(state.first_seen));
    o.push("last_seen", seen(state.last_seen));
    o.push("events", Value::from(state.events));
    o
}

/// A score as the contract prints it (see [`score_value`]), serialised without building a
/// [`Value`].
struct Score(f64);

impl Serialize for Score {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match score_value(self.0) {
            Value::Number(n) => n.serialize(s),
            _ => s.serialize_unit(),
        }
    }
}

/// The `reached` object of a lead: stage → time, in declaration order.
struct Reached<'a>(&'a Program, &'a LeadState);

impl Serialize for Reached<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Reached(program, state) = self;
        let mut map = s.serialize_map(None)?;
        for (stage, at) in program.stages.iter().zip(&state.reached) {
            if let Some(at) = at {
                map.serialize_entry(&stage.name, &format_rfc3339(*at))?;
            }
        }
        map.end()
    }
}

/// The `conversions` list of a lead, by first time (then declaration order).
struct Conversions<'a>(&'a Program, &'a LeadState);

impl Serialize for Conversions<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let Conversions(program, state) = self;
        let convs = made_conversions(state);
        let mut seq = s.serialize_seq(Some(convs.len()))?;
        for (i, c) in convs {
            seq.serialize_element(&Conversion(&program.conversions[i], c, state))?;
        }
        seq.end()
    }
}

/// One conversion of a lead.
struct Conversion<'a>(
    &'a leadscore_rules::program::ConversionRule,
    &'a leadscore_rules::eval::ConversionState,
    &'a LeadState,
);

impl Serialize for Conversion<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Conversion(rule, c, state) = self;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("name", &rule.name)?;
        map.serialize_entry("at", &format_rfc3339(c.at))?;
        map.serialize_entry("count", &c.count)?;
        if rule.value.is_some() {
            map.serialize_entry("value", &Value::from((c.value * 100.0).round() / 100.0))?;
        }
        map.serialize_entry(
            "seconds_to_convert",
            &(c.at - state.first_seen).div_euclid(SECOND),
        )?;
        map.end()
    }
}

/// A lead as the contract prints it, serialised straight from its state: the same JSON as
/// [`lead_object`] (a test holds them together) without building a tree first. `replay`
/// prints every lead through it.
pub struct LeadJson<'a> {
    /// The program the state belongs to.
    pub program: &'a Program,
    /// The lead's id.
    pub id: &'a str,
    /// The lead's state.
    pub state: &'a LeadState,
}

impl Serialize for LeadJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let LeadJson { program, id, state } = *self;
        let seen = |t| (state.events > 0).then(|| format_rfc3339(t));
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("id", id)?;
        map.serialize_entry("score", &Score(state.score()))?;
        map.serialize_entry("fit", &Score(state.fit))?;
        map.serialize_entry("engagement", &Score(state.engagement))?;
        map.serialize_entry("stage", &state.stage(program))?;
        map.serialize_entry("reached", &Reached(program, state))?;
        map.serialize_entry("conversions", &Conversions(program, state))?;
        map.serialize_entry("source", &state.source)?;
        map.serialize_entry("first_seen", &seen(state.first_seen))?;
        map.serialize_entry("last_seen", &seen(state.last_seen))?;
        map.serialize_entry("events", &state.events)?;
        map.end()
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
        let NotificationJson {
            program,
            notification: n,
        } = *self;
        let (kind, key, name, at) = notification_parts(program, n);
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("target", &n.target)?;
        map.serialize_entry("kind", kind)?;
        map.serialize_entry("lead", &n.lead)?;
        map.serialize_entry(key, name)?;
        map.serialize_entry("at", &format_rfc3339(at))?;
        map.end()
    }
}

/// A notification's `kind`, the key that names what happened, its name and its time.
fn notification_parts<'p>(
    program: &'p Program,
    n: &Notification,
) -> (&'static str, &'static str, &'p str, Micros) {
    match n.transition {
        Transition::StageReached { stage, at } => {
            ("stage_reached", "stage", &program.stages[stage].name, at)
        }
        Transition::Converted { conversion, at } => (
            "converted",
            "conversion",
            &program.conversions[conversion].name,
            at,
        ),
    }
}

/// A notification as the contract prints it.
pub fn notification_object(program: &Program, n: &Notification) -> Node {
    let mut o = Ordered::default();
    o.push("target", Value::String(n.target.clone()));
    let (kind, key, name, at) = notification_parts(program, n);
    o.push("kind", Value::String(kind.into()));
    o.push("lead", Value::String(n.lead.clone()));
    o.push(key, Value::String(name.to_string()));
    o.push("at", Value::String(format_rfc3339(at)));
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
pub fn summary_object(program: &Program, leads: &[(&str, &LeadState)], rejected: u64) -> Ordered {
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
    summary
}

/// The whole `replay --format json` document.
pub fn replay_document(engine: &Engine<'_>, rejected: u64) -> Ordered {
    let program = engine.program();
    let leads = sorted_leads(engine);
    let notes = sorted_notifications(engine);
    let mut doc = Ordered::default();
    doc.push("ruleset", Value::String(program.name.clone()));
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
    doc.push("summary", summary_object(program, &leads, rejected));
    doc
}
