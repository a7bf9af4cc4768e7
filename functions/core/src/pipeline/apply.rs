//! The apply loop, written once over a store's narrow door ([`Records`]): load a lead with
//! its version (merged ids followed, rescored when stamped with other rules), read kept
//! calls, commit guarded by the version ([`Commit`]), answered [`Refused`] on a conflict or
//! a duplicate. It applies a run of calls for one lead: an identity merge first when the
//! first call merges another lead, else the longest prefix of calls that fits in one
//! commit, each duplicate answered as one; a conflict loads the lead again, a duplicate is
//! evaluated again without, a transient error waits and tries again.

use crate::api::{Accepted, Processed, StoreError};
use crate::ingest::segment::Call;
use crate::pipeline::commit::{Commit, Note, Record, Refused};
use crate::pipeline::{merge_partner, merged_state, processed, step, Cause};
use leadscore_rules::eval::{LeadState, Transition};
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
    /// The commit that writes `record` over this lead, guarded by what was read (its version
    /// and first arrival), with the calls applied and what they announce.
    pub fn commit<'c>(
        &self,
        record: Record,
        calls: Vec<(&'c Accepted, u64)>,
        messages: Vec<Note>,
    ) -> Commit<'c> {
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

/// What a store opens to the pipeline: the narrow door every store implements.
#[allow(async_fn_in_trait)]
pub trait Records {
    /// The writes one commit may hold at most.
    const MAX_WRITES: usize;
    /// How many times a run is tried before the caller gets the last error.
    const ATTEMPTS: u32;

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
    async fn commit(&self, commit: &Commit<'_>) -> Result<(), StepError>;

    /// Waits before attempt `attempt` (from 1) after a conflict or a transient error.
    async fn pause(&self, attempt: u32);
}

/// Applies a run of calls for one lead id (the same `lead_id()`), from the first; returns
/// how many it consumed (a call that merges another lead ends a run; a run too large for
/// one commit is committed in parts) and the lead as committed, which the next part of the
/// same run starts from without loading it again. `carry` is that lead. `arrival` numbers
/// the run's calls in order.
pub async fn apply_run<S: Records>(
    store: &S,
    run: &[Accepted],
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
            None => match store.load(first.call.lead_id()).await {
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
        if let Some(other) = needs_merge(&first.call) {
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
        // evaluate the longest prefix without merges that fits in one commit
        let (mut state, first_arrival, mut hits, merged, partial) = match &lead.record {
            Some(r) => (
                r.state.clone(),
                if r.first_arrival == 0 {
                    arrival
                } else {
                    r.first_arrival
                },
                r.hits.clone(),
                r.merged.clone(),
                r.partial,
            ),
            None => (LeadState::new(program), arrival, None, Vec::new(), false),
        };
        let messages_of = |state: &mut LeadState, transitions: &[Transition], cause| {
            crate::pipeline::commit::messages(
                program,
                (&lead.known, first_arrival),
                state,
                transitions,
                cause,
            )
            .map_err(|e| StoreError::Failed(e.to_string()))
        };
        // a rescore's notifications come before the calls' own (SPEC §7), and its
        // transitions are listed with the first call applied
        let mut messages: Vec<Note> =
            messages_of(&mut state, &lead.rescored, Some(Cause::RulesChanged))?;
        let mut rescored = lead.rescored.clone();
        let mut results: Vec<Processed> = Vec::new();
        let mut calls: Vec<(&Accepted, u64)> = Vec::new();
        let mut seen: HashSet<&str> = HashSet::new();
        for (k, accepted) in run.iter().enumerate() {
            if k > 0 && needs_merge(&accepted.call).is_some() {
                break;
            }
            let id = accepted.call.message_id.as_str();
            if dups.contains(id) || !seen.insert(id) {
                results.push(processed(
                    program,
                    &lead.known,
                    Some(&state),
                    true,
                    Vec::new(),
                    Vec::new(),
                ));
                continue;
            }
            let mut probe = state.clone();
            let mut transitions = Vec::new();
            let step_hits = step(program, &mut probe, &accepted.call, &mut transitions, true);
            let new = messages_of(&mut probe, &transitions, None)?;
            // the record, what is written so far, 2 for this call and its messages
            if !calls.is_empty()
                && 1 + 2 * calls.len() + messages.len() + 2 + new.len() > S::MAX_WRITES
            {
                break;
            }
            state = probe;
            calls.push((accepted, arrival + k as u64));
            messages.extend(new);
            hits = step_hits;
            results.push(processed(
                program,
                &lead.known,
                Some(&state),
                false,
                transitions,
                std::mem::take(&mut rescored),
            ));
        }
        let consumed = results.len();
        if calls.is_empty() {
            out.extend(results);
            return Ok((consumed, Some(lead)));
        }
        let record = Record {
            state,
            merged,
            first_arrival,
            hits,
            partial,
        };
        let commit = lead.commit(record, calls, messages);
        match store.commit(&commit).await {
            Ok(()) => {
                out.extend(results);
                let committed = Loaded {
                    version: Some(commit.version()),
                    known: commit.known,
                    record: Some(commit.record),
                    rescored: Vec::new(),
                };
                return Ok((consumed, Some(committed)));
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
async fn merge_one<S: Records>(
    store: &S,
    accepted: &Accepted,
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
    let fatal = |e: serde_json::Error| StepError::Fatal(StoreError::Failed(e.to_string()));
    // a rescore's transitions are announced first, and what it announced stays announced
    let mut previous = lead.record.as_ref().map(|r| r.state.clone());
    let mut messages = match previous.as_mut() {
        Some(p) => crate::pipeline::commit::messages(
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
    let hits = step(program, &mut state, &accepted.call, &mut transitions, true);
    messages.extend(
        crate::pipeline::commit::messages(
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
        ..lead.commit(record, vec![(accepted, arrival)], messages)
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
pub async fn apply_calls<S: Records>(
    store: &S,
    calls: &[Accepted],
    base: u64,
    out: &mut Vec<Processed>,
) -> Result<(), StoreError> {
    let start = out.len();
    let mut i = 0;
    let mut carry = None;
    while i < calls.len() {
        let id = calls[i].call.lead_id();
        let end = calls[i..]
            .iter()
            .position(|a| a.call.lead_id() != id)
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
