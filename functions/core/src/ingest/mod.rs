//! Calls in: Segment JSON (one call, a batch, a JSON-lines file) to normalised [`segment::Call`]s
//! (SPEC §1). [`segment`] is the exact path and owns every error message; `fast` and its
//! byte `scan`ner read the common well-formed calls faster and give up on anything else,
//! falling back to the exact path (tests hold the three to the same answers).

mod fast;
pub mod lines;
mod scan;
pub mod segment;

use segment::{normalize_body, Call, CallError, TimePolicy};

/// The fast path alone: the calls of one body or line when the fast path reads it, `None`
/// when it leaves the text to the exact path. For differential tests and fuzzing: whenever
/// it answers, it must answer what [`exact_path`] does.
pub fn fast_path(text: &str, time: &TimePolicy) -> Option<Vec<Result<Call, CallError>>> {
    fast::parse_line(text, time, None).map(smallvec::SmallVec::into_vec)
}

/// The exact path alone: the text as a JSON value, then [`normalize_body`].
pub fn exact_path(
    text: &str,
    time: &TimePolicy,
) -> Result<Vec<Result<Call, CallError>>, CallError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| CallError {
        path: String::new(),
        message: format!("invalid JSON: {e}"),
    })?;
    normalize_body(&value, time)
}
