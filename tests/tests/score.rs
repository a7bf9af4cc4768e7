//! The score function end to end against Amazon's DynamoDB Local: real Segment payloads
//! delivered in the exact request shape Lambda gives a Function URL (payload 2.0), with the
//! state in the table compared to `leadscore replay` on the same events.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use common::*;
use hmac::{Hmac, Mac};
use lambda_http::Request;
use leadscore_core::api::{ApiConfig, LeadStore};
use leadscore_core::ingest::call::TimePolicy;
use leadscore_core::ingest::segment::normalize_body;
use leadscore_core::output::lead_object;
use leadscore_core::store::dynamo::{DynamoStore, RescoreProgress};
use leadscore_core::store::engine::Engine;
use leadscore_rules::Program;
use leadscore_score::Score;
use leadscore_tests::{workspace_root, DynamoLocal, Storage};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_events_through_the_function_equal_replay() {
    let local = DynamoLocal::start(Storage::InMemory).unwrap();
    let root = workspace_root();
    for (rules, events) in [
        ("rules/b2b-saas", "rules/b2b-saas/events.jsonl"),
        ("rules/freemium", "rules/freemium/events.jsonl"),
        ("rules/online-course", "rules/online-course/events.jsonl"),
    ] {
        let program = program(&root.join(rules));
        let store = store(&local, Arc::clone(&program)).await;
        let score = Score::new(signed_config(), store.clone());
        let lines = lines(&root.join(events));
        for line in &lines {
            let (status, body) = send(&score, signed_post(line)).await;
            assert_eq!(status, 200, "{rules}: {line}: {body}");
        }
        let expected = replay(&program, &lines);
        assert!(!expected.is_empty(), "{rules}: replay gave no leads");
        let got = table_leads(&store, expected.keys()).await;
        assert_eq!(got, expected, "{rules}: the table differs from replay");
        // merged anonymous ids are pointers, not leads of their own
        let states = scan(&store)
            .await
            .into_iter()
            .filter(|i| i.contains_key("state"))
            .count();
        assert_eq!(states, expected.len(), "{rules}: one state item per lead");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_cases_through_the_function_equal_replay() {
    let local = DynamoLocal::start(Storage::InMemory).unwrap();
    let dir = workspace_root().join("../shared/conformance");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    for case in &cases {
        assert!(
            case.join("rules.rules").exists(),
            "{}: no rules.rules",
            case.display()
        );
    }
    cases.sort();
    assert!(
        !cases.is_empty(),
        "no conformance cases under {}",
        dir.display()
    );
    for case in cases {
        let program = program(&case.join("rules.rules"));
        let store = store(&local, Arc::clone(&program)).await;
        let score = Score::new(signed_config(), store.clone());
        let lines = lines(&case.join("events.jsonl"));
        for line in &lines {
            let (status, _) = send(&score, signed_post(line)).await;
            assert!(
                status == 200 || status == 400,
                "{}: {status}",
                case.display()
            );
        }
        let expected = replay(&program, &lines);
        assert!(
            !expected.is_empty(),
            "{}: replay gave no leads",
            case.display()
        );
        let got = table_leads(&store, expected.keys()).await;
        assert_eq!(got, expected, "{}", case.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_delivered_three_times_counts_once() {
    let local = DynamoLocal::start(Storage::InMemory).unwrap();
    let root = workspace_root();
    let program = program(&root.join("rules/b2b-saas"));
    let lines = lines(&root.join("rules/b2b-saas/events.jsonl"));
    let once = store(&local, Arc::clone(&program)).await;
    let thrice = store(&local, Arc::clone(&program)).await;
    let score_once = Score::new(signed_config(), once.clone());
    let score_thrice = Score::new(signed_config(), thrice.clone());
    for line in &lines {
        assert_eq!(send(&score_once, signed_post(line)).await.0, 200);
        for attempt in 0..3 {
            let (status, body) = send(&score_thrice, signed_post(line)).await;
            assert_eq!(status, 200);
            if attempt > 0 {
                assert_eq!(body["applied"], 0, "a redelivery applies nothing: {body}");
            }
        }
    }
    let expected = replay(&program, &lines);
    assert_eq!(
        table_leads(&thrice, expected.keys()).await,
        table_leads(&once, expected.keys()).await
    );
    assert_eq!(table_leads(&thrice, expected.keys()).await, expected);
    let notes = |items: &Vec<
        std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
    >| {
        items
            .iter()
            .filter(|i| matches!(i.get("sk"), Some(aws_sdk_dynamodb::types::AttributeValue::S(sk)) if sk.starts_with("NOTE#")))
            .count()
    };
    let (a, b) = (scan(&once).await, scan(&thrice).await);
    assert!(
        notes(&a) > 0,
        "the example events reach stages with notify lines"
    );
    assert_eq!(
        notes(&a),
        notes(&b),
        "one notification per transition per target"
    );
    assert_eq!(a.len(), b.len(), "the same items");
}

const COUNTER_RULES: &str = r#"ruleset "counter"
score "Ping" +1 on "Ping"
"#;

/// Sends writer `writer`'s ping `n` as a sender does: again after a `503`, until a `200`
/// says it was applied.
async fn ping_until_applied(score: &Score, writer: usize, n: usize) {
    let body = ping(writer, n);
    for _ in 0..50 {
        let (status, resp) = send(score, signed_post(&body)).await;
        if status == 200 {
            assert_eq!(resp["applied"], 1, "{resp}");
            return;
        }
        assert_eq!(status, 503, "{resp}");
    }
    panic!("writer {writer} never got through");
}

fn ping(writer: usize, n: usize) -> String {
    json!({
        "type": "track",
        "event": "Ping",
        "userId": "u-hot",
        "messageId": format!("w{writer}-{n}"),
        "timestamp": format!("2026-03-01T10:{:02}:{:02}Z", n / 60, n % 60),
    })
    .to_string()
}

/// One instance, many requests at once: the API takes `&self` (no lock around it), so the
/// requests run side by side and meet only at DynamoDB's version guards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_instance_serves_eight_concurrent_senders_without_a_lock() {
    let local = DynamoLocal::start(Storage::InMemory).unwrap();
    let program = program_text(COUNTER_RULES);
    let base = store(&local, Arc::clone(&program)).await;
    let score = Arc::new(Score::new(signed_config(), base.clone()));
    let mut tasks = Vec::new();
    for writer in 0..8 {
        let score = Arc::clone(&score);
        tasks.push(tokio::spawn(async move {
            for n in 0..50 {
                ping_until_applied(&score, writer, n).await;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let state = base.lead("u-hot").await.unwrap().unwrap().1.state;
    assert_eq!(state.events, 400, "every event counted once");
    assert!(
        (state.score() - 400.0).abs() < 1e-9,
        "score {}",
        state.score()
    );
    // with a lock around the API the instance's requests would run one at a time and never
    // conflict; without one they overlap inside the store and meet at the version guard
    assert!(
        base.counters()
            .retries
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0,
        "the requests never overlapped inside the instance"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_concurrent_writers_for_one_lead_count_every_event_once() {
    let local = DynamoLocal::start(Storage::InMemory).unwrap();
    let program = program_text(COUNTER_RULES);
    let base = store(&local, Arc::clone(&program)).await;
    let mut tasks = Vec::new();
    for writer in 0..8 {
        // one store (and client) per writer: eight Lambda instances
        let client = local.client().await;
        let store = DynamoStore::new(client, base.table(), Arc::clone(&program), 400);
        tasks.push(tokio::spawn(async move {
            let score = Score::new(signed_config(), store);
            for n in 0..125 {
                ping_until_applied(&score, writer, n).await;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let state = base.lead("u-hot").await.unwrap().unwrap().1.state;
    assert_eq!(state.events, 1000, "every event counted once");
    assert!(
        (state.score() - 1000.0).abs() < 1e-9,
        "score {}",
        state.score()
    );
    let msgs = scan(&base)
        .await
        .iter()
        .filter(|i| matches!(i.get("sk"), Some(aws_sdk_dynamodb::types::AttributeValue::S(sk)) if sk == "MSG"))
        .count();
    assert_eq!(msgs, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_per_event_and_per_batch() {
    let local = DynamoLocal::start(Storage::InMemory).unwrap();
    let program = program_text(COUNTER_RULES);
    let store = store(&local, Arc::clone(&program)).await;
    let score = Score::new(signed_config(), store.clone());
    // warm: the lead exists
    assert_eq!(send(&score, signed_post(&ping(0, 0))).await.0, 200);
    let before = store.requests();
    assert_eq!(send(&score, signed_post(&ping(0, 1))).await.0, 200);
    assert_eq!(store.requests() - before, 2, "one event: read, transact");
    // a new lead costs the same
    let before = store.requests();
    let fresh = json!({"type": "track", "event": "Ping", "userId": "u-new", "messageId": "new-1", "timestamp": "2026-03-01T10:00:00Z"});
    assert_eq!(send(&score, signed_post(&fresh.to_string())).await.0, 200);
    assert_eq!(store.requests() - before, 2, "a new lead: read, transact");
    // a batch of k events for one lead: 2 in all
    let batch: Vec<Value> = (10..40)
        .map(|n| serde_json::from_str(&ping(0, n)).unwrap())
        .collect();
    let body = json!({"batch": batch}).to_string();
    let before = store.requests();
    let (status, resp) = send(&score, signed_post(&body)).await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["applied"], 30);
    assert_eq!(
        store.requests() - before,
        2,
        "a batch for one lead: read, transact"
    );
    // a redelivered event: read, and the transaction that finds it applied
    let before = store.requests();
    let (_, resp) = send(&score, signed_post(&ping(0, 1))).await;
    assert_eq!(resp["duplicates"], 1);
    assert_eq!(store.requests() - before, 2);
    // a batch over the 100-item transaction limit is split, and still all applied
    let batch: Vec<Value> = (100..200)
        .map(|n| serde_json::from_str(&ping(0, n)).unwrap())
        .collect();
    // 49 calls per transaction: the state, and an idempotency record and the call each
    let before = store.requests();
    let (status, resp) = send(&score, signed_post(&json!({"batch": batch}).to_string())).await;
    assert_eq!(status, 200);
    assert_eq!(resp["applied"], 100);
    assert_eq!(store.requests() - before, 4, "one read, three transactions");
    let state = store.lead("u-hot").await.unwrap().unwrap().1.state;
    assert_eq!(state.events, 132);
    // reading a lead: one read gives its state and latest hits, under one set of rules
    let before = store.requests();
    let (status, lead) = send(&score, get_lead("u-hot")).await;
    assert_eq!(status, 200, "{lead}");
    assert_eq!(lead["latest_hits"]["hits"][0]["rule"], "Ping", "{lead}");
    assert_eq!(store.requests() - before, 1, "GET /leads/{{id}}: one read");
}

/// The capacity DynamoDB reports for each request is added up, and each transaction is also
/// priced item by item: one event's consistent read of its lead (1 read unit, whether or not
/// the lead exists) and its transaction (its state, call and idempotency record: 2 write
/// units each, where DynamoDB Local reports 2 for the three together), the `due` index apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumed_capacity_is_counted() {
    let local = DynamoLocal::start(Storage::InMemory).unwrap();
    let store = store(&local, program_text(COUNTER_RULES)).await;
    let score = Score::new(signed_config(), store.clone());
    assert_eq!(store.counters().capacity.figures().read, 0.0);
    assert_eq!(send(&score, signed_post(&ping(0, 0))).await.0, 200);
    let first = store.counters().capacity.figures();
    assert_eq!(first.read, 1.0, "one consistent read of a small item");
    assert!(first.write >= 2.0, "{first:?}");
    assert_eq!(
        first.priced_write - first.index_write,
        6.0,
        "three small items, transactional: {first:?}"
    );
    assert!(first.index_write <= first.write, "{first:?}");
    // a duplicate: the read, and the transaction that finds it applied and writes nothing
    assert_eq!(
        send(&score, signed_post(&ping(0, 0))).await.1["duplicates"],
        1
    );
    let again = store.counters().capacity.figures();
    assert_eq!(again.read, 2.0, "{again:?}");
}

fn get_lead(id: &str) -> Request {
    function_url(
        "GET",
        &format!("/leads/{id}"),
        json!({"authorization": "Bearer token-1"}),
        None,
    )
}

/// `latest_hits` names rules by their place in the rules the call was scored under: a lead
/// read under other rules (reordered here, and not yet rescored) shows no hits rather than
/// another rule's name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lead_read_under_other_rules_shows_no_hits_of_the_old_ones() {
    let local = DynamoLocal::start(Storage::InMemory).unwrap();
    let v1 = program_text(
        "ruleset \"counter\"\nscore \"Ping\" +1 on \"Ping\"\nscore \"Signup\" +5 on \"Signed Up\"\n",
    );
    let store1 = store(&local, v1).await;
    let score1 = Score::new(signed_config(), store1.clone());
    assert_eq!(send(&score1, signed_post(&ping(0, 0))).await.0, 200);
    let (_, lead) = send(&score1, get_lead("u-hot")).await;
    assert_eq!(lead["latest_hits"]["hits"][0]["rule"], "Ping", "{lead}");

    let v2 = program_text(
        "ruleset \"counter\"\nscore \"Signup\" +5 on \"Signed Up\"\nscore \"Ping\" +1 on \"Ping\"\n",
    );
    let store2 = DynamoStore::new(store1.client().clone(), store1.table(), v2, 400);
    let score2 = Score::new(signed_config(), store2);
    let (status, lead) = send(&score2, get_lead("u-hot")).await;
    assert_eq!(status, 200, "{lead}");
    assert_eq!(lead["score"], json!(1), "{lead}");
    assert!(lead.get("latest_hits").is_none(), "{lead}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_down_gives_503_and_retries_apply_exactly_once() {
    let mut local = DynamoLocal::start(Storage::OnDisk).unwrap();
    let root = workspace_root();
    let program = program(&root.join("rules/b2b-saas"));
    let lines = lines(&root.join("rules/b2b-saas/events.jsonl"));
    let store = store(&local, Arc::clone(&program)).await;
    let score = Score::new(signed_config(), store.clone());
    let half = lines.len() / 2;
    for line in &lines[..half] {
        assert_eq!(send(&score, signed_post(line)).await.0, 200);
    }
    let items_before = scan(&store).await;
    local.stop().unwrap();
    let mut failed = Vec::new();
    for line in &lines[half..half + 5] {
        let (status, headers, body) = send_full(&score, signed_post(line)).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"]["code"], "storage_unavailable");
        assert_eq!(
            headers.get("retry-after").and_then(|v| v.to_str().ok()),
            Some("1"),
            "a transient error says when to retry"
        );
        failed.push(line.clone());
    }
    local.restart().unwrap();
    assert_eq!(
        scan(&store).await,
        items_before,
        "nothing was written while storage was down"
    );
    // the sender retries the failed requests, then goes on; some retries come twice
    for line in failed
        .iter()
        .chain(&lines[half..])
        .chain(&lines[half..half + 3])
    {
        assert_eq!(send(&score, signed_post(line)).await.0, 200);
    }
    let expected = replay(&program, &lines);
    assert_eq!(table_leads(&store, expected.keys()).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_missing_forged_or_stale_are_401_and_write_nothing() {
    let local = DynamoLocal::start(Storage::InMemory).unwrap();
    let program = program_text(COUNTER_RULES);
    let store = store(&local, Arc::clone(&program)).await;
    let score = Score::new(signed_config(), store.clone());
    let body = ping(0, 0);
    let cases = vec![
        ("missing", json!({"content-type": "application/json"})),
        (
            "forged",
            json!({"content-type": "application/json", "x-signature": "00".repeat(20)}),
        ),
        (
            "signed for another body",
            json!({"content-type": "application/json", "x-signature": segment_signature("{}")}),
        ),
    ];
    for (what, headers) in cases {
        let (status, resp) = send(
            &score,
            function_url("POST", "/events", headers, Some(&body)),
        )
        .await;
        assert_eq!(status, 401, "{what}: {resp}");
    }
    // Standard Webhooks: stale timestamp, and a valid one
    let whsec = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let standard = Score::new(
        ApiConfig {
            webhook_secret: Some(whsec.into()),
            ..ApiConfig::default()
        },
        store.clone(),
    );
    let sign = |id: &str, ts: i64, body: &str| {
        use base64::Engine as _;
        let key = base64::engine::general_purpose::STANDARD
            .decode(&whsec[6..])
            .unwrap();
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
        mac.update(format!("{id}.{ts}.{body}").as_bytes());
        format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
        )
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let stale = now - 3600;
    let headers = json!({"content-type": "application/json", "webhook-id": "msg_1", "webhook-timestamp": stale.to_string(), "webhook-signature": sign("msg_1", stale, &body)});
    let (status, resp) = send(
        &standard,
        function_url("POST", "/events", headers, Some(&body)),
    )
    .await;
    assert_eq!(status, 401, "stale: {resp}");
    assert!(scan(&store).await.is_empty(), "nothing written");
    let headers = json!({"content-type": "application/json", "webhook-id": "msg_2", "webhook-timestamp": now.to_string(), "webhook-signature": sign("msg_2", now, &body)});
    let (status, resp) = send(
        &standard,
        function_url("POST", "/events", headers, Some(&body)),
    )
    .await;
    assert_eq!(status, 200, "valid: {resp}");
    assert!(!scan(&store).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_the_right_4xx_and_write_nothing() {
    let local = DynamoLocal::start(Storage::InMemory).unwrap();
    let program = program_text(COUNTER_RULES);
    let store = store(&local, Arc::clone(&program)).await;
    let unsigned = ApiConfig {
        allow_unsigned: true,
        api_token: Some("token-1".into()),
        ..ApiConfig::default()
    };
    let score = Score::new(unsigned, store.clone());
    let good = r#""type":"track","event":"Ping","userId":"u1","messageId":"m1""#;
    let bodies: Vec<(&str, String, u16, &str)> =
        vec![
        ("not JSON", "not json".into(), 400, "invalid_json"),
        ("truncated JSON", format!("{{{good}"), 400, "invalid_json"),
        ("empty body", String::new(), 400, "invalid_json"),
        ("a number", "42".into(), 400, "invalid_call"),
        ("a string", "\"track\"".into(), 400, "invalid_call"),
        // a bare array is a batch (SPEC §8): one with no valid call, or none at all
        ("an array of no call", "[1, \"two\"]".into(), 400, "invalid_call"),
        ("an empty array", "[]".into(), 400, "invalid_call"),
        ("null", "null".into(), 400, "invalid_call"),
        (
            "no type and no event",
            r#"{"userId":"u1","properties":{}}"#.into(),
            400,
            "invalid_call",
        ),
        (
            "identify without traits",
            r#"{"type":"identify","userId":"u1"}"#.into(),
            400,
            "invalid_call",
        ),
        (
            "unknown type",
            r#"{"type":"purchase","userId":"u1"}"#.into(),
            400,
            "invalid_call",
        ),
        (
            "type not a string",
            r#"{"type":7,"userId":"u1"}"#.into(),
            400,
            "invalid_call",
        ),
        (
            "no ids",
            r#"{"type":"track","event":"Ping"}"#.into(),
            400,
            "invalid_call",
        ),
        (
            "empty userId",
            r#"{"type":"track","event":"Ping","userId":""}"#.into(),
            400,
            "invalid_call",
        ),
        (
            "userId an object",
            r#"{"type":"track","event":"Ping","userId":{"a":1}}"#.into(),
            400,
            "invalid_call",
        ),
        (
            "track without event",
            r#"{"type":"track","userId":"u1"}"#.into(),
            400,
            "invalid_call",
        ),
        (
            "event not a string",
            r#"{"type":"track","event":3,"userId":"u1"}"#.into(),
            400,
            "invalid_call",
        ),
        (
            "properties not an object",
            r#"{"type":"track","event":"Ping","userId":"u1","properties":[1]}"#.into(),
            400,
            "invalid_call",
        ),
        (
            "traits not an object",
            r#"{"type":"identify","userId":"u1","traits":"vip"}"#.into(),
            400,
            "invalid_call",
        ),
        (
            "bad timestamp",
            r#"{"type":"track","event":"Ping","userId":"u1","timestamp":"yesterday"}"#.into(),
            400,
            "invalid_call",
        ),
        (
            "timestamp a number",
            r#"{"type":"track","event":"Ping","userId":"u1","timestamp":1700000000}"#.into(),
            400,
            "invalid_call",
        ),
        (
            "impossible date",
            r#"{"type":"track","event":"Ping","userId":"u1","timestamp":"2026-02-30T10:00:00Z"}"#
                .into(),
            400,
            "invalid_call",
        ),
        (
            "far future",
            r#"{"type":"track","event":"Ping","userId":"u1","timestamp":"2999-01-01T00:00:00Z"}"#
                .into(),
            400,
            "invalid_call",
        ),
        (
            "messageId a number",
            r#"{"type":"track","event":"Ping","userId":"u1","messageId":5}"#.into(),
            400,
            "invalid_call",
        ),
        (
            "alias without previousId",
            r#"{"type":"alias","userId":"u1"}"#.into(),
            400,
            "invalid_call",
        ),
        ("empty batch", r#"{"batch":[]}"#.into(), 400, "invalid_call"),
        (
            "batch not an array",
            r#"{"batch":{"type":"track"}}"#.into(),
            400,
            "invalid_call",
        ),
        (
            "batch of garbage",
            r#"{"batch":[1,"x",null]}"#.into(),
            400,
            "invalid_call",
        ),
        (
            "batch of calls without ids",
            r#"{"batch":[{"type":"track","event":"Ping"}]}"#.into(),
            400,
            "invalid_call",
        ),
        (
            "group without groupId",
            r#"{"type":"group","userId":"u1","traits":{}}"#.into(),
            400,
            "invalid_call",
        ),
        (
            "a call too large to keep (under the body limit)",
            format!(
                r#"{{"type":"track","event":"Ping","userId":"u1","properties":{{"pad":"{}"}}}}"#,
                "x".repeat(500_000)
            ),
            400,
            "invalid_call",
        ),
    ];
    let mut checked = 0;
    let mut wrong = Vec::new();
    for (what, body, want, code) in &bodies {
        let req = function_url(
            "POST",
            "/events",
            json!({"content-type": "application/json"}),
            Some(body),
        );
        let (status, resp) = send(&score, req).await;
        if status != *want
            || resp["error"]["code"] != *code
            || resp["error"]["message"].as_str().is_none_or(str::is_empty)
        {
            wrong.push(format!("{what}: {status} {resp}"));
        }
        checked += 1;
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    // wrong content type, oversized, wrong method, unknown route, /leads without the token
    let good_body = format!("{{{good}}}");
    let other: Vec<(&str, Request, u16)> = vec![
        ("text/plain", function_url("POST", "/events", json!({"content-type": "text/plain"}), Some(&good_body)), 415),
        ("form", function_url("POST", "/events", json!({"content-type": "application/x-www-form-urlencoded"}), Some("a=b")), 415),
        ("no content type", function_url("POST", "/events", json!({}), Some(&good_body)), 415),
        ("oversized", function_url("POST", "/events", json!({"content-type": "application/json"}), Some(&format!("{{\"type\":\"track\",\"event\":\"Ping\",\"userId\":\"u1\",\"properties\":{{\"pad\":\"{}\"}}}}", "x".repeat(1_100_000)))), 413),
        ("GET /events", function_url("GET", "/events", json!({}), None), 405),
        ("PUT /leads", function_url("PUT", "/leads/u1", json!({"authorization": "Bearer token-1"}), None), 405),
        ("unknown route", function_url("POST", "/event", json!({"content-type": "application/json"}), Some(&good_body)), 404),
        ("leads without token", function_url("GET", "/leads/u1", json!({}), None), 401),
        ("leads with a wrong token", function_url("DELETE", "/leads/u1", json!({"authorization": "Bearer nope"}), None), 401),
    ];
    for (what, req, want) in other {
        let (status, resp) = send(&score, req).await;
        assert_eq!(status, want, "{what}: {resp}");
        assert!(resp["error"]["code"].is_string(), "{what}: {resp}");
        checked += 1;
    }
    assert!(checked >= 30, "{checked} malformed requests");
    assert!(scan(&store).await.is_empty(), "no item written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_and_delete_a_lead_through_the_function() {
    let local = DynamoLocal::start(Storage::InMemory).unwrap();
    let root = workspace_root();
    let program = program(&root.join("rules/b2b-saas"));
    let lines = lines(&root.join("rules/b2b-saas/events.jsonl"));
    let store = store(&local, Arc::clone(&program)).await;
    let score = Score::new(signed_config(), store.clone());
    for line in &lines {
        send(&score, signed_post(line)).await;
    }
    let expected = replay(&program, &lines);
    let auth = json!({"authorization": "Bearer token-1"});
    for (id, lead) in &expected {
        let (status, got) = send(
            &score,
            function_url("GET", &format!("/leads/{id}"), auth.clone(), None),
        )
        .await;
        assert_eq!(status, 200);
        let mut got = got;
        assert!(got["latest_hits"]["hits"].is_array(), "{got}");
        got.as_object_mut().unwrap().remove("latest_hits");
        let rules = got.as_object_mut().unwrap().remove("rules");
        assert_eq!(
            rules,
            Some(json!({"ruleset": program.name, "version": program.version})),
            "the rules the lead is read under"
        );
        assert_eq!(&got, lead);
    }
    // a merged anonymous id answers with the lead it joined
    let merged: Vec<String> = lines
        .iter()
        .filter_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            (v.get("userId").is_some())
                .then(|| v.get("anonymousId")?.as_str().map(str::to_owned))?
        })
        .collect();
    for anon in &merged {
        let (status, got) = send(
            &score,
            function_url("GET", &format!("/leads/{anon}"), auth.clone(), None),
        )
        .await;
        assert_eq!(status, 200);
        assert_ne!(got["id"], json!(anon));
    }
    let victim = expected.keys().next().unwrap().clone();
    let (status, _) = send(
        &score,
        function_url("DELETE", &format!("/leads/{victim}"), auth.clone(), None),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = send(
        &score,
        function_url("GET", &format!("/leads/{victim}"), auth.clone(), None),
    )
    .await;
    assert_eq!(status, 404);
    for item in scan(&store).await {
        let text = format!("{item:?}");
        assert!(!text.contains(&format!("LEAD#{victim}\"")), "left: {text}");
    }
    // its calls can be sent again and count as new
    for line in lines
        .iter()
        .filter(|l| l.contains(&format!("\"{victim}\"")))
    {
        let (_, resp) = send(&score, signed_post(line)).await;
        assert_eq!(resp["duplicates"], 0, "{resp}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decay_ticks_due_leads_like_replay_as_of() {
    let local = DynamoLocal::start(Storage::InMemory).unwrap();
    let root = workspace_root();
    let program = program(&root.join("rules/b2b-saas"));
    let lines = lines(&root.join("rules/b2b-saas/events.jsonl"));
    let store = store(&local, Arc::clone(&program)).await;
    let score = Score::new(signed_config(), store.clone());
    for line in &lines {
        send(&score, signed_post(line)).await;
    }
    let at = leadscore_rules::time::parse_rfc3339("2026-04-01T00:00:00Z").unwrap();
    // a tick stamped far ahead of the wall clock is refused and changes nothing
    let before = scan(&store).await;
    let future = json!({"version": "0", "id": "0", "detail-type": "Scheduled Event", "source": "aws.events", "time": "2099-01-01T00:00:00Z", "detail": {}});
    let refused = leadscore_decay::handle(&store, &future).await;
    assert!(
        matches!(refused, Err(leadscore_decay::DecayError::FarFuture { .. })),
        "{refused:?}"
    );
    assert_eq!(scan(&store).await, before, "a refused tick wrote something");
    let event = json!({"version": "0", "id": "1", "detail-type": "Scheduled Event", "source": "aws.events", "time": "2026-04-01T00:00:00Z", "detail": {}});
    let report = leadscore_decay::handle(&store, &event).await.unwrap();
    assert!(report["visited"].as_u64().unwrap() > 0, "{report}");
    let mut engine = Engine::new(&program);
    for line in &lines {
        let value: Value = serde_json::from_str(line).unwrap();
        for call in normalize_body(&value, &TimePolicy::Required)
            .unwrap()
            .into_iter()
            .flatten()
        {
            engine.process(Arc::new(call));
        }
    }
    engine.tick_all(at);
    let expected: BTreeMap<String, Value> = engine
        .leads()
        .map(|(id, r)| {
            (
                id.to_string(),
                serde_json::to_value(lead_object(&program, id, &r.state)).unwrap(),
            )
        })
        .collect();
    let got = table_leads(&store, expected.keys()).await;
    assert_eq!(
        got, expected,
        "the table after the tick differs from replay --as-of"
    );
    // a second tick at the same time visits nothing: the leads are due later
    let again = leadscore_decay::handle(&store, &event).await.unwrap();
    assert_eq!(again["visited"], 0, "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_gateway_http_api_requests_work_like_function_url_ones() {
    let local = DynamoLocal::start(Storage::InMemory).unwrap();
    let program = program_text(COUNTER_RULES);
    let store = store(&local, Arc::clone(&program)).await;
    let score = Score::new(signed_config(), store.clone());
    let body = ping(0, 0);
    // an HTTP API (payload 2.0) route `POST /events` on the default stage
    let event = json!({
        "version": "2.0",
        "routeKey": "POST /events",
        "rawPath": "/events",
        "rawQueryString": "",
        "headers": {"content-type": "application/json; charset=utf-8", "x-signature": segment_signature(&body)},
        "requestContext": {
            "accountId": "123456789012", "apiId": "api1234567", "domainName": "api1234567.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "api1234567",
            "http": {"method": "POST", "path": "/events", "protocol": "HTTP/1.1", "sourceIp": "203.0.113.9", "userAgent": "Segment.io/1.0"},
            "requestId": "JKJaXmPLvHcESHA=", "routeKey": "POST /events", "stage": "$default",
            "time": "22/Nov/2026:17:00:00 +0000", "timeEpoch": 1_795_366_800_000_u64
        },
        "body": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &body),
        "isBase64Encoded": true
    });
    let req = lambda_http::request::from_str(&event.to_string()).unwrap();
    let (status, resp) = send(&score, req).await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["applied"], 1);
    assert_eq!(
        store.lead("u-hot").await.unwrap().unwrap().1.state.events,
        1
    );
}

#[tokio::test]
async fn the_function_refuses_to_start_without_a_secret_or_with_broken_rules() {
    // each test runs in its own process under nextest, so the environment is this test's
    std::env::remove_var("LEADSCORE_WEBHOOK_SECRET");
    std::env::remove_var("LEADSCORE_ALLOW_UNSIGNED");
    std::env::remove_var("LEADSCORE_RULES");
    std::env::set_var("LEADSCORE_TABLE", "unused");
    let err = Score::from_env().await.err().expect("no secret: no start");
    assert!(
        err.to_string().contains("LEADSCORE_WEBHOOK_SECRET"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("broken.rules");
    std::fs::write(
        &rules,
        "ruleset \"x\"\nscore \"a\" +5 on page where\nstage mql when reached sqll\n",
    )
    .unwrap();
    std::env::set_var("LEADSCORE_RULES", &rules);
    std::env::set_var("LEADSCORE_ALLOW_UNSIGNED", "1");
    let err = Score::from_env()
        .await
        .err()
        .expect("broken rules: no start");
    let text = err.to_string();
    assert!(
        text.contains("broken.rules:2:"),
        "the diagnostics name file:line:col: {text}"
    );
    assert!(text.contains("error[E"), "{text}");
}

const STAGES_V1: &str = r#"ruleset "stages"
score "Webinar" +20 on "Webinar Registered"
stage mql when engagement >= 20
stage sql when reached mql and event "Demo Booked"
notify sales when reached mql
notify sales when reached sql
"#;

/// The issue's reproduction: a lead reaches `mql` and `sql`, and a stage `pql` is inserted
/// between them. The state is kept by name, so `sql` stays reached at its time, `pql` starts
/// unreached, and the next event does not announce `sql` a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_inserted_between_two_keeps_the_others_by_name() {
    let local = DynamoLocal::start(Storage::InMemory).unwrap();
    let v1 = program_text(STAGES_V1);
    let store1 = store(&local, Arc::clone(&v1)).await;
    let score1 = Score::new(signed_config(), store1.clone());
    let call = track_u1;
    for body in [
        call("Webinar Registered", "2026-03-02T10:00:00Z", "m1"),
        call("Demo Booked", "2026-03-03T10:00:00Z", "m2"),
    ] {
        let (status, resp) = send(&score1, signed_post(&body)).await;
        assert_eq!(status, 200, "{resp}");
    }
    let told: Vec<Value> = outbox(&store1).await;
    assert_eq!(told.len(), 2, "{told:?}");
    for message in &told {
        assert_eq!(
            message["rules"],
            json!({"ruleset": "stages", "version": v1.version}),
            "{message}"
        );
    }

    // the rules are edited and the function restarted on the same table
    let v2 = program_text(&format!(
        "{}notify sales when reached pql\n",
        STAGES_V1.replace(
            "stage sql when",
            "stage pql when count(\"Feature Used\") within 14d >= 2\nstage sql when",
        )
    ));
    assert_ne!(v1.version, v2.version);
    let store2 = DynamoStore::new(
        store1.client().clone(),
        store1.table(),
        Arc::clone(&v2),
        400,
    );
    let score2 = Score::new(signed_config(), store2.clone());
    let auth = json!({"authorization": "Bearer token-1"});
    let (status, lead) = send(
        &score2,
        function_url("GET", "/leads/u1", auth.clone(), None),
    )
    .await;
    assert_eq!(status, 200, "{lead}");
    assert_eq!(
        lead["reached"],
        json!({"mql": "2026-03-02T10:00:00Z", "sql": "2026-03-03T10:00:00Z"}),
        "{lead}"
    );
    assert_eq!(lead["stage"], "sql");
    assert_eq!(lead["rules"]["version"], json!(v2.version));

    // two uses of the product reach pql, announced once; sql is never announced again
    for body in [
        call("Feature Used", "2026-03-04T10:00:00Z", "m3"),
        call("Feature Used", "2026-03-04T11:00:00Z", "m4"),
        call("Demo Booked", "2026-03-05T10:00:00Z", "m5"),
    ] {
        let (status, resp) = send(&score2, signed_post(&body)).await;
        assert_eq!(status, 200, "{resp}");
    }
    let told = outbox(&store2).await;
    let about: Vec<(&str, &str)> = told
        .iter()
        .map(|m| (m["stage"].as_str().unwrap(), m["at"].as_str().unwrap()))
        .collect();
    assert_eq!(
        about,
        vec![
            ("mql", "2026-03-02T10:00:00Z"),
            ("sql", "2026-03-03T10:00:00Z"),
            ("pql", "2026-03-04T11:00:00Z"),
        ],
        "{told:?}"
    );
    assert_eq!(told[2]["rules"]["version"], json!(v2.version));
    let (_, lead) = send(&score2, function_url("GET", "/leads/u1", auth, None)).await;
    assert_eq!(lead["reached"]["pql"], "2026-03-04T11:00:00Z", "{lead}");
    assert_eq!(lead["reached"]["sql"], "2026-03-03T10:00:00Z", "{lead}");
    assert_eq!(lead["stage"], "sql");
}

const POINTS_V1: &str = r#"ruleset "points"
score "Webinar" +10 on "Webinar Registered"
stage mql when engagement >= 20
notify sales when reached mql
"#;

/// A lead erased and seen again with the same calls gets new notification ids: receivers
/// that dedupe on `webhook-id` must not drop the second life's notifications.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notification_ids_are_new_after_an_erasure() {
    let local = DynamoLocal::start(Storage::InMemory).unwrap();
    let program = program_text(POINTS_V1);
    let store = store(&local, Arc::clone(&program)).await;
    let score = Score::new(signed_config(), store.clone());
    let calls = [
        track_u1("Webinar Registered", "2026-03-01T10:00:00Z", "e1"),
        track_u1("Webinar Registered", "2026-03-02T10:00:00Z", "e2"),
    ];
    let ids = |messages: Vec<Value>| -> Vec<String> {
        messages
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect()
    };
    for call in &calls {
        assert_eq!(send(&score, signed_post(call)).await.0, 200);
    }
    let first = ids(outbox(&store).await);
    assert_eq!(first.len(), 1, "mql announced once");
    let auth = json!({"authorization": "Bearer token-1"});
    let (status, _) = send(&score, function_url("DELETE", "/leads/u1", auth, None)).await;
    assert_eq!(status, 200);
    assert!(outbox(&store).await.is_empty());
    for call in &calls {
        let (status, body) = send(&score, signed_post(call)).await;
        assert_eq!(status, 200);
        assert_eq!(
            body["applied"], 1,
            "applied again after the erasure: {body}"
        );
    }
    let second = ids(outbox(&store).await);
    assert_eq!(second.len(), 1);
    assert_ne!(first, second, "the second life reused the first one's id");
}

/// SPEC §7 "when": a lead evaluated under other rules is read rescored without a write, and
/// rescored for real before its next call, whose result lists the rescore's transitions
/// (`cause: rules_changed`) before its own; the outbox has each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lead_on_old_rules_is_read_rescored_and_rescored_before_its_next_call() {
    let local = DynamoLocal::start(Storage::InMemory).unwrap();
    let v1 = program_text(POINTS_V1);
    let store1 = store(&local, Arc::clone(&v1)).await;
    let score1 = Score::new(signed_config(), store1.clone());
    let call = track_u1;
    let (status, _) = send(
        &score1,
        signed_post(&call("Webinar Registered", "2026-03-02T10:00:00Z", "m1")),
    )
    .await;
    assert_eq!(status, 200);
    let v2 = program_text(&POINTS_V1.replace("+10 on", "+20 on"));
    let store2 = DynamoStore::new(
        store1.client().clone(),
        store1.table(),
        Arc::clone(&v2),
        400,
    );
    let score2 = Score::new(signed_config(), store2.clone());
    let before = scan(&store2).await;

    // a read answers the rescored view and writes nothing
    let auth = json!({"authorization": "Bearer token-1"});
    let (status, lead) = send(
        &score2,
        function_url("GET", "/leads/u1", auth.clone(), None),
    )
    .await;
    assert_eq!(status, 200, "{lead}");
    assert_eq!(lead["engagement"], json!(20), "{lead}");
    assert_eq!(
        lead["reached"],
        json!({"mql": "2026-03-02T10:00:00Z"}),
        "{lead}"
    );
    assert_eq!(lead["rules"]["version"], json!(v2.version));
    assert_eq!(scan(&store2).await, before, "a read wrote to the table");

    // the next call: the rescore first, then the call
    let (status, resp) = send(
        &score2,
        signed_post(&call("Page Viewed", "2026-03-04T10:00:00Z", "m2")),
    )
    .await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(
        resp["results"][0]["transitions"],
        json!([{"kind": "stage_reached", "stage": "mql", "at": "2026-03-02T10:00:00Z",
                "cause": "rules_changed"}]),
        "{resp}"
    );
    let told = outbox(&store2).await;
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0]["cause"], "rules_changed");
    assert_eq!(told[0]["at"], "2026-03-02T10:00:00Z");
    assert_eq!(told[0]["rules"]["version"], json!(v2.version));
    // the lead is now current: another call rescores nothing and tells no one
    let requests = store2.requests();
    let (_, resp) = send(
        &score2,
        signed_post(&call("Page Viewed", "2026-03-05T10:00:00Z", "m3")),
    )
    .await;
    assert_eq!(resp["results"][0]["transitions"], json!([]), "{resp}");
    assert_eq!(
        store2.requests() - requests,
        2,
        "an ordinary event costs two requests"
    );
    assert_eq!(outbox(&store2).await.len(), 1);
    // and `rescore` finds nothing left to do
    let report = store2.rescore_all(2, Arc::new(|_| {})).await.unwrap();
    assert_eq!((report.leads, report.changed), (1, 0));
    assert!(report.notifications.is_empty());
}

const RESCORE_V1: &str = r#"ruleset "busy"
score "Ping" +1 on "Ping"
stage s5 when engagement >= 5
notify team when reached s5
"#;

fn ping_lead(lead: usize, writer: usize, n: usize) -> String {
    json!({
        "type": "track",
        "event": "Ping",
        "userId": format!("u{lead}"),
        "messageId": format!("w{writer}-{n}"),
        "timestamp": format!("2026-03-01T{:02}:{:02}:{:02}Z", 10 + writer, n / 60, n % 60),
    })
    .to_string()
}

/// SPEC §7: `rescore` is safe beside live traffic. Ten leads reach `s5` under the first
/// rules; then `rescore` runs while eight writers send 1,000 events under the second (twice
/// the points, a stage `s100`): every event counts once, at the new points, and no
/// transition is announced twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rescore_beside_eight_writers_counts_every_event_once_and_tells_once() {
    let local = DynamoLocal::start(Storage::InMemory).unwrap();
    let v1 = program_text(RESCORE_V1);
    let base = store(&local, Arc::clone(&v1)).await;
    let score = Score::new(signed_config(), base.clone());
    for lead in 0..10 {
        for n in 0..20 {
            let (status, resp) =
                send(&score, signed_post(&ping_lead(lead, 9, lead * 20 + n))).await;
            assert_eq!(status, 200, "{resp}");
        }
    }
    let v2 = program_text(&format!(
        "{}stage s100 when engagement >= 100\nnotify team when reached s100\n",
        RESCORE_V1.replace("+1 on", "+2 on")
    ));
    let rescorer = {
        let store = DynamoStore::new(local.client().await, base.table(), Arc::clone(&v2), 400);
        tokio::spawn(async move { store.rescore_all(4, Arc::new(|_| {})).await })
    };
    let mut tasks = Vec::new();
    for writer in 0..8 {
        let store = DynamoStore::new(local.client().await, base.table(), Arc::clone(&v2), 400);
        tasks.push(tokio::spawn(async move {
            let score = Score::new(signed_config(), store);
            for n in 0..125 {
                let body = ping_lead((writer * 125 + n) % 10, writer, n);
                let mut tries = 0;
                loop {
                    let (status, resp) = send(&score, signed_post(&body)).await;
                    if status == 200 {
                        assert_eq!(resp["applied"], 1, "{resp}");
                        break;
                    }
                    assert_eq!(status, 503, "{resp}");
                    tries += 1;
                    assert!(tries < 50, "writer {writer} never got through");
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let report = rescorer.await.unwrap().unwrap();
    assert_eq!(report.leads, 10);
    let after = DynamoStore::new(local.client().await, base.table(), Arc::clone(&v2), 400);
    for lead in 0..10 {
        let state = after
            .lead(&format!("u{lead}"))
            .await
            .unwrap()
            .unwrap()
            .1
            .state;
        assert_eq!(state.events, 120, "u{lead}: every event counted once");
        assert!(
            (state.engagement - 240.0).abs() < 1e-9,
            "u{lead}: {}",
            state.engagement
        );
    }
    let told = outbox(&after).await;
    let mut about: Vec<(String, String)> = told
        .iter()
        .map(|m| (m["lead"]["id"].to_string(), m["stage"].to_string()))
        .collect();
    about.sort();
    let before = about.len();
    about.dedup();
    assert_eq!(
        before,
        about.len(),
        "a transition announced twice: {told:?}"
    );
    assert_eq!(about.len(), 20, "s5 and s100 for each of ten leads");
    // and a second rescore has nothing left to do; its progress feed (what the CLI's bar
    // shows) tells each lead once and scans every item of the table, as many as the
    // table's item count
    let progress = Arc::new(std::sync::Mutex::new((0u64, 0u64)));
    let feed = Arc::clone(&progress);
    let again = after
        .rescore_all(
            2,
            Arc::new(move |p| {
                let mut seen = feed.lock().unwrap();
                match p {
                    RescoreProgress::Lead => seen.0 += 1,
                    RescoreProgress::Scanned(n) => seen.1 += n,
                }
            }),
        )
        .await
        .unwrap();
    assert_eq!((again.changed, again.notifications.len()), (0, 0));
    let items = scan(&after).await.len() as u64;
    assert!(items > 1_000, "{items} items");
    assert_eq!(*progress.lock().unwrap(), (10, items));
    assert_eq!(after.item_count().await.unwrap(), items);
}

/// SPEC §7: a lead whose oldest calls have expired from its history is rescored from what
/// is kept and counted `partial`; its event count stays the record's, and its `once`
/// awards carry over by rule name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lead_with_expired_history_is_rescored_from_what_is_kept() {
    let local = DynamoLocal::start(Storage::InMemory).unwrap();
    let rules = "ruleset \"partial\"\nscore \"Signup\" +50 on \"Signed Up\" once\nscore \"Ping\" +1 on \"Ping\"\n";
    let v1 = program_text(rules);
    let store1 = store(&local, Arc::clone(&v1)).await;
    let score1 = Score::new(signed_config(), store1.clone());
    for body in [
        track_u1("Signed Up", "2026-03-01T10:00:00Z", "m1"),
        track_u1("Ping", "2026-03-02T10:00:00Z", "m2"),
        track_u1("Ping", "2026-03-03T10:00:00Z", "m3"),
    ] {
        assert_eq!(send(&score1, signed_post(&body)).await.0, 200);
    }
    // the oldest kept call expires (what the table's TTL does after 400 days)
    let oldest = scan(&store1)
        .await
        .into_iter()
        .filter(|i| {
            i["sk"]
                .as_s()
                .is_ok_and(|sk| sk.starts_with("CALL#2026-03-01"))
        })
        .collect::<Vec<_>>();
    assert_eq!(oldest.len(), 1);
    store1
        .client()
        .delete_item()
        .table_name(store1.table())
        .key("pk", oldest[0]["pk"].clone())
        .key("sk", oldest[0]["sk"].clone())
        .send()
        .await
        .unwrap();

    let v2 = program_text(&rules.replace("+1 on \"Ping\"", "+2 on \"Ping\""));
    let store2 = DynamoStore::new(
        store1.client().clone(),
        store1.table(),
        Arc::clone(&v2),
        400,
    );
    let report = store2.rescore_all(1, Arc::new(|_| {})).await.unwrap();
    assert_eq!((report.leads, report.changed, report.partial), (1, 1, 1));
    let state = store2.lead("u1").await.unwrap().unwrap().1.state;
    assert_eq!(state.events, 3, "the event count is the record's");
    assert!(
        (state.engagement - 4.0).abs() < 1e-9,
        "{}",
        state.engagement
    );
    // the signup's once award carried over: a second signup gives nothing
    let score2 = Score::new(signed_config(), store2.clone());
    let (_, resp) = send(
        &score2,
        signed_post(&track_u1("Signed Up", "2026-03-04T10:00:00Z", "m4")),
    )
    .await;
    assert_eq!(resp["results"][0]["score"], json!(4), "{resp}");
}

/// Rules and their files from text (what `publish` stores).
fn rules_and_files(text: &str) -> (Program, Vec<leadscore_rules::SourceFile>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.rules");
    std::fs::write(&path, text).unwrap();
    let (program, _, files) = leadscore_core::rules::load(&[path]).unwrap();
    (program, files)
}

/// SPEC §7 `publish`: published rules carry a generation; an instance runs them without a
/// redeploy, and one that meets a lead written under a newer generation loads those rules
/// before touching the lead, never rewriting it under older ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_rules_and_two_instances_on_different_generations() {
    let local = DynamoLocal::start(Storage::InMemory).unwrap();
    let built_in = program_text(POINTS_V1);
    let base = store(&local, Arc::clone(&built_in)).await;
    let (v1, files1) = rules_and_files(&POINTS_V1.replace("+10 on", "+11 on"));
    let (v2, files2) = rules_and_files(&POINTS_V1.replace("+10 on", "+20 on"));
    use leadscore_core::store::published::PublishOutcome;
    assert_eq!(
        base.publish(&v1, &files1).await.unwrap(),
        PublishOutcome::Published(1)
    );
    assert_eq!(
        base.publish(&v1, &files1).await.unwrap(),
        PublishOutcome::Unchanged(1)
    );

    // instance A starts: it runs generation 1
    let mut a = DynamoStore::new(
        local.client().await,
        base.table(),
        Arc::clone(&built_in),
        400,
    );
    assert!(a.use_published().await.unwrap());
    assert_eq!(
        (a.generation(), a.program().version.clone()),
        (1, v1.version.clone())
    );
    let score_a = Score::new(signed_config(), a);
    let (_, resp) = send(
        &score_a,
        signed_post(&track_u1(
            "Webinar Registered",
            "2026-03-02T10:00:00Z",
            "m1",
        )),
    )
    .await;
    assert_eq!(resp["results"][0]["score"], json!(11), "{resp}");

    // generation 2 is published; instance B starts on it and writes u1
    assert_eq!(
        base.publish(&v2, &files2).await.unwrap(),
        PublishOutcome::Published(2)
    );
    let mut b = DynamoStore::new(
        local.client().await,
        base.table(),
        Arc::clone(&built_in),
        400,
    );
    b.use_published().await.unwrap();
    assert_eq!(b.generation(), 2);
    let score_b = Score::new(signed_config(), b);
    let (_, resp) = send(
        &score_b,
        signed_post(&track_u1(
            "Webinar Registered",
            "2026-03-03T10:00:00Z",
            "m2",
        )),
    )
    .await;
    assert_eq!(
        resp["results"][0]["score"],
        json!(40),
        "rescored under generation 2: {resp}"
    );

    // A, still on generation 1, meets u1: it loads generation 2 first
    let (status, resp) = send(
        &score_a,
        signed_post(&track_u1(
            "Webinar Registered",
            "2026-03-04T10:00:00Z",
            "m3",
        )),
    )
    .await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["results"][0]["score"], json!(60), "{resp}");
    let auth = json!({"authorization": "Bearer token-1"});
    let (_, lead) = send(&score_a, function_url("GET", "/leads/u1", auth, None)).await;
    assert_eq!(lead["rules"]["version"], json!(v2.version), "{lead}");
    assert_eq!(lead["events"], json!(3));

    // an instance on older rules never rewrites the lead: its tick refuses, nothing changes
    let old = DynamoStore::new(
        local.client().await,
        base.table(),
        Arc::clone(&built_in),
        400,
    );
    let before = scan(&old).await;
    assert!(old
        .tick_lead("u1", leadscore_core::store::dynamo::now_micros())
        .await
        .is_err());
    assert_eq!(scan(&old).await, before);
    // mql was reached under generation 2 (at the second webinar), announced once
    let told = outbox(&old).await;
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0]["rules"]["version"], json!(v2.version));
}

/// `Content-Encoding: gzip` through `score` (SPEC §8), with the body base64-encoded as Lambda
/// delivers a binary body: the b2b-saas events gzipped end as replay ends them, signed over
/// the body as sent; a zip bomb answers `413` and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_bodies_are_inflated_and_a_zip_bomb_is_refused() {
    use flate2::write::GzEncoder;
    use std::io::Write;
    let gzip = |data: &[u8]| {
        let mut e = GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    };
    let local = DynamoLocal::start(Storage::InMemory).unwrap();
    let root = workspace_root();
    let program = program(&root.join("rules/b2b-saas"));
    let lines = lines(&root.join("rules/b2b-saas/events.jsonl"));
    let store = store(&local, Arc::clone(&program)).await;
    let score = Score::new(signed_config(), store.clone());
    let post = |body: &str, sent: &[u8]| {
        function_url_bytes(
            "POST",
            "/events",
            json!({"content-type": "application/json", "content-encoding": "gzip",
                   "x-signature": segment_signature(body)}),
            sent,
        )
    };
    for line in &lines {
        let (status, body) = send(&score, post(line, &gzip(line.as_bytes()))).await;
        assert_eq!(status, 200, "{line}: {body}");
    }
    let expected = replay(&program, &lines);
    assert_eq!(table_leads(&store, expected.keys()).await, expected);
    let before = scan(&store).await.len();
    let mut bomb = lines[0].clone().into_bytes();
    bomb.resize(8 << 20, b' ');
    let text = String::from_utf8(bomb.clone()).unwrap();
    let (status, body) = send(&score, post(&text, &gzip(&bomb))).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (413, json!("payload_too_large")),
        "{body}"
    );
    assert_eq!(scan(&store).await.len(), before, "nothing written");
}

/// The issue's reproduction: `decay` (or `score`) started on another rule set must not refit
/// the leads of the right one. A lead stamped with another rule set's name is refused by
/// every write path (a call, a tick, a rescore) and stays as it was; a rename said out loud
/// (`LEADSCORE_RENAMED_FROM`) lets them rewrite it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lead_of_another_rule_set_is_never_rewritten() {
    let local = DynamoLocal::start(Storage::InMemory).unwrap();
    let root = workspace_root();
    let right = program(&root.join("rules/b2b-saas"));
    let store = store(&local, Arc::clone(&right)).await;
    let score = Score::new(signed_config(), store.clone());
    for line in lines(&root.join("rules/b2b-saas/events.jsonl")) {
        send(&score, signed_post(&line)).await;
    }
    let before = scan(&store).await;
    let other = program_text(
        "ruleset \"other\"\nscore \"Ping\" +10 on \"Ping\"\nstage mql when engagement >= 10\n",
    );
    let wrong = DynamoStore::new(local.client().await, store.table(), Arc::clone(&other), 400);
    // a call: 500 storage_failed, naming both rule sets
    let wrong_score = Score::new(signed_config(), wrong.clone());
    let (status, body) = send(
        &wrong_score,
        signed_post(&json!({"type": "track", "event": "Ping", "userId": "usr_ann", "messageId": "foreign-1", "timestamp": "2026-03-01T00:00:00Z"}).to_string()),
    )
    .await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"]["code"], "storage_failed", "{body}");
    // a tick: every due lead fails, none is written
    let tick = json!({"time": "2026-04-01T00:00:00Z"});
    let report = leadscore_decay::handle(&wrong, &tick).await.unwrap();
    assert!(report["visited"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["committed"], 0, "{report}");
    assert_eq!(report["failed"], report["visited"], "{report}");
    // a rescore: refused, naming the lead and both rule sets
    let err = wrong
        .refresh_lead("usr_ann", None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`usr_ann`") && err.contains("`acme-b2b`") && err.contains("`other`"),
        "{err}"
    );
    assert_eq!(
        scan(&store).await,
        before,
        "a lead of another rule set was rewritten"
    );

    // the same rules under a new name: refused until the rename is said
    let renamed_text = std::fs::read_to_string(root.join("rules/b2b-saas/acme.rules"))
        .unwrap()
        .replace("ruleset \"acme-b2b\"", "ruleset \"acme-renamed\"");
    let renamed = program_text(&renamed_text);
    assert_eq!(renamed.version, right.version, "a rename keeps the version");
    let refused = DynamoStore::new(
        local.client().await,
        store.table(),
        Arc::clone(&renamed),
        400,
    );
    let report = leadscore_decay::handle(&refused, &tick).await.unwrap();
    assert_eq!(report["committed"], 0, "{report}");
    assert_eq!(scan(&store).await, before);
    let told = refused.with_renamed_from(["acme-b2b".to_string()]);
    let report = leadscore_decay::handle(&told, &tick).await.unwrap();
    assert_eq!(report["failed"], 0, "{report}");
    assert!(report["committed"].as_u64().unwrap() > 0, "{report}");
}

/// decay visits a lead only when a stage can start to hold or its figures are due a refresh
/// (not at every tick while engagement is above zero), works on many leads at once, and a
/// tick that runs out of time leaves the rest due and the next tick starts where it stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decay_visits_leads_only_when_they_can_change_and_resumes_where_it_stopped() {
    const LEADS: usize = 200;
    let local = DynamoLocal::start(Storage::InMemory).unwrap();
    let program = program_text(
        "ruleset \"cooling\"\nscore \"Ping\" +40 on \"Ping\"\ndecay engagement half_life 30d\nstage cold when engagement < 10\nnotify sales when reached cold\n",
    );
    let year = 365 * 86_400 * leadscore_rules::time::SECOND;
    // a yearly refresh: only the stage makes a lead due
    let store = store(&local, Arc::clone(&program)).await.with_refresh(year);
    let score = Score::new(signed_config(), store.clone());
    let batch: Vec<Value> = (0..LEADS)
        .map(|i| json!({"type": "track", "event": "Ping", "userId": format!("lead-{i}"), "messageId": format!("p{i}"), "timestamp": "2026-01-01T00:00:00Z"}))
        .collect();
    let (status, body) = send(&score, signed_post(&json!({"batch": batch}).to_string())).await;
    assert_eq!(status, 200, "{body}");
    let tick = |at: &str| json!({"time": at});

    // 40 → 10 takes 60 days: no tick before then visits anyone
    for at in [
        "2026-01-02T00:00:00Z",
        "2026-01-15T00:00:00Z",
        "2026-02-28T00:00:00Z",
    ] {
        let idle = leadscore_decay::handle(&store, &tick(at)).await.unwrap();
        assert_eq!(idle["visited"], 0, "{at}: {idle}");
    }
    let at = "2026-03-02T00:15:00Z";
    // out of time before the first lead: nothing started, the first shard left
    let now = std::time::Instant::now();
    let cut = leadscore_decay::handle_until(&store, &tick(at), Some(now))
        .await
        .unwrap();
    assert_eq!(cut["visited"], 0, "{cut}");
    assert!(cut["left"].as_u64().unwrap() > 0, "{cut}");
    assert_eq!(cut["stopped_in"], 0, "{cut}");
    // a short deadline, then a whole tick: every lead visited once between them, each
    // reaching `cold`, and the whole tick starts in the shard the short one stopped in
    let requests = store.requests();
    let short = leadscore_decay::handle_until(
        &store,
        &tick(at),
        Some(std::time::Instant::now() + std::time::Duration::from_millis(60)),
    )
    .await
    .unwrap();
    let rest = leadscore_decay::handle(&store, &tick(at)).await.unwrap();
    assert_eq!(
        rest["first_shard"],
        short["stopped_in"].as_u64().unwrap_or(0),
        "{short} {rest}"
    );
    assert_eq!(rest["left"], 0, "{rest}");
    let sum = |k: &str| short[k].as_u64().unwrap() + rest[k].as_u64().unwrap();
    assert_eq!(sum("visited"), LEADS as u64, "{short} {rest}");
    assert_eq!(sum("committed"), LEADS as u64, "{short} {rest}");
    assert_eq!(sum("notifications"), LEADS as u64, "{short} {rest}");
    // due leads are read a hundred at a time: about one request a lead (its transaction),
    // where a read each made it two
    let spent = store.requests() - requests;
    assert!(
        spent < LEADS as u64 * 3 / 2,
        "{spent} DynamoDB requests for {LEADS} due leads"
    );
    let lead = store.lead("lead-7").await.unwrap().unwrap().1;
    assert_eq!(
        lead.state.reached.first().copied().flatten(),
        leadscore_rules::time::parse_rfc3339(at),
    );
    // reached, and the yearly refresh is far: the next tick visits no one
    let after = leadscore_decay::handle(&store, &tick("2026-03-02T00:30:00Z"))
        .await
        .unwrap();
    assert_eq!(after["visited"], 0, "{after}");
}
