//! A call's envelope with its strings borrowed ([`RawCall`]): what the fast path reads,
//! either with `serde` (the derives here) or with the byte scanner (`scan`), before it
//! normalises it to a call (`fast`). `properties` and `traits` stay as their JSON text.

use leadscore_rules::event::Properties;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

/// A string, borrowed from the text when it has no escapes, or an integer written as its
/// decimal string: an id (checked non-empty by [`non_empty`]), or an object key.
pub(crate) struct Text<'a>(pub(crate) Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an integer")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_any(TextVisitor)
    }
}

/// The text of a value of any kind, borrowed.
fn raw_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de str>, D::Error> {
    Ok(Option::<&'de RawValue>::deserialize(d)?.map(RawValue::get))
}

/// A struct read only from a JSON object. A derived struct also takes an array (its fields
/// in order), which the exact path refuses: such a call must go there.
pub(crate) struct MapOnly<T>(pub(crate) T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for MapOnly<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(ObjectVisitor(std::marker::PhantomData))
            .map(MapOnly)
    }
}

/// An optional field holding a struct, read only from an object ([`MapOnly`]).
fn object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    Ok(Option::<MapOnly<T>>::deserialize(d)?.map(|m| m.0))
}

/// `context.campaign`, of which only `source` is read.
#[derive(Deserialize, Default)]
pub(crate) struct Campaign<'a> {
    /// The text of `source`, whatever its kind (only a string is a source).
    #[serde(borrow, default, deserialize_with = "raw_text")]
    pub(crate) source: Option<&'a str>,
}

/// `context`, of which only `campaign` is read.
#[derive(Deserialize, Default)]
pub(crate) struct Context<'a> {
    #[serde(borrow, default, deserialize_with = "object")]
    pub(crate) campaign: Option<Campaign<'a>>,
}

/// The envelope of a call, its strings borrowed; `properties` and `traits` as their text.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawCall<'a> {
    #[serde(rename = "type", borrow, default)]
    pub(crate) ty: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) action: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) event: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) user_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub(crate) anonymous_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub(crate) previous_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub(crate) group_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub(crate) message_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) timestamp: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) original_timestamp: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) sent_at: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) received_at: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "raw_text")]
    pub(crate) properties: Option<&'a str>,
    #[serde(borrow, default, deserialize_with = "raw_text")]
    pub(crate) traits: Option<&'a str>,
    #[serde(borrow, default)]
    pub(crate) name: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "object")]
    pub(crate) context: Option<Context<'a>>,
    /// The object the call's type reads (`properties` or `traits`), already cut to the keys
    /// it keeps, when the scanner read it so; its text is then `""`.
    #[serde(skip)]
    pub(crate) projected: Option<Properties>,
}

#[derive(Deserialize)]
pub(crate) struct RawBatch<'a> {
    /// Each call read only from an object.
    #[serde(borrow)]
    pub(crate) batch: Vec<MapOnly<RawCall<'a>>>,
}
