//! An in-memory [`ThreadingRepository`] for unit tests of ingest's decisions: the facts of
//! a small store, written as data, and the look-ups a decision made. Writes are refused:
//! the decisions under test only read (the SQLite engine is tested by tests/threading.rs
//! and its neighbours).

use crate::domain::{
    normalize_subject, AccountId, CustomerId, Direction, Mailbox, MessageId, SupportAddressId,
    TicketId,
};
use crate::store::{
    Filing, IntakeOutcome, NewMessage, NewQuarantine, NewTicket, QuarantineStatus, StoreError,
    StoredCopyRow, StoredMessage, SubjectQuery, ThreadingRepository, TicketUpdate,
};
use serde::Deserialize;

const ACCOUNT: i64 = 1;

fn default_account() -> i64 {
    ACCOUNT
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FakeTicket {
    pub id: i64,
    #[serde(default = "default_account")]
    pub account: i64,
    pub customer: String,
    #[serde(default)]
    pub subject: String,
    #[serde(default)]
    pub created_at: i64,
    #[serde(default)]
    pub updated_at: i64,
    #[serde(default)]
    pub merged_into: Option<i64>,
    /// Besides the customer.
    #[serde(default)]
    pub participants: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FakeMessage {
    pub id: i64,
    #[serde(default = "default_account")]
    pub account: i64,
    pub ticket: i64,
    #[serde(default)]
    pub message_id: Option<String>,
    #[serde(default)]
    pub dedup_key: Option<String>,
    #[serde(default = "inbound")]
    pub direction: Direction,
    /// In-Reply-To and References together.
    #[serde(default)]
    pub references: Vec<String>,
    #[serde(default)]
    pub sender: Option<String>,
    #[serde(default)]
    pub authenticated: bool,
    /// Its raw bytes, as text.
    #[serde(default)]
    pub raw: Option<String>,
}

fn inbound() -> Direction {
    Direction::Inbound
}

/// The store's facts: the brand's addresses (of account 1), tickets and messages.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FakeRepository {
    #[serde(default)]
    pub brand: Vec<String>,
    #[serde(default)]
    pub tickets: Vec<FakeTicket>,
    #[serde(default)]
    pub messages: Vec<FakeMessage>,
    /// Every look-up made, by name, in order.
    #[serde(skip)]
    pub lookups: Vec<&'static str>,
}

fn refused() -> StoreError {
    StoreError::Invalid("the fake repository only answers look-ups".into())
}

impl FakeRepository {
    fn ticket(&self, id: TicketId) -> Option<&FakeTicket> {
        self.tickets.iter().find(|t| t.id == id.0)
    }

    fn messages_of(&self, account: AccountId) -> impl Iterator<Item = &FakeMessage> {
        let mut of: Vec<&FakeMessage> = self
            .messages
            .iter()
            .filter(|m| m.account == account.0)
            .collect();
        of.sort_by_key(|m| m.id);
        of.into_iter()
    }

    fn sha_of(m: &FakeMessage) -> Option<String> {
        m.raw.as_ref().map(|_| format!("raw-{}", m.id))
    }
}

impl ThreadingRepository for FakeRepository {
    fn is_brand(&mut self, account: AccountId, email: &str) -> Result<bool, StoreError> {
        self.lookups.push("is_brand");
        Ok(account.0 == ACCOUNT && self.brand.iter().any(|b| b == email))
    }

    fn is_participant(&mut self, ticket: TicketId, email: &str) -> Result<bool, StoreError> {
        self.lookups.push("is_participant");
        Ok(self
            .ticket(ticket)
            .is_some_and(|t| t.customer == email || t.participants.iter().any(|p| p == email)))
    }

    fn has_participant_at(&mut self, ticket: TicketId, domain: &str) -> Result<bool, StoreError> {
        self.lookups.push("has_participant_at");
        let at = format!("@{domain}");
        Ok(self.ticket(ticket).is_some_and(|t| {
            std::iter::once(&t.customer)
                .chain(&t.participants)
                .any(|p| p.ends_with(&at))
        }))
    }

    fn live_ticket(
        &mut self,
        account: AccountId,
        ticket: TicketId,
    ) -> Result<Option<TicketId>, StoreError> {
        self.lookups.push("live_ticket");
        let mut id = ticket;
        for _ in 0..16 {
            match self.ticket(id).filter(|t| t.account == account.0) {
                None => return Ok(None),
                Some(t) => match t.merged_into {
                    None => return Ok(Some(id)),
                    Some(next) => id = TicketId(next),
                },
            }
        }
        Ok(None)
    }

    fn ticket_of_message_id(
        &mut self,
        account: AccountId,
        message_id: &str,
        direction: Option<Direction>,
    ) -> Result<Option<TicketId>, StoreError> {
        self.lookups.push("ticket_of_message_id");
        Ok(self
            .messages_of(account)
            .find(|m| {
                m.message_id.as_deref() == Some(message_id)
                    && direction.is_none_or(|d| d == m.direction)
            })
            .map(|m| TicketId(m.ticket)))
    }

    fn first_ticket_referring_to(
        &mut self,
        account: AccountId,
        message_id: &str,
    ) -> Result<Option<TicketId>, StoreError> {
        self.lookups.push("first_ticket_referring_to");
        Ok(self
            .messages_of(account)
            .find(|m| {
                m.direction != Direction::Note && m.references.iter().any(|r| r == message_id)
            })
            .map(|m| TicketId(m.ticket)))
    }

    fn tickets_referring_to(
        &mut self,
        account: AccountId,
        message_id: &str,
    ) -> Result<Vec<TicketId>, StoreError> {
        self.lookups.push("tickets_referring_to");
        let mut found: Vec<TicketId> = self
            .messages_of(account)
            .filter(|m| m.references.iter().any(|r| r == message_id))
            .map(|m| TicketId(m.ticket))
            .collect();
        found.sort();
        found.dedup();
        Ok(found)
    }

    fn ticket_customer(&mut self, ticket: TicketId) -> Result<Option<String>, StoreError> {
        self.lookups.push("ticket_customer");
        Ok(self.ticket(ticket).map(|t| t.customer.clone()))
    }

    fn ticket_by_subject(&mut self, q: &SubjectQuery<'_>) -> Result<Option<TicketId>, StoreError> {
        self.lookups.push("ticket_by_subject");
        Ok(self
            .tickets
            .iter()
            .filter(|t| {
                t.account == q.account.0
                    && t.customer == q.customer
                    && normalize_subject(&t.subject) == q.normalized_subject
                    && t.merged_into.is_none()
                    && t.updated_at >= q.updated_since
                    && t.created_at <= q.created_until
            })
            .max_by_key(|t| t.updated_at)
            .map(|t| TicketId(t.id)))
    }

    fn message_by_dedup_key(
        &mut self,
        account: AccountId,
        dedup_key: &str,
    ) -> Result<Option<StoredMessage>, StoreError> {
        self.lookups.push("message_by_dedup_key");
        Ok(self
            .messages_of(account)
            .find(|m| m.dedup_key.as_deref() == Some(dedup_key))
            .map(|m| StoredMessage {
                message: MessageId(m.id),
                ticket: TicketId(m.ticket),
            }))
    }

    fn copies_under_message_id(
        &mut self,
        account: AccountId,
        message_id: &str,
        limit: usize,
    ) -> Result<Vec<StoredCopyRow>, StoreError> {
        self.lookups.push("copies_under_message_id");
        Ok(self
            .messages_of(account)
            .filter(|m| m.message_id.as_deref() == Some(message_id))
            .take(limit)
            .map(|m| StoredCopyRow {
                stored: StoredMessage {
                    message: MessageId(m.id),
                    ticket: TicketId(m.ticket),
                },
                sender: m.sender.clone(),
                authenticated: m.authenticated,
                raw_sha256: Self::sha_of(m),
            })
            .collect())
    }

    fn blob(&mut self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.lookups.push("blob");
        Ok(self
            .messages
            .iter()
            .find(|m| Self::sha_of(m).as_deref() == Some(sha256))
            .and_then(|m| m.raw.clone())
            .map(String::into_bytes))
    }

    fn quarantine(
        &mut self,
        _: &NewQuarantine,
        _: QuarantineStatus,
    ) -> Result<IntakeOutcome, StoreError> {
        Err(refused())
    }

    fn record_forwarding_confirmation(
        &mut self,
        _: AccountId,
        _: SupportAddressId,
        _: Option<&str>,
        _: Option<&str>,
    ) -> Result<(), StoreError> {
        Err(refused())
    }

    fn activate_support_address(&mut self, _: SupportAddressId) -> Result<(), StoreError> {
        Err(refused())
    }

    fn add_ticket_event(
        &mut self,
        _: AccountId,
        _: TicketId,
        _: &str,
        _: &serde_json::Value,
        _: i64,
    ) -> Result<(), StoreError> {
        Err(refused())
    }

    fn customer(&mut self, _: AccountId, _: &Mailbox, _: i64) -> Result<CustomerId, StoreError> {
        Err(refused())
    }

    fn create_ticket(&mut self, _: &NewTicket<'_>) -> Result<TicketId, StoreError> {
        Err(refused())
    }

    fn update_ticket(&mut self, _: TicketId, _: TicketUpdate) -> Result<(), StoreError> {
        Err(refused())
    }

    fn add_participant(&mut self, _: TicketId, _: &str, _: &str) -> Result<(), StoreError> {
        Err(refused())
    }

    fn insert_message(&mut self, _: &NewMessage, _: &Filing<'_>) -> Result<MessageId, StoreError> {
        Err(refused())
    }

    fn merge_tickets(
        &mut self,
        _: AccountId,
        _: TicketId,
        _: TicketId,
        _: &str,
    ) -> Result<(), StoreError> {
        Err(refused())
    }

    fn outbound_message(&mut self, _: AccountId, _: &str) -> Result<Option<MessageId>, StoreError> {
        Err(refused())
    }

    fn mark_recipient_bounced(
        &mut self,
        _: AccountId,
        _: MessageId,
        _: &str,
        _: &str,
        _: i64,
    ) -> Result<usize, StoreError> {
        Err(refused())
    }

    fn mark_sole_recipient_bounced(
        &mut self,
        _: AccountId,
        _: MessageId,
        _: &str,
        _: i64,
    ) -> Result<usize, StoreError> {
        Err(refused())
    }
}
