//! The `score` Lambda function: `POST /events`, `GET`/`DELETE /leads/{id}` (SPEC §6).

use lambda_http::{run, service_fn, Error, Request};
use leadscore_score::Score;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_current_span(false)
        .without_time()
        .init();
    let score = match Score::from_env().await {
        Ok(score) => Arc::new(score),
        Err(err) => {
            tracing::error!(error = %err, "score cannot start");
            return Err(err.into());
        }
    };
    run(service_fn(move |req: Request| {
        let score = Arc::clone(&score);
        async move { Ok::<_, Error>(score.handle(req).await) }
    }))
    .await
}
