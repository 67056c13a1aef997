//! The ensemble's membership as `/zookeeper/config` holds it, and the reconfig request's
//! computation of the next one.
//!
//! Owns the text format ZooKeeper 3.8 gives that node (`server.N=host:quorumPort:electionPort:
//! role[;clientHost:clientPort]` lines, then `version=<hex>`), its parser, and the checks and
//! errors of a reconfig in ZooKeeper's order (PrepRequestProcessor): fromConfig version
//! (BadVersion), the joining/leaving or new_members strings (BadArguments, or MarshallingError
//! where ZooKeeper's number parsing throws), at least two voters (BadArguments). The ACL check
//! and the write itself are the tree's ([`crate::DataTree::apply`]). Must not: resolve a host
//! name or look at anything but its arguments (the tree is pure).
//!
//! The order of the lines is ZooKeeper's: its config is a `java.util.HashMap` from id to
//! server, printed in that map's iteration order (by `hash(id) & (capacity - 1)`, then in order
//! of insertion). An incremental reconfig copies the current map (capacity from its size),
//! removes the leaving ids, then removes and re-inserts every joining one; this module plays the
//! same steps on a model of the map, so that e.g. `server.17` prints right after `server.1` once
//! the map has 16 buckets, as ZooKeeper's does.

use corral_proto::{ErrorCode, ReconfigRequest};

/// Where the membership lives.
pub const CONFIG_NODE: &str = "/zookeeper/config";

/// One `server.N` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: i64,
    /// As written (a name or an address literal, without brackets).
    pub host: String,
    pub quorum_port: u16,
    pub election_port: u16,
    pub observer: bool,
    /// `clientHost:clientPort` when the line carries one (`0.0.0.0` for a bare port).
    pub client: Option<(String, u16)>,
}

impl Member {
    /// `host:quorumPort`, bracketed for an IPv6 literal: where its peers dial it.
    pub fn quorum_addr(&self) -> String {
        format!("{}:{}", bracketed(&self.host), self.quorum_port)
    }

    fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = write!(
            out,
            "server.{}={}:{}:{}:{}",
            self.id,
            bracketed(&self.host),
            self.quorum_port,
            self.election_port,
            if self.observer {
                "observer"
            } else {
                "participant"
            }
        );
        if let Some((h, p)) = &self.client {
            let _ = write!(out, ";{}:{}", bracketed(h), p);
        }
    }
}

fn bracketed(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// A membership: the members in ZooKeeper's printing order, and its version (the zxid of the
/// reconfig that made it; 0 for the one zoo.cfg gave at start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    pub members: Vec<Member>,
    pub version: i64,
}

/// Why a server string was refused: ZooKeeper's ConfigException (BadArguments) or a number
/// it failed to parse outside its checks (MarshallingError).
fn bad() -> ErrorCode {
    ErrorCode::BadArguments
}

impl ServerConfig {
    /// The membership zoo.cfg lists, in the order ZooKeeper prints it for a fresh map. Put in
    /// by id, so members whose zoo.cfg lists the lines in another order start with the same
    /// bytes (the node is replicated state).
    pub fn from_members(mut members: Vec<Member>) -> ServerConfig {
        members.sort_by_key(|m| m.id);
        let mut map = JavaMap::with_capacity(16);
        for m in members {
            map.put(m);
        }
        ServerConfig {
            members: map.iteration_order(),
            version: 0,
        }
    }

    /// The node's bytes: one line per member, then `version=<hex>` with no newline after it.
    pub fn render(&self) -> Vec<u8> {
        let mut out = String::new();
        for m in &self.members {
            m.render(&mut out);
            out.push('\n');
        }
        out.push_str(&format!("version={:x}", self.version));
        out.into_bytes()
    }

    /// Reads the node's bytes back; None when they are not a membership (standalone's empty
    /// node, or anything else).
    pub fn parse(data: &[u8]) -> Option<ServerConfig> {
        let text = std::str::from_utf8(data).ok()?;
        let mut members = Vec::new();
        let mut version = None;
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (key, value) = line.split_once('=')?;
            if key == "version" {
                version = Some(i64::from_str_radix(value.trim(), 16).ok()?);
            } else {
                let id = key.strip_prefix("server.")?.trim().parse().ok()?;
                members.push(parse_server(id, value).ok()?);
            }
        }
        if members.is_empty() {
            return None;
        }
        Some(ServerConfig {
            members,
            version: version?,
        })
    }

    /// The participants' ids.
    pub fn voters(&self) -> impl Iterator<Item = &Member> {
        self.members.iter().filter(|m| !m.observer)
    }

    /// The membership a reconfig asks for, at `zxid` (its version); the errors ZooKeeper gives
    /// before its ACL check, in its order. An empty `new_members` is an incremental reconfig
    /// (the wire's null and empty strings are one here).
    pub fn next(&self, req: &ReconfigRequest, zxid: i64) -> Result<ServerConfig, ErrorCode> {
        if req.cur_config_id != -1 && req.cur_config_id != self.version {
            return Err(ErrorCode::BadVersion);
        }
        let members = if !req.new_members.is_empty() {
            non_incremental(&req.new_members)?
        } else {
            self.incremental(&req.joining_servers, &req.leaving_servers)?
        };
        // ZooKeeper's standaloneEnabled (default true) asks for two voters at least.
        if members.iter().filter(|m| !m.observer).count() < 2 {
            return Err(ErrorCode::BadArguments);
        }
        Ok(ServerConfig {
            members,
            version: zxid,
        })
    }

    fn incremental(&self, joining: &str, leaving: &str) -> Result<Vec<Member>, ErrorCode> {
        // new HashMap<>(current): capacity tableSizeFor((int)(n / 0.75 + 1)).
        let n = self.members.len();
        let mut map = JavaMap::with_capacity(table_size_for((n as f32 / 0.75 + 1.0) as usize));
        for m in &self.members {
            map.put(m.clone());
        }
        for id in java_split(leaving, ',') {
            let id: i64 = java_long(id).ok_or(ErrorCode::MarshallingError)?;
            map.remove(id);
        }
        for joiner in java_split(joining, ',') {
            let parts: Vec<&str> = java_split(joiner, '=').collect();
            let [key, spec] = parts.as_slice() else {
                return Err(bad());
            };
            let id_text = key.rsplit_once('.').map_or(*key, |(_, id)| id);
            let id = java_long(id_text).ok_or(ErrorCode::MarshallingError)?;
            let member = parse_server(id, spec)?;
            if member.client.is_none() {
                return Err(bad());
            }
            for other in map.iteration_order() {
                if other.id != id && duplicate_address(&member, &other) {
                    return Err(bad());
                }
            }
            map.remove(id);
            map.put(member);
        }
        Ok(map.iteration_order())
    }
}

/// `new_members`: commas are line breaks, then a properties file of `server.N=spec` lines
/// (a later line for the same id replaces the earlier one in place, as a map's put does).
fn non_incremental(text: &str) -> Result<Vec<Member>, ErrorCode> {
    let mut map = JavaMap::with_capacity(16);
    for line in text.split([',', '\n', '\r']) {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let key_end = line.find(['=', ':', ' ', '\t']).unwrap_or(line.len());
        let (key, rest) = line.split_at(key_end);
        let rest = rest.trim_start_matches([' ', '\t']);
        let value = rest
            .strip_prefix(['=', ':'])
            .unwrap_or(rest)
            .trim_start_matches([' ', '\t']);
        if key.starts_with("group") || key.starts_with("weight") {
            // Hierarchical quorums: corral's consensus is a plain majority.
            return Err(bad());
        }
        if let Some(id) = key.strip_prefix("server.") {
            let id = java_long(id).ok_or(ErrorCode::MarshallingError)?;
            // Unlike a joiner, a member here may leave out its client address (seen:
            // ZooKeeper takes back the lines /zookeeper/config shows for a static clientPort).
            map.put(parse_server(id, value.trim())?);
        }
    }
    Ok(map.iteration_order())
}

/// ZooKeeper's address duplicate check: two servers may not share an address and port, but
/// wildcard and loopback addresses are left out of it, and names are compared only as what
/// they resolve to, which a pure function cannot know: here only address literals count.
fn duplicate_address(a: &Member, b: &Member) -> bool {
    let addrs = |m: &Member| {
        let mut v = vec![
            (m.host.clone(), m.quorum_port),
            (m.host.clone(), m.election_port),
        ];
        if let Some((h, p)) = &m.client {
            v.push((h.clone(), *p));
        }
        v.into_iter()
            .filter_map(|(h, p)| {
                let ip: std::net::IpAddr = h.parse().ok()?;
                (!ip.is_unspecified() && !ip.is_loopback()).then_some((ip, p))
            })
            .collect::<Vec<_>>()
    };
    let theirs = addrs(b);
    addrs(a).iter().any(|x| theirs.contains(x))
}

/// One server's spec, `host:quorumPort:electionPort[:role][;[clientHost:]clientPort]`, as
/// ZooKeeper's QuorumServer reads it.
pub fn parse_server(id: i64, spec: &str) -> Result<Member, ErrorCode> {
    let parts: Vec<&str> = spec.split(';').collect();
    if parts.len() > 2 {
        return Err(bad());
    }
    let client = match parts.get(1) {
        None => None,
        Some(c) => {
            let fields = host_and_port(c.trim())?;
            let (host, port) = match fields.as_slice() {
                [p] => ("0.0.0.0".to_string(), *p),
                [h, p] => (h.to_string(), *p),
                _ => return Err(bad()),
            };
            Some((host, java_port(port)?))
        }
    };
    let server = parts.first().copied().unwrap_or_default().trim();
    if server.contains('|') {
        // Several addresses per server: corral's network dials one.
        return Err(bad());
    }
    let fields = host_and_port(server)?;
    if fields.len() < 3 || fields.len() > 4 {
        return Err(bad());
    }
    let quorum_port = java_port(fields[1])?;
    let election_port = java_port(fields[2])?;
    if quorum_port == election_port {
        return Err(bad());
    }
    let observer = match fields.get(3).map(|r| r.to_ascii_lowercase()) {
        None => false,
        Some(r) if r == "participant" => false,
        Some(r) if r == "observer" => true,
        Some(_) => return Err(bad()),
    };
    Ok(Member {
        id,
        host: fields[0].to_string(),
        quorum_port,
        election_port,
        observer,
        client,
    })
}

/// `host:port:...` split on ':', with an IPv6 literal in brackets kept whole (ConfigUtils.
/// getHostAndPort); an unclosed bracket is malformed.
fn host_and_port(s: &str) -> Result<Vec<&str>, ErrorCode> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, tail) = rest.split_once(']').ok_or_else(bad)?;
        let mut out = vec![host];
        if !tail.is_empty() {
            out.extend(tail.strip_prefix(':').ok_or_else(bad)?.split(':'));
        }
        Ok(out)
    } else {
        Ok(s.split(':').collect())
    }
}

/// A port as `Integer.parseInt` then `InetSocketAddress` take it: not a number is a
/// ConfigException (BadArguments); out of range throws past ZooKeeper's checks
/// (MarshallingError).
fn java_port(s: &str) -> Result<u16, ErrorCode> {
    let n: i32 = java_int(s).ok_or_else(bad)?;
    u16::try_from(n).map_err(|_| ErrorCode::MarshallingError)
}

fn java_int(s: &str) -> Option<i32> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn java_long(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// ZooKeeper's StringUtils.split: split, trim each piece, drop the empty ones.
fn java_split(s: &str, sep: char) -> impl Iterator<Item = &str> {
    s.split(sep).map(str::trim).filter(|p| !p.is_empty())
}

fn table_size_for(n: usize) -> usize {
    n.max(1).next_power_of_two()
}

/// A model of `java.util.HashMap<Long, _>`'s iteration order: entries in insertion order, a
/// capacity that doubles when the size passes three quarters of it; iteration goes by bucket,
/// and within a bucket by insertion (a resize keeps that relative order).
struct JavaMap {
    capacity: usize,
    entries: Vec<Member>,
}

impl JavaMap {
    fn with_capacity(capacity: usize) -> JavaMap {
        JavaMap {
            capacity,
            entries: Vec::new(),
        }
    }

    fn bucket(&self, id: i64) -> usize {
        let h = ((id as u64) ^ ((id as u64) >> 32)) as u32;
        ((h ^ (h >> 16)) as usize) & (self.capacity - 1)
    }

    /// Replaces in place an entry with the same id; else appends (and grows as Java does).
    fn put(&mut self, m: Member) {
        if let Some(slot) = self.entries.iter_mut().find(|e| e.id == m.id) {
            *slot = m;
            return;
        }
        self.entries.push(m);
        if self.entries.len() * 4 > self.capacity * 3 {
            self.capacity *= 2;
        }
    }

    fn remove(&mut self, id: i64) {
        self.entries.retain(|e| e.id != id);
    }

    fn iteration_order(&self) -> Vec<Member> {
        let mut v = self.entries.clone();
        v.sort_by_key(|m| self.bucket(m.id));
        v
    }
}
