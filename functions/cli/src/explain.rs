//! `leadscore explain`: which rule gave which points when, and why each stage was or was not
//! reached, for one lead of an events file (logic in `leadscore_tools::explain`).

use leadscore_core::ingest::call::TimePolicy;
use leadscore_core::ingest::parse_body;
use leadscore_core::rules::load;
use leadscore_core::store::engine::Engine;
use leadscore_tools::explain::{explain_lead, render_text, to_json, ExplainError};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// `explain` output.
#[derive(Clone, Copy, Debug, clap::ValueEnum, PartialEq, Eq)]
pub enum ExplainFormat {
    /// For people: one block per event, then each stage and its condition.
    Text,
    /// One JSON document.
    Json,
}

/// Runs `explain`; returns the exit status.
pub fn run(rules: &Path, events: &Path, lead: &str, format: ExplainFormat) -> u8 {
    let (program, compiled, files) = match load(&[rules.to_path_buf()]) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    for w in &compiled.diagnostics {
        eprint!("{}", leadscore_rules::diagnostic::render(w, &files));
    }
    let text = match std::fs::read(events) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot read `{}`: {e}", events.display());
            return 2;
        }
    };
    let name = events.display().to_string();
    let mut engine = Engine::new(&program);
    let mut lines: HashMap<String, usize> = HashMap::new();
    for (line, raw) in leadscore_core::ingest::lines::text_lines(&text) {
        match raw.and_then(|raw| parse_body(raw, &TimePolicy::Required)) {
            Err(e) => eprintln!("{name}:{line}: {e}"),
            Ok(calls) => {
                for call in calls {
                    match call {
                        Ok(call) => {
                            lines.entry(call.message_id.to_string()).or_insert(line);
                            engine.process(Arc::new(call));
                        }
                        Err(e) => eprintln!("{name}:{line}: {e}"),
                    }
                }
            }
        }
    }
    let explanation = match explain_lead(&engine, lead, &lines) {
        Ok(x) => x,
        Err(ExplainError::UnknownLead {
            id,
            did_you_mean,
            some,
        }) => {
            eprintln!("error: no lead `{id}` in `{name}`");
            match did_you_mean {
                Some(d) => eprintln!("  = help: did you mean `{d}`?"),
                None if some.is_empty() => eprintln!("  = help: the file has no leads"),
                None => {
                    let list: Vec<String> = some.iter().map(|s| format!("`{s}`")).collect();
                    eprintln!("  = help: leads in the file include {}", list.join(", "));
                }
            }
            return 2;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    match format {
        ExplainFormat::Text => print!("{}", render_text(&explanation)),
        ExplainFormat::Json => match serde_json::to_string_pretty(&to_json(&explanation)) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("error: cannot write the output: {e}");
                return 2;
            }
        },
    }
    0
}
