//! leadscore-wire: what crosses between the functions and the tools outside them, defined
//! once. The notification message and the outbox item that carries it (written by `score`,
//! `decay` and the rescore, read by `notify`), and webhook signatures: Standard Webhooks
//! (signed by `notify`, verified by `score` and `serve`) and Segment's `X-Signature`, with
//! one reading of secrets.

pub mod message;
pub mod signature;

pub use message::{
    lead_pk, notification_id, undelivered_shard, Kind, Message, OutboxNote, RulesRef, NOTE_PREFIX,
    UNDELIVERED_INDEX, UNDELIVERED_SHARDS,
};
pub use signature::{
    sign, signed_headers, standard_key, verify_segment, verify_standard, webhook_key,
    SignatureError, SIGNATURE_TOLERANCE_SECONDS,
};
