//! How the three function binaries start, run as Lambda runs them (the built binaries, their
//! configuration in the environment) against DynamoDB Local: one JSON start line at `info`
//! naming the rules, table and targets; never the example rules unless told; one structured
//! error line, and status 1, when they cannot start.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use common::binary;
use leadscore_core::store::dynamo::{create_table, DynamoStore};
use leadscore_tests::{unique_name, workspace_root, DynamoLocal, Storage};
use serde_json::Value;
use std::sync::Arc;

const FUNCTIONS: [&str; 3] = ["score", "notify", "decay"];

/// Starts `function` with `env` (and the table's endpoint) and returns its exit status and
/// its JSON log lines. Outside Lambda the runtime stops it right after its start line.
fn start(local: &DynamoLocal, function: &str, env: &[(&str, &str)]) -> (Option<i32>, Vec<Value>) {
    let mut cmd = std::process::Command::new(binary(function));
    for (key, _) in std::env::vars() {
        if key.starts_with("LEADSCORE_") || key.starts_with("AWS_") || key == "RUST_LOG" {
            cmd.env_remove(key);
        }
    }
    cmd.current_dir(workspace_root())
        .env("AWS_ENDPOINT_URL", local.endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .env("RUST_BACKTRACE", "0")
        // what each needs besides the rules: a secret for score, a bus for notify
        .env("LEADSCORE_WEBHOOK_SECRET", "a-secret")
        .env("LEADSCORE_EVENT_BUS", "leadscore");
    for (key, value) in env {
        cmd.env(key, value);
    }
    let out = cmd.output().unwrap();
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{function}: a log line that is not JSON ({e}): {line}"))
        })
        .collect();
    (out.status.code(), lines)
}

fn fields(line: &Value) -> &Value {
    &line["fields"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_function_names_its_rules_at_start_and_never_runs_the_example_rules_untold() {
    let local = DynamoLocal::start(Storage::InMemory).unwrap();
    let client = local.client().await;
    let table = unique_name("start");
    create_table(&client, &table).await.unwrap();
    let table = table.as_str();

    for function in FUNCTIONS {
        // no published rules, no LEADSCORE_RULES: no start, one error line
        let (status, lines) = start(&local, function, &[("LEADSCORE_TABLE", table)]);
        assert_eq!(status, Some(1), "{function}: {lines:?}");
        assert_eq!(lines.len(), 1, "{function}: one line: {lines:?}");
        assert_eq!(lines[0]["level"], "ERROR", "{function}: {lines:?}");
        let error = fields(&lines[0])["error"].as_str().unwrap();
        assert!(
            error.contains("no rules to run")
                && error.contains(&format!("`{table}`"))
                && error.contains("LEADSCORE_RULES"),
            "{function}: {error}"
        );

        // the configured rules: one start line at info (no RUST_LOG) naming them
        for (rules, ruleset) in [("rules/b2b-saas", "acme-b2b"), ("builtin", "acme-b2b")] {
            let (_, lines) = start(
                &local,
                function,
                &[("LEADSCORE_TABLE", table), ("LEADSCORE_RULES", rules)],
            );
            let ready: Vec<&Value> = lines
                .iter()
                .filter(|l| fields(l)["message"] == format!("{function} ready"))
                .collect();
            assert_eq!(ready.len(), 1, "{function} with {rules}: {lines:?}");
            assert_eq!(ready[0]["level"], "INFO");
            let ready = fields(ready[0]);
            assert_eq!(ready["function"], function);
            assert_eq!(ready["ruleset"], ruleset, "{ready}");
            assert_eq!(ready["version"], "375fae983d674f1b", "{ready}");
            assert_eq!(ready["generation"], 0, "{ready}");
            assert_eq!(ready["table"], table, "{ready}");
            assert_eq!(
                ready["targets"], "marketing,growth,sales,revenue",
                "{ready}"
            );
        }

        // a missing table: one error line naming the cause, no debug dump
        let (status, lines) = start(
            &local,
            function,
            &[
                ("LEADSCORE_TABLE", "no-such-table"),
                ("LEADSCORE_RULES", "builtin"),
            ],
        );
        assert_eq!(status, Some(1), "{function}: {lines:?}");
        assert_eq!(lines.len(), 1, "{function}: {lines:?}");
        let error = fields(&lines[0])["error"].as_str().unwrap();
        assert!(error.contains("non-existent table"), "{function}: {error}");
    }

    // published rules come first, whatever LEADSCORE_RULES says
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.rules");
    std::fs::write(
        &path,
        "ruleset \"published\"\nscore \"Ping\" +10 on \"Ping\"\nstage mql when engagement >= 10\nnotify crm when reached mql\n",
    )
    .unwrap();
    let (program, _, files) = leadscore_core::rules::load(&[path]).unwrap();
    let store = DynamoStore::new(client.clone(), table, Arc::new(program.clone()), 400);
    store.publish(&program, &files).await.unwrap();
    for function in FUNCTIONS {
        for env in [
            vec![("LEADSCORE_TABLE", table)],
            vec![("LEADSCORE_TABLE", table), ("LEADSCORE_RULES", "builtin")],
        ] {
            let (_, lines) = start(&local, function, &env);
            let ready = lines
                .iter()
                .find(|l| fields(l)["message"] == format!("{function} ready"))
                .unwrap_or_else(|| panic!("{function}: {lines:?}"));
            assert_eq!(fields(ready)["ruleset"], "published");
            assert_eq!(fields(ready)["generation"], 1);
            assert_eq!(fields(ready)["targets"], "crm");
        }
    }
}
