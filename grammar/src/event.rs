//! The event the evaluator sees: one normalised Segment call, stripped of transport details.
//!
//! `leadscore-core` turns webhook JSON into these; the evaluator never sees raw JSON envelopes.

use crate::time::Micros;
use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The kind of a Segment call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallKind {
    /// `track`: a named event with properties.
    Track,
    /// `identify`: traits of the person.
    Identify,
    /// `page`: a page view; the event `page`.
    Page,
    /// `screen`: a mobile screen view; the event `screen`.
    Screen,
    /// `group`: traits of the person's company, merged under `company`.
    Group,
    /// `alias`: links a previous id to the user id.
    Alias,
}

impl CallKind {
    /// The Segment name of the call type.
    pub fn as_str(self) -> &'static str {
        match self {
            CallKind::Track => "track",
            CallKind::Identify => "identify",
            CallKind::Page => "page",
            CallKind::Screen => "screen",
            CallKind::Group => "group",
            CallKind::Alias => "alias",
        }
    }

    /// Whether calls of this kind can match an event pattern (track, page, screen).
    pub fn is_behaviour(self) -> bool {
        matches!(self, CallKind::Track | CallKind::Page | CallKind::Screen)
    }
}

/// One normalised call, as the evaluator sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The call type.
    pub kind: CallKind,
    /// The event name of a track call; empty for other kinds.
    #[serde(default, skip_serializing_if = "CompactString::is_empty")]
    pub name: CompactString,
    /// The event time (microseconds since the epoch).
    pub time: Micros,
    /// `properties` of track/page/screen (page: Segment's page properties plus `name`),
    /// `traits` of identify/group; empty for alias.
    #[serde(default)]
    pub properties: Properties,
    /// `context.campaign.source`, when the call has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<CompactString>,
}

/// The properties (or traits) of one event, or a lead's profile: each key once, in key order, exactly as a
/// `serde_json::Map` holds them, and serialized the same way.
///
/// A sorted vector rather than a map: an event has a handful of properties, often only the
/// few the rules read, and one small allocation holds them all where a `Map` allocates a
/// B-tree node of several hundred bytes. Keys of up to 24 bytes (nearly all of them) are held
/// in the entries themselves. Finding a key is a binary search over them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Properties {
    entries: Vec<(CompactString, Value)>,
}

/// What [`Properties`] gives for a missing key when indexed, as `serde_json` does.
static NULL: Value = Value::Null;

impl Properties {
    /// No properties.
    pub const fn new() -> Self {
        Properties {
            entries: Vec::new(),
        }
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries as places in memory, for prefetch hints: getting them reads none of
    /// them.
    pub fn places(&self) -> &[impl Sized] {
        &self.entries
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        self.entries.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }

    /// The value of `key`.
    #[inline]
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.find(key).ok().map(|i| &self.entries[i].1)
    }

    /// The value of `key`, set to `value()` first when it is missing.
    pub fn get_or_insert_with(&mut self, key: &str, value: impl FnOnce() -> Value) -> &mut Value {
        let i = match self.find(key) {
            Ok(i) => i,
            Err(i) => {
                self.entries.insert(i, (key.into(), value()));
                i
            }
        };
        &mut self.entries[i].1
    }

    /// Whether `key` is there.
    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    /// Sets `key`; returns the value it replaces.
    pub fn insert(&mut self, key: String, value: Value) -> Option<Value> {
        self.set(key.into(), value)
    }

    /// [`Properties::insert`] of a key already held as the entries hold keys.
    fn set(&mut self, key: CompactString, value: Value) -> Option<Value> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                self.entries.insert(i, (key, value));
                None
            }
        }
    }

    /// Sets each key of `traits`, or removes it when its value is `null` (how traits
    /// update a profile). One pass over both when `traits` is large, so merging any number
    /// of keys costs their sum, not their product.
    pub fn merge_traits(&mut self, traits: &Properties) {
        if traits.len() <= 8 {
            for (k, v) in &traits.entries {
                if v.is_null() {
                    self.remove(k);
                } else {
                    self.set(k.clone(), v.clone());
                }
            }
            return;
        }
        let old = std::mem::take(&mut self.entries);
        let mut merged = Vec::with_capacity(old.len() + traits.len());
        let mut old = old.into_iter().peekable();
        for (k, v) in &traits.entries {
            while let Some(entry) = old.next_if(|(o, _)| o < k) {
                merged.push(entry);
            }
            old.next_if(|(o, _)| o == k);
            if !v.is_null() {
                merged.push((k.clone(), v.clone()));
            }
        }
        merged.extend(old);
        self.entries = merged;
    }

    /// Takes `key` out; returns its value.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        self.find(key).ok().map(|i| self.entries.remove(i).1)
    }

    /// Keeps only the properties for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &mut Value) -> bool) {
        self.entries.retain_mut(|(k, v)| keep(k, v));
    }

    /// The properties in key order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&str, &Value)> + ExactSizeIterator {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The keys in order.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &str> + ExactSizeIterator {
        self.entries.iter().map(|(k, _)| k.as_str())
    }

    /// The same properties as a JSON object.
    pub fn into_map(self) -> Map<String, Value> {
        self.entries
            .into_iter()
            .map(|(k, v)| (k.into_string(), v))
            .collect()
    }
}

impl From<Map<String, Value>> for Properties {
    fn from(map: Map<String, Value>) -> Self {
        // a map iterates in key order, each key once
        Properties {
            entries: map.into_iter().map(|(k, v)| (k.into(), v)).collect(),
        }
    }
}

impl From<Properties> for Value {
    fn from(p: Properties) -> Self {
        Value::Object(p.into_map())
    }
}

impl FromIterator<(String, Value)> for Properties {
    /// A key given twice keeps its last value, as a `Map` does.
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(iter: I) -> Self {
        iter.into_iter()
            .map(|(k, v)| (CompactString::from(k), v))
            .collect()
    }
}

impl FromIterator<(CompactString, Value)> for Properties {
    /// A key given twice keeps its last value, as a `Map` does. Sorts once: building from
    /// any number of keys in any order costs `n log n`.
    fn from_iter<I: IntoIterator<Item = (CompactString, Value)>>(iter: I) -> Self {
        let mut entries: Vec<(CompactString, Value)> = iter.into_iter().collect();
        // most objects come with a few keys, often already in order: nothing to do
        if entries.windows(2).all(|w| w[0].0 < w[1].0) {
            return Properties { entries };
        }
        // stable: equal keys stay in the order given, and the last one is kept
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        // of a run of equal keys, the last value stays, in the first one's place
        entries.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                std::mem::swap(later, kept);
            }
            same
        });
        Properties { entries }
    }
}

impl IntoIterator for Properties {
    type Item = (CompactString, Value);
    type IntoIter = std::vec::IntoIter<(CompactString, Value)>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl<'a> IntoIterator for &'a Properties {
    type Item = (&'a str, &'a Value);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (CompactString, Value)>,
        fn(&'a (CompactString, Value)) -> (&'a str, &'a Value),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }
}

impl std::ops::Index<&str> for Properties {
    type Output = Value;
    /// The value of a key, `null` when it is missing (as indexing a `serde_json::Value`).
    fn index(&self, key: &str) -> &Value {
        self.get(key).unwrap_or(&NULL)
    }
}

impl Serialize for Properties {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.entries.len()))?;
        for (k, v) in &self.entries {
            map.serialize_entry(k.as_str(), v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Properties {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Map::<String, Value>::deserialize(deserializer).map(Properties::from)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i32>().prop_map(Value::from),
            "[a-z]{0,4}".prop_map(Value::from),
        ]
    }

    proptest! {
        /// Any sequence of inserts and removes leaves the same properties as a `Map`, in
        /// the same order, serialized the same way.
        #[test]
        fn behaves_as_a_map(ops in proptest::collection::vec(("[a-e]{1,2}", value(), any::<bool>()), 0..40)) {
            let mut map = Map::new();
            let mut props = Properties::new();
            for (k, v, remove) in ops {
                if remove {
                    prop_assert_eq!(map.remove(&k), props.remove(&k));
                } else {
                    prop_assert_eq!(map.insert(k.clone(), v.clone()), props.insert(k, v));
                }
                prop_assert_eq!(map.len(), props.len());
            }
            for (k, v) in &map {
                prop_assert_eq!(props.get(k), Some(v));
            }
            prop_assert_eq!(serde_json::to_string(&map).unwrap(), serde_json::to_string(&props).unwrap());
            prop_assert_eq!(Properties::from(map.clone()), props.clone());
            prop_assert_eq!(props.into_map(), map);
        }

        /// Building from pairs in any order, and merging traits of any size, give what a
        /// `Map` gives.
        #[test]
        fn builds_and_merges_as_a_map(
            pairs in proptest::collection::vec(("[a-j]{1,2}", value()), 0..40),
            traits in proptest::collection::vec(("[a-j]{1,2}", value()), 0..40),
        ) {
            let map: Map<String, Value> = pairs.iter().cloned().collect();
            let mut props: Properties = pairs.into_iter().collect();
            prop_assert_eq!(props.clone().into_map(), map.clone());
            let traits: Properties = traits.into_iter().collect();
            let mut expected = map;
            for (k, v) in &traits {
                if v.is_null() {
                    expected.remove(k);
                } else {
                    expected.insert(k.to_owned(), v.clone());
                }
            }
            props.merge_traits(&traits);
            prop_assert_eq!(props.into_map(), expected);
        }
    }

    #[test]
    fn deserializes_as_a_map_does() {
        let p: Properties = serde_json::from_str(r#"{"b":1,"a":2,"b":3}"#).unwrap();
        assert_eq!(p.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(p["b"], json!(3));
        assert_eq!(p["missing"], Value::Null);
        assert_eq!(Value::from(p), json!({"a": 2, "b": 3}));
    }
}
