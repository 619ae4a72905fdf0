//! Organisational domains against the public suffix list's own test vectors
//! (../shared/corpora/publicsuffix-list/tests/test_psl.txt: `checkPublicSuffix(input, expected)`,
//! expected being the registrable domain or null).
//!
//! `postern::auth::org_domain` answers in lower-case A-labels, so an expected name written in
//! Unicode (`食狮.公司.cn`) is compared in its A-label form; the vectors' own punycoded half
//! (`xn--85x722f.xn--55qx5d.cn`) checks that conversion independently. A null input is the
//! empty string.
//!
//! The crate's compiled-in list is not the corpus's snapshot: `list_versions_differ_only_on_
//! private_rules` measures how far they are apart, rule by rule, against a small reference
//! matcher reading the corpus's public_suffix_list.dat.

use postern::auth::org_domain::{
    normalize_domain, organizational_domain, registrable_domain, relaxed_aligned,
};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

/// Vectors whose result differs from the expected one, each with its reason (see
/// docs/conformance/dkim.md, "Organisational domains").
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[
    (
        "example.local",
        "vector disabled upstream (commented out): `local` is no longer on the list, so the implicit * rule makes example.local registrable",
    ),
    (
        "b.example.local",
        "vector disabled upstream (commented out): `local` is no longer on the list, so the implicit * rule makes example.local registrable",
    ),
    (
        "a.b.example.local",
        "vector disabled upstream (commented out): `local` is no longer on the list, so the implicit * rule makes example.local registrable",
    ),
];

/// 78 active vectors and the 4 the suite comments out (`//checkPublicSuffix('local', null);`
/// and three below it); those are run too, their differences listed above.
const EXPECTED_VECTORS: usize = 82;
const DISABLED_VECTORS: usize = 4;

fn psl_dir() -> PathBuf {
    crate::common::corpora_dir().join("publicsuffix-list")
}

#[derive(Debug)]
struct Vector {
    line: usize,
    /// Commented out in the suite.
    disabled: bool,
    input: Option<String>,
    expected: Option<String>,
}

/// `null` or a single-quoted string.
fn arg(text: &str) -> Option<String> {
    let text = text.trim();
    if text == "null" {
        return None;
    }
    let inner = text
        .strip_prefix('\'')
        .and_then(|t| t.strip_suffix('\''))
        .unwrap_or_else(|| panic!("unexpected argument {text:?} in test_psl.txt"));
    Some(inner.to_string())
}

fn vectors() -> Vec<Vector> {
    let path = psl_dir().join("tests/test_psl.txt");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        let disabled = trimmed.starts_with("//");
        let Some(rest) = trimmed
            .trim_start_matches('/')
            .trim_start()
            .strip_prefix("checkPublicSuffix(")
        else {
            continue;
        };
        let args = rest
            .strip_suffix(");")
            .unwrap_or_else(|| panic!("line {}: unterminated call: {line}", n + 1));
        let (input, expected) = args
            .split_once(',')
            .unwrap_or_else(|| panic!("line {}: two arguments expected: {line}", n + 1));
        out.push(Vector {
            line: n + 1,
            disabled,
            input: arg(input),
            expected: arg(expected),
        });
    }
    out
}

#[test]
fn public_suffix_list_vectors() {
    let vectors = vectors();
    assert_eq!(
        vectors.len(),
        EXPECTED_VECTORS,
        "test_psl.txt should hold {EXPECTED_VECTORS} vectors"
    );
    assert_eq!(
        vectors.iter().filter(|v| v.disabled).count(),
        DISABLED_VECTORS
    );
    let known: HashMap<&str, &str> = KNOWN_DIFFERENCES.iter().copied().collect();
    let mut passed = 0;
    let mut failures = Vec::new();
    let mut known_seen = HashSet::new();
    for v in &vectors {
        let input = v.input.as_deref().unwrap_or("");
        // Expected names in A-label form (the form the function answers in).
        let expected = v.expected.as_deref().map(|e| {
            normalize_domain(e)
                .unwrap_or_else(|| panic!("line {}: expected {e:?} is not a valid name", v.line))
        });
        let got = registrable_domain(input);
        if got == expected {
            passed += 1;
            if known.contains_key(input) {
                failures.push(format!(
                    "line {}: {input:?} is listed as a known difference but now passes",
                    v.line
                ));
            }
        } else if let Some(reason) = known.get(input) {
            known_seen.insert(input.to_string());
            println!(
                "known difference, line {}{}: {input:?}: expected {expected:?}, got {got:?} ({reason})",
                v.line,
                if v.disabled { " (disabled upstream)" } else { "" }
            );
        } else {
            failures.push(format!(
                "line {}: registrable_domain({input:?}) = {got:?}, expected {expected:?}",
                v.line
            ));
        }

        // organizational_domain: the registrable domain, else the name itself.
        let org = organizational_domain(input);
        let want = match (&expected, normalize_domain(input)) {
            (Some(e), _) => e.clone(),
            (None, Some(name)) => name,
            (None, None) => input.trim().to_lowercase(),
        };
        if got == expected && org != want {
            failures.push(format!(
                "line {}: organizational_domain({input:?}) = {org:?}, expected {want:?}",
                v.line
            ));
        }
    }
    println!(
        "publicsuffix-list test_psl.txt: {passed} passed, {} known differences, {} failed, of {}",
        known_seen.len(),
        failures.len(),
        vectors.len()
    );
    crate::common::fixture_cases::assert_none_failed(&failures, "failures");
    assert!(passed >= EXPECTED_VECTORS - KNOWN_DIFFERENCES.len());
}

/// The vectors' IDN section is written twice, in Unicode and then punycoded, in the same order:
/// the A-label form computed here must be the one the suite wrote.
#[test]
fn unicode_and_punycode_vectors_agree() {
    let vectors = vectors();
    let non_ascii: Vec<&Vector> = vectors
        .iter()
        .filter(|v| v.input.as_deref().is_some_and(|i| !i.is_ascii()))
        .collect();
    let punycoded: Vec<&Vector> = vectors
        .iter()
        .filter(|v| v.input.as_deref().is_some_and(|i| i.contains("xn--")))
        .collect();
    assert_eq!(non_ascii.len(), 9, "IDN section: 9 Unicode vectors");
    assert_eq!(punycoded.len(), non_ascii.len());
    for (u, p) in non_ascii.iter().zip(&punycoded) {
        let (ui, pi) = (u.input.as_deref(), p.input.as_deref());
        assert_eq!(
            ui.and_then(normalize_domain).as_deref(),
            pi,
            "line {} vs line {}",
            u.line,
            p.line
        );
        assert_eq!(
            u.expected.as_deref().and_then(normalize_domain).as_deref(),
            p.expected.as_deref(),
            "line {} vs line {}",
            u.line,
            p.line
        );
    }
}

#[test]
fn postern_conventions() {
    // Public suffixes and lone labels are their own organisational domain.
    assert_eq!(organizational_domain("CO.UK."), "co.uk");
    assert_eq!(organizational_domain("example"), "example");
    assert_eq!(registrable_domain("example"), None);
    // Not host names: trimmed and lower-cased, never aligned with anything.
    assert_eq!(organizational_domain(" .Example.com "), ".example.com");
    assert_eq!(organizational_domain("[192.0.2.1]"), "[192.0.2.1]");
    assert_eq!(normalize_domain("a..b"), None);
    assert_eq!(normalize_domain(&"a".repeat(64)), None);
    assert!(!relaxed_aligned("[192.0.2.1]", "[192.0.2.1]"));
    // Fullwidth and ideographic full stops separate labels (UTS #46).
    assert_eq!(
        organizational_domain("WWW．食狮。公司｡CN"),
        "xn--85x722f.xn--55qx5d.cn"
    );
    assert!(relaxed_aligned("news.食狮.中国", "xn--85x722f.xn--fiqs8s"));
    // Private-section suffixes count (RFC 7489 uses the whole list).
    assert!(!relaxed_aligned("alice.github.io", "mallory.github.io"));
    assert!(relaxed_aligned(
        "bounces.shop.example.co.uk",
        "Shop.Example.co.uk"
    ));
}

/// A reference matcher over the corpus's public_suffix_list.dat (the algorithm of
/// publicsuffix.org/list/), to measure how the compiled-in list differs from that snapshot.
struct Reference {
    rules: HashSet<String>,
    wildcards: HashSet<String>,
    exceptions: HashSet<String>,
}

impl Reference {
    fn load() -> (Self, Vec<(String, bool)>) {
        let path = psl_dir().join("public_suffix_list.dat");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let mut r = Reference {
            rules: HashSet::new(),
            wildcards: HashSet::new(),
            exceptions: HashSet::new(),
        };
        let mut all = Vec::new();
        let mut private = false;
        for line in text.lines() {
            let line = line.trim();
            if line.contains("===BEGIN PRIVATE DOMAINS===") {
                private = true;
            }
            let Some(rule) = line.split_whitespace().next() else {
                continue;
            };
            if rule.starts_with("//") {
                continue;
            }
            let (set, body) = if let Some(b) = rule.strip_prefix('!') {
                (&mut r.exceptions, b)
            } else if let Some(b) = rule.strip_prefix("*.") {
                (&mut r.wildcards, b)
            } else {
                (&mut r.rules, rule)
            };
            let name = normalize_domain(body)
                .unwrap_or_else(|| panic!("rule {rule:?} of the list is not a valid name"));
            set.insert(name.clone());
            all.push((rule.replace(body, &name), private));
        }
        (r, all)
    }

    /// Registrable domain of an A-label name, by the list's algorithm.
    fn registrable(&self, name: &str) -> Option<String> {
        let labels: Vec<&str> = name.split('.').collect();
        let n = labels.len();
        let mut suffix_len = 1; // the implicit "*" rule
        for k in 1..=n {
            let tail = labels[n - k..].join(".");
            if self.exceptions.contains(&tail) {
                suffix_len = k - 1;
                break;
            }
            if self.rules.contains(&tail) {
                suffix_len = suffix_len.max(k);
            }
            if self.wildcards.contains(&tail) {
                // `*.tail`: one more label is part of the suffix (when the name is `tail`
                // itself, that makes it a public suffix with nothing registrable).
                suffix_len = suffix_len.max(k + 1);
            }
        }
        (n > suffix_len).then(|| labels[n - suffix_len - 1..].join("."))
    }
}

#[test]
fn reference_matcher_passes_the_vectors() {
    let (reference, _) = Reference::load();
    // The disabled `local` vectors are obsolete for this list too.
    for v in vectors().into_iter().filter(|v| !v.disabled) {
        let input = v.input.as_deref().unwrap_or("");
        let got = normalize_domain(input).and_then(|n| reference.registrable(&n));
        let expected = v.expected.as_deref().and_then(normalize_domain);
        assert_eq!(
            got, expected,
            "reference matcher, line {}: {input:?}",
            v.line
        );
    }
}

/// For every rule of the corpus's list, a name two labels below it must get the same
/// registrable domain from psl as from the reference: the rules that disagree are those added
/// to or removed from the list between the two versions.
#[test]
fn list_versions_differ_only_on_private_rules() {
    let (reference, rules) = Reference::load();
    let mut differ = Vec::new();
    let mut icann = 0;
    for (rule, private) in &rules {
        let body = rule.trim_start_matches('!').trim_start_matches("*.");
        let probe = format!("a.b.{body}");
        let want = reference.registrable(&probe);
        let got = registrable_domain(&probe);
        if got != want {
            icann += usize::from(!private);
            differ.push(format!(
                "{} rule {rule}: {probe} -> psl {got:?}, corpus list {want:?}",
                if *private { "private" } else { "ICANN" }
            ));
        }
    }
    println!(
        "psl crate vs corpus public_suffix_list.dat: {} of {} rules give a different answer",
        differ.len(),
        rules.len()
    );
    for d in &differ {
        println!("  {d}");
    }
    // ICANN suffixes (what mail domains are registered under) must agree.
    assert_eq!(icann, 0, "ICANN-section rules differ");
    // The two lists are a few months apart: a real PSL, not a stub or a far older copy.
    assert!(
        differ.len() * 100 <= rules.len(),
        "more than 1% of the rules differ"
    );
}
