//! The data tree and session table.
//!
//! Every write is validated completely before it mutates anything, in ZooKeeper's check
//! order (PrepRequestProcessor), so a failed single request leaves no trace. A multi applies
//! its ops one by one and, on the first failure, rolls the earlier ones back from an undo
//! log; no copy of the tree is ever made.
//!
//! Quotas are kept as ZooKeeper 3.8 keeps them: a `zookeeper_limits` node under
//! `/zookeeper/quota/<path>` puts `<path>` under quota; every create, delete and setData in
//! that subtree adds to the data of its `zookeeper_stats` node (the deepest quota wins, the
//! stats node's Stat is left alone), and creating a stats node counts the subtree afresh. The
//! limit checks run where ZooKeeper's PrepRequestProcessor runs them: against the tree as it
//! was before the request, before the whole multi for an op inside one.

// Persistent maps and sets: cloning the whole tree is O(1) and later changes copy only the
// paths they touch, so a snapshot can be written from a consistent view while writes go on.
use imbl::{OrdMap as BTreeMap, OrdSet as BTreeSet, Vector};
use std::sync::Arc;

use corral_proto::{
    perms, Acl, CreateMode, Data, ErrorCode, EventType, Id, MultiResult, Request, Response, Stat,
};

use crate::obituary::{EndCause, Evidence, Obituary, EPHEMERALS_LISTED};
use crate::quota::{self, Limit, QuotaWarning, StatsTrack};
use crate::reconfig::{self, ServerConfig};
use crate::{acl, path, ApplyResult, Entry, EntryOp, Inconsistency, TreeConfig, Trigger};

/// `ephemeralOwner` of a container node (EphemeralType.CONTAINER_EPHEMERAL_OWNER).
pub const CONTAINER_OWNER: i64 = i64::MIN;
/// High byte of the `ephemeralOwner` of a TTL node; the low bytes hold the TTL in ms.
const TTL_HIGH_BYTE: u64 = 0xFF00_0000_0000_0000;
/// Largest TTL ZooKeeper accepts (EphemeralType.TTL max value, 2^40 - 1 ms).
pub const MAX_TTL_MS: i64 = 0x00FF_FFFF_FFFF;

/// What kind of node an `ephemeralOwner` value denotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    Persistent,
    /// Owned by this session.
    Ephemeral(i64),
    Container,
    /// Persistent with this TTL in ms.
    Ttl(i64),
}

impl NodeKind {
    pub fn of(ephemeral_owner: i64) -> NodeKind {
        if ephemeral_owner == 0 {
            NodeKind::Persistent
        } else if ephemeral_owner == CONTAINER_OWNER {
            NodeKind::Container
        } else if (ephemeral_owner as u64) & TTL_HIGH_BYTE == TTL_HIGH_BYTE {
            NodeKind::Ttl(((ephemeral_owner as u64) & !TTL_HIGH_BYTE) as i64)
        } else {
            NodeKind::Ephemeral(ephemeral_owner)
        }
    }
}

fn ttl_owner(ttl: i64) -> i64 {
    (TTL_HIGH_BYTE | (ttl as u64)) as i64
}

/// Length of (possibly null) znode data; null counts as 0, as in ZooKeeper's Stat.
pub fn data_len(d: &Data) -> usize {
    d.as_ref().map_or(0, Vec::len)
}

/// One znode. `stat.data_length` and `stat.num_children` are kept current.
/// `stat.ephemeral_owner` is the internal encoding (container and TTL markers included);
/// clients are shown [`Node::client_stat`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// `None` is null data, which ZooKeeper keeps apart from empty data.
    pub data: Data,
    /// Shared: most znodes carry one of a handful of ACLs (ZooKeeper keeps an ACL cache for
    /// the same reason), so a child created with its parent's ACL, and every znode restored
    /// from a snapshot, points at one copy instead of owning three allocations.
    pub acl: Arc<[Acl]>,
    pub stat: Stat,
    /// Child names (not paths), sorted, so every node lists them the same way.
    pub children: BTreeSet<String>,
}

impl Node {
    pub fn kind(&self) -> NodeKind {
        NodeKind::of(self.stat.ephemeral_owner)
    }

    /// The Stat a client sees: ZooKeeper reports ephemeralOwner 0 for containers and TTL
    /// nodes (only session-owned ephemerals show their owner).
    pub fn client_stat(&self) -> Stat {
        client_view(&self.stat)
    }
}

fn client_view(stat: &Stat) -> Stat {
    let mut s = stat.clone();
    if !matches!(NodeKind::of(s.ephemeral_owner), NodeKind::Ephemeral(_)) {
        s.ephemeral_owner = 0;
    }
    // Stored: the number of children ever created (ZooKeeper's StatPersisted). Shown: the
    // number of child changes, counting a delete for every child no longer there
    // (DataNode.copyStat). So a fresh "/" with only /zookeeper shows -1.
    s.cversion = s.cversion.wrapping_mul(2).wrapping_sub(s.num_children);
    s
}

/// A live session as recorded in the replicated state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub timeout_ms: i32,
    pub passwd: Vec<u8>,
    /// The leader's time when it was created (0: before this was recorded).
    pub created_ms: i64,
    /// Paths of the ephemerals it owns.
    pub ephemerals: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataTree {
    pub(crate) config: TreeConfig,
    /// Each node behind its own pointer: map leaves stay small (cheap to copy while a
    /// snapshot view shares them, fewer pages to fill on restore) and a write copies only
    /// the one node it changes.
    pub(crate) nodes: BTreeMap<String, Arc<Node>>,
    pub(crate) sessions: BTreeMap<i64, SessionInfo>,
    pub(crate) last_zxid: i64,
    /// The latest sessions' ends, oldest first, at most `config.obituaries_kept` (shared
    /// like the maps, so a snapshot's view costs nothing to take).
    pub(crate) obituaries: Vector<Obituary>,
    // Derived indexes, rebuilt by `put_node`/`take_node`; never serialised.
    data_size: u64,
    containers: BTreeSet<String>,
    ttls: BTreeSet<String>,
    /// Paths under quota (ZooKeeper's PathTrie, as [`quota::trie_key`]s), each with the number
    /// of limits nodes naming it: a path stays under quota while one of them exists.
    quotas: BTreeMap<String, u32>,
}

/// The quota state a multi's checks read: the tree as it was before the multi (O(1) clones).
struct QuotaView {
    quotas: BTreeMap<String, u32>,
    nodes: BTreeMap<String, Arc<Node>>,
}

/// One step to reverse when a multi fails part-way.
enum Undo {
    Inserted(String),
    Removed(String, Arc<Node>),
    Stat(String, Stat),
    Data(String, Data),
}

/// The state of one write being applied.
struct Ctx<'a> {
    zxid: i64,
    time_ms: i64,
    session_id: i64,
    ids: &'a [Id],
    /// Kept only inside a multi, the one place that rolls back: a single request is checked
    /// fully before it changes anything, so it builds no undo records.
    undo: Option<Vec<Undo>>,
    triggers: Vec<Trigger>,
    quota_warnings: Vec<QuotaWarning>,
    /// Inside a multi with quotas about: what its quota checks read.
    quota_before: Option<QuotaView>,
}

impl Ctx<'_> {
    fn keep_undo(&mut self, record: impl FnOnce() -> Undo) {
        if let Some(undo) = self.undo.as_mut() {
            undo.push(record());
        }
    }
}

/// The successful outcome of one write op, before it is shaped into a reply or multi result.
enum OpOut {
    Path(String),
    Create2(String, Stat),
    Stat(Stat),
    Deleted,
    Checked,
}

fn len_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Applies the version rule of every versioned write: -1 matches anything.
fn check_version(current: i32, expected: i32) -> Result<i32, ErrorCode> {
    if expected != -1 && expected != current {
        return Err(ErrorCode::BadVersion);
    }
    Ok(current.wrapping_add(1))
}

/// Parent of a path as ZooKeeper computes it for create/delete: everything before the last
/// '/', the root when that is empty. No '/' or a NUL is BadArguments.
fn parent_for_write(p: &str) -> Result<&str, ErrorCode> {
    let slash = p.rfind('/').ok_or(ErrorCode::BadArguments)?;
    if p.contains('\0') {
        return Err(ErrorCode::BadArguments);
    }
    Ok(if slash == 0 {
        "/"
    } else {
        p.get(..slash).ok_or(ErrorCode::BadArguments)?
    })
}

impl DataTree {
    /// A tree holding `/`, `/zookeeper`, `/zookeeper/quota` and `/zookeeper/config` as a fresh
    /// ZooKeeper shows them.
    pub fn new(config: TreeConfig) -> Self {
        let mut t = DataTree {
            config,
            nodes: BTreeMap::new(),
            sessions: BTreeMap::new(),
            last_zxid: 0,
            obituaries: Vector::new(),
            data_size: 0,
            containers: BTreeSet::new(),
            ttls: BTreeSet::new(),
            quotas: BTreeMap::new(),
        };
        let sys = |data: Vec<u8>, acl: Vec<Acl>| Node {
            stat: Stat {
                data_length: len_i32(data.len()),
                ..Stat::default()
            },
            data: Some(data),
            acl: acl.into(),
            children: BTreeSet::new(),
        };
        // Built in, not created: no creations counted, so a fresh keeper shows cversion -1 on
        // "/" and -2 on "/zookeeper", as a fresh ZooKeeper 3.8 does. Each parent comes first.
        let _ = t.put_node(
            "/".into(),
            Arc::new(sys(Vec::new(), acl::open_acl_unsafe())),
        );
        let _ = t.put_node(
            "/zookeeper".into(),
            Arc::new(sys(Vec::new(), acl::open_acl_unsafe())),
        );
        let _ = t.put_node(
            "/zookeeper/quota".into(),
            Arc::new(sys(Vec::new(), acl::open_acl_unsafe())),
        );
        let mut config_node = sys(t.config.config_node_data.clone(), acl::read_acl_unsafe());
        // ZooKeeper sets this ACL with setACL(path, acl, -1), which stores -1 as aversion.
        config_node.stat.aversion = -1;
        // An ensemble's membership is written with a setData of version -1 (kept as -1).
        if ServerConfig::parse(&t.config.config_node_data).is_some() {
            config_node.stat.version = -1;
        }
        let _ = t.put_node("/zookeeper/config".into(), Arc::new(config_node));
        t
    }

    /// Applies one committed entry at `zxid` (strictly increasing).
    ///
    /// A request from a session not in the table is SessionExpired; session 0 stands for the
    /// system and may write, but owns no ephemerals. A multi always answers Ok in the reply
    /// header with the per-op errors in the body, as ZooKeeper does. Reconfig answers
    /// ReconfigDisabled without reconfigEnabled, Unimplemented in standalone (no membership in
    /// `/zookeeper/config`), else changes the membership there ([`crate::reconfig`]).
    /// PurgeContainersAndTtl answers `Response::Paths` of what it deleted.
    pub fn apply(&mut self, zxid: i64, entry: &Entry) -> ApplyResult {
        self.last_zxid = zxid;
        let mut ctx = Ctx {
            zxid,
            time_ms: entry.time_ms,
            session_id: entry.session_id,
            ids: &entry.identities,
            undo: None,
            triggers: Vec::new(),
            quota_warnings: Vec::new(),
            quota_before: None,
        };
        let mut deleted_ephemerals = Vec::new();
        let mut obituary = None;
        let (err, response) = match &entry.op {
            EntryOp::CreateSession {
                session_id,
                timeout_ms,
                passwd,
            } => {
                let s = self
                    .sessions
                    .entry(*session_id)
                    .or_insert_with(|| SessionInfo {
                        timeout_ms: *timeout_ms,
                        passwd: passwd.clone(),
                        created_ms: entry.time_ms,
                        ephemerals: BTreeSet::new(),
                    });
                s.timeout_ms = *timeout_ms;
                s.passwd.clone_from(passwd);
                (ErrorCode::Ok, Response::Empty)
            }
            EntryOp::CloseSession {
                session_id,
                evidence,
            } => {
                (deleted_ephemerals, obituary) =
                    self.end_session(&mut ctx, *session_id, evidence.clone());
                (ErrorCode::Ok, Response::Empty)
            }
            EntryOp::PurgeContainersAndTtl { candidates } => {
                let purged = self.purge(&mut ctx, candidates);
                (ErrorCode::Ok, Response::Paths(purged))
            }
            EntryOp::Request(req) => {
                // Session 0 is the system itself; any other unknown session is gone.
                if entry.session_id != 0 && !self.sessions.contains_key(&entry.session_id) {
                    (ErrorCode::SessionExpired, Response::Empty)
                } else if let Request::CloseSession = req {
                    let evidence = Evidence::bare(EndCause::ClosedByClient, "closed by the client");
                    (deleted_ephemerals, obituary) =
                        self.end_session(&mut ctx, entry.session_id, evidence);
                    (ErrorCode::Ok, Response::Empty)
                } else {
                    self.apply_request(&mut ctx, req)
                }
            }
        };
        ApplyResult {
            err,
            response,
            triggers: ctx.triggers,
            deleted_ephemerals,
            obituary,
            quota_warnings: ctx.quota_warnings,
        }
    }

    fn apply_request(&mut self, ctx: &mut Ctx<'_>, req: &Request) -> (ErrorCode, Response) {
        match req {
            Request::Multi(ops) => match self.multi(ctx, ops) {
                Ok(results) => (ErrorCode::Ok, Response::Multi(results)),
                Err(e) => (e, Response::Empty),
            },
            Request::Reconfig(r) if self.config.reconfig_enabled => match self.reconfig(ctx, r) {
                Ok((data, stat)) => (ErrorCode::Ok, Response::Data(Some(data), stat)),
                Err(e) => (e, Response::Empty),
            },
            Request::Reconfig(_) => (ErrorCode::ReconfigDisabled, Response::Empty),
            Request::Sync(p) => (ErrorCode::Ok, Response::Path(p.path.clone())),
            // Only the keeper's own cleaner deletes containers (PurgeContainersAndTtl).
            // ZooKeeper 3.8 reads a client's deleteContainer body as a raw path, so the
            // length prefix of a Jute string makes every one invalid: BadArguments, a zxid
            // spent.
            Request::DeleteContainer(_) => (ErrorCode::BadArguments, Response::Empty),
            Request::SetAcl(r) => match self.set_acl(ctx, &r.path, &r.acl, r.version) {
                Ok(stat) => (ErrorCode::Ok, Response::Stat(stat)),
                Err(e) => (e, Response::Empty),
            },
            r if !r.is_write() => self.read(r, ctx.session_id, ctx.ids),
            r => match self.write_op(ctx, r) {
                Ok(out) => (
                    ErrorCode::Ok,
                    match out {
                        OpOut::Path(p) => Response::Path(p),
                        OpOut::Create2(p, s) => Response::Create2(p, s),
                        OpOut::Stat(s) => Response::Stat(s),
                        OpOut::Deleted | OpOut::Checked => Response::Empty,
                    },
                ),
                Err(e) => (e, Response::Empty),
            },
        }
    }

    /// The ops a multi may hold.
    fn write_op(&mut self, ctx: &mut Ctx<'_>, req: &Request) -> Result<OpOut, ErrorCode> {
        match req {
            Request::Create(r) => {
                self.create(ctx, CreateOp::Create, &r.path, &r.data, &r.acl, r.flags, -1)
            }
            Request::Create2(r) => self.create(
                ctx,
                CreateOp::Create2,
                &r.path,
                &r.data,
                &r.acl,
                r.flags,
                -1,
            ),
            Request::CreateContainer(r) => self.create(
                ctx,
                CreateOp::Container,
                &r.path,
                &r.data,
                &r.acl,
                r.flags,
                -1,
            ),
            Request::CreateTtl(r) => {
                self.create(ctx, CreateOp::Ttl, &r.path, &r.data, &r.acl, r.flags, r.ttl)
            }
            Request::Delete(r) => self.delete(ctx, &r.path, r.version).map(|_| OpOut::Deleted),
            Request::SetData(r) => self
                .set_data(ctx, &r.path, &r.data, r.version)
                .map(OpOut::Stat),
            Request::Check(r) => self.check(ctx, &r.path, r.version).map(|_| OpOut::Checked),
            _ => Err(ErrorCode::Unimplemented),
        }
    }

    /// Err only for what fails the whole request in ZooKeeper (its PrepRequestProcessor's
    /// MarshallingError: limits data a quota check cannot read).
    fn multi(&mut self, ctx: &mut Ctx<'_>, ops: &[Request]) -> Result<Vec<MultiResult>, ErrorCode> {
        ctx.undo = Some(Vec::new());
        if !self.quotas.is_empty() {
            ctx.quota_before = Some(QuotaView {
                quotas: self.quotas.clone(),
                nodes: self.nodes.clone(),
            });
        }
        let mut results = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            match self.write_op(ctx, op) {
                Ok(out) => results.push(match out {
                    OpOut::Path(p) => MultiResult::Create(p),
                    // ZooKeeper 3.8 answers create2 inside a multi like a plain create (no
                    // stat), while createContainer and createTTL keep theirs (observed).
                    OpOut::Create2(p, _) if matches!(op, Request::Create2(_)) => {
                        MultiResult::Create(p)
                    }
                    OpOut::Create2(p, s) => MultiResult::Create2(p, s),
                    OpOut::Stat(s) => MultiResult::SetData(s),
                    OpOut::Deleted => MultiResult::Delete,
                    OpOut::Checked => MultiResult::Check,
                }),
                Err(e) => {
                    self.rollback(ctx.undo.take().unwrap_or_default());
                    ctx.triggers.clear();
                    // The checks' warnings stand (ZooKeeper logs them before it gives up); the
                    // counting ones were about changes now undone.
                    ctx.quota_warnings
                        .retain(|w| matches!(w, QuotaWarning::Exceeded { .. }));
                    if e == ErrorCode::MarshallingError {
                        return Err(e);
                    }
                    let mut results = vec![MultiResult::Error(ErrorCode::Ok); i];
                    results.push(MultiResult::Error(e));
                    results.resize(
                        ops.len(),
                        MultiResult::Error(ErrorCode::RuntimeInconsistency),
                    );
                    return Ok(results);
                }
            }
        }
        Ok(results)
    }

    fn rollback(&mut self, undo: Vec<Undo>) {
        for u in undo.into_iter().rev() {
            match u {
                Undo::Inserted(p) => {
                    self.take_node(&p);
                }
                Undo::Removed(p, n) => {
                    // Undone in reverse order: its parent is back already.
                    let _ = self.put_node(p, n);
                }
                Undo::Stat(p, s) => {
                    if let Some(n) = self.nodes.get_mut(&p).map(Arc::make_mut) {
                        n.stat = s;
                    }
                }
                Undo::Data(p, d) => {
                    self.replace_data(&p, d);
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn create(
        &mut self,
        ctx: &mut Ctx<'_>,
        op: CreateOp,
        p: &str,
        data: &Data,
        acl_in: &[Acl],
        flags: i32,
        ttl: i64,
    ) -> Result<OpOut, ErrorCode> {
        let mode = CreateMode::from_i32(flags).ok_or(ErrorCode::BadArguments)?;
        if mode.is_ttl() && !self.config.extended_types_enabled {
            return Err(ErrorCode::Unimplemented);
        }
        if mode.is_ttl() {
            if ttl <= 0 || ttl > MAX_TTL_MS {
                return Err(ErrorCode::BadArguments);
            }
        } else if ttl >= 0 {
            return Err(ErrorCode::BadArguments);
        }
        let owner = match op {
            CreateOp::Container => CONTAINER_OWNER,
            CreateOp::Ttl if mode.is_ttl() => ttl_owner(ttl),
            // createTTL with a non-TTL mode and a negative ttl has no owner encoding.
            CreateOp::Ttl => return Err(ErrorCode::BadArguments),
            CreateOp::Create | CreateOp::Create2 if mode.is_ephemeral() => ctx.session_id,
            CreateOp::Create | CreateOp::Create2 => 0,
        };
        if mode.is_ephemeral() && !self.sessions.contains_key(&ctx.session_id) {
            return Err(ErrorCode::SessionExpired);
        }
        let parent_path = parent_for_write(p)?;
        let acl_fixed = acl::fixup(acl_in, ctx.ids)?;
        let parent = self.nodes.get(parent_path).ok_or(ErrorCode::NoNode)?;
        if !acl::check(&parent.acl, perms::CREATE, ctx.ids) {
            return Err(ErrorCode::NoAuth);
        }
        let full = if mode.is_sequential() {
            // The suffix is the parent's creation counter (stat.cversion as stored).
            format!("{p}{:010}", parent.stat.cversion)
        } else {
            p.to_string()
        };
        path::validate(&full)?;
        if self.nodes.contains_key(&full) {
            return Err(ErrorCode::NodeExists);
        }
        if matches!(parent.kind(), NodeKind::Ephemeral(_)) {
            return Err(ErrorCode::NoChildrenForEphemerals);
        }
        self.check_quota(ctx, &full, data_len(data) as i64, 1)?;
        let parent_path = parent_path.to_string();
        let parent_acl = Arc::clone(&parent.acl);

        // Validated: mutate.
        let zxid = ctx.zxid;
        self.touch_parent(ctx, &parent_path, true);
        let stat = Stat {
            czxid: zxid,
            mzxid: zxid,
            ctime: ctx.time_ms,
            mtime: ctx.time_ms,
            version: 0,
            cversion: 0,
            aversion: 0,
            ephemeral_owner: owner,
            data_length: len_i32(data_len(data)),
            num_children: 0,
            pzxid: zxid,
        };
        // Children usually inherit their parent's ACL: share its copy.
        let acl = if *acl_fixed == *parent_acl {
            parent_acl
        } else {
            acl_fixed.into()
        };
        let node = Node {
            data: data.clone(),
            acl,
            stat: stat.clone(),
            children: BTreeSet::new(),
        };
        // The parent was looked up above.
        let _ = self.put_node(full.clone(), Arc::new(node));
        ctx.keep_undo(|| Undo::Inserted(full.clone()));
        // After the node is in, as ZooKeeper's createNode does it: a new stats node gets the
        // subtree's counts, then the quota over the new node (perhaps just set up) counts it.
        if path::name(&full) == quota::STAT_NODE && parent_path.starts_with(quota::QUOTA_ROOT) {
            self.recount_quota(ctx, &parent_path, &full);
        }
        self.count_in_quota(ctx, &full, data_len(data) as i64, 1);
        ctx.triggers.push(Trigger {
            path: full.clone(),
            event: EventType::NodeCreated,
        });
        ctx.triggers.push(Trigger {
            path: parent_path,
            event: EventType::NodeChildrenChanged,
        });
        Ok(match op {
            CreateOp::Create => OpOut::Path(full),
            _ => OpOut::Create2(full, client_view(&stat)),
        })
    }

    /// Parent bookkeeping for a child created or deleted: pzxid, and on a create the
    /// creation counter (a delete shows in the reported cversion through numChildren).
    fn touch_parent(&mut self, ctx: &mut Ctx<'_>, parent_path: &str, created: bool) {
        if let Some(parent) = self.nodes.get_mut(parent_path).map(Arc::make_mut) {
            ctx.keep_undo(|| Undo::Stat(parent_path.to_string(), parent.stat.clone()));
            if created {
                parent.stat.cversion = parent.stat.cversion.wrapping_add(1);
            }
            parent.stat.pzxid = ctx.zxid;
        }
    }

    // ---- quotas ----

    /// ZooKeeper's checkQuota for a create (`count_diff` 1) or setData of `p`, against the
    /// tree before the request (before the multi). Over a hard limit with enforcement on is
    /// QuotaExceeded; limits or stats it cannot read are MarshallingError then. Anything over
    /// a limit is a warning either way.
    fn check_quota(
        &self,
        ctx: &mut Ctx<'_>,
        p: &str,
        bytes_diff: i64,
        count_diff: i64,
    ) -> Result<(), ErrorCode> {
        let (quotas, nodes) = match &ctx.quota_before {
            Some(v) => (&v.quotas, &v.nodes),
            None => (&self.quotas, &self.nodes),
        };
        let Some(prefix) = max_quota_prefix(quotas, p) else {
            return Ok(());
        };
        let enforce = self.config.enforce_quota;
        let unreadable = if enforce {
            Err(ErrorCode::MarshallingError)
        } else {
            Ok(())
        };
        let limits_path = quota::limit_path(&prefix);
        // Only a limits node named as the trie names it is read (ZooKeeper logs its absence).
        let Some(limits_node) = nodes.get(&limits_path) else {
            return Ok(());
        };
        let Ok(limits) = read_track(&limits_node.data) else {
            ctx.quota_warnings.push(QuotaWarning::UnreadableLimits {
                path: limits_path,
                data: show(&limits_node.data),
            });
            return unreadable;
        };
        let check_count =
            count_diff != 0 && (limits.count() > -1 || limits.count_hard_limit() > -1);
        let check_bytes = bytes_diff != 0 && (limits.bytes() > -1 || limits.byte_hard_limit() > -1);
        if !check_count && !check_bytes {
            return Ok(());
        }
        // A missing or unreadable stats node is reported once, by the counting after the
        // write (`count_in_quota`), unless it refuses the write here.
        let stats_path = quota::stat_path(&prefix);
        let Some(stats_node) = nodes.get(&stats_path) else {
            return Ok(());
        };
        let Ok(stats) = read_track(&stats_node.data) else {
            if enforce {
                ctx.quota_warnings.push(QuotaWarning::UnreadableStats {
                    path: stats_path,
                    data: show(&stats_node.data),
                });
            }
            return unreadable;
        };
        let checks = [
            (
                check_count,
                Limit::Count,
                stats.count().wrapping_add(count_diff),
                limits.count_hard_limit(),
                limits.count(),
            ),
            (
                check_bytes,
                Limit::Bytes,
                stats.bytes().wrapping_add(bytes_diff),
                limits.byte_hard_limit(),
                limits.bytes(),
            ),
        ];
        for (wanted, limit, current, hard_max, soft_max) in checks {
            // A hard limit, when set, replaces the soft one.
            let hard = hard_max > -1;
            let max = if hard { hard_max } else { soft_max };
            if wanted && current > max {
                ctx.quota_warnings.push(QuotaWarning::Exceeded {
                    prefix: prefix.clone(),
                    limit,
                    current,
                    max,
                    hard,
                    refused: hard && enforce,
                });
                if hard && enforce {
                    return Err(ErrorCode::QuotaExceeded);
                }
            }
        }
        Ok(())
    }

    /// ZooKeeper's updateQuotaStat: adds to the stats of the deepest quota over `p`. Only the
    /// data changes (the Stat shows the new length); a missing or unreadable stats node is
    /// left as it is, with a warning.
    fn count_in_quota(&mut self, ctx: &mut Ctx<'_>, p: &str, bytes_diff: i64, count_diff: i64) {
        let Some(prefix) = max_quota_prefix(&self.quotas, p) else {
            return;
        };
        let stats_path = quota::stat_path(&prefix);
        let Some(node) = self.nodes.get(&stats_path) else {
            ctx.quota_warnings
                .push(QuotaWarning::MissingStats { path: stats_path });
            return;
        };
        let Ok(mut stats) = read_track(&node.data) else {
            ctx.quota_warnings.push(QuotaWarning::UnreadableStats {
                path: stats_path,
                data: show(&node.data),
            });
            return;
        };
        stats.add(count_diff, bytes_diff);
        self.set_quota_data(ctx, &stats_path, stats);
    }

    /// A stats node `stats_path` was just created under `quota_parent`: it gets the count and
    /// bytes of the subtree that parent stands for (ZooKeeper's updateQuotaForPath, which
    /// looks the subtree up by the bare rest of the path: "" is the root, and a rest that is
    /// not a node path counts nothing).
    fn recount_quota(&mut self, ctx: &mut Ctx<'_>, quota_parent: &str, stats_path: &str) {
        let rest = quota_parent.get(quota::QUOTA_ROOT.len()..).unwrap_or("");
        let (count, bytes) = self.subtree_counts(if rest.is_empty() { "/" } else { rest });
        self.set_quota_data(ctx, stats_path, StatsTrack::counts(count, bytes));
    }

    fn set_quota_data(&mut self, ctx: &mut Ctx<'_>, p: &str, stats: StatsTrack) {
        let old = self.replace_data(p, Some(stats.to_bytes()));
        ctx.keep_undo(|| Undo::Data(p.to_string(), old));
    }

    /// Nodes and data bytes of the subtree at `p`, itself included; (0, 0) when it is absent.
    fn subtree_counts(&self, p: &str) -> (i64, i64) {
        let Some(node) = self.nodes.get(p) else {
            return (0, 0);
        };
        let prefix = if p == "/" {
            p.to_string()
        } else {
            format!("{p}/")
        };
        let below = self
            .nodes
            .range::<_, String>((
                std::ops::Bound::Included(prefix.clone()),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(k, _)| k.as_str() != p);
        let mut count = 1i64;
        let mut bytes = data_len(&node.data) as i64;
        for (_, n) in below {
            count += 1;
            bytes += data_len(&n.data) as i64;
        }
        (count, bytes)
    }

    fn delete(&mut self, ctx: &mut Ctx<'_>, p: &str, version: i32) -> Result<(), ErrorCode> {
        let parent_path = parent_for_write(p)?;
        if path::is_special(p) {
            return Err(ErrorCode::BadArguments);
        }
        let parent = self.nodes.get(parent_path).ok_or(ErrorCode::NoNode)?;
        if !acl::check(&parent.acl, perms::DELETE, ctx.ids) {
            return Err(ErrorCode::NoAuth);
        }
        let node = self.nodes.get(p).ok_or(ErrorCode::NoNode)?;
        check_version(node.stat.version, version)?;
        if !node.children.is_empty() {
            return Err(ErrorCode::NotEmpty);
        }
        self.remove_leaf(ctx, p, parent_path);
        Ok(())
    }

    /// Deletes a validated childless node: parent bookkeeping, undo and triggers.
    fn remove_leaf(&mut self, ctx: &mut Ctx<'_>, p: &str, parent_path: &str) {
        self.touch_parent(ctx, parent_path, false);
        if let Some(node) = self.take_node(p) {
            // A limits node taken out has already lifted its quota, as in ZooKeeper.
            self.count_in_quota(ctx, p, -(data_len(&node.data) as i64), -1);
            ctx.keep_undo(|| Undo::Removed(p.to_string(), node));
        }
        ctx.triggers.push(Trigger {
            path: p.to_string(),
            event: EventType::NodeDeleted,
        });
        ctx.triggers.push(Trigger {
            path: parent_path.to_string(),
            event: EventType::NodeChildrenChanged,
        });
    }

    fn set_data(
        &mut self,
        ctx: &mut Ctx<'_>,
        p: &str,
        data: &Data,
        version: i32,
    ) -> Result<Stat, ErrorCode> {
        path::validate(p)?;
        let node = self.nodes.get(p).ok_or(ErrorCode::NoNode)?;
        if !acl::check(&node.acl, perms::WRITE, ctx.ids) {
            return Err(ErrorCode::NoAuth);
        }
        // ZooKeeper checks quotas before the version.
        let bytes_diff = data_len(data) as i64 - data_len(&node.data) as i64;
        self.check_quota(ctx, p, bytes_diff, 0)?;
        let new_version = check_version(node.stat.version, version)?;
        ctx.keep_undo(|| Undo::Stat(p.to_string(), node.stat.clone()));
        ctx.keep_undo(|| Undo::Data(p.to_string(), node.data.clone()));
        // A new node rather than the old one changed in place: while a snapshot view shares
        // the old one, changing it would first copy its data only to throw that copy away.
        let updated = Node {
            data: data.clone(),
            acl: Arc::clone(&node.acl),
            stat: Stat {
                version: new_version,
                mzxid: ctx.zxid,
                mtime: ctx.time_ms,
                data_length: len_i32(data_len(data)),
                ..node.stat.clone()
            },
            children: node.children.clone(),
        };
        self.data_size =
            self.data_size.saturating_sub(data_len(&node.data) as u64) + data_len(data) as u64;
        let shown = updated.client_stat();
        if let Some(slot) = self.nodes.get_mut(p) {
            *slot = Arc::new(updated);
        }
        // Even with no change in size: ZooKeeper rewrites the stats then too.
        self.count_in_quota(ctx, p, bytes_diff, 0);
        ctx.triggers.push(Trigger {
            path: p.to_string(),
            event: EventType::NodeDataChanged,
        });
        Ok(shown)
    }

    /// A membership change: the next membership, computed from the one `/zookeeper/config`
    /// holds, is written there at this zxid (its version). Standalone (no membership in the
    /// node) answers Unimplemented, as a standalone ZooKeeper does. The keeper turns the
    /// committed node into consensus membership changes; this only decides and records it.
    fn reconfig(
        &mut self,
        ctx: &mut Ctx<'_>,
        req: &corral_proto::ReconfigRequest,
    ) -> Result<(Vec<u8>, Stat), ErrorCode> {
        let node = self
            .nodes
            .get(reconfig::CONFIG_NODE)
            .ok_or(ErrorCode::Unimplemented)?;
        let current = node
            .data
            .as_deref()
            .and_then(ServerConfig::parse)
            .ok_or(ErrorCode::Unimplemented)?;
        let next = current.next(req, ctx.zxid)?;
        // After the arguments, as ZooKeeper checks: the node's ACL (world read-only unless
        // changed), so in practice the super user only.
        if !acl::check(&node.acl, perms::WRITE, ctx.ids) {
            return Err(ErrorCode::NoAuth);
        }
        let data = next.render();
        let old_len = data_len(&node.data) as u64;
        let updated = Node {
            data: Some(data.clone()),
            acl: Arc::clone(&node.acl),
            stat: Stat {
                // ZooKeeper writes the node with a setData of version -1, which it stores.
                version: -1,
                mzxid: ctx.zxid,
                mtime: ctx.time_ms,
                data_length: len_i32(data.len()),
                ..node.stat.clone()
            },
            children: node.children.clone(),
        };
        self.data_size = self.data_size.saturating_sub(old_len) + data.len() as u64;
        let shown = updated.client_stat();
        if let Some(slot) = self.nodes.get_mut(reconfig::CONFIG_NODE) {
            *slot = Arc::new(updated);
        }
        ctx.triggers.push(Trigger {
            path: reconfig::CONFIG_NODE.to_string(),
            event: EventType::NodeDataChanged,
        });
        Ok((data, shown))
    }

    fn set_acl(
        &mut self,
        ctx: &mut Ctx<'_>,
        p: &str,
        acl_in: &[Acl],
        version: i32,
    ) -> Result<Stat, ErrorCode> {
        path::validate(p)?;
        let acl_fixed = acl::fixup(acl_in, ctx.ids)?;
        let node = self
            .nodes
            .get_mut(p)
            .map(Arc::make_mut)
            .ok_or(ErrorCode::NoNode)?;
        if !acl::check(&node.acl, perms::ADMIN, ctx.ids) {
            return Err(ErrorCode::NoAuth);
        }
        node.stat.aversion = check_version(node.stat.aversion, version)?;
        node.acl = acl_fixed.into();
        Ok(node.client_stat())
    }

    fn check(&self, ctx: &Ctx<'_>, p: &str, version: i32) -> Result<(), ErrorCode> {
        path::validate(p)?;
        let node = self.nodes.get(p).ok_or(ErrorCode::NoNode)?;
        if !acl::check(&node.acl, perms::READ, ctx.ids) {
            return Err(ErrorCode::NoAuth);
        }
        check_version(node.stat.version, version)?;
        Ok(())
    }

    /// Ends a session: its ephemerals deleted (each a leaf), its record dropped.
    /// Ends a live session: its ephemerals go, and its obituary joins the ring. A session
    /// already gone leaves no second obituary.
    fn end_session(
        &mut self,
        ctx: &mut Ctx<'_>,
        session_id: i64,
        evidence: Evidence,
    ) -> (Vec<String>, Option<Obituary>) {
        let Some(info) = self.sessions.get(&session_id) else {
            return (Vec::new(), None);
        };
        let (created_ms, timeout_ms) = (info.created_ms, info.timeout_ms);
        let deleted = self.kill_session(ctx, session_id);
        let ob = Obituary {
            session_id,
            zxid: ctx.zxid,
            ended_ms: ctx.time_ms,
            created_ms,
            timeout_ms,
            evidence: evidence.bounded(),
            ephemerals: deleted.iter().take(EPHEMERALS_LISTED).cloned().collect(),
            ephemerals_deleted: u32::try_from(deleted.len()).unwrap_or(u32::MAX),
        };
        if self.config.obituaries_kept > 0 {
            if self.obituaries.len() >= self.config.obituaries_kept {
                self.obituaries.pop_front();
            }
            self.obituaries.push_back(ob.clone());
        }
        (deleted, Some(ob))
    }

    fn kill_session(&mut self, ctx: &mut Ctx<'_>, session_id: i64) -> Vec<String> {
        let Some(info) = self.sessions.get(&session_id) else {
            return Vec::new();
        };
        let paths: Vec<String> = info.ephemerals.iter().cloned().collect();
        for p in &paths {
            // Ephemerals never have children, so each one is a leaf.
            if let Some(parent_path) = path::parent(p) {
                self.remove_leaf(ctx, p, parent_path);
            }
        }
        self.sessions.remove(&session_id);
        paths
    }

    fn purge(&mut self, ctx: &mut Ctx<'_>, candidates: &[String]) -> Vec<String> {
        let mut purged = Vec::new();
        for p in candidates {
            if self.eligible_for_purge(p, ctx.time_ms) {
                if let Some(parent_path) = path::parent(p) {
                    self.remove_leaf(ctx, p, parent_path);
                    purged.push(p.clone());
                }
            }
        }
        purged
    }

    /// A childless container that once had a child, or a childless
    /// TTL node not modified for longer than its TTL.
    fn eligible_for_purge(&self, p: &str, now_ms: i64) -> bool {
        let Some(n) = self.nodes.get(p) else {
            return false;
        };
        if !n.children.is_empty() || path::is_special(p) {
            return false;
        }
        match n.kind() {
            NodeKind::Container => n.stat.cversion > 0,
            NodeKind::Ttl(ttl) => ttl != 0 && now_ms.saturating_sub(n.stat.mtime) > ttl,
            _ => false,
        }
    }

    /// Nodes the leader should propose in [`EntryOp::PurgeContainersAndTtl`] at `now_ms`:
    /// empty containers that once had a child and empty TTL nodes idle for longer than
    /// their TTL.
    pub fn container_and_ttl_candidates(&self, now_ms: i64) -> Vec<String> {
        self.containers
            .iter()
            .chain(&self.ttls)
            .filter(|p| self.eligible_for_purge(p, now_ms))
            .cloned()
            .collect()
    }

    /// Answers a read request (exists, getData, getACL, getChildren, getChildren2,
    /// getEphemerals, getAllChildrenNumber, multiRead) for a session with `identities`.
    /// Watch registration is the caller's business.
    pub fn read(&self, req: &Request, session_id: i64, identities: &[Id]) -> (ErrorCode, Response) {
        let out = match req {
            Request::Exists(r) => {
                if r.path.contains('\0') {
                    Err(ErrorCode::BadArguments)
                } else {
                    self.read_node(&r.path)
                        .map(|n| Response::Stat(n.client_stat()))
                        .ok_or(ErrorCode::NoNode)
                }
            }
            Request::GetData(r) => self
                .readable(&r.path, perms::READ, identities)
                .map(|n| Response::Data(n.data.clone(), n.client_stat())),
            Request::GetChildren(r) => self
                .readable(&r.path, perms::READ, identities)
                .map(|n| Response::Children(child_list(n))),
            Request::GetChildren2(r) => self
                .readable(&r.path, perms::READ, identities)
                .map(|n| Response::Children2(child_list(n), n.client_stat())),
            Request::GetAcl(r) => self
                .readable(&r.path, perms::READ | perms::ADMIN, identities)
                .map(|n| {
                    let acl = if acl::check(&n.acl, perms::ADMIN, identities) {
                        n.acl.to_vec()
                    } else {
                        acl::redact_digests(&n.acl)
                    };
                    Response::Acl(acl, n.client_stat())
                }),
            Request::GetEphemerals(r) => Ok(Response::Paths(
                self.ephemerals_with_prefix(session_id, &r.path),
            )),
            Request::GetAllChildrenNumber(r) => self
                .readable(&r.path, perms::READ, identities)
                .map(|_| Response::Count(len_i32(self.descendant_count(&r.path)))),
            Request::MultiRead(ops) => Ok(Response::Multi(
                ops.iter()
                    .map(|op| match self.read(op, session_id, identities) {
                        (ErrorCode::Ok, Response::Children(c)) => MultiResult::GetChildren(c),
                        (ErrorCode::Ok, Response::Data(d, s))
                            if matches!(op, Request::GetData(_)) =>
                        {
                            MultiResult::GetData(d, s)
                        }
                        (ErrorCode::Ok, _) => MultiResult::Error(ErrorCode::Unimplemented),
                        (e, _) => MultiResult::Error(e),
                    })
                    .collect(),
            )),
            Request::Sync(r) => Ok(Response::Path(r.path.clone())),
            _ => Err(ErrorCode::Unimplemented),
        };
        match out {
            Ok(resp) => (ErrorCode::Ok, resp),
            Err(e) => (e, Response::Empty),
        }
    }

    /// Reads do not validate paths, and ZooKeeper's tree also knows the root as "" — so
    /// `exists("")` answers with the root's stat there; match it.
    fn read_node(&self, p: &str) -> Option<&Node> {
        self.nodes
            .get(if p.is_empty() { "/" } else { p })
            .map(|n| &**n)
    }

    fn readable(&self, p: &str, perm: i32, identities: &[Id]) -> Result<&Node, ErrorCode> {
        let n = self.read_node(p).ok_or(ErrorCode::NoNode)?;
        if !acl::check(&n.acl, perm, identities) {
            return Err(ErrorCode::NoAuth);
        }
        Ok(n)
    }

    /// getEphemerals: the session's ephemerals whose path starts with `prefix`; a blank
    /// prefix or "/" means all of them.
    pub fn ephemerals_with_prefix(&self, session_id: i64, prefix: &str) -> Vec<String> {
        let Some(s) = self.sessions.get(&session_id) else {
            return Vec::new();
        };
        let trimmed = prefix.trim_matches(|c: char| c <= ' ');
        s.ephemerals
            .iter()
            .filter(|p| trimmed.is_empty() || trimmed == "/" || p.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// getAllChildrenNumber: every node below `p` (not `p` itself).
    pub fn descendant_count(&self, p: &str) -> usize {
        let prefix = if p.ends_with('/') {
            p.to_string()
        } else {
            format!("{p}/")
        };
        self.nodes
            .range::<_, String>((
                std::ops::Bound::Included(prefix.clone()),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(k, _)| k.as_str() != p)
            .count()
    }

    // ---- primitives: the only code that inserts or removes nodes, keeping indexes right ----

    /// Inserts `node` at `p` under its parent, keeping the indexes and the parent's child list
    /// right. Without a parent (only a snapshot being loaded can ask for that) nothing changes.
    fn put_node(&mut self, p: String, node: Arc<Node>) -> Result<(), Inconsistency> {
        self.data_size += (p.len() + data_len(&node.data)) as u64;
        match node.kind() {
            NodeKind::Ephemeral(s) => {
                if let Some(info) = self.sessions.get_mut(&s) {
                    info.ephemerals.insert(p.clone());
                }
            }
            NodeKind::Container => {
                self.containers.insert(p.clone());
            }
            NodeKind::Ttl(_) => {
                self.ttls.insert(p.clone());
            }
            NodeKind::Persistent => {}
        }
        let parent_found = match path::parent(&p) {
            None => true,
            Some(pp) => match self.nodes.get_mut(pp).map(Arc::make_mut) {
                Some(parent) => {
                    parent.children.insert(path::name(&p).to_string());
                    parent.stat.num_children = len_i32(parent.children.len());
                    true
                }
                None => false,
            },
        };
        if !parent_found {
            return Err(Inconsistency::NoParent(p));
        }
        if let Some(limited) = limited_by(&p) {
            *self.quotas.entry(limited).or_insert(0) += 1;
        }
        self.nodes.insert(p, node);
        Ok(())
    }

    fn take_node(&mut self, p: &str) -> Option<Arc<Node>> {
        let node = self.nodes.remove(p)?;
        self.data_size = self
            .data_size
            .saturating_sub((p.len() + data_len(&node.data)) as u64);
        if let Some(limited) = limited_by(p) {
            if let Some(n) = self.quotas.get_mut(&limited) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.quotas.remove(&limited);
                }
            }
        }
        match node.kind() {
            NodeKind::Ephemeral(s) => {
                if let Some(info) = self.sessions.get_mut(&s) {
                    info.ephemerals.remove(p);
                }
            }
            NodeKind::Container => {
                self.containers.remove(p);
            }
            NodeKind::Ttl(_) => {
                self.ttls.remove(p);
            }
            NodeKind::Persistent => {}
        }
        if let Some(parent) =
            path::parent(p).and_then(|pp| self.nodes.get_mut(pp).map(Arc::make_mut))
        {
            parent.children.remove(path::name(p));
            parent.stat.num_children = len_i32(parent.children.len());
        }
        Some(node)
    }

    /// Swaps a node's data, keeping data_length and the size estimate right; returns the old.
    fn replace_data(&mut self, p: &str, data: Data) -> Data {
        let n = self.nodes.get_mut(p).map(Arc::make_mut)?;
        self.data_size =
            self.data_size.saturating_sub(data_len(&n.data) as u64) + data_len(&data) as u64;
        n.stat.data_length = len_i32(data_len(&data));
        std::mem::replace(&mut n.data, data)
    }

    /// An empty tree to be filled by [`DataTree::insert_restored`] from a snapshot.
    pub(crate) fn restore_start(
        config: TreeConfig,
        sessions: Vec<(i64, i32, Vec<u8>)>,
        last_zxid: i64,
    ) -> DataTree {
        let mut t = DataTree {
            config,
            nodes: BTreeMap::new(),
            sessions: BTreeMap::new(),
            last_zxid,
            obituaries: Vector::new(),
            data_size: 0,
            containers: BTreeSet::new(),
            ttls: BTreeSet::new(),
            quotas: BTreeMap::new(),
        };
        for (id, timeout_ms, passwd) in sessions {
            t.sessions.insert(
                id,
                SessionInfo {
                    timeout_ms,
                    passwd,
                    created_ms: 0,
                    ephemerals: BTreeSet::new(),
                },
            );
        }
        t
    }

    /// Checks one snapshot node on its own, before it is built. Nodes must come in strictly
    /// increasing path order, root first; `prev` holds the previous path (empty before the
    /// root) and is advanced. That order rules out duplicates and puts every parent (a
    /// prefix of its children's paths) before its children, so inserting each node costs one
    /// parent lookup and one insert ([`DataTree::insert_restored`]).
    pub(crate) fn check_restored_node(
        prev: &mut String,
        p: &str,
        data: &Data,
        stat: &Stat,
    ) -> Result<(), Inconsistency> {
        if prev.is_empty() {
            if p != "/" {
                return Err(Inconsistency::RootNotFirst);
            }
        } else {
            if p <= prev.as_str() {
                return Err(Inconsistency::OutOfOrder(p.to_string()));
            }
            path::validate(p).map_err(|_| Inconsistency::InvalidPath(p.to_string()))?;
        }
        if stat.data_length != len_i32(data_len(data)) {
            return Err(Inconsistency::DataLength(p.to_string()));
        }
        prev.clear();
        prev.push_str(p);
        Ok(())
    }

    /// The node a checked snapshot record becomes.
    pub(crate) fn restored_node(data: Data, acl: Arc<[Acl]>, stat: Stat) -> Arc<Node> {
        Arc::new(Node {
            data,
            acl,
            stat,
            children: BTreeSet::new(),
        })
    }

    /// Adds one snapshot node, checked by [`DataTree::check_restored_node`] in snapshot
    /// order: its parent is already here. Start-up of a million-node keeper is dominated by
    /// this.
    pub(crate) fn insert_restored(
        &mut self,
        p: String,
        node: Arc<Node>,
    ) -> Result<(), Inconsistency> {
        self.put_node(p, node)
    }

    /// Checks what the nodes could not check one by one: a root exists and every
    /// numChildren matches the children restored.
    pub(crate) fn restore_finish(self) -> Result<DataTree, Inconsistency> {
        if !self.nodes.contains_key("/") {
            return Err(Inconsistency::NoRoot);
        }
        for (p, n) in &self.nodes {
            if n.stat.num_children != len_i32(n.children.len()) {
                return Err(Inconsistency::NumChildren(p.clone()));
            }
        }
        Ok(self)
    }

    pub fn last_zxid(&self) -> i64 {
        self.last_zxid
    }
    pub fn node(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path).map(|n| &**n)
    }
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }
    pub fn session(&self, id: i64) -> Option<&SessionInfo> {
        self.sessions.get(&id)
    }
    pub fn sessions(&self) -> impl Iterator<Item = (&i64, &SessionInfo)> {
        self.sessions.iter()
    }
    pub fn config(&self) -> &TreeConfig {
        &self.config
    }
    /// Replaces the configuration (e.g. from zoo.cfg after loading a snapshot). Only for
    /// values every replica sets identically; /zookeeper/config's data is left alone, as it
    /// is replicated state.
    pub fn set_config(&mut self, config: TreeConfig) {
        self.config = config;
        let excess = self
            .obituaries
            .len()
            .saturating_sub(self.config.obituaries_kept);
        self.obituaries = self.obituaries.skip(excess);
    }
    /// The latest sessions' ends, oldest first.
    pub fn obituaries(&self) -> impl DoubleEndedIterator<Item = &Obituary> + ExactSizeIterator {
        self.obituaries.iter()
    }
    /// Snapshot restore: sessions' creation times and the obituaries, as read.
    pub(crate) fn restore_obituaries(
        &mut self,
        created: Vec<(i64, i64)>,
        obituaries: Vec<Obituary>,
    ) {
        for (id, ms) in created {
            if let Some(s) = self.sessions.get_mut(&id) {
                s.created_ms = ms;
            }
        }
        // Kept whole: the reader's configuration, set after, decides how many stay.
        self.obituaries = obituaries.into_iter().collect();
    }
    /// Every node in path order (snapshot writers, 4lw dumps).
    pub fn nodes(&self) -> impl Iterator<Item = (&String, &Node)> {
        self.nodes.iter().map(|(p, n)| (p, &**n))
    }
    /// ZooKeeper's approximateDataSize: the sum of path and data lengths of every node.
    pub fn approximate_data_size(&self) -> u64 {
        self.data_size
    }
    /// Number of ephemeral nodes owned by any session.
    pub fn ephemeral_count(&self) -> usize {
        self.sessions.values().map(|s| s.ephemerals.len()).sum()
    }
    /// Number of ephemerals owned by `session_id` (0 for an unknown session).
    pub fn session_ephemeral_count(&self, session_id: i64) -> usize {
        self.sessions
            .get(&session_id)
            .map_or(0, |s| s.ephemerals.len())
    }
}

/// The path a limits node at `p` puts under quota.
fn limited_by(p: &str) -> Option<String> {
    if path::name(p) != quota::LIMIT_NODE {
        return None;
    }
    quota::limited_path(path::parent(p)?)
}

/// ZooKeeper's getMaxPrefixWithQuota: the deepest path under quota that is `p` or one of its
/// ancestors, compared component by component; never the root.
fn max_quota_prefix(quotas: &BTreeMap<String, u32>, p: &str) -> Option<String> {
    if quotas.is_empty() {
        return None;
    }
    let components: Vec<&str> = quota::trie_components(p).collect();
    (1..=components.len()).rev().find_map(|k| {
        let key = format!("/{}", components[..k].join("/"));
        quotas.contains_key(&key).then_some(key)
    })
}

/// Quota node data as ZooKeeper reads it; null data does not read (ZooKeeper throws on it).
fn read_track(d: &Data) -> Result<StatsTrack, quota::Unparseable> {
    StatsTrack::parse(d.as_deref().ok_or(quota::Unparseable)?)
}

fn show(d: &Data) -> String {
    d.as_deref().map_or_else(
        || "null".into(),
        |b| String::from_utf8_lossy(b).into_owned(),
    )
}

fn child_list(n: &Node) -> Vec<String> {
    n.children.iter().cloned().collect()
}

/// Which create opcode a request came with; the opcode, not the flags, decides container and
/// TTL ownership, as in ZooKeeper.
#[derive(Clone, Copy)]
enum CreateOp {
    Create,
    Create2,
    Container,
    Ttl,
}
