//! An IMAP account read folder by folder, UID by UID, without changing anything on the server:
//! folders are opened with EXAMINE (read-only) and bodies fetched with BODY.PEEK[], so no
//! message becomes \Seen.
//!
//! A blocking iterator driven by its own single-threaded tokio runtime: run it on a thread of
//! its own (or `spawn_blocking`), never inside an async task. Per folder: `UID SEARCH` (with
//! the UID range, the resume point and `SINCE`/`BEFORE` for the date range), then batches:
//! `UID FETCH (UID RFC822.SIZE FLAGS INTERNALDATE)` for up to `batch_size` UIDs, and
//! `UID FETCH (UID BODY.PEEK[])` for those within the size cap, at most `batch_bytes` a batch.
//! Memory: one batch of bodies and the UID list of the folder being read.

use super::headers::{header_block, header_date};
use super::imap_connect::{connect_and_login, ImapConfig, ImapSession};
use super::source::{
    item_of_read, Content, DateSource, MessageFlags, MessageSource, Position, SourceError,
    SourceItem, SourceMessage,
};
use async_imap::types::{Fetch, Flag};
use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use std::collections::{HashMap, VecDeque};

/// A folder of the account, as LIST shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImapFolder {
    pub name: String,
    pub delimiter: Option<String>,
    /// `false` for a folder that only holds other folders (`\Noselect`).
    pub selectable: bool,
}

/// Logs in and lists the account's folders.
pub fn list_imap_folders(config: &ImapConfig) -> Result<Vec<ImapFolder>, SourceError> {
    let rt = runtime(config)?;
    rt.block_on(async {
        let mut session = connect_and_login(config).await?;
        let folders = list(&mut session, config).await?;
        let _ = session.logout().await;
        Ok(folders)
    })
}

async fn list(
    session: &mut ImapSession,
    config: &ImapConfig,
) -> Result<Vec<ImapFolder>, SourceError> {
    let command_error = |e: async_imap::error::Error| SourceError::ImapCommand {
        server: config.server(),
        command: "LIST".into(),
        reason: e.to_string(),
    };
    let names = tokio::time::timeout(config.timeout, async {
        session
            .list(Some(""), Some("*"))
            .await?
            .try_collect::<Vec<_>>()
            .await
    })
    .await
    .map_err(|_| SourceError::ImapCommand {
        server: config.server(),
        command: "LIST".into(),
        reason: "no answer".into(),
    })?
    .map_err(command_error)?;
    let mut folders: Vec<ImapFolder> = names
        .iter()
        .map(|n| ImapFolder {
            name: n.name().to_string(),
            delimiter: n.delimiter().map(str::to_string),
            selectable: !n
                .attributes()
                .iter()
                .any(|a| matches!(a, async_imap::types::NameAttribute::NoSelect)),
        })
        .collect();
    folders.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(folders)
}

fn runtime(config: &ImapConfig) -> Result<tokio::runtime::Runtime, SourceError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| SourceError::ImapConnect {
            server: config.server(),
            reason: format!("cannot start the I/O runtime: {e}"),
        })
}

struct FolderState {
    name: String,
    uid_validity: u32,
    pending: VecDeque<u32>,
    last_delivered: Option<u32>,
}

pub struct ImapSource {
    rt: tokio::runtime::Runtime,
    session: Option<ImapSession>,
    config: ImapConfig,
    folders: VecDeque<String>,
    /// The checkpoint's folder, UIDVALIDITY and last UID, until that folder is opened.
    resume: Option<(String, u32, u32)>,
    current: Option<FolderState>,
    ready: VecDeque<SourceMessage>,
    done: bool,
}

impl ImapSource {
    /// Logs in, checks that the folders exist and that the checkpoint (if any) names one of
    /// them. Errors name the server, the user and the folder.
    pub fn connect(mut config: ImapConfig) -> Result<Self, SourceError> {
        let rt = runtime(&config)?;
        let mut session = rt.block_on(connect_and_login(&config))?;
        // The password is not needed any more: do not keep it in memory.
        config.password = String::new();
        let wanted: Vec<String> = if config.folders.is_empty() {
            vec!["INBOX".to_string()]
        } else {
            config.folders.clone()
        };
        let existing = rt.block_on(list(&mut session, &config))?;
        let mut folders = VecDeque::new();
        for w in &wanted {
            let found = existing.iter().find(|f| {
                f.selectable
                    && (f.name == *w
                        || (f.name.eq_ignore_ascii_case("INBOX")
                            && w.eq_ignore_ascii_case("INBOX")))
            });
            match found {
                Some(f) => folders.push_back(f.name.clone()),
                None => {
                    return Err(SourceError::FolderNotFound {
                        source_name: format!("{} (user {})", config.server(), config.user),
                        folder: w.clone(),
                        available: existing
                            .iter()
                            .filter(|f| f.selectable)
                            .map(|f| f.name.clone())
                            .collect(),
                    })
                }
            }
        }
        let resume = match &config.resume_after {
            None => None,
            Some(Position::Imap {
                folder,
                uid_validity,
                uid,
            }) => {
                let Some(index) = folders.iter().position(|f| f == folder) else {
                    return Err(SourceError::BadCheckpoint {
                        checkpoint: config
                            .resume_after
                            .as_ref()
                            .map(ToString::to_string)
                            .unwrap_or_default(),
                        reason: format!("folder {folder:?} is not among the folders to read"),
                    });
                };
                folders.drain(..index);
                Some((folder.clone(), *uid_validity, *uid))
            }
            Some(other) => {
                return Err(SourceError::BadCheckpoint {
                    checkpoint: other.to_string(),
                    reason: "an IMAP import resumes from an imap:UIDVALIDITY:UID:FOLDER checkpoint"
                        .into(),
                })
            }
        };
        Ok(Self {
            rt,
            session: Some(session),
            config,
            folders,
            resume,
            current: None,
            ready: VecDeque::new(),
            done: false,
        })
    }

    fn step(&mut self) -> Result<Option<SourceMessage>, SourceError> {
        loop {
            if let Some(message) = self.ready.pop_front() {
                if let (Some(current), Position::Imap { uid, .. }) =
                    (self.current.as_mut(), &message.position)
                {
                    current.last_delivered = Some(*uid);
                }
                return Ok(Some(message));
            }
            if self.current.as_ref().is_some_and(|c| !c.pending.is_empty()) {
                self.fetch_batch()?;
                continue;
            }
            let Some(folder) = self.folders.pop_front() else {
                if let Some(mut session) = self.session.take() {
                    let _ = self.rt.block_on(async {
                        tokio::time::timeout(self.config.timeout, session.logout()).await
                    });
                }
                return Ok(None);
            };
            self.open_folder(folder)?;
        }
    }

    fn open_folder(&mut self, folder: String) -> Result<(), SourceError> {
        let config = self.config.clone();
        let server = config.server();
        let resume = self
            .resume
            .take_if(|(f, _, _)| *f == folder)
            .map(|(_, uv, uid)| (uv, uid));
        let lost = |reason: String, uid_validity: u32| SourceError::ImapConnectionLost {
            server: server.clone(),
            folder: folder.clone(),
            uid_validity,
            last_uid: None,
            reason,
        };
        let Some(session) = self.session.as_mut() else {
            return Err(lost("the session is closed".into(), 0));
        };
        let mailbox = self
            .rt
            .block_on(async {
                tokio::time::timeout(config.timeout, session.examine(&folder)).await
            })
            .map_err(|_| lost("no answer to EXAMINE".into(), 0))?
            .map_err(|e| imap_error(&server, &folder, "EXAMINE", e, 0, None))?;
        let uid_validity = mailbox.uid_validity.unwrap_or(0);
        let mut start = 1u32;
        if let Some((checkpoint, last)) = resume {
            if checkpoint != uid_validity {
                return Err(SourceError::UidValidityChanged {
                    server,
                    folder,
                    checkpoint,
                    current: uid_validity,
                });
            }
            start = last.saturating_add(1);
        }
        let mut end = u32::MAX;
        if let Some((lo, hi)) = config.uid_range {
            start = start.max(lo);
            end = hi;
        }
        let mut uids: Vec<u32> = Vec::new();
        if mailbox.exists > 0 && start <= end && start > 0 {
            let range_end = if end == u32::MAX {
                "*".to_string()
            } else {
                end.to_string()
            };
            let query = format!(
                "UID {start}:{range_end} {}",
                config.date_range.imap_search_criteria()
            );
            let found = self
                .rt
                .block_on(async {
                    tokio::time::timeout(config.timeout, session.uid_search(query.trim())).await
                })
                .map_err(|_| lost("no answer to UID SEARCH".into(), uid_validity))?
                .map_err(|e| imap_error(&server, &folder, "UID SEARCH", e, uid_validity, None))?;
            // "n:*" always matches the highest UID, even below n.
            uids = found
                .into_iter()
                .filter(|u| (start..=end).contains(u))
                .collect();
            uids.sort_unstable();
        }
        self.current = Some(FolderState {
            name: folder,
            uid_validity,
            pending: uids.into(),
            last_delivered: resume.map(|(_, uid)| uid),
        });
        Ok(())
    }

    fn fetch_batch(&mut self) -> Result<(), SourceError> {
        let config = self.config.clone();
        let server = config.server();
        let Some(current) = self.current.as_mut() else {
            return Ok(());
        };
        let folder = current.name.clone();
        let uid_validity = current.uid_validity;
        let last = current.last_delivered;
        let take = config.batch_size.max(1).min(current.pending.len());
        let batch: Vec<u32> = current.pending.drain(..take).collect();
        let lost = |reason: String| SourceError::ImapConnectionLost {
            server: server.clone(),
            folder: folder.clone(),
            uid_validity,
            last_uid: last,
            reason,
        };
        let Some(session) = self.session.as_mut() else {
            return Err(lost("the session is closed".into()));
        };
        // Sizes, flags and dates first, so no body over the cap is ever downloaded.
        let meta = self
            .rt
            .block_on(fetch_all(
                session,
                &uid_set(&batch),
                "(UID RFC822.SIZE FLAGS INTERNALDATE)",
                config.timeout,
            ))
            .map_err(|e| fetch_error(&server, &folder, e, uid_validity, last))?;
        let mut info: HashMap<u32, (u64, MessageFlags, Option<DateTime<Utc>>)> = HashMap::new();
        for f in &meta {
            if let Some(uid) = f.uid {
                let date = f.internal_date().map(|d| d.to_utc());
                info.insert(uid, (u64::from(f.size.unwrap_or(0)), flags_of(f), date));
            }
        }
        // Bodies for a prefix of the batch that fits in batch_bytes; the rest waits.
        let mut bytes = 0u64;
        let mut prefix = 0;
        for uid in &batch {
            let size = info.get(uid).map_or(0, |i| i.0);
            if size <= config.max_message_size {
                if prefix > 0 && bytes + size > config.batch_bytes {
                    break;
                }
                bytes += size;
            }
            prefix += 1;
        }
        if let Some(current) = self.current.as_mut() {
            for uid in batch[prefix..].iter().rev() {
                current.pending.push_front(*uid);
            }
        }
        let batch = &batch[..prefix];
        let wanted: Vec<u32> = batch
            .iter()
            .copied()
            .filter(|u| info.get(u).is_some_and(|i| i.0 <= config.max_message_size))
            .collect();
        let mut bodies: HashMap<u32, Vec<u8>> = HashMap::new();
        if !wanted.is_empty() {
            let Some(session) = self.session.as_mut() else {
                return Err(lost("the session is closed".into()));
            };
            let fetched = self
                .rt
                .block_on(fetch_all(
                    session,
                    &uid_set(&wanted),
                    "(UID BODY.PEEK[])",
                    config.timeout,
                ))
                .map_err(|e| fetch_error(&server, &folder, e, uid_validity, last))?;
            for f in fetched {
                if let (Some(uid), Some(body)) = (f.uid, f.body()) {
                    bodies.insert(uid, body.to_vec());
                }
            }
        }
        for uid in batch {
            // A UID with no answer was expunged meanwhile: nothing to import.
            let Some((size, flags, internal_date)) = info.remove(uid) else {
                continue;
            };
            let content = if size > config.max_message_size {
                Content::Oversized {
                    size,
                    head: Vec::new(),
                }
            } else {
                match bodies.remove(uid) {
                    Some(body) => Content::Complete(body),
                    None => continue,
                }
            };
            let header = match &content {
                Content::Complete(raw) => header_date(header_block(raw)),
                Content::Oversized { .. } => None,
            };
            let (date, date_source) = match (header, internal_date) {
                (Some(d), _) => (Some(d), DateSource::Header),
                (None, Some(d)) => (Some(d), DateSource::ImapInternalDate),
                (None, None) => (None, DateSource::Unknown),
            };
            self.ready.push_back(SourceMessage {
                position: Position::Imap {
                    folder: folder.clone(),
                    uid_validity,
                    uid: *uid,
                },
                origin: format!(
                    "{server} folder {folder:?} UID {uid} (UIDVALIDITY {uid_validity})"
                ),
                content,
                date,
                date_source,
                flags: Some(flags),
                folder: Some(folder.clone()),
                truncated: false,
                envelope_sender: None,
            });
        }
        Ok(())
    }
}

enum FetchFailure {
    Timeout,
    Imap(async_imap::error::Error),
}

async fn fetch_all(
    session: &mut ImapSession,
    set: &str,
    query: &str,
    timeout: std::time::Duration,
) -> Result<Vec<Fetch>, FetchFailure> {
    tokio::time::timeout(timeout, async {
        session
            .uid_fetch(set, query)
            .await?
            .try_collect::<Vec<_>>()
            .await
    })
    .await
    .map_err(|_| FetchFailure::Timeout)?
    .map_err(FetchFailure::Imap)
}

fn fetch_error(
    server: &str,
    folder: &str,
    e: FetchFailure,
    uid_validity: u32,
    last_uid: Option<u32>,
) -> SourceError {
    match e {
        FetchFailure::Timeout => SourceError::ImapConnectionLost {
            server: server.to_string(),
            folder: folder.to_string(),
            uid_validity,
            last_uid,
            reason: "no answer to UID FETCH".into(),
        },
        FetchFailure::Imap(e) => imap_error(server, folder, "UID FETCH", e, uid_validity, last_uid),
    }
}

/// A NO or BAD is the server's answer to a command; anything else lost the connection.
fn imap_error(
    server: &str,
    folder: &str,
    command: &str,
    e: async_imap::error::Error,
    uid_validity: u32,
    last_uid: Option<u32>,
) -> SourceError {
    match e {
        async_imap::error::Error::No(reason) | async_imap::error::Error::Bad(reason) => {
            SourceError::ImapCommand {
                server: server.to_string(),
                command: format!("{command} in folder {folder:?}"),
                reason,
            }
        }
        other => SourceError::ImapConnectionLost {
            server: server.to_string(),
            folder: folder.to_string(),
            uid_validity,
            last_uid,
            reason: other.to_string(),
        },
    }
}

fn flags_of(fetch: &Fetch) -> MessageFlags {
    let mut flags = MessageFlags::default();
    for flag in fetch.flags() {
        match flag {
            Flag::Seen => flags.seen = true,
            Flag::Answered => flags.answered = true,
            Flag::Flagged => flags.flagged = true,
            Flag::Deleted => flags.deleted = true,
            Flag::Draft => flags.draft = true,
            Flag::Custom(k) if k.eq_ignore_ascii_case("$Forwarded") => flags.forwarded = true,
            _ => {}
        }
    }
    flags
}

/// `1:3,7,9:10` for sorted UIDs.
fn uid_set(uids: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && uids[i + 1] == end.wrapping_add(1) {
            i += 1;
            end = uids[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

impl Iterator for ImapSource {
    type Item = SourceItem;

    fn next(&mut self) -> Option<SourceItem> {
        if self.done {
            return None;
        }
        let read = self.step();
        let item = item_of_read(&mut self.done, read);
        if matches!(item, Some(Err(_))) {
            self.session = None;
        }
        item
    }
}

impl MessageSource for ImapSource {
    fn description(&self) -> String {
        format!("IMAP {} (user {})", self.config.server(), self.config.user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_sets_compress_runs() {
        assert_eq!(uid_set(&[1, 2, 3, 7, 9, 10]), "1:3,7,9:10");
        assert_eq!(uid_set(&[5]), "5");
        assert_eq!(uid_set(&[]), "");
    }
}
