//! A cap on the message bytes held in memory by all sessions together. Each message buffer
//! grows only as its session obtains room for it; when the budget is spent, sessions wait
//! (and stop reading, which slows their senders through TCP) instead of exhausting memory.

use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Room is handed out in units of this many bytes.
const UNIT: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct DataBudget {
    units: Arc<Semaphore>,
}

/// The room one message holds; given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: DataBudget,
    permits: Vec<OwnedSemaphorePermit>,
    units: usize,
}

impl DataBudget {
    pub fn new(total_bytes: usize) -> Self {
        Self {
            units: Arc::new(Semaphore::new((total_bytes / UNIT).max(1))),
        }
    }

    pub fn reserve(&self) -> Reservation {
        Reservation {
            budget: self.clone(),
            permits: Vec::new(),
            units: 0,
        }
    }

    /// Units free right now (for tests and metrics).
    pub fn available_bytes(&self) -> usize {
        self.units.available_permits() * UNIT
    }
}

impl Reservation {
    /// Waits until the reservation covers `bytes`.
    pub async fn cover(&mut self, bytes: usize) {
        // One unit ahead, so that the next read always has room.
        let needed = bytes.div_ceil(UNIT) + 1;
        if needed <= self.units {
            return;
        }
        let more = needed - self.units;
        // The semaphore is never closed, so acquisition can only wait (the caller bounds it).
        if let Ok(permit) = self
            .budget
            .units
            .clone()
            .acquire_many_owned(more as u32)
            .await
        {
            self.permits.push(permit);
            self.units = needed;
        }
    }

    pub fn bytes(&self) -> usize {
        self.units * UNIT
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn waits_for_room_and_gives_it_back() {
        let budget = DataBudget::new(4 * UNIT);
        let mut a = budget.reserve();
        a.cover(2 * UNIT).await; // 3 units
        assert_eq!(budget.available_bytes(), UNIT);
        let mut b = budget.reserve();
        let waiting = tokio::time::timeout(Duration::from_millis(50), b.cover(2 * UNIT)).await;
        assert!(waiting.is_err(), "no room until a gives it back");
        drop(a);
        tokio::time::timeout(Duration::from_secs(1), b.cover(2 * UNIT))
            .await
            .unwrap();
        assert_eq!(b.bytes(), 3 * UNIT);
        drop(b);
        assert_eq!(budget.available_bytes(), 4 * UNIT);
    }
}
