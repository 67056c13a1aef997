//! Obituaries: why each session ended, as replicated state.
//!
//! The member that ends a session (the leader expiring it, or the member whose client closed
//! it) puts what it knows in the closing entry ([`Evidence`]); `apply` adds what the tree
//! knows (when the session began, its timeout, the ephemerals that went with it) and keeps
//! the result in a bounded ring that snapshots carry. So every member holds the same
//! obituaries, with the leader's timestamps, and a restart replays them unchanged.
//! Everything here is bounded: a client cannot make an obituary grow without limit.

use corral_proto::{DecodeError, Jute, Reader, Writer};

/// At most this many connection events travel with a session's evidence (the latest).
pub const HISTORY_KEPT: usize = 16;
/// At most this many ephemeral paths are listed in an obituary; the rest are counted.
pub const EPHEMERALS_LISTED: usize = 64;
/// Free text (causes, the last request, addresses) is cut to this many bytes.
pub const TEXT_MAX: usize = 256;
/// The ring's size when the configuration does not say.
pub const OBITUARIES_KEPT_DEFAULT: usize = 1000;

/// Why a session ended, as an operator would put it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndCause {
    /// Its client sent closeSession.
    ClosedByClient,
    /// The connection stayed open and quiet past the timeout: the client process stalled
    /// (a GC pause, a frozen VM) or the network dropped packets without closing.
    SilentWhileConnected,
    /// The connection ended and the client did not resume the session within its timeout.
    ConnectionLost,
    /// The member holding the session's connection stopped being heard from, and the client
    /// did not move to another member in time.
    MemberLost,
    /// The keeper itself stalled while the session went silent; suspected, not proven.
    KeeperStall,
    /// Ended by an entry written before causes were recorded.
    Unknown,
}

impl EndCause {
    const ALL: [EndCause; 6] = [
        EndCause::ClosedByClient,
        EndCause::SilentWhileConnected,
        EndCause::ConnectionLost,
        EndCause::MemberLost,
        EndCause::KeeperStall,
        EndCause::Unknown,
    ];

    fn code(self) -> u8 {
        match self {
            EndCause::ClosedByClient => 1,
            EndCause::SilentWhileConnected => 2,
            EndCause::ConnectionLost => 3,
            EndCause::MemberLost => 4,
            EndCause::KeeperStall => 5,
            EndCause::Unknown => 0,
        }
    }

    fn from_code(c: u8) -> EndCause {
        EndCause::ALL
            .into_iter()
            .find(|e| e.code() == c)
            .unwrap_or(EndCause::Unknown)
    }

    /// A stable name for machines (4lw, JSON, metric labels).
    pub fn name(self) -> &'static str {
        match self {
            EndCause::ClosedByClient => "closed_by_client",
            EndCause::SilentWhileConnected => "silent_while_connected",
            EndCause::ConnectionLost => "connection_lost",
            EndCause::MemberLost => "member_lost",
            EndCause::KeeperStall => "keeper_stall",
            EndCause::Unknown => "unknown",
        }
    }

    /// Every cause, for listing counters by cause.
    pub fn all() -> [EndCause; 6] {
        EndCause::ALL
    }
}

/// What happened to a session's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnEventKind {
    /// A new session on a new connection.
    Connected,
    /// An existing session taken up by a new connection.
    Resumed,
    /// The connection ended; the cause says how.
    Disconnected,
    /// The session moved to a connection on another member, so this one was closed.
    Moved,
}

impl ConnEventKind {
    /// Its byte in encodings.
    pub fn code(self) -> u8 {
        match self {
            ConnEventKind::Connected => 1,
            ConnEventKind::Resumed => 2,
            ConnEventKind::Disconnected => 3,
            ConnEventKind::Moved => 4,
        }
    }

    /// The kind whose [`ConnEventKind::code`] is `c`.
    pub fn from_code(c: u8) -> Option<ConnEventKind> {
        Some(match c {
            1 => ConnEventKind::Connected,
            2 => ConnEventKind::Resumed,
            3 => ConnEventKind::Disconnected,
            4 => ConnEventKind::Moved,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            ConnEventKind::Connected => "connected",
            ConnEventKind::Resumed => "resumed",
            ConnEventKind::Disconnected => "disconnected",
            ConnEventKind::Moved => "moved",
        }
    }
}

/// One event in a session's connection history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnEvent {
    /// Wall-clock ms since the epoch, on the clock of the member that ended the session.
    pub at_ms: i64,
    /// The member the connection was to.
    pub member: u64,
    pub kind: ConnEventKind,
    /// The client's address.
    pub remote: String,
    /// For a disconnection: how it ended (EOF, reset, closed by the server and why, ...).
    pub cause: String,
}

impl Jute for ConnEvent {
    const MIN_SIZE: usize = 8 + 8 + 1 + 4 + 4;
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ConnEvent {
            at_ms: r.i64()?,
            member: r.i64()? as u64,
            kind: {
                let c = r.u8()?;
                ConnEventKind::from_code(c).ok_or(DecodeError::BadValue {
                    what: "connection event kind",
                    value: i64::from(c),
                })?
            },
            remote: r.string()?,
            cause: r.string()?,
        })
    }
    fn write(&self, w: &mut Writer) {
        w.i64(self.at_ms);
        w.i64(self.member as i64);
        w.u8(self.kind.code());
        w.string(&self.remote);
        w.string(&self.cause);
    }
}

/// What the member ending a session knew of it, carried in the closing entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    pub cause: EndCause,
    /// One sentence for people, e.g. "no packet from the client for 4012 ms (timeout 4000 ms)".
    pub detail: String,
    /// The client's last address ("" if unknown).
    pub remote: String,
    /// The member that last heard the client (0 if unknown).
    pub member: u64,
    /// The timeout the client asked for (0 if unknown); the negotiated one is the tree's.
    pub requested_timeout_ms: i32,
    /// How long the client had been silent when the session ended (-1 if unknown).
    pub silent_ms: i64,
    /// The last request other than a ping ("" if unknown).
    pub last_op: String,
    /// Keeper stall time forgiven during the session's last timeout (ms).
    pub stall_forgiven_ms: i64,
    /// The latest connection events, oldest first, at most [`HISTORY_KEPT`].
    pub history: Vec<ConnEvent>,
}

impl Evidence {
    /// Evidence with nothing known but the cause and the sentence.
    pub fn bare(cause: EndCause, detail: impl Into<String>) -> Evidence {
        Evidence {
            cause,
            detail: detail.into(),
            remote: String::new(),
            member: 0,
            requested_timeout_ms: 0,
            silent_ms: -1,
            last_op: String::new(),
            stall_forgiven_ms: 0,
            history: Vec::new(),
        }
    }

    /// Cuts every field to its bound, so what goes into the log is bounded whatever the
    /// proposer collected.
    pub fn bounded(mut self) -> Evidence {
        cut(&mut self.detail);
        cut(&mut self.remote);
        cut(&mut self.last_op);
        if self.history.len() > HISTORY_KEPT {
            self.history.drain(..self.history.len() - HISTORY_KEPT);
        }
        for e in &mut self.history {
            cut(&mut e.remote);
            cut(&mut e.cause);
        }
        self
    }
}

/// Cuts `s` to at most [`TEXT_MAX`] bytes, at a character boundary.
fn cut(s: &mut String) {
    if s.len() > TEXT_MAX {
        let mut end = TEXT_MAX;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

impl Jute for Evidence {
    const MIN_SIZE: usize = 1 + 4 + 4 + 8 + 4 + 8 + 4 + 8 + 4;
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Evidence {
            cause: EndCause::from_code(r.u8()?),
            detail: r.string()?,
            remote: r.string()?,
            member: r.i64()? as u64,
            requested_timeout_ms: r.i32()?,
            silent_ms: r.i64()?,
            last_op: r.string()?,
            stall_forgiven_ms: r.i64()?,
            history: r.vec()?,
        })
    }
    fn write(&self, w: &mut Writer) {
        w.u8(self.cause.code());
        w.string(&self.detail);
        w.string(&self.remote);
        w.i64(self.member as i64);
        w.i32(self.requested_timeout_ms);
        w.i64(self.silent_ms);
        w.string(&self.last_op);
        w.i64(self.stall_forgiven_ms);
        w.vec(&self.history);
    }
}

/// A session's end, as every member records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Obituary {
    pub session_id: i64,
    /// The zxid of the entry that ended it.
    pub zxid: i64,
    /// The leader's wall-clock time of that entry (ms since the epoch).
    pub ended_ms: i64,
    /// When the session was created (leader time; 0 if it began before this was recorded).
    pub created_ms: i64,
    /// The negotiated timeout.
    pub timeout_ms: i32,
    pub evidence: Evidence,
    /// The ephemerals deleted with it, at most [`EPHEMERALS_LISTED`] in path order.
    pub ephemerals: Vec<String>,
    /// How many ephemerals were deleted in all.
    pub ephemerals_deleted: u32,
}

impl Jute for Obituary {
    const MIN_SIZE: usize = 8 * 4 + 4 + Evidence::MIN_SIZE + 4 + 4;
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Obituary {
            session_id: r.i64()?,
            zxid: r.i64()?,
            ended_ms: r.i64()?,
            created_ms: r.i64()?,
            timeout_ms: r.i32()?,
            evidence: Evidence::read(r)?,
            ephemerals: r.vec()?,
            ephemerals_deleted: r.i32()? as u32,
        })
    }
    fn write(&self, w: &mut Writer) {
        w.i64(self.session_id);
        w.i64(self.zxid);
        w.i64(self.ended_ms);
        w.i64(self.created_ms);
        w.i32(self.timeout_ms);
        self.evidence.write(w);
        w.vec(&self.ephemerals);
        w.i32(self.ephemerals_deleted as i32);
    }
}

/// Kafka's broker registrations among `paths` (`/brokers/ids/N`, under any chroot), so an
/// operator sees which broker a session was.
pub fn kafka_broker_ids(paths: &[String]) -> Vec<i64> {
    paths
        .iter()
        .filter_map(|p| {
            let (parent, last) = p.rsplit_once('/')?;
            if parent.ends_with("/brokers/ids") || parent == "/brokers/ids" {
                last.parse().ok()
            } else {
                None
            }
        })
        .collect()
}
