//! A message addressed to thousands cannot grow the database by a row per address: sent
//! with Python's smtplib to the running server, a message with 10,000 To addresses adds at
//! most `threading.max_participants_per_message` (100) participant rows, is stored whole
//! (every address in its raw form and its To list), and threads as usual: the sender and
//! a recipient within the cap reply into its ticket, a recipient past the cap opens a new
//! one, flagged, as any stranger would.

use crate::common::*;
use std::process::Command;

const TO_COUNT: usize = 10_000;
const CAP: i64 = 100;

fn recipient(i: usize) -> String {
    format!("p{i:05}@people.test")
}

/// The message, CRLF line ends, its To header folded one address a line.
fn addressed_to_thousands() -> Vec<u8> {
    let to: Vec<String> = (0..TO_COUNT).map(recipient).collect();
    format!(
        "From: Ana <ana@customer.test>\r\nTo: {}\r\nSubject: Order 77 for everyone\r\n\
         Message-ID: <everyone@customer.test>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\n\
         Hello all, where is order 77?\r\n",
        to.join(",\r\n ")
    )
    .into_bytes()
}

fn send_with_smtplib(app: &TestApp, to: &str, message: &[u8]) {
    let file = app.dir.path().join("message.eml");
    std::fs::write(&file, message).expect("write message");
    let script = r#"
import smtplib, sys
host, port, rcpt, path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
data = open(path, "rb").read()
s = smtplib.SMTP(host, port, timeout=60)
refused = s.sendmail("ana@customer.test", [rcpt], data)
assert not refused, refused
s.quit()
"#;
    crate::common::run_ok(
        Command::new("python3").args([
            "-c",
            script,
            &app.smtp_addr.ip().to_string(),
            &app.smtp_addr.port().to_string(),
            to,
            file.to_str().expect("path"),
        ]),
        "smtplib",
    );
}

async fn messages(app: &TestApp) -> Vec<(i64, i64, String, String)> {
    sqlx::query_as(
        "SELECT id, ticket_id, thread_reason, COALESCE(from_address, '') FROM messages ORDER BY id",
    )
    .fetch_all(app.store.pool())
    .await
    .expect("messages")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_recipients_add_at_most_the_cap_of_participant_rows() {
    let app = spawn_app(&[]).await;
    let (account, forwarding) = app.account("Shop", "support@shop.test").await;
    let sent = addressed_to_thousands();
    assert!(sent.len() > 200_000, "{} bytes", sent.len());
    send_with_smtplib(&app, &forwarding, &sent);

    let stored = messages(&app).await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    let (message, ticket, _, _) = stored[0].clone();
    let participants: Vec<(String, String)> = sqlx::query_as(
        "SELECT email, role FROM ticket_participants WHERE ticket_id = ? ORDER BY email",
    )
    .bind(ticket)
    .fetch_all(app.store.pool())
    .await
    .expect("participants");
    assert_eq!(participants.len() as i64, CAP, "one row per address kept");
    assert!(participants.contains(&("ana@customer.test".to_string(), "customer".to_string())));
    let emails: Vec<&str> = participants.iter().map(|(e, _)| e.as_str()).collect();
    assert!(
        emails.contains(&recipient(0).as_str()) && emails.contains(&recipient(98).as_str()),
        "the first recipients, in order: {emails:?}"
    );
    assert!(!emails.contains(&recipient(99).as_str()));

    // Nothing of the message is lost: its To list and its raw form hold every address.
    let to_count: i64 =
        sqlx::query_scalar("SELECT json_array_length(to_list) FROM messages WHERE id = ?")
            .bind(message)
            .fetch_one(app.store.pool())
            .await
            .expect("to list");
    assert_eq!(to_count as usize, TO_COUNT);
    let token = api_token(app.dir.path(), account, "admin");
    let raw = reqwest::Client::new()
        .get(format!(
            "http://{}/api/v1/messages/{message}/raw",
            app.http_addr
        ))
        .bearer_auth(&token)
        .send()
        .await
        .expect("raw")
        .bytes()
        .await
        .expect("raw bytes");
    assert!(
        raw.windows(sent.len()).any(|w| w == sent.as_slice()),
        "the raw message is kept byte for byte ({} bytes stored)",
        raw.len()
    );

    // Threading: replies from the sender and from a recipient within the cap join the
    // ticket; one from a recipient past the cap is a stranger's.
    let reply = |from: &str, n: usize| {
        format!(
            "From: {from}\nTo: support@shop.test\nSubject: Re: Order 77 for everyone\n\
             Message-ID: <reply{n}@people.test>\nIn-Reply-To: <everyone@customer.test>\n\n\
             reply {n}\n"
        )
    };
    let (mut smtp, _) = RawSmtp::connect(app.smtp_addr).expect("smtp");
    smtp.cmd("EHLO people.test").expect("ehlo");
    for (n, from) in [
        "ana@customer.test".to_string(),
        recipient(50),
        recipient(5000),
    ]
    .iter()
    .enumerate()
    {
        let r = smtp
            .send_mail(from, &forwarding, &reply(from, n))
            .expect("reply");
        assert_eq!(r.code, 250, "{}", r.text);
    }
    let stored = messages(&app).await;
    let placed: Vec<(bool, &str)> = stored[1..]
        .iter()
        .map(|(_, t, reason, _)| (*t == ticket, reason.as_str()))
        .collect();
    assert_eq!(
        placed,
        [
            (true, "in_reply_to"),
            (true, "in_reply_to"),
            (false, "unverified_reply")
        ],
        "{stored:?}"
    );
    app.stop().await;
}
