//! Group commit: one task owns the writing connection and commits the messages of all
//! sessions in shared transactions. Each session waits for the commit (fsync'd, since the
//! database runs with synchronous=FULL) that holds its message, then answers 250.

use super::intake::{Intake, IntakeOutcome, NewMessage, NewQuarantine};
use super::{now_ms, StoreError};
use crate::domain::{MessageId, TicketId};
use sha2::{Digest, Sha256};
use sqlx::{Connection, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

struct Job {
    items: Vec<Intake>,
    reply: oneshot::Sender<Result<Vec<IntakeOutcome>, StoreError>>,
}

/// Handle to the writer task; cheap to clone.
#[derive(Clone)]
pub struct CommitWriter {
    jobs: mpsc::Sender<Job>,
}

impl CommitWriter {
    /// Starts the writer on `conn`. It stops when every handle is dropped.
    pub fn spawn(conn: SqliteConnection, batch_max: usize) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(batch_max.max(1) * 4);
        let handle = tokio::spawn(run(conn, rx, batch_max.max(1)));
        (Self { jobs: tx }, handle)
    }

    /// Stores `items` atomically (all or none) and returns once they are durable.
    pub async fn submit(&self, items: Vec<Intake>) -> Result<Vec<IntakeOutcome>, StoreError> {
        let (reply, wait) = oneshot::channel();
        self.jobs
            .send(Job { items, reply })
            .await
            .map_err(|_| StoreError::WriterGone)?;
        wait.await.map_err(|_| StoreError::WriterGone)?
    }
}

async fn run(mut conn: SqliteConnection, mut rx: mpsc::Receiver<Job>, batch_max: usize) {
    let mut batch: Vec<Job> = Vec::with_capacity(batch_max);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < batch_max {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let started = std::time::Instant::now();
        let results = commit_batch(&mut conn, &batch).await;
        tracing::debug!(
            jobs = batch.len(),
            micros = started.elapsed().as_micros() as u64,
            "group commit"
        );
        match results {
            Ok(per_job) => {
                for (job, result) in batch.drain(..).zip(per_job) {
                    let _ = job.reply.send(result);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, jobs = batch.len(), "group commit failed");
                for job in batch.drain(..) {
                    let err = match &e {
                        StoreError::DiskFull(msg) => StoreError::DiskFull(msg.clone()),
                        other => StoreError::Invalid(format!("commit failed: {other}")),
                    };
                    let _ = job.reply.send(Err(err));
                }
            }
        }
    }
    let _ = conn.close().await;
}

/// One transaction for the whole batch, one savepoint per job so that a failing job
/// does not take the others down.
async fn commit_batch(
    conn: &mut SqliteConnection,
    batch: &[Job],
) -> Result<Vec<Result<Vec<IntakeOutcome>, StoreError>>, StoreError> {
    let mut tx = conn.begin().await?;
    let mut results = Vec::with_capacity(batch.len());
    for job in batch {
        let mut sp = tx.begin().await?;
        let mut outcomes = Vec::with_capacity(job.items.len());
        let mut failed = None;
        for item in &job.items {
            let r = match item {
                Intake::Message(m) => store_message(&mut sp, m).await,
                Intake::Quarantine(q) => store_quarantine(&mut sp, q).await,
            };
            match r {
                Ok(o) => outcomes.push(o),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        match failed {
            None => {
                sp.commit().await?;
                results.push(Ok(outcomes));
            }
            Some(e) => {
                // SQLite rolls the whole transaction back by itself on some errors (disk
                // full, I/O): then the savepoint is gone and the batch fails as a whole.
                if sp.rollback().await.is_err() {
                    return Err(e);
                }
                results.push(Err(e));
            }
        }
    }
    tx.commit().await?;
    Ok(results)
}

async fn put_blob(
    conn: &mut SqliteConnection,
    sha256: &str,
    data: &[u8],
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO blobs (sha256, size, data) VALUES (?, ?, ?) ON CONFLICT DO NOTHING")
        .bind(sha256)
        .bind(data.len() as i64)
        .bind(data)
        .execute(conn)
        .await?;
    Ok(())
}

async fn store_quarantine(
    conn: &mut SqliteConnection,
    q: &NewQuarantine,
) -> Result<IntakeOutcome, StoreError> {
    // A sender retrying the same bytes must not fill the quarantine twice.
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
                                 source_position, received_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(q.account_id.map(|a| a.0))
    .bind(&q.reason)
    .bind(&q.detail)
    .bind(&q.raw_sha256)
    .bind(q.raw.len() as i64)
    .bind(&q.envelope_json)
    .bind(q.source)
    .bind(&q.source_position)
    .bind(q.received_at)
    .fetch_one(conn)
    .await?;
    Ok(IntakeOutcome::Quarantined { id })
}

/// Subject as used for matching: lower case, single spaces. (The threading work refines it.)
fn normalize_subject(subject: &str) -> String {
    subject
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

async fn store_message(
    conn: &mut SqliteConnection,
    m: &NewMessage,
) -> Result<IntakeOutcome, StoreError> {
    let account = m.account_id.0;
    if let Some((message, ticket)) = sqlx::query_as::<_, (i64, i64)>(
        "SELECT id, ticket_id FROM messages WHERE account_id = ? AND dedup_key = ?",
    )
    .bind(account)
    .bind(&m.dedup_key)
    .fetch_optional(&mut *conn)
    .await?
    {
        return Ok(IntakeOutcome::Duplicate {
            message: MessageId(message),
            ticket: TicketId(ticket),
        });
    }
    put_blob(conn, &m.raw_sha256, &m.raw).await?;
    let now = now_ms();
    let customer: i64 = sqlx::query_scalar(
        "INSERT INTO customers (account_id, email, name, created_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (account_id, email) DO UPDATE SET name = COALESCE(customers.name, excluded.name)
         RETURNING id",
    )
    .bind(account)
    .bind(&m.from.address)
    .bind(&m.from.name)
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    let subject = if m.subject.trim().is_empty() {
        "(no subject)".to_string()
    } else {
        m.subject.clone()
    };
    let ticket: i64 = sqlx::query_scalar(
        "INSERT INTO tickets (account_id, subject, normalized_subject, status, customer_id,
                              support_address_id, created_at, updated_at, last_customer_message_at)
         VALUES (?, ?, ?, 'open', ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(account)
    .bind(&subject)
    .bind(normalize_subject(&m.subject))
    .bind(customer)
    .bind(m.support_address_id.map(|s| s.0))
    .bind(m.received_at)
    .bind(m.received_at)
    .bind(m.received_at)
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO ticket_participants (ticket_id, email, role) VALUES (?, ?, 'customer')
         ON CONFLICT DO NOTHING",
    )
    .bind(ticket)
    .bind(&m.from.address)
    .execute(&mut *conn)
    .await?;
    let to_json = serde_json::to_string(&m.to).unwrap_or_else(|_| "[]".into());
    let cc_json = serde_json::to_string(&m.cc).unwrap_or_else(|_| "[]".into());
    let refs_json = serde_json::to_string(&m.references).unwrap_or_else(|_| "[]".into());
    let message: i64 = sqlx::query_scalar(
        "INSERT INTO messages (account_id, ticket_id, direction, source, message_id, dedup_key,
                               in_reply_to, references_list, from_address, from_name, to_list,
                               cc_list, reply_to, subject, sent_at, received_at, text_body,
                               html_body, raw_sha256, size, envelope, support_address_id)
         VALUES (?, ?, 'inbound', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         RETURNING id",
    )
    .bind(account)
    .bind(ticket)
    .bind(m.source)
    .bind(&m.message_id)
    .bind(&m.dedup_key)
    .bind(&m.in_reply_to)
    .bind(refs_json)
    .bind(&m.from.address)
    .bind(&m.from.name)
    .bind(to_json)
    .bind(cc_json)
    .bind(&m.reply_to)
    .bind(&m.subject)
    .bind(m.sent_at)
    .bind(m.received_at)
    .bind(&m.text_body)
    .bind(&m.html_body)
    .bind(&m.raw_sha256)
    .bind(m.raw.len() as i64)
    .bind(&m.envelope_json)
    .bind(m.support_address_id.map(|s| s.0))
    .fetch_one(&mut *conn)
    .await?;
    for referenced in m.in_reply_to.iter().chain(m.references.iter()) {
        sqlx::query(
            "INSERT INTO message_references (account_id, referenced, message_id) VALUES (?, ?, ?)
             ON CONFLICT DO NOTHING",
        )
        .bind(account)
        .bind(referenced)
        .bind(message)
        .execute(&mut *conn)
        .await?;
    }
    for a in &m.attachments {
        let sha = hex::encode(Sha256::digest(&a.data));
        put_blob(conn, &sha, &a.data).await?;
        sqlx::query(
            "INSERT INTO attachments (message_id, filename, content_type, size, content_id,
                                      disposition, blob_sha256)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(message)
        .bind(&a.filename)
        .bind(&a.content_type)
        .bind(a.data.len() as i64)
        .bind(&a.content_id)
        .bind(if a.inline { "inline" } else { "attachment" })
        .bind(sha)
        .execute(&mut *conn)
        .await?;
    }
    Ok(IntakeOutcome::Stored {
        message: MessageId(message),
        ticket: TicketId(ticket),
    })
}
