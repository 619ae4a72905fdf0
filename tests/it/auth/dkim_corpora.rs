//! DKIM and ARC conformance on corpora written by others, through the code path of every
//! inbound message: `Authenticator::verify`, with each corpus's key records served by a real
//! DNS server on loopback (`TestDns`).
//!
//! - perl-mail-dkim: 79 messages of Mail::DKIM's t/corpus, its FAKE_DNS.dat (NXDOMAIN,
//!   timeout and SERVFAIL included) and EXPECTED.tsv (from its t/verifier.t).
//! - stalwart-mail-auth: resources/dkim/*.txt (every signature must pass) and
//!   resources/arc/*.txt (the ARC chain must pass, and at least one DKIM signature, as
//!   mail-auth's own test asks).
//! - dkimpy-testdata: the RFC 8463 example (ed25519-sha256 and rsa-sha256 signatures) with the
//!   published key records, Exim's ed25519 signature, dkimpy's key-record variants, and
//!   ed25519 sign/verify round trips with dkimpy's test key.
//!
//! Like a conformance runner, each corpus prints its failures and totals, asserts a passing
//! count of at least what was measured, and keeps a list of known differences, each with a
//! one-line reason: an unlisted failure fails the test, and so does a listed one that starts
//! passing. docs/conformance/dkim.md explains every difference.
//!
//! Mail::DKIM's results map to RFC 8601 `dkim=` results like this (a message's result is its
//! best signature's, pass > fail > the errors > none, as Mail::DKIM reports it):
//! - `pass` → pass; `fail` → fail;
//! - `invalid` (the signature could not be checked) → temperror when the key lookup failed
//!   (timeout, SERVFAIL), otherwise permerror or neutral (RFC 8601 2.7.1: neutral for a
//!   signature with syntax errors or that could not be processed, permerror for an
//!   unrecoverable error such as an unusable key record);
//! - a message signed only with DomainKeys (RFC 4870, `DomainKey-Signature`) → none: DKIM sees
//!   no signature, and RFC 8601 reports DomainKeys under its own method, which Postern (like
//!   mail-auth) does not implement.

use crate::common::dns::{TestDns, Zone};
use mail_auth::common::crypto::Ed25519Key;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner};
use postern::auth::{AuthVerdicts, Authenticator, SmtpFacts, Verdict};
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Per lookup; the corpus's timeout case costs this much (twice at most: UDP, then TCP).
const DNS_TIMEOUT: Duration = Duration::from_millis(400);
/// A whole corpus must finish within this, even in a debug build.
const CORPUS_TIME_LIMIT: Duration = Duration::from_secs(60);
const RECEIVER: &str = "mx.postern.test";

// ---------------------------------------------------------------------------------------
// Known differences and measured pass counts.

// Reasons shared by several vectors.
const R512: &str = "512-bit RSA key: refused (RFC 8301 3.2: under 1024 bits MUST NOT be valid; ring's verifier stops at 1024), reported as fail; the signature is otherwise valid (checked independently)";
const R768: &str = "768-bit RSA key: refused (RFC 8301 3.2), reported as fail; one signature is otherwise valid (checked independently)";
const RV05: &str = "pre-standard v=0.5 signature: RFC 6376 3.5 requires v=1, mail-auth rejects it (neutral); deliberate";
const RDRAFT00: &str = "draft-00 signature without bh= (skipped upstream): mail-auth drops a DKIM-Signature missing required tags without any verdict, so dkim=none; RFC 6376 6.1.1 wants permerror (mail-auth bug in the verdict, not a pass either way)";
const RBH: &str = "body hash mismatch: mail-auth says neutral (as Gmail's 'body hash did not verify'), Mail::DKIM fail; not a pass either way";
const RG: &str = "512-bit RSA key refused (RFC 8301); the g= key tag it tests was dropped by RFC 6376, which mail-auth follows";
const RSHA1: &str = "rsa-sha1 signature: verifies, but RFC 8301 3.1 says verifiers MUST NOT consider rsa-sha1 valid; Postern reports permerror and leaves it out of DMARC, Mail::DKIM (older than RFC 8301) passes it; deliberate";
const RDNS: &str = "the body does not match bh= (checked independently): mail-auth checks the body hash before it fetches the key, so the DNS failure is never reached; see 'derived: key lookup ...' for temperror";

/// perl-mail-dkim: (check id, reason).
const PERL_KNOWN: &[(&str, &str)] = &[
    ("good_ietf00_1.txt", RDRAFT00),
    ("good_ietf00_2.txt", RDRAFT00),
    ("good_ietf00_3.txt", RDRAFT00),
    ("good_ietf00_4.txt", RDRAFT00),
    ("good_ietf00_5.txt", RDRAFT00),
    ("mine_ietf05_1.txt", RV05),
    ("mine_ietf01_1.txt", RSHA1),
    ("mine_ietf01_2.txt", RSHA1),
    ("good_83176.txt", RSHA1),
    ("multiple_2.txt", "its only valid signature is rsa-sha1 (RFC 8301 3.1: not valid, see mine_ietf01_1); the others are an unsupported canonicalization, a failed signature and an unparsable one, so no pass; deliberate"),
    ("no_body_1.txt", RV05),
    ("no_body_2.txt", RV05),
    ("no_body_3.txt", RV05),
    ("good_ietf01_1.txt", R768),
    ("good_ietf01_2.txt", R768),
    ("multiple_1.txt", R768),
    ("good_rfc4871_3.txt", R512),
    ("good_rfc4871_4.txt", R512),
    ("good_1878523.txt", R512),
    ("good_qp_1.txt", R512),
    ("good_qp_2.txt", R512),
    ("good_qp_3.txt", R512),
    ("goodkey_1.txt", R512),
    ("goodkey_2.txt", R512),
    ("goodkey_3.txt", R512),
    ("goodkey_4.txt", R512),
    ("ignore_5.txt", "512-bit RSA key refused (RFC 8301); besides, mail-auth ignores q=, where RFC 6376 3.5 has a signature with no known query method ignored"),
    ("ignore_6.txt", "512-bit RSA key refused (RFC 8301); besides, mail-auth ignores q=, where RFC 6376 3.5 has a signature with no known query method ignored"),
    ("ignore_8.txt", "512-bit RSA key refused (RFC 8301); besides, mail-auth does not check that i= is within d= (RFC 6376 6.1.1 MUST; see dkimpy 'derived: i= outside d=')"),
    ("badkey_8.txt", RG),
    ("badkey_9.txt", RG),
    ("badkey_12.txt", RG),
    ("badkey_13.txt", RG),
    ("badkey_11.txt", "512-bit RSA key refused (RFC 8301); besides, mail-auth ignores the key record's h= (RFC 6376 3.6.1), see 'derived: key h=bad'"),
    ("badkey_10.txt", "t=s key, i= in a subdomain of d=: mail-auth says fail (AUID mismatch), Mail::DKIM invalid; vocabulary only, not a pass"),
    ("bad_ietf01_1.txt", RBH),
    ("bad_1878954.txt", RBH),
    ("badkey3_ed25519.txt", RBH),
    ("badkey_14.txt", RDNS),
    ("badkey_15.txt", RDNS),
    ("derived: key s=chat (not email)", "mail-auth ignores the key record's s= service type (RFC 6376 3.6.1: a record not for email MUST be ignored); gap in mail-auth"),
    ("derived: key h=bad (no usable hash)", "mail-auth ignores the key record's h= hash list (RFC 6376 3.6.1); gap in mail-auth"),
    ("derived: ed25519 key of invalid length", "mail-auth accepts a 44-byte (SPKI-wrapped) ed25519 key and fails at verification: fail instead of permerror, vocabulary only"),
];
/// Measured on 2026-11-22: 79 message checks, 62 verdict-count checks, 12 derived checks;
/// 110 since 2026-12-06, when the 4 rsa-sha1 passes became permerror (RFC 8301 3.1).
const PERL_MIN_PASS: usize = 110;

/// stalwart-mail-auth: (check id, reason).
const STALWART_KNOWN: &[(&str, &str)] = &[(
    "dkim/005.txt#1",
    "x=1667930064 (2022-11-08T17:54:24Z) is past: expired (neutral) today; mail-auth's own test pins now=1667843664; correct per RFC 6376 3.5",
)];
const STALWART_MIN_PASS: usize = 11;

/// dkimpy-testdata: (check id, reason).
const DKIMPY_KNOWN: &[(&str, &str)] = &[
    ("key record test_bad.txt", "the key's DER is truncated: mail-auth accepts the record and fails at verification (fail instead of permerror); vocabulary only"),
    ("round trip ed25519, body altered", "body hash mismatch: mail-auth says neutral (as Gmail does), not fail; not a pass either way"),
    ("round trip ed25519 with l=", "mail-auth's strict parse refuses every l= signature as insecure (neutral): deliberate hardening against appended content; RFC 6376 allows l="),
];
const DKIMPY_MIN_PASS: usize = 14;

// ---------------------------------------------------------------------------------------
// Runner.

struct Check {
    id: String,
    expected: String,
    got: String,
    ok: bool,
}

/// Prints every check, the known differences and the totals; fails on an unlisted failure,
/// a listed difference that passes, a listed id that no check has, or fewer passes than
/// measured.
fn conclude(corpus: &str, checks: &[Check], known: &[(&str, &str)], min_pass: usize) {
    let mut passed = 0;
    let mut differences = 0;
    let mut failures = Vec::new();
    let ids: HashSet<&str> = checks.iter().map(|c| c.id.as_str()).collect();
    for (id, _) in known {
        if !ids.contains(id) {
            failures.push(format!(
                "{id}: listed as a known difference, but no such check"
            ));
        }
    }
    for c in checks {
        let listed = known.iter().find(|(id, _)| *id == c.id);
        match (c.ok, listed) {
            (true, None) => {
                passed += 1;
                println!("ok    {}: {}", c.id, c.got);
            }
            (true, Some(_)) => {
                passed += 1;
                failures.push(format!(
                    "{}: listed as a known difference but now passes ({})",
                    c.id, c.got
                ));
            }
            (false, Some((_, reason))) => {
                differences += 1;
                println!(
                    "known {}: expected {}, got {} -- {reason}",
                    c.id, c.expected, c.got
                );
            }
            (false, None) => {
                failures.push(format!("{}: expected {}, got {}", c.id, c.expected, c.got));
            }
        }
    }
    for f in &failures {
        println!("FAIL  {f}");
    }
    println!(
        "{corpus}: {passed} passed, {differences} known differences, {} failed, of {} checks",
        failures.len(),
        checks.len()
    );
    assert!(
        failures.is_empty(),
        "{corpus}: {} unexpected results (see the FAIL lines above)",
        failures.len()
    );
    assert!(
        passed >= min_pass,
        "{corpus}: {passed} checks pass, fewer than the {min_pass} measured"
    );
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn read_text(path: &Path) -> String {
    String::from_utf8(read(path)).unwrap_or_else(|e| panic!("{} is not UTF-8: {e}", path.display()))
}

/// Bare LF line ends made CRLF (as the message would arrive over SMTP); CRLF kept.
fn crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 20);
    for (i, &b) in raw.iter().enumerate() {
        if b == b'\n' && (i == 0 || raw[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

async fn authenticator(dns: &TestDns) -> Authenticator {
    Authenticator::new(&[dns.addr.to_string()], DNS_TIMEOUT, 4096, RECEIVER)
        .expect("authenticator on the test DNS server")
}

async fn verify(auth: &Authenticator, raw: &[u8]) -> AuthVerdicts {
    let facts = SmtpFacts {
        ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 25)),
        helo: "relay.example.test",
        mail_from: Some("sender@relay.example.test"),
    };
    auth.verify(raw, &facts).await
}

fn show(v: &Verdict) -> String {
    let mut s = v.result.clone();
    if let (Some(d), Some(sel)) = (&v.domain, &v.selector) {
        s.push_str(&format!(" (d={d} s={sel})"));
    }
    if let Some(r) = &v.reason {
        s.push_str(&format!(" [{r}]"));
    }
    s
}

fn show_all(vs: &[Verdict]) -> String {
    vs.iter().map(show).collect::<Vec<_>>().join("; ")
}

/// The header section of a message, unfolded: (lower-case name, value).
fn headers(raw: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(raw);
    let head = text
        .split("\r\n\r\n")
        .next()
        .unwrap_or("")
        .split("\n\n")
        .next()
        .unwrap_or("");
    let mut out: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        let line = line.trim_end_matches('\r');
        if line.starts_with([' ', '\t']) {
            if let Some(last) = out.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            out.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    out
}

/// The value of tag `name` in a tag=value list (DKIM-Signature, ARC-Seal).
fn tag(value: &str, name: &str) -> Option<String> {
    value.split(';').find_map(|t| {
        let (k, v) = t.split_once('=')?;
        (k.trim() == name).then(|| v.split_whitespace().collect::<String>())
    })
}

fn rank(result: &str) -> u8 {
    match result {
        "pass" => 4,
        "fail" => 3,
        "none" => 1,
        _ => 2,
    }
}

/// The message's result as Mail::DKIM reports it: its best signature's.
fn best(vs: &[Verdict]) -> &str {
    vs.iter()
        .map(|v| v.result.as_str())
        .max_by_key(|r| rank(r))
        .unwrap_or("none")
}

// ---------------------------------------------------------------------------------------
// perl-mail-dkim

/// FAKE_DNS.dat: `<name> <TXT value>`, with NXDOMAIN, timeout and SERVFAIL markers.
fn perl_zone(text: &str) -> Zone {
    let mut zone = Zone::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = line
            .split_once(char::is_whitespace)
            .unwrap_or_else(|| panic!("FAKE_DNS.dat: no value in {line:?}"));
        let value = value.trim();
        zone = match value {
            // Every name the zone does not hold answers NXDOMAIN.
            "NXDOMAIN" => zone,
            "~~Query timed out~~" => zone.timeout(name),
            "~~SERVFAIL~~" => zone.servfail(name),
            "\"\"" => zone.txt(name, ""),
            _ => zone.txt(name, value),
        };
    }
    zone
}

/// RFC 8601 results that stand for Mail::DKIM's `expected` on this message.
fn perl_expected(expected: &str, note: &str, raw: &[u8]) -> &'static [&'static str] {
    let has_dkim = headers(raw).iter().any(|(n, _)| n == "dkim-signature");
    if !has_dkim {
        return &["none"];
    }
    match expected {
        "pass" => &["pass"],
        "fail" => &["fail"],
        "invalid" if note.contains("dns error") => &["temperror"],
        "invalid" => &["permerror", "neutral"],
        other => panic!("EXPECTED.tsv: unknown result {other:?}"),
    }
}

/// Derived vectors: a corpus message whose body hash is right, with the signature's selector
/// (or domain) pointed at one of FAKE_DNS.dat's broken key records. Many of the corpus's own
/// key-record vectors carry a pre-standard `v=0.5` signature or a body that no longer matches
/// `bh=`, which a verifier rejects before it looks the key up, so they never reach the key;
/// these do. Rewriting a tag breaks the signature itself: only a result from the key stage
/// (permerror, temperror) is meaningful, and `fail` means the key record was accepted.
/// (id, base file, text replaced in the DKIM-Signature, replacement, RFC 8601 results, intent).
type Derived = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
    &'static str,
);
const PERL_DERIVED: &[Derived] = &[
    (
        "derived: key NXDOMAIN",
        "goodkey_1.txt",
        "s=test1;",
        "s=nonexistent;",
        &["permerror"],
        "badkey_1",
    ),
    (
        "derived: key revoked (empty p=)",
        "goodkey_1.txt",
        "s=test1;",
        "s=testrevoked;",
        &["permerror"],
        "badkey_2",
    ),
    (
        "derived: key v=DKIM3",
        "goodkey_1.txt",
        "s=test1;",
        "s=testbad1;",
        &["permerror"],
        "badkey_3",
    ),
    (
        "derived: key record syntax error",
        "goodkey_1.txt",
        "s=test1;",
        "s=testbad2;",
        &["permerror"],
        "badkey_4",
    ),
    (
        "derived: key k=foobar",
        "goodkey_1.txt",
        "s=test1;",
        "s=testbad3;",
        &["permerror"],
        "badkey_5",
    ),
    (
        "derived: key s=chat (not email)",
        "goodkey_1.txt",
        "s=test1;",
        "s=testbad4;",
        &["permerror"],
        "badkey_6",
    ),
    (
        "derived: key h=bad (no usable hash)",
        "goodkey_1.txt",
        "s=test1;",
        "s=testbad7;",
        &["permerror"],
        "badkey_7",
    ),
    (
        "derived: key lookup timeout",
        "goodkey_1.txt",
        "d=messiah.edu; h=from:to:subject:date; q=dns/txt; s=test1;",
        "d=blackhole.messiah.edu; h=from:to:subject:date; q=dns/txt; s=test3;",
        &["temperror"],
        "badkey_14",
    ),
    (
        "derived: key lookup SERVFAIL",
        "goodkey_1.txt",
        "d=messiah.edu; h=from:to:subject:date; q=dns/txt; s=test1;",
        "d=blackhole2.messiah.edu; h=from:to:subject:date; q=dns/txt; s=test3;",
        &["temperror"],
        "badkey_15",
    ),
    (
        "derived: ed25519 key of invalid length",
        "goodkey_ed25519.txt",
        "s=2023-05-ed25519;",
        "s=invalid;",
        &["permerror"],
        "badkey1_ed25519",
    ),
    (
        "derived: ed25519 key missing",
        "goodkey_ed25519.txt",
        "s=2023-05-ed25519;",
        "s=2023-05-ed25519-does-not-exist;",
        &["permerror"],
        "badkey4_ed25519",
    ),
    (
        "derived: ed25519 key empty",
        "goodkey_ed25519.txt",
        "s=2023-05-ed25519;",
        "s=2023-05-ed25519-empty;",
        &["permerror"],
        "badkey5_ed25519",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn perl_mail_dkim_corpus() {
    let dir = crate::common::corpora_dir().join("perl-mail-dkim");
    let zone = perl_zone(&read_text(&dir.join("t/FAKE_DNS.dat")));
    let dns = TestDns::start(zone).await;
    let auth = authenticator(&dns).await;

    let table = read_text(&dir.join("EXPECTED.tsv"));
    let mut rows = Vec::new();
    for line in table
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let mut cols = line.split('\t');
        let file = cols.next().unwrap_or_default().to_string();
        let expected = cols.next().unwrap_or_default().to_string();
        let note = cols.next().unwrap_or_default().to_string();
        rows.push((file, expected, note));
    }
    let corpus_files = std::fs::read_dir(dir.join("t/corpus"))
        .expect("t/corpus")
        .count();
    assert_eq!(rows.len(), 79, "EXPECTED.tsv should list 79 messages");
    assert_eq!(
        corpus_files,
        rows.len(),
        "every corpus file has an expected result"
    );

    let started = Instant::now();
    let mut checks = Vec::new();
    let mut sha1_passes = Vec::new();
    let mut sha1_refused = Vec::new();
    let mut expiries = Vec::new();
    for (file, expected, note) in &rows {
        let raw = crlf(&read(&dir.join("t/corpus").join(file)));
        let want = perl_expected(expected, note, &raw);
        let verdicts = verify(&auth, &raw).await;
        let got = best(&verdicts.dkim);
        let skipped = if note.contains("SKIPPED") {
            " (skipped upstream)"
        } else {
            ""
        };
        checks.push(Check {
            id: file.clone(),
            expected: format!("{} (Mail::DKIM: {expected}{skipped})", want.join("|")),
            got: format!("{got} <- {}", show_all(&verdicts.dkim)),
            ok: want.contains(&got),
        });
        // Every DKIM-Signature field gets a verdict of its own.
        let signatures: Vec<String> = headers(&raw)
            .into_iter()
            .filter(|(n, _)| n == "dkim-signature")
            .map(|(_, v)| v)
            .collect();
        if !signatures.is_empty() {
            checks.push(Check {
                id: format!("{file} (verdicts)"),
                expected: format!("{} verdicts", signatures.len()),
                got: format!("{} verdicts", verdicts.dkim.len()),
                ok: verdicts.dkim.len() == signatures.len(),
            });
        }
        for sig in &signatures {
            if let Some(x) = tag(sig, "x") {
                expiries.push(format!("{file}: x={x}"));
            }
            let passed = verdicts.dkim.iter().any(|v| {
                v.result == "pass"
                    && v.domain.as_deref()
                        == tag(sig, "d").map(|d| d.to_ascii_lowercase()).as_deref()
                    && v.selector == tag(sig, "s")
            });
            let refused_sha1 = verdicts.dkim.iter().any(|v| {
                v.result == "permerror"
                    && v.reason
                        .as_deref()
                        .is_some_and(|r| r.contains("RFC 8301 3.1"))
                    && v.domain.as_deref()
                        == tag(sig, "d").map(|d| d.to_ascii_lowercase()).as_deref()
                    && v.selector == tag(sig, "s")
            });
            if tag(sig, "a").as_deref() == Some("rsa-sha1") {
                if passed {
                    sha1_passes.push(file.clone());
                }
                if refused_sha1 {
                    assert!(
                        verdicts
                            .header
                            .contains("dkim=permerror (unsupported algorithm)"),
                        "{file}: the Authentication-Results header does not show the refusal: {}",
                        verdicts.header
                    );
                    sha1_refused.push(file.clone());
                }
            }
        }
    }
    for (id, base, from, to, want, intent) in PERL_DERIVED {
        let text = String::from_utf8(crlf(&read(&dir.join("t/corpus").join(base))))
            .expect("ASCII corpus file");
        assert!(text.contains(from), "{base} has no {from:?}");
        let raw = text.replacen(from, to, 1);
        let verdicts = verify(&auth, raw.as_bytes()).await;
        let got = best(&verdicts.dkim);
        checks.push(Check {
            id: id.to_string(),
            expected: format!("{} (as {intent} intends)", want.join("|")),
            got: format!("{got} <- {}", show_all(&verdicts.dkim)),
            ok: want.contains(&got),
        });
    }
    assert!(
        started.elapsed() < CORPUS_TIME_LIMIT,
        "perl-mail-dkim took {:?}",
        started.elapsed()
    );
    // RFC 8301 3.1: rsa-sha1 MUST NOT be considered valid. The corpus has 4 messages whose
    // rsa-sha1 signature verifies; each must come out permerror with the reason.
    sha1_refused.dedup();
    assert!(
        sha1_passes.is_empty(),
        "rsa-sha1 signatures counted as pass: {sha1_passes:?}"
    );
    assert_eq!(
        sha1_refused,
        [
            "mine_ietf01_1.txt",
            "mine_ietf01_2.txt",
            "good_83176.txt",
            "multiple_2.txt"
        ]
        .map(String::from)
        .to_vec(),
        "the rsa-sha1 signatures that verify, refused"
    );
    println!("signatures with an expiry (x=): {}", expiries.join(", "));
    conclude("perl-mail-dkim", &checks, PERL_KNOWN, PERL_MIN_PASS);
}

// ---------------------------------------------------------------------------------------
// stalwart-mail-auth

/// `<name> <TXT value>` lines, a blank line, then the message (LF line ends).
fn stalwart_case(path: &Path) -> (Zone, Vec<u8>) {
    let text = read_text(path);
    let (records, message) = text
        .split_once("\n\n")
        .unwrap_or_else(|| panic!("{}: no blank line after the records", path.display()));
    let mut zone = Zone::new();
    for line in records.lines() {
        let (name, value) = line
            .split_once(' ')
            .unwrap_or_else(|| panic!("{}: bad record line {line:?}", path.display()));
        zone = zone.txt(name, value);
    }
    (zone, crlf(message.as_bytes()))
}

fn sorted_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    files
}

/// One case of the Stalwart corpus, verified against its own zone: (its name under `kind`,
/// the message, the verdicts).
async fn stalwart_verdicts(kind: &str, path: &Path) -> (String, Vec<u8>, AuthVerdicts) {
    let name = format!("{kind}/{}", path.file_name().unwrap().to_string_lossy());
    let (zone, raw) = stalwart_case(path);
    let dns = TestDns::start(zone).await;
    let auth = authenticator(&dns).await;
    let verdicts = verify(&auth, &raw).await;
    (name, raw, verdicts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalwart_mail_auth_corpus() {
    let dir = crate::common::corpora_dir().join("stalwart-mail-auth/resources");
    let started = Instant::now();
    let mut checks = Vec::new();

    for path in sorted_files(&dir.join("dkim")) {
        let (name, raw, verdicts) = stalwart_verdicts("dkim", &path).await;
        let signatures = headers(&raw)
            .iter()
            .filter(|(n, _)| n == "dkim-signature")
            .count();
        assert_eq!(
            verdicts.dkim.len(),
            signatures,
            "{name}: one verdict per signature"
        );
        for (i, v) in verdicts.dkim.iter().enumerate() {
            checks.push(Check {
                id: format!("{name}#{}", i + 1),
                expected: "pass".into(),
                got: show(v),
                ok: v.result == "pass",
            });
        }
    }

    for path in sorted_files(&dir.join("arc")) {
        let (name, raw, verdicts) = stalwart_verdicts("arc", &path).await;
        // The sealers, oldest hop first, as the ARC-Seal headers name them.
        let mut seals: Vec<(u32, String)> = headers(&raw)
            .iter()
            .filter(|(n, _)| n == "arc-seal")
            .map(|(_, v)| {
                let i = tag(v, "i").and_then(|i| i.parse().ok()).unwrap_or(0);
                (i, tag(v, "d").unwrap_or_default().to_ascii_lowercase())
            })
            .collect();
        seals.sort();
        let sealers: Vec<String> = seals.into_iter().map(|(_, d)| d).collect();
        let arc = &verdicts.arc;
        checks.push(Check {
            id: format!("{name} arc"),
            expected: format!("pass, sealers {sealers:?}"),
            got: format!(
                "{}{}, sealers {:?}, hop dmarc {:?}",
                arc.result,
                arc.reason
                    .as_deref()
                    .map(|r| format!(" [{r}]"))
                    .unwrap_or_default(),
                arc.sealers,
                arc.hop_dmarc
            ),
            ok: arc.result == "pass" && arc.sealers == sealers,
        });
        checks.push(Check {
            id: format!("{name} dkim"),
            expected: "at least one pass".into(),
            got: show_all(&verdicts.dkim),
            ok: verdicts.dkim.iter().any(|v| v.result == "pass"),
        });
    }
    assert!(
        started.elapsed() < CORPUS_TIME_LIMIT,
        "stalwart-mail-auth took {:?}",
        started.elapsed()
    );
    conclude(
        "stalwart-mail-auth",
        &checks,
        STALWART_KNOWN,
        STALWART_MIN_PASS,
    );
}

// ---------------------------------------------------------------------------------------
// dkimpy-testdata

/// RFC 8463 appendix A.2: the ed25519 key record of the example (s=brisbane), whose key is
/// RFC 8032 section 7.1 TEST 1's (the private half is dkimpy's rfc8032_7_1.key).
const RFC8463_BRISBANE: &str = "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

fn b64(text: &str) -> Vec<u8> {
    // Minimal standard-alphabet decoder for the test keys (no dependency for 2 keys).
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.trim().bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => continue,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// The `p=` of a key record.
fn key_of(record: &str) -> Vec<u8> {
    b64(&tag(record, "p").expect("p= in the key record"))
}

fn one_signature(id: &str, v: &AuthVerdicts, want: &[&str]) -> Check {
    let got = v.dkim.first().map(|v| v.result.clone()).unwrap_or_default();
    Check {
        id: id.to_string(),
        expected: want.join("|"),
        got: show_all(&v.dkim),
        ok: v.dkim.len() == 1 && want.contains(&got.as_str()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dkimpy_testdata_corpus() {
    let data = crate::common::corpora_dir().join("dkimpy-testdata/dkim/tests/data");
    let record = |name: &str| read_text(&data.join(name)).trim().to_string();
    let started = Instant::now();
    let mut checks = Vec::new();

    // The published ed25519 key is the public half of dkimpy's RFC 8032 key: ring checks
    // that the pair matches.
    let rfc8032_seed = b64(&record("rfc8032_7_1.key"));
    assert!(
        Ed25519Key::from_seed_and_public_key(&rfc8032_seed, &key_of(RFC8463_BRISBANE)).is_ok(),
        "RFC 8463's brisbane key is not the public half of rfc8032_7_1.key"
    );

    // RFC 8463 appendix A.3: one ed25519-sha256 and one rsa-sha256 signature, both valid.
    let example = crlf(&read(&data.join("rfc6376.signed.msg")));
    let dns = TestDns::start(
        Zone::new()
            .txt("brisbane._domainkey.football.example.com", RFC8463_BRISBANE)
            .txt("test._domainkey.football.example.com", &record("test.txt")),
    )
    .await;
    let v = verify(&authenticator(&dns).await, &example).await;
    for (i, sel) in ["brisbane", "test"].iter().enumerate() {
        let got = v.dkim.get(i);
        checks.push(Check {
            id: format!("rfc6376.signed.msg s={sel}"),
            expected: format!("pass (d=football.example.com s={sel})"),
            got: got.map(show).unwrap_or_else(|| "no verdict".into()),
            ok: got.is_some_and(|g| {
                g.result == "pass"
                    && g.selector.as_deref() == Some(sel)
                    && g.domain.as_deref() == Some("football.example.com")
            }),
        });
    }
    drop(dns);

    // dkimpy's key-record variants, against the example's rsa-sha256 signature (s=test; the
    // key of test.txt signed it). The ed25519 signature keeps its valid key.
    for (file, want) in [
        ("test.txt", &["pass"][..]),
        ("test2.txt", &["pass"][..]),
        ("test_bad.txt", &["permerror", "neutral"][..]),
        ("badversion.txt", &["permerror", "neutral"][..]),
        ("badk.txt", &["permerror", "neutral"][..]),
    ] {
        let dns = TestDns::start(
            Zone::new()
                .txt("brisbane._domainkey.football.example.com", RFC8463_BRISBANE)
                .txt("test._domainkey.football.example.com", &record(file)),
        )
        .await;
        let v = verify(&authenticator(&dns).await, &example).await;
        let got = v.dkim.get(1);
        checks.push(Check {
            id: format!("key record {file}"),
            expected: want.join("|"),
            got: got.map(show).unwrap_or_else(|| "no verdict".into()),
            ok: got.is_some_and(|g| want.contains(&g.result.as_str())),
        });
    }

    // Exim's ed25519-sha256 signature (dkimpy's test_verify_third_party), key eximtest.dns.
    let exim = crlf(&read(&data.join("ed25519test2.msg")));
    let dns =
        TestDns::start(Zone::new().txt("sed._domainkey.test.ex", &record("eximtest.dns"))).await;
    let v = verify(&authenticator(&dns).await, &exim).await;
    checks.push(one_signature("ed25519test2.msg (Exim)", &v, &["pass"]));
    drop(dns);

    // Round trips: ed25519test.msg signed with ed25519test.key, verified against
    // ed25519test.dns, in every canonicalization; then with the body altered.
    let dns =
        TestDns::start(Zone::new().txt("test._domainkey.example.com", &record("ed25519test.dns")))
            .await;
    let auth = authenticator(&dns).await;
    let message = crlf(&read(&data.join("ed25519test.msg")));
    let seed = b64(&record("ed25519test.key"));
    let public = key_of(&record("ed25519test.dns"));
    for (ch, cb) in [
        (Canonicalization::Simple, Canonicalization::Simple),
        (Canonicalization::Simple, Canonicalization::Relaxed),
        (Canonicalization::Relaxed, Canonicalization::Simple),
        (Canonicalization::Relaxed, Canonicalization::Relaxed),
    ] {
        let key = Ed25519Key::from_seed_and_public_key(&seed, &public)
            .expect("ed25519test.key matches ed25519test.dns");
        let signature = DkimSigner::from_key(key)
            .domain("example.com")
            .selector("test")
            .headers(["From", "To", "Subject", "Date", "Message-ID"])
            .header_canonicalization(ch)
            .body_canonicalization(cb)
            .sign(&message)
            .expect("sign");
        let signed = [signature.to_header().as_bytes(), &message].concat();
        let c = |c: Canonicalization| match c {
            Canonicalization::Simple => "simple",
            Canonicalization::Relaxed => "relaxed",
        };
        let v = verify(&auth, &signed).await;
        checks.push(one_signature(
            &format!("round trip ed25519 c={}/{}", c(ch), c(cb)),
            &v,
            &["pass"],
        ));
        if ch == Canonicalization::Relaxed && cb == Canonicalization::Relaxed {
            // dkimpy's test_altered_body_fails: a body changed after signing.
            let altered = [&signed[..], b"foo\r\n"].concat();
            let v = verify(&auth, &altered).await;
            checks.push(one_signature(
                "round trip ed25519, body altered",
                &v,
                &["fail"],
            ));
            // A header changed after signing.
            let text = String::from_utf8_lossy(&signed).replace("Subject: ", "Subject: Re: ");
            let v = verify(&auth, text.as_bytes()).await;
            checks.push(one_signature(
                "round trip ed25519, header altered",
                &v,
                &["fail"],
            ));
        }
    }
    // RFC 6376 6.1.1 requirements, on signatures made with the same key: a signature that does
    // not cover From, and one whose i= is outside d=, MUST be ignored (PERMFAIL).
    let key = || {
        Ed25519Key::from_seed_and_public_key(&seed, &public)
            .expect("ed25519test.key matches ed25519test.dns")
    };
    // dkimpy's test_add_body_length (the last case): l= covers the body as signed.
    // (name, signed headers, i=, l=, the results that pass the check)
    type Derived<'a> = (&'a str, &'a [&'a str], Option<&'a str>, bool, &'a [&'a str]);
    let derived: [Derived; 3] = [
        (
            "derived: From not in h=",
            &["To", "Subject", "Date", "Message-ID"],
            None,
            false,
            &["permerror", "neutral"],
        ),
        (
            "derived: i= outside d=",
            &["From", "To", "Subject"],
            Some("someone@elsewhere.example"),
            false,
            &["permerror", "neutral"],
        ),
        (
            "round trip ed25519 with l=",
            &["From", "To", "Subject"],
            None,
            true,
            &["pass"],
        ),
    ];
    for (name, headers, auid, body_length, expected) in derived {
        let mut signer = DkimSigner::from_key(key())
            .domain("example.com")
            .selector("test")
            .headers(headers.iter().copied())
            .body_length(body_length);
        if let Some(auid) = auid {
            signer = signer.agent_user_identifier(auid);
        }
        let signature = signer.sign(&message).expect("sign");
        let signed = [signature.to_header().as_bytes(), &message].concat();
        let v = verify(&auth, &signed).await;
        checks.push(one_signature(name, &v, expected));
    }

    assert!(
        started.elapsed() < CORPUS_TIME_LIMIT,
        "dkimpy-testdata took {:?}",
        started.elapsed()
    );
    conclude("dkimpy-testdata", &checks, DKIMPY_KNOWN, DKIMPY_MIN_PASS);
}
