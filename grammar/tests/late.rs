//! Late bursts (SPEC §2): a phone syncing days of offline activity at once sends events far
//! behind the lead's clock; what they are awarded is kept until the clock has moved on by the
//! rule's period, so the burst is held to `once`, `limit` and `count ... within` among itself.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::json;

const RULES: &str = r#"score "Pricing" +10 on page where path starts_with "/pricing" limit 2 per 1d
score "Signup" +50 on "Signed Up" once
stage pql when count("Feature Used") within 1d >= 3
"#;

fn pricing(at: leadscore_rules::time::Micros) -> leadscore_rules::Event {
    page(at, json!({"path": "/pricing"}))
}

/// A lead whose clock is at day 30.
fn lead_at_day_30() -> Lead {
    let mut lead = Lead::new(RULES);
    lead.apply(&hit("App Opened", t0() + 30 * DAY));
    lead
}

#[test]
fn a_late_burst_beyond_the_window_distance_is_held_to_its_limit() {
    let mut lead = lead_at_day_30();
    for i in 0..5 {
        lead.apply(&pricing(t0() + DAY + i * MINUTE));
    }
    approx(lead.engagement(), 20.0);
}

#[test]
fn a_late_burst_within_the_window_distance_is_held_to_its_limit() {
    let mut lead = lead_at_day_30();
    for i in 0..5 {
        lead.apply(&pricing(t0() + 29 * DAY + i * MINUTE));
    }
    approx(lead.engagement(), 20.0);
}

#[test]
fn a_late_burst_over_several_days_gets_the_limit_once_a_day() {
    let mut lead = lead_at_day_30();
    // in time order, as a phone sends them: four a day on days 1, 2 and 3
    for day in 1..=3 {
        for i in 0..4 {
            lead.apply(&pricing(t0() + day * DAY + i * HOUR));
        }
    }
    approx(lead.engagement(), 60.0);
}

#[test]
fn a_late_burst_gets_a_once_award_once() {
    let mut lead = lead_at_day_30();
    for i in 0..3 {
        lead.apply(&hit("Signed Up", t0() + DAY + i * MINUTE));
    }
    approx(lead.engagement(), 50.0);
}

#[test]
fn a_late_burst_is_counted_among_itself() {
    let mut lead = lead_at_day_30();
    let mut reached = Vec::new();
    for i in 0..3 {
        reached.extend(lead.apply(&hit("Feature Used", t0() + DAY + i * MINUTE)));
    }
    assert_eq!(reached, vec![lead.stage_t("pql", t0() + DAY + 2 * MINUTE)]);
}

#[test]
fn the_hold_ends_once_the_clock_has_moved_on_and_state_stays_bounded() {
    let mut lead = lead_at_day_30();
    for i in 0..1000 {
        lead.apply(&pricing(t0() + DAY + i * SECOND));
        lead.apply(&hit("Feature Used", t0() + DAY + i * SECOND));
    }
    approx(lead.engagement(), 20.0);
    assert!(
        lead.state.limits[0].len() <= 6,
        "{:?}",
        lead.state.limits[0].len()
    );
    assert!(
        lead.state.aggregates[0].len() <= 8,
        "{}",
        lead.state.aggregates[0].len()
    );
    // two days on, the next award drops what was held
    lead.apply(&pricing(t0() + 32 * DAY));
    approx(lead.engagement(), 30.0);
    assert_eq!(lead.state.limits[0].as_slice(), &[t0() + 32 * DAY]);
}
