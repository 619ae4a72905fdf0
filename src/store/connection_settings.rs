//! Every setting of every connection to the database, in one place: the group-commit
//! writer's and the checkpointer's rusqlite connections and the sqlx pool's get the same
//! pragmas from here, so that no connection runs with SQLite's defaults where the others were
//! tuned (the pool used to keep the default auto-checkpoint the writer had turned off).

use std::time::Duration;

/// How long a connection waits for a lock another connection holds.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Pragmas of every connection, in the order they are set.
const EVERY_CONNECTION: &[(&str, &str)] = &[
    ("journal_mode", "WAL"),
    // FULL: every commit is fsync'd before it returns. A 250 is a promise. (The WAL append
    // buffer relies on it too: wal_append_buffer.rs.)
    ("synchronous", "FULL"),
    ("foreign_keys", "ON"),
    // The checkpointer thread copies the WAL into the database after each commit, on the
    // other core. SQLite's own checkpoint on commit is only the backstop for when it falls
    // behind: at 4,096 pages, an import's batch of 500 messages (~12,000 pages) set it off
    // after every commit, and the writer spent a fifth of its time copying.
    ("wal_autocheckpoint", "32768"),
    // The WAL is not cut back after each restart: frames are 24 bytes longer than a page,
    // so writing into freshly truncated file space made the kernel zero and allocate blocks
    // on every frame (a seventh of the writer's time in an import). The checkpointer
    // truncates it instead once writing pauses.
    ("journal_size_limit", "-1"),
    // Statement journals (for statements that may fail half-way inside a transaction) in
    // memory rather than in temporary files.
    ("temp_store", "MEMORY"),
];

/// Pragmas of the writer's connection only.
const WRITER_ONLY: &[(&str, &str)] = &[
    // 4 MiB of page cache (SQLite's default is 2 MiB, with which the B-tree pages of the
    // indexes were read again from the file for most inserts). Not more: at most commits
    // SQLite scans the whole page-cache hash (`pcache1TruncateUnsafe`, after a B-tree balance
    // parked a page beyond the end of the file), and with 32 MiB that scan was 4% of the
    // server's CPU under SMTP load; 4 MiB used 6% less CPU there, no more time in an import,
    // and a third less memory (docs/benchmarks/journal.md). The pool's connections keep the
    // default: there are several of them and they mostly read.
    ("cache_size", "-4096"),
];

/// Pragmas of the sqlx pool's connections only.
const POOL_ONLY: &[(&str, &str)] = &[
    // The pool reads; every write goes through the writer (writer.rs). A write that does not
    // fails at once ("attempt to write a readonly database") rather than take the write lock
    // beside the writer.
    ("query_only", "ON"),
];

/// Which connection is being set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// The group-commit writer (and the checkpointer, which opens the file the same way).
    Writer,
    /// A connection of the sqlx pool.
    Pool,
    /// The connection migrations run on, before the writer starts.
    Migrations,
}

/// The pragmas of a connection of `role`, in order.
pub(super) fn pragmas(role: Role) -> impl Iterator<Item = (&'static str, &'static str)> {
    let extra: &[(&str, &str)] = match role {
        Role::Writer => WRITER_ONLY,
        Role::Pool => POOL_ONLY,
        Role::Migrations => &[],
    };
    EVERY_CONNECTION.iter().chain(extra).copied()
}

/// Sets up a rusqlite connection of `role`.
pub(super) fn apply(conn: &rusqlite::Connection, role: Role) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    for (name, value) in pragmas(role) {
        conn.pragma_update(None, name, value)?;
    }
    Ok(())
}

/// The sqlx options of a connection of `role` (the pool's, or the migrations').
pub(super) fn sqlx_options(
    options: sqlx::sqlite::SqliteConnectOptions,
    role: Role,
) -> sqlx::sqlite::SqliteConnectOptions {
    pragmas(role).fold(options.busy_timeout(BUSY_TIMEOUT), |o, (name, value)| {
        o.pragma(name, value)
    })
}

/// The `max_page_count` that caps a database of `page_size` pages at `max_size` bytes.
pub(super) fn max_page_count(max_size: u64, page_size: i64) -> u64 {
    (max_size / page_size.max(512) as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::{ConnectOptions, Row};
    use std::str::FromStr;

    /// Both kinds of connection run with the values set here, as SQLite reports them back.
    #[tokio::test]
    async fn the_writer_and_the_pool_run_with_the_same_settings() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("t.db");
        let writer = rusqlite::Connection::open(&path).expect("open");
        apply(&writer, Role::Writer).expect("apply");
        let options = sqlx::sqlite::SqliteConnectOptions::from_str("sqlite://")
            .expect("options")
            .filename(&path);
        let mut pool = sqlx_options(options, Role::Pool)
            .connect()
            .await
            .expect("connect");
        // As SQLite reports the values of EVERY_CONNECTION back.
        let expected = [
            ("journal_mode", "wal"),
            ("synchronous", "2"),
            ("foreign_keys", "1"),
            ("wal_autocheckpoint", "32768"),
            ("journal_size_limit", "-1"),
            ("temp_store", "2"),
        ];
        assert_eq!(expected.len(), EVERY_CONNECTION.len());
        for (name, want) in expected {
            let query = format!("PRAGMA {name}");
            let w = writer
                .query_row(&query, [], |r| {
                    Ok(match r.get_ref(0)? {
                        rusqlite::types::ValueRef::Integer(i) => i.to_string(),
                        other => other.as_str().unwrap_or("?").to_string(),
                    })
                })
                .expect("writer pragma");
            let row = sqlx::query(&query)
                .fetch_one(&mut pool)
                .await
                .expect("pool pragma");
            let p = row
                .try_get::<i64, _>(0)
                .map(|i| i.to_string())
                .or_else(|_| row.try_get::<String, _>(0))
                .expect("pool value");
            assert_eq!((name, w.as_str(), p.as_str()), (name, want, want));
        }
        let cache: i64 = writer
            .query_row("PRAGMA cache_size", [], |r| r.get(0))
            .expect("cache");
        assert_eq!(cache, -4096);
        // The pool only reads.
        let write = sqlx::query("CREATE TABLE t (x)").execute(&mut pool).await;
        let err = write.expect_err("the pool wrote").to_string();
        assert!(err.contains("readonly"), "{err}");
        assert_eq!(max_page_count(1 << 20, 4096), 256);
        assert_eq!(max_page_count(10, 4096), 1);
    }
}
