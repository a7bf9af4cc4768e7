//! Where leads live, behind the [`crate::api::LeadStore`] trait: the embedded [`engine`]
//! (every lead in memory with its kept calls; `replay`, and `serve` through [`memory`]) and
//! [`dynamo`] (one DynamoDB table; the functions), with the rules [`published`] in the table.
//! Both run the same [`crate::pipeline`] between loading a lead and committing it.

pub mod dynamo;
pub mod engine;
mod keytable;
pub mod memory;
pub mod published;
