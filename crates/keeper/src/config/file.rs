//! Reading a `zoo.cfg`: the file, `myid` when the server is configured as an ensemble member,
//! and the checks that need every key (dataDir and clientPort required, session timeouts derived
//! from tickTime, the client port taken from this server's `server.N` line).
//!
//! Owns the order of those steps and the configuration's only file I/O. Must never interpret one
//! key itself (that is [`super::keys`]) nor start anything: its output is a [`Config`] and
//! warnings.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use super::properties::properties;
use super::values::resolve;
use super::{Config, ConfigError, FILE_DEFAULT_TICK_MS};

/// What the parse of the file leaves for the final checks that need every key.
#[derive(Default)]
pub(super) struct Pending {
    pub(super) path: String,
    pub(super) tick_set: bool,
    /// -1 (ZooKeeper's "use the default") is stored as None.
    pub(super) min_timeout: Option<u32>,
    pub(super) max_timeout: Option<u32>,
    pub(super) client_port_set: bool,
    pub(super) client_address_set: bool,
    pub(super) data_dir_set: bool,
}

/// Parses the text of a `zoo.cfg`. `origin` names the file in messages and in the result. Does
/// not read `myid` (see [`load`]). Only the tests parse text: the keeper starts from a file.
#[cfg(test)]
pub(super) fn parse(text: &str, origin: &Path) -> Result<(Config, Vec<String>), ConfigError> {
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
    if config.is_distributed() {
        // This member's id comes from myid, as ZooKeeper reads it.
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
