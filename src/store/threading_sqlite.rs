//! The SQLite engine's [`ThreadingRepository`]: the look-ups and writes of filing, run on
//! the group-commit writer's transaction with every statement prepared and cached (the
//! writer thread owns its connection; no hand-off between threads per statement).

use super::intake::{ImportCheckpoint, IntakeOutcome, NewMessage, NewQuarantine};
use super::now_ms;
use super::threading_repository::{
    BounceRecords, Filing, Found, IntakeWrites, NewTicket, QuarantineStatus, StoreResult,
    StoredCopyRow, StoredMessage, SubjectQuery, ThreadingFacts, TicketUpdate,
};
use crate::domain::{
    AccountId, CustomerId, Direction, Mailbox, MessageId, SupportAddressId, TicketId,
};
use rusqlite::{params, OptionalExtension};

type Conn = rusqlite::Connection;

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

/// Messages of account ?1 whose Message-ID is ?2, found through the unique
/// `(account_id, dedup_key)` index: `dedup_key` is `mid:<id>`, or `mid:<id>#<sha256>` for a
/// different message under an ID already stored; the range holds both (and possibly IDs
/// that extend <id> with a character below `$`, which the `message_id` test removes).
const BY_MESSAGE_ID: &str = "account_id = ?1
           AND dedup_key >= 'mid:' || ?2 AND dedup_key < 'mid:' || ?2 || '$'
           AND message_id = ?2";

/// Filing's storage on the writer's connection (inside its batch transaction), scoped to
/// the account of the message being filed.
pub(super) struct SqliteThreading<'c> {
    conn: &'c Conn,
    account: AccountId,
}

impl<'c> SqliteThreading<'c> {
    /// Filing's storage for one message of `account`.
    pub(super) fn new(conn: &'c Conn, account: AccountId) -> Self {
        Self { conn, account }
    }
}

impl ThreadingFacts for SqliteThreading<'_> {
    fn is_brand(&mut self, email: &str) -> StoreResult<bool> {
        let mut st = self.conn.prepare_cached(
            "SELECT 1 FROM support_addresses WHERE account_id = ?1 AND (address = ?2 OR from_address = ?2)
             UNION ALL SELECT 1 FROM accounts WHERE id = ?1 AND lower(from_address) = ?2
             UNION ALL SELECT 1 FROM users WHERE account_id = ?1 AND email = ?2
             LIMIT 1",
        )?;
        Ok(st.exists(params![self.account.0, email])?)
    }

    fn is_participant(&mut self, ticket: TicketId, email: &str) -> StoreResult<bool> {
        let mut st = self.conn.prepare_cached(
            "SELECT 1 FROM ticket_participants WHERE ticket_id = ? AND email = ?",
        )?;
        Ok(st.exists(params![ticket.0, email])?)
    }

    fn has_participant_at(&mut self, ticket: TicketId, domain: &str) -> StoreResult<bool> {
        let mut st = self.conn.prepare_cached(
            "SELECT 1 FROM ticket_participants WHERE ticket_id = ? AND email LIKE '%@' || ? LIMIT 1",
        )?;
        Ok(st.exists(params![ticket.0, domain])?)
    }

    fn live_ticket(&mut self, ticket: TicketId) -> Found<TicketId> {
        let mut st = self
            .conn
            .prepare_cached("SELECT merged_into FROM tickets WHERE id = ? AND account_id = ?")?;
        // Bounded, against cycles.
        let mut id = ticket.0;
        for _ in 0..16 {
            let row: Option<Option<i64>> = st
                .query_row(params![id, self.account.0], |r| r.get(0))
                .optional()?;
            match row {
                None => return Ok(None),
                Some(None) => return Ok(Some(TicketId(id))),
                Some(Some(next)) => id = next,
            }
        }
        Ok(None)
    }

    fn ticket_of_message_id(&mut self, id: &str, way: Option<Direction>) -> Found<TicketId> {
        ticket_of_message_id(self.conn, self.account, id, way)
    }

    fn first_ticket_referring_to(&mut self, message_id: &str) -> Found<TicketId> {
        let mut st = self.conn.prepare_cached(
            "SELECT m.ticket_id FROM message_references r JOIN messages m ON m.id = r.message_id
             WHERE r.account_id = ? AND r.referenced = ? AND m.direction <> 'note'
             ORDER BY m.id LIMIT 1",
        )?;
        Ok(st
            .query_row(params![self.account.0, message_id], |r| {
                r.get(0).map(TicketId)
            })
            .optional()?)
    }

    fn tickets_referring_to(&mut self, message_id: &str) -> StoreResult<Vec<TicketId>> {
        let mut st = self.conn.prepare_cached(
            "SELECT DISTINCT m.ticket_id FROM message_references r JOIN messages m ON m.id = r.message_id
             WHERE r.account_id = ? AND r.referenced = ? ORDER BY m.ticket_id",
        )?;
        let rows = st.query_map(params![self.account.0, message_id], |r| {
            r.get(0).map(TicketId)
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn ticket_customer(&mut self, ticket: TicketId) -> Found<String> {
        let mut st = self.conn.prepare_cached(
            "SELECT c.email FROM tickets t JOIN customers c ON c.id = t.customer_id WHERE t.id = ?",
        )?;
        Ok(st.query_row(params![ticket.0], |r| r.get(0)).optional()?)
    }

    fn ticket_by_subject(&mut self, q: &SubjectQuery<'_>) -> Found<TicketId> {
        let mut st = self.conn.prepare_cached(
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
                    self.account.0,
                    q.customer,
                    q.normalized_subject,
                    q.updated_since,
                    q.created_until
                ],
                |r| r.get(0).map(TicketId),
            )
            .optional()?)
    }

    fn message_by_dedup_key(&mut self, dedup_key: &str) -> Found<StoredMessage> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT id, ticket_id FROM messages WHERE account_id = ? AND dedup_key = ?",
            )?
            .query_row(params![self.account.0, dedup_key], |r| {
                Ok(StoredMessage {
                    message: MessageId(r.get(0)?),
                    ticket: TicketId(r.get(1)?),
                })
            })
            .optional()?)
    }

    fn copies_under_message_id(
        &mut self,
        id: &str,
        limit: usize,
    ) -> StoreResult<Vec<StoredCopyRow>> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT id, ticket_id, from_address, authenticated_domain IS NOT NULL, raw_sha256
               FROM messages WHERE {BY_MESSAGE_ID} ORDER BY id LIMIT ?3"
        ))?;
        let rows = st.query_map(params![self.account.0, id, limit as i64], |r| {
            Ok(StoredCopyRow {
                stored: StoredMessage {
                    message: MessageId(r.get(0)?),
                    ticket: TicketId(r.get(1)?),
                },
                sender: r.get(2)?,
                authenticated: r.get(3)?,
                raw_sha256: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn blob(&mut self, sha256: &str) -> Found<Vec<u8>> {
        let row: Option<(Vec<u8>, Option<String>, i64)> = self
            .conn
            .prepare_cached("SELECT data, compression, size FROM blobs WHERE sha256 = ?")?
            .query_row(params![sha256], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        Ok(row.and_then(|(data, compression, size)| {
            super::blob_codec::decode(data, compression.as_deref(), size).ok()
        }))
    }
}

impl IntakeWrites for SqliteThreading<'_> {
    fn quarantine(&mut self, q: &NewQuarantine, s: QuarantineStatus) -> StoreResult<IntakeOutcome> {
        store_quarantine(self.conn, q, s)
    }

    fn record_forwarding_confirmation(
        &mut self,
        support: SupportAddressId,
        code: Option<&str>,
        url: Option<&str>,
    ) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "UPDATE support_addresses SET status = CASE WHEN status = 'active' THEN status ELSE 'confirmation_pending' END,
                        confirmation_code = ?, confirmation_url = ? WHERE id = ? AND account_id = ?",
            )?
            .execute(params![code, url, support.0, self.account.0])?;
        Ok(())
    }

    fn activate_support_address(&mut self, support: SupportAddressId) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "UPDATE support_addresses SET status = 'active' WHERE id = ? AND status <> 'active'",
            )?
            .execute(params![support.0])?;
        Ok(())
    }

    fn add_ticket_event(
        &mut self,
        ticket: TicketId,
        kind: &str,
        data: &serde_json::Value,
    ) -> StoreResult<()> {
        add_event(self.conn, self.account, ticket, kind, data, now_ms())
    }

    fn customer(&mut self, who: &Mailbox, now: i64) -> StoreResult<CustomerId> {
        let conn = self.conn;
        // Looked up first (a returning customer is the common case), then inserted: an upsert
        // with RETURNING costs SQLite a statement journal and a temporary table per call.
        let known: Option<(i64, bool)> = conn
            .prepare_cached(
                "SELECT id, name IS NULL FROM customers WHERE account_id = ? AND email = ?",
            )?
            .query_row(params![self.account.0, who.address], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        match known {
            Some((id, unnamed)) => {
                if unnamed && who.name.is_some() {
                    conn.prepare_cached("UPDATE customers SET name = ? WHERE id = ?")?
                        .execute(params![who.name, id])?;
                }
                Ok(CustomerId(id))
            }
            None => {
                conn.prepare_cached(
                    "INSERT INTO customers (account_id, email, name, created_at) VALUES (?, ?, ?, ?)",
                )?
                .execute(params![self.account.0, who.address, who.name, now])?;
                Ok(CustomerId(conn.last_insert_rowid()))
            }
        }
    }

    fn create_ticket(&mut self, t: &NewTicket<'_>) -> StoreResult<TicketId> {
        // Imported history opens its tickets closed (the import reopens the newest ones it
        // is asked to at its end).
        self.conn
            .prepare_cached(
                "INSERT INTO tickets (account_id, subject, normalized_subject, status, customer_id, support_address_id,
                                      flags, created_at, updated_at, last_customer_message_at,
                                      last_agent_reply_at, closed_at, import_job_id)
                 VALUES (?1, ?2, ?3, CASE WHEN ?9 IS NULL THEN 'open' ELSE 'closed' END, ?4, ?5, ?6, ?7, ?7,
                         CASE WHEN ?8 THEN NULL ELSE ?7 END, CASE WHEN ?8 THEN ?7 END,
                         CASE WHEN ?9 IS NOT NULL THEN ?7 END, ?9)",
            )?
            .execute(params![
                self.account.0,
                t.subject,
                t.normalized_subject,
                t.customer.0,
                t.support_address.map(|s| s.0),
                json(&t.flags),
                t.at,
                t.by_brand,
                t.import_job
            ])?;
        Ok(TicketId(self.conn.last_insert_rowid()))
    }

    fn update_ticket(&mut self, ticket: TicketId, update: TicketUpdate) -> StoreResult<()> {
        match update {
            TicketUpdate::History { at, by_brand } => {
                self.conn
                    .prepare_cached(
                        "UPDATE tickets SET updated_at = max(updated_at, ?1),
                            created_at = min(created_at, ?1),
                            last_customer_message_at = CASE WHEN ?2 THEN last_customer_message_at
                                ELSE max(COALESCE(last_customer_message_at, 0), ?1) END,
                            last_agent_reply_at = CASE WHEN ?2 THEN max(COALESCE(last_agent_reply_at, 0), ?1)
                                ELSE last_agent_reply_at END
                         WHERE id = ?3",
                    )?
                    .execute(params![at, by_brand, ticket.0])?;
            }
            TicketUpdate::Live { at, reopen } => {
                self.conn
                    .prepare_cached(
                        "UPDATE tickets SET updated_at = max(updated_at, ?1),
                            last_customer_message_at = max(COALESCE(last_customer_message_at, 0), ?1),
                            status = CASE WHEN ?2 AND status <> 'open' THEN 'open' ELSE status END,
                            snoozed_until = CASE WHEN ?2 THEN NULL ELSE snoozed_until END,
                            closed_at = CASE WHEN ?2 THEN NULL ELSE closed_at END
                         WHERE id = ?3",
                    )?
                    .execute(params![at, reopen, ticket.0])?;
            }
        }
        Ok(())
    }

    fn add_participant(&mut self, ticket: TicketId, email: &str, role: &str) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO ticket_participants (ticket_id, email, role) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            )?
            .execute(params![ticket.0, email, role])?;
        Ok(())
    }

    fn insert_message(&mut self, m: &NewMessage, filing: &Filing<'_>) -> StoreResult<MessageId> {
        insert_message(self.conn, m, filing)
    }

    fn merge_tickets(&mut self, winner: TicketId, loser: TicketId, why: &str) -> StoreResult<()> {
        let conn = self.conn;
        let (winner, loser) = (winner.0, loser.0);
        let now = now_ms();
        conn.prepare_cached(
            "UPDATE messages SET ticket_id = ? WHERE ticket_id = ? AND account_id = ?",
        )?
        .execute(params![winner, loser, self.account.0])?;
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
            self.account,
            TicketId(winner),
            "merged",
            &serde_json::json!({"from_ticket": loser, "reason": why}),
            now,
        )?;
        add_event(
            conn,
            self.account,
            TicketId(loser),
            "merged_into",
            &serde_json::json!({"into_ticket": winner, "reason": why}),
            now,
        )?;
        tracing::info!(winner, loser, why, "tickets merged");
        Ok(())
    }
}

impl BounceRecords for SqliteThreading<'_> {
    fn outbound_message(&mut self, message_id: &str) -> Found<MessageId> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT id FROM messages WHERE {BY_MESSAGE_ID} AND direction = 'outbound'
                 ORDER BY id LIMIT 1"
            ))?
            .query_row(params![self.account.0, message_id], |r| {
                r.get(0).map(MessageId)
            })
            .optional()?)
    }

    fn mark_recipient_bounced(
        &mut self,
        message: MessageId,
        recipient: &str,
        why: &str,
    ) -> StoreResult<usize> {
        Ok(self
            .conn
            .prepare_cached(
                "UPDATE outbound_queue SET status = 'bounced', last_error = ?, lease_owner = NULL, lease_until = NULL,
                     updated_at = ? WHERE account_id = ? AND message_id = ? AND recipient = ? AND status <> 'bounced'",
            )?
            .execute(params![why, now_ms(), self.account.0, message.0, recipient])?)
    }

    fn mark_sole_recipient_bounced(&mut self, message: MessageId, why: &str) -> StoreResult<usize> {
        Ok(self
            .conn
            .prepare_cached(
                "UPDATE outbound_queue SET status = 'bounced', last_error = ?1,
                     lease_owner = NULL, lease_until = NULL, updated_at = ?2
                 WHERE account_id = ?3 AND message_id = ?4 AND status <> 'bounced'
                   AND (SELECT COUNT(*) FROM outbound_queue WHERE message_id = ?4) = 1",
            )?
            .execute(params![why, now_ms(), self.account.0, message.0])?)
    }
}

/// The ticket holding the first message stored under `message_id`; with `direction`, only
/// a message that went that way.
fn ticket_of_message_id(
    conn: &Conn,
    account: AccountId,
    message_id: &str,
    direction: Option<Direction>,
) -> StoreResult<Option<TicketId>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT ticket_id FROM messages WHERE {BY_MESSAGE_ID}
           AND (?3 IS NULL OR direction = ?3)
         ORDER BY id LIMIT 1"
    ))?;
    Ok(st
        .query_row(
            params![account.0, message_id, direction.map(Direction::as_str)],
            |r| r.get(0).map(TicketId),
        )
        .optional()?)
}

fn add_event(
    conn: &Conn,
    account: AccountId,
    ticket: TicketId,
    kind: &str,
    data: &serde_json::Value,
    now: i64,
) -> StoreResult<()> {
    let mut st = conn.prepare_cached(
        "INSERT INTO ticket_events (account_id, ticket_id, kind, data, created_at) VALUES (?, ?, ?, ?, ?)",
    )?;
    st.execute(params![account.0, ticket.0, kind, data.to_string(), now])?;
    Ok(())
}

fn insert_message(conn: &Conn, m: &NewMessage, filing: &Filing<'_>) -> StoreResult<MessageId> {
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
                filing.ticket.0,
                filing.direction.as_str(),
                m.source,
                m.message_id,
                filing.dedup_key,
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
                filing.classification,
                filing.reason.as_str(),
                json(&filing.flags),
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
    Ok(MessageId(id))
}

/// Records an import job's checkpoint and counters (inside the batch's transaction).
pub(super) fn store_import_checkpoint(
    conn: &Conn,
    c: &ImportCheckpoint,
) -> StoreResult<IntakeOutcome> {
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

/// Stores a quarantine entry, once: a sender retrying the same bytes finds the first one.
pub(super) fn store_quarantine(
    conn: &Conn,
    q: &NewQuarantine,
    status: QuarantineStatus,
) -> StoreResult<IntakeOutcome> {
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
        status.as_str(),
        q.received_at
    ])?;
    Ok(IntakeOutcome::Quarantined {
        id: conn.last_insert_rowid(),
    })
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

/// Content-addressed bytes: stored once whatever the number of messages using them.
/// `packed` is their zstd frame when the caller compressed them (off the writer thread);
/// without it they are stored as they are.
pub(super) fn put_blob(
    conn: &Conn,
    sha256: &str,
    data: &[u8],
    packed: Option<&[u8]>,
) -> StoreResult<()> {
    let (stored, compression) = match packed {
        Some(frame) => (frame, Some(super::blob_codec::ZSTD)),
        None => (data, None),
    };
    super::blob_codec::insert(conn, sha256, data.len() as i64, stored, compression)
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
        let find = |account, id: &str, ours: bool| {
            ticket_of_message_id(
                &conn,
                AccountId(account),
                id,
                ours.then_some(Direction::Outbound),
            )
            .expect("lookup")
            .map(|t| t.0)
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
