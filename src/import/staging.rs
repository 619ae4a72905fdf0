//! The first pass of an import: read the source once, in its own order, into a staging file
//! in the data folder, and note each message's date. The second pass reads the staging file
//! back in date order, so that threading sees the mailbox exactly as if the messages had
//! arrived live one by one, whatever order the file, folder or server keeps them in.
//!
//! A staging file is a sequence of records: `PSTM`, a 4-byte length and a JSON header (the
//! message's position in its source, origin, folder, envelope sender, date, size when over
//! the cap), an 8-byte length and the raw bytes. Only the index (date and offset of each
//! record, 16 bytes a message) is held in memory; the messages are read back one by one.
//! A message outside the import's dates leaves a record without bytes, so that the file
//! alone says how far the source was read.
//!
//! A first pass that was killed or stopped resumes: the complete records of the file are
//! kept (a record cut by the kill is dropped), and the source is read again only after the
//! position of the last of them.

use super::pace::Pace;
use super::{Content, DateRange, DateSource, MessageSource, Position, SourceError, SourceMessage};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

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
    /// Set for a message outside the import's dates: its size (no bytes are kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    skipped: Option<u64>,
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
    #[error(
        "the import stopped after {staged} bytes of messages: its staging copy in the data \
         folder may not pass imports.max_staged_size ({limit} bytes); if this mailbox is \
         genuine, raise imports.max_staged_size (environment: \
         POSTERN__IMPORTS__MAX_STAGED_SIZE) and run the import again, or import it in parts \
         (since/until)"
    )]
    TooLarge { staged: u64, limit: u64 },
}

impl StagingError {
    /// A limit refused the source: running it again as it is would fail the same way.
    pub fn is_limit(&self) -> bool {
        match self {
            StagingError::TooLarge { .. } => true,
            StagingError::Source(e) => e.is_limit(),
            _ => false,
        }
    }
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

/// Where job `job` keeps its staging file, in the imports folder `dir`.
pub fn staging_path(dir: &Path, job: i64) -> PathBuf {
    dir.join(format!("job-{job}.staging"))
}

/// Opens the source, after the given position or from its start.
pub type SourceOpen<'a> =
    dyn FnMut(Option<Position>) -> Result<Box<dyn MessageSource>, SourceError> + 'a;

/// Reads the source to its end into the staging file at `path`, keeping the messages within
/// `range`. A staging file already there (a first pass that was killed or stopped) is kept
/// and the source read after its last message. Calls `tick` every few messages with the
/// totals so far; stops early (returning `Ok(None)`) when `stop` is set. Reads no faster
/// than `pace` allows. The file may hold at most `max_size` bytes of records.
///
/// A failure leaves the staging file only when it holds messages to resume after and
/// running again can get further: a file without any record, or one a limit stopped, is
/// deleted.
pub fn stage(
    open: &mut SourceOpen<'_>,
    path: &Path,
    range: &DateRange,
    max_size: u64,
    stop: &AtomicBool,
    pace: &mut Pace,
    tick: &mut dyn FnMut(&StagingTotals),
) -> Result<Option<(StagedIndex, StagingTotals)>, StagingError> {
    let mut written = 0u64;
    let result = stage_into(open, path, range, max_size, stop, pace, tick, &mut written);
    if let Err(e) = &result {
        if written == 0 || e.is_limit() {
            if let Err(e) = std::fs::remove_file(path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %path.display(), error = %e, "cannot delete the staging file of a failed import");
                }
            }
        }
    }
    result
}

#[allow(clippy::too_many_arguments)]
fn stage_into(
    open: &mut SourceOpen<'_>,
    path: &Path,
    range: &DateRange,
    max_size: u64,
    stop: &AtomicBool,
    pace: &mut Pace,
    tick: &mut dyn FnMut(&StagingTotals),
    written: &mut u64,
) -> Result<Option<(StagedIndex, StagingTotals)>, StagingError> {
    let io = |source| StagingError::Io {
        path: path.to_path_buf(),
        source,
    };
    let (file, mut source, so_far) = match resume_point(path, open)? {
        Some((so_far, source)) => {
            let mut file = crate::private_files::open_options()
                .write(true)
                .open(path)
                .map_err(io)?;
            // Whatever a kill cut short after the last complete record goes.
            file.set_len(so_far.valid_len).map_err(io)?;
            file.seek(SeekFrom::End(0)).map_err(io)?;
            (file, source, so_far)
        }
        None => {
            // The source first: one that cannot be opened leaves no empty staging file.
            let source = open(None)?;
            let file = crate::private_files::open_options()
                .write(true)
                .create(true)
                .truncate(true)
                .open(path)
                .map_err(io)?;
            (file, source, Scan::default())
        }
    };
    *written = so_far.valid_len;
    let Scan {
        mut index,
        mut totals,
        valid_len: mut offset,
        ..
    } = so_far;
    if totals.seen > 0 {
        tick(&totals);
    }
    let mut out = BufWriter::with_capacity(1024 * 1024, file);
    let mut reconnects = 0;
    loop {
        if stop.load(Ordering::Relaxed) {
            // Complete records only, so that the next run resumes after them.
            out.flush().map_err(io)?;
            return Ok(None);
        }
        let message = match source.next() {
            None => break,
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                // A dropped IMAP connection: log in again and go on after the last message.
                if matches!(e, SourceError::ImapConnectionLost { .. }) && reconnects < 3 {
                    reconnects += 1;
                    tracing::warn!(error = %e, attempt = reconnects, "IMAP connection lost: reconnecting");
                    std::thread::sleep(Duration::from_millis(500 * reconnects));
                    let resume = e.resume_position().or_else(|| folder_start(&e));
                    source = open(resume)?;
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
            offset += write_skip_record(&mut out, &message, size).map_err(io)?;
        } else {
            let kept = match &message.content {
                Content::Complete(raw) => raw.len() as u64,
                Content::Oversized { head, .. } => head.len() as u64,
            };
            if offset.saturating_add(kept) > max_size {
                return Err(StagingError::TooLarge {
                    staged: offset,
                    limit: max_size,
                });
            }
            let date = message.date.map(|d| d.timestamp_millis());
            index.entries.push((sort_date(date), offset));
            offset += write_record(&mut out, &message, date).map_err(io)?;
        }
        *written = offset;
        if totals.seen % 500 == 0 {
            tick(&totals);
        }
        wait_or_stop(pace.advance(1), stop);
    }
    out.flush().map_err(io)?;
    out.get_ref().sync_data().map_err(io)?;
    tick(&totals);
    index.sort();
    Ok(Some((index, totals)))
}

/// Sleeps `wait` on this (blocking) thread, in short steps so that a stop is not delayed.
fn wait_or_stop(wait: Duration, stop: &AtomicBool) {
    let until = std::time::Instant::now() + wait;
    while !stop.load(Ordering::Relaxed) {
        let left = until.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            break;
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}

/// What an interrupted first pass left, and its source opened after the last message staged.
type Resumed = (Scan, Box<dyn MessageSource>);

/// Where a first pass left off: what its staging file holds, and the source opened after
/// the last message staged. `None`: no usable file, start from the beginning. A source that
/// no longer has that position (the file was replaced, the server renumbered its messages)
/// is read again from its start, into a new staging file.
fn resume_point(path: &Path, open: &mut SourceOpen<'_>) -> Result<Option<Resumed>, StagingError> {
    if !path.exists() {
        return Ok(None);
    }
    let so_far = match scan(path, false) {
        Ok(so_far) => so_far,
        Err(e) => {
            tracing::warn!(error = %e, "the staging file left by an earlier run is unreadable: reading the source from its start");
            return Ok(None);
        }
    };
    let Some(last) = so_far.last_position.clone() else {
        return Ok(None);
    };
    let position = match last.parse::<Position>() {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "the staging file left by an earlier run ends at an unknown position: reading the source from its start");
            return Ok(None);
        }
    };
    match open(Some(position)) {
        Ok(source) => {
            tracing::info!(
                staged = so_far.index.len(),
                seen = so_far.totals.seen,
                after = %last,
                "resuming the reading pass of an interrupted import"
            );
            Ok(Some((so_far, source)))
        }
        Err(SourceError::BadCheckpoint { checkpoint, reason }) => {
            tracing::warn!(%checkpoint, %reason, "the source changed since the interrupted run: reading it again from its start");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
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
        skipped: None,
    })?;
    out.write_all(MAGIC)?;
    out.write_all(&(header.len() as u32).to_le_bytes())?;
    out.write_all(&header)?;
    out.write_all(&(bytes.len() as u64).to_le_bytes())?;
    out.write_all(bytes)?;
    Ok((4 + 4 + header.len() + 8 + bytes.len()) as u64)
}

/// A message outside the import's dates: a record with its position and size, no bytes.
fn write_skip_record(out: &mut impl Write, m: &SourceMessage, size: u64) -> std::io::Result<u64> {
    let header = serde_json::to_vec(&RecordHeader {
        position: m.position.to_string(),
        origin: m.origin.clone(),
        folder: None,
        envelope_sender: None,
        date: None,
        oversized: None,
        truncated: false,
        skipped: Some(size),
    })?;
    out.write_all(MAGIC)?;
    out.write_all(&(header.len() as u32).to_le_bytes())?;
    out.write_all(&header)?;
    out.write_all(&0u64.to_le_bytes())?;
    Ok((4 + 4 + header.len() + 8) as u64)
}

/// What a staging file holds, read back record by record.
#[derive(Debug, Default)]
struct Scan {
    index: StagedIndex,
    totals: StagingTotals,
    /// Bytes of complete records from the start of the file.
    valid_len: u64,
    /// Source position of the last complete record.
    last_position: Option<String>,
}

/// Reads the record headers of a staging file, skipping the messages. `complete`: the file
/// must be whole (a finished first pass); otherwise the scan stops at the first record that
/// is cut short or damaged, and says how far the file was good.
fn scan(path: &Path, complete: bool) -> Result<Scan, StagingError> {
    let io = |source| StagingError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::io::BufReader::new(File::open(path).map_err(io)?);
    let len = file.get_ref().metadata().map_err(io)?.len();
    let mut so_far = Scan::default();
    let mut offset = 0u64;
    while offset < len {
        let Ok((header, raw_len, header_bytes)) = read_header(&mut file) else {
            break;
        };
        let end = offset.saturating_add(header_bytes).saturating_add(raw_len);
        if end > len || raw_len > i64::MAX as u64 {
            break;
        }
        so_far.totals.seen += 1;
        match header.skipped {
            Some(size) => {
                so_far.totals.skipped += 1;
                so_far.totals.bytes += size as i64;
            }
            None => {
                so_far.totals.bytes += header.oversized.unwrap_or(raw_len) as i64;
                so_far.index.entries.push((sort_date(header.date), offset));
            }
        }
        so_far.last_position = Some(header.position);
        file.seek(SeekFrom::Current(raw_len as i64)).map_err(io)?;
        offset = end;
    }
    so_far.valid_len = offset;
    if complete && offset != len {
        return Err(StagingError::Damaged {
            path: path.to_path_buf(),
            offset,
        });
    }
    so_far.index.sort();
    Ok(so_far)
}

/// Rebuilds the index of a complete staging file (resuming an import killed in its second
/// pass): reads the record headers only, skipping the messages.
pub fn index_of(path: &Path) -> Result<StagedIndex, StagingError> {
    Ok(scan(path, true)?.index)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::mbox::{MboxDialect, MboxSource};
    use crate::import::FileSourceOptions;
    use chrono::NaiveDate;
    use std::sync::{Arc, Mutex};

    /// An mbox of `n` messages, one a year from 2001 (so that a date range keeps some).
    fn mbox(dir: &Path, n: usize) -> PathBuf {
        let mut text = String::new();
        for i in 0..n {
            let year = 2001 + i;
            text.push_str(&format!(
                "From customer{i}@example.test Mon Jan  1 00:00:00 {year}\n\
                 From: customer{i}@example.test\nSubject: message {i}\n\
                 Date: Mon, 1 Jan {year} 00:00:00 +0000\nMessage-ID: <m{i}@example.test>\n\n\
                 body of message {i}\n\n"
            ));
        }
        let path = dir.join("old.mbox");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Opens the mbox after a position, noting every position it yields; sets `stop` after
    /// `stop_after` messages (counted over every source it opened).
    struct Opener {
        path: PathBuf,
        yielded: Arc<Mutex<Vec<String>>>,
        stop_after: Option<usize>,
        stop: Arc<AtomicBool>,
    }

    struct Noting {
        inner: MboxSource,
        yielded: Arc<Mutex<Vec<String>>>,
        stop_after: Option<usize>,
        stop: Arc<AtomicBool>,
    }

    impl Iterator for Noting {
        type Item = crate::import::SourceItem;
        fn next(&mut self) -> Option<Self::Item> {
            let item = self.inner.next()?;
            if let Ok(m) = &item {
                let mut yielded = self.yielded.lock().unwrap();
                yielded.push(m.position.to_string());
                if self.stop_after == Some(yielded.len()) {
                    self.stop.store(true, Ordering::Relaxed);
                }
            }
            Some(item)
        }
    }

    impl MessageSource for Noting {
        fn description(&self) -> String {
            self.inner.description()
        }
    }

    impl Opener {
        fn new(path: &Path, stop_after: Option<usize>) -> Self {
            Self {
                path: path.to_path_buf(),
                yielded: Arc::default(),
                stop_after,
                stop: Arc::default(),
            }
        }

        fn stage(&self, staging: &Path, range: &DateRange) -> Option<(StagedIndex, StagingTotals)> {
            self.try_stage(staging, range, u64::MAX).unwrap()
        }

        fn try_stage(
            &self,
            staging: &Path,
            range: &DateRange,
            max_size: u64,
        ) -> Result<Option<(StagedIndex, StagingTotals)>, StagingError> {
            let mut open =
                |after: Option<Position>| -> Result<Box<dyn MessageSource>, SourceError> {
                    let options = FileSourceOptions {
                        resume_after: after,
                        ..FileSourceOptions::default()
                    };
                    Ok(Box::new(Noting {
                        inner: MboxSource::open(&self.path, MboxDialect::Auto, &options)?,
                        yielded: self.yielded.clone(),
                        stop_after: self.stop_after,
                        stop: self.stop.clone(),
                    }))
                };
            stage(
                &mut open,
                staging,
                range,
                max_size,
                &self.stop,
                &mut Pace::new(0),
                &mut |_| {},
            )
        }

        fn yielded(&self) -> Vec<String> {
            self.yielded.lock().unwrap().clone()
        }
    }

    fn range() -> DateRange {
        DateRange {
            since: NaiveDate::from_ymd_opt(2003, 1, 1),
            until: None,
        }
    }

    /// The uninterrupted first pass over `source`: its staging file and what it returned.
    fn reference(dir: &Path, source: &Path) -> (Vec<u8>, Vec<(i64, u64)>, StagingTotals) {
        let path = dir.join("reference.staging");
        let (index, totals) = Opener::new(source, None).stage(&path, &range()).unwrap();
        (std::fs::read(&path).unwrap(), index.entries, totals)
    }

    #[test]
    fn a_stopped_first_pass_resumes_after_its_last_staged_message() {
        let dir = tempfile::tempdir().unwrap();
        let source = mbox(dir.path(), 12);
        let (bytes, entries, totals) = reference(dir.path(), &source);
        assert_eq!(totals.seen, 12);
        assert_eq!(totals.skipped, 2, "2001 and 2002 are before the range");
        assert_eq!(entries.len(), 10);

        let staging = dir.path().join("job.staging");
        let first = Opener::new(&source, Some(5));
        assert!(first.stage(&staging, &range()).is_none(), "stopped");
        let read_first = first.yielded();
        assert!(read_first.len() >= 5, "{read_first:?}");

        let second = Opener::new(&source, None);
        let (index, resumed) = second.stage(&staging, &range()).unwrap();
        let read_again = second.yielded();
        assert_eq!(
            read_first.len() + read_again.len(),
            12,
            "each message read once: {read_first:?} then {read_again:?}"
        );
        assert!(!read_again.iter().any(|p| read_first.contains(p)));
        assert_eq!(
            resumed, totals,
            "the skipped messages of the first run still count"
        );
        assert_eq!(index.entries, entries);
        assert_eq!(
            std::fs::read(&staging).unwrap(),
            bytes,
            "the same staging file"
        );
    }

    #[test]
    fn a_record_cut_by_a_kill_is_read_again_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let source = mbox(dir.path(), 8);
        let (bytes, entries, totals) = reference(dir.path(), &source);
        // A kill in the middle of the sixth record: its header is there, its bytes cut.
        let mut offsets: Vec<u64> = entries.iter().map(|&(_, o)| o).collect();
        offsets.sort_unstable();
        let sixth = offsets[3] as usize; // records 1-2 are skipped ones, 3.. are staged
        let cut = sixth + 30;
        let staging = dir.path().join("job.staging");
        std::fs::write(&staging, &bytes[..cut]).unwrap();

        let again = Opener::new(&source, None);
        let (index, resumed) = again.stage(&staging, &range()).unwrap();
        assert_eq!(
            again.yielded().len(),
            3,
            "only the cut message and those after it are read: {:?}",
            again.yielded()
        );
        assert_eq!(resumed, totals);
        assert_eq!(index.entries, entries);
        assert_eq!(std::fs::read(&staging).unwrap(), bytes);
    }

    #[test]
    fn past_its_size_limit_the_first_pass_fails_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let source = mbox(dir.path(), 12);
        let (bytes, _, _) = reference(dir.path(), &source);
        let staging = dir.path().join("job.staging");
        let limit = bytes.len() as u64 / 2;
        let result = Opener::new(&source, None).try_stage(&staging, &range(), limit);
        match result {
            Err(e @ StagingError::TooLarge { .. }) => {
                assert!(e.is_limit());
                let text = e.to_string();
                assert!(
                    text.contains(&format!("imports.max_staged_size ({limit} bytes)"))
                        && text.contains("POSTERN__IMPORTS__MAX_STAGED_SIZE"),
                    "{text}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(!staging.exists(), "the partial copy is deleted");
    }

    #[test]
    fn a_source_that_cannot_be_read_leaves_no_empty_staging_file() {
        let dir = tempfile::tempdir().unwrap();
        let not_mbox = dir.path().join("notes.txt");
        std::fs::write(&not_mbox, "just some text\n").unwrap();
        let staging = dir.path().join("job.staging");
        let result = Opener::new(&not_mbox, None).try_stage(&staging, &range(), u64::MAX);
        assert!(
            matches!(
                result,
                Err(StagingError::Source(SourceError::NotMbox { .. }))
            ),
            "{result:?}"
        );
        assert!(!staging.exists());
    }

    #[test]
    fn a_staging_file_that_is_not_one_is_made_again_from_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let source = mbox(dir.path(), 4);
        let (bytes, entries, totals) = reference(dir.path(), &source);
        let staging = dir.path().join("job.staging");
        std::fs::write(&staging, b"not a staging file at all").unwrap();
        let again = Opener::new(&source, None);
        let (index, restaged) = again.stage(&staging, &range()).unwrap();
        assert_eq!(again.yielded().len(), 4);
        assert_eq!(restaged, totals);
        assert_eq!(index.entries, entries);
        assert_eq!(std::fs::read(&staging).unwrap(), bytes);
    }
}
