//! `leadscore report`: replays the events, then prints the numbers of
//! `leadscore_tools::report` as aligned tables, one JSON document, or one self-contained HTML
//! page with inline SVG charts (no script, no external file).

use crate::events::{load_rules, parse_as_of, run_events, states, write_output};
use leadscore_tools::report::{report, Options, Rate, Report};
use serde_json::Value;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// `report` output.
#[derive(Clone, Copy, Debug, clap::ValueEnum, PartialEq, Eq)]
pub enum ReportFormat {
    /// Readable aligned tables.
    Table,
    /// One JSON document.
    Json,
    /// One self-contained HTML page with charts.
    Html,
}

/// What `report` was asked to do.
pub struct ReportArgs<'a> {
    /// The rule set.
    pub rules: &'a PathBuf,
    /// The events file.
    pub events: &'a PathBuf,
    /// A profile trait path to group by.
    pub by: Option<&'a str>,
    /// A CSV of spend per source.
    pub spend: Option<&'a Path>,
    /// Groups with fewer leads are marked small.
    pub min_group: u64,
    /// Output format.
    pub format: ReportFormat,
    /// Output file.
    pub out: Option<&'a Path>,
    /// Tick every lead at this time after the last line.
    pub as_of: Option<&'a str>,
}

/// Reads a spend file: a header with `source` and `spend` columns (any case, any order), one
/// row per source. `Err(2)` after reporting each bad row as `FILE:ROW: message`.
pub fn read_spend(path: &Path) -> Result<Vec<(String, f64)>, u8> {
    let name = path.display().to_string();
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .map_err(|e| {
            eprintln!("error: cannot read `{name}`: {e}");
            2u8
        })?;
    let headers = reader.headers().map_err(|e| {
        eprintln!("error: cannot read the header of `{name}`: {e}");
        2u8
    })?;
    let col = |want: &str| {
        headers
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(want))
    };
    let (Some(src), Some(amount)) = (col("source"), col("spend")) else {
        eprintln!("error: `{name}` needs the columns `source` and `spend`");
        return Err(2);
    };
    let mut rows: Vec<(String, f64)> = Vec::new();
    let mut bad = false;
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, csv::Position::line);
                eprintln!("{name}:{line}: {e}");
                bad = true;
                continue;
            }
        };
        let line = record.position().map_or(0, csv::Position::line);
        let source = record.get(src).unwrap_or_default().trim();
        let cell = record.get(amount).unwrap_or_default().trim();
        let number = cell.trim_start_matches('$').replace(',', "");
        match number.parse::<f64>() {
            Ok(x) if x.is_finite() && x >= 0.0 && !source.is_empty() => {
                match rows.iter_mut().find(|(s, _)| s == source) {
                    Some(row) => row.1 += x,
                    None => rows.push((source.to_string(), x)),
                }
            }
            _ if source.is_empty() => {
                eprintln!("{name}:{line}: empty source");
                bad = true;
            }
            _ => {
                eprintln!("{name}:{line}: spend `{cell}` is not a number of at least 0");
                bad = true;
            }
        }
    }
    if bad {
        return Err(2);
    }
    Ok(rows)
}

/// Runs `report`; returns the exit status.
pub fn run(args: &ReportArgs<'_>) -> u8 {
    let program = match load_rules(args.rules) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let as_of = match parse_as_of(args.as_of) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let spend = match args.spend.map(read_spend).transpose() {
        Ok(s) => s,
        Err(code) => return code,
    };
    let options = Options {
        by: args.by.map(str::to_string),
        spend,
        min_group: args.min_group,
    };
    let result = run_events(&[&program], args.events, as_of, |engines, rejected| {
        engines
            .first()
            .map(|e| (report(&program, &states(e), &options), rejected))
    });
    let (doc, rejected) = match result {
        Ok(Some(x)) => x,
        Ok(None) => return 2,
        Err(code) => return code,
    };
    if rejected > 0 {
        eprintln!("{rejected} calls rejected");
    }
    let text = match args.format {
        ReportFormat::Json => match serde_json::to_string_pretty(&doc) {
            Ok(t) => t + "\n",
            Err(e) => {
                eprintln!("error: cannot write the report: {e}");
                return 2;
            }
        },
        ReportFormat::Table => table_report(&doc),
        ReportFormat::Html => html_report(&doc),
    };
    write_output(args.out, &text)
}

/// Seconds as `2d 4h`, `3h 5m`, `12m 30s` or `40s`.
pub fn human_duration(secs: f64) -> String {
    #[allow(clippy::cast_possible_truncation)]
    let s = secs.round() as i64;
    let (d, h, m, sec) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {sec}s")
    } else {
        format!("{sec}s")
    }
}

/// A number with at most 2 digits after the point, no trailing zeros.
pub fn num(x: f64) -> String {
    let r = leadscore_core::output::round2(x);
    let t = format!("{r:.2}");
    let t = t.trim_end_matches('0').trim_end_matches('.');
    if t == "-0" {
        "0".into()
    } else {
        t.to_string()
    }
}

fn ci(r: &Rate) -> String {
    r.ci95
        .map_or_else(|| "-".into(), |[a, b]| format!("{}–{}%", num(a), num(b)))
}

fn pct(x: f64) -> String {
    format!("{}%", num(x))
}

fn value_label(v: &Value) -> String {
    match v {
        Value::Null => "(none)".into(),
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

/// Aligned columns; `right` lists the columns aligned right (numbers).
pub fn table(header: &[&str], rows: &[Vec<String>], right: &[usize]) -> String {
    let mut all: Vec<Vec<String>> = vec![header.iter().map(|s| (*s).to_string()).collect()];
    all.extend(rows.iter().cloned());
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            all.iter()
                .map(|r| r.get(c).map_or(0, |v| v.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (i, row) in all.iter().enumerate() {
        let cells: Vec<String> = widths
            .iter()
            .enumerate()
            .map(|(c, w)| {
                let v = row.get(c).map_or("", String::as_str);
                let pad = " ".repeat(w - v.chars().count());
                if right.contains(&c) {
                    format!("{pad}{v}")
                } else {
                    format!("{v}{pad}")
                }
            })
            .collect();
        let _ = writeln!(out, "  {}", cells.join("  ").trim_end());
        if i == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            let _ = writeln!(out, "  {}", rule.join("  "));
        }
    }
    out
}

fn rate_cells(r: &Rate) -> [String; 4] {
    [
        r.leads.to_string(),
        r.converted.to_string(),
        pct(r.rate),
        ci(r),
    ]
}

/// The report as readable tables.
pub fn table_report(r: &Report) -> String {
    let mut out = String::new();
    let o = &r.overall;
    let _ = writeln!(out, "rule set `{}`", r.ruleset);
    let _ = writeln!(
        out,
        "{} leads, {} converted: conversion rate {} (95% CI {})",
        o.leads,
        o.converted,
        pct(o.rate),
        ci(o)
    );
    match r.time_to_convert.median_seconds {
        None if !r.event_times => {
            let _ = writeln!(out, "median time to convert: - ({NO_TIMES})");
        }
        Some(m) => {
            let _ = writeln!(
                out,
                "median time to convert: {} ({} converted leads, from first seen to first conversion)",
                human_duration(m),
                r.time_to_convert.converted
            );
        }
        None => {
            let _ = writeln!(out, "median time to convert: - (no conversions)");
        }
    }

    let _ = writeln!(out, "\nby source (first touch)");
    let rows = source_rows(r);
    out += &table(&SOURCE_HEADER, &rows, &[1, 2, 3, 4]);
    if r.by_source.iter().any(|s| s.small) {
        let _ = writeln!(out, "  {}", small_note(r.min_group));
    }

    let _ = writeln!(
        out,
        "\nby stage (of the leads that reached it, the share that converted)"
    );
    if r.by_stage.is_empty() {
        let _ = writeln!(out, "  (the rule set declares no stage)");
    } else {
        out += &table(&STAGE_HEADER, &stage_rows(r), &[1, 2, 3, 4, 5]);
    }

    if let Some(by) = &r.by {
        let _ = writeln!(
            out,
            "\nby `{}` (each group against the rest of the leads)",
            by.property
        );
        out += &table(&BY_HEADER, &by_rows(by), &[1, 2, 3, 4, 5, 6, 7]);
        for line in by_note(by, r.min_group) {
            let _ = writeln!(out, "  {line}");
        }
    }

    let _ = writeln!(out, "\nleads per week (ISO week of first seen)");
    if r.event_times {
        let rows = week_rows(r);
        out += &table(&WEEK_HEADER, &rows, &[2, 3]);
    } else {
        let _ = writeln!(out, "  - ({NO_TIMES})");
    }

    if let Some(cost) = &r.cost {
        let _ = writeln!(out, "\ncost");
        let rows = cost_rows(cost, o);
        out += &table(&COST_HEADER, &rows, &[1, 2, 3, 4, 5]);
    }

    let q = &r.quality;
    let _ = writeln!(out, "\nlead quality");
    if let (Some(lo), Some(hi), Some(med)) = (q.score_min, q.score_max, q.score_median) {
        let _ = writeln!(
            out,
            "  scores from {} to {}, median {}",
            num(lo),
            num(hi),
            num(med)
        );
    }
    let top = q
        .histogram
        .iter()
        .map(|b| b.leads)
        .max()
        .unwrap_or(0)
        .max(1);
    let rows: Vec<Vec<String>> = q
        .histogram
        .iter()
        .map(|b| {
            #[allow(clippy::cast_possible_truncation)]
            let len = (b.leads * 30).div_ceil(top) as usize;
            vec![
                format!("[{}, {})", num(b.from), num(b.to)),
                b.leads.to_string(),
                b.converted.to_string(),
                "#".repeat(len),
            ]
        })
        .collect();
    out += &table(&["score", "leads", "converted", ""], &rows, &[1, 2]);
    let _ = writeln!(out, "\nconversion rate by score band ({BANDS})");
    let rows = band_rows(r);
    out += &table(&BAND_HEADER, &rows, &[2, 3, 4]);
    out
}

/// Escapes text for HTML.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[allow(clippy::cast_precision_loss)]
fn frac(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// The funnel: all leads, then each stage, as centred bars.
fn funnel_svg(r: &Report) -> String {
    let total = r.overall.leads;
    let mut rows: Vec<(String, u64)> = vec![("all leads".into(), total)];
    rows.extend(r.by_stage.iter().map(|s| (s.stage.clone(), s.rate.leads)));
    let (w, bar_h, gap, label_w) = (640.0, 28.0, 8.0, 150.0);
    let h = rows.len() as f64 * (bar_h + gap) + gap;
    let area = w - label_w - 10.0;
    let mut svg = format!(
        r#"<svg data-chart="funnel" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="funnel by stage">"#
    );
    for (i, (name, n)) in rows.iter().enumerate() {
        let y = gap + i as f64 * (bar_h + gap);
        let bw = (frac(*n, total) * area).max(1.0);
        let x = label_w + (area - bw) / 2.0;
        let share = pct(frac(*n, total) * 100.0);
        // the value sits inside its bar when it fits, else just right of it
        let text_w = format!("{n} · {share}").chars().count() as f64 * 6.5;
        let (cx, anchor) = if bw >= text_w + 12.0 {
            (label_w + area / 2.0, "middle")
        } else {
            (x + bw + 6.0, "start")
        };
        let _ = write!(
            svg,
            r#"<text x="{lx}" y="{ty}" class="label" text-anchor="end">{name}</text><rect x="{x:.1}" y="{y}" width="{bw:.1}" height="{bar_h}" class="bar"><title>{name}: {n} leads ({share})</title></rect><text x="{cx:.1}" y="{ty}" class="value" text-anchor="{anchor}">{n} · {share}</text>"#,
            lx = label_w - 8.0,
            ty = y + bar_h / 2.0 + 4.0,
            name = esc(name),
        );
    }
    svg.push_str("</svg>");
    svg
}

/// One bar of a rate chart: its label, its rate, and whether the group is small.
struct RateBar<'a> {
    label: String,
    rate: &'a leadscore_tools::report::Rate,
    small: bool,
}

/// Conversion rates as horizontal bars, each with its 95% Wilson interval as a whisker; a
/// small group's bar is drawn pale and labelled `(few)`.
fn rates_svg(chart: &str, aria: &str, rows: &[RateBar<'_>]) -> String {
    let (w, bar_h, gap, label_w) = (640.0, 22.0, 6.0, 190.0);
    let h = rows.len().max(1) as f64 * (bar_h + gap) + gap + 18.0;
    let area = w - label_w - 110.0;
    let mut svg = format!(
        r#"<svg data-chart="{chart}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="{aria}">"#
    );
    for i in 0..=4 {
        let x = label_w + area * f64::from(i) / 4.0;
        let _ = write!(
            svg,
            r#"<line x1="{x}" y1="0" x2="{x}" y2="{gy}" class="grid"/><text x="{x}" y="{ty}" class="axis" text-anchor="middle">{p}%</text>"#,
            gy = h - 18.0,
            ty = h - 4.0,
            p = i * 25
        );
    }
    for (i, row) in rows.iter().enumerate() {
        let y = gap + i as f64 * (bar_h + gap);
        let rate = row.rate;
        let bw = area * rate.rate / 100.0;
        let ty = y + bar_h / 2.0 + 4.0;
        let (class, few) = if row.small {
            ("bar small", " (few)")
        } else {
            ("bar", "")
        };
        let _ = write!(
            svg,
            r#"<text x="{lx}" y="{ty}" class="label" text-anchor="end">{name}{few}</text><rect x="{label_w}" y="{y}" width="{bw:.1}" height="{bar_h}" class="{class}"><title>{name}: {c} of {n} converted ({pc})</title></rect>"#,
            lx = label_w - 8.0,
            name = esc(&row.label),
            c = rate.converted,
            n = rate.leads,
            pc = pct(rate.rate),
        );
        if let Some([lo, hi]) = rate.ci95 {
            let (x1, x2) = (label_w + area * lo / 100.0, label_w + area * hi / 100.0);
            let cy = y + bar_h / 2.0;
            let _ = write!(
                svg,
                r#"<g class="ci" data-low="{lo}" data-high="{hi}"><line x1="{x1:.1}" y1="{cy}" x2="{x2:.1}" y2="{cy}"/><line x1="{x1:.1}" y1="{a}" x2="{x1:.1}" y2="{b}"/><line x1="{x2:.1}" y1="{a}" x2="{x2:.1}" y2="{b}"/></g>"#,
                a = cy - 5.0,
                b = cy + 5.0
            );
        }
        let _ = write!(
            svg,
            r#"<text x="{vx}" y="{ty}" class="value">{pc} ({n})</text>"#,
            vx = label_w + area + 6.0,
            pc = pct(rate.rate),
            n = rate.leads
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Conversion rate by source.
fn by_source_svg(r: &Report) -> String {
    let rows: Vec<RateBar<'_>> = r
        .by_source
        .iter()
        .map(|s| RateBar {
            label: s.source.clone().unwrap_or_else(|| "(none)".into()),
            rate: &s.rate,
            small: s.small,
        })
        .collect();
    rates_svg("by-source", "conversion rate by source", &rows)
}

/// A step for `top` on an axis: a round number giving at most 5 ticks above 0.
fn tick_step(top: u64) -> u64 {
    let mut step = 1;
    while top.div_ceil(step) > 5 {
        step = match step.to_string().chars().next() {
            Some('1') => step * 2,
            Some('2') => step / 2 * 5,
            _ => step * 2,
        };
    }
    step
}

/// The score histogram: leads per bucket, the converted part darker.
fn scores_svg(r: &Report) -> String {
    let buckets = &r.quality.histogram;
    let (w, h, bottom, left) = (640.0, 260.0, 36.0, 48.0);
    let top = buckets.iter().map(|b| b.leads).max().unwrap_or(0).max(1);
    let plot_h = h - bottom - 10.0;
    let bw = (w - left - 24.0) / buckets.len().max(1) as f64;
    let mut svg = format!(
        r#"<svg data-chart="scores" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="score distribution">"#
    );
    let _ = write!(
        svg,
        r#"<line x1="{left}" y1="{y}" x2="{x2}" y2="{y}" class="axisline"/><line x1="{left}" y1="{y0}" x2="{left}" y2="{y}" class="axisline"/>"#,
        y = h - bottom,
        y0 = h - bottom - plot_h,
        x2 = w - 24.0,
    );
    // the y axis: leads, with ticks at round numbers
    let step = tick_step(top);
    let mut tick = 0;
    while tick <= top {
        let ty = h - bottom - plot_h * frac(tick, top);
        let _ = write!(
            svg,
            r#"<line x1="{x1}" y1="{ty:.1}" x2="{left}" y2="{ty:.1}" class="tick"/><text x="{tx}" y="{ly:.1}" class="axis ytick" text-anchor="end">{tick}</text>"#,
            x1 = left - 4.0,
            tx = left - 6.0,
            ly = ty + 4.0,
        );
        tick += step;
    }
    let _ = write!(
        svg,
        r#"<text x="12" y="{my}" class="axis" text-anchor="middle" transform="rotate(-90 12 {my})">leads</text>"#,
        my = (h - bottom) / 2.0,
    );
    for (i, b) in buckets.iter().enumerate() {
        let x = left + i as f64 * bw;
        let bh = plot_h * frac(b.leads, top);
        let ch = plot_h * frac(b.converted, top);
        let _ = write!(
            svg,
            r#"<rect x="{x:.1}" y="{y:.1}" width="{bw1:.1}" height="{bh:.1}" class="bar"><title>scores [{from}, {to}): {n} leads, {c} converted</title></rect><rect x="{x:.1}" y="{cy:.1}" width="{bw1:.1}" height="{ch:.1}" class="conv"/><text x="{lx:.1}" y="{ly}" class="axis" text-anchor="middle">{from}</text>"#,
            y = h - bottom - bh,
            cy = h - bottom - ch,
            bw1 = (bw - 2.0).max(1.0),
            from = num(b.from),
            to = num(b.to),
            n = b.leads,
            c = b.converted,
            lx = x,
            ly = h - bottom + 14.0,
        );
    }
    if let Some(last) = buckets.last() {
        let _ = write!(
            svg,
            r#"<text x="{x:.1}" y="{y}" class="axis" text-anchor="middle">{to}</text>"#,
            x = left + buckets.len() as f64 * bw,
            y = h - bottom + 14.0,
            to = num(last.to)
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{cx}" y="{y}" class="axis" text-anchor="middle">score; dark: converted</text>"#,
        cx = w / 2.0,
        y = h - 4.0
    );
    svg.push_str("</svg>");
    svg
}

fn html_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = String::from("<table><thead><tr>");
    for h in header {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows {
        out.push_str("<tr>");
        for c in row {
            let _ = write!(out, "<td>{}</td>", esc(c));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out
}

const CSS: &str = "body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;\
max-width:60rem;color:#1f2933;padding:0 1rem}h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;\
border-bottom:1px solid #d9e2ec;padding-bottom:.25rem}.kpis{display:flex;gap:1rem;flex-wrap:wrap}\
.kpi{background:#f0f4f8;border-radius:6px;padding:.75rem 1rem;min-width:9rem}.kpi b{display:block;\
font-size:1.4rem}table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}th,td{padding:.25rem \
.6rem;border-bottom:1px solid #e4e7eb;text-align:right}th:first-child,td:first-child{text-align:left}\
svg{max-width:100%;height:auto;display:block;margin:.5rem 0}svg .bar{fill:#4c9aff}svg .conv{fill:#0b4f9c}\
svg .label,svg .value,svg .axis{font-size:12px;fill:#334e68}svg .grid{stroke:#e4e7eb}\
svg .ci{stroke:#102a43;stroke-width:1.5}svg .axisline,svg .tick{stroke:#9fb3c8}svg .bar.small{fill:#c5d6ea}\
.note{color:#627d98;font-size:.85rem}.sig{font-weight:600;color:#0b4f9c}";

/// The report as one self-contained HTML page.
pub fn html_report(r: &Report) -> String {
    let o = &r.overall;
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" \
         content=\"width=device-width, initial-scale=1\"><title>leadscore report: {name}</title>\
         <style>{CSS}</style></head><body><h1>Lead report: rule set <code>{name}</code></h1>",
        name = esc(&r.ruleset)
    );
    let median = r
        .time_to_convert
        .median_seconds
        .map_or_else(|| "-".into(), human_duration);
    let median_note = if r.event_times {
        String::new()
    } else {
        "<span class=\"note\">no event times</span>".to_owned()
    };
    let _ = write!(
        h,
        "<div class=\"kpis\"><div class=\"kpi\">leads<b>{}</b></div><div class=\"kpi\">converted<b>{}</b></div>\
         <div class=\"kpi\">conversion rate<b>{}</b><span class=\"note\">95% CI {}</span></div>\
         <div class=\"kpi\">median time to convert<b>{}</b>{median_note}</div></div>",
        o.leads,
        o.converted,
        esc(&pct(o.rate)),
        esc(&ci(o)),
        esc(&median)
    );
    if !r.event_times {
        let _ = write!(h, "<p class=\"note\" data-note=\"no-times\">{}: time to convert and leads per week are left out.</p>", esc(NO_TIMES));
    }
    let _ = write!(h, "<h2>Funnel by stage</h2>{}", funnel_svg(r));
    h += &html_table(&STAGE_HEADER, &stage_rows(r));
    let _ = write!(
        h,
        "<h2>Conversion rate by source</h2><p class=\"note\">first-touch source; whiskers: 95% \
         Wilson interval</p>{}",
        by_source_svg(r)
    );
    let rows = source_rows(r);
    h += &html_table(&SOURCE_HEADER, &rows);
    if r.by_source.iter().any(|s| s.small) {
        let _ = write!(h, "<p class=\"note\">{}</p>", esc(&small_note(r.min_group)));
    }
    if let Some(by) = &r.by {
        let bars: Vec<RateBar<'_>> = by
            .groups
            .iter()
            .map(|g| RateBar {
                label: value_label(&g.value),
                rate: &g.rate,
                small: g.small,
            })
            .collect();
        let _ = write!(
            h,
            "<h2>By <code>{}</code></h2><p class=\"note\">whiskers: 95% Wilson interval</p>{}",
            esc(&by.property),
            rates_svg("by", "conversion rate by trait", &bars)
        );
        h += &html_table(&BY_HEADER, &by_rows(by));
        let _ = write!(
            h,
            "<p class=\"note\" data-note=\"tests\">{}</p>",
            by_note(by, r.min_group)
                .iter()
                .map(|line| esc(line))
                .collect::<Vec<_>>()
                .join("<br>")
        );
    }
    let _ = write!(
        h,
        "<h2>Lead quality</h2><p class=\"note\">score distribution; the dark part of each bar \
         converted</p>{}",
        scores_svg(r)
    );
    let bars: Vec<RateBar<'_>> = r
        .quality
        .bands
        .iter()
        .map(|b| RateBar {
            label: format!("{} ({} to {})", b.band, num(b.min), num(b.max)),
            rate: &b.rate,
            small: false,
        })
        .collect();
    let _ = write!(
        h,
        "<h3>Conversion rate by score band</h3><p class=\"note\">{}; whiskers: 95% Wilson interval</p>{}",
        esc(BANDS),
        rates_svg("bands", "conversion rate by score band", &bars)
    );
    let rows = band_rows(r);
    h += &html_table(&BAND_HEADER, &rows);
    h.push_str("<h2>Leads per week</h2>");
    if r.event_times {
        let rows = week_rows(r);
        h += &html_table(&WEEK_HEADER, &rows);
    } else {
        let _ = write!(h, "<p class=\"note\">{}</p>", esc(NO_TIMES));
    }
    if let Some(cost) = &r.cost {
        h.push_str("<h2>Cost</h2>");
        let rows = cost_rows(cost, o);
        h += &html_table(&COST_HEADER, &rows);
    }
    h.push_str("</body></html>\n");
    h
}

/// What the report says instead of times measured from an import.
const NO_TIMES: &str = "the data has no event times: every lead was first seen at the same instant, as a CRM import with one `--at` time gives";

/// What the score bands are.
const BANDS: &str = "quartiles: the leads ranked by score, four bands of equal count";

/// The note under a table with small groups.
fn small_note(min_group: u64) -> String {
    format!("(few): fewer than {min_group} leads (`--min-group`): the rate says little, see its interval")
}

/// The columns of the `--by` table.
const BY_HEADER: [&str; 8] = [
    "value",
    "leads",
    "converted",
    "rate",
    "95% CI",
    "z",
    "p",
    "p (Holm)",
];

/// The rows of the `--by` table: a small group is marked and not tested; a significant one
/// has `*` beside its corrected p-value.
fn by_rows(by: &leadscore_tools::report::ByProperty) -> Vec<Vec<String>> {
    let p4 = |p: Option<f64>| p.map_or_else(|| "-".into(), |p| format!("{p:.4}"));
    by.groups
        .iter()
        .map(|g| {
            let mut label = value_label(&g.value);
            if g.small {
                label.push_str(" (few)");
            }
            let mut row = vec![label];
            row.extend(rate_cells(&g.rate));
            row.push(g.z.map_or_else(|| "-".into(), num));
            row.push(p4(g.p_value));
            let mut holm = p4(g.p_holm);
            if g.significant {
                holm.push_str(" *");
            }
            row.push(holm);
            row
        })
        .collect()
}

/// The note under the `--by` table, line by line: what was tested and how.
fn by_note(by: &leadscore_tools::report::ByProperty, min_group: u64) -> Vec<String> {
    let tested = by.groups.iter().filter(|g| g.p_value.is_some()).count();
    let mut note = vec![
        format!("z: two-proportion z-test of each group against the rest of the leads ({tested} test(s))"),
        "p (Holm): p corrected for the number of tests by Holm's method; * below 0.05: unlikely to be chance".to_owned(),
    ];
    if by.groups.iter().any(|g| g.small) {
        note.push(format!("{}; not tested", small_note(min_group)));
    }
    note
}

/// The columns of the by-source table.
const SOURCE_HEADER: [&str; 5] = ["source", "leads", "converted", "rate", "95% CI"];

/// The rows of the by-source table.
fn source_rows(r: &Report) -> Vec<Vec<String>> {
    r.by_source
        .iter()
        .map(|s| {
            let mut label = s.source.clone().unwrap_or_else(|| "(none)".into());
            if s.small {
                label.push_str(" (few)");
            }
            let mut row = vec![label];
            row.extend(rate_cells(&s.rate));
            row
        })
        .collect()
}

/// The columns of the by-stage table.
const STAGE_HEADER: [&str; 6] = [
    "stage",
    "reached",
    "of leads",
    "converted",
    "rate",
    "95% CI",
];

/// The rows of the by-stage table.
fn stage_rows(r: &Report) -> Vec<Vec<String>> {
    r.by_stage
        .iter()
        .map(|s| {
            let [n, c, rate, ci] = rate_cells(&s.rate);
            vec![s.stage.clone(), n, pct(s.share_of_leads), c, rate, ci]
        })
        .collect()
}

/// The columns of the leads-per-week table.
const WEEK_HEADER: [&str; 4] = ["week", "starts", "leads", "converted"];

/// The rows of the leads-per-week table.
fn week_rows(r: &Report) -> Vec<Vec<String>> {
    r.leads_per_week
        .iter()
        .map(|w| {
            vec![
                w.week.clone(),
                w.starts.clone(),
                w.leads.to_string(),
                w.converted.to_string(),
            ]
        })
        .collect()
}

/// The columns of the score-band table.
const BAND_HEADER: [&str; 6] = ["band", "scores", "leads", "converted", "rate", "95% CI"];

/// The rows of the score-band table.
fn band_rows(r: &Report) -> Vec<Vec<String>> {
    r.quality
        .bands
        .iter()
        .map(|b| {
            let mut row = vec![b.band.clone(), format!("{} to {}", num(b.min), num(b.max))];
            row.extend(rate_cells(&b.rate));
            row
        })
        .collect()
}

/// The columns of the cost table.
const COST_HEADER: [&str; 6] = [
    "source",
    "spend",
    "leads",
    "converted",
    "per lead",
    "per conversion",
];

/// The rows of the cost table: one per source with spend, then all leads.
fn cost_rows(
    cost: &leadscore_tools::report::Cost,
    o: &leadscore_tools::report::Rate,
) -> Vec<Vec<String>> {
    let money = |x: Option<f64>| x.map_or_else(|| "-".into(), |x| format!("{x:.2}"));
    let mut rows: Vec<Vec<String>> = cost
        .by_source
        .iter()
        .map(|c| {
            vec![
                c.source.clone(),
                format!("{:.2}", c.spend),
                c.leads.to_string(),
                c.converted.to_string(),
                money(c.cost_per_lead),
                money(c.cost_per_conversion),
            ]
        })
        .collect();
    rows.push(vec![
        "all leads".into(),
        format!("{:.2}", cost.total_spend),
        o.leads.to_string(),
        o.converted.to_string(),
        money(cost.cost_per_lead),
        money(cost.cost_per_conversion),
    ]);
    rows
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_numbers() {
        assert_eq!(human_duration(702_000.0), "8d 3h");
        assert_eq!(human_duration(3_900.0), "1h 5m");
        assert_eq!(human_duration(750.0), "12m 30s");
        assert_eq!(human_duration(40.0), "40s");
        assert_eq!(num(44.444), "44.44");
        assert_eq!(num(50.0), "50");
        assert_eq!(num(-0.001), "0");
        assert_eq!(esc("<a & 'b'>"), "&lt;a &amp; &#39;b&#39;&gt;");
    }

    #[test]
    fn aligned_table() {
        let t = table(
            &["a", "n"],
            &[
                vec!["xyz".into(), "1".into()],
                vec!["b".into(), "100".into()],
            ],
            &[1],
        );
        assert_eq!(t, "  a      n\n  ---  ---\n  xyz    1\n  b    100\n");
    }
}
