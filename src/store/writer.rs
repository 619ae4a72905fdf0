//! The one write path of the database: one thread owns the writing connection and commits
//! everything that is written (messages of all SMTP sessions and imports, and every other
//! write: API, rules, outbound, CLI) in shared transactions. Each caller waits for the commit
//! (fsync'd, since the database runs with synchronous=FULL) that holds its work: an SMTP
//! session then answers 250.
//!
//! The writer is a plain thread with its own rusqlite connection (the same bundled SQLite
//! as sqlx's pool) and prepared statements: going through sqlx's async connection costs a
//! hand-off to its worker thread for every statement, and with a dozen statements per
//! message that, not the disk, was what limited intake. WAL checkpoints run on another
//! thread so that commits never wait for pages to be copied into the database file.

use super::checkpointer::Checkpointer;
use super::intake::{Intake, IntakeOutcome};
use super::threading_repository::{MessageFiler, QuarantineStatus};
use super::threading_sqlite::{store_import_checkpoint, store_quarantine, SqliteThreading};
use super::StoreError;
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
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

/// What the writer is asked to do.
enum Job {
    /// Messages to file (and quarantine entries, import checkpoints), all or none.
    Intake(IntakeJob),
    /// Any other write (see [`WriteLane::write`]).
    Work(Box<dyn WriteWork>),
    /// Commit what came before, then stop.
    Stop(oneshot::Sender<()>),
}

struct IntakeJob {
    items: Vec<Intake>,
    filer: Arc<dyn MessageFiler>,
    reply: oneshot::Sender<Result<Vec<IntakeOutcome>, StoreError>>,
}

/// A write of the API, the rules, the outbound queue or a command, run on the writer's
/// transaction. It may run more than once: a batch in which an intake job fails is rolled
/// back and run again job by job.
trait WriteWork: Send {
    fn run(&mut self, conn: &Connection) -> Result<(), StoreError>;
    /// Once the batch is committed (or has failed): hands the result to the caller.
    fn finish(self: Box<Self>, committed: Result<(), StoreError>);
}

struct TypedWork<T, F> {
    work: F,
    value: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> WriteWork for TypedWork<T, F>
where
    T: Send,
    F: FnMut(&Connection) -> Result<T, StoreError> + Send,
{
    fn run(&mut self, conn: &Connection) -> Result<(), StoreError> {
        match (self.work)(conn) {
            Ok(value) => {
                self.value = Some(Ok(value));
                Ok(())
            }
            Err(e) => {
                // The caller gets this error; the batch only needs to know it failed.
                let summary = batch_failure(&e);
                self.value = Some(Err(e));
                Err(summary)
            }
        }
    }

    fn finish(self: Box<Self>, committed: Result<(), StoreError>) {
        let result = match (committed, self.value) {
            (_, Some(Err(e))) => Err(e),
            (Err(e), _) => Err(e),
            (Ok(()), Some(Ok(value))) => Ok(value),
            (Ok(()), None) => Err(StoreError::Internal("a write was never run".into())),
        };
        let _ = self.reply.send(result);
    }
}

/// Handle to the writer thread, owned by the [`Store`](super::Store); cheap to clone.
#[derive(Clone)]
pub(super) struct WriteLane {
    jobs: mpsc::Sender<Job>,
}

/// Told of every group commit: how long it took and how many jobs it held (metrics).
pub type CommitObserver = Box<dyn Fn(Duration, usize) + Send>;

impl WriteLane {
    /// Starts the writer (and its checkpointer) on `db`. It stops on [`WriteLane::stop`] or
    /// when every handle is dropped, after committing what it holds.
    pub(super) fn spawn(
        db: &DatabaseFile,
        batch_max: usize,
        observer: CommitObserver,
    ) -> Result<Self, StoreError> {
        let batch_max = batch_max.max(1);
        let conn = db.open()?;
        let checkpoints = Checkpointer::start(db)?;
        let (tx, rx) = mpsc::channel(batch_max * 4);
        std::thread::Builder::new()
            .name("postern-writer".into())
            .spawn(move || {
                let stopped = run(conn, rx, batch_max, &observer, &checkpoints);
                checkpoints.stop();
                if let Some(stopped) = stopped {
                    let _ = stopped.send(());
                }
            })
            .map_err(|e| StoreError::Internal(format!("cannot start the writer thread: {e}")))?;
        Ok(Self { jobs: tx })
    }

    /// Runs `work` in the writer's next transaction and returns its value once that is
    /// committed. `work` may run more than once (it must not consume what it captures);
    /// should it fail, what it wrote is rolled back and nothing else is affected.
    pub(super) async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, wait) = oneshot::channel();
        let job = Job::Work(Box::new(TypedWork {
            work,
            value: None,
            reply,
        }));
        self.jobs
            .send(job)
            .await
            .map_err(|_| StoreError::WriterGone)?;
        wait.await.map_err(|_| StoreError::WriterGone)?
    }

    async fn submit(
        &self,
        items: Vec<Intake>,
        filer: Arc<dyn MessageFiler>,
    ) -> Result<Vec<IntakeOutcome>, StoreError> {
        let (reply, wait) = oneshot::channel();
        self.jobs
            .send(Job::Intake(IntakeJob {
                items,
                filer,
                reply,
            }))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        wait.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Commits what was asked before, stops the writer and its checkpointer (which leaves an
    /// empty WAL behind) and returns once they are stopped. Later writes fail.
    pub(super) async fn stop(&self) {
        let (done, stopped) = oneshot::channel();
        if self.jobs.send(Job::Stop(done)).await.is_ok() {
            let _ = stopped.await;
        }
    }
}

/// Files messages through the store's writer with ingest's threading order (`filer`).
#[derive(Clone)]
pub struct CommitWriter {
    lane: WriteLane,
    filer: Arc<dyn MessageFiler>,
}

impl CommitWriter {
    pub fn new(store: &super::Store, filer: impl Into<Box<dyn MessageFiler>>) -> Self {
        Self {
            lane: store.lane().clone(),
            filer: Arc::from(filer.into()),
        }
    }

    /// Stores `items` atomically (all or none) and returns once they are durable.
    pub async fn submit(&self, items: Vec<Intake>) -> Result<Vec<IntakeOutcome>, StoreError> {
        self.lane.submit(items, self.filer.clone()).await
    }
}

/// The writer thread's loop; returns whom to tell once it has stopped, if asked to.
fn run(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Job>,
    batch_max: usize,
    observer: &CommitObserver,
    checkpoints: &Checkpointer,
) -> Option<oneshot::Sender<()>> {
    let mut batch: Vec<Job> = Vec::with_capacity(batch_max);
    let dropper = Dropper::start();
    let mut stop = None;
    while stop.is_none() {
        let Some(first) = rx.blocking_recv() else {
            break;
        };
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Stop(done) => stop = Some(done),
                job => batch.push(job),
            }
            if stop.is_some() || batch.len() >= batch_max {
                break;
            }
            next = rx.try_recv().ok();
        }
        if batch.is_empty() {
            continue;
        }
        let started = std::time::Instant::now();
        let results = commit_batch(&mut conn, &mut batch);
        let took = started.elapsed();
        checkpoints.nudge();
        observer(took, batch.len());
        tracing::debug!(
            jobs = batch.len(),
            micros = took.as_micros() as u64,
            "group commit"
        );
        let mut stored = Vec::with_capacity(batch.len());
        match results {
            Ok(per_job) => {
                for (job, result) in batch.drain(..).zip(per_job) {
                    match (job, result) {
                        (Job::Intake(job), result) => {
                            let _ = job.reply.send(result.map(|done| done.unwrap_or_default()));
                            stored.push(job.items);
                        }
                        (Job::Work(work), result) => work.finish(result.map(|_| ())),
                        (Job::Stop(_), _) => {}
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, jobs = batch.len(), "group commit failed");
                for job in batch.drain(..) {
                    match job {
                        Job::Intake(job) => {
                            let _ = job.reply.send(Err(batch_failure(&e)));
                        }
                        Job::Work(work) => work.finish(Err(batch_failure(&e))),
                        Job::Stop(_) => {}
                    }
                }
            }
        }
        dropper.discard(stored);
    }
    stop
}

/// What each job of a batch that could not be committed is told.
fn batch_failure(e: &StoreError) -> StoreError {
    match e {
        StoreError::DiskFull(msg) => StoreError::DiskFull(msg.clone()),
        other => StoreError::Internal(format!("commit failed: {other}")),
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
        if items.is_empty() {
            return;
        }
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

/// A job's result within a batch: an intake job's outcomes, or `None` for other work
/// (whose value stays with it).
type JobResult = Result<Option<Vec<IntakeOutcome>>, StoreError>;

/// One job on `conn`.
fn run_job(conn: &Connection, job: &mut Job) -> JobResult {
    match job {
        Job::Intake(job) => store_items(conn, &job.items, &*job.filer).map(Some),
        Job::Work(work) => work.run(conn).map(|()| None),
        Job::Stop(_) => Ok(None),
    }
}

/// One transaction for the whole batch. Intake jobs almost never fail, so they first run
/// without savepoints (a savepoint makes SQLite copy every page it touches to a statement
/// journal); if one fails, the batch is rolled back and run again with one savepoint per
/// job, so that the failing job does not take the others down. Other work (API, rules...)
/// fails more often (a conflict, a missing row) and always runs in a savepoint of its own.
fn commit_batch(conn: &mut Connection, batch: &mut [Job]) -> Result<Vec<JobResult>, StoreError> {
    let mut tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut results = Vec::with_capacity(batch.len());
    let alone = batch.len() == 1;
    let mut failed = false;
    for job in batch.iter_mut() {
        if alone {
            results.push(run_job(&tx, job));
            continue;
        }
        match job {
            Job::Work(_) => results.push(in_savepoint(&mut tx, job)?),
            _ => match run_job(&tx, job) {
                Ok(done) => results.push(Ok(done)),
                Err(_) => {
                    failed = true;
                    break;
                }
            },
        }
    }
    if !failed {
        if results.iter().all(Result::is_ok) || !alone {
            tx.commit()?;
        }
        // Else the batch's only job failed: dropping `tx` rolls it back.
        return Ok(results);
    }
    // Dropping rolls back (SQLite may already have, after disk full or an I/O error).
    drop(tx);
    commit_batch_isolated(conn, batch)
}

/// Runs `job` in a savepoint: its failure rolls back only its own writes. Fails as a whole
/// when SQLite rolled the whole transaction back by itself (disk full, I/O error): the
/// savepoint is gone with it.
fn in_savepoint(
    tx: &mut rusqlite::Transaction<'_>,
    job: &mut Job,
) -> Result<JobResult, StoreError> {
    let sp = tx.savepoint()?;
    match run_job(&sp, job) {
        Ok(done) => {
            sp.commit()?;
            Ok(Ok(done))
        }
        Err(e) => {
            if sp.is_autocommit() || sp.finish().is_err() {
                return Err(e);
            }
            Ok(Err(e))
        }
    }
}

/// The slow path of [`commit_batch`]: one savepoint per job.
fn commit_batch_isolated(
    conn: &mut Connection,
    batch: &mut [Job],
) -> Result<Vec<JobResult>, StoreError> {
    let mut tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut results = Vec::with_capacity(batch.len());
    for job in batch.iter_mut() {
        results.push(in_savepoint(&mut tx, job)?);
    }
    tx.commit()?;
    Ok(results)
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

    fn intake(account: AccountId, id: &str, subject: &str) -> Job {
        Job::Intake(IntakeJob {
            items: vec![message(account, id, subject)],
            filer: Arc::new(threading()),
            reply: oneshot::channel().0,
        })
    }

    /// Other work, as the API writes: a row of `kv`, or an error when `fail`. Counts its runs.
    fn work(
        key: &str,
        fail: bool,
        runs: Arc<std::sync::atomic::AtomicUsize>,
    ) -> (Job, oneshot::Receiver<Result<String, StoreError>>) {
        let (reply, wait) = oneshot::channel();
        let key = key.to_string();
        let job = Job::Work(Box::new(TypedWork {
            work: move |conn: &Connection| {
                runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                conn.execute("INSERT INTO kv (k) VALUES (?1)", [&key])?;
                if fail {
                    return Err(StoreError::Conflict(format!("{key} refused")));
                }
                Ok(key.clone())
            },
            value: None,
            reply,
        }));
        (job, wait)
    }

    async fn messages(store: &Store) -> Vec<String> {
        sqlx::query_scalar("SELECT dedup_key FROM messages ORDER BY id")
            .fetch_all(store.pool())
            .await
            .unwrap()
    }

    async fn kv(store: &Store) -> Vec<String> {
        sqlx::query_scalar("SELECT k FROM kv ORDER BY k")
            .fetch_all(store.pool())
            .await
            .unwrap()
    }

    /// A failing job in a batch fails alone: the others are committed (through the
    /// savepoint path), and nothing of the failing one is left behind.
    #[tokio::test]
    async fn a_failing_job_does_not_take_the_batch_down() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let (store, account) = store_with_account(&path).await;
        let mut conn = DatabaseFile::new(&path, 0).open().unwrap();
        conn.execute_batch("CREATE TRIGGER no_boom BEFORE INSERT ON messages WHEN NEW.subject = 'boom' BEGIN SELECT RAISE(ABORT, 'boom refused'); END")
            .unwrap();
        let mut batch: Vec<Job> = [("a", "ok"), ("b", "boom"), ("c", "ok")]
            .into_iter()
            .map(|(id, subject)| intake(account, id, subject))
            .collect();
        let results = commit_batch(&mut conn, &mut batch).unwrap();
        assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
        let err = results[1].as_ref().unwrap_err().to_string();
        assert!(err.contains("boom refused"), "{err}");
        assert_eq!(messages(&store).await, vec!["a", "c"]);
        let tickets: i64 = sqlx::query_scalar("SELECT count(*) FROM tickets")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(tickets, 2, "the failed job's ticket was rolled back");

        // The fast path: a batch of good jobs, one transaction, all stored.
        let mut batch: Vec<Job> = ["d", "e"]
            .into_iter()
            .map(|id| intake(account, id, "ok"))
            .collect();
        let results = commit_batch(&mut conn, &mut batch).unwrap();
        assert!(results.iter().all(Result::is_ok));
        assert_eq!(messages(&store).await.len(), 4);
    }

    /// Other work shares the batch: its failure rolls back its own writes only, and when an
    /// intake job's failure sends the batch down the slow path, the work runs again and its
    /// caller gets the value of the run that was committed.
    #[tokio::test]
    async fn other_work_fails_alone_and_runs_again_after_a_rollback() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let (store, account) = store_with_account(&path).await;
        for sql in [
            "CREATE TABLE kv (k TEXT PRIMARY KEY)",
            "CREATE TRIGGER no_boom BEFORE INSERT ON messages WHEN NEW.subject = 'boom' BEGIN SELECT RAISE(ABORT, 'boom refused'); END",
        ] {
            store.write(move |c| Ok(c.execute_batch(sql)?)).await.unwrap();
        }
        let mut conn = DatabaseFile::new(&path, 0).open().unwrap();
        let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (good, good_reply) = work("good", false, runs.clone());
        let (bad, bad_reply) = work("bad", true, runs.clone());
        let mut batch = vec![
            intake(account, "a", "ok"),
            good,
            bad,
            intake(account, "b", "ok"),
        ];
        let results = commit_batch(&mut conn, &mut batch).unwrap();
        assert!(results[2].is_err() && results[0].is_ok() && results[1].is_ok());
        assert_eq!(
            runs.load(std::sync::atomic::Ordering::SeqCst),
            2,
            "fast path: once each"
        );
        for (job, result) in batch.into_iter().zip(results) {
            if let Job::Work(w) = job {
                w.finish(result.map(|_| ()));
            }
        }
        assert_eq!(good_reply.await.unwrap().unwrap(), "good");
        let err = bad_reply.await.unwrap().unwrap_err().to_string();
        assert!(err.contains("bad refused"), "{err}");
        assert_eq!(
            kv(&store).await,
            vec!["good"],
            "the failed work left nothing"
        );
        assert_eq!(messages(&store).await, vec!["a", "b"]);

        // An intake job fails: the batch is rolled back and run job by job; the work runs
        // again, and what it wrote is there once.
        let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (again, again_reply) = work("again", false, runs.clone());
        let mut batch = vec![
            again,
            intake(account, "c", "boom"),
            intake(account, "d", "ok"),
        ];
        let results = commit_batch(&mut conn, &mut batch).unwrap();
        assert!(results[0].is_ok() && results[1].is_err() && results[2].is_ok());
        assert_eq!(
            runs.load(std::sync::atomic::Ordering::SeqCst),
            2,
            "run again after the rollback"
        );
        if let Some(Job::Work(w)) = batch.into_iter().next() {
            w.finish(Ok(()));
        }
        assert_eq!(again_reply.await.unwrap().unwrap(), "again");
        assert_eq!(kv(&store).await, vec!["again", "good"]);
        assert_eq!(messages(&store).await, vec!["a", "b", "d"]);
    }

    /// Through the store: a write returns its value once committed, a failed write its own
    /// error; after close, writes fail rather than wait forever.
    #[tokio::test]
    async fn the_store_writes_through_its_writer_until_closed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let (store, _) = store_with_account(&path).await;
        store
            .write(|c| Ok(c.execute_batch("CREATE TABLE kv (k TEXT PRIMARY KEY)")?))
            .await
            .unwrap();
        let pool_write = sqlx::query("INSERT INTO kv (k) VALUES ('y')")
            .execute(store.pool())
            .await;
        assert!(pool_write.is_err(), "the pool only reads");
        let id = store
            .write(|conn| {
                conn.execute("INSERT INTO kv (k) VALUES ('x')", [])?;
                Ok(conn.last_insert_rowid())
            })
            .await
            .unwrap();
        assert!(id > 0);
        let dup = store
            .write(|conn| Ok(conn.execute("INSERT INTO kv (k) VALUES ('x')", [])?))
            .await;
        assert!(dup.is_err(), "{dup:?}");
        assert_eq!(kv(&store).await, vec!["x"]);
        let other = store.clone();
        store.close().await;
        let after = other.write(|_| Ok(())).await;
        assert!(matches!(after, Err(StoreError::WriterGone)), "{after:?}");
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
        let writer = CommitWriter::new(&store, threading());
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
        store.close().await;
        assert_eq!(wal_len(), 0, "a clean stop leaves an empty WAL");
        let count: i64 = Connection::open(&path)
            .unwrap()
            .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
            .unwrap();
        assert_eq!(count, 2, "both messages are in the database file");
    }
}
