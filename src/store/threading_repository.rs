//! What filing a message needs from storage: the facts the threading order looks up and
//! the writes a filing decision makes, as a narrow typed interface in three small traits
//! ([`ThreadingFacts`], [`IntakeWrites`], [`BounceRecords`]). The decisions themselves live
//! in `ingest` (the threading order, duplicates, bounce filing), which the writer calls
//! through [`MessageFiler`] so that `store` never imports `ingest`. The SQLite engine
//! implements the traits over the group-commit writer's transaction
//! (`threading_sqlite.rs`). A repository is scoped to the account of the message being
//! filed, so no look-up can stray into another account's rows.
//!
//! Synchronous on purpose (rather than a sans-IO resolver that asks for facts and is fed
//! them). Filing runs inside the writer's batch transaction, one message after the other,
//! and each decision must see the rows the messages before it in the same batch wrote; the
//! order's look-ups depend on each other's answers and stop at the first match, so a
//! sans-IO resolver would be a state machine of a dozen states for no gain on SQLite, where
//! every call is a cached prepared statement on the writer's own thread. A PostgreSQL
//! engine implements the same traits over one transaction held by its own writer thread
//! (group commit again), blocking on each statement there; the methods take `&mut self`
//! so that an engine can hold that transaction (sqlx needs `&mut` for each statement).

use super::intake::{IntakeOutcome, NewMessage, NewQuarantine};
use super::StoreError;
use crate::domain::{
    CustomerId, Direction, Mailbox, MessageId, SupportAddressId, ThreadReason, TicketId,
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
    pub customer: &'a str,
    pub normalized_subject: &'a str,
    pub updated_since: i64,
    pub created_until: i64,
}

/// A ticket opened for a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTicket<'a> {
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

/// What the storage calls return.
pub type StoreResult<T> = Result<T, StoreError>;
/// A look-up that may find nothing.
pub type Found<T> = StoreResult<Option<T>>;

/// The look-ups of the threading order and the duplicate policy. A repository is scoped to
/// the account of the message being filed: every look-up stays within it (ticket ids passed
/// in were found through it).
pub trait ThreadingFacts {
    /// Is `email` one of the brand's own addresses or one of its agents?
    fn is_brand(&mut self, email: &str) -> StoreResult<bool>;
    fn is_participant(&mut self, ticket: TicketId, email: &str) -> StoreResult<bool>;
    /// Has the ticket a participant at `domain` (lower-cased)?
    fn has_participant_at(&mut self, ticket: TicketId, domain: &str) -> StoreResult<bool>;
    /// The live ticket `ticket` was merged into (itself when it was not), `None` when it
    /// is not the account's.
    fn live_ticket(&mut self, ticket: TicketId) -> Found<TicketId>;
    /// The ticket of the first message stored under `message_id`; with `direction`, only
    /// a message that went that way.
    fn ticket_of_message_id(&mut self, id: &str, way: Option<Direction>) -> Found<TicketId>;
    /// The ticket of the first message (not a note) that referred to `message_id`.
    fn first_ticket_referring_to(&mut self, message_id: &str) -> Found<TicketId>;
    /// Every ticket holding a message that referred to `message_id`, in id order.
    fn tickets_referring_to(&mut self, message_id: &str) -> StoreResult<Vec<TicketId>>;
    /// The address of the ticket's customer.
    fn ticket_customer(&mut self, ticket: TicketId) -> Found<String>;
    fn ticket_by_subject(&mut self, q: &SubjectQuery<'_>) -> Found<TicketId>;
    fn message_by_dedup_key(&mut self, dedup_key: &str) -> Found<StoredMessage>;
    /// The first `limit` messages stored under `message_id`, in id order.
    fn copies_under_message_id(
        &mut self,
        id: &str,
        limit: usize,
    ) -> StoreResult<Vec<StoredCopyRow>>;
    /// The raw bytes of a stored blob, `None` when missing or unreadable.
    fn blob(&mut self, sha256: &str) -> Found<Vec<u8>>;
}

/// The writes of filing a message, in the account of the repository.
pub trait IntakeWrites {
    fn quarantine(
        &mut self,
        q: &NewQuarantine,
        status: QuarantineStatus,
    ) -> StoreResult<IntakeOutcome>;
    /// Stores a provider's forwarding confirmation on the support address.
    fn record_forwarding_confirmation(
        &mut self,
        support: SupportAddressId,
        code: Option<&str>,
        url: Option<&str>,
    ) -> StoreResult<()>;
    /// Marks a support address active: mail came through it.
    fn activate_support_address(&mut self, support: SupportAddressId) -> StoreResult<()>;
    fn add_ticket_event(
        &mut self,
        ticket: TicketId,
        kind: &str,
        data: &serde_json::Value,
    ) -> StoreResult<()>;
    /// The customer row for `who`, made if new; a name learnt later fills an empty one.
    fn customer(&mut self, who: &Mailbox, now: i64) -> StoreResult<CustomerId>;
    fn create_ticket(&mut self, t: &NewTicket<'_>) -> StoreResult<TicketId>;
    fn update_ticket(&mut self, ticket: TicketId, update: TicketUpdate) -> StoreResult<()>;
    fn add_participant(&mut self, ticket: TicketId, email: &str, role: &str) -> StoreResult<()>;
    /// Stores the message (raw bytes, bodies, references, attachments) in its ticket.
    fn insert_message(&mut self, m: &NewMessage, filing: &Filing<'_>) -> StoreResult<MessageId>;
    /// Moves everything of `loser` into `winner` and records the merge on both.
    fn merge_tickets(&mut self, winner: TicketId, loser: TicketId, why: &str) -> StoreResult<()>;
}

/// What a delivery report about one of our messages changes in the outbound queue.
pub trait BounceRecords {
    /// The outbound message stored under `message_id`.
    fn outbound_message(&mut self, message_id: &str) -> Found<MessageId>;
    /// Marks one recipient of an outbound message bounced; how many queue rows changed.
    fn mark_recipient_bounced(
        &mut self,
        message: MessageId,
        recipient: &str,
        why: &str,
    ) -> StoreResult<usize>;
    /// Marks the recipient of an outbound message that had only one bounced.
    fn mark_sole_recipient_bounced(&mut self, message: MessageId, why: &str) -> StoreResult<usize>;
}

/// Everything filing needs, as one object the writer hands over.
pub trait ThreadingRepository: ThreadingFacts + IntakeWrites + BounceRecords {}

impl<T: ThreadingFacts + IntakeWrites + BounceRecords + ?Sized> ThreadingRepository for T {}

/// How the writer files each message of a batch: the decisions, implemented in `ingest`
/// and handed to the writer with each batch of messages, so that `store` never imports
/// `ingest`.
pub trait MessageFiler: Send + Sync + 'static {
    fn file(
        &self,
        repo: &mut dyn ThreadingRepository,
        m: &NewMessage,
    ) -> StoreResult<IntakeOutcome>;
}

impl<F: MessageFiler> From<F> for Box<dyn MessageFiler> {
    fn from(filer: F) -> Self {
        Box::new(filer)
    }
}
