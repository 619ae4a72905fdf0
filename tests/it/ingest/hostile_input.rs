//! Hostile messages against the real server process: one message must never take intake
//! down for everyone (issue 19, finding 1: 50,000 nested message/rfc822 parts overflowed the
//! stack of the thread that dropped the parsed message, and aborted the process).

use crate::common::*;
use std::process::Command;
use std::time::{Duration, Instant};

/// A message whose body is an attached message, `levels` deep.
fn nested_messages(levels: usize) -> Vec<u8> {
    let mut raw =
        b"From: attacker@hostile.test\r\nSubject: nest\r\nMessage-ID: <nest@hostile.test>\r\n"
            .to_vec();
    for _ in 0..levels {
        raw.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\n");
    }
    raw.extend_from_slice(b"From: inner@hostile.test\r\nSubject: inner\r\n\r\nbody\r\n");
    raw
}

/// The same depth hidden in a base64-encoded attached message: the parser reads encoded
/// attached messages in a second pass, whose result it converts recursively.
fn encoded_nested_messages(levels: usize) -> Vec<u8> {
    use base64::Engine;
    let inner = base64::engine::general_purpose::STANDARD.encode(nested_messages(levels));
    let mut raw = b"From: attacker@hostile.test\r\nSubject: encoded nest\r\nMessage-ID: <enc@hostile.test>\r\nContent-Type: multipart/mixed; boundary=\"zz\"\r\n\r\n--zz\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--zz\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n".to_vec();
    for line in inner.as_bytes().chunks(76) {
        raw.extend_from_slice(line);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"--zz--\r\n");
    raw
}

fn swaks_send(server: &ServerProcess, to: &str, data: &std::path::Path) -> (bool, String) {
    let out = Command::new(require_program("swaks"))
        .args(["--server", &server.smtp_addr.to_string()])
        .args(["--to", to, "--from", "attacker@hostile.test"])
        .args(["--data", &format!("@{}", data.display())])
        .args(["--timeout", "60"])
        .output()
        .expect("run swaks");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn ticket_count(dir: &std::path::Path, account: i64) -> usize {
    let tickets = tickets_json(dir, account);
    tickets.as_array().map_or(0, Vec::len)
}

fn quarantine_reasons(dir: &std::path::Path, account: i64) -> Vec<String> {
    let v = cli_json(
        dir,
        &[
            "quarantine",
            "list",
            "--account",
            &account.to_string(),
            "--json",
        ],
    );
    v.as_array()
        .expect("quarantine list is an array")
        .iter()
        .map(|q| q["reason"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn deeply_nested_messages_are_quarantined_and_the_server_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let (account, fwd) = create_account(dir.path(), "Acme", "support@acme.test");
    let mut server = ServerProcess::start(dir.path(), &[]);

    for (name, raw) in [
        ("plain.eml", nested_messages(50_000)),
        ("encoded.eml", encoded_nested_messages(50_000)),
    ] {
        let file = dir.path().join(name);
        std::fs::write(&file, &raw).unwrap();
        let (ok, transcript) = swaks_send(&server, &fwd, &file);
        assert!(
            ok && transcript.contains("<-  250"),
            "{name}: the message is accepted (and kept in quarantine): {transcript}"
        );
        assert!(
            server.child.try_wait().unwrap().is_none(),
            "{name}: the server died: {:?}",
            server.logs().iter().rev().take(5).collect::<Vec<_>>()
        );
    }

    // Intake still works for everyone else.
    let normal = dir.path().join("normal.eml");
    std::fs::write(
        &normal,
        b"From: ana@customer.test\r\nSubject: where is my parcel\r\nMessage-ID: <ok@customer.test>\r\n\r\nHello\r\n",
    )
    .unwrap();
    let (ok, transcript) = swaks_send(&server, &fwd, &normal);
    assert!(ok && transcript.contains("<-  250"), "{transcript}");

    let reasons = quarantine_reasons(dir.path(), account);
    assert_eq!(
        reasons.iter().filter(|r| *r == "too_deep").count(),
        2,
        "both hostile messages are quarantined as too deep: {reasons:?}"
    );
    assert_eq!(
        ticket_count(dir.path(), account),
        1,
        "only the normal message opened a ticket"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_import_of_a_deeply_nested_message_quarantines_it_and_the_server_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let (account, _) = create_account(dir.path(), "Acme", "support@acme.test");
    let token = api_token(dir.path(), account, "admin");
    let mut server = ServerProcess::start(dir.path(), &[]);

    let mut mbox = b"From attacker@hostile.test Mon Jan  1 00:00:00 2024\n".to_vec();
    mbox.extend_from_slice(&nested_messages(50_000));
    mbox.extend_from_slice(b"\nFrom ana@customer.test Tue Jan  2 00:00:00 2024\n");
    mbox.extend_from_slice(b"From: ana@customer.test\nSubject: an old question\nMessage-ID: <old@customer.test>\nDate: Tue, 2 Jan 2024 00:00:00 +0000\n\nHello\n");

    let client = reqwest::Client::new();
    let base = format!("http://{}", server.http_addr);
    let resp = client
        .post(format!(
            "{base}/api/v1/imports/upload?kind=mbox&name=hostile.mbox"
        ))
        .bearer_auth(&token)
        .header("content-type", "application/octet-stream")
        .body(mbox)
        .send()
        .await
        .expect("upload");
    assert_eq!(resp.status(), 202, "{:?}", resp.text().await);
    let job: serde_json::Value = resp.json().await.expect("job JSON");
    let id = job["id"].as_i64().expect("job id");

    let deadline = Instant::now() + Duration::from_secs(60);
    let done = loop {
        assert!(
            server.child.try_wait().unwrap().is_none(),
            "the server died during the import"
        );
        let job: serde_json::Value = client
            .get(format!("{base}/api/v1/imports/{id}"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("job status")
            .json()
            .await
            .expect("job JSON");
        if !["queued", "running"].contains(&job["status"].as_str().unwrap_or_default()) {
            break job;
        }
        assert!(Instant::now() < deadline, "the job did not end: {job}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["quarantined"], 1, "{done}");
    assert_eq!(done["imported"], 1, "{done}");
    assert_eq!(
        quarantine_reasons(dir.path(), account),
        vec!["too_deep".to_string()]
    );
}

/// A parser fault the limits do not foresee is contained: a message that may hold attached
/// messages is parsed first in a child process; when that child dies (here through the
/// probe's fault injection, as a stack overflow or an abort would kill it), the message is
/// quarantined as `parser_crashed`, the server goes on, and the next child parses the rest.
#[test]
fn a_parser_crash_kills_only_the_probe_and_the_message_is_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let (account, fwd) = create_account(dir.path(), "Acme", "support@acme.test");
    let mut server = ServerProcess::start(
        dir.path(),
        &[(
            postern::ingest::parse_probe::FAULT_ABORT_ON,
            "crash-the-parser-here",
        )],
    );
    let forward = |subject: &str, body: &str| -> Vec<u8> {
        format!(
            "From: ana@customer.test\r\nSubject: {subject}\r\nMessage-ID: <{subject}@customer.test>\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nFrom: bob@other.test\r\nSubject: inner\r\n\r\n{body}\r\n--b--\r\n"
        )
        .into_bytes()
    };
    for (name, raw) in [
        ("crash.eml", forward("first", "crash-the-parser-here")),
        ("forward.eml", forward("second", "a forwarded message")),
    ] {
        let file = dir.path().join(name);
        std::fs::write(&file, &raw).unwrap();
        let (ok, transcript) = swaks_send(&server, &fwd, &file);
        assert!(ok && transcript.contains("<-  250"), "{name}: {transcript}");
        assert!(
            server.child.try_wait().unwrap().is_none(),
            "{name}: the server died"
        );
    }
    assert_eq!(
        quarantine_reasons(dir.path(), account),
        vec!["parser_crashed".to_string()]
    );
    assert_eq!(
        ticket_count(dir.path(), account),
        1,
        "the next forward was parsed by a new probe"
    );
}
