//! Test support shared by the `corral` integration tests: start a `corral serve` process or a
//! real Apache ZooKeeper 3.8 (Debian package) on a free port with a fresh data directory, wait
//! until it serves sessions, talk raw protocol to it, and stop it on drop.
//!
//! Everything listens on 127.0.0.1 and on ports picked at run time. Helpers return errors
//! (or panic with a message saying what failed) rather than unwrap.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use corral_proto::frame::frame;
use corral_proto::{
    ConnectRequest, ConnectResponse, CreateMode, CreateRequest, Jute, Reader, ReplyHeader, Request,
};

/// How long a server may take to start serving sessions.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 to find a free port");
    l.local_addr()
        .expect("local_addr of a bound listener")
        .port()
}

/// A fresh, empty directory under the system temp dir, unique to this process and call.
pub fn fresh_temp_dir(tag: &str) -> std::io::Result<PathBuf> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "corral-test-{tag}-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A unique suffix for znode paths, so runs never collide.
pub fn unique_name(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{tag}-{}-{nanos}", std::process::id())
}

/// Whether CI is set (non-empty): CI installs every tool a test needs, so a missing one there
/// is a failure, not a skip.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// Reports a tool the test cannot run without: a panic under CI, else "SKIP: {why}".
pub fn missing_tool(why: &str) {
    if in_ci() {
        panic!("{why}; CI must install it (scripts/install-oracle.sh)");
    }
    eprintln!("SKIP: {why}");
}

/// Waits up to `within` for `child` to exit; its status, or None if it is still running (or
/// cannot be waited for).
pub fn wait_child(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) | Err(_) => return None,
        }
    }
}

/// One server process (corral or ZooKeeper) with its config and data in a temp dir.
/// Dropping it stops the process (SIGTERM, then SIGKILL after 5 s) and removes the dir,
/// unless the env var CORRAL_KEEP_TEST_DIRS is set.
pub struct ServerProcess {
    pub name: &'static str,
    pub pid: u32,
    pub port: u16,
    /// The temp dir holding zoo.cfg, the logs and `data/`.
    pub dir: PathBuf,
    child: Child,
    /// How many times the process was (re)launched; earlier runs' logs are kept as
    /// `server.<n>.out` / `server.<n>.err` (see [`CorralServer::restart`]).
    generation: u32,
}

impl ServerProcess {
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The dataDir in zoo.cfg.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends a four-letter word and returns everything the server answers before closing.
    pub fn four_letter(&self, cmd: &str) -> String {
        four_letter(&self.addr(), cmd)
            .unwrap_or_else(|e| format!("<four_letter {cmd} failed: {e}>"))
    }

    /// The tail of the server's stdout/stderr, for failure messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.dir)
    }

    /// Everything the current run of the process wrote to stderr (where corral logs).
    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.err")).unwrap_or_default()
    }

    /// SIGKILL (no chance to flush or clean up) and reap the process.
    pub fn kill9(&mut self) -> Result<(), String> {
        if self.is_running() {
            self.child
                .kill()
                .map_err(|e| format!("SIGKILL {} (pid {}): {e}", self.name, self.pid))?;
        }
        self.child
            .wait()
            .map(|_| ())
            .map_err(|e| format!("wait for {} (pid {}): {e}", self.name, self.pid))
    }

    /// Sends `kill -<sig>` (STOP freezes the process with its sockets open; CONT lets it go).
    pub fn signal(&self, sig: &str) -> Result<(), String> {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid.to_string())
            .status()
            .map_err(|e| format!("kill -{sig} {} (pid {}): {e}", self.name, self.pid))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!(
                "kill -{sig} {} (pid {}): {status}",
                self.name, self.pid
            ))
        }
    }

    /// SIGTERM, then waits up to `within` for the process to exit and returns its status.
    /// If it is still running by then it is SIGKILLed and this is an error.
    pub fn terminate(&mut self, within: Duration) -> Result<ExitStatus, String> {
        if self.is_running() {
            Command::new("kill")
                .arg("-TERM")
                .arg(self.pid.to_string())
                .status()
                .map_err(|e| format!("kill -TERM {}: {e}", self.pid))?;
        }
        match self.wait_exit(within) {
            Some(status) => Ok(status),
            None => {
                let _ = self.kill9();
                Err(format!(
                    "{} (pid {}) did not exit within {within:?} of SIGTERM; SIGKILLed",
                    self.name, self.pid
                ))
            }
        }
    }

    /// Waits up to `within` for the process to exit by itself; its status, or None if it
    /// is still running.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        wait_child(&mut self.child, within)
    }

    /// Launches `cmd` as the next run of this server (same dir, same port). The previous
    /// run must have exited; its logs are renamed to `server.<n>.out` / `server.<n>.err`.
    /// Does not wait for the new run to serve.
    fn relaunch(&mut self, cmd: Command) -> Result<(), String> {
        if self.is_running() {
            return Err(format!(
                "{} (pid {}) is still running; stop it before relaunching",
                self.name, self.pid
            ));
        }
        let n = self.generation;
        for f in ["out", "err"] {
            let from = self.dir.join(format!("server.{f}"));
            if from.exists() {
                let to = self.dir.join(format!("server.{n}.{f}"));
                std::fs::rename(&from, &to)
                    .map_err(|e| format!("rename {} to {}: {e}", from.display(), to.display()))?;
            }
        }
        let child = launch(self.name, &self.dir, cmd)?;
        self.pid = child.id();
        self.child = child;
        self.generation += 1;
        Ok(())
    }

    fn spawn(
        name: &'static str,
        dir: PathBuf,
        port: u16,
        cmd: Command,
    ) -> Result<ServerProcess, String> {
        let mut p = Self::spawn_unready(name, dir, port, cmd)?;
        p.wait_ready()?;
        Ok(p)
    }

    /// Launches without waiting for it to serve (an ensemble member serves once a leader is
    /// elected, which needs the other members started too).
    fn spawn_unready(
        name: &'static str,
        dir: PathBuf,
        port: u16,
        cmd: Command,
    ) -> Result<ServerProcess, String> {
        let child = launch(name, &dir, cmd)?;
        Ok(ServerProcess {
            name,
            pid: child.id(),
            port,
            dir,
            child,
            generation: 0,
        })
    }

    /// Waits until the port accepts and a session can be created (and closed again, so no
    /// session is left to expire later and perturb the zxids a test observes).
    pub fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut last_err = String::from("never tried");
        while Instant::now() < deadline {
            if !self.is_running() {
                return Err(format!(
                    "{} exited during start-up; log:\n{}",
                    self.name,
                    self.log_tail()
                ));
            }
            match probe_session(&self.addr()) {
                Ok(()) => return Ok(()),
                Err(e) => last_err = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!(
            "{} did not serve a session on {} within {:?} (last error: {last_err}); log:\n{}",
            self.name,
            self.addr(),
            START_TIMEOUT,
            self.log_tail()
        ))
    }

    fn stop(&mut self) {
        if self.terminate(Duration::from_secs(5)).is_err() {
            // terminate SIGKILLs on a timeout, but not when `kill -TERM` itself failed.
            let _ = self.kill9();
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop();
        if std::env::var_os("CORRAL_KEEP_TEST_DIRS").is_some() {
            eprintln!("keeping {} dir {}", self.name, self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Starts `cmd` with stdout and stderr going to fresh `<dir>/server.out` and `server.err`.
fn launch(name: &str, dir: &Path, mut cmd: Command) -> Result<Child, String> {
    let out = std::fs::File::create(dir.join("server.out"))
        .map_err(|e| format!("create server.out: {e}"))?;
    let err = std::fs::File::create(dir.join("server.err"))
        .map_err(|e| format!("create server.err: {e}"))?;
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    cmd.spawn().map_err(|e| format!("spawn {name}: {e}"))
}

fn log_tail(dir: &Path) -> String {
    let mut s = String::new();
    for f in ["server.out", "server.err"] {
        if let Ok(text) = std::fs::read_to_string(dir.join(f)) {
            let lines: Vec<&str> = text.lines().collect();
            let from = lines.len().saturating_sub(40);
            s.push_str(&format!("--- {f} (last {} lines)\n", lines.len() - from));
            for l in &lines[from..] {
                s.push_str(l);
                s.push('\n');
            }
        }
    }
    s
}

/// `GET path` on the admin server at 127.0.0.1:`port`: (status, body).
pub fn admin_get(port: u16, path: &str) -> (u16, String) {
    admin_request(port, "GET", path, "")
}

fn admin_request(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to the admin port");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let (head, body) = out.split_once("\r\n\r\n").expect("a header and a body");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("a status line: {head}"));
    (status, body.to_string())
}

/// `POST path` with `body` on the admin server at 127.0.0.1:`port`: (status, body).
pub fn admin_post(port: u16, path: &str, body: &str) -> (u16, String) {
    admin_request(port, "POST", path, body)
}

/// `/commands/<command>` as JSON, checked to be ZooKeeper's shape (status 200, `command`).
pub fn admin_json(port: u16, command: &str) -> serde_json::Value {
    let (status, body) = admin_get(port, &format!("/commands/{command}"));
    assert_eq!(status, 200, "{command}: {body}");
    let v: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{command}: {e}: {body}"));
    assert_eq!(v["command"], command, "{body}");
    v
}

/// `/commands/obituaries`' entry for `session`, if there is one.
pub fn admin_obituary(port: u16, session: i64) -> Option<serde_json::Value> {
    let all = admin_json(port, "obituaries");
    all["obituaries"]
        .as_array()?
        .iter()
        .find(|o| o["session_id"] == format!("0x{session:x}"))
        .cloned()
}

/// `corral doctor --json` with `args` (a 1 s probe unless they say): its exit code and its
/// document.
pub fn doctor(args: &[&str]) -> (i32, serde_json::Value) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_corral"));
    cmd.arg("doctor").arg("--json");
    if !args.contains(&"--probe-seconds") {
        cmd.args(["--probe-seconds", "1"]);
    }
    let out = cmd.args(args).output().expect("run corral doctor");
    let text = String::from_utf8_lossy(&out.stdout);
    let doc = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "doctor's JSON: {e}\nstdout:\n{text}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), doc)
}

/// The first finding of `doc` (a doctor document) of `kind`, if any.
pub fn finding<'a>(doc: &'a serde_json::Value, kind: &str) -> Option<&'a serde_json::Value> {
    doc["findings"]
        .as_array()?
        .iter()
        .find(|f| f["kind"] == kind)
}

/// zoo.cfg shared by corral and ZooKeeper; `extra` lines are appended.
fn write_zoo_cfg(dir: &Path, port: u16, extra: &str) -> Result<PathBuf, String> {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).map_err(|e| format!("create {}: {e}", data.display()))?;
    let cfg = format!(
        "tickTime=2000\n\
         dataDir={}\n\
         clientPort={port}\n\
         clientPortAddress=127.0.0.1\n\
         4lw.commands.whitelist=*\n\
         maxClientCnxns=0\n\
         admin.enableServer=false\n\
         {extra}\n",
        data.display()
    );
    let path = dir.join("zoo.cfg");
    std::fs::write(&path, cfg).map_err(|e| format!("write {}: {e}", path.display()))?;
    Ok(path)
}

/// `corral serve --config <tmp>/zoo.cfg`.
pub struct CorralServer {
    pub proc: ServerProcess,
}

impl CorralServer {
    /// Starts corral; panics with the reason (and the server's log) if it does not come up.
    pub fn start(extra_cfg: &str) -> CorralServer {
        Self::try_start(extra_cfg).unwrap_or_else(|e| panic!("cannot start corral: {e}"))
    }

    pub fn try_start(extra_cfg: &str) -> Result<CorralServer, String> {
        let dir = fresh_temp_dir("corral").map_err(|e| format!("temp dir: {e}"))?;
        Self::try_start_in(dir, extra_cfg)
    }

    /// Like [`CorralServer::start`], in a directory the caller prepared (e.g. with a file
    /// system mounted on `<dir>/data`, the dataDir). The directory is removed on drop like
    /// any other (unless CORRAL_KEEP_TEST_DIRS is set).
    pub fn start_in(dir: PathBuf, extra_cfg: &str) -> CorralServer {
        Self::try_start_in(dir, extra_cfg).unwrap_or_else(|e| panic!("cannot start corral: {e}"))
    }

    pub fn try_start_in(dir: PathBuf, extra_cfg: &str) -> Result<CorralServer, String> {
        Self::try_start_on(dir, free_port(), extra_cfg)
    }

    /// Like [`CorralServer::try_start_in`] on a given port: taking over from a server that
    /// was stopped there (an in-place switch from ZooKeeper keeps its dir and port).
    pub fn try_start_on(dir: PathBuf, port: u16, extra_cfg: &str) -> Result<CorralServer, String> {
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let cfg = write_zoo_cfg(&dir, port, extra_cfg)?;
        ServerProcess::spawn("corral", dir, port, corral_serve_cmd(&cfg))
            .map(|proc| CorralServer { proc })
    }

    /// Starts the keeper again on the same zoo.cfg (same port, same dataDir) after the
    /// previous run exited ([`ServerProcess::kill9`], [`ServerProcess::terminate`]) and waits
    /// until it serves sessions. An error carries the new run's log.
    pub fn restart(&mut self) -> Result<(), String> {
        self.respawn()?;
        self.proc.wait_ready()
    }

    /// Starts the keeper again like [`CorralServer::restart`] but does not wait for it to
    /// serve: for a start that is expected to fail ([`ServerProcess::wait_exit`]).
    pub fn respawn(&mut self) -> Result<(), String> {
        let cmd = corral_serve_cmd(&self.proc.dir.join("zoo.cfg"));
        self.proc.relaunch(cmd)
    }
}

/// A corral ensemble on loopback: `n` members, each in its own temp dir with its zoo.cfg
/// (the same `server.N` lines, its own client port) and `data/myid`. Dropping it stops
/// every member that still runs.
pub struct CorralEnsemble {
    pub members: Vec<CorralServer>,
}

impl CorralEnsemble {
    /// Starts `n` members and waits until each serves sessions (a leader is elected).
    pub fn start(n: usize, extra_cfg: &str) -> CorralEnsemble {
        Self::try_start(n, extra_cfg).unwrap_or_else(|e| panic!("cannot start the ensemble: {e}"))
    }

    pub fn try_start(n: usize, extra_cfg: &str) -> Result<CorralEnsemble, String> {
        Self::try_start_each(n, extra_cfg, |_| String::new())
    }

    /// As [`CorralEnsemble::try_start`], with lines of each member's own appended (member ids
    /// from 1), e.g. an admin server port each.
    pub fn try_start_each(
        n: usize,
        extra_cfg: &str,
        own: impl Fn(usize) -> String,
    ) -> Result<CorralEnsemble, String> {
        let mut members = Vec::with_capacity(n);
        for (dir, port, cfg) in ensemble_dirs("corral-ens", n, extra_cfg, own)? {
            let proc = ServerProcess::spawn_unready("corral", dir, port, corral_serve_cmd(&cfg))?;
            members.push(CorralServer { proc });
        }
        for m in members.iter_mut() {
            m.proc.wait_ready()?;
        }
        Ok(CorralEnsemble { members })
    }

    /// Client addresses of every member, comma separated (a connect string).
    pub fn connect_string(&self) -> String {
        connect_string_of(&self.members)
    }

    /// The index of the member whose `srvr` says `Mode: leader`, waiting up to `within`.
    pub fn leader(&mut self, within: Duration) -> Option<usize> {
        leader_of(&mut self.members, within)
    }
}

/// The dirs of an `n`-member ensemble on loopback, each with its zoo.cfg (the same `server.N`
/// lines, its own client port, `extra_cfg`, then `own(id)`) and `data/myid`: (dir, client
/// port, zoo.cfg) by member id from 1.
fn ensemble_dirs(
    tag: &str,
    n: usize,
    extra_cfg: &str,
    own: impl Fn(usize) -> String,
) -> Result<Vec<(PathBuf, u16, PathBuf)>, String> {
    let servers: String = (1..=n)
        .map(|id| format!("server.{id}=127.0.0.1:{}:{}\n", free_port(), free_port()))
        .collect();
    let mut out = Vec::with_capacity(n);
    for id in 1..=n {
        let dir = fresh_temp_dir(tag).map_err(|e| format!("temp dir: {e}"))?;
        let port = free_port();
        let cfg = write_zoo_cfg(&dir, port, &format!("{servers}{extra_cfg}\n{}", own(id)))?;
        std::fs::write(dir.join("data").join("myid"), format!("{id}\n"))
            .map_err(|e| format!("write myid: {e}"))?;
        out.push((dir, port, cfg));
    }
    Ok(out)
}

/// Client addresses of `members`, comma separated (a connect string).
fn connect_string_of<M: std::ops::Deref<Target = ServerProcess>>(members: &[M]) -> String {
    members
        .iter()
        .map(|m| m.addr())
        .collect::<Vec<_>>()
        .join(",")
}

/// The index of the running member whose `srvr` says `Mode: leader`, waiting up to `within`.
fn leader_of<M: std::ops::DerefMut<Target = ServerProcess>>(
    members: &mut [M],
    within: Duration,
) -> Option<usize> {
    let deadline = Instant::now() + within;
    loop {
        for (i, m) in members.iter_mut().enumerate() {
            if m.is_running() && m.four_letter("srvr").contains("Mode: leader") {
                return Some(i);
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `corral serve --config <cfg>`, run in the config's directory.
fn corral_serve_cmd(cfg: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_corral"));
    cmd.arg("serve").arg("--config").arg(cfg);
    if let Some(dir) = cfg.parent() {
        cmd.current_dir(dir);
    }
    cmd
}

impl std::ops::Deref for CorralServer {
    type Target = ServerProcess;
    fn deref(&self) -> &ServerProcess {
        &self.proc
    }
}

impl std::ops::DerefMut for CorralServer {
    fn deref_mut(&mut self) -> &mut ServerProcess {
        &mut self.proc
    }
}

/// Real Apache ZooKeeper 3.8 from the Debian packages `zookeeper` (jars in /usr/share/java).
pub struct RealZk {
    pub proc: ServerProcess,
    /// The extra JVM arguments it was started with, for [`RealZk::restart`].
    jvm_args: Vec<String>,
}

const JAVA_DIR: &str = "/usr/share/java";

impl RealZk {
    /// Why ZooKeeper cannot be run here, if it cannot.
    pub fn unavailable() -> Option<String> {
        if !Path::new(JAVA_DIR).join("zookeeper.jar").exists() {
            return Some(format!(
                "{JAVA_DIR}/zookeeper.jar not found (apt-get install zookeeper)"
            ));
        }
        match Command::new(java())
            .arg("-version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
        {
            Ok(s) if s.success() => None,
            Ok(s) => Some(format!("`java -version` failed: {s}")),
            Err(e) => Some(format!("no java: {e}")),
        }
    }

    /// Starts ZooKeeper, or returns None (after printing "SKIP: ...") when it is not installed.
    /// With the env var CI set, a missing ZooKeeper is a failure instead: CI installs it.
    pub fn start(extra_cfg: &str) -> Option<RealZk> {
        if let Some(why) = Self::unavailable() {
            if std::env::var_os("CI").is_some() {
                panic!("real ZooKeeper is required when CI is set: {why}");
            }
            eprintln!("SKIP: real ZooKeeper not available: {why}");
            return None;
        }
        Some(
            Self::try_start(extra_cfg)
                .unwrap_or_else(|e| panic!("cannot start real ZooKeeper: {e}")),
        )
    }

    pub fn try_start(extra_cfg: &str) -> Result<RealZk, String> {
        Self::try_start_with_jvm(extra_cfg, &[])
    }

    /// [`RealZk::try_start`] with extra JVM arguments (system properties ZooKeeper reads only
    /// from the JVM, such as `-Djute.maxbuffer=N`).
    pub fn try_start_with_jvm(extra_cfg: &str, jvm_args: &[&str]) -> Result<RealZk, String> {
        let dir = fresh_temp_dir("zk").map_err(|e| format!("temp dir: {e}"))?;
        let port = free_port();
        let cfg = write_zoo_cfg(&dir, port, extra_cfg)?;
        let jvm_args: Vec<String> = jvm_args.iter().map(|a| a.to_string()).collect();
        let cmd = zk_cmd(&dir, &cfg, &jvm_args);
        ServerProcess::spawn("zookeeper", dir, port, cmd).map(|proc| RealZk { proc, jvm_args })
    }

    /// Starts ZooKeeper again on the same zoo.cfg (same port, same dataDir) after the previous
    /// run exited, and waits until it serves sessions.
    pub fn restart(&mut self) -> Result<(), String> {
        let cmd = zk_cmd(
            &self.proc.dir,
            &self.proc.dir.join("zoo.cfg"),
            &self.jvm_args,
        );
        self.proc.relaunch(cmd)?;
        self.proc.wait_ready()
    }
}

/// A real ZooKeeper 3.8 ensemble on loopback, laid out like [`CorralEnsemble`] (the same
/// `server.N` lines, `data/myid`), plus the `initLimit`/`syncLimit` ZooKeeper's quorum needs.
/// Dropping it stops every member that still runs.
pub struct RealZkEnsemble {
    pub members: Vec<RealZk>,
}

/// The quorum timing lines a real ZooKeeper ensemble needs (in ticks of tickTime=2000).
const ZK_QUORUM_CFG: &str = "initLimit=10\nsyncLimit=5\n";

impl RealZkEnsemble {
    /// Starts `n` members and waits until each serves sessions, or returns None (after
    /// printing "SKIP: ...") when ZooKeeper is not installed; a failure under CI.
    pub fn start(n: usize, extra_cfg: &str) -> Option<RealZkEnsemble> {
        Self::start_with_jvm(n, extra_cfg, &[])
    }

    /// [`RealZkEnsemble::start`] with extra JVM arguments for every member, kept for its
    /// restarts (system properties ZooKeeper reads only from the JVM, such as
    /// `-Dreadonlymode.enabled=true`).
    pub fn start_with_jvm(n: usize, extra_cfg: &str, jvm_args: &[&str]) -> Option<RealZkEnsemble> {
        if let Some(why) = RealZk::unavailable() {
            missing_tool(&format!("real ZooKeeper not available: {why}"));
            return None;
        }
        Some(
            Self::try_start_with_jvm(n, extra_cfg, jvm_args)
                .unwrap_or_else(|e| panic!("cannot start a real ZooKeeper ensemble: {e}")),
        )
    }

    pub fn try_start(n: usize, extra_cfg: &str) -> Result<RealZkEnsemble, String> {
        Self::try_start_with_jvm(n, extra_cfg, &[])
    }

    pub fn try_start_with_jvm(
        n: usize,
        extra_cfg: &str,
        jvm_args: &[&str],
    ) -> Result<RealZkEnsemble, String> {
        let extra = format!("{ZK_QUORUM_CFG}{extra_cfg}");
        let jvm_args: Vec<String> = jvm_args.iter().map(|a| a.to_string()).collect();
        let mut members = Vec::with_capacity(n);
        for (dir, port, cfg) in ensemble_dirs("zk-ens", n, &extra, |_| String::new())? {
            let cmd = zk_cmd(&dir, &cfg, &jvm_args);
            let proc = ServerProcess::spawn_unready("zookeeper", dir, port, cmd)?;
            members.push(RealZk {
                proc,
                jvm_args: jvm_args.clone(),
            });
        }
        for m in members.iter_mut() {
            m.proc.wait_ready()?;
        }
        Ok(RealZkEnsemble { members })
    }

    /// Client addresses of every member, comma separated (a connect string).
    pub fn connect_string(&self) -> String {
        connect_string_of(&self.members)
    }

    /// The index of the member whose `srvr` says `Mode: leader`, waiting up to `within`.
    pub fn leader(&mut self, within: Duration) -> Option<usize> {
        leader_of(&mut self.members, within)
    }
}

/// An ensemble (corral's or ZooKeeper's) whose members can be killed and restarted, for
/// scenarios written once and run against both.
pub trait Ensemble {
    /// Every member's client address, by index.
    fn addrs(&self) -> Vec<String>;
    /// The leader's index, waiting up to `within`.
    fn leader_within(&mut self, within: Duration) -> Option<usize>;
    /// kill -9 member `i`.
    fn kill9(&mut self, i: usize) -> Result<(), String>;
    /// Starts member `i` again (same config, same dataDir) after it exited, and waits until
    /// it serves sessions.
    fn restart(&mut self, i: usize) -> Result<(), String>;
    /// Client addresses of every member, comma separated (a connect string).
    fn connect_string(&self) -> String {
        self.addrs().join(",")
    }
}

/// Both ensembles keep their members in `members`, with the same methods.
macro_rules! impl_ensemble {
    ($($ty:ty),+) => {$(
        impl Ensemble for $ty {
            fn addrs(&self) -> Vec<String> {
                self.members.iter().map(|m| m.addr()).collect()
            }
            fn leader_within(&mut self, within: Duration) -> Option<usize> {
                self.leader(within)
            }
            fn kill9(&mut self, i: usize) -> Result<(), String> {
                self.members[i].kill9()
            }
            fn restart(&mut self, i: usize) -> Result<(), String> {
                self.members[i].restart()
            }
        }
    )+};
}
impl_ensemble!(CorralEnsemble, RealZkEnsemble);

/// The java command line of a standalone ZooKeeper on `cfg`, run in `dir`.
fn zk_cmd(dir: &Path, cfg: &Path, jvm_args: &[String]) -> Command {
    // zookeeper.jar's manifest Class-Path brings netty, jute, slf4j-api, jetty, ...; it
    // lacks an slf4j binding (slf4j-simple logs to stderr) and netty-codec/-resolver,
    // which the Netty connection factory needs should a config select it.
    let cp = [
        "zookeeper.jar",
        "netty-codec.jar",
        "netty-resolver.jar",
        "slf4j-simple.jar",
    ]
    .iter()
    .map(|j| format!("{JAVA_DIR}/{j}"))
    .collect::<Vec<_>>()
    .join(":");
    let mut cmd = Command::new(java());
    cmd.arg("-Xmx256m")
        .arg("-Dfile.encoding=UTF-8")
        .arg("-Djava.awt.headless=true")
        .arg("-Dorg.slf4j.simpleLogger.defaultLogLevel=info")
        .arg("-Dzookeeper.admin.enableServer=false")
        .args(jvm_args)
        .arg("-cp")
        .arg(cp)
        .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
        .arg(cfg)
        .current_dir(dir);
    cmd
}

fn java() -> String {
    std::env::var("REAL_JAVA").unwrap_or_else(|_| "java".to_string())
}

impl std::ops::Deref for RealZk {
    type Target = ServerProcess;
    fn deref(&self) -> &ServerProcess {
        &self.proc
    }
}

impl std::ops::DerefMut for RealZk {
    fn deref_mut(&mut self) -> &mut ServerProcess {
        &mut self.proc
    }
}

/// Sends a four-letter word to `addr` and reads the answer until the server closes.
pub fn four_letter(addr: &str, cmd: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(cmd.as_bytes())?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Creates a session with a raw handshake and closes it with closeSession.
fn probe_session(addr: &str) -> Result<(), String> {
    let (mut c, resp) = RawConn::new_session(addr)?;
    if resp.timeout <= 0 {
        return Err(format!("handshake refused: {resp:?}"));
    }
    c.close_session()
}

/// A blocking connection that speaks raw frames, for probing servers and sending them junk.
pub struct RawConn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

/// What became of a connection after something was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The server closed (EOF or reset) after sending these frame bodies, or sent bytes that
    /// are no frame (then the last body is a `<garbled: ...>` note and reading stopped).
    Closed(Vec<Vec<u8>>),
    /// Still open after the wait; these frame bodies arrived.
    Open(Vec<Vec<u8>>),
}

/// The xid of [`RawConn::close_session`].
const CLOSE_XID: i32 = 99;

impl RawConn {
    pub fn connect(addr: &str) -> std::io::Result<RawConn> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        Ok(RawConn {
            stream,
            buf: Vec::new(),
        })
    }

    /// Connects from a chosen loopback address (127.0.0.2, ...), so a test can play several
    /// client hosts against per-address limits.
    pub fn connect_from(source: std::net::IpAddr, addr: &str) -> std::io::Result<RawConn> {
        let target: std::net::SocketAddr = addr
            .parse()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{e}")))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let stream = runtime.block_on(async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(std::net::SocketAddr::new(source, 0))?;
            socket.connect(target).await
        })?;
        let stream = stream.into_std()?;
        // A blocking socket from here on, as RawConn expects.
        stream.set_nonblocking(false)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        Ok(RawConn {
            stream,
            buf: Vec::new(),
        })
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    pub fn send_frame(&mut self, body: &[u8]) -> std::io::Result<()> {
        self.send_raw(&frame(body))
    }

    /// Half-closes our side (no more bytes from us).
    pub fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// The next frame body, waiting at most `timeout`. Ok(None) when the server closed.
    pub fn read_frame(&mut self, timeout: Duration) -> Result<Option<Vec<u8>>, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.buf.len() >= 4 {
                let len = i32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
                if len < 0 {
                    return Err(format!("server sent a negative frame length {len}"));
                }
                let total = 4 + len as usize;
                if self.buf.len() >= total {
                    let body = self.buf[4..total].to_vec();
                    self.buf.drain(..total);
                    return Ok(Some(body));
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("no complete frame within {timeout:?}"));
            }
            self.stream
                .set_read_timeout(Some(left))
                .map_err(|e| e.to_string())?;
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Ok(None),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if is_reset(&e) => return Ok(None),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(format!("no complete frame within {timeout:?}"))
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// Reads frames until the server closes or `wait` passes.
    pub fn outcome(&mut self, wait: Duration) -> Outcome {
        let deadline = Instant::now() + wait;
        let mut frames = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Outcome::Open(frames);
            }
            match self.read_frame(left) {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => return Outcome::Closed(frames),
                Err(e) if e.starts_with("no complete frame") => return Outcome::Open(frames),
                // A garbled answer (e.g. a negative frame length) is still an answer: keep it
                // as a frame, so a check that nothing was sent fails.
                Err(e) => {
                    frames.push(format!("<garbled: {e}>").into_bytes());
                    return Outcome::Closed(frames);
                }
            }
        }
    }

    pub fn handshake(&mut self, req: &ConnectRequest) -> Result<ConnectResponse, String> {
        self.send_frame(&req.to_bytes())
            .map_err(|e| format!("send ConnectRequest: {e}"))?;
        match self.read_frame(Duration::from_secs(5))? {
            Some(body) => ConnectResponse::read(&mut Reader::new(&body))
                .map_err(|e| format!("ConnectResponse: {e}")),
            None => Err("server closed instead of answering the handshake".to_string()),
        }
    }

    /// A new session with the default 10 s timeout.
    pub fn new_session(addr: &str) -> Result<(RawConn, ConnectResponse), String> {
        Self::new_session_with_timeout(addr, 10_000)
    }

    /// A new session asking for `timeout_ms`; it sends nothing after the handshake unless
    /// told, so it lives only as long as that timeout.
    pub fn new_session_with_timeout(
        addr: &str,
        timeout_ms: i32,
    ) -> Result<(RawConn, ConnectResponse), String> {
        let mut c = RawConn::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
        let resp = c.handshake(&ConnectRequest {
            timeout: timeout_ms,
            read_only: Some(false),
            ..Default::default()
        })?;
        if resp.session_id == 0 {
            return Err(format!("no session: {resp:?}"));
        }
        Ok((c, resp))
    }

    /// Ends the session with closeSession; an error if the server does not answer Ok.
    pub fn close_session(&mut self) -> Result<(), String> {
        // Servers echo the xid without checking it against earlier ones.
        let (hdr, _) = self.request(CLOSE_XID, &Request::CloseSession)?;
        if hdr.err != 0 {
            return Err(format!("closeSession answered {hdr:?}"));
        }
        Ok(())
    }

    /// Creates `path` with no data and an open ACL; an error unless the server answers Ok.
    pub fn create(&mut self, xid: i32, path: &str, mode: CreateMode) -> Result<(), String> {
        let (hdr, _) = self.request(
            xid,
            &Request::Create(CreateRequest {
                path: path.to_string(),
                data: Some(Vec::new()),
                acl: corral_proto::open_acl_unsafe(),
                flags: mode.code(),
            }),
        )?;
        if hdr.err != 0 {
            return Err(format!("create {path} answered {hdr:?}"));
        }
        Ok(())
    }

    /// Sends one request and returns the first non-notification reply (header and body).
    pub fn request(&mut self, xid: i32, req: &Request) -> Result<(ReplyHeader, Vec<u8>), String> {
        self.send_frame(&req.to_frame_body(xid))
            .map_err(|e| format!("send: {e}"))?;
        loop {
            let body = self
                .read_frame(Duration::from_secs(5))?
                .ok_or_else(|| "server closed the connection".to_string())?;
            let mut r = Reader::new(&body);
            let hdr = ReplyHeader::read(&mut r).map_err(|e| format!("reply header: {e}"))?;
            if hdr.xid == corral_proto::xid::NOTIFICATION {
                continue;
            }
            let rest = body[r.position()..].to_vec();
            return Ok((hdr, rest));
        }
    }
}

fn is_reset(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe
    )
}

/// A server that can be killed and restarted on the same port and data.
pub trait Restartable: std::ops::DerefMut<Target = ServerProcess> {
    /// Starts it again on the same zoo.cfg and waits until it serves.
    fn start_again(&mut self) -> Result<(), String>;

    /// kill -9, `down` with nothing on the port, then the server again on the same data.
    fn kill_and_restart_after(&mut self, down: Duration) -> Result<(), String> {
        self.kill9()?;
        std::thread::sleep(down);
        self.start_again()
    }
}

impl Restartable for CorralServer {
    fn start_again(&mut self) -> Result<(), String> {
        self.restart()
    }
}

impl Restartable for RealZk {
    fn start_again(&mut self) -> Result<(), String> {
        self.restart()
    }
}

/// The session events until (and with) the first in state `until`, within `within`.
pub async fn events_until(
    rx: &mut tokio::sync::broadcast::Receiver<corral_client::SessionEvent>,
    until: corral_client::SessionState,
    within: Duration,
) -> Vec<corral_client::SessionEvent> {
    let (seen, reached) = collect_events(rx, Some(until), within).await;
    assert!(reached, "no {until:?} within {within:?}; events: {seen:?}");
    seen
}

/// The session events that arrive within `within`.
pub async fn events_for(
    rx: &mut tokio::sync::broadcast::Receiver<corral_client::SessionEvent>,
    within: Duration,
) -> Vec<corral_client::SessionEvent> {
    collect_events(rx, None, within).await.0
}

/// Session events until one in state `until` (then true) or until `within` is over.
async fn collect_events(
    rx: &mut tokio::sync::broadcast::Receiver<corral_client::SessionEvent>,
    until: Option<corral_client::SessionState>,
    within: Duration,
) -> (Vec<corral_client::SessionEvent>, bool) {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Ok(ev)) => {
                let reached = Some(ev.state) == until;
                seen.push(ev);
                if reached {
                    return (seen, true);
                }
            }
            Ok(Err(e)) => panic!("session events: {e}; so far {seen:?}"),
            Err(_) => return (seen, false),
        }
    }
}
