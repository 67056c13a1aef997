//! Consensus: an openraft group whose log carries client [`Entry`] values, each tagged as a
//! [`Proposal`] with the member that took it, a [`Batch`] of them per raft entry.
//!
//! Owns the raft node: the openraft type configuration, the log store ([`DurableLogStore`] on
//! the [`wal`] write-ahead log, with snapshots in [`crate::storage::snapshot_store`]), the
//! encoding of raft entries, votes and snapshot metadata on disk (`codec`) and on the quorum
//! port (`wire`), start-up recovery, the state machine adapter ([`HookStateMachine`]) that
//! hands every committed client entry to the keeper's [`StateMachineHook`] once (copies
//! skipped by their tag), the snapshot plumbing, the way in (`submit`: entries wait in
//! `Pending` until applied here and go to whoever leads), the network between members
//! (`network`: none standalone, TCP on the quorum ports in an ensemble) and the membership
//! the leader keeps in step with `/zookeeper/config` (`membership`), and the leader's
//! `intake`, which packs every write waiting for its log into one raft entry. [`Consensus`] is the
//! only thing the rest of the keeper uses, and it has one way in: [`Consensus::submit`] an
//! entry (the order of submits is the log order), then [`Submitted::wait`] for its zxid
//! and its result; [`Consensus::propose`] is the two in one call, and
//! [`Consensus::propose_as_leader`] the same for a leader's own decisions. Errors are
//! [`ConsensusError`].
//!
//! Must not: apply anything itself (the hook owns the tree), know about sessions, connections or
//! watches (session reports pass through it as opaque pairs), or special-case standalone
//! beyond having no peers: standalone and an ensemble take the same path through openraft.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use corral_tree::{ApplyResult, Entry};
use openraft::error::{
    Fatal, InitializeError, InstallSnapshotError, RPCError, RaftError, Unreachable,
};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{
    AnyError, BasicNode, ChangeMembers, CommittedLeaderId, EntryPayload, LogId, LogState,
    Membership, RaftLogReader, RaftMetrics, RaftNetwork, RaftNetworkFactory, RaftSnapshotBuilder,
    ServerState, Snapshot, SnapshotMeta, SnapshotPolicy, StorageError, StorageIOError,
    StoredMembership, Vote,
};
use tokio::sync::watch;

use crate::storage::background::{produce_in_background, BackgroundReport};
use crate::storage::snapshot_data::SnapshotData;
use crate::storage::snapshot_store::{LoadedSnapshot, SnapshotStore};
use crate::storage::wal::{self, Wal, WalOptions};

/// What the keeper supplies to the state machine side of consensus. Called for every
/// committed entry, exactly once, in log order, on every node.
pub trait StateMachineHook: Send + Sync + 'static {
    /// Apply `entry` as transaction `zxid`: [`StateMachineHook::last_applied`] + 1, or the raft
    /// index of its entry if that is higher, identically on every member (copies skipped
    /// spend none). A ZooKeeper import goes on from ZooKeeper's last zxid.
    fn apply(&self, zxid: i64, entry: &Entry) -> ApplyResult;
    /// The zxid of the last applied entry (0 when none), restored snapshots included.
    fn last_applied(&self) -> i64;

    /// Captures a consistent view of the state as of the last applied entry and returns the
    /// function that encodes it (`DataTree::write_snapshot`).
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

    /// The membership the replicated state asks for (an ensemble's `/zookeeper/config`), which
    /// the leader makes raft's ([`membership`]). None: zoo.cfg's is used (the default).
    fn desired_membership(&self) -> Option<DesiredMembership> {
        None
    }

    /// Replaces the whole state with a snapshot's; [`StateMachineHook::last_applied`] then
    /// says the snapshot's last zxid.
    fn restore(&self, bytes: &[u8]) -> Result<(), RestoreError> {
        let _ = bytes;
        Err(RestoreError::Unsupported)
    }
}

/// Encodes a view captured by [`StateMachineHook::snapshot`], handing the snapshot bytes to
/// the sink in order, a piece at a time, and stopping at the sink's first error. It can run
/// again (the same bytes each time): when the disk refuses a snapshot it is encoded to memory.
/// `scratch` is a buffer it may build its pieces in: the caller keeps it between snapshots so
/// that encoding allocates nothing. Shared, so the background worker can run it while the
/// snapshot thread keeps it for the in-memory fallback.
pub type SnapshotEncoder = Arc<
    dyn Fn(&mut Vec<u8>, &mut dyn FnMut(&[u8]) -> std::io::Result<()>) -> std::io::Result<()>
        + Send
        + Sync,
>;

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
        D = Batch,
        // Results reach their clients through `Pending`, from this member's own apply, not
        // through openraft's responder (which only the leader has).
        R = (),
        NodeId = NodeId,
        Node = BasicNode,
        SnapshotData = SnapshotData,
);

/// One record of the raft log: a client [`Entry`], a blank (leader start) or a membership.
pub type LogEntry = openraft::Entry<TypeConfig>;

type Raft = openraft::Raft<TypeConfig>;
type StoredSnapshotMeta = SnapshotMeta<NodeId, BasicNode>;

/// The consensus handle. Cheap to clone; every clone drives the same raft node.
#[derive(Clone)]
pub struct Consensus {
    raft: Raft,
    node_id: NodeId,
    metrics: watch::Receiver<RaftMetrics<NodeId, BasicNode>>,
    // Set when shutdown begins, so `is_leader` turns false at once rather than when the
    // stopping core publishes its last metrics.
    shut_down: Arc<AtomicBool>,
    // The durable log and snapshots.
    storage: Arc<StorageHandle>,
    // Entries submitted here, until applied here.
    pending: Arc<Pending>,
    // The peers of an ensemble member; None standalone.
    ensemble: Option<Arc<Ensemble>>,
}

/// The parts [`open`] recovers, ready for a raft node.
struct Opened {
    sm: HookStateMachine,
    log: DurableLogStore,
    handle: Arc<StorageHandle>,
    pending: Arc<Pending>,
    snapshots: SnapshotAsks,
}

/// What the snapshot scheduler needs, taken from the state machine before raft owns it;
/// [`SnapshotAsks::start`] once raft runs. openraft's own policy is never used.
struct SnapshotAsks {
    hook: Arc<dyn StateMachineHook>,
    snapshot_zxid: Arc<AtomicI64>,
    snap_count: u64,
    /// Set on an ensemble member: the log it keeps after each snapshot is bounded in bytes.
    retention: Option<LogRetention>,
}

impl SnapshotAsks {
    /// Starts [`spawn_snapshot_scheduler`], or says snapshots are off when the hook cannot
    /// snapshot.
    fn start(self, raft: Raft) {
        if self.hook.snapshot().is_none() {
            tracing::warn!(
                "the state machine cannot snapshot: snapshots are off and the write-ahead log \
                 grows without bound"
            );
            return;
        }
        spawn_snapshot_scheduler(raft, self);
    }
}

/// The least log an ensemble member keeps after a snapshot, whatever the snapshot's size:
/// a follower a few thousand small writes behind is cheaper to send the log than any
/// snapshot (ZooKeeper keeps its last 500 proposals in memory for the same reason).
const LOG_KEPT_FLOOR_BYTES: u64 = 4 << 20;

/// How much log an ensemble member keeps after a snapshot, and so serves a lagging member
/// from; one further behind is sent the snapshot. ZooKeeper's rule: log while the log to send
/// is under `snapshotSizeFactor` of the snapshot's size. openraft's own rule counts raft
/// entries, and an entry carries a batch of up to 2,048 writes: snapCount entries kept could
/// be the whole history, replayed write by write to a member a million writes behind.
struct LogRetention {
    wal: Arc<Wal>,
    persist: Arc<SnapshotPersist>,
    size_factor: f64,
}

impl LogRetention {
    /// The index to purge up to once the snapshot at `snapshot_index` is written, if any.
    fn purge_upto(&self, snapshot_index: u64) -> Option<u64> {
        let bytes = {
            let c = lock_counters(&self.persist.counters);
            // Known only for a snapshot this run wrote (or installed).
            (c.last_index == snapshot_index && c.last_bytes > 0).then_some(c.last_bytes)?
        };
        let budget = if self.size_factor > 0.0 {
            ((bytes as f64 * self.size_factor) as u64).max(LOG_KEPT_FLOOR_BYTES)
        } else {
            LOG_KEPT_FLOOR_BYTES
        };
        let oldest_kept = self.wal.oldest_within(snapshot_index, budget)?;
        oldest_kept.checked_sub(1)
    }
}

/// Recovers the durable log and snapshots into `hook` (see [`Consensus::start_durable`]) and
/// builds the state machine and the pending entries of member `me` on them.
async fn open(
    hook: Arc<dyn StateMachineHook>,
    storage: &StorageConfig,
    ack: AckMode,
    me: NodeId,
) -> Result<Opened, ConsensusError> {
    require_fresh(hook.as_ref())?;
    if !storage.force_sync {
        tracing::warn!(
            "forceSync=no: the write-ahead log is not fsynced; an OS crash or power loss \
             may lose acknowledged writes"
        );
    }
    // Disk-heavy recovery (reading every segment, restoring the snapshot) runs off the
    // async workers.
    let st = storage.clone();
    let h = Arc::clone(&hook);
    let recovered = tokio::task::spawn_blocking(move || recover(&st, h, ack))
        .await
        .map_err(|_| ConsensusError::Panicked {
            what: "recovery task",
        })??;
    let Recovered {
        log,
        wal,
        persist,
        snapshot,
        high_water,
    } = recovered;

    let pending = Arc::new(Pending::new(me));
    pending.start_after(high_water.get(me));
    let early_acks = Arc::clone(&log.inner.early_acks);
    // Entries acknowledged before their fsync must not apply before it; once the mode
    // ends the gate stays (it then never waits).
    let gate = early_acks.allowed().then(|| wal.durability());
    let mut sm =
        HookStateMachine::new(hook, Arc::clone(&persist), early_acks, Arc::clone(&pending));
    sm.durable_gate = gate;
    sm.high_water = high_water;
    if let Some(snap) = snapshot {
        // A reconfig inside the snapshot is at most this far back.
        sm.config_changed
            .send_replace(snap.meta.last_log_id.map_or(0, |l| l.index));
        sm.last_applied = snap.meta.last_log_id;
        sm.last_membership = snap.meta.last_membership.clone();
        sm.current_snapshot = Arc::new(Mutex::new(Some(snap)));
    }

    let purger = (storage.purge_interval_hours > 0).then(|| {
        let p = Arc::clone(&persist);
        let every = Duration::from_secs(u64::from(storage.purge_interval_hours) * 3600);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let p = Arc::clone(&p);
                let _ = tokio::task::spawn_blocking(move || p.apply_retention()).await;
            }
        })
    });
    let handle = Arc::new(StorageHandle {
        wal: Arc::clone(&wal),
        log: log.clone(),
        persist,
        purger,
    });
    let snapshots = SnapshotAsks {
        hook: Arc::clone(&sm.hook),
        snapshot_zxid: Arc::clone(&sm.snapshot_zxid),
        snap_count: storage.snap_count,
        retention: None,
    };
    Ok(Opened {
        sm,
        log,
        handle,
        pending,
        snapshots,
    })
}

/// Where and how the durable log and snapshots live (from zoo.cfg: dataDir, dataLogDir,
/// forceSync, snapCount, autopurge.snapRetainCount, autopurge.purgeInterval).
#[derive(Clone, Debug)]
pub struct StorageConfig {
    /// Snapshots go to `<data_dir>/snapshots`, the vote and committed index to `<data_dir>/raft`.
    pub data_dir: PathBuf,
    /// The WAL goes to `<data_log_dir or data_dir>/wal`.
    pub data_log_dir: Option<PathBuf>,
    /// `false` (forceSync=no) skips fdatasync on the log: faster, but an OS crash or power loss
    /// may lose acknowledged writes.
    pub force_sync: bool,
    /// A snapshot is taken every this many transactions (zxids).
    pub snap_count: u64,
    /// An ensemble member serves a lagging one from its log while that log is under this
    /// fraction of its newest snapshot (`snapshotSizeFactor`), and the snapshot beyond.
    pub snapshot_size_factor: f64,
    /// Snapshots kept (at least 3); the log is kept from the oldest of them on.
    pub snap_retain_count: u32,
    /// Every this many hours, also purge old snapshots and log segments; 0 = only when a
    /// snapshot is taken.
    pub purge_interval_hours: u32,
    /// Size each WAL segment is preallocated to.
    pub segment_bytes: u64,
    /// A log fsync slower than this is logged and counted (`fsync.warningthresholdms`).
    pub fsync_warning: Duration,
    /// Snapshots are written at no more than this many bytes per second
    /// (`snapshot.maxWriteMBps`); None: unthrottled.
    pub snapshot_write_rate: Option<u64>,
}

impl StorageConfig {
    /// ZooKeeper's defaults for everything but the directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        StorageConfig {
            data_dir: data_dir.into(),
            data_log_dir: None,
            force_sync: true,
            snap_count: 100_000,
            snapshot_size_factor: 0.33,
            snap_retain_count: 3,
            purge_interval_hours: 0,
            segment_bytes: wal::DEFAULT_SEGMENT_BYTES,
            fsync_warning: Duration::from_secs(1),
            snapshot_write_rate: None,
        }
    }

    pub fn wal_dir(&self) -> PathBuf {
        self.data_log_dir
            .as_ref()
            .unwrap_or(&self.data_dir)
            .join("wal")
    }

    pub fn snapshot_dir(&self) -> PathBuf {
        self.data_dir.join("snapshots")
    }

    pub fn raft_dir(&self) -> PathBuf {
        self.data_dir.join("raft")
    }
}

/// Storage figures for metrics and `mntr`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StorageStats {
    pub fsyncs: u64,
    pub fsync_p50_us: u64,
    pub fsync_p99_us: u64,
    pub fsync_p999_us: u64,
    pub fsync_max_us: u64,
    pub fsync_threshold_exceeded: u64,
    /// Log entries written and the group-commit batches they went in.
    pub log_records: u64,
    pub log_batches: u64,
    /// Bytes of WAL segment files (preallocated size).
    pub log_bytes: u64,
    /// Bytes of the snapshot files kept.
    pub snapshot_bytes: u64,
    pub last_snapshot_ms: u64,
    pub snapshots_written: u64,
    pub snapshot_failures: u64,
    /// Raft log index of the newest snapshot written or loaded, 0 if none.
    pub last_snapshot_index: i64,
    pub writes_blocked: bool,
}

/// Snapshot counters, updated by snapshot builders.
#[derive(Default)]
struct SnapCounters {
    last_ms: u64,
    written: u64,
    failures: u64,
    last_index: u64,
    /// Size of the snapshot at `last_index` as written.
    last_bytes: u64,
}

/// What a durable consensus keeps to report on and close its storage.
struct StorageHandle {
    wal: Arc<Wal>,
    log: DurableLogStore,
    persist: Arc<SnapshotPersist>,
    purger: Option<tokio::task::JoinHandle<()>>,
}

impl Consensus {
    /// Opens (or creates) the durable log and snapshots, restores, replays, becomes leader;
    /// returns only once every committed entry is applied (so the keeper serves only after
    /// recovery).
    ///
    /// The hook must be fresh (nothing applied): it receives `restore` with the newest valid
    /// snapshot, then every later committed entry through `apply`. Refuses to start, with a
    /// message naming file and offset, when the log is damaged anywhere but its unacknowledged
    /// tail. Only one process may open a data directory at a time; call
    /// [`Consensus::shutdown`] before opening it again.
    pub async fn start_durable(
        hook: Arc<dyn StateMachineHook>,
        storage: StorageConfig,
    ) -> Result<Consensus, ConsensusError> {
        // Pipelined while the group has one voter (group commit): asked for, not imposed.
        Consensus::start_durable_with(hook, storage, AckMode::Pipelined).await
    }

    /// [`Consensus::start_durable`] with the [`AckMode`] asked for. `Pipelined` is only ever
    /// a request: it is refused at start when the snapshot or the log holds a membership of
    /// several voters, and ends for good when one is appended or installed later
    /// (`EarlyAcks`), so a group of several voters never acknowledges before fsync.
    pub async fn start_durable_with(
        hook: Arc<dyn StateMachineHook>,
        storage: StorageConfig,
        ack: AckMode,
    ) -> Result<Consensus, ConsensusError> {
        let config = Arc::new(standalone_config(storage.snap_count.max(1))?);
        let Opened {
            sm,
            log,
            handle,
            pending,
            snapshots,
        } = open(hook, &storage, ack, STANDALONE_ID).await?;
        let raft = match Raft::new(STANDALONE_ID, config, NoNetwork, log, sm).await {
            Ok(r) => r,
            Err(e) => {
                handle.close();
                return Err(ConsensusError::raft("cannot start raft", e));
            }
        };
        tokio::spawn(run_submitter::<NoForwarder>(
            raft.clone(),
            Arc::clone(&pending),
            Arc::new(Intake::start(raft.clone(), STANDALONE_ID)),
            None,
        ));
        let consensus = Consensus::lead(raft, handle, pending).await?;
        snapshots.start(consensus.raft.clone());

        // Entries after the saved committed index are committed again by this leader's first
        // entry; wait for them, so nothing acknowledged before the restart is missing when
        // clients connect.
        let last = consensus.metrics.borrow().last_log_index;
        if let Err(e) = consensus
            .raft
            .wait(Some(RECOVERY_WAIT))
            .applied_index_at_least(last, "recovery replay")
            .await
        {
            consensus.shutdown().await;
            return Err(ConsensusError::raft(
                "recovery did not finish applying the log",
                e,
            ));
        }
        Ok(consensus)
    }

    /// Initializes the one-voter group if it is new and waits until this node leads.
    async fn lead(
        raft: Raft,
        storage: Arc<StorageHandle>,
        pending: Arc<Pending>,
    ) -> Result<Consensus, ConsensusError> {
        let consensus = Consensus {
            metrics: raft.metrics(),
            raft,
            node_id: STANDALONE_ID,
            shut_down: Arc::new(AtomicBool::new(false)),
            storage,
            pending,
            ensemble: None,
        };
        // Asked first: openraft logs an ERROR when told to initialize a group that already is,
        // and every clean restart would print one.
        let init = match consensus.raft.is_initialized().await {
            // A durable log that holds the membership from an earlier run.
            Ok(true) => Ok(true),
            _ => consensus
                .raft
                .initialize(BTreeSet::from([STANDALONE_ID]))
                .await
                .map(|()| false),
        };
        match init {
            Ok(false) => {}
            // Already initialized: elect at once instead of waiting out an election timeout.
            Ok(true) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {
                let _ = consensus.raft.trigger().elect().await;
            }
            Err(e) => {
                consensus.shutdown().await;
                return Err(ConsensusError::raft("cannot initialize the group", e));
            }
        }
        if let Err(e) = consensus
            .raft
            .wait(Some(LEADER_WAIT))
            .state(ServerState::Leader, "standalone start")
            .await
        {
            consensus.shutdown().await;
            return Err(ConsensusError::raft("did not become leader", e));
        }
        Ok(consensus)
    }

    /// True while the disk has no room for the next log segment: the keeper must refuse client
    /// writes (and keep the connection) until it clears.
    pub fn writes_blocked(&self) -> bool {
        self.storage.wal.health().writes_blocked()
    }

    /// Storage figures.
    pub fn storage_stats(&self) -> StorageStats {
        let s = &self.storage;
        let w = s.wal.stats();
        let c = lock_counters(&s.persist.counters);
        StorageStats {
            fsyncs: w.fsyncs,
            fsync_p50_us: w.fsync_p50_us,
            fsync_p99_us: w.fsync_p99_us,
            fsync_p999_us: w.fsync_p999_us,
            fsync_max_us: w.fsync_max_us,
            fsync_threshold_exceeded: w.fsync_threshold_exceeded,
            log_records: w.appended_records,
            log_batches: w.batches,
            log_bytes: w.log_bytes,
            snapshot_bytes: s.persist.store.total_bytes(),
            last_snapshot_ms: c.last_ms,
            snapshots_written: c.written,
            snapshot_failures: c.failures,
            last_snapshot_index: i64::try_from(c.last_index).unwrap_or(i64::MAX),
            writes_blocked: s.wal.health().writes_blocked(),
        }
    }

    /// [`Consensus::submit`] then [`Submitted::wait`], for a caller with nothing to do in
    /// between: the zxid of `entry` and the hook's ApplyResult for it, once it is committed and
    /// applied here.
    ///
    /// Any number of callers may wait at once: entries that wait together go into the leader's
    /// log as one raft entry ([`Batch`]), which shares one fsync.
    pub async fn propose(&self, entry: Entry) -> Result<(i64, ApplyResult), ConsensusError> {
        self.submit(entry).await?.wait().await
    }

    /// Takes `entry` behind every entry submitted here before it — the order of `submit`
    /// calls is the log order — and returns at once with a handle to await its result. A
    /// connection submits its writes one after another without waiting for each to commit, so
    /// many of its writes share one group-commit fsync while their order is kept.
    pub async fn submit(&self, entry: Entry) -> Result<Submitted, ConsensusError> {
        self.pending.submit(entry, None)
    }

    /// Proposes a decision only a leader may take (a session expiry): refused unless this
    /// member leads, and dropped rather than handed to the next leader if it loses the lead
    /// first — a leader cut off from the others must not have its decisions applied by the
    /// leader that replaced it. Waits until applied here.
    pub async fn propose_as_leader(
        &self,
        entry: Entry,
    ) -> Result<(i64, ApplyResult), ConsensusError> {
        let term = {
            let m = self.metrics.borrow();
            if !self.is_leader() {
                return Err(ConsensusError::NotLeader {
                    leader: m.current_leader,
                });
            }
            m.current_term
        };
        self.pending.submit(entry, Some(term))?.wait().await
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
        self.pending.close();
        if let Some(e) = &self.ensemble {
            e.stop.cancel();
        }
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!("raft core ended abnormally on shutdown: {e}");
        }
        // Joins the WAL threads: blocking work.
        let s = Arc::clone(&self.storage);
        let _ = tokio::task::spawn_blocking(move || s.close()).await;
    }
}

impl StorageHandle {
    /// Saves the committed index and stops the WAL. Idempotent.
    fn close(&self) {
        if let Some(p) = &self.purger {
            p.abort();
        }
        self.log.flush_committed();
        self.wal.close();
    }
}

/// How often the snapshot scheduler asks again while a snapshot is due and not begun (raft
/// ignores the ask while another build runs).
const SNAPSHOT_ASK_AGAIN: Duration = Duration::from_millis(500);

/// Asks raft for a snapshot once snapCount zxids have been applied past the newest snapshot's.
/// snapCount counts transactions, as ZooKeeper's does; openraft's own policy counts raft
/// entries, each a [`Batch`] of transactions, and would snapshot ever more rarely as the load
/// grows. The ask is repeated while due (a build already running ignores it), also after the
/// last write of a burst, and at once when a build ends. On an ensemble member, each new
/// snapshot also purges the log beyond what [`LogRetention`] keeps. Ends with the raft core,
/// whose metrics channel then closes.
fn spawn_snapshot_scheduler(raft: Raft, asks: SnapshotAsks) {
    let SnapshotAsks {
        hook,
        snapshot_zxid,
        snap_count,
        retention,
    } = asks;
    let snap_count = i64::try_from(snap_count.max(1)).unwrap_or(i64::MAX);
    let mut metrics = raft.metrics();
    tokio::spawn(async move {
        let mut asked: Option<Instant> = None;
        let mut newest = metrics.borrow().snapshot;
        loop {
            let (snapshot, purged) = {
                let m = metrics.borrow();
                (m.snapshot, m.purged)
            };
            if snapshot != newest {
                newest = snapshot;
                // The build asked for has ended: a snapshot due again is asked for now,
                // not after the wait meant for asks a running build ignores.
                asked = None;
                let upto = snapshot.and_then(|s| retention.as_ref()?.purge_upto(s.index));
                if let Some(upto) = upto.filter(|u| Some(*u) > purged.map(|p| p.index)) {
                    if raft.trigger().purge_log(upto).await.is_err() {
                        return;
                    }
                }
            }
            let since = hook
                .last_applied()
                .saturating_sub(snapshot_zxid.load(Ordering::Acquire));
            let recheck = if since < snap_count {
                None
            } else {
                match asked.map(|t| t.elapsed()) {
                    Some(e) if e < SNAPSHOT_ASK_AGAIN => Some(SNAPSHOT_ASK_AGAIN - e),
                    _ => {
                        if raft.trigger().snapshot().await.is_err() {
                            return;
                        }
                        asked = Some(Instant::now());
                        Some(SNAPSHOT_ASK_AGAIN)
                    }
                }
            };
            // Until more applies (or a build ends), or it is time to ask again.
            let changed = match recheck {
                None => metrics.changed().await,
                Some(d) => tokio::time::timeout(d, metrics.changed())
                    .await
                    .unwrap_or(Ok(())),
            };
            if changed.is_err() {
                return;
            }
        }
    });
}

/// Refuses a hook that has applied entries already: recovery restores a snapshot and replays
/// the log from there, so earlier state would be applied twice or see zxids go backwards.
fn require_fresh(hook: &dyn StateMachineHook) -> Result<(), ConsensusError> {
    let applied = hook.last_applied();
    if applied != 0 {
        return Err(ConsensusError::NotFresh { applied });
    }
    Ok(())
}

/// How long replaying the log after the saved committed index may take at start-up.
const RECOVERY_WAIT: Duration = Duration::from_secs(600);

/// openraft configuration for a one-voter group.
fn standalone_config(keep_after_snapshot: u64) -> Result<openraft::Config, ConsensusError> {
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
        // Asked for by zxids instead (`spawn_snapshot_scheduler`).
        snapshot_policy: SnapshotPolicy::Never,
        // Entries already in a snapshot that raft still serves from the log, so a lagging
        // follower catches up without a snapshot transfer. Disk files are kept longer still:
        // from the oldest retained snapshot on (see `SnapshotPersist::apply_retention`).
        max_in_snapshot_log_to_keep: keep_after_snapshot,
        ..Default::default()
    };
    config
        .validate()
        .map_err(|e| ConsensusError::raft("bad raft configuration", e))
}

mod codec;
mod error;
mod intake;
mod log_store;
mod member;
mod membership;
mod network;
mod persist;
mod proposal;
mod silence;
mod state_machine;
mod submit;
#[cfg(test)]
mod tests;
mod wire;

pub use codec::DecodeError;
use codec::*;
pub use error::*;
use intake::*;
pub use log_store::*;
use member::*;
pub use membership::DesiredMembership;
pub use network::*;
pub(crate) use persist::write_initial_state;
use persist::*;
pub use proposal::{Batch, HighWater, Proposal};
use silence::*;
pub use state_machine::*;
pub use submit::Submitted;
use submit::*;
pub use wire::ReportedEvent;
