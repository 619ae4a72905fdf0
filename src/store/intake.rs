//! What the ingest part hands to the writer: parsed messages and quarantined raw mail.

// Domain types, still named through `store` by callers that build a `NewMessage`.
use crate::domain::{AccountId, MessageId, SupportAddressId, TicketId};
pub use crate::domain::{Mailbox, MessageKind};
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct NewAttachment {
    pub filename: Option<String>,
    pub content_type: String,
    pub content_id: Option<String>,
    pub inline: bool,
    pub data: Vec<u8>,
    /// `data`'s content address (`store::blob_key`), computed where it is parsed.
    pub sha256: String,
    /// `data` as a zstd frame when that pays (`store::pack_blob`); `None`: stored as is.
    pub packed: Option<Vec<u8>>,
}

/// The reply part readers take for a message that has none stored: its text without
/// trailing spaces, tabs and line ends. The writer stores a reply part only where it
/// differs from this, and intake leaves it out where it does not.
pub fn whole_text_reply(text: &str) -> &str {
    text.trim_end_matches([' ', '\t', '\r', '\n'])
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
    /// Who becomes a participant of the ticket besides its customer, chosen and capped by
    /// ingest (`threading.max_participants_per_message`); `to` and `cc` keep everyone.
    pub participants: Vec<Mailbox>,
    pub reply_to: Option<String>,
    pub subject: String,
    pub sent_at: Option<i64>,
    pub received_at: i64,
    pub text_body: Option<String>,
    pub html_body: Option<String>,
    /// `text_body` and `html_body` as zstd frames when that pays (`store::pack_body`),
    /// made off the writer thread; `None`: stored as text.
    pub text_packed: Option<Arc<Vec<u8>>>,
    pub html_packed: Option<Arc<Vec<u8>>>,
    /// The bytes exactly as received; shared when one message goes to several accounts.
    pub raw: Arc<Vec<u8>>,
    /// `raw` as a zstd frame when that pays (`store::pack_blob`); `None`: stored as is.
    pub raw_packed: Option<Arc<Vec<u8>>>,
    pub raw_sha256: String,
    pub envelope_json: String,
    pub source: &'static str,
    pub attachments: Vec<NewAttachment>,
    pub kind: MessageKind,
    /// The original sender of a message forwarded by hand: becomes the customer when the
    /// forwarder is the brand or one of its agents.
    pub forwarded_from: Option<Mailbox>,
    /// The reply part without quoted history and signature; `None` when that is the whole
    /// text (trailing whitespace aside): readers then take the text.
    pub stripped_text: Option<String>,
    /// Sender authentication (filled by the auth part): a spoof is never threaded into an
    /// existing ticket; a DMARC pass for a participant's domain counts as participation.
    pub spoof_suspected: bool,
    pub dmarc_pass_domain: Option<String>,
    /// The JSON text of the auth verdicts, serialized where the message was checked (the
    /// writer thread, the serial part of intake, only stores it).
    pub auth_results: Option<String>,
    /// Set for historic mail brought in by an import job: filed without side effects (new
    /// tickets closed, nothing reopened, the brand's own mail stored as outbound).
    pub import_job: Option<i64>,
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

/// An import job's progress, committed in the same transaction as the batch it closes.
/// `imported`, `duplicates` and `quarantined` are the totals before the items that come
/// before it in the same submission: the writer adds what became of those.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportCheckpoint {
    pub job: i64,
    /// Source position of the last message of the batch.
    pub position: Option<String>,
    pub imported: i64,
    pub duplicates: i64,
    pub quarantined: i64,
}

#[derive(Debug, Clone)]
pub enum Intake {
    Message(Box<NewMessage>),
    Quarantine(NewQuarantine),
    ImportCheckpoint(ImportCheckpoint),
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
    /// An import checkpoint was recorded.
    Checkpointed,
}
