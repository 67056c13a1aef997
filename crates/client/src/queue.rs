//! A bounded single-consumer event queue that never blocks its producer.
//!
//! Owns: the hand-off from the session driver (which must never wait on a slow consumer: it
//! also pumps replies and pings) to a persistent watch or a cache. When the consumer falls
//! `cap` events behind, further events are counted and dropped, and the consumer is told how
//! many it lost before it sees anything else, so it can re-read instead of trusting a stream
//! with holes.
//!
//! Must not: grow without bound, or await while holding its lock.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;

/// What [`EventQueue::next`] hands out.
#[derive(Debug)]
pub(crate) enum Next<T> {
    Item(T),
    /// This many events were dropped since the last call because the queue was full.
    Dropped(u64),
    /// The queue was closed and everything in it has been taken.
    Closed,
}

pub(crate) struct EventQueue<T> {
    state: Mutex<State<T>>,
    notify: Notify,
    cap: usize,
}

struct State<T> {
    items: VecDeque<T>,
    dropped: u64,
    closed: bool,
}

impl<T> EventQueue<T> {
    pub(crate) fn new(cap: usize) -> EventQueue<T> {
        EventQueue {
            state: Mutex::new(State {
                items: VecDeque::new(),
                dropped: 0,
                closed: false,
            }),
            notify: Notify::new(),
            cap: cap.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Every mutation is a single push/pop/assignment: a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `item`, or counts it as dropped when the queue is full. Ignored once closed.
    pub(crate) fn push(&self, item: T) {
        {
            let mut s = self.lock();
            if s.closed {
                return;
            }
            if s.items.len() >= self.cap {
                s.dropped += 1;
            } else {
                s.items.push_back(item);
            }
        }
        // notify_one keeps a permit when nobody waits, so a push between the consumer's
        // check and its await is not lost.
        self.notify.notify_one();
    }

    /// No more events: the consumer gets what is queued, then [`Next::Closed`].
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.notify.notify_one();
    }

    /// The next event, waiting for one. Dropped events are reported before the events
    /// queued after them.
    pub(crate) async fn next(&self) -> Next<T> {
        loop {
            {
                let mut s = self.lock();
                if s.dropped > 0 {
                    let n = std::mem::take(&mut s.dropped);
                    return Next::Dropped(n);
                }
                if let Some(item) = s.items.pop_front() {
                    return Next::Item(item);
                }
                if s.closed {
                    return Next::Closed;
                }
            }
            self.notify.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn overflow_is_counted_and_reported_first() {
        let q = EventQueue::new(2);
        for i in 0..5 {
            q.push(i);
        }
        assert!(matches!(q.next().await, Next::Dropped(3)));
        assert!(matches!(q.next().await, Next::Item(0)));
        assert!(matches!(q.next().await, Next::Item(1)));
        q.push(9);
        q.close();
        q.push(10);
        assert!(matches!(q.next().await, Next::Item(9)));
        assert!(matches!(q.next().await, Next::Closed));
    }

    #[tokio::test]
    async fn a_waiting_consumer_is_woken() {
        let q = std::sync::Arc::new(EventQueue::new(4));
        let q2 = q.clone();
        let waiter = tokio::spawn(async move { matches!(q2.next().await, Next::Item(7)) });
        tokio::task::yield_now().await;
        q.push(7);
        let got = tokio::time::timeout(std::time::Duration::from_secs(1), waiter)
            .await
            .expect("woken within 1 s")
            .expect("task");
        assert!(got);
    }
}
