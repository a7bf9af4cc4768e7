//! The load benchmark's client (`bench/load.sh` runs it): `send` drives `POST /events` of
//! `leadscore serve` or of the `score` function (its local Function URL under cargo lambda)
//! from concurrent senders, each call signed as Segment signs it and sent again after a
//! `429`/`503` or a lost connection until it is acknowledged, as a sender does; it writes how
//! many calls each lead had acknowledged. `verify` reads every lead back (`GET /leads/{id}`)
//! and compares its event count with that: fewer is a lost call, more a double count.

use clap::{Parser, Subcommand};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

type Failure = Box<dyn std::error::Error + Send + Sync>;

#[derive(Parser)]
#[command(
    name = "leadscore-load",
    about = "load benchmark client for serve and score"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Sends signed calls from CLIENTS senders for SECONDS; prints the figures as JSON.
    Send {
        /// The API's base URL (`http://127.0.0.1:PORT` or `.../lambda-url/score`).
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 16)]
        clients: usize,
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// How many distinct leads the calls go to.
        #[arg(long, default_value_t = 2000)]
        leads: usize,
        /// Prefix of this run's lead ids and message ids (runs do not share leads).
        #[arg(long)]
        run: String,
        /// Where to write the acknowledged calls per lead (JSON).
        #[arg(long)]
        acked: PathBuf,
        /// Give up on a call no answer acknowledged within this many seconds.
        #[arg(long, default_value_t = 120)]
        patience: u64,
    },
    /// Reads back every lead of the ACKED files and compares their event counts.
    Verify {
        #[arg(long)]
        url: String,
        #[arg(long, required = true)]
        acked: Vec<PathBuf>,
    },
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let result = match args.command {
        Command::Send {
            url,
            clients,
            seconds,
            leads,
            run,
            acked,
            patience,
        } => {
            send(Plan {
                url,
                clients,
                seconds,
                leads: leads.max(1),
                run,
                acked,
                patience: Duration::from_secs(patience),
            })
            .await
        }
        Command::Verify { url, acked } => verify(&url, &acked).await,
    };
    if let Err(err) = result {
        eprintln!("leadscore-load: {err}");
        std::process::exit(1);
    }
}

struct Plan {
    url: String,
    clients: usize,
    seconds: u64,
    leads: usize,
    run: String,
    acked: PathBuf,
    patience: Duration,
}

/// What one sender saw.
#[derive(Default)]
struct Tally {
    /// Latency of each answered request, in microseconds.
    latencies: Vec<u64>,
    /// Acknowledged calls per lead.
    acked: BTreeMap<String, u64>,
    /// Answers `429`/`503` (sent again).
    retried: u64,
    /// Requests that got no answer (connection refused or reset; sent again).
    unanswered: u64,
    /// Calls acknowledged as duplicates (a repeat of a call applied before its answer was lost).
    duplicates: u64,
}

fn secret() -> Result<String, Failure> {
    std::env::var("LEADSCORE_WEBHOOK_SECRET")
        .map_err(|_| "set `LEADSCORE_WEBHOOK_SECRET` to the API's secret".into())
}

fn signature(secret: &str, body: &str) -> Result<String, Failure> {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes())?;
    mac.update(body.as_bytes());
    Ok(hex::encode(mac.finalize().into_bytes()))
}

/// Call `n` of sender `client`: a mix of what the example rules score (pricing and docs
/// pages, webinars, features used, an identify now and then), for one of `leads` leads, at
/// the time it is sent.
fn call(plan: &Plan, client: usize, n: usize) -> (String, String) {
    let lead = format!(
        "{}-{}",
        plan.run,
        (client * 7919 + n * 104_729) % plan.leads
    );
    let message_id = format!("{}-c{client}-{n}", plan.run);
    let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let value = match n % 5 {
        0 => json!({"type": "page", "name": "Pricing", "properties": {"path": "/pricing"}}),
        1 => json!({"type": "page", "name": "Docs", "properties": {"path": "/docs/start"}}),
        2 => {
            json!({"type": "track", "event": "Webinar Registered", "properties": {"webinar": "w1"}})
        }
        3 => {
            json!({"type": "track", "event": "Feature Used", "properties": {"feature": "reports"}})
        }
        _ => {
            json!({"type": "identify", "traits": {"plan": "trial", "email": format!("{lead}@example.com")}})
        }
    };
    let mut value = value;
    if let Some(object) = value.as_object_mut() {
        object.insert("userId".into(), json!(lead));
        object.insert("messageId".into(), json!(message_id));
        object.insert("timestamp".into(), json!(at));
    }
    (lead, value.to_string())
}

async fn sender(
    plan: Arc<Plan>,
    http: reqwest::Client,
    secret: Arc<String>,
    client: usize,
    deadline: Instant,
) -> Result<Tally, Failure> {
    let mut tally = Tally::default();
    let url = format!("{}/events", plan.url);
    let mut n = 0;
    while Instant::now() < deadline {
        let (lead, body) = call(&plan, client, n);
        let sig = signature(&secret, &body)?;
        let first = Instant::now();
        loop {
            if first.elapsed() > plan.patience {
                return Err(format!("call {n} of sender {client} was never acknowledged").into());
            }
            let started = Instant::now();
            let answer = http
                .post(&url)
                .header("content-type", "application/json")
                .header("x-signature", &sig)
                .body(body.clone())
                .send()
                .await;
            let answer = match answer {
                Ok(answer) => answer,
                Err(_) => {
                    tally.unanswered += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let status = answer.status().as_u16();
            let text = match answer.text().await {
                Ok(text) => text,
                Err(_) => {
                    tally.unanswered += 1;
                    continue;
                }
            };
            let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            tally.latencies.push(micros);
            match status {
                200 => {
                    let resp: Value = serde_json::from_str(&text)?;
                    let applied = resp["applied"].as_u64().unwrap_or(0);
                    let duplicates = resp["duplicates"].as_u64().unwrap_or(0);
                    if applied + duplicates != 1 {
                        return Err(format!("unexpected answer to `{body}`: {text}").into());
                    }
                    tally.duplicates += duplicates;
                    *tally.acked.entry(lead).or_default() += 1;
                    break;
                }
                // 502 and 504: a Function URL whose instance died or timed out
                429 | 502 | 503 | 504 => {
                    tally.retried += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                _ => return Err(format!("`{body}` answered {status}: {text}").into()),
            }
        }
        n += 1;
    }
    Ok(tally)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p / 100.0 * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)] as f64 / 1000.0
}

async fn send(plan: Plan) -> Result<(), Failure> {
    let plan = Arc::new(plan);
    let secret = Arc::new(secret()?);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(plan.clients)
        .timeout(Duration::from_secs(30))
        .build()?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(plan.seconds);
    let mut tasks = Vec::new();
    for client in 0..plan.clients {
        tasks.push(tokio::spawn(sender(
            Arc::clone(&plan),
            http.clone(),
            Arc::clone(&secret),
            client,
            deadline,
        )));
    }
    let mut all = Tally::default();
    for task in tasks {
        let tally = task.await??;
        all.latencies.extend(tally.latencies);
        for (lead, count) in tally.acked {
            *all.acked.entry(lead).or_default() += count;
        }
        all.retried += tally.retried;
        all.unanswered += tally.unanswered;
        all.duplicates += tally.duplicates;
    }
    let wall = started.elapsed().as_secs_f64();
    all.latencies.sort_unstable();
    let acked: u64 = all.acked.values().sum();
    std::fs::write(&plan.acked, serde_json::to_string(&all.acked)?)?;
    let figures = json!({
        "clients": plan.clients,
        "seconds": wall,
        "acknowledged": acked,
        "per_second": acked as f64 / wall,
        "latency_ms": {
            "p50": percentile(&all.latencies, 50.0),
            "p99": percentile(&all.latencies, 99.0),
            "max": percentile(&all.latencies, 100.0),
        },
        "answered_429_or_503": all.retried,
        "unanswered": all.unanswered,
        "acknowledged_as_duplicates": all.duplicates,
        "leads": all.acked.len(),
    });
    println!("{figures}");
    Ok(())
}

async fn verify(url: &str, files: &[PathBuf]) -> Result<(), Failure> {
    let token = std::env::var("LEADSCORE_API_TOKEN")
        .map_err(|_| "set `LEADSCORE_API_TOKEN` to the API's token")?;
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(file)?;
        let acked: BTreeMap<String, u64> = serde_json::from_str(&text)?;
        for (lead, count) in acked {
            *expected.entry(lead).or_default() += count;
        }
    }
    let http = reqwest::Client::new();
    let (mut lost, mut doubled) = (0_u64, 0_u64);
    for (lead, want) in &expected {
        let answer = http
            .get(format!("{url}/leads/{lead}"))
            .bearer_auth(&token)
            .send()
            .await?;
        let status = answer.status().as_u16();
        let text = answer.text().await?;
        let got = match status {
            200 => serde_json::from_str::<Value>(&text)?["events"]
                .as_u64()
                .unwrap_or(0),
            404 => 0,
            _ => return Err(format!("GET /leads/{lead} answered {status}: {text}").into()),
        };
        lost += want.saturating_sub(got);
        doubled += got.saturating_sub(*want);
    }
    let acked: u64 = expected.values().sum();
    println!(
        "{}",
        json!({"leads": expected.len(), "acknowledged": acked, "lost": lost, "double_counted": doubled})
    );
    if lost > 0 || doubled > 0 {
        return Err(format!("{lost} acknowledged call(s) lost, {doubled} counted twice").into());
    }
    Ok(())
}
