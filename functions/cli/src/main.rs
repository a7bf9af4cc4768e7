//! `leadscore`: the command line program for people who write rules.
//!
//! Exit status: 0 success, 1 a finding (a failed check or test), 2 a usage or input error.

mod check;
mod compare;
mod dynamodb;
mod events;
mod explain;
mod fmt;
mod import;
mod replay;
mod report;
mod serve;
mod test;

/// mimalloc: replay allocates and frees millions of small JSON values.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

/// Lead scoring with a rules language: check and replay rules locally.
#[derive(Parser, Debug)]
#[command(name = "leadscore", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Report every error and warning in rule sets (each path is a file or a folder of `.rules`).
    Check {
        /// Rule sets: a `.rules` file, or a folder whose `.rules` files form one rule set.
        #[arg(required = true)]
        rules: Vec<PathBuf>,
        /// Output for people (`text`) or editors (`json`).
        #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
        format: CheckFormat,
        /// notify's targets (`LEADSCORE_TARGETS` as JSON): every target the rules notify
        /// must have an entry (or go to `--event-bus`), as notify checks at start.
        #[arg(long, value_name = "FILE")]
        targets: Option<PathBuf>,
        /// The catch-all bus for targets without an entry (`LEADSCORE_EVENT_BUS`).
        #[arg(long, value_name = "BUS", requires = "targets")]
        event_bus: Option<String>,
    },
    /// Rewrite rules files in the canonical layout; comments are never lost or moved.
    Fmt {
        /// `.rules` files, or folders (searched recursively for `.rules` files).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Change nothing: list the files that are not formatted (exit status 1 if any).
        #[arg(long)]
        check: bool,
    },
    /// Run events through the rules on the embedded store and print every lead's final state.
    Replay {
        /// The rule set: a `.rules` file or a folder of them. Given again with `--events`
        /// again, the pairs are applied in turn: each later rule set rescores every lead
        /// before its events (a rule change, SPEC §7).
        #[arg(long, required = true)]
        rules: Vec<PathBuf>,
        /// Events, one Segment call or batch per line (JSON Lines), one file per `--rules`.
        #[arg(long, required = true)]
        events: Vec<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ReplayFormat::Table)]
        format: ReplayFormat,
        /// Exit with status 2 when any call is rejected.
        #[arg(long)]
        strict: bool,
        /// After the last line, tick every lead at this time (RFC 3339): decay, then stages.
        #[arg(long, value_name = "TIME")]
        as_of: Option<String>,
    },
    /// Run the rule tests kept beside the rules (`NAME.test` files; default: `rules/`).
    Test {
        /// Rule sets or test files: a folder (searched with its subfolders), a `.rules` file
        /// (tested by the `.test` file of the same name) or a `.test` file.
        rules: Vec<PathBuf>,
    },
    /// Show which rule gave which points when, and why each stage was or was not reached.
    Explain {
        /// The rule set: a `.rules` file or a folder of them.
        #[arg(long)]
        rules: PathBuf,
        /// Events, one Segment call or batch per line (JSON Lines).
        #[arg(long)]
        events: PathBuf,
        /// The lead's id (`userId` or `anonymousId`; a merged id shows the lead it joined).
        #[arg(long)]
        lead: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = explain::ExplainFormat::Text)]
        format: explain::ExplainFormat,
    },
    /// Work with the DynamoDB table of the deployed functions (`create-table` for local use).
    Dynamodb {
        #[command(subcommand)]
        command: dynamodb::DynamodbCommand,
    },
    /// Turn a lead export into Segment calls (JSON Lines) for `replay`, `report` and `compare`.
    Import {
        #[command(subcommand)]
        format: import::ImportCommand,
    },
    /// Conversion rates overall, by source, by stage and by a trait; time to convert; leads per
    /// week; cost; lead quality.
    Report {
        /// The rule set: a `.rules` file or a folder of them.
        #[arg(long)]
        rules: PathBuf,
        /// Events, one Segment call or batch per line (JSON Lines).
        #[arg(long)]
        events: PathBuf,
        /// Also group by this profile trait (`plan`, `company.industry`), each group tested
        /// against the rest of the leads (z-tests, Holm-corrected).
        #[arg(long, value_name = "TRAIT")]
        by: Option<String>,
        /// Spend per source: a CSV with the columns `source` and `spend`.
        #[arg(long, value_name = "FILE.csv")]
        spend: Option<PathBuf>,
        /// Groups (sources, `--by` values) with fewer leads are marked small, drawn apart and
        /// not tested.
        #[arg(long, value_name = "N", default_value_t = leadscore_tools::report::DEFAULT_MIN_GROUP)]
        min_group: u64,
        /// Output format.
        #[arg(long, value_enum, default_value_t = report::ReportFormat::Table)]
        format: report::ReportFormat,
        /// Write the report to this file instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// After the last line, tick every lead at this time (RFC 3339): decay, then stages.
        #[arg(long, value_name = "TIME")]
        as_of: Option<String>,
    },
    /// Run the same events under two rule sets: which one qualifies the leads that convert.
    Compare {
        /// The two rule sets: `--rules A --rules B`.
        #[arg(long, required = true, num_args = 1)]
        rules: Vec<PathBuf>,
        /// Events, one Segment call or batch per line (JSON Lines).
        #[arg(long)]
        events: PathBuf,
        /// A lead is qualified when it reached this stage (default: any stage).
        #[arg(long)]
        stage: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = compare::CompareFormat::Table)]
        format: compare::CompareFormat,
        /// After the last line, tick every lead at this time (RFC 3339): decay, then stages.
        #[arg(long, value_name = "TIME")]
        as_of: Option<String>,
    },
    /// Serve the webhook API (`POST /events`, `GET`/`DELETE /leads/{id}`) on 127.0.0.1, on the
    /// embedded store kept in a journal. Reads `LEADSCORE_WEBHOOK_SECRET`,
    /// `LEADSCORE_API_TOKEN` and `LEADSCORE_ALLOW_UNSIGNED=1`.
    Serve {
        /// The port; `0` picks a free one (printed at start).
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// The journal of accepted calls, replayed at start (default:
        /// `.leadscore-data/journal.jsonl`).
        #[arg(long, value_name = "FILE")]
        data: Option<PathBuf>,
        /// The rule set: a `.rules` file or a folder of them (default: `LEADSCORE_RULES`).
        #[arg(long)]
        rules: Option<PathBuf>,
        /// Seconds a request's head or body may take to arrive, and a kept-alive connection
        /// may stay idle.
        #[arg(long, value_name = "SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
        read_timeout: u64,
    },
}

/// `check` output.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum CheckFormat {
    /// `file:line:col: error[code]: message`, the line and a caret.
    Text,
    /// One JSON document for editors.
    Json,
}

/// `replay` output.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum ReplayFormat {
    /// The JSON contract.
    Json,
    /// A readable table.
    Table,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Check {
            rules,
            format,
            targets,
            event_bus,
        } => check::run(&rules, format, targets.as_deref(), event_bus.as_deref()),
        Command::Fmt { files, check } => fmt::run(&files, check),
        Command::Replay {
            rules,
            events,
            format,
            strict,
            as_of,
        } => match (rules.as_slice(), events.as_slice()) {
            ([rules], [events]) => replay::run(rules, events, format, strict, as_of.as_deref()),
            _ => replay::run_pairs(&rules, &events, format, strict, as_of.as_deref()),
        },
        Command::Test { rules } => test::run(&rules),
        Command::Explain {
            rules,
            events,
            lead,
            format,
        } => explain::run(&rules, &events, &lead, format),
        Command::Import { format } => import::dispatch(&format),
        Command::Dynamodb { command } => dynamodb::dispatch(&command),
        Command::Report {
            rules,
            events,
            by,
            spend,
            min_group,
            format,
            out,
            as_of,
        } => report::run(&report::ReportArgs {
            rules: &rules,
            events: &events,
            by: by.as_deref(),
            spend: spend.as_deref(),
            min_group,
            format,
            out: out.as_deref(),
            as_of: as_of.as_deref(),
        }),
        Command::Compare {
            rules,
            events,
            stage,
            format,
            as_of,
        } => compare::run(&rules, &events, stage.as_deref(), format, as_of.as_deref()),
        Command::Serve {
            port,
            data,
            rules,
            read_timeout,
        } => serve::run(&serve::Options {
            port,
            data: data.as_deref(),
            rules: rules.as_deref(),
            read_timeout: std::time::Duration::from_secs(read_timeout),
        }),
    };
    ExitCode::from(code)
}
