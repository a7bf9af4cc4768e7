//! Standard Webhooks (<https://www.standardwebhooks.com/>): signing and posting.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::{ConfigError, Webhook};

type HmacSha256 = Hmac<Sha256>;

/// How long one webhook delivery may take, connection included.
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// The `webhook-signature` header's value: `v1,` and the base64 HMAC-SHA256, keyed with
/// `key`, of `"{id}.{timestamp}.{body}"`.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    // HMAC takes a key of any length: `new_from_slice` never fails for it.
    #[allow(clippy::expect_used)]
    let mut mac = HmacSha256::new_from_slice(key).expect("hmac accepts a key of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

/// The headers of one signed delivery, in order: `content-type`, `webhook-id`,
/// `webhook-timestamp`, `webhook-signature`.
pub fn signed_headers(
    key: &[u8],
    id: &str,
    timestamp: i64,
    body: &str,
) -> [(&'static str, String); 4] {
    [
        ("content-type", "application/json".to_owned()),
        ("webhook-id", id.to_owned()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", sign(key, id, timestamp, body)),
    ]
}

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
    for (name, value) in signed_headers(webhook.key(), id, now_seconds(), body) {
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
    fn standard_webhooks_test_vector() {
        let key = webhook_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            sign(
                &key,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                r#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn signature_covers_id_timestamp_and_body() {
        let key = webhook_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let base = sign(&key, "msg_1", 1614265330, "{}");
        assert_ne!(base, sign(&key, "msg_2", 1614265330, "{}"));
        assert_ne!(base, sign(&key, "msg_1", 1614265331, "{}"));
        assert_ne!(base, sign(&key, "msg_1", 1614265330, "{ }"));
        assert_ne!(base, sign(b"other", "msg_1", 1614265330, "{}"));
    }

    #[test]
    fn headers() {
        let key = webhook_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let headers = signed_headers(&key, "ntf_1", 1614265330, "{}");
        assert_eq!(headers[0], ("content-type", "application/json".into()));
        assert_eq!(headers[1], ("webhook-id", "ntf_1".into()));
        assert_eq!(headers[2], ("webhook-timestamp", "1614265330".into()));
        assert_eq!(headers[3].1, sign(&key, "ntf_1", 1614265330, "{}"));
    }
}
