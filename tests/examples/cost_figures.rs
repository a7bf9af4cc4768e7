//! What the README's benchmark workload costs on DynamoDB and Lambda, measured on DynamoDB
//! Local: `bench/gen-events.py`'s calls (10 a lead, as its million over 100,000 leads),
//! scored with `bench/bench20.rules` by the `score` handler in the batches the analytics
//! libraries send (`BATCH`, 100 by default) and, for the first `SINGLE` calls (2,000 by
//! default: DynamoDB Local slows down as its stream grows), one call a request (as a webhook
//! source sends), then their notifications read from the table's real stream and delivered by the
//! `notify` handler to a webhook receiver, 25 records an invocation as the template maps them.
//! Every DynamoDB request asks for `ReturnConsumedCapacity`. DynamoDB Local reports a
//! transaction as twice its items' summed size in KB where DynamoDB charges each item on its
//! own, so transactions are priced item by item from their items' sizes
//! (`leadscore_core::store::capacity`); the rest is as reported. Prices: the published
//! on-demand prices (us-east-1).
//!
//! ```sh
//! cargo run --release -p leadscore-tests --example cost_figures      # EVENTS=20000 LEADS=2000 BATCH=100 SINGLE=2000
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[path = "../tests/common/mod.rs"]
mod common;

use aws_sdk_dynamodb::types::AttributeValue;
use common::receiver::Receiver;
use common::stream::{lambda_event, note_inserts, stream_records};
use leadscore_core::store::capacity::{item_size, CapacityFigures};
use leadscore_core::store::dynamo::{create_table, DynamoStore};
use leadscore_notify::{Config, Notifier, Targets};
use leadscore_score::Score;
use leadscore_tests::{workspace_root, DynamoLocal, Storage};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// On-demand prices, us-east-1, in dollars: a million write request units, a million read
/// request units, a million Lambda requests, a GB-second of Lambda on arm64.
const WRU: f64 = 0.625;
const RRU: f64 = 0.125;
const LAMBDA_REQUESTS: f64 = 0.20;
const LAMBDA_GB_SECOND: f64 = 0.000_013_333_4;
/// The template's memory size for every function, in GB.
const MEMORY_GB: f64 = 0.25;
const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What one phase consumed.
struct Phase {
    name: String,
    invocations: usize,
    capacity: CapacityFigures,
    requests: u64,
    busy: Duration,
}

impl Phase {
    /// Dollars per million events, for `events` events: DynamoDB, then Lambda.
    fn cost(&self, events: usize) -> (f64, f64) {
        let scale = 1e6 / events as f64;
        let dynamo = (self.capacity.read * RRU + self.capacity.priced_write * WRU) / 1e6 * scale;
        let lambda = (self.invocations as f64 * LAMBDA_REQUESTS / 1e6
            + self.busy.as_secs_f64() * MEMORY_GB * LAMBDA_GB_SECOND)
            * scale;
        (dynamo, lambda)
    }

    fn print(&self, events: usize) {
        let (dynamo, lambda) = self.cost(events);
        println!(
            "{}: {} invocations, per event {:.3} RRU, {:.3} WRU priced ({:.3} reported, {:.3} of them on indexes), {:.2} requests; {:.2} ms an invocation; per million events ${:.3} DynamoDB + ${:.3} Lambda",
            self.name,
            self.invocations,
            self.capacity.read / events as f64,
            self.capacity.priced_write / events as f64,
            self.capacity.write / events as f64,
            self.capacity.index_write / events as f64,
            self.requests as f64 / events as f64,
            self.busy.as_secs_f64() * 1e3 / self.invocations.max(1) as f64,
            dynamo,
            lambda
        );
    }
}

/// Scores `calls` in requests of `batch` calls on a new table; returns the phase and the
/// table's name.
async fn score(local: &DynamoLocal, calls: &[Value], batch: usize, name: &str) -> (Phase, String) {
    let client = local.client().await;
    let table = format!("cost-{batch}");
    create_table(&client, &table).await.unwrap();
    let (program, _, _) =
        leadscore_core::rules::load(&[workspace_root().join("bench/bench20.rules")]).unwrap();
    let store = DynamoStore::new(client, table.clone(), std::sync::Arc::new(program), 400);
    let score = Score::new(common::signed_config(), store.clone());
    let requests0 = store.requests();
    let mut busy = Duration::ZERO;
    let mut invocations = 0;
    for chunk in calls.chunks(batch) {
        let body = if batch == 1 {
            chunk[0].to_string()
        } else {
            json!({ "batch": chunk }).to_string()
        };
        let started = Instant::now();
        let response = score.handle(common::signed_post(&body)).await;
        busy += started.elapsed();
        invocations += 1;
        assert_eq!(response.status(), 200, "{body}");
    }
    (
        Phase {
            name: name.to_owned(),
            invocations,
            capacity: store.counters().capacity.figures(),
            requests: store.requests() - requests0,
            busy,
        },
        table,
    )
}

/// Prints the table's items by kind (the sort key up to its first `#`): count, mean size.
async fn survey(local: &DynamoLocal, table: &str) {
    let client = local.client().await;
    let mut kinds: std::collections::BTreeMap<String, (usize, usize)> = Default::default();
    let mut start = None;
    loop {
        let out = client
            .scan()
            .table_name(table)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .unwrap();
        for item in out.items() {
            let sk = match item.get("sk") {
                Some(AttributeValue::S(sk)) => sk.split('#').next().unwrap_or_default().to_owned(),
                _ => String::new(),
            };
            let entry = kinds.entry(sk).or_default();
            entry.0 += 1;
            entry.1 += item_size(item);
        }
        match out.last_evaluated_key {
            Some(key) if !key.is_empty() => start = Some(key),
            _ => break,
        }
    }
    for (kind, (count, bytes)) in kinds {
        println!(
            "  items `{kind}`: {count}, {:.0} bytes on average",
            bytes as f64 / count as f64
        );
    }
}

/// Delivers the notifications of `table`'s stream, 25 records an invocation.
async fn notify(local: &DynamoLocal, table: &str) -> (Phase, usize) {
    let client = local.client().await;
    let records = note_inserts(&stream_records(local, &client, table).await.unwrap());
    let receiver = Receiver::start().unwrap();
    let targets = json!({
        "sales": {"type": "webhook", "url": receiver.url("/sales"), "secret": WEBHOOK_SECRET},
        "revenue": {"type": "webhook", "url": receiver.url("/revenue"), "secret": WEBHOOK_SECRET},
    });
    let config = Config {
        table: table.to_owned(),
        targets: Targets::parse(Some(&targets.to_string()), None).unwrap(),
    };
    let events =
        aws_sdk_eventbridge::Client::new(&leadscore_tests::local_sdk_config("http://127.0.0.1:9"));
    let notifier = Notifier::new(client, events, config).unwrap();
    let mut busy = Duration::ZERO;
    let mut invocations = 0;
    for chunk in records.chunks(25) {
        let event = lambda_event(chunk).unwrap();
        let started = Instant::now();
        let response = notifier.handle(event).await;
        busy += started.elapsed();
        invocations += 1;
        assert!(response.batch_item_failures.is_empty(), "notify failed");
    }
    assert_eq!(receiver.requests().len(), records.len());
    (
        Phase {
            name: "notify (25 records an invocation)".into(),
            invocations,
            capacity: notifier.capacity(),
            requests: 0,
            busy,
        },
        records.len(),
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let events = env_or("EVENTS", 20_000);
    let leads = env_or("LEADS", events / 10);
    let batch = env_or("BATCH", 100);
    let generated = std::process::Command::new("python3")
        .arg(workspace_root().join("bench/gen-events.py"))
        .args([
            "--events",
            &events.to_string(),
            "--leads",
            &leads.to_string(),
        ])
        .output()
        .unwrap();
    assert!(generated.status.success());
    let calls: Vec<Value> = String::from_utf8(generated.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let local = DynamoLocal::start(Storage::InMemory).unwrap();
    println!(
        "DynamoDB Local, {events} calls over {leads} leads (bench/gen-events.py), bench/bench20.rules"
    );
    let (batched, table) = score(
        &local,
        &calls,
        batch,
        &format!("score ({batch} calls a request)"),
    )
    .await;
    batched.print(events);
    survey(&local, &table).await;
    let (notified, notes) = notify(&local, &table).await;
    println!("{notes} notifications");
    notified.print(events);
    let singles = env_or("SINGLE", 2_000).min(events);
    let (single, _) = score(
        &local,
        &calls[..singles],
        1,
        &format!("score (one call a request, the first {singles} calls)"),
    )
    .await;
    single.print(singles);
    let total = |score: &Phase, scored: usize| {
        let (d1, l1) = score.cost(scored);
        let (d2, l2) = notified.cost(events);
        (d1 + d2, l1 + l2)
    };
    for (what, phase, scored) in [
        ("batches", &batched, events),
        ("one call a request", &single, singles),
    ] {
        let (dynamo, lambda) = total(phase, scored);
        println!(
            "per million events, {what}, score and notify: ${dynamo:.2} DynamoDB + ${lambda:.2} Lambda = ${:.2} (Lambda duration at {MEMORY_GB} GB as timed here, against DynamoDB Local)",
            dynamo + lambda
        );
    }
}
