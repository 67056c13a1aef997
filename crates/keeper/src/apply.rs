//! The apply path: a committed entry goes to the tree, then to session tracking, then to the
//! watches it fires, whose events are queued to the connections that registered them.
//!
//! Invariant: the tree change and the event fan-out happen under one hold of the state lock,
//! so an event is queued after every reply that registered its watch and before any reply
//! that could show the change. Must not: block (it runs on consensus's apply task), or take
//! the session tracker's lock while holding the state lock.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use corral_proto::{message::notification_body, EventType, KeeperState, WatcherEvent};
use corral_tree::obituary::{self, Obituary};
use corral_tree::{ApplyResult, DataTree, Entry, EntryOp, Node, Trigger};
use tracing::{info, warn};

use corral_tree::reconfig::{ServerConfig, CONFIG_NODE};

use crate::consensus::{
    DesiredMembership, NodeId, RestoreError, SnapshotEncoder, StateMachineHook,
};
use crate::outbound::Pushed;
use crate::shared::{Shared, State};
use crate::watch::{Mode, Table, WatchRegistry};

/// Snapshot bytes are streamed to disk in pieces of this size: small enough that no large
/// buffer is ever allocated, large enough that each write call is worth making.
const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;

/// The keeper's side of consensus's state machine.
pub(crate) struct Hook(Arc<Shared>);

impl Hook {
    pub(crate) fn new(keeper: Arc<Shared>) -> Hook {
        Hook(keeper)
    }
}

impl StateMachineHook for Hook {
    fn apply(&self, zxid: i64, entry: &Entry) -> ApplyResult {
        let keeper = &self.0;
        let res = {
            let mut st = keeper.state();
            let res = st.tree.apply(zxid, entry);
            keeper.publish_last_zxid(st.tree.last_zxid());
            fan_out(keeper, &mut st, &res.triggers);
            res
        };
        track_sessions(keeper, entry, &res);
        // Logged outside the lock; entries replayed at start-up said theirs when first applied.
        if keeper.consensus().is_some() {
            keeper
                .stats
                .log_quota_warnings(&res.quota_warnings, keeper.uptime_ms());
        }
        res
    }

    fn last_applied(&self) -> i64 {
        self.0.last_zxid()
    }

    /// The tree is built on persistent maps, so this clone is O(1) and the lock is held only
    /// for that; the encoding runs later on a blocking thread while applies continue.
    fn snapshot(&self) -> Option<SnapshotEncoder> {
        let view = self.0.state().tree.clone();
        Some(Arc::new(move |scratch, sink| {
            view.write_snapshot_in(SNAPSHOT_CHUNK_BYTES, scratch, sink)
        }))
    }

    /// The ensemble's `/zookeeper/config`: participants vote, observers learn, each at its
    /// quorum address.
    fn desired_membership(&self) -> Option<DesiredMembership> {
        let data = {
            let st = self.0.state();
            st.tree.node(CONFIG_NODE)?.data.clone()?
        };
        let config = ServerConfig::parse(&data)?;
        // `since` is consensus's to fill in.
        let mut want = DesiredMembership::default();
        for m in &config.members {
            // ZooKeeper takes any long; raft ids are unsigned.
            let Ok(id) = NodeId::try_from(m.id) else {
                warn!(
                    id = m.id,
                    "a member with a negative id is left out of the membership"
                );
                continue;
            };
            let side = if m.observer {
                &mut want.learners
            } else {
                &mut want.voters
            };
            side.insert(id, m.quorum_addr());
        }
        Some(want)
    }

    /// At start-up, and on an ensemble member that installs its leader's snapshot while it
    /// serves clients: their watches fire for what the snapshot changed, and sessions that
    /// ended meanwhile lose their connections, as applying the skipped entries would have.
    fn restore(&self, bytes: &[u8]) -> Result<(), RestoreError> {
        let keeper = &self.0;
        // Consensus names the zxid in the error it wraps this in.
        let mut tree = crate::storage::restore::decode_snapshot(bytes)?;
        let (began, ended) = {
            let mut st = keeper.state();
            // Settings come from this run's configuration, not from the one that wrote the
            // snapshot.
            tree.set_config(st.tree.config().clone());
            keeper.publish_last_zxid(tree.last_zxid());
            let old = std::mem::replace(&mut st.tree, tree);
            let triggers = changed_under_watches(&old, &st.tree, &st.watches);
            fan_out(keeper, &mut st, &triggers);
            let new = &st.tree;
            let began: Vec<(i64, i32)> = new
                .sessions()
                .filter(|(id, _)| old.session(**id).is_none())
                .map(|(id, s)| (*id, s.timeout_ms))
                .collect();
            let ended: Vec<i64> = old
                .sessions()
                .map(|(id, _)| *id)
                .filter(|id| new.session(*id).is_none())
                .collect();
            (began, ended)
        };
        // Liveness follows the snapshot's sessions, so a member that leads later expires
        // the sessions created while it was behind, and not those already gone.
        {
            let now = tokio::time::Instant::now();
            let mut sessions = keeper.sessions();
            for (id, timeout) in began {
                sessions.track(id, Duration::from_millis(timeout.max(0) as u64), now);
            }
            for id in &ended {
                sessions.forget(*id);
            }
        }
        for id in ended {
            if let Some(c) = keeper.conns().detach_session(id) {
                c.out.close("session expired");
            }
        }
        Ok(())
    }
}

/// The watch events a change from `old` to `new` owes the watches registered now, as if each
/// entry between them had been applied: for each watched path, its creation, deletion, data
/// change or children change; under each recursive watch, every node created, deleted or
/// changed. The order between paths is not the order of the changes (which the snapshot no
/// longer tells), and a node deleted and re-created counts as changed, as a reconnecting
/// client's setWatches sees it.
fn changed_under_watches(old: &DataTree, new: &DataTree, watches: &WatchRegistry) -> Vec<Trigger> {
    let mut watched = BTreeSet::new();
    let mut recursive = BTreeSet::new();
    for (conn, table, path) in watches.entries() {
        if watches.mode(conn, table, path) == Some(Mode::PersistentRecursive) {
            recursive.insert(path);
        } else {
            watched.insert((table, path));
        }
    }
    let mut out = Vec::new();
    let mut queued = HashSet::new();
    let mut push = |event: EventType, path: &str| {
        if queued.insert((event, path.to_string())) {
            out.push(Trigger {
                event,
                path: path.to_string(),
            });
        }
    };
    let data_changed =
        |o: &Node, n: &Node| o.stat.mzxid != n.stat.mzxid || o.stat.czxid != n.stat.czxid;
    for (table, path) in watched {
        match (old.node(path), new.node(path), table) {
            (Some(_), None, _) => push(EventType::NodeDeleted, path),
            (None, Some(_), Table::Data) => push(EventType::NodeCreated, path),
            (Some(o), Some(n), Table::Data) if data_changed(o, n) => {
                push(EventType::NodeDataChanged, path)
            }
            (Some(o), Some(n), Table::Child)
                if o.stat.pzxid != n.stat.pzxid || o.stat.czxid != n.stat.czxid =>
            {
                push(EventType::NodeChildrenChanged, path)
            }
            _ => {}
        }
    }
    for root in recursive {
        for_each_below(new, root, &mut |path, n| match old.node(path) {
            None => push(EventType::NodeCreated, path),
            Some(o) if data_changed(o, n) => push(EventType::NodeDataChanged, path),
            Some(_) => {}
        });
        for_each_below(old, root, &mut |path, _| {
            if new.node(path).is_none() {
                push(EventType::NodeDeleted, path);
            }
        });
    }
    out
}

/// Calls `f` on `root` and every node below it in `tree`.
fn for_each_below(tree: &DataTree, root: &str, f: &mut dyn FnMut(&str, &Node)) {
    let mut stack = vec![root.to_string()];
    while let Some(path) = stack.pop() {
        let Some(node) = tree.node(&path) else {
            continue;
        };
        f(&path, node);
        for child in &node.children {
            stack.push(if path == "/" {
                format!("/{child}")
            } else {
                format!("{path}/{child}")
            });
        }
    }
}

/// Queues the events of the watches this change fired, under the state lock (see the
/// module's invariant).
fn fan_out(keeper: &Shared, st: &mut State, triggers: &[Trigger]) {
    if triggers.is_empty() {
        return;
    }
    let mut conns = None;
    for trigger in triggers {
        let targets = st.watches.fire(trigger.event, &trigger.path);
        if targets.is_empty() {
            continue;
        }
        let conns = conns.get_or_insert_with(|| keeper.conns());
        let body = event_frame(trigger.event, &trigger.path);
        for conn in targets {
            let Some(c) = conns.get(conn) else { continue };
            if c.out.push(body.clone()) == Pushed::Overflowed {
                // The writer closes it; its watches go with the connection.
                warn!(
                    remote = %c.remote,
                    session = format!("0x{:x}", c.session_id),
                    queued_bytes = c.out.queued_bytes(),
                    "watch events are piling up unread; closing the connection"
                );
            }
        }
    }
}

/// The whole story of a session's end in one INFO line, every field a key=value, so log
/// pipelines can search them; the same line on every member.
fn log_obituary(ob: &Obituary) {
    let e = &ob.evidence;
    let history: Vec<String> = e
        .history
        .iter()
        .map(|h| {
            let mut s = format!(
                "{}@{}:member{}:{}",
                h.kind.name(),
                h.at_ms,
                h.member,
                h.remote
            );
            if !h.cause.is_empty() {
                s.push_str(&format!(" ({})", h.cause));
            }
            s
        })
        .collect();
    info!(
        session = format!("0x{:x}", ob.session_id),
        cause = e.cause.name(),
        zxid = format!("0x{:x}", ob.zxid),
        ended_ms = ob.ended_ms,
        created_ms = ob.created_ms,
        timeout_ms = ob.timeout_ms,
        requested_timeout_ms = e.requested_timeout_ms,
        remote = e.remote.as_str(),
        member = e.member,
        silent_ms = e.silent_ms,
        last_op = e.last_op.as_str(),
        stall_forgiven_ms = e.stall_forgiven_ms,
        ephemerals_deleted = ob.ephemerals_deleted,
        ephemerals = ?ob.ephemerals,
        kafka_brokers = ?obituary::kafka_broker_ids(&ob.ephemerals),
        history = ?history,
        "session ended: {}",
        e.detail
    );
}

/// Session liveness follows the sessions the log creates and closes.
fn track_sessions(keeper: &Shared, entry: &Entry, res: &ApplyResult) {
    let now = tokio::time::Instant::now();
    match &entry.op {
        EntryOp::CreateSession {
            session_id,
            timeout_ms,
            ..
        } => {
            let timeout = Duration::from_millis((*timeout_ms).max(0) as u64);
            let mut sessions = keeper.sessions();
            sessions.track(*session_id, timeout, now);
            // Session ids carry their creating member's id in the top byte.
            let creator = (*session_id as u64) >> 56;
            if creator != 0 {
                sessions.created_through(*session_id, creator);
            }
        }
        EntryOp::CloseSession { session_id, .. } => {
            // A session closed by anyone but its own client has expired.
            let expired = entry.session_id != *session_id;
            keeper.sessions().end(*session_id, expired);
            // Entries replayed at start-up told theirs when first applied.
            if let Some(ob) = res
                .obituary
                .as_ref()
                .filter(|_| keeper.consensus().is_some())
            {
                keeper.sessions().count_end(ob.evidence.cause);
                log_obituary(ob);
            }
            // An expired session also loses its connection; the client's own close is
            // answered first by the connection.
            if expired {
                if let Some(c) = keeper.conns().detach_session(*session_id) {
                    c.out.close("session expired");
                }
            }
        }
        _ => {}
    }
}

/// Builds a notification frame body for one event. Its header carries zxid -1, as
/// ZooKeeper 3.8 sends it (3.9 sends the zxid of the change).
pub(crate) fn event_frame(event: EventType, path: &str) -> Vec<u8> {
    notification_body(
        -1,
        &WatcherEvent {
            event_type: event.code(),
            state: KeeperState::SyncConnected.code(),
            path: path.to_string(),
        },
    )
}
