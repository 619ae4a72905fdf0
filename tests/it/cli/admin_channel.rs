//! Commands against a running server go through it (src/cli/remote.rs, src/admin_socket):
//! the real `postern` binary beside a real `postern serve` behaves as it does alone — same
//! output, same errors, same exit status, relative paths relative to where it was started —
//! while the work happens in the server (its admin command counter moves), and the socket is
//! private and bounded.

use crate::common::dns::{TestDns, Zone};
use crate::common::outbound::{outbound_env, pairs, set_up_domain};
use crate::common::{
    cli_json, cli_ok, cli_output, create_account, postern_bin, test_env, tickets_json, RawSmtp,
    ServerProcess,
};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const RULE: &str = r#"name = "Refunds are urgent"
trigger = "message_received"

[conditions]
field = "subject"
operator = "contains"
value = "refund"

[[actions]]
type = "add_tag"
tag = "Urgent"
"#;

/// A message with a byte that is not UTF-8 and CRLF line ends: `message raw --original`
/// must give back exactly these bytes.
fn message_bytes() -> Vec<u8> {
    let mut m = b"From: Ana <ana@customer.test>\r\n\
To: support@brand.test\r\n\
Subject: Refund for order 1234\r\n\
Message-ID: <admin-channel-1@customer.test>\r\n\
Date: Mon, 2 Jun 2025 10:00:00 +0000\r\n\
Content-Type: text/plain; charset=iso-8859-1\r\n\
Content-Transfer-Encoding: 8bit\r\n\
\r\n\
Caf"
    .to_vec();
    m.extend_from_slice(b"\xe9 froid, je veux un remboursement.\r\n");
    m
}

/// `postern_admin_commands_total` of the server at `http`.
fn admin_commands(http: SocketAddr) -> u64 {
    let mut stream = std::net::TcpStream::connect(http).expect("connect to /metrics");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .expect("request /metrics");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("read /metrics");
    text.lines()
        .find_map(|l| l.strip_prefix("postern_admin_commands_total "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no admin command counter in /metrics: {text}"))
}

fn run_in(data: &Path, cwd: &Path, args: &[&str]) -> std::process::Output {
    Command::new(postern_bin())
        .args(args)
        .envs(test_env(data, &[]))
        .current_dir(cwd)
        .output()
        .expect("run postern")
}

#[test]
fn commands_beside_a_running_server_run_in_it_and_behave_as_alone() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    // Replies need a verified sending domain (its DKIM record on a loopback DNS server);
    // this one stays in the queue.
    let dns = TestDns::start_in_thread(Zone::default());
    let env = outbound_env(&dns, &[("POSTERN__OUTBOUND__ENABLED", "false")]);
    let server = ServerProcess::start(&data, &pairs(&env));
    let socket = data.join("postern.db.admin.sock");

    // (a) A write and a read, each run by the server (its counter moves by one each).
    let before = admin_commands(server.http_addr);
    let (account, forwarding) = create_account(&data, "Shop", "support@brand.test");
    assert_eq!(
        admin_commands(server.http_addr),
        before + 1,
        "ran in the server"
    );
    let accounts = cli_json(&data, &["account", "list", "--json"]);
    assert_eq!(admin_commands(server.http_addr), before + 2);
    let listed = accounts.as_array().expect("a JSON array");
    assert!(
        listed
            .iter()
            .any(|a| a["id"] == account && a["name"] == "Shop"),
        "{accounts}"
    );

    // (b) A relative path is relative to where the command was started, not to the server.
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).expect("mkdir");
    std::fs::write(elsewhere.join("refunds.toml"), RULE).expect("write rule");
    let acc = account.to_string();
    let add = [
        "rules",
        "add",
        "--account",
        &acc,
        "--file",
        "refunds.toml",
        "--json",
    ];
    let out = run_in(&data, &elsewhere, &add);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rule: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON rule");
    assert_eq!(rule["name"], "Refunds are urgent", "{rule}");
    // The same command where the file is not: the error names the path as given.
    let out = run_in(&data, tmp.path(), &add);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("postern: reading refunds.toml"),
        "{stderr}"
    );

    // (c) A stored message comes back byte for byte.
    let raw = message_bytes();
    let (mut smtp, _) = RawSmtp::connect(server.smtp_addr).expect("smtp");
    smtp.cmd("EHLO customer.test").expect("EHLO");
    let reply = smtp
        .send_exact("ana@customer.test", &forwarding, &raw)
        .expect("send");
    assert_eq!(reply.code, 250, "{}", reply.text);
    let tickets = tickets_json(&data, account);
    let ticket = tickets[0]["id"].as_i64().expect("ticket id").to_string();
    let detail = cli_json(
        &data,
        &["ticket", "show", &ticket, "--account", &acc, "--json"],
    );
    let message = detail["messages"][0]["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("message id in {detail}"))
        .to_string();
    let raw_args = ["message", "raw", &message, "--account", &acc, "--original"];
    let remote_original = cli_output(&data, &[], &raw_args);
    assert!(remote_original.status.success());
    assert_eq!(remote_original.stdout, raw, "the bytes exactly as received");
    let download = ["message", "raw", &message, "--account", &acc];
    let remote_download = cli_output(&data, &[], &download);
    assert!(remote_download.status.success());

    // A reply body on standard input travels with the command.
    set_up_domain(&data, &pairs(&env), &dns, account);
    let mut reply = Command::new(postern_bin())
        .args(["reply", "--ticket", &ticket, "--body-file", "-"])
        .envs(test_env(&data, &[]))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn reply");
    reply
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"Your refund is on its way.\n")
        .expect("write stdin");
    let out = reply.wait_with_output().expect("reply");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("outbound.enabled is false"),
        "the command's notes come back on stderr: {stderr}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("queued in ticket {ticket}")),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let detail = cli_json(
        &data,
        &["ticket", "show", &ticket, "--account", &acc, "--json"],
    );
    assert!(
        detail.to_string().contains("Your refund is on its way."),
        "the reply's body is the standard input: {detail}"
    );

    // (d) A failing command: exit status 1 and its one-line error (compared with a local
    // run below).
    let missing = ["ticket", "show", "999999", "--account", &acc];
    let remote_failure = cli_output(&data, &[], &missing);
    assert_eq!(remote_failure.status.code(), Some(1));
    assert!(remote_failure.stdout.is_empty());

    // `postern migrate` has nothing to do beside the server that migrated; it says so.
    let out = cli_output(&data, &[], &["migrate"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("applied every migration"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // (f) The socket is the server user's alone, and a request over 1 MiB is refused.
    let meta = std::fs::metadata(&socket).expect("the admin socket exists");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let answer = oversized_request(&socket);
    assert!(answer.contains("\"status\":1"), "{answer}");
    assert!(answer.contains("larger than the 1048576 bytes"), "{answer}");

    let listed_remote = cli_json(&data, &["account", "list", "--json"]);
    let counted = admin_commands(server.http_addr);
    assert!(server.terminate().success(), "the server stops cleanly");
    assert!(!socket.exists(), "a stopped server removes its socket");

    // The same commands alone: the same answers.
    let local_failure = cli_output(&data, &[], &missing);
    assert_eq!(local_failure.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&remote_failure.stderr),
        String::from_utf8_lossy(&local_failure.stderr),
        "the same error text with and without the server"
    );
    let local_original = cli_output(&data, &[], &raw_args);
    assert_eq!(local_original.stdout, remote_original.stdout);
    let local_download = cli_output(&data, &[], &download);
    assert_eq!(local_download.stdout, remote_download.stdout);
    let listed_alone = cli_ok(&data, &[], &["account", "list", "--json"]);
    let listed_alone: serde_json::Value = serde_json::from_str(&listed_alone).expect("JSON");
    assert_eq!(listed_alone, listed_remote);
    assert_eq!(
        counted,
        before + 14,
        "every command above ran in the server"
    );
}

/// Sends a request line longer than the socket accepts; returns the answer's header line.
fn oversized_request(socket: &Path) -> String {
    let stream = UnixStream::connect(socket).expect("connect to the admin socket");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut writer = stream.try_clone().expect("clone");
    // The server stops reading at the limit and answers: write from another thread, which
    // may see the connection close under it.
    let sender = std::thread::spawn(move || {
        let mut line =
            br#"{"v":1,"argv":["postern","account","list"],"cwd":"/","stdin":""#.to_vec();
        line.resize(1024 * 1024 + 64, b'x');
        let _ = writer.write_all(&line);
    });
    let mut head = String::new();
    BufReader::new(stream)
        .read_line(&mut head)
        .expect("read the answer");
    let _ = sender.join();
    head
}
