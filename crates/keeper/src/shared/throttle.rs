//! `globalOutstandingLimit`: requests taken in by every connection and not yet answered. Past
//! the limit, a connection that already has requests outstanding stops reading until the
//! count falls below it (ZooKeeper's throttle); one with none may always send one, so no
//! client starves behind one that does not read. Must not: drop or reorder requests.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

pub(crate) struct Outstanding {
    count: AtomicU64,
    limit: u64,
    /// Woken when the count falls below the limit.
    room: Notify,
}

impl Outstanding {
    pub fn new(limit: u64) -> Outstanding {
        Outstanding {
            count: AtomicU64::new(0),
            limit,
            room: Notify::new(),
        }
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Waits while the keeper holds the limit or more and this connection (`mine`) has some.
    pub async fn wait_for_room(&self, mine: &AtomicUsize) {
        loop {
            if self.count.load(Ordering::Acquire) < self.limit || mine.load(Ordering::Acquire) == 0
            {
                return;
            }
            // Woken when a request is answered below the limit; the timeout covers this
            // connection's own count reaching zero.
            let _ = tokio::time::timeout(Duration::from_millis(10), self.room.notified()).await;
        }
    }

    /// One request of a connection taken in.
    pub fn begin(&self, mine: &AtomicUsize) {
        self.count.fetch_add(1, Ordering::Relaxed);
        mine.fetch_add(1, Ordering::Relaxed);
    }

    /// One request of a connection answered (or dropped unanswered).
    pub fn done(&self, mine: &AtomicUsize) {
        mine.fetch_sub(1, Ordering::AcqRel);
        let before = self.count.fetch_sub(1, Ordering::AcqRel);
        // Only the decrement that crosses below the limit wakes the waiting readers: waking
        // them on every answer above it had every throttled connection re-check per request.
        if before == self.limit {
            self.room.notify_waiters();
        }
    }
}
