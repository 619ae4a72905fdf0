//! SQLite storage: the pool, migrations, repositories and the group-commit writer.

mod accounts;
mod intake;
mod sso;
mod threading;
mod tickets;
mod writer;

pub use accounts::{AccountView, SupportAddressView};
pub use intake::{
    Intake, IntakeOutcome, Mailbox, MessageKind, NewAttachment, NewMessage, NewQuarantine,
};
pub use sso::{
    SsoFinish, SsoIdpRecord, SsoProviderRecord, SsoRequestRecord, SsoRoleRecord,
    MAX_PENDING_SSO_REQUESTS,
};
pub use threading::ThreadingConfig;
pub use tickets::{
    AttachmentView, MessageView, QuarantineView, TicketDetail, TicketEvent, TicketSummary,
};
pub use writer::CommitWriter;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, SqlitePool};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the disk is full: {0}")]
    DiskFull(String),
    #[error("database error: {0}")]
    Database(sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot create the data folder {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("the storage writer has stopped")]
    WriterGone,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        const SQLITE_FULL: &str = "13";
        const ENOSPC: i32 = 28;
        let full = match &e {
            sqlx::Error::Database(db) => db.code().as_deref() == Some(SQLITE_FULL),
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

#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
    options: SqliteConnectOptions,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    pub async fn open(path: &Path, read_connections: u32) -> Result<Self, StoreError> {
        Self::open_with_cap(path, read_connections, 0).await
    }

    /// Like [`Store::open`], with the database capped at `max_size` bytes (0: no cap).
    /// Writes beyond the cap fail as "disk full".
    pub async fn open_with_cap(
        path: &Path,
        read_connections: u32,
        max_size: u64,
    ) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::DataDir {
                path: parent.display().to_string(),
                source,
            })?;
        }
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: every commit is fsync'd before it returns. A 250 is a promise.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            .log_statements(tracing::log::LevelFilter::Trace);
        let options = if max_size > 0 {
            // SQLite's default page size is 4096 bytes.
            options.pragma("max_page_count", (max_size / 4096).max(1).to_string())
        } else {
            options
        };
        let pool = SqlitePoolOptions::new()
            .max_connections(read_connections.max(1))
            .connect_with(options.clone())
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool, options })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// A dedicated connection for the group-commit writer.
    pub async fn writer_connection(&self) -> Result<sqlx::SqliteConnection, StoreError> {
        Ok(self.options.connect().await?)
    }

    /// Readiness: the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// The reply-token key: `configured` when set, else the one generated on first start.
    pub async fn reply_token_secret(&self, configured: &str) -> Result<Vec<u8>, StoreError> {
        if !configured.is_empty() {
            return Ok(configured.as_bytes().to_vec());
        }
        let fresh = hex::encode(rand::random::<[u8; 32]>());
        sqlx::query("INSERT INTO server_secrets (name, value) VALUES ('reply_token_key', ?) ON CONFLICT DO NOTHING")
            .bind(&fresh)
            .execute(&self.pool)
            .await?;
        let key: String =
            sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = 'reply_token_key'")
                .fetch_one(&self.pool)
                .await?;
        Ok(key.into_bytes())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}
