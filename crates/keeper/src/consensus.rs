//! Consensus: an openraft group carrying [`Entry`] values. (Interface; implementation pending.)

use corral_tree::{ApplyResult, Entry};

/// What the keeper supplies to the state machine side of consensus. Called for every
/// committed entry, exactly once, in log order, on every node.
pub trait StateMachineHook: Send + Sync + 'static {
    /// Apply `entry` committed at log index `zxid`.
    fn apply(&self, zxid: i64, entry: &Entry) -> ApplyResult;
    /// The log index of the last applied entry (0 when none).
    fn last_applied(&self) -> i64;
}
