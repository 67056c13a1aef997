//! Before a session exists: the first four bytes decide between a four-letter word (answered,
//! then the connection ends) and a connect request, which creates a session through
//! consensus, resumes one (id and password checked), or tells the client its session
//! expired. All of it within the handshake bound. Must not: serve requests.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use corral_proto::frame::FrameBuffer;
use corral_proto::jute::{Jute, Reader};
use corral_proto::{ConnectRequest, ConnectResponse};
use corral_tree::{Entry, EntryOp};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::{read_more, Close, Link};
use crate::shared::registry::ConnHandle;
use crate::shared::{now_ms, Shared};

/// The session a connection holds once its handshake succeeded.
#[derive(Debug, Clone, Copy)]
pub(super) struct Attached {
    pub session_id: i64,
    /// A read-only session (this member is cut off from the quorum): writes are refused
    /// with NotReadOnly, nothing goes through consensus.
    pub read_only: bool,
}

/// Reads the first four bytes: a four-letter word is answered here and the connection ends
/// (`None`); otherwise the write half is handed back for the session.
pub(super) async fn four_letter_or_session<R, W>(
    keeper: &Arc<Shared>,
    rd: &mut R,
    buf: &mut Vec<u8>,
    wr: W,
    remote: SocketAddr,
    deadline: Instant,
) -> Option<W>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let first_bytes = tokio::time::timeout_at(deadline, read_at_least(rd, buf, 4));
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
            return None;
        }
        Err(_) => {
            note_handshake_timeout(keeper, remote);
            return None;
        }
    }
    let Some(cmd) = crate::admin::recognize([buf[0], buf[1], buf[2], buf[3]]) else {
        return Some(wr);
    };
    let mut extra = None;
    if crate::admin::needs_trace_mask(cmd) {
        let mask = tokio::time::timeout_at(deadline, read_at_least(rd, buf, 12));
        if !matches!(mask.await, Ok(Ok(()))) {
            return None;
        }
        let mut b = [0u8; 8];
        b.copy_from_slice(&buf[4..12]);
        extra = Some(b);
    }
    four_letter_word(keeper, cmd, extra, wr, remote, deadline).await;
    None
}

async fn read_at_least<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut Vec<u8>,
    n: usize,
) -> std::io::Result<()> {
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

async fn four_letter_word<W: AsyncWrite + Unpin>(
    keeper: &Arc<Shared>,
    cmd: &'static str,
    extra: Option<[u8; 8]>,
    mut wr: W,
    remote: SocketAddr,
    deadline: Instant,
) {
    let text = if keeper.config.four_letter_whitelist.allows(cmd) {
        crate::admin::four_letter_reply(keeper, cmd, extra)
    } else {
        crate::admin::not_whitelisted(cmd)
    };
    debug!(%remote, cmd, "four-letter word");
    // Within the handshake bound too: a large reply (dump, cons, wchp) to a client that never
    // reads must not hold the socket and its maxClientCnxns slot for ever.
    let sent = tokio::time::timeout_at(deadline, async {
        wr.write_all(text.as_bytes()).await?;
        wr.shutdown().await
    });
    if sent.await.is_err() {
        note_handshake_timeout(keeper, remote);
    }
}

fn note_handshake_timeout(keeper: &Shared, remote: SocketAddr) {
    keeper.stats.note_handshake_timeout(
        remote,
        keeper.config.handshake_timeout(),
        keeper.uptime_ms(),
    );
}

/// Reads the connect request (within `deadline`) and answers it.
pub(super) async fn connect<R: AsyncRead + Unpin>(
    link: &Link,
    rd: &mut R,
    buf: &mut FrameBuffer,
    deadline: Instant,
) -> Result<Attached, Close> {
    let keeper = &link.keeper;
    loop {
        match buf.next_frame(keeper.config.jute_max_buffer) {
            Ok(Some(body)) => return answer_connect(link, body).await,
            Ok(None) => {}
            Err(e) => {
                warn!(remote = %link.remote, "malformed input: {e}; closing connection");
                return Err(format!("malformed input: {e}"));
            }
        }
        // A connection that never completes its handshake is dropped rather than held.
        let bounded = tokio::time::timeout_at(deadline, read_more(rd, buf));
        tokio::select! {
            r = bounded => match r {
                Ok(r) => r?,
                Err(_) => {
                    note_handshake_timeout(keeper, link.remote);
                    return Err("no handshake in time".into());
                }
            },
            _ = keeper.shutting_down() => return Err("the keeper is shutting down".into()),
        }
    }
}

async fn answer_connect(link: &Link, body: &[u8]) -> Result<Attached, Close> {
    let keeper = &link.keeper;
    let remote = link.remote;
    let req = match ConnectRequest::read(&mut Reader::new(body)) {
        Ok(req) => req,
        Err(e) => {
            warn!(%remote, "malformed connect request: {e}; closing connection");
            return Err(format!("malformed connect request: {e}"));
        }
    };
    let last_zxid = keeper.last_zxid();
    if req.last_zxid_seen > last_zxid {
        // The client has seen a newer state than ours; ZooKeeper refuses so that it
        // tries a server that is further along.
        warn!(
            %remote,
            "refusing session request: client has seen zxid 0x{:x}, our last zxid is 0x{:x}",
            req.last_zxid_seen, last_zxid
        );
        return Err("client zxid ahead".into());
    }
    let timeout = keeper.config.negotiate_timeout(req.timeout);
    // A client that accepts a read-only session, where read-only mode is on.
    let may_read_only = req.read_only == Some(true) && keeper.config.read_only_mode;
    if keeper.read_only() {
        // ZooKeeper's read-only server: only clients that allow it.
        if !may_read_only {
            info!(%remote, "refusing a client that does not allow read-only mode: this member is cut off from the quorum");
            return Err("not a read-only client".into());
        }
        // A session of the quorum's is not downgraded to a local one, as in ZooKeeper (whose
        // Java client would adopt the local id and find its own session gone afterwards):
        // the client keeps trying members until one of the quorum resumes it.
        if req.session_id != 0 && keeper.state().tree.session(req.session_id).is_some() {
            info!(
                %remote,
                session = format!("0x{:x}", req.session_id),
                "refusing global session reconnection in read-only mode"
            );
            return Err("a global session in read-only mode".into());
        }
        return Ok(read_only_session(link, timeout));
    }
    if keeper.cut_off() {
        // No quorum to create or keep a session with: the client tries another member.
        info!(%remote, "refusing a client: this member is cut off from the quorum");
        return Err("cut off from the quorum".into());
    }
    let read_only = req.read_only.map(|_| false);
    if req.session_id == 0 {
        let session_id = keeper.next_session_id();
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
        let created = async {
            if !may_read_only {
                return Some(keeper.propose(entry).await);
            }
            // No quorum may be there to create it: if this member turns out to be cut off,
            // the client gets a read-only session instead of waiting out its timeout.
            tokio::select! {
                r = keeper.propose(entry) => Some(r),
                _ = became_cut_off(keeper) => None,
            }
        };
        match created.await {
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                warn!(%remote, "cannot create session: {e}");
                return Err(format!("session creation failed: {e}"));
            }
            None => return Ok(read_only_session(link, timeout)),
        }
        attach(link, session_id, timeout, false, Some((req.timeout, false)));
        info!(%remote, session = format!("0x{session_id:x}"), timeout, "session established");
        send_connect_response(link, timeout, session_id, passwd, read_only);
        return Ok(Attached {
            session_id,
            read_only: false,
        });
    }
    let password_matches = keeper
        .state()
        .tree
        .session(req.session_id)
        .is_some_and(|s| s.passwd == req.passwd);
    let live = password_matches
        && keeper
            .sessions()
            .get(req.session_id)
            .is_some_and(|l| !l.expiring);
    if !live {
        info!(
            %remote,
            session = format!("0x{:x}", req.session_id),
            "invalid or expired session on reconnect; telling the client it expired"
        );
        send_connect_response(link, 0, 0, vec![0; 16], read_only);
        link.close("session expired");
        return Err("session expired or invalid password".into());
    }
    attach(
        link,
        req.session_id,
        timeout,
        false,
        Some((req.timeout, true)),
    );
    info!(%remote, session = format!("0x{:x}", req.session_id), timeout, "session resumed");
    send_connect_response(link, timeout, req.session_id, req.passwd, read_only);
    Ok(Attached {
        session_id: req.session_id,
        read_only: false,
    })
}

/// A session local to this member, cut off from the quorum: nothing goes through consensus
/// (there is no quorum); it ends with its connection or when the quorum is back.
fn read_only_session(link: &Link, timeout: i32) -> Attached {
    let keeper = &link.keeper;
    let session_id = keeper.next_session_id();
    let passwd: Vec<u8> = (0..16).map(|_| rand::random::<u8>()).collect();
    attach(link, session_id, timeout, true, None);
    info!(remote = %link.remote, session = format!("0x{session_id:x}"), timeout, "read-only session established");
    send_connect_response(link, timeout, session_id, passwd, Some(true));
    Attached {
        session_id,
        read_only: true,
    }
}

/// Resolves once this member counts as cut off from the quorum.
async fn became_cut_off(keeper: &Shared) {
    while !keeper.cut_off() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn send_connect_response(
    link: &Link,
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
    link.send(resp.to_bytes());
}

/// Binds the session to this connection, closing any older connection that held it.
/// `history`: the timeout the client asked for and whether it resumed an existing session,
/// for the session's connection history (read-only sessions have none).
fn attach(
    link: &Link,
    session_id: i64,
    timeout: i32,
    read_only: bool,
    history: Option<(i32, bool)>,
) {
    let keeper = &link.keeper;
    // The connect request is this connection's first packet.
    link.stats.packets_received.fetch_add(1, Relaxed);
    let handle = ConnHandle {
        out: Arc::clone(&link.out),
        remote: link.remote,
        session_id,
        timeout_ms: timeout,
        established: SystemTime::now(),
        stats: Arc::clone(&link.stats),
        read_only,
    };
    if let Some(old) = keeper.conns().attach(link.id, handle) {
        old.out.close("session moved to a new connection");
    }
    let mut sessions = keeper.sessions();
    sessions.set_timeout(session_id, Duration::from_millis(timeout.max(0) as u64));
    sessions.touch(session_id, Instant::now(), "connect", Some(link.remote));
    if let Some((requested, resumed)) = history {
        sessions.connected(
            session_id,
            link.id,
            link.remote,
            requested,
            resumed,
            now_ms(),
        );
    }
}
