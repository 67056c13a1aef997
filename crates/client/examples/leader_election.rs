//! Leader election with a fencing token, the way Kafka's controller does it.
//!
//! Each participant campaigns on `/controller-demo`. The winner gets an epoch (bumped in the
//! same multi that creates the ephemeral leader node) and, while it leads, writes its state
//! to `/controller-demo/state` once a second through fenced writes: each one a multi that
//! first checks the epoch node is unchanged, so a leader deposed without knowing it — paused,
//! partitioned, expired — cannot overwrite its successor's state. Leadership is given up
//! when the session stays Suspended past a quarter of its timeout, and on expiry; the
//! participant then campaigns again (in a new session, for a new epoch).
//!
//! Run two or three of them against one server (`corral serve`, or ZooKeeper 3.6+):
//!
//! ```text
//! cargo run -p corral-client --example leader_election -- 127.0.0.1:2181 alice
//! cargo run -p corral-client --example leader_election -- 127.0.0.1:2181 bob
//! ```
//!
//! Arguments: connect string (default 127.0.0.1:2181), participant name (default the pid),
//! session timeout in ms (default 6000), and optionally how many seconds to run (default:
//! until Ctrl-C). Pause the leader (`kill -STOP <pid>`) for longer than the timeout: another
//! participant takes over with the next epoch, and when the old one is continued
//! (`kill -CONT <pid>`) it finds its connection dead and its session expired, so its next
//! fenced write fails (were it sent, the epoch check would refuse it), and it campaigns
//! again.

use std::time::Duration;

use corral_client::{ClientBuilder, ClientError, Leadership, SessionState};
use tokio::time::Instant;

const DIR: &str = "/controller-demo";

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("leader_election: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let connect = args.first().map_or("127.0.0.1:2181", String::as_str);
    let name = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| format!("p{}", std::process::id()));
    let timeout_ms: u64 = parse_arg(&args, 2, "session timeout (ms)", 6000)?;
    let run_for: Option<u64> = match args.get(3) {
        Some(s) => Some(s.parse().map_err(|_| format!("bad run time {s:?}"))?),
        None => None,
    };
    let until = run_for.map(|s| Instant::now() + Duration::from_secs(s));

    let client = ClientBuilder::new(connect)
        .session_timeout(Duration::from_millis(timeout_ms))
        .connect()
        .await
        .map_err(|e| format!("connect to {connect}: {e}"))?;
    println!(
        "{name}: connected, session 0x{:x}, timeout {:?}",
        client.session_id(),
        client.session_timeout()
    );
    let mut events = client.session_events();
    let who = name.clone();
    tokio::spawn(async move {
        while let Ok(ev) = events.recv().await {
            if ev.state != SessionState::Connected || ev.session_id != 0 {
                println!("{who}: session {:?} (0x{:x})", ev.state, ev.session_id);
            }
        }
    });

    let election = client.leader_election(DIR, &name).suspended_fraction(0.25);
    let state_path = format!("{DIR}/state");
    let stop = async {
        match until {
            Some(t) => tokio::time::sleep_until(t).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    tokio::pin!(stop);
    loop {
        if let Ok(Some((leader, epoch))) = election.current_leader().await {
            println!("{name}: waiting; {leader} leads in epoch {epoch}");
        }
        let lead = tokio::select! {
            r = election.campaign() => r.map_err(|e| format!("campaign: {e}"))?,
            _ = &mut stop => break,
        };
        println!("{name}: LEADER in epoch {}", lead.epoch());
        let ended = tokio::select! {
            r = lead_while_leader(&name, &lead, &client, &state_path) => r?,
            _ = &mut stop => {
                lead.resign().await.map_err(|e| format!("resign: {e}"))?;
                println!("{name}: resigned");
                break;
            }
        };
        println!("{name}: no longer leader ({ended})");
    }
    client.close().await.map_err(|e| format!("close: {e}"))?;
    Ok(())
}

/// The leader's work: a fenced write of its state every second, until leadership ends.
async fn lead_while_leader(
    name: &str,
    lead: &Leadership,
    client: &corral_client::Client,
    state_path: &str,
) -> Result<String, String> {
    let mut n: u64 = 0;
    loop {
        n += 1;
        let state = format!("{name} epoch {} write {n}", lead.epoch());
        match lead.fenced_set_data(state_path, state.as_bytes(), -1).await {
            Ok(_) => println!("{name}: wrote {state:?}"),
            Err(ClientError::NotLeader) => {
                return Ok(format!("{:?}", lead.lost_reason()));
            }
            Err(ClientError::Server(corral_client::proto::ErrorCode::NoNode)) => {
                // First leader ever: the state node does not exist yet.
                let _ = client
                    .create(
                        state_path,
                        b"",
                        &corral_client::open_acl_unsafe(),
                        corral_client::proto::CreateMode::Persistent,
                    )
                    .await;
                // Not a write: this number is used again.
                n -= 1;
                continue;
            }
            Err(e) => println!("{name}: write failed ({e}); its fate is unknown"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            why = lead.lost() => return Ok(format!("{why:?}")),
        }
    }
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
