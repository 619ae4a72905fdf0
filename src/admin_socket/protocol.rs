//! The admin socket's wire format, version 1.
//!
//! Request: one JSON line, `{"v":1,"argv":["postern","account","list"],"cwd":"/abs",
//! "stdin":null}`, at most [`MAX_REQUEST`] bytes with its newline.
//! Answer: one JSON line `{"v":1,"status":0,"stderr":"...","stdout_len":N}`, then exactly N
//! bytes of the command's standard output, as they are (`postern message raw` writes a
//! message's raw bytes, which need not be UTF-8).
//!
//! A peer that speaks another version gets an answer saying so; the version moves when
//! either line changes shape.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub const VERSION: u32 = 1;
/// The largest request the server reads: the command line and the standard input sent
/// with it.
pub const MAX_REQUEST: usize = 1024 * 1024;
/// The largest answer header a client reads (the header holds stderr, a few lines).
const MAX_ANSWER_HEAD: usize = 1024 * 1024;

/// A command line to run in the server, as its client would have run it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub v: u32,
    /// The whole command line, the program's name first (as `std::env::args` gives it).
    pub argv: Vec<String>,
    /// The client's working directory (absolute): relative paths are relative to it.
    pub cwd: String,
    /// The client's standard input, when the command reads it.
    #[serde(default)]
    pub stdin: Option<String>,
}

/// What the command did: its exit status and its output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Answer {
    /// A command that did not run: exit status 1 and `message` on stderr.
    pub fn refused(message: impl std::fmt::Display) -> Self {
        Self {
            status: 1,
            stdout: Vec::new(),
            stderr: format!("postern: {message}\n"),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct AnswerHead {
    v: u32,
    status: i32,
    stderr: String,
    stdout_len: u64,
}

/// Just the version, read before the rest so that another version's shape is recognised.
#[derive(Deserialize)]
struct Versioned {
    v: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("the request is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the connection ended before a whole {what} arrived")]
    Truncated { what: &'static str },
    #[error(
        "the peer speaks admin protocol version {got}, this postern version {VERSION}: use \
         the same postern binary for the command line and `postern serve`"
    )]
    Version { got: u32 },
    #[error("malformed {what}: {source}")]
    Json {
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The request as sent: one line.
pub fn encode_request(request: &Request) -> Vec<u8> {
    // A struct of strings always serialises.
    let mut line = serde_json::to_vec(request).unwrap_or_default();
    line.push(b'\n');
    line
}

/// One line of at most `limit` bytes (with its newline), without the newline.
async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    limit: usize,
    what: &'static str,
) -> Result<Vec<u8>, ProtocolError> {
    let mut line = Vec::new();
    reader
        .take(limit as u64)
        .read_until(b'\n', &mut line)
        .await?;
    if line.last() != Some(&b'\n') {
        return Err(if line.len() >= limit {
            ProtocolError::TooLarge { limit }
        } else {
            ProtocolError::Truncated { what }
        });
    }
    line.pop();
    Ok(line)
}

fn parse<T: serde::de::DeserializeOwned>(
    line: &[u8],
    what: &'static str,
) -> Result<T, ProtocolError> {
    let versioned: Versioned =
        serde_json::from_slice(line).map_err(|source| ProtocolError::Json { what, source })?;
    if versioned.v != VERSION {
        return Err(ProtocolError::Version { got: versioned.v });
    }
    serde_json::from_slice(line).map_err(|source| ProtocolError::Json { what, source })
}

/// The server's side: one request of at most `limit` bytes.
pub async fn read_request<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    limit: usize,
) -> Result<Request, ProtocolError> {
    let line = read_line(reader, limit, "request").await?;
    parse(&line, "request")
}

pub async fn write_answer<W: AsyncWrite + Unpin>(
    writer: &mut W,
    answer: &Answer,
) -> std::io::Result<()> {
    let head = AnswerHead {
        v: VERSION,
        status: answer.status,
        stderr: answer.stderr.clone(),
        stdout_len: answer.stdout.len() as u64,
    };
    let mut line = serde_json::to_vec(&head).map_err(std::io::Error::other)?;
    line.push(b'\n');
    writer.write_all(&line).await?;
    writer.write_all(&answer.stdout).await?;
    writer.flush().await
}

/// The client's side: the server's answer.
pub async fn read_answer<R: AsyncBufRead + Unpin>(reader: &mut R) -> Result<Answer, ProtocolError> {
    let line = read_line(reader, MAX_ANSWER_HEAD, "answer").await?;
    let head: AnswerHead = parse(&line, "answer")?;
    let mut stdout = Vec::new();
    reader
        .take(head.stdout_len)
        .read_to_end(&mut stdout)
        .await?;
    if stdout.len() as u64 != head.stdout_len {
        return Err(ProtocolError::Truncated { what: "answer" });
    }
    Ok(Answer {
        status: head.status,
        stdout,
        stderr: head.stderr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Request {
        Request {
            v: VERSION,
            argv: vec![
                "postern".into(),
                "reply".into(),
                "--body-file".into(),
                "-".into(),
            ],
            cwd: "/home/ana".into(),
            stdin: Some("Hello,\nyour parcel left today.\n".into()),
        }
    }

    #[tokio::test]
    async fn a_request_travels_as_one_line() {
        let line = encode_request(&request());
        assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
        let mut reader = &line[..];
        assert_eq!(
            read_request(&mut reader, MAX_REQUEST).await.expect("read"),
            request()
        );
    }

    #[tokio::test]
    async fn stdin_is_optional() {
        let line = b"{\"v\":1,\"argv\":[\"postern\",\"account\",\"list\"],\"cwd\":\"/\"}\n";
        let got = read_request(&mut &line[..], MAX_REQUEST)
            .await
            .expect("read");
        assert_eq!(got.stdin, None);
        assert_eq!(got.argv, ["postern", "account", "list"]);
    }

    #[tokio::test]
    async fn a_request_over_the_limit_is_refused_without_reading_it_all() {
        let mut big = request();
        big.stdin = Some("x".repeat(200));
        let line = encode_request(&big);
        let err = read_request(&mut &line[..], 100)
            .await
            .expect_err("too large");
        assert!(
            matches!(err, ProtocolError::TooLarge { limit: 100 }),
            "{err}"
        );
        // Exactly at the limit (newline included) is fine.
        let limit = line.len();
        assert!(read_request(&mut &line[..], limit).await.is_ok());
        assert!(read_request(&mut &line[..], limit - 1).await.is_err());
    }

    #[tokio::test]
    async fn a_cut_request_another_version_and_garbage_say_what_they_are() {
        let line = encode_request(&request());
        let cut = &line[..line.len() - 1];
        assert!(matches!(
            read_request(&mut &cut[..], MAX_REQUEST).await,
            Err(ProtocolError::Truncated { what: "request" })
        ));
        let v2 = b"{\"v\":2,\"command\":\"whatever\"}\n";
        let err = read_request(&mut &v2[..], MAX_REQUEST)
            .await
            .expect_err("v2");
        assert!(matches!(err, ProtocolError::Version { got: 2 }));
        assert!(err.to_string().contains("same postern binary"), "{err}");
        let garbage = b"GET / HTTP/1.1\n";
        assert!(matches!(
            read_request(&mut &garbage[..], MAX_REQUEST).await,
            Err(ProtocolError::Json { .. })
        ));
    }

    #[tokio::test]
    async fn an_answer_carries_raw_bytes_as_they_are() {
        let answer = Answer {
            status: 0,
            // Not UTF-8, with newlines and what looks like another header line.
            stdout: b"Subject: x\r\n\r\n\xff\xfe\n{\"v\":1}\n".to_vec(),
            stderr: "postern: note: outbound.enabled is false\n".into(),
        };
        let mut wire = Vec::new();
        write_answer(&mut wire, &answer).await.expect("write");
        let mut reader = &wire[..];
        assert_eq!(read_answer(&mut reader).await.expect("read"), answer);
        assert!(reader.is_empty(), "nothing left over");

        let cut = &wire[..wire.len() - 3];
        assert!(matches!(
            read_answer(&mut &cut[..]).await,
            Err(ProtocolError::Truncated { what: "answer" })
        ));
    }

    #[test]
    fn a_refusal_is_exit_status_1_with_one_line() {
        let a = Answer::refused("too busy");
        assert_eq!(a.status, 1);
        assert_eq!(a.stderr, "postern: too busy\n");
        assert!(a.stdout.is_empty());
    }
}
