//! `text → syntax`: splits a rules file into top-level items, parses each with the pest
//! grammar (`rules.pest`) and builds the syntax tree. A broken item is reported and skipped,
//! so one run reports every broken item of every file.

use crate::diagnostic::{Code, Diagnostic, Span};
use pest::iterators::Pair;
use pest::Parser as _;

mod parser {
    #![allow(missing_docs)]
    /// The pest parser generated from `rules.pest`.
    #[derive(pest_derive::Parser)]
    #[grammar = "rules.pest"]
    pub struct RulesParser;
}
use parser::{Rule, RulesParser};

/// A name as written: a quoted string or an identifier.
#[derive(Debug, Clone, PartialEq)]
pub struct Name {
    /// The name without quotes.
    pub text: String,
    /// Where it is written.
    pub span: Span,
}

/// What an event pattern matches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PatternKind {
    /// A page call (`page`).
    Page,
    /// A screen call (`screen`).
    Screen,
    /// A track event of this name.
    Track(String),
}

/// An event pattern with its place.
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern {
    /// What it matches.
    pub kind: PatternKind,
    /// Where it is written.
    pub span: Span,
}

/// A duration literal (`30m`, `7d`).
#[derive(Debug, Clone, PartialEq)]
pub struct Duration {
    /// Its length in microseconds.
    pub micros: i64,
    /// Where it is written.
    pub span: Span,
}

/// A dotted name (`lead.company.employees`, `form`).
#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    /// The segments.
    pub segments: Vec<String>,
    /// Where it is written.
    pub span: Span,
}

impl Path {
    /// The path as written (`lead.title`).
    pub fn dotted(&self) -> String {
        self.segments.join(".")
    }
}

/// A literal value.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// A number.
    Number(f64),
    /// A string.
    String(String),
    /// `true` or `false`.
    Bool(bool),
    /// A list of literals.
    List(Vec<Literal>),
    /// A regular expression (`/.../` with optional `i`).
    Regex {
        /// The pattern between the slashes.
        source: String,
        /// Case-insensitive (`i` flag).
        ignore_case: bool,
    },
    /// A duration in microseconds.
    Duration(i64),
}

/// A value in a condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// A literal.
    Literal(Literal, Span),
    /// A name: an event property, `lead.x`, or a score.
    Path(Path),
    /// `count(PATTERN [where COND]) within D`.
    Count {
        /// The events counted.
        pattern: Pattern,
        /// Which of them.
        filter: Option<Box<Cond>>,
        /// The window.
        within: Duration,
        /// The whole aggregate.
        span: Span,
    },
    /// `sum(PROP of PATTERN [where COND]) within D`.
    Sum {
        /// The numeric property summed.
        property: Path,
        /// The events summed over.
        pattern: Pattern,
        /// Which of them.
        filter: Option<Box<Cond>>,
        /// The window.
        within: Duration,
        /// The whole aggregate.
        span: Span,
    },
}

impl Operand {
    /// Where the operand is written.
    pub fn span(&self) -> Span {
        match self {
            Operand::Literal(_, span) => *span,
            Operand::Path(path) => path.span,
            Operand::Count { span, .. } | Operand::Sum { span, .. } => *span,
        }
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `contains`
    Contains,
    /// `starts_with`
    StartsWith,
    /// `ends_with`
    EndsWith,
    /// `matches`
    Matches,
}

impl CmpOp {
    /// The operator as written.
    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Contains => "contains",
            CmpOp::StartsWith => "starts_with",
            CmpOp::EndsWith => "ends_with",
            CmpOp::Matches => "matches",
        }
    }
}

/// What a comparison tests about its left operand.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    /// `between LOW and HIGH` (inclusive).
    Between(Operand, Operand),
    /// `in LIST`.
    In(Operand),
    /// `exists`.
    Exists,
    /// A binary operator and its right operand.
    Cmp(CmpOp, Operand),
}

/// A condition.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // syntax trees are built once per rule set
pub enum Cond {
    /// All must hold.
    And(Vec<Cond>),
    /// One must hold.
    Or(Vec<Cond>),
    /// Must not hold.
    Not(Box<Cond>),
    /// A value and what is tested about it (no test: the value is `true`).
    Compare {
        /// The tested value.
        left: Operand,
        /// The test; `None` means "is `true`".
        test: Option<Test>,
        /// The whole comparison.
        span: Span,
    },
    /// `event PATTERN [where ...]`: the event being processed matches.
    Event {
        /// The pattern.
        pattern: Pattern,
        /// Its filter.
        filter: Option<Box<Cond>>,
        /// The whole predicate.
        span: Span,
    },
    /// `reached STAGE`.
    Reached(Name),
}

/// `once` or `limit N per D`.
#[derive(Debug, Clone, PartialEq)]
pub enum Modifier {
    /// At most once per lead, ever.
    Once(Span),
    /// At most `count` awards in any window of `per`.
    Limit {
        /// N, as written.
        count: f64,
        /// Where N is written.
        count_span: Span,
        /// The period.
        per: Duration,
    },
}

/// What a notification waits for.
#[derive(Debug, Clone, PartialEq)]
pub enum NotifyOn {
    /// `reached STAGE`.
    Reached(Name),
    /// `converted [NAME]`.
    Converted(Option<Name>),
}

/// A top-level item.
#[derive(Debug, Clone, PartialEq)]
pub enum ItemKind {
    /// `ruleset "name"`.
    Ruleset(Name),
    /// `fit NAME POINTS when COND`.
    Fit {
        /// The rule's name.
        name: Name,
        /// The points.
        points: f64,
        /// The condition on the profile.
        cond: Cond,
    },
    /// `score NAME POINTS on PATTERN [where COND] [once | limit N per D]`.
    Score {
        /// The rule's name.
        name: Name,
        /// The points.
        points: f64,
        /// The events it scores.
        pattern: Pattern,
        /// Its filter.
        filter: Option<Cond>,
        /// `once` or `limit`.
        modifier: Option<Modifier>,
    },
    /// `decay engagement half_life D`.
    Decay(Duration),
    /// `cap engagement at N`.
    Cap(f64, Span),
    /// `floor engagement at N`.
    Floor(f64, Span),
    /// `stage NAME when COND`.
    Stage {
        /// The stage's name.
        name: Name,
        /// When it is reached.
        cond: Cond,
    },
    /// `conversion NAME on PATTERN [where COND] [value PROP]`.
    Conversion {
        /// The conversion's name.
        name: Name,
        /// The events that convert.
        pattern: Pattern,
        /// Their filter.
        filter: Option<Cond>,
        /// The property that holds the value.
        value: Option<Path>,
    },
    /// `notify TARGET when ...`.
    Notify {
        /// The target's name.
        target: Name,
        /// What it waits for.
        on: NotifyOn,
    },
}

/// A top-level item with its place.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// What it is.
    pub kind: ItemKind,
    /// The whole item (without trailing comments).
    pub span: Span,
    /// The keyword.
    pub keyword_span: Span,
}

/// One rules file, parsed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SyntaxFile {
    /// The items that parsed.
    pub items: Vec<Item>,
}

/// A chunk of source text holding one top-level item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    /// Byte offset of the item's first character.
    pub start: usize,
    /// Byte offset one past the chunk's end.
    pub end: usize,
}

/// Splits a file into item chunks: an item starts at column 1 with a character that is not
/// whitespace or `#`; indented lines, blank lines and comment lines continue it. Reports
/// indented text that comes before any item.
pub fn split_items(file: usize, source: &str, diags: &mut Vec<Diagnostic>) -> Vec<Chunk> {
    let mut chunks: Vec<Chunk> = Vec::new();
    let mut offset = 0usize;
    for line in source.split_inclusive('\n') {
        let first = line.chars().next();
        let starts_item = matches!(first, Some(c) if !c.is_whitespace() && c != '#');
        if starts_item {
            if let Some(last) = chunks.last_mut() {
                last.end = offset;
            }
            chunks.push(Chunk {
                start: offset,
                end: source.len(),
            });
        } else if chunks.is_empty() {
            let trimmed = line.trim_start();
            if !trimmed.is_empty() && !trimmed.starts_with('#') {
                let indent = line.len() - trimmed.len();
                let text_len = trimmed.trim_end().len();
                diags.push(
                    Diagnostic::error(
                        Code::Syntax,
                        "an indented line must continue an item".to_string(),
                        Span::new(file, offset + indent, offset + indent + text_len),
                    )
                    .with_help("start the item at the beginning of the line"),
                );
            }
        }
        offset += line.len();
    }
    chunks
}

/// How deep a condition may nest: open parentheses and brackets, plus every `not` before
/// them. Deeper items are refused with a diagnostic before they are parsed, so no stage
/// (parser, compiler, formatter) recurses without bound on hostile input.
pub const MAX_NESTING: usize = 32;

/// Where an item first nests deeper than [`MAX_NESTING`] (a `#` in a string or a regex is
/// not a comment, a `(` there is not a parenthesis).
fn too_deep(file: usize, base: usize, text: &str) -> Option<Diagnostic> {
    use crate::format::{lex, TokKind};
    let mut open = 0usize;
    let mut nots = 0usize;
    for t in lex(text, 0) {
        match (t.kind, text.get(t.start..t.end)) {
            (TokKind::Punct, Some("(" | "[")) => open += 1,
            (TokKind::Punct, Some(")" | "]")) => open = open.saturating_sub(1),
            (TokKind::Word, Some("not")) => nots += 1,
            _ => continue,
        }
        if open + nots > MAX_NESTING {
            let mut d = Diagnostic::error(
                Code::Syntax,
                format!("this condition nests more than {MAX_NESTING} levels deep"),
                Span::new(file, base + t.start, base + t.end),
            );
            d.help = Some(
                "parentheses and `not` count as levels: split the rule, or write a list with `in`"
                    .into(),
            );
            return Some(d);
        }
    }
    None
}

/// Parses one rules file into items; broken items become diagnostics.
pub fn parse_file(file: usize, source: &str, diags: &mut Vec<Diagnostic>) -> SyntaxFile {
    let mut out = SyntaxFile::default();
    for chunk in split_items(file, source, diags) {
        let text = &source[chunk.start..chunk.end];
        if let Some(d) = too_deep(file, chunk.start, text) {
            diags.push(d);
            continue;
        }
        match RulesParser::parse(Rule::item, text) {
            Ok(mut pairs) => {
                let Some(item) = pairs.next() else { continue };
                let builder = Builder {
                    file,
                    base: chunk.start,
                };
                match builder.item(item) {
                    Ok(item) => out.items.push(item),
                    Err(diag) => diags.push(diag),
                }
            }
            Err(err) => diags.push(pest_error(file, chunk.start, text, &err)),
        }
    }
    out
}

fn pest_error(file: usize, base: usize, text: &str, err: &pest::error::Error<Rule>) -> Diagnostic {
    use pest::error::{ErrorVariant, InputLocation};
    let pos = match err.location {
        InputLocation::Pos(p) => p,
        InputLocation::Span((a, _)) => a,
    }
    .min(text.len());
    // When only blanks and comments follow, the item ended too early: point just after its
    // last word, not at the start of the next line (which belongs to the next item).
    let pos = if is_trivia(&text[pos..]) {
        content_end(&text[..pos])
    } else {
        pos
    };
    let rest = &text[pos..];
    let found = found_token(rest);
    let end = pos
        + found
            .len()
            .max(if rest.is_empty() { 0 } else { 1 })
            .min(rest.len());
    let mut expected: Vec<String> = match &err.variant {
        ErrorVariant::ParsingError { positives, .. } => positives
            .iter()
            .filter_map(|r| describe(*r))
            .map(str::to_string)
            .collect(),
        ErrorVariant::CustomError { message } => vec![message.clone()],
    };
    expected.sort();
    expected.dedup();
    let found_text = if found.is_empty() {
        "the end of the item".to_string()
    } else {
        format!("`{found}`")
    };
    let message = if expected.is_empty() {
        format!("unexpected {found_text}")
    } else {
        format!("expected {}, found {found_text}", join_or(&expected))
    };
    let span = Span::new(file, base + pos, base + end);
    if found.starts_with(|c: char| c.is_ascii_digit())
        && expected.len() == 1
        && describe(Rule::duration) == Some(expected[0].as_str())
    {
        return Diagnostic::error(
            Code::BadLiteral,
            format!("invalid duration `{found}`"),
            span,
        )
        .with_help(
            "durations are a whole number and a unit: s, m (minutes), h, d, w; for a month write `30d`",
        );
    }
    if found.starts_with(|c: char| c.is_ascii_digit())
        && expected.len() == 1
        && [describe(Rule::number), describe(Rule::points)].contains(&Some(expected[0].as_str()))
    {
        return Diagnostic::error(Code::BadLiteral, format!("invalid number `{found}`"), span)
            .with_help("numbers are written like `40`, `-2.5` or `0.75`");
    }
    let mut diag = Diagnostic::error(Code::Syntax, message, span);
    if pos == 0 {
        let word = found.to_string();
        let keywords = [
            "ruleset",
            "fit",
            "score",
            "decay",
            "cap",
            "floor",
            "stage",
            "conversion",
            "notify",
        ];
        if let Some(best) = crate::diagnostic::did_you_mean(&word, keywords.iter().copied()) {
            diag = diag.with_help(format!("did you mean `{best}`?"));
        } else {
            diag = diag.with_help(
                "an item starts with `ruleset`, `fit`, `score`, `decay`, `cap`, `floor`, `stage`, `conversion` or `notify`; continuation lines are indented",
            );
        }
    } else if rest.starts_with('\'') {
        diag = diag.with_help("strings are written in double quotes: \"...\"");
    } else if rest.starts_with('=') && !rest.starts_with("==") {
        diag = diag.with_help("to compare, write `==`");
    }
    diag
}

/// Whether a text holds only blanks and comments.
fn is_trivia(text: &str) -> bool {
    text.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#')
    })
}

/// The end of the last line of `text` that is not blank or a comment line, without its
/// trailing blanks.
fn content_end(text: &str) -> usize {
    let mut text = text.trim_end();
    loop {
        let line_start = text.rfind('\n').map_or(0, |i| i + 1);
        if line_start > 0 && text[line_start..].trim_start().starts_with('#') {
            text = text[..line_start].trim_end();
        } else {
            return text.len();
        }
    }
}

fn found_token(rest: &str) -> &str {
    let rest_trim = rest;
    let first = match rest_trim.chars().next() {
        Some(c) => c,
        None => return "",
    };
    if first.is_alphanumeric() || first == '_' {
        let end = rest_trim
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(rest_trim.len());
        &rest_trim[..end]
    } else if first == '\n' {
        ""
    } else {
        &rest_trim[..first.len_utf8()]
    }
}

fn join_or(items: &[String]) -> String {
    match items.len() {
        0 => String::new(),
        1 => items[0].clone(),
        n => format!("{} or {}", items[..n - 1].join(", "), items[n - 1]),
    }
}

fn describe(rule: Rule) -> Option<&'static str> {
    Some(match rule {
        Rule::EOI => "the end of the item",
        Rule::item => "an item",
        Rule::kw_ruleset | Rule::ruleset_item => "`ruleset`",
        Rule::kw_fit | Rule::fit_item => "`fit`",
        Rule::kw_score | Rule::score_item => "`score`",
        Rule::kw_decay | Rule::decay_item => "`decay`",
        Rule::kw_cap | Rule::cap_item => "`cap`",
        Rule::kw_floor | Rule::floor_item => "`floor`",
        Rule::kw_stage | Rule::stage_item => "`stage`",
        Rule::kw_conversion | Rule::conversion_item => "`conversion`",
        Rule::kw_notify | Rule::notify_item => "`notify`",
        Rule::kw_when => "`when`",
        Rule::kw_on => "`on`",
        Rule::kw_where | Rule::where_clause => "`where`",
        Rule::modifier | Rule::once | Rule::kw_once => "`once`",
        Rule::limit | Rule::kw_limit => "`limit`",
        Rule::kw_per => "`per`",
        Rule::kw_engagement => "`engagement`",
        Rule::kw_half_life => "`half_life`",
        Rule::kw_at => "`at`",
        Rule::kw_value | Rule::value_clause => "`value`",
        Rule::notify_reached | Rule::kw_reached => "`reached`",
        Rule::notify_converted | Rule::kw_converted => "`converted`",
        Rule::rule_name => "a name (\"...\")",
        Rule::pattern | Rule::page_pattern | Rule::screen_pattern => {
            "an event (`page`, `screen` or \"Event Name\")"
        }
        Rule::cond | Rule::and_cond | Rule::not_cond | Rule::primary | Rule::negation => {
            "a condition"
        }
        Rule::paren_cond => "`(`",
        Rule::event_pred | Rule::kw_event => "`event`",
        Rule::reached_pred => "`reached`",
        Rule::comparison | Rule::operand => "a value",
        Rule::where_one => "a comparison or a condition in parentheses",
        Rule::test | Rule::cmp_test | Rule::cmp_op => "an operator (`==`, `>=`, `contains`, ...)",
        Rule::between_test | Rule::kw_between => "`between`",
        Rule::in_test | Rule::kw_in => "`in`",
        Rule::exists_test | Rule::kw_exists => "`exists`",
        Rule::count_agg | Rule::kw_count => "`count(...)`",
        Rule::sum_agg | Rule::kw_sum => "`sum(...)`",
        Rule::kw_of => "`of`",
        Rule::kw_within => "`within`",
        Rule::literal => "a literal",
        Rule::list => "a list",
        Rule::boolean | Rule::kw_true | Rule::kw_false => "`true` or `false`",
        Rule::path | Rule::path_head | Rule::path_seg => "a name",
        Rule::ident | Rule::ident_raw => "a name",
        Rule::points => "points (`+10`, `-5`)",
        Rule::number => "a number",
        Rule::duration => "a duration (`30m`, `12h`, `7d`, `2w`)",
        Rule::string | Rule::string_body | Rule::escape => "a string (\"...\")",
        Rule::regex | Rule::regex_body | Rule::regex_flags => "a regex (`/.../`)",
        Rule::kw_or => "`or`",
        Rule::kw_and => "`and`",
        Rule::kw_not => "`not`",
        Rule::kw_page => "`page`",
        Rule::kw_screen => "`screen`",
        Rule::kw_contains => "`contains`",
        Rule::kw_starts_with => "`starts_with`",
        Rule::kw_ends_with => "`ends_with`",
        Rule::kw_matches => "`matches`",
        _ => return None,
    })
}

/// Builds syntax nodes from pest pairs of one chunk.
struct Builder {
    file: usize,
    base: usize,
}

type Built<T> = Result<T, Diagnostic>;

impl Builder {
    fn span(&self, pair: &Pair<'_, Rule>) -> Span {
        let s = pair.as_span();
        Span::new(self.file, self.base + s.start(), self.base + s.end())
    }

    fn item(&self, pair: Pair<'_, Rule>) -> Built<Item> {
        let span = self.span(&pair);
        let Some(inner) = pair.into_inner().next() else {
            return Err(self.internal(span));
        };
        let item_span = self.span(&inner);
        let rule = inner.as_rule();
        let mut parts = inner.into_inner();
        let keyword = parts.next().ok_or_else(|| self.internal(item_span))?;
        let keyword_span = self.span(&keyword);
        let mut next = |what: Span| parts.next().ok_or_else(|| self.internal(what));
        let kind = match rule {
            Rule::ruleset_item => ItemKind::Ruleset(self.string_name(next(item_span)?)?),
            Rule::fit_item => {
                let name = self.rule_name(next(item_span)?)?;
                let points = self.number(next(item_span)?)?;
                let _when = next(item_span)?;
                let cond = self.cond(next(item_span)?)?;
                ItemKind::Fit { name, points, cond }
            }
            Rule::score_item => {
                let name = self.rule_name(next(item_span)?)?;
                let points = self.number(next(item_span)?)?;
                let _on = next(item_span)?;
                let pattern = self.pattern(next(item_span)?)?;
                let mut filter = None;
                let mut modifier = None;
                for part in parts.by_ref() {
                    match part.as_rule() {
                        Rule::where_clause => filter = Some(self.where_clause(part)?),
                        Rule::modifier => modifier = Some(self.modifier(part)?),
                        _ => return Err(self.internal(item_span)),
                    }
                }
                ItemKind::Score {
                    name,
                    points,
                    pattern,
                    filter,
                    modifier,
                }
            }
            Rule::decay_item => {
                let _eng = next(item_span)?;
                let _hl = next(item_span)?;
                ItemKind::Decay(self.duration(next(item_span)?)?)
            }
            Rule::cap_item | Rule::floor_item => {
                let _eng = next(item_span)?;
                let _at = next(item_span)?;
                let n = next(item_span)?;
                let nspan = self.span(&n);
                let value = self.number(n)?;
                if rule == Rule::cap_item {
                    ItemKind::Cap(value, nspan)
                } else {
                    ItemKind::Floor(value, nspan)
                }
            }
            Rule::stage_item => {
                let name = self.ident(next(item_span)?);
                let _when = next(item_span)?;
                let cond = self.cond(next(item_span)?)?;
                ItemKind::Stage { name, cond }
            }
            Rule::conversion_item => {
                let name = self.rule_name(next(item_span)?)?;
                let _on = next(item_span)?;
                let pattern = self.pattern(next(item_span)?)?;
                let mut filter = None;
                let mut value = None;
                for part in parts.by_ref() {
                    match part.as_rule() {
                        Rule::where_clause => filter = Some(self.where_clause(part)?),
                        Rule::value_clause => {
                            let mut it = part.into_inner();
                            let _kw = it.next();
                            let p = it.next().ok_or_else(|| self.internal(item_span))?;
                            value = Some(self.path(p));
                        }
                        _ => return Err(self.internal(item_span)),
                    }
                }
                ItemKind::Conversion {
                    name,
                    pattern,
                    filter,
                    value,
                }
            }
            Rule::notify_item => {
                let target = self.ident(next(item_span)?);
                let _when = next(item_span)?;
                let on_pair = next(item_span)?;
                let on_rule = on_pair.as_rule();
                let mut it = on_pair.into_inner();
                let _kw = it.next();
                let on = match on_rule {
                    Rule::notify_reached => {
                        let stage = it.next().ok_or_else(|| self.internal(item_span))?;
                        NotifyOn::Reached(self.ident(stage))
                    }
                    _ => match it.next() {
                        Some(n) => NotifyOn::Converted(Some(self.rule_name(n)?)),
                        None => NotifyOn::Converted(None),
                    },
                };
                ItemKind::Notify { target, on }
            }
            _ => return Err(self.internal(item_span)),
        };
        Ok(Item {
            kind,
            span: item_span,
            keyword_span,
        })
    }

    fn internal(&self, span: Span) -> Diagnostic {
        Diagnostic::error(
            Code::Syntax,
            "this item could not be read".to_string(),
            span,
        )
    }

    fn where_clause(&self, pair: Pair<'_, Rule>) -> Built<Cond> {
        let span = self.span(&pair);
        let mut it = pair.into_inner();
        let _kw = it.next();
        let cond = it.next().ok_or_else(|| self.internal(span))?;
        self.cond(cond)
    }

    fn modifier(&self, pair: Pair<'_, Rule>) -> Built<Modifier> {
        let span = self.span(&pair);
        let inner = pair
            .into_inner()
            .next()
            .ok_or_else(|| self.internal(span))?;
        match inner.as_rule() {
            Rule::once => Ok(Modifier::Once(self.span(&inner))),
            _ => {
                let mut it = inner.into_inner();
                let _kw = it.next();
                let n = it.next().ok_or_else(|| self.internal(span))?;
                let count_span = self.span(&n);
                let count = self.number(n)?;
                let _per = it.next();
                let d = it.next().ok_or_else(|| self.internal(span))?;
                let per = self.duration(d)?;
                Ok(Modifier::Limit {
                    count,
                    count_span,
                    per,
                })
            }
        }
    }

    fn string_name(&self, pair: Pair<'_, Rule>) -> Built<Name> {
        let span = self.span(&pair);
        Ok(Name {
            text: self.string(pair)?,
            span,
        })
    }

    fn rule_name(&self, pair: Pair<'_, Rule>) -> Built<Name> {
        let span = self.span(&pair);
        let inner = pair
            .into_inner()
            .next()
            .ok_or_else(|| self.internal(span))?;
        match inner.as_rule() {
            Rule::string => Ok(Name {
                text: self.string(inner)?,
                span,
            }),
            _ => Ok(Name {
                text: inner.as_str().to_string(),
                span,
            }),
        }
    }

    fn ident(&self, pair: Pair<'_, Rule>) -> Name {
        Name {
            text: pair.as_str().to_string(),
            span: self.span(&pair),
        }
    }

    fn string(&self, pair: Pair<'_, Rule>) -> Built<String> {
        let span = self.span(&pair);
        let body = pair.into_inner().next().map(|p| p.as_str()).unwrap_or("");
        let mut out = String::with_capacity(body.len());
        let mut chars = body.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some(other) => out.push(other),
                    None => return Err(self.internal(span)),
                }
            } else {
                out.push(c);
            }
        }
        Ok(out)
    }

    fn number(&self, pair: Pair<'_, Rule>) -> Built<f64> {
        let span = self.span(&pair);
        let text = pair.as_str().trim_start_matches('+');
        text.parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
            .ok_or_else(|| {
                Diagnostic::error(
                    Code::BadLiteral,
                    format!("`{}` is not a number", pair.as_str()),
                    span,
                )
            })
    }

    fn duration(&self, pair: Pair<'_, Rule>) -> Built<Duration> {
        let span = self.span(&pair);
        let text = pair.as_str();
        let (digits, unit) = text.split_at(text.len().saturating_sub(1));
        let n: i64 = digits.parse().map_err(|_| {
            Diagnostic::error(
                Code::BadLiteral,
                format!("`{text}` is not a duration"),
                span,
            )
        })?;
        let unit_secs: i64 = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => 604_800,
        };
        let micros = n
            .checked_mul(unit_secs)
            .and_then(|s| s.checked_mul(1_000_000))
            .filter(|m| *m > 0)
            .ok_or_else(|| {
                Diagnostic::error(
                    Code::BadLiteral,
                    format!("`{text}` is not a usable duration"),
                    span,
                )
                .with_help("a duration is more than zero and less than a few thousand years")
            })?;
        Ok(Duration { micros, span })
    }

    fn pattern(&self, pair: Pair<'_, Rule>) -> Built<Pattern> {
        let span = self.span(&pair);
        let inner = pair
            .into_inner()
            .next()
            .ok_or_else(|| self.internal(span))?;
        let kind = match inner.as_rule() {
            Rule::page_pattern => PatternKind::Page,
            Rule::screen_pattern => PatternKind::Screen,
            Rule::string => PatternKind::Track(self.string(inner)?),
            _ => PatternKind::Track(inner.as_str().to_string()),
        };
        Ok(Pattern { kind, span })
    }

    fn path(&self, pair: Pair<'_, Rule>) -> Path {
        let span = self.span(&pair);
        let segments = pair.as_str().split('.').map(str::to_string).collect();
        Path { segments, span }
    }

    fn cond(&self, pair: Pair<'_, Rule>) -> Built<Cond> {
        let span = self.span(&pair);
        match pair.as_rule() {
            Rule::cond | Rule::and_cond => {
                let is_or = pair.as_rule() == Rule::cond;
                let mut parts = Vec::new();
                for p in pair.into_inner() {
                    if matches!(p.as_rule(), Rule::kw_or | Rule::kw_and) {
                        continue;
                    }
                    parts.push(self.cond(p)?);
                }
                if parts.len() == 1 {
                    return parts.pop().ok_or_else(|| self.internal(span));
                }
                Ok(if is_or {
                    Cond::Or(parts)
                } else {
                    Cond::And(parts)
                })
            }
            Rule::not_cond | Rule::primary | Rule::where_one => {
                let inner = pair
                    .into_inner()
                    .next()
                    .ok_or_else(|| self.internal(span))?;
                self.cond(inner)
            }
            Rule::negation => {
                let mut it = pair.into_inner();
                let _kw = it.next();
                let inner = it.next().ok_or_else(|| self.internal(span))?;
                Ok(Cond::Not(Box::new(self.cond(inner)?)))
            }
            Rule::paren_cond => {
                let inner = pair
                    .into_inner()
                    .next()
                    .ok_or_else(|| self.internal(span))?;
                self.cond(inner)
            }
            Rule::event_pred => {
                let mut it = pair.into_inner();
                let _kw = it.next();
                let pattern = self.pattern(it.next().ok_or_else(|| self.internal(span))?)?;
                let _where = it.next();
                let filter = match it.next() {
                    Some(w) => Some(Box::new(self.cond(w)?)),
                    None => None,
                };
                Ok(Cond::Event {
                    pattern,
                    filter,
                    span,
                })
            }
            Rule::reached_pred => {
                let mut it = pair.into_inner();
                let _kw = it.next();
                let name = it.next().ok_or_else(|| self.internal(span))?;
                Ok(Cond::Reached(self.ident(name)))
            }
            Rule::comparison => {
                let mut it = pair.into_inner();
                let left = self.operand(it.next().ok_or_else(|| self.internal(span))?)?;
                let test = match it.next() {
                    Some(t) => Some(self.test(t)?),
                    None => None,
                };
                Ok(Cond::Compare { left, test, span })
            }
            _ => Err(self.internal(span)),
        }
    }

    fn test(&self, pair: Pair<'_, Rule>) -> Built<Test> {
        let span = self.span(&pair);
        let inner = pair
            .into_inner()
            .next()
            .ok_or_else(|| self.internal(span))?;
        let rule = inner.as_rule();
        let mut it = inner.into_inner();
        match rule {
            Rule::between_test => {
                let _kw = it.next();
                let low = self.operand(it.next().ok_or_else(|| self.internal(span))?)?;
                let _and = it.next();
                let high = self.operand(it.next().ok_or_else(|| self.internal(span))?)?;
                Ok(Test::Between(low, high))
            }
            Rule::in_test => {
                let _kw = it.next();
                Ok(Test::In(
                    self.operand(it.next().ok_or_else(|| self.internal(span))?)?,
                ))
            }
            Rule::exists_test => Ok(Test::Exists),
            _ => {
                let op_pair = it.next().ok_or_else(|| self.internal(span))?;
                let op = match op_pair.as_str() {
                    "==" => CmpOp::Eq,
                    "!=" => CmpOp::Ne,
                    "<" => CmpOp::Lt,
                    "<=" => CmpOp::Le,
                    ">" => CmpOp::Gt,
                    ">=" => CmpOp::Ge,
                    "contains" => CmpOp::Contains,
                    "starts_with" => CmpOp::StartsWith,
                    "ends_with" => CmpOp::EndsWith,
                    _ => CmpOp::Matches,
                };
                let right = self.operand(it.next().ok_or_else(|| self.internal(span))?)?;
                Ok(Test::Cmp(op, right))
            }
        }
    }

    fn operand(&self, pair: Pair<'_, Rule>) -> Built<Operand> {
        let span = self.span(&pair);
        let inner = pair
            .into_inner()
            .next()
            .ok_or_else(|| self.internal(span))?;
        match inner.as_rule() {
            Rule::path => Ok(Operand::Path(self.path(inner))),
            Rule::literal => {
                let lit = self.literal(inner)?;
                Ok(Operand::Literal(lit, span))
            }
            Rule::count_agg => {
                let mut it = inner.into_inner();
                let _kw = it.next();
                let pattern = self.pattern(it.next().ok_or_else(|| self.internal(span))?)?;
                let (filter, within) = self.agg_tail(it, span)?;
                Ok(Operand::Count {
                    pattern,
                    filter,
                    within,
                    span,
                })
            }
            _ => {
                let mut it = inner.into_inner();
                let _kw = it.next();
                let property = self.path(it.next().ok_or_else(|| self.internal(span))?);
                let _of = it.next();
                let pattern = self.pattern(it.next().ok_or_else(|| self.internal(span))?)?;
                let (filter, within) = self.agg_tail(it, span)?;
                Ok(Operand::Sum {
                    property,
                    pattern,
                    filter,
                    within,
                    span,
                })
            }
        }
    }

    fn agg_tail(
        &self,
        it: pest::iterators::Pairs<'_, Rule>,
        span: Span,
    ) -> Built<(Option<Box<Cond>>, Duration)> {
        let mut filter = None;
        let mut within = None;
        for p in it {
            match p.as_rule() {
                Rule::cond => filter = Some(Box::new(self.cond(p)?)),
                Rule::duration => within = Some(self.duration(p)?),
                _ => {}
            }
        }
        Ok((filter, within.ok_or_else(|| self.internal(span))?))
    }

    fn literal(&self, pair: Pair<'_, Rule>) -> Built<Literal> {
        let span = self.span(&pair);
        let inner = pair
            .into_inner()
            .next()
            .ok_or_else(|| self.internal(span))?;
        match inner.as_rule() {
            Rule::number => Ok(Literal::Number(self.number(inner)?)),
            Rule::string => Ok(Literal::String(self.string(inner)?)),
            Rule::boolean => Ok(Literal::Bool(inner.as_str() == "true")),
            Rule::duration => Ok(Literal::Duration(self.duration(inner)?.micros)),
            Rule::list => {
                let mut items = Vec::new();
                for p in inner.into_inner() {
                    items.push(self.literal(p)?);
                }
                Ok(Literal::List(items))
            }
            _ => {
                let mut it = inner.into_inner();
                let body = it.next().map(|p| p.as_str()).unwrap_or("");
                let flags = it.next().map(|p| p.as_str()).unwrap_or("");
                Ok(Literal::Regex {
                    source: body.replace("\\/", "/"),
                    ignore_case: flags == "i",
                })
            }
        }
    }
}
