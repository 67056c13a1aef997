//! Noticing a silent leader: a voter that has heard nothing from a leader for an election
//! timeout stands for election itself, instead of waiting for openraft 0.9's own timer.
//!
//! That timer waits out the leader's lease (election_timeout_max) on top of an election
//! timeout, and adds twice election_timeout_max more once any vote request of this member
//! was ever refused for a shorter log, a mark openraft clears only at its next election: a
//! leader cut off by a partition was replaced after 7-8 s (tickTime 2000), not the 1-2 s
//! the election timeout promises. A crashed leader is noticed sooner still, by its refused
//! quorum port (see the network's `peer_connection_lost`); this is for the leader that
//! goes quiet without closing anything.
//!
//! "Heard" means an append from a leader answered (or still being answered: a slow fsync
//! is not silence), or a vote granted; while this member leads, its clock stands still.
//! The first round's votes void the old leader's lease on the members that cast them (each
//! voted for itself in a new term), so the next round can elect; a member that learns its
//! log is shorter than another's stands back for an election timeout, leaving the round
//! to the member that can win it.
//!
//! Must not: decide anything raft decides. It only calls `trigger().elect()`, which any
//! member may call at any time without harm to safety.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

/// When this member last heard from a leader, as its quorum port saw it.
pub(super) struct LeaderContact {
    last: Mutex<Instant>,
    appends_in_flight: AtomicUsize,
    /// When a vote request of this member was last refused by one with a longer log.
    shorter_log: Mutex<Option<Instant>>,
}

impl LeaderContact {
    pub(super) fn new() -> LeaderContact {
        LeaderContact {
            last: Mutex::new(Instant::now()),
            appends_in_flight: AtomicUsize::new(0),
            shorter_log: Mutex::new(None),
        }
    }

    /// A leader (or a candidate this member voted for) was heard now.
    pub(super) fn heard(&self) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    /// An append from a leader is being answered; the guard marks it answered.
    pub(super) fn append_started(&self) -> AppendInFlight<'_> {
        self.appends_in_flight.fetch_add(1, Ordering::AcqRel);
        AppendInFlight {
            contact: self,
            from_leader: true,
        }
    }

    /// A vote request of this member was refused by a member with a longer log.
    pub(super) fn refused_for_shorter_log(&self) {
        *self.shorter_log.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    /// Whether a vote request was refused for a shorter log since `since`; forgets it.
    fn take_shorter_log_since(&self, since: Instant) -> bool {
        let refused = self
            .shorter_log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        refused.is_some_and(|at| at >= since)
    }

    fn last_heard(&self) -> Option<Instant> {
        if self.appends_in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(*self.last.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// An append being answered; dropping it counts as hearing the leader unless it was
/// [`refused`](AppendInFlight::refused). A dropped guard always ends the "in flight".
pub(super) struct AppendInFlight<'a> {
    contact: &'a LeaderContact,
    from_leader: bool,
}

impl AppendInFlight<'_> {
    /// The append was refused (a deposed leader's, of an older term): not a leader heard.
    pub(super) fn refused(mut self) {
        self.from_leader = false;
    }
}

impl Drop for AppendInFlight<'_> {
    fn drop(&mut self) {
        if self.from_leader {
            self.contact.heard();
        }
        self.contact
            .appends_in_flight
            .fetch_sub(1, Ordering::AcqRel);
    }
}

/// Watches `contact` on member `me` until `stop`: once no leader was heard for
/// `election_min` (plus a jitter of up to a heartbeat), stands for election; while that
/// brings no leader, again every quarter to half of `election_min`.
pub(super) fn spawn_silence_watch(
    raft: Raft,
    me: NodeId,
    contact: Arc<LeaderContact>,
    timing: (u64, u64, u64),
    stop: tokio_util::sync::CancellationToken,
) {
    let (heartbeat, election_min, _) = timing;
    let silence = Duration::from_millis(election_min);
    let jitter = |upto: u64| Duration::from_millis(rand::random::<u64>() % upto.max(1));
    let poll = Duration::from_millis((heartbeat / 5).clamp(5, 50));
    tokio::spawn(async move {
        // When this watch last stood for election (or stood back), and how long after that,
        // or after the leader was last heard if it has not stood since, it stands next.
        let mut stood_at: Option<Instant> = None;
        let mut wait = silence + jitter(heartbeat);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(poll) => {}
            }
            let (leads, stands) = {
                let m = raft.metrics();
                let m = m.borrow();
                let votes = m
                    .membership_config
                    .membership()
                    .voter_ids()
                    .any(|v| v == me);
                (
                    m.state == ServerState::Leader,
                    votes && matches!(m.state, ServerState::Follower | ServerState::Candidate),
                )
            };
            if leads || !stands {
                contact.heard();
            }
            let Some(last) = contact.last_heard() else {
                continue;
            };
            if stood_at.is_some_and(|at| at < last) {
                // A leader was heard since this watch last stood: start over.
                stood_at = None;
                wait = silence + jitter(heartbeat);
            }
            let now = Instant::now();
            if leads || !stands || now < stood_at.unwrap_or(last) + wait {
                continue;
            }
            // A member whose log is shorter than another's cannot win: it stands back for
            // an election timeout, so that its higher terms do not keep outbidding the
            // member that can.
            if contact.take_shorter_log_since(last) {
                stood_at = Some(now);
                wait = silence + jitter(election_min / 2);
                continue;
            }
            if stood_at.is_none() {
                tracing::info!(
                    silent_ms = now.saturating_duration_since(last).as_millis() as u64,
                    "no word from a leader for an election timeout: standing for election"
                );
            }
            let _ = raft.trigger().elect().await;
            stood_at = Some(Instant::now());
            wait = Duration::from_millis(election_min / 4) + jitter(election_min / 4);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_append_being_answered_is_not_silence_and_a_refused_one_is_not_contact() {
        let contact = LeaderContact::new();
        let before = contact.last_heard().expect("nothing in flight");
        std::thread::sleep(Duration::from_millis(2));
        let answering = contact.append_started();
        assert!(
            contact.last_heard().is_none(),
            "a slow fsync is not silence"
        );
        answering.refused();
        assert_eq!(
            contact.last_heard(),
            Some(before),
            "a deposed leader's append"
        );
        let answering = contact.append_started();
        drop(answering);
        assert!(contact.last_heard().expect("answered") > before);
    }

    #[test]
    fn a_shorter_log_counts_only_when_refused_since_the_leader_was_heard() {
        let contact = LeaderContact::new();
        contact.refused_for_shorter_log();
        std::thread::sleep(Duration::from_millis(2));
        let later = Instant::now();
        assert!(!contact.take_shorter_log_since(later), "an old refusal");
        contact.refused_for_shorter_log();
        assert!(contact.take_shorter_log_since(later));
        assert!(!contact.take_shorter_log_since(later), "taken once");
    }
}
