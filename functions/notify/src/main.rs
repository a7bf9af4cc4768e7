//! The `notify` Lambda function: the table's stream → EventBridge and signed webhooks.
//! All the logic is in the library ([`leadscore_notify`]).

use aws_config::BehaviorVersion;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use leadscore_notify::{handle_until, rule_targets, Config, Notifier};

#[tokio::main]
async fn main() -> Result<(), Error> {
    leadscore_core::function::init_logging();

    // A bad configuration stops the start, with a clear error, before any record is taken.
    let config = Config::from_env().map_err(cannot_start)?;
    let sdk = aws_config::load_defaults(BehaviorVersion::latest()).await;
    // every target the rules notify must have somewhere to go: no silent misroute
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let (store, targets) = rule_targets(&dynamo, &config.table)
        .await
        .map_err(cannot_start)?;
    config
        .targets
        .check_rules(targets.iter().map(String::as_str))
        .map_err(cannot_start)?;
    let notifier = Notifier::from_sdk_config(&sdk, config).map_err(cannot_start)?;
    let rules = leadscore_core::api::LeadStore::program(&store);
    tracing::info!(
        function = "notify",
        ruleset = %rules.name,
        version = %rules.version,
        generation = store.generation(),
        table = notifier.table(),
        targets = %targets.join(","),
        configured_targets = notifier.targets().named().len(),
        event_bus = notifier.targets().default_bus(),
        "notify ready"
    );

    lambda_runtime::run(service_fn(
        |event: LambdaEvent<aws_lambda_events::event::dynamodb::Event>| {
            let notifier = &notifier;
            async move {
                let deadline = event.context.deadline();
                Ok::<_, Error>(handle_until(event.payload, notifier, deadline).await)
            }
        },
    ))
    .await
}

/// Logs why the function cannot start and exits ([`leadscore_core::function::cannot_start`]).
fn cannot_start(err: impl std::fmt::Display) -> Error {
    leadscore_core::function::cannot_start("notify", err)
}
