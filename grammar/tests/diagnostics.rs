//! Every diagnostic code (E001–E010, W001–W003), its message, its place and its rendering;
//! recovery after broken items; rule sets of several files.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use common::*;
use leadscore_rules::diagnostic::{line_col, render, to_json, Code, Diagnostic, Severity};
use leadscore_rules::{compile, SourceFile};

/// Compiles `text` as `test.rules` and returns every diagnostic rendered.
fn check(text: &str) -> String {
    let files = file(text);
    rendered(&compile(&files), &files)
}

/// The only diagnostic of `text`.
#[track_caller]
fn only(text: &str) -> Diagnostic {
    let diags = diagnostics(text);
    assert_eq!(diags.len(), 1, "expected one diagnostic, got {diags:#?}");
    diags.into_iter().next().unwrap()
}

/// The codes of all diagnostics of `text`, in order.
fn codes(text: &str) -> Vec<&'static str> {
    diagnostics(text).iter().map(|d| d.code.as_str()).collect()
}

/// `(line, column)` where a diagnostic starts in `text`.
fn place(text: &str, d: &Diagnostic) -> (usize, usize) {
    let lc = line_col(text, d.span.start);
    (lc.line, lc.column)
}

/// The text a diagnostic's span covers.
fn spanned<'a>(text: &'a str, d: &Diagnostic) -> &'a str {
    &text[d.span.start..d.span.end]
}

const R: &str = "ruleset \"t\"\n";

// ---------------------------------------------------------------------------------------
// codes

#[test]
fn codes_are_printed_as_documented() {
    let all = [
        (Code::Syntax, "E001"),
        (Code::UnknownStage, "E002"),
        (Code::Duplicate, "E003"),
        (Code::BareName, "E004"),
        (Code::BadRegex, "E005"),
        (Code::BetweenOrder, "E006"),
        (Code::TypeMismatch, "E007"),
        (Code::NotAllowed, "E008"),
        (Code::Ruleset, "E009"),
        (Code::BadLiteral, "E010"),
        (Code::NeverFires, "W001"),
        (Code::MaybeMisspelt, "W002"),
        (Code::UnknownConversion, "W003"),
    ];
    for (code, text) in all {
        assert_eq!(code.as_str(), text);
    }
}

// ---------------------------------------------------------------------------------------
// E001 syntax

#[test]
fn e001_missing_on_renders_with_place_and_caret() {
    let text = format!("{R}score \"Webinar\" +20 \"Webinar Registered\"\n");
    let d = only(&text);
    assert_eq!(d.code, Code::Syntax);
    assert_eq!(d.severity, Severity::Error);
    assert_eq!(d.message, "expected `on`, found `\"`");
    assert_eq!(place(&text, &d), (2, 21));
    assert_eq!(
        check(&text),
        "test.rules:2:21: error[E001]: expected `on`, found `\"`\n\
         2 | score \"Webinar\" +20 \"Webinar Registered\"\n\
         \x20 |                     ^\n"
    );
    assert!(compile(&file(&text)).program.is_none());
}

#[test]
fn e001_misspelt_keyword_at_item_start_suggests_the_keyword() {
    let text = format!("{R}scor \"x\" +1 on X\n");
    let d = only(&text);
    assert_eq!(d.code, Code::Syntax);
    assert_eq!(d.message, "expected an item, found `scor`");
    assert_eq!(d.help.as_deref(), Some("did you mean `score`?"));
    assert_eq!(
        check(&text),
        "test.rules:2:1: error[E001]: expected an item, found `scor`\n\
         2 | scor \"x\" +1 on X\n\
         \x20 | ^^^^\n\
         \x20 = help: did you mean `score`?\n"
    );
    for (typo, keyword) in [
        ("stag mql when fit > 1", "stage"),
        ("notfy sales when converted", "notify"),
        ("conversoin \"c\" on X", "conversion"),
        ("rulset \"x\"", "ruleset"),
    ] {
        let d = only(&format!("{R}{typo}\n"));
        assert_eq!(
            d.help.unwrap(),
            format!("did you mean `{keyword}`?"),
            "{typo}"
        );
    }
    // nothing close: the list of keywords
    let d = only(&format!("{R}whatever \"x\"\n"));
    assert!(d
        .help
        .unwrap()
        .starts_with("an item starts with `ruleset`, `fit`, `score`"));
}

#[test]
fn e001_an_item_that_ends_too_early_is_reported_on_its_own_line() {
    // the error belongs to line 2, not to the start of the next item
    let text = format!("{R}fit x +1 when lead.a ==\nfit y +1 when lead.b\n");
    let d = only(&text);
    assert_eq!(d.message, "expected a value, found the end of the item");
    assert_eq!(place(&text, &d), (2, 24));
    assert_eq!(
        check(&text),
        "test.rules:2:24: error[E001]: expected a value, found the end of the item\n\
         2 | fit x +1 when lead.a ==\n\
         \x20 |                        ^\n"
    );
    // blank lines and comment lines after the item do not move it
    let text =
        format!("{R}score \"s\" +1 on\n\n# a comment\n   # another\n\nstage a when fit > 1\n");
    let d = only(&text);
    assert_eq!(place(&text, &d), (2, 16));
    assert!(
        d.message.ends_with("found the end of the item"),
        "{}",
        d.message
    );
    // at the end of a file without a final newline
    let text = format!("{R}stage a when");
    let d = only(&text);
    assert_eq!(d.message, "expected a condition, found the end of the item");
    assert_eq!(place(&text, &d), (2, 13));
}

#[test]
fn e001_helps_for_single_equals_and_single_quotes() {
    let text = format!("{R}score \"a\" +1 on X where x = 1\n");
    let d = only(&text);
    assert_eq!(d.code, Code::Syntax);
    assert_eq!(place(&text, &d), (2, 27));
    assert_eq!(d.help.as_deref(), Some("to compare, write `==`"));
    let text = format!("{R}score \"a\" +1 on X where x == 'a'\n");
    let d = only(&text);
    assert_eq!(d.message, "expected a value, found `'`");
    assert_eq!(
        d.help.as_deref(),
        Some("strings are written in double quotes: \"...\"")
    );
}

#[test]
fn e001_indented_text_before_any_item() {
    let text = "  indented first\nruleset \"t\"\n";
    let d = only(text);
    assert_eq!(d.code, Code::Syntax);
    assert_eq!(d.message, "an indented line must continue an item");
    assert_eq!(place(text, &d), (1, 3));
    assert_eq!(spanned(text, &d), "indented first");
}

#[test]
fn several_broken_items_in_one_file_give_several_errors() {
    let text = "ruleset \"t\"\n\
                fit x +1 when lead.a ==\n\
                scor \"s\" +1 on X\n\
                score \"ok\" +1 on X\n\
                stage a when engagement >= \"40\"\n\
                score \"w\" +1 \"Webinar\"\n\
                stage b when reached mq1\n\
                stage mql when fit > 1\n\
                decay engagement half_life 1mo\n";
    let compiled = compile(&file(text));
    assert!(compiled.program.is_none());
    let got: Vec<(&str, usize, usize)> = compiled
        .diagnostics
        .iter()
        .map(|d| {
            let (l, c) = place(text, d);
            (d.code.as_str(), l, c)
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("E001", 2, 24),
            ("E001", 3, 1),
            ("E007", 5, 28),
            ("E001", 6, 14),
            ("E002", 7, 22),
            ("E010", 9, 28),
        ]
    );
    let e002 = &compiled.diagnostics[4];
    assert_eq!(e002.help.as_deref(), Some("did you mean `mql`?"));
}

// ---------------------------------------------------------------------------------------
// E002 unknown stage

#[test]
fn e002_misspelt_stage_in_reached_suggests_the_stage() {
    let text = format!(
        "{R}stage mql when engagement >= 40\n\
         stage sql when reached mq1 and (event \"Form Submitted\" where form == \"demo\" or score >= 100)\n"
    );
    let d = only(&text);
    assert_eq!(d.code, Code::UnknownStage);
    assert_eq!(d.message, "unknown stage `mq1`");
    assert_eq!(d.help.as_deref(), Some("did you mean `mql`?"));
    assert_eq!(place(&text, &d), (3, 24));
    assert_eq!(
        check(&text),
        "test.rules:3:24: error[E002]: unknown stage `mq1`\n\
         3 | stage sql when reached mq1 and (event \"Form Submitted\" where form == \"demo\" or score >= 100)\n\
         \x20 |                        ^^^\n\
         \x20 = help: did you mean `mql`?\n"
    );
}

#[test]
fn e002_misspelt_stage_in_notify_suggests_the_stage_declared_later() {
    let text = format!(
        "{R}notify sales when reached sq1\nstage mql when fit > 1\nstage sql when fit > 2\n"
    );
    let d = only(&text);
    assert_eq!(d.code, Code::UnknownStage);
    assert_eq!(d.message, "unknown stage `sq1`");
    assert_eq!(d.help.as_deref(), Some("did you mean `sql`?"));
    assert_eq!(place(&text, &d), (2, 27));
    assert_eq!(spanned(&text, &d), "sq1");
}

#[test]
fn e002_unknown_stage_without_a_close_name() {
    let d = only(&format!(
        "{R}stage mql when fit > 1\nnotify sales when reached onboarding\n"
    ));
    assert_eq!(d.code, Code::UnknownStage);
    assert_eq!(d.help.as_deref(), Some("the stages are `mql`"));
    let d = only(&format!("{R}notify sales when reached sql\n"));
    assert_eq!(
        d.help.as_deref(),
        Some("declare it with `stage NAME when ...`")
    );
}

// ---------------------------------------------------------------------------------------
// E003 duplicate

#[test]
fn e003_duplicate_names_point_at_the_first() {
    let text = format!("{R}score \"Webinar\" +20 on X\nscore \"Webinar\" +10 on Y\n");
    let d = only(&text);
    assert_eq!(d.code, Code::Duplicate);
    assert_eq!(d.message, "the score rule `Webinar` is declared twice");
    assert_eq!(
        check(&text),
        "test.rules:3:7: error[E003]: the score rule `Webinar` is declared twice\n\
         3 | score \"Webinar\" +10 on Y\n\
         \x20 |       ^^^^^^^^^\n\
         \x20 = help: the first one is at test.rules:2:7; give each one its own name\n"
    );
    for (src, message) in [
        (
            "stage mql when fit > 1\nstage mql when fit > 2\n",
            "the stage `mql` is declared twice",
        ),
        (
            "fit a +1 when lead.x\nfit \"a\" +2 when lead.y\n",
            "the fit rule `a` is declared twice",
        ),
        (
            "conversion \"Purchase\" on X\nconversion \"Purchase\" on Y\n",
            "the conversion `Purchase` is declared twice",
        ),
        (
            "decay engagement half_life 1d\ndecay engagement half_life 2d\n",
            "`decay` is declared twice",
        ),
        (
            "cap engagement at 1\ncap engagement at 2\n",
            "`cap` is declared twice",
        ),
    ] {
        let d = only(&format!("{R}{src}"));
        assert_eq!((d.code, d.message.as_str()), (Code::Duplicate, message));
    }
    // a score rule and a conversion may share a name
    assert!(diagnostics(&format!(
        "{R}score \"Signup\" +1 on S\nconversion \"Signup\" on S\n"
    ))
    .is_empty());
}

// ---------------------------------------------------------------------------------------
// E004 bare name

#[test]
fn e004_bare_name_outside_where_suggests_lead_x() {
    let text =
        format!("{R}stage mql when engagement >= 40 and title matches /\\b(vp|director)\\b/i\n");
    let d = only(&text);
    assert_eq!(d.code, Code::BareName);
    assert_eq!(d.message, "unknown name `title` in a stage condition");
    assert_eq!(place(&text, &d), (2, 37));
    assert_eq!(
        check(&text),
        "test.rules:2:37: error[E004]: unknown name `title` in a stage condition\n\
         2 | stage mql when engagement >= 40 and title matches /\\b(vp|director)\\b/i\n\
         \x20 |                                     ^^^^^\n\
         \x20 = help: a profile trait is written `lead.title`; an event property is used after `where`, as in `event \"...\" where title == ...`\n"
    );
    let d = only(&format!("{R}fit \"a\" +1 when company.employees > 50\n"));
    assert_eq!(d.code, Code::BareName);
    assert_eq!(
        d.message,
        "unknown name `company.employees` in a fit condition"
    );
    assert_eq!(
        d.help.as_deref(),
        Some("a profile trait is written `lead.company.employees`")
    );
    // `lead` alone
    let d = only(&format!("{R}score \"a\" +1 on X where lead\n"));
    assert_eq!(d.code, Code::BareName);
    // inside `where` a bare name is an event property: no error
    assert!(diagnostics(&format!(
        "{R}score \"a\" +1 on X where title matches /vp/\n"
    ))
    .is_empty());
    assert!(diagnostics(&format!(
        "{R}stage s when event X where title matches /vp/\n"
    ))
    .is_empty());
}

// ---------------------------------------------------------------------------------------
// E005 regex

#[test]
fn e005_invalid_regex() {
    let text = format!("{R}fit \"a\" +1 when lead.title matches /\\b(vp|director/i\n");
    let d = only(&text);
    assert_eq!(d.code, Code::BadRegex);
    assert_eq!(
        d.message,
        "invalid regex `/\\b(vp|director/`: unclosed group"
    );
    assert_eq!(place(&text, &d), (2, 36));
    assert_eq!(spanned(&text, &d), "/\\b(vp|director/i");
    assert_eq!(
        d.help.as_deref(),
        Some("regexes use Rust regex syntax; escape `/` as `\\/`")
    );
    // look-around is not supported
    let d = only(&format!(
        "{R}fit \"a\" +1 when lead.title matches /(?=vp)/\n"
    ));
    assert_eq!(d.code, Code::BadRegex);
}

// ---------------------------------------------------------------------------------------
// E006 between

#[test]
fn e006_between_low_above_high() {
    let text = format!("{R}fit \"a\" +1 when lead.company.employees between 5000 and 50\n");
    let d = only(&text);
    assert_eq!(d.code, Code::BetweenOrder);
    assert_eq!(
        d.message,
        "`between 5000 and 50` is never true: the low bound is above the high one"
    );
    assert_eq!(d.help.as_deref(), Some("write `between 50 and 5000`"));
    assert_eq!(place(&text, &d), (2, 48));
    assert_eq!(spanned(&text, &d), "5000 and 50");
    // equal bounds are fine
    assert!(diagnostics(&format!("{R}fit \"a\" +1 when lead.n between 5 and 5\n")).is_empty());
}

// ---------------------------------------------------------------------------------------
// E007 type mismatch

#[test]
fn e007_string_compared_with_a_score() {
    let text = format!("{R}stage mql when engagement >= \"40\"\n");
    let d = only(&text);
    assert_eq!(d.code, Code::TypeMismatch);
    assert_eq!(
        d.message,
        "`>=` compares a string with a number, which is never true"
    );
    assert_eq!(
        check(&text),
        "test.rules:2:30: error[E007]: `>=` compares a string with a number, which is never true\n\
         2 | stage mql when engagement >= \"40\"\n\
         \x20 |                              ^^^^\n\
         \x20 = help: values are not converted: write the number without quotes\n"
    );
    for src in [
        "stage a when \"40\" <= score\n",
        "stage a when count(X) within 1d == \"3\"\n",
        "score \"a\" +1 on X where fit between \"1\" and 5\n",
    ] {
        assert_eq!(codes(&format!("{R}{src}")), vec!["E007"], "{src}");
    }
    let d = only(&format!("{R}fit \"a\" +1 when lead.x ends_with 5\n"));
    assert_eq!(d.code, Code::TypeMismatch);
    // a trait may hold anything: no error
    assert!(diagnostics(&format!("{R}fit \"a\" +1 when lead.n >= \"40\"\n")).is_empty());
}

// ---------------------------------------------------------------------------------------
// E008 not allowed here

#[test]
fn e008_count_outside_a_stage() {
    let text = format!("{R}fit \"a\" +1 when count(X) within 1d >= 2\n");
    let d = only(&text);
    assert_eq!(d.code, Code::NotAllowed);
    assert_eq!(d.message, "`count(...)` cannot be used in a fit condition");
    assert_eq!(d.help.as_deref(), Some("use it in a `stage` condition"));
    assert_eq!(spanned(&text, &d), "count(X) within 1d");
    assert_eq!(
        check(&text),
        "test.rules:2:17: error[E008]: `count(...)` cannot be used in a fit condition\n\
         2 | fit \"a\" +1 when count(X) within 1d >= 2\n\
         \x20 |                 ^^^^^^^^^^^^^^^^^^\n\
         \x20 = help: use it in a `stage` condition\n"
    );
    let d = only(&format!(
        "{R}score \"a\" +1 on X where count(X) within 1d >= 2\n"
    ));
    assert_eq!(d.code, Code::NotAllowed);
    assert_eq!(
        d.message,
        "`count(...)` cannot be used in the `where` of a score rule"
    );
    let d = only(&format!(
        "{R}conversion \"c\" on X where sum(v of X) within 1d >= 2\n"
    ));
    assert_eq!(
        d.message,
        "`sum(...)` cannot be used in the `where` of a conversion"
    );
    let d = only(&format!(
        "{R}stage s when event X where count(X) within 1d >= 2\n"
    ));
    assert_eq!(
        d.message,
        "`count(...)` cannot be used in the `where` of an `event` predicate"
    );
    // nested counts
    let d = only(&format!(
        "{R}stage s when count(X where count(Y) within 1d > 1) within 1d >= 2\n"
    ));
    assert_eq!(d.code, Code::NotAllowed);
}

#[test]
fn e008_lead_and_scores_inside_count_and_sum_where() {
    let text = format!(
        "{R}stage pql when count(\"Feature Used\" where lead.plan == \"trial\") within 14d >= 10\n"
    );
    let d = only(&text);
    assert_eq!(d.code, Code::NotAllowed);
    assert_eq!(
        d.message,
        "`lead.plan` cannot be used in the `where` inside `count(...)` or `sum(...)`: an event is counted when it happens, from its own properties"
    );
    assert_eq!(spanned(&text, &d), "lead.plan");
    assert_eq!(place(&text, &d), (2, 43));
    let d = only(&format!(
        "{R}stage s when sum(rows of X where engagement > 1) within 1d >= 2\n"
    ));
    assert_eq!(d.code, Code::NotAllowed);
    assert!(d
        .message
        .starts_with("`engagement` cannot be used in the `where` inside"));
    // the event's own properties are fine
    assert!(diagnostics(&format!(
        "{R}stage s when count(X where plan == \"trial\") within 1d >= 2\n"
    ))
    .is_empty());
}

#[test]
fn e008_other_constructs_in_the_wrong_place() {
    for (src, message) in [
        (
            "fit \"a\" +1 when score > 1\n",
            "`score` cannot be used in a fit condition: fit depends only on the profile",
        ),
        (
            "fit \"a\" +1 when engagement > 1\n",
            "`engagement` cannot be used in a fit condition: fit depends only on the profile",
        ),
        (
            "stage a when fit > 1\nscore \"a\" +1 on X where reached a\n",
            "`reached` cannot be used in the `where` of a score rule",
        ),
        (
            "score \"a\" +1 on X where event X\n",
            "`event` cannot be used in the `where` of a score rule",
        ),
        (
            "stage a when fit > 1\nfit \"f\" +1 when reached a\n",
            "`reached` cannot be used in a fit condition",
        ),
        (
            "fit \"a\" +1 when lead.x in \"a\"\n",
            "`in` takes a list: `in [\"a\", \"b\"]`",
        ),
        (
            "fit \"a\" +1 when lead.x == /a/\n",
            "a regex can only follow `matches`",
        ),
        (
            "fit \"a\" +1 when lead.x == 7d\n",
            "a duration can only be used after `within`, `per` or `half_life`",
        ),
        (
            "fit \"a\" +1 when lead.x matches lead.y\n",
            "`matches` takes a regex: `matches /^vp/i`",
        ),
    ] {
        let d = only(&format!("{R}{src}"));
        assert_eq!(
            (d.code, d.message.as_str()),
            (Code::NotAllowed, message),
            "{src}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// E009 ruleset

#[test]
fn e009_missing_ruleset() {
    let text = "fit \"a\" +1 when lead.x == 1\n";
    let d = only(text);
    assert_eq!(d.code, Code::Ruleset);
    assert_eq!(d.message, "the rule set has no `ruleset` line");
    assert_eq!(
        check(text),
        "test.rules:1:1: error[E009]: the rule set has no `ruleset` line\n\
         1 | fit \"a\" +1 when lead.x == 1\n\
         \x20 | ^\n\
         \x20 = help: add a first line such as `ruleset \"acme-b2b\"`\n"
    );
    // an empty rule set too
    let compiled = compile(&file("# nothing here\n"));
    assert!(compiled.program.is_none());
    assert_eq!(compiled.diagnostics[0].code, Code::Ruleset);
}

#[test]
fn e009_ruleset_in_two_files() {
    let (compiled, files) = compile_files(&[
        ("rules/10-a.rules", "ruleset \"a\"\nscore \"s\" +1 on X\n"),
        ("rules/20-b.rules", "# second\nruleset \"b\"\n"),
    ]);
    assert!(compiled.program.is_none());
    assert_eq!(compiled.diagnostics.len(), 1);
    let d = &compiled.diagnostics[0];
    assert_eq!(d.code, Code::Ruleset);
    assert_eq!(d.span.file, 1);
    assert_eq!(
        render(d, &files),
        "rules/20-b.rules:2:1: error[E009]: a rule set has one `ruleset` line\n\
         2 | ruleset \"b\"\n\
         \x20 | ^^^^^^^^^^^\n\
         \x20 = help: remove this line, or merge the files into one rule set\n"
    );
}

// ---------------------------------------------------------------------------------------
// E010 numbers and durations

#[test]
fn e010_limit_zero() {
    let text = format!("{R}score \"a\" +1 on X limit 0 per 1d\n");
    let d = only(&text);
    assert_eq!(d.code, Code::BadLiteral);
    assert_eq!(
        d.message,
        "`limit 0` must be a whole number from 1 to 100000"
    );
    assert_eq!(place(&text, &d), (2, 25));
    assert_eq!(
        check(&text),
        "test.rules:2:25: error[E010]: `limit 0` must be a whole number from 1 to 100000\n\
         2 | score \"a\" +1 on X limit 0 per 1d\n\
         \x20 |                         ^\n"
    );
    let d = only(&format!("{R}score \"a\" +1 on X limit 2.5 per 1d\n"));
    assert_eq!(
        d.message,
        "`limit 2.5` must be a whole number from 1 to 100000"
    );
}

#[test]
fn e010_invalid_durations() {
    let text = format!("{R}decay engagement half_life 1mo\n");
    let d = only(&text);
    assert_eq!(d.code, Code::BadLiteral);
    assert_eq!(d.message, "invalid duration `1mo`");
    assert_eq!(
        check(&text),
        "test.rules:2:28: error[E010]: invalid duration `1mo`\n\
         2 | decay engagement half_life 1mo\n\
         \x20 |                            ^^^\n\
         \x20 = help: durations are a whole number and a unit: s, m (minutes), h, d, w; for a month write `30d`\n"
    );
    for (src, message) in [
        (
            "score \"a\" +1 on X limit 2 per 7\n",
            "invalid duration `7`",
        ),
        (
            "score \"a\" +1 on X limit 2 per 7 d\n",
            "invalid duration `7`",
        ),
        (
            "stage s when count(X) within 1.5d >= 1\n",
            "invalid duration `1.5d`",
        ),
        (
            "decay engagement half_life 0d\n",
            "`0d` is not a usable duration",
        ),
        ("cap engagement at 1e5\n", "invalid number `1e5`"),
    ] {
        let d = only(&format!("{R}{src}"));
        assert_eq!(
            (d.code, d.message.as_str()),
            (Code::BadLiteral, message),
            "{src}"
        );
    }
    // a cap below the floor
    let d = only(&format!(
        "{R}cap engagement at 10\nfloor engagement at 20\n"
    ));
    assert_eq!(d.code, Code::BadLiteral);
    assert_eq!(d.message, "the cap (10) is below the floor (20)");
}

// ---------------------------------------------------------------------------------------
// warnings

#[test]
fn w001_rules_that_can_never_fire() {
    let text = format!("{R}stage sql when reached sql and score >= 100\n");
    let d = only(&text);
    assert_eq!(d.code, Code::NeverFires);
    assert_eq!(d.severity, Severity::Warning);
    assert_eq!(
        check(&text),
        "test.rules:2:1: warning[W001]: stage `sql` can never be reached: its condition needs the stage itself\n\
         2 | stage sql when reached sql and score >= 100\n\
         \x20 | ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n\
         \x20 = help: remove `reached` of this stage from its own condition\n"
    );
    let d = only(&format!("{R}fit \"f\" +1 when lead.a and false\n"));
    assert_eq!(d.code, Code::NeverFires);
    assert_eq!(
        d.message,
        "the fit rule `f` can never fire: its condition is always false"
    );
    let d = only(&format!(
        "{R}stage a when fit >= 1 and event X and event Y\n"
    ));
    assert_eq!(d.code, Code::NeverFires);
    assert_eq!(
        d.message,
        "the stage `a` can never fire: one event cannot be both \"X\" and \"Y\""
    );
    let d = only(&format!("{R}score \"s\" +1 on X where 1 == 2\n"));
    assert_eq!(
        d.message,
        "the score rule `s` can never fire: its condition is always false"
    );
    // with an `or`, the stage's own `reached` is not fatal
    assert!(diagnostics(&format!("{R}stage sql when reached sql or score >= 100\n")).is_empty());
}

#[test]
fn w001_is_not_added_on_top_of_an_error_in_the_same_rule() {
    for src in [
        "stage mql when title matches /vp/i\n",
        "fit \"a\" +1 when lead.n between 5000 and 50\n",
        "fit \"a\" +1 when count(X) within 1d >= 2\n",
        "stage q when reached nope\n",
    ] {
        let codes = codes(&format!("{R}{src}"));
        assert_eq!(codes.len(), 1, "{src}: {codes:?}");
        assert!(codes[0].starts_with('E'), "{src}: {codes:?}");
    }
}

#[test]
fn w002_misspelt_event_name() {
    let text = format!(
        "{R}score \"Demo request\" +40 on \"Form Submitted\" where form == \"demo\"\n\
         stage sql when event \"Form Submitted\"\n\
         score \"Demo typo\" +40 on \"Form Submited\" where form == \"demo\"\n"
    );
    let d = only(&text);
    assert_eq!(d.code, Code::MaybeMisspelt);
    assert_eq!(d.severity, Severity::Warning);
    assert_eq!(
        d.message,
        "the event `Form Submited` looks like a misspelling of `Form Submitted`"
    );
    assert_eq!(
        check(&text),
        "test.rules:4:26: warning[W002]: the event `Form Submited` looks like a misspelling of `Form Submitted`\n\
         4 | score \"Demo typo\" +40 on \"Form Submited\" where form == \"demo\"\n\
         \x20 |                          ^^^^^^^^^^^^^^^\n\
         \x20 = help: did you mean `Form Submitted`?\n"
    );
    // in a count too
    let d = only(&format!(
        "{R}score \"a\" +1 on \"Feature Used\"\nscore \"b\" +1 on \"Feature Used\"\n\
         stage pql when count(\"Feature Usd\") within 14d >= 10\n"
    ));
    assert_eq!(d.code, Code::MaybeMisspelt);
    assert_eq!(d.help.as_deref(), Some("did you mean `Feature Used`?"));
}

#[test]
fn w003_notify_for_an_unknown_conversion() {
    let text =
        format!("{R}conversion \"Purchase\" on X\nnotify revenue when converted \"Purchases\"\n");
    let d = only(&text);
    assert_eq!(d.code, Code::UnknownConversion);
    assert_eq!(d.severity, Severity::Warning);
    assert_eq!(
        check(&text),
        "test.rules:3:31: warning[W003]: no conversion is named `Purchases`; this notification is never sent\n\
         3 | notify revenue when converted \"Purchases\"\n\
         \x20 |                               ^^^^^^^^^^^\n\
         \x20 = help: did you mean `Purchase`?\n"
    );
    let d = only(&format!("{R}notify revenue when converted Refund\n"));
    assert_eq!(d.code, Code::UnknownConversion);
    assert_eq!(
        d.help.as_deref(),
        Some("declare it with `conversion \"...\" on ...`")
    );
}

#[test]
fn a_rule_set_with_only_warnings_compiles() {
    let text = format!(
        "{R}score \"a\" +1 on \"Form Submitted\"\nscore \"b\" +1 on \"Form Submitted\"\n\
         score \"c\" +1 on \"Form Submited\"\n\
         stage sql when reached sql and score >= 100\n\
         conversion \"Purchase\" on X\nnotify revenue when converted \"Purchases\"\n"
    );
    let compiled = compile(&file(&text));
    let codes: Vec<&str> = compiled
        .diagnostics
        .iter()
        .map(|d| d.code.as_str())
        .collect();
    assert_eq!(codes, vec!["W002", "W001", "W003"]);
    assert!(compiled.diagnostics.iter().all(|d| !d.is_error()));
    let program = compiled
        .program
        .expect("warnings alone do not stop compiling");
    assert_eq!(program.scores.len(), 3);
    // the notification for an unknown conversion is dropped, not sent to everything
    assert!(program.notifies.is_empty());
}

// ---------------------------------------------------------------------------------------
// several files

#[test]
fn errors_in_two_files_of_one_rule_set() {
    let (compiled, files) = compile_files(&[
        (
            "rules/10-fit.rules",
            "ruleset \"acme\"\nfit \"Senior\" +15 when title matches /vp/i\n",
        ),
        (
            "rules/20-stages.rules",
            "# stages\nstage mql when engagement >= 40\nnotify sales when reached mq1\n",
        ),
    ]);
    assert!(compiled.program.is_none());
    let files_of: Vec<usize> = compiled.diagnostics.iter().map(|d| d.span.file).collect();
    assert_eq!(files_of, vec![0, 1]);
    assert_eq!(
        rendered(&compiled, &files),
        "rules/10-fit.rules:2:23: error[E004]: unknown name `title` in a fit condition\n\
         2 | fit \"Senior\" +15 when title matches /vp/i\n\
         \x20 |                       ^^^^^\n\
         \x20 = help: a profile trait is written `lead.title`\n\
         rules/20-stages.rules:3:27: error[E002]: unknown stage `mq1`\n\
         3 | notify sales when reached mq1\n\
         \x20 |                           ^^^\n\
         \x20 = help: did you mean `mql`?\n"
    );
}

#[test]
fn names_resolve_across_files_and_duplicates_across_files_point_at_the_other_file() {
    let (compiled, _) = compile_files(&[
        ("a.rules", "ruleset \"r\"\nnotify sales when reached sql\n"),
        ("b.rules", "stage sql when fit > 1\n"),
    ]);
    assert!(
        compiled.diagnostics.is_empty(),
        "{:?}",
        compiled.diagnostics
    );
    assert!(compiled.program.is_some());

    let (compiled, files) = compile_files(&[
        ("a.rules", "ruleset \"r\"\nstage sql when fit > 1\n"),
        ("b.rules", "\nstage sql when fit > 2\n"),
    ]);
    assert_eq!(compiled.diagnostics.len(), 1);
    let d = &compiled.diagnostics[0];
    assert_eq!(d.span.file, 1);
    assert_eq!(
        render(d, &files),
        "b.rules:2:7: error[E003]: the stage `sql` is declared twice\n\
         2 | stage sql when fit > 2\n\
         \x20 |       ^^^\n\
         \x20 = help: the first one is at a.rules:2:7; give each one its own name\n"
    );
}

#[test]
fn diagnostics_are_in_file_and_source_order() {
    let (compiled, _) = compile_files(&[
        ("a.rules", "stage b when reached zz\nstage a when title\n"),
        ("b.rules", "scor x\nruleset \"r\"\nruleset \"s\"\n"),
    ]);
    let got: Vec<(usize, &str)> = compiled
        .diagnostics
        .iter()
        .map(|d| (d.span.file, d.code.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![(0, "E002"), (0, "E004"), (1, "E001"), (1, "E009")]
    );
    let mut sorted = compiled.diagnostics.clone();
    sorted.sort_by_key(|d| (d.span.file, d.span.start));
    assert_eq!(sorted, compiled.diagnostics);
}

#[test]
fn render_wide_line_numbers_and_tabs_and_json() {
    let mut text = String::from(R);
    for i in 0..9 {
        text.push_str(&format!("score \"s{i}\" +1 on X\n"));
    }
    text.push_str("stage a when\treached zzzz\n");
    let files = file(&text);
    let compiled = compile(&files);
    assert_eq!(
        rendered(&compiled, &files),
        "test.rules:11:22: error[E002]: unknown stage `zzzz`\n\
         11 | stage a when\treached zzzz\n\
         \x20  |             \t        ^^^^\n\
         \x20  = help: the stages are `a`\n"
    );
    let json = to_json(&compiled.diagnostics[0], &files);
    let value = serde_json::to_value(&json).unwrap();
    assert_eq!(
        value,
        serde_json::json!({
            "file": "test.rules", "severity": "error", "code": "E002",
            "message": "unknown stage `zzzz`",
            "start": {"line": 11, "column": 22}, "end": {"line": 11, "column": 26},
            "help": "the stages are `a`"
        })
    );
}

#[test]
fn a_clean_rule_set_has_no_diagnostics() {
    let text = r#"ruleset "acme-b2b"

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
    let compiled = compile(&[SourceFile {
        name: "acme.rules".into(),
        text: text.into(),
    }]);
    assert!(
        compiled.diagnostics.is_empty(),
        "{:?}",
        compiled.diagnostics
    );
    let p = compiled.program.unwrap();
    assert_eq!(p.name, "acme-b2b");
    assert_eq!(
        (
            p.fits.len(),
            p.scores.len(),
            p.stages.len(),
            p.conversions.len(),
            p.notifies.len()
        ),
        (3, 5, 4, 2, 2)
    );
    assert_eq!(p.half_life, Some(30 * DAY));
    assert_eq!(p.cap, Some(150.0));
}

/// Runs `f` on a thread with the stack a program's main thread has (8 MiB), as `check`,
/// `fmt` and the functions do.
fn on_main_sized_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(8 << 20)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn conditions_nest_32_levels_deep_and_no_deeper() {
    on_main_sized_stack(|| {
        let max = leadscore_rules::syntax::MAX_NESTING;
        type Shape = (&'static str, fn(usize) -> String);
        let shapes: [Shape; 3] = [
            ("parentheses", |n| {
                format!("{}lead.a == 1{}", "(".repeat(n), ")".repeat(n))
            }),
            ("not", |n| format!("{}lead.a == 1", "not ".repeat(n))),
            ("mixed", |n| {
                let half = n / 2;
                format!(
                    "{}{}lead.a == 1{}",
                    "(not ".repeat(half),
                    "not ".repeat(n - 2 * half),
                    ")".repeat(half)
                )
            }),
        ];
        for (what, cond) in shapes {
            let ok = format!("ruleset \"deep\"\nfit \"x\" +1 when {}\n", cond(max));
            assert!(
                diagnostics(&ok).is_empty(),
                "{what} at {max}: {}",
                check(&ok)
            );
            assert!(
                leadscore_rules::format::format_source(&ok).is_ok(),
                "{what}"
            );
            let deep = format!("ruleset \"deep\"\nfit \"x\" +1 when {}\n", cond(max + 1));
            let d = only(&deep);
            assert_eq!(d.code, Code::Syntax, "{what}");
            assert_eq!(d.message, "this condition nests more than 32 levels deep");
            assert_eq!(place(&deep, &d).0, 2, "{what}");
            assert!(
                leadscore_rules::format::format_source(&deep).is_err(),
                "{what}"
            );
            // a thousand levels: refused the same way, never a crash
            let hostile = format!("ruleset \"deep\"\nfit \"x\" +1 when {}\n", cond(1000));
            assert_eq!(only(&hostile).message, d.message, "{what}");
        }
        // brackets inside strings and regexes are text, not levels
        let text = format!(
            "ruleset \"s\"\nfit \"x\" +1 when lead.a == \"{}\" or lead.b matches /{}/\n",
            "(".repeat(100),
            "\\(".repeat(100)
        );
        assert!(diagnostics(&text).is_empty(), "{}", check(&text));
    });
}
