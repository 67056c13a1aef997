//! Differential test of quotas: the same writes, run against real ZooKeeper 3.8 and against
//! corral, must leave the same `/zookeeper/quota` subtree (every node's data and Stat, zxids
//! replaced by labels in order of appearance and times left out) and answer the same error
//! codes. Quotas are set the way zkCli 3.8's `setquota` does it: ordinary creates of the
//! `/zookeeper/quota/<path>` nodes, the `zookeeper_limits` node, then `zookeeper_stats`.
//!
//! `soft_limits_*` runs with ZooKeeper's defaults; `hard_limits_*` with `enforceQuota=true`
//! (ZooKeeper turns that zoo.cfg key into the system property `zookeeper.enforceQuota`).
//! `quota_stats_survive_a_restart` restarts corral and checks the stats are neither lost nor
//! counted again.
//!
//! Needs ZooKeeper (Debian package `zookeeper`); without it the tests print SKIP, unless the
//! env var CI is set, in which case they fail.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{CorralServer, RealZk};
use corral_client::{ConnectOptions, Connection};
use corral_proto::{
    open_acl_unsafe, CreateMode, CreateRequest, CreateTtlRequest, DeleteRequest, ErrorCode,
    GetDataRequest, MultiResult, Request, Response, SetDataRequest, Stat,
};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// TTL nodes are among the kinds counted; the key enables them on both servers.
const SOFT_CFG: &str = "extendedTypesEnabled=true";
const HARD_CFG: &str = "extendedTypesEnabled=true\nenforceQuota=true";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_limits_match_real_zookeeper() {
    let Some(zk) = RealZk::start(SOFT_CFG) else {
        return;
    };
    let expected = run(&zk.addr(), soft_script()).await;
    drop(zk);
    let corral = CorralServer::start(SOFT_CFG);
    let actual = run(&corral.addr(), soft_script()).await;
    assert_same("zookeeper", &expected, "corral", &actual);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hard_limits_match_real_zookeeper() {
    let Some(zk) = RealZk::start(HARD_CFG) else {
        return;
    };
    let expected = run(&zk.addr(), hard_script()).await;
    drop(zk);
    let corral = CorralServer::start(HARD_CFG);
    let actual = run(&corral.addr(), hard_script()).await;
    assert_same("zookeeper", &expected, "corral", &actual);
    // The refusals are the point of this script: make sure it saw some.
    let refusals = actual
        .iter()
        .filter(|l| l.contains("QuotaExceeded"))
        .count();
    assert!(
        refusals >= 5,
        "only {refusals} QuotaExceeded lines:\n{}",
        actual.join("\n")
    );
    // The keeper logs what ZooKeeper logs, in its words; a warning that repeats (only its
    // figures changing) is logged once per interval.
    let log = corral.stderr_text();
    for (start, end) in [
        ("Quota exceeded: /h [current count=5", ", hardCountLimit=4]"),
        ("Quota exceeded: /s [current count=", ", softCountLimit=1]"),
        ("Quota exceeded: /s [current bytes=", ", softByteLimit=2]"),
    ] {
        assert!(
            log.lines().any(|l| l.contains(start) && l.contains(end)),
            "no {start:?}...{end:?} in the log:\n{log}"
        );
    }
    let repeats = log
        .lines()
        .filter(|l| l.contains("Quota exceeded: /s [current bytes="))
        .count();
    assert_eq!(repeats, 1, "repeated quota warnings are throttled:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_stats_survive_a_restart() {
    // Snapshots every few writes, so the restart restores one and replays the log after it.
    let mut corral = CorralServer::start(&format!("{SOFT_CFG}\nsnapCount=10"));
    let addr = corral.addr();
    let _ = run(&addr, soft_script()).await;
    let before = dump_only(&addr).await;
    let snapshots = std::fs::read_dir(corral.data_dir().join("snapshots"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert!(snapshots > 0, "no snapshot taken");
    assert!(
        before.iter().any(|l| l.contains("zookeeper_stats")),
        "no stats node to compare:\n{}",
        before.join("\n")
    );
    corral
        .terminate(Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("stop corral: {e}"));
    corral
        .restart()
        .unwrap_or_else(|e| panic!("restart corral: {e}"));
    let after = dump_only(&addr).await;
    assert_same("before restart", &before, "after restart", &after);
    // One more node under /qd/n after the restart counts once.
    let c = connect(&addr).await;
    let (_, stat_before) = c
        .get_data("/zookeeper/quota/qd/n/zookeeper_stats", false)
        .await
        .unwrap_or_else(|e| panic!("getData: {e}"));
    c.create(
        "/qd/n/after",
        b"1234",
        &open_acl_unsafe(),
        CreateMode::Persistent,
    )
    .await
    .unwrap_or_else(|e| panic!("create: {e}"));
    let (data, stat_after) = c
        .get_data("/zookeeper/quota/qd/n/zookeeper_stats", false)
        .await
        .unwrap_or_else(|e| panic!("getData: {e}"));
    let old = before
        .iter()
        .find(|l| l.contains("/zookeeper/quota/qd/n/zookeeper_stats "))
        .cloned()
        .unwrap_or_default();
    let (count, bytes) = parse_stats(&old);
    assert_eq!(
        String::from_utf8_lossy(&data),
        format!("count={},bytes={}", count + 1, bytes + 4),
        "before: {old}"
    );
    assert_eq!(stat_after.mzxid, stat_before.mzxid);
    assert_eq!(stat_after.version, stat_before.version);
}

/// (count, bytes) out of a dump line of a stats node.
fn parse_stats(line: &str) -> (i64, i64) {
    let field = |key: &str| -> i64 {
        line.split(['"', ',', '='])
            .skip_while(|k| *k != key)
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1000)
    };
    (field("count"), field("bytes"))
}

// ---------------------------------------------------------------------------------------------
// Scripts.

enum Step {
    /// A write on session 1 (or 2).
    W(usize, Request),
    /// Session 2 closes (its ephemerals go).
    CloseSession2,
}

fn create(path: &str, data: Option<&str>) -> Request {
    create_mode(path, data, CreateMode::Persistent)
}

fn create_mode(path: &str, data: Option<&str>, mode: CreateMode) -> Request {
    Request::Create(CreateRequest {
        path: path.into(),
        data: data.map(|d| d.as_bytes().to_vec()),
        acl: open_acl_unsafe(),
        flags: mode.code(),
    })
}

fn create2(path: &str, data: Option<&str>) -> Request {
    Request::Create2(CreateRequest {
        path: path.into(),
        data: data.map(|d| d.as_bytes().to_vec()),
        acl: open_acl_unsafe(),
        flags: CreateMode::Persistent.code(),
    })
}

fn set(path: &str, data: Option<&str>, version: i32) -> Request {
    Request::SetData(SetDataRequest {
        path: path.into(),
        data: data.map(|d| d.as_bytes().to_vec()),
        version,
    })
}

fn delete(path: &str) -> Request {
    Request::Delete(DeleteRequest {
        path: path.into(),
        version: -1,
    })
}

/// The limits zkCli 3.8's `setquota` writes: every field present, -1 for those not given.
fn limits(count: i64, bytes: i64, count_hard: i64, bytes_hard: i64) -> String {
    format!("count={count},bytes={bytes}=;byteHardLimit={bytes_hard};countHardLimit={count_hard}")
}

/// zkCli's setquota for `path` (which must be one level below an existing quota parent
/// chain): the /zookeeper/quota nodes, the limits, then the stats node.
fn setquota(steps: &mut Vec<Step>, path: &str, limits: &str) {
    let mut q = String::from("/zookeeper/quota");
    for part in path.split('/').filter(|p| !p.is_empty()) {
        q.push('/');
        q.push_str(part);
        steps.push(Step::W(1, create(&q, None)));
    }
    steps.push(Step::W(
        1,
        create(&format!("{q}/zookeeper_limits"), Some(limits)),
    ));
    steps.push(Step::W(
        1,
        create(&format!("{q}/zookeeper_stats"), Some("count=0,bytes=0")),
    ));
}

fn soft_script() -> Vec<Step> {
    use Step::W;
    let mut s = vec![
        W(1, create("/qd", Some("root"))),
        W(1, create("/qd/a", Some("12345"))),
        W(1, create("/qd/a/b", Some("xy"))),
        W(1, create("/qd/a/nul", None)),
    ];
    // A quota on an existing subtree: the stats node gets its count at creation.
    setquota(&mut s, "/qd/a", &limits(4, 20, -1, -1));
    s.extend([
        W(1, create("/qd/a/c", Some("abc"))),
        W(1, create2("/qd/a/c2", Some("abcd"))),
        W(
            1,
            create_mode("/qd/a/seq-", Some("s"), CreateMode::PersistentSequential),
        ),
        W(
            2,
            create_mode("/qd/a/eph", Some("ephem"), CreateMode::Ephemeral),
        ),
        W(
            1,
            create_mode("/qd/a/cont", Some("cc"), CreateMode::Container),
        ),
        W(
            1,
            Request::CreateTtl(CreateTtlRequest {
                path: "/qd/a/ttl".into(),
                data: Some(b"tt".to_vec()),
                acl: open_acl_unsafe(),
                flags: CreateMode::PersistentWithTtl.code(),
                ttl: 600_000,
            }),
        ),
        // Over the soft limits: nothing is refused.
        W(1, create("/qd/a/b/deep", Some("0123456789012345678901234"))),
        W(1, set("/qd/a/b", Some("longer data here"), -1)),
        W(1, set("/qd/a/b", Some("x"), -1)),
        W(1, set("/qd/a/b", None, -1)),
        W(1, set("/qd/a", Some(""), -1)),
        // Failed writes change nothing.
        W(1, set("/qd/a/b", Some("zzzzzz"), 7)),
        W(1, create("/qd/a/c", Some("again"))),
        W(1, delete("/qd/a/b")),
        W(1, delete("/qd/a/b/deep")),
        W(1, delete("/qd/a/nul")),
        // A multi counts each of its ops; a failed multi counts nothing.
        W(
            1,
            Request::Multi(vec![
                create("/qd/a/m1", Some("m1")),
                set("/qd/a/c", Some("abcdef"), -1),
                delete("/qd/a/c2"),
                create("/qd/a/m2", None),
            ]),
        ),
        W(
            1,
            Request::Multi(vec![
                create("/qd/a/m3", Some("m3")),
                set("/qd/a/c", Some("q"), -1),
                delete("/qd/a/missing"),
            ]),
        ),
        // Outside the quota: no change.
        W(1, create("/qd/other", Some("other"))),
        W(1, set("/qd", Some("root2"), -1)),
        // The ephemeral's owner goes away.
        Step::CloseSession2,
        // The limits are data: a new limit does not recount.
        W(
            1,
            set(
                "/zookeeper/quota/qd/a/zookeeper_limits",
                Some(&limits(100, 1000, -1, -1)),
                -1,
            ),
        ),
        // A client may overwrite the stats node; later updates start from what it wrote, and
        // keys they do not know are kept.
        W(
            1,
            set(
                "/zookeeper/quota/qd/a/zookeeper_stats",
                Some("count=1,bytes=2=;zz=5;aa=-1"),
                -1,
            ),
        ),
        W(1, create("/qd/a/after", Some("after"))),
        W(
            1,
            set(
                "/zookeeper/quota/qd/a/zookeeper_stats",
                Some("count=10,bytes=20"),
                1,
            ),
        ),
        W(1, delete("/qd/a/after")),
    ]);
    // A nested quota (zkCli refuses it, raw creates do not): updates go to the deepest one.
    s.extend([
        W(1, create("/qd/a/b", Some("bb"))),
        W(1, create("/qd/a/b/x", Some("x"))),
        W(1, create("/zookeeper/quota/qd/a/b", None)),
        W(
            1,
            create(
                "/zookeeper/quota/qd/a/b/zookeeper_limits",
                Some(&limits(2, -1, -1, -1)),
            ),
        ),
        W(
            1,
            create(
                "/zookeeper/quota/qd/a/b/zookeeper_stats",
                Some("count=0,bytes=0"),
            ),
        ),
        W(1, create("/qd/a/b/y", Some("yyy"))),
        W(1, set("/qd/a/b/x", Some("xxxx"), -1)),
        W(1, create("/qd/a/d", Some("d"))),
        // Without its limits node the inner quota no longer counts; the outer one does.
        W(1, delete("/zookeeper/quota/qd/a/b/zookeeper_limits")),
        W(1, create("/qd/a/b/z", Some("zz"))),
        W(1, delete("/qd/a/b/y")),
        // A quota with no stats node: nothing is counted, nothing fails.
        W(1, delete("/zookeeper/quota/qd/a/zookeeper_stats")),
        W(1, create("/qd/a/e", Some("e"))),
        // A stats node made again is counted afresh.
        W(
            1,
            create(
                "/zookeeper/quota/qd/a/zookeeper_stats",
                Some("count=0,bytes=0"),
            ),
        ),
        // Limits made before the node exists: the node itself is counted when created.
        W(1, create("/zookeeper/quota/qd/n", None)),
        W(
            1,
            create2(
                "/zookeeper/quota/qd/n/zookeeper_limits",
                Some(&limits(-1, 5, -1, -1)),
            ),
        ),
        W(
            1,
            create2(
                "/zookeeper/quota/qd/n/zookeeper_stats",
                Some("count=0,bytes=0"),
            ),
        ),
        W(1, create("/qd/n", Some("nnn"))),
        W(1, create("/qd/n/k", Some("kkkkkkk"))),
        // Deleting the quota'd node itself.
        W(1, delete("/qd/n/k")),
        W(1, delete("/qd/n")),
        W(1, create("/qd/n", Some("again"))),
        // Limits and stats created in one multi, then used by later ops of the same multi.
        W(1, create("/qd/mm", Some("mm"))),
        W(
            1,
            Request::Multi(vec![
                create("/zookeeper/quota/qd/mm", None),
                create(
                    "/zookeeper/quota/qd/mm/zookeeper_limits",
                    Some(&limits(1, 1, -1, -1)),
                ),
                create(
                    "/zookeeper/quota/qd/mm/zookeeper_stats",
                    Some("count=0,bytes=0"),
                ),
                create("/qd/mm/one", Some("1")),
                set("/qd/mm", Some("mmmm"), -1),
            ]),
        ),
    ]);
    s
}

fn hard_script() -> Vec<Step> {
    use Step::W;
    let mut s = vec![
        W(1, create("/h", Some("0123456789"))),
        W(1, create("/h/a", Some("aa"))),
    ];
    // count: 2 now, hard limit 4; bytes: 12 now, hard limit 20.
    setquota(&mut s, "/h", &limits(-1, -1, 4, 20));
    s.extend([
        W(1, create("/h/b", Some("bb"))),
        W(1, create("/h/c", None)),
        // The fifth node is refused, whatever its data.
        W(1, create("/h/d", None)),
        W(
            1,
            create_mode("/h/seq-", Some("s"), CreateMode::PersistentSequential),
        ),
        // Errors found before the quota check win.
        W(1, create("/h/b", Some("bb"))),
        W(1, create("/nope/x", Some("bb"))),
        // The quota check comes before the version check of a setData.
        W(1, set("/h/a", Some("0123456789"), 99)),
        W(1, set("/h/a", Some("aaaaaa"), -1)),
        W(1, set("/h/a", Some("aaaaaaa"), -1)),
        W(1, set("/h/a", Some("a"), 99)),
        W(1, delete("/h/c")),
        // Exactly at the limits.
        W(1, create("/h/c", Some("ccc"))),
        W(1, set("/h/a", Some("aa"), -1)),
        // A multi is checked against the tree as it was before the multi: each create alone
        // fits, together they pass the limit (ZooKeeper's behaviour), and stats show it.
        W(1, delete("/h/c")),
        W(1, delete("/h/b")),
        W(
            1,
            Request::Multi(vec![create("/h/m1", Some("1")), create("/h/m2", Some("2"))]),
        ),
        W(
            1,
            Request::Multi(vec![
                create("/h/m3", Some("3")),
                set("/h/m1", Some("111"), -1),
            ]),
        ),
        W(
            1,
            Request::Multi(vec![
                delete("/h/m1"),
                delete("/h/m2"),
                create("/h/m3", None),
            ]),
        ),
        // Over the limit already (limits lowered): shrinking data is refused too while the
        // result is still over, deletes always pass.
        W(
            1,
            set(
                "/zookeeper/quota/h/zookeeper_limits",
                Some(&limits(-1, -1, 1, 3)),
                -1,
            ),
        ),
        W(1, set("/h", Some("012345678"), -1)),
        W(1, set("/h", Some("0123456789"), -1)),
        W(1, set("/h/a", Some("aa"), -1)),
        W(1, delete("/h/m1")),
        W(1, delete("/h/m2")),
        W(1, delete("/h/a")),
        W(1, set("/h", Some("0"), -1)),
        W(1, set("/h", Some(""), -1)),
        W(1, set("/h", None, -1)),
        // Soft limits only: exceeded, warned about, not refused.
        W(1, create("/s", None)),
    ]);
    setquota(&mut s, "/s", &limits(1, 2, -1, -1));
    s.extend([
        W(1, create("/s/x", Some("xxxx"))),
        W(1, set("/s/x", Some("xxxxxxxx"), -1)),
        // A hard count limit alone leaves bytes free, and the other way round.
        W(1, create("/hc", None)),
    ]);
    setquota(&mut s, "/hc", &limits(-1, -1, 2, -1));
    s.extend([
        W(
            1,
            create("/hc/x", Some("a long piece of data, not limited")),
        ),
        W(1, create("/hc/y", None)),
        W(1, create("/hb", None)),
    ]);
    setquota(&mut s, "/hb", &limits(-1, -1, -1, 4));
    s.extend([
        W(1, create("/hb/x", None)),
        W(1, create("/hb/y", None)),
        W(1, create("/hb/z", Some("12345"))),
        W(1, create("/hb/z", Some("1234"))),
        // Both kinds: the count limit is checked first.
        W(1, create("/hh", Some("1"))),
    ]);
    setquota(&mut s, "/hh", &limits(-1, -1, 1, 1));
    s.extend([
        W(1, create("/hh/x", Some("12"))),
        W(1, create("/hh/x", None)),
        // The limits node created in a multi does not yet guard the multi's later ops.
        W(1, create("/hm", None)),
        W(
            1,
            Request::Multi(vec![
                create("/zookeeper/quota/hm", None),
                create(
                    "/zookeeper/quota/hm/zookeeper_limits",
                    Some(&limits(-1, -1, 1, 0)),
                ),
                create(
                    "/zookeeper/quota/hm/zookeeper_stats",
                    Some("count=0,bytes=0"),
                ),
                create("/hm/one", Some("1")),
            ]),
        ),
        W(1, create("/hm/two", None)),
        W(1, set("/hm/one", Some("11"), -1)),
        // Limits data that is not a number: ZooKeeper fails the request.
        W(
            1,
            set("/zookeeper/quota/hm/zookeeper_limits", Some("count=x"), -1),
        ),
        W(1, create("/hm/three", None)),
        W(1, Request::Multi(vec![create("/hm/three", None)])),
    ]);
    s
}

// ---------------------------------------------------------------------------------------------
// The runner.

struct Runner {
    lines: Vec<String>,
    zxids: HashMap<i64, String>,
}

impl Runner {
    fn zxid(&mut self, z: i64) -> String {
        if z <= 0 {
            return z.to_string();
        }
        let n = self.zxids.len() + 1;
        self.zxids
            .entry(z)
            .or_insert_with(|| format!("Z{n}"))
            .clone()
    }

    fn stat(&mut self, s: &Stat) -> String {
        let (c, m, p) = (self.zxid(s.czxid), self.zxid(s.mzxid), self.zxid(s.pzxid));
        // Session ids differ between runs: only whether there is an owner is compared.
        format!(
            "{{czxid={c} mzxid={m} pzxid={p} version={} cversion={} aversion={} owned={} dataLength={} numChildren={}}}",
            s.version,
            s.cversion,
            s.aversion,
            s.ephemeral_owner != 0,
            s.data_length,
            s.num_children
        )
    }

    fn response(&mut self, r: &Response) -> String {
        match r {
            Response::Empty => "Empty".into(),
            Response::Path(p) => format!("Path({p})"),
            Response::Create2(p, s) => format!("Create2({p}, {})", self.stat(s)),
            Response::Stat(s) => format!("Stat({})", self.stat(s)),
            Response::Multi(results) => {
                let v: Vec<String> = results
                    .iter()
                    .map(|m| match m {
                        MultiResult::Create(p) => format!("Create({p})"),
                        MultiResult::Create2(p, s) => format!("Create2({p}, {})", self.stat(s)),
                        MultiResult::Delete => "Delete".into(),
                        MultiResult::SetData(s) => format!("SetData({})", self.stat(s)),
                        MultiResult::Check => "Check".into(),
                        MultiResult::Error(e) => format!("Error({})", e.name()),
                        other => format!("{other:?}"),
                    })
                    .collect();
                format!("Multi[{}]", v.join(", "))
            }
            other => format!("{other:?}"),
        }
    }

    /// Every node under /zookeeper/quota, depth first, with its data and Stat.
    async fn dump(&mut self, c: &Connection) {
        let mut stack = vec!["/zookeeper/quota".to_string()];
        let mut out = Vec::new();
        while let Some(p) = stack.pop() {
            let data = request(
                c,
                Request::GetData(GetDataRequest {
                    path: p.clone(),
                    watch: false,
                }),
            )
            .await;
            match data {
                Ok(Response::Data(d, s)) => {
                    let shown = match &d {
                        Some(d) => format!("{:?}", String::from_utf8_lossy(d)),
                        None => "null".into(),
                    };
                    let st = self.stat(&s);
                    out.push(format!("    {p} {shown} {st}"));
                }
                other => out.push(format!("    {p} !! {other:?}")),
            }
            if let Ok(Response::Children(mut kids)) = request(
                c,
                Request::GetChildren(GetDataRequest {
                    path: p.clone(),
                    watch: false,
                }),
            )
            .await
            {
                kids.sort();
                for k in kids.into_iter().rev() {
                    stack.push(format!("{p}/{k}"));
                }
            }
        }
        self.lines.extend(out);
    }
}

async fn connect(addr: &str) -> Connection {
    match Connection::connect(addr, ConnectOptions::default()).await {
        Ok(c) => c,
        Err(e) => panic!("connect to {addr}: {e}"),
    }
}

/// One request; a server error comes back as `Err(name)`.
async fn request(c: &Connection, req: Request) -> Result<Response, String> {
    match tokio::time::timeout(REQUEST_TIMEOUT, c.request(req)).await {
        Err(_) => Err("timeout".into()),
        Ok(Err(e)) => Err(format!("client error: {e}")),
        Ok(Ok(r)) if r.err == ErrorCode::Ok => Ok(r.response),
        Ok(Ok(r)) => Err(r.err.name().to_string()),
    }
}

async fn run(addr: &str, steps: Vec<Step>) -> Vec<String> {
    let s1 = connect(addr).await;
    let mut s2 = Some(connect(addr).await);
    let mut r = Runner {
        lines: Vec::new(),
        zxids: HashMap::new(),
    };
    for (i, step) in steps.into_iter().enumerate() {
        match step {
            Step::W(s, req) => {
                let desc = format!("{req:?}");
                let conn = if s == 2 { s2.as_ref() } else { Some(&s1) };
                let Some(conn) = conn else {
                    r.lines.push(format!("{i:03} s{s} {desc} -> no session"));
                    continue;
                };
                let text = match request(conn, req).await {
                    Ok(resp) => format!("Ok {}", r.response(&resp)),
                    Err(e) => e,
                };
                r.lines.push(format!("{i:03} s{s} {desc} -> {text}"));
            }
            Step::CloseSession2 => {
                if let Some(c) = s2.take() {
                    let res = tokio::time::timeout(REQUEST_TIMEOUT, c.close()).await;
                    r.lines.push(format!("{i:03} close s2 -> {}", res.is_ok()));
                }
            }
        }
        r.dump(&s1).await;
    }
    let _ = s1.close().await;
    r.lines
}

async fn dump_only(addr: &str) -> Vec<String> {
    let c = connect(addr).await;
    let mut r = Runner {
        lines: Vec::new(),
        zxids: HashMap::new(),
    };
    r.dump(&c).await;
    let _ = c.close().await;
    r.lines
}

fn assert_same(a_name: &str, a: &[String], b_name: &str, b: &[String]) {
    let Some(i) = (0..a.len().max(b.len())).find(|&i| a.get(i) != b.get(i)) else {
        println!("{a_name} and {b_name} agree ({} lines)", a.len());
        return;
    };
    let dir = std::env::temp_dir();
    let tag = common::unique_name("quota");
    let pa = dir.join(format!("{tag}-{}.txt", a_name.replace(' ', "-")));
    let pb = dir.join(format!("{tag}-{}.txt", b_name.replace(' ', "-")));
    let _ = std::fs::write(&pa, a.join("\n") + "\n");
    let _ = std::fs::write(&pb, b.join("\n") + "\n");
    let mut msg = format!(
        "{a_name} and {b_name} differ at line {} (full: {} and {})\n",
        i + 1,
        pa.display(),
        pb.display()
    );
    for l in &a[i.saturating_sub(8)..i] {
        msg.push_str(&format!(" {l}\n"));
    }
    for l in a.iter().skip(i).take(10) {
        msg.push_str(&format!("-{l}\n"));
    }
    for l in b.iter().skip(i).take(10) {
        msg.push_str(&format!("+{l}\n"));
    }
    panic!("{msg}");
}
