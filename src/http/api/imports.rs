//! Import jobs (admins only): past mail from an IMAP account or an uploaded mbox / .eml,
//! run in the background by the server (`import::runner`), with progress, cancel and resume.

use crate::domain::{AccountId, ImportTotals, Principal};
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::http::pagination::{cut_page, encode_cursor, id_after, page_limit};
use crate::http::principal::require_admin;
use crate::http::ApiState;
use crate::import::runner::{
    ImportRunner, JobOptions, JobSource, LiveProgress, StartError, StartJob, UploadKind,
};
use crate::import::upload::{
    discard_upload, receive_upload, unique_file_name, UploadError, UploadLimits,
};
use crate::import::{DateRange, DecompressLimits, ImapConfig, ImapSecurity};
use crate::store::{import_status, ImportJobView};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

/// What the import routes need besides the store.
pub struct ImportsConfig {
    pub runner: Arc<ImportRunner>,
    /// `imports.max_upload_size`.
    pub max_upload_size: u64,
    /// `imports.allow_plain_imap`.
    pub allow_plain_imap: bool,
    /// `imports.max_message_size`: the per-message cap unless a request sets one.
    pub max_message_size: u64,
    /// `imports.max_decompressed_size` and `imports.max_compression_ratio`: a gzip upload
    /// past them is refused while it arrives.
    pub decompress: DecompressLimits,
}

/// Largest CA certificate text accepted.
const MAX_CA_PEM: usize = 64 * 1024;
const MAX_FOLDERS: usize = 100;
const MAX_PASSWORD: usize = 1024;

/// An import job as the API shows it: its progress while it runs, its summary once ended.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ImportJob {
    pub id: i64,
    /// mbox, eml or imap (maildir for jobs of the CLI).
    pub kind: String,
    /// The server and user, or the upload's name and size (never a password or a path).
    pub source: String,
    /// queued, running, completed, failed, cancelled, interrupted.
    pub status: String,
    /// Read and counted only, nothing written.
    pub dry_run: bool,
    pub folders: Vec<String>,
    pub since: Option<chrono::NaiveDate>,
    pub until: Option<chrono::NaiveDate>,
    pub open_newest: u32,
    /// Messages read into the staging file once the first pass is over.
    pub staged: Option<i64>,
    #[serde(flatten)]
    pub totals: ImportTotals,
    /// Tickets the import created and existing tickets it added history to (once ended).
    pub tickets_created: Option<i64>,
    pub tickets_merged: Option<i64>,
    pub tickets: Option<i64>,
    pub cancel_requested: bool,
    /// Why a failed job stopped.
    pub error: Option<String>,
    /// `POST /api/v1/imports/{id}/resume` runs it again from where it stopped.
    pub resumable: bool,
    /// When its kept files were deleted (`POST /api/v1/imports/{id}/discard`); such a job
    /// is history only and cannot be resumed.
    pub discarded_at: Option<chrono::DateTime<chrono::Utc>>,
    /// What to do next, for people (resume, give the password again...).
    pub next_step: Option<String>,
    /// Live figures of a running job: phase, rate, ETA.
    pub progress: Option<LiveProgress>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

fn job_of(view: ImportJobView, runner: &ImportRunner) -> ImportJob {
    let api = JobOptions::of_row(&view.options);
    let dry_run = api.as_ref().is_some_and(|o| o.dry_run);
    let imap = matches!(
        api.as_ref().map(|o| &o.source),
        Some(JobSource::Imap { .. })
    );
    let progress = runner.progress(view.id);
    let stopped = import_status::is_stopped(&view.status);
    let discarded = view.discarded_at.is_some();
    let resumable = stopped && api.is_some() && progress.is_none() && !discarded;
    let next_step = if resumable {
        let why = if view.status == import_status::INTERRUPTED {
            "the server stopped while this import ran; "
        } else {
            ""
        };
        let password = if imap {
            " with {\"password\": \"...\"} (it is never stored)"
        } else {
            ""
        };
        Some(format!(
            "{why}POST /api/v1/imports/{}/resume{password} goes on where it stopped",
            view.id
        ))
    } else if discarded {
        None
    } else if stopped && api.is_none() {
        Some("started by `postern import`: run the same command again to resume it".to_string())
    } else {
        None
    };
    let str_list = |k: &str| -> Vec<String> {
        view.options[k]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let date = |k: &str| {
        view.options[k]
            .as_str()
            .and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
    };
    ImportJob {
        id: view.id,
        kind: view.kind,
        source: view.source,
        dry_run,
        folders: str_list("folders"),
        since: date("since"),
        until: date("until"),
        open_newest: view.options["open_newest"]
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0),
        staged: view.staged,
        totals: view.totals,
        tickets_created: view.tickets_created,
        tickets_merged: view.tickets_merged,
        tickets: view
            .tickets_created
            .zip(view.tickets_merged)
            .map(|(a, b)| a + b),
        cancel_requested: view.cancel_requested,
        error: view.error,
        resumable,
        discarded_at: view.discarded_at,
        next_step,
        progress,
        created_at: view.created_at,
        started_at: view.started_at,
        finished_at: view.finished_at,
        updated_at: view.updated_at,
        status: view.status,
    }
}

fn start_error(e: StartError) -> ApiError {
    let message = e.to_string();
    match e {
        StartError::AccountBusy { .. }
        | StartError::SourceBusy(_)
        | StartError::NotResumable { .. }
        | StartError::Discarded(_)
        | StartError::NothingToDiscard { .. }
        | StartError::NotAnApiJob(_) => ApiError::new(StatusCode::CONFLICT, "conflict", message),
        StartError::TooMany(_) => {
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_imports", message)
        }
        StartError::ShuttingDown => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
        }
        StartError::NoJob(_) => ApiError::not_found(message),
        StartError::Invalid(_) => invalid(message),
        StartError::Store(e) => e.into(),
        StartError::Lock(e) => ApiError::internal("cannot start an import job", &e),
    }
}

/// A value the import refuses; the message starts with the field's name.
fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid", message)
}

fn created_by(p: &Principal) -> String {
    match (p.token_id, p.user_id) {
        (Some(t), _) => format!("api:token:{t}"),
        (None, Some(u)) => format!("api:user:{u}"),
        (None, None) => "api".to_string(),
    }
}

async fn answer_job(
    state: &ApiState,
    account: AccountId,
    id: i64,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let view = state
        .store
        .import_job(account, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no import job {id} in this account")))?;
    let mut response = (status, Json(job_of(view, &state.imports.runner))).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/imports/{id}")) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

/// The dates, options and limits common to both sources.
struct Choice {
    range: DateRange,
    open_newest: u32,
    dry_run: bool,
    max_message_size: u64,
}

impl Choice {
    /// The options of a job reading `folders` of `source` as chosen.
    fn job(self, source: JobSource, folders: Vec<String>) -> JobOptions {
        JobOptions {
            source,
            folders,
            since: self.range.since,
            until: self.range.until,
            open_newest: self.open_newest,
            dry_run: self.dry_run,
            max_message_size: self.max_message_size,
        }
    }
}

/// Starts a job in the caller's account (`password` only for IMAP; it is never stored).
async fn start_job(
    runner: &ImportRunner,
    principal: &Principal,
    options: JobOptions,
    password: Option<String>,
) -> Result<i64, StartError> {
    runner
        .start(StartJob {
            account: principal.account_id,
            created_by: created_by(principal),
            options,
            password,
        })
        .await
}

fn choice(
    since: Option<&str>,
    until: Option<&str>,
    open_newest: Option<u32>,
    dry_run: Option<bool>,
    max_message_size: Option<u64>,
    default_max: u64,
) -> Result<Choice, ApiError> {
    let today = chrono::Utc::now().date_naive();
    let since = since
        .map(|s| DateRange::parse_since(s, today).map_err(|e| invalid(format!("since: {e}"))))
        .transpose()?;
    let until = until
        .map(|s| DateRange::parse_date(s).map_err(|e| invalid(format!("until: {e}"))))
        .transpose()?;
    if let (Some(s), Some(u)) = (since, until) {
        if s > u {
            return Err(invalid(format!(
                "since: {s} is after until {u}: nothing would be imported"
            )));
        }
    }
    let open_newest = open_newest.unwrap_or(0);
    if open_newest > 1_000_000 {
        return Err(invalid("open_newest: at most 1000000"));
    }
    let max_message_size = max_message_size.unwrap_or(default_max);
    if !(1024..=1024 * 1024 * 1024).contains(&max_message_size) {
        return Err(invalid(
            "max_message_size: give a size in bytes between 1024 and 1073741824",
        ));
    }
    Ok(Choice {
        range: DateRange { since, until },
        open_newest,
        dry_run: dry_run.unwrap_or(false),
        max_message_size,
    })
}

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// A file name in the imports folder that nobody can choose: the client's name is a label.
/// An IMAP import.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewImapImport {
    /// `imaps://user@host[:port][/Folder]` (user percent-encoded, e.g. `me%40shop.com`).
    /// `imap://` (STARTTLS) only when the server allows it (`imports.allow_plain_imap`).
    #[schema(example = "imaps://support%40shop.example@imap.example.com/INBOX")]
    url: String,
    /// Used for this run only: never stored, logged or shown.
    password: String,
    /// Folders to read, in this order (default: the folder of the URL, else INBOX).
    #[serde(default)]
    folders: Vec<String>,
    /// Oldest mail: an age (2y, 18m, 90d, 3w) or a date (YYYY-MM-DD).
    since: Option<String>,
    /// Newest mail: a date (YYYY-MM-DD), included.
    until: Option<String>,
    /// How many of the newest tickets the import creates stay open (default 0).
    open_newest: Option<u32>,
    /// Read and count everything, write nothing.
    dry_run: Option<bool>,
    /// CA certificate(s) to trust for the server, PEM text (a private CA).
    ca_pem: Option<String>,
    /// Per-message size cap in bytes (larger messages are quarantined).
    max_message_size: Option<u64>,
}

/// Starts importing an IMAP account in the background (admins only).
#[utoipa::path(post, path = "/imports", tag = "imports", request_body = NewImapImport,
    responses(
        (status = 202, description = "The job, queued or running; poll its Location", body = ImportJob),
        (status = 400, description = "A field the import refuses (the message names it)", body = ErrorBody),
        (status = 403, description = "Agents cannot import", body = ErrorBody),
        (status = 409, description = "An import of this account is running", body = ErrorBody),
        (status = 429, description = "The server runs as many imports as it may", body = ErrorBody),
    ))]
pub async fn start_imap_import(
    State(state): State<ApiState>,
    principal: Principal,
    ApiJson(body): ApiJson<NewImapImport>,
) -> Result<Response, ApiError> {
    require_admin(&principal)?;
    let cfg = &state.imports;
    let url = body.url.trim().to_string();
    let parsed =
        ImapConfig::from_url(&url, String::new()).map_err(|e| invalid(format!("url: {e}")))?;
    if parsed.security == ImapSecurity::StartTls && !cfg.allow_plain_imap {
        return Err(invalid(
            "url: imap:// is refused: this server connects to IMAP with imaps:// only (TLS from \
             the first byte), so that the password never travels over a connection that starts \
             in plain text; use imaps://host (port 993), or ask the operator to set \
             imports.allow_plain_imap = true",
        ));
    }
    if has_control(&parsed.user) || has_control(&parsed.host) {
        return Err(invalid(
            "url: the user and host must not contain control characters",
        ));
    }
    if body.password.is_empty()
        || body.password.len() > MAX_PASSWORD
        || body.password.contains(['\r', '\n', '\0'])
    {
        return Err(invalid(format!(
            "password: give the IMAP password (1 to {MAX_PASSWORD} bytes, no line break or NUL)"
        )));
    }
    if body.folders.len() > MAX_FOLDERS {
        return Err(invalid(format!("folders: at most {MAX_FOLDERS} folders")));
    }
    if let Some(f) = body
        .folders
        .iter()
        .find(|f| f.trim().is_empty() || f.len() > 255 || has_control(f))
    {
        return Err(invalid(format!(
            "folders: {f:?} is not a folder name (1 to 255 bytes, no control characters)"
        )));
    }
    let c = choice(
        body.since.as_deref(),
        body.until.as_deref(),
        body.open_newest,
        body.dry_run,
        body.max_message_size,
        cfg.max_message_size,
    )?;
    let ca_file = match body.ca_pem.as_deref() {
        None => None,
        Some(pem) => Some(save_ca(cfg.runner.dir(), pem).await?),
    };
    let options = c.job(
        JobSource::Imap {
            // from_url refused a URL with a password in it.
            url,
            ca_file: ca_file.clone(),
        },
        body.folders.iter().map(|f| f.trim().to_string()).collect(),
    );
    let started = start_job(&cfg.runner, &principal, options, Some(body.password)).await;
    let id = match started {
        Ok(id) => id,
        Err(e) => {
            if let Some(f) = ca_file {
                let _ = tokio::fs::remove_file(f).await;
            }
            return Err(start_error(e));
        }
    };
    answer_job(&state, principal.account_id, id, StatusCode::ACCEPTED).await
}

async fn save_ca(dir: &Path, pem: &str) -> Result<PathBuf, ApiError> {
    if pem.len() > MAX_CA_PEM {
        return Err(invalid(format!("ca_pem: at most {MAX_CA_PEM} bytes")));
    }
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_bytes()).collect();
    if certs.is_empty() || certs.iter().any(Result::is_err) {
        return Err(invalid(
            "ca_pem: give the CA certificate as PEM text (-----BEGIN CERTIFICATE----- ...)",
        ));
    }
    let path = dir.join(format!("{}.pem", unique_file_name("ca")));
    let write = async {
        crate::private_files::create_dir_all_async(dir).await?;
        let mut file = crate::private_files::open_options_async()
            .write(true)
            .create_new(true)
            .open(&path)
            .await?;
        file.write_all(pem.as_bytes()).await?;
        file.sync_all().await
    };
    write.await.map_err(|e| {
        let what = format!(
            "cannot save an import's CA certificate in {}",
            dir.display()
        );
        ApiError::internal(&what, &e)
    })?;
    Ok(path)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// `mbox` (default; plain or gzip, any dialect) or `eml` (one message).
    kind: Option<String>,
    /// A name for people (e.g. the file's name); never used as a path.
    name: Option<String>,
    /// Oldest mail: an age (2y, 18m, 90d, 3w) or a date (YYYY-MM-DD).
    since: Option<String>,
    /// Newest mail: a date (YYYY-MM-DD), included.
    until: Option<String>,
    /// How many of the newest tickets the import creates stay open (default 0).
    open_newest: Option<u32>,
    /// Read and count everything, write nothing.
    dry_run: Option<bool>,
    /// Per-message size cap in bytes.
    max_message_size: Option<u64>,
}

/// Uploads an mbox (or .mbox.gz) or one .eml as the request body and imports it in the
/// background (admins only).
///
/// The body is the file itself (`curl --data-binary @old.mbox`), written to the server's
/// data folder as it arrives, up to `imports.max_upload_size` bytes; the file is deleted
/// once the job completes.
#[utoipa::path(post, path = "/imports/upload", tag = "imports", params(UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream",
        description = "The mbox file (plain or gzip) or the .eml message"),
    responses(
        (status = 202, description = "The job, queued or running; poll its Location", body = ImportJob),
        (status = 400, description = "A parameter the import refuses (the message names it)", body = ErrorBody),
        (status = 403, description = "Agents cannot import", body = ErrorBody),
        (status = 409, description = "An import of this account is running", body = ErrorBody),
        (status = 413, description = "The upload is over imports.max_upload_size, or a gzip upload decompresses past imports.max_decompressed_size or imports.max_compression_ratio", body = ErrorBody),
        (status = 429, description = "The server runs as many imports as it may", body = ErrorBody),
    ))]
pub async fn upload_import(
    State(state): State<ApiState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    require_admin(&principal)?;
    let cfg = &state.imports;
    let kind = match q.kind.as_deref().map(str::trim) {
        None | Some("mbox") => UploadKind::Mbox,
        Some("eml") => UploadKind::Eml,
        Some(other) => {
            return Err(invalid(format!(
                "kind: {other:?} is not a kind of upload; use mbox (an mbox file, plain or gzip) or eml (one message)"
            )))
        }
    };
    let name = q
        .name
        .as_deref()
        .map(|n| {
            n.chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect::<String>()
        })
        .filter(|n| !n.trim().is_empty());
    let c = choice(
        q.since.as_deref(),
        q.until.as_deref(),
        q.open_newest,
        q.dry_run,
        q.max_message_size,
        cfg.max_message_size,
    )?;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "the upload is larger than this server takes (imports.max_upload_size = {} \
                 bytes); split the mailbox, compress it (.mbox.gz), or import it with \
                 `postern import` on the server",
                cfg.max_upload_size
            ),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > cfg.max_upload_size) {
        return Err(too_large());
    }
    // Refused before the upload, rather than after gigabytes of it.
    if let Some(job) = cfg.runner.running_job_of(principal.account_id) {
        return Err(start_error(StartError::AccountBusy {
            job,
            status: import_status::RUNNING,
        }));
    }
    let limits = UploadLimits {
        max_size: cfg.max_upload_size,
        decompress: cfg.decompress,
    };
    let dir = cfg.runner.dir();
    let upload = receive_upload(dir, kind, body.into_data_stream(), limits)
        .await
        .map_err(|e| match e {
            UploadError::TooLarge => too_large(),
            UploadError::Decompressed(limit) => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "decompressed_too_large",
                format!("the gzip upload is refused and nothing of it is kept: {limit}"),
            ),
            UploadError::Empty => invalid("body: the upload is empty; send the file as the body"),
            UploadError::Client(m) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                format!("the upload did not arrive whole ({m}); send it again"),
            ),
            UploadError::Disk(e) => {
                tracing::error!(error = %e, dir = %dir.display(), "cannot write an import upload");
                ApiError::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "unavailable",
                    "the server cannot store the upload (disk full or not writable); tell the operator",
                )
            }
        })?;
    let options = c.job(
        JobSource::Upload {
            kind,
            path: upload.path.clone(),
            name,
            size: upload.size,
        },
        Vec::new(),
    );
    let started = start_job(&cfg.runner, &principal, options, None).await;
    match started {
        Ok(id) => answer_job(&state, principal.account_id, id, StatusCode::ACCEPTED).await,
        Err(e) => {
            discard_upload(&upload.path).await;
            Err(start_error(e))
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ImportListQuery {
    /// next_cursor of the previous page.
    cursor: Option<String>,
    /// Page size, 1 to 200 (default 50).
    limit: Option<u32>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ImportPage {
    pub items: Vec<ImportJob>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

const ORDER: &str = "-id";

/// The account's import jobs, newest first (admins only).
#[utoipa::path(get, path = "/imports", tag = "imports", params(ImportListQuery),
    responses(
        (status = 200, description = "One page of import jobs", body = ImportPage),
        (status = 400, description = "Bad query or cursor", body = ErrorBody),
        (status = 403, description = "Agents cannot import", body = ErrorBody),
    ))]
pub async fn list_imports(
    State(state): State<ApiState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<ImportListQuery>,
) -> Result<Json<ImportPage>, ApiError> {
    require_admin(&principal)?;
    let limit = page_limit(q.limit)?;
    let before = id_after(q.cursor.as_deref(), ORDER)?;
    let mut rows = state
        .store
        .import_jobs_page(principal.account_id, before, limit + 1)
        .await?;
    let next_cursor = cut_page(&mut rows, limit).map(|j| encode_cursor(ORDER, j.id, j.id));
    let runner = &state.imports.runner;
    Ok(Json(ImportPage {
        items: rows.into_iter().map(|v| job_of(v, runner)).collect(),
        next_cursor,
    }))
}

/// One import job: its progress while it runs, its summary once it has ended (admins only).
#[utoipa::path(get, path = "/imports/{id}", tag = "imports",
    params(("id" = i64, Path, description = "Import job id")),
    responses(
        (status = 200, description = "The job", body = ImportJob),
        (status = 403, description = "Agents cannot import", body = ErrorBody),
        (status = 404, description = "No such import job in this account", body = ErrorBody),
    ))]
pub async fn get_import(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, ApiError> {
    require_admin(&principal)?;
    answer_job(&state, principal.account_id, id, StatusCode::OK).await
}

/// Cancels an import job (admins only): a running job stops after its current batch and
/// ends `cancelled`; it can be resumed. A finished job is left as it is.
#[utoipa::path(post, path = "/imports/{id}/cancel", tag = "imports",
    params(("id" = i64, Path, description = "Import job id")),
    responses(
        (status = 202, description = "The job; it stops after its current batch", body = ImportJob),
        (status = 403, description = "Agents cannot import", body = ErrorBody),
        (status = 404, description = "No such import job in this account", body = ErrorBody),
    ))]
pub async fn cancel_import(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, ApiError> {
    require_admin(&principal)?;
    if !state
        .imports
        .runner
        .cancel(principal.account_id, id)
        .await?
    {
        return Err(ApiError::not_found(format!(
            "no import job {id} in this account"
        )));
    }
    answer_job(&state, principal.account_id, id, StatusCode::ACCEPTED).await
}

/// Discards a stopped import job (admins only): deletes what it keeps to be resumed (the
/// uploaded mailbox, the staging copy, the CA certificate given) and marks it discarded. The
/// job stays in the list as history; it cannot be resumed, and the same import started again
/// is a new job. Messages it already imported stay. A queued or running job must be
/// cancelled first; a job already discarded is answered as it is.
#[utoipa::path(post, path = "/imports/{id}/discard", tag = "imports",
    params(("id" = i64, Path, description = "Import job id")),
    responses(
        (status = 200, description = "The job, discarded", body = ImportJob),
        (status = 403, description = "Agents cannot import", body = ErrorBody),
        (status = 404, description = "No such import job in this account", body = ErrorBody),
        (status = 409, description = "The job is queued, running or completed: nothing to discard", body = ErrorBody),
    ))]
pub async fn discard_import(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, ApiError> {
    require_admin(&principal)?;
    state
        .imports
        .runner
        .discard(principal.account_id, id)
        .await
        .map_err(start_error)?;
    answer_job(&state, principal.account_id, id, StatusCode::OK).await
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResumeImport {
    /// The IMAP password again (an IMAP job only: it is never stored).
    password: Option<String>,
}

/// Runs a failed, interrupted or cancelled import job again from its last committed batch,
/// or, stopped while reading its source, after the last message staged (admins only). An
/// IMAP job needs its password again. The body may be empty.
#[utoipa::path(post, path = "/imports/{id}/resume", tag = "imports",
    params(("id" = i64, Path, description = "Import job id")),
    request_body(content = ResumeImport, description = "Optional: the IMAP password"),
    responses(
        (status = 202, description = "The job, running again", body = ImportJob),
        (status = 400, description = "The password is missing for an IMAP job", body = ErrorBody),
        (status = 403, description = "Agents cannot import", body = ErrorBody),
        (status = 404, description = "No such import job in this account", body = ErrorBody),
        (status = 409, description = "The job is running or completed, or another import of the account runs", body = ErrorBody),
    ))]
pub async fn resume_import(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    require_admin(&principal)?;
    let resume: ResumeImport = if body.iter().all(u8::is_ascii_whitespace) {
        ResumeImport::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            let status = if e.is_data() {
                StatusCode::UNPROCESSABLE_ENTITY
            } else {
                StatusCode::BAD_REQUEST
            };
            ApiError::new(
                status,
                "invalid_body",
                format!("the body must be empty or {{\"password\": \"...\"}}: {e}"),
            )
        })?
    };
    if let Some(p) = &resume.password {
        if p.is_empty() || p.len() > MAX_PASSWORD || p.contains(['\r', '\n', '\0']) {
            return Err(invalid(format!(
                "password: give the IMAP password (1 to {MAX_PASSWORD} bytes, no line break or NUL)"
            )));
        }
    }
    state
        .imports
        .runner
        .resume(
            principal.account_id,
            id,
            created_by(&principal),
            resume.password,
        )
        .await
        .map_err(start_error)?;
    answer_job(&state, principal.account_id, id, StatusCode::ACCEPTED).await
}
