//! Conditions for people: a compiled condition printed as it reads in rules
//! (`engagement >= 40 and fit >= 10`), and the value of each of its parts for one lead
//! (`leadscore explain`). Pure, like the rest of the crate.

use crate::eval::Ctx;
use crate::program::{AggKind, Expr, Pred, Program};
use crate::syntax::CmpOp;
use serde::Serialize;
use serde_json::Value;
use std::fmt;

/// Words of the language that an event property must be written `properties.x` to be read.
const KEYWORDS: [&str; 22] = [
    "and",
    "or",
    "not",
    "between",
    "in",
    "contains",
    "starts_with",
    "ends_with",
    "matches",
    "exists",
    "event",
    "reached",
    "count",
    "sum",
    "within",
    "of",
    "where",
    "value",
    "score",
    "fit",
    "engagement",
    "lead",
];

/// A condition ready to print as rules write it: `lead.plan == "trial"`,
/// `count("Feature Used") within 14d >= 10`. A regex prints without its `i` flag (the
/// compiled regex does not keep it).
pub struct ShowPred<'a> {
    /// The program (aggregates and stage names).
    pub program: &'a Program,
    /// The condition.
    pub pred: &'a Pred,
}

/// A value of a condition ready to print: `engagement`, `lead.company.employees`, `"demo"`.
pub struct ShowExpr<'a> {
    /// The program (aggregates).
    pub program: &'a Program,
    /// The value.
    pub expr: &'a Expr,
}

/// Prints a condition as rules write it.
pub fn show_pred(program: &Program, pred: &Pred) -> String {
    ShowPred { program, pred }.to_string()
}

/// Prints a value of a condition as rules write it.
pub fn show_expr(program: &Program, expr: &Expr) -> String {
    ShowExpr { program, expr }.to_string()
}

/// Prints a JSON value as a literal of the language: numbers without a needless `.0`,
/// strings quoted, lists as `["a", "b"]`.
pub fn show_value(v: &Value) -> String {
    match v {
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => {
                #[allow(clippy::cast_possible_truncation)]
                let i = f as i64;
                i.to_string()
            }
            Some(f) => {
                let r = (f * 100.0).round() / 100.0;
                if (r - f).abs() < 1e-9 {
                    r.to_string()
                } else {
                    format!("{f:.2}")
                }
            }
            None => n.to_string(),
        },
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(show_value).collect();
            format!("[{}]", parts.join(", "))
        }
        other => other.to_string(),
    }
}

fn path(segs: &[Box<str>]) -> String {
    segs.iter().map(|s| &**s).collect::<Vec<_>>().join(".")
}

impl fmt::Display for ShowExpr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.expr {
            Expr::Const(v) => f.write_str(&show_value(v)),
            Expr::Prop(segs) => {
                let needs_prefix = segs
                    .first()
                    .is_some_and(|s| KEYWORDS.contains(&&**s) || &**s == "properties");
                if needs_prefix {
                    f.write_str("properties.")?;
                }
                f.write_str(&path(segs))
            }
            Expr::Trait(segs) => write!(f, "lead.{}", path(segs)),
            Expr::Score => f.write_str("score"),
            Expr::Fit => f.write_str("fit"),
            Expr::Engagement => f.write_str("engagement"),
            Expr::Agg(i) => {
                let Some(agg) = self.program.aggregates.get(*i) else {
                    return write!(f, "aggregate #{i}");
                };
                let filter = agg
                    .filter
                    .as_ref()
                    .map(|p| format!(" where {}", show_where(self.program, p)))
                    .unwrap_or_default();
                let within = crate::format_duration(agg.within);
                match &agg.kind {
                    AggKind::Count { .. } => {
                        write!(f, "count({}{filter}) within {within}", agg.on.describe())
                    }
                    AggKind::Sum { property } => write!(
                        f,
                        "sum({} of {}{filter}) within {within}",
                        path(property),
                        agg.on.describe()
                    ),
                }
            }
        }
    }
}

/// A `where` condition: one comparison as is, anything else in parentheses.
fn show_where(program: &Program, p: &Pred) -> String {
    let text = show_pred(program, p);
    if is_leaf(p) {
        text
    } else {
        format!("({text})")
    }
}

fn is_leaf(p: &Pred) -> bool {
    !matches!(p, Pred::And(_) | Pred::Or(_) | Pred::Not(_))
}

impl fmt::Display for ShowPred<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let program = self.program;
        let e = |expr: &Expr| show_expr(program, expr);
        match self.pred {
            Pred::Const(b) => write!(f, "{b}"),
            Pred::And(ps) => {
                let parts: Vec<String> = ps
                    .iter()
                    .map(|p| match p {
                        Pred::Or(_) => format!("({})", show_pred(program, p)),
                        _ => show_pred(program, p),
                    })
                    .collect();
                f.write_str(&parts.join(" and "))
            }
            Pred::Or(ps) => {
                let parts: Vec<String> = ps.iter().map(|p| show_pred(program, p)).collect();
                f.write_str(&parts.join(" or "))
            }
            Pred::Not(p) => match &**p {
                Pred::Cmp(CmpOp::Eq, a, b) => write!(f, "not ({} == {})", e(a), e(b)),
                inner if is_leaf(inner) && !matches!(inner, Pred::Cmp(..)) => {
                    write!(f, "not {}", show_pred(program, inner))
                }
                inner => write!(f, "not ({})", show_pred(program, inner)),
            },
            Pred::Cmp(op, a, b) => write!(f, "{} {} {}", e(a), op.as_str(), e(b)),
            Pred::Matches(a, re) => write!(f, "{} matches /{}/", e(a), re.as_str()),
            Pred::Between(x, lo, hi) => write!(f, "{} between {} and {}", e(x), e(lo), e(hi)),
            Pred::In(x, list) => write!(f, "{} in {}", e(x), e(list)),
            Pred::Exists(x) => write!(f, "{} exists", e(x)),
            Pred::Truthy(x) => f.write_str(&e(x)),
            Pred::Event(m, filter) => {
                write!(f, "event {}", m.describe())?;
                if let Some(p) = filter {
                    write!(f, " where {}", show_where(program, p))?;
                }
                Ok(())
            }
            Pred::Reached(i) => match program.stages.get(*i) {
                Some(s) => write!(f, "reached {}", s.name),
                None => write!(f, "reached #{i}"),
            },
        }
    }
}

/// One value a condition read: what it is (`engagement`, `lead.plan`) and its value
/// (`None`: missing).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReadValue {
    /// The value as written in the rules.
    pub name: String,
    /// Its value at that point; `None` when missing.
    pub value: Option<Value>,
}

/// A part of a condition and whether it held: `and`, `or` and `not` have parts; every other
/// condition is a leaf that lists the values it read (constants left out).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PredNode {
    /// The part as written (`engagement >= 40`).
    pub text: String,
    /// Whether it held.
    pub holds: bool,
    /// The values it read (leaves only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<ReadValue>,
    /// Its parts (`and`, `or`, `not` only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<PredNode>,
}

impl PredNode {
    /// The leaves, depth first: each comparison, `event` and `reached` with its value.
    pub fn leaves(&self) -> Vec<&PredNode> {
        if self.parts.is_empty() {
            return vec![self];
        }
        self.parts.iter().flat_map(PredNode::leaves).collect()
    }
}

/// Evaluates a condition part by part: whether the whole and each part holds in `ctx`, and
/// the values each leaf read.
pub fn explain_pred<'a>(ctx: &Ctx<'a>, program: &Program, pred: &'a Pred) -> PredNode {
    let text = show_pred(program, pred);
    let holds = ctx.holds(pred);
    let node = |values: Vec<ReadValue>, parts: Vec<PredNode>| PredNode {
        text: text.clone(),
        holds,
        values,
        parts,
    };
    let read = |exprs: &[&'a Expr]| -> Vec<ReadValue> {
        exprs
            .iter()
            .filter(|x| !matches!(x, Expr::Const(_)))
            .map(|x| ReadValue {
                name: show_expr(program, x),
                value: ctx.value_json(x),
            })
            .collect()
    };
    match pred {
        Pred::And(ps) | Pred::Or(ps) => node(
            Vec::new(),
            ps.iter().map(|p| explain_pred(ctx, program, p)).collect(),
        ),
        Pred::Not(p) => node(Vec::new(), vec![explain_pred(ctx, program, p)]),
        Pred::Cmp(_, a, b) => node(read(&[a, b]), Vec::new()),
        Pred::Matches(a, _) | Pred::Exists(a) | Pred::Truthy(a) => node(read(&[a]), Vec::new()),
        Pred::Between(x, lo, hi) => node(read(&[x, lo, hi]), Vec::new()),
        Pred::In(x, list) => node(read(&[x, list]), Vec::new()),
        Pred::Const(_) | Pred::Event(..) | Pred::Reached(_) => node(Vec::new(), Vec::new()),
    }
}
