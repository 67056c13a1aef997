//! The reader of a connection with a session: takes requests in, in order. A write is
//! submitted to consensus on arrival (so one connection keeps many in flight and they share
//! group-commit fsyncs), auth is handled on arrival (so the writes after it carry the new
//! identity), and everything goes to the responder in arrival order. Back-pressure: nothing
//! more is read while the client is not reading its replies, or while the keeper as a whole
//! has `globalOutstandingLimit` requests outstanding. Must not: answer a request out of order.

use std::sync::Arc;
use std::time::Instant;

use corral_proto::frame::FrameBuffer;
use corral_proto::jute::{Jute, Reader};
use corral_proto::{ErrorCode, Id, OpCode, Request, RequestHeader, Response};
use corral_tree::{Entry, EntryOp};
use tokio::io::AsyncRead;
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use super::handshake::Attached;
use super::responder::{self, Deferred};
use super::{read_more, Close, Link};
use crate::shared::now_ms;

/// How many requests of one connection may be in flight before the reader stops reading:
/// pipelining without letting one client queue unbounded work.
const PIPELINE_DEPTH: usize = 1024;

enum Flow {
    Continue,
    Close(Close),
}

struct Intake {
    link: Arc<Link>,
    session_id: i64,
    read_only: bool,
    identities: Vec<Id>,
    /// Requests on their way to the responder, in arrival order.
    pipe: mpsc::Sender<Deferred>,
    /// Answered when the last read handed to the responder has been served. A write must not
    /// be applied before an earlier read of the same connection is answered, or that read
    /// would see a later write (ZooKeeper serves it from the state between the two).
    last_local: Option<oneshot::Receiver<()>>,
}

/// Reads and routes requests until the connection ends, then lets the responder answer
/// what was already taken in (its writes commit regardless), so no read registers a watch
/// after the connection's watches are dropped.
pub(super) async fn run<R: AsyncRead + Unpin>(
    link: &Arc<Link>,
    session: Attached,
    rd: &mut R,
    buf: &mut FrameBuffer,
) -> Close {
    let (pipe, queue) = mpsc::channel(PIPELINE_DEPTH);
    let responder = tokio::spawn(responder::run(Arc::clone(link), session, queue));
    let mut intake = Intake {
        link: Arc::clone(link),
        session_id: session.session_id,
        read_only: session.read_only,
        identities: vec![Id {
            scheme: "ip".into(),
            id: link.remote.ip().to_string(),
        }],
        pipe,
        last_local: None,
    };
    let reason = intake.read_requests(rd, buf).await;
    drop(intake);
    let _ = responder.await;
    reason
}

impl Intake {
    async fn read_requests<R: AsyncRead + Unpin>(
        &mut self,
        rd: &mut R,
        buf: &mut FrameBuffer,
    ) -> Close {
        let link = Arc::clone(&self.link);
        let keeper = &link.keeper;
        let max = keeper.config.jute_max_buffer;
        loop {
            link.out.wait_for_space().await;
            if link.out.is_closed() {
                return format!("closed by server: {}", link.out.close_reason());
            }
            keeper.outstanding.wait_for_room(&link.in_flight).await;
            match buf.next_frame(max) {
                Ok(Some(body)) => {
                    if let Flow::Close(reason) = self.request(body).await {
                        return reason;
                    }
                    continue;
                }
                Ok(None) => {}
                Err(e) => {
                    warn!(remote = %link.remote, "malformed input: {e}; closing connection");
                    return format!("malformed input: {e}");
                }
            }
            tokio::select! {
                r = read_more(rd, buf) => if let Err(reason) = r {
                    return reason;
                },
                _ = link.out.closed() => {
                    return format!("closed by server: {}", link.out.close_reason())
                }
                _ = keeper.shutting_down() => return "the keeper is shutting down".into(),
            }
        }
    }

    async fn request(&mut self, body: &[u8]) -> Flow {
        let link = Arc::clone(&self.link);
        let keeper = &link.keeper;
        let started = Instant::now();
        let header = match RequestHeader::read(&mut Reader::new(body)) {
            Ok(h) => h,
            Err(e) => {
                warn!(remote = %link.remote, "malformed request header: {e}; closing connection");
                return Flow::Close(format!("malformed request header: {e}"));
            }
        };
        keeper
            .stats
            .packets_received
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        link.stats
            .packets_received
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let op_name = match OpCode::from_i32(header.op) {
            Some(OpCode::Ping) => "ping",
            Some(o) => o.name(),
            None => "unknown",
        };
        keeper
            .sessions()
            .touch(self.session_id, tokio::time::Instant::now(), op_name, None);
        let (xid, op) = (header.xid, header.op);
        let mut closing = None;
        let deferred = match Request::decode(op, &body[8..]) {
            // Handled on arrival, as ZooKeeper does, so the writes that follow carry the new
            // identity. The reply carries the request's xid, as ZooKeeper 3.8's does (seen:
            // auth sent with xid 5 is answered with xid 5): kazoo and the Java client send
            // -4, the zookeeper-client crate a counter xid it matches the reply by.
            Ok(Request::Auth(auth)) => return self.auth(xid, auth),
            Ok(Request::CloseSession) if self.read_only => {
                // A read-only session is this member's alone: closing it is closing the
                // connection, after its reply.
                closing = Some("client closed its read-only session".to_string());
                Deferred::Reply {
                    xid,
                    zxid: link.last_zxid(),
                    err: ErrorCode::Ok,
                    close: Some("read-only session closed by client"),
                }
            }
            Ok(req) if req.is_write() && self.read_only => Deferred::Reply {
                xid,
                zxid: link.last_zxid(),
                err: ErrorCode::NotReadOnly,
                close: None,
            },
            Ok(req) if req.is_write() && keeper.writes_blocked() => {
                // The log has no room (disk full): refuse before proposing, so nothing is
                // half-done, keep the connection, and let reads go on. SystemError is the one
                // code every client version knows.
                warn!(remote = %link.remote, op = req.op_code().name(), "write refused: the log's disk is full");
                Deferred::Reply {
                    xid,
                    zxid: link.last_zxid(),
                    err: ErrorCode::SystemError,
                    close: None,
                }
            }
            Ok(req) if req.is_write() => {
                let close_after = matches!(req, Request::CloseSession);
                let entry_op = if close_after {
                    closing = Some("client closed its session".to_string());
                    EntryOp::CloseSession {
                        session_id: self.session_id,
                        evidence: keeper.sessions().evidence(
                            self.session_id,
                            true,
                            tokio::time::Instant::now(),
                        ),
                    }
                } else {
                    EntryOp::Request(req)
                };
                let entry = Entry {
                    session_id: self.session_id,
                    time_ms: now_ms(),
                    identities: self.identities.clone(),
                    op: entry_op,
                };
                let Some(consensus) = keeper.consensus() else {
                    return Flow::Close("consensus not running".into());
                };
                if let Some(read) = self.last_local.take() {
                    // Dropped unanswered only when the responder has stopped; the send below
                    // then reports it.
                    let _ = read.await;
                }
                match consensus.submit(entry).await {
                    Ok(submitted) => Deferred::Write {
                        xid,
                        op,
                        submitted,
                        started,
                        close_after,
                    },
                    Err(e) => {
                        warn!(remote = %link.remote, "write could not be submitted: {e}; closing connection");
                        return Flow::Close(format!("write could not be submitted: {e}"));
                    }
                }
            }
            Ok(req) => {
                let (served, done) = oneshot::channel();
                // A later write must not apply before this is answered, or the answer could
                // show it. What reads neither the tree nor the watches need not hold it up:
                // a ping between two writes would otherwise keep them out of one fsync.
                if !matches!(req, Request::Ping | Request::WhoAmI | Request::Sasl(_)) {
                    self.last_local = Some(done);
                }
                Deferred::Local {
                    xid,
                    op,
                    req,
                    identities: self.identities.clone(),
                    started,
                    served,
                }
            }
            Err(corral_proto::DecodeError::UnknownOpCode(code)) => {
                // ZooKeeper answers an unknown opcode with Unimplemented, then hangs up.
                warn!(remote = %link.remote, op = code, "unknown opcode; closing connection");
                closing = Some(format!("unknown opcode {code}"));
                Deferred::Reply {
                    xid,
                    zxid: -1,
                    err: ErrorCode::Unimplemented,
                    close: Some("unknown opcode"),
                }
            }
            Err(e) => {
                // ZooKeeper answers a body it cannot decode with MarshallingError and keeps the
                // connection: the framing is intact, only this request is bad.
                warn!(remote = %link.remote, op, "undecodable request: {e}");
                Deferred::Reply {
                    xid,
                    zxid: link.last_zxid(),
                    err: ErrorCode::MarshallingError,
                    close: None,
                }
            }
        };
        keeper.outstanding.begin(&link.in_flight);
        if self.pipe.send(deferred).await.is_err() {
            keeper.outstanding.done(&link.in_flight);
            return Flow::Close("the responder stopped".into());
        }
        match closing {
            Some(reason) => Flow::Close(reason),
            None => Flow::Continue,
        }
    }

    fn auth(&mut self, xid: i32, auth: corral_proto::AuthPacket) -> Flow {
        let link = &self.link;
        let ok = match auth.scheme.as_str() {
            "digest" => match std::str::from_utf8(&auth.auth) {
                Ok(user_password) => {
                    let digest = corral_tree::acl::digest(user_password);
                    if link.keeper.config.super_digest.as_deref() == Some(digest.as_str()) {
                        let superuser = Id {
                            scheme: "super".into(),
                            id: String::new(),
                        };
                        super::identity::add(&mut self.identities, superuser);
                    }
                    let id = Id {
                        scheme: "digest".into(),
                        id: digest,
                    };
                    super::identity::add(&mut self.identities, id);
                    true
                }
                Err(_) => false,
            },
            // ZooKeeper's ip provider authenticates the connection's own address.
            "ip" => true,
            _ => false,
        };
        if ok {
            link.reply(xid, 0, ErrorCode::Ok, &Response::Empty);
            Flow::Continue
        } else {
            warn!(remote = %link.remote, scheme = auth.scheme, "authentication failed; closing connection");
            link.reply(xid, 0, ErrorCode::AuthFailed, &Response::Empty);
            link.close("auth failed");
            Flow::Close("authentication failed".into())
        }
    }
}
