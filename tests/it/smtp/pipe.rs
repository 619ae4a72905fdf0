//! The SMTP session over an in-memory pipe, with a recording delivery: what the session
//! tests and the dialog files run against.

use postern::domain::{EmailAddress, Envelope};
use postern::smtp::{Accepted, Delivery, DeliveryError, RecipientVerdict, Session, SessionConfig};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

pub const FWD: &str = "support-abc@in.postern.test";

#[derive(Default)]
pub struct Recorder {
    pub delivered: Mutex<Vec<(Envelope, Vec<u8>)>>,
    pub fail_next: Mutex<Option<DeliveryError>>,
}

impl Delivery for Recorder {
    async fn check_recipient(&self, r: &EmailAddress) -> RecipientVerdict {
        if !r.domain().eq_ignore_ascii_case("in.postern.test") {
            RecipientVerdict::RelayDenied
        } else if r.normalized() == FWD {
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
        if let Some(e) = self.fail_next.lock().unwrap().take() {
            return Err(e);
        }
        let mut d = self.delivered.lock().unwrap();
        d.push((envelope, message));
        Ok(Accepted {
            queue_id: format!("m{}", d.len()),
        })
    }
}

pub use crate::common::session_config::session_config as config;

pub fn peer() -> SocketAddr {
    "192.0.2.7:40000".parse().unwrap()
}

/// A session over `stream` from a fixed client address, without TLS.
pub fn session<S>(
    stream: S,
    delivery: Arc<Recorder>,
    cfg: impl Into<Arc<SessionConfig>>,
    stop: CancellationToken,
) -> Session<S, Recorder>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    session_with_tls(stream, delivery, cfg, false, false, stop)
}

/// As [`session`]: `tls_active` when `stream` is inside TLS already, `starttls_offered`
/// when EHLO offers STARTTLS.
pub fn session_with_tls<S>(
    stream: S,
    delivery: Arc<Recorder>,
    cfg: impl Into<Arc<SessionConfig>>,
    tls_active: bool,
    starttls_offered: bool,
    stop: CancellationToken,
) -> Session<S, Recorder>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    Session::new(
        stream,
        delivery,
        cfg.into(),
        "t".into(),
        peer(),
        tls_active,
        starttls_offered,
        stop,
    )
}

/// Sends `input` in one write (as a pipelining client may), closes, returns all replies.
pub async fn converse_with(
    cfg: SessionConfig,
    delivery: Arc<Recorder>,
    input: &[u8],
) -> Vec<String> {
    let (mut client, server) = tokio::io::duplex(1 << 20);
    let task = tokio::spawn(session(server, delivery, cfg, CancellationToken::new()).run(true));
    client.write_all(input).await.unwrap();
    client.shutdown().await.unwrap();
    let mut out = Vec::new();
    client.read_to_end(&mut out).await.unwrap();
    let _ = task.await.unwrap();
    String::from_utf8_lossy(&out)
        .split("\r\n")
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

pub async fn converse(input: &[u8]) -> (Vec<String>, Arc<Recorder>) {
    let d = Arc::new(Recorder::default());
    let r = converse_with(config(), d.clone(), input).await;
    (r, d)
}

/// Final reply lines only (continuation lines of multi-line replies dropped).
pub fn finals(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l.as_bytes().get(3) != Some(&b'-'))
        .cloned()
        .collect()
}

pub fn tx(body: &str) -> String {
    format!("MAIL FROM:<a@b.example>\r\nRCPT TO:<{FWD}>\r\nDATA\r\n{body}.\r\n")
}
