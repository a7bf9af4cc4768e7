//! Outbox notifications as they arrive on the table's stream.

use aws_lambda_events::event::dynamodb::EventRecord;
use serde_dynamo::AttributeValue;

pub use leadscore_wire::{Kind, NOTE_PREFIX};

/// One outbox notification as `score` wrote it ([`leadscore_wire::OutboxNote`]).
pub type Notification = leadscore_wire::OutboxNote;

/// Why a stream record that should be a notification cannot be read as one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The record carries no new image: the stream must be `NEW_IMAGE`.
    #[error("notification `{sk}` has no new image (the table's stream must be `NEW_IMAGE`)")]
    NoImage {
        /// The item's sort key.
        sk: String,
    },
    /// The new image lacks an attribute, or one has the wrong type or value.
    #[error("notification `{sk}` is malformed: {reason}")]
    Malformed {
        /// The item's sort key.
        sk: String,
        /// What is wrong.
        reason: String,
    },
    /// The message is not a JSON object.
    #[error("notification `{sk}`: `message` is not a JSON object")]
    BadMessage {
        /// The item's sort key.
        sk: String,
    },
}

/// Whether a stream record is the insert of an outbox notification: an `INSERT` whose key's
/// `sk` starts with `NOTE#`. Anything else (state, history, idempotency and alias items,
/// delivered-mark updates, TTL deletions) is not for notify.
pub fn is_notification_insert(record: &EventRecord) -> bool {
    record.event_name == "INSERT"
        && matches!(
            record.change.keys.get("sk").or_else(|| record.change.new_image.get("sk")),
            Some(AttributeValue::S(sk)) if sk.starts_with(NOTE_PREFIX)
        )
}

/// The partition key of a stream record's item (`LEAD#<id>` for a lead's items): the
/// records of one lead share it, and the stream gives them in commit order.
pub fn partition_key(record: &EventRecord) -> Option<String> {
    match record
        .change
        .keys
        .get("pk")
        .or_else(|| record.change.new_image.get("pk"))
    {
        Some(AttributeValue::S(pk)) if !pk.is_empty() => Some(pk.clone()),
        _ => None,
    }
}

/// Reads the notification from a stream record: `Ok(None)` for a record that is not the
/// insert of a notification ([`is_notification_insert`]), an error for a notification
/// insert that cannot be delivered as it stands.
pub fn from_record(record: &EventRecord) -> Result<Option<Notification>, RecordError> {
    if !is_notification_insert(record) {
        return Ok(None);
    }
    let sk = match record.change.keys.get("sk") {
        Some(AttributeValue::S(sk)) => sk.clone(),
        _ => String::new(),
    };
    if record.change.new_image.is_empty() {
        return Err(RecordError::NoImage { sk });
    }
    let note: Notification =
        serde_dynamo::from_item(record.change.new_image.clone()).map_err(|err| {
            RecordError::Malformed {
                sk: sk.clone(),
                reason: err.to_string(),
            }
        })?;
    if !note.sk.starts_with(NOTE_PREFIX) || note.pk.is_empty() {
        return Err(RecordError::Malformed {
            sk,
            reason: "its key is not a notification's".into(),
        });
    }
    if note.id.is_empty() || note.target.is_empty() {
        return Err(RecordError::Malformed {
            sk,
            reason: "`id` and `target` must not be empty".into(),
        });
    }
    if !matches!(
        serde_json::from_str::<serde_json::Value>(&note.message),
        Ok(serde_json::Value::Object(_))
    ) {
        return Err(RecordError::BadMessage { sk });
    }
    Ok(Some(note))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
pub(crate) mod tests {
    use super::*;
    use aws_lambda_events::event::dynamodb::Event;
    use serde_json::{json, Value};

    /// A record as Lambda delivers it for a stream with `NEW_IMAGE`.
    pub(crate) fn record_json(event_name: &str, sk: &str, image: Value, seq: &str) -> Value {
        json!({
            "eventID": format!("ev-{seq}"),
            "eventName": event_name,
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": "eu-west-1",
            "dynamodb": {
                "ApproximateCreationDateTime": 1_700_000_000.0,
                "Keys": {"pk": {"S": "LEAD#u1"}, "sk": {"S": sk}},
                "NewImage": image,
                "SequenceNumber": seq,
                "SizeBytes": 321,
                "StreamViewType": "NEW_IMAGE"
            },
            "eventSourceARN": "arn:aws:dynamodb:eu-west-1:123456789012:table/leadscore/stream/2024-01-01T00:00:00.000"
        })
    }

    /// The new image of a notification item.
    pub(crate) fn note_image(sk: &str, id: &str, target: &str, kind: &str) -> Value {
        let message = json!({
            "id": id, "kind": kind, "target": target, "stage": "sql",
            "at": "2024-05-01T10:00:00Z",
            "lead": {"id": "u1", "score": 120, "fit": 20, "engagement": 100, "stage": "sql", "profile": {}}
        });
        json!({
            "pk": {"S": "LEAD#u1"},
            "sk": {"S": sk},
            "id": {"S": id},
            "target": {"S": target},
            "kind": {"S": kind},
            "lead": {"S": "u1"},
            "at": {"S": "2024-05-01T10:00:00Z"},
            "message": {"S": message.to_string()},
            "expires_at": {"N": "1800000000"}
        })
    }

    pub(crate) fn event(records: Vec<Value>) -> Event {
        serde_json::from_value(json!({ "Records": records })).unwrap()
    }

    fn one(record: Value) -> Result<Option<Notification>, RecordError> {
        let event = event(vec![record]);
        from_record(&event.records[0])
    }

    const SK: &str = "NOTE#2024-05-01T10:00:00Z#ntf_1";

    #[test]
    fn reads_a_notification_insert() {
        let image = note_image(SK, "ntf_1", "crm", "stage_reached");
        let note = one(record_json("INSERT", SK, image, "100"))
            .unwrap()
            .unwrap();
        assert_eq!(note.pk, "LEAD#u1");
        assert_eq!(note.sk, SK);
        assert_eq!(note.id, "ntf_1");
        assert_eq!(note.target, "crm");
        assert_eq!(note.kind, Kind::StageReached);
        assert_eq!(note.lead.as_deref(), Some("u1"));
        assert_eq!(note.at.as_deref(), Some("2024-05-01T10:00:00Z"));
        let message: Value = serde_json::from_str(&note.message).unwrap();
        assert_eq!(message["id"], "ntf_1");
    }

    #[test]
    fn ignores_what_is_not_a_notification_insert() {
        let image = note_image(SK, "ntf_1", "crm", "stage_reached");
        // the delivered mark's update, and the TTL deletion
        assert_eq!(one(record_json("MODIFY", SK, image.clone(), "1")), Ok(None));
        assert_eq!(one(record_json("REMOVE", SK, json!({}), "2")), Ok(None));
        // other items of the table
        for sk in [
            "STATE",
            "CALL#2024-05-01T10:00:00Z#m1",
            "MSG",
            "ALIAS",
            "note#x",
        ] {
            assert_eq!(
                one(record_json("INSERT", sk, json!({}), "3")),
                Ok(None),
                "{sk}"
            );
        }
    }

    #[test]
    fn rejects_notification_inserts_that_cannot_be_delivered() {
        // KEYS_ONLY stream: no image
        let err = one(record_json("INSERT", SK, Value::Null, "1")).unwrap_err();
        assert!(matches!(err, RecordError::NoImage { .. }), "{err}");
        // missing message
        let mut image = note_image(SK, "ntf_1", "crm", "converted");
        image.as_object_mut().unwrap().remove("message");
        let err = one(record_json("INSERT", SK, image, "2")).unwrap_err();
        assert!(err.to_string().contains("message"), "{err}");
        // unknown kind
        let image = note_image(SK, "ntf_1", "crm", "promoted");
        let err = one(record_json("INSERT", SK, image, "3")).unwrap_err();
        assert!(err.to_string().contains("promoted"), "{err}");
        // a message that is not a JSON object
        let mut image = note_image(SK, "ntf_1", "crm", "converted");
        image["message"] = json!({"S": "not json"});
        let err = one(record_json("INSERT", SK, image, "4")).unwrap_err();
        assert_eq!(err, RecordError::BadMessage { sk: SK.into() });
    }

    #[test]
    fn detail_types() {
        assert_eq!(Kind::StageReached.detail_type(), "Lead Stage Reached");
        assert_eq!(Kind::Converted.detail_type(), "Lead Converted");
        assert_eq!(Kind::Converted.as_str(), "converted");
    }
}
