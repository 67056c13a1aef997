//! What each `zoo.cfg` key does to a [`Config`]: ZooKeeper's own keys, the keys it turns into
//! `zookeeper.<key>` system properties, and the keys corral accepts and ignores ([`NOT_USED`]).
//!
//! Owns the table from key to field and the warning or error for each key's value. Must never
//! judge several keys together (that is `finish` in `file`) nor read a file; a value's
//! syntax is parsed by [`super::values`].

use std::path::PathBuf;

use super::file::Pending;
use super::security::{unenforced_protection, UnenforcedKey};
use super::servers::parse_server;
use super::values::{
    int, java_decode_int, non_negative, port, resolve, session_timeout, strict_bool,
};
use super::{Config, FourLetterWhitelist, DEFAULT_GLOBAL_OUTSTANDING_LIMIT, MIN_SNAP_RETAIN};

/// Keys ZooKeeper's config parser understands that corral accepts but does not act on (yet).
const NOT_USED: &[&str] = &[
    "initLimit",
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

fn positive_ms(value: &str) -> Result<u32, String> {
    match int(value)? {
        n if n > 0 => Ok(n as u32),
        _ => Err(format!(
            "{value:?} must be a positive number of milliseconds"
        )),
    }
}

impl Config {
    /// One key of the file. Ok(Some(w)) = accepted with a warning; Err(msg) = bad value.
    pub(super) fn set_file_key(
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
            "syncLimit" => {
                let n = int(value)?;
                if n <= 0 {
                    return Err(format!("{value:?} must be a positive number of ticks"));
                }
                self.sync_limit = n as u32;
            }
            "corral.raft.heartbeatMs" => self.raft_heartbeat_ms = Some(positive_ms(value)?),
            "corral.raft.electionTimeoutMs" => {
                self.raft_election_timeout_ms = Some(positive_ms(value)?)
            }
            "corral.obituaries" => {
                let n = java_decode_int(value)?;
                if !(0..=1_000_000).contains(&n) {
                    return Err(format!("{value:?} must be between 0 and 1000000"));
                }
                self.obituaries_kept = n as usize;
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
            _ => return self.set_property(key, value),
        }
        Ok(None)
    }

    /// A key ZooKeeper's parser does not know: ZooKeeper sets it as the system property
    /// `zookeeper.<key>`, so the property names below are the ones it reads. Messages name the
    /// key as written in the file.
    pub(super) fn set_property(
        &mut self,
        key: &str,
        value: &str,
    ) -> Result<Option<String>, String> {
        match format!("zookeeper.{key}").as_str() {
            "zookeeper.4lw.commands.whitelist" => {
                let (list, unknown) = FourLetterWhitelist::parse(value);
                self.four_letter_whitelist = list;
                if !unknown.is_empty() {
                    return Ok(Some(format!(
                        "{key}: ignoring unknown four-letter words {}",
                        unknown.join(", ")
                    )));
                }
            }
            "zookeeper.jute.maxbuffer" => {
                let n = java_decode_int(value)?;
                if n <= 0 {
                    return Err(format!("{value:?} must be a positive number of bytes"));
                }
                self.jute_max_buffer = n as usize;
                // An operator who wrote it in zoo.cfg meant it; ZooKeeper would silently
                // ignore it there (it reads only the JVM property), so say what we do.
                return Ok(Some(format!(
                    "{key}: ZooKeeper only honours this as a JVM system property; corral applies it"
                )));
            }
            "zookeeper.extendedTypesEnabled" => self.extended_types_enabled = strict_bool(value)?,
            "zookeeper.globalOutstandingLimit" => {
                let n = java_decode_int(value)?;
                // ZooKeeper falls back to its default for a value below 1.
                self.global_outstanding_limit = if n < 1 {
                    DEFAULT_GLOBAL_OUTSTANDING_LIMIT
                } else {
                    n as u32
                };
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
                        "{key}={n} is below 2; using 2, as ZooKeeper does"
                    )));
                }
                self.snap_count = n as u64;
            }
            "zookeeper.snapshotSizeFactor" => {
                let f: f64 = value
                    .trim()
                    .parse()
                    .map_err(|_| format!("{value:?} is not a number"))?;
                if !f.is_finite() {
                    return Err(format!("{value:?} is not a finite number"));
                }
                self.snapshot_size_factor = f;
            }
            "zookeeper.fsync.warningthresholdms" => {
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
            "zookeeper.admin.enableServer" => {
                self.admin_enable_server = strict_bool(value)?;
                self.admin_server_explicit = self.admin_enable_server;
            }
            "zookeeper.admin.serverPort" => {
                let n = java_decode_int(value)?;
                self.admin_server_port = u16::try_from(n)
                    .map_err(|_| format!("port out of range: {value:?} (0-65535)"))?;
                self.admin_server_explicit = true;
            }
            "zookeeper.admin.serverAddress" => self.admin_server_address = resolve(value)?,
            // ZooKeeper reads the JVM property `readonlymode.enabled`; corral has no JVM, so
            // the zoo.cfg key of that name turns it on.
            "zookeeper.readonlymode.enabled" => self.read_only_mode = strict_bool(value)?,
            _ => return Ok(Some(format!("ignoring unknown key {key}"))),
        }
        Ok(None)
    }
}
