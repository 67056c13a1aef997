//! `server.N` lines: the [`ServerEntry`] each one describes, and its parser.
//!
//! Owns the line's syntax (host, quorum and election ports, role, client address and port). Must
//! never resolve the host: it is kept as written, for the ensemble network to dial.

use super::values::port;

/// One `server.N=host:quorumPort:electionPort[:role][;[clientHost:]clientPort]` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerEntry {
    pub(crate) id: u64,
    /// Kept as written (a name or an address): the ensemble network resolves it when it dials.
    pub(crate) host: String,
    pub(crate) quorum_port: u16,
    pub(crate) election_port: u16,
    pub(crate) role: ServerRole,
    pub(crate) client_host: Option<String>,
    pub(crate) client_port: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerRole {
    Participant,
    Observer,
}

const SERVER_FORM: &str =
    "expected host:quorumPort:electionPort[:participant|observer][;[clientHost:]clientPort]";

pub(super) fn parse_server(id: u64, value: &str) -> Result<ServerEntry, String> {
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
