//! ZooKeeper's data tree as its own restore builds it: a snapshot loaded, then the logged
//! transactions after it replayed with ZooKeeper's rules, which make replay idempotent for
//! a fuzzy snapshot (a create of a node that exists or a delete of one that does not is
//! skipped, but the parent's cversion and pzxid still move forward; setData and setACL
//! take their versions from the log). Quota stat nodes are recomputed on load and kept up
//! to date as ZooKeeper 3.8 does. Nothing here writes: the result goes to [`super::write`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use corral_proto::{open_acl_unsafe, read_acl_unsafe, Acl};

use super::files::{op, Snapshot, StatPersisted, Txn, TxnHeader};
use super::ImportError;
use quota::{normalise, LIMIT_NODE, QUOTA_ROOT, STAT_NODE};

mod quota;

/// ephemeralOwner of a container node.
const CONTAINER_OWNER: i64 = i64::MIN;
/// High byte of a TTL node's ephemeralOwner.
const TTL_HIGH_BYTE: u64 = 0xFF00_0000_0000_0000;

pub(crate) struct ZNode {
    pub data: Option<Vec<u8>>,
    pub acl: Arc<[Acl]>,
    pub stat: StatPersisted,
}

/// What a ZooKeeper server holds after loading its files.
pub(crate) struct ZkTree {
    /// Every znode by path; the root is "/" (ZooKeeper also knows it as "").
    pub nodes: BTreeMap<String, ZNode>,
    /// Session id and timeout in ms.
    pub sessions: BTreeMap<i64, i32>,
    /// The zxid of the snapshot, then of the last transaction replayed.
    pub last_zxid: i64,
    /// Paths that have a quota (ZooKeeper's PathTrie), normalised to "/a/b".
    quota_paths: BTreeSet<String>,
    /// One shared copy of each distinct ACL, as ZooKeeper's ACL cache keeps them.
    acls: HashMap<Vec<Acl>, Arc<[Acl]>>,
    /// ZooKeeper's ACL cache numbering: the id of each list, and the last id given. A
    /// replayed create or setACL numbers a list it has not seen as ZooKeeper did when it
    /// logged it, which is how a fuzzy snapshot's node that refers to a list added to the
    /// cache after the cache was written gets its ACL back.
    acl_ids: HashMap<Vec<Acl>, i64>,
    acl_by_id: HashMap<i64, Arc<[Acl]>>,
    acl_index: i64,
    /// Snapshot nodes whose ACL id was not in the snapshot's cache (yet).
    pending_acl: HashMap<String, i64>,
    /// The ephemerals of each owning session.
    ephemerals: HashMap<i64, BTreeSet<String>>,
    /// Transactions replayed.
    pub replayed: u64,
}

fn parent_of(path: &str) -> Option<&str> {
    match path.rfind('/') {
        Some(0) if path.len() > 1 => Some("/"),
        Some(0) | None => None,
        Some(i) => Some(&path[..i]),
    }
}

fn child_name(path: &str) -> &str {
    path.rfind('/').map_or(path, |i| &path[i + 1..])
}

impl ZkTree {
    /// The tree of a ZooKeeper that has never written a snapshot: `/`, `/zookeeper`,
    /// `/zookeeper/quota` and `/zookeeper/config` (readable by anyone, aversion -1).
    pub fn empty() -> ZkTree {
        let mut t = ZkTree {
            nodes: BTreeMap::new(),
            sessions: BTreeMap::new(),
            last_zxid: 0,
            quota_paths: BTreeSet::new(),
            acls: HashMap::new(),
            acl_ids: HashMap::new(),
            acl_by_id: HashMap::new(),
            acl_index: 0,
            pending_acl: HashMap::new(),
            ephemerals: HashMap::new(),
            replayed: 0,
        };
        let open = t.intern(open_acl_unsafe());
        for p in ["/", "/zookeeper", QUOTA_ROOT] {
            t.nodes.insert(
                p.to_string(),
                ZNode {
                    data: Some(Vec::new()),
                    acl: Arc::clone(&open),
                    stat: StatPersisted::default(),
                },
            );
        }
        let read = t.intern(read_acl_unsafe());
        t.nodes.insert(
            "/zookeeper/config".to_string(),
            ZNode {
                data: Some(Vec::new()),
                acl: read,
                stat: StatPersisted {
                    aversion: -1,
                    ..StatPersisted::default()
                },
            },
        );
        t
    }

    fn intern(&mut self, acl: Vec<Acl>) -> Arc<[Acl]> {
        if let Some(a) = self.acls.get(&acl) {
            return Arc::clone(a);
        }
        let a: Arc<[Acl]> = acl.clone().into();
        self.acls.insert(acl, Arc::clone(&a));
        a
    }

    /// ZooKeeper's convertAcls: the list's id, a new one if it was never seen.
    fn convert_acls(&mut self, acl: &[Acl]) -> Arc<[Acl]> {
        let shared = self.intern(acl.to_vec());
        if !self.acl_ids.contains_key(acl) {
            self.acl_index += 1;
            self.acl_ids.insert(acl.to_vec(), self.acl_index);
            self.acl_by_id.insert(self.acl_index, Arc::clone(&shared));
        }
        shared
    }

    /// Gives the snapshot's nodes whose ACL id was missing from its cache the list the
    /// replay numbered with that id. One still unknown is an error, naming the node.
    pub fn resolve_pending_acls(&mut self, file: &Path) -> Result<(), ImportError> {
        let mut pending: Vec<(String, i64)> = self.pending_acl.drain().collect();
        pending.sort();
        for (path, id) in pending {
            let Some(node) = self.nodes.get_mut(&path) else {
                continue;
            };
            match self.acl_by_id.get(&id) {
                Some(acl) => node.acl = Arc::clone(acl),
                None => {
                    return Err(ImportError::Inconsistent {
                        file: file.to_path_buf(),
                        what: format!(
                            "{path:?} refers to ACL {id}, which neither the snapshot's ACL \
                             cache nor the transactions after it define"
                        ),
                    })
                }
            }
        }
        Ok(())
    }

    /// Loads a parsed snapshot whose name says `zxid`, as ZooKeeper's DataTree.deserialize
    /// does, quota stats included.
    pub fn from_snapshot(file: &Path, snap: Snapshot, zxid: i64) -> Result<ZkTree, ImportError> {
        let mut t = ZkTree::empty();
        t.nodes.clear();
        t.last_zxid = zxid;
        t.sessions = snap.sessions.into_iter().collect();
        let mut cache: HashMap<i64, Arc<[Acl]>> = HashMap::new();
        for (id, acl) in snap.acls {
            let a = t.intern(acl.clone());
            t.acl_index = t.acl_index.max(id);
            t.acl_ids.insert(acl, id);
            t.acl_by_id.insert(id, Arc::clone(&a));
            cache.insert(id, a);
        }
        // Stands in for a list the replay defines (see `resolve_pending_acls`).
        let unresolved: Arc<[Acl]> = Vec::new().into();
        let open = t.intern(open_acl_unsafe());
        let bad = |what: String| ImportError::Inconsistent {
            file: file.to_path_buf(),
            what,
        };
        for n in snap.nodes {
            let path = if n.path.is_empty() {
                "/".to_string()
            } else {
                n.path
            };
            let acl = match n.acl_ref {
                -1 => Arc::clone(&open),
                id => match cache.get(&id) {
                    Some(acl) => Arc::clone(acl),
                    None => {
                        // A node created while the snapshot was written, with a list added
                        // to the cache after the cache was: ZooKeeper keeps the id, and the
                        // replayed create numbers the list again.
                        t.pending_acl.insert(path.clone(), id);
                        Arc::clone(&unresolved)
                    }
                },
            };
            match parent_of(&path) {
                None if path == "/" => {}
                None => return Err(bad(format!("bad node path {path:?}"))),
                Some(p) if t.nodes.contains_key(p) => {}
                Some(p) => return Err(bad(format!("{path:?} comes before its parent {p:?}"))),
            }
            if t.nodes.contains_key(&path) {
                return Err(bad(format!("{path:?} appears twice")));
            }
            if is_session_owned(n.stat.ephemeral_owner) {
                t.ephemerals
                    .entry(n.stat.ephemeral_owner)
                    .or_default()
                    .insert(path.clone());
            }
            t.nodes.insert(
                path,
                ZNode {
                    data: n.data,
                    acl,
                    stat: n.stat,
                },
            );
        }
        if !t.nodes.contains_key("/") {
            return Err(bad("no root node".into()));
        }
        t.setup_quotas();
        Ok(t)
    }

    /// Applies one logged transaction after the snapshot, as ZooKeeper's restore does;
    /// failures that a fuzzy snapshot explains (node exists, no node) are skipped.
    pub fn replay(&mut self, hdr: &TxnHeader, txn: &Txn) {
        match txn {
            Txn::CreateSession { timeout } => {
                self.sessions.insert(hdr.client_id, *timeout);
            }
            Txn::CloseSession { paths } => {
                self.sessions.remove(&hdr.client_id);
                self.kill_session(hdr.client_id, hdr.zxid, paths.as_deref());
            }
            _ => {
                self.apply(hdr.kind, hdr, txn);
            }
        }
        self.replayed += 1;
        if hdr.zxid > self.last_zxid {
            self.last_zxid = hdr.zxid;
        }
    }

    /// One (sub-)transaction; true when it succeeded.
    fn apply(&mut self, kind: i32, hdr: &TxnHeader, txn: &Txn) -> bool {
        match txn {
            Txn::Create {
                path,
                data,
                acl,
                ephemeral,
                parent_cversion,
            } => {
                let owner = if *ephemeral { hdr.client_id } else { 0 };
                let ok = self.create(path, data, acl, owner, *parent_cversion, hdr);
                if !ok && kind == op::CREATE {
                    // A node deleted and created again by another session while the
                    // snapshot was written: the parent still gets the create's cversion.
                    if let Some(parent) = parent_of(path) {
                        self.set_cversion_pzxid(parent, *parent_cversion, hdr.zxid);
                    }
                }
                ok
            }
            Txn::CreateContainer {
                path,
                data,
                acl,
                parent_cversion,
            } => self.create(path, data, acl, CONTAINER_OWNER, *parent_cversion, hdr),
            Txn::CreateTtl {
                path,
                data,
                acl,
                parent_cversion,
                ttl,
            } => {
                let owner = (TTL_HIGH_BYTE | (*ttl as u64 & !TTL_HIGH_BYTE)) as i64;
                self.create(path, data, acl, owner, *parent_cversion, hdr)
            }
            Txn::Delete { path } => self.delete(path, hdr.zxid),
            Txn::SetData {
                path,
                data,
                version,
            } => self.set_data(path, data, *version, hdr),
            Txn::SetAcl { path, acl, version } => {
                let acl = self.convert_acls(acl);
                match self.nodes.get_mut(path.as_str()) {
                    Some(n) => {
                        n.stat.aversion = *version;
                        n.acl = acl;
                        self.pending_acl.remove(path.as_str());
                        true
                    }
                    None => false,
                }
            }
            Txn::Check | Txn::Error => true,
            Txn::Multi(subs) => {
                // A multi that failed is logged with error sub-txns; then nothing of it
                // applies.
                if subs.iter().any(|(k, _)| *k == op::ERROR) {
                    return false;
                }
                let mut ok = true;
                for (k, sub) in subs {
                    ok &= self.apply(*k, hdr, sub);
                }
                ok
            }
            Txn::CreateSession { .. } | Txn::CloseSession { .. } => false,
        }
    }

    fn create(
        &mut self,
        path: &str,
        data: &Option<Vec<u8>>,
        acl: &[Acl],
        owner: i64,
        parent_cversion: i32,
        hdr: &TxnHeader,
    ) -> bool {
        let Some(parent_path) = parent_of(path) else {
            return false;
        };
        if !self.nodes.contains_key(parent_path) {
            return false;
        }
        // Numbered before the existence check, as ZooKeeper's createNode does.
        let acl = self.convert_acls(acl);
        if self.nodes.contains_key(path) {
            return false;
        }
        self.pending_acl.remove(path);
        self.set_cversion_pzxid(parent_path, parent_cversion, hdr.zxid);
        if is_session_owned(owner) {
            self.ephemerals
                .entry(owner)
                .or_default()
                .insert(path.to_string());
        }
        self.nodes.insert(
            path.to_string(),
            ZNode {
                data: data.clone(),
                acl,
                stat: StatPersisted {
                    czxid: hdr.zxid,
                    mzxid: hdr.zxid,
                    ctime: hdr.time,
                    mtime: hdr.time,
                    version: 0,
                    cversion: 0,
                    aversion: 0,
                    ephemeral_owner: owner,
                    pzxid: hdr.zxid,
                },
            },
        );
        if let Some(real) = parent_path.strip_prefix(QUOTA_ROOT) {
            let real = real.to_string();
            match child_name(path) {
                LIMIT_NODE => {
                    self.quota_paths.insert(normalise(&real));
                }
                STAT_NODE => self.recount_quota(&real),
                _ => {}
            }
        }
        if let Some(prefix) = self.quota_prefix(path) {
            let bytes = data.as_ref().map_or(0, |d| d.len() as i64);
            self.update_quota_stat(&prefix, bytes, 1);
        }
        true
    }

    fn delete(&mut self, path: &str, zxid: i64) -> bool {
        let Some(parent_path) = parent_of(path) else {
            return false;
        };
        // Even when the child is gone already (deleted while the snapshot was written),
        // the parent's pzxid moves forward.
        match self.nodes.get_mut(parent_path) {
            Some(parent) => {
                if zxid > parent.stat.pzxid {
                    parent.stat.pzxid = zxid;
                }
            }
            None => return false,
        }
        let Some(node) = self.nodes.remove(path) else {
            return false;
        };
        if let Some(set) = self.ephemerals.get_mut(&node.stat.ephemeral_owner) {
            set.remove(path);
        }
        if parent_path.starts_with("/zookeeper") && child_name(path) == LIMIT_NODE {
            let real = parent_path.get(QUOTA_ROOT.len()..).unwrap_or_default();
            self.quota_paths.remove(&normalise(real));
        }
        if let Some(prefix) = self.quota_prefix(path) {
            let bytes = node.data.as_ref().map_or(0, |d| d.len() as i64);
            self.update_quota_stat(&prefix, -bytes, -1);
        }
        true
    }

    fn set_data(
        &mut self,
        path: &str,
        data: &Option<Vec<u8>>,
        version: i32,
        hdr: &TxnHeader,
    ) -> bool {
        let Some(n) = self.nodes.get_mut(path) else {
            return false;
        };
        let old = n.data.as_ref().map_or(0, |d| d.len() as i64);
        n.data = data.clone();
        n.stat.mtime = hdr.time;
        n.stat.mzxid = hdr.zxid;
        n.stat.version = version;
        if let Some(prefix) = self.quota_prefix(path) {
            let new = data.as_ref().map_or(0, |d| d.len() as i64);
            self.update_quota_stat(&prefix, new - old, 0);
        }
        true
    }

    /// Raises a parent's cversion (-1: by one) and pzxid; never lowers them, since
    /// replaying a create whose node was created and deleted during a fuzzy snapshot must
    /// not move the parent back.
    fn set_cversion_pzxid(&mut self, path: &str, cversion: i32, zxid: i64) {
        if let Some(n) = self.nodes.get_mut(path) {
            let cv = if cversion == -1 {
                n.stat.cversion.wrapping_add(1)
            } else {
                cversion
            };
            if cv > n.stat.cversion {
                n.stat.cversion = cv;
                n.stat.pzxid = zxid;
            }
        }
    }

    /// Deletes the session's ephemerals: those the log names, then any other it owns.
    pub fn kill_session(&mut self, session: i64, zxid: i64, listed: Option<&[String]>) {
        for p in listed.unwrap_or_default() {
            self.delete(p, zxid);
        }
        let owned = self.ephemerals.remove(&session).unwrap_or_default();
        for p in owned {
            self.delete(&p, zxid);
        }
    }

    /// Sessions that own ephemerals but are not in the session table: ZooKeeper kills them
    /// when it loads its data (their ephemerals would otherwise live for ever).
    pub fn orphan_owners(&self) -> BTreeSet<i64> {
        self.ephemerals
            .iter()
            .filter(|(o, set)| !set.is_empty() && !self.sessions.contains_key(o))
            .map(|(o, _)| *o)
            .collect()
    }
}

/// Whether an ephemeralOwner value is a session (not 0, a container or a TTL).
fn is_session_owned(owner: i64) -> bool {
    owner != 0 && owner != CONTAINER_OWNER && (owner as u64) & TTL_HIGH_BYTE != TTL_HIGH_BYTE
}

#[cfg(test)]
mod tests;
