//! Tests of the real `leadscore` binary: `check` (SPEC §4: every error, `file:line:col`, the
//! caret line, JSON for editors, exit status) and `replay` (the JSON contract of §4, bad input
//! of §1 and §3, `--strict`, `--format table`, `--as-of`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use assert_cmd::Command;
use leadscore_rules::program::NotifyWhen;
use leadscore_rules::time::{format_rfc3339, parse_rfc3339};
use leadscore_rules::{compile, SourceFile};
use predicates::prelude::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

fn leadscore() -> Command {
    Command::cargo_bin("leadscore").unwrap()
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn conformance_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance")
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(args: &[&str]) -> Run {
    let out = leadscore().args(args).output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn replay_json(rules: &Path, events: &Path, extra: &[&str]) -> (Value, Run) {
    let mut args = vec![
        "replay",
        "--rules",
        rules.to_str().unwrap(),
        "--events",
        events.to_str().unwrap(),
        "--format",
        "json",
    ];
    args.extend_from_slice(extra);
    let r = run(&args);
    let doc = serde_json::from_str(&r.stdout).unwrap_or_else(|e| {
        panic!(
            "replay output is not JSON ({e}); exit {}\nstdout:\n{}\nstderr:\n{}",
            r.code, r.stdout, r.stderr
        )
    });
    (doc, r)
}

fn lead<'a>(doc: &'a Value, id: &str) -> &'a Value {
    doc["leads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["id"] == id)
        .unwrap_or_else(|| panic!("no lead {id} in {doc:#}"))
}

/// Asserts that `out` reports `file:line:col: error[code]: ...`, followed by the source line
/// (`line | text`) and a caret under column `col`.
fn assert_rendered(out: &str, file: &str, line: usize, col: usize, code: &str) {
    let head = format!("{file}:{line}:{col}: error[{code}]: ");
    let lines: Vec<&str> = out.lines().collect();
    let Some(i) = lines.iter().position(|l| l.starts_with(&head)) else {
        panic!("no line starting with `{head}` in:\n{out}");
    };
    let number = line.to_string();
    let source = lines
        .get(i + 1)
        .unwrap_or_else(|| panic!("no source line after `{head}`"));
    assert!(
        source.starts_with(&format!("{number} | ")),
        "source line after `{head}`: {source:?}"
    );
    let caret = lines
        .get(i + 2)
        .unwrap_or_else(|| panic!("no caret line after `{head}`"));
    let prefix = format!("{} | ", " ".repeat(number.len()));
    assert!(caret.starts_with(&prefix), "caret line: {caret:?}");
    let marks = &caret[prefix.len()..];
    assert_eq!(
        marks.find('^'),
        Some(col - 1),
        "caret not under column {col}: {caret:?}"
    );
    assert!(marks.trim_start().chars().all(|c| c == '^'), "{caret:?}");
}

/// check.py's comparison: everything `want` says must be in `got`; numbers within 0.01; lists
/// item by item; keys `want` leaves out are not compared.
fn same(want: &Value, got: &Value, path: &str, problems: &mut Vec<String>) {
    match want {
        Value::Null | Value::Bool(_) | Value::String(_) => {
            if want != got {
                problems.push(format!("{path}: want {want}, got {got}"));
            }
        }
        Value::Number(w) => match got {
            Value::Number(g) if (w.as_f64().unwrap() - g.as_f64().unwrap()).abs() <= 0.01 => {}
            _ => problems.push(format!("{path}: want {want}, got {got}")),
        },
        Value::Array(w) => match got {
            Value::Array(g) if g.len() == w.len() => {
                for (i, (w, g)) in w.iter().zip(g).enumerate() {
                    same(w, g, &format!("{path}[{i}]"), problems);
                }
            }
            _ => problems.push(format!("{path}: want {} items {want}, got {got}", w.len())),
        },
        Value::Object(w) => {
            let Value::Object(g) = got else {
                problems.push(format!("{path}: want an object, got {got}"));
                return;
            };
            for (k, w) in w {
                match g.get(k) {
                    None => problems.push(format!("{path}.{k}: missing")),
                    Some(g) => same(w, g, &format!("{path}.{k}"), problems),
                }
            }
        }
    }
}

/// Every time in a replay document: lead times and notification times.
fn all_times(doc: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for l in doc["leads"].as_array().unwrap() {
        for k in ["first_seen", "last_seen"] {
            if let Some(t) = l[k].as_str() {
                out.push(t.to_string());
            }
        }
        for t in l["reached"].as_object().unwrap().values() {
            out.push(t.as_str().unwrap().to_string());
        }
        for c in l["conversions"].as_array().unwrap() {
            out.push(c["at"].as_str().unwrap().to_string());
        }
    }
    for n in doc["notifications"].as_array().unwrap() {
        out.push(n["at"].as_str().unwrap().to_string());
    }
    out
}

/// At most two digits after the point.
fn assert_rounded(v: &Value, what: &str) {
    let text = v.to_string();
    assert!(v.is_number(), "{what}: not a number: {text}");
    let decimals = text.split_once('.').map_or(0, |(_, d)| d.len());
    assert!(
        decimals <= 2 && !text.contains('e'),
        "{what}: {text} has more than 2 decimals"
    );
}

// ---------------------------------------------------------------------------------------------
// check
// ---------------------------------------------------------------------------------------------

#[test]
fn check_clean_file_exits_0_with_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "ok.rules",
        "ruleset \"ok\"\n\nscore \"Webinar\" +20 on \"Webinar Registered\"\nstage mql when engagement >= 20\nnotify sales when reached mql\n",
    );
    leadscore()
        .args(["check", file.to_str().unwrap()])
        .assert()
        .code(0)
        .stdout(predicate::str::contains(
            "checked 1 file: 0 errors, 0 warnings",
        ))
        .stdout(predicate::str::contains("error[").not());
}

#[test]
fn check_the_example_rule_set_is_clean() {
    let folder = repo_root().join("rules/b2b-saas");
    leadscore()
        .args(["check", folder.to_str().unwrap()])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("checked 1 file: 0 errors"));
}

/// The `version` of `check`'s line for one rule set.
fn checked_version(path: &Path) -> String {
    let r = run(&["check", path.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let line = r
        .stdout
        .lines()
        .find(|l| l.contains(", version "))
        .unwrap_or_else(|| panic!("no version in {}", r.stdout));
    line.rsplit(' ').next().unwrap().to_string()
}

#[test]
fn check_prints_the_version_that_replay_and_fmt_agree_on() {
    let dir = tempfile::tempdir().unwrap();
    let text = "ruleset \"ok\"\n# engagement\nscore \"Webinar\" 20 on \"Webinar Registered\"\nstage mql when (engagement >= 20)\n";
    let file = write(dir.path(), "ok.rules", text);
    let version = checked_version(&file);
    assert_eq!(version.len(), 16, "{version}");
    // replay carries it at the top level
    let events = write(dir.path(), "e.jsonl", "");
    let r = run(&[
        "replay",
        "--rules",
        file.to_str().unwrap(),
        "--events",
        events.to_str().unwrap(),
        "--format",
        "json",
    ]);
    let doc: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(doc["rules"], json!({"ruleset": "ok", "version": version}));
    // formatted, without the comment, renamed: the same version
    assert_eq!(run(&["fmt", file.to_str().unwrap()]).code, 0);
    assert_ne!(
        std::fs::read_to_string(&file).unwrap(),
        text,
        "fmt changed the file"
    );
    assert_eq!(checked_version(&file), version);
    write(
        dir.path(),
        "ok.rules",
        &text
            .replace("# engagement\n", "")
            .replace("\"ok\"", "\"renamed\""),
    );
    assert_eq!(checked_version(&file), version);
    // other points: another version
    write(dir.path(), "ok.rules", &text.replace(" 20 on", " 25 on"));
    assert_ne!(checked_version(&file), version);
    // and the JSON findings list it
    let r = run(&["check", "--format", "json", file.to_str().unwrap()]);
    let doc: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(doc["rulesets"][0]["ruleset"], json!("ok"));
    assert_eq!(
        doc["rulesets"][0]["version"].as_str().map(str::len),
        Some(16)
    );
}

fn broken_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "a.rules",
        "ruleset \"x\"\n\nscore \"Pricing\" +10 on page where path starts_with \"/pricing\"\nstage mql when engagement >= 40\nstage sql when reached mqll and score >= 100\n",
    );
    write(
        dir.path(),
        "b.rules",
        "fit \"Title\" +5 when title == \"vp\"\nscore \"X\" +1 on page where path startswith \"/x\"\nscore \"Webinar\" +20 on \"Webinar Registered\"\n",
    );
    write(dir.path(), "notes.txt", "not a rules file\n");
    dir
}

#[test]
fn check_reports_every_broken_item_across_files() {
    let dir = broken_folder();
    let folder = dir.path().to_str().unwrap();
    let r = run(&["check", folder]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    let a = dir.path().join("a.rules").display().to_string();
    let b = dir.path().join("b.rules").display().to_string();
    assert_rendered(&r.stdout, &a, 5, 24, "E002");
    assert_rendered(&r.stdout, &b, 1, 21, "E004");
    assert_rendered(&r.stdout, &b, 2, 33, "E001");
    assert_eq!(
        r.stdout.lines().filter(|l| l.contains(": error[")).count(),
        3,
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("did you mean `mql`?"), "{}", r.stdout);
    assert!(r.stdout.contains("lead.title"), "{}", r.stdout);
    assert!(
        r.stdout
            .lines()
            .any(|l| l.starts_with("checked 2 files: 3 errors")),
        "{}",
        r.stdout
    );
}

#[test]
fn check_json_lists_every_diagnostic() {
    let dir = broken_folder();
    let r = run(&["check", "--format", "json", dir.path().to_str().unwrap()]);
    assert_eq!(r.code, 1);
    let doc: Value = serde_json::from_str(&r.stdout).unwrap();
    let errors: Vec<(String, u64, u64, String)> = doc["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["severity"] == "error")
        .map(|d| {
            let file = Path::new(d["file"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (
                file,
                d["start"]["line"].as_u64().unwrap(),
                d["start"]["column"].as_u64().unwrap(),
                d["code"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        errors,
        [
            ("a.rules".to_string(), 5, 24, "E002".to_string()),
            ("b.rules".to_string(), 1, 21, "E004".to_string()),
            ("b.rules".to_string(), 2, 33, "E001".to_string()),
        ]
    );
    assert_eq!(doc["errors"], 3);
    for d in doc["diagnostics"].as_array().unwrap() {
        assert!(d["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(d["end"]["line"].as_u64().is_some());
    }
}

/// `check --targets` reports before a deploy what notify refuses at start: a target the
/// rules notify with no entry (a misspelt one named with the entry it resembles), unless a
/// catch-all bus takes it.
#[test]
fn check_targets_finds_a_notify_target_with_nowhere_to_go() {
    let dir = tempfile::tempdir().unwrap();
    let rules = repo_root().join("rules/online-course");
    let rules = rules.to_str().unwrap();
    let bus = |name: &str| {
        format!(
            r#"{{"{name}": {{"type": "eventbridge", "bus": "b"}}, "finance": {{"type": "eventbridge", "bus": "b"}}}}"#
        )
    };
    let misnamed = write(dir.path(), "misnamed.json", &bus("Admissions"));
    let right = write(dir.path(), "right.json", &bus("admissions"));
    let broken = write(dir.path(), "broken.json", "{not json");
    let out = run(&["check", rules, "--targets", misnamed.to_str().unwrap()]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stdout.contains("the rules notify `admissions`")
            && out.stdout.contains("did you mean `Admissions`?"),
        "{}",
        out.stdout
    );
    let out = run(&["check", rules, "--targets", right.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    let out = run(&[
        "check",
        rules,
        "--targets",
        misnamed.to_str().unwrap(),
        "--event-bus",
        "leadscore",
    ]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    let out = run(&["check", rules, "--targets", broken.to_str().unwrap()]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("broken.json"), "{}", out.stderr);
    let out = run(&[
        "check",
        rules,
        "--format",
        "json",
        "--targets",
        misnamed.to_str().unwrap(),
    ]);
    let doc: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(doc["errors"], 1);
    assert!(doc["targets"][0]["message"]
        .as_str()
        .unwrap()
        .contains("`admissions`"));
}

/// A repeated `messageId` is skipped, counted in the summary and noted on standard error;
/// it is not an error, so `--strict` still exits 0.
#[test]
fn replay_counts_duplicates_without_failing_strict() {
    let dir = tempfile::tempdir().unwrap();
    let call = r#"{"type":"track","event":"Pricing Viewed","userId":"u1","messageId":"m1","timestamp":"2026-01-01T00:00:00Z"}"#;
    let events = write(dir.path(), "e.jsonl", &format!("{call}\n{call}\n{call}\n"));
    let rules = repo_root().join("rules/b2b-saas");
    let (doc, out) = replay_json(&rules, &events, &["--strict"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(doc["summary"]["duplicates"], 2);
    assert_eq!(doc["summary"]["rejected"], 0);
    assert_eq!(doc["leads"][0]["events"], 1);
    assert!(out.stderr.contains("2 call(s) skipped"), "{}", out.stderr);
}

#[test]
fn check_a_missing_path_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.rules");
    leadscore()
        .args(["check", missing.to_str().unwrap()])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("nope.rules"));
    // a folder without rules files
    leadscore()
        .args(["check", dir.path().to_str().unwrap()])
        .assert()
        .code(2);
    // no path at all
    leadscore().arg("check").assert().code(2);
}

// ---------------------------------------------------------------------------------------------
// replay: the conformance cases and the example
// ---------------------------------------------------------------------------------------------

#[test]
fn replay_passes_the_conformance_cases() {
    let root = conformance_dir();
    assert!(
        root.is_dir(),
        "the conformance cases are missing at {} (../shared beside the repository)",
        root.display()
    );
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(
        !cases.is_empty(),
        "no conformance cases in {}",
        root.display()
    );
    let mut problems = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let (got, r) = replay_json(&case.join("rules.rules"), &case.join("events.jsonl"), &[]);
        assert_eq!(r.code, 0, "{name}: {}", r.stderr);
        let want: Value = serde_json::from_str(
            &std::fs::read_to_string(case.join("expected.json"))
                .unwrap_or_else(|e| panic!("{name}: expected.json: {e}")),
        )
        .unwrap();
        assert!(
            want["leads"].as_array().is_some_and(|l| !l.is_empty())
                && want.get("lead_count").is_some(),
            "{name}: expected.json must give `leads` and `lead_count`"
        );
        for l in want["leads"].as_array().into_iter().flatten() {
            let id = l["id"].as_str().unwrap();
            match got["leads"]
                .as_array()
                .unwrap()
                .iter()
                .find(|g| g["id"] == id)
            {
                None => problems.push(format!("{name}: lead {id}: missing")),
                Some(g) => same(l, g, &format!("{name}: lead {id}"), &mut problems),
            }
        }
        if let Some(n) = want.get("lead_count") {
            same(
                n,
                &Value::from(got["leads"].as_array().unwrap().len()),
                &format!("{name}: number of leads"),
                &mut problems,
            );
        }
        for key in ["ruleset", "notifications", "summary"] {
            if let Some(w) = want.get(key) {
                same(w, &got[key], &format!("{name}: {key}"), &mut problems);
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn replay_of_the_example_follows_the_contract() {
    let root = repo_root().join("rules/b2b-saas");
    let rules_file = root.join("acme.rules");
    let (doc, r) = replay_json(&root, &root.join("events.jsonl"), &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(doc["ruleset"], "acme-b2b");

    // leads sorted by id
    let ids: Vec<&str> = doc["leads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_str().unwrap())
        .collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(ids, sorted);
    assert!(ids.len() > 3);

    // notifications by time, then lead, then the order one step produced them: stages in
    // declaration order, then conversions, each in the order of the notify lines
    let program = compile(&[SourceFile {
        name: "acme.rules".into(),
        text: std::fs::read_to_string(&rules_file).unwrap(),
    }])
    .program
    .unwrap();
    let notes = doc["notifications"].as_array().unwrap();
    assert!(notes.len() > 3);
    let key = |n: &Value| {
        let at = parse_rfc3339(n["at"].as_str().unwrap()).unwrap();
        let lead = n["lead"].as_str().unwrap().to_string();
        let (kind, index) = if n["kind"] == "stage_reached" {
            let s = program.stage_index(n["stage"].as_str().unwrap()).unwrap();
            (0, s)
        } else {
            assert_eq!(n["kind"], "converted");
            let c = program
                .conversions
                .iter()
                .position(|c| c.name == n["conversion"].as_str().unwrap())
                .unwrap();
            (1, c)
        };
        let line = program
            .notifies
            .iter()
            .position(|rule| {
                rule.target == n["target"].as_str().unwrap()
                    && match rule.when {
                        NotifyWhen::Reached(s) => kind == 0 && s == index,
                        NotifyWhen::Converted(None) => kind == 1,
                        NotifyWhen::Converted(Some(c)) => kind == 1 && c == index,
                    }
            })
            .unwrap_or_else(|| panic!("no notify line asks for {n}"));
        (at, lead, kind, index, line)
    };
    let keys: Vec<_> = notes.iter().map(key).collect();
    for w in keys.windows(2) {
        assert!(
            w[0] <= w[1],
            "notifications out of order: {:?} then {:?}",
            w[0],
            w[1]
        );
    }

    // times in UTC with `Z`, a fraction only when there is one
    for t in all_times(&doc) {
        assert!(t.ends_with('Z'), "{t}");
        let parsed = parse_rfc3339(&t).unwrap_or_else(|| panic!("not RFC 3339: {t}"));
        assert_eq!(format_rfc3339(parsed), t);
    }

    // scores rounded to at most 2 digits
    let mut reached_counts = std::collections::BTreeMap::<String, u64>::new();
    let mut converted = 0u64;
    for l in doc["leads"].as_array().unwrap() {
        let id = l["id"].as_str().unwrap();
        for k in ["score", "fit", "engagement"] {
            assert_rounded(&l[k], &format!("{id}.{k}"));
        }
        let (s, f, e) = (
            l["score"].as_f64().unwrap(),
            l["fit"].as_f64().unwrap(),
            l["engagement"].as_f64().unwrap(),
        );
        assert!((s - (f + e)).abs() <= 0.011, "{id}: score {s} != {f} + {e}");
        for c in l["conversions"].as_array().unwrap() {
            if let Some(v) = c.get("value") {
                assert_rounded(v, &format!("{id}.conversions.value"));
            }
            let at = parse_rfc3339(c["at"].as_str().unwrap()).unwrap();
            let first = parse_rfc3339(l["first_seen"].as_str().unwrap()).unwrap();
            assert_eq!(
                c["seconds_to_convert"].as_i64().unwrap(),
                (at - first) / 1_000_000
            );
        }
        for stage in l["reached"].as_object().unwrap().keys() {
            *reached_counts.entry(stage.clone()).or_default() += 1;
        }
        if !l["conversions"].as_array().unwrap().is_empty() {
            converted += 1;
        }
        // the stage is the last-declared stage reached
        let last = program
            .stages
            .iter()
            .rev()
            .find(|s| l["reached"].get(&s.name).is_some())
            .map_or(Value::Null, |s| Value::from(s.name.clone()));
        assert_eq!(l["stage"], last, "{id}");
    }
    let summary = &doc["summary"];
    assert_eq!(summary["leads"], ids.len());
    assert_eq!(summary["converted"], converted);
    assert_eq!(summary["rejected"], 0);
    assert_rounded(&summary["conversion_rate"], "conversion_rate");
    #[allow(clippy::cast_precision_loss)]
    let rate = converted as f64 / ids.len() as f64 * 100.0;
    assert!((summary["conversion_rate"].as_f64().unwrap() - rate).abs() <= 0.005);
    let summary_reached: std::collections::BTreeMap<String, u64> = summary["reached"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect();
    assert_eq!(summary_reached, reached_counts);
}

#[test]
fn replay_json_keeps_the_documented_key_order() {
    let dir = tempfile::tempdir().unwrap();
    let rules = write(
        dir.path(),
        "r.rules",
        "ruleset \"order\"\nscore \"W\" +50 on \"Webinar Registered\"\nstage warm when engagement >= 10\nstage hot when engagement >= 40\nconversion \"Signup\" on \"Signed Up\"\nnotify sales when reached hot\n",
    );
    let events = write(
        dir.path(),
        "e.jsonl",
        concat!(
            r#"{"type":"track","event":"Webinar Registered","userId":"u1","timestamp":"2026-01-01T09:00:00Z","messageId":"m1"}"#,
            "\n",
            r#"{"type":"track","event":"Signed Up","userId":"u1","timestamp":"2026-01-02T09:00:00Z","messageId":"m2"}"#,
            "\n"
        ),
    );
    let r = run(&[
        "replay",
        "--rules",
        rules.to_str().unwrap(),
        "--events",
        events.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(r.code, 0);
    let order = |text: &str, keys: &[&str]| {
        let at: Vec<usize> = keys
            .iter()
            .map(|k| text.find(k).unwrap_or_else(|| panic!("{k} not in {text}")))
            .collect();
        assert!(
            at.windows(2).all(|w| w[0] < w[1]),
            "{keys:?} out of order:\n{text}"
        );
    };
    let out = r.stdout.as_str();
    order(
        out,
        &[
            r#""ruleset":"#,
            r#""leads":"#,
            r#""notifications":"#,
            r#""summary":"#,
        ],
    );
    let lead_text =
        &out[out.find(r#""leads":"#).unwrap()..out.find(r#""notifications":"#).unwrap()];
    order(
        lead_text,
        &[
            r#""id":"#,
            r#""score":"#,
            r#""fit":"#,
            r#""engagement":"#,
            r#""stage":"#,
            r#""reached":"#,
            r#""warm":"#,
            r#""hot":"#,
            r#""conversions":"#,
            r#""name":"#,
            r#""at":"#,
            r#""count":"#,
            r#""seconds_to_convert":"#,
            r#""source":"#,
            r#""first_seen":"#,
            r#""last_seen":"#,
            r#""events":"#,
        ],
    );
    let summary_text = &out[out.find(r#""summary":"#).unwrap()..];
    order(
        summary_text,
        &[
            r#""leads":"#,
            r#""reached":"#,
            r#""warm":"#,
            r#""hot":"#,
            r#""converted":"#,
            r#""conversion_rate":"#,
            r#""rejected":"#,
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// replay: bad input
// ---------------------------------------------------------------------------------------------

const SIMPLE_RULES: &str = "ruleset \"simple\"\nscore \"Webinar\" +20 on \"Webinar Registered\"\n";

fn bad_events(dir: &Path) -> PathBuf {
    write(
        dir,
        "events.jsonl",
        concat!(
            r#"{"type":"track","event":"Webinar Registered","userId":"u1","timestamp":"2026-01-01T09:00:00Z","messageId":"m1"}"#,
            "\n",
            "this is not JSON\n",
            r#"{"batch":[{"type":"track","event":"Webinar Registered","userId":"u2","timestamp":"2026-01-01T10:00:00Z","messageId":"m2"},{"type":"track","event":"Webinar Registered","userId":"u2","timestamp":"yesterday","messageId":"m3"}]}"#,
            "\n",
            r#"{"type":"track","event":"Webinar Registered","timestamp":"2026-01-01T11:00:00Z","messageId":"m4"}"#,
            "\n",
            "\n",
            r#"{"type":"track","event":"Webinar Registered","userId":"u3","timestamp":"2026-01-01T12:00:00Z","messageId":"m3"}"#,
            "\n"
        ),
    )
}

#[test]
fn replay_skips_and_reports_bad_calls() {
    let dir = tempfile::tempdir().unwrap();
    let rules = write(dir.path(), "simple.rules", SIMPLE_RULES);
    let events = bad_events(dir.path());
    let (doc, r) = replay_json(&rules, &events, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let file = events.display().to_string();
    let err_lines: Vec<&str> = r.stderr.lines().collect();
    assert!(
        err_lines
            .iter()
            .any(|l| l.starts_with(&format!("{file}:2: invalid JSON"))),
        "{}",
        r.stderr
    );
    assert!(
        err_lines.contains(&format!("{file}:3: batch[1].timestamp: not an RFC 3339 time").as_str()),
        "{}",
        r.stderr
    );
    assert!(
        err_lines
            .iter()
            .any(|l| l.starts_with(&format!("{file}:4: userId: ")) && l.contains("anonymousId")),
        "{}",
        r.stderr
    );
    assert_eq!(err_lines.len(), 3, "{}", r.stderr);
    assert_eq!(doc["summary"]["rejected"], 3);
    // the valid call of the batch is applied; the rejected call's messageId was never used
    let ids: Vec<&str> = doc["leads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["u1", "u2", "u3"]);
    assert_eq!(lead(&doc, "u2")["engagement"], 20);
    assert_eq!(lead(&doc, "u2")["events"], 1);
    assert_eq!(lead(&doc, "u3")["engagement"], 20);
}

#[test]
fn replay_strict_exits_2_on_a_rejected_call() {
    let dir = tempfile::tempdir().unwrap();
    let rules = write(dir.path(), "simple.rules", SIMPLE_RULES);
    let events = bad_events(dir.path());
    leadscore()
        .args([
            "replay",
            "--rules",
            rules.to_str().unwrap(),
            "--events",
            events.to_str().unwrap(),
            "--format",
            "json",
            "--strict",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "batch[1].timestamp: not an RFC 3339 time",
        ));
    // without a bad call, --strict changes nothing
    let good = write(
        dir.path(),
        "good.jsonl",
        r#"{"type":"track","event":"Webinar Registered","userId":"u1","timestamp":"2026-01-01T09:00:00Z"}"#,
    );
    leadscore()
        .args([
            "replay",
            "--rules",
            rules.to_str().unwrap(),
            "--events",
            good.to_str().unwrap(),
            "--strict",
        ])
        .assert()
        .code(0);
}

#[test]
fn replay_with_broken_rules_exits_2_with_the_diagnostic() {
    let dir = tempfile::tempdir().unwrap();
    let rules = write(
        dir.path(),
        "bad.rules",
        "ruleset \"bad\"\nstage mql when engagement >= 40\nnotify sales when reached mqll\n",
    );
    let events = bad_events(dir.path());
    let r = run(&[
        "replay",
        "--rules",
        rules.to_str().unwrap(),
        "--events",
        events.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(r.code, 2);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    assert_rendered(&r.stderr, &rules.display().to_string(), 3, 27, "E002");
    assert!(r.stderr.contains("did you mean `mql`?"), "{}", r.stderr);
}

#[test]
fn replay_usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let rules = write(dir.path(), "simple.rules", SIMPLE_RULES);
    let events = bad_events(dir.path());
    let missing = dir.path().join("missing.jsonl");
    leadscore()
        .args([
            "replay",
            "--rules",
            rules.to_str().unwrap(),
            "--events",
            missing.to_str().unwrap(),
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("missing.jsonl"));
    leadscore()
        .args([
            "replay",
            "--rules",
            rules.to_str().unwrap(),
            "--events",
            events.to_str().unwrap(),
            "--as-of",
            "next tuesday",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("next tuesday"));
    leadscore()
        .args(["replay", "--events", events.to_str().unwrap()])
        .assert()
        .code(2);
}

// ---------------------------------------------------------------------------------------------
// replay: formats and time
// ---------------------------------------------------------------------------------------------

#[test]
fn replay_table_has_a_header_and_a_summary() {
    let root = repo_root().join("rules/b2b-saas");
    let r = run(&[
        "replay",
        "--rules",
        root.to_str().unwrap(),
        "--events",
        root.join("events.jsonl").to_str().unwrap(),
        "--format",
        "table",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    let header = lines
        .iter()
        .position(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            words.first() == Some(&"lead")
                && ["score", "fit", "engagement", "stage"]
                    .iter()
                    .all(|w| words.contains(w))
        })
        .unwrap_or_else(|| panic!("no header in:\n{}", r.stdout));
    assert!(lines[header + 1].starts_with("---"), "{}", r.stdout);
    assert!(
        lines.iter().any(|l| l.starts_with("usr_ann ")),
        "{}",
        r.stdout
    );
    let summary = predicate::str::is_match(
        r"^\d+ leads, \d+ converted \(\d+(\.\d+)?%\), \d+ notifications, 0 rejected, \d+ duplicates$",
    )
    .unwrap();
    assert!(
        lines.iter().any(|l| summary.eval(l)),
        "no summary line in:\n{}",
        r.stdout
    );
    // the table is the default format
    let default = run(&[
        "replay",
        "--rules",
        root.to_str().unwrap(),
        "--events",
        root.join("events.jsonl").to_str().unwrap(),
    ]);
    assert_eq!(default.stdout, r.stdout);
}

#[test]
fn replay_as_of_ticks_every_lead() {
    let dir = tempfile::tempdir().unwrap();
    let rules = write(
        dir.path(),
        "cold.rules",
        "ruleset \"cold\"\nscore \"Webinar\" +10 on \"Webinar Registered\"\ndecay engagement half_life 1d\nstage cold when engagement < 5\nnotify sales when reached cold\n",
    );
    let events = write(
        dir.path(),
        "e.jsonl",
        concat!(
            r#"{"type":"track","event":"Webinar Registered","userId":"u1","timestamp":"2026-01-01T09:00:00Z","messageId":"m1"}"#,
            "\n",
            r#"{"type":"track","event":"Webinar Registered","userId":"u2","timestamp":"2026-01-12T09:00:00Z","messageId":"m2"}"#,
            "\n"
        ),
    );
    let (plain, _) = replay_json(&rules, &events, &[]);
    assert_eq!(lead(&plain, "u1")["stage"], Value::Null);
    assert_eq!(lead(&plain, "u1")["engagement"], 10);

    let (doc, r) = replay_json(&rules, &events, &["--as-of", "2026-01-11T09:00:00Z"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let u1 = lead(&doc, "u1");
    assert_eq!(u1["stage"], "cold");
    assert_eq!(u1["reached"]["cold"], "2026-01-11T09:00:00Z");
    assert!(u1["engagement"].as_f64().unwrap() < 0.02, "{u1}");
    assert_eq!(u1["last_seen"], "2026-01-01T09:00:00Z");
    assert_eq!(u1["events"], 1);
    // u2's clock is past the as-of time: no decay backwards
    let u2 = lead(&doc, "u2");
    assert_eq!(u2["engagement"], 10);
    assert_eq!(u2["stage"], Value::Null);
    assert_eq!(
        doc["notifications"],
        serde_json::json!([{"target": "sales", "kind": "stage_reached", "lead": "u1",
                            "stage": "cold", "at": "2026-01-11T09:00:00Z"}])
    );
    assert_eq!(doc["summary"]["reached"], serde_json::json!({"cold": 1}));
}

#[test]
fn replay_prints_fractional_times_with_their_fraction_only() {
    let dir = tempfile::tempdir().unwrap();
    let rules = write(
        dir.path(),
        "r.rules",
        "ruleset \"t\"\nscore \"Webinar\" +20 on \"Webinar Registered\"\nstage warm when engagement >= 20\nnotify sales when reached warm\n",
    );
    let events = write(
        dir.path(),
        "e.jsonl",
        concat!(
            r#"{"type":"track","event":"Webinar Registered","userId":"u1","timestamp":"2026-01-01T10:00:00.250+01:00","messageId":"m1"}"#,
            "\n",
            r#"{"type":"page","userId":"u1","timestamp":"2026-01-02T09:00:00.000Z","messageId":"m2"}"#,
            "\n"
        ),
    );
    let (doc, r) = replay_json(&rules, &events, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let u1 = lead(&doc, "u1");
    assert_eq!(u1["first_seen"], "2026-01-01T09:00:00.25Z");
    assert_eq!(u1["reached"]["warm"], "2026-01-01T09:00:00.25Z");
    assert_eq!(u1["last_seen"], "2026-01-02T09:00:00Z");
    assert_eq!(doc["notifications"][0]["at"], "2026-01-01T09:00:00.25Z");
}

/// Calls spread over several blocks of the reader (more than 4 MiB): blank and CRLF lines, a
/// line longer than a block, no line ending at the end, and anonymous leads of the first
/// block merged by aliases in the last (their calls read again, from the file or, for a
/// pipe, from memory). The document is the one the engine gives for the same calls applied
/// one by one, from a file and from a pipe.
#[test]
fn replay_reads_a_large_input_in_blocks() {
    use leadscore_core::ingest::call::TimePolicy;
    use leadscore_core::ingest::parse_body_reading;
    use leadscore_core::output::replay_document;
    use leadscore_core::store::engine::Engine;
    use serde_json::json;
    use std::sync::Arc;
    let rules = r#"ruleset "blocks"
score "Pricing" +10 on page where path starts_with "/pricing" limit 3 per 1d
score "Used" +1 on "Feature Used" limit 5 per 1h
stage mql when score >= 20
conversion "Purchase" on "Order Completed" value revenue
notify sales when reached mql
"#;
    let at =
        |s: i64| format_rfc3339(parse_rfc3339("2026-01-01T00:00:00Z").unwrap() + s * 1_000_000);
    let mut lines: Vec<String> = Vec::new();
    for i in 0..50 {
        lines.push(
            json!({"type": "page", "anonymousId": format!("a{i}"), "messageId": format!("p{i}"),
                   "timestamp": at(i), "properties": {"path": "/pricing", "url": "x"},
                   "context": {"campaign": {"source": "ads"}}})
            .to_string(),
        );
    }
    for n in 0..30_000i64 {
        let mut line = json!({"type": "track", "event": "Feature Used",
                              "userId": format!("u{}", n % 1000), "messageId": format!("m{n}"),
                              "timestamp": at(100 + n), "properties": {"pad": "x".repeat(80)}})
        .to_string();
        if n % 997 == 0 {
            lines.push(String::new());
            lines.push("  \t".into());
        }
        if n % 1001 == 0 {
            line.push('\r');
        }
        lines.push(line);
    }
    lines.push(
        json!({"type": "track", "event": "Order Completed", "userId": "u1", "messageId": "big",
               "timestamp": at(40_000), "properties": {"revenue": 10, "blob": "y".repeat(3 << 20)}})
        .to_string(),
    );
    for i in 0..50 {
        lines.push(
            json!({"type": "alias", "previousId": format!("a{i}"), "userId": format!("u{i}"),
                   "messageId": format!("al{i}"), "timestamp": at(50_000 + i)})
            .to_string(),
        );
    }
    let text = lines.join("\n");
    assert!(text.len() > (2 << 20) * 3);

    let compiled = compile(&[SourceFile {
        name: "blocks.rules".into(),
        text: rules.into(),
    }]);
    let program = compiled.program.expect("rules compile");
    let mut engine = Engine::new(&program);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        for call in parse_body_reading(line, &TimePolicy::Required, None).unwrap() {
            engine.process(Arc::new(call.unwrap()));
        }
    }
    assert!(engine.lead("a7").is_some_and(|l| l.id() == "u7"));
    let expected = serde_json::to_string_pretty(&replay_document(&engine, 0)).unwrap() + "\n";

    let dir = tempfile::tempdir().unwrap();
    let rules = write(dir.path(), "blocks.rules", rules);
    let events = write(dir.path(), "events.jsonl", &text);
    let args = [
        "replay",
        "--rules",
        rules.to_str().unwrap(),
        "--format",
        "json",
    ];
    let from_file = run(&[&args[..], &["--events", events.to_str().unwrap()]].concat());
    assert_eq!(from_file.code, 0, "{}", from_file.stderr);
    assert!(
        from_file.stdout == expected,
        "the document from a file differs"
    );
    let piped = leadscore()
        .args(args)
        .args(["--events", "/dev/stdin"])
        .write_stdin(text.clone())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&piped.stderr);
    assert_eq!(piped.status.code(), Some(0), "{stderr}");
    assert!(
        piped.stdout == expected.as_bytes(),
        "the document from a pipe differs"
    );

    // bytes that are not UTF-8 in a later block: that line only is rejected, with its
    // number, from a file and from a pipe, and the rest is the same document
    let mut bad = text.clone().into_bytes();
    bad.extend_from_slice(b"\n{\"type\": \"page\", \"userId\": \"u\xff\"}\n");
    // the number of the bad (last) line
    let bad_line = bad[..bad.len() - 1].iter().filter(|b| **b == b'\n').count() + 1;
    let events = dir.path().join("bad.jsonl");
    std::fs::write(&events, &bad).unwrap();
    let mut want = serde_json::from_str::<serde_json::Value>(&expected).unwrap();
    want["summary"]["rejected"] = serde_json::json!(1);
    let at = format!("bad.jsonl:{bad_line}: the line is not UTF-8 text");
    let r = run(&[&args[..], &["--events", events.to_str().unwrap()]].concat());
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains(&at), "{}", r.stderr);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&r.stdout).unwrap(),
        want
    );
    let strict = run(&[
        &args[..],
        &["--strict", "--events", events.to_str().unwrap()],
    ]
    .concat());
    assert_eq!(strict.code, 2, "{}", strict.stderr);
    let piped = leadscore()
        .args(args)
        .args(["--events", "/dev/stdin"])
        .write_stdin(bad)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&piped.stderr);
    assert_eq!(piped.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("/dev/stdin:") && stderr.contains("not UTF-8"),
        "{stderr}"
    );
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&piped.stdout).unwrap(),
        want
    );

    // no input, or only blank lines: no leads, nothing rejected
    for text in ["", "\n\r\n  \n\t"] {
        let events = write(dir.path(), "empty.jsonl", text);
        let (doc, r) = replay_json(&rules, &events, &[]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(doc["leads"], serde_json::json!([]));
        assert_eq!(doc["summary"]["rejected"], 0);
    }
}

/// A line that is not UTF-8 is rejected alone, with its number, by every command that reads
/// events (replay of one or several pairs, report, compare, explain); the rest is read.
#[test]
fn every_events_reader_rejects_a_line_that_is_not_utf8_alone() {
    let dir = tempfile::tempdir().unwrap();
    let rules = repo_root().join("rules/b2b-saas");
    let good = std::fs::read(rules.join("events.jsonl")).unwrap();
    let mut bad =
        b"{\"type\":\"page\",\"userId\":\"u\xff\",\"timestamp\":\"2026-01-01T00:00:00Z\"}\n"
            .to_vec();
    bad.extend_from_slice(&good);
    let events = dir.path().join("bad.jsonl");
    std::fs::write(&events, &bad).unwrap();
    let (rules_s, events_s) = (rules.to_str().unwrap(), events.to_str().unwrap());
    let at = "bad.jsonl:1: the line is not UTF-8 text (an invalid byte at column 27)";

    let (doc, r) = replay_json(&rules, &events, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains(at), "{}", r.stderr);
    assert_eq!(doc["summary"]["rejected"], 1);
    let leads = doc["leads"].as_array().unwrap().len();
    assert!(leads > 1);
    // several pairs: the other reader
    let pairs = run(&[
        "replay", "--rules", rules_s, "--events", events_s, "--rules", rules_s, "--events",
        events_s, "--format", "json",
    ]);
    assert_eq!(pairs.code, 0, "{}", pairs.stderr);
    assert!(pairs.stderr.contains(at), "{}", pairs.stderr);
    for args in [
        vec![
            "report", "--rules", rules_s, "--events", events_s, "--format", "json",
        ],
        vec![
            "compare", "--rules", rules_s, "--rules", rules_s, "--events", events_s, "--format",
            "json",
        ],
        vec![
            "explain", "--rules", rules_s, "--events", events_s, "--lead", "usr_ann",
        ],
    ] {
        let r = run(&args);
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(at), "{args:?}: {}", r.stderr);
        assert!(!r.stdout.is_empty(), "{args:?}");
    }
}
