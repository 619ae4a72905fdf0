//! Filing one inbound message: deduplicate, classify-dependent routing, find its ticket
//! (DESIGN.md's threading order), store it, and merge tickets that turn out to be one
//! conversation. Runs inside the writer's transaction, so messages are threaded one at a
//! time in arrival order even when many sessions deliver at once.

use super::intake::{IntakeOutcome, Mailbox, MessageKind, NewMessage, NewQuarantine};
use super::{now_ms, StoreError};
use crate::domain::{normalize_subject, verify_reply_token, MessageId, TicketId};
use sha2::{Digest, Sha256};
use sqlx::SqliteConnection;

/// What threading needs from the settings.
#[derive(Clone)]
pub struct ThreadingConfig {
    /// Key of the MAC in our reply tokens.
    pub secret: Vec<u8>,
    /// Domain of our forwarding addresses and of the Message-IDs we write.
    pub inbound_domain: String,
    /// How recent a ticket must be for the subject fallback, in milliseconds.
    pub subject_window_ms: i64,
}

/// Why a message landed in its ticket (`thread_reason`, shown in `ticket show`).
mod reason {
    pub const REPLY_TOKEN: &str = "reply_token";
    pub const IN_REPLY_TO: &str = "in_reply_to";
    pub const REFERENCES: &str = "references";
    pub const SUBJECT: &str = "subject";
    pub const NEW_TICKET: &str = "new_ticket";
    pub const UNVERIFIED_REPLY: &str = "unverified_reply";
    pub const SPOOF_SUSPECTED: &str = "spoof_suspected";
    pub const PARENT_OF_EXISTING: &str = "parent_of_existing";
    pub const BOUNCE: &str = "bounce_of_our_message";
}

type Conn = SqliteConnection;

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

fn domain_of(addr: &str) -> &str {
    addr.rsplit_once('@').map_or("", |(_, d)| d)
}

/// Is `email` one of the brand's own addresses or one of its agents?
async fn is_brand(conn: &mut Conn, account: i64, email: &str) -> Result<bool, StoreError> {
    let hit: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM support_addresses WHERE account_id = ?1 AND (address = ?2 OR from_address = ?2)
         UNION ALL SELECT 1 FROM accounts WHERE id = ?1 AND lower(from_address) = ?2
         UNION ALL SELECT 1 FROM users WHERE account_id = ?1 AND email = ?2
         LIMIT 1",
    )
    .bind(account)
    .bind(email)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(hit.is_some())
}

async fn is_participant(conn: &mut Conn, ticket: i64, email: &str) -> Result<bool, StoreError> {
    let hit: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM ticket_participants WHERE ticket_id = ? AND email = ?")
            .bind(ticket)
            .bind(email)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(hit.is_some())
}

async fn participant_domain(
    conn: &mut Conn,
    ticket: i64,
    domain: &str,
) -> Result<bool, StoreError> {
    let hit: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM ticket_participants WHERE ticket_id = ? AND email LIKE '%@' || ? LIMIT 1",
    )
    .bind(ticket)
    .bind(domain)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(hit.is_some())
}

/// A live ticket of the account: follows `merged_into` (bounded, against cycles).
async fn live_ticket(
    conn: &mut Conn,
    account: i64,
    ticket: i64,
) -> Result<Option<i64>, StoreError> {
    let mut id = ticket;
    for _ in 0..16 {
        let row: Option<(i64, Option<i64>)> =
            sqlx::query_as("SELECT id, merged_into FROM tickets WHERE id = ? AND account_id = ?")
                .bind(id)
                .bind(account)
                .fetch_optional(&mut *conn)
                .await?;
        match row {
            None => return Ok(None),
            Some((_, None)) => return Ok(Some(id)),
            Some((_, Some(next))) => id = next,
        }
    }
    Ok(None)
}

/// The ticket holding the message with this Message-ID; with `ours_only`, only a message
/// we sent (what a bounce reports on).
async fn ticket_of_message_id(
    conn: &mut Conn,
    account: i64,
    message_id: &str,
    ours_only: bool,
) -> Result<Option<i64>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT ticket_id FROM messages WHERE account_id = ? AND message_id = ?
           AND (NOT ? OR direction = 'outbound')
         ORDER BY id LIMIT 1",
    )
    .bind(account)
    .bind(message_id)
    .bind(ours_only)
    .fetch_optional(&mut *conn)
    .await?)
}

/// Steps 1 and 2 of the threading order: our reply tokens, then In-Reply-To, then
/// References newest first.
async fn header_match(
    conn: &mut Conn,
    cfg: &ThreadingConfig,
    m: &NewMessage,
) -> Result<Option<(i64, &'static str)>, StoreError> {
    let account = m.account_id.0;
    let newest_first: Vec<&String> = m
        .in_reply_to
        .iter()
        .chain(m.references.iter().rev())
        .collect();
    for id in &newest_first {
        if let Some(t) = verify_reply_token(&cfg.secret, id, &cfg.inbound_domain) {
            if let Some(t) = live_ticket(conn, account, t).await? {
                return Ok(Some((t, reason::REPLY_TOKEN)));
            }
        }
    }
    if let Some(irt) = &m.in_reply_to {
        if let Some(t) = ticket_of_message_id(conn, account, irt, false).await? {
            return Ok(Some((t, reason::IN_REPLY_TO)));
        }
    }
    for r in m.references.iter().rev() {
        if let Some(t) = ticket_of_message_id(conn, account, r, false).await? {
            return Ok(Some((t, reason::REFERENCES)));
        }
    }
    Ok(None)
}

/// Step 3: may `sender` join `ticket`?
async fn may_join(
    conn: &mut Conn,
    m: &NewMessage,
    ticket: i64,
    sender: &str,
) -> Result<bool, StoreError> {
    if is_participant(conn, ticket, sender).await? || is_brand(conn, m.account_id.0, sender).await?
    {
        return Ok(true);
    }
    match &m.dmarc_pass_domain {
        Some(d) => participant_domain(conn, ticket, &d.to_ascii_lowercase()).await,
        None => Ok(false),
    }
}

async fn customer_id(
    conn: &mut Conn,
    account: i64,
    who: &Mailbox,
    now: i64,
) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO customers (account_id, email, name, created_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (account_id, email) DO UPDATE SET name = COALESCE(customers.name, excluded.name)
         RETURNING id",
    )
    .bind(account)
    .bind(&who.address)
    .bind(&who.name)
    .bind(now)
    .fetch_one(&mut *conn)
    .await?)
}

/// Step 4: same customer, same normalised subject, updated within the window.
async fn subject_match(
    conn: &mut Conn,
    cfg: &ThreadingConfig,
    m: &NewMessage,
    customer: &str,
) -> Result<Option<i64>, StoreError> {
    let normalized = normalize_subject(&m.subject);
    if normalized.is_empty() {
        return Ok(None);
    }
    Ok(sqlx::query_scalar(
        "SELECT t.id FROM tickets t JOIN customers c ON c.id = t.customer_id
         WHERE t.account_id = ? AND c.email = ? AND t.normalized_subject = ?
           AND t.merged_into IS NULL AND t.updated_at >= ?
         ORDER BY t.updated_at DESC LIMIT 1",
    )
    .bind(m.account_id.0)
    .bind(customer)
    .bind(normalized)
    .bind(m.received_at - cfg.subject_window_ms)
    .fetch_optional(&mut *conn)
    .await?)
}

/// Tickets holding messages that referred to `message_id` before it arrived.
async fn tickets_waiting_for(
    conn: &mut Conn,
    account: i64,
    message_id: &str,
) -> Result<Vec<i64>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT DISTINCT m.ticket_id FROM message_references r JOIN messages m ON m.id = r.message_id
         WHERE r.account_id = ? AND r.referenced = ? ORDER BY m.ticket_id",
    )
    .bind(account)
    .bind(message_id)
    .fetch_all(&mut *conn)
    .await?)
}

async fn ticket_customer(conn: &mut Conn, ticket: i64) -> Result<Option<String>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT c.email FROM tickets t JOIN customers c ON c.id = t.customer_id WHERE t.id = ?",
    )
    .bind(ticket)
    .fetch_optional(&mut *conn)
    .await?)
}

/// May the conversation in `other` be merged with the one `m` belongs to? Only when the
/// people match: its customer is a participant of `m`, or `m`'s sender is one of `other`'s.
async fn may_merge(
    conn: &mut Conn,
    m: &NewMessage,
    sender: &str,
    other: i64,
) -> Result<bool, StoreError> {
    if is_participant(conn, other, sender).await? || is_brand(conn, m.account_id.0, sender).await? {
        return Ok(true);
    }
    let Some(customer) = ticket_customer(conn, other).await? else {
        return Ok(false);
    };
    Ok(customer == sender
        || m.to
            .iter()
            .chain(m.cc.iter())
            .any(|p| p.address == customer)
        || is_brand(conn, m.account_id.0, &customer).await?)
}

/// Moves everything of `loser` into `winner` and records the merge on both.
async fn merge_tickets(
    conn: &mut Conn,
    account: i64,
    winner: i64,
    loser: i64,
    why: &str,
) -> Result<(), StoreError> {
    let now = now_ms();
    sqlx::query("UPDATE messages SET ticket_id = ? WHERE ticket_id = ? AND account_id = ?")
        .bind(winner)
        .bind(loser)
        .bind(account)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT OR IGNORE INTO ticket_participants (ticket_id, email, role)
         SELECT ?, email, role FROM ticket_participants WHERE ticket_id = ?",
    )
    .bind(winner)
    .bind(loser)
    .execute(&mut *conn)
    .await?;
    sqlx::query("INSERT OR IGNORE INTO ticket_tags (ticket_id, tag) SELECT ?, tag FROM ticket_tags WHERE ticket_id = ?")
        .bind(winner)
        .bind(loser)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "UPDATE tickets SET
           created_at = min(created_at, (SELECT created_at FROM tickets WHERE id = ?2)),
           updated_at = max(updated_at, (SELECT updated_at FROM tickets WHERE id = ?2)),
           last_customer_message_at = max(COALESCE(last_customer_message_at, 0),
               COALESCE((SELECT last_customer_message_at FROM tickets WHERE id = ?2), 0))
         WHERE id = ?1",
    )
    .bind(winner)
    .bind(loser)
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE tickets SET merged_into = ?, status = 'closed', closed_at = ?, updated_at = ? WHERE id = ?")
        .bind(winner)
        .bind(now)
        .bind(now)
        .bind(loser)
        .execute(&mut *conn)
        .await?;
    for (ticket, kind, data) in [
        (
            winner,
            "merged",
            serde_json::json!({"from_ticket": loser, "reason": why}),
        ),
        (
            loser,
            "merged_into",
            serde_json::json!({"into_ticket": winner, "reason": why}),
        ),
    ] {
        sqlx::query("INSERT INTO ticket_events (account_id, ticket_id, kind, data, created_at) VALUES (?, ?, ?, ?, ?)")
            .bind(account)
            .bind(ticket)
            .bind(kind)
            .bind(data.to_string())
            .bind(now)
            .execute(&mut *conn)
            .await?;
    }
    tracing::info!(winner, loser, why, "tickets merged");
    Ok(())
}

async fn add_participant(
    conn: &mut Conn,
    ticket: i64,
    email: &str,
    role: &str,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO ticket_participants (ticket_id, email, role) VALUES (?, ?, ?) ON CONFLICT DO NOTHING")
        .bind(ticket)
        .bind(email)
        .bind(role)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Where the message goes, and why. `None` ticket means a new one.
struct Placement {
    ticket: Option<i64>,
    reason: &'static str,
    flag: Option<&'static str>,
    /// Tickets of earlier-arrived replies to merge in afterwards.
    orphans: Vec<i64>,
}

async fn place(
    conn: &mut Conn,
    cfg: &ThreadingConfig,
    m: &NewMessage,
    sender: &str,
    customer: &str,
) -> Result<Placement, StoreError> {
    let account = m.account_id.0;
    // A suspected spoof never joins an existing conversation.
    if m.spoof_suspected {
        return Ok(Placement {
            ticket: None,
            reason: reason::SPOOF_SUSPECTED,
            flag: Some("spoof_suspected"),
            orphans: vec![],
        });
    }
    let mut orphans = Vec::new();
    if let Some(id) = &m.message_id {
        for t in tickets_waiting_for(conn, account, id).await? {
            if may_merge(conn, m, sender, t).await? {
                orphans.push(t);
            }
        }
    }
    if let Some((ticket, why)) = header_match(conn, cfg, m).await? {
        if may_join(conn, m, ticket, sender).await? {
            return Ok(Placement {
                ticket: Some(ticket),
                reason: why,
                flag: None,
                orphans,
            });
        }
        tracing::warn!(
            ticket,
            sender,
            "reply from a non-participant: opening a new ticket"
        );
        return Ok(Placement {
            ticket: None,
            reason: reason::UNVERIFIED_REPLY,
            flag: Some("unverified_reply"),
            orphans: vec![],
        });
    }
    if let Some(first) = orphans.first().copied() {
        return Ok(Placement {
            ticket: Some(first),
            reason: reason::PARENT_OF_EXISTING,
            flag: None,
            orphans,
        });
    }
    if let Some(ticket) = subject_match(conn, cfg, m, customer).await? {
        return Ok(Placement {
            ticket: Some(ticket),
            reason: reason::SUBJECT,
            flag: None,
            orphans,
        });
    }
    Ok(Placement {
        ticket: None,
        reason: reason::NEW_TICKET,
        flag: None,
        orphans,
    })
}

/// Keeps the message whole in quarantine: `held` for an operator to look at, `discarded`
/// when it is only kept so that nothing a sender gave us is lost (our own mail come back...).
async fn quarantine_message(
    conn: &mut Conn,
    m: &NewMessage,
    reason: &str,
    detail: String,
    status: &str,
) -> Result<IntakeOutcome, StoreError> {
    let q = NewQuarantine {
        account_id: Some(m.account_id),
        reason: reason.to_string(),
        detail: Some(detail),
        raw: m.raw.clone(),
        raw_sha256: m.raw_sha256.clone(),
        envelope_json: Some(m.envelope_json.clone()),
        source: m.source,
        source_position: None,
        received_at: m.received_at,
    };
    store_quarantine(conn, &q, status).await
}

/// Stores a quarantine entry, once: a sender retrying the same bytes finds the first one.
pub(super) async fn store_quarantine(
    conn: &mut Conn,
    q: &NewQuarantine,
    status: &str,
) -> Result<IntakeOutcome, StoreError> {
    if let Some(id) = sqlx::query_scalar::<_, i64>(
        "SELECT id FROM quarantine WHERE account_id IS ? AND raw_sha256 = ? AND source = ?",
    )
    .bind(q.account_id.map(|a| a.0))
    .bind(&q.raw_sha256)
    .bind(q.source)
    .fetch_optional(&mut *conn)
    .await?
    {
        return Ok(IntakeOutcome::Quarantined { id });
    }
    put_blob(conn, &q.raw_sha256, &q.raw).await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO quarantine (account_id, reason, detail, raw_sha256, size, envelope, source,
                                 source_position, status, received_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(q.account_id.map(|a| a.0))
    .bind(&q.reason)
    .bind(&q.detail)
    .bind(&q.raw_sha256)
    .bind(q.raw.len() as i64)
    .bind(&q.envelope_json)
    .bind(q.source)
    .bind(&q.source_position)
    .bind(status)
    .bind(q.received_at)
    .fetch_one(&mut *conn)
    .await?;
    Ok(IntakeOutcome::Quarantined { id })
}

/// The same Message-ID from the same sender is the same message. From someone else it is
/// not: a stranger must not be able to squat a Message-ID and have the real one dropped.
async fn duplicate_of(
    conn: &mut Conn,
    m: &NewMessage,
) -> Result<Option<(String, Option<IntakeOutcome>)>, StoreError> {
    let existing: Option<(i64, i64, Option<String>)> = sqlx::query_as(
        "SELECT id, ticket_id, from_address FROM messages WHERE account_id = ? AND dedup_key = ?",
    )
    .bind(m.account_id.0)
    .bind(&m.dedup_key)
    .fetch_optional(&mut *conn)
    .await?;
    match existing {
        None => Ok(Some((m.dedup_key.clone(), None))),
        Some((message, ticket, from)) if from.as_deref() == Some(m.from.address.as_str()) => {
            Ok(Some((
                m.dedup_key.clone(),
                Some(IntakeOutcome::Duplicate {
                    message: MessageId(message),
                    ticket: TicketId(ticket),
                }),
            )))
        }
        Some(_) => {
            let key = format!("{}#{}", m.dedup_key, m.raw_sha256);
            let again: Option<(i64, i64)> = sqlx::query_as(
                "SELECT id, ticket_id FROM messages WHERE account_id = ? AND dedup_key = ?",
            )
            .bind(m.account_id.0)
            .bind(&key)
            .fetch_optional(&mut *conn)
            .await?;
            Ok(Some((
                key,
                again.map(|(message, ticket)| IntakeOutcome::Duplicate {
                    message: MessageId(message),
                    ticket: TicketId(ticket),
                }),
            )))
        }
    }
}

pub(super) async fn store_message(
    conn: &mut Conn,
    cfg: &ThreadingConfig,
    m: &NewMessage,
) -> Result<IntakeOutcome, StoreError> {
    let account = m.account_id.0;
    let dedup_key = match duplicate_of(conn, m).await? {
        Some((_, Some(dup))) => return Ok(dup),
        Some((key, None)) => key,
        None => m.dedup_key.clone(),
    };
    let mut classification = "normal";
    let mut flags: Vec<String> = Vec::new();
    match &m.kind {
        MessageKind::OwnMail { reason } => {
            tracing::warn!(%reason, "our own mail came back: dropped, no ticket");
            return quarantine_message(conn, m, "own_mail_loop", reason.clone(), "discarded").await;
        }
        MessageKind::ForwardingConfirmation {
            provider,
            code,
            url,
        } => {
            if let Some(support) = m.support_address_id {
                sqlx::query(
                    "UPDATE support_addresses SET status = CASE WHEN status = 'active' THEN status ELSE 'confirmation_pending' END,
                            confirmation_code = ?, confirmation_url = ? WHERE id = ? AND account_id = ?",
                )
                .bind(code)
                .bind(url)
                .bind(support.0)
                .bind(account)
                .execute(&mut *conn)
                .await?;
            }
            tracing::info!(%provider, "forwarding confirmation received");
            return quarantine_message(
                conn,
                m,
                "forwarding_confirmation",
                format!("{provider} forwarding confirmation"),
                "discarded",
            )
            .await;
        }
        MessageKind::Bounce {
            original_message_id,
            report,
        } => {
            let ticket = match original_message_id {
                Some(id) => ticket_of_message_id(conn, account, id, true).await?,
                None => None,
            };
            let Some(ticket) = ticket else {
                return quarantine_message(
                    conn,
                    m,
                    "bounce",
                    format!("delivery report not about a message of ours: {report}"),
                    "held",
                )
                .await;
            };
            sqlx::query("INSERT INTO ticket_events (account_id, ticket_id, kind, data, created_at) VALUES (?, ?, 'bounce', ?, ?)")
                .bind(account)
                .bind(ticket)
                .bind(report.to_string())
                .bind(now_ms())
                .execute(&mut *conn)
                .await?;
            let id = insert_message(
                conn,
                m,
                ticket,
                &dedup_key,
                "bounce",
                reason::BOUNCE,
                &["bounce".to_string()],
            )
            .await?;
            return Ok(IntakeOutcome::Stored {
                message: MessageId(id),
                ticket: TicketId(ticket),
            });
        }
        MessageKind::AutoGenerated { reason } => {
            classification = "auto_generated";
            flags.push(format!("auto_generated: {reason}"));
        }
        MessageKind::Normal => {}
    }
    let sender = m.from.address.clone();
    // Forwarded by hand by the brand or an agent: the customer is the original sender.
    let customer = match &m.forwarded_from {
        Some(original)
            if original.address != sender && is_brand(conn, account, &sender).await? =>
        {
            original.clone()
        }
        _ => m.from.clone(),
    };
    let placement = place(conn, cfg, m, &sender, &customer.address).await?;
    let now = now_ms();
    let ticket = match placement.ticket {
        Some(t) => {
            // A person writing again reopens the ticket; an auto-reply does not.
            sqlx::query(
                "UPDATE tickets SET updated_at = max(updated_at, ?1),
                    last_customer_message_at = max(COALESCE(last_customer_message_at, 0), ?1),
                    status = CASE WHEN ?2 AND status <> 'open' THEN 'open' ELSE status END,
                    closed_at = CASE WHEN ?2 THEN NULL ELSE closed_at END
                 WHERE id = ?3",
            )
            .bind(m.received_at)
            .bind(classification == "normal")
            .bind(t)
            .execute(&mut *conn)
            .await?;
            t
        }
        None => {
            let customer_row = customer_id(conn, account, &customer, now).await?;
            let subject = if m.subject.trim().is_empty() {
                "(no subject)"
            } else {
                m.subject.as_str()
            };
            let ticket_flags: Vec<&str> = placement.flag.into_iter().collect();
            sqlx::query_scalar(
                "INSERT INTO tickets (account_id, subject, normalized_subject, status, customer_id, support_address_id,
                                      flags, created_at, updated_at, last_customer_message_at)
                 VALUES (?, ?, ?, 'open', ?, ?, ?, ?, ?, ?) RETURNING id",
            )
            .bind(account)
            .bind(subject)
            .bind(normalize_subject(&m.subject))
            .bind(customer_row)
            .bind(m.support_address_id.map(|s| s.0))
            .bind(json(&ticket_flags))
            .bind(m.received_at)
            .bind(m.received_at)
            .bind(m.received_at)
            .fetch_one(&mut *conn)
            .await?
        }
    };
    if let Some(flag) = placement.flag {
        flags.push(flag.to_string());
    }
    let customer_is_sender = customer.address == sender;
    add_participant(conn, ticket, &customer.address, "customer").await?;
    if !customer_is_sender {
        let role = if is_brand(conn, account, &sender).await? {
            "brand"
        } else {
            "cc"
        };
        add_participant(conn, ticket, &sender, role).await?;
    }
    for p in m.to.iter().chain(m.cc.iter()) {
        // Our forwarding addresses are not people.
        if !domain_of(&p.address).eq_ignore_ascii_case(&cfg.inbound_domain) {
            add_participant(conn, ticket, &p.address, "cc").await?;
        }
    }
    let id = insert_message(
        conn,
        m,
        ticket,
        &dedup_key,
        classification,
        placement.reason,
        &flags,
    )
    .await?;
    let mut winner = ticket;
    for other in placement.orphans {
        let Some(other) = live_ticket(conn, account, other).await? else {
            continue;
        };
        if other == winner {
            continue;
        }
        let (keep, drop) = if other < winner {
            (other, winner)
        } else {
            (winner, other)
        };
        merge_tickets(
            conn,
            account,
            keep,
            drop,
            "parent arrived after its replies",
        )
        .await?;
        winner = keep;
    }
    if let Some(support) = m.support_address_id {
        sqlx::query(
            "UPDATE support_addresses SET status = 'active' WHERE id = ? AND status <> 'active'",
        )
        .bind(support.0)
        .execute(&mut *conn)
        .await?;
    }
    Ok(IntakeOutcome::Stored {
        message: MessageId(id),
        ticket: TicketId(winner),
    })
}

async fn insert_message(
    conn: &mut Conn,
    m: &NewMessage,
    ticket: i64,
    dedup_key: &str,
    classification: &str,
    thread_reason: &str,
    flags: &[String],
) -> Result<i64, StoreError> {
    put_blob(conn, &m.raw_sha256, &m.raw).await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO messages (account_id, ticket_id, direction, source, message_id, dedup_key,
                               in_reply_to, references_list, from_address, from_name, to_list,
                               cc_list, reply_to, subject, sent_at, received_at, text_body,
                               html_body, stripped_text, raw_sha256, size, envelope, support_address_id,
                               auth_results, classification, thread_reason, flags)
         VALUES (?, ?, 'inbound', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         RETURNING id",
    )
    .bind(m.account_id.0)
    .bind(ticket)
    .bind(m.source)
    .bind(&m.message_id)
    .bind(dedup_key)
    .bind(&m.in_reply_to)
    .bind(json(&m.references))
    .bind(&m.from.address)
    .bind(&m.from.name)
    .bind(json(&m.to))
    .bind(json(&m.cc))
    .bind(&m.reply_to)
    .bind(&m.subject)
    .bind(m.sent_at)
    .bind(m.received_at)
    .bind(&m.text_body)
    .bind(&m.html_body)
    .bind(&m.stripped_text)
    .bind(&m.raw_sha256)
    .bind(m.raw.len() as i64)
    .bind(&m.envelope_json)
    .bind(m.support_address_id.map(|s| s.0))
    .bind(m.auth_results.as_ref().map(|v| v.to_string()))
    .bind(classification)
    .bind(thread_reason)
    .bind(json(&flags))
    .fetch_one(&mut *conn)
    .await?;
    for referenced in m.in_reply_to.iter().chain(m.references.iter()) {
        sqlx::query("INSERT INTO message_references (account_id, referenced, message_id) VALUES (?, ?, ?) ON CONFLICT DO NOTHING")
            .bind(m.account_id.0)
            .bind(referenced)
            .bind(id)
            .execute(&mut *conn)
            .await?;
    }
    for a in &m.attachments {
        let sha = hex::encode(Sha256::digest(&a.data));
        put_blob(conn, &sha, &a.data).await?;
        sqlx::query(
            "INSERT INTO attachments (message_id, filename, content_type, size, content_id, disposition, blob_sha256)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(id)
        .bind(&a.filename)
        .bind(&a.content_type)
        .bind(a.data.len() as i64)
        .bind(&a.content_id)
        .bind(if a.inline { "inline" } else { "attachment" })
        .bind(sha)
        .execute(&mut *conn)
        .await?;
    }
    Ok(id)
}

/// Content-addressed bytes: stored once whatever the number of messages using them.
pub(super) async fn put_blob(conn: &mut Conn, sha256: &str, data: &[u8]) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO blobs (sha256, size, data) VALUES (?, ?, ?) ON CONFLICT DO NOTHING")
        .bind(sha256)
        .bind(data.len() as i64)
        .bind(data)
        .execute(conn)
        .await?;
    Ok(())
}

impl super::Store {
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
        let mut tx = self.pool().begin().await?;
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
        add_participant(&mut tx, ticket.0, &from.address, "agent").await?;
        sqlx::query("UPDATE tickets SET updated_at = ?1, last_agent_reply_at = ?1 WHERE id = ?2")
            .bind(now)
            .bind(ticket.0)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(MessageId(id))
    }
}
