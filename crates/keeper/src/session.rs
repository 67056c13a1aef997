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
//! It also gathers the evidence of *why* a session ends ([`SessionTracker::evidence`]): each
//! session's connection history (connects, resumes, disconnections with their cause, on every
//! member: followers report theirs to the leader) and whether the member holding it is still
//! heard from. The evidence travels in the CloseSession entry and becomes the obituary every
//! member keeps (`corral_tree::obituary`).
//!
//! This module decides *when*; expiring is done by the expiry loop
//! (`housekeeping`) proposing a CloseSession entry, so the ephemerals go away
//! through the log like any other change. Pure bookkeeping: no I/O, no clock read, no lock of
//! its own.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use corral_tree::obituary::{ConnEvent, ConnEventKind, EndCause, Evidence, HISTORY_KEPT};

use crate::consensus::ReportedEvent;
use crate::watch::ConnId;

// The runtime's clock, so tests can pause and advance it.
use tokio::time::Instant;

/// How often the checker looks for sessions past their deadline.
pub const CHECK_INTERVAL: Duration = Duration::from_millis(10);
/// A checker wake-up later than this beyond its interval is treated as a keeper stall.
pub const STALL_THRESHOLD: Duration = Duration::from_millis(200);
/// Connection events waiting for the next report to the leader, at most (the oldest go
/// first): a client reconnecting in a tight loop cannot grow this without bound.
const OUTBOX_MAX: usize = 4096;

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
    /// When the holder's connection attached (its handshake: a Connected or Resumed event),
    /// as far as this member knows. A client opens a connection only after giving up the one
    /// before, so packets another member heard on an older connection, reported late, never
    /// take the session from a holder that attached; only a later attach does.
    pub attached_at: Option<Instant>,
    /// Touched here since the last report to the leader (it is in `touched`).
    pub to_report: bool,
    /// The timeout its client asked for at its last connect (0: not known here).
    pub requested_timeout_ms: i32,
    /// The connection holding it on this member.
    pub conn: Option<ConnId>,
    /// Its latest connection events, oldest first (on the leader: every member's).
    pub history: VecDeque<ConnEvent>,
}

impl Liveness {
    fn record(&mut self, event: ConnEvent) {
        if self.history.len() == HISTORY_KEPT {
            self.history.pop_front();
        }
        self.history.push_back(event);
    }
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
    /// Connection events on this member not yet reported to the leader, with their wall
    /// time.
    outbox: VecDeque<(i64, ReportedEvent)>,
    /// On the leader: when each member's last report arrived.
    reports: HashMap<u64, Instant>,
    /// Stalls forgiven, when each ended and how long it was (the latest few).
    stalls: VecDeque<(Instant, Duration)>,
    /// Sessions ended by expiry (not by their client) since start.
    pub expired_total: u64,
    /// Sessions ended since start (as applied live, not replayed), by cause.
    ended: HashMap<EndCause, u64>,
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
            attached_at: None,
            to_report: false,
            requested_timeout_ms: 0,
            conn: None,
            history: VecDeque::new(),
        });
        entry.timeout = timeout;
        entry.last_heard = now;
        entry.deadline = now + timeout;
        let deadline = entry.deadline;
        self.lower_earliest(deadline);
    }

    /// A new session was created through member `creator` (the top byte of its id, as in
    /// ZooKeeper): until a report says otherwise, that member holds it. A member stopped
    /// before its first report still leaves its sessions attributed to it.
    pub fn created_through(&mut self, id: i64, creator: u64) {
        if let Some(l) = self.live.get_mut(&id) {
            l.held_by.get_or_insert(creator);
        }
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
            // A packet on a connection older than the holder's attach (see `attached_at`).
            Some(_) if l.attached_at.is_some() => None,
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
        // Packets prove a holder only where no attach is known: a member still hearing an
        // old connection's last packets must not take the session back (see `attached_at`).
        if l.attached_at.is_none() || l.held_by.is_none() {
            self.note_holder(id, from);
        }
        self.lower_earliest(deadline);
    }

    /// `member` attached the session's connection at `at`: it holds the session, unless an
    /// attach elsewhere that came later is already known.
    fn attach(&mut self, id: i64, member: u64, at: Instant) {
        let Some(l) = self.live.get_mut(&id) else {
            return;
        };
        if l.attached_at.is_some_and(|known| known > at) {
            return;
        }
        l.attached_at = Some(at);
        self.note_holder(id, member);
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
            // What this member knew of attaches elsewhere is stale: reports decide anew.
            l.attached_at = None;
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
    pub fn forgive_stall(&mut self, late: Duration, now: Instant) {
        self.stalled_total += late;
        self.stalls_detected += 1;
        if self.stalls.len() == 16 {
            self.stalls.pop_front();
        }
        self.stalls.push_back((now, late));
        for l in self.live.values_mut() {
            l.deadline += late;
        }
    }

    /// The longest of the recent stalls and how long ago the latest ended, for `mntr`
    /// (`corral doctor` reads them); None before the first.
    pub fn recent_stalls(&self, now: Instant) -> Option<(Duration, Duration)> {
        let longest = self.stalls.iter().map(|(_, d)| *d).max()?;
        let (last, _) = self.stalls.back()?;
        Some((longest, now.saturating_duration_since(*last)))
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

    /// The session ended (an applied CloseSession; `expired` unless its client closed it):
    /// stop tracking it.
    pub fn end(&mut self, id: i64, expired: bool) {
        self.expired_total += u64::from(expired);
        self.live.remove(&id);
    }

    /// Counts a session's end by its obituary's cause (for `/metrics`).
    pub fn count_end(&mut self, cause: EndCause) {
        *self.ended.entry(cause).or_default() += 1;
    }

    /// Sessions ended since start, by cause.
    pub fn ended_by_cause(&self) -> HashMap<EndCause, u64> {
        self.ended.clone()
    }

    /// A connection on this member took up the session (`resumed`: an existing one).
    pub fn connected(
        &mut self,
        id: i64,
        conn: ConnId,
        remote: SocketAddr,
        requested_timeout_ms: i32,
        resumed: bool,
        wall_ms: i64,
    ) {
        let kind = if resumed {
            ConnEventKind::Resumed
        } else {
            ConnEventKind::Connected
        };
        let me = self.me;
        let Some(l) = self.live.get_mut(&id) else {
            return;
        };
        l.conn = Some(conn);
        l.requested_timeout_ms = requested_timeout_ms;
        let event = ConnEvent {
            at_ms: wall_ms,
            member: me,
            kind,
            remote: remote.to_string(),
            cause: String::new(),
        };
        self.note(id, event);
        self.attach(id, me, Instant::now());
    }

    /// Connection `conn` on this member, which held the session, ended for `cause`. The end
    /// of a connection the session had already left (it resumed on a newer one) is no news.
    pub fn disconnected(
        &mut self,
        id: i64,
        conn: ConnId,
        kind: ConnEventKind,
        cause: &str,
        wall_ms: i64,
    ) {
        let me = self.me;
        let Some(l) = self.live.get_mut(&id) else {
            return;
        };
        if l.conn != Some(conn) {
            return;
        }
        l.conn = None;
        let event = ConnEvent {
            at_ms: wall_ms,
            member: me,
            kind,
            remote: l.remote.map(|r| r.to_string()).unwrap_or_default(),
            cause: cause.to_string(),
        };
        self.note(id, event);
    }

    /// A connection event on this member: into the session's history, and queued for the
    /// next report to the leader.
    fn note(&mut self, id: i64, e: ConnEvent) {
        if let Some(l) = self.live.get_mut(&id) {
            l.record(e.clone());
        }
        if self.outbox.len() == OUTBOX_MAX {
            self.outbox.pop_front();
        }
        let at_ms = e.at_ms;
        let event = ReportedEvent {
            session_id: id,
            age_ms: 0,
            kind: e.kind,
            remote: e.remote,
            cause: e.cause,
        };
        self.outbox.push_back((at_ms, event));
    }

    /// The connection events to report to the leader, aged at `wall_ms`.
    pub fn take_events(&mut self, wall_ms: i64) -> Vec<ReportedEvent> {
        self.outbox
            .drain(..)
            .map(|(at_ms, mut e)| {
                e.age_ms = u32::try_from(wall_ms.saturating_sub(at_ms).max(0)).unwrap_or(u32::MAX);
                e
            })
            .collect()
    }

    /// A report that did not reach the leader: its events (taken at `wall_ms`) go in the
    /// next one.
    pub fn unreport_events(&mut self, events: Vec<ReportedEvent>, wall_ms: i64) {
        for e in events.into_iter().rev() {
            if self.outbox.len() == OUTBOX_MAX {
                break;
            }
            self.outbox.push_front((wall_ms - i64::from(e.age_ms), e));
        }
    }

    /// On the leader: member `from` reported (at `now`) these connection events.
    pub fn events_heard(
        &mut self,
        from: u64,
        events: &[ReportedEvent],
        now: Instant,
        wall_ms: i64,
    ) {
        self.reports.insert(from, now);
        if from == self.me {
            return;
        }
        for e in events {
            if let Some(l) = self.live.get_mut(&e.session_id) {
                l.record(ConnEvent {
                    at_ms: wall_ms - i64::from(e.age_ms),
                    member: from,
                    kind: e.kind,
                    remote: e.remote.clone(),
                    cause: e.cause.clone(),
                });
            }
            if matches!(e.kind, ConnEventKind::Connected | ConnEventKind::Resumed) {
                let at = now
                    .checked_sub(Duration::from_millis(u64::from(e.age_ms)))
                    .unwrap_or(now);
                self.attach(e.session_id, from, at);
            }
        }
    }

    /// What this member knows of why session `id` ends now: on the leader, for an expiry;
    /// on a member whose client closed it, for a close. `closed_by_client` says which.
    pub fn evidence(&self, id: i64, closed_by_client: bool, now: Instant) -> Evidence {
        let Some(l) = self.live.get(&id) else {
            let cause = if closed_by_client {
                EndCause::ClosedByClient
            } else {
                EndCause::Unknown
            };
            return Evidence::bare(cause, "the session was not tracked here");
        };
        let silent = now.saturating_duration_since(l.last_heard);
        let silent_ms = silent.as_millis() as u64;
        let timeout_ms = l.timeout.as_millis() as u64;
        let forgiven: Duration = self
            .stalls
            .iter()
            .filter(|(ended, _)| *ended > l.last_heard)
            .map(|(_, d)| *d)
            .sum();
        let remote = l.remote.map(|r| r.to_string()).unwrap_or_default();
        let holder = l.held_by.unwrap_or(self.me);
        let last_event = l.history.back();
        let (cause, detail) = if closed_by_client {
            (EndCause::ClosedByClient, "closed by the client".to_string())
        } else if let Some(age) = self
            .holder_silent_for(holder, now)
            .filter(|a| *a >= silent / 2)
        {
            (
                EndCause::MemberLost,
                format!(
                    "member {holder}, which held the session's connection, was last heard {} ms \
                     ago; the client did not move to another member within its timeout of \
                     {timeout_ms} ms",
                    age.as_millis()
                ),
            )
        } else if let Some(e) = last_event
            .filter(|e| matches!(e.kind, ConnEventKind::Disconnected | ConnEventKind::Moved))
        {
            (
                EndCause::ConnectionLost,
                format!(
                    "the connection from {} to member {} ended ({}) and the client did not \
                     resume the session within its timeout of {timeout_ms} ms",
                    if e.remote.is_empty() { "?" } else { &e.remote },
                    e.member,
                    e.cause
                ),
            )
        } else if last_event.is_none() && l.conn.is_none() && holder == self.me {
            (
                EndCause::ConnectionLost,
                format!(
                    "no connection held the session here since this member began tracking it \
                     (a restart or a change of leader); the client did not come back within \
                     its timeout of {timeout_ms} ms"
                ),
            )
        } else {
            (
                EndCause::SilentWhileConnected,
                format!(
                    "connected to member {holder}{}, no packet for {silent_ms} ms (timeout \
                     {timeout_ms} ms): the client process stalled (a GC pause?) or the \
                     network dropped its packets",
                    if remote.is_empty() {
                        String::new()
                    } else {
                        format!(" from {remote}")
                    }
                ),
            )
        };
        Evidence {
            cause,
            detail,
            remote,
            member: holder,
            requested_timeout_ms: l.requested_timeout_ms,
            silent_ms: silent_ms as i64,
            last_op: l.last_op.to_string(),
            stall_forgiven_ms: forgiven.as_millis() as i64,
            // At most HISTORY_KEPT events; `apply` cuts every field to its bound.
            history: l.history.iter().cloned().collect(),
        }
    }

    /// On the leader, how long since member `holder` last reported (None for itself; a
    /// member never heard from counts as silent since forever).
    fn holder_silent_for(&self, holder: u64, now: Instant) -> Option<Duration> {
        if holder == self.me {
            return None;
        }
        Some(
            self.reports
                .get(&holder)
                .map_or(Duration::MAX, |at| now.saturating_duration_since(*at)),
        )
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
        t.forgive_stall(Duration::from_millis(5000), t0);
        assert!(t.due(t0 + Duration::from_millis(5500)).is_empty());
        assert_eq!(t.due(t0 + Duration::from_millis(6000)).len(), 1);
        assert_eq!(t.stalls_detected, 1);
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn evidence_tells_silent_from_disconnected_and_closed() {
        let mut t = SessionTracker::new(1);
        let t0 = Instant::now();
        let timeout = Duration::from_millis(4000);
        for id in [1, 2, 3] {
            t.track(id, timeout, t0);
            t.touch(id, t0, "setData", Some(addr(5000 + id as u16)));
            t.connected(
                id,
                10 + id as u64,
                addr(5000 + id as u16),
                6000,
                false,
                1_000,
            );
        }
        // 1 stays connected and silent; 2's connection was reset; 3 closes itself.
        t.disconnected(
            2,
            12,
            ConnEventKind::Disconnected,
            "read error: reset",
            1_500,
        );
        // The end of a connection the session no longer uses is not news.
        t.disconnected(1, 99, ConnEventKind::Disconnected, "old", 1_600);
        let at = t0 + Duration::from_millis(4001);

        let e = t.evidence(1, false, at);
        assert_eq!(e.cause, EndCause::SilentWhileConnected, "{}", e.detail);
        assert_eq!((e.silent_ms, e.requested_timeout_ms), (4001, 6000));
        assert_eq!((e.remote.as_str(), e.member), ("127.0.0.1:5001", 1));
        assert_eq!(e.last_op, "setData");
        assert_eq!(e.history.len(), 1);

        let e = t.evidence(2, false, at);
        assert_eq!(e.cause, EndCause::ConnectionLost, "{}", e.detail);
        assert!(e.detail.contains("read error: reset"), "{}", e.detail);
        let kinds: Vec<_> = e.history.iter().map(|h| (h.kind, h.at_ms)).collect();
        assert_eq!(
            kinds,
            vec![
                (ConnEventKind::Connected, 1_000),
                (ConnEventKind::Disconnected, 1_500)
            ]
        );

        assert_eq!(t.evidence(3, true, at).cause, EndCause::ClosedByClient);
        // A session not tracked here: what is known is the cause.
        assert_eq!(t.evidence(77, false, at).cause, EndCause::Unknown);

        // Ended: no longer tracked; only expiries count.
        t.end(1, true);
        t.end(3, false);
        assert!(t.get(1).is_none());
        assert_eq!(t.expired_total, 1);
    }

    #[test]
    fn the_leader_learns_connection_events_and_lost_members_from_reports() {
        let t0 = Instant::now();
        let timeout = Duration::from_millis(4000);
        // Member 2 holds sessions 7 and 8; their events reach the leader aged.
        let mut follower = SessionTracker::new(2);
        let mut leader = SessionTracker::new(1);
        for id in [7, 8] {
            follower.track(id, timeout, t0);
            leader.track(id, timeout, t0);
            follower.connected(id, id as u64, addr(7000), 5000, id == 8, 10_000);
        }
        follower.disconnected(
            8,
            8,
            ConnEventKind::Moved,
            "closed by server: session moved",
            10_200,
        );
        let events = follower.take_events(10_300);
        assert_eq!(events.len(), 3);
        assert_eq!(
            events.iter().map(|e| e.age_ms).collect::<Vec<_>>(),
            vec![300, 300, 100]
        );
        // A report that failed goes again, with the same times.
        follower.unreport_events(events, 10_300);
        let events = follower.take_events(10_400);
        assert_eq!(events[2].age_ms, 200);
        assert!(follower.take_events(10_500).is_empty());

        leader.heard_at(7, t0, 2);
        leader.heard_at(8, t0, 2);
        leader.events_heard(2, &events, t0 + Duration::from_millis(3900), 50_000);
        let e8 = leader.evidence(8, false, t0 + Duration::from_millis(4000));
        assert_eq!(e8.cause, EndCause::ConnectionLost, "{}", e8.detail);
        assert_eq!(
            e8.history.last().map(|h| (h.at_ms, h.member)),
            Some((49_800, 2))
        );
        // Member 2 keeps reporting: a silent client of it is silent while connected.
        let e7 = leader.evidence(7, false, t0 + Duration::from_millis(4000));
        assert_eq!(e7.cause, EndCause::SilentWhileConnected, "{}", e7.detail);
        // Member 2's reports stop: its sessions are lost with it.
        let e7 = leader.evidence(7, false, t0 + Duration::from_millis(9000));
        assert_eq!(e7.cause, EndCause::MemberLost, "{}", e7.detail);
        assert_eq!(e7.member, 2);
        // A session created through member 3, which never reported before it went.
        leader.track(0x0300_0000_0000_0001, timeout, t0);
        leader.created_through(0x0300_0000_0000_0001, 3);
        let e = leader.evidence(0x0300_0000_0000_0001, false, t0 + timeout);
        assert_eq!(
            (e.cause, e.member),
            (EndCause::MemberLost, 3),
            "{}",
            e.detail
        );
    }

    #[test]
    fn evidence_counts_the_stalls_forgiven_during_the_silence() {
        let mut t = SessionTracker::new(1);
        let t0 = Instant::now();
        t.track(1, Duration::from_millis(1000), t0);
        t.forgive_stall(Duration::from_millis(700), t0 + Duration::from_millis(900));
        let e = t.evidence(1, false, t0 + Duration::from_millis(1700));
        assert_eq!(e.stall_forgiven_ms, 700);
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

    /// The client leaves member 2 and resumes on member 3 within a millisecond; member 2's
    /// report of the old connection's last packets reaches the leader after member 3's
    /// report of the resume. The session stays with member 3, and member 2 is the one told.
    #[test]
    fn a_late_report_of_an_old_connection_does_not_take_the_session_back() {
        let t0 = Instant::now();
        let timeout = Duration::from_millis(15_000);
        let mut leader = SessionTracker::new(1);
        leader.track(7, timeout, t0);
        let attached = |kind| ReportedEvent {
            session_id: 7,
            age_ms: 0,
            kind,
            remote: "127.0.0.1:4000".into(),
            cause: String::new(),
        };
        // Member 2 attached it first.
        leader.events_heard(2, &[attached(ConnEventKind::Connected)], t0, 1_000);
        leader.heard_at(7, t0 + Duration::from_millis(400), 2);
        assert!(leader.take_moved_away(2).is_empty());
        // Member 3's report: the resume, 1 ms after member 2 last heard the client.
        let resumed_at = t0 + Duration::from_millis(401);
        leader.events_heard(3, &[attached(ConnEventKind::Resumed)], resumed_at, 1_401);
        leader.heard_at(7, resumed_at, 3);
        assert_eq!(leader.take_moved_away(2), vec![7]);
        // Member 2's late report: packets of the old connection, heard (as far as the
        // leader can tell) even after the resume. They keep the session alive, no more.
        leader.heard_at(7, t0 + Duration::from_millis(402), 2);
        assert!(leader.take_moved_away(3).is_empty(), "member 3 keeps it");
        assert_eq!(leader.get(7).and_then(|l| l.held_by), Some(3));
        // Without attach events (an older member), packets still move it.
        let mut legacy = SessionTracker::new(1);
        legacy.track(8, timeout, t0);
        legacy.heard_at(8, t0, 2);
        legacy.heard_at(8, t0 + Duration::from_millis(1), 3);
        assert_eq!(legacy.take_moved_away(2), vec![8]);
        // A later attach still takes it: the client moved back to member 2.
        leader.events_heard(
            2,
            &[attached(ConnEventKind::Resumed)],
            t0 + Duration::from_millis(900),
            1_900,
        );
        assert_eq!(leader.take_moved_away(3), vec![7]);
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
