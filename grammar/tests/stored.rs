//! Rule versions and state kept by name (SPEC §7): what a version ignores and what it does
//! not, and a stored state loaded under edited rules.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use leadscore_rules::eval::{self, LeadState, Transition};
use leadscore_rules::stored::{Announced, AnnouncedKind};
use leadscore_rules::StoredState;
use serde_json::json;

const RULES: &str = r#"ruleset "acme"

# fit first
fit "Senior title" +15 when lead.title matches /\b(vp|director)\b/i
score "Pricing page" +10 on page where path starts_with "/pricing" limit 2 per 7d
score "Webinar" +20 on "Webinar Registered" once
decay engagement half_life 30d

stage mql when engagement >= 20
stage sql when reached mql and count("Demo Booked") within 14d >= 1
conversion "Purchase" on "Order Completed" value revenue
notify sales when reached sql
notify sales when reached mql
notify revenue when converted
"#;

fn version(text: &str) -> String {
    program(text).version
}

fn version_of_files(files: &[(&str, &str)]) -> String {
    compile_files(files).0.program.expect("compiles").version
}

#[test]
fn a_version_is_sixteen_hex_digits_and_the_same_for_the_same_rules() {
    let v = version(RULES);
    assert_eq!(v.len(), 16, "{v}");
    assert!(v.chars().all(|c| c.is_ascii_hexdigit()), "{v}");
    assert_eq!(v, version(RULES));
}

#[test]
fn formatting_comments_and_the_ruleset_name_leave_the_version_as_it_is() {
    let base = version(RULES);
    let formatted = leadscore_rules::format::format_source(RULES).unwrap();
    assert_eq!(version(&formatted), base, "formatted");
    let comments = RULES
        .replace("# fit first\n", "")
        .replace("once\n", "once   # only the first webinar\n")
        .replace("stage mql", "# the marketing stage\nstage mql");
    assert_eq!(version(&comments), base, "comments");
    let spacing = RULES
        .replace("+15 when", "15    when")
        .replace(
            "stage sql when reached mql and",
            "stage sql when (reached mql)\n    and",
        )
        .replace("\n\n", "\n\n\n");
    assert_eq!(version(&spacing), base, "spacing and redundant parentheses");
    let renamed = RULES.replace("ruleset \"acme\"", "ruleset \"acme-2027\"");
    assert_eq!(version(&renamed), base, "the ruleset's name");
    // a `#` inside a string or a regex is not a comment
    let hash = RULES.replace("\"/pricing\"", "\"/pricing#plans\"");
    assert_ne!(version(&hash), base, "a string with `#`");
}

#[test]
fn every_change_of_meaning_changes_the_version() {
    let base = version(RULES);
    let edits = [
        ("+10 on page", "+11 on page"),
        ("limit 2 per 7d", "limit 2 per 8d"),
        (
            "stage mql when engagement >= 20",
            "stage mql when engagement >= 21",
        ),
        ("within 14d", "within 15d"),
        ("half_life 30d", "half_life 31d"),
        ("notify revenue when converted", "notify crm when converted"),
        ("conversion \"Purchase\"", "conversion \"Order\""),
        (
            "stage mql when",
            "stage pql when engagement >= 99\nstage mql when",
        ),
    ];
    for (from, to) in edits {
        assert!(RULES.contains(from), "{from}");
        assert_ne!(
            version(&RULES.replacen(from, to, 1)),
            base,
            "{from} -> {to}"
        );
    }
}

#[test]
fn files_count_in_name_order_and_their_names_do_not() {
    let a = "ruleset \"x\"\nscore \"A\" +1 on \"a\"\n";
    let b = "score \"B\" +2 on \"b\"\n";
    let ab = version_of_files(&[("a.rules", a), ("b.rules", b)]);
    assert_eq!(
        ab,
        version_of_files(&[("one.rules", a), ("two.rules", b)]),
        "renamed files"
    );
    assert_eq!(
        ab,
        version(&format!("{a}{b}")),
        "one file with the same items"
    );
}

fn run(
    program: &leadscore_rules::Program,
    state: &mut LeadState,
    events: &[leadscore_rules::Event],
) -> Vec<Transition> {
    let mut out = Vec::new();
    for e in events {
        eval::apply(program, state, e, &mut out);
    }
    out
}

fn sample_events() -> Vec<leadscore_rules::Event> {
    let t = t0();
    vec![
        identify(t, json!({"title": "VP Sales"})),
        page(t + HOUR, json!({"path": "/pricing"})),
        hit("Webinar Registered", t + 2 * HOUR),
        hit("Demo Booked", t + 3 * HOUR),
        track("Order Completed", t + 4 * HOUR, json!({"revenue": 99})),
    ]
}

#[test]
fn a_stored_state_round_trips_under_the_same_rules() {
    let program = program(RULES);
    let mut state = LeadState::new(&program);
    let transitions = run(&program, &mut state, &sample_events());
    eval::announce(&program, &mut state, &transitions);
    assert_eq!(state.announced.len(), 3, "{:?}", state.announced);
    let stored = StoredState::from_state(&program, &state);
    let text = serde_json::to_string(&stored).unwrap();
    // names, never places
    for name in [
        "\"mql\"",
        "\"sql\"",
        "\"Purchase\"",
        "\"Webinar\"",
        "\"Pricing page\"",
        "count(\\\"Demo Booked\\\") within 14d",
    ] {
        assert!(text.contains(name), "{name} in {text}");
    }
    let back: StoredState = serde_json::from_str(&text).unwrap();
    assert_eq!(back.into_state(&program), state);
}

#[test]
fn a_stage_inserted_between_two_leaves_the_others_at_their_times() {
    let old = program(RULES);
    let mut state = LeadState::new(&old);
    let transitions = run(&old, &mut state, &sample_events());
    eval::announce(&old, &mut state, &transitions);
    let mql = state.reached[0];
    let sql = state.reached[1];
    assert!(mql.is_some() && sql.is_some());
    let stored = serde_json::to_string(&StoredState::from_state(&old, &state)).unwrap();

    let edited = RULES.replace(
        "stage sql when",
        "stage pql when count(\"Feature Used\") within 14d >= 3\nstage sql when",
    );
    let new = program(&edited);
    let loaded = serde_json::from_str::<StoredState>(&stored)
        .unwrap()
        .into_state(&new);
    assert_eq!(new.stages[1].name, "pql");
    assert_eq!(loaded.reached[0], mql, "mql keeps its time");
    assert_eq!(loaded.reached[1], None, "pql starts unreached");
    assert_eq!(loaded.reached[2], sql, "sql keeps its time");
    assert_eq!(loaded.stage(&new), Some("sql"));
    assert!(loaded.aggregates[0].len() == 1 || loaded.aggregates[1].len() == 1);
    assert_eq!(
        loaded.once_fired.len(),
        1,
        "the webinar's once award carries over by name"
    );
    assert_eq!(
        loaded.limits[0].len(),
        1,
        "the pricing award carries over by name"
    );

    // sales heard of sql once: reaching it again under any rules never tells them again
    let mut again = loaded.clone();
    let sql_index = new.stage_index("sql").unwrap();
    let told = eval::announce(
        &new,
        &mut again,
        &[Transition::StageReached {
            stage: sql_index,
            at: t0(),
        }],
    );
    assert!(told.is_empty(), "{told:?}");
    // pql, new, is announced once when it is reached (no notify line asks for it here)
    let pql = eval::announce(
        &new,
        &mut again,
        &[Transition::StageReached { stage: 1, at: t0() }],
    );
    assert!(pql.is_empty());
}

#[test]
fn what_the_new_rules_lack_is_dropped_and_what_they_add_starts_empty() {
    let old = program(RULES);
    let mut state = LeadState::new(&old);
    run(&old, &mut state, &sample_events());
    let stored = StoredState::from_state(&old, &state);
    let edited = RULES
        .replace("stage mql when engagement >= 20\n", "")
        .replace("reached mql and ", "")
        .replace("notify sales when reached mql\n", "")
        .replace("conversion \"Purchase\"", "conversion \"Order\"")
        .replace("limit 2 per 7d", "")
        .replace(" once", " limit 1 per 1d");
    let new = program(&edited);
    let loaded = stored.clone().into_state(&new);
    assert_eq!(loaded.reached.len(), 1);
    assert_eq!(loaded.reached[0], state.reached[1], "sql found by name");
    assert_eq!(loaded.conversions[0], None, "`Order` is new");
    assert!(loaded.once_fired.is_empty(), "no rule is `once` any more");
    assert_eq!(new.limit_slots, 1);
    assert!(
        loaded.limits[0].is_empty(),
        "the webinar's limit starts empty"
    );
    // stored again under the new rules, the dropped parts are gone, the announcements stay
    let again = StoredState::from_state(&new, &loaded);
    assert!(!again.reached.contains_key("mql"));
    assert!(!again.conversions.contains_key("Purchase"));
    assert_eq!(again.announced, stored.announced);
}

#[test]
fn a_stage_dropped_and_added_back_is_not_announced_again() {
    let rules = "stage mql when engagement >= 20\nscore \"Webinar\" +20 on \"Webinar Registered\"\nnotify sales when reached mql\n";
    let mut lead = Lead::new(rules);
    let t = lead.apply(&hit("Webinar Registered", t0()));
    let told = eval::announce(&lead.program, &mut lead.state, &t);
    assert_eq!(told.len(), 1);
    let without = program("ruleset \"t\"\nscore \"Webinar\" +20 on \"Webinar Registered\"\n");
    let dropped = StoredState::from_state(&lead.program, &lead.state).into_state(&without);
    let back = StoredState::from_state(&without, &dropped).into_state(&lead.program);
    assert_eq!(back.reached[0], None, "dropped, so reached afresh");
    assert_eq!(
        back.announced,
        vec![Announced {
            kind: AnnouncedKind::Stage,
            name: "mql".into(),
            target: "sales".into()
        }]
    );
    let mut back = back;
    let mut out = Vec::new();
    eval::apply(
        &lead.program,
        &mut back,
        &hit("Webinar Registered", t0() + DAY),
        &mut out,
    );
    assert_eq!(out.len(), 1, "reached again");
    assert!(
        eval::announce(&lead.program, &mut back, &out).is_empty(),
        "but not told again"
    );
}

#[test]
fn a_target_added_later_hears_of_a_stage_reached_later_only() {
    let rules = "stage mql when engagement >= 20\nscore \"Webinar\" +20 on \"Webinar Registered\"\nnotify sales when reached mql\n";
    let mut lead = Lead::new(rules);
    let t = lead.apply(&hit("Webinar Registered", t0()));
    eval::announce(&lead.program, &mut lead.state, &t);
    let more = program(&format!(
        "ruleset \"t\"\n{rules}notify crm when reached mql\n"
    ));
    let mut state = StoredState::from_state(&lead.program, &lead.state).into_state(&more);
    let again = eval::announce(
        &more,
        &mut state,
        &[Transition::StageReached { stage: 0, at: t0() }],
    );
    assert_eq!(again.len(), 1, "crm, which never heard of it");
    assert_eq!(more.notifies[again[0].0].target, "crm");
}
