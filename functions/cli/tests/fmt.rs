//! Tests of `leadscore fmt` (SPEC §4): rewrites files in place, `--check` reports without
//! changing anything, exit status 0/1/2, folders searched for `.rules` files.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use assert_cmd::Command;
use std::path::{Path, PathBuf};

const MESSY: &str = "ruleset   \"t\"\n\n\n# points for pages\nscore \"Pricing page\" 10 on page where path starts_with \"/pricing\"   # pricing\nscore \"Webinar\"  +20 on \"Webinar Registered\"\nstage  mql when engagement>=40\n";

const TIDY: &str = "ruleset \"t\"\n\n# points for pages\nscore \"Pricing page\"   +10 on page where path starts_with \"/pricing\"  # pricing\nscore \"Webinar\"        +20 on \"Webinar Registered\"\nstage mql when engagement >= 40\n";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(args: &[&str]) -> Run {
    let out = Command::cargo_bin("leadscore")
        .unwrap()
        .args(args)
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&path, text).unwrap();
    path
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn fmt_rewrites_a_file_in_place_and_then_has_nothing_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "a.rules", MESSY);
    let p = path.to_str().unwrap();
    let r = run(&["fmt", p]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.trim(), "formatted 1 file");
    assert_eq!(read(&path), TIDY);

    let r = run(&["fmt", p]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "");
    assert_eq!(read(&path), TIDY);
    let r = run(&["fmt", "--check", p]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "");
}

#[test]
fn check_lists_the_files_that_would_change_with_the_first_difference_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let messy = write(dir.path(), "messy.rules", MESSY);
    let tidy = write(dir.path(), "tidy.rules", TIDY);
    let r = run(&[
        "fmt",
        "--check",
        messy.to_str().unwrap(),
        tidy.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stdout.contains("messy.rules"), "{}", r.stdout);
    assert!(!r.stdout.contains("tidy.rules"), "{}", r.stdout);
    assert!(r.stdout.contains("@@ line 1 @@"), "{}", r.stdout);
    assert!(r.stdout.contains("- ruleset   \"t\""), "{}", r.stdout);
    assert!(r.stdout.contains("+ ruleset \"t\""), "{}", r.stdout);
    assert!(
        r.stdout.contains("1 file would be reformatted"),
        "{}",
        r.stdout
    );
    // Nothing is written.
    assert_eq!(read(&messy), MESSY);
    assert_eq!(read(&tidy), TIDY);
}

#[test]
fn folders_are_searched_for_rules_files() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.rules", MESSY);
    let b = write(dir.path(), "sub/b.rules", MESSY);
    let notes = write(dir.path(), "notes.txt", MESSY);
    let r = run(&["fmt", "--check", dir.path().to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert!(
        r.stdout.contains("2 files would be reformatted"),
        "{}",
        r.stdout
    );
    let r = run(&["fmt", dir.path().to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.trim(), "formatted 2 files");
    assert_eq!(read(&a), TIDY);
    assert_eq!(read(&b), TIDY);
    assert_eq!(read(&notes), MESSY);
}

#[test]
fn a_file_with_syntax_errors_is_reported_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let broken_text = "ruleset \"t\"\nscore \"Webinar\" +20 \"Webinar Registered\"\n";
    let broken = write(dir.path(), "broken.rules", broken_text);
    let messy = write(dir.path(), "messy.rules", MESSY);
    for check in [true, false] {
        let mut args = vec!["fmt"];
        if check {
            args.push("--check");
        }
        args.push(broken.to_str().unwrap());
        let r = run(&args);
        assert_eq!(r.code, 2, "{}", r.stdout);
        assert!(r.stderr.contains("error[E001]"), "{}", r.stderr);
        assert!(r.stderr.contains("broken.rules:2:"), "{}", r.stderr);
        assert_eq!(read(&broken), broken_text);
    }
    // The other files are still formatted; the status says something went wrong.
    let r = run(&["fmt", dir.path().to_str().unwrap()]);
    assert_eq!(r.code, 2);
    assert_eq!(read(&messy), TIDY);
    assert_eq!(read(&broken), broken_text);
}

#[test]
fn a_missing_file_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.rules");
    let r = run(&["fmt", "--check", missing.to_str().unwrap()]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("nope.rules"), "{}", r.stderr);
    let r = run(&["fmt"]);
    assert_eq!(r.code, 2);
}

#[test]
fn the_example_rule_set_is_formatted() {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules/b2b-saas");
    let r = run(&["fmt", "--check", rules.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
}
