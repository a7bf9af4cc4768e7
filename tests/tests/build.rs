//! The README's first command (`cargo build --bin leadscore`, or `cargo run --bin leadscore`;
//! `-p leadscore-cli` too) and the test command share one build: every dependency the program needs is compiled with
//! the features the test build compiles it with. A dev-dependency that turns on a feature of a
//! shared crate (proptest turning on `num-traits/std`, say) would otherwise make the program's
//! own build compile that crate and everything above it again (35 crates, about two minutes
//! on this project's 2-core machine). `functions/cli/Cargo.toml` turns those features on for
//! the program too.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use leadscore_tests::workspace_root;
use serde_json::Value;

/// Runs after the test build (`.ci/run` builds `--workspace --all-targets` first, and
/// `cargo nextest` builds every test target): building the program alone finds every
/// third-party dependency already compiled.
#[test]
fn the_program_alone_reuses_the_test_builds_dependencies() {
    for select in [["--bin", "leadscore"], ["-p", "leadscore-cli"]] {
        rebuilt_nothing(select);
    }
}

/// Builds what `select` names and asserts that no third-party crate was compiled.
fn rebuilt_nothing(select: [&str; 2]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let command = format!("cargo build {}", select.join(" "));
    let out = std::process::Command::new(cargo)
        .current_dir(workspace_root())
        .args(["build", "--frozen", "--message-format=json"])
        .args(select)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "`{command}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut artifacts = 0;
    let mut compiled = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(message) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        artifacts += 1;
        let package = message["package_id"].as_str().unwrap_or_default();
        // the workspace's own crates may be rebuilt (a test build of a binary is not the
        // same unit); a third-party crate compiled again means its features differ
        if package.starts_with("path+file://") {
            continue;
        }
        if message["fresh"] != Value::Bool(true) {
            compiled.push(format!(
                "{} {:?}",
                message["target"]["name"].as_str().unwrap_or(package),
                message["features"]
            ));
        }
    }
    assert!(
        artifacts > 100,
        "`{command}` reported only {artifacts} artifacts: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        compiled.is_empty(),
        "`{command}` compiled {} dependencies again, with other features than the test \
         build: turn those features on in functions/cli/Cargo.toml too (see `either`, \
         `num-traits`, `zerocopy`, `rustix`):\n{}",
        compiled.len(),
        compiled.join("\n")
    );
}
