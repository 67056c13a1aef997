//! The leader's intake: every proposal bound for this member's log while it leads (its own
//! clients', from the submitter, and its followers', forwarded) passes through one queue, and
//! each raft entry carries all that arrived while the entries before it were in flight, as one
//! [`Batch`]. openraft 0.9's core makes each entry durable before it takes the next, so an
//! entry per write would cost the leader an fsync per write; an entry per batch costs one per
//! batch, and batches grow with the load.
//!
//! Must not: reorder proposals (each origin's stay in submission order), hold more than
//! [`QUEUED`] arrivals (senders wait: back-pressure to the submitter and to followers), or put
//! an arrival into the log of a term other than the one it was accepted for (a leader's own
//! decisions are valid only in their term; the others are handed to each new leader anyway).

use openraft::metrics::RaftServerMetrics;
use tokio::sync::{mpsc, watch, Semaphore};

use super::*;

/// Raft entries of this intake not yet applied here. The next entry is made once one of them
/// applies, so what arrives meanwhile joins it; three keep the leader's disk busy while the
/// entry before is replicated and the one before that applied.
const IN_FLIGHT: usize = 3;
/// Arrivals (one submitter batch or one forwarded batch each) waiting for an entry.
const QUEUED: usize = 64;
/// An entry stops growing at this many proposals or bytes ([`Entry::size_estimate`]); one
/// proposal always fits, and the bound plus one proposal stays under the quorum port's frame
/// limit (at least twice `jute.maxbuffer` plus 1 MiB).
const MAX_PROPOSALS: usize = 2048;
const MAX_BYTES: usize = 1 << 20;

/// Proposals accepted while this member led in `term`.
struct Arrival {
    term: u64,
    proposals: Vec<Proposal>,
}

/// The way into this leader's log (see the module doc).
pub(super) struct Intake {
    tx: mpsc::Sender<Arrival>,
}

/// The intake's task ended: raft stopped.
#[derive(Debug)]
pub(super) struct IntakeStopped;

impl Intake {
    /// Starts the task that makes raft entries for member `me`.
    pub(super) fn start(raft: Raft, me: NodeId) -> Intake {
        let (tx, rx) = mpsc::channel(QUEUED);
        tokio::spawn(run(raft, me, rx));
        Intake { tx }
    }

    /// Queues `proposals`, accepted while this member leads in `term`, for its log. They are
    /// dropped if it no longer leads in `term` when their entry is made: their senders hand
    /// them to the next leader.
    pub(super) async fn put(
        &self,
        term: u64,
        proposals: Vec<Proposal>,
    ) -> Result<(), IntakeStopped> {
        self.tx
            .send(Arrival { term, proposals })
            .await
            .map_err(|_| IntakeStopped)
    }
}

/// This member's term while it leads, as the submitter sees it (current leader and term): an
/// arrival the intake drops is handed out again only when that view changes.
fn leading_term(
    metrics: &watch::Receiver<RaftServerMetrics<NodeId, BasicNode>>,
    me: NodeId,
) -> Option<u64> {
    let m = metrics.borrow();
    (m.current_leader == Some(me)).then_some(m.vote.leader_id().get_term())
}

async fn run(raft: Raft, me: NodeId, mut rx: mpsc::Receiver<Arrival>) {
    // Server metrics change with the vote and leader only, not with every apply: the slot
    // wait below wakes for a change of term, not for each entry applied.
    let mut metrics = raft.server_metrics();
    // Slots belong to one term: an entry of an earlier term may never be answered (a deposed
    // leader whose log is replaced by a snapshot keeps its unanswered entries' responders),
    // so each new term starts with all of them free.
    let mut slots_term = leading_term(&metrics, me);
    let mut in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
    // What did not fit the last entry, first in the next.
    let mut carry: Option<Arrival> = None;
    loop {
        if carry.is_none() {
            match rx.recv().await {
                Some(a) => carry = Some(a),
                None => return,
            }
        }
        // A slot first: what arrives while the entries in flight are made durable joins this
        // one. A change of leader or term while waiting starts the slots afresh.
        let (slot, mut term) = loop {
            let term = leading_term(&metrics, me);
            if term != slots_term {
                slots_term = term;
                in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
            }
            tokio::select! {
                slot = Arc::clone(&in_flight).acquire_owned() => match slot {
                    Ok(slot) => break (slot, term),
                    Err(_) => return,
                },
                changed = metrics.changed() => if changed.is_err() { return },
            }
        };
        let mut batch = Vec::new();
        let mut bytes = 0usize;
        let full = |n: usize, bytes: usize| n >= MAX_PROPOSALS || bytes >= MAX_BYTES;
        while !full(batch.len(), bytes) {
            let Some(arrival) = carry.take().or_else(|| rx.try_recv().ok()) else {
                break;
            };
            if Some(arrival.term) != term {
                // Accepted after the view was read (this member just took over)? Look again;
                // an entry holds one term's arrivals only.
                let now = leading_term(&metrics, me);
                if now != term && !batch.is_empty() {
                    carry = Some(arrival);
                    break;
                }
                term = now;
                if Some(arrival.term) != term {
                    continue;
                }
            }
            let mut rest = arrival.proposals.into_iter();
            for p in rest.by_ref() {
                bytes += p.entry.size_estimate();
                batch.push(p);
                if full(batch.len(), bytes) {
                    break;
                }
            }
            let rest: Vec<Proposal> = rest.collect();
            if !rest.is_empty() {
                carry = Some(Arrival {
                    term: arrival.term,
                    proposals: rest,
                });
            }
        }
        if batch.is_empty() {
            continue;
        }
        stamp_leader_time(&mut batch);
        match raft.client_write_ff(Batch(batch)).await {
            // The slot is free once the entry applied here, or failed (no longer leader);
            // results reach clients through `Pending`, not through this answer.
            Ok(applied) => {
                tokio::spawn(async move {
                    let _ = applied.await;
                    drop(slot);
                });
            }
            Err(_) => return,
        }
    }
}
