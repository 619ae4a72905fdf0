//! Filling a running server for rule tests: rules and macros written through the CLI,
//! mail sent with Python's smtplib, and reads of the rule log and of tickets.

use super::{cli, cli_json, cli_output, TestApp};
use postern::domain::AccountId;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Sends one message with Python's smtplib; `headers` are extra header lines.
pub async fn send(
    app: &TestApp,
    from: &str,
    to: &str,
    subject: &str,
    body: &str,
    headers: &[(&str, &str)],
) {
    // JSON strings are Python string literals (with any character, escaped or not).
    let q = |s: &str| serde_json::to_string(s).expect("quote");
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("m[{}] = {}\n", q(k), q(v)))
        .collect();
    let py = format!(
        r#"
import smtplib
from email.message import EmailMessage
m = EmailMessage()
m["From"] = {from}
m["To"] = {to}
m["Subject"] = {subject}
{extra}m.set_content({body})
s = smtplib.SMTP({host}, {port}, timeout=30)
s.ehlo("py.client.test")
refused = s.send_message(m)
assert not refused, refused
s.quit()
"#,
        from = q(from),
        to = q(to),
        subject = q(subject),
        body = q(body),
        host = q(&app.smtp_addr.ip().to_string()),
        port = app.smtp_addr.port()
    );
    let out =
        tokio::task::spawn_blocking(move || Command::new("python3").args(["-c", &py]).output())
            .await
            .expect("join")
            .expect("python3");
    assert!(
        out.status.success(),
        "smtplib: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write file");
    p
}

/// Runs the CLI and returns (success, stdout, stderr).
pub fn cli_raw(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = cli_output(dir, &[], args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn add_rule(dir: &Path, account: i64, name: &str, text: &str) -> i64 {
    let f = write(dir, name, text);
    let v = cli_json(
        dir,
        &[
            "rules",
            "add",
            "--account",
            &account.to_string(),
            "--file",
            f.to_str().unwrap(),
            "--json",
        ],
    );
    v["id"].as_i64().expect("rule id")
}

pub fn add_macro(dir: &Path, account: i64, name: &str, body: &str) {
    let f = write(dir, &format!("{name}.j2"), body);
    cli(
        dir,
        &[
            "macros",
            "add",
            "--account",
            &account.to_string(),
            "--name",
            name,
            "--file",
            f.to_str().unwrap(),
        ],
    );
}

/// Waits until the rule log of `account` holds at least `n` runs.
pub async fn wait_runs(app: &TestApp, account: i64, n: usize) -> Vec<postern::store::RuleRunView> {
    for _ in 0..200 {
        let runs = app
            .store
            .rule_runs(AccountId(account), &Default::default(), 1000)
            .await
            .expect("runs");
        if runs.len() >= n {
            return runs;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the rules worker did not log {n} runs in time");
}

/// Waits for `n` runs in the rule log of `account`, then a while longer, and returns the log:
/// a run that should not happen has had time to show up.
pub async fn settled_runs(
    app: &TestApp,
    account: i64,
    n: usize,
) -> Vec<postern::store::RuleRunView> {
    wait_runs(app, account, n).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    app.store
        .rule_runs(AccountId(account), &Default::default(), 1000)
        .await
        .expect("runs")
}

pub async fn ticket_by_subject(
    app: &TestApp,
    account: i64,
    subject: &str,
) -> postern::store::TicketDetail {
    let list = app
        .store
        .tickets(AccountId(account), None)
        .await
        .expect("tickets");
    let t = list
        .iter()
        .find(|t| t.subject == subject)
        .unwrap_or_else(|| panic!("no ticket {subject:?}"));
    app.store
        .ticket(
            postern::domain::TicketId(t.id),
            postern::domain::Scope::Account(AccountId(account)),
        )
        .await
        .expect("ticket")
}
