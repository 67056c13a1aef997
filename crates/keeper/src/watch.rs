//! The watch registry: which connection watches which path, and how a tree change
//! ([`corral_tree::Trigger`]) becomes watch events.
//!
//! Semantics follow ZooKeeper's WatchManager: one-shot data watches (getData/exists) and
//! child watches (getChildren) are removed when they fire; persistent watches (addWatch mode
//! 0) fire for every change of their path, including child changes; persistent-recursive
//! watches (mode 1) fire created/deleted/data-changed for the path and its whole subtree,
//! never children-changed. A connection gets at most one event per change, however many of
//! its watches match. Watches belong to a connection and die with it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use corral_proto::EventType;

/// Identifies one client connection inside this keeper.
pub type ConnId = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WatchKind {
    Data,
    Child,
    Persistent,
    PersistentRecursive,
}

pub const ALL_KINDS: [WatchKind; 4] =
    [WatchKind::Data, WatchKind::Child, WatchKind::Persistent, WatchKind::PersistentRecursive];

#[derive(Default, Debug)]
pub struct WatchRegistry {
    by_path: HashMap<WatchKind, HashMap<String, BTreeSet<ConnId>>>,
    by_conn: HashMap<ConnId, BTreeSet<(WatchKind, String)>>,
    /// Number of persistent-recursive watches; when zero, ancestor walks are skipped.
    recursive_count: usize,
}

impl WatchRegistry {
    pub fn add(&mut self, conn: ConnId, kind: WatchKind, path: &str) {
        let set = self.by_path.entry(kind).or_default().entry(path.to_string()).or_default();
        if set.insert(conn) {
            if kind == WatchKind::PersistentRecursive {
                self.recursive_count += 1;
            }
            self.by_conn.entry(conn).or_default().insert((kind, path.to_string()));
        }
    }

    /// Removes one watch; true if it existed.
    pub fn remove(&mut self, conn: ConnId, kind: WatchKind, path: &str) -> bool {
        let Some(paths) = self.by_path.get_mut(&kind) else { return false };
        let Some(set) = paths.get_mut(path) else { return false };
        if !set.remove(&conn) {
            return false;
        }
        if set.is_empty() {
            paths.remove(path);
        }
        if kind == WatchKind::PersistentRecursive {
            self.recursive_count -= 1;
        }
        if let Some(mine) = self.by_conn.get_mut(&conn) {
            mine.remove(&(kind, path.to_string()));
            if mine.is_empty() {
                self.by_conn.remove(&conn);
            }
        }
        true
    }

    pub fn has(&self, conn: ConnId, kind: WatchKind, path: &str) -> bool {
        self.by_path.get(&kind).and_then(|p| p.get(path)).is_some_and(|s| s.contains(&conn))
    }

    /// Drops every watch of a closed connection.
    pub fn remove_connection(&mut self, conn: ConnId) {
        if let Some(mine) = self.by_conn.remove(&conn) {
            for (kind, path) in mine {
                if let Some(paths) = self.by_path.get_mut(&kind) {
                    if let Some(set) = paths.get_mut(&path) {
                        set.remove(&conn);
                        if set.is_empty() {
                            paths.remove(&path);
                        }
                    }
                }
                if kind == WatchKind::PersistentRecursive {
                    self.recursive_count -= 1;
                }
            }
        }
    }

    fn watchers(&self, kind: WatchKind, path: &str) -> impl Iterator<Item = ConnId> + '_ {
        self.by_path.get(&kind).and_then(|p| p.get(path)).into_iter().flatten().copied()
    }

    /// The connections to notify of `event` on `path`, consuming the one-shot watches that fire.
    pub fn fire(&mut self, event: EventType, path: &str) -> BTreeSet<ConnId> {
        let mut out = BTreeSet::new();
        let one_shot: &[WatchKind] = match event {
            EventType::NodeCreated | EventType::NodeDataChanged => &[WatchKind::Data],
            EventType::NodeDeleted => &[WatchKind::Data, WatchKind::Child],
            EventType::NodeChildrenChanged => &[WatchKind::Child],
            _ => &[],
        };
        for &kind in one_shot {
            if let Some(set) = self.by_path.get_mut(&kind).and_then(|p| p.remove(path)) {
                for conn in set {
                    out.insert(conn);
                    if let Some(mine) = self.by_conn.get_mut(&conn) {
                        mine.remove(&(kind, path.to_string()));
                        if mine.is_empty() {
                            self.by_conn.remove(&conn);
                        }
                    }
                }
            }
        }
        out.extend(self.watchers(WatchKind::Persistent, path));
        if event != EventType::NodeChildrenChanged && self.recursive_count > 0 {
            for ancestor in ancestors_and_self(path) {
                out.extend(self.watchers(WatchKind::PersistentRecursive, ancestor));
            }
        }
        out
    }

    /// Every watch as (connection, kind, path).
    pub fn entries(&self) -> impl Iterator<Item = (ConnId, WatchKind, &str)> + '_ {
        self.by_conn.iter().flat_map(|(c, s)| s.iter().map(move |(k, p)| (*c, *k, p.as_str())))
    }

    pub fn total(&self) -> usize {
        self.by_conn.values().map(|s| s.len()).sum()
    }

    /// Watched paths per connection (for wchc), sorted.
    pub fn by_connection(&self) -> BTreeMap<ConnId, Vec<String>> {
        self.by_conn
            .iter()
            .map(|(c, s)| {
                let mut paths: Vec<String> = s.iter().map(|(_, p)| p.clone()).collect();
                paths.dedup();
                (*c, paths)
            })
            .collect()
    }

    /// Watching connections per path (for wchp), sorted.
    pub fn by_path(&self) -> BTreeMap<String, BTreeSet<ConnId>> {
        let mut out: BTreeMap<String, BTreeSet<ConnId>> = BTreeMap::new();
        for paths in self.by_path.values() {
            for (p, conns) in paths {
                out.entry(p.clone()).or_default().extend(conns.iter().copied());
            }
        }
        out
    }
}

/// `/a/b/c` → `/a/b/c`, `/a/b`, `/a`, `/`.
fn ancestors_and_self(path: &str) -> impl Iterator<Item = &str> {
    let mut next = Some(path);
    std::iter::from_fn(move || {
        let cur = next?;
        next = if cur == "/" {
            None
        } else {
            match cur.rfind('/') {
                Some(0) => Some("/"),
                Some(i) => Some(&cur[..i]),
                None => None,
            }
        };
        Some(cur)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shot_data_watch_fires_once() {
        let mut w = WatchRegistry::default();
        w.add(1, WatchKind::Data, "/a");
        assert_eq!(w.fire(EventType::NodeDataChanged, "/a"), BTreeSet::from([1]));
        assert!(w.fire(EventType::NodeDataChanged, "/a").is_empty());
        assert_eq!(w.total(), 0);
    }

    #[test]
    fn child_watch_ignores_data_changes_but_sees_delete() {
        let mut w = WatchRegistry::default();
        w.add(1, WatchKind::Child, "/a");
        assert!(w.fire(EventType::NodeDataChanged, "/a").is_empty());
        assert_eq!(w.fire(EventType::NodeDeleted, "/a"), BTreeSet::from([1]));
        assert_eq!(w.total(), 0);
    }

    #[test]
    fn persistent_watch_survives_and_sees_children() {
        let mut w = WatchRegistry::default();
        w.add(1, WatchKind::Persistent, "/a");
        assert_eq!(w.fire(EventType::NodeDataChanged, "/a"), BTreeSet::from([1]));
        assert_eq!(w.fire(EventType::NodeChildrenChanged, "/a"), BTreeSet::from([1]));
        assert!(w.fire(EventType::NodeDataChanged, "/a/b").is_empty());
        assert_eq!(w.total(), 1);
    }

    #[test]
    fn recursive_watch_covers_subtree_but_not_child_events() {
        let mut w = WatchRegistry::default();
        w.add(7, WatchKind::PersistentRecursive, "/a");
        assert_eq!(w.fire(EventType::NodeCreated, "/a/b/c"), BTreeSet::from([7]));
        assert!(w.fire(EventType::NodeChildrenChanged, "/a").is_empty());
        assert!(w.fire(EventType::NodeCreated, "/ab").is_empty());
        w.add(8, WatchKind::PersistentRecursive, "/");
        assert_eq!(w.fire(EventType::NodeDeleted, "/ab"), BTreeSet::from([8]));
    }

    #[test]
    fn one_event_per_connection_and_cleanup() {
        let mut w = WatchRegistry::default();
        w.add(1, WatchKind::Data, "/a");
        w.add(1, WatchKind::Child, "/a");
        w.add(1, WatchKind::Persistent, "/a");
        w.add(2, WatchKind::Data, "/a");
        assert_eq!(w.fire(EventType::NodeDeleted, "/a"), BTreeSet::from([1, 2]));
        assert_eq!(w.total(), 1);
        w.remove_connection(1);
        assert_eq!(w.total(), 0);
        assert!(w.by_path().is_empty());
    }

    #[test]
    fn ancestors() {
        assert_eq!(ancestors_and_self("/a/b").collect::<Vec<_>>(), vec!["/a/b", "/a", "/"]);
        assert_eq!(ancestors_and_self("/").collect::<Vec<_>>(), vec!["/"]);
    }
}
