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

const QUOTA_ROOT: &str = "/zookeeper/quota";
const LIMIT_NODE: &str = "zookeeper_limits";
const STAT_NODE: &str = "zookeeper_stats";
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

/// "/a//b/" -> "/a/b", as ZooKeeper's PathTrie splits paths.
fn normalise(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.trim().is_empty()).collect();
    format!("/{}", parts.join("/"))
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

    /// ZooKeeper's setupQuota: every `zookeeper_limits` leaf under /zookeeper/quota marks its
    /// path as having a quota, and that path's stat node is recomputed from the tree.
    fn setup_quotas(&mut self) {
        let limits: Vec<String> = self
            .subtree(QUOTA_ROOT)
            .filter(|p| p.ends_with(&format!("/{LIMIT_NODE}")) && !self.has_children(p))
            .cloned()
            .collect();
        for p in limits {
            let end = p.find(&format!("/{LIMIT_NODE}")).unwrap_or(p.len());
            let real = p.get(QUOTA_ROOT.len()..end).unwrap_or_default().to_string();
            if real.is_empty() {
                continue;
            }
            self.recount_quota(&real);
            self.quota_paths.insert(normalise(&real));
        }
    }

    /// `path` and every node below it.
    fn subtree<'a>(&'a self, path: &'a str) -> impl Iterator<Item = &'a String> + 'a {
        let prefix = if path == "/" {
            "/".to_string()
        } else {
            format!("{path}/")
        };
        let own = self.nodes.get_key_value(path).map(|(k, _)| k);
        own.into_iter().chain(
            self.nodes
                .range(prefix.clone()..)
                .take_while(move |(k, _)| k.starts_with(&prefix))
                .map(|(k, _)| k),
        )
    }

    fn has_children(&self, path: &str) -> bool {
        let prefix = format!("{path}/");
        self.nodes
            .range(prefix.clone()..)
            .next()
            .is_some_and(|(k, _)| k.starts_with(&prefix))
    }

    /// Sets the stat node of quota path `real` to the count and bytes of its subtree.
    fn recount_quota(&mut self, real: &str) {
        let (mut count, mut bytes) = (0i64, 0i64);
        for p in self.subtree(real) {
            count += 1;
            bytes += self.nodes[p].data.as_ref().map_or(0, |d| d.len() as i64);
        }
        let stat_path = format!("{QUOTA_ROOT}{real}/{STAT_NODE}");
        if let Some(n) = self.nodes.get_mut(&stat_path) {
            n.data = Some(format!("count={count},bytes={bytes}").into_bytes());
        }
    }

    /// The deepest path with a quota that is `path` or above it ("/" does not count).
    fn quota_prefix(&self, path: &str) -> Option<String> {
        if self.quota_paths.is_empty() {
            return None;
        }
        let parts: Vec<&str> = path.split('/').filter(|p| !p.trim().is_empty()).collect();
        (1..=parts.len())
            .rev()
            .map(|n| format!("/{}", parts[..n].join("/")))
            .find(|p| self.quota_paths.contains(p))
    }

    /// ZooKeeper's updateQuotaStat: adds to the count and bytes in the stat node's text.
    fn update_quota_stat(&mut self, prefix: &str, bytes_diff: i64, count_diff: i64) {
        let stat_path = format!("{QUOTA_ROOT}{prefix}/{STAT_NODE}");
        if let Some(n) = self.nodes.get_mut(&stat_path) {
            let text = String::from_utf8_lossy(n.data.as_deref().unwrap_or_default()).into_owned();
            if let Some(updated) = stats_add(&text, count_diff, bytes_diff) {
                n.data = Some(updated.into_bytes());
            } else {
                tracing::warn!(
                    "quota stat node {stat_path} holds {text:?}, which is not a quota stat; \
                     left as it is"
                );
            }
        }
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

/// ZooKeeper's StatsTrack text with `count` and `bytes` moved by the diffs: "count=N,bytes=M",
/// then (when other keys exist) "=" and ";key=value" for each in sorted order. None when the
/// text is not key=value pairs.
fn stats_add(text: &str, count_diff: i64, bytes_diff: i64) -> Option<String> {
    let mut stats: BTreeMap<String, i64> = BTreeMap::new();
    if !text.is_empty() {
        for pair in text.split([',', ';']).filter(|p| !p.is_empty()) {
            let mut kv = pair.split('=');
            let k = kv.next()?;
            let v = kv.next().unwrap_or_default();
            let v = if v.is_empty() { -1 } else { v.parse().ok()? };
            stats.insert(k.to_string(), v);
        }
    }
    // Java's long arithmetic: a client-written stats node near the limits wraps, never panics.
    let count = stats.remove("count").unwrap_or(-1).wrapping_add(count_diff);
    let bytes = stats.remove("bytes").unwrap_or(-1).wrapping_add(bytes_diff);
    let mut out = format!("count={count},bytes={bytes}");
    if !stats.is_empty() {
        out.push('=');
        for (k, v) in stats {
            out.push_str(&format!(";{k}={v}"));
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_stat_text_is_zookeepers() {
        assert_eq!(
            stats_add("count=3,bytes=10", 1, 5).as_deref(),
            Some("count=4,bytes=15")
        );
        assert_eq!(
            stats_add("count=3,bytes=10=;countHardLimit=5;byteHardLimit=9", -1, -2).as_deref(),
            Some("count=2,bytes=8=;byteHardLimit=9;countHardLimit=5")
        );
        assert_eq!(stats_add("", 1, 1).as_deref(), Some("count=0,bytes=0"));
        assert_eq!(stats_add("count=x", 1, 1), None);
    }

    fn hdr(kind: i32, zxid: i64, client_id: i64) -> TxnHeader {
        TxnHeader {
            client_id,
            zxid,
            time: 1000 + zxid,
            kind,
        }
    }

    fn create(path: &str, parent_cversion: i32, ephemeral: bool) -> Txn {
        Txn::Create {
            path: path.into(),
            data: Some(b"d".to_vec()),
            acl: open_acl_unsafe(),
            ephemeral,
            parent_cversion,
        }
    }

    /// A node created while the snapshot was written may refer to an ACL list added to the
    /// cache after the cache was written: the replayed create numbers the list again, as
    /// ZooKeeper's does, and the node gets it. An id nothing defines stops the import.
    #[test]
    fn a_snapshot_node_whose_acl_the_log_defines_gets_it() {
        use crate::zk_import::files::SnapNode;
        let digest = vec![Acl {
            perms: 31,
            id: corral_proto::Id {
                scheme: "digest".into(),
                id: "u:h".into(),
            },
        }];
        let node = |path: &str, acl_ref: i64| SnapNode {
            path: path.into(),
            data: Some(Vec::new()),
            acl_ref,
            stat: StatPersisted::default(),
        };
        let snapshot = |refs: i64| Snapshot {
            sessions: Vec::new(),
            acls: vec![(1, open_acl_unsafe())],
            nodes: vec![
                node("", -1),
                node("/zookeeper", -1),
                node("/a", 1),
                node("/a/new", refs),
            ],
        };
        let file = Path::new("snapshot.5");
        let mut t = ZkTree::from_snapshot(file, snapshot(2), 5).expect("loads");
        // The create logged after the snapshot's start, already in the snapshot.
        t.replay(
            &hdr(op::CREATE, 6, 0),
            &Txn::Create {
                path: "/a/new".into(),
                data: Some(Vec::new()),
                acl: digest.clone(),
                ephemeral: false,
                parent_cversion: 1,
            },
        );
        t.resolve_pending_acls(file).expect("resolved");
        assert_eq!(&*t.nodes["/a/new"].acl, &digest[..]);
        assert_eq!(&*t.nodes["/a"].acl, &open_acl_unsafe()[..]);

        let mut t = ZkTree::from_snapshot(file, snapshot(9), 5).expect("loads");
        let e = t
            .resolve_pending_acls(file)
            .expect_err("id 9 is defined nowhere");
        assert!(e.to_string().contains("ACL 9"), "{e}");
    }

    /// A fuzzy snapshot may already hold what the log replays: ZooKeeper's rules keep the
    /// replay idempotent and never move a parent's cversion or pzxid back.
    #[test]
    fn replay_is_idempotent_over_a_fuzzy_snapshot() {
        let mut t = ZkTree::empty();
        t.replay(&hdr(op::CREATE, 1, 0), &create("/a", 1, false));
        t.replay(&hdr(op::CREATE, 2, 0), &create("/a/x", 1, false));
        let a = t.nodes["/a"].stat.clone();
        // The same create again (it was in the snapshot already): nothing moves.
        t.replay(&hdr(op::CREATE, 2, 0), &create("/a/x", 1, false));
        assert_eq!(t.nodes["/a"].stat, a);
        // A create that failed because another session re-created the node meanwhile
        // still raises the parent's cversion and pzxid.
        t.replay(&hdr(op::CREATE, 5, 0), &create("/a/x", 3, false));
        assert_eq!(
            (t.nodes["/a"].stat.cversion, t.nodes["/a"].stat.pzxid),
            (3, 5)
        );
        // A delete of a node already gone still raises the parent's pzxid, never lowers it.
        t.replay(
            &hdr(op::DELETE, 7, 0),
            &Txn::Delete {
                path: "/a/y".into(),
            },
        );
        assert_eq!(t.nodes["/a"].stat.pzxid, 7);
        t.replay(
            &hdr(op::DELETE, 6, 0),
            &Txn::Delete {
                path: "/a/x".into(),
            },
        );
        assert_eq!(t.nodes["/a"].stat.pzxid, 7);
        assert!(!t.nodes.contains_key("/a/x"));
        // setData takes the version from the log, so replaying it twice is harmless.
        for _ in 0..2 {
            t.replay(
                &hdr(op::SET_DATA, 8, 0),
                &Txn::SetData {
                    path: "/a".into(),
                    data: None,
                    version: 4,
                },
            );
        }
        assert_eq!(
            (t.nodes["/a"].stat.version, t.nodes["/a"].stat.mzxid),
            (4, 8)
        );
        assert_eq!(t.nodes["/a"].data, None);
        assert_eq!(t.last_zxid, 8);
    }

    #[test]
    fn multis_and_sessions() {
        let mut t = ZkTree::empty();
        t.replay(
            &hdr(op::CREATE_SESSION, 1, 77),
            &Txn::CreateSession { timeout: 9000 },
        );
        t.replay(
            &hdr(op::MULTI, 2, 77),
            &Txn::Multi(vec![
                (op::CREATE, create("/e", 1, true)),
                (op::CREATE, create("/p", 2, false)),
            ]),
        );
        assert_eq!(t.nodes["/e"].stat.ephemeral_owner, 77);
        // A failed multi is logged with error sub-txns: none of it applies.
        t.replay(
            &hdr(op::MULTI, 3, 77),
            &Txn::Multi(vec![
                (op::ERROR, Txn::Error),
                (op::CREATE, create("/never", 3, false)),
            ]),
        );
        assert!(!t.nodes.contains_key("/never"));
        assert_eq!(t.sessions.get(&77), Some(&9000));
        t.replay(
            &hdr(op::CLOSE_SESSION, 4, 77),
            &Txn::CloseSession { paths: None },
        );
        assert!(!t.nodes.contains_key("/e") && t.nodes.contains_key("/p"));
        assert!(t.sessions.is_empty());
        assert_eq!(t.nodes["/"].stat.pzxid, 4);
    }

    #[test]
    fn quota_stats_follow_creates_deletes_and_set_data() {
        let mut t = ZkTree::empty();
        t.replay(&hdr(op::CREATE, 1, 0), &create("/q", 1, false));
        t.replay(&hdr(op::CREATE, 2, 0), &create("/q/a", 1, false));
        t.replay(
            &hdr(op::CREATE, 3, 0),
            &create("/zookeeper/quota/q", 1, false),
        );
        t.replay(
            &hdr(op::CREATE, 4, 0),
            &create("/zookeeper/quota/q/zookeeper_limits", 1, false),
        );
        t.replay(
            &hdr(op::CREATE, 5, 0),
            &create("/zookeeper/quota/q/zookeeper_stats", 2, false),
        );
        let stats = |t: &ZkTree| {
            String::from_utf8_lossy(
                t.nodes["/zookeeper/quota/q/zookeeper_stats"]
                    .data
                    .as_deref()
                    .unwrap_or_default(),
            )
            .into_owned()
        };
        // Recounted when the stat node is created: /q and /q/a, one byte each.
        assert_eq!(stats(&t), "count=2,bytes=2");
        t.replay(&hdr(op::CREATE, 6, 0), &create("/q/a/b", 1, false));
        assert_eq!(stats(&t), "count=3,bytes=3");
        t.replay(
            &hdr(op::SET_DATA, 7, 0),
            &Txn::SetData {
                path: "/q/a".into(),
                data: Some(b"hello".to_vec()),
                version: 1,
            },
        );
        assert_eq!(stats(&t), "count=3,bytes=7");
        t.replay(
            &hdr(op::DELETE, 8, 0),
            &Txn::Delete {
                path: "/q/a/b".into(),
            },
        );
        assert_eq!(stats(&t), "count=2,bytes=6");
        // Outside the quota'd path nothing counts.
        t.replay(&hdr(op::CREATE, 9, 0), &create("/qq", 2, false));
        assert_eq!(stats(&t), "count=2,bytes=6");
    }

    #[test]
    fn paths() {
        assert_eq!(parent_of("/a"), Some("/"));
        assert_eq!(parent_of("/a/b"), Some("/a"));
        assert_eq!(parent_of("/"), None);
        assert_eq!(normalise("/a//b/"), "/a/b");
    }
}
