//! The watch registry: which connection watches which path, and how a tree change
//! ([`corral_tree::Trigger`]) becomes watch events.
//!
//! It mirrors ZooKeeper 3.8's model because clients observe its quirks: two tables, data
//! (getData/exists) and child (getChildren), each holding one mode per (connection, path) —
//! standard (one-shot), persistent or persistent-recursive. addWatch puts its mode in both
//! tables, and a later registration on the same path overwrites the mode (so a recursive
//! watch replaces a persistent one, and a getData watch turns a persistent data watch back
//! into a one-shot one). Recursive watches fire for their path and every descendant, never
//! for children-changed. A connection gets at most one event per change. Watches belong to a
//! connection and die with it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use corral_proto::EventType;

/// Identifies one client connection inside this keeper.
pub type ConnId = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    Data,
    Child,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mode {
    Standard,
    Persistent,
    PersistentRecursive,
}

#[derive(Default, Debug)]
pub struct WatchRegistry {
    data: HashMap<String, BTreeMap<ConnId, Mode>>,
    child: HashMap<String, BTreeMap<ConnId, Mode>>,
    by_conn: HashMap<ConnId, BTreeSet<(Table, String)>>,
    /// Number of recursive registrations; when zero, ancestor walks are skipped.
    recursive_count: usize,
}

impl WatchRegistry {
    fn table(&mut self, t: Table) -> &mut HashMap<String, BTreeMap<ConnId, Mode>> {
        match t {
            Table::Data => &mut self.data,
            Table::Child => &mut self.child,
        }
    }

    fn table_ref(&self, t: Table) -> &HashMap<String, BTreeMap<ConnId, Mode>> {
        match t {
            Table::Data => &self.data,
            Table::Child => &self.child,
        }
    }

    /// Registers (or re-registers, overwriting the mode) a watch in one table.
    pub fn add(&mut self, conn: ConnId, table: Table, path: &str, mode: Mode) {
        let old = self
            .table(table)
            .entry(path.to_string())
            .or_default()
            .insert(conn, mode);
        if old == Some(Mode::PersistentRecursive) {
            self.recursive_count -= 1;
        }
        if mode == Mode::PersistentRecursive {
            self.recursive_count += 1;
        }
        self.by_conn
            .entry(conn)
            .or_default()
            .insert((table, path.to_string()));
    }

    /// addWatch: a persistent or recursive watch lives in both tables.
    pub fn add_persistent(&mut self, conn: ConnId, path: &str, recursive: bool) {
        let mode = if recursive {
            Mode::PersistentRecursive
        } else {
            Mode::Persistent
        };
        self.add(conn, Table::Data, path, mode);
        self.add(conn, Table::Child, path, mode);
    }

    /// Removes this connection's watch on `path` from a table, whatever its mode.
    pub fn remove(&mut self, conn: ConnId, table: Table, path: &str) -> bool {
        self.remove_if(conn, table, path, |_| true)
    }

    /// Removes this connection's watch on `path` from a table if its mode matches.
    pub fn remove_if(
        &mut self,
        conn: ConnId,
        table: Table,
        path: &str,
        pred: impl Fn(Mode) -> bool,
    ) -> bool {
        let tbl = self.table(table);
        let Some(watchers) = tbl.get_mut(path) else {
            return false;
        };
        match watchers.get(&conn) {
            Some(m) if pred(*m) => {}
            _ => return false,
        }
        let mode = watchers.remove(&conn);
        if watchers.is_empty() {
            tbl.remove(path);
        }
        if mode == Some(Mode::PersistentRecursive) {
            self.recursive_count -= 1;
        }
        self.forget(conn, table, path);
        true
    }

    fn forget(&mut self, conn: ConnId, table: Table, path: &str) {
        if let Some(mine) = self.by_conn.get_mut(&conn) {
            mine.remove(&(table, path.to_string()));
            if mine.is_empty() {
                self.by_conn.remove(&conn);
            }
        }
    }

    /// ZooKeeper 3.8's checkWatches answer: true when *any* connection has a watch on the path
    /// in that table (its containsWatcher matches every watcher at the leaf). Kept for
    /// compatibility; clients only use it to decide whether to call removeWatches.
    pub fn any_watcher(&self, table: Table, path: &str) -> bool {
        self.table_ref(table)
            .get(path)
            .is_some_and(|w| !w.is_empty())
    }

    pub fn mode(&self, conn: ConnId, table: Table, path: &str) -> Option<Mode> {
        self.table_ref(table)
            .get(path)
            .and_then(|w| w.get(&conn))
            .copied()
    }

    /// Drops every watch of a closed connection.
    pub fn remove_connection(&mut self, conn: ConnId) {
        if let Some(mine) = self.by_conn.remove(&conn) {
            for (table, path) in mine {
                let tbl = self.table(table);
                if let Some(watchers) = tbl.get_mut(&path) {
                    let mode = watchers.remove(&conn);
                    if watchers.is_empty() {
                        tbl.remove(&path);
                    }
                    if mode == Some(Mode::PersistentRecursive) {
                        self.recursive_count -= 1;
                    }
                }
            }
        }
    }

    /// One table's share of an event, consuming the standard watches that fire.
    fn trigger(&mut self, table: Table, event: EventType, path: &str, out: &mut BTreeSet<ConnId>) {
        let walk_ancestors = self.recursive_count > 0;
        let mut consumed = Vec::new();
        let tbl = self.table(table);
        for (i, local) in ancestors_and_self(path).enumerate() {
            let at_leaf = i == 0;
            if !at_leaf && !walk_ancestors {
                break;
            }
            let Some(watchers) = tbl.get_mut(local) else {
                continue;
            };
            watchers.retain(|conn, mode| match mode {
                Mode::PersistentRecursive => {
                    if event != EventType::NodeChildrenChanged {
                        out.insert(*conn);
                    }
                    true
                }
                Mode::Persistent if at_leaf => {
                    out.insert(*conn);
                    true
                }
                Mode::Standard if at_leaf => {
                    out.insert(*conn);
                    consumed.push(*conn);
                    false
                }
                _ => true,
            });
            if watchers.is_empty() {
                tbl.remove(local);
            }
        }
        for conn in consumed {
            self.forget(conn, table, path);
        }
    }

    /// The connections to notify of `event` on `path` (ZooKeeper's DataTree trigger rules).
    pub fn fire(&mut self, event: EventType, path: &str) -> BTreeSet<ConnId> {
        let mut out = BTreeSet::new();
        match event {
            EventType::NodeCreated | EventType::NodeDataChanged => {
                self.trigger(Table::Data, event, path, &mut out)
            }
            EventType::NodeDeleted => {
                self.trigger(Table::Data, event, path, &mut out);
                self.trigger(Table::Child, event, path, &mut out);
            }
            EventType::NodeChildrenChanged => self.trigger(Table::Child, event, path, &mut out),
            _ => {}
        }
        out
    }

    /// Every watch as (connection, table, path).
    pub fn entries(&self) -> impl Iterator<Item = (ConnId, Table, &str)> + '_ {
        self.by_conn
            .iter()
            .flat_map(|(c, s)| s.iter().map(move |(t, p)| (*c, *t, p.as_str())))
    }

    pub fn total(&self) -> usize {
        self.by_conn.values().map(|s| s.len()).sum()
    }

    /// One table counted without reading a path (`wchs`): the connections holding a watch in
    /// it, its distinct paths, and its watches (one per connection and path).
    pub fn census(&self, table: Table) -> (Vec<ConnId>, usize, usize) {
        let conns = self
            .by_conn
            .iter()
            .filter(|(_, mine)| mine.iter().any(|(t, _)| *t == table))
            .map(|(c, _)| *c)
            .collect();
        let tbl = self.table_ref(table);
        (conns, tbl.len(), tbl.values().map(BTreeMap::len).sum())
    }
}

/// `/a/b/c` → `/a/b/c`, `/a/b`, `/a`, `/`.
fn ancestors_and_self(path: &str) -> impl Iterator<Item = &str> {
    std::iter::successors(Some(path), |p| corral_tree::path::parent(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shot_data_watch_fires_once() {
        let mut w = WatchRegistry::default();
        w.add(1, Table::Data, "/a", Mode::Standard);
        assert_eq!(
            w.fire(EventType::NodeDataChanged, "/a"),
            BTreeSet::from([1])
        );
        assert!(w.fire(EventType::NodeDataChanged, "/a").is_empty());
        assert_eq!(w.total(), 0);
    }

    #[test]
    fn child_watch_ignores_data_changes_but_sees_delete() {
        let mut w = WatchRegistry::default();
        w.add(1, Table::Child, "/a", Mode::Standard);
        assert!(w.fire(EventType::NodeDataChanged, "/a").is_empty());
        assert_eq!(w.fire(EventType::NodeDeleted, "/a"), BTreeSet::from([1]));
        assert_eq!(w.total(), 0);
    }

    #[test]
    fn persistent_watch_survives_and_sees_children() {
        let mut w = WatchRegistry::default();
        w.add_persistent(1, "/a", false);
        assert_eq!(
            w.fire(EventType::NodeDataChanged, "/a"),
            BTreeSet::from([1])
        );
        assert_eq!(
            w.fire(EventType::NodeChildrenChanged, "/a"),
            BTreeSet::from([1])
        );
        assert!(w.fire(EventType::NodeDataChanged, "/a/b").is_empty());
        assert_eq!(w.fire(EventType::NodeDeleted, "/a"), BTreeSet::from([1]));
        assert_eq!(w.total(), 2);
    }

    #[test]
    fn recursive_watch_covers_subtree_but_not_child_events() {
        let mut w = WatchRegistry::default();
        w.add_persistent(7, "/a", true);
        assert_eq!(
            w.fire(EventType::NodeCreated, "/a/b/c"),
            BTreeSet::from([7])
        );
        assert!(w.fire(EventType::NodeChildrenChanged, "/a").is_empty());
        assert!(w.fire(EventType::NodeCreated, "/ab").is_empty());
        w.add_persistent(8, "/", true);
        assert_eq!(w.fire(EventType::NodeDeleted, "/ab"), BTreeSet::from([8]));
    }

    #[test]
    fn later_registration_overwrites_the_mode() {
        let mut w = WatchRegistry::default();
        w.add_persistent(1, "/a", false);
        w.add_persistent(1, "/a", true);
        // now recursive: no children-changed any more
        assert!(w.fire(EventType::NodeChildrenChanged, "/a").is_empty());
        w.add(1, Table::Data, "/a", Mode::Standard);
        assert_eq!(
            w.fire(EventType::NodeDataChanged, "/a"),
            BTreeSet::from([1])
        );
        assert_eq!(w.mode(1, Table::Data, "/a"), None);
    }

    #[test]
    fn check_matches_any_watcher_on_the_path() {
        let mut w = WatchRegistry::default();
        w.add(2, Table::Data, "/a", Mode::Standard);
        assert!(w.any_watcher(Table::Data, "/a"));
        assert!(!w.any_watcher(Table::Child, "/a"));
    }

    #[test]
    fn one_event_per_connection_and_cleanup() {
        let mut w = WatchRegistry::default();
        w.add(1, Table::Data, "/a", Mode::Standard);
        w.add(1, Table::Child, "/a", Mode::Standard);
        w.add(2, Table::Data, "/a", Mode::Standard);
        w.add_persistent(3, "/a", true);
        assert_eq!(
            w.fire(EventType::NodeDeleted, "/a"),
            BTreeSet::from([1, 2, 3])
        );
        // Standard watches are used up; the persistent one (an entry per table) stays until
        // its connection goes.
        assert_eq!((w.total(), w.recursive_count), (2, 2));
        w.remove_connection(3);
        assert_eq!(w.total(), 0);
        assert_eq!(w.recursive_count, 0);
    }

    #[test]
    fn ancestors() {
        assert_eq!(
            ancestors_and_self("/a/b").collect::<Vec<_>>(),
            vec!["/a/b", "/a", "/"]
        );
        assert_eq!(ancestors_and_self("/").collect::<Vec<_>>(), vec!["/"]);
    }
}
