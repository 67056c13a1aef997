//! corral-client with read-only sessions allowed (`ClientBuilder::read_only`), on a 3-member
//! ensemble in read-only mode (corral's, and real ZooKeeper 3.8's with the same scenarios)
//! whose quorum is lost and comes back: the survivor serves clients read-only meanwhile
//! (reads work, writes fail `NotReadOnly`) in sessions local to it, new ones only: a session
//! the quorum made is refused, not downgraded, by both (ZooKeeper 3.8 closes such a connection,
//! "Refusing global session reconnection in RO mode"; its admin guide: "A downgrade of an
//! existing connections is currently not supported"). Each client goes back to its own
//! session, or to a first real one, as soon as a read-write member answers. ZooKeeper's
//! read-only server without local sessions refuses a new read-only client with NotReadOnly,
//! which the client names.

mod common;

use std::time::{Duration, Instant};

use common::{events_for, events_until, four_letter, CorralEnsemble, Ensemble, RealZkEnsemble};
use corral_client::proto::{CreateMode, ErrorCode};
use corral_client::{
    open_acl_unsafe, ClientBuilder, ClientError, ConnectOptions, Connection, SessionEvent,
    SessionState,
};

/// Waits until `isro` on `addr` says `want` ("ro" or "rw").
fn wait_isro(addr: &str, want: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let said = four_letter(addr, "isro").unwrap_or_default();
        if said.trim() == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{addr} still says {said:?}, not {want}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// How long the lone member may take to serve read-only after the kills. ZooKeeper's lone
/// peer goes LOOKING as soon as its quorum connections break and starts its read-only server
/// after a grace of max(2 s, tickTime) in LOOKING: about 2 s here. corral's counts as cut
/// off 2 s after it last knew a leader (a leader: syncLimit ticks without a quorum's
/// acknowledgement, and 2 s more): about 12 s here.
const TO_READ_ONLY: Duration = Duration::from_secs(20);
/// How long the survivor may take to serve read-write again once the others were restarted
/// (each restart already waited until that member served sessions).
const TO_READ_WRITE: Duration = Duration::from_secs(30);

/// Kills members 1 and 2 (indices), leaving member 0 cut off and read-only.
fn lose_quorum(ens: &mut dyn Ensemble) {
    for i in [1, 2] {
        ens.kill9(i).expect("kill -9");
    }
    wait_isro(&ens.addrs()[0], "ro", TO_READ_ONLY);
}

fn regain_quorum(ens: &mut dyn Ensemble) {
    for i in [1, 2] {
        ens.restart(i).expect("restart");
    }
    wait_isro(&ens.addrs()[0], "rw", TO_READ_WRITE);
}

/// Waits until `addr` (a single member) serves `path`: a write needs only a quorum's
/// acknowledgement, which may not include the survivor, and read-only it serves only what it
/// had when the others died (ZooKeeper's also refuses a client that has seen a newer zxid).
async fn wait_served_by(addr: &str, path: &str) {
    let plain = ClientBuilder::new(addr).connect().await.expect("connect");
    let deadline = Instant::now() + Duration::from_secs(10);
    while plain.exists(path).await.expect("exists").is_none() {
        assert!(Instant::now() < deadline, "{addr} never served {path}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    plain.close().await.expect("close");
}

/// A client with read-only allowed and a session on the whole ensemble loses the quorum: it
/// never expires, is refused by the read-only survivor (its session is not downgraded), and
/// resumes its own session (same id, its ephemeral kept) as soon as the survivor is
/// read-write again.
async fn read_only_then_the_same_session(ens: &mut dyn Ensemble, name: &str) {
    let survivor = ens.addrs()[0].clone();
    let client = ClientBuilder::new(&ens.connect_string())
        .session_timeout(Duration::from_secs(30))
        .read_only(true)
        .connect()
        .await
        .expect("connect");
    assert_eq!(client.state(), SessionState::Connected);
    let sid = client.session_id();
    let path = format!("/{}", common::unique_name("ro"));
    let own = format!("{path}/own");
    client
        .create(&path, b"v1", &open_acl_unsafe(), CreateMode::Persistent)
        .await
        .expect("create");
    // With local sessions on (ZooKeeper's read-only mode needs them), a session is known to
    // its member alone until its first ephemeral makes it global: only then can another
    // member, or a later leader, resume it.
    client
        .create(&own, b"", &open_acl_unsafe(), CreateMode::Ephemeral)
        .await
        .expect("create an ephemeral");
    wait_served_by(&survivor, &own).await;
    let mut events = client.session_events();

    let t0 = Instant::now();
    tokio::task::block_in_place(|| lose_quorum(ens));
    eprintln!(
        "{name}: the survivor read-only {:?} after the kills",
        t0.elapsed()
    );
    // Until the survivor knew itself cut off (2 s without a quorum, for both servers), it
    // may have resumed the session: what counts is from "ro" on.
    let before: Vec<SessionEvent> = std::iter::from_fn(|| events.try_recv().ok()).collect();
    assert!(
        before.iter().all(|e| e.state != SessionState::Expired),
        "{before:?}"
    );
    // The survivor says "ro" by now; the client, retrying every 2 s at most, tries
    // it a few times in this while and is turned away each time.
    let evs = events_for(&mut events, Duration::from_secs(4)).await;
    eprintln!(
        "{name}: the client still suspended {:?} after the kills: {evs:?}",
        t0.elapsed()
    );
    assert!(
        evs.iter().all(|e| e.state == SessionState::Suspended),
        "suspended, neither served read-only nor expired: {evs:?}"
    );
    assert_eq!(client.state(), SessionState::Suspended);

    let t0 = Instant::now();
    tokio::task::block_in_place(|| regain_quorum(ens));
    let evs = events_until(&mut events, SessionState::Connected, TO_READ_WRITE).await;
    eprintln!(
        "{name}: back to read-write {:?} after the restarts began: {evs:?}",
        t0.elapsed()
    );
    assert!(
        evs.iter().all(|e| e.state != SessionState::Expired),
        "{evs:?}"
    );
    assert_eq!(
        evs.last().map(|e| e.session_id),
        Some(sid),
        "the client's own session, resumed: {evs:?}"
    );
    let stat = client
        .exists(&own)
        .await
        .expect("exists")
        .expect("the ephemeral outlived the outage");
    assert_eq!(stat.ephemeral_owner, sid);
    client
        .set_data(&path, b"v2", -1)
        .await
        .expect("a write, read-write again");
    client.close().await.expect("close");
}

/// A client that first connects while only the read-only survivor answers gets a session
/// local to it, then a real one (another id, not an expiry) once the quorum is back, and the
/// watch it set while read-only goes along.
async fn only_read_only_then_a_real_session(ens: &mut dyn Ensemble, name: &str) {
    let survivor = ens.addrs()[0].clone();
    let path = format!("/{}", common::unique_name("ro-first"));
    {
        let writer = ClientBuilder::new(&ens.connect_string())
            .connect()
            .await
            .expect("connect");
        writer
            .create(&path, b"v1", &open_acl_unsafe(), CreateMode::Persistent)
            .await
            .expect("create");
        writer.close().await.expect("close");
    }
    wait_served_by(&survivor, &path).await;
    tokio::task::block_in_place(|| lose_quorum(ens));
    let client = ClientBuilder::new(&ens.connect_string())
        .session_timeout(Duration::from_secs(30))
        .read_only(true)
        .connect()
        .await
        .expect("a read-only session");
    assert_eq!(client.state(), SessionState::ConnectedReadOnly);
    let local = client.session_id();
    let (_, _, watch) = client.get_data_w(&path).await.expect("a watched read");
    let mut events = client.session_events();

    let t0 = Instant::now();
    tokio::task::block_in_place(|| regain_quorum(ens));
    let evs = events_until(&mut events, SessionState::Connected, TO_READ_WRITE).await;
    eprintln!(
        "{name}: a real session {:?} after the restarts began: {evs:?}",
        t0.elapsed()
    );
    assert!(
        evs.iter().all(|e| e.state != SessionState::Expired),
        "no session of the client's ended: {evs:?}"
    );
    let real = client.session_id();
    assert_ne!(
        real, local,
        "a real session, not the read-only member's: {evs:?}"
    );
    // The watch set while read-only went along to the real session.
    let other = ClientBuilder::new(&ens.connect_string())
        .connect()
        .await
        .expect("connect");
    other.set_data(&path, b"v2", -1).await.expect("write");
    let fired = tokio::time::timeout(Duration::from_secs(5), watch)
        .await
        .expect("the watch fires")
        .expect("fires, not fails");
    assert_eq!(fired.path, path);
    client
        .create(
            &format!("{path}/mine"),
            b"",
            &open_acl_unsafe(),
            CreateMode::Ephemeral,
        )
        .await
        .expect("a write in the real session");
    client.close().await.expect("close");
    other.close().await.expect("close");
}

/// corral reads `readonlymode.enabled` from zoo.cfg.
const CORRAL_READ_ONLY_CFG: &str = "readonlymode.enabled=true\n";
/// ZooKeeper 3.8 reads it only as a JVM system property (a zoo.cfg line would become
/// `zookeeper.readonlymode.enabled`, which nothing reads).
const ZK_READ_ONLY_JVM: &[&str] = &["-Dreadonlymode.enabled=true"];
/// ZooKeeper's read-only server creates local sessions only (it answers a global
/// createSession with NotReadOnly), so it serves no new client without local sessions;
/// upgrading lets a session's first ephemeral make it global, as in the first scenario.
const ZK_READ_ONLY_CFG: &str = "localSessionsEnabled=true\nlocalSessionsUpgradingEnabled=true\n";

/// A scenario as two tests: on corral's ensemble, and on ZooKeeper's (skipped outside CI
/// when ZooKeeper is not installed).
macro_rules! on_both {
    ($scenario:ident: $corral:ident, $zookeeper:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $corral() {
            let mut ens = CorralEnsemble::start(3, CORRAL_READ_ONLY_CFG);
            $scenario(&mut ens, "corral").await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $zookeeper() {
            let Some(mut ens) =
                RealZkEnsemble::start_with_jvm(3, ZK_READ_ONLY_CFG, ZK_READ_ONLY_JVM)
            else {
                return;
            };
            $scenario(&mut ens, "zookeeper").await;
        }
    };
}

on_both!(read_only_then_the_same_session:
    read_only_while_the_quorum_is_lost_then_the_same_session_again,
    read_only_while_the_quorum_is_lost_then_the_same_session_again_real_zk);
on_both!(only_read_only_then_a_real_session:
    a_client_that_only_met_read_only_gets_a_real_session_later,
    a_client_that_only_met_read_only_gets_a_real_session_later_real_zk);

/// ZooKeeper's read-only server without local sessions cannot make the session a read-only
/// client asks for: it answers the connect with a bare reply header saying NotReadOnly, not a
/// ConnectResponse. The client names that refusal rather than failing to decode it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_zookeeper_without_local_sessions_refuses_by_name_real_zk() {
    let Some(mut ens) = RealZkEnsemble::start_with_jvm(3, "", ZK_READ_ONLY_JVM) else {
        return;
    };
    tokio::task::block_in_place(|| lose_quorum(&mut ens));
    let opts = ConnectOptions {
        read_only: Some(true),
        ..ConnectOptions::default()
    };
    match Connection::connect(&ens.addrs()[0], opts).await {
        Err(ClientError::Server(ErrorCode::NotReadOnly)) => {}
        Err(e) => panic!("refused with {e:?}, not NotReadOnly"),
        Ok(c) => panic!("a session {:#x} from a read-only ZooKeeper", c.session_id()),
    }
}
