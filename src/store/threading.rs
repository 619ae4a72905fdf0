//! Filing one inbound message: deduplicate, classify-dependent routing, find its ticket
//! (DESIGN.md's threading order), store it, and merge tickets that turn out to be one
//! conversation. Runs inside the writer's transaction, so messages are threaded one at a
//! time in arrival order even when many sessions deliver at once.
//!
//! Synchronous on purpose: the writer thread owns its connection and runs every
//! statement prepared and cached, with no hand-off between threads per statement.

use super::intake::{
    ImportCheckpoint, IntakeOutcome, Mailbox, MessageKind, NewMessage, NewQuarantine,
};
use super::{now_ms, StoreError};
use crate::domain::{
    judge_duplicate, normalize_subject, verify_reply_token, DuplicateVerdict, IncomingCopy,
    MessageId, StoredCopy, TicketId,
};
use rusqlite::{params, OptionalExtension};

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
    pub const SHARED_PARENT: &str = "shared_parent";
    pub const BOUNCE: &str = "bounce_of_our_message";
}

type Conn = rusqlite::Connection;

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

fn domain_of(addr: &str) -> &str {
    addr.rsplit_once('@').map_or("", |(_, d)| d)
}

/// Is `email` one of the brand's own addresses or one of its agents?
fn is_brand(conn: &Conn, account: i64, email: &str) -> Result<bool, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT 1 FROM support_addresses WHERE account_id = ?1 AND (address = ?2 OR from_address = ?2)
         UNION ALL SELECT 1 FROM accounts WHERE id = ?1 AND lower(from_address) = ?2
         UNION ALL SELECT 1 FROM users WHERE account_id = ?1 AND email = ?2
         LIMIT 1",
    )?;
    Ok(st.exists(params![account, email])?)
}

fn is_participant(conn: &Conn, ticket: i64, email: &str) -> Result<bool, StoreError> {
    let mut st =
        conn.prepare_cached("SELECT 1 FROM ticket_participants WHERE ticket_id = ? AND email = ?")?;
    Ok(st.exists(params![ticket, email])?)
}

fn participant_domain(conn: &Conn, ticket: i64, domain: &str) -> Result<bool, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT 1 FROM ticket_participants WHERE ticket_id = ? AND email LIKE '%@' || ? LIMIT 1",
    )?;
    Ok(st.exists(params![ticket, domain])?)
}

/// A live ticket of the account: follows `merged_into` (bounded, against cycles).
fn live_ticket(conn: &Conn, account: i64, ticket: i64) -> Result<Option<i64>, StoreError> {
    let mut st =
        conn.prepare_cached("SELECT merged_into FROM tickets WHERE id = ? AND account_id = ?")?;
    let mut id = ticket;
    for _ in 0..16 {
        let row: Option<Option<i64>> = st
            .query_row(params![id, account], |r| r.get(0))
            .optional()?;
        match row {
            None => return Ok(None),
            Some(None) => return Ok(Some(id)),
            Some(Some(next)) => id = next,
        }
    }
    Ok(None)
}

/// Messages of account ?1 whose Message-ID is ?2, found through the unique
/// `(account_id, dedup_key)` index: `dedup_key` is `mid:<id>`, or `mid:<id>#<sha256>` for a
/// different message under an ID already stored; the range holds both (and possibly IDs
/// that extend <id> with a character below `$`, which the `message_id` test removes).
const BY_MESSAGE_ID: &str = "account_id = ?1
           AND dedup_key >= 'mid:' || ?2 AND dedup_key < 'mid:' || ?2 || '$'
           AND message_id = ?2";

/// The ticket holding the message with this Message-ID; with `ours_only`, only a message
/// we sent (what a bounce reports on).
fn ticket_of_message_id(
    conn: &Conn,
    account: i64,
    message_id: &str,
    ours_only: bool,
) -> Result<Option<i64>, StoreError> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT ticket_id FROM messages WHERE {BY_MESSAGE_ID}
           AND (NOT ?3 OR direction = 'outbound')
         ORDER BY id LIMIT 1"
    ))?;
    Ok(st
        .query_row(params![account, message_id, ours_only], |r| r.get(0))
        .optional()?)
}

/// Steps 1 and 2 of the threading order: our reply tokens, then In-Reply-To, then
/// References newest first.
fn header_match(
    conn: &Conn,
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
            if let Some(t) = live_ticket(conn, account, t)? {
                return Ok(Some((t, reason::REPLY_TOKEN)));
            }
        }
    }
    if let Some(irt) = &m.in_reply_to {
        if let Some(t) = ticket_of_message_id(conn, account, irt, false)? {
            return Ok(Some((t, reason::IN_REPLY_TO)));
        }
    }
    for r in m.references.iter().rev() {
        if let Some(t) = ticket_of_message_id(conn, account, r, false)? {
            return Ok(Some((t, reason::REFERENCES)));
        }
    }
    Ok(None)
}

/// Step 2, continued: a message whose parent we never saw joins the conversation of a message
/// that referred to the same parent (JWZ's empty container: two replies to one missing
/// message are one thread). Taken only when the sender may join; otherwise it is no match
/// at all, as if the ids were unknown.
fn sibling_match(conn: &Conn, m: &NewMessage, sender: &str) -> Result<Option<i64>, StoreError> {
    let account = m.account_id.0;
    let mut st = conn.prepare_cached(
        "SELECT m.ticket_id FROM message_references r JOIN messages m ON m.id = r.message_id
         WHERE r.account_id = ? AND r.referenced = ? AND m.direction <> 'note'
         ORDER BY m.id LIMIT 1",
    )?;
    let newest_first = m.in_reply_to.iter().chain(m.references.iter().rev());
    for id in newest_first {
        let found: Option<i64> = st
            .query_row(params![account, id], |r| r.get(0))
            .optional()?;
        if let Some(t) = found
            .map(|t| live_ticket(conn, account, t))
            .transpose()?
            .flatten()
        {
            if may_join(conn, m, t, sender)? {
                return Ok(Some(t));
            }
        }
    }
    Ok(None)
}

/// Step 3: may `sender` join `ticket`?
fn may_join(conn: &Conn, m: &NewMessage, ticket: i64, sender: &str) -> Result<bool, StoreError> {
    if is_participant(conn, ticket, sender)? || is_brand(conn, m.account_id.0, sender)? {
        return Ok(true);
    }
    match &m.dmarc_pass_domain {
        Some(d) => participant_domain(conn, ticket, &d.to_ascii_lowercase()),
        None => Ok(false),
    }
}

fn customer_id(conn: &Conn, account: i64, who: &Mailbox, now: i64) -> Result<i64, StoreError> {
    // Looked up first (a returning customer is the common case), then inserted: an upsert
    // with RETURNING costs SQLite a statement journal and a temporary table per call.
    let known: Option<(i64, bool)> = conn
        .prepare_cached(
            "SELECT id, name IS NULL FROM customers WHERE account_id = ? AND email = ?",
        )?
        .query_row(params![account, who.address], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    match known {
        Some((id, unnamed)) => {
            if unnamed && who.name.is_some() {
                conn.prepare_cached("UPDATE customers SET name = ? WHERE id = ?")?
                    .execute(params![who.name, id])?;
            }
            Ok(id)
        }
        None => {
            conn.prepare_cached(
                "INSERT INTO customers (account_id, email, name, created_at) VALUES (?, ?, ?, ?)",
            )?
            .execute(params![account, who.address, who.name, now])?;
            Ok(conn.last_insert_rowid())
        }
    }
}

/// Step 4: same customer, same normalised subject, updated within the window.
fn subject_match(
    conn: &Conn,
    cfg: &ThreadingConfig,
    m: &NewMessage,
    customer: &str,
) -> Result<Option<i64>, StoreError> {
    let normalized = normalize_subject(&m.subject);
    if normalized.is_empty() {
        return Ok(None);
    }
    // Live mail arrives in date order: a ticket updated within the window before it. An
    // import reads its mailbox in file order, so the window holds on both sides: the
    // ticket's span, widened by the window, must contain the message's date.
    let not_after = if m.import_job.is_some() {
        m.received_at + cfg.subject_window_ms
    } else {
        i64::MAX
    };
    let mut st = conn.prepare_cached(
        // Customer first, then that customer's tickets by subject: left to itself, SQLite
        // walked every ticket of the account updated within the window (for its ORDER BY),
        // a sixth of an import's time at 100,000 messages.
        "SELECT t.id FROM customers c CROSS JOIN tickets t INDEXED BY tickets_customer
           ON t.customer_id = c.id
         WHERE c.account_id = ?1 AND c.email = ?2 AND t.account_id = ?1
           AND t.normalized_subject = ?3
           AND t.merged_into IS NULL AND t.updated_at >= ?4 AND t.created_at <= ?5
         ORDER BY t.updated_at DESC LIMIT 1",
    )?;
    Ok(st
        .query_row(
            params![
                m.account_id.0,
                customer,
                normalized,
                m.received_at - cfg.subject_window_ms,
                not_after
            ],
            |r| r.get(0),
        )
        .optional()?)
}

/// Tickets holding messages that referred to `message_id` before it arrived.
fn tickets_waiting_for(
    conn: &Conn,
    account: i64,
    message_id: &str,
) -> Result<Vec<i64>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT DISTINCT m.ticket_id FROM message_references r JOIN messages m ON m.id = r.message_id
         WHERE r.account_id = ? AND r.referenced = ? ORDER BY m.ticket_id",
    )?;
    let rows = st.query_map(params![account, message_id], |r| r.get(0))?;
    Ok(rows.collect::<Result<Vec<i64>, _>>()?)
}

fn ticket_customer(conn: &Conn, ticket: i64) -> Result<Option<String>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT c.email FROM tickets t JOIN customers c ON c.id = t.customer_id WHERE t.id = ?",
    )?;
    Ok(st.query_row(params![ticket], |r| r.get(0)).optional()?)
}

/// May the conversation in `other` (replies that came before their parent `m`) be merged
/// into `m`'s? Exactly when the reply would have joined `m`'s ticket had `m` come first (the
/// participant rule, step 3): its author is `m`'s sender, one of `m`'s recipients or the
/// brand. The order in which mail arrives, or an import reads it, never changes the result.
fn may_merge(conn: &Conn, m: &NewMessage, sender: &str, other: i64) -> Result<bool, StoreError> {
    let Some(customer) = ticket_customer(conn, other)? else {
        return Ok(false);
    };
    Ok(customer == sender
        || m.to
            .iter()
            .chain(m.cc.iter())
            .any(|p| p.address == customer)
        || is_brand(conn, m.account_id.0, &customer)?)
}

fn add_event(
    conn: &Conn,
    account: i64,
    ticket: i64,
    kind: &str,
    data: &serde_json::Value,
    now: i64,
) -> Result<(), StoreError> {
    let mut st = conn.prepare_cached(
        "INSERT INTO ticket_events (account_id, ticket_id, kind, data, created_at) VALUES (?, ?, ?, ?, ?)",
    )?;
    st.execute(params![account, ticket, kind, data.to_string(), now])?;
    Ok(())
}

/// Moves everything of `loser` into `winner` and records the merge on both.
fn merge_tickets(
    conn: &Conn,
    account: i64,
    winner: i64,
    loser: i64,
    why: &str,
) -> Result<(), StoreError> {
    let now = now_ms();
    conn.prepare_cached(
        "UPDATE messages SET ticket_id = ? WHERE ticket_id = ? AND account_id = ?",
    )?
    .execute(params![winner, loser, account])?;
    conn.prepare_cached(
        "INSERT OR IGNORE INTO ticket_participants (ticket_id, email, role)
         SELECT ?, email, role FROM ticket_participants WHERE ticket_id = ?",
    )?
    .execute(params![winner, loser])?;
    conn.prepare_cached(
        "INSERT OR IGNORE INTO ticket_tags (ticket_id, tag) SELECT ?, tag FROM ticket_tags WHERE ticket_id = ?",
    )?
    .execute(params![winner, loser])?;
    conn.prepare_cached(
        "UPDATE tickets SET
           created_at = min(created_at, (SELECT created_at FROM tickets WHERE id = ?2)),
           updated_at = max(updated_at, (SELECT updated_at FROM tickets WHERE id = ?2)),
           last_customer_message_at = max(COALESCE(last_customer_message_at, 0),
               COALESCE((SELECT last_customer_message_at FROM tickets WHERE id = ?2), 0))
         WHERE id = ?1",
    )?
    .execute(params![winner, loser])?;
    conn.prepare_cached(
        "UPDATE tickets SET merged_into = ?, status = 'closed', closed_at = ?, updated_at = ? WHERE id = ?",
    )?
    .execute(params![winner, now, now, loser])?;
    add_event(
        conn,
        account,
        winner,
        "merged",
        &serde_json::json!({"from_ticket": loser, "reason": why}),
        now,
    )?;
    add_event(
        conn,
        account,
        loser,
        "merged_into",
        &serde_json::json!({"into_ticket": winner, "reason": why}),
        now,
    )?;
    tracing::info!(winner, loser, why, "tickets merged");
    Ok(())
}

fn add_participant(conn: &Conn, ticket: i64, email: &str, role: &str) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO ticket_participants (ticket_id, email, role) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
    )?
    .execute(params![ticket, email, role])?;
    Ok(())
}

/// The customer of a message the brand sent: its first recipient that is neither the brand
/// nor one of our forwarding addresses.
fn first_customer_recipient(
    conn: &Conn,
    cfg: &ThreadingConfig,
    m: &NewMessage,
) -> Result<Option<Mailbox>, StoreError> {
    for p in m.to.iter().chain(m.cc.iter()) {
        if !domain_of(&p.address).eq_ignore_ascii_case(&cfg.inbound_domain)
            && !is_brand(conn, m.account_id.0, &p.address)?
        {
            return Ok(Some(p.clone()));
        }
    }
    Ok(None)
}

/// Records an import job's checkpoint and counters (inside the batch's transaction).
pub(super) fn store_import_checkpoint(
    conn: &Conn,
    c: &ImportCheckpoint,
) -> Result<IntakeOutcome, StoreError> {
    conn.prepare_cached(
        "UPDATE import_jobs SET checkpoint = COALESCE(?, checkpoint), imported = ?,
                duplicates = ?, quarantined = ?, updated_at = ?
         WHERE id = ?",
    )?
    .execute(params![
        c.position,
        c.imported,
        c.duplicates,
        c.quarantined,
        now_ms(),
        c.job
    ])?;
    Ok(IntakeOutcome::Checkpointed)
}

/// Where the message goes, and why. `None` ticket means a new one.
struct Placement {
    ticket: Option<i64>,
    reason: &'static str,
    flag: Option<&'static str>,
    /// Tickets of earlier-arrived replies to merge in afterwards.
    orphans: Vec<i64>,
}

fn place(
    conn: &Conn,
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
        for t in tickets_waiting_for(conn, account, id)? {
            if may_merge(conn, m, sender, t)? {
                orphans.push(t);
            }
        }
    }
    if let Some((ticket, why)) = header_match(conn, cfg, m)? {
        if may_join(conn, m, ticket, sender)? {
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
    if let Some(ticket) = sibling_match(conn, m, sender)? {
        return Ok(Placement {
            ticket: Some(ticket),
            reason: reason::SHARED_PARENT,
            flag: None,
            orphans,
        });
    }
    if let Some(ticket) = subject_match(conn, cfg, m, customer)? {
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
fn quarantine_message(
    conn: &Conn,
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
    store_quarantine(conn, &q, status)
}

/// Stores a quarantine entry, once: a sender retrying the same bytes finds the first one.
pub(super) fn store_quarantine(
    conn: &Conn,
    q: &NewQuarantine,
    status: &str,
) -> Result<IntakeOutcome, StoreError> {
    let account = q.account_id.map(|a| a.0);
    let existing: Option<i64> = conn
        .prepare_cached(
            "SELECT id FROM quarantine WHERE account_id IS ? AND raw_sha256 = ? AND source = ?",
        )?
        .query_row(params![account, q.raw_sha256, q.source], |r| r.get(0))
        .optional()?;
    if let Some(id) = existing {
        return Ok(IntakeOutcome::Quarantined { id });
    }
    put_blob(conn, &q.raw_sha256, &q.raw, None)?;
    conn.prepare_cached(
        "INSERT INTO quarantine (account_id, reason, detail, raw_sha256, size, envelope, source,
                                     source_position, status, received_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )?
    .execute(params![
        account,
        q.reason,
        q.detail,
        q.raw_sha256,
        q.raw.len() as i64,
        q.envelope_json,
        q.source,
        q.source_position,
        status,
        q.received_at
    ])?;
    Ok(IntakeOutcome::Quarantined {
        id: conn.last_insert_rowid(),
    })
}

/// The message stored under `dedup_key`: (id, ticket, sender).
fn message_by_dedup_key(
    conn: &Conn,
    account: i64,
    dedup_key: &str,
) -> Result<Option<(i64, i64, Option<String>)>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT id, ticket_id, from_address FROM messages WHERE account_id = ? AND dedup_key = ?",
        )?
        .query_row(params![account, dedup_key], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?)
}

/// Copies stored under one Message-ID that an incoming message is compared with; more are
/// taken as different (and stored), so that a flood of reuses costs a bounded amount each.
const MAX_COPIES_COMPARED: i64 = 16;

/// A stored copy under the incoming message's Message-ID: what [`judge_duplicate`] needs.
struct StoredRow {
    id: i64,
    ticket: i64,
    sender: Option<String>,
    authenticated: bool,
    raw_sha256: Option<String>,
}

fn stored_copies(
    conn: &Conn,
    account: i64,
    message_id: &str,
) -> Result<Vec<StoredRow>, StoreError> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT id, ticket_id, from_address, authenticated_domain IS NOT NULL, raw_sha256
           FROM messages WHERE {BY_MESSAGE_ID} ORDER BY id LIMIT {MAX_COPIES_COMPARED}"
    ))?;
    let rows = st.query_map(params![account, message_id], |r| {
        Ok(StoredRow {
            id: r.get(0)?,
            ticket: r.get(1)?,
            sender: r.get(2)?,
            authenticated: r.get(3)?,
            raw_sha256: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The raw bytes of a stored blob, `None` when it is missing or unreadable.
fn blob_bytes(conn: &Conn, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
    let row: Option<(Vec<u8>, Option<String>, i64)> = conn
        .prepare_cached("SELECT data, compression, size FROM blobs WHERE sha256 = ?")?
        .query_row(params![sha256], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    Ok(row.and_then(|(data, compression, size)| {
        super::blob_codec::decode(data, compression.as_deref(), size).ok()
    }))
}

/// Whether `m` repeats a stored message (see [`judge_duplicate`]: the same sender, the same
/// body, and no proof lost). Returns the key to store the message under, or the outcome when
/// it is a duplicate.
fn duplicate_of(conn: &Conn, m: &NewMessage) -> Result<Result<String, IntakeOutcome>, StoreError> {
    let account = m.account_id.0;
    let duplicate = |id: i64, ticket: i64| IntakeOutcome::Duplicate {
        message: MessageId(id),
        ticket: TicketId(ticket),
    };
    let Some(message_id) = m
        .message_id
        .as_deref()
        .filter(|_| m.dedup_key.starts_with("mid:"))
    else {
        // No Message-ID: the key is a hash of the whole normalised message.
        return Ok(match message_by_dedup_key(conn, account, &m.dedup_key)? {
            Some((id, ticket, _)) => Err(duplicate(id, ticket)),
            None => Ok(m.dedup_key.clone()),
        });
    };
    let copies = stored_copies(conn, account, message_id)?;
    if copies.is_empty() {
        return Ok(Ok(m.dedup_key.clone()));
    }
    let incoming = IncomingCopy {
        sender: &m.from.address,
        authenticated: m.dmarc_pass_domain.is_some(),
        raw: &m.raw,
    };
    for copy in &copies {
        // Bodies are read only for a copy from the same sender (the rare real repeat).
        let raw = match (
            &copy.raw_sha256,
            copy.sender.as_deref() == Some(incoming.sender),
        ) {
            (Some(sha), true) => blob_bytes(conn, sha)?,
            _ => None,
        };
        let stored = StoredCopy {
            sender: copy.sender.as_deref(),
            authenticated: copy.authenticated,
            raw: raw.as_deref(),
        };
        if judge_duplicate(stored, incoming) == DuplicateVerdict::Duplicate {
            return Ok(Err(duplicate(copy.id, copy.ticket)));
        }
    }
    // Another message under a used Message-ID: stored under a key of its own bytes (the
    // same bytes again are the same message).
    let key = format!("{}#{}", m.dedup_key, m.raw_sha256);
    Ok(match message_by_dedup_key(conn, account, &key)? {
        Some((id, ticket, _)) => Err(duplicate(id, ticket)),
        None => Ok(key),
    })
}

pub(super) fn store_message(
    conn: &Conn,
    cfg: &ThreadingConfig,
    m: &NewMessage,
) -> Result<IntakeOutcome, StoreError> {
    let account = m.account_id.0;
    let dedup_key = match duplicate_of(conn, m)? {
        Err(dup) => return Ok(dup),
        Ok(key) => key,
    };
    let mut classification = "normal";
    let mut flags: Vec<String> = Vec::new();
    match &m.kind {
        MessageKind::OwnMail { reason } => {
            tracing::warn!(%reason, "our own mail came back: dropped, no ticket");
            return quarantine_message(conn, m, "own_mail_loop", reason.clone(), "discarded");
        }
        MessageKind::ForwardingConfirmation {
            provider,
            code,
            url,
        } => {
            if let Some(support) = m.support_address_id {
                conn.prepare_cached(
                    "UPDATE support_addresses SET status = CASE WHEN status = 'active' THEN status ELSE 'confirmation_pending' END,
                            confirmation_code = ?, confirmation_url = ? WHERE id = ? AND account_id = ?",
                )?
                .execute(params![code, url, support.0, account])?;
            }
            tracing::info!(%provider, "forwarding confirmation received");
            return quarantine_message(
                conn,
                m,
                "forwarding_confirmation",
                format!("{provider} forwarding confirmation"),
                "discarded",
            );
        }
        MessageKind::Bounce {
            original_message_id,
            report,
        } => {
            let ticket = match original_message_id {
                Some(id) => ticket_of_message_id(conn, account, id, true)?,
                None => None,
            };
            let Some(ticket) = ticket else {
                return quarantine_message(
                    conn,
                    m,
                    "bounce",
                    format!("delivery report not about a message of ours: {report}"),
                    "held",
                );
            };
            add_event(conn, account, ticket, "bounce", report, now_ms())?;
            if let Some(id) = original_message_id {
                mark_bounced_recipients(conn, account, id, report)?;
            }
            let id = insert_message(
                conn,
                m,
                ticket,
                &dedup_key,
                "inbound",
                "bounce",
                reason::BOUNCE,
                &["bounce".to_string()],
            )?;
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
    let importing = m.import_job.is_some();
    let sender_is_brand = is_brand(conn, account, &sender)?;
    // Historic mail the brand sent is an agent's reply; its customer is whom it went to.
    let outbound = importing && sender_is_brand;
    // Forwarded by hand by the brand or an agent: the customer is the original sender.
    let customer = match &m.forwarded_from {
        Some(original) if original.address != sender && sender_is_brand => original.clone(),
        _ if outbound => first_customer_recipient(conn, cfg, m)?.unwrap_or_else(|| m.from.clone()),
        _ => m.from.clone(),
    };
    let placement = place(conn, cfg, m, &sender, &customer.address)?;
    let now = now_ms();
    let ticket = match placement.ticket {
        Some(t) if importing => {
            // History never reopens a ticket; it only extends its span.
            conn.prepare_cached(
                "UPDATE tickets SET updated_at = max(updated_at, ?1),
                    created_at = min(created_at, ?1),
                    last_customer_message_at = CASE WHEN ?2 THEN last_customer_message_at
                        ELSE max(COALESCE(last_customer_message_at, 0), ?1) END,
                    last_agent_reply_at = CASE WHEN ?2 THEN max(COALESCE(last_agent_reply_at, 0), ?1)
                        ELSE last_agent_reply_at END
                 WHERE id = ?3",
            )?
            .execute(params![m.received_at, outbound, t])?;
            t
        }
        Some(t) => {
            // A person writing again reopens the ticket (a snoozed one too, ending its
            // snooze); an auto-reply does not.
            conn.prepare_cached(
                "UPDATE tickets SET updated_at = max(updated_at, ?1),
                    last_customer_message_at = max(COALESCE(last_customer_message_at, 0), ?1),
                    status = CASE WHEN ?2 AND status <> 'open' THEN 'open' ELSE status END,
                    snoozed_until = CASE WHEN ?2 THEN NULL ELSE snoozed_until END,
                    closed_at = CASE WHEN ?2 THEN NULL ELSE closed_at END
                 WHERE id = ?3",
            )?
            .execute(params![m.received_at, classification == "normal", t])?;
            t
        }
        None => {
            let customer_row = customer_id(conn, account, &customer, now)?;
            let subject = if m.subject.trim().is_empty() {
                "(no subject)"
            } else {
                m.subject.as_str()
            };
            let ticket_flags: Vec<&str> = placement.flag.into_iter().collect();
            // Imported history opens its tickets closed (the import reopens the newest
            // ones it is asked to at its end).
            conn.prepare_cached(
                "INSERT INTO tickets (account_id, subject, normalized_subject, status, customer_id, support_address_id,
                                      flags, created_at, updated_at, last_customer_message_at,
                                      last_agent_reply_at, closed_at, import_job_id)
                 VALUES (?1, ?2, ?3, CASE WHEN ?9 IS NULL THEN 'open' ELSE 'closed' END, ?4, ?5, ?6, ?7, ?7,
                         CASE WHEN ?8 THEN NULL ELSE ?7 END, CASE WHEN ?8 THEN ?7 END,
                         CASE WHEN ?9 IS NOT NULL THEN ?7 END, ?9)",
            )?
            .execute(params![
                account,
                subject,
                normalize_subject(&m.subject),
                customer_row,
                m.support_address_id.map(|s| s.0),
                json(&ticket_flags),
                m.received_at,
                outbound,
                m.import_job
            ])?;
            conn.last_insert_rowid()
        }
    };
    if let Some(flag) = placement.flag {
        flags.push(flag.to_string());
    }
    let customer_is_sender = customer.address == sender;
    add_participant(conn, ticket, &customer.address, "customer")?;
    if !customer_is_sender {
        let role = if sender_is_brand { "brand" } else { "cc" };
        add_participant(conn, ticket, &sender, role)?;
    }
    // Chosen and capped by ingest (sender first, our forwarding addresses left out).
    for p in &m.participants {
        add_participant(conn, ticket, &p.address, "cc")?;
    }
    let id = insert_message(
        conn,
        m,
        ticket,
        &dedup_key,
        if outbound { "outbound" } else { "inbound" },
        classification,
        placement.reason,
        &flags,
    )?;
    let mut winner = ticket;
    for other in placement.orphans {
        let Some(other) = live_ticket(conn, account, other)? else {
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
        )?;
        winner = keep;
    }
    if let Some(support) = m.support_address_id.filter(|_| !importing) {
        conn.prepare_cached(
            "UPDATE support_addresses SET status = 'active' WHERE id = ? AND status <> 'active'",
        )?
        .execute(params![support.0])?;
    }
    Ok(IntakeOutcome::Stored {
        message: MessageId(id),
        ticket: TicketId(winner),
    })
}

#[allow(clippy::too_many_arguments)]
fn insert_message(
    conn: &Conn,
    m: &NewMessage,
    ticket: i64,
    dedup_key: &str,
    direction: &str,
    classification: &str,
    thread_reason: &str,
    flags: &[String],
) -> Result<i64, StoreError> {
    put_blob(
        conn,
        &m.raw_sha256,
        &m.raw,
        m.raw_packed.as_deref().map(|v| v.as_slice()),
    )?;
    conn.prepare_cached(
            "INSERT INTO messages (account_id, ticket_id, direction, source, message_id, dedup_key,
                                   in_reply_to, references_list, from_address, from_name, to_list,
                                   cc_list, reply_to, subject, sent_at, received_at, text_body,
                                   html_body, stripped_text, raw_sha256, size, envelope, support_address_id,
                                   auth_results, classification, thread_reason, flags, import_job_id,
                                   authenticated_domain)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )?
        .execute(
            params![
                m.account_id.0,
                ticket,
                direction,
                m.source,
                m.message_id,
                dedup_key,
                m.in_reply_to,
                json(&m.references),
                m.from.address,
                m.from.name,
                json(&m.to),
                json(&m.cc),
                m.reply_to,
                m.subject,
                m.sent_at,
                m.received_at,
                body_column(&m.text_body, &m.text_packed),
                body_column(&m.html_body, &m.html_packed),
                // Stored only when it differs from the whole text (most messages have no
                // quoted part); readers fall back to the text, trimmed at its end.
                m.stripped_text.as_deref().filter(|s| {
                    m.text_body
                        .as_deref()
                        .map(super::whole_text_reply)
                        != Some(*s)
                }),
                m.raw_sha256,
                m.raw.len() as i64,
                m.envelope_json,
                m.support_address_id.map(|s| s.0),
                m.auth_results,
                classification,
                thread_reason,
                json(&flags),
                m.import_job,
                m.dmarc_pass_domain
            ],
        )?;
    // Not RETURNING: that costs SQLite a statement journal and a temporary table per row.
    let id = conn.last_insert_rowid();
    let mut reference = conn.prepare_cached(
        "INSERT INTO message_references (account_id, referenced, message_id) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
    )?;
    for referenced in m.in_reply_to.iter().chain(m.references.iter()) {
        reference.execute(params![m.account_id.0, referenced, id])?;
    }
    for a in &m.attachments {
        let sha = &a.sha256;
        put_blob(conn, sha, &a.data, a.packed.as_deref())?;
        conn.prepare_cached(
            "INSERT INTO attachments (message_id, filename, content_type, size, content_id, disposition, blob_sha256)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )?
        .execute(params![
            id,
            a.filename,
            a.content_type,
            a.data.len() as i64,
            a.content_id,
            if a.inline { "inline" } else { "attachment" },
            sha
        ])?;
    }
    Ok(id)
}

/// The value stored for a body: its zstd frame when there is one (a BLOB, which
/// `body_text()` turns back into the text), else the text.
fn body_column<'a>(
    text: &'a Option<String>,
    packed: &'a Option<std::sync::Arc<Vec<u8>>>,
) -> rusqlite::types::ToSqlOutput<'a> {
    use rusqlite::types::{ToSqlOutput, ValueRef};
    match (packed, text) {
        (Some(frame), _) => ToSqlOutput::Borrowed(ValueRef::Blob(frame)),
        (None, Some(text)) => ToSqlOutput::Borrowed(ValueRef::Text(text.as_bytes())),
        (None, None) => ToSqlOutput::Borrowed(ValueRef::Null),
    }
}

/// A delivery report about one of our messages: its failed recipients are marked bounced
/// in the outbound queue (even after a relay accepted them: the report is the later truth).
/// Delay reports change nothing. A permanent report naming no recipient we know bounces
/// every recipient of a message that had only one.
fn mark_bounced_recipients(
    conn: &Conn,
    account: i64,
    original_message_id: &str,
    report: &serde_json::Value,
) -> Result<(), StoreError> {
    let message: Option<i64> = conn
        .prepare_cached(&format!(
            "SELECT id FROM messages WHERE {BY_MESSAGE_ID} AND direction = 'outbound'
             ORDER BY id LIMIT 1"
        ))?
        .query_row(params![account, original_message_id], |r| r.get(0))
        .optional()?;
    let Some(message) = message else {
        return Ok(());
    };
    let now = now_ms();
    let mut mark = conn.prepare_cached(
        "UPDATE outbound_queue SET status = 'bounced', last_error = ?, lease_owner = NULL, lease_until = NULL,
             updated_at = ? WHERE account_id = ? AND message_id = ? AND recipient = ? AND status <> 'bounced'",
    )?;
    let mut marked = 0;
    let recipients = report["recipients"].as_array().cloned().unwrap_or_default();
    for r in &recipients {
        let failed = r["action"].as_str() == Some("failed")
            || r["status"].as_str().is_some_and(|s| s.starts_with('5'));
        let Some(address) = r["address"].as_str() else {
            continue;
        };
        if !failed {
            continue;
        }
        let why = format!(
            "bounce report: {}{}",
            r["status"].as_str().unwrap_or("failed"),
            r["diagnostic"]
                .as_str()
                .map(|d| format!(" {d}"))
                .unwrap_or_default()
        );
        marked += mark.execute(params![
            why,
            now,
            account,
            message,
            address.to_ascii_lowercase()
        ])?;
    }
    if marked == 0 && report["permanent"].as_bool() == Some(true) {
        conn.prepare_cached(
            "UPDATE outbound_queue SET status = 'bounced', last_error = 'bounce report (no recipient named)',
                 lease_owner = NULL, lease_until = NULL, updated_at = ?
             WHERE account_id = ? AND message_id = ? AND status <> 'bounced'
               AND (SELECT COUNT(*) FROM outbound_queue WHERE message_id = ?3) = 1",
        )?
        .execute(params![now, account, message])?;
    }
    Ok(())
}

/// [`put_blob`] inside an sqlx transaction (the outbound queue writes through the pool).
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

/// Content-addressed bytes: stored once whatever the number of messages using them.
/// `packed` is their zstd frame when the caller compressed them (off the writer thread);
/// without it they are stored as they are.
pub(super) fn put_blob(
    conn: &Conn,
    sha256: &str,
    data: &[u8],
    packed: Option<&[u8]>,
) -> Result<(), StoreError> {
    let stored = match packed {
        Some(frame) => super::blob_codec::StoredBlob {
            data: frame.into(),
            compression: Some(super::blob_codec::ZSTD),
        },
        None => super::blob_codec::StoredBlob {
            data: data.into(),
            compression: None,
        },
    };
    conn.prepare_cached(
        "INSERT INTO blobs (sha256, size, data, compression) VALUES (?, ?, ?, ?)
         ON CONFLICT DO NOTHING",
    )?
    .execute(params![
        sha256,
        data.len() as i64,
        &*stored.data,
        stored.compression
    ])?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn message(conn: &Conn, id: i64, account: i64, ticket: i64, mid: &str, key: &str, dir: &str) {
        conn.execute(
            "INSERT INTO messages (id, account_id, ticket_id, direction, source, message_id,
                                   dedup_key, received_at, size)
             VALUES (?, ?, ?, ?, 'smtp', ?, ?, 0, 0)",
            params![id, account, ticket, dir, mid, key],
        )
        .expect("insert");
    }

    #[tokio::test]
    async fn message_ids_are_found_through_the_dedup_index_variants_included() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("t.db");
        crate::store::Store::open(&path, 1)
            .await
            .expect("migrated")
            .close()
            .await;
        // Foreign keys off: bare message rows suffice.
        let conn = Conn::open(&path).expect("open");
        conn.pragma_update(None, "foreign_keys", "OFF")
            .expect("pragma");
        message(&conn, 1, 1, 10, "a@x", "mid:a@x", "inbound");
        // A different message under the same ID, stored after it.
        message(&conn, 2, 1, 20, "a@x", "mid:a@x#0123abcd", "outbound");
        // IDs that extend "a@x": inside the key range or just outside it.
        message(&conn, 3, 1, 30, "a@x!", "mid:a@x!", "inbound");
        message(&conn, 4, 1, 40, "a@x$", "mid:a@x$", "inbound");
        message(&conn, 5, 2, 50, "a@x", "mid:a@x", "inbound");
        let find = |account, id: &str, ours| {
            ticket_of_message_id(&conn, account, id, ours).expect("lookup")
        };
        assert_eq!(find(1, "a@x", false), Some(10), "the first one stored");
        assert_eq!(find(1, "a@x", true), Some(20), "ours: the outbound variant");
        assert_eq!(find(1, "a@x!", false), Some(30));
        assert_eq!(find(1, "a@x$", false), Some(40));
        assert_eq!(find(2, "a@x", false), Some(50), "per account");
        assert_eq!(find(1, "b@x", false), None);

        let plan: Vec<String> = conn
            .prepare(&format!(
                "EXPLAIN QUERY PLAN SELECT ticket_id FROM messages WHERE {BY_MESSAGE_ID}"
            ))
            .expect("plan")
            .query_map(params![1, "a@x"], |r| r.get::<_, String>(3))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("plan rows");
        let plan = plan.join("; ");
        assert!(
            plan.contains("sqlite_autoindex_messages_1") && !plan.contains("SCAN"),
            "{plan}"
        );
    }
}
