//! The keeper's configuration: ZooKeeper's own `zoo.cfg` keys, so an existing deployment switches
//! by changing the binary.
//!
//! Owns: reading a `zoo.cfg` (Java properties syntax), validating every value (a wrong value stops
//! start-up with an error naming the key and the value), the embedded default used by
//! `corral serve` with no file, the four-letter-word whitelist, and session-timeout negotiation.
//! Input comes from a file (or text, in the tests); the output is a plain [`Config`] plus warnings
//! for keys corral ignores. The only I/O is in [`load`] (the file itself, `myid`, host-name
//! resolution).
//!
//! ZooKeeper semantics kept on purpose:
//! - keys ZooKeeper's config parser does not know are turned into system properties named
//!   `zookeeper.<key>`; that is how `4lw.commands.whitelist`, `forceSync`, `snapCount`,
//!   `extendedTypesEnabled`, `admin.*` work in a `zoo.cfg`, and corral reads them the same
//!   way (JVM `-D` flags themselves have no counterpart: `corral serve` takes a file);
//! - with a file, tickTime defaults to 3000 ms and clientPortAddress to all interfaces; the
//!   embedded default (no file) is 2000 ms on 127.0.0.1;
//! - the last occurrence of a repeated key wins (java.util.Properties does that).
//!
//! This file holds the [`Config`] the rest of the keeper reads, its embedded default and the
//! accessors built on it; it must never parse text. The parts, in the order a file goes through
//! them: `file` ([`load`]: the file, `myid`, the checks across keys) -> `properties` (syntax) ->
//! `keys` (what each key sets) -> `values` and `servers` (one value's syntax); beside them,
//! `security` (keys asking for protection corral lacks) and `whitelist` (four-letter words).

mod file;
mod keys;
mod properties;
mod security;
mod servers;
mod values;
mod whitelist;

#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use corral_proto::frame::DEFAULT_MAX_FRAME;

pub use file::load;
#[cfg(test)]
use file::parse;
pub use security::UnenforcedKey;
pub use servers::{ServerEntry, ServerRole};
pub use whitelist::FourLetterWhitelist;
pub(crate) use whitelist::FOUR_LETTER_WORDS;

/// ZooKeeper's `DEFAULT_TICK_TIME`, used when a config file does not set tickTime (Kafka's bundled
/// `zookeeper.properties` relies on it).
const FILE_DEFAULT_TICK_MS: u32 = 3000;
/// The embedded default matches zoo_sample.cfg, which is what people run by hand.
const EMBEDDED_TICK_MS: u32 = 2000;
/// ZooKeeper resets smaller retain counts to this and logs a warning.
const MIN_SNAP_RETAIN: u32 = 3;
/// ZooKeeper's `globalOutstandingLimit` when unset, and what it falls back to below 1.
const DEFAULT_GLOBAL_OUTSTANDING_LIMIT: u32 = 1000;

/// Everything the keeper reads from its configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub tick_time_ms: u32,
    /// Relative paths stay relative: they resolve against the process's working directory, as
    /// ZooKeeper's do.
    pub data_dir: PathBuf,
    /// Where the write-ahead log goes; `None` = inside `data_dir`.
    pub data_log_dir: Option<PathBuf>,
    /// 0 lets the OS pick a free port (a corral extension used by tests).
    pub client_port: u16,
    pub client_port_address: IpAddr,
    pub min_session_timeout_ms: u32,
    pub max_session_timeout_ms: u32,
    /// Connections per client IP; 0 = unlimited.
    pub max_client_cnxns: u32,
    pub four_letter_whitelist: FourLetterWhitelist,
    /// `jute.maxbuffer`: the largest frame a connection accepts; by default
    /// [`DEFAULT_MAX_FRAME`], ZooKeeper's 0xfffff bytes.
    pub jute_max_buffer: usize,
    pub extended_types_enabled: bool,
    /// `user:base64(sha1(user:password))`, the digest id that is granted every permission.
    pub super_digest: Option<String>,
    pub snap_count: u64,
    /// `zookeeper.snapshotSizeFactor` (`snapshotSizeFactor` in zoo.cfg): an ensemble leader
    /// serves a lagging member from its log while the log it would send stays under this
    /// fraction of its newest snapshot's size, and sends the snapshot beyond that. Negative:
    /// only the small floor of recent log is served. ZooKeeper's default 0.33.
    pub snapshot_size_factor: f64,
    pub autopurge_snap_retain_count: u32,
    /// Hours between extra purge passes (0: none). Unlike ZooKeeper, where 0 disables purging
    /// altogether, snapshots and log beyond `autopurge_snap_retain_count` are also purged after
    /// every snapshot, so the data dir stays bounded whatever this says.
    pub autopurge_purge_interval_hours: u32,
    pub force_sync: bool,
    /// `fsync.warningthresholdms`: a log fsync slower than this is logged (default 1000).
    pub fsync_warning_threshold_ms: u64,
    /// `snapshot.maxWriteMBps` (corral's own key): snapshots are written at no more than this
    /// many MB (10^6 bytes) per second, so the log's fsyncs do not queue behind them; 0 lifts
    /// the limit. Default 100: a 200 MB snapshot (1M znodes) then takes 2 s.
    pub snapshot_max_write_mbps: u64,
    pub reconfig_enabled: bool,
    /// `zookeeper.enforceQuota` (`enforceQuota` in zoo.cfg): writes over a quota's hard limit
    /// are refused with QuotaExceeded.
    pub enforce_quota: bool,
    pub standalone_enabled: bool,
    /// `server.N` lines, sorted by id.
    pub servers: Vec<ServerEntry>,
    /// This server's id: from `<dataDir>/myid` (read by [`load`]), or the single server's id.
    pub server_id: Option<u64>,
    pub admin_enable_server: bool,
    pub admin_server_port: u16,
    /// Unlike ZooKeeper (all addresses), loopback unless set: the admin server has no
    /// authentication.
    pub admin_server_address: IpAddr,
    /// `admin.enableServer=true` or `admin.serverPort` was written: the operator asked for
    /// the admin server, so failing to bind it stops start-up (else it is a warning).
    pub admin_server_explicit: bool,
    pub config_path: Option<PathBuf>,
    /// Keys that ask for protection corral does not give yet (TLS, SASL, enforced auth):
    /// start-up refuses them unless [`Config::allow_unenforced_security`].
    pub unenforced_security: Vec<UnenforcedKey>,
    /// `globalOutstandingLimit`: above this many requests taken in and not answered, a
    /// connection that already has requests outstanding is not read (ZooKeeper's default
    /// 1000).
    pub global_outstanding_limit: u32,
    /// `nio.sessionlessCnxnTimeout` (ms): a connection must complete its handshake (or its
    /// four-letter word) within this, or it is closed (ZooKeeper's default 10 s).
    pub handshake_timeout_ms: u32,
    /// `clientPortListenBacklog`: the listening socket's backlog; unset, 4096 (the kernel
    /// caps it at net.core.somaxconn). ZooKeeper's unset value is Java's 50, which a burst of
    /// connections overflows: a dropped SYN costs the client a second before it retries.
    pub client_port_listen_backlog: Option<u32>,
    /// `corral.allowUnenforcedSecurity=true`, or `corral serve --allow-unenforced-security`:
    /// start anyway, with a warning naming each key.
    pub allow_unenforced_security: bool,
    /// `readonlymode.enabled`: an ensemble member cut off from the quorum serves reads to
    /// clients that ask for a read-only session.
    pub read_only_mode: bool,
    /// `syncLimit` (ticks): a follower this long without hearing from the leader gives up on
    /// it. Bounds the raft election timeout.
    pub sync_limit: u32,
    /// `corral.raft.heartbeatMs`: how often the leader heartbeats; unset, tickTime / 8.
    pub raft_heartbeat_ms: Option<u32>,
    /// `corral.raft.electionTimeoutMs`: a follower that hears no leader for a random time
    /// between this and twice this starts an election; unset, tickTime / 2.
    pub raft_election_timeout_ms: Option<u32>,
    /// `corral.obituaries`: how many obituaries (why each session ended) are kept, the
    /// latest; replicated, so every member should set the same. Default 1000.
    pub obituaries_kept: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value in the file that corral cannot accept.
    #[error("{path}:{line}: {key}: {msg}")]
    BadValue {
        path: String,
        line: usize,
        key: String,
        msg: String,
    },
    /// A problem that is not one line's fault: a missing required key, or keys that disagree.
    #[error("{path}: {key}: {msg}")]
    Invalid {
        path: String,
        key: String,
        msg: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl Config {
    /// `corral serve` with no file: the defaults, with the read-only diagnostic words
    /// (`mntr`, `conf`, `cons`, `obit`, ...) allowed, so `corral doctor` works out of the box.
    /// That is safe only because this keeper listens on loopback; a zoo.cfg keeps
    /// ZooKeeper's default of `srvr` alone.
    pub fn embedded() -> Self {
        Config {
            four_letter_whitelist: FourLetterWhitelist::diagnostics(),
            ..Config::default()
        }
    }
}

impl Default for Config {
    /// The base every zoo.cfg starts from: standalone on 127.0.0.1:2181, data in
    /// ./corral-data, ZooKeeper's `srvr`-only whitelist.
    fn default() -> Self {
        Config {
            tick_time_ms: EMBEDDED_TICK_MS,
            data_dir: PathBuf::from("./corral-data"),
            data_log_dir: None,
            client_port: 2181,
            client_port_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            min_session_timeout_ms: 2 * EMBEDDED_TICK_MS,
            max_session_timeout_ms: 20 * EMBEDDED_TICK_MS,
            max_client_cnxns: 60,
            four_letter_whitelist: FourLetterWhitelist::default(),
            jute_max_buffer: DEFAULT_MAX_FRAME,
            extended_types_enabled: false,
            super_digest: None,
            snap_count: 100_000,
            snapshot_size_factor: 0.33,
            autopurge_snap_retain_count: MIN_SNAP_RETAIN,
            autopurge_purge_interval_hours: 0,
            force_sync: true,
            fsync_warning_threshold_ms: 1000,
            snapshot_max_write_mbps: 100,
            reconfig_enabled: false,
            enforce_quota: false,
            standalone_enabled: true,
            servers: Vec::new(),
            server_id: None,
            admin_enable_server: true,
            admin_server_port: 8080,
            admin_server_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            admin_server_explicit: false,
            config_path: None,
            unenforced_security: Vec::new(),
            global_outstanding_limit: DEFAULT_GLOBAL_OUTSTANDING_LIMIT,
            handshake_timeout_ms: 10_000,
            client_port_listen_backlog: None,
            allow_unenforced_security: false,
            sync_limit: 5,
            read_only_mode: false,
            raft_heartbeat_ms: None,
            obituaries_kept: corral_tree::obituary::OBITUARIES_KEPT_DEFAULT,
            raft_election_timeout_ms: None,
        }
    }
}

impl Config {
    /// Clamps a client's requested session timeout into [minSessionTimeout, maxSessionTimeout];
    /// the result is what the ConnectResponse carries.
    pub(crate) fn negotiate_timeout(&self, requested_ms: i32) -> i32 {
        let min = i32::try_from(self.min_session_timeout_ms).unwrap_or(i32::MAX);
        let max = i32::try_from(self.max_session_timeout_ms).unwrap_or(i32::MAX);
        requested_ms.clamp(min, max.max(min))
    }

    /// ZooKeeper runs as an ensemble when standalone mode is disabled or there is more than one
    /// voting member; a single `server.1` line (what kazoo's harness writes) is standalone.
    pub(crate) fn is_distributed(&self) -> bool {
        let voters = self
            .servers
            .iter()
            .filter(|s| s.role == ServerRole::Participant)
            .count();
        !self.servers.is_empty() && (!self.standalone_enabled || voters > 1)
    }

    /// The `conf` four-letter word's lines, in ZooKeeper's order. The sizes are the bytes of
    /// snapshot and log files, measured by the caller.
    pub(crate) fn conf_lines(
        &self,
        data_dir_size: u64,
        data_log_size: u64,
    ) -> Vec<(String, String)> {
        let absolute = |p: &Path| match std::env::current_dir() {
            Ok(cwd) if p.is_relative() => cwd.join(p).display().to_string(),
            _ => p.display().to_string(),
        };
        let data_dir = absolute(&self.data_dir);
        let log_dir = self
            .data_log_dir
            .as_deref()
            .map(absolute)
            .unwrap_or_else(|| data_dir.clone());
        vec![
            ("clientPort".into(), self.client_port.to_string()),
            // corral has no TLS port; ZooKeeper prints -1 for "none".
            ("secureClientPort".into(), "-1".into()),
            ("dataDir".into(), data_dir),
            ("dataDirSize".into(), data_dir_size.to_string()),
            ("dataLogDir".into(), log_dir),
            ("dataLogSize".into(), data_log_size.to_string()),
            ("tickTime".into(), self.tick_time_ms.to_string()),
            ("maxClientCnxns".into(), self.max_client_cnxns.to_string()),
            (
                "minSessionTimeout".into(),
                self.min_session_timeout_ms.to_string(),
            ),
            (
                "maxSessionTimeout".into(),
                self.max_session_timeout_ms.to_string(),
            ),
            (
                "clientPortListenBacklog".into(),
                self.client_port_listen_backlog
                    .map_or_else(|| "-1".to_string(), |n| n.to_string()),
            ),
            // ZooKeeper reports 0 for a standalone server.
            (
                "serverId".into(),
                if self.is_distributed() {
                    self.server_id.unwrap_or(0)
                } else {
                    0
                }
                .to_string(),
            ),
        ]
    }

    /// The raft timing of an ensemble member: (heartbeat, election timeout min, max) in ms.
    ///
    /// ZooKeeper's followers wait syncLimit ticks (10 s by default) before giving up on a
    /// silent leader, and notice a dead one sooner only because its TCP connections break;
    /// corral notices a dead leader's process the same way (see the quorum port's handling),
    /// so these only bound how long a silent or cut-off leader is waited for. openraft 0.9
    /// waits for a follower's answer to an append (its fsync included) no longer than the
    /// heartbeat interval, and a follower's core does not see heartbeats while its log
    /// flushes, so on a loaded machine short settings start elections that stall every
    /// write (measured: tickTime/20 and tickTime/8 gave tens of elections per minute under
    /// zkbench's write load; tickTime/4 and tickTime gave none). Defaults: a heartbeat every
    /// tickTime/8 (250 ms), elections after tickTime/2 to twice that (1-2 s). Never longer
    /// than syncLimit ticks.
    pub(crate) fn raft_timing(&self) -> (u64, u64, u64) {
        let tick = u64::from(self.tick_time_ms);
        let limit = (tick * u64::from(self.sync_limit.max(1))).max(20);
        let election = self
            .raft_election_timeout_ms
            .map_or(tick / 2, u64::from)
            .clamp(20, limit);
        let heartbeat = self
            .raft_heartbeat_ms
            .map_or(tick / 8, u64::from)
            .clamp(5, election / 2);
        (heartbeat, election, election * 2)
    }

    /// How long a connection may take to complete its handshake.
    pub(crate) fn handshake_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(u64::from(self.handshake_timeout_ms))
    }
}
