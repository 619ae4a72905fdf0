//! Historic mailbox import. The sources (one file each) turn an mbox, a Maildir, a folder
//! of .eml files or an IMAP account into a stream of raw messages, each with a stable
//! position to checkpoint and resume from, and touch no store (docs/IMPORT-SOURCES.md);
//! `pipeline` parses them in parallel and commits them in batches with a checkpoint
//! (docs/IMPORT.md).
//!
//! Every source is a blocking `Iterator<Item = Result<SourceMessage, SourceError>>`
//! ([`MessageSource`]), meant to run on a thread of its own; the IMAP one drives its own
//! single-threaded tokio runtime (so it must not be iterated from inside an async task: use
//! `spawn_blocking` or a thread).

pub mod date_range;
pub mod decompress_limit;
pub mod eml;
mod headers;
pub mod imap;
pub mod imap_connect;
pub mod job_lock;
pub mod maildir;
pub mod mbox;
mod message_file;
pub mod pace;
pub mod pipeline;
pub mod progress;
pub mod runner;
pub mod source;
pub mod staging;
pub mod upload;

pub use crate::domain::ImportTotals;
pub use date_range::{BadDate, DateRange};
pub use decompress_limit::{DecompressLimits, LimitExceeded};
pub use eml::EmlSource;
pub use imap::{list_imap_folders, ImapFolder, ImapSource};
pub use imap_connect::{ImapAuth, ImapConfig, ImapSecurity};
pub use job_lock::{ImportLock, LockError};
pub use maildir::{MaildirFolder, MaildirSource};
pub use mbox::{MboxDialect, MboxSource};
pub use pipeline::{
    run_import, ImportError, ImportProgress, ImportRequest, ImportSummary, QuietProgress,
    SourceSpec,
};
pub use source::{
    Content, DateSource, FileSourceOptions, MessageFlags, MessageSource, Position, SourceError,
    SourceItem, SourceMessage, DEFAULT_MAX_COMPRESSION_RATIO, DEFAULT_MAX_DECOMPRESSED_SIZE,
    DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_MAX_STAGED_SIZE, OVERSIZED_HEAD,
};
