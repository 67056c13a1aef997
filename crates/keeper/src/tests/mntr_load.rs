//! What `mntr` costs on a loaded keeper: 100,000 data watches and 100,000 ephemerals held by
//! 100 clients of a real keeper (durable consensus on a temp dir, clients over in-memory
//! pipes). Ignored by default (it takes a while in a debug build); run it with
//! `cargo test -p corral-keeper --release -- --ignored mntr_on_a_loaded_keeper --nocapture`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_proto::frame::frame;
use corral_proto::jute::{Jute, Reader};
use corral_proto::{
    open_acl_unsafe, ConnectRequest, ConnectResponse, CreateMode, CreateRequest, GetDataRequest,
    ReplyHeader, Request,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use crate::config::{Config, FourLetterWhitelist};
use crate::keeper::Keeper;

const CLIENTS: usize = 100;
const PER_CLIENT: usize = 1000;

async fn read_frame<R: AsyncReadExt + Unpin>(io: &mut R) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await.ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(len).max(0) as usize];
    io.read_exact(&mut body).await.ok()?;
    Some(body)
}

async fn connect(keeper: &Arc<Keeper>, n: usize) -> DuplexStream {
    let (mut io, server) = tokio::io::duplex(64 * 1024);
    let remote = format!("127.0.0.1:{}", 20_000 + n).parse().expect("addr");
    keeper.serve_stream(server, remote);
    let req = ConnectRequest {
        timeout: 30_000,
        passwd: vec![0; 16],
        read_only: Some(false),
        ..Default::default()
    };
    io.write_all(&frame(&req.to_bytes())).await.expect("send");
    let body = read_frame(&mut io).await.expect("connect response");
    let resp = ConnectResponse::read(&mut Reader::new(&body)).expect("decode");
    assert_ne!(resp.session_id, 0, "session refused");
    io
}

/// One client: `PER_CLIENT` ephemerals and as many data watches (exists on absent paths),
/// pipelined; returns the open connection, which keeps both.
async fn load(keeper: Arc<Keeper>, n: usize) -> DuplexStream {
    let io = connect(&keeper, n).await;
    let (mut rd, mut wr) = tokio::io::split(io);
    let writer = tokio::spawn(async move {
        let mut out = Vec::new();
        for j in 0..PER_CLIENT {
            let create = Request::Create(CreateRequest {
                path: format!("/e{n}-{j}"),
                data: Some(Vec::new()),
                acl: open_acl_unsafe(),
                flags: CreateMode::Ephemeral as i32,
            });
            out.extend_from_slice(&create.to_frame((2 * j + 1) as i32));
            let watch = Request::Exists(GetDataRequest {
                path: format!("/w{n}-{j}"),
                watch: true,
            });
            out.extend_from_slice(&watch.to_frame((2 * j + 2) as i32));
        }
        wr.write_all(&out).await.expect("send requests");
        wr
    });
    for _ in 0..2 * PER_CLIENT {
        let body = read_frame(&mut rd).await.expect("reply");
        let header = ReplyHeader::read(&mut Reader::new(&body)).expect("reply header");
        // exists on an absent path answers NoNode (-101) and leaves the watch.
        assert!(header.err == 0 || header.err == -101, "{header:?}");
    }
    let wr = writer.await.expect("writer");
    rd.unsplit(wr)
}

async fn four_letter(keeper: &Keeper, word: &str) -> String {
    let (mut io, server) = tokio::io::duplex(64 * 1024);
    keeper.serve_stream(server, "127.0.0.1:1".parse().expect("addr"));
    io.write_all(word.as_bytes()).await.expect("send");
    let mut text = String::new();
    io.read_to_string(&mut text).await.expect("reply");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run with --release --ignored --nocapture"]
async fn mntr_on_a_loaded_keeper() {
    let dir = std::env::temp_dir().join(format!(
        "corral-mntr-load-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let keeper = Keeper::new(Config {
        data_dir: dir.clone(),
        client_port: 0,
        four_letter_whitelist: FourLetterWhitelist::all(),
        ..Config::default()
    });
    keeper.start_consensus().await.expect("start");
    let started = Instant::now();
    let mut loads = Vec::new();
    for n in 0..CLIENTS {
        loads.push(tokio::spawn(load(Arc::clone(&keeper), n)));
    }
    let mut clients = Vec::new();
    for l in loads {
        clients.push(l.await.expect("load"));
    }
    println!("loaded in {:?}", started.elapsed());
    let mntr = four_letter(&keeper, "mntr").await;
    let total = (CLIENTS * PER_CLIENT).to_string();
    assert!(
        mntr.contains(&format!("zk_watch_count\t{total}\n")),
        "{mntr}"
    );
    assert!(
        mntr.contains(&format!("zk_ephemerals_count\t{total}\n")),
        "{mntr}"
    );
    for word in ["mntr", "srvr", "wchs"] {
        let mut times: Vec<Duration> = Vec::new();
        for _ in 0..20 {
            let t = Instant::now();
            let text = four_letter(&keeper, word).await;
            times.push(t.elapsed());
            assert!(!text.is_empty());
        }
        times.sort();
        println!(
            "{word}: min {:?} median {:?} max {:?} (20 runs)",
            times[0], times[10], times[19]
        );
    }
    drop(clients);
    keeper.shutdown(Duration::from_secs(5)).await;
    let _ = std::fs::remove_dir_all(&dir);
}
