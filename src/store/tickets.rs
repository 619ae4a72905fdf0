//! Reading tickets, messages and quarantine, always within one account.

use super::{Store, StoreError};
use crate::domain::{AccountId, Mailbox, Scope, StoredAuthResults, TicketId};
use serde::Serialize;

type Time = chrono::DateTime<chrono::Utc>;

fn ms(ms: i64) -> Time {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TicketSummary {
    pub id: i64,
    pub account_id: i64,
    pub subject: String,
    /// open, pending, snoozed or closed.
    pub status: String,
    /// low, normal, high or urgent.
    pub priority: String,
    /// The customer's e-mail address.
    pub customer: Option<String>,
    pub customer_id: Option<i64>,
    /// The user the ticket is assigned to.
    pub assignee_id: Option<i64>,
    pub message_count: i64,
    /// unverified_reply, spoof_suspected, ...
    pub flags: Vec<String>,
    /// Set when this ticket was merged into another one.
    pub merged_into: Option<i64>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct AttachmentView {
    pub id: i64,
    pub filename: Option<String>,
    pub content_type: String,
    pub size: i64,
    pub content_id: Option<String>,
    pub disposition: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MessageView {
    pub id: i64,
    pub ticket_id: i64,
    /// inbound, outbound or note.
    pub direction: String,
    /// The user who wrote an outbound message or a note.
    pub author_user_id: Option<i64>,
    /// The rule that wrote an automated reply.
    pub author_rule_id: Option<i64>,
    pub message_id: Option<String>,
    pub from: Option<String>,
    pub from_name: Option<String>,
    #[schema(value_type = Vec<Object>)]
    pub to: Vec<Mailbox>,
    #[schema(value_type = Vec<Object>)]
    pub cc: Vec<Mailbox>,
    pub subject: String,
    pub date: Option<chrono::DateTime<chrono::Utc>>,
    pub received_at: chrono::DateTime<chrono::Utc>,
    pub text: Option<String>,
    /// The reply part of `text`, without quoted history and signature.
    pub stripped_text: Option<String>,
    pub html: Option<String>,
    pub size: i64,
    pub classification: String,
    pub thread_reason: String,
    pub flags: Vec<String>,
    #[schema(value_type = Option<Object>)]
    pub auth_results: Option<serde_json::Value>,
    #[schema(value_type = Option<Object>)]
    pub envelope: Option<serde_json::Value>,
    pub attachments: Vec<AttachmentView>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TicketDetail {
    #[serde(flatten)]
    pub ticket: TicketSummary,
    pub tags: Vec<String>,
    pub messages: Vec<MessageView>,
    /// Merges, bounces and other history, oldest first.
    pub events: Vec<TicketEvent>,
    /// Delivery of the replies: one entry per recipient (queued, deferred with the last
    /// error, delivered, bounced).
    pub deliveries: Vec<super::DeliveryView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct QuarantineView {
    pub id: i64,
    pub account_id: Option<i64>,
    pub reason: String,
    pub detail: Option<String>,
    pub size: i64,
    pub source: String,
    pub received_at: chrono::DateTime<chrono::Utc>,
}

#[derive(sqlx::FromRow)]
pub(super) struct TicketRow {
    id: i64,
    account_id: i64,
    subject: String,
    status: String,
    priority: String,
    customer: Option<String>,
    customer_id: Option<i64>,
    assignee_id: Option<i64>,
    message_count: i64,
    flags: String,
    merged_into: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

pub(super) const TICKET_SELECT: &str = "
    SELECT t.id, t.account_id, t.subject, t.status, t.priority, c.email AS customer,
           t.customer_id, t.assignee_id,
           (SELECT COUNT(*) FROM messages m WHERE m.ticket_id = t.id) AS message_count,
           t.flags, t.merged_into, t.created_at, t.updated_at
    FROM tickets t LEFT JOIN customers c ON c.id = t.customer_id";

pub(super) fn summary(r: TicketRow) -> TicketSummary {
    TicketSummary {
        id: r.id,
        account_id: r.account_id,
        subject: r.subject,
        status: r.status,
        priority: r.priority,
        customer: r.customer,
        customer_id: r.customer_id,
        assignee_id: r.assignee_id,
        message_count: r.message_count,
        flags: serde_json::from_str(&r.flags).unwrap_or_default(),
        merged_into: r.merged_into,
        created_at: ms(r.created_at),
        updated_at: ms(r.updated_at),
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TicketEvent {
    pub kind: String,
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

fn json_list(s: &str) -> Vec<Mailbox> {
    serde_json::from_str(s).unwrap_or_default()
}

fn json_value(s: Option<String>) -> Option<serde_json::Value> {
    s.and_then(|s| serde_json::from_str(&s).ok())
}

#[derive(sqlx::FromRow)]
struct QuarantineRow {
    id: i64,
    account_id: Option<i64>,
    reason: String,
    detail: Option<String>,
    size: i64,
    source: String,
    received_at: i64,
}

#[derive(sqlx::FromRow)]
struct MessageRow {
    id: i64,
    ticket_id: i64,
    direction: String,
    author_user_id: Option<i64>,
    author_rule_id: Option<i64>,
    message_id: Option<String>,
    from_address: Option<String>,
    from_name: Option<String>,
    to_list: String,
    cc_list: String,
    subject: String,
    sent_at: Option<i64>,
    received_at: i64,
    text_body: Option<String>,
    html_body: Option<String>,
    stripped_text: Option<String>,
    size: i64,
    classification: String,
    thread_reason: String,
    flags: String,
    auth_results: Option<String>,
    envelope: Option<String>,
}

impl Store {
    /// Tickets of one account, most recently updated first.
    pub async fn tickets(
        &self,
        account: AccountId,
        limit: Option<u32>,
    ) -> Result<Vec<TicketSummary>, StoreError> {
        self.account(account).await?;
        let sql = format!(
            "{TICKET_SELECT} WHERE t.account_id = ? AND t.merged_into IS NULL
             ORDER BY t.updated_at DESC, t.id DESC LIMIT ?"
        );
        let rows: Vec<TicketRow> = sqlx::query_as(&sql)
            .bind(account.0)
            .bind(limit.map_or(-1, i64::from))
            .fetch_all(self.pool())
            .await?;
        Ok(rows.into_iter().map(summary).collect())
    }

    /// One ticket with its messages. In an account's scope, a ticket of another account is
    /// reported as not found.
    pub async fn ticket(&self, id: TicketId, scope: Scope) -> Result<TicketDetail, StoreError> {
        let sql = format!("{TICKET_SELECT} WHERE t.id = ? AND (? IS NULL OR t.account_id = ?)");
        let acct = scope.account().map(|a| a.0);
        let row: Option<TicketRow> = sqlx::query_as(&sql)
            .bind(id.0)
            .bind(acct)
            .bind(acct)
            .fetch_optional(self.pool())
            .await?;
        let ticket =
            summary(row.ok_or_else(|| StoreError::NotFound(format!("no ticket with id {id}")))?);
        let tags: Vec<String> =
            sqlx::query_scalar("SELECT tag FROM ticket_tags WHERE ticket_id = ? ORDER BY tag")
                .bind(id.0)
                .fetch_all(self.pool())
                .await?;
        let messages = self
            .messages_where("ticket_id = ? AND account_id = ?", id.0, ticket.account_id)
            .await?;
        let events: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT kind, data, created_at FROM ticket_events WHERE ticket_id = ? ORDER BY id",
        )
        .bind(id.0)
        .fetch_all(self.pool())
        .await?;
        let deliveries = self.ticket_deliveries(id.0).await?;
        Ok(TicketDetail {
            ticket,
            tags,
            messages,
            deliveries,
            events: events
                .into_iter()
                .map(|(kind, data, at)| TicketEvent {
                    kind,
                    data: serde_json::from_str(&data).unwrap_or(serde_json::Value::Null),
                    created_at: ms(at),
                })
                .collect(),
        })
    }

    /// Messages matching `condition` (two `?`: a value and the account), oldest first,
    /// with their attachments.
    async fn messages_where(
        &self,
        condition: &str,
        value: i64,
        account: i64,
    ) -> Result<Vec<MessageView>, StoreError> {
        let rows: Vec<MessageRow> = sqlx::query_as(&format!(
            "SELECT id, ticket_id, direction, author_user_id, author_rule_id, message_id, from_address, from_name,
                    to_list, cc_list, subject, sent_at, received_at, body_text(text_body) AS text_body,
                    body_text(html_body) AS html_body, stripped_text, size, classification, thread_reason, flags, auth_results,
                    envelope
             FROM messages WHERE {condition} ORDER BY received_at, id"
        ))
        .bind(value)
        .bind(account)
        .fetch_all(self.pool())
        .await?;
        let mut messages = Vec::with_capacity(rows.len());
        for r in rows {
            let attachments: Vec<AttachmentView> = sqlx::query_as(
                "SELECT id, filename, content_type, size, content_id, disposition
                     FROM attachments WHERE message_id = ? ORDER BY id",
            )
            .bind(r.id)
            .fetch_all(self.pool())
            .await?;
            messages.push(MessageView {
                id: r.id,
                ticket_id: r.ticket_id,
                direction: r.direction,
                author_user_id: r.author_user_id,
                author_rule_id: r.author_rule_id,
                message_id: r.message_id,
                from: r.from_address,
                from_name: r.from_name,
                to: json_list(&r.to_list),
                cc: json_list(&r.cc_list),
                subject: r.subject,
                date: r.sent_at.map(ms),
                received_at: ms(r.received_at),
                // Stored only where it differs from the whole text (threading_sqlite.rs).
                stripped_text: r.stripped_text.or_else(|| {
                    r.text_body
                        .as_deref()
                        .map(|t| super::whole_text_reply(t).to_string())
                }),
                text: r.text_body,
                html: r.html_body,
                size: r.size,
                classification: r.classification,
                thread_reason: r.thread_reason,
                flags: serde_json::from_str(&r.flags).unwrap_or_default(),
                auth_results: json_value(r.auth_results),
                envelope: json_value(r.envelope),
                attachments,
            });
        }
        Ok(messages)
    }

    /// One message of `account` (another account's message is not found).
    pub async fn message(&self, id: i64, account: AccountId) -> Result<MessageView, StoreError> {
        self.messages_where("id = ? AND account_id = ?", id, account.0)
            .await?
            .pop()
            .ok_or_else(|| StoreError::NotFound(format!("no message with id {id}")))
    }

    /// The raw bytes of a stored message, exactly as received.
    pub async fn raw_message(
        &self,
        message: i64,
        account: AccountId,
    ) -> Result<Vec<u8>, StoreError> {
        let row: Option<(Vec<u8>, Option<String>, i64)> = sqlx::query_as(
            "SELECT b.data, b.compression, b.size FROM messages m
             JOIN blobs b ON b.sha256 = m.raw_sha256
             WHERE m.id = ? AND m.account_id = ?",
        )
        .bind(message)
        .bind(account.0)
        .fetch_optional(self.pool())
        .await?;
        let (data, compression, size) =
            row.ok_or_else(|| StoreError::NotFound(format!("no message with id {message}")))?;
        super::blob_codec::decode(data, compression.as_deref(), size)
    }

    /// The message as agents download it: Postern's Authentication-Results header (when the
    /// message was verified) on top of the bytes as received, which stay untouched in the store.
    pub async fn raw_message_for_download(
        &self,
        message: i64,
        account: AccountId,
    ) -> Result<Vec<u8>, StoreError> {
        let raw = self.raw_message(message, account).await?;
        let auth: Option<String> =
            sqlx::query_scalar("SELECT auth_results FROM messages WHERE id = ? AND account_id = ?")
                .bind(message)
                .bind(account.0)
                .fetch_optional(self.pool())
                .await?
                .flatten();
        let header = auth
            .as_deref()
            .and_then(StoredAuthResults::parse)
            .map(|a| a.verdicts.into_owned().header);
        Ok(match header {
            Some(h) => {
                // Folded lines of the header must stay CRLF + tab; the value already is.
                let mut out = format!("Authentication-Results: {h}\r\n").into_bytes();
                out.extend_from_slice(&raw);
                out
            }
            None => raw,
        })
    }

    /// Quarantined mail in the scope, newest first (everything for the operator).
    pub async fn quarantine(&self, scope: Scope) -> Result<Vec<QuarantineView>, StoreError> {
        let acct = scope.account().map(|a| a.0);
        let rows: Vec<QuarantineRow> = sqlx::query_as(
            "SELECT id, account_id, reason, detail, size, source, received_at FROM quarantine
                 WHERE (? IS NULL OR account_id = ?) ORDER BY id DESC",
        )
        .bind(acct)
        .bind(acct)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| QuarantineView {
                id: r.id,
                account_id: r.account_id,
                reason: r.reason,
                detail: r.detail,
                size: r.size,
                source: r.source,
                received_at: ms(r.received_at),
            })
            .collect())
    }
}
