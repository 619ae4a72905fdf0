//! What every import source yields: one raw message with its stable position, a description
//! for quarantine, its best-known date and the flags the old mailbox had; and the errors.

use super::decompress_limit::{DecompressLimits, LimitExceeded};
use chrono::{DateTime, Utc};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// The per-message size cap when the caller sets none (50 MiB, the size of a big attachment
/// mail; a larger one is yielded as [`Content::Oversized`], never dropped).
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 50 * 1024 * 1024;

/// Most bytes a compressed mailbox may decompress to when the caller sets no limit (16 GiB:
/// two years of a busy support mailbox, 300 messages a day of 70 KB on average, is 15 GB).
pub const DEFAULT_MAX_DECOMPRESSED_SIZE: u64 = 16 * 1024 * 1024 * 1024;

/// Most decompressed bytes per compressed byte (mail compresses 3 to 10 times, a gzip bomb
/// several hundred).
pub const DEFAULT_MAX_COMPRESSION_RATIO: u64 = 100;

/// Most bytes of messages an import's staging copy may hold when the caller sets no limit.
pub const DEFAULT_MAX_STAGED_SIZE: u64 = 16 * 1024 * 1024 * 1024;

/// How much of an oversized message is kept so quarantine can show its headers.
pub const OVERSIZED_HEAD: usize = 64 * 1024;

/// One item of a source.
pub type SourceItem = Result<SourceMessage, SourceError>;

/// A source of raw messages: a blocking iterator, run by the pipeline on its own thread.
/// After an `Err`, a source yields nothing more (a resumable failure says where it stopped).
pub trait MessageSource: Iterator<Item = SourceItem> + Send {
    /// Human description of the whole source, e.g. `mbox /srv/old.mbox`.
    fn description(&self) -> String;
}

/// The item for one read of a source (`Ok(None)`: nothing more), setting `ended` after the
/// last message or the first error, so that the source yields nothing after them.
pub(crate) fn item_of_read(
    ended: &mut bool,
    read: Result<Option<SourceMessage>, SourceError>,
) -> Option<SourceItem> {
    let item = read.transpose();
    if !matches!(item, Some(Ok(_))) {
        *ended = true;
    }
    item
}

/// One message as read from a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceMessage {
    /// Where the message is; stored by the pipeline as its checkpoint (`to_string()` /
    /// `parse()` round-trip) and given back to resume strictly after it.
    pub position: Position,
    /// Where a human finds it again, for quarantine: `old.mbox at byte 1234`, `INBOX UID 42`.
    pub origin: String,
    pub content: Content,
    /// The message's Date header, or the source's own date when that is missing or unreadable.
    pub date: Option<DateTime<Utc>>,
    pub date_source: DateSource,
    /// Flags the old mailbox had (informational), when the source keeps any.
    pub flags: Option<MessageFlags>,
    /// Maildir or IMAP folder (`INBOX`, `Sent`, `Archive/2023`); `None` for mbox and eml.
    pub folder: Option<String>,
    /// The source ended inside this message (a cut mbox, a short Content-Length): the bytes
    /// are what there was.
    pub truncated: bool,
    /// The envelope sender the old mailbox recorded (an mbox `From ` line), when it is an
    /// address: the sender of last resort for a message without From.
    pub envelope_sender: Option<String>,
}

impl SourceMessage {
    /// The complete raw bytes, or `None` when the message was over the size cap.
    pub fn raw(&self) -> Option<&[u8]> {
        match &self.content {
            Content::Complete(raw) => Some(raw),
            Content::Oversized { .. } => None,
        }
    }
}

/// The bytes of a message.
#[derive(Clone, PartialEq, Eq)]
pub enum Content {
    Complete(Vec<u8>),
    /// Over the size cap: `size` is its real size in bytes, `head` at most the first
    /// [`OVERSIZED_HEAD`] bytes (empty for IMAP, which fetches no body for it).
    Oversized {
        size: u64,
        head: Vec<u8>,
    },
}

impl fmt::Debug for Content {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Content::Complete(raw) => write!(f, "Complete({} bytes)", raw.len()),
            Content::Oversized { size, head } => {
                write!(f, "Oversized({size} bytes, {} kept)", head.len())
            }
        }
    }
}

/// Where [`SourceMessage::date`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateSource {
    Header,
    MboxFromLine,
    FileModified,
    ImapInternalDate,
    Unknown,
}

/// Flags of the old mailbox: Maildir letters, IMAP system flags, mbox Status/X-Status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MessageFlags {
    pub seen: bool,
    pub answered: bool,
    pub flagged: bool,
    pub draft: bool,
    pub deleted: bool,
    pub forwarded: bool,
}

/// A stable place in a source.
///
/// Text form (for checkpoints): `mbox:OFFSET`, `path:RELATIVE/PATH`,
/// `imap:UIDVALIDITY:UID:FOLDER`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Position {
    /// Byte offset of the message's `From ` line (in the decompressed stream for `.gz`).
    Mbox { offset: u64 },
    /// Path of the file relative to the Maildir or eml folder given.
    File { path: PathBuf },
    /// UID of the message in an IMAP folder, valid while the folder keeps its UIDVALIDITY.
    Imap {
        folder: String,
        uid_validity: u32,
        uid: u32,
    },
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Mbox { offset } => write!(f, "mbox:{offset}"),
            Position::File { path } => write!(f, "path:{}", path.display()),
            Position::Imap {
                folder,
                uid_validity,
                uid,
            } => write!(f, "imap:{uid_validity}:{uid}:{folder}"),
        }
    }
}

impl FromStr for Position {
    type Err = SourceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || SourceError::BadCheckpoint {
            checkpoint: s.to_string(),
            reason: "expected mbox:OFFSET, path:PATH or imap:UIDVALIDITY:UID:FOLDER".into(),
        };
        let (kind, rest) = s.split_once(':').ok_or_else(bad)?;
        match kind {
            "mbox" => Ok(Position::Mbox {
                offset: rest.parse().map_err(|_| bad())?,
            }),
            "path" if !rest.is_empty() => Ok(Position::File {
                path: PathBuf::from(rest),
            }),
            "imap" => {
                let mut parts = rest.splitn(3, ':');
                let uid_validity = parts.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
                let uid = parts.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
                let folder = parts.next().filter(|f| !f.is_empty()).ok_or_else(bad)?;
                Ok(Position::Imap {
                    folder: folder.to_string(),
                    uid_validity,
                    uid,
                })
            }
            _ => Err(bad()),
        }
    }
}

/// Options common to the file sources.
#[derive(Debug, Clone)]
pub struct FileSourceOptions {
    /// Messages larger than this are yielded as [`Content::Oversized`].
    pub max_message_size: u64,
    /// Resume strictly after this position (a checkpoint of the same kind of source).
    pub resume_after: Option<Position>,
    /// Maildir only: the folders to read (`INBOX`, `Sent`, `Archive/2023`); empty means all.
    pub folders: Vec<String>,
    /// A gzip mbox: how far it may decompress.
    pub decompress: DecompressLimits,
}

impl Default for FileSourceOptions {
    fn default() -> Self {
        Self {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            resume_after: None,
            folders: Vec::new(),
            decompress: DecompressLimits::default(),
        }
    }
}

/// Everything that can stop a source. Each message says what went wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{path}: no such file or folder; check the path given to the import")]
    NotFound { path: PathBuf },
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is not an mbox file: its first line does not start with \"From \" (it starts \
         with {found:?}); use --eml for a folder of .eml files or --maildir for a Maildir"
    )]
    NotMbox { path: PathBuf, found: String },
    #[error(
        "{path}: unreadable gzip data after {offset} decompressed bytes ({source}); the file is \
         damaged, truncated or not gzip: decompress it with gunzip to check"
    )]
    Gzip {
        path: PathBuf,
        offset: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is refused after {offset} decompressed bytes: {limit}")]
    GzipLimit {
        path: PathBuf,
        offset: u64,
        limit: LimitExceeded,
    },
    #[error(
        "{path} is not a Maildir: neither it nor any folder below it has a cur/ or new/ folder"
    )]
    NotMaildir { path: PathBuf },
    #[error("{path} is not a folder; --eml and --maildir take a folder")]
    NotAFolder { path: PathBuf },
    #[error("folder {folder:?} not found in {source_name}; folders there: {}", available.join(", "))]
    FolderNotFound {
        source_name: String,
        folder: String,
        available: Vec<String>,
    },
    #[error("checkpoint {checkpoint:?} cannot be used: {reason}")]
    BadCheckpoint { checkpoint: String, reason: String },
    #[error("invalid IMAP URL {url:?}: {reason}; the form is imaps://user@host[:port]/Folder")]
    BadImapUrl { url: String, reason: String },
    #[error("cannot connect to IMAP server {server}: {reason}")]
    ImapConnect { server: String, reason: String },
    #[error(
        "TLS with IMAP server {server} failed: {reason}; if the server uses a private CA, give \
         its certificate with the CA file setting"
    )]
    Tls { server: String, reason: String },
    #[error(
        "IMAP server {server} refused the login of {user:?} with {method}: {reason}; check the \
         user name and password"
    )]
    ImapLoginRefused {
        server: String,
        user: String,
        method: &'static str,
        reason: String,
    },
    #[error("IMAP server {server} failed {command}: {reason}")]
    ImapCommand {
        server: String,
        command: String,
        reason: String,
    },
    #[error(
        "IMAP folder {folder:?} on {server} has UIDVALIDITY {current}, the checkpoint has \
         {checkpoint}: the server renumbered its messages, so the import cannot resume there; \
         import the folder again from the start (messages already imported are recognised as \
         duplicates)"
    )]
    UidValidityChanged {
        server: String,
        folder: String,
        checkpoint: u32,
        current: u32,
    },
    #[error(
        "connection to IMAP server {server} lost while reading folder {folder:?} ({reason}); \
         {}", match last_uid {
            Some(uid) => format!("messages up to UID {uid} were delivered: resume after it"),
            None => "no message of this folder was delivered yet: resume at the folder's start".to_string(),
        }
    )]
    ImapConnectionLost {
        server: String,
        folder: String,
        uid_validity: u32,
        /// The UID of the last message this source delivered from `folder`.
        last_uid: Option<u32>,
        reason: String,
    },
}

impl SourceError {
    /// A limit refused the source: reading it again as it is would fail the same way.
    pub fn is_limit(&self) -> bool {
        matches!(self, SourceError::GzipLimit { .. })
    }

    /// For a lost IMAP connection: the position to resume after, when a message of the folder
    /// was delivered.
    pub fn resume_position(&self) -> Option<Position> {
        match self {
            SourceError::ImapConnectionLost {
                folder,
                uid_validity,
                last_uid: Some(uid),
                ..
            } => Some(Position::Imap {
                folder: folder.clone(),
                uid_validity: *uid_validity,
                uid: *uid,
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_through_text() {
        for p in [
            Position::Mbox { offset: 123 },
            Position::File {
                path: PathBuf::from(".Sent/cur/1.x:2,S"),
            },
            Position::Imap {
                folder: "Archive:2023".into(),
                uid_validity: 7,
                uid: 42,
            },
        ] {
            assert_eq!(p.to_string().parse::<Position>().ok(), Some(p));
        }
        assert!("mbox:x".parse::<Position>().is_err());
        assert!("imap:1:2:".parse::<Position>().is_err());
        assert!("nothing".parse::<Position>().is_err());
    }
}
