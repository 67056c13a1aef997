//! The keeper in process under a paused clock: a real keeper (durable consensus on a temp
//! dir) serving a client over an in-memory pipe, with time advanced by the test. Pins expiry
//! at the timeout to the millisecond, keep-alive by ping, resume with id and password, and
//! that a stalled keeper does not count its stall against clients.
//!
//! The clock is paused only once the session exists (recovery and the first write run on
//! the real clock), and advanced in steps below the stall threshold, as a running keeper
//! sees time pass; one jump past it is what a stall looks like.

use std::sync::Arc;
use std::time::Duration;

use corral_proto::frame::frame;
use corral_proto::jute::{Jute, Reader};
use corral_proto::{ConnectRequest, ConnectResponse, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use crate::config::Config;
use crate::keeper::Keeper;

const TIMEOUT_MS: u64 = 4000;

struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "corral-paused-{name}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn keeper(dir: &TempDir) -> Arc<Keeper> {
    let keeper = Keeper::new(Config {
        data_dir: dir.0.clone(),
        client_port: 0,
        ..Config::default()
    });
    keeper.start_consensus().await.expect("start");
    keeper
}

struct Client {
    io: DuplexStream,
    session_id: i64,
    passwd: Vec<u8>,
}

async fn read_frame(io: &mut DuplexStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await.ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(len).max(0) as usize];
    io.read_exact(&mut body).await.ok()?;
    Some(body)
}

/// Connects over a fresh pipe; `resume` gives the session id and password to resume.
async fn connect(keeper: &Arc<Keeper>, resume: Option<(i64, Vec<u8>)>) -> (Client, i32) {
    let (mut io, server) = tokio::io::duplex(64 * 1024);
    keeper.serve_stream(server, "127.0.0.1:40000".parse().expect("addr"));
    let (session_id, passwd) = resume.unwrap_or((0, vec![0; 16]));
    let req = ConnectRequest {
        timeout: TIMEOUT_MS as i32,
        session_id,
        passwd,
        read_only: Some(false),
        ..Default::default()
    };
    io.write_all(&frame(&req.to_bytes())).await.expect("send");
    let body = read_frame(&mut io).await.expect("connect response");
    let resp = ConnectResponse::read(&mut Reader::new(&body)).expect("decode");
    let client = Client {
        io,
        session_id: resp.session_id,
        passwd: resp.passwd,
    };
    (client, resp.timeout)
}

impl Client {
    /// Sends a ping and waits for its reply (the session is touched when it arrives).
    async fn ping(&mut self) {
        self.io
            .write_all(&Request::Ping.to_frame(-2))
            .await
            .expect("send ping");
        let body = read_frame(&mut self.io).await.expect("ping reply");
        let xid = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
        assert_eq!(xid, -2, "the reply is the ping's");
    }

    /// Returns once the keeper has closed the connection. No timeout: under the paused
    /// clock one would fire while the keeper waits for its log's fsync.
    async fn closed_by_keeper(&mut self) -> bool {
        let mut b = [0u8; 256];
        loop {
            match self.io.read(&mut b).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => continue,
            }
        }
    }
}

/// Lets every task woken by the last advance run to its next wait.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

/// Advances the paused clock by `total` in steps of `step`, letting the keeper run after each.
async fn advance(total: Duration, step: Duration) {
    let mut left = total;
    while !left.is_zero() {
        let d = left.min(step);
        tokio::time::advance(d).await;
        settle().await;
        left -= d;
    }
}

const STEP: Duration = Duration::from_millis(5);
/// The runtime's timers fire on whole-millisecond ticks, so a deadline with a fraction of a
/// millisecond is seen at the next tick: "at the deadline" means within this of it.
const TICK: Duration = Duration::from_millis(1);

/// Whether the session is still live for the keeper (tracked, no expiry proposed).
fn live(keeper: &Keeper, session_id: i64) -> bool {
    keeper
        .shared()
        .sessions()
        .get(session_id)
        .is_some_and(|l| !l.expiring)
}

#[tokio::test(flavor = "current_thread")]
async fn a_silent_session_expires_at_its_timeout_to_the_millisecond() {
    let dir = TempDir::new("expiry");
    let keeper = keeper(&dir).await;
    let (mut client, timeout) = connect(&keeper, None).await;
    assert_eq!(timeout as u64, TIMEOUT_MS);
    tokio::time::pause();
    client.ping().await;
    advance(Duration::from_millis(TIMEOUT_MS - 1), STEP).await;
    assert!(
        live(&keeper, client.session_id),
        "alive 1 ms before its deadline"
    );
    advance(Duration::from_millis(1) + TICK, STEP).await;
    assert!(
        !live(&keeper, client.session_id),
        "expiring at its deadline"
    );
    assert!(
        client.closed_by_keeper().await,
        "the expired session's connection is closed"
    );
    assert!(
        keeper.state().tree.session(client.session_id).is_none(),
        "the session is gone from the tree"
    );
    let obituary = keeper
        .state()
        .tree
        .obituaries()
        .find(|o| o.session_id == client.session_id)
        .cloned()
        .expect("an obituary");
    // The silence the checker saw, in whole ms: the timeout, or one tick more.
    let e = &obituary.evidence;
    assert!(
        (TIMEOUT_MS..=TIMEOUT_MS + 1).contains(&(e.silent_ms as u64)),
        "{e:?}"
    );
    // Its connection stayed open: the client went quiet.
    assert_eq!(
        e.cause,
        corral_tree::obituary::EndCause::SilentWhileConnected,
        "{e:?}"
    );
    keeper.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_ping_one_millisecond_before_the_deadline_keeps_the_session() {
    let dir = TempDir::new("keepalive");
    let keeper = keeper(&dir).await;
    let (mut client, _) = connect(&keeper, None).await;
    tokio::time::pause();
    client.ping().await;
    for _ in 0..3 {
        advance(Duration::from_millis(TIMEOUT_MS - 1), STEP).await;
        assert!(live(&keeper, client.session_id));
        client.ping().await;
    }
    // The last ping moved the deadline a full timeout on: silent from here, it expires then.
    advance(Duration::from_millis(TIMEOUT_MS - 1), STEP).await;
    assert!(live(&keeper, client.session_id));
    advance(Duration::from_millis(1) + TICK, STEP).await;
    assert!(!live(&keeper, client.session_id));
    keeper.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_client_resumes_its_session_with_id_and_password() {
    let dir = TempDir::new("resume");
    let keeper = keeper(&dir).await;
    let (mut first, _) = connect(&keeper, None).await;
    let (session_id, passwd) = (first.session_id, first.passwd.clone());
    tokio::time::pause();
    first.ping().await;
    drop(first);
    // Disconnected for most of the timeout: the session waits for its client.
    advance(Duration::from_millis(TIMEOUT_MS - 500), STEP).await;
    assert!(live(&keeper, session_id));
    let (mut again, timeout) = connect(&keeper, Some((session_id, passwd.clone()))).await;
    assert_eq!((again.session_id, timeout as u64), (session_id, TIMEOUT_MS));
    // The reconnect counts as hearing from the client: a full timeout from it.
    advance(Duration::from_millis(TIMEOUT_MS - 1), STEP).await;
    assert!(live(&keeper, session_id));
    again.ping().await;
    // A wrong password is told the session expired (id 0), and the session is untouched.
    let mut wrong = passwd.clone();
    wrong[0] ^= 0xff;
    let (mut refused, timeout) = connect(&keeper, Some((session_id, wrong))).await;
    assert_eq!((refused.session_id, timeout), (0, 0));
    assert!(refused.closed_by_keeper().await);
    assert!(live(&keeper, session_id));
    keeper.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_stalled_keeper_does_not_count_its_stall_against_clients() {
    let dir = TempDir::new("stall");
    let keeper = keeper(&dir).await;
    let (mut client, _) = connect(&keeper, None).await;
    tokio::time::pause();
    client.ping().await;
    advance(Duration::from_millis(1000), STEP).await;
    // The keeper does not run for 10 s (one jump: the checker wakes 10 s late).
    let stall = Duration::from_millis(10_000);
    tokio::time::advance(stall).await;
    settle().await;
    assert!(
        live(&keeper, client.session_id),
        "a stall longer than the timeout expired a client that could not be heard"
    );
    assert_eq!(keeper.shared().sessions().stalls_detected, 1);
    // The stall was added to the deadline: the session has the 3 s it had left before the
    // stall (less the one check interval the checker was due to wait anyway).
    advance(Duration::from_millis(TIMEOUT_MS - 1000 - 20), STEP).await;
    assert!(live(&keeper, client.session_id));
    advance(Duration::from_millis(40), STEP).await;
    assert!(!live(&keeper, client.session_id));
    keeper.shutdown(Duration::from_secs(5)).await;
}
