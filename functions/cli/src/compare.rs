//! `leadscore compare`: the same history under two rule sets, to see which one qualifies the
//! leads that convert.

use crate::events::{load_rules, parse_as_of, run_events, states, write_output};
use crate::report::{num, table};
use leadscore_tools::report::{compare, Comparison, Rate, Slice};
use std::fmt::Write as _;
use std::path::PathBuf;

/// `compare` output.
#[derive(Clone, Copy, Debug, clap::ValueEnum, PartialEq, Eq)]
pub enum CompareFormat {
    /// Readable tables.
    Table,
    /// One JSON document.
    Json,
}

/// Runs `compare`; returns the exit status.
pub fn run(
    rules: &[PathBuf],
    events: &PathBuf,
    stage: Option<&str>,
    format: CompareFormat,
    as_of: Option<&str>,
) -> u8 {
    let [a, b] = rules else {
        eprintln!(
            "error: `compare` takes two rule sets (`--rules A --rules B`), got {}",
            rules.len()
        );
        return 2;
    };
    let (pa, pb) = match (load_rules(a), load_rules(b)) {
        (Ok(pa), Ok(pb)) => (pa, pb),
        (Err(code), _) | (_, Err(code)) => return code,
    };
    let as_of = match parse_as_of(as_of) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let result = run_events(&[&pa, &pb], events, as_of, |engines, _| match engines {
        [ea, eb] => Some(compare((&pa, &states(ea)), (&pb, &states(eb)), stage)),
        _ => None,
    });
    let comparison = match result {
        Ok(Some(Ok(c))) => c,
        Ok(Some(Err(e))) => {
            eprintln!("error: {e}");
            return 2;
        }
        Ok(None) => return 2,
        Err(code) => return code,
    };
    if comparison.conversions_differ > 0 {
        eprintln!(
            "note: the rule sets disagree on which leads converted ({} leads); the overlap counts \
             the conversions of the first",
            comparison.conversions_differ
        );
    }
    let labels = [a.display().to_string(), b.display().to_string()];
    let text = match format {
        CompareFormat::Json => match serde_json::to_string_pretty(&comparison) {
            Ok(t) => t + "\n",
            Err(e) => {
                eprintln!("error: cannot write the comparison: {e}");
                return 2;
            }
        },
        CompareFormat::Table => compare_table(&comparison, &labels),
    };
    write_output(None, &text)
}

fn rate(r: &Rate) -> String {
    format!("{} of {} ({}%)", r.converted, r.leads, num(r.rate))
}

fn ids(s: &Slice) -> String {
    if s.ids.is_empty() {
        return "-".into();
    }
    let more = if s.rate.leads > s.ids.len() as u64 {
        ", …"
    } else {
        ""
    };
    format!("{}{more}", s.ids.join(", "))
}

/// The comparison as tables; `labels` name the two rule sets (their paths).
pub fn compare_table(c: &Comparison, labels: &[String; 2]) -> String {
    let mut out = String::new();
    let name = |i: usize| format!("{} ({})", c.sets[i].ruleset, labels[i]);
    let what = c
        .stage
        .as_ref()
        .map_or_else(|| "reached any stage".into(), |s| format!("reached `{s}`"));
    let _ = writeln!(out, "A: {}\nB: {}", name(0), name(1));
    let _ = writeln!(out, "{} leads; qualified = {what}", c.leads);

    let _ = writeln!(out, "\nleads reaching each stage");
    let mut stages: Vec<&str> = Vec::new();
    for set in &c.sets {
        for s in &set.reached {
            if !stages.contains(&s.stage.as_str()) {
                stages.push(&s.stage);
            }
        }
    }
    let count = |i: usize, s: &str| {
        c.sets[i]
            .reached
            .iter()
            .find(|r| r.stage == s)
            .map_or_else(|| "-".into(), |r| r.leads.to_string())
    };
    let rows: Vec<Vec<String>> = stages
        .iter()
        .map(|s| vec![(*s).to_string(), count(0, s), count(1, s)])
        .collect();
    out += &table(&["stage", "A", "B"], &rows, &[1, 2]);

    let _ = writeln!(out, "\nconversion of the qualified leads");
    let rows: Vec<Vec<String>> = ["A", "B"]
        .iter()
        .zip(&c.sets)
        .map(|(l, s)| {
            vec![
                (*l).to_string(),
                s.qualified.leads.to_string(),
                rate(&s.qualified),
                s.qualified
                    .ci95
                    .map_or_else(|| "-".into(), |[a, b]| format!("{}–{}%", num(a), num(b))),
                rate(&s.not_qualified),
                format!("{}%", num(s.found_of_converted)),
            ]
        })
        .collect();
    out += &table(
        &[
            "set",
            "qualified",
            "converted",
            "95% CI",
            "not qualified, converted",
            "of all conversions found",
        ],
        &rows,
        &[1, 5],
    );

    let _ = writeln!(out, "\nwhere they disagree");
    let rows: Vec<Vec<String>> = [
        ("both", &c.both),
        ("A only", &c.only_first),
        ("B only", &c.only_second),
        ("neither", &c.neither),
    ]
    .iter()
    .map(|(l, s)| {
        vec![
            (*l).to_string(),
            s.rate.leads.to_string(),
            rate(&s.rate),
            ids(s),
        ]
    })
    .collect();
    out += &table(&["qualified by", "leads", "converted", "ids"], &rows, &[1]);

    let [sa, sb] = &c.sets;
    let better = |x: f64, y: f64| {
        if x > y {
            "A"
        } else if y > x {
            "B"
        } else {
            "neither"
        }
    };
    let _ = writeln!(
        out,
        "\nhigher conversion among qualified leads: {}; more of the conversions found: {}",
        better(sa.qualified.rate, sb.qualified.rate),
        better(sa.found_of_converted, sb.found_of_converted)
    );
    out
}
