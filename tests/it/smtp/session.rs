//! The SMTP session driven by bytes in and replies out, over an in-memory pipe: what does not
//! fit a dialog file (tests/fixtures/smtp_dialogs, run by dialogs.rs): big generated input,
//! timeouts on a paused clock, shutdown, STARTTLS and memory budgets.
//! The delivery here is a recorder: these are unit tests of the protocol logic; the real
//! storage path is covered by the end-to-end tests.

use super::pipe::*;
use postern::net::PaceLimits;
use postern::smtp::{SessionConfig, SessionEnd};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn oversize_is_refused_after_reading_and_session_stays_usable() {
    let big = format!("Subject: big\r\n\r\n{}\r\n", "x".repeat(20_000));
    let input = format!(
        "EHLO c\r\n{}NOOP\r\n{}QUIT\r\n",
        tx(&big),
        tx("Subject: small\r\n\r\nok\r\n")
    );
    let (r, d) = converse(input.as_bytes()).await;
    let f = finals(&r);
    assert!(f[5].starts_with("552 5.3.4"), "{}", f[5]);
    assert!(f[6].starts_with("250"), "NOOP after oversize: {}", f[6]);
    assert!(f[10].starts_with("250 2.0.0"), "{}", f[10]);
    assert_eq!(d.delivered.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn idle_timeout_and_shutdown_give_421() {
    let mut cfg = config();
    cfg.command_timeout = Duration::from_millis(200);
    let (mut client, task) = spawn_session(cfg, CancellationToken::new());
    let mut out = Vec::new();
    client.read_to_end(&mut out).await.unwrap();
    task.await.unwrap().unwrap();
    assert!(
        String::from_utf8_lossy(&out).contains("421 4.4.2"),
        "{}",
        String::from_utf8_lossy(&out)
    );

    let stop = CancellationToken::new();
    let (mut client, task) = spawn_session(config(), stop.clone());
    client.write_all(b"EHLO c\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.cancel();
    let mut out = Vec::new();
    client.read_to_end(&mut out).await.unwrap();
    task.await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&out).contains("421 4.3.2"));
}

#[tokio::test]
async fn transaction_in_flight_finishes_despite_shutdown() {
    let stop = CancellationToken::new();
    let d = Arc::new(Recorder::default());
    let (mut client, server) = tokio::io::duplex(4096);
    let s = session(server, d.clone(), config(), stop.clone());
    let task = tokio::spawn(s.run(true));
    client
        .write_all(format!("EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<{FWD}>\r\n").as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.cancel();
    tokio::time::sleep(Duration::from_millis(50)).await;
    client
        .write_all(b"DATA\r\nSubject: x\r\n\r\nbody\r\n.\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    client.read_to_end(&mut out).await.unwrap();
    task.await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("250 2.0.0 Ok: queued as m1"), "{text}");
    assert!(
        text.trim_end()
            .ends_with("Service shutting down, try again later"),
        "{text}"
    );
    assert_eq!(d.delivered.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn starttls_drops_pipelined_plaintext() {
    // Sessions that offer STARTTLS, before the hand-over (which greets) and after it.
    let run_starttls_session = |stream, tls_active: bool| {
        let delivery = Arc::new(Recorder::default());
        let stop = CancellationToken::new();
        let s = session_with_tls(stream, delivery, config(), tls_active, true, stop);
        tokio::spawn(s.run(!tls_active))
    };
    let (mut client, server) = tokio::io::duplex(4096);
    let task = run_starttls_session(server, false);
    client
        .write_all(b"EHLO c\r\nSTARTTLS\r\nMAIL FROM:<injected@x.example>\r\n")
        .await
        .unwrap();
    let end = task.await.unwrap().unwrap();
    let SessionEnd::StartTls(server) = end else {
        panic!("expected a TLS hand-over")
    };
    // Carry on in plain text as if TLS were up: the injected MAIL must not be answered.
    let task = run_starttls_session(server, true);
    client
        .write_all(b"MAIL FROM:<a@b.c>\r\nEHLO c\r\nQUIT\r\n")
        .await
        .unwrap();
    client.shutdown().await.unwrap();
    let mut out = Vec::new();
    client.read_to_end(&mut out).await.unwrap();
    task.await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&out);
    let lines: Vec<&str> = text
        .split("\r\n")
        .filter(|l| !l.is_empty() && l.as_bytes()[3] != b'-')
        .collect();
    // greeting, EHLO, 220 STARTTLS, then after the hand-over: 503 (no EHLO yet), EHLO, QUIT
    assert!(lines[2].starts_with("220 2.0.0"), "{text}");
    assert!(
        lines[3].starts_with("503 5.5.1"),
        "the first MAIL after TLS needs a new EHLO: {text}"
    );
    assert_eq!(lines.len(), 6, "{text}");
    assert!(!text.contains("STARTTLS\r\n250 "), "{text}");
}

#[tokio::test]
async fn the_memory_budget_holds_back_a_second_big_message_until_the_first_is_done() {
    // 256 KiB for everyone; each message is 150 KiB.
    let mut cfg = config();
    cfg.max_message_size = 200_000;
    cfg.data_budget = postern::smtp::DataBudget::shared(256 * 1024);
    let budget = cfg.data_budget.clone();
    let cfg = Arc::new(cfg);
    let body = format!("Subject: big\r\n\r\n{}\r\n", "y".repeat(150_000));
    let start = |delivery: Arc<Recorder>| {
        let (client, server) = tokio::io::duplex(1 << 20);
        let s = session(server, delivery, cfg.clone(), CancellationToken::new());
        (client, tokio::spawn(s.run(true)))
    };
    let d = Arc::new(Recorder::default());
    let (mut a, ta) = start(d.clone());
    let (mut b, tb) = start(d.clone());
    // A sends its whole message but not the final dot: it holds ~192 KiB of room.
    a.write_all(
        format!("EHLO a\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<{FWD}>\r\nDATA\r\n{body}").as_bytes(),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        budget.available_bytes() < 100 * 1024,
        "A holds room: {}",
        budget.available_bytes()
    );
    // B's message cannot fit yet.
    b.write_all(format!("EHLO b\r\n{}QUIT\r\n", tx(&body)).as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(d.delivered.lock().unwrap().len(), 0, "B waited for room");
    // A finishes: its room comes back, B goes through.
    a.write_all(b".\r\nQUIT\r\n").await.unwrap();
    let mut out = Vec::new();
    b.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("250 2.0.0 Ok: queued"), "{text}");
    let mut out_a = Vec::new();
    a.read_to_end(&mut out_a).await.unwrap();
    ta.await.unwrap().unwrap();
    tb.await.unwrap().unwrap();
    assert_eq!(d.delivered.lock().unwrap().len(), 2);
    assert_eq!(budget.available_bytes(), 256 * 1024, "all room given back");
}

type SessionTask = tokio::task::JoinHandle<std::io::Result<SessionEnd<tokio::io::DuplexStream>>>;

/// Runs a session with `cfg` over an in-memory pipe; returns the client's end and the task.
fn spawn_session(
    cfg: SessionConfig,
    stop: CancellationToken,
) -> (tokio::io::DuplexStream, SessionTask) {
    let (client, server) = tokio::io::duplex(1 << 20);
    let s = session(server, Arc::new(Recorder::default()), cfg, stop);
    (client, tokio::spawn(s.run(true)))
}

/// Starts a session over an in-memory pipe; returns the client's halves and the task.
fn start_session(
    cfg: SessionConfig,
) -> (
    tokio::io::ReadHalf<tokio::io::DuplexStream>,
    tokio::io::WriteHalf<tokio::io::DuplexStream>,
    SessionTask,
) {
    let (client, task) = spawn_session(cfg, CancellationToken::new());
    let (read, write) = tokio::io::split(client);
    (read, write, task)
}

/// Writes `prefix`, then one byte of `trickle` every `every` (for at most `bytes` bytes),
/// and returns what the server answered until it closed, with the time it closed at
/// (counted from the end of `prefix`).
async fn trickle(
    cfg: SessionConfig,
    prefix: &[u8],
    every: Duration,
    bytes: usize,
) -> (String, Duration) {
    let (mut read, mut write, task) = start_session(cfg);
    write.write_all(prefix).await.unwrap();
    let started = tokio::time::Instant::now();
    let writer = tokio::spawn(async move {
        for _ in 0..bytes {
            tokio::time::sleep(every).await;
            if write.write_all(b"x").await.is_err() {
                break;
            }
        }
        write
    });
    let mut out = Vec::new();
    read.read_to_end(&mut out).await.unwrap();
    let closed = started.elapsed();
    task.await.unwrap().unwrap();
    writer.abort();
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

/// Asserts that the session's last reply is 421 4.4.2 giving `reason`, and that it closed
/// the connection after `secs` (whole seconds, end excluded).
fn assert_cut_off(out: &str, closed: Duration, reason: &str, secs: std::ops::Range<u64>) {
    let last = last_line(out);
    assert!(last.starts_with("421 4.4.2 "), "{out}");
    assert!(last.contains(reason), "{out}");
    assert!(
        closed >= Duration::from_secs(secs.start) && closed < Duration::from_secs(secs.end),
        "closed after {closed:?}, expected within {secs:?} s"
    );
}

#[tokio::test(start_paused = true)]
async fn a_command_line_trickled_a_byte_at_a_time_is_cut_off_at_the_command_timeout() {
    let mut cfg = config();
    cfg.command_timeout = Duration::from_secs(10);
    // One byte every 3 s never leaves the connection idle for 10 s; the limit is 10 s for
    // the whole line.
    let (out, closed) = trickle(cfg, b"EHLO c\r\n", Duration::from_secs(3), 40).await;
    assert_cut_off(&out, closed, "no complete command line within 10s", 10..11);
}

/// The configuration with message data paced by `idle`, `total`, `min_rate` and `grace`.
fn paced(idle: u64, total: u64, min_rate: u64, grace: u64) -> SessionConfig {
    let mut cfg = config();
    cfg.data_pace = PaceLimits {
        idle: Duration::from_secs(idle),
        total: Some(Duration::from_secs(total)),
        min_rate,
        grace: Duration::from_secs(grace),
    };
    cfg
}

/// A transaction up to its message data, begun with `data_verb` (DATA or BDAT ...), then
/// the data one byte every 2 s.
async fn trickle_message_data(cfg: SessionConfig, data_verb: &str) -> (String, Duration) {
    let prefix = format!("EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<{FWD}>\r\n{data_verb}\r\n");
    trickle(cfg, prefix.as_bytes(), Duration::from_secs(2), 400).await
}

#[tokio::test(start_paused = true)]
async fn message_data_slower_than_the_minimum_rate_is_cut_off_after_the_grace() {
    // One byte every 2 s: never idle for 5 s, but 0.5 bytes per second.
    let (out, closed) = trickle_message_data(paced(5, 600, 100, 10), "DATA").await;
    assert_cut_off(&out, closed, "too slow", 10..12);
}

#[tokio::test(start_paused = true)]
async fn message_data_is_cut_off_at_the_total_limit() {
    let (out, closed) = trickle_message_data(paced(5, 20, 0, 0), "DATA").await;
    assert_cut_off(&out, closed, "took longer than 20s", 20..21);
}

#[tokio::test(start_paused = true)]
async fn a_bdat_chunk_trickled_is_cut_off_too() {
    let (out, closed) = trickle_message_data(paced(5, 600, 100, 10), "BDAT 1000 LAST").await;
    assert!(out.contains("421 4.4.2 "), "{out}");
    assert!(closed < Duration::from_secs(12), "closed after {closed:?}");
}

#[tokio::test(start_paused = true)]
async fn an_oversize_message_gives_its_memory_room_back_while_it_is_still_being_read() {
    let mut cfg = config();
    cfg.max_message_size = 100_000;
    cfg.data_budget = postern::smtp::DataBudget::shared(256 * 1024);
    let budget = cfg.data_budget.clone();
    let (mut read, mut write, task) = start_session(cfg);
    // 150 kB without the final dot: the session knows the message is too big and only
    // looks for its end now.
    let head = format!(
        "EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<{FWD}>\r\nDATA\r\nSubject: big\r\n\r\n{}\r\n",
        "y".repeat(150_000)
    );
    write.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        budget.available_bytes(),
        256 * 1024,
        "a message known to be too big holds no room"
    );
    write.write_all(b".\r\nQUIT\r\n").await.unwrap();
    let mut out = Vec::new();
    read.read_to_end(&mut out).await.unwrap();
    task.await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("552 5.3.4"), "{text}");
}

/// A server at `in_use` of 10 connections, busy from 80%, with a 3 s command limit then.
fn busy_config(limits: &postern::net::ConnectionLimits) -> SessionConfig {
    let mut cfg = config();
    cfg.command_timeout = Duration::from_secs(300);
    cfg.busy = Some(postern::smtp::BusyMode {
        connections: limits.clone(),
        percent: 80,
        command_timeout: Duration::from_secs(3),
    });
    cfg
}

fn last_line(out: &str) -> String {
    out.trim_end()
        .lines()
        .last()
        .unwrap_or_default()
        .to_string()
}

/// Issue 19, finding 4: idle connections that fill the server are closed sooner once it is
/// busy (as Postfix's stress mode), also those that were already waiting.
#[tokio::test(start_paused = true)]
async fn a_busy_server_gives_command_lines_the_short_limit_even_to_those_already_waiting() {
    let limits =
        postern::net::ConnectionLimits::new(10, 10, postern::net::PrefixLengths::default());
    let ip: std::net::IpAddr = "192.0.2.1".parse().unwrap();
    // Not busy (7 of 10): an idle client keeps the usual limit.
    let mut held: Vec<_> = (0..7).map(|_| limits.try_acquire(ip).unwrap()).collect();
    let (mut read, mut write, task) = start_session(busy_config(&limits));
    write.write_all(b"EHLO c\r\n").await.unwrap();
    let started = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert!(!task.is_finished(), "not busy: the 5-minute limit applies");
    // The server fills up (8 of 10): the waiting client is closed within the short limit
    // (counted from when it began the line) and a check interval.
    held.push(limits.try_acquire(ip).unwrap());
    let mut out = Vec::new();
    read.read_to_end(&mut out).await.unwrap();
    let closed = started.elapsed();
    task.await.unwrap().unwrap();
    let out = String::from_utf8_lossy(&out).into_owned();
    assert!(last_line(&out).starts_with("421 4.4.2 "), "{out}");
    assert!(last_line(&out).contains("the server is busy"), "{out}");
    assert!(
        closed >= Duration::from_secs(20) && closed <= Duration::from_secs(22),
        "closed {closed:?} after the line began, about as soon as the server became busy"
    );
    drop(write);
    // A client sending EHLO one byte a second, `bytes` of them at most.
    let trickle_ehlo = |bytes| {
        trickle(
            busy_config(&limits),
            b"EHLO c\r\n",
            Duration::from_secs(1),
            bytes,
        )
    };
    // While busy, a trickling client is cut at 3 s.
    let (out, closed) = trickle_ehlo(40).await;
    assert!(last_line(&out).contains("the server is busy"), "{out}");
    assert!(
        closed >= Duration::from_secs(3) && closed < Duration::from_secs(4),
        "{closed:?}"
    );
    // Room again: the usual limit is back.
    held.truncate(5);
    let (out, closed) = trickle_ehlo(10).await;
    assert!(
        closed > Duration::from_secs(10),
        "a client of a server with room is not cut early: {closed:?} {out}"
    );
}
