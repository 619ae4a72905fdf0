//! Threading scenarios written as conversations of .eml files (tests/fixtures/threading),
//! delivered over SMTP in order; the agent's replies are recorded as outbound messages with
//! Postern's reply-token Message-IDs.

use crate::common::*;
use postern::domain::{mint_reply_token, AccountId, Scope, TicketId};
use postern::store::Mailbox;
use std::collections::HashMap;
use std::path::Path;

struct Delivered {
    message: i64,
    ticket: i64,
    reason: String,
    flags: Vec<String>,
    reply: String,
}

struct Conversation {
    app: TestApp,
    account: i64,
    fwd: String,
    vars: HashMap<&'static str, String>,
}

impl Conversation {
    /// Sends `text` from `from` to the account's forwarding address; the server's reply.
    async fn send_as(&self, from: &str, text: &str) -> SmtpReply {
        self.app.smtp_send("x", from, &self.fwd, text).await
    }

    async fn new() -> Self {
        let (app, account, fwd) = spawn_app_with_acme(&[]).await;
        Self {
            app,
            account,
            fwd,
            vars: HashMap::new(),
        }
    }

    fn fixture(&self, scenario: &str, file: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/threading")
            .join(scenario)
            .join(file);
        let mut text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for (k, v) in &self.vars {
            text = text.replace(&format!("{{{{{k}}}}}"), v);
        }
        text
    }

    async fn deliver(&self, scenario: &str, file: &str) -> Delivered {
        let text = self.fixture(scenario, file);
        let sender = text
            .lines()
            .find_map(|l| l.strip_prefix("From: "))
            .and_then(|f| f.rsplit('<').next())
            .map(|f| f.trim_end_matches('>').to_string())
            .unwrap_or_default();
        let reply = self
            .app
            .smtp_send("mx.forwarder.test", &sender, &self.fwd, &text)
            .await;
        assert_eq!(reply.code, 250, "{file}: {}", reply.text);
        let queued = reply.text.split("queued as m").nth(1).unwrap_or("").trim();
        let message: i64 = queued
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .expect("message id in reply");
        let (ticket, reason, flags): (i64, String, String) =
            sqlx::query_as("SELECT ticket_id, thread_reason, flags FROM messages WHERE id = ?")
                .bind(message)
                .fetch_one(self.app.store.pool())
                .await
                .unwrap();
        Delivered {
            message,
            ticket,
            reason,
            flags: serde_json::from_str(&flags).unwrap(),
            reply: reply.text,
        }
    }

    /// The agent answers in `ticket`: an outbound message with one of our reply tokens.
    async fn agent_replies(&mut self, ticket: i64) -> String {
        let secret = self.app.store.reply_token_secret("").await.unwrap();
        let id = mint_reply_token(&secret, ticket, INBOUND_DOMAIN);
        self.app
            .store
            .record_outbound_message(
                AccountId(self.account),
                TicketId(ticket),
                &id,
                &Mailbox {
                    name: Some("Acme Support".into()),
                    address: "support@acme.test".into(),
                },
                &[Mailbox {
                    name: None,
                    address: "ana@customer.test".into(),
                }],
                "Re: ...",
                "We are looking into it.",
            )
            .await
            .unwrap();
        self.vars.insert("AGENT_ID", id.clone());
        id
    }

    async fn open_tickets(&self) -> Vec<i64> {
        self.app
            .store
            .tickets(AccountId(self.account), None)
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.id)
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_agent_customer_outlook_and_header_dropping_client() {
    let mut c = Conversation::new().await;
    let first = c.deliver("basic", "01-customer.eml").await;
    assert_eq!(first.reason, "new_ticket");
    c.agent_replies(first.ticket).await;
    let token_reply = c.deliver("basic", "03-customer-reply-token.eml").await;
    assert_eq!(
        (token_reply.ticket, token_reply.reason.as_str()),
        (first.ticket, "reply_token")
    );
    let outlook = c.deliver("basic", "04-outlook-reply.eml").await;
    assert_eq!(
        (outlook.ticket, outlook.reason.as_str()),
        (first.ticket, "reply_token")
    );
    let dropped = c.deliver("basic", "05-client-drops-headers.eml").await;
    assert_eq!(
        (dropped.ticket, dropped.reason.as_str()),
        (first.ticket, "subject")
    );
    assert_eq!(c.open_tickets().await, vec![first.ticket]);
    // The stripped reply part is kept beside the full text.
    let t = c
        .app
        .ticket_detail(first.ticket, Scope::Account(AccountId(c.account)))
        .await;
    let m = t
        .messages
        .iter()
        .find(|m| m.id == token_reply.message)
        .unwrap();
    assert!(m
        .text
        .as_deref()
        .unwrap()
        .contains("We are looking into it"));
    assert_eq!(
        m.stripped_text.as_deref(),
        Some("Thanks, here is the tracking number I got: 1Z999.")
    );
    c.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subject_fallback_respects_the_window_and_the_customer() {
    let c = Conversation::new().await;
    let first = c.deliver("basic", "01-customer.eml").await;
    // Same subject from someone else: not the same conversation.
    let other = {
        let mut text = c.fixture("basic", "05-client-drops-headers.eml");
        text = text
            .replace("ana@customer.test", "zoe@other.test")
            .replace("webmail-777", "zoe-1");
        c.send_as("zoe@other.test", &text).await
    };
    assert_eq!(other.code, 250);
    assert_eq!(c.open_tickets().await.len(), 2);
    // Outside the window: push the first ticket 15 days into the past.
    crate::common::raw_db(&c.app.store)
        .execute(
            "UPDATE tickets SET updated_at = updated_at - 15 * 86400000 WHERE id = ?1",
            [first.ticket],
        )
        .unwrap();
    let late = c.deliver("basic", "05-client-drops-headers.eml").await;
    assert_ne!(late.ticket, first.ticket);
    assert_eq!(late.reason, "new_ticket");
    c.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_before_their_parent_end_up_in_one_ticket() {
    let c = Conversation::new().await;
    let b = c.deliver("out-of-order", "01-reply-b.eml").await;
    let cc = c.deliver("out-of-order", "02-reply-c.eml").await;
    assert_eq!(cc.ticket, b.ticket, "c replies to b, which is stored");
    let a = c.deliver("out-of-order", "03-parent-a.eml").await;
    assert_eq!(a.ticket, b.ticket);
    assert_eq!(a.reason, "parent_of_existing");
    assert_eq!(c.open_tickets().await, vec![b.ticket]);
    c.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separate_tickets_of_one_conversation_are_merged_and_the_merge_recorded() {
    let c = Conversation::new().await;
    // A reply whose parent is not here yet opens a ticket; another message of the customer,
    // with nothing linking it to that reply, opens a second one...
    let b = c.deliver("out-of-order", "01-reply-b.eml").await;
    let text = "From: Ana Lima <ana@customer.test>\nTo: support@acme.test\nSubject: order 1234\n\
                Date: Wed, 04 Nov 2026 09:50:00 +0000\nMessage-ID: <order-z@customer.test>\n\n\
                About my order 1234.\n";
    let r = c.send_as("ana@customer.test", text).await;
    assert_eq!(r.code, 250);
    assert_eq!(c.open_tickets().await.len(), 2);
    // ...and the parent, an answer to the second, brings them together.
    let mut parent = c.fixture("out-of-order", "03-parent-a.eml");
    parent = parent.replace(
        "Message-ID: <parent-a@customer.test>\n",
        "Message-ID: <parent-a@customer.test>\nIn-Reply-To: <order-z@customer.test>\n",
    );
    let r = c.send_as("ana@customer.test", &parent).await;
    assert_eq!(r.code, 250);
    let a_ticket: i64 = sqlx::query_scalar(
        "SELECT ticket_id FROM messages WHERE message_id = 'parent-a@customer.test'",
    )
    .fetch_one(c.app.store.pool())
    .await
    .unwrap();
    let open = c.open_tickets().await;
    assert_eq!(open, vec![b.ticket], "one ticket left");
    assert_eq!(a_ticket, b.ticket);
    let t = c.app.ticket_detail(b.ticket, Scope::Operator).await;
    assert_eq!(t.messages.len(), 3);
    assert!(
        t.events.iter().any(|e| e.kind == "merged"),
        "{:?}",
        t.events
    );
    c.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_with_a_copied_reference_gets_a_new_flagged_ticket() {
    let mut c = Conversation::new().await;
    let first = c.deliver("stranger", "01-customer.eml").await;
    c.agent_replies(first.ticket).await;
    let eve = c.deliver("stranger", "03-stranger.eml").await;
    assert_ne!(eve.ticket, first.ticket);
    assert_eq!(eve.reason, "unverified_reply");
    assert!(eve.flags.contains(&"unverified_reply".to_string()));
    let t = c.app.ticket_detail(eve.ticket, Scope::Operator).await;
    assert_eq!(t.ticket.flags, vec!["unverified_reply"]);
    assert_eq!(t.ticket.customer.as_deref(), Some("eve@attacker.test"));
    c.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cc_participant_replying_joins() {
    let c = Conversation::new().await;
    let first = c.deliver("cc-reply", "01-customer-cc.eml").await;
    let bruno = c.deliver("cc-reply", "02-cc-replies.eml").await;
    assert_eq!(
        (bruno.ticket, bruno.reason.as_str()),
        (first.ticket, "in_reply_to")
    );
    c.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_by_hand_the_customer_is_the_original_sender() {
    let c = Conversation::new().await;
    let fwd = c.deliver("forwarded", "01-agent-forwards.eml").await;
    let t = c.app.ticket_detail(fwd.ticket, Scope::Operator).await;
    assert_eq!(t.ticket.customer.as_deref(), Some("carla@customer.test"));
    c.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_and_resends_are_stored_once_but_a_squatted_message_id_is_not_a_duplicate() {
    let c = Conversation::new().await;
    let first = c.deliver("basic", "01-customer.eml").await;
    let again = c.deliver("basic", "01-customer.eml").await;
    assert!(again.reply.contains("duplicate"), "{}", again.reply);
    assert_eq!(again.message, first.message);

    let r1 = c.deliver("resend", "01-first.eml").await;
    let r2 = c.deliver("resend", "02-resent-by-relay.eml").await;
    assert_eq!(
        r2.message, r1.message,
        "same message without Message-ID relayed twice"
    );

    let eve = c.deliver("squatting", "01-stranger-squats.eml").await;
    let ana = c.deliver("squatting", "02-real-message.eml").await;
    assert_ne!(
        ana.message, eve.message,
        "the real message is stored despite the squatted Message-ID"
    );
    assert_ne!(ana.ticket, eve.ticket);
    c.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replies_to_one_missing_parent_are_one_conversation_at_once() {
    let c = Conversation::new().await;
    let b = c.deliver("out-of-order", "01-reply-b.eml").await;
    // Another reply to the same parent, from a client that sets only In-Reply-To and writes
    // its own subject: JWZ's empty container for the missing parent holds both.
    let text = c
        .fixture("out-of-order", "02-reply-c.eml")
        .replace(
            "References: <parent-a@customer.test> <reply-b@customer.test>\n",
            "",
        )
        .replace(
            "In-Reply-To: <reply-b@customer.test>",
            "In-Reply-To: <parent-a@customer.test>",
        )
        .replace(
            "Subject: Re: Broken zipper (photo 2)",
            "Subject: zipper photo",
        );
    let r = c.send_as("ana@customer.test", &text).await;
    assert_eq!(r.code, 250);
    let (ticket, reason): (i64, String) = sqlx::query_as(
        "SELECT ticket_id, thread_reason FROM messages WHERE message_id = 'reply-c@customer.test'",
    )
    .fetch_one(c.app.store.pool())
    .await
    .unwrap();
    assert_eq!((ticket, reason.as_str()), (b.ticket, "shared_parent"));
    assert_eq!(c.open_tickets().await, vec![b.ticket]);
    c.app.stop().await;
}
