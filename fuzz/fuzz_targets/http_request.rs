//! Raw HTTP request bytes (what a client sends `serve` or `score`): the API answers every
//! request that parses as HTTP/1.1 without panicking, with a status it documents and a JSON
//! body; the store it runs over stays readable.

#![no_main]

use leadscore_core::api::{Api, ApiConfig, ApiRequest};
use leadscore_core::rules::load_or_builtin;
use leadscore_core::store::engine::Engine;
use leadscore_core::store::memory::MemoryStore;
use leadscore_rules::Program;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

/// 2026-01-01T09:00:00Z, in microseconds.
const NOW: i64 = 1_767_258_000_000_000;

fn program() -> &'static Program {
    static PROGRAM: OnceLock<Program> = OnceLock::new();
    PROGRAM.get_or_init(|| load_or_builtin(None).expect("the built-in rules compile").0)
}

/// The request in `data`: an HTTP/1.1 head, the rest is the body.
fn request(data: &[u8]) -> Option<ApiRequest> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut parsed = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(head) = parsed.parse(data).ok()? else {
        return None;
    };
    Some(ApiRequest {
        method: parsed.method?.to_owned(),
        path: parsed.path?.to_owned(),
        headers: parsed
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect(),
        body: data[head..].to_vec(),
    })
}

fuzz_target!(|data: &[u8]| {
    let Some(req) = request(data) else {
        return;
    };
    // unsigned input allowed, a write key, and the lead routes on: every route is reachable
    let config = ApiConfig {
        allow_unsigned: true,
        api_token: Some("token".to_owned()),
        write_keys: vec!["key".to_owned()],
        ..ApiConfig::default()
    };
    let api = Api::new(config, MemoryStore::new(Engine::new(program())));
    let response = api.handle_blocking(&req, NOW);
    assert!(
        [200, 400, 401, 404, 405, 413, 415, 429, 500, 503].contains(&response.status),
        "undocumented status {}",
        response.status
    );
    assert!(!response.json_body().is_null(), "the body is not JSON");
    // and a second request on the same store still works
    let again = api.handle_blocking(&req, NOW);
    assert!(!again.json_body().is_null());
});
