//! Tests of `leadscore test` (rule tests beside the rules: output, `file:line` failures, exit
//! status) and `leadscore explain` (points per event, refused awards, stage conditions, JSON,
//! merged ids, unknown leads), on the shipped rules and events.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use assert_cmd::Command;
use leadscore_rules::eval::{Ctx, LeadState};
use leadscore_rules::explain::{explain_pred, show_pred};
use leadscore_rules::time::parse_rfc3339;
use leadscore_rules::{compile, CallKind, Event, SourceFile};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn acme() -> PathBuf {
    repo_root().join("rules/b2b-saas")
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run_in(dir: Option<&Path>, args: &[&str]) -> Run {
    let mut cmd = Command::cargo_bin("leadscore").unwrap();
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    let out = cmd.args(args).output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn run(args: &[&str]) -> Run {
    run_in(None, args)
}

fn explain(lead: &str, extra: &[&str]) -> Run {
    let rules = acme();
    let events = acme().join("events.jsonl");
    let mut args = vec![
        "explain",
        "--rules",
        rules.to_str().unwrap(),
        "--events",
        events.to_str().unwrap(),
        "--lead",
        lead,
    ];
    args.extend_from_slice(extra);
    run(&args)
}

fn explain_json(lead: &str) -> Value {
    let r = explain(lead, &["--format", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    serde_json::from_str(&r.stdout).unwrap()
}

fn replay_leads() -> Vec<Value> {
    let rules = acme();
    let events = acme().join("events.jsonl");
    let r = run(&[
        "replay",
        "--rules",
        rules.to_str().unwrap(),
        "--events",
        events.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let doc: Value = serde_json::from_str(&r.stdout).unwrap();
    doc["leads"].as_array().unwrap().clone()
}

// ---------------------------------------------------------------------------------------------
// leadscore test
// ---------------------------------------------------------------------------------------------

#[test]
fn shipped_rule_tests_pass() {
    let r = run(&["test", acme().to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("acme.test\n"), "{}", r.stdout);
    assert!(r
        .stdout
        .contains("ok   VP at a mid-size company who asks for a demo becomes SQL"));
    assert!(r
        .stdout
        .contains("ok   Pricing page counts at most 3 times in 7 days"));
    assert!(r.stdout.contains(" passed, 0 failed"), "{}", r.stdout);
    assert!(!r.stdout.contains("FAIL"));
}

#[test]
fn default_path_is_rules_folder() {
    let r = run_in(Some(&repo_root()), &["test"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("rules/b2b-saas/acme.test"),
        "{}",
        r.stdout
    );
}

fn tempdir_with_rules(test_text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(acme().join("acme.rules"), dir.path().join("acme.rules")).unwrap();
    std::fs::write(dir.path().join("acme.test"), test_text).unwrap();
    dir
}

#[test]
fn failing_test_reports_file_line_expected_and_got() {
    let dir = tempdir_with_rules(
        r#"test "passes"
  at 2026-01-01T09:00:00Z page path = "/pricing"
  expect engagement = 10
test "wrong numbers"
  at 2026-01-01T09:00:00Z page path = "/pricing"
  expect engagement = 12, stage = "mql"
  expect notified sales
"#,
    );
    let r = run(&["test", dir.path().to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("ok   passes"));
    assert!(r.stdout.contains("FAIL wrong numbers"));
    let file = dir.path().join("acme.test");
    let file = file.display();
    assert!(
        r.stdout
            .contains(&format!("{file}:6: expected engagement = 12, got 10")),
        "{}",
        r.stdout
    );
    assert!(r
        .stdout
        .contains(&format!("{file}:6: expected stage = \"mql\", got none")));
    assert!(r.stdout.contains(&format!(
        "{file}:7: expected notified sales, got no notifications"
    )));
    assert!(r.stdout.contains("1 passed, 1 failed"));
}

#[test]
fn test_file_with_mistakes_is_exit_2_with_line_and_column() {
    let dir = tempdir_with_rules("test \"x\"\n  at yesterday page\n  expect reached mqll\n");
    let r = run(&["test", dir.path().join("acme.test").to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("acme.test:2:6: error: `yesterday` is not an RFC 3339 time"),
        "{}",
        r.stderr
    );
    // names are checked against the rules once the file parses
    let dir = tempdir_with_rules("test \"x\"\n  expect reached mqll\n");
    let r = run(&["test", dir.path().join("acme.rules").to_str().unwrap()]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("acme.test:2:10: error: unknown stage `mqll`; did you mean `mql`?"),
        "{}",
        r.stderr
    );
}

#[test]
fn missing_paths_and_no_tests_are_usage_errors() {
    let r = run(&["test", "/no/such/rules"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("`/no/such/rules`"), "{}", r.stderr);
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(acme().join("acme.rules"), dir.path().join("acme.rules")).unwrap();
    let r = run(&["test", dir.path().to_str().unwrap()]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("no `.test` files found"), "{}", r.stderr);
}

// ---------------------------------------------------------------------------------------------
// leadscore explain
// ---------------------------------------------------------------------------------------------

#[test]
fn explain_shows_points_refusals_and_stages() {
    // usr_hiro views the pricing page a fourth time within 7 days
    let r = explain("usr_hiro", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let out = &r.stdout;
    assert!(out.starts_with("lead `usr_hiro`\n"), "{out}");
    assert!(
        out.contains("2026-01-23T07:45:00Z  page /pricing  (line 42)"),
        "{out}"
    );
    assert!(out.contains("    +10 Pricing page\n"));
    assert!(out.contains("    +5 Enterprise pricing\n"));
    assert!(
        out.contains("    refused: limit +10 Pricing page (3 awards already in the last 1w)"),
        "{out}"
    );
    assert!(out.contains("    fit: 0 -> 15\n"));
    assert!(out.contains("    +25 Contact sales\n"));
    assert!(out.contains("    reached mql\n"));
    assert!(out.contains("decay: engagement 10 -> 9.72"), "{out}");
    // each stage with its condition, part by part
    assert!(
        out.contains("  mql: reached at 2026-01-27T17:34:00Z"),
        "{out}"
    );
    assert!(
        out.contains("      true  engagement >= 40  (engagement = 57.86)"),
        "{out}"
    );
    assert!(out.contains("  pql: not reached"));
    assert!(
        out.contains("      false lead.plan == \"trial\"  (lead.plan = missing)"),
        "{out}"
    );
    assert!(out.contains("count(\"Feature Used\") within 2w >= 10"));
}

#[test]
fn explain_json_matches_replay_for_every_lead() {
    let leads = replay_leads();
    assert!(!leads.is_empty(), "replay gave no leads to explain");
    for lead in leads {
        let id = lead["id"].as_str().unwrap();
        let x = explain_json(id);
        assert_eq!(x["lead"], id);
        assert_eq!(x["final"], lead, "{id}");
        let steps = x["steps"].as_array().unwrap();
        assert_eq!(steps.len() as u64, lead["events"].as_u64().unwrap(), "{id}");
        let last = steps.last().unwrap();
        for k in ["score", "fit", "engagement"] {
            assert_eq!(last[k], lead[k], "{id} {k}");
        }
        for stage in x["stages"].as_array().unwrap() {
            let name = stage["stage"].as_str().unwrap();
            assert_eq!(
                stage["reached"],
                lead["reached"].get(name).cloned().unwrap_or(Value::Null)
            );
            if !stage["reached"].is_null() && stage["note"].is_null() {
                assert_eq!(stage["condition"]["holds"], true, "{id} {name}");
            }
            if stage["reached"].is_null() {
                assert_eq!(stage["condition"]["holds"], false, "{id} {name}");
            }
        }
    }
}

#[test]
fn explain_json_shape() {
    let x = explain_json("usr_ann");
    let steps = x["steps"].as_array().unwrap();
    let pricing = steps
        .iter()
        .find(|s| s["event"] == "page /pricing")
        .unwrap();
    assert_eq!(pricing["type"], "page");
    assert_eq!(pricing["line"], 4);
    assert_eq!(
        pricing["happened"][0],
        serde_json::json!({"kind": "scored", "rule": "Pricing page", "points": 10, "written": 10})
    );
    let sql = x["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stage"] == "sql")
        .unwrap();
    assert_eq!(sql["reached"], "2026-01-22T10:30:00Z");
    let parts = sql["condition"]["parts"].as_array().unwrap();
    assert_eq!(parts[0]["condition"], "reached mql");
    assert_eq!(parts[0]["holds"], true);
    let converted: Vec<&Value> = steps
        .iter()
        .flat_map(|s| s["happened"].as_array().unwrap())
        .filter(|h| h["kind"] == "converted")
        .collect();
    assert!(converted
        .iter()
        .any(|h| h["conversion"] == "Purchase" && h["first"] == true));
}

#[test]
fn explain_follows_merged_ids() {
    let r = explain("3f9c2e1a-5b7d-4c8e-9a21-6d0f4b8e7c15", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r
        .stdout
        .starts_with("lead `3f9c2e1a-5b7d-4c8e-9a21-6d0f4b8e7c15` (merged into `usr_dan`)"));
    assert!(
        r.stdout.contains("note: identities merged at"),
        "{}",
        r.stdout
    );
}

#[test]
fn unknown_lead_is_exit_2_with_did_you_mean() {
    let r = explain("usr_an", &[]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("error: no lead `usr_an`"), "{}", r.stderr);
    assert!(r.stderr.contains("did you mean `usr_ann`?"), "{}", r.stderr);
    let r = explain("zzzzzzzz", &[]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("leads in the file include `"),
        "{}",
        r.stderr
    );
    assert!(r.stdout.is_empty());
}

#[test]
fn explain_missing_events_file_is_exit_2() {
    let rules = acme();
    let r = run(&[
        "explain",
        "--rules",
        rules.to_str().unwrap(),
        "--events",
        "/no/such.jsonl",
        "--lead",
        "x",
    ]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("cannot read `/no/such.jsonl`"));
}

// ---------------------------------------------------------------------------------------------
// conditions printed and explained (leadscore_rules::explain)
// ---------------------------------------------------------------------------------------------

#[test]
fn conditions_print_as_written_and_explain_each_leaf() {
    let text = r#"
ruleset "t"
fit "Senior" +10 when lead.title matches /vp/ or lead.role != "student"
score "Demo" +40 on "Form Submitted" where form == "demo"
stage mql when engagement >= 40 and fit >= 10 and lead.plan == "trial"
stage pql when count("Feature Used" where feature in ["a", "b"]) within 14d >= 10
stage sql when reached mql and (event "Form Submitted" where form == "demo" or score >= 100)
stage big when sum(rows of "Data Imported") within 7d between 10 and 20 and not (lead.x exists)
"#;
    let compiled = compile(&[SourceFile {
        name: "t.rules".into(),
        text: text.into(),
    }]);
    let program = compiled.program.unwrap();
    let shown: Vec<String> = program
        .stages
        .iter()
        .map(|s| show_pred(&program, &s.when))
        .collect();
    assert_eq!(
        shown[0],
        "engagement >= 40 and fit >= 10 and lead.plan == \"trial\""
    );
    assert_eq!(
        shown[1],
        "count(\"Feature Used\" where feature in [\"a\", \"b\"]) within 2w >= 10"
    );
    assert_eq!(
        shown[2],
        "reached mql and (event \"Form Submitted\" where form == \"demo\" or score >= 100)"
    );
    assert_eq!(
        shown[3],
        "sum(rows of \"Data Imported\") within 1w between 10 and 20 and not lead.x exists"
    );
    assert_eq!(
        show_pred(&program, &program.fits[0].when),
        "lead.title matches /vp/ or lead.role != \"student\""
    );

    let mut state = LeadState::new(&program);
    state.engagement = 45.0;
    state.fit = 10.0;
    let event = Event {
        kind: CallKind::Track,
        name: "Form Submitted".into(),
        time: parse_rfc3339("2026-01-01T00:00:00Z").unwrap(),
        properties: serde_json::from_str(r#"{"form": "demo"}"#).unwrap(),
        source: None,
    };
    let ctx = Ctx::for_state(&program, &state, Some(&event), event.time);
    let node = explain_pred(&ctx, &program, &program.stages[0].when);
    assert!(!node.holds);
    let leaves = node.leaves();
    assert_eq!(leaves.len(), 3);
    assert!(leaves[0].holds);
    assert_eq!(leaves[0].values[0].name, "engagement");
    assert_eq!(leaves[0].values[0].value, Some(serde_json::json!(45.0)));
    assert!(!leaves[2].holds);
    assert_eq!(leaves[2].values[0].name, "lead.plan");
    assert_eq!(leaves[2].values[0].value, None);

    let node = explain_pred(&ctx, &program, &program.stages[2].when);
    let leaves = node.leaves();
    assert_eq!(leaves.len(), 3);
    assert_eq!(leaves[0].text, "reached mql");
    assert!(!leaves[0].holds);
    assert_eq!(
        leaves[1].text,
        "event \"Form Submitted\" where form == \"demo\""
    );
    assert!(leaves[1].holds);
    assert_eq!(leaves[2].values[0].value, Some(serde_json::json!(55.0)));
}
