//! corral-client with read-only sessions allowed (`ClientBuilder::read_only`), on a 3-member
//! corral ensemble in read-only mode whose quorum is lost and comes back: the client is
//! served read-only meanwhile (reads work, writes fail `NotReadOnly`), and goes back to its
//! own session, or to a first real one, as soon as a read-write member answers.

mod common;

use std::time::{Duration, Instant};

use common::{four_letter, CorralEnsemble};
use corral_client::proto::{CreateMode, ErrorCode};
use corral_client::{open_acl_unsafe, ClientBuilder, ClientError, SessionEvent, SessionState};
use tokio::sync::broadcast;

const READ_ONLY_CFG: &str = "readonlymode.enabled=true\n";

/// The session events until (and with) the first in state `until`, within `within`.
async fn events_until(
    rx: &mut broadcast::Receiver<SessionEvent>,
    until: SessionState,
    within: Duration,
) -> Vec<SessionEvent> {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Ok(ev)) => {
                let done = ev.state == until;
                seen.push(ev);
                if done {
                    return seen;
                }
            }
            Ok(Err(e)) => panic!("session events: {e}; so far {seen:?}"),
            Err(_) => panic!("no {until:?} within {within:?}; events: {seen:?}"),
        }
    }
}

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

/// Kills members 1 and 2 (indices), leaving member 0 cut off and read-only.
fn lose_quorum(ens: &mut CorralEnsemble) {
    for i in [1, 2] {
        ens.members[i].kill9().expect("kill -9");
    }
    wait_isro(&ens.members[0].addr(), "ro", Duration::from_secs(15));
}

fn regain_quorum(ens: &mut CorralEnsemble) {
    for i in [1, 2] {
        ens.members[i].restart().expect("restart");
    }
    wait_isro(&ens.members[0].addr(), "rw", Duration::from_secs(30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_while_the_quorum_is_lost_then_the_same_session_again() {
    let mut ens = CorralEnsemble::start(3, READ_ONLY_CFG);
    let client = ClientBuilder::new(&ens.connect_string())
        .session_timeout(Duration::from_secs(30))
        .read_only(true)
        .connect()
        .await
        .expect("connect");
    assert_eq!(client.state(), SessionState::Connected);
    let sid = client.session_id();
    let path = format!("/{}", common::unique_name("ro"));
    client
        .create(&path, b"v1", &open_acl_unsafe(), CreateMode::Persistent)
        .await
        .expect("create");
    let mut events = client.session_events();

    tokio::task::block_in_place(|| lose_quorum(&mut ens));
    let evs = events_until(
        &mut events,
        SessionState::ConnectedReadOnly,
        Duration::from_secs(20),
    )
    .await;
    let ro = evs.last().expect("read-only");
    assert_eq!(ro.server.as_deref(), Some(ens.members[0].addr().as_str()));
    assert!(
        evs.iter().all(|e| e.state != SessionState::Expired),
        "{evs:?}"
    );
    let (data, _) = client.get_data(&path).await.expect("a read, read-only");
    assert_eq!(data, b"v1");
    match client.set_data(&path, b"v2", -1).await {
        Err(ClientError::Server(ErrorCode::NotReadOnly)) => {}
        other => panic!("a write on a read-only server: {other:?}"),
    }

    let t0 = Instant::now();
    tokio::task::block_in_place(|| regain_quorum(&mut ens));
    let evs = events_until(
        &mut events,
        SessionState::Connected,
        Duration::from_secs(30),
    )
    .await;
    eprintln!(
        "back to read-write {:?} after the members restarted: {evs:?}",
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
    client
        .set_data(&path, b"v2", -1)
        .await
        .expect("a write, read-write again");
    client.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_only_met_read_only_gets_a_real_session_later() {
    let mut ens = CorralEnsemble::start(3, READ_ONLY_CFG);
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
    tokio::task::block_in_place(|| lose_quorum(&mut ens));
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

    tokio::task::block_in_place(|| regain_quorum(&mut ens));
    let evs = events_until(
        &mut events,
        SessionState::Connected,
        Duration::from_secs(30),
    )
    .await;
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
