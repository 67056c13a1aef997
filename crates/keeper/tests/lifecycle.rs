//! The keeper in process: started on a temp dir, stopped by `Keeper::shutdown`, which closes
//! every connection, waits for every task and releases the data directory, so a new keeper
//! starts on it at once with the sessions the first one held.

use std::time::{Duration, Instant};

use corral_keeper::config::Config;
use corral_keeper::Keeper;
use corral_proto::frame::frame;
use corral_proto::{ConnectRequest, ConnectResponse, Jute, Reader};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config(dir: &std::path::Path) -> Config {
    Config {
        data_dir: dir.to_path_buf(),
        client_port: 0,
        admin_enable_server: false,
        ..Config::default()
    }
}

async fn read_frame(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await?;
    let mut body = vec![0u8; i32::from_be_bytes(len).max(0) as usize];
    s.read_exact(&mut body).await?;
    Ok(body)
}

async fn new_session(addr: std::net::SocketAddr) -> (TcpStream, ConnectResponse) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let req = ConnectRequest {
        timeout: 30_000,
        read_only: Some(false),
        ..Default::default()
    };
    s.write_all(&frame(&req.to_bytes())).await.expect("send");
    let body = read_frame(&mut s).await.expect("connect response");
    let resp = ConnectResponse::read(&mut Reader::new(&body)).expect("decode");
    assert_ne!(resp.session_id, 0);
    (s, resp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_connections_waits_for_tasks_and_frees_the_data_dir() {
    let dir = std::env::temp_dir().join(format!("corral-lifecycle-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let keeper = Keeper::new(config(&dir));
    let addr = keeper.start().await.expect("start");
    let (mut client, session) = new_session(addr).await;
    // A second connection that never sends anything: shutdown must not wait out its
    // handshake bound.
    let mut idle = TcpStream::connect(addr).await.expect("connect idle");

    let began = Instant::now();
    keeper.shutdown(Duration::from_secs(5)).await;
    let took = began.elapsed();
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");
    // Both connections were closed by the keeper.
    for s in [&mut client, &mut idle] {
        let mut b = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut b))
            .await
            .expect("closed, not hanging")
            .unwrap_or(0);
        assert_eq!(n, 0, "connection still open after shutdown");
    }
    // The port no longer accepts.
    assert!(TcpStream::connect(addr).await.is_err(), "still listening");
    // Shutting down twice is harmless.
    keeper.shutdown(Duration::from_secs(1)).await;

    // The data directory is free at once, and the session is in it.
    let again = Keeper::new(config(&dir));
    again.start().await.expect("restart on the same data dir");
    assert!(
        again.state().tree.session(session.session_id).is_some(),
        "the session survived the restart"
    );
    again.shutdown(Duration::from_secs(5)).await;
    let _ = std::fs::remove_dir_all(&dir);
}
