//! The on-disk encoding of raft values: WAL record bodies, the vote, the committed index and
//! snapshot metadata. Must not do I/O.

use super::*;
use corral_proto::Reader;

// Integers are big-endian. A log id is `term u64 | node u64 | index u64`; optional values carry
// a leading 0/1 byte. A WAL record body is `term | node | kind u8 | data`, the index being the
// WAL's own: kind 0 = blank, 1 = client entry (`Entry::encode`), 2 = membership, 3 = tagged client
// entry (origin, seq, then `Entry::encode`), 4 = a batch of tagged client entries (count u32,
// then for each: origin, seq, length u32, `Entry::encode`). A batch of one keeps kind 1 or 3,
// as every record written before batches has.

pub(super) const KIND_BLANK: u8 = 0;
pub(super) const KIND_NORMAL: u8 = 1;
pub(super) const KIND_MEMBERSHIP: u8 = 2;
/// A client entry with its origin tag (see [`Proposal`]); `KIND_NORMAL` is one without.
pub(super) const KIND_PROPOSAL: u8 = 3;
/// Several tagged client entries in one raft entry (see [`Batch`]).
pub(super) const KIND_BATCH: u8 = 4;
/// Version byte in front of the vote, committed and snapshot-meta encodings.
pub(super) const META_VERSION: u8 = 1;

/// What was being decoded when bytes did not read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoding {
    /// The body of the WAL record at this log index.
    LogEntry {
        index: u64,
    },
    Vote,
    Committed,
    SnapshotMeta,
    /// The high-water marks in front of a snapshot payload.
    SnapshotPrefix,
}

impl std::fmt::Display for Decoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Decoding::LogEntry { index } => write!(f, "the body of log entry {index}"),
            Decoding::Vote => f.write_str("the raft vote"),
            Decoding::Committed => f.write_str("the committed index"),
            Decoding::SnapshotMeta => f.write_str("the snapshot metadata"),
            Decoding::SnapshotPrefix => f.write_str("the sequence marks of the snapshot"),
        }
    }
}

/// Bytes of the consensus state that do not decode: what they were, and the offset of the
/// first bad field, counted from the first byte of the value (a WAL record's body, or the
/// payload of a file framed by [`wal::frame`]). The caller names the file.
#[derive(Debug, thiserror::Error)]
#[error("{what}, byte offset {offset}: {problem}")]
pub struct DecodeError {
    pub what: Decoding,
    pub offset: usize,
    #[source]
    pub problem: DecodeProblem,
}

/// What was wrong at a [`DecodeError`]'s offset.
#[derive(Debug, thiserror::Error)]
pub enum DecodeProblem {
    /// Cut short, or a length that does not fit.
    #[error(transparent)]
    Jute(#[from] corral_proto::DecodeError),
    #[error("unknown format version {0}")]
    Version(u8),
    #[error("bad option tag {0}")]
    OptionTag(u8),
    #[error("unknown entry kind {0}")]
    Kind(u8),
    #[error("bad client entry: {0}")]
    ClientEntry(#[source] corral_tree::CodecError),
}

/// corral-proto's jute reader, naming what it reads and where each field starts in its
/// errors. Integers are jute's big-endian ones read as unsigned (the same bytes); strings are
/// jute's (a length of -1, never written here, reads as empty).
pub(super) struct Rd<'a> {
    r: Reader<'a>,
    what: Decoding,
}

impl<'a> Rd<'a> {
    pub(super) fn new(b: &'a [u8], what: Decoding) -> Self {
        Rd {
            r: Reader::new(b),
            what,
        }
    }
    pub(super) fn fail(&self, offset: usize, problem: impl Into<DecodeProblem>) -> DecodeError {
        DecodeError {
            what: self.what,
            offset,
            problem: problem.into(),
        }
    }
    pub(super) fn field<T>(
        &mut self,
        read: impl FnOnce(&mut Reader<'a>) -> Result<T, corral_proto::DecodeError>,
    ) -> Result<T, DecodeError> {
        let at = self.r.position();
        read(&mut self.r).map_err(|e| self.fail(at, e))
    }
    pub(super) fn u8(&mut self) -> Result<u8, DecodeError> {
        self.field(Reader::u8)
    }
    pub(super) fn u32(&mut self) -> Result<u32, DecodeError> {
        self.field(|r| r.i32().map(|v| v as u32))
    }
    pub(super) fn u64(&mut self) -> Result<u64, DecodeError> {
        self.field(|r| r.i64().map(|v| v as u64))
    }
    pub(super) fn string(&mut self) -> Result<String, DecodeError> {
        self.field(Reader::string)
    }
    /// A one-byte tag read by `check`, which refuses a bad one with its problem.
    pub(super) fn tag<T>(
        &mut self,
        check: impl FnOnce(u8) -> Result<T, DecodeProblem>,
    ) -> Result<T, DecodeError> {
        let at = self.r.position();
        let t = self.u8()?;
        check(t).map_err(|p| self.fail(at, p))
    }
    pub(super) fn version(&mut self) -> Result<(), DecodeError> {
        self.tag(|v| match v {
            META_VERSION => Ok(()),
            v => Err(DecodeProblem::Version(v)),
        })
    }
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        self.field(|r| r.take(n))
    }
    pub(super) fn position(&self) -> usize {
        self.r.position()
    }
    pub(super) fn end(&self) -> Result<(), DecodeError> {
        self.r.finish().map_err(|e| self.fail(self.r.position(), e))
    }
}

pub(super) fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub(super) fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub(super) fn put_str(out: &mut Vec<u8>, s: &str) {
    // Node addresses and snapshot ids: far below 4 GiB.
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

pub(super) fn put_log_id(out: &mut Vec<u8>, id: &Option<LogId<NodeId>>) {
    match id {
        None => out.push(0),
        Some(l) => {
            out.push(1);
            put_u64(out, l.leader_id.term);
            put_u64(out, l.leader_id.node_id);
            put_u64(out, l.index);
        }
    }
}

fn get_log_id(r: &mut Rd<'_>) -> Result<Option<LogId<NodeId>>, DecodeError> {
    let present = r.tag(|t| match t {
        0 => Ok(false),
        1 => Ok(true),
        t => Err(DecodeProblem::OptionTag(t)),
    })?;
    if !present {
        return Ok(None);
    }
    let term = r.u64()?;
    let node = r.u64()?;
    let index = r.u64()?;
    Ok(Some(LogId::new(CommittedLeaderId::new(term, node), index)))
}

pub(super) fn put_membership(out: &mut Vec<u8>, m: &Membership<NodeId, BasicNode>) {
    let configs = m.get_joint_config();
    out.extend_from_slice(&(configs.len() as u32).to_be_bytes());
    for c in configs {
        out.extend_from_slice(&(c.len() as u32).to_be_bytes());
        for id in c {
            put_u64(out, *id);
        }
    }
    let nodes: Vec<_> = m.nodes().collect();
    out.extend_from_slice(&(nodes.len() as u32).to_be_bytes());
    for (id, node) in nodes {
        put_u64(out, *id);
        put_str(out, &node.addr);
    }
}

fn get_membership(r: &mut Rd<'_>) -> Result<Membership<NodeId, BasicNode>, DecodeError> {
    // Counts come from disk: bound them by the bytes left before allocating.
    let n = r.u32()? as usize;
    let mut configs = Vec::with_capacity(n.min(r.r.remaining()));
    for _ in 0..n {
        let k = r.u32()? as usize;
        let mut set = BTreeSet::new();
        for _ in 0..k {
            set.insert(r.u64()?);
        }
        configs.push(set);
    }
    let n = r.u32()? as usize;
    let mut nodes = BTreeMap::new();
    for _ in 0..n {
        let id = r.u64()?;
        let addr = r.string()?;
        nodes.insert(id, BasicNode { addr });
    }
    Ok(Membership::new(configs, nodes))
}

/// The WAL record for `entry` (its index is the WAL's), the body encoded into the record's
/// own buffer.
pub(super) fn log_record(entry: &LogEntry) -> io::Result<wal::Record> {
    // corral-tree encodes a client entry into a buffer of its own; its size, known first, lets
    // the record be allocated once.
    let client = client_bytes(entry);
    let hint = 8 + 8 + 1 + 16 + client.len();
    wal::Record::encode(entry.log_id.index, hint, |out| {
        put_log_body(out, entry, &client)
    })
}

/// The client part of a log entry's body, everything after its kind byte: corral-tree's
/// encoding of each entry with its tag (see the layout above), or nothing.
pub(super) fn client_bytes(entry: &LogEntry) -> Vec<u8> {
    let EntryPayload::Normal(batch) = &entry.payload else {
        return Vec::new();
    };
    match batch.0.as_slice() {
        [p] if p.origin == 0 => p.entry.encode(),
        [p] => {
            let client = p.entry.encode();
            let mut out = Vec::with_capacity(16 + client.len());
            put_u64(&mut out, p.origin);
            put_u64(&mut out, p.seq);
            out.extend_from_slice(&client);
            out
        }
        many => {
            let mut out = Vec::with_capacity(
                4 + many
                    .iter()
                    .map(|p| 20 + p.entry.size_estimate())
                    .sum::<usize>(),
            );
            put_u32(&mut out, many.len() as u32);
            for p in many {
                put_u64(&mut out, p.origin);
                put_u64(&mut out, p.seq);
                let client = p.entry.encode();
                put_u32(&mut out, client.len() as u32);
                out.extend_from_slice(&client);
            }
            out
        }
    }
}

/// About the encoded length of a log entry, found without encoding it.
pub(super) fn entry_size_estimate(entry: &LogEntry) -> usize {
    match &entry.payload {
        EntryPayload::Normal(b) => {
            32 + b
                .0
                .iter()
                .map(|p| 20 + p.entry.size_estimate())
                .sum::<usize>()
        }
        // Ids and addresses of a few members.
        EntryPayload::Membership(_) => 512,
        EntryPayload::Blank => 32,
    }
}

/// The kind byte of a log entry's body.
fn kind_of(entry: &LogEntry) -> u8 {
    match &entry.payload {
        EntryPayload::Blank => KIND_BLANK,
        EntryPayload::Normal(b) => match b.0.as_slice() {
            [p] if p.origin == 0 => KIND_NORMAL,
            [_] => KIND_PROPOSAL,
            _ => KIND_BATCH,
        },
        EntryPayload::Membership(_) => KIND_MEMBERSHIP,
    }
}

/// A WAL record body; `client` is [`client_bytes`] of the entry.
pub(super) fn put_log_body(out: &mut Vec<u8>, entry: &LogEntry, client: &[u8]) {
    put_u64(out, entry.log_id.leader_id.term);
    put_u64(out, entry.log_id.leader_id.node_id);
    out.push(kind_of(entry));
    match &entry.payload {
        EntryPayload::Blank => {}
        EntryPayload::Normal(_) => out.extend_from_slice(client),
        EntryPayload::Membership(m) => put_membership(out, m),
    }
}

pub(super) fn decode_log_entry(index: u64, body: &[u8]) -> Result<LogEntry, DecodeError> {
    let mut r = Rd::new(body, Decoding::LogEntry { index });
    let term = r.u64()?;
    let node = r.u64()?;
    let kind = r.tag(|k| match k {
        KIND_BLANK | KIND_NORMAL | KIND_MEMBERSHIP | KIND_PROPOSAL | KIND_BATCH => Ok(k),
        k => Err(DecodeProblem::Kind(k)),
    })?;
    let payload = match kind {
        KIND_BLANK => EntryPayload::Blank,
        KIND_NORMAL | KIND_PROPOSAL => {
            let (origin, seq) = if kind == KIND_PROPOSAL {
                (r.u64()?, r.u64()?)
            } else {
                (0, 0)
            };
            // The client entry runs to the end of the body, in corral-tree's encoding.
            let at = r.r.position();
            let rest = r.r.rest();
            let entry = client_entry(&r, at, rest)?;
            EntryPayload::Normal(Batch(vec![Proposal { origin, seq, entry }]))
        }
        KIND_BATCH => {
            let n = r.u32()? as usize;
            // Each takes at least its tag and length: a count the bytes cannot hold reserves
            // nothing.
            let mut batch = Vec::with_capacity(n.min(r.r.remaining() / 20).min(1024));
            for _ in 0..n {
                let origin = r.u64()?;
                let seq = r.u64()?;
                let len = r.u32()? as usize;
                let at = r.r.position();
                let bytes = r.take(len)?;
                let entry = client_entry(&r, at, bytes)?;
                batch.push(Proposal { origin, seq, entry });
            }
            EntryPayload::Normal(Batch(batch))
        }
        _ => EntryPayload::Membership(get_membership(&mut r)?),
    };
    r.end()?;
    Ok(LogEntry {
        log_id: LogId::new(CommittedLeaderId::new(term, node), index),
        payload,
    })
}

/// corral-tree's decoding of the client entry in `bytes`, which start at `at`.
fn client_entry(r: &Rd<'_>, at: usize, bytes: &[u8]) -> Result<Entry, DecodeError> {
    Entry::decode(bytes).map_err(|e| r.fail(at, DecodeProblem::ClientEntry(e)))
}

pub(super) fn encode_vote(v: &Vote<NodeId>) -> Vec<u8> {
    let mut out = vec![META_VERSION];
    put_u64(&mut out, v.leader_id.term);
    put_u64(&mut out, v.leader_id.node_id);
    out.push(u8::from(v.committed));
    out
}

pub(super) fn decode_vote(b: &[u8]) -> Result<Vote<NodeId>, DecodeError> {
    let mut r = Rd::new(b, Decoding::Vote);
    r.version()?;
    let term = r.u64()?;
    let node = r.u64()?;
    let committed = r.u8()? != 0;
    r.end()?;
    let mut vote = Vote::new(term, node);
    if committed {
        vote.commit();
    }
    Ok(vote)
}

pub(super) fn encode_committed(c: &Option<LogId<NodeId>>) -> Vec<u8> {
    let mut out = vec![META_VERSION];
    put_log_id(&mut out, c);
    out
}

pub(super) fn decode_committed(b: &[u8]) -> Result<Option<LogId<NodeId>>, DecodeError> {
    let mut r = Rd::new(b, Decoding::Committed);
    r.version()?;
    let c = get_log_id(&mut r)?;
    r.end()?;
    Ok(c)
}

pub(super) fn encode_snapshot_meta(m: &StoredSnapshotMeta) -> Vec<u8> {
    let mut out = vec![META_VERSION];
    put_log_id(&mut out, &m.last_log_id);
    put_log_id(&mut out, m.last_membership.log_id());
    put_membership(&mut out, m.last_membership.membership());
    put_str(&mut out, &m.snapshot_id);
    out
}

pub(super) fn decode_snapshot_meta(b: &[u8]) -> Result<StoredSnapshotMeta, DecodeError> {
    let mut r = Rd::new(b, Decoding::SnapshotMeta);
    r.version()?;
    let last_log_id = get_log_id(&mut r)?;
    let mlog = get_log_id(&mut r)?;
    let membership = get_membership(&mut r)?;
    let snapshot_id = r.string()?;
    r.end()?;
    Ok(SnapshotMeta {
        last_log_id,
        last_membership: StoredMembership::new(mlog, membership),
        snapshot_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_tree::obituary::{EndCause, Evidence};
    use corral_tree::EntryOp;

    // Bytes written by the codec as it was before it moved onto corral-proto's reader: data
    // directories written then must still read, and the same values must still give them.
    const VOTE: &str = "010000000000000003000000000000000201";
    const COMMITTED: &str = "010100000000000000020000000000000001000000000000004d";
    const COMMITTED_NONE: &str = "0100";
    const SNAPSHOT_META: &str = "01010000000000000002000000000000000100000000000003e80100000000\
        0000000100000000000000010000000000000005000000020000000200000000000000010000000000000002\
        00000002000000000000000200000000000000030000000300000000000000010000000361\
        3a31000000000000000200000003623a320000000000000003000000000000000a322d312d313030302d34";
    const BLANK: &str = "0000000000000002000000000000000100";
    const NORMAL: &str = "0000000000000002000000000000000101000000000000000500000000000000\
        000000000000000002000000000000000500000000";
    const MEMBERSHIP: &str = "00000000000000020000000000000001020000000200000002000000000000\
        00010000000000000002000000020000000000000002000000000000000300000003000000000000000100\
        000003613a31000000000000000200000003623a32000000000000000300000000";

    fn bytes(hex: &str) -> Vec<u8> {
        let hex: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        hex.chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
            .collect()
    }

    fn log_id(term: u64, node: u64, index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(term, node), index)
    }

    fn membership() -> Membership<NodeId, BasicNode> {
        Membership::new(
            vec![BTreeSet::from([1, 2]), BTreeSet::from([2, 3])],
            BTreeMap::from([
                (1, BasicNode::new("a:1")),
                (2, BasicNode::new("b:2")),
                (3, BasicNode::default()),
            ]),
        )
    }

    fn body(e: &LogEntry) -> Vec<u8> {
        let mut out = Vec::new();
        put_log_body(&mut out, e, &client_bytes(e));
        out
    }

    #[test]
    fn bytes_written_before_still_decode_and_encode_the_same() {
        let mut vote = Vote::new(3, 2);
        vote.commit();
        assert_eq!(decode_vote(&bytes(VOTE)).unwrap(), vote);
        assert_eq!(encode_vote(&vote), bytes(VOTE));

        let committed = Some(log_id(2, 1, 77));
        assert_eq!(decode_committed(&bytes(COMMITTED)).unwrap(), committed);
        assert_eq!(encode_committed(&committed), bytes(COMMITTED));
        assert_eq!(decode_committed(&bytes(COMMITTED_NONE)).unwrap(), None);
        assert_eq!(encode_committed(&None), bytes(COMMITTED_NONE));

        let meta = SnapshotMeta {
            last_log_id: Some(log_id(2, 1, 1000)),
            last_membership: StoredMembership::new(Some(log_id(1, 1, 5)), membership()),
            snapshot_id: "2-1-1000-4".into(),
        };
        assert_eq!(decode_snapshot_meta(&bytes(SNAPSHOT_META)).unwrap(), meta);
        assert_eq!(encode_snapshot_meta(&meta), bytes(SNAPSHOT_META));

        let client = Entry {
            session_id: 5,
            time_ms: 0,
            identities: Vec::new(),
            // Written as kind 2, a close with a reason only: it reads as a close by the
            // client (the entry's session is the one closed), and is written as kind 5 now.
            op: EntryOp::CloseSession {
                session_id: 5,
                evidence: Evidence::bare(EndCause::ClosedByClient, ""),
            },
        };
        for (hex, index, payload) in [
            (BLANK, 10, EntryPayload::Blank),
            (
                NORMAL,
                11,
                EntryPayload::Normal(Batch(vec![Proposal {
                    origin: 0,
                    seq: 0,
                    entry: client,
                }])),
            ),
            (MEMBERSHIP, 12, EntryPayload::Membership(membership())),
        ] {
            let e = LogEntry {
                log_id: log_id(2, 1, index),
                payload,
            };
            // LogEntry's Debug omits client payloads; compare with ==.
            assert!(decode_log_entry(index, &bytes(hex)).unwrap() == e, "{hex}");
            if hex != NORMAL {
                assert_eq!(body(&e), bytes(hex));
            }
        }
    }

    /// Decodes `b` and hands back where and why it failed.
    fn failure<T>(r: Result<T, DecodeError>) -> (Decoding, usize, DecodeProblem) {
        match r {
            Ok(_) => panic!("decoded"),
            Err(e) => (e.what, e.offset, e.problem),
        }
    }

    #[test]
    fn errors_name_what_was_decoded_and_the_offset_of_the_bad_field() {
        let vote = bytes(VOTE);
        // Cut inside the node id, which starts at 9.
        let (what, at, problem) = failure(decode_vote(&vote[..12]));
        assert_eq!((what, at), (Decoding::Vote, 9));
        assert!(matches!(
            problem,
            DecodeProblem::Jute(corral_proto::DecodeError::Truncated {
                offset: 9,
                needed: 5
            })
        ));
        let mut v2 = vote.clone();
        v2[0] = 2;
        let e = decode_vote(&v2).unwrap_err();
        assert!(matches!(e.problem, DecodeProblem::Version(2)));
        assert_eq!(
            e.to_string(),
            "the raft vote, byte offset 0: unknown format version 2"
        );
        let mut long = vote.clone();
        long.extend_from_slice(&[0, 0]);
        let (what, at, problem) = failure(decode_vote(&long));
        assert_eq!((what, at), (Decoding::Vote, vote.len()));
        assert!(matches!(
            problem,
            DecodeProblem::Jute(corral_proto::DecodeError::TrailingBytes(2))
        ));

        let (what, at, problem) = failure(decode_committed(&[1, 7]));
        assert_eq!((what, at), (Decoding::Committed, 1));
        assert!(matches!(problem, DecodeProblem::OptionTag(7)));

        // The membership's second log id tag, after the first log id (1 + 1 + 24 bytes).
        let mut meta = bytes(SNAPSHOT_META);
        meta[26] = 5;
        let (what, at, problem) = failure(decode_snapshot_meta(&meta));
        assert_eq!((what, at), (Decoding::SnapshotMeta, 26));
        assert!(matches!(problem, DecodeProblem::OptionTag(5)));

        let mut blank = bytes(BLANK);
        blank[16] = 9;
        let e = decode_log_entry(10, &blank).unwrap_err();
        assert_eq!((e.what, e.offset), (Decoding::LogEntry { index: 10 }, 16));
        assert!(matches!(e.problem, DecodeProblem::Kind(9)));
        assert_eq!(
            e.to_string(),
            "the body of log entry 10, byte offset 16: unknown entry kind 9"
        );
        // A client entry that corral-tree refuses: at the start of the client entry.
        let mut normal = bytes(NORMAL);
        normal.truncate(30);
        let e = decode_log_entry(11, &normal).unwrap_err();
        assert_eq!((e.what, e.offset), (Decoding::LogEntry { index: 11 }, 17));
        assert!(matches!(e.problem, DecodeProblem::ClientEntry(_)));
        assert!(std::error::Error::source(&e).is_some());
    }
}
