//! Calls in: Segment JSON (one call, a batch, a JSON-lines file) to normalised
//! [`call::Call`]s (SPEC §1). The data flows one way:
//!
//! - [`call`]: the normalised call and its error, what every reader produces;
//! - [`segment`]: the exact path, from a JSON value; it owns every error message;
//! - `raw`: a call's envelope with its strings borrowed, as the two fast readers give it;
//! - `scan`: a validating byte scanner that reads the common compact calls into `raw`;
//! - `fast`: `raw` (from the scanner, else from typed deserialisation) to a call, giving
//!   up on anything unusual;
//! - this module: [`parse_line_reading`] and its kin try the fast path and fall back to
//!   the exact one (tests hold the paths to the same answers); [`lines`] reads JSON Lines.

pub mod call;
mod fast;
pub mod lines;
mod raw;
mod scan;
pub mod segment;

use call::{Call, CallError, LineCalls, TimePolicy};
use segment::{normalize_body, normalize_body_owned};

/// Parse a body from text (invalid JSON gives a [`CallError`] with path `""` and serde's
/// message, including line and column), then [`normalize_body`] it.
pub fn parse_body(
    text: &str,
    time: &TimePolicy,
) -> Result<Vec<Result<Call, CallError>>, CallError> {
    parse_body_reading(text, time, None)
}

/// [`parse_body`], keeping in properties and traits only the keys a program can read
/// ([`Program::reads`](leadscore_rules::Program::reads)) when it can do so while parsing:
/// the calls evaluate exactly as the whole ones, and cost less to build, keep and drop.
/// A call may still carry other keys.
pub fn parse_body_reading(
    text: &str,
    time: &TimePolicy,
    reads: Option<&leadscore_rules::program::Reads>,
) -> Result<Vec<Result<Call, CallError>>, CallError> {
    parse_line_reading(text, time, reads).map(smallvec::SmallVec::into_vec)
}

/// [`parse_body_reading`] for input where most bodies are one call (`replay`'s lines): the
/// same calls and errors, and a lone call needs no allocation of its own to be held in.
pub fn parse_line_reading(
    text: &str,
    time: &TimePolicy,
    reads: Option<&leadscore_rules::program::Reads>,
) -> Result<LineCalls, CallError> {
    if let Some(calls) = fast::parse_line(text, time, reads) {
        return Ok(calls);
    }
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|err| CallError::new(String::new(), format!("invalid JSON: {err}")))?;
    normalize_body_owned(value, time).map(LineCalls::from_vec)
}

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
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| CallError::new(String::new(), format!("invalid JSON: {e}")))?;
    normalize_body(&value, time)
}
