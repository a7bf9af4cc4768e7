//! The memory store: the embedded engine behind the [`LeadStore`] trait, so that `serve`
//! and the API tests run the same API as the functions, over one lock inside the store,
//! and its calls go through the same apply loop as the functions' ([`EngineDoor`], the
//! pipeline's door on the engine).

use crate::api::{Accepted, LeadStore, Processed, StoreError, StoredLead};
use crate::ingest::call::Call;
use crate::pipeline::apply::{apply_calls, Absorbed, Loaded, Records, StepError};
use crate::pipeline::commit::{Commit, NamesOnly};
use crate::store::engine::{Engine, Keeps};
use leadscore_rules::Program;
use std::borrow::BorrowMut;
use std::marker::PhantomData;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// The pipeline's door ([`Records`]) on an engine behind a lock: the memory store's, and
/// `serve`'s journaled one. Each operation takes the lock for one synchronous step, so
/// requests interleave between steps as they do on DynamoDB, and a commit is guarded by the
/// lead's version ([`Engine::commit`]).
pub struct EngineDoor<'s, 'p, T> {
    lock: &'s Mutex<T>,
    program: &'p Program,
    engine: PhantomData<Engine<'p>>,
}

impl<'s, 'p, T: BorrowMut<Engine<'p>>> EngineDoor<'s, 'p, T> {
    /// The door on the engine in `lock`, running `program` (the engine's).
    pub fn new(lock: &'s Mutex<T>, program: &'p Program) -> Self {
        EngineDoor {
            lock,
            program,
            engine: PhantomData,
        }
    }

    fn locked(&self) -> MutexGuard<'s, T> {
        self.lock.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `step` on the engine, under the lock.
    fn with<R>(&self, step: impl FnOnce(&mut Engine<'p>) -> R) -> R {
        let mut guard = self.locked();
        step(T::borrow_mut(&mut guard))
    }

    /// Applies one request's calls through the pipeline ([`apply_calls`]), numbered from
    /// the engine's next arrival.
    pub async fn apply<P: Keeps>(&self, calls: &[P]) -> Result<Vec<Processed>, StoreError> {
        let base = self.with(|e| e.next_arrival());
        let mut out = Vec::with_capacity(calls.len());
        apply_calls(self, calls, base, &mut out).await?;
        Ok(out)
    }
}

impl<'p, T: BorrowMut<Engine<'p>>, P: Keeps> Records<P> for EngineDoor<'_, 'p, T> {
    /// No limit: a commit is one step in memory.
    const MAX_WRITES: usize = usize::MAX / 4;
    /// A conflict in memory means another request's commit landed: someone always gets
    /// through, so a run is tried until it does.
    const ATTEMPTS: u32 = u32::MAX;
    /// The engine keeps notifications by name.
    type Form = NamesOnly;

    fn program(&self) -> &Program {
        self.program
    }

    async fn load(&self, id: &str) -> Result<Loaded, StepError> {
        Ok(self.with(|e| e.pipeline_lead(id)))
    }

    async fn absorbed(&self, id: &str) -> Result<Option<Absorbed>, StepError> {
        Ok(self.with(|e| e.pipeline_absorbed(id)))
    }

    async fn kept_calls(&self, id: &str) -> Result<Vec<(u64, Call)>, StepError> {
        Ok(self.with(|e| e.pipeline_calls(id)))
    }

    async fn commit(&self, commit: &Commit<'_, P>) -> Result<(), StepError> {
        self.with(|e| e.commit(commit)).map_err(StepError::Refused)
    }

    /// A conflict in memory is another request's step that is over already: no wait.
    async fn pause(&self, _attempt: u32) {}
}

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
        let program = self.engine().program();
        let done = EngineDoor::new(&self.engine, program).apply(&calls).await?;
        Ok((program, done))
    }

    async fn lead(&self, id: &str) -> Result<Option<(&'p Program, StoredLead)>, StoreError> {
        let engine = self.engine();
        Ok(engine_lead(&engine, id).map(|lead| (engine.program(), lead)))
    }

    async fn forget(&self, id: &str) -> Result<Option<String>, StoreError> {
        Ok(forget_in_engine(&mut self.engine(), id))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::ingest::call::TimePolicy;
    use crate::ingest::segment::normalize_call;
    use crate::pipeline::commit::{Record, Refused};

    fn program() -> Program {
        let text = "ruleset \"t\"\nscore \"Demo\" +10 on \"Demo\"\nstage mql when engagement >= 10\nnotify crm when reached mql\n";
        crate::rules::compile_text("t.rules", text)
            .expect("rules")
            .0
    }

    fn accepted(user: &str, id: &str) -> Accepted {
        let v = serde_json::json!({"type": "track", "event": "Demo", "userId": user,
            "messageId": id, "timestamp": "2026-01-01T00:00:00Z"});
        Accepted {
            call: normalize_call(&v, "", &TimePolicy::Required).unwrap(),
            record: v,
        }
    }

    fn commit<'c>(lead: &Loaded, call: &'c Accepted) -> Commit<'c> {
        let record = Record {
            state: lead
                .record
                .as_ref()
                .map(|r| r.state.clone())
                .unwrap_or_else(|| leadscore_rules::eval::LeadState::new(&program())),
            merged: Vec::new(),
            first_arrival: 1,
            hits: None,
            partial: false,
        };
        lead.commit(record, vec![(call, 1)], Vec::new())
    }

    /// The engine's commit is guarded like DynamoDB's: a commit read before another one
    /// landed is refused as a conflict, and a call applied before as a duplicate, and
    /// neither changes anything.
    #[test]
    fn a_stale_or_repeated_commit_is_refused_and_changes_nothing() {
        let program = program();
        let lock = Mutex::new(Engine::new(&program));
        let door = EngineDoor::new(&lock, &program);
        let read = pollster::block_on(Records::<Accepted>::load(&door, "u1")).unwrap();
        assert_eq!(read.version, None);
        let (m1, m2) = (accepted("u1", "m1"), accepted("u1", "m2"));
        pollster::block_on(Records::commit(&door, &commit(&read, &m1))).unwrap();
        // a second writer read before the first committed
        match pollster::block_on(Records::commit(&door, &commit(&read, &m2))) {
            Err(StepError::Refused(r)) => assert_eq!(
                r,
                Refused {
                    conflict: true,
                    duplicates: Vec::new()
                }
            ),
            other => panic!("{other:?}"),
        }
        let now = pollster::block_on(Records::<Accepted>::load(&door, "u1")).unwrap();
        assert_eq!(now.version, Some(1));
        match pollster::block_on(Records::commit(&door, &commit(&now, &m1))) {
            Err(StepError::Refused(r)) => {
                assert_eq!((r.conflict, r.duplicates), (false, vec!["m1".to_owned()]));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(lock.lock().unwrap().next_arrival(), 2, "one call kept");
        // the loop around it: a repeated call is answered as a duplicate, a new one applied
        let done = pollster::block_on(door.apply(&[m1, m2])).unwrap();
        let duplicate: Vec<bool> = done.iter().map(|p| p.duplicate).collect();
        assert_eq!(duplicate, [true, false]);
        assert_eq!(
            pollster::block_on(Records::<Accepted>::load(&door, "u1"))
                .unwrap()
                .version,
            Some(2)
        );
    }

    /// A commit read before the lead was erased is refused when the lead was created again
    /// meanwhile, though the new lead's version is the one read: the erased calls never
    /// come back.
    #[test]
    fn a_commit_read_before_an_erasure_does_not_bring_the_lead_back() {
        let program = program();
        let lock = Mutex::new(Engine::new(&program));
        let door = EngineDoor::new(&lock, &program);
        pollster::block_on(door.apply(&[accepted("u1", "m1")])).unwrap();
        let read = pollster::block_on(Records::<Accepted>::load(&door, "u1")).unwrap();
        assert_eq!(read.version, Some(1));
        lock.lock().unwrap().forget("u1");
        pollster::block_on(door.apply(&[accepted("u1", "m2")])).unwrap();
        assert_eq!(
            pollster::block_on(Records::<Accepted>::load(&door, "u1"))
                .unwrap()
                .version,
            Some(1)
        );
        let m3 = accepted("u1", "m3");
        match pollster::block_on(Records::commit(&door, &commit(&read, &m3))) {
            Err(StepError::Refused(r)) => assert!(r.conflict, "{r:?}"),
            other => panic!("{other:?}"),
        }
        let engine = lock.lock().unwrap();
        assert_eq!(engine.lead("u1").unwrap().state.events, 1, "only m2");
    }

    /// A commit for an id that was merged into another lead after it was read is a
    /// conflict: it would leave a record no id reaches.
    #[test]
    fn a_commit_for_an_id_merged_meanwhile_is_a_conflict() {
        let program = program();
        let lock = Mutex::new(Engine::new(&program));
        let door = EngineDoor::new(&lock, &program);
        let read = pollster::block_on(Records::<Accepted>::load(&door, "a1")).unwrap();
        // another request merges a1 into u1
        let v = serde_json::json!({"type": "identify", "userId": "u1", "anonymousId": "a1",
            "messageId": "m2", "timestamp": "2026-01-01T00:00:00Z", "traits": {}});
        let merge = Accepted {
            call: normalize_call(&v, "", &TimePolicy::Required).unwrap(),
            record: v,
        };
        pollster::block_on(door.apply(&[merge])).unwrap();
        let m1 = accepted("a1", "m1");
        match pollster::block_on(Records::commit(&door, &commit(&read, &m1))) {
            Err(StepError::Refused(r)) => assert!(r.conflict, "{r:?}"),
            other => panic!("{other:?}"),
        }
        // through the loop the call reaches u1
        let done = pollster::block_on(door.apply(&[accepted("a1", "m1")])).unwrap();
        assert_eq!(done[0].lead, "u1");
        assert!(lock
            .lock()
            .unwrap()
            .lead("a1")
            .is_some_and(|r| r.id() == "u1"));
    }

    /// The engine's fast path (`replay`, `explain`, `compare`, `serve`'s restart) and the
    /// apply loop on the engine's door (`serve`, the API) write the same commits: the same
    /// leads at the same versions, the same kept calls and notifications, through merges,
    /// duplicates, late calls, a rule change and a tick.
    mod one_pipeline {
        use super::*;
        use proptest::prelude::*;
        use std::sync::Arc;

        const RULES: &str = include_str!("../../../../bench/bench20.rules");

        fn call(kind: u8, user: u8, anon: u8, day: u8, id: u16) -> Accepted {
            let (u, a) = (format!("u{user}"), format!("a{anon}"));
            let at = format!("2026-02-{:02}T10:00:00Z", 1 + day);
            let m = format!("m{id}");
            let v = match kind {
                0 => serde_json::json!({"type": "page", "anonymousId": a, "messageId": m,
                    "timestamp": at, "properties": {"path": "/pricing"}}),
                1 => serde_json::json!({"type": "track", "event": "Form Submitted", "userId": u,
                    "messageId": m, "timestamp": at, "properties": {"form": "demo"}}),
                2 => serde_json::json!({"type": "identify", "userId": u, "anonymousId": a,
                    "messageId": m, "timestamp": at,
                    "traits": {"title": "VP Sales", "plan": "trial", "email": "x@acme.example"}}),
                3 => serde_json::json!({"type": "alias", "userId": u, "previousId": a,
                    "messageId": m, "timestamp": at}),
                4 => serde_json::json!({"type": "track", "event": "Order Completed", "userId": u,
                    "messageId": m, "timestamp": at, "properties": {"revenue": 99}}),
                _ => serde_json::json!({"type": "track", "event": "Webinar Registered",
                    "anonymousId": a, "messageId": m, "timestamp": at}),
            };
            Accepted {
                call: normalize_call(&v, "", &TimePolicy::Required).unwrap(),
                record: v,
            }
        }

        type Seen = (
            Vec<(String, String, u64, u64)>,
            Vec<(String, String, String, Option<&'static str>)>,
            Vec<String>,
        );

        fn seen(engine: &Engine<'_>) -> Seen {
            let mut leads: Vec<(String, String, u64, u64)> = engine
                .leads()
                .map(|(id, r)| {
                    let history: Vec<u64> = engine.history(id).iter().map(|(s, _)| *s).collect();
                    (
                        id.to_owned(),
                        format!("{:?} {:?} {history:?}", r.state, r.latest_hits),
                        r.version(),
                        r.first_arrival,
                    )
                })
                .collect();
            leads.sort();
            let notes = engine
                .notifications()
                .iter()
                .map(|n| {
                    (
                        n.target.clone(),
                        n.lead.clone(),
                        format!("{:?} {}", n.transition, n.name),
                        n.cause.map(crate::pipeline::Cause::as_str),
                    )
                })
                .collect();
            let ids = (0..4)
                .flat_map(|n| [format!("u{n}"), format!("a{n}")])
                .map(|id| engine.resolve(&id).to_owned())
                .collect();
            (leads, notes, ids)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]
            #[test]
            fn the_fast_path_and_the_loop_write_the_same(
                calls in prop::collection::vec((0u8..6, 0u8..4, 0u8..4, 0u8..20, 0u16..40), 1..40)
            ) {
                let (program, _, _) = crate::rules::compile_text("bench20.rules", RULES).unwrap();
                let edited = RULES.replace("+10 on page", "+30 on page");
                let (changed, _, _) = crate::rules::compile_text("bench20.rules", &edited).unwrap();
                let calls: Vec<Accepted> = calls
                    .into_iter()
                    .map(|(k, u, a, d, m)| call(k, u, a, d, m))
                    .collect();
                let mut fast = Engine::new(&program);
                fast.keep_latest_hits(true);
                let mut applied = Vec::new();
                for c in &calls {
                    applied.push(matches!(
                        fast.process(Arc::new(c.call.clone())),
                        crate::store::engine::Outcome::Applied { .. }
                    ));
                }
                let mut slow = Engine::new(&program);
                slow.keep_latest_hits(true);
                let lock = Mutex::new(slow);
                let door = EngineDoor::new(&lock, &program);
                let mut answered = Vec::new();
                for c in &calls {
                    let done = pollster::block_on(door.apply(std::slice::from_ref(c))).unwrap();
                    answered.push(!done[0].duplicate);
                }
                let mut slow = lock.into_inner().unwrap();
                prop_assert_eq!(&applied, &answered);
                prop_assert_eq!(seen(&fast), seen(&slow));
                for engine in [&mut fast, &mut slow] {
                    engine.change_rules(&changed);
                    engine.tick_all(leadscore_rules::time::parse_rfc3339("2026-04-01T00:00:00Z").unwrap());
                }
                prop_assert_eq!(seen(&fast), seen(&slow));
            }
        }
    }
}
