//! What the raft log carries: a client [`Entry`] tagged with where it was first submitted.
//!
//! In an ensemble a write may be handed to the leader more than once: its member forwards it,
//! the leader dies before answering, and the member cannot tell whether the entry survived in
//! the new leader's log. It submits again, and the tag makes that safe: every member skips an
//! entry whose origin has had an equal or later sequence number applied, so a write is applied
//! once whatever the retries. The origin also recognises its own entries as they apply, and
//! answers its client from its own state machine (a client always reads its own writes).
//! Must not: carry anything the state machine reads; the tree sees only the entry.

use corral_tree::Entry;

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
