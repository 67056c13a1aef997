//! The on-disk encoding of raft values: WAL record bodies, the vote, the committed index and
//! snapshot metadata. Must not do I/O.

use super::*;

// Integers are big-endian. A log id is `term u64 | node u64 | index u64`; optional values carry
// a leading 0/1 byte. A WAL record body is `term | node | kind u8 | data`, the index being the
// WAL's own: kind 0 = blank, 1 = client entry (`Entry::encode`), 2 = membership.

pub(super) const KIND_BLANK: u8 = 0;
pub(super) const KIND_NORMAL: u8 = 1;
pub(super) const KIND_MEMBERSHIP: u8 = 2;
/// Version byte in front of the vote, committed and snapshot-meta encodings.
pub(super) const META_VERSION: u8 = 1;

/// Reads the encodings above, never panicking on short or bad input.
pub(super) struct Rd<'a> {
    pub(super) b: &'a [u8],
    pub(super) at: usize,
}

impl<'a> Rd<'a> {
    pub(super) fn new(b: &'a [u8]) -> Self {
        Rd { b, at: 0 }
    }
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or_else(|| format!("truncated at byte {} (wanted {n} more)", self.at))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    pub(super) fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    pub(super) fn u32(&mut self) -> Result<u32, String> {
        let s = self.take(4)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    pub(super) fn u64(&mut self) -> Result<u64, String> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_be_bytes(a))
    }
    pub(super) fn rest(&mut self) -> &'a [u8] {
        let s = &self.b[self.at..];
        self.at = self.b.len();
        s
    }
    pub(super) fn string(&mut self) -> Result<String, String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "string is not UTF-8".to_string())
    }
    pub(super) fn end(&self) -> Result<(), String> {
        if self.at == self.b.len() {
            Ok(())
        } else {
            Err(format!(
                "{} unexpected trailing bytes",
                self.b.len() - self.at
            ))
        }
    }
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

pub(super) fn get_log_id(r: &mut Rd<'_>) -> Result<Option<LogId<NodeId>>, String> {
    match r.u8()? {
        0 => Ok(None),
        1 => {
            let term = r.u64()?;
            let node = r.u64()?;
            let index = r.u64()?;
            Ok(Some(LogId::new(CommittedLeaderId::new(term, node), index)))
        }
        t => Err(format!("bad option tag {t}")),
    }
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

pub(super) fn get_membership(r: &mut Rd<'_>) -> Result<Membership<NodeId, BasicNode>, String> {
    // Counts come from disk: bound them by the bytes left before allocating.
    let n = r.u32()? as usize;
    let mut configs = Vec::with_capacity(n.min(r.b.len()));
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
    let client = match &entry.payload {
        EntryPayload::Normal(e) => e.encode(),
        _ => Vec::new(),
    };
    let hint = 8 + 8 + 1 + client.len();
    wal::Record::encode(entry.log_id.index, hint, |out| {
        put_log_body(out, entry, &client)
    })
}

/// A WAL record body; `client` is the encoded client entry when the payload is one.
pub(super) fn put_log_body(out: &mut Vec<u8>, entry: &LogEntry, client: &[u8]) {
    put_u64(out, entry.log_id.leader_id.term);
    put_u64(out, entry.log_id.leader_id.node_id);
    match &entry.payload {
        EntryPayload::Blank => out.push(KIND_BLANK),
        EntryPayload::Normal(_) => {
            out.push(KIND_NORMAL);
            out.extend_from_slice(client);
        }
        EntryPayload::Membership(m) => {
            out.push(KIND_MEMBERSHIP);
            put_membership(out, m);
        }
    }
}

pub(super) fn decode_log_entry(index: u64, body: &[u8]) -> Result<LogEntry, String> {
    let mut r = Rd::new(body);
    let term = r.u64()?;
    let node = r.u64()?;
    let payload = match r.u8()? {
        KIND_BLANK => EntryPayload::Blank,
        KIND_NORMAL => EntryPayload::Normal(
            Entry::decode(r.rest()).map_err(|e| format!("log entry {index}: {e}"))?,
        ),
        KIND_MEMBERSHIP => EntryPayload::Membership(get_membership(&mut r)?),
        k => return Err(format!("log entry {index} has unknown kind {k}")),
    };
    r.end().map_err(|e| format!("log entry {index}: {e}"))?;
    Ok(LogEntry {
        log_id: LogId::new(CommittedLeaderId::new(term, node), index),
        payload,
    })
}

pub(super) fn encode_vote(v: &Vote<NodeId>) -> Vec<u8> {
    let mut out = vec![META_VERSION];
    put_u64(&mut out, v.leader_id.term);
    put_u64(&mut out, v.leader_id.node_id);
    out.push(u8::from(v.committed));
    out
}

pub(super) fn decode_vote(b: &[u8]) -> Result<Vote<NodeId>, String> {
    let mut r = Rd::new(b);
    let v = r.u8()?;
    if v != META_VERSION {
        return Err(format!("unknown vote version {v}"));
    }
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

pub(super) fn decode_committed(b: &[u8]) -> Result<Option<LogId<NodeId>>, String> {
    let mut r = Rd::new(b);
    let v = r.u8()?;
    if v != META_VERSION {
        return Err(format!("unknown committed-index version {v}"));
    }
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

pub(super) fn decode_snapshot_meta(b: &[u8]) -> Result<StoredSnapshotMeta, String> {
    let mut r = Rd::new(b);
    let v = r.u8()?;
    if v != META_VERSION {
        return Err(format!("unknown snapshot metadata version {v}"));
    }
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

/// Lays down the state of a one-voter group whose whole history up to `last_index` is one
/// snapshot (its payload streamed by `produce`) and an empty log, so that the next start
/// restores it and appends from `last_index + 1`. Used to import another server's data
/// (`crate::zk_import`): the snapshot is the commit point, written last, so an import
/// interrupted before it leaves no snapshot and starts over.
///
/// The snapshot's last log id and the vote carry term 1 by this node; the membership is
/// the one `initialize` would have made (this node the only voter, at index 0).
pub(crate) fn write_initial_state(
    cfg: &StorageConfig,
    last_index: u64,
    produce: impl FnOnce(&mut dyn FnMut(&[u8]) -> io::Result<()>) -> io::Result<()>,
) -> Result<u64, String> {
    let raft_dir = cfg.raft_dir();
    std::fs::create_dir_all(&raft_dir).map_err(|e| format!("{}: {e}", raft_dir.display()))?;
    let last = LogId::new(CommittedLeaderId::new(1, STANDALONE_ID), last_index);
    let mut vote = Vote::new(1, STANDALONE_ID);
    vote.commit();
    let membership = Membership::new(
        vec![BTreeSet::from([STANDALONE_ID])],
        BTreeMap::from([(STANDALONE_ID, BasicNode::default())]),
    );
    let meta = SnapshotMeta {
        last_log_id: Some(last),
        last_membership: StoredMembership::new(
            Some(LogId::new(CommittedLeaderId::new(0, 0), 0)),
            membership,
        ),
        snapshot_id: format!("import-{last_index}"),
    };
    // The snapshot first: it holds the membership and everything imported, so a keeper
    // starts from it alone (it elects itself). A vote written first and then left alone by
    // an interrupted import made a directory no keeper could lead.
    let store = SnapshotStore::open(cfg.snapshot_dir()).map_err(|e| e.to_string())?;
    let written = store
        .write_with(last_index, &encode_snapshot_meta(&meta), produce)
        .map_err(|e| e.to_string())?;
    for (name, bytes) in [
        ("vote", encode_vote(&vote)),
        ("committed", encode_committed(&Some(last))),
    ] {
        let path = raft_dir.join(name);
        wal::write_atomic(&path, &wal::frame(&bytes), true)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(written)
}

pub(super) fn storage_err(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::write_logs(AnyError::error(e.to_string())).into()
}

pub(super) fn fatal(e: impl std::fmt::Display) -> ConsensusError {
    ConsensusError::Fatal(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let client = match &e.payload {
            EntryPayload::Normal(x) => x.encode(),
            _ => Vec::new(),
        };
        let mut out = Vec::new();
        put_log_body(&mut out, e, &client);
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
            op: EntryOp::CloseSession {
                session_id: 5,
                reason: String::new(),
            },
        };
        for (hex, index, payload) in [
            (BLANK, 10, EntryPayload::Blank),
            (NORMAL, 11, EntryPayload::Normal(client)),
            (MEMBERSHIP, 12, EntryPayload::Membership(membership())),
        ] {
            let e = LogEntry {
                log_id: log_id(2, 1, index),
                payload,
            };
            // LogEntry's Debug omits client payloads; compare with ==.
            assert!(decode_log_entry(index, &bytes(hex)).unwrap() == e, "{hex}");
            assert_eq!(body(&e), bytes(hex));
        }
    }
}
