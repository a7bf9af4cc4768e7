//! The Segment and RudderStack HTTP Tracking API (SPEC §8), which the analytics libraries
//! that product teams already run speak: `POST /v1/identify`, `/v1/track`, `/v1/page`,
//! `/v1/screen`, `/v1/group`, `/v1/alias`, `/v1/merge` (one call each) and `/v1/batch`
//! (`{"batch": [...]}`), authenticated by write key, on the same calls-to-commit path as
//! `POST /events`.
//!
//! What the libraries send, as observed (tests/sdk): `POST {host}/v1/batch` with a gzip or
//! plain JSON body and `Authorization: Basic base64(writeKey:)`; `Content-Type:
//! application/json`, except RudderStack's Node.js library, which labels its gzipped JSON
//! `application/x-www-form-urlencoded`, so these routes read JSON whatever the label. A
//! batch carries `sentAt` (and may carry `writeKey` or a `timestamp`) beside
//! `batch`; each call its own `type`, `messageId` and times (RudderStack's device times
//! only: `originalTimestamp` and `sentAt`).

use super::auth::check_write_key;
use super::{open_body, parse_json, Api, ApiResponse, LeadStore};
use crate::api::ApiRequest;
use leadscore_rules::time::{parse_rfc3339, Micros};
use serde_json::Value;

/// The largest request body on a `/v1` route, decoded: 500 KB (Segment's limit).
pub const MAX_REQUEST: usize = 500 * 1024;

/// The largest call on a `/v1` route, as JSON: 32 KB (Segment's limit).
pub const MAX_CALL: usize = 32 * 1024;

/// The most calls in one `/v1/batch`: 2,500 (Segment's limit).
pub const MAX_BATCH_CALLS: usize = 2500;

/// A Tracking API route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// One call of this type (`/v1/track` takes a `track` call).
    One(&'static str),
    /// `/v1/batch`.
    Batch,
}

impl Route {
    /// The route of a path, `None` when it is not a Tracking API route.
    pub fn of(path: &str) -> Option<Route> {
        let name = path.strip_prefix("/v1/")?;
        let name = name.strip_suffix('/').unwrap_or(name);
        Some(match name {
            "batch" => Route::Batch,
            "identify" => Route::One("identify"),
            "track" => Route::One("track"),
            "page" => Route::One("page"),
            "screen" => Route::One("screen"),
            "group" => Route::One("group"),
            "alias" => Route::One("alias"),
            "merge" => Route::One("merge"),
            _ => return None,
        })
    }

    /// The route as logs and error messages name it.
    fn name(self) -> &'static str {
        match self {
            Route::Batch => "POST /v1/batch",
            Route::One("identify") => "POST /v1/identify",
            Route::One("track") => "POST /v1/track",
            Route::One("page") => "POST /v1/page",
            Route::One("screen") => "POST /v1/screen",
            Route::One("group") => "POST /v1/group",
            Route::One("alias") => "POST /v1/alias",
            Route::One(_) => "POST /v1/merge",
        }
    }
}

impl<S: LeadStore> Api<S> {
    /// Answers a Tracking API request: the body checks of every POST route (with the
    /// Tracking API's 500 KB), the write key (`401`), the JSON (`400`), the batch size
    /// (`413`), then the calls as `POST /events` applies them, each at most 32 KB, and the
    /// answer of `/events` with `"success": true`.
    pub(super) async fn post_tracking(
        &self,
        req: &ApiRequest,
        route: Route,
        now: Micros,
    ) -> ApiResponse {
        library_errors(self.tracking(req, route, now).await)
    }

    async fn tracking(&self, req: &ApiRequest, route: Route, now: Micros) -> ApiResponse {
        // the body is JSON whatever its `Content-Type` says, as Segment's and RudderStack's
        // servers read it: RudderStack's Node.js library labels its gzipped JSON
        // `application/x-www-form-urlencoded`
        let req = match open_body(req, MAX_REQUEST, "a request on the `/v1` routes", false) {
            Ok(req) => req,
            Err(response) => return response,
        };
        let mut value = match parse_json(&req.body) {
            Ok(value) => value,
            Err(response) => return response,
        };
        if self.config.write_keys.is_empty() {
            if !self.config.allow_unsigned {
                return unauthorized(
                    "no write key is configured: set `LEADSCORE_WRITE_KEY` to take calls from the analytics libraries",
                );
            }
        } else if let Err(message) = check_write_key(&req, &value, &self.config.write_keys) {
            return unauthorized(&message);
        }
        if let Err(response) = prepare(&mut value, route) {
            return response;
        }
        self.apply_body(&value, now, Some(MAX_CALL), route.name())
            .await
    }
}

/// An error answer with its `code` and `message` also at the top level, where Segment's
/// and RudderStack's libraries read them to log why a batch was refused (RudderStack's
/// Python library fails with a `KeyError` otherwise).
fn library_errors(mut response: ApiResponse) -> ApiResponse {
    if response.status == 200 {
        return response;
    }
    if let Value::Object(mut body) = response.json_body() {
        let error = body.get("error").cloned().unwrap_or(Value::Null);
        for key in ["code", "message"] {
            if let Some(value) = error.get(key) {
                body.insert(key.to_owned(), value.clone());
            }
        }
        if let Ok(bytes) = serde_json::to_vec(&body) {
            response.body = bytes;
        }
    }
    response
}

/// `401`, asking for Basic credentials as the libraries send them.
fn unauthorized(message: &str) -> ApiResponse {
    ApiResponse::error(401, "unauthorized", message, None)
        .with_header("www-authenticate", "Basic realm=\"leadscore\"")
}

/// Turns a Tracking API body into one `POST /events` reads: the write key taken out (it
/// is never kept); a single call given its route's `type`; a batch's `sentAt` given to the
/// calls that carry their device time only, so their time is corrected for the device's
/// clock (SPEC §8).
fn prepare(value: &mut Value, route: Route) -> Result<(), ApiResponse> {
    let Value::Object(body) = value else {
        return Err(ApiResponse::error(
            400,
            "invalid_call",
            "a request body must be a JSON object",
            None,
        ));
    };
    body.remove("writeKey");
    match route {
        Route::One(kind) => {
            if body.contains_key("batch") {
                return Err(ApiResponse::error(
                    400,
                    "invalid_call",
                    format!(
                        "`{}` takes one call; send a batch to `POST /v1/batch`",
                        route.name()
                    ),
                    Some("batch"),
                ));
            }
            // the call's own type, as the normaliser reads it: `type`, else `action`
            let given = body
                .get("type")
                .filter(|t| !t.is_null())
                .or_else(|| body.get("action").filter(|t| !t.is_null()));
            match given {
                None => {
                    body.insert("type".into(), Value::String(kind.into()));
                }
                Some(Value::String(given)) if given == kind => {}
                Some(given) => {
                    return Err(ApiResponse::error(
                        400,
                        "invalid_call",
                        format!(
                            "`{}` takes a `{kind}` call, not {}",
                            route.name(),
                            match given {
                                Value::String(t) => format!("`{t}`"),
                                other => other.to_string(),
                            }
                        ),
                        Some("type"),
                    ));
                }
            }
        }
        Route::Batch => {
            // the batch's `sentAt` is when the device sent the calls: a call that has its
            // device time only (`originalTimestamp`, no `timestamp` or `sentAt`) and a
            // `messageId` (so its idempotency key does not change with the send) takes it
            let sent_at = match body.get("sentAt").filter(|v| !v.is_null()) {
                None => None,
                Some(Value::String(text)) if parse_rfc3339(text).is_some() => {
                    Some(Value::String(text.clone()))
                }
                Some(_) => {
                    return Err(ApiResponse::error(
                        400,
                        "invalid_call",
                        "sentAt: not an RFC 3339 time",
                        Some("sentAt"),
                    ))
                }
            };
            match body.get_mut("batch") {
                Some(Value::Array(calls)) => {
                    if calls.len() > MAX_BATCH_CALLS {
                        return Err(ApiResponse::error(
                            413,
                            "too_many_calls",
                            format!(
                                "the batch has {} calls; the limit is {MAX_BATCH_CALLS} calls a batch",
                                calls.len()
                            ),
                            Some("batch"),
                        ));
                    }
                    for call in calls.iter_mut() {
                        if let Value::Object(call) = call {
                            call.remove("writeKey");
                            let absent = |key: &str| call.get(key).is_none_or(Value::is_null);
                            let device_time_only = !absent("originalTimestamp")
                                && absent("timestamp")
                                && absent("sentAt")
                                && !absent("messageId");
                            if let (true, Some(sent_at)) = (device_time_only, &sent_at) {
                                call.insert("sentAt".to_owned(), sent_at.clone());
                            }
                        }
                    }
                }
                Some(_) => {} // the batch's own error, from the normaliser
                None => {
                    return Err(ApiResponse::error(
                        400,
                        "invalid_call",
                        "`POST /v1/batch` needs `batch`, an array of calls",
                        Some("batch"),
                    ))
                }
            }
            // only the calls remain: what the normaliser reads of a batch
            body.retain(|key, _| key == "batch");
        }
    }
    Ok(())
}

/// The size of a value as compact JSON, counted without building the text.
pub(crate) fn json_size(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, value) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::api::tests::now;
    use crate::api::ApiConfig;
    use crate::store::engine::Engine;
    use crate::store::memory::MemoryStore;
    use base64::engine::general_purpose::STANDARD as BASE64;
    use base64::Engine as _;
    use leadscore_rules::Program;
    use serde_json::json;

    const RULES: &str = r#"ruleset "tracking-test"
fit "Title" +10 when lead.title == "VP"
score "Webinar" +20 on "Webinar Registered"
score "Pricing" +5 on page where name == "Pricing"
stage mql when engagement >= 20
"#;

    fn program() -> Program {
        crate::rules::compile_text("test.rules", RULES)
            .expect("rules compile")
            .0
    }

    fn keyed(keys: &[&str]) -> ApiConfig {
        ApiConfig {
            webhook_secret: Some("webhook-secret".into()),
            write_keys: keys.iter().map(|k| (*k).to_owned()).collect(),
            ..ApiConfig::default()
        }
    }

    fn post(path: &str, body: &Value, key: Option<&str>) -> ApiRequest {
        let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
        if let Some(key) = key {
            let basic = BASE64.encode(format!("{key}:"));
            headers.push(("authorization".to_owned(), format!("Basic {basic}")));
        }
        ApiRequest {
            method: "POST".into(),
            path: path.into(),
            headers,
            body: serde_json::to_vec(body).unwrap(),
        }
    }

    fn webinar(message_id: &str) -> Value {
        json!({"type": "track", "event": "Webinar Registered", "userId": "u1",
               "messageId": message_id, "timestamp": "2026-01-10T11:00:00Z"})
    }

    /// The memory store, keeping each accepted call's record as a store keeps it.
    struct Recording<'p> {
        inner: MemoryStore<'p>,
        records: std::sync::Mutex<Vec<Value>>,
    }

    impl<'p> Recording<'p> {
        fn new(program: &'p Program) -> Self {
            Recording {
                inner: MemoryStore::new(Engine::new(program)),
                records: std::sync::Mutex::new(Vec::new()),
            }
        }
    }

    impl<'p> LeadStore for Recording<'p> {
        type Rules<'a>
            = &'p Program
        where
            Self: 'a;
        fn program(&self) -> &'p Program {
            self.inner.program()
        }
        async fn apply(
            &self,
            calls: Vec<crate::api::Accepted>,
        ) -> Result<(&'p Program, Vec<crate::api::Processed>), crate::api::StoreError> {
            self.records
                .lock()
                .unwrap()
                .extend(calls.iter().map(|c| c.record.clone()));
            self.inner.apply(calls).await
        }
        async fn lead(
            &self,
            id: &str,
        ) -> Result<Option<(&'p Program, crate::api::StoredLead)>, crate::api::StoreError> {
            self.inner.lead(id).await
        }
        async fn forget(&self, id: &str) -> Result<Option<String>, crate::api::StoreError> {
            self.inner.forget(id).await
        }
    }

    fn events(api: &Api<Recording<'_>>, id: &str) -> Option<u64> {
        api.store()
            .inner
            .engine()
            .lead(id)
            .map(|lead| lead.state.events)
    }

    #[test]
    fn every_route_applies_its_call_with_success_true() {
        let program = program();
        let api = Api::new(keyed(&["wk"]), Recording::new(&program));
        let identify = json!({"userId": "u1", "messageId": "i1",
            "timestamp": "2026-01-10T10:00:00Z", "traits": {"title": "VP"}});
        let resp = api.handle_blocking(&post("/v1/identify", &identify, Some("wk")), now());
        assert_eq!(resp.status, 200, "{}", resp.json_body());
        let body = resp.json_body();
        assert_eq!(body["success"], json!(true));
        assert_eq!(body["applied"], json!(1));
        assert_eq!(body["results"][0]["score"], json!(10));
        let track = json!({"event": "Webinar Registered", "userId": "u1", "messageId": "t1",
            "timestamp": "2026-01-10T11:00:00Z"});
        let resp = api.handle_blocking(&post("/v1/track", &track, Some("wk")), now());
        assert_eq!(resp.json_body()["results"][0]["stage"], json!("mql"));
        let page = json!({"name": "Pricing", "userId": "u1", "messageId": "p1",
            "timestamp": "2026-01-10T11:10:00Z"});
        let resp = api.handle_blocking(&post("/v1/page", &page, Some("wk")), now());
        assert_eq!(resp.json_body()["results"][0]["score"], json!(35));
        for (path, call) in [
            (
                "/v1/screen",
                json!({"name": "Home", "userId": "u1", "messageId": "s1"}),
            ),
            (
                "/v1/group",
                json!({"groupId": "g1", "userId": "u1", "messageId": "g1", "traits": {}}),
            ),
            (
                "/v1/alias",
                json!({"previousId": "anon-1", "userId": "u1", "messageId": "a1"}),
            ),
            (
                "/v1/merge",
                json!({"userId": "u1", "messageId": "m1",
                "mergeProperties": [{"type": "anonymous_id", "value": "anon-2"}]}),
            ),
        ] {
            let resp = api.handle_blocking(&post(path, &call, Some("wk")), now());
            assert_eq!(resp.status, 200, "{path}: {}", resp.json_body());
            assert_eq!(resp.json_body()["applied"], json!(1), "{path}");
        }
        assert_eq!(events(&api, "u1"), Some(7));
    }

    #[test]
    fn a_batch_gives_its_sent_at_to_device_times_and_is_answered_per_call() {
        let program = program();
        let api = Api::new(keyed(&["wk"]), Recording::new(&program));
        // device times only: placed at receipt − (sentAt − originalTimestamp), 60 s before now
        let body = json!({
            "batch": [
                {"type": "track", "event": "Webinar Registered", "anonymousId": "a1",
                 "messageId": "b1", "originalTimestamp": "2026-01-10T13:00:00Z"},
                {"type": "track", "userId": "u2", "messageId": "b2", "timestamp": "2026-01-10T11:00:00Z"},
            ],
            "sentAt": "2026-01-10T13:01:00Z",
        });
        let resp = api.handle_blocking(&post("/v1/batch", &body, Some("wk")), now());
        assert_eq!(resp.status, 200, "{}", resp.json_body());
        let answer = resp.json_body();
        assert_eq!(answer["success"], json!(true));
        assert_eq!(
            (answer["applied"].clone(), answer["rejected"].clone()),
            (json!(1), json!(1))
        );
        assert_eq!(
            answer["results"][1]["error"]["path"],
            json!("batch[1].event")
        );
        let at = api
            .store()
            .inner
            .engine()
            .lead("a1")
            .map(|lead| lead.state.last_seen);
        assert_eq!(at, Some(now() - 60 * leadscore_rules::time::SECOND));
        // a batch's `sentAt` that is not a time is named where it is
        let bad = json!({"batch": [webinar("b3")], "sentAt": "yesterday"});
        let resp = api.handle_blocking(&post("/v1/batch", &bad, Some("wk")), now());
        assert_eq!(resp.status, 400);
        assert_eq!(resp.json_body()["error"]["path"], json!("sentAt"));
    }

    #[test]
    fn write_keys_by_basic_auth_or_in_the_body_and_a_wrong_key_stores_nothing() {
        let program = program();
        let api = Api::new(keyed(&["old", "new"]), Recording::new(&program));
        let resp = api.handle_blocking(&post("/v1/track", &webinar("w1"), Some("new")), now());
        assert_eq!(resp.status, 200, "{}", resp.json_body());
        let mut in_body = webinar("w2");
        in_body["writeKey"] = json!("old");
        let resp = api.handle_blocking(&post("/v1/track", &in_body, None), now());
        assert_eq!(resp.status, 200, "{}", resp.json_body());
        // the key is never kept
        let kept = api.store().records.lock().unwrap().clone();
        assert_eq!(kept.len(), 2);
        assert!(kept.iter().all(|r| r.get("writeKey").is_none()), "{kept:?}");
        for (req, why) in [
            (
                post("/v1/track", &webinar("w3"), Some("wrong")),
                "wrong write key",
            ),
            (post("/v1/track", &webinar("w3"), None), "missing write key"),
            (
                post(
                    "/v1/batch",
                    &json!({"batch": [webinar("w3")], "writeKey": "nope"}),
                    None,
                ),
                "wrong write key",
            ),
        ] {
            let resp = api.handle_blocking(&req, now());
            assert_eq!(resp.status, 401, "{}", resp.json_body());
            let message = resp.json_body()["error"]["message"]
                .as_str()
                .unwrap()
                .to_owned();
            assert!(message.starts_with(why), "{message}");
            // where the libraries read it
            assert_eq!(resp.json_body()["code"], json!("unauthorized"));
            assert_eq!(resp.json_body()["message"], json!(message));
            assert!(resp.headers.iter().any(|(n, _)| n == "www-authenticate"));
        }
        let mut bearer = post("/v1/track", &webinar("w3"), None);
        bearer
            .headers
            .push(("authorization".into(), "Bearer new".into()));
        assert_eq!(api.handle_blocking(&bearer, now()).status, 401);
        assert_eq!(events(&api, "u1"), Some(2));
    }

    #[test]
    fn without_a_write_key_the_routes_answer_401_unless_unsigned_input_is_allowed() {
        let program = program();
        let api = Api::new(keyed(&[]), Recording::new(&program));
        let resp = api.handle_blocking(&post("/v1/track", &webinar("w1"), Some("any")), now());
        assert_eq!(resp.status, 401);
        assert!(resp.json_body()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("LEADSCORE_WRITE_KEY"));
        assert_eq!(events(&api, "u1"), None);
        let open = ApiConfig {
            allow_unsigned: true,
            ..ApiConfig::default()
        };
        let api = Api::new(open, Recording::new(&program));
        let resp = api.handle_blocking(&post("/v1/track", &webinar("w1"), None), now());
        assert_eq!(resp.status, 200, "{}", resp.json_body());
        // a write key alone opens the `/v1` routes, not `POST /events`
        let api = Api::new(
            ApiConfig {
                write_keys: vec!["wk".into()],
                ..ApiConfig::default()
            },
            Recording::new(&program),
        );
        let mut events_req = post("/events", &webinar("w1"), None);
        events_req.path = "/events".into();
        assert_eq!(api.handle_blocking(&events_req, now()).status, 401);
    }

    #[test]
    fn segment_limits_name_themselves() {
        let program = program();
        let api = Api::new(keyed(&["wk"]), Recording::new(&program));
        let mut big = webinar("big");
        big["properties"] = json!({"blob": "x".repeat(MAX_CALL)});
        // a single call over 32 KB is a 400
        let resp = api.handle_blocking(&post("/v1/track", &big, Some("wk")), now());
        assert_eq!(resp.status, 400, "{}", resp.json_body());
        let message = resp.json_body()["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(message.contains("32768 bytes (32 KB) a call"), "{message}");
        // in a batch, that call's error
        let body = json!({"batch": [webinar("small"), big]});
        let resp = api.handle_blocking(&post("/v1/batch", &body, Some("wk")), now());
        assert_eq!(resp.status, 200, "{}", resp.json_body());
        assert_eq!(
            resp.json_body()["results"][1]["error"]["path"],
            json!("batch[1]")
        );
        assert_eq!(resp.json_body()["applied"], json!(1));
        // a request over 500 KB, and a batch over 2,500 calls: 413
        let calls: Vec<Value> = (0..20)
            .map(|i| {
                let mut c = webinar(&format!("c{i}"));
                c["properties"] = json!({"blob": "x".repeat(30 * 1024)});
                c
            })
            .collect();
        let resp = api.handle_blocking(
            &post("/v1/batch", &json!({"batch": calls}), Some("wk")),
            now(),
        );
        assert_eq!(resp.status, 413);
        assert!(resp.json_body()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("512000 bytes (500 KB)"));
        let calls: Vec<Value> = (0..=MAX_BATCH_CALLS)
            .map(|i| webinar(&format!("n{i}")))
            .collect();
        let resp = api.handle_blocking(
            &post("/v1/batch", &json!({"batch": calls}), Some("wk")),
            now(),
        );
        assert_eq!(resp.status, 413);
        assert_eq!(resp.json_body()["error"]["code"], json!("too_many_calls"));
        assert!(resp.json_body()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("2500 calls a batch"));
        assert_eq!(events(&api, "u1"), Some(1));
    }

    #[test]
    fn gzip_bodies_are_read_and_a_zip_bomb_is_413() {
        use std::io::Write as _;
        let gzip = |data: &[u8]| {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            enc.write_all(data).unwrap();
            enc.finish().unwrap()
        };
        let program = program();
        let api = Api::new(keyed(&["wk"]), Recording::new(&program));
        let mut req = post("/v1/batch", &json!({"batch": [webinar("z1")]}), Some("wk"));
        req.body = gzip(&req.body);
        req.headers.push(("content-encoding".into(), "gzip".into()));
        let resp = api.handle_blocking(&req, now());
        assert_eq!(resp.status, 200, "{}", resp.json_body());
        assert_eq!(events(&api, "u1"), Some(1));
        // 600 KB of spaces inflate past the 500 KB limit of the /v1 routes
        let mut bomb = b"{\"batch\": [".to_vec();
        bomb.extend(std::iter::repeat_n(b' ', 600 * 1024));
        req.body = gzip(&bomb);
        assert!(req.body.len() < 4096);
        let resp = api.handle_blocking(&req, now());
        assert_eq!(resp.status, 413, "{}", resp.json_body());
        assert_eq!(resp.json_body()["code"], json!("payload_too_large"));
    }

    #[test]
    fn a_call_of_another_type_and_a_wrong_method_are_refused() {
        let program = program();
        let api = Api::new(keyed(&["wk"]), Recording::new(&program));
        let resp = api.handle_blocking(&post("/v1/identify", &webinar("w1"), Some("wk")), now());
        assert_eq!(resp.status, 400);
        assert_eq!(resp.json_body()["error"]["path"], json!("type"));
        // `action` names the type as well
        let mut tracked = webinar("w2");
        tracked.as_object_mut().unwrap().remove("type");
        tracked["action"] = json!("track");
        let resp = api.handle_blocking(&post("/v1/page", &tracked, Some("wk")), now());
        assert_eq!(resp.status, 400, "{}", resp.json_body());
        let mut get = post("/v1/batch", &json!({}), Some("wk"));
        get.method = "GET".into();
        assert_eq!(api.handle_blocking(&get, now()).status, 405);
        assert_eq!(
            api.handle_blocking(&post("/v1/nope", &json!({}), Some("wk")), now())
                .status,
            404
        );
        assert_eq!(Route::of("/v1/batch/"), Some(Route::Batch));
        // JSON whatever the label, as RudderStack's Node.js library labels it
        let mut labelled = post("/v1/track", &webinar("w0"), Some("wk"));
        labelled.headers[0].1 = "application/x-www-form-urlencoded".into();
        let resp = api.handle_blocking(&labelled, now());
        assert_eq!(resp.status, 200, "{}", resp.json_body());
        // a host with a trailing slash: `//v1/track`
        let resp = api.handle_blocking(&post("//v1/track", &webinar("w1"), Some("wk")), now());
        assert_eq!(resp.status, 200, "{}", resp.json_body());
    }
}
