//! The README's examples, run as shown and compared with the output it shows.
//!
//! Every fenced block of `README.md` is one of:
//! - ```` ```console ````: commands after `$ ` (a line ending in `\` goes on, a heredoc runs to
//!   its end marker), each followed by the output it must print, standard error included.
//!   Run in order, in one `bash`, in a copy of the repository (a fresh checkout), with this
//!   build's `leadscore` first on the `PATH`. The output is compared with snapbox's matching:
//!   `...` on a line of its own stands for any lines, `[..]` for any text within a line. A
//!   command that exits with another status than `0` must be followed by `echo $?`, which
//!   shows it.
//! - ```` ```rules ````: a rule set, which must pass `leadscore check`.
//! - ```` ```sh ````: commands that are not run; the line before the block must say why, in a
//!   paragraph starting `*Not run by the README tests:`.
//! - ```` ```python ````, ```` ```js ````, ```` ```text ````, ```` ```json ````: shown, not run
//!   (the library snippets are what `tests/sdk` sends).
//!
//! A ```` ```console ```` block under a paragraph starting `*Needs AWS` runs against DynamoDB Local
//! instead: the AWS SDK's variables and `LEADSCORE_TABLE` point at a table into which
//! `rules/b2b-saas/events.jsonl` was sent through the `score` function with `rules/b2b-saas`.
//!
//! What the runner changes, and only this: the ports `8080` and `8081` of `--port N` and
//! `127.0.0.1:N` become free ports (and back in the output); a command ending in `&` sends its
//! output to a file, compared as its output once it has printed it (a server's later log lines
//! are not compared); `kill %N` waits for the job to end; `cargo run --bin leadscore
//! -- ARGS` runs this build's `leadscore ARGS`. The X Education export is read
//! from `LEADS_CSV`, which must name it (`.ci/run` sets it): the examples that use it fail,
//! never skip, without it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use common::{leadscore_binary, program, send, signed_post, store};
use leadscore_score::Score;
use leadscore_tests::{free_port, workspace_root, DynamoLocal, Storage};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long one command may run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a background command may take to print what the README shows.
const BACKGROUND_TIMEOUT: Duration = Duration::from_secs(30);
/// The ports the README uses, each replaced by a free one.
const README_PORTS: [u16; 2] = [8080, 8081];

// ---------------------------------------------------------------------------------------------
// the README's blocks
// ---------------------------------------------------------------------------------------------

/// What a fenced block is for.
#[derive(Debug, PartialEq)]
enum Kind {
    /// Commands and their output, run.
    Console { aws: bool },
    /// A rule set, checked.
    Rules,
    /// Commands not run, with the reason the README gives.
    NotRun,
    /// Code of another language or plain text, shown only.
    Shown,
}

/// One fenced block of a markdown file.
#[derive(Debug)]
struct Block {
    /// The 1-based line of its opening fence.
    line: usize,
    kind: Kind,
    body: Vec<String>,
}

/// One command of a console block and the output shown after it.
#[derive(Debug)]
struct Step {
    /// The 1-based line of its `$ `.
    line: usize,
    command: String,
    expected: String,
}

/// The fenced blocks of `text`; a block whose kind cannot be told is an error naming its line.
/// With `all_tagged` false (the language reference, whose untagged blocks are fragments of
/// rules), a block without an info string is only shown.
fn blocks(file: &str, text: &str, all_tagged: bool) -> Result<Vec<Block>, String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(info) = lines[i].strip_prefix("```") else {
            i += 1;
            continue;
        };
        let info = info.trim();
        let start = i;
        let mut body = Vec::new();
        i += 1;
        while i < lines.len() && !lines[i].starts_with("```") {
            body.push(lines[i].to_string());
            i += 1;
        }
        if i == lines.len() {
            return Err(format!("{file}:{}: the block is not closed", start + 1));
        }
        i += 1;
        let before = paragraph_before(&lines[..start]);
        let kind = match info {
            "console" => Kind::Console {
                aws: before.starts_with("*Needs AWS"),
            },
            "rules" => Kind::Rules,
            "sh" if before.starts_with("*Not run by the README tests") => Kind::NotRun,
            "sh" => {
                return Err(format!(
                    "{file}:{}: a `sh` block is not run; say why on the line before it \
                     (`*Not run by the README tests: ...*`), or make it a `console` block",
                    start + 1
                ))
            }
            "python" | "js" | "text" | "json" => Kind::Shown,
            "" if !all_tagged => Kind::Shown,
            "" => {
                return Err(format!(
                    "{file}:{}: the block has no info string: `console` (run), `sh` (not \
                     run, and why), `rules` (checked) or a language",
                    start + 1
                ))
            }
            other => {
                return Err(format!(
                    "{file}:{}: unknown info string `{other}`",
                    start + 1
                ))
            }
        };
        out.push(Block {
            line: start + 1,
            kind,
            body,
        });
    }
    Ok(out)
}

/// The first line of the paragraph that ends right before a block (blank lines between them
/// allowed).
fn paragraph_before<'a>(lines: &[&'a str]) -> &'a str {
    let mut end = lines.len();
    while end > 0 && lines[end - 1].trim().is_empty() {
        end -= 1;
    }
    let mut first = end;
    while first > 0 && !lines[first - 1].trim().is_empty() {
        first -= 1;
    }
    lines.get(first).map_or("", |l| l.trim())
}

/// The commands of a console block, each with the output shown after it.
fn steps(file: &str, block: &Block) -> Result<Vec<Step>, String> {
    let mut out: Vec<Step> = Vec::new();
    let mut i = 0;
    while i < block.body.len() {
        let line_no = block.line + 1 + i;
        let line = &block.body[i];
        let Some(first) = line.strip_prefix("$ ") else {
            let Some(step) = out.last_mut() else {
                return Err(format!("{file}:{line_no}: output before any `$ ` command"));
            };
            step.expected.push_str(line);
            step.expected.push('\n');
            i += 1;
            continue;
        };
        let mut command = first.to_string();
        i += 1;
        while command.ends_with('\\') && i < block.body.len() {
            command.push('\n');
            command.push_str(&block.body[i]);
            i += 1;
        }
        if let Some(end) = heredoc_end(first) {
            loop {
                let Some(next) = block.body.get(i) else {
                    return Err(format!("{file}:{line_no}: the heredoc has no `{end}` line"));
                };
                command.push('\n');
                command.push_str(next);
                i += 1;
                if next == &end {
                    break;
                }
            }
        }
        out.push(Step {
            line: line_no,
            command,
            expected: String::new(),
        });
    }
    if out.is_empty() {
        return Err(format!(
            "{file}:{}: a console block without a command",
            block.line
        ));
    }
    Ok(out)
}

/// The end marker of a heredoc started on `line` (`<<'EOF'`, `<<"EOF"`, `<<EOF`).
fn heredoc_end(line: &str) -> Option<String> {
    let at = line.find("<<")?;
    let rest = line[at + 2..].trim_start_matches('-').trim_start();
    let word: String = rest
        .trim_start_matches(['\'', '"'])
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (!word.is_empty()).then_some(word)
}

// ---------------------------------------------------------------------------------------------
// one bash for the whole file
// ---------------------------------------------------------------------------------------------

/// What a command printed and its exit status.
struct Ran {
    output: String,
    status: i32,
}

/// A `bash` reading commands from a pipe, its standard output and error in one buffer.
struct Shell {
    child: Child,
    stdin: ChildStdin,
    output: Arc<(Mutex<Vec<u8>>, Condvar)>,
    read: usize,
    count: u64,
    scratch: PathBuf,
}

impl Shell {
    fn start(cwd: &Path, bin: &Path, scratch: &Path) -> Shell {
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::new("bash");
        cmd.args(["--noprofile", "--norc"])
            .current_dir(cwd)
            .env("PATH", path)
            .env("NO_COLOR", "1")
            .env("TERM", "dumb")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (key, _) in std::env::vars() {
            if (key.starts_with("LEADSCORE_") || key.starts_with("AWS_")) && key != "LEADS_CSV" {
                cmd.env_remove(key);
            }
        }
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd.spawn().expect("bash starts");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let output = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let sink = output.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            while let Ok(n) = stdout.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                let (buf, ready) = &*sink;
                buf.lock().unwrap().extend_from_slice(&chunk[..n]);
                ready.notify_all();
            }
        });
        let mut shell = Shell {
            child,
            stdin,
            output,
            read: 0,
            count: 0,
            scratch: scratch.to_path_buf(),
        };
        // `cargo run --bin leadscore -- ARGS` is this build's `leadscore ARGS`
        shell.send(
            "exec 2>&1\n\
             cargo() { if [ \"$1 $2 $3 $4\" = 'run --bin leadscore --' ]; then \
             shift 4; leadscore \"$@\"; else echo \"the README tests run no cargo $*\"; return 127; fi; }\n",
        );
        shell
    }

    fn send(&mut self, text: &str) {
        self.stdin.write_all(text.as_bytes()).unwrap();
        self.stdin.flush().unwrap();
    }

    /// Runs `command` (its standard input empty) and returns what it printed.
    fn run(&mut self, command: &str) -> Result<Ran, String> {
        self.count += 1;
        let n = self.count;
        self.send(&format!(
            "{{\n{command}\n}} </dev/null\n__st=$?; printf '\\n\\036%d %d\\n' {n} \"$__st\"; (exit $__st)\n"
        ));
        let marker = format!("\n\u{1e}{n} ");
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        let (buf, ready) = &*self.output;
        let mut guard = buf.lock().unwrap();
        loop {
            let text = String::from_utf8_lossy(&guard[self.read..]).into_owned();
            if let Some(at) = text.find(&marker) {
                let rest = &text[at + marker.len()..];
                if let Some(end) = rest.find('\n') {
                    let status = rest[..end].parse().unwrap_or(-1);
                    let output = text[..at].to_string();
                    self.read += at + marker.len() + end + 1;
                    return Ok(Ran { output, status });
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(format!(
                    "no end after {COMMAND_TIMEOUT:?}; printed so far:\n{text}"
                ));
            }
            guard = ready.wait_timeout(guard, deadline - now).unwrap().0;
        }
    }

    /// Starts `command` (ending in `&`) with its output in a file, and waits until that output
    /// matches `expected`.
    fn run_background(
        &mut self,
        command: &str,
        expected: &str,
        ports: &Ports,
    ) -> Result<(), String> {
        self.count += 1;
        let log = self.scratch.join(format!("background-{}.log", self.count));
        let command = command.trim_end().trim_end_matches('&').trim_end();
        let ran = self.run(&format!("{command} >'{}' 2>&1 &", log.display()))?;
        if ran.status != 0 || !ran.output.is_empty() {
            return Err(format!(
                "starting it printed `{}` (status {})",
                ran.output, ran.status
            ));
        }
        let deadline = Instant::now() + BACKGROUND_TIMEOUT;
        loop {
            let printed = std::fs::read_to_string(&log).unwrap_or_default();
            let printed = ports.output(&printed);
            match compare(&printed, expected) {
                Ok(()) => return Ok(()),
                Err(diff) if Instant::now() >= deadline => return Err(diff),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        // the shell and every job it started are one process group
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}

/// snapbox's comparison (`...` lines, `[..]` in a line), on text ending in one newline.
fn compare(actual: &str, expected: &str) -> Result<(), String> {
    let norm = |s: &str| format!("{}\n", s.trim_end_matches('\n'));
    let (actual, expected) = (norm(actual), norm(expected));
    let actual = if actual == "\n" {
        String::new()
    } else {
        actual
    };
    let expected = if expected == "\n" {
        String::new()
    } else {
        expected
    };
    snapbox::Assert::new()
        .normalize_paths(false)
        .try_eq(Some(&"printed"), actual.into(), expected.into())
        .map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------------------------
// ports, and the file run as a whole
// ---------------------------------------------------------------------------------------------

/// The README's ports and the free ports that stand for them in this run.
struct Ports(Vec<(u16, u16)>);

impl Ports {
    fn new() -> Ports {
        Ports(README_PORTS.iter().map(|&p| (p, free_port())).collect())
    }

    fn command(&self, text: &str) -> String {
        let mut text = text.to_string();
        for (shown, free) in &self.0 {
            text = text
                .replace(&format!("127.0.0.1:{shown}"), &format!("127.0.0.1:{free}"))
                .replace(&format!("--port {shown}"), &format!("--port {free}"));
        }
        text
    }

    fn output(&self, text: &str) -> String {
        let mut text = text.to_string();
        for (shown, free) in &self.0 {
            text = text.replace(&format!("127.0.0.1:{free}"), &format!("127.0.0.1:{shown}"));
        }
        text
    }
}

/// DynamoDB Local with a table that `score` filled with the example events, for the blocks
/// that need AWS.
struct Aws {
    _local: DynamoLocal,
    exports: String,
}

fn aws(root: &Path) -> Aws {
    let local = DynamoLocal::start(Storage::InMemory).expect("DynamoDB Local starts");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let table = runtime.block_on(async {
        let store = store(&local, program(&root.join("rules/b2b-saas"))).await;
        let table = store.table().to_string();
        let score = Score::new(common::signed_config(), store);
        for line in common::lines(&root.join("rules/b2b-saas/events.jsonl")) {
            let (status, body) = send(&score, signed_post(&line)).await;
            assert_eq!(status, 200, "{line}: {body}");
        }
        table
    });
    let exports = format!(
        "export AWS_ENDPOINT_URL={} AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=local \
         AWS_SECRET_ACCESS_KEY=local LEADSCORE_TABLE={table}",
        local.endpoint()
    );
    Aws {
        _local: local,
        exports,
    }
}

/// A copy of the repository as a checkout holds it (no build output, no installed packages).
fn checkout(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if matches!(
            name.as_ref(),
            "target" | ".git" | "node_modules" | ".leadscore-data" | "demo" | "artifacts"
        ) {
            continue;
        }
        let path = entry.path();
        let dest = to.join(&*name);
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
            checkout(&path, &dest);
        } else if kind.is_file() {
            std::fs::copy(&path, &dest).unwrap();
        }
    }
}

/// What running a markdown file found wrong, and how many commands it ran.
struct Outcome {
    commands: usize,
    failures: Vec<String>,
}

/// Runs every block of the markdown `text` (named `file`) in a checkout of `root`.
fn run_file(root: &Path, file: &str, text: &str, all_tagged: bool) -> Outcome {
    let mut failures = Vec::new();
    let blocks = match blocks(file, text, all_tagged) {
        Ok(blocks) => blocks,
        Err(e) => {
            return Outcome {
                commands: 0,
                failures: vec![e],
            }
        }
    };
    let sandbox = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    checkout(root, sandbox.path());
    let bin = scratch.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(leadscore_binary(), bin.join("leadscore")).unwrap();
    let mut shell = Shell::start(sandbox.path(), &bin, scratch.path());
    let ports = Ports::new();
    let mut cloud: Option<Aws> = None;
    let mut commands = 0;
    for block in &blocks {
        match block.kind {
            Kind::Shown | Kind::NotRun => {}
            Kind::Rules => {
                let path = scratch.path().join(format!("block-{}.rules", block.line));
                std::fs::write(&path, block.body.join("\n") + "\n").unwrap();
                let out = Command::new(leadscore_binary())
                    .arg("check")
                    .arg(&path)
                    .output()
                    .unwrap();
                if !out.status.success() {
                    failures.push(format!(
                        "{file}:{}: the rules do not check:\n{}",
                        block.line,
                        String::from_utf8_lossy(&out.stdout)
                    ));
                }
            }
            Kind::Console { aws: needs_aws } => {
                let steps = match steps(file, block) {
                    Ok(steps) => steps,
                    Err(e) => {
                        failures.push(e);
                        continue;
                    }
                };
                if needs_aws {
                    let exports = cloud.get_or_insert_with(|| aws(root)).exports.clone();
                    shell.run(&exports).unwrap();
                }
                for (k, step) in steps.iter().enumerate() {
                    commands += 1;
                    let place = format!("{file}:{}: `{}`", step.line, step.command);
                    let command = ports.command(&step.command);
                    if command.trim_end().ends_with('&') {
                        if let Err(e) = shell.run_background(&command, &step.expected, &ports) {
                            failures.push(format!("{place}:\n{e}"));
                        }
                        continue;
                    }
                    let command = match command.trim().strip_prefix("kill %") {
                        Some(job) => format!("kill %{job} && {{ wait %{job}; true; }}"),
                        None => command,
                    };
                    match shell.run(&command) {
                        Err(e) => failures.push(format!("{place}: {e}")),
                        Ok(ran) => {
                            let shown = steps.get(k + 1).is_some_and(|s| s.command == "echo $?");
                            if ran.status != 0 && !shown {
                                failures.push(format!(
                                    "{place}: exited with status {} (show it with `$ echo $?` \
                                     after the command) and printed:\n{}",
                                    ran.status, ran.output
                                ));
                            } else if let Err(diff) =
                                compare(&ports.output(&ran.output), &step.expected)
                            {
                                failures.push(format!("{place}:\n{diff}"));
                            }
                        }
                    }
                }
                if needs_aws {
                    shell
                        .run("unset AWS_ENDPOINT_URL AWS_REGION AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY LEADSCORE_TABLE")
                        .unwrap();
                }
            }
        }
    }
    Outcome { commands, failures }
}

// ---------------------------------------------------------------------------------------------
// the tests
// ---------------------------------------------------------------------------------------------

#[test]
fn every_command_of_the_readme_runs_as_shown() {
    let csv = std::env::var("LEADS_CSV").unwrap_or_default();
    assert!(
        !csv.is_empty() && Path::new(&csv).is_file(),
        "set `LEADS_CSV` to the X Education lead export (`Leads.csv` of the public \"Lead \
         Scoring\" data set; `.ci/run` sets it to ../shared/data/x-education-leads.csv): \
         the README's `import csv` and `compare` examples read it (now `{csv}`)"
    );
    let root = workspace_root();
    let text = std::fs::read_to_string(root.join("README.md")).unwrap();
    let outcome = run_file(&root, "README.md", &text, true);
    assert!(
        outcome.failures.is_empty(),
        "{} of the README's examples do not run as shown:\n\n{}",
        outcome.failures.len(),
        outcome.failures.join("\n\n")
    );
    assert!(
        outcome.commands >= 40,
        "only {} commands found in the README",
        outcome.commands
    );
}

#[test]
fn the_language_references_commands_run_as_shown() {
    let root = workspace_root();
    let text = std::fs::read_to_string(root.join("grammar/README.md")).unwrap();
    let outcome = run_file(&root, "grammar/README.md", &text, false);
    assert!(
        outcome.failures.is_empty(),
        "{} of grammar/README.md's examples do not run as shown:\n\n{}",
        outcome.failures.len(),
        outcome.failures.join("\n\n")
    );
    assert!(
        outcome.commands >= 8,
        "only {} commands found in grammar/README.md",
        outcome.commands
    );
}

#[test]
fn a_changed_output_a_failing_command_and_an_unmarked_block_are_caught() {
    let root = workspace_root();
    let run = |text: &str| run_file(&root, "T.md", text, true).failures;
    let good = "```console\n$ leadscore check rules/b2b-saas\nrules/b2b-saas: ruleset `acme-b2b`, version [..]\n...\n$ X=1; echo \"$X\"\n1\n$ leadscore check nowhere >/dev/null 2>&1\n$ echo $?\n2\n```\n";
    assert_eq!(run(good), Vec::<String>::new());
    let wrong = good.replace("ruleset `acme-b2b`", "ruleset `acme`");
    let failures = run(&wrong);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(
        failures[0].starts_with("T.md:2: `leadscore check rules/b2b-saas`"),
        "{failures:?}"
    );
    let unshown = good.replace("$ echo $?\n2\n", "");
    let failures = run(&unshown);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].contains("exited with status 2"), "{failures:?}");
    let failures = run("```\nleadscore check rules\n```\n");
    assert!(
        failures[0].contains("T.md:1: the block has no info string"),
        "{failures:?}"
    );
    let failures = run("```sh\nleadscore check rules\n```\n");
    assert!(
        failures[0].contains("T.md:1: a `sh` block is not run"),
        "{failures:?}"
    );
    let failures = run("```rules\nruleset \"x\"\nstage a when reached b\n```\n");
    assert!(
        failures[0].contains("T.md:1: the rules do not check"),
        "{failures:?}"
    );
}

#[test]
fn a_background_server_is_reached_on_a_free_port_and_stopped() {
    let root = workspace_root();
    let text = "```console\n$ LEADSCORE_ALLOW_UNSIGNED=1 leadscore serve --port 8080 --rules rules/b2b-saas --data demo/j.jsonl &\n...\nlistening on http://127.0.0.1:8080 [..]\n$ curl -s http://127.0.0.1:8080/leads/x\n{\"error\":[..]}\n$ kill %1\n```\n";
    let outcome = run_file(&root, "T.md", text, true);
    assert_eq!(outcome.failures, Vec::<String>::new());
    assert_eq!(outcome.commands, 3);
}
