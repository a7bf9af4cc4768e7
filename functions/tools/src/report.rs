//! The numbers behind `leadscore report` and `leadscore compare` (SPEC §4): conversion rates
//! overall, by source, by stage and by a profile trait, with 95% Wilson intervals and
//! two-proportion z-tests; time to convert; leads per week; cost per lead and per conversion;
//! lead quality (score histogram and conversion by score band); and the comparison of two rule
//! sets over the same history.
//!
//! Everything here is a pure function of final lead states, so it is tested without files.
//! A lead counts once: it has converted when any of its conversions happened.

use leadscore_rules::eval::LeadState;
use leadscore_rules::time::{Micros, SECOND};
use leadscore_rules::Program;
use serde::Serialize;
use serde_json::Value;

/// The 97.5th percentile of the standard normal distribution (two-sided 95%).
pub const Z95: f64 = 1.959_963_984_540_054;

/// Ids listed per group of a comparison.
pub const COMPARE_IDS: usize = 5;

pub use leadscore_core::output::round2;

#[allow(clippy::cast_precision_loss)]
fn f(n: u64) -> f64 {
    n as f64
}

/// The 95% Wilson score interval of `successes` out of `n`, as proportions in `[0, 1]`;
/// `None` for `n == 0`.
pub fn wilson(successes: u64, n: u64) -> Option<(f64, f64)> {
    if n == 0 {
        return None;
    }
    let (x, n) = (f(successes.min(n)), f(n));
    let p = x / n;
    let z2 = Z95 * Z95;
    let denom = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denom;
    let half = Z95 / denom * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    // the bounds at 0 and n are exact (rounding would leave 0.9999…)
    let lo = if x == 0.0 {
        0.0
    } else {
        (center - half).max(0.0)
    };
    let hi = if x == n {
        1.0
    } else {
        (center + half).min(1.0)
    };
    Some((lo, hi))
}

/// The complementary error function, to about 1e-7 relative error (Numerical Recipes'
/// Chebyshev fit).
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// The two-sided p-value of a standard normal statistic `z`.
pub fn two_sided_p(z: f64) -> f64 {
    erfc(z.abs() / std::f64::consts::SQRT_2).clamp(0.0, 1.0)
}

/// The pooled two-proportion z-test of `x2/n2` against `x1/n1`: `(z, two-sided p)`.
/// `None` when a group is empty or the pooled proportion is 0 or 1 (no variance).
pub fn two_proportion_z(x1: u64, n1: u64, x2: u64, n2: u64) -> Option<(f64, f64)> {
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let (x1, n1, x2, n2) = (f(x1), f(n1), f(x2), f(n2));
    let pooled = (x1 + x2) / (n1 + n2);
    let se = (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)).sqrt();
    if se <= 0.0 || !se.is_finite() {
        return None;
    }
    let z = (x2 / n2 - x1 / n1) / se;
    Some((z, two_sided_p(z)))
}

/// The median (the mean of the two middle values for an even count); `None` when empty.
pub fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}

/// The ISO 8601 week of a time (UTC) as `("2026-W01", "2025-12-29")`: the label and the date of
/// its Monday.
pub fn iso_week(at: Micros) -> Option<(String, String)> {
    use chrono::{Datelike, Duration};
    let date = chrono::DateTime::from_timestamp_micros(at)?.date_naive();
    let week = date.iso_week();
    let monday = date - Duration::days(i64::from(date.weekday().num_days_from_monday()));
    Some((
        format!("{}-W{:02}", week.year(), week.week()),
        monday.format("%Y-%m-%d").to_string(),
    ))
}

/// A conversion rate: leads, how many of them converted, the rate in percent and its 95%
/// Wilson interval in percent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rate {
    /// Leads in the group.
    pub leads: u64,
    /// Leads of the group that converted.
    pub converted: u64,
    /// `converted ÷ leads × 100` (0 for an empty group), rounded to 2 digits.
    pub rate: f64,
    /// The 95% Wilson interval in percent, `[low, high]`; null for an empty group.
    pub ci95: Option<[f64; 2]>,
}

impl Rate {
    /// The rate of `converted` out of `leads`.
    pub fn new(leads: u64, converted: u64) -> Self {
        let rate = if leads == 0 {
            0.0
        } else {
            round2(f(converted) / f(leads) * 100.0)
        };
        Rate {
            leads,
            converted,
            rate,
            ci95: wilson(converted, leads).map(|(a, b)| [round2(a * 100.0), round2(b * 100.0)]),
        }
    }
}

/// The conversion rate of the leads of one first-touch source (`null`: no source).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceRow {
    /// `context.campaign.source` of the lead's first call.
    pub source: Option<String>,
    /// Its rate.
    #[serde(flatten)]
    pub rate: Rate,
    /// Fewer leads than the report's `min_group`: the rate says little (its interval is
    /// wide), and charts draw it apart.
    pub small: bool,
}

/// Of the leads that reached a stage, the share that converted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageRow {
    /// The stage.
    pub stage: String,
    /// Share of all leads that reached it, in percent (the funnel).
    pub share_of_leads: f64,
    /// `leads` are the leads that reached the stage.
    #[serde(flatten)]
    pub rate: Rate,
}

/// One value of the `--by` trait.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ByRow {
    /// The trait's value (null: leads without it).
    pub value: Value,
    /// Its rate.
    #[serde(flatten)]
    pub rate: Rate,
    /// Fewer leads than the report's `min_group`: not tested, and drawn apart.
    pub small: bool,
    /// The two-proportion z statistic of the group against the rest of the leads, positive
    /// when the group converts more (null for a small group, or with no rest to compare with).
    pub z: Option<f64>,
    /// Its two-sided p-value, uncorrected.
    pub p_value: Option<f64>,
    /// The p-value corrected for the number of groups tested (Holm's step-down method).
    pub p_holm: Option<f64>,
    /// `p_holm` below 0.05: the group's rate differs from the rest's by more than chance
    /// would make it, all comparisons considered.
    pub significant: bool,
}

/// Conversion rate by a profile trait, for A/B tests and segments.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ByProperty {
    /// The trait's path in the profile (`lead_source`, `company.industry`).
    pub property: String,
    /// The groups: values in ascending order (numbers before strings), leads without the trait
    /// last. Each group of at least `min_group` leads is tested against the rest of the
    /// leads, and the p-values are corrected for the number of tests (Holm).
    pub groups: Vec<ByRow>,
}

/// Time from first sight to the first conversion, over the converted leads.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimeToConvert {
    /// Converted leads.
    pub converted: u64,
    /// The median of their `seconds_to_convert` (first conversion); null when none converted.
    pub median_seconds: Option<f64>,
}

/// The leads first seen in one ISO week.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WeekRow {
    /// `2026-W01`.
    pub week: String,
    /// The week's Monday, `2025-12-29`.
    pub starts: String,
    /// Leads first seen that week.
    pub leads: u64,
    /// Of them, leads that converted (at any time).
    pub converted: u64,
}

/// Cost of the leads and conversions of one source.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostRow {
    /// The source, as written in the spend file.
    pub source: String,
    /// Its spend.
    pub spend: f64,
    /// Leads whose first-touch source it is.
    pub leads: u64,
    /// Of them, leads that converted.
    pub converted: u64,
    /// `spend ÷ leads` (null without leads).
    pub cost_per_lead: Option<f64>,
    /// `spend ÷ converted` (null without conversions).
    pub cost_per_conversion: Option<f64>,
}

/// Cost per lead and per conversion, given spend per source.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cost {
    /// Spend over all sources of the spend file.
    pub total_spend: f64,
    /// Total spend ÷ all leads (blended).
    pub cost_per_lead: Option<f64>,
    /// Total spend ÷ all converted leads (blended).
    pub cost_per_conversion: Option<f64>,
    /// Per source, in the order of the spend file.
    pub by_source: Vec<CostRow>,
}

/// One bucket of the score histogram: scores in `[from, to)`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bucket {
    /// Lower bound (inclusive).
    pub from: f64,
    /// Upper bound (exclusive).
    pub to: f64,
    /// Leads whose score falls in it.
    pub leads: u64,
    /// Of them, leads that converted.
    pub converted: u64,
}

/// A score band: a quarter of the leads by score rank.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Band {
    /// `Q1` (lowest scores) to `Q4` (highest).
    pub band: String,
    /// Lowest score in the band.
    pub min: f64,
    /// Highest score in the band.
    pub max: f64,
    /// Its rate.
    #[serde(flatten)]
    pub rate: Rate,
}

/// Lead quality: which leads are the best match.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Quality {
    /// Lowest score (null without leads).
    pub score_min: Option<f64>,
    /// Highest score.
    pub score_max: Option<f64>,
    /// Median score.
    pub score_median: Option<f64>,
    /// Score histogram, equal-width buckets.
    pub histogram: Vec<Bucket>,
    /// Conversion rate by score quartile: the leads ranked by score and cut into four bands
    /// of equal count (sizes differ by one at most), so equal scores at a cut may fall in two
    /// bands. Fewer than four leads give fewer bands.
    pub bands: Vec<Band>,
}

/// The whole `report --format json` document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The rule set's name.
    pub ruleset: String,
    /// Whether the data carries event times. False when every lead was first seen at one
    /// instant, as a CRM import with one `--at` time gives: time to convert and leads per
    /// week would then measure the import, so they are left empty.
    pub event_times: bool,
    /// Groups with fewer leads are marked `small` (`--min-group`).
    pub min_group: u64,
    /// All leads.
    pub overall: Rate,
    /// By first-touch source, most leads first.
    pub by_source: Vec<SourceRow>,
    /// By stage, in declaration order.
    pub by_stage: Vec<StageRow>,
    /// By the `--by` trait.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<ByProperty>,
    /// Time to convert.
    pub time_to_convert: TimeToConvert,
    /// Leads per ISO week of first sight, oldest first.
    pub leads_per_week: Vec<WeekRow>,
    /// Cost, when spend was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<Cost>,
    /// Lead quality.
    pub quality: Quality,
}

/// The default `--min-group`: a group needs 30 leads before its rate is drawn as a peer of
/// the others and tested.
pub const DEFAULT_MIN_GROUP: u64 = 30;

/// What the report is asked for beyond the fixed sections.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// A profile trait path to group by (`--by`).
    pub by: Option<String>,
    /// Spend per source (`--spend`), in file order.
    pub spend: Option<Vec<(String, f64)>>,
    /// Groups with fewer leads are marked small, and not tested (`--min-group`).
    pub min_group: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            by: None,
            spend: None,
            min_group: DEFAULT_MIN_GROUP,
        }
    }
}

/// Holm's step-down correction of p-values for the number of tests: the `k`-th smallest
/// is multiplied by `m − k + 1`, kept at least as large as the one before and at most 1.
/// The results are in the order of `p`.
pub fn holm(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut adjusted = vec![0.0; m];
    let mut running: f64 = 0.0;
    for (k, &i) in order.iter().enumerate() {
        #[allow(clippy::cast_precision_loss)]
        let factor = (m - k) as f64;
        running = running.max((p[i] * factor).min(1.0));
        adjusted[i] = running;
    }
    adjusted
}

/// Whether a lead has converted (any conversion).
pub fn converted(state: &LeadState) -> bool {
    state.conversions.iter().any(Option::is_some)
}

/// Seconds from first sight to the lead's first conversion.
pub fn seconds_to_convert(state: &LeadState) -> Option<i64> {
    let first = state.conversions.iter().flatten().map(|c| c.at).min()?;
    Some((first - state.first_seen).div_euclid(SECOND))
}

/// A profile value by dotted path (`company.industry`); JSON null counts as missing.
pub fn trait_at<'a>(profile: &'a leadscore_rules::Properties, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut v = profile.get(parts.next()?)?;
    for p in parts {
        v = v.as_object()?.get(p)?;
    }
    (!v.is_null()).then_some(v)
}

fn value_order(a: &Value, b: &Value) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Greater,
        (_, Value::Null) => Ordering::Less,
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .unwrap_or(0.0)
            .total_cmp(&y.as_f64().unwrap_or(0.0)),
        (Value::Number(_), _) => Ordering::Less,
        (_, Value::Number(_)) => Ordering::Greater,
        (Value::String(x), Value::String(y)) => x.cmp(y),
        _ => a.to_string().cmp(&b.to_string()),
    }
}

/// A "nice" bucket width (1, 2 or 5 × 10^k) that splits `range` into about 10 buckets.
pub fn nice_width(range: f64) -> f64 {
    if !(range.is_finite() && range > 0.0) {
        return 1.0;
    }
    let raw = range / 10.0;
    let exp = raw.log10().floor();
    let base = 10f64.powf(exp);
    let m = raw / base;
    let step = if m <= 1.0 {
        1.0
    } else if m <= 2.0 {
        2.0
    } else if m <= 5.0 {
        5.0
    } else {
        10.0
    };
    step * base
}

/// Equal-width buckets over `(score, converted)` pairs.
pub fn histogram(scores: &[(f64, bool)]) -> Vec<Bucket> {
    let Some(min) = scores.iter().map(|s| s.0).min_by(f64::total_cmp) else {
        return Vec::new();
    };
    let max = scores
        .iter()
        .map(|s| s.0)
        .max_by(f64::total_cmp)
        .unwrap_or(min);
    let width = nice_width(max - min);
    let lo = (min / width).floor();
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let count = (((max / width).floor() - lo) as usize + 1).min(1000);
    let mut buckets: Vec<Bucket> = (0..count)
        .map(|i| {
            #[allow(clippy::cast_precision_loss)]
            let from = (lo + i as f64) * width;
            Bucket {
                from: round2(from),
                to: round2(from + width),
                leads: 0,
                converted: 0,
            }
        })
        .collect();
    for (s, c) in scores {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let i = (((s / width).floor() - lo).max(0.0) as usize).min(count - 1);
        buckets[i].leads += 1;
        buckets[i].converted += u64::from(*c);
    }
    buckets
}

/// Conversion rate by score quartile: the leads ranked by score (equal scores in the order
/// given, never by whether they converted, which would invent a trend from ties) and cut
/// into four bands of equal count; band `i` holds ranks `n·i/4` to `n·(i+1)/4`. Fewer than
/// four leads give fewer bands, named in order.
pub fn bands(scores: &[(f64, bool)]) -> Vec<Band> {
    let mut sorted: Vec<(f64, bool)> = scores.to_vec();
    // stable: ties keep their order
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = sorted.len();
    let mut out = Vec::new();
    for i in 0..4 {
        let (start, end) = (n * i / 4, n * (i + 1) / 4);
        if end > start {
            let band = &sorted[start..end];
            let conv = band.iter().filter(|s| s.1).count() as u64;
            out.push(Band {
                band: format!("Q{}", out.len() + 1),
                min: band[0].0,
                max: band[band.len() - 1].0,
                rate: Rate::new(band.len() as u64, conv),
            });
        }
    }
    out
}

/// Computes the report over the final states of the leads.
pub fn report(program: &Program, leads: &[(&str, &LeadState)], options: &Options) -> Report {
    let total = leads.len() as u64;
    let conv: Vec<bool> = leads.iter().map(|(_, s)| converted(s)).collect();
    let converted_total = conv.iter().filter(|c| **c).count() as u64;

    // by source
    let mut sources: Vec<(Option<compact_str::CompactString>, u64, u64)> = Vec::new();
    for ((_, s), c) in leads.iter().zip(&conv) {
        match sources.iter_mut().find(|(k, _, _)| *k == s.source) {
            Some(row) => {
                row.1 += 1;
                row.2 += u64::from(*c);
            }
            None => sources.push((s.source.clone(), 1, u64::from(*c))),
        }
    }
    sources.sort_by(|a, b| {
        b.1.cmp(&a.1)
            .then_with(|| a.0.is_none().cmp(&b.0.is_none()))
            .then_with(|| a.0.cmp(&b.0))
    });
    let by_source = sources
        .iter()
        .map(|(k, n, c)| SourceRow {
            source: k.as_deref().map(str::to_owned),
            rate: Rate::new(*n, *c),
            small: *n < options.min_group,
        })
        .collect();

    // by stage
    let by_stage = program
        .stages
        .iter()
        .enumerate()
        .map(|(i, stage)| {
            let mut n = 0;
            let mut c = 0;
            for ((_, s), cv) in leads.iter().zip(&conv) {
                if s.reached.get(i).is_some_and(Option::is_some) {
                    n += 1;
                    c += u64::from(*cv);
                }
            }
            StageRow {
                stage: stage.name.clone(),
                share_of_leads: if total == 0 {
                    0.0
                } else {
                    round2(f(n) / f(total) * 100.0)
                },
                rate: Rate::new(n, c),
            }
        })
        .collect();

    // by a trait
    let by = options.by.as_ref().map(|path| {
        let mut groups: Vec<(Value, u64, u64)> = Vec::new();
        for ((_, s), c) in leads.iter().zip(&conv) {
            let v = trait_at(&s.profile, path).cloned().unwrap_or(Value::Null);
            match groups.iter_mut().find(|(k, _, _)| *k == v) {
                Some(row) => {
                    row.1 += 1;
                    row.2 += u64::from(*c);
                }
                None => groups.push((v, 1, u64::from(*c))),
            }
        }
        groups.sort_by(|a, b| value_order(&a.0, &b.0));
        // each group large enough against the rest of the leads (z > 0: the group converts
        // more than the rest), then Holm over those tests
        let tests: Vec<Option<(f64, f64)>> = groups
            .iter()
            .map(|(_, n, c)| {
                (*n >= options.min_group)
                    .then(|| two_proportion_z(converted_total - c, total - n, *c, *n))
                    .flatten()
            })
            .collect();
        let raw: Vec<f64> = tests.iter().flatten().map(|t| t.1).collect();
        let mut corrected = holm(&raw).into_iter();
        let p4 = |p: f64| (p * 10_000.0).round() / 10_000.0;
        let rows = groups
            .into_iter()
            .zip(tests)
            .map(|((value, n, c), test)| {
                let p_holm = test.and_then(|_| corrected.next()).map(p4);
                ByRow {
                    value,
                    rate: Rate::new(n, c),
                    small: n < options.min_group,
                    z: test.map(|t| round2(t.0)),
                    p_value: test.map(|t| p4(t.1)),
                    p_holm,
                    // on the p printed, so a row never shows `0.0500 *`
                    significant: p_holm.is_some_and(|p| p < 0.05),
                }
            })
            .collect();
        ByProperty {
            property: path.clone(),
            groups: rows,
        }
    });

    // time to convert
    #[allow(clippy::cast_precision_loss)]
    let secs: Vec<f64> = leads
        .iter()
        .filter_map(|(_, s)| seconds_to_convert(s))
        .map(|s| s as f64)
        .collect();
    // every lead first seen at one instant: the times are the import's, not the leads'
    let mut firsts = leads
        .iter()
        .filter(|(_, s)| s.events > 0)
        .map(|(_, s)| s.first_seen);
    let event_times = match firsts.next() {
        Some(first) => {
            let mut others = firsts.peekable();
            others.peek().is_none() || others.any(|t| t != first)
        }
        None => true,
    };
    let time_to_convert = TimeToConvert {
        converted: secs.len() as u64,
        median_seconds: if event_times { median(secs) } else { None },
    };

    // leads per week
    let mut weeks: Vec<WeekRow> = Vec::new();
    for ((_, s), c) in leads.iter().zip(&conv) {
        if s.events == 0 {
            continue;
        }
        let Some((week, starts)) = iso_week(s.first_seen) else {
            continue;
        };
        match weeks.iter_mut().find(|w| w.week == week) {
            Some(w) => {
                w.leads += 1;
                w.converted += u64::from(*c);
            }
            None => weeks.push(WeekRow {
                week,
                starts,
                leads: 1,
                converted: u64::from(*c),
            }),
        }
    }
    weeks.sort_by(|a, b| a.starts.cmp(&b.starts));
    if !event_times {
        weeks.clear();
    }

    // cost
    let cost = options.spend.as_ref().map(|spend| {
        let per = |x: f64, n: u64| (n > 0).then(|| round2(x / f(n)));
        let total_spend: f64 = spend.iter().map(|(_, s)| s).sum();
        let by_source = spend
            .iter()
            .map(|(src, amount)| {
                let (n, c) = sources
                    .iter()
                    .find(|(k, _, _)| k.as_deref() == Some(src.as_str()))
                    .map_or((0, 0), |r| (r.1, r.2));
                CostRow {
                    source: src.clone(),
                    spend: round2(*amount),
                    leads: n,
                    converted: c,
                    cost_per_lead: per(*amount, n),
                    cost_per_conversion: per(*amount, c),
                }
            })
            .collect();
        Cost {
            total_spend: round2(total_spend),
            cost_per_lead: per(total_spend, total),
            cost_per_conversion: per(total_spend, converted_total),
            by_source,
        }
    });

    // quality
    let scores: Vec<(f64, bool)> = leads
        .iter()
        .zip(&conv)
        .map(|((_, s), c)| (round2(s.score()), *c))
        .collect();
    let quality = Quality {
        score_min: scores.iter().map(|s| s.0).min_by(f64::total_cmp),
        score_max: scores.iter().map(|s| s.0).max_by(f64::total_cmp),
        score_median: median(scores.iter().map(|s| s.0).collect()).map(round2),
        histogram: histogram(&scores),
        bands: bands(&scores),
    };

    Report {
        ruleset: program.name.clone(),
        event_times,
        min_group: options.min_group,
        overall: Rate::new(total, converted_total),
        by_source,
        by_stage,
        by,
        time_to_convert,
        leads_per_week: weeks,
        cost,
        quality,
    }
}

/// Leads of one group of a comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Slice {
    /// Its rate (conversions as the first rule set counts them).
    #[serde(flatten)]
    pub rate: Rate,
    /// The first few ids, sorted.
    pub ids: Vec<String>,
}

/// Leads that reached a stage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageCount {
    /// The stage.
    pub stage: String,
    /// Leads that reached it.
    pub leads: u64,
}

/// One rule set in a comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SetSummary {
    /// The rule set's name.
    pub ruleset: String,
    /// Leads reaching each stage, in declaration order.
    pub reached: Vec<StageCount>,
    /// Its qualified leads and how many of them converted (its own conversions).
    pub qualified: Rate,
    /// The other leads.
    pub not_qualified: Rate,
    /// Share of all converted leads that it qualified, in percent (recall).
    pub found_of_converted: f64,
}

/// `compare`: the same history under two rule sets.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// What "qualified" means: the stage given, or null for any stage.
    pub stage: Option<String>,
    /// Leads in the history.
    pub leads: u64,
    /// The two sets, in the order given.
    pub sets: [SetSummary; 2],
    /// Qualified by both.
    pub both: Slice,
    /// Qualified by the first only.
    pub only_first: Slice,
    /// Qualified by the second only.
    pub only_second: Slice,
    /// Qualified by neither.
    pub neither: Slice,
    /// Leads that one set counts as converted and the other does not (their conversion rules
    /// differ); the groups above count the first set's conversions.
    pub conversions_differ: u64,
}

/// Why two rule sets cannot be compared.
#[derive(Debug, Clone, PartialEq)]
pub struct CompareError(pub String);

impl std::fmt::Display for CompareError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn qualified(program: &Program, state: &LeadState, stage: Option<&str>) -> bool {
    match stage {
        None => state.reached.iter().any(Option::is_some),
        Some(name) => program
            .stages
            .iter()
            .position(|s| s.name == name)
            .and_then(|i| state.reached.get(i))
            .is_some_and(Option::is_some),
    }
}

/// Compares two rule sets over the final states each gave the same history. A lead is
/// qualified when it reached `stage` (any stage when `None`).
pub fn compare(
    a: (&Program, &[(&str, &LeadState)]),
    b: (&Program, &[(&str, &LeadState)]),
    stage: Option<&str>,
) -> Result<Comparison, CompareError> {
    if let Some(name) = stage {
        for p in [a.0, b.0] {
            if !p.stages.iter().any(|s| s.name == name) {
                return Err(CompareError(format!(
                    "rule set `{}` has no stage `{name}`",
                    p.name
                )));
            }
        }
    }
    let mut ids: Vec<&str> = a.1.iter().chain(b.1).map(|(id, _)| *id).collect();
    ids.sort_unstable();
    ids.dedup();
    let find = |list: &[(&str, &LeadState)], id: &str| -> Option<usize> {
        list.binary_search_by(|(k, _)| (*k).cmp(id)).ok()
    };
    let mut la: Vec<(&str, &LeadState)> = a.1.to_vec();
    let mut lb: Vec<(&str, &LeadState)> = b.1.to_vec();
    la.sort_by(|x, y| x.0.cmp(y.0));
    lb.sort_by(|x, y| x.0.cmp(y.0));
    // per lead: (qualified by a, by b, converted under a, under b)
    let facts: Vec<(&str, bool, bool, bool, bool)> = ids
        .iter()
        .map(|id| {
            let sa = find(&la, id).map(|i| la[i].1);
            let sb = find(&lb, id).map(|i| lb[i].1);
            (
                *id,
                sa.is_some_and(|s| qualified(a.0, s, stage)),
                sb.is_some_and(|s| qualified(b.0, s, stage)),
                sa.is_some_and(converted),
                sb.is_some_and(converted),
            )
        })
        .collect();
    let summary = |program: &Program, list: &[(&str, &LeadState)], second: bool| {
        let reached = program
            .stages
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let n = list
                    .iter()
                    .filter(|(_, st)| st.reached.get(i).is_some_and(Option::is_some))
                    .count() as u64;
                StageCount {
                    stage: s.name.clone(),
                    leads: n,
                }
            })
            .collect();
        let (mut qn, mut qc, mut nn, mut nc, mut all_conv) = (0, 0, 0, 0, 0);
        for fact in &facts {
            let (q, c) = if second {
                (fact.2, fact.4)
            } else {
                (fact.1, fact.3)
            };
            all_conv += u64::from(c);
            if q {
                qn += 1;
                qc += u64::from(c);
            } else {
                nn += 1;
                nc += u64::from(c);
            }
        }
        SetSummary {
            ruleset: program.name.clone(),
            reached,
            qualified: Rate::new(qn, qc),
            not_qualified: Rate::new(nn, nc),
            found_of_converted: if all_conv == 0 {
                0.0
            } else {
                round2(f(qc) / f(all_conv) * 100.0)
            },
        }
    };
    let slice = |pick: &dyn Fn(bool, bool) -> bool| {
        let members: Vec<&(&str, bool, bool, bool, bool)> =
            facts.iter().filter(|x| pick(x.1, x.2)).collect();
        let conv = members.iter().filter(|x| x.3).count() as u64;
        Slice {
            rate: Rate::new(members.len() as u64, conv),
            ids: members
                .iter()
                .take(COMPARE_IDS)
                .map(|x| x.0.to_string())
                .collect(),
        }
    };
    Ok(Comparison {
        stage: stage.map(str::to_string),
        leads: facts.len() as u64,
        sets: [summary(a.0, &la, false), summary(b.0, &lb, true)],
        both: slice(&|x, y| x && y),
        only_first: slice(&|x, y| x && !y),
        only_second: slice(&|x, y| !x && y),
        neither: slice(&|x, y| !x && !y),
        conversions_differ: facts.iter().filter(|x| x.3 != x.4).count() as u64,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use leadscore_rules::eval::ConversionState;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn wilson_known_values() {
        // 4 of 9: Wilson 95% interval (0.1888, 0.7333)
        let (lo, hi) = wilson(4, 9).unwrap();
        assert!(close(lo, 0.1888, 1e-4), "{lo}");
        assert!(close(hi, 0.7333, 1e-4), "{hi}");
        // 0 of 10: (0, 0.2775)
        let (lo, hi) = wilson(0, 10).unwrap();
        assert_eq!(lo, 0.0);
        assert!(close(hi, 0.2775, 1e-4), "{hi}");
        // 10 of 10: (0.7225, 1)
        let (lo, hi) = wilson(10, 10).unwrap();
        assert!(close(lo, 0.7225, 1e-4), "{lo}");
        assert_eq!(hi, 1.0);
        // 50 of 100: (0.4038, 0.5962)
        let (lo, hi) = wilson(50, 100).unwrap();
        assert!(close(lo, 0.4038, 1e-4) && close(hi, 0.5962, 1e-4));
        assert_eq!(wilson(0, 0), None);
    }

    #[test]
    fn rate_in_percent() {
        let r = Rate::new(9, 4);
        assert_eq!(r.rate, 44.44);
        assert_eq!(r.ci95, Some([18.88, 73.33]));
        assert_eq!(Rate::new(0, 0).rate, 0.0);
        assert_eq!(Rate::new(0, 0).ci95, None);
    }

    #[test]
    fn erfc_known_values() {
        assert!(close(erfc(0.0), 1.0, 1e-7));
        assert!(close(erfc(1.0), 0.157_299_207, 1e-7));
        assert!(close(erfc(-1.0), 1.842_700_793, 1e-7));
        assert!(close(two_sided_p(1.959_964), 0.05, 1e-6));
        assert!(close(two_sided_p(2.575_829), 0.01, 1e-6));
    }

    #[test]
    fn z_test_known_values() {
        // 200/1000 against 250/1000: pooled 0.225, se 0.018675, z 2.6774, p 0.00742
        let (z, p) = two_proportion_z(200, 1000, 250, 1000).unwrap();
        assert!(close(z, 2.6774, 1e-3), "{z}");
        assert!(close(p, 0.00742, 1e-4), "{p}");
        // a lower second group gives a negative z, the same p
        let (z2, p2) = two_proportion_z(250, 1000, 200, 1000).unwrap();
        assert!(close(z2, -z, 1e-9) && close(p2, p, 1e-9));
        // equal rates: z 0, p 1
        let (z, p) = two_proportion_z(10, 100, 20, 200).unwrap();
        assert!(close(z, 0.0, 1e-12) && close(p, 1.0, 1e-6));
        assert_eq!(two_proportion_z(0, 10, 0, 10), None);
        assert_eq!(two_proportion_z(1, 0, 1, 10), None);
    }

    #[test]
    fn median_odd_even_empty() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(vec![7.0]), Some(7.0));
        assert_eq!(median(vec![]), None);
    }

    #[test]
    fn iso_weeks() {
        let t = |s: &str| leadscore_rules::time::parse_rfc3339(s).unwrap();
        // 2026-01-01 is a Thursday: week 1 of 2026 starts on Monday 2025-12-29
        assert_eq!(
            iso_week(t("2026-01-01T00:00:00Z")),
            Some(("2026-W01".into(), "2025-12-29".into()))
        );
        // 2021-01-03 (Sunday) still belongs to 2020-W53
        assert_eq!(
            iso_week(t("2021-01-03T23:59:59Z")),
            Some(("2020-W53".into(), "2020-12-28".into()))
        );
        assert_eq!(
            iso_week(t("2026-01-12T09:14:00Z")),
            Some(("2026-W03".into(), "2026-01-12".into()))
        );
        // 2024-12-30 (Monday) is week 1 of 2025
        assert_eq!(
            iso_week(t("2024-12-30T00:00:00Z")).map(|w| w.0),
            Some("2025-W01".into())
        );
    }

    #[test]
    fn nice_widths_and_histogram() {
        assert_eq!(nice_width(157.0), 20.0);
        assert_eq!(nice_width(10.0), 1.0);
        assert_eq!(nice_width(0.0), 1.0);
        assert_eq!(nice_width(45.0), 5.0);
        let h = histogram(&[(-45.0, false), (0.0, true), (12.5, false), (112.29, true)]);
        assert_eq!(h.first().map(|b| b.from), Some(-60.0));
        assert_eq!(h.last().map(|b| (b.from, b.to)), Some((100.0, 120.0)));
        assert_eq!(h.iter().map(|b| b.leads).sum::<u64>(), 4);
        assert_eq!(h.iter().map(|b| b.converted).sum::<u64>(), 2);
        let one = histogram(&[(5.0, true), (5.0, false)]);
        assert_eq!(one.len(), 1);
        assert_eq!((one[0].from, one[0].to, one[0].leads), (5.0, 6.0, 2));
    }

    #[test]
    fn bands_hold_equal_counts() {
        let scores: Vec<(f64, bool)> = (1..=8).map(|i| (f64::from(i), i > 4)).collect();
        let b = bands(&scores);
        assert_eq!(b.len(), 4);
        assert_eq!((b[0].min, b[0].max, b[0].rate.leads), (1.0, 2.0, 2));
        assert_eq!((b[3].min, b[3].max, b[3].rate.converted), (7.0, 8.0, 2));
        // many equal scores: still four bands of a quarter each, and the converted leads
        // among the ties are not pushed to the top band
        let tied: Vec<(f64, bool)> = (0..100).map(|i| (0.0, i % 5 == 0)).collect();
        let b = bands(&tied);
        let sizes: Vec<u64> = b.iter().map(|b| b.rate.leads).collect();
        assert_eq!(sizes, [25, 25, 25, 25]);
        let converted: Vec<u64> = b.iter().map(|b| b.rate.converted).collect();
        assert_eq!(converted, [5, 5, 5, 5]);
        // fewer than four leads: fewer bands
        let same = bands(&[(3.0, true), (3.0, false), (3.0, false)]);
        assert_eq!(same.iter().map(|b| b.rate.leads).sum::<u64>(), 3);
        assert_eq!(same.len(), 3);
        let names: Vec<&str> = same.iter().map(|b| b.band.as_str()).collect();
        assert_eq!(names, ["Q1", "Q2", "Q3"]);
    }

    #[test]
    fn holm_known_values() {
        // m = 3: 0.01·3, max(0.03, 0.04·2), max(0.08, 0.03·1) in the order given
        let adjusted = holm(&[0.04, 0.01, 0.03]);
        assert!(close(adjusted[1], 0.03, 1e-12));
        assert!(close(adjusted[2], 0.06, 1e-12));
        assert!(close(adjusted[0], 0.06, 1e-12));
        assert_eq!(holm(&[0.9, 0.8]), vec![1.0, 1.0]);
        assert!(holm(&[]).is_empty());
    }

    fn program(text: &str) -> Program {
        let files = vec![leadscore_rules::SourceFile {
            name: "t.rules".into(),
            text: text.into(),
        }];
        leadscore_rules::compile(&files).program.unwrap()
    }

    #[test]
    fn each_group_is_tested_against_the_rest_with_holm() {
        let p = program("ruleset \"t\"\nconversion \"Buy\" on Buy\n");
        let t0 = leadscore_rules::time::parse_rfc3339("2026-01-05T00:00:00Z").unwrap();
        // A: 40 leads, 30 converted; B: 40 leads, 10 converted; C: 3 leads, all converted
        let mut states = Vec::new();
        for (variant, n, conv) in [("A", 40, 30), ("B", 40, 10), ("C", 3, 3)] {
            for i in 0..n {
                let at = t0 + i64::from(i) * SECOND;
                let mut l = lead(None, at, (i < conv).then_some(at + SECOND), 0.0);
                l.profile.insert("variant".into(), Value::from(variant));
                states.push(l);
            }
        }
        let leads: Vec<(&str, &LeadState)> = states.iter().map(|s| ("x", s)).collect();
        let options = Options {
            by: Some("variant".into()),
            ..Options::default()
        };
        let by = report(&p, &leads, &options).by.unwrap();
        let (a, b, c) = (&by.groups[0], &by.groups[1], &by.groups[2]);
        // A (30/40) against the rest (13/43)
        let (z, pa) = two_proportion_z(13, 43, 30, 40).unwrap();
        assert_eq!(a.z, Some(round2(z)));
        assert!(z > 0.0, "A converts more than the rest");
        let (_, pb) = two_proportion_z(33, 43, 10, 40).unwrap();
        let adjusted = holm(&[pa, pb]);
        assert_eq!(a.p_holm, Some((adjusted[0] * 10_000.0).round() / 10_000.0));
        assert!(a.significant && b.significant);
        assert!(a.p_holm >= a.p_value);
        // C has 3 leads, under the default 30: marked, not tested, never significant
        assert!(c.small && c.z.is_none() && c.p_holm.is_none() && !c.significant);
    }

    #[test]
    fn one_instant_for_every_lead_means_no_event_times() {
        let p = program("ruleset \"t\"\nconversion \"Buy\" on Buy\n");
        let t0 = leadscore_rules::time::parse_rfc3339("2026-01-01T00:00:00Z").unwrap();
        let a = lead(Some("web"), t0, Some(t0 + SECOND), 0.0);
        let b = lead(Some("web"), t0, None, 0.0);
        let r = report(&p, &[("a", &a), ("b", &b)], &Options::default());
        assert!(!r.event_times);
        assert_eq!(r.time_to_convert.median_seconds, None);
        assert_eq!(r.time_to_convert.converted, 1);
        assert!(r.leads_per_week.is_empty());
        // one lead alone has its times
        assert!(report(&p, &[("a", &a)], &Options::default()).event_times);
    }

    fn lead(source: Option<&str>, first_seen: i64, conv_at: Option<i64>, fit: f64) -> LeadState {
        LeadState {
            source: source.map(Into::into),
            first_seen,
            last_seen: first_seen,
            events: 1,
            fit,
            reached: [(fit > 0.0).then_some(first_seen)].into_iter().collect(),
            conversions: [conv_at.map(|at| ConversionState {
                at,
                count: 1,
                value: 0.0,
            })]
            .into_iter()
            .collect(),
            ..LeadState::default()
        }
    }

    #[test]
    fn report_sections() {
        let p = program("ruleset \"t\"\nstage mql when fit > 0\nconversion \"Buy\" on Buy\n");
        let t0 = leadscore_rules::time::parse_rfc3339("2026-01-05T00:00:00Z").unwrap();
        let day = 86_400 * SECOND;
        let mut a = lead(Some("google"), t0, Some(t0 + day), 10.0);
        a.profile.insert("variant".into(), Value::from("A"));
        let mut b = lead(Some("google"), t0 + 7 * day, None, 0.0);
        b.profile.insert("variant".into(), Value::from("B"));
        let c = lead(None, t0, Some(t0 + 3 * day), 5.0);
        let leads = vec![("a", &a), ("b", &b), ("c", &c)];
        let r = report(
            &p,
            &leads,
            &Options {
                by: Some("variant".into()),
                spend: Some(vec![("google".into(), 100.0), ("bing".into(), 5.0)]),
                min_group: 2,
            },
        );
        assert_eq!(r.overall, Rate::new(3, 2));
        assert_eq!(r.by_source[0].source.as_deref(), Some("google"));
        assert_eq!(
            (r.by_source[0].rate.leads, r.by_source[0].rate.converted),
            (2, 1)
        );
        assert_eq!(r.by_source[1].source, None);
        assert_eq!(r.by_stage[0].rate, Rate::new(2, 2));
        assert_eq!(r.by_stage[0].share_of_leads, 66.67);
        let by = r.by.unwrap();
        let values: Vec<Value> = by.groups.iter().map(|g| g.value.clone()).collect();
        assert_eq!(
            values,
            vec![Value::from("A"), Value::from("B"), Value::Null]
        );
        // a group of one is small (min_group 2): not tested
        assert!(by.groups.iter().all(|g| g.small && g.p_value.is_none()));
        assert!(r.by_source[0].rate.leads == 2 && !r.by_source[0].small);
        assert!(r.by_source[1].small);
        assert!(r.event_times);
        assert_eq!(r.time_to_convert.median_seconds, Some(2.0 * 86_400.0));
        let weeks: Vec<(&str, u64)> = r
            .leads_per_week
            .iter()
            .map(|w| (w.week.as_str(), w.leads))
            .collect();
        assert_eq!(weeks, vec![("2026-W02", 2), ("2026-W03", 1)]);
        let cost = r.cost.unwrap();
        assert_eq!(cost.total_spend, 105.0);
        assert_eq!(cost.cost_per_lead, Some(35.0));
        assert_eq!(cost.cost_per_conversion, Some(52.5));
        assert_eq!(cost.by_source[0].cost_per_lead, Some(50.0));
        assert_eq!(cost.by_source[0].cost_per_conversion, Some(100.0));
        assert_eq!(cost.by_source[1].cost_per_lead, None);
        assert_eq!(r.quality.score_max, Some(10.0));
    }

    #[test]
    fn comparison_groups() {
        let p = program("ruleset \"t\"\nstage mql when fit > 0\nconversion \"Buy\" on Buy\n");
        let a1 = lead(None, 0, Some(5), 10.0);
        let a2 = lead(None, 0, None, 10.0);
        let a3 = lead(None, 0, Some(5), 0.0);
        let b1 = lead(None, 0, Some(5), 10.0);
        let b2 = lead(None, 0, None, 0.0);
        let b3 = lead(None, 0, Some(5), 10.0);
        let first = vec![("x", &a1), ("y", &a2), ("z", &a3)];
        let second = vec![("z", &b3), ("x", &b1), ("y", &b2)];
        let c = compare((&p, &first), (&p, &second), None).unwrap();
        assert_eq!(c.leads, 3);
        assert_eq!(c.sets[0].qualified, Rate::new(2, 1));
        assert_eq!(c.sets[1].qualified, Rate::new(2, 2));
        assert_eq!(c.sets[1].found_of_converted, 100.0);
        assert_eq!(c.both.ids, vec!["x"]);
        assert_eq!(c.only_first.ids, vec!["y"]);
        assert_eq!(c.only_second.ids, vec!["z"]);
        assert_eq!(c.neither.rate.leads, 0);
        assert_eq!(c.conversions_differ, 0);
        let err = compare((&p, &first), (&p, &second), Some("sql")).unwrap_err();
        assert_eq!(err.0, "rule set `t` has no stage `sql`");
    }
}
