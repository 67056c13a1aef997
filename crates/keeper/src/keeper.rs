//! The keeper: the composition root. It builds the parts around one `Shared` (consensus
//! with the apply hook, the listener, the expiry loop, housekeeping), starts them in order
//! (data dir locked, port bound, state recovered, then serving) and stops them with one
//! shutdown token, waiting for every task. Must not: hold logic of its own beyond that
//! order; nothing else in the crate depends on this module.

use std::net::SocketAddr;
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::apply::Hook;
use crate::config::Config;
use crate::config::ServerRole;
use crate::consensus::{Consensus, ConsensusError, MemberConfig, StateMachineHook, StorageConfig};
use crate::housekeeping::liveness::SessionsHeard;
use crate::shared::{lock, Shared, State};
use crate::zk_import;

/// A keeper process: [`Keeper::start`] it, then [`Keeper::shutdown`] it.
pub struct Keeper {
    shared: Arc<Shared>,
}

/// Why a keeper could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    DataDirLocked(#[from] crate::storage::data_lock::DataDirLockError),
    /// ZooKeeper wrote to the data dir after corral imported it.
    #[error("{0}")]
    ZkWrittenSinceImport(#[source] zk_import::ImportError),
    #[error("cannot listen on {addr} (clientPortAddress/clientPort): {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr} (admin.serverAddress/admin.serverPort; admin.enableServer=false turns the admin server off): {source}")]
    AdminListen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot import ZooKeeper's data: {0}")]
    Import(#[from] zk_import::ImportError),
    #[error("the import of ZooKeeper's data panicked: {0}")]
    ImportPanicked(String),
    #[error("cannot recover the data: {0}")]
    Recover(#[source] ConsensusError),
    #[error("this member's id is unknown: dataDir/myid must name one of the server.N lines")]
    NoServerId,
    #[error("cannot resolve this member's quorum address {0}")]
    QuorumAddress(String),
}

impl Keeper {
    pub fn new(config: Config) -> Arc<Keeper> {
        Arc::new(Keeper {
            shared: Arc::new(Shared::new(config)),
        })
    }

    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    #[cfg(test)]
    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// The tree and the watches, locked (for tests and tools that look inside).
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state()
    }

    /// Binds the client port, starts consensus and the background tasks. Returns once the
    /// keeper is serving.
    pub async fn start(&self) -> Result<SocketAddr, StartError> {
        let addr = SocketAddr::new(
            self.shared.config.client_port_address,
            self.shared.config.client_port,
        );
        let backlog = self
            .shared
            .config
            .client_port_listen_backlog
            .unwrap_or(4096);
        #[cfg(feature = "failpoints")]
        crate::failpoints::configure_from_env();
        self.lock_data_dirs()?;
        // Bound before recovery, so a port in use is reported before a long replay.
        let listener = crate::listener::listen(addr, backlog)
            .map_err(|source| StartError::Listen { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| StartError::Listen { addr, source })?;
        let admin = self.bind_admin().await?;
        self.recover_and_run().await?;
        let accept = crate::listener::accept_loop(Arc::clone(&self.shared), listener);
        self.shared.spawn(accept);
        if let Some(admin) = admin {
            self.shared
                .spawn(crate::admin::http::serve(Arc::clone(&self.shared), admin));
        }
        self.banner(local);
        Ok(local)
    }

    /// Everything [`Keeper::start`] does but listening: the data dir locked and recovered,
    /// consensus and the background tasks running. Connections come in through
    /// [`Keeper::serve_stream`] (an in-process test's duplex pipe, say).
    pub async fn start_consensus(&self) -> Result<(), StartError> {
        self.lock_data_dirs()?;
        self.recover_and_run().await
    }

    /// The admin server's listener, if it is on. Bound with the client port, before
    /// recovery. A port in use stops start-up only when the operator asked for the server;
    /// on ZooKeeper's implicit default (8080) it is a warning, as in ZooKeeper.
    async fn bind_admin(&self) -> Result<Option<tokio::net::TcpListener>, StartError> {
        let c = &self.shared.config;
        if !c.admin_enable_server {
            return Ok(None);
        }
        let addr = SocketAddr::new(c.admin_server_address, c.admin_server_port);
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => Ok(Some(l)),
            Err(source) if c.admin_server_explicit => Err(StartError::AdminListen { addr, source }),
            Err(e) => {
                tracing::warn!(
                    %addr,
                    "admin server not started (admin.serverPort {} is taken: {e}); set \
                     admin.serverPort, or admin.enableServer=false",
                    c.admin_server_port
                );
                Ok(None)
            }
        }
    }

    fn lock_data_dirs(&self) -> Result<(), StartError> {
        let mut dirs = vec![self.shared.config.data_dir.as_path()];
        dirs.extend(self.shared.config.data_log_dir.as_deref());
        let held = crate::storage::data_lock::lock(&dirs)?;
        *lock(&self.shared.data_lock) = Some(held);
        Ok(())
    }

    /// Recovers the state, starts consensus, then the session checker and housekeeping.
    async fn recover_and_run(&self) -> Result<(), StartError> {
        let hook: Arc<dyn StateMachineHook> = Arc::new(Hook::new(Arc::clone(&self.shared)));
        let storage = self.storage_config();
        if !storage.force_sync {
            warn!("forceSync=no: the log is not fsynced; a power loss or OS crash can lose acknowledged writes");
        }
        self.import_zookeeper_data(&storage).await?;
        let recovering = Instant::now();
        // Returns once the snapshot is restored and every logged entry re-applied, so the
        // keeper (and ruok) answers only when it can serve what it acknowledged before.
        let consensus = if self.shared.config.is_distributed() {
            let members = self.member_config().await?;
            info!(
                me = members.me,
                voters = ?members.voters,
                quorum = %members.listen,
                timing_ms = ?members.timing,
                "starting as an ensemble member"
            );
            let liveness = Arc::new(SessionsHeard(Arc::clone(&self.shared)));
            Consensus::start_member(hook, storage, members, liveness)
                .await
                .map_err(StartError::Recover)?
        } else {
            Consensus::start_durable(hook, storage)
                .await
                .map_err(StartError::Recover)?
        };
        let member = consensus.role() != Some("standalone");
        let restored: Vec<(i64, i32)> = {
            let st = self.shared.state();
            info!(
                ms = recovering.elapsed().as_millis() as u64,
                zxid = format!("0x{:x}", st.tree.last_zxid()),
                nodes = st.tree.node_count(),
                sessions = st.tree.sessions().count(),
                "recovered"
            );
            st.tree
                .sessions()
                .map(|(id, s)| (*id, s.timeout_ms))
                .collect()
        };
        let _ = self.shared.consensus.set(consensus);
        {
            // Sessions restored with the state get a fresh full timeout, as ZooKeeper does
            // after a restart or a leader change.
            let now = tokio::time::Instant::now();
            let mut sessions = self.shared.sessions();
            for (id, timeout) in restored {
                sessions.track(id, Duration::from_millis(timeout.max(0) as u64), now);
            }
        }
        self.shared
            .spawn(crate::housekeeping::expiry::run(Arc::clone(&self.shared)));
        if member {
            self.shared
                .spawn(crate::housekeeping::liveness::report(Arc::clone(
                    &self.shared,
                )));
        }
        self.shared
            .spawn(crate::housekeeping::containers::run(Arc::clone(
                &self.shared,
            )));
        Ok(())
    }

    /// Serves one client connection over any byte stream, as the listener does for a socket
    /// it accepted (without its per-address admission).
    pub fn serve_stream<S>(&self, stream: S, remote: SocketAddr)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
    {
        let (rd, wr) = tokio::io::split(stream);
        self.shared.spawn(crate::connection::serve(
            Arc::clone(&self.shared),
            rd,
            wr,
            remote,
            (),
        ));
    }

    /// This member and its peers, from the `server.N` lines and `myid`.
    async fn member_config(&self) -> Result<MemberConfig, StartError> {
        let c = &self.shared.config;
        let me = c.server_id.ok_or(StartError::NoServerId)?;
        let quorum_addr = |host: &str, port: u16| {
            if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            }
        };
        let addrs = c
            .servers
            .iter()
            .map(|s| (s.id, quorum_addr(&s.host, s.quorum_port)))
            .collect();
        let voters = c
            .servers
            .iter()
            .filter(|s| s.role == ServerRole::Participant)
            .map(|s| s.id)
            .collect();
        let mine = c
            .servers
            .iter()
            .find(|s| s.id == me)
            .ok_or(StartError::NoServerId)?;
        let written = quorum_addr(&mine.host, mine.quorum_port);
        let listen = tokio::net::lookup_host(written.as_str())
            .await
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| StartError::QuorumAddress(written.clone()))?;
        Ok(MemberConfig {
            me,
            addrs,
            voters,
            listen,
            timing: c.raft_timing(),
            quorum_lost_after: Duration::from_millis(
                u64::from(c.tick_time_ms) * u64::from(c.sync_limit.max(1)),
            ),
            // The largest entry (a jute.maxbuffer request) twice over, and never under 64 MiB
            // so a catch-up batch of small entries goes in few frames.
            max_frame: (2 * c.jute_max_buffer + (1 << 20)).max(64 << 20),
        })
    }

    fn storage_config(&self) -> StorageConfig {
        let mut storage = StorageConfig::new(self.shared.config.data_dir.clone());
        storage.data_log_dir = self.shared.config.data_log_dir.clone();
        storage.force_sync = self.shared.config.force_sync;
        storage.fsync_warning =
            Duration::from_millis(self.shared.config.fsync_warning_threshold_ms);
        storage.snapshot_write_rate = match self.shared.config.snapshot_max_write_mbps {
            0 => None,
            mb => Some(mb.saturating_mul(1_000_000)),
        };
        storage.snap_count = self.shared.config.snap_count;
        storage.snapshot_size_factor = self.shared.config.snapshot_size_factor;
        storage.snap_retain_count = self.shared.config.autopurge_snap_retain_count;
        storage.purge_interval_hours = self.shared.config.autopurge_purge_interval_hours;
        storage
    }

    /// The one start-up line an operator reads to know what this keeper is running with.
    fn banner(&self, local: SocketAddr) {
        let c = &self.shared.config;
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
    async fn import_zookeeper_data(&self, storage: &StorageConfig) -> Result<(), StartError> {
        let data_dir = self.shared.config.data_dir.clone();
        let log_dir = self.shared.config.data_log_dir.clone();
        if zk_import::has_corral_data(storage) {
            return zk_import::check_zk_not_written_since_import(
                storage,
                &data_dir,
                log_dir.as_deref(),
            )
            .map_err(StartError::ZkWrittenSinceImport);
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
        .map_err(|e| StartError::ImportPanicked(e.to_string()))?;
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
            Err(e) => Err(StartError::Import(e)),
        }
    }

    /// Stops the keeper: no new connections, every connection closed after what it already
    /// took in is answered, every task finished (up to `grace`), then consensus stopped (the
    /// log flushed) and the data directory unlocked. Idempotent.
    pub async fn shutdown(&self, grace: Duration) {
        self.shared.shutdown.cancel();
        self.shared.tasks.close();
        if tokio::time::timeout(grace, self.shared.tasks.wait())
            .await
            .is_err()
        {
            warn!(
                tasks = self.shared.tasks.len(),
                "keeper tasks still running {} ms after shutdown began; stopping anyway",
                grace.as_millis()
            );
        }
        if let Some(c) = self.shared.consensus.get() {
            if tokio::time::timeout(grace, c.shutdown()).await.is_err() {
                warn!("consensus did not stop within {} ms", grace.as_millis());
            }
        }
        drop(lock(&self.shared.data_lock).take());
    }
}
