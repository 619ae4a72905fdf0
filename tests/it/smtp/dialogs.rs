//! SMTP dialogs as data: each tests/fixtures/smtp_dialogs/<name>.dialog is what a client
//! sends and every reply line it must get, in order, run through the session state machine
//! over an in-memory pipe with a recording delivery. The client's lines are sent in one
//! write, as a pipelining client may. One test runs every file and names each that fails.
//!
//! Lines of a dialog file (blank lines and lines starting with `#` are skipped):
//! - `C: text` the client sends text and CRLF; `C+: text` sends text alone (bare CR/LF,
//!   BDAT chunks);
//! - `S: text` the next reply line starts with text; every reply must be matched, and none
//!   may be left over (the continuation lines of a multi-line reply, `250-...`, only where
//!   the dialog lists them);
//! - `delivered: N` how many messages the delivery got;
//! - `message: text` the first delivered message is exactly text; `message-contains: text`
//!   it contains text; `mail-from:`, `rcpt-to:`, `helo:` its envelope;
//! - `max-recipients: N` the session's recipient limit (3 otherwise);
//! - `fail-next: text` the first delivery fails as storage does (451 4.3.0 text).
//!
//! In C, S and message lines, `\r`, `\n`, `\t`, `\0` and `\\` stand for those characters.

use super::pipe::{config, converse_with, Recorder};
use crate::common::fixture_cases::{assert_all_passed, case_names, fixture_dir, read_case, record};
use postern::smtp::DeliveryError;
use std::sync::Arc;

#[derive(Debug, Default)]
struct Dialog {
    input: Vec<u8>,
    replies: Vec<String>,
    delivered: Option<usize>,
    message: Option<String>,
    message_contains: Vec<String>,
    mail_from: Option<String>,
    rcpt_to: Option<String>,
    helo: Option<String>,
    max_recipients: Option<usize>,
    fail_next: Option<String>,
}

fn unescape(text: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(match chars.next() {
            Some('r') => '\r',
            Some('n') => '\n',
            Some('t') => '\t',
            Some('0') => '\0',
            Some('\\') => '\\',
            other => return Err(format!("unknown escape \\{other:?} in {text:?}")),
        });
    }
    Ok(out)
}

fn parse(text: &str) -> Result<Dialog, String> {
    let mut d = Dialog::default();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line
            .split_once(':')
            .ok_or_else(|| format!("line {}: no `key:` in {line:?}", n + 1))?;
        // One space after the colon is the separator; `C:` alone sends an empty line.
        let value = value.strip_prefix(' ').unwrap_or(value);
        let number = |v: &str| {
            v.parse::<usize>()
                .map_err(|e| format!("line {}: {v:?}: {e}", n + 1))
        };
        match key {
            "C" => {
                d.input.extend_from_slice(unescape(value)?.as_bytes());
                d.input.extend_from_slice(b"\r\n");
            }
            "C+" => d.input.extend_from_slice(unescape(value)?.as_bytes()),
            "S" => d.replies.push(unescape(value)?),
            "delivered" => d.delivered = Some(number(value)?),
            "message" => d.message = Some(unescape(value)?),
            "message-contains" => d.message_contains.push(unescape(value)?),
            "mail-from" => d.mail_from = Some(value.to_string()),
            "rcpt-to" => d.rcpt_to = Some(value.to_string()),
            "helo" => d.helo = Some(value.to_string()),
            "max-recipients" => d.max_recipients = Some(number(value)?),
            "fail-next" => d.fail_next = Some(value.to_string()),
            other => return Err(format!("line {}: unknown key {other:?}", n + 1)),
        }
    }
    if d.input.is_empty() {
        return Err("the dialog sends nothing".into());
    }
    Ok(d)
}

fn is_continuation(line: &str) -> bool {
    line.as_bytes().get(3) == Some(&b'-')
}

/// Matches the expected lines against the replies in order. The continuation lines of a
/// multi-line reply (`250-...`) are matched only where the dialog lists them.
fn match_replies(want: &[String], replies: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut expected = want.iter().peekable();
    for (i, got) in replies.iter().enumerate() {
        let next = expected.peek();
        if is_continuation(got) && !next.is_some_and(|w| is_continuation(w)) {
            continue;
        }
        match expected.next() {
            Some(w) if got.starts_with(w.as_str()) => {}
            Some(w) => problems.push(format!("reply {}: expected {w:?}, got {got:?}", i + 1)),
            None => problems.push(format!("reply {} not expected: {got:?}", i + 1)),
        }
    }
    let missing: Vec<_> = expected.collect();
    if !missing.is_empty() {
        problems.push(format!("replies missing: {missing:?}"));
    }
    problems
}

/// Runs one dialog and returns what differs from the file.
async fn run(d: Dialog) -> Vec<String> {
    let mut cfg = config();
    if let Some(n) = d.max_recipients {
        cfg.max_recipients = n;
    }
    let delivery = Arc::new(Recorder::default());
    if let Some(text) = &d.fail_next {
        *delivery.fail_next.lock().expect("lock") =
            Some(DeliveryError::temporary("4.3.0", text.as_str()));
    }
    let replies = converse_with(cfg, delivery.clone(), &d.input).await;
    let mut problems = match_replies(&d.replies, &replies);
    let delivered = delivery.delivered.lock().expect("lock");
    if let Some(n) = d.delivered {
        if delivered.len() != n {
            problems.push(format!(
                "{} messages delivered, expected {n}",
                delivered.len()
            ));
        }
    }
    let first = delivered.first();
    let text = first.map(|(_, raw)| String::from_utf8_lossy(raw).into_owned());
    if let Some(want) = &d.message {
        if text.as_deref() != Some(want.as_str()) {
            problems.push(format!("message {text:?}, expected {want:?}"));
        }
    }
    for want in &d.message_contains {
        if !text.as_deref().is_some_and(|t| t.contains(want.as_str())) {
            problems.push(format!("message {text:?} does not contain {want:?}"));
        }
    }
    let envelope = first.map(|(e, _)| e);
    if let Some(want) = &d.mail_from {
        let got = envelope.and_then(|e| e.mail_from.as_deref());
        if got != Some(want.as_str()) {
            problems.push(format!("MAIL FROM {got:?}, expected {want:?}"));
        }
    }
    if let Some(want) = &d.rcpt_to {
        let got = envelope.map(|e| e.rcpt_to.join(" "));
        if got.as_deref() != Some(want.as_str()) {
            problems.push(format!("RCPT TO {got:?}, expected {want:?}"));
        }
    }
    if let Some(want) = &d.helo {
        let got = envelope.map(|e| e.helo.as_str());
        if got != Some(want.as_str()) {
            problems.push(format!("HELO {got:?}, expected {want:?}"));
        }
    }
    if !problems.is_empty() {
        problems.push(format!("all replies: {replies:?}"));
    }
    problems
}

#[tokio::test]
async fn smtp_dialogs() {
    let dir = fixture_dir("smtp_dialogs");
    let names = case_names(&dir, "dialog");
    let mut failures = Vec::new();
    for name in &names {
        let outcome = match read_case(&dir, name, "dialog").and_then(|text| parse(&text)) {
            Ok(d) => Ok(run(d).await),
            Err(e) => Err(e),
        };
        record(&mut failures, name, outcome);
    }
    assert_all_passed(&failures, names.len());
}
