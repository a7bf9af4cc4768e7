//! Decay ticks on DynamoDB Local (SPEC §6 `decay`): a table of `LEADS` leads (default
//! 100,000) of which `DUE` (default 10,000) can change with time: those are scored through the
//! store (a ping each, rules with a 30-day half-life and a stage reached when engagement
//! falls below 10); the rest are lead items that time cannot change (no `due` attributes),
//! written directly. Then: ticks before the crossing (nothing to visit), and the tick after
//! it, which visits the due leads only, 16 at a time. Prints leads visited and the time of
//! each tick.
//!
//! ```sh
//! LEADS=100000 DUE=10000 cargo run --release -p leadscore-tests --example decay_figures
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use leadscore_core::api::{Accepted, LeadStore};
use leadscore_core::ingest::call::TimePolicy;
use leadscore_core::ingest::segment::normalize_call;
use leadscore_core::store::dynamo::{create_table, DynamoStore};
use leadscore_tests::{DynamoLocal, Storage};
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

const RULES: &str = "ruleset \"cooling\"
score \"Ping\" +40 on \"Ping\"
decay engagement half_life 30d
stage cold when engagement < 10
";

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let leads = env("LEADS", 100_000);
    let due = env("DUE", 10_000).min(leads);
    let local = DynamoLocal::start(Storage::InMemory).unwrap();
    let client = local.client().await;
    create_table(&client, "decay").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cooling.rules");
    std::fs::write(&path, RULES).unwrap();
    let (program, _, _) = leadscore_core::rules::load(&[path]).unwrap();
    let program = Arc::new(program);
    let year = 365 * 86_400 * leadscore_rules::time::SECOND;

    // the leads time cannot change: plain lead items, 25 a request
    let started = Instant::now();
    let mut batch = Vec::new();
    for i in due..leads {
        let item = [
            ("pk", AttributeValue::S(format!("LEAD#still-{i}"))),
            ("sk", AttributeValue::S("STATE".into())),
            ("version", AttributeValue::N("1".into())),
        ];
        let put = PutRequest::builder()
            .set_item(Some(
                item.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            ))
            .build()
            .unwrap();
        batch.push(WriteRequest::builder().put_request(put).build());
        if batch.len() == 25 || i + 1 == leads {
            let mut pending = std::mem::take(&mut batch);
            while !pending.is_empty() {
                let out = client
                    .batch_write_item()
                    .request_items("decay", pending)
                    .send()
                    .await
                    .unwrap();
                pending = out
                    .unprocessed_items
                    .and_then(|mut m| m.remove("decay"))
                    .unwrap_or_default();
            }
        }
    }
    eprintln!(
        "wrote {} still leads in {:.1?}",
        leads - due,
        started.elapsed()
    );

    // the due leads, through the store, 8 writers
    let started = Instant::now();
    let writers = 8;
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..writers {
        let store =
            DynamoStore::new(client.clone(), "decay", Arc::clone(&program), 400).with_refresh(year);
        tasks.spawn(async move {
            for lead in (w..due).step_by(writers) {
                let record = json!({"type": "track", "event": "Ping", "userId": format!("due-{lead}"),
                    "messageId": format!("p{lead}"), "timestamp": "2026-01-01T00:00:00Z"});
                let call = normalize_call(&record, "", &TimePolicy::Required).unwrap();
                store.apply(vec![Accepted { call, record }]).await.unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    eprintln!("wrote {due} due leads in {:.1?}", started.elapsed());

    let store = DynamoStore::new(client.clone(), "decay", program, 400).with_refresh(year);
    println!("DynamoDB Local, {leads} leads, {due} of them due at the crossing (2026-03-02)");
    for at in [
        "2026-01-02T00:00:00Z",
        "2026-02-15T00:00:00Z",
        "2026-03-02T00:15:00Z",
        "2026-03-02T00:30:00Z",
    ] {
        let t = leadscore_rules::time::parse_rfc3339(at).unwrap();
        let before = store.requests();
        let started = Instant::now();
        let report = store.tick_due(t).await.unwrap();
        let elapsed = started.elapsed().as_secs_f64();
        println!(
            "tick {at}: visited {}, committed {}, failed {}, {:.2} s ({:.0} leads/s), {} DynamoDB requests",
            report.visited,
            report.committed,
            report.failed,
            elapsed,
            report.visited as f64 / elapsed.max(1e-9),
            store.requests() - before
        );
    }
}
