//! The notification message (SPEC §6) and the outbox item that carries it to `notify`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The sort key prefix of outbox notification items (`NOTE#<at>#<id>`).
pub const NOTE_PREFIX: &str = "NOTE#";

/// The sparse index of notifications not yet delivered: an outbox item carries
/// `undelivered` (one of [`UNDELIVERED_SHARDS`] partitions, `PENDING#<n>`) until `notify`
/// marks it delivered and removes it, so `leadscore dynamodb redeliver` finds what is left
/// without a scan. Its sort key is the item's `sk` (`NOTE#<at>#<id>`: time order).
pub const UNDELIVERED_INDEX: &str = "undelivered";

/// Partitions of [`UNDELIVERED_INDEX`].
pub const UNDELIVERED_SHARDS: u8 = 4;

/// The [`UNDELIVERED_INDEX`] partition of notification `id`.
pub fn undelivered_shard(id: &str) -> String {
    let digest = Sha256::digest(id.as_bytes());
    format!("PENDING#{}", digest[0] % UNDELIVERED_SHARDS)
}

/// The partition key of a lead's items (`LEAD#<id>`).
pub fn lead_pk(lead: &str) -> String {
    format!("LEAD#{lead}")
}

/// What a notification announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The lead reached a stage.
    StageReached,
    /// The lead converted.
    Converted,
}

impl Kind {
    /// The EventBridge `detail-type` of this kind.
    pub fn detail_type(self) -> &'static str {
        match self {
            Kind::StageReached => "Lead Stage Reached",
            Kind::Converted => "Lead Converted",
        }
    }

    /// The kind as written (`stage_reached`, `converted`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::StageReached => "stage_reached",
            Kind::Converted => "converted",
        }
    }

    /// The message's field that names what was reached (`stage`, `conversion`).
    pub fn name_field(self) -> &'static str {
        match self {
            Kind::StageReached => "stage",
            Kind::Converted => "conversion",
        }
    }
}

/// The rules a message was produced under (SPEC §7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RulesRef {
    /// The ruleset's name.
    pub ruleset: String,
    /// Its version.
    pub version: String,
}

/// One notification as delivered (SPEC §6): a webhook's body, an EventBridge event's detail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// The notification id ([`notification_id`]): receivers dedupe on it.
    pub id: String,
    /// What it announces.
    pub kind: Kind,
    /// The target's name from the rules' `notify TARGET when ...` line.
    pub target: String,
    /// The stage reached (for [`Kind::StageReached`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// The conversion made (for [`Kind::Converted`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversion: Option<String>,
    /// The RFC 3339 time of the transition.
    pub at: String,
    /// The lead object (SPEC §4) at the time of the commit, with its `profile` (SPEC §6).
    pub lead: Value,
    /// Its place among the lead's notifications, from 1, increasing in commit order across
    /// every target: a receiver keeps the snapshot with the highest (absent from messages
    /// written before sequences).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
    /// The rules in force (absent from messages written before rule versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<RulesRef>,
    /// Why, when not the lead's own call: `rules_changed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
}

impl Message {
    /// The message announcing that lead `lead` (`(id, incarnation)`, see
    /// [`notification_id`]) reached stage or conversion `name` at `at` (RFC 3339), for
    /// `target`; its id is [`notification_id`]'s.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        kind: Kind,
        name: &str,
        at: String,
        target: &str,
        (lead_id, incarnation): (&str, u64),
        lead: Value,
        rules: RulesRef,
        cause: Option<&str>,
    ) -> Self {
        let id = notification_id(lead_id, incarnation, kind.as_str(), name, &at, target);
        let (stage, conversion) = match kind {
            Kind::StageReached => (Some(name.to_owned()), None),
            Kind::Converted => (None, Some(name.to_owned())),
        };
        Message {
            id,
            kind,
            target: target.to_owned(),
            stage,
            conversion,
            at,
            lead,
            sequence: None,
            rules: Some(rules),
            cause: cause.map(str::to_owned),
        }
    }

    /// The stage or conversion's name.
    pub fn name(&self) -> &str {
        self.stage
            .as_deref()
            .or(self.conversion.as_deref())
            .unwrap_or("")
    }
}

/// The notification id: the same lead, transition (with its time) and target always give
/// the same id, so receivers can dedupe on it. `incarnation` tells the lives of one lead id
/// apart (the store's arrival key of the lead's first call): a lead erased and seen again
/// with the same calls gets new ids, which receivers that dedupe on `webhook-id` deliver.
pub fn notification_id(
    lead: &str,
    incarnation: u64,
    kind: &str,
    name: &str,
    at: &str,
    target: &str,
) -> String {
    let mut hasher = Sha256::new();
    let incarnation = incarnation.to_string();
    for part in [lead, &incarnation, kind, name, at, target] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    format!("ntf_{}", &hex::encode(hasher.finalize())[..20])
}

/// One outbox notification: one table item per (transition, target), key `LEAD#<lead>` /
/// `NOTE#<at>#<id>`, written in the same transaction as the state that caused it and read
/// by `notify` from the table's stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxNote {
    /// The partition key (`LEAD#<lead id>`).
    pub pk: String,
    /// The sort key (`NOTE#<at>#<id>`).
    pub sk: String,
    /// The notification id, e.g. `ntf_0123456789abcdef`: the webhook id receivers dedupe on.
    pub id: String,
    /// The target's name from the rules' `notify TARGET when ...` line.
    pub target: String,
    /// What the notification announces.
    pub kind: Kind,
    /// The lead id.
    #[serde(default)]
    pub lead: Option<String>,
    /// The RFC 3339 time of the transition.
    #[serde(default)]
    pub at: Option<String>,
    /// The complete JSON document to deliver ([`Message`]).
    pub message: String,
    /// When the item expires (Unix seconds; the table's TTL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// The [`UNDELIVERED_INDEX`] partition while the notification is not delivered to its
    /// target ([`undelivered_shard`]); removed with the delivered mark.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undelivered: Option<String>,
}

impl OutboxNote {
    /// The outbox item of `message` for lead `lead`, expiring at `expires_at`.
    pub fn of(lead: &str, message: &Message, expires_at: i64) -> Result<Self, serde_json::Error> {
        Ok(OutboxNote {
            pk: lead_pk(lead),
            sk: format!("{NOTE_PREFIX}{}#{}", message.at, message.id),
            id: message.id.clone(),
            target: message.target.clone(),
            kind: message.kind,
            lead: Some(lead.to_owned()),
            at: Some(message.at.clone()),
            message: serde_json::to_string(message)?,
            expires_at: Some(expires_at),
            undelivered: Some(undelivered_shard(&message.id)),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(cause: Option<&str>) -> Message {
        Message::new(
            Kind::StageReached,
            "sql",
            "2026-03-01T10:00:00Z".into(),
            "crm",
            ("u1", 7),
            json!({"id": "u1", "score": 120}),
            RulesRef {
                ruleset: "acme".into(),
                version: "0123456789abcdef".into(),
            },
            cause,
        )
    }

    #[test]
    fn a_message_reads_back_as_written_and_names_its_stage() {
        let mut m = message(Some("rules_changed"));
        m.sequence = Some(3);
        let text = serde_json::to_string(&m).unwrap();
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["stage"], json!("sql"));
        assert_eq!(value["kind"], json!("stage_reached"));
        assert_eq!(value["cause"], json!("rules_changed"));
        assert_eq!(value["sequence"], json!(3));
        assert_eq!(value["rules"]["version"], json!("0123456789abcdef"));
        assert!(value.get("conversion").is_none());
        let back: Message = serde_json::from_str(&text).unwrap();
        assert_eq!(back, m);
        assert_eq!((back.name(), &back.lead["id"]), ("sql", &json!("u1")));
        assert!(serde_json::to_value(message(None))
            .unwrap()
            .get("cause")
            .is_none());
    }

    #[test]
    fn the_id_depends_on_lead_transition_time_and_target() {
        let base = notification_id("u1", 7, "stage_reached", "sql", "t", "crm");
        assert_eq!(
            message(None).id,
            notification_id(
                "u1",
                7,
                "stage_reached",
                "sql",
                "2026-03-01T10:00:00Z",
                "crm"
            )
        );
        assert!(base.starts_with("ntf_") && base.len() == 24);
        for other in [
            notification_id("u2", 7, "stage_reached", "sql", "t", "crm"),
            notification_id("u1", 8, "stage_reached", "sql", "t", "crm"),
            notification_id("u1", 7, "converted", "sql", "t", "crm"),
            notification_id("u1", 7, "stage_reached", "mql", "t", "crm"),
            notification_id("u1", 7, "stage_reached", "sql", "t2", "crm"),
            notification_id("u1", 7, "stage_reached", "sql", "t", "slack"),
        ] {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn the_outbox_item_is_keyed_by_lead_time_and_id() {
        let m = message(None);
        let note = OutboxNote::of("u1", &m, 1_800_000_000).unwrap();
        assert_eq!(note.pk, "LEAD#u1");
        assert_eq!(note.sk, format!("NOTE#2026-03-01T10:00:00Z#{}", m.id));
        let shard = note.undelivered.clone().unwrap();
        assert_eq!(shard, undelivered_shard(&m.id));
        assert!((0..UNDELIVERED_SHARDS).any(|n| shard == format!("PENDING#{n}")));
        let back: Message = serde_json::from_str(&note.message).unwrap();
        assert_eq!(back, m);
    }
}
