//! A fast path for parsing Segment calls: typed deserialisation that borrows the envelope's
//! strings instead of building a `serde_json::Value` tree for the whole call.
//!
//! It only ever produces the result for a well-formed call. Anything unusual (a missing or
//! hashed `messageId`, a wrong type, a bad time, an empty batch, duplicate keys) makes it
//! give up, and the caller takes the exact path in `segment`, which owns every error
//! message. A test checks that both paths agree.

use crate::ingest::call::{Call, LineCalls, TimePolicy, MAX_FUTURE};
use crate::ingest::raw::{MapOnly, RawBatch, RawCall, Text};
use compact_str::CompactString;
use leadscore_rules::event::{CallKind, Event, Properties};
use leadscore_rules::program::{Keys, Reads};
use leadscore_rules::time::parse_rfc3339;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess};
use serde::de::{Deserializer, Visitor};
use serde_json::Value;
use std::fmt;

/// Reads an object into a map, keeping only the keys a program can read (all of them
/// without a program); the values of other keys are skipped, never built.
struct Project<'k>(Option<&'k Keys>);

impl<'de> DeserializeSeed<'de> for Project<'_> {
    type Value = Properties;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Project<'_> {
    type Value = Properties;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            if self.0.is_none_or(|keys| keys.contains(&key)) {
                let value: Value = map.next_value()?;
                out.push((CompactString::from(key), value));
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        // sorted once; a repeated key keeps its last value, as `serde_json::Map` does
        Ok(out.into_iter().collect())
    }
}

/// The object `raw` holds (an empty one when absent), cut to `keys`; `None` when it is not
/// an object.
fn project(raw: Option<&str>, keys: Option<&Keys>) -> Option<Properties> {
    let Some(raw) = raw else {
        return Some(Properties::new());
    };
    if let Some(map) = crate::ingest::scan::project(raw, keys) {
        return Some(map);
    }
    let mut de = serde_json::Deserializer::from_str(raw);
    Project(keys).deserialize(&mut de).ok()
}

/// The string a JSON value's text holds (`Some(None)` for a value of another kind); `None`
/// when the text does not read as JSON.
fn string_text(text: &str) -> Option<Option<CompactString>> {
    if !text.contains('\\') {
        let inner = text.strip_prefix('"').and_then(|t| t.strip_suffix('"'));
        return Some(inner.map(CompactString::from));
    }
    match serde_json::from_str::<Value>(text).ok()? {
        Value::String(s) => Some(Some(CompactString::from(s))),
        _ => Some(None),
    }
}

fn non_empty(id: Option<Text<'_>>) -> Option<Option<CompactString>> {
    match id {
        None => Some(None),
        Some(Text(s)) if s.is_empty() => None,
        Some(Text(s)) => Some(Some(CompactString::from(s))),
    }
}

/// Builds the call, or `None` to let the exact path decide.
fn finish(raw: RawCall<'_>, policy: &TimePolicy, reads: Option<&Reads>) -> Option<Call> {
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
    let message_id = CompactString::from(raw.message_id.filter(|m| !m.is_empty())?);
    // device times only, online: corrected for the device's clock on the exact path
    let device_times =
        raw.timestamp.is_none() && raw.original_timestamp.is_some() && raw.sent_at.is_some();
    if device_times && matches!(policy, TimePolicy::ReceivedAt(_)) {
        return None;
    }
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
    let source = match raw.context.and_then(|c| c.campaign).and_then(|c| c.source) {
        Some(text) => string_text(text)?,
        None => None,
    };
    let mut name = CompactString::default();
    let mut previous_id = None;
    let mut group_id = None;
    let projected = raw.projected;
    let project = |text: Option<&str>, keys: Option<&Keys>| match projected {
        Some(p) => Some(p),
        None => project(text, keys),
    };
    let properties = match kind {
        CallKind::Track => {
            name = CompactString::from(raw.event.filter(|e| !e.is_empty())?);
            project(raw.properties, reads.map(|r| &r.properties))?
        }
        CallKind::Page | CallKind::Screen => {
            let keys = reads.map(|r| &r.properties);
            let mut properties = project(raw.properties, keys)?;
            if let Some(page_name) = raw.name {
                if keys.is_none_or(|k| k.contains("name")) {
                    properties.get_or_insert_with("name", || Value::String(page_name.into_owned()));
                }
            }
            properties
        }
        CallKind::Identify => project(Some(raw.traits?), reads.map(|r| &r.traits))?,
        CallKind::Group => {
            group_id = Some(non_empty(raw.group_id)??);
            project(Some(raw.traits?), reads.map(|r| &r.company))?
        }
        CallKind::Alias => {
            previous_id = Some(non_empty(raw.previous_id)??);
            user_id.as_ref()?;
            Properties::new()
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

/// The calls of one request body or line, or `None` when the exact path must decide. With
/// `reads`, properties and traits keep only the keys the program can read. A lone call is
/// held inline.
pub(crate) fn parse_line(
    text: &str,
    policy: &TimePolicy,
    reads: Option<&Reads>,
) -> Option<LineCalls> {
    // the scanner gives up on a `batch` key, so a line it reads is never a batch; a call it
    // reads that does not normalise goes to the exact path, which says why
    if let Some(raw) = crate::ingest::scan::call(text, reads) {
        return Some(smallvec::smallvec![Ok(finish(raw, policy, reads)?)]);
    }
    // `serde_json` checks the strings it skips (and keeps as raw text) more loosely than
    // the ones it reads: a lone UTF-16 surrogate (`\ud800`) passes there, and the exact path
    // refuses it. The scanner gives up on any escape, so only this path needs the check.
    if has_surrogate_escape(text) {
        return None;
    }
    if text.contains("\"batch\"") {
        let batch: MapOnly<RawBatch<'_>> = serde_json::from_str(text).ok()?;
        if batch.0.batch.is_empty() {
            return None;
        }
        return batch
            .0
            .batch
            .into_iter()
            .map(|c| finish(c.0, policy, reads).map(Ok))
            .collect();
    }
    let raw: MapOnly<RawCall<'_>> = serde_json::from_str(text).ok()?;
    Some(smallvec::smallvec![Ok(finish(raw.0, policy, reads)?)])
}

/// Whether the text holds an escape of a UTF-16 surrogate (`\uD800` to `\uDFFF`, or
/// anything that looks like one: a false alarm only costs the exact path).
fn has_surrogate_escape(text: &str) -> bool {
    text.as_bytes()
        .windows(3)
        .any(|w| w[0] == b'\\' && w[1] == b'u' && (w[2] | 0x20) == b'd')
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::ingest::call::CallError;

    /// [`parse_line`] as a vector, as the exact path gives calls.
    fn parse_body(
        text: &str,
        policy: &TimePolicy,
        reads: Option<&Reads>,
    ) -> Option<Vec<Result<Call, CallError>>> {
        parse_line(text, policy, reads).map(smallvec::SmallVec::into_vec)
    }
    use crate::ingest::call::SECOND_FOR_TESTS;
    use proptest::prelude::*;

    use crate::ingest::exact_path as exact;

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
            Just(
                serde_json::json!({"campaign": {"source": "a \"quoted\" source", "medium": "cpc"}})
            ),
            Just(serde_json::json!({"campaign": {"source": 7}})),
            Just(serde_json::json!({"campaign": {"source": null}})),
            Just(serde_json::json!({"campaign": {"source": {"name": "x"}}})),
            Just(serde_json::json!({"campaign": "x"})),
        ];
        proptest::option::of(values.prop_map(move |v| (key.to_string(), v)))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// Whenever the fast path answers, it answers exactly what the exact path does; and
        /// `parse_line_reading` answers what `parse_body_reading` does.
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
            let mut call = serde_json::Map::new();
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
            line_reads_as_body(&text, &policy);
            if let Some(fast) = parse_body(&text, &policy, None) {
                let slow = exact(&text, &policy).expect("the exact path accepts what the fast path accepts");
                prop_assert_eq!(fast, slow.clone());
                let reads = some_reads();
                let cut_fast = parse_body(&text, &policy, Some(&reads)).expect("projection keeps the fast path");
                prop_assert_eq!(cut_fast, cut(slow, &reads));
            }
        }
    }

    /// A body read as one line gives the calls and errors it gives as a body (with and
    /// without `reads`); returns how many calls it has.
    fn line_reads_as_body(text: &str, policy: &TimePolicy) -> usize {
        let mut n = 0;
        for reads in [None, Some(some_reads())] {
            let line = crate::ingest::parse_line_reading(text, policy, reads.as_ref());
            let body = crate::ingest::parse_body_reading(text, policy, reads.as_ref());
            n = body.as_ref().map_or(0, Vec::len);
            assert_eq!(line.map(smallvec::SmallVec::into_vec), body, "{text}");
        }
        n
    }

    #[test]
    fn a_line_reads_as_the_same_body() {
        let lines = [
            // the scanner reads it: one call
            (
                r#"{"type":"track","event":"X","userId":"u1","messageId":"m1","timestamp":"2026-01-01T09:00:00Z","properties":{"path":"/a","url":"x"}}"#,
                1,
            ),
            // the properties before the type, an escape: read by the slower paths
            (
                r#"{"properties":{"path":"/a"},"type":"page","userId":"u1","messageId":"m1","timestamp":"2026-01-01T09:00:00Z"}"#,
                1,
            ),
            (
                r#"{"type":"track","event":"X\u0041","userId":"u1","messageId":"m1","timestamp":"2026-01-01T09:00:00Z"}"#,
                1,
            ),
            // a batch, one of whose calls is rejected
            (
                r#"{"batch":[{"type":"track","event":"X","userId":"u1","messageId":"m1","timestamp":"2026-01-01T09:00:00Z"},{"type":"track","event":"X","userId":"u1"}]}"#,
                2,
            ),
            // a call the scanner reads but that does not normalise; not JSON at all
            (
                r#"{"type":"track","event":"X","userId":"u1","messageId":"m1"}"#,
                1,
            ),
            (r#"{"type":"track","#, 0),
        ];
        for (text, calls) in lines {
            assert_eq!(
                line_reads_as_body(text, &TimePolicy::Required),
                calls,
                "{text}"
            );
        }
        // the first is read by the scanner, and its call is held in the line itself
        let line = crate::ingest::parse_line_reading(lines[0].0, &TimePolicy::Required, None);
        assert!(!line.expect("read").spilled());
    }

    /// `reads` that keep `path` and `name` of events, `plan` and `company` of the profile
    /// and `employees` of the company.
    fn some_reads() -> Reads {
        let keys = |k: &[&str]| Keys::Some(k.iter().map(|k| Box::<str>::from(*k)).collect());
        Reads {
            properties: keys(&["path", "name"]),
            traits: keys(&["plan", "company"]),
            company: keys(&["employees"]),
        }
    }

    /// The exact path's calls, cut to `reads` by hand.
    fn cut(calls: Vec<Result<Call, CallError>>, reads: &Reads) -> Vec<Result<Call, CallError>> {
        calls
            .into_iter()
            .map(|c| {
                c.map(|mut call| {
                    let keys = match call.event.kind {
                        CallKind::Identify => &reads.traits,
                        CallKind::Group => &reads.company,
                        _ => &reads.properties,
                    };
                    call.event.properties.retain(|k, _| keys.contains(k));
                    call
                })
            })
            .collect()
    }

    #[test]
    fn keeps_only_the_keys_the_program_reads() {
        let reads = some_reads();
        for text in [
            r#"{"type":"page","userId":"u1","messageId":"m1","timestamp":"2026-01-01T09:00:00Z","name":"Pricing","properties":{"path":"/pricing","url":"https://x","big":{"a":[1,2,{"b":null}]}}}"#,
            r#"{"type":"page","userId":"u1","messageId":"m1","timestamp":"2026-01-01T09:00:00Z","name":"Pricing","properties":{"path":"/a","path":"/b"}}"#,
            r#"{"type":"track","event":"X","userId":"u1","messageId":"m1","timestamp":"2026-01-01T09:00:00Z","properties":{"u\u0072l":"x","p\u0061th":"/esc"}}"#,
            r#"{"type":"identify","userId":"u1","messageId":"m1","timestamp":"2026-01-01T09:00:00Z","traits":{"plan":"trial","email":"a@b","employees":5,"company":{"name":"Acme"}}}"#,
            r#"{"traits":{"employees":120,"plan":"x","name":"Acme"},"type":"group","groupId":"g1","userId":"u1","messageId":"m1","timestamp":"2026-01-01T09:00:00Z"}"#,
            r#"{"type":"track","event":"X","userId":"u1","messageId":"m1","timestamp":"2026-01-01T09:00:00Z"}"#,
            // the type before the object (read in the scanner's pass) and after it
            r#"{"type":"group","groupId":"g1","userId":"u1","messageId":"m1","timestamp":"2026-01-01T09:00:00Z","properties":{"path":"/x"},"traits":{"employees":120,"plan":"x"}}"#,
            r#"{"properties":{"path":"/p","url":"u"},"type":"page","userId":"u1","messageId":"m1","timestamp":"2026-01-01T09:00:00Z"}"#,
            r#"{"type":"track","event":"X","userId":"u1","messageId":"m1","timestamp":"2026-01-01T09:00:00Z","traits":{"plan":"p"},"properties":{"path":"/x","form":"f"}}"#,
            r#"{"type":"identify","userId":"u1","messageId":"m1","timestamp":"2026-01-01T09:00:00Z","properties":{"path":"/x"},"traits":{"plan":"trial","title":"VP"}}"#,
        ] {
            let fast = parse_body(text, &TimePolicy::Required, Some(&reads)).expect("fast path");
            let exact = cut(exact(text, &TimePolicy::Required).unwrap(), &reads);
            assert_eq!(fast, exact, "{text}");
        }
        // not an object: the exact path decides
        let text = r#"{"type":"track","event":"X","userId":"u1","messageId":"m1","timestamp":"2026-01-01T09:00:00Z","properties":[1]}"#;
        assert!(parse_body(text, &TimePolicy::Required, Some(&reads)).is_none());
    }

    #[test]
    fn takes_the_fast_path_for_ordinary_calls() {
        let text = r#"{"type":"page","userId":"u1","messageId":"m1","timestamp":"2026-01-01T09:00:00Z","name":"Pricing","properties":{"path":"/pricing"},"context":{"campaign":{"source":"google"}}}"#;
        let fast = parse_body(text, &TimePolicy::Required, None).expect("fast path");
        assert_eq!(fast, exact(text, &TimePolicy::Required).unwrap());
        let batch = format!(r#"{{"batch":[{text},{text}]}}"#);
        assert_eq!(
            parse_body(&batch, &TimePolicy::Required, None)
                .expect("fast")
                .len(),
            2
        );
    }

    #[test]
    fn reads_the_campaign_source_of_any_kind_as_the_exact_path_does() {
        for (source, expected) in [
            (r#""google""#, Some("google")),
            (r#""a \"quoted\" \u00e9""#, Some("a \"quoted\" é")),
            ("7", None),
            ("null", None),
            (r#"{"name":"x"}"#, None),
            (r#"["google"]"#, None),
        ] {
            let text = format!(
                r#"{{"type":"page","userId":"u1","messageId":"m1","timestamp":"2026-01-01T09:00:00Z","context":{{"campaign":{{"source":{source}}}}}}}"#
            );
            // read by the scanner, and by `serde` (the scanner gives up on an escaped id)
            let escaped = text.replace(r#""u1""#, r#""u\u0031""#);
            // (the scanner gives up on an escaped source too)
            assert_eq!(
                crate::ingest::scan::call(&text, None).is_some(),
                !source.contains('\\')
            );
            assert!(crate::ingest::scan::call(&escaped, None).is_none());
            for text in [text, escaped] {
                let exact = exact(&text, &TimePolicy::Required).unwrap();
                let fast = parse_body(&text, &TimePolicy::Required, None).expect("fast path");
                assert_eq!(fast, exact, "{text}");
                let Ok(call) = &fast[0] else { panic!("{text}") };
                assert_eq!(call.event.source.as_deref(), expected, "{text}");
            }
        }
    }

    #[test]
    fn gives_up_where_serde_reads_more_loosely_than_the_exact_path() {
        let call = r#""type":"track","event":"E","userId":"u1","messageId":"m1","timestamp":"2026-01-01T09:00:00Z""#;
        let array = r#"["track",null,"E","u1",null,null,null,"m1","2026-01-01T09:00:00Z"]"#;
        for text in [
            // a lone surrogate where serde skips a value or keeps its text: invalid JSON
            format!(r#"{{{call},"context":{{"campaign":{{"source":"\ud800"}}}}}}"#),
            format!(r#"{{{call},"context":{{"campaign":{{"source":{{"a":"\udc00"}}}}}}}}"#),
            format!(r#"{{{call},"extra":"\uD800"}}"#),
            format!(r#"{{{call},"properties":{{"dropped":"\ud800"}}}}"#),
            // arrays where the exact path wants objects (serde reads them as structs)
            array.to_string(),
            format!(r#"{{"batch":[{array}]}}"#),
            format!(r#"{{{call},"context":[]}}"#),
            format!(r#"{{{call},"context":{{"campaign":["google"]}}}}"#),
        ] {
            for reads in [None, Some(some_reads())] {
                assert!(
                    parse_body(&text, &TimePolicy::Required, reads.as_ref()).is_none(),
                    "{text}"
                );
            }
            line_reads_as_body(&text, &TimePolicy::Required);
        }
        // the exact path: invalid JSON, not objects, and a campaign without a source
        let reads =
            |text: &str| crate::ingest::parse_body_reading(text, &TimePolicy::Required, None);
        assert!(reads(&format!(r#"{{{call},"extra":"\ud800"}}"#)).is_err());
        assert!(reads(array).is_err());
        let context = reads(&format!(r#"{{{call},"context":[]}}"#)).unwrap();
        assert!(matches!(&context[0], Err(e) if e.path == "context"));
        let campaign = reads(&format!(
            r#"{{{call},"context":{{"campaign":["google"]}}}}"#
        ))
        .unwrap();
        assert!(matches!(&campaign[0], Ok(c) if c.event.source.is_none()));
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
            assert!(
                parse_body(text, &TimePolicy::Required, None).is_none(),
                "{text}"
            );
        }
    }
}
