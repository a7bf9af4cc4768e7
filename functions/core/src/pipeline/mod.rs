//! The pipeline: what happens to a lead when a call reaches it, written once and run by
//! every store. The embedded engine ([`crate::store::engine`], for `replay`, `serve`, `explain`,
//! `compare`) and the DynamoDB store ([`crate::store::dynamo`], for `score`, `decay` and the
//! rescore) keep leads differently; between loading a lead and committing it they call
//! these functions:
//!
//! - [`merge_partner`]: which other id a call merges into its lead (SPEC §5);
//! - [`step`]: one call applied to a lead's state, and what it did ([`LatestHits`]);
//! - [`merged_state`] and [`rescored_state`]: a lead re-evaluated from fresh state over its
//!   kept calls, for an identity merge and for a rule change alike (SPEC §5, §7);
//! - [`announcements`]: the notifications a commit carries, each (transition, target)
//!   announced once ever (SPEC §3 step 6, §7);
//! - [`check_call`]: the limits every store holds a call to before it is applied;
//! - [`processed`]: the per-call result the API answers with;
//! - [`commit`]: what one step writes, as a value ([`commit::Commit`]) a store applies at
//!   once under the lead's version, with the messages it announces ([`commit::messages`]);
//! - `apply`: a run of calls plus a lead's record turned into one commit's content
//!   (`apply::draft`), a lead brought up to date without a call for a rescore or a tick
//!   (`apply::refresh`), and the loop around them, written once over a store's narrow door
//!   (`apply::Records`: load with a version, kept calls, commit answering a conflict). The
//!   engine's fast path for `replay` drafts with the same `draft` and writes with its
//!   commit.

pub mod apply;
pub mod commit;

use crate::api::Processed;
use crate::ingest::call::Call;
use leadscore_rules::eval::{self, LeadState, Transition};
use leadscore_rules::time::Micros;
use leadscore_rules::{CallKind, Program};
use leadscore_wire::Kind;
use serde_json::Value;

/// Why a transition happened other than by a call of the lead's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The lead was rescored under new rules (SPEC §7).
    RulesChanged,
}

impl Cause {
    /// As notifications print it.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::RulesChanged => "rules_changed",
        }
    }
}

/// The name of what a transition is about under `program`.
pub fn transition_name(program: &Program, t: &Transition) -> compact_str::CompactString {
    match *t {
        Transition::StageReached { stage, .. } => {
            program.stages.get(stage).map(|s| s.name.as_str())
        }
        Transition::Converted { conversion, .. } => {
            program.conversions.get(conversion).map(|c| c.name.as_str())
        }
    }
    .unwrap_or_default()
    .into()
}

/// What one call did to its lead: its time and the trace of the step.
#[derive(Debug, Clone, PartialEq)]
pub struct LatestHits {
    /// The call's event time.
    pub at: Micros,
    /// Decay, fit changes, points given, awards refused, clamps.
    pub trace: Vec<leadscore_rules::eval::TraceEntry>,
}

/// The state of a lead after an identity merge (SPEC §5): `calls` (the combined history of
/// both leads, each with its arrival order) re-evaluated in time order, ties by arrival;
/// the source is that of the call that arrived first. Stages and conversions that
/// `previous` (the known lead's state before the merge) had reached keep their earlier time.
/// Returns the state and the transitions new to the known lead. Sorts `calls`.
pub fn merged_state<C: std::borrow::Borrow<Call>>(
    program: &Program,
    calls: &mut [(u64, C)],
    previous: Option<&LeadState>,
) -> (LeadState, Vec<Transition>) {
    calls.sort_by_key(|(seq, call)| (call.borrow().event.time, *seq));
    let mut state = LeadState::new(program);
    let mut replayed = Vec::new();
    for (_, call) in calls.iter() {
        eval::apply(program, &mut state, &call.borrow().event, &mut replayed);
    }
    state.source = calls
        .iter()
        .min_by_key(|(seq, _)| *seq)
        .and_then(|(_, call)| call.borrow().event.source.clone());
    if let Some(prev) = previous {
        // what was announced stays announced
        state.announced.clone_from(&prev.announced);
        // stages already reached stay reached at their earlier time
        for (i, old) in prev.reached.iter().enumerate() {
            if let (Some(at), Some(slot)) = (old, state.reached.get_mut(i)) {
                *slot = Some(*at);
            }
        }
        // conversions already made stay made: the first time is kept; count and value
        // come from the combined history when it makes the conversion too
        for (i, old) in prev.conversions.iter().enumerate() {
            let Some(slot) = state.conversions.get_mut(i) else {
                continue;
            };
            match (old, slot.as_mut()) {
                (Some(old), Some(new)) => new.at = old.at,
                (Some(old), None) => *slot = Some(old.clone()),
                _ => {}
            }
        }
    }
    let known = |t: &Transition| match (t, previous) {
        (_, None) => false,
        (Transition::StageReached { stage, .. }, Some(p)) => {
            p.reached.get(*stage).is_some_and(Option::is_some)
        }
        (Transition::Converted { conversion, .. }, Some(p)) => {
            p.conversions.get(*conversion).is_some_and(Option::is_some)
        }
    };
    let new = replayed.into_iter().filter(|t| !known(t)).collect();
    (state, new)
}

/// A lead rescored under the current rules ([`rescored_state`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Rescored {
    /// The new state.
    pub state: LeadState,
    /// Transitions new to the lead, each at its own time.
    pub transitions: Vec<Transition>,
    /// Some of the lead's calls have expired from its history (fewer kept than counted).
    pub partial: bool,
}

/// What a rescore of many leads did (SPEC §7 `rescore --format json`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RescoreReport {
    /// Leads looked at.
    pub leads: u64,
    /// Leads whose state changed.
    pub changed: u64,
    /// Leads rescored from a partly expired history.
    pub partial: u64,
    /// Notifications announced.
    pub notifications: u64,
}

/// A lead rescored under the current rules (SPEC §7): `calls`, its kept calls, are
/// re-evaluated from a fresh state in time order ([`merged_state`], the same re-evaluation
/// as an identity merge) and `old`, its stored state already loaded by name under the same
/// rules, is laid over the result: stages and conversions keep the times recorded, a
/// conversion keeps the re-evaluated count and value when the re-evaluation makes it too,
/// and what was announced stays announced. Profile, source, `first_seen` and the event count
/// come from `old` (fit is computed again from the profile); decay then ticks on to `old`'s
/// clock when that is later. When calls have expired (fewer kept than `old` counted), the
/// result is `partial` and `once` awards carry over by rule. Sorts `calls`.
pub fn rescored_state<C: std::borrow::Borrow<Call>>(
    program: &Program,
    calls: &mut [(u64, C)],
    old: &LeadState,
) -> Rescored {
    let (mut state, mut transitions) = merged_state(program, calls, Some(old));
    state.profile = old.profile.clone();
    state.fit = eval::compute_fit(program, &state.profile);
    state.source = old.source.clone();
    state.first_seen = old.first_seen;
    state.last_seen = state.last_seen.max(old.last_seen);
    state.events = old.events;
    let partial = (calls.len() as u64) < old.events;
    if partial {
        for &rule in &old.once_fired {
            if !state.once_fired.contains(&rule) {
                state.once_fired.push(rule);
            }
        }
    }
    match (state.clock, old.clock) {
        (Some(now), Some(then)) if then > now => {
            eval::tick(program, &mut state, then, &mut transitions);
        }
        (None, clock) => state.clock = clock,
        _ => {}
    }
    Rescored {
        state,
        transitions,
        partial,
    }
}

/// The other id a call merges into its lead (SPEC §5): an `alias` call's `previousId`, or
/// the `anonymousId` of a call that carries a `userId` too.
pub fn merge_partner(call: &Call) -> Option<&str> {
    match call.event.kind {
        CallKind::Alias => call.previous_id.as_deref(),
        _ if call.user_id.is_some() => call.anonymous_id.as_deref(),
        _ => None,
    }
}

/// Applies one call to a lead's state (SPEC §3): decay to the call's time, profile and fit,
/// points, stages and conversions; the transitions new to the lead are pushed onto
/// `transitions`. With `trace`, returns what the call did ([`LatestHits`]), for
/// `GET /leads/{id}` and `explain`.
pub fn step(
    program: &Program,
    state: &mut LeadState,
    call: &Call,
    transitions: &mut Vec<Transition>,
    trace: bool,
) -> Option<LatestHits> {
    if !trace {
        eval::apply(program, state, &call.event, transitions);
        return None;
    }
    let mut entries = Vec::new();
    eval::apply_traced(program, state, &call.event, transitions, &mut entries);
    Some(LatestHits {
        at: call.event.time,
        trace: entries,
    })
}

/// One notification to send: a transition for one target (a `notify` line of the rules).
#[derive(Debug, Clone, PartialEq)]
pub struct Announcement<'p> {
    /// The target's name.
    pub target: &'p str,
    /// What it announces.
    pub kind: Kind,
    /// The stage or conversion's name.
    pub name: compact_str::CompactString,
    /// When it happened.
    pub at: Micros,
    /// The transition itself.
    pub transition: Transition,
    /// Its place among everything ever announced for the lead, from 1: increasing in commit
    /// order across every target (a target sees gaps where the others' notifications are).
    pub sequence: u64,
}

/// The notifications of `transitions` that `state` has not announced before, in order;
/// `state` now records them as announced (SPEC §3 step 6, §7: never twice, whatever the
/// rules become).
pub fn announcements<'p>(
    program: &'p Program,
    state: &mut LeadState,
    transitions: &[Transition],
) -> Vec<Announcement<'p>> {
    // `announce` records each one it returns, in order, in the never-pruned `announced`
    let before = state.announced.len() as u64;
    eval::announce(program, state, transitions)
        .into_iter()
        .zip(before + 1..)
        .filter_map(|((rule, t), sequence)| {
            let target = program.notifies.get(rule)?.target.as_str();
            let (kind, at) = match t {
                Transition::StageReached { at, .. } => (Kind::StageReached, at),
                Transition::Converted { at, .. } => (Kind::Converted, at),
            };
            Some(Announcement {
                target,
                kind,
                name: transition_name(program, &t),
                at,
                transition: t,
                sequence,
            })
        })
        .collect()
}

/// The API's result for one call that reached lead `lead`, whose state is now `state`.
pub fn processed(
    program: &Program,
    lead: &str,
    state: Option<&LeadState>,
    duplicate: bool,
    transitions: Vec<Transition>,
    rescored: Vec<Transition>,
) -> Processed {
    Processed {
        lead: lead.to_owned(),
        duplicate,
        score: state.map_or(0.0, LeadState::score),
        stage: state.and_then(|s| s.stage(program)).map(str::to_owned),
        transitions,
        rescored,
    }
}

/// The largest call kept in a lead's history: a DynamoDB item holds 400 KB at most, with the
/// key and the other attributes. Every store holds calls to it, so a call `serve` takes the
/// functions take too.
pub const MAX_CALL_BYTES: usize = 350 * 1024;
/// The longest id (`userId`, `anonymousId`, `previousId`, `messageId`): DynamoDB sort keys
/// hold 1 KB, with a prefix and a time. Every store holds ids to it.
pub const MAX_ID_BYTES: usize = 512;

/// Whether a call can be kept (as `record`, the form kept in the history): ids of at most
/// [`MAX_ID_BYTES`], a record of at most [`MAX_CALL_BYTES`]. `Err((field, message))`: the
/// field's JSON path within the call (`""` for the call as a whole) and why.
pub fn check_call(call: &Call, record: &Value) -> Result<(), (String, String)> {
    let ids = [
        ("userId", call.user_id.as_deref()),
        ("anonymousId", call.anonymous_id.as_deref()),
        ("previousId", call.previous_id.as_deref()),
        ("messageId", Some(call.message_id.as_str())),
    ];
    for (field, id) in ids {
        if let Some(id) = id.filter(|id| id.len() > MAX_ID_BYTES) {
            return Err((
                field.to_owned(),
                format!(
                    "`{field}` has {} bytes; ids may have {MAX_ID_BYTES} bytes at most",
                    id.len()
                ),
            ));
        }
    }
    let size = serde_json::to_vec(record).map_or(0, |v| v.len());
    if size > MAX_CALL_BYTES {
        return Err((
            String::new(),
            format!(
                "the call has {size} bytes; a stored call may have {MAX_CALL_BYTES} bytes at most"
            ),
        ));
    }
    Ok(())
}

/// `transitions` made under `old`, as indexes of `new` (stages and conversions matched by
/// name; one `new` lacks is left out): for results computed before a request switched to
/// newer published rules, so that every result of the request reads under one rule set.
pub fn remap_transitions(old: &Program, new: &Program, transitions: &mut Vec<Transition>) {
    transitions.retain_mut(|t| match t {
        Transition::StageReached { stage, .. } => {
            let name = old.stages.get(*stage).map(|s| s.name.as_str());
            match new
                .stages
                .iter()
                .position(|s| Some(s.name.as_str()) == name)
            {
                Some(i) => {
                    *stage = i;
                    true
                }
                None => false,
            }
        }
        Transition::Converted { conversion, .. } => {
            let name = old.conversions.get(*conversion).map(|c| c.name.as_str());
            match new
                .conversions
                .iter()
                .position(|c| Some(c.name.as_str()) == name)
            {
                Some(i) => {
                    *conversion = i;
                    true
                }
                None => false,
            }
        }
    });
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn rules(text: &str) -> Program {
        crate::rules::compile_text("t.rules", text).unwrap().0
    }

    #[test]
    fn transitions_are_remapped_by_name_and_dropped_when_gone() {
        let old = rules("ruleset \"t\"\nscore \"P\" +10 on \"P\"\nstage mql when engagement >= 10\nstage sql when engagement >= 20\nconversion \"Buy\" on \"Buy\"\n");
        let new = rules("ruleset \"t\"\nscore \"P\" +10 on \"P\"\nstage lead when engagement >= 5\nstage warm when engagement >= 8\nstage sql when engagement >= 20\n");
        let mut ts = vec![
            Transition::StageReached { stage: 1, at: 7 },
            Transition::StageReached { stage: 0, at: 8 },
            Transition::Converted {
                conversion: 0,
                at: 9,
            },
        ];
        remap_transitions(&old, &new, &mut ts);
        // sql moved from index 1 to 2; mql and the conversion are gone
        assert_eq!(ts, vec![Transition::StageReached { stage: 2, at: 7 }]);
        assert_eq!(new.stages[2].name, "sql");
        let mut ts = vec![Transition::StageReached { stage: 2, at: 7 }];
        remap_transitions(&new, &old, &mut ts);
        assert_eq!(ts, vec![Transition::StageReached { stage: 1, at: 7 }]);
        let mut ts = vec![Transition::StageReached { stage: 0, at: 1 }];
        remap_transitions(&new, &old, &mut ts);
        assert!(ts.is_empty(), "`lead` is not in the old rules");
    }
}
