//! Maildir and Maildir++ folders: messages in `cur/` and `new/` (never `tmp/`, where
//! deliveries are still being written), flags after `:2,` (or `!2,`, as some tools write
//! where `:` is not allowed in file names).
//!
//! Folders: the folder given and every folder below it that has a `cur/` or `new/`:
//! Maildir++ sub-folders (`.Sent` is `Sent`, `.Archive.2023` is `Archive/2023`) and plain
//! nested Maildirs (`Lists/rust` is `Lists/rust`). The top folder is `INBOX`.
//! Order: folder by folder, sorted by their path (the top folder first); in each folder the
//! files of `cur/` then `new/`, sorted by name. A position is the file's path relative to the
//! folder given. A message moved from `new/` to `cur/` or whose flags changed (its name
//! changes) after a checkpoint may be read again on resume; the pipeline's duplicate check
//! makes that harmless.

use super::message_file::{
    message_from_file_bytes, read_message_file, require_folder, resume_after_file, sorted_entries,
};
use super::source::{
    item_of_read, FileSourceOptions, MessageFlags, MessageSource, SourceError, SourceItem,
    SourceMessage,
};
use chrono::{DateTime, Utc};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};

/// A mail folder of the tree: its path relative to the root and its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaildirFolder {
    pub relative: PathBuf,
    pub name: String,
}

pub struct MaildirSource {
    root: PathBuf,
    max_message_size: u64,
    resume_after: Option<PathBuf>,
    folders: VecDeque<MaildirFolder>,
    current: Option<(MaildirFolder, VecDeque<PathBuf>)>,
    done: bool,
}

impl MaildirSource {
    /// Opens the Maildir tree at `root`, with the folders `options.folders` (all if empty).
    pub fn open(root: &Path, options: &FileSourceOptions) -> Result<Self, SourceError> {
        require_folder(root)?;
        let all = list_folders(root)?;
        if all.is_empty() {
            return Err(SourceError::NotMaildir {
                path: root.to_path_buf(),
            });
        }
        let mut folders: VecDeque<MaildirFolder> = if options.folders.is_empty() {
            all.iter().cloned().collect()
        } else {
            let mut chosen = Vec::new();
            for wanted in &options.folders {
                let found = all.iter().find(|f| {
                    f.name == *wanted || (f.name == "INBOX" && wanted.eq_ignore_ascii_case("INBOX"))
                });
                match found {
                    Some(f) if !chosen.contains(f) => chosen.push(f.clone()),
                    Some(_) => {}
                    None => {
                        return Err(SourceError::FolderNotFound {
                            source_name: root.display().to_string(),
                            folder: wanted.clone(),
                            available: all.iter().map(|f| f.name.clone()).collect(),
                        })
                    }
                }
            }
            chosen.sort_by(|a, b| a.relative.cmp(&b.relative));
            chosen.into()
        };
        let resume_after = resume_after_file(&options.resume_after, "a Maildir")?;
        if let Some(after) = &resume_after {
            let after_folder = folder_of(after);
            folders.retain(|f| f.relative >= after_folder);
        }
        Ok(Self {
            root: root.to_path_buf(),
            max_message_size: options.max_message_size,
            resume_after,
            folders,
            current: None,
            done: false,
        })
    }

    fn next_message(&mut self) -> Result<Option<SourceMessage>, SourceError> {
        loop {
            if let Some((folder, files)) = &mut self.current {
                if let Some(rel) = files.pop_front() {
                    let message = read_message_file(&self.root, &rel, self.max_message_size)?;
                    return Ok(Some(with_maildir_facts(message, &rel, &folder.name)));
                }
            }
            let Some(folder) = self.folders.pop_front() else {
                return Ok(None);
            };
            let mut files = Vec::new();
            for sub in ["cur", "new"] {
                let dir = folder.relative.join(sub);
                if !self.root.join(&dir).is_dir() {
                    continue;
                }
                for (name, _, is_file) in sorted_entries(&self.root.join(&dir), false)? {
                    if is_file {
                        files.push(dir.join(name));
                    }
                }
            }
            if let Some(after) = &self.resume_after {
                if folder.relative == folder_of(after) {
                    files.retain(|f| f > after);
                }
            }
            self.current = Some((folder, files.into()));
        }
    }
}

/// A message file's flags (from its name) and folder, as the source yields them.
fn with_maildir_facts(mut message: SourceMessage, relative: &Path, folder: &str) -> SourceMessage {
    message.flags = Some(flags_of(relative));
    message.folder = Some(folder.to_string());
    message
}

/// The message a Maildir file at `relative` (below the folder given to the import) makes
/// of `raw`, what was read of it (see [`message_from_file_bytes`]): what the source yields
/// for that file, without the file. For the fuzz targets.
pub fn message_from_bytes(
    relative: &Path,
    raw: Vec<u8>,
    file_size: u64,
    modified: Option<DateTime<Utc>>,
    max_message_size: u64,
) -> SourceMessage {
    let origin = relative.display().to_string();
    let message =
        message_from_file_bytes(relative, origin, raw, file_size, modified, max_message_size);
    with_maildir_facts(message, relative, &folder_name(&folder_of(relative)))
}

/// Every folder of the tree at `root` that has a `cur/` or `new/`, sorted by path.
pub fn list_folders(root: &Path) -> Result<Vec<MaildirFolder>, SourceError> {
    let mut found = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        if dir.join("cur").is_dir() || dir.join("new").is_dir() {
            found.push(MaildirFolder {
                name: folder_name(&rel),
                relative: rel.clone(),
            });
        }
        for (name, is_dir, _) in sorted_entries(&dir, true)? {
            if is_dir && !matches!(name.to_str(), Some("cur" | "new" | "tmp")) {
                stack.push(rel.join(name));
            }
        }
    }
    found.sort_by(|a, b| a.relative.cmp(&b.relative));
    Ok(found)
}

/// `""` is INBOX, `.Archive.2023` (Maildir++) is `Archive/2023`, `Lists/rust` stays.
fn folder_name(rel: &Path) -> String {
    if rel.as_os_str().is_empty() {
        return "INBOX".to_string();
    }
    let parts: Vec<String> = rel
        .components()
        .map(|c| {
            let s = c.as_os_str().to_string_lossy();
            match s.strip_prefix('.') {
                Some(plus) => plus.replace('.', "/"),
                None => s.into_owned(),
            }
        })
        .collect();
    parts.join("/")
}

/// The folder a message path is in: `Lists/rust/cur/x` is in `Lists/rust`.
fn folder_of(message: &Path) -> PathBuf {
    message
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Flags from the file name's info part (`...:2,RS` or `...!2,RS`); none means unread.
pub fn flags_of(path: &Path) -> MessageFlags {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let info = [":2,", "!2,"]
        .iter()
        .filter_map(|sep| name.rfind(sep).map(|i| &name[i + sep.len()..]))
        .next()
        .unwrap_or("");
    MessageFlags {
        seen: info.contains('S'),
        answered: info.contains('R'),
        flagged: info.contains('F'),
        draft: info.contains('D'),
        deleted: info.contains('T'),
        forwarded: info.contains('P'),
    }
}

impl Iterator for MaildirSource {
    type Item = SourceItem;

    fn next(&mut self) -> Option<SourceItem> {
        if self.done {
            return None;
        }
        let read = self.next_message();
        item_of_read(&mut self.done, read)
    }
}

impl MessageSource for MaildirSource {
    fn description(&self) -> String {
        format!("Maildir {}", self.root.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_folders_like_imap() {
        assert_eq!(folder_name(Path::new("")), "INBOX");
        assert_eq!(folder_name(Path::new(".Sent")), "Sent");
        assert_eq!(folder_name(Path::new(".Archive.2023")), "Archive/2023");
        assert_eq!(folder_name(Path::new("Lists/rust")), "Lists/rust");
    }

    #[test]
    fn reads_flags_after_either_separator() {
        let f = flags_of(Path::new("cur/1.host:2,RS"));
        assert!(f.seen && f.answered && !f.flagged);
        let f = flags_of(Path::new("cur/special!2,Sabc"));
        assert!(f.seen && !f.answered);
        assert_eq!(flags_of(Path::new("new/1.host")), MessageFlags::default());
        assert_eq!(folder_of(Path::new(".Sent/cur/x")), PathBuf::from(".Sent"));
        assert_eq!(folder_of(Path::new("cur/x")), PathBuf::new());
    }
}
