//! A fast path for parsing Segment calls: typed deserialisation that borrows the envelope's
//! strings instead of building a `serde_json::Value` tree for the whole call.
//!
//! It only ever produces the result for a well-formed call. Anything unusual (a missing or
//! hashed `messageId`, a wrong type, a bad time, an empty batch, duplicate keys) makes it
//! give up, and the caller takes the exact path in `segment`, which owns every error
//! message. A test checks that both paths agree.

use crate::segment::{Call, CallError, TimePolicy, MAX_FUTURE};
use leadscore_rules::event::{CallKind, Event};
use leadscore_rules::time::parse_rfc3339;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::fmt;

/// An id: a non-empty string, or an integer written as its decimal string.
struct Id<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Id<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct IdVisitor;
        impl<'de> Visitor<'de> for IdVisitor {
            type Value = Id<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an integer")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Id(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Id(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Id(Cow::Owned(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Id(Cow::Owned(v.to_string())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Id(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_any(IdVisitor)
    }
}

#[derive(Deserialize)]
struct Campaign {
    #[serde(default)]
    source: Option<Value>,
}

#[derive(Deserialize)]
struct Context {
    #[serde(default)]
    campaign: Option<Campaign>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCall<'a> {
    #[serde(rename = "type", borrow, default)]
    ty: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    action: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    event: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    user_id: Option<Id<'a>>,
    #[serde(borrow, default)]
    anonymous_id: Option<Id<'a>>,
    #[serde(borrow, default)]
    previous_id: Option<Id<'a>>,
    #[serde(borrow, default)]
    group_id: Option<Id<'a>>,
    #[serde(borrow, default)]
    message_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    original_timestamp: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    sent_at: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    received_at: Option<Cow<'a, str>>,
    #[serde(default)]
    properties: Option<Map<String, Value>>,
    #[serde(default)]
    traits: Option<Map<String, Value>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(default)]
    context: Option<Context>,
}

#[derive(Deserialize)]
struct RawBatch<'a> {
    #[serde(borrow)]
    batch: Vec<RawCall<'a>>,
}

fn non_empty(id: Option<Id<'_>>) -> Option<Option<String>> {
    match id {
        None => Some(None),
        Some(Id(s)) if s.is_empty() => None,
        Some(Id(s)) => Some(Some(s.into_owned())),
    }
}

/// Builds the call, or `None` to let the exact path decide.
fn finish(raw: RawCall<'_>, policy: &TimePolicy) -> Option<Call> {
    let kind = match raw.ty.as_deref().or(raw.action.as_deref()) {
        Some("track") => CallKind::Track,
        Some("identify") => CallKind::Identify,
        Some("page") => CallKind::Page,
        Some("screen") => CallKind::Screen,
        Some("group") => CallKind::Group,
        Some("alias") => CallKind::Alias,
        Some(_) => return None,
        None if raw.event.is_some() => CallKind::Track,
        None => return None,
    };
    let user_id = non_empty(raw.user_id)?;
    let anonymous_id = non_empty(raw.anonymous_id)?;
    if user_id.is_none() && anonymous_id.is_none() {
        return None;
    }
    let message_id = raw.message_id.filter(|m| !m.is_empty())?.into_owned();
    let time_text = raw
        .timestamp
        .or(raw.original_timestamp)
        .or(raw.sent_at)
        .or(raw.received_at);
    let time = match (time_text, policy) {
        (Some(text), policy) => {
            let at = parse_rfc3339(&text)?;
            if let TimePolicy::ReceivedAt(now) = policy {
                if at.saturating_sub(*now) > MAX_FUTURE {
                    return None;
                }
            }
            at
        }
        (None, TimePolicy::ReceivedAt(now)) => *now,
        (None, TimePolicy::Required) => return None,
    };
    let source = raw
        .context
        .and_then(|c| c.campaign)
        .and_then(|c| c.source)
        .and_then(|s| match s {
            Value::String(s) => Some(s),
            _ => None,
        });
    let mut name = String::new();
    let mut previous_id = None;
    let mut group_id = None;
    let properties = match kind {
        CallKind::Track => {
            name = raw.event.filter(|e| !e.is_empty())?.into_owned();
            raw.properties.unwrap_or_default()
        }
        CallKind::Page | CallKind::Screen => {
            let mut properties = raw.properties.unwrap_or_default();
            if let Some(page_name) = raw.name {
                properties
                    .entry("name")
                    .or_insert_with(|| Value::String(page_name.into_owned()));
            }
            properties
        }
        CallKind::Identify => raw.traits?,
        CallKind::Group => {
            group_id = Some(non_empty(raw.group_id)??);
            raw.traits?
        }
        CallKind::Alias => {
            previous_id = Some(non_empty(raw.previous_id)??);
            user_id.as_ref()?;
            Map::new()
        }
    };
    Some(Call {
        message_id,
        user_id,
        anonymous_id,
        previous_id,
        group_id,
        event: Event {
            kind,
            name,
            time,
            properties,
            source,
        },
    })
}

/// The calls of one request body or line, or `None` when the exact path must decide.
pub(crate) fn parse_body(text: &str, policy: &TimePolicy) -> Option<Vec<Result<Call, CallError>>> {
    if text.contains("\"batch\"") {
        let batch: RawBatch<'_> = serde_json::from_str(text).ok()?;
        if batch.batch.is_empty() {
            return None;
        }
        let calls: Option<Vec<Call>> = batch.batch.into_iter().map(|c| finish(c, policy)).collect();
        return Some(calls?.into_iter().map(Ok).collect());
    }
    let raw: RawCall<'_> = serde_json::from_str(text).ok()?;
    Some(vec![Ok(finish(raw, policy)?)])
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::segment::{normalize_body, SECOND_FOR_TESTS};
    use proptest::prelude::*;

    fn exact(text: &str, policy: &TimePolicy) -> Result<Vec<Result<Call, CallError>>, CallError> {
        let value: Value = serde_json::from_str(text).map_err(|e| CallError {
            path: String::new(),
            message: e.to_string(),
        })?;
        normalize_body(&value, policy)
    }

    fn field(key: &'static str) -> impl Strategy<Value = Option<(String, Value)>> {
        let values = prop_oneof![
            Just(Value::Null),
            Just(Value::from("")),
            Just(Value::from("u1")),
            Just(Value::from(42)),
            Just(Value::from(1.5)),
            Just(Value::from(true)),
            Just(Value::from("2026-01-01T09:00:00Z")),
            Just(Value::from("2026-01-01T09:00:00.25+01:00")),
            Just(Value::from("not a time")),
            Just(Value::from("track")),
            Just(Value::from("page")),
            Just(Value::from("identify")),
            Just(Value::from("group")),
            Just(Value::from("alias")),
            Just(Value::from("screen")),
            Just(Value::from("Order Completed")),
            Just(serde_json::json!({"form": "demo", "name": "x"})),
            Just(serde_json::json!({})),
            Just(serde_json::json!([1, 2])),
            Just(serde_json::json!({"campaign": {"source": "google"}})),
            Just(serde_json::json!({"campaign": "x"})),
        ];
        proptest::option::of(values.prop_map(move |v| (key.to_string(), v)))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// Whenever the fast path answers, it answers exactly what the exact path does.
        #[test]
        fn fast_path_agrees_with_the_exact_path(
            fields in proptest::collection::vec(prop_oneof![
                field("type"), field("action"), field("event"), field("userId"),
                field("anonymousId"), field("previousId"), field("groupId"), field("messageId"),
                field("timestamp"), field("originalTimestamp"), field("sentAt"),
                field("receivedAt"), field("properties"), field("traits"), field("name"),
                field("context"),
            ], 0..12),
            batch in any::<bool>(),
            online in any::<bool>(),
        ) {
            let mut call = Map::new();
            for (k, v) in fields.into_iter().flatten() {
                call.insert(k, v);
            }
            let call = Value::Object(call);
            let body = if batch { serde_json::json!({"batch": [call.clone(), call]}) } else { call };
            let text = serde_json::to_string(&body).unwrap();
            let policy = if online {
                TimePolicy::ReceivedAt(1_767_258_000 * SECOND_FOR_TESTS)
            } else {
                TimePolicy::Required
            };
            if let Some(fast) = parse_body(&text, &policy) {
                let slow = exact(&text, &policy).expect("the exact path accepts what the fast path accepts");
                prop_assert_eq!(fast, slow);
            }
        }
    }

    #[test]
    fn takes_the_fast_path_for_ordinary_calls() {
        let text = r#"{"type":"page","userId":"u1","messageId":"m1","timestamp":"2026-01-01T09:00:00Z","name":"Pricing","properties":{"path":"/pricing"},"context":{"campaign":{"source":"google"}}}"#;
        let fast = parse_body(text, &TimePolicy::Required).expect("fast path");
        assert_eq!(fast, exact(text, &TimePolicy::Required).unwrap());
        let batch = format!(r#"{{"batch":[{text},{text}]}}"#);
        assert_eq!(
            parse_body(&batch, &TimePolicy::Required)
                .expect("fast")
                .len(),
            2
        );
    }

    #[test]
    fn leaves_unusual_calls_to_the_exact_path() {
        for text in [
            r#"{"type":"page","userId":"u1","timestamp":"2026-01-01T09:00:00Z"}"#, // hashed id
            r#"{"type":"page","userId":"","messageId":"m","timestamp":"2026-01-01T09:00:00Z"}"#,
            r#"{"type":"page","userId":"u","messageId":"m","timestamp":"yesterday"}"#,
            r#"{"type":"page","userId":"u","userId":"v","messageId":"m","timestamp":"2026-01-01T09:00:00Z"}"#,
            r#"{"batch":[]}"#,
            r#"{"type":"fly","userId":"u","messageId":"m","timestamp":"2026-01-01T09:00:00Z"}"#,
        ] {
            assert!(parse_body(text, &TimePolicy::Required).is_none(), "{text}");
        }
    }
}
