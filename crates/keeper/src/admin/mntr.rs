//! `mntr`: ZooKeeper 3.8's key list, in its order, with the value a fresh server shows for
//! every key corral has no figure for, so that exporters scraping it find every key they
//! expect; then corral's own metrics.
//!
//! Owns the key list and its text. Must never: read live state (the figures come in the
//! [`AdminSnapshot`]), or drop or reorder one of ZooKeeper's keys.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::java::{java_double, round4};
use super::snapshot::AdminSnapshot;

/// The `mntr` keys ZooKeeper 3.8 prints before its summary metrics, in its order, with the value
/// a fresh server shows. Summary/quantile metrics (avg/min/max/cnt/sum/pNN of ~90 internal
/// timers) are not reproduced; corral reports its own through `AdminSnapshot::metrics`.
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

/// `mntr`: every key of [`MNTR_KEYS`] in its order, then corral's own metrics.
pub(crate) fn monitor(out: &mut String, snap: &AdminSnapshot) {
    for (key, value) in values(snap) {
        let _ = writeln!(out, "{key}\t{value}");
    }
}

/// `mntr`'s (key, value) pairs in its order: what the word prints, the admin server's
/// `monitor` returns and `/metrics` exports.
pub(crate) fn values(snap: &AdminSnapshot) -> Vec<(&str, String)> {
    let mut pairs = Vec::with_capacity(MNTR_KEYS.len() + snap.metrics.len());
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
            pairs.push((*key, value));
        }
    }
    for (key, value) in &snap.metrics {
        if !MNTR_KEYS.iter().any(|(k, _)| k == key) {
            pairs.push((key.as_str(), value.clone()));
        }
    }
    pairs
}
