//! The four-letter words (`ruok`, `srvr`, `mntr`, ...): recognising one in a fresh connection's
//! first four bytes, and rendering each reply as text in ZooKeeper 3.8's exact format, because
//! operators' scripts, zkServer.sh, monitoring exporters and clients (kazoo reads `envi`) parse it.
//!
//! Owns only recognition and text. It never touches live state: the keeper fills an
//! [`AdminSnapshot`] (plain data) and calls [`render`]; commands that act (`crst`, `srst`,
//! `stmk`) are performed by the keeper before rendering. The whitelist check lives in
//! [`crate::config::FourLetterWhitelist`]; a refused command is answered with
//! [`not_whitelisted`]. Formats were checked line by line against a real ZooKeeper 3.8.0.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

/// Every four-letter word ZooKeeper 3.8 knows.
pub const KNOWN: &[&str] = &[
    "conf", "cons", "crst", "dump", "envi", "gtmk", "ruok", "stmk", "srvr", "srst", "stat", "wchc",
    "wchp", "wchs", "dirs", "mntr", "isro", "hash",
];

/// A telnet client's "interrupt process" sequence (IAC IP IAC DO). ZooKeeper recognises it as a
/// command that just closes the connection; it is only allowed when the whitelist is `*`.
pub const TELNET_CLOSE: &str = "telnet close";

/// ZooKeeper's default trace mask: client requests, server packets, sessions, warnings.
pub const DEFAULT_TRACE_MASK: i64 = 0b1_0011_0010;

/// What ZooKeeper prints (once, with a newline) for most commands while it is not serving.
pub const NOT_SERVING: &str = "This ZooKeeper instance is not currently serving requests";

/// The ZooKeeper release corral's admin output claims to be, so version parsers (kazoo's
/// `zookeeper.version=(\d+\.\d+\.\d+)`, feature checks on 3.5/3.6) treat it as 3.8.
pub const ZK_COMPAT_VERSION: &str = "3.8.0";

/// The full version string in ZooKeeper's shape: `3.8.0-corral-<version>, built on <date>`.
/// The date comes from `CORRAL_BUILD_DATE` at compile time, if the build sets it.
pub fn full_version() -> String {
    format!(
        "{ZK_COMPAT_VERSION}-corral-{}, built on {}",
        env!("CARGO_PKG_VERSION"),
        option_env!("CORRAL_BUILD_DATE").unwrap_or("unknown")
    )
}

/// Recognises a four-letter word from the first four bytes of a connection. ZooKeeper compares
/// them, as a big-endian int, with its command codes; anything else is a frame length.
pub fn recognize(first4: [u8; 4]) -> Option<&'static str> {
    if first4 == [0xff, 0xf4, 0xff, 0xfd] {
        return Some(TELNET_CLOSE);
    }
    KNOWN.iter().copied().find(|k| k.as_bytes() == first4)
}

/// `stmk` is followed by the new trace mask: 8 more bytes the connection must read first.
pub fn needs_trace_mask(cmd: &str) -> bool {
    cmd == "stmk"
}

/// Decodes `stmk`'s argument (a big-endian 64-bit mask).
pub fn parse_trace_mask(bytes: [u8; 8]) -> i64 {
    i64::from_be_bytes(bytes)
}

/// The reply to a command the whitelist refuses.
pub fn not_whitelisted(cmd: &str) -> String {
    format!("{cmd} is not executed because it is not in the whitelist.\n")
}

/// The four-letter abbreviation ZooKeeper shows as a connection's last operation (`lop=` in
/// `cons`), by opcode. "NA" before the first request.
pub fn last_op_name(opcode: i32) -> &'static str {
    match opcode {
        1 | 15 | 19 | 21 => "CREA",
        2 | 20 => "DELE",
        3 => "EXIS",
        4 => "GETD",
        5 => "SETD",
        6 => "GETA",
        7 => "SETA",
        8 | 12 => "GETC",
        9 => "SYNC",
        11 => "PING",
        13 => "CHEC",
        14 => "MULT",
        16 => "RECO",
        17 => "CHKW",
        18 => "REMW",
        22 => "MLTR",
        101 => "SETW",
        103 => "GETE",
        104 => "GETACN",
        105 => "STW2",
        106 => "ADDW",
        107 => "HOMI",
        -10 => "SESS",
        -11 => "CLOS",
        _ => "NA",
    }
}

/// One client connection as `cons` and `stat` show it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionInfo {
    pub remote: SocketAddr,
    /// The selector interest set (1 = reading); ZooKeeper shows 0 for a connection that is
    /// not reading, e.g. the one asking the four-letter word.
    pub interest_ops: u32,
    pub queued: u64,
    pub received: u64,
    pub sent: u64,
    /// 0 until the handshake; session details are shown only when non-zero.
    pub session_id: i64,
    /// See [`last_op_name`].
    pub last_op: String,
    /// Wall-clock ms since the epoch.
    pub established_ms: i64,
    pub timeout_ms: i32,
    /// Negative = none yet (omitted from the output).
    pub last_cxid: i64,
    /// -1 = none yet (shown as 0xffffffffffffffff, like ZooKeeper).
    pub last_zxid: i64,
    /// Monotonic ms (ZooKeeper uses its elapsed-time clock here); 0 = none yet.
    pub last_response_ms: i64,
    pub last_latency_ms: u64,
    pub min_latency_ms: u64,
    pub avg_latency_ms: u64,
    pub max_latency_ms: u64,
}

/// Sessions (or connections) that expire at the same instant, as `dump` groups them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExpirySet<T> {
    /// Wall-clock ms since the epoch.
    pub expire_at_ms: i64,
    pub members: Vec<T>,
}

/// Everything the four-letter words show, filled by the keeper at the moment of the request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AdminSnapshot {
    /// [`full_version`] normally.
    pub version: String,
    /// False while the server cannot serve (starting, no quorum): most commands then print
    /// [`NOT_SERVING`].
    pub serving: bool,
    /// "standalone", "leader", "follower", "observer" or "read-only".
    pub server_state: String,
    pub read_only: bool,
    pub zxid: i64,
    pub node_count: u64,
    pub latency_min_ms: u64,
    pub latency_avg_ms: f64,
    pub latency_max_ms: u64,
    pub packets_received: u64,
    pub packets_sent: u64,
    /// Includes the connection asking, as in ZooKeeper.
    pub num_alive_connections: u64,
    pub outstanding_requests: u64,
    /// Leader only: last/min/max proposal size in bytes (`stat`/`srvr` print it for a leader).
    pub proposal_sizes: Option<(i64, i64, i64)>,
    pub connections: Vec<ConnectionInfo>,
    /// (session id, path) for every data/exist watch; `wchc`, `wchp` and `wchs` list these
    /// only (ZooKeeper leaves child watches out of them).
    pub data_watches: Vec<(i64, String)>,
    /// All watches, child watches included (`zk_watch_count`).
    pub watch_count: u64,
    pub session_expiry: Vec<ExpirySet<i64>>,
    /// (remote address, session id or 0).
    pub connection_expiry: Vec<ExpirySet<(SocketAddr, i64)>>,
    /// Session id and its ephemeral paths.
    pub ephemerals: Vec<(i64, Vec<String>)>,
    pub ephemerals_count: u64,
    pub approximate_data_size: u64,
    pub global_sessions: u64,
    pub local_sessions: u64,
    pub data_dir_size: u64,
    pub log_dir_size: u64,
    /// `envi` lines after the version; see [`environment`].
    pub environment: Vec<(String, String)>,
    /// `conf` lines, from `Config::conf_lines`.
    pub config_lines: Vec<(String, String)>,
    pub open_file_descriptors: Option<u64>,
    pub max_file_descriptors: Option<u64>,
    pub uptime_ms: u64,
    /// The current (for `stmk`: the newly set) trace mask.
    pub trace_mask: i64,
    /// (zxid, digest) history for `hash`.
    pub digest_log: Vec<(i64, i64)>,
    /// Extra `mntr` values: a name ZooKeeper prints anyway replaces its default value, any other
    /// name is appended (e.g. leader-only `zk_synced_followers`, corral's own counters).
    pub metrics: Vec<(String, String)>,
}

/// Renders a recognised command's reply. Unknown commands render as nothing (the connection
/// just closes, as for `telnet close`).
pub fn render(cmd: &str, snap: &AdminSnapshot) -> String {
    let needs_server = matches!(
        cmd,
        "conf"
            | "cons"
            | "crst"
            | "dump"
            | "dirs"
            | "mntr"
            | "srst"
            | "srvr"
            | "stat"
            | "wchc"
            | "wchp"
            | "wchs"
    );
    if needs_server && !snap.serving {
        return format!("{NOT_SERVING}\n");
    }
    let mut out = String::new();
    match cmd {
        "ruok" => out.push_str("imok"),
        "isro" => out.push_str(match (snap.serving, snap.read_only) {
            (false, _) => "null",
            (true, true) => "ro",
            (true, false) => "rw",
        }),
        // Both print the mask without a newline; for stmk the keeper has already set it.
        "gtmk" | "stmk" => out.push_str(&snap.trace_mask.to_string()),
        "crst" => out.push_str("Connection stats reset.\n"),
        "srst" => out.push_str("Server stats reset.\n"),
        "conf" => lines(&mut out, &snap.config_lines, "="),
        "envi" => {
            out.push_str("Environment:\n");
            let _ = writeln!(out, "zookeeper.version={}", snap.version);
            lines(&mut out, &snap.environment, "=");
        }
        "dirs" => {
            let _ = writeln!(out, "datadir_size: {}", snap.data_dir_size);
            let _ = writeln!(out, "logdir_size: {}", snap.log_dir_size);
        }
        "cons" => {
            for c in &snap.connections {
                connection_line(&mut out, c, false);
            }
            out.push('\n');
        }
        "srvr" | "stat" => server_stats(&mut out, cmd == "stat", snap),
        "dump" => dump(&mut out, snap),
        "wchs" => {
            let sessions: BTreeSet<i64> = snap.data_watches.iter().map(|(s, _)| *s).collect();
            let paths: BTreeSet<&str> = snap.data_watches.iter().map(|(_, p)| p.as_str()).collect();
            let _ = writeln!(
                out,
                "{} connections watching {} paths",
                sessions.len(),
                paths.len()
            );
            let _ = writeln!(out, "Total watches:{}", snap.data_watches.len());
        }
        "wchc" => {
            let mut by_session: BTreeMap<i64, BTreeSet<&str>> = BTreeMap::new();
            for (s, p) in &snap.data_watches {
                by_session.entry(*s).or_default().insert(p);
            }
            for (s, paths) in by_session {
                let _ = writeln!(out, "0x{s:x}");
                for p in paths {
                    let _ = writeln!(out, "\t{p}");
                }
            }
            out.push('\n');
        }
        "wchp" => {
            let mut by_path: BTreeMap<&str, BTreeSet<i64>> = BTreeMap::new();
            for (s, p) in &snap.data_watches {
                by_path.entry(p).or_default().insert(*s);
            }
            for (p, sessions) in by_path {
                let _ = writeln!(out, "{p}");
                for s in sessions {
                    let _ = writeln!(out, "\t0x{s:x}");
                }
            }
            out.push('\n');
        }
        "hash" => {
            // ZooKeeper prints the not-serving text without a newline for this one only.
            if !snap.serving {
                return NOT_SERVING.to_string();
            }
            for (zxid, digest) in &snap.digest_log {
                let _ = writeln!(out, "{zxid:x}: {digest}");
            }
        }
        "mntr" => monitor(&mut out, snap),
        _ => {}
    }
    out
}

fn lines(out: &mut String, pairs: &[(String, String)], sep: &str) {
    for (k, v) in pairs {
        let _ = writeln!(out, "{k}{sep}{v}");
    }
}

/// Java's `InetSocketAddress.toString()` for a resolved address: "/ip:port", IPv6 in brackets
/// and in Java's uncompressed form.
fn java_addr(addr: &SocketAddr) -> String {
    match addr.ip() {
        IpAddr::V4(ip) => format!("/{ip}:{}", addr.port()),
        IpAddr::V6(ip) => {
            let groups: Vec<String> = ip.segments().iter().map(|g| format!("{g:x}")).collect();
            format!("/[{}]:{}", groups.join(":"), addr.port())
        }
    }
}

/// One connection: the brief form (`stat`) stops after the packet counts.
fn connection_line(out: &mut String, c: &ConnectionInfo, brief: bool) {
    let _ = write!(
        out,
        " {}[{:x}](queued={},recved={},sent={}",
        java_addr(&c.remote),
        c.interest_ops,
        c.queued,
        c.received,
        c.sent
    );
    if !brief && c.session_id != 0 {
        let _ = write!(
            out,
            ",sid=0x{:x},lop={},est={},to={}",
            c.session_id, c.last_op, c.established_ms, c.timeout_ms
        );
        if c.last_cxid >= 0 {
            let _ = write!(out, ",lcxid=0x{:x}", c.last_cxid);
        }
        let _ = write!(
            out,
            ",lzxid=0x{:x},lresp={},llat={},minlat={},avglat={},maxlat={}",
            c.last_zxid,
            c.last_response_ms,
            c.last_latency_ms,
            c.min_latency_ms,
            c.avg_latency_ms,
            c.max_latency_ms
        );
    }
    out.push_str(")\n");
}

fn server_stats(out: &mut String, with_clients: bool, snap: &AdminSnapshot) {
    let _ = writeln!(out, "Zookeeper version: {}", snap.version);
    if snap.read_only {
        out.push_str("READ-ONLY mode; serving only read-only clients\n");
    }
    if with_clients {
        out.push_str("Clients:\n");
        for c in &snap.connections {
            connection_line(out, c, true);
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "Latency min/avg/max: {}/{}/{}",
        snap.latency_min_ms,
        java_double(round4(snap.latency_avg_ms)),
        snap.latency_max_ms
    );
    let _ = writeln!(out, "Received: {}", snap.packets_received);
    let _ = writeln!(out, "Sent: {}", snap.packets_sent);
    let _ = writeln!(out, "Connections: {}", snap.num_alive_connections);
    let _ = writeln!(out, "Outstanding: {}", snap.outstanding_requests);
    let _ = writeln!(out, "Zxid: 0x{:x}", snap.zxid);
    let _ = writeln!(out, "Mode: {}", snap.server_state);
    let _ = writeln!(out, "Node count: {}", snap.node_count);
    if let Some((last, min, max)) = snap.proposal_sizes {
        let _ = writeln!(out, "Proposal sizes last/min/max: {last}/{min}/{max}");
    }
}

fn dump(out: &mut String, snap: &AdminSnapshot) {
    out.push_str("SessionTracker dump:\n");
    expiry_sets(out, "Session", &snap.session_expiry, |out, s| {
        let _ = writeln!(out, "\t0x{s:x}");
    });
    out.push_str("ephemeral nodes dump:\n");
    let _ = writeln!(out, "Sessions with Ephemerals ({}):", snap.ephemerals.len());
    for (session, paths) in &snap.ephemerals {
        let _ = writeln!(out, "0x{session:x}:");
        for p in paths {
            let _ = writeln!(out, "\t{p}");
        }
    }
    out.push_str("Connections dump:\n");
    expiry_sets(
        out,
        "Connections",
        &snap.connection_expiry,
        |out, (addr, session)| {
            let _ = writeln!(out, "\tip: {} sessionId: 0x{session:x}", java_addr(addr));
        },
    );
}

/// `"<what> Sets (<sets>)/(<members>):"` then each set, earliest first.
fn expiry_sets<T>(
    out: &mut String,
    what: &str,
    sets: &[ExpirySet<T>],
    member: impl Fn(&mut String, &T),
) {
    let total: usize = sets.iter().map(|s| s.members.len()).sum();
    let _ = writeln!(out, "{what} Sets ({})/({total}):", sets.len());
    let mut sorted: Vec<&ExpirySet<T>> = sets.iter().collect();
    sorted.sort_by_key(|s| s.expire_at_ms);
    for set in sorted {
        let _ = writeln!(
            out,
            "{} expire at {}:",
            set.members.len(),
            java_date(set.expire_at_ms)
        );
        for m in &set.members {
            member(out, m);
        }
    }
}

/// The `mntr` keys ZooKeeper 3.8 prints before its summary metrics, in its order, with the value
/// a fresh server shows. Summary/quantile metrics (avg/min/max/cnt/sum/pNN of ~90 internal
/// timers) are not reproduced; corral reports its own through [`AdminSnapshot::metrics`].
const MNTR_KEYS: &[(&str, &str)] = &[
    ("zk_version", ""),
    ("zk_server_state", ""),
    ("zk_ephemerals_count", "0"),
    ("zk_num_alive_connections", "0"),
    ("zk_avg_latency", "0.0"),
    ("zk_outstanding_requests", "0"),
    ("zk_znode_count", "0"),
    ("zk_global_sessions", "0"),
    ("zk_non_mtls_remote_conn_count", "0"),
    ("zk_last_client_response_size", "-1"),
    ("zk_packets_sent", "0"),
    ("zk_packets_received", "0"),
    ("zk_max_client_response_size", "-1"),
    ("zk_connection_drop_probability", "0.0"),
    ("zk_watch_count", "0"),
    ("zk_auth_failed_count", "0"),
    ("zk_min_latency", "0"),
    ("zk_max_file_descriptor_count", ""),
    ("zk_approximate_data_size", "0"),
    ("zk_open_file_descriptor_count", ""),
    ("zk_local_sessions", "0"),
    ("zk_uptime", "0"),
    ("zk_max_latency", "0"),
    ("zk_outstanding_tls_handshake", "0"),
    ("zk_min_client_response_size", "-1"),
    ("zk_non_mtls_local_conn_count", "0"),
    ("zk_proposal_count", "0"),
    ("zk_watch_bytes", "0"),
    ("zk_outstanding_changes_removed", "0"),
    ("zk_throttled_ops", "0"),
    ("zk_stale_requests_dropped", "0"),
    ("zk_large_requests_rejected", "0"),
    ("zk_insecure_admin_count", "0"),
    ("zk_connection_rejected", "0"),
    ("zk_cnxn_closed_without_zk_server_running", "0"),
    ("zk_sessionless_connections_expired", "0"),
    ("zk_looking_count", "0"),
    ("zk_dead_watchers_queued", "0"),
    ("zk_stale_requests", "0"),
    ("zk_connection_drop_count", "0"),
    ("zk_learner_proposal_received_count", "0"),
    ("zk_digest_mismatches_count", "0"),
    ("zk_dead_watchers_cleared", "0"),
    ("zk_response_packet_cache_hits", "0"),
    ("zk_bytes_received_count", "0"),
    ("zk_add_dead_watcher_stall_time", "0"),
    ("zk_request_throttle_wait_count", "0"),
    ("zk_requests_not_forwarded_to_commit_processor", "0"),
    ("zk_response_packet_cache_misses", "0"),
    ("zk_ensemble_auth_success", "0"),
    ("zk_prep_processor_request_queued", "0"),
    ("zk_learner_commit_received_count", "0"),
    ("zk_stale_replies", "0"),
    ("zk_connection_request_count", "0"),
    ("zk_response_bytes", "0"),
    ("zk_ensemble_auth_fail", "0"),
    ("zk_diff_count", "0"),
    ("zk_response_packet_get_children_cache_misses", "0"),
    ("zk_connection_revalidate_count", "0"),
    ("zk_quit_leading_due_to_disloyal_voter", "0"),
    ("zk_snap_count", "0"),
    ("zk_unrecoverable_error_count", "0"),
    ("zk_unsuccessful_handshake", "0"),
    ("zk_commit_count", "0"),
    ("zk_stale_sessions_expired", "0"),
    ("zk_response_packet_get_children_cache_hits", "0"),
    ("zk_sync_processor_request_queued", "0"),
    ("zk_outstanding_changes_queued", "0"),
    ("zk_request_commit_queued", "0"),
    ("zk_ensemble_auth_skip", "0"),
    ("zk_skip_learner_request_to_next_processor_count", "0"),
    ("zk_tls_handshake_exceeded", "0"),
    ("zk_revalidate_count", "0"),
];

fn monitor(out: &mut String, snap: &AdminSnapshot) {
    let overrides: BTreeMap<&str, &str> = snap
        .metrics
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    for (key, default) in MNTR_KEYS {
        let value = match *key {
            "zk_version" => Some(snap.version.clone()),
            "zk_server_state" => Some(snap.server_state.clone()),
            "zk_ephemerals_count" => Some(snap.ephemerals_count.to_string()),
            "zk_num_alive_connections" => Some(snap.num_alive_connections.to_string()),
            "zk_avg_latency" => Some(java_double(round4(snap.latency_avg_ms))),
            "zk_outstanding_requests" => Some(snap.outstanding_requests.to_string()),
            "zk_znode_count" => Some(snap.node_count.to_string()),
            "zk_global_sessions" => Some(snap.global_sessions.to_string()),
            "zk_local_sessions" => Some(snap.local_sessions.to_string()),
            "zk_packets_sent" => Some(snap.packets_sent.to_string()),
            "zk_packets_received" => Some(snap.packets_received.to_string()),
            "zk_watch_count" => Some(snap.watch_count.to_string()),
            "zk_min_latency" => Some(snap.latency_min_ms.to_string()),
            "zk_max_latency" => Some(snap.latency_max_ms.to_string()),
            "zk_approximate_data_size" => Some(snap.approximate_data_size.to_string()),
            "zk_uptime" => Some(snap.uptime_ms.to_string()),
            // ZooKeeper prints these only where the OS reports them (Unix).
            "zk_max_file_descriptor_count" => snap.max_file_descriptors.map(|n| n.to_string()),
            "zk_open_file_descriptor_count" => snap.open_file_descriptors.map(|n| n.to_string()),
            _ => Some((*default).to_string()),
        };
        let value = overrides.get(key).map(|v| v.to_string()).or(value);
        if let Some(value) = value {
            let _ = writeln!(out, "{key}\t{value}");
        }
    }
    for (key, value) in &snap.metrics {
        if !MNTR_KEYS.iter().any(|(k, _)| k == key) {
            let _ = writeln!(out, "{key}\t{value}");
        }
    }
}

/// ZooKeeper rounds average latencies to 4 decimal places.
fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// Java's `Double.toString` for the magnitudes latencies take: at least one decimal ("0.0",
/// "12.0", "0.7778").
fn java_double(x: f64) -> String {
    if x.is_finite() && x.fract() == 0.0 && x.abs() < 1e7 {
        format!("{x:.1}")
    } else {
        format!("{x}")
    }
}

/// Java's `Date.toString()` in UTC: "Wed Nov 25 01:12:37 UTC 2026".
pub fn java_date(epoch_ms: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = epoch_ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let in_day = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{} {} {:02} {:02}:{:02}:{:02} UTC {}",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        day,
        in_day / 3600,
        in_day % 3600 / 60,
        in_day % 60,
        year
    )
}

/// Days since 1970-01-01 to (year, month 1-12, day 1-31), proleptic Gregorian (Howard
/// Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The `envi` lines corral can report truthfully, in ZooKeeper's order and naming (there is
/// no JVM, so the `java.*` lines are left out).
pub fn environment() -> Vec<(String, String)> {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_string())
            .ok()
    };
    let host = read("/proc/sys/kernel/hostname")
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into());
    // Java's names for the usual platforms.
    let os = match std::env::consts::OS {
        "linux" => "Linux".to_string(),
        "macos" => "Mac OS X".to_string(),
        other => other.to_string(),
    };
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        other => other,
    };
    let cwd = std::env::current_dir()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    vec![
        ("host.name".into(), host),
        ("os.name".into(), os),
        ("os.arch".into(), arch.into()),
        (
            "os.version".into(),
            read("/proc/sys/kernel/osrelease").unwrap_or_default(),
        ),
        (
            "user.name".into(),
            std::env::var("USER").unwrap_or_default(),
        ),
        (
            "user.home".into(),
            std::env::var("HOME").unwrap_or_default(),
        ),
        ("user.dir".into(), cwd),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap_or_else(|_| panic!("bad test address {s}"))
    }

    const SID: i64 = 0x1000006e0220001;
    /// 2026-11-25 01:12:37 UTC, a Wednesday (from the real server's `dump`).
    const EXPIRY_MS: i64 = 1_795_569_157_000;

    fn sample() -> AdminSnapshot {
        AdminSnapshot {
            version: "3.8.0-corral-0.1.0, built on unknown".into(),
            serving: true,
            server_state: "standalone".into(),
            zxid: 7,
            node_count: 8,
            latency_min_ms: 0,
            latency_avg_ms: 7.0 / 9.0,
            latency_max_ms: 4,
            packets_received: 20,
            packets_sent: 23,
            num_alive_connections: 2,
            connections: vec![
                ConnectionInfo {
                    remote: addr("127.0.0.1:40136"),
                    interest_ops: 1,
                    received: 8,
                    sent: 8,
                    session_id: SID,
                    last_op: "EXIS".into(),
                    established_ms: 1_795_569_147_025,
                    timeout_ms: 10000,
                    last_cxid: 7,
                    last_zxid: 7,
                    last_response_ms: 475_985,
                    last_latency_ms: 1,
                    max_latency_ms: 1,
                    ..ConnectionInfo::default_for_test()
                },
                ConnectionInfo {
                    remote: addr("127.0.0.1:40178"),
                    received: 1,
                    ..ConnectionInfo::default_for_test()
                },
            ],
            data_watches: vec![
                (SID, "/w2".into()),
                (SID, "/w1".into()),
                (SID, "/nonexist".into()),
            ],
            watch_count: 4,
            session_expiry: vec![ExpirySet {
                expire_at_ms: EXPIRY_MS,
                members: vec![SID],
            }],
            connection_expiry: vec![ExpirySet {
                expire_at_ms: EXPIRY_MS + 4000,
                members: vec![(addr("127.0.0.1:40218"), 0), (addr("127.0.0.1:40136"), SID)],
            }],
            ephemerals: vec![(SID, vec!["/eph".into()])],
            ephemerals_count: 1,
            approximate_data_size: 57,
            global_sessions: 1,
            data_dir_size: 67_109_337,
            log_dir_size: 67_109_337,
            environment: vec![
                ("host.name".into(), "localhost".into()),
                ("user.dir".into(), "/work".into()),
            ],
            config_lines: vec![
                ("clientPort".into(), "38081".into()),
                ("tickTime".into(), "2000".into()),
            ],
            open_file_descriptors: Some(43),
            max_file_descriptors: Some(20000),
            uptime_ms: 25446,
            trace_mask: DEFAULT_TRACE_MASK,
            digest_log: vec![(0x80, 281_066_813_260), (0x100, 586_860_430_807)],
            ..AdminSnapshot::default()
        }
    }

    impl ConnectionInfo {
        fn default_for_test() -> Self {
            ConnectionInfo {
                remote: addr("127.0.0.1:1"),
                interest_ops: 0,
                queued: 0,
                received: 0,
                sent: 0,
                session_id: 0,
                last_op: "NA".into(),
                established_ms: 0,
                timeout_ms: 0,
                last_cxid: -1,
                last_zxid: -1,
                last_response_ms: 0,
                last_latency_ms: 0,
                min_latency_ms: 0,
                avg_latency_ms: 0,
                max_latency_ms: 0,
            }
        }
    }

    #[test]
    fn recognizes_known_words_only() {
        // ZooKeeper 3.8's words (FourLetterCommands), written out rather than taken from KNOWN.
        for k in [
            "conf", "cons", "crst", "dump", "envi", "gtmk", "ruok", "stmk", "srvr", "srst", "stat",
            "wchc", "wchp", "wchs", "dirs", "mntr", "isro", "hash",
        ] {
            let b = k.as_bytes();
            assert_eq!(recognize([b[0], b[1], b[2], b[3]]), Some(k));
        }
        assert_eq!(recognize([0xff, 0xf4, 0xff, 0xfd]), Some(TELNET_CLOSE));
        // A real frame length (a connect request is 45 bytes) is not a command.
        assert_eq!(recognize([0, 0, 0, 45]), None);
        assert_eq!(recognize(*b"RUOK"), None);
        assert_eq!(recognize(*b"kill"), None);
        assert_eq!(KNOWN.len(), 18);
    }

    #[test]
    fn trivial_words() {
        let s = sample();
        assert_eq!(render("ruok", &s), "imok");
        assert_eq!(render("isro", &s), "rw");
        assert_eq!(
            render(
                "isro",
                &AdminSnapshot {
                    read_only: true,
                    ..sample()
                }
            ),
            "ro"
        );
        assert_eq!(render("gtmk", &s), "306");
        assert_eq!(
            render(
                "stmk",
                &AdminSnapshot {
                    trace_mask: 498,
                    ..sample()
                }
            ),
            "498"
        );
        assert_eq!(render("crst", &s), "Connection stats reset.\n");
        assert_eq!(render("srst", &s), "Server stats reset.\n");
        assert_eq!(render(TELNET_CLOSE, &s), "");
        assert_eq!(
            not_whitelisted("envi"),
            "envi is not executed because it is not in the whitelist.\n"
        );
        assert!(needs_trace_mask("stmk") && !needs_trace_mask("gtmk"));
    }

    #[test]
    fn srvr_matches_zookeeper() {
        assert_eq!(
            render("srvr", &sample()),
            "Zookeeper version: 3.8.0-corral-0.1.0, built on unknown\n\
             Latency min/avg/max: 0/0.7778/4\n\
             Received: 20\n\
             Sent: 23\n\
             Connections: 2\n\
             Outstanding: 0\n\
             Zxid: 0x7\n\
             Mode: standalone\n\
             Node count: 8\n"
        );
        let idle = AdminSnapshot {
            latency_avg_ms: 0.0,
            ..sample()
        };
        assert!(render("srvr", &idle).contains("Latency min/avg/max: 0/0.0/4\n"));
        let leader = AdminSnapshot {
            proposal_sizes: Some((-1, -1, -1)),
            ..sample()
        };
        assert!(render("srvr", &leader)
            .ends_with("Node count: 8\nProposal sizes last/min/max: -1/-1/-1\n"));
    }

    #[test]
    fn stat_lists_clients_briefly() {
        let text = render("stat", &sample());
        assert!(text.starts_with(
            "Zookeeper version: 3.8.0-corral-0.1.0, built on unknown\n\
             Clients:\n \
             /127.0.0.1:40136[1](queued=0,recved=8,sent=8)\n \
             /127.0.0.1:40178[0](queued=0,recved=1,sent=0)\n\
             \n\
             Latency min/avg/max: 0/0.7778/4\n"
        ));
        assert!(text.ends_with("Mode: standalone\nNode count: 8\n"));
    }

    #[test]
    fn cons_matches_zookeeper() {
        assert_eq!(
            render("cons", &sample()),
            " /127.0.0.1:40136[1](queued=0,recved=8,sent=8,sid=0x1000006e0220001,lop=EXIS,est=1795569147025,\
             to=10000,lcxid=0x7,lzxid=0x7,lresp=475985,llat=1,minlat=0,avglat=0,maxlat=1)\n \
             /127.0.0.1:40178[0](queued=0,recved=1,sent=0)\n\n"
        );
        // Right after crst: no cxid yet (omitted) and no zxid (-1 in two's complement).
        let fresh = ConnectionInfo {
            session_id: 0x100000a352d0000,
            interest_ops: 1,
            remote: addr("127.0.0.1:52812"),
            established_ms: 1_795_569_356_540,
            timeout_ms: 10000,
            ..ConnectionInfo::default_for_test()
        };
        let s = AdminSnapshot {
            connections: vec![fresh],
            ..sample()
        };
        assert_eq!(
            render("cons", &s),
            " /127.0.0.1:52812[1](queued=0,recved=0,sent=0,sid=0x100000a352d0000,lop=NA,est=1795569356540,\
             to=10000,lzxid=0xffffffffffffffff,lresp=0,llat=0,minlat=0,avglat=0,maxlat=0)\n\n"
        );
    }

    #[test]
    fn dump_matches_zookeeper() {
        assert_eq!(
            render("dump", &sample()),
            "SessionTracker dump:\n\
             Session Sets (1)/(1):\n\
             1 expire at Wed Nov 25 01:12:37 UTC 2026:\n\
             \t0x1000006e0220001\n\
             ephemeral nodes dump:\n\
             Sessions with Ephemerals (1):\n\
             0x1000006e0220001:\n\
             \t/eph\n\
             Connections dump:\n\
             Connections Sets (1)/(2):\n\
             2 expire at Wed Nov 25 01:12:41 UTC 2026:\n\
             \tip: /127.0.0.1:40218 sessionId: 0x0\n\
             \tip: /127.0.0.1:40136 sessionId: 0x1000006e0220001\n"
        );
    }

    #[test]
    fn watch_words_match_zookeeper() {
        let s = sample();
        assert_eq!(
            render("wchs", &s),
            "1 connections watching 3 paths\nTotal watches:3\n"
        );
        assert_eq!(
            render("wchc", &s),
            "0x1000006e0220001\n\t/nonexist\n\t/w1\n\t/w2\n\n"
        );
        assert_eq!(
            render("wchp", &s),
            "/nonexist\n\t0x1000006e0220001\n/w1\n\t0x1000006e0220001\n/w2\n\t0x1000006e0220001\n\n"
        );
        let none = AdminSnapshot {
            data_watches: vec![],
            ..sample()
        };
        assert_eq!(
            render("wchs", &none),
            "0 connections watching 0 paths\nTotal watches:0\n"
        );
        assert_eq!(render("wchc", &none), "\n");
        assert_eq!(render("wchp", &none), "\n");
    }

    #[test]
    fn envi_has_the_version_line_kazoo_parses() {
        let text = render("envi", &sample());
        assert!(text
            .starts_with("Environment:\nzookeeper.version=3.8.0-corral-0.1.0, built on unknown\n"));
        assert!(text.ends_with("host.name=localhost\nuser.dir=/work\n"));
        assert!(full_version().starts_with("3.8.0-corral-"));
        let env = environment();
        assert!(env.iter().any(|(k, _)| k == "user.dir"));
    }

    #[test]
    fn conf_dirs_hash() {
        let s = sample();
        assert_eq!(render("conf", &s), "clientPort=38081\ntickTime=2000\n");
        assert_eq!(
            render("dirs", &s),
            "datadir_size: 67109337\nlogdir_size: 67109337\n"
        );
        assert_eq!(render("hash", &s), "80: 281066813260\n100: 586860430807\n");
    }

    #[test]
    fn mntr_is_tab_separated_in_zookeeper_order() {
        let mut s = sample();
        s.metrics = vec![
            ("zk_stale_sessions_expired".into(), "2".into()),
            ("zk_synced_followers".into(), "0".into()),
        ];
        let text = render("mntr", &s);
        let lines: Vec<(&str, &str)> = text.lines().filter_map(|l| l.split_once('\t')).collect();
        assert_eq!(
            lines.len(),
            text.lines().count(),
            "every line is key<TAB>value"
        );
        assert_eq!(
            lines[0],
            ("zk_version", "3.8.0-corral-0.1.0, built on unknown")
        );
        assert_eq!(lines[1], ("zk_server_state", "standalone"));
        let get = |k: &str| lines.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
        assert_eq!(get("zk_znode_count"), Some("8"));
        assert_eq!(get("zk_watch_count"), Some("4"));
        assert_eq!(get("zk_ephemerals_count"), Some("1"));
        assert_eq!(get("zk_approximate_data_size"), Some("57"));
        assert_eq!(get("zk_num_alive_connections"), Some("2"));
        assert_eq!(get("zk_outstanding_requests"), Some("0"));
        assert_eq!(get("zk_avg_latency"), Some("0.7778"));
        assert_eq!(get("zk_open_file_descriptor_count"), Some("43"));
        assert_eq!(get("zk_last_client_response_size"), Some("-1"));
        assert_eq!(get("zk_stale_sessions_expired"), Some("2"));
        assert_eq!(lines.last(), Some(&("zk_synced_followers", "0")));
        let no_fd = AdminSnapshot {
            open_file_descriptors: None,
            max_file_descriptors: None,
            ..sample()
        };
        assert!(!render("mntr", &no_fd).contains("file_descriptor"));
    }

    #[test]
    fn not_serving() {
        let s = AdminSnapshot {
            serving: false,
            ..sample()
        };
        for cmd in [
            "srvr", "stat", "cons", "mntr", "dump", "wchs", "conf", "crst", "srst", "dirs",
        ] {
            assert_eq!(render(cmd, &s), format!("{NOT_SERVING}\n"), "{cmd}");
        }
        assert_eq!(render("hash", &s), NOT_SERVING);
        assert_eq!(render("isro", &s), "null");
        assert_eq!(render("ruok", &s), "imok");
    }

    #[test]
    fn java_formats() {
        assert_eq!(java_date(0), "Thu Jan 01 00:00:00 UTC 1970");
        assert_eq!(java_date(951_782_400_000), "Tue Feb 29 00:00:00 UTC 2000");
        assert_eq!(java_date(951_827_696_000), "Tue Feb 29 12:34:56 UTC 2000");
        assert_eq!(java_date(1_700_000_000_123), "Tue Nov 14 22:13:20 UTC 2023");
        assert_eq!(java_date(-1000), "Wed Dec 31 23:59:59 UTC 1969");
        assert_eq!(java_double(0.0), "0.0");
        assert_eq!(java_double(12.0), "12.0");
        assert_eq!(java_double(round4(1.0 / 3.0)), "0.3333");
        assert_eq!(java_addr(&addr("[::1]:80")), "/[0:0:0:0:0:0:0:1]:80");
        assert_eq!(last_op_name(3), "EXIS");
        assert_eq!(last_op_name(-10), "SESS");
        assert_eq!(last_op_name(999), "NA");
    }
}
