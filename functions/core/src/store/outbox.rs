//! `serve`'s outbox: the notifications it would send (SPEC §6), kept beside its journal as
//! JSON Lines (`JOURNAL.outbox.jsonl`), one notification a line as `replay --format json`
//! prints them, in commit order. It plays the part of the DynamoDB table's outbox items, so
//! a marketer can watch what a rule edit announces (`tail -f`) and the corpus runner can
//! compare `serve`'s notifications with the functions'.
//!
//! The outbox is derived from the journal: it is written whole when `serve` starts (the
//! journal replayed, rule changes and their rescores included), appended after each request
//! whose calls announced something, and written whole again after an erasure (the erased
//! lead's notifications leave it, as its outbox items leave the table). A write that fails
//! is reported and repaired at the next start; it never fails a request, whose calls are
//! journaled already.

use crate::output::NotificationJson;
use crate::store::engine::Engine;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The outbox file and how many of the engine's notifications it holds.
#[derive(Debug)]
pub struct Outbox {
    path: PathBuf,
    written: usize,
}

impl Outbox {
    /// The outbox beside `journal`: `JOURNAL.outbox.jsonl`.
    pub fn beside(journal: &Path) -> Self {
        let mut name = journal.as_os_str().to_owned();
        name.push(".outbox.jsonl");
        Outbox {
            path: PathBuf::from(name),
            written: 0,
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The engine's notifications from `from` on, as JSON Lines.
    fn lines(engine: &Engine<'_>, from: usize) -> std::io::Result<Vec<u8>> {
        let mut text = Vec::new();
        for notification in engine.notifications().get(from..).unwrap_or_default() {
            let json = NotificationJson {
                program: engine.program(),
                notification,
            };
            serde_json::to_writer(&mut text, &json).map_err(std::io::Error::other)?;
            text.push(b'\n');
        }
        Ok(text)
    }

    /// Writes every notification of the engine: a temporary file renamed over the outbox.
    pub fn rewrite(&mut self, engine: &Engine<'_>) -> std::io::Result<()> {
        let text = Self::lines(engine, 0)?;
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        File::create(&tmp)?.write_all(&text)?;
        std::fs::rename(&tmp, &self.path)?;
        self.written = engine.notifications().len();
        Ok(())
    }

    /// Appends the notifications the engine made since the last write.
    pub fn append(&mut self, engine: &Engine<'_>) -> std::io::Result<()> {
        let total = engine.notifications().len();
        if total == self.written {
            return Ok(());
        }
        let text = Self::lines(engine, self.written)?;
        OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.path)?
            .write_all(&text)?;
        self.written = total;
        Ok(())
    }

    /// Brings the outbox up to date after a step: appended when `erased` is false, else
    /// written whole. A failure is reported on standard error, not to the request: the
    /// next start writes the outbox again from the journal.
    pub fn update(&mut self, engine: &Engine<'_>, erased: bool) {
        let done = if erased || engine.notifications().len() < self.written {
            self.rewrite(engine)
        } else {
            self.append(engine)
        };
        if let Err(e) = done {
            // the file may be short or stale now: the next update writes it whole
            self.written = usize::MAX;
            eprintln!(
                "warning: cannot write the outbox `{}` ({e}); it is written again when `serve` starts",
                self.path.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::ingest::call::TimePolicy;
    use crate::ingest::segment::normalize_call;
    use std::sync::Arc;

    fn program() -> leadscore_rules::Program {
        let text = "ruleset \"t\"\nscore \"Demo\" +10 on \"Demo\"\nstage mql when engagement >= 10\nnotify crm when reached mql\n";
        crate::rules::compile_text("t.rules", text)
            .expect("rules")
            .0
    }

    fn demo(engine: &mut Engine<'_>, user: &str, id: &str) {
        let v = serde_json::json!({"type": "track", "event": "Demo", "userId": user,
            "messageId": id, "timestamp": "2026-01-01T00:00:00Z"});
        let call = normalize_call(&v, "", &TimePolicy::Required).unwrap();
        engine.process(Arc::new(call));
    }

    #[test]
    fn appends_what_is_new_and_rewrites_after_an_erasure() {
        let program = program();
        let mut engine = Engine::new(&program);
        let dir = tempfile::tempdir().unwrap();
        let mut outbox = Outbox::beside(&dir.path().join("journal.jsonl"));
        assert!(outbox.path().ends_with("journal.jsonl.outbox.jsonl"));
        outbox.rewrite(&engine).unwrap();
        let read = |o: &Outbox| std::fs::read_to_string(o.path()).unwrap();
        assert_eq!(read(&outbox), "");
        demo(&mut engine, "a", "m1");
        outbox.update(&engine, false);
        demo(&mut engine, "b", "m2");
        outbox.update(&engine, false);
        // a duplicate announces nothing: nothing appended
        demo(&mut engine, "b", "m2");
        outbox.update(&engine, false);
        let text = read(&outbox);
        let leads: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["lead"].to_string())
            .collect();
        assert_eq!(leads, ["\"a\"", "\"b\""], "{text}");
        assert!(text.starts_with(
            r#"{"target":"crm","kind":"stage_reached","lead":"a","stage":"mql","at":"2026-01-01T00:00:00Z"}"#
        ));
        engine.forget("a");
        outbox.update(&engine, true);
        let text = read(&outbox);
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains(r#""lead":"b""#), "{text}");
    }
}
