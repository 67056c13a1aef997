//! `Client` against a scripted in-process server, for what a real server does not let a test
//! see: the exact setWatches2 a resumed session sends (paths with the chroot, exists watches
//! on existing nodes sent as data watches, the last zxid seen), notifications handed back
//! without the chroot, and the client-side expiry clock when a server accepts TCP but never
//! answers. Needs no external server.

use std::time::Duration;

mod support;

use corral_client::proto::frame::frame;
use corral_client::proto::message::{notification_body, reply_body};
use corral_client::proto::{
    ConnectRequest, ConnectResponse, ErrorCode, EventType, Jute, KeeperState, Reader, ReplyHeader,
    Request, Response, SetWatches2, Stat, WatcherEvent,
};
use corral_client::{
    ClientBuilder, ClientError, ConnectOptions, Connection, PersistentEvent, SessionState,
};
use support::{next_request, read_frame};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

async fn accept_session(l: &TcpListener, timeout: i32) -> (TcpStream, Vec<u8>, ConnectRequest) {
    let (mut s, _) = l.accept().await.expect("accept");
    let mut buf = Vec::new();
    let body = read_frame(&mut s, &mut buf).await.expect("handshake");
    let req = ConnectRequest::read(&mut Reader::new(&body)).expect("ConnectRequest");
    let resp = ConnectResponse {
        protocol_version: 0,
        timeout,
        session_id: 0x42,
        passwd: vec![7; 16],
        read_only: Some(false),
    };
    s.write_all(&frame(&resp.to_bytes()))
        .await
        .expect("write handshake");
    (s, buf, req)
}

async fn reply(s: &mut TcpStream, xid: i32, zxid: i64, err: ErrorCode, resp: &Response) {
    s.write_all(&frame(&reply_body(xid, zxid, err, resp)))
        .await
        .expect("write reply");
}

#[tokio::test]
async fn resumed_session_sends_its_watches_with_the_chroot() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let server = tokio::spawn(async move {
        let (mut s, mut buf, first) = accept_session(&listener, 6000).await;
        assert_eq!(first.session_id, 0);
        // exists /app/there (exists), exists /app/missing (NoNode), getData /app/d,
        // getChildren /app/c: every one with watch set.
        let mut seen = Vec::new();
        for (zxid, want) in [
            (10, "/app/there"),
            (11, "/app/missing"),
            (12, "/app/d"),
            (13, "/app/c"),
        ] {
            let (xid, req) = next_request(&mut s, &mut buf).await.expect("request");
            let (path, watch) = match &req {
                Request::Exists(r) | Request::GetData(r) | Request::GetChildren(r) => {
                    (r.path.clone(), r.watch)
                }
                other => panic!("unexpected {other:?}"),
            };
            assert_eq!((path.as_str(), watch), (want, true));
            seen.push(path);
            let (err, resp) = match &req {
                Request::Exists(_) if want == "/app/missing" => {
                    (ErrorCode::NoNode, Response::Empty)
                }
                Request::Exists(_) => (ErrorCode::Ok, Response::Stat(Stat::default())),
                Request::GetData(_) => (
                    ErrorCode::Ok,
                    Response::Data(Some(b"x".to_vec()), Stat::default()),
                ),
                _ => (ErrorCode::Ok, Response::Children(vec![])),
            };
            reply(&mut s, xid, zxid, err, &resp).await;
        }
        // Drop the connection: the client must come back to resume the session.
        drop(s);
        let (mut s, mut buf, second) = accept_session(&listener, 6000).await;
        assert_eq!(
            (second.session_id, second.passwd.clone()),
            (0x42, vec![7; 16])
        );
        assert_eq!(second.last_zxid_seen, 13);
        let (xid, req) = next_request(&mut s, &mut buf).await.expect("setWatches2");
        let Request::SetWatches2(sw) = req else {
            panic!("expected setWatches2 first, got {req:?}");
        };
        reply(&mut s, xid, 13, ErrorCode::Ok, &Response::Empty).await;
        // The node that was missing appears: its exists watch fires.
        let ev = WatcherEvent {
            event_type: EventType::NodeCreated.code(),
            state: KeeperState::SyncConnected.code(),
            path: "/app/missing".into(),
        };
        s.write_all(&frame(&notification_body(14, &ev)))
            .await
            .expect("write notification");
        // Hold the connection until the client goes.
        let _ = next_request(&mut s, &mut buf).await;
        sw
    });

    let client = ClientBuilder::new(&format!("{addr}/app"))
        .session_timeout(Duration::from_secs(6))
        .connect()
        .await
        .expect("connect");
    let mut events = client.session_events();
    let (stat, _w_there) = client.exists_w("/there").await.expect("exists /there");
    assert!(stat.is_some());
    let (stat, w_missing) = client.exists_w("/missing").await.expect("exists /missing");
    assert!(stat.is_none());
    let (_, _, _w_d) = client.get_data_w("/d").await.expect("getData /d");
    let (_, _w_c) = client.get_children_w("/c").await.expect("getChildren /c");

    let fired = tokio::time::timeout(Duration::from_secs(10), w_missing)
        .await
        .expect("the exists watch fires after the resume")
        .expect("fires, not fails");
    assert_eq!(
        (fired.event_type, fired.path.as_str()),
        (EventType::NodeCreated, "/missing")
    );
    let mut states = Vec::new();
    while let Ok(ev) = events.try_recv() {
        states.push((ev.state, ev.session_id));
    }
    assert_eq!(
        states,
        vec![
            (SessionState::Suspended, 0x42),
            (SessionState::Connected, 0x42)
        ]
    );
    client.close().await.ok();
    let sw = server.await.expect("server script");
    assert_eq!(
        sw,
        SetWatches2 {
            relative_zxid: 13,
            // An exists watch on a node that exists is a data watch, as in ZooKeeper's client:
            // sent as an exist watch, the server would fire NodeCreated at once.
            data_watches: vec!["/app/d".into(), "/app/there".into()],
            exist_watches: vec!["/app/missing".into()],
            child_watches: vec!["/app/c".into()],
            persistent_watches: vec![],
            persistent_recursive_watches: vec![],
        }
    );
}

/// A server that accepts connections but never answers after the first session: the client
/// reports Expired on its own clock, 4/3 of the timeout after it last heard from a server.
#[tokio::test]
async fn silent_servers_expire_the_session_on_the_client_clock() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        let (s, _, _) = accept_session(&listener, 1500).await;
        // Keep every later connection open and silent.
        let mut held = vec![s];
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let client = ClientBuilder::new(&addr)
        .session_timeout(Duration::from_millis(1500))
        .recovery(false)
        .connect()
        .await
        .expect("connect");
    let mut events = client.session_events();
    let start = tokio::time::Instant::now();
    let mut seen = Vec::new();
    while seen.last() != Some(&SessionState::Expired) {
        let ev = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .expect("an event within 5 s")
            .expect("event stream");
        seen.push(ev.state);
    }
    let took = start.elapsed();
    assert_eq!(seen, vec![SessionState::Suspended, SessionState::Expired]);
    // The server never answered a ping: silence since the handshake, so Expired comes 2 s
    // (4/3 of 1.5 s) after it, give or take scheduling.
    assert!(
        took >= Duration::from_millis(1900) && took <= Duration::from_millis(2600),
        "Expired after {took:?}"
    );
    assert!(matches!(
        client.get_data("/").await,
        Err(ClientError::SessionExpired)
    ));
}

/// Credentials the server rejects when they are re-sent on a new connection: AuthFailed is
/// reported, the client stops reconnecting, and calls fail with AuthFailed.
#[tokio::test]
async fn auth_rejected_on_reconnect_is_terminal() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let (go, go_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let (mut s, mut buf, _) = accept_session(&listener, 6000).await;
        let (xid, req) = next_request(&mut s, &mut buf).await.expect("auth");
        assert!(matches!(req, Request::Auth(_)), "{req:?}");
        reply(&mut s, xid, 0, ErrorCode::Ok, &Response::Empty).await;
        // Drop the connection once the test listens to the session events.
        let _ = go_rx.await;
        drop(s);
        let (mut s, mut buf, _) = accept_session(&listener, 6000).await;
        let (xid, req) = next_request(&mut s, &mut buf).await.expect("auth again");
        assert!(matches!(req, Request::Auth(_)), "{req:?}");
        reply(&mut s, xid, 0, ErrorCode::AuthFailed, &Response::Empty).await;
        // No third connection may come: count any within a second.
        drop(s);
        tokio::time::timeout(Duration::from_secs(1), listener.accept())
            .await
            .is_ok()
    });
    let client = ClientBuilder::new(&addr)
        .auth("digest", b"u:p")
        .session_timeout(Duration::from_secs(6))
        .connect()
        .await
        .expect("connect");
    let mut events = client.session_events();
    let _ = go.send(());
    let mut seen = Vec::new();
    while seen.last() != Some(&SessionState::AuthFailed) {
        let ev = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .expect("an event within 5 s")
            .expect("event stream");
        seen.push(ev.state);
    }
    assert_eq!(
        seen,
        vec![SessionState::Suspended, SessionState::AuthFailed]
    );
    assert!(matches!(
        client.exists("/").await,
        Err(ClientError::AuthFailed)
    ));
    let reconnected = server.await.expect("server script");
    assert!(!reconnected, "the client reconnected after AuthFailed");
}

/// A persistent recursive watch: added with the chroot, re-sent in setWatches2 when the
/// session is resumed, followed by a Rearmed marker (the server does not replay what it could
/// not deliver), and fed only the events ZooKeeper sends a recursive watch.
#[tokio::test]
async fn persistent_watch_is_resent_and_marks_its_gap() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let server = tokio::spawn(async move {
        let (mut s, mut buf, _) = accept_session(&listener, 6000).await;
        let (xid, req) = next_request(&mut s, &mut buf).await.expect("addWatch");
        let Request::AddWatch(aw) = req else {
            panic!("expected addWatch, got {req:?}");
        };
        assert_eq!((aw.path.as_str(), aw.mode), ("/app/p", 1));
        // ZooKeeper answers addWatch with an ErrorResponse body.
        reply(&mut s, xid, 20, ErrorCode::Ok, &Response::ErrorResponse(0)).await;
        drop(s);
        let (mut s, mut buf, second) = accept_session(&listener, 6000).await;
        assert_eq!(second.session_id, 0x42);
        let (xid, req) = next_request(&mut s, &mut buf).await.expect("setWatches2");
        let Request::SetWatches2(sw) = req else {
            panic!("expected setWatches2, got {req:?}");
        };
        reply(&mut s, xid, 20, ErrorCode::Ok, &Response::Empty).await;
        for (zxid, t, path) in [
            // Not for a recursive watch: ZooKeeper never sends it one, and a stray one must
            // not reach it.
            (21, EventType::NodeChildrenChanged, "/app/p"),
            (21, EventType::NodeCreated, "/app/p/x"),
            (22, EventType::NodeDataChanged, "/app/px"),
            (23, EventType::NodeDeleted, "/app/p/x"),
        ] {
            let ev = WatcherEvent {
                event_type: t.code(),
                state: KeeperState::SyncConnected.code(),
                path: path.into(),
            };
            s.write_all(&frame(&notification_body(zxid, &ev)))
                .await
                .expect("write notification");
        }
        let _ = next_request(&mut s, &mut buf).await;
        sw
    });
    let client = ClientBuilder::new(&format!("{addr}/app"))
        .session_timeout(Duration::from_secs(6))
        .connect()
        .await
        .expect("connect");
    let mut w = client
        .watch_persistent("/p", true)
        .await
        .expect("persistent watch");
    let mut got = Vec::new();
    for _ in 0..3 {
        let ev = tokio::time::timeout(Duration::from_secs(10), w.next())
            .await
            .expect("an event within 10 s")
            .expect("the stream goes on");
        got.push(match ev {
            PersistentEvent::Node(e) => format!("{:?} {}", e.event_type, e.path),
            other => format!("{other:?}"),
        });
    }
    assert_eq!(
        got,
        vec![
            "Rearmed { session_id: 66, expired_session: None }".to_string(),
            "NodeCreated /p/x".to_string(),
            "NodeDeleted /p/x".to_string(),
        ]
    );
    client.close().await.ok();
    // Closing ends the stream.
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(1), w.next())
            .await
            .expect("the stream ends at once"),
        None
    );
    let sw = server.await.expect("server script");
    assert_eq!(sw.persistent_recursive_watches, vec!["/app/p".to_string()]);
    assert!(sw.persistent_watches.is_empty() && sw.data_watches.is_empty());
}

/// A server that answers the connect with a bare reply header carrying an error (ZooKeeper's
/// read-only server refusing a session it cannot make) is refused by that error's name.
#[tokio::test]
async fn a_connect_answered_by_an_error_header_names_the_error() {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr").to_string();
    let server = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.expect("accept");
        let mut buf = Vec::new();
        read_frame(&mut s, &mut buf).await.expect("handshake");
        let header = ReplyHeader {
            xid: 0,
            zxid: 5,
            err: ErrorCode::NotReadOnly.code(),
        };
        s.write_all(&frame(&header.to_bytes()))
            .await
            .expect("write");
        s
    });
    let opts = ConnectOptions {
        read_only: Some(true),
        ..ConnectOptions::default()
    };
    let got = Connection::connect(&addr, opts).await;
    assert!(
        matches!(got, Err(ClientError::Server(ErrorCode::NotReadOnly))),
        "{:?}",
        got.map(|c| c.session_id())
    );
    drop(server.await.expect("server task"));
}
