//! `leadscore check`: every error and warning of every rule set, not only the first.

use crate::CheckFormat;
use leadscore_core::rules::read_sources;
use leadscore_notify::Targets;
use leadscore_rules::compile;
use leadscore_rules::diagnostic::{render, to_json, Severity};
use std::path::{Path, PathBuf};

/// Runs `check`; returns the exit status. With `targets` (a `LEADSCORE_TARGETS` file) and
/// the catch-all `event_bus`, also checks that every target each rule set notifies has
/// somewhere to go, as notify does at start.
pub fn run(
    paths: &[PathBuf],
    format: CheckFormat,
    targets: Option<&Path>,
    event_bus: Option<&str>,
) -> u8 {
    let targets = match targets.map(|file| {
        std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read `{}`: {e}", file.display()))
            .and_then(|text| {
                Targets::parse(Some(&text), event_bus)
                    .map_err(|e| format!("{}: {e}", file.display()))
            })
    }) {
        None => None,
        Some(Ok(targets)) => Some(targets),
        Some(Err(message)) => {
            eprintln!("error: {message}");
            return 2;
        }
    };
    // (path, message) of each rule set notifying a target without configuration
    let mut unrouted: Vec<(String, String)> = Vec::new();
    let mut errors = 0usize;
    let mut warnings = 0usize;
    let mut json = Vec::new();
    let mut text = String::new();
    let mut files_checked = 0usize;
    // (path, ruleset, version) of each rule set that compiles
    let mut versions: Vec<(String, String, String)> = Vec::new();
    for path in paths {
        let files = match read_sources(std::slice::from_ref(path)) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("error: {e}");
                return 2;
            }
        };
        files_checked += files.len();
        let compiled = compile(&files);
        if let (Some(program), Some(targets)) = (&compiled.program, &targets) {
            if let Err(e) = targets.check_rules(program.notifies.iter().map(|n| n.target.as_str()))
            {
                errors += 1;
                unrouted.push((path.display().to_string(), e.to_string()));
            }
        }
        if let Some(program) = &compiled.program {
            versions.push((
                path.display().to_string(),
                program.name.clone(),
                program.version.clone(),
            ));
        }
        for d in &compiled.diagnostics {
            match d.severity {
                Severity::Error => errors += 1,
                Severity::Warning => warnings += 1,
            }
            match format {
                CheckFormat::Text => {
                    text.push_str(&render(d, &files));
                    text.push('\n');
                }
                CheckFormat::Json => json.push(to_json(d, &files)),
            }
        }
    }
    match format {
        CheckFormat::Text => {
            print!("{text}");
            for (path, message) in &unrouted {
                println!("{path}: error: {message}");
            }
            for (path, name, version) in &versions {
                println!("{path}: ruleset `{name}`, version {version}");
            }
            let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
            println!(
                "checked {}: {}, {}",
                plural(files_checked, "file"),
                plural(errors, "error"),
                plural(warnings, "warning")
            );
        }
        CheckFormat::Json => {
            let doc = serde_json::json!({
                "diagnostics": json,
                "rulesets": versions
                    .iter()
                    .map(|(path, name, version)| serde_json::json!({
                        "path": path,
                        "ruleset": name,
                        "version": version,
                    }))
                    .collect::<Vec<_>>(),
                "targets": unrouted
                    .iter()
                    .map(|(path, message)| serde_json::json!({"path": path, "message": message}))
                    .collect::<Vec<_>>(),
                "errors": errors,
                "warnings": warnings,
            });
            println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        }
    }
    u8::from(errors > 0)
}
