//! The `decay` Lambda function: a schedule ticks the due leads (SPEC §6).

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use leadscore_core::store::dynamo::DynamoStore;
use serde_json::Value;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .without_time()
        .init();
    let program = match leadscore_core::rules::load_from_env() {
        Ok(program) => Arc::new(program),
        Err(err) => {
            tracing::error!(error = %err, "decay cannot start");
            return Err(err.into());
        }
    };
    let store = Arc::new(tokio::sync::Mutex::new(
        DynamoStore::from_env(program).await?,
    ));
    run(service_fn(move |event: LambdaEvent<Value>| {
        let store = Arc::clone(&store);
        async move {
            let mut store = store.lock().await;
            // each tick runs the rules published last (SPEC §7): one read
            store.use_published().await?;
            Ok::<Value, Error>(leadscore_decay::handle(&store, &event.payload).await?)
        }
    }))
    .await
}
