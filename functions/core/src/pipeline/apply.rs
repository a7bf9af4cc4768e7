//! The apply loop, written once over a store's narrow door ([`Records`]): load a lead with
//! its version (merged ids followed, rescored when stamped with other rules), read kept
//! calls, commit guarded by the version ([`Commit`]), answered [`Refused`] on a conflict or
//! a duplicate. It applies a run of calls for one lead: an identity merge first when the
//! first call merges another lead, else the longest prefix of calls that fits in one
//! commit, each duplicate answered as one; a conflict loads the lead again, a duplicate is
//! evaluated again without, a transient error waits and tries again.

use crate::api::{Accepted, Processed, StoreError};
use crate::ingest::call::Call;
use crate::pipeline::commit::{messages, Commit, MessageForm, Note, Pending, Record, Refused};
use crate::pipeline::{merge_partner, merged_state, processed, step, Cause, LatestHits};
use leadscore_rules::eval::{self, LeadState, Transition};
use leadscore_rules::program::NotifyWhen;
use leadscore_rules::time::Micros;
use leadscore_rules::Program;
use std::collections::HashSet;

/// How many times a run is tried on DynamoDB (conflicts, transient errors) before the
/// caller gets an error.
pub const MAX_ATTEMPTS: u32 = 20;

/// A lead as a store loads it for the pipeline.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The known id (the id asked for, or the lead it was merged into).
    pub known: String,
    /// The version of its record (`None`: no record yet).
    pub version: Option<u64>,
    /// Its record, under the store's rules.
    pub record: Option<Record>,
    /// Transitions a rescore found on loading (SPEC §7), announced by the next commit.
    pub rescored: Vec<Transition>,
}

impl Loaded {
    /// The record the lead's next calls start from: its record as loaded, or a new lead's
    /// whose first call arrives `arrival`.
    pub fn base(&self, program: &Program, arrival: u64) -> Record {
        match &self.record {
            Some(r) => Record {
                first_arrival: if r.first_arrival == 0 {
                    arrival
                } else {
                    r.first_arrival
                },
                ..r.clone()
            },
            None => Record {
                state: LeadState::new(program),
                first_arrival: arrival,
                ..Record::default()
            },
        }
    }

    /// The commit that writes `record` over this lead, guarded by what was read (its version
    /// and first arrival), with the calls applied and what they announce.
    pub fn commit<'c, T>(
        &self,
        record: Record,
        calls: Vec<(&'c T, u64)>,
        messages: Vec<Note>,
    ) -> Commit<'c, T> {
        Commit {
            known: self.known.clone(),
            expected: self.version,
            incarnation: self.record.as_ref().map_or(0, |r| r.first_arrival),
            record,
            calls,
            messages,
            absorbed: None,
        }
    }
}

/// The other lead of an identity merge, as stored (merged ids not followed).
#[derive(Debug, Clone)]
pub struct Absorbed {
    /// The version of its record.
    pub version: u64,
    /// The lead it was merged into already, if it was.
    pub merged_into: Option<String>,
    /// Its record, when it is a lead of its own.
    pub record: Option<Record>,
}

/// Why a step of the loop did not go through.
#[derive(Debug)]
pub enum StepError {
    /// The commit was refused: load again, or evaluate again without the duplicates.
    Refused(Refused),
    /// Throttled, unavailable, a lead being erased: wait and try again.
    Retry(StoreError),
    /// Trying again fails the same way.
    Fatal(StoreError),
}

/// What a store opens to the pipeline: the narrow door every store implements, for the
/// calls of type `T` it keeps.
#[allow(async_fn_in_trait)]
pub trait Records<T = Accepted> {
    /// The writes one commit may hold at most.
    const MAX_WRITES: usize;
    /// How many times a run is tried before the caller gets the last error.
    const ATTEMPTS: u32;
    /// What its commits' notes carry.
    type Form: MessageForm;

    /// The rules the store runs.
    fn program(&self) -> &Program;

    /// The lead `id` stands for, merged ids followed, with its version; rescored (and the
    /// transitions kept in [`Loaded::rescored`]) when it was evaluated under other rules.
    async fn load(&self, id: &str) -> Result<Loaded, StepError>;

    /// The record of `id` itself, a merge's other side (a pointer is not followed).
    async fn absorbed(&self, id: &str) -> Result<Option<Absorbed>, StepError>;

    /// The calls kept under `id` (its own partition), each with its arrival number.
    async fn kept_calls(&self, id: &str) -> Result<Vec<(u64, Call)>, StepError>;

    /// Writes `commit` at once, or nothing ([`StepError::Refused`] when a guard failed).
    async fn commit(&self, commit: &Commit<'_, T>) -> Result<(), StepError>;

    /// Waits before attempt `attempt` (from 1) after a conflict or a transient error.
    async fn pause(&self, attempt: u32);
}

/// What [`draft`] makes of a run's calls for one lead besides its new state: the calls it
/// applies (each with its arrival), what they announce, and how many calls it consumed
/// (duplicates included), with one result each when asked for.
#[derive(Debug)]
pub struct Draft<'c, T> {
    /// The calls applied, in order (held inline when there is one, as for every call of a
    /// replay).
    pub calls: smallvec::SmallVec<[(&'c T, u64); 1]>,
    /// What the commit announces, a rescore's first.
    pub messages: Vec<Note>,
    /// One result a call consumed ([`Wants::results`]).
    pub results: Vec<Processed>,
    /// Transitions of the calls applied, in order ([`Wants::results`] off).
    pub transitions: Vec<Transition>,
    /// How many calls of the run it consumed.
    pub consumed: usize,
}

/// What a [`draft`] keeps besides the commit.
#[derive(Debug, Clone, Copy)]
pub struct Wants {
    /// The trace of the latest call ([`crate::pipeline::LatestHits`]).
    pub trace: bool,
    /// One result a call, as the API answers; off, only the transitions are kept.
    pub results: bool,
}

/// The most notes one call can add: one a `notify` line, a line for any conversion one a
/// conversion.
fn most_notes(program: &Program) -> usize {
    program
        .notifies
        .iter()
        .map(|n| match n.when {
            NotifyWhen::Converted(None) => program.conversions.len(),
            _ => 1,
        })
        .sum()
}

/// Turns calls plus a lead's record into one commit's content: the one place a call
/// becomes a new state, kept calls and notes, for every store (the loop below, and the
/// embedded engine's own fast path, [`crate::store::engine::Engine`]).
///
/// `state` and `hits` are the record's, of lead `known` whose first call arrived
/// `incarnation` ([`Loaded::base`]), and become the new record's; `rescored` holds the
/// transitions a rescore on loading found (announced first, listed with the first call
/// applied). The run's calls are applied in order from the first, call `k` arriving
/// `arrival + k`, up to a call that `ends_run` (not the first) or the first that would not
/// fit in `max_writes`; a call whose `messageId` is in `dups`, or repeats one of the run, is
/// consumed as a duplicate.
#[allow(clippy::too_many_arguments)]
pub fn draft<'c, T: Pending, M: MessageForm>(
    program: &Program,
    (known, incarnation, rescored): (&str, u64, &[Transition]),
    (state, hits): (&mut LeadState, &mut Option<LatestHits>),
    run: &'c [T],
    arrival: u64,
    dups: &HashSet<String>,
    ends_run: impl Fn(&Call) -> bool,
    max_writes: usize,
    wants: Wants,
) -> Result<Draft<'c, T>, M::Error> {
    // a rescore's notifications come before the calls' own (SPEC §7)
    let mut notes: Vec<Note> = match rescored.is_empty() {
        true => Vec::new(),
        false => messages::<M>(
            program,
            (known, incarnation),
            state,
            rescored,
            Some(Cause::RulesChanged),
        )?,
    };
    let mut rescored = rescored.to_vec();
    let mut out = Draft {
        calls: smallvec::SmallVec::new(),
        messages: Vec::new(),
        results: Vec::new(),
        transitions: Vec::new(),
        consumed: 0,
    };
    let bound = 2 + most_notes(program);
    let mut seen: HashSet<&str> = HashSet::new();
    for (k, pending) in run.iter().enumerate() {
        let call = pending.call();
        if k > 0 && ends_run(call) {
            break;
        }
        let id = call.message_id.as_str();
        if dups.contains(id) || (run.len() > 1 && !seen.insert(id)) {
            if wants.results {
                out.results.push(processed(
                    program,
                    known,
                    Some(state),
                    true,
                    Vec::new(),
                    Vec::new(),
                ));
            }
            out.consumed += 1;
            continue;
        }
        // the record, what is written so far, 2 for this call, and its notes
        let written = 1 + 2 * out.calls.len() + notes.len();
        let mut transitions = Vec::new();
        let (step_hits, new) = if out.calls.is_empty() || written + bound <= max_writes {
            // fits whatever the call announces: applied in place
            let step_hits = step(program, state, call, &mut transitions, wants.trace);
            let new = messages::<M>(program, (known, incarnation), state, &transitions, None)?;
            (step_hits, new)
        } else {
            let mut probe = state.clone();
            let step_hits = step(program, &mut probe, call, &mut transitions, wants.trace);
            let new = messages::<M>(
                program,
                (known, incarnation),
                &mut probe,
                &transitions,
                None,
            )?;
            if written + 2 + new.len() > max_writes {
                break;
            }
            *state = probe;
            (step_hits, new)
        };
        out.calls.push((pending, arrival + k as u64));
        notes.extend(new);
        *hits = step_hits;
        out.consumed += 1;
        if wants.results {
            out.results.push(processed(
                program,
                known,
                Some(state),
                false,
                transitions,
                std::mem::take(&mut rescored),
            ));
        } else {
            out.transitions.extend(transitions);
        }
    }
    out.messages = notes;
    Ok(out)
}

/// Brings a lead up to date without a call, for every store (SPEC §6 decay, §7): what a
/// rescore found (`rescored`) is announced first, then, with `tick`, decay and stages run to
/// that time. Returns the new state and what it announces; the commit that writes them
/// carries no call.
pub fn refresh<M: MessageForm>(
    program: &Program,
    (known, incarnation): (&str, u64),
    mut state: LeadState,
    rescored: &[Transition],
    tick: Option<Micros>,
) -> Result<(LeadState, Vec<Note>), M::Error> {
    let mut notes = messages::<M>(
        program,
        (known, incarnation),
        &mut state,
        rescored,
        Some(Cause::RulesChanged),
    )?;
    if let Some(now) = tick {
        let mut transitions = Vec::new();
        eval::tick(program, &mut state, now, &mut transitions);
        notes.extend(messages::<M>(
            program,
            (known, incarnation),
            &mut state,
            &transitions,
            None,
        )?);
    }
    Ok((state, notes))
}

/// Applies a run of calls for one lead id (the same `lead_id()`), from the first; returns
/// how many it consumed (a call that merges another lead ends a run; a run too large for
/// one commit is committed in parts) and the lead as committed, which the next part of the
/// same run starts from without loading it again. `carry` is that lead. `arrival` numbers
/// the run's calls in order.
pub async fn apply_run<T: Pending, S: Records<T>>(
    store: &S,
    run: &[T],
    arrival: u64,
    out: &mut Vec<Processed>,
    carry: Option<Loaded>,
) -> Result<(usize, Option<Loaded>), StoreError> {
    let program = store.program();
    let Some(first) = run.first() else {
        return Ok((0, None));
    };
    let mut dups: HashSet<String> = HashSet::new();
    let mut no_merge: HashSet<String> = HashSet::new();
    let mut loaded: Option<Loaded> = carry;
    let mut last_error = StoreError::Unavailable("too many conflicting writes".into());
    // a second pass over the same read (duplicates found, or no merge after all) needs no
    // pause: nobody else is in the way
    let mut again_at_once = false;
    for attempt in 0..S::ATTEMPTS {
        if attempt > 0 && !std::mem::take(&mut again_at_once) {
            store.pause(attempt).await;
        }
        let lead = match loaded.take() {
            Some(lead) => lead,
            None => match store.load(first.call().lead_id()).await {
                Ok(lead) => lead,
                Err(StepError::Retry(e)) => {
                    last_error = e;
                    continue;
                }
                Err(StepError::Refused(_)) => continue,
                Err(StepError::Fatal(e)) => return Err(e),
            },
        };
        let merged_already = |other: &str| {
            lead.record
                .as_ref()
                .is_some_and(|r| r.merged.iter().any(|m| m == other))
        };
        let needs_merge = |call: &Call| -> Option<String> {
            let other = merge_partner(call)?;
            (other != lead.known
                && !merged_already(other)
                && !no_merge.contains(other)
                && !dups.contains(call.message_id.as_str()))
            .then(|| other.to_owned())
        };
        if let Some(other) = needs_merge(first.call()) {
            match merge_one(store, first, &other, &lead, arrival).await {
                Ok(Some(processed)) => {
                    out.push(processed);
                    return Ok((1, None));
                }
                Ok(None) => {
                    // the other id was merged elsewhere already: an ordinary call
                    no_merge.insert(other);
                    loaded = Some(lead);
                    again_at_once = true;
                }
                // a duplicate merges nothing: evaluated again as one, at once
                Err(err) => recover(
                    err,
                    lead,
                    &mut dups,
                    &mut loaded,
                    &mut again_at_once,
                    &mut last_error,
                )?,
            }
            continue;
        }
        // the longest prefix without merges that fits in one commit
        let mut record = lead.base(program, arrival);
        let draft = draft::<T, S::Form>(
            program,
            (&lead.known, record.first_arrival, &lead.rescored),
            (&mut record.state, &mut record.hits),
            run,
            arrival,
            &dups,
            |call| needs_merge(call).is_some(),
            S::MAX_WRITES,
            Wants {
                trace: true,
                results: true,
            },
        )
        .map_err(|e| StoreError::Failed(e.to_string()))?;
        if draft.calls.is_empty() {
            out.extend(draft.results);
            return Ok((draft.consumed, Some(lead)));
        }
        let commit = lead.commit(record, draft.calls.into_vec(), draft.messages);
        match store.commit(&commit).await {
            Ok(()) => {
                out.extend(draft.results);
                let committed = Loaded {
                    version: Some(commit.version()),
                    known: commit.known,
                    record: Some(commit.record),
                    rescored: Vec::new(),
                };
                return Ok((draft.consumed, Some(committed)));
            }
            Err(err) => recover(
                err,
                lead,
                &mut dups,
                &mut loaded,
                &mut again_at_once,
                &mut last_error,
            )?,
        }
    }
    Err(last_error)
}

/// After a failed commit: the duplicates it found are remembered, and when the lead had
/// not moved on the same read is evaluated again at once (without them); a transient error
/// is kept for the caller should every attempt fail; anything else ends the run.
fn recover(
    err: StepError,
    lead: Loaded,
    dups: &mut HashSet<String>,
    loaded: &mut Option<Loaded>,
    again_at_once: &mut bool,
    last_error: &mut StoreError,
) -> Result<(), StoreError> {
    match err {
        StepError::Refused(refused) => {
            dups.extend(refused.duplicates);
            if !refused.conflict {
                *loaded = Some(lead);
                *again_at_once = true;
            }
            Ok(())
        }
        StepError::Retry(e) => {
            *last_error = e;
            Ok(())
        }
        StepError::Fatal(e) => Err(e),
    }
}

/// Merges lead `other` into `lead` and applies `accepted` (SPEC §5): the combined kept
/// calls re-evaluated ([`merged_state`]), then the call, in one commit that turns `other`
/// into a pointer. `Ok(None)`: `other` was merged into another lead already, so no merge
/// happens.
async fn merge_one<T: Pending, S: Records<T>>(
    store: &S,
    accepted: &T,
    other: &str,
    lead: &Loaded,
    arrival: u64,
) -> Result<Option<Processed>, StepError> {
    let program = store.program();
    let absorbed = store.absorbed(other).await?;
    if absorbed.as_ref().is_some_and(|a| a.merged_into.is_some()) {
        return Ok(None);
    }
    let absorbed_record = absorbed.as_ref().and_then(|a| a.record.as_ref());
    // the merged lead's first arrival (its incarnation in notification ids), as stored
    let first_arrival = {
        let known = lead.record.as_ref().map_or(0, |r| r.first_arrival);
        let absorbed_first = absorbed_record.map_or(0, |r| r.first_arrival);
        match (known, absorbed_first) {
            (0, 0) => arrival,
            (0, x) | (x, 0) => x,
            (a, b) => a.min(b),
        }
    };
    let fatal =
        |e: <S::Form as MessageForm>::Error| StepError::Fatal(StoreError::Failed(e.to_string()));
    // a rescore's transitions are announced first, and what it announced stays announced
    let mut previous = lead.record.as_ref().map(|r| r.state.clone());
    let mut notes = match previous.as_mut() {
        Some(p) => messages::<S::Form>(
            program,
            (&lead.known, first_arrival),
            p,
            &lead.rescored,
            Some(Cause::RulesChanged),
        )
        .map_err(fatal)?,
        None => Vec::new(),
    };
    let previous = previous.as_ref();
    let mut partial = lead.record.as_ref().is_some_and(|r| r.partial);
    let mut merged = lead
        .record
        .as_ref()
        .map_or_else(Vec::new, |r| r.merged.clone());
    let known_merged = merged.clone();
    merged.push(other.to_owned());
    let (mut state, mut transitions) = match absorbed_record {
        Some(absorbed) => {
            merged.extend(absorbed.merged.iter().cloned());
            // the combined history: the absorbed lead's partitions and the known one's
            let mut partitions = vec![other.to_owned()];
            partitions.extend(absorbed.merged.iter().cloned());
            if lead.version.is_some() {
                partitions.push(lead.known.clone());
                partitions.extend(known_merged);
            }
            let mut calls: Vec<(u64, Call)> = Vec::new();
            for partition in &partitions {
                calls.extend(store.kept_calls(partition).await?);
            }
            let counted = previous.map_or(0, |p| p.events) + absorbed.state.events;
            partial |= absorbed.partial || (calls.len() as u64) < counted;
            merged_state(program, &mut calls, previous)
        }
        None => (
            previous.cloned().unwrap_or_else(|| LeadState::new(program)),
            Vec::new(),
        ),
    };
    let hits = step(program, &mut state, accepted.call(), &mut transitions, true);
    notes.extend(
        messages::<S::Form>(
            program,
            (&lead.known, first_arrival),
            &mut state,
            &transitions,
            None,
        )
        .map_err(fatal)?,
    );
    let result = processed(
        program,
        &lead.known,
        Some(&state),
        false,
        Vec::new(),
        lead.rescored.clone(),
    );
    let record = Record {
        state,
        merged,
        first_arrival,
        hits,
        partial,
    };
    let commit = Commit {
        absorbed: Some((other.to_owned(), absorbed.as_ref().map(|a| a.version))),
        ..lead.commit(record, vec![(accepted, arrival)], notes)
    };
    store.commit(&commit).await?;
    Ok(Some(Processed {
        transitions,
        ..result
    }))
}

/// Applies the accepted calls of one request in order, one result per call appended to
/// `out`: each run of calls for one lead id through [`apply_run`], the next part of a run
/// starting from the lead as just committed. `base` numbers the calls (call `i` arrives
/// `base + i`). On error `out` holds the results of the calls committed before it (their
/// number says where to go on from), and the failing call changed nothing.
pub async fn apply_calls<T: Pending, S: Records<T>>(
    store: &S,
    calls: &[T],
    base: u64,
    out: &mut Vec<Processed>,
) -> Result<(), StoreError> {
    let start = out.len();
    let mut i = 0;
    let mut carry = None;
    while i < calls.len() {
        let id = calls[i].call().lead_id();
        let end = calls[i..]
            .iter()
            .position(|a| a.call().lead_id() != id)
            .map_or(calls.len(), |p| i + p);
        let (consumed, committed) =
            apply_run(store, &calls[i..end], base + i as u64, out, carry.take()).await?;
        i += consumed.max(1);
        debug_assert_eq!(out.len() - start, i, "one result a call");
        // the rest of the same run starts from the lead just committed
        carry = committed.filter(|_| i < end);
    }
    Ok(())
}
