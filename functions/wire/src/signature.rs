//! Webhook signatures: Standard Webhooks (<https://www.standardwebhooks.com/>), signed by
//! `notify` and verified by `score` and `serve`, and Segment's `X-Signature`, verified by
//! them. Secrets are read one way ([`standard_key`]); `notify`'s targets must be proper
//! `whsec_` secrets ([`webhook_key`]).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha1 = Hmac<sha1::Sha1>;
type HmacSha256 = Hmac<Sha256>;

/// How far a Standard Webhooks `webhook-timestamp` may be from now: 5 minutes.
pub const SIGNATURE_TOLERANCE_SECONDS: i64 = 300;

/// Why a signature was refused. The messages never repeat the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// `webhook-timestamp` is not a whole number of seconds.
    #[error("`webhook-timestamp` `{0}` is not a number of seconds")]
    BadTimestamp(String),
    /// `webhook-timestamp` is too far from now (a replayed or delayed request).
    #[error("stale signature: `webhook-timestamp` `{0}` is more than 5 minutes from now")]
    Stale(String),
    /// No `v1` signature in `webhook-signature` matches.
    #[error("wrong `webhook-signature`")]
    WrongStandard,
    /// `X-Signature` does not match.
    #[error("wrong `X-Signature`")]
    WrongSegment,
}

/// The Standard Webhooks key of a secret as `score` and `serve` read it: the base64 part of
/// a `whsec_` secret; another secret is base64-decoded when it can be, else used as written.
pub fn standard_key(secret: &str) -> Vec<u8> {
    let key = secret.strip_prefix("whsec_").unwrap_or(secret);
    BASE64
        .decode(key)
        .unwrap_or_else(|_| secret.as_bytes().to_vec())
}

/// The key of a `whsec_<base64>` secret, as `notify`'s targets must have (receivers check
/// with a Standard Webhooks library); the error says what is wrong without repeating the
/// secret. The same key as [`standard_key`] gives for it.
pub fn webhook_key(secret: &str) -> Result<Vec<u8>, String> {
    let Some(encoded) = secret.strip_prefix("whsec_") else {
        return Err("the secret must start with `whsec_` (a Standard Webhooks secret)".into());
    };
    match BASE64.decode(encoded) {
        Ok(key) if !key.is_empty() => Ok(key),
        Ok(_) => Err("the secret's key after `whsec_` is empty".into()),
        Err(_) => Err("the secret's key after `whsec_` is not base64".into()),
    }
}

fn standard_mac(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> HmacSha256 {
    // HMAC takes a key of any length: `new_from_slice` never fails for it.
    #[allow(clippy::expect_used)]
    let mut mac = HmacSha256::new_from_slice(key).expect("hmac accepts a key of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `webhook-signature` header's value: `v1,` and the base64 HMAC-SHA256, keyed with
/// `key`, of `"{id}.{timestamp}.{body}"`.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mac = standard_mac(key, id, &timestamp.to_string(), body);
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

/// The headers of one signed delivery, in order: `content-type`, `webhook-id`,
/// `webhook-timestamp`, `webhook-signature`.
pub fn signed_headers(
    key: &[u8],
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> [(&'static str, String); 4] {
    [
        ("content-type", "application/json".to_owned()),
        ("webhook-id", id.to_owned()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", sign(key, id, timestamp, body)),
    ]
}

/// Checks a Standard Webhooks signature: `signatures` (the `webhook-signature` header)
/// holds space-separated `v1,<base64>`; one must match [`sign`]'s under `secret`
/// ([`standard_key`]), and `timestamp` must be within [`SIGNATURE_TOLERANCE_SECONDS`] of
/// `now_seconds`. Compared in constant time.
pub fn verify_standard(
    secret: &str,
    id: &str,
    timestamp: &str,
    body: &[u8],
    signatures: &str,
    now_seconds: i64,
) -> Result<(), SignatureError> {
    let seconds: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::BadTimestamp(timestamp.to_owned()))?;
    // `abs_diff`: a difference of `i64` extremes neither wraps nor overflows
    if seconds.abs_diff(now_seconds) > SIGNATURE_TOLERANCE_SECONDS.unsigned_abs() {
        return Err(SignatureError::Stale(timestamp.to_owned()));
    }
    let expected = standard_mac(&standard_key(secret), id, timestamp, body)
        .finalize()
        .into_bytes();
    let mut ok = subtle::Choice::from(0u8);
    for part in signatures.split_whitespace() {
        let Some(("v1", sig)) = part.split_once(',') else {
            continue;
        };
        if let Ok(given) = BASE64.decode(sig) {
            ok |= expected.as_slice().ct_eq(&given);
        }
    }
    if bool::from(ok) {
        Ok(())
    } else {
        Err(SignatureError::WrongStandard)
    }
}

/// Checks Segment's `X-Signature`: the hex HMAC-SHA1 of the body, keyed with the secret as
/// written. Compared in constant time.
pub fn verify_segment(body: &[u8], signature: &str, secret: &str) -> Result<(), SignatureError> {
    let given = hex::decode(signature.trim()).map_err(|_| SignatureError::WrongSegment)?;
    let mut mac =
        HmacSha1::new_from_slice(secret.as_bytes()).map_err(|_| SignatureError::WrongSegment)?;
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    if bool::from(expected.as_slice().ct_eq(&given)) {
        Ok(())
    } else {
        Err(SignatureError::WrongSegment)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn what_notify_signs_score_verifies() {
        let key = webhook_key(SECRET).unwrap();
        assert_eq!(key, standard_key(SECRET));
        let signature = sign(&key, "ntf_1", 1_614_265_330, b"{}");
        assert_eq!(
            verify_standard(
                SECRET,
                "ntf_1",
                "1614265330",
                b"{}",
                &signature,
                1_614_265_400
            ),
            Ok(())
        );
        // several signatures (a key rotation): one match is enough
        let both = format!("v1,AAAA {signature}");
        assert!(
            verify_standard(SECRET, "ntf_1", "1614265330", b"{}", &both, 1_614_265_330).is_ok()
        );
    }

    #[test]
    fn the_standard_webhooks_example_vector() {
        // from the Standard Webhooks specification's examples
        let key = webhook_key(SECRET).unwrap();
        assert_eq!(
            sign(
                &key,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1_614_265_330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn wrong_stale_or_malformed_signatures_are_refused() {
        let key = standard_key(SECRET);
        let good = sign(&key, "m", 1000, b"{}");
        let check = |id: &str, ts: &str, body: &[u8], sig: &str, now: i64| {
            verify_standard(SECRET, id, ts, body, sig, now)
        };
        assert_eq!(
            check("m", "1000", b"{ }", &good, 1000),
            Err(SignatureError::WrongStandard)
        );
        assert_eq!(
            check("n", "1000", b"{}", &good, 1000),
            Err(SignatureError::WrongStandard)
        );
        assert_eq!(
            check("m", "1000", b"{}", "v2,abc", 1000),
            Err(SignatureError::WrongStandard)
        );
        assert_eq!(
            check("m", "1000", b"{}", &good, 1301),
            Err(SignatureError::Stale("1000".into()))
        );
        // a correct signature over an extreme timestamp is stale, never fresh
        for extreme in [i64::MIN, i64::MIN + 1, i64::MAX, -1] {
            let ts = extreme.to_string();
            let signed = sign(&key, "m", extreme, b"{}");
            for now in [1000, 0, i64::MAX, i64::MIN] {
                if extreme.abs_diff(now) <= 300 {
                    continue;
                }
                assert_eq!(
                    check("m", &ts, b"{}", &signed, now),
                    Err(SignatureError::Stale(ts.clone())),
                    "{extreme} at {now}"
                );
            }
        }
        assert_eq!(
            check("m", "soon", b"{}", &good, 1000),
            Err(SignatureError::BadTimestamp("soon".into()))
        );
    }

    #[test]
    fn segment_signatures() {
        let mut mac = HmacSha1::new_from_slice(b"seg-secret").unwrap();
        mac.update(b"{}");
        let hex_sig = hex::encode(mac.finalize().into_bytes());
        assert_eq!(verify_segment(b"{}", &hex_sig, "seg-secret"), Ok(()));
        assert_eq!(
            verify_segment(b"{ }", &hex_sig, "seg-secret"),
            Err(SignatureError::WrongSegment)
        );
        assert_eq!(
            verify_segment(b"{}", "not hex", "seg-secret"),
            Err(SignatureError::WrongSegment)
        );
    }

    #[test]
    fn bad_target_secrets_are_named_without_repeating_them() {
        for (secret, why) in [
            (
                "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "must start with `whsec_`",
            ),
            ("whsec_not*base64!", "not base64"),
            ("whsec_", "empty"),
        ] {
            let err = webhook_key(secret).unwrap_err();
            assert!(err.contains(why), "{err}");
            assert!(!err.contains(secret) || secret == "whsec_", "{err}");
        }
    }
}
