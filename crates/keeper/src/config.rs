//! The keeper's configuration: ZooKeeper's own `zoo.cfg` keys and the JVM system properties
//! operators and test harnesses pass, so an existing deployment switches by changing the binary.
//!
//! Owns: reading a `zoo.cfg` (Java properties syntax), validating every value (a wrong value stops
//! start-up with an error naming the key and the value), the embedded default used by
//! `corral serve` with no file, the four-letter-word whitelist, and session-timeout negotiation.
//! Input comes from a file or text; the output is a plain [`Config`] plus warnings for keys corral
//! ignores. The only I/O is in [`load`] (the file itself, `myid`, host-name resolution).
//!
//! ZooKeeper semantics kept on purpose:
//! - keys ZooKeeper's config parser does not know are turned into system properties named
//!   `zookeeper.<key>`; that is how `4lw.commands.whitelist`, `forceSync`, `snapCount`,
//!   `extendedTypesEnabled`, `admin.*` work in a `zoo.cfg`. We route them through
//!   [`Config::apply_system_property`] the same way;
//! - with a file, tickTime defaults to 3000 ms and clientPortAddress to all interfaces; the
//!   embedded default (no file) is 2000 ms on 127.0.0.1;
//! - the last occurrence of a repeated key wins (java.util.Properties does that).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use crate::four_letter;

/// ZooKeeper's `DEFAULT_TICK_TIME`, used when a config file does not set tickTime (Kafka's bundled
/// `zookeeper.properties` relies on it).
const FILE_DEFAULT_TICK_MS: u32 = 3000;
/// The embedded default matches zoo_sample.cfg, which is what people run by hand.
const EMBEDDED_TICK_MS: u32 = 2000;
/// `jute.maxbuffer` default: 0xfffff bytes (1 MiB - 1).
pub const DEFAULT_JUTE_MAX_BUFFER: usize = 0xfffff;
/// ZooKeeper resets smaller retain counts to this and logs a warning.
const MIN_SNAP_RETAIN: u32 = 3;

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
    pub jute_max_buffer: usize,
    pub extended_types_enabled: bool,
    /// `user:base64(sha1(user:password))`, the digest id that is granted every permission.
    pub super_digest: Option<String>,
    pub snap_count: u64,
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
    pub admin_server_address: IpAddr,
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
}

/// A configured key whose protection corral does not provide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnenforcedKey {
    pub key: String,
    /// What the key would have protected, for the message.
    pub protects: &'static str,
}

/// One `server.N=host:quorumPort:electionPort[:role][;[clientHost:]clientPort]` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerEntry {
    pub id: u64,
    /// Kept as written (a name or an address): the ensemble network resolves it when it dials.
    pub host: String,
    pub quorum_port: u16,
    pub election_port: u16,
    pub role: ServerRole,
    pub client_host: Option<String>,
    pub client_port: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerRole {
    Participant,
    Observer,
}

/// Which four-letter words may run. `srvr` is always allowed because zkServer.sh's `status`
/// depends on it; the default (ZooKeeper 3.5.3 and later) allows nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FourLetterWhitelist {
    all: bool,
    commands: BTreeSet<&'static str>,
}

impl Default for FourLetterWhitelist {
    fn default() -> Self {
        FourLetterWhitelist {
            all: false,
            commands: BTreeSet::from(["srvr"]),
        }
    }
}

impl FourLetterWhitelist {
    /// Every command (`*`).
    pub fn all() -> Self {
        FourLetterWhitelist {
            all: true,
            commands: BTreeSet::new(),
        }
    }

    /// Parses the property's value: names separated by commas (ZooKeeper's syntax) or
    /// whitespace, `*` anywhere meaning all. Returns the unknown names so the caller can warn;
    /// they are dropped, since a command corral cannot recognise can never be asked for.
    pub fn parse(value: &str) -> (Self, Vec<String>) {
        let mut list = FourLetterWhitelist::default();
        let mut unknown = Vec::new();
        for name in value
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
        {
            if name == "*" {
                return (FourLetterWhitelist::all(), Vec::new());
            }
            match four_letter::KNOWN.iter().find(|k| **k == name) {
                Some(known) => {
                    list.commands.insert(known);
                }
                None => unknown.push(name.to_string()),
            }
        }
        (list, unknown)
    }

    pub fn allows(&self, cmd: &str) -> bool {
        self.all || cmd == "srvr" || self.commands.contains(cmd)
    }

    pub fn is_all(&self) -> bool {
        self.all
    }

    /// The allowed words as the start-up banner shows them: `*`, or a comma-separated list.
    pub fn describe(&self) -> String {
        if self.all {
            return "*".into();
        }
        let mut words: BTreeSet<&str> = self.commands.iter().copied().collect();
        words.insert("srvr");
        words.into_iter().collect::<Vec<_>>().join(",")
    }
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
    /// A bad value passed as a system property (`-Dkey=value` on ZooKeeper's command line).
    #[error("system property {key}: {msg}")]
    BadProperty { key: String, msg: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl Default for Config {
    /// `corral serve` with no file: standalone on 127.0.0.1:2181, data in ./corral-data.
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
            jute_max_buffer: DEFAULT_JUTE_MAX_BUFFER,
            extended_types_enabled: false,
            super_digest: None,
            snap_count: 100_000,
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
            admin_server_address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            config_path: None,
            unenforced_security: Vec::new(),
            global_outstanding_limit: 1000,
            handshake_timeout_ms: 10_000,
            client_port_listen_backlog: None,
            allow_unenforced_security: false,
        }
    }
}

/// Keys ZooKeeper's config parser understands that corral accepts but does not act on (yet).
const NOT_USED: &[&str] = &[
    "initLimit",
    "syncLimit",
    "connectToLearnerMasterLimit",
    "electionAlg",
    "electionPortBindRetry",
    "quorumListenOnAllIPs",
    "peerType",
    "syncEnabled",
    "dynamicConfigFile",
    "localSessionsEnabled",
    "localSessionsUpgradingEnabled",
    "observerMasterPort",
    "sslQuorumReloadCertFiles",
    "serverCnxnFactory",
    "preAllocSize",
    "maxCnxns",
    "snapSizeLimitInKb",
    "txnLogSizeLimitInKb",
    "commitLogCount",
    "skipACL",
    "audit.enable",
    "quorum.cnxn.threads.size",
    "admin.idleTimeout",
    "admin.commandURL",
    "admin.portUnification",
    "digest.enabled",
    "snapshot.trust.empty",
    "maxResponseCacheSize",
    "maxGetChildrenResponseCacheSize",
    "serializeLastProcessedZxid.enabled",
];

/// Key prefixes in the same situation (families of TLS, SASL, metrics and throttling settings).
const NOT_USED_PREFIXES: &[&str] = &[
    "metricsProvider.",
    "quorum.auth.",
    "multiAddress.",
    "jvm.pause.",
    "group.",
    "weight.",
    "client.",
    "connection_throttle_",
    "learner.",
    "leader.",
    "zookeeper.",
    "netty.",
    "sasl",
];

/// What the parse of the file leaves for the final checks that need every key.
#[derive(Default)]
struct Pending {
    path: String,
    tick_set: bool,
    /// -1 (ZooKeeper's "use the default") is stored as None.
    min_timeout: Option<u32>,
    max_timeout: Option<u32>,
    client_port_set: bool,
    client_address_set: bool,
    data_dir_set: bool,
}

/// Parses the text of a `zoo.cfg`. `origin` names the file in messages and in the result. Does
/// not read `myid` (see [`load`]).
pub fn parse(text: &str, origin: &Path) -> Result<(Config, Vec<String>), ConfigError> {
    let (mut config, pending, mut warnings) = parse_lines(text, origin)?;
    finish(&mut config, &pending, &mut warnings)?;
    Ok((config, warnings))
}

/// Reads and parses a `zoo.cfg`; for an ensemble, also reads this server's id from
/// `<dataDir>/myid`, as ZooKeeper does.
pub fn load(path: &Path) -> Result<(Config, Vec<String>), ConfigError> {
    let io = |source| ConfigError::Io {
        path: path.display().to_string(),
        source,
    };
    let text = std::fs::read_to_string(path).map_err(io)?;
    let (mut config, pending, mut warnings) = parse_lines(&text, path)?;
    if config.servers.len() > 1 {
        // Refused before myid is needed: the operator must learn this first.
        let members: Vec<String> = config
            .servers
            .iter()
            .map(|s| format!("server.{}", s.id))
            .collect();
        return Err(ConfigError::Invalid {
            path: pending.path.clone(),
            key: members.join(", "),
            msg: format!(
                "{} ensemble members are configured, but corral does not replicate yet: each \
                 member would run alone with its own data, a split brain. Keep only this \
                 server's server.N line to run it standalone",
                members.len()
            ),
        });
    }
    if config.is_distributed() {
        // One member with standaloneEnabled=false: a quorum of one, which is standalone;
        // its id comes from myid, as ZooKeeper reads it.
        let myid_path = config.data_dir.join("myid");
        let myid = std::fs::read_to_string(&myid_path).map_err(|source| ConfigError::Io {
            path: myid_path.display().to_string(),
            source,
        })?;
        let id = myid
            .trim()
            .parse::<u64>()
            .map_err(|_| ConfigError::Invalid {
                path: myid_path.display().to_string(),
                key: "myid".into(),
                msg: format!("{:?} is not a server id", myid.trim()),
            })?;
        if !config.servers.iter().any(|s| s.id == id) {
            return Err(ConfigError::Invalid {
                path: pending.path.clone(),
                key: format!("server.{id}"),
                msg: format!("myid is {id} but there is no server.{id} line"),
            });
        }
        config.server_id = Some(id);
    }
    finish(&mut config, &pending, &mut warnings)?;
    Ok((config, warnings))
}

fn parse_lines(text: &str, origin: &Path) -> Result<(Config, Pending, Vec<String>), ConfigError> {
    let mut config = Config {
        tick_time_ms: FILE_DEFAULT_TICK_MS,
        client_port_address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        config_path: Some(origin.to_path_buf()),
        ..Config::default()
    };
    let mut pending = Pending {
        path: origin.display().to_string(),
        ..Pending::default()
    };
    let mut warnings = Vec::new();
    for (line, key, value) in properties(text) {
        // ZooKeeper trims both sides of every key and value.
        let value = value.trim().to_string();
        match config.set_file_key(&key, &value, &mut pending) {
            Ok(Some(w)) => warnings.push(format!("{}:{line}: {w}", pending.path)),
            Ok(None) => {}
            Err(msg) => {
                return Err(ConfigError::BadValue {
                    path: pending.path.clone(),
                    line,
                    key,
                    msg,
                })
            }
        }
    }
    Ok((config, pending, warnings))
}

/// The checks and defaults that depend on several keys.
fn finish(
    config: &mut Config,
    pending: &Pending,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let invalid = |key: &str, msg: String| ConfigError::Invalid {
        path: pending.path.clone(),
        key: key.into(),
        msg,
    };
    if !pending.data_dir_set {
        // ZooKeeper refuses to start without it; so do we, rather than write into the cwd.
        return Err(invalid(
            "dataDir",
            "not set (ZooKeeper requires it too)".into(),
        ));
    }
    if !pending.tick_set {
        warnings.push(format!(
            "{}: tickTime not set; using ZooKeeper's default of {FILE_DEFAULT_TICK_MS} ms",
            pending.path
        ));
    }
    let tick = u64::from(config.tick_time_ms);
    let default_max = 20 * tick;
    if default_max > i32::MAX as u64 && pending.max_timeout.is_none() {
        return Err(invalid(
            "tickTime",
            format!("{tick} is too large: 20 ticks must fit a session timeout"),
        ));
    }
    // Both fit in i32 here (each explicit value was range-checked, and 2*tick <= 20*tick).
    config.min_session_timeout_ms = pending.min_timeout.unwrap_or((2 * tick) as u32);
    config.max_session_timeout_ms = pending.max_timeout.unwrap_or(default_max as u32);
    if config.min_session_timeout_ms > config.max_session_timeout_ms {
        return Err(invalid(
            "minSessionTimeout",
            format!(
                "minSessionTimeout ({} ms) must not be larger than maxSessionTimeout ({} ms)",
                config.min_session_timeout_ms, config.max_session_timeout_ms
            ),
        ));
    }

    config.servers.sort_by_key(|s| s.id);
    if config.server_id.is_none() && config.servers.len() == 1 {
        config.server_id = config.servers.first().map(|s| s.id);
    }
    let own = config
        .server_id
        .and_then(|id| config.servers.iter().find(|s| s.id == id))
        .cloned();
    match own.as_ref().and_then(|s| s.client_port.map(|p| (p, s))) {
        Some((port, entry)) if !pending.client_port_set => {
            // The `;host:port` suffix of this server's line gives the client port (ZooKeeper's
            // dynamic-configuration style); its host, if any, is where to listen.
            config.client_port = port;
            if !pending.client_address_set {
                if let Some(host) = &entry.client_host {
                    config.client_port_address = resolve(host)
                        .map_err(|msg| invalid(&format!("server.{}", entry.id), msg))?;
                }
            }
        }
        Some((port, entry)) if port != config.client_port => warnings.push(format!(
            "{}: clientPort={} differs from the client port {port} in server.{}; using clientPort",
            pending.path, config.client_port, entry.id
        )),
        _ => {}
    }
    if !pending.client_port_set && own.as_ref().and_then(|s| s.client_port).is_none() {
        return Err(invalid(
            "clientPort",
            "not set, and no server.N line gives a client port".into(),
        ));
    }
    Ok(())
}

impl Config {
    /// Clamps a client's requested session timeout into [minSessionTimeout, maxSessionTimeout];
    /// the result is what the ConnectResponse carries.
    pub fn negotiate_timeout(&self, requested_ms: i32) -> i32 {
        let min = i32::try_from(self.min_session_timeout_ms).unwrap_or(i32::MAX);
        let max = i32::try_from(self.max_session_timeout_ms).unwrap_or(i32::MAX);
        requested_ms.clamp(min, max.max(min))
    }

    /// ZooKeeper runs as an ensemble when standalone mode is disabled or there is more than one
    /// voting member; a single `server.1` line (what kazoo's harness writes) is standalone.
    pub fn is_distributed(&self) -> bool {
        let voters = self
            .servers
            .iter()
            .filter(|s| s.role == ServerRole::Participant)
            .count();
        !self.servers.is_empty() && (!self.standalone_enabled || voters > 1)
    }

    /// The `conf` four-letter word's lines, in ZooKeeper's order. The sizes are the bytes of
    /// snapshot and log files, measured by the caller.
    pub fn conf_lines(&self, data_dir_size: u64, data_log_size: u64) -> Vec<(String, String)> {
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

    /// Applies one JVM system property as ZooKeeper would read it (`-Dkey=value`). Returns
    /// warnings (ignored or unknown properties); a bad value is an error naming the property.
    pub fn apply_system_property(
        &mut self,
        key: &str,
        value: &str,
    ) -> Result<Vec<String>, ConfigError> {
        let mut warnings = Vec::new();
        match self.set_property(key, value.trim(), false) {
            Ok(Some(w)) => warnings.push(w),
            Ok(None) => {}
            Err(msg) => {
                return Err(ConfigError::BadProperty {
                    key: key.into(),
                    msg,
                })
            }
        }
        Ok(warnings)
    }

    /// One key of the file. Ok(Some(w)) = accepted with a warning; Err(msg) = bad value.
    fn set_file_key(
        &mut self,
        key: &str,
        value: &str,
        pending: &mut Pending,
    ) -> Result<Option<String>, String> {
        match key {
            "tickTime" => {
                let tick = int(value)?;
                if tick <= 0 {
                    return Err(format!(
                        "{value:?} must be a positive number of milliseconds"
                    ));
                }
                self.tick_time_ms = tick as u32;
                pending.tick_set = true;
            }
            "dataDir" | "dataLogDir" => {
                if value.is_empty() {
                    return Err("empty path".into());
                }
                let path = PathBuf::from(value);
                if key == "dataDir" {
                    self.data_dir = path;
                    pending.data_dir_set = true;
                } else {
                    self.data_log_dir = Some(path);
                }
                if !value.starts_with('/') && !value.starts_with("./") && !value.starts_with("../")
                {
                    return Ok(Some(format!(
                        "{key}={value} is relative to the working directory; write ./{value} to say so"
                    )));
                }
            }
            "snapshot.maxWriteMBps" => {
                let n = int(value)?;
                if n < 0 {
                    return Err(format!(
                        "{value:?} must not be negative (0 writes snapshots unthrottled)"
                    ));
                }
                self.snapshot_max_write_mbps = n as u64;
            }
            "clientPort" => {
                self.client_port = port(value)?;
                pending.client_port_set = true;
            }
            "clientPortAddress" => {
                self.client_port_address = resolve(value)?;
                pending.client_address_set = true;
            }
            "minSessionTimeout" => pending.min_timeout = session_timeout(value)?,
            "maxSessionTimeout" => pending.max_timeout = session_timeout(value)?,
            "maxClientCnxns" => self.max_client_cnxns = non_negative(value)?,
            "clientPortListenBacklog" => {
                let n = int(value)?;
                // ZooKeeper takes -1 (or any value below 1) for "the default".
                self.client_port_listen_backlog = (n > 0).then_some(n as u32);
            }
            "autopurge.snapRetainCount" => {
                let n: u32 = non_negative(value)?;
                if n < MIN_SNAP_RETAIN {
                    // ZooKeeper resets it rather than failing; keeping that lets old files load.
                    self.autopurge_snap_retain_count = MIN_SNAP_RETAIN;
                    return Ok(Some(format!(
                        "{key}={n} is below the minimum; using {MIN_SNAP_RETAIN}"
                    )));
                }
                self.autopurge_snap_retain_count = n;
            }
            "autopurge.purgeInterval" => self.autopurge_purge_interval_hours = non_negative(value)?,
            "standaloneEnabled" => self.standalone_enabled = strict_bool(value)?,
            "reconfigEnabled" => self.reconfig_enabled = strict_bool(value)?,
            _ if key.starts_with("server.") => {
                let id = key["server.".len()..]
                    .parse::<u64>()
                    .map_err(|_| format!("{:?} is not a server id", &key["server.".len()..]))?;
                let entry = parse_server(id, value)?;
                // A repeated server.N replaces the earlier one, as a repeated property does.
                self.servers.retain(|s| s.id != id);
                self.servers.push(entry);
            }
            "corral.allowUnenforcedSecurity" => {
                self.allow_unenforced_security = strict_bool(value)?
            }
            _ if unenforced_protection(key, value).is_some() => {
                if let Some(protects) = unenforced_protection(key, value) {
                    self.unenforced_security.retain(|u| u.key != key);
                    self.unenforced_security.push(UnenforcedKey {
                        key: key.to_string(),
                        protects,
                    });
                }
            }
            _ if NOT_USED.contains(&key)
                || NOT_USED_PREFIXES.iter().any(|p| key.starts_with(p)) =>
            {
                return Ok(Some(format!(
                    "{key} is a ZooKeeper setting not used by corral; ignored"
                )));
            }
            // What ZooKeeper does with any other key: it becomes the system property
            // "zookeeper.<key>".
            _ => return self.set_property(&format!("zookeeper.{key}"), value, true),
        }
        Ok(None)
    }

    /// A system property, from `-D` (`from_file` false) or from a zoo.cfg key ZooKeeper turns
    /// into `zookeeper.<key>` (`from_file` true).
    fn set_property(
        &mut self,
        key: &str,
        value: &str,
        from_file: bool,
    ) -> Result<Option<String>, String> {
        // In messages about a file line, use the key as written in the file.
        let shown = if from_file {
            key.strip_prefix("zookeeper.").unwrap_or(key)
        } else {
            key
        };
        match key {
            "zookeeper.4lw.commands.whitelist" => {
                let (list, unknown) = FourLetterWhitelist::parse(value);
                self.four_letter_whitelist = list;
                if !unknown.is_empty() {
                    return Ok(Some(format!(
                        "{shown}: ignoring unknown four-letter words {}",
                        unknown.join(", ")
                    )));
                }
            }
            "jute.maxbuffer" | "zookeeper.jute.maxbuffer" => {
                let n = java_decode_int(value)?;
                if n <= 0 {
                    return Err(format!("{value:?} must be a positive number of bytes"));
                }
                self.jute_max_buffer = n as usize;
                if from_file {
                    // An operator who wrote it in zoo.cfg meant it; ZooKeeper would silently
                    // ignore it there (it reads only the JVM property), so say what we do.
                    return Ok(Some(format!(
                        "{shown}: ZooKeeper only honours this as a JVM system property; corral applies it"
                    )));
                }
            }
            "zookeeper.extendedTypesEnabled" => self.extended_types_enabled = strict_bool(value)?,
            "zookeeper.globalOutstandingLimit" | "globalOutstandingLimit" => {
                let n = java_decode_int(value)?;
                // ZooKeeper falls back to its default for a value below 1.
                self.global_outstanding_limit = if n < 1 { 1000 } else { n as u32 };
            }
            "zookeeper.nio.sessionlessCnxnTimeout" => {
                let n = java_decode_int(value)?;
                if n <= 0 {
                    return Err(format!(
                        "{value:?} must be a positive number of milliseconds"
                    ));
                }
                self.handshake_timeout_ms = n as u32;
            }
            "zookeeper.enforceQuota" => self.enforce_quota = strict_bool(value)?,
            "zookeeper.DigestAuthenticationProvider.superDigest" => {
                let Some((user, digest)) = value.split_once(':') else {
                    return Err(format!("{value:?} is not of the form user:base64digest"));
                };
                if user.is_empty() || digest.is_empty() {
                    return Err(format!("{value:?} is not of the form user:base64digest"));
                }
                self.super_digest = Some(value.to_string());
            }
            "zookeeper.snapCount" => {
                let n = java_decode_int(value)?;
                if n < 0 {
                    return Err(format!("{value:?} must not be negative"));
                }
                if n < 2 {
                    self.snap_count = 2;
                    return Ok(Some(format!(
                        "{shown}={n} is below 2; using 2, as ZooKeeper does"
                    )));
                }
                self.snap_count = n as u64;
            }
            "zookeeper.fsync.warningthresholdms" | "fsync.warningthresholdms" => {
                let n = java_decode_int(value)?;
                if n < 0 {
                    return Err(format!("{value:?} must not be negative"));
                }
                self.fsync_warning_threshold_ms = n as u64;
            }
            "zookeeper.forceSync" => {
                self.force_sync = match value.to_ascii_lowercase().as_str() {
                    "yes" | "true" => true,
                    "no" | "false" => false,
                    _ => return Err(format!("invalid value {value:?}: use yes or no")),
                }
            }
            "zookeeper.admin.enableServer" => self.admin_enable_server = strict_bool(value)?,
            "zookeeper.admin.serverPort" => {
                let n = java_decode_int(value)?;
                self.admin_server_port = u16::try_from(n)
                    .map_err(|_| format!("port out of range: {value:?} (0-65535)"))?;
            }
            "zookeeper.admin.serverAddress" => self.admin_server_address = resolve(value)?,
            "readonlymode.enabled" | "zookeeper.readonlymode.enabled" => {
                return Ok(Some(format!(
                    "{shown}: corral has no read-only mode; ignored"
                )));
            }
            _ => {
                return Ok(Some(if from_file {
                    format!("ignoring unknown key {shown}")
                } else {
                    format!("ignoring unknown system property {key}")
                }))
            }
        }
        Ok(None)
    }
}

/// What a security key asks for that corral does not provide yet, if it asks for anything:
/// TLS, SASL or Kerberos authentication, or refusing unauthenticated clients. The digest and
/// ip providers corral has built in ask for nothing more.
fn unenforced_protection(key: &str, value: &str) -> Option<&'static str> {
    let on = || value.trim().eq_ignore_ascii_case("true");
    match key {
        "secureClientPort" | "secureClientPortAddress" => {
            Some("TLS-encrypted client connections on a secure client port")
        }
        "portUnification" if on() => Some("TLS on the client port"),
        "sslQuorum" if on() => Some("TLS between ensemble members"),
        "requireClientAuthScheme" | "enforce.auth.schemes" => {
            Some("refusing clients that have not authenticated")
        }
        "enforce.auth.enabled" | "sessionRequireClientSASLAuth" if on() => {
            Some("refusing clients that have not authenticated")
        }
        _ if key.starts_with("ssl.") => Some("TLS (this key configures its certificates)"),
        _ if key.starts_with("kerberos.") => Some("Kerberos (SASL) authentication"),
        _ if key.starts_with("quorum.auth.") && on() => {
            Some("SASL authentication between ensemble members")
        }
        _ if key.starts_with("authProvider.") => match value.trim() {
            "org.apache.zookeeper.server.auth.DigestAuthenticationProvider"
            | "org.apache.zookeeper.server.auth.IPAuthenticationProvider" => None,
            _ => Some("client authentication through that provider (SASL, X.509 or custom)"),
        },
        _ => None,
    }
}

impl Config {
    /// How long a connection may take to complete its handshake.
    pub fn handshake_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(u64::from(self.handshake_timeout_ms))
    }

    /// Stops start-up when a key asks for protection corral does not give, unless the
    /// operator allowed it; then returns one warning per key, to be logged at every start.
    pub fn check_security(&self) -> Result<Vec<String>, ConfigError> {
        let origin = self
            .config_path
            .as_deref()
            .map_or_else(|| "configuration".to_string(), |p| p.display().to_string());
        if self.allow_unenforced_security {
            return Ok(self
                .unenforced_security
                .iter()
                .map(|u| {
                    format!(
                        "{origin}: {} asks for {}, which corral does not provide; running WITHOUT it (allowed by --allow-unenforced-security / corral.allowUnenforcedSecurity)",
                        u.key, u.protects
                    )
                })
                .collect());
        }
        match self.unenforced_security.first() {
            None => Ok(Vec::new()),
            Some(first) => {
                let others: Vec<&str> = self.unenforced_security[1..]
                    .iter()
                    .map(|u| u.key.as_str())
                    .collect();
                let also = if others.is_empty() {
                    String::new()
                } else {
                    format!(" (also: {})", others.join(", "))
                };
                Err(ConfigError::Invalid {
                    path: origin,
                    key: first.key.clone(),
                    msg: format!(
                        "asks for {}, which corral does not provide yet; refusing to run without it{also}. \
                         Remove the key, or start with --allow-unenforced-security \
                         (corral.allowUnenforcedSecurity=true) to run unprotected knowingly",
                        first.protects
                    ),
                })
            }
        }
    }
}

/// Splits text in java.util.Properties syntax into (line number, key, value): `#`/`!` comments,
/// `=`, `:` or whitespace between key and value, a trailing backslash continuing the line, and
/// backslash escapes. ZooKeeper reads zoo.cfg with that class, so `clientPort 2181` is valid.
fn properties(text: &str) -> Vec<(usize, String, String)> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((index, first)) = lines.next() {
        let mut logical = first.trim_start().to_string();
        if logical.is_empty() || logical.starts_with('#') || logical.starts_with('!') {
            continue;
        }
        while ends_with_odd_backslashes(&logical) {
            logical.pop();
            match lines.next() {
                Some((_, next)) => logical.push_str(next.trim_start()),
                None => break,
            }
        }
        let (key, value) = split_key_value(&logical);
        out.push((index + 1, unescape(key), unescape(value)));
    }
    out
}

fn ends_with_odd_backslashes(s: &str) -> bool {
    s.chars().rev().take_while(|c| *c == '\\').count() % 2 == 1
}

fn split_key_value(line: &str) -> (&str, &str) {
    let mut escaped = false;
    let mut key_end = line.len();
    for (i, c) in line.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '=' || c == ':' || c.is_whitespace() {
            key_end = i;
            break;
        }
    }
    let key = &line[..key_end];
    let rest = line[key_end..].trim_start();
    let rest = match rest.strip_prefix(['=', ':']) {
        Some(after) => after.trim_start(),
        None => rest,
    };
    (key, rest)
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(ch) => out.push(ch),
                    // Java rejects a malformed \u escape; keep the text so the value check
                    // that follows reports it.
                    None => {
                        out.push_str("\\u");
                        out.push_str(&hex);
                    }
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// Integer.parseInt: optional sign, decimal digits, 32-bit range.
fn int(value: &str) -> Result<i32, String> {
    value
        .parse::<i32>()
        .map_err(|_| format!("{value:?} is not a whole number"))
}

/// Integer.getInteger's decoding (system properties): decimal, or hex with 0x, 0X or #.
fn java_decode_int(value: &str) -> Result<i64, String> {
    let (negative, digits) = match value.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, value.strip_prefix('+').unwrap_or(value)),
    };
    let parsed = if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
        .or_else(|| digits.strip_prefix('#'))
    {
        i64::from_str_radix(hex, 16)
    } else {
        digits.parse::<i64>()
    };
    match parsed {
        Ok(n) if !hex_or_dec_has_sign(digits) && n <= i64::from(i32::MAX) => {
            Ok(if negative { -n } else { n })
        }
        _ => Err(format!("{value:?} is not a whole number")),
    }
}

/// Rejects "--5" and "0x-5", which the sign stripping above would otherwise let through.
fn hex_or_dec_has_sign(digits: &str) -> bool {
    digits.contains(['-', '+'])
}

fn non_negative(value: &str) -> Result<u32, String> {
    let n = int(value)?;
    u32::try_from(n).map_err(|_| format!("{value:?} must not be negative"))
}

/// -1 means "derive from tickTime", as in ZooKeeper; any other negative is an error.
fn session_timeout(value: &str) -> Result<Option<u32>, String> {
    match int(value)? {
        -1 => Ok(None),
        n => u32::try_from(n)
            .map(Some)
            .map_err(|_| format!("{value:?} must not be negative (use -1 for the default)")),
    }
}

fn port(value: &str) -> Result<u16, String> {
    let n = int(value)?;
    u16::try_from(n).map_err(|_| format!("port out of range: {value:?} (0-65535)"))
}

/// java's `parseBoolean` in QuorumPeerConfig: true or false, any case, nothing else.
fn strict_bool(value: &str) -> Result<bool, String> {
    if value.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if value.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(format!("invalid value {value:?}: use true or false"))
    }
}

/// An address to listen on: an IP literal, or a host name resolved now (ZooKeeper resolves at
/// start-up too). IPv4 is preferred so `localhost` means 127.0.0.1 everywhere.
fn resolve(host: &str) -> Result<IpAddr, String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(ip);
    }
    if bare.eq_ignore_ascii_case("localhost") {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    if bare.is_empty() {
        return Err(format!("{host:?} is not an address"));
    }
    let addrs: Vec<_> = (bare, 0)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host:?}: {e}"))?
        .map(|a| a.ip())
        .collect();
    addrs
        .iter()
        .find(|ip| ip.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("cannot resolve {host:?}: no addresses"))
}

const SERVER_FORM: &str =
    "expected host:quorumPort:electionPort[:participant|observer][;[clientHost:]clientPort]";

fn parse_server(id: u64, value: &str) -> Result<ServerEntry, String> {
    let (server_part, client_part) = match value.split_once(';') {
        Some((s, c)) => (s.trim(), Some(c.trim())),
        None => (value.trim(), None),
    };
    if server_part.contains('|') {
        return Err(format!(
            "{value:?}: several addresses per server (multiAddress) are not supported by corral"
        ));
    }
    let (host, rest) =
        split_host(server_part).ok_or_else(|| format!("{value:?}: {SERVER_FORM}"))?;
    let fields: Vec<&str> = rest.split(':').collect();
    let (quorum, election, role) = match fields.as_slice() {
        [q, e] => (*q, *e, ServerRole::Participant),
        [q, e, role] => {
            let role = if role.eq_ignore_ascii_case("participant") {
                ServerRole::Participant
            } else if role.eq_ignore_ascii_case("observer") {
                ServerRole::Observer
            } else {
                return Err(format!(
                    "{value:?}: unrecognised peer type {role:?} (participant or observer)"
                ));
            };
            (*q, *e, role)
        }
        _ => return Err(format!("{value:?}: {SERVER_FORM}")),
    };
    let quorum_port = port(quorum).map_err(|e| format!("{value:?}: quorum port: {e}"))?;
    let election_port = port(election).map_err(|e| format!("{value:?}: election port: {e}"))?;
    let (client_host, client_port) = match client_part {
        None => (None, None),
        Some(c) => {
            let (h, p) = match split_host(c) {
                Some((h, p)) => (Some(h.to_string()), p),
                None => (None, c),
            };
            let p = port(p).map_err(|e| format!("{value:?}: client port: {e}"))?;
            (h, Some(p))
        }
    };
    if host.is_empty() {
        return Err(format!("{value:?}: {SERVER_FORM}"));
    }
    Ok(ServerEntry {
        id,
        host: host.to_string(),
        quorum_port,
        election_port,
        role,
        client_host,
        client_port,
    })
}

/// Splits `host:rest` or `[v6]:rest`; None when there is no host part.
fn split_host(s: &str) -> Option<(&str, &str)> {
    if let Some(v6) = s.strip_prefix('[') {
        let (host, rest) = v6.split_once(']')?;
        return Some((host, rest.strip_prefix(':')?));
    }
    s.split_once(':')
}

#[cfg(test)]
mod tests {
    use super::*;

    const KAZOO: &str = "tickTime=2000
dataDir=/tmp/tmpXXXX/data
clientPort=20000
maxClientCnxns=0
admin.serverPort=20003
authProvider.1=org.apache.zookeeper.server.auth.SASLAuthenticationProvider
reconfigEnabled=true
4lw.commands.whitelist=*
secureClientPort=20004
serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory
ssl.keyStore.location=/tmp/tmpXXXX/keystore.jks
ssl.keyStore.password=apassword
ssl.trustStore.location=/tmp/tmpXXXX/truststore.jks
ssl.trustStore.password=apassword
server.1=localhost:20001:20002:participant;localhost:20000
";

    fn parse_ok(text: &str) -> (Config, Vec<String>) {
        match parse(text, Path::new("zoo.cfg")) {
            Ok(r) => r,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }

    fn parse_err(text: &str) -> String {
        match parse(text, Path::new("zoo.cfg")) {
            Ok((c, _)) => panic!("expected an error, got {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    const BASE: &str = "dataDir=/var/zk\nclientPort=2181\n";

    #[test]
    fn embedded_default_is_standalone_on_localhost() {
        let c = Config::default();
        assert_eq!(c.client_port, 2181);
        assert_eq!(c.client_port_address, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(c.data_dir, PathBuf::from("./corral-data"));
        assert_eq!(
            (c.min_session_timeout_ms, c.max_session_timeout_ms),
            (4000, 40000)
        );
        assert!(c.four_letter_whitelist.allows("srvr"));
        assert!(!c.four_letter_whitelist.allows("stat"));
        assert!(!c.is_distributed());
    }

    #[test]
    fn kazoo_harness_config_parses_with_only_warnings() {
        let (c, warnings) = parse_ok(KAZOO);
        assert_eq!(c.tick_time_ms, 2000);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/tmpXXXX/data"));
        assert_eq!(c.client_port, 20000);
        assert_eq!(c.max_client_cnxns, 0);
        assert_eq!(c.admin_server_port, 20003);
        assert!(c.reconfig_enabled);
        assert!(c.four_letter_whitelist.is_all());
        assert!(c.four_letter_whitelist.allows("mntr"));
        assert_eq!(c.servers.len(), 1);
        assert_eq!(c.server_id, Some(1));
        assert!(
            !c.is_distributed(),
            "one voter with standaloneEnabled is standalone"
        );
        // clientPort given explicitly: address stays ZooKeeper's all-interfaces default.
        assert_eq!(c.client_port_address, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("serverCnxnFactory") && w.contains("not used by corral")),
            "no warning for serverCnxnFactory: {warnings:?}"
        );
        // TLS and SASL keys are not warnings: start-up refuses them unless allowed.
        let keys: Vec<&str> = c
            .unenforced_security
            .iter()
            .map(|u| u.key.as_str())
            .collect();
        for key in [
            "authProvider.1",
            "secureClientPort",
            "ssl.keyStore.location",
            "ssl.trustStore.password",
        ] {
            assert!(keys.contains(&key), "{key} not flagged: {keys:?}");
        }
        let refusal = c.check_security().expect_err("TLS and SASL keys refused");
        let text = refusal.to_string();
        assert!(
            text.contains("authProvider.1") && text.contains("SASL"),
            "{text}"
        );
        assert!(text.contains("--allow-unenforced-security"), "{text}");
        let allowed = Config {
            allow_unenforced_security: true,
            ..c.clone()
        };
        let warned = allowed.check_security().expect("allowed");
        assert_eq!(warned.len(), keys.len());
        assert!(warned.iter().all(|w| w.contains("WITHOUT")), "{warned:?}");
        let (by_key, _) = parse_ok(&format!("{KAZOO}corral.allowUnenforcedSecurity=true\n"));
        assert!(by_key.check_security().is_ok());
    }

    #[test]
    fn security_keys_that_ask_for_nothing_more_are_accepted() {
        let (c, _) = parse_ok(
            "dataDir=/d\nclientPort=2181\nauthProvider.1=org.apache.zookeeper.server.auth.DigestAuthenticationProvider\n\
             sslQuorum=false\nportUnification=false\nenforce.auth.enabled=false\n",
        );
        assert_eq!(c.unenforced_security, vec![]);
        assert!(c.check_security().is_ok());
        for (line, key) in [
            ("requireClientAuthScheme=sasl", "requireClientAuthScheme"),
            ("enforce.auth.enabled=true", "enforce.auth.enabled"),
            ("sslQuorum=true", "sslQuorum"),
            ("portUnification=true", "portUnification"),
            ("quorum.auth.enableSasl=true", "quorum.auth.enableSasl"),
            (
                "kerberos.removeHostFromPrincipal=true",
                "kerberos.removeHostFromPrincipal",
            ),
            ("secureClientPortAddress=0.0.0.0", "secureClientPortAddress"),
        ] {
            let (c, _) = parse_ok(&format!("dataDir=/d\nclientPort=2181\n{line}\n"));
            let e = c.check_security().expect_err(line).to_string();
            assert!(e.contains(key), "{line}: {e}");
        }
    }

    #[test]
    fn server_line_parts() {
        let (c, _) = parse_ok(KAZOO);
        let s = &c.servers[0];
        assert_eq!(
            s,
            &ServerEntry {
                id: 1,
                host: "localhost".into(),
                quorum_port: 20001,
                election_port: 20002,
                role: ServerRole::Participant,
                client_host: Some("localhost".into()),
                client_port: Some(20000),
            }
        );
        let (c, _) = parse_ok(
            "dataDir=/d\nclientPort=1\nserver.3=[::1]:2890:3890:Observer;2183\nserver.1=a:1:2\nserver.2=b:3:4\n",
        );
        assert_eq!(
            c.servers.iter().map(|s| s.id).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!(c.servers[2].host, "::1");
        assert_eq!(c.servers[2].role, ServerRole::Observer);
        assert_eq!(
            (c.servers[2].client_host.clone(), c.servers[2].client_port),
            (None, Some(2183))
        );
        assert!(c.is_distributed());
    }

    #[test]
    fn client_port_from_server_line_suffix() {
        let (c, _) =
            parse_ok("tickTime=2000\ndataDir=/d\nserver.1=localhost:20001:20002;127.0.0.1:20010\n");
        assert_eq!(c.client_port, 20010);
        assert_eq!(c.client_port_address, IpAddr::V4(Ipv4Addr::LOCALHOST));
        let (c, _) = parse_ok("dataDir=/d\nserver.1=localhost:20001:20002;20010\n");
        assert_eq!(c.client_port, 20010);
        assert_eq!(c.client_port_address, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    }

    #[test]
    fn explicit_client_port_wins_over_server_line_with_warning() {
        let (c, w) = parse_ok("dataDir=/d\nclientPort=20000\nserver.1=localhost:1:2;20010\n");
        assert_eq!(c.client_port, 20000);
        assert!(w.iter().any(|w| w.contains("differs")), "{w:?}");
    }

    #[test]
    fn file_defaults_follow_zookeeper() {
        let (c, w) = parse_ok(BASE);
        assert_eq!(c.tick_time_ms, 3000);
        assert_eq!(
            (c.min_session_timeout_ms, c.max_session_timeout_ms),
            (6000, 60000)
        );
        assert_eq!(c.client_port_address, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert_eq!(c.max_client_cnxns, 60);
        assert_eq!(c.snap_count, 100_000);
        assert!(c.force_sync);
        assert_eq!(c.jute_max_buffer, 0xfffff);
        assert!(w.iter().any(|w| w.contains("tickTime")));
        assert_eq!(c.config_path, Some(PathBuf::from("zoo.cfg")));
    }

    #[test]
    fn session_timeouts_derive_from_tick_and_minus_one_means_default() {
        let (c, _) = parse_ok(
            "tickTime=+100\ndataDir=/d\nclientPort=1\nminSessionTimeout=-1\nmaxSessionTimeout=-1\n",
        );
        assert_eq!(
            (c.min_session_timeout_ms, c.max_session_timeout_ms),
            (200, 2000)
        );
        let (c, _) =
            parse_ok("tickTime=2000\ndataDir=/d\nclientPort=1\nmaxSessionTimeout=100000\n");
        assert_eq!(
            (c.min_session_timeout_ms, c.max_session_timeout_ms),
            (4000, 100000)
        );
    }

    #[test]
    fn negotiate_clamps_into_range() {
        let c = Config::default();
        assert_eq!(c.negotiate_timeout(100), 4000);
        assert_eq!(c.negotiate_timeout(10_000), 10_000);
        assert_eq!(c.negotiate_timeout(1_000_000), 40_000);
        assert_eq!(c.negotiate_timeout(-5), 4000);
    }

    #[test]
    fn properties_syntax_like_java() {
        let text = "# comment\n  ! also a comment\n\ndataDir /var/zk\nclientPort: 2181\n  tickTime  =  1000  \n\
                    4lw.commands.whitelist=ruok, \\\n   stat\n";
        let (c, _) = parse_ok(text);
        assert_eq!(c.data_dir, PathBuf::from("/var/zk"));
        assert_eq!(c.client_port, 2181);
        assert_eq!(c.tick_time_ms, 1000);
        assert!(c.four_letter_whitelist.allows("stat"));
        assert!(c.four_letter_whitelist.allows("ruok"));
        assert!(!c.four_letter_whitelist.allows("mntr"));
        assert_eq!(unescape(r"a\tb\u0041\\c\:d"), "a\tbA\\c:d");
    }

    #[test]
    fn last_repeated_key_wins() {
        let (c, _) = parse_ok("dataDir=/d\nclientPort=1\n4lw.commands.whitelist=*\n4lw.commands.whitelist=srvr,ruok\n");
        assert!(!c.four_letter_whitelist.is_all());
        assert!(c.four_letter_whitelist.allows("ruok"));
    }

    #[test]
    fn whitelist_parsing() {
        let (w, unknown) = FourLetterWhitelist::parse("stat ruok,  mntr,bogus");
        assert!(w.allows("stat") && w.allows("ruok") && w.allows("mntr"));
        assert!(w.allows("srvr"), "srvr is always allowed");
        assert!(!w.allows("dump"));
        assert_eq!(unknown, vec!["bogus".to_string()]);
        let (w, _) = FourLetterWhitelist::parse("");
        assert_eq!(w, FourLetterWhitelist::default());
        let (w, _) = FourLetterWhitelist::parse("ruok, *");
        assert!(w.allows("telnet close") && w.is_all());
        let (_, warnings) =
            parse_ok("dataDir=/d\nclientPort=1\n4lw.commands.whitelist=ruok,xyzw\n");
        assert!(warnings.iter().any(|w| w.contains("xyzw")), "{warnings:?}");
    }

    #[test]
    fn keys_passed_through_as_zookeeper_system_properties() {
        let text = "dataDir=/d\nclientPort=1\nextendedTypesEnabled=true\nforceSync=no\nsnapCount=5000\n\
                    DigestAuthenticationProvider.superDigest=super:D/InIHSb7yEEbrWz8b9l71RjZJU=\n\
                    admin.enableServer=false\nadmin.serverAddress=127.0.0.1\njute.maxbuffer=0x200000\n\
                    fsync.warningthresholdms=250\nsnapshot.maxWriteMBps=0\nenforceQuota=true\n";
        let (c, w) = parse_ok(text);
        assert!(c.enforce_quota);
        assert_eq!(c.fsync_warning_threshold_ms, 250);
        assert_eq!(c.snapshot_max_write_mbps, 0);
        assert_eq!(
            parse_ok("dataDir=/d\nclientPort=1\n")
                .0
                .snapshot_max_write_mbps,
            100
        );
        assert_eq!(
            parse_ok("dataDir=/d\nclientPort=1\n")
                .0
                .fsync_warning_threshold_ms,
            1000
        );
        assert!(c.extended_types_enabled);
        assert!(!c.force_sync);
        assert_eq!(c.snap_count, 5000);
        assert_eq!(
            c.super_digest.as_deref(),
            Some("super:D/InIHSb7yEEbrWz8b9l71RjZJU=")
        );
        assert!(!c.admin_enable_server);
        assert_eq!(c.admin_server_address, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(c.jute_max_buffer, 0x200000);
        assert!(w.iter().any(|w| w.contains("jute.maxbuffer")), "{w:?}");
    }

    #[test]
    fn unknown_keys_warn() {
        let (_, w) = parse_ok("dataDir=/d\nclientPort=1\nfrobnicate=3\ninitLimit=10\n");
        assert!(
            w.iter()
                .any(|w| w.contains("ignoring unknown key frobnicate") && w.contains("zoo.cfg:3")),
            "{w:?}"
        );
        assert!(
            w.iter()
                .any(|w| w.contains("initLimit") && w.contains("not used by corral")),
            "{w:?}"
        );
    }

    #[test]
    fn relative_data_dir_stays_relative_and_warns() {
        let (c, w) = parse_ok("dataDir=data\nclientPort=1\n");
        assert_eq!(c.data_dir, PathBuf::from("data"));
        assert!(w.iter().any(|w| w.contains("relative")));
        let (_, w) = parse_ok("dataDir=./data\nclientPort=1\n");
        assert!(!w.iter().any(|w| w.contains("relative")));
    }

    #[test]
    fn snap_retain_below_three_is_raised() {
        let (c, w) = parse_ok(
            "dataDir=/d\nclientPort=1\nautopurge.snapRetainCount=1\nautopurge.purgeInterval=24\n",
        );
        assert_eq!(c.autopurge_snap_retain_count, 3);
        assert_eq!(c.autopurge_purge_interval_hours, 24);
        assert!(w.iter().any(|w| w.contains("autopurge.snapRetainCount")));
    }

    /// Every bad value names its key and the value, and points at the line.
    #[test]
    fn bad_values_name_key_and_value() {
        let cases: &[(&str, &str, &str)] = &[
            ("tickTime=abc", "tickTime", "\"abc\""),
            ("tickTime=0", "tickTime", "\"0\""),
            ("tickTime=-5", "tickTime", "\"-5\""),
            ("clientPort=70000", "clientPort", "70000"),
            ("clientPort=-1", "clientPort", "-1"),
            ("clientPort=", "clientPort", "\"\""),
            ("maxClientCnxns=-3", "maxClientCnxns", "-3"),
            ("minSessionTimeout=-7", "minSessionTimeout", "-7"),
            ("maxSessionTimeout=1.5", "maxSessionTimeout", "1.5"),
            (
                "autopurge.purgeInterval=-1",
                "autopurge.purgeInterval",
                "-1",
            ),
            (
                "autopurge.snapRetainCount=x",
                "autopurge.snapRetainCount",
                "x",
            ),
            ("reconfigEnabled=yes", "reconfigEnabled", "yes"),
            ("standaloneEnabled=1", "standaloneEnabled", "1"),
            (
                "extendedTypesEnabled=maybe",
                "extendedTypesEnabled",
                "maybe",
            ),
            ("forceSync=sometimes", "forceSync", "sometimes"),
            ("jute.maxbuffer=lots", "jute.maxbuffer", "lots"),
            ("jute.maxbuffer=0", "jute.maxbuffer", "0"),
            ("snapCount=-2", "snapCount", "-2"),
            (
                "fsync.warningthresholdms=-1",
                "fsync.warningthresholdms",
                "-1",
            ),
            ("admin.serverPort=99999", "admin.serverPort", "99999"),
            ("snapshot.maxWriteMBps=-5", "snapshot.maxWriteMBps", "-5"),
            (
                "snapshot.maxWriteMBps=fast",
                "snapshot.maxWriteMBps",
                "fast",
            ),
            ("admin.enableServer=on", "admin.enableServer", "on"),
            (
                "DigestAuthenticationProvider.superDigest=nocolon",
                "DigestAuthenticationProvider.superDigest",
                "nocolon",
            ),
            ("clientPortAddress=[]", "clientPortAddress", "[]"),
            ("server.1=localhost:2888", "server.1", "localhost:2888"),
            ("server.1=localhost:2888:3888:boss", "server.1", "boss"),
            ("server.x=localhost:2888:3888", "server.x", "\"x\""),
            ("server.1=localhost:2888:99999", "server.1", "99999"),
            ("server.1=a:1:2|b:1:2", "server.1", "multiAddress"),
            ("dataDir=", "dataDir", "empty"),
        ];
        for (line, key, value) in cases {
            let e = parse_err(&format!("{BASE}{line}\n"));
            assert!(e.starts_with(&format!("zoo.cfg:3: {key}: ")), "{line}: {e}");
            assert!(e.contains(value), "{line}: {e}");
        }
    }

    #[test]
    fn min_above_max_is_an_error_naming_the_key() {
        let e =
            parse_err("dataDir=/d\nclientPort=1\nminSessionTimeout=5000\nmaxSessionTimeout=4000\n");
        assert!(
            e.contains("minSessionTimeout") && e.contains("5000") && e.contains("4000"),
            "{e}"
        );
        // Also when the maximum comes from the tick default.
        let e = parse_err("dataDir=/d\nclientPort=1\ntickTime=100\nminSessionTimeout=5000\n");
        assert!(e.contains("minSessionTimeout"), "{e}");
    }

    #[test]
    fn required_keys() {
        let e = parse_err("clientPort=2181\n");
        assert!(e.contains("dataDir") && e.contains("not set"), "{e}");
        let e = parse_err("dataDir=/d\n");
        assert!(e.contains("clientPort") && e.contains("not set"), "{e}");
    }

    #[test]
    fn system_properties() {
        let mut c = Config::default();
        assert!(c
            .apply_system_property("zookeeper.extendedTypesEnabled", "true")
            .is_ok());
        assert!(c.extended_types_enabled);
        assert!(!c.enforce_quota);
        assert!(c
            .apply_system_property("zookeeper.enforceQuota", "true")
            .is_ok());
        assert!(c.enforce_quota);
        assert!(c
            .apply_system_property("zookeeper.enforceQuota", "maybe")
            .is_err());
        assert!(c
            .apply_system_property(
                "zookeeper.DigestAuthenticationProvider.superDigest",
                "super:abc="
            )
            .is_ok());
        assert_eq!(c.super_digest.as_deref(), Some("super:abc="));
        assert!(c.apply_system_property("jute.maxbuffer", "4194304").is_ok());
        assert_eq!(c.jute_max_buffer, 4_194_304);
        assert!(c
            .apply_system_property("zookeeper.4lw.commands.whitelist", "*")
            .is_ok());
        assert!(c.four_letter_whitelist.is_all());
        let w = c
            .apply_system_property("readonlymode.enabled", "true")
            .ok()
            .unwrap_or_default();
        assert!(w.iter().any(|w| w.contains("read-only")));
        let w = c
            .apply_system_property("zookeeper.nonsense", "1")
            .ok()
            .unwrap_or_default();
        assert!(w.iter().any(|w| w.contains("zookeeper.nonsense")));
        match c.apply_system_property("jute.maxbuffer", "big") {
            Err(e) => {
                let e = e.to_string();
                assert!(e.contains("jute.maxbuffer") && e.contains("big"), "{e}");
            }
            Ok(_) => panic!("accepted a bad jute.maxbuffer"),
        }
        assert!(c
            .apply_system_property("zookeeper.extendedTypesEnabled", "yes")
            .is_err());
    }

    #[test]
    fn java_integer_decoding() {
        assert_eq!(java_decode_int("0x10"), Ok(16));
        assert_eq!(java_decode_int("#10"), Ok(16));
        assert_eq!(java_decode_int("-12"), Ok(-12));
        assert!(java_decode_int("--1").is_err());
        assert!(java_decode_int("0x-1").is_err());
        assert!(java_decode_int("99999999999").is_err());
    }

    #[test]
    fn conf_lines_in_zookeeper_order() {
        let (c, _) =
            parse_ok("tickTime=2000\ndataDir=/tmp/zk\nclientPort=38081\nmaxClientCnxns=0\n");
        let lines = c.conf_lines(10, 20);
        let keys: Vec<&str> = lines.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "clientPort",
                "secureClientPort",
                "dataDir",
                "dataDirSize",
                "dataLogDir",
                "dataLogSize",
                "tickTime",
                "maxClientCnxns",
                "minSessionTimeout",
                "maxSessionTimeout",
                "clientPortListenBacklog",
                "serverId"
            ]
        );
        assert_eq!(lines[4].1, "/tmp/zk");
        assert_eq!(lines[8].1, "4000");
        assert_eq!(lines[11].1, "0");
    }

    #[test]
    fn load_reads_file_and_myid_for_an_ensemble() {
        let dir = std::env::temp_dir().join(format!("corral-config-test-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let cfg = dir.join("zoo.cfg");
        let text = format!(
            "dataDir={}\nserver.1=127.0.0.1:2888:3888;2181\nserver.2=127.0.0.1:2889:3889;127.0.0.1:2182\n",
            dir.display()
        );
        assert!(std::fs::write(&cfg, text).is_ok());
        // Two members: refused before myid is even read (each would be its own standalone
        // keeper, a split brain).
        match load(&cfg) {
            Err(e @ ConfigError::Invalid { .. }) => {
                let text = e.to_string();
                assert!(text.contains("server.1, server.2"), "{text}");
                assert!(text.contains("split brain"), "{text}");
            }
            other => panic!("expected the ensemble to be refused, got {other:?}"),
        }
        // One member with standaloneEnabled=false: its id comes from myid.
        let text = format!(
            "dataDir={}\nstandaloneEnabled=false\nserver.2=127.0.0.1:2889:3889;127.0.0.1:2182\n",
            dir.display()
        );
        assert!(std::fs::write(&cfg, text).is_ok());
        match load(&cfg) {
            Err(ConfigError::Io { path, .. }) => assert!(path.ends_with("myid")),
            other => panic!("expected the missing myid to be reported, got {other:?}"),
        }
        assert!(std::fs::write(dir.join("myid"), "2\n").is_ok());
        match load(&cfg) {
            Ok((c, _)) => {
                assert_eq!(c.server_id, Some(2));
                assert_eq!(c.client_port, 2182);
                assert_eq!(c.client_port_address, IpAddr::V4(Ipv4Addr::LOCALHOST));
            }
            Err(e) => panic!("{e}"),
        }
        let _ = std::fs::remove_dir_all(&dir);
        match load(Path::new("/nonexistent/zoo.cfg")) {
            Err(e @ ConfigError::Io { .. }) => {
                assert!(e.to_string().contains("/nonexistent/zoo.cfg"))
            }
            other => panic!("{other:?}"),
        }
    }
}
