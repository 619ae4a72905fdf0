//! Parser robustness on mail written by others: every message of four public corpora in
//! ../shared/corpora goes through intake without a panic or a hang, and ends up either as
//! a ticket message or in quarantine with a reason.
//!
//! Message files per corpus (and what is left out, on purpose):
//! - stalwart-mail-parser: resources/eml/{legacy,malformed,rfc,thirdparty}/*.eml. Left out:
//!   the *.json expected parse trees and header vectors (results, not mail) and
//!   resources/maildir/ (2-byte stubs that only test Maildir file-name parsing).
//! - cpython-email-testdata: Lib/test/test_email/data/msg_*.txt. Left out: mailbox_01.mbox,
//!   an mbox holds several messages and splitting it is the importer's job, not intake's.
//! - spamscope-mail-parser: every file of tests/mails/ (they have no extension; one is an
//!   Outlook .msg compound file, not MIME at all, which must still be handled).
//! - nodemailer-mailparser-fixtures: test/fixtures/*.eml (memory and nesting regressions).
//!
//! None of these files comes near the default 25 MiB message limit; a file that did would
//! be expected to get 552 and is counted apart.

use crate::common::*;

use postern::domain::{AccountId, Scope};
use postern::ingest::classify::ClassifyContext;
use postern::ingest::{parse_inbound, parse_message};
use postern::store::MessageKind;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// `smtp.max_message_size` of the embedded defaults.
const MAX_MESSAGE_SIZE: usize = 26_214_400;
/// A parse that takes longer than this on one message is a bug (hostile input must not
/// stall a session), even in a debug build.
const PARSE_TIME_LIMIT: Duration = Duration::from_secs(10);
/// The envelope sender for the BDAT runs; it stands in for a missing From.
const SENDER: &str = "forwarder@mail.example.test";

struct Corpus {
    name: &'static str,
    files: Vec<PathBuf>,
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            walk(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn files_where(dir: &Path, keep: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    assert!(dir.is_dir(), "corpus folder {} is missing", dir.display());
    let mut files = Vec::new();
    walk(dir, &mut files);
    files.retain(|p| keep(&p.file_name().unwrap().to_string_lossy()));
    files.sort();
    files
}

/// The four corpora with their message files; the counts pin what SOURCE.txt describes, so
/// that a changed or half-copied corpus fails loudly instead of testing less.
fn corpora() -> Vec<Corpus> {
    let root = corpora_dir();
    let list = [
        (
            "stalwart-mail-parser",
            files_where(&root.join("stalwart-mail-parser/resources/eml"), |n| {
                n.ends_with(".eml")
            }),
            107,
        ),
        (
            "cpython-email-testdata",
            files_where(
                &root.join("cpython-email-testdata/Lib/test/test_email/data"),
                |n| n.starts_with("msg_") && n.ends_with(".txt"),
            ),
            49,
        ),
        (
            "spamscope-mail-parser",
            files_where(&root.join("spamscope-mail-parser/tests/mails"), |_| true),
            23,
        ),
        (
            "nodemailer-mailparser-fixtures",
            files_where(
                &root.join("nodemailer-mailparser-fixtures/test/fixtures"),
                |n| n.ends_with(".eml"),
            ),
            10,
        ),
    ];
    list.into_iter()
        .map(|(name, files, expected)| {
            assert_eq!(
                files.len(),
                expected,
                "{name}: expected {expected} message files, found {}",
                files.len()
            );
            Corpus { name, files }
        })
        .collect()
}

fn short(path: &Path) -> String {
    let root = corpora_dir();
    path.strip_prefix(&root)
        .unwrap_or(path)
        .display()
        .to_string()
}

fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------
// parse_message on every file, each in its own thread with a time bound.

enum ParseVerdict {
    Parsed { message_id: Option<String> },
    Unusable { reason: String },
}

fn parse_bounded(raw: Vec<u8>, sender: Option<&'static str>) -> Result<ParseVerdict, String> {
    let (tx, rx) = mpsc::channel();
    // A plain spawned thread has the same 2 MiB stack as the tokio threads that parse in
    // the server, so deep nesting that would overflow there overflows here too.
    std::thread::spawn(move || {
        let verdict = match parse_message(&raw, sender) {
            Ok(p) => ParseVerdict::Parsed {
                message_id: p.message_id,
            },
            Err(u) => {
                assert!(!u.reason.is_empty(), "an Unusable without a reason");
                assert!(!u.detail.is_empty(), "an Unusable without a detail");
                ParseVerdict::Unusable {
                    reason: u.reason.to_string(),
                }
            }
        };
        let _ = tx.send(verdict);
    });
    match rx.recv_timeout(PARSE_TIME_LIMIT) {
        Ok(v) => Ok(v),
        // The sender was dropped without a verdict: the thread panicked.
        Err(mpsc::RecvTimeoutError::Disconnected) => Err("parse_message panicked".into()),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(format!(
            "parse_message took more than {PARSE_TIME_LIMIT:?} (thread left running)"
        )),
    }
}

#[test]
fn parse_message_survives_every_corpus_file() {
    let mut failures = Vec::new();
    let mut total = 0;
    let mut slowest: (Duration, String) = (Duration::ZERO, String::new());
    for corpus in corpora() {
        let (mut parsed, mut with_id, mut unusable) = (0, 0, BTreeMap::<String, usize>::new());
        for path in &corpus.files {
            total += 1;
            let raw = read(path);
            let start = Instant::now();
            // Without an envelope sender, so that a message with no usable From shows here.
            match parse_bounded(raw, None) {
                Ok(ParseVerdict::Parsed { message_id }) => {
                    parsed += 1;
                    with_id += usize::from(message_id.is_some());
                }
                Ok(ParseVerdict::Unusable { reason }) => {
                    *unusable.entry(reason).or_default() += 1;
                }
                Err(why) => failures.push(format!("{}: {why}", short(path))),
            }
            let took = start.elapsed();
            if took > slowest.0 {
                slowest = (took, short(path));
            }
        }
        println!(
            "{:32} {:3} files: {parsed} parsed ({with_id} with a Message-ID), unusable {unusable:?}",
            corpus.name,
            corpus.files.len()
        );
    }
    println!("slowest parse: {:?} for {}", slowest.0, slowest.1);
    assert!(total >= 189, "only {total} files were parsed");
    assert!(
        failures.is_empty(),
        "parse_message failed on {} corpus files:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// Every file through the real SMTP server.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Stored(i64),
    Duplicate(i64),
    Quarantined(i64),
    TooLarge,
}

/// Reads `queued as m12`, `m12-duplicate` or `q3` from a 250 reply to the end of data.
fn outcome_of(reply: &SmtpReply) -> Option<Outcome> {
    let id = reply.text.split("queued as ").nth(1)?.trim();
    assert!(
        !id.contains(','),
        "one recipient account should give one outcome: {id}"
    );
    if let Some(n) = id.strip_prefix('q') {
        return n.parse().ok().map(Outcome::Quarantined);
    }
    let n = id.strip_prefix('m')?;
    match n.strip_suffix("-duplicate") {
        Some(d) => d.parse().ok().map(Outcome::Duplicate),
        None => n.parse().ok().map(Outcome::Stored),
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Transport {
    /// `BDAT <n> LAST`: the file's bytes exactly, no stuffing, no line-ending change.
    Bdat,
    /// DATA with dot-stuffing after every CRLF; a final CRLF is added when missing.
    Data,
}

/// The bytes to put on the wire after DATA, and the message the server must store.
fn dot_stuffed(message: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut stored = message.to_vec();
    if !stored.ends_with(b"\r\n") {
        stored.extend_from_slice(b"\r\n");
    }
    let mut wire = Vec::with_capacity(stored.len() + stored.len() / 50 + 3);
    // Only CRLF starts a line for the server (a bare LF or CR never does: SMTP smuggling),
    // so only a dot right after CRLF, or at the very start, is doubled.
    let mut line_start = true;
    let mut prev = 0u8;
    for &b in &stored {
        if line_start && b == b'.' {
            wire.push(b'.');
        }
        wire.push(b);
        line_start = prev == b'\r' && b == b'\n';
        prev = b;
    }
    wire.extend_from_slice(b".\r\n");
    (wire, stored)
}

struct Sent {
    path: PathBuf,
    /// The bytes the server must have stored for this file.
    stored: Vec<u8>,
    outcome: Result<Outcome, String>,
    took: Duration,
}

/// One SMTP transaction per file on one session (a new session after a broken one).
fn send_all(
    addr: std::net::SocketAddr,
    sender: &'static str,
    rcpt: &str,
    files: &[PathBuf],
    transport: Transport,
) -> Vec<Sent> {
    let connect = || {
        let (mut c, greeting) = RawSmtp::connect(addr).expect("connect");
        assert_eq!(greeting.code, 220, "{}", greeting.text);
        let ehlo = c.cmd("EHLO corpus.test").expect("EHLO");
        assert_eq!(ehlo.code, 250, "{}", ehlo.text);
        assert!(ehlo.text.contains("CHUNKING"), "{}", ehlo.text);
        c
    };
    let mut client = connect();
    let mut sent = Vec::new();
    for path in files {
        let raw = read(path);
        let start = Instant::now();
        let (wire, stored) = match transport {
            Transport::Bdat => (raw.clone(), raw.clone()),
            Transport::Data => dot_stuffed(&raw),
        };
        let result = (|| -> std::io::Result<Result<Outcome, String>> {
            let r = client.cmd(&format!("MAIL FROM:<{sender}> SIZE={}", stored.len()))?;
            if r.code == 552 && stored.len() > MAX_MESSAGE_SIZE {
                return Ok(Ok(Outcome::TooLarge));
            }
            if r.code != 250 {
                return Ok(Err(format!("MAIL FROM: {}", r.text.trim_end())));
            }
            let r = client.cmd(&format!("RCPT TO:<{rcpt}>"))?;
            if r.code != 250 {
                let _ = client.cmd("RSET")?;
                return Ok(Err(format!("RCPT TO: {}", r.text.trim_end())));
            }
            let r = match transport {
                Transport::Bdat => {
                    let mut chunk = format!("BDAT {} LAST\r\n", wire.len()).into_bytes();
                    chunk.extend_from_slice(&wire);
                    client.send_raw(&chunk)?;
                    client.read_reply()?
                }
                Transport::Data => {
                    let r = client.cmd("DATA")?;
                    if r.code != 354 {
                        return Ok(Err(format!("DATA: {}", r.text.trim_end())));
                    }
                    client.send_raw(&wire)?;
                    client.read_reply()?
                }
            };
            Ok(match r.code {
                250 => outcome_of(&r).ok_or_else(|| format!("unreadable 250: {}", r.text)),
                552 if stored.len() > MAX_MESSAGE_SIZE => Ok(Outcome::TooLarge),
                _ => Err(format!("end of data: {}", r.text.trim_end())),
            })
        })();
        let outcome = match result {
            Ok(o) => o,
            // No reply in time (RawSmtp reads with a 30 s timeout) or the session died,
            // as it would if parsing panicked: note it and go on with a fresh session.
            Err(e) => {
                client = connect();
                Err(format!("no reply: {e}"))
            }
        };
        sent.push(Sent {
            path: path.clone(),
            stored,
            outcome,
            took: start.elapsed(),
        });
    }
    let _ = client.cmd("QUIT");
    sent
}

#[derive(Default, Debug)]
struct Tally {
    files: usize,
    stored: usize,
    duplicates: usize,
    quarantined: BTreeMap<String, usize>,
    too_large: usize,
    /// "file = m12 (Message-ID)" for each duplicate, to show what collapsed.
    duplicate_of: Vec<String>,
}

/// Checks every outcome of one corpus against what the store holds for its account.
async fn check_corpus(
    app: &TestApp,
    account: i64,
    corpus: &str,
    sent: &[Sent],
    transport: Transport,
    envelope_sender: Option<&str>,
    failures: &mut Vec<String>,
) -> Tally {
    let acct = AccountId(account);
    // Every message of the account, by id, from its tickets.
    let mut messages = HashMap::new();
    for t in app.store.tickets(acct, None).await.expect("tickets") {
        let detail = app.ticket_detail(t.id, Scope::Account(acct)).await;
        assert_eq!(detail.ticket.account_id, account);
        for m in detail.messages {
            messages.insert(m.id, m);
        }
    }
    let quarantine: HashMap<i64, _> = app
        .store
        .quarantine(Scope::Account(acct))
        .await
        .expect("quarantine")
        .into_iter()
        .map(|q| (q.id, q))
        .collect();

    let mut tally = Tally::default();
    let mut stored_ids = HashSet::new();
    let mut quarantined_ids = HashSet::new();
    for s in sent {
        tally.files += 1;
        let name = short(&s.path);
        let mut fail = |why: String| failures.push(format!("[{transport:?}] {name}: {why}"));
        let outcome = match &s.outcome {
            Ok(o) => o.clone(),
            Err(e) => {
                fail(e.clone());
                continue;
            }
        };
        // What parsing and classification say of the same bytes, to cross-check the outcome.
        let context = ClassifyContext::new(INBOUND_DOMAIN);
        let expected = parse_inbound(&s.stored, envelope_sender, Some(&context));
        match outcome {
            Outcome::Stored(id) => {
                tally.stored += 1;
                if !stored_ids.insert(id) {
                    fail(format!("message m{id} reported stored twice"));
                }
                let Some(m) = messages.get(&id) else {
                    fail(format!("m{id} is in no ticket of the account"));
                    continue;
                };
                // An HTML body is one the sender wrote, never plain text dressed up.
                if m.html.is_some() && !contains_ignore_case(&s.stored, b"text/html") {
                    fail(format!(
                        "m{id} has an HTML body but the file has no text/html part"
                    ));
                }
                // The Outlook .msg of the spamscope corpus is binary data, not mail.
                if name.ends_with("mail_outlook_1") {
                    fail(format!("a binary .msg file became message m{id}"));
                }
                match &expected {
                    Ok(p) if p.message_id != m.message_id => fail(format!(
                        "m{id} has Message-ID {:?}, the file {:?}",
                        m.message_id, p.message_id
                    )),
                    Ok(_) => {}
                    Err(u) => fail(format!("stored, but parse_message says {u:?}")),
                }
                let raw = app.store.raw_message(id, acct).await.expect("raw message");
                if raw != s.stored {
                    fail(format!(
                        "stored raw bytes differ from those sent ({} vs {} bytes)",
                        raw.len(),
                        s.stored.len()
                    ));
                }
            }
            Outcome::Duplicate(id) => {
                tally.duplicates += 1;
                let Some(m) = messages.get(&id) else {
                    fail(format!("duplicate of m{id}, which is in no ticket"));
                    continue;
                };
                // A duplicate is the same Message-ID (or, without one, the same content).
                match &expected {
                    Ok(p) if p.message_id != m.message_id => fail(format!(
                        "called a duplicate of m{id} ({:?}) but has Message-ID {:?}",
                        m.message_id, p.message_id
                    )),
                    Ok(_) => {}
                    Err(u) => fail(format!("duplicate, but parse_message says {u:?}")),
                }
                tally
                    .duplicate_of
                    .push(format!("{name} = m{id} ({:?})", m.message_id));
            }
            Outcome::Quarantined(id) => {
                let Some(q) = quarantine.get(&id) else {
                    fail(format!("q{id} is not in the account's quarantine"));
                    continue;
                };
                if q.reason.trim().is_empty() {
                    fail(format!("q{id} has an empty reason"));
                }
                if q.size as usize != s.stored.len() {
                    fail(format!(
                        "q{id} keeps {} bytes, {} were sent",
                        q.size,
                        s.stored.len()
                    ));
                }
                // Bounces that are not about a message of ours, our own mail and forwarding
                // confirmations never become tickets.
                let by_kind = match &expected {
                    Ok(p) => match &p.kind {
                        MessageKind::Bounce { .. } => Some("bounce"),
                        MessageKind::OwnMail { .. } => Some("own_mail_loop"),
                        MessageKind::ForwardingConfirmation { .. } => {
                            Some("forwarding_confirmation")
                        }
                        _ => None,
                    },
                    Err(_) => None,
                };
                match &expected {
                    Err(u) if u.reason == q.reason => {}
                    Ok(_) if by_kind == Some(q.reason.as_str()) => {}
                    other => fail(format!(
                        "quarantined as {:?}, parse_message says {:?}",
                        q.reason,
                        other.as_ref().map(|p| &p.message_id)
                    )),
                }
                quarantined_ids.insert(id);
                *tally.quarantined.entry(q.reason.clone()).or_default() += 1;
            }
            Outcome::TooLarge => tally.too_large += 1,
        }
    }
    // Nothing more and nothing less than what the replies announced.
    if stored_ids.len() != messages.len() {
        failures.push(format!(
            "[{transport:?}] {corpus}: {} messages stored, the account's tickets hold {}",
            stored_ids.len(),
            messages.len()
        ));
    }
    if quarantined_ids.len() != quarantine.len() {
        failures.push(format!(
            "[{transport:?}] {corpus}: {} messages quarantined, the account's quarantine holds {}",
            quarantined_ids.len(),
            quarantine.len()
        ));
    }
    let quarantined: usize = tally.quarantined.values().sum();
    let accounted = tally.stored + tally.duplicates + quarantined + tally.too_large;
    let errored = sent.iter().filter(|s| s.outcome.is_err()).count();
    if accounted + errored != tally.files {
        failures.push(format!(
            "[{transport:?}] {corpus}: {} files but {accounted} outcomes",
            tally.files
        ));
    }
    tally
}

async fn deliver_corpora(transport: Transport, sender: &'static str) {
    let corpora = corpora();
    let app = spawn_app(&[]).await;
    let mut failures = Vec::new();
    let mut delivered = 0;
    for (i, corpus) in corpora.iter().enumerate() {
        // One account per corpus: dedup is per account, so counts stay per corpus.
        let (account, fwd) = app
            .account(&format!("Corpus {i}"), &format!("support@corpus{i}.test"))
            .await;
        let addr = app.smtp_addr;
        let files = corpus.files.clone();
        let sent = tokio::time::timeout(
            Duration::from_secs(600),
            tokio::task::spawn_blocking(move || send_all(addr, sender, &fwd, &files, transport)),
        )
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{}: delivering the corpus took over 10 minutes",
                corpus.name
            )
        })
        .expect("SMTP client thread");
        let slowest = sent.iter().max_by_key(|s| s.took).expect("files");
        let tally = check_corpus(
            &app,
            account,
            corpus.name,
            &sent,
            transport,
            Some(sender).filter(|s| !s.is_empty()),
            &mut failures,
        )
        .await;
        println!(
            "[{transport:?}] {:32} {:3} files: {} stored, {} duplicates, quarantined {:?}, {} too large; slowest {:?} ({})",
            corpus.name,
            tally.files,
            tally.stored,
            tally.duplicates,
            tally.quarantined,
            tally.too_large,
            slowest.took,
            short(&slowest.path)
        );
        for d in &tally.duplicate_of {
            println!("    duplicate: {d}");
        }
        assert_eq!(tally.files, corpus.files.len());
        delivered += tally.files;
    }
    println!("[{transport:?}] {delivered} files delivered");
    crate::common::fixture_cases::assert_none_failed(&failures, "corpus deliveries went wrong");
    app.stop().await;
}

/// BDAT sends each file byte for byte, with a real envelope sender (as forwarded mail has).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_corpus_message_over_bdat_becomes_a_ticket_or_quarantine() {
    deliver_corpora(Transport::Bdat, SENDER).await;
}

/// DATA with dot-stuffing, from the null reverse-path (as bounces come): the stored bytes
/// must be exactly those sent once unstuffed, and a message with neither From nor Sender
/// now has no address at all, so it must go to quarantine rather than be lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_corpus_message_over_data_is_stored_byte_exact() {
    deliver_corpora(Transport::Data, "").await;
}

#[test]
fn dot_stuffing_follows_crlf_only() {
    let (wire, stored) = dot_stuffed(b".a\r\n.b\n.c\r.d\r\n..e");
    assert_eq!(stored, b".a\r\n.b\n.c\r.d\r\n..e\r\n");
    assert_eq!(wire, b"..a\r\n..b\n.c\r.d\r\n...e\r\n.\r\n");
    let (wire, stored) = dot_stuffed(b"x\r\n");
    assert_eq!(stored, b"x\r\n");
    assert_eq!(wire, b"x\r\n.\r\n");
}
