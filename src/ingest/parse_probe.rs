//! Messages that could hold attached messages are parsed first in a child process (`postern
//! parse-probe`), so that a parser fault the limits do not foresee (a stack overflow, an abort,
//! a loop) kills the child, not the server: the message is then quarantined as
//! `parser_crashed` and the child replaced.
//!
//! Only a message with a Content-Type line that names `message` or `digest` can make the
//! parser build nested messages (every nested level, encoded or not, starts with such a
//! header in the clear): the tree of any other message has no nesting at all, and it is
//! parsed in the server as before. So the probe costs nothing for most mail and one extra
//! parse (of bytes already in memory) for bounces and attached forwards. The probe runs the
//! same code on a smaller stack than the server's parsing threads: what it survives, the
//! server survives.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The probe's parsing thread: a quarter of the server's (see [`super::PARSE_THREAD_STACK`]).
const PROBE_STACK: usize = 2 * 1024 * 1024;

/// Children kept waiting for work.
const MAX_IDLE_CHILDREN: usize = 4;

/// Children working at once; more messages to probe wait for one (a flood of forwards must
/// not fork a process per connection).
const MAX_BUSY_CHILDREN: usize = 8;

/// The probe of this process, when it has one (`postern serve` and `postern import` install it).
static PROBE: OnceLock<ParseProbe> = OnceLock::new();

/// Installs the probe for every later parse of this process (the first call wins).
pub fn install(probe: ParseProbe) {
    let _ = PROBE.set(probe);
}

pub(super) fn installed() -> Option<&'static ParseProbe> {
    PROBE.get()
}

/// Whether `raw` has a Content-Type field (or a continuation of one) that names `message`
/// or `digest`, in any case: the only messages whose parsed tree can nest.
///
/// Every message of an import and of live mail passes here, so only header blocks are read:
/// the message's own, and the one after each line that starts with `--` (where a MIME part
/// begins); the rest of the body is skipped with a vectorised search for `--`.
pub fn may_nest(raw: &[u8]) -> bool {
    let (nests, mut at) = header_block_may_nest(raw, 0);
    if nests {
        return true;
    }
    while let Some(found) = memchr::memmem::find(&raw[at..], b"--") {
        let dashes = at + found;
        at = dashes + 2;
        let line_start = dashes == 0 || matches!(raw[dashes - 1], b'\n' | b'\r');
        if !line_start {
            continue;
        }
        // The part's header block starts on the line after the boundary.
        let Some(eol) = memchr::memchr2(b'\n', b'\r', &raw[dashes..]) else {
            return false;
        };
        let (nests, end) = header_block_may_nest(raw, dashes + eol);
        if nests {
            return true;
        }
        at = end.max(at);
    }
    false
}

/// Reads the header block that starts at `start` (up to its empty line): whether one of its
/// Content-Type fields names `message` or `digest`, and where the block ends. CR and LF both
/// end a line here, and empty pieces between a CR and its LF are skipped: a header the parser
/// might split differently is looked at either way (too many probes cost little).
fn header_block_may_nest(raw: &[u8], start: usize) -> (bool, usize) {
    let mut in_content_type = false;
    let mut line_start = start;
    let mut previous_end: Option<u8> = None;
    let ends = memchr::memchr2_iter(b'\n', b'\r', &raw[start..])
        .map(|i| start + i)
        .chain(std::iter::once(raw.len()));
    for end in ends {
        let line = &raw[line_start..end];
        let terminator = raw.get(end).copied();
        line_start = end + 1;
        let Some(&first) = line.first() else {
            // CR then LF is one line end; any other empty line ends the block.
            let crlf = previous_end == Some(b'\r') && terminator == Some(b'\n');
            previous_end = terminator;
            if crlf || end == start {
                continue;
            }
            return (false, end);
        };
        previous_end = terminator;
        if !matches!(first, b' ' | b'\t') {
            in_content_type =
                matches!(first, b'c' | b'C') && starts_with_ignore_case(line, b"content-type");
        }
        if in_content_type
            && (contains_ignore_case(line, b"message") || contains_ignore_case(line, b"digest"))
        {
            return (true, end);
        }
    }
    (false, raw.len())
}

fn starts_with_ignore_case(line: &[u8], prefix: &[u8]) -> bool {
    line.len() >= prefix.len() && line[..prefix.len()].eq_ignore_ascii_case(prefix)
}

fn contains_ignore_case(line: &[u8], needle: &[u8]) -> bool {
    line.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// Why the probe did not vouch for a message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProbeFailure {
    #[error(
        "the MIME parser crashed on this message (in an isolated process; the server is unharmed)"
    )]
    Crashed,
    #[error("the MIME parser panicked on this message")]
    Panicked,
    #[error("the MIME parser took longer than {0:?} on this message and was stopped")]
    TooSlow(Duration),
    #[error("the parse probe could not be started ({0})")]
    Unavailable(String),
}

struct ProbeChild {
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
}

impl Drop for ProbeChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A pool of `postern parse-probe` children.
pub struct ParseProbe {
    program: PathBuf,
    time_limit: Duration,
    idle: Mutex<Vec<ProbeChild>>,
    busy: Mutex<usize>,
    freed: Condvar,
}

impl ParseProbe {
    /// `program` is the postern binary (the server's own, `std::env::current_exe()`).
    pub fn new(program: PathBuf, time_limit: Duration) -> Self {
        Self {
            program,
            time_limit,
            idle: Mutex::new(Vec::new()),
            busy: Mutex::new(0),
            freed: Condvar::new(),
        }
    }

    fn spawn(&self) -> Result<ProbeChild, ProbeFailure> {
        let mut child = Command::new(&self.program)
            .arg("parse-probe")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| ProbeFailure::Unavailable(e.to_string()))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            return Err(ProbeFailure::Unavailable("no pipes to the child".into()));
        };
        Ok(ProbeChild {
            child,
            stdin,
            stdout,
        })
    }

    /// Parses `raw` in a child; Ok when the child came through. Blocking: call it off the
    /// async workers.
    pub fn check(
        &self,
        raw: &[u8],
        envelope_sender: Option<&str>,
        inbound_domain: &str,
    ) -> Result<(), ProbeFailure> {
        let _turn = self.turn();
        let taken = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let mut child = match taken {
            Some(c) => c,
            None => self.spawn()?,
        };
        let outcome = exchange(
            &mut child,
            raw,
            envelope_sender,
            inbound_domain,
            self.time_limit,
        );
        match outcome {
            Ok(answer) => {
                if let Ok(mut idle) = self.idle.lock() {
                    if idle.len() < MAX_IDLE_CHILDREN {
                        idle.push(child);
                    }
                }
                match answer {
                    ANSWER_PARSED => Ok(()),
                    _ => Err(ProbeFailure::Panicked),
                }
            }
            // The child is dropped (killed) with its failure.
            Err(failure) => Err(failure),
        }
    }
}

/// Environment variable of the probe's fault injection (see [`serve_probe`]).
pub const FAULT_ABORT_ON: &str = "POSTERN_FAULT_PROBE_ABORT_ON";

/// One of the [`MAX_BUSY_CHILDREN`] places; given back when dropped.
struct Turn<'a>(&'a ParseProbe);

impl ParseProbe {
    fn turn(&self) -> Turn<'_> {
        if let Ok(mut busy) = self.busy.lock() {
            while *busy >= MAX_BUSY_CHILDREN {
                match self.freed.wait(busy) {
                    Ok(b) => busy = b,
                    Err(_) => return Turn(self),
                }
            }
            *busy += 1;
        }
        Turn(self)
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        if let Ok(mut busy) = self.0.busy.lock() {
            *busy = busy.saturating_sub(1);
        }
        self.0.freed.notify_one();
    }
}

const ANSWER_PARSED: u8 = 1;
const ANSWER_PANICKED: u8 = 2;
/// Stands for "no envelope sender" in the length field.
const NONE: u32 = u32::MAX;

fn exchange(
    child: &mut ProbeChild,
    raw: &[u8],
    envelope_sender: Option<&str>,
    inbound_domain: &str,
    time_limit: Duration,
) -> Result<u8, ProbeFailure> {
    let mut request = Vec::with_capacity(raw.len() + 64);
    put(&mut request, Some(inbound_domain.as_bytes()));
    put(&mut request, envelope_sender.map(str::as_bytes));
    put(&mut request, Some(raw));
    // A child that died while idle fails the write: replaced once, then it counts.
    if child
        .stdin
        .write_all(&request)
        .and_then(|_| child.stdin.flush())
        .is_err()
    {
        return Err(ProbeFailure::Crashed);
    }
    let deadline = Instant::now() + time_limit;
    if !wait_readable(&child.stdout, deadline) {
        return Err(ProbeFailure::TooSlow(time_limit));
    }
    let mut answer = [0u8; 1];
    match child.stdout.read(&mut answer) {
        Ok(1) => Ok(answer[0]),
        _ => Err(ProbeFailure::Crashed),
    }
}

fn put(buf: &mut Vec<u8>, field: Option<&[u8]>) {
    match field {
        Some(bytes) => {
            let len = u32::try_from(bytes.len()).unwrap_or(NONE - 1);
            buf.extend_from_slice(&len.to_be_bytes());
            buf.extend_from_slice(&bytes[..len as usize]);
        }
        None => buf.extend_from_slice(&NONE.to_be_bytes()),
    }
}

/// Waits until `stdout` has something to read (or was closed) before `deadline`.
fn wait_readable(stdout: &ChildStdout, deadline: Instant) -> bool {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let mut fd = libc::pollfd {
            fd: stdout.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = i32::try_from(left.as_millis().max(1)).unwrap_or(i32::MAX);
        // SAFETY: one valid pollfd, owned by this frame, for the length given.
        let n = unsafe { libc::poll(&mut fd, 1, ms) };
        if n > 0 {
            return true;
        }
        if n < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return true; // let the read say what is wrong
        }
    }
}

fn get(input: &mut impl Read) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    input.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len);
    if len == NONE {
        return Ok(None);
    }
    let mut bytes = vec![0u8; len as usize];
    input.read_exact(&mut bytes)?;
    Ok(Some(bytes))
}

/// The child's side (`postern parse-probe`): parses each message it is sent on a small
/// stack and answers one byte, until its input ends.
pub fn serve_probe(mut input: impl Read, mut output: impl Write) -> std::io::Result<()> {
    // Fault injection for the tests of this isolation (tests/it/ingest/hostile_input.rs): a message
    // holding this text aborts the probe as a parser crash would. Only whoever starts the
    // server sets its environment.
    let abort_marker = std::env::var(FAULT_ABORT_ON).ok().filter(|m| !m.is_empty());
    loop {
        let domain = match get(&mut input) {
            Ok(d) => d.unwrap_or_default(),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        };
        let sender = get(&mut input)?;
        let raw = get(&mut input)?.unwrap_or_default();
        if let Some(marker) = &abort_marker {
            if contains_ignore_case(&raw, marker.as_bytes()) {
                std::process::abort();
            }
        }
        let parsed = std::thread::Builder::new()
            .name("postern-parse-probe".into())
            .stack_size(PROBE_STACK)
            .spawn(move || {
                let domain = String::from_utf8_lossy(&domain).into_owned();
                let sender = sender.map(|s| String::from_utf8_lossy(&s).into_owned());
                let context = super::classify::ClassifyContext::new(&domain);
                // Parsed and dropped, exactly as the server would.
                drop(super::parse::parse_unprobed(
                    &raw,
                    sender.as_deref(),
                    Some(&context),
                ));
            })?
            .join();
        let answer = if parsed.is_ok() {
            ANSWER_PARSED
        } else {
            ANSWER_PANICKED
        };
        output.write_all(&[answer])?;
        output.flush()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_content_types_naming_message_or_digest_may_nest() {
        let cases: [(&[u8], bool); 15] = [
            (b"From: a@b.c\r\nMessage-ID: <x@y>\r\n\r\nYour message was received.\r\n", false),
            (b"Content-Type: text/plain\r\n\r\nmessage/rfc822 in a body\r\n", false),
            (b"Content-Type: message/rfc822\r\n\r\n", true),
            (b"content-type:MESSAGE/global\r\n\r\n", true),
            (b"Content-Type: multipart/mixed;\r\n boundary=x\r\n\r\n--x\r\nContent-Type:\r\n\tmessage/rfc822\r\n", true),
            (b"Content-Type: multipart/Digest; boundary=x\r\n\r\n", true),
            (b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nhi\r\n--x--\r\n", false),
            (b"X-Note: digest\r\nContent-Type: text/plain\r\n\r\n", false),
            (b"Subject: hi\nContent-Type: message/rfc822", true),
            (b"Content-Type: text/plain\n\tx\nX: message\n Content-Type: message\n", false),
            // A Content-Type line in a body that is not a part's header is text.
            (b"Content-Type: text/plain\r\n\r\nContent-Type: message/rfc822\r\n", false),
            (b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nX-A: 1\r\nCoNtEnT-TyPe: MeSsAgE/rfc822\r\n\r\n", true),
            // Bare CRs end lines too, boundaries included.
            (b"Content-Type: multipart/mixed; boundary=x\r\rbody\r--x\rContent-Type: message/rfc822\r\r", true),
            // A part's header ends at its empty line; a signature's `-- ` is read as one.
            (b"Subject: s\n\n--x\nContent-Type: text/plain\n\nContent-Type: message/rfc822\n", false),
            (b"Subject: s\n\nhi\n-- \nContent-Type: message/rfc822\n", true),
        ];
        for (raw, expected) in cases {
            assert_eq!(may_nest(raw), expected, "{}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn a_probe_that_cannot_start_says_so() {
        let probe = ParseProbe::new("/nonexistent/postern".into(), Duration::from_secs(1));
        assert!(matches!(
            probe.check(b"Content-Type: message/rfc822\r\n\r\n", None, "in.test"),
            Err(ProbeFailure::Unavailable(_))
        ));
    }

    #[test]
    fn the_probe_protocol_round_trips() {
        let mut request = Vec::new();
        for raw in [
            &b"Content-Type: message/rfc822\r\n\r\nFrom: a@b.c\r\n\r\nx\r\n"[..],
            b"x",
        ] {
            put(&mut request, Some(b"in.test"));
            put(&mut request, None);
            put(&mut request, Some(raw));
        }
        let mut answers = Vec::new();
        serve_probe(&request[..], &mut answers).unwrap();
        assert_eq!(answers, vec![ANSWER_PARSED, ANSWER_PARSED]);
    }
}
