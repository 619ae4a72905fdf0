//! Group commit: one task owns the writing connection and commits the messages of all
//! sessions in shared transactions. Each session waits for the commit (fsync'd, since the
//! database runs with synchronous=FULL) that holds its message, then answers 250.

use super::intake::{Intake, IntakeOutcome};
use super::threading::{store_message, store_quarantine, ThreadingConfig};
use super::StoreError;
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
    pub fn spawn(
        conn: SqliteConnection,
        batch_max: usize,
        threading: ThreadingConfig,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(batch_max.max(1) * 4);
        let handle = tokio::spawn(run(conn, rx, batch_max.max(1), threading));
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

async fn run(
    mut conn: SqliteConnection,
    mut rx: mpsc::Receiver<Job>,
    batch_max: usize,
    threading: ThreadingConfig,
) {
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
        let results = commit_batch(&mut conn, &batch, &threading).await;
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
    threading: &ThreadingConfig,
) -> Result<Vec<Result<Vec<IntakeOutcome>, StoreError>>, StoreError> {
    let mut tx = conn.begin().await?;
    let mut results = Vec::with_capacity(batch.len());
    for job in batch {
        let mut sp = tx.begin().await?;
        let mut outcomes = Vec::with_capacity(job.items.len());
        let mut failed = None;
        for item in &job.items {
            let r = match item {
                Intake::Message(m) => store_message(&mut sp, threading, m).await,
                Intake::Quarantine(q) => store_quarantine(&mut sp, q, "held").await,
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
