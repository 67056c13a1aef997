//! Partitions in network namespaces (issue 12, "Done when" 3): a 3-member corral ensemble, one
//! member per namespace, clients in every namespace talking to their own member; one follower
//! cut off and healed, then the leader cut off and healed, under a load of versioned writes
//! and reads. Checks: a cut-off member acknowledges no write invoked while it is cut off (a
//! prober per member writes every 200 ms without waiting, so there are such writes), every
//! majority member acknowledges writes within a few seconds of a cut, the cut-off member
//! catches up after the heal, every member's tree is the same afterwards (a digest of every
//! path, its data and its whole Stat), the history is linearizable per znode (writes and
//! synced reads, [`wgl`]), local reads only return values that were written, and each
//! session's operations take effect in the order issued.
//!
//! Needs root and namespaces made beforehand: `scripts/partition-test.sh` makes them, runs
//! this test (`--include-ignored`) with their names in the environment, and deletes them
//! afterwards. The members run `corral serve` from `CORRAL_BIN` under `ip netns exec`; this
//! process joins the namespaces per thread ([`netns`]). Client traffic stays inside each
//! namespace (on its loopback), replication goes over the veth links the script made; nothing
//! leaves them. Inside a fresh namespace nothing else listens, so each member uses the
//! standard ports.

mod common;
#[path = "partition/netns.rs"]
mod netns;
#[path = "partition/wgl.rs"]
mod wgl;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::Poll;
use std::time::{Duration, Instant};

use corral_client::proto::{
    CreateMode, CreateRequest, DeleteRequest, ErrorCode, GetDataRequest, PathRequest, Request,
    Response, SetDataRequest, Stat,
};
use corral_client::{open_acl_unsafe, ClientError, ConnectOptions, Connection, Reply};
use wgl::{Entry, Op, Ret, Verdict};

const CLIENT_PORT: u16 = 2181;
const QUORUM_PORT: u16 = 2888;
/// Znodes written by everyone: few, so that sessions contend and versions clash.
const KEYS: usize = 5;
/// Plus one per member for its prober (key KEYS + member).
const ALL_KEYS: usize = KEYS + 3;
/// How often a prober writes, whether or not its earlier writes were answered.
const PROBE_EVERY: Duration = Duration::from_millis(200);
const ROOT: &str = "/partition";
/// Writer sessions per member, plus one session that only reads locally.
const WRITERS_PER_SIDE: usize = 3;
/// A call not answered by then is abandoned (outcome unknown) with its session. Longer than
/// a cut, so a cut-off member's writes can complete after the heal instead.
const OP_DEADLINE: Duration = Duration::from_secs(15);
const SESSION_TIMEOUT_MS: i32 = 10_000;

fn secs_env(name: &str, default: f64) -> Duration {
    let v = std::env::var(name)
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(default);
    Duration::from_secs_f64(v)
}

/// Nanoseconds since the test started: one clock for every thread's records.
fn now() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

// ---- The setup the script made ----

#[derive(Clone, Debug)]
struct MemberNet {
    ns: String,
    ip: String,
    /// The hub's end of this member's veth pair: down cuts the member off.
    link: String,
}

#[derive(Clone, Debug)]
struct Setup {
    bin: PathBuf,
    dir: PathBuf,
    hub: String,
    members: Vec<MemberNet>,
}

impl Setup {
    fn from_env() -> Result<Setup, String> {
        let var = |k: &str| {
            std::env::var(k).map_err(|_| {
                format!("{k} is not set: run this test through scripts/partition-test.sh (as root)")
            })
        };
        let members = var("PARTITION_MEMBERS")?
            .split(',')
            .map(|m| {
                let parts: Vec<&str> = m.split(':').collect();
                match parts.as_slice() {
                    [ns, ip, link] => Ok(MemberNet {
                        ns: ns.to_string(),
                        ip: ip.to_string(),
                        link: link.to_string(),
                    }),
                    _ => Err(format!("PARTITION_MEMBERS entry {m:?} is not ns:ip:link")),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        if members.len() != 3 {
            return Err(format!("3 members needed, got {}", members.len()));
        }
        Ok(Setup {
            bin: PathBuf::from(var("CORRAL_BIN")?),
            dir: PathBuf::from(var("PARTITION_DIR")?),
            hub: var("PARTITION_HUB")?,
            members,
        })
    }

    fn set_link(&self, member: usize, up: bool) -> Result<(), String> {
        let link = &self.members[member].link;
        let state = if up { "up" } else { "down" };
        let out = Command::new("ip")
            .args(["-n", &self.hub, "link", "set", "dev", link, state])
            .output()
            .map_err(|e| format!("ip link set {link} {state}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "ip -n {} link set dev {link} {state}: {}",
                self.hub,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    }
}

// ---- The members ----

struct Members {
    children: Vec<Child>,
    dirs: Vec<PathBuf>,
    /// Their pids, for the script's trap; removed once they are reaped, so that the trap
    /// never signals a pid that has since been reused.
    pids: PathBuf,
}

impl Members {
    fn start(s: &Setup) -> Result<Members, String> {
        let servers: String = s
            .members
            .iter()
            .enumerate()
            .map(|(i, m)| format!("server.{}={}:{QUORUM_PORT}:3888\n", i + 1, m.ip))
            .collect();
        let mut members = Members {
            children: Vec::new(),
            dirs: Vec::new(),
            pids: s.dir.join("pids"),
        };
        let mut pids = String::new();
        for (i, m) in s.members.iter().enumerate() {
            let dir = s.dir.join(format!("m{}", i + 1));
            let data = dir.join("data");
            std::fs::create_dir_all(&data).map_err(|e| format!("{}: {e}", data.display()))?;
            std::fs::write(data.join("myid"), format!("{}\n", i + 1))
                .map_err(|e| format!("myid: {e}"))?;
            let cfg = dir.join("zoo.cfg");
            std::fs::write(
                &cfg,
                format!(
                    "tickTime=2000\ndataDir={}\nclientPort={CLIENT_PORT}\n\
                     4lw.commands.whitelist=*\nmaxClientCnxns=0\nadmin.enableServer=false\n{servers}",
                    data.display()
                ),
            )
            .map_err(|e| format!("zoo.cfg: {e}"))?;
            let out = std::fs::File::create(dir.join("server.out")).map_err(|e| e.to_string())?;
            let err = std::fs::File::create(dir.join("server.err")).map_err(|e| e.to_string())?;
            // `ip netns exec` execs the command, so the child's pid is corral's.
            let child = Command::new("ip")
                .args(["netns", "exec", &m.ns])
                .arg(&s.bin)
                .args(["serve", "--config"])
                .arg(&cfg)
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .map_err(|e| format!("start member {}: {e}", i + 1))?;
            pids.push_str(&format!("{}\n", child.id()));
            members.children.push(child);
            members.dirs.push(dir);
        }
        // The script kills these if this process dies without its Drop running.
        std::fs::write(&members.pids, pids).map_err(|e| format!("pids: {e}"))?;
        Ok(members)
    }

    fn log_tail(&self, i: usize, lines: usize) -> String {
        let text = std::fs::read_to_string(self.dirs[i].join("server.err")).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Members {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
        }
        for c in &mut self.children {
            if common::wait_child(c, Duration::from_secs(5)).is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        let _ = std::fs::remove_file(&self.pids);
    }
}

// ---- Talking to a member from inside its namespace ----

fn local_addr() -> String {
    format!("127.0.0.1:{CLIENT_PORT}")
}

async fn four_letter(word: &str) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let go = async {
        let mut s = tokio::net::TcpStream::connect(local_addr())
            .await
            .map_err(|e| e.to_string())?;
        s.write_all(word.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut out = String::new();
        s.read_to_string(&mut out)
            .await
            .map_err(|e| e.to_string())?;
        Ok(out)
    };
    tokio::time::timeout(Duration::from_secs(2), go)
        .await
        .unwrap_or_else(|_| Err(format!("{word}: timed out")))
}

/// (Mode, Zxid) from `srvr`; Mode "none" while the member has no leader.
async fn srvr() -> Result<(String, i64), String> {
    let out = four_letter("srvr").await?;
    let mode = out
        .lines()
        .find_map(|l| l.strip_prefix("Mode: "))
        .unwrap_or("none")
        .to_string();
    let zxid = out
        .lines()
        .find_map(|l| l.strip_prefix("Zxid: 0x"))
        .and_then(|z| i64::from_str_radix(z.trim(), 16).ok())
        .ok_or_else(|| format!("no Zxid in srvr: {out:?}"))?;
    Ok((mode, zxid))
}

fn srvr_of(s: &Setup, member: usize) -> Result<(String, i64), String> {
    netns::run_in(&s.members[member].ns, srvr)?
}

fn leader_of(s: &Setup) -> Option<usize> {
    (0..s.members.len()).find(|&i| matches!(srvr_of(s, i), Ok((m, _)) if m == "leader"))
}

async fn connect() -> Result<Connection, String> {
    let opts = ConnectOptions {
        session_timeout_ms: SESSION_TIMEOUT_MS,
        ..ConnectOptions::default()
    };
    match tokio::time::timeout(
        Duration::from_secs(5),
        Connection::connect(&local_addr(), opts),
    )
    .await
    {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("connect timed out".into()),
    }
}

// ---- The history ----

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Create {
        data: u64,
    },
    Set {
        data: u64,
        expected: i32,
    },
    Delete {
        expected: i32,
    },
    /// A read; `synced` when pipelined behind a sync of the same path (then it is checked
    /// for linearizability; a plain read is local and only sequentially consistent).
    Read {
        synced: bool,
    },
}

impl Kind {
    fn is_write(self) -> bool {
        !matches!(self, Kind::Read { .. })
    }
}

#[derive(Clone, Debug)]
enum Outcome {
    /// The server answered.
    Done {
        err: ErrorCode,
        /// The reply header's zxid.
        zxid: i64,
        stat: Option<Stat>,
        /// A read's data, as the writer's id (u64::MAX when it is no id at all).
        data: Option<u64>,
    },
    /// No answer: timed out, or the connection was lost.
    Unknown(String),
}

#[derive(Clone, Debug)]
struct Rec {
    side: usize,
    /// This test's number for the session (unique over the run).
    session: usize,
    session_id: i64,
    /// Issue order within the session.
    seq: u64,
    key: usize,
    kind: Kind,
    call: u64,
    /// When the answer arrived (None: never).
    ret: Option<u64>,
    outcome: Outcome,
}

impl Rec {
    fn ok(&self) -> bool {
        matches!(
            self.outcome,
            Outcome::Done {
                err: ErrorCode::Ok,
                ..
            }
        )
    }

    /// The write's result for the checker: None when its effect is unknown.
    fn write_ret(&self) -> Option<Ret> {
        let Outcome::Done { err, stat, .. } = &self.outcome else {
            return None;
        };
        match (self.kind, err) {
            (Kind::Create { .. }, ErrorCode::Ok) => Some(Ret::Ok),
            (Kind::Set { .. }, ErrorCode::Ok) => stat.as_ref().map(|s| Ret::Version(s.version)),
            (Kind::Delete { .. }, ErrorCode::Ok) => Some(Ret::Ok),
            (Kind::Create { .. }, ErrorCode::NodeExists) => Some(Ret::NodeExists),
            (Kind::Set { .. } | Kind::Delete { .. }, ErrorCode::NoNode) => Some(Ret::NoNode),
            (Kind::Set { .. } | Kind::Delete { .. }, ErrorCode::BadVersion) => {
                Some(Ret::BadVersion)
            }
            // Any other error (connection loss, session moved or expired, ...) may or may not
            // have been applied: unknown.
            _ => None,
        }
    }

    /// A read's observation: Some(None) for NoNode; None when it observed nothing.
    fn read_value(&self) -> Option<Option<(u64, i32)>> {
        match &self.outcome {
            Outcome::Done {
                err: ErrorCode::Ok,
                stat: Some(st),
                data: Some(d),
                ..
            } => Some(Some((*d, st.version))),
            Outcome::Done {
                err: ErrorCode::NoNode,
                ..
            } => Some(None),
            _ => None,
        }
    }

    fn describe(&self) -> String {
        let ret = self.ret.map_or("never".into(), |r| format!("{:.1}", ms(r)));
        let out = match &self.outcome {
            Outcome::Done {
                err,
                zxid,
                stat,
                data,
            } => format!(
                "{err:?} zxid=0x{zxid:x} version={:?} mzxid={:?} data={data:?}",
                stat.as_ref().map(|s| s.version),
                stat.as_ref().map(|s| format!("0x{:x}", s.mzxid))
            ),
            Outcome::Unknown(why) => format!("unknown ({why})"),
        };
        format!(
            "side m{} session {} (0x{:x}) #{} key k{} {:?} call {:.1} ms ret {ret} ms: {out}",
            self.side + 1,
            self.session,
            self.session_id,
            self.seq,
            self.key,
            self.kind,
            ms(self.call)
        )
    }
}

struct Shared {
    history: Mutex<Vec<Rec>>,
    stop: AtomicBool,
    next_session: AtomicUsize,
}

impl Shared {
    fn record(&self, r: Rec) {
        self.history
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(r);
    }
}

/// xorshift64*: the workers' choices (no need for rand's quality here).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn key_path(key: usize) -> String {
    format!("{ROOT}/k{key}")
}

/// Polls the futures in the order given, so their requests are queued on the connection in
/// that order (a request is sent on its future's first poll), and returns their outputs.
async fn join_in_order<'a, T: Send>(
    mut futs: Vec<Pin<Box<dyn Future<Output = T> + Send + 'a>>>,
) -> Vec<T> {
    let mut out: Vec<Option<T>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in futs.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *slot = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

type Answer = (
    Result<Result<Reply, ClientError>, tokio::time::error::Elapsed>,
    u64,
);

async fn timed_request(conn: &Connection, req: Request) -> Answer {
    let r = tokio::time::timeout(OP_DEADLINE, conn.request(req)).await;
    (r, now())
}

fn to_outcome(a: &Answer) -> (Option<u64>, Outcome) {
    match &a.0 {
        Err(_) => (
            None,
            Outcome::Unknown("no answer within the deadline".into()),
        ),
        Ok(Err(e)) => (None, Outcome::Unknown(e.to_string())),
        Ok(Ok(reply)) => {
            let (stat, data) = match &reply.response {
                Response::Stat(s) => (Some(s.clone()), None),
                Response::Create2(_, s) => (Some(s.clone()), None),
                Response::Data(d, s) => {
                    let id = d
                        .as_deref()
                        .and_then(|b| std::str::from_utf8(b).ok())
                        .and_then(|t| t.parse::<u64>().ok())
                        .unwrap_or(u64::MAX);
                    (Some(s.clone()), Some(id))
                }
                _ => (None, None),
            };
            (
                Some(a.1),
                Outcome::Done {
                    err: reply.err,
                    zxid: reply.zxid,
                    stat,
                    data,
                },
            )
        }
    }
}

/// One planned operation: its kind and the requests it sends (a synced read sends two).
struct Planned {
    key: usize,
    kind: Kind,
    reqs: Vec<Request>,
}

fn plan_request(key: usize, kind: Kind) -> Planned {
    let path = key_path(key);
    let get = || {
        Request::GetData(GetDataRequest {
            path: path.clone(),
            watch: false,
        })
    };
    let reqs = match kind {
        Kind::Create { data } => vec![Request::Create2(CreateRequest {
            path: path.clone(),
            data: Some(data.to_string().into_bytes()),
            acl: open_acl_unsafe(),
            flags: 0,
        })],
        Kind::Set { data, expected } => vec![Request::SetData(SetDataRequest {
            path: path.clone(),
            data: Some(data.to_string().into_bytes()),
            version: expected,
        })],
        Kind::Delete { expected } => vec![Request::Delete(DeleteRequest {
            path: path.clone(),
            version: expected,
        })],
        Kind::Read { synced: false } => vec![get()],
        Kind::Read { synced: true } => {
            vec![Request::Sync(PathRequest { path: path.clone() }), get()]
        }
    };
    Planned { key, kind, reqs }
}

/// One client session after another against the member of this namespace, until told to
/// stop. A writer mixes versioned sets, creates, deletes, synced and local reads, two at a
/// time pipelined; a reader only reads locally.
async fn client(side: usize, writer: bool, shared: Arc<Shared>, seed: u64) {
    let mut rng = Rng(seed | 1);
    'sessions: while !shared.stop.load(Ordering::SeqCst) {
        let conn = match connect().await {
            Ok(c) => c,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let session = shared.next_session.fetch_add(1, Ordering::SeqCst);
        let session_id = conn.session_id();
        let mut seq = 0u64;
        let mut counter = 0u64;
        // What this session last saw of each key: Some(None) absent, Some(Some(v)) version v.
        let mut known: Vec<Option<Option<i32>>> = vec![None; KEYS];
        while !shared.stop.load(Ordering::SeqCst) {
            let key = rng.below(KEYS as u64) as usize;
            let mut plan = Vec::new();
            if writer {
                counter += 1;
                let data = ((session as u64) << 32) | counter;
                let r = rng.below(100);
                let write = match known[key] {
                    None => None,
                    Some(None) => Some(Kind::Create { data }),
                    Some(Some(v)) if r < 12 => Some(Kind::Delete { expected: v }),
                    Some(Some(v)) => Some(Kind::Set { data, expected: v }),
                };
                match write {
                    Some(w) if r < 75 => {
                        plan.push(plan_request(key, w));
                        plan.push(plan_request(
                            key,
                            Kind::Read {
                                synced: r.is_multiple_of(2),
                            },
                        ));
                    }
                    _ => plan.push(plan_request(
                        key,
                        Kind::Read {
                            synced: !r.is_multiple_of(3),
                        },
                    )),
                }
            } else {
                plan.push(plan_request(key, Kind::Read { synced: false }));
            }
            let call = now();
            let futs: Vec<Pin<Box<dyn Future<Output = Answer> + Send + '_>>> = plan
                .iter()
                .flat_map(|p| p.reqs.iter())
                .map(|r| {
                    Box::pin(timed_request(&conn, r.clone()))
                        as Pin<Box<dyn Future<Output = Answer> + Send + '_>>
                })
                .collect();
            let answers = join_in_order(futs).await;
            let mut answers = answers.iter();
            let mut lost = false;
            for p in &plan {
                // A synced read is its sync then its read: it counts from the sync's call to
                // the read's answer, and as synced only if the sync succeeded.
                let mut kind = p.kind;
                if p.reqs.len() == 2 {
                    let sync_ok = matches!(
                        answers.next(),
                        Some((
                            Ok(Ok(Reply {
                                err: ErrorCode::Ok,
                                ..
                            })),
                            _
                        ))
                    );
                    if !sync_ok {
                        kind = Kind::Read { synced: false };
                    }
                }
                let Some(a) = answers.next() else { break };
                let (ret, outcome) = to_outcome(a);
                if matches!(outcome, Outcome::Unknown(_)) {
                    lost = true;
                }
                let rec = Rec {
                    side,
                    session,
                    session_id,
                    seq,
                    key: p.key,
                    kind,
                    call,
                    ret,
                    outcome,
                };
                seq += 1;
                known[p.key] = match (&rec.outcome, kind) {
                    (
                        Outcome::Done {
                            err: ErrorCode::Ok,
                            stat: Some(s),
                            ..
                        },
                        _,
                    ) => Some(Some(s.version)),
                    (
                        Outcome::Done {
                            err: ErrorCode::Ok, ..
                        },
                        Kind::Delete { .. },
                    ) => Some(None),
                    (
                        Outcome::Done {
                            err: ErrorCode::NoNode,
                            ..
                        },
                        _,
                    ) => Some(None),
                    _ => None,
                };
                shared.record(rec);
            }
            if lost {
                // The session's order is broken off with an unanswered call: a new session.
                conn.abort();
                continue 'sessions;
            }
            tokio::time::sleep(Duration::from_millis(5 + rng.below(20))).await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(3), conn.close()).await;
    }
}

/// A session that writes its own key every [`PROBE_EVERY`] without waiting for the earlier
/// writes' answers (create, then setData of any version), so that writes are invoked at a
/// cut-off member all through a cut, and the majority's recovery is seen to within that
/// period. Its pipelined writes are also what the FIFO check orders.
async fn prober(side: usize, shared: Arc<Shared>) {
    let key = KEYS + side;
    while !shared.stop.load(Ordering::SeqCst) {
        let conn = match connect().await {
            Ok(c) => c,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let session = shared.next_session.fetch_add(1, Ordering::SeqCst);
        let session_id = conn.session_id();
        let mut outstanding = Vec::new();
        let mut seq = 0u64;
        while !shared.stop.load(Ordering::SeqCst) && !conn.is_closed() {
            let data = ((session as u64) << 32) | (seq + 1);
            let kind = if seq == 0 {
                Kind::Create { data }
            } else {
                Kind::Set { data, expected: -1 }
            };
            let Some(req) = plan_request(key, kind).reqs.first().cloned() else {
                break;
            };
            let (c, sh, this) = (conn.clone(), Arc::clone(&shared), seq);
            let call = now();
            outstanding.push(tokio::spawn(async move {
                let a = timed_request(&c, req).await;
                let (ret, outcome) = to_outcome(&a);
                sh.record(Rec {
                    side,
                    session,
                    session_id,
                    seq: this,
                    key,
                    kind,
                    call,
                    ret,
                    outcome,
                });
            }));
            seq += 1;
            tokio::time::sleep(PROBE_EVERY).await;
        }
        // Each is bounded by OP_DEADLINE.
        for t in outstanding {
            let _ = t.await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(3), conn.close()).await;
    }
}

/// Every session of one namespace: the writers, the reader and the prober.
async fn side_clients(side: usize, shared: Arc<Shared>) {
    let mut tasks = vec![tokio::spawn(prober(side, Arc::clone(&shared)))];
    for w in 0..=WRITERS_PER_SIDE {
        let writer = w < WRITERS_PER_SIDE;
        let seed = 0x9e37_79b9_7f4a_7c15u64 ^ ((side as u64) << 16) ^ (w as u64);
        tasks.push(tokio::spawn(client(
            side,
            writer,
            Arc::clone(&shared),
            seed,
        )));
    }
    for t in tasks {
        let _ = t.await;
    }
}

// ---- The tree digest ----

type Tree = BTreeMap<String, (Vec<u8>, Stat)>;

async fn read_tree() -> Result<Tree, String> {
    let conn = connect().await?;
    conn.sync("/").await.map_err(|e| format!("sync: {e}"))?;
    let mut tree = Tree::new();
    let mut todo = vec!["/".to_string()];
    while let Some(path) = todo.pop() {
        let (data, stat) = match conn.get_data(&path, false).await {
            Ok(v) => v,
            Err(e) => return Err(format!("getData {path}: {e}")),
        };
        let children = conn
            .get_children(&path, false)
            .await
            .map_err(|e| format!("getChildren {path}: {e}"))?;
        for c in children {
            todo.push(if path == "/" {
                format!("/{c}")
            } else {
                format!("{path}/{c}")
            });
        }
        tree.insert(path, (data, stat));
    }
    let _ = conn.close().await;
    Ok(tree)
}

fn digest(tree: &Tree) -> String {
    use sha1::{Digest, Sha1};
    let mut h = Sha1::new();
    for (path, (data, st)) in tree {
        h.update(format!("{path}\0{}\0{st:?}\n", data.len()));
        h.update(data);
    }
    h.finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
}

// ---- Phases ----

#[derive(Clone, Debug)]
struct Cut {
    what: &'static str,
    member: usize,
    /// The link went down (the command returned).
    cut: u64,
    /// The heal command was about to run.
    heal: u64,
    /// Majority zxid right after the heal, and when the cut-off member reached it.
    caught_up: Option<u64>,
    /// When a member of the majority first said `Mode: leader` after the cut.
    led: Option<u64>,
    /// What `srvr` of the cut-off member said near the end of the cut.
    cut_mode: String,
}

fn pick_follower(s: &Setup, leader: usize) -> usize {
    (0..s.members.len())
        .find(|&i| i != leader)
        .unwrap_or((leader + 1) % s.members.len())
}

/// Polls every member's zxid from the heal on until the cut-off member has what the
/// majority had at the heal; returns when it did (or None within `within`).
fn wait_catch_up(s: &Setup, member: usize, within: Duration) -> Option<u64> {
    let target = (0..s.members.len())
        .filter(|&i| i != member)
        .filter_map(|i| srvr_of(s, i).ok().map(|(_, z)| z))
        .max()?;
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok((_, z)) = srvr_of(s, member) {
            if z >= target {
                return Some(now());
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn run_cut(
    s: &Setup,
    what: &'static str,
    member: usize,
    cut_for: Duration,
    heal_for: Duration,
) -> Result<Cut, String> {
    s.set_link(member, false)?;
    let cut = now();
    println!("[{:>8.1} ms] cut m{} off ({what})", ms(cut), member + 1);
    let started = Instant::now();
    let mut led = None;
    while started.elapsed() < cut_for {
        let leads = (0..s.members.len())
            .filter(|&i| i != member)
            .any(|i| matches!(srvr_of(s, i), Ok((m, _)) if m == "leader"));
        if leads {
            led = Some(now());
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    if let Some(rest) = cut_for.checked_sub(started.elapsed() + Duration::from_millis(300)) {
        std::thread::sleep(rest);
    }
    let cut_mode = srvr_of(s, member)
        .map(|(m, z)| format!("Mode: {m}, Zxid: 0x{z:x}"))
        .unwrap_or_else(|e| format!("srvr failed: {e}"));
    if let Some(rest) = cut_for.checked_sub(started.elapsed()) {
        std::thread::sleep(rest);
    }
    let heal = now();
    s.set_link(member, true)?;
    println!("[{:>8.1} ms] healed m{}", ms(now()), member + 1);
    let started = Instant::now();
    let caught_up = wait_catch_up(s, member, heal_for);
    if let Some(rest) = heal_for.checked_sub(started.elapsed()) {
        std::thread::sleep(rest);
    }
    Ok(Cut {
        what,
        member,
        cut,
        heal,
        caught_up,
        led,
        cut_mode,
    })
}

// ---- Checks ----

/// Per-session FIFO: writes' zxids strictly increase in issue order, every answer's zxid
/// never goes back, and what the session sees of a key never goes back behind what it wrote
/// or saw before.
fn check_fifo(history: &[Rec]) -> Vec<String> {
    let mut by_session: HashMap<usize, Vec<&Rec>> = HashMap::new();
    for r in history {
        by_session.entry(r.session).or_default().push(r);
    }
    let mut bad = Vec::new();
    for (_, mut ops) in by_session {
        ops.sort_by_key(|r| r.seq);
        let mut last_zxid = i64::MIN;
        let mut last_write = i64::MIN;
        let mut prev: Option<&Rec> = None;
        // Per key: the newest zxid this session knows the key to have (written or seen).
        let mut seen: HashMap<usize, i64> = HashMap::new();
        for r in ops {
            let Outcome::Done {
                err, zxid, stat, ..
            } = &r.outcome
            else {
                continue;
            };
            if *zxid < last_zxid {
                bad.push(format!(
                    "reply zxid went back in session order:\n  {}\n  {}",
                    prev.map(|p| p.describe()).unwrap_or_default(),
                    r.describe()
                ));
            }
            last_zxid = last_zxid.max(*zxid);
            if r.kind.is_write() && *err == ErrorCode::Ok {
                if *zxid <= last_write {
                    bad.push(format!("a later write got a lower zxid: {}", r.describe()));
                }
                last_write = *zxid;
                seen.insert(r.key, *zxid);
            }
            if let (Kind::Read { .. }, ErrorCode::Ok, Some(st)) = (r.kind, err, stat) {
                let known = seen.get(&r.key).copied().unwrap_or(i64::MIN);
                if st.mzxid < known {
                    bad.push(format!(
                        "read older than what the session had written or seen (mzxid 0x{:x} < 0x{known:x}): {}",
                        st.mzxid,
                        r.describe()
                    ));
                }
                seen.insert(r.key, known.max(st.mzxid));
            }
            prev = Some(r);
        }
    }
    bad
}

/// Per key: writes and synced reads through the linearizability search; local reads must
/// return a value some write produced, invoked before the read returned.
fn check_keys(history: &[Rec], limit: Duration) -> (Vec<String>, Duration, usize) {
    let started = Instant::now();
    let mut bad = Vec::new();
    let mut checked = 0;
    for key in 0..ALL_KEYS {
        let ops: Vec<&Rec> = history.iter().filter(|r| r.key == key).collect();
        let mut entries = Vec::new();
        let mut index = Vec::new();
        for r in &ops {
            let op = match r.kind {
                Kind::Create { data } => Op::Create { data },
                Kind::Set { data, expected } => Op::Set { data, expected },
                Kind::Delete { expected } => Op::Delete { expected },
                Kind::Read { synced: true } => Op::Read,
                Kind::Read { synced: false } => continue,
            };
            let ret = if r.kind.is_write() {
                r.write_ret()
            } else {
                match r.read_value() {
                    Some(v) => Some(Ret::Value(v)),
                    // A read that saw nothing constrains nothing.
                    None => continue,
                }
            };
            entries.push(Entry {
                op,
                call: r.call,
                ret: ret.and_then(|ret| r.ret.map(|t| (t, ret))),
            });
            index.push(*r);
        }
        checked += entries.len();
        match wgl::check(&entries, None, limit) {
            Verdict::Linearizable => {}
            Verdict::GaveUp => bad.push(format!(
                "key k{key}: the linearizability search gave up after {limit:?} ({} operations)",
                entries.len()
            )),
            Verdict::NotLinearizable { stuck, linearized } => {
                let mut msg = format!(
                    "key k{key}: NOT linearizable ({} operations; {linearized} ordered before no order could include):\n  {}\nconcurrent with it:",
                    entries.len(),
                    index.get(stuck).map(|r| r.describe()).unwrap_or_default()
                );
                if let Some(s) = index.get(stuck) {
                    let (c, rt) = (s.call, s.ret.unwrap_or(u64::MAX));
                    for r in index.iter().filter(|r| {
                        r.call <= rt && r.ret.unwrap_or(u64::MAX) >= c.saturating_sub(200_000_000)
                    }) {
                        msg.push_str(&format!("\n  {}", r.describe()));
                    }
                }
                bad.push(msg);
            }
        }
        // Local reads: the value must have been written by someone, before the read ended,
        // with the version that write produced.
        let writes: HashMap<u64, &Rec> = ops
            .iter()
            .filter_map(|r| match r.kind {
                Kind::Create { data } | Kind::Set { data, .. } => Some((data, *r)),
                _ => None,
            })
            .collect();
        for r in ops
            .iter()
            .filter(|r| r.kind == Kind::Read { synced: false })
        {
            let Some(Some((data, version))) = r.read_value() else {
                continue;
            };
            let ok = writes.get(&data).is_some_and(|w| {
                let produced = match (w.kind, w.write_ret()) {
                    (Kind::Set { expected: -1, .. }, Some(Ret::Version(v))) => Some(v),
                    // Unknown or failed: the checker above decides whether it could apply.
                    (Kind::Set { expected: -1, .. }, _) => None,
                    (Kind::Set { expected, .. }, _) => Some(expected + 1),
                    _ => Some(0),
                };
                produced.is_none_or(|p| p == version) && w.call <= r.ret.unwrap_or(u64::MAX)
            });
            if !ok {
                bad.push(format!(
                    "local read of a value no write produced (or produced later): {}\n  writer: {}",
                    r.describe(),
                    writes
                        .get(&data)
                        .map(|w| w.describe())
                        .unwrap_or("none".into())
                ));
            }
        }
    }
    (bad, started.elapsed(), checked)
}

#[derive(Default, Clone, Copy)]
struct Tally {
    ok: usize,
    failed: usize,
    unknown: usize,
    reads_ok: usize,
    reads_lost: usize,
}

fn tally(history: &[Rec], side: usize, from: u64, to: u64) -> Tally {
    let mut t = Tally::default();
    for r in history
        .iter()
        .filter(|r| r.side == side && r.call >= from && r.call < to)
    {
        match (r.kind.is_write(), &r.outcome) {
            (true, Outcome::Done { err, .. }) if *err == ErrorCode::Ok => t.ok += 1,
            (true, Outcome::Done { .. }) if r.write_ret().is_some() => t.failed += 1,
            (true, _) => t.unknown += 1,
            (false, _) if r.read_value().is_some() => t.reads_ok += 1,
            (false, _) => t.reads_lost += 1,
        }
    }
    t
}

fn write_history(path: &Path, history: &[Rec]) {
    let mut sorted: Vec<&Rec> = history.iter().collect();
    sorted.sort_by_key(|r| r.call);
    let text: String = sorted
        .iter()
        .map(|r| format!("{}\n", r.describe()))
        .collect();
    if let Err(e) = std::fs::write(path, text) {
        eprintln!("cannot write {}: {e}", path.display());
    }
}

#[test]
#[ignore = "needs root and the namespaces scripts/partition-test.sh makes"]
fn partitions_in_network_namespaces() {
    let s = Setup::from_env().unwrap_or_else(|e| panic!("{e}"));
    let warmup = secs_env("PARTITION_WARMUP_SECS", 4.0);
    let cut_for = secs_env("PARTITION_CUT_SECS", 6.0);
    let heal_for = secs_env("PARTITION_HEAL_SECS", 8.0);
    let majority_limit = secs_env("PARTITION_MAJORITY_LIMIT_SECS", 3.0);
    let checker_limit = secs_env("PARTITION_CHECKER_LIMIT_SECS", 60.0);
    now();

    let members = Members::start(&s).unwrap_or_else(|e| panic!("{e}"));
    let ready = Instant::now();
    let leader = loop {
        if let Some(l) = leader_of(&s) {
            let all = (0..3)
                .all(|i| matches!(srvr_of(&s, i), Ok((m, _)) if m == "leader" || m == "follower"));
            if all {
                break l;
            }
        }
        if ready.elapsed() > Duration::from_secs(30) {
            panic!(
                "the ensemble did not elect a leader within 30 s; logs:\n{}",
                (0..3)
                    .map(|i| format!("--- m{}\n{}", i + 1, members.log_tail(i, 30)))
                    .collect::<String>()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    println!(
        "[{:>8.1} ms] ensemble up, leader m{}",
        ms(now()),
        leader + 1
    );
    netns::run_in(&s.members[leader].ns, || async {
        let c = connect().await?;
        let r = c
            .create(ROOT, b"", &open_acl_unsafe(), CreateMode::Persistent)
            .await;
        let _ = c.close().await;
        match r {
            Ok(_) | Err(ClientError::Server(ErrorCode::NodeExists)) => Ok(()),
            Err(e) => Err(format!("create {ROOT}: {e}")),
        }
    })
    .and_then(|r| r)
    .unwrap_or_else(|e| panic!("{e}"));

    let shared = Arc::new(Shared {
        history: Mutex::new(Vec::new()),
        stop: AtomicBool::new(false),
        next_session: AtomicUsize::new(0),
    });
    let load_start = now();
    let sides: Vec<_> = (0..3)
        .map(|side| {
            let sh = Arc::clone(&shared);
            netns::spawn_in(&s.members[side].ns, move || side_clients(side, sh))
        })
        .collect();
    std::thread::sleep(warmup);

    let mut failures: Vec<String> = Vec::new();
    let mut cuts = Vec::new();
    let leader = leader_of(&s).unwrap_or(leader);
    let follower = pick_follower(&s, leader);
    match run_cut(&s, "a follower", follower, cut_for, heal_for) {
        Ok(c) => cuts.push(c),
        Err(e) => failures.push(e),
    }
    match leader_of(&s) {
        Some(l) => match run_cut(&s, "the leader", l, cut_for, heal_for) {
            Ok(c) => cuts.push(c),
            Err(e) => failures.push(e),
        },
        None => failures.push("no leader after the first heal".into()),
    }
    // Make sure every link is up whatever happened.
    for i in 0..3 {
        let _ = s.set_link(i, true);
    }
    let load_end = now();
    shared.stop.store(true, Ordering::SeqCst);
    for (i, h) in sides.into_iter().enumerate() {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(format!("clients of m{}: {e}", i + 1)),
            Err(_) => failures.push(format!("the clients' thread of m{} panicked", i + 1)),
        }
    }
    let drained = now();

    // Every member's tree, once their zxids agree (or after 15 s, then compared anyway).
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_secs(15) {
        let z: Vec<i64> = (0..3)
            .filter_map(|i| srvr_of(&s, i).ok().map(|(_, z)| z))
            .collect();
        if z.len() == 3 && z.iter().all(|&x| x == z[0]) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let trees: Vec<Result<Tree, String>> = (0..3)
        .map(|i| netns::run_in(&s.members[i].ns, read_tree).and_then(|r| r))
        .collect();
    let mut digests = Vec::new();
    for (i, t) in trees.iter().enumerate() {
        match t {
            Ok(t) => {
                let d = digest(t);
                println!("m{} tree: {} znodes, digest {d}", i + 1, t.len());
                digests.push(d);
            }
            Err(e) => failures.push(format!("cannot read m{}'s tree: {e}", i + 1)),
        }
    }
    if let (Ok(a), Some(first)) = (&trees[0], digests.first()) {
        for (i, t) in trees.iter().enumerate().skip(1) {
            let Ok(b) = t else { continue };
            if digests.get(i) != Some(first) {
                let mut diff = Vec::new();
                for (p, va) in a {
                    match b.get(p) {
                        Some(vb) if vb == va => {}
                        Some(vb) => diff.push(format!("{p}: m1 {va:?} / m{} {vb:?}", i + 1)),
                        None => diff.push(format!("{p}: only on m1")),
                    }
                }
                for p in b.keys().filter(|p| !a.contains_key(*p)) {
                    diff.push(format!("{p}: only on m{}", i + 1));
                }
                diff.truncate(10);
                failures.push(format!(
                    "m{}'s tree differs from m1's:\n  {}",
                    i + 1,
                    diff.join("\n  ")
                ));
            }
        }
    }
    drop(members);

    let history = shared
        .history
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    write_history(&s.dir.join("history.txt"), &history);

    // The report.
    println!(
        "\n== {} operations recorded ({} sessions)",
        history.len(),
        shared.next_session.load(Ordering::SeqCst)
    );
    let mut bounds = vec![("warm-up".to_string(), load_start)];
    for c in &cuts {
        bounds.push((format!("m{} ({}) cut off", c.member + 1, c.what), c.cut));
        bounds.push((format!("m{} healed", c.member + 1), c.heal));
    }
    bounds.push(("end".into(), load_end.max(drained)));
    for w in bounds.windows(2) {
        let (name, from) = (&w[0].0, w[0].1);
        let to = w[1].1;
        println!(
            "-- {name}: {:.1} s (operations by when they were invoked)",
            (to - from) as f64 / 1e9
        );
        for side in 0..3 {
            let t = tally(&history, side, from, to);
            println!(
                "   m{} side: writes ok {} failed {} unknown {}; reads ok {} lost {}",
                side + 1,
                t.ok,
                t.failed,
                t.unknown,
                t.reads_ok,
                t.reads_lost
            );
        }
    }

    for c in &cuts {
        // The cut-off member acknowledges no write invoked after the cut, before the heal.
        let minority: Vec<&Rec> = history
            .iter()
            .filter(|r| r.side == c.member && r.kind.is_write() && r.call >= c.cut)
            .collect();
        let during: Vec<&&Rec> = minority.iter().filter(|r| r.call < c.heal).collect();
        let acked: Vec<&&&Rec> = during
            .iter()
            .filter(|r| r.ok() && r.ret.is_some_and(|t| t < c.heal))
            .collect();
        println!(
            "m{} ({}) cut off: {} writes invoked there while cut off, {} acknowledged before the heal",
            c.member + 1,
            c.what,
            during.len(),
            acked.len()
        );
        match c.led {
            Some(t) => println!(
                "   a majority member said Mode: leader {:.1} ms after the cut",
                ms(t - c.cut)
            ),
            None => println!("   no majority member said Mode: leader during the cut"),
        }
        println!(
            "   the cut-off member near the end of the cut: {}",
            c.cut_mode
        );
        if during.is_empty() {
            failures.push(format!(
                "no write was attempted at the cut-off m{}: the minority check would be empty",
                c.member + 1
            ));
        }
        for r in acked {
            failures.push(format!(
                "the cut-off m{} acknowledged a write while cut off: {}",
                c.member + 1,
                r.describe()
            ));
        }
        // The majority goes on: each of its members acknowledges a write invoked after the
        // cut, within the limit.
        for side in (0..3).filter(|&i| i != c.member) {
            let first = history
                .iter()
                .filter(|r| r.side == side && r.kind.is_write() && r.call >= c.cut && r.ok())
                .filter_map(|r| r.ret)
                .min();
            match first {
                Some(t) => {
                    println!(
                        "   m{}'s first write invoked after the cut acknowledged {:.1} ms after it",
                        side + 1,
                        ms(t - c.cut)
                    );
                    if t - c.cut > majority_limit.as_nanos() as u64 {
                        failures.push(format!(
                            "m{} (majority) acknowledged no write for {:.1} ms after m{} ({}) was cut off (limit {majority_limit:?})",
                            side + 1,
                            ms(t - c.cut),
                            c.member + 1,
                            c.what
                        ));
                    }
                }
                None => failures.push(format!(
                    "m{} (majority) acknowledged no write after m{} was cut off",
                    side + 1,
                    c.member + 1
                )),
            }
        }
        let acked_during = history
            .iter()
            .filter(|r| {
                r.side != c.member
                    && r.kind.is_write()
                    && r.ok()
                    && r.call >= c.cut
                    && r.ret.is_some_and(|t| t < c.heal)
            })
            .count();
        println!(
            "   majority: {acked_during} writes acknowledged while m{} was cut off",
            c.member + 1
        );
        match c.caught_up {
            Some(t) => println!(
                "   m{} had the majority's zxid {:.1} ms after the heal",
                c.member + 1,
                ms(t - c.heal)
            ),
            None => failures.push(format!(
                "m{} did not catch up with the majority within {heal_for:?} of the heal",
                c.member + 1
            )),
        }
        let back = history
            .iter()
            .filter(|r| r.side == c.member && r.kind.is_write() && r.call >= c.heal && r.ok())
            .filter_map(|r| r.ret)
            .min();
        if let Some(t) = back {
            println!(
                "   m{}'s first write invoked after the heal acknowledged {:.1} ms after the heal",
                c.member + 1,
                ms(t - c.heal)
            );
        }
        let late = minority
            .iter()
            .filter(|r| r.call < c.heal && r.ok())
            .filter_map(|r| r.ret.map(|t| t.saturating_sub(c.heal)))
            .collect::<Vec<_>>();
        if !late.is_empty() {
            println!(
                "   {} writes invoked at m{} while cut off were acknowledged after the heal (up to {:.1} ms after it)",
                late.len(),
                c.member + 1,
                ms(late.iter().copied().max().unwrap_or(0))
            );
        }
    }

    let fifo = check_fifo(&history);
    println!("per-session FIFO: {} violations", fifo.len());
    failures.extend(fifo.into_iter().take(20));
    let (key_failures, took, checked) = check_keys(&history, checker_limit);
    println!(
        "linearizability (per znode, writes and synced reads; local reads against the writes): {} operations checked in {:.1} ms: {}",
        checked,
        took.as_secs_f64() * 1e3,
        if key_failures.is_empty() { "OK" } else { "FAILED" }
    );
    failures.extend(key_failures);

    if !failures.is_empty() {
        let logs: String = (0..3)
            .map(|i| {
                let text = std::fs::read_to_string(s.dir.join(format!("m{}/server.err", i + 1)))
                    .unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                format!(
                    "--- m{} log (last 25 lines)\n{}\n",
                    i + 1,
                    lines[lines.len().saturating_sub(25)..].join("\n")
                )
            })
            .collect();
        panic!(
            "{} check(s) failed (history in {}):\n{}\n{logs}",
            failures.len(),
            s.dir.join("history.txt").display(),
            failures.join("\n")
        );
    }
}

#[cfg(test)]
mod checks {
    use super::*;

    fn rec(session: usize, seq: u64, key: usize, kind: Kind, at: u64, outcome: Outcome) -> Rec {
        Rec {
            side: 0,
            session,
            session_id: 1,
            seq,
            key,
            kind,
            call: at,
            ret: Some(at + 1),
            outcome,
        }
    }

    fn done(err: ErrorCode, zxid: i64, stat: Option<(i32, i64)>, data: Option<u64>) -> Outcome {
        Outcome::Done {
            err,
            zxid,
            stat: stat.map(|(version, mzxid)| Stat {
                version,
                mzxid,
                ..Stat::default()
            }),
            data,
        }
    }

    #[test]
    fn fifo_accepts_a_session_in_order_and_rejects_one_out_of_order() {
        let good = vec![
            rec(
                0,
                0,
                0,
                Kind::Create { data: 1 },
                0,
                done(ErrorCode::Ok, 5, Some((0, 5)), None),
            ),
            rec(
                0,
                1,
                0,
                Kind::Read { synced: false },
                1,
                done(ErrorCode::Ok, 5, Some((0, 5)), Some(1)),
            ),
            rec(
                0,
                2,
                0,
                Kind::Set {
                    data: 2,
                    expected: 0,
                },
                2,
                done(ErrorCode::Ok, 7, Some((1, 7)), None),
            ),
        ];
        assert_eq!(check_fifo(&good), Vec::<String>::new());
        // The second write of the session applied before the first.
        let mut swapped = good.clone();
        swapped[2].outcome = done(ErrorCode::Ok, 4, Some((1, 4)), None);
        assert!(!check_fifo(&swapped).is_empty());
        // A read issued after the session's own write that does not see it.
        let stale = vec![
            rec(
                0,
                0,
                0,
                Kind::Set {
                    data: 2,
                    expected: 0,
                },
                0,
                done(ErrorCode::Ok, 7, Some((1, 7)), None),
            ),
            rec(
                0,
                1,
                0,
                Kind::Read { synced: false },
                1,
                done(ErrorCode::Ok, 7, Some((0, 5)), Some(1)),
            ),
        ];
        assert!(!check_fifo(&stale).is_empty());
    }

    #[test]
    fn key_checks_reject_a_lost_update_and_a_local_read_of_nothing_written() {
        let create = rec(
            0,
            0,
            0,
            Kind::Create { data: 1 },
            0,
            done(ErrorCode::Ok, 5, Some((0, 5)), None),
        );
        let ok = vec![
            create.clone(),
            rec(
                1,
                0,
                0,
                Kind::Read { synced: false },
                10,
                done(ErrorCode::Ok, 5, Some((0, 5)), Some(1)),
            ),
        ];
        assert_eq!(
            check_keys(&ok, Duration::from_secs(5)).0,
            Vec::<String>::new()
        );
        let invented = vec![
            create.clone(),
            rec(
                1,
                0,
                0,
                Kind::Read { synced: false },
                10,
                done(ErrorCode::Ok, 5, Some((0, 5)), Some(99)),
            ),
        ];
        assert!(!check_keys(&invented, Duration::from_secs(5)).0.is_empty());
        // Two sessions both succeed in setting version 0: a split brain's lost update.
        let split = vec![
            create,
            rec(
                1,
                0,
                0,
                Kind::Set {
                    data: 2,
                    expected: 0,
                },
                10,
                done(ErrorCode::Ok, 6, Some((1, 6)), None),
            ),
            rec(
                2,
                0,
                0,
                Kind::Set {
                    data: 3,
                    expected: 0,
                },
                10,
                done(ErrorCode::Ok, 7, Some((1, 7)), None),
            ),
        ];
        assert!(!check_keys(&split, Duration::from_secs(5)).0.is_empty());
    }
}
