//! corral-client's recipes against corral and against real ZooKeeper 3.8 alike:
//! - the lock: mutual exclusion (a read-modify-write under the lock never meets a concurrent
//!   write) and no herd effect (each waiter is woken once, by its predecessor only);
//! - leader election with a fencing epoch, under chaos: three participants, each behind a
//!   loopback proxy, their traffic frozen at random (past the session timeout, so the session
//!   expires; or briefly, so it is only Suspended), each leader trying a fenced write every
//!   few ms. Checked on the server afterwards: the successful writes, in zxid order, never
//!   interleave two epochs and each epoch has one writer; and a new leader is elected
//!   within the timeout + 1 s of the old leader's traffic stopping.
//!
//! - a deposed leader that does not know it (it hears nothing from the server, but its
//!   requests still arrive): its write after the next leader's election is refused by the
//!   server's epoch check, not by its own bookkeeping.
//!
//! CORRAL_CHAOS_EVENTS sets the number of freezes (default 50); CORRAL_CHAOS_SEED replays a
//! run (the seed is printed).

mod common;
mod proxy;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{unique_name, CorralServer, RealZk};
use corral_client::proto::{CreateMode, CreateRequest, MultiResult, Request};
use corral_client::{
    open_acl_unsafe, Client, ClientBuilder, ClientError, ConnectOptions, Connection, SessionState,
};
use proxy::Proxy;
use tokio::time::Instant;

/// The session timeout of the chaos participants. tickTime=500 makes real ZooKeeper expire
/// sessions within half a second of their deadline (its expiry runs in tick-sized buckets).
const TIMEOUT: Duration = Duration::from_millis(1000);
const SERVER_CFG: &str = "tickTime=500\nminSessionTimeout=1000";

/// A small deterministic generator (xorshift64*), so a failing run can be replayed by seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
}

fn seed() -> u64 {
    std::env::var("CORRAL_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
                | 1
        })
}

async fn observer(addr: &str) -> Connection {
    Connection::connect(addr, ConnectOptions::default())
        .await
        .expect("observer connection")
}

async fn lock_contention(server: &str) {
    const CLIENTS: usize = 5;
    const ROUNDS: usize = 4;
    let root = format!("/{}", unique_name("lock"));
    let obs = observer(server).await;
    obs.create(&root, b"", &open_acl_unsafe(), CreateMode::Persistent)
        .await
        .expect("create the root");
    obs.create(
        &format!("{root}/counter"),
        b"0",
        &open_acl_unsafe(),
        CreateMode::Persistent,
    )
    .await
    .expect("create the counter");
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let client = Client::connect(&format!("{server}{root}"))
            .await
            .expect("connect");
        tasks.push(tokio::spawn(async move {
            let lock = client.lock("/lock");
            let mut woken = Vec::new();
            for _ in 0..ROUNDS {
                let guard = lock.acquire().await.expect("acquire");
                assert!(guard.is_held());
                woken.push(guard.woken());
                // A read-modify-write that a concurrent holder would make fail.
                let (data, stat) = client.get_data("/counter").await.expect("read");
                let n: u64 = String::from_utf8_lossy(&data).parse().expect("a number");
                tokio::time::sleep(Duration::from_millis(5)).await;
                client
                    .set_data("/counter", (n + 1).to_string().as_bytes(), stat.version)
                    .await
                    .expect("no concurrent write under the lock");
                guard.release().await.expect("release");
            }
            client.close().await.expect("close");
            woken
        }));
    }
    let mut all_woken = Vec::new();
    for t in tasks {
        all_woken.extend(t.await.expect("lock task"));
    }
    let (data, _) = obs
        .get_data(&format!("{root}/counter"), false)
        .await
        .expect("read");
    assert_eq!(data, (CLIENTS * ROUNDS).to_string().into_bytes());
    // No herd: a waiter is woken only when the node just before it goes, once per wait.
    assert!(
        all_woken.iter().all(|w| *w <= 1),
        "wake-ups per acquisition: {all_woken:?}"
    );
    assert!(all_woken.contains(&1), "nobody ever waited: {all_woken:?}");
    let left = obs
        .get_children(&format!("{root}/lock"), false)
        .await
        .expect("children");
    assert!(left.is_empty(), "lock nodes left: {left:?}");
    eprintln!(
        "lock: {} acquisitions, wake-ups {all_woken:?}",
        CLIENTS * ROUNDS
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_excludes_without_herd_corral() {
    let server = CorralServer::start(SERVER_CFG);
    lock_contention(&server.addr()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_excludes_without_herd_real_zk() {
    let Some(zk) = RealZk::start(SERVER_CFG) else {
        return;
    };
    lock_contention(&zk.addr()).await;
}

/// What the participants share with the chaos driver.
#[derive(Default)]
struct Board {
    stop: AtomicBool,
    /// The participant that last won, and its epoch.
    leader: Mutex<Option<(usize, i64)>>,
    /// Every election won: participant, epoch, when.
    wins: Mutex<Vec<(usize, i64, Instant)>>,
    acked: AtomicU64,
    /// Leaderships ended, by reason (a write refused by the server's epoch check is Fenced).
    ended: Mutex<std::collections::BTreeMap<String, u64>>,
}

fn board_lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn participant(i: usize, client: Client, board: Arc<Board>) {
    let election = client
        .leader_election("/election", &format!("p{i}"))
        .suspended_fraction(0.25);
    while !board.stop.load(Ordering::SeqCst) {
        let lead = match tokio::time::timeout(Duration::from_secs(2), election.campaign()).await {
            Ok(Ok(l)) => l,
            Ok(Err(_)) | Err(_) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let epoch = lead.epoch();
        board_lock(&board.wins).push((i, epoch, Instant::now()));
        *board_lock(&board.leader) = Some((i, epoch));
        while !board.stop.load(Ordering::SeqCst) && lead.is_leader() {
            let write = Request::Create(CreateRequest {
                path: format!("/writes/e{epoch}p{i}-"),
                data: Some(Vec::new()),
                acl: open_acl_unsafe(),
                flags: CreateMode::PersistentSequential.code(),
            });
            match lead.fenced_multi(vec![write]).await {
                Ok(r) => {
                    assert!(matches!(r.first(), Some(MultiResult::Create(_))), "{r:?}");
                    board.acked.fetch_add(1, Ordering::SeqCst);
                }
                Err(ClientError::NotLeader) => break,
                // Connection loss: the write may or may not have happened; the server's
                // record below is what counts.
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        let why = match lead.lost_reason() {
            Some(r) => format!("{r:?}"),
            None => "stopped".to_string(),
        };
        *board_lock(&board.ended).entry(why).or_default() += 1;
    }
}

/// "e<epoch>p<participant>-<seq>" -> (seq, epoch, participant).
fn parse_write(name: &str) -> Option<(i64, i64, usize)> {
    let (head, seq) = name.rsplit_once('-')?;
    let (e, p) = head.strip_prefix('e')?.split_once('p')?;
    Some((seq.parse().ok()?, e.parse().ok()?, p.parse().ok()?))
}

/// `expiry_slack`: how late the server may expire a session by design (ZooKeeper expires in
/// tick-sized buckets; corral at the deadline), added to the new-leader bound, which the
/// issue counts from the old leader losing its session.
async fn election_chaos(server: &str, name: &str, expiry_slack: Duration) {
    let events: usize = std::env::var("CORRAL_CHAOS_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let seed = seed();
    eprintln!("{name}: chaos seed {seed} (CORRAL_CHAOS_SEED), {events} events");
    let mut rng = Rng(seed);
    let root = format!("/{}", unique_name("chaos"));
    let obs = observer(server).await;
    for p in [root.clone(), format!("{root}/writes")] {
        obs.create(&p, b"", &open_acl_unsafe(), CreateMode::Persistent)
            .await
            .expect("create the test root");
    }
    let board = Arc::new(Board::default());
    let mut proxies = Vec::new();
    let mut clients = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..3 {
        let proxy = Proxy::start(server.to_string()).await;
        let client = ClientBuilder::new(&format!("{}{root}", proxy.addr))
            .session_timeout(TIMEOUT)
            .connect()
            .await
            .expect("participant connects");
        assert_eq!(client.session_timeout(), TIMEOUT, "negotiated timeout");
        tasks.push(tokio::spawn(participant(i, client.clone(), board.clone())));
        proxies.push(proxy);
        clients.push(client);
    }
    // Failovers to check: when the leader's traffic stopped, and the epoch it led in.
    let mut failovers: Vec<(Instant, i64)> = Vec::new();
    let started = Instant::now();
    let mut expiries = 0;
    for _ in 0..events {
        let leader = *board_lock(&board.leader);
        let target = match leader {
            Some((l, _)) if rng.below(10) < 7 => l,
            _ => rng.below(3) as usize,
        };
        let expire = rng.below(2) == 0;
        let mut states = clients[target].session_events();
        proxies[target].freeze();
        let t0 = Instant::now();
        if expire {
            expiries += 1;
            if let Some((l, epoch)) = leader {
                if l == target && clients[target].state() == SessionState::Connected {
                    failovers.push((t0, epoch));
                }
            }
            // Frozen until the client itself declares the session expired (4/3 of the
            // timeout): thawing earlier could let it resume a session the server still has.
            let deadline = t0 + TIMEOUT * 3;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, states.recv()).await {
                    Ok(Ok(ev)) if ev.state == SessionState::Expired => break,
                    Ok(Ok(_)) | Ok(Err(_)) => {}
                    Err(_) => panic!("participant {target} not Expired within {:?}", TIMEOUT * 3),
                }
            }
        } else {
            tokio::time::sleep(rng.ms(
                TIMEOUT.as_millis() as u64 / 4,
                TIMEOUT.as_millis() as u64 * 9 / 10,
            ))
            .await;
        }
        proxies[target].thaw();
        tokio::time::sleep(rng.ms(50, 400)).await;
    }
    // Let the last failover finish before stopping.
    tokio::time::sleep(TIMEOUT * 2).await;
    board.stop.store(true, Ordering::SeqCst);
    for t in tasks {
        tokio::time::timeout(TIMEOUT * 5, t)
            .await
            .expect("participant stops")
            .expect("participant task");
    }
    let elapsed = started.elapsed();

    // The server's record: every fenced write that happened, in zxid (sequence) order.
    let names = obs
        .get_children(&format!("{root}/writes"), false)
        .await
        .expect("list the writes");
    let mut writes: Vec<(i64, i64, usize)> = names
        .iter()
        .map(|n| parse_write(n).unwrap_or_else(|| panic!("bad write name {n}")))
        .collect();
    writes.sort();
    let mut writer_of: std::collections::BTreeMap<i64, usize> = Default::default();
    for w in writes.windows(2) {
        assert!(
            w[0].1 <= w[1].1,
            "epoch {} written after epoch {} (sequences {} and {}): a stale leader's write succeeded",
            w[1].1,
            w[0].1,
            w[1].0,
            w[0].0
        );
    }
    for (_, epoch, p) in &writes {
        let first = *writer_of.entry(*epoch).or_insert(*p);
        assert_eq!(first, *p, "epoch {epoch} written by p{first} and p{p}");
    }
    let acked = board.acked.load(Ordering::SeqCst);
    assert!(
        writes.len() as u64 >= acked,
        "{} writes on the server, {acked} acknowledged",
        writes.len()
    );

    let wins = board_lock(&board.wins).clone();
    let mut worst = Duration::ZERO;
    for (t0, epoch) in &failovers {
        let next = wins
            .iter()
            .filter(|(_, e, at)| *e > *epoch && at >= t0)
            .map(|(_, _, at)| *at - *t0)
            .min()
            .unwrap_or_else(|| panic!("no leader after epoch {epoch} lost its session"));
        assert!(
            next <= TIMEOUT + expiry_slack + Duration::from_secs(1),
            "new leader {next:?} after the epoch-{epoch} leader's traffic stopped (timeout {TIMEOUT:?}, expiry slack {expiry_slack:?})"
        );
        worst = worst.max(next);
    }
    if events >= 10 {
        assert!(!failovers.is_empty(), "no leader was ever expired");
    }
    eprintln!(
        "{name}: {events} freezes ({expiries} to expiry) in {elapsed:?}; {} leaderships \
         (epochs 1..={}); {} fenced writes on the server ({acked} acknowledged); leaderships \
         ended: {:?}; {} leader expiries, new leader at worst {worst:?} after the old leader's \
         traffic stopped",
        wins.len(),
        writer_of.keys().max().copied().unwrap_or(0),
        writes.len(),
        board_lock(&board.ended),
        failovers.len()
    );
    for c in clients {
        let _ = c.close().await;
    }
}

// Timing-bound (expiry within 3 timeouts, a new leader within timeout + 1 s) with three
// clients freezing at random: beside the rest of the suite on 2 shared cores it misses its
// bounds now and then, so it runs alone, by scripts/election-chaos.sh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "timing-bound chaos run: scripts/election-chaos.sh runs it alone"]
async fn election_chaos_never_two_leaders_corral() {
    let server = CorralServer::start(SERVER_CFG);
    election_chaos(&server.addr(), "corral", Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "timing-bound chaos run: scripts/election-chaos.sh runs it alone"]
async fn election_chaos_never_two_leaders_real_zk() {
    let Some(zk) = RealZk::start(SERVER_CFG) else {
        return;
    };
    // One tick (tickTime=500): ZooKeeper's expiry bucket.
    election_chaos(&zk.addr(), "zookeeper", Duration::from_millis(500)).await;
}

fn fenced_create(path: &str) -> Request {
    Request::Create(CreateRequest {
        path: path.to_string(),
        data: Some(Vec::new()),
        acl: open_acl_unsafe(),
        flags: CreateMode::Persistent.code(),
    })
}

async fn deposed_leader(server: &str) {
    let root = format!("/{}", unique_name("deposed"));
    let obs = observer(server).await;
    for p in [root.clone(), format!("{root}/writes")] {
        obs.create(&p, b"", &open_acl_unsafe(), CreateMode::Persistent)
            .await
            .expect("create the test root");
    }
    let proxy = Proxy::start(server.to_string()).await;
    // A long timeout and no giving up while Suspended: A believes it leads throughout.
    let a = ClientBuilder::new(&format!("{}{root}", proxy.addr))
        .session_timeout(Duration::from_secs(8))
        .connect()
        .await
        .expect("A connects");
    let b = Client::connect(&format!("{server}{root}"))
        .await
        .expect("B connects");
    let a_lead = a
        .leader_election("/election", "A")
        .suspended_fraction(1.0)
        .campaign()
        .await
        .expect("A leads");
    assert_eq!(a_lead.epoch(), 1);
    a_lead
        .fenced_multi(vec![fenced_create("/writes/a-before")])
        .await
        .expect("A writes while it leads");
    let b_campaign = {
        let b = b.clone();
        tokio::spawn(async move { b.leader_election("/election", "B").campaign().await })
    };
    // A goes deaf; an operator removes its leader node; B is elected.
    proxy.freeze_downstream();
    obs.delete(&format!("{root}/election/leader"), -1)
        .await
        .expect("depose A");
    let b_lead = tokio::time::timeout(Duration::from_secs(5), b_campaign)
        .await
        .expect("B elected within 5 s")
        .expect("B's campaign task")
        .expect("B leads");
    assert_eq!(b_lead.epoch(), 2);
    b_lead
        .fenced_multi(vec![fenced_create("/writes/b")])
        .await
        .expect("B writes");
    // A has heard nothing: it still believes it leads, and writes.
    assert!(
        a_lead.is_leader(),
        "A must not know yet: {:?}",
        a_lead.lost_reason()
    );
    let a_lead = Arc::new(a_lead);
    let stale = {
        let a_lead = a_lead.clone();
        tokio::spawn(async move {
            a_lead
                .fenced_multi(vec![fenced_create("/writes/a-stale")])
                .await
        })
    };
    // Give the request time to reach the server before A may hear anything.
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.thaw();
    match tokio::time::timeout(Duration::from_secs(5), stale)
        .await
        .expect("A's stale write answered after the thaw")
        .expect("stale write task")
    {
        Err(ClientError::NotLeader) => {}
        other => panic!("a deposed leader's write: {other:?}"),
    }
    // The server's refusal is the write's NotLeader above and the children below. Which of
    // the two A learns first is a race inside the client: the deletion event, held by the
    // frozen proxy, arrives just before the refusal and is dispatched on another task.
    assert!(
        matches!(
            a_lead.lost_reason(),
            Some(corral_client::LeadershipLost::Fenced | corral_client::LeadershipLost::NodeGone)
        ),
        "A knows it lost: {:?}",
        a_lead.lost_reason()
    );
    let mut written = obs
        .get_children(&format!("{root}/writes"), false)
        .await
        .expect("list the writes");
    written.sort();
    assert_eq!(written, vec!["a-before", "b"]);
    let _ = a.close().await;
    let _ = b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deposed_leader_write_is_refused_by_the_server_corral() {
    let server = CorralServer::start(SERVER_CFG);
    deposed_leader(&server.addr()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deposed_leader_write_is_refused_by_the_server_real_zk() {
    let Some(zk) = RealZk::start(SERVER_CFG) else {
        return;
    };
    deposed_leader(&zk.addr()).await;
}
