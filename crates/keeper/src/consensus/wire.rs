//! The quorum port's wire format: every message between ensemble members, as bytes.
//!
//! Owns the framing (`[u32 length of the rest][u32 crc32c of the body][body]`, the body being
//! `[u64 request id][u8 kind][payload]`), the payload of every message ([`Request`],
//! [`Response`]), the hello check ([`Hello::check`]), the sizing of append-entries against the
//! frame limit (`append_entries_fit`, [`too_large`]), and the way a decoded reply becomes what
//! openraft's `RaftNetwork` methods return ([`append_entries_reply`], [`vote_reply`],
//! [`install_snapshot_reply`]). [`PeerCodec`] is the tokio-util codec over a connection.
//!
//! Requests and responses are two enums, not one: the dialing side sends only [`Request`]s
//! and the listening side only [`Response`]s, so each side's codec decodes only what it can
//! receive ([`PeerCodec<Request>`] on the listener, [`PeerCodec<Response>`] on the dialer) and
//! its handler matches no variant it could never be sent. Their kinds are disjoint (requests
//! below 0x80, responses from 0x80), so a frame that reaches the wrong side is an unknown kind,
//! not a misread. A response echoes its request's id.
//!
//! Raft values (vote, log ids, snapshot metadata, log entries) are encoded by
//! [`super::codec`]'s own functions, each length-prefixed, so they have one format on disk and
//! on the wire and a change there (the log entry payload becoming a [`Proposal`]) flows here.
//!
//! Any decode error leaves the stream unusable (the peer is broken or not a corral member):
//! the caller closes the connection. Must not: do I/O beyond the codec traits, know about
//! connections, timers, retries or the raft node, panic on any input, reserve room for more
//! than one frame within the limit, or size anything inside a frame by a count the bytes
//! present cannot back.

use std::marker::PhantomData;

use corral_proto::Reader;
use openraft::error::{NetworkError, PayloadTooLarge, RemoteError, SnapshotMismatch};
use openraft::{ErrorSubject, ErrorVerb, SnapshotSegmentId};
use tokio_util::bytes::{Buf, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::*;

/// Version spoken by this build, sent in [`Hello`]. The hello's own layout never changes, so a
/// member of another version is told so rather than misread.
pub const PROTOCOL_VERSION: u16 = 1;

/// Bytes in front of a frame's body: the length and the checksum.
const FRAME_HEADER: usize = 8;
/// Bytes of a body before its payload: the request id and the kind.
const BODY_HEAD: usize = 9;

// Request kinds.
const K_HELLO: u8 = 0x01;
const K_APPEND: u8 = 0x02;
const K_VOTE: u8 = 0x03;
const K_SNAPSHOT: u8 = 0x04;
const K_FORWARD: u8 = 0x05;
const K_SESSIONS: u8 = 0x06;
const K_READ_INDEX: u8 = 0x07;
// Response kinds.
const K_HELLO_OK: u8 = 0x81;
const K_REFUSED: u8 = 0x82;
const K_APPEND_REPLY: u8 = 0x83;
const K_VOTE_REPLY: u8 = 0x84;
const K_SNAPSHOT_REPLY: u8 = 0x85;
const K_RAFT_ERROR: u8 = 0x86;
const K_FORWARD_REPLY: u8 = 0x87;
const K_SESSIONS_REPLY: u8 = 0x88;
const K_READ_INDEX_REPLY: u8 = 0x89;
const K_ERROR: u8 = 0x8a;

/// One message and the id that pairs a response with its request.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame<M> {
    pub id: u64,
    pub msg: M,
}

/// The first frame on a connection, from the dialer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub version: u16,
    /// openraft's cluster name: two ensembles on one network never talk to each other.
    pub cluster: String,
    pub from: NodeId,
    pub to: NodeId,
}

/// What a dialer sends.
#[derive(Debug, Clone)]
pub enum Request {
    Hello(Hello),
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// A follower hands its clients' writes to the member it takes for the leader; `term` is
    /// the term in which it does.
    Forward {
        term: u64,
        proposals: Vec<Proposal>,
    },
    /// The sessions a member heard from, and for how long each has been idle there (ms).
    SessionReport {
        from: NodeId,
        sessions: Vec<(i64, u32)>,
    },
    /// The leader's commit index, for `sync`.
    ReadIndex,
}

/// What a listener answers.
#[derive(Debug, PartialEq, Eq)]
pub enum Response {
    HelloOk,
    Refused {
        reason: String,
    },
    AppendEntries(AppendEntriesResponse<NodeId>),
    Vote(VoteResponse<NodeId>),
    InstallSnapshot(InstallSnapshotResponse<NodeId>),
    /// The raft node refused an RPC (any of the three).
    RaftError(RaftFailure),
    /// `accepted` of the forwarded proposals were submitted, in order; the rest were not
    /// because this member does not lead (its term and the leader it knows of, if any).
    ForwardReply {
        accepted: u32,
        not_leader: Option<(u64, Option<NodeId>)>,
    },
    /// Sessions the leader knows to be attached to another member now.
    SessionReportReply {
        moved_away: Vec<i64>,
    },
    ReadIndexReply(Result<u64, NotLeader>),
    /// The request could not be handled at all (say, the member is starting or stopping).
    Error {
        message: String,
    },
}

/// This member does not lead; the one it knows of, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotLeader {
    pub leader: Option<NodeId>,
}

/// A raft error as it crosses the wire: what openraft's RPC handlers return, reduced to what
/// the sender can act on. A snapshot mismatch keeps both segment ids: openraft restarts the
/// transfer from them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RaftFailure {
    Fatal { kind: FatalKind, message: String },
    SnapshotMismatch(SnapshotMismatch),
}

/// Which [`Fatal`] the remote raft node hit; a storage error travels as its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FatalKind {
    Stopped,
    Panicked,
    Storage,
}

/// Why bytes from a peer, or a message for one, do not make a frame.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The length prefix announces more than the limit (nothing is read or reserved for it).
    #[error("frame of {len} bytes is over the limit of {max}")]
    FrameTooLarge { len: usize, max: usize },
    #[error("frame of {len} bytes is too short to hold a checksum, an id and a kind")]
    FrameTooShort { len: usize },
    #[error("frame checksum {actual:#010x} does not match the header's {expected:#010x}")]
    Checksum { expected: u32, actual: u32 },
    /// Also a response kind sent to a listener, or a request kind to a dialer.
    #[error("unknown message kind {kind:#04x}")]
    UnknownKind { kind: u8 },
    #[error("{} message: {problem}", kind_name(*.kind))]
    Payload {
        kind: u8,
        #[source]
        problem: PayloadProblem,
    },
    /// Refused before anything was written: the message would make a frame over the limit.
    /// For append-entries, `entries_fit` is how many of its first entries would fit (see
    /// [`too_large`]).
    #[error("{} message of at least {len} bytes is over the frame limit of {max}", kind_name(*.kind))]
    TooLarge {
        kind: u8,
        len: usize,
        max: usize,
        entries_fit: Option<usize>,
    },
    /// From the stream under the codec.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// What was wrong inside a payload; `field` names where.
#[derive(Debug, thiserror::Error)]
pub enum PayloadProblem {
    /// Cut short, a bad length, bad UTF-8, or bytes left over after the last field.
    #[error("{field}: {source}")]
    Bytes {
        field: &'static str,
        source: corral_proto::DecodeError,
    },
    #[error("{field}: bad tag {tag}")]
    Tag { field: &'static str, tag: u8 },
    /// A raft value (vote, log id, snapshot metadata, log entry) refused by the consensus codec.
    #[error("{field}: {source}")]
    Raft {
        field: &'static str,
        source: DecodeError,
    },
    #[error("{field}: {source}")]
    ClientEntry {
        field: &'static str,
        source: corral_tree::CodecError,
    },
}

/// A name for logs and errors.
pub fn kind_name(kind: u8) -> &'static str {
    match kind {
        K_HELLO => "hello",
        K_APPEND => "append-entries",
        K_VOTE => "vote",
        K_SNAPSHOT => "install-snapshot",
        K_FORWARD => "forward",
        K_SESSIONS => "session-report",
        K_READ_INDEX => "read-index",
        K_HELLO_OK => "hello-ok",
        K_REFUSED => "refused",
        K_APPEND_REPLY => "append-entries reply",
        K_VOTE_REPLY => "vote reply",
        K_SNAPSHOT_REPLY => "install-snapshot reply",
        K_RAFT_ERROR => "raft error",
        K_FORWARD_REPLY => "forward reply",
        K_SESSIONS_REPLY => "session-report reply",
        K_READ_INDEX_REPLY => "read-index reply",
        K_ERROR => "error",
        _ => "unknown",
    }
}

/// A message one side of a connection sends: [`Request`] or [`Response`].
pub trait WireMessage: Sized {
    /// Its kind byte.
    fn kind(&self) -> u8;
    /// Appends the payload, or stops once `out` is longer than `limit` (the frame would be
    /// over the limit) and says how many entries fit when it is an append-entries request.
    fn put_payload(&self, out: &mut Vec<u8>, limit: usize) -> Result<(), Overflow>;
    /// Reads the payload of a frame of `kind`; `None` for a kind this side is never sent.
    fn read_payload(kind: u8, r: &mut Reader<'_>) -> Result<Option<Self>, PayloadProblem>;
}

/// A payload stopped at the frame limit: how many of its entries fit, for append-entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow {
    pub entries_fit: Option<usize>,
}

// ---- Framing ----

/// Appends the frame of `msg` to `out`, or nothing and [`WireError::TooLarge`] if its length
/// would pass `max_frame`.
pub fn encode_frame<M: WireMessage>(
    id: u64,
    msg: &M,
    max_frame: usize,
    out: &mut Vec<u8>,
) -> Result<(), WireError> {
    // What the length field can say.
    let max_frame = max_frame.min(u32::MAX as usize);
    let start = out.len();
    // The length and checksum are filled in once the body is known.
    out.extend_from_slice(&[0; FRAME_HEADER]);
    put_u64(out, id);
    out.push(msg.kind());
    // `limit` is where `out` would end with a frame of exactly `max_frame`.
    let limit = (start + 4).saturating_add(max_frame);
    let put = msg.put_payload(out, limit);
    let len = out.len() - start - 4;
    if put.is_err() || len > max_frame {
        out.truncate(start);
        return Err(WireError::TooLarge {
            kind: msg.kind(),
            len,
            max: max_frame,
            entries_fit: put.err().and_then(|o| o.entries_fit),
        });
    }
    let crc = crc32c::crc32c(&out[start + FRAME_HEADER..]);
    // `len <= max_frame <= u32::MAX`.
    out[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
    out[start + 4..start + FRAME_HEADER].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

/// Reads the frame at the start of `buf`: the frame and the bytes it took, or `None` if it has
/// not all arrived. Refuses a length over `max_frame` as soon as the length is in.
pub fn decode_frame<M: WireMessage>(
    buf: &[u8],
    max_frame: usize,
) -> Result<Option<(Frame<M>, usize)>, WireError> {
    let Some(len) = frame_len(buf, max_frame)? else {
        return Ok(None);
    };
    let Some(frame) = buf.get(..4 + len) else {
        return Ok(None);
    };
    let mut r = Reader::new(&frame[4..]);
    let expected = r.i32().map_err(|_| WireError::FrameTooShort { len })? as u32;
    let body = r.rest();
    let actual = crc32c::crc32c(body);
    if actual != expected {
        return Err(WireError::Checksum { expected, actual });
    }
    let mut r = Reader::new(body);
    let id = r.i64().map_err(|_| WireError::FrameTooShort { len })? as u64;
    let kind = r.u8().map_err(|_| WireError::FrameTooShort { len })?;
    let msg = match M::read_payload(kind, &mut r) {
        Ok(Some(msg)) => msg,
        Ok(None) => return Err(WireError::UnknownKind { kind }),
        Err(problem) => return Err(WireError::Payload { kind, problem }),
    };
    r.finish().map_err(|e| WireError::Payload {
        kind,
        problem: bytes("end of message", e),
    })?;
    Ok(Some((Frame { id, msg }, 4 + len)))
}

/// The length field of the frame at the start of `buf`, checked; `None` before it is in.
fn frame_len(buf: &[u8], max_frame: usize) -> Result<Option<usize>, WireError> {
    let mut r = Reader::new(buf);
    let Ok(len) = r.i32() else {
        return Ok(None);
    };
    let len = len as u32 as usize;
    if len > max_frame {
        return Err(WireError::FrameTooLarge {
            len,
            max: max_frame,
        });
    }
    if len < 4 + BODY_HEAD {
        return Err(WireError::FrameTooShort { len });
    }
    Ok(Some(len))
}

/// The tokio-util codec of one side of a quorum-port connection: it decodes `In` (the listener
/// uses `PeerCodec<Request>`, the dialer `PeerCodec<Response>`) and encodes either kind of
/// [`Frame`]. Frames over `max_frame` bytes (counted after the length prefix) are refused both
/// ways; the decoder never reserves more than one frame of room.
#[derive(Debug)]
pub struct PeerCodec<In> {
    max_frame: usize,
    // A frame is built here, then copied into the sink's buffer: the consensus codec writes
    // into a Vec. Kept between frames so it is not grown again for each.
    scratch: Vec<u8>,
    _in: PhantomData<fn() -> In>,
}

impl<In> PeerCodec<In> {
    /// `max_frame` must hold the largest append-entries entry and snapshot chunk with room to
    /// spare; it is capped at what the u32 length field can say.
    pub fn new(max_frame: usize) -> Self {
        PeerCodec {
            max_frame: max_frame.min(u32::MAX as usize),
            scratch: Vec::new(),
            _in: PhantomData,
        }
    }
}

impl<In: WireMessage> Decoder for PeerCodec<In> {
    type Item = Frame<In>;
    type Error = WireError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame<In>>, WireError> {
        match decode_frame(src, self.max_frame)? {
            Some((frame, used)) => {
                src.advance(used);
                Ok(Some(frame))
            }
            None => {
                // Room for the rest of this frame, whose length is checked by now.
                if let Some(len) = frame_len(src, self.max_frame)? {
                    src.reserve((4 + len).saturating_sub(src.len()));
                }
                Ok(None)
            }
        }
    }
}

impl<In, Out: WireMessage> Encoder<Frame<Out>> for PeerCodec<In> {
    type Error = WireError;

    fn encode(&mut self, frame: Frame<Out>, dst: &mut BytesMut) -> Result<(), WireError> {
        self.scratch.clear();
        let r = encode_frame(frame.id, &frame.msg, self.max_frame, &mut self.scratch);
        if r.is_ok() {
            dst.extend_from_slice(&self.scratch);
        }
        // A frame near the limit is rare (catch-up, snapshot chunks): give its room back.
        if self.scratch.capacity() > SCRATCH_KEEP {
            self.scratch = Vec::new();
        }
        r
    }
}

/// Scratch capacity kept between frames.
const SCRATCH_KEEP: usize = 1 << 20;

// ---- Sizing ----

/// How many of `req`'s first entries fit in one frame of `max_frame` bytes (all of them when
/// the whole request fits). Encodes the request to count, so call it only after
/// [`WireError::TooLarge`], whose `entries_fit` already says the same.
#[cfg(test)]
pub fn append_entries_fit(req: &AppendEntriesRequest<TypeConfig>, max_frame: usize) -> usize {
    // As `encode_frame` lays it out: the frame header and body head, then the payload.
    let mut scratch = vec![0; FRAME_HEADER + BODY_HEAD];
    let limit = 4usize.saturating_add(max_frame);
    match put_append_entries(&mut scratch, req, limit) {
        Ok(()) if scratch.len() <= limit => req.entries.len(),
        Ok(()) => 0,
        Err(o) => o.entries_fit.unwrap_or(0),
    }
}

/// The error an append-entries call returns when its request is over the frame limit and only
/// `entries_fit` of its entries fit: openraft retries at once with that many. With none (one
/// entry bigger than a frame, a configuration error) it reports the peer unreachable, so
/// openraft backs off instead of retrying an empty request in a loop.
pub fn too_large(
    entries_fit: usize,
    max_frame: usize,
) -> RPCError<NodeId, BasicNode, RaftError<NodeId>> {
    match u64::try_from(entries_fit) {
        Ok(n) if n > 0 => RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint(n)),
        _ => RPCError::Unreachable(Unreachable::from(AnyError::error(format!(
            "a log entry does not fit in a quorum frame of {max_frame} bytes"
        )))),
    }
}

// ---- The hello ----

/// Why a listener refuses a [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("protocol version {theirs} is not this member's {ours}")]
    Version { theirs: u16, ours: u16 },
    #[error("cluster {theirs:?} is not this member's {ours:?}")]
    Cluster { theirs: String, ours: String },
    #[error("addressed to member {to}, but this is member {me}")]
    WrongTo { to: NodeId, me: NodeId },
    #[error("member {from} is not in this ensemble")]
    UnknownFrom { from: NodeId },
}

impl Hello {
    /// The hello of this build from `from` to `to`.
    pub fn new(cluster: impl Into<String>, from: NodeId, to: NodeId) -> Hello {
        Hello {
            version: PROTOCOL_VERSION,
            cluster: cluster.into(),
            from,
            to,
        }
    }

    /// The listener's check: this build's version, its cluster, addressed to it (`me`), from a
    /// member it knows. The answer is [`Response::HelloOk`] or [`Response::Refused`] with the
    /// refusal as its reason (see [`hello_reply`]).
    pub fn check(
        &self,
        cluster: &str,
        me: NodeId,
        is_member: impl Fn(NodeId) -> bool,
    ) -> Result<(), Refusal> {
        if self.version != PROTOCOL_VERSION {
            return Err(Refusal::Version {
                theirs: self.version,
                ours: PROTOCOL_VERSION,
            });
        }
        if self.cluster != cluster {
            return Err(Refusal::Cluster {
                theirs: self.cluster.clone(),
                ours: cluster.to_string(),
            });
        }
        if self.to != me {
            return Err(Refusal::WrongTo { to: self.to, me });
        }
        if !is_member(self.from) {
            return Err(Refusal::UnknownFrom { from: self.from });
        }
        Ok(())
    }
}

/// The response to a hello checked by [`Hello::check`].
pub fn hello_reply(check: Result<(), Refusal>) -> Response {
    match check {
        Ok(()) => Response::HelloOk,
        Err(r) => Response::Refused {
            reason: r.to_string(),
        },
    }
}

// ---- Raft errors, both ways ----

impl From<Fatal<NodeId>> for RaftFailure {
    fn from(f: Fatal<NodeId>) -> Self {
        let kind = match &f {
            Fatal::Stopped => FatalKind::Stopped,
            Fatal::Panicked => FatalKind::Panicked,
            Fatal::StorageError(_) => FatalKind::Storage,
        };
        RaftFailure::Fatal {
            kind,
            message: f.to_string(),
        }
    }
}

/// What `Raft::append_entries` and `Raft::vote` return.
impl From<RaftError<NodeId>> for RaftFailure {
    fn from(e: RaftError<NodeId>) -> Self {
        match e {
            RaftError::APIError(never) => match never {},
            RaftError::Fatal(f) => f.into(),
        }
    }
}

/// What `Raft::install_snapshot` returns.
impl From<RaftError<NodeId, InstallSnapshotError>> for RaftFailure {
    fn from(e: RaftError<NodeId, InstallSnapshotError>) -> Self {
        match e {
            RaftError::APIError(InstallSnapshotError::SnapshotMismatch(m)) => {
                RaftFailure::SnapshotMismatch(m)
            }
            RaftError::Fatal(f) => f.into(),
        }
    }
}

impl RaftFailure {
    /// The remote node's fatal error; `None` for a snapshot mismatch.
    pub fn fatal(&self) -> Option<Fatal<NodeId>> {
        match self {
            RaftFailure::Fatal { kind, message } => Some(match kind {
                FatalKind::Stopped => Fatal::Stopped,
                FatalKind::Panicked => Fatal::Panicked,
                // Only the text crosses the wire; subject and verb are the remote's, in it.
                FatalKind::Storage => Fatal::StorageError(
                    StorageIOError::new(
                        ErrorSubject::None,
                        ErrorVerb::Write,
                        AnyError::error(message),
                    )
                    .into(),
                ),
            }),
            RaftFailure::SnapshotMismatch(_) => None,
        }
    }
}

/// An RPC error for a reply that is not one of those its request allows.
fn unexpected<E: std::error::Error>(
    request: &str,
    got: &Response,
) -> RPCError<NodeId, BasicNode, E> {
    let what = format!("{request} answered with {}", kind_name(got.kind()));
    RPCError::Network(NetworkError::new(&AnyError::error(what)))
}

/// Answers that mean the peer cannot serve raft now: back off (refused, or a plain error).
fn unavailable<E: std::error::Error>(
    target: NodeId,
    reason: &str,
) -> RPCError<NodeId, BasicNode, E> {
    RPCError::Unreachable(Unreachable::from(AnyError::error(format!(
        "member {target}: {reason}"
    ))))
}

/// What `RaftNetwork::append_entries` returns for the reply `resp` from member `target`.
// The Err type is RaftNetwork's, returned as is.
#[allow(clippy::result_large_err)]
pub fn append_entries_reply(
    target: NodeId,
    resp: Response,
) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
    match resp {
        Response::AppendEntries(r) => Ok(r),
        other => Err(raft_rpc_error(target, "append-entries", other)),
    }
}

/// What `RaftNetwork::vote` returns for the reply `resp` from member `target`.
// The Err type is RaftNetwork's, returned as is.
#[allow(clippy::result_large_err)]
pub fn vote_reply(
    target: NodeId,
    resp: Response,
) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
    match resp {
        Response::Vote(r) => Ok(r),
        other => Err(raft_rpc_error(target, "vote", other)),
    }
}

fn raft_rpc_error(
    target: NodeId,
    request: &str,
    resp: Response,
) -> RPCError<NodeId, BasicNode, RaftError<NodeId>> {
    match &resp {
        Response::RaftError(f) => match f.fatal() {
            Some(fatal) => RPCError::RemoteError(RemoteError::new(target, RaftError::Fatal(fatal))),
            None => unexpected(request, &resp),
        },
        Response::Refused { reason } | Response::Error { message: reason } => {
            unavailable(target, reason)
        }
        _ => unexpected(request, &resp),
    }
}

/// What `RaftNetwork::install_snapshot` returns for the reply `resp` from member `target`.
// The Err type is RaftNetwork's, returned as is.
#[allow(clippy::result_large_err)]
pub fn install_snapshot_reply(
    target: NodeId,
    resp: Response,
) -> Result<
    InstallSnapshotResponse<NodeId>,
    RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
> {
    if let Response::InstallSnapshot(r) = resp {
        return Ok(r);
    }
    let err = match &resp {
        Response::RaftError(RaftFailure::SnapshotMismatch(m)) => {
            RaftError::APIError(InstallSnapshotError::SnapshotMismatch(m.clone()))
        }
        Response::RaftError(f) => match f.fatal() {
            Some(fatal) => RaftError::Fatal(fatal),
            None => return Err(unexpected("install-snapshot", &resp)),
        },
        Response::Refused { reason } | Response::Error { message: reason } => {
            return Err(unavailable(target, reason))
        }
        _ => return Err(unexpected("install-snapshot", &resp)),
    };
    Err(RPCError::RemoteError(RemoteError::new(target, err)))
}

// ---- Payloads ----

fn bytes(field: &'static str, source: corral_proto::DecodeError) -> PayloadProblem {
    PayloadProblem::Bytes { field, source }
}

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// A count or length: the frame limit keeps them far below 4 GiB.
fn put_len(out: &mut Vec<u8>, n: usize) {
    put_u32(out, u32::try_from(n).unwrap_or(u32::MAX));
}

/// A value encoded elsewhere, length-prefixed.
fn put_value(out: &mut Vec<u8>, v: &[u8]) {
    put_len(out, v.len());
    out.extend_from_slice(v);
}

fn put_vote(out: &mut Vec<u8>, v: &Vote<NodeId>) {
    put_value(out, &encode_vote(v));
}

fn put_opt_log_id(out: &mut Vec<u8>, id: &Option<LogId<NodeId>>) {
    put_value(out, &encode_committed(id));
}

fn put_bool(out: &mut Vec<u8>, b: bool) {
    out.push(u8::from(b));
}

fn put_opt_u64(out: &mut Vec<u8>, v: Option<u64>) {
    match v {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            put_u64(out, v);
        }
    }
}

/// Reads the fields of one payload, naming each in its errors. Only a namer of fields over
/// corral-proto's reader: the bytes are read by `Reader`, raft values by the consensus codec.
struct Fields<'r, 'a> {
    r: &'r mut Reader<'a>,
}

impl<'a> Fields<'_, 'a> {
    fn u8(&mut self, field: &'static str) -> Result<u8, PayloadProblem> {
        self.r.u8().map_err(|e| bytes(field, e))
    }
    fn u16(&mut self, field: &'static str) -> Result<u16, PayloadProblem> {
        let b = self.r.take(2).map_err(|e| bytes(field, e))?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, field: &'static str) -> Result<u32, PayloadProblem> {
        self.r.i32().map(|v| v as u32).map_err(|e| bytes(field, e))
    }
    fn u64(&mut self, field: &'static str) -> Result<u64, PayloadProblem> {
        self.r.i64().map(|v| v as u64).map_err(|e| bytes(field, e))
    }
    fn i64(&mut self, field: &'static str) -> Result<i64, PayloadProblem> {
        self.r.i64().map_err(|e| bytes(field, e))
    }
    fn string(&mut self, field: &'static str) -> Result<String, PayloadProblem> {
        self.r.string().map_err(|e| bytes(field, e))
    }
    fn bool(&mut self, field: &'static str) -> Result<bool, PayloadProblem> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(PayloadProblem::Tag { field, tag }),
        }
    }
    fn opt_u64(&mut self, field: &'static str) -> Result<Option<u64>, PayloadProblem> {
        Ok(if self.bool(field)? {
            Some(self.u64(field)?)
        } else {
            None
        })
    }
    /// A length-prefixed value, borrowed: its length is checked against the bytes present.
    fn value(&mut self, field: &'static str) -> Result<&'a [u8], PayloadProblem> {
        let at = self.r.position();
        let len = self.r.i32().map_err(|e| bytes(field, e))?;
        let n = usize::try_from(len).map_err(|_| {
            bytes(
                field,
                corral_proto::DecodeError::BadLength { offset: at, len },
            )
        })?;
        self.r.take(n).map_err(|e| bytes(field, e))
    }
    /// A count of items at least `min_size` bytes each; room is reserved only for as many as
    /// the bytes left can hold.
    fn count(
        &mut self,
        field: &'static str,
        min_size: usize,
    ) -> Result<(usize, usize), PayloadProblem> {
        let n = self.u32(field)? as usize;
        Ok((n, n.min(self.r.remaining() / min_size)))
    }
    fn raft<T>(
        &mut self,
        field: &'static str,
        decode: impl FnOnce(&[u8]) -> Result<T, DecodeError>,
    ) -> Result<T, PayloadProblem> {
        let v = self.value(field)?;
        decode(v).map_err(|source| PayloadProblem::Raft { field, source })
    }
    fn vote(&mut self, field: &'static str) -> Result<Vote<NodeId>, PayloadProblem> {
        self.raft(field, decode_vote)
    }
    fn log_id(&mut self, field: &'static str) -> Result<Option<LogId<NodeId>>, PayloadProblem> {
        self.raft(field, decode_committed)
    }
    fn client_entry(&mut self, field: &'static str) -> Result<Entry, PayloadProblem> {
        let v = self.value(field)?;
        Entry::decode(v).map_err(|source| PayloadProblem::ClientEntry { field, source })
    }
}

/// The payload of an append-entries request, stopping at the first entry that ends past
/// `limit`.
fn put_append_entries(
    out: &mut Vec<u8>,
    a: &AppendEntriesRequest<TypeConfig>,
    limit: usize,
) -> Result<(), Overflow> {
    put_vote(out, &a.vote);
    put_opt_log_id(out, &a.prev_log_id);
    put_opt_log_id(out, &a.leader_commit);
    // Entries last, so those that fit are a prefix of the frame.
    put_len(out, a.entries.len());
    for (i, e) in a.entries.iter().enumerate() {
        let start = out.len();
        put_u64(out, e.log_id.index);
        put_u32(out, 0);
        put_log_body(out, e, &client_bytes(e));
        let body_len = out.len() - start - 12;
        out[start + 8..start + 12]
            .copy_from_slice(&u32::try_from(body_len).unwrap_or(u32::MAX).to_be_bytes());
        if out.len() > limit {
            return Err(Overflow {
                entries_fit: Some(i),
            });
        }
    }
    Ok(())
}

impl Request {
    pub fn kind(&self) -> u8 {
        match self {
            Request::Hello(_) => K_HELLO,
            Request::AppendEntries(_) => K_APPEND,
            Request::Vote(_) => K_VOTE,
            Request::InstallSnapshot(_) => K_SNAPSHOT,
            Request::Forward { .. } => K_FORWARD,
            Request::SessionReport { .. } => K_SESSIONS,
            Request::ReadIndex => K_READ_INDEX,
        }
    }
}

impl WireMessage for Request {
    fn kind(&self) -> u8 {
        Request::kind(self)
    }

    fn put_payload(&self, out: &mut Vec<u8>, limit: usize) -> Result<(), Overflow> {
        match self {
            Request::Hello(h) => {
                put_u16(out, h.version);
                put_str(out, &h.cluster);
                put_u64(out, h.from);
                put_u64(out, h.to);
            }
            Request::AppendEntries(a) => put_append_entries(out, a, limit)?,
            Request::Vote(v) => {
                put_vote(out, &v.vote);
                put_opt_log_id(out, &v.last_log_id);
            }
            Request::InstallSnapshot(s) => {
                put_vote(out, &s.vote);
                put_value(out, &encode_snapshot_meta(&s.meta));
                put_u64(out, s.offset);
                // Not copied at all when it cannot fit.
                if out.len().saturating_add(s.data.len()) > limit {
                    return Err(Overflow { entries_fit: None });
                }
                put_value(out, &s.data);
                put_bool(out, s.done);
            }
            Request::Forward { term, proposals } => {
                put_u64(out, *term);
                put_len(out, proposals.len());
                for p in proposals {
                    put_u64(out, p.origin);
                    put_u64(out, p.seq);
                    put_value(out, &p.entry.encode());
                    // A batch too large stops here rather than growing past the frame.
                    if out.len() > limit {
                        return Err(Overflow { entries_fit: None });
                    }
                }
            }
            Request::SessionReport { from, sessions } => {
                put_u64(out, *from);
                put_len(out, sessions.len());
                for (id, idle) in sessions {
                    put_u64(out, *id as u64);
                    put_u32(out, *idle);
                }
            }
            Request::ReadIndex => {}
        }
        Ok(())
    }

    fn read_payload(kind: u8, r: &mut Reader<'_>) -> Result<Option<Request>, PayloadProblem> {
        let mut f = Fields { r };
        let req = match kind {
            K_HELLO => Request::Hello(Hello {
                version: f.u16("version")?,
                cluster: f.string("cluster")?,
                from: f.u64("from")?,
                to: f.u64("to")?,
            }),
            K_APPEND => {
                let vote = f.vote("vote")?;
                let prev_log_id = f.log_id("prev_log_id")?;
                let leader_commit = f.log_id("leader_commit")?;
                // Index and length, then at least the term, node and kind of the body.
                let (n, cap) = f.count("entries", 12 + 17)?;
                let mut entries = Vec::with_capacity(cap);
                for _ in 0..n {
                    let index = f.u64("entry index")?;
                    entries.push(f.raft("entry", |b| decode_log_entry(index, b))?);
                }
                Request::AppendEntries(AppendEntriesRequest {
                    vote,
                    prev_log_id,
                    entries,
                    leader_commit,
                })
            }
            K_VOTE => Request::Vote(VoteRequest {
                vote: f.vote("vote")?,
                last_log_id: f.log_id("last_log_id")?,
            }),
            K_SNAPSHOT => Request::InstallSnapshot(InstallSnapshotRequest {
                vote: f.vote("vote")?,
                meta: f.raft("meta", decode_snapshot_meta)?,
                offset: f.u64("offset")?,
                data: f.value("data")?.to_vec(),
                done: f.bool("done")?,
            }),
            K_FORWARD => {
                let term = f.u64("term")?;
                // Origin, seq and length, then at least corral-tree's session id, time,
                // identity count and entry kind.
                let (n, cap) = f.count("proposals", 20 + 24)?;
                let mut proposals = Vec::with_capacity(cap);
                for _ in 0..n {
                    proposals.push(Proposal {
                        origin: f.u64("origin")?,
                        seq: f.u64("seq")?,
                        entry: f.client_entry("entry")?,
                    });
                }
                Request::Forward { term, proposals }
            }
            K_SESSIONS => {
                let from = f.u64("from")?;
                let (n, cap) = f.count("sessions", 12)?;
                let mut sessions = Vec::with_capacity(cap);
                for _ in 0..n {
                    sessions.push((f.i64("session id")?, f.u32("idle ms")?));
                }
                Request::SessionReport { from, sessions }
            }
            K_READ_INDEX => Request::ReadIndex,
            _ => return Ok(None),
        };
        Ok(Some(req))
    }
}

/// Field by field: openraft's request has no `PartialEq`. For tests and assertions.
impl PartialEq for Request {
    fn eq(&self, other: &Request) -> bool {
        match (self, other) {
            (Request::Hello(a), Request::Hello(b)) => a == b,
            (Request::AppendEntries(a), Request::AppendEntries(b)) => {
                a.vote == b.vote
                    && a.prev_log_id == b.prev_log_id
                    && a.leader_commit == b.leader_commit
                    && a.entries == b.entries
            }
            (Request::Vote(a), Request::Vote(b)) => a == b,
            (Request::InstallSnapshot(a), Request::InstallSnapshot(b)) => a == b,
            (
                Request::Forward {
                    term: t1,
                    proposals: p1,
                },
                Request::Forward {
                    term: t2,
                    proposals: p2,
                },
            ) => t1 == t2 && p1 == p2,
            (
                Request::SessionReport {
                    from: f1,
                    sessions: s1,
                },
                Request::SessionReport {
                    from: f2,
                    sessions: s2,
                },
            ) => f1 == f2 && s1 == s2,
            (Request::ReadIndex, Request::ReadIndex) => true,
            _ => false,
        }
    }
}

// AppendEntriesResponse tags.
const AE_SUCCESS: u8 = 0;
const AE_PARTIAL: u8 = 1;
const AE_CONFLICT: u8 = 2;
const AE_HIGHER_VOTE: u8 = 3;
// RaftFailure tags, and FatalKind's.
const RF_FATAL: u8 = 0;
const RF_MISMATCH: u8 = 1;
const FATAL_STOPPED: u8 = 0;
const FATAL_PANICKED: u8 = 1;
const FATAL_STORAGE: u8 = 2;

impl Response {
    pub fn kind(&self) -> u8 {
        match self {
            Response::HelloOk => K_HELLO_OK,
            Response::Refused { .. } => K_REFUSED,
            Response::AppendEntries(_) => K_APPEND_REPLY,
            Response::Vote(_) => K_VOTE_REPLY,
            Response::InstallSnapshot(_) => K_SNAPSHOT_REPLY,
            Response::RaftError(_) => K_RAFT_ERROR,
            Response::ForwardReply { .. } => K_FORWARD_REPLY,
            Response::SessionReportReply { .. } => K_SESSIONS_REPLY,
            Response::ReadIndexReply(_) => K_READ_INDEX_REPLY,
            Response::Error { .. } => K_ERROR,
        }
    }
}

fn put_segment(out: &mut Vec<u8>, s: &SnapshotSegmentId) {
    put_str(out, &s.id);
    put_u64(out, s.offset);
}

impl WireMessage for Response {
    fn kind(&self) -> u8 {
        Response::kind(self)
    }

    fn put_payload(&self, out: &mut Vec<u8>, limit: usize) -> Result<(), Overflow> {
        match self {
            Response::HelloOk => {}
            Response::Refused { reason } => put_str(out, reason),
            Response::AppendEntries(r) => match r {
                AppendEntriesResponse::Success => out.push(AE_SUCCESS),
                AppendEntriesResponse::PartialSuccess(id) => {
                    out.push(AE_PARTIAL);
                    put_opt_log_id(out, id);
                }
                AppendEntriesResponse::Conflict => out.push(AE_CONFLICT),
                AppendEntriesResponse::HigherVote(v) => {
                    out.push(AE_HIGHER_VOTE);
                    put_vote(out, v);
                }
            },
            Response::Vote(v) => {
                put_vote(out, &v.vote);
                put_bool(out, v.vote_granted);
                put_opt_log_id(out, &v.last_log_id);
            }
            Response::InstallSnapshot(r) => put_vote(out, &r.vote),
            Response::RaftError(RaftFailure::Fatal { kind, message }) => {
                out.push(RF_FATAL);
                out.push(match kind {
                    FatalKind::Stopped => FATAL_STOPPED,
                    FatalKind::Panicked => FATAL_PANICKED,
                    FatalKind::Storage => FATAL_STORAGE,
                });
                put_str(out, message);
            }
            Response::RaftError(RaftFailure::SnapshotMismatch(m)) => {
                out.push(RF_MISMATCH);
                put_segment(out, &m.expect);
                put_segment(out, &m.got);
            }
            Response::ForwardReply {
                accepted,
                not_leader,
            } => {
                put_u32(out, *accepted);
                match not_leader {
                    None => out.push(0),
                    Some((term, leader)) => {
                        out.push(1);
                        put_u64(out, *term);
                        put_opt_u64(out, *leader);
                    }
                }
            }
            Response::SessionReportReply { moved_away } => {
                put_len(out, moved_away.len());
                for id in moved_away {
                    put_u64(out, *id as u64);
                    if out.len() > limit {
                        return Err(Overflow { entries_fit: None });
                    }
                }
            }
            Response::ReadIndexReply(Ok(index)) => {
                out.push(0);
                put_u64(out, *index);
            }
            Response::ReadIndexReply(Err(NotLeader { leader })) => {
                out.push(1);
                put_opt_u64(out, *leader);
            }
            Response::Error { message } => put_str(out, message),
        }
        Ok(())
    }

    fn read_payload(kind: u8, r: &mut Reader<'_>) -> Result<Option<Response>, PayloadProblem> {
        let mut f = Fields { r };
        let resp = match kind {
            K_HELLO_OK => Response::HelloOk,
            K_REFUSED => Response::Refused {
                reason: f.string("reason")?,
            },
            K_APPEND_REPLY => Response::AppendEntries(match f.u8("result")? {
                AE_SUCCESS => AppendEntriesResponse::Success,
                AE_PARTIAL => AppendEntriesResponse::PartialSuccess(f.log_id("matching")?),
                AE_CONFLICT => AppendEntriesResponse::Conflict,
                AE_HIGHER_VOTE => AppendEntriesResponse::HigherVote(f.vote("higher vote")?),
                tag => {
                    return Err(PayloadProblem::Tag {
                        field: "result",
                        tag,
                    })
                }
            }),
            K_VOTE_REPLY => Response::Vote(VoteResponse {
                vote: f.vote("vote")?,
                vote_granted: f.bool("vote_granted")?,
                last_log_id: f.log_id("last_log_id")?,
            }),
            K_SNAPSHOT_REPLY => Response::InstallSnapshot(InstallSnapshotResponse {
                vote: f.vote("vote")?,
            }),
            K_RAFT_ERROR => Response::RaftError(match f.u8("error")? {
                RF_FATAL => {
                    let kind = match f.u8("fatal kind")? {
                        FATAL_STOPPED => FatalKind::Stopped,
                        FATAL_PANICKED => FatalKind::Panicked,
                        FATAL_STORAGE => FatalKind::Storage,
                        tag => {
                            return Err(PayloadProblem::Tag {
                                field: "fatal kind",
                                tag,
                            })
                        }
                    };
                    RaftFailure::Fatal {
                        kind,
                        message: f.string("message")?,
                    }
                }
                RF_MISMATCH => RaftFailure::SnapshotMismatch(SnapshotMismatch {
                    expect: SnapshotSegmentId {
                        id: f.string("expected snapshot id")?,
                        offset: f.u64("expected offset")?,
                    },
                    got: SnapshotSegmentId {
                        id: f.string("snapshot id")?,
                        offset: f.u64("offset")?,
                    },
                }),
                tag => {
                    return Err(PayloadProblem::Tag {
                        field: "error",
                        tag,
                    })
                }
            }),
            K_FORWARD_REPLY => {
                let accepted = f.u32("accepted")?;
                let not_leader = if f.bool("not leader")? {
                    Some((f.u64("term")?, f.opt_u64("leader")?))
                } else {
                    None
                };
                Response::ForwardReply {
                    accepted,
                    not_leader,
                }
            }
            K_SESSIONS_REPLY => {
                let (n, cap) = f.count("moved away", 8)?;
                let mut moved_away = Vec::with_capacity(cap);
                for _ in 0..n {
                    moved_away.push(f.i64("session id")?);
                }
                Response::SessionReportReply { moved_away }
            }
            K_READ_INDEX_REPLY => Response::ReadIndexReply(if f.bool("not leader")? {
                Err(NotLeader {
                    leader: f.opt_u64("leader")?,
                })
            } else {
                Ok(f.u64("index")?)
            }),
            K_ERROR => Response::Error {
                message: f.string("message")?,
            },
            _ => return Ok(None),
        };
        Ok(Some(resp))
    }
}

#[cfg(test)]
mod tests;
