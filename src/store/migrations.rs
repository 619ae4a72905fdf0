//! Bringing a database to the current schema: sqlx's migrator over `migrations/`, after the
//! repair of databases made before two migrations were edited.
//!
//! Migrations are forward-only (docs/MIGRATIONS.md): once one has landed it is never edited,
//! and a change is a new migration with the next free number. sqlx records a SHA-384 of each
//! migration's text when it applies it and refuses a database whose record differs from the
//! text it has. 0005 and 0007 were edited after they landed, so a database made in between
//! records their first texts; [`EDITED`] says how to bring such a database to what the edited
//! texts make, and its record to their checksums. Any other difference is refused with a
//! message that names the migration.

use super::{StoreError, MIGRATOR};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{ConnectOptions, Connection, SqliteConnection};

/// A migration edited after it landed: the checksum of its landed text, and what the edit
/// changed in the schema.
struct EditedMigration {
    version: i64,
    /// SHA-384 (hex) of the text as it landed, as sqlx recorded it.
    landed: &'static str,
    change: SchemaChange,
}

enum SchemaChange {
    /// 0005: `import_jobs.staged` (messages staged by an import's first pass) was added
    /// between `checkpoint` and `seen`, and a comment inside the table changed.
    ImportJobsStaged,
    /// 0007: the index `messages_account_received` was taken out (SQLite chose it for the
    /// per-ticket message queries and scanned a whole account).
    NoMessagesAccountReceived,
}

const EDITED: [EditedMigration; 2] = [
    EditedMigration {
        version: 5,
        landed: "7f03b87409d3e40b3e0f6bd1df8f43e1809bb55a24dfdb206a78b2f84d48d0cf\
                 cf00d21988fcb5f56ea6733b25a8a4a5",
        change: SchemaChange::ImportJobsStaged,
    },
    EditedMigration {
        version: 7,
        landed: "48f1fc9ee12bf9371d067a7abcb78f37f9bf0f6d40da2f8b09f206558c814fb1\
                 4fe17aba62a144846d6a1a9ca74ad6cb",
        change: SchemaChange::NoMessagesAccountReceived,
    },
];

/// Repairs what [`EDITED`] covers, then applies the pending migrations, on a connection of
/// its own (the pool only reads; the writer starts once the schema is there).
pub(super) async fn migrate(options: &SqliteConnectOptions) -> Result<(), StoreError> {
    repair_edited(options).await?;
    // A pool of one rather than a bare connection: sqlx's migrator over `&mut
    // SqliteConnection` makes every future that opens a store lose `Send`.
    let conn = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options.clone())
        .await?;
    let result = MIGRATOR.run(&conn).await;
    conn.close().await;
    Ok(result?)
}

/// Checks every recorded migration against the migrations this build has; repairs the
/// landed texts of edited ones. On a connection of its own, without foreign-key
/// enforcement: rebuilding a table referenced by others needs it off, and a pooled
/// connection must never be handed out in that state.
async fn repair_edited(options: &SqliteConnectOptions) -> Result<(), StoreError> {
    let mut conn = options.clone().foreign_keys(false).connect().await?;
    let result = repair_on(&mut conn).await;
    let _ = conn.close().await;
    result
}

async fn repair_on(conn: &mut SqliteConnection) -> Result<(), StoreError> {
    let recorded: Option<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
    )
    .fetch_optional(&mut *conn)
    .await?;
    if recorded.is_none() {
        return Ok(());
    }
    let applied: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut *conn)
            .await?;
    for (version, checksum) in applied {
        let Some(migration) = MIGRATOR.iter().find(|m| m.version == version) else {
            return Err(StoreError::UnknownMigration {
                version,
                problem: "that this build of Postern does not have",
            });
        };
        if *migration.checksum == *checksum {
            continue;
        }
        let edited = EDITED
            .iter()
            .find(|e| e.version == version && hex::decode(e.landed).ok() == Some(checksum.clone()));
        let Some(edited) = edited else {
            return Err(StoreError::UnknownMigration {
                version,
                problem: "from a text that no release of this migration had",
            });
        };
        repair(conn, edited, &migration.sql, &migration.checksum).await?;
    }
    Ok(())
}

/// Brings the schema to what the edited migration makes and records its checksum, in one
/// transaction.
async fn repair(
    conn: &mut SqliteConnection,
    edited: &EditedMigration,
    edited_sql: &str,
    edited_checksum: &[u8],
) -> Result<(), StoreError> {
    // Renaming a table must leave other tables' references to it alone (they name the
    // table rebuilt under the same name).
    sqlx::query("PRAGMA legacy_alter_table = ON")
        .execute(&mut *conn)
        .await?;
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    let what = match edited.change {
        SchemaChange::ImportJobsStaged => add_import_jobs_staged(&mut tx, edited_sql).await?,
        SchemaChange::NoMessagesAccountReceived => {
            sqlx::query("DROP INDEX IF EXISTS messages_account_received")
                .execute(&mut *tx)
                .await?;
            "dropped the index messages_account_received"
        }
    };
    sqlx::query("UPDATE _sqlx_migrations SET checksum = ? WHERE version = ?")
        .bind(edited_checksum)
        .bind(edited.version)
        .execute(&mut *tx)
        .await?;
    let broken: Vec<(String,)> = sqlx::query_as("SELECT \"table\" FROM pragma_foreign_key_check")
        .fetch_all(&mut *tx)
        .await?;
    if let Some((table,)) = broken.first() {
        return Err(StoreError::Invalid(format!(
            "repairing migration {}: a row of {table} lost its reference; nothing was changed",
            edited.version
        )));
    }
    tx.commit().await?;
    tracing::warn!(
        migration = edited.version,
        "this database was made before migration {} was edited: {what}, and recorded the \
         edited text",
        edited.version
    );
    Ok(())
}

/// Rebuilds `import_jobs` with the table as the edited 0005 creates it (the column in its
/// place, as in a new database), keeping every row, index and trigger.
async fn add_import_jobs_staged(
    tx: &mut SqliteConnection,
    edited_sql: &str,
) -> Result<&'static str, StoreError> {
    let columns: Vec<String> =
        sqlx::query_scalar("SELECT name FROM pragma_table_info('import_jobs')")
            .fetch_all(&mut *tx)
            .await?;
    if columns.iter().any(|c| c == "staged") {
        return Ok("import_jobs already had its staged column");
    }
    let create = create_table_statement(edited_sql, "import_jobs").ok_or_else(|| {
        StoreError::Invalid("migration 5 no longer creates import_jobs".to_string())
    })?;
    let dependents: Vec<String> = sqlx::query_scalar(
        "SELECT sql FROM sqlite_master WHERE tbl_name = 'import_jobs' \
         AND type IN ('index', 'trigger') AND sql IS NOT NULL ORDER BY rowid",
    )
    .fetch_all(&mut *tx)
    .await?;
    sqlx::query("ALTER TABLE import_jobs RENAME TO postern_repair_import_jobs")
        .execute(&mut *tx)
        .await?;
    sqlx::query(create).execute(&mut *tx).await?;
    let rebuilt: Vec<String> =
        sqlx::query_scalar("SELECT name FROM pragma_table_info('import_jobs')")
            .fetch_all(&mut *tx)
            .await?;
    if let Some(lost) = columns.iter().find(|c| !rebuilt.contains(c)) {
        return Err(StoreError::Invalid(format!(
            "repairing migration 5: import_jobs has a column {lost} that migration 5 does not \
             create; nothing was changed"
        )));
    }
    let list = columns
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ");
    sqlx::query(&format!(
        "INSERT INTO import_jobs ({list}) SELECT {list} FROM postern_repair_import_jobs"
    ))
    .execute(&mut *tx)
    .await?;
    sqlx::query("DROP TABLE postern_repair_import_jobs")
        .execute(&mut *tx)
        .await?;
    for sql in &dependents {
        sqlx::query(sql).execute(&mut *tx).await?;
    }
    Ok("rebuilt import_jobs with its staged column")
}

/// The `CREATE TABLE name (...)` statement of a migration's text, as SQLite records it.
fn create_table_statement<'a>(sql: &'a str, name: &str) -> Option<&'a str> {
    let start = sql.find(&format!("CREATE TABLE {name} ("))?;
    let end = start + sql[start..].find("\n);")? + "\n)".len();
    Some(&sql[start..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use sha2::{Digest, Sha384};
    use sqlx::SqlitePool;
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::str::FromStr;

    const FORWARD_ONLY: &str = "migrations are forward-only: undo the edit and put the change \
                                in a new migration with the next free number (docs/MIGRATIONS.md)";

    fn repo() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    fn sha384_hex(bytes: &[u8]) -> String {
        hex::encode(Sha384::digest(bytes))
    }

    /// The names of migrations/*.sql, in order.
    fn migration_files() -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(repo().join("migrations"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        names.sort();
        names
    }

    /// migrations/CHECKSUMS: `sha384  file` lines, as `sha384sum *.sql` prints them.
    fn manifest() -> Vec<(String, String)> {
        std::fs::read_to_string(repo().join("migrations/CHECKSUMS"))
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let (sum, file) = l
                    .split_once("  ")
                    .unwrap_or_else(|| panic!("CHECKSUMS line {l:?} is not `sha384  file`"));
                (file.to_string(), sum.to_string())
            })
            .collect()
    }

    /// Every migration is the text the manifest pins, every pinned migration is still there,
    /// and what the binary embeds is those texts.
    #[test]
    fn every_migration_is_the_text_its_manifest_line_pins() {
        let manifest = manifest();
        let files = migration_files();
        for file in &files {
            let text = std::fs::read(repo().join("migrations").join(file)).unwrap();
            match manifest.iter().find(|(f, _)| f == file) {
                None => panic!(
                    "migrations/{file} has no line in migrations/CHECKSUMS: a new migration \
                     adds one (`cd migrations && sha384sum {file} >> CHECKSUMS`)"
                ),
                Some((_, sum)) => assert_eq!(
                    &sha384_hex(&text),
                    sum,
                    "migrations/{file} is not the text it landed with: {FORWARD_ONLY}"
                ),
            }
        }
        for (file, _) in &manifest {
            assert!(
                files.contains(file),
                "migrations/{file} is gone: a database that applied it no longer opens; \
                 {FORWARD_ONLY}"
            );
        }
        let embedded: Vec<String> = MIGRATOR.iter().map(|m| hex::encode(&m.checksum)).collect();
        let pinned: Vec<String> = manifest.into_iter().map(|(_, sum)| sum).collect();
        assert_eq!(
            embedded, pinned,
            "the migrations built in are the pinned ones, in order"
        );
    }

    /// The texts the repair recognises are the landed texts kept in tests/fixtures.
    #[test]
    fn the_landed_texts_in_the_fixtures_are_the_ones_repaired() {
        for edited in &EDITED {
            let file = landed_fixture(edited.version);
            let text = std::fs::read(&file).unwrap();
            assert_eq!(sha384_hex(&text), edited.landed, "{}", file.display());
        }
    }

    fn landed_fixture(version: i64) -> PathBuf {
        let dir = repo().join("tests/fixtures/migrations/landed");
        std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{version:04}_")))
            })
            .unwrap_or_else(|| panic!("no landed text of migration {version} in {}", dir.display()))
    }

    fn git(args: &[&str]) -> std::process::Output {
        Command::new("git")
            .arg("-C")
            .arg(repo())
            .args(args)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "git cannot be run ({e}), but this checkout has a .git: install git to \
                     check that no migration was edited since it was first committed"
                )
            })
    }

    /// Against the history: every migration is the text of the commit that added it, but
    /// for the two edited before this check existed, whose landed texts the repair knows.
    /// Without a .git (a source tarball) there is no history to read and the manifest check
    /// above stands alone; a shallow clone or a missing git fails, since the check would
    /// otherwise pass without looking.
    #[test]
    fn no_migration_differs_from_the_commit_that_added_it() {
        if !repo().join(".git").exists() {
            eprintln!(
                "skipped: {} has no .git, so no history to check migrations against (the \
                 CHECKSUMS manifest check still ran)",
                repo().display()
            );
            return;
        }
        let shallow = git(&["rev-parse", "--is-shallow-repository"]);
        assert!(shallow.status.success(), "git rev-parse: {shallow:?}");
        assert_eq!(
            String::from_utf8_lossy(&shallow.stdout).trim(),
            "false",
            "this clone is shallow: the commits that added the migrations may be missing \
             (git fetch --unshallow)"
        );
        let mut compared = 0;
        for file in migration_files() {
            let path = format!("migrations/{file}");
            let added = git(&["log", "--diff-filter=A", "--format=%H", "--", &path]);
            assert!(added.status.success(), "git log {path}: {added:?}");
            let stdout = String::from_utf8_lossy(&added.stdout).into_owned();
            let Some(first) = stdout.lines().last() else {
                continue; // not committed yet: a new migration
            };
            let landed = git(&["show", &format!("{first}:{path}")]);
            assert!(
                landed.status.success(),
                "git show {first}:{path}: {landed:?}"
            );
            let today = std::fs::read(repo().join(&path)).unwrap();
            let version: i64 = file[..4].parse().unwrap();
            match EDITED.iter().find(|e| e.version == version) {
                Some(edited) => {
                    assert_eq!(
                        sha384_hex(&landed.stdout),
                        edited.landed,
                        "{path} as landed"
                    );
                    let pinned = MIGRATOR.iter().find(|m| m.version == version).unwrap();
                    assert_eq!(
                        sha384_hex(&today),
                        hex::encode(&pinned.checksum),
                        "{path}: {FORWARD_ONLY}"
                    );
                }
                None => assert!(
                    landed.stdout == today,
                    "{path} differs from its text in {first}, the commit that added it: \
                     {FORWARD_ONLY}"
                ),
            }
            compared += 1;
        }
        assert!(
            compared >= 15,
            "only {compared} migrations found in the history"
        );
    }

    /// A database migrated by sqlx with `texts` (version, file) in a new directory.
    async fn database_with(path: &Path, texts: &[(i64, PathBuf)]) -> SqlitePool {
        let dir = tempfile::tempdir().unwrap();
        for (_, file) in texts {
            std::fs::copy(file, dir.path().join(file.file_name().unwrap())).unwrap();
        }
        let options = SqliteConnectOptions::from_str("sqlite://")
            .unwrap()
            .filename(path)
            .create_if_missing(true);
        let pool = SqlitePool::connect_with(options).await.unwrap();
        sqlx::migrate::Migrator::new(dir.path())
            .await
            .unwrap()
            .run(&pool)
            .await
            .unwrap();
        pool
    }

    /// Today's migration files up to `last`, with the landed texts of the edited ones.
    fn landed_texts(last: i64) -> Vec<(i64, PathBuf)> {
        migration_files()
            .into_iter()
            .map(|f| (f[..4].parse::<i64>().unwrap(), f))
            .filter(|(v, _)| *v <= last)
            .map(|(v, f)| match EDITED.iter().any(|e| e.version == v) {
                true => (v, landed_fixture(v)),
                false => (v, repo().join("migrations").join(f)),
            })
            .collect()
    }

    /// The schema as SQLite records it, whitespace runs made one space.
    async fn schema(pool: &SqlitePool) -> Vec<(String, String, String)> {
        let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(
            "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' \
             ORDER BY type, name",
        )
        .fetch_all(pool)
        .await
        .unwrap();
        rows.into_iter()
            .map(|(t, n, sql)| {
                let sql = sql.unwrap_or_default();
                (t, n, sql.split_whitespace().collect::<Vec<_>>().join(" "))
            })
            .collect()
    }

    /// id, status, checkpoint, imported, staged.
    type ImportJobRow = (i64, String, Option<String>, i64, Option<i64>);

    async fn recorded(pool: &SqlitePool) -> Vec<(i64, Vec<u8>)> {
        sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations ORDER BY version")
            .fetch_all(pool)
            .await
            .unwrap()
    }

    /// A database made with the landed texts of 0005 (and 0007) opens: its schema and its
    /// record of migrations are a new database's, and its rows are kept.
    #[tokio::test]
    async fn a_database_made_with_the_landed_texts_opens_as_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let fresh = Store::open(&dir.path().join("fresh.db"), 1).await.unwrap();
        let fresh_schema = schema(fresh.pool()).await;
        assert!(
            fresh_schema
                .iter()
                .any(|(_, _, sql)| sql.contains("staged INTEGER")),
            "a new database has import_jobs.staged"
        );
        for last in [5, 7] {
            let path = dir.path().join(format!("landed-{last}.db"));
            let old = database_with(&path, &landed_texts(last)).await;
            let before = schema(&old).await;
            assert!(before.iter().all(|(_, _, sql)| !sql.contains("staged")));
            assert_eq!(
                before
                    .iter()
                    .any(|(_, n, _)| n == "messages_account_received"),
                last == 7
            );
            sqlx::query("INSERT INTO accounts (id, name, from_address, created_at) VALUES (3, 'Acme', 'support@acme.test', 1)")
                .execute(&old)
                .await
                .unwrap();
            for (id, status) in [(10, "completed"), (11, "interrupted")] {
                sqlx::query("INSERT INTO import_jobs (id, account_id, kind, source, source_key, status, checkpoint, imported, created_at, updated_at) VALUES (?, 3, 'mbox', 'a.mbox', 'k', ?, '42', 7, 5, 6)")
                    .bind(id)
                    .bind(status)
                    .execute(&old)
                    .await
                    .unwrap();
            }
            old.close().await;

            for attempt in 0..2 {
                let store = Store::open(&path, 1)
                    .await
                    .unwrap_or_else(|e| panic!("landed {last}, opening {attempt}: {e}"));
                assert_eq!(schema(store.pool()).await, fresh_schema, "landed {last}");
                assert_eq!(
                    recorded(store.pool()).await,
                    recorded(fresh.pool()).await,
                    "landed {last}: the record of migrations"
                );
                let jobs: Vec<ImportJobRow> = sqlx::query_as(
                    "SELECT id, status, checkpoint, imported, staged FROM import_jobs WHERE id <= 11 ORDER BY id",
                )
                .fetch_all(store.pool())
                .await
                .unwrap();
                assert_eq!(
                    jobs,
                    vec![
                        (10, "completed".into(), Some("42".into()), 7, None),
                        (11, "interrupted".into(), Some("42".into()), 7, None)
                    ]
                );
                // New jobs take ids after the kept ones.
                let next: i64 = store
                    .write(|conn| Ok(conn.query_row("INSERT INTO import_jobs (account_id, kind, source, source_key, created_at, updated_at) VALUES (3, 'eml', 'd', 'k2', 1, 1) RETURNING id", [], |r| r.get(0))?))
                    .await
                    .unwrap();
                assert!(next > 11 + attempt, "{next}");
                store.close().await;
            }
        }
    }

    /// A recorded migration whose text is neither today's nor a landed one this build
    /// knows, or that this build does not have, is refused with its number, and nothing
    /// is changed.
    #[tokio::test]
    async fn an_unknown_migration_record_is_refused_by_number() {
        let dir = tempfile::tempdir().unwrap();
        let edited = dir.path().join("0003_api.sql");
        let mut text = std::fs::read(repo().join("migrations/0003_api.sql")).unwrap();
        text.extend_from_slice(b"-- edited\n");
        std::fs::write(&edited, text).unwrap();
        let mut texts = landed_texts(2);
        texts.push((3, edited));
        let path = dir.path().join("edited.db");
        database_with(&path, &texts).await.close().await;
        let err = Store::open(&path, 1).await.err().expect("refused");
        assert!(
            matches!(err, StoreError::UnknownMigration { version: 3, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("migration 3"), "{err}");

        let path = dir.path().join("ahead.db");
        let pool = database_with(&path, &landed_texts(7)).await;
        sqlx::query("INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (15, 'from a branch', true, x'00', 0)")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        let err = Store::open(&path, 1).await.err().expect("refused");
        assert!(
            matches!(err, StoreError::UnknownMigration { version: 15, .. }),
            "{err}"
        );
        let pool = SqlitePool::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations")
            .fetch_all(&pool)
            .await
            .unwrap();
        assert_eq!(
            versions,
            vec![1, 2, 3, 4, 5, 6, 7, 15],
            "nothing applied or repaired"
        );
    }
}
