//! An in-memory [`ThreadingRepository`](crate::store::ThreadingRepository) for unit tests
//! of ingest's decisions: the facts of a small store, written as data, the look-ups a
//! decision made, and its writes as lines of text (the SQLite engine is tested by
//! tests/threading.rs and its neighbours).

use crate::domain::{
    normalize_subject, CustomerId, Direction, Mailbox, MessageId, SupportAddressId, TicketId,
};
use crate::store::{
    BounceRecords, Filing, Found, IntakeOutcome, IntakeWrites, NewMessage, NewQuarantine,
    NewTicket, QuarantineStatus, StoreResult, StoredCopyRow, StoredMessage, SubjectQuery,
    ThreadingFacts, TicketUpdate,
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
    /// Outbound queue rows: (message row id, recipient).
    #[serde(default)]
    pub queue: Vec<(i64, String)>,
    /// Every look-up made, by name, in order.
    #[serde(skip)]
    pub lookups: Vec<&'static str>,
    /// Every write made, as a line of text, in order.
    #[serde(skip)]
    pub writes: Vec<String>,
}

/// Rows the fake creates are numbered from here.
pub const FIRST_NEW_ID: i64 = 100;

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

impl FakeRepository {
    /// Records a write and returns the id of the row it made.
    fn write(&mut self, line: String) -> i64 {
        self.writes.push(line);
        FIRST_NEW_ID + self.writes.len() as i64 - 1
    }
}

impl IntakeWrites for FakeRepository {
    fn quarantine(&mut self, q: &NewQuarantine, s: QuarantineStatus) -> StoreResult<IntakeOutcome> {
        let id = self.write(format!("quarantine {} {}", q.reason, s.as_str()));
        Ok(IntakeOutcome::Quarantined { id })
    }

    fn record_forwarding_confirmation(
        &mut self,
        support: SupportAddressId,
        code: Option<&str>,
        _: Option<&str>,
    ) -> StoreResult<()> {
        self.write(format!("forwarding confirmation {support} {code:?}"));
        Ok(())
    }

    fn activate_support_address(&mut self, support: SupportAddressId) -> StoreResult<()> {
        self.write(format!("support address {support} active"));
        Ok(())
    }

    fn add_ticket_event(
        &mut self,
        ticket: TicketId,
        kind: &str,
        _: &serde_json::Value,
    ) -> StoreResult<()> {
        self.write(format!("event {kind} on {ticket}"));
        Ok(())
    }

    fn customer(&mut self, who: &Mailbox, _: i64) -> StoreResult<CustomerId> {
        Ok(CustomerId(self.write(format!("customer {}", who.address))))
    }

    fn create_ticket(&mut self, t: &NewTicket<'_>) -> StoreResult<TicketId> {
        let line = format!(
            "ticket of customer {} subject {:?} flags {:?} by brand {} import {:?}",
            t.customer, t.subject, t.flags, t.by_brand, t.import_job
        );
        Ok(TicketId(self.write(line)))
    }

    fn update_ticket(&mut self, ticket: TicketId, update: TicketUpdate) -> StoreResult<()> {
        self.write(format!("update {ticket} {update:?}"));
        Ok(())
    }

    fn add_participant(&mut self, ticket: TicketId, email: &str, role: &str) -> StoreResult<()> {
        self.write(format!("participant of {ticket} {email} {role}"));
        Ok(())
    }

    fn insert_message(&mut self, _: &NewMessage, f: &Filing<'_>) -> StoreResult<MessageId> {
        let line = format!(
            "message in {} {} {} {} {:?} key {}",
            f.ticket,
            f.direction.as_str(),
            f.classification,
            f.reason.as_str(),
            f.flags,
            f.dedup_key
        );
        Ok(MessageId(self.write(line)))
    }

    fn merge_tickets(&mut self, winner: TicketId, loser: TicketId, _: &str) -> StoreResult<()> {
        self.write(format!("merge {loser} into {winner}"));
        Ok(())
    }
}

impl BounceRecords for FakeRepository {
    fn outbound_message(&mut self, message_id: &str) -> Found<MessageId> {
        self.lookups.push("outbound_message");
        Ok(self
            .messages_of_account()
            .find(|m| {
                m.direction == Direction::Outbound && m.message_id.as_deref() == Some(message_id)
            })
            .map(|m| MessageId(m.id)))
    }

    fn mark_recipient_bounced(
        &mut self,
        message: MessageId,
        to: &str,
        why: &str,
    ) -> StoreResult<usize> {
        self.write(format!("bounced {message} {to}: {why}"));
        Ok(self
            .queue
            .iter()
            .filter(|(m, r)| *m == message.0 && r == to)
            .count())
    }

    fn mark_sole_recipient_bounced(&mut self, message: MessageId, why: &str) -> StoreResult<usize> {
        self.write(format!("bounced the sole recipient of {message}: {why}"));
        Ok(usize::from(
            self.queue.iter().filter(|(m, _)| *m == message.0).count() == 1,
        ))
    }
}
