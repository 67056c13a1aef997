//! A connection's outbound queue and the task that writes it to the socket.
//!
//! Every frame for one client (the connect response, replies, watch events) goes through one
//! [`OutQueue`], in order, so ordering between replies and events is decided by who queues
//! first. The queue is bounded in bytes, because a client that stops reading must not make the
//! keeper grow:
//! - above the soft limit the connection's reader and responder wait ([`OutQueue::wait_for_space`]):
//!   no more requests are taken in or answered for it (back-pressure, as ZooKeeper stops
//!   reading a throttled connection);
//! - watch events cannot wait (they come from applying a committed entry), so past the hard
//!   limit the connection is closed at once;
//! - a socket write that makes no progress for the stall limit closes the connection too.
//!
//! Owns: the queue's accounting and the writer task. Must not decide what is sent.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::{mpsc, Notify};
use tracing::{debug, warn};

/// What a connection's writer task is asked to do.
#[derive(Debug)]
pub enum Outbound {
    /// A complete frame body (the writer adds the length prefix).
    Frame(Vec<u8>),
    /// Close the connection after everything queued before it has been written.
    Close(&'static str),
}

/// The byte bounds of one connection's queue.
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    /// Above this many queued bytes the connection's requests wait.
    pub soft: usize,
    /// Queuing past this closes the connection.
    pub hard: usize,
    /// A socket write blocked this long closes the connection.
    pub stall: Duration,
}

impl QueueLimits {
    /// Soft: room for the largest reply (`jute_max_buffer`) and then some; hard: a client
    /// that is this far behind on its events is not reading them.
    pub fn for_max_frame(max_frame: usize, stall: Duration) -> QueueLimits {
        let soft = max_frame.max(1 << 20) + 64 * 1024;
        QueueLimits {
            soft,
            hard: (4 * soft).max(16 << 20),
            stall,
        }
    }
}

/// The sending side, shared by the reader, the responder and the apply path. When the last
/// one is dropped the writer finishes what is queued and closes the socket.
#[derive(Debug)]
pub struct OutQueue {
    tx: mpsc::UnboundedSender<Outbound>,
    state: Arc<QueueState>,
}

/// What the senders and the writer share. The writer holds only this (never the sender), so
/// the channel closes when the connection's last sender goes.
#[derive(Debug)]
pub struct QueueState {
    /// Bytes queued and not yet handed to the socket (frames plus their length prefix).
    queued: AtomicUsize,
    /// Frames queued and not yet handed to the socket (`cons` shows it as `queued`).
    frames: AtomicUsize,
    limits: QueueLimits,
    /// Woken when the queue drains below the soft limit or the writer stops.
    space: Notify,
    overflowed: AtomicBool,
    /// Set by the writer when it stops.
    writer_gone: AtomicBool,
    /// Tells the writer to stop at once (overflow), not after what is queued.
    kill: Notify,
    /// Why the server closed the connection (the first reason given), for obituaries.
    why: std::sync::OnceLock<&'static str>,
}

/// The writer's end of a queue.
#[derive(Debug)]
pub struct QueueReader {
    rx: mpsc::UnboundedReceiver<Outbound>,
    state: Arc<QueueState>,
}

/// What [`OutQueue::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// The connection is closed or closing; the frame was dropped.
    Dropped,
    /// This frame took the queue past its hard limit: the connection is being closed. Said
    /// once per connection, so the caller can log and count it.
    Overflowed,
}

/// Why a connection is closed when its session moved to another member: the session's
/// history records such an end as a move, not a disconnection.
pub const SESSION_MOVED: &str = "session moved to another member";

impl OutQueue {
    pub fn new(limits: QueueLimits) -> (Arc<OutQueue>, QueueReader) {
        let (tx, rx) = mpsc::unbounded_channel();
        let state = Arc::new(QueueState {
            queued: AtomicUsize::new(0),
            frames: AtomicUsize::new(0),
            limits,
            space: Notify::new(),
            overflowed: AtomicBool::new(false),
            writer_gone: AtomicBool::new(false),
            kill: Notify::new(),
            why: std::sync::OnceLock::new(),
        });
        let reader = QueueReader {
            rx,
            state: Arc::clone(&state),
        };
        (Arc::new(OutQueue { tx, state }), reader)
    }

    /// Queues a watch event. Events come from applying committed entries and cannot wait,
    /// so past the hard limit the connection is closed instead.
    pub fn push(&self, body: Vec<u8>) -> Pushed {
        self.enqueue(body, true)
    }

    /// Queues a reply (or the events a request itself produces, like setWatches' catch-up).
    /// Its producer waited for room first ([`OutQueue::wait_for_space`]), so a single large
    /// reply (a big getChildren, a multiRead of large nodes) is admitted whatever its size,
    /// as ZooKeeper sends it.
    pub fn push_reply(&self, body: Vec<u8>) -> Pushed {
        self.enqueue(body, false)
    }

    fn enqueue(&self, body: Vec<u8>, bounded: bool) -> Pushed {
        let st = &self.state;
        if self.is_closed() {
            return Pushed::Dropped;
        }
        let n = body.len() + 4;
        let total = st.queued.fetch_add(n, Ordering::AcqRel) + n;
        if bounded && total > st.limits.hard {
            st.queued.fetch_sub(n, Ordering::AcqRel);
            if st.overflowed.swap(true, Ordering::AcqRel) {
                return Pushed::Dropped;
            }
            st.kill.notify_one();
            st.space.notify_waiters();
            return Pushed::Overflowed;
        }
        st.frames.fetch_add(1, Ordering::AcqRel);
        if self.tx.send(Outbound::Frame(body)).is_err() {
            st.queued.fetch_sub(n, Ordering::AcqRel);
            st.frames.fetch_sub(1, Ordering::AcqRel);
            return Pushed::Dropped;
        }
        Pushed::Queued
    }

    /// Closes the connection once everything queued before has been written.
    pub fn close(&self, why: &'static str) {
        let _ = self.state.why.set(why);
        let _ = self.tx.send(Outbound::Close(why));
    }

    /// Why the server ended the connection, as far as this queue knows.
    pub fn close_reason(&self) -> &'static str {
        self.state
            .why
            .get()
            .copied()
            .unwrap_or("the connection's writer stopped")
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
            || self.state.overflowed.load(Ordering::Acquire)
            || self.state.writer_gone.load(Ordering::Acquire)
    }

    /// Resolves once the writer has stopped.
    pub async fn closed(&self) {
        self.tx.closed().await
    }

    pub fn queued_bytes(&self) -> usize {
        self.state.queued.load(Ordering::Acquire)
    }

    /// Frames waiting for the socket.
    pub fn queued_frames(&self) -> usize {
        self.state.frames.load(Ordering::Acquire)
    }

    /// Whether the connection's requests are being read: false while it is held back
    /// because its client is not reading what it was sent (`cons` shows the interest set).
    pub fn is_reading(&self) -> bool {
        !self.is_closed() && self.queued_bytes() <= self.state.limits.soft
    }

    /// Waits until the queue is at or below its soft limit, or the connection is closed.
    pub async fn wait_for_space(&self) {
        // The common case, checked without registering a waiter (which takes Notify's lock).
        if self.queued_bytes() <= self.state.limits.soft || self.is_closed() {
            return;
        }
        loop {
            let notified = self.state.space.notified();
            tokio::pin!(notified);
            // Registered before the check, so a drain between the check and the wait wakes it.
            notified.as_mut().enable();
            if self.queued_bytes() <= self.state.limits.soft || self.is_closed() {
                return;
            }
            notified.await;
        }
    }
}

impl QueueState {
    fn written(&self, bytes: usize) {
        self.frames.fetch_sub(1, Ordering::AcqRel);
        let before = self.queued.fetch_sub(bytes, Ordering::AcqRel);
        if before > self.limits.soft && before - bytes <= self.limits.soft {
            self.space.notify_waiters();
        }
    }
}

/// The most the writer sends between two flushes; each batch must make it out within the
/// stall limit.
const BATCH_BYTES: usize = 256 * 1024;

/// Why the writer stopped, when it was not asked to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriterEnd {
    /// Every sender is gone or a Close was written.
    Done,
    /// The socket failed (the client went away).
    SocketError,
    /// The queue overflowed its hard limit.
    Overflowed,
    /// A write made no progress for the stall limit.
    Stalled,
}

/// Writes the queue to the socket until it is closed. `sent` is called for every frame
/// written (the keeper counts packets there).
pub async fn write_loop<W: AsyncWrite + Unpin>(
    wr: W,
    reader: QueueReader,
    remote: SocketAddr,
    sent: impl Fn(),
) -> WriterEnd {
    let QueueReader {
        mut rx,
        state: queue,
    } = reader;
    let mut wr = BufWriter::with_capacity(64 * 1024, wr);
    let stall = queue.limits.stall;
    let end = loop {
        let Some(first) = rx.recv().await else {
            let _ = wr.flush().await;
            break WriterEnd::Done;
        };
        let mut pending = Some(first);
        let mut closing = None;
        // Drain what is queued before flushing (one syscall for a burst of replies), at most
        // BATCH_BYTES at a time: the stall limit times one batch, so a client that keeps
        // reading, however slowly, is never taken for one that stopped.
        let mut batch = 0usize;
        let wrote = async {
            while let Some(msg) = pending.take() {
                match msg {
                    Outbound::Frame(body) => {
                        let n = body.len() + 4;
                        wr.write_all(&(body.len() as i32).to_be_bytes()).await?;
                        wr.write_all(&body).await?;
                        queue.written(n);
                        sent();
                        batch += n;
                    }
                    Outbound::Close(why) => {
                        closing = Some(why);
                        break;
                    }
                }
                if batch >= BATCH_BYTES {
                    break;
                }
                pending = rx.try_recv().ok();
            }
            wr.flush().await
        };
        let result = tokio::select! {
            biased;
            _ = queue.kill.notified() => break WriterEnd::Overflowed,
            r = tokio::time::timeout(stall, wrote) => r,
        };
        match result {
            Err(_) => break WriterEnd::Stalled,
            Ok(Err(_)) => break WriterEnd::SocketError,
            Ok(Ok(())) => {}
        }
        if let Some(why) = closing {
            debug!(%remote, "closing the connection: {why}");
            let _ = wr.shutdown().await;
            break WriterEnd::Done;
        }
    };
    match end {
        WriterEnd::Stalled => {
            let _ = queue
                .why
                .set("the client did not read its replies (too slow to read)");
            warn!(
                %remote,
                queued_bytes = queue.queued.load(Ordering::Acquire),
                "client has not read its replies for {} ms; closing the connection",
                stall.as_millis()
            )
        }
        WriterEnd::Overflowed => {
            let _ = queue
                .why
                .set("the client did not read its watch events (queue overflowed)");
            warn!(
                %remote,
                limit_bytes = queue.limits.hard,
                "client is not reading its watch events; closing the connection"
            )
        }
        WriterEnd::SocketError => {
            let _ = queue.why.set("writing to the client failed");
        }
        WriterEnd::Done => {}
    }
    // Nothing more will be written: whoever waits for space must stop waiting.
    rx.close();
    queue.writer_gone.store(true, Ordering::Release);
    queue.space.notify_waiters();
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> QueueLimits {
        QueueLimits {
            soft: 100,
            hard: 300,
            stall: Duration::from_secs(5),
        }
    }

    #[test]
    fn past_the_hard_limit_the_queue_overflows_once() {
        let (q, _reader) = OutQueue::new(limits());
        assert_eq!(q.push(vec![0; 96]), Pushed::Queued); // 100 bytes with the prefix
        assert_eq!(q.push(vec![0; 96]), Pushed::Queued);
        assert_eq!(q.push(vec![0; 96]), Pushed::Queued);
        assert_eq!(q.queued_bytes(), 300);
        assert_eq!(q.queued_frames(), 3);
        assert!(!q.is_reading(), "over the soft limit: held back");
        assert_eq!(q.push(vec![0; 1]), Pushed::Overflowed);
        assert_eq!(q.push(vec![0; 1]), Pushed::Dropped);
        assert!(q.is_closed());
    }

    #[tokio::test]
    async fn the_writer_ends_when_the_last_sender_is_dropped() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (server_side, _) = listener.accept().await.expect("accept");
        let (_rd, wr) = server_side.into_split();
        let (q, reader) = OutQueue::new(limits());
        let writer = tokio::spawn(write_loop(wr, reader, addr, || {}));
        assert_eq!(q.push(vec![1, 2, 3]), Pushed::Queued);
        drop(q);
        let end = tokio::time::timeout(Duration::from_secs(5), writer)
            .await
            .expect("the writer ends")
            .expect("joined");
        assert_eq!(end, WriterEnd::Done);
        drop(client);
    }

    #[test]
    fn a_reply_larger_than_the_hard_limit_is_still_sent() {
        let (q, _reader) = OutQueue::new(limits());
        assert_eq!(q.push_reply(vec![0; 1000]), Pushed::Queued);
        assert!(!q.is_closed());
        // An event behind it is what overflows.
        assert_eq!(q.push(vec![0; 1]), Pushed::Overflowed);
    }

    #[tokio::test]
    async fn waiting_for_space_ends_when_the_writer_drains_below_the_soft_limit() {
        let (q, mut reader) = OutQueue::new(limits());
        q.push(vec![0; 96]);
        q.push(vec![0; 96]);
        let waiter = {
            let q = Arc::clone(&q);
            tokio::spawn(async move { q.wait_for_space().await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        // What the writer does per frame.
        assert!(reader.rx.recv().await.is_some());
        reader.state.written(100);
        assert_eq!((q.queued_frames(), q.is_reading()), (1, true));
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("joined");
    }
}
