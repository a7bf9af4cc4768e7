//! A byte scanner for the calls the fast path sees most: one call per body or line, strings
//! without escapes. It reads the envelope in one pass, borrowing every string, and skips
//! what no one reads while still checking it is JSON.
//!
//! It gives up (`None`) on anything else: escapes, integer ids, `null` in a known field,
//! numbers with exponents, deep nesting, a repeated field. Giving up is always safe: the
//! caller then takes the `serde` fast path, and after it the exact path, which owns every
//! error message. Whatever it accepts, `serde_json` accepts too and reads the same (tests
//! below and in `fast` hold it to that).

use crate::ingest::raw::{Campaign, Context, RawCall, Text};
use compact_str::CompactString;
use leadscore_rules::program::{Keys, Reads};
use leadscore_rules::Properties;
use serde_json::Value;
use std::borrow::Cow;

/// Nesting deeper than this gives up (`serde_json` stops at 128).
const MAX_DEPTH: usize = 64;

/// A number token longer than this gives up (`serde_json` may find it out of range).
const MAX_NUMBER: usize = 40;

struct Scan<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Scan<'a> {
    fn new(text: &'a str) -> Self {
        Scan {
            text,
            bytes: text.as_bytes(),
            at: 0,
        }
    }

    /// The next byte that is not JSON whitespace (not consumed).
    #[inline]
    fn peek(&mut self) -> Option<u8> {
        // compact JSON has no whitespace: the next byte is the one
        if let Some(&c) = self.bytes.get(self.at) {
            if c > b' ' {
                return Some(c);
            }
        }
        while let Some(&c) = self.bytes.get(self.at) {
            if matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
                self.at += 1;
            } else {
                return Some(c);
            }
        }
        None
    }

    /// Consumes `c` (after whitespace).
    #[inline]
    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.at += 1)
    }

    /// A string without escapes or control characters, borrowed from the text.
    #[inline(always)]
    fn str(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.at;
        let rest = self.bytes.get(start..)?;
        let len = string_end(rest)?;
        if *rest.get(len)? != b'"' {
            return None;
        }
        self.at = start + len + 1;
        self.text.get(start..start + len)
    }

    /// A number token, checked against the JSON grammar; no exponent.
    fn number(&mut self) -> Option<&'a str> {
        self.peek()?;
        let start = self.at;
        let digits = |s: &mut Self| {
            let from = s.at;
            while s.bytes.get(s.at).is_some_and(u8::is_ascii_digit) {
                s.at += 1;
            }
            s.at - from
        };
        if self.bytes.get(self.at) == Some(&b'-') {
            self.at += 1;
        }
        match self.bytes.get(self.at) {
            Some(b'0') => self.at += 1,
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => return None,
        }
        if self.bytes.get(self.at) == Some(&b'.') {
            self.at += 1;
            if digits(self) == 0 {
                return None;
            }
        }
        if matches!(self.bytes.get(self.at), Some(b'e' | b'E')) || self.at - start > MAX_NUMBER {
            return None;
        }
        self.text.get(start..self.at)
    }

    /// Consumes a literal (`true`, `false`, `null`).
    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.at.checked_add(word.len())?;
        (self.bytes.get(self.at..end)? == word).then(|| self.at = end)
    }

    /// Skips one value, checking it; returns its text.
    fn skip(&mut self, depth: usize) -> Option<&'a str> {
        let first = self.peek()?;
        let start = self.at;
        match first {
            b'"' => {
                self.str()?;
            }
            b'{' => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                self.object(|s, _| s.skip(depth + 1).map(drop))?;
            }
            b'[' => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                self.at += 1;
                if self.peek()? == b']' {
                    self.at += 1;
                } else {
                    loop {
                        self.skip(depth + 1)?;
                        if self.after_member(b']')? {
                            break;
                        }
                    }
                }
            }
            b't' => self.literal(b"true")?,
            b'f' => self.literal(b"false")?,
            b'n' => self.literal(b"null")?,
            _ => {
                self.number()?;
            }
        }
        self.text.get(start..self.at)
    }

    /// After a member or element: `,` (more follow: false) or the closing byte (true).
    #[inline]
    fn after_member(&mut self, close: u8) -> Option<bool> {
        match self.peek()? {
            b',' => {
                self.at += 1;
                Some(false)
            }
            c if c == close => {
                self.at += 1;
                Some(true)
            }
            _ => None,
        }
    }

    /// One value, owned, as `serde_json` reads it.
    fn value(&mut self) -> Option<Value> {
        match self.peek()? {
            b'"' => Some(Value::String(self.str()?.to_owned())),
            b't' => self.literal(b"true").map(|()| Value::Bool(true)),
            b'f' => self.literal(b"false").map(|()| Value::Bool(false)),
            b'n' => self.literal(b"null").map(|()| Value::Null),
            // numbers, objects and arrays: checked here, built by serde_json itself, except
            // small non-negative integers, which serde_json reads as these same `u64`s
            _ => {
                let token = self.skip(0)?;
                if token.len() <= 18 && token.bytes().all(|c| c.is_ascii_digit()) {
                    token.parse::<u64>().ok().map(Value::from)
                } else {
                    serde_json::from_str(token).ok()
                }
            }
        }
    }

    /// Members of an object: calls `member(self, key)` with the value next to be read; it
    /// must consume it.
    fn object(&mut self, mut member: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        if self.peek()? == b'}' {
            self.at += 1;
            return Some(());
        }
        loop {
            let key = self.str()?;
            self.eat(b':')?;
            member(self, key)?;
            if self.after_member(b'}')? {
                return Some(());
            }
        }
    }

    /// Whether only whitespace is left.
    fn at_end(&mut self) -> bool {
        self.peek().is_none()
    }
}

/// Where the first `"`, `\\` or control character is: sixteen bytes at a time while sixteen
/// are left, then eight at a time ([`string_end_in_words`]).
#[inline]
fn string_end(bytes: &[u8]) -> Option<usize> {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        use safe_arch::{
            bitor_m128i, cmp_eq_mask_i8_m128i, load_unaligned_m128i, min_u8_m128i,
            move_mask_i8_m128i, set_splat_i8_m128i,
        };
        #[allow(clippy::cast_possible_wrap)]
        let (quote, slash, control) = (
            set_splat_i8_m128i(b'"' as i8),
            set_splat_i8_m128i(b'\\' as i8),
            set_splat_i8_m128i(0x1f),
        );
        let mut at = 0;
        while let Some(chunk) = bytes
            .get(at..at + 16)
            .and_then(|c| <&[u8; 16]>::try_from(c).ok())
        {
            let x = load_unaligned_m128i(chunk);
            // a control character is one that the minimum with 0x1f leaves as it is
            let stops = bitor_m128i(
                bitor_m128i(
                    cmp_eq_mask_i8_m128i(x, quote),
                    cmp_eq_mask_i8_m128i(x, slash),
                ),
                cmp_eq_mask_i8_m128i(min_u8_m128i(x, control), x),
            );
            let mask = move_mask_i8_m128i(stops);
            if mask != 0 {
                return Some(at + mask.trailing_zeros() as usize);
            }
            at += 16;
        }
        string_end_in_words(bytes.get(at..)?).map(|p| at + p)
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    string_end_in_words(bytes)
}

/// [`string_end`] eight bytes at a time: in each 8-byte word, the lowest byte flagged by
/// the zero-byte test is always a true match.
#[inline]
fn string_end_in_words(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let flags = |x: u64| {
        let quote = x ^ (ONES * u64::from(b'"'));
        let slash = x ^ (ONES * u64::from(b'\\'));
        let zero = |v: u64| v.wrapping_sub(ONES) & !v;
        (zero(quote) | zero(slash) | (x.wrapping_sub(ONES * 0x20) & !x)) & HIGH
    };
    let mut words = bytes.chunks_exact(8);
    let mut at = 0;
    for word in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        let found = flags(u64::from_le_bytes(w));
        if found != 0 {
            return Some(at + (found.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    words
        .remainder()
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
        .map(|p| at + p)
}

/// Sets a field read once; a repeated field gives up, as `serde` refuses it.
#[inline]
fn once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(value);
    Some(())
}

/// One call (a body or line that is a single JSON object), or `None` to let `serde` decide.
///
/// When the call's `type` comes before its `properties` or `traits`, the object is read
/// straight into the keys the call will keep (`reads`, all without it), in the same pass;
/// otherwise its text is kept for [`crate::ingest::fast`] to read once the type is known.
pub(crate) fn call<'a>(text: &'a str, reads: Option<&Reads>) -> Option<RawCall<'a>> {
    let mut s = Scan::new(text);
    let mut raw = RawCall::default();
    let mut projected = None;
    s.object(|s, key| match key {
        "type" => once(&mut raw.ty, text_field(s)?),
        "action" => once(&mut raw.action, text_field(s)?),
        "event" => once(&mut raw.event, text_field(s)?),
        "name" => once(&mut raw.name, text_field(s)?),
        "userId" => once(&mut raw.user_id, Text(text_field(s)?)),
        "anonymousId" => once(&mut raw.anonymous_id, Text(text_field(s)?)),
        "previousId" => once(&mut raw.previous_id, Text(text_field(s)?)),
        "groupId" => once(&mut raw.group_id, Text(text_field(s)?)),
        "messageId" => once(&mut raw.message_id, text_field(s)?),
        "timestamp" => once(&mut raw.timestamp, text_field(s)?),
        "originalTimestamp" => once(&mut raw.original_timestamp, text_field(s)?),
        "sentAt" => once(&mut raw.sent_at, text_field(s)?),
        "receivedAt" => once(&mut raw.received_at, text_field(s)?),
        "properties" | "traits" => {
            if s.peek()? != b'{' {
                return None;
            }
            let traits = key == "traits";
            // the keys this object keeps, when the type already says it is the one read
            let keys = match (raw.ty.as_deref(), traits) {
                (Some("track" | "page" | "screen"), false) => Some(reads.map(|r| &r.properties)),
                (Some("identify"), true) => Some(reads.map(|r| &r.traits)),
                (Some("group"), true) => Some(reads.map(|r| &r.company)),
                _ => None,
            };
            let slot = if traits {
                &mut raw.traits
            } else {
                &mut raw.properties
            };
            match keys {
                Some(keys) => {
                    // a projected object still counts as given, for a repeated key
                    once(slot, "")?;
                    once(&mut projected, s.project(1, keys)?)
                }
                None => once(slot, s.skip(0)?),
            }
        }
        "context" => once(&mut raw.context, context(s)?),
        "batch" => None,
        _ => s.skip(0).map(drop),
    })?;
    raw.projected = projected;
    s.at_end().then_some(raw)
}

/// A string field, borrowed.
fn text_field<'a>(s: &mut Scan<'a>) -> Option<Cow<'a, str>> {
    s.str().map(Cow::Borrowed)
}

/// `context`, of which only `campaign.source` is read (as its text).
fn context<'a>(s: &mut Scan<'a>) -> Option<Context<'a>> {
    let mut campaign = None;
    s.object(|s, key| match key {
        "campaign" => {
            let mut source = None;
            s.object(|s, key| match key {
                "source" => once(&mut source, s.skip(2)?),
                _ => s.skip(1).map(drop),
            })?;
            once(&mut campaign, Campaign { source })
        }
        _ => s.skip(1).map(drop),
    })?;
    Some(Context { campaign })
}

/// The object `text` holds, keeping only `keys` (all without keys); `None` to let `serde`
/// decide.
pub(crate) fn project(text: &str, keys: Option<&Keys>) -> Option<Properties> {
    let mut s = Scan::new(text);
    let out = s.project(0, keys)?;
    s.at_end().then_some(out)
}

impl Scan<'_> {
    /// The object next in the text (at nesting `depth`), keeping only `keys` (all without
    /// keys).
    fn project(&mut self, depth: usize, keys: Option<&Keys>) -> Option<Properties> {
        let mut out = Vec::new();
        self.object(|s, key| {
            if keys.is_none_or(|k| k.contains(key)) {
                if out.capacity() == 0 {
                    // room for an ordinary object at once, rather than growing into it
                    out = Vec::with_capacity(4);
                }
                out.push((CompactString::from(key), s.value()?));
                Some(())
            } else {
                s.skip(depth + 1).map(drop)
            }
        })?;
        // sorted once; a repeated key keeps its last value, as `serde_json::Map` does
        Some(out.into_iter().collect())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CALL: &str = r#"{"messageId":"m1","userId":"u1","timestamp":"2026-01-01T00:00:00Z","type":"track","event":"Order Completed","properties":{"revenue":480,"items":[{"sku":"a","n":-1.5}],"ok":true,"none":null,"empty":{},"list":[]},"context":{"campaign":{"source":"google","medium":"cpc"},"ip":"1.2.3.4"},"extra":[1,{"a":false}]}"#;

    #[test]
    fn reads_an_ordinary_call() {
        let raw = call(CALL, None).expect("scanned");
        assert_eq!(raw.ty.as_deref(), Some("track"));
        assert_eq!(raw.event.as_deref(), Some("Order Completed"));
        assert_eq!(raw.user_id.map(|t| t.0).as_deref(), Some("u1"));
        assert_eq!(raw.message_id.as_deref(), Some("m1"));
        assert_eq!(
            raw.context.and_then(|c| c.campaign).and_then(|c| c.source),
            Some(r#""google""#)
        );
        // the type came first: the properties were read in the same pass
        assert_eq!(raw.properties, Some(""));
        let expected: Value = serde_json::from_str(CALL).unwrap();
        assert_eq!(
            Value::from(raw.projected.expect("projected")),
            expected["properties"]
        );
    }

    #[test]
    fn keeps_the_text_of_properties_that_come_before_the_type() {
        let text = r#"{"messageId":"m1","userId":"u1","timestamp":"2026-01-01T00:00:00Z","properties":{"a":1,"b":[2]},"event":"E","type":"track"}"#;
        let raw = call(text, None).expect("scanned");
        assert!(raw.projected.is_none());
        let props = project(raw.properties.expect("properties"), None).expect("projected");
        let expected: Value = serde_json::from_str(text).unwrap();
        assert_eq!(Value::from(props), expected["properties"]);
    }

    #[test]
    fn projects_only_the_keys_asked_for() {
        let keys = Keys::Some(["revenue", "none"].into_iter().collect());
        let text = r#"{"revenue":1,"url":"x","revenue":2.25,"none":null}"#;
        let map = project(text, Some(&keys)).expect("projected");
        assert_eq!(
            Value::from(map),
            serde_json::json!({"revenue": 2.25, "none": null})
        );
    }

    #[test]
    fn reads_numbers_as_serde_json_does() {
        let text = r#"{"z":0,"n":480,"max":999999999999999999,"big":18446744073709551615,"over":18446744073709551616,"neg":-3,"f":1.5,"g":0.1,"h":-0.0}"#;
        let map = project(text, None).expect("projected");
        let expected: Value = serde_json::from_str(text).unwrap();
        assert_eq!(Value::from(map.clone()), expected);
        // the same representation, not only equal values: integers stay integers
        for (key, value) in &map {
            let Value::Number(n) = value else {
                panic!("{key}")
            };
            let e = expected[key].as_number().unwrap();
            assert_eq!(
                (n.is_u64(), n.is_i64(), n.is_f64()),
                (e.is_u64(), e.is_i64(), e.is_f64()),
                "{key}"
            );
        }
    }

    #[test]
    fn gives_up_on_what_it_does_not_read_itself() {
        for text in [
            r#"{"type":"track","userId":"u\"1"}"#, // an escape
            r#"{"type":"track","userId":7}"#,      // an integer id
            r#"{"type":null}"#,                    // null in a known field
            r#"{"type":"track","type":"page"}"#,   // a repeated field
            r#"{"x":1e400}"#,                      // an exponent
            r#"{"batch":[]}"#,                     // a batch
            r#"{"properties":[1]}"#,               // properties not an object
            r#"{"context":"x"}"#,                  // context not an object
            r#"{"context":{"campaign":{"source":1,"source":2}}}"#,
        ] {
            assert!(call(text, None).is_none(), "{text}");
        }
    }

    #[test]
    fn refuses_what_is_not_json() {
        for text in [
            "",
            "{",
            "}",
            "[]",
            "{}x",
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":-}"#,
            r#"{"a":.5}"#,
            r#"{"a":tru}"#,
            r#"{"a":nul}"#,
            r#"{"a":[1,]}"#,
            r#"{"a":[1 2]}"#,
            r#"{"a":{"b":1}"#,
            "{\"a\":\"x\ty\"}",
            r#"{"a":"x}"#,
            r#"{"a":1}{"b":2}"#,
            r#"{,"a":1}"#,
            r#"{"a":+1}"#,
        ] {
            assert!(call(text, None).is_none(), "{text}");
            assert!(
                serde_json::from_str::<Value>(text).is_err() || text == "[]",
                "{text}"
            );
        }
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(100), "]".repeat(100));
        assert!(call(&deep, None).is_none());
    }

    proptest! {
        /// The searches sixteen and eight bytes at a time find what a byte-at-a-time one
        /// does, wherever the first stop is (stops are rare, so most runs cross chunks).
        #[test]
        fn string_end_finds_the_first_stop(bytes in prop::collection::vec(
            prop_oneof![
                40 => prop::sample::select(vec![b'a', 0x20, 0x21, 0x7f, 0x80, 0xff, 0x22 ^ 0x80, 0x5c ^ 0x80]),
                1 => prop::sample::select(vec![b'"', b'\\', 0x1f, 0x00, 0x0a]),
            ],
            0..80,
        )) {
            let simple = bytes.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20);
            prop_assert_eq!(string_end_in_words(&bytes), simple);
            prop_assert_eq!(string_end(&bytes), simple);
        }
    }

    /// Turns a byte position into a valid cut of `text`.
    fn boundary(text: &str, at: usize) -> usize {
        let mut at = at.min(text.len());
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        at
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        /// Whatever the scanner accepts, serde_json accepts, and both read the same call.
        #[test]
        fn accepts_only_what_serde_json_reads_the_same(
            at in 0usize..400,
            cut in 0usize..4,
            insert in prop::sample::select(vec!["", "\"", "{", "}", "[", "]", ",", ":", "1", "-",
                ".", "e", "null", "x", " ", "\\", "\u{1}", "\"a\":1,", "é"]),
        ) {
            let at = boundary(CALL, at);
            let end = boundary(CALL, at + cut);
            let text = format!("{}{}{}", &CALL[..at], insert, &CALL[end..]);
            if let Some(raw) = call(&text, None) {
                let value: Value = serde_json::from_str(&text).expect("serde_json accepts it");
                let serde: crate::ingest::raw::RawCall<'_> = serde_json::from_str(&text).expect("serde reads it");
                prop_assert_eq!(raw.ty.as_deref(), serde.ty.as_deref());
                prop_assert_eq!(raw.event.as_deref(), serde.event.as_deref());
                prop_assert_eq!(raw.message_id.as_deref(), serde.message_id.as_deref());
                prop_assert_eq!(raw.timestamp.as_deref(), serde.timestamp.as_deref());
                prop_assert_eq!(raw.user_id.map(|t| t.0), serde.user_id.map(|t| t.0));
                prop_assert_eq!(
                    raw.context.and_then(|c| c.campaign).and_then(|c| c.source),
                    serde.context.and_then(|c| c.campaign).and_then(|c| c.source)
                );
                match (raw.properties, serde.properties) {
                    (Some(""), Some(_)) => {
                        let map = raw.projected.expect("projected with the type known");
                        prop_assert_eq!(Value::from(map), value["properties"].clone());
                    }
                    (Some(p), Some(q)) => {
                        let map = project(p, None).expect("properties scanned");
                        prop_assert_eq!(Value::from(map), value["properties"].clone());
                        prop_assert_eq!(p, q);
                    }
                    (p, q) => prop_assert_eq!(p, q),
                }
            }
        }
    }
}
