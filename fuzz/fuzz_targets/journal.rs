//! Journal bytes (`serve`'s `journal.jsonl` after a crash, a disk error or a hand edit):
//! opening it never panics; it either loads (a torn last line dropped) or refuses with the
//! line's number, and a journal that loaded loads again the same.

#![no_main]

use leadscore_core::rules::load_or_builtin;
use leadscore_core::store::journal::{Journaled, RuleHistory};
use leadscore_rules::{Program, SourceFile};
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

fn rules() -> &'static (Program, Vec<SourceFile>) {
    static RULES: OnceLock<(Program, Vec<SourceFile>)> = OnceLock::new();
    RULES.get_or_init(|| {
        let (program, _, files) = load_or_builtin(None).expect("the built-in rules compile");
        (program, files)
    })
}

/// A folder of this process's own for the journal.
fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("leadscore-fuzz-journal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary folder");
        dir
    })
}

fn open(path: &PathBuf) -> Result<usize, String> {
    let (program, files) = rules();
    let (history, programs) = RuleHistory::read(path)?;
    let programs: &[Program] = &programs;
    Journaled::open(programs, history, (program, files), path).map(|(_, replayed)| replayed)
}

fuzz_target!(|data: &[u8]| {
    let dir = dir();
    let path = dir.join("journal.jsonl");
    let _ = std::fs::remove_dir_all(dir.join("rules"));
    let _ = std::fs::remove_file(dir.join("journal.jsonl.rules.jsonl"));
    std::fs::write(&path, data).expect("the journal is written");
    match open(&path) {
        Ok(replayed) => {
            // what loaded (and was repaired) loads again, to the same calls
            assert_eq!(open(&path), Ok(replayed), "a repaired journal loads differently");
        }
        Err(message) => {
            assert!(message.contains("line ") || message.contains("cannot"), "{message}");
        }
    }
});
