//! The import pipeline end to end: real mailboxes from the shared corpora, a real Dovecot,
//! the `postern import` binary killed with SIGKILL and run again, and live SMTP delivery as
//! the reference for threading.

use super::conversations::threads_of;
use super::generated_mail::{generated_mailbox, mboxrd, BRAND};
use crate::common::dovecot::{CuttableProxy, Dovecot, PASSWORD, USER};
use crate::common::*;
use postern::config::Settings;
use postern::domain::AccountId;
use postern::import::{
    run_import, ImapConfig, ImapSecurity, ImportError, ImportProgress, ImportRequest,
    ImportSummary, ImportTotals, QuietProgress, SourceSpec,
};
use postern::store::{CommitWriter, Store};
use serde_json::json;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A commit writer on `store` with the threading settings of `settings`, as `postern import`
/// starts it.
async fn import_writer(store: &Store, settings: &Settings) -> CommitWriter {
    let threading = postern::app::threading_config(store, settings)
        .await
        .expect("threading");
    CommitWriter::new(store, threading)
}

/// A store with one account and a writer, as `postern import` sets them up.
struct Env {
    dir: tempfile::TempDir,
    store: Store,
    writer: Option<CommitWriter>,
    account: AccountId,
}

impl Env {
    async fn new(extra: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::in_dir(dir, extra).await
    }

    async fn in_dir(dir: tempfile::TempDir, extra: &[(&str, &str)]) -> Self {
        let settings =
            Settings::load_with_env(None, test_env(dir.path(), extra)).expect("settings");
        let store = Store::open(&settings.database_path(), 2)
            .await
            .expect("store");
        let account = match store.accounts().await.expect("accounts").first() {
            Some(a) => AccountId(a.id),
            None => {
                let a = store
                    .create_account(
                        "Shop",
                        &[postern::domain::EmailAddress::parse(BRAND).expect("address")],
                        None,
                        INBOUND_DOMAIN,
                    )
                    .await
                    .expect("account");
                AccountId(a.id)
            }
        };
        let writer = import_writer(&store, &settings).await;
        Self {
            dir,
            store,
            writer: Some(writer),
            account,
        }
    }

    fn request(&self, source: SourceSpec) -> ImportRequest {
        let mut r = ImportRequest::new(self.account, source, self.dir.path().join("imports"));
        r.batch_size = 50;
        r
    }

    async fn run(&self, request: ImportRequest) -> Result<ImportSummary, ImportError> {
        self.run_with(request, Arc::new(QuietProgress), CancellationToken::new())
            .await
    }

    async fn run_with(
        &self,
        request: ImportRequest,
        progress: Arc<dyn ImportProgress>,
        cancel: CancellationToken,
    ) -> Result<ImportSummary, ImportError> {
        run_import(
            &self.store,
            self.writer.as_ref().expect("writer"),
            INBOUND_DOMAIN,
            request,
            progress,
            cancel,
        )
        .await
    }

    async fn threads(&self) -> BTreeSet<BTreeSet<String>> {
        threads_of(&self.store, self.account.0).await
    }
}

fn mbox(path: &Path) -> SourceSpec {
    SourceSpec::Mbox {
        path: path.to_path_buf(),
        dialect: None,
    }
}

fn corpus(rel: &str) -> PathBuf {
    corpora_dir().join(rel)
}

async fn count(store: &Store, sql: &str, account: AccountId) -> i64 {
    sqlx::query_scalar(sql)
        .bind(account.0)
        .fetch_one(store.pool())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Every message read is accounted for: imported, a duplicate, quarantined or outside the dates.
fn assert_accounted(s: &ImportSummary) {
    assert_eq!(
        s.seen,
        s.imported + s.duplicates + s.quarantined + s.skipped,
        "every message seen is imported, a duplicate, quarantined or skipped: {s:?}"
    );
}

fn message(id: &str, from: &str, to: &str, subject: &str, date: &str, extra: &str) -> String {
    format!(
        "From: {from}\nTo: {to}\nSubject: {subject}\nDate: {date}\nMessage-ID: <{id}>\n{extra}\nBody of {id}.\n"
    )
}

/// An mbox file of these messages, each `From ` line naming the message's sender as a
/// delivery agent does.
fn write_mbox(path: &Path, messages: &[String]) {
    std::fs::write(path, mboxrd(messages, envelope_from)).expect("write mbox");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_mboxes_import_every_message_once_into_closed_tickets() {
    let env = Env::new(&[]).await;
    let simple = corpus("mimekit-testdata/UnitTests/TestData/mbox/simple.mbox.txt");
    let s = env.run(env.request(mbox(&simple))).await.expect("import");
    assert_eq!((s.seen, s.imported), (3, 3), "{s:?}");
    assert_eq!(s.status, "completed");
    assert_eq!(s.tickets_created, Some(3));
    let cpython = corpus("cpython-email-testdata/Lib/test/test_email/data/mailbox_01.mbox");
    let s = env.run(env.request(mbox(&cpython))).await.expect("import");
    assert!(s.seen >= 1, "{s:?}");
    assert_accounted(&s);
    // History opens nothing: every ticket is closed, every message came from the import.
    assert_eq!(
        count(
            &env.store,
            "SELECT count(*) FROM tickets WHERE account_id = ? AND status <> 'closed'",
            env.account
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &env.store,
            "SELECT count(*) FROM messages WHERE account_id = ? AND (source <> 'import' OR import_job_id IS NULL)",
            env.account
        )
        .await,
        0
    );
    // The same file again: nothing twice.
    let again = env.run(env.request(mbox(&simple))).await.expect("import");
    assert_eq!((again.imported, again.duplicates), (0, 3), "{again:?}");
    assert_eq!(again.tickets_created, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mu_maildir_imports_cur_and_new_and_never_tmp() {
    let env = Env::new(&[]).await;
    let root = corpus("mu-testdata/testdata/testdir");
    let mut files = 0;
    for sub in ["cur", "new"] {
        files += std::fs::read_dir(root.join(sub))
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.path().is_file())
                    .count()
            })
            .unwrap_or(0);
    }
    let tmp_files = std::fs::read_dir(root.join("tmp"))
        .map(|d| d.count())
        .unwrap_or(0);
    let s = env
        .run(env.request(SourceSpec::Maildir { path: root.clone() }))
        .await
        .expect("import");
    assert_eq!(
        s.seen as usize, files,
        "cur/ and new/ only ({tmp_files} in tmp/): {s:?}"
    );
    assert_accounted(&s);
    assert!(s.imported > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_mail_goes_to_quarantine_with_its_position_never_lost() {
    let env = Env::new(&[]).await;
    let root = corpus("stalwart-mail-parser/resources/eml/malformed");
    let files = files_under(&root)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .count();
    assert!(files > 5, "the corpus has malformed messages");
    let s = env
        .run(env.request(SourceSpec::Eml { path: root.clone() }))
        .await
        .expect("import");
    assert_eq!(s.seen as usize, files, "{s:?}");
    assert_accounted(&s);
    let stored = count(
        &env.store,
        "SELECT count(*) FROM messages WHERE account_id = ?",
        env.account,
    )
    .await;
    let quarantined = count(
        &env.store,
        "SELECT count(*) FROM quarantine WHERE account_id = ? AND source = 'import'
           AND source_position LIKE 'path:%' AND detail LIKE '%' || substr(source_position, 6) || '%'",
        env.account,
    )
    .await;
    let rows = count(
        &env.store,
        "SELECT count(*) FROM quarantine WHERE account_id = ?",
        env.account,
    )
    .await;
    assert_eq!(stored, s.imported);
    assert!(s.quarantined > 0, "{s:?}");
    // Files with the same bytes share one quarantine entry (the first file's).
    assert_eq!(quarantined, rows, "each quarantine entry names its file");
    assert!(rows <= s.quarantined && rows > 0);
    assert_eq!(stored + s.quarantined + s.duplicates, files as i64);
}

/// The 45 messages of Mail::Box's test folder, as (date, raw) in file order.
fn mail_box_messages() -> Vec<(i64, String)> {
    let raw = String::from_utf8_lossy(
        &std::fs::read(corpus("perl-mail-box-threads/t/folders/mbox.src")).expect("corpus"),
    )
    .into_owned();
    let mut out: Vec<(i64, String)> = Vec::new();
    let mut current: Option<String> = None;
    for line in raw.split_inclusive('\n') {
        if line.starts_with("From ") {
            out.extend(current.take().map(|m| (date_of(&m), m)));
            current = Some(String::new());
            continue;
        }
        if let Some(m) = current.as_mut() {
            m.push_str(line);
        }
    }
    out.extend(current.map(|m| (date_of(&m), m)));
    out
}

fn date_of(m: &str) -> i64 {
    m.lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| l.strip_prefix("Date:"))
        .and_then(|d| chrono::DateTime::parse_from_rfc2822(d.trim()).ok())
        .map_or(0, |d| d.timestamp())
}

fn envelope_from(m: &str) -> String {
    let from = m
        .lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            l.strip_prefix("From:")
                .or_else(|| l.strip_prefix("Reply-To:"))
        })
        .unwrap_or("unknown@example.com");
    match (from.rfind('<'), from.rfind('>')) {
        (Some(a), Some(b)) if a < b => from[a + 1..b].trim().to_lowercase(),
        _ => from
            .split_whitespace()
            .find(|w| w.contains('@'))
            .unwrap_or("unknown@example.com")
            .trim_matches(|c| c == '(' || c == ')')
            .to_lowercase(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_in_any_order_threads_like_live_mail_in_date_order() {
    // One window for both: live mail here arrives within seconds, so only a window longer
    // than the folder's span makes "arrived live at their dates" comparable.
    let window = [("POSTERN__THREADING__SUBJECT_WINDOW", "36500days")];
    let mut messages = mail_box_messages();
    assert_eq!(messages.len(), 45);

    // Reference: delivered live over SMTP, oldest first.
    let app = spawn_app(&window).await;
    let (live_account, fwd) = app.account("Magick", "magick-users@imagemagick.test").await;
    let mut by_date = messages.clone();
    by_date.sort_by_key(|(d, _)| *d);
    let addr = app.smtp_addr;
    tokio::task::spawn_blocking(move || {
        let (mut c, _) = RawSmtp::connect(addr).expect("connect");
        c.cmd("EHLO lists.test").expect("ehlo");
        for (_, m) in &by_date {
            let r = c.send_mail(&envelope_from(m), &fwd, m).expect("send");
            assert_eq!(r.code, 250, "{}", r.text);
        }
    })
    .await
    .expect("live delivery");
    let live = threads_of(&app.store, live_account).await;
    app.stop().await;

    // Imports: the file as it is, and reversed (every reply before its parent).
    for order in ["file", "reversed"] {
        if order == "reversed" {
            messages.reverse();
        }
        let env = Env::new(&window).await;
        crate::common::raw_db(&env.store)
            .execute(
                "UPDATE support_addresses SET address = 'magick-users@imagemagick.test'",
                [],
            )
            .expect("support address");
        let path = env.dir.path().join("folder.mbox");
        write_mbox(
            &path,
            &messages.iter().map(|(_, m)| m.clone()).collect::<Vec<_>>(),
        );
        let s = env.run(env.request(mbox(&path))).await.expect("import");
        assert_eq!(s.imported, 45, "{s:?}");
        let imported = env.threads().await;
        assert_eq!(
            imported, live,
            "import in {order} order groups the folder as live delivery in date order does"
        );
    }
    assert!(
        live.iter().any(|t| t.len() >= 4),
        "the folder has a thread of four messages: {live:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_joins_the_live_ticket_stays_quiet_and_brand_mail_is_outbound() {
    let app = spawn_app(&[]).await;
    let (account, fwd) = app.account("Shop", BRAND).await;
    // Today's mail, live: Alice answers an old thread.
    let live = message(
        "live-1@alice.test",
        "Alice <alice@alice.test>",
        BRAND,
        "Re: Re: where is my order 1001",
        "Mon, 01 Jan 2024 10:00:00 +0000",
        "In-Reply-To: <old-2@shop.test>\nReferences: <old-1@alice.test> <old-2@shop.test>",
    );
    let addr = app.smtp_addr;
    let fwd2 = fwd.clone();
    tokio::task::spawn_blocking(move || {
        let (mut c, _) = RawSmtp::connect(addr).expect("connect");
        c.cmd("EHLO a.test").expect("ehlo");
        let r = c.send_mail("alice@alice.test", &fwd2, &live).expect("send");
        assert_eq!(r.code, 250, "{}", r.text);
    })
    .await
    .expect("send");
    let live_ticket: i64 =
        sqlx::query_scalar("SELECT ticket_id FROM messages WHERE message_id = 'live-1@alice.test'")
            .fetch_one(app.store.pool())
            .await
            .expect("live ticket");

    // The old mailbox: Alice's first mail and the brand's answer, and three other threads.
    let mut old = vec![
        message(
            "old-1@alice.test",
            "Alice <alice@alice.test>",
            BRAND,
            "where is my order 1001",
            "Mon, 04 Dec 2023 09:00:00 +0000",
            "",
        ),
        message(
            "old-2@shop.test",
            "Shop support <support@shop.test>",
            "alice@alice.test",
            "Re: where is my order 1001",
            "Tue, 05 Dec 2023 09:00:00 +0000",
            "In-Reply-To: <old-1@alice.test>",
        ),
    ];
    for (n, day) in [(1, 10), (2, 11), (3, 12)] {
        old.push(message(
            &format!("other-{n}@bob{n}.test"),
            &format!("bob{n}@bob{n}.test"),
            BRAND,
            &format!("question {n}"),
            &format!("Sun, {day} Dec 2023 09:00:00 +0000"),
            "",
        ));
    }
    // The brand wrote first to a customer: a ticket whose customer is the recipient.
    old.push(message(
        "outreach@shop.test",
        "support@shop.test",
        "carol@carol.test",
        "your refund",
        "Wed, 06 Dec 2023 09:00:00 +0000",
        "",
    ));
    let path = app.dir.path().join("old.mbox");
    write_mbox(&path, &old);
    let store = app.store.clone();
    let settings = Settings::load_with_env(None, test_env(app.dir.path(), &[])).expect("settings");
    let writer = import_writer(&store, &settings).await;
    let mut request = ImportRequest::new(
        AccountId(account),
        mbox(&path),
        app.dir.path().join("imports"),
    );
    request.open_newest = 1;
    let s = run_import(
        &store,
        &writer,
        INBOUND_DOMAIN,
        request,
        Arc::new(QuietProgress),
        CancellationToken::new(),
    )
    .await
    .expect("import");
    assert_eq!(s.imported, 6, "{s:?}");
    assert_eq!(
        s.tickets_merged,
        Some(1),
        "history joined the live ticket: {s:?}"
    );
    assert_eq!(
        s.tickets_created,
        Some(4),
        "three questions and the outreach: {s:?}"
    );

    let rows: Vec<(String, i64, String)> = sqlx::query_as(
        "SELECT message_id, ticket_id, direction FROM messages WHERE account_id = ? ORDER BY sent_at",
    )
    .bind(account)
    .fetch_all(store.pool())
    .await
    .expect("rows");
    let of = |id: &str| {
        rows.iter()
            .find(|r| r.0 == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} stored"))
    };
    assert_eq!(of("old-1@alice.test").1, live_ticket);
    assert_eq!(of("old-2@shop.test").1, live_ticket);
    assert_eq!(
        of("old-2@shop.test").2,
        "outbound",
        "the brand's answer is an agent reply"
    );
    assert_eq!(of("old-1@alice.test").2, "inbound");
    // The live ticket is still open; of the imported ones only the newest is.
    let statuses: Vec<(i64, String, Option<String>)> = sqlx::query_as(
        "SELECT t.id, t.status, c.email FROM tickets t LEFT JOIN customers c ON c.id = t.customer_id
         WHERE t.account_id = ? AND t.merged_into IS NULL ORDER BY t.id",
    )
    .bind(account)
    .fetch_all(store.pool())
    .await
    .expect("tickets");
    let open: Vec<&(i64, String, Option<String>)> =
        statuses.iter().filter(|t| t.1 == "open").collect();
    assert_eq!(open.len(), 2, "{statuses:?}");
    assert!(open.iter().any(|t| t.0 == live_ticket));
    assert!(
        open.iter()
            .any(|t| t.2.as_deref() == Some("bob3@bob3.test")),
        "the newest imported ticket is the one left open: {statuses:?}"
    );
    let outreach = of("outreach@shop.test");
    assert_eq!(outreach.2, "outbound");
    assert!(
        statuses
            .iter()
            .any(|t| t.0 == outreach.1 && t.2.as_deref() == Some("carol@carol.test")),
        "the brand's first mail makes its recipient the customer: {statuses:?}"
    );
    drop(writer);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_counts_and_writes_nothing_and_dates_filter() {
    let env = Env::new(&[]).await;
    let msgs: Vec<String> = (1..=10)
        .map(|n| {
            message(
                &format!("d{n}@x.test"),
                &format!("c{n}@x.test"),
                BRAND,
                &format!("s{n}"),
                &format!("Mon, {n:02} Jan 2024 09:00:00 +0000"),
                "",
            )
        })
        .collect();
    let path = env.dir.path().join("d.mbox");
    write_mbox(&path, &msgs);
    let before = dump(&env.store).await;
    let mut r = env.request(mbox(&path));
    r.dry_run = true;
    let s = env.run(r).await.expect("dry run");
    assert!(s.dry_run);
    assert_eq!((s.seen, s.imported, s.duplicates), (10, 10, 0), "{s:?}");
    assert_eq!(dump(&env.store).await, before, "a dry run writes nothing");

    let mut r = env.request(mbox(&path));
    r.range.since = chrono::NaiveDate::from_ymd_opt(2024, 1, 3);
    r.range.until = chrono::NaiveDate::from_ymd_opt(2024, 1, 7);
    let s = env.run(r).await.expect("import");
    assert_eq!((s.seen, s.imported, s.skipped), (10, 5, 5), "{s:?}");

    let mut r = env.request(mbox(&path));
    r.dry_run = true;
    let s = env.run(r).await.expect("dry run");
    assert_eq!((s.imported, s.duplicates), (5, 5), "{s:?}");
}

/// Every row of the tables an import writes.
async fn dump(store: &Store) -> Vec<String> {
    let mut out = Vec::new();
    for table in [
        "tickets",
        "messages",
        "quarantine",
        "customers",
        "ticket_participants",
        "import_jobs",
        "blobs",
    ] {
        let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(store.pool())
            .await
            .expect("count");
        out.push(format!("{table}: {n}"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_is_quarantined_with_its_size_not_dropped() {
    let env = Env::new(&[]).await;
    let big = message(
        "big@x.test",
        "c@x.test",
        BRAND,
        "big",
        "Mon, 01 Jan 2024 09:00:00 +0000",
        &format!("X-Filler: {}", "a".repeat(20_000)),
    );
    let small = message(
        "small@x.test",
        "c@x.test",
        BRAND,
        "small",
        "Mon, 01 Jan 2024 10:00:00 +0000",
        "",
    );
    let path = env.dir.path().join("b.mbox");
    write_mbox(&path, &[big, small]);
    let mut r = env.request(mbox(&path));
    r.max_message_size = 10_000;
    let s = env.run(r).await.expect("import");
    assert_eq!((s.seen, s.imported, s.quarantined), (2, 1, 1), "{s:?}");
    let (reason, detail, position): (String, String, String) = sqlx::query_as(
        "SELECT reason, detail, source_position FROM quarantine WHERE account_id = ?",
    )
    .bind(env.account.0)
    .fetch_one(env.store.pool())
    .await
    .expect("quarantine row");
    assert_eq!(reason, "too_large");
    assert!(detail.contains("10000"), "{detail}");
    assert_eq!(position, "mbox:0");
}

/// The rows `sql` selects, each shown as `label` and its values.
async fn rows_shown<T>(store: &Store, label: &str, sql: &str) -> Vec<String>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> + Send + Unpin + std::fmt::Debug,
{
    sqlx::query_as::<_, T>(sql)
        .fetch_all(store.pool())
        .await
        .unwrap_or_else(|e| panic!("{label} rows: {e}"))
        .into_iter()
        .map(|r| format!("{label} {r:?}"))
        .collect()
}

/// The store's content, without the times at which rows were written.
async fn store_fingerprint(dir: &Path) -> Vec<String> {
    let settings = Settings::load_with_env(None, test_env(dir, &[])).expect("settings");
    let store = Store::open(&settings.database_path(), 1)
        .await
        .expect("store");
    let mut out = rows_shown::<(i64, i64, String, String, String, i64)>(
        &store,
        "message",
        "SELECT id, ticket_id, COALESCE(message_id, ''), direction, thread_reason, received_at
         FROM messages ORDER BY id",
    )
    .await;
    out.extend(
        rows_shown::<(i64, String, String, Option<i64>, i64, i64)>(
            &store,
            "ticket",
            "SELECT id, subject, status, merged_into, created_at, COALESCE(customer_id, 0) FROM tickets ORDER BY id",
        )
        .await,
    );
    out.extend(
        rows_shown::<(i64, i64, i64, i64, String)>(
            &store,
            "job",
            "SELECT seen, imported, duplicates, quarantined, status FROM import_jobs ORDER BY id",
        )
        .await,
    );
    store.close().await;
    out
}

/// Two data folders, each with the same account (id 1): one for an uninterrupted import,
/// one for the same import killed and run again.
fn shop_data_dirs() -> [tempfile::TempDir; 2] {
    [(); 2].map(|_| shop_data_dir())
}

/// A data folder with the brand's account (id 1).
fn shop_data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    create_account(dir.path(), "Shop", BRAND);
    dir
}

/// Starts an import slowed to 3000 messages a second (so that it can be killed midway),
/// its output dropped.
fn spawn_slowed(command: &mut std::process::Command) -> std::process::Child {
    command
        .args(["--max-rate", "3000"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn import")
}

/// Runs an import to its end and returns its JSON summary.
fn import_ok(command: &mut std::process::Command) -> serde_json::Value {
    let out = command.output().expect("run import");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON summary")
}

/// Polls `ready` until it gives something, then kills the child with SIGKILL and returns
/// it. Fails when the child ends first (the work was too small to be interrupted) or after
/// two minutes.
fn kill_when<T>(
    child: &mut std::process::Child,
    too_late: &str,
    mut ready: impl FnMut() -> Option<T>,
) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(found) = ready() {
            child.kill().expect("SIGKILL");
            let _ = child.wait();
            return found;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "the import ended ({status}) before it could be killed: make the mailbox larger"
            );
        }
        assert!(std::time::Instant::now() < deadline, "{too_late}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn import_command(dir: &Path, mbox: &Path) -> std::process::Command {
    let mut c = std::process::Command::new(postern_bin());
    c.args([
        "import",
        "--account",
        "1",
        "--mbox",
        &mbox.display().to_string(),
        "--batch-size",
        "100",
        "--json",
    ])
    .envs(test_env(dir, &[]));
    c
}

#[test]
fn max_rate_keeps_each_pass_under_the_limit_and_the_result_the_same() {
    let work = tempfile::tempdir().expect("temp dir");
    let path = work.path().join("paced.mbox");
    write_mbox(&path, &generated_mailbox(300, "pipeline"));
    let data = shop_data_dir();
    // 300 messages at 200 a second: at least 1.5 s to read them, 1.5 s more to commit them.
    let started = std::time::Instant::now();
    let summary = import_ok(import_command(data.path(), &path).args(["--max-rate", "200"]));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(2_900),
        "300 messages at 200/s in each pass took only {took:?}"
    );
    assert_eq!(
        (
            &summary["status"],
            &summary["imported"],
            &summary["tickets"]
        ),
        (&json!("completed"), &json!(300), &json!(100)),
        "{summary}"
    );
    // A dry run reads at the same pace.
    let started = std::time::Instant::now();
    let dry =
        import_ok(import_command(data.path(), &path).args(["--dry-run", "--max-rate", "200"]));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1_400),
        "a dry run of 300 messages at 200/s took only {took:?}"
    );
    assert_eq!(dry["duplicates"], 300, "{dry}");
}

#[test]
fn an_import_killed_with_sigkill_resumes_to_exactly_the_same_store() {
    let work = tempfile::tempdir().expect("temp dir");
    let path = work.path().join("big.mbox");
    write_mbox(&path, &generated_mailbox(6_000, "pipeline"));
    let [reference, killed] = shop_data_dirs();
    let summary = import_ok(&mut import_command(reference.path(), &path));
    assert_eq!(summary["seen"], 6000);
    assert_eq!(summary["imported"], 6000);
    assert_eq!(summary["tickets"], 2000);

    // The same import, killed once a few batches are committed; slowed down so that it is
    // still running then, however fast the machine.
    let mut child = spawn_slowed(&mut import_command(killed.path(), &path));
    let db = killed.path().join("postern.db");
    kill_when(&mut child, "no checkpoint in time", || {
        let seen: i64 =
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .and_then(|c| {
                    c.query_row(
                "SELECT COALESCE(max(imported + duplicates + quarantined), 0) FROM import_jobs",
                [],
                |r| r.get(0),
            )
                })
                .unwrap_or(0);
        (seen >= 1_000).then_some(())
    });
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let partial = rt.block_on(store_fingerprint(killed.path()));
    assert!(
        partial.iter().any(|l| l.contains("\"running\"")),
        "the killed job is left running: {:?}",
        partial.iter().rev().take(2).collect::<Vec<_>>()
    );
    let resumed = import_ok(&mut import_command(killed.path(), &path));
    assert!(
        resumed["resumed_after"]
            .as_i64()
            .is_some_and(|n| (1_000..6_000).contains(&n)),
        "{resumed}"
    );
    assert_eq!(resumed["seen"], 6000, "{resumed}");
    assert_eq!(resumed["imported"], 6000, "{resumed}");
    assert_eq!(resumed["duplicates"], 0, "{resumed}");
    assert_eq!(
        rt.block_on(store_fingerprint(killed.path())),
        rt.block_on(store_fingerprint(reference.path())),
        "the resumed import left exactly the store of the uninterrupted one"
    );
}

/// Cuts the IMAP connection once, while the source is being read.
struct CutOnce {
    proxy: CuttableProxy,
    done: std::sync::atomic::AtomicBool,
}

impl ImportProgress for CutOnce {
    fn reading(&self, _t: &postern::import::staging::StagingTotals) {
        if !self.done.swap(true, std::sync::atomic::Ordering::SeqCst) {
            self.proxy.cut();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_import_survives_a_dropped_connection_and_matches_the_same_mail_from_an_mbox() {
    let server = Dovecot::start();
    let msgs: Vec<String> = generated_mailbox(2_000, "pipeline");
    let crlf: Vec<(Vec<u8>, &str)> = msgs
        .iter()
        .map(|m| (m.replace('\n', "\r\n").into_bytes(), "S"))
        .collect();
    server.deliver("INBOX", &crlf);
    let env = Env::new(&[]).await;
    let proxy = CuttableProxy::start(
        format!("127.0.0.1:{}", server.imap_port)
            .parse()
            .expect("addr"),
    );
    let mut config = ImapConfig::from_url(
        &format!("imap://{USER}@127.0.0.1:{}/", proxy.addr.port()),
        PASSWORD.into(),
    )
    .expect("url");
    config.security = ImapSecurity::Plain;
    config.system_roots = false;
    config.batch_size = 50;
    config.timeout = Duration::from_secs(10);
    let progress = Arc::new(CutOnce {
        proxy,
        done: Default::default(),
    });
    let s = env
        .run_with(
            env.request(SourceSpec::Imap {
                config: Box::new(config),
            }),
            progress.clone(),
            CancellationToken::new(),
        )
        .await
        .expect("import over IMAP");
    assert!(progress.done.load(std::sync::atomic::Ordering::SeqCst));
    assert_eq!((s.imported, s.duplicates), (2_000, 0), "{s:?}");
    assert_eq!(
        s.seen, 2_000,
        "nothing read twice after the reconnection: {s:?}"
    );
    let distinct = count(
        &env.store,
        "SELECT count(DISTINCT message_id) FROM messages WHERE account_id = ?",
        env.account,
    )
    .await;
    assert_eq!(distinct, 2_000);
    // Dovecot kept its flags: BODY.PEEK changed nothing (they were all \Seen, none lost).
    // The same mail from an mbox is recognised, whatever its line endings.
    let path = env.dir.path().join("same.mbox");
    write_mbox(&path, &msgs);
    let again = env
        .run(env.request(mbox(&path)))
        .await
        .expect("mbox import");
    assert_eq!((again.imported, again.duplicates), (0, 2_000), "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_import_stops_at_a_batch_and_the_same_import_resumes() {
    let env = Env::new(&[]).await;
    let path = env.dir.path().join("c.mbox");
    write_mbox(&path, &generated_mailbox(900, "pipeline"));
    let cancel = CancellationToken::new();
    struct CancelAfterFirst(CancellationToken);
    impl ImportProgress for CancelAfterFirst {
        fn advanced(&self, _c: &ImportTotals) {
            self.0.cancel();
        }
    }
    let s = env
        .run_with(
            env.request(mbox(&path)),
            Arc::new(CancelAfterFirst(cancel.clone())),
            cancel,
        )
        .await
        .expect("import");
    assert_eq!(s.status, "interrupted", "{s:?}");
    assert!(s.imported > 0 && s.imported < 900, "{s:?}");
    let rest = env.run(env.request(mbox(&path))).await.expect("resume");
    assert_eq!(rest.status, "completed");
    assert_eq!(rest.job_id, s.job_id, "the same job resumed");
    assert_eq!(
        (rest.seen, rest.imported, rest.duplicates),
        (900, 900, 0),
        "{rest:?}"
    );
}

#[test]
fn the_cli_refuses_bad_sources_with_a_clear_message() {
    let dir = shop_data_dir();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(postern_bin())
            .args(args)
            .envs(test_env(dir.path(), &[]))
            .env_remove("POSTERN_IMAP_PASSWORD")
            .output()
            .expect("run");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, err) = run(&["import", "--account", "1", "--mbox", "/nonexistent.mbox"]);
    assert!(
        !ok && err.contains("/nonexistent.mbox") && err.contains("no such file"),
        "{err}"
    );
    let (ok, err) = run(&["import", "--account", "9", "--mbox", "/etc/hostname"]);
    assert!(!ok && err.contains("no account with id 9"), "{err}");
    let (ok, err) = run(&["import", "--account", "1", "--mbox", "/etc/hostname"]);
    assert!(!ok && err.contains("is not an mbox"), "{err}");
    let (ok, err) = run(&["import", "--account", "1", "--imap", "imaps://u:secret@h/"]);
    assert!(!ok && !err.contains("secret"), "{err}");
    let (ok, err) = run(&["import", "--account", "1", "--imap", "imaps://u@h/"]);
    assert!(!ok && err.contains("POSTERN_IMAP_PASSWORD"), "{err}");
    let (ok, err) = run(&[
        "import",
        "--account",
        "1",
        "--mbox",
        "/etc/hostname",
        "--since",
        "yesterday",
    ]);
    assert!(!ok && err.contains("yesterday"), "{err}");
}

/// Source positions of the records of a staging file, read from its JSON headers.
fn staged_positions(staging: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(staging);
    text.match_indices("\"position\":\"")
        .filter_map(|(at, key)| {
            let rest = &text[at + key.len()..];
            rest.find('"').map(|end| rest[..end].to_string())
        })
        .collect()
}

#[test]
fn an_import_killed_while_reading_its_source_resumes_without_reading_it_again() {
    let work = tempfile::tempdir().expect("temp dir");
    let maildir = work.path().join("Maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).expect("maildir");
    }
    // Bodies of about 2 KB, so that the reading pass writes its staging file in several
    // steps and lasts long enough to be killed in the middle.
    let padding: String = (0..20)
        .map(|i| format!("{i:02} {}\n", "x".repeat(96)))
        .collect();
    let total = 6_000;
    for (i, m) in generated_mailbox(total, "pipeline").iter().enumerate() {
        std::fs::write(
            maildir.join("cur").join(format!("{i:06}.gen:2,S")),
            format!("{m}\n{padding}"),
        )
        .expect("write message");
    }
    let [reference, killed] = shop_data_dirs();
    let command = |dir: &Path| {
        let mut c = std::process::Command::new(postern_bin());
        c.args(["import", "--account", "1", "--maildir"])
            .arg(&maildir)
            .args(["--batch-size", "100", "--json"])
            .envs(test_env(dir, &[]));
        c
    };
    import_ok(&mut command(reference.path()));

    // Killed once a few megabytes are staged: in the reading pass, nothing committed yet.
    let mut child = spawn_slowed(&mut command(killed.path()));
    let imports = killed.path().join("imports");
    let staging_file = || -> Option<PathBuf> {
        std::fs::read_dir(&imports)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "staging"))
    };
    let staging = kill_when(&mut child, "no staging file in time", || {
        staging_file()
            .filter(|path| std::fs::metadata(path).map(|m| m.len()).unwrap_or(0) >= 3 << 20)
    });
    let db = killed.path().join("postern.db");
    let staged: Option<i64> =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .and_then(|c| c.query_row("SELECT staged FROM import_jobs", [], |r| r.get(0)))
            .expect("job row");
    assert_eq!(
        staged, None,
        "the reading pass had ended before the kill: make the mailbox larger"
    );

    // Every message staged before the kill (all but the last record, which the kill may
    // have cut) leaves the source: a run that read the source again from its start would
    // miss them.
    let positions = staged_positions(&std::fs::read(&staging).expect("staging file"));
    assert!(positions.len() > 100, "{} records staged", positions.len());
    let gone = &positions[..positions.len() - 1];
    for position in gone {
        let rel = position.strip_prefix("path:").expect("a Maildir position");
        std::fs::remove_file(maildir.join(rel)).expect("remove a staged message");
    }

    let resumed = import_ok(&mut command(killed.path()));
    assert_eq!(resumed["seen"], total, "{resumed}");
    assert_eq!(resumed["imported"], total, "{resumed}");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    assert_eq!(
        rt.block_on(store_fingerprint(killed.path())),
        rt.block_on(store_fingerprint(reference.path())),
        "the import resumed in its reading pass left exactly the store of the uninterrupted one ({} messages were read from the staging file only)",
        gone.len()
    );
}
