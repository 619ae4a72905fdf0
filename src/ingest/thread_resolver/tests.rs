//! The threading order as a table: `testdata/threading_order.json` holds cases of a store's
//! facts and one message, each with the placement it must get (and, where the count
//! matters for speed, how many look-ups it may cost). In message ids, `token:N` stands for
//! a reply token of ours for ticket N, `forged:N` for one with a wrong MAC.

use super::*;
use crate::domain::mint_reply_token;
use crate::ingest::fake_repository::FakeRepository;
use serde::Deserialize;

const SECRET: &[u8] = b"threading-table-secret";
const INBOUND_DOMAIN: &str = "in.postern.test";
const WINDOW_MS: i64 = 1_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[serde(default)]
    store: FakeRepository,
    message: Message,
    expect: Expected,
    /// The look-ups the decision may make, in order.
    #[serde(default)]
    lookups: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Message {
    #[serde(default = "one")]
    account: i64,
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

fn one() -> i64 {
    1
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

fn run(resolver: &ThreadResolver, case: Case) -> Result<(), String> {
    let Case {
        name,
        mut store,
        message: msg,
        expect,
        lookups,
    } = case;
    let in_reply_to = msg.in_reply_to.as_deref().map(message_id);
    let references: Vec<String> = msg.references.iter().map(|r| message_id(r)).collect();
    let incoming = Incoming {
        account: AccountId(msg.account),
        message_id: msg.message_id.as_deref(),
        in_reply_to: in_reply_to.as_deref(),
        references: &references,
        sender: &msg.sender,
        customer: msg.customer.as_deref().unwrap_or(&msg.sender),
        recipients: msg.recipients.iter().map(String::as_str).collect(),
        subject: &msg.subject,
        received_at: msg.received_at,
        dmarc_pass_domain: msg.dmarc_pass_domain.as_deref(),
        spoof_suspected: msg.spoof_suspected,
        importing: msg.importing,
    };
    let placement = resolver
        .place(&mut store, &incoming)
        .map_err(|e| format!("{name}: {e}"))?;
    let got = Expected {
        ticket: placement.ticket.map(|t| t.0),
        reason: placement.reason,
        flag: placement.flag.map(str::to_string),
        orphans: placement.orphans.iter().map(|t| t.0).collect(),
    };
    if got != expect {
        return Err(format!("{name}: expected {expect:?}, got {got:?}"));
    }
    if let Some(allowed) = lookups {
        if store.lookups != allowed {
            return Err(format!(
                "{name}: look-ups {:?}, expected {allowed:?}",
                store.lookups
            ));
        }
    }
    Ok(())
}

#[test]
fn the_threading_order_places_every_case_of_the_table() {
    let table = include_str!("../testdata/threading_order.json");
    let cases: Vec<Case> = match serde_json::from_str(table) {
        Ok(cases) => cases,
        Err(e) => panic!("threading_order.json: {e}"),
    };
    assert!(cases.len() >= 30, "the table lost cases: {}", cases.len());
    let resolver = ThreadResolver::new(ThreadingConfig {
        secret: SECRET.to_vec(),
        inbound_domain: INBOUND_DOMAIN.into(),
        subject_window_ms: WINDOW_MS,
    });
    let failures: Vec<String> = cases
        .into_iter()
        .filter_map(|case| run(&resolver, case).err())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
