//! Session liveness: when each session was last heard from, when it must expire, and why
//! sessions ended (obituaries).
//!
//! ZooKeeper buckets deadlines into tick-aligned slots, so a session dies up to a tick late.
//! Here each session has its own deadline (last packet + negotiated timeout), and the expiry
//! loop wakes at the earliest one (and at least every [`CHECK_INTERVAL`]), so a session
//! expires at its timeout to the millisecond.
//! Stall awareness: when the checker itself wakes far later than it asked to, the keeper
//! was not running (a paused process, a starved runtime) and could not hear its clients;
//! that lost time is added to every deadline instead of being counted against the clients.
//!
//! This module decides *when*; expiring is done by the expiry loop
//! (`housekeeping`) proposing a CloseSession entry, so the ephemerals go away
//! through the log like any other change. Pure bookkeeping: no I/O, no lock of its own.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

// The runtime's clock, so tests can pause and advance it.
use tokio::time::Instant;

/// How often the checker looks for sessions past their deadline.
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

/// A session found past its deadline by [`SessionTracker::due`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub session_id: i64,
    /// How long its client had been silent.
    pub silent: Duration,
    pub timeout: Duration,
}

#[derive(Default)]
pub struct SessionTracker {
    live: HashMap<i64, Liveness>,
    /// No session not yet expiring has a deadline before this (None: there is none), so
    /// the checker, which runs every few milliseconds, scans only when one may be due.
    earliest: Option<Instant>,
    obituaries: VecDeque<Obituary>,
    /// Sessions ended by expiry (not by their client) since start; obituaries keep only
    /// the latest ones.
    pub expired_total: u64,
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
        let deadline = entry.deadline;
        self.lower_earliest(deadline);
    }

    fn lower_earliest(&mut self, deadline: Instant) {
        self.earliest = Some(self.earliest.map_or(deadline, |e| e.min(deadline)));
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
            // Usually later than before; earlier only after the timeout was lowered.
            let deadline = l.deadline;
            self.lower_earliest(deadline);
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

    pub fn iter(&self) -> impl Iterator<Item = (&i64, &Liveness)> {
        self.live.iter()
    }

    /// No live session not yet expiring has a deadline before this (it may be earlier than
    /// the true earliest, never later).
    pub fn earliest_deadline(&self) -> Option<Instant> {
        self.earliest
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
    pub fn due(&mut self, now: Instant) -> Vec<Due> {
        if self.earliest.is_none_or(|e| now < e) {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut earliest: Option<Instant> = None;
        for (id, l) in self.live.iter_mut() {
            if l.expiring {
                continue;
            }
            if now >= l.deadline {
                l.expiring = true;
                out.push(Due {
                    session_id: *id,
                    silent: now.saturating_duration_since(l.last_heard),
                    timeout: l.timeout,
                });
            } else {
                earliest = Some(earliest.map_or(l.deadline, |e| e.min(l.deadline)));
            }
        }
        self.earliest = earliest;
        out.sort_by_key(|d| d.session_id);
        out
    }

    /// An expiry proposal failed: let the checker try again.
    pub fn unmark(&mut self, id: i64) {
        if let Some(l) = self.live.get_mut(&id) {
            l.expiring = false;
            let deadline = l.deadline;
            self.lower_earliest(deadline);
        }
    }

    /// The session ended (applied CloseSession; `expired` unless its client closed it): stop
    /// tracking and keep an obituary.
    pub fn bury(
        &mut self,
        id: i64,
        reason: &str,
        expired: bool,
        ephemerals: Vec<String>,
        now: Instant,
    ) -> &Obituary {
        self.expired_total += u64::from(expired);
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
        &self.obituaries[self.obituaries.len() - 1]
    }

    /// The latest obituaries, oldest first (issue 13 serves them to operators).
    #[cfg(test)]
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
        let silent = due
            .iter()
            .map(|d| (d.session_id, d.silent))
            .collect::<Vec<_>>();
        assert_eq!(silent, vec![(1, Duration::from_millis(4000))]);
        // proposed once only
        assert!(t.due(t0 + Duration::from_millis(8000)).is_empty());
    }

    #[test]
    fn scans_skipped_until_a_deadline_can_have_passed() {
        let mut t = SessionTracker::default();
        let t0 = Instant::now();
        t.track(1, Duration::from_millis(4000), t0);
        t.track(2, Duration::from_millis(9000), t0);
        assert!(t.due(t0 + Duration::from_millis(3999)).is_empty());
        assert_eq!(t.earliest, Some(t0 + Duration::from_millis(4000)));
        assert_eq!(t.due(t0 + Duration::from_millis(4000)).len(), 1);
        // Recomputed over the sessions still live: session 2.
        assert_eq!(t.earliest, Some(t0 + Duration::from_millis(9000)));
        // A lowered timeout takes effect at the next packet, earlier than the old bound.
        t.set_timeout(2, Duration::from_millis(1000));
        t.touch(2, t0 + Duration::from_millis(5000), "ping", None);
        assert_eq!(
            t.due(t0 + Duration::from_millis(6000)),
            vec![Due {
                session_id: 2,
                silent: Duration::from_millis(1000),
                timeout: Duration::from_millis(1000),
            }]
        );
        // A failed proposal makes the session due again at once.
        t.unmark(2);
        assert_eq!(t.due(t0 + Duration::from_millis(6001)).len(), 1);
        assert!(t.due(t0 + Duration::from_millis(60_000)).is_empty());
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
            true,
            vec!["/e".into()],
            t0 + Duration::from_millis(1010),
        );
        let ob: Vec<_> = t.obituaries().collect();
        assert_eq!(ob.len(), 1);
        assert_eq!(ob[0].last_op, "create");
        assert_eq!(ob[0].silent_for_ms, Some(1010));
        assert!(t.get(5).is_none());
        // Only expiries count as expired; a client's own close does not.
        t.track(6, Duration::from_millis(1000), t0);
        t.bury(6, "closed by the client", false, vec![], t0);
        assert_eq!((t.expired_total, t.obituaries().count()), (1, 2));
    }
}
