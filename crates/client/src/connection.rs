//! One session over one TCP connection.
//!
//! Shape: the caller-facing [`Connection`] is a cheap handle on shared state. A writer task
//! owns the socket's write half (it also sends the keep-alive pings, so a ping can never be
//! interleaved inside another frame); a reader task owns the read half and hands every reply
//! to the caller waiting for it and every notification to the event channel.
//!
//! Matching replies: a ZooKeeper server answers the requests of one connection in the order
//! it received them. So the waiting callers form a FIFO queue, pushed in exactly the order
//! their frames are queued to the writer (both happen under one lock). Two kinds of request
//! are answered outside that order by the server — auth (xid -4), handled as soon as it is
//! read, and set-watches (xid -8) — so those are matched by xid wherever they sit in the queue.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI32, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use corral_proto::frame::{frame, split_frame, FrameBuffer, DEFAULT_MAX_FRAME};
use corral_proto::{
    xid, ConnectRequest, ConnectResponse, ErrorCode, EventType, Jute, KeeperState, OpCode, Reader,
    ReplyHeader, Request, Response, WatcherEvent,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::error::{ClientError, Lost};

/// Queued frames are coalesced into writes of up to about this many bytes.
const WRITE_BATCH: usize = 64 * 1024;

/// What the client asks for in the handshake.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Requested session timeout; the server clamps it into its own bounds.
    pub session_timeout_ms: i32,
    /// 0 for a new session; otherwise the id of the session to resume.
    pub session_id: i64,
    /// The password of the session to resume (16 bytes from the server); empty for a new one.
    pub passwd: Vec<u8>,
    /// The highest zxid this client has seen; a server behind it refuses the connection.
    pub last_zxid_seen: i64,
    /// The trailing read-only byte of the handshake. `None` omits it, as 3.4 clients do.
    pub read_only: Option<bool>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            session_timeout_ms: 10_000,
            session_id: 0,
            passwd: Vec::new(),
            last_zxid_seen: 0,
            read_only: Some(false),
        }
    }
}

/// A server's reply to one request. `response` is decoded only when `err` is Ok
/// (a failed request has no body); otherwise it is [`Response::Empty`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The request's xid, echoed by the server.
    pub xid: i32,
    /// The zxid the server reported with the reply (its last committed change).
    pub zxid: i64,
    /// The outcome; anything but Ok means the request failed.
    pub err: ErrorCode,
    /// The decoded body (Empty when `err` is not Ok).
    pub response: Response,
}

/// A watch notification (xid -1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedEvent {
    /// What happened to the node.
    pub event_type: EventType,
    /// The session state the server reported with it (SyncConnected normally).
    pub state: KeeperState,
    /// The node's path as the server names it (a [`crate::Client`] strips its chroot).
    pub path: String,
    /// The zxid in the notification's header (the change that fired it; -1 from old servers).
    pub zxid: i64,
}

/// A caller waiting for its reply.
struct Pending {
    xid: i32,
    op: OpCode,
    tx: oneshot::Sender<Result<Reply, ClientError>>,
}

/// State shared by the handle and the two tasks.
struct Shared {
    /// Waiting callers in send order, and the reason the connection ended once it has.
    /// Both live under one lock so that a request can never be queued after the queue was
    /// drained for the last time (it would wait forever).
    queue: Mutex<Queue>,
    last_zxid: AtomicI64,
    next_xid: AtomicI32,
    /// When bytes last arrived from the server: the start of ZooKeeper's client-side expiry
    /// clock (a session cannot outlive 4/3 of its timeout without news from a server).
    last_heard: Mutex<Instant>,
    /// Tells both tasks to stop.
    shutdown: watch::Sender<bool>,
}

struct Queue {
    pending: VecDeque<Pending>,
    /// Frames for the writer task; None once the connection is gone.
    outbox: Option<mpsc::UnboundedSender<Vec<u8>>>,
    lost: Option<Lost>,
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        // A poisoned lock only means a panic elsewhere while holding it; the queue itself
        // is still consistent (every mutation is a single push/pop), so keep going.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ends the connection: every waiting caller gets the reason, later requests fail at once.
    /// The first reason wins.
    fn fail_all(&self, why: Lost) {
        let drained: Vec<Pending> = {
            let mut q = self.queue();
            if q.lost.is_none() {
                q.lost = Some(why);
            }
            q.outbox = None;
            q.pending.drain(..).collect()
        };
        let why = self.queue().lost.clone().unwrap_or(Lost::Closed);
        for p in drained {
            let _ = p.tx.send(Err(why.to_error()));
        }
        let _ = self.shutdown.send(true);
    }
}

/// One ZooKeeper session over one TCP connection. Cloning gives another handle on the same
/// connection; requests from all handles are pipelined on it.
#[derive(Clone)]
pub struct Connection {
    shared: Arc<Shared>,
    handshake: Arc<ConnectResponse>,
    events: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<WatchedEvent>>>,
    tasks: Arc<Tasks>,
}

/// The two background tasks. When the last handle is dropped without close, they are stopped
/// (which drops the socket): otherwise their pings would keep an unreachable session alive.
struct Tasks([AbortHandle; 2]);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("session_id", &format_args!("0x{:x}", self.session_id()))
            .field("timeout_ms", &self.negotiated_timeout_ms())
            .finish()
    }
}

impl Connection {
    /// Opens a TCP connection to `addr` ("host:port") and performs the handshake.
    /// A handshake answered with timeout 0 means the session to resume is gone:
    /// [`ClientError::SessionExpired`]; one answered with an error header instead (a
    /// read-only ZooKeeper that cannot make the session) is [`ClientError::Server`].
    pub async fn connect(addr: &str, opts: ConnectOptions) -> Result<Connection, ClientError> {
        // The whole handshake must fit in the requested session timeout: a server that
        // takes longer is of no use to a session that would expire meanwhile.
        let limit = Duration::from_millis(opts.session_timeout_ms.max(1000) as u64);
        let (stream, resp, leftover) = tokio::time::timeout(limit, handshake(addr, &opts))
            .await
            .map_err(|_| ClientError::Timeout)??;
        if resp.timeout <= 0 {
            return Err(ClientError::SessionExpired);
        }
        Ok(Self::start(stream, resp, leftover, opts.last_zxid_seen))
    }

    fn start(
        stream: TcpStream,
        resp: ConnectResponse,
        leftover: Vec<u8>,
        last_zxid: i64,
    ) -> Connection {
        let _ = stream.set_nodelay(true);
        let (rd, wr) = stream.into_split();
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let (shutdown, shutdown_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                pending: VecDeque::new(),
                outbox: Some(out_tx),
                lost: None,
            }),
            last_zxid: AtomicI64::new(last_zxid),
            // xids of ordinary requests start at 1 and stay positive; negatives are reserved.
            next_xid: AtomicI32::new(1),
            last_heard: Mutex::new(Instant::now()),
            shutdown,
        });
        let timeout = Duration::from_millis(resp.timeout.max(1) as u64);
        let writer = tokio::spawn(write_loop(
            wr,
            out_rx,
            shutdown_rx.clone(),
            timeout / 3,
            shared.clone(),
        ));
        let reader = tokio::spawn(read_loop(
            rd,
            leftover,
            ev_tx,
            shutdown_rx,
            timeout * 2 / 3,
            shared.clone(),
        ));
        Connection {
            shared,
            handshake: Arc::new(resp),
            events: Arc::new(tokio::sync::Mutex::new(ev_rx)),
            tasks: Arc::new(Tasks([writer.abort_handle(), reader.abort_handle()])),
        }
    }

    /// The session's id from the handshake.
    pub fn session_id(&self) -> i64 {
        self.handshake.session_id
    }

    /// The session's password from the handshake (needed to resume it).
    pub fn passwd(&self) -> Vec<u8> {
        self.handshake.passwd.clone()
    }

    /// The session timeout the server granted.
    pub fn negotiated_timeout_ms(&self) -> i32 {
        self.handshake.timeout
    }

    /// The whole handshake reply.
    pub fn connect_response(&self) -> &ConnectResponse {
        &self.handshake
    }

    /// The highest zxid seen in a reply (what a reconnect should send as lastZxidSeen).
    pub fn last_zxid(&self) -> i64 {
        self.shared.last_zxid.load(Ordering::SeqCst)
    }

    /// When bytes last arrived from the server on this connection (the handshake counts).
    pub fn last_heard(&self) -> Instant {
        *self
            .shared
            .last_heard
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the connection has ended (closed, aborted, lost).
    pub fn is_closed(&self) -> bool {
        self.shared.queue().lost.is_some()
    }

    /// Sends one request and waits for its reply. Requests from concurrent callers are
    /// pipelined. A server-side failure is `Ok(Reply { err != Ok, .. })`; `Err` means the
    /// connection failed.
    pub async fn request(&self, req: Request) -> Result<Reply, ClientError> {
        let rx = self.send(req)?;
        rx.await.map_err(|_| ClientError::Closed)?
    }

    /// Queues the request; the receiver yields its reply.
    fn send(
        &self,
        req: Request,
    ) -> Result<oneshot::Receiver<Result<Reply, ClientError>>, ClientError> {
        let op = req.op_code();
        let (tx, rx) = oneshot::channel();
        let mut q = self.shared.queue();
        if let Some(why) = &q.lost {
            return Err(why.to_error());
        }
        let xid = match op {
            OpCode::Auth => xid::AUTH,
            OpCode::SetWatches | OpCode::SetWatches2 => xid::SET_WATCHES,
            OpCode::Ping => xid::PING,
            _ => self.next_xid(),
        };
        let bytes = req.to_frame(xid);
        let Some(outbox) = &q.outbox else {
            return Err(ClientError::Closed);
        };
        if outbox.send(bytes).is_err() {
            return Err(ClientError::Closed);
        }
        q.pending.push_back(Pending { xid, op, tx });
        Ok(rx)
    }

    fn next_xid(&self) -> i32 {
        // Wrap back to 1 rather than into the reserved negative xids.
        let x = self.shared.next_xid.fetch_add(1, Ordering::SeqCst);
        if x <= 0 {
            self.shared.next_xid.store(2, Ordering::SeqCst);
            1
        } else {
            x
        }
    }

    /// The next watch notification, in arrival order; None once the connection is gone and
    /// every received notification has been taken.
    pub async fn next_event(&self) -> Option<WatchedEvent> {
        self.events.lock().await.recv().await
    }

    /// A notification already received, without waiting. None if there is none (or another
    /// caller is currently waiting in [`Connection::next_event`]).
    pub fn try_next_event(&self) -> Option<WatchedEvent> {
        self.events.try_lock().ok()?.try_recv().ok()
    }

    /// Ends the session: sends closeSession, waits for its reply, then closes the socket.
    pub async fn close(&self) -> Result<(), ClientError> {
        let reply = self.request(Request::CloseSession).await;
        self.shared.fail_all(Lost::Closed);
        let reply = reply?;
        if reply.err != ErrorCode::Ok {
            return Err(ClientError::Server(reply.err));
        }
        Ok(())
    }

    /// Drops the TCP connection at once without closeSession: the session stays alive on the
    /// server until its timeout, and can be resumed with [`Connection::session_id`] and
    /// [`Connection::passwd`].
    pub fn abort(&self) {
        // Aborting both tasks drops both socket halves, which closes the socket without
        // flushing anything still queued.
        for t in &self.tasks.0 {
            t.abort();
        }
        self.shared.fail_all(Lost::Closed);
    }
}

/// Connects and exchanges ConnectRequest/ConnectResponse. Returns any bytes read past the
/// handshake frame (a fast server may already have sent more).
async fn handshake(
    addr: &str,
    opts: &ConnectOptions,
) -> Result<(TcpStream, ConnectResponse, Vec<u8>), ClientError> {
    let mut stream = TcpStream::connect(addr).await?;
    let req = ConnectRequest {
        protocol_version: 0,
        last_zxid_seen: opts.last_zxid_seen,
        timeout: opts.session_timeout_ms,
        session_id: opts.session_id,
        passwd: opts.passwd.clone(),
        read_only: opts.read_only,
    };
    stream.write_all(&frame(&req.to_bytes())).await?;
    let mut buf = Vec::with_capacity(64);
    loop {
        if let Some((body, used)) = split_frame(&buf, DEFAULT_MAX_FRAME)? {
            // Not from_bytes: the response may or may not carry the read-only byte.
            let resp = match ConnectResponse::read(&mut Reader::new(body)) {
                Ok(resp) => resp,
                Err(e) => return Err(handshake_refusal(body).unwrap_or(e.into())),
            };
            let rest = buf[used..].to_vec();
            return Ok((stream, resp, rest));
        }
        let mut chunk = [0u8; 256];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            // ZooKeeper closes without answering e.g. when our lastZxidSeen is ahead of it.
            return Err(ClientError::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A server that will not make the session may answer the connect with a bare reply header
/// carrying an error instead of a ConnectResponse (ZooKeeper's read-only server without local
/// sessions says NotReadOnly): that error, when `body` is one.
fn handshake_refusal(body: &[u8]) -> Option<ClientError> {
    let mut r = Reader::new(body);
    let header = ReplyHeader::read(&mut r).ok()?;
    if r.remaining() != 0 || header.err == 0 {
        return None;
    }
    ErrorCode::from_i32(header.err).map(ClientError::Server)
}

async fn write_loop(
    mut wr: OwnedWriteHalf,
    mut outbox: mpsc::UnboundedReceiver<Vec<u8>>,
    mut shutdown: watch::Receiver<bool>,
    ping_every: Duration,
    shared: Arc<Shared>,
) {
    let ping = Request::Ping.to_frame(xid::PING);
    let mut last_sent = Instant::now();
    let mut batch: Vec<u8> = Vec::with_capacity(WRITE_BATCH);
    // One timer, re-armed only when it fires (not on every write, which would cost a timer
    // update per request under load).
    let idle = tokio::time::sleep_until(last_sent + ping_every);
    tokio::pin!(idle);
    let result: std::io::Result<()> = async {
        loop {
            tokio::select! {
                biased;
                _ = shutdown.changed() => {
                    // Flush what was queued before the shutdown (closeSession's reply has
                    // already arrived by then, so this is normally nothing).
                    while let Ok(bytes) = outbox.try_recv() {
                        wr.write_all(&bytes).await?;
                    }
                    let _ = wr.shutdown().await;
                    return Ok(());
                }
                msg = outbox.recv() => match msg {
                    Some(bytes) => {
                        // Frames already queued go out in the same write: with many requests
                        // in flight, a syscall per frame would be most of the client's work
                        // (and of the server's). Woken by the first frame, the writer lets the
                        // tasks already runnable queue theirs first; alone, it goes on at once.
                        tokio::task::yield_now().await;
                        match outbox.try_recv() {
                            Err(_) => wr.write_all(&bytes).await?,
                            Ok(next) => {
                                batch.clear();
                                batch.extend_from_slice(&bytes);
                                batch.extend_from_slice(&next);
                                while batch.len() < WRITE_BATCH {
                                    match outbox.try_recv() {
                                        Ok(more) => batch.extend_from_slice(&more),
                                        Err(_) => break,
                                    }
                                }
                                wr.write_all(&batch).await?;
                                if batch.capacity() > WRITE_BATCH * 4 {
                                    // One huge frame must not pin its buffer for good.
                                    batch = Vec::with_capacity(WRITE_BATCH);
                                }
                            }
                        }
                        last_sent = Instant::now();
                    }
                    None => return Ok(()),
                },
                // Only an idle connection needs pings: any request also tells the server
                // the session is alive.
                _ = &mut idle => {
                    if Instant::now() >= last_sent + ping_every {
                        wr.write_all(&ping).await?;
                        last_sent = Instant::now();
                    }
                    idle.as_mut().reset(last_sent + ping_every);
                }
            }
        }
    }
    .await;
    if let Err(e) = result {
        shared.fail_all(Lost::Io(e.kind(), e.to_string()));
    }
}

async fn read_loop(
    mut rd: OwnedReadHalf,
    rest: Vec<u8>,
    events: mpsc::UnboundedSender<WatchedEvent>,
    mut shutdown: watch::Receiver<bool>,
    dead_after: Duration,
    shared: Arc<Shared>,
) {
    let why = async {
        let mut chunk = vec![0u8; 64 * 1024];
        let mut buf = FrameBuffer::with(rest);
        // As in the writer: one timer, re-armed when it fires, not per read.
        let mut last_read = Instant::now();
        let silence = tokio::time::sleep_until(last_read + dead_after);
        tokio::pin!(silence);
        loop {
            // Handle every complete frame already buffered before reading more.
            loop {
                let body = match buf.next_frame(DEFAULT_MAX_FRAME) {
                    Ok(Some(body)) => body,
                    Ok(None) => break,
                    Err(e) => return Lost::Protocol(e.to_string()),
                };
                if let Err(why) = dispatch(body, &shared, &events) {
                    return why;
                }
            }
            let read = tokio::select! {
                _ = shutdown.changed() => return Lost::Closed,
                _ = &mut silence => {
                    // Pings go out every third of the timeout, so two thirds of silence
                    // means the server or the path to it is gone.
                    if Instant::now() >= last_read + dead_after {
                        return Lost::Timeout;
                    }
                    silence.as_mut().reset(last_read + dead_after);
                    continue;
                }
                // Cancel-safe: a read interrupted by the other branches loses nothing.
                r = rd.read(&mut chunk) => r,
            };
            match read {
                Err(e) => return Lost::Io(e.kind(), e.to_string()),
                Ok(0) => return Lost::Closed,
                Ok(n) => {
                    last_read = Instant::now();
                    *shared.last_heard.lock().unwrap_or_else(|e| e.into_inner()) = last_read;
                    buf.extend(&chunk[..n]);
                }
            }
        }
    }
    .await;
    tracing::debug!(?why, "connection reader stopped");
    shared.fail_all(why);
}

/// Handles one frame from the server.
fn dispatch(
    body: &[u8],
    shared: &Shared,
    events: &mpsc::UnboundedSender<WatchedEvent>,
) -> Result<(), Lost> {
    let mut r = Reader::new(body);
    let hdr =
        ReplyHeader::read(&mut r).map_err(|e| Lost::Protocol(format!("reply header: {e}")))?;
    if hdr.xid == xid::NOTIFICATION {
        let ev =
            WatcherEvent::read(&mut r).map_err(|e| Lost::Protocol(format!("notification: {e}")))?;
        match (
            EventType::from_i32(ev.event_type),
            KeeperState::from_i32(ev.state),
        ) {
            (Some(event_type), Some(state)) => {
                let _ = events.send(WatchedEvent {
                    event_type,
                    state,
                    path: ev.path,
                    zxid: hdr.zxid,
                });
            }
            _ => tracing::warn!(?ev, "dropping notification with unknown type or state"),
        }
        return Ok(());
    }
    let pending = {
        let mut q = shared.queue();
        // Auth and set-watches replies may overtake earlier requests; everything else must be
        // the oldest ordinary request still waiting.
        let pos = q.pending.iter().position(|p| p.xid == hdr.xid);
        let oldest_ordinary = q
            .pending
            .iter()
            .position(|p| p.xid != xid::AUTH && p.xid != xid::SET_WATCHES);
        match pos {
            None if hdr.xid == xid::PING => return Ok(()), // our own keep-alive
            None => {
                return Err(Lost::Protocol(format!(
                    "reply with xid {} that nobody waits for",
                    hdr.xid
                )))
            }
            Some(i) => {
                let special = matches!(hdr.xid, xid::AUTH | xid::SET_WATCHES);
                if !special && oldest_ordinary != Some(i) {
                    if hdr.xid == xid::PING {
                        // An automatic ping's reply while a caller's ping is queued behind
                        // other requests: it is ours, not theirs.
                        return Ok(());
                    }
                    return Err(Lost::Protocol(format!(
                        "reply xid {} out of order",
                        hdr.xid
                    )));
                }
                q.pending.remove(i)
            }
        }
    };
    let Some(p) = pending else { return Ok(()) };
    if hdr.zxid > 0 {
        shared.last_zxid.fetch_max(hdr.zxid, Ordering::SeqCst);
    }
    let err = ErrorCode::from_i32(hdr.err).unwrap_or(ErrorCode::SystemError);
    let rest = &body[r.position()..];
    let result = if err == ErrorCode::Ok {
        Response::decode(p.op, rest).map_err(ClientError::from)
    } else {
        Ok(Response::Empty)
    };
    let result = result.map(|response| Reply {
        xid: hdr.xid,
        zxid: hdr.zxid,
        err,
        response,
    });
    let _ = p.tx.send(result);
    Ok(())
}
