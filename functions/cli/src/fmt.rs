//! `leadscore fmt`: rewrites rules files in the one canonical layout (SPEC §4); `--check`
//! only reports the files that are not in it.
//!
//! Exit status: 0 all done (or, with `--check`, every file already formatted), 1 with
//! `--check` when a file would change, 2 when a file cannot be read or has syntax errors
//! (a file with syntax errors is never rewritten).

use leadscore_rules::diagnostic::render;
use leadscore_rules::format::format_source;
use leadscore_rules::SourceFile;
use std::path::{Path, PathBuf};

/// At most this many lines of each side of the first difference are shown by `--check`.
const DIFF_LINES: usize = 6;

/// Runs `fmt`; returns the exit status.
pub fn run(paths: &[PathBuf], check: bool) -> u8 {
    let mut failed = false;
    let mut files = Vec::new();
    for path in paths {
        let before = files.len();
        if let Err(e) = collect(path, &mut files) {
            eprintln!("error: cannot read `{}`: {e}", path.display());
            failed = true;
        } else if files.len() == before {
            eprintln!("error: no `.rules` files in `{}`", path.display());
            failed = true;
        }
    }
    let mut changed = 0usize;
    for path in &files {
        let name = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: cannot read `{name}`: {e}");
                failed = true;
                continue;
            }
        };
        let formatted = match format_source(&text) {
            Ok(f) => f,
            Err(diags) => {
                let sources = [SourceFile { name, text }];
                for d in &diags {
                    eprintln!("{}", render(d, &sources));
                }
                failed = true;
                continue;
            }
        };
        if formatted == text {
            continue;
        }
        changed += 1;
        if check {
            println!("{name}");
            print!("{}", first_difference(&text, &formatted));
        } else if let Err(e) = std::fs::write(path, &formatted) {
            eprintln!("error: cannot write `{name}`: {e}");
            failed = true;
        }
    }
    let plural = |n: usize| format!("{n} file{}", if n == 1 { "" } else { "s" });
    if check {
        if changed > 0 {
            println!("{} would be reformatted", plural(changed));
        }
    } else if changed > 0 {
        println!("formatted {}", plural(changed));
    }
    if failed {
        2
    } else if check && changed > 0 {
        1
    } else {
        0
    }
}

/// The `.rules` files of a path: the file itself, or every `.rules` file under a folder (in
/// name order, sub-folders included).
fn collect(path: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if !path.is_dir() {
        // Reading it reports a missing file with its own message.
        std::fs::metadata(path)?;
        out.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            collect(&p, out)?;
        } else if p.extension().is_some_and(|e| e == "rules") {
            out.push(p);
        }
    }
    Ok(())
}

/// The first block of lines that differs, as `-` (now) and `+` (formatted) lines under a
/// `@@ line N @@` header.
fn first_difference(old: &str, new: &str) -> String {
    let old: Vec<&str> = old.lines().collect();
    let new: Vec<&str> = new.lines().collect();
    let start = old.iter().zip(&new).take_while(|(a, b)| a == b).count();
    let max_suffix = old.len().min(new.len()) - start;
    let suffix = old
        .iter()
        .rev()
        .zip(new.iter().rev())
        .take(max_suffix)
        .take_while(|(a, b)| a == b)
        .count();
    let mut out = format!("@@ line {} @@\n", start + 1);
    if start == old.len() && start == new.len() {
        out.push_str("  (line endings, or blank lines at the end of the file)\n");
    }
    for (sign, lines) in [("-", &old), ("+", &new)] {
        let block = lines.get(start..lines.len() - suffix).unwrap_or(&[]);
        for line in block.iter().take(DIFF_LINES) {
            out.push_str(&format!("{sign} {line}\n"));
        }
        if block.len() > DIFF_LINES {
            out.push_str(&format!(
                "{sign} ... ({} more lines)\n",
                block.len() - DIFF_LINES
            ));
        }
    }
    out
}
