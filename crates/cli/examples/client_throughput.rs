//! Throughput of corral-client's `Client` against the `zookeeper-client` crate on the same
//! server: getData and setData on 1000 keys of 100 bytes, 16 sessions with 100 requests in
//! flight each (closed loop: a request goes out when one comes back). Rounds alternate which
//! library goes first, so a drift of the machine does not favour one.
//!
//! ```text
//! cargo run --release -p corral --example client_throughput -- 127.0.0.1:2181 [seconds] [rounds]
//! ```
//!
//! A fourth argument keeps only the runs whose "<Lib> <Op>" contains it ("Corral Get").
//!
//! With SERVER_PID set, each run also reports the server's CPU time per operation.
//!
//! Prints one line per run (library, workload, ops/s, p50/p99 µs) and a summary of the
//! medians; bench/RESULTS.md has the figures. Uses a dev-dependency (zookeeper-client), hence
//! an example of the `corral` package rather than a `corral bench` option.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_client::proto::{CreateMode, ErrorCode};
use corral_client::{open_acl_unsafe, ClientBuilder, ClientError};
use hdrhistogram::Histogram;
use zookeeper_client as zk;

const CLIENTS: usize = 16;
const IN_FLIGHT: usize = 100;
const KEYS: u64 = 1000;
const VALUE: usize = 100;
const ROOT: &str = "/client-throughput";
const WARMUP: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lib {
    Corral,
    ZkClient,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Get,
    Set,
}

/// One session of either library.
#[derive(Clone)]
enum Session {
    Corral(corral_client::Client),
    Zk(zk::Client),
}

impl Session {
    async fn connect(lib: Lib, server: &str) -> Result<Session, String> {
        Ok(match lib {
            Lib::Corral => Session::Corral(
                ClientBuilder::new(server)
                    .session_timeout(Duration::from_secs(30))
                    .connect()
                    .await
                    .map_err(|e| format!("corral-client connect: {e}"))?,
            ),
            Lib::ZkClient => Session::Zk(
                zk::Client::connector()
                    .with_session_timeout(Duration::from_secs(30))
                    .connect(server)
                    .await
                    .map_err(|e| format!("zookeeper-client connect: {e}"))?,
            ),
        })
    }

    async fn run(&self, op: Op, path: &str, value: &[u8]) -> Result<(), String> {
        match (self, op) {
            (Session::Corral(c), Op::Get) => c
                .get_data(path)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            (Session::Corral(c), Op::Set) => c
                .set_data(path, value, -1)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            (Session::Zk(c), Op::Get) => c
                .get_data(path)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            (Session::Zk(c), Op::Set) => c
                .set_data(path, value, None)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
        }
    }

    async fn close(self) {
        match self {
            Session::Corral(c) => {
                let _ = c.close().await;
            }
            Session::Zk(c) => drop(c),
        }
    }
}

/// A small PRNG (xorshift64*) for picking keys; no dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// CPU time (user + system) of a process so far, in µs, from /proc (Linux); None elsewhere.
fn cpu_us(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) end with ')'.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux this runs on.
    Some(ticks * 10_000)
}

struct RunResult {
    /// CPU µs per operation of this process (the clients) and of the server (SERVER_PID).
    client_cpu_us: Option<f64>,
    server_cpu_us: Option<f64>,
    ops_per_sec: f64,
    p50_us: u64,
    p99_us: u64,
    errors: u64,
}

async fn one_run(lib: Lib, op: Op, server: &str, secs: f64) -> Result<RunResult, String> {
    let mut sessions = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        sessions.push(Session::connect(lib, server).await?);
    }
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let value = Arc::new(vec![b'x'; VALUE]);
    let mut workers = tokio::task::JoinSet::new();
    for (ci, s) in sessions.iter().enumerate() {
        for wi in 0..IN_FLIGHT {
            let s = s.clone();
            let (measuring, stop, errors, value) = (
                measuring.clone(),
                stop.clone(),
                errors.clone(),
                value.clone(),
            );
            workers.spawn(async move {
                let mut rng =
                    Rng(((ci * IN_FLIGHT + wi) as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
                // Raw samples, merged after the run: 1600 histograms of their own would cost
                // more cache than the clients being measured.
                let mut samples: Vec<u32> = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let path = format!("{ROOT}/k{:04}", rng.below(KEYS));
                    let t = Instant::now();
                    let r = s.run(op, &path, &value).await;
                    if measuring.load(Ordering::Relaxed) {
                        match r {
                            Ok(()) => {
                                samples.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                            }
                            Err(_) => {
                                errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
                samples
            });
        }
    }
    tokio::time::sleep(WARMUP).await;
    let server_pid = std::env::var("SERVER_PID").unwrap_or_default();
    let cpu0 = (cpu_us("self"), cpu_us(&server_pid));
    measuring.store(true, Ordering::SeqCst);
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    measuring.store(false, Ordering::SeqCst);
    let cpu1 = (cpu_us("self"), cpu_us(&server_pid));
    let elapsed = start.elapsed();
    stop.store(true, Ordering::SeqCst);
    let mut total = 0u64;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
        .map_err(|e| format!("histogram: {e}"))?;
    while let Some(r) = workers.join_next().await {
        let samples = r.map_err(|e| format!("worker: {e}"))?;
        total += samples.len() as u64;
        for us in samples {
            hist.saturating_record(u64::from(us).max(1));
        }
    }
    for s in sessions {
        s.close().await;
    }
    let per_op =
        |a: Option<u64>, b: Option<u64>| Some(b?.saturating_sub(a?) as f64 / (total.max(1) as f64));
    Ok(RunResult {
        client_cpu_us: per_op(cpu0.0, cpu1.0),
        server_cpu_us: per_op(cpu0.1, cpu1.1),
        ops_per_sec: total as f64 / elapsed.as_secs_f64(),
        p50_us: hist.value_at_quantile(0.5),
        p99_us: hist.value_at_quantile(0.99),
        errors: errors.load(Ordering::SeqCst),
    })
}

async fn setup(server: &str) -> Result<(), String> {
    let c = ClientBuilder::new(server)
        .connect()
        .await
        .map_err(|e| format!("setup connect: {e}"))?;
    let value = vec![b'x'; VALUE];
    for (path, data) in std::iter::once((ROOT.to_string(), Vec::new()))
        .chain((0..KEYS).map(|k| (format!("{ROOT}/k{k:04}"), value.clone())))
    {
        match c
            .create(&path, &data, &open_acl_unsafe(), CreateMode::Persistent)
            .await
        {
            Ok(_) | Err(ClientError::Server(ErrorCode::NodeExists)) => {}
            Err(e) => return Err(format!("create {path}: {e}")),
        }
    }
    c.close().await.map_err(|e| format!("setup close: {e}"))
}

/// One run: round, library, workload, ops/s, client CPU µs per op.
type Figure = (usize, Lib, Op, f64, Option<f64>);

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let server = args
        .first()
        .map_or("127.0.0.1:2181", String::as_str)
        .to_string();
    let secs: f64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let rounds: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3);
    // Optional: only the runs whose "<Lib> <Op>" contains this (e.g. "Corral Get"), for
    // profiling one of them.
    let only = args.get(3).cloned().unwrap_or_default();
    if let Err(e) = setup(&server).await {
        eprintln!("client_throughput: {e}");
        std::process::exit(1);
    }
    println!("{CLIENTS} clients x {IN_FLIGHT} in flight, {KEYS} keys of {VALUE} B, {secs} s per run, {rounds} rounds");
    let mut figures: Vec<Figure> = Vec::new();
    for round in 0..rounds {
        for op in [Op::Get, Op::Set] {
            let order = if round % 2 == 0 {
                [Lib::Corral, Lib::ZkClient]
            } else {
                [Lib::ZkClient, Lib::Corral]
            };
            for lib in order {
                if !format!("{lib:?} {op:?}").contains(&only) {
                    continue;
                }
                match one_run(lib, op, &server, secs).await {
                    Ok(r) => {
                        let cpu = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
                        println!(
                            "round {round} {lib:?} {op:?}: {:.0} ops/s, p50 {} us, p99 {} us, {} errors; CPU us/op client {} server {}",
                            r.ops_per_sec,
                            r.p50_us,
                            r.p99_us,
                            r.errors,
                            cpu(r.client_cpu_us),
                            cpu(r.server_cpu_us)
                        );
                        figures.push((round, lib, op, r.ops_per_sec, r.client_cpu_us));
                    }
                    Err(e) => {
                        eprintln!("client_throughput: {lib:?} {op:?}: {e}");
                        std::process::exit(1);
                    }
                }
            }
        }
    }
    // Runs of one round are next to each other in time, so their ratio suffers least from
    // a machine whose load drifts; the median of those ratios is the figure to quote.
    for op in [Op::Get, Op::Set] {
        let of = |lib: Lib, f: &dyn Fn(&Figure) -> Option<f64>| {
            median(
                figures
                    .iter()
                    .filter(|x| x.1 == lib && x.2 == op)
                    .filter_map(f)
                    .collect(),
            )
        };
        let rate = |x: &Figure| Some(x.3);
        let cpu = |x: &Figure| x.4;
        let paired: Vec<f64> = (0..rounds)
            .filter_map(|r| {
                let get = |lib| {
                    figures
                        .iter()
                        .find(|x| x.0 == r && x.1 == lib && x.2 == op)
                        .map(|x| x.3)
                };
                Some(get(Lib::Corral)? / get(Lib::ZkClient)?.max(1.0))
            })
            .collect();
        println!(
            "{op:?}: median ops/s corral-client {:.0}, zookeeper-client {:.0}; median of per-round ratios {:.2} ({} rounds); median client CPU us/op {:.2} vs {:.2}",
            of(Lib::Corral, &rate),
            of(Lib::ZkClient, &rate),
            median(paired.clone()),
            paired.len(),
            of(Lib::Corral, &cpu),
            of(Lib::ZkClient, &cpu),
        );
    }
}
