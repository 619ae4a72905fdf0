//! The import pipeline: one source read on its own thread, messages parsed in parallel on
//! every core, put back in source order, and committed in batches through the intake writer
//! with the job's checkpoint in the same transaction. Memory stays bounded: at most
//! `in_flight` messages are between the source and the database at any time.
//!
//! Threading is the live threading in import mode (see `store::threading`): every message
//! finds its conversation by Message-ID links whichever comes first in the file (a parent
//! arriving after its replies merges their tickets, two replies to a missing parent are one
//! thread), the subject fallback looks both ways in time, and nothing is reopened or sent.

use super::job_lock::{ImportLock, LockError};
use super::{
    Content, DateRange, EmlSource, ImapConfig, ImapSource, MaildirSource, MboxDialect,
    MboxSource, FileSourceOptions, MessageSource, Position, SourceError, SourceMessage,
};
use crate::domain::AccountId;
use crate::ingest::{import_item, ImportOrigin};
use crate::store::{
    import_status, CommitWriter, ImportCheckpoint, ImportJobView, Intake, IntakeOutcome,
    NewImportJob, NewQuarantine, Store, StoreError,
};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Where the messages come from.
#[derive(Debug, Clone)]
pub enum SourceSpec {
    Mbox {
        path: PathBuf,
        /// `None`: detected (Content-Length when it checks out, else mboxrd reading).
        dialect: Option<MboxDialect>,
    },
    Maildir {
        path: PathBuf,
    },
    Eml {
        path: PathBuf,
    },
    Imap {
        config: Box<ImapConfig>,
    },
}

impl SourceSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            SourceSpec::Mbox { .. } => "mbox",
            SourceSpec::Maildir { .. } => "maildir",
            SourceSpec::Eml { .. } => "eml",
            SourceSpec::Imap { .. } => "imap",
        }
    }

    /// What a human reads: the path or `user@server`, never a password.
    pub fn describe(&self) -> String {
        match self {
            SourceSpec::Mbox { path, .. }
            | SourceSpec::Maildir { path }
            | SourceSpec::Eml { path } => path.display().to_string(),
            SourceSpec::Imap { config } => format!("{}@{}", config.user, config.server()),
        }
    }

    fn file_path(&self) -> Option<&Path> {
        match self {
            SourceSpec::Mbox { path, .. }
            | SourceSpec::Maildir { path }
            | SourceSpec::Eml { path } => Some(path),
            SourceSpec::Imap { .. } => None,
        }
    }
}

/// One import, as asked for by the CLI or the API.
#[derive(Debug, Clone)]
pub struct ImportRequest {
    pub account: AccountId,
    pub source: SourceSpec,
    /// Maildir and IMAP folders to read; empty: all (Maildir) or INBOX (IMAP).
    pub folders: Vec<String>,
    pub range: DateRange,
    /// How many of the tickets the import creates stay open (the newest).
    pub open_newest: u32,
    /// Read and parse everything, count what would happen, write nothing.
    pub dry_run: bool,
    pub max_message_size: u64,
    /// Messages per transaction.
    pub batch_size: usize,
    /// Parsing threads; 0: one per core.
    pub parse_threads: usize,
    /// `cli`, or who started it through the API.
    pub created_by: String,
    /// Where the per-import lock files live (the data folder).
    pub lock_dir: PathBuf,
    /// A job created beforehand (API); otherwise the unfinished job of the same import is
    /// resumed, or a new one created.
    pub job: Option<i64>,
}

impl ImportRequest {
    pub fn new(account: AccountId, source: SourceSpec, lock_dir: PathBuf) -> Self {
        Self {
            account,
            source,
            folders: Vec::new(),
            range: DateRange::default(),
            open_newest: 0,
            dry_run: false,
            max_message_size: super::DEFAULT_MAX_MESSAGE_SIZE,
            batch_size: 500,
            parse_threads: 0,
            created_by: "cli".into(),
            lock_dir,
            job: None,
        }
    }

    /// The identity of this import: the same source with the same choice of messages.
    pub fn source_key(&self) -> String {
        let place = match &self.source {
            SourceSpec::Imap { config } => format!(
                "imap://{}@{}/{}",
                config.user,
                config.server(),
                config.folders.join(",")
            ),
            other => {
                let path = other.file_path().unwrap_or(Path::new(""));
                let full = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
                format!("{}:{}", other.kind(), full.display())
            }
        };
        format!(
            "{place}|folders={}|since={}|until={}",
            self.folders.join(","),
            self.range.since.map(|d| d.to_string()).unwrap_or_default(),
            self.range.until.map(|d| d.to_string()).unwrap_or_default()
        )
    }

    fn options_json(&self) -> serde_json::Value {
        serde_json::json!({
            "folders": self.folders,
            "since": self.range.since,
            "until": self.range.until,
            "open_newest": self.open_newest,
            "max_message_size": self.max_message_size,
        })
    }
}

/// Running totals of an import.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportCounters {
    pub seen: i64,
    pub imported: i64,
    pub duplicates: i64,
    pub quarantined: i64,
    pub skipped: i64,
    pub bytes: i64,
}

/// The final word on an import (the CLI's `--json` output).
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct ImportSummary {
    /// `None` for a dry run, which records nothing.
    pub job_id: Option<i64>,
    pub status: String,
    pub dry_run: bool,
    pub source: String,
    /// The checkpoint this run resumed after, when it continued an earlier one.
    pub resumed_from: Option<String>,
    pub seen: i64,
    pub imported: i64,
    pub duplicates: i64,
    pub quarantined: i64,
    pub skipped: i64,
    pub bytes: i64,
    /// Tickets the import created and existing tickets it added history to (`None` on a dry run).
    pub tickets_created: Option<i64>,
    pub tickets_merged: Option<i64>,
    /// tickets_created + tickets_merged.
    pub tickets: Option<i64>,
    pub elapsed_seconds: f64,
    pub error: Option<String>,
}

/// Told how an import goes (a progress bar, log lines, nothing).
pub trait ImportProgress: Send + Sync {
    /// Once, before the first message. `total_bytes` when the source's size is known.
    fn started(&self, _source: &str, _total_bytes: Option<u64>, _resumed: &ImportCounters) {}
    /// After each committed batch.
    fn advanced(&self, _counters: &ImportCounters) {}
    /// Once, at the end.
    fn finished(&self, _summary: &ImportSummary) {}
}

/// No progress reports.
pub struct QuietProgress;
impl ImportProgress for QuietProgress {}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("no account with id {0}")]
    NoAccount(AccountId),
    #[error("no import job {0} in this account")]
    NoJob(i64),
    #[error(
        "import job {job} is {status} and does not run again; start the import anew (messages \
         already imported are recognised as duplicates)"
    )]
    JobNotRunnable { job: i64, status: String },
    #[error("internal error in the import: {0}")]
    Internal(String),
}

/// How many IMAP reconnections one run tries after a dropped connection.
const IMAP_RECONNECTS: u32 = 3;

/// One message on its way: read, then parsed.
struct Unit {
    seq: u64,
    position: String,
    bytes: u64,
    work: Work,
}

enum Work {
    Skip,
    Store(Intake),
    /// The source failed after the messages before this one.
    Failed(SourceError),
}

/// Runs one import to its end (or until cancelled) and returns its summary. A source error
/// after some messages commits those, marks the job failed with the error and returns the
/// error; running the same import again resumes after the last committed message.
pub async fn run_import(
    store: &Store,
    writer: &CommitWriter,
    inbound_domain: &str,
    request: ImportRequest,
    progress: Arc<dyn ImportProgress>,
    cancel: CancellationToken,
) -> Result<ImportSummary, ImportError> {
    let started = Instant::now();
    match store.account(request.account).await {
        Ok(_) => {}
        Err(StoreError::NotFound(_)) => return Err(ImportError::NoAccount(request.account)),
        Err(e) => return Err(e.into()),
    }
    if request.dry_run {
        return dry_run(store, inbound_domain, request, progress, cancel, started).await;
    }
    let source_key = request.source_key();
    let _lock = ImportLock::acquire(&request.lock_dir, request.account, &source_key)?;
    let job = match request.job {
        Some(id) => store
            .import_job(request.account, id)
            .await?
            .ok_or(ImportError::NoJob(id))?,
        None => match store
            .resumable_import_job(request.account, &source_key)
            .await?
        {
            Some(job) => job,
            None => {
                let id = store
                    .create_import_job(&NewImportJob {
                        account: request.account,
                        kind: request.source.kind(),
                        source: &request.source.describe(),
                        source_key: &source_key,
                        options: &request.options_json(),
                        created_by: &request.created_by,
                    })
                    .await?;
                store
                    .import_job(request.account, id)
                    .await?
                    .ok_or(ImportError::NoJob(id))?
            }
        },
    };
    // A job marked running whose lock we now hold was left by a process that died.
    if job.status == import_status::COMPLETED {
        return Err(ImportError::JobNotRunnable {
            job: job.id,
            status: job.status,
        });
    }
    if job.status == import_status::CANCELLED && job.cancel_requested && request.job.is_some() {
        return Err(ImportError::JobNotRunnable {
            job: job.id,
            status: job.status,
        });
    }
    store.start_import_job(job.id).await?;
    let resumed_from = job.checkpoint.clone();
    let resume_after = match &resumed_from {
        Some(c) => Some(c.parse::<Position>()?),
        None => None,
    };
    let counters = ImportCounters {
        seen: job.seen,
        imported: job.imported,
        duplicates: job.duplicates,
        quarantined: job.quarantined,
        skipped: job.skipped,
        bytes: job.bytes,
    };
    let run = Run {
        store,
        writer,
        inbound_domain,
        request: &request,
        job: job.id,
        progress: progress.as_ref(),
        cancel: &cancel,
    };
    let outcome = run.execute(resume_after, counters).await;
    let (final_status, error) = match &outcome {
        Ok(Ending::Done) => (import_status::COMPLETED, None),
        Ok(Ending::Cancelled) if store.import_cancel_requested(job.id).await? => {
            (import_status::CANCELLED, None)
        }
        Ok(Ending::Cancelled) => (import_status::INTERRUPTED, None),
        Err(e) => (import_status::FAILED, Some(e.to_string())),
    };
    store
        .finish_import_job(job.id, final_status, error.as_deref(), request.open_newest)
        .await?;
    let view = store
        .import_job(request.account, job.id)
        .await?
        .ok_or(ImportError::NoJob(job.id))?;
    let summary = summary_of(&view, resumed_from, started.elapsed());
    progress.finished(&summary);
    match outcome {
        Err(e) => Err(e),
        Ok(_) => Ok(summary),
    }
}

fn summary_of(view: &ImportJobView, resumed_from: Option<String>, took: Duration) -> ImportSummary {
    ImportSummary {
        job_id: Some(view.id),
        status: view.status.clone(),
        dry_run: false,
        source: format!("{} {}", view.kind, view.source),
        resumed_from,
        seen: view.seen,
        imported: view.imported,
        duplicates: view.duplicates,
        quarantined: view.quarantined,
        skipped: view.skipped,
        bytes: view.bytes,
        tickets_created: view.tickets_created,
        tickets_merged: view.tickets_merged,
        tickets: view
            .tickets_created
            .zip(view.tickets_merged)
            .map(|(a, b)| a + b),
        elapsed_seconds: took.as_secs_f64(),
        error: view.error.clone(),
    }
}

enum Ending {
    Done,
    Cancelled,
}

struct Run<'a> {
    store: &'a Store,
    writer: &'a CommitWriter,
    inbound_domain: &'a str,
    request: &'a ImportRequest,
    job: i64,
    progress: &'a dyn ImportProgress,
    cancel: &'a CancellationToken,
}

impl Run<'_> {
    async fn execute(
        &self,
        resume_after: Option<Position>,
        mut counters: ImportCounters,
    ) -> Result<Ending, ImportError> {
        let stream = MessageStream::start(
            self.request,
            resume_after,
            self.inbound_domain.to_string(),
            self.job,
        )
        .await?;
        self.progress.started(
            &self.request.source.describe(),
            stream.total_bytes,
            &counters,
        );
        let mut stream = stream;
        let mut batch: Vec<Intake> = Vec::with_capacity(self.request.batch_size + 1);
        let mut batch_start = counters;
        let mut last_position: Option<String> = None;
        let mut failure: Option<SourceError> = None;
        let mut cancelled = false;
        while let Some(Unit {
            position,
            bytes,
            work,
            ..
        }) = stream.next().await
        {
            match work {
                Work::Failed(e) => {
                    failure = Some(e);
                    break;
                }
                Work::Skip => counters.skipped += 1,
                Work::Store(item) => batch.push(item),
            }
            counters.seen += 1;
            counters.bytes += bytes as i64;
            last_position = Some(position);
            stream.release(1);
            if batch.len() >= self.request.batch_size {
                counters = self
                    .commit(&mut batch, batch_start, counters, last_position.take())
                    .await?;
                batch_start = counters;
                self.progress.advanced(&counters);
                if self.should_stop().await? {
                    cancelled = true;
                    break;
                }
            }
        }
        stream.stop();
        if !batch.is_empty() || last_position.is_some() {
            counters = self
                .commit(&mut batch, batch_start, counters, last_position.take())
                .await?;
            self.progress.advanced(&counters);
        }
        if let Some(e) = failure {
            return Err(e.into());
        }
        if cancelled || self.cancel.is_cancelled() {
            return Ok(Ending::Cancelled);
        }
        stream.join()?;
        Ok(Ending::Done)
    }

    async fn should_stop(&self) -> Result<bool, ImportError> {
        Ok(self.cancel.is_cancelled() || self.store.import_cancel_requested(self.job).await?)
    }

    /// Commits the batch with the checkpoint; returns the counters as the database has them.
    async fn commit(
        &self,
        batch: &mut Vec<Intake>,
        before: ImportCounters,
        now: ImportCounters,
        position: Option<String>,
    ) -> Result<ImportCounters, ImportError> {
        let checkpoint = ImportCheckpoint {
            job: self.job,
            position,
            seen: now.seen,
            imported: before.imported,
            duplicates: before.duplicates,
            quarantined: before.quarantined,
            skipped: now.skipped,
            bytes: now.bytes,
        };
        let mut items = std::mem::take(batch);
        items.push(Intake::ImportCheckpoint(checkpoint));
        let outcomes = self.writer.submit(items).await?;
        let mut after = now;
        after.imported = before.imported;
        after.duplicates = before.duplicates;
        after.quarantined = before.quarantined;
        for o in outcomes {
            match o {
                IntakeOutcome::Stored { .. } => after.imported += 1,
                IntakeOutcome::Duplicate { .. } => after.duplicates += 1,
                IntakeOutcome::Quarantined { .. } => after.quarantined += 1,
                IntakeOutcome::Checkpointed => {}
            }
        }
        Ok(after)
    }
}

/// A dry run: everything is read and parsed, duplicates are looked up, nothing is written.
async fn dry_run(
    store: &Store,
    inbound_domain: &str,
    request: ImportRequest,
    progress: Arc<dyn ImportProgress>,
    cancel: CancellationToken,
    started: Instant,
) -> Result<ImportSummary, ImportError> {
    let mut stream = MessageStream::start(&request, None, inbound_domain.to_string(), 0).await?;
    let mut counters = ImportCounters::default();
    progress.started(&request.source.describe(), stream.total_bytes, &counters);
    let mut seen_keys: HashSet<String> = HashSet::new();
    let mut pending: Vec<String> = Vec::new();
    let mut failure = None;
    while let Some(unit) = stream.next().await {
        if cancel.is_cancelled() {
            break;
        }
        counters.bytes += unit.bytes as i64;
        match unit.work {
            Work::Failed(e) => {
                failure = Some(e);
                break;
            }
            Work::Skip => {
                counters.seen += 1;
                counters.skipped += 1;
            }
            Work::Store(Intake::Message(m)) => {
                counters.seen += 1;
                pending.push(m.dedup_key.clone());
            }
            Work::Store(_) => {
                counters.seen += 1;
                counters.quarantined += 1;
            }
        }
        stream.release(1);
        if pending.len() >= request.batch_size {
            count_new(store, request.account, &mut pending, &mut seen_keys, &mut counters).await?;
            progress.advanced(&counters);
        }
    }
    stream.stop();
    count_new(store, request.account, &mut pending, &mut seen_keys, &mut counters).await?;
    if let Some(e) = failure {
        return Err(e.into());
    }
    let summary = ImportSummary {
        job_id: None,
        status: if cancel.is_cancelled() {
            import_status::CANCELLED.into()
        } else {
            stream.join()?;
            import_status::COMPLETED.into()
        },
        dry_run: true,
        source: format!("{} {}", request.source.kind(), request.source.describe()),
        resumed_from: None,
        seen: counters.seen,
        imported: counters.imported,
        duplicates: counters.duplicates,
        quarantined: counters.quarantined,
        skipped: counters.skipped,
        bytes: counters.bytes,
        tickets_created: None,
        tickets_merged: None,
        tickets: None,
        elapsed_seconds: started.elapsed().as_secs_f64(),
        error: None,
    };
    progress.finished(&summary);
    Ok(summary)
}

/// Dry run: which of the pending keys are new (not in the store, not earlier in the source).
async fn count_new(
    store: &Store,
    account: AccountId,
    pending: &mut Vec<String>,
    seen_keys: &mut HashSet<String>,
    counters: &mut ImportCounters,
) -> Result<(), ImportError> {
    let keys = std::mem::take(pending);
    let existing = store.existing_dedup_keys(account, &keys).await?;
    for k in keys {
        if existing.contains(&k) || !seen_keys.insert(k) {
            counters.duplicates += 1;
        } else {
            counters.imported += 1;
        }
    }
    Ok(())
}

/// The reading and parsing threads, and the messages they produce in source order.
struct MessageStream {
    units: tokio::sync::mpsc::Receiver<Unit>,
    reorder: BTreeMap<u64, Unit>,
    next: u64,
    permits: crossbeam_channel::Receiver<()>,
    stop: Arc<AtomicBool>,
    reader: Option<std::thread::JoinHandle<()>>,
    parsers: Vec<std::thread::JoinHandle<()>>,
    total_bytes: Option<u64>,
}

impl MessageStream {
    /// Opens the source (on a thread: IMAP logs in there) and starts reading and parsing.
    async fn start(
        request: &ImportRequest,
        resume_after: Option<Position>,
        inbound_domain: String,
        job: i64,
    ) -> Result<Self, ImportError> {
        let opener = SourceOpener {
            spec: request.source.clone(),
            folders: request.folders.clone(),
            range: request.range,
            max_message_size: request.max_message_size,
        };
        let resume = resume_after.clone();
        let source = tokio::task::spawn_blocking(move || opener.open(resume))
            .await
            .map_err(|e| ImportError::Internal(format!("source thread: {e}")))??;
        let total_bytes = match &request.source {
            SourceSpec::Mbox { path, .. } => std::fs::metadata(path)
                .ok()
                .map(|m| m.len())
                .filter(|_| !is_gzip(path)),
            _ => None,
        };
        let threads = if request.parse_threads == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            request.parse_threads
        };
        let in_flight = (request.batch_size * 4).max(64);
        let (raw_tx, raw_rx) = crossbeam_channel::bounded::<(u64, SourceItemOrEnd)>(64);
        let (permit_tx, permit_rx) = crossbeam_channel::bounded::<()>(in_flight);
        let (unit_tx, unit_rx) = tokio::sync::mpsc::channel::<Unit>(in_flight);
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let stop = stop.clone();
            let opener = SourceOpener {
                spec: request.source.clone(),
                folders: request.folders.clone(),
                range: request.range,
                max_message_size: request.max_message_size,
            };
            std::thread::Builder::new()
                .name("postern-import-read".into())
                .spawn(move || read_source(source, opener, raw_tx, permit_tx, &stop))
                .map_err(|e| ImportError::Internal(format!("cannot start a thread: {e}")))?
        };
        let mut parsers = Vec::with_capacity(threads);
        for i in 0..threads {
            let rx = raw_rx.clone();
            let tx = unit_tx.clone();
            let ctx = ParseContext {
                inbound_domain: inbound_domain.clone(),
                account: request.account,
                job,
                range: request.range,
                max_message_size: request.max_message_size,
            };
            parsers.push(
                std::thread::Builder::new()
                    .name(format!("postern-import-parse-{i}"))
                    .spawn(move || {
                        for (seq, item) in rx.iter() {
                            let unit = ctx.parse(seq, item);
                            if tx.blocking_send(unit).is_err() {
                                break;
                            }
                        }
                    })
                    .map_err(|e| ImportError::Internal(format!("cannot start a thread: {e}")))?,
            );
        }
        Ok(Self {
            units: unit_rx,
            reorder: BTreeMap::new(),
            next: 0,
            permits: permit_rx,
            stop,
            reader: Some(reader),
            parsers,
            total_bytes,
        })
    }

    /// The next unit in source order; `None` at the end.
    async fn next(&mut self) -> Option<Unit> {
        loop {
            if let Some(unit) = self.reorder.remove(&self.next) {
                self.next += 1;
                return Some(unit);
            }
            let unit = self.units.recv().await?;
            self.reorder.insert(unit.seq, unit);
        }
    }

    /// `n` units left the pipeline: the reader may read that many more.
    fn release(&self, n: usize) {
        for _ in 0..n {
            let _ = self.permits.try_recv();
        }
    }

    /// Stops the reader (cancel, failure): it ends at its next message.
    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Unblock a reader waiting for room.
        while self.permits.try_recv().is_ok() {}
        self.units.close();
    }

    /// Waits for the threads; a panic in one of them is an error, not a silent loss.
    fn join(&mut self) -> Result<(), ImportError> {
        let mut panicked = false;
        if let Some(r) = self.reader.take() {
            panicked |= r.join().is_err();
        }
        for p in self.parsers.drain(..) {
            panicked |= p.join().is_err();
        }
        if panicked {
            return Err(ImportError::Internal(
                "an import thread stopped unexpectedly".into(),
            ));
        }
        Ok(())
    }
}

impl Drop for MessageStream {
    fn drop(&mut self) {
        self.stop();
    }
}

fn is_gzip(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 2];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == [0x1f, 0x8b]
}

enum SourceItemOrEnd {
    Message(SourceMessage),
    Failed(SourceError),
}

struct SourceOpener {
    spec: SourceSpec,
    folders: Vec<String>,
    range: DateRange,
    max_message_size: u64,
}

impl SourceOpener {
    fn open(&self, resume_after: Option<Position>) -> Result<Box<dyn MessageSource>, SourceError> {
        let options = FileSourceOptions {
            max_message_size: self.max_message_size,
            resume_after: resume_after.clone(),
            folders: self.folders.clone(),
        };
        Ok(match &self.spec {
            SourceSpec::Mbox { path, dialect } => Box::new(MboxSource::open(
                path,
                dialect.unwrap_or_default(),
                &options,
            )?),
            SourceSpec::Maildir { path } => Box::new(MaildirSource::open(path, &options)?),
            SourceSpec::Eml { path } => Box::new(EmlSource::open(path, &options)?),
            SourceSpec::Imap { config } => {
                let mut config = (**config).clone();
                if !self.folders.is_empty() {
                    config.folders = self.folders.clone();
                }
                config.date_range = self.range;
                config.max_message_size = self.max_message_size;
                config.resume_after = resume_after;
                Box::new(ImapSource::connect(config)?)
            }
        })
    }
}

/// The reading thread: numbers the messages, waits for room (so memory stays bounded), and
/// reconnects a dropped IMAP connection a few times, resuming after the last message read.
fn read_source(
    mut source: Box<dyn MessageSource>,
    opener: SourceOpener,
    out: crossbeam_channel::Sender<(u64, SourceItemOrEnd)>,
    permits: crossbeam_channel::Sender<()>,
    stop: &AtomicBool,
) {
    let mut seq = 0u64;
    let mut reconnects = 0;
    loop {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let item = match source.next() {
            None => return,
            Some(Ok(m)) => SourceItemOrEnd::Message(m),
            Some(Err(e)) => {
                let retry = matches!(e, SourceError::ImapConnectionLost { .. })
                    && reconnects < IMAP_RECONNECTS;
                if retry {
                    reconnects += 1;
                    tracing::warn!(error = %e, attempt = reconnects, "IMAP connection lost: reconnecting");
                    std::thread::sleep(Duration::from_millis(500 * u64::from(reconnects)));
                    let resume = e.resume_position().or_else(|| last_resume(&e));
                    match opener.open(resume) {
                        Ok(s) => {
                            source = s;
                            continue;
                        }
                        Err(again) => SourceItemOrEnd::Failed(again),
                    }
                } else {
                    SourceItemOrEnd::Failed(e)
                }
            }
        };
        let failed = matches!(item, SourceItemOrEnd::Failed(_));
        if permits.send(()).is_err() || out.send((seq, item)).is_err() {
            return;
        }
        seq += 1;
        if failed {
            return;
        }
    }
}

/// A lost connection before any message of its folder was delivered: start that folder
/// again (its earlier folders are done: resume "after UID 0" of it).
fn last_resume(e: &SourceError) -> Option<Position> {
    match e {
        SourceError::ImapConnectionLost {
            folder,
            uid_validity,
            last_uid: None,
            ..
        } => Some(Position::Imap {
            folder: folder.clone(),
            uid_validity: *uid_validity,
            uid: 0,
        }),
        _ => None,
    }
}

struct ParseContext {
    inbound_domain: String,
    account: AccountId,
    job: i64,
    range: DateRange,
    max_message_size: u64,
}

impl ParseContext {
    fn parse(&self, seq: u64, item: SourceItemOrEnd) -> Unit {
        let message = match item {
            SourceItemOrEnd::Failed(e) => {
                return Unit {
                    seq,
                    position: String::new(),
                    bytes: 0,
                    work: Work::Failed(e),
                }
            }
            SourceItemOrEnd::Message(m) => m,
        };
        let position = message.position.to_string();
        let date = message
            .date
            .map(|d| d.timestamp_millis())
            .unwrap_or_else(crate::store::now_ms);
        let bytes = match &message.content {
            Content::Complete(raw) => raw.len() as u64,
            Content::Oversized { size, .. } => *size,
        };
        if !self.range.contains(message.date) {
            return Unit {
                seq,
                position,
                bytes,
                work: Work::Skip,
            };
        }
        let work = match message.content {
            Content::Complete(raw) => Work::Store(import_item(
                &self.inbound_domain,
                Arc::new(raw),
                self.account,
                date,
                &ImportOrigin {
                    job: self.job,
                    position: position.clone(),
                    origin: &message.origin,
                    folder: message.folder.as_deref(),
                    envelope_sender: message.envelope_sender.as_deref(),
                },
            )),
            Content::Oversized { size, head } => Work::Store(Intake::Quarantine(NewQuarantine {
                account_id: Some(self.account),
                reason: "too_large".into(),
                detail: Some(format!(
                    "{}: {size} bytes, over the import's size cap of {} bytes; only its first {} bytes are kept",
                    message.origin,
                    self.max_message_size,
                    head.len()
                )),
                raw_sha256: hex::encode(Sha256::digest(&head)),
                raw: Arc::new(head),
                envelope_json: Some(
                    serde_json::json!({"import": {"job": self.job, "origin": message.origin}})
                        .to_string(),
                ),
                source: "import",
                source_position: Some(position.clone()),
                received_at: date,
            })),
        };
        Unit {
            seq,
            position,
            bytes,
            work,
        }
    }
}
