//! Calls in: Segment JSON (one call, a batch, a JSON-lines file) to normalised [`segment::Call`]s
//! (SPEC §1). [`segment`] is the exact path and owns every error message; `fast` and its
//! byte `scan`ner read the common well-formed calls faster and give up on anything else,
//! falling back to the exact path (tests hold the three to the same answers).

mod fast;
pub mod lines;
mod scan;
pub mod segment;
