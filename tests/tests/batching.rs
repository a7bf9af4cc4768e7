//! The one pipeline on every store: a batch gives the state of its calls sent one by one.
//! Generated call sequences (several leads, anonymous ids joining known ones, repeated
//! message ids, times out of order) are sent to a fresh store once as one `POST /events`
//! batch and once call by call, and every lead is read back with `GET /leads/{id}`: the
//! answers must be equal, on the memory store (replay), the journaled store (serve) and
//! DynamoDB Local (the `score` function).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use common::*;
use leadscore_core::api::{Api, ApiConfig, ApiRequest};
use leadscore_core::store::engine::Engine;
use leadscore_core::store::journal::{Journaled, JournaledStore, RuleHistory};
use leadscore_core::store::memory::MemoryStore;
use leadscore_rules::Program;
use leadscore_tests::{workspace_root, DynamoLocal, Storage};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

const USERS: [&str; 3] = ["usr_a", "usr_b", "usr_c"];
const ANONS: [&str; 2] = ["anon_1", "anon_2"];

/// One generated call: who sends it, what it is, when, and its message id.
#[derive(Debug, Clone)]
struct Gen {
    user: Option<usize>,
    anon: Option<usize>,
    kind: usize,
    minute: u32,
    shared_id: Option<usize>,
}

fn any_call() -> impl Strategy<Value = Gen> {
    (
        prop::option::of(0..USERS.len()),
        prop::option::of(0..ANONS.len()),
        0usize..8,
        0u32..600,
        prop::option::weighted(0.15, 0usize..4),
    )
        .prop_map(|(user, anon, kind, minute, shared_id)| Gen {
            // every call names someone
            user: if user.is_none() && anon.is_none() {
                Some(0)
            } else {
                user
            },
            anon,
            kind,
            minute,
            shared_id,
        })
}

/// Call `n` as Segment sends it, over what the example rules score.
fn to_json(n: usize, g: &Gen) -> Value {
    let mut v = match g.kind {
        0 => json!({"type": "page", "properties": {"path": "/pricing"}}),
        1 => json!({"type": "page", "properties": {"path": "/docs/api"}}),
        2 => json!({"type": "track", "event": "Webinar Registered"}),
        3 => json!({"type": "track", "event": "Form Submitted", "properties": {"form": "demo"}}),
        4 => json!({"type": "track", "event": "Feature Used"}),
        5 => {
            json!({"type": "identify", "traits": {"plan": "trial", "email": "a@acme.io", "title": "VP Marketing"}})
        }
        6 => json!({"type": "track", "event": "Signed Up", "properties": {"trial": true}}),
        _ => json!({"type": "track", "event": "Email Unsubscribed"}),
    };
    let o = v.as_object_mut().unwrap();
    if let Some(u) = g.user {
        o.insert("userId".into(), json!(USERS[u]));
    }
    if let Some(a) = g.anon {
        o.insert("anonymousId".into(), json!(ANONS[a]));
    }
    let at = format!(
        "2026-05-{:02}T{:02}:{:02}:00Z",
        1 + g.minute / 60 / 24,
        g.minute / 60 % 24,
        g.minute % 60
    );
    o.insert("timestamp".into(), json!(at));
    let id = g
        .shared_id
        .map_or_else(|| format!("m{n}"), |k| format!("shared-{k}"));
    o.insert("messageId".into(), json!(id));
    v
}

fn calls() -> impl Strategy<Value = Vec<Value>> {
    prop::collection::vec(any_call(), 1..30).prop_map(|gens| {
        gens.iter()
            .enumerate()
            .map(|(n, g)| to_json(n, g))
            .collect()
    })
}

fn program() -> Arc<Program> {
    common::program(&workspace_root().join("rules/b2b-saas"))
}

fn config() -> ApiConfig {
    ApiConfig {
        allow_unsigned: true,
        api_token: Some("token-1".into()),
        ..ApiConfig::default()
    }
}

fn request(method: &str, path: &str, body: &str) -> ApiRequest {
    ApiRequest {
        method: method.into(),
        path: path.into(),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("authorization".into(), "Bearer token-1".into()),
        ],
        body: body.as_bytes().to_vec(),
    }
}

/// Sends the calls (as one batch, or one request each) and reads every lead back.
async fn through<S: leadscore_core::api::LeadStore>(
    api: &Api<S>,
    calls: &[Value],
    batched: bool,
) -> BTreeMap<String, (u16, Value)> {
    let now = leadscore_core::store::dynamo::now_micros();
    if batched {
        let body = json!({"batch": calls}).to_string();
        let resp = api.handle(&request("POST", "/events", &body), now).await;
        assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    } else {
        for call in calls {
            let resp = api
                .handle(&request("POST", "/events", &call.to_string()), now)
                .await;
            assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
        }
    }
    let mut leads = BTreeMap::new();
    for id in USERS.iter().chain(&ANONS) {
        let resp = api
            .handle(&request("GET", &format!("/leads/{id}"), ""), now)
            .await;
        leads.insert(
            (*id).to_owned(),
            (
                resp.status,
                serde_json::from_slice(&resp.body).unwrap_or(Value::Null),
            ),
        );
    }
    leads
}

fn equal(
    store: &str,
    batched: &BTreeMap<String, (u16, Value)>,
    single: &BTreeMap<String, (u16, Value)>,
    calls: &[Value],
) -> Result<(), TestCaseError> {
    prop_assert!(
        batched == single,
        "{store}: a batch and the same calls one by one differ\ncalls: {}\nbatched: {}\none by one: {}",
        serde_json::to_string(calls).unwrap(),
        serde_json::to_string(batched).unwrap(),
        serde_json::to_string(single).unwrap()
    );
    prop_assert!(
        batched.values().any(|(status, _)| *status == 200),
        "{store}: no lead was stored"
    );
    Ok(())
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

#[test]
fn a_batch_equals_its_calls_one_by_one_on_the_memory_store() {
    let program = program();
    runner(64)
        .run(&calls(), |calls| {
            let run = |batched| {
                let api = Api::new(config(), MemoryStore::new(Engine::new(&program)));
                pollster::block_on(through(&api, &calls, batched))
            };
            equal("memory", &run(true), &run(false), &calls)
        })
        .unwrap();
}

#[test]
fn a_batch_equals_its_calls_one_by_one_on_the_journaled_store() {
    let root = workspace_root().join("rules/b2b-saas");
    let (program, _, files) = leadscore_core::rules::load(&[root]).unwrap();
    runner(24)
        .run(&calls(), |calls| {
            let run = |batched| {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("journal.jsonl");
                let (history, programs): (RuleHistory, Vec<Program>) =
                    RuleHistory::read(&path).unwrap();
                let (journaled, _) =
                    Journaled::open(&programs, history, (&program, &files), &path).unwrap();
                let api = Api::new(config(), JournaledStore::new(journaled));
                pollster::block_on(through(&api, &calls, batched))
            };
            equal("journal", &run(true), &run(false), &calls)
        })
        .unwrap();
}

#[test]
fn a_batch_equals_its_calls_one_by_one_on_dynamodb_local() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let local = DynamoLocal::start(Storage::InMemory).unwrap();
    let program = program();
    runner(12)
        .run(&calls(), |calls| {
            let run = |batched| {
                runtime.block_on(async {
                    // the API the score function wraps, on a fresh table
                    let api = Api::new(config(), store(&local, Arc::clone(&program)).await);
                    through(&api, &calls, batched).await
                })
            };
            equal("dynamodb", &run(true), &run(false), &calls)
        })
        .unwrap();
}
