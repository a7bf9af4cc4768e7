//! Segment spec input: turns webhook JSON (one call or a `{"batch": [...]}`) into
//! normalised [`Call`]s (SPEC §1 "Events in", §5 "Identity").
//!
//! The rules are strict: values are typed as JSON types them and nothing is coerced,
//! except that an integer id (`"userId": 42`) becomes its decimal string, as Segment
//! senders do in practice. A field set to `null` counts as absent. Every error names the
//! field by its JSON path (`batch[3].timestamp: not an RFC 3339 time`).

use crate::ingest::call::{Call, CallError, TimePolicy, MAX_FUTURE};
use compact_str::CompactString;
use leadscore_rules::event::{CallKind, Event};
use leadscore_rules::time::{parse_rfc3339, Micros};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The call types, as listed in error messages.
const CALL_TYPES: &str = "track, identify, page, screen, group, alias, merge";

/// The time fields of a call, in order of preference.
const TIME_FIELDS: [&str; 4] = ["timestamp", "originalTimestamp", "sentAt", "receivedAt"];

/// Normalise one call (a JSON value). `prefix` is prepended to paths (`""` for a lone
/// call, `"batch[3]"` inside a batch: paths are then `"batch[3].timestamp"`).
pub fn normalize_call(value: &Value, prefix: &str, time: &TimePolicy) -> Result<Call, CallError> {
    let Value::Object(call) = value else {
        return Err(CallError::new(
            prefix.to_owned(),
            format!("a call must be a JSON object, found {}", type_name(value)),
        ));
    };
    let field = |name: &str| join(prefix, name);

    let kind = call_kind(call, prefix)?;

    // identity
    let user_id = id_field(call, "userId", prefix)?;
    let anonymous_id = id_field(call, "anonymousId", prefix)?;
    if user_id.is_none() && anonymous_id.is_none() {
        return Err(CallError::new(
            field("userId"),
            "a call needs `userId` or `anonymousId`",
        ));
    }

    // idempotency key
    let message_id = match present(call, "messageId") {
        None => hash_id(value).into(),
        Some(Value::String(s)) if s.is_empty() => {
            return Err(CallError::new(field("messageId"), "must not be empty"));
        }
        Some(Value::String(s)) => s.as_str().into(),
        Some(other) => {
            return Err(CallError::new(
                field("messageId"),
                format!("must be a string, found {}", type_name(other)),
            ));
        }
    };

    let at = call_time(call, prefix, time)?;

    // context and first-touch source
    let source = match present(call, "context") {
        None => None,
        Some(Value::Object(context)) => context
            .get("campaign")
            .and_then(|campaign| campaign.get("source"))
            .and_then(Value::as_str)
            .map(CompactString::from),
        Some(other) => {
            return Err(CallError::new(
                field("context"),
                format!("must be an object, found {}", type_name(other)),
            ));
        }
    };

    let mut name = CompactString::default();
    let mut previous_id = None;
    let mut group_id = None;
    let properties = match kind {
        CallKind::Track => {
            name = event_name(call, prefix)?;
            object_field(call, "properties", prefix)?.unwrap_or_default()
        }
        CallKind::Page | CallKind::Screen => {
            let mut properties = object_field(call, "properties", prefix)?.unwrap_or_default();
            match present(call, "name") {
                None => {}
                Some(Value::String(page_name)) => {
                    properties
                        .entry("name")
                        .or_insert_with(|| Value::String(page_name.clone()));
                }
                Some(other) => {
                    return Err(CallError::new(
                        field("name"),
                        format!("must be a string, found {}", type_name(other)),
                    ));
                }
            }
            properties
        }
        CallKind::Identify => required_traits(call, "an identify call", prefix)?,
        CallKind::Group => {
            group_id = Some(required_id(call, "groupId", "a group call", prefix)?);
            required_traits(call, "a group call", prefix)?
        }
        CallKind::Alias => {
            previous_id = Some(if is_merge(call) {
                merged_id(call, user_id.as_deref(), prefix)?
            } else {
                required_id(call, "previousId", "an alias call", prefix)?
            });
            if user_id.is_none() {
                let what = if is_merge(call) {
                    "a merge"
                } else {
                    "an alias"
                };
                return Err(CallError::new(
                    field("userId"),
                    format!("{what} call needs `userId`"),
                ));
            }
            Map::new()
        }
    };

    Ok(Call {
        message_id,
        user_id,
        anonymous_id,
        previous_id,
        group_id,
        event: Event {
            kind,
            name,
            time: at,
            properties: properties.into(),
            source,
        },
    })
}

/// A request body: a lone call or `{"batch": [...]}`. Returns one result per call (a lone
/// call gives a one-element vec). Errors for the body as a whole (not an object, `batch`
/// not an array, empty batch) are a [`CallError`] with path `""` or `"batch"`.
pub fn normalize_body(
    value: &Value,
    time: &TimePolicy,
) -> Result<Vec<Result<Call, CallError>>, CallError> {
    let Value::Object(body) = value else {
        return Err(CallError::new(
            String::new(),
            format!(
                "a request body must be a JSON object (a call or a batch), found {}",
                type_name(value)
            ),
        ));
    };
    let Some(batch) = body.get("batch") else {
        return Ok(vec![normalize_call(value, "", time)]);
    };
    let Value::Array(calls) = batch else {
        return Err(CallError::new(
            "batch".to_owned(),
            format!("must be an array of calls, found {}", type_name(batch)),
        ));
    };
    if calls.is_empty() {
        return Err(CallError::new(
            "batch".to_owned(),
            "a batch needs at least one call",
        ));
    }
    Ok(calls
        .iter()
        .enumerate()
        .map(|(index, call)| normalize_call(call, &format!("batch[{index}]"), time))
        .collect())
}

/// A bare JSON array of calls, as `POST /events` also takes it (SPEC §8; Segment's Webhooks
/// destination posts a batch so): one result per call, each error's path starting with the
/// call's place (`[3].timestamp`). An empty array is an error for the body as a whole.
pub fn normalize_array(
    calls: &[Value],
    time: &TimePolicy,
) -> Result<Vec<Result<Call, CallError>>, CallError> {
    if calls.is_empty() {
        return Err(CallError::new(
            String::new(),
            "an array of calls needs at least one call",
        ));
    }
    Ok(calls
        .iter()
        .enumerate()
        .map(|(index, call)| normalize_call(call, &format!("[{index}]"), time))
        .collect())
}

/// [`normalize_body`] on an owned value: the same results, without copying the calls'
/// properties and traits.
pub fn normalize_body_owned(
    mut value: Value,
    time: &TimePolicy,
) -> Result<Vec<Result<Call, CallError>>, CallError> {
    let batch = match &mut value {
        Value::Object(body) => match body.get_mut("batch") {
            Some(batch @ Value::Array(_)) if batch.as_array().is_some_and(|a| !a.is_empty()) => {
                Some(batch.take())
            }
            _ => None,
        },
        _ => None,
    };
    match batch {
        Some(Value::Array(calls)) => Ok(calls
            .into_iter()
            .enumerate()
            .map(|(index, call)| normalize_call_owned(call, &format!("batch[{index}]"), time))
            .collect()),
        _ => {
            if matches!(&value, Value::Object(body) if body.contains_key("batch")) {
                return normalize_body(&value, time);
            }
            if !value.is_object() {
                return normalize_body(&value, time);
            }
            Ok(vec![normalize_call_owned(value, "", time)])
        }
    }
}

/// [`normalize_call`] on an owned value: the same result, moving `properties` and `traits`
/// out of the call instead of copying them.
pub fn normalize_call_owned(
    mut value: Value,
    prefix: &str,
    time: &TimePolicy,
) -> Result<Call, CallError> {
    let Value::Object(call) = &mut value else {
        return normalize_call(&value, prefix, time);
    };
    // The idempotency hash covers the call as received: only move when it is not needed.
    if present(call, "messageId").is_none() {
        return normalize_call(&value, prefix, time);
    }
    let mut take = |key: &str| match call.get_mut(key) {
        Some(Value::Object(map)) => Some(std::mem::take(map)),
        _ => None,
    };
    let properties = take("properties");
    let traits = take("traits");
    let mut out = normalize_call(&value, prefix, time)?;
    let moved = match out.event.kind {
        CallKind::Track | CallKind::Page | CallKind::Screen => properties,
        CallKind::Identify | CallKind::Group => traits,
        CallKind::Alias => None,
    };
    if let Some(mut map) = moved {
        // page/screen: the call's `name` was added to the (emptied) properties
        for (k, v) in std::mem::take(&mut out.event.properties) {
            map.entry(k).or_insert(v);
        }
        out.event.properties = map.into();
    }
    Ok(out)
}

/// `prefix.field`, or `field` alone when the prefix is empty.
fn join(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_owned()
    } else {
        format!("{prefix}.{field}")
    }
}

/// A field's value, `None` when it is absent or `null`.
fn present<'a>(call: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    call.get(key).filter(|value| !value.is_null())
}

/// The JSON type of a value, with its article, for messages.
fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The call type from `type`, else `action`, else `track` when the call has an `event`.
fn call_kind(call: &Map<String, Value>, prefix: &str) -> Result<CallKind, CallError> {
    let (key, value) = match (present(call, "type"), present(call, "action")) {
        (Some(value), _) => ("type", value),
        (None, Some(value)) => ("action", value),
        (None, None) => {
            if present(call, "event").is_some() {
                return Ok(CallKind::Track);
            }
            return Err(CallError::new(
                join(prefix, "type"),
                format!("a call needs a `type` (one of {CALL_TYPES})"),
            ));
        }
    };
    let Value::String(text) = value else {
        return Err(CallError::new(
            join(prefix, key),
            format!("must be a string, found {}", type_name(value)),
        ));
    };
    match text.as_str() {
        "track" => Ok(CallKind::Track),
        "identify" => Ok(CallKind::Identify),
        "page" => Ok(CallKind::Page),
        "screen" => Ok(CallKind::Screen),
        "group" => Ok(CallKind::Group),
        // RudderStack's `merge` is an identity merge, as `alias` is (SPEC §8)
        "alias" | "merge" => Ok(CallKind::Alias),
        other => Err(CallError::new(
            join(prefix, key),
            format!("unknown call type `{other}`; expected one of {CALL_TYPES}"),
        )),
    }
}

/// Whether the call is RudderStack's `merge` (`type` or `action`).
fn is_merge(call: &Map<String, Value>) -> bool {
    present(call, "type")
        .or_else(|| present(call, "action"))
        .and_then(Value::as_str)
        == Some("merge")
}

/// The id a `merge` call merges into its `userId`: the one value of `mergeProperties`
/// (`[{"type": "email", "value": "..."}, ...]`) other than the `userId` itself. Several
/// other values are an error at the second: one call merges one id, as `alias` does.
fn merged_id(
    call: &Map<String, Value>,
    user_id: Option<&str>,
    prefix: &str,
) -> Result<CompactString, CallError> {
    let key = join(prefix, "mergeProperties");
    let entries = match present(call, "mergeProperties") {
        None => return Err(CallError::new(key, "a merge call needs `mergeProperties`")),
        Some(Value::Array(entries)) => entries,
        Some(other) => {
            return Err(CallError::new(
                key,
                format!(
                    "must be an array of `{{\"type\", \"value\"}}` objects, found {}",
                    type_name(other)
                ),
            ))
        }
    };
    let mut merged: Option<CompactString> = None;
    for (index, entry) in entries.iter().enumerate() {
        let at = format!("{key}[{index}]");
        let Value::Object(entry) = entry else {
            return Err(CallError::new(
                at,
                format!("must be an object, found {}", type_name(entry)),
            ));
        };
        if !matches!(present(entry, "type"), Some(Value::String(t)) if !t.is_empty()) {
            return Err(CallError::new(
                format!("{at}.type"),
                "a merge property needs a `type` string",
            ));
        }
        let value = id_field(entry, "value", &at)?.ok_or_else(|| {
            CallError::new(format!("{at}.value"), "a merge property needs a `value`")
        })?;
        if Some(value.as_str()) == user_id || merged.as_deref() == Some(value.as_str()) {
            continue;
        }
        if merged.is_some() {
            return Err(CallError::new(
                format!("{at}.value"),
                "a merge call merges one id into its `userId`; send one merge call per id",
            ));
        }
        merged = Some(value);
    }
    merged.ok_or_else(|| {
        CallError::new(
            key,
            "a merge call needs an id other than its `userId` in `mergeProperties`",
        )
    })
}

/// An id field: a non-empty string, or an integer turned into its decimal string.
fn id_field(
    call: &Map<String, Value>,
    key: &str,
    prefix: &str,
) -> Result<Option<CompactString>, CallError> {
    match present(call, key) {
        None => Ok(None),
        Some(Value::String(s)) if s.is_empty() => {
            Err(CallError::new(join(prefix, key), "must not be empty"))
        }
        Some(Value::String(s)) => Ok(Some(s.as_str().into())),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(Some(n.to_string().into())),
        Some(other) => Err(CallError::new(
            join(prefix, key),
            format!(
                "must be a string or an integer, found {}",
                match other {
                    Value::Number(_) => "a non-integer number",
                    _ => type_name(other),
                }
            ),
        )),
    }
}

/// An id field that `what` (e.g. "a group call") needs.
fn required_id(
    call: &Map<String, Value>,
    key: &str,
    what: &str,
    prefix: &str,
) -> Result<CompactString, CallError> {
    id_field(call, key, prefix)?
        .ok_or_else(|| CallError::new(join(prefix, key), format!("{what} needs `{key}`")))
}

/// An object field, `None` when absent.
fn object_field(
    call: &Map<String, Value>,
    key: &str,
    prefix: &str,
) -> Result<Option<Map<String, Value>>, CallError> {
    match present(call, key) {
        None => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map.clone())),
        Some(other) => Err(CallError::new(
            join(prefix, key),
            format!("must be an object, found {}", type_name(other)),
        )),
    }
}

/// The `traits` object that `what` (e.g. "an identify call") needs: `traits`, or when it is
/// absent `context.traits`, where RudderStack's libraries put them (SPEC §8).
fn required_traits(
    call: &Map<String, Value>,
    what: &str,
    prefix: &str,
) -> Result<Map<String, Value>, CallError> {
    if let Some(traits) = object_field(call, "traits", prefix)? {
        return Ok(traits);
    }
    if let Some(Value::Object(context)) = present(call, "context") {
        if let Some(traits) = object_field(context, "traits", &join(prefix, "context"))? {
            return Ok(traits);
        }
    }
    Err(CallError::new(
        join(prefix, "traits"),
        format!("{what} needs `traits` (an object), or `context.traits`"),
    ))
}

/// The event name of a track call: `event`, a non-empty string.
fn event_name(call: &Map<String, Value>, prefix: &str) -> Result<CompactString, CallError> {
    match present(call, "event") {
        None => Err(CallError::new(
            join(prefix, "event"),
            "a track call needs `event` (the event name)",
        )),
        Some(Value::String(s)) if s.is_empty() => {
            Err(CallError::new(join(prefix, "event"), "must not be empty"))
        }
        Some(Value::String(s)) => Ok(s.as_str().into()),
        Some(other) => Err(CallError::new(
            join(prefix, "event"),
            format!("must be a string, found {}", type_name(other)),
        )),
    }
}

/// The time of a call: the first present of [`TIME_FIELDS`], else per the policy.
fn call_time(
    call: &Map<String, Value>,
    prefix: &str,
    policy: &TimePolicy,
) -> Result<Micros, CallError> {
    // device times only (SPEC §8): the device's clock corrected with the time of receipt,
    // `received − (sentAt − originalTimestamp)`
    if let TimePolicy::ReceivedAt(now) = policy {
        if let (None, Some(original), Some(sent)) = (
            present(call, "timestamp"),
            present(call, "originalTimestamp"),
            present(call, "sentAt"),
        ) {
            let original = time_value(original, "originalTimestamp", prefix)?;
            let sent = time_value(sent, "sentAt", prefix)?;
            let at = now.saturating_sub(sent.saturating_sub(original));
            return not_ahead(at, *now, "originalTimestamp", prefix);
        }
    }
    let found = TIME_FIELDS
        .iter()
        .find_map(|key| present(call, key).map(|value| (*key, value)));
    let Some((key, value)) = found else {
        return match policy {
            TimePolicy::Required => Err(CallError::new(
                join(prefix, "timestamp"),
                "a call needs a `timestamp` (or `originalTimestamp`, `sentAt`, `receivedAt`)",
            )),
            TimePolicy::ReceivedAt(now) => Ok(*now),
        };
    };
    let at = time_value(value, key, prefix)?;
    match policy {
        TimePolicy::ReceivedAt(now) => not_ahead(at, *now, key, prefix),
        TimePolicy::Required => Ok(at),
    }
}

/// The time field `key`: an RFC 3339 string.
fn time_value(value: &Value, key: &str, prefix: &str) -> Result<Micros, CallError> {
    let Value::String(text) = value else {
        return Err(CallError::new(
            join(prefix, key),
            format!(
                "not an RFC 3339 time: expected a string, found {}",
                type_name(value)
            ),
        ));
    };
    parse_rfc3339(text).ok_or_else(|| CallError::new(join(prefix, key), "not an RFC 3339 time"))
}

/// `at`, unless it is more than [`MAX_FUTURE`] ahead of the time of receipt `now`.
fn not_ahead(at: Micros, now: Micros, key: &str, prefix: &str) -> Result<Micros, CallError> {
    if at.saturating_sub(now) > MAX_FUTURE {
        return Err(CallError::new(
            join(prefix, key),
            "more than 5 minutes in the future",
        ));
    }
    Ok(at)
}

/// `"h:"` + hex SHA-256 of the canonical JSON of a call.
fn hash_id(value: &Value) -> String {
    let mut canonical = String::new();
    write_canonical(value, &mut canonical);
    let digest = Sha256::digest(canonical.as_bytes());
    format!("h:{}", hex::encode(digest))
}

/// Canonical JSON: object keys sorted (by code point) at every level, no whitespace,
/// strings escaped as serde_json escapes them. Independent of serde_json's map order.
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (index, (key, item)) in entries.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
    }
}

/// A JSON string literal, escaped exactly as serde_json does.
fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::ingest::parse_body;
    use leadscore_rules::time::{format_rfc3339, SECOND};
    use serde_json::json;

    const T0: &str = "2026-01-01T09:00:00Z";

    fn t0() -> Micros {
        parse_rfc3339(T0).unwrap()
    }

    fn ok(value: Value) -> Call {
        normalize_call(&value, "", &TimePolicy::Required).unwrap()
    }

    fn err(value: Value) -> String {
        normalize_call(&value, "", &TimePolicy::Required)
            .unwrap_err()
            .to_string()
    }

    fn err_online(value: Value, now: Micros) -> String {
        normalize_call(&value, "", &TimePolicy::ReceivedAt(now))
            .unwrap_err()
            .to_string()
    }

    // ---- call types ----

    #[test]
    fn track_call() {
        let call = ok(json!({
            "type": "track", "event": "Signed Up", "userId": "u1",
            "messageId": "m1", "timestamp": T0,
            "properties": {"plan": "pro", "seats": 3}
        }));
        assert_eq!(call.event.kind, CallKind::Track);
        assert_eq!(call.event.name, "Signed Up");
        assert_eq!(call.event.time, t0());
        assert_eq!(call.message_id, "m1");
        assert_eq!(call.user_id.as_deref(), Some("u1"));
        assert_eq!(call.anonymous_id, None);
        assert_eq!(call.previous_id, None);
        assert_eq!(call.group_id, None);
        assert_eq!(
            Value::from(call.event.properties),
            json!({"plan": "pro", "seats": 3})
        );
        assert_eq!(call.event.source, None);
    }

    #[test]
    fn event_without_type_is_a_track() {
        let call = ok(json!({"event": "Clicked", "anonymousId": "a1", "timestamp": T0}));
        assert_eq!(call.event.kind, CallKind::Track);
        assert_eq!(call.event.name, "Clicked");
    }

    #[test]
    fn action_is_accepted_instead_of_type() {
        let call = ok(
            json!({"action": "identify", "userId": "u1", "timestamp": T0,
                             "traits": {"email": "a@b.c"}}),
        );
        assert_eq!(call.event.kind, CallKind::Identify);
        let call = ok(json!({"action": "page", "userId": "u1", "timestamp": T0}));
        assert_eq!(call.event.kind, CallKind::Page);
    }

    #[test]
    fn type_wins_over_action() {
        let call = ok(json!({"type": "page", "action": "bogus", "userId": "u1", "timestamp": T0}));
        assert_eq!(call.event.kind, CallKind::Page);
    }

    #[test]
    fn all_kinds_parse() {
        for (kind, extra) in [
            (CallKind::Track, json!({"event": "E"})),
            (CallKind::Identify, json!({"traits": {}})),
            (CallKind::Page, json!({})),
            (CallKind::Screen, json!({})),
            (CallKind::Group, json!({"groupId": "g", "traits": {}})),
            (CallKind::Alias, json!({"previousId": "a"})),
        ] {
            let mut value = json!({"type": kind.as_str(), "userId": "u", "timestamp": T0});
            for (k, v) in extra.as_object().unwrap() {
                value[k] = v.clone();
            }
            assert_eq!(ok(value).event.kind, kind);
        }
    }

    #[test]
    fn unknown_type_is_rejected() {
        assert_eq!(
            err(json!({"type": "foo", "userId": "u", "timestamp": T0})),
            "type: unknown call type `foo`; expected one of track, identify, page, screen, group, alias, merge"
        );
        assert_eq!(
            err(json!({"action": "foo", "userId": "u", "timestamp": T0})),
            "action: unknown call type `foo`; expected one of track, identify, page, screen, group, alias, merge"
        );
        // strict: no case folding
        assert!(
            err(json!({"type": "Track", "event": "E", "userId": "u", "timestamp": T0}))
                .starts_with("type: unknown call type `Track`")
        );
    }

    #[test]
    fn type_must_be_a_string() {
        assert_eq!(
            err(json!({"type": 1, "userId": "u", "timestamp": T0})),
            "type: must be a string, found a number"
        );
        assert_eq!(
            err(json!({"action": ["track"], "userId": "u", "timestamp": T0})),
            "action: must be a string, found an array"
        );
    }

    #[test]
    fn missing_type_without_event() {
        assert_eq!(
            err(json!({"userId": "u", "timestamp": T0})),
            "type: a call needs a `type` (one of track, identify, page, screen, group, alias, merge)"
        );
    }

    #[test]
    fn track_needs_event() {
        assert_eq!(
            err(json!({"type": "track", "userId": "u", "timestamp": T0})),
            "event: a track call needs `event` (the event name)"
        );
        assert_eq!(
            err(json!({"type": "track", "event": "", "userId": "u", "timestamp": T0})),
            "event: must not be empty"
        );
        assert_eq!(
            err(json!({"type": "track", "event": 5, "userId": "u", "timestamp": T0})),
            "event: must be a string, found a number"
        );
        // no type, event present but not a string
        assert_eq!(
            err(json!({"event": true, "userId": "u", "timestamp": T0})),
            "event: must be a string, found a boolean"
        );
    }

    #[test]
    fn non_track_names() {
        let page = ok(json!({"type": "page", "userId": "u", "timestamp": T0}));
        assert_eq!(page.event.name, "");
        let identify = ok(json!({"type": "identify", "userId": "u", "timestamp": T0,
                                 "event": "ignored", "traits": {}}));
        assert_eq!(identify.event.name, "");
    }

    #[test]
    fn top_level_must_be_an_object() {
        assert_eq!(
            err(json!([1])),
            "a call must be a JSON object, found an array"
        );
        let e = normalize_call(&json!("x"), "batch[2]", &TimePolicy::Required).unwrap_err();
        assert_eq!(e.path, "batch[2]");
        assert_eq!(e.message, "a call must be a JSON object, found a string");
    }

    // ---- identity ----

    #[test]
    fn identity_user_else_anonymous() {
        let both = ok(json!({"event": "E", "userId": "u", "anonymousId": "a", "timestamp": T0}));
        assert_eq!(both.lead_id(), "u");
        assert_eq!(both.anonymous_id.as_deref(), Some("a"));
        let anon = ok(json!({"event": "E", "anonymousId": "a", "timestamp": T0}));
        assert_eq!(anon.lead_id(), "a");
        assert_eq!(anon.user_id, None);
        let null_user =
            ok(json!({"event": "E", "userId": null, "anonymousId": "a", "timestamp": T0}));
        assert_eq!(null_user.lead_id(), "a");
    }

    #[test]
    fn identity_is_required() {
        assert_eq!(
            err(json!({"event": "E", "timestamp": T0})),
            "userId: a call needs `userId` or `anonymousId`"
        );
        assert_eq!(
            err(json!({"event": "E", "userId": null, "anonymousId": null, "timestamp": T0})),
            "userId: a call needs `userId` or `anonymousId`"
        );
    }

    #[test]
    fn integer_user_id_becomes_a_string() {
        let call = ok(json!({"event": "E", "userId": 42, "timestamp": T0}));
        assert_eq!(call.user_id.as_deref(), Some("42"));
        assert_eq!(call.lead_id(), "42");
        let call = ok(json!({"event": "E", "userId": -7, "timestamp": T0}));
        assert_eq!(call.lead_id(), "-7");
        let call = ok(json!({"event": "E", "userId": u64::MAX, "timestamp": T0}));
        assert_eq!(call.lead_id(), "18446744073709551615");
    }

    #[test]
    fn bad_ids_are_rejected() {
        assert_eq!(
            err(json!({"event": "E", "userId": 4.5, "timestamp": T0})),
            "userId: must be a string or an integer, found a non-integer number"
        );
        assert_eq!(
            err(json!({"event": "E", "userId": true, "timestamp": T0})),
            "userId: must be a string or an integer, found a boolean"
        );
        assert_eq!(
            err(json!({"event": "E", "userId": "", "anonymousId": "a", "timestamp": T0})),
            "userId: must not be empty"
        );
        assert_eq!(
            err(json!({"event": "E", "anonymousId": {"id": 1}, "timestamp": T0})),
            "anonymousId: must be a string or an integer, found an object"
        );
    }

    // ---- kind-specific fields ----

    #[test]
    fn identify_uses_traits() {
        let call = ok(
            json!({"type": "identify", "userId": "u", "anonymousId": "a",
                             "timestamp": T0, "traits": {"email": "x@y.z", "employees": "120", "gone": null},
                             "properties": {"ignored": 1}}),
        );
        assert_eq!(
            Value::from(call.event.properties),
            json!({"email": "x@y.z", "employees": "120", "gone": null})
        );
        assert_eq!(call.user_id.as_deref(), Some("u"));
        assert_eq!(call.anonymous_id.as_deref(), Some("a"));
    }

    /// A call with device times only is placed by the time of receipt, corrected for the
    /// device's clock (SPEC §8): a device 1 hour slow that queued a call for 10 minutes.
    #[test]
    fn device_times_are_corrected_for_the_device_clock() {
        let now = parse_rfc3339("2026-03-01T12:00:00Z").unwrap();
        let online = |v: Value| normalize_call(&v, "", &TimePolicy::ReceivedAt(now));
        let call = online(json!({"type": "track", "event": "E", "userId": "u",
            "originalTimestamp": "2026-03-01T10:50:00Z", "sentAt": "2026-03-01T11:00:00Z"}))
        .unwrap();
        assert_eq!(format_rfc3339(call.event.time), "2026-03-01T11:50:00Z");
        // a timestamp wins; offline there is no time of receipt to correct with
        let call = online(json!({"type": "track", "event": "E", "userId": "u",
            "timestamp": "2026-03-01T09:00:00Z", "originalTimestamp": "2026-03-01T10:50:00Z",
            "sentAt": "2026-03-01T11:00:00Z"}))
        .unwrap();
        assert_eq!(format_rfc3339(call.event.time), "2026-03-01T09:00:00Z");
        let call = ok(json!({"type": "track", "event": "E", "userId": "u",
            "originalTimestamp": "2026-03-01T10:50:00Z", "sentAt": "2026-03-01T11:00:00Z"}));
        assert_eq!(format_rfc3339(call.event.time), "2026-03-01T10:50:00Z");
        // each time is checked and named
        let e = online(json!({"type": "track", "event": "E", "userId": "u",
            "originalTimestamp": "2026-03-01T10:50:00Z", "sentAt": 5}))
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "sentAt: not an RFC 3339 time: expected a string, found a number"
        );
        // sent before it happened, by more than the 5 minutes allowed ahead
        let e = online(json!({"type": "track", "event": "E", "userId": "u",
            "originalTimestamp": "2026-03-01T11:00:00Z", "sentAt": "2026-03-01T10:00:00Z"}))
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "originalTimestamp: more than 5 minutes in the future"
        );
    }

    /// RudderStack's libraries send identify and group traits in `context.traits`: taken
    /// when `traits` is absent (or null), never over it (SPEC §8).
    #[test]
    fn identify_and_group_take_context_traits_when_traits_is_absent() {
        let c = ok(json!({"type": "identify", "userId": "u", "timestamp": T0,
                          "context": {"traits": {"email": "x@y.z"}}}));
        assert_eq!(c.event.properties.get("email"), Some(&json!("x@y.z")));
        let c = ok(
            json!({"type": "group", "userId": "u", "groupId": "g", "timestamp": T0,
                          "traits": null, "context": {"traits": {"employees": 120}}}),
        );
        assert_eq!(c.event.properties.get("employees"), Some(&json!(120)));
        let c = ok(json!({"type": "identify", "userId": "u", "timestamp": T0,
                          "traits": {"plan": "pro"}, "context": {"traits": {"plan": "free"}}}));
        assert_eq!(c.event.properties.get("plan"), Some(&json!("pro")));
        assert_eq!(
            err(json!({"type": "identify", "userId": "u", "timestamp": T0,
                       "context": {"traits": "vip"}})),
            "context.traits: must be an object, found a string"
        );
    }

    #[test]
    fn identify_needs_traits() {
        assert_eq!(
            err(json!({"type": "identify", "userId": "u", "timestamp": T0})),
            "traits: an identify call needs `traits` (an object), or `context.traits`"
        );
        assert_eq!(
            err(json!({"type": "identify", "userId": "u", "timestamp": T0, "traits": null})),
            "traits: an identify call needs `traits` (an object), or `context.traits`"
        );
        assert_eq!(
            err(json!({"type": "identify", "userId": "u", "timestamp": T0, "traits": []})),
            "traits: must be an object, found an array"
        );
    }

    #[test]
    fn group_call() {
        let call = ok(json!({"type": "group", "userId": "u", "groupId": "acme",
                             "timestamp": T0, "traits": {"employees": 120}}));
        assert_eq!(call.group_id.as_deref(), Some("acme"));
        assert_eq!(
            Value::from(call.event.properties),
            json!({"employees": 120})
        );
        let call = ok(json!({"type": "group", "userId": "u", "groupId": 7,
                             "timestamp": T0, "traits": {}}));
        assert_eq!(call.group_id.as_deref(), Some("7"));
    }

    #[test]
    fn group_needs_group_id_and_traits() {
        assert_eq!(
            err(json!({"type": "group", "userId": "u", "timestamp": T0, "traits": {}})),
            "groupId: a group call needs `groupId`"
        );
        assert_eq!(
            err(json!({"type": "group", "userId": "u", "groupId": "g", "timestamp": T0})),
            "traits: a group call needs `traits` (an object), or `context.traits`"
        );
        assert_eq!(
            err(
                json!({"type": "group", "userId": "u", "groupId": ["g"], "timestamp": T0, "traits": {}})
            ),
            "groupId: must be a string or an integer, found an array"
        );
    }

    #[test]
    fn alias_call() {
        let call = ok(
            json!({"type": "alias", "userId": "u", "previousId": "anon-1",
                             "timestamp": T0, "properties": {"ignored": true}}),
        );
        assert_eq!(call.previous_id.as_deref(), Some("anon-1"));
        assert_eq!(call.lead_id(), "u");
        assert!(call.event.properties.is_empty());
        assert_eq!(call.event.name, "");
    }

    #[test]
    fn a_rudderstack_merge_call_is_an_alias_of_its_one_other_id() {
        let call = ok(json!({"type": "merge", "userId": "u", "timestamp": T0,
            "mergeProperties": [{"type": "user_id", "value": "u"},
                                {"type": "anonymous_id", "value": "anon-7"}]}));
        assert_eq!(call.event.kind, CallKind::Alias);
        assert_eq!(call.previous_id.as_deref(), Some("anon-7"));
        assert_eq!(call.lead_id(), "u");
        assert_eq!(
            err(json!({"type": "merge", "userId": "u", "timestamp": T0})),
            "mergeProperties: a merge call needs `mergeProperties`"
        );
        assert_eq!(
            err(json!({"type": "merge", "userId": "u", "timestamp": T0,
                "mergeProperties": [{"type": "email", "value": "a@x.com"},
                                    {"type": "mobile", "value": "+1"}]})),
            "mergeProperties[1].value: a merge call merges one id into its `userId`; send one merge call per id"
        );
        assert_eq!(
            err(json!({"type": "merge", "userId": "u", "timestamp": T0,
                "mergeProperties": [{"type": "email"}]})),
            "mergeProperties[0].value: a merge property needs a `value`"
        );
        assert_eq!(
            err(json!({"type": "merge", "userId": "u", "timestamp": T0,
                "mergeProperties": [{"type": "user_id", "value": "u"}]})),
            "mergeProperties: a merge call needs an id other than its `userId` in `mergeProperties`"
        );
        assert_eq!(
            err(json!({"type": "merge", "anonymousId": "a", "timestamp": T0,
                "mergeProperties": [{"type": "email", "value": "a@x.com"}]})),
            "userId: a merge call needs `userId`"
        );
    }

    #[test]
    fn alias_needs_previous_id_and_user_id() {
        assert_eq!(
            err(json!({"type": "alias", "userId": "u", "timestamp": T0})),
            "previousId: an alias call needs `previousId`"
        );
        assert_eq!(
            err(json!({"type": "alias", "anonymousId": "a", "previousId": "p", "timestamp": T0})),
            "userId: an alias call needs `userId`"
        );
        assert_eq!(
            err(json!({"type": "alias", "userId": "u", "previousId": "", "timestamp": T0})),
            "previousId: must not be empty"
        );
    }

    #[test]
    fn properties_must_be_an_object() {
        assert_eq!(
            err(json!({"event": "E", "userId": "u", "timestamp": T0, "properties": "x"})),
            "properties: must be an object, found a string"
        );
        assert_eq!(
            err(json!({"type": "page", "userId": "u", "timestamp": T0, "properties": [1]})),
            "properties: must be an object, found an array"
        );
        let call = ok(json!({"event": "E", "userId": "u", "timestamp": T0}));
        assert!(call.event.properties.is_empty());
        let call = ok(json!({"event": "E", "userId": "u", "timestamp": T0, "properties": null}));
        assert!(call.event.properties.is_empty());
    }

    #[test]
    fn values_are_kept_as_typed() {
        let props = json!({"price": "120", "qty": 120, "ratio": 1.5, "ok": false,
                           "tags": ["a", 1], "nested": {"x": null}});
        let call =
            ok(json!({"event": "E", "userId": "u", "timestamp": T0, "properties": props.clone()}));
        assert_eq!(Value::from(call.event.properties), props);
    }

    #[test]
    fn page_call_properties_and_name() {
        let call = ok(
            json!({"type": "page", "userId": "u", "timestamp": T0, "name": "Pricing",
                             "properties": {"path": "/pricing", "url": "https://x.io/pricing",
                                            "title": "Pricing", "referrer": "", "search": "?a=1"}}),
        );
        assert_eq!(call.event.kind, CallKind::Page);
        assert_eq!(call.event.name, "");
        assert_eq!(
            Value::from(call.event.properties),
            json!({"path": "/pricing", "url": "https://x.io/pricing", "title": "Pricing",
                   "referrer": "", "search": "?a=1", "name": "Pricing"})
        );
    }

    #[test]
    fn page_name_does_not_override_property() {
        let call = ok(
            json!({"type": "page", "userId": "u", "timestamp": T0, "name": "Top",
                             "properties": {"name": "Inner"}}),
        );
        assert_eq!(call.event.properties["name"], json!("Inner"));
    }

    #[test]
    fn page_name_only_and_bad_name() {
        let call = ok(json!({"type": "page", "userId": "u", "timestamp": T0, "name": "Home"}));
        assert_eq!(Value::from(call.event.properties), json!({"name": "Home"}));
        assert_eq!(
            err(json!({"type": "page", "userId": "u", "timestamp": T0, "name": 3})),
            "name: must be a string, found a number"
        );
        let call = ok(json!({"type": "page", "userId": "u", "timestamp": T0, "name": null}));
        assert!(call.event.properties.is_empty());
    }

    #[test]
    fn screen_call_gets_name_too() {
        let call = ok(
            json!({"type": "screen", "userId": "u", "timestamp": T0, "name": "Settings",
                             "properties": {"tab": 2}}),
        );
        assert_eq!(call.event.kind, CallKind::Screen);
        assert_eq!(
            Value::from(call.event.properties),
            json!({"tab": 2, "name": "Settings"})
        );
    }

    #[test]
    fn track_ignores_top_level_name() {
        let call = ok(json!({"event": "E", "userId": "u", "timestamp": T0, "name": "x"}));
        assert!(call.event.properties.is_empty());
    }

    // ---- time ----

    #[test]
    fn time_field_precedence() {
        let base = json!({"event": "E", "userId": "u"});
        let fields = [
            ("timestamp", "2026-01-01T01:00:00Z"),
            ("originalTimestamp", "2026-01-01T02:00:00Z"),
            ("sentAt", "2026-01-01T03:00:00Z"),
            ("receivedAt", "2026-01-01T04:00:00Z"),
        ];
        for skip in 0..fields.len() {
            let mut value = base.clone();
            for (key, at) in &fields[skip..] {
                value[*key] = json!(at);
            }
            let call = ok(value);
            assert_eq!(format_rfc3339(call.event.time), fields[skip].1);
        }
    }

    #[test]
    fn null_time_fields_are_skipped() {
        let call = ok(json!({"event": "E", "userId": "u", "timestamp": null,
                             "originalTimestamp": null, "sentAt": "2026-01-01T03:00:00Z"}));
        assert_eq!(format_rfc3339(call.event.time), "2026-01-01T03:00:00Z");
    }

    #[test]
    fn time_with_offset_and_fraction() {
        let call =
            ok(json!({"event": "E", "userId": "u", "timestamp": "2026-01-01T10:00:00.5+01:00"}));
        assert_eq!(format_rfc3339(call.event.time), "2026-01-01T09:00:00.5Z");
    }

    #[test]
    fn bad_time_names_the_field() {
        assert_eq!(
            err(json!({"event": "E", "userId": "u", "timestamp": "2026-01-01"})),
            "timestamp: not an RFC 3339 time"
        );
        // the first present field is used, even when a later one would parse
        assert_eq!(
            err(
                json!({"event": "E", "userId": "u", "originalTimestamp": "yesterday",
                       "sentAt": T0})
            ),
            "originalTimestamp: not an RFC 3339 time"
        );
        assert_eq!(
            err(json!({"event": "E", "userId": "u", "sentAt": 1767258000})),
            "sentAt: not an RFC 3339 time: expected a string, found a number"
        );
    }

    #[test]
    fn missing_time_required_vs_received_at() {
        let value = json!({"event": "E", "userId": "u"});
        assert_eq!(
            err(value.clone()),
            "timestamp: a call needs a `timestamp` (or `originalTimestamp`, `sentAt`, `receivedAt`)"
        );
        let call = normalize_call(&value, "", &TimePolicy::ReceivedAt(t0())).unwrap();
        assert_eq!(call.event.time, t0());
    }

    #[test]
    fn future_time_is_rejected_online_only() {
        let now = t0();
        let at = |secs: i64| format_rfc3339(now + secs * SECOND);
        // exactly 5 minutes ahead: accepted
        let call = normalize_call(
            &json!({"event": "E", "userId": "u", "timestamp": at(300)}),
            "",
            &TimePolicy::ReceivedAt(now),
        )
        .unwrap();
        assert_eq!(call.event.time, now + 300 * SECOND);
        // just over: rejected
        assert_eq!(
            err_online(
                json!({"event": "E", "userId": "u", "timestamp": format_rfc3339(now + 300 * SECOND + 1)}),
                now
            ),
            "timestamp: more than 5 minutes in the future"
        );
        assert_eq!(
            err_online(
                json!({"event": "E", "userId": "u", "sentAt": at(3600)}),
                now
            ),
            "sentAt: more than 5 minutes in the future"
        );
        // the past is fine
        let call = normalize_call(
            &json!({"event": "E", "userId": "u", "timestamp": at(-86400 * 365)}),
            "",
            &TimePolicy::ReceivedAt(now),
        )
        .unwrap();
        assert_eq!(call.event.time, now - 86400 * 365 * SECOND);
        // offline: no limit
        let call = ok(json!({"event": "E", "userId": "u", "timestamp": "2099-01-01T00:00:00Z"}));
        assert_eq!(format_rfc3339(call.event.time), "2099-01-01T00:00:00Z");
    }

    // ---- messageId ----

    #[test]
    fn message_id_is_kept() {
        let call = ok(json!({"event": "E", "userId": "u", "timestamp": T0, "messageId": "abc"}));
        assert_eq!(call.message_id, "abc");
    }

    #[test]
    fn message_id_must_be_a_non_empty_string() {
        assert_eq!(
            err(json!({"event": "E", "userId": "u", "timestamp": T0, "messageId": 12})),
            "messageId: must be a string, found a number"
        );
        assert_eq!(
            err(json!({"event": "E", "userId": "u", "timestamp": T0, "messageId": ""})),
            "messageId: must not be empty"
        );
    }

    #[test]
    fn missing_message_id_is_a_hash_of_the_canonical_call() {
        let value = json!({"event": "E", "userId": "u", "timestamp": T0,
                           "properties": {"b": 1, "a": [{"z": 1, "y": "\"q\"\n"}]}});
        let call = ok(value.clone());
        let canonical = r#"{"event":"E","properties":{"a":[{"y":"\"q\"\n","z":1}],"b":1},"timestamp":"2026-01-01T09:00:00Z","userId":"u"}"#;
        let expected = format!("h:{}", hex::encode(Sha256::digest(canonical.as_bytes())));
        assert_eq!(call.message_id, expected);
        assert_eq!(call.message_id.len(), 2 + 64);
        // a null messageId counts as absent
        let mut with_null = value;
        with_null["messageId"] = Value::Null;
        assert_ne!(ok(with_null).message_id, expected); // the null is part of the call as received
    }

    #[test]
    fn message_id_hash_is_stable_across_key_order() {
        let a = r#"{"userId":"u","event":"E","timestamp":"2026-01-01T09:00:00Z","properties":{"x":1,"y":{"q":2,"p":[3,{"m":1,"l":2}]}}}"#;
        let b = r#"{"properties":{"y":{"p":[3,{"l":2,"m":1}],"q":2},"x":1},"timestamp":"2026-01-01T09:00:00Z","event":"E","userId":"u"}"#;
        let call_a = parse_body(a, &TimePolicy::Required)
            .unwrap()
            .remove(0)
            .unwrap();
        let call_b = parse_body(b, &TimePolicy::Required)
            .unwrap()
            .remove(0)
            .unwrap();
        assert_eq!(call_a.message_id, call_b.message_id);
        assert!(call_a.message_id.starts_with("h:"));
        // a different value gives a different key; so does a different type
        let c = a.replace(r#""x":1"#, r#""x":2"#);
        let d = a.replace(r#""x":1"#, r#""x":"1""#);
        let call_c = parse_body(&c, &TimePolicy::Required)
            .unwrap()
            .remove(0)
            .unwrap();
        let call_d = parse_body(&d, &TimePolicy::Required)
            .unwrap()
            .remove(0)
            .unwrap();
        assert_ne!(call_a.message_id, call_c.message_id);
        assert_ne!(call_a.message_id, call_d.message_id);
        assert_ne!(call_c.message_id, call_d.message_id);
    }

    #[test]
    fn message_id_hash_does_not_depend_on_batch_position_or_receipt_time() {
        let call = json!({"event": "E", "userId": "u"});
        let lone = normalize_call(&call, "", &TimePolicy::ReceivedAt(t0())).unwrap();
        let later = normalize_call(
            &call,
            "batch[5]",
            &TimePolicy::ReceivedAt(t0() + 60 * SECOND),
        )
        .unwrap();
        assert_eq!(lone.message_id, later.message_id);
    }

    #[test]
    fn canonical_json_matches_serde_json_on_sorted_values() {
        let value = json!({"z": [1, 2.5, -3, 1e300, null, true, false],
                           "a": {"ü": "é\u{1}\u{7f}\t\r\u{8}\u{c}/\\", "b": {}},
                           "m": [], "k": "😀"});
        let mut canonical = String::new();
        write_canonical(&value, &mut canonical);
        // serde_json's own map is a sorted BTreeMap in this workspace (no preserve_order)
        assert_eq!(canonical, serde_json::to_string(&value).unwrap());
        let reparsed: Value = serde_json::from_str(&canonical).unwrap();
        assert_eq!(reparsed, value);
    }

    // ---- context / source ----

    #[test]
    fn source_from_campaign() {
        let call = ok(json!({"event": "E", "userId": "u", "timestamp": T0,
                             "context": {"campaign": {"source": "google", "medium": "cpc"}}}));
        assert_eq!(call.event.source.as_deref(), Some("google"));
        for context in [
            json!({}),
            json!({"campaign": {}}),
            json!({"campaign": {"source": 5}}),
            json!({"campaign": "google"}),
            json!({"campaign": {"source": null}}),
        ] {
            let call =
                ok(json!({"event": "E", "userId": "u", "timestamp": T0, "context": context}));
            assert_eq!(call.event.source, None);
        }
    }

    #[test]
    fn context_must_be_an_object() {
        assert_eq!(
            err(json!({"event": "E", "userId": "u", "timestamp": T0, "context": "web"})),
            "context: must be an object, found a string"
        );
        let call = ok(json!({"event": "E", "userId": "u", "timestamp": T0, "context": null}));
        assert_eq!(call.event.source, None);
    }

    // ---- bodies and batches ----

    #[test]
    fn lone_call_body() {
        let results = normalize_body(
            &json!({"event": "E", "userId": "u", "timestamp": T0}),
            &TimePolicy::Required,
        )
        .unwrap();
        assert_eq!(results.len(), 1);
        assert_eq!(results[0].as_ref().unwrap().event.name, "E");
        // a bad lone call is a per-call error with an unprefixed path
        let results =
            normalize_body(&json!({"event": "E", "userId": "u"}), &TimePolicy::Required).unwrap();
        assert_eq!(results[0].as_ref().unwrap_err().path, "timestamp");
    }

    #[test]
    fn batch_reports_each_call_with_its_index() {
        let body = json!({"batch": [
            {"event": "A", "userId": "u", "timestamp": T0},
            {"type": "identify", "userId": "u", "timestamp": T0},
            {"event": "B", "anonymousId": "a", "timestamp": T0, "messageId": "m2"},
            {"event": "C", "userId": "u", "timestamp": "not a time"},
            7
        ]});
        let results = normalize_body(&body, &TimePolicy::Required).unwrap();
        assert_eq!(results.len(), 5);
        assert_eq!(results[0].as_ref().unwrap().event.name, "A");
        assert_eq!(
            results[1].as_ref().unwrap_err().to_string(),
            "batch[1].traits: an identify call needs `traits` (an object), or `context.traits`"
        );
        assert_eq!(results[2].as_ref().unwrap().message_id, "m2");
        assert_eq!(
            results[3].as_ref().unwrap_err().to_string(),
            "batch[3].timestamp: not an RFC 3339 time"
        );
        let e = results[4].as_ref().unwrap_err();
        assert_eq!(e.path, "batch[4]");
        assert_eq!(e.message, "a call must be a JSON object, found a number");
    }

    #[test]
    fn batch_paths_for_nested_fields() {
        let body = json!({"batch": [
            {"type": "foo", "userId": "u", "timestamp": T0},
            {"event": "E", "timestamp": T0},
            {"event": "E", "userId": "u", "timestamp": T0, "properties": 1},
        ]});
        let results = normalize_body(&body, &TimePolicy::Required).unwrap();
        let paths: Vec<_> = results
            .iter()
            .map(|r| r.as_ref().unwrap_err().path.clone())
            .collect();
        assert_eq!(
            paths,
            ["batch[0].type", "batch[1].userId", "batch[2].properties"]
        );
    }

    #[test]
    fn batch_future_time_online() {
        let body = json!({"batch": [
            {"event": "E", "userId": "u", "timestamp": "2026-01-01T10:00:00Z"},
            {"event": "E", "userId": "u"}
        ]});
        let results = normalize_body(&body, &TimePolicy::ReceivedAt(t0())).unwrap();
        assert_eq!(
            results[0].as_ref().unwrap_err().to_string(),
            "batch[0].timestamp: more than 5 minutes in the future"
        );
        assert_eq!(results[1].as_ref().unwrap().event.time, t0());
    }

    #[test]
    fn empty_batch_is_rejected() {
        let e = normalize_body(&json!({"batch": []}), &TimePolicy::Required).unwrap_err();
        assert_eq!(e.path, "batch");
        assert_eq!(e.to_string(), "batch: a batch needs at least one call");
    }

    #[test]
    fn batch_must_be_an_array() {
        let e =
            normalize_body(&json!({"batch": {"event": "E"}}), &TimePolicy::Required).unwrap_err();
        assert_eq!(e.path, "batch");
        assert_eq!(e.message, "must be an array of calls, found an object");
        let e = normalize_body(&json!({"batch": null}), &TimePolicy::Required).unwrap_err();
        assert_eq!(e.message, "must be an array of calls, found null");
    }

    #[test]
    fn body_must_be_an_object() {
        for body in [json!([]), json!("x"), json!(1), json!(null)] {
            let e = normalize_body(&body, &TimePolicy::Required).unwrap_err();
            assert_eq!(e.path, "");
            assert!(
                e.message
                    .starts_with("a request body must be a JSON object"),
                "{e}"
            );
        }
    }

    #[test]
    fn parse_body_reports_invalid_json_with_position() {
        let e =
            parse_body("{\"event\": \"E\",\n  \"userId\": }", &TimePolicy::Required).unwrap_err();
        assert_eq!(e.path, "");
        assert!(e.message.contains("line 2 column"), "{e}");
        assert!(!e.message.ends_with('.'));
        let e = parse_body("", &TimePolicy::Required).unwrap_err();
        assert!(e.message.contains("EOF"), "{e}");
    }

    #[test]
    fn parse_body_batch() {
        let text = r#"{"batch":[{"event":"E","userId":"u","timestamp":"2026-01-01T09:00:00Z"},
                                {"event":"E","userId":"u","timestamp":"x"}]}"#;
        let results = parse_body(text, &TimePolicy::Required).unwrap();
        assert!(results[0].is_ok());
        assert_eq!(
            results[1].as_ref().unwrap_err().to_string(),
            "batch[1].timestamp: not an RFC 3339 time"
        );
    }

    // ---- serde of Call ----

    #[test]
    fn call_round_trips_through_serde() {
        let call = ok(
            json!({"type": "group", "userId": 9, "anonymousId": "a", "groupId": "g",
                             "timestamp": T0, "traits": {"n": 1},
                             "context": {"campaign": {"source": "ads"}}}),
        );
        let text = serde_json::to_string(&call).unwrap();
        let back: Call = serde_json::from_str(&text).unwrap();
        assert_eq!(back, call);
        // absent ids are left out
        let call = ok(json!({"event": "E", "anonymousId": "a", "timestamp": T0}));
        let text = serde_json::to_value(&call).unwrap();
        assert!(text.get("user_id").is_none());
        assert!(text.get("previous_id").is_none());
    }

    #[test]
    fn lead_id_without_ids_is_empty() {
        let mut call = ok(json!({"event": "E", "anonymousId": "a", "timestamp": T0}));
        call.anonymous_id = None;
        assert_eq!(call.lead_id(), "");
    }
}
