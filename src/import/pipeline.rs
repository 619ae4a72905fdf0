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
use super::pace::Pace;
use super::staging::{self, StagedIndex, StagedSource, StagingError, StagingTotals};
use super::{
    Content, DateRange, DecompressLimits, EmlSource, FileSourceOptions, ImapConfig, ImapSource,
    MaildirSource, MboxDialect, MboxSource, MessageSource, Position, SourceError, SourceMessage,
};
use crate::domain::{AccountId, ImportTotals};
use crate::ingest::{import_item, Filing, ImportOrigin};
use crate::store::{
    import_status, CommitWriter, ImportCheckpoint, ImportJobView, Intake, IntakeOutcome,
    NewImportJob, NewQuarantine, Store, StoreError,
};
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
    /// A gzip mbox: how far it may decompress (`imports.max_decompressed_size`,
    /// `imports.max_compression_ratio`).
    pub decompress: DecompressLimits,
    /// Most bytes of messages the staging copy may hold (`imports.max_staged_size`).
    pub max_staged_size: u64,
    /// `threading.max_participants_per_message`.
    pub max_participants: usize,
    /// Messages per transaction.
    pub batch_size: usize,
    /// Most messages per second each pass reads or commits; 0: no limit.
    pub max_rate: u32,
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
            decompress: DecompressLimits::default(),
            max_staged_size: super::DEFAULT_MAX_STAGED_SIZE,
            max_participants: crate::ingest::DEFAULT_MAX_PARTICIPANTS,
            batch_size: 500,
            max_rate: 0,
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

/// The final word on an import (the CLI's `--json` output).
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct ImportSummary {
    /// `None` for a dry run, which records nothing.
    pub job_id: Option<i64>,
    pub status: String,
    pub dry_run: bool,
    pub source: String,
    /// How many messages an earlier run had already committed, when this run resumed it.
    pub resumed_after: Option<i64>,
    #[serde(flatten)]
    pub totals: ImportTotals,
    /// Tickets the import created and existing tickets it added history to (`None` on a dry run).
    pub tickets_created: Option<i64>,
    pub tickets_merged: Option<i64>,
    /// tickets_created + tickets_merged.
    pub tickets: Option<i64>,
    pub elapsed_seconds: f64,
    pub error: Option<String>,
}

/// A summary reads as its totals too (`summary.imported`): they are most of what it says.
impl std::ops::Deref for ImportSummary {
    type Target = ImportTotals;
    fn deref(&self) -> &ImportTotals {
        &self.totals
    }
}

/// Told how an import goes (a progress bar, log lines, nothing).
pub trait ImportProgress: Send + Sync {
    /// Now and then while the source is read (first pass).
    fn reading(&self, _totals: &StagingTotals) {}
    /// Once, when committing starts (second pass): `total` messages to commit, of which
    /// `counters` says how many an earlier run already did.
    fn started(&self, _source: &str, _total: Option<i64>, _counters: &ImportTotals) {}
    /// After each committed batch.
    fn advanced(&self, _counters: &ImportTotals) {}
    /// Just before the job's final status is written: from then on a client that sees the
    /// job ended may start the next one, so the job must not count as running any more.
    fn ending(&self) {}
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
    #[error(transparent)]
    Staging(StagingError),
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

/// One message on its way: read, then parsed.
struct Unit {
    seq: u64,
    position: String,
    bytes: u64,
    work: Work,
}

enum Work {
    /// Outside the dates (dry run only: the first pass stages only messages within them).
    Skip,
    Store(Intake),
    /// The source failed after the messages before this one.
    Failed(SourceError),
}

/// Runs one import to its end (or until cancelled) and returns its summary.
///
/// Two passes: the source is read once, in its own order, into a staging file (see
/// `staging`); then the staged messages are parsed on every core and committed in date
/// order, in batches, each with the job's checkpoint in the same transaction. A source error
/// marks the job failed with the error; running the same import again resumes it: in the
/// second pass after the last committed batch, in the first after the last message staged.
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
    store.start_import_job(job.id).await?;
    let run = Run {
        store,
        writer,
        inbound_domain,
        request: &request,
        job: job.id,
        progress: progress.as_ref(),
        cancel: &cancel,
        staging: staging::staging_path(&request.lock_dir, job.id),
    };
    let done_before = job.totals.committed();
    let outcome = run.execute(&job).await;
    let (final_status, error) = match &outcome {
        Ok(Ending::Done) => (import_status::COMPLETED, None),
        Ok(Ending::Cancelled) if store.import_cancel_requested(job.id).await? => {
            (import_status::CANCELLED, None)
        }
        Ok(Ending::Cancelled) => (import_status::INTERRUPTED, None),
        Err(e) => (import_status::FAILED, Some(e.to_string())),
    };
    progress.ending();
    store
        .finish_import_job(job.id, final_status, error.as_deref(), request.open_newest)
        .await?;
    if final_status == import_status::COMPLETED {
        // The staged copy is not needed any more; a failed or stopped job keeps it to resume.
        let _ = std::fs::remove_file(&run.staging);
    }
    let view = store
        .import_job(request.account, job.id)
        .await?
        .ok_or(ImportError::NoJob(job.id))?;
    let resumed = (job.staged.is_some() && done_before > 0).then_some(done_before);
    let summary = summary_of(&view, resumed, started.elapsed());
    progress.finished(&summary);
    match outcome {
        Err(e) => Err(e),
        Ok(_) => Ok(summary),
    }
}

fn summary_of(view: &ImportJobView, resumed_after: Option<i64>, took: Duration) -> ImportSummary {
    ImportSummary {
        job_id: Some(view.id),
        status: view.status.clone(),
        dry_run: false,
        source: format!("{} {}", view.kind, view.source),
        resumed_after,
        totals: view.totals,
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
    staging: PathBuf,
}

impl Run<'_> {
    async fn execute(&self, job: &ImportJobView) -> Result<Ending, ImportError> {
        // First pass, unless a complete staging file of this job is still there.
        let reusable = match job.staged {
            Some(n) => match staging::index_of(&self.staging) {
                Ok(index) if index.len() as i64 == n => Some((index, job)),
                Ok(_) | Err(_) => None,
            },
            None => None,
        };
        let (index, mut counters) = match reusable {
            Some((index, job)) => (index, job.totals),
            None => match self.stage().await? {
                None => return Ok(Ending::Cancelled),
                Some((index, totals)) => {
                    self.store
                        .set_import_staged(
                            self.job,
                            index.len() as i64,
                            totals.seen,
                            totals.skipped,
                            totals.bytes,
                        )
                        .await?;
                    (
                        index,
                        ImportTotals {
                            seen: totals.seen,
                            skipped: totals.skipped,
                            bytes: totals.bytes,
                            ..ImportTotals::default()
                        },
                    )
                }
            },
        };
        let total = index.len() as i64;
        let done = counters.committed();
        self.progress
            .started(&self.request.source.describe(), Some(total), &counters);
        let source = StagedSource::open(
            &self.staging,
            index,
            done.max(0) as usize,
            self.request.max_message_size,
        )
        .map_err(staging_error)?;
        let mut stream = MessageStream::start(
            self.request,
            Box::new(source),
            DateRange::default(),
            self.inbound_domain.to_string(),
            self.job,
        )?;
        let mut batch: Vec<Intake> = Vec::with_capacity(self.request.batch_size + 1);
        let mut last_position: Option<String> = None;
        let mut failure: Option<SourceError> = None;
        let mut cancelled = false;
        let mut pace = Pace::new(self.request.max_rate);
        while let Some(Unit { position, work, .. }) = stream.next().await {
            match work {
                Work::Failed(e) => {
                    failure = Some(e);
                    break;
                }
                Work::Skip => {}
                Work::Store(item) => batch.push(item),
            }
            last_position = Some(position);
            stream.release(1);
            if batch.len() >= self.request.batch_size {
                let committed = batch.len() as u64;
                counters = self
                    .commit(&mut batch, counters, last_position.take())
                    .await?;
                self.progress.advanced(&counters);
                if self.wait_or_stop(pace.advance(committed)).await? {
                    cancelled = true;
                    break;
                }
            }
        }
        stream.stop();
        if !batch.is_empty() {
            counters = self
                .commit(&mut batch, counters, last_position.take())
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

    /// The first pass, on a thread of its own: `None` when stopped before its end.
    async fn stage(&self) -> Result<Option<(StagedIndex, StagingTotals)>, ImportError> {
        let opener = SourceOpener {
            spec: self.request.source.clone(),
            folders: self.request.folders.clone(),
            range: self.request.range,
            max_message_size: self.request.max_message_size,
            decompress: self.request.decompress,
        };
        let path = self.staging.clone();
        let range = self.request.range;
        let max_staged_size = self.request.max_staged_size;
        let stop = Arc::new(AtomicBool::new(false));
        let rate = self.request.max_rate;
        let (tick_tx, mut tick_rx) = tokio::sync::watch::channel(StagingTotals::default());
        let stopper = stop.clone();
        let reader = tokio::task::spawn_blocking(move || {
            staging::stage(
                &mut |resume| opener.open(resume),
                &path,
                &range,
                max_staged_size,
                &stopper,
                &mut Pace::new(rate),
                &mut |t| {
                    let _ = tick_tx.send(*t);
                },
            )
            .map_err(staging_error)
        });
        tokio::pin!(reader);
        loop {
            tokio::select! {
                result = &mut reader => {
                    return result.map_err(|e| ImportError::Internal(format!("reading thread: {e}")))?;
                }
                changed = tick_rx.changed() => {
                    if changed.is_ok() {
                        let t = *tick_rx.borrow_and_update();
                        self.progress.reading(&t);
                    }
                    if self.should_stop().await? {
                        stop.store(true, Ordering::Relaxed);
                    }
                }
                _ = self.cancel.cancelled() => {
                    stop.store(true, Ordering::Relaxed);
                }
            }
        }
    }

    async fn should_stop(&self) -> Result<bool, ImportError> {
        Ok(self.cancel.is_cancelled() || self.store.import_cancel_requested(self.job).await?)
    }

    /// Waits what the speed limit asks, unless the job is stopped meanwhile; true: stop.
    async fn wait_or_stop(&self, wait: Duration) -> Result<bool, ImportError> {
        let until = tokio::time::Instant::now() + wait;
        loop {
            if self.should_stop().await? {
                return Ok(true);
            }
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            // A cancel from another process is only seen in the database: look again each second.
            tokio::select! {
                _ = tokio::time::sleep(left.min(Duration::from_secs(1))) => {}
                _ = self.cancel.cancelled() => return Ok(true),
            }
        }
    }

    /// Commits the batch with the checkpoint; returns the counters as the database has them.
    async fn commit(
        &self,
        batch: &mut Vec<Intake>,
        before: ImportTotals,
        position: Option<String>,
    ) -> Result<ImportTotals, ImportError> {
        let checkpoint = ImportCheckpoint {
            job: self.job,
            position,
            imported: before.imported,
            duplicates: before.duplicates,
            quarantined: before.quarantined,
        };
        let mut items = std::mem::take(batch);
        items.push(Intake::ImportCheckpoint(checkpoint));
        let outcomes = self.writer.submit(items).await?;
        let mut after = before;
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

fn staging_error(e: StagingError) -> ImportError {
    match e {
        StagingError::Source(s) => ImportError::Source(s),
        other => ImportError::Staging(other),
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
    let opener = SourceOpener {
        spec: request.source.clone(),
        folders: request.folders.clone(),
        range: request.range,
        max_message_size: request.max_message_size,
        decompress: request.decompress,
    };
    let source = tokio::task::spawn_blocking(move || opener.open(None))
        .await
        .map_err(|e| ImportError::Internal(format!("source thread: {e}")))??;
    let mut stream = MessageStream::start(
        &request,
        source,
        request.range,
        inbound_domain.to_string(),
        0,
    )?;
    let mut counters = ImportTotals::default();
    progress.started(&request.source.describe(), None, &counters);
    let mut dedup = DryRunDedup::default();
    let mut failure = None;
    let mut pace = Pace::new(request.max_rate);
    while let Some(unit) = stream.next().await {
        if cancel.is_cancelled() {
            break;
        }
        let wait = pace.advance(1);
        if !wait.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = cancel.cancelled() => break,
            }
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
                dedup.pending.push(m.dedup_key.clone());
            }
            Work::Store(_) => {
                counters.seen += 1;
                counters.quarantined += 1;
            }
        }
        stream.release(1);
        if dedup.pending.len() >= request.batch_size {
            dedup
                .count_new(store, request.account, &mut counters)
                .await?;
            progress.advanced(&counters);
        }
    }
    stream.stop();
    dedup
        .count_new(store, request.account, &mut counters)
        .await?;
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
        resumed_after: None,
        totals: counters,
        tickets_created: None,
        tickets_merged: None,
        tickets: None,
        elapsed_seconds: started.elapsed().as_secs_f64(),
        error: None,
    };
    progress.finished(&summary);
    Ok(summary)
}

/// Dry run: the dedup keys read since the last count, and every new key seen so far.
#[derive(Default)]
struct DryRunDedup {
    pending: Vec<String>,
    seen: HashSet<String>,
}

impl DryRunDedup {
    /// Counts which of the pending keys are new (not in the store, not earlier in the source).
    async fn count_new(
        &mut self,
        store: &Store,
        account: AccountId,
        counters: &mut ImportTotals,
    ) -> Result<(), ImportError> {
        let keys = std::mem::take(&mut self.pending);
        let existing = store.existing_dedup_keys(account, &keys).await?;
        for k in keys {
            if existing.contains(&k) || !self.seen.insert(k) {
                counters.duplicates += 1;
            } else {
                counters.imported += 1;
            }
        }
        Ok(())
    }
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
}

impl MessageStream {
    /// Starts reading `source` on one thread and parsing on the others.
    fn start(
        request: &ImportRequest,
        source: Box<dyn MessageSource>,
        range: DateRange,
        inbound_domain: String,
        job: i64,
    ) -> Result<Self, ImportError> {
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
            std::thread::Builder::new()
                .name("postern-import-read".into())
                .spawn(move || read_source(source, raw_tx, permit_tx, &stop))
                .map_err(|e| ImportError::Internal(format!("cannot start a thread: {e}")))?
        };
        let mut parsers = Vec::with_capacity(threads);
        for i in 0..threads {
            let rx = raw_rx.clone();
            let tx = unit_tx.clone();
            let ctx = ParseContext {
                inbound_domain: inbound_domain.clone(),
                max_participants: request.max_participants,
                account: request.account,
                job,
                range,
                max_message_size: request.max_message_size,
            };
            parsers.push(
                std::thread::Builder::new()
                    .name(format!("postern-import-parse-{i}"))
                    .stack_size(crate::ingest::PARSE_THREAD_STACK)
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

enum SourceItemOrEnd {
    Message(SourceMessage),
    Failed(SourceError),
}

struct SourceOpener {
    spec: SourceSpec,
    folders: Vec<String>,
    range: DateRange,
    max_message_size: u64,
    decompress: DecompressLimits,
}

impl SourceOpener {
    fn open(&self, resume_after: Option<Position>) -> Result<Box<dyn MessageSource>, SourceError> {
        let options = FileSourceOptions {
            max_message_size: self.max_message_size,
            resume_after: resume_after.clone(),
            folders: self.folders.clone(),
            decompress: self.decompress,
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

/// The reading thread: numbers the messages and waits for room, so memory stays bounded.
fn read_source(
    mut source: Box<dyn MessageSource>,
    out: crossbeam_channel::Sender<(u64, SourceItemOrEnd)>,
    permits: crossbeam_channel::Sender<()>,
    stop: &AtomicBool,
) {
    let mut seq = 0u64;
    loop {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let item = match source.next() {
            None => return,
            Some(Ok(m)) => SourceItemOrEnd::Message(m),
            Some(Err(e)) => SourceItemOrEnd::Failed(e),
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

struct ParseContext {
    inbound_domain: String,
    max_participants: usize,
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
                &Filing {
                    inbound_domain: &self.inbound_domain,
                    max_participants: self.max_participants,
                    needs_probe: None,
                },
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
                raw_sha256: crate::store::blob_key(&head),
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
