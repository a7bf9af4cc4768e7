//! The `decay` Lambda function: a schedule ticks the due leads (SPEC §6).

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use leadscore_core::api::LeadStore;
use leadscore_core::store::dynamo::DynamoStore;
use serde_json::Value;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_current_span(false)
        .with_target(false)
        .with_ansi(false)
        .without_time()
        .init();
    let program = match leadscore_core::rules::load_from_env() {
        Ok(program) => Arc::new(program),
        Err(err) => return Err(cannot_start(err)),
    };
    let mut store = DynamoStore::from_env(program).await.map_err(cannot_start)?;
    store.use_published().await.map_err(cannot_start)?;
    let rules = store.program();
    tracing::info!(
        table = store.table(),
        ruleset = %rules.name,
        version = %rules.version,
        generation = store.generation(),
        "decay ready"
    );
    let store = Arc::new(tokio::sync::Mutex::new(store));
    run(service_fn(move |event: LambdaEvent<Value>| {
        let store = Arc::clone(&store);
        async move {
            let mut store = store.lock().await;
            // each tick runs the rules published last (SPEC §7): one read
            let ticked = match store.use_published().await {
                Ok(_) => leadscore_decay::handle(&store, &event.payload)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            ticked.map_err(|error| {
                tracing::error!(error = %error, "tick failed");
                Error::from(error)
            })
        }
    }))
    .await
}

/// Logs why the function cannot start and turns it into the error `main` ends with (its
/// message, not its debug form).
fn cannot_start(err: impl std::fmt::Display) -> Error {
    tracing::error!(error = %err, "decay cannot start");
    Error::from(err.to_string())
}
