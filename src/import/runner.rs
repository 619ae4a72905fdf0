//! Import jobs run inside `postern serve` for the HTTP API: each job is a tokio task running
//! [`run_import`] through the server's own storage writer, with its live progress kept in
//! memory for the API (the counters of committed batches are in the job row).
//!
//! One job at a time per account (imports of one account interleaved would thread worse and
//! compete for the same tickets), at most `max_concurrent` in the server. What a job needs
//! to run again (the source, its options) is in the job row's `options`, except an IMAP
//! password, which is never stored: a resumed IMAP job is given it again.

use super::job_lock::{ImportLock, LockError};
use super::pipeline::{run_import, ImportProgress, SourceSpec};
use super::staging::StagingTotals;
use super::{DateRange, DecompressLimits, ImapConfig, ImportRequest, SourceError};
use crate::domain::{AccountId, ImportTotals};
use crate::store::{import_status, CommitWriter, ImportJobView, NewImportJob, Store, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Limits of the API's import jobs (`[imports]` in the configuration).
#[derive(Debug, Clone)]
pub struct RunnerSettings {
    pub max_concurrent: usize,
    pub batch_size: usize,
    /// `imports.max_rate`: messages per second each pass of a job goes at most; 0: no limit.
    pub max_rate: u32,
    pub max_message_size: u64,
    /// `imports.allow_private_imap`: IMAP servers on loopback or private networks allowed.
    pub allow_private_imap: bool,
    /// `imports.max_decompressed_size` and `imports.max_compression_ratio`.
    pub decompress: DecompressLimits,
    /// `imports.max_staged_size`.
    pub max_staged_size: u64,
    /// `threading.max_participants_per_message`.
    pub max_participants: usize,
}

/// What an API upload holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UploadKind {
    /// An mbox file, plain or gzip.
    Mbox,
    /// One message (.eml), kept alone in a folder of its own.
    Eml,
}

/// Where a job's messages come from, as kept in the job row (never a password).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum JobSource {
    /// A file uploaded to the data folder: the mbox file, or the folder holding the .eml.
    Upload {
        kind: UploadKind,
        path: PathBuf,
        /// The name the client gave, for people.
        name: Option<String>,
        size: u64,
    },
    Imap {
        /// `imaps://user@host[:port][/Folder]`, without password.
        url: String,
        /// The CA certificate the client gave, saved in the data folder.
        ca_file: Option<PathBuf>,
    },
}

impl JobSource {
    /// Files of the data folder this job owns (deleted once it completes).
    fn owned_files(&self) -> Vec<PathBuf> {
        match self {
            JobSource::Upload { path, .. } => vec![path.clone()],
            JobSource::Imap { ca_file, .. } => ca_file.iter().cloned().collect(),
        }
    }
}

/// Everything that defines an API job, stored as the job row's `options`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobOptions {
    pub source: JobSource,
    #[serde(default)]
    pub folders: Vec<String>,
    pub since: Option<chrono::NaiveDate>,
    pub until: Option<chrono::NaiveDate>,
    #[serde(default)]
    pub open_newest: u32,
    #[serde(default)]
    pub dry_run: bool,
    pub max_message_size: u64,
}

impl JobOptions {
    /// The options of an API job's row; `None` for a job of the CLI.
    pub fn of_row(options: &serde_json::Value) -> Option<Self> {
        serde_json::from_value(options.get("api")?.clone()).ok()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "import job {job} of this account is still {status}; one import runs at a time per \
         account: wait for it to end (GET /api/v1/imports/{job}) or cancel it \
         (POST /api/v1/imports/{job}/cancel)"
    )]
    AccountBusy { job: i64, status: &'static str },
    #[error(
        "this import is already running elsewhere ({0}); wait for it to end, then start it again"
    )]
    SourceBusy(String),
    #[error(
        "{0} import jobs are running on this server, its limit (imports.max_concurrent); try \
         again when one has ended"
    )]
    TooMany(usize),
    #[error("the server is shutting down; start the import again once it is back")]
    ShuttingDown,
    #[error(
        "import job {job} is {status}: only a failed, interrupted or cancelled job can be \
         resumed"
    )]
    NotResumable { job: i64, status: String },
    #[error(
        "import job {0} was discarded (its files are deleted) and cannot be resumed; start the \
         import again as a new job (POST /api/v1/imports or /api/v1/imports/upload)"
    )]
    Discarded(i64),
    #[error(
        "import job {job} is {status}: only a stopped job (failed, interrupted or cancelled) \
         keeps files to discard{hint}"
    )]
    NothingToDiscard {
        job: i64,
        status: String,
        hint: String,
    },
    #[error(
        "import job {0} was started by `postern import` on the command line: run the same \
         command again to resume it"
    )]
    NotAnApiJob(i64),
    #[error("no import job {0} in this account")]
    NoJob(i64),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot prepare the import: {0}")]
    Lock(LockError),
}

/// Where a running job is, for the API.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LiveProgress {
    /// `reading` (first pass: the source is copied to the staging file) or `committing`
    /// (second pass, in date order).
    pub phase: &'static str,
    /// Messages read, outside the dates and bytes read so far (first pass).
    pub seen: i64,
    pub skipped: i64,
    pub bytes: i64,
    /// Messages to commit in the second pass (`None` while reading).
    pub total: Option<i64>,
    /// Messages committed so far (imported + duplicates + quarantined).
    pub done: i64,
    pub imported: i64,
    pub duplicates: i64,
    pub quarantined: i64,
    /// Messages per second in the current phase.
    pub rate: f64,
    /// Seconds left, estimated from the rate (second pass only).
    pub eta_seconds: Option<u64>,
}

#[derive(Default)]
struct LiveState {
    reading_since: Option<Instant>,
    reading: StagingTotals,
    committing_since: Option<Instant>,
    done_at_start: i64,
    total: Option<i64>,
    counters: ImportTotals,
}

/// A job running in this process.
struct LiveJob {
    account: AccountId,
    dry_run: bool,
    cancel: CancellationToken,
    /// Cancelled by a user (not by the server's shutdown).
    user_cancelled: std::sync::atomic::AtomicBool,
    /// Its final status is being written or was: it holds no slot any more, although its
    /// task may still be tidying up (a client that saw it end may start the next job).
    ended: std::sync::atomic::AtomicBool,
    state: Mutex<LiveState>,
}

fn done(c: &ImportTotals) -> i64 {
    c.committed()
}

impl LiveJob {
    fn snapshot(&self) -> Option<LiveProgress> {
        let s = self.state.lock().ok()?;
        let c = s.counters;
        let (phase, rate, eta) = match s.committing_since {
            Some(since) => {
                let secs = since.elapsed().as_secs_f64();
                let moved = (done(&c) - s.done_at_start).max(0) as f64;
                let rate = if secs > 0.0 { moved / secs } else { 0.0 };
                let eta = s
                    .total
                    .filter(|_| rate > 0.0)
                    .map(|t| ((t - done(&c)).max(0) as f64 / rate).ceil() as u64);
                ("committing", rate, eta)
            }
            None => {
                let secs = s.reading_since.map_or(0.0, |t| t.elapsed().as_secs_f64());
                let seen = if self.dry_run { c.seen } else { s.reading.seen };
                let rate = if secs > 0.0 { seen as f64 / secs } else { 0.0 };
                ("reading", rate, None)
            }
        };
        let reading = s.committing_since.is_none() && !self.dry_run;
        Some(LiveProgress {
            phase,
            seen: if reading { s.reading.seen } else { c.seen },
            skipped: if reading {
                s.reading.skipped
            } else {
                c.skipped
            },
            bytes: if reading { s.reading.bytes } else { c.bytes },
            total: s.total,
            done: done(&c),
            imported: c.imported,
            duplicates: c.duplicates,
            quarantined: c.quarantined,
            rate: (rate * 10.0).round() / 10.0,
            eta_seconds: eta,
        })
    }
}

struct Reporter(Arc<LiveJob>);

impl ImportProgress for Reporter {
    fn ending(&self) {
        self.0
            .ended
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn reading(&self, totals: &StagingTotals) {
        if let Ok(mut s) = self.0.state.lock() {
            s.reading = *totals;
        }
    }

    fn started(&self, _source: &str, total: Option<i64>, counters: &ImportTotals) {
        if let Ok(mut s) = self.0.state.lock() {
            s.counters = *counters;
            if self.0.dry_run {
                // A dry run reads and counts in one pass: it is "reading" throughout.
                s.reading_since = Some(Instant::now());
            } else {
                s.committing_since = Some(Instant::now());
                s.done_at_start = done(counters);
                s.total = total;
            }
        }
    }

    fn advanced(&self, counters: &ImportTotals) {
        if let Ok(mut s) = self.0.state.lock() {
            s.counters = *counters;
        }
    }
}

/// The server's import jobs.
pub struct ImportRunner {
    store: Store,
    /// Taken away at shutdown, after the jobs ended, so the writer can stop.
    writer: Mutex<Option<CommitWriter>>,
    inbound_domain: String,
    dir: PathBuf,
    settings: RunnerSettings,
    live: Arc<Mutex<HashMap<i64, Arc<LiveJob>>>>,
    /// Starts one at a time: the checks and the new job row go together.
    starting: tokio::sync::Mutex<()>,
    stop: CancellationToken,
    tasks: TaskTracker,
}

/// A job to start: a new one, or one to run again.
pub struct StartJob {
    pub account: AccountId,
    /// Who asks (`api:token:7`, `api:user:3`); never `cli`.
    pub created_by: String,
    pub options: JobOptions,
    /// The IMAP password, for this run only.
    pub password: Option<String>,
}

impl ImportRunner {
    /// `dir` is the data folder's `imports/` (uploads, staging files, locks).
    pub fn new(
        store: Store,
        writer: CommitWriter,
        inbound_domain: &str,
        dir: PathBuf,
        settings: RunnerSettings,
    ) -> Self {
        Self {
            store,
            writer: Mutex::new(Some(writer)),
            inbound_domain: inbound_domain.to_ascii_lowercase(),
            dir,
            settings,
            live: Arc::default(),
            starting: tokio::sync::Mutex::new(()),
            stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
        }
    }

    /// Where uploads and staging files go.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Jobs a dead server left running or queued become `interrupted` (resumable). Call
    /// once at start, before any job runs.
    pub async fn recover(&self) -> Result<u64, StoreError> {
        let n = self.store.mark_server_imports_interrupted().await?;
        if n > 0 {
            tracing::warn!(
                jobs = n,
                "import jobs were left running by a server that stopped; they are marked \
                 interrupted and can be resumed (POST /api/v1/imports/ID/resume)"
            );
        }
        Ok(n)
    }

    /// The live progress of a job running in this process.
    pub fn progress(&self, job: i64) -> Option<LiveProgress> {
        let live = self.live.lock().ok()?.get(&job).cloned()?;
        live.snapshot()
    }

    /// The job of this account running in this process, if any (one whose final status is
    /// written no longer counts, as in [`ImportRunner::start`]'s check).
    pub fn running_job_of(&self, account: AccountId) -> Option<i64> {
        let live = self.live.lock().ok()?;
        live.iter()
            .find(|(_, j)| {
                j.account == account && !j.ended.load(std::sync::atomic::Ordering::SeqCst)
            })
            .map(|(&id, _)| id)
    }

    /// Whether a job of this account runs in this process now.
    pub fn is_running(&self, job: i64) -> bool {
        self.live.lock().is_ok_and(|l| l.contains_key(&job))
    }

    /// Creates the job row and starts it; returns its id.
    pub async fn start(&self, job: StartJob) -> Result<i64, StartError> {
        let _one_at_a_time = self.starting.lock().await;
        let request = self.request(&job, None)?;
        self.check_room(job.account, &request)?;
        let source_key = if job.options.dry_run {
            // Never found by a CLI run looking for an unfinished job of the same import.
            format!("dry-run|{}", request.source_key())
        } else {
            request.source_key()
        };
        let options = serde_json::json!({
            "folders": job.options.folders,
            "since": job.options.since,
            "until": job.options.until,
            "open_newest": job.options.open_newest,
            "max_message_size": job.options.max_message_size,
            "dry_run": job.options.dry_run,
            "api": job.options,
        });
        let id = self
            .store
            .create_import_job(&NewImportJob {
                account: job.account,
                kind: request.source.kind(),
                source: &describe(&job.options.source),
                source_key: &source_key,
                options: &options,
                created_by: &job.created_by,
            })
            .await?;
        self.spawn(id, job, request)?;
        Ok(id)
    }

    /// Runs a failed, interrupted or cancelled API job again: it goes on from its last
    /// committed batch (see `run_import`).
    pub async fn resume(
        &self,
        account: AccountId,
        id: i64,
        created_by: String,
        password: Option<String>,
    ) -> Result<(), StartError> {
        let _one_at_a_time = self.starting.lock().await;
        let row = self.job_row(account, id).await?;
        let options = JobOptions::of_row(&row.options).ok_or(StartError::NotAnApiJob(id))?;
        if row.discarded_at.is_some() {
            return Err(StartError::Discarded(id));
        }
        if self.is_running(id) || !import_status::is_stopped(&row.status) {
            return Err(StartError::NotResumable {
                job: id,
                status: row.status,
            });
        }
        let job = StartJob {
            account,
            created_by,
            options,
            password,
        };
        let request = self.request(&job, Some(id))?;
        self.check_room(account, &request)?;
        self.spawn(id, job, request)
    }

    async fn job_row(&self, account: AccountId, id: i64) -> Result<ImportJobView, StartError> {
        self.store
            .import_job(account, id)
            .await?
            .ok_or(StartError::NoJob(id))
    }

    /// Deletes what a stopped job keeps to be resumed (its upload or CA certificate, its
    /// staging copy) and marks it discarded: it will not be resumed. A job already discarded
    /// is left as it is. A queued or running job must be cancelled first.
    pub async fn discard(&self, account: AccountId, id: i64) -> Result<(), StartError> {
        // Not while a resume of the same job may be starting.
        let _one_at_a_time = self.starting.lock().await;
        let row = self.job_row(account, id).await?;
        if row.discarded_at.is_some() {
            return Ok(());
        }
        if self.is_running(id) || !import_status::is_stopped(&row.status) {
            let hint = if row.status == import_status::COMPLETED {
                " (a completed job has deleted its own)".to_string()
            } else {
                format!("; cancel it first (POST /api/v1/imports/{id}/cancel)")
            };
            return Err(StartError::NothingToDiscard {
                job: id,
                status: row.status,
                hint,
            });
        }
        // Marked first: should deleting fail half-way, the job is not resumed from a part.
        self.store.discard_import_job(account, id).await?;
        let mut owned: Vec<PathBuf> = JobOptions::of_row(&row.options)
            .map(|o| o.source.owned_files())
            .unwrap_or_default();
        owned.push(super::staging::staging_path(&self.dir, id));
        // Each failure to delete is logged; the job stays discarded either way.
        let _ =
            tokio::task::spawn_blocking(move || owned.iter().for_each(|p| remove_owned(p))).await;
        tracing::info!(job = id, account = %account, "import job discarded");
        Ok(())
    }

    /// Asks a job to stop after its current batch; `false` when the account has no such job.
    /// A running job ends `cancelled` (resumable); a finished one is left as it is.
    pub async fn cancel(&self, account: AccountId, id: i64) -> Result<bool, StoreError> {
        if !self.store.request_import_cancel(account, id).await? {
            return Ok(false);
        }
        let live = self.live.lock().ok().and_then(|l| l.get(&id).cloned());
        if let Some(job) = live.filter(|j| j.account == account) {
            job.user_cancelled
                .store(true, std::sync::atomic::Ordering::SeqCst);
            job.cancel.cancel();
        }
        Ok(true)
    }

    /// Stops every job (they end `interrupted`, resumable), waits for them, then lets go of
    /// the storage writer so it can finish.
    pub async fn shutdown(&self, grace: Duration) {
        self.stop.cancel();
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "import jobs still running at shutdown; they resume from their last batch"
            );
        }
        if let Ok(mut w) = self.writer.lock() {
            w.take();
        }
    }

    fn check_room(&self, account: AccountId, request: &ImportRequest) -> Result<(), StartError> {
        if self.stop.is_cancelled() {
            return Err(StartError::ShuttingDown);
        }
        {
            let live = self
                .live
                .lock()
                .map_err(|_| StartError::Invalid("internal error: job table poisoned".into()))?;
            let running = || {
                live.iter()
                    .filter(|(_, j)| !j.ended.load(std::sync::atomic::Ordering::SeqCst))
            };
            if let Some((&job, _)) = running().find(|(_, j)| j.account == account) {
                return Err(StartError::AccountBusy {
                    job,
                    status: import_status::RUNNING,
                });
            }
            let count = running().count();
            if count >= self.settings.max_concurrent {
                return Err(StartError::TooMany(count));
            }
        }
        if !request.dry_run {
            // The same import run by `postern import` beside the server holds its lock.
            match ImportLock::acquire(&request.lock_dir, account, &request.source_key()) {
                Ok(_released_at_once) => {}
                Err(LockError::Busy { .. }) => {
                    return Err(StartError::SourceBusy(
                        "probably by `postern import` on the command line".into(),
                    ))
                }
                Err(e) => return Err(StartError::Lock(e)),
            }
        }
        Ok(())
    }

    fn request(&self, job: &StartJob, id: Option<i64>) -> Result<ImportRequest, StartError> {
        let o = &job.options;
        let source = match &o.source {
            JobSource::Upload {
                kind: UploadKind::Mbox,
                path,
                ..
            } => SourceSpec::Mbox {
                path: path.clone(),
                dialect: None,
            },
            JobSource::Upload {
                kind: UploadKind::Eml,
                path,
                ..
            } => SourceSpec::Eml { path: path.clone() },
            JobSource::Imap { url, ca_file } => {
                let password = job.password.clone().ok_or_else(|| {
                    StartError::Invalid(
                        "password: an IMAP import needs the account's password (it is never \
                         stored, so a resumed IMAP job needs it again)"
                            .into(),
                    )
                })?;
                let mut config = ImapConfig::from_url(url, password).map_err(|e| match e {
                    SourceError::BadImapUrl { .. } => StartError::Invalid(format!("url: {e}")),
                    other => StartError::Invalid(other.to_string()),
                })?;
                config.ca_file = ca_file.clone();
                config.public_only = !self.settings.allow_private_imap;
                SourceSpec::Imap {
                    config: Box::new(config),
                }
            }
        };
        let mut request = ImportRequest::new(job.account, source, self.dir.clone());
        request.folders = o.folders.clone();
        request.range = DateRange {
            since: o.since,
            until: o.until,
        };
        request.open_newest = o.open_newest;
        request.dry_run = o.dry_run;
        request.max_message_size = o.max_message_size;
        request.decompress = self.settings.decompress;
        request.max_staged_size = self.settings.max_staged_size;
        request.max_participants = self.settings.max_participants;
        request.batch_size = self.settings.batch_size;
        request.max_rate = self.settings.max_rate;
        request.created_by = job.created_by.clone();
        request.job = id;
        Ok(request)
    }

    fn spawn(&self, id: i64, job: StartJob, mut request: ImportRequest) -> Result<(), StartError> {
        let writer = self
            .writer
            .lock()
            .ok()
            .and_then(|w| w.clone())
            .ok_or(StartError::ShuttingDown)?;
        request.job = Some(id);
        let live = Arc::new(LiveJob {
            account: job.account,
            dry_run: job.options.dry_run,
            cancel: self.stop.child_token(),
            user_cancelled: Default::default(),
            ended: Default::default(),
            state: Mutex::new(LiveState {
                reading_since: Some(Instant::now()),
                ..LiveState::default()
            }),
        });
        if let Ok(mut l) = self.live.lock() {
            l.insert(id, live.clone());
        }
        let store = self.store.clone();
        let domain = self.inbound_domain.clone();
        let owned = job.options.source.owned_files();
        let dry_run = job.options.dry_run;
        let account = job.account;
        let this_live = live.clone();
        let live_table = self.live.clone();
        let finished = move || {
            if let Ok(mut l) = live_table.lock() {
                l.remove(&id);
            }
        };
        tracing::info!(job = id, account = %account, kind = request.source.kind(),
            source = %request.source.describe(), dry_run, "import job started");
        self.tasks.spawn(async move {
            let cancel = this_live.cancel.clone();
            if dry_run {
                if let Err(e) = store.start_import_job(id).await {
                    tracing::error!(job = id, error = %e, "cannot mark the import job running");
                }
            }
            let progress: Arc<dyn ImportProgress> = Arc::new(Reporter(this_live.clone()));
            let result = run_import(&store, &writer, &domain, request, progress, cancel).await;
            drop(writer);
            // Before the runner writes a status of its own below (dry runs, failures).
            this_live
                .ended
                .store(true, std::sync::atomic::Ordering::SeqCst);
            let status = match &result {
                Ok(summary) if dry_run => {
                    if let Err(e) = store.record_dry_run(id, &summary.totals, &summary.status).await {
                        tracing::error!(job = id, error = %e, "cannot record the dry run's result");
                    }
                    summary.status.clone()
                }
                Ok(summary)
                    if summary.status == import_status::INTERRUPTED
                        && this_live
                            .user_cancelled
                            .load(std::sync::atomic::Ordering::SeqCst) =>
                {
                    // A cancel that came before the job started running was reset by its
                    // start; the token stopped it all the same.
                    if let Err(e) = store.mark_import_cancelled(id).await {
                        tracing::error!(job = id, error = %e, "cannot mark the import job cancelled");
                    }
                    import_status::CANCELLED.to_string()
                }
                Ok(summary) => summary.status.clone(),
                Err(e) => {
                    // Failures before the job ran (the lock, the account) leave it queued;
                    // a dry run leaves it running: it failed.
                    let current = store.import_job(account, id).await.ok().flatten();
                    if current.is_some_and(|j| {
                        j.status == import_status::QUEUED || j.status == import_status::RUNNING
                    }) {
                        if let Err(e2) = store
                            .finish_import_job(id, import_status::FAILED, Some(&e.to_string()), 0)
                            .await
                        {
                            tracing::error!(job = id, error = %e2, "cannot mark the import job failed");
                        }
                    }
                    import_status::FAILED.to_string()
                }
            };
            if status == import_status::COMPLETED {
                // Kept until then so that a stopped job resumes from them.
                for f in &owned {
                    remove_owned(f);
                }
            }
            match &result {
                Ok(s) => tracing::info!(job = id, status = %s.status, seen = s.seen,
                    imported = s.imported, duplicates = s.duplicates,
                    quarantined = s.quarantined, "import job ended"),
                Err(e) => tracing::warn!(job = id, error = %e, "import job failed"),
            }
            finished();
        });
        Ok(())
    }
}

fn remove_owned(path: &Path) {
    let result = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    if let Err(e) = result {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), error = %e, "cannot delete an import's file");
        }
    }
}

/// What people read as the job's source (no server path, no password).
fn describe(source: &JobSource) -> String {
    match source {
        JobSource::Upload {
            kind, name, size, ..
        } => {
            let kind = match kind {
                UploadKind::Mbox => "mbox",
                UploadKind::Eml => "eml",
            };
            match name {
                Some(n) => format!("upload {n} ({kind}, {size} bytes)"),
                None => format!("upload ({kind}, {size} bytes)"),
            }
        }
        JobSource::Imap { url, .. } => url.clone(),
    }
}
