//! `wake::next_wake`: when a tick must next visit a lead. It must never be later than the
//! first instant a tick would reach a stage (a stage reached late is a wrong answer), and it
//! should be no earlier than that when nothing else is due (that is what saves the visits).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use common::*;
use leadscore_rules::time::{Micros, SECOND};
use leadscore_rules::wake::next_wake;
use proptest::prelude::*;

const DAY: Micros = 86_400 * SECOND;
const YEAR: Micros = 365 * DAY;

#[test]
fn a_threshold_engagement_decays_through_wakes_the_lead_when_it_is_crossed() {
    let mut lead = Lead::new(
        "score \"Big\" +40 on Big\ndecay engagement half_life 30d\nstage cooling when engagement < 10\n",
    );
    let start = t0();
    lead.apply(&hit("Big", start));
    // 40 → 10 takes two half-lives: 60 days
    let wake = next_wake(&lead.program, &lead.state, YEAR).unwrap();
    assert!(
        (wake - (start + 60 * DAY)).abs() <= SECOND,
        "{} s",
        (wake - start) / SECOND
    );
    let mut before = lead.clone_lead();
    assert!(
        before.tick(wake - SECOND).is_empty(),
        "reached before the wake"
    );
    assert_eq!(lead.tick(wake).len(), 1, "not reached at the wake");
    // no stage left: once more when engagement stops showing a change, 10 → 0.005 in
    // log2(2000) half-lives (before the yearly refresh)
    let after = next_wake(&lead.program, &lead.state, YEAR).unwrap();
    let settle = wake + (30.0 * 86_400.0 * 2000f64.log2()) as Micros * SECOND;
    assert!((after - settle).abs() <= 2 * SECOND, "{after} {settle}");
}

#[test]
fn the_refresh_comes_first_while_figures_change_and_nothing_when_they_settle() {
    let mut lead = Lead::new("score \"Big\" +40 on Big\ndecay engagement half_life 1d\nstage hot when engagement >= 50\n");
    lead.apply(&hit("Big", t0()));
    // `hot` can never be reached by decay: only the daily refresh
    assert_eq!(next_wake(&lead.program, &lead.state, DAY), Some(t0() + DAY));
    // 40 · 2^-14 ≈ 0.0024: below what a figure shows, nothing more to do
    lead.tick(t0() + 14 * DAY);
    assert_eq!(next_wake(&lead.program, &lead.state, DAY), None);
}

#[test]
fn an_event_leaving_a_window_wakes_the_lead_then() {
    let mut lead = Lead::new(
        "score \"Visit\" +1 on Visit\nstage lapsed when count(\"Visit\") within 7d == 0 and engagement >= 1\n",
    );
    lead.apply(&hit("Visit", t0()));
    lead.apply(&hit("Visit", t0() + DAY));
    // no decay: the window alone; the last visit leaves it at day 8
    assert_eq!(
        next_wake(&lead.program, &lead.state, DAY),
        Some(t0() + 8 * DAY)
    );
    let mut early = lead.clone_lead();
    assert!(early.tick(t0() + 8 * DAY - 1).is_empty());
    assert_eq!(lead.tick(t0() + 8 * DAY).len(), 1, "`lapsed` at day 8");
    assert_eq!(next_wake(&lead.program, &lead.state, DAY), None);
}

#[test]
fn a_lead_with_nothing_time_can_change_is_never_due() {
    let mut lead = Lead::new("score \"Big\" +40 on Big\nstage hot when engagement >= 10\n");
    lead.apply(&hit("Big", t0()));
    assert_eq!(next_wake(&lead.program, &lead.state, DAY), None);
}

#[test]
fn engagement_against_a_trait_is_visited_at_the_next_tick() {
    let mut lead = Lead::new(
        "score \"Big\" +40 on Big\ndecay engagement half_life 30d\nstage low when engagement < lead.bar\n",
    );
    lead.apply(&hit("Big", t0()));
    assert_eq!(next_wake(&lead.program, &lead.state, YEAR), Some(t0() + 1));
}

const RULES: &str = "fit \"Senior\" +15 when lead.title == \"vp\"
score \"Big\" +40 on Big
score \"Small\" +7 on Small
score \"Bad\" -25 on Bad
decay engagement half_life 3d
floor engagement at -30
cap engagement at 90
stage warm when engagement >= 20 and score < 60
stage cooled when reached warm and engagement < 12
stage cold when score <= 5 and count(\"Small\") within 2d == 0
stage rising when engagement > -10 and engagement < -2
stage busy when count(\"Small\") within 2d >= 2 and engagement < 30
";

proptest! {
    /// Ticking at the wake reaches what ticking at any earlier instant would; no instant
    /// before the wake reaches anything.
    #[test]
    fn no_stage_is_reachable_before_the_wake(
        events in prop::collection::vec((0u8..4, 0i64..(6 * 86_400)), 1..8),
        probes in prop::collection::vec(0.0f64..1.0, 1..12),
    ) {
        let mut lead = Lead::new(RULES);
        let mut t = t0();
        for (kind, gap) in events {
            t += gap * SECOND;
            let name = ["Big", "Small", "Bad", "Noop"][usize::from(kind)];
            lead.apply(&hit(name, t));
        }
        let Some(wake) = next_wake(&lead.program, &lead.state, 100 * YEAR) else {
            // nothing due: no tick, however late, reaches a stage
            for p in probes {
                #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
                let at = t + (p * (60 * DAY) as f64) as Micros;
                prop_assert!(lead.clone_lead().tick(at).is_empty(), "reached at {at} with no wake");
            }
            return Ok(());
        };
        prop_assert!(wake > t);
        for p in probes {
            #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
            let at = t + (p * (wake - t - 1) as f64) as Micros;
            prop_assert!(
                lead.clone_lead().tick(at).is_empty(),
                "a stage was reached at {} s, before the wake at {} s",
                (at - t) / SECOND,
                (wake - t) / SECOND
            );
        }
    }
}
