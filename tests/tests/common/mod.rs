//! What the end-to-end tests of the functions share: rules from text, the `score` function
//! driven with real Lambda events, a table's leads and outbox.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs
)]

use hmac::{Hmac, Mac};
use lambda_http::Request;
use leadscore_core::api::{ApiConfig, LeadStore};
use leadscore_core::ingest::call::TimePolicy;
use leadscore_core::ingest::segment::normalize_body;
use leadscore_core::output::lead_object;
use leadscore_core::store::dynamo::{create_table, DynamoStore};
use leadscore_core::store::engine::Engine;
use leadscore_rules::Program;
use leadscore_score::Score;
use leadscore_tests::{unique_name, DynamoLocal};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub mod receiver;
pub mod stream;

/// A test's result: any error fails it, with its message.
pub type TestResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

pub const SECRET: &str = "segment-shared-secret";

pub fn program(path: &Path) -> Arc<Program> {
    let (program, _, _) = leadscore_core::rules::load(&[path.to_path_buf()]).expect("rules load");
    Arc::new(program)
}

pub fn program_text(text: &str) -> Arc<Program> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.rules");
    std::fs::write(&path, text).unwrap();
    program(&path)
}

pub fn signed_config() -> ApiConfig {
    ApiConfig {
        webhook_secret: Some(SECRET.into()),
        api_token: Some("token-1".into()),
        ..ApiConfig::default()
    }
}

pub async fn store(local: &DynamoLocal, program: Arc<Program>) -> DynamoStore {
    let client = local.client().await;
    let table = unique_name("leads");
    create_table(&client, &table).await.expect("create table");
    DynamoStore::new(client, table, program, 400)
}

pub fn segment_signature(body: &str) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// A Lambda Function URL request (payload format 2.0), as Lambda delivers it.
pub fn function_url(method: &str, path: &str, headers: Value, body: Option<&str>) -> Request {
    function_url_event(method, path, headers, json!(body), false)
}

/// A Function URL request whose body is bytes, base64-encoded as Lambda delivers a body that
/// is not text (a gzip body).
pub fn function_url_bytes(method: &str, path: &str, headers: Value, body: &[u8]) -> Request {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(body);
    function_url_event(method, path, headers, json!(body), true)
}

fn function_url_event(
    method: &str,
    path: &str,
    headers: Value,
    body: Value,
    base64: bool,
) -> Request {
    let event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "abcdefghijklmnop",
            "domainName": "abcdefghijklmnop.lambda-url.us-east-1.on.aws",
            "domainPrefix": "abcdefghijklmnop",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "Segment.io/1.0"
            },
            "requestId": "c3a4b3b6-0000-4000-8000-000000000000",
            "routeKey": "$default",
            "stage": "$default",
            "time": "22/Nov/2026:17:00:00 +0000",
            "timeEpoch": 1_795_366_800_000_u64
        },
        "body": body,
        "isBase64Encoded": base64
    });
    lambda_http::request::from_str(&event.to_string()).expect("a Function URL event")
}

pub fn signed_post(body: &str) -> Request {
    function_url(
        "POST",
        "/events",
        json!({"content-type": "application/json", "x-signature": segment_signature(body)}),
        Some(body),
    )
}

pub async fn send(score: &Score, req: Request) -> (u16, Value) {
    let (status, _, body) = send_full(score, req).await;
    (status, body)
}

/// [`send`], with the answer's headers.
pub async fn send_full(score: &Score, req: Request) -> (u16, lambda_http::http::HeaderMap, Value) {
    let resp = score.handle(req).await;
    let status = resp.status().as_u16();
    let body = match resp.body() {
        lambda_http::Body::Text(t) => t.clone(),
        lambda_http::Body::Binary(b) => String::from_utf8_lossy(b).into_owned(),
        _ => String::new(),
    };
    (
        status,
        resp.headers().clone(),
        serde_json::from_str(&body).unwrap_or(Value::Null),
    )
}

/// `leadscore replay` of these lines: each lead's object of the replay contract.
pub fn replay(program: &Program, lines: &[String]) -> BTreeMap<String, Value> {
    let mut engine = Engine::new(program);
    for line in lines {
        let value: Value = serde_json::from_str(line).unwrap();
        for call in normalize_body(&value, &TimePolicy::Required)
            .unwrap()
            .into_iter()
            .flatten()
        {
            engine.process(Arc::new(call));
        }
    }
    engine
        .leads()
        .map(|(id, r)| {
            (
                id.to_string(),
                serde_json::to_value(lead_object(program, id, &r.state)).unwrap(),
            )
        })
        .collect()
}

/// The same leads as the table holds them.
pub async fn table_leads(
    store: &DynamoStore,
    ids: impl Iterator<Item = &String>,
) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for id in ids {
        if let Some((
            program,
            leadscore_core::api::StoredLead {
                id: known, state, ..
            },
        )) = store.lead(id).await.unwrap()
        {
            assert_eq!(&known, id, "a known lead reads as itself");
            out.insert(
                known.clone(),
                serde_json::to_value(lead_object(&program, &known, &state)).unwrap(),
            );
        }
    }
    out
}

/// Every item in the table (a test may scan; the functions never do).
pub async fn scan(
    store: &DynamoStore,
) -> Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let out = store
            .client()
            .scan()
            .table_name(store.table())
            .set_exclusive_start_key(start)
            .send()
            .await
            .unwrap();
        items.extend(out.items.unwrap_or_default());
        match out.last_evaluated_key {
            Some(key) if !key.is_empty() => start = Some(key),
            _ => return items,
        }
    }
}

pub fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// The outbox messages of a table: (target, stage or conversion, at), in key order.
pub async fn outbox(store: &DynamoStore) -> Vec<Value> {
    let mut notes: Vec<(String, Value)> = scan(store)
        .await
        .into_iter()
        .filter_map(|item| {
            let sk = item.get("sk")?.as_s().ok()?.clone();
            if !sk.starts_with("NOTE#") {
                return None;
            }
            let message = item.get("message")?.as_s().ok()?;
            Some((sk, serde_json::from_str(message).unwrap()))
        })
        .collect();
    notes.sort_by(|a, b| a.0.cmp(&b.0));
    notes.into_iter().map(|(_, m)| m).collect()
}

/// A track call of lead `u1`, as a body.
pub fn track_u1(event: &str, at: &str, message_id: &str) -> String {
    json!({"type": "track", "event": event, "userId": "u1", "messageId": message_id,
           "timestamp": at})
    .to_string()
}

/// The `leadscore` binary of this build (beside the test binaries' folder).
pub fn leadscore_binary() -> PathBuf {
    binary("leadscore")
}

/// A binary of this build's workspace (`leadscore`, `score`, `notify`, `decay`), beside the
/// test binaries' folder.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join(name))
        .unwrap();
    assert!(
        bin.exists(),
        "no `{name}` binary at {} (build the workspace first)",
        bin.display()
    );
    bin
}
