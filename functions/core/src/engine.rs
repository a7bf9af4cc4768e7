//! The embedded pipeline: normalised calls in, lead state and notifications out.
//!
//! It keeps every lead in memory with its accepted calls (for identity merges), recognises
//! duplicate `messageId`s, and follows merged anonymous ids to their known lead (SPEC §3, §5).
//! `replay`, `explain` and the local tools run on it; the Lambda functions use the same step
//! function over DynamoDB.

use crate::segment::Call;
use ahash::{AHashMap, AHashSet};
use leadscore_rules::eval::{self, LeadState, Transition};
use leadscore_rules::time::Micros;
use leadscore_rules::{CallKind, Program};
use std::sync::Arc;

/// A notification produced by a transition (SPEC §3 step 6).
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// The target's name (a `notify` line).
    pub target: String,
    /// The lead.
    pub lead: String,
    /// What happened.
    pub transition: Transition,
    /// Production order, for stable sorting.
    pub seq: u64,
}

/// One lead as the embedded store keeps it.
#[derive(Debug, Clone)]
pub struct LeadRecord {
    /// The bounded state.
    pub state: LeadState,
    /// Accepted calls with their arrival order, kept for merges and `explain`.
    pub history: Vec<(u64, Arc<Call>)>,
    /// Arrival order of the lead's first call (decides the source on merge).
    pub first_arrival: u64,
}

/// What happened to one call.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Applied to this lead, with the transitions it caused (merges included).
    Applied {
        /// The lead it reached.
        lead: String,
        /// Transitions new to the lead.
        transitions: Vec<Transition>,
    },
    /// A `messageId` seen before: acknowledged, nothing changed.
    Duplicate {
        /// The lead it would have reached.
        lead: String,
    },
}

/// The embedded engine: a rule program and the leads it has seen.
pub struct Engine<'p> {
    program: &'p Program,
    leads: AHashMap<String, LeadRecord>,
    aliases: AHashMap<String, String>,
    seen: AHashSet<String>,
    notifications: Vec<Notification>,
    arrivals: u64,
    keep_history: bool,
}

impl<'p> Engine<'p> {
    /// An empty engine for a program.
    pub fn new(program: &'p Program) -> Self {
        Engine {
            program,
            leads: AHashMap::new(),
            aliases: AHashMap::new(),
            seen: AHashSet::new(),
            notifications: Vec::new(),
            arrivals: 0,
            keep_history: true,
        }
    }

    /// The program.
    pub fn program(&self) -> &'p Program {
        self.program
    }

    /// The leads, by id (unsorted).
    pub fn leads(&self) -> impl Iterator<Item = (&String, &LeadRecord)> {
        self.leads.iter()
    }

    /// One lead, following merged ids.
    pub fn lead(&self, id: &str) -> Option<&LeadRecord> {
        self.leads.get(self.resolve(id))
    }

    /// Notifications in production order.
    pub fn notifications(&self) -> &[Notification] {
        &self.notifications
    }

    /// The known lead an id stands for (itself unless it was merged).
    pub fn resolve<'a>(&'a self, id: &'a str) -> &'a str {
        self.aliases.get(id).map_or(id, String::as_str)
    }

    /// Processes one accepted call.
    pub fn process(&mut self, call: Arc<Call>) -> Outcome {
        let key = self.resolve(call.lead_id()).to_string();
        if self.seen.contains(&call.message_id) {
            return Outcome::Duplicate { lead: key };
        }
        self.seen.insert(call.message_id.clone());
        self.arrivals += 1;
        let seq = self.arrivals;
        let mut transitions = Vec::new();

        // Identity merge: alias(previousId -> userId), or a call carrying both ids.
        let other = match call.event.kind {
            CallKind::Alias => call.previous_id.as_deref(),
            _ if call.user_id.is_some() => call.anonymous_id.as_deref(),
            _ => None,
        };
        if let Some(other) = other {
            if other != key && !self.aliases.contains_key(other) && self.aliases.get(&key).is_none()
            {
                self.merge(other, &key, &mut transitions);
            }
        }

        let program = self.program;
        let record = self.leads.entry(key.clone()).or_insert_with(|| LeadRecord {
            state: LeadState::new(program),
            history: Vec::new(),
            first_arrival: seq,
        });
        let start = transitions.len();
        eval::apply(program, &mut record.state, &call.event, &mut transitions);
        if self.keep_history {
            record.history.push((seq, call));
        }
        let _ = start;
        self.announce(&key, &transitions);
        Outcome::Applied {
            lead: key,
            transitions,
        }
    }

    /// Folds lead `from` into lead `into` by re-evaluating their combined history in time
    /// order; records the alias so later calls with `from` reach `into`.
    fn merge(&mut self, from: &str, into: &str, transitions: &mut Vec<Transition>) {
        self.aliases.insert(from.to_string(), into.to_string());
        let Some(absorbed) = self.leads.remove(from) else {
            return;
        };
        // any lead that had been merged into `from` now follows `into`
        for target in self.aliases.values_mut() {
            if target == from {
                *target = into.to_string();
            }
        }
        let program = self.program;
        let previous = self.leads.remove(into);
        let mut history = absorbed.history;
        let mut first_arrival = absorbed.first_arrival;
        if let Some(prev) = &previous {
            history.extend(prev.history.iter().cloned());
            first_arrival = first_arrival.min(prev.first_arrival);
        }
        history.sort_by_key(|(seq, call)| (call.event.time, *seq));
        let mut state = LeadState::new(program);
        let mut replayed = Vec::new();
        for (_, call) in &history {
            eval::apply(program, &mut state, &call.event, &mut replayed);
        }
        state.source = history
            .iter()
            .min_by_key(|(seq, _)| *seq)
            .and_then(|(_, call)| call.event.source.clone());
        if let Some(prev) = &previous {
            // stages already reached stay reached at their earlier time
            for (i, old) in prev.state.reached.iter().enumerate() {
                if let Some(at) = old {
                    state.reached[i] = Some(*at);
                }
            }
            for (i, old) in prev.state.conversions.iter().enumerate() {
                if let (Some(old), Some(new)) = (old, state.conversions[i].as_mut()) {
                    new.at = old.at;
                }
            }
        }
        let known = |t: &Transition| match (t, &previous) {
            (_, None) => false,
            (Transition::StageReached { stage, .. }, Some(p)) => p.state.reached[*stage].is_some(),
            (Transition::Converted { conversion, .. }, Some(p)) => {
                p.state.conversions[*conversion].is_some()
            }
        };
        transitions.extend(replayed.into_iter().filter(|t| !known(t)));
        self.leads.insert(
            into.to_string(),
            LeadRecord {
                state,
                history,
                first_arrival,
            },
        );
    }

    fn announce(&mut self, lead: &str, transitions: &[Transition]) {
        for (n, t) in eval::notifications(self.program, transitions) {
            let seq = self.notifications.len() as u64;
            self.notifications.push(Notification {
                target: self.program.notifies[n].target.clone(),
                lead: lead.to_string(),
                transition: t,
                seq,
            });
        }
    }

    /// Ticks every lead at time `at` (decay, then stages; SPEC §6 `decay`).
    pub fn tick_all(&mut self, at: Micros) {
        let program = self.program;
        let mut ids: Vec<String> = self.leads.keys().cloned().collect();
        ids.sort();
        for id in ids {
            let mut transitions = Vec::new();
            if let Some(record) = self.leads.get_mut(&id) {
                eval::tick(program, &mut record.state, at, &mut transitions);
            }
            self.announce(&id, &transitions);
        }
    }
}
