//! Server-wide counters for `srvr`, `stat` and `mntr`, and the throttled log lines that go
//! with them. Atomics only: counting never takes a lock on the request path.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::warn;

#[derive(Default)]
pub struct ServerStats {
    pub packets_received: AtomicU64,
    pub packets_sent: AtomicU64,
    pub latency_total_ms: AtomicU64,
    pub latency_count: AtomicU64,
    pub latency_max_ms: AtomicU64,
    pub latency_min_ms: AtomicU64,
    /// Connections open now, from accept (or a stream handed in) to teardown, sessions or
    /// not, as ZooKeeper counts `zk_num_alive_connections` (the asking one included).
    pub open_connections: AtomicU64,
    /// Connections refused at accept: their address was at maxClientCnxns.
    pub rejected_connections: AtomicU64,
    /// Connections that did not complete a handshake within the bound.
    pub handshake_timeouts: AtomicU64,
    /// Connections closed because their client did not read what it was sent.
    pub slow_connections_closed: AtomicU64,
    /// A flood of refusals, handshake timeouts or quota warnings logs one line per interval
    /// for each kind, not one per event.
    rejections_log: LogEvery,
    handshake_timeouts_log: LogEvery,
    /// One throttle per kind of quota warning (its text with the figures left out), as
    /// ZooKeeper's rate logger repeats only a message that changed.
    quota_warnings_log: Mutex<HashMap<String, Arc<LogEvery>>>,
}

/// At most one log line per interval for one kind of event, saying how many it stands for.
#[derive(Default)]
pub(crate) struct LogEvery {
    last_ms: AtomicU64,
    pending: AtomicU64,
}

impl LogEvery {
    const INTERVAL_MS: u64 = 10_000;

    /// Counts one event at `now_ms` (> 0); `Some(n)` when a line is due, `n` being the
    /// events since the last line (this one included).
    pub(crate) fn event(&self, now_ms: u64) -> Option<u64> {
        self.pending.fetch_add(1, Ordering::AcqRel);
        let last = self.last_ms.load(Ordering::Acquire);
        if last != 0 && now_ms.saturating_sub(last) < Self::INTERVAL_MS {
            return None;
        }
        self.last_ms
            .compare_exchange(last, now_ms.max(1), Ordering::AcqRel, Ordering::Acquire)
            .ok()?;
        Some(self.pending.swap(0, Ordering::AcqRel))
    }
}

impl ServerStats {
    pub fn record_latency(&self, ms: u64) {
        self.latency_total_ms.fetch_add(ms, Ordering::Relaxed);
        let n = self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_max_ms.fetch_max(ms, Ordering::Relaxed);
        if n == 0 {
            self.latency_min_ms.store(ms, Ordering::Relaxed);
        } else {
            self.latency_min_ms.fetch_min(ms, Ordering::Relaxed);
        }
    }

    /// `srst`.
    pub fn reset(&self) {
        for a in [
            &self.packets_received,
            &self.packets_sent,
            &self.latency_total_ms,
            &self.latency_count,
            &self.latency_max_ms,
            &self.latency_min_ms,
        ] {
            a.store(0, Ordering::Relaxed);
        }
    }

    /// A connection refused at accept (`uptime_ms` dates the log throttle).
    pub(crate) fn note_rejected_connection(&self, remote: SocketAddr, limit: u32, uptime_ms: u64) {
        self.rejected_connections.fetch_add(1, Ordering::Relaxed);
        if let Some(n) = self.rejections_log.event(uptime_ms) {
            warn!(%remote, "too many connections from {} - max is {limit} ({n} refused since the last such line)", remote.ip());
        }
    }

    pub(crate) fn note_handshake_timeout(
        &self,
        remote: SocketAddr,
        bound: Duration,
        uptime_ms: u64,
    ) {
        self.handshake_timeouts.fetch_add(1, Ordering::Relaxed);
        if let Some(n) = self.handshake_timeouts_log.event(uptime_ms) {
            let bound = bound.as_millis();
            warn!(%remote, "no handshake within {bound} ms; closing the connection ({n} such since the last such line)");
        }
    }

    /// What ZooKeeper would log about quotas, at most one line per interval: soft limits
    /// exist to be exceeded, and a line per write would flood the log.
    pub(crate) fn log_quota_warnings(
        &self,
        warnings: &[corral_tree::QuotaWarning],
        uptime_ms: u64,
    ) {
        for w in warnings {
            let text = w.to_string();
            let kind: String = text.chars().filter(|c| !c.is_ascii_digit()).collect();
            let throttle = {
                let mut map = self
                    .quota_warnings_log
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                Arc::clone(map.entry(kind).or_default())
            };
            match throttle.event(uptime_ms) {
                Some(1) => warn!("{text}"),
                Some(n) => warn!("{text} ({n} such warnings since the last one logged)"),
                None => {}
            }
        }
    }
}
