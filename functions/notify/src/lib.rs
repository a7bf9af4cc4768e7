//! leadscore-notify: delivers the outbox notifications that `score` and `decay` write to the
//! table (SPEC §6) to Amazon EventBridge or to webhooks signed with Standard Webhooks.
//!
//! The function reads the table's stream. Each new `NOTE#` item is one notification for one
//! target; [`Notifier::handle`] delivers every record of a batch (concurrently, a bad target
//! never holding up the others) and reports the records that failed by sequence number, so
//! the event source mapping retries them and in the end sends them to the dead-letter queue.
//! Delivery is at least once and idempotent by notification id: before delivering, notify
//! reads the item (consistently) and skips it when it is already marked `delivered` or no
//! longer exists (the lead was erased); after a delivery it sets the mark.

pub mod config;
pub mod eventbridge;
pub mod record;
pub mod webhook;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::AttributeValue;
use tokio::sync::Semaphore;

pub use config::{Config, ConfigError, Target, Targets, Webhook};
pub use eventbridge::EventBridgeError;
pub use record::{Kind, Notification, RecordError};
pub use webhook::WebhookError;

/// How many leads of one batch are delivered to at the same time.
pub const CONCURRENCY: usize = 16;

/// The least time an invocation must have left to start a delivery: one delivery may take
/// [`webhook::WEBHOOK_TIMEOUT`], and marking it a moment more. With less left, the record is
/// reported failed (retried by the next invocation) rather than cut off with the batch.
pub const DEADLINE_MARGIN: std::time::Duration =
    webhook::WEBHOOK_TIMEOUT.saturating_add(std::time::Duration::from_secs(2));

/// What became of one stream record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered now (and marked, unless the mark could not be written: see the logs).
    Delivered,
    /// Already marked `delivered` by an earlier attempt: not sent again.
    AlreadyDelivered,
    /// The notification's item no longer exists (the lead was erased): not sent.
    Gone,
    /// Not the insert of a notification: nothing to do.
    Ignored,
}

/// Why one notification could not be delivered. The record is reported as a batch item
/// failure: retried, and after the retries sent to the dead-letter queue.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The record is a notification insert that cannot be read.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The target is not configured and there is no fallback bus.
    #[error(
        "no target `{target}`: it is not in `LEADSCORE_TARGETS` and `LEADSCORE_EVENT_BUS` is not set"
    )]
    NoTarget {
        /// The target's name.
        target: String,
    },
    /// The notification's item could not be read, so whether it was delivered is unknown.
    #[error("cannot read notification `{id}` from the table: {reason}")]
    Read {
        /// The notification id.
        id: String,
        /// The store's error.
        reason: String,
    },
    /// The webhook delivery failed.
    #[error("webhook target `{target}`: {source}")]
    Webhook {
        /// The target's name.
        target: String,
        /// What went wrong.
        #[source]
        source: WebhookError,
    },
    /// The EventBridge delivery failed.
    #[error("eventbridge target `{target}` (bus `{bus}`): {source}")]
    EventBridge {
        /// The target's name.
        target: String,
        /// The bus name or ARN.
        bus: String,
        /// What went wrong.
        #[source]
        source: EventBridgeError,
    },
    /// The delivery task stopped abnormally.
    #[error("the delivery task failed: {0}")]
    Task(String),
    /// Too little of the invocation was left to start this delivery.
    #[error(
        "not started: {left_ms} ms of the invocation left, a delivery may take {margin_ms} ms"
    )]
    OutOfTime {
        /// What was left, in milliseconds.
        left_ms: u128,
        /// The margin a delivery needs ([`DEADLINE_MARGIN`]).
        margin_ms: u128,
    },
    /// An earlier notification of the same lead failed in this batch: this one waits for
    /// the retry, so that the lead's notifications arrive in order.
    #[error("held back: the lead's earlier notification (sequence number `{failed}`) failed in this batch")]
    HeldBack {
        /// The sequence number of the record that failed first.
        failed: String,
    },
}

impl NotifyError {
    /// Whether the failure comes from the configuration or the data rather than from the
    /// target being unavailable: retries will not fix it, a changed configuration will.
    pub fn is_config(&self) -> bool {
        matches!(self, NotifyError::Record(_) | NotifyError::NoTarget { .. })
    }
}

/// Delivers notifications: holds the clients, built once per Lambda instance.
#[derive(Clone)]
pub struct Notifier {
    dynamo: aws_sdk_dynamodb::Client,
    events: aws_sdk_eventbridge::Client,
    http: reqwest::Client,
    table: Arc<str>,
    targets: Arc<Targets>,
    margin: std::time::Duration,
    /// The DynamoDB capacity its reads and marks consumed.
    capacity: Arc<leadscore_core::store::capacity::Capacity>,
}

impl fmt::Debug for Notifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notifier")
            .field("table", &self.table)
            .field("targets", &self.targets)
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// A notifier for `config`'s table and targets, with its own webhook HTTP client
    /// ([`webhook::http_client`]).
    pub fn new(
        dynamo: aws_sdk_dynamodb::Client,
        events: aws_sdk_eventbridge::Client,
        config: Config,
    ) -> Result<Self, ConfigError> {
        Ok(Notifier {
            dynamo,
            events,
            http: webhook::http_client()?,
            table: config.table.into(),
            targets: Arc::new(config.targets),
            margin: DEADLINE_MARGIN,
            capacity: Arc::default(),
        })
    }

    /// The DynamoDB capacity units its reads and delivered marks consumed so far.
    pub fn capacity(&self) -> leadscore_core::store::capacity::CapacityFigures {
        self.capacity.figures()
    }

    /// The same notifier needing `margin` of the invocation left to start a delivery
    /// ([`DEADLINE_MARGIN`] by default).
    pub fn with_deadline_margin(mut self, margin: std::time::Duration) -> Self {
        self.margin = margin;
        self
    }

    /// Builds the clients from the AWS SDK's configuration (region, credentials, endpoint
    /// overrides such as `AWS_ENDPOINT_URL_DYNAMODB`).
    pub fn from_sdk_config(
        sdk: &aws_config::SdkConfig,
        config: Config,
    ) -> Result<Self, ConfigError> {
        Notifier::new(
            aws_sdk_dynamodb::Client::new(sdk),
            aws_sdk_eventbridge::Client::new(sdk),
            config,
        )
    }

    /// The table holding the notifications.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The targets.
    pub fn targets(&self) -> &Targets {
        &self.targets
    }

    /// Delivers every record of a stream batch and answers which failed: each failed record's
    /// sequence number is in `batch_item_failures` (the event source mapping retries from the
    /// lowest). A lead's notifications are delivered one after the other in the order the
    /// stream gives them (the order they were committed), leads side by side; when one of a
    /// lead's fails, every later record of that lead in the batch is held back and reported
    /// failed too, so the retry delivers them in order. A failed record without a sequence
    /// number is reported with an empty identifier, which makes Lambda retry the whole batch:
    /// nothing is dropped.
    pub async fn handle(&self, event: Event) -> DynamoDbEventResponse {
        self.handle_until(event, None).await
    }

    /// [`Notifier::handle`] within an invocation that ends at `deadline`: a delivery is
    /// started only while the margin ([`Notifier::with_deadline_margin`]) is left; the
    /// records not started are reported failed ([`NotifyError::OutOfTime`]) with the lead's
    /// later ones, so the next invocation delivers them, in order.
    pub async fn handle_until(
        &self,
        event: Event,
        deadline: Option<std::time::Instant>,
    ) -> DynamoDbEventResponse {
        let semaphore = Arc::new(Semaphore::new(CONCURRENCY));
        let total = event.records.len();
        // the records of each lead (partition key), in stream order; other records alone
        let mut groups: Vec<Vec<(usize, EventRecord)>> = Vec::new();
        let mut group_of: HashMap<String, usize> = HashMap::new();
        for (index, record) in event.records.into_iter().enumerate() {
            match record::partition_key(&record) {
                Some(pk) => {
                    let next = groups.len();
                    let g = *group_of.entry(pk).or_insert(next);
                    if g == next {
                        groups.push(Vec::new());
                    }
                    groups[g].push((index, record));
                }
                None => groups.push(vec![(index, record)]),
            }
        }
        let mut tasks = Vec::with_capacity(groups.len());
        for group in groups {
            let notifier = self.clone();
            let semaphore = Arc::clone(&semaphore);
            let indexes: Vec<(usize, Option<String>)> = group
                .iter()
                .map(|(i, r)| (*i, r.change.sequence_number.clone()))
                .collect();
            let task = tokio::spawn(async move {
                // The semaphore is never closed; without a permit the records still go.
                let _permit = semaphore.acquire_owned().await.ok();
                notifier.process_in_order(group, deadline).await
            });
            tasks.push((indexes, task));
        }
        let mut results: Vec<(usize, Option<String>, Result<Outcome, NotifyError>)> =
            Vec::with_capacity(total);
        for (indexes, task) in tasks {
            match task.await {
                Ok(done) => results.extend(done),
                Err(err) => {
                    for (index, sequence_number) in indexes {
                        let err = NotifyError::Task(err.to_string());
                        tracing::error!(sequence_number, error = %err, "notification not delivered");
                        results.push((index, sequence_number, Err(err)));
                    }
                }
            }
        }
        results.sort_by_key(|(index, _, _)| *index);
        let mut response = DynamoDbEventResponse::default();
        let (mut delivered, mut skipped) = (0usize, 0usize);
        for (_, sequence_number, result) in results {
            match result {
                Ok(Outcome::Delivered) => delivered += 1,
                Ok(_) => skipped += 1,
                Err(_) => {
                    let mut failure = DynamoDbBatchItemFailure::default();
                    failure.item_identifier = Some(sequence_number.unwrap_or_default());
                    response.batch_item_failures.push(failure);
                }
            }
        }
        tracing::info!(
            records = total,
            delivered,
            skipped,
            failed = response.batch_item_failures.len(),
            "batch done"
        );
        response
    }

    /// Handles the records of one lead in order ([`Notifier::process`]); after a failure the
    /// lead's later notifications are held back, not attempted, and fail with
    /// [`NotifyError::HeldBack`].
    async fn process_in_order(
        &self,
        records: Vec<(usize, EventRecord)>,
        deadline: Option<std::time::Instant>,
    ) -> Vec<(usize, Option<String>, Result<Outcome, NotifyError>)> {
        let mut out = Vec::with_capacity(records.len());
        let mut failed: Option<String> = None;
        for (index, record) in records {
            let sequence_number = record.change.sequence_number.clone();
            let result = match &failed {
                // what is not a notification is ignored, whatever came before it
                Some(first) if record::is_notification_insert(&record) => {
                    let err = NotifyError::HeldBack {
                        failed: first.clone(),
                    };
                    tracing::warn!(sequence_number, error = %err, "notification held back");
                    Err(err)
                }
                _ => match deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()))
                {
                    Some(left) if left < self.margin && record::is_notification_insert(&record) => {
                        let err = NotifyError::OutOfTime {
                            left_ms: left.as_millis(),
                            margin_ms: self.margin.as_millis(),
                        };
                        tracing::warn!(sequence_number, error = %err, "notification not started");
                        Err(err)
                    }
                    _ => self.process(&record).await,
                },
            };
            if result.is_err() && failed.is_none() {
                failed = Some(sequence_number.clone().unwrap_or_default());
            }
            out.push((index, sequence_number, result));
        }
        out
    }

    /// Handles one stream record: ignores what is not the insert of a notification, delivers
    /// the rest ([`Notifier::deliver`]) and logs the outcome.
    pub async fn process(&self, record: &EventRecord) -> Result<Outcome, NotifyError> {
        let sequence_number = record.change.sequence_number.as_deref().unwrap_or_default();
        let note = match record::from_record(record) {
            Ok(Some(note)) => note,
            Ok(None) => {
                tracing::debug!(
                    sequence_number,
                    event_name = %record.event_name,
                    "not a notification insert: ignored"
                );
                return Ok(Outcome::Ignored);
            }
            Err(err) => {
                tracing::error!(
                    sequence_number,
                    error = %err,
                    config_error = true,
                    "notification not delivered"
                );
                return Err(err.into());
            }
        };
        let result = self.deliver(&note).await;
        match &result {
            Ok(outcome) => tracing::info!(
                sequence_number,
                id = %note.id,
                target = %note.target,
                kind = note.kind.as_str(),
                lead = note.lead.as_deref(),
                outcome = ?outcome,
                "notification handled"
            ),
            Err(err) => tracing::error!(
                sequence_number,
                id = %note.id,
                target = %note.target,
                kind = note.kind.as_str(),
                lead = note.lead.as_deref(),
                error = %err,
                config_error = err.is_config(),
                "notification not delivered"
            ),
        }
        result
    }

    /// Delivers one notification to its target unless it is already marked `delivered` or
    /// its item is gone, then marks it `delivered`.
    pub async fn deliver(&self, note: &Notification) -> Result<Outcome, NotifyError> {
        let Some(target) = self.targets.resolve(&note.target) else {
            return Err(NotifyError::NoTarget {
                target: note.target.clone(),
            });
        };
        match self.read_mark(note).await? {
            Mark::Gone => return Ok(Outcome::Gone),
            Mark::Delivered => return Ok(Outcome::AlreadyDelivered),
            Mark::Pending => {}
        }
        match &target {
            Target::Webhook(hook) => {
                webhook::post(&self.http, hook, &note.id, &note.message)
                    .await
                    .map_err(|source| NotifyError::Webhook {
                        target: note.target.clone(),
                        source,
                    })?;
            }
            Target::EventBridge { bus } => {
                let event_id =
                    eventbridge::put(&self.events, note, bus)
                        .await
                        .map_err(|source| NotifyError::EventBridge {
                            target: note.target.clone(),
                            bus: bus.clone(),
                            source,
                        })?;
                tracing::debug!(id = %note.id, event_id, bus = %bus, "event published");
            }
        }
        self.mark_delivered(note).await;
        Ok(Outcome::Delivered)
    }

    /// Reads the item's delivered mark, consistently.
    async fn read_mark(&self, note: &Notification) -> Result<Mark, NotifyError> {
        let output = self
            .dynamo
            .get_item()
            .table_name(&*self.table)
            .key("pk", AttributeValue::S(note.pk.clone()))
            .key("sk", AttributeValue::S(note.sk.clone()))
            .consistent_read(true)
            .projection_expression("#pk, #delivered")
            .expression_attribute_names("#pk", "pk")
            .expression_attribute_names("#delivered", "delivered")
            .return_consumed_capacity(aws_sdk_dynamodb::types::ReturnConsumedCapacity::Indexes)
            .send()
            .await
            .map_err(|err| NotifyError::Read {
                id: note.id.clone(),
                reason: DisplayErrorContext(&err).to_string(),
            })?;
        self.capacity.read(output.consumed_capacity());
        Ok(match output.item() {
            None => Mark::Gone,
            Some(item) if item.is_empty() => Mark::Gone,
            Some(item) => match item.get("delivered") {
                Some(AttributeValue::Bool(true)) => Mark::Delivered,
                _ => Mark::Pending,
            },
        })
    }

    /// Sets the delivered mark, only on an item that still exists (an erased lead's
    /// notification is not written back). The delivery has happened whatever this does: a
    /// failure is logged, and the record is not failed, which would only send it again.
    async fn mark_delivered(&self, note: &Notification) {
        let result = self
            .dynamo
            .update_item()
            .table_name(&*self.table)
            .key("pk", AttributeValue::S(note.pk.clone()))
            .key("sk", AttributeValue::S(note.sk.clone()))
            .update_expression("SET #delivered = :true REMOVE #undelivered")
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#pk", "pk")
            .expression_attribute_names("#delivered", "delivered")
            .expression_attribute_names("#undelivered", "undelivered")
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .return_consumed_capacity(aws_sdk_dynamodb::types::ReturnConsumedCapacity::Indexes)
            .send()
            .await;
        match result {
            Ok(out) => self.capacity.wrote(out.consumed_capacity()),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|err| err.is_conditional_check_failed_exception()) =>
            {
                tracing::info!(id = %note.id, "notification erased while it was delivered");
            }
            Err(err) => tracing::warn!(
                id = %note.id,
                error = %DisplayErrorContext(&err),
                "delivered, but the delivered mark could not be set: a retry may send it again"
            ),
        }
    }
}

/// What [`Notifier::redeliver`] did.
#[derive(Debug, Default)]
pub struct Redelivered {
    /// Undelivered notifications found (for the target and time asked).
    pub found: usize,
    /// Delivered now.
    pub delivered: usize,
    /// Found delivered or gone meanwhile: nothing sent.
    pub skipped: usize,
    /// Still failing: the notification id and why.
    pub failed: Vec<(String, NotifyError)>,
}

impl Notifier {
    /// Sends again every notification not yet delivered (the sparse
    /// [`leadscore_wire::UNDELIVERED_INDEX`], no scan), for `target` only when given, and
    /// only those at or after `since` when given; each lead's in commit order (a failure
    /// holds back the lead's later ones), each through
    /// [`Notifier::deliver`], so what is delivered meanwhile is not sent twice and receivers
    /// dedupe on the notification id anyway.
    pub async fn redeliver(
        &self,
        target: Option<&str>,
        since: Option<leadscore_rules::time::Micros>,
    ) -> Result<Redelivered, NotifyError> {
        let mut notes: Vec<Notification> = Vec::new();
        for shard in 0..leadscore_wire::UNDELIVERED_SHARDS {
            let mut start: Option<HashMap<String, AttributeValue>> = None;
            loop {
                let mut query = self
                    .dynamo
                    .query()
                    .table_name(&*self.table)
                    .index_name(leadscore_wire::UNDELIVERED_INDEX)
                    .expression_attribute_names("#u", "undelivered")
                    .expression_attribute_values(
                        ":u",
                        AttributeValue::S(format!("PENDING#{shard}")),
                    )
                    .set_exclusive_start_key(start.take());
                // `--since` is compared as a time below: the keys' text order is not time
                // order (fractions are trimmed, offsets may differ)
                query = query.key_condition_expression("#u = :u");
                let page = query.send().await.map_err(|err| NotifyError::Read {
                    id: format!("the `{}` index", leadscore_wire::UNDELIVERED_INDEX),
                    reason: DisplayErrorContext(&err).to_string(),
                })?;
                for item in page.items.unwrap_or_default() {
                    let note: Notification = serde_dynamo::from_item(item).map_err(|err| {
                        NotifyError::Record(RecordError::Malformed {
                            sk: String::new(),
                            reason: err.to_string(),
                        })
                    })?;
                    let at = note
                        .at
                        .as_deref()
                        .and_then(leadscore_rules::time::parse_rfc3339);
                    if target.is_none_or(|t| t == note.target)
                        && since.is_none_or(|since| at.is_some_and(|at| at >= since))
                    {
                        notes.push(note);
                    }
                }
                match page.last_evaluated_key {
                    Some(key) if !key.is_empty() => start = Some(key),
                    _ => break,
                }
            }
        }
        // each lead's in commit order (its messages' `sequence`, then time), oldest first
        let order = |note: &Notification| {
            let message: Option<leadscore_wire::Message> = serde_json::from_str(&note.message).ok();
            (
                message.as_ref().and_then(|m| m.sequence).unwrap_or(0),
                note.at
                    .as_deref()
                    .and_then(leadscore_rules::time::parse_rfc3339)
                    .unwrap_or(i64::MIN),
            )
        };
        notes.sort_by_cached_key(|note| (note.pk.clone(), order(note), note.id.clone()));
        let mut done = Redelivered {
            found: notes.len(),
            ..Redelivered::default()
        };
        // after a lead's failure its later ones wait, as in `handle`: they stay undelivered
        let mut failed_lead: Option<&str> = None;
        for note in &notes {
            if failed_lead == Some(note.pk.as_str()) {
                done.failed.push((
                    note.id.clone(),
                    NotifyError::HeldBack {
                        failed: "an earlier notification of the lead".into(),
                    },
                ));
                continue;
            }
            failed_lead = None;
            match self.deliver(note).await {
                Ok(Outcome::Delivered) => done.delivered += 1,
                Ok(_) => done.skipped += 1,
                Err(err) => {
                    tracing::error!(id = %note.id, target = %note.target, error = %err, "redelivery failed");
                    failed_lead = Some(note.pk.as_str());
                    done.failed.push((note.id.clone(), err));
                }
            }
        }
        Ok(done)
    }
}

/// The state of a notification's item.
enum Mark {
    Pending,
    Delivered,
    Gone,
}

/// The rules notify runs and the targets they notify (their `notify TARGET` names, each
/// once): the rules published in the table when there are any, else `LEADSCORE_RULES`, the
/// same rules `score` and `decay` run; with neither it refuses. notify checks the targets
/// against its configuration at start ([`Targets::check_rules`]).
pub async fn rule_targets(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<(leadscore_core::store::dynamo::DynamoStore, Vec<String>), String> {
    use leadscore_core::store::dynamo::{DynamoStore, DEFAULT_HISTORY_TTL_DAYS};
    let (program, explicit) =
        leadscore_core::store::published::function_program().map_err(|e| e.to_string())?;
    let mut store = DynamoStore::new(client.clone(), table, program, DEFAULT_HISTORY_TTL_DAYS);
    store
        .use_function_rules(explicit)
        .await
        .map_err(|e| e.to_string())?;
    let program = leadscore_core::api::LeadStore::program(&store);
    let targets = leadscore_core::function::rule_targets(&program);
    Ok((store, targets))
}

/// Delivers a stream batch: see [`Notifier::handle`].
pub async fn handle(event: Event, notifier: &Notifier) -> DynamoDbEventResponse {
    notifier.handle(event).await
}

/// Delivers a stream batch within an invocation that ends at `deadline` (the Lambda
/// context's): see [`Notifier::handle_until`].
pub async fn handle_until(
    event: Event,
    notifier: &Notifier,
    deadline: std::time::SystemTime,
) -> DynamoDbEventResponse {
    let left = deadline
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    notifier
        .handle_until(event, Some(std::time::Instant::now() + left))
        .await
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::record::tests::{event, note_image, record_json};
    use serde_json::json;

    /// A notifier whose AWS clients point at a closed loopback port: any AWS call fails fast.
    fn offline(targets: Targets) -> Notifier {
        let credentials = aws_sdk_dynamodb::config::Credentials::new("k", "s", None, None, "test");
        let dynamo = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::Config::builder()
                .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
                .region(aws_sdk_dynamodb::config::Region::new("eu-west-1"))
                .credentials_provider(credentials.clone())
                .endpoint_url("http://127.0.0.1:9")
                .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled())
                .build(),
        );
        let events = aws_sdk_eventbridge::Client::from_conf(
            aws_sdk_eventbridge::Config::builder()
                .behavior_version(aws_sdk_eventbridge::config::BehaviorVersion::latest())
                .region(aws_sdk_eventbridge::config::Region::new("eu-west-1"))
                .credentials_provider(credentials)
                .endpoint_url("http://127.0.0.1:9")
                .build(),
        );
        let config = Config {
            table: "leadscore".into(),
            targets,
        };
        Notifier::new(dynamo, events, config).unwrap()
    }

    fn failures(response: &DynamoDbEventResponse) -> Vec<&str> {
        response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_deref().unwrap_or("<none>"))
            .collect()
    }

    #[tokio::test]
    async fn every_failed_record_is_reported_and_the_rest_is_skipped() {
        let notifier = offline(Targets::default());
        let sk = |n: u32| format!("NOTE#2024-05-01T10:00:00Z#ntf_{n}");
        let mut bad_message = note_image(&sk(3), "ntf_3", "crm", "converted");
        bad_message["message"] = json!({"S": "[]"});
        let batch = event(vec![
            // no target `crm` and no fallback bus: a configuration failure
            record_json(
                "INSERT",
                &sk(1),
                note_image(&sk(1), "ntf_1", "crm", "stage_reached"),
                "100",
            ),
            // not for notify
            record_json(
                "MODIFY",
                &sk(1),
                note_image(&sk(1), "ntf_1", "crm", "stage_reached"),
                "200",
            ),
            record_json(
                "INSERT",
                "STATE",
                json!({"pk": {"S": "LEAD#u1"}, "sk": {"S": "STATE"}}),
                "300",
            ),
            // malformed
            record_json("INSERT", &sk(3), bad_message, "400"),
            // a second unknown target
            record_json(
                "INSERT",
                &sk(5),
                note_image(&sk(5), "ntf_5", "revenue", "converted"),
                "500",
            ),
        ]);
        let response = handle(batch, &notifier).await;
        assert_eq!(failures(&response), ["100", "400", "500"]);
        let body = serde_json::to_value(&response).unwrap();
        assert_eq!(body["batchItemFailures"][0]["itemIdentifier"], "100");
    }

    #[tokio::test]
    async fn a_store_error_is_a_failure_not_a_skip() {
        // The fallback bus resolves the target; the read of the mark fails (nothing listens).
        let notifier = offline(Targets::parse(None, Some("leadscore")).unwrap());
        let sk = "NOTE#2024-05-01T10:00:00Z#ntf_1";
        let batch = event(vec![record_json(
            "INSERT",
            sk,
            note_image(sk, "ntf_1", "crm", "stage_reached"),
            "100",
        )]);
        let response = notifier.handle(batch).await;
        assert_eq!(failures(&response), ["100"]);
    }

    #[tokio::test]
    async fn a_failed_record_without_sequence_number_fails_the_whole_batch() {
        let notifier = offline(Targets::default());
        let sk = "NOTE#2024-05-01T10:00:00Z#ntf_1";
        let mut record = record_json(
            "INSERT",
            sk,
            note_image(sk, "ntf_1", "crm", "converted"),
            "1",
        );
        record["dynamodb"]
            .as_object_mut()
            .unwrap()
            .remove("SequenceNumber");
        let response = notifier.handle(event(vec![record])).await;
        assert_eq!(failures(&response), [""]);
    }

    #[tokio::test]
    async fn an_empty_batch_has_no_failures() {
        let notifier = offline(Targets::default());
        let response = notifier.handle(event(vec![])).await;
        assert!(response.batch_item_failures.is_empty());
    }

    #[test]
    fn no_target_is_a_config_error() {
        let err = NotifyError::NoTarget {
            target: "crm".into(),
        };
        assert!(err.is_config());
        assert_eq!(
            err.to_string(),
            "no target `crm`: it is not in `LEADSCORE_TARGETS` and `LEADSCORE_EVENT_BUS` is not set"
        );
    }
}
