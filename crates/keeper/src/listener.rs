//! The client port: the listening socket, the accept loop and admission. A connection's
//! maxClientCnxns slot is taken here, when the socket is accepted and before a byte is read,
//! so sockets that never send anything cannot pile up past the limit (ZooKeeper counts at
//! accept too); a refused socket is dropped without spawning anything, so a flood of
//! connects drains from the listen queue as fast as it comes. Must not: read from a socket
//! (the connection task does).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tracing::warn;

use crate::shared::Shared;

/// The client port's listening socket, with room in its backlog for a burst of connects.
pub(crate) fn listen(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As TcpListener::bind does: a restarted keeper can take its port back at once.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

pub(crate) async fn accept_loop(keeper: Arc<Shared>, listener: TcpListener) {
    let mut failures = 0u64;
    let mut last_logged: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = keeper.shutting_down() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    if let Some(slot) = admit(&keeper, remote) {
                        let _ = stream.set_nodelay(true);
                        let (rd, wr) = stream.into_split();
                        let conn = crate::connection::serve(Arc::clone(&keeper), rd, wr, remote, slot);
                        keeper.spawn(conn);
                    }
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning, and say so once
                    // per interval; the connections already open go on being served.
                    failures += 1;
                    if last_logged.is_none_or(|t: Instant| t.elapsed() >= Duration::from_secs(10)) {
                        warn!("accept failed: {e} ({failures} failures since the last such line); backing off");
                        failures = 0;
                        last_logged = Some(Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// Takes the connection's maxClientCnxns slot. `None` means refused (the caller drops the
/// socket).
fn admit(keeper: &Arc<Shared>, remote: SocketAddr) -> Option<Admitted> {
    match std::num::NonZeroU32::new(keeper.config.max_client_cnxns) {
        None => Some(Admitted(None)),
        Some(limit) => match IpSlot::take(keeper, remote.ip(), limit.get()) {
            Some(slot) => Some(Admitted(Some(slot))),
            None => {
                keeper
                    .stats
                    .note_rejected_connection(remote, limit.get(), keeper.uptime_ms());
                None
            }
        },
    }
}

/// A connection let in by admission; holds its per-address slot until it ends (the slot is
/// released when this is dropped).
struct Admitted(#[allow(dead_code)] Option<IpSlot>);

/// A connection counted against its address's maxClientCnxns from accept until it ends.
struct IpSlot {
    keeper: Arc<Shared>,
    ip: IpAddr,
}

impl IpSlot {
    fn take(keeper: &Arc<Shared>, ip: IpAddr, limit: u32) -> Option<IpSlot> {
        let mut per_ip = keeper.conns_per_ip();
        let n = per_ip.entry(ip).or_insert(0);
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            keeper: Arc::clone(keeper),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut per_ip = self.keeper.conns_per_ip();
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}
