//! Inputs the fuzz targets found (fuzz/, docs/SECURITY.md "Fuzzing"), kept under
//! tests/fixtures/fuzz/<target>/ and replayed here through the check that failed, so that a
//! fixed finding stays fixed in the normal suite (tests/fixtures/fuzz/README.md lists them).

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

/// The rules target: an accepted rule must read back, from the JSON the database keeps,
/// as the same rule (the live engine re-reads every stored definition and skips those it
/// refuses).
#[test]
fn accepted_rules_read_back_from_their_stored_form() {
    for (path, input) in fixtures("rules") {
        let (mode, text) = input.split_first().expect("a mode byte");
        let format = match mode % 4 {
            0 => Format::Json,
            1 => Format::Toml,
            _ => panic!("{}: not a rule input", path.display()),
        };
        let text = String::from_utf8_lossy(text);
        let rule = parse_rule_text(&text, format)
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
}
