//! The `score` function: the webhook API of SPEC §6 behind a Lambda Function URL or an API
//! Gateway HTTP API (payload 2.0). Thin: it turns the Lambda request into an
//! [`ApiRequest`], lets [`Api`] answer over the DynamoDB store, and turns the answer back.

use lambda_http::{Body, Request, Response};
use leadscore_core::api::{Api, ApiConfig, ApiRequest, ApiResponse, ConfigError, StoreError};
use leadscore_core::store::dynamo::{now_micros, DynamoStore};

/// Why the function cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The webhook configuration is not safe to serve.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store cannot be configured.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The function's state, built once per cold start. No lock: the store takes `&self`, so
/// concurrent requests (a runtime with concurrency, or the tests' senders) run side by side
/// and meet only at DynamoDB's version guards.
pub struct Score {
    api: Api<DynamoStore>,
}

impl Score {
    /// The function over a configured API and store.
    pub fn new(config: ApiConfig, store: DynamoStore) -> Self {
        Score {
            api: Api::new(config, store),
        }
    }

    /// Starts from the environment (SPEC §6, §8): the rules (those published in the table,
    /// else `LEADSCORE_RULES`, checked and compiled here, once; never the example rules
    /// unless `LEADSCORE_RULES=builtin`), the
    /// webhook secret, write keys and API token (refusing to start with neither a secret nor
    /// a write key unless `LEADSCORE_ALLOW_UNSIGNED=1`), and the table.
    pub async fn from_env() -> Result<Self, StartError> {
        let config = ApiConfig::from_env()?;
        if config.allow_unsigned && !config.signatures_required() {
            tracing::warn!(
                "accepting unsigned events (LEADSCORE_ALLOW_UNSIGNED=1): local use only"
            );
        }
        if config.allow_unsigned && config.write_keys.is_empty() {
            tracing::warn!(
                "accepting /v1 calls without a write key (LEADSCORE_ALLOW_UNSIGNED=1): local use only"
            );
        }
        // the rules published in the table, when there are any (SPEC §7), else the configured
        let store = DynamoStore::for_function().await?;
        leadscore_core::function::log_start("score", &store);
        Ok(Score::new(config, store))
    }

    /// Answers one Lambda HTTP request.
    pub async fn handle(&self, req: Request) -> Response<Body> {
        let request = api_request(req);
        let started = std::time::Instant::now();
        let response = self.api.handle(&request, now_micros()).await;
        tracing::info!(
            method = %request.method,
            path = %request.path,
            status = response.status,
            bytes = request.body.len(),
            micros = started.elapsed().as_micros() as u64,
            "request"
        );
        lambda_response(response)
    }

    /// The DynamoDB requests the store has sent so far.
    pub async fn requests(&self) -> u64 {
        self.api.store().requests()
    }
}

/// The request as the API sees it: method, path (the Function URL's or HTTP API's raw path),
/// lowercase header names, and the body (Lambda has already decoded base64 bodies).
pub fn api_request(req: Request) -> ApiRequest {
    let (parts, body) = req.into_parts();
    let headers = parts
        .headers
        .iter()
        .filter_map(|(name, value)| {
            value
                .to_str()
                .ok()
                .map(|v| (name.as_str().to_ascii_lowercase(), v.to_owned()))
        })
        .collect();
    let body = match body {
        Body::Empty => Vec::new(),
        Body::Text(text) => text.into_bytes(),
        Body::Binary(bytes) => bytes,
        _ => Vec::new(),
    };
    ApiRequest {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        headers,
        body,
    }
}

/// The Lambda response of an API response.
pub fn lambda_response(resp: ApiResponse) -> Response<Body> {
    let mut builder = Response::builder().status(resp.status);
    for (name, value) in &resp.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let body = Body::Text(String::from_utf8_lossy(&resp.body).into_owned());
    builder.body(body).unwrap_or_else(|_| {
        let mut fallback = Response::new(Body::Text(
            r#"{"error":{"code":"internal","message":"invalid response","path":null}}"#.into(),
        ));
        *fallback.status_mut() = lambda_http::http::StatusCode::INTERNAL_SERVER_ERROR;
        fallback
    })
}
