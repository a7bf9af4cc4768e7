//! The memory store: the embedded engine behind the [`LeadStore`] trait, so that `serve`
//! and the API tests run the same API as the functions, over one lock inside the store.

use crate::api::{Accepted, LeadStore, Processed, StoreError, StoredLead};
use crate::pipeline;
use crate::store::engine::{Engine, Outcome};
use leadscore_rules::Program;
use std::sync::{Arc, Mutex, MutexGuard};

/// The embedded engine as a [`LeadStore`]: every operation takes the engine's lock for the
/// time of one synchronous step (no lock is held across an `await`). Its rules are the
/// engine's ([`Engine::change_rules`] through [`MemoryStore::engine`] changes them).
pub struct MemoryStore<'p> {
    engine: Mutex<Engine<'p>>,
}

impl<'p> MemoryStore<'p> {
    /// A store over this engine (its rules are the store's).
    pub fn new(engine: Engine<'p>) -> Self {
        MemoryStore {
            engine: Mutex::new(engine),
        }
    }

    /// The engine, locked (a poisoned lock is taken over: every engine step leaves the
    /// engine consistent before it can panic).
    pub fn engine(&self) -> MutexGuard<'_, Engine<'p>> {
        self.engine
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The engine, given back.
    pub fn into_engine(self) -> Engine<'p> {
        self.engine
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Applies the accepted calls of one request to the engine, one result per call.
pub fn apply_to_engine(engine: &mut Engine<'_>, calls: Vec<Accepted>) -> Vec<Processed> {
    calls
        .into_iter()
        .map(|accepted| {
            let outcome = engine.process(Arc::new(accepted.call));
            processed(engine, outcome)
        })
        .collect()
}

/// A lead of the engine by id (merged ids followed): its known id and state. The engine
/// keeps every call, so its leads are never `partial`.
pub fn engine_lead(engine: &Engine<'_>, id: &str) -> Option<StoredLead> {
    let known = engine.resolve(id).to_owned();
    engine.lead(id).map(|r| StoredLead {
        id: known,
        state: r.state.clone(),
        partial: false,
        latest_hits: r.latest_hits.clone(),
    })
}

/// Erases a lead of the engine (merged ids followed); its known id when there was one.
pub fn forget_in_engine(engine: &mut Engine<'_>, id: &str) -> Option<String> {
    let known = engine.resolve(id).to_owned();
    engine.forget(id).map(|_| known)
}

/// The result for one call, from an engine lead after it was processed. The embedded
/// engine rescores every lead when its rules change ([`Engine::change_rules`]), never
/// before a call, so no result lists a rescore.
fn processed(engine: &Engine<'_>, outcome: Outcome) -> Processed {
    let (lead, duplicate, transitions) = match outcome {
        Outcome::Applied { lead, transitions } => (lead, false, transitions),
        Outcome::Duplicate { lead } => (lead, true, Vec::new()),
    };
    let state = engine.lead(&lead).map(|r| &r.state);
    pipeline::processed(
        engine.program(),
        &lead,
        state,
        duplicate,
        transitions,
        Vec::new(),
    )
}

impl<'p> LeadStore for MemoryStore<'p> {
    type Rules<'a>
        = &'p Program
    where
        Self: 'a;

    fn program(&self) -> &'p Program {
        self.engine().program()
    }

    async fn apply(
        &self,
        calls: Vec<Accepted>,
    ) -> Result<(&'p Program, Vec<Processed>), StoreError> {
        let mut engine = self.engine();
        let program = engine.program();
        Ok((program, apply_to_engine(&mut engine, calls)))
    }

    async fn lead(&self, id: &str) -> Result<Option<(&'p Program, StoredLead)>, StoreError> {
        let engine = self.engine();
        Ok(engine_lead(&engine, id).map(|lead| (engine.program(), lead)))
    }

    async fn forget(&self, id: &str) -> Result<Option<String>, StoreError> {
        Ok(forget_in_engine(&mut self.engine(), id))
    }
}
