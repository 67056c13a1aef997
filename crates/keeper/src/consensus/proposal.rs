//! What the raft log carries: client [`Entry`] values, each tagged with where it was first
//! submitted, in batches (one [`Batch`] per raft entry).
//!
//! In an ensemble a write may be handed to the leader more than once: its member forwards it,
//! the leader dies before answering, and the member cannot tell whether the entry survived in
//! the new leader's log. It submits again, and the tag makes that safe: every member skips an
//! entry whose origin has had an equal or later sequence number applied, so a write is applied
//! once whatever the retries. The origin also recognises its own entries as they apply, and
//! answers its client from its own state machine (a client always reads its own writes).
//! Must not: carry anything the state machine reads; the tree sees only the entry.

use std::collections::BTreeMap;

use corral_tree::Entry;

use super::codec::{DecodeError, Decoding, Rd};
use super::NodeId;

/// A client entry and its tag. `origin` 0 marks an entry written before tags existed (or by
/// a tool): it is never deduplicated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    /// The member that took the write from its client.
    pub origin: NodeId,
    /// Increasing per origin, across its restarts (see `Submitter`).
    pub seq: u64,
    pub entry: Entry,
}

/// What one raft entry carries: the proposals a leader took in while its earlier entries were
/// being made durable, applied in order, each with its own zxid. One entry per batch is what
/// lets one leader fsync cover many writes: openraft 0.9's core waits for each entry's flush
/// before it takes the next one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch(pub Vec<Proposal>);

/// For every origin, the highest sequence number applied: what makes a resubmitted entry
/// harmless. Part of the replicated state (every member computes the same from the log), so
/// it travels with snapshots, as a prefix of their payload ([`HighWater::snapshot_prefix`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HighWater(BTreeMap<NodeId, u64>);

/// Marks a snapshot payload that begins with high-water marks; a payload without it (written
/// before tags existed, or by the ZooKeeper import) begins with the tree's own magic.
const PREFIX_MAGIC: &[u8; 4] = b"CRSQ";

impl HighWater {
    /// True when `p` was applied already (by this origin's sequence); untagged entries never are.
    pub fn is_duplicate(&self, p: &Proposal) -> bool {
        p.origin != 0 && self.0.get(&p.origin).is_some_and(|&hw| p.seq <= hw)
    }

    pub fn record(&mut self, p: &Proposal) {
        if p.origin != 0 {
            self.0.insert(p.origin, p.seq);
        }
    }

    pub fn get(&self, origin: NodeId) -> u64 {
        self.0.get(&origin).copied().unwrap_or(0)
    }

    /// The bytes put before the state machine's own snapshot payload.
    pub fn snapshot_prefix(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + 16 * self.0.len());
        out.extend_from_slice(PREFIX_MAGIC);
        out.extend_from_slice(&(self.0.len() as u32).to_be_bytes());
        for (origin, seq) in &self.0 {
            out.extend_from_slice(&origin.to_be_bytes());
            out.extend_from_slice(&seq.to_be_bytes());
        }
        out
    }

    /// Splits a snapshot payload into its high-water marks and the state machine's bytes.
    pub fn split_snapshot(payload: &[u8]) -> Result<(HighWater, &[u8]), DecodeError> {
        if !payload.starts_with(PREFIX_MAGIC) {
            return Ok((HighWater::default(), payload));
        }
        let mut r = Rd::new(payload, Decoding::SnapshotPrefix);
        r.take(PREFIX_MAGIC.len())?;
        let n = r.u32()?;
        let mut marks = BTreeMap::new();
        for _ in 0..n {
            let origin = r.u64()?;
            marks.insert(origin, r.u64()?);
        }
        let at = r.position();
        Ok((HighWater(marks), &payload[at..]))
    }
}
