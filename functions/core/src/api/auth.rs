//! Who may call the API: webhook signatures on `POST /events` (Segment's `X-Signature`,
//! Standard Webhooks), write keys on the Tracking API's `/v1` routes (SPEC §8), the bearer
//! token of `/leads/{id}`. Every secret is compared in constant time.

use super::ApiRequest;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use leadscore_rules::time::{Micros, SECOND};
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Whether two secrets are equal, in constant time over their SHA-256 digests, so that
/// neither the place of the first difference nor the length leaks.
fn same_secret(given: &str, expected: &str) -> bool {
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    bool::from(a.as_slice().ct_eq(b.as_slice()))
}

/// `Authorization: Bearer <token>`, compared in constant time (over SHA-256 digests, so
/// the length does not leak either).
pub(super) fn check_bearer(req: &ApiRequest, token: &str) -> Result<(), String> {
    let Some(value) = req.header("authorization") else {
        return Err("missing `Authorization: Bearer <token>`".to_owned());
    };
    let given = match value.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ => return Err("the `Authorization` header must be `Bearer <token>`".to_owned()),
    };
    if same_secret(given, token) {
        Ok(())
    } else {
        Err("wrong bearer token".to_owned())
    }
}

/// Accepts a request signed with either scheme: Standard Webhooks (`webhook-signature`)
/// or Segment (`x-signature`). The error says why a request was refused.
pub fn verify_signature(req: &ApiRequest, secret: &str, now: Micros) -> Result<(), String> {
    let standard = req.header("webhook-signature");
    let segment = req.header("x-signature");
    if standard.is_none() && segment.is_none() {
        return Err(
            "missing signature: send `X-Signature` (Segment) or `webhook-id`, `webhook-timestamp` and `webhook-signature` (Standard Webhooks)"
                .to_owned(),
        );
    }
    let mut why = String::new();
    if let Some(signature) = standard {
        match verify_standard(req, signature, secret, now) {
            Ok(()) => return Ok(()),
            Err(message) => why = message,
        }
    }
    if let Some(signature) = segment {
        match leadscore_wire::verify_segment(&req.body, signature, secret) {
            Ok(()) => return Ok(()),
            Err(e) if why.is_empty() => why = e.to_string(),
            Err(_) => {}
        }
    }
    Err(why)
}

/// Standard Webhooks: the headers `webhook-id`, `webhook-timestamp` and `webhook-signature`
/// ([`leadscore_wire::verify_standard`]); the timestamp must be within 5 minutes of `now`.
fn verify_standard(
    req: &ApiRequest,
    signatures: &str,
    secret: &str,
    now: Micros,
) -> Result<(), String> {
    let id = req
        .header("webhook-id")
        .ok_or("missing `webhook-id` header")?;
    let timestamp = req
        .header("webhook-timestamp")
        .ok_or("missing `webhook-timestamp` header")?;
    leadscore_wire::verify_standard(
        secret,
        id,
        timestamp,
        &req.body,
        signatures,
        now.div_euclid(SECOND),
    )
    .map_err(|e| e.to_string())
}

/// Checks the write key of a Tracking API request (SPEC §8) against the configured keys:
/// HTTP Basic with the key as user name (the password is not read), else `writeKey` in
/// the body. The error says why a request was refused.
pub(super) fn check_write_key(
    req: &ApiRequest,
    body: &Value,
    keys: &[String],
) -> Result<(), String> {
    let given = match req.header("authorization") {
        Some(value) => basic_user(value)?,
        None => match body.get("writeKey") {
            Some(Value::String(key)) => key.clone(),
            Some(_) => return Err("`writeKey` must be a string".to_owned()),
            None => {
                return Err(
                    "missing write key: send `Authorization: Basic` with the write key as user name and an empty password, or `writeKey` in the body"
                        .to_owned(),
                )
            }
        },
    };
    // every key is compared, so the time does not tell which one matched
    let matched = keys
        .iter()
        .fold(false, |found, key| same_secret(&given, key) | found);
    if matched {
        Ok(())
    } else {
        Err("wrong write key".to_owned())
    }
}

/// The user name of `Authorization: Basic base64(user:password)`.
fn basic_user(value: &str) -> Result<String, String> {
    let encoded = match value.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("basic") => rest.trim(),
        _ => {
            return Err(
                "the `Authorization` header must be `Basic` with the write key as user name"
                    .to_owned(),
            )
        }
    };
    let decoded = BASE64
        .decode(encoded)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or("the `Authorization: Basic` credentials are not base64 of UTF-8 text")?;
    let user = decoded
        .split_once(':')
        .map_or(decoded.as_str(), |(user, _)| user);
    Ok(user.to_owned())
}
