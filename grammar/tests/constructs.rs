//! Every construct of the rules language (SPEC §2, §3), compiled and evaluated through
//! `compile` + `apply`, checked against values computed by hand.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use common::*;
use leadscore_rules::eval::{self, LeadState, Transition};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------
// ruleset

#[test]
fn ruleset_names_the_program() {
    let p = program("ruleset \"acme-b2b\"\nscore \"a\" +1 on X\n");
    assert_eq!(p.name, "acme-b2b");
    assert_eq!(p.scores.len(), 1);
}

#[test]
fn ruleset_may_live_in_any_file_of_the_set_and_files_are_one_program() {
    let (compiled, _) = compile_files(&[
        ("10-scores.rules", "score \"a\" +1 on X\n"),
        (
            "20-stages.rules",
            "ruleset \"split\"\nstage s when engagement >= 2\n",
        ),
        ("30-more.rules", "score \"b\" +1 on X\n"),
    ]);
    let p = compiled.program.expect("compiles");
    assert_eq!(p.name, "split");
    // file order is rule order
    assert_eq!(p.scores[0].name, "a");
    assert_eq!(p.scores[1].name, "b");
    let mut state = LeadState::new(&p);
    let mut out = Vec::new();
    eval::apply(&p, &mut state, &hit("X", t0()), &mut out);
    approx(state.engagement, 2.0);
    assert_eq!(state.stage(&p), Some("s"));
}

// ---------------------------------------------------------------------------------------
// fit: every operator on profile traits

/// Whether `fit "x" +1 when COND` holds for a profile made of `traits` (one identify call).
fn fit_holds(cond: &str, traits: Value) -> bool {
    let mut lead = Lead::new(&format!("fit \"x\" +1 when {cond}\n"));
    lead.apply(&identify(t0(), traits));
    let fit = lead.fit();
    assert!(fit == 0.0 || fit == 1.0, "fit {fit}");
    fit == 1.0
}

#[track_caller]
fn check_fit(cond: &str, traits: Value, expected: bool) {
    assert_eq!(
        fit_holds(cond, traits.clone()),
        expected,
        "`{cond}` on {traits}"
    );
}

#[test]
fn fit_equality_is_typed_and_case_sensitive() {
    check_fit(r#"lead.role == "cto""#, json!({"role": "cto"}), true);
    check_fit(r#"lead.role == "cto""#, json!({"role": "CTO"}), false);
    check_fit("lead.n == 10", json!({"n": 10.0}), true);
    check_fit("lead.n == 10", json!({"n": 10}), true);
    check_fit("lead.n == 10", json!({"n": "10"}), false);
    check_fit("lead.vip == true", json!({"vip": true}), true);
    check_fit("lead.vip == false", json!({"vip": false}), true);
    check_fit("lead.vip == true", json!({"vip": "true"}), false);
    check_fit("lead.t == -2.5", json!({"t": -2.5}), true);
    check_fit("lead.t < -2", json!({"t": -2.5}), true);
    check_fit("lead.t > -2", json!({"t": -2.5}), false);
}

#[test]
fn fit_not_equal_is_not_of_equal_and_true_on_missing() {
    check_fit("lead.n != 10", json!({"n": 11}), true);
    check_fit("lead.n != 10", json!({"n": 10}), false);
    check_fit("lead.n != 10", json!({}), true);
    check_fit("lead.n != 10", json!({"n": "10"}), true);
    check_fit(r#"lead.role != "student""#, json!({}), true);
    check_fit(r#"not (lead.role == "student")"#, json!({}), true);
    check_fit(
        r#"lead.role != "student""#,
        json!({"role": "student"}),
        false,
    );
}

#[test]
fn fit_ordering_operators() {
    for (cond, n, expected) in [
        ("lead.n < 10", 9.0, true),
        ("lead.n < 10", 10.0, false),
        ("lead.n <= 10", 10.0, true),
        ("lead.n <= 10", 10.5, false),
        ("lead.n > 10", 10.5, true),
        ("lead.n > 10", 10.0, false),
        ("lead.n >= 10", 10.0, true),
        ("lead.n >= 10", 9.99, false),
    ] {
        check_fit(cond, json!({ "n": n }), expected);
    }
}

#[test]
fn fit_between_is_inclusive_and_numeric_only() {
    let cond = "lead.company.employees between 50 and 5000";
    for (n, expected) in [
        (49, false),
        (50, true),
        (120, true),
        (5000, true),
        (5001, false),
    ] {
        check_fit(cond, json!({"company": {"employees": n}}), expected);
    }
    check_fit(cond, json!({"company": {"employees": "120"}}), false);
    check_fit(cond, json!({}), false);
}

#[test]
fn fit_in_a_list_of_strings_and_numbers() {
    let cond = r#"lead.country in ["DE", "AT", "CH"]"#;
    check_fit(cond, json!({"country": "AT"}), true);
    check_fit(cond, json!({"country": "FR"}), false);
    check_fit(cond, json!({"country": "at"}), false);
    check_fit(cond, json!({}), false);
    check_fit("lead.size in [10, 20, 50]", json!({"size": 20}), true);
    check_fit("lead.size in [10, 20, 50]", json!({"size": "20"}), false);
    let mixed = r#"lead.v in ["a", 1, true]"#;
    check_fit(mixed, json!({"v": "a"}), true);
    check_fit(mixed, json!({"v": 1}), true);
    check_fit(mixed, json!({"v": true}), true);
    check_fit(mixed, json!({"v": "1"}), false);
    check_fit(mixed, json!({"v": false}), false);
}

#[test]
fn fit_contains_on_strings_and_lists() {
    check_fit(
        r#"lead.title contains "Sales""#,
        json!({"title": "VP Sales EMEA"}),
        true,
    );
    check_fit(
        r#"lead.title contains "Sales""#,
        json!({"title": "vp sales"}),
        false,
    );
    check_fit(
        r#"lead.tags contains "vip""#,
        json!({"tags": ["a", "vip"]}),
        true,
    );
    check_fit(
        r#"lead.tags contains "vip""#,
        json!({"tags": ["VIP", "vipx"]}),
        false,
    );
    check_fit("lead.nums contains 3", json!({"nums": [1, 3]}), true);
    check_fit("lead.nums contains 3", json!({"nums": ["3"]}), false);
    check_fit(r#"lead.tags contains "vip""#, json!({}), false);
    check_fit(r#"lead.n contains "1""#, json!({"n": 123}), false);
}

#[test]
fn fit_starts_with_and_ends_with() {
    check_fit(
        r#"lead.email ends_with "@gmail.com""#,
        json!({"email": "a@gmail.com"}),
        true,
    );
    check_fit(
        r#"lead.email ends_with "@gmail.com""#,
        json!({"email": "a@GMAIL.com"}),
        false,
    );
    check_fit(
        r#"lead.email ends_with "@gmail.com""#,
        json!({"email": "a@gmail.com.au"}),
        false,
    );
    check_fit(
        r#"lead.url starts_with "https://""#,
        json!({"url": "https://x"}),
        true,
    );
    check_fit(
        r#"lead.url starts_with "https://""#,
        json!({"url": "http://x"}),
        false,
    );
    check_fit(r#"lead.url starts_with "https://""#, json!({}), false);
}

#[test]
fn fit_matches_searches_anywhere_with_optional_ignore_case() {
    let senior = r"lead.title matches /\b(vp|director|head|chief)\b/i";
    check_fit(senior, json!({"title": "VP Sales"}), true);
    check_fit(senior, json!({"title": "Director of Marketing"}), true);
    check_fit(senior, json!({"title": "Development lead"}), false);
    check_fit(senior, json!({"title": 42}), false);
    check_fit(senior, json!({}), false);
    // anywhere, not anchored
    check_fit(
        "lead.title matches /vp/i",
        json!({"title": "MVP builder"}),
        true,
    );
    check_fit(
        "lead.title matches /^vp$/i",
        json!({"title": "MVP builder"}),
        false,
    );
    // without `i`, case counts
    check_fit("lead.title matches /vp/", json!({"title": "VP"}), false);
    check_fit("lead.title matches /vp/", json!({"title": "svp"}), true);
    // an escaped slash
    check_fit(
        r"lead.path matches /^\/pricing/",
        json!({"path": "/pricing/x"}),
        true,
    );
}

#[test]
fn fit_exists() {
    check_fit("lead.phone exists", json!({"phone": "+49"}), true);
    check_fit("lead.phone exists", json!({"phone": ""}), true);
    check_fit("lead.phone exists", json!({"phone": false}), true);
    check_fit("lead.phone exists", json!({}), false);
    check_fit("lead.phone exists", json!({"phone": null}), false);
    check_fit("not (lead.phone exists)", json!({}), true);
    check_fit("lead.a.b exists", json!({"a": {"b": 1}}), true);
    check_fit("lead.a.b exists", json!({"a": 1}), false);
}

#[test]
fn fit_and_or_not_parentheses_and_precedence() {
    let t = json!({"a": true, "b": false, "c": false});
    check_fit("lead.a and lead.b", t.clone(), false);
    check_fit("lead.a or lead.b", t.clone(), true);
    check_fit("not lead.b", t.clone(), true);
    check_fit("not not lead.a", t.clone(), true);
    // `and` binds tighter than `or`: a or (b and c) = true; (a or b) and c would be false
    check_fit("lead.a or lead.b and lead.c", t.clone(), true);
    check_fit("(lead.a or lead.b) and lead.c", t.clone(), false);
    // and the other way round: (b and c) or a
    check_fit("lead.b and lead.c or lead.a", t.clone(), true);
    // `not` applies to the one comparison after it: (not b) and c = false; not (b and c) = true
    check_fit("not lead.b and lead.c", t.clone(), false);
    check_fit("not (lead.b and lead.c)", t.clone(), true);
    // nested parentheses
    check_fit("((lead.a) and (lead.b or (lead.a)))", t, true);
}

#[test]
fn fit_missing_values_and_cross_type_comparisons_are_false() {
    let empty = json!({});
    check_fit(r#"lead.role == "student""#, empty.clone(), false);
    check_fit("lead.role exists", empty.clone(), false);
    check_fit("lead.age > 30", empty.clone(), false);
    check_fit("lead.age <= 30", empty.clone(), false);
    check_fit("not (lead.age > 30)", empty.clone(), true);
    check_fit("lead.age between 1 and 100", empty, false);
    // a JSON null is missing
    check_fit("lead.age <= 30", json!({"age": null}), false);
    // across types: never converted
    check_fit("lead.employees >= 50", json!({"employees": "120"}), false);
    check_fit("lead.employees < 50", json!({"employees": "120"}), false);
    check_fit("lead.employees == 120", json!({"employees": "120"}), false);
    check_fit(
        r#"lead.employees == "120""#,
        json!({"employees": 120}),
        false,
    );
    check_fit("lead.flag == 1", json!({"flag": true}), false);
    check_fit("lead.list == 1", json!({"list": [1]}), false);
    check_fit(
        r#"lead.obj starts_with "a""#,
        json!({"obj": {"a": 1}}),
        false,
    );
}

#[test]
fn fit_bare_path_means_equal_to_true() {
    let cond = "lead.company.target_account";
    check_fit(cond, json!({"company": {"target_account": true}}), true);
    check_fit(cond, json!({"company": {"target_account": false}}), false);
    check_fit(cond, json!({"company": {"target_account": "true"}}), false);
    check_fit(cond, json!({"company": {"target_account": 1}}), false);
    check_fit(cond, json!({}), false);
}

#[test]
fn fit_sums_points_of_rules_that_hold_including_negative_and_fractional() {
    let mut lead = Lead::new(
        r#"
fit "Senior title"   +15 when lead.title matches /\b(vp|director|head|chief)\b/i
fit "Target size"    +10 when lead.company.employees between 50 and 5000
fit "Personal email" -20 when lead.email ends_with "@gmail.com" or lead.email ends_with "@yahoo.com"
fit "Half"           2.5 when lead.half
fit "Minus half"     -0.5 when lead.half
"#,
    );
    approx(lead.fit(), 0.0);
    lead.apply(&identify(
        t0(),
        json!({"title": "Head of Growth", "email": "x@yahoo.com"}),
    ));
    approx(lead.fit(), -5.0);
    lead.apply(&group(t0() + 1, json!({"employees": 120})));
    approx(lead.fit(), 5.0);
    lead.apply(&identify(t0() + 2, json!({"half": true})));
    approx(lead.fit(), 7.0);
    approx(lead.score(), 7.0);
}

#[test]
fn group_traits_are_merged_under_company() {
    let mut lead = Lead::new(
        "fit \"Target size\" +10 when lead.company.employees between 50 and 5000\n\
         fit \"Industry\" +3 when lead.company.industry == \"saas\"\n",
    );
    lead.apply(&group(t0(), json!({"employees": 120})));
    approx(lead.fit(), 10.0);
    assert_eq!(lead.state.profile["company"]["employees"], json!(120));
    // a second group call merges: employees stays
    lead.apply(&group(t0() + 1, json!({"industry": "saas"})));
    approx(lead.fit(), 13.0);
    // and changes are recomputed
    lead.apply(&group(t0() + 2, json!({"employees": 10})));
    approx(lead.fit(), 3.0);
    // a null company trait is removed
    lead.apply(&group(t0() + 3, json!({"industry": null})));
    approx(lead.fit(), 0.0);
    assert!(lead.state.profile["company"].get("industry").is_none());
    // identify traits live beside the company
    lead.apply(&identify(t0() + 4, json!({"title": "x"})));
    assert_eq!(lead.state.profile["company"]["employees"], json!(10));
}

#[test]
fn identify_null_removes_a_trait_and_fit_is_recomputed() {
    let mut lead = Lead::new(
        "fit \"Senior\" +15 when lead.title matches /vp/i\nfit \"Known\" +1 when lead.title exists\n",
    );
    lead.apply(&identify(
        t0(),
        json!({"title": "VP Sales", "plan": "trial"}),
    ));
    approx(lead.fit(), 16.0);
    lead.apply(&identify(t0() + SECOND, json!({"title": null})));
    approx(lead.fit(), 0.0);
    assert!(!lead.state.profile.contains_key("title"));
    assert_eq!(lead.state.profile["plan"], json!("trial"));
}

#[test]
fn a_new_lead_has_the_fit_of_an_empty_profile() {
    let mut lead = Lead::new(
        "fit \"x\" +5 when lead.role != \"student\"\nfit \"y\" +7 when lead.role exists\n\
         score \"v\" +1 on Visit\n",
    );
    // before any event
    approx(lead.fit(), 5.0);
    // from the first event on, even one that is not identify
    lead.apply(&hit("Visit", t0()));
    approx(lead.fit(), 5.0);
    approx(lead.score(), 6.0);
    lead.apply(&identify(t0() + 1, json!({"role": "student"})));
    approx(lead.fit(), 7.0);
    lead.apply(&identify(t0() + 2, json!({"role": "cto"})));
    approx(lead.fit(), 12.0);
}

#[test]
fn fit_never_decays() {
    let mut lead = Lead::new(
        "fit \"a\" +10 when lead.a\nscore \"s\" +8 on X\ndecay engagement half_life 1d\n",
    );
    lead.apply(&identify(t0(), json!({"a": true})));
    lead.apply(&hit("X", t0()));
    lead.apply(&hit("Y", t0() + 3 * DAY));
    approx(lead.fit(), 10.0);
    approx(lead.engagement(), 1.0);
    approx(lead.score(), 11.0);
}

// ---------------------------------------------------------------------------------------
// score rules: patterns, where, once, limit

#[test]
fn score_on_page_screen_quoted_and_bare_track_names() {
    let mut lead = Lead::new(
        r#"
score "Any page"    +1 on page
score "Any screen"  +2 on screen
score "Quoted"      +4 on "Form Submitted"
score "Bare"        +8 on Signup
score "Quoted page" +16 on "page"
"#,
    );
    lead.apply(&page(t0(), json!({"path": "/"})));
    approx(lead.engagement(), 1.0);
    lead.apply(&screen(t0() + 1, json!({"name": "Home"})));
    approx(lead.engagement(), 3.0);
    lead.apply(&hit("Form Submitted", t0() + 2));
    approx(lead.engagement(), 7.0);
    lead.apply(&hit("Signup", t0() + 3));
    approx(lead.engagement(), 15.0);
    // a track event named "page" is not a page call, and the other way round
    lead.apply(&hit("page", t0() + 4));
    approx(lead.engagement(), 31.0);
    // names are exact, case included
    lead.apply(&hit("form submitted", t0() + 5));
    lead.apply(&hit("signup", t0() + 6));
    lead.apply(&hit("screen", t0() + 7));
    approx(lead.engagement(), 31.0);
    // identify, group and alias never match a pattern
    lead.apply(&identify(t0() + 8, json!({"x": 1})));
    lead.apply(&group(t0() + 9, json!({"x": 1})));
    approx(lead.engagement(), 31.0);
}

#[test]
fn score_where_reads_event_properties_nested_and_explicit() {
    let mut lead = Lead::new(
        r#"
score "Pricing page" +10 on page where path starts_with "/pricing"
score "Demo request" +40 on "Form Submitted" where form == "demo"
score "SKU"          +3 on "Product Viewed" where product.sku == "A-1"
score "Big cart"     +15 on "Checkout Started" where properties.value >= 1000
score "Explicit"     +100 on "Form Submitted" where properties.form == "contact"
"#,
    );
    lead.apply(&page(t0(), json!({"path": "/pricing/enterprise"})));
    lead.apply(&page(t0(), json!({"path": "/careers"})));
    approx(lead.engagement(), 10.0);
    lead.apply(&track("Form Submitted", t0(), json!({"form": "Demo"})));
    approx(lead.engagement(), 10.0);
    lead.apply(&track("Form Submitted", t0(), json!({"form": "demo"})));
    approx(lead.engagement(), 50.0);
    lead.apply(&track(
        "Product Viewed",
        t0(),
        json!({"product": {"sku": "A-1"}}),
    ));
    lead.apply(&track("Product Viewed", t0(), json!({"sku": "A-1"})));
    lead.apply(&track("Product Viewed", t0(), json!({"product": "A-1"})));
    approx(lead.engagement(), 53.0);
    lead.apply(&track("Checkout Started", t0(), json!({"value": 999.99})));
    lead.apply(&track("Checkout Started", t0(), json!({"value": "5000"})));
    approx(lead.engagement(), 53.0);
    lead.apply(&track("Checkout Started", t0(), json!({"value": 1000})));
    approx(lead.engagement(), 68.0);
    lead.apply(&track("Form Submitted", t0(), json!({"form": "contact"})));
    approx(lead.engagement(), 168.0);
    // the profile is readable in a where too; properties are not the profile
    let mut lead =
        Lead::new("score \"Trial use\" +2 on \"Feature Used\" where lead.plan == \"trial\"\n");
    lead.apply(&track("Feature Used", t0(), json!({"plan": "trial"})));
    approx(lead.engagement(), 0.0);
    lead.apply(&identify(t0(), json!({"plan": "trial"})));
    lead.apply(&hit("Feature Used", t0()));
    approx(lead.engagement(), 2.0);
}

#[test]
fn score_fit_and_engagement_are_the_lead_s_scores_inside_where_too() {
    let mut lead = Lead::new(
        r#"
fit "f" +3 when lead.a
score "Own score"   +1 on Rated where score >= 5
score "Property"    +10 on Rated where properties.score >= 5
score "Fit"         +100 on Rated where fit == 3 and engagement >= 20
"#,
    );
    lead.apply(&identify(t0(), json!({"a": true})));
    // the event's `score` property is 9, the lead's score is 3: only `properties.score`
    lead.apply(&track("Rated", t0(), json!({"score": 9})));
    approx(lead.engagement(), 10.0);
    approx(lead.score(), 13.0);
    // now the lead's score is 13: +1, +10 (properties.score 5), then +100 (engagement 21)
    lead.apply(&track("Rated", t0(), json!({"score": 5})));
    approx(lead.engagement(), 121.0);
}

#[test]
fn score_where_sees_the_points_of_rules_above_it_in_the_same_event() {
    let mut lead = Lead::new(
        r#"
score "Before" +100 on X where engagement >= 15
score "A"      +10  on X
score "B"      +5   on X where engagement >= 10
score "C"      +1   on X where score >= 116 and fit == 0
"#,
    );
    // Before sees 0; A gives 10; B sees 10; C sees 15
    lead.apply(&hit("X", t0()));
    approx(lead.engagement(), 15.0);
    // Before sees 15 (+100 = 115); A: 125; B: 130; C sees 130
    lead.apply(&hit("X", t0() + 1));
    approx(lead.engagement(), 131.0);
}

#[test]
fn score_once_is_once_per_lead_and_a_failed_where_does_not_use_it_up() {
    let mut lead = Lead::new(
        "score \"Unsubscribed\" -30 on \"Email Unsubscribed\" once\n\
         score \"Trial\" +15 on \"Signed Up\" where trial once\n",
    );
    lead.apply(&hit("Email Unsubscribed", t0()));
    lead.apply(&hit("Email Unsubscribed", t0() + DAY));
    lead.apply(&hit("Email Unsubscribed", t0() + 400 * DAY));
    approx(lead.engagement(), -30.0);
    lead.apply(&track(
        "Signed Up",
        t0() + 401 * DAY,
        json!({"trial": false}),
    ));
    lead.apply(&track(
        "Signed Up",
        t0() + 401 * DAY,
        json!({"trial": "true"}),
    ));
    approx(lead.engagement(), -30.0);
    lead.apply(&track(
        "Signed Up",
        t0() + 401 * DAY,
        json!({"trial": true}),
    ));
    approx(lead.engagement(), -15.0);
    lead.apply(&track(
        "Signed Up",
        t0() + 402 * DAY,
        json!({"trial": true}),
    ));
    approx(lead.engagement(), -15.0);
}

#[test]
fn score_limit_is_a_rolling_window_open_at_t_minus_d_and_closed_at_t() {
    let mut lead = Lead::new(
        "score \"Pricing\" +1 on page where path starts_with \"/pricing\" limit 3 per 1h\n",
    );
    let p = |offset| page(t0() + offset, json!({"path": "/pricing"}));
    let steps = [
        (0, 1.0),                      // award 1
        (10 * MINUTE, 2.0),            // award 2
        (20 * MINUTE, 3.0),            // award 3
        (30 * MINUTE, 3.0),            // refused: 0, 10m, 20m in (−30m, 30m]
        (HOUR - SECOND, 3.0),          // refused: 0 is still inside (−1s, 59m59s]
        (HOUR, 4.0),                   // award: (0, 60m] holds 10m and 20m only
        (HOUR, 4.0),                   // refused: 10m, 20m, 60m
        (HOUR + 10 * MINUTE - 1, 4.0), // refused: 10m is inside
        (HOUR + 10 * MINUTE, 5.0),     // award: (10m, 70m] holds 20m and 60m
        (HOUR + 20 * MINUTE, 6.0),     // award: (20m, 80m] holds 60m and 70m
        (HOUR + 30 * MINUTE, 6.0),     // refused
    ];
    for (offset, expected) in steps {
        lead.apply(&p(offset));
        assert_eq!(lead.engagement(), expected, "at +{}s", offset / SECOND);
    }
    // a non-matching page never counts towards the limit
    lead.apply(&page(t0() + 3 * HOUR, json!({"path": "/blog"})));
    approx(lead.engagement(), 6.0);
}

#[test]
fn score_limit_uses_the_event_time_of_a_late_event() {
    let mut lead = Lead::new("score \"L\" +1 on X limit 2 per 1d\n");
    lead.apply(&hit("X", t0() + 10 * DAY));
    lead.apply(&hit("X", t0() + 10 * DAY + HOUR));
    lead.apply(&hit("X", t0() + 10 * DAY + 2 * HOUR));
    approx(lead.engagement(), 2.0);
    assert_eq!(lead.state.clock, Some(t0() + 10 * DAY + 2 * HOUR));
    // late, dated day 9 + 12h: (day 8 + 12h, day 9 + 12h] is empty
    lead.apply(&hit("X", t0() + 9 * DAY + 12 * HOUR));
    approx(lead.engagement(), 3.0);
    // late, dated day 9 + 23h: window (day 8 + 23h, day 9 + 23h] holds day 9 + 12h only
    lead.apply(&hit("X", t0() + 9 * DAY + 23 * HOUR));
    approx(lead.engagement(), 4.0);
    // late, dated day 10 + 30m: window holds 9d12h, 9d23h and 10d: refused
    lead.apply(&hit("X", t0() + 10 * DAY + 30 * MINUTE));
    approx(lead.engagement(), 4.0);
    // on time, day 10 + 2h + 1s: window holds 9d23h, 10d, 10d1h (and not 9d12h): refused
    lead.apply(&hit("X", t0() + 10 * DAY + 2 * HOUR + SECOND));
    approx(lead.engagement(), 4.0);
    // day 11 + 1h: window (10d1h, 11d1h] holds 10d2h only
    lead.apply(&hit("X", t0() + 11 * DAY + HOUR));
    approx(lead.engagement(), 5.0);
}

#[test]
fn durations_in_every_unit_are_exact_limit_periods() {
    for (text, micros) in [
        ("30s", 30 * SECOND),
        ("30m", 30 * MINUTE),
        ("12h", 12 * HOUR),
        ("7d", 7 * DAY),
        ("2w", 2 * WEEK),
        ("1w", WEEK),
    ] {
        let mut lead = Lead::new(&format!("score \"x\" +1 on X limit 1 per {text}\n"));
        lead.apply(&hit("X", t0()));
        lead.apply(&hit("X", t0() + micros - 1));
        assert_eq!(lead.engagement(), 1.0, "{text}: refused just inside");
        lead.apply(&hit("X", t0() + micros));
        assert_eq!(lead.engagement(), 2.0, "{text}: allowed at t - D");
    }
}

// ---------------------------------------------------------------------------------------
// decay, cap, floor

#[test]
fn decay_halves_engagement_every_half_life() {
    let mut lead = Lead::new("score \"Big\" +40 on Big\ndecay engagement half_life 30d\n");
    lead.apply(&hit("Big", at("2026-01-01T00:00:00Z")));
    approx(lead.engagement(), 40.0);
    lead.apply(&hit("Noop", at("2026-01-16T00:00:00Z")));
    approx(lead.engagement(), 40.0 * 2f64.powf(-0.5)); // 28.28
    assert!((lead.engagement() - 28.28).abs() < 0.005);
    lead.apply(&hit("Noop", at("2026-01-31T00:00:00Z")));
    approx(lead.engagement(), 20.0);
    lead.apply(&hit("Noop", at("2026-03-02T00:00:00Z")));
    approx(lead.engagement(), 10.0);
    // decay is applied before the event's points
    lead.apply(&hit("Big", at("2026-04-01T00:00:00Z")));
    approx(lead.engagement(), 45.0);
}

#[test]
fn decay_of_negative_engagement_goes_toward_zero() {
    let mut lead = Lead::new("score \"Neg\" -40 on Neg\ndecay engagement half_life 1d\n");
    lead.apply(&hit("Neg", t0()));
    lead.apply(&hit("Noop", t0() + 2 * DAY));
    approx(lead.engagement(), -10.0);
}

#[test]
fn late_event_is_applied_at_the_clock_and_decay_never_runs_backwards() {
    let mut lead = Lead::new(
        "score \"Big\" +40 on Big\ndecay engagement half_life 30d\nstage hot when engagement >= 50\n",
    );
    let jan1 = at("2026-01-01T00:00:00Z");
    let jan10 = at("2026-01-10T00:00:00Z");
    let jan31 = at("2026-01-31T00:00:00Z");
    lead.apply(&hit("Big", jan1));
    lead.apply(&hit("Noop", jan31));
    approx(lead.engagement(), 20.0);
    // dated Jan 10, arrives after Jan 31: +40 on 20, no decay, clock stays
    let transitions = lead.apply(&hit("Big", jan10));
    approx(lead.engagement(), 60.0);
    assert_eq!(lead.state.clock, Some(jan31));
    // the stage carries the late event's own time
    assert_eq!(transitions, vec![lead.stage_t("hot", jan10)]);
    assert_eq!(lead.reached("hot"), Some(jan10));
    // an event before the first one moves first_seen; last_seen stays the latest
    lead.apply(&hit("Noop", at("2025-12-25T00:00:00Z")));
    assert_eq!(lead.state.first_seen, at("2025-12-25T00:00:00Z"));
    assert_eq!(lead.state.last_seen, jan31);
    assert_eq!(lead.state.clock, Some(jan31));
    approx(lead.engagement(), 60.0);
    // the next on-time event decays from the clock (Jan 31), not from the late event
    lead.apply(&hit("Noop", at("2026-03-02T00:00:00Z")));
    approx(lead.engagement(), 30.0);
    assert_eq!(lead.state.events, 5);
}

#[test]
fn cap_clamps_after_each_rule_not_only_at_the_end() {
    let mut lead =
        Lead::new("score \"Up\" +100 on X\nscore \"Down\" -60 on X\ncap engagement at 150\n");
    lead.apply(&hit("X", t0()));
    approx(lead.engagement(), 40.0);
    lead.apply(&hit("X", t0() + 1));
    approx(lead.engagement(), 80.0);
    // 80 + 100 = 180 → 150, then − 60 = 90 (not 120)
    lead.apply(&hit("X", t0() + 2));
    approx(lead.engagement(), 90.0);
}

#[test]
fn floor_clamps_after_each_rule_and_after_decay() {
    let mut lead = Lead::new(
        "score \"Down\" -40 on Down\nscore \"Up\" +10 on Up\nscore \"Up2\" +5 on Up\n\
         floor engagement at -50\ndecay engagement half_life 1d\n",
    );
    lead.apply(&hit("Down", t0()));
    lead.apply(&hit("Down", t0()));
    approx(lead.engagement(), -50.0);
    lead.apply(&hit("Up", t0()));
    approx(lead.engagement(), -35.0);
    lead.apply(&hit("Noop", t0() + DAY));
    approx(lead.engagement(), -17.5);

    // a floor above zero: decay below it is clamped back up
    let mut lead =
        Lead::new("score \"Up\" +20 on Up\nfloor engagement at 5\ndecay engagement half_life 1d\n");
    // a new lead's 0 is clamped to the floor first: 5 + 20
    lead.apply(&hit("Up", t0()));
    approx(lead.engagement(), 25.0);
    lead.apply(&hit("Noop", t0() + DAY));
    approx(lead.engagement(), 12.5);
    // 25 / 8 = 3.125, clamped to 5
    lead.apply(&hit("Noop", t0() + 3 * DAY));
    approx(lead.engagement(), 5.0);
    // and in a tick
    let mut lead =
        Lead::new("score \"Up\" +20 on Up\nfloor engagement at 5\ndecay engagement half_life 1d\n");
    lead.apply(&hit("Up", t0()));
    lead.tick(t0() + 10 * DAY);
    approx(lead.engagement(), 5.0);
}

#[test]
fn cap_applies_after_decay_and_award_counts_even_when_absorbed() {
    let mut lead = Lead::new(
        "score \"Up\" +100 on Up limit 2 per 1d\ncap engagement at 150\ndecay engagement half_life 1d\n",
    );
    lead.apply(&hit("Up", t0()));
    lead.apply(&hit("Up", t0() + 1));
    approx(lead.engagement(), 150.0);
    // the third is refused by the limit (two awards in the window) even though both
    // were clipped
    lead.apply(&hit("Up", t0() + 2));
    approx(lead.engagement(), 150.0);
    // after a day: 150 → 75, +100 = 175 → 150
    lead.apply(&hit("Up", t0() + DAY + 2));
    approx(lead.engagement(), 150.0);
}

#[test]
fn the_worked_example_of_the_language_reference() {
    let mut lead = Lead::new(
        r#"
fit "Senior title"   +15 when lead.title matches /\b(vp|director|head|chief)\b/i
score "Pricing page" +10 on page where path starts_with "/pricing" limit 3 per 7d
score "Webinar"      +20 on "Webinar Registered"
score "Demo request" +40 on "Form Submitted" where form == "demo"
decay engagement half_life 30d

stage mql when engagement >= 40 and fit >= 10
stage sql when reached mql and (event "Form Submitted" where form == "demo" or score >= 100)
"#,
    );
    lead.apply(&identify(
        at("2026-01-01T09:00:00Z"),
        json!({"title": "VP Sales"}),
    ));
    approx(lead.fit(), 15.0);
    lead.apply(&page(
        at("2026-01-01T10:00:00Z"),
        json!({"path": "/pricing"}),
    ));
    approx(lead.score(), 25.0);
    lead.apply(&hit("Webinar Registered", at("2026-01-11T10:00:00Z")));
    let e = 10.0 * 2f64.powf(-10.0 / 30.0) + 20.0;
    approx(lead.engagement(), e);
    assert!((lead.engagement() - 27.94).abs() < 0.005);
    let last = at("2026-01-12T10:00:00Z");
    let tr = lead.apply(&track("Form Submitted", last, json!({"form": "demo"})));
    let e = e * 2f64.powf(-1.0 / 30.0) + 40.0;
    approx(lead.engagement(), e);
    assert!((lead.engagement() - 67.30).abs() < 0.005);
    assert!((lead.score() - 82.30).abs() < 0.005);
    assert_eq!(
        tr,
        vec![lead.stage_t("mql", last), lead.stage_t("sql", last)]
    );
    assert_eq!(lead.stage(), Some("sql"));
}

// ---------------------------------------------------------------------------------------
// stages

#[test]
fn stages_are_sticky_and_keep_their_first_time() {
    let mut lead = Lead::new(
        "score \"s\" +20 on X\ndecay engagement half_life 1d\nstage hot when engagement >= 10\n",
    );
    let tr = lead.apply(&hit("X", t0()));
    assert_eq!(tr, vec![lead.stage_t("hot", t0())]);
    let tr = lead.apply(&hit("Y", t0() + 5 * DAY));
    assert!(tr.is_empty());
    assert!(lead.engagement() < 1.0);
    assert_eq!(lead.reached("hot"), Some(t0()));
    assert_eq!(lead.stage(), Some("hot"));
    // reaching the condition again produces nothing new
    let tr = lead.apply(&hit("X", t0() + 6 * DAY));
    assert!(tr.is_empty());
    assert_eq!(lead.reached("hot"), Some(t0()));
}

#[test]
fn stage_is_the_last_declared_reached_and_stages_go_in_declaration_order() {
    let mut lead = Lead::new(
        "score \"s\" +10 on X\nscore \"t\" +1 on Y\n\
         stage a when engagement >= 10\nstage b when engagement >= 5\nstage c when engagement >= 11\n",
    );
    assert_eq!(lead.stage(), None);
    let tr = lead.apply(&hit("X", t0()));
    assert_eq!(tr, vec![lead.stage_t("a", t0()), lead.stage_t("b", t0())]);
    assert_eq!(lead.stage(), Some("b"));
    let tr = lead.apply(&hit("Y", t0() + 1));
    assert_eq!(tr, vec![lead.stage_t("c", t0() + 1)]);
    assert_eq!(lead.stage(), Some("c"));
    // a stage can be reached without the stages before it
    let mut lead = Lead::new(
        "score \"s\" +7 on X\nstage a when engagement >= 10\nstage b when engagement >= 5\n",
    );
    lead.apply(&hit("X", t0()));
    assert_eq!(lead.stage(), Some("b"));
    assert_eq!(lead.reached("a"), None);
}

#[test]
fn reached_sees_earlier_stages_of_the_same_step_but_not_later_ones() {
    let mut lead = Lead::new(
        "score \"s\" +10 on X\n\
         stage early when reached late\n\
         stage mql when engagement >= 10\n\
         stage sql when reached mql\n\
         stage late when engagement >= 10\n",
    );
    let tr = lead.apply(&hit("X", t0()));
    assert_eq!(
        tr,
        vec![
            lead.stage_t("mql", t0()),
            lead.stage_t("sql", t0()),
            lead.stage_t("late", t0())
        ]
    );
    assert_eq!(lead.reached("early"), None);
    // visible at the next call (any call, even one that matches nothing)
    let tr = lead.apply(&identify(t0() + HOUR, json!({})));
    assert_eq!(tr, vec![lead.stage_t("early", t0() + HOUR)]);
    assert_eq!(lead.stage(), Some("late"));
}

#[test]
fn a_profile_change_alone_can_reach_a_stage() {
    let mut lead =
        Lead::new("fit \"vp\" +10 when lead.title matches /vp/i\nstage icp when fit >= 10\n");
    let tr = lead.apply(&identify(t0(), json!({"title": "VP"})));
    assert_eq!(tr, vec![lead.stage_t("icp", t0())]);
}

#[test]
fn event_where_takes_one_comparison_so_or_is_outside_it() {
    let rules = "score \"Big\" +100 on Big\n\
                 stage sql when event \"Form Submitted\" where form == \"demo\" or score >= 100\n";
    // score >= 100 alone, from another event, reaches it: the `or` is not inside the where
    let mut lead = Lead::new(rules);
    let tr = lead.apply(&hit("Big", t0()));
    assert_eq!(tr, vec![lead.stage_t("sql", t0())]);
    // a demo request with a low score reaches it
    let mut lead = Lead::new(rules);
    let tr = lead.apply(&track("Form Submitted", t0(), json!({"form": "demo"})));
    assert_eq!(tr, vec![lead.stage_t("sql", t0())]);
    // another form with a low score does not
    let mut lead = Lead::new(rules);
    assert!(lead
        .apply(&track("Form Submitted", t0(), json!({"form": "other"})))
        .is_empty());
    // another event with a low score does not
    assert!(lead
        .apply(&track("Other", t0(), json!({"form": "demo"})))
        .is_empty());

    // `and` after the where is outside it too
    let rules = "fit \"f\" +10 when lead.a\n\
                 stage s when event \"Form Submitted\" where form == \"demo\" and fit >= 10\n";
    let mut lead = Lead::new(rules);
    assert!(lead
        .apply(&track("Form Submitted", t0(), json!({"form": "demo"})))
        .is_empty());
    lead.apply(&identify(t0() + 1, json!({"a": true})));
    assert_eq!(lead.reached("s"), None);
    let tr = lead.apply(&track("Form Submitted", t0() + 2, json!({"form": "demo"})));
    assert_eq!(tr, vec![lead.stage_t("s", t0() + 2)]);

    // a parenthesised where holds several tests of the event
    let rules = "stage s when event \"Form Submitted\" where (form == \"demo\" and team_size != \"1-10\")\n";
    let mut lead = Lead::new(rules);
    assert!(lead
        .apply(&track(
            "Form Submitted",
            t0(),
            json!({"form": "demo", "team_size": "1-10"})
        ))
        .is_empty());
    let tr = lead.apply(&track(
        "Form Submitted",
        t0() + 1,
        json!({"form": "demo", "team_size": "11-50"}),
    ));
    assert_eq!(tr, vec![lead.stage_t("s", t0() + 1)]);
}

#[test]
fn sql_needs_mql_when_the_or_is_in_parentheses() {
    let rules = "score \"Big\" +100 on Big\nfit \"f\" +10 when lead.a\n\
                 stage mql when engagement >= 40 and fit >= 10\n\
                 stage sql when reached mql and (event \"Form Submitted\" where form == \"demo\" or score >= 100)\n";
    // a score of 100 without fit: no mql, so no sql
    let mut lead = Lead::new(rules);
    assert!(lead.apply(&hit("Big", t0())).is_empty());
    // with fit, mql then sql in the same step
    let tr = lead.apply(&identify(t0() + 1, json!({"a": true})));
    assert_eq!(
        tr,
        vec![lead.stage_t("mql", t0() + 1), lead.stage_t("sql", t0() + 1)]
    );
}

#[test]
fn event_predicate_with_page_screen_and_no_where() {
    let mut lead = Lead::new(
        "stage p when event page where path == \"/pricing\"\nstage s when event screen\n\
         stage t when event Signup\n",
    );
    assert!(lead.apply(&page(t0(), json!({"path": "/"}))).is_empty());
    assert_eq!(
        lead.apply(&page(t0() + 1, json!({"path": "/pricing"}))),
        vec![lead.stage_t("p", t0() + 1)]
    );
    assert_eq!(
        lead.apply(&screen(t0() + 2, json!({}))),
        vec![lead.stage_t("s", t0() + 2)]
    );
    assert_eq!(
        lead.apply(&hit("Signup", t0() + 3)),
        vec![lead.stage_t("t", t0() + 3)]
    );
}

#[test]
fn count_within_includes_the_current_event_and_excludes_t_minus_d() {
    let rules = "stage busy when count(\"Feature Used\") within 1h >= 3\n";
    // 0, 30m, 59m: all three in (−1m, 59m], the current one included
    let mut lead = Lead::new(rules);
    assert!(lead.apply(&hit("Feature Used", t0())).is_empty());
    assert!(lead
        .apply(&hit("Feature Used", t0() + 30 * MINUTE))
        .is_empty());
    let tr = lead.apply(&hit("Feature Used", t0() + 59 * MINUTE));
    assert_eq!(tr, vec![lead.stage_t("busy", t0() + 59 * MINUTE)]);
    // 0, 30m, 60m: the one at 0 lies at t − D, outside (0, 60m]
    let mut lead = Lead::new(rules);
    lead.apply(&hit("Feature Used", t0()));
    lead.apply(&hit("Feature Used", t0() + 30 * MINUTE));
    assert!(lead.apply(&hit("Feature Used", t0() + HOUR)).is_empty());
    // other events do not count
    assert!(lead.apply(&hit("Feature Seen", t0() + HOUR)).is_empty());
    let tr = lead.apply(&hit("Feature Used", t0() + HOUR + MINUTE));
    assert_eq!(tr, vec![lead.stage_t("busy", t0() + HOUR + MINUTE)]);
}

#[test]
fn count_with_where_on_event_properties_and_other_comparisons() {
    let mut lead = Lead::new(
        "stage researcher when count(page where path starts_with \"/docs\") within 7d >= 2\n\
         stage exactly when count(Ping) within 1d == 2\n\
         stage few when count(Ping) within 1d < 1\n",
    );
    lead.apply(&page(t0(), json!({"path": "/docs/a"})));
    lead.apply(&page(t0() + DAY, json!({"path": "/blog"})));
    assert_eq!(lead.reached("researcher"), None);
    let tr = lead.apply(&page(t0() + 7 * DAY - 1, json!({"path": "/docs/b"})));
    assert_eq!(tr, vec![lead.stage_t("researcher", t0() + 7 * DAY - 1)]);
    // `few` held on every call above (no Ping in the window): reached at the first one
    assert_eq!(lead.reached("few"), Some(t0()));
    lead.apply(&hit("Ping", t0() + 8 * DAY));
    assert_eq!(lead.reached("exactly"), None);
    let tr = lead.apply(&hit("Ping", t0() + 8 * DAY + 1));
    assert_eq!(tr, vec![lead.stage_t("exactly", t0() + 8 * DAY + 1)]);
}

#[test]
fn count_compared_with_between_or_a_trait_counts_past_one() {
    // the history a count keeps must cover every bound it is compared against
    let mut lead = Lead::new(
        "stage range when count(Ping) within 1d between 3 and 5\n\
         stage seats when count(Ping) within 1d >= lead.seats\n\
         stage listed when count(Ping) within 1d in [4]\n",
    );
    lead.apply(&identify(t0(), json!({"seats": 4})));
    lead.apply(&hit("Ping", t0() + 1));
    lead.apply(&hit("Ping", t0() + 2));
    assert_eq!(lead.reached("range"), None);
    let tr = lead.apply(&hit("Ping", t0() + 3));
    assert_eq!(tr, vec![lead.stage_t("range", t0() + 3)]);
    let tr = lead.apply(&hit("Ping", t0() + 4));
    assert_eq!(
        tr,
        vec![
            lead.stage_t("seats", t0() + 4),
            lead.stage_t("listed", t0() + 4)
        ]
    );
}

#[test]
fn sum_within_adds_a_numeric_property_over_the_window() {
    let mut lead = Lead::new(
        "stage pql when sum(rows of \"Data Imported\") within 1d >= 100\n\
         stage eur when sum(product.price of Order where currency == \"EUR\") within 2w >= 50\n",
    );
    let di = |offset, rows: Value| track("Data Imported", t0() + offset, json!({ "rows": rows }));
    assert!(lead.apply(&di(0, json!(40))).is_empty());
    assert!(lead.apply(&di(12 * HOUR, json!(50))).is_empty());
    // not numeric, missing: add 0
    assert!(lead.apply(&di(13 * HOUR, json!("30"))).is_empty());
    assert!(lead
        .apply(&hit("Data Imported", t0() + 14 * HOUR))
        .is_empty());
    // at +1d: (0, 1d] holds 50 and 20 = 70 (the 40 at 0 is out)
    assert!(lead.apply(&di(DAY, json!(20))).is_empty());
    // at +1d+1h: 50 + 20 + 40 = 110
    let tr = lead.apply(&di(DAY + HOUR, json!(40)));
    assert_eq!(tr, vec![lead.stage_t("pql", t0() + DAY + HOUR)]);

    let order = |offset, price: f64, cur: &str| {
        track(
            "Order",
            t0() + offset,
            json!({"product": {"price": price}, "currency": cur}),
        )
    };
    lead.apply(&order(2 * DAY, 30.0, "EUR"));
    lead.apply(&order(3 * DAY, 100.0, "USD"));
    assert_eq!(lead.reached("eur"), None);
    lead.apply(&order(2 * DAY + 2 * WEEK - 1, 19.5, "EUR"));
    assert_eq!(lead.reached("eur"), None);
    let tr = lead.apply(&order(2 * DAY + 2 * WEEK - 1, 0.5, "EUR"));
    assert_eq!(tr, vec![lead.stage_t("eur", t0() + 2 * DAY + 2 * WEEK - 1)]);
}

#[test]
fn late_event_counts_in_the_window_of_its_own_time() {
    let mut lead = Lead::new("stage burst when count(X) within 1h >= 2\n");
    lead.apply(&hit("X", t0()));
    lead.apply(&hit("Y", t0() + 80 * MINUTE));
    // a late X dated 30m (50 minutes behind the clock): (−30m, 30m] holds 0 and 30m
    let tr = lead.apply(&hit("X", t0() + 30 * MINUTE));
    assert_eq!(tr, vec![lead.stage_t("burst", t0() + 30 * MINUTE)]);

    // a late X dated 1h10m sees (10m, 1h10m]: itself only, not the one at 0
    let mut lead = Lead::new("stage burst when count(X) within 1h >= 2\n");
    lead.apply(&hit("X", t0()));
    lead.apply(&hit("Y", t0() + 80 * MINUTE));
    assert!(lead.apply(&hit("X", t0() + 70 * MINUTE)).is_empty());
}

#[test]
fn tick_decays_and_reaches_time_based_stages_with_event_predicates_false() {
    let mut lead = Lead::new(
        "score \"ping\" +20 on Ping\ndecay engagement half_life 1d\n\
         stage cold when engagement < 10\n\
         stage looked when event Look and engagement < 10\n\
         stage quiet when count(Ping) within 1d == 0\n",
    );
    // a tick before any event does nothing
    assert!(lead.tick(t0()).is_empty());
    assert_eq!(lead.state.clock, None);
    assert!(lead.apply(&hit("Ping", t0())).is_empty());
    assert!(lead.apply(&hit("Look", t0())).is_empty());
    // half a day: 14.14, nothing
    assert!(lead.tick(t0() + 12 * HOUR).is_empty());
    approx(lead.engagement(), 20.0 * 2f64.powf(-0.5));
    // one day: exactly 10, not below; the Ping at 0 lies at t − D: quiet
    let tr = lead.tick(t0() + DAY);
    approx(lead.engagement(), 10.0);
    assert_eq!(tr, vec![lead.stage_t("quiet", t0() + DAY)]);
    // two days: 5; `looked` is not reached: no event in a tick
    let tr = lead.tick(t0() + 2 * DAY);
    approx(lead.engagement(), 5.0);
    assert_eq!(tr, vec![lead.stage_t("cold", t0() + 2 * DAY)]);
    assert_eq!(lead.state.clock, Some(t0() + 2 * DAY));
    // a tick in the past changes nothing and keeps the clock
    assert!(lead.tick(t0() + DAY).is_empty());
    approx(lead.engagement(), 5.0);
    assert_eq!(lead.state.clock, Some(t0() + 2 * DAY));
    // the next Look is an event: 5 → 4.99..., looked
    let tr = lead.apply(&hit("Look", t0() + 2 * DAY + SECOND));
    assert_eq!(tr, vec![lead.stage_t("looked", t0() + 2 * DAY + SECOND)]);
    // a tick does not count as an event
    assert_eq!(lead.state.events, 3);
}

// ---------------------------------------------------------------------------------------
// conversions

#[test]
fn conversions_record_first_time_value_and_count() {
    let mut lead = Lead::new(
        r#"
conversion "Purchase" on "Order Completed" where revenue > 0 value revenue
conversion "Signup"   on "Signed Up"
conversion "Deal"     on Deal value amount
conversion "Cart"     on Cart value properties.value
"#,
    );
    let purchase = lead.conversion("Purchase");
    let order = |offset, revenue: Value| {
        track(
            "Order Completed",
            t0() + offset,
            json!({ "revenue": revenue }),
        )
    };
    assert!(lead.apply(&order(0, json!(0))).is_empty());
    assert!(lead.apply(&order(1, json!("99"))).is_empty());
    assert!(lead.state.conversions[purchase].is_none());
    let tr = lead.apply(&order(DAY, json!(99)));
    assert_eq!(tr, vec![lead.conv_t("Purchase", t0() + DAY)]);
    let tr = lead.apply(&order(2 * DAY, json!(1.5)));
    assert!(tr.is_empty());
    let cs = lead.state.conversions[purchase].clone().unwrap();
    assert_eq!(cs.at, t0() + DAY);
    assert_eq!(cs.count, 2);
    approx(cs.value, 100.5);
    // seconds_to_convert = at - first_seen
    assert_eq!((cs.at - lead.state.first_seen) / 1_000_000, 86_400);

    // without value: count only
    let tr = lead.apply(&hit("Signed Up", t0() + 3 * DAY));
    assert_eq!(tr, vec![lead.conv_t("Signup", t0() + 3 * DAY)]);
    lead.apply(&hit("Signed Up", t0() + 4 * DAY));
    let cs = lead.state.conversions[lead.conversion("Signup")]
        .clone()
        .unwrap();
    assert_eq!((cs.at, cs.count), (t0() + 3 * DAY, 2));
    approx(cs.value, 0.0);

    // the value is numeric only: a string or a missing value adds 0, but the match counts
    let deal = lead.conversion("Deal");
    lead.apply(&track("Deal", t0() + 5 * DAY, json!({"amount": "50"})));
    lead.apply(&track("Deal", t0() + 5 * DAY, json!({})));
    lead.apply(&track("Deal", t0() + 5 * DAY, json!({"amount": 7})));
    let cs = lead.state.conversions[deal].clone().unwrap();
    assert_eq!(cs.count, 3);
    approx(cs.value, 7.0);

    lead.apply(&track("Cart", t0() + 6 * DAY, json!({"value": 12.25})));
    let cs = lead.state.conversions[lead.conversion("Cart")]
        .clone()
        .unwrap();
    approx(cs.value, 12.25);
}

#[test]
fn conversion_first_match_processed_wins_even_if_a_later_one_is_dated_earlier() {
    let mut lead = Lead::new("conversion \"Signup\" on \"Signed Up\"\n");
    lead.apply(&hit("Visit", t0()));
    let tr = lead.apply(&hit("Signed Up", t0() + 2 * DAY));
    assert_eq!(tr, vec![lead.conv_t("Signup", t0() + 2 * DAY)]);
    // dated earlier, processed later: adds to the count only
    assert!(lead.apply(&hit("Signed Up", t0() + DAY)).is_empty());
    let cs = lead.state.conversions[0].clone().unwrap();
    assert_eq!((cs.at, cs.count), (t0() + 2 * DAY, 2));
}

#[test]
fn conversion_where_can_read_the_profile_and_scores() {
    let mut lead = Lead::new(
        "score \"s\" +10 on Buy\nconversion \"Qualified buy\" on Buy where lead.plan == \"pro\" and score >= 20\n",
    );
    lead.apply(&identify(t0(), json!({"plan": "pro"})));
    assert!(lead.apply(&hit("Buy", t0() + 1)).is_empty());
    // score 20 (the score rules run first)
    let tr = lead.apply(&hit("Buy", t0() + 2));
    assert_eq!(tr, vec![lead.conv_t("Qualified buy", t0() + 2)]);
}

// ---------------------------------------------------------------------------------------
// notifications

#[test]
fn notifications_stages_in_declaration_order_then_conversions_in_notify_line_order() {
    let mut lead = Lead::new(
        r#"
score "buy" +20 on Buy
stage mql when engagement >= 10
stage sql when engagement >= 20
conversion "Purchase" on Buy
conversion "Signup"   on Buy
notify revenue   when converted "Signup"
notify sales     when reached sql
notify marketing when converted
notify sales     when reached mql
notify growth    when converted "Purchase"
"#,
    );
    let tr = lead.apply(&hit("Buy", t0()));
    assert_eq!(
        tr,
        vec![
            lead.stage_t("mql", t0()),
            lead.stage_t("sql", t0()),
            lead.conv_t("Purchase", t0()),
            lead.conv_t("Signup", t0()),
        ]
    );
    let notes: Vec<(String, Transition)> = eval::notifications(&lead.program, &tr)
        .into_iter()
        .map(|(n, t)| (lead.program.notifies[n].target.clone(), t))
        .collect();
    let expected = vec![
        ("sales".to_string(), lead.stage_t("mql", t0())),
        ("sales".to_string(), lead.stage_t("sql", t0())),
        ("marketing".to_string(), lead.conv_t("Purchase", t0())),
        ("growth".to_string(), lead.conv_t("Purchase", t0())),
        ("revenue".to_string(), lead.conv_t("Signup", t0())),
        ("marketing".to_string(), lead.conv_t("Signup", t0())),
    ];
    assert_eq!(notes, expected);
    // later occurrences of a conversion notify nobody
    let tr = lead.apply(&hit("Buy", t0() + 1));
    assert!(tr.is_empty());
    assert!(eval::notifications(&lead.program, &tr).is_empty());
}

#[test]
fn notifications_exactly_one_per_target_even_when_several_lines_ask() {
    let lead = Lead::new(
        r#"
stage sql when engagement >= 0
conversion "Purchase" on Buy
notify sales when converted
notify sales when converted "Purchase"
notify ops   when converted "Purchase"
notify ops   when reached sql
"#,
    );
    let tr = vec![lead.stage_t("sql", t0()), lead.conv_t("Purchase", t0())];
    let targets: Vec<(String, Transition)> = eval::notifications(&lead.program, &tr)
        .into_iter()
        .map(|(n, t)| (lead.program.notifies[n].target.clone(), t))
        .collect();
    assert_eq!(
        targets,
        vec![
            ("ops".to_string(), lead.stage_t("sql", t0())),
            ("sales".to_string(), lead.conv_t("Purchase", t0())),
            ("ops".to_string(), lead.conv_t("Purchase", t0())),
        ]
    );
}

// ---------------------------------------------------------------------------------------
// layout: comments, continuation lines

#[test]
fn comments_at_ends_of_lines_on_their_own_lines_and_inside_strings_and_regexes() {
    let mut lead = Lead::new(
        "# a comment on its own line\n\
         fit \"Hash\" +1 when lead.x == \"#not a comment\"   # trailing comment\n\
         \n\
         # another\n\
         fit \"Re\" +2 when lead.y matches /a#b/ # trailing\n\
         score \"s\" +5 on X   # trailing after a name\n\
         #score \"commented out\" +100 on X\n",
    );
    assert_eq!(lead.program.fits.len(), 2);
    assert_eq!(lead.program.scores.len(), 1);
    lead.apply(&identify(
        t0(),
        json!({"x": "#not a comment", "y": "xa#bx"}),
    ));
    approx(lead.fit(), 3.0);
    lead.apply(&hit("X", t0()));
    approx(lead.engagement(), 5.0);
}

#[test]
fn continuation_lines_are_indented_and_may_hold_comments() {
    let mut lead = Lead::new(
        "fit \"Personal email\" -20 when lead.email ends_with \"@gmail.com\"\n\
         \x20   or lead.email ends_with \"@yahoo.com\"   # yahoo\n\
         \x20   or lead.email ends_with \"@hotmail.com\"\n\
         stage pql when lead.plan == \"trial\"\n\
         # a comment line at column 1 inside an item\n\
         \x20   and (count(\"Feature Used\") within 14d >= 2\n\
         \n\
         \t     or sum(rows of \"Data Imported\") within 14d >= 50000)\n\
         score \"s\"\n\
         \x20 +1\n\
         \x20 on X\n",
    );
    lead.apply(&identify(
        t0(),
        json!({"email": "a@hotmail.com", "plan": "trial"}),
    ));
    approx(lead.fit(), -20.0);
    lead.apply(&track("Data Imported", t0(), json!({"rows": 50000})));
    assert_eq!(lead.reached("pql"), Some(t0()));
    lead.apply(&hit("X", t0()));
    approx(lead.engagement(), 1.0);
}

#[test]
fn literals_in_conditions() {
    // numbers (negative, fractional), booleans, strings with escapes, lists
    check_fit("lead.n == -2.5", json!({"n": -2.5}), true);
    check_fit("lead.n == 0.75", json!({"n": 0.75}), true);
    check_fit("lead.b == true", json!({"b": true}), true);
    check_fit("lead.b == false", json!({"b": true}), false);
    check_fit(
        r#"lead.s == "say \"hi\"""#,
        json!({"s": "say \"hi\""}),
        true,
    );
    check_fit(
        r#"lead.s == "back\\slash""#,
        json!({"s": "back\\slash"}),
        true,
    );
    check_fit(r#"lead.s in ["a", "b",]"#, json!({"s": "b"}), true);
    check_fit("lead.s in []", json!({"s": "b"}), false);
    // points may be written with or without a sign
    let p = program("ruleset \"t\"\nscore \"a\" +10 on X\nscore \"b\" 2.5 on X\nscore \"c\" -0.5 on X\nscore \"d\" +0.5 on X\n");
    let points: Vec<f64> = p.scores.iter().map(|s| s.points).collect();
    assert_eq!(points, vec![10.0, 2.5, -0.5, 0.5]);
}

// ---------------------------------------------------------------------------------------
// first_seen, last_seen, source, events

#[test]
fn times_seen_source_and_event_count() {
    let mut lead = Lead::new("score \"s\" +1 on X\n");
    lead.apply(&hit("X", t0() + DAY));
    lead.apply(&with_source(hit("X", t0() + 2 * DAY), "ads"));
    lead.apply(&identify(t0(), json!({})));
    assert_eq!(lead.state.source, None);
    assert_eq!(lead.state.first_seen, t0());
    assert_eq!(lead.state.last_seen, t0() + 2 * DAY);
    assert_eq!(lead.state.events, 3);

    let mut lead = Lead::new("score \"s\" +1 on X\n");
    lead.apply(&with_source(hit("X", t0() + DAY), "newsletter"));
    lead.apply(&with_source(hit("X", t0()), "ads"));
    assert_eq!(lead.state.source.as_deref(), Some("newsletter"));
}

#[test]
fn replaying_the_same_events_gives_the_same_state() {
    let rules = "score \"s\" +3 on X limit 2 per 1h\ndecay engagement half_life 1d\n\
                 stage a when count(X) within 1d >= 3\nconversion \"c\" on X value v\n";
    let events: Vec<_> = (0..50)
        .map(|i| track("X", t0() + i * 17 * MINUTE, json!({"v": i})))
        .collect();
    let mut a = Lead::new(rules);
    let mut b = Lead::new(rules);
    let ta = a.run(&events);
    let tb = b.run(&events);
    assert_eq!(ta, tb);
    assert_eq!(a.state, b.state);
}

// ---------------------------------------------------------------------------------------
// bounded state

#[test]
fn state_stays_bounded_over_100k_events() {
    let mut lead = Lead::new(
        "score \"Hit\" +1 on Hit limit 3 per 1h\n\
         decay engagement half_life 7d\n\
         stage busy when count(Hit) within 1d >= 5\n\
         stage heavy when sum(x of Hit) within 1d >= 1000000000\n",
    );
    let mut size_at_10k = 0;
    for i in 0..100_000i64 {
        lead.apply(&track("Hit", t0() + i * MINUTE, json!({ "x": i % 7 })));
        if i + 1 == 10_000 {
            size_at_10k = serde_json::to_string(&lead.state).unwrap().len();
        }
    }
    let size_at_100k = serde_json::to_string(&lead.state).unwrap().len();
    assert!(size_at_10k > 0);
    let diff = size_at_100k.abs_diff(size_at_10k);
    assert!(
        diff <= size_at_10k / 50,
        "state grew from {size_at_10k} to {size_at_100k} bytes"
    );
    assert!(size_at_100k < 40_000, "state is {size_at_100k} bytes");
    // what each slot keeps: limit ≤ 2N, count ≤ K+1... (K = 5 + 1), sum ≤ 256
    assert!(lead.state.limits[0].len() <= 6);
    assert!(lead.state.aggregates[0].len() <= 6);
    assert!(lead.state.aggregates[1].len() <= 256);
    assert_eq!(lead.reached("busy"), Some(t0() + 4 * MINUTE));
    assert_eq!(lead.reached("heavy"), None);
    assert_eq!(lead.state.events, 100_000);
}

/// The state keeps short lists in the lead's record itself and longer ones behind a pointer;
/// either way it is stored as plain JSON lists, and reads back the same.
#[test]
fn state_is_stored_as_lists_whether_held_inline_or_not() {
    // six stages and four limit slots: more than a record holds inline; one of each: less
    let many = "score \"A\" +1 on A limit 1 per 1h\n\
                score \"B\" +1 on B limit 1 per 1h\n\
                score \"C\" +1 on C limit 1 per 1h\n\
                score \"D\" +1 on D limit 9 per 1h\n\
                stage s1 when event A\nstage s2 when event B\nstage s3 when event C\n\
                stage s4 when event D\nstage s5 when reached s4\nstage s6 when score >= 100\n\
                stage busy when count(D) within 1h >= 5\n\
                conversion \"X\" on D\nconversion \"Y\" on A\nconversion \"Z\" on B\n";
    let few = "score \"D\" +1 on D limit 9 per 1h\nstage s4 when event D\n\
               stage busy when count(D) within 1h >= 5\n";
    for source in [many, few] {
        let mut lead = Lead::new(source);
        for (i, name) in ["A", "D", "B", "D", "D", "C", "D", "D", "D"]
            .iter()
            .enumerate()
        {
            let i = i64::try_from(i).unwrap();
            lead.apply(&track(name, t0() + i * MINUTE, json!({})));
        }
        let stored = serde_json::to_value(&lead.state).unwrap();
        let list_len = |field: &str| stored[field].as_array().map(Vec::len);
        assert_eq!(list_len("reached"), Some(lead.state.reached.len()));
        assert_eq!(list_len("conversions"), Some(lead.state.conversions.len()));
        assert_eq!(list_len("limits"), Some(lead.state.limits.len()));
        assert_eq!(list_len("aggregates"), Some(1));
        // the `D` window: six awards, oldest first, as a list of times
        let d = lead.state.limits.len() - 1;
        let awards: Vec<i64> = [1, 3, 4, 6, 7, 8]
            .iter()
            .map(|m| t0() + m * MINUTE)
            .collect();
        assert_eq!(stored["limits"][d], json!(awards));
        // `busy`, the last stage, at the fifth `D`
        assert_eq!(
            stored["reached"][lead.state.reached.len() - 1],
            json!(t0() + 7 * MINUTE)
        );
        let back: LeadState = serde_json::from_value(stored).unwrap();
        assert_eq!(back, lead.state);
    }
}

// ---------------------------------------------------------------------------------------
// what a program reads

fn key_set(keys: &[&str]) -> leadscore_rules::program::Keys {
    leadscore_rules::program::Keys::Some(keys.iter().map(|k| Box::<str>::from(*k)).collect())
}

#[test]
fn a_program_reads_the_first_key_of_every_property_and_trait_path() {
    let p = program(
        r#"
ruleset "reads"
fit "Senior" +10 when lead.title matches /vp/i and lead.company.size.band == "large"
score "Pricing" +5 on page where path starts_with "/pricing" and utm.campaign exists
stage pql when count("Feature Used" where feature in ["a"]) within 7d >= 2 and lead.plan == "trial"
stage buyer when sum(revenue of "Order Completed" where plan == "b") within 7d > 10 and lead.region == "eu"
stage sql when event "Form Submitted" where form == "demo"
conversion "Purchase" on "Order Completed" where currency == "EUR" value amount
"#,
    );
    let reads = p.reads();
    assert_eq!(
        reads.properties,
        key_set(&["amount", "currency", "feature", "form", "path", "plan", "revenue", "utm"])
    );
    assert_eq!(
        reads.traits,
        key_set(&["company", "plan", "region", "title"])
    );
    assert_eq!(reads.company, key_set(&["size"]));
    assert!(!reads.properties.contains("url"));
}

#[test]
fn reading_the_company_itself_reads_all_of_it() {
    let p = program(
        r#"
ruleset "reads"
fit "Has company" +10 when lead.company exists
"#,
    );
    let reads = p.reads();
    assert_eq!(reads.company, leadscore_rules::program::Keys::All);
    assert!(reads.company.contains("anything"));
    assert_eq!(reads.traits, key_set(&["company"]));
    assert_eq!(reads.properties, key_set(&[]));
}
