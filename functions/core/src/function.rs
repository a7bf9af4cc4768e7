//! What the three Lambda functions do alike when they start: structured logs at `info` by
//! default, and one start line naming the rules they run, their table and the targets.

use crate::store::dynamo::DynamoStore;
use leadscore_rules::Program;

/// Logs as JSON lines (no ANSI colours, no timestamps: CloudWatch adds them), at `info`
/// unless `RUST_LOG` says otherwise.
pub fn init_logging() {
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
}

/// The targets the rules notify, each once, in the order of their first `notify` rule.
pub fn rule_targets(program: &Program) -> Vec<String> {
    let mut targets: Vec<String> = Vec::new();
    for rule in &program.notifies {
        if !targets.contains(&rule.target) {
            targets.push(rule.target.clone());
        }
    }
    targets
}

/// The one start line of `function` (`score`, `notify`, `decay`): its rules (name, version,
/// published generation, 0 when configured), its table and the targets its rules notify.
pub fn log_start(function: &str, store: &DynamoStore) {
    let rules = crate::api::LeadStore::program(store);
    tracing::info!(
        function,
        ruleset = %rules.name,
        version = %rules.version,
        generation = store.generation(),
        table = store.table(),
        targets = %rule_targets(&rules).join(","),
        "{function} ready"
    );
}

/// Ends a start that cannot go on: one structured error line naming `function` and why, and
/// exit status 1 (Lambda reports an init error). Nothing else is printed: no debug dump.
pub fn cannot_start(function: &str, error: impl std::fmt::Display) -> ! {
    tracing::error!(function, error = %error, "{function} cannot start");
    std::process::exit(1)
}
