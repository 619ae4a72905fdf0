//! End to end: the real `postern` binary, real SMTP clients (swaks, Python's smtplib with
//! STARTTLS), the CLI, restart, graceful shutdown and limits.

use crate::common::*;
use postern::domain::Scope;
use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

fn ticket_subjects(dir: &std::path::Path, account: i64) -> Vec<String> {
    let v = tickets_json(dir, account);
    v.as_array()
        .unwrap()
        .iter()
        .map(|t| t["subject"].as_str().unwrap().to_string())
        .collect()
}

fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn swaks_and_smtplib_with_starttls_then_restart() {
    let swaks = require_program("swaks");
    let dir = tempfile::tempdir().unwrap();
    let (account, fwd) = create_account(dir.path(), "Acme", "support@acme.test");
    let server = ServerProcess::start(dir.path(), &[]);

    let out = Command::new(&swaks)
        .args([
            "--server",
            &server.smtp_addr.to_string(),
            "--tls",
            "--to",
            &fwd,
            "--from",
            "ana@customer.test",
        ])
        .args([
            "--header",
            "Subject: Order 1234 has not arrived",
            "--body",
            "Hello, where is my parcel?",
        ])
        .output()
        .unwrap();
    let transcript = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "swaks failed: {transcript}");
    assert!(
        transcript.contains("<~  250 2.0.0 Ok: queued as m"),
        "{transcript}"
    );
    assert!(
        transcript.contains("STARTTLS") && transcript.contains("TLS started"),
        "{transcript}"
    );

    let py = format!(
        r#"
import smtplib, ssl, sys
from email.message import EmailMessage
m = EmailMessage()
m["From"] = "Bruno <bruno@client.example>"
m["To"] = "{fwd}"
m["Subject"] = "Remboursement svp"
m.set_content("Bonjour, je voudrais un remboursement.")
m.add_alternative("<p>Bonjour, je voudrais un <b>remboursement</b>.</p>", subtype="html")
m.add_attachment(b"%PDF-1.4 fake", maintype="application", subtype="pdf", filename="facture.pdf")
s = smtplib.SMTP("{host}", {port}, timeout=30)
s.ehlo("py.client.example")
s.starttls(context=ssl._create_unverified_context())
s.ehlo("py.client.example")
refused = s.send_message(m)
assert not refused, refused
s.quit()
print("sent")
"#,
        host = server.smtp_addr.ip(),
        port = server.smtp_addr.port()
    );
    let out = Command::new("python3").args(["-c", &py]).output().unwrap();
    assert!(
        out.status.success(),
        "smtplib: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let health = http_get(server.http_addr, "/healthz");
    assert!(
        health.starts_with("HTTP/1.1 200") && health.contains("\"ok\""),
        "{health}"
    );
    let ready = http_get(server.http_addr, "/readyz");
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");

    let mut subjects = ticket_subjects(dir.path(), account);
    subjects.sort();
    assert_eq!(
        subjects,
        ["Order 1234 has not arrived", "Remboursement svp"]
    );

    // The ticket from smtplib: HTML part, attachment, customer from the From header.
    let list = tickets_json(dir.path(), account);
    let id = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["subject"] == "Remboursement svp")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let t = cli_json(dir.path(), &["ticket", "show", &id.to_string(), "--json"]);
    assert_eq!(t["customer"], "bruno@client.example");
    assert_eq!(t["status"], "open");
    let m = &t["messages"][0];
    assert_eq!(m["from_name"], "Bruno");
    assert!(m["text"]
        .as_str()
        .unwrap()
        .contains("je voudrais un remboursement"));
    assert!(m["html"].as_str().unwrap().contains("<b>remboursement</b>"));
    assert_eq!(m["attachments"][0]["filename"], "facture.pdf");
    assert_eq!(m["attachments"][0]["content_type"], "application/pdf");
    assert_eq!(m["envelope"]["tls"], true);

    // Restart: everything is still there.
    assert!(server.terminate().success());
    let server = ServerProcess::start(dir.path(), &[]);
    let mut after = ticket_subjects(dir.path(), account);
    after.sort();
    assert_eq!(after, subjects);
    // And the restarted server still accepts mail.
    let (mut c, _) = RawSmtp::connect(server.smtp_addr).unwrap();
    c.cmd("EHLO again.test").unwrap();
    let r = c
        .send_mail(
            "ana@customer.test",
            &fwd,
            "From: ana@customer.test\nSubject: After restart\n\nstill here\n",
        )
        .unwrap();
    assert_eq!(r.code, 250, "{}", r.text);
    assert_eq!(ticket_subjects(dir.path(), account).len(), 3);
}

#[test]
fn graceful_shutdown_finishes_in_flight_and_refuses_new() {
    let dir = tempfile::tempdir().unwrap();
    let (account, fwd) = create_account(dir.path(), "Acme", "support@acme.test");
    let server = ServerProcess::start(dir.path(), &[("POSTERN__SMTP__SHUTDOWN_GRACE", "20s")]);
    let addr = server.smtp_addr;

    // An idle session, and one in the middle of a transaction.
    let (mut idle, _) = RawSmtp::connect(addr).unwrap();
    idle.cmd("EHLO idle.test").unwrap();
    let (mut busy, _) = RawSmtp::connect(addr).unwrap();
    busy.cmd("EHLO busy.test").unwrap();
    assert_eq!(busy.cmd("MAIL FROM:<ana@customer.test>").unwrap().code, 250);
    assert_eq!(busy.cmd(&format!("RCPT TO:<{fwd}>")).unwrap().code, 250);

    let pid = server.child.id();
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));

    // The idle session is told to go away.
    let r = idle.read_reply().unwrap();
    assert_eq!(r.code, 421, "{}", r.text);
    assert!(r.text.contains("4.3.2"));
    // A new connection is refused with 421 while the server drains.
    let (_, greeting) = RawSmtp::connect(addr).unwrap();
    assert_eq!(greeting.code, 421, "{}", greeting.text);
    // The transaction in flight completes and is stored.
    assert_eq!(busy.cmd("DATA").unwrap().code, 354);
    busy.send_raw(b"From: ana@customer.test\r\nSubject: In flight\r\n\r\nbody\r\n.\r\n")
        .unwrap();
    let r = busy.read_reply().unwrap();
    assert_eq!(r.code, 250, "{}", r.text);
    assert_eq!(busy.cmd("NOOP").map(|r| r.code).unwrap_or(421), 421);

    let status = server.terminate();
    assert!(status.success(), "{status:?}");
    assert_eq!(ticket_subjects(dir.path(), account), ["In flight"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limit_per_ip() {
    let app = spawn_app(&[("POSTERN__SMTP__MAX_CONNECTIONS_PER_IP", "2")]).await;
    let addr = app.smtp_addr;
    tokio::task::spawn_blocking(move || {
        let (_a, g1) = RawSmtp::connect(addr).unwrap();
        let (_b, g2) = RawSmtp::connect(addr).unwrap();
        let (_c, g3) = RawSmtp::connect(addr).unwrap();
        assert_eq!((g1.code, g2.code), (220, 220));
        assert_eq!(g3.code, 421, "{}", g3.text);
        assert!(g3.text.contains("4.7.0"));
        drop((_a, _b));
        std::thread::sleep(Duration::from_millis(200));
        let (_d, g4) = RawSmtp::connect(addr).unwrap();
        assert_eq!(g4.code, 220, "slots are freed when connections close");
    })
    .await
    .unwrap();
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_failure_answers_451_and_nothing_is_half_stored() {
    let (app, account, fwd) = spawn_app_with_acme(&[]).await;
    crate::common::raw_db(&app.store)
        .execute_batch("CREATE TRIGGER fail_insert BEFORE INSERT ON messages BEGIN SELECT RAISE(ABORT, 'disk on fire'); END")
        .unwrap();
    let addr = app.smtp_addr;
    let r = app
        .smtp_send(
            "c.test",
            "ana@customer.test",
            &fwd,
            "From: ana@customer.test\nMessage-ID: <retry-1@customer.test>\nSubject: Retry me\n\nx\n",
        )
        .await;
    assert_eq!(r.code, 451, "{}", r.text);
    assert!(r.text.contains("4.3.0"));
    let acct = postern::domain::AccountId(account);
    assert!(
        app.store.tickets(acct, None).await.unwrap().is_empty(),
        "no half-written ticket"
    );

    crate::common::raw_db(&app.store)
        .execute_batch("DROP TRIGGER fail_insert")
        .unwrap();
    let r = tokio::task::spawn_blocking(move || {
        let (mut c, _) = RawSmtp::connect(addr).unwrap();
        c.cmd("EHLO c.test").unwrap();
        let first = c.send_mail("ana@customer.test", &fwd, "From: ana@customer.test\nMessage-ID: <retry-1@customer.test>\nSubject: Retry me\n\nx\n").unwrap();
        // The sender's retry of a message we already have: 250, stored once.
        let again = c.send_mail("ana@customer.test", &fwd, "From: ana@customer.test\nMessage-ID: <retry-1@customer.test>\nSubject: Retry me\n\nx\n").unwrap();
        (first, again)
    })
    .await
    .unwrap();
    assert_eq!(r.0.code, 250, "{}", r.0.text);
    assert_eq!(r.1.code, 250, "{}", r.1.text);
    assert!(r.1.text.contains("duplicate"), "{}", r.1.text);
    let tickets = app.store.tickets(acct, None).await.unwrap();
    assert_eq!(tickets.len(), 1);
    assert_eq!(tickets[0].message_count, 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_mail_is_quarantined_not_lost() {
    let (app, account, fwd) = spawn_app_with_acme(&[]).await;
    let addr = app.smtp_addr;
    let r = tokio::task::spawn_blocking(move || {
        let (mut c, _) = RawSmtp::connect(addr).unwrap();
        c.cmd("EHLO c.test").unwrap();
        // Null sender and no From: nobody to open a ticket for.
        let r1 = c
            .send_mail("", &fwd, "Subject: who am I\n\nno sender anywhere\n")
            .unwrap();
        // An empty message has no header at all.
        let r2 = c.send_mail("ana@customer.test", &fwd, "").unwrap();
        // The sender retries the first one: still quarantined once.
        let r3 = c
            .send_mail("", &fwd, "Subject: who am I\n\nno sender anywhere\n")
            .unwrap();
        assert_eq!(r3.code, 250, "{}", r3.text);
        assert_eq!(
            r3.text.split("queued as").nth(1),
            r1.text.split("queued as").nth(1)
        );
        (r1, r2)
    })
    .await
    .unwrap();
    assert_eq!(r.0.code, 250, "{}", r.0.text);
    assert_eq!(r.1.code, 250, "{}", r.1.text);
    let acct = postern::domain::AccountId(account);
    let q = app.store.quarantine(Scope::Account(acct)).await.unwrap();
    let mut reasons: Vec<&str> = q.iter().map(|q| q.reason.as_str()).collect();
    reasons.sort();
    assert_eq!(reasons, ["no_sender", "unparseable"]);
    assert!(app.store.tickets(acct, None).await.unwrap().is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_only_see_their_own_mail() {
    let (app, a, fwd_a) = spawn_app_with_acme(&[]).await;
    let (b, fwd_b) = app.account("Beta", "help@beta.test").await;
    let addr = app.smtp_addr;
    tokio::task::spawn_blocking(move || {
        let (mut c, _) = RawSmtp::connect(addr).unwrap();
        c.cmd("EHLO c.test").unwrap();
        assert_eq!(
            c.send_mail("x@c.test", &fwd_a, "From: x@c.test\nSubject: for A\n\nA\n")
                .unwrap()
                .code,
            250
        );
        assert_eq!(
            c.send_mail("y@c.test", &fwd_b, "From: y@c.test\nSubject: for B\n\nB\n")
                .unwrap()
                .code,
            250
        );
    })
    .await
    .unwrap();
    let ta = app
        .store
        .tickets(postern::domain::AccountId(a), None)
        .await
        .unwrap();
    let tb = app
        .store
        .tickets(postern::domain::AccountId(b), None)
        .await
        .unwrap();
    assert_eq!(
        ta.iter().map(|t| t.subject.as_str()).collect::<Vec<_>>(),
        ["for A"]
    );
    assert_eq!(
        tb.iter().map(|t| t.subject.as_str()).collect::<Vec<_>>(),
        ["for B"]
    );
    // Asking for B's ticket within account A is "not found".
    let err = app
        .store
        .ticket(
            postern::domain::TicketId(tb[0].id),
            Scope::Account(postern::domain::AccountId(a)),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no ticket"), "{err}");
    app.stop().await;
}

#[test]
fn cli_errors_are_one_line_and_nonzero() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec![
            "account",
            "create",
            "--name",
            "X",
            "--support-address",
            "not-an-address",
        ],
        vec!["account", "show", "999"],
        vec!["tickets", "list", "--account", "42"],
        vec!["ticket", "show", "7"],
        vec!["--config", "/nonexistent/postern.toml", "account", "list"],
    ] {
        let out = Command::new(postern_bin())
            .args(&args)
            .envs(test_env(dir.path(), &[]))
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("postern: "), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_storage_answers_452_and_keeps_what_it_acknowledged() {
    // A 1 MiB cap on the database: it fills up after a few dozen 40 KB messages. Their text
    // is random (bodies and raw bytes are stored compressed: repeated text would not fill it).
    fn noise(seed: u64, len: usize) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|i| {
                if i % 76 == 75 {
                    return '\n';
                }
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                ALPHABET[(x % 64) as usize] as char
            })
            .collect()
    }
    let (app, account, fwd) = spawn_app_with_acme(&[("POSTERN__STORE__MAX_SIZE", "1048576")]).await;
    let addr = app.smtp_addr;
    let (acked, full_reply, noop) = tokio::task::spawn_blocking(move || {
        let (mut c, _) = RawSmtp::connect(addr).unwrap();
        c.cmd("EHLO c.test").unwrap();
        let mut acked = Vec::new();
        for n in 0..200 {
            let subject = format!("fill-{n}");
            let body = format!(
                "From: a@customer.test\nSubject: {subject}\n\n{}\n",
                noise(n + 1, 40_000)
            );
            let r = c.send_mail("a@customer.test", &fwd, &body).unwrap();
            if r.code == 250 {
                acked.push(subject);
            } else {
                let noop = c.cmd("NOOP").unwrap();
                return (acked, Some(r), noop);
            }
        }
        (acked, None, c.cmd("NOOP").unwrap())
    })
    .await
    .unwrap();
    let full = full_reply.expect("the database never filled up");
    assert_eq!(full.code, 452, "{}", full.text);
    assert!(full.text.contains("4.3.1"), "{}", full.text);
    assert_eq!(noop.code, 250, "the session stays usable");
    assert!(!acked.is_empty());
    let tickets = app
        .store
        .tickets(postern::domain::AccountId(account), None)
        .await
        .unwrap();
    let mut stored: Vec<String> = tickets.into_iter().map(|t| t.subject).collect();
    stored.sort();
    let mut expected = acked.clone();
    expected.sort();
    assert_eq!(
        stored, expected,
        "exactly the acknowledged messages are stored"
    );
    app.stop().await;
}
