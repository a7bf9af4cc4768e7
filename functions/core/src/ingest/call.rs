//! The normalised call (SPEC §1): what every reader of Segment input produces and the
//! pipeline takes, with the error that names the field, and the calls of one body or line.

use compact_str::CompactString;
use leadscore_rules::event::Event;
use leadscore_rules::time::{Micros, SECOND};
use serde::{Deserialize, Serialize};

/// How far ahead of the time of receipt a call's time may be (5 minutes).
pub const MAX_FUTURE: Micros = 300 * SECOND;

/// One second, for tests elsewhere in the crate.
#[cfg(test)]
pub(crate) const SECOND_FOR_TESTS: Micros = SECOND;

/// A normalised call: the event plus identity and idempotency data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Call {
    /// The idempotency key: `messageId`, or `"h:"` followed by the hex SHA-256 of the
    /// canonical JSON of the call as received (object keys sorted recursively, no
    /// whitespace) when the call has none.
    pub message_id: CompactString,
    /// `userId` (an integer id is turned into its decimal string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<CompactString>,
    /// `anonymousId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anonymous_id: Option<CompactString>,
    /// `previousId` of an alias call; `None` for other kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_id: Option<CompactString>,
    /// `groupId` of a group call; `None` for other kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<CompactString>,
    /// The event the evaluator sees.
    pub event: Event,
}

impl Call {
    /// The lead key: `userId`, else `anonymousId`.
    ///
    /// Every call built by [`normalize_call`](crate::ingest::segment::normalize_call) has one of them; a hand-built call with
    /// neither gives the empty string.
    pub fn lead_id(&self) -> &str {
        self.user_id
            .as_deref()
            .or(self.anonymous_id.as_deref())
            .unwrap_or("")
    }
}

/// Where the time of a call comes from when it has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimePolicy {
    /// Offline tools: a call without a time is rejected.
    Required,
    /// Online: a call without a time happened at the time of receipt (the value), and a
    /// call more than 5 minutes ([`MAX_FUTURE`]) ahead of the time of receipt is rejected.
    ReceivedAt(Micros),
}

/// A field error: the JSON path (e.g. `batch[3].timestamp`, `properties`, `userId`) and a
/// lowercase message without trailing period. Displayed as `path: message`, or the message
/// alone for the body as a whole (empty path).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}{}{message}", if path.is_empty() { "" } else { ": " })]
pub struct CallError {
    /// The JSON path of the offending field; `""` for the body as a whole.
    pub path: String,
    /// What is wrong, lowercase, without a trailing period.
    pub message: String,
}

impl CallError {
    pub(crate) fn new(path: String, message: impl Into<String>) -> Self {
        CallError {
            path,
            message: message.into(),
        }
    }
}

/// The calls of one body (or line): most hold one call, which is kept inline.
pub type LineCalls = smallvec::SmallVec<[Result<Call, CallError>; 1]>;
