//! Node and tree caches: a local copy of one node ([`NodeCache`]) or of a subtree
//! ([`TreeCache`]) kept current by a persistent watch, and repaired after every gap.
//!
//! Owns: the cached nodes, the task that keeps them, and the diff between what a cache held
//! and what a re-read finds. Each notification makes the cache read the node it names (the
//! read answers with the state at least as new as the event, so the cache converges). After
//! a gap — the session resumed on a new connection, a new session after an expiry, or the
//! watch's queue overflowing — no notification can be trusted to have arrived, so the cache
//! re-reads everything it covers, compares it with what it held, and reports the difference
//! as the changes made during the outage ([`ResyncReport`], on the cache's own stream and on
//! [`Client::resync_reports`]).
//!
//! Must not: report a change it did not observe in a read, block the session driver, or
//! stop on a transient error (the next gap marker triggers another re-read).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use corral_proto::{ErrorCode, EventType, Stat};
use tokio::sync::broadcast;
use tokio::task::{AbortHandle, JoinSet};

use crate::client::Client;
use crate::persistent::{PersistentEvent, PersistentWatch};
use crate::queue::{EventQueue, Next};
use crate::ClientError;

/// How many cache events a consumer may leave unread before older ones are dropped.
const CACHE_QUEUE_CAP: usize = 16 * 1024;
/// Reads in flight during a full re-read of a tree (pipelined on the one connection).
const READS_IN_FLIGHT: usize = 64;

/// One cached node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedNode {
    /// The node's data (a null value reads as empty).
    pub data: Vec<u8>,
    /// The node's Stat when it was read.
    pub stat: Stat,
}

/// How a node differs between two views.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChangeKind {
    /// The node appeared.
    Created,
    /// The node's data (or its ACL) changed. A change in its children alone is not an update
    /// of the node (the children's own creations and deletions say it), though the cached
    /// Stat follows it.
    Updated,
    /// The node was deleted and created again (its czxid differs).
    Recreated,
    /// The node disappeared.
    Deleted,
}

/// One node's change.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Change {
    /// The node's path (chroot-relative).
    pub path: String,
    /// What happened to it.
    pub kind: ChangeKind,
}

/// Why a cache re-read everything it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResyncCause {
    /// The session was resumed on a new connection; notifications sent meanwhile were lost.
    Reconnected {
        /// The session (unchanged).
        session_id: i64,
    },
    /// A new session replaced an expired one.
    NewSession {
        /// The session that expired.
        old_session_id: i64,
        /// The session now served.
        new_session_id: i64,
    },
    /// The cache's watch dropped events (its consumer fell behind).
    Overflowed,
}

/// What a cache found after a gap: the changes made while it could not see them, computed by
/// comparing a fresh read with what it held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResyncReport {
    /// The cache's root (chroot-relative).
    pub root: String,
    /// What caused the re-read (with several gaps before one re-read succeeded, the most
    /// severe: a new session over a reconnection).
    pub cause: ResyncCause,
    /// Every node that differs, by path.
    pub changes: Vec<Change>,
}

/// What a cache's stream yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheEvent {
    /// A change seen through the watch while connected (or one found by a re-read; those are
    /// followed by [`CacheEvent::Resynced`]).
    Changed(Change),
    /// A re-read after a gap finished; the cache equals what it read.
    Resynced(ResyncReport),
    /// The consumer fell behind and this many events were dropped (the cache itself is not
    /// affected: [`TreeCache::snapshot`] is current).
    Lagged {
        /// How many events were lost.
        dropped: u64,
    },
}

/// How a node went from `old` to `new`, if in a way worth reporting.
fn classify(old: Option<&CachedNode>, new: &CachedNode) -> Option<ChangeKind> {
    match old {
        None => Some(ChangeKind::Created),
        Some(o) if o.stat.czxid != new.stat.czxid => Some(ChangeKind::Recreated),
        Some(o)
            if o.data != new.data
                || o.stat.mzxid != new.stat.mzxid
                || o.stat.aversion != new.stat.aversion =>
        {
            Some(ChangeKind::Updated)
        }
        Some(_) => None,
    }
}

/// The differences from `old` to `new`, sorted by path.
pub(crate) fn diff(
    old: &BTreeMap<String, CachedNode>,
    new: &BTreeMap<String, CachedNode>,
) -> Vec<Change> {
    let mut out = Vec::new();
    for (path, n) in new {
        if let Some(kind) = classify(old.get(path), n) {
            out.push(Change {
                path: path.clone(),
                kind,
            });
        }
    }
    for path in old.keys() {
        if !new.contains_key(path) {
            out.push(Change {
                path: path.clone(),
                kind: ChangeKind::Deleted,
            });
        }
    }
    out.sort();
    out
}

/// Whether `path` is `root` or below it.
fn under(root: &str, path: &str) -> bool {
    path == root
        || root == "/"
        || (path.starts_with(root) && path.as_bytes().get(root.len()) == Some(&b'/'))
}

fn child_path(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

/// State shared by a cache handle and its task.
struct Shared {
    root: String,
    tree: bool,
    nodes: Mutex<BTreeMap<String, CachedNode>>,
    events: EventQueue<CacheEvent>,
}

impl Shared {
    fn nodes(&self) -> MutexGuard<'_, BTreeMap<String, CachedNode>> {
        // Mutations are whole-map swaps or single inserts/removes: consistent after a panic.
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Reads one node: Ok(None) when it does not exist (or cannot be read: no auth).
async fn read_node(client: &Client, path: &str) -> Result<Option<CachedNode>, ClientError> {
    match client.get_data(path).await {
        Ok((data, stat)) => Ok(Some(CachedNode { data, stat })),
        Err(ClientError::Server(ErrorCode::NoNode | ErrorCode::NoAuth)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// One node of a full read: its path, the node (None if gone) and its children's names.
type NodeRead = (String, Option<CachedNode>, Vec<String>);

/// Reads everything a cache covers. Connection-level errors abort the read; nodes that vanish
/// or cannot be read meanwhile are left out.
async fn full_read(
    client: &Client,
    root: &str,
    tree: bool,
) -> Result<BTreeMap<String, CachedNode>, ClientError> {
    let mut out = BTreeMap::new();
    if !tree {
        if let Some(n) = read_node(client, root).await? {
            out.insert(root.to_string(), n);
        }
        return Ok(out);
    }
    let mut todo = vec![root.to_string()];
    let mut jobs: JoinSet<Result<NodeRead, ClientError>> = JoinSet::new();
    loop {
        while jobs.len() < READS_IN_FLIGHT {
            let Some(path) = todo.pop() else { break };
            let c = client.clone();
            jobs.spawn(async move {
                let node = read_node(&c, &path).await?;
                if node.is_none() {
                    return Ok((path, None, Vec::new()));
                }
                let children = match c.get_children(&path).await {
                    Ok(ch) => ch,
                    Err(ClientError::Server(ErrorCode::NoNode | ErrorCode::NoAuth)) => Vec::new(),
                    Err(e) => return Err(e),
                };
                Ok((path, node, children))
            });
        }
        let Some(done) = jobs.join_next().await else {
            return Ok(out);
        };
        let (path, node, children) = match done {
            Ok(r) => r?,
            Err(e) => return Err(ClientError::Protocol(format!("cache read task: {e}"))),
        };
        if let Some(n) = node {
            for name in children {
                todo.push(child_path(&path, &name));
            }
            out.insert(path, n);
        }
    }
}

/// The cache's task: applies notifications, re-reads after gaps.
async fn run(client: Client, mut watch: PersistentWatch, shared: Arc<Shared>) {
    // A re-read that is owed: set by a gap, cleared when a re-read succeeds.
    let mut owed: Option<ResyncCause> = None;
    loop {
        let ev = match watch.next().await {
            None => break,
            Some(ev) => ev,
        };
        let cause = match ev {
            PersistentEvent::Node(ev) => match owed {
                // A re-read failed earlier and we are connected again: try it now.
                Some(o) => o,
                None => {
                    let mut paths = vec![ev.path.clone()];
                    // A recursive watch says nothing of the parent whose children changed:
                    // read it too, so its cached Stat (cversion, numChildren) stays exact.
                    if shared.tree
                        && ev.path != shared.root
                        && matches!(
                            ev.event_type,
                            EventType::NodeCreated | EventType::NodeDeleted
                        )
                    {
                        if let Some((parent, _)) = ev.path.rsplit_once('/') {
                            paths.push(if parent.is_empty() { "/" } else { parent }.to_string());
                        }
                    }
                    for p in paths {
                        if refresh(&client, &shared, &p).await.is_err() {
                            // The connection went; a Rearmed marker follows the reconnect.
                            tracing::debug!(path = %p, "cache read failed; waiting for the re-read");
                        }
                    }
                    continue;
                }
            },
            PersistentEvent::Rearmed {
                session_id,
                expired_session: Some(old),
            } => ResyncCause::NewSession {
                old_session_id: old,
                new_session_id: session_id,
            },
            PersistentEvent::Rearmed { session_id, .. } => ResyncCause::Reconnected { session_id },
            PersistentEvent::Overflowed { .. } => ResyncCause::Overflowed,
        };
        owed = Some(merge(owed, cause));
        match full_read(&client, &shared.root, shared.tree).await {
            Ok(fresh) => {
                let cause = owed.take().unwrap_or(cause);
                let changes = {
                    let mut nodes = shared.nodes();
                    let changes = diff(&nodes, &fresh);
                    *nodes = fresh;
                    changes
                };
                for c in &changes {
                    shared.events.push(CacheEvent::Changed(c.clone()));
                }
                let report = ResyncReport {
                    root: shared.root.clone(),
                    cause,
                    changes,
                };
                tracing::info!(?report, "cache re-read after a gap");
                let _ = client.inner.resyncs.send(report.clone());
                shared.events.push(CacheEvent::Resynced(report));
            }
            Err(e) => {
                tracing::debug!(error = %e, root = %shared.root, "cache re-read failed; retried at the next reconnect");
            }
        }
    }
    shared.events.close();
}

/// The more severe of two gaps (a new session keeps the first expired session).
fn merge(owed: Option<ResyncCause>, new: ResyncCause) -> ResyncCause {
    match (owed, new) {
        (None, n) => n,
        (
            Some(ResyncCause::NewSession { old_session_id, .. }),
            ResyncCause::NewSession { new_session_id, .. },
        ) => ResyncCause::NewSession {
            old_session_id,
            new_session_id,
        },
        (Some(o @ ResyncCause::NewSession { .. }), _) => o,
        (_, n @ ResyncCause::NewSession { .. }) => n,
        (_, n) => n,
    }
}

/// Reads `path` after a notification and records the change, if any.
async fn refresh(client: &Client, shared: &Shared, path: &str) -> Result<(), ClientError> {
    if !under(&shared.root, path) || (!shared.tree && path != shared.root) {
        return Ok(());
    }
    let node = read_node(client, path).await?;
    let mut changes = Vec::new();
    {
        let mut nodes = shared.nodes();
        match node {
            Some(n) => {
                if let Some(kind) = classify(nodes.get(path), &n) {
                    changes.push(Change {
                        path: path.to_string(),
                        kind,
                    });
                }
                nodes.insert(path.to_string(), n);
            }
            None => {
                // The node and anything still held below it (its children's deletions came
                // first, unless they were missed).
                // Strings with a given prefix sort together, starting at the prefix.
                let gone: Vec<String> = nodes
                    .range(path.to_string()..)
                    .map(|(p, _)| p)
                    .take_while(|p| p.starts_with(path))
                    .filter(|p| under(path, p))
                    .cloned()
                    .collect();
                for p in gone {
                    nodes.remove(&p);
                    changes.push(Change {
                        path: p,
                        kind: ChangeKind::Deleted,
                    });
                }
            }
        }
    }
    for c in changes {
        shared.events.push(CacheEvent::Changed(c));
    }
    Ok(())
}

async fn start(
    client: &Client,
    root: &str,
    tree: bool,
) -> Result<(Arc<Shared>, AbortHandle), ClientError> {
    // The watch first, then the read: a change after the read is then surely notified.
    let watch = client.watch_persistent(root, tree).await?;
    let nodes = full_read(client, root, tree).await?;
    let shared = Arc::new(Shared {
        root: root.to_string(),
        tree,
        nodes: Mutex::new(nodes),
        events: EventQueue::new(CACHE_QUEUE_CAP),
    });
    let task = tokio::spawn(run(client.clone(), watch, shared.clone()));
    Ok((shared, task.abort_handle()))
}

async fn next_event(shared: &Shared) -> Option<CacheEvent> {
    match shared.events.next().await {
        Next::Item(ev) => Some(ev),
        Next::Dropped(dropped) => Some(CacheEvent::Lagged { dropped }),
        Next::Closed => None,
    }
}

/// A local copy of a subtree: the root and every node below it, with data and Stat, kept
/// current through a persistent recursive watch (3.6+ servers) and re-read after every gap.
/// Dropping it stops the keeping.
#[derive(Debug)]
pub struct TreeCache {
    shared: Arc<Shared>,
    task: AbortHandle,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("root", &self.root)
            .field("tree", &self.tree)
            .finish()
    }
}

impl TreeCache {
    /// Starts caching `root` and its subtree; returns once the first full read is done. The
    /// root need not exist yet.
    pub async fn start(client: &Client, root: &str) -> Result<TreeCache, ClientError> {
        let (shared, task) = start(client, root, true).await?;
        Ok(TreeCache { shared, task })
    }

    /// The root path (chroot-relative).
    pub fn root(&self) -> &str {
        &self.shared.root
    }

    /// Every cached node by path.
    pub fn snapshot(&self) -> BTreeMap<String, CachedNode> {
        self.shared.nodes().clone()
    }

    /// One cached node.
    pub fn get(&self, path: &str) -> Option<CachedNode> {
        self.shared.nodes().get(path).cloned()
    }

    /// The next change or re-read report, waiting for one; None once the client stopped for
    /// good.
    pub async fn next(&mut self) -> Option<CacheEvent> {
        next_event(&self.shared).await
    }
}

impl Drop for TreeCache {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A local copy of one node (data and Stat, or absence), kept current through a persistent
/// watch (3.6+ servers) and re-read after every gap. Dropping it stops the keeping.
#[derive(Debug)]
pub struct NodeCache {
    shared: Arc<Shared>,
    task: AbortHandle,
}

impl NodeCache {
    /// Starts caching `path`; returns once it has been read. The node need not exist.
    pub async fn start(client: &Client, path: &str) -> Result<NodeCache, ClientError> {
        let (shared, task) = start(client, path, false).await?;
        Ok(NodeCache { shared, task })
    }

    /// The node's path (chroot-relative).
    pub fn path(&self) -> &str {
        &self.shared.root
    }

    /// The node as last read, or None if it does not exist.
    pub fn current(&self) -> Option<CachedNode> {
        self.shared.nodes().get(&self.shared.root).cloned()
    }

    /// The next change or re-read report, waiting for one; None once the client stopped for
    /// good.
    pub async fn next(&mut self) -> Option<CacheEvent> {
        next_event(&self.shared).await
    }
}

impl Drop for NodeCache {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Client {
    /// Shorthand for [`TreeCache::start`].
    pub async fn tree_cache(&self, root: &str) -> Result<TreeCache, ClientError> {
        TreeCache::start(self, root).await
    }

    /// Shorthand for [`NodeCache::start`].
    pub async fn node_cache(&self, path: &str) -> Result<NodeCache, ClientError> {
        NodeCache::start(self, path).await
    }

    /// One [`ResyncReport`] per cache per re-read after a gap, from now on: what changed
    /// while the client could not see it. A receiver more than 64 reports behind gets
    /// `Lagged`.
    pub fn resync_reports(&self) -> broadcast::Receiver<ResyncReport> {
        self.inner.resyncs.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(czxid: i64, version: i32, data: &[u8]) -> CachedNode {
        CachedNode {
            data: data.to_vec(),
            stat: Stat {
                czxid,
                version,
                ..Stat::default()
            },
        }
    }

    #[test]
    fn diff_names_every_kind() {
        let old: BTreeMap<_, _> = [
            ("/r".to_string(), node(1, 0, b"")),
            ("/r/same".to_string(), node(2, 0, b"s")),
            ("/r/upd".to_string(), node(3, 0, b"a")),
            ("/r/gone".to_string(), node(4, 0, b"")),
            ("/r/again".to_string(), node(5, 0, b"")),
        ]
        .into_iter()
        .collect();
        let new: BTreeMap<_, _> = [
            ("/r".to_string(), node(1, 0, b"")),
            ("/r/same".to_string(), node(2, 0, b"s")),
            ("/r/upd".to_string(), node(3, 1, b"b")),
            ("/r/again".to_string(), node(9, 0, b"")),
            ("/r/new".to_string(), node(10, 0, b"")),
        ]
        .into_iter()
        .collect();
        let got = diff(&old, &new);
        let want = vec![
            Change {
                path: "/r/again".into(),
                kind: ChangeKind::Recreated,
            },
            Change {
                path: "/r/gone".into(),
                kind: ChangeKind::Deleted,
            },
            Change {
                path: "/r/new".into(),
                kind: ChangeKind::Created,
            },
            Change {
                path: "/r/upd".into(),
                kind: ChangeKind::Updated,
            },
        ];
        assert_eq!(got, want);
        assert!(diff(&new, &new).is_empty());
    }

    #[test]
    fn subtree_membership() {
        assert!(under("/a", "/a"));
        assert!(under("/a", "/a/b"));
        assert!(!under("/a", "/ab"));
        assert!(under("/", "/x"));
    }

    #[test]
    fn gaps_merge_to_the_most_severe() {
        let r = ResyncCause::Reconnected { session_id: 1 };
        let n1 = ResyncCause::NewSession {
            old_session_id: 1,
            new_session_id: 2,
        };
        let n2 = ResyncCause::NewSession {
            old_session_id: 2,
            new_session_id: 3,
        };
        assert_eq!(merge(Some(r), n1), n1);
        assert_eq!(merge(Some(n1), r), n1);
        assert_eq!(
            merge(Some(n1), n2),
            ResyncCause::NewSession {
                old_session_id: 1,
                new_session_id: 3
            }
        );
    }
}
