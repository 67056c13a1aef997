//! Requests answered from this keeper's own state, without consensus: reads (with their
//! watch registered under the same lock as the read), pings, sync, the watch management
//! requests (addWatch, setWatches, checkWatches, removeWatches), whoAmI and SASL. Runs in
//! the responder, after every earlier write of the connection has been applied.
//!
//! Invariant: a reply that registers a watch is queued before the state lock is released, so
//! an apply that fires that watch (it takes the same lock) queues its event after the reply.
//! The Java client registers its watcher when the reply arrives and drops an event that
//! comes first. Must not: change the tree.

use corral_proto::{xid, ClientInfo, ErrorCode, EventType, Request, Response, WatcherType};

use super::responder::Responder;
use crate::apply::event_frame;
use crate::shared::State;
use crate::watch::{ConnId, Mode, Table};

impl Responder {
    pub(super) fn dispatch(&mut self, xid: i32, req: Request) {
        let link = &self.link;
        match req {
            Request::Ping => {
                link.reply(xid::PING, link.last_zxid(), ErrorCode::Ok, &Response::Empty);
            }
            Request::SetWatches(sw) => {
                self.set_watches(
                    xid,
                    sw.relative_zxid,
                    &Watches {
                        data: &sw.data_watches,
                        exist: &sw.exist_watches,
                        child: &sw.child_watches,
                        persistent: &[],
                        recursive: &[],
                    },
                );
            }
            Request::SetWatches2(sw) => {
                self.set_watches(
                    xid,
                    sw.relative_zxid,
                    &Watches {
                        data: &sw.data_watches,
                        exist: &sw.exist_watches,
                        child: &sw.child_watches,
                        persistent: &sw.persistent_watches,
                        recursive: &sw.persistent_recursive_watches,
                    },
                );
            }
            Request::Sync(p) => {
                // The responder has caught up with the leader's commit index already.
                let err = match corral_tree::path::validate(&p.path) {
                    Ok(()) => ErrorCode::Ok,
                    Err(e) => e,
                };
                link.reply(xid, link.last_zxid(), err, &Response::Path(p.path));
            }
            Request::AddWatch(aw) => {
                // ZooKeeper 3.8 registers whatever path it is given (a relative one never
                // fires) and answers an unknown mode with MarshallingError.
                let recursive = match corral_proto::AddWatchMode::from_i32(aw.mode) {
                    Some(corral_proto::AddWatchMode::Persistent) => false,
                    Some(corral_proto::AddWatchMode::PersistentRecursive) => true,
                    None => {
                        let err = ErrorCode::MarshallingError;
                        link.reply(xid, link.last_zxid(), err, &Response::Empty);
                        return;
                    }
                };
                let mut st = link.keeper.state();
                st.watches.add_persistent(link.id, &aw.path, recursive);
                // Under the lock, like a read's reply: before any event of this watch.
                let ok = Response::ErrorResponse(ErrorCode::Ok.code());
                link.reply(xid, st.tree.last_zxid(), ErrorCode::Ok, &ok);
            }
            Request::CheckWatches(w) => {
                let err = self.watch_removal(&w.path, w.watcher_type, false);
                link.reply(xid, link.last_zxid(), err, &Response::Empty);
            }
            Request::RemoveWatches(w) => {
                let err = self.watch_removal(&w.path, w.watcher_type, true);
                link.reply(xid, link.last_zxid(), err, &Response::Empty);
            }
            Request::WhoAmI => {
                let info = self
                    .identities
                    .iter()
                    .map(|id| ClientInfo {
                        auth_scheme: id.scheme.clone(),
                        // ZooKeeper names the digest user, not the stored `user:hash` id.
                        user: match id.scheme.as_str() {
                            "digest" => id.id.split(':').next().unwrap_or_default().to_string(),
                            _ => id.id.clone(),
                        },
                    })
                    .collect();
                link.reply(
                    xid,
                    link.last_zxid(),
                    ErrorCode::Ok,
                    &Response::WhoAmI(info),
                );
            }
            Request::Sasl(_) => {
                // No SASL provider is configured; ZooKeeper without one rejects the exchange.
                let err = ErrorCode::AuthFailed;
                link.reply(xid, link.last_zxid(), err, &Response::Empty);
            }
            // Writes and auth never reach here (the reader submits and handles them); a
            // stray one is answered like any request the tree does not serve.
            req => self.read(xid, &req),
        }
    }

    /// Serves a read from the local tree and registers its watch under the same lock, so no
    /// change can slip between the answer and the watch.
    fn read(&self, xid: i32, req: &Request) {
        let link = &self.link;
        let mut st = link.keeper.state();
        let (err, resp) = st.tree.read(req, self.session_id, &self.identities);
        let zxid = st.tree.last_zxid();
        let watch = match req {
            Request::Exists(r) if r.watch && matches!(err, ErrorCode::Ok | ErrorCode::NoNode) => {
                Some((Table::Data, &r.path))
            }
            Request::GetData(r) if r.watch && err == ErrorCode::Ok => Some((Table::Data, &r.path)),
            Request::GetChildren(r) | Request::GetChildren2(r)
                if r.watch && err == ErrorCode::Ok =>
            {
                Some((Table::Child, &r.path))
            }
            _ => None,
        };
        match watch {
            Some((table, path)) => {
                st.watches.add(link.id, table, path, Mode::Standard);
                // Queued before the lock is released: see the module's invariant.
                link.reply(xid, zxid, err, &resp);
            }
            None => {
                // No watch, so no event can overtake it: encode the reply outside the lock.
                drop(st);
                link.reply(xid, zxid, err, &resp);
            }
        }
    }

    /// checkWatches (`remove == false`) and removeWatches, with ZooKeeper 3.8's answers:
    /// checking succeeds when any watcher is on the path in that table; removing takes this
    /// connection's watch out of the table whatever its mode.
    fn watch_removal(&self, path: &str, watcher_type: i32, remove: bool) -> ErrorCode {
        let Some(wt) = WatcherType::from_i32(watcher_type) else {
            return ErrorCode::BadArguments;
        };
        let me = self.link.id;
        let mut st = self.link.keeper.state();
        let w = &mut st.watches;
        let found = match (wt, remove) {
            (WatcherType::Children, false) => w.any_watcher(Table::Child, path),
            (WatcherType::Data, false) => w.any_watcher(Table::Data, path),
            (WatcherType::Any, false) => {
                w.any_watcher(Table::Data, path) || w.any_watcher(Table::Child, path)
            }
            (WatcherType::Persistent, false) => {
                w.mode(me, Table::Data, path) == Some(Mode::Persistent)
            }
            (WatcherType::PersistentRecursive, false) => {
                w.mode(me, Table::Data, path) == Some(Mode::PersistentRecursive)
            }
            (WatcherType::Children, true) => w.remove(me, Table::Child, path),
            (WatcherType::Data, true) => w.remove(me, Table::Data, path),
            (WatcherType::Any, true) => {
                let child = w.remove(me, Table::Child, path);
                w.remove(me, Table::Data, path) | child
            }
            (WatcherType::Persistent | WatcherType::PersistentRecursive, true) => {
                let mode = if wt == WatcherType::Persistent {
                    Mode::Persistent
                } else {
                    Mode::PersistentRecursive
                };
                let data = w.remove_if(me, Table::Data, path, |m| m == mode);
                w.remove_if(me, Table::Child, path, |m| m == mode) | data
            }
        };
        if found {
            ErrorCode::Ok
        } else {
            ErrorCode::NoWatcher
        }
    }

    /// Re-registers a reconnecting client's watches, firing at once for what changed after
    /// `relative_zxid` (ZooKeeper's DataTree.setWatches semantics). Persistent watches are
    /// re-added without catch-up, as ZooKeeper does. The catch-up events, then the reply, are
    /// queued under the lock, so no event of a re-registered watch can overtake them.
    fn set_watches(&self, xid: i32, relative_zxid: i64, w: &Watches<'_>) {
        let link = &self.link;
        let me = link.id;
        let mut st = link.keeper.state();
        let zxid = st.tree.last_zxid();
        let mut events = Vec::new();
        // Data, then exist, then child watches: the order ZooKeeper fires catch-up events in.
        catch_up(&mut st, me, w.data, Table::Data, relative_zxid, &mut events);
        for p in w.exist {
            if st.tree.node(p).is_some() {
                events.push((EventType::NodeCreated, p));
            } else {
                st.watches.add(me, Table::Data, p, Mode::Standard);
            }
        }
        catch_up(
            &mut st,
            me,
            w.child,
            Table::Child,
            relative_zxid,
            &mut events,
        );
        for p in w.persistent {
            st.watches.add_persistent(me, p, false);
        }
        for p in w.recursive {
            st.watches.add_persistent(me, p, true);
        }
        for (event, path) in events {
            link.send(event_frame(event, path));
        }
        link.reply(xid, zxid, ErrorCode::Ok, &Response::Empty);
    }
}

/// Re-registers data (or child) watches: a node deleted, or changed (its mzxid, or pzxid for
/// children) after `relative_zxid`, gets its event now instead of a watch.
fn catch_up<'p>(
    st: &mut State,
    me: ConnId,
    paths: &'p [String],
    table: Table,
    relative_zxid: i64,
    events: &mut Vec<(EventType, &'p String)>,
) {
    for p in paths {
        let (changed_at, changed) = match (st.tree.node(p), table) {
            (None, _) => {
                events.push((EventType::NodeDeleted, p));
                continue;
            }
            (Some(n), Table::Data) => (n.stat.mzxid, EventType::NodeDataChanged),
            (Some(n), Table::Child) => (n.stat.pzxid, EventType::NodeChildrenChanged),
        };
        if changed_at > relative_zxid {
            events.push((changed, p));
        } else {
            st.watches.add(me, table, p, Mode::Standard);
        }
    }
}

/// The watches a setWatches (or setWatches2) re-registers, by kind.
struct Watches<'a> {
    data: &'a [String],
    exist: &'a [String],
    child: &'a [String],
    persistent: &'a [String],
    recursive: &'a [String],
}
