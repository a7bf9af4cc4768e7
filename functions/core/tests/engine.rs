//! Engine tests: property tests over random Segment call sequences (determinism, duplicate
//! deliveries, idempotent merges, merge = re-evaluation) and example-based tests of identity
//! merges and bad input (SPEC §1, §3, §5).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use leadscore_core::ingest::call::{Call, TimePolicy};
use leadscore_core::ingest::segment::{normalize_body, normalize_call};
use leadscore_core::output::{
    lead_object, notification_object, replay_document, write_lead_pretty, NotificationJson,
};
use leadscore_core::store::engine::{Engine, Kept, Outcome};
use leadscore_rules::program::NotifyWhen;
use leadscore_rules::time::{format_rfc3339, parse_rfc3339, Micros, SECOND};
use leadscore_rules::{compile, Program, SourceFile};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{json, Map, Value};
use std::sync::Arc;

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

/// 2026-01-01T00:00:00Z in seconds.
const T0_SECS: i64 = 1_767_225_600;
const DAY: i64 = 86_400;

/// A rule set that exercises fit, score with `once`/`limit`, decay, cap, floor, stages with
/// count/sum/event/reached, conversions and notify.
const RULES: &str = r#"
ruleset "props"

fit "Senior"    +15 when lead.title matches /\b(vp|head)\b/i
fit "Size"      +10 when lead.company.employees between 50 and 5000
fit "Gmail"     -20 when lead.email ends_with "@gmail.com"

score "Pricing"  +10 on page where path starts_with "/pricing" limit 2 per 3d
score "Webinar"  +20 on "Webinar Registered"
score "Demo"     +40 on "Form Submitted" where form == "demo"
score "Careers"  -10 on page where path starts_with "/careers"
score "Unsub"    -30 on "Email Unsubscribed" once
score "Feature"   +3 on "Feature Used" limit 3 per 1d
score "Big cart" +15 on "Order Completed" where revenue >= 100 once

decay engagement half_life 7d
cap engagement at 80
floor engagement at -40

stage mql   when engagement >= 30 and fit >= 10
stage pql   when count("Feature Used") within 7d >= 4 and lead.plan == "trial"
stage buyer when sum(revenue of "Order Completed") within 14d >= 150
stage sql   when reached mql and (event "Form Submitted" where form == "demo" or score >= 70)

conversion "Purchase" on "Order Completed" where revenue > 0 value revenue
conversion "Signup"   on "Signed Up"

notify marketing when reached mql
notify product   when reached pql
notify sales     when reached sql
notify revenue   when converted "Purchase"
notify marketing when converted
"#;

fn compile_rules(text: &str) -> Program {
    let compiled = compile(&[SourceFile {
        name: "test.rules".into(),
        text: text.into(),
    }]);
    let errors: Vec<_> = compiled
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .collect();
    assert!(errors.is_empty(), "rules do not compile: {errors:?}");
    compiled.program.expect("a program")
}

fn call(value: &Value) -> Arc<Call> {
    Arc::new(
        normalize_call(value, "", &TimePolicy::Required)
            .unwrap_or_else(|e| panic!("call rejected: {e}: {value}")),
    )
}

fn at(secs: i64) -> String {
    format_rfc3339((T0_SECS + secs) * SECOND)
}

fn micros(text: &str) -> Micros {
    parse_rfc3339(text).unwrap_or_else(|| panic!("not a time: {text}"))
}

/// The replay document of an engine, as JSON.
fn doc(engine: &Engine<'_>) -> Value {
    serde_json::to_value(replay_document(engine, 0)).unwrap()
}

/// Runs calls through a fresh engine and returns the replay document.
fn replay(program: &Program, calls: &[Value]) -> Value {
    let mut engine = Engine::new(program);
    for c in calls {
        engine.process(call(c));
    }
    doc(&engine)
}

fn lead<'a>(doc: &'a Value, id: &str) -> Option<&'a Value> {
    doc["leads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["id"] == id)
}

fn lead_ids(doc: &Value) -> Vec<String> {
    doc["leads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_str().unwrap().to_string())
        .collect()
}

fn notifications_for<'a>(doc: &'a Value, id: &str) -> Vec<&'a Value> {
    doc["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["lead"] == id)
        .collect()
}

/// Checks SPEC §3 step 6 and §5 on a final document: for every lead that exists, every stage
/// it has reached and every conversion it has made produced exactly one notification per
/// target that asks for it, at the time recorded on the lead; and nothing else was announced
/// for it (no double announcement after merges).
fn check_notifications(program: &Program, doc: &Value) -> Result<(), TestCaseError> {
    let notes = doc["notifications"].as_array().unwrap();
    for l in doc["leads"].as_array().unwrap() {
        let id = l["id"].as_str().unwrap();
        let mine: Vec<&Value> = notes.iter().filter(|n| n["lead"] == id).collect();
        let mut expected = 0usize;
        for rule in &program.notifies {
            match rule.when {
                NotifyWhen::Reached(s) => {
                    let stage = &program.stages[s].name;
                    let sent: Vec<&&Value> = mine
                        .iter()
                        .filter(|n| {
                            n["target"] == rule.target.as_str()
                                && n["kind"] == "stage_reached"
                                && n["stage"] == stage.as_str()
                        })
                        .collect();
                    match l["reached"].get(stage) {
                        Some(t) => {
                            prop_assert_eq!(
                                sent.len(),
                                1,
                                "{} {} {}: {:?}",
                                id,
                                rule.target,
                                stage,
                                sent
                            );
                            prop_assert_eq!(&sent[0]["at"], t, "{} {}", id, stage);
                            expected += 1;
                        }
                        None => {
                            prop_assert!(sent.is_empty(), "{id}: {stage} announced, not reached")
                        }
                    }
                }
                NotifyWhen::Converted(which) => {
                    for (c, conv) in program.conversions.iter().enumerate() {
                        if which.is_some_and(|w| w != c) {
                            continue;
                        }
                        let sent: Vec<&&Value> = mine
                            .iter()
                            .filter(|n| {
                                n["target"] == rule.target.as_str()
                                    && n["kind"] == "converted"
                                    && n["conversion"] == conv.name.as_str()
                            })
                            .collect();
                        let made = l["conversions"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .find(|x| x["name"] == conv.name.as_str());
                        match made {
                            Some(x) => {
                                prop_assert_eq!(
                                    sent.len(),
                                    1,
                                    "{} {} {}",
                                    id,
                                    rule.target,
                                    conv.name
                                );
                                prop_assert_eq!(&sent[0]["at"], &x["at"]);
                                expected += 1;
                            }
                            None => prop_assert!(sent.is_empty(), "{id}: {} announced", conv.name),
                        }
                    }
                }
            }
        }
        prop_assert_eq!(
            mine.len(),
            expected,
            "{}: unexpected notifications {:?}",
            id,
            mine
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// generators
// ---------------------------------------------------------------------------------------------

const USERS: [&str; 3] = ["u0", "u1", "u2"];
const ANONS: [&str; 2] = ["a0", "a1"];

#[derive(Debug, Clone)]
enum Who {
    User(usize),
    Anon(usize),
    Both(usize, usize),
}

#[derive(Debug, Clone)]
enum Body {
    Track(&'static str, Map<String, Value>),
    Page(&'static str),
    Identify(Map<String, Value>),
    Group(Map<String, Value>),
    /// `previousId`: an index into USERS then ANONS.
    Alias(usize),
}

#[derive(Debug, Clone)]
enum Mid {
    Unique,
    Shared(u8),
    Absent,
}

#[derive(Debug, Clone)]
struct Gen {
    who: Who,
    body: Body,
    secs: i64,
    quarter: u8,
    mid: Mid,
    source: Option<&'static str>,
}

fn opt_entry(map: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(v) = value {
        map.insert(key.into(), v);
    }
}

fn event_props() -> impl Strategy<Value = Map<String, Value>> {
    (
        prop::option::of(prop_oneof![Just(json!("demo")), Just(json!("contact"))]),
        prop::option::of(prop_oneof![
            Just(json!(0)),
            Just(json!(60)),
            Just(json!(120.5)),
            Just(json!("120")),
            Just(Value::Null)
        ]),
    )
        .prop_map(|(form, revenue)| {
            let mut m = Map::new();
            opt_entry(&mut m, "form", form);
            opt_entry(&mut m, "revenue", revenue);
            m
        })
}

fn traits() -> impl Strategy<Value = Map<String, Value>> {
    (
        prop::option::of(prop_oneof![
            Just(json!("VP Sales")),
            Just(json!("Head of Growth")),
            Just(json!("Student")),
            Just(Value::Null)
        ]),
        prop::option::of(prop_oneof![
            Just(json!("x@gmail.com")),
            Just(json!("x@corp.example"))
        ]),
        prop::option::of(prop_oneof![Just(json!("trial")), Just(json!("paid"))]),
    )
        .prop_map(|(title, email, plan)| {
            let mut m = Map::new();
            opt_entry(&mut m, "title", title);
            opt_entry(&mut m, "email", email);
            opt_entry(&mut m, "plan", plan);
            m
        })
}

fn company() -> impl Strategy<Value = Map<String, Value>> {
    prop::option::of(prop_oneof![
        Just(json!(10)),
        Just(json!(120)),
        Just(json!("120")),
        Just(Value::Null)
    ])
    .prop_map(|employees| {
        let mut m = Map::new();
        opt_entry(&mut m, "employees", employees);
        m
    })
}

/// A body that is not an alias (and so never merges leads by itself).
fn plain_body() -> impl Strategy<Value = Body> {
    prop_oneof![
        5 => (
            prop::sample::select(vec![
                "Webinar Registered",
                "Form Submitted",
                "Email Unsubscribed",
                "Feature Used",
                "Order Completed",
                "Signed Up",
                "Other Thing",
            ]),
            event_props()
        )
            .prop_map(|(e, p)| Body::Track(e, p)),
        3 => prop::sample::select(vec!["/pricing", "/pricing/teams", "/docs", "/careers", "/"])
            .prop_map(Body::Page),
        2 => traits().prop_map(Body::Identify),
        1 => company().prop_map(Body::Group),
    ]
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        10 => plain_body(),
        1 => (0..USERS.len() + ANONS.len()).prop_map(Body::Alias),
    ]
}

fn who() -> impl Strategy<Value = Who> {
    prop_oneof![
        4 => (0..USERS.len()).prop_map(Who::User),
        3 => (0..ANONS.len()).prop_map(Who::Anon),
        1 => (0..USERS.len(), 0..ANONS.len()).prop_map(|(u, a)| Who::Both(u, a)),
    ]
}

fn gen_call(
    body: impl Strategy<Value = Body>,
    who: impl Strategy<Value = Who>,
) -> impl Strategy<Value = Gen> {
    (
        who,
        body,
        0..30 * DAY,
        prop_oneof![6 => Just(0u8), 1 => 1..4u8],
        prop_oneof![16 => Just(Mid::Unique), 2 => (0..3u8).prop_map(Mid::Shared), 1 => Just(Mid::Absent)],
        prop_oneof![4 => Just(None), 1 => Just(Some("ads")), 1 => Just(Some("newsletter"))],
    )
        .prop_map(|(who, body, secs, quarter, mid, source)| Gen {
            who,
            body,
            secs,
            quarter,
            mid,
            source,
        })
}

fn any_call() -> impl Strategy<Value = Gen> {
    gen_call(body(), who())
}

impl Gen {
    /// The Segment JSON of this call; `n` makes unique message ids unique.
    fn to_json(&self, n: usize) -> Value {
        let mut v = Map::new();
        match &self.body {
            Body::Track(e, p) => {
                v.insert("type".into(), json!("track"));
                v.insert("event".into(), json!(e));
                v.insert("properties".into(), Value::Object(p.clone()));
            }
            Body::Page(path) => {
                v.insert("type".into(), json!("page"));
                v.insert("properties".into(), json!({"path": path}));
            }
            Body::Identify(t) => {
                v.insert("type".into(), json!("identify"));
                v.insert("traits".into(), Value::Object(t.clone()));
            }
            Body::Group(t) => {
                v.insert("type".into(), json!("group"));
                v.insert("groupId".into(), json!("g1"));
                v.insert("traits".into(), Value::Object(t.clone()));
            }
            Body::Alias(prev) => {
                v.insert("type".into(), json!("alias"));
                let all: Vec<&str> = USERS.iter().chain(ANONS.iter()).copied().collect();
                v.insert("previousId".into(), json!(all[*prev]));
            }
        }
        match (&self.who, &self.body) {
            // an alias needs a userId
            (Who::User(u) | Who::Both(u, _), Body::Alias(_)) => {
                v.insert("userId".into(), json!(USERS[*u]));
            }
            (Who::Anon(a), Body::Alias(_)) => {
                v.insert("userId".into(), json!(USERS[*a % USERS.len()]));
            }
            (Who::User(u), _) => {
                v.insert("userId".into(), json!(USERS[*u]));
            }
            (Who::Anon(a), _) => {
                v.insert("anonymousId".into(), json!(ANONS[*a]));
            }
            (Who::Both(u, a), _) => {
                v.insert("userId".into(), json!(USERS[*u]));
                v.insert("anonymousId".into(), json!(ANONS[*a]));
            }
        }
        let t = (T0_SECS + self.secs) * SECOND + i64::from(self.quarter) * SECOND / 4;
        v.insert("timestamp".into(), json!(format_rfc3339(t)));
        match self.mid {
            Mid::Unique => {
                v.insert("messageId".into(), json!(format!("m{n}")));
            }
            Mid::Shared(k) => {
                v.insert("messageId".into(), json!(format!("shared{k}")));
            }
            Mid::Absent => {}
        }
        if let Some(s) = self.source {
            v.insert("context".into(), json!({"campaign": {"source": s}}));
        }
        Value::Object(v)
    }
}

fn to_json(gens: &[Gen]) -> Vec<Value> {
    gens.iter().enumerate().map(|(i, g)| g.to_json(i)).collect()
}

/// A sequence of 1 to 40 calls over 1–5 leads.
fn calls() -> impl Strategy<Value = Vec<Gen>> {
    prop::collection::vec(any_call(), 1..40)
}

/// Where each extra delivery of a call goes: right after it, or at a random later place.
#[derive(Debug, Clone)]
struct Redelivery {
    right_after: bool,
    later: u32,
}

fn redeliveries() -> impl Strategy<Value = Vec<Redelivery>> {
    prop::collection::vec(
        (any::<bool>(), 0u32..10_000)
            .prop_map(|(right_after, later)| Redelivery { right_after, later }),
        1..=2,
    )
}

// ---------------------------------------------------------------------------------------------
// properties
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, .. ProptestConfig::default() })]

    /// (a) Replaying the same calls in fresh engines gives the same document, byte for byte.
    #[test]
    fn replay_is_deterministic(gens in calls()) {
        let program = compile_rules(RULES);
        let calls = to_json(&gens);
        let first = serde_json::to_string(&replay(&program, &calls)).unwrap();
        let second = serde_json::to_string(&replay(&program, &calls)).unwrap();
        prop_assert_eq!(&first, &second);
        let doc: Value = serde_json::from_str(&first).unwrap();
        check_notifications(&program, &doc)?;
    }

    /// The lead and notification objects `replay` serialises straight from the state print
    /// exactly what the ordered objects of the contract print.
    #[test]
    fn direct_json_equals_the_contract_objects(gens in calls()) {
        let program = compile_rules(RULES);
        let mut engine = Engine::new(&program);
        for c in to_json(&gens) {
            engine.process(call(&c));
        }
        for (id, record) in engine.leads() {
            let object = lead_object(&program, id, &record.state);
            for depth in [0, 2] {
                let mut direct = Vec::new();
                write_lead_pretty(&mut direct, depth, &program, id, &record.state).unwrap();
                let indent = format!("\n{}", "  ".repeat(depth));
                let expected = serde_json::to_string_pretty(&object).unwrap().replace('\n', &indent);
                prop_assert_eq!(String::from_utf8(direct).unwrap(), expected);
            }
        }
        for n in engine.notifications() {
            let direct = NotificationJson { program: &program, notification: n };
            prop_assert_eq!(
                serde_json::to_string_pretty(&direct).unwrap(),
                serde_json::to_string_pretty(&notification_object(&program, n)).unwrap()
            );
        }
    }

    /// (b) Delivering every call 2–3 times (right after, or at a random later place) gives the
    /// same document as delivering it once.
    #[test]
    fn duplicate_deliveries_change_nothing(
        gens in calls(),
        extra in prop::collection::vec(redeliveries(), 40),
    ) {
        let program = compile_rules(RULES);
        let calls = to_json(&gens);
        let once = replay(&program, &calls);
        let n = calls.len() as u64;
        // (position key, insertion order, call)
        let mut schedule: Vec<(u64, usize, &Value)> = Vec::new();
        for (i, c) in calls.iter().enumerate() {
            let base = i as u64 * 100_000;
            schedule.push((base, schedule.len(), c));
            for r in &extra[i] {
                let key = if r.right_after {
                    base + 1
                } else {
                    // strictly after the original, anywhere up to the end
                    base + 2 + u64::from(r.later) * (n - i as u64) * 10
                };
                schedule.push((key, schedule.len(), c));
            }
        }
        schedule.sort_by_key(|(k, o, _)| (*k, *o));
        let delivered: Vec<Value> = schedule.into_iter().map(|(_, _, c)| c.clone()).collect();
        prop_assert!(delivered.len() >= 2 * calls.len());
        let mut engine = Engine::new(&program);
        let mut duplicates = 0usize;
        for c in &delivered {
            if let Outcome::Duplicate { .. } = engine.process(call(c)) {
                duplicates += 1;
            }
        }
        prop_assert!(duplicates >= delivered.len() - calls.len());
        // the summary counts what was skipped; everything else is as if delivered once
        prop_assert_eq!(engine.duplicates(), duplicates as u64);
        let mut got = doc(&engine);
        prop_assert_eq!(&got["summary"]["duplicates"], &serde_json::json!(duplicates));
        got["summary"]["duplicates"] = once["summary"]["duplicates"].clone();
        prop_assert_eq!(got, once);
    }

    /// (c) Repeating a merge (an alias, or an identify carrying both ids) with a new messageId
    /// merges nothing again: it is an ordinary call for the known lead, exactly like an
    /// identify of the same traits carrying the userId only. Right after the first merge it
    /// changes nothing but the lead's event count: no points counted twice, stages keep their
    /// times, nothing announced again.
    #[test]
    fn repeating_a_merge_is_idempotent(
        gens in calls(),
        by_alias in any::<bool>(),
        k in 0..USERS.len(),
        a in 0..ANONS.len(),
        merge_traits in traits(),
        merge_secs in 0..30 * DAY,
        place in any::<Index>(),
        repeat in prop_oneof![Just(None), any::<Index>().prop_map(Some)],
    ) {
        let program = compile_rules(RULES);
        let mut calls = to_json(&gens);
        let kid = USERS[k];
        let aid = ANONS[a];
        let merge = |mid: &str, with_anon: bool| -> Value {
            if by_alias && with_anon {
                json!({"type": "alias", "previousId": aid, "userId": kid,
                       "timestamp": at(merge_secs), "messageId": mid})
            } else {
                let mut v = json!({"type": "identify", "userId": kid,
                                   "traits": Value::Object(if by_alias { Map::new() } else { merge_traits.clone() }),
                                   "timestamp": at(merge_secs), "messageId": mid});
                if with_anon {
                    v["anonymousId"] = json!(aid);
                }
                v
            }
        };
        let p = place.index(calls.len() + 1);
        calls.insert(p, merge("merge-1", true));
        let base = replay(&program, &calls);
        let q = match repeat {
            None => p + 1,
            Some(ix) => p + 1 + ix.index(calls.len() - p),
        };
        let mut repeated = calls.clone();
        repeated.insert(q, merge("merge-2", true));
        let mut plain = calls.clone();
        plain.insert(q, merge("merge-2", false));
        let repeated = replay(&program, &repeated);
        let plain = replay(&program, &plain);
        prop_assert_eq!(&repeated, &plain);
        check_notifications(&program, &repeated)?;

        if q == p + 1 {
            // right after the merge: only the known lead's event count moves
            let mut expected = base.clone();
            let ids = lead_ids(&base);
            let resolved = {
                let mut engine = Engine::new(&program);
                for c in &calls {
                    engine.process(call(c));
                }
                engine.resolve(kid).to_string()
            };
            prop_assert!(ids.contains(&resolved), "{} not in {:?}", resolved, ids);
            for l in expected["leads"].as_array_mut().unwrap() {
                if l["id"] == resolved.as_str() {
                    l["events"] = json!(l["events"].as_u64().unwrap() + 1);
                }
            }
            prop_assert_eq!(&repeated, &expected);
        }
    }

    /// (d) Merging an anonymous lead A into a known lead K gives K the scores of a single lead
    /// that received all of A's and K's calls in time order (plus the alias call); stages K had
    /// already reached keep their time, the rest are those of the re-evaluation; A is gone.
    #[test]
    fn merge_equals_re_evaluation(
        history in prop::collection::vec((any::<bool>(), gen_call(plain_body(), Just(Who::User(0)))), 0..30),
    ) {
        let program = compile_rules(RULES);
        let (kid, aid) = ("u0", "a0");
        let mut merged_calls = Vec::new();
        for (n, (anon, g)) in history.iter().enumerate() {
            let mut g = g.clone();
            g.mid = Mid::Unique;
            g.who = if *anon { Who::Anon(0) } else { Who::User(0) };
            merged_calls.push(g.to_json(n));
        }
        // the alias comes after every event in time
        let alias = json!({"type": "alias", "previousId": aid, "userId": kid,
                           "timestamp": at(31 * DAY), "messageId": "alias"});

        let mut engine = Engine::new(&program);
        for c in &merged_calls {
            engine.process(call(c));
        }
        let before = doc(&engine);
        engine.process(call(&alias));
        let merged = doc(&engine);

        // the reference: one lead, every call in time order (arrival order among equal times)
        let mut reference_calls: Vec<(Micros, usize, Value)> = merged_calls
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut c = c.clone();
                let obj = c.as_object_mut().unwrap();
                obj.remove("anonymousId");
                obj.insert("userId".into(), json!(kid));
                (micros(c["timestamp"].as_str().unwrap()), i, c)
            })
            .collect();
        // (without a call of A there is nothing to merge, and K keeps its own evaluation in
        // arrival order)
        if history.iter().any(|(anon, _)| *anon) {
            reference_calls.sort_by_key(|(t, i, _)| (*t, *i));
        }
        let mut reference: Vec<Value> = reference_calls.into_iter().map(|(_, _, c)| c).collect();
        reference.push(alias.clone());
        let reference = replay(&program, &reference);

        prop_assert_eq!(lead_ids(&merged), vec![kid.to_string()]);
        prop_assert_eq!(engine.resolve(aid), kid);
        let m = lead(&merged, kid).unwrap();
        let r = lead(&reference, kid).unwrap();
        for key in ["score", "fit", "engagement", "events", "first_seen", "last_seen"] {
            prop_assert_eq!(&m[key], &r[key], "{}", key);
        }
        // first touch: the first call that arrived, whichever lead it came to
        let first_source = merged_calls
            .first()
            .map_or(Value::Null, |c| c["context"]["campaign"]["source"].clone());
        prop_assert_eq!(&m["source"], &first_source);

        let k_before = lead(&before, kid);
        let alias_time = json!(at(31 * DAY));
        for stage in &program.stages {
            let name = stage.name.as_str();
            let old = k_before.and_then(|l| l["reached"].get(name));
            let got = m["reached"].get(name);
            let re = r["reached"].get(name);
            match (old, re) {
                // already reached: stays reached at its earlier time
                (Some(old), _) => prop_assert_eq!(got, Some(old), "{}", name),
                // new to K: the time of the re-evaluation
                (None, Some(re)) => prop_assert_eq!(got, Some(re), "{}", name),
                // only a stage kept from before (`reached X`) can make the alias call reach more
                (None, None) => prop_assert!(got.is_none() || got == Some(&alias_time), "{}: {:?}", name, got),
            }
        }
        for conv in &program.conversions {
            let find = |l: Option<&Value>| {
                l.and_then(|l| {
                    l["conversions"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|c| c["name"] == conv.name.as_str())
                        .cloned()
                })
            };
            let old = find(k_before);
            let got = find(Some(m));
            let re = find(Some(r));
            prop_assert_eq!(got.is_some(), re.is_some(), "{}", conv.name);
            if let (Some(got), Some(re)) = (got, re) {
                prop_assert_eq!(&got["count"], &re["count"]);
                prop_assert_eq!(&got["value"], &re["value"]);
                let want_at = old.map_or(re["at"].clone(), |o| o["at"].clone());
                prop_assert_eq!(&got["at"], &want_at);
            }
        }
        check_notifications(&program, &merged)?;
        // what K had been told before is not told again
        let told_before = notifications_for(&before, kid).len();
        let told_after = notifications_for(&merged, kid).len();
        prop_assert!(told_after >= told_before);
    }
}

// ---------------------------------------------------------------------------------------------
// examples: identity merges
// ---------------------------------------------------------------------------------------------

const MERGE_RULES: &str = r#"
ruleset "merge"

fit "Senior" +15 when lead.title matches /\bvp\b/i

score "Pricing" +10 on page where path starts_with "/pricing"
score "Webinar" +20 on "Webinar Registered"
score "Demo"    +40 on "Form Submitted" where form == "demo"

stage mql when engagement >= 30 and fit >= 10
stage sql when reached mql and event "Form Submitted" where form == "demo"
stage hot when engagement >= 60

conversion "Signup" on "Signed Up"

notify marketing when reached mql
notify sales     when reached sql
notify sales     when reached hot
notify revenue   when converted
"#;

fn page(id_key: &str, id: &str, day: i64, path: &str, mid: &str) -> Value {
    json!({"type": "page", id_key: id, "properties": {"path": path},
           "timestamp": at(day * DAY), "messageId": mid})
}

fn track(id_key: &str, id: &str, day: i64, event: &str, props: Value, mid: &str) -> Value {
    json!({"type": "track", "event": event, id_key: id, "properties": props,
           "timestamp": at(day * DAY), "messageId": mid})
}

fn identify(id: &str, day: i64, traits: Value, mid: &str) -> Value {
    json!({"type": "identify", "userId": id, "traits": traits,
           "timestamp": at(day * DAY), "messageId": mid})
}

fn alias(prev: &str, user: &str, day: i64, mid: &str) -> Value {
    json!({"type": "alias", "previousId": prev, "userId": user,
           "timestamp": at(day * DAY), "messageId": mid})
}

#[test]
fn anonymous_history_joins_the_known_lead() {
    let program = compile_rules(MERGE_RULES);
    let mut engine = Engine::new(&program);
    let mut first = page("anonymousId", "a1", 1, "/pricing", "m1");
    first["context"] = json!({"campaign": {"source": "ads"}});
    for c in [
        first,
        page("anonymousId", "a1", 2, "/pricing/teams", "m2"),
        track(
            "anonymousId",
            "a1",
            3,
            "Webinar Registered",
            json!({}),
            "m3",
        ),
        identify("u1", 4, json!({"title": "VP Sales"}), "m4"),
    ] {
        engine.process(call(&c));
    }
    let before = doc(&engine);
    assert_eq!(lead_ids(&before), ["a1", "u1"]);
    assert_eq!(lead(&before, "a1").unwrap()["engagement"], 40);
    assert_eq!(lead(&before, "u1").unwrap()["fit"], 15);

    let out = engine.process(call(&alias("a1", "u1", 5, "m5")));
    let Outcome::Applied { lead: to, .. } = out else {
        panic!("not applied: {out:?}")
    };
    assert_eq!(to, "u1");
    let after = doc(&engine);
    assert_eq!(lead_ids(&after), ["u1"]);
    let u1 = lead(&after, "u1").unwrap();
    assert_eq!(u1["engagement"], 40);
    assert_eq!(u1["fit"], 15);
    assert_eq!(u1["score"], 55);
    assert_eq!(u1["events"], 5);
    assert_eq!(u1["first_seen"], at(DAY));
    assert_eq!(u1["last_seen"], at(5 * DAY));
    assert_eq!(u1["source"], "ads");
    // combined history: mql at the identify (engagement 40, fit now 15)
    assert_eq!(u1["reached"], json!({"mql": at(4 * DAY)}));
    assert_eq!(engine.resolve("a1"), "u1");
    // both leads' calls, in arrival order, under either id
    let seqs: Vec<u64> = engine.history("a1").iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    assert_eq!(engine.history("u1").len(), 5);
}

#[test]
fn a_lead_merged_twice_keeps_every_call_and_forgetting_it_erases_them() {
    let program = compile_rules(MERGE_RULES);
    let mut engine = Engine::new(&program);
    for c in [
        page("anonymousId", "a1", 1, "/pricing", "m1"),
        page("anonymousId", "a2", 2, "/pricing", "m2"),
        identify("u1", 3, json!({"title": "VP"}), "m3"),
        page("anonymousId", "a1", 4, "/pricing", "m4"),
        alias("a1", "u1", 5, "m5"),
        page("anonymousId", "a2", 6, "/pricing", "m6"),
        alias("a2", "u1", 7, "m7"),
        page("userId", "u1", 8, "/pricing", "m8"),
        page("anonymousId", "b1", 9, "/pricing", "m9"),
    ] {
        engine.process(call(&c));
    }
    let ids: Vec<String> = engine
        .history("a2")
        .iter()
        .map(|(_, kept)| match kept {
            Kept::Call(c) => c.message_id.to_string(),
            Kept::Line { .. } => panic!("kept in memory"),
        })
        .collect();
    assert_eq!(ids, ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8"]);
    assert_eq!(engine.lead("u1").map(|r| r.state.events), Some(8));
    assert_eq!(engine.leads().count(), 2);

    assert!(engine.forget("a1").is_some());
    assert!(engine.history("u1").is_empty());
    assert!(!engine.is_seen("m4"));
    assert!(engine.is_seen("m9"));
    let ids: Vec<&str> = engine.leads().map(|(id, _)| id).collect();
    assert_eq!(ids, ["b1"]);
    assert_eq!(engine.history("b1").len(), 1);
    // the forgotten calls can arrive again, as a new lead
    engine.process(call(&page("userId", "u1", 10, "/pricing", "m8")));
    assert_eq!(engine.lead("u1").map(|r| r.state.events), Some(1));
}

#[test]
fn later_calls_with_the_anonymous_id_reach_the_known_lead() {
    let program = compile_rules(MERGE_RULES);
    let mut engine = Engine::new(&program);
    for c in [
        page("anonymousId", "a1", 1, "/pricing", "m1"),
        identify("u1", 2, json!({"title": "VP"}), "m2"),
        alias("a1", "u1", 3, "m3"),
    ] {
        engine.process(call(&c));
    }
    let out = engine.process(call(&track(
        "anonymousId",
        "a1",
        4,
        "Webinar Registered",
        json!({}),
        "m4",
    )));
    assert_eq!(
        out,
        Outcome::Applied {
            lead: "u1".into(),
            transitions: vec![leadscore_rules::Transition::StageReached {
                stage: 0,
                at: micros(&at(4 * DAY))
            }]
        }
    );
    let d = doc(&engine);
    assert_eq!(lead_ids(&d), ["u1"]);
    assert_eq!(lead(&d, "u1").unwrap()["engagement"], 30);
    assert_eq!(lead(&d, "u1").unwrap()["events"], 4);
    // a duplicate of a call sent under the anonymous id is recognised too
    assert_eq!(
        engine.process(call(&page("anonymousId", "a1", 1, "/pricing", "m1"))),
        Outcome::Duplicate { lead: "u1".into() }
    );
}

#[test]
fn a_call_with_both_ids_merges_like_an_alias() {
    let program = compile_rules(MERGE_RULES);
    let mut with_both = Engine::new(&program);
    let mut with_alias = Engine::new(&program);
    let history = [
        page("anonymousId", "a1", 1, "/pricing", "m1"),
        track(
            "anonymousId",
            "a1",
            2,
            "Webinar Registered",
            json!({}),
            "m2",
        ),
    ];
    for c in &history {
        with_both.process(call(c));
        with_alias.process(call(c));
    }
    let mut both = identify("u1", 3, json!({"title": "VP"}), "m3");
    both["anonymousId"] = json!("a1");
    with_both.process(call(&both));
    with_alias.process(call(&alias("a1", "u1", 3, "m3a")));
    with_alias.process(call(&identify("u1", 3, json!({"title": "VP"}), "m3")));
    let a = doc(&with_both);
    let b = doc(&with_alias);
    assert_eq!(lead_ids(&a), ["u1"]);
    for key in ["score", "fit", "engagement", "reached", "first_seen"] {
        assert_eq!(
            lead(&a, "u1").unwrap()[key],
            lead(&b, "u1").unwrap()[key],
            "{key}"
        );
    }
    assert_eq!(lead(&a, "u1").unwrap()["events"], 3);
    assert_eq!(
        lead(&a, "u1").unwrap()["reached"],
        json!({"mql": at(3 * DAY)})
    );
}

#[test]
fn an_anonymous_id_is_never_merged_into_a_second_known_lead() {
    let program = compile_rules(MERGE_RULES);
    let mut engine = Engine::new(&program);
    for c in [
        page("anonymousId", "a1", 1, "/pricing", "m1"),
        track(
            "anonymousId",
            "a1",
            2,
            "Webinar Registered",
            json!({}),
            "m2",
        ),
        alias("a1", "u1", 3, "m3"),
        page("userId", "u2", 3, "/", "m4"),
    ] {
        engine.process(call(&c));
    }
    let before = doc(&engine);
    assert_eq!(lead(&before, "u1").unwrap()["engagement"], 30);

    // an identify for u2 carrying a1, and an alias a1 -> u2: neither moves a1's history
    let mut both = identify("u2", 4, json!({"title": "VP"}), "m5");
    both["anonymousId"] = json!("a1");
    assert!(
        matches!(engine.process(call(&both)), Outcome::Applied { ref lead, .. } if lead == "u2")
    );
    assert!(
        matches!(engine.process(call(&alias("a1", "u2", 5, "m6"))), Outcome::Applied { ref lead, .. } if lead == "u2")
    );
    let after = doc(&engine);
    assert_eq!(lead_ids(&after), ["u1", "u2"]);
    let u1 = lead(&after, "u1").unwrap();
    let u2 = lead(&after, "u2").unwrap();
    assert_eq!(u1, lead(&before, "u1").unwrap());
    assert_eq!(u2["engagement"], 0);
    assert_eq!(u2["fit"], 15);
    assert_eq!(u2["events"], 3);
    // and a1 still means u1
    assert_eq!(engine.resolve("a1"), "u1");
    engine.process(call(&page("anonymousId", "a1", 6, "/pricing", "m7")));
    assert_eq!(lead(&doc(&engine), "u1").unwrap()["events"], 4);
    assert_eq!(lead(&doc(&engine), "u2").unwrap()["events"], 3);
}

#[test]
fn stages_already_reached_keep_their_earlier_time() {
    let program = compile_rules(MERGE_RULES);
    let mut engine = Engine::new(&program);
    for c in [
        // the anonymous lead would have been an MQL on day 3 given the known lead's title
        page("anonymousId", "a1", 1, "/pricing", "m1"),
        track(
            "anonymousId",
            "a1",
            3,
            "Webinar Registered",
            json!({}),
            "m2",
        ),
        // the known lead reaches mql on its own on day 6
        identify("u1", 0, json!({"title": "VP"}), "m3"),
        track("userId", "u1", 5, "Webinar Registered", json!({}), "m4"),
        page("userId", "u1", 6, "/pricing", "m5"),
    ] {
        engine.process(call(&c));
    }
    let before = doc(&engine);
    assert_eq!(
        lead(&before, "u1").unwrap()["reached"],
        json!({"mql": at(6 * DAY)})
    );
    let told = notifications_for(&before, "u1");
    assert_eq!(told.len(), 1);

    engine.process(call(&alias("a1", "u1", 7, "m6")));
    let after = doc(&engine);
    let u1 = lead(&after, "u1").unwrap();
    assert_eq!(u1["engagement"], 60);
    // mql stays at day 6 (not moved to day 3); hot (engagement >= 60) is new: at its own time
    assert_eq!(
        u1["reached"],
        json!({"mql": at(6 * DAY), "hot": at(6 * DAY)})
    );
    let told: Vec<Value> = notifications_for(&after, "u1")
        .into_iter()
        .cloned()
        .collect();
    assert_eq!(
        told,
        [
            json!({"target": "marketing", "kind": "stage_reached", "lead": "u1", "stage": "mql", "at": at(6 * DAY)}),
            json!({"target": "sales", "kind": "stage_reached", "lead": "u1", "stage": "hot", "at": at(6 * DAY)}),
        ]
    );
}

#[test]
fn a_stage_reached_before_stays_reached_when_the_combined_history_would_not_reach_it() {
    let program = compile_rules(MERGE_RULES);
    let mut engine = Engine::new(&program);
    for c in [
        identify("u1", 1, json!({"title": "VP"}), "m1"),
        track("userId", "u1", 2, "Webinar Registered", json!({}), "m2"),
        page("userId", "u1", 3, "/pricing", "m3"),
        // the anonymous lead later says it is not a VP: the combined profile has no fit
        json!({"type": "identify", "anonymousId": "a1", "traits": {"title": "Student"},
               "timestamp": at(DAY + 60), "messageId": "m4"}),
    ] {
        engine.process(call(&c));
    }
    assert_eq!(
        lead(&doc(&engine), "u1").unwrap()["reached"],
        json!({"mql": at(3 * DAY)})
    );
    engine.process(call(&alias("a1", "u1", 4, "m5")));
    let d = doc(&engine);
    let u1 = lead(&d, "u1").unwrap();
    assert_eq!(u1["fit"], 0, "{u1}");
    assert_eq!(u1["stage"], "mql");
    assert_eq!(u1["reached"], json!({"mql": at(3 * DAY)}));
    assert_eq!(notifications_for(&d, "u1").len(), 1);
}

#[test]
fn new_transitions_are_announced_once_for_the_known_lead_and_not_again_on_a_second_merge() {
    let program = compile_rules(MERGE_RULES);
    let mut engine = Engine::new(&program);
    for c in [
        identify("u1", 0, json!({"title": "VP"}), "m0"),
        // a1: enough engagement for mql and hot on its own, announced for a1
        track(
            "anonymousId",
            "a1",
            1,
            "Webinar Registered",
            json!({}),
            "m1",
        ),
        track(
            "anonymousId",
            "a1",
            2,
            "Webinar Registered",
            json!({}),
            "m2",
        ),
        track(
            "anonymousId",
            "a1",
            2,
            "Webinar Registered",
            json!({}),
            "m3",
        ),
        track("anonymousId", "a1", 2, "Signed Up", json!({}), "m4"),
    ] {
        engine.process(call(&c));
    }
    let before = doc(&engine);
    assert_eq!(
        lead(&before, "a1").unwrap()["reached"],
        json!({"hot": at(2 * DAY)})
    );
    assert_eq!(notifications_for(&before, "a1").len(), 2); // hot, Signup
    assert!(notifications_for(&before, "u1").is_empty());

    engine.process(call(&alias("a1", "u1", 3, "m5")));
    let first = doc(&engine);
    let u1 = lead(&first, "u1").unwrap();
    assert_eq!(
        u1["reached"],
        json!({"mql": at(2 * DAY), "hot": at(2 * DAY)})
    );
    let told: Vec<Value> = notifications_for(&first, "u1")
        .into_iter()
        .cloned()
        .collect();
    assert_eq!(
        told,
        [
            json!({"target": "marketing", "kind": "stage_reached", "lead": "u1", "stage": "mql", "at": at(2 * DAY)}),
            json!({"target": "sales", "kind": "stage_reached", "lead": "u1", "stage": "hot", "at": at(2 * DAY)}),
            json!({"target": "revenue", "kind": "converted", "lead": "u1", "conversion": "Signup", "at": at(2 * DAY)}),
        ]
    );
    // what was sent for a1 stays as it was
    assert_eq!(
        notifications_for(&first, "a1"),
        notifications_for(&before, "a1")
    );

    // the same merge again (new messageId), and an identify carrying both ids: nothing new
    engine.process(call(&alias("a1", "u1", 3, "m6")));
    let mut both = identify("u1", 3, json!({}), "m7");
    both["anonymousId"] = json!("a1");
    engine.process(call(&both));
    let again = doc(&engine);
    assert_eq!(again["notifications"], first["notifications"]);
    let mut expected = u1.clone();
    expected["events"] = json!(u1["events"].as_u64().unwrap() + 2);
    assert_eq!(lead(&again, "u1").unwrap(), &expected);

    // a second anonymous lead with a demo request: sql is new to u1, announced once; the
    // stages and conversion u1 had are not announced again
    for c in [
        track(
            "anonymousId",
            "a2",
            1,
            "Form Submitted",
            json!({"form": "demo"}),
            "m8",
        ),
        alias("a2", "u1", 4, "m9"),
    ] {
        engine.process(call(&c));
    }
    let second = doc(&engine);
    let u1 = lead(&second, "u1").unwrap();
    assert_eq!(u1["stage"], "hot");
    // in the combined history a1's webinar and a2's demo on day 1 make u1 an sql on day 1
    assert_eq!(u1["reached"]["sql"], at(DAY));
    let told: Vec<Value> = notifications_for(&second, "u1")
        .into_iter()
        .cloned()
        .collect();
    assert_eq!(told.len(), 4, "{told:#?}");
    let sql: Vec<&Value> = told.iter().filter(|n| n["stage"] == "sql").collect();
    assert_eq!(
        sql,
        [
            &json!({"target": "sales", "kind": "stage_reached", "lead": "u1", "stage": "sql", "at": at(DAY)})
        ]
    );
    for n in notifications_for(&first, "u1") {
        assert_eq!(told.iter().filter(|t| *t == n).count(), 1, "{n}");
    }
    check_notifications(&program, &second).unwrap();
}

#[test]
fn merge_keeps_first_touch_source_by_arrival() {
    let program = compile_rules(MERGE_RULES);
    let mut engine = Engine::new(&program);
    let mut k = page("userId", "u1", 1, "/", "m1");
    k["context"] = json!({"campaign": {"source": "newsletter"}});
    let mut a = page("anonymousId", "a1", 0, "/", "m2");
    a["context"] = json!({"campaign": {"source": "ads"}});
    engine.process(call(&k));
    engine.process(call(&a)); // earlier in time, but arrived later
    engine.process(call(&alias("a1", "u1", 2, "m3")));
    let d = doc(&engine);
    let u1 = lead(&d, "u1").unwrap();
    assert_eq!(u1["source"], "newsletter");
    assert_eq!(u1["first_seen"], at(0));
}

// ---------------------------------------------------------------------------------------------
// examples: bad input
// ---------------------------------------------------------------------------------------------

#[test]
fn a_batch_applies_its_valid_calls_and_reports_the_invalid_ones() {
    let program = compile_rules(MERGE_RULES);
    let body = json!({"batch": [
        page("userId", "u1", 1, "/pricing", "m1"),
        {"type": "track", "event": "Webinar Registered", "userId": "u1",
         "timestamp": "yesterday", "messageId": "m2"},
        track("userId", "u2", 1, "Webinar Registered", json!({}), "m3"),
        {"type": "track", "event": "Webinar Registered", "timestamp": at(DAY), "messageId": "m4"},
        {"type": "identify", "userId": "u1", "timestamp": at(DAY), "messageId": "m5"},
    ]});
    let results = normalize_body(&body, &TimePolicy::Required).unwrap();
    let errors: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().err().map(ToString::to_string))
        .collect();
    assert_eq!(
        errors,
        [
            "batch[1].timestamp: not an RFC 3339 time",
            "batch[3].userId: a call needs `userId` or `anonymousId`",
            "batch[4].traits: an identify call needs `traits` (an object), or `context.traits`",
        ]
    );
    let mut engine = Engine::new(&program);
    for c in results.into_iter().flatten() {
        engine.process(Arc::new(c));
    }
    let expected = replay(
        &program,
        &[
            page("userId", "u1", 1, "/pricing", "m1"),
            track("userId", "u2", 1, "Webinar Registered", json!({}), "m3"),
        ],
    );
    assert_eq!(doc(&engine), expected);
}

#[test]
fn a_rejected_call_changes_no_lead_and_does_not_use_up_its_message_id() {
    let program = compile_rules(MERGE_RULES);
    let mut engine = Engine::new(&program);
    engine.process(call(&page("userId", "u1", 1, "/pricing", "m1")));
    let before = doc(&engine);
    let bad = [
        json!({"type": "track", "event": "Webinar Registered", "userId": "u1",
               "timestamp": "2026-13-01T00:00:00Z", "messageId": "m2"}),
        json!({"type": "track", "userId": "u1", "timestamp": at(DAY), "messageId": "m2"}),
        json!({"type": "alias", "userId": "u1", "timestamp": at(DAY), "messageId": "m2"}),
        json!({"type": "group", "userId": "u1", "traits": {"employees": 10},
               "timestamp": at(DAY), "messageId": "m2"}),
        json!({"type": "track", "event": "Webinar Registered", "userId": "u1",
               "timestamp": at(DAY), "messageId": "m2", "properties": [1]}),
        json!({"type": "track", "event": "Webinar Registered", "userId": 1.5,
               "timestamp": at(DAY), "messageId": "m2"}),
        json!({"type": "signup", "userId": "u1", "timestamp": at(DAY), "messageId": "m2"}),
    ];
    for b in &bad {
        let results = normalize_body(b, &TimePolicy::Required).unwrap();
        assert_eq!(results.len(), 1);
        assert!(results[0].is_err(), "accepted: {b}");
    }
    assert_eq!(doc(&engine), before);
    // the messageId of a rejected call was never seen: a valid call with it is applied
    let out = engine.process(call(&track(
        "userId",
        "u1",
        2,
        "Webinar Registered",
        json!({}),
        "m2",
    )));
    assert!(matches!(out, Outcome::Applied { .. }), "{out:?}");
    assert_eq!(lead(&doc(&engine), "u1").unwrap()["engagement"], 30);
}

// ---------------------------------------------------------------------------------------------
// examples: ticks
// ---------------------------------------------------------------------------------------------

#[test]
fn tick_all_decays_and_reaches_time_dependent_stages_at_the_tick() {
    let program = compile_rules(
        r#"
ruleset "tick"
score "Webinar" +10 on "Webinar Registered"
decay engagement half_life 1d
stage cold when engagement < 5
notify sales when reached cold
"#,
    );
    let mut engine = Engine::new(&program);
    engine.process(call(&track(
        "userId",
        "u1",
        0,
        "Webinar Registered",
        json!({}),
        "m1",
    )));
    engine.process(call(&track(
        "userId",
        "u2",
        20,
        "Webinar Registered",
        json!({}),
        "m2",
    )));
    let d = doc(&engine);
    assert_eq!(lead(&d, "u1").unwrap()["stage"], Value::Null);
    let tick = micros(&at(10 * DAY));
    engine.tick_all(tick);
    let d = doc(&engine);
    let u1 = lead(&d, "u1").unwrap();
    assert_eq!(u1["reached"], json!({"cold": at(10 * DAY)}));
    assert_eq!(u1["engagement"], 0.01); // 10 * 2^-10
    assert_eq!(u1["last_seen"], at(0)); // a tick is not an event
    assert_eq!(u1["events"], 1);
    // u2's clock is later than the tick: no decay backwards, no stage
    let u2 = lead(&d, "u2").unwrap();
    assert_eq!(u2["engagement"], 10);
    assert_eq!(u2["reached"], json!({}));
    assert_eq!(
        d["notifications"],
        json!([{"target": "sales", "kind": "stage_reached", "lead": "u1", "stage": "cold",
                "at": at(10 * DAY)}])
    );
    // ticking again at the same time changes nothing
    engine.tick_all(tick);
    assert_eq!(doc(&engine), d);
}

#[test]
fn document_orders_leads_by_id_and_notifications_by_time_then_lead() {
    let program = compile_rules(MERGE_RULES);
    let calls: Vec<Value> = (0..12)
        .map(|i| {
            let id = format!("u{}", (i * 7) % 5);
            let mut c = track(
                "userId",
                &id,
                10 - i,
                "Signed Up",
                json!({}),
                &format!("m{i}"),
            );
            c["timestamp"] = json!(at((10 - i / 2) * DAY));
            c
        })
        .collect();
    let d = replay(&program, &calls);
    let ids = lead_ids(&d);
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
    let keys: Vec<(Micros, String)> = d["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                micros(n["at"].as_str().unwrap()),
                n["lead"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    assert_eq!(keys.len(), 5);
}

/// The direct lead writer escapes what `serde_json` escapes, writes fractional and
/// out-of-range times through `format_rfc3339`, and prints a lead without events as the
/// contract object does.
#[test]
fn direct_lead_json_handles_escapes_fractions_and_empty_leads() {
    let program = compile_rules(
        r#"ruleset "r"
stage mql when score >= 10
stage sql when score >= 20
conversion "Pur\"chase" on "Order Completed" value revenue
conversion "Sign\\up" on "Signed Up"
"#,
    );
    let mut state = leadscore_rules::LeadState::new(&program);
    let check = |state: &leadscore_rules::LeadState, id: &str| {
        let object = lead_object(&program, id, state);
        for depth in [0, 1, 3, 40] {
            let mut direct = Vec::new();
            write_lead_pretty(&mut direct, depth, &program, id, state).unwrap();
            let indent = format!("\n{}", "  ".repeat(depth));
            let expected = serde_json::to_string_pretty(&object)
                .unwrap()
                .replace('\n', &indent);
            assert_eq!(String::from_utf8(direct).unwrap(), expected, "{id:?}");
        }
    };
    // no events: null times, empty reached and conversions
    check(&state, "");
    state.events = 3;
    state.first_seen = 1_767_225_600 * SECOND + SECOND / 4;
    state.last_seen = i64::MAX;
    state.fit = -0.004;
    state.engagement = 12.345;
    state.source = Some("a\"b\\c\u{1}d\u{7f}é".into());
    state.reached[1] = Some(-SECOND);
    state.reached[0] = Some(1_767_225_600 * SECOND + 123);
    state.conversions[1] = Some(leadscore_rules::eval::ConversionState {
        at: 1_767_225_700 * SECOND,
        count: 2,
        value: 0.0,
    });
    state.conversions[0] = Some(leadscore_rules::eval::ConversionState {
        at: 1_767_225_700 * SECOND,
        count: 1,
        value: 1.0 / 3.0,
    });
    check(&state, "u\"1\n\t\\é");
    check(&state, "plain");
}
