//! A Kafka-style broker registration that survives session expiry.
//!
//! The broker registers itself as the ephemeral node `/brokers/ids/<id>` and keeps it there:
//! when the session expires (a long GC pause, a partition), corral-client opens a new session
//! and re-creates the node — deleting it first if the dead session still owns it, the
//! NodeExists case Kafka brokers used to trip on — and reports what it did.
//!
//! Run against a server (`corral serve`, or ZooKeeper):
//!
//! ```text
//! cargo run -p corral-client --example broker_registration -- 127.0.0.1:2181 1 4000
//! ```
//!
//! Arguments: connect string (default 127.0.0.1:2181; a chroot such as
//! "127.0.0.1:2181/kafka" works once /kafka exists), broker id (default 1), session timeout in ms (default 6000),
//! and optionally how many seconds to run (default: until Ctrl-C). To see a recovery, pause
//! the process for longer than the timeout (`kill -STOP <pid>; sleep 8; kill -CONT <pid>`).

use std::time::Duration;

use corral_client::proto::{CreateMode, ErrorCode};
use corral_client::{open_acl_unsafe, Client, ClientBuilder, ClientError};

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("broker_registration: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let connect = args.first().map_or("127.0.0.1:2181", String::as_str);
    let id: u32 = parse_arg(&args, 1, "broker id", 1)?;
    let timeout_ms: u64 = parse_arg(&args, 2, "session timeout (ms)", 6000)?;
    let run_for: Option<u64> = match args.get(3) {
        Some(s) => Some(s.parse().map_err(|_| format!("bad run time {s:?}"))?),
        None => None,
    };

    let client = ClientBuilder::new(connect)
        .session_timeout(Duration::from_millis(timeout_ms))
        .connect()
        .await
        .map_err(|e| format!("connect to {connect}: {e}"))?;
    println!(
        "connected: session 0x{:x}, timeout {:?}",
        client.session_id(),
        client.session_timeout()
    );

    // Watch the session and the recoveries from the start.
    let mut events = client.session_events();
    let mut reports = client.recovery_reports();
    tokio::spawn(async move {
        while let Ok(ev) = events.recv().await {
            println!(
                "session: {:?} (session 0x{:x}, server {})",
                ev.state,
                ev.session_id,
                ev.server.as_deref().unwrap_or("-")
            );
        }
    });
    tokio::spawn(async move {
        while let Ok(r) = reports.recv().await {
            println!(
                "recovered: session 0x{:x} replaced 0x{:x}",
                r.new_session_id, r.old_session_id
            );
            for e in &r.ephemerals {
                println!("  {}: {:?} after {:?}", e.path, e.outcome, e.after);
            }
            for (path, kind) in &r.lost_watches {
                println!("  lost {kind:?} watch on {path}: re-read it");
            }
        }
    });

    create_parents(&client, "/brokers/ids").await?;
    let path = format!("/brokers/ids/{id}");
    let registration = format!(
        "{{\"version\":5,\"host\":\"localhost\",\"port\":{},\"broker_id\":{id}}}",
        9092 + id
    );
    let node = client
        .ephemeral_node(&path, registration.as_bytes())
        .await
        .map_err(|e| match e {
            ClientError::Server(ErrorCode::NodeExists) => {
                format!("{path} is held by another live broker")
            }
            e => format!("register {path}: {e}"),
        })?;
    println!("registered {path}");

    match run_for {
        Some(secs) => tokio::time::sleep(Duration::from_secs(secs)).await,
        None => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    let owner = client
        .exists(&path)
        .await
        .map_err(|e| format!("exists {path}: {e}"))?
        .map(|s| s.ephemeral_owner);
    println!(
        "at exit: {path} owned by {}, current session 0x{:x}",
        owner.map_or("nobody".to_string(), |o| format!("0x{o:x}")),
        client.session_id()
    );
    node.remove()
        .await
        .map_err(|e| format!("deregister: {e}"))?;
    client.close().await.map_err(|e| format!("close: {e}"))?;
    println!("deregistered and closed");
    Ok(())
}

fn parse_arg<T: std::str::FromStr>(
    args: &[String],
    i: usize,
    what: &str,
    default: T,
) -> Result<T, String> {
    match args.get(i) {
        Some(s) => s.parse().map_err(|_| format!("bad {what} {s:?}")),
        None => Ok(default),
    }
}

/// Creates every missing ancestor of (and including) `path` as a persistent node.
async fn create_parents(client: &Client, path: &str) -> Result<(), String> {
    let mut at = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        at.push('/');
        at.push_str(part);
        match client
            .create(&at, b"", &open_acl_unsafe(), CreateMode::Persistent)
            .await
        {
            Ok(_) | Err(ClientError::Server(ErrorCode::NodeExists)) => {}
            Err(e) => return Err(format!("create {at}: {e}")),
        }
    }
    Ok(())
}
