//! The `corral-client` crate against a live corral server that each test starts itself
//! (tests/common: `corral serve` on a free 127.0.0.1 port, stopped on drop).
//!
//! These were crates/client/tests/server.rs, which ran only when CORRAL_TEST_ZK pointed at a
//! server and otherwise passed without checking anything. The client's tests that need no
//! server (a scripted fake one) stay in crates/client/tests/mock.rs.

mod common;

use std::time::Duration;

use common::CorralServer;
use corral_client::proto::{
    CreateMode, CreateRequest, DeleteRequest, ErrorCode, EventType, KeeperState, MultiResult,
    Request, Response, SetDataRequest, WatcherType,
};
use corral_client::{open_acl_unsafe, ClientBuilder, ClientError, ConnectOptions, Connection};

fn unique_root(name: &str) -> String {
    format!(
        "/{}",
        common::unique_name(&format!("corral-client-test-{name}"))
    )
}

async fn connect(addr: &str) -> Connection {
    Connection::connect(addr, ConnectOptions::default())
        .await
        .expect("connect")
}

/// Deletes a subtree, children first (test clean-up).
async fn delete_tree(c: &Connection, path: &str) {
    let mut stack = vec![path.to_string()];
    let mut order = Vec::new();
    while let Some(p) = stack.pop() {
        if let Ok(children) = c.get_children(&p, false).await {
            for ch in children {
                stack.push(format!("{}/{}", p.trim_end_matches('/'), ch));
            }
        }
        order.push(p);
    }
    for p in order.into_iter().rev() {
        let _ = c.delete(&p, -1).await;
    }
}

#[tokio::test]
async fn handshake_reports_session() {
    let server = CorralServer::start("");
    let addr = server.addr();
    let c = connect(&addr).await;
    assert_ne!(c.session_id(), 0);
    assert_eq!(c.passwd().len(), 16);
    assert!(c.negotiated_timeout_ms() > 0);
    assert_eq!(c.connect_response().read_only, Some(false));
    c.close().await.expect("close");
    assert!(matches!(
        c.get_data("/", false).await,
        Err(ClientError::Closed)
    ));
}

#[tokio::test]
async fn handshake_without_read_only_byte() {
    let server = CorralServer::start("");
    let addr = server.addr();
    let opts = ConnectOptions {
        read_only: None,
        ..Default::default()
    };
    let c = Connection::connect(&addr, opts)
        .await
        .expect("connect as a 3.4 client");
    // A server answers a 3.4 handshake in kind, without the trailing byte.
    assert_eq!(c.connect_response().read_only, None);
    assert!(c.exists("/", false).await.expect("exists /").is_some());
    c.close().await.expect("close");
}

#[tokio::test]
async fn create_get_set_delete() {
    let server = CorralServer::start("");
    let addr = server.addr();
    let c = connect(&addr).await;
    let root = unique_root("crud");
    let acl = open_acl_unsafe();

    assert_eq!(
        c.create(&root, b"hello", &acl, CreateMode::Persistent)
            .await
            .expect("create"),
        root
    );
    let err = c
        .create(&root, b"again", &acl, CreateMode::Persistent)
        .await
        .expect_err("exists");
    assert_eq!(err.code(), Some(ErrorCode::NodeExists));

    let (data, stat) = c.get_data(&root, false).await.expect("get");
    assert_eq!(data, b"hello");
    assert_eq!(stat.version, 0);
    assert_eq!(stat.data_length, 5);
    assert_eq!(stat.czxid, stat.mzxid);

    let stat2 = c.set_data(&root, b"world", 0).await.expect("set");
    assert_eq!(stat2.version, 1);
    assert!(stat2.mzxid > stat.mzxid);
    let bad = c.set_data(&root, b"x", 0).await.expect_err("bad version");
    assert_eq!(bad.code(), Some(ErrorCode::BadVersion));

    let seq = c
        .create(
            &format!("{root}/s-"),
            b"",
            &acl,
            CreateMode::PersistentSequential,
        )
        .await
        .expect("seq");
    assert_eq!(seq, format!("{root}/s-0000000000"));
    let (p, st) = c
        .create2(&format!("{root}/e"), b"", &acl, CreateMode::Ephemeral)
        .await
        .expect("create2");
    assert_eq!(p, format!("{root}/e"));
    assert_eq!(st.ephemeral_owner, c.session_id());

    let mut kids = c.get_children(&root, false).await.expect("children");
    kids.sort();
    assert_eq!(kids, vec!["e".to_string(), "s-0000000000".to_string()]);
    let (_, parent) = c.get_children2(&root, false).await.expect("children2");
    assert_eq!(parent.num_children, 2);

    let ne = c.delete(&root, -1).await.expect_err("not empty");
    assert_eq!(ne.code(), Some(ErrorCode::NotEmpty));
    let (acl_back, _) = c.get_acl(&root).await.expect("getAcl");
    assert_eq!(acl_back, acl);
    assert_eq!(c.sync(&root).await.expect("sync"), root);

    delete_tree(&c, &root).await;
    assert!(c.exists(&root, false).await.expect("exists").is_none());
    let nn = c.get_data(&root, false).await.expect_err("gone");
    assert_eq!(nn.code(), Some(ErrorCode::NoNode));
    // Server errors come back as replies from the low-level call, not as Err.
    let reply = c
        .request(Request::Delete(DeleteRequest {
            path: root.clone(),
            version: -1,
        }))
        .await
        .expect("reply");
    assert_eq!(reply.err, ErrorCode::NoNode);
    assert_eq!(reply.response, Response::Empty);
    assert!(c.last_zxid() >= stat2.mzxid);
    c.close().await.expect("close");
}

#[tokio::test]
async fn pipelined_requests_keep_order() {
    let server = CorralServer::start("");
    let addr = server.addr();
    let c = connect(&addr).await;
    let root = unique_root("pipeline");
    c.create(&root, b"", &open_acl_unsafe(), CreateMode::Persistent)
        .await
        .expect("create");
    // Many requests in flight at once from concurrent callers, each must get its own reply.
    let mut tasks = Vec::new();
    for i in 0..200 {
        let c = c.clone();
        let path = format!("{root}/n{i}");
        tasks.push(tokio::spawn(async move {
            let created = c
                .create(
                    &path,
                    i.to_string().as_bytes(),
                    &open_acl_unsafe(),
                    CreateMode::Persistent,
                )
                .await;
            let (data, _) = c.get_data(&path, false).await.expect("get");
            (created.expect("create"), path, data, i)
        }));
    }
    for t in tasks {
        let (created, path, data, i) = t.await.expect("join");
        assert_eq!(created, path);
        assert_eq!(data, i.to_string().as_bytes());
    }
    assert_eq!(c.get_children(&root, false).await.expect("kids").len(), 200);
    delete_tree(&c, &root).await;
    c.close().await.expect("close");
}

#[tokio::test]
async fn watches_fire() {
    let server = CorralServer::start("");
    let addr = server.addr();
    let c = connect(&addr).await;
    let other = connect(&addr).await;
    let root = unique_root("watch");
    let acl = open_acl_unsafe();

    // Exist watch on a missing node fires on creation.
    assert!(c.exists(&root, true).await.expect("exists").is_none());
    other
        .create(&root, b"a", &acl, CreateMode::Persistent)
        .await
        .expect("create");
    let ev = tokio::time::timeout(Duration::from_secs(5), c.next_event())
        .await
        .expect("event in time")
        .expect("event");
    assert_eq!(ev.event_type, EventType::NodeCreated);
    assert_eq!(ev.state, KeeperState::SyncConnected);
    assert_eq!(ev.path, root);

    // Data watch fires once on change, child watch on a new child.
    c.get_data(&root, true).await.expect("get");
    c.get_children(&root, true).await.expect("children");
    other.set_data(&root, b"b", -1).await.expect("set");
    other.set_data(&root, b"c", -1).await.expect("set again");
    other
        .create(&format!("{root}/kid"), b"", &acl, CreateMode::Persistent)
        .await
        .expect("kid");
    let ev = tokio::time::timeout(Duration::from_secs(5), c.next_event())
        .await
        .expect("in time")
        .expect("event");
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::NodeDataChanged, root.as_str())
    );
    let ev = tokio::time::timeout(Duration::from_secs(5), c.next_event())
        .await
        .expect("in time")
        .expect("event");
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::NodeChildrenChanged, root.as_str())
    );
    // A watch event is delivered before the change can be read; a later read sees it.
    let (data, _) = c.get_data(&root, false).await.expect("get");
    assert_eq!(data, b"c");
    // One-shot: the second set did not fire again.
    assert!(c.try_next_event().is_none());

    delete_tree(&other, &root).await;
    other.close().await.expect("close other");
    c.close().await.expect("close");
}

#[tokio::test]
async fn multi_commits_or_fails_atomically() {
    let server = CorralServer::start("");
    let addr = server.addr();
    let c = connect(&addr).await;
    let root = unique_root("multi");
    let acl = open_acl_unsafe();
    let create = |p: &str| {
        Request::Create(CreateRequest {
            path: p.to_string(),
            data: Some(b"m".to_vec()),
            acl: acl.clone(),
            flags: 0,
        })
    };

    let ok = c
        .multi(vec![
            create(&root),
            create(&format!("{root}/a")),
            Connection::check_op(&root, 0),
            Request::SetData(SetDataRequest {
                path: format!("{root}/a"),
                data: Some(b"z".to_vec()),
                version: 0,
            }),
        ])
        .await
        .expect("multi");
    assert_eq!(ok.len(), 4);
    assert_eq!(ok[0], MultiResult::Create(root.clone()));
    assert_eq!(ok[2], MultiResult::Check);
    assert!(matches!(ok[3], MultiResult::SetData(ref s) if s.version == 1));

    // Second op fails: nothing is applied, and every result says why it did not happen.
    let reply = c
        .request(Request::Multi(vec![
            create(&format!("{root}/b")),
            create(&format!("{root}/a")),
            Request::Delete(DeleteRequest {
                path: format!("{root}/a"),
                version: -1,
            }),
        ]))
        .await
        .expect("reply");
    let expected_results = vec![
        MultiResult::Error(ErrorCode::Ok),
        MultiResult::Error(ErrorCode::NodeExists),
        MultiResult::Error(ErrorCode::RuntimeInconsistency),
    ];
    match reply.err {
        // ZooKeeper sends Ok in the header and the per-op errors in the body.
        ErrorCode::Ok => assert_eq!(reply.response, Response::Multi(expected_results)),
        other => panic!("multi header err {other:?}, response {:?}", reply.response),
    }
    assert!(c
        .exists(&format!("{root}/b"), false)
        .await
        .expect("exists")
        .is_none());

    delete_tree(&c, &root).await;
    c.close().await.expect("close");
}

#[tokio::test]
async fn auth_and_acl() {
    let server = CorralServer::start("");
    let addr = server.addr();
    let c = connect(&addr).await;
    let root = unique_root("auth");
    c.add_auth("digest", b"alice:secret")
        .await
        .expect("addauth");
    let who = c.who_am_i().await.expect("whoami");
    assert!(
        who.iter()
            .any(|i| i.auth_scheme == "digest" && i.user == "alice"),
        "{who:?}"
    );
    c.create(
        &root,
        b"x",
        &corral_client::creator_all_acl(),
        CreateMode::Persistent,
    )
    .await
    .expect("create");
    let (acl, _) = c.get_acl(&root).await.expect("acl");
    assert_eq!(acl.len(), 1);
    assert_eq!(acl[0].id.scheme, "digest");
    assert!(acl[0].id.id.starts_with("alice:"));

    let stranger = connect(&addr).await;
    let denied = stranger.get_data(&root, false).await.expect_err("no auth");
    assert_eq!(denied.code(), Some(ErrorCode::NoAuth));
    stranger.close().await.expect("close stranger");

    c.delete(&root, -1).await.expect("delete");
    c.close().await.expect("close");
}

#[tokio::test]
async fn abort_then_resume_session() {
    let server = CorralServer::start("");
    let addr = server.addr();
    let c = connect(&addr).await;
    let root = unique_root("resume");
    let eph = c
        .create(&root, b"", &open_acl_unsafe(), CreateMode::Ephemeral)
        .await
        .expect("ephemeral");
    let (sid, pw, zxid) = (c.session_id(), c.passwd(), c.last_zxid());
    c.abort();
    assert!(matches!(
        c.exists("/", false).await,
        Err(ClientError::Closed)
    ));
    assert!(c.next_event().await.is_none());

    // Same session, same ephemeral owner.
    let opts = ConnectOptions {
        session_id: sid,
        passwd: pw.clone(),
        last_zxid_seen: zxid,
        ..Default::default()
    };
    let r = Connection::connect(&addr, opts).await.expect("resume");
    assert_eq!(r.session_id(), sid);
    let stat = r
        .exists(&eph, false)
        .await
        .expect("exists")
        .expect("ephemeral survived");
    assert_eq!(stat.ephemeral_owner, sid);

    // A wrong password gets the expired handshake. (ZooKeeper also drops the connection that
    // holds the session when anyone presents its id, so `r` is not used after this.)
    let mut bad_pw = pw.clone();
    bad_pw[0] ^= 0xff;
    let opts = ConnectOptions {
        session_id: sid,
        passwd: bad_pw,
        ..Default::default()
    };
    assert!(matches!(
        Connection::connect(&addr, opts).await,
        Err(ClientError::SessionExpired)
    ));
    r.abort();

    // The session itself survived the wrong password.
    let opts = ConnectOptions {
        session_id: sid,
        passwd: pw.clone(),
        ..Default::default()
    };
    let r = Connection::connect(&addr, opts)
        .await
        .expect("resume again");
    assert!(r.exists(&eph, false).await.expect("exists").is_some());

    // After close, the session is gone: resuming it is refused, the ephemeral deleted.
    r.close().await.expect("close");
    let opts = ConnectOptions {
        session_id: sid,
        passwd: pw,
        ..Default::default()
    };
    assert!(matches!(
        Connection::connect(&addr, opts).await,
        Err(ClientError::SessionExpired)
    ));
    let o = connect(&addr).await;
    assert!(o.exists(&eph, false).await.expect("exists").is_none());
    o.close().await.expect("close");
}

#[tokio::test]
async fn idle_session_is_kept_alive_by_pings() {
    let server = CorralServer::start("");
    let addr = server.addr();
    // The smallest timeout a default server allows is 2 ticks (4 s); stay idle for longer.
    let opts = ConnectOptions {
        session_timeout_ms: 4000,
        ..Default::default()
    };
    let c = Connection::connect(&addr, opts).await.expect("connect");
    let t = c.negotiated_timeout_ms();
    tokio::time::sleep(Duration::from_millis(t as u64 * 3 / 2)).await;
    assert!(c.exists("/", false).await.expect("still alive").is_some());
    c.close().await.expect("close");
}

/// One connection writes 100 setData and 100 getData frames back to back without waiting:
/// replies come back in request order, and each read sees exactly the writes sent before it
/// (ZooKeeper's FIFO client order), although the writes are pipelined through consensus.
#[tokio::test]
async fn pipelined_writes_and_reads_answer_in_order() {
    use corral_client::proto::{GetDataRequest, Jute, Reader, ReplyHeader};
    let server = CorralServer::start("");
    let addr = server.addr();
    let c = connect(&addr).await;
    let root = unique_root("fifo");
    c.create(&root, b"0", &open_acl_unsafe(), CreateMode::Persistent)
        .await
        .expect("create");
    let (mut raw, _) = common::RawConn::new_session(&addr).expect("raw session");
    let mut burst = Vec::new();
    for i in 1..=100i32 {
        let set = Request::SetData(SetDataRequest {
            path: root.clone(),
            data: Some(i.to_string().into_bytes()),
            version: -1,
        });
        let get = Request::GetData(GetDataRequest {
            path: root.clone(),
            watch: false,
        });
        for (xid, req) in [(2 * i, set), (2 * i + 1, get)] {
            burst.extend_from_slice(&corral_client::proto::frame::frame(&req.to_frame_body(xid)));
        }
    }
    raw.send_raw(&burst).expect("send burst");
    let mut last_zxid = 0;
    for i in 1..=100i32 {
        for xid in [2 * i, 2 * i + 1] {
            let body = raw
                .read_frame(Duration::from_secs(10))
                .expect("read")
                .expect("a reply");
            let mut r = Reader::new(&body);
            let h = ReplyHeader::read(&mut r).expect("header");
            assert_eq!(h.xid, xid, "replies out of order");
            assert_eq!(h.err, 0);
            assert!(h.zxid >= last_zxid, "zxid went back");
            last_zxid = h.zxid;
            if xid % 2 == 1 {
                let op = corral_client::proto::OpCode::GetData;
                match Response::decode(op, &body[16..]).expect("decode") {
                    Response::Data(Some(d), stat) => {
                        assert_eq!(d, i.to_string().into_bytes(), "read {i} missed its write");
                        assert_eq!(stat.version, i);
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
    }
    delete_tree(&c, &root).await;
    c.close().await.expect("close");
}

/// maxClientCnxns counts a connection from its first bytes, not from a finished handshake:
/// connections caught half way through their handshake leave no room for another.
#[tokio::test]
async fn max_client_cnxns_counts_connections_still_handshaking() {
    use tokio::io::AsyncWriteExt;
    let server = CorralServer::start("maxClientCnxns=2");
    let addr = server.addr();
    let accepted = |mntr: &str| {
        mntr.lines()
            .find_map(|l| l.strip_prefix("zk_num_alive_connections\t"))
            .and_then(|n| n.trim().parse::<u64>().ok())
    };
    // Asked from another address: 127.0.0.1 has no slot left.
    let mntr_from_elsewhere = || async {
        use tokio::io::AsyncReadExt;
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind("127.0.0.2:0".parse().expect("addr"))
            .expect("bind 127.0.0.2");
        let mut s = socket
            .connect(addr.parse().expect("addr"))
            .await
            .expect("connect");
        s.write_all(b"mntr").await.expect("send mntr");
        let mut text = String::new();
        s.read_to_string(&mut text).await.expect("read mntr");
        text
    };
    // The start-up probe's session was closed, but its connection may still hold one of
    // 127.0.0.1's two slots for a moment: wait until the asking connection is alone.
    for _ in 0..100 {
        if accepted(&mntr_from_elsewhere().await) == Some(1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Two connections that sent only the length of a connect request.
    let mut half_open = Vec::new();
    for _ in 0..2 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.expect("tcp");
        s.write_all(&45i32.to_be_bytes()).await.expect("write");
        half_open.push(s);
    }
    // Wait until the keeper has accepted both: it counts them (and the asking connection)
    // as alive from accept.
    let mut seen = None;
    for _ in 0..100 {
        seen = accepted(&mntr_from_elsewhere().await);
        if seen >= Some(3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        seen,
        Some(3),
        "the two half-open connections and mntr's own"
    );
    let third = tokio::time::timeout(
        Duration::from_secs(5),
        Connection::connect(&addr, ConnectOptions::default()),
    )
    .await
    .expect("answered in time");
    assert!(
        third.is_err(),
        "a third connection from 127.0.0.1 was let in"
    );
    // Their slots are released when they go.
    drop(half_open);
    let mut fourth = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Ok(c) = Connection::connect(&addr, ConnectOptions::default()).await {
            fourth = Some(c);
            break;
        }
    }
    let c = fourth.expect("a connection is let in once the others closed");
    assert!(c.exists("/", false).await.expect("exists").is_some());
    c.close().await.expect("close");
}

/// `Client::raw` speaks server paths and explicit watch flags, yet the watches it leaves are
/// the client's (notifications arrive, chroot-relative, on `Client::notifications`); and
/// `Client::remove_watches` takes watches off the server and out of the client: a pending
/// one-shot hears DataWatchRemoved, a persistent stream ends, and nothing fires afterwards.
#[tokio::test]
async fn raw_watches_are_tracked_and_remove_watches_ends_them() {
    let server = CorralServer::start("");
    let addr = server.addr();
    let root = unique_root("raw");
    let node = format!("{root}/n");
    let admin = connect(&addr).await;
    for p in [&root, &node] {
        admin
            .create(p, b"", &open_acl_unsafe(), CreateMode::Persistent)
            .await
            .expect("create");
    }
    let client = ClientBuilder::new(&format!("{addr}{root}"))
        .connect()
        .await
        .expect("client");
    let mut notes = client.notifications();
    let within = Duration::from_secs(5);

    // A raw read with its watch flag: the full server path, no chroot applied.
    client
        .raw()
        .get_data_nullable(&node, true)
        .await
        .expect("raw getData");
    admin.set_data(&node, b"1", -1).await.expect("set");
    let ev = tokio::time::timeout(within, notes.recv())
        .await
        .expect("a notification")
        .expect("open");
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::NodeDataChanged, "/n")
    );

    // A typed watch, removed: its future hears so; the server has none left.
    let (_, _, watch) = client.get_data_w("/n").await.expect("getData");
    client
        .remove_watches("/n", WatcherType::Data, false)
        .await
        .expect("removeWatches");
    let ev = tokio::time::timeout(within, watch)
        .await
        .expect("the watch resolves")
        .expect("as removed");
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::DataWatchRemoved, "/n")
    );
    let again = client.remove_watches("/n", WatcherType::Data, false).await;
    assert!(
        matches!(again, Err(ClientError::Server(ErrorCode::NoWatcher))),
        "{again:?}"
    );
    // `local`: forgotten here whatever the server says.
    client
        .remove_watches("/n", WatcherType::Data, true)
        .await
        .expect("local removal");

    // A persistent watch taken away by removeWatches(Any) ends its stream.
    let mut stream = client
        .watch_persistent("/n", false)
        .await
        .expect("addWatch");
    client
        .remove_watches("/n", WatcherType::Any, false)
        .await
        .expect("remove the persistent watch");
    let end = tokio::time::timeout(within, stream.next()).await;
    assert_eq!(end, Ok(None), "the stream ends");

    // Nothing is left to fire.
    admin.set_data(&node, b"2", -1).await.expect("set");
    admin.sync(&node).await.expect("sync");
    let late = tokio::time::timeout(Duration::from_millis(300), notes.recv()).await;
    assert!(late.is_err(), "a removed watch fired: {late:?}");
    client.close().await.expect("close");
    delete_tree(&admin, &root).await;
}

/// `start` returns at once, Connecting; with `fail_fast` a call made while no server answers
/// fails with ConnectionLoss as soon as an attempt fails, and once a server is there the same
/// client connects by itself.
#[tokio::test]
async fn started_client_fails_fast_until_a_server_is_there() {
    let port = common::free_port();
    let addr = format!("127.0.0.1:{port}");
    let client = ClientBuilder::new(&addr)
        .fail_fast(true)
        .start()
        .expect("start");
    assert_eq!(client.state(), corral_client::SessionState::Connecting);
    let asked = std::time::Instant::now();
    let r = client.exists("/").await;
    assert!(matches!(r, Err(ClientError::ConnectionLoss)), "{r:?}");
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "{:?}",
        asked.elapsed()
    );
    let dir = common::fresh_temp_dir("fail-fast").expect("dir");
    let _server = CorralServer::try_start_on(dir, port, "").expect("server");
    let mut events = client.session_events();
    tokio::time::timeout(Duration::from_secs(10), async {
        while client.state() != corral_client::SessionState::Connected {
            let _ = events.recv().await;
        }
    })
    .await
    .expect("connected once the server is up");
    assert!(client.exists("/").await.expect("exists").is_some());
    client.close().await.expect("close");
}
