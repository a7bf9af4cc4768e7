//! The embedded pipeline: normalised calls in, lead state and notifications out.
//!
//! It keeps every lead in memory with its accepted calls (for identity merges), recognises
//! duplicate `messageId`s, and follows merged anonymous ids to their known lead (SPEC §3, §5).
//! `replay`, `explain` and the local tools run on it; the Lambda functions use the same step
//! function over DynamoDB.

use crate::ingest::segment::Call;
use crate::pipeline::apply::{Absorbed, Loaded};
use crate::pipeline::commit::{Commit, Record, Refused};
use crate::pipeline::{announcements, merge_partner, step};
pub use crate::pipeline::{
    merged_state, rescored_state, transition_name, Cause, LatestHits, RescoreReport, Rescored,
};
use crate::store::keytable::{safe_arch_prefetch, KeyTable};
use ahash::AHashMap;
use leadscore_rules::eval::{self, LeadState, Transition};
use leadscore_rules::time::Micros;
use leadscore_rules::{Program, StoredState};
use std::sync::Arc;

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
        let kept = Kept::Call(Arc::clone(&call));
        let mut transitions = Vec::new();
        let message = self.keys.key(&call.message_id);
        let applied = self.process_kept(&call, message, kept, &mut transitions);
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
        self.process_kept(call, message, Kept::Line { line, index }, &mut Vec::new())
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

    fn process_kept(
        &mut self,
        call: &Call,
        message: MessageKey,
        kept: Kept,
        transitions: &mut Vec<Transition>,
    ) -> bool {
        if !self.seen.insert(message.0, ()) {
            self.duplicates += 1;
            return false;
        }
        let key: std::borrow::Cow<'_, str> = match self.aliases.get(call.lead_id()) {
            Some(known) => std::borrow::Cow::Owned(known.clone()),
            None => std::borrow::Cow::Borrowed(call.lead_id()),
        };
        let seq = self.history.len() as u64 + 1;

        // Identity merge: alias(previousId -> userId), or a call carrying both ids.
        if let Some(other) = merge_partner(call) {
            if other != key && !self.aliases.contains_key(other) {
                self.merge(other, &key, transitions);
            }
        }

        let program = self.program;
        let lead = self.keys.lead(&key);
        let i = match self.table.get(lead.0) {
            Some(i) => i,
            None => self.insert(LeadRecord {
                key: lead,
                state: LeadState::new(program),
                first_arrival: seq,
                latest_hits: None,
                id: key.as_ref().into(),
                last: 0,
                version: 0,
            }),
        };
        let record = &mut self.records[i];
        let hits = step(
            program,
            &mut record.state,
            call,
            transitions,
            self.keep_hits,
        );
        if hits.is_some() {
            record.latest_hits = hits;
        }
        self.history.push(Entry {
            kept: Some(kept),
            prev: record.last,
        });
        record.last = seq;
        record.version += 1;
        if !transitions.is_empty() {
            self.announce(i, transitions, None);
        }
        true
    }

    /// Folds lead `from` into lead `into` by re-evaluating their combined history in time
    /// order; records the alias so later calls with `from` reach `into`.
    fn merge(&mut self, from: &str, into: &str, transitions: &mut Vec<Transition>) {
        self.aliases.insert(from.to_string(), into.to_string());
        let Some(absorbed) = self.remove(from) else {
            return;
        };
        // any lead that had been merged into `from` now follows `into`
        for target in self.aliases.values_mut() {
            if target == from {
                *target = into.to_string();
            }
        }
        let program = self.program;
        let previous = self.remove(into);
        let mut first_arrival = absorbed.first_arrival;
        // the combined history: the known lead's chain continues into the absorbed one's
        let mut seqs = self.chain(absorbed.last);
        let mut last = absorbed.last;
        if let Some(prev) = &previous {
            first_arrival = first_arrival.min(prev.first_arrival);
            let known = self.chain(prev.last);
            if let (Some(&oldest), Some(&newest)) = (known.last(), known.first()) {
                if let Some(entry) = usize::try_from(oldest - 1)
                    .ok()
                    .and_then(|i| self.history.get_mut(i))
                {
                    entry.prev = absorbed.last;
                }
                last = newest;
            }
            seqs.extend(known);
        }
        let mut calls: Vec<(u64, Arc<Call>)> = seqs
            .iter()
            .filter_map(|&seq| {
                let kept = self.entry(seq)?.kept.as_ref()?;
                self.fetch(kept).map(|c| (seq, c))
            })
            .collect();
        let (state, new) = merged_state(program, &mut calls, previous.as_ref().map(|p| &p.state));
        transitions.extend(new);
        self.insert(LeadRecord {
            key: self.keys.lead(into),
            state,
            first_arrival,
            latest_hits: None,
            id: into.into(),
            last,
            version: previous.as_ref().map_or(0, |p| p.version + 1),
        });
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

    /// Announces the transitions of record `i` not announced before (SPEC §3 step 6, §7).
    fn announce(&mut self, i: usize, transitions: &[Transition], cause: Option<Cause>) {
        let program = self.program;
        let Some(record) = self.records.get_mut(i) else {
            return;
        };
        for a in announcements(program, &mut record.state, transitions) {
            let seq = self.notifications.len() as u64;
            self.notifications.push(Notification {
                target: a.target.to_owned(),
                lead: record.id.to_string(),
                transition: a.transition,
                name: a.name,
                cause,
                seq,
            });
        }
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
        let mut order: Vec<usize> = (0..self.records.len()).collect();
        order.sort_by(|&a, &b| self.records[a].id.cmp(&self.records[b].id));
        for i in order {
            let record = &self.records[i];
            let loaded = StoredState::from_state(old, &record.state).into_state(program);
            let mut calls: Vec<(u64, Arc<Call>)> = self
                .chain(record.last)
                .into_iter()
                .filter_map(|seq| {
                    let kept = self.entry(seq)?.kept.as_ref()?;
                    self.fetch(kept).map(|c| (seq, c))
                })
                .collect();
            let rescored = rescored_state(program, &mut calls, &loaded);
            report.partial += u64::from(rescored.partial);
            if rescored.state != loaded {
                report.changed += 1;
            }
            let record = &mut self.records[i];
            record.state = rescored.state;
            let before = self.notifications.len();
            self.announce(i, &rescored.transitions, Some(Cause::RulesChanged));
            report.notifications += (self.notifications.len() - before) as u64;
        }
        report
    }

    /// Ticks every lead at time `at` (decay, then stages; SPEC §6 `decay`).
    pub fn tick_all(&mut self, at: Micros) {
        let program = self.program;
        let mut order: Vec<usize> = (0..self.records.len()).collect();
        order.sort_by(|&a, &b| self.records[a].id.cmp(&self.records[b].id));
        for i in order {
            let mut transitions = Vec::new();
            let record = &mut self.records[i];
            eval::tick(program, &mut record.state, at, &mut transitions);
            if !transitions.is_empty() {
                self.announce(i, &transitions, None);
            }
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
    pub fn commit(&mut self, commit: &Commit<'_>) -> Result<(), Refused> {
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
        for (accepted, _) in &commit.calls {
            if self
                .seen
                .contains(self.keys.key(&accepted.call.message_id).0)
            {
                refused
                    .duplicates
                    .push(accepted.call.message_id.to_string());
            }
        }
        if refused != Refused::default() {
            return Err(refused);
        }
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
                state: commit.record.state.clone(),
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
        for (accepted, _) in &commit.calls {
            let seq = self.history.len() as u64 + 1;
            self.seen
                .insert(self.keys.key(&accepted.call.message_id).0, ());
            self.history.push(Entry {
                kept: Some(Kept::Call(Arc::new(accepted.call.clone()))),
                prev: self.records[i].last,
            });
            self.records[i].last = seq;
        }
        let record = &mut self.records[i];
        record.state = commit.record.state.clone();
        if self.keep_hits {
            record.latest_hits = commit.record.hits.clone();
        }
        record.version = commit.version();
        for note in &commit.messages {
            let seq = self.notifications.len() as u64;
            self.notifications.push(Notification {
                target: note.message.target.clone(),
                lead: known.to_owned(),
                transition: note.transition,
                name: note.message.name().into(),
                cause: note.cause,
                seq,
            });
        }
        Ok(())
    }
}
