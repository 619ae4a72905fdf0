//! One run at a time per import: a lock file per account and source in the data folder,
//! held (flock) while the import runs. The operating system releases it when the process
//! ends however it ends, so a killed import never leaves a held lock behind; a run that
//! ends deletes its lock file, so that finished imports leave no files.
//!
//! Deleting a lock file races with a process that opened it just before: that process may
//! then lock a file that no longer has a name, while a third one creates and locks a new
//! file under the same name. So a lock counts only when the file locked is still the one
//! at the path; otherwise it is taken again.

use crate::domain::AccountId;
use sha2::{Digest, Sha256};
use std::fs::{File, TryLockError};
use std::os::unix::fs::MetadataExt;
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

/// Held for the duration of a run; dropping it deletes the lock file and releases the lock.
#[derive(Debug)]
pub struct ImportLock {
    path: PathBuf,
    _file: File,
}

/// Attempts at taking a lock whose file a finishing run deletes meanwhile.
const ATTEMPTS: usize = 5;

impl ImportLock {
    pub fn acquire(dir: &Path, account: AccountId, source_key: &str) -> Result<Self, LockError> {
        let digest = hex::encode(Sha256::digest(source_key.as_bytes()));
        let path = dir.join(format!("import-{account}-{}.lock", &digest[..16]));
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        crate::private_files::create_dir_all(dir).map_err(io)?;
        let mut last = None;
        for _ in 0..ATTEMPTS {
            let file = crate::private_files::open_options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(io)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => return Err(LockError::Busy { path }),
                Err(TryLockError::Error(e)) => return Err(io(e)),
            }
            let locked = file.metadata().map_err(io)?;
            match std::fs::metadata(&path) {
                Ok(named) if named.dev() == locked.dev() && named.ino() == locked.ino() => {
                    return Ok(Self { path, _file: file });
                }
                // Deleted (or replaced) by the run that held it: take the one there now.
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(e)),
            }
            last = Some(file);
        }
        drop(last);
        Err(LockError::Busy { path })
    }
}

impl Drop for ImportLock {
    fn drop(&mut self) {
        // Deleted while still held: whoever opens the name from now on gets a new file.
        if let Err(e) = std::fs::remove_file(&self.path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot delete an import lock file");
            }
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
        let again = ImportLock::acquire(dir.path(), AccountId(1), "mbox:/a");
        assert!(again.is_ok());
        drop(again);
    }

    #[test]
    fn a_finished_run_leaves_no_lock_file_and_a_stale_handle_does_not_count() {
        let dir = tempfile::tempdir()
            .map_err(|e| e.to_string())
            .unwrap_or_else(|e| panic!("{e}"));
        let lock = ImportLock::acquire(dir.path(), AccountId(1), "mbox:/a")
            .unwrap_or_else(|e| panic!("{e}"));
        let path = lock.path.clone();
        // A process that opened the file just before the run ended.
        let stale = File::open(&path).unwrap_or_else(|e| panic!("{e}"));
        drop(lock);
        assert!(!path.exists(), "the lock file is deleted with the lock");
        assert!(
            stale.try_lock().is_ok(),
            "the old file has no name any more"
        );
        // The next run locks a new file under the name, not the nameless one.
        let next = ImportLock::acquire(dir.path(), AccountId(1), "mbox:/a");
        assert!(next.is_ok(), "{next:?}");
        assert!(path.exists());
        let mode = std::fs::metadata(&path)
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
            .unwrap_or(0);
        assert_eq!(mode, 0o600);
        drop(next);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
