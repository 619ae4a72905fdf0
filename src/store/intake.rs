//! What the ingest part hands to the writer: parsed messages and quarantined raw mail.

use crate::domain::{AccountId, MessageId, SupportAddressId, TicketId};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mailbox {
    pub name: Option<String>,
    pub address: String,
}

#[derive(Debug, Clone)]
pub struct NewAttachment {
    pub filename: Option<String>,
    pub content_type: String,
    pub content_id: Option<String>,
    pub inline: bool,
    pub data: Vec<u8>,
}

/// One inbound message for one account, parsed and ready to store.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub account_id: AccountId,
    pub support_address_id: Option<SupportAddressId>,
    pub message_id: Option<String>,
    pub dedup_key: String,
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
    /// The customer: lower-cased address and display name.
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub reply_to: Option<String>,
    pub subject: String,
    pub sent_at: Option<i64>,
    pub received_at: i64,
    pub text_body: Option<String>,
    pub html_body: Option<String>,
    /// The bytes exactly as received; shared when one message goes to several accounts.
    pub raw: Arc<Vec<u8>>,
    pub raw_sha256: String,
    pub envelope_json: String,
    pub source: &'static str,
    pub attachments: Vec<NewAttachment>,
}

/// Accepted mail that cannot become a ticket message: kept whole with the reason.
#[derive(Debug, Clone)]
pub struct NewQuarantine {
    pub account_id: Option<AccountId>,
    pub reason: String,
    pub detail: Option<String>,
    pub raw: Arc<Vec<u8>>,
    pub raw_sha256: String,
    pub envelope_json: Option<String>,
    pub source: &'static str,
    pub source_position: Option<String>,
    pub received_at: i64,
}

#[derive(Debug, Clone)]
pub enum Intake {
    Message(Box<NewMessage>),
    Quarantine(NewQuarantine),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntakeOutcome {
    Stored {
        message: MessageId,
        ticket: TicketId,
    },
    /// The same message (same dedup key) was already stored for the account.
    Duplicate {
        message: MessageId,
        ticket: TicketId,
    },
    Quarantined {
        id: i64,
    },
}
