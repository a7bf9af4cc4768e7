//! `state → stored state`: a lead's state as it is kept between calls, by name.
//!
//! In memory a [`LeadState`] holds its stages, conversions, `once` awards and windows by their
//! place in the program, which is what makes evaluation fast. What is stored names them
//! instead (stages, conversions and rules by their names, an aggregate by its canonical text),
//! so a record written under one version of the rules loads against another by name (SPEC
//! §7): what the current rules lack is dropped, what they add starts empty. What was announced
//! is kept by name and target whatever the rules, and never pruned.

use crate::eval::{compute_fit, merge_closest, AggregateWindow, ConversionState, LeadState};
use crate::event::Properties;
use crate::program::{AggKind, Program, SUM_KEEP};
use crate::time::Micros;
use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// What an announcement was about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnnouncedKind {
    /// A stage was reached.
    Stage,
    /// A conversion happened for the first time.
    Conversion,
}

/// One (stage or conversion, target) already announced for a lead.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Announced {
    /// A stage or a conversion.
    pub kind: AnnouncedKind,
    /// Its name.
    pub name: CompactString,
    /// The target told.
    pub target: CompactString,
}

/// A lead's state as stored: every part that belongs to a rule named by that rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct StoredState {
    /// Profile traits, with the company under `company`.
    pub profile: Properties,
    /// Fit as last computed (recomputed from the profile on load).
    pub fit: f64,
    /// Engagement as of `clock`.
    pub engagement: f64,
    /// The lead's clock.
    pub clock: Option<Micros>,
    /// Earliest event time.
    pub first_seen: Micros,
    /// Latest event time.
    pub last_seen: Micros,
    /// First-touch source.
    pub source: Option<CompactString>,
    /// Accepted calls.
    pub events: u64,
    /// Stage name → when it was reached.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reached: BTreeMap<String, Micros>,
    /// Conversion name → its first time, count and value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub conversions: BTreeMap<String, ConversionState>,
    /// Names of the score rules whose `once` award was given.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub once: BTreeSet<String>,
    /// Score rule name → the times of its `limit` awards, oldest first.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, Vec<Micros>>,
    /// Aggregate text → its (time, value) entries, oldest first.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub windows: BTreeMap<String, Vec<(Micros, f64)>>,
    /// What was announced to whom (never pruned).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub announced: Vec<Announced>,
    /// Until when late history is held (0: no hold).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub hold_until: Micros,
}

fn is_zero(at: &Micros) -> bool {
    *at == 0
}

impl StoredState {
    /// The stored form of a state computed under `program`.
    pub fn from_state(program: &Program, state: &LeadState) -> Self {
        let mut stored = StoredState {
            profile: state.profile.clone(),
            fit: state.fit,
            engagement: state.engagement,
            clock: state.clock,
            first_seen: state.first_seen,
            last_seen: state.last_seen,
            source: state.source.clone(),
            events: state.events,
            announced: state.announced.clone(),
            hold_until: state.hold_until,
            ..StoredState::default()
        };
        for (stage, at) in program.stages.iter().zip(&state.reached) {
            if let Some(at) = at {
                stored.reached.insert(stage.name.clone(), *at);
            }
        }
        for (conv, made) in program.conversions.iter().zip(&state.conversions) {
            if let Some(made) = made {
                stored.conversions.insert(conv.name.clone(), made.clone());
            }
        }
        for &i in &state.once_fired {
            if let Some(rule) = usize::try_from(i).ok().and_then(|i| program.scores.get(i)) {
                stored.once.insert(rule.name.clone());
            }
        }
        for rule in &program.scores {
            let Some((_, _, slot)) = rule.limit else {
                continue;
            };
            match state.limits.get(slot) {
                Some(awards) if !awards.is_empty() => {
                    stored.limits.insert(rule.name.clone(), awards.to_vec());
                }
                _ => {}
            }
        }
        for (agg, entries) in program.aggregates.iter().zip(&state.aggregates) {
            if entries.is_empty() {
                continue;
            }
            // the same aggregate written twice keeps the same entries; keep the longer
            let slot = stored.windows.entry(agg.key.clone()).or_default();
            if entries.len() > slot.len() {
                *slot = entries.to_vec();
            }
        }
        stored
    }

    /// The state under `program`: every stage, conversion, rule and aggregate found by name;
    /// what `program` lacks is dropped, what it adds starts empty, and fit is recomputed from
    /// the profile.
    pub fn into_state(self, program: &Program) -> LeadState {
        let mut state = LeadState::new(program);
        let StoredState {
            profile,
            engagement,
            clock,
            first_seen,
            last_seen,
            source,
            events,
            reached,
            conversions,
            once,
            mut limits,
            windows,
            announced,
            hold_until,
            ..
        } = self;
        for (i, stage) in program.stages.iter().enumerate() {
            state.reached[i] = reached.get(&stage.name).copied();
        }
        for (i, conv) in program.conversions.iter().enumerate() {
            state.conversions[i] = conversions.get(&conv.name).cloned();
        }
        for (i, rule) in program.scores.iter().enumerate() {
            if rule.once && once.contains(&rule.name) {
                if let Ok(i) = u32::try_from(i) {
                    state.once_fired.push(i);
                }
            }
            if let Some((n, _, slot)) = rule.limit {
                if let (Some(mut awards), Some(window)) =
                    (limits.remove(&rule.name), state.limits.get_mut(slot))
                {
                    awards.sort_unstable();
                    let keep = n.saturating_mul(3);
                    if awards.len() > keep {
                        awards.drain(..awards.len() - keep);
                    }
                    window.extend(awards);
                }
            }
        }
        for (i, agg) in program.aggregates.iter().enumerate() {
            let Some(entries) = windows.get(&agg.key) else {
                continue;
            };
            let mut window: AggregateWindow = entries.iter().copied().collect();
            window.sort_by_key(|&(at, _)| at);
            match agg.kind {
                AggKind::Count { keep } => {
                    let keep = keep.saturating_mul(2);
                    if window.len() > keep {
                        window.drain(..window.len() - keep);
                    }
                }
                AggKind::Sum { .. } => {
                    while window.len() > SUM_KEEP {
                        merge_closest(&mut window);
                    }
                }
            }
            state.aggregates[i] = window;
        }
        state.fit = compute_fit(program, &profile);
        state.profile = profile;
        state.engagement = engagement;
        state.clock = clock;
        state.first_seen = first_seen;
        state.last_seen = last_seen;
        state.source = source;
        state.events = events;
        state.announced = announced;
        state.hold_until = hold_until;
        state
    }
}
