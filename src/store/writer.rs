//! Group commit: one thread owns the writing connection and commits the messages of all
//! sessions in shared transactions. Each session waits for the commit (fsync'd, since the
//! database runs with synchronous=FULL) that holds its message, then answers 250.
//!
//! The writer is a plain thread with its own rusqlite connection (the same bundled SQLite
//! as sqlx's pool) and prepared statements: going through sqlx's async connection costs a
//! hand-off to its worker thread for every statement, and with a dozen statements per
//! message that, not the disk, was what limited intake. WAL checkpoints run on another
//! thread so that commits never wait for pages to be copied into the database file.

use super::intake::{Intake, IntakeOutcome};
use super::threading_repository::{MessageFiler, QuarantineStatus};
use super::threading_sqlite::{store_import_checkpoint, store_quarantine, SqliteThreading};
use super::StoreError;
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// The database file the writer and the checkpointer open, with the settings they need.
#[derive(Debug, Clone)]
pub struct DatabaseFile {
    pub path: PathBuf,
    /// Largest size in bytes (0: no cap); beyond it writes fail as "disk full".
    pub max_size: u64,
    /// Gather WAL appends into one write per commit (`store.wal_append_buffer`).
    pub wal_append_buffer: bool,
}

impl DatabaseFile {
    pub fn new(path: &Path, max_size: u64) -> Self {
        Self {
            path: path.to_path_buf(),
            max_size,
            wal_append_buffer: true,
        }
    }

    pub(super) fn open(&self) -> Result<Connection, StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        // WAL appends gathered into one write per commit (wal_append_buffer.rs); it needs
        // synchronous=FULL, set below before anything is written.
        let vfs = match self.wal_append_buffer {
            true => super::wal_append_buffer::vfs_name(),
            false => None,
        };
        let conn = match vfs {
            Some(vfs) => Connection::open_with_flags_and_vfs(&self.path, flags, vfs)?,
            None => Connection::open_with_flags(&self.path, flags)?,
        };
        super::connection_settings::apply(&conn, super::connection_settings::Role::Writer)?;
        if self.max_size > 0 {
            let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
            let pages = super::connection_settings::max_page_count(self.max_size, page_size);
            conn.pragma_update(None, "max_page_count", pages)?;
        }
        conn.set_prepared_statement_cache_capacity(64);
        super::body_codec::register(&conn)?;
        Ok(conn)
    }
}

struct Job {
    items: Vec<Intake>,
    reply: oneshot::Sender<Result<Vec<IntakeOutcome>, StoreError>>,
}

/// Handle to the writer thread; cheap to clone.
#[derive(Clone)]
pub struct CommitWriter {
    jobs: mpsc::Sender<Job>,
}

/// Told of every group commit: how long it took and how many jobs it held (metrics).
pub type CommitObserver = Box<dyn Fn(Duration, usize) + Send>;

impl CommitWriter {
    /// Starts the writer (and its checkpointer) on `db`. They stop when every handle is
    /// dropped, after committing what they hold; the returned task ends then.
    pub fn spawn(
        db: &DatabaseFile,
        batch_max: usize,
        filer: impl Into<Box<dyn MessageFiler>>,
        observer: CommitObserver,
    ) -> Result<(Self, tokio::task::JoinHandle<()>), StoreError> {
        let batch_max = batch_max.max(1);
        let filer = filer.into();
        let conn = db.open()?;
        let checkpoints = Checkpointer::start(db)?;
        let (tx, rx) = mpsc::channel(batch_max * 4);
        let (done, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("postern-writer".into())
            .spawn(move || {
                run(conn, rx, batch_max, &*filer, &observer, &checkpoints);
                checkpoints.stop();
                let _ = done.send(());
            })
            .map_err(|e| StoreError::Internal(format!("cannot start the writer thread: {e}")))?;
        let handle = tokio::spawn(async move {
            let _ = stopped.await;
        });
        Ok((Self { jobs: tx }, handle))
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

fn run(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Job>,
    batch_max: usize,
    filer: &dyn MessageFiler,
    observer: &CommitObserver,
    checkpoints: &Checkpointer,
) {
    let mut batch: Vec<Job> = Vec::with_capacity(batch_max);
    let dropper = Dropper::start();
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < batch_max {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let started = std::time::Instant::now();
        let results = commit_batch(&mut conn, &batch, filer);
        let took = started.elapsed();
        checkpoints.nudge();
        observer(took, batch.len());
        tracing::debug!(
            jobs = batch.len(),
            micros = took.as_micros() as u64,
            "group commit"
        );
        match results {
            Ok(per_job) => {
                let mut stored = Vec::with_capacity(batch.len());
                for (job, result) in batch.drain(..).zip(per_job) {
                    let _ = job.reply.send(result);
                    stored.push(job.items);
                }
                dropper.discard(stored);
            }
            Err(e) => {
                tracing::error!(error = %e, jobs = batch.len(), "group commit failed");
                for job in batch.drain(..) {
                    let err = match &e {
                        StoreError::DiskFull(msg) => StoreError::DiskFull(msg.clone()),
                        other => StoreError::Internal(format!("commit failed: {other}")),
                    };
                    let _ = job.reply.send(Err(err));
                }
            }
        }
    }
}

/// Frees committed items on a thread of its own: a batch of an import holds hundreds of
/// megabytes of buffers, and freeing them was a thirtieth of the writer's time.
struct Dropper {
    items: Option<std::sync::mpsc::SyncSender<Vec<Vec<Intake>>>>,
}

impl Dropper {
    fn start() -> Self {
        // Bounded: should freeing ever fall behind, the writer waits rather than memory grow.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Vec<Intake>>>(2);
        let started = std::thread::Builder::new()
            .name("postern-free".into())
            .spawn(move || while rx.recv().is_ok() {});
        // Without the thread, the writer frees them itself.
        Self {
            items: started.ok().map(|_| tx),
        }
    }

    fn discard(&self, items: Vec<Vec<Intake>>) {
        if let Some(tx) = &self.items {
            let _ = tx.send(items);
        }
    }
}

fn store_items(
    conn: &Connection,
    items: &[Intake],
    filer: &dyn MessageFiler,
) -> Result<Vec<IntakeOutcome>, StoreError> {
    // An import checkpoint carries the job's totals before this job's items; what became of
    // those (stored, duplicate, quarantined) is only known here, in the same transaction.
    let mut tally = [0i64; 3];
    let mut outcomes = Vec::with_capacity(items.len());
    for item in items {
        let outcome = match item {
            Intake::Message(m) => filer.file(&mut SqliteThreading::new(conn, m.account_id), m)?,
            Intake::Quarantine(q) => store_quarantine(conn, q, QuarantineStatus::Held)?,
            Intake::ImportCheckpoint(c) => {
                let mut c = c.clone();
                c.imported += tally[0];
                c.duplicates += tally[1];
                c.quarantined += tally[2];
                tally = [0; 3];
                store_import_checkpoint(conn, &c)?
            }
        };
        match outcome {
            IntakeOutcome::Stored { .. } => tally[0] += 1,
            IntakeOutcome::Duplicate { .. } => tally[1] += 1,
            IntakeOutcome::Quarantined { .. } => tally[2] += 1,
            IntakeOutcome::Checkpointed => {}
        }
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// One transaction for the whole batch. Jobs almost never fail, so the batch first runs
/// without savepoints (a savepoint makes SQLite copy every page it touches to a statement
/// journal); if a job fails, the batch is rolled back and run again with one savepoint per
/// job, so that the failing job does not take the others down.
fn commit_batch(
    conn: &mut Connection,
    batch: &[Job],
    filer: &dyn MessageFiler,
) -> Result<Vec<Result<Vec<IntakeOutcome>, StoreError>>, StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut results = Vec::with_capacity(batch.len());
    let mut failed = false;
    for job in batch {
        match store_items(&tx, &job.items, filer) {
            Ok(outcomes) => results.push(Ok(outcomes)),
            Err(e) if batch.len() == 1 => results.push(Err(e)),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    if !failed {
        if results.iter().all(Result::is_ok) {
            tx.commit()?;
        }
        // Else the batch's only job failed: dropping `tx` rolls it back.
        return Ok(results);
    }
    // Dropping rolls back (SQLite may already have, after disk full or an I/O error).
    drop(tx);
    commit_batch_isolated(conn, batch, filer)
}

/// The slow path of [`commit_batch`]: one savepoint per job.
fn commit_batch_isolated(
    conn: &mut Connection,
    batch: &[Job],
    filer: &dyn MessageFiler,
) -> Result<Vec<Result<Vec<IntakeOutcome>, StoreError>>, StoreError> {
    let mut tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut results = Vec::with_capacity(batch.len());
    for job in batch {
        let sp = tx.savepoint()?;
        match store_items(&sp, &job.items, filer) {
            Ok(outcomes) => {
                sp.commit()?;
                results.push(Ok(outcomes));
            }
            Err(e) => {
                // SQLite rolls the whole transaction back by itself on some errors (disk
                // full, I/O): then the savepoint is gone and the batch fails as a whole.
                if sp.is_autocommit() || sp.finish().is_err() {
                    return Err(e);
                }
                results.push(Err(e));
            }
        }
    }
    tx.commit()?;
    Ok(results)
}

/// Copies WAL frames into the database file in the background (PASSIVE: it never blocks
/// the writer or readers), so the WAL stays short and commits only append to it.
struct Checkpointer {
    stop: Arc<AtomicBool>,
    /// Set while the checkpointer sleeps for lack of work: only then does a nudge wake it
    /// (waking it during its gap between busy checkpoints cost a thread switch per commit).
    idle: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Checkpointer {
    fn start(db: &DatabaseFile) -> Result<Self, StoreError> {
        let conn = db.open()?;
        let stop = Arc::new(AtomicBool::new(false));
        let idle = Arc::new(AtomicBool::new(false));
        let (flag, sleeping) = (stop.clone(), idle.clone());
        let thread = std::thread::Builder::new()
            .name("postern-checkpoint".into())
            .spawn(move || checkpoint_loop(&conn, &flag, &sleeping))
            .map_err(|e| {
                StoreError::Internal(format!("cannot start the checkpoint thread: {e}"))
            })?;
        Ok(Self { stop, idle, thread })
    }

    /// A commit just landed: copy it now if the checkpointer was idle (see `checkpoint_loop`).
    fn nudge(&self) {
        if self.idle.swap(false, Ordering::Relaxed) {
            self.thread.thread().unpark();
        }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.thread().unpark();
        let _ = self.thread.join();
    }
}

fn checkpoint_loop(conn: &Connection, stop: &AtomicBool, idle: &AtomicBool) {
    // While mail flows, keep up: SQLite's own checkpoint on commit (the backstop) then finds
    // almost nothing left to copy and restarts the WAL cheaply. But not after every commit:
    // the pages that every commit changes (index leaves, the B-trees' upper levels) are
    // copied once for all the commits since the last checkpoint. Copying after each commit
    // took an eighth of the server's CPU under a stream of SMTP mail.
    const IDLE: Duration = Duration::from_millis(500);
    const BUSY: Duration = Duration::from_millis(200);
    // Quiet for this long, the WAL's disk space is given back (not between an import's
    // batches, which would put the cost of growing the file back on every batch).
    const QUIET: Duration = Duration::from_secs(2);
    let mut last = (0, 0);
    let mut moved = std::time::Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let started = std::time::Instant::now();
        let pause = match passive_checkpoint(conn) {
            // The WAL moved: more frames are probably coming, look again soon.
            Ok(now) if now != last => {
                last = now;
                moved = std::time::Instant::now();
                BUSY
            }
            Ok((frames, copied)) if frames > 0 && frames == copied && moved.elapsed() >= QUIET => {
                if let Ok(now) = truncating_checkpoint(conn) {
                    last = now;
                }
                IDLE
            }
            Ok(_) => IDLE,
            Err(e) => {
                tracing::warn!(error = %e, "WAL checkpoint failed; SQLite's own checkpoint takes over");
                IDLE
            }
        };
        idle.store(pause == IDLE, Ordering::Relaxed);
        std::thread::park_timeout(pause);
        idle.store(false, Ordering::Relaxed);
        // A commit's nudge wakes an idle checkpointer at once, a busy one not before the gap.
        let next = started + BUSY;
        loop {
            let now = std::time::Instant::now();
            if now >= next || stop.load(Ordering::Relaxed) {
                break;
            }
            std::thread::park_timeout(next - now);
        }
    }
    // Leave an empty WAL behind on a clean stop.
    if passive_checkpoint(conn).is_ok() {
        let _ = truncating_checkpoint(conn);
    }
}

/// Empties the WAL file when no reader needs it; gives up at once rather than wait (it
/// would hold off the writer meanwhile) and is tried again at the next pause.
fn truncating_checkpoint(conn: &Connection) -> Result<(i64, i64), StoreError> {
    conn.busy_timeout(Duration::ZERO)?;
    let result = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
        Ok((r.get(1)?, r.get(2)?))
    });
    conn.busy_timeout(Duration::from_secs(10))?;
    Ok(result?)
}

/// Runs one PASSIVE checkpoint; returns the frames in the WAL and how many of them are
/// now in the database file.
fn passive_checkpoint(conn: &Connection) -> Result<(i64, i64), StoreError> {
    Ok(conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get(1)?, r.get(2)?))
    })?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AccountId, EmailAddress};
    use crate::store::{Mailbox, MessageKind, NewMessage, Store};
    use std::sync::Arc;

    fn message(account: AccountId, id: &str, subject: &str) -> Intake {
        let raw = Arc::new(
            format!("Message-ID: <{id}>\r\nSubject: {subject}\r\n\r\nhi\r\n").into_bytes(),
        );
        Intake::Message(Box::new(NewMessage {
            account_id: account,
            support_address_id: None,
            message_id: Some(id.into()),
            dedup_key: id.into(),
            in_reply_to: None,
            references: vec![],
            from: Mailbox {
                name: None,
                address: format!("{id}@customer.test"),
            },
            to: vec![],
            cc: vec![],
            participants: vec![],
            reply_to: None,
            subject: subject.into(),
            sent_at: None,
            received_at: 1,
            text_body: Some("hi".into()),
            html_body: None,
            text_packed: None,
            html_packed: None,
            raw_sha256: format!("{id}-sha"),
            raw,
            raw_packed: None,
            envelope_json: "{}".into(),
            source: "smtp",
            attachments: vec![],
            kind: MessageKind::Normal,
            forwarded_from: None,
            stripped_text: Some("hi".into()),
            spoof_suspected: false,
            dmarc_pass_domain: None,
            auth_results: None,
            import_job: None,
        }))
    }

    /// A new database at `path` with one account.
    async fn store_with_account(path: &Path) -> (Store, AccountId) {
        let store = Store::open(path, 1).await.unwrap();
        let account = store
            .create_account(
                "A",
                &[EmailAddress::parse("support@a.test").unwrap()],
                None,
                "in.test",
            )
            .await
            .unwrap();
        (store, AccountId(account.id))
    }

    /// Files every message in a ticket of its own: the writer's tests need rows, not the
    /// threading order (ingest's, tested there).
    struct TicketPerMessage;

    impl MessageFiler for TicketPerMessage {
        fn file(
            &self,
            repo: &mut dyn crate::store::ThreadingRepository,
            m: &NewMessage,
        ) -> Result<IntakeOutcome, StoreError> {
            let customer = repo.customer(&m.from, 0)?;
            let ticket = repo.create_ticket(&crate::store::NewTicket {
                subject: &m.subject,
                normalized_subject: &m.subject,
                customer,
                support_address: None,
                flags: &[],
                at: m.received_at,
                by_brand: false,
                import_job: None,
            })?;
            let message = repo.insert_message(
                m,
                &crate::store::Filing {
                    ticket,
                    dedup_key: &m.dedup_key,
                    direction: crate::domain::Direction::Inbound,
                    classification: "normal",
                    reason: crate::domain::ThreadReason::NewTicket,
                    flags: &[],
                },
            )?;
            Ok(IntakeOutcome::Stored { message, ticket })
        }
    }

    fn threading() -> TicketPerMessage {
        TicketPerMessage
    }

    /// A failing job in a batch fails alone: the others are committed (through the
    /// savepoint path), and nothing of the failing one is left behind.
    #[tokio::test]
    async fn a_failing_job_does_not_take_the_batch_down() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let (store, account) = store_with_account(&path).await;
        sqlx::query("CREATE TRIGGER no_boom BEFORE INSERT ON messages WHEN NEW.subject = 'boom' BEGIN SELECT RAISE(ABORT, 'boom refused'); END")
            .execute(store.pool())
            .await
            .unwrap();
        let mut conn = DatabaseFile::new(&path, 0).open().unwrap();
        let mut waits = vec![];
        let batch: Vec<Job> = [("a", "ok"), ("b", "boom"), ("c", "ok")]
            .into_iter()
            .map(|(id, subject)| {
                let (reply, wait) = oneshot::channel();
                waits.push(wait);
                Job {
                    items: vec![message(account, id, subject)],
                    reply,
                }
            })
            .collect();
        let results = commit_batch(&mut conn, &batch, &threading()).unwrap();
        assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
        let err = results[1].as_ref().unwrap_err().to_string();
        assert!(err.contains("boom refused"), "{err}");
        let stored: Vec<String> = sqlx::query_scalar("SELECT dedup_key FROM messages ORDER BY id")
            .fetch_all(store.pool())
            .await
            .unwrap();
        assert_eq!(stored, vec!["a", "c"]);
        let tickets: i64 = sqlx::query_scalar("SELECT count(*) FROM tickets")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(tickets, 2, "the failed job's ticket was rolled back");

        // The fast path: a batch of good jobs, one transaction, all stored.
        let batch: Vec<Job> = ["d", "e"]
            .into_iter()
            .map(|id| Job {
                items: vec![message(account, id, "ok")],
                reply: oneshot::channel().0,
            })
            .collect();
        let results = commit_batch(&mut conn, &batch, &threading()).unwrap();
        assert!(results.iter().all(Result::is_ok));
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM messages")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(count, 4);
    }

    /// The WAL keeps its size while mail flows (no truncation between batches), and its
    /// disk space is given back once writing pauses, and at a clean stop.
    #[tokio::test]
    async fn the_wal_is_emptied_when_writing_pauses_and_at_stop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let (store, account) = store_with_account(&path).await;
        let wal = dir.path().join("db.sqlite-wal");
        let wal_len = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        let (writer, stopped) =
            CommitWriter::spawn(store.database_file(), 8, threading(), Box::new(|_, _| {}))
                .unwrap();
        writer
            .submit(vec![message(account, "a", "first")])
            .await
            .unwrap();
        assert!(wal_len() > 0, "a commit writes the WAL");
        // Quiet for the checkpointer's pause: the file is cut back to nothing.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while wal_len() > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the WAL still holds {} bytes after writing stopped",
                wal_len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        writer
            .submit(vec![message(account, "b", "second")])
            .await
            .unwrap();
        assert!(wal_len() > 0);
        drop(writer);
        stopped.await.unwrap();
        assert_eq!(wal_len(), 0, "a clean stop leaves an empty WAL");
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM messages")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(count, 2, "both messages are in the database file");
    }
}
