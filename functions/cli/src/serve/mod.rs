//! `leadscore serve`: the webhook API of SPEC §6 on 127.0.0.1, over the embedded engine with
//! a journal (`leadscore_core::store::journal`), on a real HTTP server ([`http`]: hyper on tokio, the same `Api`
//! the `score` function runs).
//!
//! Requests are served concurrently; the journal and the engine are one store behind a lock
//! held for one synchronous step. Ctrl-C (SIGINT) or SIGTERM stops accepting connections,
//! lets the requests in flight finish (each is journaled and synced before it is answered)
//! and exits.

mod framing;
mod http;
mod refusals;

use leadscore_core::api::{Api, ApiConfig};
use leadscore_core::store::journal::{Journaled, JournaledStore, RuleHistory};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The default journal.
pub const DEFAULT_DATA: &str = ".leadscore-data/journal.jsonl";

/// What `leadscore serve` was given.
#[derive(Debug, Clone, Copy)]
pub struct Options<'a> {
    /// The port; `0` picks a free one.
    pub port: u16,
    /// The journal ([`DEFAULT_DATA`] when absent).
    pub data: Option<&'a Path>,
    /// The rules (`LEADSCORE_RULES`, then the built-in set, when absent).
    pub rules: Option<&'a Path>,
    /// How long a request's head or body may take to arrive, and a connection may idle.
    pub read_timeout: Duration,
}

/// Runs `serve`; returns the exit status.
pub fn run(options: &Options<'_>) -> u8 {
    let Options {
        port,
        data,
        rules,
        read_timeout,
    } = *options;
    let config = match ApiConfig::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let rules = rules
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("LEADSCORE_RULES").map(PathBuf::from));
    let using_builtin = rules.is_none();
    let (program, compiled, files) = match leadscore_core::rules::load_or_builtin(rules) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    if using_builtin {
        eprintln!(
            "rules: the built-in rule set `{}` (pass `--rules` or set `LEADSCORE_RULES` for your own)",
            program.name
        );
    }
    for w in &compiled.diagnostics {
        eprint!("{}", leadscore_rules::diagnostic::render(w, &files));
    }
    let data = data.map_or_else(|| PathBuf::from(DEFAULT_DATA), Path::to_path_buf);
    let (history, programs) = match RuleHistory::read(&data) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let changes = history.len();
    let (store, replayed) = match Journaled::open(&programs, history, (&program, &files), &data) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let listener = match std::net::TcpListener::bind(("127.0.0.1", port))
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
    {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("error: cannot listen on 127.0.0.1:{port}: {e}");
            return 2;
        }
    };
    let port = listener.local_addr().map_or(port, |addr| addr.port());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the server's runtime: {e}");
            return 2;
        }
    };
    // the signals are taken before the server says it listens
    let stop = {
        let _in_runtime = runtime.enter();
        match stop_signal() {
            Ok(stop) => stop,
            Err(e) => {
                eprintln!("error: cannot handle Ctrl-C and SIGTERM: {e}");
                return 2;
            }
        }
    };
    let mut limits = http::Limits::new(config.max_body);
    limits.read_timeout = read_timeout;
    let signatures = if config.signatures_required() {
        "required (Segment `X-Signature` or Standard Webhooks)"
    } else if config.allow_unsigned {
        "not required (`LEADSCORE_ALLOW_UNSIGNED=1`, local use only)"
    } else {
        "no `LEADSCORE_WEBHOOK_SECRET`: POST /events refuses every call"
    };
    let write_keys = match (config.write_keys.len(), config.allow_unsigned) {
        (0, true) => "not required (`LEADSCORE_ALLOW_UNSIGNED=1`, local use only)".to_owned(),
        (0, false) => "none (`LEADSCORE_WRITE_KEY`): the /v1 routes answer 401".to_owned(),
        (n, _) => format!("{n} from `LEADSCORE_WRITE_KEY` (Basic auth or `writeKey`)"),
    };
    let leads = if config.api_token.is_some() {
        "GET/DELETE /leads/{id} with `Authorization: Bearer $LEADSCORE_API_TOKEN`"
    } else {
        "GET/DELETE /leads/{id} off (no `LEADSCORE_API_TOKEN`)"
    };
    println!(
        "leadscore serve: ruleset `{}`, version {}",
        program.name, program.version
    );
    match store.history().len() - changes {
        0 => {}
        _ if replayed == 0 => {}
        _ => println!("rules changed: every lead rescored"),
    }
    println!("journal: {} ({replayed} call(s) replayed)", data.display());
    println!("outbox: {}", store.outbox().display());
    println!("signatures: {signatures}");
    println!("write keys: {write_keys}");
    println!("leads: {leads}");
    println!("listening on http://127.0.0.1:{port} (POST /events, POST /v1/*); Ctrl-C stops");
    let _ = std::io::stdout().flush();

    let api = Api::new(config, JournaledStore::new(store));
    let (jobs, queue) = std::sync::mpsc::channel::<http::Job>();
    // the connections run on tokio's threads; this thread answers their requests in turn
    let server = std::thread::spawn(move || -> std::io::Result<()> {
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            http::serve(listener, jobs, limits, stop).await;
            Ok(())
        })
    });
    for job in queue {
        let response = api.handle_blocking(&job.request, job.received);
        // a client gone before its answer: its call is journaled all the same
        let _ = job.reply.send(response);
    }
    match server.join() {
        Ok(Ok(())) => {
            println!("stopped");
            0
        }
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            1
        }
        Err(_) => {
            eprintln!("error: the server thread failed");
            1
        }
    }
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM.
fn stop_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}
