//! Shared test scaffolding: an in-process server on port 0 (`spawn_app`), the real binary
//! as a child process (`ServerProcess`), and a raw SMTP client that shows every reply.
#![allow(dead_code)]

pub mod api;
pub mod dns;
mod dns_self_test;
pub mod dovecot;
pub mod fixture_cases;
pub mod outbound;
pub mod rules;
pub mod session_config;

use postern::app::Application;
use postern::config::Settings;
use postern::domain::EmailAddress;
use postern::store::Store;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

pub const INBOUND_DOMAIN: &str = "in.postern.test";

/// Environment overrides that put a server in `dir` on free ports.
pub fn test_env(dir: &Path, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let env = vec![
        ("POSTERN__DATA_DIR".to_string(), dir.display().to_string()),
        ("POSTERN__SMTP__LISTEN".into(), "127.0.0.1:0".into()),
        ("POSTERN__HTTP__LISTEN".into(), "127.0.0.1:0".into()),
        ("POSTERN__INBOUND__DOMAIN".into(), INBOUND_DOMAIN.into()),
        ("POSTERN__SMTP__HOSTNAME".into(), "mx.postern.test".into()),
        // Sender authentication needs DNS: tests about it start their own DNS server and
        // turn it on; elsewhere no lookup may leave the machine.
        ("POSTERN__AUTH__ENABLED".into(), "false".into()),
        ("POSTERN__DNS__NAMESERVERS".into(), "127.0.0.1:9".into()),
        ("POSTERN__DNS__TIMEOUT".into(), "1s".into()),
    ];
    with_overrides(env, extra)
}

/// `env` with the `extra` variables set, each replacing a variable of the same name.
pub fn with_overrides(
    mut env: Vec<(String, String)>,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    for (k, v) in extra {
        env.retain(|(key, _)| key != k);
        env.push((k.to_string(), v.to_string()));
    }
    env
}

pub struct TestApp {
    pub smtp_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub store: Store,
    /// The server's outbound queue (rules engines driven by a test clock reply through it).
    pub outbound: std::sync::Arc<postern::outbound::OutboundQueue>,
    pub shutdown: CancellationToken,
    pub handle: tokio::task::JoinHandle<()>,
    pub dir: tempfile::TempDir,
}

/// Starts the whole application in this process, on port 0, in a fresh temp dir.
pub async fn spawn_app(extra: &[(&str, &str)]) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    spawn_app_in(dir, extra).await
}

/// A server with one account, Acme (support@acme.test): the app, the account's id and its
/// forwarding address.
pub async fn spawn_app_with_acme(extra: &[(&str, &str)]) -> (TestApp, i64, String) {
    let app = spawn_app(extra).await;
    let (account, forwarding) = app.account("Acme", "support@acme.test").await;
    (app, account, forwarding)
}

pub async fn spawn_app_in(dir: tempfile::TempDir, extra: &[(&str, &str)]) -> TestApp {
    let settings = Settings::load_with_env(None, test_env(dir.path(), extra)).expect("settings");
    let app = Application::build(settings).await.expect("build app");
    let smtp_addr = app.smtp_addr().expect("smtp addr");
    let http_addr = app.http_addr().expect("http addr");
    let store = app.store().clone();
    let outbound = app.outbound().clone();
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let handle = tokio::spawn(async move {
        app.run(token).await.expect("app run");
    });
    TestApp {
        smtp_addr,
        http_addr,
        store,
        outbound,
        shutdown,
        handle,
        dir,
    }
}

impl TestApp {
    /// Creates an account and returns (account id, forwarding address).
    pub async fn account(&self, name: &str, support: &str) -> (i64, String) {
        let addr = EmailAddress::parse(support).expect("support address");
        let a = self
            .store
            .create_account(name, &[addr], None, INBOUND_DOMAIN)
            .await
            .expect("create account");
        (a.id, a.support_addresses[0].forwarding_address.clone())
    }

    /// Ticket `ticket` with its messages, read in `scope`.
    pub async fn ticket_detail(
        &self,
        ticket: i64,
        scope: postern::domain::Scope,
    ) -> postern::store::TicketDetail {
        self.store
            .ticket(postern::domain::TicketId(ticket), scope)
            .await
            .unwrap_or_else(|e| panic!("ticket {ticket}: {e}"))
    }

    /// How many tickets `account` has.
    pub async fn ticket_count(&self, account: i64) -> usize {
        self.store
            .tickets(postern::domain::AccountId(account), None)
            .await
            .expect("tickets")
            .len()
    }

    /// One SMTP session from a client saying `EHLO helo`: sends `message` (LF line ends
    /// made CRLF, dot-stuffed by `RawSmtp::send_mail`) and returns the final reply.
    pub async fn smtp_send(&self, helo: &str, from: &str, to: &str, message: &str) -> SmtpReply {
        let message = message.to_string();
        self.smtp_session(helo, from, to, move |c, from, to| {
            c.send_mail(from, to, &message)
        })
        .await
    }

    /// As `smtp_send`, with the bytes sent exactly as given (BDAT).
    pub async fn smtp_send_exact(
        &self,
        helo: &str,
        from: &str,
        to: &str,
        raw: Vec<u8>,
    ) -> SmtpReply {
        self.smtp_session(helo, from, to, move |c, from, to| {
            c.send_exact(from, to, &raw)
        })
        .await
    }

    /// Connects, says EHLO, and runs one transaction on a blocking thread.
    async fn smtp_session(
        &self,
        helo: &str,
        from: &str,
        to: &str,
        transaction: impl FnOnce(&mut RawSmtp, &str, &str) -> std::io::Result<SmtpReply>
            + Send
            + 'static,
    ) -> SmtpReply {
        let (addr, helo, from, to) = (
            self.smtp_addr,
            helo.to_string(),
            from.to_string(),
            to.to_string(),
        );
        tokio::task::spawn_blocking(move || {
            let (mut c, _) = RawSmtp::connect(addr).expect("SMTP connection");
            c.cmd(&format!("EHLO {helo}")).expect("EHLO");
            transaction(&mut c, &from, &to).expect("SMTP transaction")
        })
        .await
        .expect("SMTP client thread")
    }

    pub async fn stop(self) -> tempfile::TempDir {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(40), self.handle).await;
        self.dir
    }
}

/// Asserts that the message of an API error body contains `text`.
pub fn assert_error_message_contains(body: &serde_json::Value, text: &str) {
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(text), "{body}");
}

/// Runs `command` to its end, asserts that it succeeded (naming it `what` and showing its
/// stderr when not) and returns its output.
pub fn run_ok(command: &mut Command, what: &str) -> std::process::Output {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The `postern` binary built by cargo for these tests.
pub fn postern_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_postern"))
}

/// Runs a postern CLI command against `dir` and returns its stdout (panics on failure).
pub fn cli(dir: &Path, args: &[&str]) -> String {
    cli_ok(dir, &[], args)
}

/// Runs a postern CLI command against `dir` with extra environment; whatever it did.
pub fn cli_output(dir: &Path, extra: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    Command::new(postern_bin())
        .args(args)
        .envs(test_env(dir, extra))
        .output()
        .expect("run postern")
}

/// Like [`cli`], with extra environment; returns stdout (panics on failure).
pub fn cli_ok(dir: &Path, extra: &[(&str, &str)], args: &[&str]) -> String {
    let out = cli_output(dir, extra, args);
    assert!(
        out.status.success(),
        "postern {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `postern tickets list --account ACCOUNT --json` against `dir`.
pub fn tickets_json(dir: &Path, account: i64) -> serde_json::Value {
    cli_json(
        dir,
        &[
            "tickets",
            "list",
            "--account",
            &account.to_string(),
            "--json",
        ],
    )
}

/// Creates an API token with `role` for `account` through the CLI; returns its secret.
pub fn api_token(dir: &Path, account: i64, role: &str) -> String {
    let v = cli_json(
        dir,
        &[
            "token",
            "create",
            "--account",
            &account.to_string(),
            "--role",
            role,
            "--name",
            "test",
            "--json",
        ],
    );
    v["token"].as_str().expect("token in JSON").to_string()
}

/// `postern account create` through the CLI: the account id and its forwarding address.
pub fn create_account(dir: &Path, name: &str, support: &str) -> (i64, String) {
    let v = cli_json(
        dir,
        &[
            "account",
            "create",
            "--name",
            name,
            "--support-address",
            support,
            "--json",
        ],
    );
    (
        v["id"].as_i64().unwrap(),
        v["forwarding_address"].as_str().unwrap().to_string(),
    )
}

/// `bytes` gzip-compressed, as a mailbox export or an upload would come.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).expect("gzip");
    enc.finish().expect("gzip")
}

pub fn cli_json(dir: &Path, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&cli(dir, args)).expect("JSON output")
}

/// `postern serve` as a child process with JSON logs; knows its SMTP and HTTP ports.
pub struct ServerProcess {
    pub child: Child,
    pub smtp_addr: SocketAddr,
    pub http_addr: SocketAddr,
    log_lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl ServerProcess {
    pub fn start(dir: &Path, extra: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(postern_bin());
        cmd.args(["serve", "--log-json"]);
        Self::spawn(cmd, dir, extra)
    }

    /// Like [`ServerProcess::start`], with the process umask set first (e.g. "022").
    pub fn start_with_umask(dir: &Path, extra: &[(&str, &str)], umask: &str) -> Self {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("umask {umask} && exec \"$0\" serve --log-json"))
            .arg(postern_bin());
        Self::spawn(cmd, dir, extra)
    }

    /// Like [`ServerProcess::start`], with the open-file limit (soft and hard) of the
    /// server lowered to `max_open_files` (`ulimit -n` in the shell that starts it).
    pub fn start_with_open_file_limit(
        dir: &Path,
        extra: &[(&str, &str)],
        max_open_files: u32,
    ) -> Self {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!(
                "ulimit -n {max_open_files} && exec \"$0\" serve --log-json"
            ))
            .arg(postern_bin());
        Self::spawn(cmd, dir, extra)
    }

    fn spawn(mut cmd: Command, dir: &Path, extra: &[(&str, &str)]) -> Self {
        let mut child = cmd
            .envs(test_env(dir, extra))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn postern serve");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        let log_lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let lines = log_lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("postern listening") {
                    let _ = tx.send(line.clone());
                }
                if let Ok(mut l) = lines.lock() {
                    l.push(line);
                }
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("postern serve did not report its listening addresses");
        let v: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
        let field = |k: &str| -> SocketAddr {
            v["fields"][k]
                .as_str()
                .expect("address field")
                .parse()
                .expect("socket address")
        };
        Self {
            smtp_addr: field("smtp"),
            http_addr: field("http"),
            child,
            log_lines,
        }
    }

    pub fn logs(&self) -> Vec<String> {
        self.log_lines.lock().map(|l| l.clone()).unwrap_or_default()
    }

    pub fn kill9(mut self) {
        let _ = self.child.kill(); // SIGKILL on Unix
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("postern did not exit after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking SMTP client that returns raw replies, for tests that check exact codes.
pub struct RawSmtp {
    stream: BufReader<TcpStream>,
}

#[derive(Debug, Clone)]
pub struct SmtpReply {
    pub code: u16,
    pub text: String,
}

impl RawSmtp {
    pub fn connect(addr: SocketAddr) -> std::io::Result<(Self, SmtpReply)> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut c = Self {
            stream: BufReader::new(stream),
        };
        let greeting = c.read_reply()?;
        Ok((c, greeting))
    }

    pub fn read_reply(&mut self) -> std::io::Result<SmtpReply> {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            if self.stream.read_line(&mut line)? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed",
                ));
            }
            text.push_str(&line);
            let b = line.as_bytes();
            if b.len() < 4 || b[3] != b'-' {
                let code = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
                return Ok(SmtpReply { code, text });
            }
        }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.get_mut().write_all(bytes)
    }

    pub fn cmd(&mut self, line: &str) -> std::io::Result<SmtpReply> {
        self.send_raw(format!("{line}\r\n").as_bytes())?;
        self.read_reply()
    }

    /// MAIL and RCPT; the refusal, if either is refused (after RSET for a refused RCPT).
    fn envelope(&mut self, from: &str, to: &str) -> std::io::Result<Option<SmtpReply>> {
        let r = self.cmd(&format!("MAIL FROM:<{from}>"))?;
        if r.code != 250 {
            return Ok(Some(r));
        }
        let r = self.cmd(&format!("RCPT TO:<{to}>"))?;
        if r.code != 250 {
            let _ = self.cmd("RSET")?;
            return Ok(Some(r));
        }
        Ok(None)
    }

    /// MAIL, RCPT, DATA and the message (dot-stuffed here); returns the final reply.
    pub fn send_mail(&mut self, from: &str, to: &str, message: &str) -> std::io::Result<SmtpReply> {
        if let Some(refusal) = self.envelope(from, to)? {
            return Ok(refusal);
        }
        let r = self.cmd("DATA")?;
        if r.code != 354 {
            return Ok(r);
        }
        let mut body = String::new();
        for line in message.lines() {
            if line.starts_with('.') {
                body.push('.');
            }
            body.push_str(line);
            body.push_str("\r\n");
        }
        body.push_str(".\r\n");
        self.send_raw(body.as_bytes())?;
        self.read_reply()
    }

    /// MAIL, RCPT and the message bytes exactly as given (BDAT: no stuffing, no line-ending
    /// change); returns the first refusal or the final reply.
    pub fn send_exact(&mut self, from: &str, to: &str, raw: &[u8]) -> std::io::Result<SmtpReply> {
        if let Some(refusal) = self.envelope(from, to)? {
            return Ok(refusal);
        }
        self.send_raw(format!("BDAT {} LAST\r\n", raw.len()).as_bytes())?;
        self.send_raw(raw)?;
        self.read_reply()
    }

    pub fn read_to_end(&mut self) -> String {
        let mut s = String::new();
        let _ = self.stream.read_to_string(&mut s);
        s
    }
}

/// ../shared/corpora relative to the project root; a test that needs it fails clearly without it.
pub fn corpora_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpora");
    assert!(
        dir.is_dir(),
        "this test needs the shared test corpora at {} (the ../shared folder beside the project); it is missing",
        dir.display()
    );
    dir
}

/// Every file below `dir`, in its subfolders too.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Fails with a clear message when a real peer program the test drives is not installed.
pub fn require_program(name: &str) -> PathBuf {
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin", "/usr/bin"])
    {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("this test drives the real program `{name}`, which is not installed: run `make test` (it installs it) or apt-get install it")
}

/// A connection that writes beside the server's writer, for a test that damages, ages or
/// fills rows the way the product never writes them (the store's pool only reads). Capped
/// like the writer when the store is.
pub fn raw_db(store: &Store) -> rusqlite::Connection {
    let file = store.database_file();
    let conn = rusqlite::Connection::open(&file.path).expect("open the database beside the writer");
    conn.busy_timeout(Duration::from_secs(10))
        .expect("busy timeout");
    if file.max_size > 0 {
        let page_size: i64 = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .expect("page size");
        let pages = file.max_size / page_size as u64;
        conn.pragma_update(None, "max_page_count", pages)
            .expect("max_page_count");
    }
    conn
}
