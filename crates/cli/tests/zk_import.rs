//! Importing a real ZooKeeper 3.8's data directory.
//!
//! A real ZooKeeper is filled with znodes of every kind (persistent, ephemerals of 20 live
//! sessions, sequential, container, TTL, digest and ip ACLs, a quota, null, empty and 1 MiB
//! data, deletes, setData, setACL, multis that succeed and fail, closed sessions) across
//! several snapshots and logs; every getData, getChildren2, getACL and exists answer is
//! recorded; ZooKeeper is killed with SIGKILL (its sessions stay in its files). Then
//! `corral import-zk` runs into a fresh directory, and, separately, `corral serve` starts on
//! a copy of ZooKeeper's dataDir (importing it itself). Both must answer every recorded read
//! with the same bytes (children compared as sets: ZooKeeper lists them in hash-set order),
//! keep the 20 sessions (reconnect with id and password, lastZxidSeen = ZooKeeper's last
//! zxid), give the next sequential child the suffix ZooKeeper would have given, and leave
//! ZooKeeper's files as they were.
//!
//! The number of znodes is `ZK_IMPORT_ZNODES` (default 3000, quick); "Done when" asks for
//! 100,000: `ZK_IMPORT_ZNODES=100000 cargo test -p corral --test zk_import -- --nocapture`.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use common::{fresh_temp_dir, CorralServer, RawConn, RealZk};
use corral_proto::{
    Acl, AuthPacket, CheckVersionRequest, ConnectRequest, CreateRequest, CreateTtlRequest,
    DeleteRequest, GetDataRequest, Id, Jute, PathRequest, Reader, ReplyHeader, Request,
    SetAclRequest, SetDataRequest,
};
use sha1::Digest;

const SESSIONS: usize = 20;
const SESSION_TIMEOUT_MS: i32 = 30_000;
const MAX_BUFFER: usize = 4 << 20;
const MIB: usize = 1 << 20;
const USER: &str = "importer:secret";

/// Flags of CreateMode.
const PERSISTENT: i32 = 0;
const EPHEMERAL: i32 = 1;
const PERSISTENT_SEQUENTIAL: i32 = 2;
const EPHEMERAL_SEQUENTIAL: i32 = 3;
const CONTAINER: i32 = 4;
const PERSISTENT_WITH_TTL: i32 = 5;
const PERSISTENT_SEQUENTIAL_WITH_TTL: i32 = 6;

fn znode_count() -> usize {
    std::env::var("ZK_IMPORT_ZNODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
}

fn world(perms: i32) -> Acl {
    Acl {
        perms,
        id: Id {
            scheme: "world".into(),
            id: "anyone".into(),
        },
    }
}

fn digest_acl(perms: i32) -> Acl {
    let (user, _) = USER.split_once(':').unwrap_or_default();
    let hash = sha1::Sha1::digest(USER.as_bytes());
    Acl {
        perms,
        id: Id {
            scheme: "digest".into(),
            id: format!(
                "{user}:{}",
                base64::engine::general_purpose::STANDARD.encode(hash)
            ),
        },
    }
}

fn ip_acl(perms: i32) -> Acl {
    Acl {
        perms,
        id: Id {
            scheme: "ip".into(),
            id: "127.0.0.1".into(),
        },
    }
}

fn create(path: &str, data: Option<Vec<u8>>, acl: Vec<Acl>, flags: i32) -> Request {
    Request::Create(CreateRequest {
        path: path.into(),
        data,
        acl,
        flags,
    })
}

fn open_create(path: &str, data: &[u8], flags: i32) -> Request {
    create(path, Some(data.to_vec()), vec![world(31)], flags)
}

/// A raw connection that pipelines requests: a batch is written at once, then its replies
/// are read in order (notifications skipped).
struct Pipe {
    conn: RawConn,
    xid: i32,
    /// The highest zxid seen in a reply header.
    last_zxid: i64,
}

impl Pipe {
    fn session(addr: &str, timeout_ms: i32) -> (Pipe, i64, Vec<u8>) {
        let mut conn = RawConn::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        let resp = conn
            .handshake(&ConnectRequest {
                timeout: timeout_ms,
                read_only: Some(false),
                ..Default::default()
            })
            .unwrap_or_else(|e| panic!("handshake with {addr}: {e}"));
        assert!(resp.session_id != 0 && resp.timeout > 0, "{resp:?}");
        (
            Pipe {
                conn,
                xid: 0,
                last_zxid: 0,
            },
            resp.session_id,
            resp.passwd,
        )
    }

    /// A session authenticated as [`USER`] (digest).
    fn authed(addr: &str) -> Pipe {
        let (mut p, _, _) = Pipe::session(addr, SESSION_TIMEOUT_MS);
        let (hdr, _) = p
            .conn
            .request(
                corral_proto::xid::AUTH,
                &Request::Auth(AuthPacket {
                    auth_type: 0,
                    scheme: "digest".into(),
                    auth: USER.as_bytes().to_vec(),
                }),
            )
            .unwrap_or_else(|e| panic!("addauth: {e}"));
        assert_eq!(hdr.err, 0, "addauth answered {hdr:?}");
        p
    }

    /// Sends `reqs` in one write and returns each reply's error code and body.
    fn batch(&mut self, reqs: &[Request]) -> Vec<(i32, Vec<u8>)> {
        let mut out = Vec::new();
        let first = self.xid + 1;
        for r in reqs {
            self.xid += 1;
            out.extend_from_slice(&corral_proto::frame::frame(&r.to_frame_body(self.xid)));
        }
        self.conn
            .send_raw(&out)
            .unwrap_or_else(|e| panic!("send a batch: {e}"));
        let mut replies = Vec::with_capacity(reqs.len());
        while replies.len() < reqs.len() {
            let body = self
                .conn
                .read_frame(Duration::from_secs(60))
                .unwrap_or_else(|e| panic!("read a reply: {e}"))
                .unwrap_or_else(|| panic!("the server closed the connection"));
            let mut r = Reader::new(&body);
            let hdr = ReplyHeader::read(&mut r).unwrap_or_else(|e| panic!("reply header: {e}"));
            if hdr.xid == corral_proto::xid::NOTIFICATION || hdr.xid == corral_proto::xid::PING {
                continue;
            }
            assert_eq!(
                hdr.xid,
                first + replies.len() as i32,
                "replies out of order"
            );
            self.last_zxid = self.last_zxid.max(hdr.zxid);
            replies.push((hdr.err, body[r.position()..].to_vec()));
        }
        replies
    }

    /// Sends `reqs` in batches of `per` and requires each answer to be Ok.
    fn all_ok(&mut self, reqs: Vec<Request>, per: usize) {
        for chunk in reqs.chunks(per.max(1)) {
            for ((err, _), req) in self.batch(chunk).iter().zip(chunk) {
                assert_eq!(*err, 0, "{req:?} answered error {err}");
            }
        }
    }
}

/// Pings a set of connections every 2 s so their sessions stay alive while the test works.
struct Pinger {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<RawConn>>>,
}

impl Pinger {
    fn start(mut conns: Vec<RawConn>) -> Pinger {
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut next = Instant::now();
            while !s.load(Ordering::SeqCst) {
                if Instant::now() >= next {
                    for c in conns.iter_mut() {
                        let _ = c.send_frame(&Request::Ping.to_frame_body(corral_proto::xid::PING));
                        let _ = c.outcome(Duration::from_millis(20));
                    }
                    next = Instant::now() + Duration::from_secs(2);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            conns
        });
        Pinger {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> Vec<RawConn> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

/// What a server answered for one path: raw bodies (error code first) of getData, getACL
/// and exists, and getChildren2 split into its children (sorted) and its raw stat.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answers {
    data: (i32, Vec<u8>),
    acl: (i32, Vec<u8>),
    exists: (i32, Vec<u8>),
    children: (i32, Vec<String>, Vec<u8>),
}

/// Reads every znode from "/" down, pipelined a level at a time.
fn record(p: &mut Pipe) -> BTreeMap<String, Answers> {
    let mut out = BTreeMap::new();
    let mut level = vec!["/".to_string()];
    while !level.is_empty() {
        let mut next = Vec::new();
        for chunk in level.chunks(250) {
            let mut reqs = Vec::new();
            for path in chunk {
                let g = GetDataRequest {
                    path: path.clone(),
                    watch: false,
                };
                reqs.push(Request::GetData(g.clone()));
                reqs.push(Request::GetAcl(PathRequest { path: path.clone() }));
                reqs.push(Request::Exists(g.clone()));
                reqs.push(Request::GetChildren2(g));
            }
            let replies = p.batch(&reqs);
            for (path, r) in chunk.iter().zip(replies.chunks(4)) {
                let (cerr, cbody) = &r[3];
                let mut children = Vec::new();
                let mut stat = Vec::new();
                if *cerr == 0 {
                    let mut rd = Reader::new(cbody);
                    children = rd.vec::<String>().unwrap_or_else(|e| panic!("{path}: {e}"));
                    stat = cbody[rd.position()..].to_vec();
                    for c in &children {
                        next.push(if path == "/" {
                            format!("/{c}")
                        } else {
                            format!("{path}/{c}")
                        });
                    }
                    children.sort();
                }
                out.insert(
                    path.clone(),
                    Answers {
                        data: r[0].clone(),
                        acl: r[1].clone(),
                        exists: r[2].clone(),
                        children: (*cerr, children, stat),
                    },
                );
            }
        }
        level = next;
    }
    out
}

/// Names, sizes and a checksum of every file under `dir`, to show nothing changed them.
fn fingerprint(dir: &Path) -> BTreeMap<PathBuf, (u64, u64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                // FNV-1a: enough to see a change.
                let sum = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
                    (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
                });
                out.insert(p, (bytes.len() as u64, sum));
            }
        }
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("{}: {e}", to.display()));
    for e in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
        let e = e.expect("dir entry");
        let dest = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest)
                .unwrap_or_else(|err| panic!("copy {}: {err}", e.path().display()));
        }
    }
}

/// What the ZooKeeper phase leaves for the corral phases.
struct ZkState {
    answers: BTreeMap<String, Answers>,
    sessions: Vec<(i64, Vec<u8>)>,
    last_zxid: i64,
    /// A copy of ZooKeeper's dataDir after it was killed.
    data: PathBuf,
    snapshots: usize,
    logs: usize,
}

/// Fills a real ZooKeeper, records it, kills it. None when ZooKeeper is not installed.
fn fill_zookeeper(n: usize, keep: &Path, jvm_extra: &[&str]) -> Option<ZkState> {
    let snap_count = (n / 4).clamp(200, 25_000);
    let cfg = format!(
        "snapCount={snap_count}\nextendedTypesEnabled=true\npreAllocSize=4096\n\
         maxSessionTimeout=60000"
    );
    let jute = format!("-Djute.maxbuffer={MAX_BUFFER}");
    if let Some(why) = RealZk::unavailable() {
        if std::env::var_os("CI").is_some() {
            panic!("real ZooKeeper is required when CI is set: {why}");
        }
        eprintln!("SKIP: real ZooKeeper not available: {why}");
        return None;
    }
    let mut jvm = vec!["-Xmx1g", jute.as_str()];
    jvm.extend_from_slice(jvm_extra);
    let mut zk = RealZk::try_start_with_jvm(&cfg, &jvm)
        .unwrap_or_else(|e| panic!("cannot start real ZooKeeper: {e}"));
    let addr = zk.addr();
    let started = Instant::now();
    let mut p = Pipe::authed(&addr);

    // Skeleton, ACL'd nodes, big and odd data.
    let mut reqs = vec![
        open_create("/imp", b"import test", PERSISTENT),
        open_create("/imp/p", b"", PERSISTENT),
        open_create("/imp/seq", b"", PERSISTENT),
        open_create("/imp/eph", b"", PERSISTENT),
        open_create("/imp/ttl", b"", PERSISTENT),
        open_create("/imp/acl", b"", PERSISTENT),
        open_create("/imp/big", b"", PERSISTENT),
        open_create("/imp/q", b"quota'd", PERSISTENT),
        create("/imp/null", None, vec![world(31)], PERSISTENT),
        open_create("/imp/empty", b"", PERSISTENT),
        create(
            "/imp/acl/digest",
            Some(b"digest only".to_vec()),
            vec![digest_acl(31)],
            PERSISTENT,
        ),
        create(
            "/imp/acl/ip",
            Some(b"ip only".to_vec()),
            vec![ip_acl(31)],
            PERSISTENT,
        ),
        create(
            "/imp/acl/mixed",
            Some(b"mixed".to_vec()),
            vec![digest_acl(1 | 2 | 16), ip_acl(1 | 4), world(1)],
            PERSISTENT,
        ),
    ];
    // A quota on /imp/q, as zkCli's `setquota -n` writes it.
    reqs.push(open_create("/zookeeper/quota/imp", b"", PERSISTENT));
    reqs.push(open_create("/zookeeper/quota/imp/q", b"", PERSISTENT));
    reqs.push(open_create(
        "/zookeeper/quota/imp/q/zookeeper_limits",
        b"count=1000000,bytes=-1",
        PERSISTENT,
    ));
    reqs.push(open_create(
        "/zookeeper/quota/imp/q/zookeeper_stats",
        b"count=0,bytes=0",
        PERSISTENT,
    ));
    p.all_ok(reqs, 100);
    for (name, len) in [("b1", MIB), ("b2", MIB / 2), ("b3", MIB - 1)] {
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        p.all_ok(
            vec![open_create(&format!("/imp/big/{name}"), &data, PERSISTENT)],
            1,
        );
    }

    // Containers (one never had a child, so it is never purged) and TTL nodes.
    let mut reqs = vec![
        Request::CreateContainer(CreateRequest {
            path: "/imp/cont".into(),
            data: Some(b"container".to_vec()),
            acl: vec![world(31)],
            flags: CONTAINER,
        }),
        Request::CreateContainer(CreateRequest {
            path: "/imp/cont-empty".into(),
            data: None,
            acl: vec![world(31)],
            flags: CONTAINER,
        }),
        open_create("/imp/cont/child", b"keeps it", PERSISTENT),
    ];
    for i in 0..10 {
        reqs.push(Request::CreateTtl(CreateTtlRequest {
            path: format!("/imp/ttl/t{i}"),
            data: Some(format!("ttl {i}").into_bytes()),
            acl: vec![world(31)],
            flags: PERSISTENT_WITH_TTL,
            ttl: 3_600_000 + i,
        }));
    }
    reqs.push(Request::CreateTtl(CreateTtlRequest {
        path: "/imp/ttl/s-".into(),
        data: None,
        acl: vec![world(31)],
        flags: PERSISTENT_SEQUENTIAL_WITH_TTL,
        ttl: 7_200_000,
    }));
    p.all_ok(reqs, 100);

    // Sequential children, a third deleted: the creation counter and numChildren part.
    let reqs = (0..150)
        .map(|i| {
            open_create(
                "/imp/seq/s",
                format!("{i}").as_bytes(),
                PERSISTENT_SEQUENTIAL,
            )
        })
        .collect();
    p.all_ok(reqs, 150);
    let reqs = (0..150)
        .step_by(3)
        .map(|i| {
            Request::Delete(DeleteRequest {
                path: format!("/imp/seq/s{i:010}"),
                version: -1,
            })
        })
        .collect();
    p.all_ok(reqs, 150);

    // The bulk: persistent nodes in directories of 500, a tenth under the quota.
    // A 40th of them is deleted again below.
    let bulk = n + n / 39;
    let mut reqs = Vec::new();
    for d in 0..bulk.div_ceil(500) {
        reqs.push(open_create(&format!("/imp/p/d{d}"), b"dir", PERSISTENT));
    }
    p.all_ok(reqs, 500);
    let mut reqs = Vec::new();
    for i in 0..bulk {
        let data = vec![b'a' + (i % 26) as u8; i % 97];
        let path = if i % 10 == 0 {
            format!("/imp/q/n{i}")
        } else {
            format!("/imp/p/d{}/n{i}", i / 500)
        };
        reqs.push(open_create(&path, &data, PERSISTENT));
    }
    p.all_ok(reqs, 500);

    // Changes after creation: setData twice on some, setACL, deletes, multis.
    let mut reqs = Vec::new();
    for i in (1..bulk).step_by(7).filter(|i| i % 10 != 0) {
        let path = format!("/imp/p/d{}/n{i}", i / 500);
        reqs.push(Request::SetData(SetDataRequest {
            path: path.clone(),
            data: Some(format!("changed {i}").into_bytes()),
            version: -1,
        }));
        reqs.push(Request::SetData(SetDataRequest {
            path,
            data: None,
            version: 1,
        }));
    }
    for i in (3..bulk).step_by(11).filter(|i| i % 10 != 0 && i % 7 != 1) {
        reqs.push(Request::SetAcl(SetAclRequest {
            path: format!("/imp/p/d{}/n{i}", i / 500),
            acl: vec![world(1), digest_acl(31)],
            version: -1,
        }));
    }
    for i in (20..bulk).step_by(40) {
        reqs.push(Request::Delete(DeleteRequest {
            path: format!("/imp/q/n{i}"),
            version: -1,
        }));
    }
    p.all_ok(reqs, 500);
    let ok_multi = Request::Multi(vec![
        open_create("/imp/multi", b"from a multi", PERSISTENT),
        open_create("/imp/multi/s", b"", PERSISTENT_SEQUENTIAL),
        Request::SetData(SetDataRequest {
            path: "/imp".into(),
            data: Some(b"set in a multi".to_vec()),
            version: -1,
        }),
        Request::Check(CheckVersionRequest {
            path: "/imp/empty".into(),
            version: 0,
        }),
        Request::Delete(DeleteRequest {
            path: "/imp/seq/s0000000001".into(),
            version: -1,
        }),
    ]);
    let failed_multi = Request::Multi(vec![
        open_create("/imp/never", b"", PERSISTENT),
        Request::Check(CheckVersionRequest {
            path: "/imp/empty".into(),
            version: 42,
        }),
    ]);
    // A multi answers Ok in its header either way; the failed one carries its errors inside.
    p.all_ok(vec![ok_multi, failed_multi], 2);

    // Sessions that come and go (closeSession in the log deletes their ephemerals).
    for i in 0..5 {
        let (mut s, _, _) = Pipe::session(&addr, SESSION_TIMEOUT_MS);
        s.all_ok(
            vec![open_create(&format!("/imp/eph/gone{i}"), b"", EPHEMERAL)],
            1,
        );
        s.conn
            .close_session()
            .unwrap_or_else(|e| panic!("closeSession: {e}"));
    }
    // 20 live sessions, each with a plain and a sequential ephemeral.
    let mut sessions = Vec::new();
    let mut conns = Vec::new();
    for i in 0..SESSIONS {
        let (mut s, id, passwd) = Pipe::session(&addr, SESSION_TIMEOUT_MS);
        s.all_ok(
            vec![
                open_create(
                    &format!("/imp/eph/s{i}"),
                    format!("{id:#x}").as_bytes(),
                    EPHEMERAL,
                ),
                open_create("/imp/eph/seq-", b"", EPHEMERAL_SEQUENTIAL),
                open_create("/imp/q/eph-", b"e", EPHEMERAL_SEQUENTIAL),
            ],
            3,
        );
        sessions.push((id, passwd));
        conns.push(s.conn);
    }
    let pinger = Pinger::start(conns);
    let filled = started.elapsed();

    let t = Instant::now();
    let mut reader = Pipe::authed(&addr);
    let answers = record(&mut reader);
    let last_zxid = reader.last_zxid.max(p.last_zxid);
    eprintln!(
        "ZooKeeper: {} znodes filled in {:.1}s, recorded in {:.1}s, last zxid {last_zxid:#x}",
        answers.len(),
        filled.as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
    assert!(
        answers.len() >= n,
        "ZooKeeper holds {} znodes, fewer than the {n} asked for",
        answers.len()
    );

    // SIGKILL: the sessions stay in ZooKeeper's files as after a crash.
    zk.kill9().unwrap_or_else(|e| panic!("{e}"));
    drop(pinger.stop());
    let data = keep.join("zk-data");
    copy_dir(&zk.data_dir(), &data);
    let files: Vec<String> = std::fs::read_dir(data.join("version-2"))
        .expect("ZooKeeper's version-2")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    let snapshots = files.iter().filter(|f| f.starts_with("snapshot.")).count();
    let logs = files.iter().filter(|f| f.starts_with("log.")).count();
    eprintln!("ZooKeeper left {snapshots} snapshots and {logs} logs");
    assert!(
        snapshots >= 3 && logs >= 3,
        "expected several snapshots and logs, got {files:?}"
    );
    Some(ZkState {
        answers,
        sessions,
        last_zxid,
        data,
        snapshots,
        logs,
    })
}

/// Checks a corral keeper against everything ZooKeeper answered.
fn verify(label: &str, corral: &CorralServer, zk: &ZkState) {
    let addr = corral.addr();
    // Sessions first: reconnecting with id and password (and ZooKeeper's last zxid as the
    // last one seen) keeps each of them; a wrong password does not.
    let mut conns = Vec::new();
    for (id, passwd) in &zk.sessions {
        let mut c = RawConn::connect(&addr).unwrap_or_else(|e| panic!("connect: {e}"));
        let resp = c
            .handshake(&ConnectRequest {
                last_zxid_seen: zk.last_zxid,
                timeout: SESSION_TIMEOUT_MS,
                session_id: *id,
                passwd: passwd.clone(),
                read_only: Some(false),
                ..Default::default()
            })
            .unwrap_or_else(|e| panic!("{label}: reconnect {id:#x}: {e}"));
        assert_eq!(
            (resp.session_id, resp.timeout > 0),
            (*id, true),
            "{label}: session {id:#x} was not kept: {resp:?}"
        );
        conns.push(c);
    }
    let pinger = Pinger::start(conns);
    {
        let (id, passwd) = &zk.sessions[0];
        let mut wrong = passwd.clone();
        wrong[0] ^= 0xff;
        let mut c = RawConn::connect(&addr).unwrap_or_else(|e| panic!("connect: {e}"));
        let resp = c
            .handshake(&ConnectRequest {
                timeout: SESSION_TIMEOUT_MS,
                session_id: *id,
                passwd: wrong,
                read_only: Some(false),
                ..Default::default()
            })
            .unwrap_or_else(|e| panic!("{label}: reconnect with a wrong password: {e}"));
        assert_eq!(
            resp.timeout, 0,
            "{label}: a wrong password must not resume {id:#x}: {resp:?}"
        );
    }

    let t = Instant::now();
    let mut reader = Pipe::authed(&addr);
    let got = record(&mut reader);
    let mut diffs = Vec::new();
    for (path, want) in &zk.answers {
        match got.get(path) {
            None => diffs.push(format!("{path}: missing")),
            Some(a) if a != want => diffs.push(format!(
                "{path}: differs\n  zookeeper: {want:?}\n  corral:    {a:?}"
            )),
            Some(_) => {}
        }
    }
    for path in got.keys().filter(|p| !zk.answers.contains_key(*p)) {
        diffs.push(format!("{path}: not in ZooKeeper"));
    }
    eprintln!(
        "{label}: compared {} znodes ({} reads) in {:.1}s: {} differences",
        zk.answers.len(),
        zk.answers.len() * 4,
        t.elapsed().as_secs_f64(),
        diffs.len()
    );
    let shown: Vec<&String> = diffs.iter().take(20).collect();
    assert!(
        diffs.is_empty(),
        "{label}: {} differences: {shown:#?}",
        diffs.len()
    );

    // The next sequential child gets ZooKeeper's next suffix: its creation counter, i.e.
    // (reported cversion + numChildren) / 2.
    let stat = &zk.answers["/imp/seq"].exists.1;
    let mut r = Reader::new(stat);
    let stat = corral_proto::Stat::read(&mut r).expect("a stat");
    let counter = (stat.cversion + stat.num_children) / 2;
    let replies = reader.batch(&[open_create("/imp/seq/s", b"after", PERSISTENT_SEQUENTIAL)]);
    let mut r = Reader::new(&replies[0].1);
    assert_eq!(replies[0].0, 0, "{label}: sequential create failed");
    assert_eq!(
        r.string().expect("a path"),
        format!("/imp/seq/s{counter:010}"),
        "{label}: sequential suffix"
    );
    assert!(
        reader.last_zxid > zk.last_zxid,
        "{label}: a write after the import got zxid {:#x}, not after ZooKeeper's {:#x}",
        reader.last_zxid,
        zk.last_zxid
    );
    drop(pinger.stop());
}

/// `corral import-zk --from <from> --to <to>`: success and stdout, or failure and stderr.
fn import_zk(from: &Path, to: &Path) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_corral"))
        .arg("import-zk")
        .arg("--from")
        .arg(from)
        .arg("--to")
        .arg(to)
        .output()
        .expect("run corral import-zk");
    let text = if out.status.success() {
        &out.stdout
    } else {
        &out.stderr
    };
    (
        out.status.success(),
        String::from_utf8_lossy(text).into_owned(),
    )
}

fn v2(d: &Path) -> PathBuf {
    d.join("version-2")
}

/// The file of `d`'s version-2 named `prefix<hex zxid>` with the highest zxid.
fn newest(d: &Path, prefix: &str) -> PathBuf {
    std::fs::read_dir(v2(d))
        .expect("version-2")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        })
        .max_by_key(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            i64::from_str_radix(name.rsplit('.').next().unwrap_or_default(), 16).unwrap_or(0)
        })
        .expect("a file")
}

/// A damaged or unsupported ZooKeeper file stops the import naming the file (and the
/// offset), and no corral data is left behind.
fn damaged_files_are_refused(zk: &ZkState, work: &Path) {
    type Damage = Box<dyn Fn(&Path) -> (PathBuf, &'static str)>;
    let cases: Vec<(&str, Damage)> = vec![
        (
            "a flipped byte in the newest log's first record",
            Box::new(|d: &Path| {
                let f = newest(d, "log.");
                let mut b = std::fs::read(&f).expect("log");
                // File header (16 bytes), checksum and length (12): the record's body.
                b[16 + 12 + 3] ^= 0x40;
                std::fs::write(&f, b).expect("write log");
                (f, "byte offset 16")
            }),
        ),
        (
            "a flipped byte in the newest snapshot",
            Box::new(|d: &Path| {
                let f = newest(d, "snapshot.");
                let mut b = std::fs::read(&f).expect("snapshot");
                let at = b.len() / 2;
                b[at] ^= 0x01;
                std::fs::write(&f, b).expect("write snapshot");
                (f, "byte offset")
            }),
        ),
        (
            "a damaged gzip-compressed snapshot",
            Box::new(|d: &Path| {
                let f = v2(d).join("snapshot.7fffffffffff.gz");
                let mut b = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
                // Deflate block type 3 does not exist.
                b.extend_from_slice(&[0xff; 20]);
                std::fs::write(&f, b).expect("write");
                (f, "gzip data: ")
            }),
        ),
    ];
    for (what, damage) in cases {
        let from = work.join("damaged");
        let _ = std::fs::remove_dir_all(&from);
        copy_dir(&zk.data, &from);
        let (file, says) = damage(&from);
        let to = work.join("damaged-import");
        let _ = std::fs::remove_dir_all(&to);
        let (ok, text) = import_zk(&from, &to);
        assert!(!ok, "{what}: the import must fail");
        assert!(
            text.contains(&file.display().to_string()) && text.contains(says),
            "{what}: the error must name {} and say {says:?}: {text}",
            file.display()
        );
        let leftovers: Vec<String> = std::fs::read_dir(to.join("snapshots"))
            .map(|rd| {
                rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            leftovers.is_empty(),
            "{what}: corral data left behind: {leftovers:?}"
        );
        eprintln!("{what}: refused: {}", text.trim());
    }
}

/// ZooKeeper writing gzip- or snappy-compressed snapshots
/// (`zookeeper.snapshot.compression.method`): imported all the same.
#[test]
fn compressed_snapshots_are_imported() {
    for method in ["gz", "snappy"] {
        let work = fresh_temp_dir("zk-import-compressed").expect("temp dir");
        let prop = format!("-Dzookeeper.snapshot.compression.method={method}");
        let Some(zk) = fill_zookeeper(800, &work, &[&prop]) else {
            return;
        };
        let suffix = format!(".{method}");
        let compressed = std::fs::read_dir(zk.data.join("version-2"))
            .expect("version-2")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("snapshot.") && n.ends_with(&suffix))
            .count();
        assert!(
            compressed >= 3,
            "{method}: ZooKeeper wrote {compressed} {method} snapshots"
        );
        let dir = fresh_temp_dir("corral-imported").expect("temp dir");
        let (ok, text) = import_zk(&zk.data, &dir.join("data"));
        assert!(ok, "{method}: import-zk failed: {text}");
        assert!(text.contains(&suffix), "{method}: {text}");
        eprintln!("{method}: {}", text.trim());
        let corral = CorralServer::start_in(dir, &corral_cfg());
        verify(method, &corral, &zk);
        drop(corral);
        if std::env::var_os("CORRAL_KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&work);
        }
    }
}

fn corral_cfg() -> String {
    format!("extendedTypesEnabled=true\njute.maxbuffer={MAX_BUFFER}\nmaxSessionTimeout=60000")
}

#[test]
fn a_real_zookeepers_data_dir_is_imported_with_its_sessions() {
    let n = znode_count();
    let work = fresh_temp_dir("zk-import").expect("temp dir");
    let Some(zk) = fill_zookeeper(n, &work, &[]) else {
        return;
    };
    let zk_files = fingerprint(&zk.data);
    damaged_files_are_refused(&zk, &work);

    // 1. `corral import-zk` into an empty directory, then `corral serve` on it.
    let dir = fresh_temp_dir("corral-imported").expect("temp dir");
    let to = dir.join("data");
    let t = Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_corral"))
        .arg("import-zk")
        .arg("--from")
        .arg(&zk.data)
        .arg("--to")
        .arg(&to)
        .output()
        .expect("run corral import-zk");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "corral import-zk failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "import-zk ({:.1}s): {}",
        t.elapsed().as_secs_f64(),
        stdout.trim()
    );
    assert!(
        stdout.contains(&format!("{} znodes", zk.answers.len()))
            // The 20, and the sessions of the connections that filled and read ZooKeeper.
            && stdout.contains(&format!("{} sessions", SESSIONS + 2))
            && stdout.contains(&format!("zxid {:#x}", zk.last_zxid)),
        "import-zk summary: {stdout}"
    );
    // A second import into the same place is refused.
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["import-zk", "--from"])
        .arg(&zk.data)
        .arg("--to")
        .arg(&to)
        .output()
        .expect("run corral import-zk");
    assert!(
        !again.status.success()
            && String::from_utf8_lossy(&again.stderr).contains("already holds corral data"),
        "a second import must be refused: {again:?}"
    );
    let t = Instant::now();
    let corral = CorralServer::start_in(dir, &corral_cfg());
    eprintln!(
        "corral on the imported data served after {:.1}s",
        t.elapsed().as_secs_f64()
    );
    verify("import-zk", &corral, &zk);
    drop(corral);

    // 2. `corral serve` on (a copy of) ZooKeeper's own dataDir imports it by itself.
    let dir = fresh_temp_dir("corral-in-place").expect("temp dir");
    copy_dir(&zk.data, &dir.join("data"));
    let t = Instant::now();
    let corral = CorralServer::start_in(dir.clone(), &corral_cfg());
    eprintln!(
        "corral serve imported and served after {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let log = corral.stderr_text();
    assert!(
        log.contains("imported ZooKeeper's data")
            && log.contains(&format!("znodes={}", zk.answers.len()))
            && log.contains(&format!("sessions={}", SESSIONS + 2))
            && log.contains(&format!("last_zxid=0x{:x}", zk.last_zxid)),
        "the start-up log must say what was imported:\n{log}"
    );
    verify("serve", &corral, &zk);
    let in_place = fingerprint(&dir.join("data").join("version-2"));
    drop(corral);
    let copied: BTreeMap<PathBuf, (u64, u64)> = fingerprint(&zk.data.join("version-2"))
        .into_iter()
        .map(|(p, v)| {
            (
                p.strip_prefix(&zk.data).map(Path::to_path_buf).unwrap_or(p),
                v,
            )
        })
        .collect();
    let in_place: BTreeMap<PathBuf, (u64, u64)> = in_place
        .into_iter()
        .map(|(p, v)| {
            (
                p.strip_prefix(dir.join("data"))
                    .map(Path::to_path_buf)
                    .unwrap_or(p),
                v,
            )
        })
        .collect();
    assert_eq!(copied, in_place, "corral serve changed ZooKeeper's files");
    assert_eq!(
        zk_files,
        fingerprint(&zk.data),
        "import-zk changed ZooKeeper's files"
    );
    eprintln!(
        "figures: {} znodes, {} sessions, {} snapshots and {} logs from ZooKeeper",
        zk.answers.len(),
        zk.sessions.len(),
        zk.snapshots,
        zk.logs
    );
    if std::env::var_os("CORRAL_KEEP_TEST_DIRS").is_none() {
        let _ = std::fs::remove_dir_all(&work);
    }
    let _ = std::io::stderr().flush();
}

/// A client process whose stdout lines (READY, STATE, EVENT) go to a file.
struct ClientProcess {
    name: String,
    child: std::process::Child,
    out: PathBuf,
}

impl ClientProcess {
    fn spawn(name: &str, mut cmd: std::process::Command, dir: &Path) -> ClientProcess {
        let out = dir.join(format!("{name}.out"));
        let err = dir.join(format!("{name}.err"));
        cmd.stdout(std::fs::File::create(&out).expect("client stdout file"))
            .stderr(std::fs::File::create(&err).expect("client stderr file"))
            .stdin(std::process::Stdio::null());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn the {name} client: {e}"));
        ClientProcess {
            name: name.to_string(),
            child,
            out,
        }
    }

    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Waits up to `within` for a line after the first `skip` that `pred` accepts; the line.
    fn wait_line(&mut self, skip: usize, within: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(l) = self.lines().into_iter().skip(skip).find(|l| pred(l)) {
                return l;
            }
            if Instant::now() > deadline || matches!(self.child.try_wait(), Ok(Some(_))) {
                let err =
                    std::fs::read_to_string(self.out.with_extension("err")).unwrap_or_default();
                let tail: Vec<&str> = err.lines().rev().take(30).collect();
                panic!(
                    "the {} client did not print the line awaited within {within:?}; stdout:\n{}\nstderr (last lines, newest first):\n{}",
                    self.name,
                    self.lines().join("\n"),
                    tail.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ClientProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Why kazoo or the Java compiler cannot be used here, if they cannot.
fn clients_unavailable() -> Option<String> {
    let python_ok = std::process::Command::new("/usr/bin/python3")
        .args(["-c", "import kazoo"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !python_ok {
        return Some(
            "/usr/bin/python3 with kazoo not found (apt-get install python3-kazoo)".into(),
        );
    }
    let javac_ok = std::process::Command::new("javac")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !javac_ok {
        return Some("javac not found".into());
    }
    None
}

/// Item 2 of issue 10's "Done when": kazoo and Java clients with ephemerals and watches on
/// ZooKeeper 3.8; ZooKeeper stopped, corral started on the same dataDir and port; every
/// client reconnects to its session, no ephemeral is lost, the watches fire for a change
/// made after the switch, and no client sees its session expire.
#[test]
fn clients_keep_sessions_ephemerals_and_watches_across_an_in_place_switch() {
    if let Some(why) = RealZk::unavailable().or_else(clients_unavailable) {
        if std::env::var_os("CI").is_some() {
            panic!("real ZooKeeper, kazoo and javac are required when CI is set: {why}");
        }
        eprintln!("SKIP: {why}");
        return;
    }
    let work = fresh_temp_dir("zk-migration").expect("temp dir");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/migration_clients");
    let javac = std::process::Command::new("javac")
        .arg("-cp")
        .arg("/usr/share/java/zookeeper.jar:/usr/share/java/zookeeper-jute.jar")
        .arg("-d")
        .arg(&work)
        .arg(src.join("MigrationClient.java"))
        .output()
        .expect("run javac");
    assert!(
        javac.status.success(),
        "javac: {}",
        String::from_utf8_lossy(&javac.stderr)
    );

    let mut zk = RealZk::try_start_with_jvm("extendedTypesEnabled=true", &[])
        .unwrap_or_else(|e| panic!("cannot start real ZooKeeper: {e}"));
    let addr = zk.addr();
    let mut setup = Pipe::authed(&addr);
    setup.all_ok(
        vec![
            open_create("/mig", b"", PERSISTENT),
            open_create("/mig/watched", b"before", PERSISTENT),
        ],
        2,
    );
    drop(setup);

    let mut clients = Vec::new();
    for i in 0..2 {
        let mut cmd = std::process::Command::new("/usr/bin/python3");
        cmd.arg(src.join("migration_client.py"))
            .arg(&addr)
            .arg(format!("kazoo{i}"));
        clients.push(ClientProcess::spawn(&format!("kazoo{i}"), cmd, &work));
        let mut cmd = std::process::Command::new("java");
        cmd.arg("-cp")
            .arg(format!(
                "{}:/usr/share/java/zookeeper.jar:/usr/share/java/zookeeper-jute.jar:/usr/share/java/slf4j-api.jar:/usr/share/java/slf4j-nop.jar",
                work.display()
            ))
            .arg("MigrationClient")
            .arg(&addr)
            .arg(format!("java{i}"));
        clients.push(ClientProcess::spawn(&format!("java{i}"), cmd, &work));
    }
    let mut sessions = Vec::new();
    for c in clients.iter_mut() {
        let ready = c.wait_line(0, Duration::from_secs(30), |l| l.starts_with("READY "));
        sessions.push(ready.trim_start_matches("READY ").to_string());
    }
    eprintln!("on ZooKeeper: sessions {sessions:?}");

    // The switch: ZooKeeper stopped (SIGTERM), corral on its dir, dataDir and port.
    let status = zk
        .terminate(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("ZooKeeper stopped: {status}");
    let t = Instant::now();
    let corral = CorralServer::try_start_on(zk.dir.clone(), zk.port, &corral_cfg())
        .unwrap_or_else(|e| panic!("cannot start corral in ZooKeeper's place: {e}"));
    eprintln!(
        "corral serving in ZooKeeper's place after {:.1}s",
        t.elapsed().as_secs_f64()
    );
    assert!(
        corral.stderr_text().contains("imported ZooKeeper's data"),
        "corral must import ZooKeeper's data:\n{}",
        corral.stderr_text()
    );

    // Every client is back on its own session.
    for (c, session) in clients.iter_mut().zip(&sessions) {
        let want = if c.name.starts_with("kazoo") {
            format!("STATE CONNECTED {session}")
        } else {
            format!("STATE SyncConnected {session}")
        };
        // The first CONNECTED/SyncConnected was on ZooKeeper: wait for the second.
        let deadline = Instant::now() + Duration::from_secs(30);
        while c.lines().iter().filter(|l| **l == want).count() < 2 {
            assert!(
                Instant::now() < deadline,
                "{} did not reconnect to {session}: {:#?}",
                c.name,
                c.lines()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    // No ephemeral lost.
    let mut reader = Pipe::authed(&corral.addr());
    let replies = reader.batch(&[Request::GetChildren(GetDataRequest {
        path: "/mig".into(),
        watch: false,
    })]);
    let mut r = Reader::new(&replies[0].1);
    let mut children = r.vec::<String>().expect("children");
    children.sort();
    assert_eq!(
        children,
        vec!["java0", "java1", "kazoo0", "kazoo1", "watched"],
        "ephemerals after the switch"
    );

    // A change after the switch fires every client's watches (events from before the
    // switch, such as the other clients' ephemerals appearing, do not count).
    let seen: Vec<usize> = clients.iter().map(|c| c.lines().len()).collect();
    reader.all_ok(
        vec![
            Request::SetData(SetDataRequest {
                path: "/mig/watched".into(),
                data: Some(b"after".to_vec()),
                version: -1,
            }),
            open_create("/mig/new", b"", PERSISTENT),
        ],
        2,
    );
    for (c, skip) in clients.iter_mut().zip(seen) {
        for want in ["/mig/watched", "/mig"] {
            let line = c.wait_line(skip, Duration::from_secs(20), |l| {
                l.starts_with("EVENT ") && l.ends_with(&format!(" {want}"))
            });
            eprintln!("{}: {line}", c.name);
        }
    }
    for c in &clients {
        let lines = c.lines();
        assert!(
            !lines
                .iter()
                .any(|l| l.contains("LOST") || l.contains("Expired") || l.contains("ERROR")),
            "{} saw its session end: {lines:#?}",
            c.name
        );
    }
    drop(clients);
    drop(corral);
    drop(zk);
    if std::env::var_os("CORRAL_KEEP_TEST_DIRS").is_none() {
        let _ = std::fs::remove_dir_all(&work);
    }
}
