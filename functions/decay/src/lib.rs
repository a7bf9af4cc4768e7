//! The `decay` function (SPEC §6): on each scheduled tick at time T, the leads that time
//! passing can change (found through the sparse `due` index, not a scan) decay to T and have
//! their stages evaluated; new transitions go to the outbox like any other.

use leadscore_core::api::StoreError;
use leadscore_core::store::dynamo::{now_micros, DynamoStore, TickReport};
use leadscore_rules::time::{parse_rfc3339, Micros};
use serde_json::{json, Value};

/// The tick's time: the scheduled event's `time` (EventBridge schedules carry one), else
/// now.
pub fn tick_time(event: &Value) -> Micros {
    event
        .get("time")
        .and_then(Value::as_str)
        .and_then(parse_rfc3339)
        .unwrap_or_else(now_micros)
}

/// Ticks the due leads for one scheduled event; the answer summarises what was done.
pub async fn handle(store: &DynamoStore, event: &Value) -> Result<Value, StoreError> {
    let at = tick_time(event);
    let TickReport {
        visited,
        committed,
        notifications,
        failed,
    } = store.tick_due(at).await?;
    tracing::info!(visited, committed, notifications, failed, "tick");
    Ok(json!({
        "at": leadscore_rules::time::format_rfc3339(at),
        "visited": visited,
        "committed": committed,
        "notifications": notifications,
        "failed": failed,
    }))
}
