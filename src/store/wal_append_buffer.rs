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
//! Every other file (the database, the shared-memory index) and every other method goes to
//! the unix VFS unchanged; the unix VFS-level methods (delete, access, full path, time,
//! randomness, ...) do not look at the VFS object they are called with, so they are reused
//! as they are (checked for SQLite 3.46's os_unix.c).

use rusqlite::ffi;
use std::ffi::{c_int, c_void, CStr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

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

/// The VFS, registered once; `None` where the default VFS is not unix (the buffering would
/// then be unchecked, so connections open without it).
pub fn vfs_name() -> Option<&'static str> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
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
    if flags & ffi::SQLITE_OPEN_WAL != 0 {
        (*shim).pending = Box::into_raw(Box::default());
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
    let flushed = flush(file);
    let shim = file as *mut ShimFile;
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
passing!(shim_unlock, xUnlock, (level: c_int) -> c_int, ffi::SQLITE_IOERR_UNLOCK);
passing!(shim_check_reserved_lock, xCheckReservedLock, (out: *mut c_int) -> c_int, ffi::SQLITE_IOERR_CHECKRESERVEDLOCK);
passing!(shim_sector_size, xSectorSize, () -> c_int, 4096);
passing!(shim_device_characteristics, xDeviceCharacteristics, () -> c_int, 0);
passing!(shim_shm_map, xShmMap, (page: c_int, size: c_int, extend: c_int, out: *mut *mut c_void) -> c_int, ffi::SQLITE_IOERR_SHMMAP);
passing!(shim_shm_lock, xShmLock, (offset: c_int, n: c_int, flags: c_int) -> c_int, ffi::SQLITE_IOERR_SHMLOCK);
passing!(shim_shm_unmap, xShmUnmap, (delete: c_int) -> c_int, ffi::SQLITE_OK);
passing!(shim_unfetch, xUnfetch, (offset: ffi::sqlite3_int64, page: *mut c_void) -> c_int, ffi::SQLITE_OK);

unsafe extern "C" fn shim_shm_barrier(file: *mut ffi::sqlite3_file) {
    let (real, methods) = real(file);
    if let Some(barrier) = methods.xShmBarrier {
        barrier(real);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::DatabaseFile;
    use rusqlite::Connection;

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
