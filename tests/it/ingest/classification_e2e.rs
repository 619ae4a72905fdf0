//! Classification outcomes end to end, over SMTP: what becomes a ticket, what does not,
//! and what `ticket show` / `account show` display.

use crate::common::*;
use postern::domain::{AccountId, Scope, TicketId};
use postern::store::Mailbox;

async fn send(app: &TestApp, from: &str, to: &str, text: String) -> String {
    let r = app.smtp_send("mx.forwarder.test", from, to, &text).await;
    assert_eq!(r.code, 250, "{}", r.text);
    r.text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounce_of_our_reply_joins_its_ticket_and_others_are_quarantined() {
    let (app, account, fwd) = spawn_app_with_acme(&[]).await;
    send(
        &app,
        "ana@customer.test",
        &fwd,
        "From: ana@customer.test\nSubject: Hello\nMessage-ID: <hello-1@customer.test>\n\nHi\n"
            .into(),
    )
    .await;
    let ticket = app.store.tickets(AccountId(account), None).await.unwrap()[0].id;
    app.store
        .record_outbound_message(
            AccountId(account),
            TicketId(ticket),
            "reply-1.abc@in.postern.test",
            &Mailbox {
                name: None,
                address: "support@acme.test".into(),
            },
            &[Mailbox {
                name: None,
                address: "ana@customer.test".into(),
            }],
            "Re: Hello",
            "Hello Ana",
        )
        .await
        .unwrap();
    let dsn = |original: &str| {
        format!(
            "From: Mail Delivery System <MAILER-DAEMON@mx.customer.test>\nTo: support@acme.test\nSubject: Undelivered Mail Returned to Sender\nMessage-ID: <dsn-{original}@mx.customer.test>\nMIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\n\n--B\nContent-Type: text/plain\n\nI'm sorry to have to inform you that your message could not be delivered.\n\n--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.customer.test\n\nFinal-Recipient: rfc822; ana@customer.test\nAction: failed\nStatus: 5.1.1\nDiagnostic-Code: smtp; 550 5.1.1 no such user\n\n--B\nContent-Type: text/rfc822-headers\n\nFrom: support@acme.test\nTo: ana@customer.test\nSubject: Re: Hello\nMessage-ID: <{original}>\n\n--B--\n"
        )
    };
    let ours = send(&app, "", &fwd, dsn("reply-1.abc@in.postern.test")).await;
    assert!(ours.contains("queued as m"), "{ours}");
    let t = app
        .ticket_detail(ticket, Scope::Account(AccountId(account)))
        .await;
    let bounce = t
        .messages
        .iter()
        .find(|m| m.classification == "bounce")
        .expect("bounce in the ticket");
    assert_eq!(bounce.thread_reason, "bounce_of_our_message");
    let event = t
        .events
        .iter()
        .find(|e| e.kind == "bounce")
        .expect("bounce event");
    assert_eq!(event.data["recipients"][0]["address"], "ana@customer.test");
    assert_eq!(event.data["recipients"][0]["status"], "5.1.1");
    assert_eq!(app.ticket_count(account).await, 1, "no new ticket");

    let stray = send(&app, "", &fwd, dsn("someone-else@elsewhere.test")).await;
    assert!(stray.contains("queued as q"), "{stray}");
    let q = app
        .store
        .quarantine(Scope::Account(AccountId(account)))
        .await
        .unwrap();
    assert_eq!(q[0].reason, "bounce");
    assert_eq!(app.ticket_count(account).await, 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gmail_forwarding_confirmation_sets_the_code_and_opens_no_ticket() {
    let app = spawn_app(&[]).await;
    let (account, fwd) = app.account("Brand", "support@brand.test").await;
    let text = format!(
        "From: Gmail Team <forwarding-noreply@google.com>\nTo: {fwd}\nSubject: (#152418293) Gmail Forwarding Confirmation - Receive Mail from support@brand.test\nMessage-ID: <conf-1@google.com>\n\nsupport@brand.test has requested to automatically forward mail to your email\naddress {fwd}.\nConfirmation code: 152418293\n\nTo allow support@brand.test to automatically forward mail to your address,\nplease click the link below to confirm the request:\n\nhttps://mail-settings.google.com/mail/vf-%5BABC%5D-XYZ\n\nThanks for using Gmail!\n"
    );
    send(&app, "forwarding-noreply@google.com", &fwd, text).await;
    assert_eq!(app.ticket_count(account).await, 0);
    let shown = cli_json(
        app.dir.path(),
        &["account", "show", &account.to_string(), "--json"],
    );
    let s = &shown["support_addresses"][0];
    assert_eq!(s["confirmation_code"], "152418293");
    assert_eq!(
        s["confirmation_url"],
        "https://mail-settings.google.com/mail/vf-%5BABC%5D-XYZ"
    );
    assert_eq!(s["status"], "confirmation_pending");
    // The first real message marks the address active.
    send(
        &app,
        "ana@customer.test",
        &fwd,
        "From: ana@customer.test\nSubject: First real mail\n\nHi\n".into(),
    )
    .await;
    let shown = cli_json(
        app.dir.path(),
        &["account", "show", &account.to_string(), "--json"],
    );
    assert_eq!(shown["support_addresses"][0]["status"], "active");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_own_mail_coming_back_is_never_a_ticket() {
    let (app, account, fwd) = spawn_app_with_acme(&[]).await;
    let looped = send(&app, "support@acme.test", &fwd, "From: support@acme.test\nTo: ana@customer.test\nX-Postern-Loop: in.postern.test\nSubject: Re: Hello\n\nOur reply, back again\n".into()).await;
    assert!(looped.contains("queued as q"), "{looped}");
    let own_id = send(&app, "support@acme.test", &fwd, "From: support@acme.test\nMessage-ID: <aaaa.1.bbbb@in.postern.test>\nSubject: Re: Hello\n\nagain\n".into()).await;
    assert!(own_id.contains("queued as q"), "{own_id}");
    assert_eq!(app.ticket_count(account).await, 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_replies_are_marked_threaded_and_do_not_reopen() {
    let (app, account, fwd) = spawn_app_with_acme(&[]).await;
    send(&app, "ana@customer.test", &fwd, "From: ana@customer.test\nSubject: Where is my order\nMessage-ID: <o-1@customer.test>\n\nHi\n".into()).await;
    let ticket = app.store.tickets(AccountId(account), None).await.unwrap()[0].id;
    crate::common::raw_db(&app.store)
        .execute(
            "UPDATE tickets SET status = 'closed' WHERE id = ?1",
            [ticket],
        )
        .unwrap();
    send(&app, "ana@customer.test", &fwd, "From: ana@customer.test\nSubject: Auto: Re: Where is my order\nAuto-Submitted: auto-replied\nIn-Reply-To: <o-1@customer.test>\nMessage-ID: <ooo-1@customer.test>\n\nI am on holiday until Monday.\n".into()).await;
    let t = app.ticket_detail(ticket, Scope::Operator).await;
    assert_eq!(t.messages.len(), 2);
    assert_eq!(t.messages[1].classification, "auto_generated");
    assert!(
        t.messages[1]
            .flags
            .iter()
            .any(|f| f.starts_with("auto_generated")),
        "{:?}",
        t.messages[1].flags
    );
    assert_eq!(t.ticket.status, "closed", "an auto-reply does not reopen");
    // A person writing does.
    send(&app, "ana@customer.test", &fwd, "From: ana@customer.test\nSubject: Re: Where is my order\nIn-Reply-To: <o-1@customer.test>\nMessage-ID: <o-2@customer.test>\n\nStill nothing!\n".into()).await;
    let t = app.ticket_detail(ticket, Scope::Operator).await;
    assert_eq!(t.ticket.status, "open");
    // ticket show (text) displays classification and thread reason of every message.
    let shown = cli(app.dir.path(), &["ticket", "show", &ticket.to_string()]);
    assert!(
        shown.contains("auto_generated")
            && shown.contains("in_reply_to")
            && shown.contains("new_ticket"),
        "{shown}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn winmail_dat_is_unpacked_into_real_attachments() {
    let raw =
        std::fs::read(corpora_dir().join("mimekit-testdata/UnitTests/TestData/tnef/rich-text.eml"))
            .unwrap();
    let (app, account, fwd) = spawn_app_with_acme(&[]).await;
    let r = app
        .smtp_send_exact("outlook.test", "jestedfa@microsoft.com", &fwd, raw)
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    let ticket = app.store.tickets(AccountId(account), None).await.unwrap()[0].id;
    let t = app.ticket_detail(ticket, Scope::Operator).await;
    let names: Vec<String> = t.messages[0]
        .attachments
        .iter()
        .filter_map(|a| a.filename.clone())
        .collect();
    assert!(
        !names.iter().any(|n| n.eq_ignore_ascii_case("winmail.dat")),
        "{names:?}"
    );
    assert!(!names.is_empty(), "the TNEF content became attachments");
    app.stop().await;
}
