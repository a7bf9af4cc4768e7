//! Tests of `leadscore import csv`, `leadscore report` and `leadscore compare` on the real
//! binary: exact import lines, report numbers checked by hand against the shipped example, the
//! HTML charts, and a comparison of two rule sets with a known difference.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use assert_cmd::Command;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

fn leadscore() -> Command {
    Command::cargo_bin("leadscore").unwrap()
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn acme() -> (PathBuf, PathBuf) {
    let dir = root().join("rules/b2b-saas");
    (dir.clone(), dir.join("events.jsonl"))
}

fn stdout_json(cmd: &mut Command) -> Value {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

// ---------------------------------------------------------------------------------------------
// import csv
// ---------------------------------------------------------------------------------------------

#[test]
fn import_csv_writes_identify_and_convert_calls() {
    let file = fixture("leads.csv");
    let out = leadscore()
        .args(["import", "csv"])
        .arg(&file)
        .args(["--id", "Lead ID", "--source", "Lead Source"])
        .args(["--convert", "Converted", "--timestamp", "Signed Up At"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let expected = [
        r#"{"type":"identify","messageId":"import:L1:identify","userId":"L1","timestamp":"2026-01-05T10:00:00Z","traits":{"lead_id":"L1","full_name":"Ann Lee","lead_source":"Google","total_time_spent_on_website":1200,"converted":"Yes","signed_up_at":"2026-01-05T10:00:00Z","zip":"02139"},"context":{"campaign":{"source":"Google"}}}"#,
        r#"{"type":"track","event":"Converted","messageId":"import:L1:convert","userId":"L1","timestamp":"2026-01-05T10:00:01Z"}"#,
        r#"{"type":"identify","messageId":"import:L2:identify","userId":"L2","timestamp":"2026-01-06T09:30:00Z","traits":{"lead_id":"L2","full_name":"Bob, Jr.","lead_source":"Reference","total_time_spent_on_website":0,"converted":"no","signed_up_at":"2026-01-06 09:30:00"},"context":{"campaign":{"source":"Reference"}}}"#,
        r#"{"type":"identify","messageId":"import:L3:identify","userId":"L3","timestamp":"2026-01-07T00:00:00Z","traits":{"lead_id":"L3","full_name":"Carla","total_time_spent_on_website":350.5,"converted":"TRUE","signed_up_at":"2026-01-07","zip":10001}}"#,
        r#"{"type":"track","event":"Converted","messageId":"import:L3:convert","userId":"L3","timestamp":"2026-01-07T00:00:01Z"}"#,
    ];
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines, expected);
    // bad rows are reported with their line and skipped
    let stderr = String::from_utf8(out.stderr).unwrap();
    let name = file.display();
    let expected_err = format!(
        "{name}:5: empty id in column `Lead ID`\n\
         {name}:6: `not a time` in column `Signed Up At` is not a time (e.g. 2026-01-01T00:00:00Z)\n\
         {name}:7: id `L1` already imported from line 2\n"
    );
    assert_eq!(stderr, expected_err);
}

#[test]
fn import_csv_at_and_convert_event() {
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("calls.jsonl");
    let out = leadscore()
        .args(["import", "csv"])
        .arg(fixture("compare/leads.csv"))
        .args([
            "--id",
            "id",
            "--convert",
            "paid",
            "--convert-event",
            "Order Paid",
        ])
        .args(["--at", "2026-02-02T00:00:00Z", "--out"])
        .arg(&out_file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "imported 5 leads (3 converted), skipped 0 rows\n"
    );
    let text = std::fs::read_to_string(&out_file).unwrap();
    let calls: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(calls.len(), 8);
    assert_eq!(
        calls[0],
        json!({"type": "identify", "messageId": "import:u1:identify", "userId": "u1",
               "timestamp": "2026-02-02T00:00:00Z",
               "traits": {"id": "u1", "source": "Google", "total_time_spent_on_website": 900,
                          "paid": 1}})
    );
    assert_eq!(
        calls[1],
        json!({"type": "track", "event": "Order Paid", "messageId": "import:u1:convert",
               "userId": "u1", "timestamp": "2026-02-02T00:00:01Z"})
    );
    // `yes` converts too; `0` does not
    let converted: Vec<&str> = calls
        .iter()
        .filter(|c| c["type"] == "track")
        .map(|c| c["userId"].as_str().unwrap())
        .collect();
    assert_eq!(converted, ["u1", "u3", "u5"]);
}

#[test]
fn import_csv_usage_errors_exit_2() {
    let file = fixture("leads.csv");
    let out = leadscore()
        .args(["import", "csv"])
        .arg(&file)
        .args(["--id", "Prospect ID", "--at", "2026-01-01T00:00:00Z"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("has no column `Prospect ID` (for `--id`)"),
        "{err}"
    );
    assert!(out.stdout.is_empty());

    let out = leadscore()
        .args(["import", "csv"])
        .arg(&file)
        .args(["--id", "Lead ID"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("pass `--timestamp COLUMN` or `--at TIME`"),
        "{err}"
    );

    let out = leadscore()
        .args(["import", "csv"])
        .arg(&file)
        .args(["--id", "Lead ID", "--at", "soon"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("`--at soon` is not an RFC 3339 time"));
}

// ---------------------------------------------------------------------------------------------
// report
// ---------------------------------------------------------------------------------------------

#[test]
fn report_json_on_the_acme_example() {
    let (rules, events) = acme();
    let doc = stdout_json(
        leadscore()
            .arg("report")
            .arg("--rules")
            .arg(&rules)
            .arg("--events")
            .arg(&events)
            .args(["--format", "json", "--by", "plan"]),
    );
    assert_eq!(doc["ruleset"], "acme-b2b");
    // 9 leads (8 known users and one anonymous visitor), 4 of them converted
    assert_eq!(
        doc["overall"],
        json!({"leads": 9, "converted": 4, "rate": 44.44, "ci95": [18.88, 73.33]})
    );
    // first touch: linkedin = carla, erin, hiro and the anonymous visitor, none converted;
    // google = bob (Signup, Purchase), dan (Demo booked), grace (Signup);
    // newsletter = ann (Purchase) and frank (none)
    assert_eq!(
        doc["by_source"],
        json!([
            {"source": "linkedin", "leads": 4, "converted": 0, "rate": 0.0, "ci95": [0.0, 48.99], "small": true},
            {"source": "google", "leads": 3, "converted": 3, "rate": 100.0, "ci95": [43.85, 100.0], "small": true},
            {"source": "newsletter", "leads": 2, "converted": 1, "rate": 50.0, "ci95": [9.45, 90.55], "small": true}
        ])
    );
    let stages: Vec<(String, u64, u64)> = doc["by_stage"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["stage"].as_str().unwrap().to_string(),
                s["leads"].as_u64().unwrap(),
                s["converted"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        stages,
        [
            ("mql".to_string(), 4, 3),
            ("pql".to_string(), 1, 1),
            ("sql".to_string(), 2, 2),
            ("service_qualified".to_string(), 1, 0)
        ]
    );
    assert_eq!(doc["by_stage"][0]["share_of_leads"], 44.44);
    assert_eq!(doc["by"]["property"], "plan");
    let values: Vec<&Value> = doc["by"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| &g["value"])
        .collect();
    assert_eq!(
        values,
        [
            &json!("business"),
            &json!("team"),
            &json!("trial"),
            &Value::Null
        ]
    );
    assert_eq!(doc["by"]["groups"][0]["p_value"], Value::Null);
    assert_eq!(doc["time_to_convert"]["converted"], 4);
    let weeks: u64 = doc["leads_per_week"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["leads"].as_u64().unwrap())
        .sum();
    assert_eq!(weeks, 9);
    assert_eq!(doc["leads_per_week"][0]["week"], "2026-W03");
    let hist: u64 = doc["quality"]["histogram"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["leads"].as_u64().unwrap())
        .sum();
    assert_eq!(hist, 9);
    assert_eq!(doc["quality"]["score_max"], 112.29);
    assert!(doc.get("cost").is_none());
}

#[test]
fn report_median_time_to_convert_matches_replay() {
    let (rules, events) = acme();
    let replay = stdout_json(
        leadscore()
            .arg("replay")
            .arg("--rules")
            .arg(&rules)
            .arg("--events")
            .arg(&events)
            .args(["--format", "json"]),
    );
    let mut firsts: Vec<i64> = replay["leads"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| {
            l["conversions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["seconds_to_convert"].as_i64().unwrap())
                .min()
        })
        .collect();
    firsts.sort_unstable();
    assert_eq!(firsts.len(), 4);
    #[allow(clippy::cast_precision_loss)]
    let median = (firsts[1] + firsts[2]) as f64 / 2.0;
    let doc = stdout_json(
        leadscore()
            .arg("report")
            .arg("--rules")
            .arg(&rules)
            .arg("--events")
            .arg(&events)
            .args(["--format", "json"]),
    );
    assert_eq!(doc["time_to_convert"]["median_seconds"], json!(median));
}

#[test]
fn report_cost_per_lead_and_conversion() {
    let (rules, events) = acme();
    let dir = tempfile::tempdir().unwrap();
    let spend = dir.path().join("spend.csv");
    std::fs::write(
        &spend,
        "source,spend\ngoogle,300\nlinkedin,\"1,000\"\nbing,50\n",
    )
    .unwrap();
    let doc = stdout_json(
        leadscore()
            .arg("report")
            .arg("--rules")
            .arg(&rules)
            .arg("--events")
            .arg(&events)
            .arg("--spend")
            .arg(&spend)
            .args(["--format", "json"]),
    );
    assert_eq!(
        doc["cost"],
        json!({
            "total_spend": 1350.0, "cost_per_lead": 150.0, "cost_per_conversion": 337.5,
            "by_source": [
                {"source": "google", "spend": 300.0, "leads": 3, "converted": 3,
                 "cost_per_lead": 100.0, "cost_per_conversion": 100.0},
                {"source": "linkedin", "spend": 1000.0, "leads": 4, "converted": 0,
                 "cost_per_lead": 250.0, "cost_per_conversion": null},
                {"source": "bing", "spend": 50.0, "leads": 0, "converted": 0,
                 "cost_per_lead": null, "cost_per_conversion": null}
            ]
        })
    );
    // a bad spend row: reported with its line, exit 2
    std::fs::write(&spend, "source,spend\ngoogle,lots\n").unwrap();
    let out = leadscore()
        .arg("report")
        .arg("--rules")
        .arg(&rules)
        .arg("--events")
        .arg(&events)
        .arg("--spend")
        .arg(&spend)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        format!(
            "{}:2: spend `lots` is not a number of at least 0\n",
            spend.display()
        )
    );
}

#[test]
fn report_table_and_html() {
    let (rules, events) = acme();
    let out = leadscore()
        .arg("report")
        .arg("--rules")
        .arg(&rules)
        .arg("--events")
        .arg(&events)
        .output()
        .unwrap();
    assert!(out.status.success());
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(
        table.contains("9 leads, 4 converted: conversion rate 44.44% (95% CI 18.88–73.33%)"),
        "{table}"
    );
    assert!(
        table.contains("  google (few)          3          3  100%   43.85–100%"),
        "{table}"
    );

    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("report.html");
    let out = leadscore()
        .arg("report")
        .arg("--rules")
        .arg(&rules)
        .arg("--events")
        .arg(&events)
        .args(["--format", "html", "--out"])
        .arg(&page)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    for chart in ["funnel", "by-source", "scores"] {
        assert_eq!(
            html.matches(&format!("<svg data-chart=\"{chart}\""))
                .count(),
            1,
            "{chart}"
        );
    }
    // self-contained: no script, no external file
    assert!(!html.contains("<script"));
    assert!(!html.contains("src="));
    assert!(!html.contains("<link"));
    // the funnel names every stage; the source chart every source, each under 30 leads
    // marked `(few)`
    for name in ["mql", "pql", "sql", "service_qualified"] {
        assert!(html.contains(&format!(">{name}</text>")), "{name}");
    }
    for name in ["linkedin", "google", "newsletter"] {
        assert!(html.contains(&format!(">{name} (few)</text>")), "{name}");
    }
}

// ---------------------------------------------------------------------------------------------
// compare
// ---------------------------------------------------------------------------------------------

fn compare_events(dir: &Path) -> PathBuf {
    let events = dir.join("events.jsonl");
    let out = leadscore()
        .args(["import", "csv"])
        .arg(fixture("compare/leads.csv"))
        .args(["--id", "id", "--source", "source", "--convert", "paid"])
        .args(["--at", "2026-02-02T00:00:00Z", "--out"])
        .arg(&events)
        .output()
        .unwrap();
    assert!(out.status.success());
    events
}

#[test]
fn compare_two_rule_sets() {
    let dir = tempfile::tempdir().unwrap();
    let events = compare_events(dir.path());
    // time on site >= 600 qualifies u1, u2, u5; a referral qualifies u3, u5;
    // u1, u3 and u5 converted
    let doc = stdout_json(
        leadscore()
            .arg("compare")
            .arg("--rules")
            .arg(fixture("compare/time-on-site.rules"))
            .arg("--rules")
            .arg(fixture("compare/referrals.rules"))
            .arg("--events")
            .arg(&events)
            .args(["--format", "json"]),
    );
    assert_eq!(doc["leads"], 5);
    assert_eq!(doc["stage"], Value::Null);
    assert_eq!(doc["sets"][0]["ruleset"], "time-on-site");
    assert_eq!(
        doc["sets"][0]["reached"],
        json!([{"stage": "mql", "leads": 3}])
    );
    assert_eq!(
        doc["sets"][1]["reached"],
        json!([{"stage": "mql", "leads": 2}])
    );
    assert_eq!(doc["sets"][0]["qualified"]["converted"], 2);
    assert_eq!(doc["sets"][0]["qualified"]["rate"], 66.67);
    assert_eq!(doc["sets"][1]["qualified"]["rate"], 100.0);
    assert_eq!(doc["sets"][0]["found_of_converted"], 66.67);
    assert_eq!(doc["sets"][1]["found_of_converted"], 66.67);
    assert_eq!(doc["both"]["ids"], json!(["u5"]));
    assert_eq!(doc["only_first"]["ids"], json!(["u1", "u2"]));
    assert_eq!(doc["only_first"]["converted"], 1);
    assert_eq!(doc["only_second"]["ids"], json!(["u3"]));
    assert_eq!(doc["neither"]["ids"], json!(["u4"]));
    assert_eq!(doc["conversions_differ"], 0);

    let out = leadscore()
        .arg("compare")
        .arg("--rules")
        .arg(fixture("compare/time-on-site.rules"))
        .arg("--rules")
        .arg(fixture("compare/referrals.rules"))
        .arg("--events")
        .arg(&events)
        .output()
        .unwrap();
    assert!(out.status.success());
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(
        table.contains("  A only            2  1 of 2 (50%)   u1, u2"),
        "{table}"
    );
    assert!(
        table.contains("higher conversion among qualified leads: B"),
        "{table}"
    );
}

#[test]
fn compare_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let events = compare_events(dir.path());
    let out = leadscore()
        .arg("compare")
        .arg("--rules")
        .arg(fixture("compare/time-on-site.rules"))
        .arg("--rules")
        .arg(fixture("compare/referrals.rules"))
        .arg("--events")
        .arg(&events)
        .args(["--stage", "sql"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "error: rule set `time-on-site` has no stage `sql`\n"
    );
    let out = leadscore()
        .arg("compare")
        .arg("--rules")
        .arg(fixture("compare/time-on-site.rules"))
        .arg("--events")
        .arg(&events)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

// ---------------------------------------------------------------------------------------------
// the real data set: the X Education export named by `LEADS_CSV`, which must be set
// ---------------------------------------------------------------------------------------------

#[test]
fn x_education_import_and_report() {
    let csv = std::path::PathBuf::from(std::env::var("LEADS_CSV").unwrap_or_default());
    assert!(
        csv.is_file(),
        "set `LEADS_CSV` to the X Education lead export (`Leads.csv` of the public \"Lead \
         Scoring\" data set; `.ci/run` sets it to ../shared/data/x-education-leads.csv); now \
         `{}`",
        csv.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("leads.jsonl");
    let out = leadscore()
        .args(["import", "csv"])
        .arg(&csv)
        .args(["--id", "Prospect ID", "--source", "Lead Source"])
        .args([
            "--convert",
            "Converted",
            "--at",
            "2026-01-01T00:00:00Z",
            "--out",
        ])
        .arg(&events)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "imported 9240 leads (3561 converted), skipped 0 rows\n"
    );
    let report = |extra: &[&str]| {
        stdout_json(
            leadscore()
                .arg("report")
                .arg("--rules")
                .arg(root().join("rules/x-education"))
                .arg("--events")
                .arg(&events)
                .args(["--format", "json"])
                .args(extra),
        )
    };
    let doc = report(&[]);
    assert_eq!(doc["overall"]["leads"], 9240);
    assert_eq!(doc["overall"]["converted"], 3561);
    assert_eq!(doc["overall"]["rate"], 38.54);
    let reference = doc["by_source"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source"] == "Reference")
        .unwrap();
    assert_eq!(
        (&reference["leads"], &reference["converted"]),
        (&json!(534), &json!(490))
    );
    // a CRM import with one `--at` time carries no event times: no time to convert and no
    // leads per week computed from the import's own instant
    assert_eq!(doc["event_times"], json!(false));
    assert_eq!(doc["time_to_convert"]["median_seconds"], Value::Null);
    assert_eq!(doc["leads_per_week"], json!([]));
    // sources under 30 leads are marked small; the large ones are not
    assert_eq!(reference["small"], json!(false));
    let welearn = doc["by_source"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source"] == "WeLearn")
        .unwrap();
    assert_eq!(
        (&welearn["leads"], &welearn["small"]),
        (&json!(1), &json!(true))
    );
    // the fit rules rank the leads: the top band converts far more than the bottom one
    let bands = doc["quality"]["bands"].as_array().unwrap();
    let first = bands.first().unwrap()["rate"].as_f64().unwrap();
    let last = bands.last().unwrap()["rate"].as_f64().unwrap();
    assert!(last > 3.0 * first, "{first} {last}");
    // equal-count quartiles: 9240 leads, 2310 in each band
    let sizes: Vec<u64> = bands.iter().map(|b| b["leads"].as_u64().unwrap()).collect();
    assert_eq!(sizes, [2310, 2310, 2310, 2310]);

    // by lead origin: each group against the rest, Holm-corrected; a group of one is not tested
    let doc = report(&["--by", "lead_origin"]);
    let group = |name: &str| {
        doc["by"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["value"] == name)
            .unwrap()
            .clone()
    };
    let form = group("Lead Add Form");
    assert_eq!(
        (&form["leads"], &form["converted"]),
        (&json!(718), &json!(664))
    );
    assert!(form["z"].as_f64().unwrap() > 0.0, "{form}");
    assert_eq!(form["significant"], json!(true));
    assert!(form["p_holm"].as_f64().unwrap() >= form["p_value"].as_f64().unwrap());
    let quick = group("Quick Add Form");
    assert_eq!(
        (&quick["small"], &quick["p_value"], &quick["significant"]),
        (&json!(true), &Value::Null, &json!(false))
    );
}
