//! Connection exhaustion and slow clients over real loopback TCP (issue 19, findings 2, 3
//! and 4): HTTP cannot take the descriptors SMTP needs, idle and half-sent HTTP requests
//! are closed, one client network cannot hold the shared DATA memory, and clients that
//! trickle bytes are cut off. Clients come from several loopback addresses (127.0.0.2 ...)
//! so that per-client limits can be seen.

use crate::common::*;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};

/// Longest a test waits for something the fix makes prompt.
const PROMPT: Duration = Duration::from_secs(10);

async fn connect_from(source: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(format!("{source}:0").parse().expect("source address"))
        .expect("bind the client to its loopback address");
    socket.connect(to).await.expect("connect")
}

/// A minimal SMTP client that shows each reply as text.
struct Smtp {
    read: BufReader<OwnedReadHalf>,
    write: OwnedWriteHalf,
}

impl Smtp {
    async fn connect_from(source: &str, to: SocketAddr) -> (Self, String) {
        let (read, write) = connect_from(source, to).await.into_split();
        let mut c = Self {
            read: BufReader::new(read),
            write,
        };
        let greeting = c.reply().await;
        (c, greeting)
    }

    async fn reply(&mut self) -> String {
        read_reply(&mut self.read).await
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.write.write_all(bytes).await.expect("send");
    }

    async fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }

    /// EHLO, MAIL, RCPT and DATA; the 354 is checked.
    async fn start_data(&mut self, to: &str) {
        assert!(self.cmd("EHLO client.test").await.starts_with("250"));
        assert!(self
            .cmd("MAIL FROM:<sender@example.com>")
            .await
            .starts_with("250"));
        let rcpt = self.cmd(&format!("RCPT TO:<{to}>")).await;
        assert!(rcpt.starts_with("250"), "{rcpt}");
        let data = self.cmd("DATA").await;
        assert!(data.starts_with("354"), "{data}");
    }
}

/// The next reply (all its lines), or what the connection did instead, within PROMPT.
async fn read_reply(read: &mut BufReader<OwnedReadHalf>) -> String {
    let mut text = String::new();
    let lines = async {
        loop {
            let mut line = String::new();
            match read.read_line(&mut line).await {
                Ok(0) => return format!("{text}<closed>"),
                Err(e) => return format!("{text}<error: {e}>"),
                Ok(_) => {}
            }
            text.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return text.clone();
            }
        }
    };
    match tokio::time::timeout(PROMPT, lines).await {
        Ok(t) => t,
        Err(_) => format!("<no reply within {PROMPT:?}>"),
    }
}

fn small_message(subject: &str) -> String {
    format!("From: Customer <customer@example.com>\r\nTo: support@shop.example\r\nSubject: {subject}\r\nMessage-ID: <{subject}@example.com>\r\n\r\nWhere is my order?\r\n.\r\n")
}

// ---- Finding 2: HTTP connections cannot starve SMTP ----

#[test]
fn an_http_connection_flood_leaves_smtp_its_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    // 300 open files: SMTP takes 2 × 20 + 34 = 74, 100 are kept for the rest, and HTTP gets
    // (300 - 74 - 100 - 2) / 2 = 62 connections instead of the 1000 asked for.
    let server = ServerProcess::start_with_open_file_limit(
        dir.path(),
        &[
            ("POSTERN__SMTP__MAX_CONNECTIONS", "20"),
            ("POSTERN__HTTP__MAX_CONNECTIONS", "1000"),
            ("POSTERN__HTTP__MAX_CONNECTIONS_PER_IP", "1000"),
            ("POSTERN__HTTP__RESERVED_DESCRIPTORS", "100"),
            ("POSTERN__HTTP__HEADER_TIMEOUT", "60s"),
        ],
        300,
    );
    // More idle connections than the server has descriptors.
    let mut idle = Vec::new();
    for _ in 0..400 {
        match std::net::TcpStream::connect_timeout(&server.http_addr, Duration::from_secs(5)) {
            Ok(s) => idle.push(s),
            Err(e) => panic!("connecting to HTTP: {e}"),
        }
    }
    // SMTP still greets, and a session works.
    let (mut smtp, greeting) = RawSmtp::connect(server.smtp_addr).expect("SMTP connection");
    assert_eq!(greeting.code, 220, "{greeting:?}");
    assert_eq!(smtp.cmd("EHLO client.test").unwrap().code, 250);
    assert_eq!(smtp.cmd("QUIT").unwrap().code, 221);
    // HTTP is full: a further client is turned away at once rather than left hanging.
    let mut extra = std::net::TcpStream::connect(server.http_addr).unwrap();
    extra.set_read_timeout(Some(PROMPT)).unwrap();
    let _ = extra.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut answer = Vec::new();
    match extra.read_to_end(&mut answer) {
        Ok(_) => {
            let text = String::from_utf8_lossy(&answer);
            assert!(
                text.is_empty() || text.starts_with("HTTP/1.1 503"),
                "over the cap: {text}"
            );
        }
        Err(e) => assert!(
            !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "a connection over the cap must be closed, not left waiting: {e}"
        ),
    }
    let logs = server.logs().join("\n");
    assert!(
        logs.contains("http.max_connections lowered"),
        "the lowered HTTP cap is logged: {logs}"
    );
    assert!(logs.contains("open-file limit"), "{logs}");
    drop(idle);
}

#[tokio::test]
async fn a_half_sent_request_head_and_an_idle_keep_alive_connection_are_closed() {
    let app = spawn_app(&[("POSTERN__HTTP__HEADER_TIMEOUT", "2s")]).await;
    // A request head that never ends.
    let mut half = TcpStream::connect(app.http_addr).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let mut out = Vec::new();
    let closed = tokio::time::timeout(PROMPT, half.read_to_end(&mut out)).await;
    assert!(
        closed.is_ok(),
        "a half-sent head must be closed after http.header_timeout"
    );
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    // A keep-alive connection is served, then closed once idle for the same time.
    let mut idle = TcpStream::connect(app.http_addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let closed = tokio::time::timeout(PROMPT, idle.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(closed.is_ok(), "an idle keep-alive connection is closed");
    app.stop().await;
}

#[tokio::test]
async fn one_client_network_cannot_take_every_http_connection() {
    let app = spawn_app(&[("POSTERN__HTTP__MAX_CONNECTIONS_PER_IP", "3")]).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from("127.0.0.1", app.http_addr).await);
    }
    let mut probe = connect_from("127.0.0.1", app.http_addr).await;
    let mut out = Vec::new();
    let read = tokio::time::timeout(PROMPT, probe.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "a fourth connection is closed at once");
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("from your network"), "{text}");
    // Another client is served.
    let mut other = connect_from("127.0.0.2", app.http_addr).await;
    other
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(PROMPT, other.read_to_end(&mut out))
        .await
        .expect("served")
        .unwrap();
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"));
    drop(held);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_trickled_a_byte_at_a_time_is_cut_off() {
    let app = spawn_app(&[
        ("POSTERN__HTTP__BODY_TIMEOUT", "5s"),
        ("POSTERN__HTTP__BODY_MIN_RATE", "100"),
        ("POSTERN__HTTP__BODY_RATE_GRACE", "1s"),
    ])
    .await;
    let (account, _) = app.account("Shop", "support@shop.example").await;
    let token = api_token(app.dir.path(), account, "admin");
    let mut conn = TcpStream::connect(app.http_addr).await.unwrap();
    conn.write_all(
        format!(
            "POST /api/v1/imports/upload?kind=eml HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let (mut read, mut write) = conn.into_split();
    let trickle = tokio::spawn(async move {
        for _ in 0..60 {
            if write.write_all(b"x").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    let mut out = Vec::new();
    let closed = tokio::time::timeout(PROMPT, read.read_to_end(&mut out)).await;
    trickle.abort();
    let text = String::from_utf8_lossy(&out);
    assert!(closed.is_ok(), "the upload must be cut off: {text}");
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("too slowly"), "{text}");
    app.stop().await;
}

// ---- Finding 3: one client cannot hold the shared DATA memory ----

/// 256 KiB messages; 320 KiB of message memory in all.
const SMALL_BUDGET: &[(&str, &str)] = &[
    ("POSTERN__SMTP__MAX_MESSAGE_SIZE", "262144"),
    ("POSTERN__SMTP__MAX_INFLIGHT_DATA", "327680"),
    ("POSTERN__SMTP__MAX_INFLIGHT_DATA_PER_IP", "327680"),
    ("POSTERN__SMTP__DATA_TIMEOUT", "60s"),
    ("POSTERN__SMTP__DATA_TOTAL_TIMEOUT", "120s"),
    ("POSTERN__SMTP__DATA_MIN_RATE", "0"),
    // The sessions left waiting are cut at the end of the test.
    ("POSTERN__SMTP__SHUTDOWN_GRACE", "1s"),
];

#[tokio::test]
async fn a_message_being_discarded_as_too_big_holds_no_memory_from_others() {
    let app = spawn_app(SMALL_BUDGET).await;
    let (_, fwd) = app.account("Shop", "support@shop.example").await;
    // 300 KiB, over the size limit, and then nothing: the session reads on only to find
    // the end of the data.
    let (mut big, greeting) = Smtp::connect_from("127.0.0.1", app.smtp_addr).await;
    assert!(greeting.starts_with("220"), "{greeting}");
    big.start_data(&fwd).await;
    let line = format!("{}\r\n", "y".repeat(998));
    for _ in 0..300 {
        big.send(line.as_bytes()).await;
    }
    // Another client's small message goes through at once.
    let (mut small, _) = Smtp::connect_from("127.0.0.2", app.smtp_addr).await;
    small.start_data(&fwd).await;
    small.send(small_message("small-1").as_bytes()).await;
    let reply = small.reply().await;
    assert!(reply.starts_with("250"), "{reply}");
    // The big one still ends cleanly.
    big.send(b".\r\n").await;
    let reply = big.reply().await;
    assert!(reply.starts_with("552 5.3.4"), "{reply}");
    app.stop().await;
}

#[tokio::test]
async fn ten_sessions_of_one_client_do_not_hold_back_another_clients_mail() {
    let mut env = SMALL_BUDGET.to_vec();
    // 1.25 MiB in all, 320 KiB for one client network.
    env.retain(|(k, _)| *k != "POSTERN__SMTP__MAX_INFLIGHT_DATA");
    env.push(("POSTERN__SMTP__MAX_INFLIGHT_DATA", "1310720"));
    let app = spawn_app(&env).await;
    let (_, fwd) = app.account("Shop", "support@shop.example").await;
    let line = format!("{}\r\n", "y".repeat(998));
    let mut hogs = Vec::new();
    for _ in 0..10 {
        let (mut hog, _) = Smtp::connect_from("127.0.0.1", app.smtp_addr).await;
        hog.start_data(&fwd).await;
        // 250 kB of a message that is within the size limit, then a pause.
        let chunk = line.repeat(250);
        let (read, mut write) = (hog.read, hog.write);
        let writer = tokio::spawn(async move {
            let _ = write.write_all(chunk.as_bytes()).await;
            write
        });
        hogs.push((read, writer));
    }
    let (mut other, _) = Smtp::connect_from("127.0.0.2", app.smtp_addr).await;
    other.start_data(&fwd).await;
    other.send(small_message("other-1").as_bytes()).await;
    let reply = other.reply().await;
    assert!(reply.starts_with("250"), "{reply}");
    for (_, writer) in &hogs {
        writer.abort();
    }
    drop(hogs);
    app.stop().await;
}

// ---- Finding 4: slowloris ----

#[tokio::test]
async fn a_command_trickled_a_byte_at_a_time_is_cut_off_at_the_command_timeout() {
    let app = spawn_app(&[("POSTERN__SMTP__COMMAND_TIMEOUT", "2s")]).await;
    let (c, greeting) = Smtp::connect_from("127.0.0.1", app.smtp_addr).await;
    assert!(greeting.starts_with("220"));
    let Smtp {
        mut read,
        mut write,
    } = c;
    // One byte every 500 ms: never idle for 2 s, never a whole line.
    let trickle = tokio::spawn(async move {
        for b in b"NOOPNOOPNOOPNOOPNOOPNOOPNOOPNOOP".iter() {
            if write.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    let reply = read_reply(&mut read).await;
    trickle.abort();
    assert!(reply.starts_with("421 4.4.2 "), "{reply}");
    assert!(
        reply.contains("no complete command line within 2s"),
        "{reply}"
    );
    app.stop().await;
}

#[tokio::test]
async fn message_data_trickled_a_byte_at_a_time_is_cut_off() {
    let app = spawn_app(&[
        ("POSTERN__SMTP__DATA_TIMEOUT", "2s"),
        ("POSTERN__SMTP__DATA_TOTAL_TIMEOUT", "4s"),
        ("POSTERN__SMTP__DATA_MIN_RATE", "100"),
        ("POSTERN__SMTP__DATA_RATE_GRACE", "1s"),
    ])
    .await;
    let (_, fwd) = app.account("Shop", "support@shop.example").await;
    let (mut c, _) = Smtp::connect_from("127.0.0.1", app.smtp_addr).await;
    c.start_data(&fwd).await;
    let Smtp {
        mut read,
        mut write,
    } = c;
    // Two bytes a second: never idle for 2 s, far under 100 bytes a second.
    let trickle = tokio::spawn(async move {
        for _ in 0..40 {
            if write.write_all(b"x").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    let reply = read_reply(&mut read).await;
    trickle.abort();
    assert!(reply.starts_with("421 4.4.2 "), "{reply}");
    assert!(reply.contains("too slow"), "{reply}");
    app.stop().await;
}

#[tokio::test]
async fn addresses_of_one_network_share_the_per_ip_connection_limit() {
    // IPv4 grouped by /24 here (IPv6 is grouped by /64 by default; loopback offers a
    // single IPv6 address, so that grouping is shown by the unit tests of net::client).
    let app = spawn_app(&[
        ("POSTERN__SMTP__MAX_CONNECTIONS_PER_IP", "2"),
        ("POSTERN__SMTP__IPV4_PREFIX", "24"),
    ])
    .await;
    let (_a, ga) = Smtp::connect_from("127.0.0.1", app.smtp_addr).await;
    let (_b, gb) = Smtp::connect_from("127.0.0.2", app.smtp_addr).await;
    assert!(ga.starts_with("220") && gb.starts_with("220"), "{ga}{gb}");
    let (_c, gc) = Smtp::connect_from("127.0.0.3", app.smtp_addr).await;
    assert!(gc.starts_with("421 4.7.0"), "{gc}");
    assert!(gc.contains("127.0.0.0/24"), "{gc}");
    let (_d, gd) = Smtp::connect_from("127.0.1.1", app.smtp_addr).await;
    assert!(gd.starts_with("220"), "another /24 is another client: {gd}");
    app.stop().await;
}

#[tokio::test]
async fn idle_connections_that_fill_the_server_are_closed_soon_and_senders_get_in() {
    let app = spawn_app(&[
        ("POSTERN__SMTP__MAX_CONNECTIONS", "10"),
        ("POSTERN__SMTP__MAX_CONNECTIONS_PER_IP", "5"),
        ("POSTERN__SMTP__BUSY_COMMAND_TIMEOUT", "2s"),
    ])
    .await;
    let (_, fwd) = app.account("Shop", "support@shop.example").await;
    // Two flooding addresses take every connection and then send nothing.
    let mut flood = Vec::new();
    for source in ["127.0.0.2", "127.0.0.3"] {
        for _ in 0..5 {
            let (c, greeting) = Smtp::connect_from(source, app.smtp_addr).await;
            assert!(greeting.starts_with("220"), "{greeting}");
            flood.push(c);
        }
    }
    let (_, refused) = Smtp::connect_from("127.0.0.4", app.smtp_addr).await;
    assert!(refused.starts_with("421"), "the server is full: {refused}");
    // Busy: each idle connection is closed once the short limit has passed, and says why.
    for c in &mut flood {
        let reply = c.reply().await;
        assert!(reply.starts_with("421 4.4.2 "), "{reply}");
        assert!(reply.contains("the server is busy"), "{reply}");
    }
    let (mut sender, greeting) = Smtp::connect_from("127.0.0.4", app.smtp_addr).await;
    assert!(greeting.starts_with("220"), "{greeting}");
    sender.start_data(&fwd).await;
    sender
        .send(small_message("after-the-flood").as_bytes())
        .await;
    let done = sender.reply().await;
    assert!(done.starts_with("250"), "{done}");
    app.stop().await;
}
