//! The data folder is private to the server's own user: it holds the DKIM private keys, the
//! reply-token key, API token hashes and every customer's mail. Folders Postern makes there
//! are 0700 and files 0600, set when they are created (the process umask can only take
//! bits away from these, never add any); at start, [`secure_data_dir`] takes group and
//! other permissions away from what an earlier version or an operator left more open.
//!
//! SQLite creates the database's `-wal` and `-shm` files itself, with the mode of the
//! database file: the database is therefore created here, 0600, before SQLite opens it.

use std::fs::{DirBuilder, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of the folders Postern creates.
pub const DIR_MODE: u32 = 0o700;
/// Mode of the files Postern creates.
pub const FILE_MODE: u32 = 0o600;
/// Permission bits of group and others: none of them is wanted in the data folder.
const OPEN_TO_OTHERS: u32 = 0o077;

/// Creates `path` and its missing parents, each 0700.
pub fn create_dir_all(path: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)
}

/// [`create_dir_all`] for async code.
pub async fn create_dir_all_async(path: &Path) -> io::Result<()> {
    tokio::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)
        .await
}

/// Options that create files 0600; the caller adds read/write/create flags.
pub fn open_options() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.mode(FILE_MODE);
    o
}

/// [`open_options`] for async code.
pub fn open_options_async() -> tokio::fs::OpenOptions {
    let mut o = tokio::fs::OpenOptions::new();
    o.mode(FILE_MODE);
    o
}

/// Creates the file 0600 if it is missing; an existing file is left as it is.
pub fn create_file_if_missing(path: &Path) -> io::Result<()> {
    match open_options().write(true).create_new(true).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// One permission change made at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tightened {
    pub path: PathBuf,
    pub from: u32,
    pub to: u32,
}

/// What [`secure_data_dir`] did, and what it could not do.
#[derive(Debug, Default)]
pub struct DataDirReport {
    pub tightened: Vec<Tightened>,
    /// Paths whose mode could not be changed (owned by another user, read-only mount).
    pub failed: Vec<(PathBuf, io::Error)>,
}

impl DataDirReport {
    /// `data 0755->0700, data/postern.db 0644->0600, ...`, at most `max` entries.
    pub fn describe(&self, max: usize) -> String {
        let mut parts: Vec<String> = self
            .tightened
            .iter()
            .take(max)
            .map(|t| format!("{} {:04o}->{:04o}", t.path.display(), t.from, t.to))
            .collect();
        if self.tightened.len() > max {
            parts.push(format!("and {} more", self.tightened.len() - max));
        }
        parts.join(", ")
    }

    /// Logs what was changed (one line) and what could not be (one line).
    pub fn log(&self) {
        if !self.tightened.is_empty() {
            tracing::warn!(
                changed = self.tightened.len(),
                paths = %self.describe(20),
                "files of the data folder were readable by other local users: their \
                 permissions were tightened (folders 0700, files 0600)"
            );
        }
        if !self.failed.is_empty() {
            let paths: Vec<String> = self
                .failed
                .iter()
                .map(|(p, e)| format!("{} ({e})", p.display()))
                .collect();
            tracing::error!(
                paths = %paths.join(", "),
                "cannot make these files of the data folder private; other local users may \
                 read them: chown them to the user running postern and chmod go-rwx them"
            );
        }
    }
}

/// Takes group and other permissions away from `path`, and with `recursive` from
/// everything below a folder. Symbolic links are not followed.
fn tighten(path: &Path, recursive: bool, report: &mut DataDirReport) {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return,
        Err(e) => {
            report.failed.push((path.to_path_buf(), e));
            return;
        }
    };
    if meta.file_type().is_symlink() {
        return;
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & OPEN_TO_OTHERS != 0 {
        let to = mode & !OPEN_TO_OTHERS;
        match std::fs::set_permissions(path, std::fs::Permissions::from_mode(to)) {
            Ok(()) => report.tightened.push(Tightened {
                path: path.to_path_buf(),
                from: mode,
                to,
            }),
            Err(e) => report.failed.push((path.to_path_buf(), e)),
        }
    }
    if recursive && meta.is_dir() {
        match std::fs::read_dir(path) {
            Ok(entries) => {
                for entry in entries.flatten() {
                    tighten(&entry.path(), true, report);
                }
            }
            Err(e) => report.failed.push((path.to_path_buf(), e)),
        }
    }
}

/// The files SQLite keeps beside a database.
fn database_files(database: &Path) -> Vec<PathBuf> {
    let mut files = vec![database.to_path_buf()];
    // `.serve.lock`: the lock `postern serve` holds (store/serve_lock.rs).
    for suffix in ["-wal", "-shm", "-journal", ".serve.lock"] {
        let mut name = database.as_os_str().to_owned();
        name.push(suffix);
        files.push(PathBuf::from(name));
    }
    files
}

/// Makes the data folder private at start: creates it 0700 when missing; takes group and
/// other permissions away from the folder itself, from the database and the files SQLite
/// keeps beside it (wherever `store.path` puts them), and from everything in the
/// `imports` folder (uploads, staging copies, locks, CA certificates). Only these: a data
/// folder set to a shared place (the working directory) keeps its other files as they are.
pub fn secure_data_dir(data_dir: &Path, database: &Path) -> io::Result<DataDirReport> {
    create_dir_all(data_dir)?;
    let mut report = DataDirReport::default();
    tighten(data_dir, false, &mut report);
    for file in database_files(database) {
        tighten(&file, false, &mut report);
    }
    tighten(&data_dir.join("imports"), true, &mut report);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path)
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(0)
    }

    #[test]
    fn an_open_tree_is_made_private_and_said_so_and_other_files_are_left_alone() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let data = tmp.path().join("data");
        let imports = data.join("imports");
        let eml = imports.join("upload-1");
        std::fs::create_dir_all(&eml).unwrap_or_else(|e| panic!("{e}"));
        let db = data.join("postern.db");
        let files = [
            db.clone(),
            data.join("postern.db-wal"),
            data.join("postern.db-shm"),
            imports.join("job-1.staging"),
            eml.join("message.eml"),
            data.join("notes.txt"),
        ];
        for f in &files {
            std::fs::write(f, b"x").unwrap_or_else(|e| panic!("{e}"));
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        for d in [&data, &imports, &eml] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let report = secure_data_dir(&data, &db).unwrap_or_else(|e| panic!("{e}"));
        assert!(report.failed.is_empty(), "{:?}", report.failed);
        for d in [&data, &imports, &eml] {
            assert_eq!(mode(d), 0o700, "{}", d.display());
        }
        for f in &files[..5] {
            assert_eq!(mode(f), 0o600, "{}", f.display());
        }
        assert_eq!(mode(&files[5]), 0o644, "not Postern's: left alone");
        assert_eq!(report.tightened.len(), 8, "{:?}", report.tightened);
        assert!(report.describe(2).ends_with("and 6 more"));
        // Once private, nothing more to do.
        let again = secure_data_dir(&data, &db).unwrap_or_else(|e| panic!("{e}"));
        assert!(again.tightened.is_empty(), "{:?}", again.tightened);
    }
}
