//! The raft network: TCP between ensemble members on their quorum ports, in [`wire`]'s frames.
//!
//! The dialing side ([`PeerLink`]) holds one connection to one member and makes one call at a
//! time on it; openraft's replication streams ([`TcpNetwork`]), the submitter's forwarding
//! ([`PeerForwarder`]), the session reports and `sync`'s read index each own their links, so a
//! slow snapshot transfer never holds up a heartbeat or a forwarded write. The listening side
//! ([`serve_peers`]) answers every connection in order: raft RPCs go to the raft node,
//! forwarded writes into the leader's log, session reports to the keeper's
//! [`LivenessHooks`]. A standalone keeper has no peers ([`NoNetwork`]).
//!
//! Must not: know about clients or sessions beyond passing reports through, or decide
//! anything raft decides.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};
use tokio_util::sync::CancellationToken;

use openraft::network::RPCTypes;

use super::wire::{self, Frame, Hello, PeerCodec, Request, Response};
use super::*;

/// openraft's cluster name, checked in every hello: two ensembles never talk to each other.
pub(super) const CLUSTER: &str = "corral";

/// How long dialing a member may take.
const DIAL_TIMEOUT: Duration = Duration::from_millis(500);
/// Probes of a lost leader's quorum port before it is taken to be alive.
const PROBES: usize = 5;
/// After a dead leader is noticed, how long the first voter waits for the others to have
/// voided its lease before it asks for their votes.
const LEASE_VOIDING: Duration = Duration::from_millis(25);
/// How long a keeper call (forward, report, read index) may wait for its answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// What the keeper does with peers' reports; called on the leader.
pub trait LivenessHooks: Send + Sync + 'static {
    /// Member `from` heard these sessions (id, ms since last heard there), and these things
    /// happened to their connections there. Returns the sessions `from` no longer holds
    /// (their clients moved to another member).
    fn sessions_heard(
        &self,
        from: NodeId,
        sessions: &[(i64, u32)],
        events: &[wire::ReportedEvent],
    ) -> Vec<i64>;

    /// Called once, on this member, when a committed membership no longer holds it (after
    /// one that did, in this run): a reconfig removed it. The default does nothing.
    fn left_ensemble(&self) {}
}

/// The members of an ensemble as zoo.cfg lists them.
#[derive(Clone, Debug)]
pub struct MemberConfig {
    pub me: NodeId,
    /// Every member's quorum address, `host:port` as written (resolved when dialed).
    pub addrs: BTreeMap<NodeId, String>,
    /// The voting members (participants); the others are observers (raft learners).
    pub voters: BTreeSet<NodeId>,
    /// Where this member listens for its peers.
    pub listen: SocketAddr,
    /// (heartbeat, election timeout min, max), ms.
    pub timing: (u64, u64, u64),
    /// A leader no quorum has acknowledged for this long counts as cut off (ZooKeeper's
    /// leader gives up after syncLimit ticks without a quorum).
    pub quorum_lost_after: Duration,
    /// The largest quorum frame, either way: holds the largest entry and snapshot chunk.
    pub max_frame: usize,
}

/// Why a call to a peer failed; the caller retries later or reports the peer unreachable.
#[derive(Debug, thiserror::Error)]
pub(super) enum CallError {
    #[error("member {0} has no known address")]
    NoAddress(NodeId),
    #[error("cannot connect to member {target} at {addr}: {source}")]
    Connect {
        target: NodeId,
        addr: String,
        source: io::Error,
    },
    #[error("member {target} refused this member: {reason}")]
    Refused { target: NodeId, reason: String },
    #[error("member {target} did not answer within {ms} ms")]
    Timeout { target: NodeId, ms: u128 },
    #[error("connection to member {target}: {source}")]
    Wire {
        target: NodeId,
        source: wire::WireError,
    },
    #[error("member {target} closed the connection")]
    Closed { target: NodeId },
}

/// One connection to one member, dialed on first use and again after any failure.
pub(super) struct PeerLink {
    me: NodeId,
    target: NodeId,
    addr: Option<String>,
    conn: Option<PeerConn>,
    max_frame: usize,
}

struct PeerConn {
    stream: TcpStream,
    codec: PeerCodec<Response>,
    buf: BytesMut,
    out: BytesMut,
    next_id: u64,
}

impl PeerLink {
    pub(super) fn new(me: NodeId, target: NodeId, addr: Option<String>, max_frame: usize) -> Self {
        PeerLink {
            me,
            target,
            addr,
            conn: None,
            max_frame,
        }
    }

    pub(super) fn set_addr(&mut self, addr: Option<String>) {
        if addr != self.addr {
            self.addr = addr;
            self.conn = None;
        }
    }

    /// Sends `req` and waits for its answer (within `ttl`); on any failure the connection is
    /// dropped, so the next call dials afresh.
    pub(super) async fn call(
        &mut self,
        req: Request,
        ttl: Duration,
    ) -> Result<Response, CallError> {
        let target = self.target;
        let result = tokio::time::timeout(ttl, self.call_inner(req)).await;
        match result {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => {
                self.conn = None;
                Err(e)
            }
            Err(_) => {
                self.conn = None;
                Err(CallError::Timeout {
                    target,
                    ms: ttl.as_millis(),
                })
            }
        }
    }

    async fn call_inner(&mut self, req: Request) -> Result<Response, CallError> {
        // A lost message, as a partition loses it ("return"); "sleep(ms)" delays it (this
        // blocks the calling worker thread: a test of a slow peer link, not production).
        fail::fail_point!("peer-send", |_| Err(CallError::Closed {
            target: self.target
        }));
        // The connection is out of `self` for the whole call and goes back only once the
        // answer is in: a call dropped midway (timed out, or abandoned by its caller when the
        // leader changes) leaves no connection with a half-written request or an unread
        // answer behind.
        let mut conn = match self.conn.take() {
            Some(conn) => conn,
            None => self.dial().await?,
        };
        let resp = conn.round_trip(self.target, req).await?;
        self.conn = Some(conn);
        Ok(resp)
    }

    async fn dial(&self) -> Result<PeerConn, CallError> {
        let target = self.target;
        let addr = self.addr.clone().ok_or(CallError::NoAddress(target))?;
        let connect = tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(addr.as_str()));
        let stream = match connect.await {
            Ok(Ok(s)) => s,
            Ok(Err(source)) => {
                return Err(CallError::Connect {
                    target,
                    addr,
                    source,
                })
            }
            Err(_) => {
                return Err(CallError::Connect {
                    target,
                    addr,
                    source: io::Error::new(io::ErrorKind::TimedOut, "connect timed out"),
                })
            }
        };
        // Raft messages are small and latency-bound: no Nagle delay.
        let _ = stream.set_nodelay(true);
        let mut conn = PeerConn {
            stream,
            codec: PeerCodec::new(self.max_frame),
            buf: BytesMut::with_capacity(64 * 1024),
            out: BytesMut::new(),
            next_id: 1,
        };
        let hello = Request::Hello(Hello::new(CLUSTER, self.me, target));
        match conn.round_trip(target, hello).await? {
            Response::HelloOk => Ok(conn),
            Response::Refused { reason } => Err(CallError::Refused { target, reason }),
            other => Err(CallError::Refused {
                target,
                reason: format!("answered the hello with {}", wire::kind_name(other.kind())),
            }),
        }
    }
}

impl PeerConn {
    async fn round_trip(&mut self, target: NodeId, req: Request) -> Result<Response, CallError> {
        let id = self.next_id;
        self.next_id += 1;
        let wire_err = |source| CallError::Wire { target, source };
        self.out.clear();
        self.codec
            .encode(Frame { id, msg: req }, &mut self.out)
            .map_err(wire_err)?;
        self.stream
            .write_all(&self.out)
            .await
            .map_err(|e| wire_err(e.into()))?;
        loop {
            if let Some(frame) = self.codec.decode(&mut self.buf).map_err(wire_err)? {
                if frame.id == id {
                    return Ok(frame.msg);
                }
                // An answer to a call that timed out earlier cannot arrive: a timeout drops
                // the connection. Anything else is a broken peer.
                return Err(CallError::Closed { target });
            }
            let n = self
                .stream
                .read_buf(&mut self.buf)
                .await
                .map_err(|e| wire_err(e.into()))?;
            if n == 0 {
                return Err(CallError::Closed { target });
            }
        }
    }
}

impl CallError {
    /// Whether this failure says the member is down, not merely slow: nothing listens on its
    /// quorum port, it refused us, or it dropped the connection. Silence (a timeout) says
    /// nothing yet: that is syncLimit's business.
    fn says_gone(&self) -> bool {
        match self {
            CallError::Connect { source, .. } => source.kind() != io::ErrorKind::TimedOut,
            CallError::Refused { .. } | CallError::Closed { .. } => true,
            CallError::Wire { source, .. } => matches!(source, wire::WireError::Io(_)),
            CallError::NoAddress(_) | CallError::Timeout { .. } => false,
        }
    }

    /// What openraft is told. Only a member that cannot be reached at all is Unreachable,
    /// which makes openraft back off from it (500 ms): a slow answer or a broken connection
    /// is retried at once, or the one follower left after a failover would stall commits.
    fn to_rpc<E: std::error::Error>(
        &self,
        me: NodeId,
        action: RPCTypes,
    ) -> RPCError<NodeId, BasicNode, E> {
        match self {
            CallError::NoAddress(_) | CallError::Connect { .. } | CallError::Refused { .. } => {
                RPCError::Unreachable(Unreachable::new(self))
            }
            CallError::Timeout { target, ms } => RPCError::Timeout(openraft::error::Timeout {
                action,
                id: me,
                target: *target,
                timeout: Duration::from_millis(u64::try_from(*ms).unwrap_or(u64::MAX)),
            }),
            CallError::Wire { .. } | CallError::Closed { .. } => {
                RPCError::Network(openraft::error::NetworkError::new(self))
            }
        }
    }
}

// ---- openraft's side ----

/// Which members this one's raft calls found down (a refused, reset or closed connection),
/// and since when. A ZooKeeper leader learns at once that its followers' sockets closed; a
/// leader going by acknowledgements alone would wait syncLimit ticks to know its quorum gone.
#[derive(Default)]
pub(super) struct PeerHealth {
    gone: Mutex<BTreeMap<NodeId, Instant>>,
}

impl PeerHealth {
    pub(super) fn record<T>(&self, target: NodeId, result: &Result<T, CallError>) {
        let mut gone = self.gone.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(_) => {
                gone.remove(&target);
            }
            Err(e) if e.says_gone() => {
                gone.entry(target).or_insert_with(Instant::now);
            }
            Err(_) => {}
        }
    }

    /// How long too many of `voters` (`me` among them, never gone) have been down for a
    /// quorum to remain; None while a quorum may still be there.
    pub(super) fn quorum_gone_for(
        &self,
        me: NodeId,
        voters: impl IntoIterator<Item = NodeId>,
    ) -> Option<Duration> {
        let gone = self.gone.lock().unwrap_or_else(|p| p.into_inner());
        let mut count = 0usize;
        let mut since: Vec<Instant> = voters
            .into_iter()
            .inspect(|_| count += 1)
            .filter(|id| *id != me)
            .filter_map(|id| gone.get(&id).copied())
            .collect();
        // The quorum went with the voter whose loss left fewer than a majority.
        let tolerated = count.saturating_sub(count / 2 + 1);
        since.sort_unstable();
        since.get(tolerated).map(|lost| lost.elapsed())
    }
}

/// openraft's network factory over TCP: a [`PeerLink`] per replication stream.
pub struct TcpNetwork {
    pub(super) me: NodeId,
    pub(super) max_frame: usize,
    pub(super) contact: Arc<LeaderContact>,
    pub(super) health: Arc<PeerHealth>,
}

impl RaftNetworkFactory<TypeConfig> for TcpNetwork {
    type Network = RaftPeer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> RaftPeer {
        let addr = (!node.addr.is_empty()).then(|| node.addr.clone());
        RaftPeer {
            link: PeerLink::new(self.me, target, addr, self.max_frame),
            max_frame: self.max_frame,
            contact: Arc::clone(&self.contact),
            health: Arc::clone(&self.health),
        }
    }
}

/// Bytes of log entries one append-entries call carries at most (one entry always goes).
const APPEND_BUDGET: usize = 4 << 20;

/// How many of `entries` fit in `budget` bytes (at least one), if not all do.
pub(super) fn entries_within(entries: &[LogEntry], budget: usize) -> Option<usize> {
    let mut bytes = 0usize;
    for (i, e) in entries.iter().enumerate() {
        bytes += entry_size_estimate(e);
        if bytes > budget && i > 0 {
            return Some(i);
        }
    }
    None
}

pub struct RaftPeer {
    link: PeerLink,
    max_frame: usize,
    contact: Arc<LeaderContact>,
    health: Arc<PeerHealth>,
}

impl RaftPeer {
    /// One raft call, its outcome noted in [`PeerHealth`].
    async fn call(&mut self, req: Request, ttl: Duration) -> Result<Response, CallError> {
        let result = self.link.call(req, ttl).await;
        self.health.record(self.link.target, &result);
        result
    }
}

impl RaftNetwork<TypeConfig> for RaftPeer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let target = self.link.target;
        // openraft sends up to max_payload_entries entries and waits one heartbeat for the
        // answer; entries of 1 MiB batches would make a call that never ends in time (a
        // member far behind never caught up). Fewer entries then, by openraft's hint.
        if let Some(fit) = entries_within(&rpc.entries, APPEND_BUDGET) {
            return Err(wire::too_large(fit, self.max_frame));
        }
        match self
            .call(Request::AppendEntries(rpc), option.hard_ttl())
            .await
        {
            Ok(resp) => wire::append_entries_reply(target, resp),
            Err(CallError::Wire {
                source:
                    wire::WireError::TooLarge {
                        entries_fit: Some(n),
                        ..
                    },
                ..
            }) => Err(wire::too_large(n, self.max_frame)),
            Err(e) => Err(e.to_rpc(self.link.me, RPCTypes::AppendEntries)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        let target = self.link.target;
        match self
            .call(Request::InstallSnapshot(rpc), option.hard_ttl())
            .await
        {
            Ok(resp) => wire::install_snapshot_reply(target, resp),
            Err(e) => Err(e.to_rpc(self.link.me, RPCTypes::InstallSnapshot)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let target = self.link.target;
        let mine = rpc.last_log_id;
        match self.call(Request::Vote(rpc), option.hard_ttl()).await {
            Ok(resp) => {
                let reply = wire::vote_reply(target, resp);
                if let Ok(r) = &reply {
                    if !r.vote_granted && r.last_log_id > mine {
                        self.contact.refused_for_shorter_log();
                    }
                }
                reply
            }
            Err(e) => Err(e.to_rpc(self.link.me, RPCTypes::Vote)),
        }
    }
}

// ---- The keeper's calls to the leader ----

/// Links to the members, for the keeper's calls (forward, report, read index): one per
/// member, addressed from the current membership (zoo.cfg's addresses before it is known).
pub(super) struct LeaderLinks {
    me: NodeId,
    max_frame: usize,
    config_addrs: BTreeMap<NodeId, String>,
    links: tokio::sync::Mutex<BTreeMap<NodeId, PeerLink>>,
}

impl LeaderLinks {
    pub(super) fn new(members: &MemberConfig, max_frame: usize) -> LeaderLinks {
        LeaderLinks {
            me: members.me,
            max_frame,
            config_addrs: members.addrs.clone(),
            links: tokio::sync::Mutex::new(BTreeMap::new()),
        }
    }

    /// Calls member `target` with `req`.
    pub(super) async fn call(
        &self,
        raft: &Raft,
        target: NodeId,
        req: Request,
    ) -> Result<Response, CallError> {
        let metrics = raft.metrics();
        let known = metrics
            .borrow()
            .membership_config
            .nodes()
            .find(|(id, _)| **id == target)
            .map(|(_, n)| n.addr.clone())
            .filter(|a| !a.is_empty());
        let addr = known.or_else(|| self.config_addrs.get(&target).cloned());
        let mut links = self.links.lock().await;
        let link = links
            .entry(target)
            .or_insert_with(|| PeerLink::new(self.me, target, None, self.max_frame));
        link.set_addr(addr);
        link.call(req, CALL_TIMEOUT).await
    }
}

/// The submitter's way to the leader (see [`Forwarder`]).
pub(super) struct PeerForwarder {
    pub(super) raft: Raft,
    pub(super) links: LeaderLinks,
}

impl Forwarder for PeerForwarder {
    async fn forward(
        &self,
        leader: NodeId,
        term: u64,
        proposals: Vec<Proposal>,
    ) -> Result<ForwardOutcome, ForwardError> {
        let req = Request::Forward { term, proposals };
        match self.links.call(&self.raft, leader, req).await {
            Ok(Response::ForwardReply {
                accepted,
                not_leader: None,
            }) => Ok(ForwardOutcome::Accepted(accepted as usize)),
            Ok(Response::ForwardReply { accepted, .. }) if accepted > 0 => {
                Ok(ForwardOutcome::Accepted(accepted as usize))
            }
            Ok(Response::ForwardReply { .. }) => Ok(ForwardOutcome::NotLeader),
            Ok(other) => Err(ForwardError(format!(
                "member {leader} answered a forward with {}",
                wire::kind_name(other.kind())
            ))),
            Err(e) => Err(ForwardError(e.to_string())),
        }
    }
}

// ---- The listening side ----

/// What the quorum port's connections need.
pub(super) struct PeerService {
    pub(super) raft: Raft,
    /// Forwarded proposals go into this leader's log through it.
    pub(super) intake: Arc<Intake>,
    pub(super) members: MemberConfig,
    pub(super) max_frame: usize,
    pub(super) liveness: Arc<dyn LivenessHooks>,
    pub(super) contact: Arc<LeaderContact>,
}

/// Accepts members' connections until `stop`; each is served by its own task.
pub(super) async fn serve_peers(
    listener: TcpListener,
    service: Arc<PeerService>,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, remote)) => {
                let _ = stream.set_nodelay(true);
                let service = Arc::clone(&service);
                let stop = stop.clone();
                tokio::spawn(async move {
                    let mut from = None;
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        r = serve_peer(stream, &service, &mut from) => if let Err(e) = r {
                            tracing::debug!(%remote, "quorum connection ended: {e}");
                        }
                    }
                    if let Some(peer) = from {
                        service.peer_connection_lost(peer).await;
                    }
                });
            }
            Err(e) => {
                // Out of descriptors, say: back off rather than spin.
                tracing::warn!("quorum port accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Serves one member's connection; `from` is set to the member once its hello is accepted.
async fn serve_peer(
    mut stream: TcpStream,
    service: &PeerService,
    from: &mut Option<NodeId>,
) -> Result<(), wire::WireError> {
    let mut codec = PeerCodec::<Request>::new(service.max_frame);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut out = BytesMut::new();
    loop {
        let frame = loop {
            if let Some(f) = codec.decode(&mut buf)? {
                break f;
            }
            if stream.read_buf(&mut buf).await? == 0 {
                return Ok(());
            }
        };
        let resp = match (frame.msg, *from) {
            (Request::Hello(h), None) => {
                let check = h.check(CLUSTER, service.members.me, |id| {
                    service.members.addrs.contains_key(&id)
                });
                if check.is_ok() {
                    *from = Some(h.from);
                }
                wire::hello_reply(check)
            }
            (_, None) | (Request::Hello(_), Some(_)) => Response::Refused {
                reason: "expected one hello, first".into(),
            },
            (req, Some(peer)) => service.handle(peer, req).await,
        };
        let refused = matches!(resp, Response::Refused { .. });
        out.clear();
        codec.encode(
            Frame {
                id: frame.id,
                msg: resp,
            },
            &mut out,
        )?;
        stream.write_all(&out).await?;
        if refused {
            return Ok(());
        }
    }
}

impl PeerService {
    async fn handle(&self, peer: NodeId, req: Request) -> Response {
        match req {
            Request::AppendEntries(r) => {
                let answering = self.contact.append_started();
                match self.raft.append_entries(r).await {
                    Ok(resp) => {
                        if matches!(resp, AppendEntriesResponse::HigherVote(_)) {
                            answering.refused();
                        }
                        Response::AppendEntries(resp)
                    }
                    Err(e) => {
                        answering.refused();
                        Response::RaftError(e.into())
                    }
                }
            }
            Request::Vote(r) => match self.raft.vote(r).await {
                Ok(resp) => {
                    if resp.vote_granted {
                        self.contact.heard();
                    }
                    Response::Vote(resp)
                }
                Err(e) => Response::RaftError(e.into()),
            },
            Request::InstallSnapshot(r) => match self.raft.install_snapshot(r).await {
                Ok(resp) => Response::InstallSnapshot(resp),
                Err(e) => Response::RaftError(e.into()),
            },
            Request::Forward { term, proposals } => self.accept_forward(term, proposals).await,
            Request::SessionReport {
                from,
                sessions,
                events,
            } => {
                if from != peer || !self.leads() {
                    // A report that reached a member that does not lead is dropped; the
                    // reporter sends it again to whoever leads.
                    return Response::Error {
                        message: format!("member {} does not lead", self.members.me),
                    };
                }
                Response::SessionReportReply {
                    moved_away: self.liveness.sessions_heard(from, &sessions, &events),
                }
            }
            Request::ReadIndex => match self.raft.get_read_log_id().await {
                Ok((read, _)) => Response::ReadIndexReply(Ok(read.map_or(0, |l| l.index))),
                Err(_) => Response::ReadIndexReply(Err(wire::NotLeader {
                    leader: self.raft.metrics().borrow().current_leader,
                })),
            },
            Request::Hello(_) => Response::Refused {
                reason: "a second hello".into(),
            },
        }
    }

    /// A connection from `peer` ended. If `peer` is the leader and its quorum port now refuses
    /// connections, its process is gone (a crash or kill -9 closes its sockets at once, as
    /// ZooKeeper's followers notice): the members stand for election now instead of waiting
    /// out the leader's lease and an election timeout.
    ///
    /// So that the first round elects: every survivor but the lowest-numbered voter starts
    /// an election at once (voiding the dead leader's lease with its own vote, in the next
    /// term), and the lowest-numbered voter, a moment later, one term further, which all the
    /// others can grant. If it is behind them or gone too, a later round elects as usual.
    async fn peer_connection_lost(&self, peer: NodeId) {
        let following = |raft: &Raft| {
            let m = raft.metrics();
            let m = m.borrow();
            m.state == ServerState::Follower && m.current_leader == Some(peer)
        };
        if peer == self.members.me || !following(&self.raft) {
            return;
        }
        let Some(addr) = self.members.addrs.get(&peer) else {
            return;
        };
        // A dying process's listening socket may close a moment after its connections: a
        // few probes, a few milliseconds apart, before calling it alive.
        let mut gone = false;
        for _ in 0..PROBES {
            let probe = tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(addr.as_str())).await;
            if matches!(&probe, Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused) {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Several of its connections end at once: one election is enough.
        if !gone || !following(&self.raft) {
            return;
        }
        let first_voter = {
            let m = self.raft.metrics();
            let m = m.borrow();
            let voters = m.membership_config.membership().voter_ids();
            voters.filter(|&v| v != peer).min()
        };
        tracing::info!(
            leader = peer,
            "the leader's quorum port refuses connections: its process is gone; \
             standing for election now"
        );
        if first_voter == Some(self.members.me) {
            tokio::time::sleep(LEASE_VOIDING).await;
            if !following(&self.raft) {
                return;
            }
            let _ = self.raft.trigger().elect().await;
        }
        let _ = self.raft.trigger().elect().await;
    }

    fn leads(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self.members.me)
    }

    /// A follower's writes, into this leader's log in order, while it leads in `term`.
    async fn accept_forward(&self, term: u64, proposals: Vec<Proposal>) -> Response {
        let not_leader = {
            let m = self.raft.metrics();
            let m = m.borrow();
            let leads = m.state == ServerState::Leader
                && m.current_leader == Some(self.members.me)
                && m.current_term == term;
            (!leads).then_some((m.current_term, m.current_leader))
        };
        if not_leader.is_some() {
            return Response::ForwardReply {
                accepted: 0,
                not_leader,
            };
        }
        let accepted = u32::try_from(proposals.len()).unwrap_or(u32::MAX);
        match self.intake.put(term, proposals).await {
            Ok(()) => Response::ForwardReply {
                accepted,
                not_leader: None,
            },
            Err(IntakeStopped) => Response::ForwardReply {
                accepted: 0,
                not_leader: Some((term, None)),
            },
        }
    }
}

mod standalone;
pub use standalone::*;
