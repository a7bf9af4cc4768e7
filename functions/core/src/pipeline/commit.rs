//! The commit: everything one step of the pipeline writes for one lead, as a value a store
//! applies at once (DESIGN: one event, one atomic commit), guarded by the version the lead
//! was read at. The pipeline decides what goes in it: the new record, the calls applied,
//! what is announced, a merge's pointer. A store only says how to write it, and answers
//! [`Refused`] when the lead moved on meanwhile or a call was applied before, so the loop
//! around it loads again or evaluates again without the duplicates.

use crate::api::Accepted;
use crate::ingest::call::Call;
use crate::output::lead_object;
use crate::pipeline::{announcements, Cause, LatestHits};
use leadscore_rules::eval::{LeadState, Transition};
use leadscore_rules::time::format_rfc3339;
use leadscore_rules::Program;
use leadscore_wire::{Kind, Message, RulesRef};
use serde_json::Value;

/// A call a commit applies, as the pipeline was given it: the normalised call, and with it
/// whatever the store keeps of it (the call as received for the functions' history, a line
/// of the input for `replay`).
pub trait Pending {
    /// The normalised call.
    fn call(&self) -> &Call;
}

impl Pending for Accepted {
    fn call(&self) -> &Call {
        &self.call
    }
}

/// A lead's record as a commit writes it.
#[derive(Debug, Clone, Default)]
pub struct Record {
    /// The lead's state.
    pub state: LeadState,
    /// The ids merged into the lead (their kept calls are the lead's too).
    pub merged: Vec<String>,
    /// The arrival of the lead's first call: its incarnation in notification ids.
    pub first_arrival: u64,
    /// What the latest call did.
    pub hits: Option<LatestHits>,
    /// The lead's history is partly expired (its kept calls are fewer than its events).
    pub partial: bool,
}

/// What one step writes for lead `known`, all or nothing.
#[derive(Debug)]
pub struct Commit<'c, T = Accepted> {
    /// The lead's known id.
    pub known: String,
    /// The version its record must still have; `None`: it must have no record yet. The new
    /// record's version is one higher.
    pub expected: Option<u64>,
    /// The first arrival of the record read (0 when it had none stored), which it must
    /// still have: a lead erased and created again meanwhile is another lead, whatever its
    /// version.
    pub incarnation: u64,
    /// The new record.
    pub record: Record,
    /// The calls applied, in order, each with its arrival number: each one's idempotency
    /// record (which must not exist yet) and its place in the lead's history.
    pub calls: Vec<(&'c T, u64)>,
    /// What the commit announces, in order (a rescore's first, SPEC §7).
    pub messages: Vec<Note>,
    /// An identity merge: the absorbed id and the version its record was read at (`None`:
    /// it had none). Its record becomes a pointer to `known`.
    pub absorbed: Option<(String, Option<u64>)>,
}

// the calls are borrowed: a commit clones whatever they are
impl<T> Clone for Commit<'_, T> {
    fn clone(&self) -> Self {
        Commit {
            known: self.known.clone(),
            expected: self.expected,
            incarnation: self.incarnation,
            record: self.record.clone(),
            calls: self.calls.clone(),
            messages: self.messages.clone(),
            absorbed: self.absorbed.clone(),
        }
    }
}

impl<T> Commit<'_, T> {
    /// How many writes it takes: the record, two a call (idempotency record, kept call),
    /// one a message, and a merge's pointer.
    pub fn writes(&self) -> usize {
        1 + 2 * self.calls.len() + self.messages.len() + usize::from(self.absorbed.is_some())
    }

    /// The version of the record it writes.
    pub fn version(&self) -> u64 {
        self.expected.map_or(1, |v| v + 1)
    }
}

/// One announcement of a commit: the transition it tells of (its index is the stage's or
/// conversion's under the commit's rules), to which target, and, for a store that sends it,
/// the whole message.
#[derive(Debug, Clone)]
pub struct Note {
    /// The target's name (a `notify` line).
    pub target: String,
    /// The stage's or conversion's name.
    pub name: compact_str::CompactString,
    /// The transition.
    pub transition: Transition,
    /// Why, when it is not the lead's own call.
    pub cause: Option<Cause>,
    /// The message the target is sent ([`Whole`]); `None` for a store that keeps the names
    /// only ([`NamesOnly`]).
    pub message: Option<Message>,
}

impl Note {
    /// The notification as `replay --format json` prints it, for lead `known`.
    pub fn as_replay_prints(&self, known: &str) -> Value {
        let (kind, at) = match self.transition {
            Transition::StageReached { at, .. } => (Kind::StageReached, at),
            Transition::Converted { at, .. } => (Kind::Converted, at),
        };
        let mut note = serde_json::json!({
            "target": self.target,
            "kind": kind.as_str(),
            "lead": known,
            kind.name_field(): self.name.as_str(),
            "at": format_rfc3339(at),
        });
        if let (Some(cause), Some(fields)) = (self.cause, note.as_object_mut()) {
            fields.insert("cause".into(), Value::from(cause.as_str()));
        }
        note
    }
}

/// What a commit's notes carry: the whole message each target is sent, or the names only.
pub trait MessageForm {
    /// Why a message could not be built.
    type Error: std::fmt::Display;
    /// The lead object the messages of lead `known`, now in `state`, carry (`None`: no
    /// message is built).
    fn lead(
        program: &Program,
        known: &str,
        state: &LeadState,
    ) -> Result<Option<Value>, Self::Error>;
}

/// Whole messages, with the lead object and its profile (SPEC §6): what the DynamoDB store
/// writes to its outbox.
#[derive(Debug)]
pub enum Whole {}

impl MessageForm for Whole {
    type Error = serde_json::Error;

    fn lead(
        program: &Program,
        known: &str,
        state: &LeadState,
    ) -> Result<Option<Value>, serde_json::Error> {
        let mut lead = serde_json::to_value(lead_object(program, known, state))?;
        if let Some(fields) = lead.as_object_mut() {
            fields.insert("profile".into(), serde_json::to_value(&state.profile)?);
        }
        Ok(Some(lead))
    }
}

/// The names only: the embedded engine keeps notifications as (target, transition, name),
/// so a replay of a million calls builds no message it would not print.
#[derive(Debug)]
pub enum NamesOnly {}

impl MessageForm for NamesOnly {
    type Error = std::convert::Infallible;

    fn lead(_: &Program, _: &str, _: &LeadState) -> Result<Option<Value>, Self::Error> {
        Ok(None)
    }
}

/// Why a store refused a commit, which changed nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refused {
    /// The lead's record, or the absorbed lead's, is no longer at the version read: load
    /// the lead again.
    pub conflict: bool,
    /// The `messageId`s of calls applied before (their idempotency records exist):
    /// duplicates, to evaluate again without.
    pub duplicates: Vec<String>,
}

/// The notes of `transitions` that lead `known` (incarnation `incarnation`, now in
/// `state`) has not announced before, in order; `state` records them as announced. In the
/// [`Whole`] form each carries its message: the lead object with its profile (SPEC §6), the
/// rules and the lead's sequence number.
pub fn messages<M: MessageForm>(
    program: &Program,
    (known, incarnation): (&str, u64),
    state: &mut LeadState,
    transitions: &[Transition],
    cause: Option<Cause>,
) -> Result<Vec<Note>, M::Error> {
    let found = announcements(program, state, transitions);
    if found.is_empty() {
        return Ok(Vec::new());
    }
    let lead = M::lead(program, known, state)?;
    let rules = lead.as_ref().map(|_| RulesRef {
        ruleset: program.name.clone(),
        version: program.version.clone(),
    });
    Ok(found
        .into_iter()
        .map(|a| {
            let message = lead.as_ref().zip(rules.as_ref()).map(|(lead, rules)| {
                let mut message = Message::new(
                    a.kind,
                    &a.name,
                    format_rfc3339(a.at),
                    a.target,
                    (known, incarnation),
                    lead.clone(),
                    rules.clone(),
                    cause.map(Cause::as_str),
                );
                message.sequence = Some(a.sequence);
                message
            });
            Note {
                target: a.target.to_owned(),
                name: a.name,
                transition: a.transition,
                cause,
                message,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::ingest::call::TimePolicy;
    use crate::ingest::segment::normalize_call;
    use crate::pipeline::step;

    fn program() -> Program {
        let text = "ruleset \"t\"\nscore \"Demo\" +10 on \"Demo\"\nstage mql when engagement >= 10\nstage sql when engagement >= 20\nnotify crm when reached mql\nnotify sales when reached mql\nnotify crm when reached sql\n";
        crate::rules::compile_text("t.rules", text)
            .expect("rules")
            .0
    }

    fn demo(program: &Program, state: &mut LeadState, at: &str) -> Vec<Transition> {
        let v = serde_json::json!({"type": "identify", "userId": "u1", "messageId": at,
            "timestamp": at, "traits": {"email": "u1@example.com"}});
        let identify = normalize_call(&v, "", &TimePolicy::Required).unwrap();
        let v = serde_json::json!({"type": "track", "event": "Demo", "userId": "u1",
            "messageId": format!("{at}-demo"), "timestamp": at});
        let call = normalize_call(&v, "", &TimePolicy::Required).unwrap();
        let mut transitions = Vec::new();
        step(program, state, &identify, &mut transitions, false);
        step(program, state, &call, &mut transitions, false);
        transitions
    }

    #[test]
    fn messages_are_announced_once_numbered_and_carry_the_profile() {
        let program = program();
        let mut state = LeadState::new(&program);
        let t = demo(&program, &mut state, "2026-01-01T00:00:00Z");
        let first = messages::<Whole>(&program, ("u1", 7), &mut state, &t, None).unwrap();
        let first: Vec<Message> = first.into_iter().filter_map(|n| n.message).collect();
        let targets: Vec<&str> = first.iter().map(|m| m.target.as_str()).collect();
        assert_eq!(targets, ["crm", "sales"]);
        assert_eq!(first[0].sequence, Some(1));
        assert_eq!(first[1].sequence, Some(2));
        assert_eq!(first[0].lead["profile"]["email"], "u1@example.com");
        assert_eq!(first[0].rules.as_ref().unwrap().ruleset, "t");
        // the same transitions again: already announced, nothing
        assert!(messages::<Whole>(&program, ("u1", 7), &mut state, &t, None)
            .unwrap()
            .is_empty());
        let t = demo(&program, &mut state, "2026-01-02T00:00:00Z");
        let second = messages::<Whole>(
            &program,
            ("u1", 7),
            &mut state,
            &t,
            Some(Cause::RulesChanged),
        )
        .unwrap();
        assert_eq!(second.len(), 1);
        assert!(matches!(
            second[0].transition,
            Transition::StageReached { stage: 1, .. }
        ));
        assert_eq!(second[0].message.as_ref().unwrap().sequence, Some(3));
        assert_eq!(
            second[0].as_replay_prints("u1"),
            serde_json::json!({"target": "crm", "kind": "stage_reached", "lead": "u1",
                "stage": "sql", "at": "2026-01-02T00:00:00Z", "cause": "rules_changed"})
        );
        // another incarnation (after an erasure) gives other ids
        let mut again = LeadState::new(&program);
        let t = demo(&program, &mut again, "2026-01-01T00:00:00Z");
        let other = messages::<Whole>(&program, ("u1", 8), &mut again, &t, None).unwrap();
        assert_ne!(other[0].message.as_ref().unwrap().id, first[0].id);
        // the names only: the same notes, no message
        let mut names = LeadState::new(&program);
        let t = demo(&program, &mut names, "2026-01-01T00:00:00Z");
        let Ok(names) = messages::<NamesOnly>(&program, ("u1", 7), &mut names, &t, None);
        let targets: Vec<&str> = names.iter().map(|n| n.target.as_str()).collect();
        assert_eq!(targets, ["crm", "sales"]);
        assert!(names.iter().all(|n| n.message.is_none() && n.name == "mql"));
    }

    #[test]
    fn a_commit_counts_its_writes() {
        let program = program();
        let accepted = Accepted {
            call: normalize_call(
                &serde_json::json!({"type": "track", "event": "Demo", "userId": "u1",
                    "messageId": "m1", "timestamp": "2026-01-01T00:00:00Z"}),
                "",
                &TimePolicy::Required,
            )
            .unwrap(),
            record: Value::Null,
        };
        let mut commit = Commit {
            known: "u1".into(),
            expected: None,
            incarnation: 0,
            record: Record {
                state: LeadState::new(&program),
                merged: Vec::new(),
                first_arrival: 1,
                hits: None,
                partial: false,
            },
            calls: vec![(&accepted, 1)],
            messages: Vec::new(),
            absorbed: None,
        };
        assert_eq!((commit.writes(), commit.version()), (3, 1));
        commit.expected = Some(4);
        commit.absorbed = Some(("anon".into(), None));
        assert_eq!((commit.writes(), commit.version()), (4, 5));
    }
}
