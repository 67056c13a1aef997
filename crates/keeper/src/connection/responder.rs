//! The responder of a connection: answers what the reader took in, in arrival order — a
//! write once consensus has applied it, a local request once every earlier write of this
//! connection is applied — and keeps the connection's and the keeper's statistics. Must
//! not: read the socket, or answer a request before one that arrived earlier.

use std::sync::Arc;
use std::time::Instant;

use corral_proto::{ErrorCode, Id, OpCode, Request, Response};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use super::handshake::Attached;
use super::Link;
use crate::consensus::Submitted;

/// A request the reader has taken in, answered by the responder in arrival order.
pub(super) enum Deferred {
    /// Already handed to consensus, in order; the reply waits for its commit.
    Write {
        xid: i32,
        op: i32,
        submitted: Submitted,
        started: Instant,
        close_after: bool,
    },
    /// Served from the local tree once every earlier write of this connection is applied.
    Local {
        xid: i32,
        op: i32,
        req: Request,
        identities: Vec<Id>,
        started: Instant,
        served: oneshot::Sender<()>,
    },
    /// An answer decided at arrival (refusals, bad requests), kept in order.
    Reply {
        xid: i32,
        zxid: i64,
        err: ErrorCode,
        close: Option<&'static str>,
    },
}

/// The state local requests are answered with.
pub(super) struct Responder {
    pub link: Arc<Link>,
    pub session_id: i64,
    /// The identities the reader had when it took the request in.
    pub identities: Vec<Id>,
}

pub(super) async fn run(link: Arc<Link>, session: Attached, mut queue: mpsc::Receiver<Deferred>) {
    let mut responder = Responder {
        link,
        session_id: session.session_id,
        identities: Vec::new(),
    };
    let link = Arc::clone(&responder.link);
    while let Some(d) = queue.recv().await {
        // Nothing is answered while the client is not reading what it was sent.
        link.out.wait_for_space().await;
        let go_on = responder.answer(d).await;
        link.keeper.outstanding.done(&link.in_flight);
        if !go_on {
            // Whatever is still queued will not be answered: stop counting it.
            queue.close();
            while queue.try_recv().is_ok() {
                link.keeper.outstanding.done(&link.in_flight);
            }
            return;
        }
    }
}

impl Responder {
    /// Answers one request; false when the connection must close after it.
    async fn answer(&mut self, d: Deferred) -> bool {
        let link = Arc::clone(&self.link);
        match d {
            Deferred::Write {
                xid,
                op,
                submitted,
                started,
                close_after,
            } => {
                match submitted.wait().await {
                    Ok((zxid, res)) if op == OpCode::Check.code() && res.err == ErrorCode::Ok => {
                        // ZooKeeper 3.8 applies a check sent outside a multi (spending a
                        // zxid) and, when it succeeds, fails to serialize its reply and sends
                        // none; a check that fails is answered with its error. Same here.
                        warn!(remote = %link.remote, "check outside a multi succeeded; answered with no reply, as ZooKeeper 3.8 does");
                        self.record(op, xid, zxid, started);
                    }
                    Ok((zxid, res)) => {
                        link.reply(xid, zxid, res.err, &res.response);
                        self.record(op, xid, zxid, started);
                    }
                    Err(e) => {
                        warn!(remote = %link.remote, "write could not be committed: {e}; closing connection");
                        link.close("write failed");
                        return false;
                    }
                }
                if close_after {
                    link.close("session closed by client");
                    return false;
                }
                true
            }
            Deferred::Local {
                xid,
                op,
                req,
                identities,
                started,
                served,
            } => {
                self.identities = identities;
                if matches!(req, Request::Sync(_)) {
                    // In an ensemble, first catch up with what the leader has committed.
                    if let Some(c) = link.keeper.consensus() {
                        if let Err(e) = c.catch_up().await {
                            warn!(remote = %link.remote, "sync could not catch up with the leader: {e}; closing connection");
                            link.close("sync failed");
                            let _ = served.send(());
                            return false;
                        }
                    }
                }
                self.dispatch(xid, req);
                let _ = served.send(());
                self.record(op, xid, link.last_zxid(), started);
                true
            }
            Deferred::Reply {
                xid,
                zxid,
                err,
                close,
            } => {
                link.reply(xid, zxid, err, &Response::Empty);
                match close {
                    Some(why) => {
                        link.close(why);
                        false
                    }
                    None => true,
                }
            }
        }
    }

    /// Per-connection and server-wide figures for cons/srvr/mntr, atomics only (pings count
    /// as packets, not as latency samples).
    fn record(&self, op: i32, xid: i32, zxid: i64, started: Instant) {
        let ping = op == OpCode::Ping.code();
        let ms = started.elapsed().as_millis() as u64;
        if !ping {
            self.link.keeper.stats.record_latency(ms);
        }
        self.link.stats.answered(op, xid, zxid, ms, ping);
    }
}
