//! leadscore-core: event normalisation (Segment spec), lead state, the embedded engine, and the
//! replay contract. Stateful parts live here; the rules language stays pure in
//! `leadscore-rules`.

pub mod api;
pub mod dynamo;
pub mod engine;
mod fast;
mod keytable;
pub mod memory;
pub mod output;
pub mod pipeline;
pub mod published;
pub mod rules;
mod scan;
pub mod segment;
