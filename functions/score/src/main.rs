//! The `score` Lambda function: `POST /events`, `GET`/`DELETE /leads/{id}` (SPEC §6).

use lambda_http::{run, service_fn, Error, Request};
use leadscore_score::Score;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    leadscore_core::function::init_logging();
    let score = match Score::from_env().await {
        Ok(score) => Arc::new(score),
        Err(err) => leadscore_core::function::cannot_start("score", err),
    };
    run(service_fn(move |req: Request| {
        let score = Arc::clone(&score);
        async move { Ok::<_, Error>(score.handle(req).await) }
    }))
    .await
}
