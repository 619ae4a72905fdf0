//! The openspf RFC 4408 test suite and pyspf's own test.yml (../shared/corpora/spf-suites),
//! every scenario run through the code path Postern uses on inbound mail:
//! `Authenticator::verify` on a resolver pointed at a loopback DNS server that serves the
//! scenario's zone data.
//!
//! Run with `cargo test --test it auth::spf_suites -- --nocapture` to see the table of differences.
//! docs/conformance/spf.md explains every entry of tests/fixtures/spf_known_differences.txt.
//!
//! How the suites' conventions are mapped (the same as pyspf's driver, test/testspf.py):
//! - `SPF` records (type 99, dropped by RFC 7208) are served as type 99 and, when the name has
//!   no `TXT` entry at all, also as TXT: the suite relies on drivers copying SPF to TXT, except
//!   in "Record lookup" and "Selecting records", where a name with TXT entries keeps only them.
//! - `TXT: NONE` means no TXT record (it still stops the copy of SPF records to TXT).
//! - `TIMEOUT` in a name's list: queries for every record type that the name does not have
//!   are never answered (the resolver gives up after `DNS_TIMEOUT`).
//! - A TXT value given as a list is one record of several character-strings (joined with no
//!   space, RFC 7208 3.3). Strings are served as their UTF-8 bytes.
//! - An empty `mailfrom` means the check is on the HELO identity: the HELO verdict is compared.
//!   Otherwise the MAIL FROM verdict is.
//! - `explanation: DEFAULT` is the driver's default explanation (no `exp=` applied): Postern
//!   reports no reason then.

use crate::common::dns::{TestDns, Zone};
use postern::auth::{Authenticator, SmtpFacts};
use serde::Deserialize;
use serde_yaml::Value;
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

/// Bounds every lookup of a `TIMEOUT` name.
const DNS_TIMEOUT: Duration = Duration::from_millis(300);
/// What one verification may take at most before it counts as hung.
const VERIFY_LIMIT: Duration = Duration::from_secs(20);
/// The receiving host (`%{r}`).
const RECEIVER: &str = "receiver.com";
/// SPF does not read the message; its From domain is in no zone, so DMARC finds nothing fast.
const MESSAGE: &[u8] = b"From: x@postern-spf-suite.invalid\r\nSubject: t\r\n\r\nbody\r\n";

/// At least this many of the 207 tests agree with the suites (measured 2026-11-22 with
/// `cargo test`, a debug build; a release build agrees on 14 more, see
/// [`AGREE_WITHOUT_OVERFLOW_CHECKS`]).
const MIN_PASSING: usize = 127;

const RFC: &str = "rfc4408-tests.yml";
const PYSPF: &str = "test.yml";

/// Every test whose outcome differs from the suite, with the reason, as
/// tests/fixtures/spf_known_differences.txt lists them (it says how). A difference not listed
/// there fails the test, and so does a listed one that now agrees. docs/conformance/spf.md
/// explains them.
struct KnownDifference {
    suite: &'static str,
    test: &'static str,
    reason: &'static str,
}

fn known_differences() -> Vec<KnownDifference> {
    const FILE: &str = include_str!("../../fixtures/spf_known_differences.txt");
    fn bad(n: usize, line: &str) -> ! {
        panic!("spf_known_differences.txt line {}: {line:?}", n + 1)
    }
    let mut reasons = std::collections::HashMap::new();
    let mut known = Vec::new();
    for (n, line) in FILE.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(named) = line.strip_prefix('=') {
            let (name, reason) = named.split_once(' ').unwrap_or_else(|| bad(n, line));
            reasons.insert(name, reason);
            continue;
        }
        let mut parts = line.splitn(3, ' ');
        let (Some(suite), Some(test), Some(reason)) = (parts.next(), parts.next(), parts.next())
        else {
            bad(n, line)
        };
        let reason = match reason.strip_prefix('=') {
            Some(name) => reasons.get(name).copied().unwrap_or_else(|| bad(n, line)),
            None => reason,
        };
        known.push(KnownDifference {
            suite,
            test,
            reason,
        });
    }
    known
}

/// Entries of tests/fixtures/spf_known_differences.txt that agree with the suite in builds without overflow
/// checks (release): the /0 mask wraps to /32 (/128), which happens to give the expected
/// result here (a-cidr4-0, mx-cidr4-0, cidr4-0 and cidr6-0 still differ).
const AGREE_WITHOUT_OVERFLOW_CHECKS: &[&str] = &[
    "a-nxdomain",
    "a-cidr4-0-ip6",
    "a-cidr6-0-ip4",
    "a-cidr6-0-ip4mapped",
    "a-cidr6-0-ip6",
    "a-cidr6-0-nxdomain",
    "mx-nxdomain",
    "mx-cidr4-0-ip6",
    "mx-cidr6-0-ip4",
    "mx-cidr6-0-ip4mapped",
    "mx-cidr6-0-ip6",
    "mx-cidr6-0-nxdomain",
    "cidr6-0-ip4",
    "cidr6-ip4",
];

struct Case {
    name: String,
    helo: String,
    host: IpAddr,
    mailfrom: String,
    results: Vec<String>,
    explanation: Option<String>,
}

struct Scenario {
    title: String,
    zone: Zone,
    cases: Vec<Case>,
}

fn text(value: &Value, what: &str) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("{what}: expected a string, found {other:?}"),
    }
}

/// The wire form of a domain name (for PTR data at names given literally).
fn wire_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        out.push(u8::try_from(label.len()).expect("label of at most 255 bytes"));
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

/// TXT or SPF data: one string, or a list of character-strings.
fn strings(value: &Value, what: &str) -> Vec<String> {
    match value {
        Value::Sequence(items) => items.iter().map(|v| text(v, what)).collect(),
        other => vec![text(other, what)],
    }
}

const TYPES: [&str; 7] = ["A", "AAAA", "MX", "TXT", "SPF", "PTR", "CNAME"];

fn build_zone(zonedata: &Value) -> Zone {
    let mut zone = Zone::new();
    let Some(map) = zonedata.as_mapping() else {
        return zone;
    };
    for (name, records) in map {
        let name = text(name, "zone name");
        let mut entries: Vec<(String, Value)> = Vec::new();
        let mut timeout = false;
        for record in records.as_sequence().map(|s| s.as_slice()).unwrap_or(&[]) {
            match record {
                Value::String(s) if s == "TIMEOUT" => timeout = true,
                Value::Mapping(m) => {
                    for (t, v) in m {
                        entries.push((text(t, "record type").to_ascii_uppercase(), v.clone()));
                    }
                }
                other => panic!("zone {name}: unexpected entry {other:?}"),
            }
        }
        let has_txt = entries.iter().any(|(t, _)| t == "TXT");
        let mut served: BTreeSet<&str> = BTreeSet::new();
        for (rtype, value) in &entries {
            let what = format!("{name} {rtype}");
            if matches!(value, Value::String(s) if s == "NONE") {
                continue;
            }
            match rtype.as_str() {
                "TXT" | "SPF" => {
                    let parts = strings(value, &what);
                    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
                    if rtype == "SPF" {
                        let bytes: Vec<&[u8]> = parts.iter().map(|s| s.as_bytes()).collect();
                        zone = zone.spf_bytes(&name, &bytes);
                        served.insert("SPF");
                    }
                    if rtype == "TXT" || !has_txt {
                        zone = zone.txt_multi(&name, &parts);
                        served.insert("TXT");
                    }
                }
                "A" => {
                    let ip: Ipv4Addr = text(value, &what).parse().expect(&what);
                    zone = zone.a(&name, ip);
                    served.insert("A");
                }
                "AAAA" => {
                    let ip: Ipv6Addr = text(value, &what).parse().expect(&what);
                    zone = zone.aaaa(&name, ip);
                    served.insert("AAAA");
                }
                "MX" => {
                    let pair = value.as_sequence().expect(&what);
                    let pref: u16 = text(&pair[0], &what).parse().expect(&what);
                    zone = zone.mx(&name, pref, &text(&pair[1], &what));
                    served.insert("MX");
                }
                "PTR" => {
                    zone = zone.raw(&name, 12, &wire_name(&text(value, &what)));
                    served.insert("PTR");
                }
                "CNAME" => {
                    zone = zone.cname(&name, &text(value, &what));
                    served.insert("CNAME");
                }
                other => panic!("zone {name}: unknown record type {other}"),
            }
        }
        if timeout {
            if served.is_empty() {
                zone = zone.timeout(&name);
            } else {
                for t in TYPES.iter().filter(|t| !served.contains(*t)) {
                    zone = zone.timeout_type(&name, t);
                }
            }
        }
    }
    zone
}

fn load(suite: &'static str) -> Vec<Scenario> {
    let path = crate::common::corpora_dir().join("spf-suites").join(suite);
    let source = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut scenarios = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(&source).enumerate() {
        let doc = Value::deserialize(document)
            .unwrap_or_else(|e| panic!("{suite}: document {index}: {e}"));
        if doc.is_null() {
            continue;
        }
        let title = doc
            .get("description")
            .or_else(|| doc.get("comment"))
            .map(|v| text(v, "description"))
            .unwrap_or_default()
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        let title = if title.is_empty() {
            format!("#{}", index + 1)
        } else {
            title
        };
        let zone = build_zone(doc.get("zonedata").unwrap_or(&Value::Null));
        let mut cases = Vec::new();
        for (name, test) in doc
            .get("tests")
            .and_then(Value::as_mapping)
            .unwrap_or_else(|| panic!("{suite}: scenario {title} has no tests"))
        {
            let name = text(name, "test name");
            let field = |key: &str| {
                test.get(key)
                    .map(|v| text(v, key))
                    .unwrap_or_else(|| panic!("{suite} {name}: no {key}"))
            };
            let host = field("host");
            let results = match test.get("result") {
                Some(Value::Sequence(list)) => list.iter().map(|v| text(v, "result")).collect(),
                Some(v) => vec![text(v, "result")],
                None => panic!("{suite} {name}: no result"),
            };
            cases.push(Case {
                helo: field("helo"),
                host: host
                    .parse()
                    .unwrap_or_else(|e| panic!("{suite} {name}: host {host:?}: {e}")),
                mailfrom: field("mailfrom"),
                results,
                explanation: test.get("explanation").map(|v| text(v, "explanation")),
                name,
            });
        }
        scenarios.push(Scenario { title, zone, cases });
    }
    scenarios
}

struct Outcome {
    suite: &'static str,
    scenario: String,
    test: String,
    expected: String,
    got: String,
    pass: bool,
    elapsed: Duration,
}

/// The verdict compared (HELO when `mailfrom` is empty, else MAIL FROM) and its reason.
/// Verification runs in a task of its own so that a panic inside mail-auth is reported as this
/// test's outcome instead of ending the run.
async fn run(case: &Case, dns: &TestDns) -> (String, Option<String>) {
    let nameserver = dns.addr.to_string();
    let (ip, helo, mailfrom) = (case.host, case.helo.clone(), case.mailfrom.clone());
    let task = tokio::spawn(async move {
        // A fresh authenticator per test: its caches must not carry another test's answers.
        let auth =
            Authenticator::new(&[nameserver], DNS_TIMEOUT, 256, RECEIVER).expect("authenticator");
        let facts = SmtpFacts {
            ip,
            helo: &helo,
            mail_from: Some(mailfrom.as_str()).filter(|m| !m.is_empty()),
        };
        let verdicts = auth.verify(MESSAGE, &facts).await;
        let verdict = if mailfrom.is_empty() {
            verdicts.spf_helo
        } else {
            verdicts.spf_mail_from
        };
        (verdict.result, verdict.reason)
    });
    let abort = task.abort_handle();
    match tokio::time::timeout(VERIFY_LIMIT, task).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(e)) if e.is_panic() => {
            let payload = e.into_panic();
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            (format!("panic: {message}"), None)
        }
        Ok(Err(e)) => (format!("task error: {e}"), None),
        Err(_) => {
            abort.abort();
            (format!("hung over {VERIFY_LIMIT:?}"), None)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spf_test_suites_through_the_authenticator() {
    let started = Instant::now();
    // mail-auth may panic on some records (see spf_known_differences.txt): one line each, not a
    // backtrace.
    std::panic::set_hook(Box::new(|info| eprintln!("panic: {info}")));
    let mut outcomes = Vec::new();
    for suite in [RFC, PYSPF] {
        let scenarios = load(suite);
        let mut names = BTreeSet::new();
        for scenario in &scenarios {
            let dns = TestDns::start(scenario.zone.clone()).await;
            for case in &scenario.cases {
                assert!(
                    names.insert(case.name.clone()),
                    "{suite}: test name {} twice",
                    case.name
                );
                let began = Instant::now();
                let (got, reason) = run(case, &dns).await;
                let elapsed = began.elapsed();
                let result_ok = case.results.contains(&got);
                let explanation_ok = match (&case.explanation, &reason) {
                    (None, _) => true,
                    (Some(e), None) => e == "DEFAULT",
                    (Some(e), Some(r)) => e == r,
                };
                let mut expected = case.results.join("|");
                if let Some(e) = &case.explanation {
                    expected.push_str(&format!(" ({e:?})"));
                }
                let got = match &reason {
                    Some(r) if case.explanation.is_some() => format!("{got} ({r:?})"),
                    None if case.explanation.is_some() => format!("{got} (no explanation)"),
                    _ => got,
                };
                outcomes.push(Outcome {
                    suite,
                    scenario: scenario.title.clone(),
                    test: case.name.clone(),
                    expected,
                    got,
                    pass: result_ok && explanation_ok,
                    elapsed,
                });
            }
        }
    }

    let known_differences = known_differences();
    let known = |o: &Outcome| {
        known_differences
            .iter()
            .find(|k| k.suite == o.suite && k.test == o.test)
    };
    println!(
        "{:<18} {:<36} {:<29} {:<32} {:<32} {:>6} status",
        "suite", "scenario", "test", "expected", "got", "ms"
    );
    // Overflow checks follow debug assertions unless a profile says otherwise.
    let wrapping_build = !cfg!(debug_assertions);
    let mut unexpected = Vec::new();
    for o in &outcomes {
        let listed = known(o).is_some();
        let either_way = wrapping_build
            && o.suite == RFC
            && AGREE_WITHOUT_OVERFLOW_CHECKS.contains(&o.test.as_str());
        let status = match (o.pass, listed) {
            (true, false) => continue,
            (true, true) if either_way => continue,
            (false, true) => "fail (known)",
            (false, false) => "FAIL (new)",
            (true, true) => "PASS (listed as a difference)",
        };
        if o.pass == listed {
            unexpected.push(format!("{} {}: {status}", o.suite, o.test));
        }
        println!(
            "{:<18} {:<36} {:<29} {:<32} {:<32} {:>6} {status}",
            o.suite,
            o.scenario,
            o.test,
            o.expected,
            o.got,
            o.elapsed.as_millis()
        );
    }
    for (i, k) in known_differences.iter().enumerate() {
        let (suite, test) = (k.suite, k.test);
        assert!(
            !k.reason.trim().is_empty(),
            "{suite} {test}: say why it differs"
        );
        assert!(
            !known_differences[..i]
                .iter()
                .any(|o| o.suite == suite && o.test == test),
            "spf_known_differences.txt names {suite} {test} twice"
        );
        assert!(
            outcomes.iter().any(|o| o.suite == suite && o.test == test),
            "spf_known_differences.txt names {suite} {test}, which is not in the suites"
        );
    }
    let mut passing = 0;
    for suite in [RFC, PYSPF] {
        let of_suite: Vec<&Outcome> = outcomes.iter().filter(|o| o.suite == suite).collect();
        let pass = of_suite.iter().filter(|o| o.pass).count();
        passing += pass;
        println!(
            "{suite}: {pass} of {} pass, {} differ",
            of_suite.len(),
            of_suite.len() - pass
        );
    }
    println!(
        "total: {passing} of {} pass, in {:.1?}",
        outcomes.len(),
        started.elapsed()
    );
    assert!(
        unexpected.is_empty(),
        "outcomes not as tests/fixtures/spf_known_differences.txt says (update it and docs/conformance/spf.md):\n{}",
        unexpected.join("\n")
    );
    assert!(
        passing >= MIN_PASSING,
        "{passing} tests pass, fewer than the {MIN_PASSING} measured"
    );
}
