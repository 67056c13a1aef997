//! corral-client's `Client` surviving what kills sessions, against corral and against real
//! ZooKeeper 3.8 alike:
//! - a forced expiry (the client's traffic frozen by a loopback proxy past the session
//!   timeout): the state stream in order, a new session, the `EphemeralNode` back within 1 s,
//!   the lost watch reported;
//! - the same with the old session kept alive from elsewhere (the Kafka /brokers/ids/N case:
//!   the node still exists, owned by the dead session): the node is taken over;
//! - through that expiry, a `TreeCache`, a `NodeCache` and a persistent watch re-armed in the
//!   new session: the caches re-read, equal a fresh read, and report exactly the changes
//!   made while the client was cut off;
//! - a server restart (killed, restarted on the same data dir and port): the session, its
//!   ephemeral and its watch survive, and the watch fires for a change made after;
//! - a member of a 3-member ensemble killed under the client (a follower, or the leader, so
//!   the move waits for a new leader too): the client moves to another member with the same
//!   session, its ephemeral, its one-shot and its persistent watch.

mod common;
mod proxy;

use std::time::Duration;

use common::{
    events_until, unique_name, CorralEnsemble, CorralServer, Ensemble, RealZk, RealZkEnsemble,
    Restartable,
};
use corral_client::proto::{CreateMode, ErrorCode, EventType};
use corral_client::{
    creator_all_acl, open_acl_unsafe, CachedNode, Change, ChangeKind, Client, ClientBuilder,
    ClientError, ConnectOptions, Connection, EphemeralOutcome, PersistentEvent, ResyncCause,
    ResyncReport, SessionEvent, SessionState,
};
use proxy::Proxy;
use std::collections::BTreeMap;
use tokio::sync::broadcast;
use tokio::time::Instant;

/// Session timeout asked for in the expiry tests; both servers allow it with
/// minSessionTimeout=1000.
const SHORT_TIMEOUT: Duration = Duration::from_millis(2000);
const SERVER_CFG: &str = "minSessionTimeout=1000";

/// The next session event within `within`, or a panic naming what was awaited.
async fn next_event(rx: &mut broadcast::Receiver<SessionEvent>, within: Duration) -> SessionEvent {
    match tokio::time::timeout(within, rx.recv()).await {
        Ok(Ok(ev)) => ev,
        Ok(Err(e)) => panic!("session event stream failed: {e}"),
        Err(_) => panic!("no session event within {within:?}"),
    }
}

fn states(evs: &[SessionEvent]) -> Vec<SessionState> {
    evs.iter().map(|e| e.state).collect()
}

/// A plain connection straight to the server, to look at what the client did.
async fn observer(addr: &str) -> Connection {
    Connection::connect(addr, ConnectOptions::default())
        .await
        .expect("observer connection")
}

/// Polls until `path` exists with `owner` as its ephemeral owner; how long it took after
/// `since`, or None if not within `within`.
async fn owned_within(
    obs: &Connection,
    path: &str,
    owner: i64,
    since: Instant,
    within: Duration,
) -> Option<Duration> {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(Some(stat)) = obs.exists(path, false).await {
            if stat.ephemeral_owner == owner {
                return Some(since.elapsed());
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The subtree at `root` (server path) as a fresh read sees it, keyed by chroot-relative path
/// (`chroot` stripped).
async fn fresh_tree(obs: &Connection, chroot: &str, root: &str) -> BTreeMap<String, CachedNode> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_string()];
    while let Some(path) = todo.pop() {
        let (data, stat) = match obs.get_data(&path, false).await {
            Ok(v) => v,
            Err(ClientError::Server(ErrorCode::NoNode)) => continue,
            Err(e) => panic!("fresh read of {path}: {e}"),
        };
        let children = match obs.get_children(&path, false).await {
            Ok(c) => c,
            Err(ClientError::Server(ErrorCode::NoNode)) => continue,
            Err(e) => panic!("fresh read of {path}'s children: {e}"),
        };
        for c in children {
            todo.push(format!("{path}/{c}"));
        }
        let rel = path.strip_prefix(chroot).unwrap_or(&path).to_string();
        out.insert(rel, CachedNode { data, stat });
    }
    out
}

/// One resync report for each of `roots` (in that order), within `within`.
async fn resyncs_for(
    rx: &mut broadcast::Receiver<ResyncReport>,
    roots: &[&str],
    within: Duration,
) -> Vec<ResyncReport> {
    let deadline = Instant::now() + within;
    let mut got: Vec<Option<ResyncReport>> = vec![None; roots.len()];
    while got.iter().any(Option::is_none) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Ok(r)) => {
                if let Some(i) = roots.iter().position(|root| *root == r.root) {
                    assert!(
                        got[i].is_none(),
                        "a second resync report for {}: {r:?}",
                        r.root
                    );
                    got[i] = Some(r);
                }
            }
            Ok(Err(e)) => panic!("resync report stream failed: {e}"),
            Err(_) => panic!("resync reports for {roots:?} not all within {within:?}: {got:?}"),
        }
    }
    got.into_iter().flatten().collect()
}

fn change(path: &str, kind: ChangeKind) -> Change {
    Change {
        path: path.to_string(),
        kind,
    }
}

/// The forced-expiry scenario against the server at `server`. With `zombie`, the old session
/// is kept alive from a direct connection while the client's traffic is frozen, so the old
/// node still exists when the client's new session comes up.
async fn forced_expiry(server: &str, zombie: bool) {
    let proxy = Proxy::start(server.to_string()).await;
    let root = format!("/{}", unique_name("recovery"));
    let obs = observer(server).await;
    obs.create(&root, b"", &open_acl_unsafe(), CreateMode::Persistent)
        .await
        .expect("create the test root");
    obs.create(
        &format!("{root}/watched"),
        b"v0",
        &open_acl_unsafe(),
        CreateMode::Persistent,
    )
    .await
    .expect("create the watched node");
    for (p, d) in [
        ("/tree", "t"),
        ("/tree/a", "v0"),
        ("/tree/b", "b"),
        ("/tree/c", ""),
        ("/tree/c/d", "d"),
    ] {
        obs.create(
            &format!("{root}{p}"),
            d.as_bytes(),
            &open_acl_unsafe(),
            CreateMode::Persistent,
        )
        .await
        .expect("create the cached tree");
    }

    // The client sees only the chroot.
    let client = ClientBuilder::new(&format!("{}{root}", proxy.addr))
        .session_timeout(SHORT_TIMEOUT)
        .connect()
        .await
        .expect("client connects through the proxy");
    assert_eq!(client.state(), SessionState::Connected);
    let old = client.session_id();
    let timeout = client.session_timeout();
    let node = client
        .ephemeral_node("/broker", b"id=1")
        .await
        .expect("create the ephemeral node");
    let full = format!("{root}/broker");
    let stat = obs
        .exists(&full, false)
        .await
        .expect("exists")
        .expect("the node is there under the chroot");
    assert_eq!(stat.ephemeral_owner, old);
    let (_, _, watch) = client
        .get_data_w("/watched")
        .await
        .expect("leave a data watch");
    let tree = client
        .tree_cache("/tree")
        .await
        .expect("start the tree cache");
    assert_eq!(
        tree.snapshot(),
        fresh_tree(&obs, &root, &format!("{root}/tree")).await
    );
    assert_eq!(tree.snapshot().len(), 5);
    let node_cache = client
        .node_cache("/tree/a")
        .await
        .expect("start the node cache");
    assert_eq!(node_cache.current().map(|n| n.data), Some(b"v0".to_vec()));
    let mut pwatch = client
        .watch_persistent("/tree", true)
        .await
        .expect("add a persistent recursive watch");
    let mut events = client.session_events();
    let mut reports = client.recovery_reports();
    let mut resyncs = client.resync_reports();

    // Keep the old session alive from a direct connection (after the freeze, so the client
    // cannot notice and resume it).
    proxy.freeze();
    let frozen_at = Instant::now();
    // A call made while the old session is suspended must not run in the new session.
    let late_call = {
        let client = client.clone();
        tokio::spawn(async move {
            tokio::time::sleep(SHORT_TIMEOUT * 3 / 4).await;
            client
                .create("/late", b"", &open_acl_unsafe(), CreateMode::Persistent)
                .await
        })
    };
    let keeper = if zombie {
        let keeper = Connection::connect(
            server,
            ConnectOptions {
                session_timeout_ms: SHORT_TIMEOUT.as_millis() as i32,
                session_id: old,
                passwd: client.session_password(),
                ..ConnectOptions::default()
            },
        )
        .await
        .expect("resume the old session from the keeper");
        assert_eq!(keeper.session_id(), old);
        Some(keeper)
    } else {
        None
    };

    // Changes the client cannot see: its caches must find them after the expiry.
    obs.set_data(&format!("{root}/tree/a"), b"v1", -1)
        .await
        .expect("update during the outage");
    obs.delete(&format!("{root}/tree/b"), -1)
        .await
        .expect("delete during the outage");
    for p in ["/tree/new", "/tree/c/e"] {
        obs.create(
            &format!("{root}{p}"),
            b"n",
            &open_acl_unsafe(),
            CreateMode::Persistent,
        )
        .await
        .expect("create during the outage");
    }

    let suspended = next_event(&mut events, timeout * 2).await;
    assert_eq!(suspended.state, SessionState::Suspended, "{suspended:?}");
    let expired = next_event(&mut events, timeout * 2).await;
    assert_eq!(expired.state, SessionState::Expired, "{expired:?}");
    assert_eq!(expired.session_id, old);
    let expired_after = expired.at - frozen_at;
    // No server answered: the client's own clock (4/3 of the timeout after the last news)
    // declared it; the last news came at most a third of the timeout before the freeze.
    assert!(
        expired_after >= timeout && expired_after <= timeout * 4 / 3 + Duration::from_millis(500),
        "Expired {expired_after:?} after the freeze, timeout {timeout:?}"
    );
    // The watch set in the dead session resolves with the expiry.
    match tokio::time::timeout(Duration::from_secs(1), watch).await {
        Ok(Err(ClientError::SessionExpired)) => {}
        other => panic!("watch after expiry: {other:?}"),
    }
    proxy.thaw();

    let rest = events_until(&mut events, SessionState::Connected, timeout * 3).await;
    assert_eq!(
        states(&rest),
        vec![SessionState::Connecting, SessionState::Connected],
        "{rest:?}"
    );
    let connected = &rest[1];
    let new = connected.session_id;
    assert_ne!(new, old, "a new session after the expiry");
    assert_eq!(client.session_id(), new);
    let back = owned_within(&obs, &full, new, connected.at, Duration::from_secs(1)).await;
    let back = back.unwrap_or_else(|| {
        panic!("{full} not owned by the new session 0x{new:x} within 1 s of it")
    });
    eprintln!(
        "expiry (zombie={zombie}): Expired {expired_after:?} after the freeze; node owned by \
         the new session {back:?} after Connected was published"
    );

    match late_call.await.expect("late call task") {
        Err(ClientError::SessionExpired) => {}
        other => panic!("a call waiting across the expiry: {other:?}"),
    }
    assert_eq!(
        obs.exists(&format!("{root}/late"), false)
            .await
            .expect("exists"),
        None
    );

    let report = tokio::time::timeout(Duration::from_secs(1), reports.recv())
        .await
        .expect("a recovery report")
        .expect("report stream");
    assert_eq!(report.old_session_id, old);
    assert_eq!(report.new_session_id, new);
    assert_eq!(report.ephemerals.len(), 1, "{report:?}");
    assert_eq!(report.ephemerals[0].path, "/broker");
    eprintln!(
        "recovery: {:?} {:?} after the new session's handshake",
        report.ephemerals[0].outcome, report.ephemerals[0].after
    );
    if zombie {
        assert_eq!(
            report.ephemerals[0].outcome,
            EphemeralOutcome::ReplacedStale { old_owner: old },
            "{report:?}"
        );
    } else {
        assert!(
            matches!(
                report.ephemerals[0].outcome,
                EphemeralOutcome::Created | EphemeralOutcome::ReplacedStale { .. }
            ),
            "{report:?}"
        );
    }
    assert_eq!(
        report.lost_watches,
        vec![("/watched".to_string(), corral_client::WatchKind::Data)]
    );
    assert!(
        report
            .rearmed
            .iter()
            .any(|(p, rec, r)| p == "/tree" && *rec && r.is_ok()),
        "{report:?}"
    );

    // The caches re-read in the new session and report exactly the outage's changes.
    let cause = ResyncCause::NewSession {
        old_session_id: old,
        new_session_id: new,
    };
    let mut got = resyncs_for(&mut resyncs, &["/tree", "/tree/a"], Duration::from_secs(2)).await;
    let node_report = got.pop().expect("two reports");
    let tree_report = got.pop().expect("two reports");
    let resynced_after = connected.at.elapsed();
    assert_eq!(tree_report.cause, cause);
    assert_eq!(
        tree_report.changes,
        vec![
            change("/tree/a", ChangeKind::Updated),
            change("/tree/b", ChangeKind::Deleted),
            change("/tree/c/e", ChangeKind::Created),
            change("/tree/new", ChangeKind::Created),
        ]
    );
    assert_eq!(node_report.cause, cause);
    assert_eq!(
        node_report.changes,
        vec![change("/tree/a", ChangeKind::Updated)]
    );
    let fresh = fresh_tree(&obs, &root, &format!("{root}/tree")).await;
    assert_eq!(tree.snapshot(), fresh, "tree cache after the re-read");
    assert_eq!(fresh.len(), 6);
    assert_eq!(node_cache.current().map(|n| n.data), Some(b"v1".to_vec()));
    eprintln!(
        "caches: both re-read {resynced_after:?} after Connected; tree changes {:?}",
        tree_report.changes
    );
    // The persistent watch says where its gap is, then works in the new session.
    match tokio::time::timeout(Duration::from_secs(1), pwatch.next()).await {
        Ok(Some(PersistentEvent::Rearmed {
            session_id,
            expired_session,
        })) => {
            assert_eq!(session_id, new);
            assert_eq!(expired_session, Some(old));
        }
        other => panic!("persistent watch after the expiry: {other:?}"),
    }
    obs.set_data(&format!("{root}/tree/c/d"), b"d2", -1)
        .await
        .expect("update after recovery");
    match tokio::time::timeout(Duration::from_secs(2), pwatch.next()).await {
        Ok(Some(PersistentEvent::Node(ev))) => {
            assert_eq!(ev.event_type, EventType::NodeDataChanged);
            assert_eq!(ev.path, "/tree/c/d");
        }
        other => panic!("persistent watch in the new session: {other:?}"),
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while tree.get("/tree/c/d").map(|n| n.data) != Some(b"d2".to_vec()) {
        assert!(
            Instant::now() < deadline,
            "tree cache did not see the change after recovery"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        tree.snapshot(),
        fresh_tree(&obs, &root, &format!("{root}/tree")).await
    );

    if let Some(keeper) = keeper {
        // The old session ending now must not take the node with it: it is the new one's.
        keeper.close().await.expect("close the old session");
        let stat = obs
            .exists(&full, false)
            .await
            .expect("exists")
            .expect("node survives the old session's end");
        assert_eq!(stat.ephemeral_owner, new);
    }
    // The client works in its new session.
    let (data, _) = client
        .get_data("/broker")
        .await
        .expect("read via the client");
    assert_eq!(data, b"id=1");
    node.remove().await.expect("remove the node");
    assert_eq!(obs.exists(&full, false).await.expect("exists"), None);
    client.close().await.expect("close");
}

async fn server_restart(server: &mut dyn Restartable) {
    let addr = server.addr();
    let root = format!("/{}", unique_name("restart"));
    {
        let obs = observer(&addr).await;
        obs.create(&root, b"", &open_acl_unsafe(), CreateMode::Persistent)
            .await
            .expect("create the test root");
        obs.create(
            &format!("{root}/watched"),
            b"v0",
            &open_acl_unsafe(),
            CreateMode::Persistent,
        )
        .await
        .expect("create the watched node");
        obs.close().await.expect("close the observer");
    }
    let client = ClientBuilder::new(&format!("{addr}{root}"))
        .session_timeout(Duration::from_secs(20))
        .connect()
        .await
        .expect("client connects");
    let sid = client.session_id();
    let _node = client
        .ephemeral_node("/eph", b"")
        .await
        .expect("create the ephemeral");
    let (data, _, watch) = client
        .get_data_w("/watched")
        .await
        .expect("leave a data watch");
    assert_eq!(data, b"v0");
    let mut events = client.session_events();

    let t0 = Instant::now();
    // Down long enough for the clients' backoff to grow (ceilings of 400-800 ms): a server
    // back within ~250 ms (corral) finds them all in their first short waits, and its
    // listener, bound before it accepts, queues them to be answered in one instant.
    tokio::task::block_in_place(|| server.kill_and_restart_after(Duration::from_millis(1500)))
        .expect("restart the server");
    let restarted = t0.elapsed();
    let evs = events_until(
        &mut events,
        SessionState::Connected,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(
        states(&evs),
        vec![SessionState::Suspended, SessionState::Connected],
        "{evs:?}"
    );
    assert_eq!(evs[1].session_id, sid, "the same session resumed");
    eprintln!(
        "restart: server back after {restarted:?}; session resumed {:?} after the kill",
        evs[1].at - t0
    );

    let obs = observer(&addr).await;
    kept_ephemeral_and_watch(&obs, &root, sid, "/watched", watch).await;
    client.close().await.expect("close");
}

/// After a move or a restart, seen through `obs` (no chroot): `{root}/eph` is still owned by
/// session `sid`, and a change to the client's `watched` node (under the client's chroot
/// `root`) fires the one-shot `watch` the client set before.
async fn kept_ephemeral_and_watch(
    obs: &Connection,
    root: &str,
    sid: i64,
    watched: &str,
    watch: corral_client::Watch,
) {
    let stat = obs
        .exists(&format!("{root}/eph"), false)
        .await
        .expect("exists")
        .expect("the ephemeral survived");
    assert_eq!(stat.ephemeral_owner, sid);
    obs.set_data(&format!("{root}{watched}"), b"v1", -1)
        .await
        .expect("change the watched node");
    let fired = tokio::time::timeout(Duration::from_secs(5), watch)
        .await
        .expect("the watch fires within 5 s of the change")
        .expect("the watch fires, not fails");
    assert_eq!(fired.event_type, EventType::NodeDataChanged);
    assert_eq!(fired.path, watched);
}

/// The server in use becomes unreachable (its proxy frozen): the client moves to the other
/// address in its list and resumes the same session, with its ephemeral and its watch.
async fn server_move(server: &str) {
    let a = Proxy::start(server.to_string()).await;
    let b = Proxy::start(server.to_string()).await;
    let root = format!("/{}", unique_name("move"));
    let obs = observer(server).await;
    for (p, d) in [
        (root.clone(), ""),
        (format!("{root}/w"), "v0"),
        (format!("{root}/n"), "n0"),
    ] {
        obs.create(&p, d.as_bytes(), &open_acl_unsafe(), CreateMode::Persistent)
            .await
            .expect("create test nodes");
    }
    let client = ClientBuilder::new(&format!("{},{}{root}", a.addr, b.addr))
        .session_timeout(Duration::from_secs(4))
        .auth("digest", b"mover:secret")
        .connect()
        .await
        .expect("connect");
    let sid = client.session_id();
    // Readable only with the identity the client authenticated as: the server keeps auth per
    // connection, so reading it after the move proves the auth was re-sent.
    client
        .create("/secret", b"s", &creator_all_acl(), CreateMode::Persistent)
        .await
        .expect("create a node only our identity may read");
    match obs.get_data(&format!("{root}/secret"), false).await {
        Err(ClientError::Server(ErrorCode::NoAuth)) => {}
        other => panic!("an unauthenticated read of /secret: {other:?}"),
    }
    let _node = client.ephemeral_node("/eph", b"").await.expect("ephemeral");
    let (_, _, watch) = client.get_data_w("/w").await.expect("watch");
    let using = client.status().server.expect("a server while connected");
    let (frozen, other) = if using == a.addr { (&a, &b) } else { (&b, &a) };
    assert_eq!(using, frozen.addr);
    let node_cache = client.node_cache("/n").await.expect("node cache");
    let mut resyncs = client.resync_reports();
    let mut events = client.session_events();
    frozen.freeze();
    let t0 = Instant::now();
    // A change the client cannot see until it moves: the resumed session's re-read finds it.
    obs.set_data(&format!("{root}/n"), b"n1", -1)
        .await
        .expect("change the cached node during the freeze");
    let evs = events_until(
        &mut events,
        SessionState::Connected,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        states(&evs),
        vec![SessionState::Suspended, SessionState::Connected],
        "{evs:?}"
    );
    assert_eq!(evs[1].session_id, sid, "same session on the other server");
    assert_eq!(evs[1].server.as_deref(), Some(other.addr.as_str()));
    eprintln!(
        "server move: Suspended {:?}, resumed on the other server {:?} after the freeze",
        evs[0].at - t0,
        evs[1].at - t0
    );
    let report = resyncs_for(&mut resyncs, &["/n"], Duration::from_secs(2))
        .await
        .pop()
        .expect("one report");
    assert_eq!(
        report.cause,
        ResyncCause::Reconnected { session_id: sid },
        "{report:?}"
    );
    assert_eq!(report.changes, vec![change("/n", ChangeKind::Updated)]);
    assert_eq!(node_cache.current().map(|n| n.data), Some(b"n1".to_vec()));
    // The persistent watch under the cache was re-sent with setWatches2: it still fires.
    obs.set_data(&format!("{root}/n"), b"n2", -1)
        .await
        .expect("change the cached node after the move");
    let deadline = Instant::now() + Duration::from_secs(2);
    while node_cache.current().map(|n| n.data) != Some(b"n2".to_vec()) {
        assert!(
            Instant::now() < deadline,
            "the node cache missed a change after the move"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    kept_ephemeral_and_watch(&obs, &root, sid, "/w", watch).await;
    let (secret, _) = client
        .get_data("/secret")
        .await
        .expect("read /secret on the new connection (auth re-sent)");
    assert_eq!(secret, b"s");
    client.close().await.expect("close");
    assert_eq!(client.state(), SessionState::Closed);
    assert!(matches!(client.exists("/").await, Err(ClientError::Closed)));
}

/// Session timeout of the ensemble move tests: the move must finish well inside it.
const MOVE_TIMEOUT: Duration = Duration::from_secs(6);

/// A plain connection to `addr`, retried for up to `within` (a member that just took part in
/// an election may still be refusing clients).
async fn observer_within(addr: &str, within: Duration) -> Connection {
    let deadline = Instant::now() + within;
    loop {
        match Connection::connect(addr, ConnectOptions::default()).await {
            Ok(c) => return c,
            Err(e) if Instant::now() >= deadline => {
                panic!("observer connection to {addr} within {within:?}: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// A client of a whole 3-member ensemble (its connect string holds every member) whose member
/// is killed -9, that member being the leader (`kill_leader`) or a follower: the client moves
/// to another member within the session timeout and resumes the same session there, with its
/// ephemeral, its one-shot data watch and its persistent watch; no Expired.
async fn ensemble_member_killed(ens: &mut dyn Ensemble, kill_leader: bool, name: &str) {
    let addrs = ens.addrs();
    let leader = ens
        .leader_within(Duration::from_secs(20))
        .expect("a leader");
    let root = format!("/{}", unique_name("ens-move"));
    {
        let obs = observer(&addrs[0]).await;
        for (p, d) in [
            (root.clone(), ""),
            (format!("{root}/w"), "v0"),
            (format!("{root}/p"), "p0"),
        ] {
            obs.create(&p, d.as_bytes(), &open_acl_unsafe(), CreateMode::Persistent)
                .await
                .expect("create test nodes");
        }
        obs.close().await.expect("close the set-up observer");
    }
    // The client starts at a random member: connect until it is on the role to kill.
    let connect_string = format!("{}{root}", addrs.join(","));
    let mut tries = 0;
    let (client, killed) = loop {
        tries += 1;
        assert!(tries <= 30, "never connected to the member wanted");
        let client = ClientBuilder::new(&connect_string)
            .session_timeout(MOVE_TIMEOUT)
            .connect()
            .await
            .expect("connect to the ensemble");
        let using = client.status().server.expect("a server while connected");
        let i = addrs
            .iter()
            .position(|a| *a == using)
            .unwrap_or_else(|| panic!("{using} is no member of {addrs:?}"));
        if (i == leader) == kill_leader {
            break (client, i);
        }
        client
            .close()
            .await
            .expect("close a client on the wrong member");
    };
    let sid = client.session_id();
    let timeout = client.session_timeout();
    assert_eq!(timeout, MOVE_TIMEOUT, "negotiated session timeout");
    let _node = client
        .ephemeral_node("/eph", b"e")
        .await
        .expect("create the ephemeral");
    let (data, _, watch) = client.get_data_w("/w").await.expect("leave a data watch");
    assert_eq!(data, b"v0");
    let mut pwatch = client
        .watch_persistent("/p", false)
        .await
        .expect("add a persistent watch");
    let mut events = client.session_events();

    let t0 = Instant::now();
    tokio::task::block_in_place(|| ens.kill9(killed)).expect("kill -9 the client's member");
    let evs = events_until(&mut events, SessionState::Connected, timeout).await;
    assert_eq!(
        states(&evs),
        vec![SessionState::Suspended, SessionState::Connected],
        "{evs:?}"
    );
    let connected = &evs[1];
    assert_eq!(connected.session_id, sid, "the same session after the move");
    let now_on = connected
        .server
        .clone()
        .expect("Connected names its server");
    let moved_to = addrs
        .iter()
        .position(|a| *a == now_on)
        .unwrap_or_else(|| panic!("{now_on} is no member of {addrs:?}"));
    assert_ne!(moved_to, killed, "moved to another member");
    let took = connected.at - t0;
    assert!(took < timeout, "Connected {took:?} after the kill");
    // A write through the client needs a leader: after a leader's kill, the new one.
    client
        .create("/after", b"", &open_acl_unsafe(), CreateMode::Persistent)
        .await
        .expect("a write through the client after the move");
    let wrote = t0.elapsed();
    eprintln!(
        "{name}: {} (member {}) killed -9; Suspended {:?}, Connected to member {} with the same \
         session {:?} after the kill; first write through the client done {:?} after it",
        if kill_leader { "leader" } else { "follower" },
        killed + 1,
        evs[0].at - t0,
        moved_to + 1,
        took,
        wrote
    );

    // Look from the third member: neither killed nor the one the client is on.
    let third = (0..addrs.len())
        .find(|i| *i != killed && *i != moved_to)
        .expect("a third member");
    let obs = observer_within(&addrs[third], Duration::from_secs(5)).await;
    obs.sync(&root).await.expect("sync the observer");
    kept_ephemeral_and_watch(&obs, &root, sid, "/w", watch).await;

    match tokio::time::timeout(Duration::from_secs(1), pwatch.next()).await {
        Ok(Some(PersistentEvent::Rearmed {
            session_id,
            expired_session,
        })) => {
            assert_eq!(session_id, sid);
            assert_eq!(expired_session, None);
        }
        other => panic!("persistent watch after the move: {other:?}"),
    }
    obs.set_data(&format!("{root}/p"), b"p1", -1)
        .await
        .expect("change the persistently watched node");
    match tokio::time::timeout(Duration::from_secs(5), pwatch.next()).await {
        Ok(Some(PersistentEvent::Node(ev))) => {
            assert_eq!(ev.event_type, EventType::NodeDataChanged);
            assert_eq!(ev.path, "/p");
        }
        other => panic!("persistent watch after the move: {other:?}"),
    }

    // Nothing else happened to the session: no Expired, still Connected to the same one.
    let mut later = Vec::new();
    while let Ok(ev) = events.try_recv() {
        later.push(ev);
    }
    assert!(later.is_empty(), "session events after the move: {later:?}");
    assert_eq!(client.state(), SessionState::Connected);
    assert_eq!(client.session_id(), sid);
    let (data, _) = client.get_data("/eph").await.expect("read via the client");
    assert_eq!(data, b"e");
    client.close().await.expect("close");
    obs.sync(&root).await.expect("sync the observer");
    assert_eq!(
        obs.exists(&format!("{root}/eph"), false)
            .await
            .expect("exists"),
        None,
        "the ephemeral goes with the closed session"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensemble_follower_killed_client_moves_corral() {
    let mut ens = CorralEnsemble::start(3, "");
    ensemble_member_killed(&mut ens, false, "corral").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensemble_leader_killed_client_moves_corral() {
    let mut ens = CorralEnsemble::start(3, "");
    ensemble_member_killed(&mut ens, true, "corral").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensemble_follower_killed_client_moves_real_zk() {
    let Some(mut ens) = RealZkEnsemble::start(3, "") else {
        return;
    };
    ensemble_member_killed(&mut ens, false, "zookeeper").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensemble_leader_killed_client_moves_real_zk() {
    let Some(mut ens) = RealZkEnsemble::start(3, "") else {
        return;
    };
    ensemble_member_killed(&mut ens, true, "zookeeper").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_move_keeps_session_corral() {
    let server = CorralServer::start(SERVER_CFG);
    server_move(&server.addr()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_move_keeps_session_real_zk() {
    let Some(zk) = RealZk::start(SERVER_CFG) else {
        return;
    };
    server_move(&zk.addr()).await;
}

/// 200 clients of one server that is killed and restarted: every session is resumed, and the
/// reconnects are spread over time by the jittered backoff (the histogram is printed).
async fn many_clients_restart(server: &mut dyn Restartable, name: &str) {
    const N: usize = 200;
    let addr = server.addr();
    let mut clients = Vec::with_capacity(N);
    for _ in 0..N {
        let c = ClientBuilder::new(&addr)
            .session_timeout(Duration::from_secs(20))
            .connect()
            .await
            .expect("connect");
        let rx = c.session_events();
        clients.push((c, rx));
    }
    let t0 = Instant::now();
    // Down long enough for the clients' backoff to grow (ceilings of 400-800 ms): a server
    // back within ~250 ms (corral) finds them all in their first short waits, and its
    // listener, bound before it accepts, queues them to be answered in one instant.
    tokio::task::block_in_place(|| server.kill_and_restart_after(Duration::from_millis(1500)))
        .expect("restart the server");
    let back = t0.elapsed();
    eprintln!("{name}: serving again {back:?} after the kill");
    let mut waits = Vec::with_capacity(N);
    for (c, mut rx) in clients {
        let sid = c.session_id();
        let evs = events_until(&mut rx, SessionState::Connected, Duration::from_secs(30)).await;
        let last = evs.last().expect("a Connected event");
        assert_eq!(last.session_id, sid, "session resumed: {evs:?}");
        waits.push((last.at - t0, c));
    }
    let mut times: Vec<Duration> = waits.iter().map(|(d, _)| *d).collect();
    times.sort();
    let first = times[0];
    let last = times[N - 1];
    let bucket = Duration::from_millis(100);
    let mut hist: std::collections::BTreeMap<u128, usize> = Default::default();
    for t in &times {
        *hist.entry(t.as_millis() / bucket.as_millis()).or_default() += 1;
    }
    let lines: Vec<String> = hist
        .iter()
        .map(|(b, n)| format!("{:>5}-{:<5} ms {n:>4}", b * 100, (b + 1) * 100))
        .collect();
    eprintln!(
        "{name}: {N} sessions resumed; server serving again {back:?} after the kill; \
         reconnects from {first:?} to {last:?}:\n{}",
        lines.join("\n")
    );
    // Jittered backoff: the reconnects must not all land in one instant.
    assert!(
        last - first >= Duration::from_millis(50),
        "all {N} reconnects within {:?}",
        last - first
    );
    for (_, c) in waits {
        c.close().await.expect("close");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_resume_after_restart_corral() {
    let mut server = CorralServer::start(SERVER_CFG);
    many_clients_restart(&mut server, "corral").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_resume_after_restart_real_zk() {
    let Some(mut zk) = RealZk::start(SERVER_CFG) else {
        return;
    };
    many_clients_restart(&mut zk, "zookeeper").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_expiry_corral() {
    let server = CorralServer::start(SERVER_CFG);
    forced_expiry(&server.addr(), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_expiry_old_node_still_owned_corral() {
    let server = CorralServer::start(SERVER_CFG);
    forced_expiry(&server.addr(), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restart_keeps_session_and_watches_corral() {
    let mut server = CorralServer::start(SERVER_CFG);
    server_restart(&mut server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_expiry_real_zk() {
    let Some(zk) = RealZk::start(SERVER_CFG) else {
        return;
    };
    forced_expiry(&zk.addr(), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_expiry_old_node_still_owned_real_zk() {
    let Some(zk) = RealZk::start(SERVER_CFG) else {
        return;
    };
    forced_expiry(&zk.addr(), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restart_keeps_session_and_watches_real_zk() {
    let Some(mut zk) = RealZk::start(SERVER_CFG) else {
        return;
    };
    server_restart(&mut zk).await;
}

/// Recovery off: Expired is terminal and calls fail with SessionExpired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_without_recovery_is_terminal_corral() {
    let server = CorralServer::start(SERVER_CFG);
    let proxy = Proxy::start(server.addr()).await;
    let client = ClientBuilder::new(&proxy.addr)
        .session_timeout(SHORT_TIMEOUT)
        .recovery(false)
        .connect()
        .await
        .expect("connect");
    let mut events = client.session_events();
    proxy.freeze();
    let t = client.session_timeout();
    assert_eq!(
        next_event(&mut events, t * 2).await.state,
        SessionState::Suspended
    );
    assert_eq!(
        next_event(&mut events, t * 2).await.state,
        SessionState::Expired
    );
    proxy.thaw();
    match client.exists("/").await {
        Err(ClientError::SessionExpired) => {}
        other => panic!("call after a terminal expiry: {other:?}"),
    }
    // Nothing follows: no new session.
    assert!(
        tokio::time::timeout(t, events.recv()).await.is_err(),
        "no event after a terminal Expired"
    );
    assert_eq!(client.state(), SessionState::Expired);
}

/// A dead server first in the list: the client moves on to the live one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_list_skips_a_dead_server_corral() {
    let server = CorralServer::start(SERVER_CFG);
    let dead = format!("127.0.0.1:{}", common::free_port());
    for _ in 0..4 {
        let client = Client::connect(&format!("{dead},{}", server.addr()))
            .await
            .expect("connect through a list with a dead server");
        let ev = client.exists("/").await.expect("exists /");
        assert!(ev.is_some());
        client.close().await.expect("close");
    }
}
