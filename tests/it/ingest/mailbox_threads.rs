//! The 45-message Mail::Box test folder (../shared/corpora/perl-mail-box-threads), delivered
//! live over SMTP in file order. Mail::Box's expected trees are built from In-Reply-To and
//! References; every such parent/child edge must hold in our tickets, except where our
//! participant rule deliberately opens a new, flagged ticket. Subjects alone ("Re: your mail"
//! from different people) must never merge conversations.

use crate::common::*;
use postern::domain::parse_message_ids;
use std::collections::HashMap;

/// Splits an mboxo folder on "From " separator lines: (envelope sender, message).
fn split_mbox(raw: &str) -> Vec<(String, String)> {
    let mut messages = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in raw.split_inclusive('\n') {
        if let Some(rest) = line.strip_prefix("From ") {
            if let Some(m) = current.take() {
                messages.push(m);
            }
            let sender = rest.split_whitespace().next().unwrap_or("").to_string();
            current = Some((sender, String::new()));
            continue;
        }
        if let Some((_, m)) = current.as_mut() {
            m.push_str(line);
        }
    }
    messages.extend(current);
    messages
}

fn header(msg: &str, name: &str) -> Option<String> {
    let mut value: Option<String> = None;
    for line in msg.lines() {
        if line.is_empty() {
            break;
        }
        if let Some(v) = value.as_mut() {
            if line.starts_with([' ', '\t']) {
                v.push(' ');
                v.push_str(line.trim());
                continue;
            }
            break;
        }
        if line.len() > name.len()
            && line[..name.len()].eq_ignore_ascii_case(name)
            && line[name.len()..].starts_with(':')
        {
            value = Some(line[name.len() + 1..].trim().to_string());
        }
    }
    value
}

fn address(from: &str) -> String {
    match (from.rfind('<'), from.rfind('>')) {
        (Some(a), Some(b)) if a < b => from[a + 1..b].trim().to_lowercase(),
        _ => from
            .split_whitespace()
            .find(|w| w.contains('@'))
            .unwrap_or(from)
            .trim_matches(|c| c == '(' || c == ')')
            .to_lowercase(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_box_folder_threads_by_headers_and_never_by_subject_alone() {
    // Year-2000 list mail: some bytes are Latin-1; lossy decoding keeps every header intact.
    let raw = String::from_utf8_lossy(
        &std::fs::read(corpora_dir().join("perl-mail-box-threads/t/folders/mbox.src")).unwrap(),
    )
    .into_owned();
    let messages = split_mbox(&raw);
    assert_eq!(messages.len(), 45);
    let app = spawn_app(&[]).await;
    let (account, fwd) = app
        .account("ImageMagick", "magick-users@imagemagick.test")
        .await;
    let addr = app.smtp_addr;
    let to_send = messages.clone();
    let replies = tokio::task::spawn_blocking(move || {
        let (mut c, _) = RawSmtp::connect(addr).unwrap();
        c.cmd("EHLO lists.test").unwrap();
        to_send
            .iter()
            .map(|(envelope, m)| {
                // The mbox separator line carries the envelope sender, as delivered.
                // (one message has no From: its Reply-To names the author).
                let from = header(m, "From")
                    .or_else(|| header(m, "Reply-To"))
                    .map(|f| address(&f))
                    .unwrap_or_else(|| envelope.clone());
                let r = c.send_mail(&from, &fwd, m).unwrap();
                assert_eq!(r.code, 250, "{}", r.text);
                r.text
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();

    // Message-ID -> (ticket, thread_reason) as stored.
    let rows: Vec<(String, i64, String)> = sqlx::query_as(
        "SELECT message_id, ticket_id, thread_reason FROM messages WHERE account_id = ? AND message_id IS NOT NULL",
    )
    .bind(account)
    .fetch_all(app.store.pool())
    .await
    .unwrap();
    let stored: HashMap<String, (i64, String)> =
        rows.into_iter().map(|(m, t, r)| (m, (t, r))).collect();
    let odd: Vec<&String> = replies
        .iter()
        .filter(|r| !r.contains("queued as m"))
        .collect();
    assert!(
        odd.is_empty(),
        "every message became a ticket message: {odd:?}"
    );

    let mut joined = 0;
    let mut flagged = 0;
    let mut seen: Vec<String> = Vec::new();
    for (_, m) in &messages {
        let Some(id) =
            header(m, "Message-ID").and_then(|h| parse_message_ids(&h).into_iter().next())
        else {
            continue;
        };
        let parents: Vec<String> = header(m, "In-Reply-To")
            .map(|h| parse_message_ids(&h))
            .unwrap_or_default()
            .into_iter()
            .chain(
                header(m, "References")
                    .map(|h| parse_message_ids(&h))
                    .unwrap_or_default()
                    .into_iter()
                    .rev(),
            )
            .collect();
        // The nearest ancestor delivered before this message.
        if let Some(parent) = parents.iter().find(|p| seen.contains(p)) {
            let (mine, reason) = &stored[&id];
            let (theirs, _) = &stored[parent];
            if mine == theirs {
                joined += 1;
            } else {
                assert_eq!(
                    reason, "unverified_reply",
                    "{id} left its parent {parent}'s ticket without the participant rule"
                );
                flagged += 1;
            }
        }
        seen.push(id);
    }
    // The folder has 8 replies whose parent is in it and comes first (the others hang from
    // parents Mail::Box shows as dummies). Two are answers by a third list member to a
    // message addressed to the list: not a participant, so a new flagged ticket by design.
    assert_eq!(joined + flagged, 8, "reply edges found");
    assert!(
        joined >= 6,
        "only {joined} reply edges joined their parent ({flagged} flagged)"
    );

    // Subjects alone ("Re: your mail" from different people) never join conversations: a
    // message threaded by subject is always from the customer of its ticket.
    let by_subject: Vec<(String, Option<String>, String)> = sqlx::query_as(
        "SELECT m.from_address, c.email, m.subject FROM messages m JOIN tickets t ON t.id = m.ticket_id
         LEFT JOIN customers c ON c.id = t.customer_id
         WHERE m.account_id = ? AND m.thread_reason = 'subject'",
    )
    .bind(account)
    .fetch_all(app.store.pool())
    .await
    .unwrap();
    for (from, customer, subject) in &by_subject {
        assert_eq!(
            Some(from),
            customer.as_ref(),
            "{subject:?} from {from} joined someone else's ticket by subject"
        );
    }
    let your_mail: Vec<(String, i64)> = sqlx::query_as(
        "SELECT from_address, ticket_id FROM messages WHERE account_id = ? AND subject = 'Re: your mail'",
    )
    .bind(account)
    .fetch_all(app.store.pool())
    .await
    .unwrap();
    assert!(
        your_mail.len() >= 5,
        "the folder's 'Re: your mail' messages are all stored"
    );
    println!("{joined} reply edges joined, {flagged} opened flagged tickets (participant rule)");
    app.stop().await;
}
