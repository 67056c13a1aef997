//! Filling an [`AdminSnapshot`] from the keeper's shared state, as far as a word's [`Needs`]
//! ask.
//!
//! Owns which lock each part is read under, and for how long. Each lock is taken on its own,
//! never two at once: the connection registry to copy out its handles (or count them), the
//! session tracker for expiry times and its counters, and the state lock, which every request
//! waits on, once, only to count or to copy the paths a listing prints. Files and /proc are
//! read with no lock held. Must never: hold two of the keeper's locks at once, take the state
//! lock for a word that prints neither the tree nor the watches, or format text.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use corral_proto::OpCode;

use super::snapshot::{AdminSnapshot, ConnectionInfo, ExpirySet, Needs, WatchSummary};
use super::words;
use crate::consensus::StorageStats;
use crate::shared::registry::ConnHandle;
use crate::shared::{now_ms, Shared};
use crate::watch::{ConnId, Table};

/// The ZooKeeper release corral's admin output claims to be, so version parsers (kazoo's
/// `zookeeper.version=(\d+\.\d+\.\d+)`, feature checks on 3.5/3.6) treat it as 3.8.
pub(crate) const ZK_COMPAT_VERSION: &str = "3.8.0";

/// The full version string in ZooKeeper's shape: `3.8.0-corral-<version>, built on <date>`.
/// The date comes from `CORRAL_BUILD_DATE` at compile time, if the build sets it.
pub(crate) fn full_version() -> String {
    format!(
        "{ZK_COMPAT_VERSION}-corral-{}, built on {}",
        env!("CARGO_PKG_VERSION"),
        option_env!("CORRAL_BUILD_DATE").unwrap_or("unknown")
    )
}

/// Reads what `needs` asks for, each part under its own lock and for no longer than it takes
/// to count or copy it.
pub(crate) fn gather(keeper: &Shared, needs: Needs) -> AdminSnapshot {
    let mut snap = AdminSnapshot {
        version: full_version(),
        serving: keeper.read_only() || keeper.consensus().is_some_and(|c| c.role().is_some()),
        server_state: if keeper.read_only() {
            "read-only"
        } else {
            keeper
                .consensus()
                .and_then(|c| c.role())
                .unwrap_or("standalone")
        }
        .into(),
        read_only: keeper.read_only(),
        trace_mask: words::trace_mask(),
        ..AdminSnapshot::default()
    };
    // No lock: the storage's own counters, files and /proc.
    let storage = (needs.dir_sizes || needs.monitor)
        .then(|| keeper.consensus().map(|c| c.storage_stats()))
        .flatten();
    if needs.dir_sizes {
        (snap.data_dir_size, snap.log_dir_size) = dir_sizes(keeper, storage.as_ref());
    }
    if needs.config {
        snap.config_lines = keeper
            .config
            .conf_lines(snap.data_dir_size, snap.log_dir_size);
    }
    if needs.environment {
        snap.environment = environment();
    }
    // The registry: handles copied out under its lock, read after.
    if needs.connections {
        let handles: Vec<_> = keeper.conns().handles().cloned().collect();
        snap.connections = handles.iter().map(|c| connection_info(c)).collect();
        snap.connections
            .sort_by_key(|c| (c.established_ms, c.session_id));
    }
    if needs.counters {
        // Every open connection from accept, sessions or not, the asking one included, as
        // ZooKeeper counts them.
        snap.num_alive_connections = keeper.stats.open_connections.load(Ordering::Relaxed);
        server_counters(keeper, &mut snap);
    }
    // The session tracker.
    if needs.dump {
        snap.session_expiry = session_expiry(keeper);
    }
    if needs.monitor {
        let sessions = {
            let s = keeper.sessions();
            SessionFigures {
                expired: s.expired_total,
                stalls: s.stalls_detected,
                stalled_ms: s.stalled_total.as_millis(),
                recent_stalls: s.recent_stalls(tokio::time::Instant::now()),
            }
        };
        snap.metrics = corral_metrics(keeper, sessions, storage.as_ref());
        snap.open_file_descriptors = open_fds();
        snap.max_file_descriptors = max_fds();
        snap.uptime_ms = keeper.started.elapsed().as_millis() as u64;
    }
    // The state lock, once. The watch listings need each connection's session: copied from
    // the registry before, so that the registry's lock is never held under the state's.
    let watches = needs.data_watches || needs.watch_summary;
    let session_of: HashMap<ConnId, i64> = if watches {
        keeper.conns().sessions().collect()
    } else {
        HashMap::new()
    };
    if needs.obituaries {
        snap.obituaries = keeper.state().tree.obituaries().cloned().collect();
    }
    if needs.tree || needs.monitor || needs.dump || watches {
        let st = keeper.state();
        if needs.tree {
            snap.zxid = st.tree.last_zxid();
            snap.node_count = st.tree.node_count() as u64;
        }
        if needs.monitor {
            snap.approximate_data_size = st.tree.approximate_data_size();
            snap.ephemerals_count = st.tree.ephemeral_count() as u64;
            snap.watch_count = st.watches.total() as u64;
            snap.global_sessions = st.tree.sessions().count() as u64;
        }
        if needs.dump {
            snap.ephemerals = st
                .tree
                .sessions()
                .filter(|(_, s)| !s.ephemerals.is_empty())
                .map(|(id, s)| (*id, s.ephemerals.iter().cloned().collect()))
                .collect();
        }
        if needs.data_watches {
            snap.data_watches = st
                .watches
                .entries()
                .filter(|(_, table, _)| *table == Table::Data)
                .filter_map(|(conn, _, path)| Some((*session_of.get(&conn)?, path.to_string())))
                .collect();
        }
        if needs.watch_summary {
            // Counts from the registry's own tables: no path is read, let alone copied. A
            // connection's watches are removed before it leaves the connection registry, so
            // every watch counted has a session.
            let (conns, paths, watches) = st.watches.census(Table::Data);
            drop(st);
            let sessions: HashSet<i64> = conns
                .iter()
                .filter_map(|c| session_of.get(c))
                .copied()
                .collect();
            snap.data_watch_summary = WatchSummary {
                sessions: sessions.len() as u64,
                paths: paths as u64,
                watches: watches as u64,
            };
        }
    }
    snap
}

/// One connection's `cons` figures, read from its atomics.
fn connection_info(c: &ConnHandle) -> ConnectionInfo {
    let s = &c.stats;
    let requests = s.requests.load(Ordering::Relaxed);
    let answered = requests > 0;
    let last_op = OpCode::from_i32(s.last_op.load(Ordering::Relaxed))
        .and_then(OpCode::short_name)
        .unwrap_or("NA");
    ConnectionInfo {
        remote: c.remote,
        interest_ops: u32::from(c.out.is_reading()),
        queued: c.out.queued_frames() as u64,
        received: s.packets_received.load(Ordering::Relaxed),
        sent: s.packets_sent.load(Ordering::Relaxed),
        session_id: c.session_id,
        last_op: last_op.to_string(),
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
}

/// The server-wide counters `srvr`, `stat` and `mntr` print.
fn server_counters(keeper: &Shared, snap: &mut AdminSnapshot) {
    let stats = &keeper.stats;
    let count = stats.latency_count.load(Ordering::Relaxed);
    snap.latency_min_ms = stats.latency_min_ms.load(Ordering::Relaxed);
    snap.latency_avg_ms = if count == 0 {
        0.0
    } else {
        stats.latency_total_ms.load(Ordering::Relaxed) as f64 / count as f64
    };
    snap.latency_max_ms = stats.latency_max_ms.load(Ordering::Relaxed);
    snap.packets_received = stats.packets_received.load(Ordering::Relaxed);
    snap.packets_sent = stats.packets_sent.load(Ordering::Relaxed);
    snap.outstanding_requests = keeper.outstanding.count();
}

/// Live sessions grouped by the wall-clock instant they expire, earliest first (`dump`).
fn session_expiry(keeper: &Shared) -> Vec<ExpirySet<i64>> {
    let now = tokio::time::Instant::now();
    let wall = now_ms();
    let to_wall = |deadline: tokio::time::Instant| -> i64 {
        if deadline >= now {
            wall + deadline.duration_since(now).as_millis() as i64
        } else {
            wall - now.duration_since(deadline).as_millis() as i64
        }
    };
    let mut expiry: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for (id, l) in keeper.sessions().iter() {
        expiry.entry(to_wall(l.deadline)).or_default().push(*id);
    }
    expiry
        .into_iter()
        .map(|(expire_at_ms, mut members)| {
            members.sort();
            ExpirySet {
                expire_at_ms,
                members,
            }
        })
        .collect()
}

/// What `mntr` reports of the session tracker.
struct SessionFigures {
    /// Sessions ended by expiry since start.
    expired: u64,
    stalls: u64,
    stalled_ms: u128,
    /// The longest of the recent stalls, and how long ago the latest ended.
    recent_stalls: Option<(Duration, Duration)>,
}

/// corral's own `mntr` lines (and `zk_snap_count`, `zk_fsync_threshold_exceed_count`, which
/// replace ZooKeeper's defaults), in a fixed order.
fn corral_metrics(
    keeper: &Shared,
    sessions: SessionFigures,
    storage: Option<&StorageStats>,
) -> Vec<(String, String)> {
    let stats = &keeper.stats;
    // -1 before the first stall: mntr's values stay numbers.
    let (longest_stall_ms, last_stall_age_ms) =
        sessions.recent_stalls.map_or((-1, -1), |(longest, age)| {
            (longest.as_millis() as i64, age.as_millis() as i64)
        });
    let mut metrics = vec![
        (
            "zk_corral_sessions_expired_total",
            sessions.expired.to_string(),
        ),
        (
            "zk_corral_keeper_stalls_detected",
            sessions.stalls.to_string(),
        ),
        (
            "zk_corral_keeper_stalled_ms_total",
            sessions.stalled_ms.to_string(),
        ),
        (
            "zk_corral_keeper_longest_recent_stall_ms",
            longest_stall_ms.to_string(),
        ),
        (
            "zk_corral_keeper_last_stall_age_ms",
            last_stall_age_ms.to_string(),
        ),
        (
            "zk_corral_connections_rejected_total",
            stats
                .rejected_connections
                .load(Ordering::Relaxed)
                .to_string(),
        ),
        (
            "zk_corral_handshake_timeouts_total",
            stats.handshake_timeouts.load(Ordering::Relaxed).to_string(),
        ),
        (
            "zk_corral_slow_connections_closed_total",
            stats
                .slow_connections_closed
                .load(Ordering::Relaxed)
                .to_string(),
        ),
        ("zk_snap_count", keeper.config.snap_count.to_string()),
    ];
    if let Some((learners, synced)) = keeper.consensus().and_then(|c| c.followers()) {
        // The leader's view of its followers (ZooKeeper 3.8 prints these on the leader only;
        // zk_followers is the older name of zk_learners).
        metrics.extend([
            ("zk_learners", learners.to_string()),
            ("zk_followers", learners.to_string()),
            ("zk_synced_followers", synced.to_string()),
            ("zk_pending_syncs", "0".to_string()),
        ]);
    }
    if let Some(s) = storage {
        // Storage health: what an operator checks when writes slow down or fail.
        metrics.extend([
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
                "zk_corral_last_snapshot_index",
                s.last_snapshot_index.to_string(),
            ),
            (
                "zk_corral_writes_blocked",
                u8::from(s.writes_blocked).to_string(),
            ),
        ]);
    }
    metrics
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

/// `dirs` reports snapshot bytes as the data dir and log bytes as the log dir, as ZooKeeper
/// does; without storage (not started yet) the directories' sizes on disk.
fn dir_sizes(keeper: &Shared, storage: Option<&StorageStats>) -> (u64, u64) {
    match storage {
        Some(s) => (s.snapshot_bytes, s.log_bytes),
        None => {
            let d = dir_size(&keeper.config.data_dir);
            let log = keeper.config.data_log_dir.as_deref().map_or(d, dir_size);
            (d, log)
        }
    }
}

/// Sizes of the files under a directory, recursively.
fn dir_size(path: &Path) -> u64 {
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

/// The `envi` lines corral can report truthfully, in ZooKeeper's order and naming (there is
/// no JVM, so the `java.*` lines are left out).
pub(crate) fn environment() -> Vec<(String, String)> {
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
    use std::sync::mpsc;
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use corral_proto::{open_acl_unsafe, CreateMode, CreateRequest, ErrorCode, Request};
    use corral_tree::{Entry, EntryOp};

    use super::{gather, ConnHandle, Needs, Shared, Table, WatchSummary};
    use crate::config::{Config, FOUR_LETTER_WORDS};
    use crate::outbound::OutQueue;
    use crate::watch::Mode;

    const SESSIONS: i64 = 3;
    const PER_SESSION: usize = 4;

    /// A keeper (no consensus) whose tree holds `SESSIONS` sessions with `PER_SESSION`
    /// ephemerals each, and whose connections, one per session, hold a data watch on each
    /// of those and a child watch on `/`.
    fn loaded() -> Shared {
        let keeper = Shared::new(Config::default());
        let mut zxid = 0;
        for session in 1..=SESSIONS {
            let mut st = keeper.state();
            let mut apply = |op: EntryOp| {
                zxid += 1;
                let entry = Entry {
                    session_id: session,
                    time_ms: 1,
                    identities: Vec::new(),
                    op,
                };
                assert_eq!(st.tree.apply(zxid, &entry).err, ErrorCode::Ok);
            };
            apply(EntryOp::CreateSession {
                session_id: session,
                timeout_ms: 10_000,
                passwd: vec![0; 16],
            });
            for n in 0..PER_SESSION {
                apply(EntryOp::Request(Request::Create(CreateRequest {
                    path: format!("/e{session}-{n}"),
                    data: Some(Vec::new()),
                    acl: open_acl_unsafe(),
                    flags: CreateMode::Ephemeral as i32,
                })));
            }
            let conn = session as u64;
            for n in 0..PER_SESSION {
                let path = format!("/e{session}-{n}");
                st.watches.add(conn, Table::Data, &path, Mode::Standard);
            }
            st.watches.add(conn, Table::Child, "/", Mode::Standard);
            drop(st);
            let (out, _reader) = OutQueue::new(keeper.queue_limits());
            keeper.conns().attach(
                conn,
                ConnHandle {
                    read_only: false,
                    out,
                    remote: "127.0.0.1:2000".parse().expect("addr"),
                    session_id: session,
                    timeout_ms: 10_000,
                    established: SystemTime::now(),
                    stats: Arc::default(),
                },
            );
        }
        keeper
    }

    #[test]
    fn mntr_counts_watches_and_ephemerals_without_copying_a_path() {
        let keeper = loaded();
        let all = (SESSIONS as usize * PER_SESSION) as u64;
        keeper
            .stats
            .open_connections
            .store(SESSIONS as u64 + 1, std::sync::atomic::Ordering::Relaxed);
        let snap = gather(&keeper, Needs::of("mntr"));
        assert_eq!(snap.ephemerals_count, all);
        // Child watches count in zk_watch_count.
        assert_eq!(snap.watch_count, all + SESSIONS as u64);
        assert_eq!(snap.global_sessions, SESSIONS as u64);
        assert_eq!(snap.num_alive_connections, SESSIONS as u64 + 1);
        assert!(snap.data_watches.is_empty() && snap.ephemerals.is_empty());
        assert!(snap.connections.is_empty());
        let srvr = gather(&keeper, Needs::of("srvr"));
        // `/` and /zookeeper with its quota and config nodes, then the ephemerals.
        assert_eq!(srvr.node_count, 4 + all);
        assert!(srvr.data_watches.is_empty() && srvr.ephemerals.is_empty());
        assert_eq!((srvr.watch_count, srvr.ephemerals_count), (0, 0));
    }

    #[test]
    fn the_listings_copy_what_they_print_and_wchs_counts_the_same() {
        let keeper = loaded();
        let all = SESSIONS as usize * PER_SESSION;
        let wchc = gather(&keeper, Needs::of("wchc"));
        assert_eq!(wchc.data_watches.len(), all);
        assert!(wchc.data_watches.contains(&(2, "/e2-3".to_string())));
        let wchs = gather(&keeper, Needs::of("wchs"));
        assert!(wchs.data_watches.is_empty());
        assert_eq!(
            wchs.data_watch_summary,
            WatchSummary {
                sessions: SESSIONS as u64,
                paths: all as u64,
                watches: all as u64,
            }
        );
        let dump = gather(&keeper, Needs::of("dump"));
        let listed: usize = dump.ephemerals.iter().map(|(_, p)| p.len()).sum();
        assert_eq!(listed, all);
        assert_eq!(gather(&keeper, Needs::of("cons")).connections.len(), 3);
    }

    #[test]
    fn words_that_print_neither_tree_nor_watches_never_take_the_state_lock() {
        let keeper = Arc::new(loaded());
        let lock_free: Vec<&str> = FOUR_LETTER_WORDS
            .iter()
            .copied()
            .filter(|w| {
                let n = Needs::of(w);
                !(n.tree
                    || n.monitor
                    || n.dump
                    || n.data_watches
                    || n.watch_summary
                    || n.obituaries)
            })
            .collect();
        assert!(lock_free.contains(&"cons") && lock_free.contains(&"ruok"));
        let held = keeper.state();
        let (done, finished) = mpsc::channel();
        let asker = Arc::clone(&keeper);
        let words: Vec<String> = lock_free.iter().map(|w| w.to_string()).collect();
        std::thread::spawn(move || {
            for w in &words {
                let _ = gather(&asker, Needs::of(w));
            }
            let _ = done.send(());
        });
        assert!(
            finished.recv_timeout(Duration::from_secs(10)).is_ok(),
            "one of {lock_free:?} waited for the state lock"
        );
        drop(held);
    }
}
