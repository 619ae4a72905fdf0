//! Inputs the fuzz targets found (fuzz/, docs/SECURITY.md "Fuzzing"), kept under
//! tests/fixtures/fuzz/<target>/ and replayed here through the check that failed, so that a
//! fixed finding stays fixed in the normal suite (tests/fixtures/fuzz/README.md lists them).

use postern::rules::facts::{CustomerFacts, Facts, TicketFacts};
use postern::rules::macros::{self, Macro, Missing};
use postern::rules::{parse_rule, parse_rule_text, Format};
use std::path::{Path, PathBuf};

/// The files of tests/fixtures/fuzz/`target`, with their bytes; never empty.
fn fixtures(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fuzz")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, bytes)
        })
        .collect()
}

/// The rules target, first byte 0 (JSON) or 1 (TOML): an accepted rule must read back, from
/// the JSON the database keeps, as the same rule (the live engine re-reads every stored
/// definition and skips those it refuses).
fn check_rule(path: &Path, format: Format, text: &str) {
    let rule = parse_rule_text(text, format)
        .unwrap_or_else(|e| panic!("{}: the input is a valid rule: {e}", path.display()));
    let stored = rule.to_json();
    let again = parse_rule(&stored).unwrap_or_else(|e| {
        panic!(
            "{}: the stored form of an accepted rule is refused: {e}\n{stored}",
            path.display()
        )
    });
    assert_eq!(again.to_json(), stored, "{}", path.display());
    assert_eq!(
        again.reply_window_minutes,
        rule.reply_window_minutes,
        "{}",
        path.display()
    );
}

/// The rules target, first byte 2: a template that compiles renders, or fails to render with
/// an error, and never panics (a panic ends the rules worker).
fn check_template(path: &Path, text: &str) {
    macros::check_template(text)
        .unwrap_or_else(|e| panic!("{}: the input is a valid template: {e}", path.display()));
    let facts = Facts {
        ticket: TicketFacts {
            subject: "Commande 1234".into(),
            customer: Some(CustomerFacts {
                email: "jo@example.test".into(),
                name: Some("Jo Martin".into()),
                attributes: serde_json::json!({"vip": true}),
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let m = Macro {
        id: 1,
        name: "m".into(),
        subject: Some(text.to_string()),
        body: text.to_string(),
        missing: Missing::Empty,
    };
    if let Err(e) = macros::render(&m, &facts) {
        assert!(
            !e.message.is_empty(),
            "{}: an error says why",
            path.display()
        );
    }
}

#[test]
fn rules_and_templates_found_by_fuzzing() {
    for (path, input) in fixtures("rules") {
        let (mode, text) = input.split_first().expect("a mode byte");
        let text = String::from_utf8_lossy(text);
        match mode % 4 {
            0 => check_rule(&path, Format::Json, &text),
            1 => check_rule(&path, Format::Toml, &text),
            2 => check_template(&path, &text),
            _ => panic!("{}: business hours have no finding yet", path.display()),
        }
    }
}
