//! The `decay` function (SPEC §6): on each scheduled tick at time T, the leads that time
//! passing can change (found through the sparse `due` index, not a scan) decay to T and have
//! their stages evaluated; new transitions go to the outbox like any other.

use leadscore_core::api::StoreError;
use leadscore_core::ingest::call::MAX_FUTURE;
use leadscore_core::store::dynamo::{now_micros, DynamoStore, TickReport};
use leadscore_rules::time::{format_rfc3339, parse_rfc3339, Micros};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Why a tick did nothing.
#[derive(Debug, thiserror::Error)]
pub enum DecayError {
    /// The event's time is too far ahead of the wall clock: ticking there would decay every
    /// due lead to that time and move its clock past every real event to come.
    #[error("tick time `{at}` is more than 5 minutes ahead of the clock (`{now}`): refused, nothing ticked")]
    FarFuture {
        /// The event's time.
        at: String,
        /// The wall clock.
        now: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The tick's time: the scheduled event's `time` (EventBridge schedules carry one), else
/// `now`. A time more than 5 minutes ahead of `now` is refused, as `score` refuses events.
pub fn tick_time(event: &Value, now: Micros) -> Result<Micros, DecayError> {
    let at = event
        .get("time")
        .and_then(Value::as_str)
        .and_then(parse_rfc3339)
        .unwrap_or(now);
    if at.saturating_sub(now) > MAX_FUTURE {
        return Err(DecayError::FarFuture {
            at: format_rfc3339(at),
            now: format_rfc3339(now),
        });
    }
    Ok(at)
}

/// How long before the invocation's deadline a tick stops starting leads: a lead's tick
/// (a read, perhaps its kept calls, a transaction, retries) ends well within it.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(10);

/// Ticks the due leads for one scheduled event, with no deadline; the answer summarises what
/// was done.
pub async fn handle(store: &DynamoStore, event: &Value) -> Result<Value, DecayError> {
    handle_until(store, event, None).await
}

/// Ticks the due leads for one scheduled event, starting none at or after `until` (the
/// invocation's deadline less [`DEADLINE_MARGIN`]); what is left is due still, and the next
/// tick starts in the shard this one stopped in.
pub async fn handle_until(
    store: &DynamoStore,
    event: &Value,
    until: Option<Instant>,
) -> Result<Value, DecayError> {
    let at = tick_time(event, now_micros())?;
    let report = store.tick_due_until(at, until).await?;
    let TickReport {
        visited,
        committed,
        notifications,
        failed,
        first_shard,
        left,
        stopped_in,
    } = report;
    tracing::info!(
        visited,
        committed,
        notifications,
        failed,
        first_shard,
        left,
        stopped_in,
        "tick"
    );
    // a report of counts and shards: serializing it cannot fail
    let mut answer = json!(report);
    answer["at"] = Value::String(format_rfc3339(at));
    Ok(answer)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_tick_far_ahead_of_the_clock_is_refused() {
        let now = parse_rfc3339("2026-03-01T10:00:00Z").unwrap();
        let at = |t: &str| tick_time(&json!({"time": t}), now);
        assert_eq!(at("2026-03-01T10:05:00Z").unwrap(), now + MAX_FUTURE);
        assert!(at("2026-03-01T09:00:00Z").is_ok());
        let err = at("2030-01-01T00:00:00Z").unwrap_err().to_string();
        assert!(
            err.contains("`2030-01-01T00:00:00Z`") && err.contains("refused"),
            "{err}"
        );
        assert_eq!(tick_time(&json!({}), now).unwrap(), now);
    }
}
