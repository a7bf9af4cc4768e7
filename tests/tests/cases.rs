//! The data-driven corpus in `tests/cases/`, run by one runner against every implementation:
//! `leadscore replay` (the embedded store, several `--rules`/`--events` pairs), `leadscore
//! serve` over HTTP (restarted on each rule set in turn; its leads, and the notifications of
//! its outbox file) and the `score` function on DynamoDB Local (restarted on each rule set in turn, with
//! a `rescore` of the table after each change).
//!
//! A case is a folder: `1.rules`, `1.jsonl`, `2.rules`, `2.jsonl`, ... applied in turn, and
//! `expected.json`: `leads` (each lead's keys compared where given, numbers within 0.01),
//! `lead_count`, `ruleset`, `notifications` (compared whole, `cause` included), and
//! `same_version` (steps whose rules must have the same version: then nothing is rescored).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use common::*;
use leadscore_core::store::dynamo::{create_table, DynamoStore};
use leadscore_rules::Program;
use leadscore_score::Score;
use leadscore_tests::{unique_name, workspace_root, DynamoLocal, Storage};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One case: its steps (rules, events) in order and what must come out.
struct Case {
    name: String,
    steps: Vec<(PathBuf, PathBuf)>,
    expected: Value,
}

/// Every case of `tests/cases`. There must be cases, and each must be whole: a missing
/// fixture fails, it never passes for want of something to check.
fn cases() -> Vec<Case> {
    let root = workspace_root().join("tests/cases");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("no corpus at {}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 9, "the corpus has {} cases", dirs.len());
    dirs.into_iter()
        .map(|dir| {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            let mut steps = Vec::new();
            for k in 1.. {
                let rules = dir.join(format!("{k}.rules"));
                let events = dir.join(format!("{k}.jsonl"));
                if !rules.exists() {
                    break;
                }
                assert!(events.exists(), "{name}: {k}.rules without {k}.jsonl");
                steps.push((rules, events));
            }
            assert!(!steps.is_empty(), "{name}: no 1.rules");
            let text = std::fs::read_to_string(dir.join("expected.json"))
                .unwrap_or_else(|e| panic!("{name}: expected.json: {e}"));
            let expected: Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(
                expected["leads"].as_array().is_some_and(|l| !l.is_empty())
                    && expected.get("lead_count").is_some(),
                "{name}: expected.json must give `leads` and `lead_count`"
            );
            Case {
                name,
                steps,
                expected,
            }
        })
        .collect()
}

/// What `want` says and `got` does not: keys of objects that `want` gives (numbers within
/// 0.01), lists item by item.
fn differences(want: &Value, got: &Value, path: &str) -> Vec<String> {
    match (want, got) {
        (Value::Number(w), Value::Number(g)) => {
            let (w, g) = (w.as_f64().unwrap(), g.as_f64().unwrap());
            if (w - g).abs() <= 0.01 {
                Vec::new()
            } else {
                vec![format!("{path}: want {w}, got {g}")]
            }
        }
        (Value::Object(w), Value::Object(g)) => w
            .iter()
            .flat_map(|(k, v)| match g.get(k) {
                Some(gv) => differences(v, gv, &format!("{path}.{k}")),
                None => vec![format!("{path}.{k}: missing")],
            })
            .collect(),
        (Value::Array(w), Value::Array(g)) if w.len() == g.len() => w
            .iter()
            .zip(g)
            .enumerate()
            .flat_map(|(i, (w, g))| differences(w, g, &format!("{path}[{i}]")))
            .collect(),
        _ if want == got => Vec::new(),
        _ => vec![format!("{path}: want {want}, got {got}")],
    }
}

/// What an implementation gave: the leads by id, the ruleset name and the notifications.
struct Outcome {
    leads: Vec<Value>,
    ruleset: Value,
    notifications: Vec<Value>,
}

/// Checks an outcome against the case; `ordered`: notifications in the contract's order
/// (replay), else as a set (the table's outbox has no production order).
fn check(case: &Case, implementation: &str, got: &Outcome, ordered: bool) {
    let want = &case.expected;
    let mut problems = Vec::new();
    for lead in want["leads"].as_array().into_iter().flatten() {
        let id = &lead["id"];
        match got.leads.iter().find(|l| &l["id"] == id) {
            Some(g) => problems.extend(differences(lead, g, &format!("lead {id}"))),
            None => problems.push(format!("lead {id}: missing")),
        }
    }
    if let Some(n) = want.get("lead_count") {
        problems.extend(differences(n, &json!(got.leads.len()), "lead_count"));
    }
    if let Some(name) = want.get("ruleset") {
        problems.extend(differences(name, &got.ruleset, "ruleset"));
    }
    if let Some(notes) = want["notifications"].as_array() {
        let (mut want_notes, mut got_notes) = (notes.clone(), got.notifications.clone());
        if !ordered {
            let key = |v: &Value| v.to_string();
            want_notes.sort_by_key(key);
            got_notes.sort_by_key(key);
        }
        if want_notes != got_notes {
            problems.push(format!(
                "notifications: want {}, got {}",
                Value::Array(want_notes),
                Value::Array(got_notes)
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} on {implementation}:\n  {}",
        case.name,
        problems.join("\n  ")
    );
}

fn programs(case: &Case) -> Vec<Arc<Program>> {
    let programs: Vec<Arc<Program>> = case.steps.iter().map(|(r, _)| program(r)).collect();
    if let Some(same) = case.expected["same_version"].as_array() {
        let versions: Vec<&str> = same
            .iter()
            .map(|k| programs[k.as_u64().unwrap() as usize - 1].version.as_str())
            .collect();
        assert!(
            versions.windows(2).all(|w| w[0] == w[1]),
            "{}: versions differ: {versions:?}",
            case.name
        );
    }
    programs
}

fn run_replay(case: &Case) -> Outcome {
    let mut cmd = std::process::Command::new(leadscore_binary());
    cmd.args(["replay", "--format", "json", "--strict"]);
    for (rules, events) in &case.steps {
        cmd.arg("--rules").arg(rules).arg("--events").arg(events);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}: replay failed: {}",
        case.name,
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    Outcome {
        leads: doc["leads"].as_array().unwrap().clone(),
        ruleset: doc["ruleset"].clone(),
        notifications: doc["notifications"].as_array().unwrap().clone(),
    }
}

/// The outbox of a table as `replay` prints notifications.
async fn told(store: &DynamoStore) -> Vec<Value> {
    outbox(store)
        .await
        .into_iter()
        .map(|m| {
            let mut note =
                json!({"target": m["target"], "kind": m["kind"], "lead": m["lead"]["id"]});
            for key in ["stage", "conversion", "at", "cause"] {
                if let Some(v) = m.get(key) {
                    note[key] = v.clone();
                }
            }
            note
        })
        .collect()
}

/// A lead's notification sequence numbers so far: every one seen, by notification id.
#[derive(Default)]
struct Sequences(std::collections::BTreeMap<String, u64>);

/// Every message carries the lead's profile and a sequence number; a lead's numbers are
/// 1, 2, 3, ... with no repeat, and the messages of a later step (committed later) have
/// higher numbers than every earlier one.
fn check_sequences(
    case: &Case,
    messages: &[Value],
    seen: &mut std::collections::HashMap<String, Sequences>,
) {
    let mut now: std::collections::HashMap<String, Vec<(String, u64)>> =
        std::collections::HashMap::new();
    for m in messages {
        assert!(
            m["lead"]["profile"].is_object(),
            "{}: no profile in {m}",
            case.name
        );
        let sequence = m["sequence"]
            .as_u64()
            .unwrap_or_else(|| panic!("{}: no sequence in {m}", case.name));
        let lead = m["lead"]["id"].as_str().unwrap().to_owned();
        now.entry(lead)
            .or_default()
            .push((m["id"].as_str().unwrap().to_owned(), sequence));
    }
    for (lead, notes) in now {
        let before = seen.entry(lead.clone()).or_default();
        let highest = before.0.values().copied().max().unwrap_or(0);
        for (id, sequence) in &notes {
            match before.0.get(id) {
                Some(old) => assert_eq!(old, sequence, "{}: {id} renumbered", case.name),
                None => assert!(
                    *sequence > highest,
                    "{}: {lead}: {id} committed later has sequence {sequence} <= {highest}",
                    case.name
                ),
            }
        }
        before.0.extend(notes);
        let mut all: Vec<u64> = before.0.values().copied().collect();
        all.sort_unstable();
        let expected: Vec<u64> = (1..=all.len() as u64).collect();
        assert_eq!(all, expected, "{}: {lead}'s sequence numbers", case.name);
    }
}

async fn run_score(local: &DynamoLocal, case: &Case) -> Outcome {
    let programs = programs(case);
    let client = local.client().await;
    let table = unique_name("cases");
    create_table(&client, &table).await.unwrap();
    let auth = json!({"authorization": "Bearer token-1"});
    let mut ids: Vec<String> = Vec::new();
    let mut last: Option<(Score, DynamoStore)> = None;
    let mut sequences: std::collections::HashMap<String, Sequences> =
        std::collections::HashMap::new();
    for (k, ((_, events), program)) in case.steps.iter().zip(&programs).enumerate() {
        // the function restarted on these rules, then the table rescored
        // a rename of the rule set is said, as an operator says it (`LEADSCORE_RENAMED_FROM`)
        let store = DynamoStore::new(client.clone(), table.clone(), Arc::clone(program), 400)
            .with_renamed_from(programs[..k].iter().map(|p| p.name.clone()));
        if k > 0 {
            let report = store.rescore_all(3, Arc::new(|_| {})).await.unwrap();
            if programs[k - 1].version == program.version {
                // a rename restamps the leads with the new name, and changes nothing else
                if programs[k - 1].name == program.name {
                    assert_eq!(report.changed, 0, "{}: a cosmetic edit rescored", case.name);
                }
                assert!(report.notifications.is_empty(), "{}", case.name);
            }
        }
        let score = Score::new(signed_config(), store.clone());
        for line in lines(events) {
            let (status, body) = send(&score, signed_post(&line)).await;
            assert_eq!(status, 200, "{}: {line}: {body}", case.name);
            for result in body["results"].as_array().into_iter().flatten() {
                if let Some(id) = result["lead"].as_str() {
                    if !ids.iter().any(|i| i == id) {
                        ids.push(id.to_owned());
                    }
                }
            }
        }
        check_sequences(case, &outbox(&store).await, &mut sequences);
        last = Some((score, store));
    }
    let (score, store) = last.unwrap();
    // the leads as the function answers them (merged ids answer with the lead they joined)
    let mut leads: Vec<Value> = Vec::new();
    for id in &ids {
        let (status, lead) = send(
            &score,
            function_url("GET", &format!("/leads/{id}"), auth.clone(), None),
        )
        .await;
        assert_eq!(status, 200, "{}: {id}: {lead}", case.name);
        if !leads.iter().any(|l| l["id"] == lead["id"]) {
            leads.push(lead);
        }
    }
    let last_program = programs.last().unwrap();
    for lead in &leads {
        assert_eq!(
            lead["rules"],
            json!({"ruleset": last_program.name, "version": last_program.version}),
            "{}",
            case.name
        );
    }
    Outcome {
        leads,
        ruleset: json!(last_program.name),
        notifications: told(&store).await,
    }
}

/// One HTTP/1.1 request to 127.0.0.1:`port`: the status and the JSON body.
fn http(port: u16, method: &str, path: &str, body: &str) -> (u16, Value) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nAuthorization: Bearer token-1\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {response:?}"));
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// `leadscore serve` on a free port over the journal in `dir`, until dropped (SIGINT, so it
/// stops as an operator stops it).
struct Serve {
    child: std::process::Child,
    port: u16,
}

impl Serve {
    fn start(dir: &Path, rules: &Path) -> Serve {
        use std::io::BufRead;
        let mut child = std::process::Command::new(leadscore_binary())
            .args(["serve", "--port", "0", "--rules"])
            .arg(rules)
            .arg("--data")
            .arg(dir.join("journal.jsonl"))
            .env_remove("LEADSCORE_WEBHOOK_SECRET")
            .env_remove("LEADSCORE_RULES")
            .env("LEADSCORE_ALLOW_UNSIGNED", "1")
            .env("LEADSCORE_API_TOKEN", "token-1")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let port = loop {
            let line = lines.next().expect("serve ended before listening").unwrap();
            if let Some(rest) = line.split("http://127.0.0.1:").nth(1) {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                break digits.parse().unwrap();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Serve { child, port }
    }

    fn stop(mut self) {
        let pid = self.child.id().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "serve stopped with {status}");
    }
}

fn run_serve(case: &Case) -> Outcome {
    let programs = programs(case);
    let dir = tempfile::tempdir().unwrap();
    let mut ids: Vec<String> = Vec::new();
    for (rules, events) in &case.steps {
        let serve = Serve::start(dir.path(), rules);
        for line in lines(events) {
            let (status, body) = http(serve.port, "POST", "/events", &line);
            assert_eq!(status, 200, "{}: {line}: {body}", case.name);
            for result in body["results"].as_array().into_iter().flatten() {
                if let Some(id) = result["lead"].as_str() {
                    if !ids.iter().any(|i| i == id) {
                        ids.push(id.to_owned());
                    }
                }
            }
        }
        serve.stop();
    }
    // what the calls and the rule changes announced, kept beside the journal as they came
    let outbox = dir.path().join("journal.jsonl.outbox.jsonl");
    let read_outbox = || -> Vec<Value> {
        let text = std::fs::read_to_string(&outbox)
            .unwrap_or_else(|e| panic!("{}: {}: {e}", case.name, outbox.display()));
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {l}: {e}", case.name)))
            .collect()
    };
    let notifications = read_outbox();
    // the leads after one more restart on the last rules: what the journal holds
    let last = &case.steps.last().unwrap().0;
    let serve = Serve::start(dir.path(), last);
    let mut leads: Vec<Value> = Vec::new();
    for id in &ids {
        let (status, lead) = http(serve.port, "GET", &format!("/leads/{id}"), "");
        assert_eq!(status, 200, "{}: {id}: {lead}", case.name);
        if !leads.iter().any(|l| l["id"] == lead["id"]) {
            leads.push(lead);
        }
    }
    serve.stop();
    // the restart wrote the outbox again from the journal: the same, in the same order
    assert_eq!(
        read_outbox(),
        notifications,
        "{}: the outbox after a restart",
        case.name
    );
    Outcome {
        leads,
        ruleset: json!(programs.last().unwrap().name),
        notifications,
    }
}

#[test]
fn every_case_on_serve() {
    for case in cases() {
        // the outbox is in commit order, not the contract's: compared as a set
        check(&case, "serve", &run_serve(&case), false);
    }
}

#[test]
fn every_case_on_replay() {
    for case in cases() {
        programs(&case);
        check(&case, "replay", &run_replay(&case), true);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_case_on_score_and_dynamodb_local() {
    let local = DynamoLocal::start(Storage::InMemory).unwrap();
    for case in cases() {
        let got = run_score(&local, &case).await;
        check(&case, "score on DynamoDB Local", &got, false);
    }
}

/// `serve` and `score` share the API and the pipeline's limits: the same malformed or
/// oversized calls get the same status and the same body from both, and nothing of them
/// is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_and_score_refuse_the_same_calls_with_the_same_answer() {
    let rules = workspace_root().join("rules/b2b-saas");
    let long_id = "u".repeat(600);
    let big = "x".repeat(360 * 1024);
    let ok = |id: &str, m: &str| {
        json!({"type": "track", "event": "Pricing Viewed", "userId": id, "messageId": m,
               "timestamp": "2026-03-01T10:00:00Z"})
    };
    let bodies: Vec<(&str, String)> = vec![
        ("not JSON", "not json".into()),
        (
            "no event name",
            json!({"type": "track", "userId": "u1", "messageId": "m0"}).to_string(),
        ),
        (
            "an unknown type",
            json!({"type": "bogus", "userId": "u1", "messageId": "m0"}).to_string(),
        ),
        ("a 600-byte userId", ok(&long_id, "m1").to_string()),
        ("a 600-byte messageId", ok("u1", &long_id).to_string()),
        (
            "a 360 KB call",
            json!({"type": "track", "event": "Pricing Viewed", "userId": "u1", "messageId": "m2",
                   "timestamp": "2026-03-01T10:00:00Z", "properties": {"blob": big}})
            .to_string(),
        ),
        (
            "a batch with one good call and one too long id",
            json!({"batch": [ok("u-ok", "m3"), ok(&long_id, "m4")]}).to_string(),
        ),
    ];

    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path(), &rules);
    let local = DynamoLocal::start(Storage::InMemory).unwrap();
    let client = local.client().await;
    let table = unique_name("limits");
    create_table(&client, &table).await.unwrap();
    let (program, _, _) = leadscore_core::rules::load(std::slice::from_ref(&rules)).unwrap();
    let store = DynamoStore::new(client, table, Arc::new(program), 400);
    let unsigned = leadscore_core::api::ApiConfig {
        allow_unsigned: true,
        api_token: Some("token-1".into()),
        ..leadscore_core::api::ApiConfig::default()
    };
    let score = Score::new(unsigned, store.clone());
    let mut refused = 0;
    for (what, body) in &bodies {
        let from_serve = http(serve.port, "POST", "/events", body);
        let from_score = send(
            &score,
            function_url(
                "POST",
                "/events",
                json!({"content-type": "application/json"}),
                Some(body),
            ),
        )
        .await;
        assert_eq!(from_serve, from_score, "{what}: serve and score differ");
        if from_score.0 == 400 {
            refused += 1;
        }
    }
    assert_eq!(
        refused,
        bodies.len() - 1,
        "every call but the batch is refused"
    );
    // the batch's good call is kept; nothing of the refused calls is
    let leads: Vec<String> = scan(&store)
        .await
        .iter()
        .filter_map(|item| match (item.get("pk"), item.get("sk")) {
            (
                Some(aws_sdk_dynamodb::types::AttributeValue::S(pk)),
                Some(aws_sdk_dynamodb::types::AttributeValue::S(sk)),
            ) if sk == "STATE" => Some(pk.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(leads, ["LEAD#u-ok"]);
    let (status, lead) = http(serve.port, "GET", "/leads/u1", "");
    assert_eq!(status, 404, "{lead}");
    serve.stop();
    let journal = std::fs::read_to_string(dir.path().join("journal.jsonl")).unwrap();
    assert_eq!(journal.lines().count(), 1, "{journal}");
}

/// A table of DynamoDB Local holding the first step of case `name`, sent to `score` under
/// the case's first rules: where the command-line tests start.
struct CaseTable {
    local: DynamoLocal,
    case: Case,
    programs: Vec<Arc<Program>>,
    client: aws_sdk_dynamodb::Client,
    table: String,
    store: DynamoStore,
}

impl CaseTable {
    async fn first_step(name: &str) -> Self {
        let local = DynamoLocal::start(Storage::InMemory).unwrap();
        let case = cases().into_iter().find(|c| c.name == name).unwrap();
        let programs = programs(&case);
        let client = local.client().await;
        let table = unique_name("cli");
        create_table(&client, &table).await.unwrap();
        let store = DynamoStore::new(client.clone(), table.clone(), Arc::clone(&programs[0]), 400);
        let score = Score::new(signed_config(), store.clone());
        for line in lines(&case.steps[0].1) {
            assert_eq!(send(&score, signed_post(&line)).await.0, 200);
        }
        CaseTable {
            local,
            case,
            programs,
            client,
            table,
            store,
        }
    }

    /// `leadscore ARGS` with the functions' configuration on this table and `rules` as
    /// `LEADSCORE_RULES`.
    fn leadscore(&self, args: &[&str], rules: &Path) -> std::process::Output {
        std::process::Command::new(leadscore_binary())
            .args(args)
            .env("LEADSCORE_TABLE", &self.table)
            .env("LEADSCORE_RULES", rules)
            .env("AWS_ENDPOINT_URL", self.local.endpoint())
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "local")
            .env("AWS_SECRET_ACCESS_KEY", "local")
            .output()
            .unwrap()
    }
}

/// `leadscore dynamodb rescore` and `export`, as an operator runs them: configured like the
/// functions (`LEADSCORE_TABLE`, `LEADSCORE_RULES`, the SDK's variables).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_rescore_and_export_from_the_command_line() {
    let at = CaseTable::first_step("insert-stage").await;
    let (case, programs) = (&at.case, &at.programs);
    let leadscore = |args: &[&str], rules: &Path| {
        let out = at.leadscore(args, rules);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let v2 = &case.steps[1].0;
    let doc: Value = serde_json::from_str(&leadscore(
        &["dynamodb", "rescore", "--segments", "3", "--format", "json"],
        v2,
    ))
    .unwrap();
    assert_eq!(
        doc["rules"],
        json!({"ruleset": "stages", "version": programs[1].version})
    );
    assert_eq!(
        (doc["leads"].clone(), doc["partial"].clone()),
        (json!(2), json!(0))
    );
    // u1 is the same under the new rules; u2 reaches pql
    assert_eq!(doc["changed"], json!(1), "{doc}");
    assert_eq!(
        doc["notifications"],
        json!([{"target": "sales", "kind": "stage_reached", "lead": "u2", "stage": "pql",
                "at": "2026-03-02T11:00:00Z", "cause": "rules_changed"}]),
        "{doc}"
    );
    // idempotent: a second run finds every lead current
    let again: Value =
        serde_json::from_str(&leadscore(&["dynamodb", "rescore", "--format", "json"], v2)).unwrap();
    assert_eq!(
        (again["changed"].clone(), again["notifications"].clone()),
        (json!(0), json!([]))
    );
    let table_text = leadscore(&["dynamodb", "rescore"], v2);
    assert!(
        table_text.contains("leads: 2\nchanged: 0\n"),
        "{table_text}"
    );

    // export: the kept calls in time order, which replay reads as any events
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("live.jsonl");
    leadscore(
        &["dynamodb", "export", "--events", file.to_str().unwrap()],
        v2,
    );
    let exported = lines(&file);
    assert_eq!(exported.len(), 4);
    let times: Vec<String> = exported
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["timestamp"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "in time order");
    let out = std::process::Command::new(leadscore_binary())
        .args(["replay", "--format", "json", "--strict", "--rules"])
        .arg(v2)
        .arg("--events")
        .arg(&file)
        .output()
        .unwrap();
    let replayed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let auth = json!({"authorization": "Bearer token-1"});
    let score2 = Score::new(
        signed_config(),
        DynamoStore::new(
            at.client.clone(),
            at.table.clone(),
            Arc::clone(&programs[1]),
            400,
        ),
    );
    for lead in replayed["leads"].as_array().unwrap() {
        let id = lead["id"].as_str().unwrap();
        let (_, mut live) = send(
            &score2,
            function_url("GET", &format!("/leads/{id}"), auth.clone(), None),
        )
        .await;
        let live = live.as_object_mut().unwrap();
        live.remove("rules");
        live.remove("latest_hits");
        assert_eq!(
            &Value::Object(live.clone()),
            lead,
            "{id}: the preview and the table agree"
        );
    }
}

/// `leadscore dynamodb publish`: a checked rule set goes into the table; `--rescore` rescores
/// every lead under it, and later commands run it whatever `LEADSCORE_RULES` says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_publish_from_the_command_line() {
    let at = CaseTable::first_step("points-change").await;
    let (case, programs) = (&at.case, &at.programs);
    let leadscore = |args: &[&str]| at.leadscore(args, &case.steps[0].0);
    let v2 = case.steps[1].0.to_str().unwrap();
    let out = leadscore(&["dynamodb", "publish", v2, "--rescore"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!("version {} as generation 1", programs[1].version)),
        "{text}"
    );
    assert!(
        text.contains("rescored: 2 leads, 2 changed, 0 partial, 1 notifications"),
        "{text}"
    );
    let again = leadscore(&["dynamodb", "publish", v2]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("already published as generation 1"));
    // rescore runs the published rules, not LEADSCORE_RULES: nothing left to do
    let doc: Value =
        serde_json::from_slice(&leadscore(&["dynamodb", "rescore", "--format", "json"]).stdout)
            .unwrap();
    assert_eq!(doc["rules"]["version"], json!(programs[1].version), "{doc}");
    assert_eq!(doc["changed"], json!(0), "{doc}");
    // rules with errors are not published
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.rules");
    std::fs::write(&broken, "ruleset \"x\"\nstage sql when reached mq1\n").unwrap();
    let out = leadscore(&["dynamodb", "publish", broken.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown stage `mq1`"));
}

/// Records written by position, before states were stored by name (an older version's
/// table): `leadscore dynamodb rescore` refuses to guess what their slots mean and says how
/// to read them; `--previous-rules` reads them with the rules that wrote them, and the
/// leads are rescored by name, as if they had been stored by name all along: the
/// insert-stage case then ends as on every implementation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_stored_by_position_are_read_with_the_previous_rules() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let at = CaseTable::first_step("insert-stage").await;
    let (case, programs, client, table) = (&at.case, &at.programs, &at.client, &at.table);
    let v1 = &at.store;
    // each lead's state as an older version wrote it: slots by position, no names, no
    // announced set, no rules version
    let mut rewritten = 0;
    for mut item in scan(v1).await {
        let (Some(AttributeValue::S(sk)), Some(AttributeValue::S(text))) =
            (item.get("sk"), item.get("state"))
        else {
            continue;
        };
        assert_eq!(sk, "STATE");
        let stored: leadscore_rules::StoredState = serde_json::from_str(text).unwrap();
        let mut positional = serde_json::to_value(stored.into_state(&programs[0])).unwrap();
        let fields = positional.as_object_mut().unwrap();
        assert!(fields["reached"].is_array(), "{positional}");
        fields.remove("announced");
        fields.remove("hold_until");
        item.insert("state".into(), AttributeValue::S(positional.to_string()));
        item.remove("rules_version");
        client
            .put_item()
            .table_name(table)
            .set_item(Some(item))
            .send()
            .await
            .unwrap();
        rewritten += 1;
    }
    assert_eq!(rewritten, 2, "u1 and u2");
    let leadscore = |args: &[&str]| at.leadscore(args, &case.steps[1].0);
    let out = leadscore(&["dynamodb", "rescore", "--format", "json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("written by position under the rules `stages`")
            && stderr.contains("--previous-rules"),
        "{stderr}"
    );
    let v1_rules = case.steps[0].0.to_str().unwrap();
    let out = leadscore(&[
        "dynamodb",
        "rescore",
        "--format",
        "json",
        "--previous-rules",
        v1_rules,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    // u2 reaches the new stage; u1's state reads the same by name as rescored
    assert_eq!(
        (doc["leads"].clone(), doc["changed"].clone()),
        (json!(2), json!(1)),
        "{doc}"
    );
    // both records are written again, by name, under the new rules' version
    let v2 = DynamoStore::new(client.clone(), table.clone(), Arc::clone(&programs[1]), 400);
    let mut by_name = 0;
    for item in scan(&v2).await {
        if let Some(AttributeValue::S(text)) = item.get("state") {
            let state: Value = serde_json::from_str(text).unwrap();
            assert!(state["reached"].is_object(), "{state}");
            assert_eq!(
                item.get("rules_version"),
                Some(&AttributeValue::S(programs[1].version.clone()))
            );
            by_name += 1;
        }
    }
    assert_eq!(by_name, 2);
    // the functions on the new rules take the leads on from there
    let score = Score::new(signed_config(), v2.clone());
    for line in lines(&case.steps[1].1) {
        assert_eq!(send(&score, signed_post(&line)).await.0, 200);
    }
    let auth = json!({"authorization": "Bearer token-1"});
    let mut leads = Vec::new();
    for id in ["u1", "u2"] {
        let (status, lead) = send(
            &score,
            function_url("GET", &format!("/leads/{id}"), auth.clone(), None),
        )
        .await;
        assert_eq!(status, 200, "{id}: {lead}");
        leads.push(lead);
    }
    let got = Outcome {
        leads,
        ruleset: json!(programs[1].name),
        notifications: told(&v2).await,
    };
    check(case, "score over records stored by position", &got, false);
}
