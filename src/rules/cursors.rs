//! Where the rules worker is in the streams it follows (messages, ticket events). The
//! position lives in memory and is written to `rule_cursors` at most once a second (and at
//! shutdown): writing it after every message cost intake a synced write per message and
//! emptied the intake writer's page cache each time. After a crash the worker reads again
//! from the last saved position; that is safe because every rule run is keyed
//! (`rule_runs.run_key`) and a run already logged is not run again.

use crate::store::{Store, StoreError};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a position may stay unsaved while the worker is busy.
pub const SAVE_EVERY: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Positions {
    current: HashMap<&'static str, i64>,
    saved: HashMap<&'static str, i64>,
    saved_at: Option<Instant>,
}

#[derive(Default)]
pub struct WorkerCursors {
    positions: Mutex<Positions>,
}

impl WorkerCursors {
    fn lock(&self) -> std::sync::MutexGuard<'_, Positions> {
        self.positions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The last id handled in `stream`: from memory, else as saved in the store.
    pub async fn get(&self, store: &Store, stream: &'static str) -> Result<i64, StoreError> {
        if let Some(&at) = self.lock().current.get(stream) {
            return Ok(at);
        }
        let saved = store.rule_cursor(stream).await?;
        let mut p = self.lock();
        let at = *p.current.entry(stream).or_insert(saved);
        p.saved.entry(stream).or_insert(saved);
        Ok(at)
    }

    /// Everything up to `id` in `stream` has been handled.
    pub fn advance(&self, stream: &'static str, id: i64) {
        let mut p = self.lock();
        let at = p.current.entry(stream).or_insert(id);
        *at = (*at).max(id);
    }

    /// Whether some position is not saved yet.
    pub fn unsaved(&self) -> bool {
        let p = self.lock();
        p.current.iter().any(|(k, v)| p.saved.get(k) != Some(v))
    }

    /// Saves the positions that moved, if the last save is older than [`SAVE_EVERY`] or
    /// `now` is set.
    pub async fn save(&self, store: &Store, now: bool) -> Result<(), StoreError> {
        let moved: Vec<(&'static str, i64)> = {
            let p = self.lock();
            if !now && p.saved_at.is_some_and(|t| t.elapsed() < SAVE_EVERY) {
                return Ok(());
            }
            p.current
                .iter()
                .filter(|(k, v)| p.saved.get(*k) != Some(*v))
                .map(|(k, v)| (*k, *v))
                .collect()
        };
        for (stream, id) in moved {
            store.set_rule_cursor(stream, id).await?;
            self.lock().saved.insert(stream, id);
        }
        self.lock().saved_at = Some(Instant::now());
        Ok(())
    }
}
