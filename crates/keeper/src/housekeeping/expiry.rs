//! The expiry loop: wakes at the earliest session deadline (at least every
//! [`CHECK_INTERVAL`], so a new session's earlier deadline is seen), forgives its own lateness to every
//! session (a stalled keeper must not expire healthy clients), and on the leader proposes a
//! CloseSession for each session past its deadline. Must not: delete anything itself; the
//! ephemerals go through the log like any other change.

use std::sync::Arc;

use corral_tree::obituary::Evidence;
use corral_tree::{Entry, EntryOp};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::session::{Due, CHECK_INTERVAL, STALL_THRESHOLD};
use crate::shared::{now_ms, Shared};

pub(crate) async fn run(keeper: Arc<Shared>) {
    let mut expected = Instant::now() + CHECK_INTERVAL;
    // Leading since the last wake-up; a standalone keeper leads from its start.
    let mut was_leader = keeper.is_leader();
    loop {
        tokio::select! {
            _ = keeper.shutting_down() => return,
            _ = tokio::time::sleep_until(expected) => {}
        }
        let now = Instant::now();
        let late = now.saturating_duration_since(expected);
        let leader = keeper.is_leader();
        let due = {
            let mut sessions = keeper.sessions();
            if leader && !was_leader {
                // The reports of the sessions held elsewhere went to the leader before:
                // nobody is expired on what this member did not hear.
                info!("leading: every session gets a fresh full timeout");
                sessions.refresh_all(now);
            }
            if late > STALL_THRESHOLD {
                warn!(
                    late_ms = late.as_millis() as u64,
                    "keeper stalled; not counting the stall against client sessions"
                );
                sessions.forgive_stall(late, now);
            }
            // A follower's deadlines do not count (it does not hear the sessions held
            // elsewhere): it expires nobody, and leading later refreshes them all.
            if leader {
                // The evidence is gathered now, under the same hold, as the deadline passed.
                sessions
                    .due(now)
                    .into_iter()
                    .map(|d| {
                        let evidence = sessions.evidence(d.session_id, false, now);
                        (d, evidence)
                    })
                    .collect()
            } else {
                Vec::new()
            }
        };
        was_leader = leader;
        expected = next_wake(&keeper, now);
        for (d, evidence) in due {
            propose_expiry(&keeper, d, evidence);
        }
    }
}

/// The earliest deadline if it is still ahead, else one interval on: a session is expired at
/// its deadline to the millisecond, and a deadline already handled does not spin the loop.
fn next_wake(keeper: &Shared, now: Instant) -> Instant {
    let poll = now + CHECK_INTERVAL;
    match keeper.sessions().earliest_deadline() {
        Some(d) if d > now => d.min(poll),
        _ => poll,
    }
}

fn propose_expiry(keeper: &Arc<Shared>, d: Due, evidence: Evidence) {
    let id = d.session_id;
    info!(
        session = format!("0x{id:x}"),
        silent_ms = d.silent.as_millis() as u64,
        timeout_ms = d.timeout.as_millis() as u64,
        cause = evidence.cause.name(),
        "expiring: {}",
        evidence.detail
    );
    let entry = Entry {
        session_id: 0,
        time_ms: now_ms(),
        identities: Vec::new(),
        op: EntryOp::CloseSession {
            session_id: id,
            evidence,
        },
    };
    let task_keeper = Arc::clone(keeper);
    keeper.spawn(async move {
        if let Err(e) = task_keeper.propose_as_leader(entry).await {
            warn!(session = format!("0x{id:x}"), "expiry proposal failed: {e}");
            task_keeper.sessions().unmark(id);
        }
    });
}
