//! An in-memory [`ThreadingFacts`] for unit tests of ingest's decisions: the facts of a
//! small store, written as data, and the look-ups a decision made (the SQLite engine is
//! tested by tests/threading.rs and its neighbours).

use crate::domain::{normalize_subject, Direction, MessageId, TicketId};
use crate::store::{
    Found, StoreResult, StoredCopyRow, StoredMessage, SubjectQuery, ThreadingFacts,
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

/// The store's facts, seen from account 1 (the account filing): the brand's addresses,
/// tickets and messages (some of other accounts).
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

impl FakeRepository {
    fn ticket(&self, id: TicketId) -> Option<&FakeTicket> {
        self.tickets.iter().find(|t| t.id == id.0)
    }

    /// The messages of the account filing, in id order.
    fn messages_of_account(&self) -> impl Iterator<Item = &FakeMessage> {
        let mut of: Vec<&FakeMessage> = self
            .messages
            .iter()
            .filter(|m| m.account == ACCOUNT)
            .collect();
        of.sort_by_key(|m| m.id);
        of.into_iter()
    }

    fn sha_of(m: &FakeMessage) -> Option<String> {
        m.raw.as_ref().map(|_| format!("raw-{}", m.id))
    }
}

impl ThreadingFacts for FakeRepository {
    fn is_brand(&mut self, email: &str) -> StoreResult<bool> {
        self.lookups.push("is_brand");
        Ok(self.brand.iter().any(|b| b == email))
    }

    fn is_participant(&mut self, ticket: TicketId, email: &str) -> StoreResult<bool> {
        self.lookups.push("is_participant");
        Ok(self
            .ticket(ticket)
            .is_some_and(|t| t.customer == email || t.participants.iter().any(|p| p == email)))
    }

    fn has_participant_at(&mut self, ticket: TicketId, domain: &str) -> StoreResult<bool> {
        self.lookups.push("has_participant_at");
        let at = format!("@{domain}");
        Ok(self.ticket(ticket).is_some_and(|t| {
            std::iter::once(&t.customer)
                .chain(&t.participants)
                .any(|p| p.ends_with(&at))
        }))
    }

    fn live_ticket(&mut self, ticket: TicketId) -> Found<TicketId> {
        self.lookups.push("live_ticket");
        let mut id = ticket;
        for _ in 0..16 {
            match self.ticket(id).filter(|t| t.account == ACCOUNT) {
                None => return Ok(None),
                Some(t) => match t.merged_into {
                    None => return Ok(Some(id)),
                    Some(next) => id = TicketId(next),
                },
            }
        }
        Ok(None)
    }

    fn ticket_of_message_id(&mut self, id: &str, way: Option<Direction>) -> Found<TicketId> {
        self.lookups.push("ticket_of_message_id");
        Ok(self
            .messages_of_account()
            .find(|m| m.message_id.as_deref() == Some(id) && way.is_none_or(|d| d == m.direction))
            .map(|m| TicketId(m.ticket)))
    }

    fn first_ticket_referring_to(&mut self, message_id: &str) -> Found<TicketId> {
        self.lookups.push("first_ticket_referring_to");
        Ok(self
            .messages_of_account()
            .find(|m| {
                m.direction != Direction::Note && m.references.iter().any(|r| r == message_id)
            })
            .map(|m| TicketId(m.ticket)))
    }

    fn tickets_referring_to(&mut self, message_id: &str) -> StoreResult<Vec<TicketId>> {
        self.lookups.push("tickets_referring_to");
        let mut found: Vec<TicketId> = self
            .messages_of_account()
            .filter(|m| m.references.iter().any(|r| r == message_id))
            .map(|m| TicketId(m.ticket))
            .collect();
        found.sort();
        found.dedup();
        Ok(found)
    }

    fn ticket_customer(&mut self, ticket: TicketId) -> Found<String> {
        self.lookups.push("ticket_customer");
        Ok(self.ticket(ticket).map(|t| t.customer.clone()))
    }

    fn ticket_by_subject(&mut self, q: &SubjectQuery<'_>) -> Found<TicketId> {
        self.lookups.push("ticket_by_subject");
        Ok(self
            .tickets
            .iter()
            .filter(|t| {
                t.account == ACCOUNT
                    && t.customer == q.customer
                    && normalize_subject(&t.subject) == q.normalized_subject
                    && t.merged_into.is_none()
                    && t.updated_at >= q.updated_since
                    && t.created_at <= q.created_until
            })
            .max_by_key(|t| t.updated_at)
            .map(|t| TicketId(t.id)))
    }

    fn message_by_dedup_key(&mut self, dedup_key: &str) -> Found<StoredMessage> {
        self.lookups.push("message_by_dedup_key");
        Ok(self
            .messages_of_account()
            .find(|m| m.dedup_key.as_deref() == Some(dedup_key))
            .map(|m| StoredMessage {
                message: MessageId(m.id),
                ticket: TicketId(m.ticket),
            }))
    }

    fn copies_under_message_id(
        &mut self,
        id: &str,
        limit: usize,
    ) -> StoreResult<Vec<StoredCopyRow>> {
        self.lookups.push("copies_under_message_id");
        Ok(self
            .messages_of_account()
            .filter(|m| m.message_id.as_deref() == Some(id))
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

    fn blob(&mut self, sha256: &str) -> Found<Vec<u8>> {
        self.lookups.push("blob");
        Ok(self
            .messages
            .iter()
            .find(|m| Self::sha_of(m).as_deref() == Some(sha256))
            .and_then(|m| m.raw.clone())
            .map(String::into_bytes))
    }
}
