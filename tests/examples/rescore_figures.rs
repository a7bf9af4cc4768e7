//! Rescore throughput on DynamoDB Local (SPEC §7 `rescore`): `LEADS` leads (default
//! 100,000), each with three kept calls, written under `bench/bench20.rules`; the rules are
//! then edited (the pricing page's points) and every lead is rescored with parallel scan
//! segments. Prints leads per second and DynamoDB requests per lead.
//!
//! ```sh
//! LEADS=100000 cargo run --release -p leadscore-tests --example rescore_figures
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use leadscore_core::api::{Accepted, LeadStore};
use leadscore_core::ingest::call::TimePolicy;
use leadscore_core::ingest::segment::normalize_call;
use leadscore_core::store::dynamo::{create_table, DynamoStore};
use leadscore_tests::{workspace_root, DynamoLocal, Storage};
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

fn accepted(lead: usize, n: usize) -> Accepted {
    let record = if n == 0 {
        json!({"type": "identify", "userId": format!("u{lead}"), "messageId": format!("m{lead}-{n}"),
               "timestamp": "2026-02-01T09:00:00Z", "traits": {"title": "VP Sales", "plan": "trial"}})
    } else {
        json!({"type": "page", "userId": format!("u{lead}"), "messageId": format!("m{lead}-{n}"),
               "timestamp": format!("2026-02-0{}T10:00:00Z", 1 + n), "properties": {"path": "/pricing"}})
    };
    let call = normalize_call(&record, "", &TimePolicy::Required).unwrap();
    Accepted { call, record }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let leads: usize = std::env::var("LEADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let segments: u32 = std::env::var("SEGMENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let local = DynamoLocal::start(Storage::InMemory).unwrap();
    let client = local.client().await;
    create_table(&client, "rescore").await.unwrap();
    let rules = workspace_root().join("bench/bench20.rules");
    let (v1, _, _) = leadscore_core::rules::load(std::slice::from_ref(&rules)).unwrap();
    let text = std::fs::read_to_string(&rules).unwrap().replace(
        "+10 on page where path starts_with \"/pricing\"",
        "+12 on page where path starts_with \"/pricing\"",
    );
    let dir = tempfile::tempdir().unwrap();
    let edited = dir.path().join("edited.rules");
    std::fs::write(&edited, text).unwrap();
    let (v2, _, _) = leadscore_core::rules::load(&[edited]).unwrap();
    assert_ne!(v1.version, v2.version);

    // write the leads, several writers at once (one request of three calls a lead)
    let started = Instant::now();
    let v1 = Arc::new(v1);
    let writers = 8;
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..writers {
        let store = DynamoStore::new(client.clone(), "rescore", Arc::clone(&v1), 400);
        tasks.spawn(async move {
            for lead in (w..leads).step_by(writers) {
                let calls = (0..3).map(|n| accepted(lead, n)).collect();
                store.apply(calls).await.unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    eprintln!("wrote {leads} leads in {:.1?}", started.elapsed());

    let store = DynamoStore::new(client.clone(), "rescore", Arc::new(v2), 400);
    let before = store.requests();
    let started = Instant::now();
    let report = store.rescore_all(segments, Arc::new(|_| {})).await.unwrap();
    let elapsed = started.elapsed();
    let requests = store.requests() - before;
    assert_eq!(report.leads, leads as u64);
    println!(
        "rescore on DynamoDB Local: {leads} leads in {:.2} s = {:.0} leads/s ({segments} segments), {} changed, {:.2} DynamoDB requests a lead",
        elapsed.as_secs_f64(),
        leads as f64 / elapsed.as_secs_f64(),
        report.changed,
        requests as f64 / leads as f64
    );
    // a second rescore finds every lead current
    let started = Instant::now();
    let again = store.rescore_all(segments, Arc::new(|_| {})).await.unwrap();
    println!(
        "second rescore (nothing to do): {:.2} s, {} changed",
        started.elapsed().as_secs_f64(),
        again.changed
    );
}
