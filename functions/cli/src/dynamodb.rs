//! `leadscore dynamodb ...`: commands for the DynamoDB table the functions use (SPEC §6).

use clap::Subcommand;

/// What to do with the table.
#[derive(Subcommand, Debug)]
pub enum DynamodbCommand {
    /// Create the table (`LEADSCORE_TABLE`, or `--table`) with the key schema, `due` index,
    /// stream and TTL of `infra/template.yaml`; for DynamoDB Local (`AWS_ENDPOINT_URL`).
    /// A table that exists already is left as it is.
    CreateTable {
        /// The table's name (default: `LEADSCORE_TABLE`).
        #[arg(long)]
        table: Option<String>,
    },
    /// Rescore every lead evaluated under other rules than the functions' (those published in
    /// the table, else `LEADSCORE_RULES` or the built-in rules), now, beside live traffic;
    /// idempotent (SPEC §7).
    Rescore {
        /// Parallel scan segments.
        #[arg(long, default_value_t = 4)]
        segments: u32,
        /// Output format.
        #[arg(long, value_enum, default_value_t = RescoreFormat::Table)]
        format: RescoreFormat,
        /// The rules that wrote the table's records stored by position (before states were
        /// stored by name): such records are read with them, then rescored by name.
        #[arg(long, value_name = "RULES")]
        previous_rules: Option<std::path::PathBuf>,
    },
    /// Check a rule set and publish it in the table with a generation one higher than the
    /// last: the functions run it without a redeploy (SPEC §7).
    Publish {
        /// The rule set: a `.rules` file or a folder of them.
        rules: std::path::PathBuf,
        /// Then rescore every lead under it.
        #[arg(long)]
        rescore: bool,
        /// Parallel scan segments of the rescore.
        #[arg(long, default_value_t = 4)]
        segments: u32,
    },
    /// Write every lead's kept calls as Segment JSON lines, in time order, for `replay`,
    /// `report` and `compare`: what an edit of the rules would do to the live leads.
    Export {
        /// The file to write.
        #[arg(long)]
        events: std::path::PathBuf,
    },
    /// Send again the notifications not yet delivered (found through the sparse
    /// `undelivered` index, no scan), oldest first, to the targets configured as notify's
    /// (`LEADSCORE_TARGETS`, `LEADSCORE_EVENT_BUS`); idempotent by notification id. Run it
    /// once the cause of failed deliveries is fixed.
    Redeliver {
        /// Only the notifications of this target.
        #[arg(long)]
        target: Option<String>,
        /// Only notifications at or after this time (RFC 3339).
        #[arg(long)]
        since: Option<String>,
    },
}

/// How `dynamodb rescore` prints what it did.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum RescoreFormat {
    /// Counts, one a line.
    Table,
    /// `{"rules", "leads", "changed", "partial", "notifications"}`.
    Json,
}

/// A current-thread runtime, or exit status 2.
fn runtime() -> Result<tokio::runtime::Runtime, u8> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start the async runtime: {e}");
            2
        })
}

/// The functions' store, configured as they are (SPEC §6), or exit status 2.
async fn store() -> Result<leadscore_core::store::dynamo::DynamoStore, u8> {
    let program = leadscore_core::rules::load_from_env().map_err(|e| {
        eprintln!("error: {e}");
        2u8
    })?;
    let mut store =
        leadscore_core::store::dynamo::DynamoStore::from_env(std::sync::Arc::new(program))
            .await
            .map_err(|e| {
                eprintln!("error: {e}");
                2u8
            })?;
    store.use_published().await.map_err(|e| {
        eprintln!("error: {e}");
        2u8
    })?;
    Ok(store)
}

fn publish(rules: &std::path::Path, then_rescore: bool, segments: u32) -> u8 {
    let (program, compiled, files) = match leadscore_core::rules::load(&[rules.to_path_buf()]) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    for w in &compiled.diagnostics {
        eprint!("{}", leadscore_rules::diagnostic::render(w, &files));
    }
    with_store(|mut store| async move {
        let outcome = match store.publish(&program, &files).await {
            Ok(o) => o,
            Err(e) => {
                eprintln!("error: {e}");
                return 2;
            }
        };
        match outcome {
            leadscore_core::store::published::PublishOutcome::Published(generation) => println!(
                "published ruleset `{}` version {} as generation {generation}",
                program.name, program.version
            ),
            leadscore_core::store::published::PublishOutcome::Unchanged(generation) => println!(
                "ruleset `{}` version {} is already published as generation {generation}",
                program.name, program.version
            ),
        }
        if !then_rescore {
            return 0;
        }
        if let Err(e) = store.use_published().await {
            eprintln!("error: {e}");
            return 2;
        }
        match rescore_with_progress(&store, segments).await {
            Ok(report) => {
                println!(
                    "rescored: {} leads, {} changed, {} partial, {} notifications",
                    report.leads,
                    report.changed,
                    report.partial,
                    report.notifications.len()
                );
                0
            }
            Err(e) => {
                eprintln!("error: {e}");
                2
            }
        }
    })
}

/// Runs `job` on the functions' store; its exit status, or 2 when there is no store.
fn with_store<F, Fut>(job: F) -> u8
where
    F: FnOnce(leadscore_core::store::dynamo::DynamoStore) -> Fut,
    Fut: std::future::Future<Output = u8>,
{
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async {
        match store().await {
            Ok(store) => job(store).await,
            Err(code) => code,
        }
    })
}

/// Rescores the table with a progress bar on a terminal: the items scanned against the
/// table's item count (the scan reads every item; DynamoDB refreshes the count about every
/// six hours, so the bar grows when the table has), and the leads looked at so far. Without
/// an item count (no `DescribeTable` permission) a counter of leads.
async fn rescore_with_progress(
    store: &leadscore_core::store::dynamo::DynamoStore,
    segments: u32,
) -> Result<leadscore_core::store::dynamo::TableRescore, leadscore_core::api::StoreError> {
    use leadscore_core::store::dynamo::RescoreProgress;
    use std::sync::atomic::{AtomicU64, Ordering};
    let bar = match store.item_count().await {
        Ok(items) => crate::events::progress_items("rescoring", items, "items scanned"),
        Err(_) => crate::events::progress_spinner("rescoring", "leads"),
    };
    let counted = bar.length().is_some();
    let feed = bar.clone();
    let leads = AtomicU64::new(0);
    let result = store
        .rescore_all(
            segments,
            std::sync::Arc::new(move |progress| match progress {
                RescoreProgress::Lead if counted => {
                    let n = leads.fetch_add(1, Ordering::Relaxed) + 1;
                    feed.set_message(format!("{n} leads"));
                }
                RescoreProgress::Lead => feed.inc(1),
                RescoreProgress::Scanned(items) if counted => {
                    feed.inc(items);
                    if feed.length().is_some_and(|len| feed.position() > len) {
                        feed.set_length(feed.position());
                    }
                }
                RescoreProgress::Scanned(_) => {}
            }),
        )
        .await;
    bar.finish_and_clear();
    result
}

fn rescore(segments: u32, format: RescoreFormat, previous: Option<&std::path::Path>) -> u8 {
    let previous = match previous.map(crate::events::load_rules).transpose() {
        Ok(p) => p.map(std::sync::Arc::new),
        Err(code) => return code,
    };
    with_store(|store| async move {
        let store = match previous {
            Some(previous) => store.with_previous_rules(previous),
            None => store,
        };
        let result = rescore_with_progress(&store, segments).await;
        let report = match result {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e}");
                return 2;
            }
        };
        let program = leadscore_core::api::LeadStore::program(&store);
        match format {
            RescoreFormat::Table => {
                println!("rules `{}` version {}", program.name, program.version);
                println!("leads: {}", report.leads);
                println!("changed: {}", report.changed);
                println!("partial: {}", report.partial);
                println!("notifications: {}", report.notifications.len());
            }
            RescoreFormat::Json => {
                let doc = serde_json::json!({
                    "rules": leadscore_core::output::rules_object(&program),
                    "leads": report.leads,
                    "changed": report.changed,
                    "partial": report.partial,
                    "notifications": report.notifications,
                });
                println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
            }
        }
        0
    })
}

fn export(events: &std::path::Path) -> u8 {
    with_store(|store| async move {
        let lines = match store.export_calls().await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: {e}");
                return 2;
            }
        };
        let mut text = lines.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        if let Err(e) = std::fs::write(events, text) {
            eprintln!("error: cannot write `{}`: {e}", events.display());
            return 2;
        }
        eprintln!("wrote {} calls to `{}`", lines.len(), events.display());
        0
    })
}

fn redeliver(target: Option<&str>, since: Option<&str>) -> u8 {
    let since = match since.map(|t| (t, leadscore_rules::time::parse_rfc3339(t))) {
        None => None,
        Some((_, Some(at))) => Some(at),
        Some((text, None)) => {
            eprintln!("error: `--since` `{text}` is not an RFC 3339 time");
            return 2;
        }
    };
    let config = match leadscore_notify::Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async {
        let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let notifier = match leadscore_notify::Notifier::from_sdk_config(&sdk, config) {
            Ok(n) => n,
            Err(e) => {
                eprintln!("error: {e}");
                return 2;
            }
        };
        match notifier.redeliver(target, since).await {
            Ok(done) => {
                for (id, err) in &done.failed {
                    eprintln!("error: `{id}`: {err}");
                }
                println!(
                    "found {}, delivered {}, already delivered or erased {}, failed {}",
                    done.found,
                    done.delivered,
                    done.skipped,
                    done.failed.len()
                );
                u8::from(!done.failed.is_empty())
            }
            Err(e) => {
                eprintln!("error: {e}");
                2
            }
        }
    })
}

/// Runs a `dynamodb` command; returns the exit status.
pub fn dispatch(command: &DynamodbCommand) -> u8 {
    match command {
        DynamodbCommand::Rescore {
            segments,
            format,
            previous_rules,
        } => rescore(*segments, *format, previous_rules.as_deref()),
        DynamodbCommand::Export { events } => export(events),
        DynamodbCommand::Redeliver { target, since } => {
            redeliver(target.as_deref(), since.as_deref())
        }
        DynamodbCommand::Publish {
            rules,
            rescore,
            segments,
        } => publish(rules, *rescore, *segments),
        DynamodbCommand::CreateTable { table } => {
            let Some(table) = table
                .clone()
                .or_else(|| std::env::var("LEADSCORE_TABLE").ok())
                .filter(|t| !t.is_empty())
            else {
                eprintln!("error: no table: pass `--table` or set `LEADSCORE_TABLE`");
                return 2;
            };
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return 2;
                }
            };
            let result = runtime.block_on(async {
                let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
                let client = aws_sdk_dynamodb::Client::new(&config);
                leadscore_core::store::dynamo::create_table(&client, &table).await
            });
            match result {
                Ok(()) => {
                    println!("table `{table}` is ready");
                    0
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    2
                }
            }
        }
    }
}
