//! Import jobs: one row per historic mailbox import, with its checkpoint and counters (the
//! writer updates those with each batch, see `ImportCheckpoint`), its status and its result.

use super::{now_ms, Store, StoreError};
use crate::domain::{AccountId, ImportTotals};
use rusqlite::OptionalExtension;
use serde::Serialize;

/// Where an import job stands.
pub mod status {
    pub const QUEUED: &str = "queued";
    pub const RUNNING: &str = "running";
    /// Its process stopped without finishing (killed, crashed, server shut down): run the
    /// same import again to resume.
    pub const INTERRUPTED: &str = "interrupted";
    pub const CANCELLED: &str = "cancelled";
    pub const FAILED: &str = "failed";
    pub const COMPLETED: &str = "completed";

    /// Ended without completing: such a job can be resumed (or discarded).
    pub fn is_stopped(status: &str) -> bool {
        [FAILED, INTERRUPTED, CANCELLED].contains(&status)
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ImportJobView {
    pub id: i64,
    pub account_id: i64,
    /// mbox, maildir, eml or imap.
    pub kind: String,
    /// The file, folder or server (never a password).
    pub source: String,
    /// queued, running, interrupted, cancelled, failed, completed.
    pub status: String,
    #[schema(value_type = Object)]
    pub options: serde_json::Value,
    /// Source position of the last message of the last committed batch.
    pub checkpoint: Option<String>,
    /// Messages read from the source and staged for the second pass (once it is read).
    pub staged: Option<i64>,
    #[serde(flatten)]
    pub totals: ImportTotals,
    /// Known when the job has finished.
    pub tickets_created: Option<i64>,
    pub tickets_merged: Option<i64>,
    pub cancel_requested: bool,
    pub error: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    /// When its kept files were deleted on request; it can no longer be resumed.
    pub discarded_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(sqlx::FromRow)]
struct JobRow {
    id: i64,
    account_id: i64,
    kind: String,
    source: String,
    status: String,
    options: String,
    checkpoint: Option<String>,
    staged: Option<i64>,
    seen: i64,
    imported: i64,
    duplicates: i64,
    quarantined: i64,
    skipped: i64,
    bytes: i64,
    tickets_created: Option<i64>,
    tickets_merged: Option<i64>,
    cancel_requested: bool,
    error: Option<String>,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    updated_at: i64,
    discarded_at: Option<i64>,
}

const COLUMNS: &str =
    "id, account_id, kind, source, status, options, checkpoint, staged, seen, imported,
    duplicates, quarantined, skipped, bytes, tickets_created, tickets_merged, cancel_requested,
    error, created_at, started_at, finished_at, updated_at, discarded_at";

fn time(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn view(r: JobRow) -> ImportJobView {
    ImportJobView {
        id: r.id,
        account_id: r.account_id,
        kind: r.kind,
        source: r.source,
        status: r.status,
        options: serde_json::from_str(&r.options).unwrap_or(serde_json::Value::Null),
        checkpoint: r.checkpoint,
        staged: r.staged,
        totals: ImportTotals {
            seen: r.seen,
            imported: r.imported,
            duplicates: r.duplicates,
            quarantined: r.quarantined,
            skipped: r.skipped,
            bytes: r.bytes,
        },
        tickets_created: r.tickets_created,
        tickets_merged: r.tickets_merged,
        cancel_requested: r.cancel_requested,
        error: r.error,
        created_at: time(r.created_at),
        started_at: r.started_at.map(time),
        finished_at: r.finished_at.map(time),
        updated_at: time(r.updated_at),
        discarded_at: r.discarded_at.map(time),
    }
}

/// What a new job is.
pub struct NewImportJob<'a> {
    pub account: AccountId,
    pub kind: &'a str,
    pub source: &'a str,
    pub source_key: &'a str,
    pub options: &'a serde_json::Value,
    pub created_by: &'a str,
}

impl Store {
    pub async fn create_import_job(&self, job: &NewImportJob<'_>) -> Result<i64, StoreError> {
        let account = job.account;
        let kind = job.kind.to_string();
        let source = job.source.to_string();
        let source_key = job.source_key.to_string();
        let options = job.options.to_string();
        let created_by = job.created_by.to_string();
        let now = now_ms();
        self.write(move |conn| {
            super::accounts::require_account(conn, account)?;
            Ok(conn.query_row(
                "INSERT INTO import_jobs (account_id, kind, source, source_key, options, status,
                                         created_by, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6, ?7, ?7) RETURNING id",
                (
                    account.0,
                    &kind,
                    &source,
                    &source_key,
                    &options,
                    &created_by,
                    now,
                ),
                |r| r.get(0),
            )?)
        })
        .await
    }

    /// The unfinished job of this same import (same account, source and options), if any:
    /// running it again resumes it.
    pub async fn resumable_import_job(
        &self,
        account: AccountId,
        source_key: &str,
    ) -> Result<Option<ImportJobView>, StoreError> {
        let row: Option<JobRow> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM import_jobs
             WHERE account_id = ? AND source_key = ? AND status NOT IN ('completed')
               AND discarded_at IS NULL
             ORDER BY id DESC LIMIT 1"
        ))
        .bind(account.0)
        .bind(source_key)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(view))
    }

    /// One job of the account (`None` also for another account's job).
    pub async fn import_job(
        &self,
        account: AccountId,
        id: i64,
    ) -> Result<Option<ImportJobView>, StoreError> {
        let row: Option<JobRow> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM import_jobs WHERE id = ? AND account_id = ?"
        ))
        .bind(id)
        .bind(account.0)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(view))
    }

    pub async fn import_jobs(&self, account: AccountId) -> Result<Vec<ImportJobView>, StoreError> {
        let rows: Vec<JobRow> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM import_jobs WHERE account_id = ? ORDER BY id DESC LIMIT 500"
        ))
        .bind(account.0)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(view).collect())
    }

    /// A page of the account's jobs, newest first: at most `limit` with an id below
    /// `before` (all when `None`).
    pub async fn import_jobs_page(
        &self,
        account: AccountId,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<ImportJobView>, StoreError> {
        let rows: Vec<JobRow> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM import_jobs WHERE account_id = ? AND id < ?
             ORDER BY id DESC LIMIT ?"
        ))
        .bind(account.0)
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(view).collect())
    }

    /// The end of a dry run: what it counted (it wrote nothing else).
    pub async fn record_dry_run(
        &self,
        id: i64,
        counters: &ImportTotals,
        final_status: &str,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let final_status = final_status.to_string();
        let c = *counters;
        self.write(move |conn| {
            conn.execute(
                "UPDATE import_jobs SET status = ?1, seen = ?2, imported = ?3, duplicates = ?4,
                        quarantined = ?5, skipped = ?6, bytes = ?7, finished_at = ?8, updated_at = ?8
                 WHERE id = ?9",
                rusqlite::params![
                    &final_status,
                    c.seen,
                    c.imported,
                    c.duplicates,
                    c.quarantined,
                    c.skipped,
                    c.bytes,
                    now,
                    id
                ],
            )?;
            Ok(())
        })
        .await
    }

    /// The job starts (or starts again) running.
    pub async fn start_import_job(&self, id: i64) -> Result<(), StoreError> {
        let now = now_ms();
        self.write(move |conn| {
            conn.execute(
                "UPDATE import_jobs SET status = 'running', error = NULL, cancel_requested = 0,
                        started_at = COALESCE(started_at, ?1), finished_at = NULL,
                        tickets_created = NULL, tickets_merged = NULL, updated_at = ?1
                 WHERE id = ?2",
                (now, id),
            )?;
            Ok(())
        })
        .await
    }

    /// The first pass is complete: `staged` messages wait in the staging file; `seen`,
    /// `skipped` and `bytes` are the source's totals. The second pass starts from nothing.
    pub async fn set_import_staged(
        &self,
        id: i64,
        staged: i64,
        seen: i64,
        skipped: i64,
        bytes: i64,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        self.write(move |conn| {
            conn.execute(
                "UPDATE import_jobs SET staged = ?1, seen = ?2, skipped = ?3, bytes = ?4,
                        imported = 0, duplicates = 0, quarantined = 0, checkpoint = NULL,
                        updated_at = ?5 WHERE id = ?6",
                (staged, seen, skipped, bytes, now, id),
            )?;
            Ok(())
        })
        .await
    }

    /// Asks a running job to stop after its current batch (it stays resumable). Returns
    /// `false` when the account has no such job; a finished job is left as it is.
    pub async fn request_import_cancel(
        &self,
        account: AccountId,
        id: i64,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        self.write(move |conn| {
            let found: Option<String> = conn
                .query_row(
                    "SELECT status FROM import_jobs WHERE id = ?1 AND account_id = ?2",
                    (id, account.0),
                    |r| r.get(0),
                )
                .optional()?;
            let Some(current) = found else {
                return Ok(false);
            };
            if current == status::QUEUED {
                conn.execute(
                    "UPDATE import_jobs SET status = 'cancelled', cancel_requested = 1,
                            finished_at = ?1, updated_at = ?1
                     WHERE id = ?2 AND status = 'queued'",
                    (now, id),
                )?;
            } else if current == status::RUNNING {
                conn.execute(
                    "UPDATE import_jobs SET cancel_requested = 1, updated_at = ?1 WHERE id = ?2",
                    (now, id),
                )?;
            }
            Ok(true)
        })
        .await
    }

    /// Marks a stopped job (failed, interrupted, cancelled) as discarded: it will not be
    /// resumed. Returns false when the job is not stopped (or already discarded).
    pub async fn discard_import_job(
        &self,
        account: AccountId,
        id: i64,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        self.write(move |conn| {
            let done = conn.execute(
                "UPDATE import_jobs SET discarded_at = ?1, updated_at = ?1
                 WHERE id = ?2 AND account_id = ?3 AND discarded_at IS NULL
                   AND status IN ('failed', 'interrupted', 'cancelled')",
                (now, id, account.0),
            )?;
            Ok(done == 1)
        })
        .await
    }

    /// A job stopped by its cancel token on a user's request ends `cancelled`.
    pub async fn mark_import_cancelled(&self, id: i64) -> Result<(), StoreError> {
        let now = now_ms();
        self.write(move |conn| {
            conn.execute(
                "UPDATE import_jobs SET status = 'cancelled', cancel_requested = 1, updated_at = ?1
                 WHERE id = ?2 AND status = 'interrupted'",
                (now, id),
            )?;
            Ok(())
        })
        .await
    }

    pub async fn import_cancel_requested(&self, id: i64) -> Result<bool, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT cancel_requested FROM import_jobs WHERE id = ?")
                .bind(id)
                .fetch_optional(self.pool())
                .await?
                .unwrap_or(false),
        )
    }

    /// Ends a job. A completed job reopens the `open_newest` newest tickets it created, and
    /// records how many tickets it created and how many existing ones it added history to.
    pub async fn finish_import_job(
        &self,
        id: i64,
        final_status: &str,
        error: Option<&str>,
        open_newest: u32,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let final_status = final_status.to_string();
        let error = error.map(str::to_string);
        self.write(move |conn| {
            if final_status == status::COMPLETED && open_newest > 0 {
                conn.execute(
                    "UPDATE tickets SET status = 'open', closed_at = NULL
                     WHERE id IN (SELECT id FROM tickets WHERE import_job_id = ?1
                                    AND merged_into IS NULL
                                  ORDER BY updated_at DESC, id DESC LIMIT ?2)",
                    (id, i64::from(open_newest)),
                )?;
            }
            let created: i64 = conn.query_row(
                "SELECT count(*) FROM tickets WHERE import_job_id = ?1 AND merged_into IS NULL",
                [id],
                |r| r.get(0),
            )?;
            let merged: i64 = conn.query_row(
                "SELECT count(DISTINCT m.ticket_id) FROM messages m
                 JOIN tickets t ON t.id = m.ticket_id
                 WHERE m.import_job_id = ?1 AND t.import_job_id IS NOT ?1",
                [id],
                |r| r.get(0),
            )?;
            conn.execute(
                "UPDATE import_jobs SET status = ?1, error = ?2, tickets_created = ?3,
                        tickets_merged = ?4, finished_at = ?5, updated_at = ?5 WHERE id = ?6",
                (&final_status, &error, created, merged, now, id),
            )?;
            Ok(())
        })
        .await
    }

    /// API jobs (run by `postern serve`) left `running` or `queued` by a server that stopped
    /// become `interrupted`; called at start, before the server runs any. Jobs of the CLI
    /// are not touched: a `postern import` may be running beside the server.
    pub async fn mark_server_imports_interrupted(&self) -> Result<u64, StoreError> {
        let now = now_ms();
        self.write(move |conn| {
            let changed = conn.execute(
                "UPDATE import_jobs SET status = 'interrupted', updated_at = ?1
                 WHERE status IN ('running', 'queued') AND created_by IS NOT 'cli'",
                [now],
            )?;
            Ok(changed as u64)
        })
        .await
    }

    /// Which of these dedup keys the account already has (a dry run's duplicate count).
    pub async fn existing_dedup_keys(
        &self,
        account: AccountId,
        keys: &[String],
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        let mut found = std::collections::HashSet::new();
        for chunk in keys.chunks(500) {
            let placeholders = vec!["?"; chunk.len()].join(",");
            let sql = format!(
                "SELECT dedup_key FROM messages WHERE account_id = ? AND dedup_key IN ({placeholders})"
            );
            let mut q = sqlx::query_scalar::<_, String>(&sql).bind(account.0);
            for k in chunk {
                q = q.bind(k);
            }
            found.extend(q.fetch_all(self.pool()).await?);
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_fixtures::store_with_account;

    async fn job(store: &Store, account: AccountId, created_by: &str) -> i64 {
        store
            .create_import_job(&NewImportJob {
                account,
                kind: "mbox",
                source: "/tmp/a.mbox",
                source_key: "mbox:/tmp/a.mbox",
                options: &serde_json::json!({"open_newest": 2}),
                created_by,
            })
            .await
            .unwrap()
    }

    async fn status_of(store: &Store, account: AccountId, id: i64) -> (String, bool) {
        let j = store.import_job(account, id).await.unwrap().unwrap();
        (j.status, j.cancel_requested)
    }

    #[tokio::test]
    async fn a_job_of_an_unknown_account_is_not_found_and_not_created() {
        let (_dir, store, _) = store_with_account().await;
        let err = store
            .create_import_job(&NewImportJob {
                account: AccountId(999),
                kind: "mbox",
                source: "a",
                source_key: "a",
                options: &serde_json::json!({}),
                created_by: "api",
            })
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::NotFound(m) if m == "no account with id 999"),
            "{err}"
        );
        assert!(store.import_jobs(AccountId(999)).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn cancelling_ends_a_queued_job_flags_a_running_one_and_ignores_others() {
        let (_dir, store, account) = store_with_account().await;
        let queued = job(&store, account, "api").await;
        let running = job(&store, account, "api").await;
        store.start_import_job(running).await.unwrap();
        assert!(!store.request_import_cancel(account, 999).await.unwrap());
        assert!(!store
            .request_import_cancel(AccountId(account.0 + 1), queued)
            .await
            .unwrap());
        assert_eq!(
            status_of(&store, account, queued).await,
            (status::QUEUED.into(), false)
        );
        assert!(store.request_import_cancel(account, queued).await.unwrap());
        assert_eq!(
            status_of(&store, account, queued).await,
            (status::CANCELLED.into(), true)
        );
        assert!(store.request_import_cancel(account, running).await.unwrap());
        assert_eq!(
            status_of(&store, account, running).await,
            (status::RUNNING.into(), true)
        );
        assert!(store.import_cancel_requested(running).await.unwrap());
    }

    #[tokio::test]
    async fn a_finished_job_counts_its_tickets_and_reopens_the_newest() {
        let (_dir, store, account) = store_with_account().await;
        let id = job(&store, account, "cli").await;
        store.start_import_job(id).await.unwrap();
        store
            .write(move |conn| {
                for at in [10, 20, 30] {
                    conn.execute(
                        "INSERT INTO tickets (account_id, subject, normalized_subject, status,
                                              created_at, updated_at, closed_at, import_job_id)
                         VALUES (?1, 's', 's', 'closed', ?2, ?2, ?2, ?3)",
                        (account.0, at, id),
                    )?;
                }
                Ok(())
            })
            .await
            .unwrap();
        store
            .finish_import_job(id, status::COMPLETED, None, 2)
            .await
            .unwrap();
        let j = store.import_job(account, id).await.unwrap().unwrap();
        assert_eq!(j.status, status::COMPLETED);
        assert_eq!((j.tickets_created, j.tickets_merged), (Some(3), Some(0)));
        assert!(j.finished_at.is_some());
        let open: Vec<i64> = sqlx::query_scalar(
            "SELECT updated_at FROM tickets WHERE status = 'open' AND closed_at IS NULL
             ORDER BY updated_at",
        )
        .fetch_all(store.pool())
        .await
        .unwrap();
        assert_eq!(open, vec![20, 30]);
        // A server that starts again leaves a CLI job alone, and interrupts its own.
        let api = job(&store, account, "api").await;
        let cli = job(&store, account, "cli").await;
        store.start_import_job(cli).await.unwrap();
        assert_eq!(store.mark_server_imports_interrupted().await.unwrap(), 1);
        assert_eq!(status_of(&store, account, api).await.0, status::INTERRUPTED);
        assert_eq!(status_of(&store, account, cli).await.0, status::RUNNING);
        assert!(store.discard_import_job(account, api).await.unwrap());
        assert!(!store.discard_import_job(account, api).await.unwrap());
        assert!(!store.discard_import_job(account, id).await.unwrap());
    }
}
