//! Table tests over a folder of fixture files: the case names, and one verdict that names
//! every failing case.

use std::path::{Path, PathBuf};

/// The folder `tests/fixtures/<name>` of this project.
pub fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The names (without `.ext`) of the `*.ext` files in `dir`, sorted; fails when there are
/// none, so that a table test cannot pass by running nothing.
pub fn case_names(dir: &Path, ext: &str) -> Vec<String> {
    let suffix = format!(".{ext}");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| {
            let name = e.ok()?.file_name().to_string_lossy().into_owned();
            Some(name.strip_suffix(&suffix)?.to_string())
        })
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no *{suffix} cases in {}", dir.display());
    names
}

/// Reads the file `<name>.<ext>` of `dir`.
pub fn read_case(dir: &Path, name: &str, ext: &str) -> Result<String, String> {
    let path = dir.join(format!("{name}.{ext}"));
    std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Adds a case's outcome to `failures`: the case could not run (`Err`), or what differs
/// from its expectation (a non-empty list).
pub fn record(failures: &mut Vec<String>, name: &str, outcome: Result<Vec<String>, String>) {
    match outcome {
        Ok(problems) if problems.is_empty() => {}
        Ok(problems) => failures.push(format!("{name}: {}", problems.join("\n    "))),
        Err(e) => failures.push(format!("{name}: {e}")),
    }
}

/// Fails with every failing case, one a line, after all cases have run.
pub fn assert_all_passed(failures: &[String], total: usize) {
    assert_none_failed(failures, &format!("of {total} cases failed"));
}

/// Prints every failure, one a line, then fails with all of them unless there are none;
/// the message counts them and says `what` they are.
pub fn assert_none_failed(failures: &[String], what: &str) {
    for f in failures {
        println!("  FAIL {f}");
    }
    assert!(
        failures.is_empty(),
        "{} {what}:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
