//! The keeper process: shared state, the consensus hook that applies committed entries,
//! the listener, and the session checker that expires silent sessions.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use corral_proto::{message::notification_body, EventType, KeeperState, WatcherEvent};
use corral_tree::{ApplyResult, DataTree, Entry, EntryOp, TreeConfig};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::config::Config;
use crate::consensus::{Consensus, StateMachineHook, StorageConfig};
use crate::outbound::{Pushed, QueueLimits};
use crate::session::{SessionTracker, CHECK_INTERVAL, STALL_THRESHOLD};
use crate::watch::{ConnId, WatchRegistry};
use crate::zk_import;

/// ZooKeeper's default `znode.container.checkIntervalMs`.
pub const CONTAINER_CHECK_INTERVAL: Duration = Duration::from_secs(60);
/// Snapshot bytes are streamed to disk in pieces of this size: small enough that no large
/// buffer is ever allocated, large enough that each write call is worth making.
const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;

/// Per-connection bookkeeping visible to the admin commands.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub out: Arc<crate::outbound::OutQueue>,
    pub remote: SocketAddr,
    pub session_id: i64,
    pub timeout_ms: i32,
    pub established: SystemTime,
    pub packets_received: u64,
    pub packets_sent: u64,
    pub last_op: &'static str,
    pub last_cxid: i32,
    pub last_zxid: i64,
    pub last_response: Option<SystemTime>,
    pub last_latency_ms: u64,
    pub min_latency_ms: u64,
    pub max_latency_ms: u64,
    pub total_latency_ms: u64,
    pub requests: u64,
}

/// Everything the request path and the apply path share, behind one lock so that a read and
/// its watch registration see exactly the tree state the last applied entry left.
pub struct State {
    pub tree: DataTree,
    pub watches: WatchRegistry,
    pub sessions: SessionTracker,
    pub conns: HashMap<ConnId, ConnInfo>,
    /// Which connection currently holds each session.
    pub session_conn: HashMap<i64, ConnId>,
}

/// Server-wide counters for srvr/stat/mntr.
#[derive(Default)]
pub struct ServerStats {
    pub packets_received: AtomicU64,
    pub packets_sent: AtomicU64,
    pub latency_total_ms: AtomicU64,
    pub latency_count: AtomicU64,
    pub latency_max_ms: AtomicU64,
    pub latency_min_ms: AtomicU64,
    /// Requests taken in by connections and not yet answered.
    pub outstanding: AtomicU64,
    /// Connections refused at accept: their address was at maxClientCnxns.
    pub rejected_connections: AtomicU64,
    /// Connections that did not complete a handshake within the bound.
    pub handshake_timeouts: AtomicU64,
    /// Connections closed because their client did not read what it was sent.
    pub slow_connections_closed: AtomicU64,
    /// A flood of refusals, handshake timeouts or quota warnings logs one line per interval
    /// for each kind, not one per event.
    rejections_log: LogEvery,
    handshake_timeouts_log: LogEvery,
    /// One throttle per kind of quota warning (its text with the figures left out), as
    /// ZooKeeper's rate logger repeats only a message that changed.
    quota_warnings_log: Mutex<HashMap<String, Arc<LogEvery>>>,
}

/// At most one log line per interval for one kind of event, saying how many it stands for.
#[derive(Default)]
pub(crate) struct LogEvery {
    last_ms: AtomicU64,
    pending: AtomicU64,
}

impl LogEvery {
    const INTERVAL_MS: u64 = 10_000;

    /// Counts one event at `now_ms` (> 0); `Some(n)` when a line is due, `n` being the
    /// events since the last line (this one included).
    pub(crate) fn event(&self, now_ms: u64) -> Option<u64> {
        self.pending.fetch_add(1, Ordering::AcqRel);
        let last = self.last_ms.load(Ordering::Acquire);
        if last != 0 && now_ms.saturating_sub(last) < Self::INTERVAL_MS {
            return None;
        }
        self.last_ms
            .compare_exchange(last, now_ms.max(1), Ordering::AcqRel, Ordering::Acquire)
            .ok()?;
        Some(self.pending.swap(0, Ordering::AcqRel))
    }
}

impl ServerStats {
    pub fn record_latency(&self, ms: u64) {
        self.latency_total_ms.fetch_add(ms, Ordering::Relaxed);
        let n = self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_max_ms.fetch_max(ms, Ordering::Relaxed);
        if n == 0 {
            self.latency_min_ms.store(ms, Ordering::Relaxed);
        } else {
            self.latency_min_ms.fetch_min(ms, Ordering::Relaxed);
        }
    }
    pub fn reset(&self) {
        for a in [
            &self.packets_received,
            &self.packets_sent,
            &self.latency_total_ms,
            &self.latency_count,
            &self.latency_max_ms,
            &self.latency_min_ms,
        ] {
            a.store(0, Ordering::Relaxed);
        }
    }
}

pub struct Keeper {
    pub config: Config,
    state: Mutex<State>,
    consensus: OnceLock<Consensus>,
    next_conn_id: AtomicU64,
    next_session_id: AtomicI64,
    pub started: Instant,
    pub stats: ServerStats,
    /// Cancelled once, by [`Keeper::shutdown`]; every task the keeper runs watches it.
    shutdown: CancellationToken,
    /// Every task the keeper runs (listener, connections, checkers), so shutdown can wait
    /// for them.
    tasks: TaskTracker,
    /// Open connections per client address, counted from accept (with a maxClientCnxns limit
    /// only). A lock of its own: a flood of connects must not contend with reads and applies
    /// for the state lock.
    conns_per_ip: Mutex<HashMap<IpAddr, u32>>,
    /// Woken when the outstanding requests fall below `globalOutstandingLimit`.
    outstanding_room: Notify,
    /// Held from the start of [`Keeper::start`] until shutdown completes.
    data_lock: Mutex<Option<crate::data_lock::DataDirLock>>,
    /// The tree's last applied zxid, published by the apply path so replies that only need
    /// the zxid (pings, watch management) do not take the state lock.
    last_zxid: AtomicI64,
}

/// The client port's listening socket, with room in its backlog for a burst of connects.
fn listen(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As TcpListener::bind does: a restarted keeper can take its port back at once.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Wall-clock milliseconds, the time carried in entries.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Keeper {
    pub fn new(config: Config) -> Arc<Keeper> {
        let tree_config = TreeConfig {
            extended_types_enabled: config.extended_types_enabled,
            super_digest: config.super_digest.clone(),
            config_node_data: Vec::new(),
            reconfig_enabled: config.reconfig_enabled,
            enforce_quota: config.enforce_quota,
        };
        // Session ids: like ZooKeeper, the top byte is the server id and the rest starts from
        // the clock, so ids from different runs do not collide.
        // Only the low byte fits; ZooKeeper asks for ids from 1 to 255.
        let server_id = config.server_id.map_or(1, |id| (id & 0xff) as i64);
        let base = ((now_ms() << 24) as u64 >> 8) as i64 | (server_id << 56);
        Arc::new(Keeper {
            config,
            state: Mutex::new(State {
                tree: DataTree::new(tree_config),
                watches: WatchRegistry::default(),
                sessions: SessionTracker::default(),
                conns: HashMap::new(),
                session_conn: HashMap::new(),
            }),
            consensus: OnceLock::new(),
            next_conn_id: AtomicU64::new(1),
            next_session_id: AtomicI64::new(base),
            started: Instant::now(),
            stats: ServerStats::default(),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            conns_per_ip: Mutex::new(HashMap::new()),
            outstanding_room: Notify::new(),
            data_lock: Mutex::new(None),
            last_zxid: AtomicI64::new(0),
        })
    }

    /// Locks the shared state. A poisoned lock means a panic mid-update elsewhere; the state
    /// is still structurally valid (every update is a complete apply), so keep serving.
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn consensus(&self) -> Option<&Consensus> {
        self.consensus.get()
    }

    pub fn last_zxid(&self) -> i64 {
        self.last_zxid.load(Ordering::Acquire)
    }

    pub fn next_conn_id(&self) -> ConnId {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn next_session_id(&self) -> i64 {
        self.next_session_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Proposes an entry and waits until it is applied here.
    pub async fn propose(
        &self,
        entry: Entry,
    ) -> Result<(i64, ApplyResult), crate::consensus::ConsensusError> {
        let Some(c) = self.consensus.get() else {
            return Err(crate::consensus::ConsensusError::NotStarted);
        };
        c.propose(entry).await
    }

    /// Binds the client port, starts consensus and the background tasks. Returns once the
    /// keeper is serving.
    pub async fn start(self: &Arc<Self>) -> Result<SocketAddr, String> {
        let mut dirs = vec![self.config.data_dir.as_path()];
        dirs.extend(self.config.data_log_dir.as_deref());
        let lock = crate::data_lock::lock(&dirs).map_err(|e| e.to_string())?;
        *self.data_lock.lock().unwrap_or_else(|p| p.into_inner()) = Some(lock);
        let addr = SocketAddr::new(self.config.client_port_address, self.config.client_port);
        let listener = listen(addr, self.config.client_port_listen_backlog.unwrap_or(4096))
            .map_err(|e| format!("cannot listen on {addr} (clientPortAddress/clientPort): {e}"))?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        let hook: Arc<dyn StateMachineHook> = Arc::new(Hook(Arc::clone(self)));
        let mut storage = StorageConfig::new(self.config.data_dir.clone());
        storage.data_log_dir = self.config.data_log_dir.clone();
        storage.force_sync = self.config.force_sync;
        storage.fsync_warning = Duration::from_millis(self.config.fsync_warning_threshold_ms);
        storage.snapshot_write_rate = match self.config.snapshot_max_write_mbps {
            0 => None,
            mb => Some(mb.saturating_mul(1_000_000)),
        };
        storage.snap_count = self.config.snap_count;
        storage.snap_retain_count = self.config.autopurge_snap_retain_count;
        storage.purge_interval_hours = self.config.autopurge_purge_interval_hours;
        if !storage.force_sync {
            warn!("forceSync=no: the log is not fsynced; a power loss or OS crash can lose acknowledged writes");
        }
        self.import_zookeeper_data(&storage).await?;
        let recovering = Instant::now();
        // Returns once the snapshot is restored and every logged entry re-applied, so the
        // keeper (and ruok) answers only when it can serve what it acknowledged before.
        let consensus = Consensus::start_durable(hook, storage)
            .await
            .map_err(|e| format!("cannot recover the data: {e}"))?;
        {
            let st = self.state();
            info!(
                ms = recovering.elapsed().as_millis() as u64,
                zxid = format!("0x{:x}", st.tree.last_zxid()),
                nodes = st.tree.node_count(),
                sessions = st.tree.sessions().count(),
                "recovered"
            );
        }
        let _ = self.consensus.set(consensus);
        {
            // Sessions restored with the state get a fresh full timeout, as ZooKeeper does
            // after a restart or a leader change.
            let now = Instant::now();
            let mut st = self.state();
            let restored: Vec<(i64, i32)> = st
                .tree
                .sessions()
                .map(|(id, s)| (*id, s.timeout_ms))
                .collect();
            for (id, timeout) in restored {
                st.sessions
                    .track(id, Duration::from_millis(timeout.max(0) as u64), now);
            }
        }
        self.tasks.spawn(Arc::clone(self).session_checker());
        self.tasks.spawn(Arc::clone(self).container_cleaner());
        self.tasks.spawn(Arc::clone(self).accept_loop(listener));
        self.banner(local);
        Ok(local)
    }

    /// The one start-up line an operator reads to know what this keeper is running with.
    fn banner(&self, local: SocketAddr) {
        let c = &self.config;
        let absolute = |p: &std::path::Path| {
            p.canonicalize()
                .unwrap_or_else(|_| p.to_path_buf())
                .display()
                .to_string()
        };
        let data_dir = absolute(&c.data_dir);
        let data_log_dir = c
            .data_log_dir
            .as_deref()
            .map_or_else(|| data_dir.clone(), absolute);
        info!(
            config = c
                .config_path
                .as_deref()
                .map_or_else(|| "(embedded default)".to_string(), absolute),
            data_dir,
            data_log_dir,
            client = %local,
            tick_ms = c.tick_time_ms,
            session_timeout_ms = format!("{}-{}", c.min_session_timeout_ms, c.max_session_timeout_ms),
            snap_count = c.snap_count,
            four_letter_words = c.four_letter_whitelist.describe(),
            "corral keeper serving"
        );
    }

    /// A dataDir that holds ZooKeeper's `version-2` and no corral data is imported first
    /// (an operator switching by replacing the binary). ZooKeeper's files are only read.
    async fn import_zookeeper_data(&self, storage: &StorageConfig) -> Result<(), String> {
        let data_dir = self.config.data_dir.clone();
        let log_dir = self.config.data_log_dir.clone();
        if zk_import::has_corral_data(storage) {
            return zk_import::check_zk_not_written_since_import(
                storage,
                &data_dir,
                log_dir.as_deref(),
            );
        }
        if !zk_import::has_zk_data(&data_dir, log_dir.as_deref()) {
            return Ok(());
        }
        info!(
            data_dir = %data_dir.display(),
            "the data dir holds ZooKeeper's data (version-2) and no corral data: importing it"
        );
        let st = storage.clone();
        let imported = tokio::task::spawn_blocking(move || {
            zk_import::import(&data_dir, log_dir.as_deref(), &st)
        })
        .await
        .map_err(|e| format!("the import of ZooKeeper's data panicked: {e}"))?;
        match imported {
            Ok(s) => {
                info!(
                    znodes = s.znodes,
                    sessions = s.sessions,
                    ephemerals = s.ephemerals,
                    last_zxid = %format!("0x{:x}", s.last_zxid),
                    snapshot = %s.snapshot.as_ref().map_or_else(|| "none".into(), |p| p.display().to_string()),
                    logs = s.logs.len(),
                    txns_replayed = s.txns_replayed,
                    ms = s.elapsed_ms,
                    "imported ZooKeeper's data; its files in version-2 are left as they were, so \
                     ZooKeeper can be started again on this data dir (without what corral \
                     writes from now on)"
                );
                Ok(())
            }
            Err(zk_import::ImportError::NothingToImport(dir)) => {
                warn!(
                    dir = %dir.display(),
                    "ZooKeeper's files hold no transactions; starting with an empty tree"
                );
                Ok(())
            }
            Err(e) => Err(format!("cannot import ZooKeeper's data: {e}")),
        }
    }

    async fn accept_loop(self: Arc<Self>, listener: TcpListener) {
        let mut failures = 0u64;
        let mut last_logged: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, remote)) => {
                        if let Some(slot) = crate::connection::admit(&self, remote) {
                            let keeper = Arc::clone(&self);
                            self.tasks.spawn(crate::connection::serve(keeper, stream, remote, slot));
                        }
                    }
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning, and say so once
                        // per interval; the connections already open go on being served.
                        failures += 1;
                        if last_logged.is_none_or(|t: Instant| t.elapsed() >= Duration::from_secs(10)) {
                            warn!("accept failed: {e} ({failures} failures since the last such line); backing off");
                            failures = 0;
                            last_logged = Some(Instant::now());
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
    }

    /// Expires sessions whose client has been silent for longer than their timeout.
    async fn session_checker(self: Arc<Self>) {
        let mut expected = Instant::now() + CHECK_INTERVAL;
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(expected.into()) => {}
            }
            let now = Instant::now();
            let late = now.saturating_duration_since(expected);
            let due = {
                let mut st = self.state();
                if late > STALL_THRESHOLD {
                    warn!(
                        late_ms = late.as_millis() as u64,
                        "keeper stalled; not counting the stall against client sessions"
                    );
                    st.sessions.forgive_stall(late);
                }
                st.sessions.due(now)
            };
            expected = now + CHECK_INTERVAL;
            let is_leader = self.consensus.get().is_some_and(|c| c.is_leader());
            if !is_leader {
                let mut st = self.state();
                for (id, _) in due {
                    st.sessions.unmark(id);
                }
                continue;
            }
            for (id, silent) in due {
                let timeout_ms = self
                    .state()
                    .sessions
                    .get(id)
                    .map(|l| l.timeout.as_millis())
                    .unwrap_or(0);
                let reason = format!(
                    "expired: no packet from the client for {} ms (timeout {} ms)",
                    silent.as_millis(),
                    timeout_ms
                );
                info!(session = format!("0x{id:x}"), "{reason}");
                let keeper = Arc::clone(&self);
                self.tasks.spawn(async move {
                    let entry = Entry {
                        session_id: 0,
                        time_ms: now_ms(),
                        identities: Vec::new(),
                        op: EntryOp::CloseSession {
                            session_id: id,
                            reason,
                        },
                    };
                    if let Err(e) = keeper.propose(entry).await {
                        warn!(session = format!("0x{id:x}"), "expiry proposal failed: {e}");
                        keeper.state().sessions.unmark(id);
                    }
                });
            }
        }
    }

    /// Deletes empty containers and expired TTL nodes, as ZooKeeper's ContainerManager does
    /// (every `znode.container.checkIntervalMs`, default one minute). Candidates are chosen
    /// here and re-checked when the entry is applied, so a node that gained a child meanwhile
    /// survives.
    async fn container_cleaner(self: Arc<Self>) {
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(CONTAINER_CHECK_INTERVAL) => {}
            }
            if !self.consensus.get().is_some_and(|c| c.is_leader()) {
                continue;
            }
            let now = now_ms();
            let candidates = self.state().tree.container_and_ttl_candidates(now);
            if candidates.is_empty() {
                continue;
            }
            let entry = Entry {
                session_id: 0,
                time_ms: now,
                identities: Vec::new(),
                op: EntryOp::PurgeContainersAndTtl { candidates },
            };
            if let Err(e) = self.propose(entry).await {
                warn!("container/TTL cleanup failed: {e}");
            }
        }
    }

    /// Open connections per client address (see [`crate::connection`]'s admission).
    pub(crate) fn conns_per_ip(&self) -> MutexGuard<'_, HashMap<IpAddr, u32>> {
        self.conns_per_ip.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The bounds of one connection's outbound queue.
    pub fn queue_limits(&self) -> QueueLimits {
        QueueLimits::for_max_frame(
            self.config.jute_max_buffer,
            Duration::from_millis(u64::from(self.config.max_session_timeout_ms)),
        )
    }

    /// Waits while the keeper holds `globalOutstandingLimit` requests or more and this
    /// connection has some of them: a connection with nothing outstanding may always send
    /// one (ZooKeeper's throttle), so no client starves behind one that does not read.
    pub async fn wait_for_outstanding_room(&self, mine: &AtomicUsize) {
        let limit = u64::from(self.config.global_outstanding_limit);
        loop {
            if self.stats.outstanding.load(Ordering::Acquire) < limit
                || mine.load(Ordering::Acquire) == 0
            {
                return;
            }
            // Woken when a request is answered below the limit; the timeout covers this
            // connection's own count reaching zero.
            let _ =
                tokio::time::timeout(Duration::from_millis(10), self.outstanding_room.notified())
                    .await;
        }
    }

    /// One request of a connection answered (or dropped unanswered).
    pub fn request_done(&self, mine: &AtomicUsize) {
        mine.fetch_sub(1, Ordering::AcqRel);
        let before = self.stats.outstanding.fetch_sub(1, Ordering::AcqRel);
        // Only the decrement that crosses below the limit wakes the waiting readers: waking
        // them on every answer above it had every throttled connection re-check per request.
        if before == u64::from(self.config.global_outstanding_limit) {
            self.outstanding_room.notify_waiters();
        }
    }

    pub fn note_rejected_connection(&self, remote: SocketAddr, limit: u32) {
        self.stats
            .rejected_connections
            .fetch_add(1, Ordering::Relaxed);
        if let Some(n) = self.stats.rejections_log.event(self.uptime_ms()) {
            warn!(%remote, "too many connections from {} - max is {limit} ({n} refused since the last such line)", remote.ip());
        }
    }

    pub fn note_handshake_timeout(&self, remote: SocketAddr) {
        self.stats
            .handshake_timeouts
            .fetch_add(1, Ordering::Relaxed);
        if let Some(n) = self.stats.handshake_timeouts_log.event(self.uptime_ms()) {
            let bound = self.config.handshake_timeout().as_millis();
            warn!(%remote, "no handshake within {bound} ms; closing the connection ({n} such since the last such line)");
        }
    }

    /// What ZooKeeper would log about quotas, at most one line per interval: soft limits
    /// exist to be exceeded, and a line per write would flood the log.
    fn log_quota_warnings(&self, warnings: &[corral_tree::QuotaWarning]) {
        for w in warnings {
            let text = w.to_string();
            let kind: String = text.chars().filter(|c| !c.is_ascii_digit()).collect();
            let throttle = {
                let mut map = self
                    .stats
                    .quota_warnings_log
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                Arc::clone(map.entry(kind).or_default())
            };
            match throttle.event(self.uptime_ms()) {
                Some(1) => warn!("{text}"),
                Some(n) => warn!("{text} ({n} such warnings since the last one logged)"),
                None => {}
            }
        }
    }

    fn uptime_ms(&self) -> u64 {
        (self.started.elapsed().as_millis() as u64).max(1)
    }

    /// True while the log cannot take client writes (disk full); reads go on.
    pub fn writes_blocked(&self) -> bool {
        self.consensus.get().is_some_and(|c| c.writes_blocked())
    }

    /// Stops the keeper: no new connections, every connection closed after what it already
    /// took in is answered, every task finished (up to `grace`), then consensus stopped (the
    /// log flushed) and the data directory unlocked. Idempotent.
    pub async fn shutdown(&self, grace: Duration) {
        self.shutdown.cancel();
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait())
            .await
            .is_err()
        {
            warn!(
                tasks = self.tasks.len(),
                "keeper tasks still running {} ms after shutdown began; stopping anyway",
                grace.as_millis()
            );
        }
        if let Some(c) = self.consensus.get() {
            if tokio::time::timeout(grace, c.shutdown()).await.is_err() {
                warn!("consensus did not stop within {} ms", grace.as_millis());
            }
        }
        drop(
            self.data_lock
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        );
    }

    /// Resolves when shutdown has begun (for the connection tasks).
    pub fn shutting_down(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.shutdown.cancelled()
    }
}

/// The state machine side: applies committed entries to the tree and fans the resulting
/// triggers out as watch events to this keeper's connections.
struct Hook(Arc<Keeper>);

impl StateMachineHook for Hook {
    fn apply(&self, zxid: i64, entry: &Entry) -> ApplyResult {
        let mut st = self.0.state();
        let res = st.tree.apply(zxid, entry);
        self.0
            .last_zxid
            .store(st.tree.last_zxid(), Ordering::Release);
        let now = Instant::now();
        match &entry.op {
            EntryOp::CreateSession {
                session_id,
                timeout_ms,
                ..
            } => {
                st.sessions.track(
                    *session_id,
                    Duration::from_millis((*timeout_ms).max(0) as u64),
                    now,
                );
            }
            EntryOp::CloseSession { session_id, reason } => {
                // A session closed by anyone but its own client has expired.
                let expired = entry.session_id != *session_id;
                st.sessions.bury(
                    *session_id,
                    reason,
                    expired,
                    res.deleted_ephemerals.clone(),
                    now,
                );
                // An expired session also loses its connection; the client's own close is
                // answered first by the connection.
                if expired {
                    if let Some(conn) = st.session_conn.remove(session_id) {
                        if let Some(c) = st.conns.get(&conn) {
                            c.out.close("session expired");
                        }
                    }
                }
            }
            _ => {}
        }
        let State { watches, conns, .. } = &mut *st;
        for trigger in &res.triggers {
            let targets = watches.fire(trigger.event, &trigger.path);
            if targets.is_empty() {
                continue;
            }
            let body = event_frame(trigger.event, &trigger.path);
            for conn in targets {
                if let Some(c) = conns.get_mut(&conn) {
                    c.packets_sent += 1;
                    if c.out.push(body.clone()) == Pushed::Overflowed {
                        // The writer closes it; its watches go with the connection.
                        warn!(
                            remote = %c.remote,
                            session = format!("0x{:x}", c.session_id),
                            queued_bytes = c.out.queued_bytes(),
                            "watch events are piling up unread; closing the connection"
                        );
                    }
                }
            }
        }
        drop(st);
        // Logged outside the lock; entries replayed at start-up said theirs when first applied.
        if self.0.consensus.get().is_some() {
            self.0.log_quota_warnings(&res.quota_warnings);
        }
        res
    }

    fn last_applied(&self) -> i64 {
        self.0.last_zxid()
    }

    /// The tree is built on persistent maps, so this clone is O(1) and the lock is held only
    /// for that; the encoding runs later on a blocking thread while applies continue.
    fn snapshot(&self) -> Option<crate::consensus::SnapshotEncoder> {
        let view = self.0.state().tree.clone();
        Some(std::sync::Arc::new(move |scratch, sink| {
            view.write_snapshot_in(SNAPSHOT_CHUNK_BYTES, scratch, sink)
        }))
    }

    fn restore(&self, _zxid: i64, bytes: &[u8]) -> Result<(), crate::consensus::RestoreError> {
        let mut tree = crate::restore::decode_snapshot(bytes)?;
        // Settings come from this run's configuration, not from the one that wrote the snapshot.
        let config = self.0.state().tree.config().clone();
        tree.set_config(config);
        let mut st = self.0.state();
        self.0.last_zxid.store(tree.last_zxid(), Ordering::Release);
        st.tree = tree;
        Ok(())
    }
}

/// Builds a notification frame body for one event. Its header carries zxid -1, as
/// ZooKeeper 3.8 sends it (3.9 sends the zxid of the change).
pub fn event_frame(event: EventType, path: &str) -> Vec<u8> {
    notification_body(
        -1,
        &WatcherEvent {
            event_type: event.code(),
            state: KeeperState::SyncConnected.code(),
            path: path.to_string(),
        },
    )
}
