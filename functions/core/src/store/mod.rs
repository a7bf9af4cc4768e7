//! Where leads live, behind the [`crate::api::LeadStore`] trait: the embedded [`engine`]
//! (every lead in memory with its kept calls; `replay`, and the stores [`memory`] and
//! [`journal`], `serve`'s, with its journal and [`outbox`] on disk) and `dynamo` (one DynamoDB table; the
//! functions), with the rules `published` in the table (those two with the `dynamodb`
//! feature, on by default). All run the same [`crate::pipeline`] between loading a lead and
//! committing it.

#[cfg(feature = "dynamodb")]
pub mod capacity;
#[cfg(feature = "dynamodb")]
pub mod dynamo;
pub mod engine;
pub mod journal;
mod keytable;
pub mod memory;
pub mod outbox;
#[cfg(feature = "dynamodb")]
pub mod published;
