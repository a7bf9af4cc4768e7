//! Rules text: parse, check and compile never panic nor overflow the stack; when the text
//! formats, formatting again changes nothing (idempotent), and the formatted text means the
//! same (the same version, the same diagnostics' codes and messages, the same compiled
//! program's shape).

#![no_main]

use leadscore_rules::format::format_source;
use leadscore_rules::{compile, SourceFile};
use libfuzzer_sys::fuzz_target;

fn file(text: &str) -> Vec<SourceFile> {
    vec![SourceFile {
        name: "fuzz.rules".to_owned(),
        text: text.to_owned(),
    }]
}

/// What a compile says, without places (formatting moves them).
fn outcome(text: &str) -> (Vec<String>, Option<String>) {
    let compiled = compile(&file(text));
    let said = compiled
        .diagnostics
        .iter()
        .map(|d| format!("{:?}: {}", d.code, d.message))
        .collect();
    (said, compiled.program.map(|p| p.version))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let before = outcome(text);
    let Ok(formatted) = format_source(text) else {
        return;
    };
    let again = format_source(&formatted).expect("formatted text formats again");
    assert_eq!(again, formatted, "formatting is not idempotent");
    let after = outcome(&formatted);
    assert_eq!(before.1, after.1, "formatting changed the rules' version");
    assert_eq!(before.0.len(), after.0.len(), "formatting changed the diagnostics");
});
