//! The data tree and session table. (Skeleton: signatures are the contract with the keeper.)

use std::collections::{BTreeMap, BTreeSet};

use corral_proto::{Acl, ErrorCode, Id, Request, Response, Stat};

use crate::{ApplyResult, Entry, TreeConfig};

/// One znode. `stat.data_length` and `stat.num_children` are kept current.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub data: Vec<u8>,
    pub acl: Vec<Acl>,
    pub stat: Stat,
    /// Child names (not paths), sorted, so every node lists them the same way.
    pub children: BTreeSet<String>,
}

/// A live session as recorded in the replicated state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub timeout_ms: i32,
    pub passwd: Vec<u8>,
    /// Paths of the ephemerals it owns.
    pub ephemerals: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataTree {
    config: TreeConfig,
    nodes: BTreeMap<String, Node>,
    sessions: BTreeMap<i64, SessionInfo>,
    last_zxid: i64,
}

impl DataTree {
    /// A tree holding `/`, `/zookeeper`, `/zookeeper/quota` and `/zookeeper/config` as a fresh
    /// ZooKeeper shows them.
    pub fn new(config: TreeConfig) -> Self {
        let _ = config;
        todo!()
    }

    /// Applies one committed entry at `zxid` (strictly increasing).
    pub fn apply(&mut self, zxid: i64, entry: &Entry) -> ApplyResult {
        let _ = (zxid, entry);
        todo!()
    }

    /// Answers a read request (exists, getData, getACL, getChildren, getChildren2,
    /// getEphemerals, getAllChildrenNumber, multiRead) for a session with `identities`.
    /// Watch registration is the caller's business.
    pub fn read(&self, req: &Request, session_id: i64, identities: &[Id]) -> (ErrorCode, Response) {
        let _ = (req, session_id, identities);
        todo!()
    }

    pub fn last_zxid(&self) -> i64 {
        self.last_zxid
    }
    pub fn node(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
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
}
