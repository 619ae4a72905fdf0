//! One serving process per database. `postern serve` holds an exclusive lock (flock) on a file
//! beside the database while it runs; the operating system releases it when the process ends,
//! however it ends. A second `serve` on the same data, or a command that would start a second
//! group-commit writer beside the running one (`postern import`), sees the lock and refuses
//! with a clear message instead of competing with the server's writer for the file.
//!
//! The lock file is never deleted: deleting it would race with a process that has just opened
//! it (see import/job_lock.rs for that dance); an empty file left in the data folder costs
//! nothing.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ServeLockError {
    #[error(
        "cannot create the server lock {path}: {source}; check that the data folder is \
         writable by the user running postern"
    )]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "another `postern serve` is running on this database (lock {path} is held); stop it \
         first, or give this server its own data_dir"
    )]
    Held { path: PathBuf },
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
        .map_err(|source| ServeLockError::Io {
            path: path.to_path_buf(),
            source,
        })
}

impl ServeLock {
    /// Takes the lock of the database at `database`, or says who holds it.
    pub fn acquire(database: &Path) -> Result<Self, ServeLockError> {
        let path = lock_path(database);
        let file = open(&path)?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(TryLockError::WouldBlock) => Err(ServeLockError::Held { path }),
            Err(TryLockError::Error(source)) => Err(ServeLockError::Io { path, source }),
        }
    }

    /// Whether a server runs on the database at `database` now. `None` when there is no
    /// lock file at all (no server ever ran here, or the folder is not ours to write).
    pub fn held_by_a_server(database: &Path) -> Result<Option<PathBuf>, ServeLockError> {
        let path = lock_path(database);
        if !path.exists() {
            return Ok(None);
        }
        let file = open(&path)?;
        match file.try_lock() {
            // Released when `file` is dropped, at once.
            Ok(()) => Ok(None),
            Err(TryLockError::WouldBlock) => Ok(Some(path)),
            Err(TryLockError::Error(source)) => Err(ServeLockError::Io { path, source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_released_on_drop() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("postern.db");
        assert!(ServeLock::held_by_a_server(&db).expect("check").is_none());
        let lock = ServeLock::acquire(&db).expect("first");
        assert!(matches!(
            ServeLock::acquire(&db),
            Err(ServeLockError::Held { .. })
        ));
        let held = ServeLock::held_by_a_server(&db).expect("check");
        assert_eq!(held, Some(dir.path().join("postern.db.serve.lock")));
        drop(lock);
        assert!(ServeLock::held_by_a_server(&db).expect("check").is_none());
        let _again = ServeLock::acquire(&db).expect("free again");
    }
}
