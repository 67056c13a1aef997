//! Persistent watches (addWatch, ZooKeeper 3.6+) as streams of events that outlive connection
//! losses and expiries.
//!
//! Owns: [`PersistentWatch`] and its registry entry in the client. The session driver hands
//! every matching notification to the watch's bounded queue, re-sends the watch with
//! setWatches2 when the session is resumed, adds it again in a new session after an expiry,
//! and then queues [`PersistentEvent::Rearmed`]: a server does not replay to a persistent
//! watch the changes made while it could not deliver them, so the stream says where its gap
//! is and the consumer re-reads (the caches in `cache` do exactly that).
//!
//! Must not: block the driver (the queue drops and counts instead), or claim a change it did
//! not see.

use std::sync::Arc;

use corral_proto::{AddWatchMode, EventType};

use crate::client::Client;
use crate::queue::{EventQueue, Next};
use crate::{ClientError, WatchedEvent};

/// How many undelivered events a persistent watch holds before it drops (and counts) more.
pub(crate) const PERSISTENT_QUEUE_CAP: usize = 16 * 1024;

/// What a [`PersistentWatch`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PersistentEvent {
    /// A notification for the watched node (or, for a recursive watch, a node under it).
    Node(WatchedEvent),
    /// The watch was re-established after a gap: the session was resumed on a new
    /// connection, or (`expired_session` set) a new session replaced an expired one. Changes
    /// made during the gap were not reported; re-read what matters.
    Rearmed {
        /// The session the watch now lives in.
        session_id: i64,
        /// The session that expired, when this follows an expiry.
        expired_session: Option<i64>,
    },
    /// The consumer fell behind and this many events were dropped; re-read what matters.
    Overflowed {
        /// How many events were lost.
        dropped: u64,
    },
}

/// The registry entry the driver uses.
pub(crate) struct PersistentSpec {
    /// Server path (chroot included).
    pub(crate) path: String,
    pub(crate) recursive: bool,
    pub(crate) queue: Arc<EventQueue<PersistentEvent>>,
}

impl PersistentSpec {
    /// Whether a notification for `path` (server path) of `kind` is for this watch, by
    /// ZooKeeper's rules: a persistent watch sees every event on its node, children changes
    /// included; a recursive one sees creations, deletions and data changes on its node and
    /// every node below, and no children-changed events.
    pub(crate) fn matches(&self, path: &str, kind: EventType) -> bool {
        if !self.recursive {
            return path == self.path;
        }
        if kind == EventType::NodeChildrenChanged {
            return false;
        }
        path == self.path
            || self.path == "/"
            || (path.starts_with(&self.path) && path.as_bytes().get(self.path.len()) == Some(&b'/'))
    }

    pub(crate) fn mode(&self) -> AddWatchMode {
        if self.recursive {
            AddWatchMode::PersistentRecursive
        } else {
            AddWatchMode::Persistent
        }
    }
}

/// A persistent watch: a stream of events on a node (or a subtree) that keeps going across
/// connection losses and, with recovery on, across expiries. Read it with
/// [`PersistentWatch::next`]. Dropping it stops delivery (the server-side watch stays until
/// the session ends; its notifications are then ignored).
pub struct PersistentWatch {
    client: Client,
    id: u64,
    path: String,
    recursive: bool,
    queue: Arc<EventQueue<PersistentEvent>>,
}

impl std::fmt::Debug for PersistentWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersistentWatch")
            .field("path", &self.path)
            .field("recursive", &self.recursive)
            .finish()
    }
}

impl PersistentWatch {
    /// The watched path (chroot-relative).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether the watch covers the whole subtree.
    pub fn recursive(&self) -> bool {
        self.recursive
    }

    /// The next event, waiting for one; None once the client is closed, has failed
    /// authentication, or its session expired with recovery off.
    pub async fn next(&mut self) -> Option<PersistentEvent> {
        match self.queue.next().await {
            Next::Item(ev) => Some(ev),
            Next::Dropped(dropped) => Some(PersistentEvent::Overflowed { dropped }),
            Next::Closed => None,
        }
    }
}

impl Drop for PersistentWatch {
    fn drop(&mut self) {
        self.client.inner.lock().persistent.remove(&self.id);
    }
}

impl Client {
    /// Adds a persistent watch on `path` (recursive: on it and every node below) and returns
    /// its event stream. The watch is registered before addWatch is sent, so no event after
    /// the reply is missed. Needs a 3.6+ server.
    pub async fn watch_persistent(
        &self,
        path: &str,
        recursive: bool,
    ) -> Result<PersistentWatch, ClientError> {
        let p = self.inner.server_path(path)?;
        let c = self.conn().await?;
        let queue = Arc::new(EventQueue::new(PERSISTENT_QUEUE_CAP));
        let spec = PersistentSpec {
            path: p.clone(),
            recursive,
            queue: queue.clone(),
        };
        let mode = spec.mode();
        let id = {
            let mut m = self.inner.lock();
            let id = m.next_id;
            m.next_id += 1;
            m.persistent.insert(id, spec);
            id
        };
        let watch = PersistentWatch {
            client: self.clone(),
            id,
            path: path.to_string(),
            recursive,
            queue,
        };
        // On failure the watch is dropped, which unregisters it.
        c.add_watch(&p, mode).await.map_err(Client::lost)?;
        Ok(watch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(path: &str, recursive: bool) -> PersistentSpec {
        PersistentSpec {
            path: path.to_string(),
            recursive,
            queue: Arc::new(EventQueue::new(1)),
        }
    }

    #[test]
    fn matching_follows_zookeeper() {
        let one = spec("/a", false);
        assert!(one.matches("/a", EventType::NodeChildrenChanged));
        assert!(one.matches("/a", EventType::NodeDataChanged));
        assert!(!one.matches("/a/b", EventType::NodeCreated));
        let rec = spec("/a", true);
        assert!(rec.matches("/a", EventType::NodeDataChanged));
        assert!(rec.matches("/a/b/c", EventType::NodeCreated));
        assert!(!rec.matches("/ab", EventType::NodeCreated));
        assert!(!rec.matches("/a", EventType::NodeChildrenChanged));
        let root = spec("/", true);
        assert!(root.matches("/x", EventType::NodeDeleted));
    }
}
