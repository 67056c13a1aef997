//! A 3-member corral ensemble on loopback, driven by the `zookeeper-client` crate: writes at
//! any member, reads after `sync`, sessions that move between members, and a leader killed
//! under load or frozen while the clients of the other members keep their connections,
//! sessions and every acknowledged write.

mod common;

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{unique_name, CorralEnsemble};
use zookeeper_client as zk;

const TIMEOUT: Duration = Duration::from_secs(10);

async fn connect(addr: &str) -> zk::Client {
    connect_with(addr, None).await
}

async fn connect_with(addr: &str, session: Option<zk::SessionInfo>) -> zk::Client {
    let mut c = zk::Client::connector().with_session_timeout(TIMEOUT);
    if let Some(s) = session {
        c = c.with_session(s);
    }
    tokio::time::timeout(Duration::from_secs(20), c.connect(addr))
        .await
        .unwrap_or_else(|_| panic!("connect {addr}: timed out"))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"))
}

fn persistent() -> zk::CreateOptions<'static> {
    zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())
}

fn ephemeral() -> zk::CreateOptions<'static> {
    zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all())
}

fn modes(ens: &CorralEnsemble) -> Vec<String> {
    ens.members
        .iter()
        .map(|m| {
            m.four_letter("srvr")
                .lines()
                .find_map(|l| l.strip_prefix("Mode: ").map(str::to_string))
                .unwrap_or_else(|| "none".into())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_at_any_member_are_seen_everywhere_and_sessions_move() {
    let mut ens = CorralEnsemble::start(3, "");
    let leader = ens.leader(Duration::from_secs(10)).expect("a leader");
    let mut roles = modes(&ens);
    roles.sort();
    assert_eq!(roles, ["follower", "follower", "leader"], "srvr modes");
    let leader_mntr = ens.members[leader].four_letter("mntr");
    assert!(
        leader_mntr.contains("zk_server_state\tleader"),
        "{leader_mntr}"
    );
    assert!(leader_mntr.contains("zk_learners\t2"), "{leader_mntr}");

    let clients = [
        connect(&ens.members[0].addr()).await,
        connect(&ens.members[1].addr()).await,
        connect(&ens.members[2].addr()).await,
    ];
    // Session ids carry the member that made them in their top byte, as ZooKeeper's do.
    for (i, c) in clients.iter().enumerate() {
        assert_eq!(
            c.session().id().0 >> 56,
            i as i64 + 1,
            "session of member {}",
            i + 1
        );
    }
    let root = format!("/{}", unique_name("ens"));
    clients[1]
        .create(&root, b"r", &persistent())
        .await
        .expect("create at member 2");
    // Sequential names come from one log: unique across members.
    let mut names = Vec::new();
    for round in 0..4 {
        for c in &clients {
            let (_, seq) = c
                .create(
                    &format!("{root}/s-"),
                    format!("{round}").as_bytes(),
                    &zk::CreateMode::PersistentSequential.with_acls(zk::Acls::anyone_all()),
                )
                .await
                .expect("sequential create");
            names.push(seq.into_i64());
        }
    }
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 12, "sequence numbers {names:?}");
    // A client reads its own writes at once, and any client after sync.
    for (i, c) in clients.iter().enumerate() {
        let path = format!("{root}/own-{i}");
        c.create(&path, b"mine", &persistent())
            .await
            .expect("create");
        assert_eq!(c.get_data(&path).await.expect("own write").0, b"mine");
    }
    for c in &clients {
        c.sync(&root).await.expect("sync");
        let kids = c.list_children(&root).await.expect("children");
        assert_eq!(kids.len(), 15, "{kids:?}");
    }

    // An ephemeral of a session whose client moves from member 1 to member 3 stays, and
    // the old connection is closed by member 1 once the leader knows of the move.
    let eph = format!("{root}/moving");
    clients[0]
        .create(&eph, b"", &ephemeral())
        .await
        .expect("ephemeral");
    let session = clients[0].session().clone();
    let mut old_state = clients[0].state_watcher();
    let moved = connect_with(&ens.members[2].addr(), Some(session.clone())).await;
    assert_eq!(moved.session().id(), session.id(), "the same session");
    // This client told member 3 no zxid it has seen (the crate resumes with 0), so member 3
    // may not have applied the create yet: sync, as ZooKeeper clients do after a move.
    moved.sync(&eph).await.expect("sync");
    let (_, stat) = moved.get_data(&eph).await.expect("its ephemeral");
    assert_eq!(stat.ephemeral_owner, session.id().0);
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if old_state.changed().await != zk::SessionState::SyncConnected {
                return;
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "member 1 did not close the moved session's old connection"
    );
    // Closing it through member 3 deletes the ephemeral everywhere.
    drop(moved);
    drop(clients);
    let other = connect(&ens.members[1].addr()).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        other.sync(&root).await.expect("sync");
        if other.check_stat(&eph).await.expect("exists").is_none() {
            break;
        }
        assert!(Instant::now() < deadline, "ephemeral still there");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Clients of the members in `at` (four, round-robin), each setting its own znode under a
/// fresh root as fast as the ensemble acknowledges, with an ephemeral of its own; any failed
/// write fails the test. Stopped and checked by [`Writers::finish`].
struct Writers {
    stop: Arc<AtomicBool>,
    disconnects: Arc<AtomicI64>,
    tasks: Vec<tokio::task::JoinHandle<Written>>,
}

/// What one writer did: its client, session, znode, ephemeral and acknowledged writes.
type Written = (
    zk::Client,
    zk::SessionId,
    String,
    String,
    Vec<(Instant, i64)>,
);

impl Writers {
    async fn start(ens: &CorralEnsemble, at: &[usize], name: &str) -> Writers {
        let root = format!("/{}", unique_name(name));
        let setup = connect(&ens.members[at[0]].addr()).await;
        setup.create(&root, b"", &persistent()).await.expect("root");
        let stop = Arc::new(AtomicBool::new(false));
        let disconnects = Arc::new(AtomicI64::new(0));
        let mut tasks = Vec::new();
        for (w, &member) in at.iter().cycle().take(4).enumerate() {
            let c = connect(&ens.members[member].addr()).await;
            let path = format!("{root}/w{w}");
            c.create(&path, b"0", &persistent()).await.expect("create");
            let eph = format!("{root}/e{w}");
            c.create(&eph, b"", &ephemeral()).await.expect("ephemeral");
            let (stop, disconnects) = (Arc::clone(&stop), Arc::clone(&disconnects));
            let mut states = c.state_watcher();
            let watch_states = tokio::spawn(async move {
                loop {
                    let s = states.changed().await;
                    if s != zk::SessionState::SyncConnected {
                        disconnects.fetch_add(1, Ordering::SeqCst);
                    }
                    if s.is_terminated() {
                        return;
                    }
                }
            });
            tasks.push(tokio::spawn(async move {
                let session = c.session().id();
                let mut acked: Vec<(Instant, i64)> = Vec::new();
                let mut n = 0i64;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    match c.set_data(&path, n.to_string().as_bytes(), None).await {
                        Ok(_) => acked.push((Instant::now(), n)),
                        Err(e) => panic!("write {n} at {path} failed: {e}"),
                    }
                }
                watch_states.abort();
                (c, session, path, eph, acked)
            }));
        }
        Writers {
            stop,
            disconnects,
            tasks,
        }
    }

    /// Stops the writers and checks each kept its session and ephemeral and reads back its
    /// last acknowledged write, and that no client was disconnected. Returns the longest
    /// any writer went without an acknowledgement from its last one before `event` to the
    /// stop (a pause after a few acknowledgements already on their way counts too).
    async fn finish(self, event: Instant) -> Duration {
        self.stop.store(true, Ordering::SeqCst);
        let stopped = Instant::now();
        let mut worst_gap = Duration::ZERO;
        for w in self.tasks {
            let (c, session, path, eph, acked) = w.await.expect("writer");
            assert_eq!(c.session().id(), session, "{path}: same session throughout");
            let last = acked.last().map_or(0, |a| a.1);
            let before = acked.iter().rposition(|a| a.0 <= event);
            let (Some(before), true) = (before, acked.last().is_some_and(|a| a.0 > event)) else {
                panic!(
                    "{path}: no writes on both sides of the event ({} acked)",
                    acked.len()
                );
            };
            let times: Vec<Instant> = acked[before..].iter().map(|a| a.0).collect();
            let longest = times
                .windows(2)
                .map(|w| w[1] - w[0])
                .chain(times.last().map(|&t| stopped.saturating_duration_since(t)))
                .max()
                .unwrap_or_default();
            worst_gap = worst_gap.max(longest);
            c.sync(&path).await.expect("sync");
            let (data, _) = c.get_data(&path).await.expect("read back");
            assert_eq!(
                String::from_utf8_lossy(&data),
                last.to_string(),
                "{path}: the last acknowledged write"
            );
            assert!(c.check_stat(&eph).await.expect("exists").is_some(), "{eph}");
        }
        assert_eq!(
            self.disconnects.load(Ordering::SeqCst),
            0,
            "clients of the surviving members were disconnected"
        );
        worst_gap
    }
}

/// Kills the leader under load: the clients of the two other members keep their connection
/// and session, their writes wait for the new leader instead of failing, and none of the
/// acknowledged writes is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_under_load_loses_nothing_and_drops_no_other_client() {
    let mut ens = CorralEnsemble::start(3, "");
    let leader = ens.leader(Duration::from_secs(10)).expect("a leader");
    let survivors: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let writers = Writers::start(&ens, &survivors, "failover").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let killed_at = Instant::now();
    ens.members[leader].kill9().expect("kill -9 the leader");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let worst_gap = writers.finish(killed_at).await;
    let new_leader = ens.leader(Duration::from_secs(5)).expect("a new leader");
    assert_ne!(new_leader, leader);
    eprintln!(
        "leader {} killed: writes paused at most {} ms on the surviving members",
        leader + 1,
        worst_gap.as_millis()
    );
    assert!(worst_gap < Duration::from_secs(5), "{worst_gap:?}");
}

/// A leader that goes quiet without closing anything (SIGSTOP: its ports still accept
/// connections, nothing answers) is replaced once the others have heard nothing from it for
/// an election timeout (tickTime/2 = 1 s here), not after openraft's own timer, which waits
/// out the leader's lease on top (3-4 s, 7-8 s once a vote of the member was ever refused
/// for a shorter log). Clients of the other members stay connected and lose nothing; the
/// old leader, let go again, follows the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_leader_is_replaced_after_an_election_timeout() {
    let mut ens = CorralEnsemble::start(3, "");
    let leader = ens.leader(Duration::from_secs(10)).expect("a leader");
    let survivors: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let writers = Writers::start(&ens, &survivors, "frozen").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let frozen_at = Instant::now();
    ens.members[leader]
        .signal("STOP")
        .expect("SIGSTOP the leader");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let worst_gap = writers.finish(frozen_at).await;
    ens.members[leader]
        .signal("CONT")
        .expect("SIGCONT the old leader");
    eprintln!(
        "leader {} frozen: writes paused at most {} ms on the other members",
        leader + 1,
        worst_gap.as_millis()
    );
    assert!(worst_gap < Duration::from_secs(3), "{worst_gap:?}");
    assert!(
        survivors
            .iter()
            .any(|&i| ens.members[i].four_letter("srvr").contains("Mode: leader")),
        "no other member leads"
    );
    // Let go, the old leader learns of the newer term from the first answer it gets.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let srvr = ens.members[leader].four_letter("srvr");
        if srvr.contains("Mode: follower") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the old leader does not follow: {srvr}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A leader whose followers die (their quorum ports refuse it) counts itself cut off within
/// seconds, as ZooKeeper's leader does when its followers' sockets close, not after syncLimit
/// ticks (10 s here): its clients move on rather than stay with a member that can commit
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_followers_die_stops_serving_within_seconds() {
    let mut ens = CorralEnsemble::start(3, "");
    let leader = ens.leader(Duration::from_secs(10)).expect("a leader");
    let killed_at = Instant::now();
    for i in (0..3).filter(|&i| i != leader) {
        ens.members[i].kill9().expect("kill -9 a follower");
    }
    // Long enough to see the old behaviour (syncLimit, then 2 s) fail the assertion below.
    let deadline = killed_at + Duration::from_secs(15);
    let srvr = loop {
        let srvr = ens.members[leader].four_letter("srvr");
        if !srvr.contains("Mode: leader") {
            break srvr;
        }
        assert!(Instant::now() < deadline, "still leads: {srvr}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let took = killed_at.elapsed();
    eprintln!("the lone leader stopped serving {took:?} after its followers died: {srvr}");
    assert!(srvr.contains("not currently serving requests"), "{srvr}");
    assert!(took < Duration::from_secs(6), "cut off only after {took:?}");
}

/// Writes `n` values to `path` through `c`, failing the test on any error.
async fn write_some(c: &zk::Client, path: &str, from: i64, n: i64) -> i64 {
    for v in from..from + n {
        c.set_data(path, v.to_string().as_bytes(), None)
            .await
            .unwrap_or_else(|e| panic!("write {v} at {path}: {e}"));
    }
    from + n - 1
}

/// The zxid a member's `srvr` reports.
fn zxid_of(m: &common::CorralServer) -> Option<i64> {
    m.four_letter("srvr")
        .lines()
        .find_map(|l| l.strip_prefix("Zxid: 0x"))
        .and_then(|z| i64::from_str_radix(z.trim(), 16).ok())
}

/// Five members, two of them (the leader among them) killed at once: the three left keep
/// taking writes; restarted, the two catch up with everything written meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_members_lose_two_and_keep_writing_then_catch_up() {
    let mut ens = CorralEnsemble::start(5, "");
    let leader = ens.leader(Duration::from_secs(10)).expect("a leader");
    let other = (leader + 1) % 5;
    let survivors: Vec<usize> = (0..5).filter(|&i| i != leader && i != other).collect();
    let c = connect(&ens.members[survivors[0]].addr()).await;
    let path = format!("/{}", unique_name("five"));
    c.create(&path, b"0", &persistent()).await.expect("create");
    write_some(&c, &path, 1, 50).await;

    ens.members[leader].kill9().expect("kill the leader");
    ens.members[other].kill9().expect("kill a follower");
    let started = Instant::now();
    let last = write_some(&c, &path, 51, 200).await;
    eprintln!(
        "two of five killed: 200 writes through member {} in {} ms",
        survivors[0] + 1,
        started.elapsed().as_millis()
    );
    let readers = [
        connect(&ens.members[survivors[1]].addr()).await,
        connect(&ens.members[survivors[2]].addr()).await,
    ];
    for r in &readers {
        r.sync(&path).await.expect("sync");
        assert_eq!(
            r.get_data(&path).await.expect("read").0,
            last.to_string().as_bytes()
        );
    }

    for i in [leader, other] {
        ens.members[i].restart().expect("restart");
    }
    let target = zxid_of(&ens.members[survivors[0]]).expect("zxid");
    let deadline = Instant::now() + Duration::from_secs(20);
    for i in [leader, other] {
        while zxid_of(&ens.members[i]).is_none_or(|z| z < target) {
            assert!(
                Instant::now() < deadline,
                "member {} did not catch up",
                i + 1
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let back = connect(&ens.members[i].addr()).await;
        assert_eq!(
            back.get_data(&path).await.expect("read").0,
            last.to_string().as_bytes(),
            "member {} after catching up",
            i + 1
        );
    }
}

/// Every member restarted in turn (SIGTERM, start again) under load: the clients move to
/// other members and keep their sessions, and every acknowledged write is there at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_loses_no_session_and_no_write() {
    let mut ens = CorralEnsemble::start(3, "");
    let hosts = ens.connect_string();
    let root = format!("/{}", unique_name("rolling"));
    let setup = connect(&hosts).await;
    setup.create(&root, b"", &persistent()).await.expect("root");

    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4 {
        let c = connect(&hosts).await;
        let path = format!("{root}/w{w}");
        c.create(&path, b"0", &persistent()).await.expect("create");
        let eph = format!("{root}/e{w}");
        c.create(&eph, b"", &ephemeral()).await.expect("ephemeral");
        let stop = Arc::clone(&stop);
        writers.push(tokio::spawn(async move {
            let session = c.session().id();
            let (mut acked, mut n, mut failed) = (0i64, 0i64, 0u32);
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                // A write in flight when its member stops gets ConnectionLoss: its outcome
                // is unknown to the client, so it is retried with the same value.
                loop {
                    match c.set_data(&path, n.to_string().as_bytes(), None).await {
                        Ok(_) => break,
                        Err(zk::Error::SessionExpired) => panic!("{path}: session expired"),
                        Err(_) => {
                            failed += 1;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
                acked = n;
            }
            (c, session, path, eph, acked, failed)
        }));
    }
    for i in 0..3 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let status = ens.members[i]
            .terminate(Duration::from_secs(10))
            .expect("SIGTERM");
        assert!(status.success(), "member {} exited with {status}", i + 1);
        ens.members[i].restart().expect("restart");
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        let (c, session, path, eph, acked, failed) = w.await.expect("writer");
        assert_eq!(c.session().id(), session, "{path}: same session");
        c.sync(&path).await.expect("sync");
        let (data, _) = c.get_data(&path).await.expect("read back");
        assert_eq!(String::from_utf8_lossy(&data), acked.to_string(), "{path}");
        assert!(c.check_stat(&eph).await.expect("exists").is_some(), "{eph}");
        eprintln!("{path}: {acked} writes acknowledged, {failed} retried after a lost connection");
    }
}

/// A member stopped while the others write far past their snapshots (snapCount 50: the log it
/// would need is purged) catches up from the leader's snapshot, received to a file, and
/// then serves the same data.
/// A follower killed while 300 writes of `bytes_each` are made at another member, then
/// restarted: it must serve all of them. Returns its log.
async fn catch_up_after_writes(bytes_each: usize) -> String {
    let mut ens = CorralEnsemble::start(3, "snapCount=50\n");
    let leader = ens.leader(Duration::from_secs(10)).expect("a leader");
    let behind = (leader + 1) % 3;
    let writer_at = (leader + 2) % 3;
    ens.members[behind].kill9().expect("kill a follower");
    let c = connect(&ens.members[writer_at].addr()).await;
    let root = format!("/{}", unique_name("catchup"));
    c.create(&root, b"", &persistent()).await.expect("root");
    for i in 0..300 {
        let mut data = format!("{i}").into_bytes();
        data.resize(bytes_each.max(data.len()), b'.');
        c.create(&format!("{root}/n{i:04}"), &data, &persistent())
            .await
            .expect("create");
    }
    ens.members[behind].restart().expect("restart");
    let back = connect(&ens.members[behind].addr()).await;
    back.sync(&root).await.expect("sync");
    let kids = back.list_children(&root).await.expect("children");
    assert_eq!(kids.len(), 300);
    let last = back
        .get_data(&format!("{root}/n0299"))
        .await
        .expect("read")
        .0;
    assert_eq!((last.len(), &last[..3]), (bytes_each.max(3), &b"299"[..]));
    ens.members[behind].stderr_text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_far_behind_catches_up_by_snapshot() {
    // 300 writes of 32 KiB: ~9.6 MB of log, past what a member keeps after a snapshot
    // (a third of the snapshot's size, at least 4 MiB), so the leader sends its snapshot.
    let log = catch_up_after_writes(32 << 10).await;
    assert!(
        log.contains("installed the leader's snapshot"),
        "caught up without a snapshot:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_briefly_behind_catches_up_from_the_log() {
    // The same 300 writes, small: several snapshots are taken (snapCount=50), yet the log
    // kept after them still reaches back to the stopped member, which replays it.
    let log = catch_up_after_writes(8).await;
    assert!(
        !log.contains("installed the leader's snapshot"),
        "a small lag was sent the snapshot:\n{log}"
    );
}

/// A follower frozen while its clients hold watches and a session that ends meanwhile; the
/// leader sends it its snapshot once it runs again. Each watch fires for what changed, and
/// the connection of the ended session is closed, as if every skipped entry had applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_fire_and_ended_sessions_close_when_a_member_installs_a_snapshot() {
    use corral_proto::ConnectRequest;
    let mut ens = CorralEnsemble::start(3, "snapCount=50\n");
    let leader = ens.leader(Duration::from_secs(10)).expect("a leader");
    let frozen = (leader + 1) % 3;
    let writer = connect(&ens.members[leader].addr()).await;
    let root = format!("/{}", unique_name("install"));
    for p in ["", "/a", "/c", "/d", "/r"] {
        writer
            .create(&format!("{root}{p}"), b"", &persistent())
            .await
            .expect("create");
    }
    // The watcher's session outlives the freeze (its timeout is the longest allowed).
    let watcher = tokio::time::timeout(
        Duration::from_secs(20),
        zk::Client::connector()
            .with_session_timeout(Duration::from_secs(40))
            .connect(&ens.members[frozen].addr()),
    )
    .await
    .expect("connect in time")
    .expect("connect the watcher");
    watcher.sync(&root).await.expect("sync");
    let (_, _, data_w) = watcher
        .get_and_watch_data(&format!("{root}/a"))
        .await
        .expect("watch /a");
    let exist_w = watcher
        .check_and_watch_stat(&format!("{root}/b"))
        .await
        .expect("watch /b")
        .1;
    let (_, _, child_w) = watcher
        .get_and_watch_children(&format!("{root}/c"))
        .await
        .expect("watch /c");
    let (_, _, gone_w) = watcher
        .get_and_watch_data(&format!("{root}/d"))
        .await
        .expect("watch /d");
    let mut deep_w = watcher
        .watch(&format!("{root}/r"), zk::AddWatchMode::PersistentRecursive)
        .await
        .expect("watch /r");
    // A session with the shortest timeout, silent, held at the member to be frozen.
    let (mut victim, resp) = common::RawConn::connect(&ens.members[frozen].addr())
        .map_err(|e| e.to_string())
        .and_then(|mut c| {
            let r = c.handshake(&ConnectRequest {
                timeout: 4_000,
                read_only: Some(false),
                ..Default::default()
            })?;
            Ok((c, r))
        })
        .expect("victim session");
    assert_ne!(resp.session_id, 0);
    let victim_node = format!("{root}/victim");
    let (hdr, _) = victim
        .request(
            1,
            &corral_proto::Request::Create(corral_proto::CreateRequest {
                path: victim_node.clone(),
                data: Some(Vec::new()),
                acl: corral_proto::open_acl_unsafe(),
                flags: corral_proto::CreateMode::Ephemeral.code(),
            }),
        )
        .expect("victim's ephemeral");
    assert_eq!(hdr.err, 0, "victim's create");

    ens.members[frozen].signal("STOP").expect("SIGSTOP");
    writer
        .set_data(&format!("{root}/a"), b"changed", None)
        .await
        .expect("set /a");
    writer
        .create(&format!("{root}/b"), b"", &persistent())
        .await
        .expect("create /b");
    writer
        .create(&format!("{root}/c/x"), b"", &persistent())
        .await
        .expect("create /c/x");
    writer
        .delete(&format!("{root}/d"), None)
        .await
        .expect("delete /d");
    writer
        .create(&format!("{root}/r/deep"), b"", &persistent())
        .await
        .expect("create /r/deep");
    // ~9.6 MB of writes: more log than the leader keeps after its snapshots.
    let bulk = format!("{root}/bulk");
    writer
        .create(&bulk, b"", &persistent())
        .await
        .expect("bulk");
    let big = vec![b'.'; 32 << 10];
    for i in 0..300 {
        writer
            .create(&format!("{bulk}/n{i:04}"), &big, &persistent())
            .await
            .expect("bulk create");
    }
    // The leader hears nothing of the victim while its member is frozen and expires it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while writer
        .check_stat(&victim_node)
        .await
        .expect("exists")
        .is_some()
    {
        assert!(
            Instant::now() < deadline,
            "the leader never expired the victim"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ens.members[frozen].signal("CONT").expect("SIGCONT");

    let within = Duration::from_secs(15);
    let event = |e: Result<zk::WatchedEvent, _>, what: &str| {
        e.unwrap_or_else(|_| panic!("no event for {what} within {within:?}"))
            .event_type
    };
    assert_eq!(
        event(tokio::time::timeout(within, data_w.changed()).await, "/a"),
        zk::EventType::NodeDataChanged
    );
    assert_eq!(
        event(tokio::time::timeout(within, exist_w.changed()).await, "/b"),
        zk::EventType::NodeCreated
    );
    assert_eq!(
        event(tokio::time::timeout(within, child_w.changed()).await, "/c"),
        zk::EventType::NodeChildrenChanged
    );
    assert_eq!(
        event(tokio::time::timeout(within, gone_w.changed()).await, "/d"),
        zk::EventType::NodeDeleted
    );
    let deep = tokio::time::timeout(within, deep_w.changed())
        .await
        .expect("no event under the recursive watch");
    assert_eq!(
        (deep.event_type, deep.path.as_str()),
        (
            zk::EventType::NodeCreated,
            format!("{root}/r/deep").as_str()
        )
    );
    assert!(
        matches!(
            victim.outcome(Duration::from_secs(10)),
            common::Outcome::Closed(_)
        ),
        "the ended session's connection stayed open"
    );
    let log = ens.members[frozen].stderr_text();
    assert!(
        log.contains("installed the leader's snapshot"),
        "the thawed member caught up without a snapshot:\n{log}"
    );
    // The watcher's own session lived through it.
    assert!(watcher
        .check_stat(&format!("{root}/b"))
        .await
        .expect("read")
        .is_some());
}

/// A port bound and not listening: a dial there is refused at once.
fn refused_port() -> (std::net::TcpListener, u16) {
    // A listener dropped right away would leave the port to anyone; a bound socket that
    // never listens refuses connections and keeps it.
    let s = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = s.local_addr().expect("addr").port();
    drop(s);
    let sock = std::net::TcpListener::bind(("127.0.0.1", port)).expect("rebind");
    (sock, port)
}

/// An incremental reconfig.
async fn change(
    c: &zk::Client,
    joining: &[&str],
    leaving: &[&str],
) -> Result<(Vec<u8>, zk::Stat), zk::Error> {
    let update = c.update_ensemble(
        zk::EnsembleUpdate::Incremental {
            joinings: joining.iter().copied(),
            leavings: leaving.iter().copied(),
        },
        None,
    );
    tokio::time::timeout(Duration::from_secs(20), update)
        .await
        .unwrap_or_else(|_| panic!("reconfig +{joining:?} -{leaving:?}: no answer in 20 s"))
}

/// mntr's zk_learners on whichever member leads: the members raft replicates to.
fn learners(ens: &mut CorralEnsemble) -> Option<usize> {
    let leader = ens.leader(Duration::from_secs(10))?;
    ens.members[leader]
        .four_letter("mntr")
        .lines()
        .find_map(|l| l.strip_prefix("zk_learners\t"))
        .and_then(|n| n.trim().parse().ok())
}

fn wait_learners(ens: &mut CorralEnsemble, want: usize) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while learners(ens) != Some(want) {
        assert!(
            Instant::now() < deadline,
            "zk_learners stayed {:?}, not {want}",
            learners(ens)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconfig_changes_the_membership_without_stalling_and_a_removed_member_stops() {
    let mut ens = CorralEnsemble::start(
        3,
        "reconfigEnabled=true\n\
         DigestAuthenticationProvider.superDigest=super:D/InIHSb7yEEbrWz8b9l71RjZJU=\n",
    );
    let leader = ens.leader(Duration::from_secs(10)).expect("a leader");
    // Every member shows the membership zoo.cfg gave, in ZooKeeper's format.
    let plain = connect(&ens.members[0].addr()).await;
    let (initial, stat) = plain.get_config().await.expect("config");
    let text = String::from_utf8(initial.clone()).expect("utf-8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    for (i, l) in lines[..3].iter().enumerate() {
        assert!(
            l.starts_with(&format!("server.{}=127.0.0.1:", i + 1)) && l.ends_with(":participant"),
            "{text}"
        );
    }
    assert_eq!(lines[3], "version=0");
    assert_eq!((stat.version, stat.aversion), (-1, -1));
    for m in &ens.members[1..] {
        let c = connect(&m.addr()).await;
        assert_eq!(c.get_config().await.expect("config").0, initial);
    }
    // Without super: NoAuth.
    let (_s1, p1) = refused_port();
    let (_s2, p2) = refused_port();
    let (_s3, p3) = refused_port();
    let observer = format!("server.100=127.0.0.1:{p1}:{p2}:observer;127.0.0.1:{p3}");
    assert!(matches!(
        change(&plain, &[&observer], &[]).await,
        Err(zk::Error::NoAuth)
    ));
    // A follower's client, with super: the reconfig is forwarded and applied everywhere.
    let follower = (leader + 1) % 3;
    let admin = connect(&ens.members[follower].addr()).await;
    admin
        .auth("digest", b"super:test")
        .await
        .expect("super auth");
    let (data, stat) = change(&admin, &[&observer], &[])
        .await
        .expect("add observer");
    let text = String::from_utf8(data.clone()).expect("utf-8");
    assert!(text.contains(&format!("\n{observer}\n")), "{text}");
    assert_eq!(
        stat.mzxid,
        i64::from_str_radix(text.rsplit_once('=').unwrap().1, 16).unwrap()
    );
    for m in &ens.members {
        let c = connect(&m.addr()).await;
        c.sync("/").await.expect("sync");
        assert_eq!(c.get_config().await.expect("config").0, data);
    }
    // The observer, unreachable, became a raft learner; writes go on.
    wait_learners(&mut ens, 3);
    let root = format!("/{}", unique_name("reconfig"));
    admin
        .create(&root, b"", &persistent())
        .await
        .expect("write");

    let (data, _) = change(&admin, &[], &["100"])
        .await
        .expect("remove observer");
    assert!(!String::from_utf8_lossy(&data).contains("server.100"));
    wait_learners(&mut ens, 2);

    // A participant that never comes up joins (4 voters, quorum 3) and leaves: neither
    // stalls the ensemble.
    let (_s4, p4) = refused_port();
    let (_s5, p5) = refused_port();
    let (_s6, p6) = refused_port();
    let ghost = format!("server.7=127.0.0.1:{p4}:{p5}:participant;127.0.0.1:{p6}");
    change(&admin, &[&ghost], &[])
        .await
        .expect("add a dead participant");
    wait_learners(&mut ens, 3);
    admin
        .create(&format!("{root}/a"), b"", &persistent())
        .await
        .expect("write with a dead voter");
    change(&admin, &[], &["7"])
        .await
        .expect("remove the dead participant");
    wait_learners(&mut ens, 2);
    admin
        .create(&format!("{root}/b"), b"", &persistent())
        .await
        .expect("write after it left");

    // A live follower removed: it stops serving; the other two go on.
    let leader = ens.leader(Duration::from_secs(10)).expect("a leader");
    let gone = (0..3)
        .find(|i| *i != leader && *i != follower)
        .unwrap_or(follower);
    let survivor = (0..3).find(|i| *i != gone).expect("another member");
    let admin = connect(&ens.members[survivor].addr()).await;
    admin
        .auth("digest", b"super:test")
        .await
        .expect("super auth");
    let (data, _) = change(&admin, &[], &[&format!("{}", gone + 1)])
        .await
        .expect("remove a member");
    let text = String::from_utf8(data).expect("utf-8");
    assert!(!text.contains(&format!("server.{}=", gone + 1)), "{text}");
    assert_eq!(text.lines().filter(|l| l.starts_with("server.")).count(), 2);
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(ens.members[gone].addr()).is_ok() {
        assert!(
            Instant::now() < deadline,
            "the removed member still takes clients"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_learners(&mut ens, 1);
    admin
        .create(&format!("{root}/c"), b"", &persistent())
        .await
        .expect("write after a member left");
    // Fewer than two voters is refused, as ZooKeeper refuses it.
    let last = (0..3)
        .find(|i| *i != gone && *i != survivor)
        .expect("third");
    assert!(matches!(
        change(&admin, &[], &[&format!("{}", last + 1)]).await,
        Err(zk::Error::BadArguments(_))
    ));
}
