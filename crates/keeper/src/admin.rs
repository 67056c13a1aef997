//! Admin glue: turns the keeper's live state into an [`AdminSnapshot`] and answers the
//! four-letter words with it. The side effects of `crst`, `srst` and `stmk` happen here;
//! rendering is pure text in [`crate::four_letter`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::four_letter::{self, AdminSnapshot, ConnectionInfo, ExpirySet, DEFAULT_TRACE_MASK};
use crate::shared::registry::ConnStats;
use crate::shared::{now_ms, Shared};
use crate::watch::Table;

/// ZooKeeper's trace mask is process-wide; `stmk` sets it and `gtmk` reads it.
static TRACE_MASK: AtomicI64 = AtomicI64::new(DEFAULT_TRACE_MASK);

/// Sizes of the files under a directory (for `dirs` and `conf`).
fn dir_size(path: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn open_fds() -> Option<u64> {
    std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as u64)
}

fn max_fds() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

pub fn snapshot(keeper: &Shared) -> AdminSnapshot {
    let stats = &keeper.stats;
    // `dirs` reports snapshot bytes as the data dir and log bytes as the log dir, as
    // ZooKeeper does; without storage (not started yet) fall back to the directories.
    let storage = keeper.consensus().map(|c| c.storage_stats());
    let (data_dir_size, log_dir_size) = match &storage {
        Some(s) => (s.snapshot_bytes, s.log_bytes),
        None => {
            let d = dir_size(&keeper.config.data_dir);
            (
                d,
                keeper
                    .config
                    .data_log_dir
                    .as_deref()
                    .map(dir_size)
                    .unwrap_or(d),
            )
        }
    };
    // File and /proc reads happen before the state lock: every request waits on that lock.
    let environment = four_letter::environment();
    let config_lines = keeper.config.conf_lines(data_dir_size, log_dir_size);
    let open_file_descriptors = open_fds();
    let max_file_descriptors = max_fds();
    let now = tokio::time::Instant::now();
    let wall = now_ms();
    let to_wall = |deadline: tokio::time::Instant| -> i64 {
        if deadline >= now {
            wall + deadline.duration_since(now).as_millis() as i64
        } else {
            wall - now.duration_since(deadline).as_millis() as i64
        }
    };
    // Each lock in turn, never two at once; the handles are copied out under the registry's.
    let handles: Vec<_> = keeper.conns().handles().cloned().collect();
    let mut connections: Vec<ConnectionInfo> = handles
        .iter()
        .map(|c| {
            let s = &c.stats;
            let requests = s.requests.load(Ordering::Relaxed);
            let answered = requests > 0;
            ConnectionInfo {
                remote: c.remote,
                interest_ops: u32::from(c.out.is_reading()),
                queued: c.out.queued_frames() as u64,
                received: s.packets_received.load(Ordering::Relaxed),
                sent: s.packets_sent.load(Ordering::Relaxed),
                session_id: c.session_id,
                last_op: match s.last_op.load(Ordering::Relaxed) {
                    ConnStats::NO_OP => "NA".to_string(),
                    op => four_letter::last_op_name(op).to_string(),
                },
                established_ms: c
                    .established
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as i64)
                    .unwrap_or(0),
                timeout_ms: c.timeout_ms,
                last_cxid: if answered {
                    i64::from(s.last_cxid.load(Ordering::Relaxed))
                } else {
                    -1
                },
                last_zxid: if answered {
                    s.last_zxid.load(Ordering::Relaxed)
                } else {
                    -1
                },
                last_response_ms: s.last_response_ms.load(Ordering::Relaxed),
                last_latency_ms: s.last_latency_ms.load(Ordering::Relaxed),
                min_latency_ms: if answered {
                    s.min_latency_ms.load(Ordering::Relaxed)
                } else {
                    0
                },
                avg_latency_ms: s
                    .total_latency_ms
                    .load(Ordering::Relaxed)
                    .checked_div(requests)
                    .unwrap_or(0),
                max_latency_ms: s.max_latency_ms.load(Ordering::Relaxed),
            }
        })
        .collect();
    connections.sort_by_key(|c| (c.established_ms, c.session_id));
    let (session_expiry, sessions_expired, stalls, stalled_ms) = {
        let sessions = keeper.sessions();
        let mut expiry: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        for (id, l) in sessions.iter() {
            expiry.entry(to_wall(l.deadline)).or_default().push(*id);
        }
        let session_expiry: Vec<ExpirySet<i64>> = expiry
            .into_iter()
            .map(|(expire_at_ms, mut members)| {
                members.sort();
                ExpirySet {
                    expire_at_ms,
                    members,
                }
            })
            .collect();
        (
            session_expiry,
            sessions.expired_total,
            sessions.stalls_detected,
            sessions.stalled_total.as_millis(),
        )
    };
    let st = keeper.state();
    let data_watches: Vec<(i64, String)> = {
        let conns = keeper.conns();
        st.watches
            .entries()
            .filter(|(_, kind, _)| *kind == Table::Data)
            .filter_map(|(conn, _, path)| conns.session_of(conn).map(|s| (s, path.to_string())))
            .collect()
    };
    let ephemerals: Vec<(i64, Vec<String>)> = st
        .tree
        .sessions()
        .filter(|(_, s)| !s.ephemerals.is_empty())
        .map(|(id, s)| (*id, s.ephemerals.iter().cloned().collect()))
        .collect();
    let count = stats.latency_count.load(Ordering::Relaxed);
    let mut metrics = vec![
        (
            "zk_corral_sessions_expired_total".to_string(),
            sessions_expired.to_string(),
        ),
        (
            "zk_corral_keeper_stalls_detected".to_string(),
            stalls.to_string(),
        ),
        (
            "zk_corral_keeper_stalled_ms_total".to_string(),
            stalled_ms.to_string(),
        ),
        (
            "zk_corral_connections_rejected_total".to_string(),
            stats
                .rejected_connections
                .load(Ordering::Relaxed)
                .to_string(),
        ),
        (
            "zk_corral_handshake_timeouts_total".to_string(),
            stats.handshake_timeouts.load(Ordering::Relaxed).to_string(),
        ),
        (
            "zk_corral_slow_connections_closed_total".to_string(),
            stats
                .slow_connections_closed
                .load(Ordering::Relaxed)
                .to_string(),
        ),
    ];
    metrics.push(("zk_snap_count".into(), keeper.config.snap_count.to_string()));
    if let Some(s) = &storage {
        // Storage health: what an operator checks when writes slow down or fail.
        for (k, v) in [
            ("zk_corral_fsync_count", s.fsyncs.to_string()),
            ("zk_corral_fsync_p50_us", s.fsync_p50_us.to_string()),
            ("zk_corral_fsync_p99_us", s.fsync_p99_us.to_string()),
            ("zk_corral_fsync_p999_us", s.fsync_p999_us.to_string()),
            ("zk_corral_fsync_max_us", s.fsync_max_us.to_string()),
            (
                "zk_fsync_threshold_exceed_count",
                s.fsync_threshold_exceeded.to_string(),
            ),
            ("zk_corral_log_records", s.log_records.to_string()),
            ("zk_corral_log_batches", s.log_batches.to_string()),
            ("zk_corral_log_bytes", s.log_bytes.to_string()),
            ("zk_corral_snapshot_bytes", s.snapshot_bytes.to_string()),
            ("zk_corral_last_snapshot_ms", s.last_snapshot_ms.to_string()),
            (
                "zk_corral_snapshots_written",
                s.snapshots_written.to_string(),
            ),
            (
                "zk_corral_snapshot_failures",
                s.snapshot_failures.to_string(),
            ),
            (
                "zk_corral_last_snapshot_zxid",
                s.last_snapshot_zxid.to_string(),
            ),
            (
                "zk_corral_writes_blocked",
                u8::from(s.writes_blocked).to_string(),
            ),
        ] {
            metrics.push((k.to_string(), v));
        }
    }
    AdminSnapshot {
        version: four_letter::full_version(),
        serving: keeper.consensus().is_some(),
        server_state: "standalone".into(),
        read_only: false,
        zxid: st.tree.last_zxid(),
        node_count: st.tree.node_count() as u64,
        latency_min_ms: stats.latency_min_ms.load(Ordering::Relaxed),
        latency_avg_ms: if count == 0 {
            0.0
        } else {
            stats.latency_total_ms.load(Ordering::Relaxed) as f64 / count as f64
        },
        latency_max_ms: stats.latency_max_ms.load(Ordering::Relaxed),
        packets_received: stats.packets_received.load(Ordering::Relaxed),
        packets_sent: stats.packets_sent.load(Ordering::Relaxed),
        num_alive_connections: stats.open_connections.load(Ordering::Relaxed),
        outstanding_requests: keeper.outstanding.count(),
        proposal_sizes: None,
        connections,
        data_watches,
        watch_count: st.watches.total() as u64,
        session_expiry,
        connection_expiry: Vec::new(),
        ephemerals_count: st.tree.ephemeral_count() as u64,
        ephemerals,
        approximate_data_size: st.tree.approximate_data_size(),
        global_sessions: st.tree.sessions().count() as u64,
        local_sessions: 0,
        data_dir_size,
        log_dir_size,
        environment,
        config_lines,
        open_file_descriptors,
        max_file_descriptors,
        uptime_ms: keeper.started.elapsed().as_millis() as u64,
        trace_mask: TRACE_MASK.load(Ordering::Relaxed),
        digest_log: Vec::new(),
        metrics,
    }
}

/// Answers one (whitelisted) four-letter word. `extra` holds the 8 bytes that follow `stmk`.
pub fn four_letter_reply(keeper: &Shared, cmd: &str, extra: Option<[u8; 8]>) -> String {
    match cmd {
        "crst" => {
            for c in keeper.conns().handles() {
                c.stats.reset();
            }
        }
        "srst" => keeper.stats.reset(),
        "stmk" => {
            if let Some(bytes) = extra {
                TRACE_MASK.store(four_letter::parse_trace_mask(bytes), Ordering::Relaxed);
            }
        }
        _ => {}
    }
    match cmd {
        // They show only whether the keeper serves and the trace mask: a health probe
        // (ruok every few seconds) must not walk the whole state under its lock.
        "ruok" | "isro" | "gtmk" | "stmk" | "crst" | "srst" => four_letter::render(
            cmd,
            &AdminSnapshot {
                serving: keeper.consensus().is_some(),
                trace_mask: TRACE_MASK.load(Ordering::Relaxed),
                ..AdminSnapshot::default()
            },
        ),
        _ => four_letter::render(cmd, &snapshot(keeper)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn stmk_sets_the_mask_gtmk_reads_and_health_words_need_no_state() {
        let keeper = Shared::new(Config::default());
        let mask: i64 = 0x1f2;
        assert_eq!(
            four_letter_reply(&keeper, "stmk", Some(mask.to_be_bytes())),
            "498"
        );
        assert_eq!(four_letter_reply(&keeper, "gtmk", None), "498");
        // Without consensus: isro says null (ruok is kept from clients by the accept loop,
        // which starts only once recovery is done).
        assert_eq!(four_letter_reply(&keeper, "ruok", None), "imok");
        assert_eq!(four_letter_reply(&keeper, "isro", None), "null");
        TRACE_MASK.store(DEFAULT_TRACE_MASK, Ordering::Relaxed);
    }
}
