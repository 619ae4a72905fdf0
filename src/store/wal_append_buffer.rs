//! A thin SQLite VFS over the default unix VFS that gathers a connection's appends to its
//! WAL file and writes them with one `pwrite` before the commit's fsync.
//!
//! SQLite writes each WAL frame with two calls (its 24-byte header, then the page), and as a
//! frame is 24 bytes longer than a page, every call touches two pages of the kernel's page
//! cache. A commit of 60 pages was 120 system calls and 180 page-cache visits on the writer
//! thread, which every SMTP session waits for: a quarter of its time (docs/BENCHMARKS.md).
//!
//! Only WAL files are buffered, and only contiguous appends: any other access to the WAL file
//! (a read, a sync, a truncation, its size, a file control, a write elsewhere, closing it)
//! first writes out what is gathered, so SQLite sees the file exactly as if every write had
//! gone straight through. Nothing is made visible to other connections before the commit's
//! fsync (the writer runs with synchronous=FULL: SQLite syncs the WAL before it publishes the
//! frames in the wal-index), so readers and the checkpointer never look for unwritten bytes.
//! A write error surfaces at the next call that flushes, in practice the commit's sync, and
//! the transaction fails as it would have at the write.
//!
//! Nothing gathered outlives the connection's hold on the WAL write lock: SQLite releases it
//! through the database file (`xShmLock`, or `xUnlock` when it leaves exclusive locking
//! mode), and the database file of each connection knows its WAL file, so what is gathered
//! is written out before the lock goes. This matters for a transaction that spilled pages to
//! the WAL and was rolled back (a failed batch of the writer): SQLite then forgets those
//! frames without touching the file, and the next writer, another connection or another
//! process, appends its own frames at the same offsets. Written out while the lock is still
//! held, the rolled-back frames land where SQLite itself would have written them, beyond
//! the last committed frame and before the next writer's; held any longer, they would land
//! over the next writer's frames. (Discarding them instead would need to tell a rollback
//! from a commit at that point; writing them is what SQLite does without this VFS.)
//!
//! The pattern relied on (two writes per frame, frames only appended under the write lock,
//! the write lock released through the database file's `xShmLock`, the WAL file name
//! leading back to the database's, `synchronous=FULL` syncing the WAL before the frames are
//! published) was read in SQLite 3.46's sqlite3.c; [`vfs_name`] declines other versions.
//!
//! Every other file (the database, the shared-memory index) and every other method goes to
//! the unix VFS unchanged; the unix VFS-level methods (delete, access, full path, time,
//! randomness, ...) do not look at the VFS object they are called with, so they are reused
//! as they are (checked for SQLite 3.46's os_unix.c).

use rusqlite::ffi;
use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// The name connections open the database with (`Connection::open_with_flags_and_vfs`).
pub const VFS_NAME: &CStr = c"postern-wal-append";

/// Above this the gathered bytes are written at once (a large transaction spills pages to
/// the WAL before its commit; memory stays bounded).
const MAX_GATHERED: usize = 4 << 20;

/// The unix VFS writes at most 0x1ffff bytes per call (it masks the length: SQLite never
/// writes more than a page at once) and reports a shorter write as a full disk.
const MAX_UNIX_WRITE: usize = 31 * 4096;

/// Appends gathered and writes issued, for the test that proves the VFS is in use.
static GATHERED: AtomicU64 = AtomicU64::new(0);
static FLUSHES: AtomicU64 = AtomicU64::new(0);

/// (appends gathered, writes issued) since the process started.
#[cfg(test)]
fn counters() -> (u64, u64) {
    (
        GATHERED.load(Ordering::Relaxed),
        FLUSHES.load(Ordering::Relaxed),
    )
}

/// The SQLite versions whose WAL writing this VFS was checked against (see the module
/// comment): 3.46, bundled by libsqlite3-sys 0.30. Patch releases within 3.46 fix bugs and
/// keep the WAL code; a newer minor release must be read again before it is added here.
const VERIFIED_SQLITE: std::ops::RangeInclusive<c_int> = 3_046_000..=3_046_999;

/// Whether the SQLite linked in is one this VFS was checked against.
fn verified(version: c_int) -> bool {
    VERIFIED_SQLITE.contains(&version)
}

/// The VFS, registered once; `None` where the default VFS is not unix, or SQLite is not a
/// version the VFS was checked against (the buffering would then be unchecked, so
/// connections open without it; the second case is logged once).
pub fn vfs_name() -> Option<&'static str> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        // SAFETY: a plain function of SQLite, callable at any time.
        let version = unsafe { ffi::sqlite3_libversion_number() };
        if !verified(version) {
            tracing::warn!(
                sqlite = version,
                verified = ?VERIFIED_SQLITE,
                "SQLite is not a version the WAL append buffer was checked against; \
                 writing the WAL directly (store.wal_append_buffer has no effect)"
            );
            return false;
        }
        // SAFETY: registering a VFS whose struct lives for the whole process (leaked box);
        // sqlite3_vfs_find and sqlite3_vfs_register are thread-safe after initialisation.
        unsafe { register() }
    });
    if ok {
        VFS_NAME.to_str().ok()
    } else {
        None
    }
}

/// The unix VFS that does the work; set once by `register`.
static REAL_VFS: OnceLock<RealVfs> = OnceLock::new();

struct RealVfs(*mut ffi::sqlite3_vfs);
// SAFETY: the unix VFS object is a static of SQLite, used from any thread by design.
unsafe impl Send for RealVfs {}
unsafe impl Sync for RealVfs {}

unsafe fn register() -> bool {
    if ffi::sqlite3_initialize() != ffi::SQLITE_OK {
        return false;
    }
    let real = ffi::sqlite3_vfs_find(std::ptr::null());
    if real.is_null() || CStr::from_ptr((*real).zName).to_bytes() != b"unix" {
        return false;
    }
    if REAL_VFS.set(RealVfs(real)).is_err() {
        return false;
    }
    let mut vfs: ffi::sqlite3_vfs = *real;
    vfs.szOsFile = (std::mem::size_of::<ShimFile>() + (*real).szOsFile as usize) as c_int;
    vfs.zName = VFS_NAME.as_ptr();
    vfs.pNext = std::ptr::null_mut();
    vfs.xOpen = Some(shim_open);
    let vfs = Box::into_raw(Box::new(vfs));
    ffi::sqlite3_vfs_register(vfs, 0) == ffi::SQLITE_OK
}

/// What SQLite allocates for each file of this VFS: this header, then the unix file.
#[repr(C)]
struct ShimFile {
    base: ffi::sqlite3_file,
    real: *mut ffi::sqlite3_file,
    /// Only for WAL files: the contiguous bytes not yet written.
    pending: *mut Pending,
    /// The same connection's other file: on a database file, its WAL file while that is
    /// open through this VFS; on a WAL file, its database file. Both belong to one pager, so
    /// SQLite never calls them from two threads at once.
    partner: *mut ShimFile,
    /// On a database file: the name it was opened with, its key in [`DATABASE_FILES`].
    name: *const c_char,
}

/// The database files open through this VFS, by the address of the name SQLite opened them
/// with: SQLite opens a WAL file with a name from the same allocation, from which
/// `sqlite3_filename_database` gives back that address. Addresses as integers (the files
/// are reached only from their own connection, see [`ShimFile::partner`]).
static DATABASE_FILES: Mutex<Option<HashMap<usize, usize>>> = Mutex::new(None);

fn database_files() -> std::sync::MutexGuard<'static, Option<HashMap<usize, usize>>> {
    // A poisoned lock only means a panic elsewhere; the map itself is always whole.
    DATABASE_FILES.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    /// File offset of `bytes[0]`.
    offset: i64,
}

static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(shim_close),
    xRead: Some(shim_read),
    xWrite: Some(shim_write),
    xTruncate: Some(shim_truncate),
    xSync: Some(shim_sync),
    xFileSize: Some(shim_file_size),
    xLock: Some(shim_lock),
    xUnlock: Some(shim_unlock),
    xCheckReservedLock: Some(shim_check_reserved_lock),
    xFileControl: Some(shim_file_control),
    xSectorSize: Some(shim_sector_size),
    xDeviceCharacteristics: Some(shim_device_characteristics),
    xShmMap: Some(shim_shm_map),
    xShmLock: Some(shim_shm_lock),
    xShmBarrier: Some(shim_shm_barrier),
    xShmUnmap: Some(shim_shm_unmap),
    xFetch: Some(shim_fetch),
    xUnfetch: Some(shim_unfetch),
};

unsafe extern "C" fn shim_open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let Some(RealVfs(real_vfs)) = REAL_VFS.get() else {
        return ffi::SQLITE_CANTOPEN;
    };
    let shim = file as *mut ShimFile;
    let real = (file as *mut u8).add(std::mem::size_of::<ShimFile>()) as *mut ffi::sqlite3_file;
    (*shim).real = real;
    (*shim).pending = std::ptr::null_mut();
    (*shim).partner = std::ptr::null_mut();
    (*shim).name = std::ptr::null();
    (*shim).base.pMethods = std::ptr::null();
    let Some(open) = (**real_vfs).xOpen else {
        return ffi::SQLITE_CANTOPEN;
    };
    let rc = open(*real_vfs, name, real, flags, out_flags);
    if rc != ffi::SQLITE_OK || (*real).pMethods.is_null() {
        // SQLite does not call xClose on a file whose pMethods is NULL; the unix VFS has
        // cleaned up after itself.
        return if rc == ffi::SQLITE_OK {
            ffi::SQLITE_CANTOPEN
        } else {
            rc
        };
    }
    if flags & ffi::SQLITE_OPEN_MAIN_DB != 0 && !name.is_null() {
        (*shim).name = name;
        database_files()
            .get_or_insert_with(HashMap::new)
            .insert(name as usize, shim as usize);
    } else if flags & ffi::SQLITE_OPEN_WAL != 0 && !name.is_null() {
        // Gathered only when the database file can write it out before the write lock goes;
        // otherwise every write goes straight through.
        let database = ffi::sqlite3_filename_database(name);
        let found = database_files()
            .as_ref()
            .and_then(|files| files.get(&(database as usize)).copied());
        if let Some(database) = found {
            let database = database as *mut ShimFile;
            (*database).partner = shim;
            (*shim).partner = database;
            (*shim).pending = Box::into_raw(Box::default());
        }
    }
    (*shim).base.pMethods = &METHODS;
    ffi::SQLITE_OK
}

unsafe fn real(
    file: *mut ffi::sqlite3_file,
) -> (*mut ffi::sqlite3_file, &'static ffi::sqlite3_io_methods) {
    let real = (*(file as *mut ShimFile)).real;
    (real, &*(*real).pMethods)
}

/// Writes out the gathered bytes, if any. They are dropped whatever the outcome: after a
/// failed write SQLite rolls the transaction back and writes its frames again.
unsafe fn flush(file: *mut ffi::sqlite3_file) -> c_int {
    let pending = (*(file as *mut ShimFile)).pending;
    let Some(pending) = pending.as_mut() else {
        return ffi::SQLITE_OK;
    };
    if pending.bytes.is_empty() {
        return ffi::SQLITE_OK;
    }
    let (real, methods) = real(file);
    let Some(write) = methods.xWrite else {
        pending.bytes.clear();
        return ffi::SQLITE_IOERR_WRITE;
    };
    let mut rc = ffi::SQLITE_OK;
    let mut offset = pending.offset;
    for chunk in pending.bytes.chunks(MAX_UNIX_WRITE) {
        FLUSHES.fetch_add(1, Ordering::Relaxed);
        // A chunk is at most MAX_UNIX_WRITE bytes: the cast cannot truncate.
        rc = write(
            real,
            chunk.as_ptr() as *const c_void,
            chunk.len() as c_int,
            offset,
        );
        if rc != ffi::SQLITE_OK {
            break;
        }
        offset += chunk.len() as i64;
    }
    pending.bytes.clear();
    rc
}

/// On a database file: writes out what its WAL file gathered.
unsafe fn flush_partner(file: *mut ffi::sqlite3_file) -> c_int {
    let wal = (*(file as *mut ShimFile)).partner;
    if wal.is_null() || (*wal).pending.is_null() {
        return ffi::SQLITE_OK;
    }
    flush(wal as *mut ffi::sqlite3_file)
}

/// SQLite's WAL write lock: the first of the shared-memory locks (WAL_WRITE_LOCK).
const WAL_WRITE_LOCK: c_int = 0;

/// Releasing the WAL write lock (or any range of locks holding it): what the WAL file
/// gathered is written first, while no other connection can write the WAL. SQLite ignores
/// what an unlock returns, and the lock must go whatever happened: a write error is
/// returned after unlocking (under synchronous=FULL the bytes can only be those of a
/// rolled-back transaction, which nobody reads).
unsafe extern "C" fn shim_shm_lock(
    file: *mut ffi::sqlite3_file,
    offset: c_int,
    n: c_int,
    flags: c_int,
) -> c_int {
    let releases_write_lock = flags & ffi::SQLITE_SHM_UNLOCK != 0
        && offset <= WAL_WRITE_LOCK
        && WAL_WRITE_LOCK < offset.saturating_add(n);
    let flushed = if releases_write_lock {
        flush_partner(file)
    } else {
        ffi::SQLITE_OK
    };
    let (real, methods) = real(file);
    let rc = match methods.xShmLock {
        Some(lock) => lock(real, offset, n, flags),
        None => ffi::SQLITE_IOERR_SHMLOCK,
    };
    if rc != ffi::SQLITE_OK {
        rc
    } else {
        flushed
    }
}

/// Lowering the database file's lock: in exclusive locking mode SQLite takes no
/// shared-memory locks, and this is where other connections get their turn.
unsafe extern "C" fn shim_unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    let flushed = flush_partner(file);
    let (real, methods) = real(file);
    let rc = match methods.xUnlock {
        Some(unlock) => unlock(real, level),
        None => ffi::SQLITE_IOERR_UNLOCK,
    };
    if rc != ffi::SQLITE_OK {
        rc
    } else {
        flushed
    }
}

unsafe extern "C" fn shim_write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    if let Some(pending) = (*(file as *mut ShimFile)).pending.as_mut() {
        if let Ok(len) = usize::try_from(amount) {
            let end = pending.offset + pending.bytes.len() as i64;
            if !pending.bytes.is_empty() && offset != end {
                let rc = flush(file);
                if rc != ffi::SQLITE_OK {
                    return rc;
                }
            }
            let pending = &mut *(*(file as *mut ShimFile)).pending;
            if pending.bytes.is_empty() {
                pending.offset = offset;
            }
            pending
                .bytes
                .extend_from_slice(std::slice::from_raw_parts(data as *const u8, len));
            GATHERED.fetch_add(1, Ordering::Relaxed);
            if pending.bytes.len() >= MAX_GATHERED {
                return flush(file);
            }
            return ffi::SQLITE_OK;
        }
    }
    let (real, methods) = real(file);
    match methods.xWrite {
        Some(write) => write(real, data, amount, offset),
        None => ffi::SQLITE_IOERR_WRITE,
    }
}

unsafe extern "C" fn shim_close(file: *mut ffi::sqlite3_file) -> c_int {
    let shim = file as *mut ShimFile;
    // SQLite closes a WAL file before its database file; should it not, the WAL file's
    // bytes go out now and it stops gathering.
    let flushed = match (*shim).pending.is_null() {
        false => flush(file),
        true => flush_partner(file),
    };
    if !(*shim).name.is_null() {
        if let Some(files) = database_files().as_mut() {
            files.remove(&((*shim).name as usize));
        }
        (*shim).name = std::ptr::null();
    }
    let partner = (*shim).partner;
    if !partner.is_null() {
        (*partner).partner = std::ptr::null_mut();
        if !(*partner).pending.is_null() {
            drop(Box::from_raw((*partner).pending));
            (*partner).pending = std::ptr::null_mut();
        }
        (*shim).partner = std::ptr::null_mut();
    }
    if !(*shim).pending.is_null() {
        drop(Box::from_raw((*shim).pending));
        (*shim).pending = std::ptr::null_mut();
    }
    let (real, methods) = real(file);
    let closed = methods.xClose.map_or(ffi::SQLITE_OK, |close| close(real));
    if flushed != ffi::SQLITE_OK {
        flushed
    } else {
        closed
    }
}

/// Delegates a method to the unix file after writing out what is gathered.
macro_rules! flushing {
    ($name:ident, $method:ident, ($($arg:ident: $ty:ty),*), $missing:expr) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> c_int {
            let rc = flush(file);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
            let (real, methods) = real(file);
            match methods.$method {
                Some(method) => method(real $(, $arg)*),
                None => $missing,
            }
        }
    };
}

/// Delegates a method to the unix file as it is.
macro_rules! passing {
    ($name:ident, $method:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty, $missing:expr) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> $ret {
            let (real, methods) = real(file);
            match methods.$method {
                Some(method) => method(real $(, $arg)*),
                None => $missing,
            }
        }
    };
}

flushing!(shim_read, xRead, (data: *mut c_void, amount: c_int, offset: ffi::sqlite3_int64), ffi::SQLITE_IOERR_READ);
flushing!(shim_truncate, xTruncate, (size: ffi::sqlite3_int64), ffi::SQLITE_IOERR_TRUNCATE);
flushing!(shim_sync, xSync, (flags: c_int), ffi::SQLITE_IOERR_FSYNC);
flushing!(shim_file_size, xFileSize, (size: *mut ffi::sqlite3_int64), ffi::SQLITE_IOERR_FSTAT);
flushing!(shim_file_control, xFileControl, (op: c_int, arg: *mut c_void), ffi::SQLITE_NOTFOUND);
flushing!(shim_fetch, xFetch, (offset: ffi::sqlite3_int64, amount: c_int, out: *mut *mut c_void), ffi::SQLITE_IOERR);
passing!(shim_lock, xLock, (level: c_int) -> c_int, ffi::SQLITE_IOERR_LOCK);
passing!(shim_check_reserved_lock, xCheckReservedLock, (out: *mut c_int) -> c_int, ffi::SQLITE_IOERR_CHECKRESERVEDLOCK);
passing!(shim_sector_size, xSectorSize, () -> c_int, 4096);
passing!(shim_device_characteristics, xDeviceCharacteristics, () -> c_int, 0);
passing!(shim_shm_map, xShmMap, (page: c_int, size: c_int, extend: c_int, out: *mut *mut c_void) -> c_int, ffi::SQLITE_IOERR_SHMMAP);
passing!(shim_shm_unmap, xShmUnmap, (delete: c_int) -> c_int, ffi::SQLITE_OK);
passing!(shim_unfetch, xUnfetch, (offset: ffi::sqlite3_int64, page: *mut c_void) -> c_int, ffi::SQLITE_OK);

unsafe extern "C" fn shim_shm_barrier(file: *mut ffi::sqlite3_file) {
    let (real, methods) = real(file);
    if let Some(barrier) = methods.xShmBarrier {
        barrier(real);
    }
}

/// Whether `conn`'s database file is open through this VFS.
#[cfg(test)]
pub(super) fn in_use(conn: &rusqlite::Connection) -> bool {
    let mut file: *mut ffi::sqlite3_file = std::ptr::null_mut();
    // SAFETY: SQLITE_FCNTL_FILE_POINTER writes the main database's sqlite3_file pointer,
    // which lives as long as the connection; only its methods table is compared.
    unsafe {
        let rc = ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_FILE_POINTER,
            (&mut file as *mut *mut ffi::sqlite3_file).cast(),
        );
        rc == ffi::SQLITE_OK && !file.is_null() && std::ptr::eq((*file).pMethods, &METHODS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::DatabaseFile;
    use rusqlite::{Connection, OptionalExtension};

    /// The VFS is used with the SQLite it was read against, and only with it: a dependency
    /// update that brings another SQLite fails here, so that the WAL code is read again
    /// before `VERIFIED_SQLITE` is widened.
    #[test]
    fn the_linked_sqlite_is_the_version_checked_and_others_are_declined() {
        let linked = unsafe { ffi::sqlite3_libversion_number() };
        assert!(
            verified(linked),
            "SQLite {linked} is not in {VERIFIED_SQLITE:?}: read its WAL code (see the module \
             comment) before widening the range"
        );
        assert!(vfs_name().is_some(), "the default VFS is unix here");
        for other in [3_045_003, 3_047_000, 3_050_000] {
            assert!(!verified(other), "{other}");
        }
    }

    /// `store.wal_append_buffer = false` opens the writer's connection on the unix VFS.
    #[test]
    fn the_switch_decides_whether_the_writer_goes_through_the_vfs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        drop(reader(&path));
        let mut file = DatabaseFile::new(&path, 0);
        assert!(in_use(&file.open().unwrap()), "on by default");
        file.wal_append_buffer = false;
        assert!(!in_use(&file.open().unwrap()), "off when switched off");
        assert!(!in_use(&reader(&path)), "other connections never use it");
    }

    /// A reader on SQLite's default VFS, as sqlx's pool and other processes are.
    fn reader(path: &std::path::Path) -> Connection {
        Connection::open(path).unwrap()
    }

    /// A new database with table `t`, opened as the writer opens it (through the VFS).
    fn writer_with_table() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        drop(reader(&path)); // creates the file; the writer's connection opens existing ones
        let conn = DatabaseFile::new(&path, 0).open().unwrap();
        conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, data BLOB)")
            .unwrap();
        (dir, conn)
    }

    /// A new database in WAL mode with table `t`, made by the returned reader connection.
    fn wal_database_with_table() -> (tempfile::TempDir, std::path::PathBuf, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let setup = reader(&path);
        setup
            .execute_batch(
                "PRAGMA journal_mode = WAL; CREATE TABLE t (id INTEGER PRIMARY KEY, data BLOB)",
            )
            .unwrap();
        (dir, path, setup)
    }

    fn check(path: &std::path::Path, rows: i64, bytes: i64) {
        let r = reader(path);
        let (n, total): (i64, i64) = r
            .query_row(
                "SELECT count(*), COALESCE(sum(length(data)), 0) FROM t",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        assert_eq!((n, total), (rows, bytes));
        let ok: String = r
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .unwrap();
        assert_eq!(ok, "ok");
    }

    /// Commits written through the gathering VFS are whole for other connections: small
    /// commits, a transaction large enough to spill pages to the WAL and read them back
    /// before its commit, a rolled-back one, and writing on after the WAL was emptied and
    /// restarted from its first byte.
    #[test]
    fn what_a_commit_gathered_is_on_disk_for_every_reader() {
        assert!(vfs_name().is_some(), "the default VFS is unix here");
        let (dir, conn) = writer_with_table();
        let path = dir.path().join("db.sqlite");
        let before = counters();
        let row = |i: i64| -> Vec<u8> { (0..3000).map(|j| ((i * 31 + j) % 251) as u8).collect() };
        let mut bytes = 0;
        for i in 0..50 {
            conn.execute("INSERT INTO t (data) VALUES (?1)", [row(i)])
                .unwrap();
            bytes += 3000;
        }
        check(&path, 50, bytes);
        let after = counters();
        assert!(
            after.0 - before.0 > after.1 - before.1,
            "appends were gathered into fewer writes: {before:?} -> {after:?}"
        );

        // A transaction bigger than the page cache: pages go to the WAL before the commit
        // and are read back from it.
        conn.execute_batch("PRAGMA cache_size = 20").unwrap();
        conn.execute_batch("BEGIN").unwrap();
        for i in 50..2050 {
            conn.execute("INSERT INTO t (data) VALUES (?1)", [row(i)])
                .unwrap();
            bytes += 3000;
        }
        conn.execute("UPDATE t SET data = ?1 WHERE id = 7", [row(7)])
            .unwrap();
        conn.execute_batch("COMMIT").unwrap();
        check(&path, 2050, bytes);

        conn.execute_batch("BEGIN").unwrap();
        conn.execute("DELETE FROM t", []).unwrap();
        conn.execute_batch("ROLLBACK").unwrap();
        check(&path, 2050, bytes);

        let r = reader(&path);
        r.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        drop(r);
        for i in 0..10 {
            conn.execute("INSERT INTO t (data) VALUES (?1)", [row(i)])
                .unwrap();
            bytes += 3000;
        }
        check(&path, 2060, bytes);
        drop(conn);
        check(&path, 2060, bytes);
    }

    /// Rows of 3,000 bytes whose content depends on `seed` and `i`.
    fn row(seed: i64, i: i64) -> Vec<u8> {
        (0..3000)
            .map(|j| ((seed * 7 + i * 31 + j) % 251) as u8)
            .collect()
    }

    /// What connection A does after its rolled-back transaction and B's commit.
    #[derive(Debug, Clone, Copy)]
    enum ThenA {
        Reads,
        Closes,
        Writes,
    }

    /// A transaction that spilled pages to the WAL through the VFS and was rolled back must
    /// leave nothing behind that can land later: another connection commits frames at the
    /// same offsets of the WAL, and whatever A does next (read, close, write), B's rows are
    /// whole and the database is intact, for B, for A and for a fresh connection.
    #[test]
    fn a_rolled_back_spill_never_lands_over_another_connections_commit() {
        // In exclusive locking mode SQLite takes no shared-memory locks: A's hold ends when
        // it gives up its exclusive lock on the database file.
        let cases = [
            (false, ThenA::Reads),
            (false, ThenA::Closes),
            (false, ThenA::Writes),
            (true, ThenA::Closes),
        ];
        for (exclusive, then) in cases {
            let (_dir, path, setup) = wal_database_with_table();
            // An empty WAL, as the checkpointer leaves it when writing pauses: the rollback
            // below then finds every page it reads again in the database file.
            setup
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                .unwrap();
            // Closed: exclusive locking mode needs A alone on the file.
            drop(setup);
            let a = DatabaseFile::new(&path, 0).open().unwrap();
            // A page cache far smaller than the transaction: its pages go to the WAL
            // before the end of the transaction.
            a.execute_batch("PRAGMA cache_size = 10").unwrap();
            if exclusive {
                a.execute_batch("PRAGMA locking_mode = EXCLUSIVE").unwrap();
            }
            a.execute_batch("BEGIN IMMEDIATE").unwrap();
            for i in 0..300 {
                a.execute("INSERT INTO t (id, data) VALUES (?1, ?2)", (i, row(1, i)))
                    .unwrap();
            }
            a.execute_batch("ROLLBACK").unwrap();
            if exclusive {
                // Back to normal mode, and a read: A lets go of the database file.
                a.execute_batch("PRAGMA locking_mode = NORMAL").unwrap();
                a.query_row("SELECT count(*) FROM t", [], |_| Ok(()))
                    .unwrap();
            }

            let b = reader(&path);
            b.busy_timeout(std::time::Duration::from_secs(10)).unwrap();

            b.execute_batch("BEGIN IMMEDIATE").unwrap();
            for i in 0..600 {
                b.execute("INSERT INTO t (id, data) VALUES (?1, ?2)", (i, row(2, i)))
                    .unwrap();
            }
            b.execute_batch("COMMIT").unwrap();

            let mut expected_rows = 600;
            match then {
                ThenA::Reads => {
                    let n: i64 = a
                        .query_row(
                            "SELECT count(*) FROM t WHERE length(data) = 3000",
                            [],
                            |r| r.get(0),
                        )
                        .unwrap();
                    assert_eq!(n, 600, "{exclusive} {then:?}: A reads B's rows");
                    drop(a);
                }
                ThenA::Closes => drop(a),
                ThenA::Writes => {
                    a.execute(
                        "INSERT INTO t (id, data) VALUES (?1, ?2)",
                        (1000, row(3, 0)),
                    )
                    .unwrap();
                    expected_rows += 1;
                    drop(a);
                }
            }
            let stored_as_committed = |conn: &Connection| -> i64 {
                let mut q = conn
                    .prepare("SELECT id, data FROM t WHERE id < 600")
                    .unwrap();
                let rows = q
                    .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))
                    .unwrap();
                let mut same = 0;
                for found in rows {
                    let (id, data) = found.unwrap();
                    if data == row(2, id) {
                        same += 1;
                    }
                }
                same
            };
            let ok: String = b
                .query_row("PRAGMA integrity_check", [], |r| r.get(0))
                .unwrap();
            assert_eq!(ok, "ok", "{exclusive} {then:?}: integrity for B");
            assert_eq!(
                stored_as_committed(&b),
                600,
                "{exclusive} {then:?}: B's rows as B wrote them"
            );
            drop(b);
            // Every connection closed: the WAL was checkpointed into the database file.
            let fresh = reader(&path);
            let ok: String = fresh
                .query_row("PRAGMA integrity_check", [], |r| r.get(0))
                .unwrap();
            assert_eq!(ok, "ok", "{exclusive} {then:?}: integrity after reopening");
            assert_eq!(
                stored_as_committed(&fresh),
                600,
                "{exclusive} {then:?}: after reopening"
            );
            let n: i64 = fresh
                .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
                .unwrap();
            assert_eq!(
                n, expected_rows,
                "{exclusive} {then:?}: rows after reopening"
            );
        }
    }

    /// The database the crash child writes to (set only in the child).
    const CRASH_CHILD_DB: &str = "POSTERN_WAL_CRASH_CHILD_DB";

    /// Rows of one transaction in the crash test: connection `who`'s transaction `n`.
    fn crash_rows(who: i64, n: i64) -> impl Iterator<Item = (i64, Vec<u8>)> {
        (0..8).map(move |k| {
            let id = (n * 2 + who) * 100 + k;
            (id, row(who + 5, id))
        })
    }

    /// Run by `acknowledged_commits_survive_sigkill` in a child process: two connections on
    /// one database, A through the VFS and B on the unix VFS, commit in turn, B first, and
    /// every third turn A first spills and rolls back a large transaction. Each commit that returned
    /// is reported on stdout (`committed <who> <n>`) before the next one starts.
    #[test]
    #[ignore = "the child process of acknowledged_commits_survive_sigkill"]
    fn crash_child_writes_until_killed() {
        use std::io::Write;
        let Some(path) = std::env::var_os(CRASH_CHILD_DB) else {
            return;
        };
        let a = DatabaseFile::new(std::path::Path::new(&path), 0)
            .open()
            .unwrap();
        assert!(in_use(&a));
        a.execute_batch("PRAGMA cache_size = 10").unwrap();
        let b = reader(std::path::Path::new(&path));
        b.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
        b.execute_batch("PRAGMA synchronous = FULL").unwrap();
        let mut out = std::io::stdout().lock();
        // Bounded, should the parent never kill it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        for n in 0.. {
            if std::time::Instant::now() > deadline {
                return;
            }
            if n % 3 == 0 {
                // From an empty WAL, as the checkpointer leaves it (see the two-connection
                // test above): B's next commit then writes where A's spill was.
                b.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                    .unwrap();
                a.execute_batch("BEGIN IMMEDIATE").unwrap();
                for i in 0..200 {
                    a.execute(
                        "INSERT INTO t (id, data) VALUES (?1, ?2)",
                        (-1 - i, row(9, i)),
                    )
                    .unwrap();
                }
                a.execute_batch("ROLLBACK").unwrap();
            }
            for (who, conn) in [(1, &b), (0, &a)] {
                conn.execute_batch("BEGIN IMMEDIATE").unwrap();
                for (id, data) in crash_rows(who, n) {
                    conn.execute("INSERT INTO t (id, data) VALUES (?1, ?2)", (id, data))
                        .unwrap();
                }
                conn.execute_batch("COMMIT").unwrap();
                writeln!(out, "committed {who} {n}").unwrap();
                out.flush().unwrap();
            }
        }
    }

    /// SIGKILL while two connections write, one through the VFS with rolled-back spills in
    /// between: after recovery every commit that returned is there as written, nothing of
    /// the rolled-back transactions is, and the database is intact.
    #[test]
    fn acknowledged_commits_survive_sigkill() {
        use std::io::BufRead;
        let (dir, path, setup) = wal_database_with_table();
        drop(setup);
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "store::wal_append_buffer::tests::crash_child_writes_until_killed",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CRASH_CHILD_DB, &path)
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join("child.err")).unwrap())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut acknowledged = Vec::new();
        // Killed in the middle of the stream, some 60 commits in.
        while acknowledged.len() < 60 {
            let Some(line) = lines.next() else { break };
            if let Some(rest) = line.unwrap().strip_prefix("committed ") {
                let mut parts = rest.split(' ').map(|p| p.parse::<i64>().unwrap());
                acknowledged.push((parts.next().unwrap(), parts.next().unwrap()));
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Commits reported between the last read and the kill count too.
        for line in lines.map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("committed ") {
                let mut parts = rest.split(' ').map(|p| p.parse::<i64>().unwrap());
                acknowledged.push((parts.next().unwrap(), parts.next().unwrap()));
            }
        }
        assert!(
            acknowledged.len() >= 60,
            "the child stopped after {} commits: {}",
            acknowledged.len(),
            std::fs::read_to_string(dir.path().join("child.err")).unwrap_or_default()
        );

        let fresh = reader(&path);
        let ok: String = fresh
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok");
        for &(who, n) in &acknowledged {
            for (id, data) in crash_rows(who, n) {
                let stored: Option<Vec<u8>> = fresh
                    .query_row("SELECT data FROM t WHERE id = ?1", [id], |r| r.get(0))
                    .optional()
                    .unwrap();
                assert!(
                    stored.as_ref() == Some(&data),
                    "row {id} of commit {n} by {who} is {}",
                    if stored.is_some() {
                        "changed"
                    } else {
                        "missing"
                    }
                );
            }
        }
        let rolled_back: i64 = fresh
            .query_row("SELECT count(*) FROM t WHERE id < 0", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rolled_back, 0, "rows of rolled-back transactions");
    }

    /// Many gathered bytes go out in pieces the unix VFS writes whole (it reports a longer
    /// write as a full disk).
    #[test]
    fn a_commit_larger_than_one_unix_write_is_stored_whole() {
        let (dir, conn) = writer_with_table();
        let path = dir.path().join("db.sqlite");
        let big: Vec<u8> = (0..MAX_GATHERED as u32 + 100_000)
            .map(|i| (i % 253) as u8)
            .collect();
        conn.execute("INSERT INTO t (data) VALUES (?1)", [&big])
            .unwrap();
        check(&path, 1, big.len() as i64);
        let stored: Vec<u8> = reader(&path)
            .query_row("SELECT data FROM t", [], |r| r.get(0))
            .unwrap();
        assert!(stored == big, "the blob came back changed");
    }
}
