//! One serving process per database. `postern serve` holds an exclusive lock (flock) on a file
//! beside the database while it runs; `postern import` on the command line, which starts a
//! group-commit writer of its own, holds the same lock shared. The operating system releases
//! it when the process ends, however it ends. So a second `serve`, an import beside a running
//! server, or a server started beside a running import, sees the lock and refuses with a clear
//! message instead of competing with the other writer for the file. Command-line imports may
//! run side by side (each import has its own lock too: import/job_lock.rs).
//!
//! The lock file is never deleted: deleting it would race with a process that has just opened
//! it (see import/job_lock.rs for that dance); an empty file left in the data folder costs
//! nothing.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ServeLockError {
    #[error(
        "cannot create the server lock {path}: {cause}; check that the data folder is \
         writable by the user running postern"
    )]
    Io {
        path: PathBuf,
        // Not `source`: the message says it already, and anyhow would print it twice.
        cause: std::io::Error,
    },
    #[error(
        "another Postern process writes to this database (a `postern serve`, or a command \
         on the command line such as `postern import`; lock {path} is held); wait for it or \
         stop it first, or give this server its own data_dir"
    )]
    Held { path: PathBuf },
    #[error(
        "`postern serve` is running on this data folder (lock {path} is held): import through \
         it instead (POST /api/v1/imports, see docs/IMPORT.md), or stop it and run this \
         command again"
    )]
    ServerRunning { path: PathBuf },
}

/// Held while `postern serve` runs; dropping it releases the lock.
#[derive(Debug)]
pub struct ServeLock {
    _file: File,
}

fn lock_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".serve.lock");
    PathBuf::from(name)
}

fn open(path: &Path) -> Result<File, ServeLockError> {
    crate::private_files::open_options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|cause| ServeLockError::Io {
            path: path.to_path_buf(),
            cause,
        })
}

impl ServeLock {
    /// For `postern serve`: the database at `database` to itself, or who holds it.
    pub fn serve(database: &Path) -> Result<Self, ServeLockError> {
        let path = lock_path(database);
        let file = open(&path)?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(TryLockError::WouldBlock) => Err(ServeLockError::Held { path }),
            Err(TryLockError::Error(source)) => Err(ServeLockError::Io {
                path,
                cause: source,
            }),
        }
    }

    /// For a command on the database run on its own (`postern import`, and every other
    /// command while no server runs: cli/mod.rs): shared with other such commands, refused
    /// while a server runs.
    pub fn command(database: &Path) -> Result<Self, ServeLockError> {
        let path = lock_path(database);
        let file = open(&path)?;
        match file.try_lock_shared() {
            Ok(()) => Ok(Self { _file: file }),
            Err(TryLockError::WouldBlock) => Err(ServeLockError::ServerRunning { path }),
            Err(TryLockError::Error(source)) => Err(ServeLockError::Io {
                path,
                cause: source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_excludes_everyone_and_commands_exclude_only_servers() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("postern.db");
        let server = ServeLock::serve(&db).expect("first server");
        assert!(matches!(
            ServeLock::serve(&db),
            Err(ServeLockError::Held { .. })
        ));
        assert!(matches!(
            ServeLock::command(&db),
            Err(ServeLockError::ServerRunning { .. })
        ));
        drop(server);

        let import = ServeLock::command(&db).expect("an import");
        let _another = ServeLock::command(&db).expect("imports side by side");
        assert!(matches!(
            ServeLock::serve(&db),
            Err(ServeLockError::Held { .. })
        ));
        drop(import);
        drop(_another);
        let _server = ServeLock::serve(&db).expect("free again");
    }
}
