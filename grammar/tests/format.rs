//! `leadscore fmt` (SPEC §4): one canonical layout, aligned columns as in SPEC §2, comments
//! never lost or moved, idempotent, and the parsed program never changes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use leadscore_rules::diagnostic::Code;
use leadscore_rules::format::format_source;
use leadscore_rules::syntax::parse_file;
use leadscore_rules::{compile, SourceFile};
use proptest::prelude::*;
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

fn fmt(src: &str) -> String {
    match format_source(src) {
        Ok(out) => out,
        Err(diags) => panic!("format failed on:\n{src}\n{diags:?}"),
    }
}

/// The items a text parses to, with every span left out.
fn fingerprint(src: &str) -> String {
    let mut diags = Vec::new();
    let file = parse_file(0, src, &mut diags);
    assert!(diags.is_empty(), "does not parse:\n{src}\n{diags:?}");
    let kinds: Vec<_> = file.items.iter().map(|i| &i.kind).collect();
    let text = format!("{kinds:?}");
    regex::Regex::new(r"Span \{[^}]*\}")
        .unwrap()
        .replace_all(&text, "_")
        .into_owned()
}

/// The codes and messages `check` reports for a text.
fn check_messages(src: &str) -> Vec<String> {
    let files = vec![SourceFile {
        name: "test.rules".to_string(),
        text: src.to_string(),
    }];
    compile(&files)
        .diagnostics
        .iter()
        .map(|d| format!("{}: {}", d.code.as_str(), d.message))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Every comment of a text, in order (a `#` in a string or a regex is not a comment).
fn comments(src: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in src.lines() {
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '"' | '/' => {
                    let close = chars[i];
                    i += 1;
                    while i < chars.len() && chars[i] != close {
                        i += if chars[i] == '\\' { 2 } else { 1 };
                    }
                    i += 1;
                }
                '#' => {
                    out.push(chars[i..].iter().collect::<String>().trim_end().to_string());
                    break;
                }
                _ => i += 1,
            }
        }
    }
    out
}

/// Formats `src` and checks every promise of the formatter on it.
fn check_formatting(name: &str, src: &str) -> String {
    let once = fmt(src);
    let twice = fmt(&once);
    assert_eq!(once, twice, "{name}: formatting is not idempotent");
    assert_eq!(
        fingerprint(src),
        fingerprint(&once),
        "{name}: the items changed"
    );
    assert_eq!(comments(src), comments(&once), "{name}: comments changed");
    assert_eq!(
        check_messages(src),
        check_messages(&once),
        "{name}: check reports changed"
    );
    for line in once.lines() {
        assert_eq!(line, line.trim_end(), "{name}: trailing blanks");
    }
    once
}

fn rules_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("the example rules at {} are missing: {e}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rules_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rules") {
            out.push(path);
        }
    }
}

fn example_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["../rules", "../../shared/conformance"] {
        let before = files.len();
        rules_files(&root.join(dir), &mut files);
        assert!(files.len() > before, "no rules files under {dir}");
    }
    files.sort();
    files
}

// ---------------------------------------------------------------------------------------------
// example files
// ---------------------------------------------------------------------------------------------

#[test]
fn every_example_file_formats_idempotently_and_keeps_its_meaning_and_comments() {
    let files = example_files();
    assert!(!files.is_empty(), "no example rules found");
    for path in files {
        let src = std::fs::read_to_string(&path).unwrap();
        check_formatting(&path.display().to_string(), &src);
    }
}

#[test]
fn the_example_rule_set_is_formatted() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/b2b-saas");
    let mut files = Vec::new();
    rules_files(&root, &mut files);
    assert!(!files.is_empty());
    for path in files {
        let src = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            fmt(&src),
            src,
            "{} is not formatted: run `leadscore fmt`",
            path.display()
        );
    }
}

const SPEC_EXAMPLE: &str = r#"ruleset "acme-b2b"

# Fit: who the lead is. Recomputed from the profile whenever it changes. Never decays.
fit "Senior title"     +15 when lead.title matches /\b(vp|director|head|chief)\b/i
fit "Target size"      +10 when lead.company.employees between 50 and 5000
fit "Personal email"   -20 when lead.email ends_with "@gmail.com" or lead.email ends_with "@yahoo.com"

# Engagement: what the lead does. Points are added when an event matches.
score "Pricing page"   +10 on page where path starts_with "/pricing" limit 3 per 7d
score "Webinar"        +20 on "Webinar Registered"
score "Demo request"   +40 on "Form Submitted" where form == "demo"
score "Careers page"   -10 on page where path starts_with "/careers"
score "Unsubscribed"   -30 on "Email Unsubscribed" once

decay engagement half_life 30d
cap engagement at 150

# Stages, in lifecycle order. Once reached, a stage stays reached.
stage mql when engagement >= 40 and fit >= 10
stage pql when count("Feature Used") within 14d >= 10 and lead.plan == "trial"
stage sql when reached mql and (event "Form Submitted" where form == "demo" or score >= 100)
stage service_qualified when event "Support Ticket" where topic == "upgrade"

# Conversions: the action that turns a lead into a result.
conversion "Purchase" on "Order Completed" where revenue > 0 value revenue
conversion "Signup"   on "Signed Up"

# Notifications: targets are names; where they deliver is configured at deploy time.
notify sales   when reached sql
notify revenue when converted
"#;

#[test]
fn the_spec_example_is_already_in_canonical_layout() {
    assert_eq!(check_formatting("spec", SPEC_EXAMPLE), SPEC_EXAMPLE);
}

#[test]
fn the_spec_example_is_recovered_from_a_messy_layout() {
    let messy: String = SPEC_EXAMPLE
        .lines()
        .map(|l| {
            if l.starts_with('#') {
                l.to_string()
            } else {
                // Single spaces everywhere, blanks at the end.
                l.split_whitespace().collect::<Vec<_>>().join(" ") + "   "
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        .replace("\n\n", "\n\n\n\n");
    assert_eq!(check_formatting("messy spec", &messy), SPEC_EXAMPLE);
}

// ---------------------------------------------------------------------------------------------
// layout
// ---------------------------------------------------------------------------------------------

#[test]
fn consecutive_rules_line_up_names_and_points() {
    let src =
        "score \"Pricing page\" +10 on page where path starts_with \"/pricing\" limit 3 per 7d\n\
               score \"Webinar\" 20 on \"Webinar Registered\"\n\
               score   \"Careers page\"  -10   on page   where path starts_with \"/careers\"\n";
    let want =
        "score \"Pricing page\"   +10 on page where path starts_with \"/pricing\" limit 3 per 7d\n\
                score \"Webinar\"        +20 on \"Webinar Registered\"\n\
                score \"Careers page\"   -10 on page where path starts_with \"/careers\"\n";
    assert_eq!(check_formatting("align", src), want);
}

#[test]
fn points_are_right_aligned_and_a_single_rule_is_not_padded() {
    let src = "fit a +5 when lead.x\nfit \"bbbb\" +100 when lead.y\n\nfit c 5 when lead.z\n";
    let want =
        "fit a         +5 when lead.x\nfit \"bbbb\"  +100 when lead.y\n\nfit c +5 when lead.z\n";
    assert_eq!(check_formatting("points", src), want);
}

#[test]
fn comment_lines_do_not_break_a_run_but_blank_lines_and_other_kinds_do() {
    let src = "notify sales when reached sql\n# the revenue team\nnotify revenue when converted\n\
               stage sql when score > 10\nnotify x when converted\nnotify longer_target when converted\n";
    let want = "notify sales   when reached sql\n# the revenue team\nnotify revenue when converted\n\
                stage sql when score > 10\nnotify x             when converted\nnotify longer_target when converted\n";
    assert_eq!(check_formatting("runs", src), want);
}

#[test]
fn conversions_line_up() {
    let src = "conversion \"Purchase\" on \"Order Completed\" where revenue > 0 value revenue\n\
               conversion Signup on \"Signed Up\"\n";
    let want = "conversion \"Purchase\" on \"Order Completed\" where revenue > 0 value revenue\n\
                conversion Signup     on \"Signed Up\"\n";
    assert_eq!(check_formatting("conversions", src), want);
}

#[test]
fn spacing_is_normalised() {
    let src = "stage  pql   when count ( \"Feature Used\"  where  x in [ \"a\" ,\"b\" , ] )  within 14d>=10\n\
               \tand lead.plan==\"trial\"\n";
    let want = "stage pql when count(\"Feature Used\" where x in [\"a\", \"b\",]) within 14d >= 10 and lead.plan == \"trial\"\n";
    assert_eq!(check_formatting("spacing", src), want);
}

#[test]
fn blank_lines_collapse_and_the_file_ends_with_one_newline() {
    let src = "\n\n\nruleset \"x\"\n\n\n\n# note\n\n\nstage a when score > 1\n\n\n";
    assert_eq!(
        check_formatting("blanks", src),
        "ruleset \"x\"\n\n# note\n\nstage a when score > 1\n"
    );
    assert_eq!(fmt(""), "");
    assert_eq!(fmt("\n\n  \n"), "");
    assert_eq!(fmt("# only a comment"), "# only a comment\n");
}

#[test]
fn crlf_line_endings_become_newlines() {
    let src = "ruleset \"x\"\r\n# c\r\nstage a when score > 1 # t\r\n";
    assert_eq!(
        check_formatting("crlf", src),
        "ruleset \"x\"\n# c\nstage a when score > 1  # t\n"
    );
}

#[test]
fn long_items_break_before_or_with_continuation_lines_indented() {
    let src = "fit \"Personal email\" -20 when lead.email ends_with \"@gmail.com\" or lead.email ends_with \"@yahoo.com\" or lead.email ends_with \"@hotmail.com\"\n";
    let want = "fit \"Personal email\" -20 when lead.email ends_with \"@gmail.com\"\n    \
                or lead.email ends_with \"@yahoo.com\"\n    \
                or lead.email ends_with \"@hotmail.com\"\n";
    assert_eq!(check_formatting("long fit", src), want);
    // And a broken item that fits on one line is joined.
    let joined = "fit \"Personal email\" -20 when lead.email ends_with \"@gmail.com\" or lead.email ends_with \"@x.com\"\n";
    let broken = joined.replace(" or ", "\n        or ");
    assert_eq!(check_formatting("joined", &broken), joined);
}

#[test]
fn long_score_rules_break_before_where_and_the_modifier() {
    let src = "score \"Content download\" +8 on \"Content Downloaded\" where format in [\"ebook\", \"report\", \"whitepaper\", \"case study\"] limit 2 per 30d\n";
    let want = "score \"Content download\" +8 on \"Content Downloaded\"\n    \
                where format in [\"ebook\", \"report\", \"whitepaper\", \"case study\"]\n    \
                limit 2 per 30d\n";
    assert_eq!(check_formatting("long score", src), want);
}

#[test]
fn nested_conditions_break_deeper() {
    let src = "stage pql when lead.plan == \"trial\" and (count(\"Feature Used\") within 14d >= 10 or sum(rows of \"Data Imported\") within 14d >= 50000 or lead.company.industry in [\"Software\", \"Financial Services\"])\n";
    let want = "stage pql when lead.plan == \"trial\"\n    \
                and (count(\"Feature Used\") within 14d >= 10\n        \
                or sum(rows of \"Data Imported\") within 14d >= 50000\n        \
                or lead.company.industry in [\"Software\", \"Financial Services\"])\n";
    assert_eq!(check_formatting("nested", src), want);
}

#[test]
fn parentheses_only_where_the_tree_needs_them() {
    let cases = [
        ("stage a when (score > 1)", "stage a when score > 1"),
        ("stage a when ((a) and (b))", "stage a when a and b"),
        ("stage a when a or (b and c)", "stage a when a or b and c"),
        ("stage a when (a or b) and c", "stage a when (a or b) and c"),
        ("stage a when a or (b or c)", "stage a when a or (b or c)"),
        ("stage a when not (a and b)", "stage a when not (a and b)"),
        ("stage a when not (a)", "stage a when not a"),
        ("stage a when not a == 1", "stage a when not (a == 1)"),
        ("stage a when not (a exists)", "stage a when not (a exists)"),
        ("stage a when not (reached b)", "stage a when not reached b"),
        (
            "stage a when (event) or (reached)",
            "stage a when (event) or (reached)",
        ),
        (
            "stage a when event == 1 or (event.x)",
            "stage a when event == 1 or event.x",
        ),
        (
            "conversion c on page where (event) value revenue",
            "conversion c on page where (event) value revenue",
        ),
        ("stage a when not (not a)", "stage a when not not a"),
        (
            "stage a when event X where (a == 1 or b)",
            "stage a when event X where (a == 1 or b)",
        ),
        (
            "stage a when event X where (a == 1) or b",
            "stage a when event X where a == 1 or b",
        ),
        (
            "stage a when event X where (not a)",
            "stage a when event X where (not a)",
        ),
        (
            "stage a when count(page where (a or b) and c) within 1d > 1",
            "stage a when count(page where (a or b) and c) within 1d > 1",
        ),
        (
            "score s 1 on page where (a or b) once",
            "score s +1 on page where a or b once",
        ),
    ];
    for (src, want) in cases {
        assert_eq!(
            check_formatting(src, &format!("{src}\n")),
            format!("{want}\n")
        );
    }
}

#[test]
fn literals_keep_their_spelling() {
    let src = "fit a 2.50 when lead.n between 050 and 1e\n";
    // `1e` is not a number: the file has a syntax error.
    assert!(format_source(src).is_err());
    let src = "stage a when count(page) within 14d >= 2.50 and lead.t matches /a\\/b#c/i and lead.s == \"q\\\"#\"\n";
    assert_eq!(check_formatting("literals", src), src);
}

// ---------------------------------------------------------------------------------------------
// comments
// ---------------------------------------------------------------------------------------------

#[test]
fn comments_stay_where_they_are() {
    let src = "# header\n\n\
               ruleset \"x\"   # the name\n\
               # before fit\n\
               fit a +1 when lead.x   # trailing\n\
               \x20   # indented, after the item\n\
               fit bb +2 when lead.y\n\n\
               # at the end\n";
    let want = "# header\n\n\
                ruleset \"x\"  # the name\n\
                # before fit\n\
                fit a     +1 when lead.x  # trailing\n\
                \x20   # indented, after the item\n\
                fit bb    +2 when lead.y\n\n\
                # at the end\n";
    assert_eq!(check_formatting("comments", src), want);
}

#[test]
fn an_item_with_a_comment_inside_keeps_its_lines() {
    let src =
        "fit \"Personal email\"   20 when lead.email ends_with \"@gmail.com\"   # free mail\n\
               \x20     # more free mail\n\
               \x20     or  lead.email ends_with \"@yahoo.com\"\n\n\
               \x20     or lead.email ends_with \"@hotmail.com\"   # last\n\
               stage a when score > 1\n";
    let want = "fit \"Personal email\" +20 when lead.email ends_with \"@gmail.com\"  # free mail\n\
                \x20     # more free mail\n\
                \x20     or lead.email ends_with \"@yahoo.com\"\n\
                \x20     or lead.email ends_with \"@hotmail.com\"  # last\n\
                stage a when score > 1\n";
    assert_eq!(check_formatting("inner comments", src), want);
}

#[test]
fn a_trailing_comment_follows_its_item_when_lines_are_joined() {
    let src = "stage a when score > 1\n    and fit > 2 # about fit\n";
    assert_eq!(
        check_formatting("joined comment", src),
        "stage a when score > 1 and fit > 2  # about fit\n"
    );
}

#[test]
fn hashes_in_strings_and_regexes_are_not_comments() {
    let src = "score \"#1\" +1 on \"Tag #\" where tag matches /#x/ and name == \"a # b\"\n";
    assert_eq!(check_formatting("hashes", src), src);
}

#[test]
fn a_file_with_syntax_errors_is_not_formatted() {
    let src = "ruleset \"x\"\nscore \"Webinar\" +20 \"Webinar Registered\"\nstage a when\n";
    let diags = format_source(src).unwrap_err();
    assert_eq!(diags.len(), 2);
    assert!(diags.iter().all(|d| d.code == Code::Syntax));
}

// ---------------------------------------------------------------------------------------------
// property: formatting never changes the parsed program
// ---------------------------------------------------------------------------------------------

/// A generated condition, printed with the parentheses its shape needs (and some extra ones).
#[derive(Debug, Clone)]
enum G {
    Leaf(Vec<String>),
    And(Vec<G>),
    Or(Vec<G>),
    Not(Box<G>),
    Paren(Box<G>),
    EventWhere(String, Box<G>),
    Count(String, Option<Box<G>>),
}

fn toks(s: &str) -> Vec<String> {
    s.split(' ').map(str::to_string).collect()
}

fn print(g: &G, out: &mut Vec<String>) {
    let paren = |g: &G, out: &mut Vec<String>| {
        out.push("(".into());
        print(g, out);
        out.push(")".into());
    };
    match g {
        G::Leaf(t) => out.extend(t.iter().cloned()),
        G::And(parts) | G::Or(parts) => {
            let op = if matches!(g, G::And(_)) { "and" } else { "or" };
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    out.push(op.into());
                }
                let needs = matches!((g, p), (G::And(_), G::Or(_)));
                if needs {
                    paren(p, out);
                } else {
                    print(p, out);
                }
            }
        }
        G::Not(inner) => {
            out.push("not".into());
            if matches!(**inner, G::And(_) | G::Or(_)) {
                paren(inner, out);
            } else {
                print(inner, out);
            }
        }
        G::Paren(inner) => paren(inner, out),
        G::EventWhere(pattern, filter) => {
            out.push("event".into());
            out.push(pattern.clone());
            out.push("where".into());
            if matches!(**filter, G::Leaf(_)) {
                print(filter, out);
            } else {
                paren(filter, out);
            }
        }
        G::Count(pattern, filter) => {
            out.push("count".into());
            out.push("(".into());
            out.push(pattern.clone());
            if let Some(f) = filter {
                out.push("where".into());
                print(f, out);
            }
            out.extend(toks(") within 7d >= 3"));
        }
    }
}

fn arb_literal() -> impl Strategy<Value = Vec<String>> {
    prop::sample::select(vec![
        "\"demo\"",
        "40",
        "-2.5",
        "0.75",
        "true",
        "\"a # not a comment\"",
        "\"q\\\"uote\"",
        "/^\\/pricing/i",
        "/a#b/",
        "[ \"ebook\" , \"report\" ]",
        "[1, 2, 3,]",
        "[]",
        "7d",
    ])
    .prop_map(toks)
}

fn arb_path() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "lead.title",
        "lead.company.employees",
        "form",
        "path",
        "properties.value",
        "score",
        "fit",
        "engagement",
        "count",
        "event",
        "reached",
        "sum",
        "event.x",
    ])
    .prop_map(str::to_string)
}

fn arb_pattern() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "page",
        "screen",
        "\"Form Submitted\"",
        "Signup",
        "\"page\"",
    ])
    .prop_map(str::to_string)
}

fn arb_comparison() -> impl Strategy<Value = Vec<String>> {
    let op = prop::sample::select(vec![
        "==",
        "!=",
        "<",
        "<=",
        ">",
        ">=",
        "contains",
        "starts_with",
        "ends_with",
        "matches",
    ]);
    prop_oneof![
        4 => (arb_path(), op, arb_literal()).prop_map(|(p, op, lit)| {
            let mut t = vec![p, op.to_string()];
            t.extend(lit);
            t
        }),
        1 => arb_path().prop_map(|p| vec![p]),
        1 => arb_path().prop_map(|p| vec![p, "exists".into()]),
        1 => arb_path().prop_map(|p| toks(&format!("{p} between 1 and 5000"))),
        1 => arb_path().prop_map(|p| toks(&format!("{p} in [ \"a\" , \"b\" ]"))),
        1 => arb_pattern().prop_map(|p| toks(&format!("sum ( rows of {p} ) within 2w > 10"))),
    ]
}

fn arb_cond() -> impl Strategy<Value = G> {
    let leaf = prop_oneof![
        6 => arb_comparison().prop_map(G::Leaf),
        1 => Just(G::Leaf(toks("reached mql"))),
        1 => arb_pattern().prop_map(|p| G::Leaf(vec!["event".into(), p])),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 2..4).prop_map(G::And),
            prop::collection::vec(inner.clone(), 2..4).prop_map(G::Or),
            inner.clone().prop_map(|g| G::Not(Box::new(g))),
            inner.clone().prop_map(|g| G::Paren(Box::new(g))),
            (arb_pattern(), inner.clone()).prop_map(|(p, g)| G::EventWhere(p, Box::new(g))),
            (arb_pattern(), prop::option::of(inner))
                .prop_map(|(p, g)| G::Count(p, g.map(Box::new))),
        ]
    })
}

fn cond_tokens(g: &G) -> Vec<String> {
    let mut out = Vec::new();
    print(g, &mut out);
    out
}

fn arb_name() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "\"Pricing page\"",
        "\"Webinar\"",
        "webinar",
        "\"A much longer rule name\"",
        "\"#hash\"",
    ])
    .prop_map(str::to_string)
}

fn arb_points() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["+10", "5", "-20", "2.5", "+100", "0", "-0.5"])
        .prop_map(str::to_string)
}

fn arb_item() -> impl Strategy<Value = Vec<String>> {
    let filter = || prop::option::of(arb_cond());
    prop_oneof![
        1 => Just(toks("ruleset \"acme\"")),
        3 => (arb_name(), arb_points(), arb_cond()).prop_map(|(n, p, c)| {
            let mut t = vec!["fit".into(), n, p, "when".into()];
            t.extend(cond_tokens(&c));
            t
        }),
        4 => (arb_name(), arb_points(), arb_pattern(), filter(), 0..3u8).prop_map(
            |(n, p, pat, f, m)| {
                let mut t = vec!["score".into(), n, p, "on".into(), pat];
                if let Some(c) = f {
                    t.push("where".into());
                    t.extend(cond_tokens(&c));
                }
                match m {
                    1 => t.push("once".into()),
                    2 => t.extend(toks("limit 3 per 7d")),
                    _ => {}
                }
                t
            }
        ),
        1 => prop::sample::select(vec![
            "decay engagement half_life 30d",
            "cap engagement at 150",
            "floor engagement at -50",
        ])
        .prop_map(toks),
        3 => (prop::sample::select(vec!["mql", "sql", "service_qualified"]), arb_cond()).prop_map(
            |(n, c)| {
                let mut t = vec!["stage".into(), n.into(), "when".into()];
                t.extend(cond_tokens(&c));
                t
            }
        ),
        2 => (arb_name(), arb_pattern(), filter(), any::<bool>()).prop_map(|(n, pat, f, v)| {
            let mut t = vec!["conversion".into(), n, "on".into(), pat];
            if let Some(c) = f {
                t.push("where".into());
                t.extend(cond_tokens(&c));
            }
            if v {
                t.extend(toks("value revenue"));
            }
            t
        }),
        2 => (
            prop::sample::select(vec!["sales", "revenue", "growth_team"]),
            prop::sample::select(vec!["reached mql", "converted", "converted \"Purchase\""]),
        )
            .prop_map(|(t, w)| toks(&format!("notify {t} when {w}"))),
    ]
}

/// Builds a source text: items joined by newlines, blank lines and comment lines, the tokens
/// of each item joined by spaces, line breaks and comments.
fn build_source(items: &[Vec<String>], seps: &[u8]) -> String {
    let mut out = String::new();
    let mut k = 0usize;
    let mut next = || {
        k += 1;
        (seps[k % seps.len()], k)
    };
    for item in items {
        let (s, n) = next();
        match s % 8 {
            0 => out.push('\n'),
            1 => out.push_str(&format!("# own line {n}\n")),
            2 => out.push_str(&format!("\n\n# after blanks {n}\n")),
            3 => out.push_str(&format!("    # indented {n}\n")),
            _ => {}
        }
        for (i, tok) in item.iter().enumerate() {
            if i > 0 {
                let (s, n) = next();
                out.push_str(match s % 12 {
                    0 => "\n    ",
                    1 => "\n\t",
                    2 => "  ",
                    3 if i > 1 => "",
                    _ => " ",
                });
                if s % 12 == 3 && i > 1 {
                    // A comment inside the item.
                    out.push_str(&format!(" # inside {n}\n      "));
                }
            }
            out.push_str(tok);
        }
        let (s, n) = next();
        if s % 3 == 0 {
            out.push_str(&format!("   # trailing {n}"));
        }
        out.push('\n');
    }
    out
}

#[test]
fn debug_case() {
    let items = vec![toks(
        "stage mql when sum ( rows of page ) within 2w > 10 and reached mql",
    )];
    let src = build_source(&items, &[0, 168]);
    println!("{src}");
    check_formatting("case", &src);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, max_global_rejects: 4096, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn formatting_never_changes_the_parsed_program(
        items in prop::collection::vec(arb_item(), 1..8),
        seps in prop::collection::vec(any::<u8>(), 1..64),
    ) {
        let src = build_source(&items, &seps);
        let mut diags = Vec::new();
        let _ = parse_file(0, &src, &mut diags);
        // A few generated texts are not valid rules (a bare name swallowing a keyword).
        prop_assume!(diags.is_empty());
        let once = format_source(&src).map_err(|d| TestCaseError::fail(format!("{d:?}")))?;
        let mut again = Vec::new();
        let _ = parse_file(0, &once, &mut again);
        prop_assert!(again.is_empty(), "formatted text does not parse: {:?}\nsource:\n{}\nformatted:\n{}", again, src, once);
        prop_assert_eq!(fingerprint(&src), fingerprint(&once), "source:\n{}\nformatted:\n{}", src, once);
        prop_assert_eq!(comments(&src), comments(&once), "source:\n{}\nformatted:\n{}", src, once);
        let twice = format_source(&once).map_err(|d| TestCaseError::fail(format!("{d:?}")))?;
        prop_assert_eq!(&once, &twice, "source:\n{}", src);
        prop_assert_eq!(check_messages(&src), check_messages(&once));
    }
}
