//! A folder tree of `.eml` files, read recursively in a deterministic order.
//!
//! Taken: regular files (or links to files) whose name ends in `.eml`, any case. Left out:
//! every other file (`.msg` is Outlook's binary format, not a message), hidden files and
//! folders (name starting with a dot), links to folders. Order: by path, component by
//! component, byte-wise (`a/z.eml` before `a.b/a.eml` before `b.eml`); the position of a
//! message is its path relative to the folder given, and resuming takes the paths after it.

use super::message_file::{read_message_file, require_folder, resume_after_file, sorted_entries};
use super::source::{
    item_of_read, FileSourceOptions, MessageSource, SourceError, SourceItem, SourceMessage,
};
use std::path::{Path, PathBuf};

pub struct EmlSource {
    root: PathBuf,
    max_message_size: u64,
    resume_after: Option<PathBuf>,
    /// Entries still to visit, the next one last: (relative path, is a folder).
    stack: Vec<(PathBuf, bool)>,
    done: bool,
}

impl EmlSource {
    pub fn open(root: &Path, options: &FileSourceOptions) -> Result<Self, SourceError> {
        require_folder(root)?;
        let resume_after = resume_after_file(&options.resume_after, "an eml folder")?;
        Ok(Self {
            root: root.to_path_buf(),
            max_message_size: options.max_message_size,
            resume_after,
            stack: vec![(PathBuf::new(), true)],
            done: false,
        })
    }

    /// The next file's relative path, walking depth first with each folder's entries sorted.
    fn next_path(&mut self) -> Result<Option<PathBuf>, SourceError> {
        while let Some((rel, is_dir)) = self.stack.pop() {
            if !is_dir {
                return Ok(Some(rel));
            }
            let entries = sorted_entries(&self.root.join(&rel), false)?;
            for (name, is_dir, is_file) in entries.into_iter().rev() {
                let child = rel.join(&name);
                if is_dir || (is_file && is_eml(&child)) {
                    self.stack.push((child, is_dir));
                }
            }
        }
        Ok(None)
    }
}

fn is_eml(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("eml"))
}

impl Iterator for EmlSource {
    type Item = SourceItem;

    fn next(&mut self) -> Option<SourceItem> {
        if self.done {
            return None;
        }
        let result: Result<Option<SourceMessage>, SourceError> = (|| loop {
            let Some(rel) = self.next_path()? else {
                return Ok(None);
            };
            if self
                .resume_after
                .as_ref()
                .is_some_and(|after| rel <= *after)
            {
                continue;
            }
            return read_message_file(&self.root, &rel, self.max_message_size).map(Some);
        })();
        item_of_read(&mut self.done, result)
    }
}

impl MessageSource for EmlSource {
    fn description(&self) -> String {
        format!("eml folder {}", self.root.display())
    }
}
