//! Outbound storage: sending domains with their DKIM keys, replies recorded as outbound
//! messages of their ticket, and the durable per-recipient delivery queue with leases.

use super::{now_ms, Store, StoreError};
use crate::domain::{AccountId, Mailbox, MessageId, Scope, TicketId};
use serde::Serialize;

type Time = chrono::DateTime<chrono::Utc>;

fn ms(v: i64) -> Time {
    chrono::DateTime::from_timestamp_millis(v).unwrap_or_default()
}

/// A sending domain with its keys, for signing. Never shown to users as is.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SendingDomainKeys {
    pub id: i64,
    pub account_id: i64,
    pub domain: String,
    pub selector: String,
    pub rsa_private_key: String,
    pub rsa_public_key: String,
    pub ed25519_selector: Option<String>,
    pub ed25519_private_key: Option<String>,
    pub ed25519_public_key: Option<String>,
    pub verified: bool,
}

/// A sending domain as listed: no private key.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SendingDomainView {
    pub id: i64,
    pub account_id: i64,
    pub domain: String,
    /// Selector of the RSA key.
    pub selector: String,
    /// Selector of the Ed25519 key, when there is one.
    pub ed25519_selector: Option<String>,
    /// base64 public keys, as published in the DKIM records.
    pub rsa_public_key: String,
    pub ed25519_public_key: Option<String>,
    /// The RSA DKIM record was found as published: replies may leave from this domain.
    pub verified: bool,
    /// The last check's report.
    #[schema(value_type = Option<Object>)]
    pub last_check: Option<serde_json::Value>,
    pub checked_at: Option<chrono::DateTime<chrono::Utc>>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

#[derive(sqlx::FromRow)]
struct DomainRow {
    id: i64,
    account_id: i64,
    domain: String,
    selector: String,
    ed25519_selector: Option<String>,
    rsa_public_key: String,
    ed25519_public_key: Option<String>,
    verified: bool,
    last_check: Option<String>,
    checked_at: Option<i64>,
    created_at: i64,
}

impl From<DomainRow> for SendingDomainView {
    fn from(r: DomainRow) -> Self {
        Self {
            id: r.id,
            account_id: r.account_id,
            domain: r.domain,
            selector: r.selector,
            ed25519_selector: r.ed25519_selector,
            rsa_public_key: r.rsa_public_key,
            ed25519_public_key: r.ed25519_public_key,
            verified: r.verified,
            last_check: r.last_check.and_then(|s| serde_json::from_str(&s).ok()),
            checked_at: r.checked_at.map(ms),
            created_at: ms(r.created_at),
        }
    }
}

const DOMAIN_COLUMNS: &str = "id, account_id, domain, selector, ed25519_selector, rsa_public_key,
    ed25519_public_key, verified, last_check, checked_at, created_at";

/// Keys of a new sending domain (base64 DER).
pub struct NewSendingDomain<'a> {
    pub domain: &'a str,
    pub selector: &'a str,
    pub rsa_private_key: &'a str,
    pub rsa_public_key: &'a str,
    /// (selector, private, public)
    pub ed25519: Option<(&'a str, &'a str, &'a str)>,
}

/// What composing a reply needs to know about its ticket.
#[derive(Debug, Clone)]
pub struct ReplyContext {
    pub account_id: i64,
    pub account_name: String,
    /// The support address's from_address, else the account's.
    pub from_address: String,
    pub ticket_id: i64,
    pub ticket_subject: String,
    pub ticket_created_at: i64,
    pub customer: Option<Mailbox>,
    /// The customer's last message: what the reply answers.
    pub parent: Option<ParentMessage>,
    /// Message-IDs of the ticket, oldest first.
    pub thread_ids: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ParentMessage {
    pub message_id: Option<String>,
    pub references: Vec<String>,
    pub from: Option<Mailbox>,
    pub date: i64,
    pub text: Option<String>,
}

pub struct NewOutboundAttachment<'a> {
    pub filename: &'a str,
    pub content_type: &'a str,
    pub data: &'a [u8],
}

/// A composed reply to store: signed and queued, or recorded without being sent.
pub struct NewOutboundReply<'a> {
    pub account: AccountId,
    pub ticket: TicketId,
    pub message_id: &'a str,
    pub in_reply_to: Option<&'a str>,
    pub references: &'a [String],
    pub from: &'a Mailbox,
    pub to: &'a [Mailbox],
    pub cc: &'a [Mailbox],
    pub subject: &'a str,
    pub text: &'a str,
    pub html: Option<&'a str>,
    pub attachments: Vec<NewOutboundAttachment<'a>>,
    pub author_user_id: Option<i64>,
    /// The rule that wrote an automated reply.
    pub author_rule_id: Option<i64>,
    /// Written by software (a rule): marked `automated`, and not an agent's reply, so
    /// `last_agent_reply_at` stays as it is.
    pub automated: bool,
    pub disposition: Disposition<'a>,
}

/// What becomes of a reply once stored.
pub enum Disposition<'a> {
    /// Queued for every recipient, these signed bytes.
    Queue {
        raw: &'a [u8],
        /// Envelope sender of every queue row.
        mail_from: &'a str,
        /// Give up (bounce) recipients still failing after this time (ms).
        expires_at: i64,
    },
    /// Recorded in the ticket only, flagged `not_sent`, with the reason in its event.
    NotSent { reason: &'a str },
}

/// One recipient of one outbound message, as listed.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct DeliveryView {
    /// Queue entry id (for `postern queue retry`).
    pub id: i64,
    pub account_id: i64,
    pub ticket_id: i64,
    /// The outbound message (messages.id).
    pub message_id: i64,
    pub recipient: String,
    /// queued, deferred, delivered or bounced.
    pub status: String,
    pub attempts: i64,
    /// What the last failure was (a deferral's reason, a bounce's cause).
    pub last_error: Option<String>,
    /// SMTP code of the last answer.
    pub last_code: Option<i64>,
    #[serde(serialize_with = "ser_ms_opt")]
    #[schema(value_type = Option<String>)]
    pub next_attempt_at: Option<i64>,
    #[serde(serialize_with = "ser_ms_opt")]
    #[schema(value_type = Option<String>)]
    pub delivered_at: Option<i64>,
    #[serde(serialize_with = "ser_ms")]
    #[schema(value_type = String)]
    pub created_at: i64,
    #[serde(serialize_with = "ser_ms")]
    #[schema(value_type = String)]
    pub updated_at: i64,
}

fn ser_ms<S: serde::Serializer>(v: &i64, s: S) -> Result<S::Ok, S::Error> {
    ms(*v).serialize(s)
}

fn ser_ms_opt<S: serde::Serializer>(v: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    v.map(ms).serialize(s)
}

const DELIVERY_SELECT: &str =
    "SELECT id, account_id, ticket_id, message_id, recipient, status, attempts,
    last_error, last_code,
    CASE WHEN status IN ('queued', 'deferred') THEN next_attempt_at END AS next_attempt_at,
    delivered_at, created_at, updated_at FROM outbound_queue";

/// id, message_id, account_id, ticket_id, mail_from, recipient, attempts, expires_at
type ClaimRow = (i64, i64, i64, i64, String, String, i64, i64);

/// Rows a worker took: one message, some of its recipients.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub message_id: i64,
    pub account_id: i64,
    pub ticket_id: i64,
    pub mail_from: String,
    pub raw: Vec<u8>,
    /// (queue id, recipient, attempts so far including this one, expires_at)
    pub recipients: Vec<ClaimedRecipient>,
}

#[derive(Debug, Clone)]
pub struct ClaimedRecipient {
    pub id: i64,
    pub recipient: String,
    pub attempts: i64,
    pub expires_at: i64,
}

/// What became of one recipient's attempt.
#[derive(Debug, Clone)]
pub enum DeliveryOutcome {
    Delivered {
        code: Option<u16>,
    },
    /// Try again at `retry_at` (ms); past the row's lifetime it bounces instead.
    Deferred {
        error: String,
        code: Option<u16>,
        retry_at: i64,
    },
    Bounced {
        error: String,
        code: Option<u16>,
    },
}

impl Store {
    pub async fn add_sending_domain(
        &self,
        account: AccountId,
        d: &NewSendingDomain<'_>,
    ) -> Result<SendingDomainView, StoreError> {
        self.account(account).await?;
        let (ed_sel, ed_priv, ed_pub) = match d.ed25519 {
            Some((s, p, q)) => (Some(s), Some(p), Some(q)),
            None => (None, None, None),
        };
        let row: Result<DomainRow, sqlx::Error> = sqlx::query_as(&format!(
            "INSERT INTO sending_domains (account_id, domain, selector, rsa_private_key, rsa_public_key,
                 ed25519_selector, ed25519_private_key, ed25519_public_key, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING {DOMAIN_COLUMNS}"
        ))
        .bind(account.0)
        .bind(d.domain)
        .bind(d.selector)
        .bind(d.rsa_private_key)
        .bind(d.rsa_public_key)
        .bind(ed_sel)
        .bind(ed_priv)
        .bind(ed_pub)
        .bind(now_ms())
        .fetch_one(self.pool())
        .await;
        match row {
            Ok(r) => Ok(r.into()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(StoreError::Conflict(format!(
                    "{} is already a sending domain of account {account}; see `postern domain list`",
                    d.domain
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Sending domains in the scope (every account's for the operator).
    pub async fn sending_domains(
        &self,
        scope: Scope,
    ) -> Result<Vec<SendingDomainView>, StoreError> {
        let acct = scope.account().map(|a| a.0);
        let rows: Vec<DomainRow> = sqlx::query_as(&format!(
            "SELECT {DOMAIN_COLUMNS} FROM sending_domains WHERE (? IS NULL OR account_id = ?) ORDER BY account_id, domain"
        ))
        .bind(acct)
        .bind(acct)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// One sending domain of the account, by id or by name.
    pub async fn sending_domain(
        &self,
        account: AccountId,
        id: Option<i64>,
        name: Option<&str>,
    ) -> Result<SendingDomainKeys, StoreError> {
        let row: Option<SendingDomainKeys> = sqlx::query_as(
            "SELECT id, account_id, domain, selector, rsa_private_key, rsa_public_key, ed25519_selector,
                    ed25519_private_key, ed25519_public_key, verified
             FROM sending_domains WHERE account_id = ? AND (id = ? OR domain = ?)",
        )
        .bind(account.0)
        .bind(id)
        .bind(name.map(|n| n.to_ascii_lowercase()))
        .fetch_optional(self.pool())
        .await?;
        row.ok_or_else(|| {
            StoreError::NotFound(match (id, name) {
                (Some(id), _) => format!("no sending domain with id {id} in this account"),
                (None, Some(n)) => format!(
                    "{n} is not a sending domain of account {account}: add it with `postern domain add --account {account} {n}`"
                ),
                _ => "no such sending domain".to_string(),
            })
        })
    }

    pub async fn sending_domain_view(
        &self,
        account: AccountId,
        id: i64,
    ) -> Result<SendingDomainView, StoreError> {
        let row: Option<DomainRow> = sqlx::query_as(&format!(
            "SELECT {DOMAIN_COLUMNS} FROM sending_domains WHERE account_id = ? AND id = ?"
        ))
        .bind(account.0)
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        row.map(Into::into).ok_or_else(|| {
            StoreError::NotFound(format!("no sending domain with id {id} in this account"))
        })
    }

    /// Records a check's report; `verified` follows the DKIM record.
    pub async fn set_domain_check(
        &self,
        id: i64,
        verified: bool,
        report: &serde_json::Value,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE sending_domains SET verified = ?, last_check = ?, checked_at = ? WHERE id = ?",
        )
        .bind(verified)
        .bind(report.to_string())
        .bind(now_ms())
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Everything composing a reply in `ticket` needs; NotFound outside the account.
    pub async fn reply_context(
        &self,
        account: AccountId,
        ticket: TicketId,
    ) -> Result<ReplyContext, StoreError> {
        type TicketFacts = (
            String,
            i64,
            Option<i64>,
            Option<String>,
            Option<String>,
            String,
            String,
            Option<String>,
        );
        let row: Option<TicketFacts> = sqlx::query_as(
            "SELECT t.subject, t.created_at, t.merged_into, c.email, c.name, a.name, a.from_address, s.from_address
             FROM tickets t JOIN accounts a ON a.id = t.account_id
             LEFT JOIN customers c ON c.id = t.customer_id
             LEFT JOIN support_addresses s ON s.id = t.support_address_id
             WHERE t.id = ? AND t.account_id = ?",
        )
        .bind(ticket.0)
        .bind(account.0)
        .fetch_optional(self.pool())
        .await?;
        let Some((subject, created, merged, cust_email, cust_name, acct_name, acct_from, sa_from)) =
            row
        else {
            return Err(StoreError::NotFound(format!("no ticket with id {ticket}")));
        };
        if let Some(into) = merged {
            return Err(StoreError::Invalid(format!(
                "ticket {ticket} was merged into ticket {into}: reply there"
            )));
        }
        type ParentRow = (
            Option<String>,
            String,
            Option<String>,
            Option<String>,
            Option<i64>,
            i64,
            Option<String>,
        );
        let parent: Option<ParentRow> = sqlx::query_as(
            "SELECT message_id, references_list, from_address, from_name, sent_at, received_at,
                    COALESCE(stripped_text, body_text(text_body))
             FROM messages WHERE ticket_id = ? AND account_id = ? AND direction = 'inbound'
               AND classification <> 'bounce'
             ORDER BY received_at DESC, id DESC LIMIT 1",
        )
        .bind(ticket.0)
        .bind(account.0)
        .fetch_optional(self.pool())
        .await?;
        let thread_ids: Vec<String> = sqlx::query_scalar(
            "SELECT message_id FROM messages WHERE ticket_id = ? AND account_id = ?
               AND message_id IS NOT NULL AND direction <> 'note' AND classification <> 'bounce'
             ORDER BY received_at, id",
        )
        .bind(ticket.0)
        .bind(account.0)
        .fetch_all(self.pool())
        .await?;
        Ok(ReplyContext {
            account_id: account.0,
            account_name: acct_name,
            from_address: sa_from
                .filter(|s| !s.trim().is_empty())
                .unwrap_or(acct_from),
            ticket_id: ticket.0,
            ticket_subject: subject,
            ticket_created_at: created,
            customer: cust_email.map(|address| Mailbox {
                name: cust_name,
                address,
            }),
            parent: parent.map(
                |(id, refs, from, name, sent, received, text)| ParentMessage {
                    message_id: id,
                    references: serde_json::from_str(&refs).unwrap_or_default(),
                    from: from.map(|address| Mailbox { name, address }),
                    date: sent.unwrap_or(received),
                    text,
                },
            ),
            thread_ids,
        })
    }

    /// Stores the reply as an outbound message of its ticket and, when it is to be sent,
    /// queues one row per recipient, in one transaction: a reply is either queued whole or
    /// not at all.
    pub async fn record_outbound_reply(
        &self,
        r: &NewOutboundReply<'_>,
    ) -> Result<(MessageId, Vec<DeliveryView>), StoreError> {
        // It reads before it writes: take the write lock first, or a commit by another
        // connection in between (the rules worker, intake) fails it with "database is locked".
        let mut tx = self.write_tx().await?;
        let owner: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM tickets WHERE id = ? AND account_id = ? AND merged_into IS NULL",
        )
        .bind(r.ticket.0)
        .bind(r.account.0)
        .fetch_optional(&mut *tx)
        .await?;
        if owner.is_none() {
            return Err(StoreError::NotFound(format!(
                "no ticket with id {}",
                r.ticket
            )));
        }
        let now = now_ms();
        let (sha, size) = match &r.disposition {
            Disposition::Queue { raw, .. } => {
                let sha = super::blob_codec::key(raw);
                put_blob_sqlx(&mut tx, &sha, raw).await?;
                (Some(sha), raw.len())
            }
            Disposition::NotSent { .. } => (None, r.text.len()),
        };
        let mut flags: Vec<&str> = Vec::new();
        if r.automated {
            flags.push("automated");
        }
        if matches!(r.disposition, Disposition::NotSent { .. }) {
            flags.push("not_sent");
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO messages (account_id, ticket_id, direction, source, message_id, dedup_key, in_reply_to,
                                   references_list, from_address, from_name, to_list, cc_list, subject,
                                   received_at, sent_at, text_body, html_body, raw_sha256, size,
                                   thread_reason, author_user_id, author_rule_id, flags)
             VALUES (?, ?, 'outbound', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(r.account.0)
        .bind(r.ticket.0)
        .bind(if r.automated { "rule" } else { "api" })
        .bind(r.message_id)
        .bind(format!("mid:{}", r.message_id))
        .bind(r.in_reply_to)
        .bind(json(r.references))
        .bind(&r.from.address)
        .bind(&r.from.name)
        .bind(json(r.to))
        .bind(json(r.cc))
        .bind(r.subject)
        .bind(now)
        .bind(now)
        .bind(r.text)
        .bind(r.html)
        .bind(&sha)
        .bind(size as i64)
        .bind(if r.automated { "auto_reply" } else { "agent_reply" })
        .bind(r.author_user_id)
        .bind(r.author_rule_id)
        .bind(json(&flags))
        .fetch_one(&mut *tx)
        .await?;
        for a in &r.attachments {
            let asha = super::blob_codec::key(a.data);
            put_blob_sqlx(&mut tx, &asha, a.data).await?;
            sqlx::query(
                "INSERT INTO attachments (message_id, filename, content_type, size, disposition, blob_sha256)
                 VALUES (?, ?, ?, ?, 'attachment', ?)",
            )
            .bind(id)
            .bind(a.filename)
            .bind(a.content_type)
            .bind(a.data.len() as i64)
            .bind(&asha)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("INSERT INTO ticket_participants (ticket_id, email, role) VALUES (?, ?, 'brand') ON CONFLICT DO NOTHING")
            .bind(r.ticket.0)
            .bind(r.from.address.to_ascii_lowercase())
            .execute(&mut *tx)
            .await?;
        for cc in r.cc {
            sqlx::query("INSERT INTO ticket_participants (ticket_id, email, role) VALUES (?, ?, 'cc') ON CONFLICT DO NOTHING")
                .bind(r.ticket.0)
                .bind(cc.address.to_ascii_lowercase())
                .execute(&mut *tx)
                .await?;
        }
        // An automated reply is not an agent's: "no agent has answered" stays true for the
        // scheduler (time since the last agent reply, who wrote last, the episode).
        sqlx::query(
            "UPDATE tickets SET updated_at = ?1,
                last_agent_reply_at = CASE WHEN ?2 THEN last_agent_reply_at ELSE ?1 END
             WHERE id = ?3",
        )
        .bind(now)
        .bind(r.automated)
        .bind(r.ticket.0)
        .execute(&mut *tx)
        .await?;
        let mut recipients: Vec<String> = Vec::new();
        for m in r.to.iter().chain(r.cc.iter()) {
            let a = m.address.to_ascii_lowercase();
            if !recipients.contains(&a) {
                recipients.push(a);
            }
        }
        let (kind, data) = match &r.disposition {
            Disposition::Queue {
                mail_from,
                expires_at,
                ..
            } => {
                for rcpt in &recipients {
                    sqlx::query(
                        "INSERT INTO outbound_queue (account_id, ticket_id, message_id, mail_from, recipient, status,
                             next_attempt_at, created_at, expires_at, updated_at)
                         VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?)",
                    )
                    .bind(r.account.0)
                    .bind(r.ticket.0)
                    .bind(id)
                    .bind(mail_from)
                    .bind(rcpt)
                    .bind(now)
                    .bind(now)
                    .bind(expires_at)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                (
                    "reply_queued",
                    serde_json::json!({"message": id, "message_id": r.message_id, "recipients": recipients,
                        "automated": r.automated, "rule": r.author_rule_id}),
                )
            }
            Disposition::NotSent { reason } => (
                "reply_not_sent",
                serde_json::json!({"message": id, "message_id": r.message_id, "recipients": recipients,
                    "automated": r.automated, "rule": r.author_rule_id, "reason": reason}),
            ),
        };
        sqlx::query(
            "INSERT INTO ticket_events (account_id, ticket_id, kind, data, created_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(r.account.0)
        .bind(r.ticket.0)
        .bind(kind)
        .bind(data.to_string())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let deliveries = self.deliveries_of_message(id).await?;
        Ok((MessageId(id), deliveries))
    }

    async fn deliveries_of_message(&self, message: i64) -> Result<Vec<DeliveryView>, StoreError> {
        Ok(sqlx::query_as(&format!(
            "{DELIVERY_SELECT} WHERE message_id = ? ORDER BY id"
        ))
        .bind(message)
        .fetch_all(self.pool())
        .await?)
    }

    /// Delivery status of every recipient of every reply in the ticket.
    pub async fn ticket_deliveries(&self, ticket: i64) -> Result<Vec<DeliveryView>, StoreError> {
        Ok(sqlx::query_as(&format!(
            "{DELIVERY_SELECT} WHERE ticket_id = ? ORDER BY id"
        ))
        .bind(ticket)
        .fetch_all(self.pool())
        .await?)
    }

    /// The queue in the scope, newest first, at most `limit` rows.
    pub async fn queue_entries(
        &self,
        scope: Scope,
        limit: u32,
    ) -> Result<Vec<DeliveryView>, StoreError> {
        let acct = scope.account().map(|a| a.0);
        Ok(sqlx::query_as(&format!(
            "{DELIVERY_SELECT} WHERE (? IS NULL OR account_id = ?) ORDER BY id DESC LIMIT ?"
        ))
        .bind(acct)
        .bind(acct)
        .bind(limit)
        .fetch_all(self.pool())
        .await?)
    }

    /// Makes a deferred or bounced recipient due now, with a fresh lifetime.
    pub async fn retry_delivery(
        &self,
        id: i64,
        scope: Scope,
        lifetime_ms: i64,
    ) -> Result<DeliveryView, StoreError> {
        let acct = scope.account().map(|a| a.0);
        let status: Option<String> = sqlx::query_scalar(
            "SELECT status FROM outbound_queue WHERE id = ? AND (? IS NULL OR account_id = ?)",
        )
        .bind(id)
        .bind(acct)
        .bind(acct)
        .fetch_optional(self.pool())
        .await?;
        match status.as_deref() {
            None => {
                return Err(StoreError::NotFound(format!(
                    "no queue entry with id {id}; see `postern queue list`"
                )))
            }
            Some("delivered") => {
                return Err(StoreError::Invalid(format!(
                    "queue entry {id} was delivered already; nothing to retry"
                )))
            }
            _ => {}
        }
        let now = now_ms();
        sqlx::query(
            "UPDATE outbound_queue SET status = CASE WHEN status = 'bounced' THEN 'deferred' ELSE status END,
                 next_attempt_at = ?1, expires_at = max(expires_at, ?2), updated_at = ?1
             WHERE id = ?3",
        )
        .bind(now)
        .bind(now + lifetime_ms)
        .bind(id)
        .execute(self.pool())
        .await?;
        let v: DeliveryView = sqlx::query_as(&format!("{DELIVERY_SELECT} WHERE id = ?"))
            .bind(id)
            .fetch_one(self.pool())
            .await?;
        Ok(v)
    }

    /// Takes the due recipients of one message for `lease_ms`: the oldest due message, and
    /// at most `max` of its due recipients. Due means queued or deferred, its time come, and
    /// no live lease (a lease past its time is a dead worker's). One UPDATE, so two workers
    /// never take the same row.
    pub async fn claim_delivery(
        &self,
        owner: &str,
        lease_ms: i64,
        max: u32,
    ) -> Result<Option<ClaimedDelivery>, StoreError> {
        let now = now_ms();
        let rows: Vec<ClaimRow> = sqlx::query_as(
            "UPDATE outbound_queue SET lease_owner = ?1, lease_until = ?2, attempts = attempts + 1, updated_at = ?3
             WHERE id IN (
               SELECT q.id FROM outbound_queue q
               WHERE q.message_id = (
                   SELECT message_id FROM outbound_queue
                   WHERE status IN ('queued', 'deferred') AND next_attempt_at <= ?3
                     AND (lease_until IS NULL OR lease_until <= ?3)
                   ORDER BY next_attempt_at, id LIMIT 1)
                 AND q.status IN ('queued', 'deferred') AND q.next_attempt_at <= ?3
                 AND (q.lease_until IS NULL OR q.lease_until <= ?3)
               ORDER BY q.id LIMIT ?4)
             RETURNING id, message_id, account_id, ticket_id, mail_from, recipient, attempts, expires_at",
        )
        .bind(owner)
        .bind(now + lease_ms)
        .bind(now)
        .bind(max)
        .fetch_all(self.pool())
        .await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let (message_id, account_id, ticket_id, mail_from) =
            (first.1, first.2, first.3, first.4.clone());
        let raw: Option<(Vec<u8>, Option<String>, i64)> = sqlx::query_as(
            "SELECT b.data, b.compression, b.size FROM messages m
             JOIN blobs b ON b.sha256 = m.raw_sha256 WHERE m.id = ?",
        )
        .bind(message_id)
        .fetch_optional(self.pool())
        .await?;
        let raw = raw
            .map(|(data, compression, size)| {
                super::blob_codec::decode(data, compression.as_deref(), size)
            })
            .transpose()?;
        let mut recipients: Vec<ClaimedRecipient> = rows
            .into_iter()
            .map(|r| ClaimedRecipient {
                id: r.0,
                recipient: r.5,
                attempts: r.6,
                expires_at: r.7,
            })
            .collect();
        recipients.sort_by_key(|r| r.id);
        Ok(Some(ClaimedDelivery {
            message_id,
            account_id,
            ticket_id,
            mail_from,
            raw: raw.unwrap_or_default(),
            recipients,
        }))
    }

    /// Records an attempt's outcome, if `owner` still holds the lease. Returns false when
    /// it does not (the lease expired and another worker took the row).
    pub async fn finish_delivery(
        &self,
        owner: &str,
        row: &ClaimedRecipient,
        ticket: i64,
        account: i64,
        outcome: &DeliveryOutcome,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let (status, error, code, next, delivered) = match outcome {
            DeliveryOutcome::Delivered { code } => ("delivered", None, *code, now, Some(now)),
            DeliveryOutcome::Deferred {
                error,
                code,
                retry_at,
            } if *retry_at <= row.expires_at => {
                ("deferred", Some(error.clone()), *code, *retry_at, None)
            }
            DeliveryOutcome::Deferred { error, code, .. } => (
                "bounced",
                Some(format!(
                    "gave up after the queue lifetime; last error: {error}"
                )),
                *code,
                now,
                None,
            ),
            DeliveryOutcome::Bounced { error, code } => {
                ("bounced", Some(error.clone()), *code, now, None)
            }
        };
        let mut tx = self.pool().begin().await?;
        let done = sqlx::query(
            "UPDATE outbound_queue SET status = ?, last_error = ?, last_code = ?, next_attempt_at = ?,
                 delivered_at = COALESCE(?, delivered_at), lease_owner = NULL, lease_until = NULL, updated_at = ?
             WHERE id = ? AND lease_owner = ?",
        )
        .bind(status)
        .bind(&error)
        .bind(code.map(i64::from))
        .bind(next)
        .bind(delivered)
        .bind(now)
        .bind(row.id)
        .bind(owner)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if done && status == "bounced" {
            sqlx::query(
                "INSERT INTO ticket_events (account_id, ticket_id, kind, data, created_at) VALUES (?, ?, 'delivery_failed', ?, ?)",
            )
            .bind(account)
            .bind(ticket)
            .bind(
                serde_json::json!({"queue_id": row.id, "recipient": row.recipient, "error": error, "code": code})
                    .to_string(),
            )
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(done)
    }

    /// Rows due or leased (queued or deferred): the queue's depth.
    pub async fn queue_depth(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM outbound_queue WHERE status IN ('queued', 'deferred')",
        )
        .fetch_one(self.pool())
        .await?)
    }
}

/// A JSON column's text.
fn json<T: Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}
/// `put_blob` (threading_sqlite.rs) inside an sqlx transaction (the outbound queue writes through the pool).
pub(super) async fn put_blob_sqlx(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    sha256: &str,
    data: &[u8],
) -> Result<(), StoreError> {
    let stored = super::blob_codec::encode(data);
    sqlx::query(
        "INSERT INTO blobs (sha256, size, data, compression) VALUES (?, ?, ?, ?)
         ON CONFLICT DO NOTHING",
    )
    .bind(sha256)
    .bind(data.len() as i64)
    .bind(&*stored.data)
    .bind(stored.compression)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Store {
    /// Records a message the brand sent in `ticket` (an agent's reply), with its
    /// Message-ID, so that the customer's answer threads back. The outbound queue builds on it.
    #[allow(clippy::too_many_arguments)]
    pub async fn record_outbound_message(
        &self,
        account: crate::domain::AccountId,
        ticket: TicketId,
        message_id: &str,
        from: &Mailbox,
        to: &[Mailbox],
        subject: &str,
        text: &str,
    ) -> Result<MessageId, StoreError> {
        let mut tx = self.write_tx().await?;
        let owner: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM tickets WHERE id = ? AND account_id = ? AND merged_into IS NULL",
        )
        .bind(ticket.0)
        .bind(account.0)
        .fetch_optional(&mut *tx)
        .await?;
        if owner.is_none() {
            return Err(StoreError::NotFound(format!("no ticket with id {ticket}")));
        }
        let now = now_ms();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO messages (account_id, ticket_id, direction, source, message_id, dedup_key, from_address,
                                   from_name, to_list, subject, received_at, sent_at, text_body, size, thread_reason)
             VALUES (?, ?, 'outbound', 'api', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'agent_reply') RETURNING id",
        )
        .bind(account.0)
        .bind(ticket.0)
        .bind(message_id)
        .bind(format!("mid:{message_id}"))
        .bind(&from.address)
        .bind(&from.name)
        .bind(json(&to))
        .bind(subject)
        .bind(now)
        .bind(now)
        .bind(text)
        .bind(text.len() as i64)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO ticket_participants (ticket_id, email, role) VALUES (?, ?, 'agent') ON CONFLICT DO NOTHING")
            .bind(ticket.0)
            .bind(&from.address)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE tickets SET updated_at = ?1, last_agent_reply_at = ?1 WHERE id = ?2")
            .bind(now)
            .bind(ticket.0)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(MessageId(id))
    }
}
