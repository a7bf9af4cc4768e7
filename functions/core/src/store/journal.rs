//! The journaled memory store of `leadscore serve`: the engine, and a journal: an append-only file (JSON Lines) of the accepted calls,
//! one call per line, each as received with `messageId` and (when it had no time)
//! `receivedAt` filled in: the file is a valid events file for `leadscore replay`. At start the
//! journal is replayed through the rules; each `POST /events` appends its new calls and
//! `fsync`s before it is answered, so an answered call survives a crash. A failed write is cut
//! off again and answered `503` (nothing half-written). A torn last line (a crash mid-write) is
//! dropped at start. `DELETE /leads/{id}` rewrites the journal without the lead's calls
//! (written to a temporary file, synced, renamed over the journal), so an erased lead is gone
//! from disk too.
//!
//! Rule changes are kept beside the journal (SPEC §7): each rule set `serve` has run is kept
//! in `rules/VERSION.rules` in the journal's folder, and `JOURNAL.rules.jsonl` lists, in
//! order, each version and the number of journal calls taken before it came into force. At
//! start the journal is replayed with each rule set in force for the calls it took, and
//! every lead is rescored at each change ([`Engine::change_rules`]), so `serve` holds what the
//! functions would. Rules whose version differs from the last recorded are a change: recorded,
//! then every lead is rescored. A cosmetic edit (the same version) is no change.
//!
//! What the calls announce goes to the [`Outbox`] beside the journal.

use crate::api::{Accepted, LeadStore, Processed, StoreError, StoredLead};
use crate::ingest::call::TimePolicy;
use crate::ingest::segment::normalize_call;
use crate::store::engine::{Engine, Kept};
use crate::store::memory::{self, EngineDoor};
use crate::store::outbox::Outbox;
use leadscore_rules::Program;
use serde_json::Value;
use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The embedded engine with its journal.
pub struct Journaled<'p> {
    engine: Engine<'p>,
    path: PathBuf,
    file: File,
    len: u64,
    /// Calls in the journal.
    calls: usize,
    /// The rule changes: calls taken before each version came into force.
    history: RuleHistory,
    /// The notifications the calls announced.
    outbox: Outbox,
}

/// One line of the rule history: a version, and how many journal calls came before it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct RuleChange {
    version: String,
    ruleset: String,
    after: usize,
}

/// The rules `serve` has run (SPEC §7), kept beside its journal.
#[derive(Debug)]
pub struct RuleHistory {
    /// `JOURNAL.rules.jsonl`.
    path: PathBuf,
    /// The folder of `VERSION.rules` files.
    dir: PathBuf,
    changes: Vec<RuleChange>,
}

impl RuleHistory {
    /// The number of rule changes recorded.
    pub fn len(&self) -> usize {
        self.changes.len()
    }

    /// Whether no rule set has been recorded yet.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    fn beside(journal: &Path) -> Self {
        let mut name = journal.as_os_str().to_owned();
        name.push(".rules.jsonl");
        let dir = journal
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("rules"), |d| d.join("rules"));
        RuleHistory {
            path: PathBuf::from(name),
            dir,
            changes: Vec::new(),
        }
    }

    /// Reads the history and the rule sets it names.
    pub fn read(journal: &Path) -> Result<(Self, Vec<Program>), String> {
        let mut history = RuleHistory::beside(journal);
        let text = match std::fs::read_to_string(&history.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(format!("cannot read `{}`: {e}", history.path.display())),
        };
        let mut programs = Vec::new();
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let change: RuleChange = serde_json::from_str(line)
                .map_err(|e| format!("`{}` line {}: {e}", history.path.display(), n + 1))?;
            let file = history.dir.join(format!("{}.rules", change.version));
            let (program, _, _) = crate::rules::load(std::slice::from_ref(&file)).map_err(|e| {
                format!("rules of `{}` line {}: {e}", history.path.display(), n + 1)
            })?;
            if program.version != change.version {
                return Err(format!(
                    "`{}` has version {}, not the {} its name says",
                    file.display(),
                    program.version,
                    change.version
                ));
            }
            programs.push(program);
            history.changes.push(change);
        }
        Ok((history, programs))
    }

    /// Records that `program` (its source `files`) comes into force after `after` calls:
    /// its text is kept, then the line appended and synced.
    fn record(
        &mut self,
        program: &Program,
        files: &[leadscore_rules::SourceFile],
        after: usize,
    ) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let mut text = String::new();
        for f in files {
            text.push_str(&f.text);
            if !f.text.ends_with('\n') {
                text.push('\n');
            }
        }
        let file = self.dir.join(format!("{}.rules", program.version));
        std::fs::write(&file, text)?;
        File::open(&file)?.sync_all()?;
        let change = RuleChange {
            version: program.version.clone(),
            ruleset: program.name.clone(),
            after,
        };
        let mut log = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.path)?;
        let mut line = serde_json::to_vec(&change).map_err(std::io::Error::other)?;
        line.push(b'\n');
        log.write_all(&line)?;
        log.sync_all()?;
        self.changes.push(change);
        Ok(())
    }

    /// Writes the history again with `after` counts mapped by `kept_before` (the calls kept of
    /// the first N, after an erase): a temporary file, synced, renamed over it.
    fn rewrite(&mut self, kept_before: impl Fn(usize) -> usize) -> std::io::Result<()> {
        if self.changes.is_empty() {
            return Ok(());
        }
        let mut text = Vec::new();
        for change in &mut self.changes {
            change.after = kept_before(change.after);
            serde_json::to_writer(&mut text, change).map_err(std::io::Error::other)?;
            text.push(b'\n');
        }
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let mut out = File::create(&tmp)?;
        out.write_all(&text)?;
        out.sync_all()?;
        std::fs::rename(&tmp, &self.path)
    }
}

fn io_error(path: &Path, err: &std::io::Error) -> StoreError {
    StoreError::Unavailable(format!("journal `{}`: {err}", path.display()))
}

impl<'p> Journaled<'p> {
    /// The rule changes recorded beside the journal.
    pub fn history(&self) -> &RuleHistory {
        &self.history
    }

    /// The outbox beside the journal.
    pub fn outbox(&self) -> &Path {
        self.outbox.path()
    }

    /// Opens (or creates) the journal and replays it, each call under the rule set that was
    /// in force when it was taken (`programs`, as `history` lists them, then `current`);
    /// when `current` is a new version it is recorded and every lead rescored under it.
    /// Returns the store and the number of calls replayed.
    pub fn open(
        programs: &'p [Program],
        history: RuleHistory,
        current: (&'p Program, &[leadscore_rules::SourceFile]),
        path: &Path,
    ) -> Result<(Self, usize), String> {
        let mut history = history;
        let (program, current_files) = current;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| format!("cannot open `{}`: {e}", path.display()))?;
        let mut text = Vec::new();
        file.read_to_end(&mut text)
            .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
        let mut engine = Engine::new(programs.first().unwrap_or(program));
        engine.keep_latest_hits(true);
        let mut good = 0usize; // bytes of valid lines
        let mut replayed = 0usize;
        // the rule changes still to come, in order
        let mut next_change = 0usize;
        let mut in_force = |engine: &mut Engine<'p>, calls: usize| {
            while let Some(change) = history.changes.get(next_change) {
                if change.after > calls {
                    break;
                }
                if let Some(p) = programs.get(next_change) {
                    engine.change_rules(p);
                }
                next_change += 1;
            }
        };
        for (number, bytes) in text.split_inclusive(|b| *b == b'\n').enumerate() {
            let complete = bytes.ends_with(b"\n");
            let line = std::str::from_utf8(bytes)
                .map_err(|e| format!("invalid UTF-8 at column {}", e.valid_up_to() + 1));
            if line.as_ref().is_ok_and(|l| l.trim().is_empty()) {
                if complete {
                    good += bytes.len();
                }
                continue;
            }
            let call = line
                .and_then(|line| {
                    serde_json::from_str::<Value>(line).map_err(|e| format!("invalid JSON: {e}"))
                })
                .and_then(|v| {
                    normalize_call(&v, "", &TimePolicy::Required).map_err(|e| e.to_string())
                });
            match call {
                Ok(call) => {
                    in_force(&mut engine, replayed);
                    engine.process(Arc::new(call));
                    replayed += 1;
                    good += bytes.len();
                }
                // a torn last line: the write of a request that was never answered
                Err(_) if !complete => {
                    eprintln!(
                        "warning: dropping the incomplete last line {} of the journal `{}`",
                        number + 1,
                        path.display()
                    );
                }
                Err(message) => {
                    let line = number + 1;
                    return Err(format!(
                        "journal `{0}` line {line}: {message}\n  help: every line of the journal is a call `serve` answered; \
                         fix line {line} by hand, or delete it (`sed -i '{line}d' {0}`), and start `serve` again",
                        path.display(),
                    ));
                }
            }
        }
        let mut repair = |file: &mut File| -> std::io::Result<u64> {
            file.set_len(good as u64)?;
            // a valid last line without its newline (edited by hand) gets one
            if good > 0 && !text[..good].ends_with(b"\n") {
                file.write_all(b"\n")?;
                good += 1;
            }
            file.sync_all()?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                File::open(dir)?.sync_all()?;
            }
            Ok(good as u64)
        };
        let len =
            repair(&mut file).map_err(|e| format!("cannot repair `{}`: {e}", path.display()))?;
        in_force(&mut engine, usize::MAX);
        // the rules given now: a change when their version is not the last in force
        if history.changes.last().map(|c| c.version.as_str()) != Some(program.version.as_str()) {
            history
                .record(program, current_files, replayed)
                .map_err(|e| {
                    format!(
                        "cannot record the rules in `{}`: {e}",
                        history.path.display()
                    )
                })?;
        }
        engine.change_rules(program);
        let mut outbox = Outbox::beside(path);
        outbox
            .rewrite(&engine)
            .map_err(|e| format!("cannot write `{}`: {e}", outbox.path().display()))?;
        Ok((
            Journaled {
                engine,
                path: path.to_path_buf(),
                file,
                len,
                calls: replayed,
                history,
                outbox,
            },
            replayed,
        ))
    }

    /// Writes the journal again without the lines whose `messageId` is in `drop`: a
    /// temporary file, synced, renamed over the journal, the folder synced.
    fn rewrite_without(&mut self, drop: &HashSet<String>) -> Result<(), StoreError> {
        let err = |e: std::io::Error| io_error(&self.path, &e);
        let text = std::fs::read_to_string(&self.path).map_err(err)?;
        let mut kept = String::with_capacity(text.len());
        // kept_before[n]: how many of the first n calls are kept
        let mut kept_before = vec![0usize];
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let id = serde_json::from_str::<Value>(line).ok().and_then(|v| {
                v.get("messageId")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            });
            let keep = !id.is_some_and(|id| drop.contains(&id));
            if keep {
                kept.push_str(line);
                kept.push('\n');
            }
            let so_far = kept_before.last().copied().unwrap_or(0);
            kept_before.push(so_far + usize::from(keep));
        }
        let mut tmp_name = self.path.clone().into_os_string();
        tmp_name.push(".tmp");
        let tmp = PathBuf::from(tmp_name);
        let write = || -> std::io::Result<File> {
            let mut out = File::create(&tmp)?;
            out.write_all(kept.as_bytes())?;
            out.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                File::open(dir)?.sync_all()?;
            }
            OpenOptions::new().read(true).append(true).open(&self.path)
        };
        let file = write().map_err(err)?;
        self.file = file;
        self.len = kept.len() as u64;
        let total = kept_before.last().copied().unwrap_or(0);
        self.calls = total;
        self.history
            .rewrite(|after| kept_before.get(after).copied().unwrap_or(total))
            .map_err(|e| io_error(&self.history.path, &e))
    }
}

impl<'p> Journaled<'p> {
    /// Journals the calls new to the engine, synced before they are applied. (A call two
    /// requests carry at once can be journaled by both; replayed, the second is a
    /// duplicate, as it was when it was applied.)
    fn journal(&mut self, calls: &[Accepted]) -> Result<(), StoreError> {
        let mut fresh: HashSet<&str> = HashSet::new();
        let mut lines = Vec::new();
        for accepted in calls {
            let id = accepted.call.message_id.as_str();
            if !self.engine.is_seen(id) && fresh.insert(id) {
                serde_json::to_writer(&mut lines, &accepted.record)
                    .map_err(|e| StoreError::Failed(e.to_string()))?;
                lines.push(b'\n');
            }
        }
        if !lines.is_empty() {
            let written = self
                .file
                .write_all(&lines)
                .and_then(|()| self.file.sync_data());
            if let Err(e) = written {
                // cut the partial write off again; the request is answered 503
                let _ = self
                    .file
                    .set_len(self.len)
                    .and_then(|()| self.file.sync_data());
                return Err(io_error(&self.path, &e));
            }
            self.len += lines.len() as u64;
            self.calls += fresh.len();
        }
        Ok(())
    }

    /// Erases a lead: its calls leave the journal first (rewritten), then the engine.
    fn forget(&mut self, id: &str) -> Result<Option<String>, StoreError> {
        if self.engine.lead(id).is_none() {
            return Ok(None);
        }
        let ids: HashSet<String> = self
            .engine
            .history(id)
            .iter()
            .filter_map(|(_, kept)| match kept {
                Kept::Call(call) => Some(call.message_id.to_string()),
                Kept::Line { .. } => None,
            })
            .collect();
        self.rewrite_without(&ids)?;
        let known = memory::forget_in_engine(&mut self.engine, id);
        self.outbox.update(&self.engine, true);
        Ok(known)
    }
}

impl<'p> std::borrow::Borrow<Engine<'p>> for Journaled<'p> {
    fn borrow(&self) -> &Engine<'p> {
        &self.engine
    }
}

impl<'p> std::borrow::BorrowMut<Engine<'p>> for Journaled<'p> {
    fn borrow_mut(&mut self) -> &mut Engine<'p> {
        &mut self.engine
    }
}

/// The journaled engine as the API's store: one lock around journal and engine, taken for
/// one synchronous step at a time.
pub struct JournaledStore<'p>(Mutex<Journaled<'p>>);

impl<'p> JournaledStore<'p> {
    /// The journaled engine as a store.
    pub fn new(journaled: Journaled<'p>) -> Self {
        JournaledStore(Mutex::new(journaled))
    }

    fn locked(&self) -> MutexGuard<'_, Journaled<'p>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<'p> LeadStore for JournaledStore<'p> {
    type Rules<'a>
        = &'p Program
    where
        Self: 'a;

    fn program(&self) -> &'p Program {
        self.locked().engine.program()
    }

    /// Journals the request's new calls (synced), applies them through the pipeline
    /// ([`EngineDoor`]), and appends what they announced to the outbox.
    async fn apply(
        &self,
        calls: Vec<Accepted>,
    ) -> Result<(&'p Program, Vec<Processed>), StoreError> {
        let program = {
            let mut store = self.locked();
            store.journal(&calls)?;
            store.engine.program()
        };
        let done = EngineDoor::new(&self.0, program).apply(&calls).await?;
        let mut store = self.locked();
        let Journaled { engine, outbox, .. } = &mut *store;
        outbox.update(engine, false);
        Ok((program, done))
    }

    async fn lead(&self, id: &str) -> Result<Option<(&'p Program, StoredLead)>, StoreError> {
        let store = self.locked();
        Ok(memory::engine_lead(&store.engine, id).map(|lead| (store.engine.program(), lead)))
    }

    async fn forget(&self, id: &str) -> Result<Option<String>, StoreError> {
        self.locked().forget(id)
    }
}
