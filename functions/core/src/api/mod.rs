//! The webhook API of SPEC §6, independent of any HTTP server: an [`ApiRequest`] in, an
//! [`ApiResponse`] out. `leadscore serve` drives it over the embedded engine; a Lambda
//! function can drive it over DynamoDB through the same [`LeadStore`] trait.
//!
//! Routes:
//! - `POST /events`: one Segment call, a `{"batch": [...]}`, or a bare array of calls. Checks, in order: the body
//!   size (`413`), its `Content-Encoding` (`gzip`: the size decoded counts, `413`; another
//!   encoding `415`; a body that does not inflate `400`), the `Content-Type` (`415`), the
//!   signature (`401`, over the decoded body), the JSON and each call
//!   (`400` when the body is not JSON or no call in it is valid), then applies the valid calls
//!   and answers `200` with one result per call.
//! - `GET /leads/{id}` and `DELETE /leads/{id}`: need `Authorization: Bearer <token>`; they
//!   answer `404` when no token is configured.
//!
//! Error bodies are `{"error": {"code", "message", "path"}}`; `path` is the JSON path of the
//! offending field, or `null`.

mod auth;
pub mod tracking;

use crate::encoding::{decode, DecodeError};
use crate::ingest::call::{Call, CallError, TimePolicy};
use crate::ingest::segment::{normalize_array, normalize_body};
use crate::output::{lead_object, rules_object, score_value};
use crate::store::engine::{Cause, LatestHits};
use auth::check_bearer;
pub use auth::verify_signature;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use leadscore_rules::eval::{LeadState, Transition};
use leadscore_rules::time::{format_rfc3339, Micros, SECOND};
use leadscore_rules::Program;
use serde_json::{json, Map, Value};
use std::borrow::Cow;

/// The default body limit: 1 MB.
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;

/// How far a Standard Webhooks timestamp may lie from the time of receipt, either way.
pub const SIGNATURE_TOLERANCE: Micros = leadscore_wire::SIGNATURE_TOLERANCE_SECONDS * SECOND;

/// An HTTP request, as any server or Lambda envelope can give it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiRequest {
    /// The method, e.g. `POST` (compared case-insensitively).
    pub method: String,
    /// The path, e.g. `/events`; a query string (`?...`) is ignored.
    pub path: String,
    /// The headers; names in lowercase.
    pub headers: Vec<(String, String)>,
    /// The raw body.
    pub body: Vec<u8>,
}

impl ApiRequest {
    /// The first header of this (lowercase) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiResponse {
    /// The status code.
    pub status: u16,
    /// The headers; names in lowercase.
    pub headers: Vec<(String, String)>,
    /// The body (JSON).
    pub body: Vec<u8>,
}

impl ApiResponse {
    /// A JSON response.
    fn json(status: u16, body: &impl serde::Serialize) -> Self {
        let body = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
        ApiResponse {
            status,
            headers: vec![("content-type".to_owned(), "application/json".to_owned())],
            body,
        }
    }

    /// An error response: `{"error": {"code", "message", "path"}}`.
    pub fn error(status: u16, code: &str, message: impl Into<String>, path: Option<&str>) -> Self {
        ApiResponse::json(
            status,
            &json!({ "error": error_object(code, message, path) }),
        )
    }

    /// The response with one more header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The body as JSON (for tests and logs); `Null` when it is not JSON.
    pub fn json_body(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

fn error_object(code: &str, message: impl Into<String>, path: Option<&str>) -> Value {
    json!({
        "code": code,
        "message": message.into(),
        "path": path.filter(|p| !p.is_empty()),
    })
}

/// Why the API cannot start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// No secret, no write key, and unsigned input not allowed.
    #[error(
        "no webhook secret and no write key: set `LEADSCORE_WEBHOOK_SECRET` (for `POST /events`), `LEADSCORE_WRITE_KEY` (for the `/v1` routes of the analytics libraries) or both, or `LEADSCORE_ALLOW_UNSIGNED=1` to accept unsigned events (local use only)"
    )]
    NoSecret,
    /// A `whsec_` secret whose key is not base64.
    #[error("`LEADSCORE_WEBHOOK_SECRET` starts with `whsec_` but the rest is not base64")]
    BadSecret,
}

/// The API's configuration (SPEC §6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// `LEADSCORE_WEBHOOK_SECRET`: when set, every `POST /events` must be signed with it.
    pub webhook_secret: Option<String>,
    /// `LEADSCORE_API_TOKEN`: the bearer token of `GET`/`DELETE /leads/{id}`; without it
    /// those routes answer `404`.
    pub api_token: Option<String>,
    /// `LEADSCORE_WRITE_KEY` (one key, or several separated by commas): the write keys the
    /// Tracking API's `/v1` routes take (SPEC §8); without one those routes answer `401`.
    pub write_keys: Vec<String>,
    /// `LEADSCORE_ALLOW_UNSIGNED=1`: accept unsigned events when there is no secret, and
    /// `/v1` calls without a key when there is no write key.
    pub allow_unsigned: bool,
    /// The body limit in bytes ([`DEFAULT_MAX_BODY`]).
    pub max_body: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            webhook_secret: None,
            api_token: None,
            write_keys: Vec::new(),
            allow_unsigned: false,
            max_body: DEFAULT_MAX_BODY,
        }
    }
}

impl ApiConfig {
    /// Reads the configuration from the environment; see [`ApiConfig::from_vars`].
    pub fn from_env() -> Result<Self, ConfigError> {
        ApiConfig::from_vars(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `var` (an empty value counts as unset). Errors when
    /// there is no secret and unsigned input is not allowed, or when a `whsec_` secret is not
    /// base64: the API refuses to start.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| var(name).filter(|v| !v.is_empty());
        let allow_unsigned = get("LEADSCORE_ALLOW_UNSIGNED")
            .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
        let config = ApiConfig {
            webhook_secret: get("LEADSCORE_WEBHOOK_SECRET"),
            api_token: get("LEADSCORE_API_TOKEN"),
            write_keys: get("LEADSCORE_WRITE_KEY")
                .map(|keys| {
                    keys.split(',')
                        .map(str::trim)
                        .filter(|k| !k.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            allow_unsigned,
            max_body: DEFAULT_MAX_BODY,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks that the configuration can serve: a secret, a write key, or unsigned input
    /// allowed; a `whsec_` secret must be base64.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match &self.webhook_secret {
            None if !self.allow_unsigned && self.write_keys.is_empty() => {
                Err(ConfigError::NoSecret)
            }
            Some(secret) => match secret.strip_prefix("whsec_") {
                Some(key) if BASE64.decode(key).is_err() => Err(ConfigError::BadSecret),
                _ => Ok(()),
            },
            None => Ok(()),
        }
    }

    /// Whether `POST /events` must be signed.
    pub fn signatures_required(&self) -> bool {
        self.webhook_secret.is_some()
    }
}

/// A call that passed §1, ready for a store.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    /// The normalised call.
    pub call: Call,
    /// The call as received, with `messageId` and its time filled in when it had none,
    /// so that it normalises offline (`TimePolicy::Required`) to the same call: what a store
    /// keeps in the lead's history, and a valid line for `leadscore replay`.
    pub record: Value,
}

/// What a store did with one call.
#[derive(Debug, Clone, PartialEq)]
pub struct Processed {
    /// The lead the call reached (merged ids followed).
    pub lead: String,
    /// A `messageId` seen before: nothing changed.
    pub duplicate: bool,
    /// The lead's score after the call.
    pub score: f64,
    /// The lead's stage after the call.
    pub stage: Option<String>,
    /// Transitions the call caused (merges included).
    pub transitions: Vec<Transition>,
    /// Transitions of the rescore that came before the call, when the lead was stamped with
    /// other rules (SPEC §7; listed with `"cause": "rules_changed"`).
    pub rescored: Vec<Transition>,
}

/// Storage failed, typed by whether asking again can help (SPEC §6, §8): the API answers
/// [`StoreError::Throttled`] with `429` and [`StoreError::Unavailable`] with `503`, both with
/// `Retry-After`, and [`StoreError::Failed`] with `500` and no `Retry-After` (the cause goes
/// to the log, where an alarm counts it). Nothing is half-written in any case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store throttled the requests and went on throttling through the retries.
    #[error("storage is throttling requests: {0}")]
    Throttled(String),
    /// The store is unavailable for now: unreachable, timing out, an internal error, or
    /// conflicting writes that outlasted the retries.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The same request would fail again: a validation error, a missing table, access
    /// denied, an item that does not decode.
    #[error("storage failed: {0}")]
    Failed(String),
}

impl StoreError {
    /// Whether the same request may succeed later (throttled or unavailable).
    pub fn is_transient(&self) -> bool {
        !matches!(self, StoreError::Failed(_))
    }

    /// The kind, as logged and as the metric's name says it: `throttled`, `unavailable` or
    /// `failed`.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::Throttled(_) => "throttled",
            StoreError::Unavailable(_) => "unavailable",
            StoreError::Failed(_) => "failed",
        }
    }

    /// The cause, without the kind.
    pub fn cause(&self) -> &str {
        match self {
            StoreError::Throttled(e) | StoreError::Unavailable(e) | StoreError::Failed(e) => e,
        }
    }
}

/// A lead as a store holds it ([`LeadStore::lead`]).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredLead {
    /// Its known id (merged ids followed).
    pub id: String,
    /// Its state under the store's rules.
    pub state: LeadState,
    /// Some of the calls it counts are no longer kept (expired, or quarantined because they
    /// could not be read), so a rescore or merge evaluated it from part of its history.
    pub partial: bool,
    /// What its latest call did, when the store keeps it.
    pub latest_hits: Option<LatestHits>,
}

/// Seconds a sender is asked to wait before it sends again after a transient storage error.
pub const RETRY_AFTER_SECS: u32 = 1;

/// How many permanent storage errors the API answered since the process started (what the
/// log lines say one by one; `serve` and the tests read it).
pub static STORAGE_FAILURES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The answer to a storage error: `429` or `503` with `Retry-After` for a transient one;
/// `500` for a permanent one, whose cause is logged (`storage_error` = `failed`, the field
/// the deployed metric filter counts) under an error id that the answer carries, so the
/// sender learns nothing of the table but the operator finds the line.
pub fn storage_error_response(err: &StoreError, route: &str) -> ApiResponse {
    match err {
        StoreError::Throttled(_) | StoreError::Unavailable(_) => {
            let (status, code) = if matches!(err, StoreError::Throttled(_)) {
                (429, "storage_throttled")
            } else {
                (503, "storage_unavailable")
            };
            tracing::warn!(
                storage_error = err.kind(),
                route,
                cause = err.cause(),
                "{code}"
            );
            ApiResponse::error(status, code, err.to_string(), None)
                .with_header("retry-after", &RETRY_AFTER_SECS.to_string())
        }
        StoreError::Failed(_) => {
            let n = STORAGE_FAILURES.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            let error_id = error_id(n);
            tracing::error!(
                storage_error = err.kind(),
                error_id = error_id.as_str(),
                route,
                cause = err.cause(),
                "storage failed"
            );
            ApiResponse::error(
                500,
                "storage_failed",
                format!(
                    "storage failed and would fail again if retried; the operator finds the cause in the log under error id `{error_id}`"
                ),
                None,
            )
        }
    }
}

/// An id for one logged error: the time in microseconds and a sequence number, in hex.
fn error_id(n: u64) -> String {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    format!("{micros:x}-{n:x}")
}

/// The storage the API needs, taking `&self` so that one store serves concurrent requests
/// without a lock around the API: the embedded engine ([`crate::store::memory::MemoryStore`]) or
/// DynamoDB ([`crate::store::dynamo::DynamoStore`]). The futures of the embedded store are ready at
/// once.
#[allow(async_fn_in_trait)]
pub trait LeadStore {
    /// How the store lends its rules: a reference, or a shared pointer when they can be
    /// replaced while the store serves (published rules).
    type Rules<'a>: std::ops::Deref<Target = Program>
    where
        Self: 'a;

    /// The rule program in force now.
    fn program(&self) -> Self::Rules<'_>;

    /// Applies the accepted calls of one request in order, one result per call, and says
    /// under which rules (the transitions' indexes are theirs). A call whose `messageId` was
    /// applied before (earlier, or earlier in `calls`) is a duplicate and changes nothing.
    /// On error no call after the failing one is applied and the failing one changed
    /// nothing; calls before it may stand, so a retry of the whole request is safe (they
    /// come back as duplicates).
    async fn apply(
        &self,
        calls: Vec<Accepted>,
    ) -> Result<(Self::Rules<'_>, Vec<Processed>), StoreError>;

    /// A lead by id (merged ids followed), read once: its known id, state and latest hits,
    /// with the rules it was read under (the hits' rule indexes are theirs), so a publish
    /// landing meanwhile cannot mislabel the answer.
    async fn lead(&self, id: &str) -> Result<Option<(Self::Rules<'_>, StoredLead)>, StoreError>;

    /// Whether the store can keep this call (as `record`, the form kept in the history),
    /// reported by the API like an invalid call: `Err((field, message))`, the field's JSON
    /// path within the call (`""` for the call as a whole). Every store holds calls to the
    /// same limits ([`crate::pipeline::check_call`]), so `serve` and `score` refuse the same
    /// calls with the same answer.
    fn check_call(&self, call: &Call, record: &Value) -> Result<(), (String, String)> {
        crate::pipeline::check_call(call, record)
    }

    /// Erases a lead (merged ids followed), its history and its idempotency records.
    /// Returns the erased lead's id, or `None` when there was no such lead.
    async fn forget(&self, id: &str) -> Result<Option<String>, StoreError>;
}

/// The latest call's hits as JSON: its time, the points each rule gave, awards refused and
/// why, decay, fit changes and clamps, in the order they happened.
fn latest_hits_json(program: &Program, hits: &LatestHits) -> Value {
    use leadscore_rules::eval::TraceEntry;
    let rule = |i: usize| {
        program
            .scores
            .get(i)
            .map_or(String::new(), |r| r.name.clone())
    };
    let entries: Vec<Value> = hits
        .trace
        .iter()
        .map(|entry| match entry {
            TraceEntry::Scored { rule: i, points } => {
                json!({"kind": "scored", "rule": rule(*i), "points": score_value(*points)})
            }
            TraceEntry::Refused { rule: i, reason } => {
                json!({"kind": "refused", "rule": rule(*i), "reason": reason})
            }
            TraceEntry::Decayed { from, to } => {
                json!({"kind": "decayed", "from": score_value(*from), "to": score_value(*to)})
            }
            TraceEntry::Fit { from, to } => {
                json!({"kind": "fit", "from": score_value(*from), "to": score_value(*to)})
            }
            TraceEntry::Clamped { from, to } => {
                json!({"kind": "clamped", "from": score_value(*from), "to": score_value(*to)})
            }
        })
        .collect();
    json!({"at": leadscore_rules::time::format_rfc3339(hits.at), "hits": entries})
}

/// The record a store keeps for an accepted call: the raw call with `messageId` filled in,
/// `receivedAt` when it has no time, and the corrected `timestamp` when it has device times
/// only: a record normalises offline to the same call.
fn record_of(raw: &Value, call: &Call) -> Value {
    let mut record = raw.clone();
    if let Value::Object(fields) = &mut record {
        let present =
            |fields: &Map<String, Value>, key: &str| fields.get(key).is_some_and(|v| !v.is_null());
        if !present(fields, "messageId") {
            fields.insert(
                "messageId".to_owned(),
                Value::String(call.message_id.to_string()),
            );
        }
        let at = Value::String(format_rfc3339(call.event.time));
        let timed = ["timestamp", "originalTimestamp", "sentAt", "receivedAt"]
            .iter()
            .any(|key| present(fields, key));
        if !timed {
            fields.insert("receivedAt".to_owned(), at);
        } else if !present(fields, "timestamp")
            && present(fields, "originalTimestamp")
            && present(fields, "sentAt")
        {
            // device times corrected for the device's clock (SPEC §8), which offline, with
            // no time of receipt, could not be again
            fields.insert("timestamp".to_owned(), at);
        }
    }
    record
}

/// A transition as the API prints it.
pub fn transition_object(program: &Program, t: &Transition) -> Value {
    match *t {
        Transition::StageReached { stage, at } => json!({
            "kind": "stage_reached",
            "stage": program.stages.get(stage).map(|s| s.name.as_str()),
            "at": format_rfc3339(at),
        }),
        Transition::Converted { conversion, at } => json!({
            "kind": "converted",
            "conversion": program.conversions.get(conversion).map(|c| c.name.as_str()),
            "at": format_rfc3339(at),
        }),
    }
}

/// The webhook API over a store.
pub struct Api<S> {
    config: ApiConfig,
    store: S,
}

impl<S: LeadStore> Api<S> {
    /// An API with this configuration over this store.
    pub fn new(config: ApiConfig, store: S) -> Self {
        Api { config, store }
    }

    /// The configuration.
    pub fn config(&self) -> &ApiConfig {
        &self.config
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Answers one request and waits for it: for servers without an async runtime (the
    /// embedded store's futures are ready at once).
    pub fn handle_blocking(&self, req: &ApiRequest, now: Micros) -> ApiResponse {
        pollster::block_on(self.handle(req, now))
    }

    /// Answers one request; `now` is the time of receipt (microseconds since the epoch).
    pub async fn handle(&self, req: &ApiRequest, now: Micros) -> ApiResponse {
        let raw = req.path.split('?').next().unwrap_or("");
        // a host given with a trailing slash makes some libraries ask for `//v1/batch`
        let path = match raw.len() - raw.trim_start_matches('/').len() {
            0 | 1 => raw,
            slashes => &raw[slashes - 1..],
        };
        let method = req.method.to_ascii_uppercase();
        // the POST routes: the Tracking API's and `/events`
        let tracking = tracking::Route::of(path);
        if tracking.is_some() || path == "/events" {
            if method != "POST" {
                return ApiResponse::error(
                    405,
                    "method_not_allowed",
                    format!("`{method} {path}` is not allowed; use `POST`"),
                    None,
                )
                .with_header("allow", "POST");
            }
            return match tracking {
                Some(route) => self.post_tracking(req, route, now).await,
                None => self.post_events(req, now).await,
            };
        }
        if let Some(raw_id) = path.strip_prefix("/leads/") {
            let Some(token) = self.config.api_token.clone() else {
                return not_found(path);
            };
            let id = match percent_decode(raw_id) {
                Some(id) if !id.is_empty() && !id.contains('/') => id,
                _ => return not_found(path),
            };
            if method != "GET" && method != "DELETE" {
                return ApiResponse::error(
                    405,
                    "method_not_allowed",
                    format!("`{method} /leads/{{id}}` is not allowed; use `GET` or `DELETE`"),
                    None,
                )
                .with_header("allow", "GET, DELETE");
            }
            if let Err(message) = check_bearer(req, &token) {
                return ApiResponse::error(401, "unauthorized", message, None)
                    .with_header("www-authenticate", "Bearer");
            }
            return if method == "GET" {
                self.get_lead(&id).await
            } else {
                self.delete_lead(&id).await
            };
        }
        not_found(path)
    }

    async fn post_events(&self, req: &ApiRequest, now: Micros) -> ApiResponse {
        let req = match open_body(req, self.config.max_body, "a request", true) {
            Ok(req) => req,
            Err(response) => return response,
        };
        let req: &ApiRequest = &req;
        match &self.config.webhook_secret {
            Some(secret) => {
                if let Err(message) = verify_signature(req, secret, now) {
                    return ApiResponse::error(401, "unauthorized", message, None);
                }
            }
            None if !self.config.allow_unsigned => {
                return ApiResponse::error(
                    401,
                    "unauthorized",
                    "no webhook secret is configured (`LEADSCORE_WEBHOOK_SECRET`), so `POST /events` takes no calls; the analytics libraries send to the `/v1` routes with the write key",
                    None,
                );
            }
            None => {}
        }
        let value = match parse_json(&req.body) {
            Ok(value) => value,
            Err(response) => return response,
        };
        self.apply_body(&value, now, None, "POST /events").await
    }

    /// Normalises the calls of a parsed body (one call, a batch or a bare array), refuses
    /// those over `call_limit` bytes or that the store cannot keep, applies the rest and
    /// answers one result per call: `200`, or `400` when no call is valid. `/v1` routes add
    /// `"success": true` to the answer (`call_limit` is theirs).
    async fn apply_body(
        &self,
        value: &Value,
        now: Micros,
        call_limit: Option<usize>,
        route: &str,
    ) -> ApiResponse {
        let time = TimePolicy::ReceivedAt(now);
        let normalized = match &value {
            Value::Array(calls) => normalize_array(calls, &time),
            _ => normalize_body(value, &time),
        };
        let results = match normalized {
            Ok(results) => results,
            Err(err) => return call_error_response(&err),
        };
        // where call `index` is in the body: in a bare array, in a batch, or the body itself
        let calls = match (&value, value.get("batch")) {
            (Value::Array(calls), _) => Some(("", calls)),
            (_, Some(Value::Array(calls))) => Some(("batch", calls)),
            _ => None,
        };
        let raw_call = |index: usize| match calls {
            Some((_, calls)) => calls.get(index).unwrap_or(&Value::Null),
            None => value,
        };
        let at = |index: usize| match calls {
            Some((key, _)) => format!("{key}[{index}]"),
            None => String::new(),
        };
        let mut accepted = Vec::new();
        let mut slots: Vec<Result<usize, CallError>> = Vec::with_capacity(results.len());
        for (index, result) in results.into_iter().enumerate() {
            match result {
                Ok(call) => {
                    let raw = raw_call(index);
                    let over_limit = call_limit.and_then(|limit| {
                        let size = tracking::json_size(raw);
                        (size > limit).then(|| CallError {
                            path: at(index),
                            message: format!(
                                "the call has {size} bytes of JSON; the limit is {limit} bytes ({} KB) a call",
                                limit / 1024
                            ),
                        })
                    });
                    let record = record_of(raw, &call);
                    let too_large = over_limit.or_else(|| {
                        self.store
                            .check_call(&call, &record)
                            .err()
                            .map(|(field, message)| {
                                let at = at(index);
                                let path = match (at.is_empty(), field.is_empty()) {
                                    (_, true) => at,
                                    (true, false) => field,
                                    (false, false) => format!("{at}.{field}"),
                                };
                                CallError { path, message }
                            })
                    });
                    match too_large {
                        Some(err) => slots.push(Err(err)),
                        None => {
                            slots.push(Ok(accepted.len()));
                            accepted.push(Accepted { call, record });
                        }
                    }
                }
                Err(err) => slots.push(Err(err)),
            }
        }
        if accepted.is_empty() {
            let items: Vec<Value> = slots
                .iter()
                .enumerate()
                .filter_map(|(index, slot)| slot.as_ref().err().map(|e| error_item(index, e)))
                .collect();
            let first = slots.iter().find_map(|slot| slot.as_ref().err());
            let error = first.map_or_else(
                || error_object("invalid_call", "no valid call", None),
                |e| error_object("invalid_call", e.to_string(), Some(&e.path)),
            );
            return ApiResponse::json(400, &json!({ "error": error, "results": items }));
        }
        let (program, processed) = match self.store.apply(accepted).await {
            Ok(applied) => applied,
            Err(err) => return storage_error_response(&err, route),
        };
        let program: &Program = &program;
        let (mut applied, mut duplicates, mut rejected) = (0u64, 0u64, 0u64);
        let items: Vec<Value> = slots
            .iter()
            .enumerate()
            .map(|(index, slot)| match slot {
                Err(err) => {
                    rejected += 1;
                    error_item(index, err)
                }
                Ok(at) => match processed.get(*at) {
                    Some(p) => {
                        let mut item = Map::new();
                        item.insert("index".into(), Value::from(index));
                        item.insert("lead".into(), Value::String(p.lead.clone()));
                        if p.duplicate {
                            duplicates += 1;
                            item.insert("duplicate".into(), Value::Bool(true));
                        } else {
                            applied += 1;
                        }
                        item.insert("score".into(), score_value(p.score));
                        item.insert(
                            "stage".into(),
                            p.stage.clone().map_or(Value::Null, Value::String),
                        );
                        // the rescore's first, each with its cause, then the call's own
                        let transitions: Vec<Value> = p
                            .rescored
                            .iter()
                            .map(|t| {
                                let mut o = transition_object(program, t);
                                if let Some(o) = o.as_object_mut() {
                                    o.insert(
                                        "cause".into(),
                                        Value::from(Cause::RulesChanged.as_str()),
                                    );
                                }
                                o
                            })
                            .chain(p.transitions.iter().map(|t| transition_object(program, t)))
                            .collect();
                        item.insert("transitions".into(), Value::Array(transitions));
                        Value::Object(item)
                    }
                    None => {
                        rejected += 1;
                        json!({"index": index, "error": error_object("storage_unavailable", "the store gave no result for this call", None)})
                    }
                },
            })
            .collect();
        let mut answer = Map::new();
        if call_limit.is_some() {
            answer.insert("success".into(), Value::Bool(true));
        }
        answer.insert("applied".into(), Value::from(applied));
        answer.insert("duplicates".into(), Value::from(duplicates));
        answer.insert("rejected".into(), Value::from(rejected));
        answer.insert("results".into(), Value::Array(items));
        ApiResponse::json(200, &answer)
    }

    async fn get_lead(&self, id: &str) -> ApiResponse {
        match self.store.lead(id).await {
            Ok(Some((
                program,
                StoredLead {
                    id: known,
                    state,
                    partial,
                    latest_hits,
                },
            ))) => {
                let program: &Program = &program;
                let mut lead = lead_object(program, &known, &state);
                lead.push("rules", rules_object(program));
                if partial {
                    lead.push("partial", Value::Bool(true));
                }
                if let Some(hits) = latest_hits {
                    lead.push_node("latest_hits", latest_hits_json(program, &hits));
                }
                ApiResponse::json(200, &lead)
            }
            Ok(None) => ApiResponse::error(404, "not_found", format!("no lead `{id}`"), None),
            Err(err) => storage_error_response(&err, "GET /leads/{id}"),
        }
    }

    async fn delete_lead(&self, id: &str) -> ApiResponse {
        match self.store.forget(id).await {
            Ok(Some(known)) => ApiResponse::json(200, &json!({"lead": known, "deleted": true})),
            Ok(None) => ApiResponse::error(404, "not_found", format!("no lead `{id}`"), None),
            Err(err) => storage_error_response(&err, "DELETE /leads/{id}"),
        }
    }
}

/// The request with its body decoded, after the checks every POST route makes: the body's
/// size as sent and decoded (`413`, naming the `limit` of `what`), its `Content-Encoding`
/// (`gzip` or none, else `415`; a stream that does not inflate `400`) and, when
/// `json_type` says so, its `Content-Type` (`415`). A signature signs the decoded body.
fn open_body<'r>(
    req: &'r ApiRequest,
    limit: usize,
    what: &str,
    json_type: bool,
) -> Result<Cow<'r, ApiRequest>, ApiResponse> {
    if req.body.len() > limit {
        return Err(ApiResponse::error(
            413,
            "payload_too_large",
            format!(
                "the body has {} bytes; the limit is {limit} bytes ({} KB) {what}",
                req.body.len(),
                limit / 1024
            ),
            None,
        ));
    }
    let req = match decode(req.header("content-encoding"), &req.body, limit) {
        Ok(Cow::Borrowed(_)) => Cow::Borrowed(req),
        Ok(Cow::Owned(body)) => Cow::Owned(ApiRequest {
            method: req.method.clone(),
            path: req.path.clone(),
            headers: req.headers.clone(),
            body,
        }),
        Err(err) => return Err(decode_error_response(&err)),
    };
    if json_type {
        if let Err(message) = check_content_type(req.header("content-type")) {
            return Err(ApiResponse::error(
                415,
                "unsupported_media_type",
                message,
                None,
            ));
        }
    }
    Ok(req)
}

/// The body as JSON, or the `400` answer naming what is wrong.
fn parse_json(body: &[u8]) -> Result<Value, ApiResponse> {
    serde_json::from_slice(body).map_err(|err| {
        ApiResponse::error(400, "invalid_json", format!("invalid JSON: {err}"), None)
    })
}

fn not_found(path: &str) -> ApiResponse {
    ApiResponse::error(404, "not_found", format!("no route `{path}`"), None)
}

fn call_error_response(err: &CallError) -> ApiResponse {
    ApiResponse::error(400, "invalid_call", err.to_string(), Some(&err.path))
}

fn error_item(index: usize, err: &CallError) -> Value {
    json!({
        "index": index,
        "error": error_object("invalid_call", err.to_string(), Some(&err.path)),
    })
}

/// `application/json`, optionally with `; charset=utf-8`.
fn check_content_type(value: Option<&str>) -> Result<(), String> {
    let Some(value) = value else {
        return Err("a `Content-Type` of `application/json` is needed".to_owned());
    };
    let mut parts = value.split(';').map(str::trim);
    let media = parts.next().unwrap_or("");
    let params_ok = parts.all(|p| {
        p.is_empty()
            || p.split_once('=').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("charset")
                    && v.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
            })
    });
    if media.eq_ignore_ascii_case("application/json") && params_ok {
        Ok(())
    } else {
        Err(format!(
            "`Content-Type: {value}` is not supported; send `application/json`"
        ))
    }
}

/// The answer to a body that does not decode ([`decode`]): `413` over the limit, `415` for
/// an encoding other than `gzip`, `400` for a body that does not inflate.
fn decode_error_response(err: &DecodeError) -> ApiResponse {
    let (status, code) = match err {
        DecodeError::TooLarge { .. } => (413, "payload_too_large"),
        DecodeError::Unsupported(_) => (415, "unsupported_media_type"),
        DecodeError::Corrupt(_) => (400, "invalid_body"),
    };
    ApiResponse::error(status, code, err.to_string(), None)
}

/// Decodes `%XX` escapes; `None` for a bad escape or bytes that are not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::store::engine::Engine;
    use hmac::Mac;
    use leadscore_wire::verify_segment;
    use sha2::Sha256;
    type HmacSha1 = hmac::Hmac<sha1::Sha1>;
    type HmacSha256 = hmac::Hmac<Sha256>;
    use crate::store::memory::MemoryStore;
    use leadscore_rules::time::parse_rfc3339;
    use leadscore_rules::{compile, SourceFile};

    const RULES: &str = r#"ruleset "api-test"
score "Webinar" +20 on "Webinar Registered"
score "Demo" +40 on "Form Submitted" where form == "demo"
stage mql when engagement >= 40
conversion "Signup" on "Signed Up"
"#;

    const SECRET: &str = "s3cret";
    const TOKEN: &str = "t0ken";

    fn program() -> Program {
        let files = [SourceFile {
            name: "test.rules".into(),
            text: RULES.into(),
        }];
        compile(&files).program.expect("rules compile")
    }

    /// The time of receipt of the API's tests.
    pub(super) fn now() -> Micros {
        parse_rfc3339("2026-01-10T12:00:00Z").unwrap()
    }

    fn config(secret: Option<&str>, token: Option<&str>) -> ApiConfig {
        ApiConfig {
            webhook_secret: secret.map(str::to_owned),
            api_token: token.map(str::to_owned),
            write_keys: Vec::new(),
            allow_unsigned: secret.is_none(),
            max_body: DEFAULT_MAX_BODY,
        }
    }

    fn post(body: &str) -> ApiRequest {
        ApiRequest {
            method: "POST".into(),
            path: "/events".into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.as_bytes().to_vec(),
        }
    }

    fn segment_signed(body: &str, secret: &str) -> ApiRequest {
        let mut mac = HmacSha1::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body.as_bytes());
        let mut req = post(body);
        req.headers.push((
            "x-signature".into(),
            hex::encode(mac.finalize().into_bytes()),
        ));
        req
    }

    fn standard_signed(body: &str, secret: &str, id: &str, ts: i64) -> ApiRequest {
        let key = BASE64
            .decode(secret.strip_prefix("whsec_").unwrap())
            .unwrap();
        let mut mac = HmacSha256::new_from_slice(&key).unwrap();
        mac.update(format!("{id}.{ts}.{body}").as_bytes());
        let sig = BASE64.encode(mac.finalize().into_bytes());
        let mut req = post(body);
        req.headers.push(("webhook-id".into(), id.into()));
        req.headers
            .push(("webhook-timestamp".into(), ts.to_string()));
        req.headers
            .push(("webhook-signature".into(), format!("v1,bm9wZQ== v1,{sig}")));
        req
    }

    fn get(path: &str, token: Option<&str>, method: &str) -> ApiRequest {
        let mut headers = Vec::new();
        if let Some(t) = token {
            headers.push(("authorization".into(), format!("Bearer {t}")));
        }
        ApiRequest {
            method: method.into(),
            path: path.into(),
            headers,
            body: Vec::new(),
        }
    }

    const WEBINAR: &str = r#"{"type":"track","event":"Webinar Registered","userId":"u1","messageId":"m1","timestamp":"2026-01-10T11:00:00Z"}"#;
    const DEMO: &str = r#"{"type":"track","event":"Form Submitted","userId":"u1","messageId":"m2","timestamp":"2026-01-10T11:30:00Z","properties":{"form":"demo"}}"#;

    fn code(resp: &ApiResponse) -> String {
        resp.json_body()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    #[test]
    fn one_call_is_applied_with_score_stage_and_transitions() {
        let program = program();
        let api = Api::new(config(None, None), MemoryStore::new(Engine::new(&program)));
        let resp = api.handle_blocking(&post(WEBINAR), now());
        assert_eq!(resp.status, 200, "{}", resp.json_body());
        let body = resp.json_body();
        assert_eq!(
            body["results"][0],
            json!({"index": 0, "lead": "u1", "score": 20, "stage": null, "transitions": []})
        );
        let resp = api.handle_blocking(&post(DEMO), now());
        assert_eq!(
            resp.json_body()["results"][0]["transitions"],
            json!([{"kind": "stage_reached", "stage": "mql", "at": "2026-01-10T11:30:00Z"}])
        );
        assert_eq!(resp.json_body()["results"][0]["score"], json!(60));
        assert_eq!(resp.json_body()["results"][0]["stage"], json!("mql"));
        assert!(resp
            .headers
            .contains(&("content-type".into(), "application/json".into())));
    }

    #[test]
    fn duplicate_message_id_is_acknowledged_and_changes_nothing() {
        let program = program();
        let api = Api::new(config(None, None), MemoryStore::new(Engine::new(&program)));
        assert_eq!(api.handle_blocking(&post(WEBINAR), now()).status, 200);
        let resp = api.handle_blocking(&post(WEBINAR), now());
        assert_eq!(resp.status, 200);
        let item = &resp.json_body()["results"][0];
        assert_eq!(item["duplicate"], json!(true));
        assert_eq!(item["score"], json!(20));
        assert_eq!(resp.json_body()["duplicates"], json!(1));
        let state = pollster::block_on(LeadStore::lead(api.store(), "u1"))
            .unwrap()
            .unwrap()
            .1
            .state;
        assert_eq!(state.events, 1);
    }

    #[test]
    fn batch_applies_valid_calls_and_reports_invalid_ones_by_index() {
        let program = program();
        let api = Api::new(config(None, None), MemoryStore::new(Engine::new(&program)));
        let body = format!(
            r#"{{"batch":[{WEBINAR},{{"type":"track","event":"X","userId":"u2","timestamp":"nope"}},{DEMO}]}}"#
        );
        let resp = api.handle_blocking(&post(&body), now());
        assert_eq!(resp.status, 200, "{}", resp.json_body());
        let body = resp.json_body();
        assert_eq!(body["applied"], json!(2));
        assert_eq!(body["rejected"], json!(1));
        assert_eq!(body["results"][0]["score"], json!(20));
        assert_eq!(body["results"][2]["score"], json!(60));
        assert_eq!(
            body["results"][1]["error"],
            json!({"code": "invalid_call", "message": "batch[1].timestamp: not an RFC 3339 time",
                   "path": "batch[1].timestamp"})
        );
        assert!(pollster::block_on(LeadStore::lead(api.store(), "u2"))
            .unwrap()
            .is_none());
    }

    #[test]
    fn a_batch_with_no_valid_call_fails_with_400() {
        let program = program();
        let api = Api::new(config(None, None), MemoryStore::new(Engine::new(&program)));
        let resp = api.handle_blocking(
            &post(r#"{"batch":[{"type":"track","event":"X"},{"type":"bogus","userId":"u"}]}"#),
            now(),
        );
        assert_eq!(resp.status, 400);
        let body = resp.json_body();
        assert_eq!(body["error"]["code"], json!("invalid_call"));
        assert_eq!(body["error"]["path"], json!("batch[0].userId"));
        assert_eq!(body["results"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn invalid_json_and_section_1_violations_are_400_naming_the_field() {
        let program = program();
        let api = Api::new(config(None, None), MemoryStore::new(Engine::new(&program)));
        let resp = api.handle_blocking(&post("{not json"), now());
        assert_eq!(resp.status, 400);
        assert_eq!(code(&resp), "invalid_json");
        assert!(resp.json_body()["error"]["path"].is_null());

        let resp = api.handle_blocking(&post(r#"{"type":"track","userId":"u1"}"#), now());
        assert_eq!(resp.status, 400);
        assert_eq!(resp.json_body()["error"]["path"], json!("event"));
        assert!(resp.json_body()["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("event:"));

        // more than 5 minutes ahead of receipt
        let resp = api.handle_blocking(
            &post(r#"{"event":"X","userId":"u1","timestamp":"2026-01-10T12:06:00Z"}"#),
            now(),
        );
        assert_eq!(resp.status, 400);
        assert_eq!(resp.json_body()["error"]["path"], json!("timestamp"));

        let resp = api.handle_blocking(&post(r#"{"batch":[]}"#), now());
        assert_eq!(resp.status, 400);
        assert_eq!(resp.json_body()["error"]["path"], json!("batch"));
    }

    #[test]
    fn a_call_without_time_happens_at_receipt_and_its_record_replays_offline() {
        let program = program();
        let api = Api::new(config(None, None), MemoryStore::new(Engine::new(&program)));
        let raw = r#"{"event":"Signed Up","userId":"u9"}"#;
        let resp = api.handle_blocking(&post(raw), now());
        assert_eq!(resp.status, 200);
        assert_eq!(
            resp.json_body()["results"][0]["transitions"][0],
            json!({"kind": "converted", "conversion": "Signup", "at": "2026-01-10T12:00:00Z"})
        );
        let value: Value = serde_json::from_str(raw).unwrap();
        let call =
            crate::ingest::segment::normalize_call(&value, "", &TimePolicy::ReceivedAt(now()))
                .unwrap();
        let record = record_of(&value, &call);
        assert_eq!(record["receivedAt"], json!("2026-01-10T12:00:00Z"));
        assert!(record["messageId"].as_str().unwrap().starts_with("h:"));
        let again =
            crate::ingest::segment::normalize_call(&record, "", &TimePolicy::Required).unwrap();
        assert_eq!(again, call);
    }

    /// A call with device times only is kept with its corrected `timestamp`, so its record
    /// replays offline to the same call (SPEC §8).
    #[test]
    fn a_call_with_device_times_is_kept_with_its_corrected_timestamp() {
        let raw = json!({"type": "track", "event": "Signed Up", "userId": "u9", "messageId": "d1",
            "originalTimestamp": "2026-01-10T10:50:00Z", "sentAt": "2026-01-10T11:00:00Z"});
        let call = crate::ingest::segment::normalize_call(&raw, "", &TimePolicy::ReceivedAt(now()))
            .unwrap();
        assert_eq!(format_rfc3339(call.event.time), "2026-01-10T11:50:00Z");
        let record = record_of(&raw, &call);
        assert_eq!(record["timestamp"], json!("2026-01-10T11:50:00Z"));
        let again =
            crate::ingest::segment::normalize_call(&record, "", &TimePolicy::Required).unwrap();
        assert_eq!(again, call);
    }

    #[test]
    fn body_over_the_limit_is_413() {
        let program = program();
        let mut cfg = config(None, None);
        cfg.max_body = 16;
        let api = Api::new(cfg, MemoryStore::new(Engine::new(&program)));
        let resp = api.handle_blocking(&post(WEBINAR), now());
        assert_eq!(resp.status, 413);
        assert_eq!(code(&resp), "payload_too_large");
    }

    /// `Content-Encoding: gzip` (SPEC §8): the body inflated is what is applied, signed and
    /// held to the limit; a zip bomb, another encoding and a broken stream change nothing.
    #[test]
    fn a_gzip_body_is_applied_and_its_decoded_size_counts() {
        use flate2::write::GzEncoder;
        use std::io::Write;
        let gzip = |data: &[u8]| {
            let mut e = GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        };
        let encoded = |body: Vec<u8>, encoding: &str| {
            let mut req = post("");
            req.body = body;
            req.headers
                .push(("content-encoding".into(), encoding.into()));
            req
        };
        let program = program();
        let api = Api::new(config(None, None), MemoryStore::new(Engine::new(&program)));
        let resp = api.handle_blocking(&encoded(gzip(WEBINAR.as_bytes()), "gzip"), now());
        assert_eq!(resp.status, 200, "{}", resp.json_body());
        assert_eq!(resp.json_body()["results"][0]["lead"], "u1");
        // 8 MB of spaces after the call inflate past the 1 MB limit from 8 KB
        let mut bomb = WEBINAR.as_bytes().to_vec();
        bomb.resize(8 << 20, b' ');
        let bomb = gzip(&bomb);
        assert!(bomb.len() < 64 << 10);
        let resp = api.handle_blocking(&encoded(bomb, "gzip"), now());
        assert_eq!(
            (resp.status, code(&resp)),
            (413, "payload_too_large".into())
        );
        let resp = api.handle_blocking(&encoded(DEMO.as_bytes().to_vec(), "br"), now());
        assert_eq!(
            (resp.status, code(&resp)),
            (415, "unsupported_media_type".into())
        );
        let resp = api.handle_blocking(&encoded(DEMO.as_bytes().to_vec(), "gzip"), now());
        assert_eq!((resp.status, code(&resp)), (400, "invalid_body".into()));
        let engine = api.store().engine();
        assert_eq!(engine.lead("u1").unwrap().state.events, 1, "only the first");
        drop(engine);
        // a signature signs the body as sent, before its encoding
        let secret = "whsec_test";
        let api = Api::new(
            config(Some(secret), None),
            MemoryStore::new(Engine::new(&program)),
        );
        let mut signed = segment_signed(DEMO, secret);
        signed.body = gzip(DEMO.as_bytes());
        signed
            .headers
            .push(("content-encoding".into(), "gzip".into()));
        let resp = api.handle_blocking(&signed, now());
        assert_eq!(resp.status, 200, "{}", resp.json_body());
    }

    /// A bare JSON array of calls (SPEC §8): applied as a batch, errors named by the call's
    /// place (`[1].timestamp`), an empty array refused.
    #[test]
    fn a_bare_array_of_calls_is_a_batch() {
        let program = program();
        let api = Api::new(config(None, None), MemoryStore::new(Engine::new(&program)));
        let bad = r#"{"type":"track","event":"Webinar Registered","userId":"u2","messageId":"m9","timestamp":"yesterday"}"#;
        let resp = api.handle_blocking(&post(&format!("[{WEBINAR}, {bad}, {DEMO}]")), now());
        let body = resp.json_body();
        assert_eq!(resp.status, 200, "{body}");
        assert_eq!(
            (body["applied"].clone(), body["rejected"].clone()),
            (json!(2), json!(1))
        );
        assert_eq!(
            body["results"][1]["error"]["path"],
            json!("[1].timestamp"),
            "{body}"
        );
        let resp = api.handle_blocking(&post("[]"), now());
        assert_eq!((resp.status, code(&resp)), (400, "invalid_call".into()));
        assert_eq!(api.store().engine().lead("u1").unwrap().state.events, 2);
    }

    #[test]
    fn content_type_other_than_json_is_415() {
        let program = program();
        let api = Api::new(config(None, None), MemoryStore::new(Engine::new(&program)));
        for (ct, status) in [
            (Some("application/json; charset=utf-8"), 200),
            (Some("Application/JSON;charset=\"UTF-8\""), 200),
            (Some("text/plain"), 415),
            (Some("application/x-www-form-urlencoded"), 415),
            (Some("application/json; charset=latin1"), 415),
            (None, 415),
        ] {
            let mut req = post(WEBINAR);
            req.headers.clear();
            if let Some(ct) = ct {
                req.headers.push(("content-type".into(), ct.into()));
            }
            let resp = api.handle_blocking(&req, now());
            assert_eq!(resp.status, status, "{ct:?}");
            if status == 415 {
                assert_eq!(code(&resp), "unsupported_media_type");
            }
        }
    }

    #[test]
    fn unknown_route_is_404_and_wrong_method_is_405() {
        let program = program();
        let api = Api::new(
            config(None, Some(TOKEN)),
            MemoryStore::new(Engine::new(&program)),
        );
        let resp = api.handle_blocking(&get("/nope", None, "GET"), now());
        assert_eq!(resp.status, 404);
        assert_eq!(code(&resp), "not_found");
        let resp = api.handle_blocking(&get("/events", None, "GET"), now());
        assert_eq!(resp.status, 405);
        assert!(resp.headers.contains(&("allow".into(), "POST".into())));
        let resp = api.handle_blocking(&get("/leads/u1", Some(TOKEN), "PUT"), now());
        assert_eq!(resp.status, 405);
        assert_eq!(code(&resp), "method_not_allowed");
    }

    #[test]
    fn segment_signature_accepted_and_forged_one_refused() {
        let program = program();
        let api = Api::new(
            config(Some(SECRET), None),
            MemoryStore::new(Engine::new(&program)),
        );
        let resp = api.handle_blocking(&segment_signed(WEBINAR, SECRET), now());
        assert_eq!(resp.status, 200, "{}", resp.json_body());
        let resp = api.handle_blocking(&segment_signed(DEMO, "other"), now());
        assert_eq!(resp.status, 401);
        assert_eq!(code(&resp), "unauthorized");
        let resp = api.handle_blocking(&post(DEMO), now());
        assert_eq!(resp.status, 401);
        assert!(resp.json_body()["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("missing signature"));
        // a valid signature over another body
        let mut req = segment_signed(WEBINAR, SECRET);
        req.body = DEMO.as_bytes().to_vec();
        assert_eq!(api.handle_blocking(&req, now()).status, 401);
    }

    #[test]
    fn segment_signature_fixed_vector() {
        // python3 -c "import hmac,hashlib; print(hmac.new(b's3cret',
        //   b'{\"type\":\"track\",\"event\":\"Signed Up\",\"userId\":\"u1\"}', hashlib.sha1).hexdigest())"
        let body = r#"{"type":"track","event":"Signed Up","userId":"u1"}"#;
        assert!(verify_segment(
            body.as_bytes(),
            "c36f3ec91e0efcc6f4be57e6a49d803f51e7eb51",
            SECRET
        )
        .is_ok());
        assert!(verify_segment(
            body.as_bytes(),
            "c36f3ec91e0efcc6f4be57e6a49d803f51e7eb50",
            SECRET
        )
        .is_err());
        assert!(verify_segment(body.as_bytes(), "not hex", SECRET).is_err());
    }

    #[test]
    fn standard_webhooks_fixed_vector() {
        // the example of the Standard Webhooks specification, checked with Python's hmac
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let mut req = post(r#"{"test": 2432232314}"#);
        req.headers
            .push(("webhook-id".into(), "msg_p5jXN8AQM9LWM0D4loKWxJek".into()));
        req.headers
            .push(("webhook-timestamp".into(), "1614265330".into()));
        req.headers.push((
            "webhook-signature".into(),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=".into(),
        ));
        let at = 1_614_265_330 * SECOND;
        assert_eq!(verify_signature(&req, secret, at), Ok(()));
        assert_eq!(verify_signature(&req, secret, at + 299 * SECOND), Ok(()));
        assert_eq!(verify_signature(&req, secret, at - 299 * SECOND), Ok(()));
        let stale = verify_signature(&req, secret, at + 301 * SECOND).unwrap_err();
        assert!(stale.starts_with("stale signature"), "{stale}");
        assert!(verify_signature(&req, secret, at - 301 * SECOND).is_err());
        assert!(verify_signature(&req, "whsec_c2VjcmV0", at).is_err());
    }

    #[test]
    fn a_correctly_signed_request_with_an_extreme_timestamp_is_stale() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let program = program();
        for ts in [i64::MIN, i64::MAX, -1, 0] {
            let req = standard_signed(WEBINAR, secret, "msg_x", ts);
            let why = verify_signature(&req, secret, now()).unwrap_err();
            assert!(why.starts_with("stale signature"), "{ts}: {why}");
            let api = Api::new(
                config(Some(secret), None),
                MemoryStore::new(Engine::new(&program)),
            );
            assert_eq!(api.handle_blocking(&req, now()).status, 401, "{ts}");
        }
    }

    #[test]
    fn standard_webhooks_signature_through_the_api() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let program = program();
        let api = Api::new(
            config(Some(secret), None),
            MemoryStore::new(Engine::new(&program)),
        );
        let ts = now() / SECOND;
        let resp = api.handle_blocking(&standard_signed(WEBINAR, secret, "msg_1", ts), now());
        assert_eq!(resp.status, 200, "{}", resp.json_body());
        // stale, both ways
        for ts in [ts - 400, ts + 400] {
            let resp = api.handle_blocking(&standard_signed(DEMO, secret, "msg_2", ts), now());
            assert_eq!(resp.status, 401);
        }
        // signed with another key
        let resp =
            api.handle_blocking(&standard_signed(DEMO, "whsec_c2VjcmV0", "msg_3", ts), now());
        assert_eq!(resp.status, 401);
        // the id is part of what is signed
        let mut req = standard_signed(DEMO, secret, "msg_4", ts);
        req.headers[1].1 = "msg_5".into();
        assert_eq!(api.handle_blocking(&req, now()).status, 401);
    }

    #[test]
    fn leads_routes_need_a_configured_token() {
        let program = program();
        let api = Api::new(config(None, None), MemoryStore::new(Engine::new(&program)));
        api.handle_blocking(&post(WEBINAR), now());
        let resp = api.handle_blocking(&get("/leads/u1", Some("anything"), "GET"), now());
        assert_eq!(resp.status, 404);
        let resp = api.handle_blocking(&get("/leads/u1", None, "DELETE"), now());
        assert_eq!(resp.status, 404);
    }

    #[test]
    fn leads_routes_refuse_missing_or_wrong_token() {
        let program = program();
        let api = Api::new(
            config(None, Some(TOKEN)),
            MemoryStore::new(Engine::new(&program)),
        );
        api.handle_blocking(&post(WEBINAR), now());
        for token in [None, Some("wrong"), Some("t0ke"), Some("t0ken2")] {
            let resp = api.handle_blocking(&get("/leads/u1", token, "GET"), now());
            assert_eq!(resp.status, 401, "{token:?}");
            assert_eq!(code(&resp), "unauthorized");
        }
        let mut req = get("/leads/u1", None, "GET");
        req.headers
            .push(("authorization".into(), format!("Basic {TOKEN}")));
        assert_eq!(api.handle_blocking(&req, now()).status, 401);
    }

    #[test]
    fn get_lead_carries_the_latest_rule_hits_when_the_store_keeps_them() {
        let program = program();
        let mut engine = Engine::new(&program);
        engine.keep_latest_hits(true);
        let api = Api::new(config(None, Some(TOKEN)), MemoryStore::new(engine));
        api.handle_blocking(&post(WEBINAR), now());
        api.handle_blocking(&post(DEMO), now());
        let body = api
            .handle_blocking(&get("/leads/u1", Some(TOKEN), "GET"), now())
            .json_body();
        let hits = &body["latest_hits"];
        assert!(
            hits["at"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{hits}"
        );
        let scored: Vec<&Value> = hits["hits"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h["kind"] == "scored")
            .collect();
        assert_eq!(scored.len(), 1, "{hits}");
        assert!(
            scored[0]["points"].as_f64().is_some_and(|p| p > 0.0),
            "{hits}"
        );
        // a store that keeps no hits answers without the field
        let plain = Api::new(
            config(None, Some(TOKEN)),
            MemoryStore::new(Engine::new(&program)),
        );
        plain.handle_blocking(&post(WEBINAR), now());
        let body = plain
            .handle_blocking(&get("/leads/u1", Some(TOKEN), "GET"), now())
            .json_body();
        assert!(body.get("latest_hits").is_none());
    }

    #[test]
    fn get_lead_answers_the_lead_object() {
        let program = program();
        let api = Api::new(
            config(None, Some(TOKEN)),
            MemoryStore::new(Engine::new(&program)),
        );
        api.handle_blocking(&post(WEBINAR), now());
        api.handle_blocking(&post(DEMO), now());
        let resp = api.handle_blocking(&get("/leads/u1", Some(TOKEN), "GET"), now());
        assert_eq!(resp.status, 200);
        let body = resp.json_body();
        assert_eq!(body["id"], json!("u1"));
        assert_eq!(body["score"], json!(60));
        assert_eq!(body["stage"], json!("mql"));
        assert_eq!(body["reached"], json!({"mql": "2026-01-10T11:30:00Z"}));
        assert_eq!(body["events"], json!(2));
        let resp = api.handle_blocking(&get("/leads/nobody", Some(TOKEN), "GET"), now());
        assert_eq!(resp.status, 404);
        // percent-encoded ids
        api.handle_blocking(
            &post(r#"{"event":"X","userId":"a b@c","timestamp":"2026-01-10T11:00:00Z"}"#),
            now(),
        );
        let resp = api.handle_blocking(&get("/leads/a%20b%40c", Some(TOKEN), "GET"), now());
        assert_eq!(resp.json_body()["id"], json!("a b@c"));
    }

    #[test]
    fn delete_lead_forgets_state_history_merges_and_idempotency() {
        let program = program();
        let api = Api::new(
            config(None, Some(TOKEN)),
            MemoryStore::new(Engine::new(&program)),
        );
        let anon = r#"{"event":"Webinar Registered","anonymousId":"anon1","messageId":"a1","timestamp":"2026-01-10T10:00:00Z"}"#;
        let alias = r#"{"type":"alias","previousId":"anon1","userId":"u1","messageId":"a2","timestamp":"2026-01-10T10:30:00Z"}"#;
        for body in [anon, alias, WEBINAR] {
            assert_eq!(api.handle_blocking(&post(body), now()).status, 200);
        }
        let resp = api.handle_blocking(&get("/leads/anon1", Some(TOKEN), "GET"), now());
        assert_eq!(resp.json_body()["id"], json!("u1"));
        assert_eq!(resp.json_body()["score"], json!(40));

        let resp = api.handle_blocking(&get("/leads/u1", Some(TOKEN), "DELETE"), now());
        assert_eq!(resp.status, 200);
        assert_eq!(resp.json_body(), json!({"lead": "u1", "deleted": true}));
        assert_eq!(
            api.handle_blocking(&get("/leads/u1", Some(TOKEN), "GET"), now())
                .status,
            404
        );
        assert_eq!(
            api.handle_blocking(&get("/leads/anon1", Some(TOKEN), "GET"), now())
                .status,
            404
        );
        assert_eq!(
            api.handle_blocking(&get("/leads/u1", Some(TOKEN), "DELETE"), now())
                .status,
            404
        );
        // the idempotency records are gone: the same calls count again, on their own leads
        let resp = api.handle_blocking(&post(anon), now());
        assert_eq!(resp.json_body()["results"][0]["duplicate"], Value::Null);
        assert_eq!(resp.json_body()["results"][0]["lead"], json!("anon1"));
        let resp = api.handle_blocking(&post(WEBINAR), now());
        assert_eq!(resp.json_body()["results"][0]["score"], json!(20));
    }

    struct Broken<'p>(&'p Program, StoreError);

    impl<'p> LeadStore for Broken<'p> {
        type Rules<'a>
            = &'p Program
        where
            Self: 'a;
        fn program(&self) -> &'p Program {
            self.0
        }
        async fn apply(
            &self,
            _: Vec<Accepted>,
        ) -> Result<(&'p Program, Vec<Processed>), StoreError> {
            Err(self.1.clone())
        }
        async fn lead(&self, _: &str) -> Result<Option<(&'p Program, StoredLead)>, StoreError> {
            Err(self.1.clone())
        }
        async fn forget(&self, _: &str) -> Result<Option<String>, StoreError> {
            Err(self.1.clone())
        }
    }

    #[test]
    fn storage_errors_answer_by_kind_on_every_route() {
        let program = program();
        let cases = [
            (
                StoreError::Throttled("slow down".into()),
                429,
                "storage_throttled",
                true,
            ),
            (
                StoreError::Unavailable("disk full".into()),
                503,
                "storage_unavailable",
                true,
            ),
            (
                StoreError::Failed("table `t` not found".into()),
                500,
                "storage_failed",
                false,
            ),
        ];
        for (err, status, expected_code, retry) in cases {
            let api = Api::new(config(None, Some(TOKEN)), Broken(&program, err.clone()));
            let before = STORAGE_FAILURES.load(std::sync::atomic::Ordering::Relaxed);
            // the Tracking API too (no write key, unsigned input allowed)
            let mut tracking = post(&format!(r#"{{"batch": [{WEBINAR}]}}"#));
            tracking.path = "/v1/batch".into();
            let requests = [
                post(WEBINAR),
                tracking,
                get("/leads/u1", Some(TOKEN), "GET"),
                get("/leads/u1", Some(TOKEN), "DELETE"),
            ];
            for req in &requests {
                let resp = api.handle_blocking(req, now());
                assert_eq!(resp.status, status, "{err:?} {}", req.path);
                assert_eq!(code(&resp), expected_code);
                assert_eq!(
                    resp.headers
                        .iter()
                        .any(|(name, value)| name == "retry-after" && value == "1"),
                    retry,
                    "{:?}",
                    resp.headers
                );
                let message = resp.json_body()["error"]["message"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned();
                if retry {
                    assert!(message.contains(err.cause()), "{message}");
                } else {
                    // the cause stays in the log; the sender gets an error id
                    assert!(!message.contains("table"), "{message}");
                    assert!(message.contains("error id `"), "{message}");
                }
            }
            let counted = STORAGE_FAILURES.load(std::sync::atomic::Ordering::Relaxed) - before;
            assert!(
                if retry { true } else { counted >= 4 },
                "permanent failures are counted: {counted}"
            );
        }
    }

    #[test]
    fn config_from_vars_refuses_to_start_without_secret() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        assert_eq!(ApiConfig::from_vars(vars(&[])), Err(ConfigError::NoSecret));
        assert_eq!(
            ApiConfig::from_vars(vars(&[
                ("LEADSCORE_WEBHOOK_SECRET", ""),
                ("LEADSCORE_ALLOW_UNSIGNED", "0")
            ])),
            Err(ConfigError::NoSecret)
        );
        let cfg = ApiConfig::from_vars(vars(&[("LEADSCORE_ALLOW_UNSIGNED", "1")])).unwrap();
        assert!(cfg.allow_unsigned && !cfg.signatures_required());
        assert_eq!(cfg.max_body, DEFAULT_MAX_BODY);
        let cfg = ApiConfig::from_vars(vars(&[
            ("LEADSCORE_WEBHOOK_SECRET", "abc"),
            ("LEADSCORE_API_TOKEN", "tok"),
        ]))
        .unwrap();
        assert!(cfg.signatures_required());
        assert_eq!(cfg.api_token.as_deref(), Some("tok"));
        assert_eq!(
            ApiConfig::from_vars(vars(&[("LEADSCORE_WEBHOOK_SECRET", "whsec_!!")])),
            Err(ConfigError::BadSecret)
        );
    }
}
