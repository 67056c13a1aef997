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
//! In an ensemble every member tracks every session (the log creates and closes them), but
//! only the leader's deadlines count: followers report the sessions their clients touched
//! ([`SessionTracker::take_report`]), the leader records who holds each session and tells a
//! member when one of its sessions has moved to another ([`SessionTracker::heard_at`]), and a
//! new leader grants every session a fresh full timeout ([`SessionTracker::refresh_all`]).
//!
//! This module decides *when*; expiring is done by the expiry loop
//! (`housekeeping`) proposing a CloseSession entry, so the ephemerals go away
//! through the log like any other change. Pure bookkeeping: no I/O, no lock of its own.

use std::collections::{HashMap, HashSet, VecDeque};
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
    /// The member whose client connection last touched it (as far as this member knows).
    pub held_by: Option<u64>,
    /// Touched here since the last report to the leader (it is in `touched`).
    pub to_report: bool,
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
    /// This member's id (1 standalone).
    me: u64,
    live: HashMap<i64, Liveness>,
    /// Sessions this member's clients touched since the last report to the leader.
    touched: HashSet<i64>,
    /// On the leader: per member, the sessions that moved from it to another member, to be
    /// told in the answer to its next report.
    moved_away: HashMap<u64, Vec<i64>>,
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
    pub fn new(me: u64) -> SessionTracker {
        SessionTracker {
            me,
            ..SessionTracker::default()
        }
    }

    /// Starts tracking with a fresh full timeout (new session, restart, new leader).
    pub fn track(&mut self, id: i64, timeout: Duration, now: Instant) {
        let entry = self.live.entry(id).or_insert(Liveness {
            timeout,
            last_heard: now,
            deadline: now + timeout,
            remote: None,
            last_op: "createSession",
            expiring: false,
            held_by: None,
            to_report: false,
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

    /// Records a packet from the session's client, on this member.
    pub fn touch(&mut self, id: i64, now: Instant, op: &'static str, remote: Option<SocketAddr>) {
        let me = self.me;
        let Some(l) = self.live.get_mut(&id) else {
            return;
        };
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
        // Every packet comes through here: the sets are touched only on the first packet
        // since the last report, or when the session has just moved to this member.
        let moved_from = match l.held_by {
            Some(b) if b == me => None,
            before => {
                l.held_by = Some(me);
                before
            }
        };
        let first_since_report = !std::mem::replace(&mut l.to_report, true);
        if let Some(before) = moved_from {
            self.moved_away.entry(before).or_default().push(id);
        }
        if first_since_report {
            self.touched.insert(id);
        }
        self.lower_earliest(deadline);
    }

    /// On the leader: member `from` heard the session's client at `heard` (its report).
    pub fn heard_at(&mut self, id: i64, heard: Instant, from: u64) {
        let Some(l) = self.live.get_mut(&id) else {
            return;
        };
        if heard > l.last_heard {
            l.last_heard = heard;
            l.deadline = heard + l.timeout;
        }
        let deadline = l.deadline;
        self.note_holder(id, from);
        self.lower_earliest(deadline);
    }

    /// `id` is now held by `member`; the member that held it before must drop its connection.
    fn note_holder(&mut self, id: i64, member: u64) {
        let Some(l) = self.live.get_mut(&id) else {
            return;
        };
        if let Some(before) = l.held_by.replace(member).filter(|&b| b != member) {
            self.moved_away.entry(before).or_default().push(id);
        }
    }

    /// The sessions this member's clients touched since the last call, with how long ago
    /// each was last heard (for the leader; idle times, not instants, so no clocks are
    /// compared between members).
    pub fn take_report(&mut self, now: Instant) -> Vec<(i64, u32)> {
        let touched = std::mem::take(&mut self.touched);
        touched
            .into_iter()
            .filter_map(|id| {
                let l = self.live.get_mut(&id)?;
                l.to_report = false;
                let idle = now.saturating_duration_since(l.last_heard).as_millis();
                Some((id, u32::try_from(idle).unwrap_or(u32::MAX)))
            })
            .collect()
    }

    /// A report that did not reach the leader: its sessions go in the next one.
    pub fn unreport(&mut self, sessions: &[(i64, u32)]) {
        for &(id, _) in sessions {
            if let Some(l) = self.live.get_mut(&id) {
                l.to_report = true;
                self.touched.insert(id);
            }
        }
    }

    /// On the leader: the sessions that moved away from `member` since it was last told.
    pub fn take_moved_away(&mut self, member: u64) -> Vec<i64> {
        self.moved_away.remove(&member).unwrap_or_default()
    }

    /// A new leader: every session gets a fresh full timeout from now, as the leader could
    /// not have heard the reports that went to the one before it.
    pub fn refresh_all(&mut self, now: Instant) {
        for l in self.live.values_mut() {
            l.deadline = l.deadline.max(now + l.timeout);
            l.expiring = false;
        }
        self.earliest = self.live.values().map(|l| l.deadline).min();
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

    /// Stops tracking a session that ended without this member applying its close (it
    /// learned the state from its leader's snapshot): no obituary, it has none to tell.
    pub fn forget(&mut self, id: i64) {
        self.live.remove(&id);
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

    #[test]
    fn leader_learns_from_reports_and_tells_the_member_a_session_left() {
        let t0 = Instant::now();
        // A follower (member 2): its clients' touches go into its next report, once.
        let mut follower = SessionTracker::new(2);
        follower.track(7, Duration::from_millis(4000), t0);
        follower.touch(7, t0 + Duration::from_millis(100), "ping", None);
        assert_eq!(
            follower.take_report(t0 + Duration::from_millis(350)),
            vec![(7, 250)]
        );
        assert!(follower
            .take_report(t0 + Duration::from_millis(400))
            .is_empty());
        follower.unreport(&[(7, 250)]);
        assert_eq!(
            follower.take_report(t0 + Duration::from_millis(400)).len(),
            1
        );

        // The leader (member 1) moves the deadline with the report and records the holder.
        let mut leader = SessionTracker::new(1);
        leader.track(7, Duration::from_millis(4000), t0);
        leader.heard_at(7, t0 + Duration::from_millis(3000), 2);
        assert!(leader.due(t0 + Duration::from_millis(6999)).is_empty());
        // A stale report never moves it back.
        leader.heard_at(7, t0 + Duration::from_millis(10), 2);
        assert!(leader.due(t0 + Duration::from_millis(6999)).is_empty());
        assert!(leader.take_moved_away(2).is_empty());
        // The client moves to member 3: member 2 is told once; then to the leader itself.
        leader.heard_at(7, t0 + Duration::from_millis(3100), 3);
        assert_eq!(leader.take_moved_away(2), vec![7]);
        assert!(leader.take_moved_away(2).is_empty());
        leader.touch(7, t0 + Duration::from_millis(3200), "ping", None);
        assert_eq!(leader.take_moved_away(3), vec![7]);
        assert_eq!(leader.due(t0 + Duration::from_millis(7200)).len(), 1);
    }

    #[test]
    fn a_new_leader_grants_a_fresh_full_timeout() {
        let t0 = Instant::now();
        let mut t = SessionTracker::new(3);
        t.track(1, Duration::from_millis(1000), t0);
        // Silent for 5 s as far as this member knows, but it just became leader.
        t.refresh_all(t0 + Duration::from_millis(5000));
        assert!(t.due(t0 + Duration::from_millis(5999)).is_empty());
        assert_eq!(t.due(t0 + Duration::from_millis(6000)).len(), 1);
    }
}
