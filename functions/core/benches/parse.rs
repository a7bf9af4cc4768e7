//! Reading Segment calls: one line of JSON into the call the evaluator sees, as `replay`
//! reads each line of its input (the event mix of `bench/gen-events.py`).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use leadscore_core::ingest::call::TimePolicy;
use leadscore_core::ingest::parse_line_reading;
use leadscore_rules::{compile, SourceFile};
use std::fmt::Write;

// the allocator `leadscore` runs with
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `n` lines in the shapes and proportions `bench/gen-events.py` writes.
fn lines(n: usize) -> Vec<String> {
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move |m: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % m
    };
    let paths = [
        "/pricing",
        "/pricing/teams",
        "/docs/start",
        "/blog/scoring",
        "/careers",
        "/",
    ];
    let sources = ["google", "newsletter", "linkedin", "webinar"];
    (0..n)
        .map(|i| {
            let lead = next(100_000);
            let (min, sec) = ((i / 60) % 60, i % 60);
            let mut line = format!(
                r#"{{"messageId":"m{i}","userId":"u{lead}","timestamp":"2026-01-01T00:{min:02}:{sec:02}Z","#
            );
            let _ = match next(100) {
                0..45 => {
                    let p = paths[next(6) as usize];
                    write!(line, r#""type":"page","properties":{{"path":"{p}","url":"https://acme.example{p}"}}"#)
                }
                45..60 => write!(line, r#""type":"track","event":"Feature Used","properties":{{"feature":"import"}}"#),
                60..70 => write!(line, r#""type":"track","event":"Form Submitted","properties":{{"form":"demo"}}"#),
                70..78 => write!(line, r#""type":"track","event":"Webinar Registered","properties":{{"webinar":"w-12"}}"#),
                78..85 => write!(line, r#""type":"identify","traits":{{"title":"VP Sales","email":"p{lead}@gmail.com","plan":"trial"}}"#),
                85..90 => write!(line, r#""type":"group","groupId":"g{}","traits":{{"employees":120}}"#, lead % 977),
                90..95 => write!(line, r#""type":"track","event":"Order Completed","properties":{{"revenue":49.5}}"#),
                _ => write!(line, r#""type":"track","event":"Support Ticket","properties":{{"topic":"upgrade"}}"#),
            };
            match next(5) {
                4 => line.push('}'),
                s => {
                    let _ = write!(line, r#","context":{{"campaign":{{"source":"{}"}}}}}}"#, sources[s as usize]);
                }
            }
            line
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../bench/bench20.rules"
    ))
    .unwrap();
    let compiled = compile(&[SourceFile {
        name: "bench20.rules".into(),
        text,
    }]);
    let program = compiled.program.expect("bench20.rules compiles");
    let reads = program.reads();
    let lines = lines(10_000);
    for line in &lines {
        let calls = parse_line_reading(line, &TimePolicy::Required, Some(&reads)).expect(line);
        assert!(calls.iter().all(Result::is_ok), "{line}");
    }
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Elements(lines.len() as u64));
    // each line read and its call dropped, as a replay parser thread does
    group.bench_function("10k_lines", |b| {
        b.iter(|| {
            let mut n = 0;
            for line in &lines {
                let calls = parse_line_reading(line, &TimePolicy::Required, Some(&reads));
                n += calls.map_or(0, |c| c.len());
            }
            n
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
