//! The score function's figures against DynamoDB Local: per-request latency (p50, p99) over
//! 1,000 signed Segment calls delivered as Function URL requests, DynamoDB requests per event
//! and per batch, and the `score` binary's time from process start to ready (its first
//! request for work to the Lambda runtime API).
//!
//! ```sh
//! cargo build --release -p leadscore-score
//! cargo run --release -p leadscore-tests --example score_figures
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use hmac::{Hmac, Mac};
use leadscore_core::api::ApiConfig;
use leadscore_core::store::dynamo::{create_table, DynamoStore};
use leadscore_score::Score;
use leadscore_tests::{free_port, workspace_root, DynamoLocal, Storage};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SECRET: &str = "figures-secret";

fn request(body: &str) -> lambda_http::Request {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    let event = json!({
        "version": "2.0", "routeKey": "$default", "rawPath": "/events", "rawQueryString": "",
        "headers": {"content-type": "application/json", "x-signature": hex::encode(mac.finalize().into_bytes())},
        "requestContext": {"accountId": "anonymous", "apiId": "figures", "domainName": "figures.lambda-url.us-east-1.on.aws",
            "domainPrefix": "figures", "http": {"method": "POST", "path": "/events", "protocol": "HTTP/1.1",
            "sourceIp": "127.0.0.1", "userAgent": "Segment.io/1.0"}, "requestId": "r", "routeKey": "$default",
            "stage": "$default", "time": "22/Nov/2026:17:00:00 +0000", "timeEpoch": 1_795_366_800_000_u64},
        "body": body, "isBase64Encoded": false
    });
    lambda_http::request::from_str(&event.to_string()).unwrap()
}

fn call(lead: usize, n: usize) -> Value {
    let events = [
        "Webinar Registered",
        "Signed Up",
        "Form Submitted",
        "Support Ticket",
    ];
    if n.is_multiple_of(3) {
        json!({"type": "page", "userId": format!("usr_{lead:04}"), "messageId": format!("m-{lead}-{n}"),
               "timestamp": format!("2026-02-{:02}T10:{:02}:00Z", 1 + n % 27, n % 60),
               "properties": {"path": if n.is_multiple_of(2) { "/pricing" } else { "/blog/x" }}})
    } else {
        json!({"type": "track", "event": events[n % events.len()], "userId": format!("usr_{lead:04}"),
               "messageId": format!("m-{lead}-{n}"), "timestamp": format!("2026-02-{:02}T11:{:02}:00Z", 1 + n % 27, n % 60),
               "properties": {"form": "demo", "plan": "trial", "topic": "upgrade"}})
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let local = DynamoLocal::start(Storage::InMemory).unwrap();
    let client = local.client().await;
    create_table(&client, "figures").await.unwrap();
    let program = Arc::new(leadscore_core::rules::load_or_builtin(None).unwrap().0);
    let store = DynamoStore::new(client, "figures", program, 400);
    let score = Score::new(
        ApiConfig {
            webhook_secret: Some(SECRET.into()),
            ..ApiConfig::default()
        },
        store.clone(),
    );
    // warm the connection pool
    let _ = score.handle(request(&call(9999, 0).to_string())).await;

    let mut latencies = Vec::with_capacity(1000);
    let before = store.requests();
    for n in 0..10 {
        for lead in 0..100 {
            let body = call(lead, n).to_string();
            let started = Instant::now();
            let resp = score.handle(request(&body)).await;
            latencies.push(started.elapsed());
            assert_eq!(resp.status(), 200);
        }
    }
    let single = (store.requests() - before) as f64 / 1000.0;
    latencies.sort();
    let total: Duration = latencies.iter().sum();
    println!("score handler, 1,000 single-call requests (100 leads x 10), DynamoDB Local:");
    println!(
        "  p50 {:.2} ms   p99 {:.2} ms   max {:.2} ms   mean {:.2} ms",
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().unwrap().as_secs_f64() * 1e3,
        total.as_secs_f64() * 1e3 / 1000.0
    );
    println!("  DynamoDB requests per event: {single:.2}");

    let batch: Vec<Value> = (100..150).map(|n| call(7, n)).collect();
    let before = store.requests();
    let started = Instant::now();
    let resp = score
        .handle(request(&json!({"batch": batch}).to_string()))
        .await;
    assert_eq!(resp.status(), 200);
    println!(
        "  a batch of 50 calls for one lead: {} DynamoDB requests, {:.2} ms",
        store.requests() - before,
        started.elapsed().as_secs_f64() * 1e3
    );

    // the binary's cold start: process start until it asks the runtime API for work
    let binary = workspace_root().join("target/release/score");
    if !binary.exists() {
        println!("(build `target/release/score` to measure the start: cargo build --release -p leadscore-score)");
        return;
    }
    let size = std::fs::metadata(&binary).unwrap().len();
    println!(
        "score binary (release): {:.1} MiB",
        size as f64 / (1024.0 * 1024.0)
    );
    let mut starts = Vec::new();
    for _ in 0..5 {
        let port = free_port();
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let started = Instant::now();
        let mut child = std::process::Command::new(&binary)
            .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}"))
            .env("AWS_LAMBDA_FUNCTION_NAME", "score")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "local")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "local")
            .env("LEADSCORE_TABLE", "figures")
            .env("LEADSCORE_WEBHOOK_SECRET", SECRET)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "local")
            .env("AWS_SECRET_ACCESS_KEY", "local")
            .env("AWS_ENDPOINT_URL", local.endpoint())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let (stream, _) = listener.accept().unwrap();
        let mut line = String::new();
        BufReader::new(&stream).read_line(&mut line).unwrap();
        let ready = started.elapsed();
        assert!(line.contains("/runtime/invocation/next"), "{line}");
        let _ =
            (&stream).write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n");
        let _ = child.kill();
        let _ = child.wait();
        starts.push(ready);
    }
    starts.sort();
    println!("score start to ready (rules compiled, config checked, client built), 5 runs: median {:.1} ms, min {:.1} ms, max {:.1} ms",
        starts[2].as_secs_f64() * 1e3, starts[0].as_secs_f64() * 1e3, starts[4].as_secs_f64() * 1e3);
}
