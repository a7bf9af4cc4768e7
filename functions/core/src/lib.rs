//! leadscore-core: event normalisation (Segment spec), lead state, the embedded engine, and the
//! replay contract. Stateful parts live here; the rules language stays pure in
//! `leadscore-rules`.

pub mod engine;
mod fast;
pub mod output;
pub mod rules;
pub mod segment;
