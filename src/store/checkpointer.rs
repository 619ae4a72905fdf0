//! WAL checkpoints on a thread of their own, so that commits never wait for pages to be
//! copied into the database file.

use super::writer::DatabaseFile;
use super::StoreError;
use rusqlite::Connection;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Copies WAL frames into the database file in the background (PASSIVE: it never blocks
/// the writer or readers), so the WAL stays short and commits only append to it.
pub(super) struct Checkpointer {
    stop: Arc<AtomicBool>,
    /// Set while the checkpointer sleeps for lack of work: only then does a nudge wake it
    /// (waking it during its gap between busy checkpoints cost a thread switch per commit).
    idle: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Checkpointer {
    pub(super) fn start(db: &DatabaseFile) -> Result<Self, StoreError> {
        let conn = db.open()?;
        let stop = Arc::new(AtomicBool::new(false));
        let idle = Arc::new(AtomicBool::new(false));
        let (flag, sleeping) = (stop.clone(), idle.clone());
        let thread = std::thread::Builder::new()
            .name("postern-checkpoint".into())
            .spawn(move || checkpoint_loop(&conn, &flag, &sleeping))
            .map_err(|e| {
                StoreError::Internal(format!("cannot start the checkpoint thread: {e}"))
            })?;
        Ok(Self { stop, idle, thread })
    }

    /// A commit just landed: copy it now if the checkpointer was idle (see `checkpoint_loop`).
    pub(super) fn nudge(&self) {
        if self.idle.swap(false, Ordering::Relaxed) {
            self.thread.thread().unpark();
        }
    }

    pub(super) fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.thread().unpark();
        let _ = self.thread.join();
    }
}

fn checkpoint_loop(conn: &Connection, stop: &AtomicBool, idle: &AtomicBool) {
    // While mail flows, keep up: SQLite's own checkpoint on commit (the backstop) then finds
    // almost nothing left to copy and restarts the WAL cheaply. But not after every commit:
    // the pages that every commit changes (index leaves, the B-trees' upper levels) are
    // copied once for all the commits since the last checkpoint. Copying after each commit
    // took an eighth of the server's CPU under a stream of SMTP mail.
    const IDLE: Duration = Duration::from_millis(500);
    const BUSY: Duration = Duration::from_millis(200);
    // Quiet for this long, the WAL's disk space is given back (not between an import's
    // batches, which would put the cost of growing the file back on every batch).
    const QUIET: Duration = Duration::from_secs(2);
    let mut last = (0, 0);
    let mut moved = std::time::Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let started = std::time::Instant::now();
        let pause = match passive_checkpoint(conn) {
            // The WAL moved: more frames are probably coming, look again soon.
            Ok(now) if now != last => {
                last = now;
                moved = std::time::Instant::now();
                BUSY
            }
            Ok((frames, copied)) if frames > 0 && frames == copied && moved.elapsed() >= QUIET => {
                if let Ok(now) = truncating_checkpoint(conn) {
                    last = now;
                }
                IDLE
            }
            Ok(_) => IDLE,
            Err(e) => {
                tracing::warn!(error = %e, "WAL checkpoint failed; SQLite's own checkpoint takes over");
                IDLE
            }
        };
        idle.store(pause == IDLE, Ordering::Relaxed);
        std::thread::park_timeout(pause);
        idle.store(false, Ordering::Relaxed);
        // A commit's nudge wakes an idle checkpointer at once, a busy one not before the gap.
        let next = started + BUSY;
        loop {
            let now = std::time::Instant::now();
            if now >= next || stop.load(Ordering::Relaxed) {
                break;
            }
            std::thread::park_timeout(next - now);
        }
    }
    // Leave an empty WAL behind on a clean stop.
    if passive_checkpoint(conn).is_ok() {
        let _ = truncating_checkpoint(conn);
    }
}

/// Empties the WAL file when no reader needs it; gives up at once rather than wait (it
/// would hold off the writer meanwhile) and is tried again at the next pause.
fn truncating_checkpoint(conn: &Connection) -> Result<(i64, i64), StoreError> {
    conn.busy_timeout(Duration::ZERO)?;
    let result = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
        Ok((r.get(1)?, r.get(2)?))
    });
    conn.busy_timeout(Duration::from_secs(10))?;
    Ok(result?)
}

/// Runs one PASSIVE checkpoint; returns the frames in the WAL and how many of them are
/// now in the database file.
fn passive_checkpoint(conn: &Connection) -> Result<(i64, i64), StoreError> {
    Ok(conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get(1)?, r.get(2)?))
    })?)
}
