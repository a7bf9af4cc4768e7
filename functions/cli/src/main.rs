//! `leadscore`: the command line program for people who write rules.
//!
//! Exit status: 0 success, 1 a finding (a failed check or test), 2 a usage or input error.

mod check;
mod replay;

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
    },
    /// Run events through the rules on the embedded store and print every lead's final state.
    Replay {
        /// The rule set: a `.rules` file or a folder of them.
        #[arg(long)]
        rules: PathBuf,
        /// Events, one Segment call or batch per line (JSON Lines).
        #[arg(long)]
        events: PathBuf,
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
        Command::Check { rules, format } => check::run(&rules, format),
        Command::Replay {
            rules,
            events,
            format,
            strict,
            as_of,
        } => replay::run(&rules, &events, format, strict, as_of.as_deref()),
    };
    ExitCode::from(code)
}
