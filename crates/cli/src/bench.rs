//! `corral bench`: a load driver on corral-client, for corral and for any ZooKeeper server.
//!
//! Shape: `--clients` sessions (corral-client `Client`s, recovery off: a lost session ends
//! its client), each driven by one task that keeps at most `--outstanding`
//! requests in flight on its connection (closed loop: a new request goes out when a reply
//! comes back). Each request is timed from the moment it is handed to the connection to the
//! moment its reply arrives, and recorded in an HDR histogram (µs). The run ends after `--ops`
//! requests in total or after `--duration` seconds, whichever was asked for.
//!
//! Output: ONE JSON line on stdout (the same field names as ../shared/tools/zkbench, so the
//! two drivers' results sit in one table), a short human summary on stderr, and with
//! `--interval-report S` one JSON line per interval on stderr (so a stall, e.g. during a
//! snapshot, shows up as one bad interval rather than being averaged away).
//!
//! Network errors are data, not crashes: a server error code counts as an error and the run
//! goes on; a lost connection counts its in-flight requests as errors and ends that client,
//! the others carry on, and the exit code says a connection was lost (1).
//!
//! Workloads: `create`, `set`, `get`, `mixed` (90 % get / 10 % set, as zkbench), `populate`
//! (bulk-load a tree as fast as pipelining allows) and `probe` (poll until given paths are
//! readable, for measuring start-to-serving time after a restart). The probe alone uses the
//! single-connection `Connection`: it measures when a server first answers, which a `Client`
//! (retrying, resuming) would hide.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Args, ValueEnum};
use corral_client::proto::{Acl, CreateMode, ErrorCode, GetDataRequest, Request};
use corral_client::{
    open_acl_unsafe, Client, ClientBuilder, ClientError, ConnectOptions, Connection,
};
use hdrhistogram::Histogram;
use tokio::task::JoinSet;

/// Children per parent znode in `create` and `populate`: keeps a parent's getChildren reply
/// far below jute.maxbuffer (1 MiB), as zkbench does.
const CREATE_BUCKET: u64 = 10_000;
const POPULATE_PER_PARENT: u64 = 1_000;
/// Latencies above an hour are clamped (saturating_record); 3 significant digits is what
/// every published ZooKeeper latency figure uses.
const HIST_MAX_US: u64 = 3_600_000_000;
/// Pipelining depth for setup work (key nodes, populate parents): not measured.
const SETUP_INFLIGHT: usize = 500;
/// Default pipelining depth of `populate`, the same as zkbench's memory probe.
const POPULATE_DEFAULT_OUTSTANDING: usize = 500;

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// create persistent znodes under ROOT/create-*/c<client>/b<bucket>/n<seq>
    Create,
    /// setData (version -1) on random keys
    Set,
    /// getData (no watch) on random keys
    Get,
    /// 90 % getData / 10 % setData on random keys
    Mixed,
    /// create --populate-count znodes under ROOT/aNNNN/bNNNNNNN (1000 per parent)
    Populate,
    /// poll until every --probe-path can be read; reports when (for start-to-serving times)
    Probe,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Create => "create",
            Workload::Set => "set",
            Workload::Get => "get",
            Workload::Mixed => "mixed",
            Workload::Populate => "populate",
            Workload::Probe => "probe",
        }
    }
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// host:port of the server (corral or ZooKeeper).
    #[arg(long, default_value = "127.0.0.1:2181")]
    server: String,
    #[arg(long, value_enum, default_value = "get")]
    workload: Workload,
    /// Concurrent sessions (one connection each).
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// Total operations over all clients [default: 100000 unless --duration].
    #[arg(long, conflicts_with = "duration")]
    ops: Option<u64>,
    /// Seconds to run instead of a number of operations.
    #[arg(long)]
    duration: Option<f64>,
    /// Requests in flight per client [default: 1 (unloaded latency); populate: 500].
    #[arg(long)]
    outstanding: Option<usize>,
    /// Bytes of znode data written by create, set and populate.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Key space of set/get/mixed (znodes ROOT/keys/kNNNNNNN, created if missing).
    #[arg(long, default_value_t = 1000)]
    keys: u64,
    /// Base path of everything the bench creates.
    #[arg(long, default_value = "/corral-bench")]
    root: String,
    /// populate: number of znodes to create.
    #[arg(long, default_value_t = 100_000)]
    populate_count: u64,
    /// Every S seconds, one JSON line on stderr with that interval's ops/s and latencies.
    #[arg(long)]
    interval_report: Option<f64>,
    /// Requested session timeout (ms).
    #[arg(long, default_value_t = 30_000)]
    session_timeout: i32,
    /// probe: path that must be readable (repeat for several) [default: ROOT/a0000/b0000000].
    #[arg(long)]
    probe_path: Vec<String>,
    /// probe: give up after this many seconds.
    #[arg(long, default_value_t = 300.0)]
    probe_timeout: f64,
    /// Write every timed request to FILE once the run is over, one line each: the wall-clock
    /// time it was sent (µs since the Unix epoch), its latency (µs) and `r` or `w`. Lets a
    /// script compare the requests sent while the server was doing something (writing a
    /// snapshot) with the rest of the same run.
    #[arg(long, value_name = "FILE")]
    latency_log: Option<std::path::PathBuf>,
}

pub async fn run(args: BenchArgs) -> ExitCode {
    if let Err(e) = validate(&args) {
        eprintln!("corral bench: {e}");
        return ExitCode::from(2);
    }
    if args.workload == Workload::Probe {
        return probe(&args).await;
    }
    match load(&args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("corral bench: {e}");
            ExitCode::from(2)
        }
    }
}

fn validate(a: &BenchArgs) -> Result<(), String> {
    if a.clients == 0 {
        return Err("--clients must be at least 1".into());
    }
    if a.outstanding == Some(0) {
        return Err("--outstanding must be at least 1".into());
    }
    if a.keys == 0 {
        return Err("--keys must be at least 1".into());
    }
    for (name, v) in [
        ("--duration", a.duration),
        ("--interval-report", a.interval_report),
        ("--probe-timeout", Some(a.probe_timeout)),
    ] {
        if let Some(v) = v {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("{name} must be a positive number of seconds"));
            }
        }
    }
    if !a.root.starts_with('/') || (a.root.len() > 1 && a.root.ends_with('/')) {
        return Err(format!(
            "--root {:?} must be an absolute znode path",
            a.root
        ));
    }
    if a.workload == Workload::Populate && a.duration.is_some() {
        return Err("populate creates --populate-count znodes; --duration does not apply".into());
    }
    Ok(())
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("constant histogram bounds are valid")
}

fn child(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

fn populate_path(root: &str, i: u64) -> String {
    child(root, &format!("a{:04}/b{:07}", i / POPULATE_PER_PARENT, i))
}

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// Writes `--latency-log`: `sent_unix_us latency_us r|w` per request, in the order sent.
/// `start` and `start_unix_us` are the same moment on the two clocks: a request's wall-clock
/// time is derived from the monotonic one, so a clock step mid-run cannot reorder requests.
fn write_latency_log(
    file: &std::path::Path,
    start: Instant,
    start_unix_us: u64,
    samples: &mut [(Instant, u64, bool)],
) -> std::io::Result<()> {
    use std::io::Write;
    samples.sort_unstable_by_key(|s| s.0);
    let mut out = std::io::BufWriter::new(std::fs::File::create(file)?);
    for &(sent, us, is_write) in samples.iter() {
        let at = start_unix_us + sent.saturating_duration_since(start).as_micros() as u64;
        writeln!(out, "{at} {us} {}", if is_write { 'w' } else { 'r' })?;
    }
    out.flush()
}

/// A load session: a `Client` without recovery, so that an expiry ends it (and is counted)
/// instead of being papered over by a new session.
async fn connect_client(server: &str, timeout_ms: i32) -> Result<Client, ClientError> {
    ClientBuilder::new(server)
        .session_timeout(Duration::from_millis(timeout_ms.max(1) as u64))
        .recovery(false)
        .connect()
        .await
}

async fn connect(server: &str, timeout_ms: i32) -> Result<Connection, ClientError> {
    Connection::connect(
        server,
        ConnectOptions {
            session_timeout_ms: timeout_ms,
            ..ConnectOptions::default()
        },
    )
    .await
}

/// Creates `path` and its missing ancestors (empty data); existing ones are fine.
async fn mkdirs(client: &Client, path: &str) -> Result<(), String> {
    let mut cur = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        cur.push('/');
        cur.push_str(part);
        create_ok(
            client
                .create(&cur, &[], &open_acl_unsafe(), CreateMode::Persistent)
                .await,
        )
        .map_err(|e| format!("create {cur}: {e}"))?;
    }
    Ok(())
}

/// A create's result, with an existing node counted as success.
fn create_ok(r: Result<String, ClientError>) -> Result<(), ClientError> {
    match r {
        Ok(_) | Err(ClientError::Server(ErrorCode::NodeExists)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates many znodes, pipelined; an existing one is fine (so a rerun reuses the key set).
async fn create_many(
    client: &Client,
    paths: impl Iterator<Item = String>,
    data: &[u8],
) -> Result<(), String> {
    let mut inflight = JoinSet::new();
    let data = Arc::new(data.to_vec());
    let acl = Arc::new(open_acl_unsafe());
    let check = |r: Result<Result<(), ClientError>, tokio::task::JoinError>| match r {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("setup create: {e}")),
        Err(e) => Err(format!("setup task: {e}")),
    };
    for p in paths {
        while inflight.len() >= SETUP_INFLIGHT {
            if let Some(r) = inflight.join_next().await {
                check(r)?;
            }
        }
        let (c, data, acl) = (client.clone(), data.clone(), acl.clone());
        inflight.spawn(async move {
            create_ok(c.create(&p, &data, &acl, CreateMode::Persistent).await)
        });
    }
    while let Some(r) = inflight.join_next().await {
        check(r)?;
    }
    Ok(())
}

/// A small, fast, good-enough PRNG (xorshift64*) for choosing keys: no dependency, and each
/// client gets its own stream without locking.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// When the run stops: after a number of requests over all clients, or at a deadline.
enum Budget {
    Ops { issued: AtomicU64, total: u64 },
    Until(Instant),
}

impl Budget {
    /// Claims one request; `Some(i)` is the request's index over the whole run.
    fn take(&self) -> Option<u64> {
        match self {
            Budget::Ops { issued, total } => {
                let i = issued.fetch_add(1, Ordering::Relaxed);
                (i < *total).then_some(i)
            }
            Budget::Until(deadline) => (Instant::now() < *deadline).then_some(0),
        }
    }
}

/// What one interval (of `--interval-report`) has seen so far, per client; the reporter
/// takes and resets it.
struct Interval {
    hist: Histogram<u64>,
    errors: u64,
}

/// The result of one client.
struct ClientResult {
    hist: Histogram<u64>,
    /// The writes among `hist`: a mixed load's tail is mostly its writes (each waits for an
    /// fsync), and telling them apart shows whether a slowdown is the disk's or the CPU's.
    writes: Histogram<u64>,
    errors: u64,
    already_existed: u64,
    lost: Option<String>,
    first_error: Option<String>,
    last_reply: Option<Instant>,
    /// With --latency-log: (sent, latency µs, is a write) of every timed request.
    samples: Option<Vec<(Instant, u64, bool)>>,
}

/// One request's end, as its task hands it back to the driver.
struct Done {
    sent: Instant,
    elapsed: Duration,
    outcome: Outcome,
    is_write: bool,
}

enum Outcome {
    Ok,
    /// The server answered with this error code.
    Server(ErrorCode),
    /// The connection failed: this client stops.
    Lost(String),
}

/// One timed request.
enum Op {
    Get(String),
    Set(String),
    Create(String),
}

struct Driver {
    id: usize,
    client: Client,
    acl: Arc<Vec<Acl>>,
    workload: Workload,
    outstanding: usize,
    value: Arc<Vec<u8>>,
    keys: u64,
    key_dir: String,
    /// create: this client's directory; populate: the root.
    base: String,
    budget: Arc<Budget>,
    interval: Arc<Mutex<Interval>>,
    rng: Rng,
    created: u64,
    result: ClientResult,
}

impl Driver {
    /// The next request to send, or None when the run is over for this client.
    async fn next_request(&mut self) -> Option<Op> {
        let i = self.budget.take()?;
        let key =
            |rng: &mut Rng, dir: &str, keys: u64| child(dir, &format!("k{:07}", rng.below(keys)));
        Some(match self.workload {
            Workload::Get => Op::Get(key(&mut self.rng, &self.key_dir, self.keys)),
            Workload::Set => Op::Set(key(&mut self.rng, &self.key_dir, self.keys)),
            Workload::Mixed => {
                let path = key(&mut self.rng, &self.key_dir, self.keys);
                if self.rng.below(10) == 0 {
                    Op::Set(path)
                } else {
                    Op::Get(path)
                }
            }
            Workload::Create => {
                let seq = self.created;
                self.created += 1;
                let bucket = child(&self.base, &format!("b{}", seq / CREATE_BUCKET));
                if seq.is_multiple_of(CREATE_BUCKET) {
                    // The bucket must exist before any create inside it is sent: awaiting it
                    // here orders it before them on this connection. Not timed.
                    let made = self
                        .client
                        .create(&bucket, &[], &self.acl, CreateMode::Persistent)
                        .await;
                    match create_ok(made) {
                        Ok(()) => {}
                        Err(ClientError::Server(code)) => {
                            self.note_error(format!("create bucket {bucket}: {code}"))
                        }
                        Err(e) => {
                            self.lose(format!("create bucket {bucket}: {e}"));
                            return None;
                        }
                    }
                }
                Op::Create(child(&bucket, &format!("n{seq:07}")))
            }
            Workload::Populate => Op::Create(populate_path(&self.base, i)),
            Workload::Probe => unreachable!("run() hands probe to probe(), never to a Driver"),
        })
    }

    fn note_error(&mut self, msg: String) {
        self.result.errors += 1;
        if self.result.first_error.is_none() {
            self.result.first_error = Some(msg);
        }
    }

    fn lose(&mut self, msg: String) {
        self.note_error(msg.clone());
        if self.result.lost.is_none() {
            eprintln!(
                "corral bench: client {} lost its connection: {msg}",
                self.id
            );
            self.result.lost = Some(msg);
        }
    }

    fn record(&mut self, done: Result<Done, tokio::task::JoinError>) {
        let now = Instant::now();
        let Done {
            sent,
            elapsed,
            outcome,
            is_write,
        } = match done {
            Ok(x) => x,
            Err(e) => {
                self.note_error(format!("request task failed: {e}"));
                return;
            }
        };
        let us = (elapsed.as_micros() as u64).max(1);
        match outcome {
            Outcome::Ok => {}
            // populate is rerun-safe: an existing znode is counted apart, not as an error.
            Outcome::Server(ErrorCode::NodeExists) if self.workload == Workload::Populate => {
                self.result.already_existed += 1;
            }
            Outcome::Server(code) => self.note_error(format!("server error {code}")),
            Outcome::Lost(msg) => {
                self.lose(msg);
                let mut iv = self.interval.lock().unwrap_or_else(|e| e.into_inner());
                iv.errors += 1;
                return;
            }
        }
        // A reply came (success or a server error code): its latency is real.
        self.result.hist.saturating_record(us);
        if is_write {
            self.result.writes.saturating_record(us);
        }
        if let Some(samples) = &mut self.result.samples {
            samples.push((sent, us, is_write));
        }
        self.result.last_reply = Some(now);
        let mut iv = self.interval.lock().unwrap_or_else(|e| e.into_inner());
        iv.hist.saturating_record(us);
        if !matches!(outcome, Outcome::Ok) {
            iv.errors += 1;
        }
    }

    async fn drive(mut self) -> ClientResult {
        let mut inflight: JoinSet<Done> = JoinSet::new();
        loop {
            while inflight.len() >= self.outstanding {
                match inflight.join_next().await {
                    Some(done) => self.record(done),
                    None => break,
                }
            }
            if self.result.lost.is_some() {
                break;
            }
            let Some(req) = self.next_request().await else {
                break;
            };
            let (client, value, acl) = (self.client.clone(), self.value.clone(), self.acl.clone());
            let is_write = !matches!(req, Op::Get(_));
            inflight.spawn(async move {
                let sent = Instant::now();
                let r = match req {
                    Op::Get(p) => client.get_data(&p).await.map(|_| ()),
                    Op::Set(p) => client.set_data(&p, &value, -1).await.map(|_| ()),
                    Op::Create(p) => client
                        .create(&p, &value, &acl, CreateMode::Persistent)
                        .await
                        .map(|_| ()),
                };
                let elapsed = sent.elapsed();
                let outcome = match r {
                    Ok(()) => Outcome::Ok,
                    Err(ClientError::Server(code)) => Outcome::Server(code),
                    Err(e) => Outcome::Lost(e.to_string()),
                };
                Done {
                    sent,
                    elapsed,
                    outcome,
                    is_write,
                }
            });
        }
        while let Some(done) = inflight.join_next().await {
            self.record(done);
        }
        self.result
    }
}

/// Prints one JSON line per interval on stderr until `stop` fires; then one last line for
/// the partial interval, so the end of the run is not silently dropped.
async fn report_intervals(
    every: Duration,
    start: Instant,
    intervals: Vec<Arc<Mutex<Interval>>>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let mut last = start;
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            _ = &mut stop => true,
        };
        let now = Instant::now();
        let mut h = new_hist();
        let mut errors = 0;
        for iv in &intervals {
            let mut iv = iv.lock().unwrap_or_else(|e| e.into_inner());
            let _ = h.add(&iv.hist);
            iv.hist.reset();
            errors += iv.errors;
            iv.errors = 0;
        }
        let secs = now.duration_since(last).as_secs_f64();
        last = now;
        eprintln!(
            "{{\"interval_end_s\": {:.3}, \"ops\": {}, \"ops_per_sec\": {:.1}, \"p50_us\": {}, \"p99_us\": {}, \"p999_us\": {}, \"max_us\": {}, \"errors\": {}}}",
            now.duration_since(start).as_secs_f64(),
            h.len(),
            h.len() as f64 / secs.max(1e-9),
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.max(),
            errors
        );
        if stopping {
            return;
        }
    }
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

async fn load(a: &BenchArgs) -> Result<ExitCode, String> {
    let outstanding = a
        .outstanding
        .unwrap_or(if a.workload == Workload::Populate {
            POPULATE_DEFAULT_OUTSTANDING
        } else {
            1
        });
    let value = Arc::new(vec![b'x'; a.value_size]);

    // Setup, untimed: connect every client, create what the workload needs.
    let mut conns = Vec::with_capacity(a.clients);
    {
        let mut connecting = JoinSet::new();
        for i in 0..a.clients {
            let server = a.server.clone();
            let t = a.session_timeout;
            connecting.spawn(async move { (i, connect_client(&server, t).await) });
        }
        let mut got = Vec::new();
        while let Some(r) = connecting.join_next().await {
            match r {
                Ok((i, Ok(c))) => got.push((i, c)),
                Ok((i, Err(e))) => {
                    return Err(format!("client {i}: cannot connect to {}: {e}", a.server))
                }
                Err(e) => return Err(format!("connect task: {e}")),
            }
        }
        got.sort_by_key(|(i, _)| *i);
        conns.extend(got.into_iter().map(|(_, c)| c));
    }
    let admin = conns[0].clone();
    mkdirs(&admin, &a.root).await?;
    let key_dir = child(&a.root, "keys");
    let mut bases = vec![a.root.clone(); a.clients];
    let total = match a.workload {
        Workload::Set | Workload::Get | Workload::Mixed => {
            mkdirs(&admin, &key_dir).await?;
            let key_dir2 = key_dir.clone();
            create_many(
                &admin,
                (0..a.keys).map(move |k| child(&key_dir2, &format!("k{k:07}"))),
                &value,
            )
            .await?;
            a.ops
        }
        Workload::Create => {
            // A fresh directory per run, so reruns never collide with earlier nodes.
            let run = child(
                &a.root,
                &format!("create-{}-{}", std::process::id(), unix_ms()),
            );
            for (i, b) in bases.iter_mut().enumerate() {
                *b = child(&run, &format!("c{i}"));
                mkdirs(&admin, b).await?;
            }
            a.ops
        }
        Workload::Populate => {
            let parents = a.populate_count.div_ceil(POPULATE_PER_PARENT);
            let root = a.root.clone();
            create_many(
                &admin,
                (0..parents).map(move |p| child(&root, &format!("a{p:04}"))),
                &[],
            )
            .await?;
            Some(a.populate_count)
        }
        Workload::Probe => unreachable!("run() hands probe to probe(), never to load()"),
    };
    let budget = Arc::new(match (a.duration, total) {
        (Some(d), _) => Budget::Until(Instant::now() + Duration::from_secs_f64(d)),
        (None, t) => Budget::Ops {
            issued: AtomicU64::new(0),
            total: t.unwrap_or(100_000),
        },
    });

    let intervals: Vec<_> = (0..a.clients)
        .map(|_| {
            Arc::new(Mutex::new(Interval {
                hist: new_hist(),
                errors: 0,
            }))
        })
        .collect();
    let seed = unix_ms() as u64;
    let start = Instant::now();
    let start_unix_us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    // A duration run measures from here; the deadline was set a moment ago, close enough.
    let reporter = a.interval_report.map(|s| {
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(report_intervals(
            Duration::from_secs_f64(s),
            start,
            intervals.clone(),
            stopped,
        ));
        (stop, task)
    });
    let mut drivers = JoinSet::new();
    let acl = Arc::new(open_acl_unsafe());
    for (i, conn) in conns.iter().enumerate() {
        let d = Driver {
            id: i,
            client: conn.clone(),
            acl: acl.clone(),
            workload: a.workload,
            outstanding,
            value: value.clone(),
            keys: a.keys,
            key_dir: key_dir.clone(),
            base: bases[i].clone(),
            budget: budget.clone(),
            interval: intervals[i].clone(),
            rng: Rng::new(seed ^ ((i as u64 + 1) << 32)),
            created: 0,
            result: ClientResult {
                hist: new_hist(),
                writes: new_hist(),
                errors: 0,
                already_existed: 0,
                lost: None,
                first_error: None,
                last_reply: None,
                samples: a.latency_log.as_ref().map(|_| Vec::new()),
            },
        };
        drivers.spawn(d.drive());
    }
    let mut hist = new_hist();
    let mut writes = new_hist();
    let mut errors = 0u64;
    let mut existed = 0u64;
    let mut lost = 0usize;
    let mut first_error: Option<String> = None;
    let mut end = start;
    let mut samples = Vec::new();
    while let Some(r) = drivers.join_next().await {
        match r {
            Ok(mut r) => {
                samples.extend(r.samples.take().unwrap_or_default());
                let _ = hist.add(&r.hist);
                let _ = writes.add(&r.writes);
                errors += r.errors;
                existed += r.already_existed;
                if r.lost.is_some() {
                    lost += 1;
                }
                if first_error.is_none() {
                    first_error = r.first_error;
                }
                if let Some(t) = r.last_reply {
                    end = end.max(t);
                }
            }
            Err(e) => {
                errors += 1;
                lost += 1;
                first_error.get_or_insert_with(|| format!("client task failed: {e}"));
            }
        }
    }
    if let Some((stop, task)) = reporter {
        let _ = stop.send(());
        let _ = task.await;
    }
    let seconds = end.duration_since(start).as_secs_f64();
    if let Some(file) = &a.latency_log {
        write_latency_log(file, start, start_unix_us, &mut samples)
            .map_err(|e| format!("--latency-log {}: {e}", file.display()))?;
    }
    // Close sessions politely but never wait long on a sick server.
    for c in &conns {
        let _ = tokio::time::timeout(Duration::from_secs(2), c.close()).await;
    }

    let ops = hist.len();
    let rate = if seconds > 0.0 {
        ops as f64 / seconds
    } else {
        0.0
    };
    let mut json = format!(
        "{{\"workload\": {}, \"clients\": {}, \"ops\": {}, \"seconds\": {:.3}, \"ops_per_sec\": {:.1}, \
         \"p50_us\": {}, \"p90_us\": {}, \"p99_us\": {}, \"p999_us\": {}, \"max_us\": {}, \"mean_us\": {:.1}, \
         \"errors\": {}, \"outstanding\": {}, \"value_size\": {}, \"keys\": {}, \"connections_lost\": {}, \"server\": {}",
        json_str(a.workload.name()),
        a.clients,
        ops,
        seconds,
        rate,
        hist.value_at_quantile(0.5),
        hist.value_at_quantile(0.9),
        hist.value_at_quantile(0.99),
        hist.value_at_quantile(0.999),
        hist.max(),
        hist.mean(),
        errors,
        outstanding,
        a.value_size,
        a.keys,
        lost,
        json_str(&a.server),
    );
    if a.workload == Workload::Populate {
        json.push_str(&format!(
            ", \"znodes\": {}, \"already_existed\": {}, \"root\": {}",
            a.populate_count,
            existed,
            json_str(&a.root)
        ));
    }
    // Only a mixed load has both kinds to tell apart.
    let split = (a.workload == Workload::Mixed).then(|| {
        let mut reads = hist.clone();
        let _ = reads.subtract(&writes);
        (reads, writes)
    });
    if let Some((reads, writes)) = &split {
        for (kind, h) in [("read", reads), ("write", writes)] {
            json.push_str(&format!(
                ", \"{kind}_ops\": {}, \"{kind}_p99_us\": {}, \"{kind}_p999_us\": {}, \"{kind}_max_us\": {}",
                h.len(),
                h.value_at_quantile(0.99),
                h.value_at_quantile(0.999),
                h.max()
            ));
        }
    }
    if let Some(e) = &first_error {
        json.push_str(&format!(", \"first_error\": {}", json_str(e)));
    }
    json.push('}');
    println!("{json}");
    eprintln!(
        "corral bench: {} x{} clients, {} outstanding each: {} ops in {:.2} s = {:.0} ops/s; \
         latency µs p50 {} p99 {} p99.9 {} max {}; errors {}{}",
        a.workload.name(),
        a.clients,
        outstanding,
        ops,
        seconds,
        rate,
        hist.value_at_quantile(0.5),
        hist.value_at_quantile(0.99),
        hist.value_at_quantile(0.999),
        hist.max(),
        errors,
        if lost > 0 {
            format!("; {lost} connection(s) lost")
        } else {
            String::new()
        }
    );
    if let Some((reads, writes)) = &split {
        eprintln!(
            "corral bench: reads {} p99 {} p99.9 {} µs; writes {} p99 {} p99.9 {} µs",
            reads.len(),
            reads.value_at_quantile(0.99),
            reads.value_at_quantile(0.999),
            writes.len(),
            writes.value_at_quantile(0.99),
            writes.value_at_quantile(0.999),
        );
    }
    Ok(if lost > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// What one probe attempt found.
enum ProbeOutcome {
    /// Every path was read.
    Found,
    /// The server answered NoNode for this path.
    Missing(String),
    /// Not serving yet (refused, closed, no reply, another error): try again.
    Retry(String),
}

/// One attempt: open a session, read every path, close.
async fn probe_once(server: String, paths: Arc<Vec<String>>) -> (ProbeOutcome, u128) {
    // Short session timeout: it also bounds the handshake wait inside connect.
    let conn = match connect(&server, 4000).await {
        Ok(c) => c,
        Err(e) => return (ProbeOutcome::Retry(format!("connect: {e}")), unix_ms()),
    };
    let mut outcome = ProbeOutcome::Found;
    for p in paths.iter() {
        let req = Request::GetData(GetDataRequest {
            path: p.clone(),
            watch: false,
        });
        match tokio::time::timeout(Duration::from_secs(5), conn.request(req)).await {
            Ok(Ok(r)) if r.err == ErrorCode::Ok => {}
            Ok(Ok(r)) if r.err == ErrorCode::NoNode => {
                outcome = ProbeOutcome::Missing(p.clone());
                break;
            }
            Ok(Ok(r)) => {
                outcome = ProbeOutcome::Retry(format!("getData {p}: {}", r.err));
                break;
            }
            Ok(Err(e)) => {
                outcome = ProbeOutcome::Retry(format!("getData {p}: {e}"));
                break;
            }
            Err(_) => {
                outcome = ProbeOutcome::Retry(format!("getData {p}: no reply within 5 s"));
                break;
            }
        }
    }
    let at = unix_ms();
    let _ = tokio::time::timeout(Duration::from_secs(1), conn.close()).await;
    (outcome, at)
}

/// Polls until every probe path can be read. Exit 0 and `"found": true` when they all can;
/// `"found": false` (exit 3) when the server answers but a path is missing (e.g. data lost
/// over a restart) — that is an answer, so it does not wait for it to change; exit 4 when
/// the server never answered within --probe-timeout.
///
/// Attempts overlap: a new one starts every 20 ms even while earlier ones wait. A server
/// that is starting may accept a connection and then neither answer nor close it for
/// seconds (seen with ZooKeeper 3.8 while it loads its database); a sequential poll would
/// add that wait to the start-to-serving figure.
async fn probe(a: &BenchArgs) -> ExitCode {
    const EVERY: Duration = Duration::from_millis(20);
    const MAX_PENDING: usize = 64;
    let paths = Arc::new(if a.probe_path.is_empty() {
        vec![populate_path(&a.root, 0)]
    } else {
        a.probe_path.clone()
    });
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(a.probe_timeout);
    let mut attempts = 0u64;
    let mut last_err = String::from("no attempt");
    let mut pending = JoinSet::new();
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while Instant::now() < deadline {
        tokio::select! {
            _ = tick.tick(), if pending.len() < MAX_PENDING => {
                attempts += 1;
                pending.spawn(probe_once(a.server.clone(), paths.clone()));
            }
            Some(done) = pending.join_next(), if !pending.is_empty() => {
                let (outcome, ready_ms) = match done {
                    Ok(x) => x,
                    Err(e) => (ProbeOutcome::Retry(format!("probe task: {e}")), unix_ms()),
                };
                let missing = match outcome {
                    ProbeOutcome::Retry(e) => {
                        last_err = e;
                        continue;
                    }
                    ProbeOutcome::Found => None,
                    ProbeOutcome::Missing(m) => Some(m),
                };
                pending.abort_all();
                println!(
                    "{{\"workload\": \"probe\", \"found\": {}, \"missing\": {}, \"ready_unix_ms\": {}, \
                     \"waited_ms\": {}, \"attempts\": {}, \"server\": {}}}",
                    missing.is_none(),
                    missing.as_deref().map(json_str).unwrap_or_else(|| "null".into()),
                    ready_ms,
                    start.elapsed().as_millis(),
                    attempts,
                    json_str(&a.server)
                );
                if let Some(m) = missing {
                    eprintln!("corral bench: server answers, but {m} does not exist");
                    return ExitCode::from(3);
                }
                return ExitCode::SUCCESS;
            }
        }
    }
    pending.abort_all();
    println!(
        "{{\"workload\": \"probe\", \"found\": null, \"timed_out\": true, \"waited_ms\": {}, \"attempts\": {}, \"last_error\": {}, \"server\": {}}}",
        start.elapsed().as_millis(),
        attempts,
        json_str(&last_err),
        json_str(&a.server)
    );
    eprintln!(
        "corral bench: probe gave up after {:.1} s: {last_err}",
        a.probe_timeout
    );
    ExitCode::from(4)
}
