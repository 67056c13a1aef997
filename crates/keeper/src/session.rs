//! Session liveness: when each session was last heard from, when it must expire, and why
//! sessions ended (obituaries).
//!
//! ZooKeeper buckets deadlines into tick-aligned slots, so a session dies up to a tick late.
//! Here each session has its own deadline (last packet + negotiated timeout), checked every
//! [`CHECK_INTERVAL`], so expiry lands within a few tens of milliseconds of the timeout.
//! Stall awareness: when the checker itself wakes far later than it asked to, the keeper
//! was not running (a paused process, a starved runtime) and could not hear its clients;
//! that lost time is added to every deadline instead of being counted against the clients.
//!
//! This module decides *when*; expiring is done by proposing a CloseSession entry, so the
//! ephemerals go away through the log like any other change.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

pub const CHECK_INTERVAL: Duration = Duration::from_millis(10);
/// A checker wake-up later than this beyond its interval is treated as a keeper stall.
pub const STALL_THRESHOLD: Duration = Duration::from_millis(200);
const OBITUARIES_KEPT: usize = 1000;

#[derive(Debug, Clone)]
pub struct Liveness {
    pub timeout: Duration,
    pub last_heard: Instant,
    pub deadline: Instant,
    pub remote: Option<SocketAddr>,
    pub last_op: &'static str,
    /// Set once an expiry has been proposed, so it is proposed once.
    pub expiring: bool,
}

/// Why and how a session ended, for operators.
#[derive(Debug, Clone)]
pub struct Obituary {
    pub session_id: i64,
    pub ended_at: SystemTime,
    pub remote: Option<SocketAddr>,
    pub timeout_ms: u64,
    pub silent_for_ms: Option<u64>,
    pub last_op: &'static str,
    pub reason: String,
    pub ephemerals_deleted: Vec<String>,
}

#[derive(Default)]
pub struct SessionTracker {
    live: HashMap<i64, Liveness>,
    obituaries: VecDeque<Obituary>,
    /// Total time the keeper was detected stalled and forgave.
    pub stalled_total: Duration,
    pub stalls_detected: u64,
}

impl SessionTracker {
    /// Starts tracking with a fresh full timeout (new session, restart, new leader).
    pub fn track(&mut self, id: i64, timeout: Duration, now: Instant) {
        let entry = self.live.entry(id).or_insert(Liveness {
            timeout,
            last_heard: now,
            deadline: now + timeout,
            remote: None,
            last_op: "createSession",
            expiring: false,
        });
        entry.timeout = timeout;
        entry.last_heard = now;
        entry.deadline = now + timeout;
    }

    /// Records a packet from the session's client.
    pub fn touch(&mut self, id: i64, now: Instant, op: &'static str, remote: Option<SocketAddr>) {
        if let Some(l) = self.live.get_mut(&id) {
            l.last_heard = now;
            l.deadline = now + l.timeout;
            if op != "ping" {
                l.last_op = op;
            }
            if remote.is_some() {
                l.remote = remote;
            }
        }
    }

    pub fn set_timeout(&mut self, id: i64, timeout: Duration) {
        if let Some(l) = self.live.get_mut(&id) {
            l.timeout = timeout;
        }
    }

    pub fn get(&self, id: i64) -> Option<&Liveness> {
        self.live.get(&id)
    }

    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&i64, &Liveness)> {
        self.live.iter()
    }

    /// The checker woke `late` after it expected to: forgive that time to every session.
    pub fn forgive_stall(&mut self, late: Duration) {
        self.stalled_total += late;
        self.stalls_detected += 1;
        for l in self.live.values_mut() {
            l.deadline += late;
        }
    }

    /// Sessions past their deadline that have not yet been proposed for expiry, marking them.
    pub fn due(&mut self, now: Instant) -> Vec<(i64, Duration)> {
        let mut out = Vec::new();
        for (id, l) in self.live.iter_mut() {
            if !l.expiring && now >= l.deadline {
                l.expiring = true;
                out.push((*id, now.saturating_duration_since(l.last_heard)));
            }
        }
        out.sort();
        out
    }

    /// An expiry proposal failed: let the checker try again.
    pub fn unmark(&mut self, id: i64) {
        if let Some(l) = self.live.get_mut(&id) {
            l.expiring = false;
        }
    }

    /// The session ended (applied CloseSession): stop tracking and keep an obituary.
    pub fn bury(&mut self, id: i64, reason: &str, ephemerals: Vec<String>, now: Instant) {
        let l = self.live.remove(&id);
        let ob = Obituary {
            session_id: id,
            ended_at: SystemTime::now(),
            remote: l.as_ref().and_then(|l| l.remote),
            timeout_ms: l
                .as_ref()
                .map(|l| l.timeout.as_millis() as u64)
                .unwrap_or(0),
            silent_for_ms: l
                .as_ref()
                .map(|l| now.saturating_duration_since(l.last_heard).as_millis() as u64),
            last_op: l.as_ref().map(|l| l.last_op).unwrap_or("unknown"),
            reason: reason.to_string(),
            ephemerals_deleted: ephemerals,
        };
        if self.obituaries.len() == OBITUARIES_KEPT {
            self.obituaries.pop_front();
        }
        self.obituaries.push_back(ob);
    }

    pub fn obituaries(&self) -> impl Iterator<Item = &Obituary> {
        self.obituaries.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_moves_with_every_packet() {
        let mut t = SessionTracker::default();
        let t0 = Instant::now();
        t.track(1, Duration::from_millis(4000), t0);
        t.touch(1, t0 + Duration::from_millis(3000), "ping", None);
        assert!(t.due(t0 + Duration::from_millis(6999)).is_empty());
        let due = t.due(t0 + Duration::from_millis(7000));
        assert_eq!(due, vec![(1, Duration::from_millis(4000))]);
        // proposed once only
        assert!(t.due(t0 + Duration::from_millis(8000)).is_empty());
    }

    #[test]
    fn stall_is_not_counted_against_clients() {
        let mut t = SessionTracker::default();
        let t0 = Instant::now();
        t.track(1, Duration::from_millis(1000), t0);
        t.forgive_stall(Duration::from_millis(5000));
        assert!(t.due(t0 + Duration::from_millis(5500)).is_empty());
        assert_eq!(t.due(t0 + Duration::from_millis(6000)).len(), 1);
        assert_eq!(t.stalls_detected, 1);
    }

    #[test]
    fn bury_keeps_obituary() {
        let mut t = SessionTracker::default();
        let t0 = Instant::now();
        t.track(5, Duration::from_millis(1000), t0);
        t.touch(5, t0, "create", None);
        t.bury(
            5,
            "expired",
            vec!["/e".into()],
            t0 + Duration::from_millis(1010),
        );
        let ob: Vec<_> = t.obituaries().collect();
        assert_eq!(ob.len(), 1);
        assert_eq!(ob[0].last_op, "create");
        assert_eq!(ob[0].silent_for_ms, Some(1010));
        assert!(t.is_empty());
    }
}
