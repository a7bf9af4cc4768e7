//! The DynamoDB store: the same [`LeadStore`] as the embedded engine, over one table
//! (key design in `infra/README.md`).
//!
//! | item | `pk` | `sk` |
//! |---|---|---|
//! | lead state (or, once merged, a pointer `merged_into`) | `LEAD#<id>` | `STATE` |
//! | accepted call, TTL | `LEAD#<id>` | `CALL#<time>#<messageId>` |
//! | outbox notification | `LEAD#<id>` | `NOTE#<time>#<notification id>` |
//! | idempotency record, TTL | `MSG#<messageId>` | `MSG` |
//!
//! One run of calls for a lead costs one consistent read of its state and one
//! `TransactWriteItems`: the new state (guarded by its `version`), an idempotency record per
//! call (which must not exist), the calls kept in the lead's history and the notifications.
//! A version conflict re-reads and re-evaluates; an idempotency record that exists marks its
//! call a duplicate. Throttling and transient errors are retried with backoff; when storage
//! stays unavailable the caller gets a [`StoreError`] and nothing is half-written.
//!
//! An identity merge (SPEC §5) re-evaluates the combined history and writes, in the same
//! transaction, the known lead's state and a pointer in place of the anonymous lead's state.
//! The anonymous lead's calls stay in its own partition; the known lead's state lists the ids
//! merged into it (`merged`), so its history is its own partition and theirs.
//!
//! The loop that decides all this is the pipeline's ([`crate::pipeline::apply`]); this store
//! opens its narrow door on the table ([`Records`]: load, kept calls, commit) and writes
//! each [`Commit`] as one transaction.

use crate::api::{Accepted, LeadStore, Processed, StoreError, StoredLead};
use crate::ingest::call::{Call, TimePolicy};
use crate::ingest::segment::normalize_call;
use crate::pipeline::apply::{self, apply_calls, refresh, Absorbed, Records, StepError};
use crate::pipeline::commit::{Commit, Record, Refused, Whole};
use crate::pipeline::{remap_transitions, rescored_state, LatestHits};
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::query::QueryError;
use aws_sdk_dynamodb::operation::scan::builders::ScanFluentBuilder;
use aws_sdk_dynamodb::operation::scan::ScanOutput;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, DeleteRequest, GlobalSecondaryIndex,
    KeySchemaElement, KeyType, KeysAndAttributes, Projection, ProjectionType, Put,
    ReturnConsumedCapacity, ScalarAttributeType, StreamSpecification, StreamViewType,
    TimeToLiveSpecification, TransactWriteItem, WriteRequest,
};
use aws_sdk_dynamodb::Client;
use leadscore_rules::eval::{LeadState, TraceEntry, Transition};
use leadscore_rules::time::{format_rfc3339, Micros, SECOND};
use leadscore_rules::{Program, StoredState};
use leadscore_wire::{Message, OutboxNote};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Items in one transaction at most (DynamoDB's limit).
pub const MAX_TRANSACTION_ITEMS: usize = 100;
pub use crate::pipeline::apply::MAX_ATTEMPTS;
pub use crate::pipeline::{MAX_CALL_BYTES, MAX_ID_BYTES};
/// Partitions of the sparse `due` index.
pub const DUE_SHARDS: u32 = 16;
/// The name of the sparse index of leads that time passing can change.
pub const DUE_INDEX: &str = "due";
/// Default retention of history and idempotency records, in days (SPEC §5).
pub const DEFAULT_HISTORY_TTL_DAYS: u64 = 400;
/// Items a scan page reads at most: short pages, so that a slow table answers each in time.
const SCAN_PAGE: i32 = 1000;
/// How many pointers a read follows from a merged id to its known lead.
const MAX_HOPS: usize = 8;
/// A tombstone older than this belongs to an erasure that stopped halfway (a timeout, a
/// crash): the next reader finishes it.
const ERASE_STALE: Micros = 60 * SECOND;

type Item = HashMap<String, AttributeValue>;

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn lead_pk(id: &str) -> String {
    format!("LEAD#{id}")
}

/// A request that could not be built: it would fail the same way again.
fn failed(what: &str, err: impl std::fmt::Display) -> StoreError {
    StoreError::Failed(format!("{what}: {err}"))
}

/// What an SDK error says about asking again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Throttled,
    Unavailable,
    Failed,
}

/// Throttling, the service's own transient errors, a 5xx or no answer at all are worth
/// another try; everything else (validation, a missing table, access denied, a failed
/// condition) fails the same way again.
fn kind_of<E: ProvideErrorMetadata>(err: &SdkError<E>) -> Kind {
    match err {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            Kind::Unavailable
        }
        SdkError::ServiceError(e) => match e.err().code() {
            Some(
                "ProvisionedThroughputExceededException"
                | "ThrottlingException"
                | "RequestLimitExceeded",
            ) => Kind::Throttled,
            Some(
                "InternalServerError"
                | "ServiceUnavailable"
                | "TransactionInProgressException"
                | "TransactionConflictException",
            ) => Kind::Unavailable,
            _ if e.raw().status().is_server_error() => Kind::Unavailable,
            _ => Kind::Failed,
        },
        _ => Kind::Failed,
    }
}

/// Whether an SDK error is worth another try.
fn transient<E: ProvideErrorMetadata>(err: &SdkError<E>) -> bool {
    kind_of(err) != Kind::Failed
}

/// An SDK error as the store's typed error, saying what was being done.
pub(crate) fn store_error<E: ProvideErrorMetadata + std::error::Error + 'static>(
    what: &str,
    err: &SdkError<E>,
) -> StoreError {
    let message = format!("{what}: {}", DisplayErr(err));
    match kind_of(err) {
        Kind::Throttled => StoreError::Throttled(message),
        Kind::Unavailable => StoreError::Unavailable(message),
        Kind::Failed => StoreError::Failed(message),
    }
}

/// The stored form of a lead state item.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct StateItem {
    pk: String,
    sk: String,
    /// Bumped by every commit; guards every write.
    version: u64,
    /// Set on a merged anonymous id: the lead it was merged into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    merged_into: Option<String>,
    /// The state under the current rules. Stored as the JSON text of its [`StoredState`]
    /// (by name) in the attribute `state` ([`DynamoStore::state_put`],
    /// [`DynamoStore::decode_state`]): DynamoDB numbers cannot hold every f64 and maps nest
    /// 32 deep at most, so a profile from user input is kept as text.
    #[serde(skip)]
    state: Option<LeadState>,
    /// Ids merged into this lead (their calls stay in their own partitions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    merged: Vec<String>,
    /// Arrival key of the lead's first call.
    #[serde(default)]
    first_arrival: u64,
    /// What the latest call did: its time and trace (JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    latest_hits: Option<String>,
    /// The score and stage, for tools that read the table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    score: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stage: Option<String>,
    /// The rule set that computed the state: its name, the hash of its files and its
    /// version (SPEC §7).
    #[serde(default)]
    rules: String,
    #[serde(default)]
    rules_hash: String,
    #[serde(default)]
    rules_version: String,
    /// The generation of the published rules that wrote it (0: not published rules).
    #[serde(default)]
    rules_generation: u64,
    /// Present while time passing can change the lead (the sparse `due` index).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    due_shard: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    due_at: Option<i64>,
    /// Some of the calls the state counts are no longer kept (expired, or quarantined as
    /// unreadable), so a rescore or merge evaluated it from part of its history. Once set,
    /// it stays.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    partial: bool,
    /// Set on a tombstone: the lead is being erased since this time (microseconds). The
    /// tombstone holds the state's place, bumped version and all, until every other item of
    /// the lead is gone ([`DynamoStore::forget`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    erasing: Option<Micros>,
}

impl StateItem {
    /// What the latest call did, as kept in `latest_hits`.
    fn hits(&self) -> Option<LatestHits> {
        let stored: StoredHits = serde_json::from_str(self.latest_hits.as_deref()?).ok()?;
        Some(LatestHits {
            at: stored.at,
            trace: stored.trace,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct StoredHits {
    at: Micros,
    trace: Vec<TraceEntry>,
}

/// A lead as read: its known id and, when it exists, its state item (rescored under the
/// store's rules when it was stamped with another version, see
/// [`DynamoStore::rescore_stale`]).
#[derive(Debug, Clone)]
struct Loaded {
    known: String,
    item: Option<StateItem>,
    /// Transitions the rescore found, not yet committed or announced.
    rescored: Vec<Transition>,
    /// The rescore ran on a partly expired history.
    partial: bool,
}

impl Loaded {
    fn version(&self) -> Option<u64> {
        self.item.as_ref().map(|i| i.version)
    }
}

/// Counts of what a store did, for tests and the closing figures.
#[derive(Debug, Default)]
pub struct Counters {
    /// DynamoDB requests sent (each operation once, whatever the SDK's own retries).
    pub requests: AtomicU64,
    /// Commits retried after a version conflict or a transient error.
    pub retries: AtomicU64,
    /// The newest generation of published rules seen stamped on a lead.
    pub newer: AtomicU64,
    /// Unreadable history items quarantined (`DynamoStore::quarantine`).
    pub quarantined: AtomicU64,
    /// The capacity the requests consumed, as DynamoDB reports it and as it is priced.
    pub capacity: super::capacity::Capacity,
}

/// What a tick of the due leads did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct TickReport {
    /// Leads found due.
    pub visited: u64,
    /// Leads whose state was committed.
    pub committed: u64,
    /// Notifications written.
    pub notifications: u64,
    /// Leads that could not be ticked (they stay due for the next tick).
    pub failed: u64,
    /// The shard the tick started with.
    pub first_shard: u32,
    /// Due leads not started for want of time (due still: the next tick starts with them).
    pub left: u64,
    /// The shard the tick ran out of time in, where the next one starts.
    pub stopped_in: Option<u32>,
}

/// What [`DynamoStore::refresh_lead`] did to one lead.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Refreshed {
    /// A new state was committed.
    pub committed: bool,
    /// The lead was stamped with other rules and was rescored.
    pub rescored: bool,
    /// Its state changed.
    pub changed: bool,
    /// It was rescored from a partly expired history.
    pub partial: bool,
    /// The notifications written, as `replay` prints them.
    pub told: Vec<Value>,
}

/// How far [`DynamoStore::rescore_all`] has come, told as it goes (a progress bar's feed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RescoreProgress {
    /// A lead was looked at (and rescored when it was stamped with other rules).
    Lead,
    /// A page of the scan is done: this many items of the table were read, of every kind
    /// (as [`DynamoStore::item_count`] counts them), leads or not.
    Scanned(u64),
}

/// What [`DynamoStore::rescore_all`] did (SPEC §7 `rescore --format json`).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct TableRescore {
    /// Leads in the table (merged ids not counted).
    pub leads: u64,
    /// Leads whose state the rescore changed.
    pub changed: u64,
    /// Leads rescored from a partly expired history.
    pub partial: u64,
    /// The notifications written, as `replay` prints them.
    pub notifications: Vec<Value>,
}

/// The DynamoDB implementation of [`LeadStore`].
#[derive(Clone)]
pub struct DynamoStore {
    pub(crate) client: Client,
    pub(crate) table: String,
    pub(crate) program: Arc<Program>,
    /// The generation of the published rules `program` is (0: rules not published, from
    /// `LEADSCORE_RULES` or built in; see [`DynamoStore::use_published`]).
    pub(crate) generation: u64,
    ttl_secs: i64,
    pub(crate) counters: Arc<Counters>,
    /// The rules every clone of this store runs now: a reload of the published rules in one
    /// request reaches the requests after it ([`DynamoStore::view`]).
    pub(crate) current: Arc<RwLock<Current>>,
    /// The rules records written by position were written under, to read them by
    /// ([`DynamoStore::with_previous_rules`]).
    previous: Option<Arc<Program>>,
    /// Other names of the rule set, whose leads it may rewrite: a rename said out loud
    /// ([`DynamoStore::with_renamed_from`]).
    renamed_from: Vec<String>,
    /// How often ticks refresh a decaying lead's stored figures ([`DEFAULT_REFRESH`]).
    refresh: Micros,
}

/// The rules a store and its clones run now, and their published generation.
#[derive(Clone)]
pub(crate) struct Current {
    pub(crate) program: Arc<Program>,
    pub(crate) generation: u64,
}

/// Why a read or a commit did not go through.
enum CommitError {
    /// Cancelled: the indexes of the items whose condition failed.
    Cancelled(Vec<usize>),
    /// A [`Commit`] refused: a version guard failed, or calls were applied before.
    Refused(Refused),
    /// Throttled, a conflicting transaction, or a network error: try again.
    Transient(StoreError),
    /// Anything else: trying again fails the same way.
    Fatal(StoreError),
    /// The lead is being erased (its state is a tombstone, [`DynamoStore::forget`]): a
    /// write waits until the erasure is done; a read finds no lead.
    Erasing(String),
}

impl CommitError {
    /// A permanent failure with this cause.
    fn failed(cause: impl std::fmt::Display) -> Self {
        CommitError::Fatal(StoreError::Failed(cause.to_string()))
    }

    /// An SDK error, transient or not as [`kind_of`] says.
    fn sdk<E: ProvideErrorMetadata + std::error::Error + 'static>(
        what: &str,
        err: &SdkError<E>,
    ) -> Self {
        let err = store_error(what, err);
        if err.is_transient() {
            CommitError::Transient(err)
        } else {
            CommitError::Fatal(err)
        }
    }
}

/// Wall-clock time now, in microseconds since the epoch.
pub fn now_micros() -> Micros {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| {
            Micros::try_from(d.as_micros()).unwrap_or(Micros::MAX)
        })
}

/// How many due leads a tick works on at once.
pub const TICK_CONCURRENCY: usize = 16;
/// The item that keeps the shard the next tick starts with.
const TICK_CURSOR_PK: &str = "DECAY";
const TICK_CURSOR_SK: &str = "CURSOR";

/// How often a decaying lead's stored figures are refreshed by ticks when no stage can change
/// sooner (`LEADSCORE_DECAY_REFRESH_HOURS`, default 24).
pub const DEFAULT_REFRESH: Micros = 24 * 3600 * SECOND;

fn shard_of(id: &str) -> String {
    let digest = Sha256::digest(id.as_bytes());
    format!("DUE#{}", u32::from(digest[0]) % DUE_SHARDS)
}

pub use leadscore_wire::notification_id;

/// The backoff before attempt `attempt` (from 1): exponential from 10 ms, capped at 0.5 s,
/// with jitter.
fn backoff(attempt: u32) -> Duration {
    let base = 10u64.saturating_mul(1 << attempt.min(6)).min(500);
    let jitter = u64::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos()),
    ) % base.max(1);
    Duration::from_millis(base / 2 + jitter / 2)
}

/// A kept call item: its arrival key, the call and the record it was read from, or why it
/// does not read as a call (no record, a record that is not JSON, or not a valid call).
fn kept_call(item: &Item) -> Result<(u64, Call, &str), String> {
    let arrival = match item.get("arrival") {
        Some(AttributeValue::N(v)) => v
            .parse()
            .map_err(|_| format!("arrival `{v}` is not a number"))?,
        _ => return Err("it has no arrival number".into()),
    };
    let Some(AttributeValue::S(record)) = item.get("record") else {
        return Err("it has no record text".into());
    };
    let value = serde_json::from_str::<Value>(record)
        .map_err(|e| format!("its record is not JSON: {e}"))?;
    let call = normalize_call(&value, "", &TimePolicy::Required)
        .map_err(|e| format!("its record is not a valid call: {e}"))?;
    Ok((arrival, call, record))
}

/// Creates the table with the key schema, `due` index, stream and TTL of
/// `infra/template.yaml` (for DynamoDB Local and local use). A table that exists already is
/// left as it is.
pub async fn create_table(client: &Client, table: &str) -> Result<(), StoreError> {
    let attr = |name: &str, kind: ScalarAttributeType| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(kind)
            .build()
            .map_err(|e| failed("create table", e))
    };
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .map_err(|e| failed("create table", e))
    };
    let due = GlobalSecondaryIndex::builder()
        .index_name(DUE_INDEX)
        .key_schema(key("due_shard", KeyType::Hash)?)
        .key_schema(key("due_at", KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::KeysOnly)
                .build(),
        )
        .build()
        .map_err(|e| failed("create table", e))?;
    // notifications not yet delivered (the whole item: `redeliver` sends it from there)
    let undelivered = GlobalSecondaryIndex::builder()
        .index_name(leadscore_wire::UNDELIVERED_INDEX)
        .key_schema(key("undelivered", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::All)
                .build(),
        )
        .build()
        .map_err(|e| failed("create table", e))?;
    let result = client
        .create_table()
        .table_name(table)
        .attribute_definitions(attr("pk", ScalarAttributeType::S)?)
        .attribute_definitions(attr("sk", ScalarAttributeType::S)?)
        .attribute_definitions(attr("due_shard", ScalarAttributeType::S)?)
        .attribute_definitions(attr("due_at", ScalarAttributeType::N)?)
        .attribute_definitions(attr("undelivered", ScalarAttributeType::S)?)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .global_secondary_indexes(due)
        .global_secondary_indexes(undelivered)
        .billing_mode(BillingMode::PayPerRequest)
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewImage)
                .build()
                .map_err(|e| failed("create table", e))?,
        )
        .send()
        .await;
    match result {
        Ok(_) => {}
        Err(err) if err.code() == Some("ResourceInUseException") => return Ok(()),
        Err(err) => return Err(store_error("create table", &err)),
    }
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name("expires_at")
                .build()
                .map_err(|e| failed("create table", e))?,
        )
        .send()
        .await
        .map_err(|e| store_error("enable TTL", &e))?;
    Ok(())
}

/// Shows an SDK error with its code and message (the SDK's own `Display` says only
/// "service error").
struct DisplayErr<'a, E>(&'a SdkError<E>);

impl<E: ProvideErrorMetadata + std::error::Error + 'static> std::fmt::Display
    for DisplayErr<'_, E>
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            SdkError::ServiceError(e) => {
                let err = e.err();
                write!(
                    f,
                    "{}: {}",
                    err.code().unwrap_or("service error"),
                    err.message().unwrap_or("")
                )
            }
            SdkError::DispatchFailure(_) => write!(f, "cannot reach DynamoDB"),
            SdkError::TimeoutError(_) => write!(f, "DynamoDB timed out"),
            other => write!(f, "{other}"),
        }
    }
}

impl DynamoStore {
    /// A store over `table` with this client and program; history and idempotency records
    /// expire after `ttl_days`.
    pub fn new(
        client: Client,
        table: impl Into<String>,
        program: Arc<Program>,
        ttl_days: u64,
    ) -> Self {
        DynamoStore {
            client,
            table: table.into(),
            current: Arc::new(RwLock::new(Current {
                program: Arc::clone(&program),
                generation: 0,
            })),
            program,
            generation: 0,
            ttl_secs: i64::try_from(ttl_days.saturating_mul(86_400)).unwrap_or(i64::MAX),
            counters: Arc::new(Counters::default()),
            previous: None,
            renamed_from: Vec::new(),
            refresh: DEFAULT_REFRESH,
        }
    }

    /// Refreshes a decaying lead's stored figures at this granularity (ticks visit a lead
    /// sooner only when a stage can start to hold).
    pub fn with_refresh(mut self, refresh: Micros) -> Self {
        self.refresh = refresh.max(SECOND);
        self
    }

    /// Lets the store rewrite leads stamped with these other names of its rule set (a rename:
    /// `LEADSCORE_RENAMED_FROM`, `leadscore dynamodb rescore --renamed-from`). Without it, a
    /// lead stamped with another rule set's name is never rewritten: the store refuses it
    /// ([`DynamoStore::foreign_error`]), so a function started on the wrong rules cannot
    /// refit the leads of the right ones.
    pub fn with_renamed_from(mut self, names: impl IntoIterator<Item = String>) -> Self {
        self.renamed_from
            .extend(names.into_iter().filter(|n| !n.is_empty()));
        self
    }

    /// Reads records written by position (before states were stored by name) under
    /// `previous`, the rules that wrote them (`leadscore dynamodb rescore --previous-rules`):
    /// such a record, stamped with the hash of `previous`, is read by position under them,
    /// named, and loaded by name under the store's rules, and so rescored like any lead
    /// evaluated under other rules (SPEC §7). Without it such a record loads only under the
    /// very rules that wrote it.
    pub fn with_previous_rules(mut self, previous: Arc<Program>) -> Self {
        self.previous = Some(previous);
        self
    }

    /// The rules the store and its clones run now.
    pub(crate) fn current(&self) -> Current {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// This store as of now: its rules are the latest any clone loaded. One request runs on
    /// one view from start to end, so its transitions are all under one set of rules.
    pub fn view(&self) -> DynamoStore {
        let current = self.current();
        let mut view = self.clone();
        view.program = current.program;
        view.generation = current.generation;
        view
    }

    /// A store configured from the environment (SPEC §6): `LEADSCORE_TABLE`,
    /// `LEADSCORE_HISTORY_TTL_DAYS`, and the AWS SDK's own variables.
    pub async fn from_env(program: Arc<Program>) -> Result<Self, StoreError> {
        let table = std::env::var("LEADSCORE_TABLE")
            .map_err(|_| StoreError::Failed("`LEADSCORE_TABLE` is not set".into()))?;
        let ttl_days = match std::env::var("LEADSCORE_HISTORY_TTL_DAYS") {
            Ok(v) => v.trim().parse().map_err(|_| {
                StoreError::Failed(format!(
                    "`LEADSCORE_HISTORY_TTL_DAYS` is `{v}`, not a number of days"
                ))
            })?,
            Err(_) => DEFAULT_HISTORY_TTL_DAYS,
        };
        let renamed_from = std::env::var("LEADSCORE_RENAMED_FROM").unwrap_or_default();
        let refresh = match std::env::var("LEADSCORE_DECAY_REFRESH_HOURS") {
            Ok(v) => v
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|h| *h > 0)
                .map(|h| Micros::from(h) * 3600 * SECOND)
                .ok_or_else(|| {
                    StoreError::Failed(format!(
                        "`LEADSCORE_DECAY_REFRESH_HOURS` is `{v}`, not a whole number of hours"
                    ))
                })?,
            Err(_) => DEFAULT_REFRESH,
        };
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Ok(
            DynamoStore::new(Client::new(&config), table, program, ttl_days)
                .with_renamed_from(renamed_from.split(',').map(|n| n.trim().to_owned()))
                .with_refresh(refresh),
        )
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The counters (requests sent, retries).
    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    /// DynamoDB requests sent so far.
    pub fn requests(&self) -> u64 {
        self.counters.requests.load(Ordering::Relaxed)
    }

    fn count(&self) {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
    }

    fn expires_at(&self) -> i64 {
        now_micros() / SECOND + self.ttl_secs
    }

    async fn get_state(&self, id: &str) -> Result<Option<StateItem>, CommitError> {
        self.count();
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(lead_pk(id)))
            .key("sk", s("STATE"))
            .consistent_read(true)
            .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
            .send()
            .await
            .map_err(|e| CommitError::sdk("read lead", &e))?;
        self.counters.capacity.read(out.consumed_capacity());
        self.state_of(id, out.item).await
    }

    /// Reads the state items of `ids` with consistent `BatchGetItem`s (100 keys each), by
    /// id; an id without an item is absent.
    async fn get_states(
        &self,
        ids: &[String],
    ) -> Result<HashMap<String, HashMap<String, AttributeValue>>, StoreError> {
        let mut found = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(100) {
            let mut keys = KeysAndAttributes::builder().consistent_read(true);
            for id in chunk {
                keys = keys.keys(HashMap::from([
                    ("pk".to_owned(), s(lead_pk(id))),
                    ("sk".to_owned(), s("STATE")),
                ]));
            }
            let mut pending = Some(
                keys.build()
                    .map_err(|e| StoreError::Failed(e.to_string()))?,
            );
            for attempt in 0..MAX_ATTEMPTS * 4 {
                let Some(request) = pending.take() else { break };
                if attempt > 0 {
                    tokio::time::sleep(backoff(attempt.min(6))).await;
                }
                self.count();
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
                    .send()
                    .await
                    .map_err(|e| store_error("read due leads", &e))?;
                self.counters.capacity.read(out.consumed_capacity());
                for item in out
                    .responses
                    .and_then(|mut r| r.remove(&self.table))
                    .into_iter()
                    .flatten()
                {
                    if let Some(AttributeValue::S(pk)) = item.get("pk") {
                        if let Some(id) = pk.strip_prefix("LEAD#") {
                            found.insert(id.to_owned(), item);
                        }
                    }
                }
                pending = out
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                    .filter(|k| !k.keys.is_empty());
            }
            if pending.is_some() {
                return Err(StoreError::Unavailable(
                    "due leads left unread after retries".into(),
                ));
            }
        }
        Ok(found)
    }

    /// A state item as read (`raw`, `None` when there is none): decoded, an erasure that
    /// stopped halfway finished.
    async fn state_of(
        &self,
        id: &str,
        raw: Option<HashMap<String, AttributeValue>>,
    ) -> Result<Option<StateItem>, CommitError> {
        match raw {
            None => Ok(None),
            Some(mut raw) => {
                let text = match raw.remove("state") {
                    Some(AttributeValue::S(text)) => Some(text),
                    _ => None,
                };
                let mut item: StateItem = serde_dynamo::from_item(raw).map_err(|e| {
                    CommitError::failed(format!("lead `{id}` is not a valid state item: {e}"))
                })?;
                if let Some(since) = item.erasing {
                    if now_micros().saturating_sub(since) < ERASE_STALE {
                        return Err(CommitError::Erasing(format!("lead `{id}` is being erased")));
                    }
                    // an erasure that stopped halfway: finish it, and there is no lead
                    self.finish_erasure(id, &item)
                        .await
                        .map_err(CommitError::Transient)?;
                    return Ok(None);
                }
                item.state = text
                    .map(|text| self.decode_state(id, &item, &text))
                    .transpose()?;
                Ok(Some(item))
            }
        }
    }

    /// A stored state under this store's rules (SPEC §7): found by name. A record written by
    /// position (before states were kept by name) is read under the rules that wrote it: the
    /// store's own, or the previous rules it was given ([`DynamoStore::with_previous_rules`]),
    /// whose names then carry it over to the store's rules.
    fn decode_state(
        &self,
        id: &str,
        item: &StateItem,
        text: &str,
    ) -> Result<LeadState, CommitError> {
        let program = &self.program;
        match serde_json::from_str::<StoredState>(text) {
            Ok(stored) => Ok(stored.into_state(program)),
            Err(by_name) => {
                let by_position = |writer: &Program| {
                    let mut state = serde_json::from_str::<LeadState>(text).ok()?;
                    state.fit_to(writer);
                    state.assume_announced(writer);
                    Some(state)
                };
                if item.rules_hash == program.hash {
                    if let Some(state) = by_position(program) {
                        return Ok(state);
                    }
                }
                if let Some(previous) = self.previous.as_ref() {
                    if item.rules_hash == previous.hash {
                        if let Some(state) = by_position(previous) {
                            return Ok(
                                StoredState::from_state(previous, &state).into_state(program)
                            );
                        }
                    }
                }
                let help = match &self.previous {
                    Some(previous) => format!(
                        "; `--previous-rules` gave the rules `{}` ({}), not those",
                        previous.name, previous.hash
                    ),
                    None => "; `leadscore dynamodb rescore --previous-rules RULES` reads it \
                             with the rules that wrote it"
                        .to_owned(),
                };
                Err(CommitError::failed(format!(
                    "lead `{id}` has a state this version cannot read ({by_name}); it was \
                     written by position under the rules `{}` ({}), not the ones running{help}",
                    item.rules, item.rules_hash
                )))
            }
        }
    }

    /// Reads a lead, following merged ids to the known lead.
    async fn load(&self, id: &str) -> Result<Loaded, CommitError> {
        let mut current = id.to_owned();
        for _ in 0..MAX_HOPS {
            match self.get_state(&current).await? {
                Some(StateItem {
                    merged_into: Some(next),
                    ..
                }) => current = next,
                item => {
                    return Ok(Loaded {
                        known: current,
                        item,
                        rescored: Vec::new(),
                        partial: false,
                    })
                }
            }
        }
        Err(CommitError::failed(format!(
            "lead `{id}` is merged through more than {MAX_HOPS} ids"
        )))
    }

    /// Whether a state item was written under published rules newer than this store's
    /// (noted in the counters, so that [`LeadStore::apply`] loads them and tries again):
    /// such a lead is never rewritten, or rescored, under older rules.
    fn is_newer(&self, item: &StateItem) -> bool {
        if item.rules_generation > self.generation {
            self.counters
                .newer
                .fetch_max(item.rules_generation, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// Whether a state item was written by a rule set of another name (not one this store
    /// was told it was renamed from): such a lead is never rewritten.
    fn is_foreign(&self, item: &StateItem) -> bool {
        !item.rules.is_empty()
            && item.rules != self.program.name
            && !self.renamed_from.contains(&item.rules)
    }

    /// Whether a state item carries a name the rule set was renamed from: a rescore
    /// restamps it with the current name.
    fn is_renamed(&self, item: &StateItem) -> bool {
        item.rules != self.program.name && self.renamed_from.contains(&item.rules)
    }

    /// The error of a lead stamped with another rule set's name: nothing is written.
    fn foreign_error(&self, id: &str, item: &StateItem) -> StoreError {
        StoreError::Failed(format!(
            "lead `{id}` was scored by rule set `{}`, and these rules are `{}`: it is not \
             rewritten (run the rules that scored it; after a rename, set \
             `LEADSCORE_RENAMED_FROM={}`)",
            item.rules, self.program.name, item.rules
        ))
    }

    /// The error of a lead written under newer published rules.
    fn newer_error(&self, id: &str, item: &StateItem) -> StoreError {
        StoreError::Unavailable(format!(
            "lead `{id}` was written under published rules of generation {}; this instance runs generation {}",
            item.rules_generation, self.generation
        ))
    }

    /// Whether a state item was computed under other rules than this store's: its version
    /// differs (a record from before versions counts as current when its files are the same).
    fn is_stale(&self, item: &StateItem) -> bool {
        if item.rules_version.is_empty() {
            item.rules_hash != self.program.hash
        } else {
            item.rules_version != self.program.version
        }
    }

    /// Rescores a lead stamped with another version (SPEC §7), in memory: its kept calls
    /// (its own partition and those of the ids merged into it) are re-evaluated under this
    /// store's rules ([`rescored_state`]). The transitions it finds wait in `rescored` for
    /// the commit that writes the state; a read answers the rescored view and writes nothing.
    async fn rescore_stale(&self, lead: &mut Loaded) -> Result<(), CommitError> {
        let Some(item) = lead.item.as_mut() else {
            return Ok(());
        };
        if self.is_newer(item) || !self.is_stale(item) {
            return Ok(());
        }
        let Some(old) = item.state.as_ref() else {
            return Ok(());
        };
        let mut calls = self.history(&lead.known).await?;
        for merged in &item.merged {
            calls.extend(self.history(merged).await?);
        }
        let rescored = rescored_state(&self.program, &mut calls, old);
        item.state = Some(rescored.state);
        item.partial |= rescored.partial;
        lead.rescored = rescored.transitions;
        lead.partial = rescored.partial;
        Ok(())
    }

    /// [`DynamoStore::load`], then [`DynamoStore::rescore_stale`].
    async fn load_current(&self, id: &str) -> Result<Loaded, CommitError> {
        let mut lead = self.load(id).await?;
        self.rescore_stale(&mut lead).await?;
        Ok(lead)
    }

    /// Retries `step` on transient errors with backoff; the last error becomes a
    /// [`StoreError`].
    async fn load_retrying(&self, id: &str, current: bool) -> Result<Loaded, StoreError> {
        let mut last = StoreError::Unavailable("no answer".into());
        for attempt in 0..4 {
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt)).await;
            }
            let loaded = if current {
                self.load_current(id).await
            } else {
                self.load(id).await
            };
            match loaded {
                Ok(loaded) => return Ok(loaded),
                Err(CommitError::Transient(e)) => last = e,
                // a lead being erased reads as no lead
                Err(CommitError::Erasing(_)) => {
                    return Ok(Loaded {
                        known: id.to_owned(),
                        item: None,
                        rescored: Vec::new(),
                        partial: false,
                    })
                }
                Err(other) => return Err(fatal(other)),
            }
        }
        Err(last)
    }

    /// Every item a query gives, page after page.
    async fn query_all(
        &self,
        query: QueryFluentBuilder,
    ) -> Result<Vec<Item>, SdkError<QueryError>> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            self.count();
            let out = query
                .clone()
                .set_exclusive_start_key(start.take())
                .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
                .send()
                .await?;
            self.counters.capacity.read(out.consumed_capacity());
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(items),
            }
        }
    }

    /// Every call kept for a lead's partition, with arrival keys.
    async fn history(&self, id: &str) -> Result<Vec<(u64, Call)>, CommitError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :call)")
            .expression_attribute_values(":pk", s(lead_pk(id)))
            .expression_attribute_values(":call", s("CALL#"))
            .consistent_read(true);
        let items = self
            .query_all(query)
            .await
            .map_err(|e| CommitError::sdk("read history", &e))?;
        let mut calls = Vec::with_capacity(items.len());
        for item in &items {
            match kept_call(item) {
                Ok((arrival, call, _)) => calls.push((arrival, call)),
                Err(reason) => self.quarantine(id, item, &reason).await,
            }
        }
        Ok(calls)
    }

    /// Moves an unreadable history item aside (SPEC §5 keeps calls; one that cannot be read
    /// must not make its lead fail forever): copied to `QUARANTINE#<sk>` in the same
    /// partition with the reason, and deleted, in one transaction; logged
    /// (`storage_error` = `quarantined`, which the deployed metric filter counts) and
    /// counted. The lead is evaluated without it, so it is `partial`. When the move fails, the
    /// item stays where it is and is skipped again at the next read.
    async fn quarantine(&self, id: &str, item: &Item, reason: &str) {
        self.counters.quarantined.fetch_add(1, Ordering::Relaxed);
        let sk = match item.get("sk") {
            Some(AttributeValue::S(sk)) => sk.clone(),
            _ => String::new(),
        };
        tracing::error!(
            storage_error = "quarantined",
            lead = id,
            sk = sk.as_str(),
            reason,
            "unreadable history item quarantined; the lead is partial"
        );
        let mut copy = item.clone();
        copy.insert("sk".into(), s(format!("QUARANTINE#{sk}")));
        copy.insert("quarantine_reason".into(), s(reason));
        copy.insert("quarantined_at".into(), n(now_micros() / SECOND));
        let moved = async {
            let delete = aws_sdk_dynamodb::types::Delete::builder()
                .table_name(&self.table)
                .key("pk", s(lead_pk(id)))
                .key("sk", s(&sk))
                .condition_expression("attribute_exists(pk)")
                .build()
                .map_err(CommitError::failed)?;
            self.transact(vec![
                TransactWriteItem::builder().put(self.put(copy)?).build(),
                TransactWriteItem::builder().delete(delete).build(),
            ])
            .await
        };
        if let Err(err) = moved.await {
            tracing::warn!(lead = id, sk = sk.as_str(), error = %fatal(err), "the quarantined item stays in place");
        }
    }

    async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<(), CommitError> {
        if items.is_empty() {
            return Ok(());
        }
        self.count();
        let priced = super::capacity::transaction_units(&items);
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
            .send()
            .await;
        match result {
            Ok(out) => {
                self.counters
                    .capacity
                    .wrote_transaction(out.consumed_capacity(), priced);
                Ok(())
            }
            Err(err) => {
                if let Some(aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(e)) = err.as_service_error() {
                    let failed: Vec<usize> = e
                        .cancellation_reasons()
                        .iter()
                        .enumerate()
                        .filter(|(_, r)| r.code() == Some("ConditionalCheckFailed"))
                        .map(|(i, _)| i)
                        .collect();
                    if failed.is_empty() {
                        let message = format!(
                            "transaction cancelled: {}",
                            e.message().unwrap_or("conflict")
                        );
                        let throttled = e.cancellation_reasons().iter().any(|r| {
                            matches!(
                                r.code(),
                                Some("ThrottlingError" | "ProvisionedThroughputExceeded")
                            )
                        });
                        return Err(CommitError::Transient(if throttled {
                            StoreError::Throttled(message)
                        } else {
                            StoreError::Unavailable(message)
                        }));
                    }
                    return Err(CommitError::Cancelled(failed));
                }
                Err(CommitError::sdk("commit", &err))
            }
        }
    }

    fn put(&self, item: Item) -> Result<Put, CommitError> {
        Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .build()
            .map_err(CommitError::failed)
    }

    /// The state put, guarded by the version read (or by absence for a new lead).
    fn state_put(
        &self,
        item: &StateItem,
        expected: Option<u64>,
    ) -> Result<TransactWriteItem, CommitError> {
        self.state_put_of(item, expected, None)
    }

    /// The state put, guarded by the version read and, given `incarnation`, by the first
    /// arrival read: a lead erased and created again meanwhile starts at version 1 again,
    /// but never with the same first arrival.
    fn state_put_of(
        &self,
        item: &StateItem,
        expected: Option<u64>,
        incarnation: Option<u64>,
    ) -> Result<TransactWriteItem, CommitError> {
        let mut map: Item = serde_dynamo::to_item(item).map_err(CommitError::failed)?;
        if let Some(state) = &item.state {
            let stored = StoredState::from_state(&self.program, state);
            let text = serde_json::to_string(&stored).map_err(CommitError::failed)?;
            map.insert("state".into(), s(text));
        }
        let mut put = Put::builder().table_name(&self.table).set_item(Some(map));
        put = match (expected, incarnation) {
            // a record from before first arrivals were kept has none
            (Some(v), Some(0)) => put
                .condition_expression(
                    "version = :v AND (attribute_not_exists(first_arrival) OR first_arrival = :fa)",
                )
                .expression_attribute_values(":v", n(v))
                .expression_attribute_values(":fa", n(0)),
            (Some(v), Some(first)) => put
                .condition_expression("version = :v AND first_arrival = :fa")
                .expression_attribute_values(":v", n(v))
                .expression_attribute_values(":fa", n(first)),
            (Some(v), None) => put
                .condition_expression("version = :v")
                .expression_attribute_values(":v", n(v)),
            (None, _) => put.condition_expression("attribute_not_exists(pk)"),
        };
        let put = put.build().map_err(CommitError::failed)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    fn state_item(
        &self,
        known: &str,
        version: u64,
        state: LeadState,
        merged: Vec<String>,
        first_arrival: u64,
        hits: Option<&LatestHits>,
    ) -> StateItem {
        let program = &self.program;
        // visited when a stage can first start to hold or a figure needs refreshing
        let wake = leadscore_rules::wake::next_wake(program, &state, self.refresh);
        let due = wake.is_some();
        // the first whole second at or after it: a tick at that second visits it
        let due_at = wake.map_or(0, |t| t.saturating_add(SECOND - 1).div_euclid(SECOND));
        StateItem {
            pk: lead_pk(known),
            sk: "STATE".into(),
            version,
            merged_into: None,
            score: Some(state.score()),
            stage: state.stage(program).map(str::to_owned),
            state: Some(state),
            merged,
            first_arrival,
            latest_hits: hits.and_then(|h| {
                serde_json::to_string(&StoredHits {
                    at: h.at,
                    trace: h.trace.clone(),
                })
                .ok()
            }),
            rules: program.name.clone(),
            rules_hash: program.hash.clone(),
            rules_version: program.version.clone(),
            rules_generation: self.generation,
            due_shard: due.then(|| shard_of(known)),
            due_at: due.then_some(due_at),
            partial: false,
            erasing: None,
        }
    }

    /// The idempotency record and the kept call of one accepted call.
    fn call_items(
        &self,
        known: &str,
        accepted: &Accepted,
        arrival: u64,
    ) -> Result<[TransactWriteItem; 2], CommitError> {
        let expires = n(self.expires_at());
        let id = &accepted.call.message_id;
        let msg = Put::builder()
            .table_name(&self.table)
            .item("pk", s(format!("MSG#{id}")))
            .item("sk", s("MSG"))
            .item("lead", s(known))
            .item("expires_at", expires.clone())
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(CommitError::failed)?;
        let record = serde_json::to_string(&accepted.record).map_err(CommitError::failed)?;
        let mut kept = Item::new();
        kept.insert("pk".into(), s(lead_pk(known)));
        kept.insert(
            "sk".into(),
            s(format!(
                "CALL#{}#{id}",
                format_rfc3339(accepted.call.event.time)
            )),
        );
        kept.insert("message_id".into(), s(id.clone()));
        kept.insert("arrival".into(), n(arrival));
        kept.insert("record".into(), s(record));
        kept.insert("expires_at".into(), expires);
        Ok([
            TransactWriteItem::builder().put(msg).build(),
            TransactWriteItem::builder().put(self.put(kept)?).build(),
        ])
    }

    /// The outbox item of a message of lead `known`.
    fn note_item(&self, known: &str, message: &Message) -> Result<TransactWriteItem, CommitError> {
        let note =
            OutboxNote::of(known, message, self.expires_at()).map_err(CommitError::failed)?;
        let item = serde_dynamo::to_item(note).map_err(CommitError::failed)?;
        Ok(TransactWriteItem::builder().put(self.put(item)?).build())
    }

    /// The pointer that replaces a merged lead's state: `other` now follows `known`.
    fn pointer_item(&self, other: &str, known: &str, version: u64) -> StateItem {
        StateItem {
            pk: lead_pk(other),
            sk: "STATE".into(),
            version,
            merged_into: Some(known.to_owned()),
            rules: self.program.name.clone(),
            rules_hash: self.program.hash.clone(),
            rules_version: self.program.version.clone(),
            rules_generation: self.generation,
            ..StateItem::default()
        }
    }

    /// Writes a [`Commit`] in one transaction: the lead's record guarded by the version read
    /// (or by absence), a merge's pointer guarded by the absorbed lead's version, each call's
    /// idempotency record (which must not exist) and kept call, and an outbox item a message.
    /// Returns the record written; [`CommitError::Refused`] when a guard failed (nothing
    /// written).
    async fn commit(&self, commit: &Commit<'_>) -> Result<(), CommitError> {
        if commit.writes() > MAX_TRANSACTION_ITEMS {
            return Err(CommitError::failed(format!(
                "a commit of {} writes for lead `{}` is over DynamoDB's {MAX_TRANSACTION_ITEMS} a transaction",
                commit.writes(),
                commit.known
            )));
        }
        let Commit {
            known,
            expected,
            incarnation,
            record,
            calls,
            messages,
            absorbed,
        } = commit;
        let mut item = self.state_item(
            known,
            commit.version(),
            record.state.clone(),
            record.merged.clone(),
            record.first_arrival,
            record.hits.as_ref(),
        );
        item.partial = record.partial;
        let mut items = vec![self.state_put_of(&item, *expected, Some(*incarnation))?];
        if let Some((other, was)) = absorbed {
            let pointer = self.pointer_item(other, known, was.map_or(1, |v| v + 1));
            items.push(self.state_put(&pointer, *was)?);
        }
        // where each call's idempotency record is: a failed guard there is a duplicate
        let mut call_at: Vec<(usize, &str)> = Vec::with_capacity(calls.len());
        for (accepted, arrival) in calls {
            let [msg, kept] = self.call_items(known, accepted, *arrival)?;
            call_at.push((items.len(), accepted.call.message_id.as_str()));
            items.push(msg);
            items.push(kept);
        }
        for note in messages {
            let message = note.message.as_ref().ok_or_else(|| {
                CommitError::failed(format!("a note for `{}` without its message", note.target))
            })?;
            items.push(self.note_item(known, message)?);
        }
        match self.transact(items).await {
            Ok(()) => Ok(()),
            Err(CommitError::Cancelled(failed)) => {
                let mut refused = Refused::default();
                for index in failed {
                    match call_at.iter().find(|(at, _)| *at == index) {
                        Some((_, id)) => refused.duplicates.push((*id).to_owned()),
                        None => refused.conflict = true,
                    }
                }
                Err(CommitError::Refused(refused))
            }
            Err(other) => Err(other),
        }
    }

    /// Ticks every due lead at time `now` (SPEC §6 `decay`): [`DynamoStore::tick_due_until`]
    /// with no deadline.
    pub async fn tick_due(&self, now: Micros) -> Result<TickReport, StoreError> {
        self.tick_due_until(now, None).await
    }

    /// Ticks the due leads at time `now` (SPEC §6 `decay`): the leads come from the sparse
    /// `due` index (no scan), shard after shard, [`TICK_CONCURRENCY`] at a time; each is
    /// re-read, ticked and committed with its version guard, and written with the time it is
    /// next due ([`leadscore_rules::wake::next_wake`]). No lead is started at or after
    /// `until`: the tick stops there, and the shard it stopped in is kept in the table
    /// (`DECAY`/`CURSOR`), so the next tick starts with it and every shard is served in turn.
    pub async fn tick_due_until(
        &self,
        now: Micros,
        until: Option<std::time::Instant>,
    ) -> Result<TickReport, StoreError> {
        let mut report = TickReport::default();
        let now_secs = now.div_euclid(SECOND);
        let first = self.tick_cursor().await?;
        report.first_shard = first;
        for k in 0..DUE_SHARDS {
            let shard = (first + k) % DUE_SHARDS;
            let query = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(DUE_INDEX)
                .key_condition_expression("due_shard = :shard AND due_at <= :now")
                .expression_attribute_values(":shard", s(format!("DUE#{shard}")))
                .expression_attribute_values(":now", n(now_secs));
            let items = self
                .query_all(query)
                .await
                .map_err(|e| store_error("query due leads", &e))?;
            let ids: Vec<String> = items
                .iter()
                .filter_map(|item| match item.get("pk") {
                    Some(AttributeValue::S(pk)) => pk.strip_prefix("LEAD#").map(str::to_owned),
                    _ => None,
                })
                .collect();
            let mut running = tokio::task::JoinSet::new();
            let mut left = ids.into_iter();
            let mut read: HashMap<String, HashMap<String, AttributeValue>> = HashMap::new();
            let mut covered: std::collections::HashSet<String> = std::collections::HashSet::new();
            loop {
                let late = until.is_some_and(|u| std::time::Instant::now() >= u);
                while running.len() < TICK_CONCURRENCY && !late {
                    let Some(id) = left.next() else { break };
                    // the next hundred due leads in one read
                    if !covered.contains(&id) {
                        let next: Vec<String> = std::iter::once(id.clone())
                            .chain(left.clone().take(99))
                            .collect();
                        read = self.get_states(&next).await?;
                        covered = next.into_iter().collect();
                    }
                    let raw = read.remove(&id);
                    let store = self.clone();
                    running.spawn(async move {
                        let ticked = store.tick_read(&id, now, raw).await;
                        (id, ticked)
                    });
                }
                let Some(done) = running.join_next().await else {
                    break;
                };
                let (id, ticked) =
                    done.map_err(|e| StoreError::Failed(format!("tick task: {e}")))?;
                report.visited += 1;
                // one lead that cannot be ticked now must not stop the others
                match ticked {
                    Ok(Some(notes)) => {
                        report.committed += 1;
                        report.notifications += notes;
                    }
                    Ok(None) => {}
                    Err(err) => {
                        report.failed += 1;
                        if err.is_transient() {
                            tracing::warn!(lead = %id, storage_error = err.kind(), error = %err, "tick failed; the lead stays due");
                        } else {
                            tracing::error!(lead = %id, storage_error = err.kind(), error = %err, "tick failed; the lead stays due");
                        }
                    }
                }
            }
            let untouched = left.count() as u64;
            if untouched > 0 {
                // out of time: the next tick starts with this shard
                report.left = untouched;
                report.stopped_in = Some(shard);
                self.set_tick_cursor(shard).await?;
                tracing::warn!(
                    shard,
                    left = untouched,
                    "tick out of time; the next starts here"
                );
                return Ok(report);
            }
        }
        Ok(report)
    }

    /// The shard the next tick starts with (0 when none was kept).
    async fn tick_cursor(&self) -> Result<u32, StoreError> {
        self.count();
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(TICK_CURSOR_PK))
            .key("sk", s(TICK_CURSOR_SK))
            .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
            .send()
            .await
            .map_err(|e| store_error("read the tick cursor", &e))?;
        self.counters.capacity.read(out.consumed_capacity());
        Ok(match out.item.as_ref().and_then(|i| i.get("next_shard")) {
            Some(AttributeValue::N(v)) => v.parse::<u32>().unwrap_or(0) % DUE_SHARDS,
            _ => 0,
        })
    }

    async fn set_tick_cursor(&self, shard: u32) -> Result<(), StoreError> {
        self.count();
        let out = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(TICK_CURSOR_PK))
            .item("sk", s(TICK_CURSOR_SK))
            .item("next_shard", n(i64::from(shard)))
            .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
            .send()
            .await
            .map_err(|e| store_error("write the tick cursor", &e))?;
        self.counters.capacity.wrote(out.consumed_capacity());
        Ok(())
    }

    /// Ticks one lead at `now`; returns the notifications written, or `None` when there was
    /// nothing to tick. A lead stamped with other rules is rescored first (SPEC §7).
    pub async fn tick_lead(&self, id: &str, now: Micros) -> Result<Option<u64>, StoreError> {
        Ok(self
            .refresh_lead(id, Some(now))
            .await?
            .filter(|r| r.committed)
            .map(|r| r.told.len() as u64))
    }

    /// [`DynamoStore::tick_lead`] from a state item already read (by a batch read): the
    /// first attempt starts from it, a conflict reads again.
    async fn tick_read(
        &self,
        id: &str,
        now: Micros,
        raw: Option<HashMap<String, AttributeValue>>,
    ) -> Result<Option<u64>, StoreError> {
        let read = self.state_of(id, raw).await;
        Ok(self
            .refresh_from(id, Some(now), Some(read))
            .await?
            .filter(|r| r.committed)
            .map(|r| r.told.len() as u64))
    }

    /// Brings one lead (a known id) up to date and commits it under its version: a lead
    /// stamped with other rules is rescored (`rescore_stale`), then, with
    /// `tick`, ticked at that time. Conflicts are retried. `None`: no such lead (or a merged
    /// id). A current lead with no tick is left as it is (`committed` false).
    pub async fn refresh_lead(
        &self,
        id: &str,
        tick: Option<Micros>,
    ) -> Result<Option<Refreshed>, StoreError> {
        self.refresh_from(id, tick, None).await
    }

    /// [`DynamoStore::refresh_lead`], its first read given (`pre`) or made.
    async fn refresh_from(
        &self,
        id: &str,
        tick: Option<Micros>,
        mut pre: Option<Result<Option<StateItem>, CommitError>>,
    ) -> Result<Option<Refreshed>, StoreError> {
        let program = Arc::clone(&self.program);
        let mut last_error = StoreError::Unavailable("too many conflicting writes".into());
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                self.counters.retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(backoff(attempt)).await;
            }
            let read = match pre.take() {
                Some(read) => read,
                None => self.get_state(id).await,
            };
            let item = match read {
                Ok(Some(item)) if item.state.is_some() => item,
                // no lead, a merged id, or a lead being erased
                Ok(_) | Err(CommitError::Erasing(_)) => return Ok(None),
                Err(CommitError::Transient(e)) => {
                    last_error = e;
                    continue;
                }
                Err(CommitError::Fatal(e)) => return Err(e),
                Err(CommitError::Cancelled(_) | CommitError::Refused(_)) => continue,
            };
            if self.is_newer(&item) {
                return Err(self.newer_error(id, &item));
            }
            if self.is_foreign(&item) {
                return Err(self.foreign_error(id, &item));
            }
            let stale = self.is_stale(&item);
            let renamed = self.is_renamed(&item);
            if !stale && !renamed && tick.is_none() {
                return Ok(Some(Refreshed::default()));
            }
            let mut lead = Loaded {
                known: id.to_owned(),
                item: Some(item.clone()),
                rescored: Vec::new(),
                partial: false,
            };
            match self.rescore_stale(&mut lead).await {
                Ok(()) => {}
                Err(CommitError::Fatal(e)) => return Err(e),
                Err(CommitError::Erasing(_)) => return Ok(None),
                Err(CommitError::Transient(e)) => {
                    last_error = e;
                    continue;
                }
                Err(CommitError::Cancelled(_) | CommitError::Refused(_)) => continue,
            }
            let incarnation = lead.item.as_ref().map_or(0, |i| i.first_arrival);
            let Some(state) = lead.item.and_then(|i| i.state) else {
                return Ok(None);
            };
            let (state, messages) =
                refresh::<Whole>(&program, (id, incarnation), state, &lead.rescored, tick)
                    .map_err(|e| StoreError::Failed(e.to_string()))?;
            let changed = item.state.as_ref() != Some(&state) || renamed;
            let told = messages.iter().map(|n| n.as_replay_prints(id)).collect();
            let commit = Commit {
                known: id.to_owned(),
                expected: Some(item.version),
                incarnation: item.first_arrival,
                record: Record {
                    state,
                    merged: item.merged.clone(),
                    first_arrival: item.first_arrival,
                    hits: item.hits(),
                    partial: item.partial || lead.partial,
                },
                calls: Vec::new(),
                messages,
                absorbed: None,
            };
            match self.commit(&commit).await {
                Ok(()) => {
                    return Ok(Some(Refreshed {
                        committed: true,
                        rescored: stale,
                        changed,
                        partial: lead.partial,
                        told,
                    }))
                }
                Err(CommitError::Refused(_) | CommitError::Cancelled(_)) => {}
                Err(CommitError::Transient(e)) => last_error = e,
                Err(CommitError::Erasing(_)) => return Ok(None),
                Err(CommitError::Fatal(e)) => return Err(e),
            }
        }
        Err(last_error)
    }

    /// One page of a scan from `start` (at most [`SCAN_PAGE`] items read), retried with
    /// backoff on throttling and transient errors.
    async fn scan_page(
        &self,
        scan: &ScanFluentBuilder,
        start: Option<Item>,
        what: &str,
    ) -> Result<ScanOutput, StoreError> {
        let mut attempt = 0;
        loop {
            self.count();
            let result = scan
                .clone()
                .limit(SCAN_PAGE)
                .set_exclusive_start_key(start.clone())
                .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
                .send()
                .await;
            match result {
                Ok(out) => {
                    self.counters.capacity.read(out.consumed_capacity());
                    return Ok(out);
                }
                Err(e) if transient(&e) && attempt + 1 < MAX_ATTEMPTS => {
                    attempt += 1;
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(e) => return Err(store_error(what, &e)),
            }
        }
    }

    /// Every kept call of every lead, as stored (the call as received, `messageId` filled
    /// in), in time order, ties by arrival (SPEC §7 `export --events`): a file `replay`,
    /// `report` and `compare` read as they read any events.
    pub async fn export_calls(&self) -> Result<Vec<String>, StoreError> {
        let mut calls: Vec<(Micros, u64, String)> = Vec::new();
        let mut start: Option<Item> = None;
        let scan = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression("begins_with(sk, :call)")
            .expression_attribute_values(":call", s("CALL#"))
            .consistent_read(true);
        loop {
            let out = self
                .scan_page(&scan, start.take(), "scan kept calls")
                .await?;
            for item in out.items.unwrap_or_default() {
                match kept_call(&item) {
                    Ok((arrival, call, record)) => {
                        calls.push((call.event.time, arrival, record.to_owned()));
                    }
                    Err(reason) => {
                        let key = |k: &str| match item.get(k) {
                            Some(AttributeValue::S(v)) => v.clone(),
                            _ => String::new(),
                        };
                        tracing::warn!(
                            pk = key("pk"),
                            sk = key("sk"),
                            reason,
                            "unreadable kept call left out of the export"
                        );
                    }
                }
            }
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        calls.sort_by_key(|(time, arrival, _)| (*time, *arrival));
        Ok(calls.into_iter().map(|(_, _, record)| record).collect())
    }

    /// Rescores every lead stamped with other rules than this store's (SPEC §7 `rescore`),
    /// scanning the table in `segments` parallel segments. Safe beside live traffic (each
    /// lead is committed under its version, conflicts retried) and idempotent (a lead
    /// already current is skipped without being read again). Notifications come back as
    /// `replay` prints them, sorted by time, then lead.
    pub async fn rescore_all(
        &self,
        segments: u32,
        on_progress: Arc<dyn Fn(RescoreProgress) + Send + Sync>,
    ) -> Result<TableRescore, StoreError> {
        let segments = segments.max(1);
        let mut tasks = tokio::task::JoinSet::new();
        for segment in 0..segments {
            let store = self.clone();
            let on_progress = Arc::clone(&on_progress);
            tasks.spawn(async move {
                store
                    .rescore_segment(segment, segments, &*on_progress)
                    .await
            });
        }
        let mut total = TableRescore::default();
        while let Some(done) = tasks.join_next().await {
            let part = done.map_err(|e| StoreError::Failed(format!("rescore task: {e}")))??;
            total.leads += part.leads;
            total.changed += part.changed;
            total.partial += part.partial;
            total.notifications.extend(part.notifications);
        }
        total.notifications.sort_by(|a, b| {
            let key = |v: &Value| (v["at"].to_string(), v["lead"].to_string());
            key(a).cmp(&key(b))
        });
        Ok(total)
    }

    /// The number of items in the table, of every kind, as DynamoDB last counted them
    /// (`DescribeTable`'s `ItemCount`, refreshed about every six hours): the length of a
    /// rescore's progress bar, whose scan reads every item.
    pub async fn item_count(&self) -> Result<u64, StoreError> {
        self.count();
        let out = self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|e| store_error("describe the table", &e))?;
        Ok(out
            .table()
            .and_then(|t| t.item_count())
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0))
    }

    async fn rescore_segment(
        &self,
        segment: u32,
        segments: u32,
        on_progress: &(dyn Fn(RescoreProgress) + Send + Sync),
    ) -> Result<TableRescore, StoreError> {
        let mut report = TableRescore::default();
        let mut start: Option<Item> = None;
        let scan = self
            .client
            .scan()
            .table_name(&self.table)
            .segment(i32::try_from(segment).unwrap_or(0))
            .total_segments(i32::try_from(segments).unwrap_or(1))
            .filter_expression("sk = :state AND attribute_not_exists(merged_into)")
            .projection_expression("pk, #rules, rules_version, rules_hash")
            .expression_attribute_names("#rules", "rules")
            .expression_attribute_values(":state", s("STATE"));
        loop {
            let out = self.scan_page(&scan, start.take(), "scan leads").await?;
            let scanned = u64::try_from(out.scanned_count).unwrap_or(0);
            for item in out.items.unwrap_or_default() {
                let text = |k: &str| match item.get(k) {
                    Some(AttributeValue::S(v)) => v.clone(),
                    _ => String::new(),
                };
                let Some(id) = text("pk").strip_prefix("LEAD#").map(str::to_owned) else {
                    continue;
                };
                report.leads += 1;
                on_progress(RescoreProgress::Lead);
                let stamp = StateItem {
                    rules: text("rules"),
                    rules_version: text("rules_version"),
                    rules_hash: text("rules_hash"),
                    ..StateItem::default()
                };
                if !self.is_stale(&stamp) && !self.is_renamed(&stamp) {
                    continue;
                }
                if let Some(done) = self.refresh_lead(&id, None).await? {
                    report.changed += u64::from(done.changed);
                    report.partial += u64::from(done.partial);
                    report.notifications.extend(done.told);
                }
            }
            on_progress(RescoreProgress::Scanned(scanned));
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(report),
            }
        }
    }

    /// The rest of an erasure once the tombstone stands ([`LeadStore::forget`]): every item
    /// of the lead's partition and of the ids merged into it, their idempotency records, the
    /// merged ids' pointers, and last the tombstone itself (only if it is still this one).
    /// Safe to run again.
    async fn finish_erasure(&self, known: &str, tombstone: &StateItem) -> Result<(), StoreError> {
        let known_pk = lead_pk(known);
        let is_state =
            |key: &Item| matches!(key.get("sk"), Some(AttributeValue::S(sk)) if sk == "STATE");
        let (mut rest, mut pointers) = (Vec::new(), Vec::new());
        let mut partitions = vec![known.to_owned()];
        partitions.extend(tombstone.merged.iter().cloned());
        for partition in &partitions {
            let pk = lead_pk(partition);
            for mut key in self.partition_keys(&pk).await? {
                if let Some(AttributeValue::S(message)) = key.remove("message_id") {
                    let mut msg = Item::new();
                    msg.insert("pk".into(), s(format!("MSG#{message}")));
                    msg.insert("sk".into(), s("MSG"));
                    rest.push(msg);
                }
                if !is_state(&key) {
                    rest.push(key);
                } else if pk != known_pk {
                    pointers.push(key);
                }
            }
        }
        // calls before pointers: a merged id that becomes free again has no calls left
        self.delete_keys(rest).await?;
        self.delete_keys(pointers).await?;
        self.count();
        let done = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(known_pk))
            .key("sk", s("STATE"))
            .condition_expression("version = :v")
            .expression_attribute_values(":v", n(tombstone.version))
            .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
            .send()
            .await;
        match done {
            Ok(out) => {
                self.counters.capacity.wrote(out.consumed_capacity());
                Ok(())
            }
            // someone else finished it (the tombstone is gone, or a new lead stands there)
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(store_error("erase the tombstone", &e)),
        }
    }

    /// Every item key of a partition (with the `message_id` of kept calls).
    async fn partition_keys(&self, pk: &str) -> Result<Vec<Item>, StoreError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(pk))
            .projection_expression("pk, sk, message_id")
            .consistent_read(true);
        self.query_all(query)
            .await
            .map_err(|e| store_error("read lead", &e))
    }

    async fn delete_keys(&self, keys: Vec<Item>) -> Result<(), StoreError> {
        for chunk in keys.chunks(25) {
            let mut requests: Vec<WriteRequest> = chunk
                .iter()
                .filter_map(|key| {
                    DeleteRequest::builder()
                        .set_key(Some(key.clone()))
                        .build()
                        .ok()
                        .map(|d| WriteRequest::builder().delete_request(d).build())
                })
                .collect();
            let mut attempt = 0;
            while !requests.is_empty() {
                if attempt > 0 {
                    tokio::time::sleep(backoff(attempt)).await;
                }
                if attempt >= MAX_ATTEMPTS {
                    return Err(StoreError::Unavailable(
                        "could not delete every item".into(),
                    ));
                }
                attempt += 1;
                self.count();
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, requests.clone())
                    .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
                    .send()
                    .await;
                match out {
                    Ok(out) => {
                        self.counters.capacity.wrote(out.consumed_capacity());
                        requests = out
                            .unprocessed_items
                            .and_then(|mut u| u.remove(&self.table))
                            .unwrap_or_default();
                    }
                    Err(e) if transient(&e) => {}
                    Err(e) => return Err(store_error("delete", &e)),
                }
            }
        }
        Ok(())
    }
}

fn fatal(err: CommitError) -> StoreError {
    match err {
        CommitError::Fatal(e) | CommitError::Transient(e) => e,
        CommitError::Erasing(e) => StoreError::Unavailable(e),
        CommitError::Cancelled(_) | CommitError::Refused(_) => {
            StoreError::Unavailable("transaction cancelled".into())
        }
    }
}

impl CommitError {
    /// As the pipeline's loop sees it.
    fn step(self) -> StepError {
        match self {
            CommitError::Refused(refused) => StepError::Refused(refused),
            CommitError::Transient(e) => StepError::Retry(e),
            CommitError::Erasing(e) => StepError::Retry(StoreError::Unavailable(e)),
            CommitError::Cancelled(_) => StepError::Refused(Refused {
                conflict: true,
                duplicates: Vec::new(),
            }),
            CommitError::Fatal(e) => StepError::Fatal(e),
        }
    }
}

/// A state item as the pipeline's record (`None` for a pointer or a tombstone).
fn record_of(item: StateItem) -> Option<Record> {
    let hits = item.hits();
    Some(Record {
        state: item.state?,
        merged: item.merged,
        first_arrival: item.first_arrival,
        hits,
        partial: item.partial,
    })
}

/// The pipeline's door on the table: a lead is its `STATE` item (read consistently, merged
/// ids followed, rescored when stamped with another version), its kept calls the `CALL#`
/// items of its partition, and a commit one `TransactWriteItems` (`DynamoStore::commit`).
impl Records for DynamoStore {
    const MAX_WRITES: usize = MAX_TRANSACTION_ITEMS;
    const ATTEMPTS: u32 = MAX_ATTEMPTS;
    type Form = Whole;

    fn program(&self) -> &Program {
        &self.program
    }

    async fn load(&self, id: &str) -> Result<apply::Loaded, StepError> {
        let lead = self.load_current(id).await.map_err(CommitError::step)?;
        if let Some(item) = lead.item.as_ref().filter(|i| self.is_newer(i)) {
            return Err(StepError::Fatal(self.newer_error(&lead.known, item)));
        }
        if let Some(item) = lead.item.as_ref().filter(|i| self.is_foreign(i)) {
            return Err(StepError::Fatal(self.foreign_error(&lead.known, item)));
        }
        Ok(apply::Loaded {
            version: lead.version(),
            known: lead.known,
            record: lead.item.and_then(record_of),
            rescored: lead.rescored,
        })
    }

    async fn absorbed(&self, id: &str) -> Result<Option<Absorbed>, StepError> {
        let item = self.get_state(id).await.map_err(CommitError::step)?;
        if let Some(item) = item.as_ref().filter(|i| self.is_foreign(i)) {
            return Err(StepError::Fatal(self.foreign_error(id, item)));
        }
        Ok(item.map(|item| Absorbed {
            version: item.version,
            merged_into: item.merged_into.clone(),
            record: record_of(item),
        }))
    }

    async fn kept_calls(&self, id: &str) -> Result<Vec<(u64, Call)>, StepError> {
        self.history(id).await.map_err(CommitError::step)
    }

    async fn commit(&self, commit: &Commit<'_>) -> Result<(), StepError> {
        DynamoStore::commit(self, commit)
            .await
            .map_err(CommitError::step)
    }

    async fn pause(&self, attempt: u32) {
        self.counters.retries.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(backoff(attempt)).await;
    }
}

impl LeadStore for DynamoStore {
    type Rules<'a> = Arc<Program>;

    fn program(&self) -> Arc<Program> {
        self.current().program
    }

    async fn apply(
        &self,
        calls: Vec<Accepted>,
    ) -> Result<(Arc<Program>, Vec<Processed>), StoreError> {
        let mut store = self.view();
        let base = u64::try_from(now_micros())
            .unwrap_or(0)
            .saturating_mul(1000);
        let mut out = Vec::with_capacity(calls.len());
        loop {
            let done = out.len();
            let result = apply_calls(&store, &calls[done..], base + done as u64, &mut out).await;
            match result {
                Ok(()) => break,
                // a lead written under newer published rules: load them, and go on from the
                // call that met it (nothing of it was written)
                Err(_) if store.counters.newer.load(Ordering::Relaxed) > store.generation => {
                    let before = store.generation;
                    let old = Arc::clone(&store.program);
                    store.use_published().await?;
                    if store.generation == before {
                        return Err(StoreError::Failed(format!(
                            "a lead was written under published rules newer than generation {before}, which the table does not hold"
                        )));
                    }
                    // the results so far read under the rules the request ends with
                    for done in &mut out {
                        remap_transitions(&old, &store.program, &mut done.transitions);
                        remap_transitions(&old, &store.program, &mut done.rescored);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok((Arc::clone(&store.program), out))
    }

    async fn lead(&self, id: &str) -> Result<Option<(Arc<Program>, StoredLead)>, StoreError> {
        let view = self.view();
        let loaded = view.load_retrying(id, true).await?;
        Ok(loaded.item.and_then(|item| {
            // the hits name rules by their place: only those of the rules read under
            let latest_hits = if view.is_stale(&item) {
                None
            } else {
                item.hits()
            };
            let lead = StoredLead {
                id: loaded.known,
                partial: item.partial,
                state: item.state?,
                latest_hits,
            };
            Some((Arc::clone(&view.program), lead))
        }))
    }

    /// Erases a lead atomically with respect to concurrent writes: first a tombstone takes
    /// the state's place under the version guard (a write that read the lead before fails its
    /// guard and, reading the tombstone, waits; a write for a new lead finds the key taken),
    /// then every other item of the lead goes (its kept calls, notifications, idempotency
    /// records, the pointers of the ids merged into it), then the tombstone. An erasure that
    /// stops halfway is finished by the next reader once the tombstone is
    /// `ERASE_STALE` old.
    async fn forget(&self, id: &str) -> Result<Option<String>, StoreError> {
        let mut last_error = StoreError::Unavailable("too many conflicting writes".into());
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                self.counters.retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(backoff(attempt)).await;
            }
            let loaded = self.load_retrying(id, false).await?;
            let Some(item) = loaded.item.filter(|i| i.state.is_some()) else {
                return Ok(None);
            };
            let tombstone = StateItem {
                pk: lead_pk(&loaded.known),
                sk: "STATE".into(),
                version: item.version + 1,
                merged: item.merged.clone(),
                rules: item.rules.clone(),
                rules_hash: item.rules_hash.clone(),
                rules_version: item.rules_version.clone(),
                rules_generation: item.rules_generation,
                erasing: Some(now_micros()),
                ..StateItem::default()
            };
            let put = self
                .state_put(&tombstone, Some(item.version))
                .map_err(fatal)?;
            match self.transact(vec![put]).await {
                Ok(()) => {
                    self.finish_erasure(&loaded.known, &tombstone).await?;
                    return Ok(Some(loaded.known));
                }
                // a write came first: read the lead again
                Err(CommitError::Cancelled(_)) => {}
                Err(CommitError::Transient(e)) => last_error = e,
                Err(other) => return Err(fatal(other)),
            }
        }
        Err(last_error)
    }
}
