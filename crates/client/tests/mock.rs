//! The client against a scripted in-process server, for behaviour a real server shows only
//! under rare timing: replies that overtake others, unknown xids, expired handshakes.
//! Needs no external server.

mod support;

use corral_client::proto::frame::frame;
use corral_client::proto::message::{notification_body, reply_body};
use corral_client::proto::{
    xid, ConnectResponse, ErrorCode, EventType, GetDataRequest, Jute, KeeperState, Request,
    Response, Stat, WatcherEvent,
};
use corral_client::{ClientError, ConnectOptions, Connection};
use support::{next_request, read_frame};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// A listener whose first connection is handed to `script` after the handshake
/// (answered with `timeout`).
async fn serve<F, Fut>(timeout: i32, script: F) -> String
where
    F: FnOnce(TcpStream, Vec<u8>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.expect("accept");
        let mut buf = Vec::new();
        let _connect = read_frame(&mut s, &mut buf).await.expect("handshake");
        let session_id = if timeout > 0 { 0x42 } else { 0 };
        let resp = ConnectResponse {
            protocol_version: 0,
            timeout,
            session_id,
            passwd: vec![7; 16],
            read_only: Some(false),
        };
        s.write_all(&frame(&resp.to_bytes()))
            .await
            .expect("write handshake");
        script(s, buf).await;
    });
    addr
}

fn get(path: &str) -> Request {
    Request::GetData(GetDataRequest {
        path: path.into(),
        watch: false,
    })
}

#[tokio::test]
async fn expired_handshake_is_session_expired() {
    let addr = serve(0, |_, _| async {}).await;
    let r = Connection::connect(
        &addr,
        ConnectOptions {
            session_id: 5,
            passwd: vec![1; 16],
            ..Default::default()
        },
    )
    .await;
    assert!(matches!(r, Err(ClientError::SessionExpired)), "{r:?}");
}

#[tokio::test]
async fn auth_reply_may_overtake_and_events_are_delivered() {
    let addr = serve(6000, |mut s, mut buf| async move {
        let (x1, _) = next_request(&mut s, &mut buf).await.expect("getData");
        let (x2, req) = next_request(&mut s, &mut buf).await.expect("auth");
        assert_eq!(x2, xid::AUTH);
        assert!(matches!(req, Request::Auth(_)));
        // Auth is answered at once, before the getData that was sent earlier.
        s.write_all(&frame(&reply_body(
            xid::AUTH,
            0,
            ErrorCode::Ok,
            &Response::Empty,
        )))
        .await
        .expect("w");
        let ev = WatcherEvent {
            event_type: EventType::NodeDeleted.code(),
            state: KeeperState::SyncConnected.code(),
            path: "/gone".into(),
        };
        s.write_all(&frame(&notification_body(99, &ev)))
            .await
            .expect("w");
        let data = Response::Data(
            Some(b"v".to_vec()),
            Stat {
                version: 3,
                ..Default::default()
            },
        );
        s.write_all(&frame(&reply_body(x1, 100, ErrorCode::Ok, &data)))
            .await
            .expect("w");
        let (x3, _) = next_request(&mut s, &mut buf)
            .await
            .expect("second getData");
        s.write_all(&frame(&reply_body(
            x3,
            101,
            ErrorCode::NoNode,
            &Response::Empty,
        )))
        .await
        .expect("w");
        // Hold the socket until the client is done.
        let _ = next_request(&mut s, &mut buf).await;
    })
    .await;
    let c = Connection::connect(&addr, ConnectOptions::default())
        .await
        .expect("connect");
    assert_eq!(c.session_id(), 0x42);
    let (a, b) = tokio::join!(c.get_data("/a", false), async {
        // Make sure the getData is on the wire first.
        tokio::task::yield_now().await;
        c.add_auth("digest", b"u:p").await
    });
    b.expect("auth");
    let (data, stat) = a.expect("getData");
    assert_eq!((data.as_slice(), stat.version), (&b"v"[..], 3));
    let ev = c.next_event().await.expect("event");
    assert_eq!(
        (ev.event_type, ev.path.as_str(), ev.zxid),
        (EventType::NodeDeleted, "/gone", 99)
    );
    let reply = c.request(get("/b")).await.expect("reply");
    assert_eq!(
        (reply.err, reply.zxid, reply.response),
        (ErrorCode::NoNode, 101, Response::Empty)
    );
    assert_eq!(c.last_zxid(), 101);
    c.abort();
}

#[tokio::test]
async fn reply_out_of_order_closes_the_connection() {
    let addr = serve(6000, |mut s, mut buf| async move {
        let (x1, _) = next_request(&mut s, &mut buf).await.expect("first");
        let (x2, _) = next_request(&mut s, &mut buf).await.expect("second");
        assert_eq!(x2, x1 + 1);
        // Answer the second first: a server must never do that.
        s.write_all(&frame(&reply_body(
            x2,
            1,
            ErrorCode::NoNode,
            &Response::Empty,
        )))
        .await
        .expect("w");
        let _ = next_request(&mut s, &mut buf).await;
    })
    .await;
    let c = Connection::connect(&addr, ConnectOptions::default())
        .await
        .expect("connect");
    let (a, b) = tokio::join!(c.request(get("/1")), c.request(get("/2")));
    assert!(matches!(a, Err(ClientError::Protocol(_))), "{a:?}");
    assert!(matches!(b, Err(ClientError::Protocol(_))), "{b:?}");
    assert!(c.is_closed());
    assert!(c.next_event().await.is_none());
}

#[tokio::test]
async fn server_closing_fails_waiting_callers() {
    let addr = serve(6000, |mut s, mut buf| async move {
        let _ = next_request(&mut s, &mut buf).await;
        drop(s);
    })
    .await;
    let c = Connection::connect(&addr, ConnectOptions::default())
        .await
        .expect("connect");
    assert!(matches!(
        c.request(get("/x")).await,
        Err(ClientError::Closed)
    ));
    assert!(matches!(
        c.request(get("/x")).await,
        Err(ClientError::Closed)
    ));
}

#[tokio::test]
async fn remove_watches_sends_opcode_18_and_maps_no_watcher() {
    let addr = serve(6000, |mut s, mut buf| async move {
        let (x1, req) = next_request(&mut s, &mut buf).await.expect("removeWatches");
        // The scripted server checks the request itself and answers NoWatcher only when it
        // is exactly removeWatches(/w, Data): anything else gets Ok, which fails the caller.
        let right = req
            == Request::RemoveWatches(corral_client::proto::WatchesRequest {
                path: "/w".into(),
                watcher_type: corral_client::proto::WatcherType::Data.code(),
            });
        let err = if right {
            ErrorCode::NoWatcher
        } else {
            ErrorCode::Ok
        };
        s.write_all(&frame(&reply_body(x1, 5, err, &Response::Empty)))
            .await
            .expect("w");
        let (x2, req) = next_request(&mut s, &mut buf).await.expect("second");
        assert!(matches!(req, Request::RemoveWatches(_)), "{req:?}");
        s.write_all(&frame(&reply_body(x2, 6, ErrorCode::Ok, &Response::Empty)))
            .await
            .expect("w");
        let _ = next_request(&mut s, &mut buf).await;
    })
    .await;
    let c = Connection::connect(&addr, ConnectOptions::default())
        .await
        .expect("connect");
    let r = c
        .remove_watches("/w", corral_client::proto::WatcherType::Data)
        .await;
    assert!(
        matches!(r, Err(ClientError::Server(ErrorCode::NoWatcher))),
        "{r:?}"
    );
    c.remove_watches("/w", corral_client::proto::WatcherType::Any)
        .await
        .expect("second removeWatches answered Ok");
    c.abort();
}
