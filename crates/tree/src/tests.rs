//! Unit tests of apply/read: every error path and Stat field, checked against what real
//! ZooKeeper 3.8 answers where noted.

use std::sync::Arc;

use corral_proto::*;

use crate::obituary::{EndCause, Evidence};
use crate::*;

const S1: i64 = 0x100;
const S2: i64 = 0x200;
const S3: i64 = 0x300;

fn anyone() -> Vec<Acl> {
    acl::open_acl_unsafe()
}

fn digest_id(up: &str) -> Id {
    Id {
        scheme: "digest".into(),
        id: acl::digest(up),
    }
}

struct T {
    tree: DataTree,
    zxid: i64,
}

impl T {
    fn new() -> T {
        T::with(TreeConfig::default())
    }
    fn with(config: TreeConfig) -> T {
        let mut t = T {
            tree: DataTree::new(config),
            zxid: 0,
        };
        t.session(S1);
        t.session(S2);
        t
    }
    fn entry(&mut self, session_id: i64, ids: Vec<Id>, op: EntryOp) -> ApplyResult {
        self.zxid += 1;
        let e = Entry {
            session_id,
            time_ms: 1000 * self.zxid,
            identities: ids,
            op,
        };
        self.tree.apply(self.zxid, &e)
    }
    fn session(&mut self, id: i64) -> ApplyResult {
        self.entry(
            0,
            vec![],
            EntryOp::CreateSession {
                session_id: id,
                timeout_ms: 30000,
                passwd: vec![1; 16],
            },
        )
    }
    fn req_as(&mut self, session: i64, ids: Vec<Id>, r: Request) -> ApplyResult {
        self.entry(session, ids, EntryOp::Request(r))
    }
    fn req(&mut self, r: Request) -> ApplyResult {
        self.req_as(S1, vec![], r)
    }
    fn create_full(&mut self, path: &str, data: &[u8], acl: Vec<Acl>, flags: i32) -> ApplyResult {
        self.req(create_req(path, data, acl, flags))
    }
    fn create(&mut self, path: &str, flags: i32) -> (ErrorCode, String) {
        let r = self.create_full(path, b"", anyone(), flags);
        match r.response {
            Response::Path(p) => (r.err, p),
            _ => (r.err, String::new()),
        }
    }
    fn stat(&self, path: &str) -> Stat {
        self.tree.node(path).expect("node").client_stat()
    }
    fn read(&self, r: Request) -> (ErrorCode, Response) {
        self.tree.read(&r, S1, &[])
    }
}

fn create_req(path: &str, data: &[u8], acl: Vec<Acl>, flags: i32) -> Request {
    Request::Create(CreateRequest {
        path: path.into(),
        data: Some(data.to_vec()),
        acl,
        flags,
    })
}
fn delete_req(path: &str, version: i32) -> Request {
    Request::Delete(DeleteRequest {
        path: path.into(),
        version,
    })
}
fn set_req(path: &str, data: &[u8], version: i32) -> Request {
    Request::SetData(SetDataRequest {
        path: path.into(),
        data: Some(data.to_vec()),
        version,
    })
}
fn check_req(path: &str, version: i32) -> Request {
    Request::Check(CheckVersionRequest {
        path: path.into(),
        version,
    })
}
fn get_req(path: &str) -> Request {
    Request::GetData(GetDataRequest {
        path: path.into(),
        watch: false,
    })
}
fn ttl_req(path: &str, flags: i32, ttl: i64) -> Request {
    Request::CreateTtl(CreateTtlRequest {
        path: path.into(),
        data: Some(vec![]),
        acl: anyone(),
        flags,
        ttl,
    })
}
fn trig(path: &str, event: EventType) -> Trigger {
    Trigger {
        path: path.into(),
        event,
    }
}

#[test]
fn fresh_tree_matches_zookeeper() {
    let t = DataTree::new(TreeConfig {
        config_node_data: b"cfg".to_vec(),
        reconfig_enabled: false,
        ..Default::default()
    });
    assert_eq!(t.node_count(), 4);
    let root = t.node("/").unwrap();
    assert_eq!(
        root.client_stat(),
        Stat {
            cversion: -1,
            num_children: 1,
            ..Default::default()
        }
    );
    assert_eq!(*root.acl, *acl::open_acl_unsafe());
    let zk = t.node("/zookeeper").unwrap();
    assert_eq!(
        zk.client_stat(),
        Stat {
            cversion: -2,
            num_children: 2,
            ..Default::default()
        }
    );
    assert_eq!(t.node("/zookeeper/quota").unwrap().stat, Stat::default());
    let cfg = t.node("/zookeeper/config").unwrap();
    assert_eq!(
        cfg.stat,
        Stat {
            aversion: -1,
            data_length: 3,
            ..Default::default()
        }
    );
    assert_eq!(*cfg.acl, *acl::read_acl_unsafe());
    assert_eq!(cfg.data.as_deref(), Some(&b"cfg"[..]));
    let (e, r) = t.read(
        &Request::GetAllChildrenNumber(PathRequest { path: "/".into() }),
        0,
        &[],
    );
    assert_eq!((e, r), (ErrorCode::Ok, Response::Count(3)));
}

#[test]
fn create_stat_and_parent_bookkeeping() {
    let mut t = T::new();
    let r = t.req(Request::Create2(CreateRequest {
        path: "/a".into(),
        data: Some(b"xyz".to_vec()),
        acl: anyone(),
        flags: 0,
    }));
    assert_eq!(r.err, ErrorCode::Ok);
    let z = t.zxid;
    let want = Stat {
        czxid: z,
        mzxid: z,
        ctime: 1000 * z,
        mtime: 1000 * z,
        version: 0,
        cversion: 0,
        aversion: 0,
        ephemeral_owner: 0,
        data_length: 3,
        num_children: 0,
        pzxid: z,
    };
    assert_eq!(r.response, Response::Create2("/a".into(), want.clone()));
    assert_eq!(t.stat("/a"), want);
    assert_eq!(
        r.triggers,
        vec![
            trig("/a", EventType::NodeCreated),
            trig("/", EventType::NodeChildrenChanged)
        ]
    );
    let root = t.stat("/");
    assert_eq!((root.cversion, root.pzxid, root.num_children), (0, z, 2));
    assert_eq!(t.create("/a/b", 0), (ErrorCode::Ok, "/a/b".into()));
    assert_eq!(t.stat("/a").num_children, 1);
    assert_eq!(t.stat("/a").cversion, 1);
    // A delete counts as a child change too (observed: create+delete gives cversion 2).
    assert_eq!(t.req(delete_req("/a/b", -1)).err, ErrorCode::Ok);
    let a = t.stat("/a");
    assert_eq!(
        (a.cversion, a.pzxid, a.num_children, a.mzxid),
        (2, t.zxid, 0, z)
    );
}

#[test]
fn create_errors_in_zookeeper_order() {
    let mut t = T::new();
    t.create("/p", 0);
    assert_eq!(t.create("/p", 0).0, ErrorCode::NodeExists);
    assert_eq!(t.create("/", 0).0, ErrorCode::NodeExists);
    assert_eq!(t.create("/x/y", 0).0, ErrorCode::NoNode);
    assert_eq!(t.create("p", 0).0, ErrorCode::BadArguments);
    assert_eq!(t.create("/p/", 0).0, ErrorCode::BadArguments);
    // Parent "/p/" does not exist, and the parent is looked up first.
    assert_eq!(t.create("/p//q", 0).0, ErrorCode::NoNode);
    assert_eq!(t.create("//q", 0).0, ErrorCode::BadArguments);
    assert_eq!(t.create("/p/.", 0).0, ErrorCode::BadArguments);
    assert_eq!(t.create("/p/..", 0).0, ErrorCode::BadArguments);
    assert_eq!(t.create("/p/\u{1}", 0).0, ErrorCode::BadArguments);
    assert_eq!(t.create("/p\0", 0).0, ErrorCode::BadArguments);
    // The parent is looked up before the full path is validated (observed).
    assert_eq!(t.create("/nonexist/b/", 0).0, ErrorCode::NoNode);
    // ACL is fixed up before the parent is looked up (observed).
    assert_eq!(
        t.create_full("/nonexist/b", b"", vec![], 0).err,
        ErrorCode::InvalidAcl
    );
    assert_eq!(
        t.create_full("/q", b"", vec![], 0).err,
        ErrorCode::InvalidAcl
    );
    let auth = vec![Acl {
        perms: 31,
        id: Id {
            scheme: "auth".into(),
            id: "".into(),
        },
    }];
    assert_eq!(t.create_full("/q", b"", auth, 0).err, ErrorCode::InvalidAcl);
    for flags in [7, -1, 100] {
        assert_eq!(
            t.create("/q", flags).0,
            ErrorCode::BadArguments,
            "flags {flags}"
        );
    }
    // TTL disabled: Unimplemented; TTL via plain create: BadArguments (observed, enabled).
    assert_eq!(t.create("/q", 5).0, ErrorCode::Unimplemented);
    assert_eq!(t.req(ttl_req("/q", 5, 100)).err, ErrorCode::Unimplemented);
    let mut t = T::with(TreeConfig {
        extended_types_enabled: true,
        ..Default::default()
    });
    assert_eq!(t.create("/q", 5).0, ErrorCode::BadArguments);
    assert_eq!(t.req(ttl_req("/q", 0, 5)).err, ErrorCode::BadArguments);
    assert_eq!(t.req(ttl_req("/q", 0, -1)).err, ErrorCode::BadArguments);
    assert_eq!(t.req(ttl_req("/q", 5, 0)).err, ErrorCode::BadArguments);
    assert_eq!(
        t.req(ttl_req("/q", 5, MAX_TTL_MS + 1)).err,
        ErrorCode::BadArguments
    );
    assert!(t.tree.node("/q").is_none());
}

#[test]
fn sequential_names() {
    let mut t = T::new();
    t.create("/p", 0);
    assert_eq!(t.create("/p/s-", 2).1, "/p/s-0000000000");
    t.create("/p/x", 0);
    t.req(delete_req("/p/x", -1));
    // Deletes raise the reported cversion (3) but not the suffix, which counts creations
    // only (observed on ZooKeeper 3.8: after 2 creates and 1 delete the next is ...02).
    assert_eq!(t.stat("/p").cversion, 3);
    assert_eq!(t.create("/p/s-", 3).1, "/p/s-0000000002");
    // Trailing slash is fine for sequential.
    assert_eq!(t.create("/p/", 2).1, "/p/0000000003");
    // "/" sequential makes a top-level node. /zookeeper is built in, not created, so the
    // root's counter has seen one creation (/p).
    assert_eq!(t.create("/", 2).1, "/0000000001");
    // The suffix is the stored creation counter, exact up to i32::MAX creations, while the
    // reported cversion (2 * creations - numChildren) wraps long before.
    let mut n = t.tree.node("/p").unwrap().clone();
    n.stat.cversion = (1 << 30) + 5;
    t.tree.nodes.insert("/p".into(), std::sync::Arc::new(n));
    assert_eq!(t.create("/p/n", 2).1, "/p/n1073741829");
    let kids = t.tree.node("/p").unwrap().stat.num_children;
    assert_eq!(
        t.stat("/p").cversion,
        ((1i32 << 30) + 6).wrapping_mul(2).wrapping_sub(kids)
    );
    // Signed formatting when the counter itself has wrapped.
    let mut n = t.tree.node("/p").unwrap().clone();
    n.stat.cversion = -5;
    t.tree.nodes.insert("/p".into(), std::sync::Arc::new(n));
    assert_eq!(t.create("/p/n", 2).1, "/p/n-000000005");
}

#[test]
fn ephemerals_and_sessions() {
    let mut t = T::new();
    t.create("/p", 0);
    assert_eq!(t.create("/p/e", 1).0, ErrorCode::Ok);
    assert_eq!(t.stat("/p/e").ephemeral_owner, S1);
    assert_eq!(t.create("/p/e/c", 0).0, ErrorCode::NoChildrenForEphemerals);
    assert_eq!(t.create("/p/e/c", 2).0, ErrorCode::NoChildrenForEphemerals);
    assert_eq!(t.create("/p/f", 3).1, "/p/f0000000001");
    assert_eq!(t.tree.session_ephemeral_count(S1), 2);
    assert_eq!(t.tree.ephemeral_count(), 2);
    // getEphemerals by prefix, for the calling session only.
    let eph = |p: &str| Request::GetEphemerals(PathRequest { path: p.into() });
    assert_eq!(
        t.read(eph("/")).1,
        Response::Paths(vec!["/p/e".into(), "/p/f0000000001".into()])
    );
    assert_eq!(
        t.read(eph("")).1,
        Response::Paths(vec!["/p/e".into(), "/p/f0000000001".into()])
    );
    assert_eq!(
        t.read(eph("/p/f")).1,
        Response::Paths(vec!["/p/f0000000001".into()])
    );
    assert_eq!(t.tree.read(&eph("/"), S2, &[]).1, Response::Paths(vec![]));
    // Unknown session: every write is SessionExpired; ephemeral create with system session too.
    let r = t.req_as(0x999, vec![], create_req("/z", b"", anyone(), 0));
    assert_eq!(r.err, ErrorCode::SessionExpired);
    let r = t.req_as(0, vec![], create_req("/z", b"", anyone(), 1));
    assert_eq!(r.err, ErrorCode::SessionExpired);
    // Close: ephemerals go, with triggers.
    let r = t.entry(
        0,
        vec![],
        EntryOp::CloseSession {
            session_id: S1,
            evidence: Evidence::bare(EndCause::Unknown, "test"),
        },
    );
    assert_eq!(
        r.deleted_ephemerals,
        vec!["/p/e".to_string(), "/p/f0000000001".into()]
    );
    assert_eq!(
        r.triggers,
        vec![
            trig("/p/e", EventType::NodeDeleted),
            trig("/p", EventType::NodeChildrenChanged),
            trig("/p/f0000000001", EventType::NodeDeleted),
            trig("/p", EventType::NodeChildrenChanged),
        ]
    );
    assert!(t.tree.session(S1).is_none());
    assert!(t.tree.node("/p/e").is_none());
    assert_eq!(t.stat("/p").num_children, 0);
    assert_eq!(
        t.req(create_req("/y", b"", anyone(), 0)).err,
        ErrorCode::SessionExpired
    );
    // Closing by request works the same way.
    let r = t.req_as(S2, vec![], create_req("/e2", b"", anyone(), 1));
    assert_eq!(r.err, ErrorCode::Ok);
    let r = t.req_as(S2, vec![], Request::CloseSession);
    assert_eq!(r.deleted_ephemerals, vec!["/e2".to_string()]);
    assert_eq!(t.tree.sessions().count(), 0);
    // An ephemeral deleted explicitly leaves its owner's set.
    t.session(S1);
    t.create("/e3", 1);
    t.req_as(S1, vec![], delete_req("/e3", -1));
    assert_eq!(t.tree.session_ephemeral_count(S1), 0);
}

#[test]
fn delete_errors() {
    let mut t = T::new();
    t.create("/p", 0);
    t.create("/p/c", 0);
    assert_eq!(t.req(delete_req("/p", -1)).err, ErrorCode::NotEmpty);
    assert_eq!(t.req(delete_req("/p/c", 3)).err, ErrorCode::BadVersion);
    assert_eq!(t.req(delete_req("/p/nope", -1)).err, ErrorCode::NoNode);
    assert_eq!(t.req(delete_req("/nope/x", -1)).err, ErrorCode::NoNode);
    assert_eq!(t.req(delete_req("/p/", -1)).err, ErrorCode::NoNode);
    for special in ["/", "/zookeeper", "/zookeeper/config", "/zookeeper/quota"] {
        assert_eq!(t.req(delete_req(special, -1)).err, ErrorCode::BadArguments);
    }
    assert_eq!(t.req(delete_req("p", -1)).err, ErrorCode::BadArguments);
    let r = t.req(delete_req("/p/c", 0));
    assert_eq!(r.err, ErrorCode::Ok);
    assert_eq!(r.response, Response::Empty);
    assert_eq!(
        r.triggers,
        vec![
            trig("/p/c", EventType::NodeDeleted),
            trig("/p", EventType::NodeChildrenChanged)
        ]
    );
}

#[test]
fn set_data_and_check() {
    let mut t = T::new();
    t.create("/a", 0);
    let czxid = t.zxid;
    let r = t.req(set_req("/a", b"hello", 0));
    assert_eq!(r.err, ErrorCode::Ok);
    assert_eq!(r.triggers, vec![trig("/a", EventType::NodeDataChanged)]);
    let s = t.stat("/a");
    assert_eq!(
        (s.version, s.mzxid, s.mtime, s.data_length, s.czxid),
        (1, t.zxid, 1000 * t.zxid, 5, czxid)
    );
    assert_eq!(r.response, Response::Stat(s));
    assert_eq!(t.req(set_req("/a", b"x", 0)).err, ErrorCode::BadVersion);
    assert_eq!(t.req(set_req("/a", b"x", -1)).err, ErrorCode::Ok);
    assert_eq!(t.req(set_req("/nope", b"x", -1)).err, ErrorCode::NoNode);
    assert_eq!(t.req(set_req("/a/", b"x", -1)).err, ErrorCode::BadArguments);
    assert_eq!(
        t.req(set_req("/zookeeper/config", b"x", -1)).err,
        ErrorCode::NoAuth
    );
    assert_eq!(
        t.read(get_req("/a")).1,
        Response::Data(Some(b"x".to_vec()), t.stat("/a"))
    );
    assert_eq!(t.req(check_req("/a", 2)).err, ErrorCode::Ok);
    assert_eq!(t.req(check_req("/a", 1)).err, ErrorCode::BadVersion);
    assert_eq!(t.req(check_req("/nope", 1)).err, ErrorCode::NoNode);
    assert_eq!(t.req(check_req("a", 1)).err, ErrorCode::BadArguments);
    assert_eq!(
        t.tree.approximate_data_size(),
        t.tree
            .nodes()
            .map(|(p, n)| (p.len() + crate::tree::data_len(&n.data)) as u64)
            .sum()
    );
}

#[test]
fn acl_enforcement() {
    let mut t = T::new();
    let alice = digest_id("alice:pw");
    let acl = vec![Acl {
        perms: perms::READ | perms::CREATE,
        id: alice.clone(),
    }];
    assert_eq!(t.create_full("/s", b"d", acl, 0).err, ErrorCode::Ok);
    // No identity: everything refused.
    assert_eq!(t.tree.read(&get_req("/s"), S1, &[]).0, ErrorCode::NoAuth);
    assert_eq!(
        t.req(create_req("/s/c", b"", anyone(), 0)).err,
        ErrorCode::NoAuth
    );
    assert_eq!(t.req(set_req("/s", b"", -1)).err, ErrorCode::NoAuth);
    assert_eq!(t.req(check_req("/s", -1)).err, ErrorCode::NoAuth);
    // alice can read and create, not write, delete children or admin.
    assert_eq!(
        t.tree
            .read(&get_req("/s"), S1, std::slice::from_ref(&alice))
            .0,
        ErrorCode::Ok
    );
    assert_eq!(
        t.req_as(
            S1,
            vec![alice.clone()],
            create_req("/s/c", b"", anyone(), 0)
        )
        .err,
        ErrorCode::Ok
    );
    assert_eq!(
        t.req_as(S1, vec![alice.clone()], set_req("/s", b"", -1))
            .err,
        ErrorCode::NoAuth
    );
    assert_eq!(
        t.req_as(S1, vec![alice.clone()], delete_req("/s/c", -1))
            .err,
        ErrorCode::NoAuth
    );
    // super bypasses everything.
    let sup = Id {
        scheme: "super".into(),
        id: "".into(),
    };
    assert_eq!(
        t.req_as(S1, vec![sup.clone()], delete_req("/s/c", -1)).err,
        ErrorCode::Ok
    );
    // getACL: READ or ADMIN needed; without ADMIN digests are redacted.
    let gacl = Request::GetAcl(PathRequest { path: "/s".into() });
    assert_eq!(t.tree.read(&gacl, S1, &[]).0, ErrorCode::NoAuth);
    match t.tree.read(&gacl, S1, std::slice::from_ref(&alice)) {
        (ErrorCode::Ok, Response::Acl(a, _)) => assert_eq!(a[0].id.id, "alice:x"),
        other => panic!("{other:?}"),
    }
    match t.tree.read(&gacl, S1, std::slice::from_ref(&sup)) {
        (ErrorCode::Ok, Response::Acl(a, _)) => assert_eq!(a[0].id, alice),
        other => panic!("{other:?}"),
    }
    // setACL: ADMIN, aversion, InvalidACL; 'auth' expands to the caller's digest identities.
    let auth = vec![Acl {
        perms: perms::ALL,
        id: Id {
            scheme: "auth".into(),
            id: "".into(),
        },
    }];
    let setacl = |acl: Vec<Acl>, version| {
        Request::SetAcl(SetAclRequest {
            path: "/s".into(),
            acl,
            version,
        })
    };
    assert_eq!(
        t.req_as(S1, vec![alice.clone()], setacl(anyone(), -1)).err,
        ErrorCode::NoAuth
    );
    assert_eq!(
        t.req_as(S1, vec![sup.clone()], setacl(vec![], -1)).err,
        ErrorCode::InvalidAcl
    );
    assert_eq!(
        t.req_as(S1, vec![sup.clone()], setacl(auth.clone(), -1))
            .err,
        ErrorCode::InvalidAcl
    );
    assert_eq!(
        t.req_as(S1, vec![sup.clone()], setacl(anyone(), 5)).err,
        ErrorCode::BadVersion
    );
    let ids = vec![
        Id {
            scheme: "ip".into(),
            id: "127.0.0.1".into(),
        },
        alice.clone(),
        sup,
    ];
    let r = t.req_as(S1, ids, setacl(auth, 0));
    assert_eq!(r.err, ErrorCode::Ok);
    assert!(r.triggers.is_empty());
    match r.response {
        Response::Stat(s) => assert_eq!((s.aversion, s.version), (1, 0)),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        *t.tree.node("/s").unwrap().acl,
        [Acl {
            perms: perms::ALL,
            id: alice
        }]
    );
    // ip ACLs.
    let ipacl = vec![Acl {
        perms: perms::ALL,
        id: Id {
            scheme: "ip".into(),
            id: "10.0.0.0/8".into(),
        },
    }];
    t.create_full("/ip", b"", ipacl, 0);
    let ip = |a: &str| {
        vec![Id {
            scheme: "ip".into(),
            id: a.into(),
        }]
    };
    assert_eq!(
        t.tree.read(&get_req("/ip"), S1, &ip("10.1.2.3")).0,
        ErrorCode::Ok
    );
    assert_eq!(
        t.tree.read(&get_req("/ip"), S1, &ip("11.1.2.3")).0,
        ErrorCode::NoAuth
    );
    // exists never checks ACLs.
    let ex = Request::Exists(GetDataRequest {
        path: "/ip".into(),
        watch: false,
    });
    assert_eq!(t.tree.read(&ex, S1, &[]).0, ErrorCode::Ok);
}

#[test]
fn multi_is_atomic() {
    let mut t = T::new();
    t.create("/p", 0);
    let before = t.tree.clone();
    let ops = vec![
        create_req("/m1", b"", anyone(), 0),
        set_req("/p", b"v", -1),
        create_req("/p", b"", anyone(), 0),
        set_req("/x", b"", -1),
    ];
    let r = t.req(Request::Multi(ops));
    // Observed: header err 0, per-op results Ok / failing code / RuntimeInconsistency.
    assert_eq!(r.err, ErrorCode::Ok);
    assert_eq!(
        r.response,
        Response::Multi(vec![
            MultiResult::Error(ErrorCode::Ok),
            MultiResult::Error(ErrorCode::Ok),
            MultiResult::Error(ErrorCode::NodeExists),
            MultiResult::Error(ErrorCode::RuntimeInconsistency),
        ])
    );
    assert!(r.triggers.is_empty());
    let mut after = t.tree.clone();
    after.last_zxid = before.last_zxid;
    assert_eq!(after, before);
    assert_eq!(after.encode_snapshot(), before.encode_snapshot());

    let ops = vec![
        create_req("/p/a", b"", anyone(), 2),
        Request::Create2(CreateRequest {
            path: "/p/a".into(),
            data: Some(vec![]),
            acl: anyone(),
            flags: 2,
        }),
        check_req("/p", 0),
        set_req("/p", b"v", 0),
        delete_req("/p/a0000000000", -1),
    ];
    let r = t.req(Request::Multi(ops));
    let Response::Multi(res) = r.response else {
        panic!()
    };
    assert_eq!(res[0], MultiResult::Create("/p/a0000000000".into()));
    // create2 inside a multi answers like create on ZooKeeper 3.8.
    assert_eq!(res[1], MultiResult::Create("/p/a0000000001".into()));
    assert_eq!(res[2], MultiResult::Check);
    assert!(matches!(&res[3], MultiResult::SetData(s) if s.version == 1));
    assert_eq!(res[4], MultiResult::Delete);
    assert_eq!(t.stat("/p").cversion, 3);
    assert_eq!(r.triggers.len(), 7);
    let r = t.req(Request::Multi(vec![]));
    assert_eq!(
        (r.err, r.response),
        (ErrorCode::Ok, Response::Multi(vec![]))
    );
}

#[test]
fn reads() {
    let mut t = T::new();
    t.create("/p", 0);
    for c in ["b", "a", "c"] {
        t.create(&format!("/p/{c}"), 0);
    }
    t.create("/p/a/x", 0);
    let gc = Request::GetChildren(GetDataRequest {
        path: "/p".into(),
        watch: false,
    });
    assert_eq!(
        t.read(gc).1,
        Response::Children(vec!["a".into(), "b".into(), "c".into()])
    );
    let gc2 = Request::GetChildren2(GetDataRequest {
        path: "/p".into(),
        watch: false,
    });
    assert_eq!(
        t.read(gc2).1,
        Response::Children2(vec!["a".into(), "b".into(), "c".into()], t.stat("/p"))
    );
    let n = |p: &str| Request::GetAllChildrenNumber(PathRequest { path: p.into() });
    assert_eq!(t.read(n("/p")).1, Response::Count(4));
    assert_eq!(t.read(n("/p/a")).1, Response::Count(1));
    assert_eq!(t.read(n("/nope")).0, ErrorCode::NoNode);
    let ex = |p: &str| {
        Request::Exists(GetDataRequest {
            path: p.into(),
            watch: false,
        })
    };
    assert_eq!(t.read(ex("/nope")), (ErrorCode::NoNode, Response::Empty));
    assert_eq!(t.read(ex("/a\0")).0, ErrorCode::BadArguments);
    assert_eq!(
        t.read(get_req("/nope")),
        (ErrorCode::NoNode, Response::Empty)
    );
    let mr = Request::MultiRead(vec![
        get_req("/p"),
        get_req("/nope"),
        Request::GetChildren(GetDataRequest {
            path: "/p/a".into(),
            watch: false,
        }),
    ]);
    assert_eq!(
        t.read(mr).1,
        Response::Multi(vec![
            MultiResult::GetData(Some(vec![]), t.stat("/p")),
            MultiResult::Error(ErrorCode::NoNode),
            MultiResult::GetChildren(vec!["x".into()]),
        ])
    );
    assert_eq!(t.read(Request::Ping).0, ErrorCode::Unimplemented);
}

#[test]
fn reconfig_and_sync() {
    let mut t = T::new();
    let r = t.req(Request::Reconfig(ReconfigRequest::default()));
    assert_eq!(r.err, ErrorCode::ReconfigDisabled);
    let r = t.req(Request::Sync(PathRequest { path: "/".into() }));
    assert_eq!(
        (r.err, r.response),
        (ErrorCode::Ok, Response::Path("/".into()))
    );
}

#[test]
fn containers_and_ttl() {
    let mut t = T::with(TreeConfig {
        extended_types_enabled: true,
        ..Default::default()
    });
    let cc = |p: &str, flags| {
        Request::CreateContainer(CreateRequest {
            path: p.into(),
            data: Some(vec![]),
            acl: anyone(),
            flags,
        })
    };
    let r = t.req(cc("/c", 0));
    assert_eq!(r.err, ErrorCode::Ok);
    assert_eq!(t.tree.node("/c").unwrap().kind(), NodeKind::Container);
    assert_eq!(t.tree.node("/c").unwrap().stat.ephemeral_owner, i64::MIN);
    // Clients see ephemeralOwner 0 for containers and TTL nodes (observed).
    assert_eq!(t.stat("/c").ephemeral_owner, 0);
    assert!(matches!(r.response, Response::Create2(_, s) if s.ephemeral_owner == 0));
    // The flags do not make a container; the opcode does (ZooKeeper's txn choice).
    t.create("/notc", 4);
    assert_eq!(t.tree.node("/notc").unwrap().kind(), NodeKind::Persistent);
    // Never-used container: not a candidate.
    assert!(t.tree.container_and_ttl_candidates(i64::MAX).is_empty());
    t.create("/c/x", 0);
    assert!(t.tree.container_and_ttl_candidates(i64::MAX).is_empty());
    t.req(delete_req("/c/x", -1));
    assert_eq!(
        t.tree.container_and_ttl_candidates(0),
        vec!["/c".to_string()]
    );

    let r = t.req(ttl_req("/t", 5, 10_000));
    assert_eq!(r.err, ErrorCode::Ok);
    assert_eq!(t.tree.node("/t").unwrap().kind(), NodeKind::Ttl(10_000));
    assert_eq!(t.stat("/t").ephemeral_owner, 0);
    let mtime = t.stat("/t").mtime;
    assert_eq!(
        t.tree.container_and_ttl_candidates(mtime + 10_000),
        vec!["/c".to_string()]
    );
    let cands = t.tree.container_and_ttl_candidates(mtime + 10_001);
    assert_eq!(cands, vec!["/c".to_string(), "/t".into()]);
    // Re-checked at apply: /t was touched meanwhile, so only /c goes.
    t.req(set_req("/t", b"", -1));
    let mut e = Entry {
        session_id: 0,
        time_ms: mtime + 10_001,
        identities: vec![],
        op: EntryOp::PurgeContainersAndTtl { candidates: cands },
    };
    t.zxid += 1;
    let r = t.tree.apply(t.zxid, &e);
    assert_eq!(r.response, Response::Paths(vec!["/c".into()]));
    assert_eq!(
        r.triggers,
        vec![
            trig("/c", EventType::NodeDeleted),
            trig("/", EventType::NodeChildrenChanged)
        ]
    );
    assert!(t.tree.node("/c").is_none() && t.tree.node("/t").is_some());
    e.time_ms = i64::MAX;
    e.op = EntryOp::PurgeContainersAndTtl {
        candidates: vec!["/t".into(), "/t".into(), "/notc".into(), "/".into()],
    };
    t.zxid += 1;
    let r = t.tree.apply(t.zxid, &e);
    assert_eq!(r.response, Response::Paths(vec!["/t".into()]));
    assert!(t.tree.node("/notc").is_some());
    // A client's deleteContainer is refused whatever the node, as ZooKeeper 3.8 does, and
    // spends its zxid.
    t.req(cc("/c2", 0));
    let dc = |p: &str| Request::DeleteContainer(PathRequest { path: p.into() });
    for p in ["/c2", "/notc", "/nope"] {
        let before = t.tree.last_zxid();
        assert_eq!(t.req(dc(p)).err, ErrorCode::BadArguments);
        assert!(t.tree.last_zxid() > before);
    }
    assert!(t.tree.node("/c2").is_some());
}

/// The version-1 snapshot layout (each node carrying its ACL), as earlier builds wrote it.
fn encode_snapshot_v1(t: &DataTree) -> Vec<u8> {
    let mut w = Writer::new();
    w.buf.extend_from_slice(b"CRTS");
    w.i32(1);
    w.i64(t.last_zxid());
    let c = t.config();
    w.bool(c.extended_types_enabled);
    match &c.super_digest {
        Some(d) => {
            w.bool(true);
            w.string(d);
        }
        None => w.bool(false),
    }
    w.buffer(&c.config_node_data);
    w.bool(c.reconfig_enabled);
    w.i32(t.sessions().count() as i32);
    for (id, s) in t.sessions() {
        w.i64(*id);
        w.i32(s.timeout_ms);
        w.buffer(&s.passwd);
    }
    w.i64(t.node_count() as i64);
    for (p, n) in t.nodes() {
        w.string(p);
        w.nullable_buffer(&n.data);
        w.vec(&n.acl);
        // Versions 1 and 2 stored cversion as clients see it.
        let mut stat = n.stat.clone();
        stat.cversion = n.client_stat().cversion;
        stat.write(&mut w);
    }
    w.buf
}

#[test]
fn snapshot_acl_table_shares_and_reads_the_old_layout() {
    let mut t = T::new();
    let alice = digest_id("alice:pw");
    let mine = vec![Acl {
        perms: perms::ALL,
        id: Id {
            scheme: "auth".into(),
            id: String::new(),
        },
    }];
    // ACLs alternate in path order, so a table keyed on "same as the previous node" alone
    // would not be enough.
    for i in 0..6 {
        // A child created with its parent's ACL shares the parent's copy.
        for path in [format!("/n{i}"), format!("/n{i}/c")] {
            let acl = if i % 2 == 0 { anyone() } else { mine.clone() };
            let r = t.req_as(S1, vec![alice.clone()], create_req(&path, b"d", acl, 0));
            assert_eq!(r.err, ErrorCode::Ok);
        }
        let (parent, child) = (
            t.tree.node(&format!("/n{i}")).unwrap(),
            t.tree.node(&format!("/n{i}/c")).unwrap(),
        );
        assert!(std::sync::Arc::ptr_eq(&parent.acl, &child.acl));
    }
    let snap = t.tree.encode_snapshot();
    let back = DataTree::decode_snapshot(&snap).unwrap();
    assert_eq!(back, t.tree);
    assert_eq!(back.encode_snapshot(), snap);
    // Restored nodes with equal ACLs point at one copy.
    let (n1, n3) = (back.node("/n1").unwrap(), back.node("/n3").unwrap());
    assert_eq!(n1.acl[0].id, alice);
    assert!(std::sync::Arc::ptr_eq(&n1.acl, &n3.acl));
    assert!(!std::sync::Arc::ptr_eq(
        &n1.acl,
        &back.node("/n2").unwrap().acl
    ));
    // The table makes the snapshot smaller than one ACL per node.
    let v1 = encode_snapshot_v1(&t.tree);
    assert!(snap.len() < v1.len(), "{} vs {}", snap.len(), v1.len());
    // A data dir written by an earlier build still starts; its sessions' creation times
    // were not recorded.
    let old = DataTree::decode_snapshot(&v1).unwrap();
    let mut as_old = t.tree.clone();
    for id in [S1, S2] {
        as_old.sessions.get_mut(&id).unwrap().created_ms = 0;
    }
    assert_eq!(old, as_old);
    assert_eq!(old.encode_snapshot(), as_old.encode_snapshot());
    // An index past the table is refused, not a panic.
    let last_acl_index_at = snap.len() - 68 - 4; // the last node's ACL index precedes its Stat
    let mut broken = snap.clone();
    broken[last_acl_index_at..last_acl_index_at + 4].copy_from_slice(&99i32.to_be_bytes());
    let e = DataTree::decode_snapshot(&broken).unwrap_err();
    assert!(e.to_string().contains("no ACL 99"), "{e}");
}

#[test]
fn snapshot_round_trip_and_entry_codec() {
    let mut t = T::with(TreeConfig {
        extended_types_enabled: true,
        super_digest: Some("super:x".into()),
        config_node_data: b"c".to_vec(),
        reconfig_enabled: true,
        // Not part of a snapshot (the keeper sets them from its configuration).
        enforce_quota: false,
        obituaries_kept: obituary::OBITUARIES_KEPT_DEFAULT,
    });
    t.create("/a", 0);
    t.create("/a/e", 1);
    t.req(ttl_req("/t", 6, 50));
    let snap = t.tree.encode_snapshot();
    let back = DataTree::decode_snapshot(&snap).unwrap();
    assert_eq!(back, t.tree);
    assert_eq!(back.encode_snapshot(), snap);
    assert_eq!(back.session(S1).unwrap().ephemerals.len(), 1);
    // Streamed in pieces, the same bytes; the sink's first error stops it.
    for chunk in [1, 7, 100] {
        let mut v = Vec::new();
        let r: Result<(), ()> = t.tree.write_snapshot(chunk, |b| {
            v.extend_from_slice(b);
            Ok(())
        });
        assert_eq!((r, &v), (Ok(()), &snap));
    }
    let mut calls = 0;
    let r = t.tree.write_snapshot(1, |_| {
        calls += 1;
        if calls == 2 {
            Err("disk full")
        } else {
            Ok(())
        }
    });
    assert_eq!((r, calls), (Err("disk full"), 2));
    for cut in 0..snap.len() {
        assert!(DataTree::decode_snapshot(&snap[..cut]).is_err());
    }
    assert!(DataTree::decode_snapshot(b"garbage!").is_err());

    let entries = vec![
        Entry {
            session_id: 1,
            time_ms: 2,
            identities: vec![digest_id("a:b")],
            op: EntryOp::CreateSession {
                session_id: 9,
                timeout_ms: 5,
                passwd: vec![1, 2],
            },
        },
        Entry {
            session_id: 0,
            time_ms: 2,
            identities: vec![],
            op: EntryOp::CloseSession {
                session_id: 9,
                evidence: Evidence::bare(EndCause::SilentWhileConnected, "expired"),
            },
        },
        Entry {
            session_id: 0,
            time_ms: 2,
            identities: vec![],
            op: EntryOp::CloseSession {
                session_id: 9,
                evidence: rich_evidence(3),
            },
        },
        Entry {
            session_id: 3,
            time_ms: 4,
            identities: vec![],
            op: EntryOp::PurgeContainersAndTtl {
                candidates: vec!["/x".into()],
            },
        },
        Entry {
            session_id: 3,
            time_ms: 4,
            identities: vec![],
            op: EntryOp::Request(Request::Multi(vec![
                create_req("/a", b"x", anyone(), 1),
                check_req("/a", 0),
            ])),
        },
        Entry {
            session_id: 3,
            time_ms: 4,
            identities: vec![],
            op: EntryOp::Request(Request::CloseSession),
        },
        Entry {
            session_id: 3,
            time_ms: 4,
            identities: vec![],
            op: EntryOp::Request(ttl_req("/t", 5, 7)),
        },
        Entry {
            session_id: 3,
            time_ms: 4,
            identities: vec![digest_id("a:b")],
            op: EntryOp::Request(create_req("/big", &[7u8; 100_000], anyone(), 0)),
        },
    ];
    for e in entries {
        let b = e.encode();
        assert_eq!(Entry::decode(&b).unwrap(), e);
        // Batches are sized by the estimate: it must follow the encoding, never far below it.
        let est = e.size_estimate();
        assert!(
            est + 8 >= b.len() && est <= 2 * b.len() + 64,
            "estimate {est} for {} bytes: {e:?}",
            b.len()
        );
        for cut in 0..b.len() {
            assert!(Entry::decode(&b[..cut]).is_err(), "cut at {cut}");
        }
    }
}

#[test]
fn standalone_reconfig_answers_like_zookeeper() {
    let reconfig = || {
        Request::Reconfig(corral_proto::ReconfigRequest {
            joining_servers: "server.2=127.0.0.1:2888:3888".into(),
            leaving_servers: String::new(),
            new_members: String::new(),
            cur_config_id: -1,
        })
    };
    let mut t = T::new();
    assert_eq!(t.req(reconfig()).err, ErrorCode::ReconfigDisabled);
    let mut t = T::with(TreeConfig {
        reconfig_enabled: true,
        ..Default::default()
    });
    assert_eq!(t.req(reconfig()).err, ErrorCode::Unimplemented);
}

#[test]
fn large_snapshots_restore_across_batches_and_name_a_missing_parent() {
    let mut t = T::new();
    // Enough nodes for several of the keeper's restore batches (restore.rs).
    for i in 0..10_000 {
        assert_eq!(t.create(&format!("/c{i:05}"), 0).0, ErrorCode::Ok);
    }
    let snap = t.tree.encode_snapshot();
    let back = DataTree::decode_snapshot(&snap).unwrap();
    assert_eq!(back, t.tree);
    assert_eq!(back.encode_snapshot(), snap);
    // The same snapshot with one more node at the end, whose parent does not exist.
    let n = t.tree.node_count() as i64;
    let mut count_then_root = n.to_be_bytes().to_vec();
    count_then_root.extend_from_slice(&1i32.to_be_bytes());
    count_then_root.push(b'/');
    let at = snap
        .windows(count_then_root.len())
        .position(|w| w == count_then_root)
        .expect("the node count before the root's record");
    let mut broken = snap.clone();
    broken[at..at + 8].copy_from_slice(&(n + 1).to_be_bytes());
    let mut w = Writer::new();
    w.string("/zzz/orphan");
    w.nullable_buffer(&Some(Vec::new()));
    w.i32(0);
    Stat::default().write(&mut w);
    broken.extend_from_slice(&w.buf);
    let e = DataTree::decode_snapshot(&broken).unwrap_err();
    assert!(
        e.to_string().contains("\"/zzz/orphan\" has no parent"),
        "{e}"
    );
    // And one out of order, found while parsing.
    let mut w = Writer::new();
    w.string("/c00001/late");
    w.nullable_buffer(&Some(Vec::new()));
    w.i32(0);
    Stat::default().write(&mut w);
    let mut broken = snap.clone();
    broken[at..at + 8].copy_from_slice(&(n + 1).to_be_bytes());
    broken.extend_from_slice(&w.buf);
    let e = DataTree::decode_snapshot(&broken).unwrap_err();
    assert!(e.to_string().contains("out of order"), "{e}");
}

/// Each check of a restore says which one failed, as a value.
#[test]
fn restore_checks_fail_with_typed_inconsistencies() {
    let acl: Arc<[Acl]> = acl::open_acl_unsafe().into();
    let node = |p: &str, data: &[u8]| {
        let stat = Stat {
            data_length: data.len() as i32,
            ..Stat::default()
        };
        (p.to_string(), Some(data.to_vec()), Arc::clone(&acl), stat)
    };
    type Part = (String, Option<Vec<u8>>, Arc<[Acl]>, Stat);
    let build = |nodes: Vec<Part>| {
        DataTree::from_parts(TreeConfig::default(), Vec::new(), 1, nodes).map(|_| ())
    };
    let inconsistent = |i| Err(CodecError::Inconsistent(i));
    assert_eq!(build(vec![node("/", b""), node("/a", b"x")]), Ok(()));
    assert_eq!(build(vec![]), inconsistent(Inconsistency::NoRoot));
    assert_eq!(
        build(vec![node("/a", b"")]),
        inconsistent(Inconsistency::RootNotFirst)
    );
    assert_eq!(
        build(vec![node("/", b""), node("/b", b""), node("/a", b"")]),
        inconsistent(Inconsistency::OutOfOrder("/a".into()))
    );
    assert_eq!(
        build(vec![node("/", b""), node("/a/", b"")]),
        inconsistent(Inconsistency::InvalidPath("/a/".into()))
    );
    assert_eq!(
        build(vec![node("/", b""), node("/a/b", b"")]),
        inconsistent(Inconsistency::NoParent("/a/b".into()))
    );
    let mut wrong_length = node("/a", b"xyz");
    wrong_length.3.data_length = 2;
    assert_eq!(
        build(vec![node("/", b""), wrong_length]),
        inconsistent(Inconsistency::DataLength("/a".into()))
    );
}

// ---- quotas (checked against ZooKeeper 3.8 by crates/cli/tests/quota_differential.rs) ----

/// zkCli 3.8's `setquota` data: every field present, -1 for those not given.
fn limits(count: i64, bytes: i64, count_hard: i64, bytes_hard: i64) -> Vec<u8> {
    format!("count={count},bytes={bytes}=;byteHardLimit={bytes_hard};countHardLimit={count_hard}")
        .into_bytes()
}

impl T {
    fn ok(&mut self, r: Request) -> ApplyResult {
        let res = self.req(r.clone());
        assert_eq!(res.err, ErrorCode::Ok, "{r:?}");
        res
    }
    /// What zkCli's setquota sends for `/x` (one level deep): the quota node, the limits,
    /// then the stats node.
    fn setquota(&mut self, p: &str, lim: Vec<u8>) {
        let q = format!("/zookeeper/quota{p}");
        self.ok(create_req(&q, b"", anyone(), 0));
        self.ok(create_req(
            &format!("{q}/zookeeper_limits"),
            &lim,
            anyone(),
            0,
        ));
        self.ok(create_req(
            &format!("{q}/zookeeper_stats"),
            b"count=0,bytes=0",
            anyone(),
            0,
        ));
    }
    fn stats(&self, p: &str) -> String {
        let n = self
            .tree
            .node(&format!("/zookeeper/quota{p}/zookeeper_stats"))
            .expect("stats node");
        String::from_utf8_lossy(n.data.as_deref().unwrap_or(b"null")).into_owned()
    }
}

#[test]
fn quota_stats_count_every_write_below_the_quota() {
    let mut t = T::new();
    t.ok(create_req("/q", b"12345", anyone(), 0));
    t.ok(create_req("/q/a", b"xy", anyone(), 0));
    t.ok(create_req("/other", b"zzz", anyone(), 0));
    t.setquota("/q", limits(10, 100, -1, -1));
    // The stats node counts the existing subtree, itself included, at its creation.
    assert_eq!(t.stats("/q"), "count=2,bytes=7");
    let stats_path = "/zookeeper/quota/q/zookeeper_stats";
    let created = t.stat(stats_path);
    assert_eq!(created.data_length, 15);

    t.ok(create_req("/q/b", b"abc", anyone(), 0));
    assert_eq!(t.stats("/q"), "count=3,bytes=10");
    t.ok(set_req("/q/a", b"longer data", -1));
    assert_eq!(t.stats("/q"), "count=3,bytes=19");
    t.ok(delete_req("/q/b", -1));
    assert_eq!(t.stats("/q"), "count=2,bytes=16");
    // An ephemeral goes with its session, and counts out.
    let r = t.req_as(S2, vec![], create_req("/q/e", b"ee", anyone(), 1));
    assert_eq!(r.err, ErrorCode::Ok);
    assert_eq!(t.stats("/q"), "count=3,bytes=18");
    t.entry(
        0,
        vec![],
        EntryOp::CloseSession {
            session_id: S2,
            evidence: Evidence::bare(EndCause::SilentWhileConnected, "expired"),
        },
    );
    assert_eq!(t.stats("/q"), "count=2,bytes=16");
    // Outside the quota: nothing.
    t.ok(set_req("/other", b"", -1));
    t.ok(create_req("/other/x", b"x", anyone(), 0));
    assert_eq!(t.stats("/q"), "count=2,bytes=16");
    // Only the data changes: the Stat is the creation's but for the length.
    let now = t.stat(stats_path);
    assert_eq!(
        now,
        Stat {
            data_length: 16,
            ..created
        }
    );
    // A failed write counts nothing.
    assert_eq!(t.req(set_req("/q/a", b"x", 9)).err, ErrorCode::BadVersion);
    assert_eq!(t.stats("/q"), "count=2,bytes=16");
}

#[test]
fn quota_stats_follow_the_deepest_quota_and_the_limits_node() {
    let mut t = T::new();
    t.ok(create_req("/q", b"", anyone(), 0));
    t.ok(create_req("/q/in", b"1", anyone(), 0));
    t.setquota("/q", limits(-1, -1, -1, -1));
    // A nested quota (zkCli refuses one, raw creates do not).
    t.ok(create_req("/zookeeper/quota/q/in", b"", anyone(), 0));
    t.ok(create_req(
        "/zookeeper/quota/q/in/zookeeper_limits",
        &limits(5, -1, -1, -1),
        anyone(),
        0,
    ));
    t.ok(create_req(
        "/zookeeper/quota/q/in/zookeeper_stats",
        b"",
        anyone(),
        0,
    ));
    assert_eq!(t.stats("/q/in"), "count=1,bytes=1");
    t.ok(create_req("/q/in/x", b"xx", anyone(), 0));
    assert_eq!(t.stats("/q/in"), "count=2,bytes=3");
    assert_eq!(t.stats("/q"), "count=2,bytes=1");
    // The limits node gone, the outer quota counts again.
    t.ok(delete_req("/zookeeper/quota/q/in/zookeeper_limits", -1));
    t.ok(create_req("/q/in/y", b"yyy", anyone(), 0));
    assert_eq!(t.stats("/q"), "count=3,bytes=4");
    assert_eq!(t.stats("/q/in"), "count=2,bytes=3");
    // Without a stats node the write passes uncounted, with a warning for the log.
    t.ok(delete_req("/zookeeper/quota/q/zookeeper_stats", -1));
    let r = t.ok(create_req("/q/z", b"", anyone(), 0));
    assert_eq!(
        r.quota_warnings,
        vec![QuotaWarning::MissingStats {
            path: "/zookeeper/quota/q/zookeeper_stats".into()
        }]
    );
    // Stats a client overwrote are added to as they are, unknown keys kept.
    t.ok(create_req(
        "/zookeeper/quota/q/zookeeper_stats",
        b"",
        anyone(),
        0,
    ));
    assert_eq!(t.stats("/q"), "count=5,bytes=6");
    t.ok(set_req(
        "/zookeeper/quota/q/zookeeper_stats",
        b"count=1,bytes=2=;zz=5;aa=-1",
        -1,
    ));
    t.ok(create_req("/q/w", b"w", anyone(), 0));
    assert_eq!(t.stats("/q"), "count=2,bytes=3=;aa=-1;zz=5");
    // Stats that do not read are left alone, with a warning.
    t.ok(set_req("/zookeeper/quota/q/zookeeper_stats", b"junk", -1));
    let r = t.ok(create_req("/q/v", b"v", anyone(), 0));
    assert!(matches!(
        r.quota_warnings.as_slice(),
        [QuotaWarning::UnreadableStats { .. }]
    ));
    assert_eq!(t.stats("/q"), "junk");
}

#[test]
fn quota_soft_limits_warn_and_hard_limits_refuse_when_enforced() {
    for enforce in [false, true] {
        let mut t = T::with(TreeConfig {
            enforce_quota: enforce,
            ..TreeConfig::default()
        });
        t.ok(create_req("/h", b"0123456789", anyone(), 0));
        t.setquota("/h", limits(-1, -1, 2, 12));
        assert_eq!(t.stats("/h"), "count=1,bytes=10");
        t.ok(create_req("/h/a", b"ab", anyone(), 0));
        let over = t.req(create_req("/h/b", b"", anyone(), 0));
        let warning = QuotaWarning::Exceeded {
            prefix: "/h".into(),
            limit: quota::Limit::Count,
            current: 3,
            max: 2,
            hard: true,
            refused: enforce,
        };
        assert_eq!(over.quota_warnings, vec![warning]);
        if enforce {
            assert_eq!(over.err, ErrorCode::QuotaExceeded);
            assert_eq!(t.stats("/h"), "count=2,bytes=12");
            // The quota check comes before the version check.
            let r = t.req(set_req("/h/a", b"abc", 7));
            assert_eq!(r.err, ErrorCode::QuotaExceeded);
            // A multi is checked against the tree before it: each op alone fits.
            t.ok(delete_req("/h/a", -1));
            let r = t.ok(Request::Multi(vec![
                create_req("/h/m1", b"1", anyone(), 0),
                create_req("/h/m2", b"", anyone(), 0),
            ]));
            assert_eq!(
                r.response,
                Response::Multi(vec![
                    MultiResult::Create("/h/m1".into()),
                    MultiResult::Create("/h/m2".into())
                ])
            );
            assert_eq!(t.stats("/h"), "count=3,bytes=11");
            // A refused op rolls back the ops before it, stats included.
            let r = t.ok(Request::Multi(vec![
                delete_req("/h/m1", -1),
                create_req("/h/m3", b"", anyone(), 0),
            ]));
            assert_eq!(
                r.response,
                Response::Multi(vec![
                    MultiResult::Error(ErrorCode::Ok),
                    MultiResult::Error(ErrorCode::QuotaExceeded)
                ])
            );
            assert_eq!(t.stats("/h"), "count=3,bytes=11");
            // Limits that do not read fail the request, a multi as a whole.
            t.ok(set_req(
                "/zookeeper/quota/h/zookeeper_limits",
                b"count=x",
                -1,
            ));
            let r = t.req(create_req("/h/x", b"", anyone(), 0));
            assert_eq!(r.err, ErrorCode::MarshallingError);
            let r = t.req(Request::Multi(vec![create_req("/h/x", b"", anyone(), 0)]));
            assert_eq!(
                (r.err, r.response),
                (ErrorCode::MarshallingError, Response::Empty)
            );
            assert!(t.tree.node("/h/x").is_none());
        } else {
            assert_eq!(over.err, ErrorCode::Ok);
            assert_eq!(t.stats("/h"), "count=3,bytes=12");
        }
    }
    // Soft limits never refuse; ZooKeeper's wording for the log.
    let mut t = T::with(TreeConfig {
        enforce_quota: true,
        ..TreeConfig::default()
    });
    t.ok(create_req("/s", b"", anyone(), 0));
    t.setquota("/s", limits(1, 2, -1, -1));
    let r = t.ok(create_req("/s/x", b"xyz", anyone(), 0));
    let logged: Vec<String> = r.quota_warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(
        logged,
        [
            "Quota exceeded: /s [current count=2, softCountLimit=1]",
            "Quota exceeded: /s [current bytes=3, softByteLimit=2]"
        ]
    );
    assert_eq!(t.stats("/s"), "count=2,bytes=3");
}

#[test]
fn quota_stats_survive_a_snapshot_and_count_once_after() {
    let mut t = T::with(TreeConfig {
        extended_types_enabled: true,
        ..TreeConfig::default()
    });
    t.ok(create_req("/q", b"abc", anyone(), 0));
    t.setquota("/q", limits(-1, -1, -1, -1));
    t.ok(create_req("/q/c", b"c", anyone(), 4));
    t.req(ttl_req("/q/t", 5, 1000));
    assert_eq!(t.stats("/q"), "count=3,bytes=4");
    let snap = t.tree.encode_snapshot();
    let mut back = DataTree::decode_snapshot(&snap).unwrap();
    assert_eq!(back, t.tree);
    // The restored tree knows /q is under quota, and counts a new node once.
    let e = Entry {
        session_id: S1,
        time_ms: 1,
        identities: vec![],
        op: EntryOp::Request(create_req("/q/new", b"nn", anyone(), 0)),
    };
    let zxid = t.zxid + 1;
    let a = t.tree.apply(zxid, &e);
    let b = back.apply(zxid, &e);
    assert_eq!(a, b);
    assert_eq!(t.stats("/q"), "count=4,bytes=6");
    assert_eq!(back, t.tree);
    assert_eq!(back.encode_snapshot(), t.tree.encode_snapshot());
}

#[test]
fn from_parts_builds_what_a_restore_would_and_checks_the_same() {
    let open: Arc<[Acl]> = open_acl_unsafe().into();
    let node = |p: &str, cversion: i32| {
        (
            p.to_string(),
            Some(p.as_bytes().to_vec()),
            Arc::clone(&open),
            Stat {
                czxid: 1,
                mzxid: 1,
                pzxid: 1,
                cversion,
                data_length: p.len() as i32,
                // Recomputed from the nodes given.
                num_children: 99,
                ..Stat::default()
            },
        )
    };
    let t = DataTree::from_parts(
        TreeConfig::default(),
        vec![(7, 5000, vec![1; 16])],
        42,
        vec![node("/", 3), node("/a", 5), node("/a/b", 0), node("/c", 0)],
    )
    .unwrap();
    assert_eq!((t.node_count(), t.last_zxid()), (4, 42));
    let a = t.node("/a").unwrap();
    assert_eq!(a.stat.num_children, 1);
    // Stored: 5 creations; shown: 2 * 5 - 1 children.
    assert_eq!(a.client_stat().cversion, 9);
    assert_eq!(t.session(7).map(|s| s.timeout_ms), Some(5000));
    assert_eq!(
        t.encode_snapshot(),
        DataTree::decode_snapshot(&t.encode_snapshot())
            .unwrap()
            .encode_snapshot()
    );
    // Out of order, or a child before its parent: refused as a restore refuses them.
    for nodes in [
        vec![node("/", 0), node("/c", 0), node("/a", 0)],
        vec![node("/", 0), node("/a/b", 0)],
        vec![node("/a", 0)],
    ] {
        assert!(DataTree::from_parts(TreeConfig::default(), Vec::new(), 1, nodes).is_err());
    }
}

// ---- reconfig, checked against a 3-member ZooKeeper 3.8 ensemble (scripts/reconfig-diff.py) ----

const ENSEMBLE_CFG: &str = "server.1=localhost:2001:3001:participant\n\
                            server.2=localhost:2002:3002:participant\n\
                            server.3=localhost:2003:3003:participant\n\
                            version=0";

fn ensemble() -> T {
    T::with(TreeConfig {
        config_node_data: ENSEMBLE_CFG.as_bytes().to_vec(),
        reconfig_enabled: true,
        ..Default::default()
    })
}

fn super_id() -> Vec<Id> {
    vec![Id {
        scheme: "super".into(),
        id: "super".into(),
    }]
}

fn reconfig_req(joining: &str, leaving: &str, members: &str, from: i64) -> Request {
    Request::Reconfig(ReconfigRequest {
        joining_servers: joining.into(),
        leaving_servers: leaving.into(),
        new_members: members.into(),
        cur_config_id: from,
    })
}

/// The reply's config text and stat.
fn reconfigured(r: &ApplyResult) -> (String, Stat) {
    assert_eq!(r.err, ErrorCode::Ok, "{r:?}");
    match &r.response {
        Response::Data(Some(d), s) => (String::from_utf8(d.clone()).unwrap(), s.clone()),
        other => panic!("not data: {other:?}"),
    }
}

const OBSERVER: &str = "server.100=0.0.0.0:4001:4002:observer;0.0.0.0:4003";

#[test]
fn ensemble_config_node_is_zookeepers() {
    let t = ensemble();
    let n = t.tree.node("/zookeeper/config").unwrap();
    assert_eq!(n.data.as_deref(), Some(ENSEMBLE_CFG.as_bytes()));
    // ZooKeeper writes it with setData(-1): version and aversion -1, world read-only.
    assert_eq!(n.stat.version, -1);
    assert_eq!(n.stat.aversion, -1);
    assert_eq!(&*n.acl, &acl::read_acl_unsafe()[..]);
}

#[test]
fn reconfig_adds_and_removes_an_observer_like_zookeeper() {
    let mut t = ensemble();
    let r = t.req_as(S1, super_id(), reconfig_req(OBSERVER, "", "", -1));
    let zxid = t.zxid;
    let (text, stat) = reconfigured(&r);
    assert_eq!(
        text,
        format!(
            "server.1=localhost:2001:3001:participant\nserver.2=localhost:2002:3002:participant\n\
             server.3=localhost:2003:3003:participant\n{OBSERVER}\nversion={zxid:x}"
        )
    );
    assert_eq!((stat.version, stat.mzxid, stat.aversion), (-1, zxid, -1));
    assert_eq!(stat.data_length as usize, text.len());
    assert_eq!(
        r.triggers,
        vec![trig("/zookeeper/config", EventType::NodeDataChanged)]
    );
    // What a read shows afterwards is the reply's.
    let n = t.tree.node("/zookeeper/config").unwrap();
    assert_eq!(n.data.as_deref(), Some(text.as_bytes()));

    let r = t.req_as(S1, super_id(), reconfig_req("", "100", "", -1));
    let (text, _) = reconfigured(&r);
    assert!(!text.contains("server.100"), "{text}");
    let version = t.zxid;
    assert!(text.ends_with(&format!("\nversion={version:x}")));
    // fromConfig: the current version passes, any other is BadVersion (before the ACL check).
    assert_eq!(
        t.req(reconfig_req(OBSERVER, "", "", version + 1)).err,
        ErrorCode::BadVersion
    );
    let r = t.req_as(S1, super_id(), reconfig_req(OBSERVER, "", "", version));
    assert!(reconfigured(&r).0.contains(OBSERVER));
}

#[test]
fn reconfig_errors_come_in_zookeepers_order() {
    let mut t = ensemble();
    // Well-formed, no super: NoAuth (the node is world read-only).
    let no_super = t.req(reconfig_req(
        "server.999=0.0.0.0:1234:2345:observer;3456",
        "",
        "",
        -1,
    ));
    assert_eq!(no_super.err, ErrorCode::NoAuth);
    // Malformed input is BadArguments even without super; numbers Java cannot parse are
    // MarshallingError, as ZooKeeper answers.
    for (joining, leaving, members, err) in [
        ("some thing", "", "", ErrorCode::BadArguments),
        ("server.7=localhost:1:2", "", "", ErrorCode::BadArguments),
        ("server.7=localhost:5:5;6", "", "", ErrorCode::BadArguments),
        (
            "server.7=localhost:5:6:witness;7",
            "",
            "",
            ErrorCode::BadArguments,
        ),
        ("server.7=localhost:x:6;7", "", "", ErrorCode::BadArguments),
        (
            "server.x=localhost:5:6;7",
            "",
            "",
            ErrorCode::MarshallingError,
        ),
        ("", "x", "", ErrorCode::MarshallingError),
        ("", "", "garbage", ErrorCode::BadArguments),
        // Fewer than two voters left.
        ("", "2,3", "", ErrorCode::BadArguments),
        (
            "",
            "",
            "server.1=localhost:2001:3001:participant;2181",
            ErrorCode::BadArguments,
        ),
    ] {
        for ids in [vec![], super_id()] {
            let r = t.req_as(S1, ids, reconfig_req(joining, leaving, members, -1));
            assert_eq!(r.err, err, "{joining:?} {leaving:?} {members:?}");
            assert!(r.triggers.is_empty());
        }
    }
    // Nothing changed.
    let n = t.tree.node("/zookeeper/config").unwrap();
    assert_eq!(n.data.as_deref(), Some(ENSEMBLE_CFG.as_bytes()));
    // Disabled: before everything else.
    let mut off = T::with(TreeConfig {
        config_node_data: ENSEMBLE_CFG.as_bytes().to_vec(),
        ..Default::default()
    });
    assert_eq!(
        off.req(reconfig_req("some thing", "", "", 5)).err,
        ErrorCode::ReconfigDisabled
    );
}

#[test]
fn reconfig_orders_servers_as_zookeepers_hash_map() {
    // Seen on ZooKeeper 3.8: from 1,2,3,7 an incremental add of "8=..." (no "server." needed)
    // prints 8 first (8 buckets), and adding 17 then 9 to 1,2,3,7,8 grows the map to 16
    // buckets, where 17 follows 1.
    let mut t = ensemble();
    let add =
        |t: &mut T, j: &str| reconfigured(&t.req_as(S1, super_id(), reconfig_req(j, "", "", -1))).0;
    add(&mut t, "server.7=localhost:5001:5002;0.0.0.0:5003");
    let text = add(&mut t, "8=localhost:6001:6002;0.0.0.0:6003");
    let ids: Vec<&str> = text.lines().map(|l| l.split('=').next().unwrap()).collect();
    assert_eq!(
        ids,
        ["server.8", "server.1", "server.2", "server.3", "server.7", "version"]
    );
    assert!(text.contains("server.7=localhost:5001:5002:participant;0.0.0.0:5003\n"));
    let text = add(
        &mut t,
        "server.17=0.0.0.0:7001:7002:observer;7003,server.9=0.0.0.0:8001:8002:observer;8003",
    );
    let ids: Vec<&str> = text.lines().map(|l| l.split('=').next().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "server.1",
            "server.17",
            "server.2",
            "server.3",
            "server.7",
            "server.8",
            "server.9",
            "version"
        ]
    );
    assert!(text.contains("server.17=0.0.0.0:7001:7002:observer;0.0.0.0:7003\n"));
    // Leaving ids that are not members is no error; an empty reconfig makes a new version.
    let before = t
        .tree
        .node("/zookeeper/config")
        .unwrap()
        .data
        .clone()
        .unwrap();
    let text = add(&mut t, "");
    let (b, a) = (String::from_utf8(before).unwrap(), text.clone());
    assert_eq!(
        b.rsplit_once('\n').unwrap().0,
        a.rsplit_once('\n').unwrap().0
    );
    assert_ne!(b, a);
}

#[test]
fn reconfig_with_new_members_replaces_the_membership() {
    let mut t = ensemble();
    let members = "server.1=localhost:2001:3001:participant;2181,\
                   server.2=localhost:2002:3002;127.0.0.1:2182\n\
                   server.5=[::1]:2005:3005:observer;[::1]:2185";
    let r = t.req_as(S1, super_id(), reconfig_req("", "", members, -1));
    let (text, _) = reconfigured(&r);
    assert_eq!(
        text,
        format!(
            "server.1=localhost:2001:3001:participant;0.0.0.0:2181\n\
             server.2=localhost:2002:3002:participant;127.0.0.1:2182\n\
             server.5=[::1]:2005:3005:observer;[::1]:2185\nversion={:x}",
            t.zxid
        )
    );
    let cfg = reconfig::ServerConfig::parse(text.as_bytes()).unwrap();
    assert_eq!(cfg.version, t.zxid);
    assert_eq!(cfg.voters().map(|m| m.id).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(cfg.members[2].quorum_addr(), "[::1]:2005");
    // Rendering what was parsed gives the same bytes.
    assert_eq!(cfg.render(), text.as_bytes());
    // The lines the node shows for members without a client address are taken back as they
    // are (ZooKeeper asks for a client address of joiners only).
    let initial = ENSEMBLE_CFG.rsplit_once('\n').unwrap().0.replace('\n', ",");
    let r = t.req_as(S1, super_id(), reconfig_req("", "", &initial, -1));
    let (text, _) = reconfigured(&r);
    assert_eq!(
        text,
        format!(
            "{}\nversion={:x}",
            ENSEMBLE_CFG.rsplit_once('\n').unwrap().0,
            t.zxid
        )
    );
}

#[test]
fn reconfig_survives_a_snapshot() {
    let mut t = ensemble();
    reconfigured(&t.req_as(S1, super_id(), reconfig_req(OBSERVER, "", "", -1)));
    let restored = DataTree::decode_snapshot(&t.tree.encode_snapshot()).unwrap();
    assert_eq!(
        restored.node("/zookeeper/config"),
        t.tree.node("/zookeeper/config")
    );
}

#[test]
fn zoo_cfg_membership_renders_the_same_whatever_the_line_order() {
    let m = |id: i64, observer: bool| reconfig::Member {
        id,
        host: "h".into(),
        quorum_port: 1000 + id as u16,
        election_port: 2000 + id as u16,
        observer,
        client: (id == 2).then(|| ("0.0.0.0".to_string(), 2181)),
    };
    let a = reconfig::ServerConfig::from_members(vec![m(17, true), m(2, false), m(1, false)]);
    let b = reconfig::ServerConfig::from_members(vec![m(1, false), m(17, true), m(2, false)]);
    assert_eq!(a.render(), b.render());
    assert_eq!(
        String::from_utf8(a.render()).unwrap(),
        "server.1=h:1001:2001:participant\nserver.17=h:1017:2017:observer\n\
         server.2=h:1002:2002:participant;0.0.0.0:2181\nversion=0"
    );
}

/// Evidence with every field set and `events` connection events.
fn rich_evidence(events: usize) -> Evidence {
    use crate::obituary::{ConnEvent, ConnEventKind};
    Evidence {
        cause: EndCause::ConnectionLost,
        detail: "connection lost 5000 ms before; not resumed".into(),
        remote: "127.0.0.1:5555".into(),
        member: 2,
        requested_timeout_ms: 6000,
        silent_ms: 4012,
        last_op: "setData".into(),
        stall_forgiven_ms: 0,
        history: (0..events)
            .map(|i| ConnEvent {
                at_ms: 1_000 + i as i64,
                member: 2,
                kind: if i % 2 == 0 {
                    ConnEventKind::Resumed
                } else {
                    ConnEventKind::Disconnected
                },
                remote: format!("127.0.0.1:{}", 5000 + i),
                cause: if i % 2 == 0 {
                    String::new()
                } else {
                    "reset".into()
                },
            })
            .collect(),
    }
}

#[test]
fn ended_sessions_leave_obituaries_that_snapshots_carry() {
    let mut t = T::new();
    t.session(S3);
    t.req_as(S3, vec![], create_req("/brokers", b"", anyone(), 0));
    t.req_as(S3, vec![], create_req("/brokers/ids", b"", anyone(), 0));
    t.req_as(S3, vec![], create_req("/brokers/ids/1", b"", anyone(), 1));
    let created_ms = t.tree.session(S3).unwrap().created_ms;
    assert!(created_ms > 0);
    let res = t.entry(
        0,
        vec![],
        EntryOp::CloseSession {
            session_id: S3,
            evidence: rich_evidence(40),
        },
    );
    let ob = res.obituary.expect("an obituary");
    assert_eq!(ob.session_id, S3);
    assert_eq!((ob.zxid, ob.ended_ms), (t.zxid, 1000 * t.zxid));
    assert_eq!((ob.created_ms, ob.timeout_ms), (created_ms, 30000));
    assert_eq!(ob.ephemerals, vec!["/brokers/ids/1".to_string()]);
    assert_eq!(ob.ephemerals_deleted, 1);
    assert_eq!(obituary::kafka_broker_ids(&ob.ephemerals), vec![1]);
    // Bounded: only the latest connection events are kept.
    assert_eq!(ob.evidence.history.len(), obituary::HISTORY_KEPT);
    assert_eq!(ob.evidence.history.last().unwrap().at_ms, 1_039);
    assert_eq!(t.tree.obituaries().cloned().collect::<Vec<_>>(), vec![ob]);

    // A second close of the same session ends nothing and leaves no second obituary.
    let again = t.entry(
        0,
        vec![],
        EntryOp::CloseSession {
            session_id: S3,
            evidence: rich_evidence(1),
        },
    );
    assert!(again.obituary.is_none());
    // The client's own close.
    let closed = t.req_as(S2, vec![], Request::CloseSession);
    assert_eq!(
        closed.obituary.map(|o| o.evidence.cause),
        Some(EndCause::ClosedByClient)
    );
    assert_eq!(t.tree.obituaries().len(), 2);

    // Snapshots carry the ring and the sessions' creation times.
    let snap = t.tree.encode_snapshot();
    let back = DataTree::decode_snapshot(&snap).unwrap();
    assert_eq!(back, t.tree);
    assert_eq!(back.session(S1).unwrap().created_ms, 1000);

    // The ring keeps the latest `obituaries_kept`.
    let mut small = back.clone();
    small.set_config(TreeConfig {
        obituaries_kept: 1,
        ..TreeConfig::default()
    });
    let kept: Vec<_> = small.obituaries().map(|o| o.session_id).collect();
    assert_eq!(kept, vec![S2]);
    let mut t = T {
        tree: small,
        zxid: t.zxid,
    };
    t.req_as(S1, vec![], Request::CloseSession);
    let kept: Vec<_> = t.tree.obituaries().map(|o| o.session_id).collect();
    assert_eq!(kept, vec![S1]);
}

#[test]
fn a_close_written_before_evidence_still_reads() {
    // Kind 2: session 0, time, no identities, the closed session, its reason.
    let mut w = corral_proto::Writer::new();
    w.i64(0);
    w.i64(77);
    w.i32(0);
    w.i32(2);
    w.i64(9);
    w.string("expired: no packet");
    let e = Entry::decode(&w.buf).unwrap();
    assert_eq!(
        e.op,
        EntryOp::CloseSession {
            session_id: 9,
            evidence: Evidence::bare(EndCause::Unknown, "expired: no packet"),
        }
    );
}
