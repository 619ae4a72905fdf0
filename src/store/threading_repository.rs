//! What filing a message needs from storage: the facts the threading order looks up and
//! the writes a filing decision makes, as a narrow typed interface. The decisions
//! themselves live in `ingest` (the threading order, duplicates, bounce filing); the
//! SQLite engine implements this over the group-commit writer's transaction
//! (`threading_sqlite.rs`).
//!
//! Synchronous on purpose. Filing runs inside the writer's batch transaction, one message
//! after the other, and each decision must see the rows the messages before it in the same
//! batch wrote; the order's look-ups depend on each other's answers and stop at the first
//! match, so a sans-IO resolver would be a state machine of a dozen states for no gain on
//! SQLite, where every call is a cached prepared statement on the writer's own thread. A
//! PostgreSQL engine implements the same trait over one transaction held by a dedicated
//! writer thread (group commit again), blocking on each statement there.

use super::intake::{IntakeOutcome, NewMessage, NewQuarantine};
use super::StoreError;
use crate::domain::{
    AccountId, CustomerId, Direction, Mailbox, MessageId, SupportAddressId, ThreadReason, TicketId,
};

/// A message stored for the account: its row and its ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredMessage {
    pub message: MessageId,
    pub ticket: TicketId,
}

/// A stored message under the Message-ID of an incoming one, as the duplicate policy
/// compares them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCopyRow {
    pub stored: StoredMessage,
    pub sender: Option<String>,
    /// Its sender was authenticated (DMARC pass) when it came in.
    pub authenticated: bool,
    pub raw_sha256: Option<String>,
}

/// The subject fallback's look-up: the customer's live ticket with this normalised
/// subject, created no later than `created_until` and updated since `updated_since`, most
/// recently updated first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectQuery<'a> {
    pub account: AccountId,
    pub customer: &'a str,
    pub normalized_subject: &'a str,
    pub updated_since: i64,
    pub created_until: i64,
}

/// A ticket opened for a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTicket<'a> {
    pub account: AccountId,
    pub subject: &'a str,
    pub normalized_subject: &'a str,
    pub customer: CustomerId,
    pub support_address: Option<SupportAddressId>,
    pub flags: &'a [&'a str],
    /// When its first message came (created, updated and last-message times).
    pub at: i64,
    /// Its first message is the brand's (imported history): an agent's reply, not the
    /// customer's message.
    pub by_brand: bool,
    /// Opened by an import job: closed from the start.
    pub import_job: Option<i64>,
}

/// What a new message does to the ticket it joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketUpdate {
    /// Imported history: extends the ticket's span, never reopens it.
    History { at: i64, by_brand: bool },
    /// Live mail: updated now; `reopen` (a person wrote) opens it again and ends a snooze.
    Live { at: i64, reopen: bool },
}

/// How a message is filed in its ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filing<'a> {
    pub ticket: TicketId,
    pub dedup_key: &'a str,
    pub direction: Direction,
    pub classification: &'a str,
    pub reason: ThreadReason,
    pub flags: &'a [String],
}

/// Why a message is kept in quarantine rather than filed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuarantineStatus {
    /// For an operator to look at.
    Held,
    /// Kept only so that nothing a sender gave us is lost (our own mail come back...).
    Discarded,
}

impl QuarantineStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Held => "held",
            Self::Discarded => "discarded",
        }
    }
}

/// Look-ups and writes of filing, always within one account (every id passed belongs to
/// `account` or was found through it).
pub trait ThreadingRepository {
    // Facts of the threading order.

    /// Is `email` one of the brand's own addresses or one of its agents?
    fn is_brand(&mut self, account: AccountId, email: &str) -> Result<bool, StoreError>;
    fn is_participant(&mut self, ticket: TicketId, email: &str) -> Result<bool, StoreError>;
    /// Has the ticket a participant at `domain` (lower-cased)?
    fn has_participant_at(&mut self, ticket: TicketId, domain: &str) -> Result<bool, StoreError>;
    /// The live ticket `ticket` was merged into (itself when it was not), `None` when it
    /// is not the account's.
    fn live_ticket(
        &mut self,
        account: AccountId,
        ticket: TicketId,
    ) -> Result<Option<TicketId>, StoreError>;
    /// The ticket of the first message stored under `message_id`; with `direction`, only
    /// a message that went that way.
    fn ticket_of_message_id(
        &mut self,
        account: AccountId,
        message_id: &str,
        direction: Option<Direction>,
    ) -> Result<Option<TicketId>, StoreError>;
    /// The ticket of the first message (not a note) that referred to `message_id`.
    fn first_ticket_referring_to(
        &mut self,
        account: AccountId,
        message_id: &str,
    ) -> Result<Option<TicketId>, StoreError>;
    /// Every ticket holding a message that referred to `message_id`, in id order.
    fn tickets_referring_to(
        &mut self,
        account: AccountId,
        message_id: &str,
    ) -> Result<Vec<TicketId>, StoreError>;
    /// The address of the ticket's customer.
    fn ticket_customer(&mut self, ticket: TicketId) -> Result<Option<String>, StoreError>;
    fn ticket_by_subject(&mut self, q: &SubjectQuery<'_>) -> Result<Option<TicketId>, StoreError>;

    // Facts of the duplicate policy.

    fn message_by_dedup_key(
        &mut self,
        account: AccountId,
        dedup_key: &str,
    ) -> Result<Option<StoredMessage>, StoreError>;
    /// The first `limit` messages stored under `message_id`, in id order.
    fn copies_under_message_id(
        &mut self,
        account: AccountId,
        message_id: &str,
        limit: usize,
    ) -> Result<Vec<StoredCopyRow>, StoreError>;
    /// The raw bytes of a stored blob, `None` when missing or unreadable.
    fn blob(&mut self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError>;

    // Writes.

    fn quarantine(
        &mut self,
        q: &NewQuarantine,
        status: QuarantineStatus,
    ) -> Result<IntakeOutcome, StoreError>;
    /// Stores a provider's forwarding confirmation on the support address.
    fn record_forwarding_confirmation(
        &mut self,
        account: AccountId,
        support: SupportAddressId,
        code: Option<&str>,
        url: Option<&str>,
    ) -> Result<(), StoreError>;
    /// Marks a support address active: mail came through it.
    fn activate_support_address(&mut self, support: SupportAddressId) -> Result<(), StoreError>;
    fn add_ticket_event(
        &mut self,
        account: AccountId,
        ticket: TicketId,
        kind: &str,
        data: &serde_json::Value,
        now: i64,
    ) -> Result<(), StoreError>;
    /// The customer row for `who`, made if new; a name learnt later fills an empty one.
    fn customer(
        &mut self,
        account: AccountId,
        who: &Mailbox,
        now: i64,
    ) -> Result<CustomerId, StoreError>;
    fn create_ticket(&mut self, t: &NewTicket<'_>) -> Result<TicketId, StoreError>;
    fn update_ticket(&mut self, ticket: TicketId, update: TicketUpdate) -> Result<(), StoreError>;
    fn add_participant(
        &mut self,
        ticket: TicketId,
        email: &str,
        role: &str,
    ) -> Result<(), StoreError>;
    /// Stores the message (raw bytes, bodies, references, attachments) in its ticket.
    fn insert_message(
        &mut self,
        m: &NewMessage,
        filing: &Filing<'_>,
    ) -> Result<MessageId, StoreError>;
    /// Moves everything of `loser` into `winner` and records the merge on both.
    fn merge_tickets(
        &mut self,
        account: AccountId,
        winner: TicketId,
        loser: TicketId,
        why: &str,
    ) -> Result<(), StoreError>;

    // Bounces.

    /// The outbound message stored under `message_id`.
    fn outbound_message(
        &mut self,
        account: AccountId,
        message_id: &str,
    ) -> Result<Option<MessageId>, StoreError>;
    /// Marks one recipient of an outbound message bounced; how many queue rows changed.
    fn mark_recipient_bounced(
        &mut self,
        account: AccountId,
        message: MessageId,
        recipient: &str,
        why: &str,
        now: i64,
    ) -> Result<usize, StoreError>;
    /// Marks the recipient of an outbound message that had only one bounced.
    fn mark_sole_recipient_bounced(
        &mut self,
        account: AccountId,
        message: MessageId,
        why: &str,
        now: i64,
    ) -> Result<usize, StoreError>;
}

/// How the writer files each message of a batch: the decisions, implemented in `ingest`
/// and handed to the writer when it starts, so that `store` never imports `ingest`.
pub trait MessageFiler: Send + 'static {
    fn file(
        &self,
        repo: &mut dyn ThreadingRepository,
        m: &NewMessage,
    ) -> Result<IntakeOutcome, StoreError>;
}

impl<F: MessageFiler> From<F> for Box<dyn MessageFiler> {
    fn from(filer: F) -> Self {
        Box::new(filer)
    }
}
