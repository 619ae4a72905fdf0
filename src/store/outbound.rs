//! Outbound storage: sending domains with their DKIM keys, replies recorded as outbound
//! messages of their ticket, and the durable per-recipient delivery queue with leases.

use super::{now_ms, Store, StoreError};
use crate::domain::{AccountId, Mailbox, MessageId, Scope, TicketId};
use rusqlite::OptionalExtension;
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
            Some((s, p, q)) => (
                Some(s.to_string()),
                Some(p.to_string()),
                Some(q.to_string()),
            ),
            None => (None, None, None),
        };
        let domain = d.domain.to_string();
        let selector = d.selector.to_string();
        let rsa_private_key = d.rsa_private_key.to_string();
        let rsa_public_key = d.rsa_public_key.to_string();
        let now = now_ms();
        self.write(move |conn| {
            let sql = format!(
                "INSERT INTO sending_domains (account_id, domain, selector, rsa_private_key,
                     rsa_public_key, ed25519_selector, ed25519_private_key, ed25519_public_key,
                     created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) RETURNING {DOMAIN_COLUMNS}"
            );
            let row = conn.query_row(
                &sql,
                rusqlite::params![
                    account.0,
                    &domain,
                    &selector,
                    &rsa_private_key,
                    &rsa_public_key,
                    &ed_sel,
                    &ed_priv,
                    &ed_pub,
                    now
                ],
                domain_row,
            );
            match row {
                Ok(r) => Ok(r.into()),
                Err(e) if super::is_unique_violation(&e) => Err(StoreError::Conflict(format!(
                    "{domain} is already a sending domain of account {account}; see `postern domain list`"
                ))),
                Err(e) => Err(e.into()),
            }
        })
        .await
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
        let report = report.to_string();
        let now = now_ms();
        self.write(move |conn| {
            conn.execute(
                "UPDATE sending_domains SET verified = ?1, last_check = ?2, checked_at = ?3
                 WHERE id = ?4",
                (verified, &report, now, id),
            )?;
            Ok(())
        })
        .await
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
        let rows = ReplyRows::of(r);
        let id = self.write(move |conn| rows.insert(conn)).await?;
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
        let now = now_ms();
        self.write(move |conn| {
            let status: Option<String> = conn
                .query_row(
                    "SELECT status FROM outbound_queue
                     WHERE id = ?1 AND (?2 IS NULL OR account_id = ?2)",
                    (id, acct),
                    |r| r.get(0),
                )
                .optional()?;
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
            conn.execute(
                "UPDATE outbound_queue
                 SET status = CASE WHEN status = 'bounced' THEN 'deferred' ELSE status END,
                     next_attempt_at = ?1, expires_at = max(expires_at, ?2), updated_at = ?1
                 WHERE id = ?3",
                (now, now + lifetime_ms, id),
            )?;
            Ok(())
        })
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
        let owner = owner.to_string();
        let rows: Vec<ClaimRow> = self
            .write(move |conn| {
                let mut claim = conn.prepare_cached(
                    "UPDATE outbound_queue SET lease_owner = ?1, lease_until = ?2,
                         attempts = attempts + 1, updated_at = ?3
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
                     RETURNING id, message_id, account_id, ticket_id, mail_from, recipient,
                               attempts, expires_at",
                )?;
                let rows = claim
                    .query_map((&owner, now + lease_ms, now, max), |r| {
                        Ok((
                            r.get(0)?,
                            r.get(1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                            r.get(5)?,
                            r.get(6)?,
                            r.get(7)?,
                        ))
                    })?
                    .collect::<Result<Vec<ClaimRow>, _>>()?;
                Ok(rows)
            })
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
        let owner = owner.to_string();
        let (queue_id, recipient) = (row.id, row.recipient.clone());
        let code = code.map(i64::from);
        self.write(move |conn| {
            let done = conn.execute(
                "UPDATE outbound_queue SET status = ?1, last_error = ?2, last_code = ?3,
                     next_attempt_at = ?4, delivered_at = COALESCE(?5, delivered_at),
                     lease_owner = NULL, lease_until = NULL, updated_at = ?6
                 WHERE id = ?7 AND lease_owner = ?8",
                rusqlite::params![status, &error, code, next, delivered, now, queue_id, &owner],
            )? == 1;
            if done && status == "bounced" {
                conn.execute(
                    "INSERT INTO ticket_events (account_id, ticket_id, kind, data, created_at)
                     VALUES (?1, ?2, 'delivery_failed', ?3, ?4)",
                    (
                        account,
                        ticket,
                        serde_json::json!({"queue_id": queue_id, "recipient": recipient,
                            "error": error, "code": code})
                        .to_string(),
                        now,
                    ),
                )?;
            }
            Ok(done)
        })
        .await
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
/// The `DOMAIN_COLUMNS` of a row read by the writer.
fn domain_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DomainRow> {
    Ok(DomainRow {
        id: r.get(0)?,
        account_id: r.get(1)?,
        domain: r.get(2)?,
        selector: r.get(3)?,
        ed25519_selector: r.get(4)?,
        rsa_public_key: r.get(5)?,
        ed25519_public_key: r.get(6)?,
        verified: r.get(7)?,
        last_check: r.get(8)?,
        checked_at: r.get(9)?,
        created_at: r.get(10)?,
    })
}

/// Content-addressed bytes as they are to be stored, encoded before the write (so that
/// compression does not run on the writer thread, nor again if the write is run again).
struct BlobRow {
    sha256: String,
    size: i64,
    data: Vec<u8>,
    compression: Option<&'static str>,
}

impl BlobRow {
    fn of(data: &[u8]) -> Self {
        let stored = super::blob_codec::encode(data);
        Self {
            sha256: super::blob_codec::key(data),
            size: data.len() as i64,
            data: stored.data.into_owned(),
            compression: stored.compression,
        }
    }

    /// Stored once whatever the number of messages using it.
    fn insert(&self, conn: &rusqlite::Connection) -> Result<(), StoreError> {
        super::blob_codec::insert(conn, &self.sha256, self.size, &self.data, self.compression)
    }
}

struct AttachmentRow {
    filename: String,
    content_type: String,
    blob: BlobRow,
}

/// A [`NewOutboundReply`] as the writer stores it: owned, since the write may run again.
struct ReplyRows {
    account: i64,
    ticket: i64,
    message_id: String,
    in_reply_to: Option<String>,
    references: String,
    from_address: String,
    from_name: Option<String>,
    to: String,
    cc: String,
    /// Lowercased addresses of the Cc'd, participants of the ticket.
    cc_addresses: Vec<String>,
    subject: String,
    text: String,
    html: Option<String>,
    /// The signed message, when it is queued.
    raw: Option<BlobRow>,
    size: i64,
    author_user_id: Option<i64>,
    author_rule_id: Option<i64>,
    automated: bool,
    flags: String,
    attachments: Vec<AttachmentRow>,
    /// To and Cc, lowercased, each once.
    recipients: Vec<String>,
    queue: QueueOrNot,
}

/// [`Disposition`] without the signed bytes (those are in [`ReplyRows::raw`]).
enum QueueOrNot {
    Queue { mail_from: String, expires_at: i64 },
    NotSent { reason: String },
}

impl ReplyRows {
    fn of(r: &NewOutboundReply<'_>) -> Self {
        let mut flags: Vec<&str> = Vec::new();
        if r.automated {
            flags.push("automated");
        }
        if matches!(r.disposition, Disposition::NotSent { .. }) {
            flags.push("not_sent");
        }
        let mut recipients: Vec<String> = Vec::new();
        for m in r.to.iter().chain(r.cc.iter()) {
            let a = m.address.to_ascii_lowercase();
            if !recipients.contains(&a) {
                recipients.push(a);
            }
        }
        let (raw, size, queue) = match &r.disposition {
            Disposition::Queue {
                raw,
                mail_from,
                expires_at,
            } => (
                Some(BlobRow::of(raw)),
                raw.len(),
                QueueOrNot::Queue {
                    mail_from: mail_from.to_string(),
                    expires_at: *expires_at,
                },
            ),
            Disposition::NotSent { reason } => (
                None,
                r.text.len(),
                QueueOrNot::NotSent {
                    reason: reason.to_string(),
                },
            ),
        };
        Self {
            account: r.account.0,
            ticket: r.ticket.0,
            message_id: r.message_id.to_string(),
            in_reply_to: r.in_reply_to.map(str::to_string),
            references: json(r.references),
            from_address: r.from.address.clone(),
            from_name: r.from.name.clone(),
            to: json(r.to),
            cc: json(r.cc),
            cc_addresses: r
                .cc
                .iter()
                .map(|m| m.address.to_ascii_lowercase())
                .collect(),
            subject: r.subject.to_string(),
            text: r.text.to_string(),
            html: r.html.map(str::to_string),
            raw,
            size: size as i64,
            author_user_id: r.author_user_id,
            author_rule_id: r.author_rule_id,
            automated: r.automated,
            flags: json(&flags),
            attachments: r
                .attachments
                .iter()
                .map(|a| AttachmentRow {
                    filename: a.filename.to_string(),
                    content_type: a.content_type.to_string(),
                    blob: BlobRow::of(a.data),
                })
                .collect(),
            recipients,
            queue,
        }
    }

    /// Stores the reply (message, attachments, participants, queue rows, event) and returns
    /// the message's id; NotFound when the ticket is not the account's or was merged.
    fn insert(&self, conn: &rusqlite::Connection) -> Result<i64, StoreError> {
        let owner: Option<i64> = conn
            .query_row(
                "SELECT id FROM tickets WHERE id = ?1 AND account_id = ?2 AND merged_into IS NULL",
                (self.ticket, self.account),
                |r| r.get(0),
            )
            .optional()?;
        if owner.is_none() {
            return Err(StoreError::NotFound(format!(
                "no ticket with id {}",
                self.ticket
            )));
        }
        let now = now_ms();
        if let Some(raw) = &self.raw {
            raw.insert(conn)?;
        }
        let id: i64 = conn.query_row(
            "INSERT INTO messages (account_id, ticket_id, direction, source, message_id, dedup_key,
                                   in_reply_to, references_list, from_address, from_name, to_list,
                                   cc_list, subject, received_at, sent_at, text_body, html_body,
                                   raw_sha256, size, thread_reason, author_user_id, author_rule_id,
                                   flags)
             VALUES (?1, ?2, 'outbound', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13, ?14,
                     ?15, ?16, ?17, ?18, ?19, ?20, ?21) RETURNING id",
            rusqlite::params![
                self.account,
                self.ticket,
                if self.automated { "rule" } else { "api" },
                &self.message_id,
                format!("mid:{}", self.message_id),
                &self.in_reply_to,
                &self.references,
                &self.from_address,
                &self.from_name,
                &self.to,
                &self.cc,
                &self.subject,
                now,
                &self.text,
                &self.html,
                self.raw.as_ref().map(|b| &b.sha256),
                self.size,
                if self.automated {
                    "auto_reply"
                } else {
                    "agent_reply"
                },
                self.author_user_id,
                self.author_rule_id,
                &self.flags,
            ],
            |r| r.get(0),
        )?;
        for a in &self.attachments {
            a.blob.insert(conn)?;
            conn.prepare_cached(
                "INSERT INTO attachments (message_id, filename, content_type, size, disposition,
                                          blob_sha256)
                 VALUES (?1, ?2, ?3, ?4, 'attachment', ?5)",
            )?
            .execute((
                id,
                &a.filename,
                &a.content_type,
                a.blob.size,
                &a.blob.sha256,
            ))?;
        }
        let mut participant = conn.prepare_cached(
            "INSERT INTO ticket_participants (ticket_id, email, role) VALUES (?1, ?2, ?3)
             ON CONFLICT DO NOTHING",
        )?;
        participant.execute((self.ticket, self.from_address.to_ascii_lowercase(), "brand"))?;
        for cc in &self.cc_addresses {
            participant.execute((self.ticket, cc, "cc"))?;
        }
        // An automated reply is not an agent's: "no agent has answered" stays true for the
        // scheduler (time since the last agent reply, who wrote last, the episode).
        conn.execute(
            "UPDATE tickets SET updated_at = ?1,
                last_agent_reply_at = CASE WHEN ?2 THEN last_agent_reply_at ELSE ?1 END
             WHERE id = ?3",
            (now, self.automated, self.ticket),
        )?;
        let (kind, data) = match &self.queue {
            QueueOrNot::Queue {
                mail_from,
                expires_at,
            } => {
                let mut queue = conn.prepare_cached(
                    "INSERT INTO outbound_queue (account_id, ticket_id, message_id, mail_from,
                         recipient, status, next_attempt_at, created_at, expires_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6, ?6, ?7, ?6)",
                )?;
                for rcpt in &self.recipients {
                    queue.execute(rusqlite::params![
                        self.account,
                        self.ticket,
                        id,
                        mail_from,
                        rcpt,
                        now,
                        expires_at
                    ])?;
                }
                (
                    "reply_queued",
                    serde_json::json!({"message": id, "message_id": self.message_id,
                        "recipients": self.recipients, "automated": self.automated,
                        "rule": self.author_rule_id}),
                )
            }
            QueueOrNot::NotSent { reason } => (
                "reply_not_sent",
                serde_json::json!({"message": id, "message_id": self.message_id,
                    "recipients": self.recipients, "automated": self.automated,
                    "rule": self.author_rule_id, "reason": reason}),
            ),
        };
        conn.execute(
            "INSERT INTO ticket_events (account_id, ticket_id, kind, data, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            (self.account, self.ticket, kind, data.to_string(), now),
        )?;
        Ok(id)
    }
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
        let message_id = message_id.to_string();
        let from = from.clone();
        let to = json(&to);
        let subject = subject.to_string();
        let text = text.to_string();
        let now = now_ms();
        let id = self
            .write(move |conn| {
                let owner: Option<i64> = conn
                    .query_row(
                        "SELECT id FROM tickets
                         WHERE id = ?1 AND account_id = ?2 AND merged_into IS NULL",
                        (ticket.0, account.0),
                        |r| r.get(0),
                    )
                    .optional()?;
                if owner.is_none() {
                    return Err(StoreError::NotFound(format!("no ticket with id {ticket}")));
                }
                let id: i64 = conn.query_row(
                    "INSERT INTO messages (account_id, ticket_id, direction, source, message_id,
                                           dedup_key, from_address, from_name, to_list, subject,
                                           received_at, sent_at, text_body, size, thread_reason)
                     VALUES (?1, ?2, 'outbound', 'api', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10, ?11,
                             'agent_reply') RETURNING id",
                    rusqlite::params![
                        account.0,
                        ticket.0,
                        &message_id,
                        format!("mid:{message_id}"),
                        &from.address,
                        &from.name,
                        &to,
                        &subject,
                        now,
                        &text,
                        text.len() as i64
                    ],
                    |r| r.get(0),
                )?;
                conn.execute(
                    "INSERT INTO ticket_participants (ticket_id, email, role)
                     VALUES (?1, ?2, 'agent') ON CONFLICT DO NOTHING",
                    (ticket.0, &from.address),
                )?;
                conn.execute(
                    "UPDATE tickets SET updated_at = ?1, last_agent_reply_at = ?1 WHERE id = ?2",
                    (now, ticket.0),
                )?;
                Ok(id)
            })
            .await?;
        Ok(MessageId(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_fixtures::count;

    /// A store with one account and two tickets, the second merged into the first.
    async fn store_with_tickets() -> (tempfile::TempDir, Store, AccountId, TicketId, TicketId) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("o.db"), 1).await.unwrap();
        let (account, open, merged) = store
            .write(|conn| {
                let account: i64 = conn.query_row(
                    "INSERT INTO accounts (name, from_address, created_at)
                     VALUES ('a', 'support@a.test', 0) RETURNING id",
                    [],
                    |r| r.get(0),
                )?;
                let mut ticket = conn.prepare(
                    "INSERT INTO tickets (account_id, subject, normalized_subject, created_at,
                                          updated_at, merged_into)
                     VALUES (?1, 'Order', 'order', 1, 1, ?2) RETURNING id",
                )?;
                let open: i64 = ticket.query_row((account, None::<i64>), |r| r.get(0))?;
                let merged: i64 = ticket.query_row((account, open), |r| r.get(0))?;
                Ok((account, open, merged))
            })
            .await
            .unwrap();
        (
            dir,
            store,
            AccountId(account),
            TicketId(open),
            TicketId(merged),
        )
    }

    fn mailbox(address: &str) -> Mailbox {
        Mailbox {
            name: None,
            address: address.into(),
        }
    }

    async fn event_kinds(store: &Store, ticket: TicketId) -> Vec<String> {
        sqlx::query_scalar("SELECT kind FROM ticket_events WHERE ticket_id = ? ORDER BY id")
            .bind(ticket.0)
            .fetch_all(store.pool())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_sending_domain_is_added_once() {
        let (_dir, store, account, _, _) = store_with_tickets().await;
        let d = NewSendingDomain {
            domain: "mail.a.test",
            selector: "rsa1",
            rsa_private_key: "PRIV",
            rsa_public_key: "PUB",
            ed25519: Some(("ed1", "EDPRIV", "EDPUB")),
        };
        let view = store.add_sending_domain(account, &d).await.unwrap();
        assert_eq!(view.account_id, account.0);
        assert_eq!(
            (
                view.domain.as_str(),
                view.selector.as_str(),
                view.rsa_public_key.as_str()
            ),
            ("mail.a.test", "rsa1", "PUB")
        );
        assert_eq!(view.ed25519_selector.as_deref(), Some("ed1"));
        assert_eq!(view.ed25519_public_key.as_deref(), Some("EDPUB"));
        assert!(!view.verified && view.last_check.is_none() && view.checked_at.is_none());
        let err = store.add_sending_domain(account, &d).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::Conflict(m) if m == &format!(
                "mail.a.test is already a sending domain of account {account}; see `postern domain list`"
            )),
            "{err}"
        );
        store
            .set_domain_check(view.id, true, &serde_json::json!({"rsa": "found"}))
            .await
            .unwrap();
        let checked = store.sending_domain_view(account, view.id).await.unwrap();
        assert!(checked.verified);
        assert_eq!(
            checked.last_check,
            Some(serde_json::json!({"rsa": "found"}))
        );
        assert_eq!(
            store.sending_domains(Scope::Operator).await.unwrap().len(),
            1
        );
    }

    #[tokio::test]
    async fn a_reply_in_a_merged_ticket_is_refused_and_writes_nothing() {
        let (_dir, store, account, _, merged) = store_with_tickets().await;
        let from = mailbox("support@a.test");
        let to = [mailbox("customer@c.test")];
        let reply = NewOutboundReply {
            account,
            ticket: merged,
            message_id: "r1@a.test",
            in_reply_to: None,
            references: &[],
            from: &from,
            to: &to,
            cc: &[],
            subject: "Re: Order",
            text: "On its way",
            html: None,
            attachments: vec![NewOutboundAttachment {
                filename: "a.txt",
                content_type: "text/plain",
                data: b"attached",
            }],
            author_user_id: None,
            author_rule_id: None,
            automated: false,
            disposition: Disposition::Queue {
                raw: b"signed bytes",
                mail_from: "bounce@a.test",
                expires_at: i64::MAX,
            },
        };
        let err = store.record_outbound_reply(&reply).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::NotFound(m) if m == &format!("no ticket with id {merged}")),
            "{err}"
        );
        let err = store
            .record_outbound_message(account, merged, "m1@a.test", &from, &to, "Re", "hi")
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err}");
        for table in [
            "messages",
            "blobs",
            "attachments",
            "outbound_queue",
            "ticket_events",
        ] {
            assert_eq!(count(&store, table).await, 0, "{table}");
        }
    }

    #[tokio::test]
    async fn a_queued_reply_is_leased_to_one_worker_and_a_bounce_can_be_retried() {
        let (_dir, store, account, ticket, _) = store_with_tickets().await;
        let from = mailbox("Support@A.test");
        let to = [mailbox("One@c.test"), mailbox("two@c.test")];
        let cc = [mailbox("one@c.test"), mailbox("Three@c.test")];
        let raw = "Subject: Re: Order\r\n\r\n".to_string() + &"On its way. ".repeat(100);
        let reply = NewOutboundReply {
            account,
            ticket,
            message_id: "r1@a.test",
            in_reply_to: Some("q@c.test"),
            references: &["q@c.test".to_string()],
            from: &from,
            to: &to,
            cc: &cc,
            subject: "Re: Order",
            text: "On its way",
            html: None,
            attachments: vec![],
            author_user_id: None,
            author_rule_id: None,
            automated: false,
            disposition: Disposition::Queue {
                raw: raw.as_bytes(),
                mail_from: "bounce@a.test",
                expires_at: i64::MAX,
            },
        };
        let (message, queued) = store.record_outbound_reply(&reply).await.unwrap();
        let recipients: Vec<&str> = queued.iter().map(|d| d.recipient.as_str()).collect();
        assert_eq!(recipients, ["one@c.test", "two@c.test", "three@c.test"]);
        assert_eq!(event_kinds(&store, ticket).await, ["reply_queued"]);

        let claim = store
            .claim_delivery("w1", 60_000, 2)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(claim.message_id, message.0);
        assert_eq!(
            claim.raw,
            raw.as_bytes(),
            "the signed bytes come back whole"
        );
        assert_eq!(claim.recipients.len(), 2);
        assert!(claim.recipients.iter().all(|r| r.attempts == 1));
        let rest = store
            .claim_delivery("w2", 60_000, 5)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rest.recipients.len(), 1);
        assert_eq!(rest.recipients[0].recipient, "three@c.test");
        assert!(store
            .claim_delivery("w3", 60_000, 5)
            .await
            .unwrap()
            .is_none());

        let first = &claim.recipients[0];
        let bounce = DeliveryOutcome::Bounced {
            error: "550 no such user".into(),
            code: Some(550),
        };
        assert!(!store
            .finish_delivery("w2", first, ticket.0, account.0, &bounce)
            .await
            .unwrap());
        assert!(store
            .finish_delivery("w1", first, ticket.0, account.0, &bounce)
            .await
            .unwrap());
        let delivered = &claim.recipients[1];
        assert!(store
            .finish_delivery(
                "w1",
                delivered,
                ticket.0,
                account.0,
                &DeliveryOutcome::Delivered { code: Some(250) }
            )
            .await
            .unwrap());
        assert_eq!(
            event_kinds(&store, ticket).await,
            ["reply_queued", "delivery_failed"]
        );

        let retried = store
            .retry_delivery(first.id, Scope::Account(account), 60_000)
            .await
            .unwrap();
        assert_eq!((retried.status.as_str(), retried.attempts), ("deferred", 1));
        let err = store
            .retry_delivery(delivered.id, Scope::Operator, 60_000)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Invalid(m) if m.contains("delivered already")),
            "{err}"
        );
        let err = store
            .retry_delivery(first.id, Scope::Account(AccountId(account.0 + 1)), 60_000)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::NotFound(m) if m == &format!(
                "no queue entry with id {}; see `postern queue list`", first.id
            )),
            "{err}"
        );
        let again = store
            .claim_delivery("w4", 60_000, 5)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again.recipients.len(), 1);
        assert_eq!(
            (again.recipients[0].id, again.recipients[0].attempts),
            (first.id, 2)
        );
    }
}
