//! One message per file (Maildir, .eml): read it within the size cap, find its date.

use super::headers::{header_block, header_date};
use super::mbox::{io_error, open_error};
use super::source::{Content, DateSource, Position, SourceError, SourceMessage, OVERSIZED_HEAD};
use chrono::{DateTime, Utc};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Refuses a `root` that is not a folder (a Maildir or an eml folder is one).
pub fn require_folder(root: &Path) -> Result<(), SourceError> {
    let meta = std::fs::metadata(root).map_err(|e| open_error(root, e))?;
    if meta.is_dir() {
        Ok(())
    } else {
        Err(SourceError::NotAFolder {
            path: root.to_path_buf(),
        })
    }
}

/// The file to resume after: a folder of message files resumes from a `path:PATH`
/// checkpoint; any other is refused, naming the source (`source_name`: "a Maildir").
pub fn resume_after_file(
    resume_after: &Option<Position>,
    source_name: &str,
) -> Result<Option<PathBuf>, SourceError> {
    match resume_after {
        None => Ok(None),
        Some(Position::File { path }) => Ok(Some(path.clone())),
        Some(other) => Err(SourceError::BadCheckpoint {
            checkpoint: other.to_string(),
            reason: format!("{source_name} resumes from a path:PATH checkpoint"),
        }),
    }
}

/// Reads `root/relative` as one message. A leading mbox `From ` line (some tools save one in
/// .eml files) is not part of the message. Date: the Date header, else the file's mtime.
pub fn read_message_file(
    root: &Path,
    relative: &Path,
    max_message_size: u64,
) -> Result<SourceMessage, SourceError> {
    let path = root.join(relative);
    let file = File::open(&path).map_err(|e| open_error(&path, e))?;
    let meta = file.metadata().map_err(|e| io_error(&path, e))?;
    let modified: Option<DateTime<Utc>> = meta.modified().ok().map(DateTime::<Utc>::from);
    let size = meta.len();
    let keep = if size > max_message_size {
        (OVERSIZED_HEAD as u64).min(max_message_size)
    } else {
        // The file may grow while it is read: never take more than the cap.
        max_message_size.saturating_add(1)
    };
    let mut raw = Vec::with_capacity(size.min(keep) as usize);
    file.take(keep)
        .read_to_end(&mut raw)
        .map_err(|e| io_error(&path, e))?;
    Ok(message_from_file_bytes(
        relative,
        path.display().to_string(),
        raw,
        size,
        modified,
        max_message_size,
    ))
}

/// The message made of `raw`, the bytes read from a file of `file_size` bytes (at most the
/// cap plus one, or the head of an oversized file): [`read_message_file`] once the file is
/// read, apart so that the fuzz targets can reach it without a file.
pub fn message_from_file_bytes(
    relative: &Path,
    origin: String,
    mut raw: Vec<u8>,
    file_size: u64,
    modified: Option<DateTime<Utc>>,
    max_message_size: u64,
) -> SourceMessage {
    let content = if file_size > max_message_size || raw.len() as u64 > max_message_size {
        raw.truncate(OVERSIZED_HEAD);
        Content::Oversized {
            size: file_size.max(raw.len() as u64),
            head: raw,
        }
    } else {
        if raw.starts_with(b"From ") {
            let end = memchr::memchr(b'\n', &raw).map_or(raw.len(), |i| i + 1);
            raw.drain(..end);
        }
        Content::Complete(raw)
    };
    let bytes = match &content {
        Content::Complete(raw) => raw.as_slice(),
        Content::Oversized { head, .. } => head.as_slice(),
    };
    let (date, date_source) = match header_date(header_block(bytes)) {
        Some(d) => (Some(d), DateSource::Header),
        None => match modified {
            Some(d) => (Some(d), DateSource::FileModified),
            None => (None, DateSource::Unknown),
        },
    };
    SourceMessage {
        position: Position::File {
            path: relative.to_path_buf(),
        },
        origin,
        content,
        date,
        date_source,
        flags: None,
        folder: None,
        truncated: false,
        envelope_sender: None,
    }
}

/// The entries of `dir` sorted by name, as (name, is_dir, is_file); symbolic links to folders
/// are not followed (they could loop), hidden entries (starting with a dot) are left out
/// unless `keep_hidden_dirs`.
pub fn sorted_entries(
    dir: &Path,
    keep_hidden_dirs: bool,
) -> Result<Vec<(std::ffi::OsString, bool, bool)>, SourceError> {
    let mut entries = Vec::new();
    let read = std::fs::read_dir(dir).map_err(|e| open_error(dir, e))?;
    for entry in read {
        let entry = entry.map_err(|e| io_error(dir, e))?;
        let name = entry.file_name();
        let hidden = name.as_encoded_bytes().first() == Some(&b'.');
        let kind = entry.file_type().map_err(|e| io_error(&entry.path(), e))?;
        let (is_dir, is_file) = if kind.is_symlink() {
            let followed = std::fs::metadata(entry.path());
            (false, followed.is_ok_and(|m| m.is_file()))
        } else {
            (kind.is_dir(), kind.is_file())
        };
        if hidden && !(is_dir && keep_hidden_dirs) {
            continue;
        }
        entries.push((name, is_dir, is_file));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(entries)
}
