//! The way into consensus: [`Pending`] holds every submitted entry until this member has
//! applied it, and the submitter task hands them, in submission order, to whoever leads: raft
//! itself on the leader, the leader's quorum port from a follower ([`Forwarder`]). When the
//! leader changes, every entry not yet applied is handed to the new one again; the tag of its
//! [`Proposal`] makes a second copy a no-op ([`HighWater`]), so a write is applied exactly once
//! and its client waits through a leader change instead of failing.
//!
//! The result a client gets is always this member's own apply of its entry, so it reads its
//! own writes here. Must not: decide anything about an entry's content, or wait on the network
//! while holding the pending lock.

use std::collections::BTreeMap;
use std::time::SystemTime;

use tokio::sync::{oneshot, Notify};

use super::*;

/// Longest run of entries handed over in one go (to the intake or the leader's).
const MAX_BATCH: usize = 512;
/// Pause after the leader could not be reached, before trying again.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

type Outcome = Result<(i64, ApplyResult), ConsensusError>;

/// A submitted entry whose result is still to come (see [`Consensus::submit`]).
pub struct Submitted(oneshot::Receiver<Outcome>);

impl Submitted {
    /// Waits until the entry is committed and applied here; its zxid and apply result.
    pub async fn wait(self) -> Outcome {
        match self.0.await {
            Ok(outcome) => outcome,
            // Dropped unanswered: consensus stopped.
            Err(_) => Err(ConsensusError::Shutdown),
        }
    }
}

struct Waiter {
    entry: Entry,
    reply: oneshot::Sender<Outcome>,
    /// A leader's own decision (an expiry): valid only while this member leads in that term,
    /// never handed to another leader.
    leader_term: Option<u64>,
}

/// Entries submitted here and not yet applied here, by sequence number.
pub(super) struct Pending {
    me: NodeId,
    inner: Mutex<PendingInner>,
    /// Woken when an entry is added.
    added: Notify,
}

struct PendingInner {
    next_seq: u64,
    waiting: BTreeMap<u64, Waiter>,
    closed: bool,
}

impl Pending {
    pub(super) fn new(me: NodeId) -> Pending {
        Pending {
            me,
            inner: Mutex::new(PendingInner {
                next_seq: 1,
                waiting: BTreeMap::new(),
                closed: false,
            }),
            added: Notify::new(),
        }
    }

    pub(super) fn me(&self) -> NodeId {
        self.me
    }

    fn lock(&self) -> MutexGuard<'_, PendingInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sequence numbers go on from `floor` (exclusive) and from the clock in microseconds,
    /// whichever is higher: after a restart, entries this member submitted before it stopped
    /// may still be applied, so new ones must never reuse their numbers. The log remembers the
    /// highest applied; the clock covers those still in flight (unless it went back by more
    /// than the time the member was down).
    pub(super) fn start_after(&self, floor: u64) {
        let clock = SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let mut inner = self.lock();
        inner.next_seq = inner.next_seq.max(floor + 1).max(clock);
    }

    pub(super) fn submit(
        &self,
        entry: Entry,
        leader_term: Option<u64>,
    ) -> Result<Submitted, ConsensusError> {
        let (reply, rx) = oneshot::channel();
        {
            let mut inner = self.lock();
            if inner.closed {
                return Err(ConsensusError::Shutdown);
            }
            let seq = inner.next_seq;
            inner.next_seq += 1;
            inner.waiting.insert(
                seq,
                Waiter {
                    entry,
                    reply,
                    leader_term,
                },
            );
        }
        self.added.notify_one();
        Ok(Submitted(rx))
    }

    /// Up to [`MAX_BATCH`] waiting entries after `after`, as proposals, in order, for
    /// `target` (leader, term). A leader's own decision meant for another term or leader is
    /// failed instead: it was decided on what that leader knew.
    pub(super) fn unsent(&self, after: u64, target: (NodeId, u64)) -> Vec<Proposal> {
        let mut inner = self.lock();
        let stale: Vec<u64> = inner
            .waiting
            .range(after + 1..)
            .filter(|(_, w)| w.leader_term.is_some_and(|t| (self.me, t) != target))
            .map(|(&seq, _)| seq)
            .collect();
        for seq in stale {
            if let Some(w) = inner.waiting.remove(&seq) {
                let _ = w.reply.send(Err(ConsensusError::Dropped));
            }
        }
        inner
            .waiting
            .range(after + 1..)
            .take(MAX_BATCH)
            .map(|(&seq, w)| Proposal {
                origin: self.me,
                seq,
                entry: w.entry.clone(),
            })
            .collect()
    }

    /// This member applied its own entry `seq`. Entries of this member with lower numbers
    /// still waiting can no longer apply (a copy of them would now be a duplicate): they were
    /// lost in a leader change that kept a later one, and their clients are told.
    pub(super) fn applied(&self, seq: u64, zxid: i64, result: ApplyResult) {
        let mut inner = self.lock();
        if let Some(w) = inner.waiting.remove(&seq) {
            let _ = w.reply.send(Ok((zxid, result)));
        }
        Self::drop_upto(&mut inner, seq, || ConsensusError::Dropped);
    }

    /// A snapshot from the leader covered this member's entries up to `seq`: they applied,
    /// but their results are not known here.
    pub(super) fn covered_by_snapshot(&self, seq: u64) {
        let mut inner = self.lock();
        Self::drop_upto(&mut inner, seq, || ConsensusError::AppliedBySnapshot);
    }

    fn drop_upto(inner: &mut PendingInner, seq: u64, why: impl Fn() -> ConsensusError) {
        while let Some(entry) = inner.waiting.first_entry() {
            if *entry.key() > seq {
                break;
            }
            let _ = entry.remove().reply.send(Err(why()));
        }
    }

    /// Refuses new entries and fails the waiting ones: consensus is stopping.
    pub(super) fn close(&self) {
        let mut inner = self.lock();
        inner.closed = true;
        for (_, w) in std::mem::take(&mut inner.waiting) {
            let _ = w.reply.send(Err(ConsensusError::Shutdown));
        }
    }
}

/// Hands proposals to a leader on another member (the ensemble's network).
pub(super) trait Forwarder: Send + Sync + 'static {
    /// Sends `proposals` to `leader`, which accepts them only while it leads in `term`.
    fn forward(
        &self,
        leader: NodeId,
        term: u64,
        proposals: Vec<Proposal>,
    ) -> impl std::future::Future<Output = Result<ForwardOutcome, ForwardError>> + Send;
}

/// The forwarder of a member without peers (standalone): never called, as such a member is
/// its own leader.
pub(super) struct NoForwarder;

impl Forwarder for NoForwarder {
    async fn forward(
        &self,
        leader: NodeId,
        _term: u64,
        _proposals: Vec<Proposal>,
    ) -> Result<ForwardOutcome, ForwardError> {
        Err(ForwardError(format!("no network to node {leader}")))
    }
}

/// What a leader said to forwarded proposals.
// Constructed by the ensemble network, which lands next.
#[allow(dead_code)]
pub(super) enum ForwardOutcome {
    /// Appended to its log in order (the first `accepted` of them).
    Accepted(usize),
    /// It does not lead in that term.
    NotLeader,
}

/// The leader could not be reached or answered nonsense; try again later.
#[derive(Debug, thiserror::Error)]
#[error("cannot forward to the leader: {0}")]
pub(super) struct ForwardError(pub(super) String);

/// Stamps the leader's wall-clock time into proposals about to enter its log (ctime, mtime and
/// TTLs are the leader's, as in ZooKeeper).
pub(super) fn stamp_leader_time(proposals: &mut [Proposal]) {
    let now = now_ms();
    for p in proposals {
        p.entry.time_ms = now;
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The submitter: moves waiting entries to the leader, in order, and again to each new leader.
/// Ends when consensus shuts down (its metrics channel closes).
pub(super) async fn run_submitter<F: Forwarder>(
    raft: Raft,
    pending: Arc<Pending>,
    intake: Arc<Intake>,
    forwarder: Option<Arc<F>>,
) {
    let me = pending.me;
    let mut metrics = raft.metrics();
    // Every entry up to `sent_upto` has been handed to `target` (leader, term).
    let mut target: Option<(NodeId, u64)> = None;
    let mut sent_upto = 0u64;
    loop {
        let now_target = {
            let m = metrics.borrow_and_update();
            m.current_leader.map(|l| (l, m.current_term))
        };
        if now_target != target {
            // A new leader (or none): whatever it may not have, it gets again.
            target = now_target;
            sent_upto = 0;
        }
        let batch = match target {
            Some(t) => pending.unsent(sent_upto, t),
            None => Vec::new(),
        };
        let Some((leader, term)) = target.filter(|_| !batch.is_empty()) else {
            tokio::select! {
                _ = pending.added.notified() => {}
                changed = metrics.changed() => if changed.is_err() { return },
            }
            continue;
        };
        let last = batch.last().map_or(sent_upto, |p| p.seq);
        if leader == me {
            // The result comes from this member's apply ([`Pending::applied`]). Dropped
            // because this member no longer leads in `term`, the entries are handed to the
            // next leader when the metrics say who.
            if intake.put(term, batch).await.is_err() {
                return;
            }
            sent_upto = last;
            continue;
        }
        let Some(fwd) = forwarder.as_ref() else {
            // No network: nothing to do until this member leads.
            if metrics.changed().await.is_err() {
                return;
            }
            continue;
        };
        let seqs: Vec<u64> = batch.iter().map(|p| p.seq).collect();
        // A leader cut off by a silent network answers nothing until the call times out;
        // once another leader (or term) is known, waiting for the old one only holds every
        // write of this member back. Unknown how much it took: the new leader gets all again
        // (duplicates are skipped when applied).
        let leader_changed = async {
            loop {
                if metrics.changed().await.is_err() {
                    return true;
                }
                let m = metrics.borrow_and_update();
                if m.current_leader.map(|l| (l, m.current_term)) != Some((leader, term)) {
                    return false;
                }
            }
        };
        let forwarded = tokio::select! {
            r = fwd.forward(leader, term, batch) => r,
            stopped = leader_changed => {
                if stopped {
                    return;
                }
                continue;
            }
        };
        match forwarded {
            Ok(ForwardOutcome::Accepted(n)) if n > 0 => {
                // All of them, or the first n in order.
                sent_upto = seqs.get(n - 1).copied().unwrap_or(last);
            }
            Ok(_) => {
                // Not (or no longer) the leader: wait to learn who is.
                tokio::select! {
                    changed = metrics.changed() => if changed.is_err() { return },
                    _ = tokio::time::sleep(RETRY_PAUSE * 5) => {}
                }
            }
            Err(e) => {
                tracing::debug!(leader, "{e}");
                tokio::time::sleep(RETRY_PAUSE).await;
                // Unknown how much it took: all again (duplicates are skipped when applied).
                sent_upto = 0;
            }
        }
    }
}
