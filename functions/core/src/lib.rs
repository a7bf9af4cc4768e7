//! leadscore-core: the path of a call through leadscore, one module per stage.
//!
//! - [`ingest`]: Segment JSON in, normalised calls out (SPEC §1);
//! - [`pipeline`]: what one call does to its lead, between loading it and committing it;
//!   every store runs it (SPEC §3, §5, §7);
//! - [`store`]: where leads live: in memory ([`store::engine`], [`store::memory`]) or in
//!   DynamoDB ([`store::dynamo`], with [`store::published`] rules);
//! - [`api`]: the HTTP API over a store (SPEC §6), for `score` and `serve`;
//! - [`output`]: the replay contract's JSON (SPEC §4); [`rules`]: loading the rules.
//!
//! The wire format shared with `notify` is `leadscore-wire`; the rules language is
//! `leadscore-rules`; report, rule tests and explain are `leadscore-tools`.

pub mod api;
pub mod encoding;
#[cfg(feature = "dynamodb")]
pub mod function;
pub mod ingest;
pub mod output;
pub mod pipeline;
pub mod rules;
pub mod store;
