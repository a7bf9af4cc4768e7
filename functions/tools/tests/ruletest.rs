//! Rule tests (`leadscore test`): the `.test` format's parser (errors with `file:line:col`),
//! every expectation kind, failures reporting what was expected and what the rules gave, and
//! the shipped `acme.test`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use leadscore_rules::time::parse_rfc3339;
use leadscore_rules::{compile, CallKind, Program, SourceFile};
use leadscore_tools::ruletest::{
    check, discover, parse, run, Expect, Metric, Step, TestFile, TestResult,
};
use std::path::{Path, PathBuf};

fn acme_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules/b2b-saas")
}

fn acme() -> Program {
    let path = acme_dir().join("acme.rules");
    let text = std::fs::read_to_string(&path).unwrap();
    let compiled = compile(&[SourceFile {
        name: "acme.rules".into(),
        text,
    }]);
    compiled.program.expect("acme.rules compiles")
}

const SMALL: &str = r#"
ruleset "small"
fit "Senior" +10 when lead.title == "VP"
score "Pricing" +10 on page where path starts_with "/pricing" limit 2 per 7d
score "Demo" +40 on "Form Submitted" where form == "demo"
decay engagement half_life 10d
stage mql when engagement >= 40 and fit >= 10
stage sql when reached mql and event "Form Submitted" where form == "demo"
conversion "Purchase" on "Order Completed" value revenue
notify sales when reached sql
notify revenue when converted
"#;

fn small() -> Program {
    compile(&[SourceFile {
        name: "small.rules".into(),
        text: SMALL.into(),
    }])
    .program
    .expect("small rules compile")
}

fn parsed(text: &str) -> TestFile {
    match parse("t.test", text) {
        Ok(f) => f,
        Err(errors) => panic!(
            "{}",
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

fn run_one(program: &Program, text: &str) -> TestResult {
    let file = parsed(text);
    assert!(
        check(program, &file).is_empty(),
        "{:?}",
        check(program, &file)
    );
    let mut results = run(program, &file);
    assert_eq!(results.len(), 1);
    results.remove(0)
}

fn errors(text: &str) -> Vec<String> {
    match parse("t.test", text) {
        Ok(_) => panic!("expected errors"),
        Err(e) => e.iter().map(ToString::to_string).collect(),
    }
}

// ---------------------------------------------------------------------------------------------
// parsing
// ---------------------------------------------------------------------------------------------

#[test]
fn parses_given_events_ticks_and_expectations() {
    let file = parsed(
        r#"
# a comment
test "one"   # trailing comment
  given lead.title = "VP", lead.company.employees = 120
  at 2026-01-01T09:00:00Z page path = "/pricing#top"
  at +1d "Form Submitted" form = "demo", product.sku = "A-1"
  at +2h identify plan = "trial"
  at +1w tick
  expect score = 75.5, stage = "sql", reached mql at 2026-01-02T09:00:00Z
"#,
    );
    assert_eq!(file.tests.len(), 1);
    let t = &file.tests[0];
    assert_eq!(t.name, "one");
    assert_eq!(t.line, 3);
    assert_eq!(t.given.len(), 2);
    assert_eq!(t.given[1].0, vec!["company", "employees"]);
    assert_eq!(t.steps.len(), 5);
    let t0 = parse_rfc3339("2026-01-01T09:00:00Z").unwrap();
    let Step::Event { event, line, col } = &t.steps[0] else {
        panic!("event")
    };
    assert_eq!(*line, 5);
    assert_eq!(*col, 27);
    assert_eq!(event.kind, CallKind::Page);
    assert_eq!(event.time, t0);
    assert_eq!(event.properties["path"], "/pricing#top");
    let Step::Event { event, .. } = &t.steps[1] else {
        panic!("event")
    };
    assert_eq!(event.kind, CallKind::Track);
    assert_eq!(event.name, "Form Submitted");
    assert_eq!(event.time, t0 + 86_400_000_000);
    assert_eq!(event.properties["product"]["sku"], "A-1");
    let Step::Event { event, .. } = &t.steps[2] else {
        panic!("event")
    };
    assert_eq!(event.kind, CallKind::Identify);
    assert!(matches!(t.steps[3], Step::Tick { .. }));
    let Step::Expect(list) = &t.steps[4] else {
        panic!("expect")
    };
    assert_eq!(list.len(), 3);
    assert_eq!(
        list[0].expect,
        Expect::Number {
            metric: Metric::Score,
            value: 75.5
        }
    );
    assert_eq!(list[1].expect, Expect::Stage(Some("sql".into())));
    assert_eq!(list[2].line, 9);
}

#[test]
fn parse_errors_name_file_line_and_column() {
    let errs = errors(
        "given x = 1\ntest \"a\"\n  at yesterday page\n  at 2026-01-01T09:00:00Z page path = demo\n  expect scor = 3\n  at +1mo page\n",
    );
    assert_eq!(errs.len(), 5, "{errs:#?}");
    assert!(
        errs[0].starts_with("t.test:1:1: error: `given` before any test"),
        "{}",
        errs[0]
    );
    assert!(
        errs[1].starts_with("t.test:3:6: error: `yesterday` is not an RFC 3339 time"),
        "{}",
        errs[1]
    );
    assert!(
        errs[2].starts_with("t.test:4:39: error: `demo` is not a value"),
        "{}",
        errs[2]
    );
    assert!(errs[2].contains("`\"demo\"`"));
    assert!(
        errs[3].starts_with("t.test:5:10: error: unknown expectation `scor`"),
        "{}",
        errs[3]
    );
    assert!(
        errs[4].starts_with("t.test:6:6: error: `+1mo` is not a duration"),
        "{}",
        errs[4]
    );
}

#[test]
fn more_parse_errors() {
    let errs = errors("test \"a\"\n  at +1d page\n");
    assert!(
        errs[0].starts_with("t.test:2:6: error: `+1d` is relative"),
        "{errs:?}"
    );
    let errs = errors("test a\n");
    assert!(errs[0].starts_with("t.test:1:6: error: a test's name is written in double quotes"));
    let errs = errors("test \"a\"\ntest \"a\"\n");
    assert!(errs[0].contains("t.test:2:1: error: a test named `a` is already at line 1"));
    let errs = errors("test \"a\"\n  at 2026-01-01T09:00:00Z page\n  given lead.x = 1\n");
    assert!(
        errs[0].starts_with("t.test:3:3: error: `given` comes before"),
        "{errs:?}"
    );
    let errs = errors("test \"a\"\n  expect score = 1 extra\n");
    assert!(
        errs[0].starts_with("t.test:2:20: error: unexpected `extra`"),
        "{errs:?}"
    );
    let errs = errors("# only a comment\n");
    assert!(errs[0].contains("no tests in this file"));
    let errs =
        errors("test \"a\"\n  at 2026-01-01T09:00:00Z page\ntest \"b\"\n  expect score = 0\n");
    assert_eq!(
        errs,
        ["t.test:1:1: error: test `a` checks nothing: add an `expect` line (for example `expect score = 10`)"],
        "a test without an expectation cannot fail"
    );
    let errs = errors("test \"a\"\n  frobnicate\n");
    assert!(errs[0].starts_with("t.test:2:3: error: unknown line `frobnicate`"));
}

#[test]
fn misspelt_names_are_errors_with_did_you_mean() {
    let program = small();
    let file = parsed(
        "test \"a\"\n  expect reached mqll, notified salse\n  expect converted \"Purchas\"\n  expect notified sales mqx\n",
    );
    let errs: Vec<String> = check(&program, &file)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(errs.len(), 4, "{errs:#?}");
    assert_eq!(
        errs[0],
        "t.test:2:10: error: unknown stage `mqll`; did you mean `mql`?"
    );
    assert_eq!(
        errs[1],
        "t.test:2:24: error: unknown notify target `salse`; did you mean `sales`?"
    );
    assert!(errs[2].contains("unknown conversion `Purchas`; did you mean `Purchase`?"));
    assert!(errs[3].contains("unknown stage or conversion `mqx`"));
}

#[test]
fn misspelt_event_names_are_errors() {
    let program = small();
    let file = parsed(
        "test \"a\"\n  at 2026-01-01T00:00:00Z \"Form Submited\" form = \"demo\"\n  at +1d \"Something Else\"\n  expect score = 0\n",
    );
    let errs: Vec<String> = check(&program, &file)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        errs,
        vec!["t.test:2:27: error: no rule uses the event `Form Submited`; did you mean `Form Submitted`?"]
    );
}

// ---------------------------------------------------------------------------------------------
// expectations
// ---------------------------------------------------------------------------------------------

#[test]
fn numbers_stages_and_reached_pass_when_right() {
    let r = run_one(
        &small(),
        r#"
test "demo"
  given lead.title = "VP"
  expect fit = 10, engagement = 0, score = 10, stage = none, no notifications
  at 2026-01-01T00:00:00Z page path = "/pricing"
  at 2026-01-01T00:00:00Z page path = "/pricing"
  at 2026-01-01T00:00:00Z page path = "/pricing"
  expect engagement = 20
  at +10d "Form Submitted" form = "demo"
  expect engagement = 50, score = 60, stage = "sql"
  expect reached mql at 2026-01-11T00:00:00Z, reached sql
  expect notified sales, notified sales sql, not notified revenue
  at +10d tick
  expect engagement = 25
"#,
    );
    assert!(r.passed(), "{:#?}", r.failures);
}

#[test]
fn decimals_compare_to_two_digits() {
    // 10 * 2^(-1/10) = 9.3303...
    let r = run_one(
        &small(),
        "test \"d\"\n  at 2026-01-01T00:00:00Z page path = \"/pricing\"\n  at +1d tick\n  expect engagement = 9.33\n",
    );
    assert!(r.passed(), "{:#?}", r.failures);
    let r = run_one(
        &small(),
        "test \"d\"\n  at 2026-01-01T00:00:00Z page path = \"/pricing\"\n  at +1d tick\n  expect engagement = 9.3\n",
    );
    assert_eq!(r.failures.len(), 1);
    assert_eq!(r.failures[0].expected, "engagement = 9.3");
    assert_eq!(r.failures[0].got, "9.33");
}

#[test]
fn conversions_count_and_value() {
    let r = run_one(
        &small(),
        r#"
test "buys"
  expect not converted "Purchase"
  at 2026-01-01T00:00:00Z "Order Completed" revenue = 100
  at +1h "Order Completed" revenue = 20.5
  expect converted "Purchase", converted "Purchase" count 2 value 120.5
  expect notified revenue "Purchase", not notified sales
"#,
    );
    assert!(r.passed(), "{:#?}", r.failures);
}

#[test]
fn failures_report_expected_and_actual_with_lines() {
    let r = run_one(
        &small(),
        r#"
test "wrong"
  at 2026-01-01T00:00:00Z page path = "/pricing"
  expect engagement = 12, stage = "mql"
  expect reached mql, not reached sql
  at 2026-01-01T00:00:00Z "Order Completed" revenue = 5
  expect converted "Purchase" count 2 value 7, not converted "Purchase"
  expect notified sales, no notifications, not notified revenue
"#,
    );
    assert!(!r.passed());
    let got: Vec<(usize, &str, &str)> = r
        .failures
        .iter()
        .map(|f| (f.line, f.expected.as_str(), f.got.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (4, "engagement = 12", "10"),
            (4, "stage = \"mql\"", "none"),
            (5, "reached mql", "not reached"),
            (
                7,
                "converted \"Purchase\" count 2 value 7",
                "converted count 1 value 5"
            ),
            (
                7,
                "not converted \"Purchase\"",
                "converted at 2026-01-01T00:00:00Z (count 1)"
            ),
            (8, "notified sales", "notifications: revenue Purchase"),
            (8, "no notifications", "notifications: revenue Purchase"),
            (8, "not notified revenue", "notifications: revenue Purchase"),
        ]
    );
}

#[test]
fn reached_at_the_wrong_time_and_limits() {
    let r = run_one(
        &small(),
        r#"
test "limit"
  given lead.title = "VP"
  at 2026-01-01T00:00:00Z page path = "/pricing"
  at 2026-01-01T00:00:00Z page path = "/pricing"
  at 2026-01-01T00:00:00Z page path = "/pricing"
  expect engagement = 30
  at 2026-01-01T00:00:00Z "Form Submitted" form = "demo"
  expect reached mql at 2026-01-02T00:00:00Z, not reached sql
"#,
    );
    // the third pricing page is refused (limit 2 per 7d): 20, then +40
    assert_eq!(r.failures.len(), 3, "{:#?}", r.failures);
    assert_eq!(r.failures[0].expected, "engagement = 30");
    assert_eq!(r.failures[0].got, "20");
    assert_eq!(r.failures[1].got, "reached at 2026-01-01T00:00:00Z");
    assert_eq!(r.failures[2].expected, "not reached sql");
}

#[test]
fn identify_and_group_change_fit() {
    let r = run_one(
        &small(),
        r#"
test "fit"
  at 2026-01-01T00:00:00Z identify title = "VP"
  expect fit = 10
  at +1m identify title = null
  expect fit = 0
"#,
    );
    assert!(r.passed(), "{:#?}", r.failures);
}

// ---------------------------------------------------------------------------------------------
// the shipped tests
// ---------------------------------------------------------------------------------------------

#[test]
fn shipped_acme_tests_pass() {
    let program = acme();
    let path = acme_dir().join("acme.test");
    let text = std::fs::read_to_string(&path).unwrap();
    let file = parse("acme.test", &text).unwrap();
    assert!(check(&program, &file).is_empty());
    assert!(file.tests.len() >= 6);
    for r in run(&program, &file) {
        assert!(r.passed(), "{}: {:#?}", r.name, r.failures);
    }
}

#[test]
fn discover_finds_rule_sets_and_their_tests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules");
    let suites = discover(&[root]).unwrap();
    let acme = suites
        .iter()
        .find(|s| s.rules.ends_with("b2b-saas"))
        .expect("the acme suite");
    assert!(acme.tests.iter().any(|t| t.ends_with("acme.test")));
    let one = discover(&[acme_dir().join("acme.rules")]).unwrap();
    assert_eq!(one[0].tests.len(), 1);
    assert!(discover(&[PathBuf::from("/no/such/place")]).is_err());
}
