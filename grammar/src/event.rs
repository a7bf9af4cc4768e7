//! The event the evaluator sees: one normalised Segment call, stripped of transport details.
//!
//! `leadscore-core` turns webhook JSON into these; the evaluator never sees raw JSON envelopes.

use crate::time::Micros;
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
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The event time (microseconds since the epoch).
    pub time: Micros,
    /// `properties` of track/page/screen (page: Segment's page properties plus `name`),
    /// `traits` of identify/group; empty for alias.
    #[serde(default)]
    pub properties: Map<String, Value>,
    /// `context.campaign.source`, when the call has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}
