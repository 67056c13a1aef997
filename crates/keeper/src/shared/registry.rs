//! The connections of this keeper that hold a session: the handle through which frames are
//! queued to each, which connection holds which session, and each connection's statistics
//! for `cons` (atomics, updated without a lock). Must not: hold the state lock's data; the
//! registry's own lock may be taken under the state lock, never the other way round.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI32, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::SystemTime;

use super::now_ms;
use crate::outbound::OutQueue;
use crate::watch::ConnId;

/// One connection with a session, as the apply path and the admin words see it.
pub(crate) struct ConnHandle {
    pub out: Arc<OutQueue>,
    pub remote: SocketAddr,
    pub session_id: i64,
    pub timeout_ms: i32,
    pub established: SystemTime,
    pub stats: Arc<ConnStats>,
    /// A read-only session of a member cut off from the quorum: local to this member.
    pub read_only: bool,
}

/// `cons` figures of one connection. `min_latency_ms` is u64::MAX until the first request.
pub(crate) struct ConnStats {
    pub packets_received: AtomicU64,
    pub packets_sent: AtomicU64,
    pub requests: AtomicU64,
    /// Opcode of the last request answered; [`ConnStats::NO_OP`] before the first.
    pub last_op: AtomicI32,
    pub last_cxid: AtomicI32,
    pub last_zxid: AtomicI64,
    /// Wall-clock ms of the last reply; 0 before the first.
    pub last_response_ms: AtomicI64,
    pub last_latency_ms: AtomicU64,
    pub min_latency_ms: AtomicU64,
    pub max_latency_ms: AtomicU64,
    pub total_latency_ms: AtomicU64,
}

impl Default for ConnStats {
    fn default() -> Self {
        ConnStats {
            packets_received: AtomicU64::new(0),
            packets_sent: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            last_op: AtomicI32::new(Self::NO_OP),
            last_cxid: AtomicI32::new(0),
            last_zxid: AtomicI64::new(0),
            last_response_ms: AtomicI64::new(0),
            last_latency_ms: AtomicU64::new(0),
            min_latency_ms: AtomicU64::new(u64::MAX),
            max_latency_ms: AtomicU64::new(0),
            total_latency_ms: AtomicU64::new(0),
        }
    }
}

impl ConnStats {
    /// No opcode is this; `cons` shows "NA" for it.
    pub const NO_OP: i32 = i32::MIN;

    /// One answered request (a ping counts as a packet only).
    pub fn answered(&self, op: i32, xid: i32, zxid: i64, latency_ms: u64, ping: bool) {
        self.last_zxid.store(zxid, Relaxed);
        if ping {
            return;
        }
        self.requests.fetch_add(1, Relaxed);
        self.last_op.store(op, Relaxed);
        self.last_cxid.store(xid, Relaxed);
        self.last_latency_ms.store(latency_ms, Relaxed);
        self.total_latency_ms.fetch_add(latency_ms, Relaxed);
        self.max_latency_ms.fetch_max(latency_ms, Relaxed);
        self.min_latency_ms.fetch_min(latency_ms, Relaxed);
        self.last_response_ms.store(now_ms(), Relaxed);
    }

    /// `crst`.
    pub fn reset(&self) {
        for a in [
            &self.packets_received,
            &self.packets_sent,
            &self.requests,
            &self.total_latency_ms,
            &self.max_latency_ms,
            &self.last_latency_ms,
        ] {
            a.store(0, Relaxed);
        }
        self.min_latency_ms.store(u64::MAX, Relaxed);
    }
}

#[derive(Default)]
pub(crate) struct ConnRegistry {
    by_id: HashMap<ConnId, Arc<ConnHandle>>,
    by_session: HashMap<i64, ConnId>,
}

impl ConnRegistry {
    /// Registers a connection for its session; returns the connection that held the
    /// session before, if another did (the caller closes it).
    pub fn attach(&mut self, id: ConnId, handle: ConnHandle) -> Option<Arc<ConnHandle>> {
        let previous = self
            .by_session
            .insert(handle.session_id, id)
            .filter(|old| *old != id)
            .and_then(|old| self.by_id.get(&old).cloned());
        self.by_id.insert(id, Arc::new(handle));
        previous
    }

    /// Forgets a connection that ended.
    pub fn detach(&mut self, id: ConnId) {
        if let Some(h) = self.by_id.remove(&id) {
            if self.by_session.get(&h.session_id) == Some(&id) {
                self.by_session.remove(&h.session_id);
            }
        }
    }

    /// The session ended: the connection that held it, if any, no longer does.
    pub fn detach_session(&mut self, session_id: i64) -> Option<Arc<ConnHandle>> {
        let id = self.by_session.remove(&session_id)?;
        self.by_id.get(&id).cloned()
    }

    pub fn get(&self, id: ConnId) -> Option<&Arc<ConnHandle>> {
        self.by_id.get(&id)
    }

    pub fn handles(&self) -> impl Iterator<Item = &Arc<ConnHandle>> {
        self.by_id.values()
    }

    /// Each connection and the session it holds, for the watch listings.
    pub fn sessions(&self) -> impl Iterator<Item = (ConnId, i64)> + '_ {
        self.by_id.iter().map(|(id, h)| (*id, h.session_id))
    }
}
