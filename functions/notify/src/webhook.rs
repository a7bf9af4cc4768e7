//! Standard Webhooks (<https://www.standardwebhooks.com/>): signing and posting.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::{ConfigError, Webhook};

pub use leadscore_wire::{sign, signed_headers};

/// How long one webhook delivery may take, connection included.
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// The HTTP client for webhooks: [`WEBHOOK_TIMEOUT`], no redirects (a `3xx` answer is a
/// failed delivery, never a re-post elsewhere).
pub fn http_client() -> Result<reqwest::Client, ConfigError> {
    reqwest::Client::builder()
        .timeout(WEBHOOK_TIMEOUT)
        .connect_timeout(WEBHOOK_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("leadscore-notify/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|err| ConfigError::HttpClient(err.to_string()))
}

/// Why a webhook delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The request could not be sent, or no answer came in time. The URL is left out of the
    /// message: it may carry a token.
    #[error("{}", describe(.0))]
    Send(reqwest::Error),
    /// The receiver answered with a status other than `2xx`.
    #[error("the receiver answered {0}")]
    Status(reqwest::StatusCode),
}

fn describe(err: &reqwest::Error) -> String {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    // `reqwest::Error`'s own message stops at the first cause; the causes say why.
    let mut message = kind.to_owned();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// The current time in Unix seconds.
pub fn now_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

/// Posts `body` to the webhook, signed with Standard Webhooks under the notification id
/// `id`. A `2xx` answer is a delivery; anything else, or no answer within
/// [`WEBHOOK_TIMEOUT`], is a failure.
pub async fn post(
    client: &reqwest::Client,
    webhook: &Webhook,
    id: &str,
    body: &str,
) -> Result<reqwest::StatusCode, WebhookError> {
    let mut request = client.post(webhook.url().clone());
    for (name, value) in signed_headers(webhook.key(), id, now_seconds(), body.as_bytes()) {
        request = request.header(name, value);
    }
    let response = request
        .body(body.to_owned())
        .send()
        .await
        .map_err(|err| WebhookError::Send(err.without_url()))?;
    let status = response.status();
    // Read the (bounded by the timeout) answer so the connection can be reused.
    let _ = response.bytes().await;
    if status.is_success() {
        Ok(status)
    } else {
        Err(WebhookError::Status(status))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::config::webhook_key;

    #[test]
    fn signature_covers_id_timestamp_and_body() {
        let key = webhook_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let base = sign(&key, "msg_1", 1614265330, b"{}");
        assert_ne!(base, sign(&key, "msg_2", 1614265330, b"{}"));
        assert_ne!(base, sign(&key, "msg_1", 1614265331, b"{}"));
        assert_ne!(base, sign(&key, "msg_1", 1614265330, b"{ }"));
        assert_ne!(base, sign(b"other", "msg_1", 1614265330, b"{}"));
    }

    #[test]
    fn headers() {
        let key = webhook_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let headers = signed_headers(&key, "ntf_1", 1614265330, b"{}");
        assert_eq!(headers[0], ("content-type", "application/json".into()));
        assert_eq!(headers[1], ("webhook-id", "ntf_1".into()));
        assert_eq!(headers[2], ("webhook-timestamp", "1614265330".into()));
        assert_eq!(headers[3].1, sign(&key, "ntf_1", 1614265330, b"{}"));
    }
}
