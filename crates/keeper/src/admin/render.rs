//! The text of every four-letter word's reply, in ZooKeeper 3.8's exact format, because
//! operators' scripts, zkServer.sh, monitoring exporters and clients (kazoo reads `envi`)
//! parse it. Formats were checked line by line against a real ZooKeeper 3.8.0.
//!
//! Owns the text, from an [`AdminSnapshot`] alone (`mntr`'s long key list is in
//! [`super::mntr`]). Must never: read live state, the clock or the environment, or act (the
//! effects of `crst`, `srst` and `stmk` happen before rendering, in [`super::four_letter_reply`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use corral_tree::obituary::{kafka_broker_ids, Obituary};

use super::java::{iso_date, java_addr, java_date, java_double, round4};
use super::mntr;
use super::snapshot::{AdminSnapshot, ConnectionInfo, ExpirySet};

/// What ZooKeeper prints (once, with a newline) for most commands while it is not serving.
pub(crate) const NOT_SERVING: &str = "This ZooKeeper instance is not currently serving requests";

/// Whether `cmd` prints only [`NOT_SERVING`] while the keeper does not serve.
pub(crate) fn needs_server(cmd: &str) -> bool {
    matches!(
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
    )
}

/// Renders a recognised command's reply. Unknown commands render as nothing (the connection
/// just closes, as for `telnet close`).
pub(crate) fn render(cmd: &str, snap: &AdminSnapshot) -> String {
    if needs_server(cmd) && !snap.serving {
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
            let w = &snap.data_watch_summary;
            let _ = writeln!(out, "{} connections watching {} paths", w.sessions, w.paths);
            let _ = writeln!(out, "Total watches:{}", w.watches);
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
        "mntr" => mntr::monitor(&mut out, snap),
        "obit" => {
            for ob in &snap.obituaries {
                obituary(&mut out, ob);
            }
        }
        _ => {}
    }
    out
}

/// `obit`: one block per ended session, oldest first; a header line, then `key: value`
/// lines indented by a tab, so both people and `grep`/`awk` can read it.
fn obituary(out: &mut String, ob: &Obituary) {
    let e = &ob.evidence;
    let _ = writeln!(
        out,
        "0x{:x} {} {}",
        ob.session_id,
        iso_date(ob.ended_ms),
        e.cause.name()
    );
    let _ = writeln!(out, "\treason: {}", e.detail);
    let _ = writeln!(out, "\tzxid: 0x{:x}", ob.zxid);
    if ob.created_ms > 0 {
        let _ = writeln!(out, "\tcreated: {}", iso_date(ob.created_ms));
    }
    let _ = write!(out, "\ttimeout_ms: {}", ob.timeout_ms);
    if e.requested_timeout_ms > 0 {
        let _ = write!(out, " (requested {})", e.requested_timeout_ms);
    }
    out.push('\n');
    if !e.remote.is_empty() {
        let _ = writeln!(out, "\tclient: {}", e.remote);
    }
    if e.member > 0 {
        let _ = writeln!(out, "\tmember: {}", e.member);
    }
    if e.silent_ms >= 0 {
        let _ = writeln!(out, "\tsilent_ms: {}", e.silent_ms);
    }
    if !e.last_op.is_empty() {
        let _ = writeln!(out, "\tlast_request: {}", e.last_op);
    }
    if e.stall_forgiven_ms > 0 {
        let _ = writeln!(out, "\tkeeper_stall_forgiven_ms: {}", e.stall_forgiven_ms);
    }
    let _ = write!(out, "\tephemerals_deleted: {}", ob.ephemerals_deleted);
    for p in &ob.ephemerals {
        let _ = write!(out, " {p}");
    }
    if (ob.ephemerals.len() as u32) < ob.ephemerals_deleted {
        out.push_str(" ...");
    }
    out.push('\n');
    let brokers = kafka_broker_ids(&ob.ephemerals);
    if !brokers.is_empty() {
        let ids: Vec<String> = brokers.iter().map(|b| b.to_string()).collect();
        let _ = writeln!(out, "\tkafka_brokers: {}", ids.join(" "));
    }
    for h in &e.history {
        let _ = write!(
            out,
            "\tconnection: {} {} member {} {}",
            iso_date(h.at_ms),
            h.kind.name(),
            h.member,
            h.remote
        );
        if !h.cause.is_empty() {
            let _ = write!(out, " ({})", h.cause);
        }
        out.push('\n');
    }
}

fn lines(out: &mut String, pairs: &[(String, String)], sep: &str) {
    for (k, v) in pairs {
        let _ = writeln!(out, "{k}{sep}{v}");
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
