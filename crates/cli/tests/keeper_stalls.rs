//! A stalled keeper expires nobody. Ten healthy clients (4000 ms sessions, a write every
//! second, reconnecting and resuming their session whenever their connection dies, as
//! ZooKeeper's Java client does) live through the keeper SIGSTOPped for 5000 ms and for
//! 8000 ms, three times each, and, with the `failpoints` feature, through a 6000 ms fsync:
//! no session expires, and every stall is logged, counted in `mntr` and reported by
//! `corral doctor`. The same clients against ZooKeeper 3.8 (an ignored test, for the
//! comparison) lose their sessions.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{doctor, finding, CorralServer, ServerProcess};
use corral_client::proto::{CreateMode, CreateRequest, Request, SetDataRequest};
use corral_client::{open_acl_unsafe, ClientError, ConnectOptions, Connection};
use tokio::sync::watch;
use tokio::task::JoinHandle;

const TIMEOUT_MS: i32 = 4000;
const CLIENTS: usize = 10;

/// What one client lived through.
#[derive(Debug, Default)]
struct ClientLog {
    session: i64,
    reconnects: u32,
    expired: bool,
    writes_ok: u64,
}

/// Ten clients, each with its own session and node.
struct Fleet {
    stop: watch::Sender<bool>,
    up: Vec<Arc<AtomicBool>>,
    tasks: Vec<JoinHandle<ClientLog>>,
}

impl Fleet {
    async fn start(addr: &str, root: &str) -> Fleet {
        let (stop, _) = watch::channel(false);
        let mut up = Vec::new();
        let mut tasks = Vec::new();
        for i in 0..CLIENTS {
            let flag = Arc::new(AtomicBool::new(false));
            up.push(Arc::clone(&flag));
            tasks.push(tokio::spawn(healthy_client(
                addr.to_string(),
                format!("{root}-{i}"),
                stop.subscribe(),
                flag,
            )));
        }
        let fleet = Fleet { stop, up, tasks };
        assert!(
            fleet.all_up(Duration::from_secs(10)).await,
            "every client connected"
        );
        fleet
    }

    /// Waits until every client holds a live connection; false if one never does.
    async fn all_up(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.up.iter().all(|u| u.load(Ordering::SeqCst)) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    async fn finish(self) -> Vec<ClientLog> {
        self.stop.send_replace(true);
        let mut logs = Vec::new();
        for t in self.tasks {
            logs.push(t.await.expect("a client task"));
        }
        logs
    }
}

/// A client that writes every second and, when its connection dies (no reply within two
/// thirds of the timeout, or an error), reconnects with its session id and password until
/// the server resumes the session or says it expired.
async fn healthy_client(
    addr: String,
    path: String,
    mut stop: watch::Receiver<bool>,
    up: Arc<AtomicBool>,
) -> ClientLog {
    let mut log = ClientLog::default();
    let opts = ConnectOptions {
        session_timeout_ms: TIMEOUT_MS,
        ..ConnectOptions::default()
    };
    let mut conn = Connection::connect(&addr, opts)
        .await
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    log.session = conn.session_id();
    let passwd = conn.passwd();
    let create = Request::Create(CreateRequest {
        path: path.clone(),
        data: Some(Vec::new()),
        acl: open_acl_unsafe(),
        flags: CreateMode::Persistent.code(),
    });
    conn.request(create)
        .await
        .expect("create the client's node");
    up.store(true, Ordering::SeqCst);
    let read_timeout = Duration::from_millis(TIMEOUT_MS as u64 * 2 / 3);
    loop {
        if *stop.borrow() {
            break;
        }
        if conn.is_closed() {
            up.store(false, Ordering::SeqCst);
            let resume = ConnectOptions {
                session_timeout_ms: TIMEOUT_MS,
                session_id: log.session,
                passwd: passwd.clone(),
                last_zxid_seen: conn.last_zxid(),
                ..ConnectOptions::default()
            };
            match tokio::time::timeout(Duration::from_secs(1), Connection::connect(&addr, resume))
                .await
            {
                Ok(Ok(c)) => {
                    conn = c;
                    log.reconnects += 1;
                    up.store(true, Ordering::SeqCst);
                }
                Ok(Err(ClientError::SessionExpired)) => {
                    log.expired = true;
                    return log;
                }
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
            continue;
        }
        let write = conn.request(Request::SetData(SetDataRequest {
            path: path.clone(),
            data: Some(b"alive".to_vec()),
            version: -1,
        }));
        if let Ok(Ok(r)) = tokio::time::timeout(read_timeout, write).await {
            if r.err == corral_client::proto::ErrorCode::Ok {
                log.writes_ok += 1;
            }
        }
        tokio::select! {
            _ = stop.changed() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    if !conn.is_closed() {
        let _ = tokio::time::timeout(Duration::from_secs(2), conn.close()).await;
    }
    log
}

/// SIGSTOPs `server` for each of `stops`, letting the fleet settle before and after each.
async fn stop_trials(server: &ServerProcess, fleet: &Fleet, stops: &[u64]) {
    for (i, ms) in stops.iter().enumerate() {
        tokio::time::sleep(Duration::from_secs(2)).await;
        server.signal("STOP").expect("SIGSTOP");
        tokio::time::sleep(Duration::from_millis(*ms)).await;
        server.signal("CONT").expect("SIGCONT");
        // Reconnecting takes a retry or two; an expired client never comes back.
        let back = fleet.all_up(Duration::from_secs(15)).await;
        eprintln!("trial {i}: stopped {ms} ms, every client back: {back}");
    }
}

fn mntr_value(server: &ServerProcess, key: &str) -> i64 {
    let text = server.four_letter("mntr");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}\t")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{key} in mntr:\n{text}"))
}

/// The "keeper stalled" warnings in `log` with their `late_ms`.
fn stall_lines(log: &str) -> Vec<u64> {
    log.lines()
        .filter(|l| l.contains("keeper stalled"))
        .filter_map(|l| {
            l.split("late_ms=")
                .nth(1)
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstop_of_5_and_8_seconds_expires_no_session() {
    let server = CorralServer::start("");
    let addr = server.addr();
    let root = format!("/{}", common::unique_name("stall"));
    let fleet = Fleet::start(&addr, &root).await;
    stop_trials(&server.proc, &fleet, &[5000, 5000, 5000, 8000, 8000, 8000]).await;
    let back = fleet.all_up(Duration::from_secs(5)).await;
    let expired_on_server = mntr_value(&server.proc, "zk_corral_sessions_expired_total");
    let obit = server.four_letter("obit");
    let logs = fleet.finish().await;
    eprintln!("clients: {logs:?}");
    assert!(
        back,
        "every client connected after the last stall: {logs:?}"
    );
    assert_eq!(
        logs.iter().filter(|l| l.expired).count(),
        0,
        "no session expired: {logs:?}"
    );
    assert_eq!(expired_on_server, 0, "{obit}");
    for l in &logs {
        assert!(
            !obit.contains(&format!("0x{:x} ", l.session)),
            "no obituary for a live client's session 0x{:x}:\n{obit}",
            l.session
        );
        assert!(l.writes_ok > 10, "the client kept writing: {l:?}");
    }
    assert!(
        logs.iter().map(|l| l.reconnects).sum::<u32>() >= CLIENTS as u32,
        "the clients lost their connections and reconnected: {logs:?}"
    );
    // Each stall logged with its length, counted, and reported by the doctor.
    let lines = stall_lines(&server.proc.stderr_text());
    let long: Vec<u64> = lines.iter().copied().filter(|ms| *ms >= 4900).collect();
    assert!(long.len() >= 6, "six long stalls logged: {lines:?}");
    assert!(
        long.iter().filter(|ms| **ms >= 7900).count() >= 3,
        "three of 8 s: {long:?}"
    );
    assert!(mntr_value(&server.proc, "zk_corral_keeper_stalls_detected") >= 6);
    assert!(mntr_value(&server.proc, "zk_corral_keeper_stalled_ms_total") >= 38_500);
    let (_, doc) = doctor(&["--server", &addr]);
    let stall = finding(&doc, "keeper_stall").unwrap_or_else(|| panic!("{doc:#}"));
    let summary = stall["summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains(&format!("stalled {} time(s)", lines.len())),
        "{summary}"
    );
    assert_eq!(
        stall["severity"], "problem",
        "8 s is over a third of 4 s: {doc:#}"
    );
}

/// The same clients against ZooKeeper 3.8 SIGSTOPped the same way, for comparison (run with
/// `--ignored`): it counts the time it was stopped against every session, so they expire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a comparison with ZooKeeper, not a test of corral (about 2 minutes)"]
async fn zookeeper_expires_them() {
    let Some(zk) = common::RealZk::start("") else {
        return;
    };
    let addr = zk.proc.addr();
    let root = format!("/{}", common::unique_name("stall"));
    let mut expired = 0;
    // One fleet per trial: an expired client does not come back.
    for ms in [5000, 5000, 5000, 8000, 8000, 8000] {
        let fleet = Fleet::start(&addr, &root).await;
        stop_trials(&zk.proc, &fleet, &[ms]).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let logs = fleet.finish().await;
        let n = logs.iter().filter(|l| l.expired).count();
        eprintln!("ZooKeeper, SIGSTOP {ms} ms: {n} of {CLIENTS} sessions expired");
        expired += n;
    }
    eprintln!("ZooKeeper: {expired} of {} sessions expired", 6 * CLIENTS);
    assert!(expired > 0, "ZooKeeper counts a stop against its sessions");
}

/// A 6000 ms fsync (the `wal-fsync` failpoint, set at run time on the admin server): writes
/// wait, connections with a write in flight time out and reconnect, and no session expires.
#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_6_second_fsync_expires_no_session() {
    let http = common::free_port();
    let server = CorralServer::start(&format!(
        "admin.enableServer=true\nadmin.serverPort={http}\n"
    ));
    let addr = server.addr();
    let root = format!("/{}", common::unique_name("fsync"));
    let fleet = Fleet::start(&addr, &root).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (status, body) = tokio::task::spawn_blocking(move || {
        common::admin_post(http, "/failpoints/wal-fsync", "1*sleep(6000)")
    })
    .await
    .expect("post");
    assert_eq!(status, 200, "{body}");
    // The next fsync sleeps 6 s; the clients' writes every second reach it at once.
    tokio::time::sleep(Duration::from_secs(9)).await;
    let back = fleet.all_up(Duration::from_secs(15)).await;
    let logs = fleet.finish().await;
    eprintln!("clients: {logs:?}");
    assert!(back, "{logs:?}");
    assert_eq!(logs.iter().filter(|l| l.expired).count(), 0, "{logs:?}");
    assert_eq!(
        mntr_value(&server.proc, "zk_corral_sessions_expired_total"),
        0
    );
    let log = server.proc.stderr_text();
    let slow: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("fsync of the write-ahead log was slow"))
        .collect();
    assert!(
        slow.iter().any(|l| l
            .split("ms=")
            .nth(1)
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|ms| ms >= 6000)),
        "the slow fsync logged with its length: {slow:?}"
    );
    assert!(mntr_value(&server.proc, "zk_fsync_threshold_exceed_count") >= 1);
    assert!(mntr_value(&server.proc, "zk_corral_fsync_max_us") >= 6_000_000);
    let (_, doc) = doctor(&["--server", &addr]);
    let fsync = finding(&doc, "fsync").unwrap_or_else(|| panic!("{doc:#}"));
    assert!(
        fsync["summary"]
            .as_str()
            .is_some_and(|s| s.contains("max 6")),
        "{fsync:#}"
    );
}
