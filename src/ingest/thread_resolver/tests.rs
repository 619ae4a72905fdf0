//! The threading order as a table: `testdata/threading_order.json` holds cases of a store's
//! facts and one message, each with the placement it must get (and, where the count
//! matters for speed, the look-ups it may cost). In message ids, `token:N` stands for a
//! reply token of ours for ticket N, `forged:N` for one with a wrong MAC.

use super::*;
use crate::domain::{mint_reply_token, Mailbox};
use crate::ingest::decision_table;
use serde::Deserialize;

const SECRET: &[u8] = b"threading-table-secret";
const INBOUND_DOMAIN: &str = "in.postern.test";
const WINDOW_MS: i64 = 1_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Message {
    #[serde(default)]
    message_id: Option<String>,
    #[serde(default)]
    in_reply_to: Option<String>,
    #[serde(default)]
    references: Vec<String>,
    sender: String,
    /// The sender when not given.
    #[serde(default)]
    customer: Option<String>,
    /// To (Cc is the same to threading).
    #[serde(default)]
    recipients: Vec<String>,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    received_at: i64,
    #[serde(default)]
    dmarc_pass_domain: Option<String>,
    #[serde(default)]
    spoof_suspected: bool,
    #[serde(default)]
    importing: bool,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Expected {
    ticket: Option<i64>,
    reason: ThreadReason,
    #[serde(default)]
    flag: Option<String>,
    #[serde(default)]
    orphans: Vec<i64>,
}

/// `token:N` and `forged:N` made into reply tokens; other ids as they are.
fn message_id(id: &str) -> String {
    if let Some(n) = id.strip_prefix("token:") {
        mint_reply_token(SECRET, n.parse().unwrap_or(0), INBOUND_DOMAIN)
    } else if let Some(n) = id.strip_prefix("forged:") {
        mint_reply_token(b"not our secret", n.parse().unwrap_or(0), INBOUND_DOMAIN)
    } else {
        id.to_string()
    }
}

#[test]
fn the_threading_order_places_every_case_of_the_table() {
    let resolver = ThreadResolver::new(ThreadingConfig {
        secret: SECRET.to_vec(),
        inbound_domain: INBOUND_DOMAIN.into(),
        subject_window_ms: WINDOW_MS,
    });
    let table = include_str!("../testdata/threading_order.json");
    decision_table::check(table, 45, |store, msg: Message| {
        let in_reply_to = msg.in_reply_to.as_deref().map(message_id);
        let references: Vec<String> = msg.references.iter().map(|r| message_id(r)).collect();
        let to: Vec<Mailbox> = msg
            .recipients
            .iter()
            .map(|address| Mailbox {
                name: None,
                address: address.clone(),
            })
            .collect();
        let placement = resolver.place(
            store,
            &Incoming {
                message_id: msg.message_id.as_deref(),
                in_reply_to: in_reply_to.as_deref(),
                references: &references,
                sender: &msg.sender,
                customer: msg.customer.as_deref().unwrap_or(&msg.sender),
                to: &to,
                cc: &[],
                subject: &msg.subject,
                received_at: msg.received_at,
                dmarc_pass_domain: msg.dmarc_pass_domain.as_deref(),
                spoof_suspected: msg.spoof_suspected,
                importing: msg.importing,
            },
        )?;
        Ok(Expected {
            ticket: placement.ticket.map(|t| t.0),
            reason: placement.reason,
            flag: placement.flag.map(str::to_string),
            orphans: placement.orphans.iter().map(|t| t.0).collect(),
        })
    });
}
