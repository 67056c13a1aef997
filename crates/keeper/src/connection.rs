//! One client connection: four-letter words, the handshake (new session, resumed session,
//! expired session), then requests answered in order — a ping touches the session as soon as
//! it arrives, reads are served from the local tree with their watches registered under the
//! same lock, writes are proposed through consensus. Replies and watch events leave through one queue, so a client always sees a
//! watch event before a reply that could show it the changed data.
//!
//! Bad input never reaches beyond this connection: an oversized or malformed frame closes it
//! with one log line.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use corral_proto::frame::FrameBuffer;
use corral_proto::jute::{Jute, Reader};
use corral_proto::{
    xid, ClientInfo, ConnectRequest, ConnectResponse, ErrorCode, EventType, Id, OpCode, Request,
    RequestHeader, Response, WatcherType,
};
use corral_tree::{Entry, EntryOp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;

use crate::outbound::{OutQueue, WriterEnd};
use crate::server::{event_frame, now_ms, ConnInfo, Keeper};
use crate::watch::{ConnId, Mode, Table};

/// Why a connection ends (logged once).
type Close = String;

/// Takes the connection's maxClientCnxns slot, in the accept loop itself: counted before a
/// byte is read, so that sockets that never send anything cannot pile up past the limit
/// (ZooKeeper counts at accept too), and refused without spawning anything, so a flood of
/// connects is drained from the listen queue as fast as it comes. `None` means refused (the
/// caller drops the socket).
pub fn admit(keeper: &Arc<Keeper>, remote: SocketAddr) -> Option<Admitted> {
    match std::num::NonZeroU32::new(keeper.config.max_client_cnxns) {
        None => Some(Admitted(None)),
        Some(limit) => match IpSlot::take(keeper, remote.ip(), limit.get()) {
            Some(slot) => Some(Admitted(Some(slot))),
            None => {
                keeper.note_rejected_connection(remote, limit.get());
                None
            }
        },
    }
}

/// A connection let in by [`admit`]; holds its per-address slot until it ends (the slot is
/// released when this is dropped).
pub struct Admitted(#[allow(dead_code)] Option<IpSlot>);

pub async fn serve(keeper: Arc<Keeper>, stream: TcpStream, remote: SocketAddr, _slot: Admitted) {
    let _ = stream.set_nodelay(true);
    let (mut rd, wr) = stream.into_split();
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    // Everything before a session exists (the first bytes, a four-letter word, the handshake)
    // must happen within this bound; then the connection is dropped.
    let handshake_deadline = tokio::time::Instant::now() + keeper.config.handshake_timeout();

    // The first four bytes of a connection are either a four-letter word or a frame length.
    let first_bytes =
        tokio::time::timeout_at(handshake_deadline, read_at_least(&mut rd, &mut buf, 4));
    let first_bytes = async {
        tokio::select! {
            r = first_bytes => r,
            _ = keeper.shutting_down() => Ok(Err(std::io::Error::other("the keeper is shutting down"))),
        }
    };
    match first_bytes.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            debug!(%remote, "connection closed before sending anything: {e}");
            return;
        }
        Err(_) => {
            keeper.note_handshake_timeout(remote);
            return;
        }
    }
    let first = [buf[0], buf[1], buf[2], buf[3]];
    if let Some(cmd) = crate::four_letter::recognize(first) {
        let mut extra = None;
        if crate::four_letter::needs_trace_mask(cmd) {
            let mask =
                tokio::time::timeout_at(handshake_deadline, read_at_least(&mut rd, &mut buf, 12));
            if !matches!(mask.await, Ok(Ok(()))) {
                return;
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[4..12]);
            extra = Some(b);
        }
        four_letter_word(&keeper, cmd, extra, wr, remote, handshake_deadline).await;
        return;
    }

    let conn_id = keeper.next_conn_id();
    let (out, queue_reader) = OutQueue::new(keeper.queue_limits());
    let writer = {
        let keeper = Arc::clone(&keeper);
        tokio::spawn(async move {
            let stats = Arc::clone(&keeper);
            let end = crate::outbound::write_loop(wr, queue_reader, remote, move || {
                // Every frame leaves through here, so this is where packets_sent is
                // counted: replies, notifications and the connect response alike, as
                // ZooKeeper counts them.
                stats.stats.packets_sent.fetch_add(1, Relaxed);
            })
            .await;
            if matches!(end, WriterEnd::Overflowed | WriterEnd::Stalled) {
                keeper.stats.slow_connections_closed.fetch_add(1, Relaxed);
            }
        })
    };
    let mut conn = Connection {
        keeper: Arc::clone(&keeper),
        id: conn_id,
        remote,
        out,
        in_flight: Arc::default(),
        handshake_deadline,
        session_id: 0,
        identities: vec![Id {
            scheme: "ip".into(),
            id: remote.ip().to_string(),
        }],
        pipe: None,
        responder: None,
        last_local: None,
    };
    let reason = conn.run(&mut rd, &mut FrameBuffer::with(buf)).await;
    info!(%remote, session = format!("0x{:x}", conn.session_id), "connection closed: {reason}");
    // Let the responder answer what was already taken in (its writes commit regardless), so
    // no read registers a watch after the connection's watches are dropped.
    conn.pipe = None;
    if let Some(responder) = conn.responder.take() {
        let _ = responder.await;
    }
    conn.teardown();
    drop(conn);
    let _ = writer.await;
}

/// A connection counted against its address's maxClientCnxns from before its handshake until
/// it ends, so that many connections handshaking at once cannot all slip under the limit.
pub struct IpSlot {
    keeper: Arc<Keeper>,
    ip: IpAddr,
}

impl IpSlot {
    fn take(keeper: &Arc<Keeper>, ip: IpAddr, limit: u32) -> Option<IpSlot> {
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

async fn read_at_least(rd: &mut OwnedReadHalf, buf: &mut Vec<u8>, n: usize) -> std::io::Result<()> {
    while buf.len() < n {
        let mut chunk = [0u8; 8192];
        let got = rd.read(&mut chunk).await?;
        if got == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "end of stream",
            ));
        }
        buf.extend_from_slice(&chunk[..got]);
    }
    Ok(())
}

async fn four_letter_word(
    keeper: &Arc<Keeper>,
    cmd: &'static str,
    extra: Option<[u8; 8]>,
    mut wr: OwnedWriteHalf,
    remote: SocketAddr,
    deadline: tokio::time::Instant,
) {
    let text = if keeper.config.four_letter_whitelist.allows(cmd) {
        crate::admin::four_letter_reply(keeper, cmd, extra)
    } else {
        crate::four_letter::not_whitelisted(cmd)
    };
    debug!(%remote, cmd, "four-letter word");
    // Within the handshake bound too: a large reply (dump, cons, wchp) to a client that never
    // reads must not hold the socket and its maxClientCnxns slot for ever.
    let sent = tokio::time::timeout_at(deadline, async {
        wr.write_all(text.as_bytes()).await?;
        wr.shutdown().await
    });
    if sent.await.is_err() {
        keeper.note_handshake_timeout(remote);
    }
}

struct Connection {
    keeper: Arc<Keeper>,
    id: ConnId,
    remote: SocketAddr,
    out: Arc<OutQueue>,
    /// Requests taken in and not yet answered (shared by the reader and the responder).
    in_flight: Arc<AtomicUsize>,
    handshake_deadline: tokio::time::Instant,
    session_id: i64,
    identities: Vec<Id>,
    /// Requests on their way to the responder, in arrival order (reader side only).
    pipe: Option<mpsc::Sender<Deferred>>,
    responder: Option<tokio::task::JoinHandle<()>>,
    /// Answered when the last read handed to the responder has been served. A write must not
    /// be applied before an earlier read of the same connection is answered, or that read
    /// would see a later write (ZooKeeper serves it from the state between the two).
    last_local: Option<tokio::sync::oneshot::Receiver<()>>,
}

/// How many requests of one connection may be in flight before the reader stops reading:
/// pipelining without letting one client queue unbounded work.
const PIPELINE_DEPTH: usize = 1024;

/// A request the reader has taken in, answered by the responder in arrival order.
enum Deferred {
    /// Already handed to consensus, in order; the reply waits for its commit.
    Write {
        xid: i32,
        op: i32,
        submitted: crate::consensus::Submitted,
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
        served: tokio::sync::oneshot::Sender<()>,
    },
    /// An answer decided at arrival (refusals, bad requests), kept in order.
    Reply {
        xid: i32,
        zxid: i64,
        err: ErrorCode,
        close: Option<&'static str>,
    },
}

enum Flow {
    Continue,
    Close(Close),
}

impl Connection {
    async fn run(&mut self, rd: &mut OwnedReadHalf, buf: &mut FrameBuffer) -> Close {
        let max = self.keeper.config.jute_max_buffer;
        let mut handshake_done = false;
        loop {
            if handshake_done {
                // Back-pressure: nothing more is taken in while the client is not reading
                // its replies, or while the keeper as a whole has too much outstanding.
                self.out.wait_for_space().await;
                if self.out.is_closed() {
                    return "closed by server".into();
                }
                self.keeper.wait_for_outstanding_room(&self.in_flight).await;
            }
            let body = match buf.next_frame(max) {
                Ok(Some(body)) => body,
                Ok(None) => {
                    let mut chunk = [0u8; 16 * 1024];
                    let read = if handshake_done {
                        tokio::select! {
                            r = rd.read(&mut chunk) => r,
                            _ = self.out.closed() => return "closed by server".into(),
                            _ = self.keeper.shutting_down() => return "the keeper is shutting down".into(),
                        }
                    } else {
                        // A connection that never completes its handshake is dropped rather
                        // than held forever.
                        let bounded =
                            tokio::time::timeout_at(self.handshake_deadline, rd.read(&mut chunk));
                        let read = tokio::select! {
                            r = bounded => r,
                            _ = self.keeper.shutting_down() => return "the keeper is shutting down".into(),
                        };
                        match read {
                            Ok(r) => r,
                            Err(_) => {
                                self.keeper.note_handshake_timeout(self.remote);
                                return "no handshake in time".into();
                            }
                        }
                    };
                    match read {
                        Ok(0) => return "client closed the connection".into(),
                        Ok(n) => buf.extend(&chunk[..n]),
                        Err(e) => return format!("read error: {e}"),
                    }
                    continue;
                }
                Err(e) => {
                    warn!(remote = %self.remote, "malformed input: {e}; closing connection");
                    return format!("malformed input: {e}");
                }
            };
            let flow = if handshake_done {
                self.request(body).await
            } else {
                handshake_done = true;
                let flow = self.handshake(body).await;
                if matches!(flow, Flow::Continue) {
                    self.start_responder();
                }
                flow
            };
            if let Flow::Close(reason) = flow {
                return reason;
            }
        }
    }

    /// The responder answers requests in arrival order while the reader goes on reading and
    /// submitting writes, so one connection keeps many writes in flight (ZooKeeper clients
    /// pipeline) and they share group-commit fsyncs.
    fn start_responder(&mut self) {
        let (ptx, prx) = mpsc::channel(PIPELINE_DEPTH);
        let responder = Connection {
            keeper: Arc::clone(&self.keeper),
            id: self.id,
            remote: self.remote,
            out: Arc::clone(&self.out),
            in_flight: Arc::clone(&self.in_flight),
            handshake_deadline: self.handshake_deadline,
            session_id: self.session_id,
            identities: self.identities.clone(),
            pipe: None,
            responder: None,
            last_local: None,
        };
        self.pipe = Some(ptx);
        self.responder = Some(tokio::spawn(responder.respond(prx)));
    }

    async fn respond(mut self, mut rx: mpsc::Receiver<Deferred>) {
        while let Some(d) = rx.recv().await {
            // Nothing is answered while the client is not reading what it was sent.
            self.out.wait_for_space().await;
            let go_on = self.answer(d).await;
            self.keeper.request_done(&self.in_flight);
            if !go_on {
                // Whatever is still queued will not be answered: stop counting it.
                rx.close();
                while rx.try_recv().is_ok() {
                    self.keeper.request_done(&self.in_flight);
                }
                return;
            }
        }
    }

    /// Answers one request; false when the connection must close after it.
    async fn answer(&mut self, d: Deferred) -> bool {
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
                        warn!(remote = %self.remote, "check outside a multi succeeded; answered with no reply, as ZooKeeper 3.8 does");
                        self.record(op, xid, zxid, started);
                    }
                    Ok((zxid, res)) => {
                        self.reply(xid, zxid, res.err, &res.response);
                        self.record(op, xid, zxid, started);
                    }
                    Err(e) => {
                        warn!(remote = %self.remote, "write could not be committed: {e}; closing connection");
                        self.send_close("write failed");
                        return false;
                    }
                }
                if close_after {
                    self.send_close("session closed by client");
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
                self.dispatch(xid, req);
                let _ = served.send(());
                self.record(op, xid, self.last_zxid(), started);
                true
            }
            Deferred::Reply {
                xid,
                zxid,
                err,
                close,
            } => {
                self.reply(xid, zxid, err, &Response::Empty);
                match close {
                    Some(why) => {
                        self.send_close(why);
                        false
                    }
                    None => true,
                }
            }
        }
    }

    /// Per-connection and server-wide figures for cons/srvr/mntr, one locked update per
    /// answered request (pings count as packets, not as latency samples).
    fn record(&self, op: i32, xid: i32, zxid: i64, started: Instant) {
        let ping = op == OpCode::Ping.code();
        let ms = started.elapsed().as_millis() as u64;
        if !ping {
            self.keeper.stats.record_latency(ms);
        }
        let mut st = self.keeper.state();
        let Some(c) = st.conns.get_mut(&self.id) else {
            return;
        };
        c.packets_sent += 1;
        c.last_zxid = zxid;
        if ping {
            return;
        }
        c.requests += 1;
        c.last_op = crate::four_letter::last_op_name(op);
        c.last_cxid = xid;
        c.last_latency_ms = ms;
        c.total_latency_ms += ms;
        c.max_latency_ms = c.max_latency_ms.max(ms);
        c.min_latency_ms = if c.requests == 1 {
            ms
        } else {
            c.min_latency_ms.min(ms)
        };
        c.last_response = Some(SystemTime::now());
    }

    fn send(&self, body: Vec<u8>) {
        // The reader and the responder wait for room before anything that answers a request
        // is produced, so a reply is always admitted; only events can overflow the queue.
        let _ = self.out.push_reply(body);
    }

    fn send_close(&self, why: &'static str) {
        self.out.close(why);
    }

    async fn handshake(&mut self, body: &[u8]) -> Flow {
        let mut r = Reader::new(body);
        let req = match ConnectRequest::read(&mut r) {
            Ok(req) => req,
            Err(e) => {
                warn!(remote = %self.remote, "malformed connect request: {e}; closing connection");
                return Flow::Close(format!("malformed connect request: {e}"));
            }
        };
        let last_zxid = self.keeper.last_zxid();
        if req.last_zxid_seen > last_zxid {
            // The client has seen a newer state than ours; ZooKeeper refuses so that it
            // tries a server that is further along.
            warn!(
                remote = %self.remote,
                "refusing session request: client has seen zxid 0x{:x}, our last zxid is 0x{:x}",
                req.last_zxid_seen, last_zxid
            );
            return Flow::Close("client zxid ahead".into());
        }
        let timeout = self.keeper.config.negotiate_timeout(req.timeout);
        let read_only = req.read_only.map(|_| false);
        if req.session_id == 0 {
            let session_id = self.keeper.next_session_id();
            let passwd: Vec<u8> = (0..16).map(|_| rand::random::<u8>()).collect();
            let entry = Entry {
                session_id,
                time_ms: now_ms(),
                identities: Vec::new(),
                op: EntryOp::CreateSession {
                    session_id,
                    timeout_ms: timeout,
                    passwd: passwd.clone(),
                },
            };
            if let Err(e) = self.keeper.propose(entry).await {
                warn!(remote = %self.remote, "cannot create session: {e}");
                return Flow::Close(format!("session creation failed: {e}"));
            }
            self.attach(session_id, timeout);
            info!(remote = %self.remote, session = format!("0x{session_id:x}"), timeout, "session established");
            self.send_connect_response(timeout, session_id, passwd, read_only);
            return Flow::Continue;
        }
        let valid = {
            let st = self.keeper.state();
            st.tree
                .session(req.session_id)
                .is_some_and(|s| s.passwd == req.passwd)
                && st.sessions.get(req.session_id).is_some_and(|l| !l.expiring)
        };
        if !valid {
            info!(
                remote = %self.remote,
                session = format!("0x{:x}", req.session_id),
                "invalid or expired session on reconnect; telling the client it expired"
            );
            self.send_connect_response(0, 0, vec![0; 16], read_only);
            self.send_close("session expired");
            return Flow::Close("session expired or invalid password".into());
        }
        self.attach(req.session_id, timeout);
        info!(remote = %self.remote, session = format!("0x{:x}", req.session_id), timeout, "session resumed");
        self.send_connect_response(timeout, req.session_id, req.passwd, read_only);
        Flow::Continue
    }

    fn send_connect_response(
        &self,
        timeout: i32,
        session_id: i64,
        passwd: Vec<u8>,
        read_only: Option<bool>,
    ) {
        let resp = ConnectResponse {
            protocol_version: 0,
            timeout,
            session_id,
            passwd,
            read_only,
        };
        self.send(resp.to_bytes());
    }

    /// Binds the session to this connection, evicting any older connection that held it.
    fn attach(&mut self, session_id: i64, timeout: i32) {
        self.session_id = session_id;
        let mut st = self.keeper.state();
        if let Some(old) = st.session_conn.insert(session_id, self.id) {
            if old != self.id {
                if let Some(c) = st.conns.get(&old) {
                    c.out.close("session moved to a new connection");
                }
            }
        }
        st.sessions
            .set_timeout(session_id, Duration::from_millis(timeout.max(0) as u64));
        st.sessions
            .touch(session_id, Instant::now(), "connect", Some(self.remote));
        st.conns.insert(
            self.id,
            ConnInfo {
                out: Arc::clone(&self.out),
                remote: self.remote,
                session_id,
                timeout_ms: timeout,
                established: SystemTime::now(),
                packets_received: 1,
                packets_sent: 1,
                last_op: "NA",
                last_cxid: 0,
                last_zxid: 0,
                last_response: None,
                last_latency_ms: 0,
                min_latency_ms: 0,
                max_latency_ms: 0,
                total_latency_ms: 0,
                requests: 0,
            },
        );
    }

    fn teardown(&mut self) {
        // Only a connection that attached a session (ids are never 0) was registered.
        if self.session_id == 0 {
            return;
        }
        let mut st = self.keeper.state();
        st.conns.remove(&self.id);
        st.watches.remove_connection(self.id);
        if st.session_conn.get(&self.session_id) == Some(&self.id) {
            st.session_conn.remove(&self.session_id);
        }
    }

    async fn request(&mut self, body: &[u8]) -> Flow {
        let started = Instant::now();
        let mut r = Reader::new(body);
        let header = match RequestHeader::read(&mut r) {
            Ok(h) => h,
            Err(e) => {
                warn!(remote = %self.remote, "malformed request header: {e}; closing connection");
                return Flow::Close(format!("malformed request header: {e}"));
            }
        };
        self.keeper
            .stats
            .packets_received
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let op_name = OpCode::from_i32(header.op)
            .map(|o| o.name())
            .unwrap_or("unknown");
        {
            let mut st = self.keeper.state();
            st.sessions.touch(
                self.session_id,
                started,
                if header.op == OpCode::Ping.code() {
                    "ping"
                } else {
                    op_name
                },
                None,
            );
            if let Some(c) = st.conns.get_mut(&self.id) {
                c.packets_received += 1;
            }
        }
        let (xid, op) = (header.xid, header.op);
        let mut closing = None;
        let deferred = match Request::decode(op, &body[8..]) {
            // Handled on arrival, as ZooKeeper does, so the writes that follow carry the new
            // identity; clients match its reply by its own xid (-4).
            Ok(Request::Auth(auth)) => return self.auth(auth),
            Ok(req) if req.is_write() && self.keeper.writes_blocked() => {
                // The log has no room (disk full): refuse before proposing, so nothing is
                // half-done, keep the connection, and let reads go on. SystemError is the one
                // code every client version knows.
                warn!(remote = %self.remote, op = req.op_code().name(), "write refused: the log's disk is full");
                Deferred::Reply {
                    xid,
                    zxid: self.last_zxid(),
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
                        reason: "closed by the client".into(),
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
                let Some(consensus) = self.keeper.consensus() else {
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
                        warn!(remote = %self.remote, "write could not be submitted: {e}; closing connection");
                        return Flow::Close(format!("write could not be submitted: {e}"));
                    }
                }
            }
            Ok(req) => {
                let (served, done) = tokio::sync::oneshot::channel();
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
                warn!(remote = %self.remote, op = code, "unknown opcode; closing connection");
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
                warn!(remote = %self.remote, op, "undecodable request: {e}");
                Deferred::Reply {
                    xid,
                    zxid: self.last_zxid(),
                    err: ErrorCode::MarshallingError,
                    close: None,
                }
            }
        };
        let Some(pipe) = &self.pipe else {
            return Flow::Close("no responder".into());
        };
        self.keeper.stats.outstanding.fetch_add(1, Relaxed);
        self.in_flight.fetch_add(1, Relaxed);
        if pipe.send(deferred).await.is_err() {
            self.keeper.request_done(&self.in_flight);
            return Flow::Close("the responder stopped".into());
        }
        match closing {
            Some(reason) => Flow::Close(reason),
            None => Flow::Continue,
        }
    }

    fn reply(&self, xid: i32, zxid: i64, err: ErrorCode, resp: &Response) {
        self.send(corral_proto::message::reply_body(xid, zxid, err, resp));
    }

    fn last_zxid(&self) -> i64 {
        self.keeper.last_zxid()
    }

    /// Answers a request that needs no consensus: pings, reads, watch management. Runs in
    /// the responder, after every earlier write of this connection has been applied.
    fn dispatch(&mut self, xid: i32, req: Request) {
        match req {
            Request::Ping => {
                self.reply(xid::PING, self.last_zxid(), ErrorCode::Ok, &Response::Empty);
            }
            Request::SetWatches(sw) => {
                self.set_watches(
                    xid,
                    sw.relative_zxid,
                    &sw.data_watches,
                    &sw.exist_watches,
                    &sw.child_watches,
                    &[],
                    &[],
                );
            }
            Request::SetWatches2(sw) => {
                self.set_watches(
                    xid,
                    sw.relative_zxid,
                    &sw.data_watches,
                    &sw.exist_watches,
                    &sw.child_watches,
                    &sw.persistent_watches,
                    &sw.persistent_recursive_watches,
                );
            }
            Request::Sync(p) => {
                // Standalone: every committed entry is already applied here. In an ensemble
                // this waits for the leader's commit index.
                let err = match corral_tree::path::validate(&p.path) {
                    Ok(()) => ErrorCode::Ok,
                    Err(e) => e,
                };
                self.reply(xid, self.last_zxid(), err, &Response::Path(p.path));
            }
            Request::AddWatch(aw) => {
                // ZooKeeper 3.8 registers whatever path it is given (a relative one never
                // fires) and answers an unknown mode with MarshallingError.
                let recursive = match corral_proto::AddWatchMode::from_i32(aw.mode) {
                    Some(corral_proto::AddWatchMode::Persistent) => false,
                    Some(corral_proto::AddWatchMode::PersistentRecursive) => true,
                    None => {
                        let err = ErrorCode::MarshallingError;
                        self.reply(xid, self.last_zxid(), err, &Response::Empty);
                        return;
                    }
                };
                let mut st = self.keeper.state();
                st.watches.add_persistent(self.id, &aw.path, recursive);
                // Under the lock, like a read's reply: before any event of this watch.
                let ok = Response::ErrorResponse(ErrorCode::Ok.code());
                self.reply(xid, st.tree.last_zxid(), ErrorCode::Ok, &ok);
            }
            Request::CheckWatches(w) => {
                let err = self.watch_removal(&w.path, w.watcher_type, false);
                self.reply(xid, self.last_zxid(), err, &Response::Empty);
            }
            Request::RemoveWatches(w) => {
                let err = self.watch_removal(&w.path, w.watcher_type, true);
                self.reply(xid, self.last_zxid(), err, &Response::Empty);
            }
            Request::WhoAmI => {
                let info = self
                    .identities
                    .iter()
                    .map(|id| ClientInfo {
                        auth_scheme: id.scheme.clone(),
                        // ZooKeeper names the digest user, not the stored `user:hash` id.
                        user: match id.scheme.as_str() {
                            "digest" => id.id.split(':').next().unwrap_or_default().to_string(),
                            _ => id.id.clone(),
                        },
                    })
                    .collect();
                self.reply(
                    xid,
                    self.last_zxid(),
                    ErrorCode::Ok,
                    &Response::WhoAmI(info),
                );
            }
            Request::Sasl(_) => {
                // No SASL provider is configured; ZooKeeper without one rejects the exchange.
                self.reply(
                    xid,
                    self.last_zxid(),
                    ErrorCode::AuthFailed,
                    &Response::Empty,
                );
            }
            // Writes and auth never reach here (the reader submits and handles them); a
            // stray one is answered like any request the tree does not serve.
            req => {
                self.read(xid, &req);
            }
        }
    }

    /// Serves a read from the local tree and registers its watch under the same lock, so no
    /// change can slip between the answer and the watch.
    fn read(&self, xid: i32, req: &Request) {
        let mut st = self.keeper.state();
        let (err, resp) = st.tree.read(req, self.session_id, &self.identities);
        let zxid = st.tree.last_zxid();
        let watch = match req {
            Request::Exists(r) if r.watch && matches!(err, ErrorCode::Ok | ErrorCode::NoNode) => {
                Some((Table::Data, &r.path))
            }
            Request::GetData(r) if r.watch && err == ErrorCode::Ok => Some((Table::Data, &r.path)),
            Request::GetChildren(r) | Request::GetChildren2(r)
                if r.watch && err == ErrorCode::Ok =>
            {
                Some((Table::Child, &r.path))
            }
            _ => None,
        };
        match watch {
            Some((table, path)) => {
                st.watches.add(self.id, table, path, Mode::Standard);
                // Queued before the lock is released: an apply that fires this watch takes
                // the same lock, so its event is queued after this reply. The Java client
                // registers its watcher when the reply arrives and drops an event that
                // comes first.
                self.reply(xid, zxid, err, &resp);
            }
            None => {
                // No watch, so no event can overtake it: encode the reply outside the lock.
                drop(st);
                self.reply(xid, zxid, err, &resp);
            }
        }
    }

    fn auth(&mut self, auth: corral_proto::AuthPacket) -> Flow {
        let ok = match auth.scheme.as_str() {
            "digest" => match std::str::from_utf8(&auth.auth) {
                Ok(user_password) => {
                    let digest = corral_tree::acl::digest(user_password);
                    if self.keeper.config.super_digest.as_deref() == Some(digest.as_str()) {
                        let superuser = Id {
                            scheme: "super".into(),
                            id: String::new(),
                        };
                        crate::identity::add(&mut self.identities, superuser);
                    }
                    let id = Id {
                        scheme: "digest".into(),
                        id: digest,
                    };
                    crate::identity::add(&mut self.identities, id);
                    true
                }
                Err(_) => false,
            },
            // ZooKeeper's ip provider authenticates the connection's own address.
            "ip" => true,
            _ => false,
        };
        if ok {
            self.reply(xid::AUTH, 0, ErrorCode::Ok, &Response::Empty);
            Flow::Continue
        } else {
            warn!(remote = %self.remote, scheme = auth.scheme, "authentication failed; closing connection");
            self.reply(xid::AUTH, 0, ErrorCode::AuthFailed, &Response::Empty);
            self.send_close("auth failed");
            Flow::Close("authentication failed".into())
        }
    }

    /// checkWatches (`remove == false`) and removeWatches, with ZooKeeper 3.8's answers:
    /// checking succeeds when any watcher is on the path in that table; removing takes this
    /// connection's watch out of the table whatever its mode.
    fn watch_removal(&self, path: &str, watcher_type: i32, remove: bool) -> ErrorCode {
        let Some(wt) = WatcherType::from_i32(watcher_type) else {
            return ErrorCode::BadArguments;
        };
        let mut st = self.keeper.state();
        let w = &mut st.watches;
        let found = match (wt, remove) {
            (WatcherType::Children, false) => w.any_watcher(Table::Child, path),
            (WatcherType::Data, false) => w.any_watcher(Table::Data, path),
            (WatcherType::Any, false) => {
                w.any_watcher(Table::Data, path) || w.any_watcher(Table::Child, path)
            }
            (WatcherType::Persistent, false) => {
                w.mode(self.id, Table::Data, path) == Some(Mode::Persistent)
            }
            (WatcherType::PersistentRecursive, false) => {
                w.mode(self.id, Table::Data, path) == Some(Mode::PersistentRecursive)
            }
            (WatcherType::Children, true) => w.remove(self.id, Table::Child, path),
            (WatcherType::Data, true) => w.remove(self.id, Table::Data, path),
            (WatcherType::Any, true) => {
                let child = w.remove(self.id, Table::Child, path);
                w.remove(self.id, Table::Data, path) | child
            }
            (WatcherType::Persistent | WatcherType::PersistentRecursive, true) => {
                let mode = if wt == WatcherType::Persistent {
                    Mode::Persistent
                } else {
                    Mode::PersistentRecursive
                };
                let data = w.remove_if(self.id, Table::Data, path, |m| m == mode);
                w.remove_if(self.id, Table::Child, path, |m| m == mode) | data
            }
        };
        if found {
            ErrorCode::Ok
        } else {
            ErrorCode::NoWatcher
        }
    }

    /// Re-registers a reconnecting client's watches, firing at once for what changed after
    /// `relative_zxid` (ZooKeeper's DataTree.setWatches semantics). Persistent watches are
    /// re-added without catch-up, as ZooKeeper does. The catch-up events, then the reply, are
    /// queued under the lock, so no event of a re-registered watch can overtake them.
    #[allow(clippy::too_many_arguments)]
    fn set_watches(
        &self,
        xid: i32,
        relative_zxid: i64,
        data: &[String],
        exist: &[String],
        child: &[String],
        persistent: &[String],
        recursive: &[String],
    ) {
        let mut st = self.keeper.state();
        let zxid = st.tree.last_zxid();
        let mut events = Vec::new();
        for p in data {
            match st.tree.node(p).map(|n| n.stat.mzxid) {
                None => events.push((EventType::NodeDeleted, p)),
                Some(m) if m > relative_zxid => events.push((EventType::NodeDataChanged, p)),
                Some(_) => st.watches.add(self.id, Table::Data, p, Mode::Standard),
            }
        }
        for p in exist {
            if st.tree.node(p).is_some() {
                events.push((EventType::NodeCreated, p));
            } else {
                st.watches.add(self.id, Table::Data, p, Mode::Standard);
            }
        }
        for p in child {
            match st.tree.node(p).map(|n| n.stat.pzxid) {
                None => events.push((EventType::NodeDeleted, p)),
                Some(pz) if pz > relative_zxid => events.push((EventType::NodeChildrenChanged, p)),
                Some(_) => st.watches.add(self.id, Table::Child, p, Mode::Standard),
            }
        }
        for p in persistent {
            st.watches.add_persistent(self.id, p, false);
        }
        for p in recursive {
            st.watches.add_persistent(self.id, p, true);
        }
        for (event, path) in events {
            self.send(event_frame(event, path));
        }
        self.reply(xid, zxid, ErrorCode::Ok, &Response::Empty);
    }
}
