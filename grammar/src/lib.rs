//! leadscore-rules: the leadscore rules language.
//!
//! Stages, each a module: `text → syntax` ([`syntax`], with the pest grammar `rules.pest`),
//! `syntax → program` ([`program`]: checks and compiles), and `program → evaluation`
//! ([`eval`]: the pure step function). Pure: no I/O, no async, no AWS, no wall clock.

pub mod diagnostic;
pub mod eval;
pub mod event;
pub mod explain;
pub mod format;
pub mod program;
pub mod stored;
pub mod syntax;
pub mod time;
pub mod wake;

pub use diagnostic::{Diagnostic, SourceFile};
pub use eval::{apply, tick, LeadState, Transition};
pub use event::{CallKind, Event, Properties};
pub use program::{compile, Compiled, Program};
pub use stored::StoredState;

/// Prints a duration in the units of the language (`7d`, `12h`, `90s`).
pub fn format_duration(micros: time::Micros) -> String {
    let secs = micros / time::SECOND;
    for (unit, n) in [("w", 604_800), ("d", 86_400), ("h", 3600), ("m", 60)] {
        if secs % n == 0 && secs >= n {
            return format!("{}{unit}", secs / n);
        }
    }
    format!("{secs}s")
}
