//! Differential test: one script of client operations, run against real ZooKeeper 3.8 and
//! against corral; each step becomes a normalized transcript line (op, error code, reply with
//! zxids, times and session ids replaced by consistent placeholders, and the watch events each
//! session received), and the two transcripts must be identical.
//!
//! `script_is_deterministic_on_real_zookeeper` runs the script against two ZooKeeper servers,
//! which shows the script itself only depends on what ZooKeeper guarantees.
//!
//! Set CORRAL_TRANSCRIPT_DIR to a directory to keep every transcript there.
//!
//! Needs ZooKeeper (Debian package `zookeeper`); without it the tests print SKIP, unless the
//! env var CI is set, in which case they fail.

mod common;

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use common::{unique_name, CorralServer, RealZk};
use corral_client::{ConnectOptions, Connection, Reply};
use corral_proto::{
    Acl, AddWatchMode, AddWatchRequest, AuthPacket, CheckVersionRequest, CreateMode, CreateRequest,
    CreateTtlRequest, DeleteRequest, EventType, GetDataRequest, Id, MultiResult, OpCode,
    PathRequest, ReconfigRequest, Request, Response, SetAclRequest, SetDataRequest, SetWatches,
    SetWatches2, Stat, WatcherType, WatchesRequest,
};
use sha1::Digest as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Both servers need TTL nodes: ZooKeeper maps unknown zoo.cfg keys to the system property
/// "zookeeper.<key>", so this one line enables them there as well as in corral.
const EXTRA_CFG: &str = "extendedTypesEnabled=true";

/// Every client opcode the script must exercise.
const REQUIRED_OPS: &[OpCode] = &[
    OpCode::Create,
    OpCode::Delete,
    OpCode::Exists,
    OpCode::GetData,
    OpCode::SetData,
    OpCode::GetAcl,
    OpCode::SetAcl,
    OpCode::GetChildren,
    OpCode::Sync,
    OpCode::Ping,
    OpCode::GetChildren2,
    OpCode::Check,
    OpCode::Multi,
    OpCode::Create2,
    OpCode::Reconfig,
    OpCode::CheckWatches,
    OpCode::RemoveWatches,
    OpCode::CreateContainer,
    OpCode::CreateTtl,
    OpCode::MultiRead,
    OpCode::Auth,
    OpCode::SetWatches,
    OpCode::SetWatches2,
    OpCode::GetEphemerals,
    OpCode::GetAllChildrenNumber,
    OpCode::AddWatch,
    OpCode::WhoAmI,
    OpCode::CloseSession,
];

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corral_matches_real_zookeeper() {
    let Some(zk) = RealZk::start(EXTRA_CFG) else {
        return;
    };
    let expected = run_script(&zk.addr(), "zk").await;
    drop(zk);
    let corral = CorralServer::start(EXTRA_CFG);
    let actual = run_script(&corral.addr(), "corral").await;
    assert_same_transcripts("zookeeper", &expected, "corral", &actual);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_is_deterministic_on_real_zookeeper() {
    let Some(first) = RealZk::start(EXTRA_CFG) else {
        return;
    };
    let a = run_script(&first.addr(), "zk1").await;
    drop(first);
    let Some(second) = RealZk::start(EXTRA_CFG) else {
        return;
    };
    let b = run_script(&second.addr(), "zk2").await;
    assert_same_transcripts("zookeeper#1", &a, "zookeeper#2", &b);
}

// ---------------------------------------------------------------------------------------------
// The runner: sessions, normalization, transcript.

struct Runner {
    /// The tap in front of the server; clients connect to its address.
    tap: Tap,
    /// Session slot -> the frames its current connection received.
    taps: HashMap<usize, TapFrames>,
    /// Session slot -> the opcodes of its requests whose replies are not yet in the transcript.
    sent: HashMap<usize, VecDeque<OpCode>>,
    root: String,
    /// Session slot N (1-based in the transcript) -> its live connection.
    conns: HashMap<usize, Connection>,
    /// Session slot -> (session id, password, last zxid seen) kept across an abort.
    saved: HashMap<usize, (i64, Vec<u8>, i64)>,
    session_labels: HashMap<i64, String>,
    zxid_labels: HashMap<i64, String>,
    lines: Vec<String>,
    ops: usize,
    opcodes: BTreeSet<i32>,
}

impl Runner {
    fn zxid(&mut self, z: i64) -> String {
        if z <= 0 {
            return z.to_string();
        }
        let n = self.zxid_labels.len() + 1;
        self.zxid_labels
            .entry(z)
            .or_insert_with(|| format!("Z{n}"))
            .clone()
    }

    fn owner(&self, o: i64) -> String {
        match self.session_labels.get(&o) {
            Some(l) => l.clone(),
            // 0, a container's or a TTL node's marker: exact.
            None => format!("{:#x}", o as u64),
        }
    }

    fn path(&self, p: &str) -> String {
        p.replace(&self.root, "<R>")
    }

    fn stat(&mut self, s: &Stat) -> String {
        let (c, m, p) = (self.zxid(s.czxid), self.zxid(s.mzxid), self.zxid(s.pzxid));
        format!(
            "{{czxid={c} mzxid={m} pzxid={p} version={} cversion={} aversion={} owner={} dataLength={} numChildren={}}}",
            s.version,
            s.cversion,
            s.aversion,
            self.owner(s.ephemeral_owner),
            s.data_length,
            s.num_children
        )
    }

    fn names(&self, v: &[String]) -> String {
        let mut v: Vec<String> = v.iter().map(|c| self.path(c)).collect();
        v.sort();
        format!("[{}]", v.join(","))
    }

    fn acls(&self, acls: &[Acl]) -> String {
        let v: Vec<String> = acls
            .iter()
            .map(|a| format!("{}:{}:{}", a.id.scheme, a.id.id, a.perms))
            .collect();
        format!("[{}]", v.join(","))
    }

    fn response(&mut self, r: &Response) -> String {
        match r {
            Response::Empty => "Empty".into(),
            Response::Path(p) => format!("Path({})", self.path(p)),
            Response::Create2(p, s) => format!("Create2({}, {})", self.path(p), self.stat(s)),
            Response::Stat(s) => format!("Stat({})", self.stat(s)),
            Response::Data(d, s) => {
                format!("Data({}, {})", show_data(d), self.stat(s))
            }
            Response::Acl(a, s) => format!("Acl({}, {})", self.acls(a), self.stat(s)),
            Response::Children(c) => format!("Children({})", self.names(c)),
            Response::Children2(c, s) => format!("Children2({}, {})", self.names(c), self.stat(s)),
            Response::Paths(c) => format!("Paths({})", self.names(c)),
            Response::Count(n) => format!("Count({n})"),
            Response::WhoAmI(infos) => {
                let mut v: Vec<String> = infos
                    .iter()
                    .map(|i| format!("{}:{}", i.auth_scheme, i.user))
                    .collect();
                v.sort();
                format!("WhoAmI([{}])", v.join(","))
            }
            Response::Sasl(t) => format!("Sasl({} bytes)", t.len()),
            Response::ErrorResponse(code) => format!("ErrorResponse({code})"),
            Response::Multi(results) => {
                let v: Vec<String> = results
                    .iter()
                    .map(|m| match m {
                        MultiResult::Create(p) => format!("Create({})", self.path(p)),
                        MultiResult::Create2(p, s) => {
                            format!("Create2({}, {})", self.path(p), self.stat(s))
                        }
                        MultiResult::Delete => "Delete".into(),
                        MultiResult::SetData(s) => format!("SetData({})", self.stat(s)),
                        MultiResult::Check => "Check".into(),
                        MultiResult::GetData(d, s) => {
                            format!("GetData({}, {})", show_data(d), self.stat(s))
                        }
                        MultiResult::GetChildren(c) => format!("GetChildren({})", self.names(c)),
                        MultiResult::Error(e) => format!("Error({})", e.name()),
                    })
                    .collect();
                format!("Multi[{}]", v.join(", "))
            }
        }
    }

    fn describe(&mut self, req: &Request) -> String {
        match req {
            Request::SetWatches(w) => format!(
                "SetWatches(rel={} data={} exist={} child={})",
                self.zxid(w.relative_zxid),
                self.names(&w.data_watches),
                self.names(&w.exist_watches),
                self.names(&w.child_watches)
            ),
            Request::SetWatches2(w) => format!(
                "SetWatches2(rel={} data={} exist={} child={} persistent={} recursive={})",
                self.zxid(w.relative_zxid),
                self.names(&w.data_watches),
                self.names(&w.exist_watches),
                self.names(&w.child_watches),
                self.names(&w.persistent_watches),
                self.names(&w.persistent_recursive_watches)
            ),
            Request::Multi(ops) | Request::MultiRead(ops) => {
                let v: Vec<String> = ops.iter().map(|o| self.describe(o)).collect();
                format!("{:?}[{}]", req.op_code(), v.join("; "))
            }
            other => self.path(&format!("{other:?}")),
        }
    }

    fn note_opcodes(&mut self, req: &Request) {
        self.opcodes.insert(req.op_code().code());
        if let Request::Multi(ops) | Request::MultiRead(ops) = req {
            for o in ops {
                self.opcodes.insert(o.op_code().code());
            }
        }
    }

    fn push(&mut self, line: String) {
        self.lines.push(format!("{:03} {line}", self.lines.len()));
    }

    /// Sends one request on session `s`, records the normalized reply, then collects events.
    async fn op(&mut self, s: usize, req: Request) -> Option<Reply> {
        self.op_within(s, req, REQUEST_TIMEOUT).await
    }

    /// [`Runner::op`] with its own wait for the reply.
    async fn op_within(&mut self, s: usize, req: Request, within: Duration) -> Option<Reply> {
        self.ops += 1;
        self.note_opcodes(&req);
        let desc = self.describe(&req);
        let write = req.is_write() || matches!(req, Request::Multi(_));
        self.sent.entry(s).or_default().push_back(req.op_code());
        let result = match self.conns.get(&s) {
            None => Err("no connection".to_string()),
            Some(c) => match tokio::time::timeout(within, c.request(req)).await {
                Err(_) => Err("timeout".to_string()),
                Ok(Err(e)) => Err(format!("client error: {}", client_error_kind(&e))),
                Ok(Ok(r)) => Ok(r),
            },
        };
        if result.is_err() {
            // No reply came (or none the client could take): later frames answer later
            // requests.
            self.sent.entry(s).or_default().pop_back();
        }
        let text = match &result {
            Err(e) => format!("!! {e}"),
            Ok(r) => {
                let z = self.zxid(r.zxid);
                let body = self.response(&r.response);
                format!("{} zxid={z} {body}", r.err.name())
            }
        };
        self.push(format!("s{s} {desc} -> {text}"));
        self.settle(write).await;
        result.ok()
    }

    /// Makes sure every event caused by the last step has arrived, then records them.
    /// A watch event reaches a session before any reply it gets to a later request (ZooKeeper's
    /// ordering guarantee), so one round trip per session after the step is enough; the short
    /// sleep after writes only covers servers that deliver other sessions' events a little late.
    async fn settle(&mut self, after_write: bool) {
        if after_write {
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        let mut slots: Vec<usize> = self.conns.keys().copied().collect();
        slots.sort();
        for s in slots {
            let Some(c) = self.conns.get(&s) else {
                continue;
            };
            if !c.is_closed() {
                self.sent.entry(s).or_default().push_back(OpCode::Exists);
                let probe = Request::Exists(GetDataRequest {
                    path: "/".into(),
                    watch: false,
                });
                let _ = tokio::time::timeout(REQUEST_TIMEOUT, c.request(probe)).await;
            }
            let mut received = Vec::new();
            while let Some(ev) = c.try_next_event() {
                // Connection-state notifications are the client's business, not the script's.
                if ev.event_type != EventType::None {
                    received.push(ev);
                }
            }
            // The notification header's zxid is left out: ZooKeeper 3.8 sends -1 there, 3.9 the
            // zxid of the change; both are ZooKeeper behaviour.
            let mut events: Vec<String> = received
                .iter()
                .map(|ev| {
                    format!(
                        "{}({})@{}",
                        ev.event_type.name(),
                        self.path(&ev.path),
                        ev.state.name()
                    )
                })
                .collect();
            if !events.is_empty() {
                // Events of one step are sorted: ZooKeeper does not promise an order between the
                // several watches one transaction fires; across steps the order is kept.
                events.sort();
                self.lines
                    .push(format!("      events s{s}: {}", events.join(" ")));
            }
        }
        self.raw_lines();
    }

    /// Puts every frame the tap has seen since the last step into the transcript: replies
    /// masked by the layout of the request they answer, events as they are, sorted within
    /// the step like the decoded ones.
    fn raw_lines(&mut self) {
        let sessions: HashSet<i64> = self.session_labels.keys().copied().collect();
        let mut slots: Vec<usize> = self.taps.keys().copied().collect();
        slots.sort();
        for s in slots {
            let frames: Vec<Vec<u8>> = match self.taps.get(&s) {
                Some(t) => t.lock().expect("tap frames").drain(..).collect(),
                None => continue,
            };
            let sent = self.sent.entry(s).or_default();
            let mut events = Vec::new();
            for f in frames {
                let xid = f
                    .get(..4)
                    .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                let take = |sent: &mut VecDeque<OpCode>, pick: &dyn Fn(OpCode) -> bool| {
                    let i = sent.iter().position(|o| pick(*o))?;
                    sent.remove(i)
                };
                let op = match xid {
                    Some(corral_proto::xid::NOTIFICATION) => {
                        events.push(show_bytes(&f));
                        continue;
                    }
                    // The client's own keep-alives share this xid; their replies are
                    // identical to a scripted ping's, so neither is recorded.
                    Some(corral_proto::xid::PING) => {
                        take(sent, &|o| o == OpCode::Ping);
                        continue;
                    }
                    Some(corral_proto::xid::AUTH) => take(sent, &|o| o == OpCode::Auth),
                    Some(corral_proto::xid::SET_WATCHES) => take(sent, &|o| {
                        matches!(o, OpCode::SetWatches | OpCode::SetWatches2)
                    }),
                    _ => take(sent, &|o| {
                        !matches!(
                            o,
                            OpCode::Auth | OpCode::Ping | OpCode::SetWatches | OpCode::SetWatches2
                        )
                    }),
                };
                let text = match op {
                    Some(op) => format!("{} {}", op.name(), masked_reply(op, &f, &sessions)),
                    None => format!("unexpected {}", show_bytes(&f)),
                };
                self.lines.push(format!("      raw s{s}: {text}"));
            }
            if !events.is_empty() {
                events.sort();
                self.lines
                    .push(format!("      raw events s{s}: {}", events.join(" ")));
            }
        }
    }

    async fn connect(&mut self, s: usize) {
        self.connect_with(s, ConnectOptions::default(), false).await
    }

    async fn connect_with(&mut self, s: usize, opts: ConnectOptions, resume: bool) {
        let wanted = opts.session_id;
        let accepted_before = self.tap.conns.lock().expect("tap registry").len();
        let res =
            tokio::time::timeout(REQUEST_TIMEOUT, Connection::connect(&self.tap.addr, opts)).await;
        let frames = self
            .tap
            .conns
            .lock()
            .expect("tap registry")
            .get(accepted_before)
            .cloned();
        let line = match res {
            Err(_) => format!("connect s{s} -> !! timeout"),
            Ok(Err(e)) => format!("connect s{s} -> !! client error: {}", client_error_kind(&e)),
            Ok(Ok(c)) => {
                let sid = c.session_id();
                let cr = c.connect_response().clone();
                let label = if resume {
                    format!("resumed same session: {}", sid == wanted)
                } else {
                    let l = format!("S{s}");
                    self.session_labels.insert(sid, l.clone());
                    format!("new session {l}")
                };
                self.conns.insert(s, c);
                format!(
                    "connect s{s} -> {label} timeout={} protocol={} passwd_len={} read_only={:?}",
                    cr.timeout,
                    cr.protocol_version,
                    cr.passwd.len(),
                    cr.read_only
                )
            }
        };
        self.push(line);
        if let Some(frames) = frames {
            let first = frames.lock().expect("tap frames").pop_front();
            if let Some(f) = first {
                self.lines
                    .push(format!("      raw s{s}: connect {}", masked_connect(&f)));
            }
            self.taps.insert(s, frames);
            self.sent.insert(s, VecDeque::new());
        }
    }

    /// Drops the TCP connection without closing the session.
    fn abort(&mut self, s: usize) {
        self.taps.remove(&s);
        if let Some(c) = self.conns.remove(&s) {
            self.saved
                .insert(s, (c.session_id(), c.passwd(), c.last_zxid()));
            c.abort();
        }
        self.push(format!("abort s{s}"));
    }

    /// Reconnects slot `s` to the session it had before [`Runner::abort`].
    async fn resume(&mut self, s: usize) {
        let (session_id, passwd, last_zxid_seen) = self.saved.get(&s).cloned().unwrap_or_default();
        let opts = ConnectOptions {
            session_id,
            passwd,
            last_zxid_seen,
            ..ConnectOptions::default()
        };
        self.connect_with(s, opts, true).await;
        self.settle(false).await;
    }

    /// The last zxid session `s` saw before it was aborted.
    fn saved_zxid(&self, s: usize) -> i64 {
        self.saved.get(&s).map(|v| v.2).unwrap_or(0)
    }

    /// Ends the session with the client's orderly close (closeSession, -11).
    async fn close(&mut self, s: usize) {
        self.ops += 1;
        self.opcodes.insert(OpCode::CloseSession.code());
        self.sent
            .entry(s)
            .or_default()
            .push_back(OpCode::CloseSession);
        let line = match self.conns.get(&s) {
            None => "!! no connection".to_string(),
            Some(c) => match tokio::time::timeout(REQUEST_TIMEOUT, c.close()).await {
                Err(_) => "!! timeout".to_string(),
                Ok(Err(e)) => format!("!! client error: {}", client_error_kind(&e)),
                Ok(Ok(())) => "Ok".to_string(),
            },
        };
        self.push(format!("close s{s} -> {line}"));
        self.settle(true).await;
        self.conns.remove(&s);
        self.taps.remove(&s);
    }

    /// A sequential node's name as the server returned it, for later steps.
    fn created_path(reply: &Option<Reply>) -> String {
        match reply.as_ref().map(|r| &r.response) {
            Some(Response::Path(p)) | Some(Response::Create2(p, _)) => p.clone(),
            _ => "/no-such-path-was-created".to_string(),
        }
    }
}

fn client_error_kind(e: &corral_client::ClientError) -> &'static str {
    use corral_client::ClientError as E;
    match e {
        // Whether a dropped connection shows as EOF or as a reset is a race, not behaviour.
        E::Io(_) | E::Closed | E::ConnectionLoss => "connection lost",
        E::Decode(_) => "decode",
        E::Frame(_) => "frame",
        E::Protocol(_) => "protocol",
        E::SessionExpired => "session expired",
        E::Timeout => "timeout",
        E::Server(_) => "server",
        E::UnexpectedResponse(_) => "unexpected response",
        E::AuthFailed => "auth failed",
        E::BadConnectString(..) => "bad connect string",
        E::BadPath(_) => "bad path",
        E::NotLeader => "not leader",
        E::TransactionFailed { .. } => "transaction failed",
    }
}

// ---------------------------------------------------------------------------------------------
// Request builders.

fn world(perms: i32) -> Vec<Acl> {
    vec![Acl {
        perms,
        id: Id {
            scheme: "world".into(),
            id: "anyone".into(),
        },
    }]
}

fn open() -> Vec<Acl> {
    world(corral_proto::perms::ALL)
}

fn digest_id(user: &str, password: &str) -> String {
    let hash = sha1::Sha1::digest(format!("{user}:{password}").as_bytes());
    format!(
        "{user}:{}",
        base64::engine::general_purpose::STANDARD.encode(hash)
    )
}

fn acl(scheme: &str, id: &str, perms: i32) -> Acl {
    Acl {
        perms,
        id: Id {
            scheme: scheme.into(),
            id: id.into(),
        },
    }
}

fn create_req(path: &str, data: &str, acl: Vec<Acl>, mode: CreateMode) -> CreateRequest {
    CreateRequest {
        path: path.into(),
        data: Some(data.as_bytes().to_vec()),
        acl,
        flags: mode.code(),
    }
}

fn create(path: &str, data: &str, mode: CreateMode) -> Request {
    Request::Create(create_req(path, data, open(), mode))
}

fn create2(path: &str, data: &str, mode: CreateMode) -> Request {
    Request::Create2(create_req(path, data, open(), mode))
}

fn create_flags(path: &str, flags: i32) -> Request {
    Request::Create(CreateRequest {
        path: path.into(),
        data: Some(vec![]),
        acl: open(),
        flags,
    })
}

fn create_acl(path: &str, acl: Vec<Acl>) -> Request {
    Request::Create(create_req(path, "", acl, CreateMode::Persistent))
}

fn create_ttl(path: &str, flags: i32, ttl: i64) -> Request {
    Request::CreateTtl(CreateTtlRequest {
        path: path.into(),
        data: Some(b"ttl".to_vec()),
        acl: open(),
        flags,
        ttl,
    })
}

fn container(path: &str) -> Request {
    Request::CreateContainer(create_req(path, "c", open(), CreateMode::Container))
}

fn delete(path: &str, version: i32) -> Request {
    Request::Delete(DeleteRequest {
        path: path.into(),
        version,
    })
}

fn exists(path: &str, watch: bool) -> Request {
    Request::Exists(GetDataRequest {
        path: path.into(),
        watch,
    })
}

fn get(path: &str, watch: bool) -> Request {
    Request::GetData(GetDataRequest {
        path: path.into(),
        watch,
    })
}

fn set(path: &str, data: &str, version: i32) -> Request {
    Request::SetData(SetDataRequest {
        path: path.into(),
        data: Some(data.as_bytes().to_vec()),
        version,
    })
}

fn children(path: &str, watch: bool) -> Request {
    Request::GetChildren(GetDataRequest {
        path: path.into(),
        watch,
    })
}

fn children2(path: &str, watch: bool) -> Request {
    Request::GetChildren2(GetDataRequest {
        path: path.into(),
        watch,
    })
}

fn get_acl(path: &str) -> Request {
    Request::GetAcl(PathRequest { path: path.into() })
}

fn set_acl(path: &str, acl: Vec<Acl>, version: i32) -> Request {
    Request::SetAcl(SetAclRequest {
        path: path.into(),
        acl,
        version,
    })
}

fn check(path: &str, version: i32) -> Request {
    Request::Check(CheckVersionRequest {
        path: path.into(),
        version,
    })
}

fn path_req(path: &str) -> PathRequest {
    PathRequest { path: path.into() }
}

fn watches(path: &str, t: WatcherType) -> WatchesRequest {
    WatchesRequest {
        path: path.into(),
        watcher_type: t.code(),
    }
}

fn add_watch(path: &str, mode: AddWatchMode) -> Request {
    Request::AddWatch(AddWatchRequest {
        path: path.into(),
        mode: mode.code(),
    })
}

fn auth(scheme: &str, cred: &str) -> Request {
    Request::Auth(AuthPacket {
        auth_type: 0,
        scheme: scheme.into(),
        auth: cred.as_bytes().to_vec(),
    })
}

// ---------------------------------------------------------------------------------------------
// The script.

async fn run_script(addr: &str, tag: &str) -> Vec<String> {
    // The same root on every server (each run has a fresh one), so paths in replies are the
    // same bytes.
    let root = "/differential".to_string();
    let mut t = Runner {
        tap: Tap::start(addr).await,
        taps: HashMap::new(),
        sent: HashMap::new(),
        root: root.clone(),
        conns: HashMap::new(),
        saved: HashMap::new(),
        session_labels: HashMap::new(),
        zxid_labels: HashMap::new(),
        lines: Vec::new(),
        ops: 0,
        opcodes: BTreeSet::new(),
    };
    let r = |p: &str| format!("{root}{p}");
    use CreateMode::*;

    // --- sessions and basic create ----------------------------------------------------------
    t.connect(1).await;
    t.connect(2).await;
    t.connect(3).await;
    t.op(1, create(&root, "root", Persistent)).await;
    t.op(1, create2(&r("/a"), "hello", Persistent)).await;
    t.op(1, create(&r("/a"), "again", Persistent)).await; // NodeExists
    t.op(1, create2(&r("/a"), "again", Persistent)).await; // NodeExists
    t.op(1, create(&r("/missing/child"), "", Persistent)).await; // NoNode
    t.op(1, create(&r("/b"), "", Persistent)).await;
    t.op(1, create(&r("/b/c"), "deep", Persistent)).await;

    // --- invalid paths and arguments --------------------------------------------------------
    t.op(1, create("relative", "", Persistent)).await;
    t.op(1, create(&r("/trailing/"), "", Persistent)).await;
    t.op(1, create(&r("//double"), "", Persistent)).await;
    t.op(1, create(&r("/./dot"), "", Persistent)).await;
    t.op(1, create(&r("/../dotdot"), "", Persistent)).await;
    t.op(1, create(&r("/ctl\u{1}char"), "", Persistent)).await;
    t.op(1, create("", "", Persistent)).await;
    t.op(1, create("/", "", Persistent)).await;
    t.op(1, create_flags(&r("/badflags"), 99)).await;
    t.op(1, get("relative", false)).await;
    t.op(1, exists(&r("/trailing/"), false)).await;
    t.op(1, exists("", false)).await; // ZooKeeper keeps the root under "" too
    t.op(1, delete("relative", -1)).await;
    t.op(1, set("relative", "x", -1)).await;
    t.op(1, delete("/", -1)).await;

    // --- invalid ACLs -----------------------------------------------------------------------
    t.op(1, create_acl(&r("/acl-empty"), vec![])).await;
    t.op(1, create_acl(&r("/acl-bogus"), vec![acl("bogus", "x", 31)]))
        .await;
    t.op(
        1,
        create_acl(&r("/acl-auth-noauth"), vec![acl("auth", "", 31)]),
    )
    .await;
    t.op(
        1,
        create_acl(&r("/acl-digest-bad"), vec![acl("digest", "nocolon", 31)]),
    )
    .await;
    t.op(
        1,
        create_acl(&r("/acl-ip-bad"), vec![acl("ip", "not-an-ip", 31)]),
    )
    .await;
    t.op(
        1,
        create_acl(&r("/acl-ip"), vec![acl("ip", "127.0.0.1", 31)]),
    )
    .await;
    t.op(
        1,
        create_acl(&r("/acl-world-bad"), vec![acl("world", "someone", 31)]),
    )
    .await;

    // --- reads, data watches, exist watches, child watches ----------------------------------
    t.op(1, exists(&r("/a"), true)).await;
    t.op(1, exists(&r("/nonode"), true)).await; // NoNode, sets an exist watch
    t.op(1, get(&r("/a"), true)).await;
    t.op(1, get(&r("/nonode"), true)).await; // NoNode, no watch
    t.op(2, get(&r("/a"), true)).await;
    t.op(2, children(&root, true)).await;
    t.op(3, exists(&r("/a"), true)).await;
    t.op(1, set(&r("/a"), "v2", 0)).await; // fires data watches of s1, s2, s3
    t.op(1, set(&r("/a"), "v3", 0)).await; // BadVersion
    t.op(1, set(&r("/a"), "v3", -1)).await;
    t.op(1, set(&r("/a"), "v4", 2)).await;
    t.op(1, set(&r("/nonode"), "x", -1)).await; // NoNode
    t.op(1, get(&r("/a"), false)).await;
    t.op(1, create(&r("/nonode"), "now", Persistent)).await; // s1 exist watch, s2 child watch
    t.op(1, children(&root, false)).await;
    t.op(1, children2(&root, true)).await;
    t.op(1, children2(&r("/b"), false)).await;
    t.op(1, children(&r("/zzz"), true)).await; // NoNode
    t.op(1, children2(&r("/zzz"), false)).await; // NoNode
    t.op(2, children(&r("/b"), true)).await;
    t.op(2, get(&r("/b/c"), true)).await;
    t.op(1, delete(&r("/a"), 5)).await; // BadVersion
    t.op(1, delete(&root, -1)).await; // NotEmpty
    t.op(1, delete(&r("/b"), -1)).await; // NotEmpty
    t.op(1, delete(&r("/none"), -1)).await; // NoNode
    t.op(1, delete(&r("/b/c"), 0)).await; // s2 data + child watches
    t.op(1, delete(&r("/nonode"), -1)).await; // s1 child watch on root
    t.op(1, exists(&r("/nonode"), false)).await;
    t.op(1, get(&r("/b"), false)).await;

    // --- sync and ping ----------------------------------------------------------------------
    t.op(1, Request::Sync(path_req(&root))).await;
    t.op(1, Request::Sync(path_req(&r("/does-not-exist"))))
        .await;
    t.op(2, Request::Ping).await;
    t.op(1, Request::Ping).await;

    // --- sequential nodes -------------------------------------------------------------------
    t.op(1, create(&r("/seq"), "", Persistent)).await;
    t.op(1, create(&r("/seq/n-"), "0", PersistentSequential))
        .await;
    let seq1 = Runner::created_path(
        &t.op(1, create(&r("/seq/n-"), "1", PersistentSequential))
            .await,
    );
    t.op(1, create2(&r("/seq/n-"), "2", PersistentSequential))
        .await;
    t.op(1, delete(&seq1, -1)).await;
    // ZooKeeper stores cversion as the number of child creations and reports
    // 2 * stored - numChildren (creations + deletions); the sequential suffix is the stored
    // value, so after 3 creations and 1 deletion the stat says cversion=4 and the next name
    // ends in 0000000003.
    t.op(1, children2(&r("/seq"), false)).await;
    t.op(1, create(&r("/seq/n-"), "4", PersistentSequential))
        .await;
    t.op(1, create(&r("/seq/"), "noprefix", PersistentSequential))
        .await;
    t.op(1, children2(&r("/seq"), false)).await;
    t.op(1, Request::GetAllChildrenNumber(path_req(&r("/seq"))))
        .await;

    // --- ephemerals -------------------------------------------------------------------------
    t.op(1, exists(&r("/eph"), true)).await;
    t.op(2, create(&r("/eph"), "mine", Ephemeral)).await;
    t.op(2, create(&r("/eph/child"), "", Persistent)).await; // NoChildrenForEphemerals
    t.op(2, create(&r("/eph/child"), "", Ephemeral)).await; // NoChildrenForEphemerals
    t.op(2, create2(&r("/eph-s-"), "", EphemeralSequential))
        .await;
    t.op(2, create2(&r("/seq/e-"), "", EphemeralSequential))
        .await;
    t.op(1, exists(&r("/eph"), true)).await;
    t.op(1, get(&r("/eph"), true)).await;
    t.op(3, children(&r("/seq"), true)).await;
    t.op(2, Request::GetEphemerals(path_req(&root))).await;
    t.op(2, Request::GetEphemerals(path_req(&r("/eph")))).await;
    t.op(2, Request::GetEphemerals(path_req(&r("/seq/")))).await;
    t.op(2, Request::GetEphemerals(path_req("/"))).await;
    t.op(1, Request::GetEphemerals(path_req(&root))).await;
    t.op(2, Request::GetAllChildrenNumber(path_req(&root)))
        .await;
    t.op(2, Request::GetAllChildrenNumber(path_req(&r("/nope"))))
        .await;
    t.op(1, set(&r("/eph"), "theirs", -1)).await; // another session may write it

    // --- containers and TTL nodes -----------------------------------------------------------
    t.op(1, container(&r("/cont"))).await;
    t.op(1, container(&r("/cont"))).await; // NodeExists
    t.op(1, create(&r("/cont/c1"), "", Persistent)).await;
    t.op(1, create2(&r("/cont2"), "", Container)).await; // container mode through create2
    t.op(1, create_flags(&r("/cont3"), Container.code())).await; // through create
    t.op(
        1,
        Request::CreateContainer(create_req(&r("/cont4"), "", open(), Persistent)),
    )
    .await;
    t.op(1, exists(&r("/cont"), false)).await;
    t.op(
        1,
        create_ttl(&r("/ttl"), PersistentWithTtl.code(), 3_600_000),
    )
    .await;
    t.op(
        1,
        create_ttl(
            &r("/ttl-seq-"),
            PersistentSequentialWithTtl.code(),
            3_600_000,
        ),
    )
    .await;
    t.op(1, create_ttl(&r("/ttl-zero"), PersistentWithTtl.code(), 0))
        .await;
    t.op(1, create_ttl(&r("/ttl-neg"), PersistentWithTtl.code(), -5))
        .await;
    t.op(
        1,
        create_ttl(&r("/ttl-huge"), PersistentWithTtl.code(), 1 << 41),
    )
    .await;
    t.op(1, create_ttl(&r("/ttl-mode"), Persistent.code(), 1000))
        .await;
    t.op(1, create_ttl(&r("/ttl-eph"), Ephemeral.code(), 1000))
        .await;
    t.op(1, create_flags(&r("/ttl-plain"), PersistentWithTtl.code()))
        .await;
    t.op(1, create(&r("/ttl/child"), "", Persistent)).await;
    t.op(1, get(&r("/ttl"), false)).await;

    // --- null data, which ZooKeeper keeps apart from empty data -----------------------------
    t.op(
        1,
        Request::Create(CreateRequest {
            path: r("/null"),
            data: None,
            acl: open(),
            flags: 0,
        }),
    )
    .await;
    t.op(1, get(&r("/null"), false)).await;
    t.op(
        1,
        Request::SetData(SetDataRequest {
            path: r("/ttl/child"),
            data: None,
            version: -1,
        }),
    )
    .await;
    t.op(1, get(&r("/ttl/child"), false)).await;
    t.op(1, delete(&r("/null"), -1)).await;

    // --- multi ------------------------------------------------------------------------------
    t.op(
        1,
        Request::Multi(vec![
            create(&r("/m1"), "m1", Persistent),
            create2(&r("/m2"), "m2", Persistent),
            set(&r("/m1"), "m1b", 0),
            check(&r("/m1"), 1),
            create(&r("/m2/s-"), "", PersistentSequential),
            delete(&r("/m2/s-0000000000"), 0),
            create_ttl(&r("/m3"), PersistentWithTtl.code(), 3_600_000),
            container(&r("/m4")),
        ]),
    )
    .await;
    t.op(1, children(&root, true)).await;
    t.op(
        1,
        Request::Multi(vec![
            create(&r("/m5"), "", Persistent),
            check(&r("/m1"), 99),
            set(&r("/m1"), "never", -1),
        ]),
    )
    .await; // BadVersion in the middle
    t.op(1, exists(&r("/m5"), false)).await;
    t.op(
        1,
        Request::Multi(vec![
            create(&r("/m1"), "", Persistent),
            create(&r("/m6"), "", Persistent),
        ]),
    )
    .await; // NodeExists first
    t.op(
        1,
        Request::Multi(vec![set(&r("/m1"), "x", -1), delete(&r("/m2"), -1)]),
    )
    .await; // NotEmpty? (m2 has no children now) or Ok
    t.op(
        1,
        Request::Multi(vec![
            create(&r("/m7"), "", Persistent),
            delete(&r("/m7"), -1),
            check(&r("/m7"), -1),
        ]),
    )
    .await; // NoNode for the check of a node deleted earlier in the same multi
    t.op(
        1,
        Request::Multi(vec![
            create(&r("/m8"), "", Persistent),
            create(&r("/m8/x"), "", Persistent),
            delete(&r("/m8"), -1),
        ]),
    )
    .await; // NotEmpty
    t.op(1, Request::Multi(vec![create("bad-path", "", Persistent)]))
        .await;
    t.op(1, Request::Multi(vec![])).await;
    t.op(
        1,
        Request::Multi(vec![check(&r("/m1"), -1), check(&r("/m1"), 2)]),
    )
    .await;
    t.op(
        2,
        Request::Multi(vec![
            create(&r("/m-eph"), "", Ephemeral),
            create(&r("/m-eph/x"), "", Persistent),
        ]),
    )
    .await; // NoChildrenForEphemerals
    t.op(
        1,
        Request::MultiRead(vec![
            get(&r("/m1"), false),
            children(&r("/seq"), false),
            get(&r("/nope"), false),
        ]),
    )
    .await;
    t.op(1, Request::MultiRead(vec![])).await;
    t.op(
        1,
        Request::MultiRead(vec![children(&r("/nope"), false), get(&root, false)]),
    )
    .await;

    // --- reconfig on a standalone server ----------------------------------------------------
    t.op(
        1,
        Request::Reconfig(ReconfigRequest {
            joining_servers: "server.2=127.0.0.1:12888:13888;12181".into(),
            leaving_servers: "".into(),
            new_members: "".into(),
            cur_config_id: -1,
        }),
    )
    .await;

    // --- checkWatches / removeWatches -------------------------------------------------------
    t.op(1, create(&r("/cw"), "cw", Persistent)).await;
    t.op(1, get(&r("/cw"), true)).await;
    t.op(
        1,
        Request::CheckWatches(watches(&r("/cw"), WatcherType::Data)),
    )
    .await;
    t.op(
        1,
        Request::CheckWatches(watches(&r("/cw"), WatcherType::Children)),
    )
    .await; // NoWatcher
    t.op(
        1,
        Request::CheckWatches(watches(&r("/cw"), WatcherType::Any)),
    )
    .await;
    t.op(
        1,
        Request::CheckWatches(watches(&r("/nowatch"), WatcherType::Any)),
    )
    .await; // NoWatcher
    t.op(
        2,
        Request::CheckWatches(watches(&r("/cw"), WatcherType::Data)),
    )
    .await; // other session: NoWatcher
    t.op(
        1,
        Request::RemoveWatches(watches(&r("/cw"), WatcherType::Data)),
    )
    .await;
    t.op(
        1,
        Request::RemoveWatches(watches(&r("/cw"), WatcherType::Data)),
    )
    .await; // NoWatcher
    t.op(1, set(&r("/cw"), "no event", -1)).await;
    t.op(1, children(&r("/cw"), true)).await;
    t.op(1, exists(&r("/cw"), true)).await;
    t.op(
        1,
        Request::RemoveWatches(watches(&r("/cw"), WatcherType::Children)),
    )
    .await;
    t.op(
        1,
        Request::CheckWatches(watches(&r("/cw"), WatcherType::Data)),
    )
    .await; // exist watch counts
    t.op(
        1,
        Request::RemoveWatches(watches(&r("/cw"), WatcherType::Any)),
    )
    .await;
    t.op(
        1,
        Request::RemoveWatches(watches(&r("/cw"), WatcherType::Any)),
    )
    .await; // NoWatcher
    t.op(1, create(&r("/cw/kid"), "", Persistent)).await; // no event
    t.op(1, exists(&r("/cw-none"), true)).await;
    t.op(
        1,
        Request::CheckWatches(watches(&r("/cw-none"), WatcherType::Data)),
    )
    .await;
    t.op(
        1,
        Request::RemoveWatches(watches(&r("/cw-none"), WatcherType::Data)),
    )
    .await;
    t.op(1, create(&r("/cw-none"), "", Persistent)).await; // no event

    // --- persistent and persistent-recursive watches -----------------------------------------
    t.op(3, add_watch(&r("/p"), AddWatchMode::Persistent)).await;
    t.op(3, add_watch(&r("/pr"), AddWatchMode::PersistentRecursive))
        .await;
    t.op(
        3,
        Request::CheckWatches(watches(&r("/p"), WatcherType::Any)),
    )
    .await;
    t.op(
        3,
        Request::CheckWatches(watches(&r("/pr"), WatcherType::Data)),
    )
    .await;
    t.op(1, create(&r("/p"), "p", Persistent)).await;
    t.op(1, create(&r("/p/c"), "c", Persistent)).await;
    t.op(1, set(&r("/p"), "p2", -1)).await;
    t.op(1, set(&r("/p/c"), "c2", -1)).await; // not watched
    t.op(1, delete(&r("/p/c"), -1)).await;
    t.op(1, delete(&r("/p"), -1)).await;
    t.op(1, create(&r("/p"), "again", Persistent)).await; // persistent: fires again
    t.op(1, create(&r("/pr"), "", Persistent)).await;
    t.op(1, create(&r("/pr/x"), "", Persistent)).await;
    t.op(1, create(&r("/pr/x/y"), "", Persistent)).await;
    t.op(1, set(&r("/pr/x/y"), "y", -1)).await;
    t.op(1, set(&r("/pr"), "top", -1)).await;
    t.op(2, create(&r("/pr/eph"), "", Ephemeral)).await;
    t.op(1, delete(&r("/pr/x/y"), -1)).await;
    t.op(1, delete(&r("/pr/x"), -1)).await;
    t.op(3, get(&r("/pr"), true)).await; // a one-shot watch next to the recursive one
    t.op(1, set(&r("/pr"), "top2", -1)).await;
    t.op(
        3,
        Request::RemoveWatches(watches(&r("/pr"), WatcherType::Any)),
    )
    .await;
    t.op(1, create(&r("/pr/z"), "", Persistent)).await; // no event any more
    t.op(
        3,
        Request::RemoveWatches(watches(&r("/p"), WatcherType::Any)),
    )
    .await;
    t.op(1, set(&r("/p"), "quiet", -1)).await; // no event any more
    t.op(3, add_watch(&r("/pr"), AddWatchMode::Persistent))
        .await;
    t.op(3, add_watch(&r("/pr"), AddWatchMode::PersistentRecursive))
        .await; // replaces it
    t.op(1, create(&r("/pr/w"), "", Persistent)).await;
    t.op(
        3,
        add_watch(&r("/missing-parent/x"), AddWatchMode::Persistent),
    )
    .await;

    // --- ACLs and digest auth across sessions ------------------------------------------------
    let user1 = digest_id("user1", "pw1");
    t.op(1, Request::WhoAmI).await;
    t.op(1, auth("digest", "user1:pw1")).await;
    t.op(1, Request::WhoAmI).await;
    t.op(
        1,
        create_acl(
            &r("/secret"),
            vec![acl("digest", &user1, corral_proto::perms::ALL)],
        ),
    )
    .await;
    t.op(
        1,
        create_acl(
            &r("/secret2"),
            vec![acl("auth", "", corral_proto::perms::ALL)],
        ),
    )
    .await;
    t.op(1, get_acl(&r("/secret2"))).await;
    t.op(1, get(&r("/secret"), false)).await;
    t.op(1, create(&r("/secret/kid"), "k", Persistent)).await;
    t.op(2, get(&r("/secret"), false)).await; // NoAuth
    t.op(2, exists(&r("/secret"), false)).await; // exists needs no permission
    t.op(2, get_acl(&r("/secret"))).await;
    t.op(2, set(&r("/secret"), "x", -1)).await; // NoAuth
    t.op(2, children(&r("/secret"), false)).await; // NoAuth
    t.op(2, create(&r("/secret/x"), "", Persistent)).await; // NoAuth
    t.op(2, delete(&r("/secret/kid"), -1)).await; // NoAuth
    t.op(2, set_acl(&r("/secret"), open(), -1)).await; // NoAuth
    t.op(
        2,
        Request::MultiRead(vec![get(&r("/secret"), false), get(&r("/a"), false)]),
    )
    .await;
    t.op(
        2,
        Request::Multi(vec![
            set(&r("/a"), "via multi", -1),
            set(&r("/secret"), "x", -1),
        ]),
    )
    .await;
    t.op(2, auth("digest", "user1:wrong")).await; // accepted, but is another identity
    t.op(2, Request::WhoAmI).await;
    t.op(2, get(&r("/secret"), false)).await; // NoAuth
    t.op(2, auth("digest", "user1:pw1")).await;
    t.op(2, get(&r("/secret"), false)).await; // now allowed
    t.op(2, Request::WhoAmI).await;
    t.op(1, set_acl(&r("/a"), world(corral_proto::perms::READ), 0))
        .await;
    t.op(1, set_acl(&r("/a"), world(corral_proto::perms::READ), 0))
        .await; // BadVersion
    t.op(1, set_acl(&r("/a"), vec![], -1)).await; // InvalidACL
    t.op(1, set_acl(&r("/nope"), open(), -1)).await; // NoNode
    t.op(1, get_acl(&r("/a"))).await;
    t.op(1, set(&r("/a"), "denied", -1)).await; // NoAuth
    t.op(1, create(&r("/a/kid"), "", Persistent)).await; // NoAuth
    t.op(1, set_acl(&r("/a"), open(), -1)).await; // NoAuth: no ADMIN any more
    t.op(1, get(&r("/a"), false)).await;
    t.op(1, delete(&r("/a"), -1)).await; // parent allows delete
    t.op(
        1,
        create_acl(
            &r("/ro-parent"),
            vec![acl(
                "world",
                "anyone",
                corral_proto::perms::READ | corral_proto::perms::ADMIN,
            )],
        ),
    )
    .await;
    t.op(1, create(&r("/ro-parent/kid"), "", Persistent)).await; // NoAuth: no CREATE
    t.op(
        1,
        set_acl(
            &r("/ro-parent"),
            world(corral_proto::perms::CREATE | corral_proto::perms::ADMIN),
            -1,
        ),
    )
    .await;
    t.op(1, create(&r("/ro-parent/kid"), "", Persistent)).await;
    t.op(1, delete(&r("/ro-parent/kid"), -1)).await; // NoAuth: no DELETE
    t.op(1, children(&r("/ro-parent"), false)).await; // NoAuth: no READ
    t.op(3, get(&r("/acl-ip"), false)).await; // ip:127.0.0.1 matches
    t.op(3, get_acl(&r("/acl-ip"))).await;
    t.op(3, Request::WhoAmI).await;

    // --- an unknown auth scheme: AuthFailed, and the server drops the connection --------------
    t.connect(4).await;
    t.op(4, auth("nosuchscheme", "whatever")).await;
    t.op(4, exists(&root, false)).await; // the connection is gone
                                         // The session itself lives on: resume it and close it, so it cannot expire in the middle
                                         // of the script (an expiry is a transaction and would shift every later zxid).
    t.abort(4);
    t.resume(4).await;
    t.op(4, Request::WhoAmI).await; // the failed identity was not kept
    t.close(4).await;

    // --- setWatches after a reconnect ----------------------------------------------------------
    t.op(1, create(&r("/sw"), "", Persistent)).await;
    t.op(1, create(&r("/sw/a"), "a", Persistent)).await;
    t.op(1, create(&r("/sw/b"), "b", Persistent)).await;
    t.op(1, create(&r("/sw/c"), "c", Persistent)).await;
    t.op(1, create(&r("/sw/same"), "same", Persistent)).await;
    t.connect(5).await;
    t.op(5, get(&r("/sw/a"), false)).await;
    t.abort(5);
    t.op(1, set(&r("/sw/a"), "a2", -1)).await;
    t.op(1, delete(&r("/sw/b"), -1)).await;
    t.op(1, create(&r("/sw/new"), "", Persistent)).await;
    t.op(1, create(&r("/sw/c/kid"), "", Persistent)).await;
    t.resume(5).await;
    let rel = t.saved_zxid(5);
    t.op(
        5,
        Request::SetWatches(SetWatches {
            relative_zxid: rel,
            data_watches: vec![r("/sw/a"), r("/sw/b"), r("/sw/same"), r("/sw/never")],
            exist_watches: vec![r("/sw/new"), r("/sw/later")],
            child_watches: vec![r("/sw/c"), r("/sw"), r("/sw/same"), r("/sw/gone")],
        }),
    )
    .await;
    t.op(1, create(&r("/sw/later"), "", Persistent)).await; // registered exist watch fires
    t.op(1, set(&r("/sw/same"), "changed", -1)).await; // registered data watch fires
    t.op(1, create(&r("/sw/same/kid"), "", Persistent)).await; // registered child watch fires
    t.op(
        5,
        Request::CheckWatches(watches(&r("/sw"), WatcherType::Children)),
    )
    .await; // fired: NoWatcher
            // setWatches2: persistent watches come back too.
    t.op(5, get(&r("/sw/a"), false)).await;
    t.abort(5);
    t.op(1, set(&r("/sw/a"), "a3", -1)).await;
    t.op(1, create(&r("/sw/p"), "", Persistent)).await;
    t.resume(5).await;
    let rel = t.saved_zxid(5);
    t.op(
        5,
        Request::SetWatches2(SetWatches2 {
            relative_zxid: rel,
            data_watches: vec![r("/sw/a")],
            exist_watches: vec![r("/sw/p"), r("/sw/q")],
            child_watches: vec![r("/sw/c")],
            persistent_watches: vec![r("/sw/p")],
            persistent_recursive_watches: vec![r("/sw/rec")],
        }),
    )
    .await;
    t.op(1, set(&r("/sw/p"), "p", -1)).await; // persistent
    t.op(1, set(&r("/sw/p"), "p again", -1)).await; // persistent, again
    t.op(1, create(&r("/sw/rec"), "", Persistent)).await; // recursive
    t.op(1, create(&r("/sw/rec/deep"), "", Persistent)).await; // recursive
    t.op(1, create(&r("/sw/q"), "", Persistent)).await; // exist watch
    t.op(
        5,
        Request::CheckWatches(watches(&r("/sw/p"), WatcherType::Any)),
    )
    .await;
    t.close(5).await;

    // --- closing a session removes its ephemerals; others observe it --------------------------
    t.op(1, children(&root, true)).await;
    t.op(3, exists(&r("/eph"), true)).await;
    t.op(1, get(&r("/eph"), true)).await;
    t.op(3, exists(&r("/pr/eph"), false)).await;
    t.op(2, Request::CloseSession).await;
    t.conns.remove(&2);
    t.op(1, exists(&r("/eph"), false)).await; // gone
    t.op(1, Request::GetAllChildrenNumber(path_req(&root)))
        .await;
    t.op(1, children(&r("/seq"), false)).await;
    t.op(3, Request::GetEphemerals(path_req("/"))).await;

    // --- another new session sees the state ---------------------------------------------------
    t.connect(6).await;
    t.op(6, Request::WhoAmI).await;
    t.op(6, get(&r("/secret"), false)).await; // NoAuth
    t.op(6, create2(&r("/eph6"), "", Ephemeral)).await;
    t.op(6, Request::GetEphemerals(path_req(&root))).await;
    t.op(1, exists(&r("/eph6"), true)).await;
    t.op(3, children2(&root, false)).await;

    // --- check outside a multi, a client's deleteContainer, addWatch refusals -----------------
    t.op(1, create(&r("/chk"), "", Persistent)).await;
    t.op(1, check(&r("/chk"), 7)).await; // BadVersion
    t.op(1, check(&r("/chk-missing"), -1)).await; // NoNode
    t.op(1, check("relative", -1)).await;
    t.op(1, container(&r("/ctr-client"))).await;
    t.op(1, Request::DeleteContainer(path_req(&r("/ctr-client"))))
        .await; // a client may not
    t.op(1, Request::DeleteContainer(path_req(&r("/ctr-missing"))))
        .await;
    t.op(1, exists(&r("/ctr-client"), false)).await;
    // ZooKeeper 3.8 sends no reply to a check outside a multi that succeeds (its session
    // waits in vain, so it gets one of its own), yet spends a zxid on it.
    t.connect(7).await;
    t.op_within(7, check(&r("/chk"), 0), Duration::from_secs(2))
        .await;
    t.abort(7);
    t.op(1, create2(&r("/after-chk"), "", Persistent)).await;
    t.op(3, add_watch("relative", AddWatchMode::Persistent))
        .await;
    t.op(
        3,
        Request::AddWatch(AddWatchRequest {
            path: r("/p"),
            mode: 7,
        }),
    )
    .await;

    // --- a steady batch of plain operations ---------------------------------------------------
    t.op(1, create(&r("/bulk"), "", Persistent)).await;
    t.op(3, children(&r("/bulk"), true)).await;
    for i in 0..8 {
        let p = r(&format!("/bulk/n{i}"));
        t.op(1, create2(&p, &format!("v{i}"), Persistent)).await;
        t.op(3, get(&p, true)).await;
        t.op(1, set(&p, &format!("w{i}"), 0)).await;
        t.op(1, set(&p, "stale", 0)).await; // BadVersion
        t.op(3, exists(&p, true)).await;
        if i % 2 == 0 {
            t.op(1, delete(&p, 1)).await;
        } else {
            t.op(1, get(&p, false)).await;
        }
        t.op(3, children(&r("/bulk"), true)).await;
    }
    t.op(1, children2(&r("/bulk"), false)).await;
    t.op(1, Request::GetAllChildrenNumber(path_req(&r("/bulk"))))
        .await;

    // --- end ---------------------------------------------------------------------------------
    t.close(6).await;
    t.op(1, exists(&r("/eph6"), false)).await;
    t.close(3).await;
    t.close(1).await;

    let missing: Vec<&str> = REQUIRED_OPS
        .iter()
        .filter(|o| !t.opcodes.contains(&o.code()))
        .map(|o| o.name())
        .collect();
    assert!(
        missing.is_empty(),
        "the script does not exercise opcodes {missing:?}"
    );
    println!(
        "[{tag}] differential script: {} operations, {} transcript lines",
        t.ops,
        t.lines.len()
    );
    assert!(
        t.ops >= 200,
        "the script must run at least 200 operations, ran {}",
        t.ops
    );
    if let Some(dir) = std::env::var_os("CORRAL_TRANSCRIPT_DIR") {
        let path = std::path::Path::new(&dir).join(format!("{tag}.txt"));
        match std::fs::write(&path, t.lines.join("\n") + "\n") {
            Ok(()) => println!("[{tag}] transcript written to {}", path.display()),
            Err(e) => println!("[{tag}] cannot write {}: {e}", path.display()),
        }
    }
    t.lines
}

/// Panics with a unified-style diff of the first difference, after saving both transcripts.
fn assert_same_transcripts(a_name: &str, a: &[String], b_name: &str, b: &[String]) {
    let first = (0..a.len().max(b.len())).find(|&i| a.get(i) != b.get(i));
    let Some(i) = first else {
        println!(
            "transcripts of {a_name} and {b_name} are identical ({} lines)",
            a.len()
        );
        return;
    };
    let dir = std::env::temp_dir();
    let tag = unique_name("transcript");
    let pa = dir.join(format!("{tag}-{}.txt", a_name.replace(['#', ' '], "")));
    let pb = dir.join(format!("{tag}-{}.txt", b_name.replace(['#', ' '], "")));
    let _ = std::fs::write(&pa, a.join("\n") + "\n");
    let _ = std::fs::write(&pb, b.join("\n") + "\n");
    let mut msg = format!(
        "transcripts differ at line {} (full transcripts: {} and {})\n--- {a_name}\n+++ {b_name}\n@@ line {} @@\n",
        i + 1,
        pa.display(),
        pb.display(),
        i + 1
    );
    for l in &a[i.saturating_sub(5)..i] {
        msg.push_str(&format!(" {l}\n"));
    }
    for l in a.iter().skip(i).take(12) {
        msg.push_str(&format!("-{l}\n"));
    }
    for l in b.iter().skip(i).take(12) {
        msg.push_str(&format!("+{l}\n"));
    }
    panic!("{msg}");
}

/// Data as the transcript shows it: null stays distinct from empty.
fn show_data(d: &Option<Vec<u8>>) -> String {
    match d {
        Some(d) => format!("{:?}", String::from_utf8_lossy(d)),
        None => "null".to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Raw bytes: a loopback proxy keeps every frame the server sends, so the transcript compares
// the bytes of each reply and event, not only what the client decoded. A reply that decodes
// equal but differs in bytes (an addWatch reply without its error code, a body a field too
// long) breaks the Java client.

/// Frames the server sent on one connection, in order, not yet put in the transcript.
type TapFrames = Arc<Mutex<VecDeque<Vec<u8>>>>;

/// A proxy in front of the server under test; one [`TapFrames`] per accepted connection, in
/// accept order.
struct Tap {
    addr: String,
    conns: Arc<Mutex<Vec<TapFrames>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Tap {
    async fn start(upstream: &str) -> Tap {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the tap proxy");
        let addr = listener.local_addr().expect("tap address").to_string();
        let conns: Arc<Mutex<Vec<TapFrames>>> = Arc::default();
        let upstream = upstream.to_string();
        let registry = Arc::clone(&conns);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let frames = TapFrames::default();
                registry
                    .lock()
                    .expect("tap registry")
                    .push(Arc::clone(&frames));
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                tokio::spawn(proxy(client, server, frames));
            }
        });
        Tap {
            addr,
            conns,
            accept,
        }
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn proxy(client: TcpStream, server: TcpStream, frames: TapFrames) {
    let (mut client_rd, mut client_wr) = client.into_split();
    let (mut server_rd, mut server_wr) = server.into_split();
    let upward = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_rd, &mut server_wr).await;
        let _ = server_wr.shutdown().await;
    });
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match server_rd.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // Recorded before it is forwarded, so a frame is in the tap by the time the client
        // has seen it.
        pending.extend_from_slice(&chunk[..n]);
        while pending.len() >= 4 {
            let len = i32::from_be_bytes([pending[0], pending[1], pending[2], pending[3]]);
            let len = usize::try_from(len).unwrap_or(0);
            if pending.len() < 4 + len {
                break;
            }
            let body = pending[4..4 + len].to_vec();
            pending.drain(..4 + len);
            frames.lock().expect("tap frames").push_back(body);
        }
        if client_wr.write_all(&chunk[..n]).await.is_err() {
            break;
        }
    }
    let _ = client_wr.shutdown().await;
    upward.abort();
}

/// What the transcript needs to mask a reply: the opcode it answers.
fn masked_reply(op: OpCode, body: &[u8], sessions: &HashSet<i64>) -> String {
    let mut b = body.to_vec();
    let mut m = Masker {
        b: &mut b,
        pos: 0,
        sessions,
    };
    let walked = m.reply(op);
    let (pos, len) = (m.pos, m.b.len());
    let mut text = show_bytes(&b);
    if walked.is_none() {
        text.push_str(" (shorter than its layout)");
    } else if pos != len {
        text.push_str(&format!(" ({} bytes past its layout)", len - pos));
    }
    text
}

/// The connect response with the session id and password masked.
fn masked_connect(body: &[u8]) -> String {
    let mut b = body.to_vec();
    // protocolVersion int, timeOut int, sessionId long, passwd buffer (int length + bytes).
    if b.len() >= 20 {
        b[8..16].fill(0);
        let n = i32::from_be_bytes([b[16], b[17], b[18], b[19]]).max(0) as usize;
        let end = (20 + n).min(b.len());
        b[20..end].fill(0);
    }
    show_bytes(&b)
}

fn show_bytes(b: &[u8]) -> String {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    if b.len() <= 512 {
        format!("{}:{}", b.len(), hex(b))
    } else {
        let digest = sha1::Sha1::digest(b);
        format!("{}:{}..sha1={}", b.len(), hex(&b[..64]), hex(&digest))
    }
}

/// Walks a reply body by the layout of its opcode (zookeeper.jute), zeroing what legitimately
/// differs between servers (zxids, times, session ids) and sorting child lists (ZooKeeper
/// lists children in hash order). `None` when the body ends before its layout does.
struct Masker<'a> {
    b: &'a mut Vec<u8>,
    pos: usize,
    sessions: &'a HashSet<i64>,
}

impl Masker<'_> {
    fn take(&mut self, n: usize) -> Option<std::ops::Range<usize>> {
        let r = self.pos..self.pos.checked_add(n)?;
        if r.end > self.b.len() {
            return None;
        }
        self.pos = r.end;
        Some(r)
    }
    fn int(&mut self) -> Option<i32> {
        let r = self.take(4)?;
        let b = &self.b[r];
        Some(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn mask(&mut self, n: usize) -> Option<()> {
        let r = self.take(n)?;
        self.b[r].fill(0);
        Some(())
    }
    /// A string or a buffer: an int length (-1 for null) and the bytes.
    fn bytes(&mut self) -> Option<std::ops::Range<usize>> {
        let n = self.int()?;
        self.take(usize::try_from(n).unwrap_or(0))
    }
    fn stat(&mut self) -> Option<()> {
        self.mask(32)?; // czxid, mzxid, ctime, mtime
        self.take(12)?; // version, cversion, aversion
        let owner = self.take(8)?;
        let o = &self.b[owner.clone()];
        let id = i64::from_be_bytes([o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]]);
        if self.sessions.contains(&id) {
            self.b[owner].fill(0xee);
        }
        self.take(8)?; // dataLength, numChildren
        self.mask(8) // pzxid
    }
    fn sorted_strings(&mut self) -> Option<()> {
        let start = self.pos;
        let n = self.int()?;
        let mut items = Vec::new();
        for _ in 0..n.max(0) {
            let from = self.pos;
            self.bytes()?;
            items.push(self.b[from..self.pos].to_vec());
        }
        items.sort();
        let mut at = start + 4;
        for item in items {
            self.b[at..at + item.len()].copy_from_slice(&item);
            at += item.len();
        }
        Some(())
    }
    fn acls(&mut self) -> Option<()> {
        let n = self.int()?;
        for _ in 0..n.max(0) {
            self.int()?;
            self.bytes()?;
            self.bytes()?;
        }
        Some(())
    }
    fn reply(&mut self, op: OpCode) -> Option<()> {
        self.take(4)?; // xid
        self.mask(8)?; // zxid
        if self.int()? != 0 {
            return Some(());
        }
        self.body(op)
    }
    fn body(&mut self, op: OpCode) -> Option<()> {
        use OpCode as O;
        match op {
            O::Create | O::Sync => self.bytes().map(drop),
            O::Create2 | O::CreateContainer | O::CreateTtl => {
                self.bytes()?;
                self.stat()
            }
            O::Exists | O::SetData | O::SetAcl => self.stat(),
            // An ErrorResponse: the code again.
            O::AddWatch => self.int().map(drop),
            O::GetData | O::Reconfig => {
                self.bytes()?;
                self.stat()
            }
            O::GetAcl => {
                self.acls()?;
                self.stat()
            }
            O::GetChildren | O::GetEphemerals => self.sorted_strings(),
            O::GetChildren2 => {
                self.sorted_strings()?;
                self.stat()
            }
            O::Multi | O::MultiRead => loop {
                let op = self.int()?;
                let done = self.take(1)?;
                self.int()?; // err
                if self.b[done.start] != 0 {
                    return Some(());
                }
                match OpCode::from_i32(op) {
                    Some(O::Check | O::Delete) => {}
                    // An error result carries its code again.
                    Some(O::Error) | None => {
                        self.int()?;
                    }
                    Some(O::GetChildren) => self.sorted_strings()?,
                    Some(O::GetData) => {
                        self.bytes()?;
                        self.stat()?
                    }
                    Some(o) => self.body(o)?,
                }
            },
            _ => Some(()),
        }
    }
}
