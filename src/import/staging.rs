//! The first pass of an import: read the source once, in its own order, into a staging file
//! in the data folder, and note each message's date. The second pass reads the staging file
//! back in date order, so that threading sees the mailbox exactly as if the messages had
//! arrived live one by one, whatever order the file, folder or server keeps them in.
//!
//! A staging file is a sequence of records: `PSTM`, a 4-byte length and a JSON header (the
//! message's position in its source, origin, folder, envelope sender, date, size when over
//! the cap), an 8-byte length and the raw bytes. Only the index (date and offset of each
//! record, 16 bytes a message) is held in memory; the messages are read back one by one.

use super::{Content, DateRange, DateSource, MessageSource, Position, SourceError, SourceMessage};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

const MAGIC: &[u8; 4] = b"PSTM";
/// A record header larger than this is damage, not a message.
const MAX_HEADER: u32 = 64 * 1024;

#[derive(Debug, Serialize, Deserialize)]
struct RecordHeader {
    position: String,
    origin: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    folder: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    envelope_sender: Option<String>,
    /// Milliseconds since the epoch; `None`: no usable date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    date: Option<i64>,
    /// Set when the message was over the size cap: its real size (the bytes are its head).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    oversized: Option<u64>,
    #[serde(default)]
    truncated: bool,
}

/// Where each staged message is, in the order the second pass reads them.
#[derive(Debug, Default)]
pub struct StagedIndex {
    /// (date, offset of the record): sorted by date, then by order in the source.
    entries: Vec<(i64, u64)>,
}

impl StagedIndex {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn sort(&mut self) {
        // Stable: messages of the same date keep their order in the source.
        self.entries.sort_by_key(|&(date, _)| date);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StagingError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(
        "staging file {path}: {source}; check the free space and permissions of the data folder"
    )]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "staging file {path} is damaged at byte {offset}; it will be made again from the source"
    )]
    Damaged { path: PathBuf, offset: u64 },
}

/// What the first pass counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StagingTotals {
    pub seen: i64,
    pub skipped: i64,
    pub bytes: i64,
}

/// Messages without a date sort last (as if they arrived now).
fn sort_date(date: Option<i64>) -> i64 {
    date.unwrap_or(i64::MAX)
}

/// Reads `source` to its end into a new staging file at `path`, keeping the messages within
/// `range`. Calls `tick` every few messages with the totals so far; stops early (returning
/// `Ok(None)`) when `stop` is set.
pub fn stage(
    source: &mut dyn MessageSource,
    reopen: &mut dyn FnMut(Option<Position>) -> Result<Box<dyn MessageSource>, SourceError>,
    path: &Path,
    range: &DateRange,
    stop: &AtomicBool,
    tick: &mut dyn FnMut(&StagingTotals),
) -> Result<Option<(StagedIndex, StagingTotals)>, StagingError> {
    let io = |source| StagingError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::create(path).map_err(io)?;
    let mut out = BufWriter::with_capacity(1024 * 1024, file);
    let mut offset = 0u64;
    let mut index = StagedIndex::default();
    let mut totals = StagingTotals::default();
    let mut replacement: Option<Box<dyn MessageSource>> = None;
    let mut reconnects = 0;
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let current: &mut dyn MessageSource = match replacement.as_mut() {
            Some(s) => s.as_mut(),
            None => &mut *source,
        };
        let message = match current.next() {
            None => break,
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                // A dropped IMAP connection: log in again and go on after the last message.
                if matches!(e, SourceError::ImapConnectionLost { .. }) && reconnects < 3 {
                    reconnects += 1;
                    tracing::warn!(error = %e, attempt = reconnects, "IMAP connection lost: reconnecting");
                    std::thread::sleep(std::time::Duration::from_millis(500 * reconnects));
                    let resume = e.resume_position().or_else(|| folder_start(&e));
                    replacement = Some(reopen(resume)?);
                    continue;
                }
                return Err(e.into());
            }
        };
        totals.seen += 1;
        let size = match &message.content {
            Content::Complete(raw) => raw.len() as u64,
            Content::Oversized { size, .. } => *size,
        };
        totals.bytes += size as i64;
        if !range.contains(message.date) {
            totals.skipped += 1;
        } else {
            let date = message.date.map(|d| d.timestamp_millis());
            index.entries.push((sort_date(date), offset));
            offset += write_record(&mut out, &message, date).map_err(io)?;
        }
        if totals.seen % 500 == 0 {
            tick(&totals);
        }
    }
    out.flush().map_err(io)?;
    out.get_ref().sync_data().map_err(io)?;
    tick(&totals);
    index.sort();
    Ok(Some((index, totals)))
}

/// A lost connection before any message of its folder: that folder again from its start.
fn folder_start(e: &SourceError) -> Option<Position> {
    match e {
        SourceError::ImapConnectionLost {
            folder,
            uid_validity,
            last_uid: None,
            ..
        } => Some(Position::Imap {
            folder: folder.clone(),
            uid_validity: *uid_validity,
            uid: 0,
        }),
        _ => None,
    }
}

fn write_record(
    out: &mut impl Write,
    m: &SourceMessage,
    date: Option<i64>,
) -> std::io::Result<u64> {
    let (bytes, oversized) = match &m.content {
        Content::Complete(raw) => (raw.as_slice(), None),
        Content::Oversized { size, head } => (head.as_slice(), Some(*size)),
    };
    let header = serde_json::to_vec(&RecordHeader {
        position: m.position.to_string(),
        origin: m.origin.clone(),
        folder: m.folder.clone(),
        envelope_sender: m.envelope_sender.clone(),
        date,
        oversized,
        truncated: m.truncated,
    })?;
    out.write_all(MAGIC)?;
    out.write_all(&(header.len() as u32).to_le_bytes())?;
    out.write_all(&header)?;
    out.write_all(&(bytes.len() as u64).to_le_bytes())?;
    out.write_all(bytes)?;
    Ok((4 + 4 + header.len() + 8 + bytes.len()) as u64)
}

/// Rebuilds the index of a complete staging file (resuming an import killed in its second
/// pass): reads the record headers only, skipping the messages.
pub fn index_of(path: &Path) -> Result<StagedIndex, StagingError> {
    let io = |source| StagingError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::io::BufReader::new(File::open(path).map_err(io)?);
    let len = file.get_ref().metadata().map_err(io)?.len();
    let mut index = StagedIndex::default();
    let mut offset = 0u64;
    while offset < len {
        let (header, raw_len, header_bytes) =
            read_header(&mut file).map_err(|_| StagingError::Damaged {
                path: path.to_path_buf(),
                offset,
            })?;
        index.entries.push((sort_date(header.date), offset));
        file.seek(SeekFrom::Current(raw_len as i64)).map_err(io)?;
        offset += header_bytes + raw_len;
    }
    if offset != len {
        return Err(StagingError::Damaged {
            path: path.to_path_buf(),
            offset,
        });
    }
    index.sort();
    Ok(index)
}

/// Reads a record header; returns it, the message's length and the header's length.
fn read_header(r: &mut impl Read) -> std::io::Result<(RecordHeader, u64, u64)> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let mut magic = [0u8; 4];
    r.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(bad("no record marker"));
    }
    let mut n = [0u8; 4];
    r.read_exact(&mut n)?;
    let header_len = u32::from_le_bytes(n);
    if header_len > MAX_HEADER {
        return Err(bad("record header too large"));
    }
    let mut header = vec![0u8; header_len as usize];
    r.read_exact(&mut header)?;
    let header: RecordHeader = serde_json::from_slice(&header).map_err(|e| bad(&e.to_string()))?;
    let mut n = [0u8; 8];
    r.read_exact(&mut n)?;
    Ok((
        header,
        u64::from_le_bytes(n),
        4 + 4 + u64::from(header_len) + 8,
    ))
}

/// The second pass's source: the staged messages in date order, from the `skip`-th on.
pub struct StagedSource {
    path: PathBuf,
    file: File,
    entries: std::vec::IntoIter<(i64, u64)>,
    max_message_size: u64,
}

impl StagedSource {
    pub fn open(
        path: &Path,
        index: StagedIndex,
        skip: usize,
        max_message_size: u64,
    ) -> Result<Self, StagingError> {
        let file = File::open(path).map_err(|source| StagingError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut entries = index.entries.into_iter();
        if skip > 0 {
            entries.nth(skip - 1);
        }
        Ok(Self {
            path: path.to_path_buf(),
            file,
            entries,
            max_message_size,
        })
    }

    fn read(&self, offset: u64) -> std::io::Result<SourceMessage> {
        let mut head = [0u8; 8];
        self.file.read_exact_at(&mut head, offset)?;
        let header_len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if &head[..4] != MAGIC || header_len > MAX_HEADER {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "no record at this offset",
            ));
        }
        let mut rest = vec![0u8; header_len as usize + 8];
        self.file.read_exact_at(&mut rest, offset + 8)?;
        let (header, raw_len, _) = read_header(&mut head.chain(rest.as_slice()))?;
        if raw_len > self.max_message_size.max(super::OVERSIZED_HEAD as u64) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "record larger than the size cap",
            ));
        }
        let mut raw = vec![0u8; raw_len as usize];
        self.file
            .read_exact_at(&mut raw, offset + 8 + u64::from(header_len) + 8)?;
        let position: Position = header.position.parse().map_err(|e: SourceError| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
        })?;
        Ok(SourceMessage {
            position,
            origin: header.origin,
            content: match header.oversized {
                Some(size) => Content::Oversized { size, head: raw },
                None => Content::Complete(raw),
            },
            date: header
                .date
                .and_then(chrono::DateTime::from_timestamp_millis),
            date_source: if header.date.is_some() {
                DateSource::Header
            } else {
                DateSource::Unknown
            },
            flags: None,
            folder: header.folder,
            truncated: header.truncated,
            envelope_sender: header.envelope_sender,
        })
    }
}

impl Iterator for StagedSource {
    type Item = Result<SourceMessage, SourceError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (_, offset) = self.entries.next()?;
        Some(self.read(offset).map_err(|source| SourceError::Io {
            path: self.path.clone(),
            source,
        }))
    }
}

impl MessageSource for StagedSource {
    fn description(&self) -> String {
        format!("staged messages in {}", self.path.display())
    }
}
