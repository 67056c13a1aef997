//! The errors of consensus: [`ConsensusError`], the one type its callers see, and what it is
//! built from. Must not: flatten a cause into a string; a cause stays a `source`.

use super::*;

/// Why consensus refused, stopped or could not start.
///
/// The variants that come from the data directory name the file (and, through
/// [`DecodeError`] or [`wal::WalError`], the byte offset) so an operator can act on the message
/// alone.
#[derive(Debug, thiserror::Error)]
pub enum ConsensusError {
    /// This node is not the leader; `leader` is the one it knows of, if any.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    /// The quorum port could not be bound.
    #[error("cannot listen on the quorum port {addr} (server.N's first port): {source}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: io::Error,
    },
    /// Consensus has been shut down.
    #[error("consensus is shut down")]
    Shutdown,
    /// Consensus has not been started yet.
    #[error("consensus is not started")]
    NotStarted,
    /// The state machine handed to `start_durable` had applied entries already.
    #[error(
        "the state machine has applied up to zxid {applied} before recovery; it must start empty"
    )]
    NotFresh { applied: i64 },
    /// A file or directory of the data directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The snapshot directory could not be opened or listed (the error names the path).
    #[error("snapshots: {0}")]
    Snapshots(#[source] io::Error),
    /// The write-ahead log could not be opened: damaged, a gap, or I/O.
    #[error(transparent)]
    Wal(#[from] wal::WalError),
    /// The saved raft vote could not be read: without it this node might vote twice in a term.
    #[error("cannot read the raft vote: {0}; restore this node from another replica")]
    VoteUnreadable(#[source] io::Error),
    /// A file of the consensus state is readable but does not decode.
    #[error("{}: {source}", path.display())]
    Decode {
        path: PathBuf,
        #[source]
        source: DecodeError,
    },
    /// The state machine refused the newest valid snapshot.
    #[error("cannot restore the snapshot at log index {index}: {source}")]
    Restore {
        index: u64,
        #[source]
        source: RestoreError,
    },
    /// The log does not continue the newest valid snapshot.
    #[error(
        "the write-ahead log in {} starts at log index {first}, but the newest valid snapshot \
         in {} ends at {snapshot_last}: entries {}..{} are missing. Restore this node from \
         another replica or a backup of its snapshots",
        wal_dir.display(),
        snapshot_dir.display(),
        snapshot_last + 1,
        first - 1
    )]
    LogGap {
        wal_dir: PathBuf,
        snapshot_dir: PathBuf,
        first: u64,
        snapshot_last: u64,
    },
    /// openraft refused or failed while consensus was doing `doing`; the node does not recover.
    #[error("{doing}: {source}")]
    Raft {
        doing: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A thread consensus needs could not be started.
    #[error("cannot start the {name} thread: {source}")]
    Thread {
        name: &'static str,
        #[source]
        source: io::Error,
    },
    /// A task or thread of consensus panicked.
    #[error("the {what} panicked")]
    Panicked { what: &'static str },
    /// The entry was lost in a change of leader that kept a later entry of this member; it
    /// was not applied.
    #[error("the write was lost in a change of leader and not applied")]
    Dropped,
    /// A snapshot from the leader brought this member past the entry: it was applied, but
    /// its result is not known here.
    #[error("the write was applied, but its result arrived inside a snapshot")]
    AppliedBySnapshot,
}

impl ConsensusError {
    /// openraft's `source` while doing `doing`.
    pub(super) fn raft(
        doing: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> ConsensusError {
        ConsensusError::Raft {
            doing,
            source: Box::new(source),
        }
    }

    pub(super) fn io(path: &std::path::Path, source: io::Error) -> ConsensusError {
        ConsensusError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Why a state machine could not take a snapshot's state ([`StateMachineHook::restore`]).
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The hook has no restore (the trait's default).
    #[error("this state machine cannot restore snapshots")]
    Unsupported,
    /// The snapshot's bytes are not a tree.
    #[error(transparent)]
    Snapshot(#[from] crate::storage::restore::SnapshotDecodeError),
}

/// An openraft storage error caused by `e`, its source chain kept.
pub(super) fn storage_err(e: &(impl std::error::Error + 'static)) -> StorageError<NodeId> {
    StorageIOError::write_logs(AnyError::new(e)).into()
}
