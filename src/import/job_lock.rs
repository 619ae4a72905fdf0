//! One run at a time per import: a lock file per account and source in the data folder,
//! held (flock) while the import runs. The operating system releases it when the process
//! ends however it ends, so a killed import never leaves a stale lock behind.

use crate::domain::AccountId;
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "cannot create the import lock {path}: {source}; check that the data folder is writable"
    )]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "this import is already running (lock {path} is held by another process); wait for it \
         to finish, or stop it, then run the same command again to resume"
    )]
    Busy { path: PathBuf },
}

/// Held for the duration of a run; dropping it releases the lock.
#[derive(Debug)]
pub struct ImportLock {
    _file: File,
}

impl ImportLock {
    pub fn acquire(dir: &Path, account: AccountId, source_key: &str) -> Result<Self, LockError> {
        let digest = hex::encode(Sha256::digest(source_key.as_bytes()));
        let path = dir.join(format!("import-{account}-{}.lock", &digest[..16]));
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(TryLockError::WouldBlock) => Err(LockError::Busy { path }),
            Err(TryLockError::Error(e)) => Err(io(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_run_of_the_same_import_is_refused_until_the_first_ends() {
        let dir = tempfile::tempdir()
            .map_err(|e| e.to_string())
            .unwrap_or_else(|e| panic!("{e}"));
        let first = ImportLock::acquire(dir.path(), AccountId(1), "mbox:/a");
        assert!(first.is_ok());
        let second = ImportLock::acquire(dir.path(), AccountId(1), "mbox:/a");
        assert!(matches!(second, Err(LockError::Busy { .. })), "{second:?}");
        // Another source or another account is another import.
        assert!(ImportLock::acquire(dir.path(), AccountId(1), "mbox:/b").is_ok());
        assert!(ImportLock::acquire(dir.path(), AccountId(2), "mbox:/a").is_ok());
        drop(first);
        assert!(ImportLock::acquire(dir.path(), AccountId(1), "mbox:/a").is_ok());
    }
}
