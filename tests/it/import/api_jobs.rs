//! Import jobs through the HTTP API, end to end: mailboxes uploaded to the real server and
//! IMAP accounts read from a real Dovecot, progress polled, cancelled, resumed, the server
//! killed in the middle; compared with `postern import` on the command line.

use super::conversations::threads_of;
use super::generated_mail::{generated_mailbox, mboxrd, BRAND};
use crate::common::dovecot::{Dovecot, PASSWORD, USER};
use crate::common::*;
use postern::config::Settings;
use postern::store::Store;
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// An API client that remembers every answer, to check that none shows a secret.
struct Api {
    client: Client,
    base: String,
    token: String,
    seen: std::sync::Mutex<Vec<String>>,
}

impl Api {
    /// Starts an import of `server`'s INBOX (over imaps, its CA trusted); returns the job id.
    async fn start_imap(&self, server: &Dovecot) -> i64 {
        let (s, job) = self
            .call(
                Method::POST,
                "/api/v1/imports",
                Some(imap_body(server, PASSWORD)),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{job}");
        job["id"].as_i64().expect("id")
    }

    fn new(addr: SocketAddr, token: &str) -> Self {
        Self {
            client: Client::new(),
            base: format!("http://{addr}"),
            token: token.to_string(),
            seen: Default::default(),
        }
    }

    async fn finish(&self, req: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("HTTP request");
        let status = resp.status();
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = resp.text().await.expect("body");
        if let Ok(mut s) = self.seen.lock() {
            s.push(text.clone());
        }
        if status == StatusCode::ACCEPTED {
            assert!(
                location.is_some_and(|l| l.starts_with("/api/v1/imports/")),
                "a started job says where to poll"
            );
        }
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.finish(req).await
    }

    /// POSTs `action` (cancel, resume) to job `id`, with `body` when given.
    async fn job_action(&self, id: i64, action: &str, body: Option<Value>) -> (StatusCode, Value) {
        let path = format!("/api/v1/imports/{id}/{action}");
        self.call(Method::POST, &path, body).await
    }

    /// Waits until job `id` commits (at most 120 s) and asserts that it is still running.
    async fn wait_committing(&self, id: i64) {
        let running = self
            .wait_job(id, Duration::from_secs(120), |j| {
                j["progress"]["phase"] == "committing" || ended(j)
            })
            .await;
        assert_eq!(running["status"], "running", "{running}");
    }

    async fn upload(&self, query: &str, bytes: Vec<u8>) -> (StatusCode, Value) {
        let req = self
            .client
            .post(format!("{}/api/v1/imports/upload?{query}", self.base))
            .header("content-type", "application/octet-stream")
            .body(bytes);
        self.finish(req).await
    }

    async fn get(&self, path: &str) -> Value {
        let (s, v) = self.call(Method::GET, path, None).await;
        assert_eq!(s, StatusCode::OK, "GET {path}: {v}");
        v
    }

    /// Polls the job until `done` says so; panics after `limit`.
    async fn wait_job(&self, id: i64, limit: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let job = self.get(&format!("/api/v1/imports/{id}")).await;
            if done(&job) {
                return job;
            }
            assert!(
                Instant::now() < deadline,
                "job {id} did not get there: {job}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_ended(&self, id: i64) -> Value {
        self.wait_job(id, Duration::from_secs(240), |j| {
            ended(j) && j["progress"].is_null()
        })
        .await
    }

    /// Every ticket of the account, through the paginated listing.
    async fn ticket_count(&self) -> usize {
        let mut n = 0;
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/api/v1/tickets?limit=200&cursor={c}"),
                None => "/api/v1/tickets?limit=200".to_string(),
            };
            let page = self.get(&path).await;
            n += page["items"].as_array().expect("items").len();
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return n,
            }
        }
    }

    fn answers(&self) -> Vec<String> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

fn ended(job: &Value) -> bool {
    !["queued", "running"].contains(&job["status"].as_str().unwrap_or_default())
}

fn assert_error(status: StatusCode, body: &Value, want: StatusCode, code: &str, says: &str) {
    assert_eq!(status, want, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(says), "{says:?} not in {message:?}");
}

fn corpus(rel: &str) -> PathBuf {
    corpora_dir().join(rel)
}

/// Files left in the imports folder whose name starts with `prefix`.
fn leftovers(data: &Path, prefix: &str) -> Vec<String> {
    std::fs::read_dir(data.join("imports"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// The values of `keys` in `job`, as one JSON array (null where a key is missing).
fn fields(job: &Value, keys: &[&str]) -> Value {
    keys.iter().map(|k| job[*k].clone()).collect()
}

/// An mbox file of these messages, every `From ` line naming one sender.
fn mbox_of(messages: &[String]) -> Vec<u8> {
    mboxrd(messages, |_| "customer@c.test".to_string()).into_bytes()
}

async fn open_store(dir: &Path) -> Store {
    let settings = Settings::load_with_env(None, test_env(dir, &[])).expect("settings");
    Store::open(&settings.database_path(), 1)
        .await
        .expect("store")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploaded_mbox_imports_like_the_cli_and_its_file_is_deleted() {
    let app = spawn_app(&[]).await;
    let (acct, _) = app.account("Shop", BRAND).await;
    let api = Api::new(app.http_addr, &api_token(app.dir.path(), acct, "admin"));
    let file = corpus("mimekit-testdata/UnitTests/TestData/mbox/content-length.mbox.txt");
    let bytes = std::fs::read(&file).expect("corpus mbox");
    let (s, job) = api
        .upload("kind=mbox&name=content-length.mbox", bytes.clone())
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    // The answer shows the job as it is then: a small mailbox may already be imported.
    assert!(
        ["queued", "running", "completed"].contains(&job["status"].as_str().unwrap_or_default()),
        "{job}"
    );
    assert_eq!(job["kind"], "mbox");
    assert!(
        job["source"]
            .as_str()
            .is_some_and(|s| s.contains("content-length.mbox")
                && !s.contains(&app.dir.path().display().to_string())),
        "the source names the upload, not a server path: {job}"
    );
    let id = job["id"].as_i64().expect("id");
    let done = api.wait_ended(id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["resumable"], false);
    let seen = done["seen"].as_i64().expect("seen");
    assert!(seen > 10, "{done}");
    assert_eq!(
        seen,
        ["imported", "duplicates", "quarantined", "skipped"]
            .iter()
            .map(|k| done[k].as_i64().expect("counter"))
            .sum::<i64>(),
        "every message accounted for: {done}"
    );
    assert!(
        done["bytes"].as_i64().is_some_and(|b| b > 900_000),
        "{done}"
    );
    assert!(done["finished_at"].is_string() && done["started_at"].is_string());
    assert_eq!(
        leftovers(app.dir.path(), "upload-"),
        Vec::<String>::new(),
        "the upload is deleted once the job completes"
    );
    let tickets = done["tickets_created"].as_i64().expect("tickets created");
    assert_eq!(api.ticket_count().await as i64, tickets);
    let listed = api.get("/api/v1/imports").await;
    assert_eq!(listed["items"][0]["id"], id);

    // The same file through the CLI into another account counts the same.
    let dir = app.stop().await;
    let other = create_account(dir.path(), "Other", "support@other.test").0;
    let cli_summary = cli_json(
        dir.path(),
        &[
            "import",
            "--account",
            &other.to_string(),
            "--mbox",
            file.to_str().expect("path"),
            "--json",
        ],
    );
    for k in [
        "seen",
        "imported",
        "duplicates",
        "quarantined",
        "skipped",
        "bytes",
        "tickets_created",
        "tickets_merged",
    ] {
        assert_eq!(
            done[k], cli_summary[k],
            "{k}: API {done} vs CLI {cli_summary}"
        );
    }
    let store = open_store(dir.path()).await;
    let a = threads_of(&store, acct).await;
    let b = threads_of(&store, other).await;
    assert_eq!(a, b, "the same conversations");
    store.close().await;

    // A gzip upload, and a single .eml, into a fresh server on the same data.
    let app = spawn_app_in(dir, &[]).await;
    let simple = std::fs::read(corpus(
        "mimekit-testdata/UnitTests/TestData/mbox/simple.mbox.txt",
    ))
    .expect("simple mbox");
    let (s, job) = api_on(&app, &api).upload("kind=mbox", gzip(&simple)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    let api = api_on(&app, &api);
    let done = api.wait_ended(job["id"].as_i64().expect("id")).await;
    assert_eq!(
        (done["status"].as_str(), done["imported"].as_i64()),
        (Some("completed"), Some(3)),
        "{done}"
    );
    let eml = b"From: one@customer.test\r\nTo: support@shop.test\r\nSubject: single eml\r\n\
        Message-ID: <single@customer.test>\r\nDate: Mon, 2 Jun 2025 09:00:00 +0000\r\n\r\nHello.\r\n";
    let (s, job) = api.upload("kind=eml&name=one.eml", eml.to_vec()).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    let done = api.wait_ended(job["id"].as_i64().expect("id")).await;
    assert_eq!(
        (done["status"].as_str(), done["imported"].as_i64()),
        (Some("completed"), Some(1)),
        "{done}"
    );
    // A dry run counts and writes nothing.
    let before = api.ticket_count().await;
    let (s, job) = api
        .upload(
            "kind=mbox&dry_run=true",
            mbox_of(&generated_mailbox(30, "dry")),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    let done = api.wait_ended(job["id"].as_i64().expect("id")).await;
    assert_eq!(done["dry_run"], true);
    assert_eq!(
        fields(&done, &["status", "seen", "imported"]),
        json!(["completed", 30, 30]),
        "a dry run counts what would be imported: {done}"
    );
    assert_eq!(api.ticket_count().await, before, "a dry run writes nothing");
    assert!(leftovers(app.dir.path(), "upload-").is_empty());
    app.stop().await;
}

/// POSTs `chunks` chunks of `size` bytes with chunked transfer encoding (no length given
/// beforehand); returns the status, or `None` when the server closed the connection first.
async fn chunked_upload(addr: SocketAddr, token: &str, chunks: usize, size: usize) -> Option<u16> {
    use std::io::{Read, Write};
    let token = token.to_string();
    tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
        let head = format!(
            "POST /api/v1/imports/upload?kind=mbox HTTP/1.1\r\nHost: {addr}\r\n\
             Authorization: Bearer {token}\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        s.write_all(head.as_bytes()).ok()?;
        let chunk = vec![b'y'; size];
        for _ in 0..chunks {
            if s.write_all(format!("{size:x}\r\n").as_bytes()).is_err()
                || s.write_all(&chunk).is_err()
                || s.write_all(b"\r\n").is_err()
            {
                break;
            }
        }
        let _ = s.write_all(b"0\r\n\r\n");
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 || answer.len() > 64 * 1024 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
            if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        String::from_utf8_lossy(&answer)
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
    })
    .await
    .ok()
    .flatten()
}

fn api_on(app: &TestApp, api: &Api) -> Api {
    Api::new(app.http_addr, &api.token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_capped_refused_to_agents_and_other_accounts_and_fields_are_checked() {
    let app = spawn_app(&[
        ("POSTERN__IMPORTS__MAX_UPLOAD_SIZE", "2000000"),
        ("POSTERN__IMPORTS__MAX_CONCURRENT", "1"),
        ("POSTERN__IMPORTS__BATCH_SIZE", "10"),
        // Slow enough that the long job below is still running when it is cancelled.
        ("POSTERN__IMPORTS__MAX_RATE", "500"),
    ])
    .await;
    let Callers {
        data,
        admin,
        agent,
        stranger,
        ..
    } = callers(&app).await;

    // Too large, announced by Content-Length: 413 before reading, nothing kept.
    let big = vec![b'x'; 2_500_000];
    let (s, v) = admin.upload("kind=mbox", big.clone()).await;
    assert_error(
        s,
        &v,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "max_upload_size",
    );
    // Too large, streamed without a length: cut at the cap, the partial file deleted.
    let status = chunked_upload(app.http_addr, &admin.token, 250, 10_000).await;
    assert!(
        status.is_none_or(|s| s == 413),
        "a streamed upload over the cap is refused: {status:?}"
    );
    assert!(
        leftovers(&data, "upload-").is_empty(),
        "no partial upload left"
    );
    assert_eq!(admin.get("/api/v1/imports").await["items"], json!([]));

    // The client's name is a label, never a path.
    let escape = data.join("escaped.mbox");
    let (s, job) = admin
        .upload(
            &format!(
                "kind=mbox&name={}",
                url::form_urlencoded::byte_serialize(
                    format!("../../{}", escape.display()).as_bytes()
                )
                .collect::<String>()
            ),
            mbox_of(&generated_mailbox(3, "label")),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    let done = admin.wait_ended(job["id"].as_i64().expect("id")).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert!(!escape.exists(), "nothing written where the name points");
    let first = job["id"].as_i64().expect("id");
    // No server path can be given: unknown fields and kinds are refused.
    let (s, v) = admin
        .call(
            Method::POST,
            "/api/v1/imports",
            Some(json!({"url": format!("imaps://{USER}@localhost/"), "password": "x", "path": "/etc/passwd"})),
        )
        .await;
    assert_error(
        s,
        &v,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
        "path",
    );
    let (s, v) = admin.upload("kind=..%2F..%2Fetc", b"x".to_vec()).await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, "invalid", "kind");
    let (s, v) = admin.upload("path=%2Fetc%2Fpasswd", b"x".to_vec()).await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, "invalid_query", "path");

    // Bad fields: 400 naming the field (422 for the wrong JSON type, as everywhere).
    let url = format!("imaps://{USER}@localhost:1/");
    for (body, field) in [
        (json!({"url": "https://x.test/", "password": "p"}), "url"),
        (
            json!({"url": "imaps://nobody.test/", "password": "p"}),
            "url",
        ),
        (json!({"url": url, "password": ""}), "password"),
        (json!({"url": url, "password": "a\r\nb"}), "password"),
        (
            json!({"url": url, "password": "p", "since": "yesterday"}),
            "since",
        ),
        (
            json!({"url": url, "password": "p", "until": "2024-13-01"}),
            "until",
        ),
        (
            json!({"url": url, "password": "p", "since": "2024-02-01", "until": "2024-01-01"}),
            "since",
        ),
        (
            json!({"url": url, "password": "p", "folders": [""]}),
            "folders",
        ),
        (
            json!({"url": url, "password": "p", "ca_pem": "not a certificate"}),
            "ca_pem",
        ),
        (
            json!({"url": url, "password": "p", "max_message_size": 10}),
            "max_message_size",
        ),
        (
            json!({"url": format!("imap://{USER}@localhost/"), "password": "p"}),
            "allow_plain_imap",
        ),
    ] {
        let (s, v) = admin
            .call(Method::POST, "/api/v1/imports", Some(body.clone()))
            .await;
        assert_error(s, &v, StatusCode::BAD_REQUEST, "invalid", field);
    }
    let (s, v) = admin
        .call(
            Method::POST,
            "/api/v1/imports",
            Some(json!({"url": url, "password": "p", "folders": "INBOX"})),
        )
        .await;
    assert_error(
        s,
        &v,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
        "folders",
    );
    let (s, v) = admin.upload("kind=mbox&since=soon", b"x".to_vec()).await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, "invalid", "since");

    // Agents: 403 on every import route; another account's job: 404, like a missing one.
    let routes: Vec<(Method, String)> = vec![
        (Method::GET, "/api/v1/imports".into()),
        (Method::POST, "/api/v1/imports".into()),
        (Method::GET, format!("/api/v1/imports/{first}")),
        (Method::POST, format!("/api/v1/imports/{first}/cancel")),
        (Method::POST, format!("/api/v1/imports/{first}/resume")),
    ];
    for (m, path) in &routes {
        let body = (*m == Method::POST).then(|| json!({"url": url, "password": "p"}));
        let (s, v) = agent.call(m.clone(), path, body).await;
        assert_error(s, &v, StatusCode::FORBIDDEN, "forbidden", "admin");
    }
    let (s, v) = agent.upload("kind=mbox", b"x".to_vec()).await;
    assert_error(s, &v, StatusCode::FORBIDDEN, "forbidden", "admin");
    for (m, path) in routes.iter().skip(2) {
        let (s, v) = stranger.call(m.clone(), path, None).await;
        assert_error(s, &v, StatusCode::NOT_FOUND, "not_found", "no import job");
        let missing = path.replace(&format!("/imports/{first}"), "/imports/987654");
        let (s2, v2) = stranger.call(m.clone(), &missing, None).await;
        assert_eq!(
            (s, v.to_string().replace(&first.to_string(), "ID")),
            (s2, v2.to_string().replace("987654", "ID")),
            "another account's job answers as a missing one"
        );
    }
    assert_eq!(stranger.get("/api/v1/imports").await["items"], json!([]));

    // One import at a time per account (409), and the server's limit (429).
    let (s, job) = admin
        .upload("kind=mbox", mbox_of(&generated_mailbox(1_500, "long")))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    let long = job["id"].as_i64().expect("id");
    let (s, v) = admin
        .upload("kind=mbox", mbox_of(&generated_mailbox(3, "second")))
        .await;
    assert_error(
        s,
        &v,
        StatusCode::CONFLICT,
        "conflict",
        "one import runs at a time",
    );
    let (s, v) = admin.job_action(long, "resume", None).await;
    assert_error(s, &v, StatusCode::CONFLICT, "conflict", "can be resumed");
    let (s, v) = stranger
        .upload("kind=mbox", mbox_of(&generated_mailbox(3, "other")))
        .await;
    assert_error(
        s,
        &v,
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_imports",
        "max_concurrent",
    );
    assert!(
        leftovers(&data, "upload-").len() == 1,
        "refused uploads are not kept"
    );
    // Cancelled mid-way, then resumed to the end.
    admin.wait_committing(long).await;
    let (s, v) = admin.job_action(long, "cancel", None).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["cancel_requested"], true);
    let cancelled = admin.wait_ended(long).await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert_eq!(cancelled["resumable"], true);
    assert!(
        cancelled["next_step"]
            .as_str()
            .is_some_and(|s| s.contains("/resume")),
        "{cancelled}"
    );
    let part = cancelled["imported"].as_i64().expect("imported");
    assert!(part < 1_500, "stopped before the end: {cancelled}");
    assert_eq!(leftovers(&data, "upload-").len(), 1, "kept for the resume");
    let (s, v) = admin.job_action(long, "resume", None).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let done = admin.wait_ended(long).await;
    assert_eq!(
        fields(&done, &["status", "imported", "duplicates"]),
        json!(["completed", 1_500, 0]),
        "{done}"
    );
    assert!(leftovers(&data, "upload-").is_empty());
    let (s, v) = admin.job_action(long, "resume", None).await;
    assert_error(s, &v, StatusCode::CONFLICT, "conflict", "completed");
    // Pages of the listing.
    let page = admin.get("/api/v1/imports?limit=1").await;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1));
    let cursor = page["next_cursor"].as_str().expect("a next page");
    let next = admin
        .get(&format!("/api/v1/imports?limit=1&cursor={cursor}"))
        .await;
    assert!(next["items"][0]["id"].as_i64() < page["items"][0]["id"].as_i64());
    app.stop().await;
}

/// The shop account's admin and agent, and the admin of another account.
struct Callers {
    data: PathBuf,
    acct: i64,
    admin: Api,
    agent: Api,
    stranger: Api,
}

async fn callers(app: &TestApp) -> Callers {
    let data = app.dir.path().to_path_buf();
    let (acct, _) = app.account("Shop", BRAND).await;
    let (other, _) = app.account("Other", "support@other.test").await;
    Callers {
        admin: Api::new(app.http_addr, &api_token(&data, acct, "admin")),
        agent: Api::new(app.http_addr, &api_token(&data, acct, "agent")),
        stranger: Api::new(app.http_addr, &api_token(&data, other, "admin")),
        acct,
        data,
    }
}

fn imap_body(server: &Dovecot, password: &str) -> Value {
    json!({
        "url": format!("imaps://{USER}@localhost:{}/INBOX", server.imaps_port),
        "password": password,
        "ca_pem": std::fs::read_to_string(&server.ca_file).expect("CA"),
    })
}

/// By default the API imports only from IMAP servers on the public Internet: a request must
/// not make Postern connect to a service inside its own network. Dovecot is up and would
/// accept the login; the job fails before connecting, with the reason and the setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_jobs_refuse_servers_on_private_addresses_by_default() {
    let server = Dovecot::start();
    server.deliver(
        "INBOX",
        &[(b"From: a@b.test\r\nSubject: x\r\n\r\nhi\r\n".to_vec(), "S")],
    );
    let work = tempfile::tempdir().expect("temp dir");
    let data = work.path();
    let postern = ServerProcess::start(data, &[]);
    let account = create_account(data, "Acme", "support@shop.test").0;
    let api = Api::new(postern.http_addr, &api_token(data, account, "admin"));
    let id = api.start_imap(&server).await;
    let failed = api.wait_ended(id).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("non-public addresses") && error.contains("imports.allow_private_imap"),
        "{failed}"
    );
    assert_eq!(failed["imported"].as_i64(), Some(0), "{failed}");
    postern.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_jobs_cancel_resume_and_survive_a_killed_server_with_the_password_kept_nowhere() {
    const N: usize = 2_400;
    let server = Dovecot::start();
    let crlf: Vec<(Vec<u8>, &str)> = generated_mailbox(N, "imap")
        .iter()
        .map(|m| (m.replace('\n', "\r\n").into_bytes(), "S"))
        .collect();
    server.deliver("INBOX", &crlf);
    let work = tempfile::tempdir().expect("temp dir");
    let data = work.path();
    // Dovecot listens on loopback, which the API refuses unless the operator allows it.
    let env = [
        ("POSTERN__IMPORTS__BATCH_SIZE", "20"),
        ("POSTERN__IMPORTS__ALLOW_PRIVATE_IMAP", "true"),
        // Slow enough that a job is still committing when it is cancelled or killed.
        ("POSTERN__IMPORTS__MAX_RATE", "800"),
    ];
    let mut postern = ServerProcess::start(data, &env);
    let cut = create_account(data, "Cut", "support@shop.test").0;
    let whole = create_account(data, "Whole", "support@shop.test").0;
    let killed = create_account(data, "Killed", "support@shop.test").0;
    let cut_api = Api::new(postern.http_addr, &api_token(data, cut, "admin"));
    let whole_api = Api::new(postern.http_addr, &api_token(data, whole, "admin"));
    let killed_token = api_token(data, killed, "admin");

    // Plain imap:// is refused unless the operator allows it.
    let (s, v) = cut_api
        .call(
            Method::POST,
            "/api/v1/imports",
            Some(json!({"url": format!("imap://{USER}@localhost:{}/", server.imap_port), "password": PASSWORD})),
        )
        .await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, "invalid", "imaps://");

    // Cancelled while committing, then resumed with the password given again.
    let id = cut_api.start_imap(&server).await;
    let mid = cut_api
        .wait_job(id, Duration::from_secs(180), |j| {
            j["progress"]["imported"].as_i64().is_some_and(|n| n > 0) || ended(j)
        })
        .await;
    let progress = &mid["progress"];
    assert_eq!(progress["phase"], "committing", "{mid}");
    assert_eq!(progress["total"].as_i64(), Some(N as i64), "{mid}");
    assert!(progress["rate"].as_f64().is_some(), "{mid}");
    let (s, _) = cut_api.job_action(id, "cancel", None).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let cancelled = cut_api.wait_ended(id).await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    let part = cancelled["imported"].as_i64().expect("imported");
    assert!(part > 0 && part < N as i64, "{cancelled}");
    let (s, v) = cut_api.job_action(id, "resume", Some(json!({}))).await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, "invalid", "password");
    let (s, v) = cut_api
        .job_action(id, "resume", Some(json!({"password": PASSWORD})))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let done = cut_api.wait_ended(id).await;
    assert_eq!(
        fields(&done, &["status", "seen", "imported", "duplicates"]),
        json!(["completed", N, N, 0]),
        "{done}"
    );

    // The same mailbox uninterrupted, into another account.
    let whole_id = whole_api.start_imap(&server).await;
    let whole_done = whole_api.wait_ended(whole_id).await;
    assert_eq!(whole_done["status"], "completed", "{whole_done}");
    for k in [
        "imported",
        "duplicates",
        "quarantined",
        "tickets_created",
        "tickets_merged",
    ] {
        assert_eq!(
            done[k], whole_done[k],
            "{k}: resumed {done} vs whole {whole_done}"
        );
    }
    assert_eq!(cut_api.ticket_count().await, whole_api.ticket_count().await);

    // The server killed while a job commits: at the next start the job is interrupted,
    // says it can be resumed, and goes on to the end.
    let killed_api = Api::new(postern.http_addr, &killed_token);
    let kid = killed_api.start_imap(&server).await;
    killed_api
        .wait_job(kid, Duration::from_secs(180), |j| {
            j["imported"].as_i64().is_some_and(|n| n > 0) || ended(j)
        })
        .await;
    let mut logs = postern.logs();
    postern.kill9();
    postern = ServerProcess::start(data, &env);
    let killed_api = Api::new(postern.http_addr, &killed_token);
    let after = killed_api.get(&format!("/api/v1/imports/{kid}")).await;
    assert_eq!(after["status"], "interrupted", "{after}");
    assert_eq!(after["resumable"], true, "{after}");
    assert!(
        after["next_step"]
            .as_str()
            .is_some_and(|s| s.contains("server stopped") && s.contains("password")),
        "{after}"
    );
    let (s, v) = killed_api
        .job_action(kid, "resume", Some(json!({"password": PASSWORD})))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let killed_done = killed_api.wait_ended(kid).await;
    assert_eq!(
        fields(&killed_done, &["status", "imported"]),
        json!(["completed", N]),
        "{killed_done}"
    );
    logs.extend(postern.logs());
    let status = postern.terminate();
    assert!(status.success(), "{status}");

    // One store: the interrupted imports grouped the mail as the uninterrupted one did.
    let store = open_store(data).await;
    let reference = threads_of(&store, whole).await;
    assert_eq!(
        reference.len() as i64,
        whole_done["tickets_created"].as_i64().expect("n")
    );
    assert_eq!(threads_of(&store, cut).await, reference);
    assert_eq!(threads_of(&store, killed).await, reference);
    // The password is in no job row, no answer, no log line, no byte of the database.
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT source, options, COALESCE(error, '') FROM import_jobs")
            .fetch_all(store.pool())
            .await
            .expect("jobs");
    assert!(rows.len() >= 3);
    for r in &rows {
        assert!(!format!("{r:?}").contains(PASSWORD), "{r:?}");
    }
    store.close().await;
    let mut answers = cut_api.answers();
    answers.extend(whole_api.answers());
    answers.extend(killed_api.answers());
    assert!(answers.len() > 10);
    for a in &answers {
        assert!(!a.contains(PASSWORD), "an answer shows the password: {a}");
    }
    assert!(logs.iter().any(|l| l.contains("import job started")));
    for l in &logs {
        assert!(!l.contains(PASSWORD), "a log line shows the password: {l}");
    }
    for entry in std::fs::read_dir(data).expect("data dir").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("postern.db") {
            let bytes = std::fs::read(entry.path()).expect("db file");
            assert!(
                !bytes
                    .windows(PASSWORD.len())
                    .any(|w| w == PASSWORD.as_bytes()),
                "{name} holds the password"
            );
        }
    }
    // The CA the client gave is deleted with the completed jobs.
    assert!(
        leftovers(data, "ca-").is_empty(),
        "{:?}",
        leftovers(data, "ca-")
    );
}

/// A stopped job keeps its upload and staging copy so that it can be resumed; discarding it
/// deletes them, and it is never resumed after. Running and completed jobs have nothing to
/// discard; agents and other accounts cannot discard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_job_is_discarded_with_its_files_and_never_resumed() {
    let app = spawn_app(&[
        ("POSTERN__IMPORTS__BATCH_SIZE", "10"),
        // Slow enough that the job is still running when it is discarded and cancelled.
        ("POSTERN__IMPORTS__MAX_RATE", "300"),
    ])
    .await;
    let Callers {
        data,
        acct,
        admin,
        agent,
        stranger,
    } = callers(&app).await;
    let mailbox = mbox_of(&generated_mailbox(900, "discard"));
    async fn discard(api: &Api, id: i64) -> (StatusCode, Value) {
        api.call(Method::POST, &format!("/api/v1/imports/{id}/discard"), None)
            .await
    }

    let (s, job) = admin.upload("kind=mbox", mailbox.clone()).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    let id = job["id"].as_i64().expect("id");
    let (s, v) = discard(&admin, id).await;
    assert_error(s, &v, StatusCode::CONFLICT, "conflict", "cancel it first");

    // Cancelled while committing: its upload and its staging copy are kept for a resume.
    admin.wait_committing(id).await;
    let (s, _) = admin.job_action(id, "cancel", None).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let cancelled = admin.wait_ended(id).await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert_eq!(cancelled["resumable"], true, "{cancelled}");
    let part = cancelled["imported"].as_i64().expect("imported");
    assert!(part > 0 && part < 900, "{cancelled}");
    assert_eq!(leftovers(&data, "upload-").len(), 1, "{cancelled}");
    assert_eq!(leftovers(&data, &format!("job-{id}.staging")).len(), 1);

    // Only the account's admins.
    let (s, v) = discard(&agent, id).await;
    assert_error(s, &v, StatusCode::FORBIDDEN, "forbidden", "admin");
    let (s, v) = discard(&stranger, id).await;
    assert_error(s, &v, StatusCode::NOT_FOUND, "not_found", "no import job");
    assert_eq!(
        leftovers(&data, "upload-").len(),
        1,
        "refused: nothing deleted"
    );

    let (s, discarded) = discard(&admin, id).await;
    assert_eq!(s, StatusCode::OK, "{discarded}");
    assert!(discarded["discarded_at"].is_string(), "{discarded}");
    assert_eq!(discarded["resumable"], false, "{discarded}");
    assert!(discarded["next_step"].is_null(), "{discarded}");
    assert_eq!(
        (discarded["status"].as_str(), discarded["imported"].as_i64()),
        (Some("cancelled"), Some(part)),
        "the job stays as history: {discarded}"
    );
    assert!(
        leftovers(&data, "upload-").is_empty(),
        "the upload is deleted"
    );
    assert!(
        leftovers(&data, &format!("job-{id}.staging")).is_empty(),
        "the staging copy is deleted"
    );
    // Again: answered as it is.
    let (s, again) = discard(&admin, id).await;
    assert_eq!(s, StatusCode::OK, "{again}");
    assert_eq!(again["discarded_at"], discarded["discarded_at"]);
    let (s, v) = admin.job_action(id, "resume", None).await;
    assert_error(s, &v, StatusCode::CONFLICT, "conflict", "discarded");

    // The same mailbox uploaded again is a new job; what the first one stored stays and
    // counts as duplicates.
    let (s, job) = admin.upload("kind=mbox", mailbox).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    let second = job["id"].as_i64().expect("id");
    assert_ne!(second, id);
    let done = admin.wait_ended(second).await;
    assert_eq!(
        fields(&done, &["status", "imported", "duplicates"]),
        json!(["completed", 900 - part, part]),
        "{done}"
    );
    let (s, v) = discard(&admin, second).await;
    assert_error(s, &v, StatusCode::CONFLICT, "conflict", "completed");

    // A job of `postern import` (found again by its source when the command is run again)
    // is not found once discarded: the command then starts a new job.
    let cli_job = app
        .store
        .create_import_job(&postern::store::NewImportJob {
            account: postern::domain::AccountId(acct),
            kind: "mbox",
            source: "/srv/old.mbox",
            source_key: "cli-source-key",
            options: &json!({}),
            created_by: "cli",
        })
        .await
        .expect("job");
    app.store
        .finish_import_job(cli_job, "failed", Some("disk full"), 0)
        .await
        .expect("finish");
    let found = |store: Store| async move {
        store
            .resumable_import_job(postern::domain::AccountId(acct), "cli-source-key")
            .await
            .expect("lookup")
            .map(|j| j.id)
    };
    assert_eq!(found(app.store.clone()).await, Some(cli_job));
    let (s, v) = discard(&admin, cli_job).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(found(app.store.clone()).await, None);
    app.stop().await;
}

/// A client that sees its job ended (polling the job, as a script would) may start the next
/// import of the account at once: the ending job's task, still tidying up, holds no slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_import_starts_as_soon_as_the_previous_one_is_seen_ended() {
    let app = spawn_app(&[]).await;
    let (acct, _) = app.account("Shop", BRAND).await;
    let api = Api::new(app.http_addr, &api_token(app.dir.path(), acct, "admin"));
    for round in 0..40 {
        let message = format!(
            "From: Dana <dana@customer.test>\r\nTo: {BRAND}\r\nSubject: old {round}\r\n\
             Message-ID: <back-to-back-{round}@customer.test>\r\n\r\nold mail {round}\r\n"
        );
        let (s, job) = api.upload("kind=eml", message.into_bytes()).await;
        assert_eq!(s, StatusCode::ACCEPTED, "round {round}: {job}");
        let id = job["id"].as_i64().expect("job id");
        // Only the status, not the end of the job's tidying up (`progress` gone), and as
        // often as the server answers: the next upload follows the first answer that says
        // the job ended, as a script's would.
        let deadline = Instant::now() + Duration::from_secs(60);
        let done = loop {
            let job = api.get(&format!("/api/v1/imports/{id}")).await;
            if ended(&job) {
                break job;
            }
            assert!(Instant::now() < deadline, "round {round}: {job}");
        };
        assert_eq!(done["status"], "completed", "round {round}: {done}");
    }
    assert_eq!(api.ticket_count().await, 40);
}
