//! What every part of the keeper shares: the configuration, the state and its locks, the
//! consensus handle, the counters, and the shutdown token and task tracker. Built and started
//! by [`crate::keeper`]; every task holds an `Arc<Shared>`. Must not: start or stop anything
//! (the keeper does), or know about sockets.
//!
//! Locks, one per invariant, always taken in this order when nested:
//! 1. [`State`] (`state`): the tree and the watches, which must change together — a read and
//!    its watch registration see exactly the tree the last applied entry left, and an apply
//!    fires exactly the watches registered before it.
//! 2. [`ConnRegistry`] (`conns`): which connection holds which session, and the handle used
//!    to queue frames to it; taken under `state` by the apply path's watch fan-out.
//!
//! The session tracker (`sessions`) and the per-address counts of admission are never held
//! together with another lock. Per-connection and server-wide statistics are atomics.
//! Must not: decide write results (corral-tree does), encode wire bytes (corral-proto does).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use corral_tree::{ApplyResult, DataTree, Entry, TreeConfig};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::consensus::{Consensus, ConsensusError};
use crate::outbound::QueueLimits;
use crate::session::SessionTracker;
use crate::stats::ServerStats;
use crate::watch::{ConnId, WatchRegistry};

pub(crate) mod registry;
pub(crate) mod throttle;

use registry::ConnRegistry;
use throttle::Outstanding;

/// Everything a read and an apply must see together: the tree and the watches on it.
pub struct State {
    pub tree: DataTree,
    pub watches: WatchRegistry,
}

pub struct Shared {
    pub config: Config,
    state: Mutex<State>,
    sessions: Mutex<SessionTracker>,
    conns: Mutex<ConnRegistry>,
    pub(crate) consensus: OnceLock<Consensus>,
    next_conn_id: AtomicU64,
    next_session_id: AtomicI64,
    pub started: Instant,
    pub stats: ServerStats,
    /// Requests taken in and not yet answered, against `globalOutstandingLimit`.
    pub(crate) outstanding: Outstanding,
    /// Cancelled once, by `Keeper::shutdown`; every task the keeper runs watches it.
    pub(crate) shutdown: CancellationToken,
    /// Every task the keeper runs (listener, connections, checkers), so shutdown can wait
    /// for them.
    pub(crate) tasks: TaskTracker,
    /// Open connections per client address, counted from accept (with a maxClientCnxns limit
    /// only). A lock of its own: a flood of connects must not contend with reads and applies.
    conns_per_ip: Mutex<HashMap<IpAddr, u32>>,
    /// Held from the start of `Keeper::start` until shutdown completes.
    pub(crate) data_lock: Mutex<Option<crate::storage::data_lock::DataDirLock>>,
    /// The tree's last applied zxid, published by the apply path so replies that only need
    /// the zxid (pings, watch management) do not take the state lock.
    last_zxid: AtomicI64,
}

/// How long a member must know no leader before it counts as cut off from the quorum (and
/// turns read-only, if allowed): an election takes well under this, so a leader change keeps
/// every client of the surviving members connected.
pub(crate) const CUT_OFF_AFTER: Duration = Duration::from_secs(2);

/// `/zookeeper/config` at start: an ensemble's `server.N` lines as ZooKeeper 3.8 shows them
/// (version 0 until a reconfig); empty standalone, as a standalone ZooKeeper has it. A
/// client address is shown only when the line gives one (ZooKeeper leaves out a clientPort
/// that comes from the static config). After start the node is the tree's: a restart keeps
/// the membership the log or the snapshot holds.
fn config_node_data(config: &Config) -> Vec<u8> {
    if !config.is_distributed() {
        return Vec::new();
    }
    let members = config
        .servers
        .iter()
        .map(|s| corral_tree::reconfig::Member {
            id: i64::try_from(s.id).unwrap_or(i64::MAX),
            host: s.host.clone(),
            quorum_port: s.quorum_port,
            election_port: s.election_port,
            observer: s.role == crate::config::ServerRole::Observer,
            client: s.client_port.map(|p| {
                let host = s.client_host.clone().unwrap_or_else(|| "0.0.0.0".into());
                (host, p)
            }),
        })
        .collect();
    corral_tree::reconfig::ServerConfig::from_members(members).render()
}

/// Wall-clock milliseconds, the time carried in entries.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Locks a mutex whose holder may have panicked. The data is still structurally valid (every
/// update under these locks is complete or not begun), so the keeper keeps serving.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    pub(crate) fn new(config: Config) -> Shared {
        let tree_config = TreeConfig {
            extended_types_enabled: config.extended_types_enabled,
            super_digest: config.super_digest.clone(),
            config_node_data: config_node_data(&config),
            reconfig_enabled: config.reconfig_enabled,
            enforce_quota: config.enforce_quota,
            obituaries_kept: config.obituaries_kept,
        };
        // Session ids: like ZooKeeper, the top byte is the server id and the rest starts from
        // the clock, so ids from different runs do not collide.
        // Only the low byte fits; ZooKeeper asks for ids from 1 to 255.
        let server_id = config.server_id.map_or(1, |id| (id & 0xff) as i64);
        let base = ((now_ms() << 24) as u64 >> 8) as i64 | (server_id << 56);
        let outstanding = Outstanding::new(u64::from(config.global_outstanding_limit));
        let member_id = config.server_id.unwrap_or(1);
        Shared {
            config,
            state: Mutex::new(State {
                tree: DataTree::new(tree_config),
                watches: WatchRegistry::default(),
            }),
            sessions: Mutex::new(SessionTracker::new(member_id)),
            conns: Mutex::new(ConnRegistry::default()),
            consensus: OnceLock::new(),
            next_conn_id: AtomicU64::new(1),
            next_session_id: AtomicI64::new(base),
            started: Instant::now(),
            stats: ServerStats::default(),
            outstanding,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            conns_per_ip: Mutex::new(HashMap::new()),
            data_lock: Mutex::new(None),
            last_zxid: AtomicI64::new(0),
        }
    }

    /// The tree and the watches (lock 1).
    pub fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Session liveness; never held with another lock.
    pub(crate) fn sessions(&self) -> MutexGuard<'_, SessionTracker> {
        lock(&self.sessions)
    }

    /// Connections and the sessions they hold (lock 2: may be taken under `state`).
    pub(crate) fn conns(&self) -> MutexGuard<'_, ConnRegistry> {
        lock(&self.conns)
    }

    /// Open connections per client address (see [`crate::listener`]'s admission).
    pub(crate) fn conns_per_ip(&self) -> MutexGuard<'_, HashMap<IpAddr, u32>> {
        lock(&self.conns_per_ip)
    }

    pub(crate) fn consensus(&self) -> Option<&Consensus> {
        self.consensus.get()
    }

    /// This ensemble member has known no leader (or, leading, no quorum) for
    /// [`CUT_OFF_AFTER`]: it is cut off from the quorum. Like a ZooKeeper member that lost
    /// its quorum, it serves no session it cannot keep alive: it closes its clients'
    /// connections so they move to a member of the quorum, whose leader would otherwise
    /// expire them while this member answered their pings.
    pub(crate) fn cut_off(&self) -> bool {
        self.consensus
            .get()
            .and_then(|c| c.leaderless_for())
            .is_some_and(|d| d >= CUT_OFF_AFTER)
    }

    /// Read-only mode (`readonlymode.enabled`): cut off from the quorum, this member serves
    /// read-only sessions, local to it, and refuses the others, as ZooKeeper's read-only
    /// server does. It ends when a leader is heard.
    pub(crate) fn read_only(&self) -> bool {
        self.config.read_only_mode && self.cut_off()
    }

    pub(crate) fn is_leader(&self) -> bool {
        self.consensus.get().is_some_and(|c| c.is_leader())
    }

    pub fn last_zxid(&self) -> i64 {
        self.last_zxid.load(Ordering::Acquire)
    }

    pub(crate) fn publish_last_zxid(&self, zxid: i64) {
        self.last_zxid.store(zxid, Ordering::Release);
    }

    pub(crate) fn next_conn_id(&self) -> ConnId {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn next_session_id(&self) -> i64 {
        self.next_session_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Proposes an entry and waits until it is applied here.
    pub(crate) async fn propose(&self, entry: Entry) -> Result<(i64, ApplyResult), ConsensusError> {
        match self.consensus.get() {
            Some(c) => c.propose(entry).await,
            None => Err(ConsensusError::NotStarted),
        }
    }

    /// Proposes a leader's own decision (expiry, container or TTL cleanup): see
    /// `Consensus::propose_as_leader`.
    pub(crate) async fn propose_as_leader(
        &self,
        entry: Entry,
    ) -> Result<(i64, ApplyResult), ConsensusError> {
        match self.consensus.get() {
            Some(c) => c.propose_as_leader(entry).await,
            None => Err(ConsensusError::NotStarted),
        }
    }

    /// True while the log cannot take client writes (disk full); reads go on.
    pub(crate) fn writes_blocked(&self) -> bool {
        self.consensus.get().is_some_and(|c| c.writes_blocked())
    }

    /// The bounds of one connection's outbound queue.
    pub(crate) fn queue_limits(&self) -> QueueLimits {
        QueueLimits::for_max_frame(
            self.config.jute_max_buffer,
            Duration::from_millis(u64::from(self.config.max_session_timeout_ms)),
        )
    }

    pub(crate) fn uptime_ms(&self) -> u64 {
        (self.started.elapsed().as_millis() as u64).max(1)
    }

    /// Spawns a task the keeper waits for at shutdown.
    pub(crate) fn spawn<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(task);
    }

    /// Resolves when shutdown has begun (for every task the keeper runs).
    pub(crate) fn shutting_down(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.shutdown.cancelled()
    }
}
