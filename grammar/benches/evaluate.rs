//! Evaluation per event on a 20-rule set (`bench/bench20.rules`), excluding JSON parsing.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use leadscore_rules::eval::{apply, LeadState};
use leadscore_rules::{compile, CallKind, Event, SourceFile};
use serde_json::{json, Map, Value};

fn events(n: usize) -> Vec<Event> {
    let mut out = Vec::with_capacity(n);
    let base = 1_767_225_600_000_000i64; // 2026-01-01
    for i in 0..n {
        let t = base + (i as i64) * 60_000_000;
        let (kind, name, props): (CallKind, &str, Value) = match i % 10 {
            0 => (
                CallKind::Page,
                "page",
                json!({"path": "/pricing", "url": "https://x/pricing"}),
            ),
            1 => (
                CallKind::Page,
                "page",
                json!({"path": "/docs/start", "url": "https://x/docs"}),
            ),
            2 => (
                CallKind::Page,
                "page",
                json!({"path": "/blog/a", "url": "https://x/blog"}),
            ),
            3 => (
                CallKind::Track,
                "Feature Used",
                json!({"feature": "import"}),
            ),
            4 => (
                CallKind::Track,
                "Form Submitted",
                json!({"form": "contact"}),
            ),
            5 => (
                CallKind::Track,
                "Webinar Registered",
                json!({"webinar": "w1"}),
            ),
            6 => (
                CallKind::Track,
                "Feature Used",
                json!({"feature": "report"}),
            ),
            7 => (
                CallKind::Identify,
                "",
                json!({"title": "VP Sales", "plan": "trial"}),
            ),
            8 => (CallKind::Track, "Order Completed", json!({"revenue": 49.5})),
            _ => (CallKind::Track, "Button Clicked", json!({"id": "b1"})),
        };
        let properties: Map<String, Value> = props.as_object().cloned().unwrap();
        let name = if kind == CallKind::Track {
            name.to_string()
        } else {
            String::new()
        };
        out.push(Event {
            kind,
            name: name.into(),
            time: t,
            properties: properties.into(),
            source: None,
        });
    }
    out
}

fn bench(c: &mut Criterion) {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../bench/bench20.rules"
    ))
    .unwrap();
    let compiled = compile(&[SourceFile {
        name: "bench20.rules".into(),
        text,
    }]);
    assert!(
        compiled.diagnostics.is_empty(),
        "{:?}",
        compiled.diagnostics
    );
    let program = compiled.program.unwrap();
    let evs = events(10_000);
    let mut group = c.benchmark_group("evaluate");
    group.throughput(Throughput::Elements(evs.len() as u64));
    // one lead receiving 10,000 events (windows full, limits refusing)
    group.bench_function("one_lead_10k_events", |b| {
        b.iter_batched(
            || LeadState::new(&program),
            |mut state| {
                let mut out = Vec::new();
                for e in &evs {
                    apply(&program, &mut state, e, &mut out);
                    out.clear();
                }
                state
            },
            BatchSize::LargeInput,
        );
    });
    // 1,000 leads x 10 events each
    group.bench_function("1000_leads_10_events", |b| {
        b.iter_batched(
            || vec![LeadState::new(&program); 1000],
            |mut states| {
                let mut out = Vec::new();
                for (i, e) in evs.iter().enumerate() {
                    apply(&program, &mut states[i % 1000], e, &mut out);
                    out.clear();
                }
                states
            },
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
