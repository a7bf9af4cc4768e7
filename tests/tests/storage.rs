//! Storage errors through the score function on DynamoDB Local (SPEC §8): a transient error
//! answers `429`/`503` with `Retry-After`, a permanent one `500` without it and only for the
//! leads it touches; an unreadable history item is quarantined and its lead marked
//! `partial`; erasure is atomic with respect to concurrent writes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use aws_sdk_dynamodb::types::AttributeValue;
use common::*;
use leadscore_core::api::LeadStore;
use leadscore_core::store::dynamo::DynamoStore;
use leadscore_score::Score;
use leadscore_tests::{local_sdk_config, DynamoLocal, Storage};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;

const COUNTER_RULES: &str = r#"ruleset "counter"
score "Ping" +1 on "Ping"
"#;

fn auth() -> Value {
    json!({"authorization": "Bearer token-1"})
}

fn get(id: &str) -> lambda_http::Request {
    function_url("GET", &format!("/leads/{id}"), auth(), None)
}

fn delete(id: &str) -> lambda_http::Request {
    function_url("DELETE", &format!("/leads/{id}"), auth(), None)
}

fn ping(lead: &str, message_id: &str, second: usize) -> String {
    json!({"type": "track", "event": "Ping", "userId": lead, "messageId": message_id,
           "timestamp": format!("2026-03-01T10:{:02}:{:02}Z", second / 60 % 60, second % 60)})
    .to_string()
}

/// A call, a read and an erasure of lead `lead`: one request on each route.
fn every_route(lead: &str, message_id: &str) -> [(&'static str, lambda_http::Request); 3] {
    [
        ("POST /events", signed_post(&ping(lead, message_id, 2))),
        ("GET /leads", get(lead)),
        ("DELETE /leads", delete(lead)),
    ]
}

/// Asserts a permanent storage error's answer: `500 storage_failed`, no `Retry-After`, and a
/// message that names an error id rather than the cause.
fn assert_failed(what: &str, status: u16, headers: &lambda_http::http::HeaderMap, body: &Value) {
    assert_eq!(status, 500, "{what}: {body}");
    assert_eq!(body["error"]["code"], "storage_failed", "{what}: {body}");
    assert!(
        headers.get("retry-after").is_none(),
        "{what}: a permanent error must not invite a retry"
    );
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("error id `"), "{what}: {message}");
}

/// Every route of the function on a store, for the errors that concern the whole table.
async fn every_route_fails_permanently(what: &str, store: DynamoStore) {
    let score = Score::new(signed_config(), store);
    for (route, req) in every_route("u1", "m1") {
        let (status, headers, body) = send_full(&score, req).await;
        assert_failed(&format!("{what}, {route}"), status, &headers, &body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_table_or_an_invalid_table_name_is_a_500_without_retry_after() {
    let local = DynamoLocal::start(Storage::InMemory).unwrap();
    let program = program_text(COUNTER_RULES);
    let client = local.client().await;
    // ResourceNotFoundException
    every_route_fails_permanently(
        "a missing table",
        DynamoStore::new(client.clone(), "no-such-table", Arc::clone(&program), 400),
    )
    .await;
    // ValidationException: table names are 3 to 255 of [a-zA-Z0-9_.-]
    every_route_fails_permanently(
        "an invalid table name",
        DynamoStore::new(client, "bad name!", program, 400),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_state_item_fails_its_lead_only() {
    let local = DynamoLocal::start(Storage::InMemory).unwrap();
    let program = program_text(COUNTER_RULES);
    let store = store(&local, Arc::clone(&program)).await;
    let score = Score::new(signed_config(), store.clone());
    for (lead, id) in [("u1", "m1"), ("u2", "m2")] {
        assert_eq!(send(&score, signed_post(&ping(lead, id, 1))).await.0, 200);
    }
    // u2's state item as no version of leadscore writes it: its version is not a number
    store
        .client()
        .update_item()
        .table_name(store.table())
        .key("pk", AttributeValue::S("LEAD#u2".into()))
        .key("sk", AttributeValue::S("STATE".into()))
        .update_expression("SET version = :v")
        .expression_attribute_values(":v", AttributeValue::S("seven".into()))
        .send()
        .await
        .unwrap();
    let before = scan(&store).await;
    for (route, req) in every_route("u2", "m3") {
        let (status, headers, body) = send_full(&score, req).await;
        assert_failed(&format!("a corrupt lead, {route}"), status, &headers, &body);
    }
    assert_eq!(scan(&store).await, before, "a failed call changes nothing");
    // the other lead goes on
    let (status, body) = send(&score, signed_post(&ping("u1", "m4", 2))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["score"], json!(2), "{body}");
    assert_eq!(send(&score, get("u1")).await.0, 200);
}

/// A DynamoDB endpoint that throttles every request, as DynamoDB does past a table's
/// capacity (DynamoDB Local never throttles): a real HTTP server on `127.0.0.1` answering
/// `400` with `ProvisionedThroughputExceededException`, the way DynamoDB's JSON protocol
/// does. Returns its URL and how many requests it answered.
async fn throttling_endpoint() -> (String, Arc<std::sync::atomic::AtomicU64>) {
    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |request: hyper::Request<hyper::body::Incoming>| {
                        let counter = Arc::clone(&counter);
                        async move {
                            let _ = request.into_body().collect().await;
                            counter.fetch_add(1, Ordering::Relaxed);
                            let body = json!({
                                "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                                "message": "The level of configured provisioned throughput for the table was exceeded. Consider increasing your provisioning level with the UpdateTable API."
                            });
                            hyper::Response::builder()
                                .status(400)
                                .header("content-type", "application/x-amz-json-1.0")
                                .header(
                                    "x-amzn-errortype",
                                    "ProvisionedThroughputExceededException",
                                )
                                .header("x-amzn-requestid", "THROTTLED")
                                .body(Full::new(Bytes::from(body.to_string())))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_table_answers_429_with_retry_after() {
    let program = program_text(COUNTER_RULES);
    let (url, seen) = throttling_endpoint().await;
    let client = aws_sdk_dynamodb::Client::new(&local_sdk_config(&url));
    let store = DynamoStore::new(client, "leads", program, 400);
    let score = Score::new(signed_config(), store);
    for (route, req) in every_route("u1", "m1") {
        let (status, headers, body) = send_full(&score, req).await;
        assert_eq!(status, 429, "{route}: {body}");
        assert_eq!(
            body["error"]["code"], "storage_throttled",
            "{route}: {body}"
        );
        assert_eq!(
            headers.get("retry-after").and_then(|v| v.to_str().ok()),
            Some("1"),
            "{route}"
        );
    }
    assert!(
        seen.load(Ordering::Relaxed) > 0,
        "the requests reached the endpoint"
    );
}

/// The items of one lead's partition and its idempotency records, from a scan.
struct Partition {
    state: Option<HashMap<String, AttributeValue>>,
    calls: BTreeSet<String>,
    msgs: BTreeSet<String>,
    quarantined: Vec<HashMap<String, AttributeValue>>,
}

async fn partition(store: &DynamoStore, lead: &str) -> Partition {
    let pk = format!("LEAD#{lead}");
    let mut out = Partition {
        state: None,
        calls: BTreeSet::new(),
        msgs: BTreeSet::new(),
        quarantined: Vec::new(),
    };
    for item in scan(store).await {
        let text = |name: &str| match item.get(name) {
            Some(AttributeValue::S(v)) => v.clone(),
            _ => String::new(),
        };
        let (item_pk, sk) = (text("pk"), text("sk"));
        if item_pk == pk && sk == "STATE" {
            out.state = Some(item);
        } else if item_pk == pk && sk.starts_with("CALL#") {
            out.calls.insert(text("message_id"));
        } else if item_pk == pk && sk.starts_with("QUARANTINE#") {
            out.quarantined.push(item);
        } else if sk == "MSG" && text("lead") == lead {
            out.msgs
                .insert(item_pk.trim_start_matches("MSG#").to_owned());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_history_item_is_quarantined_and_the_lead_marked_partial() {
    let local = DynamoLocal::start(Storage::InMemory).unwrap();
    let v1 = program_text(COUNTER_RULES);
    let store1 = store(&local, Arc::clone(&v1)).await;
    let score1 = Score::new(signed_config(), store1.clone());
    for n in 1..=3 {
        let body = ping("u1", &format!("m{n}"), n);
        assert_eq!(send(&score1, signed_post(&body)).await.0, 200);
    }
    // one kept call's record is damaged (a bad restore, a hand edit)
    let sk = scan(&store1)
        .await
        .into_iter()
        .find_map(|i| match i.get("sk") {
            Some(AttributeValue::S(sk)) if sk.starts_with("CALL#") && sk.ends_with("#m2") => {
                Some(sk.clone())
            }
            _ => None,
        })
        .unwrap();
    store1
        .client()
        .update_item()
        .table_name(store1.table())
        .key("pk", AttributeValue::S("LEAD#u1".into()))
        .key("sk", AttributeValue::S(sk.clone()))
        .update_expression("SET #r = :r")
        .expression_attribute_names("#r", "record")
        .expression_attribute_values(":r", AttributeValue::S("{\"type\": \"tra".into()))
        .send()
        .await
        .unwrap();
    // a rule change makes the lead's next call re-evaluate its kept history
    let v2 = program_text(&COUNTER_RULES.replace("+1", "+2"));
    let store2 = DynamoStore::new(store1.client().clone(), store1.table(), v2, 400);
    let score2 = Score::new(signed_config(), store2.clone());
    let (status, body) = send(&score2, signed_post(&ping("u1", "m4", 4))).await;
    assert_eq!(status, 200, "one bad item does not fail its lead: {body}");
    // m1 and m3 at the new points, m4 too; the count stays the record's
    assert_eq!(body["results"][0]["score"], json!(6), "{body}");
    assert_eq!(store2.counters().quarantined.load(Ordering::Relaxed), 1);

    let kept = partition(&store2, "u1").await;
    assert!(
        !kept.calls.contains("m2"),
        "the unreadable item left the history"
    );
    assert_eq!(kept.quarantined.len(), 1, "it is kept aside");
    let aside = &kept.quarantined[0];
    assert_eq!(
        aside.get("sk"),
        Some(&AttributeValue::S(format!("QUARANTINE#{sk}")))
    );
    assert!(
        matches!(aside.get("quarantine_reason"), Some(AttributeValue::S(r)) if r.contains("not JSON")),
        "{aside:?}"
    );
    let (status, lead) = send(&score2, get("u1")).await;
    assert_eq!(status, 200);
    assert_eq!(lead["partial"], json!(true), "{lead}");
    assert_eq!(lead["events"], json!(4), "{lead}");
    // the next read does not meet it again, and the lead stays partial
    let (status, _) = send(&score2, signed_post(&ping("u1", "m5", 5))).await;
    assert_eq!(status, 200);
    assert_eq!(store2.counters().quarantined.load(Ordering::Relaxed), 1);
    assert_eq!(send(&score2, get("u1")).await.1["partial"], json!(true));
    // a lead with a whole history is not partial
    let (_, other) = {
        assert_eq!(
            send(&score2, signed_post(&ping("u2", "n1", 1))).await.0,
            200
        );
        send(&score2, get("u2")).await
    };
    assert!(other.get("partial").is_none(), "{other}");
}

/// Sends a ping as a sender does: again after a `503` (the lead is being erased, or the
/// writes conflicted), until a `200`.
async fn deliver(score: &Score, body: &str) {
    for _ in 0..200 {
        let (status, resp) = send(score, signed_post(body)).await;
        if status == 200 {
            return;
        }
        assert_eq!(status, 503, "{resp}");
    }
    panic!("never got through: {body}");
}

/// SPEC §5: `DELETE /leads/{id}` erases a lead's state, history and idempotency records.
/// Eight writers (eight instances) send calls for one lead while it is erased again and
/// again: whenever the dust settles, the table holds either no trace of the lead or a state
/// that counts exactly the calls kept for it, each with its idempotency record. Without the
/// tombstone, a call committed during an erasure outlives it (a kept call or record with no
/// state, or a state that does not count it).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn erasure_is_atomic_with_respect_to_concurrent_writers() {
    let local = DynamoLocal::start(Storage::InMemory).unwrap();
    let program = program_text(COUNTER_RULES);
    let base = store(&local, Arc::clone(&program)).await;
    for round in 0..3 {
        let mut writers = Vec::new();
        for writer in 0..8 {
            let client = local.client().await;
            let store = DynamoStore::new(client, base.table(), Arc::clone(&program), 400);
            writers.push(tokio::spawn(async move {
                let score = Score::new(signed_config(), store);
                for n in 0..20 {
                    let body = ping("u-hot", &format!("r{round}-w{writer}-{n}"), n);
                    deliver(&score, &body).await;
                }
            }));
        }
        let eraser = {
            let store = DynamoStore::new(
                local.client().await,
                base.table(),
                Arc::clone(&program),
                400,
            );
            tokio::spawn(async move {
                let score = Score::new(signed_config(), store);
                let mut erased = 0;
                for _ in 0..12 {
                    tokio::time::sleep(std::time::Duration::from_millis(15)).await;
                    let (status, body) = send(&score, delete("u-hot")).await;
                    assert!(matches!(status, 200 | 404 | 503), "{status} {body}");
                    erased += usize::from(status == 200);
                }
                erased
            })
        };
        for writer in writers {
            writer.await.unwrap();
        }
        let erased = eraser.await.unwrap();
        assert!(
            erased > 0,
            "round {round}: no erasure overlapped the writers"
        );

        let kept = partition(&base, "u-hot").await;
        match &kept.state {
            None => {
                assert!(
                    kept.calls.is_empty(),
                    "round {round}: calls outlived their lead: {:?}",
                    kept.calls
                );
                assert!(
                    kept.msgs.is_empty(),
                    "round {round}: records outlived their lead: {:?}",
                    kept.msgs
                );
            }
            Some(item) => {
                assert!(
                    item.get("erasing").is_none(),
                    "round {round}: an erasure was left halfway"
                );
                let state = base.lead("u-hot").await.unwrap().unwrap().1.state;
                assert_eq!(
                    state.events as usize,
                    kept.calls.len(),
                    "round {round}: the state counts the calls kept"
                );
                assert_eq!(
                    kept.calls, kept.msgs,
                    "round {round}: a record per kept call"
                );
            }
        }
        // a final erasure leaves nothing
        let score = Score::new(signed_config(), base.clone());
        let (status, _) = send(&score, delete("u-hot")).await;
        assert!(matches!(status, 200 | 404));
        let kept = partition(&base, "u-hot").await;
        assert!(kept.state.is_none() && kept.calls.is_empty() && kept.msgs.is_empty());
    }
}

/// A commit read before an erasure does not bring the lead back when a new first call
/// created it again meanwhile: the new lead's version is 1 again, as the one read, but its
/// first arrival is not, and the guard holds both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_read_before_an_erasure_does_not_bring_the_lead_back() {
    use leadscore_core::api::Accepted;
    use leadscore_core::ingest::call::TimePolicy;
    use leadscore_core::ingest::segment::normalize_call;
    use leadscore_core::pipeline::apply::{Records, StepError};
    let local = DynamoLocal::start(Storage::InMemory).unwrap();
    let store = store(&local, program_text(COUNTER_RULES)).await;
    let score = Score::new(signed_config(), store.clone());
    assert_eq!(send(&score, signed_post(&ping("u1", "m1", 1))).await.0, 200);
    // a writer reads the lead, then is slow
    let read = Records::load(&store, "u1").await.unwrap();
    assert_eq!(read.version, Some(1));
    let (status, _) = send(&score, delete("u1")).await;
    assert_eq!(status, 200);
    assert_eq!(send(&score, signed_post(&ping("u1", "m2", 2))).await.0, 200);
    let now = Records::load(&store, "u1").await.unwrap();
    assert_eq!(
        now.version,
        Some(1),
        "the new lead starts at version 1 again"
    );
    // the slow writer commits what it evaluated on the erased lead
    let raw: Value = serde_json::from_str(&ping("u1", "m3", 3)).unwrap();
    let accepted = Accepted {
        call: normalize_call(&raw, "", &TimePolicy::Required).unwrap(),
        record: raw,
    };
    let mut record = read.record.clone().unwrap();
    record.state.events += 1;
    let commit = read.commit(record, vec![(&accepted, 1)], Vec::new());
    match Records::commit(&store, &commit).await {
        Err(StepError::Refused(refused)) => assert!(refused.conflict, "{refused:?}"),
        other => panic!("the stale commit went through: {other:?}"),
    }
    let (status, lead) = send(&score, get("u1")).await;
    assert_eq!(status, 200, "{lead}");
    assert_eq!(lead["events"], 1, "only m2: {lead}");
}
