//! SQLite storage: the pool, migrations, repositories and the group-commit writer.

mod accounts;
mod api_queries;
mod blob_codec;
mod body_codec;
mod checkpointer;
mod connection_settings;
pub use blob_codec::{key as blob_key, pack as pack_blob};
pub use body_codec::pack as pack_body;
mod customers;
mod import_jobs;
mod intake;
mod migrations;
mod outbound;
mod rules;
mod serve_lock;
mod server_secrets;
mod sessions;
mod sso;
#[cfg(test)]
mod test_fixtures;
mod threading_repository;
mod threading_sqlite;
mod ticket_changes;
mod tickets;
mod tokens;
mod users;
mod wal_append_buffer;
mod writer;

pub use accounts::{AccountView, SupportAddressView};
pub use api_queries::{AssigneeFilter, TicketFilter, TicketSort, TicketSortKey};
pub use customers::{CustomerView, MAX_ATTRIBUTES_BYTES};
pub use import_jobs::{status as import_status, ImportJobView, NewImportJob};
pub use intake::{
    whole_text_reply, ImportCheckpoint, Intake, IntakeOutcome, Mailbox, MessageKind, NewAttachment,
    NewMessage, NewQuarantine,
};
pub use outbound::{
    ClaimedDelivery, ClaimedRecipient, DeliveryOutcome, DeliveryView, Disposition,
    NewOutboundAttachment, NewOutboundReply, NewSendingDomain, ParentMessage, ReplyContext,
    SendingDomainKeys, SendingDomainView,
};
pub use rules::{
    MacroRecord, MessageState, NewMessageEvent, NewRule, NewRuleRun, RuleRecord, RuleRunView,
    RunFilter, SimTicket, TicketEventRow, TimeFilter,
};
pub use serve_lock::{ServeLock, ServeLockError};
pub use server_secrets::{CSRF_KEY, SSO_REQUEST_KEY};
pub use sessions::SESSION_COOKIE;
pub use sso::{SsoFinish, SsoIdpRecord, SsoProviderRecord, SsoRoleRecord};
pub use threading_repository::{
    BounceRecords, Filing, Found, IntakeWrites, MessageFiler, NewTicket, QuarantineStatus,
    StoreResult, StoredCopyRow, StoredMessage, SubjectQuery, ThreadingFacts, ThreadingRepository,
    TicketUpdate,
};
pub use tickets::{
    AttachmentView, MessageView, QuarantineView, TicketDetail, TicketEvent, TicketSummary,
};
pub use tokens::{ApiTokenView, TokenCreator, TokenRefusal, API_TOKEN_PREFIX};
pub use users::{UserChanges, UserView};
pub use writer::{CommitObserver, CommitWriter, DatabaseFile};

use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{ConnectOptions, SqlitePool};
use std::path::Path;
use std::str::FromStr;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the disk is full: {0}")]
    DiskFull(String),
    #[error("database error: {0}")]
    Database(sqlx::Error),
    #[error("database error: {0}")]
    Writer(rusqlite::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(
        "cannot create {path}: {source}; check that the data folder is writable by the user \
         running postern"
    )]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    /// The database records a migration this build cannot vouch for (migrations.rs).
    #[error(
        "the database records migration {version} {problem}: it was made by another build of \
         Postern, one whose migrations were edited. Open it with that build, or restore a \
         backup made by a release; released migrations are never edited (docs/MIGRATIONS.md)"
    )]
    UnknownMigration { version: i64, problem: &'static str },
    #[error("the storage writer has stopped")]
    WriterGone,
    #[error("{0}")]
    NotFound(String),
    /// Something the caller asked for is not allowed (a client's mistake: shown to it).
    #[error("{0}")]
    Invalid(String),
    /// A failure of ours (damaged stored data, a thread that cannot start): never shown to a
    /// client, only logged.
    #[error("internal storage failure: {0}")]
    Internal(String),
    /// The thing already exists (same address in the account, ...).
    #[error("{0}")]
    Conflict(String),
}

/// SQLite's (extended) result codes that mean the disk is full: SQLITE_FULL, and
/// SQLITE_IOERR_SHMSIZE, what a full disk gives when the WAL index (postern.db-shm) must
/// grow (seen in the soak: a disk-full episode answered with it throughout).
fn is_disk_full_code(code: i32) -> bool {
    const SQLITE_FULL: i32 = 13;
    const SQLITE_IOERR_SHMSIZE: i32 = 10 | (19 << 8);
    code == SQLITE_FULL || code == SQLITE_IOERR_SHMSIZE
}

/// Whether a write failed on a UNIQUE (or PRIMARY KEY) constraint: the thing exists already.
pub(crate) fn is_unique_violation(e: &rusqlite::Error) -> bool {
    const SQLITE_CONSTRAINT_PRIMARYKEY: i32 = 19 | (6 << 8);
    const SQLITE_CONSTRAINT_UNIQUE: i32 = 19 | (8 << 8);
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == SQLITE_CONSTRAINT_UNIQUE
            || f.extended_code == SQLITE_CONSTRAINT_PRIMARYKEY)
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match &e {
            rusqlite::Error::SqliteFailure(f, _) if is_disk_full_code(f.extended_code) => {
                StoreError::DiskFull(e.to_string())
            }
            _ => StoreError::Writer(e),
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        const ENOSPC: i32 = 28;
        let full = match &e {
            sqlx::Error::Database(db) => db
                .code()
                .and_then(|c| c.parse::<i32>().ok())
                .is_some_and(is_disk_full_code),
            sqlx::Error::Io(io) => io.raw_os_error() == Some(ENOSPC),
            _ => false,
        };
        if full {
            StoreError::DiskFull(e.to_string())
        } else {
            StoreError::Database(e)
        }
    }
}

/// Milliseconds since the Unix epoch, the time unit of every column.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// How a [`Store`] opens its database (the `[store]` settings).
pub struct StoreOptions {
    /// Connections of the read pool.
    pub read_connections: u32,
    /// Largest size of the database in bytes (0: no cap); beyond it writes fail as "disk full".
    pub max_size: u64,
    /// Gather the writer's WAL appends into one write per commit (`store.wal_append_buffer`).
    pub wal_append_buffer: bool,
    /// Most jobs the writer commits in one transaction (`store.batch_max`).
    pub batch_max: usize,
    /// Told of every group commit (metrics).
    pub commit_observer: Option<CommitObserver>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            read_connections: 4,
            max_size: 0,
            wal_append_buffer: true,
            batch_max: 256,
            commit_observer: None,
        }
    }
}

/// The database: a pool of connections that read (sqlx), and the one writer thread that
/// every write goes through (writer.rs, rusqlite).
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
    file: DatabaseFile,
    lane: writer::WriteLane,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    pub async fn open(path: &Path, read_connections: u32) -> Result<Self, StoreError> {
        Self::open_with(
            path,
            StoreOptions {
                read_connections,
                ..StoreOptions::default()
            },
        )
        .await
    }

    /// Like [`Store::open`], with the database capped at `max_size` bytes (0: no cap).
    /// Writes beyond the cap fail as "disk full".
    pub async fn open_with_cap(
        path: &Path,
        read_connections: u32,
        max_size: u64,
    ) -> Result<Self, StoreError> {
        Self::open_with(
            path,
            StoreOptions {
                read_connections,
                max_size,
                ..StoreOptions::default()
            },
        )
        .await
    }

    /// Opens (creating if needed) the database at `path`, applies pending migrations and
    /// starts the writer.
    pub async fn open_with(path: &Path, options: StoreOptions) -> Result<Self, StoreError> {
        let StoreOptions {
            read_connections,
            max_size,
            wal_append_buffer,
            batch_max,
            commit_observer,
        } = options;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            crate::private_files::create_dir_all(parent).map_err(|source| StoreError::DataDir {
                path: parent.display().to_string(),
                source,
            })?;
        }
        // Created here 0600, not by SQLite (0644 less the umask): its -wal and -shm files
        // take the database's mode, and all three hold secrets.
        crate::private_files::create_file_if_missing(path).map_err(|source| {
            StoreError::DataDir {
                path: path.display().to_string(),
                source,
            }
        })?;
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .log_statements(tracing::log::LevelFilter::Trace);
        migrations::migrate(&connection_settings::sqlx_options(
            options.clone(),
            connection_settings::Role::Migrations,
        ))
        .await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(read_connections.max(1))
            .after_connect(|conn, _| Box::pin(body_codec::register_sqlx(conn)))
            .connect_with(connection_settings::sqlx_options(
                options,
                connection_settings::Role::Pool,
            ))
            .await?;
        let mut file = DatabaseFile::new(path, max_size);
        file.wal_append_buffer = wal_append_buffer;
        let lane = writer::WriteLane::spawn(
            &file,
            batch_max,
            commit_observer.unwrap_or_else(|| Box::new(|_, _| {})),
        )?;
        Ok(Self { pool, file, lane })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Runs `work` in the writer's next transaction (group commit) and returns its value
    /// once it is durable: the one way anything is written. `work` may run more than once
    /// (see [`writer::WriteLane::write`]).
    pub(crate) async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&rusqlite::Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.lane.write(work).await
    }

    pub(in crate::store) fn lane(&self) -> &writer::WriteLane {
        &self.lane
    }

    /// The database file, for the group-commit writer's own connection.
    pub fn database_file(&self) -> &DatabaseFile {
        &self.file
    }

    /// Readiness: the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Commits what the writer holds, stops it and closes the pool. Writes fail afterwards.
    pub async fn close(&self) {
        self.lane.stop().await;
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full disk is reported as such (452 4.3.1 to SMTP clients, 507 to the API, the rules
    /// worker waits for space) whichever of its two codes SQLite gives.
    #[test]
    fn both_codes_of_a_full_disk_are_disk_full() {
        for code in [13, 4874] {
            let e = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None);
            assert!(
                matches!(StoreError::from(e), StoreError::DiskFull(_)),
                "code {code}"
            );
        }
        let other = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(10), None);
        assert!(matches!(StoreError::from(other), StoreError::Writer(_)));
    }
}
