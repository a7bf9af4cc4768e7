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
}

/// Runs a `dynamodb` command; returns the exit status.
pub fn dispatch(command: &DynamodbCommand) -> u8 {
    match command {
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
                leadscore_core::dynamo::create_table(&client, &table).await
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
