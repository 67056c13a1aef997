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
use corral_tree::obituary::ConnEventKind;
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
/// A session report with connection events (kind 0x06 is still sent when there are none,
/// so a member that does not know this kind only misses the events).
const K_SESSIONS_EVENTS: u8 = 0x08;
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
    /// The sessions a member heard from, and for how long each has been idle there (ms);
    /// what happened to their connections there since the last report.
    SessionReport {
        from: NodeId,
        sessions: Vec<(i64, u32)>,
        events: Vec<ReportedEvent>,
    },
    /// The leader's commit index, for `sync`.
    ReadIndex,
}

/// Something that happened to a session's connection on the reporting member, `age_ms`
/// before the report (ages, not times: members' clocks are not compared).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportedEvent {
    pub session_id: i64,
    pub age_ms: u32,
    pub kind: ConnEventKind,
    pub remote: String,
    pub cause: String,
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
        K_SESSIONS_EVENTS => "session-report with events",
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

mod payload;
use payload::*;

#[cfg(test)]
mod tests;
