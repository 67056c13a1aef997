//! Consensus: an openraft group whose log carries [`Entry`] values.
//!
//! Owns the raft node: the openraft type configuration, the log store (in memory for now,
//! [`MemLogStore`]), the state machine adapter ([`HookStateMachine`]) that hands every
//! committed client entry to the keeper's [`StateMachineHook`], the snapshot plumbing, and the
//! network (none yet: standalone is a one-voter group). [`Consensus`] is the only thing the rest
//! of the keeper uses: `propose` an entry, learn its zxid (= raft log index) and its result.
//!
//! Must not: apply anything itself (the hook owns the tree), know about sessions, connections or
//! watches, or special-case standalone beyond having no peers: standalone and an ensemble take
//! the same path through openraft, so the durable log and the TCP network slot in without
//! changing [`Consensus`]'s callers.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::fmt::Debug;
// `declare_raft_types!` names the default snapshot data type as a bare `Cursor<Vec<u8>>`.
use std::io::Cursor;
use std::ops::RangeBounds;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use corral_tree::{ApplyResult, Entry};
use openraft::error::{
    ClientWriteError, Fatal, InitializeError, InstallSnapshotError, RPCError, RaftError,
    Unreachable,
};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{
    AnyError, BasicNode, EntryPayload, LogId, LogState, RaftLogId, RaftLogReader, RaftMetrics,
    RaftNetwork, RaftNetworkFactory, RaftSnapshotBuilder, ServerState, Snapshot, SnapshotMeta,
    SnapshotPolicy, StorageError, StorageIOError, StoredMembership, Vote,
};
use tokio::sync::watch;

/// What the keeper supplies to the state machine side of consensus. Called for every
/// committed entry, exactly once, in log order, on every node.
pub trait StateMachineHook: Send + Sync + 'static {
    /// Apply `entry` committed at log index `zxid`.
    fn apply(&self, zxid: i64, entry: &Entry) -> ApplyResult;
    /// The log index of the last applied entry (0 when none).
    fn last_applied(&self) -> i64;

    /// Captures a consistent view of the state as of the last applied entry and returns the
    /// function that encodes it (`DataTree::encode_snapshot`).
    ///
    /// It is called between two applies, so the capture must be cheap (structural sharing, a
    /// clone of a persistent map, ...); the returned encoder runs later on a blocking thread
    /// while applies continue, which is what keeps request latency flat while millions of
    /// znodes are written out. `None` means this hook cannot snapshot (the default); that is
    /// fine only while snapshots are never triggered, because openraft treats a failed snapshot
    /// build as a storage error and stops the node.
    fn snapshot(&self) -> Option<SnapshotEncoder> {
        None
    }

    /// Replaces the whole state with a snapshot whose last entry is at log index `zxid`.
    fn restore(&self, zxid: i64, bytes: &[u8]) -> Result<(), String> {
        let _ = (zxid, bytes);
        Err("this state machine cannot restore snapshots".to_string())
    }
}

/// Encodes a view captured by [`StateMachineHook::snapshot`] into snapshot bytes.
pub type SnapshotEncoder = Box<dyn FnOnce() -> Vec<u8> + Send>;

/// Raft node id. Standalone is node 1; in an ensemble it is the N of `server.N`.
pub type NodeId = u64;

/// The standalone node's id, as ZooKeeper's standalone server is `myid` 1.
const STANDALONE_ID: NodeId = 1;

/// How long start-up may take to reach leadership before we report failure. A one-voter group
/// elects itself at once on initialize; the margin covers a loaded machine.
const LEADER_WAIT: Duration = Duration::from_secs(10);

openraft::declare_raft_types!(
    /// The openraft type configuration of corral's log.
    pub TypeConfig:
        D = Entry,
        // `None` for openraft's own blank and membership entries, which have no client result;
        // a placeholder `ApplyResult` could be mistaken for a real reply.
        R = Option<ApplyResult>,
        NodeId = NodeId,
        Node = BasicNode,
);

/// One record of the raft log: a client [`Entry`], a blank (leader start) or a membership.
pub type LogEntry = openraft::Entry<TypeConfig>;

type Raft = openraft::Raft<TypeConfig>;
type StoredSnapshotMeta = SnapshotMeta<NodeId, BasicNode>;

#[derive(Debug, thiserror::Error)]
pub enum ConsensusError {
    /// This node is not the leader; `leader` is the one it knows of, if any.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    /// Consensus has been shut down.
    #[error("consensus is shut down")]
    Shutdown,
    /// The raft node failed (storage error, panic, bad configuration); it does not recover.
    #[error("consensus failed: {0}")]
    Fatal(String),
}

/// The consensus handle. Cheap to clone; every clone drives the same raft node.
#[derive(Clone)]
pub struct Consensus {
    raft: Raft,
    node_id: NodeId,
    metrics: watch::Receiver<RaftMetrics<NodeId, BasicNode>>,
    // Set when shutdown begins, so `is_leader` turns false at once rather than when the
    // stopping core publishes its last metrics.
    shut_down: Arc<AtomicBool>,
}

impl Consensus {
    /// Starts a one-voter group with node id 1 on an in-memory log; initializes membership and
    /// waits until it is leader.
    pub async fn start_standalone(
        hook: Arc<dyn StateMachineHook>,
    ) -> Result<Consensus, ConsensusError> {
        // The in-memory log starts empty at index 0, so zxids restart at 1: a hook that has
        // already applied entries would see zxids going backwards.
        let applied = hook.last_applied();
        if applied != 0 {
            return Err(ConsensusError::Fatal(format!(
                "the state machine has applied up to zxid {applied}, but the log is empty"
            )));
        }
        let config = Arc::new(standalone_config()?);
        let raft = Raft::new(
            STANDALONE_ID,
            config,
            NoNetwork,
            MemLogStore::default(),
            HookStateMachine::new(hook),
        )
        .await
        .map_err(|e| ConsensusError::Fatal(format!("cannot start raft: {e}")))?;
        let consensus = Consensus {
            metrics: raft.metrics(),
            raft,
            node_id: STANDALONE_ID,
            shut_down: Arc::new(AtomicBool::new(false)),
        };
        match consensus
            .raft
            .initialize(BTreeSet::from([STANDALONE_ID]))
            .await
        {
            Ok(()) => {}
            // Already initialized: a durable log that holds the membership from an earlier run.
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
            Err(e) => {
                consensus.shutdown().await;
                return Err(ConsensusError::Fatal(format!(
                    "cannot initialize the group: {e}"
                )));
            }
        }
        if let Err(e) = consensus
            .raft
            .wait(Some(LEADER_WAIT))
            .state(ServerState::Leader, "standalone start")
            .await
        {
            consensus.shutdown().await;
            return Err(ConsensusError::Fatal(format!("did not become leader: {e}")));
        }
        Ok(consensus)
    }

    /// Appends `entry`, waits until it is committed and applied locally, returns the log index
    /// (zxid) and the hook's ApplyResult for it.
    ///
    /// Any number of callers may wait at once: openraft appends and applies whatever has queued
    /// up as one batch.
    pub async fn propose(&self, entry: Entry) -> Result<(i64, ApplyResult), ConsensusError> {
        match self.raft.client_write(entry).await {
            Ok(resp) => {
                let zxid = zxid_of(resp.log_id.index).map_err(ConsensusError::Fatal)?;
                match resp.data {
                    Some(result) => Ok((zxid, result)),
                    None => Err(ConsensusError::Fatal(format!(
                        "no apply result for the client entry at {zxid}"
                    ))),
                }
            }
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(ConsensusError::NotLeader {
                    leader: f.leader_id,
                })
            }
            Err(RaftError::APIError(e @ ClientWriteError::ChangeMembershipError(_))) => {
                Err(ConsensusError::Fatal(e.to_string()))
            }
            Err(RaftError::Fatal(Fatal::Stopped)) => Err(ConsensusError::Shutdown),
            Err(RaftError::Fatal(e)) => Err(ConsensusError::Fatal(e.to_string())),
        }
    }

    /// Whether this node currently leads the group (and so may expire sessions).
    pub fn is_leader(&self) -> bool {
        if self.shut_down.load(Ordering::Acquire) {
            return false;
        }
        let m = self.metrics.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self.node_id)
    }

    /// Stops the raft node and waits for its tasks to end. Later proposals fail with
    /// [`ConsensusError::Shutdown`]. Calling it again is harmless.
    pub async fn shutdown(&self) {
        self.shut_down.store(true, Ordering::Release);
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!("raft core ended abnormally on shutdown: {e}");
        }
    }
}

/// openraft configuration for a one-voter group.
fn standalone_config() -> Result<openraft::Config, ConsensusError> {
    let config = openraft::Config {
        cluster_name: "corral".to_string(),
        // A lone voter elects itself immediately on initialize; these timeouts only matter when
        // a restarted node waits for an election (durable log), so keep that wait short.
        heartbeat_interval: 50,
        election_timeout_min: 150,
        election_timeout_max: 300,
        // Replication batch size towards followers; large so a lagging follower catches up in
        // few round trips (it has no effect on a lone voter).
        max_payload_entries: 4096,
        // Snapshots need DataTree::encode_snapshot and a hook that implements `snapshot`; off
        // until the snapshot issue turns them on with snapCount.
        snapshot_policy: SnapshotPolicy::Never,
        ..Default::default()
    };
    config
        .validate()
        .map_err(|e| ConsensusError::Fatal(format!("bad raft configuration: {e}")))
}

/// A raft log index as a zxid. Indexes never reach 2^63 in practice; refuse rather than wrap.
fn zxid_of(index: u64) -> Result<i64, String> {
    i64::try_from(index).map_err(|_| format!("log index {index} does not fit a zxid"))
}

// ---------------------------------------------------------------------------------------------
// Log store

/// The raft log and vote, in memory. The durable write-ahead log replaces this type with one
/// implementing the same two traits; nothing else in this module depends on it.
#[derive(Clone, Default)]
pub struct MemLogStore {
    // Shared with the readers openraft hands to replication tasks.
    inner: Arc<Mutex<MemLog>>,
}

#[derive(Default)]
struct MemLog {
    last_purged: Option<LogId<NodeId>>,
    log: BTreeMap<u64, LogEntry>,
    committed: Option<LogId<NodeId>>,
    vote: Option<Vote<NodeId>>,
}

impl MemLogStore {
    // StorageError is large, but it is what every storage trait method returns anyway.
    #[allow(clippy::result_large_err)]
    fn lock(&self) -> Result<MutexGuard<'_, MemLog>, StorageError<NodeId>> {
        // A panic while holding the lock may have left the log half-changed: refuse to use it
        // rather than risk a hole, openraft then stops the node.
        self.inner.lock().map_err(|_| {
            StorageIOError::read_logs(AnyError::error("log store lock poisoned")).into()
        })
    }
}

impl RaftLogReader<TypeConfig> for MemLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<LogEntry>, StorageError<NodeId>> {
        let inner = self.lock()?;
        Ok(inner.log.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for MemLogStore {
    type LogReader = MemLogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let inner = self.lock()?;
        let last = inner
            .log
            .values()
            .next_back()
            .map(|e| *e.get_log_id())
            .or(inner.last_purged);
        Ok(LogState {
            last_purged_log_id: inner.last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.lock()?.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(self.lock()?.vote)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        self.lock()?.committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self.lock()?.committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = LogEntry> + Send,
        I::IntoIter: Send,
    {
        {
            let mut inner = self.lock()?;
            for entry in entries {
                inner.log.insert(entry.get_log_id().index, entry);
            }
        }
        // Memory is as durable as this store gets. The WAL calls this after its group fsync
        // instead, which is what lets openraft keep appending while the disk catches up.
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        // Drops `log_id.index` and everything after it: a conflicting suffix from an old leader.
        self.lock()?.log.split_off(&log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.lock()?;
        // openraft only purges forward; ignoring a backward purge keeps `last_purged` monotonic.
        if inner.last_purged >= Some(log_id) {
            return Ok(());
        }
        inner.last_purged = Some(log_id);
        let keep = inner.log.split_off(&(log_id.index + 1));
        inner.log = keep;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// State machine

/// The latest snapshot, built here or received from a leader.
struct StoredSnapshot {
    meta: StoredSnapshotMeta,
    data: Vec<u8>,
}

/// openraft's state machine: records the applied position and membership, and passes client
/// entries to the hook. openraft's worker task owns it, so applies are strictly sequential.
pub struct HookStateMachine {
    hook: Arc<dyn StateMachineHook>,
    last_applied: Option<LogId<NodeId>>,
    last_membership: StoredMembership<NodeId, BasicNode>,
    // Shared with snapshot builders, which finish in their own tasks.
    current_snapshot: Arc<Mutex<Option<StoredSnapshot>>>,
    snapshot_seq: u64,
}

impl HookStateMachine {
    fn new(hook: Arc<dyn StateMachineHook>) -> Self {
        HookStateMachine {
            hook,
            last_applied: None,
            last_membership: StoredMembership::default(),
            current_snapshot: Arc::new(Mutex::new(None)),
            snapshot_seq: 0,
        }
    }
}

// StorageError is large, but it is what every storage trait method returns anyway.
#[allow(clippy::result_large_err)]
fn lock_snapshot(
    slot: &Mutex<Option<StoredSnapshot>>,
) -> Result<MutexGuard<'_, Option<StoredSnapshot>>, StorageError<NodeId>> {
    slot.lock().map_err(|_| {
        StorageIOError::read_snapshot(None, AnyError::error("snapshot slot lock poisoned")).into()
    })
}

impl RaftStateMachine<TypeConfig> for HookStateMachine {
    type SnapshotBuilder = HookSnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), StorageError<NodeId>>
    {
        Ok((self.last_applied, self.last_membership.clone()))
    }

    async fn apply<I>(
        &mut self,
        entries: I,
    ) -> Result<Vec<Option<ApplyResult>>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = LogEntry> + Send,
        I::IntoIter: Send,
    {
        let entries = entries.into_iter();
        let mut results = Vec::with_capacity(entries.size_hint().0);
        for entry in entries {
            let log_id = entry.log_id;
            match entry.payload {
                EntryPayload::Normal(ref e) => {
                    let zxid = zxid_of(log_id.index)
                        .map_err(|m| StorageIOError::apply(log_id, AnyError::error(m)))?;
                    results.push(Some(self.hook.apply(zxid, e)));
                }
                EntryPayload::Blank => results.push(None),
                EntryPayload::Membership(ref m) => {
                    self.last_membership = StoredMembership::new(Some(log_id), m.clone());
                    results.push(None);
                }
            }
            self.last_applied = Some(log_id);
        }
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // Runs between applies, so the view, last_applied and membership all agree.
        self.snapshot_seq += 1;
        let snapshot_id = match self.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, self.snapshot_seq),
            None => format!("--{}", self.snapshot_seq),
        };
        HookSnapshotBuilder {
            meta: SnapshotMeta {
                last_log_id: self.last_applied,
                last_membership: self.last_membership.clone(),
                snapshot_id,
            },
            encoder: Mutex::new(self.hook.snapshot()),
            current_snapshot: Arc::clone(&self.current_snapshot),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &StoredSnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let data = snapshot.into_inner();
        let read_err =
            |m: String| StorageIOError::read_snapshot(Some(meta.signature()), AnyError::error(m));
        let zxid = zxid_of(meta.last_log_id.map_or(0, |l| l.index)).map_err(read_err)?;
        self.hook.restore(zxid, &data).map_err(read_err)?;
        self.last_applied = meta.last_log_id;
        self.last_membership = meta.last_membership.clone();
        *lock_snapshot(&self.current_snapshot)? = Some(StoredSnapshot {
            meta: meta.clone(),
            data,
        });
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let current = lock_snapshot(&self.current_snapshot)?;
        Ok(current.as_ref().map(|s| Snapshot {
            meta: s.meta.clone(),
            snapshot: Box::new(Cursor::new(s.data.clone())),
        }))
    }
}

/// Builds one snapshot from a view captured by [`StateMachineHook::snapshot`]; openraft runs
/// it in its own task, concurrently with further applies.
pub struct HookSnapshotBuilder {
    meta: StoredSnapshotMeta,
    // A Mutex only to make the builder Sync, as openraft requires; it is taken exactly once.
    encoder: Mutex<Option<SnapshotEncoder>>,
    current_snapshot: Arc<Mutex<Option<StoredSnapshot>>>,
}

impl RaftSnapshotBuilder<TypeConfig> for HookSnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let signature = self.meta.signature();
        let err = |m: String| -> StorageError<NodeId> {
            StorageIOError::write_snapshot(Some(signature.clone()), AnyError::error(m)).into()
        };
        let encoder = self
            .encoder
            .get_mut()
            .map_err(|_| err("snapshot encoder lock poisoned".to_string()))?
            .take()
            .ok_or_else(|| err("the state machine does not support snapshots".to_string()))?;
        // Encoding millions of znodes is CPU work; keep it off the async workers.
        let data = tokio::task::spawn_blocking(encoder)
            .await
            .map_err(|e| err(format!("snapshot encoding failed: {e}")))?;
        *lock_snapshot(&self.current_snapshot)? = Some(StoredSnapshot {
            meta: self.meta.clone(),
            data: data.clone(),
        });
        Ok(Snapshot {
            meta: self.meta.clone(),
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Network

/// The network of a group without peers. openraft asks for a connection only to replicate to or
/// request votes from another member, which a one-voter group has none of; should it happen
/// anyway, every RPC reports the peer unreachable and openraft backs off.
pub struct NoNetwork;

/// A "connection" to a peer that cannot be reached.
pub struct NoPeer {
    target: NodeId,
}

impl NoPeer {
    fn unreachable<E: std::error::Error>(&self) -> RPCError<NodeId, BasicNode, E> {
        let reason = AnyError::error(format!(
            "no network to node {}: this is a standalone group",
            self.target
        ));
        RPCError::Unreachable(Unreachable::from(reason))
    }
}

impl RaftNetworkFactory<TypeConfig> for NoNetwork {
    type Network = NoPeer;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> NoPeer {
        NoPeer { target }
    }
}

impl RaftNetwork<TypeConfig> for NoPeer {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        Err(self.unreachable())
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        Err(self.unreachable())
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        Err(self.unreachable())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_proto::{ErrorCode, Response};
    use corral_tree::EntryOp;
    use std::sync::atomic::AtomicI64;

    /// Records (zxid, session id) of every apply; the session id identifies the proposal.
    #[derive(Default)]
    struct Recorder {
        applied: Mutex<Vec<(i64, i64)>>,
        last: AtomicI64,
    }

    impl StateMachineHook for Recorder {
        fn apply(&self, zxid: i64, entry: &Entry) -> ApplyResult {
            self.applied.lock().unwrap().push((zxid, entry.session_id));
            self.last.store(zxid, Ordering::SeqCst);
            ApplyResult {
                err: ErrorCode::Ok,
                response: Response::Path(format!("/{}", entry.session_id)),
                triggers: Vec::new(),
                deleted_ephemerals: Vec::new(),
            }
        }
        fn last_applied(&self) -> i64 {
            self.last.load(Ordering::SeqCst)
        }
        fn snapshot(&self) -> Option<SnapshotEncoder> {
            let n = self.applied.lock().unwrap().len();
            Some(Box::new(move || n.to_string().into_bytes()))
        }
    }

    fn entry(n: i64) -> Entry {
        Entry {
            session_id: n,
            time_ms: 0,
            identities: Vec::new(),
            op: EntryOp::CloseSession {
                session_id: n,
                reason: String::new(),
            },
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_proposals_apply_once_in_order() {
        let hook = Arc::new(Recorder::default());
        let started = std::time::Instant::now();
        let c = Consensus::start_standalone(hook.clone()).await.unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "startup took {:?}",
            started.elapsed()
        );
        assert!(c.is_leader());

        let tasks: Vec<_> = (1..=1000i64)
            .map(|n| {
                let c = c.clone();
                tokio::spawn(async move { (n, c.propose(entry(n)).await.unwrap()) })
            })
            .collect();
        let mut replies = Vec::new();
        for t in tasks {
            let (n, (zxid, res)) = t.await.unwrap();
            // Each caller gets the result of its own entry.
            assert_eq!(res.response, Response::Path(format!("/{n}")));
            replies.push((zxid, n));
        }
        replies.sort();
        let zxids: Vec<i64> = replies.iter().map(|r| r.0).collect();
        assert!(zxids.windows(2).all(|w| w[0] < w[1]), "zxids not distinct");
        assert!(zxids[0] > 0);

        // The hook saw exactly the proposed entries, once each, in zxid order, with the same
        // zxid the proposer was told.
        let applied = hook.applied.lock().unwrap().clone();
        assert_eq!(applied, replies);
        let mut sessions: Vec<i64> = applied.iter().map(|a| a.1).collect();
        sessions.sort();
        assert_eq!(sessions, (1..=1000).collect::<Vec<_>>());

        // A later proposal gets a larger zxid.
        let (z, _) = c.propose(entry(1001)).await.unwrap();
        assert!(z > *zxids.last().unwrap());

        // The snapshot builder works through the hook.
        c.raft.trigger().snapshot().await.unwrap();
        let snap = c
            .raft
            .wait(Some(Duration::from_secs(5)))
            .metrics(
                |m| m.snapshot.is_some_and(|s| s.index == z as u64),
                "snapshot",
            )
            .await;
        assert!(snap.is_ok(), "{snap:?}");

        c.shutdown().await;
        assert!(!c.is_leader());
        assert!(matches!(
            c.propose(entry(1002)).await,
            Err(ConsensusError::Shutdown)
        ));
        // Idempotent.
        c.shutdown().await;
    }

    #[tokio::test]
    async fn refuses_a_hook_with_history() {
        let hook = Arc::new(Recorder::default());
        hook.last.store(5, Ordering::SeqCst);
        assert!(matches!(
            Consensus::start_standalone(hook).await,
            Err(ConsensusError::Fatal(_))
        ));
    }
}
