//! One SMTP session, generic over its byte stream: the protocol runs the same on a TCP
//! socket, a TLS stream or an in-memory pipe in tests.

use super::budget::{DataBudget, Reservation};
use super::command::{self, Command};
use super::data::{count_received_headers, DotReader};
use super::delivery::{Delivery, RecipientVerdict};
use super::reply::Reply;
use crate::domain::{EmailAddress, Envelope};
use crate::net::{ConnectionLimits, Pace, PaceBreach, PaceLimits};
use bytes::{Buf, BytesMut};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const READ_CHUNK: usize = 16 * 1024;

/// The limits and names a session works with (from `[smtp]` in the settings).
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub hostname: String,
    pub max_message_size: usize,
    pub max_recipients: usize,
    pub max_line_length: usize,
    pub max_received_headers: usize,
    pub max_errors: usize,
    /// Time allowed for a whole command line, from when the server is ready for it: bytes
    /// that trickle in do not extend it.
    pub command_timeout: Duration,
    /// Limits on receiving message data (DATA, or one BDAT chunk): the wait for the next
    /// bytes, the whole transfer, and the least average rate after a grace period.
    pub data_pace: PaceLimits,
    /// Message bytes all sessions together may hold in memory.
    pub data_budget: DataBudget,
    /// Shorter command time limits while the server is nearly full; `None`: never.
    pub busy: Option<BusyMode>,
}

/// When the server is busy (`percent` of its connections in use), a command line gets
/// `command_timeout` instead of the usual limit, also on connections that are already
/// waiting: connections that sit idle or trickle bytes make room for senders that wait, as
/// Postfix's stress mode does. Message data keeps its own limits (idle, total, rate).
#[derive(Clone)]
pub struct BusyMode {
    pub connections: ConnectionLimits,
    pub percent: u8,
    pub command_timeout: Duration,
}

impl std::fmt::Debug for BusyMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BusyMode")
            .field("percent", &self.percent)
            .field("command_timeout", &self.command_timeout)
            .finish_non_exhaustive()
    }
}

impl BusyMode {
    fn is_busy(&self) -> bool {
        self.connections.in_use() * 100 >= self.connections.max_total() * usize::from(self.percent)
    }
}

/// How often a session waiting for a command checks whether the server became busy.
const BUSY_CHECK: Duration = Duration::from_secs(1);

/// How a session ended.
#[derive(Debug)]
pub enum SessionEnd<S> {
    /// The connection is finished (QUIT, error, timeout, shutdown or the client left).
    Closed,
    /// The client asked for STARTTLS and got 220: the caller runs the TLS handshake on this
    /// stream and starts a fresh session over it.
    StartTls(S),
}

/// Why reading stopped without a complete line or chunk.
#[derive(Debug)]
enum Interrupt {
    Eof,
    Timeout(Stalled),
    /// No memory room for the message within the data timeout.
    Busy,
    Shutdown,
    Io(std::io::Error),
}

/// Which time limit a client ran into.
#[derive(Debug, Clone, Copy)]
enum Stalled {
    Command(Duration),
    /// The shorter command limit of a busy server.
    BusyCommand(Duration),
    Data(PaceBreach),
}

enum LineRead {
    Line(Vec<u8>),
    TooLong,
}

struct Transaction {
    mail_from: Option<EmailAddress>,
    smtputf8: bool,
    rcpts: Vec<EmailAddress>,
    /// BDAT chunks received so far (RFC 3030), and whether they went over the size limit.
    chunks: Option<(Vec<u8>, bool)>,
    /// Memory room held for those chunks.
    chunk_room: Option<Reservation>,
}

pub struct Session<S, D> {
    stream: S,
    delivery: Arc<D>,
    cfg: Arc<SessionConfig>,
    id: String,
    peer: SocketAddr,
    tls_active: bool,
    starttls_offered: bool,
    shutdown: CancellationToken,
    inbuf: BytesMut,
    out: Vec<u8>,
    helo: Option<String>,
    tx: Option<Transaction>,
    errors: usize,
}

impl<S, D> Session<S, D>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    D: Delivery,
{
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        stream: S,
        delivery: Arc<D>,
        cfg: Arc<SessionConfig>,
        id: String,
        peer: SocketAddr,
        tls_active: bool,
        starttls_offered: bool,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            stream,
            delivery,
            cfg,
            id,
            peer,
            tls_active,
            starttls_offered: starttls_offered && !tls_active,
            shutdown,
            inbuf: BytesMut::with_capacity(READ_CHUNK),
            out: Vec::with_capacity(1024),
            helo: None,
            tx: None,
            errors: 0,
        }
    }

    /// Runs the session. `greet` is false after STARTTLS (the greeting was already given).
    pub async fn run(mut self, greet: bool) -> std::io::Result<SessionEnd<S>> {
        if greet {
            let banner = format!("{} ESMTP Postern", self.cfg.hostname);
            self.reply(Reply::new(220, "", banner));
        }
        let end = self.command_loop().await;
        // Best effort: the peer may already be gone.
        let _ = self.flush().await;
        match end {
            Ok(true) => Ok(SessionEnd::StartTls(self.stream)),
            Ok(false) => {
                let _ = self.stream.shutdown().await;
                Ok(SessionEnd::Closed)
            }
            Err(e) => Err(e),
        }
    }

    /// A refused recipient or message: counted by reason, then answered.
    fn refuse(&mut self, reply: Reply) {
        crate::metrics::message_rejected(reply.rejection_reason());
        self.reply(reply);
    }

    fn reply(&mut self, reply: Reply) {
        if reply.code >= 500 {
            self.errors += 1;
        }
        reply.write_to(&mut self.out);
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await?;
            self.stream.flush().await?;
            self.out.clear();
        }
        Ok(())
    }

    /// Returns Ok(true) to hand the stream over for TLS, Ok(false) when the session is over.
    async fn command_loop(&mut self) -> std::io::Result<bool> {
        loop {
            if self.errors > self.cfg.max_errors {
                self.reply(Reply::new(
                    421,
                    "4.7.0",
                    format!("{} Too many errors, closing connection", self.cfg.hostname),
                ));
                return Ok(false);
            }
            let line = match self.read_line().await {
                Ok(LineRead::Line(line)) => line,
                Ok(LineRead::TooLong) => {
                    self.reply(Reply::new(500, "5.5.2", "Line too long"));
                    continue;
                }
                Err(interrupt) => return self.interrupted(interrupt),
            };
            let cmd = match command::parse(&line) {
                Ok(cmd) => cmd,
                Err(reply) => {
                    self.reply(reply);
                    continue;
                }
            };
            match cmd {
                Command::Ehlo(name) => self.ehlo(name, true),
                Command::Helo(name) => self.ehlo(name, false),
                Command::Mail { path, params } => self.mail(&path, params),
                Command::Rcpt { path } => self.rcpt(&path).await,
                Command::Data => {
                    if let Err(interrupt) = self.data().await {
                        return self.interrupted(interrupt);
                    }
                }
                Command::Bdat { size, last } => {
                    if let Err(interrupt) = self.bdat(size, last).await {
                        return self.interrupted(interrupt);
                    }
                }
                Command::Rset => {
                    self.tx = None;
                    self.reply(Reply::new(250, "2.0.0", "Ok"));
                }
                Command::Noop => self.reply(Reply::new(250, "2.0.0", "Ok")),
                Command::Vrfy => self.reply(Reply::new(
                    252,
                    "2.5.0",
                    "Cannot VRFY user, but will accept message and attempt delivery",
                )),
                Command::Help => self.reply(Reply::new(
                    214,
                    "2.0.0",
                    "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS",
                )),
                Command::Quit => {
                    self.reply(Reply::new(221, "2.0.0", "Bye"));
                    return Ok(false);
                }
                Command::StartTls => {
                    if self.tls_active {
                        self.reply(Reply::new(503, "5.5.1", "TLS already active"));
                    } else if !self.starttls_offered {
                        self.reply(Reply::new(502, "5.5.1", "STARTTLS not available"));
                    } else {
                        self.reply(Reply::new(220, "2.0.0", "Ready to start TLS"));
                        // Anything pipelined after STARTTLS was sent in clear text: drop it,
                        // or it would be executed as if it came over TLS (CVE-2011-0411).
                        self.inbuf.clear();
                        return Ok(true);
                    }
                }
                Command::Foreign => {
                    tracing::warn!("non-SMTP command from client, closing");
                    self.reply(Reply::new(
                        421,
                        "4.7.0",
                        format!("{} This is an SMTP server, closing", self.cfg.hostname),
                    ));
                    return Ok(false);
                }
            }
        }
    }

    fn interrupted(&mut self, interrupt: Interrupt) -> std::io::Result<bool> {
        match interrupt {
            Interrupt::Eof => {
                if self.tx.is_some() {
                    tracing::info!("client disconnected in the middle of a transaction");
                }
                Ok(false)
            }
            Interrupt::Timeout(stalled) => {
                tracing::info!(?stalled, "client too slow, closing session");
                self.reply(timeout_reply(&self.cfg.hostname, stalled));
                Ok(false)
            }
            Interrupt::Busy => {
                tracing::warn!("no memory room for message data in time, closing session");
                self.reply(Reply::new(
                    421,
                    "4.3.2",
                    format!(
                        "{} Too much mail in progress (from your network or in all), closing connection; the message was not accepted, send it again later",
                        self.cfg.hostname
                    ),
                ));
                Ok(false)
            }
            Interrupt::Shutdown => {
                self.reply(Reply::new(
                    421,
                    "4.3.2",
                    format!(
                        "{} Service shutting down, try again later",
                        self.cfg.hostname
                    ),
                ));
                Ok(false)
            }
            Interrupt::Io(e) => Err(e),
        }
    }

    fn ehlo(&mut self, name: String, extended: bool) {
        // EHLO/HELO reset any transaction (RFC 5321 4.1.4).
        self.tx = None;
        self.helo = Some(name);
        if !extended {
            let text = format!("{} Hello", self.cfg.hostname);
            self.reply(Reply::new(250, "", text));
            return;
        }
        let mut lines = vec![
            format!("{} Hello", self.cfg.hostname),
            "PIPELINING".to_string(),
            format!("SIZE {}", self.cfg.max_message_size),
            "8BITMIME".to_string(),
            "SMTPUTF8".to_string(),
            "ENHANCEDSTATUSCODES".to_string(),
            "CHUNKING".to_string(),
        ];
        if self.starttls_offered {
            lines.push("STARTTLS".to_string());
        }
        self.reply(Reply::new(250, "", lines.join("\n")));
    }

    fn mail(&mut self, path: &str, params: command::MailParams) {
        if self.helo.is_none() {
            return self.reply(Reply::new(503, "5.5.1", "Send EHLO or HELO first"));
        }
        if self.tx.is_some() {
            return self.reply(Reply::new(503, "5.5.1", "Nested MAIL command"));
        }
        if params
            .size
            .is_some_and(|s| s > self.cfg.max_message_size as u64)
        {
            return self.reply(Reply::new(
                552,
                "5.3.4",
                format!(
                    "Message too big for system (the limit is {} bytes)",
                    self.cfg.max_message_size
                ),
            ));
        }
        let mail_from = if path.is_empty() {
            None
        } else {
            match EmailAddress::parse_envelope(path, params.smtputf8) {
                Ok(addr) => Some(addr),
                Err(e) => {
                    let (code, esc) = sender_error_code(&e);
                    return self.reply(Reply::new(code, esc, format!("Bad sender address: {e}")));
                }
            }
        };
        self.tx = Some(Transaction {
            mail_from,
            smtputf8: params.smtputf8,
            rcpts: Vec::new(),
            chunks: None,
            chunk_room: None,
        });
        self.reply(Reply::new(250, "2.1.0", "Sender ok"));
    }

    async fn rcpt(&mut self, path: &str) {
        let Some(tx) = self.tx.as_ref() else {
            return self.reply(Reply::new(503, "5.5.1", "Send MAIL first"));
        };
        if tx.chunks.is_some() {
            return self.reply(Reply::new(503, "5.5.1", "RCPT after BDAT"));
        }
        let addr = match EmailAddress::parse_envelope(path, tx.smtputf8) {
            Ok(a) => a,
            Err(e) => {
                let (code, esc) = match e {
                    crate::domain::AddressError::NeedsSmtpUtf8 => (553, "5.6.7"),
                    _ => (501, "5.1.3"),
                };
                return self.refuse(Reply::new(code, esc, format!("Bad recipient address: {e}")));
            }
        };
        if tx.rcpts.iter().any(|r| r.normalized() == addr.normalized()) {
            return self.reply(Reply::new(250, "2.1.5", "Recipient ok (duplicate)"));
        }
        if tx.rcpts.len() >= self.cfg.max_recipients {
            return self.refuse(Reply::new(452, "4.5.3", "Too many recipients"));
        }
        let reply = match self.delivery.check_recipient(&addr).await {
            RecipientVerdict::Accept => {
                if let Some(tx) = self.tx.as_mut() {
                    tx.rcpts.push(addr);
                }
                Reply::new(250, "2.1.5", "Recipient ok")
            }
            RecipientVerdict::UnknownUser => Reply::new(
                550,
                "5.1.1",
                format!("<{addr}>: no such forwarding address here"),
            ),
            RecipientVerdict::RelayDenied => Reply::new(
                550,
                "5.7.1",
                format!(
                    "<{addr}>: relaying denied, this server only accepts mail for its own domain"
                ),
            ),
            RecipientVerdict::TemporaryFailure(why) => {
                tracing::warn!(%why, "recipient lookup failed");
                Reply::new(451, "4.3.0", "Temporary lookup failure, try again later")
            }
        };
        if reply.is_error() {
            self.refuse(reply);
        } else {
            self.reply(reply);
        }
    }

    /// Checks that a message may be sent now; returns the reply to refuse it otherwise.
    fn data_precheck(&self) -> Option<Reply> {
        match &self.tx {
            None => Some(Reply::new(503, "5.5.1", "Send MAIL first")),
            Some(tx) if tx.rcpts.is_empty() => {
                Some(Reply::new(554, "5.5.1", "No valid recipients"))
            }
            Some(_) => None,
        }
    }

    async fn data(&mut self) -> Result<(), Interrupt> {
        if let Some(refusal) = self.data_precheck() {
            self.reply(refusal);
            return Ok(());
        }
        if self.tx.as_ref().is_some_and(|t| t.chunks.is_some()) {
            self.reply(Reply::new(503, "5.5.1", "DATA after BDAT"));
            return Ok(());
        }
        self.reply(Reply::new(354, "", "End data with <CR><LF>.<CR><LF>"));
        let mut reader = DotReader::new(self.cfg.max_message_size);
        let mut message = Vec::with_capacity(READ_CHUNK);
        let mut room = Some(self.cfg.data_budget.reserve(self.peer.ip()));
        let mut pace = Pace::start(self.cfg.data_pace);
        loop {
            if let Some(room) = room.as_mut() {
                // The message grows by at most what is buffered: make room for it first.
                let upcoming = (message.len() + self.inbuf.len()).min(self.cfg.max_message_size);
                self.make_room(room, upcoming, &mut pace).await?;
            }
            let (used, done) = reader.feed(&self.inbuf, &mut message);
            self.inbuf.advance(used);
            if reader.overflowed() && room.is_some() {
                // Too big: from here on the bytes are only scanned for the end of data, so
                // the memory and the room they held go back to other sessions now.
                room = None;
                message = Vec::new();
            }
            if done {
                break;
            }
            let (deadline, breach) = pace.deadline();
            let read = self.fill(deadline, Stalled::Data(breach), false).await?;
            pace.received(read);
        }
        let overflow = reader.overflowed();
        self.finish_message(message, overflow).await;
        drop(room);
        Ok(())
    }

    /// Waits (at most the data timeout) until `room` covers `bytes`. The time waited is
    /// not held against the sender's pace: the server made it wait.
    async fn make_room(
        &mut self,
        room: &mut Reservation,
        bytes: usize,
        pace: &mut Pace,
    ) -> Result<(), Interrupt> {
        if bytes < room.bytes() {
            return Ok(());
        }
        // Pending replies go out before a possible wait.
        self.flush().await.map_err(Interrupt::Io)?;
        let began = Instant::now();
        let covered = tokio::time::timeout(self.cfg.data_pace.idle, room.cover(bytes)).await;
        pace.excuse(began.elapsed());
        covered.map_err(|_| Interrupt::Busy)
    }

    async fn bdat(&mut self, size: u64, last: bool) -> Result<(), Interrupt> {
        let refusal = self.data_precheck();
        let max = self.cfg.max_message_size;
        // The chunk is read in every case, so that its bytes are never taken for commands.
        let mut remaining = size;
        let mut chunk_sink: Option<(Vec<u8>, bool)> = match (&refusal, self.tx.as_mut()) {
            (None, Some(tx)) => Some(tx.chunks.take().unwrap_or_default()),
            _ => None,
        };
        // Room only while the message is kept: none once it is too big (or refused).
        let mut room = match &chunk_sink {
            Some((_, false)) => Some(
                self.tx
                    .as_mut()
                    .and_then(|tx| tx.chunk_room.take())
                    .unwrap_or_else(|| self.cfg.data_budget.reserve(self.peer.ip())),
            ),
            _ => None,
        };
        let mut pace = Pace::start(self.cfg.data_pace);
        while remaining > 0 {
            if self.inbuf.is_empty() {
                let (deadline, breach) = pace.deadline();
                let read = self.fill(deadline, Stalled::Data(breach), false).await?;
                pace.received(read);
            }
            let take = remaining.min(self.inbuf.len() as u64) as usize;
            if let Some((buf, overflow)) = chunk_sink.as_mut() {
                if !*overflow && buf.len() + take <= max {
                    let upcoming = buf.len() + take;
                    if let Some(room) = room.as_mut() {
                        self.make_room(room, upcoming, &mut pace).await?;
                    }
                    if let Some((buf, _)) = chunk_sink.as_mut() {
                        buf.extend_from_slice(&self.inbuf[..take]);
                    }
                } else {
                    // Too big: keep reading to stay in sync, but hold neither the bytes
                    // nor their room.
                    *overflow = true;
                    *buf = Vec::new();
                    room = None;
                }
            }
            self.inbuf.advance(take);
            remaining -= take as u64;
        }
        if let Some(refusal) = refusal {
            self.reply(refusal);
            return Ok(());
        }
        let Some((message, overflow)) = chunk_sink else {
            return Ok(());
        };
        if last {
            self.finish_message(message, overflow).await;
        } else {
            if let Some(tx) = self.tx.as_mut() {
                tx.chunks = Some((message, overflow));
                tx.chunk_room = room;
            }
            self.reply(Reply::new(250, "2.0.0", format!("{size} octets received")));
        }
        Ok(())
    }

    /// End of a message: size and loop checks, then the durable hand-over. The transaction
    /// is over whatever the outcome.
    async fn finish_message(&mut self, message: Vec<u8>, overflow: bool) {
        let Some(tx) = self.tx.take() else {
            return;
        };
        if overflow {
            return self.refuse(Reply::new(
                552,
                "5.3.4",
                format!(
                    "Message too big for system (the limit is {} bytes)",
                    self.cfg.max_message_size
                ),
            ));
        }
        let hops = count_received_headers(&message);
        if hops > self.cfg.max_received_headers {
            tracing::warn!(hops, "mail loop suspected, message refused");
            return self.refuse(Reply::new(
                554,
                "5.4.6",
                format!("Too many hops ({hops} Received headers): mail loop suspected"),
            ));
        }
        let envelope = Envelope {
            session_id: self.id.clone(),
            remote_ip: self.peer.ip(),
            helo: self.helo.clone().unwrap_or_default(),
            mail_from: tx.mail_from.as_ref().map(ToString::to_string),
            rcpt_to: tx.rcpts.iter().map(ToString::to_string).collect(),
            tls: self.tls_active,
            received_at: chrono::Utc::now(),
        };
        let size = message.len();
        // Replies queued so far go out before the commit wait.
        let _ = self.flush().await;
        match self.delivery.deliver(envelope, message).await {
            Ok(accepted) => {
                tracing::info!(queue_id = %accepted.queue_id, size, "message accepted");
                crate::metrics::message_accepted();
                self.reply(Reply::new(
                    250,
                    "2.0.0",
                    format!("Ok: queued as {}", accepted.queue_id),
                ));
            }
            Err(e) => {
                tracing::warn!(error = %e, size, "delivery failed");
                self.refuse(Reply::new(e.code, e.enhanced, e.message));
            }
        }
    }

    /// Reads one command line. Lines end in LF (CRLF expected; a lone LF is tolerated for
    /// commands only, never for the end of data).
    async fn read_line(&mut self) -> Result<LineRead, Interrupt> {
        let max = self.cfg.max_line_length;
        let mut overlong = false;
        // One deadline for the whole line: a byte now and then does not push it back.
        let started = Instant::now();
        loop {
            if let Some(pos) = self.inbuf.iter().position(|&b| b == b'\n') {
                let raw = self.inbuf.split_to(pos + 1);
                if overlong || raw.len() > max {
                    return Ok(LineRead::TooLong);
                }
                let mut line = raw.to_vec();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(LineRead::Line(line));
            }
            if self.inbuf.len() > max {
                // Keep memory bounded: drop the line, remember to report it when it ends.
                overlong = true;
                self.inbuf.clear();
            }
            let (stalled, deadline, wake) = self.command_limit(started);
            match self.fill(wake, stalled, true).await {
                // Not the deadline yet: look again whether the server became busy.
                Err(Interrupt::Timeout(_)) if wake < deadline => {}
                r => {
                    r?;
                }
            }
        }
    }

    /// The time limit of a command line begun at `started`: which limit, its deadline, and
    /// when to wake up to look again (the deadline, or sooner while the server may become
    /// busy).
    fn command_limit(&self, started: Instant) -> (Stalled, Instant, Instant) {
        let usual = self.cfg.command_timeout;
        let Some(busy) = &self.cfg.busy else {
            return (Stalled::Command(usual), started + usual, started + usual);
        };
        if busy.is_busy() {
            let limit = busy.command_timeout.min(usual);
            return (
                Stalled::BusyCommand(limit),
                started + limit,
                started + limit,
            );
        }
        let deadline = started + usual;
        (
            Stalled::Command(usual),
            deadline,
            deadline.min(Instant::now() + BUSY_CHECK),
        )
    }

    /// Sends pending replies, then reads more input before `deadline` (else the client
    /// `stalled`); returns the number of bytes read. While waiting between transactions
    /// the session gives way to shutdown; inside one it does not.
    async fn fill(
        &mut self,
        deadline: Instant,
        stalled: Stalled,
        interruptible: bool,
    ) -> Result<usize, Interrupt> {
        self.flush().await.map_err(Interrupt::Io)?;
        self.inbuf.reserve(READ_CHUNK);
        let can_stop = interruptible && self.tx.is_none();
        let read = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.inbuf));
        let outcome = tokio::select! {
            biased;
            _ = self.shutdown.cancelled(), if can_stop => return Err(Interrupt::Shutdown),
            r = read => r,
        };
        match outcome {
            Err(_) => Err(Interrupt::Timeout(stalled)),
            Ok(Err(e)) => Err(Interrupt::Io(e)),
            Ok(Ok(0)) => Err(Interrupt::Eof),
            Ok(Ok(n)) => Ok(n),
        }
    }
}

/// The 421 for a client that ran into a time limit: what happened, and what to do.
fn timeout_reply(hostname: &str, stalled: Stalled) -> Reply {
    let d = |d: Duration| humantime::format_duration(Duration::from_secs(d.as_secs().max(1)));
    let text = match stalled {
        Stalled::BusyCommand(limit) => format!(
            "{hostname} Timeout: the server is busy and no complete command line came within {}, closing connection; reconnect and send each command in one go",
            d(limit)
        ),
        Stalled::Command(limit) => format!(
            "{hostname} Timeout: no complete command line within {}, closing connection; reconnect and send each command in one go",
            d(limit)
        ),
        Stalled::Data(PaceBreach::Idle(limit)) => format!(
            "{hostname} Timeout: no message data for {}, closing connection; the message was not accepted, send it again",
            d(limit)
        ),
        Stalled::Data(PaceBreach::Total(limit)) => format!(
            "{hostname} Timeout: the message data took longer than {}, closing connection; the message was not accepted, send it again over a faster link",
            d(limit)
        ),
        Stalled::Data(PaceBreach::TooSlow {
            bytes,
            elapsed,
            min_rate,
        }) => format!(
            "{hostname} Timeout: message data too slow ({bytes} bytes in {}, the least is {min_rate} bytes per second), closing connection; the message was not accepted, send it again",
            d(elapsed)
        ),
    };
    Reply::new(421, "4.4.2", text)
}

fn sender_error_code(e: &crate::domain::AddressError) -> (u16, &'static str) {
    match e {
        crate::domain::AddressError::NeedsSmtpUtf8 => (553, "5.6.7"),
        _ => (501, "5.1.7"),
    }
}
