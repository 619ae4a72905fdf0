//! Bytes from a client into the SMTP session state machine (src/smtp/session.rs), with a
//! delivery that stores nothing.
//!
//! Input: the first byte sets the session (bit 0: STARTTLS offered, bit 1: TLS already on)
//! and how the rest is cut into reads; the rest is what the client sends. Each input runs
//! twice, once delivered in one read and once cut into small reads, and both runs must give
//! the same replies and deliver the same messages: a session that answered differently
//! depending on how TCP split the bytes would be open to smuggling and desynchronisation.
//! Also checked: every reply line is `DDD SP|- text CRLF` with D a digit, and no delivered
//! message exceeds the size limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern::domain::{EmailAddress, Envelope};
use postern::net::PaceLimits;
use postern::smtp::{
    Accepted, DataBudget, Delivery, DeliveryError, RecipientVerdict, Session, SessionConfig,
};
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;

const MAX_MESSAGE_SIZE: usize = 4096;

/// The client's side: each read returns (at most) the next piece, then end of stream.
struct Scripted {
    input: VecDeque<Vec<u8>>,
    output: Arc<Mutex<Vec<u8>>>,
}

impl AsyncRead for Scripted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(front) = self.input.front_mut() {
            let n = front.len().min(buf.remaining());
            buf.put_slice(&front[..n]);
            front.drain(..n);
            if front.is_empty() {
                self.input.pop_front();
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Scripted {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.output
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// What reached the delivery: sender, recipients, message.
type Delivered = (Option<String>, Vec<String>, Vec<u8>);

/// Hosts `support*@in.postern.test`; refuses a message whose size is 3 modulo 7 with a 451
/// so that the failure path runs too (deterministic, so both runs agree).
#[derive(Default)]
struct NoStore {
    delivered: Mutex<Vec<Delivered>>,
}

impl Delivery for NoStore {
    async fn check_recipient(&self, r: &EmailAddress) -> RecipientVerdict {
        if !r.domain().eq_ignore_ascii_case("in.postern.test") {
            RecipientVerdict::RelayDenied
        } else if r.normalized().starts_with("support") {
            RecipientVerdict::Accept
        } else {
            RecipientVerdict::UnknownUser
        }
    }

    async fn deliver(
        &self,
        envelope: Envelope,
        message: Vec<u8>,
    ) -> Result<Accepted, DeliveryError> {
        if message.len() % 7 == 3 {
            return Err(DeliveryError::temporary("4.3.0", "storage unavailable"));
        }
        let mut d = self.delivered.lock().unwrap_or_else(|e| e.into_inner());
        d.push((envelope.mail_from, envelope.rcpt_to, message));
        Ok(Accepted {
            queue_id: format!("q{}", d.len()),
        })
    }
}

fn config() -> SessionConfig {
    SessionConfig {
        hostname: "mx.fuzz.test".into(),
        max_message_size: MAX_MESSAGE_SIZE,
        max_recipients: 3,
        max_line_length: 512,
        max_received_headers: 5,
        max_errors: 10,
        command_timeout: Duration::from_secs(300),
        // Time stands still here (a paused clock, a client that never waits): the limits
        // are set as in production but never reached.
        data_pace: PaceLimits {
            idle: Duration::from_secs(300),
            total: Some(Duration::from_secs(600)),
            min_rate: 1024,
            grace: Duration::from_secs(30),
        },
        data_budget: DataBudget::shared(1 << 20),
        busy: None,
    }
}

thread_local! {
    // Paused time: should the session ever wait for a timer, the wait ends at once.
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("tokio runtime");
}

fn converse(
    pieces: Vec<Vec<u8>>,
    starttls_offered: bool,
    tls_active: bool,
) -> (Vec<u8>, Vec<Delivered>) {
    let output = Arc::new(Mutex::new(Vec::new()));
    let stream = Scripted {
        input: pieces.into(),
        output: output.clone(),
    };
    let delivery = Arc::new(NoStore::default());
    let session = Session::new(
        stream,
        delivery.clone(),
        Arc::new(config()),
        "fuzz".into(),
        "192.0.2.7:40000".parse().expect("address"),
        tls_active,
        starttls_offered,
        CancellationToken::new(),
    );
    // An error here is an I/O error of the stream, which never fails.
    let _ = RUNTIME.with(|rt| rt.block_on(session.run(true)));
    let replies = std::mem::take(&mut *output.lock().unwrap_or_else(|e| e.into_inner()));
    let delivered =
        std::mem::take(&mut *delivery.delivered.lock().unwrap_or_else(|e| e.into_inner()));
    (replies, delivered)
}

fn check_replies(replies: &[u8]) {
    assert!(
        replies.is_empty() || replies.ends_with(b"\r\n"),
        "unterminated reply"
    );
    for line in replies.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let line = line
            .strip_suffix(b"\r")
            .unwrap_or_else(|| panic!("bare LF in a reply: {line:?}"));
        assert!(
            line.len() >= 4
                && line[..3].iter().all(u8::is_ascii_digit)
                && (b'2'..=b'5').contains(&line[0])
                && (line[3] == b' ' || line[3] == b'-'),
            "malformed reply line {:?}",
            String::from_utf8_lossy(line)
        );
        assert!(!line.contains(&b'\r'), "CR inside a reply line");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&setup, client)) = data.split_first() else {
        return;
    };
    let client = client.to_vec();
    postern_fuzz::run(move || {
        let starttls_offered = setup & 1 != 0;
        let tls_active = setup & 2 != 0;
        let whole = converse(vec![client.clone()], starttls_offered, tls_active);
        let cut = converse(
            postern_fuzz::pieces(&client, setup >> 2, 40),
            starttls_offered,
            tls_active,
        );
        check_replies(&whole.0);
        for (_, _, message) in &whole.1 {
            assert!(
                message.len() <= MAX_MESSAGE_SIZE,
                "message over the size limit delivered"
            );
        }
        assert!(
            whole.0 == cut.0,
            "replies depend on how the input was cut:\none read:\n{}\nsmall reads:\n{}",
            String::from_utf8_lossy(&whole.0),
            String::from_utf8_lossy(&cut.0)
        );
        assert!(
            whole.1 == cut.1,
            "deliveries depend on how the input was cut"
        );
    });
});
