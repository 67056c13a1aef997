//! Durability of the standalone keeper (issue 3): the write-ahead log, snapshots and recovery,
//! tested against the `corral` binary (DESIGN.md "Durability", "Testing" -> faults).
//!
//! - `crash_*`: writers create and set their own znodes while the keeper is SIGKILLed at
//!   random moments and restarted on the same dataDir and port; after every restart each
//!   acknowledged write is there with its data and version, a write in flight at the kill is
//!   either wholly there or wholly absent, and a session (with its ephemeral node) survives.
//!   `CORRAL_CRASH_ROUNDS` sets the rounds (default 10), `CORRAL_CRASH_SEED` replays a run;
//!   scripts/crash-test.sh runs the long version.
//! - `torn_tail_*`: the last record of the last WAL segment is damaged after a SIGKILL; the
//!   keeper cuts it with a warning naming the segment and offset and keeps everything before.
//! - `corrupt_record_in_the_middle_refuses_to_start`: a damaged record followed by good ones
//!   is not silently skipped: the keeper exits non-zero naming the segment and offset.
//! - `graceful_restart_keeps_everything`, `data_log_dir_holds_the_wal`.
//!
//! The WAL layout these tests read (DESIGN.md, issue 3): segments `<dataLogDir or
//! dataDir>/wal/<first log index, 20 digits>.log`, preallocated and zero-filled; each record is
//! a 4-byte big-endian payload length, a 4-byte big-endian CRC32C of the payload, the payload;
//! a length of 0 ends the data. Snapshots live in `<dataDir>/snapshots/`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{unique_name, CorralServer};
use corral_client::proto::{CreateMode, ErrorCode};
use corral_client::{open_acl_unsafe, ClientError, ConnectOptions, Connection};

/// Bound on any single request in these tests; a keeper that takes longer is broken.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Session timeout of the long-lived session whose ephemeral must survive restarts.
const LONG_SESSION_MS: i32 = 30_000;

// ---------------------------------------------------------------------------------------------
// Small utilities

/// xorshift64*: the tests need only unpredictable kill moments and sizes, and a seed to
/// replay a run; no extra dependency for that.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform-ish in [lo, hi).
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo).max(1)
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    match v.trim().parse() {
        Ok(n) => Some(n),
        Err(_) => panic!("{name}={v:?} is not a number"),
    }
}

/// CRC32C (Castagnoli, reflected polynomial 0x82F63B78), bit by bit: test logs are small.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn crc32c_known_answer() {
    // RFC 3720 B.4 / the usual check value.
    assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
}

/// Runs blocking server control (SIGKILL, restart: up to START_TIMEOUT of polling) from
/// inside the multi-threaded test runtime without stalling the writer tasks.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

async fn with_timeout<T>(
    what: &str,
    fut: impl std::future::Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    match tokio::time::timeout(REQUEST_TIMEOUT, fut).await {
        Ok(r) => r,
        Err(_) => {
            eprintln!("{what}: no reply within {REQUEST_TIMEOUT:?}");
            Err(ClientError::Timeout)
        }
    }
}

async fn connect(addr: &str) -> Connection {
    with_timeout(
        "connect",
        Connection::connect(addr, ConnectOptions::default()),
    )
    .await
    .unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
}

/// Opens the long-lived session (30 s timeout) used to check that sessions and their
/// ephemerals survive a restart.
async fn connect_long_session(addr: &str) -> Connection {
    let opts = ConnectOptions {
        session_timeout_ms: LONG_SESSION_MS,
        ..Default::default()
    };
    with_timeout("connect long session", Connection::connect(addr, opts))
        .await
        .unwrap_or_else(|e| panic!("connect long session to {addr}: {e}"))
}

/// Resumes a session after a restart with its id and password.
async fn resume_session(
    addr: &str,
    session_id: i64,
    passwd: &[u8],
    last_zxid_seen: i64,
) -> Result<Connection, ClientError> {
    let opts = ConnectOptions {
        session_timeout_ms: LONG_SESSION_MS,
        session_id,
        passwd: passwd.to_vec(),
        last_zxid_seen,
        ..Default::default()
    };
    with_timeout("resume session", Connection::connect(addr, opts)).await
}

/// Checks the resumed session still owns its ephemeral; the reason if not.
async fn check_session(
    addr: &str,
    session_id: i64,
    passwd: &[u8],
    last_zxid: i64,
    ephemeral: &str,
) -> Result<Connection, String> {
    let c = resume_session(addr, session_id, passwd, last_zxid)
        .await
        .map_err(|e| format!("session 0x{session_id:x} could not be resumed: {e}"))?;
    if c.session_id() != session_id {
        return Err(format!(
            "resuming 0x{session_id:x} gave session 0x{:x}",
            c.session_id()
        ));
    }
    match with_timeout("exists ephemeral", c.exists(ephemeral, false)).await {
        Ok(Some(stat)) if stat.ephemeral_owner == session_id => Ok(c),
        Ok(Some(stat)) => Err(format!(
            "ephemeral {ephemeral} is owned by 0x{:x}, not 0x{session_id:x}",
            stat.ephemeral_owner
        )),
        Ok(None) => Err(format!(
            "ephemeral {ephemeral} of session 0x{session_id:x} is gone"
        )),
        Err(e) => Err(format!("exists {ephemeral}: {e}")),
    }
}

fn snapshot_files(data_dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(data_dir.join("snapshots"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

// ---------------------------------------------------------------------------------------------
// The model of what was acknowledged

/// The state of one znode: data and version.
type NodeState = (Vec<u8>, i32);

/// A write sent but never answered (the keeper died first): after the restart the znode must
/// be in exactly one of the two states.
#[derive(Debug, Clone)]
struct InFlight {
    path: String,
    /// None for a create (the znode did not exist).
    before: Option<NodeState>,
    after: NodeState,
}

#[derive(Default)]
struct Model {
    /// Every acknowledged znode and its last acknowledged state.
    acked: BTreeMap<String, NodeState>,
    /// In-flight creates found absent after a restart: they must stay absent.
    must_be_absent: BTreeSet<String>,
    /// Writes in flight at the last kill, to be settled by the next verification.
    in_flight: Vec<InFlight>,
    /// Acknowledged writes not found as acknowledged (each znode counted once), with why.
    lost: BTreeMap<String, String>,
    acked_writes: u64,
    in_flight_applied: u64,
    in_flight_absent: u64,
    unexpected: Vec<String>,
}

/// What one writer did in one round.
#[derive(Default)]
struct WriterReport {
    /// (path, state) in acknowledgement order.
    acked: Vec<(String, NodeState)>,
    in_flight: Option<InFlight>,
    unexpected: Vec<String>,
}

/// One writer: its own connection, creates new znodes and conditionally sets its existing
/// ones (expected version = last acknowledged), one request at a time, until its connection
/// dies (the kill) or `stop` is set. Every acknowledged write is recorded.
async fn writer(
    addr: String,
    root: String,
    w: usize,
    round: u32,
    mut own: BTreeMap<String, NodeState>,
    stop: Arc<AtomicBool>,
    seed: u64,
) -> WriterReport {
    const MAX_OPS_PER_ROUND: u32 = 5_000;
    let mut rep = WriterReport::default();
    let mut rng = Rng::new(seed);
    let c = match with_timeout(
        "writer connect",
        Connection::connect(&addr, ConnectOptions::default()),
    )
    .await
    {
        Ok(c) => c,
        // The kill may come before a writer even connects.
        Err(_) => return rep,
    };
    let mut keys: Vec<String> = own.keys().cloned().collect();
    for n in 0..MAX_OPS_PER_ROUND {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        // Sizes vary so that records straddle page and sector boundaries.
        let pad = "x".repeat(rng.range(0, 1500) as usize);
        let set_existing = !keys.is_empty() && rng.range(0, 3) == 0;
        let (path, before, after, result) = if set_existing {
            let path = keys[rng.range(0, keys.len() as u64) as usize].clone();
            let before = own[&path].clone();
            let data = format!("r{round}w{w}n{n}-set-v{}-{pad}", before.1 + 1).into_bytes();
            let r = with_timeout("setData", c.set_data(&path, &data, before.1))
                .await
                .map(|stat| stat.version);
            (path, Some(before.clone()), (data, before.1 + 1), r)
        } else {
            let path = format!("{root}/w{w}-r{round}-n{n}");
            let data = format!("r{round}w{w}n{n}-create-{pad}").into_bytes();
            let r = with_timeout(
                "create",
                c.create(&path, &data, &open_acl_unsafe(), CreateMode::Persistent),
            )
            .await
            .map(|_| 0);
            (path, None, (data, 0), r)
        };
        match result {
            Ok(version) => {
                if version != after.1 {
                    rep.unexpected.push(format!(
                        "{path}: acknowledged with version {version}, expected {}",
                        after.1
                    ));
                }
                let state = (after.0, version);
                if before.is_none() {
                    keys.push(path.clone());
                }
                own.insert(path.clone(), state.clone());
                rep.acked.push((path, state));
            }
            Err(ClientError::Server(code)) => {
                // Own keys, exact versions: any error code means the keeper lost or
                // invented state (or refused a write for no reason).
                rep.unexpected
                    .push(format!("{path}: write answered {code:?}"));
                break;
            }
            Err(_) => {
                // The connection died under the request: outcome unknown.
                rep.in_flight = Some(InFlight {
                    path,
                    before,
                    after,
                });
                break;
            }
        }
    }
    c.abort();
    rep
}

impl Model {
    fn merge(&mut self, rep: WriterReport) {
        for (path, state) in rep.acked {
            self.acked_writes += 1;
            self.acked.insert(path, state);
        }
        if let Some(f) = rep.in_flight {
            self.in_flight.push(f);
        }
        self.unexpected.extend(rep.unexpected);
    }

    /// The acknowledged znodes of writer `w` (for its next round).
    fn own(&self, root: &str, w: usize) -> BTreeMap<String, NodeState> {
        let prefix = format!("{root}/w{w}-");
        self.acked
            .iter()
            .filter(|(p, _)| p.starts_with(&prefix))
            .map(|(p, s)| (p.clone(), s.clone()))
            .collect()
    }

    /// Reads back every acknowledged znode after a restart. Lost znodes are recorded (once)
    /// and dropped from the model, in-flight writes settled. Returns the number newly lost.
    async fn verify(&mut self, addr: &str) -> usize {
        let c = connect(addr).await;
        let paths: Vec<String> = self
            .acked
            .keys()
            .cloned()
            .chain(self.in_flight.iter().map(|f| f.path.clone()))
            .chain(self.must_be_absent.iter().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let found = read_all(&c, paths).await;
        let _ = with_timeout("close", c.close()).await;

        let in_flight: BTreeMap<String, InFlight> = self
            .in_flight
            .drain(..)
            .map(|f| (f.path.clone(), f))
            .collect();
        let mut newly_lost = 0;
        let mut settle = Vec::new();
        for (path, got) in &found {
            let acked = self.acked.get(path);
            let flight = in_flight.get(path);
            let got_state: Option<NodeState> = match got {
                Ok(s) => s.clone(),
                Err(e) => {
                    newly_lost += 1;
                    self.lost.insert(path.clone(), format!("read failed: {e}"));
                    self.acked.remove(path);
                    continue;
                }
            };
            let before: Option<NodeState> = match flight {
                Some(f) => f.before.clone(),
                None => acked.cloned(),
            };
            if got_state == before {
                if let Some(f) = flight {
                    self.in_flight_absent += 1;
                    if f.before.is_none() {
                        self.must_be_absent.insert(path.clone());
                    }
                }
                continue;
            }
            if let (Some(f), Some(g)) = (flight, &got_state) {
                if *g == f.after {
                    self.in_flight_applied += 1;
                    settle.push((path.clone(), g.clone()));
                    continue;
                }
            }
            if self.must_be_absent.contains(path) {
                self.unexpected.push(format!(
                    "{path}: was absent after an earlier restart, now exists"
                ));
                self.must_be_absent.remove(path);
                continue;
            }
            let describe = |s: &Option<NodeState>| match s {
                None => "absent".to_string(),
                Some((d, v)) => format!("version {v}, data {:?}", short(d)),
            };
            let why = match flight {
                Some(f) => format!(
                    "found {}; expected {} or (in flight at the kill) {}",
                    describe(&got_state),
                    describe(&f.before),
                    describe(&Some(f.after.clone()))
                ),
                None => format!(
                    "found {}; acknowledged {}",
                    describe(&got_state),
                    describe(&before)
                ),
            };
            newly_lost += 1;
            self.lost.insert(path.clone(), why);
            self.acked.remove(path);
        }
        for (path, state) in settle {
            self.must_be_absent.remove(&path);
            self.acked.insert(path, state);
        }
        newly_lost
    }
}

fn short(d: &[u8]) -> String {
    let s = String::from_utf8_lossy(d);
    if s.len() > 40 {
        format!("{}...", &s[..40])
    } else {
        s.into_owned()
    }
}

/// getData of every path, pipelined over a few tasks sharing one connection. Ok(None) for
/// NoNode; Err for anything else.
async fn read_all(
    c: &Connection,
    paths: Vec<String>,
) -> Vec<(String, Result<Option<NodeState>, String>)> {
    let chunks: Vec<Vec<String>> = paths
        .chunks(paths.len().div_ceil(8).max(1))
        .map(|c| c.to_vec())
        .collect();
    let mut tasks = Vec::new();
    for chunk in chunks {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::with_capacity(chunk.len());
            for p in chunk {
                let r = match with_timeout("getData", c.get_data(&p, false)).await {
                    Ok((d, stat)) => Ok(Some((d, stat.version))),
                    Err(ClientError::Server(ErrorCode::NoNode)) => Ok(None),
                    Err(e) => Err(e.to_string()),
                };
                out.push((p, r));
            }
            out
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("read task panicked"));
    }
    all
}

// ---------------------------------------------------------------------------------------------
// Crash test

struct CrashSummary {
    rounds: u32,
    acknowledged: u64,
    lost: usize,
    failed_restarts: u32,
    sessions_lost: u32,
    unexpected: usize,
}

async fn crash_test(variant: &str, extra_cfg: &str) -> CrashSummary {
    const WRITERS: usize = 4;
    let rounds = env_u64("CORRAL_CRASH_ROUNDS").unwrap_or(10) as u32;
    let seed = env_u64("CORRAL_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    eprintln!("crash test {variant}: {rounds} rounds, {WRITERS} writers, CORRAL_CRASH_SEED={seed}");
    let mut rng = Rng::new(seed);

    let mut server = CorralServer::start(extra_cfg);
    let addr = server.addr();
    let data_dir = server.data_dir();
    let root = format!("/{}", unique_name(&format!("crash-{variant}")));
    let mut model = Model::default();

    // The root, and a long-lived session with an ephemeral that must survive every restart.
    let c = connect(&addr).await;
    c.create(&root, b"root", &open_acl_unsafe(), CreateMode::Persistent)
        .await
        .expect("create the test root");
    model.acked.insert(root.clone(), (b"root".to_vec(), 0));
    c.close().await.expect("close");
    let session = connect_long_session(&addr).await;
    let (session_id, passwd) = (session.session_id(), session.passwd());
    let ephemeral = format!("{root}-ephemeral");
    session
        .create(
            &ephemeral,
            b"eph",
            &open_acl_unsafe(),
            CreateMode::Ephemeral,
        )
        .await
        .expect("create the ephemeral");
    let mut last_zxid = session.last_zxid();
    let mut session_conn = Some(session);
    let mut session_alive = true;

    let mut failed_restarts = 0;
    let mut sessions_lost = 0;
    let mut rounds_done = 0;
    let started = Instant::now();
    for round in 0..rounds {
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            tasks.push(tokio::spawn(writer(
                addr.clone(),
                root.clone(),
                w,
                round,
                model.own(&root, w),
                stop.clone(),
                rng.next(),
            )));
        }
        let delay = Duration::from_millis(rng.range(100, 800));
        tokio::time::sleep(delay).await;
        if let Some(s) = &session_conn {
            last_zxid = last_zxid.max(s.last_zxid());
        }
        blocking(|| server.kill9()).expect("SIGKILL the keeper");
        stop.store(true, Ordering::SeqCst);
        for t in tasks {
            match tokio::time::timeout(REQUEST_TIMEOUT * 2, t).await {
                Ok(Ok(rep)) => model.merge(rep),
                Ok(Err(e)) => panic!("writer task failed: {e}"),
                Err(_) => panic!("a writer did not stop within {:?}", REQUEST_TIMEOUT * 2),
            }
        }
        if let Some(s) = session_conn.take() {
            s.abort();
        }
        rounds_done += 1;

        if let Err(e) = blocking(|| server.restart()) {
            failed_restarts += 1;
            eprintln!("round {round}: restart failed: {e}");
            break;
        }
        let newly_lost = model.verify(&addr).await;
        if session_alive {
            match check_session(&addr, session_id, &passwd, last_zxid, &ephemeral).await {
                Ok(conn) => session_conn = Some(conn),
                Err(e) => {
                    sessions_lost += 1;
                    session_alive = false;
                    eprintln!("round {round}: {e}");
                }
            }
        }
        eprintln!(
            "round {round}: killed after {delay:?}; acknowledged so far {}, znodes {}, lost this round {newly_lost}, in flight applied {} / absent {}",
            model.acked_writes,
            model.acked.len(),
            model.in_flight_applied,
            model.in_flight_absent
        );
        // Keep the test going after a loss, so the figures say how bad it is: the root must
        // exist for the writers' creates.
        if !model.acked.contains_key(&root) {
            let c = connect(&addr).await;
            let _ = c
                .create(&root, b"root", &open_acl_unsafe(), CreateMode::Persistent)
                .await;
            let _ = c.close().await;
        }
    }

    let snapshots = snapshot_files(&data_dir);
    let summary = CrashSummary {
        rounds: rounds_done,
        acknowledged: model.acked_writes,
        lost: model.lost.len(),
        failed_restarts,
        sessions_lost,
        unexpected: model.unexpected.len(),
    };
    eprintln!(
        "crash summary ({variant}): rounds {}, acknowledged {}, lost {}, failed restarts {}, sessions lost {}, unexpected {}, in flight applied {} / absent {}, snapshots {}, seed {seed}, {:.1?}",
        summary.rounds,
        summary.acknowledged,
        summary.lost,
        summary.failed_restarts,
        summary.sessions_lost,
        summary.unexpected,
        model.in_flight_applied,
        model.in_flight_absent,
        snapshots.len(),
        started.elapsed()
    );
    let mut problems = Vec::new();
    for (p, why) in model.lost.iter().take(10) {
        problems.push(format!("lost {p}: {why}"));
    }
    for u in model.unexpected.iter().take(10) {
        problems.push(format!("unexpected: {u}"));
    }
    let detail = format!(
        "{}\nseed {seed} (CORRAL_CRASH_SEED); keeper log:\n{}",
        problems.join("\n"),
        server.log_tail()
    );
    assert!(
        summary.acknowledged > 0,
        "no write was acknowledged at all{detail}"
    );
    assert_eq!(summary.failed_restarts, 0, "failed restarts\n{detail}");
    assert_eq!(
        summary.lost, 0,
        "acknowledged writes lost after kill -9 + restart\n{detail}"
    );
    assert_eq!(summary.unexpected, 0, "unexpected answers\n{detail}");
    assert_eq!(
        summary.sessions_lost, 0,
        "the session (and its ephemeral) did not survive a restart\n{detail}"
    );
    if extra_cfg.contains("snapCount") && summary.acknowledged >= 200 {
        assert!(
            !snapshots.is_empty(),
            "{} acknowledged writes with a small snapCount, but no snapshot in {}",
            summary.acknowledged,
            data_dir.join("snapshots").display()
        );
    }
    summary
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_kill9_during_writes() {
    crash_test("default", "").await;
}

/// snapCount 50: restarts recover from a snapshot plus the log after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_kill9_during_writes_small_snap_count() {
    crash_test("snap50", "snapCount=50\nautopurge.snapRetainCount=3\n").await;
}

// ---------------------------------------------------------------------------------------------
// The WAL on disk

/// One record of a WAL segment.
#[derive(Debug, Clone)]
struct WalRecord {
    /// Offset of the record (its length field) in the segment.
    offset: u64,
    len: u32,
}

impl WalRecord {
    fn payload_range(&self) -> std::ops::Range<usize> {
        let start = self.offset as usize + 8;
        start..start + self.len as usize
    }
    fn end(&self) -> u64 {
        self.offset + 8 + u64::from(self.len)
    }
}

/// The segments in `<dir>/wal`, by name (= by first log index).
fn wal_segments(log_dir: &Path) -> Vec<PathBuf> {
    let wal = log_dir.join("wal");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&wal)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .and_then(|n| n.strip_suffix(".log"))
                        .is_some_and(|stem| {
                            stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit())
                        })
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Every valid record of a segment, from the start until the end marker (length 0), the end
/// of the file, or a record that is cut short or fails its CRC (returned second).
fn parse_segment(bytes: &[u8]) -> (Vec<WalRecord>, Option<String>) {
    let mut records = Vec::new();
    let mut off = 0usize;
    loop {
        if off + 8 > bytes.len() {
            return (records, None);
        }
        let len = u32::from_be_bytes([bytes[off], bytes[off + 1], bytes[off + 2], bytes[off + 3]]);
        if len == 0 {
            return (records, None);
        }
        let crc = u32::from_be_bytes([
            bytes[off + 4],
            bytes[off + 5],
            bytes[off + 6],
            bytes[off + 7],
        ]);
        let end = off + 8 + len as usize;
        if end > bytes.len() {
            return (
                records,
                Some(format!("record at {off} (length {len}) runs past the end")),
            );
        }
        if crc32c(&bytes[off + 8..end]) != crc {
            return (records, Some(format!("record at {off}: CRC mismatch")));
        }
        records.push(WalRecord {
            offset: off as u64,
            len,
        });
        off = end;
    }
}

/// The last segment holding records, its bytes and records; panics with what was found if
/// the log is not there or not in the documented layout.
fn last_segment(log_dir: &Path) -> (PathBuf, Vec<u8>, Vec<WalRecord>) {
    let segments = wal_segments(log_dir);
    assert!(
        !segments.is_empty(),
        "no WAL segment (<20 digits>.log) in {} — is the write-ahead log on disk?",
        log_dir.join("wal").display()
    );
    for seg in segments.iter().rev() {
        let bytes = std::fs::read(seg).unwrap_or_else(|e| panic!("read {}: {e}", seg.display()));
        let (records, bad) = parse_segment(&bytes);
        assert!(
            bad.is_none(),
            "{} of a cleanly acknowledged log does not parse as length+CRC32C+payload: {}",
            seg.display(),
            bad.unwrap_or_default()
        );
        if !records.is_empty() {
            if seg != segments.last().expect("non-empty") {
                eprintln!(
                    "note: the last segment by name, {}, holds no record; using {}",
                    segments.last().expect("non-empty").display(),
                    seg.display()
                );
            }
            return (seg.clone(), bytes, records);
        }
    }
    panic!(
        "no WAL segment in {} holds a record",
        log_dir.join("wal").display()
    );
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Whether `line` names `offset` as a whole token, in decimal or as 0x-hex.
fn names_offset(line: &str, offset: u64) -> bool {
    let dec = offset.to_string();
    let hex = format!("0x{offset:x}");
    line.split(|c: char| !c.is_ascii_alphanumeric())
        .any(|t| t == dec || t.eq_ignore_ascii_case(&hex))
}

/// Creates `n` znodes `<root>/k<i>` and returns their (path, data).
async fn write_known(addr: &str, root: &str, n: usize) -> (Connection, Vec<(String, Vec<u8>)>) {
    let c = connect(addr).await;
    c.create(root, b"root", &open_acl_unsafe(), CreateMode::Persistent)
        .await
        .expect("create root");
    let mut written = Vec::new();
    for i in 0..n {
        let path = format!("{root}/k{i}");
        let data = format!("value-{i}-{}", "d".repeat(100 + i)).into_bytes();
        c.create(&path, &data, &open_acl_unsafe(), CreateMode::Persistent)
            .await
            .unwrap_or_else(|e| panic!("create {path}: {e}"));
        written.push((path, data));
    }
    (c, written)
}

async fn assert_present(addr: &str, nodes: &[(String, Vec<u8>)], server: &CorralServer) {
    let c = connect(addr).await;
    for (path, data) in nodes {
        match c.get_data(path, false).await {
            Ok((d, _)) if d == *data => {}
            Ok((d, _)) => panic!(
                "{path} has data {:?}, expected {:?}\n{}",
                short(&d),
                short(data),
                server.log_tail()
            ),
            Err(e) => panic!("{path} after restart: {e}\n{}", server.log_tail()),
        }
    }
    let _ = c.close().await;
}

/// A keeper SIGKILLed right after 20 known creates, and its last WAL segment with a record.
struct KilledAfterWrites {
    server: CorralServer,
    addr: String,
    /// The parent of the created znodes.
    root: String,
    written: Vec<(String, Vec<u8>)>,
    seg: PathBuf,
    /// The segment's file name, as the keeper's messages name it.
    name: String,
    bytes: Vec<u8>,
    records: Vec<WalRecord>,
}

async fn killed_after_writes(tag: &str) -> KilledAfterWrites {
    let mut server = CorralServer::start("");
    let addr = server.addr();
    let root = format!("/{}", unique_name(tag));
    let (c, written) = write_known(&addr, &root, 20).await;
    blocking(|| server.kill9()).expect("SIGKILL");
    c.abort();
    let (seg, bytes, records) = last_segment(&server.data_dir());
    let name = seg
        .file_name()
        .and_then(|n| n.to_str())
        .expect("segment name")
        .to_string();
    KilledAfterWrites {
        server,
        addr,
        root,
        written,
        seg,
        name,
        bytes,
        records,
    }
}

#[derive(Clone, Copy, Debug)]
enum Damage {
    /// The last bytes of the record never reached the disk (preallocated file: zeros).
    ZeroTail,
    /// One byte of the payload flipped.
    FlipPayloadByte,
    /// The file ends inside the record.
    Truncate,
}

/// Writes known data, SIGKILLs the keeper, damages the last record of the last segment,
/// restarts: the keeper must start, warn naming the segment and the record's offset, and
/// keep everything before the damaged record — and keep working on the cut log.
async fn torn_tail(damage: Damage) {
    let KilledAfterWrites {
        mut server,
        addr,
        root,
        written,
        seg,
        name,
        mut bytes,
        records,
    } = killed_after_writes("torn").await;
    let last = records.last().expect("a record").clone();
    let payload = bytes[last.payload_range()].to_vec();
    let (last_path, _) = written.last().expect("written");
    // Whether the damaged record is our last create (its path is in the payload), so that
    // the znode must be gone after the cut.
    let last_is_ours = contains(&payload, last_path.as_bytes());
    eprintln!(
        "damaging ({damage:?}) record at offset {} (length {}) of {} ({} records); it is {}our last create",
        last.offset,
        last.len,
        seg.display(),
        records.len(),
        if last_is_ours { "" } else { "not " }
    );
    match damage {
        Damage::ZeroTail => {
            let r = last.payload_range();
            let from = r.end - (r.len().min(8));
            if bytes[from..r.end].iter().all(|&b| b == 0) {
                // Zeroing would change nothing; make it a real tear.
                bytes[from] = 0xff;
            } else {
                bytes[from..r.end].fill(0);
            }
            std::fs::write(&seg, &bytes).expect("write damaged segment");
        }
        Damage::FlipPayloadByte => {
            let r = last.payload_range();
            bytes[r.start + r.len() / 2] ^= 0x5a;
            std::fs::write(&seg, &bytes).expect("write damaged segment");
        }
        Damage::Truncate => {
            let cut = last.offset + 8 + u64::from(last.len) / 2;
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&seg)
                .expect("open segment");
            f.set_len(cut).expect("truncate segment");
            bytes.truncate(cut as usize);
        }
    }
    let (after, bad) = parse_segment(&bytes);
    assert!(
        bad.is_some() && after.len() == records.len() - 1,
        "the damage did not make exactly the last record invalid"
    );

    if let Err(e) = blocking(|| server.restart()) {
        panic!("keeper did not start on a log with a {damage:?} last record: {e}");
    }
    let log = server.stderr_text();
    let warned = log
        .lines()
        .any(|l| l.contains("WARN") && l.contains(&name) && names_offset(l, last.offset));
    assert!(
        warned,
        "no WARN line naming {name} and offset {} (the cut record) in the keeper's log:\n{log}",
        last.offset
    );
    // Only a cut record of ours takes a znode with it; any other (e.g. a session's) leaves
    // every create in place.
    let keep = if last_is_ours {
        &written[..written.len() - 1]
    } else {
        &written[..]
    };
    assert_present(&addr, keep, &server).await;
    if last_is_ours {
        let c = connect(&addr).await;
        let gone = c.exists(last_path, false).await.expect("exists");
        assert!(
            gone.is_none(),
            "{last_path} was in the damaged record, yet exists after the restart"
        );
        let _ = c.close().await;
    }

    // The cut log must take new records and recover them again.
    let c = connect(&addr).await;
    let extra = (format!("{root}/after-cut"), b"after".to_vec());
    c.create(
        &extra.0,
        &extra.1,
        &open_acl_unsafe(),
        CreateMode::Persistent,
    )
    .await
    .expect("create after the cut");
    blocking(|| server.kill9()).expect("SIGKILL");
    c.abort();
    if let Err(e) = blocking(|| server.restart()) {
        panic!("keeper did not start again after writing past the cut: {e}");
    }
    let mut all = keep.to_vec();
    all.push(extra);
    assert_present(&addr, &all, &server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_tail_zeroed_is_cut_with_a_warning() {
    torn_tail(Damage::ZeroTail).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_tail_flipped_byte_is_cut_with_a_warning() {
    torn_tail(Damage::FlipPayloadByte).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_tail_truncated_file_is_cut_with_a_warning() {
    torn_tail(Damage::Truncate).await;
}

/// A damaged record followed by good ones is not a torn write: the keeper must refuse to
/// start rather than silently drop (or skip) acknowledged history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_record_in_the_middle_refuses_to_start() {
    let KilledAfterWrites {
        mut server,
        addr,
        written,
        seg,
        name,
        mut bytes,
        records,
        ..
    } = killed_after_writes("midcorrupt").await;
    // Prefer the record of an early create of ours (it is after any start-up snapshot, so
    // it must be replayed); else a record in the first half.
    let target_path = written[3].0.as_bytes();
    let idx = records
        .iter()
        .position(|r| contains(&bytes[r.payload_range()], target_path))
        .unwrap_or(records.len() / 3);
    assert!(
        records.len() - idx >= 4,
        "need valid records after the corrupted one: record {idx} of {}",
        records.len()
    );
    let victim = records[idx].clone();
    let r = victim.payload_range();
    bytes[r.start + r.len() / 2] ^= 0x5a;
    std::fs::write(&seg, &bytes).expect("write damaged segment");
    eprintln!(
        "flipped a byte of record {idx} at offset {} of {} ({} records, last ends at {})",
        victim.offset,
        seg.display(),
        records.len(),
        records.last().map(|r| r.end()).unwrap_or(0)
    );

    blocking(|| server.respawn()).expect("spawn the keeper again");
    let status = blocking(|| server.wait_exit(Duration::from_secs(10)));
    let log = server.stderr_text();
    let Some(status) = status else {
        // Still running: it started on a log with a hole in the middle.
        let hole = {
            let c = connect(&addr).await;
            let mut present = 0;
            for (p, _) in &written {
                if matches!(c.exists(p, false).await, Ok(Some(_))) {
                    present += 1;
                }
            }
            present
        };
        panic!(
            "the keeper started on a segment whose record {idx} (offset {}) is corrupt and followed by valid records; {hole}/{} znodes present; log:\n{log}",
            victim.offset,
            written.len()
        );
    };
    assert!(
        !status.success(),
        "the keeper exited with success on a corrupt log; log:\n{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains(&name) && names_offset(l, victim.offset)),
        "the keeper's error does not name {name} and offset {}; log:\n{log}",
        victim.offset
    );
}

/// SIGTERM, restart: every znode (data and version) and the session with its ephemeral.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_restart_keeps_everything() {
    let mut server = CorralServer::start("");
    let addr = server.addr();
    let root = format!("/{}", unique_name("graceful"));
    let (c, written) = write_known(&addr, &root, 30).await;
    // Some versions above 0.
    let mut expected: BTreeMap<String, NodeState> = written
        .iter()
        .map(|(p, d)| (p.clone(), (d.clone(), 0)))
        .collect();
    for (i, (p, _)) in written.iter().enumerate().take(10) {
        let mut version = 0;
        for j in 0..=(i % 3) {
            let data = format!("set-{i}-{j}").into_bytes();
            let stat = c.set_data(p, &data, version).await.expect("setData");
            version = stat.version;
            expected.insert(p.clone(), (data, version));
        }
    }
    c.delete(&written[29].0, -1).await.expect("delete");
    expected.remove(&written[29].0);
    let session = connect_long_session(&addr).await;
    let ephemeral = format!("{root}/ephemeral");
    session
        .create(&ephemeral, b"e", &open_acl_unsafe(), CreateMode::Ephemeral)
        .await
        .expect("create ephemeral");
    let (sid, passwd, zxid) = (session.session_id(), session.passwd(), session.last_zxid());
    let _ = c.close().await;

    let status = blocking(|| server.terminate(Duration::from_secs(10))).expect("SIGTERM");
    assert!(status.success(), "SIGTERM exit status {status}");
    session.abort();
    if let Err(e) = blocking(|| server.restart()) {
        panic!("restart after SIGTERM: {e}");
    }

    let found = {
        let c = connect(&addr).await;
        let mut paths: Vec<String> = written.iter().map(|(p, _)| p.clone()).collect();
        paths.push(root.clone());
        let r = read_all(&c, paths).await;
        let _ = c.close().await;
        r
    };
    let mut problems = Vec::new();
    for (p, got) in found {
        let want = if p == root {
            Some((b"root".to_vec(), 0))
        } else {
            expected.get(&p).cloned()
        };
        if got.as_ref().ok() != Some(&want) {
            problems.push(format!("{p}: found {got:?}, expected {want:?}"));
        }
    }
    assert!(
        problems.is_empty(),
        "after SIGTERM + restart {} znodes differ:\n{}\n{}",
        problems.len(),
        problems
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n"),
        server.log_tail()
    );
    match check_session(&addr, sid, &passwd, zxid, &ephemeral).await {
        Ok(c) => c.abort(),
        Err(e) => panic!("after SIGTERM + restart: {e}"),
    }
}

/// With dataLogDir set, the segments are under `<dataLogDir>/wal`, not `<dataDir>/wal`, and
/// recovery reads them from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_log_dir_holds_the_wal() {
    let dir = common::fresh_temp_dir("corral-datalog").expect("temp dir");
    let log_dir = dir.join("datalog");
    std::fs::create_dir_all(&log_dir).expect("create dataLogDir");
    let mut server =
        CorralServer::start_in(dir.clone(), &format!("dataLogDir={}\n", log_dir.display()));
    let addr = server.addr();
    let root = format!("/{}", unique_name("datalog"));
    let (c, written) = write_known(&addr, &root, 10).await;
    blocking(|| server.kill9()).expect("SIGKILL");
    c.abort();
    assert!(
        !wal_segments(&log_dir).is_empty(),
        "no WAL segment in {}",
        log_dir.join("wal").display()
    );
    assert!(
        wal_segments(&server.data_dir()).is_empty(),
        "WAL segments in dataDir although dataLogDir is set"
    );
    if let Err(e) = blocking(|| server.restart()) {
        panic!("restart: {e}");
    }
    assert_present(&addr, &written, &server).await;
}

/// `mntr` and `dirs` show the storage an operator needs to watch: fsyncs, group commit,
/// log and snapshot bytes.
#[tokio::test]
async fn mntr_and_dirs_report_storage() {
    let server = CorralServer::start("snapCount=20\n");
    let c = connect(&server.addr()).await;
    let root = format!("/{}", unique_name("mntr"));
    c.create(
        &root,
        b"",
        &corral_client::open_acl_unsafe(),
        CreateMode::Persistent,
    )
    .await
    .expect("create root");
    for i in 0..40 {
        c.create(
            &format!("{root}/n{i}"),
            b"x",
            &corral_client::open_acl_unsafe(),
            CreateMode::Persistent,
        )
        .await
        .expect("create");
    }
    let value = |text: &str, key: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}\t")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{key} missing from mntr:\n{text}"))
    };
    // Snapshots are written in the background; give the one due at 20 entries a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mntr = loop {
        let m = server.four_letter("mntr");
        if value(&m, "zk_corral_snapshots_written") >= 1 || Instant::now() > deadline {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(value(&mntr, "zk_snap_count"), 20);
    assert!(value(&mntr, "zk_corral_log_records") >= 41, "{mntr}");
    assert!(value(&mntr, "zk_corral_fsync_count") >= 1, "{mntr}");
    assert!(value(&mntr, "zk_corral_snapshots_written") >= 1, "{mntr}");
    assert!(value(&mntr, "zk_corral_snapshot_bytes") > 0, "{mntr}");
    assert_eq!(value(&mntr, "zk_corral_writes_blocked"), 0);
    // Every request above was answered: nothing may still count as outstanding.
    assert_eq!(value(&mntr, "zk_outstanding_requests"), 0, "{mntr}");
    let dirs = server.four_letter("dirs");
    let size = |key: &str| -> u64 {
        dirs.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}: ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{key} missing from dirs:\n{dirs}"))
    };
    assert!(size("datadir_size") > 0, "{dirs}");
    assert!(size("logdir_size") > 0, "{dirs}");
}
