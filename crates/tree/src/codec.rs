//! Byte encodings of [`Entry`] (write-ahead log records) and of a whole [`DataTree`]
//! (snapshots), both in jute with corral-proto's codec. Deterministic: the same value
//! always gives the same bytes, so two replicas' snapshots can be compared byte for byte.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use corral_proto::{Acl, DecodeError, Id, Jute, Reader, Request, Stat, Writer};
use thiserror::Error;

use crate::obituary::{EndCause, Evidence, Obituary};
use crate::{DataTree, Entry, EntryOp, Node, TreeConfig};

/// Why bytes could not be turned back into an entry or a tree.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CodecError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("bad magic or unsupported format version")]
    BadHeader,
    #[error("unknown entry kind {0}")]
    UnknownEntryKind(i32),
    #[error("inconsistent snapshot: {0}")]
    Inconsistent(#[from] Inconsistency),
}

/// Snapshot records that read but do not make a tree (or a tree built from parts that would
/// not be one: [`DataTree::from_parts`]).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Inconsistency {
    #[error("root is not first")]
    RootNotFirst,
    #[error("nodes out of order at {0:?}")]
    OutOfOrder(String),
    #[error("invalid path {0:?}")]
    InvalidPath(String),
    #[error("{0:?}: data length mismatch")]
    DataLength(String),
    #[error("{0:?} has no parent")]
    NoParent(String),
    #[error("{path:?}: no ACL {index}")]
    NoAcl { path: String, index: i32 },
    #[error("no root")]
    NoRoot,
    #[error("{0:?}: numChildren mismatch")]
    NumChildren(String),
    #[error("negative count")]
    NegativeCount,
    #[error("count larger than the input")]
    CountTooLarge,
    #[error("negative node count")]
    NegativeNodeCount,
}

const SNAPSHOT_MAGIC: &[u8; 4] = b"CRTS";
/// 4: sessions carry their creation time, and the obituaries follow them.
const SNAPSHOT_VERSION: i32 = 4;
/// 3: a node's cversion is its children's creation counter (what the sequential suffix
/// comes from), as ZooKeeper stores it.
const SNAPSHOT_VERSION_CVERSION_STORED: i32 = 3;
/// 2: ACLs in a table, nodes refer to them by index; cversion as clients see it.
const SNAPSHOT_VERSION_REPORTED_CVERSION: i32 = 2;
/// 1: every node carried its ACL. Versions 1 and 2 are still read, so older data dirs start.
const SNAPSHOT_VERSION_INLINE_ACLS: i32 = 1;

const KIND_CREATE_SESSION: i32 = 1;
/// A close with only a sentence for its reason; still read, no longer written.
const KIND_CLOSE_SESSION_REASON: i32 = 2;
const KIND_REQUEST: i32 = 3;
const KIND_PURGE: i32 = 4;
/// A close carrying its [`Evidence`](crate::obituary::Evidence).
const KIND_CLOSE_SESSION: i32 = 5;

impl Entry {
    /// session id, time, identities, kind, then the kind's fields; a request is its opcode
    /// followed by its wire body, so the log stores what the client sent.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.i64(self.session_id);
        w.i64(self.time_ms);
        w.vec(&self.identities);
        match &self.op {
            EntryOp::CreateSession {
                session_id,
                timeout_ms,
                passwd,
            } => {
                w.i32(KIND_CREATE_SESSION);
                w.i64(*session_id);
                w.i32(*timeout_ms);
                w.buffer(passwd);
            }
            EntryOp::CloseSession {
                session_id,
                evidence,
            } => {
                w.i32(KIND_CLOSE_SESSION);
                w.i64(*session_id);
                evidence.write(&mut w);
            }
            EntryOp::Request(req) => {
                w.i32(KIND_REQUEST);
                w.i32(req.op_code().code());
                req.write_body(&mut w);
            }
            EntryOp::PurgeContainersAndTtl { candidates } => {
                w.i32(KIND_PURGE);
                w.vec(candidates);
            }
        }
        w.buf
    }

    /// About the length of [`Entry::encode`]'s bytes, found without encoding: what a batch of
    /// entries is sized by. Counts every path, data, ACL and identity byte; the fixed-size
    /// fields are rounded up.
    pub fn size_estimate(&self) -> usize {
        let ids: usize = self.identities.iter().map(id_size).sum();
        32 + ids
            + match &self.op {
                EntryOp::CreateSession { passwd, .. } => 16 + passwd.len(),
                EntryOp::CloseSession { evidence, .. } => {
                    64 + evidence.detail.len()
                        + evidence.remote.len()
                        + evidence.last_op.len()
                        + evidence
                            .history
                            .iter()
                            .map(|e| 32 + e.remote.len() + e.cause.len())
                            .sum::<usize>()
                }
                EntryOp::Request(req) => request_size_estimate(req),
                EntryOp::PurgeContainersAndTtl { candidates } => {
                    8 + candidates.iter().map(|c| 4 + c.len()).sum::<usize>()
                }
            }
    }

    pub fn decode(b: &[u8]) -> Result<Entry, CodecError> {
        let mut r = Reader::new(b);
        let session_id = r.i64()?;
        let time_ms = r.i64()?;
        let identities: Vec<Id> = r.vec()?;
        let op = match r.i32()? {
            KIND_CREATE_SESSION => EntryOp::CreateSession {
                session_id: r.i64()?,
                timeout_ms: r.i32()?,
                passwd: r.buffer()?,
            },
            KIND_CLOSE_SESSION => EntryOp::CloseSession {
                session_id: r.i64()?,
                evidence: Evidence::read(&mut r)?,
            },
            KIND_CLOSE_SESSION_REASON => {
                let closed = r.i64()?;
                let cause = if closed == session_id {
                    EndCause::ClosedByClient
                } else {
                    EndCause::Unknown
                };
                EntryOp::CloseSession {
                    session_id: closed,
                    evidence: Evidence::bare(cause, r.string()?),
                }
            }
            KIND_REQUEST => {
                let op = r.i32()?;
                let rest = r.take(r.remaining())?;
                EntryOp::Request(Request::decode(op, rest)?)
            }
            KIND_PURGE => EntryOp::PurgeContainersAndTtl {
                candidates: r.vec()?,
            },
            k => return Err(CodecError::UnknownEntryKind(k)),
        };
        r.finish()?;
        Ok(Entry {
            session_id,
            time_ms,
            identities,
            op,
        })
    }
}

/// Numbers distinct ACLs by first appearance.
#[derive(Default)]
struct AclNumbering<'a> {
    acls: Vec<&'a [Acl]>,
    by_value: HashMap<&'a [Acl], i32>,
    /// Shared copies make the common case a pointer comparison with the previous node.
    last: Option<(*const Acl, i32)>,
}

impl<'a> AclNumbering<'a> {
    fn index_of(&mut self, acl: &'a [Acl]) -> i32 {
        let ptr = acl.as_ptr();
        if let Some((p, i)) = self.last {
            if p == ptr {
                return i;
            }
        }
        let acls = &mut self.acls;
        let i = *self.by_value.entry(acl).or_insert_with(|| {
            acls.push(acl);
            i32::try_from(acls.len() - 1).unwrap_or(i32::MAX)
        });
        self.last = Some((ptr, i));
        i
    }
}

impl DataTree {
    /// magic, version, last zxid, config, sessions (id, timeout, password), the distinct
    /// ACLs, then every node in path order (path, data, index of its ACL, stat). Children and
    /// session ephemerals are derived on decode, so they cannot disagree with the nodes.
    /// ACLs are numbered by first appearance in path order, so equal trees give equal bytes
    /// however their ACLs happen to be shared in memory.
    pub fn encode_snapshot(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let done: Result<(), Infallible> = self.write_snapshot(1 << 20, |b| {
            out.extend_from_slice(b);
            Ok(())
        });
        match done {
            Ok(()) => out,
        }
    }

    /// [`DataTree::encode_snapshot`]'s bytes, handed to `sink` in pieces of about
    /// `chunk_bytes`, so a large tree is written out without ever being whole in memory.
    /// Stops at the sink's first error.
    pub fn write_snapshot<E>(
        &self,
        chunk_bytes: usize,
        sink: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        self.write_snapshot_in(chunk_bytes, &mut Vec::new(), sink)
    }

    /// [`DataTree::write_snapshot`], building its pieces in `scratch` (left empty, with its
    /// capacity, at the end): a caller that keeps the buffer between snapshots lets encoding
    /// run without allocating, which matters on a thread at idle CPU priority that must not
    /// hold the allocator's locks while preempted.
    pub fn write_snapshot_in<E>(
        &self,
        chunk_bytes: usize,
        scratch: &mut Vec<u8>,
        mut sink: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut w = Writer {
            buf: std::mem::take(scratch),
        };
        w.buf.clear();
        let r = self.encode_pieces(&mut w, chunk_bytes, &mut sink);
        w.buf.clear();
        *scratch = w.buf;
        r
    }

    fn encode_pieces<E>(
        &self,
        w: &mut Writer,
        chunk_bytes: usize,
        sink: &mut impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut numbering = self.number_acls();
        w.buf.extend_from_slice(SNAPSHOT_MAGIC);
        w.i32(SNAPSHOT_VERSION);
        w.i64(self.last_zxid);
        w.bool(self.config.extended_types_enabled);
        match &self.config.super_digest {
            Some(d) => {
                w.bool(true);
                w.string(d);
            }
            None => w.bool(false),
        }
        w.buffer(&self.config.config_node_data);
        w.bool(self.config.reconfig_enabled);
        w.i32(i32::try_from(self.sessions.len()).unwrap_or(i32::MAX));
        for (id, s) in &self.sessions {
            w.i64(*id);
            w.i32(s.timeout_ms);
            w.buffer(&s.passwd);
            w.i64(s.created_ms);
        }
        w.i32(i32::try_from(self.obituaries.len()).unwrap_or(i32::MAX));
        for o in &self.obituaries {
            o.write(w);
        }
        w.i32(i32::try_from(numbering.acls.len()).unwrap_or(i32::MAX));
        for acl in &numbering.acls {
            w.vec(acl);
        }
        w.i64(i64::try_from(self.nodes.len()).unwrap_or(i64::MAX));
        for (p, n) in self.nodes.iter() {
            w.string(p);
            w.nullable_buffer(&n.data);
            w.i32(numbering.index_of(&n.acl));
            n.stat.write(w);
            if w.buf.len() >= chunk_bytes {
                sink(&w.buf)?;
                w.buf.clear();
            }
        }
        sink(&w.buf)
    }

    /// The distinct ACLs in order of first appearance. The numbering is then asked again for
    /// each node's index as the nodes are written, rather than kept in a vector of one index
    /// per node: the encoder runs at idle CPU priority, and a buffer the size of the tree
    /// freed there would hold the address-space lock while request threads wait for it.
    fn number_acls(&self) -> AclNumbering<'_> {
        let mut numbering = AclNumbering::default();
        for n in self.nodes.values() {
            numbering.index_of(&n.acl);
        }
        numbering
    }

    pub fn decode_snapshot(b: &[u8]) -> Result<DataTree, CodecError> {
        let (mut tree, mut records) = DataTree::begin_restore(b)?;
        for node in records.by_ref() {
            tree.restore_node(node?)?;
        }
        records.finish()?;
        tree.finish_restore()
    }

    /// A tree built from parts read elsewhere (another server's data, being imported),
    /// with the checks a snapshot restore makes: nodes in strictly increasing path order,
    /// root first, every parent before its children, data lengths right. `stat.num_children`
    /// is recomputed from the nodes given. Ephemerals are attached to their owner's session
    /// when it is among `sessions`.
    pub fn from_parts(
        config: TreeConfig,
        sessions: Vec<(i64, i32, Vec<u8>)>,
        last_zxid: i64,
        nodes: impl IntoIterator<Item = (String, Option<Vec<u8>>, Arc<[Acl]>, Stat)>,
    ) -> Result<DataTree, CodecError> {
        let mut tree = DataTree::restore_start(config, sessions, last_zxid);
        let mut prev = String::new();
        for (p, data, acl, mut stat) in nodes {
            stat.num_children = 0;
            DataTree::check_restored_node(&mut prev, &p, &data, &stat)?;
            tree.insert_restored(p, DataTree::restored_node(data, acl, stat))?;
        }
        tree.finish_restore()
    }

    /// Reads a snapshot's header, sessions and ACL table: the tree without its nodes, and
    /// the node records still to read. [`DataTree::decode_snapshot`] shows the steps.
    pub fn begin_restore(b: &[u8]) -> Result<(DataTree, NodeRecords<'_>), CodecError> {
        let mut r = Reader::new(b);
        if r.take(4)? != SNAPSHOT_MAGIC {
            return Err(CodecError::BadHeader);
        }
        let version = r.i32()?;
        if !(SNAPSHOT_VERSION_INLINE_ACLS..=SNAPSHOT_VERSION).contains(&version) {
            return Err(CodecError::BadHeader);
        }
        let last_zxid = r.i64()?;
        let extended_types_enabled = r.bool()?;
        let super_digest = if r.bool()? { Some(r.string()?) } else { None };
        let config = TreeConfig {
            extended_types_enabled,
            super_digest,
            config_node_data: r.buffer()?,
            reconfig_enabled: r.bool()?,
            // Not in the snapshot: the keeper sets them from its own configuration.
            enforce_quota: false,
            obituaries_kept: crate::obituary::OBITUARIES_KEPT_DEFAULT,
        };
        let with_obituaries = version >= SNAPSHOT_VERSION;
        let n_sessions = count(&mut r, 16)?;
        let mut sessions = Vec::new();
        let mut created = Vec::new();
        for _ in 0..n_sessions {
            let (id, timeout, passwd) = (r.i64()?, r.i32()?, r.buffer()?);
            if with_obituaries {
                created.push((id, r.i64()?));
            }
            sessions.push((id, timeout, passwd));
        }
        let mut obituaries = Vec::new();
        if with_obituaries {
            for _ in 0..count(&mut r, Obituary::MIN_SIZE)? {
                obituaries.push(Obituary::read(&mut r)?);
            }
        }
        let mut acls: Vec<Arc<[Acl]>> = Vec::new();
        if version >= SNAPSHOT_VERSION_REPORTED_CVERSION {
            for _ in 0..count(&mut r, 4)? {
                acls.push(r.vec::<Acl>()?.into());
            }
        }
        let n_nodes = r.i64()?;
        let n_nodes = usize::try_from(n_nodes).map_err(|_| Inconsistency::NegativeNodeCount)?;
        let mut tree = DataTree::restore_start(config, sessions, last_zxid);
        tree.restore_obituaries(created, obituaries);
        let records = NodeRecords {
            r,
            version,
            acls,
            left: n_nodes,
            prev: String::new(),
        };
        Ok((tree, records))
    }

    /// Adds one node read by [`NodeRecords`], in the order they came: its parent is here.
    pub fn restore_node(&mut self, node: RestoredNode) -> Result<(), CodecError> {
        Ok(self.insert_restored(node.path, node.node)?)
    }

    /// Ends a restore once every record is added: checks what the nodes could not check one
    /// by one (a root, every numChildren).
    pub fn finish_restore(self) -> Result<DataTree, CodecError> {
        Ok(self.restore_finish()?)
    }
}

/// The node records of a snapshot, read and checked one at a time
/// ([`DataTree::begin_restore`]). Reading and adding them are separate steps so that a
/// caller may do them on two threads; this crate runs none.
pub struct NodeRecords<'a> {
    r: Reader<'a>,
    version: i32,
    acls: Vec<Arc<[Acl]>>,
    left: usize,
    prev: String,
}

/// One node read from a snapshot, to be added with [`DataTree::restore_node`].
pub struct RestoredNode {
    path: String,
    node: Arc<Node>,
}

impl Iterator for NodeRecords<'_> {
    type Item = Result<RestoredNode, CodecError>;

    /// The next record, checked; after an error, none.
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let record = parse_node(&mut self.r, self.version, &self.acls, &mut self.prev);
        if record.is_err() {
            self.left = 0;
        }
        Some(record.map(|(path, node)| RestoredNode { path, node }))
    }
}

impl NodeRecords<'_> {
    /// Checks that the snapshot ends after its last record (call once they are all read).
    pub fn finish(self) -> Result<(), CodecError> {
        Ok(self.r.finish()?)
    }
}

/// One snapshot node record, checked ([`DataTree::check_restored_node`]) and made a node.
fn parse_node(
    r: &mut Reader<'_>,
    version: i32,
    acls: &[Arc<[Acl]>],
    prev: &mut String,
) -> Result<(String, Arc<Node>), CodecError> {
    let p = r.string()?;
    let data = r.nullable_buffer()?;
    let acl = if version >= SNAPSHOT_VERSION_REPORTED_CVERSION {
        let i = r.i32()?;
        usize::try_from(i)
            .ok()
            .and_then(|i| acls.get(i))
            .cloned()
            .ok_or_else(|| Inconsistency::NoAcl {
                path: p.clone(),
                index: i,
            })?
    } else {
        r.vec::<Acl>()?.into()
    };
    let mut stat = Stat::read(r)?;
    if version < SNAPSHOT_VERSION_CVERSION_STORED {
        // reported = 2 * creations - numChildren; exact while creations < 2^30.
        stat.cversion = ((i64::from(stat.cversion) + i64::from(stat.num_children)) / 2) as i32;
    }
    DataTree::check_restored_node(prev, &p, &data, &stat)?;
    let node = DataTree::restored_node(data, acl, stat);
    Ok((p, node))
}

/// A non-negative count whose items need at least `min` bytes each.
fn count(r: &mut Reader<'_>, min: usize) -> Result<usize, CodecError> {
    let n = r.i32()?;
    let n = usize::try_from(n).map_err(|_| Inconsistency::NegativeCount)?;
    if n.saturating_mul(min) > r.remaining() {
        return Err(Inconsistency::CountTooLarge.into());
    }
    Ok(n)
}

fn id_size(id: &Id) -> usize {
    8 + id.scheme.len() + id.id.len()
}

fn acl_size(acl: &[Acl]) -> usize {
    acl.iter().map(|a| 4 + id_size(&a.id)).sum()
}

/// See [`Entry::size_estimate`]: the request's opcode and body.
fn request_size_estimate(req: &Request) -> usize {
    let data = |d: &Option<Vec<u8>>| d.as_ref().map_or(0, Vec::len);
    24 + match req {
        Request::Create(r) | Request::Create2(r) | Request::CreateContainer(r) => {
            r.path.len() + data(&r.data) + acl_size(&r.acl)
        }
        Request::CreateTtl(r) => r.path.len() + data(&r.data) + acl_size(&r.acl),
        Request::SetData(r) => r.path.len() + data(&r.data),
        Request::SetAcl(r) => r.path.len() + acl_size(&r.acl),
        Request::Delete(r) => r.path.len(),
        Request::Check(r) => r.path.len(),
        Request::DeleteContainer(r) => r.path.len(),
        Request::Multi(ops) | Request::MultiRead(ops) => {
            ops.iter().map(request_size_estimate).sum()
        }
        Request::Reconfig(r) => {
            r.joining_servers.len() + r.leaving_servers.len() + r.new_members.len()
        }
        // Not write requests: never in an entry, but sized all the same.
        other => other_request_size(other),
    }
}

fn other_request_size(req: &Request) -> usize {
    let mut w = Writer::new();
    req.write_body(&mut w);
    w.buf.len()
}
