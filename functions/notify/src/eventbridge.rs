//! Amazon EventBridge: one `PutEvents` entry per notification.

use aws_sdk_eventbridge::error::DisplayErrorContext;
use aws_sdk_eventbridge::primitives::{DateTime, DateTimeFormat};
use aws_sdk_eventbridge::types::PutEventsRequestEntry;

use crate::record::Notification;

/// The `source` of every event notify publishes.
pub const SOURCE: &str = "leadscore";

/// The `PutEvents` entry of a notification for the bus `bus` (name or ARN): `source`
/// `leadscore`, `detail-type` from its kind, `detail` the message, `time` the transition's.
pub fn entry(note: &Notification, bus: &str) -> PutEventsRequestEntry {
    let time = note
        .at
        .as_deref()
        .and_then(|at| DateTime::from_str(at, DateTimeFormat::DateTimeWithOffset).ok());
    PutEventsRequestEntry::builder()
        .source(SOURCE)
        .detail_type(note.kind.detail_type())
        .detail(note.message.clone())
        .event_bus_name(bus)
        .set_time(time)
        .build()
}

/// Why an EventBridge delivery failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventBridgeError {
    /// The `PutEvents` call failed.
    #[error("`PutEvents` failed: {0}")]
    Call(String),
    /// The call went through but EventBridge rejected the entry.
    #[error("EventBridge rejected the event: {code}: {message}")]
    Rejected {
        /// The entry's `ErrorCode`.
        code: String,
        /// The entry's `ErrorMessage`.
        message: String,
    },
}

/// Publishes the notification to `bus`; a failed entry is a failed delivery. Returns the
/// event id EventBridge gave it.
pub async fn put(
    client: &aws_sdk_eventbridge::Client,
    note: &Notification,
    bus: &str,
) -> Result<Option<String>, EventBridgeError> {
    let output = client
        .put_events()
        .entries(entry(note, bus))
        .send()
        .await
        .map_err(|err| EventBridgeError::Call(DisplayErrorContext(&err).to_string()))?;
    let result = output.entries().first();
    match result {
        Some(entry) if output.failed_entry_count() == 0 && entry.error_code().is_none() => {
            Ok(entry.event_id().map(str::to_owned))
        }
        _ => Err(EventBridgeError::Rejected {
            code: result
                .and_then(|entry| entry.error_code())
                .unwrap_or("unknown")
                .to_owned(),
            message: result
                .and_then(|entry| entry.error_message())
                .unwrap_or("no entry result")
                .to_owned(),
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::record::Kind;

    fn note(kind: Kind, at: Option<&str>) -> Notification {
        Notification {
            pk: "LEAD#u1".into(),
            sk: "NOTE#2024-05-01T10:00:00Z#ntf_1".into(),
            id: "ntf_1".into(),
            target: "sales".into(),
            kind,
            lead: Some("u1".into()),
            at: at.map(str::to_owned),
            message: r#"{"id":"ntf_1","kind":"stage_reached","lead":{"id":"u1"}}"#.into(),
            expires_at: None,
            undelivered: None,
        }
    }

    #[test]
    fn stage_reached_entry() {
        let entry = entry(
            &note(Kind::StageReached, Some("2024-05-01T10:00:00Z")),
            "leadscore",
        );
        assert_eq!(entry.source(), Some("leadscore"));
        assert_eq!(entry.detail_type(), Some("Lead Stage Reached"));
        assert_eq!(
            entry.detail(),
            Some(r#"{"id":"ntf_1","kind":"stage_reached","lead":{"id":"u1"}}"#)
        );
        assert_eq!(entry.event_bus_name(), Some("leadscore"));
        assert_eq!(entry.time().map(|t| t.secs()), Some(1_714_557_600));
    }

    #[test]
    fn converted_entry_on_a_bus_arn() {
        let bus = "arn:aws:events:eu-west-1:123456789012:event-bus/sales";
        let entry = entry(
            &note(Kind::Converted, Some("2024-05-01T12:00:00.250+02:00")),
            bus,
        );
        assert_eq!(entry.detail_type(), Some("Lead Converted"));
        assert_eq!(entry.event_bus_name(), Some(bus));
        assert_eq!(entry.time().map(|t| t.secs()), Some(1_714_557_600));
    }

    #[test]
    fn entry_without_a_readable_time_lets_eventbridge_stamp_it() {
        assert_eq!(entry(&note(Kind::Converted, None), "b").time(), None);
        assert_eq!(
            entry(&note(Kind::Converted, Some("yesterday")), "b").time(),
            None
        );
    }
}
