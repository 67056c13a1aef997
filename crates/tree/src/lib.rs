//! corral-tree: the replicated state machine.
//!
//! Owns the data tree (znodes with their full Stat, ACLs, ephemeral/sequential/container/TTL
//! nodes, the /zookeeper system nodes), the session table (id, timeout, password, owned
//! ephemerals) and `apply(zxid, entry)`, which computes every write's result itself —
//! errors, sequential names, version checks, multi atomicity — and returns it together with
//! the watch triggers it caused, as values. Reads are answered by [`DataTree::read`].
//! It also owns the byte encodings of an [`Entry`] (log records) and of the whole tree
//! (snapshots), the ACL and path rules ([`acl`], [`path`]) and ZooKeeper's quota nodes
//! ([`quota`]): their counts are kept by `apply`, and hard limits refuse writes there. The
//! obituaries of ended sessions ([`obituary`]) are replicated state kept here too.
//!
//! Invariant: pure and deterministic. No clock, socket, disk, randomness or global state:
//! everything `apply` depends on travels in the [`Entry`]. Two trees fed the same entries
//! give the same results and serialise to the same bytes. The keeper feeds it (from the
//! consensus log) and turns its triggers into watch events.

pub mod acl;
mod codec;
pub mod obituary;
pub mod path;
pub mod quota;
pub mod reconfig;
mod tree;

pub use codec::{CodecError, Inconsistency, NodeRecords, RestoredNode};
pub use quota::QuotaWarning;
pub use tree::{data_len, DataTree, Node, NodeKind, SessionInfo, CONTAINER_OWNER, MAX_TTL_MS};

use corral_proto::{ErrorCode, EventType, Id, Request, Response};

/// One replicated command: everything `apply` may depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The session that issued it (0 for system entries).
    pub session_id: i64,
    /// The leader's wall-clock time in ms since the epoch (ctime, mtime, TTL).
    pub time_ms: i64,
    /// The issuing connection's authenticated identities (ip, digest, super, ...).
    pub identities: Vec<Id>,
    pub op: EntryOp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryOp {
    /// A new session with an id and password chosen by the proposer.
    CreateSession {
        session_id: i64,
        timeout_ms: i32,
        passwd: Vec<u8>,
    },
    /// End a session: its ephemerals are deleted. The evidence is for the record only: it
    /// becomes the session's obituary.
    CloseSession {
        session_id: i64,
        evidence: obituary::Evidence,
    },
    /// A client write request (create*, delete, setData, setACL, check, multi, reconfig,
    /// deleteContainer).
    Request(Request),
    /// Housekeeping proposed by the leader: delete empty containers and expired TTL nodes
    /// that are still eligible at `time_ms` (re-checked at apply, so it is idempotent).
    PurgeContainersAndTtl { candidates: Vec<String> },
}

/// What a change did to the tree, for the watch registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    pub path: String,
    pub event: EventType,
}

/// Result of applying one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyResult {
    pub err: ErrorCode,
    pub response: Response,
    /// In the order the changes happened. Empty when nothing changed.
    pub triggers: Vec<Trigger>,
    /// For CloseSession: the ephemerals that were deleted.
    pub deleted_ephemerals: Vec<String>,
    /// For an entry that ended a live session: its obituary, as the tree now keeps it.
    pub obituary: Option<obituary::Obituary>,
    /// Quota limits exceeded and quota nodes found unusable, for the keeper to log.
    pub quota_warnings: Vec<QuotaWarning>,
}

/// Knobs that are part of the replicated configuration (identical on every node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeConfig {
    /// zookeeper.extendedTypesEnabled: TTL nodes allowed.
    pub extended_types_enabled: bool,
    /// zookeeper.DigestAuthenticationProvider.superDigest: `super:<base64 sha1>`.
    pub super_digest: Option<String>,
    /// Data of /zookeeper/config at start: empty standalone, an ensemble's membership as
    /// [`reconfig::ServerConfig::render`] gives it.
    pub config_node_data: Vec<u8>,
    /// reconfigEnabled: a standalone ZooKeeper then answers reconfig with Unimplemented
    /// instead of ReconfigDisabled.
    pub reconfig_enabled: bool,
    /// zookeeper.enforceQuota: a create or setData that would take a subtree over a hard
    /// limit (countHardLimit, byteHardLimit) is refused with QuotaExceeded.
    pub enforce_quota: bool,
    /// corral.obituaries: how many obituaries the tree keeps (the latest). Every member
    /// should set the same, or their rings differ in length (never in content).
    pub obituaries_kept: usize,
}

impl Default for TreeConfig {
    fn default() -> TreeConfig {
        TreeConfig {
            extended_types_enabled: false,
            super_digest: None,
            config_node_data: Vec::new(),
            reconfig_enabled: false,
            enforce_quota: false,
            obituaries_kept: obituary::OBITUARIES_KEPT_DEFAULT,
        }
    }
}

#[cfg(test)]
mod tests;
