//! The `decay` Lambda function: a schedule ticks the due leads (SPEC §6).

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use leadscore_core::store::dynamo::DynamoStore;
use serde_json::Value;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    leadscore_core::function::init_logging();
    // the published rules, else `LEADSCORE_RULES`: never the example rules by default
    let store = DynamoStore::for_function().await.map_err(cannot_start)?;
    leadscore_core::function::log_start("decay", &store);
    let store = Arc::new(tokio::sync::Mutex::new(store));
    run(service_fn(move |event: LambdaEvent<Value>| {
        let store = Arc::clone(&store);
        async move {
            let mut store = store.lock().await;
            // stop starting leads shortly before the invocation's deadline
            let until = event
                .context
                .deadline()
                .duration_since(std::time::SystemTime::now())
                .ok()
                .and_then(|left| left.checked_sub(leadscore_decay::DEADLINE_MARGIN))
                .map_or_else(std::time::Instant::now, |left| {
                    std::time::Instant::now() + left
                });
            // each tick runs the rules published last (SPEC §7): one read
            let ticked = match store.use_published().await {
                Ok(_) => leadscore_decay::handle_until(&store, &event.payload, Some(until))
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

/// Logs why the function cannot start and exits ([`leadscore_core::function::cannot_start`]).
fn cannot_start(err: impl std::fmt::Display) -> Error {
    leadscore_core::function::cannot_start("decay", err)
}
