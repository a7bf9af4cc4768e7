//! The embedded pipeline: normalised calls in, lead state and notifications out.
//!
//! It keeps every lead in memory with its accepted calls (for identity merges), recognises
//! duplicate `messageId`s, and follows merged anonymous ids to their known lead (SPEC §3, §5).
//! `replay`, `explain`, `compare` and `serve` run on it.
//!
//! Every change to a lead goes through the pipeline and is written by one commit
//! ([`Engine::commit`], guarded like DynamoDB's by the lead's version and first arrival): a
//! call is drafted by the apply loop's own evaluation ([`crate::pipeline::apply::draft`]),
//! a merge runs the loop itself on the engine's door, and a rescore or a tick builds its
//! commit with [`crate::pipeline::apply::refresh`], as the functions' `rescore` and `decay`
//! do. What the engine keeps to itself is how it holds leads: a call is drafted in place on
//! the lead's record (no copy of its state), and the history keeps line references for
//! `replay` instead of the calls.

use crate::api::Accepted;
use crate::ingest::call::Call;
use crate::pipeline::apply::{apply_run, draft, refresh, Absorbed, Loaded, Wants};
use crate::pipeline::commit::{Commit, NamesOnly, Note, Pending, Record, Refused};
use crate::pipeline::merge_partner;
pub use crate::pipeline::{
    merged_state, rescored_state, transition_name, Cause, LatestHits, RescoreReport, Rescored,
};
use crate::store::keytable::{safe_arch_prefetch, KeyTable};
use crate::store::memory::EngineDoor;
use ahash::AHashMap;
use leadscore_rules::eval::{LeadState, Transition};
use leadscore_rules::time::Micros;
use leadscore_rules::{Program, StoredState};
use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

/// A notification produced by a transition (SPEC §3 step 6).
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// The target's name (a `notify` line).
    pub target: String,
    /// The lead.
    pub lead: String,
    /// What happened (its index is the stage's or conversion's under the rules in force
    /// then; `name` says which it is whatever the rules are now).
    pub transition: Transition,
    /// The stage or conversion's name.
    pub name: compact_str::CompactString,
    /// Why, when it is not the lead's own call: a rule change.
    pub cause: Option<Cause>,
    /// Production order, for stable sorting.
    pub seq: u64,
}

/// A call kept in a lead's history: the call itself, or where to read it again.
#[derive(Debug, Clone)]
pub enum Kept {
    /// The call, in memory.
    Call(Arc<Call>),
    /// Call `index` of line `line` of the input, read again through the engine's loader.
    Line {
        /// Line number.
        line: u32,
        /// Index of the call in the line (0 for a lone call, its place in a batch).
        index: u32,
    },
}

/// Reads a kept call again: `(line, index) → call`.
pub type Loader<'a> = Box<dyn Fn(u32, u32) -> Option<Call> + 'a>;

/// A call as the engine is given it: what it keeps of it in the lead's history, and the key
/// of its `messageId`.
pub trait Keeps: Pending {
    /// How the history keeps it.
    fn kept(&self) -> Kept;

    /// Its `messageId`'s key under `keys`.
    fn message_key(&self, keys: &MessageKeys) -> MessageKey {
        keys.key(&self.call().message_id)
    }
}

impl Keeps for Accepted {
    fn kept(&self) -> Kept {
        Kept::Call(Arc::new(self.call.clone()))
    }
}

impl Pending for Arc<Call> {
    fn call(&self) -> &Call {
        self
    }
}

impl Keeps for Arc<Call> {
    fn kept(&self) -> Kept {
        Kept::Call(Arc::clone(self))
    }
}

/// Call `index` of input line `line`, kept as that reference ([`Engine::with_loader`]), with
/// its `messageId`'s key computed already.
#[derive(Debug, Clone, Copy)]
struct Line<'a> {
    call: &'a Call,
    line: u32,
    index: u32,
    message: MessageKey,
}

impl Pending for Line<'_> {
    fn call(&self) -> &Call {
        self.call
    }
}

impl Keeps for Line<'_> {
    fn kept(&self) -> Kept {
        Kept::Line {
            line: self.line,
            index: self.index,
        }
    }

    fn message_key(&self, _: &MessageKeys) -> MessageKey {
        self.message
    }
}

/// One lead as the embedded store keeps it. Its accepted calls are in the engine's
/// history ([`Engine::history`]).
#[derive(Debug, Clone)]
pub struct LeadRecord {
    /// The lead's key in the engine's table.
    key: LeadKey,
    /// The bounded state.
    pub state: LeadState,
    /// Arrival order of the lead's first call (decides the source on merge).
    pub first_arrival: u64,
    /// What the lead's latest call did (rule hits, refusals, decay), when the engine keeps
    /// it ([`Engine::keep_latest_hits`]).
    pub latest_hits: Option<LatestHits>,
    /// The lead's id.
    id: Box<str>,
    /// Where the lead's latest call is in the engine's history: its arrival order (0: none).
    last: u64,
    /// Raised by every commit through the pipeline's door ([`Engine::commit`]), which is
    /// guarded by it.
    version: u64,
}

impl LeadRecord {
    /// The lead's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The record's version: raised by every commit, which is guarded by it.
    pub fn version(&self) -> u64 {
        self.version
    }
}

/// One accepted call in the engine's history: the call, and the arrival order of the
/// previous call of the same lead (0: none). A lead's calls form a chain from its latest.
#[derive(Debug, Clone)]
struct Entry {
    kept: Option<Kept>,
    prev: u64,
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

/// A call about to be processed, with its keys ([`Engine::ahead`]).
#[derive(Debug, Clone, Copy)]
pub struct Ahead<'c> {
    /// The call.
    pub call: &'c Call,
    /// Its `messageId`'s key.
    pub message: MessageKey,
    lead: LeadKey,
}

/// A `messageId` as the engine remembers it: a 128-bit hash, keyed per engine
/// ([`MessageKeys`]). Remembering a million ids costs 16 bytes each and no allocation, and
/// two different ids collide with a probability of about 2⁻¹²⁸ per pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageKey(u128);

/// A lead id as the engine's table knows it: a 128-bit hash like [`MessageKey`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct LeadKey(u128);

/// Turns `messageId`s into the [`MessageKey`]s of one engine (its seed is random per
/// engine, so colliding ids cannot be prepared in advance). `Copy` and `Send`: `replay`
/// computes the keys on the threads that parse the calls.
#[derive(Debug, Clone, Copy)]
pub struct MessageKeys {
    seed: u64,
}

impl MessageKeys {
    fn random() -> Self {
        use std::hash::{BuildHasher, RandomState};
        MessageKeys {
            seed: RandomState::new().hash_one(0x6c65_6164_u64),
        }
    }

    /// The key of a `messageId`.
    #[inline]
    pub fn key(&self, message_id: &str) -> MessageKey {
        MessageKey(xxhash_rust::xxh3::xxh3_128_with_seed(
            message_id.as_bytes(),
            self.seed,
        ))
    }

    /// The key of a lead id (a different seed: a lead id and a `messageId` that are equal
    /// get unrelated keys).
    #[inline]
    fn lead(&self, id: &str) -> LeadKey {
        LeadKey(xxhash_rust::xxh3::xxh3_128_with_seed(
            id.as_bytes(),
            self.seed ^ 0x9e37_79b9_7f4a_7c15,
        ))
    }
}

/// Asks for the first few entries of a list of properties (each is most of a cache line).
#[inline]
fn prefetch_places<T>(places: &[T]) {
    places.iter().take(4).for_each(safe_arch_prefetch);
}

/// The embedded engine: a rule program and the leads it has seen.
///
/// Leads live in one vector in order of creation and are found through a table from lead
/// key to index, so finding a lead reads the table and then the record, nothing else.
/// Accepted calls are appended to one history in arrival order, each linked to the previous
/// call of its lead, so keeping a call costs one append.
pub struct Engine<'p> {
    program: &'p Program,
    records: Vec<LeadRecord>,
    /// Lead key → index in `records`.
    table: KeyTable<usize>,
    aliases: AHashMap<String, String>,
    keys: MessageKeys,
    seen: KeyTable<()>,
    /// Calls skipped because their `messageId` was applied before.
    duplicates: u64,
    notifications: Vec<Notification>,
    /// Accepted calls; the call of arrival order `n` is at `n - 1`.
    history: Vec<Entry>,
    loader: Option<Loader<'p>>,
    keep_hits: bool,
}

impl<'p> Engine<'p> {
    /// An empty engine for a program.
    pub fn new(program: &'p Program) -> Self {
        Engine {
            program,
            records: Vec::new(),
            table: KeyTable::new(),
            aliases: AHashMap::new(),
            keys: MessageKeys::random(),
            seen: KeyTable::new(),
            duplicates: 0,
            notifications: Vec::new(),
            history: Vec::new(),
            loader: None,
            keep_hits: false,
        }
    }

    /// Keeps, per lead, what its latest call did (for `GET /leads/{id}`). Off by default:
    /// replay does not pay for it.
    pub fn keep_latest_hits(&mut self, keep: bool) {
        self.keep_hits = keep;
    }

    /// Makes room for about this many calls and leads (avoids rehashing a large replay).
    pub fn reserve(&mut self, calls: usize, leads: usize) {
        self.seen.reserve(calls);
        self.history.reserve(calls);
        self.records.reserve(leads);
        self.table.reserve(leads);
    }

    /// An engine whose history holds line references, read again with `loader` when two
    /// leads merge. `replay` uses it so a large file's calls are not all kept in memory.
    pub fn with_loader(program: &'p Program, loader: Loader<'p>) -> Self {
        let mut engine = Engine::new(program);
        engine.loader = Some(loader);
        engine
    }

    /// The program.
    pub fn program(&self) -> &'p Program {
        self.program
    }

    /// The leads, by id (unsorted).
    pub fn leads(&self) -> impl Iterator<Item = (&str, &LeadRecord)> {
        self.records.iter().map(|r| (r.id(), r))
    }

    /// One lead, following merged ids.
    pub fn lead(&self, id: &str) -> Option<&LeadRecord> {
        self.index(self.resolve(id)).map(|i| &self.records[i])
    }

    /// The accepted calls of a lead (merged ids followed), each with its arrival order,
    /// in arrival order. Kept for merges and `explain`.
    pub fn history(&self, id: &str) -> Vec<(u64, Kept)> {
        let Some(record) = self.lead(id) else {
            return Vec::new();
        };
        let mut calls = Vec::new();
        let mut at = record.last;
        while let Some(entry) = self.entry(at) {
            if let Some(kept) = &entry.kept {
                calls.push((at, kept.clone()));
            }
            at = entry.prev;
        }
        calls.sort_unstable_by_key(|(seq, _)| *seq);
        calls
    }

    fn entry(&self, seq: u64) -> Option<&Entry> {
        let i = usize::try_from(seq.checked_sub(1)?).ok()?;
        self.history.get(i)
    }

    /// Where a lead (an id already resolved) is in `records`.
    fn index(&self, id: &str) -> Option<usize> {
        self.table.get(self.keys.lead(id).0)
    }

    /// Takes a lead out (an id already resolved): the last record takes its place.
    fn remove(&mut self, id: &str) -> Option<LeadRecord> {
        let i = self.table.remove(self.keys.lead(id).0)?;
        let record = self.records.swap_remove(i);
        if let Some(moved) = self.records.get(i) {
            self.table.set(moved.key.0, i);
        }
        Some(record)
    }

    /// Adds a lead that is not in the table; returns its index.
    fn insert(&mut self, record: LeadRecord) -> usize {
        let i = self.records.len();
        let new = self.table.insert(record.key.0, i);
        debug_assert!(new, "a lead inserted twice");
        self.records.push(record);
        i
    }

    /// The arrival order the next accepted call gets.
    pub fn next_arrival(&self) -> u64 {
        self.history.len() as u64 + 1
    }

    /// Notifications in production order.
    pub fn notifications(&self) -> &[Notification] {
        &self.notifications
    }

    /// The known lead an id stands for (itself unless it was merged).
    pub fn resolve<'a>(&'a self, id: &'a str) -> &'a str {
        self.aliases.get(id).map_or(id, String::as_str)
    }

    /// Processes one accepted call, keeping it in memory in the lead's history.
    pub fn process(&mut self, call: Arc<Call>) -> Outcome {
        let mut transitions = Vec::new();
        let applied = self.process_kept(&call, Some(&mut transitions));
        let lead = self.resolve(call.lead_id()).to_string();
        if applied {
            Outcome::Applied { lead, transitions }
        } else {
            Outcome::Duplicate { lead }
        }
    }

    /// Processes call `index` of input line `line`; the history keeps only the reference
    /// (see [`Engine::with_loader`]). Returns false for a duplicate.
    pub fn process_line(&mut self, call: &Call, line: u32, index: u32) -> bool {
        let message = self.keys.key(&call.message_id);
        self.process_line_keyed(call, message, line, index)
    }

    /// [`Engine::process_line`] with the call's `messageId` already turned into its key by
    /// this engine's [`Engine::message_keys`].
    pub fn process_line_keyed(
        &mut self,
        call: &Call,
        message: MessageKey,
        line: u32,
        index: u32,
    ) -> bool {
        let line = Line {
            call,
            line,
            index,
            message,
        };
        self.process_kept(&line, None)
    }

    /// A call that will be processed soon, with the key of the lead it reaches as of now,
    /// for the prefetch stages below.
    pub fn ahead<'c>(&self, call: &'c Call, message: MessageKey) -> Ahead<'c> {
        Ahead {
            call,
            message,
            lead: self.keys.lead(self.resolve(call.lead_id())),
        }
    }

    /// Prefetch, first stage: asks the processor for the places of these calls in the
    /// duplicate set and of their leads in the table. Prefetches are hints: they change
    /// nothing, and a stale one (a lead merged since) only costs a wasted fetch.
    ///
    /// `replay` runs the three stages a few dozen calls apart, so each stage's memory has
    /// arrived when the next stage (or the call itself) reads it, instead of every call
    /// waiting on its own chain of cache misses.
    pub fn prefetch_tables(&self, calls: &[Ahead<'_>]) {
        for a in calls {
            self.seen.prefetch(a.message.0);
            self.table.prefetch(a.lead.0);
            // the call's properties, which its rules look up (a handful: the first lines)
            prefetch_places(a.call.event.properties.places());
        }
    }

    /// Prefetch, second stage: finds the leads in the table (fetched by the first stage)
    /// and asks for their records.
    pub fn prefetch_records(&self, calls: &[Ahead<'_>]) {
        for r in calls.iter().filter_map(|a| self.known(a)) {
            let s = &r.state;
            safe_arch_prefetch(&r.key);
            safe_arch_prefetch(&r.last);
            safe_arch_prefetch(&s.clock);
            safe_arch_prefetch(&s.profile);
            safe_arch_prefetch(&s.reached);
            safe_arch_prefetch(&s.conversions);
            safe_arch_prefetch(&s.limits);
            safe_arch_prefetch(&s.aggregates);
        }
    }

    /// Prefetch, third stage: asks for what the records (fetched by the second stage) point
    /// to: the profile's entries, and the stages, conversions and windows that outgrew the
    /// room a record has for them (for the rest, this asks again for the record's own lines).
    pub fn prefetch_state(&self, calls: &[Ahead<'_>]) {
        fn first<T>(items: &[T]) {
            if let Some(x) = items.first() {
                safe_arch_prefetch(x);
            }
        }
        for r in calls.iter().filter_map(|a| self.known(a)) {
            let s = &r.state;
            first(&s.reached);
            first(&s.conversions);
            s.limits.iter().for_each(|w| first(w));
            s.aggregates.iter().for_each(|w| first(w));
            // the profile's entries, whose keys a lookup compares (held in the entry unless
            // long), without reading them here
            prefetch_places(s.profile.places());
        }
    }

    /// The record of a call's lead as the table has it now (no alias followed again).
    fn known(&self, a: &Ahead<'_>) -> Option<&LeadRecord> {
        self.table.get(a.lead.0).and_then(|i| self.records.get(i))
    }

    /// How this engine turns `messageId`s into keys.
    pub fn message_keys(&self) -> MessageKeys {
        self.keys
    }

    /// Applies one call through the pipeline ([`draft`], the loop's own evaluation, on the
    /// lead's record in place) and ends the commit as [`Engine::commit`] does
    /// ([`Engine::settle`]: the call kept, the version raised, the notes notified); a call
    /// that merges another lead goes through the loop itself ([`Engine::through_door`]).
    /// Returns false for a duplicate; pushes the call's transitions onto `transitions`.
    ///
    /// The engine is held for the whole step, so the lead stays at the version read and the
    /// commit's version guard holds: what could refuse it is a duplicate, answered before
    /// the record is touched.
    fn process_kept<P: Keeps>(
        &mut self,
        pending: &P,
        transitions: Option<&mut Vec<Transition>>,
    ) -> bool {
        let program = self.program;
        let call = pending.call();
        let known: std::borrow::Cow<'_, str> = match self.aliases.get(call.lead_id()) {
            Some(known) => std::borrow::Cow::Owned(known.clone()),
            None => std::borrow::Cow::Borrowed(call.lead_id()),
        };
        // identity merge: alias(previousId -> userId), or a call carrying both ids
        if merge_partner(call)
            .is_some_and(|other| other != known && !self.aliases.contains_key(other))
        {
            return self.through_door(pending, transitions);
        }
        if self.seen.contains(pending.message_key(&self.keys).0) {
            self.duplicates += 1;
            return false;
        }
        let arrival = self.next_arrival();
        let i = match self.index(&known) {
            Some(i) => i,
            None => self.insert(LeadRecord {
                key: self.keys.lead(&known),
                state: LeadState::new(program),
                first_arrival: arrival,
                latest_hits: None,
                id: known.as_ref().into(),
                last: 0,
                version: 0,
            }),
        };
        let record = &mut self.records[i];
        let Ok(draft) = draft::<P, NamesOnly>(
            program,
            (&known, record.first_arrival, &[]),
            (&mut record.state, &mut record.latest_hits),
            std::slice::from_ref(pending),
            arrival,
            &HashSet::new(),
            |_| false,
            usize::MAX,
            Wants {
                trace: self.keep_hits,
                results: false,
            },
        );
        if let Some(out) = transitions {
            out.extend(draft.transitions);
        }
        self.settle(i, &draft.calls, draft.messages);
        true
    }

    /// Applies a call that merges another lead through the pipeline's loop
    /// ([`apply_run`]) on the engine's door ([`EngineDoor`]), as `serve` applies every call:
    /// the merge is the loop's one merge (the two leads' kept calls re-evaluated, SPEC §5).
    fn through_door<P: Keeps>(
        &mut self,
        pending: &P,
        transitions: Option<&mut Vec<Transition>>,
    ) -> bool {
        let program = self.program;
        let arrival = self.next_arrival();
        let lock = Mutex::new(&mut *self);
        let mut out = Vec::new();
        let done = pollster::block_on(apply_run(
            &EngineDoor::new(&lock, program),
            std::slice::from_ref(pending),
            arrival,
            &mut out,
            None,
        ));
        let engine = lock.into_inner().unwrap_or_else(PoisonError::into_inner);
        match (done, out.pop()) {
            (Ok(_), Some(applied)) if !applied.duplicate => {
                if let Some(t) = transitions {
                    t.extend(applied.transitions);
                }
                true
            }
            // a duplicate (the engine's door fails in no other way)
            _ => {
                engine.duplicates += 1;
                false
            }
        }
    }

    /// The arrival orders of a chain of calls, from `last` back to the lead's first.
    fn chain(&self, last: u64) -> Vec<u64> {
        let mut seqs = Vec::new();
        let mut at = last;
        while let Some(entry) = self.entry(at) {
            seqs.push(at);
            at = entry.prev;
        }
        seqs
    }

    fn fetch(&self, kept: &Kept) -> Option<Arc<Call>> {
        match kept {
            Kept::Call(call) => Some(Arc::clone(call)),
            Kept::Line { line, index } => self
                .loader
                .as_ref()
                .and_then(|load| load(*line, *index))
                .map(Arc::new),
        }
    }

    /// The kept calls of the chain ending at `last`, each with its arrival order.
    fn chain_calls(&self, last: u64) -> Vec<(u64, Arc<Call>)> {
        self.chain(last)
            .into_iter()
            .filter_map(|seq| {
                let kept = self.entry(seq)?.kept.as_ref()?;
                self.fetch(kept).map(|c| (seq, c))
            })
            .collect()
    }

    /// The commit of record `i` brought up to date without a call ([`refresh`]): its state
    /// becomes `state` with what `rescored` found announced first (SPEC §7), then ticked at
    /// `tick` (SPEC §6). Returns the notifications it adds.
    fn refresh_record(
        &mut self,
        i: usize,
        state: LeadState,
        rescored: &[Transition],
        tick: Option<Micros>,
    ) -> u64 {
        let program = self.program;
        let r = &mut self.records[i];
        let known = r.id.to_string();
        let Ok((state, notes)) =
            refresh::<NamesOnly>(program, (&known, r.first_arrival), state, rescored, tick);
        let told = notes.len() as u64;
        let commit: Commit<'_, Accepted> = Commit {
            known,
            expected: Some(r.version),
            incarnation: r.first_arrival,
            record: Record {
                state,
                merged: Vec::new(),
                first_arrival: r.first_arrival,
                hits: r.latest_hits.take(),
                partial: false,
            },
            calls: Vec::new(),
            messages: notes,
            absorbed: None,
        };
        self.write(commit);
        told
    }

    /// Leads in id order (rescores and ticks go through them in that order, as the
    /// functions' `rescore` and `decay` report them).
    fn in_id_order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.records.len()).collect();
        order.sort_by(|&a, &b| self.records[a].id.cmp(&self.records[b].id));
        order
    }

    /// Runs the engine under other rules from now on (SPEC §7). When their version differs,
    /// every lead is rescored ([`rescored_state`]) from its kept calls, in id order, and what
    /// that reaches for the first time is announced with [`Cause::RulesChanged`]. The same
    /// version (a cosmetic edit) rescores nothing. Returns what the rescore did.
    pub fn change_rules(&mut self, program: &'p Program) -> RescoreReport {
        let old = std::mem::replace(&mut self.program, program);
        let mut report = RescoreReport {
            leads: self.records.len() as u64,
            ..RescoreReport::default()
        };
        if old.version == program.version {
            return report;
        }
        for i in self.in_id_order() {
            let record = &self.records[i];
            let loaded = StoredState::from_state(old, &record.state).into_state(program);
            let mut calls = self.chain_calls(record.last);
            let rescored = rescored_state(program, &mut calls, &loaded);
            report.partial += u64::from(rescored.partial);
            if rescored.state != loaded {
                report.changed += 1;
            }
            report.notifications +=
                self.refresh_record(i, rescored.state, &rescored.transitions, None);
        }
        report
    }

    /// Ticks every lead at time `at` (decay, then stages; SPEC §6 `decay`).
    pub fn tick_all(&mut self, at: Micros) {
        for i in self.in_id_order() {
            let state = std::mem::take(&mut self.records[i].state);
            self.refresh_record(i, state, &[], Some(at));
        }
    }
}

impl Engine<'_> {
    /// How many calls were skipped because their `messageId` was applied before (SPEC §3:
    /// not errors, but counted).
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Whether a call with this `messageId` was applied (a new call with it would be a
    /// duplicate).
    pub fn is_seen(&self, message_id: &str) -> bool {
        self.seen.contains(self.keys.key(message_id).0)
    }

    /// Erases a lead (merged ids followed): its state, its history, the ids merged into it,
    /// the idempotency records of its calls and its notifications (SPEC §6, the right to be
    /// forgotten). Returns the erased record, or `None` when there is no such lead.
    pub fn forget(&mut self, id: &str) -> Option<LeadRecord> {
        let known = self.resolve(id).to_owned();
        let record = self.remove(&known)?;
        // the calls are erased from the history too; their places stay, empty
        for seq in self.chain(record.last) {
            let Some(kept) = usize::try_from(seq - 1)
                .ok()
                .and_then(|i| self.history.get_mut(i))
                .and_then(|entry| entry.kept.take())
            else {
                continue;
            };
            if let Some(call) = self.fetch(&kept) {
                self.seen.remove(self.keys.key(&call.message_id).0);
            }
        }
        self.aliases
            .retain(|from, into| *into != known && *from != known);
        self.notifications.retain(|n| n.lead != known);
        Some(record)
    }
}

/// The pipeline's door ([`crate::pipeline::apply::Records`]) on the engine: what
/// [`crate::store::memory::EngineDoor`] calls under the store's lock. A lead's kept calls
/// are its chain in the history, merged leads' included, so a record lists no merged ids.
impl Engine<'_> {
    fn pipeline_record(record: &LeadRecord) -> Record {
        Record {
            state: record.state.clone(),
            merged: Vec::new(),
            first_arrival: record.first_arrival,
            hits: record.latest_hits.clone(),
            partial: false,
        }
    }

    /// The lead `id` stands for (merged ids followed), with its version. The engine
    /// rescores every lead when its rules change, so nothing is left to rescore.
    pub fn pipeline_lead(&self, id: &str) -> Loaded {
        let known = self.resolve(id).to_owned();
        let record = self.index(&known).map(|i| &self.records[i]);
        Loaded {
            version: record.map(|r| r.version),
            record: record.map(Self::pipeline_record),
            known,
            rescored: Vec::new(),
        }
    }

    /// The record of `id` itself, or the lead it was merged into.
    pub fn pipeline_absorbed(&self, id: &str) -> Option<Absorbed> {
        if let Some(into) = self.aliases.get(id) {
            return Some(Absorbed {
                version: 0,
                merged_into: Some(into.clone()),
                record: None,
            });
        }
        self.index(id).map(|i| Absorbed {
            version: self.records[i].version,
            merged_into: None,
            record: Some(Self::pipeline_record(&self.records[i])),
        })
    }

    /// The kept calls of the record of `id` itself (its chain), with their arrival orders.
    pub fn pipeline_calls(&self, id: &str) -> Vec<(u64, Call)> {
        let Some(i) = self.index(id) else {
            return Vec::new();
        };
        self.chain(self.records[i].last)
            .into_iter()
            .filter_map(|seq| {
                let kept = self.entry(seq)?.kept.as_ref()?;
                self.fetch(kept).map(|c| (seq, Call::clone(&c)))
            })
            .collect()
    }

    /// Writes a commit of the pipeline, or nothing: refused when the lead (or a merge's
    /// other lead) is no longer at the version read, or a call's `messageId` was applied
    /// before. A merge folds the other lead's chain into the known lead's and points its id
    /// there; each call is kept at the next arrival order; each message becomes a
    /// notification.
    pub fn commit<P: Keeps>(&mut self, commit: &Commit<'_, P>) -> Result<(), Refused> {
        let refused = self.refusal(commit);
        if refused != Refused::default() {
            return Err(refused);
        }
        self.write(commit.clone());
        Ok(())
    }

    /// Why the engine refuses `commit` (nothing: it can be written).
    fn refusal<P: Keeps>(&self, commit: &Commit<'_, P>) -> Refused {
        let known = commit.known.as_str();
        // the known id merged into another lead meanwhile counts as a conflict too (on
        // DynamoDB its pointer fails the guard)
        let read = self.index(known).map(|i| &self.records[i]);
        let mut refused = Refused {
            conflict: self.aliases.contains_key(known)
                || read.map(|r| r.version) != commit.expected
                // erased and created again: another lead, whatever its version
                || read.is_some_and(|r| r.first_arrival != commit.incarnation),
            duplicates: Vec::new(),
        };
        if let Some((other, was)) = &commit.absorbed {
            let now = match self.aliases.contains_key(other.as_str()) {
                true => Some(u64::MAX),
                false => self.index(other).map(|i| self.records[i].version),
            };
            refused.conflict |= now != *was;
        }
        for (pending, _) in &commit.calls {
            if self.seen.contains(pending.message_key(&self.keys).0) {
                refused
                    .duplicates
                    .push(pending.call().message_id.to_string());
            }
        }
        refused
    }

    /// Writes a commit its guards let through ([`Engine::refusal`]).
    fn write<P: Keeps>(&mut self, commit: Commit<'_, P>) {
        let known = commit.known.as_str();
        let mut absorbed = None;
        if let Some((other, _)) = &commit.absorbed {
            self.aliases.insert(other.clone(), known.to_owned());
            // any lead that had been merged into `other` now follows `known`
            for target in self.aliases.values_mut() {
                if target == other {
                    *target = known.to_owned();
                }
            }
            absorbed = self.remove(other);
        }
        let next = self.history.len() as u64 + 1;
        let i = match self.index(known) {
            Some(i) => i,
            None => self.insert(LeadRecord {
                key: self.keys.lead(known),
                state: LeadState::default(),
                first_arrival: next,
                latest_hits: None,
                id: known.into(),
                last: 0,
                version: 0,
            }),
        };
        if let Some(absorbed) = absorbed {
            // the known lead's oldest call now follows the absorbed lead's latest
            let oldest = self.chain(self.records[i].last).last().copied();
            let link = oldest
                .and_then(|seq| usize::try_from(seq - 1).ok())
                .and_then(|at| self.history.get_mut(at));
            match link {
                Some(entry) => entry.prev = absorbed.last,
                None => self.records[i].last = absorbed.last,
            }
            let record = &mut self.records[i];
            record.first_arrival = record.first_arrival.min(absorbed.first_arrival);
        }
        let record = &mut self.records[i];
        record.state = commit.record.state;
        if self.keep_hits {
            record.latest_hits = commit.record.hits;
        }
        self.settle(i, &commit.calls, commit.messages);
    }

    /// The rest of a commit of record `i`, whose state is written: its calls kept in the
    /// history (their `messageId`s seen), its version raised, its notes notified.
    fn settle<P: Keeps>(&mut self, i: usize, calls: &[(&P, u64)], notes: Vec<Note>) {
        for (pending, _) in calls {
            let seq = self.history.len() as u64 + 1;
            self.seen.insert(pending.message_key(&self.keys).0, ());
            self.history.push(Entry {
                kept: Some(pending.kept()),
                prev: self.records[i].last,
            });
            self.records[i].last = seq;
        }
        let record = &mut self.records[i];
        record.version += 1;
        for note in notes {
            let seq = self.notifications.len() as u64;
            self.notifications.push(Notification {
                target: note.target,
                lead: record.id.to_string(),
                transition: note.transition,
                name: note.name,
                cause: note.cause,
                seq,
            });
        }
    }
}
