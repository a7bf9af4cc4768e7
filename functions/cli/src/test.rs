//! `leadscore test`: runs the rule tests kept beside the rules (`NAME.test` files) and
//! reports each failure with its file and line.

use leadscore_core::rules::load;
use leadscore_tools::ruletest::{check, discover, parse, run as run_tests};
use std::path::PathBuf;

/// Runs `test`; returns the exit status: 0 all passed, 1 a test failed, 2 a usage or input
/// error (a missing path, rules with errors, a test file that does not parse).
pub fn run(paths: &[PathBuf]) -> u8 {
    let paths = if paths.is_empty() {
        vec![PathBuf::from("rules")]
    } else {
        paths.to_vec()
    };
    let suites = match discover(&paths) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let mut passed = 0usize;
    let mut failed = 0usize;
    let mut broken = false;
    let mut files = 0usize;
    for suite in &suites {
        if suite.tests.is_empty() {
            continue;
        }
        let program = match load(std::slice::from_ref(&suite.rules)) {
            Ok((program, _, _)) => program,
            Err(e) => {
                eprintln!("error: {e}");
                broken = true;
                continue;
            }
        };
        for path in &suite.tests {
            files += 1;
            let name = path.display().to_string();
            let text = match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("error: cannot read `{name}`: {e}");
                    broken = true;
                    continue;
                }
            };
            let tests = match parse(&name, &text) {
                Ok(t) => t,
                Err(errors) => {
                    for e in errors {
                        eprintln!("{e}");
                    }
                    broken = true;
                    continue;
                }
            };
            let errors = check(&program, &tests);
            if !errors.is_empty() {
                for e in errors {
                    eprintln!("{e}");
                }
                broken = true;
                continue;
            }
            println!("{name}");
            for result in run_tests(&program, &tests) {
                if result.passed() {
                    passed += 1;
                    println!("ok   {}", result.name);
                } else {
                    failed += 1;
                    println!("FAIL {}", result.name);
                    for f in &result.failures {
                        println!(
                            "     {name}:{}: expected {}, got {}",
                            f.line, f.expected, f.got
                        );
                    }
                }
            }
        }
    }
    if files == 0 && !broken {
        let shown: Vec<String> = paths.iter().map(|p| format!("`{}`", p.display())).collect();
        eprintln!(
            "error: no `.test` files found in {} (tests are kept beside the `.rules` files)",
            shown.join(", ")
        );
        return 2;
    }
    if passed + failed > 0 || !broken {
        println!();
        println!("{passed} passed, {failed} failed");
    }
    if broken {
        2
    } else {
        u8::from(failed > 0)
    }
}
