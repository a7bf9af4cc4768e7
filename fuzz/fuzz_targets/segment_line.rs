//! One Segment line: whenever the fast path reads it, the exact path accepts it and gives the
//! same calls and errors, offline and online; `parse_line_reading` (what replay runs) accepts
//! and rejects what the exact path does. Never a panic.

#![no_main]

use leadscore_core::ingest::call::TimePolicy;
use leadscore_core::ingest::parse_line_reading;
use leadscore_core::ingest::{exact_path, fast_path};
use libfuzzer_sys::fuzz_target;

/// 2026-01-01T09:00:00Z, in microseconds.
const RECEIVED: i64 = 1_767_258_000_000_000;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for policy in [TimePolicy::Required, TimePolicy::ReceivedAt(RECEIVED)] {
        let exact = exact_path(text, &policy);
        if let Some(fast) = fast_path(text, &policy) {
            let exact = exact.as_ref().expect("the exact path accepts what the fast path reads");
            assert_eq!(&fast, exact, "the fast path and the exact path disagree");
        }
        let line = parse_line_reading(text, &policy, None);
        assert_eq!(line.is_ok(), exact.is_ok(), "replay's reader and the exact path disagree");
        if let (Ok(line), Ok(exact)) = (&line, &exact) {
            assert_eq!(&line.to_vec(), exact, "replay's reader and the exact path disagree");
        }
    }
});
