//! Session liveness across an ensemble. A follower reports the sessions its clients touched to
//! the leader every [`report_interval`] and closes the connections of sessions the leader says
//! have moved to another member; the leader takes reports in ([`SessionsHeard`]). Must not:
//! expire anything (the expiry loop does, on the leader only).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, info};

use crate::consensus::{LivenessHooks, NodeId, ReportedEvent};
use crate::shared::{now_ms, Shared};

/// ZooKeeper's followers report at least every half tick; corral reports more often still
/// (never less often than every 500 ms), so the leader's view of a session held elsewhere is
/// at most that old.
pub(crate) fn report_interval(tick_ms: u32) -> Duration {
    Duration::from_millis(u64::from(tick_ms / 2).clamp(10, 500))
}

/// The follower side: report, then drop what moved away. Runs on every member of an ensemble
/// (a leader's report is a no-op: its own touches are its tracker's).
pub(crate) async fn report(keeper: Arc<Shared>) {
    let every = report_interval(keeper.config.tick_time_ms);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The last report's events were already sent once and failed.
    let mut events_failed = false;
    loop {
        tokio::select! {
            _ = keeper.shutting_down() => return,
            _ = tick.tick() => {}
        }
        let Some(consensus) = keeper.consensus() else {
            continue;
        };
        if !keeper.read_only() {
            end_read_only_sessions(&keeper);
        }
        if keeper.cut_off() {
            drop_sessions_while_cut_off(&keeper);
            continue;
        }
        let wall_ms = now_ms();
        if consensus.is_leader() {
            // Its own clients' touches and connection events are already in its tracker.
            let mut sessions = keeper.sessions();
            sessions.take_report(Instant::now());
            sessions.take_events(wall_ms);
            continue;
        }
        let (heard, events) = {
            let mut sessions = keeper.sessions();
            (
                sessions.take_report(Instant::now()),
                sessions.take_events(wall_ms),
            )
        };
        let had_events = !events.is_empty();
        match consensus
            .report_liveness(heard.clone(), events.clone())
            .await
        {
            Ok(moved) => {
                events_failed = false;
                close_moved(&keeper, &moved);
            }
            Err(e) => {
                debug!("session report to the leader failed: {e}");
                let mut sessions = keeper.sessions();
                sessions.unreport(&heard);
                // Connection events are evidence, not liveness: they are sent again once,
                // then dropped, so a leader that cannot take them (an older version during a
                // rolling upgrade) still gets the sessions' liveness.
                if had_events && !events_failed {
                    sessions.unreport_events(events, wall_ms);
                    events_failed = true;
                } else if had_events {
                    debug!(
                        events = events.len(),
                        "dropping connection events the leader did not take twice"
                    );
                    events_failed = false;
                }
            }
        }
    }
}

/// Cut off from the quorum: every read-write session's connection is closed, so its client
/// moves to a member that can keep it alive (see `Shared::cut_off`).
fn drop_sessions_while_cut_off(keeper: &Shared) {
    let read_write: Vec<_> = keeper
        .conns()
        .handles()
        .filter(|c| !c.read_only)
        .cloned()
        .collect();
    if read_write.is_empty() {
        return;
    }
    info!(
        connections = read_write.len(),
        "cut off from the quorum: closing client connections so they move to a member of it"
    );
    for c in read_write {
        c.out.close("cut off from the quorum");
    }
}

/// This member has a leader again: its read-only sessions end (their clients reconnect to
/// a read-write member), as ZooKeeper's read-only server shuts down when the quorum returns.
fn end_read_only_sessions(keeper: &Shared) {
    let read_only: Vec<_> = keeper
        .conns()
        .handles()
        .filter(|c| c.read_only)
        .cloned()
        .collect();
    for c in read_only {
        info!(
            session = format!("0x{:x}", c.session_id),
            remote = %c.remote,
            "the quorum is back; closing a read-only session"
        );
        c.out.close("read-only mode ended");
    }
}

/// Closes this member's connections of sessions now held by another member, as ZooKeeper
/// closes the old connection of a session that moved.
fn close_moved(keeper: &Shared, moved: &[i64]) {
    for &id in moved {
        if let Some(c) = keeper.conns().detach_session(id) {
            info!(
                session = format!("0x{id:x}"),
                remote = %c.remote,
                "session moved to another member; closing its old connection here"
            );
            c.out.close(crate::outbound::SESSION_MOVED);
        }
    }
}

/// The leader side of reports.
pub(crate) struct SessionsHeard(pub(crate) Arc<Shared>);

impl LivenessHooks for SessionsHeard {
    fn sessions_heard(
        &self,
        from: NodeId,
        sessions: &[(i64, u32)],
        events: &[ReportedEvent],
    ) -> Vec<i64> {
        let now = Instant::now();
        let me = self.0.config.server_id.unwrap_or(1);
        let (moved, mine) = {
            let mut t = self.0.sessions();
            t.events_heard(from, events, now, now_ms());
            for &(id, idle_ms) in sessions {
                let heard = now
                    .checked_sub(Duration::from_millis(u64::from(idle_ms)))
                    .unwrap_or(now);
                t.heard_at(id, heard, from);
            }
            (t.take_moved_away(from), t.take_moved_away(me))
        };
        close_moved(&self.0, &mine);
        moved
    }

    /// Removed by a reconfig: this member stops serving, as a removed ZooKeeper server does.
    /// Its clients are disconnected and go to the members that remain (the listener and
    /// every connection end, as at shutdown); the process stays until it is stopped.
    fn left_ensemble(&self) {
        tracing::error!(
            "this member was removed from the ensemble by a reconfig; it no longer serves \
             clients (stop it, or add it back and restart it)"
        );
        self.0.shutdown.cancel();
    }
}
