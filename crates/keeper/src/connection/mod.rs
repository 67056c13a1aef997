//! One client connection, from its first bytes to its teardown:
//! - [`handshake`]: a four-letter word, or the connect request (new, resumed or expired
//!   session), within the handshake bound;
//! - [`reader`]: takes requests in, in order; writes are submitted to consensus at once,
//!   everything else is handed to the responder;
//! - [`responder`]: answers in arrival order, waiting for each write's commit;
//! - [`local`]: what is answered from this keeper's state (reads and their watches, pings,
//!   watch management, whoAmI);
//!
//! Every frame leaves through [`crate::outbound`]'s byte-bounded queue and its writer task.
//! Replies and watch events share that one queue, so a client always sees a watch event
//! before a reply that could show it the changed data. Bad input never reaches beyond this
//! connection: an oversized or malformed frame closes it with one log line. The transport is
//! any byte stream (a socket from the listener, a pipe in an in-process test).

mod handshake;
mod identity;
mod local;
mod reader;
mod responder;

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use corral_proto::frame::FrameBuffer;
use corral_proto::{ErrorCode, Response};
use corral_tree::obituary::ConnEventKind;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tracing::info;

use crate::outbound::{self, OutQueue, WriterEnd};
use crate::shared::registry::ConnStats;
use crate::shared::throttle::InFlight;
use crate::shared::Shared;
use crate::watch::ConnId;

/// Why a connection ends (logged once).
type Close = String;

/// What the reader and the responder of one connection share.
struct Link {
    keeper: Arc<Shared>,
    id: ConnId,
    remote: SocketAddr,
    out: Arc<OutQueue>,
    stats: Arc<ConnStats>,
    /// Requests taken in and not yet answered.
    in_flight: InFlight,
}

impl Link {
    fn send(&self, body: Vec<u8>) {
        // The reader and the responder wait for room before anything that answers a request
        // is produced, so a reply is always admitted; only events can overflow the queue.
        let _ = self.out.push_reply(body);
    }

    fn reply(&self, xid: i32, zxid: i64, err: ErrorCode, resp: &Response) {
        self.send(corral_proto::message::reply_body(xid, zxid, err, resp));
    }

    fn close(&self, why: &'static str) {
        self.out.close(why);
    }

    fn last_zxid(&self) -> i64 {
        self.keeper.last_zxid()
    }
}

/// Serves one connection until it ends. `_held` is kept till then (the listener's
/// maxClientCnxns slot, released when dropped).
pub(crate) async fn serve<R, W, H>(
    keeper: Arc<Shared>,
    mut rd: R,
    wr: W,
    remote: SocketAddr,
    _held: H,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
    H: Send + 'static,
{
    let _open = OpenConnection::count(&keeper);
    // Everything before a session exists (the first bytes, a four-letter word, the handshake)
    // must happen within this bound; then the connection is dropped.
    let deadline = tokio::time::Instant::now() + keeper.config.handshake_timeout();
    let mut buf = Vec::with_capacity(4096);
    let Some(wr) =
        handshake::four_letter_or_session(&keeper, &mut rd, &mut buf, wr, remote, deadline).await
    else {
        return;
    };
    let stats = Arc::new(ConnStats::default());
    let (out, queue_reader) = OutQueue::new(keeper.queue_limits());
    let writer = {
        let keeper = Arc::clone(&keeper);
        let stats = Arc::clone(&stats);
        tokio::spawn(async move {
            let counting = Arc::clone(&keeper);
            let end = outbound::write_loop(wr, queue_reader, remote, move || {
                // Every frame leaves through here, so this is where packets are counted:
                // replies, notifications and the connect response alike, as ZooKeeper does.
                counting.stats.packets_sent.fetch_add(1, Relaxed);
                stats.packets_sent.fetch_add(1, Relaxed);
            })
            .await;
            if matches!(end, WriterEnd::Overflowed | WriterEnd::Stalled) {
                keeper.stats.slow_connections_closed.fetch_add(1, Relaxed);
            }
        })
    };
    let link = Arc::new(Link {
        id: keeper.next_conn_id(),
        keeper: Arc::clone(&keeper),
        remote,
        out,
        stats,
        in_flight: InFlight::default(),
    });
    let mut buf = FrameBuffer::with(buf);
    let (session_id, reason) = match handshake::connect(&link, &mut rd, &mut buf, deadline).await {
        Ok(session) => {
            let reason = reader::run(&link, session, &mut rd, &mut buf).await;
            (session.session_id, reason)
        }
        Err(reason) => (0, reason),
    };
    info!(%remote, session = format!("0x{session_id:x}"), "connection closed: {reason}");
    if session_id != 0 {
        // Only a connection that attached a session was registered.
        keeper.state().watches.remove_connection(link.id);
        keeper.conns().detach(link.id);
        let moved = link.out.close_reason() == crate::outbound::SESSION_MOVED;
        let kind = if moved {
            ConnEventKind::Moved
        } else {
            ConnEventKind::Disconnected
        };
        keeper
            .sessions()
            .disconnected(session_id, link.id, kind, &reason, crate::shared::now_ms());
    }
    drop(link);
    let _ = writer.await;
}

/// Counts the connection in `open_connections` while it lives.
struct OpenConnection(Arc<Shared>);

impl OpenConnection {
    fn count(keeper: &Arc<Shared>) -> OpenConnection {
        keeper.stats.open_connections.fetch_add(1, Relaxed);
        OpenConnection(Arc::clone(keeper))
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.stats.open_connections.fetch_sub(1, Relaxed);
    }
}

/// Reads what the socket has into `buf`.
async fn read_more<R: AsyncRead + Unpin>(rd: &mut R, buf: &mut FrameBuffer) -> Result<(), Close> {
    let mut chunk = [0u8; 16 * 1024];
    match rd.read(&mut chunk).await {
        Ok(0) => Err("client closed the connection".into()),
        Ok(n) => {
            buf.extend(&chunk[..n]);
            Ok(())
        }
        Err(e) => Err(format!("read error: {e}")),
    }
}
