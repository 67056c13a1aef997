//! `globalOutstandingLimit`: requests taken in by every connection and not yet answered. When
//! the count reaches the limit the throttle closes: a connection that already has requests
//! outstanding stops reading, until the count has fallen by an eighth of the limit (or its own
//! requests are all answered). One with none may always send one, so no client starves behind
//! one that does not read (ZooKeeper's throttle). At most the limit plus one request per
//! connection are outstanding. Must not: drop or reorder requests.
//!
//! Why not reopen at the limit itself: at the limit every answer reopened it, woke every
//! throttled reader, and each took one request and stopped again (plus a 10 ms timer per wait).
//! At 16 clients x 100 in flight that tripled the runtime's thread wake-ups per request and
//! armed a timer every few requests; reopening an eighth lower lets each reader take a burst
//! per wake-up.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};

use tokio::sync::Notify;

pub(crate) struct Outstanding {
    count: AtomicU64,
    limit: u64,
    /// The throttle reopens when the count falls below this.
    reopen_below: u64,
    /// Closed (true) from the count reaching `limit` until it falls below `reopen_below`.
    closed: AtomicBool,
    /// Woken when the throttle reopens.
    reopened: Notify,
}

/// One connection's requests taken in and not yet answered.
#[derive(Default)]
pub(crate) struct InFlight {
    count: AtomicUsize,
    /// Woken when the last of them is answered while the throttle is closed.
    idle: Notify,
}

impl Outstanding {
    pub fn new(limit: u64) -> Outstanding {
        let limit = limit.max(1);
        Outstanding {
            count: AtomicU64::new(0),
            limit,
            reopen_below: limit - limit / 8,
            closed: AtomicBool::new(false),
            reopened: Notify::new(),
        }
    }

    pub fn count(&self) -> u64 {
        self.count.load(SeqCst)
    }

    fn may_read(&self, mine: &InFlight) -> bool {
        !self.closed.load(SeqCst) || mine.count.load(SeqCst) == 0
    }

    /// Waits while the throttle is closed and this connection (`mine`) has requests
    /// outstanding. No timer: the wake-ups below cover both ends of the wait.
    pub async fn wait_for_room(&self, mine: &InFlight) {
        while !self.may_read(mine) {
            let reopened = self.reopened.notified();
            let idle = mine.idle.notified();
            tokio::pin!(reopened, idle);
            // Registered before the check, so a wake-up between the check and the wait counts.
            reopened.as_mut().enable();
            idle.as_mut().enable();
            if self.may_read(mine) {
                return;
            }
            tokio::select! {
                _ = reopened => {}
                _ = idle => {}
            }
        }
    }

    /// One request of a connection taken in.
    pub fn begin(&self, mine: &InFlight) {
        mine.count.fetch_add(1, SeqCst);
        let now = self.count.fetch_add(1, SeqCst) + 1;
        if now >= self.limit && !self.closed.load(SeqCst) {
            self.closed.store(true, SeqCst);
            // Answers may have taken the count below the reopening point between the add and
            // the store, and seen the throttle open: then reopen it here.
            if self.count.load(SeqCst) < self.reopen_below {
                self.reopen();
            }
        }
    }

    /// One request of a connection answered (or dropped unanswered).
    pub fn done(&self, mine: &InFlight) {
        let mine_before = mine.count.fetch_sub(1, SeqCst);
        let before = self.count.fetch_sub(1, SeqCst);
        // Only the answer that takes the count below the reopening point wakes the throttled
        // readers, all at once; the ones between it and the limit wake nobody.
        if before == self.reopen_below && self.closed.load(SeqCst) {
            self.reopen();
        }
        if mine_before == 1 && self.closed.load(SeqCst) {
            // Its reader may be waiting for this: with nothing outstanding it may read again.
            mine.idle.notify_waiters();
        }
    }

    fn reopen(&self) {
        if self.closed.swap(false, SeqCst) {
            self.reopened.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    /// Whether `wait_for_room` is still waiting after the other tasks had their turn.
    async fn waits(o: &Arc<Outstanding>, mine: &Arc<InFlight>) -> tokio::task::JoinHandle<()> {
        let (o, mine) = (Arc::clone(o), Arc::clone(mine));
        let h = tokio::spawn(async move { o.wait_for_room(&mine).await });
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        h
    }

    async fn ends(h: tokio::task::JoinHandle<()>) {
        tokio::time::timeout(Duration::from_secs(5), h)
            .await
            .expect("the reader is woken")
            .expect("joined");
    }

    #[tokio::test]
    async fn below_the_limit_nobody_waits() {
        let o = Arc::new(Outstanding::new(8));
        let a = Arc::new(InFlight::default());
        for _ in 0..7 {
            o.begin(&a);
        }
        assert_eq!(o.count(), 7);
        ends(waits(&o, &a).await).await;
    }

    #[tokio::test]
    async fn at_the_limit_a_connection_with_requests_waits_until_an_eighth_is_answered() {
        let o = Arc::new(Outstanding::new(16));
        let (a, b) = (Arc::new(InFlight::default()), Arc::new(InFlight::default()));
        for _ in 0..8 {
            o.begin(&a);
            o.begin(&b);
        }
        assert_eq!(o.count(), 16);
        let reader = waits(&o, &a).await;
        assert!(!reader.is_finished(), "held at the limit");
        // A connection with nothing outstanding may always send one.
        ends(waits(&o, &Arc::new(InFlight::default())).await).await;
        // 16 -> 15: below the limit but not below 14 (16 - 16/8): still held.
        o.done(&b);
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!reader.is_finished(), "held until the count falls below 14");
        o.done(&b);
        o.done(&b);
        assert_eq!(o.count(), 13);
        ends(reader).await;
        // Reopened: the same connection reads without waiting.
        ends(waits(&o, &a).await).await;
    }

    #[tokio::test]
    async fn a_connection_whose_requests_are_all_answered_reads_again() {
        let o = Arc::new(Outstanding::new(8));
        let (a, b) = (Arc::new(InFlight::default()), Arc::new(InFlight::default()));
        o.begin(&a);
        for _ in 0..7 {
            o.begin(&b);
        }
        let reader = waits(&o, &a).await;
        assert!(!reader.is_finished());
        // b holds the count above the reopening point; a's own answer frees a.
        o.done(&a);
        assert_eq!(o.count(), 7);
        ends(reader).await;
    }

    #[test]
    fn the_count_returns_to_zero_and_a_limit_of_one_still_admits() {
        let o = Outstanding::new(1);
        let a = InFlight::default();
        o.begin(&a);
        assert!(!o.may_read(&a), "limit 1 reached with one outstanding");
        o.done(&a);
        assert_eq!(o.count(), 0);
        assert!(o.may_read(&a));
        assert!(!o.closed.load(SeqCst), "reopened at zero");
    }
}
