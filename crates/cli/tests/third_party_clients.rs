//! Real third-party ZooKeeper clients against a corral server started by each test:
//!
//! - the Java client, through `zkCli.sh` from the Debian package `zookeeper`
//!   (one-shot commands and an interactive session fed on stdin);
//! - the C client, through `cli_mt` from the Debian package `zookeeper-bin`;
//! - the `zookeeper-client` Rust crate.
//!
//! Each one creates, reads, watches (and sees the watch fire) and deletes. Changes that must
//! fire a watch, and checks of what the server really holds, go through a separate raw
//! session (tests/common), so a client is never only checked against itself.
//!
//! When zkCli.sh (or java) or cli_mt is missing, its test prints SKIP and returns, unless the
//! env var CI is set: CI installs them, so there a missing tool is a failure.
//! ZKCLI and CLI_MT override where the tools are looked for.

mod common;

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{unique_name, wait_child, CorralServer, RawConn};
use corral_proto::{GetDataRequest, Jute, Reader, Request, SetDataRequest, Stat};

const ZKCLI_DEFAULT: &str = "/usr/share/zookeeper/bin/zkCli.sh";
const CLI_MT_DEFAULT: &str = "/usr/lib/zookeeper/bin/cli_mt";

/// How long a client may take to show an expected line (a JVM start included).
const WAIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// Finding the tools

/// Reports a missing tool: SKIP (None) normally, a panic when CI is set.
fn missing(why: String) -> Option<PathBuf> {
    if std::env::var_os("CI").is_some() {
        panic!("{why}; CI must install it");
    }
    eprintln!("SKIP: {why}");
    None
}

/// The tool at `$env` or `default`, if it is there.
fn find_tool(env: &str, default: &str, package: &str) -> Option<PathBuf> {
    let path = std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    if path.is_file() {
        Some(path)
    } else {
        missing(format!(
            "{} not found (apt-get install {package}, or set {env})",
            path.display()
        ))
    }
}

fn zkcli() -> Option<PathBuf> {
    let path = find_tool("ZKCLI", ZKCLI_DEFAULT, "zookeeper")?;
    let java = Command::new("java")
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match java {
        Ok(s) if s.success() => Some(path),
        Ok(s) => missing(format!("zkCli.sh needs java; `java -version` failed: {s}")),
        Err(e) => missing(format!("zkCli.sh needs java, which cannot run: {e}")),
    }
}

fn cli_mt() -> Option<PathBuf> {
    find_tool("CLI_MT", CLI_MT_DEFAULT, "zookeeper-bin")
}

// ---------------------------------------------------------------------------------------------
// An independent observer: one raw session per call

fn raw_session(addr: &str) -> RawConn {
    RawConn::new_session(addr)
        .map(|(c, _)| c)
        .unwrap_or_else(|e| panic!("raw session to {addr}: {e}"))
}

fn raw_close(mut c: RawConn) {
    c.close_session()
        .unwrap_or_else(|e| panic!("closeSession: {e}"));
}

/// The data at `path` as the server holds it, or None when the node does not exist.
fn raw_get(addr: &str, path: &str) -> Option<Vec<u8>> {
    let mut c = raw_session(addr);
    let (hdr, body) = c
        .request(
            1,
            &Request::GetData(GetDataRequest {
                path: path.to_string(),
                watch: false,
            }),
        )
        .unwrap_or_else(|e| panic!("getData {path}: {e}"));
    raw_close(c);
    match hdr.err {
        0 => {
            let mut r = Reader::new(&body);
            let data = r
                .buffer()
                .unwrap_or_else(|e| panic!("getData {path} reply: {e}"));
            Stat::read(&mut r).unwrap_or_else(|e| panic!("getData {path} stat: {e}"));
            Some(data)
        }
        -101 => None,
        err => panic!("getData {path} answered error {err}"),
    }
}

/// Sets the data at `path` from a session of its own.
fn raw_set(addr: &str, path: &str, data: &[u8]) {
    let mut c = raw_session(addr);
    let (hdr, _) = c
        .request(
            1,
            &Request::SetData(SetDataRequest {
                path: path.to_string(),
                data: Some(data.to_vec()),
                version: -1,
            }),
        )
        .unwrap_or_else(|e| panic!("setData {path}: {e}"));
    assert_eq!(hdr.err, 0, "setData {path} failed: {hdr:?}");
    raw_close(c);
}

// ---------------------------------------------------------------------------------------------
// A client process driven on stdin

/// A child process with piped stdin whose stdout and stderr are collected as they arrive.
struct Interactive {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    output: Arc<Mutex<String>>,
    /// `wait_for` looks only after this offset, so expectations are met in order.
    cursor: usize,
}

fn collect(mut from: impl Read + Send + 'static, into: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        loop {
            match from.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => into
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push_str(&String::from_utf8_lossy(&chunk[..n])),
            }
        }
    });
}

impl Interactive {
    fn spawn(name: &str, mut cmd: Command) -> Result<Interactive, String> {
        // A group of its own, so that drop can kill what it started too: zkCli.sh runs java
        // as a child (no exec), and killing only the script would leave the JVM running.
        cmd.process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| format!("spawn {name}: {e}"))?;
        let output = Arc::new(Mutex::new(String::new()));
        let stdout = child.stdout.take().ok_or("no stdout pipe")?;
        let stderr = child.stderr.take().ok_or("no stderr pipe")?;
        collect(stdout, output.clone());
        collect(stderr, output.clone());
        Ok(Interactive {
            name: name.to_string(),
            stdin: child.stdin.take(),
            child,
            output,
            cursor: 0,
        })
    }

    fn output(&self) -> String {
        self.output
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Writes one command line.
    fn send(&mut self, line: &str) -> Result<(), String> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| format!("{}: stdin already closed", self.name))?;
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("{}: write {line:?}: {e}", self.name))
    }

    /// Waits until `needle` appears after the previous match; moves past it.
    fn wait_for(&mut self, needle: &str, timeout: Duration) -> Result<(), String> {
        self.wait_until(needle, timeout, |rest| {
            rest.find(needle).map(|i| i + needle.len())
        })
    }

    /// Waits until every one of `needles` appears after the previous match, in any order;
    /// moves past the last of them.
    fn wait_for_all(&mut self, needles: &[&str], timeout: Duration) -> Result<(), String> {
        let what = format!("all of {needles:?}");
        self.wait_until(&what, timeout, |rest| {
            needles
                .iter()
                .map(|n| rest.find(n).map(|i| i + n.len()))
                .try_fold(0, |end, e| e.map(|e| end.max(e)))
        })
    }

    /// Waits until a whole line equal to `line` appears after the previous match (which may
    /// have ended just before it); moves past it.
    fn wait_for_line(&mut self, line: &str, timeout: Duration) -> Result<(), String> {
        let what = format!("the line {line:?}");
        self.wait_until(&what, timeout, |rest| {
            let mut at = 0;
            for l in rest.split_inclusive('\n') {
                at += l.len();
                if l.ends_with('\n') && l.trim_end_matches(['\r', '\n']) == line {
                    return Some(at);
                }
            }
            None
        })
    }

    /// Waits until `find` locates something in the output after the cursor (returning where
    /// it ends, relative to the cursor); moves the cursor there.
    fn wait_until(
        &mut self,
        needle: &str,
        timeout: Duration,
        find: impl Fn(&str) -> Option<usize>,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.output();
            if let Some(end) = out.get(self.cursor..).and_then(&find) {
                self.cursor += end;
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{}: {needle:?} did not appear within {timeout:?}; output so far:\n{out}",
                    self.name
                ));
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the collector threads drain what is left, then look once more.
                std::thread::sleep(Duration::from_millis(200));
                let out = self.output();
                if out.get(self.cursor..).and_then(&find).is_some() {
                    continue;
                }
                return Err(format!(
                    "{}: exited ({status}) before {needle:?} appeared; output:\n{out}",
                    self.name
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Closes stdin and waits for the process to exit.
    fn finish(&mut self, timeout: Duration) -> Result<ExitStatus, String> {
        self.stdin = None;
        wait_child(&mut self.child, timeout).ok_or_else(|| {
            format!(
                "{}: still running {timeout:?} after its input ended; output:\n{}",
                self.name,
                self.output()
            )
        })
    }
}

impl Drop for Interactive {
    fn drop(&mut self) {
        self.stdin = None;
        // Only while the leader is unreaped: its pid, the group id, cannot have been reused.
        if matches!(self.child.try_wait(), Ok(None)) {
            let group = format!("-{}", self.child.id());
            let killed = Command::new("kill")
                .args(["-KILL", "--", &group])
                .stderr(Stdio::null())
                .status();
            if !matches!(killed, Ok(s) if s.success()) {
                let _ = self.child.kill();
            }
        }
        let _ = self.child.wait();
    }
}

/// Runs `zkCli.sh -server ADDR args...` to completion; (exit status, stdout + stderr).
fn zkcli_once(zkcli: &PathBuf, addr: &str, args: &[&str]) -> (ExitStatus, String) {
    let out = Command::new(zkcli)
        .arg("-server")
        .arg(addr)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {} {args:?}: {e}", zkcli.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status, text)
}

// ---------------------------------------------------------------------------------------------
// (a) the Java client: zkCli.sh

#[test]
fn zkcli_create_get_watch_delete() {
    let Some(zkcli) = zkcli() else { return };
    let server = CorralServer::start("");
    let addr = server.addr();
    let path = format!("/{}", unique_name("zkcli"));

    // One-shot commands.
    let (status, out) = zkcli_once(&zkcli, &addr, &["create", &path, "hello"]);
    assert!(status.success(), "zkCli create failed ({status}):\n{out}");
    assert!(out.contains(&format!("Created {path}")), "{out}");
    assert_eq!(raw_get(&addr, &path).as_deref(), Some(&b"hello"[..]));

    let (status, out) = zkcli_once(&zkcli, &addr, &["get", &path]);
    assert!(status.success(), "zkCli get failed ({status}):\n{out}");
    assert!(out.lines().any(|l| l == "hello"), "{out}");

    // An interactive session on stdin: data and child watches fire on changes made by
    // another session.
    let mut cmd = Command::new(&zkcli);
    cmd.arg("-server").arg(&addr);
    let mut cli = Interactive::spawn("zkCli.sh", cmd).expect("start zkCli.sh");
    cli.wait_for("WatchedEvent state:SyncConnected type:None path:null", WAIT)
        .expect("zkCli connects");

    cli.send(&format!("get -w {path}")).expect("send get -w");
    cli.wait_for_line("hello", WAIT)
        .expect("get -w shows the data");
    raw_set(&addr, &path, b"changed");
    cli.wait_for("WATCHER::", WAIT).expect("a watch fires");
    cli.wait_for(
        &format!("WatchedEvent state:SyncConnected type:NodeDataChanged path:{path}\n"),
        WAIT,
    )
    .expect("data watch fires on setData");
    cli.send(&format!("get {path}")).expect("send get");
    cli.wait_for_line("changed", WAIT)
        .expect("get shows the new data");

    cli.send(&format!("ls -w {path}")).expect("send ls -w");
    cli.wait_for_line("[]", WAIT)
        .expect("ls -w shows no children");
    cli.send(&format!("create {path}/kid k"))
        .expect("send create");
    // zkCli's own create fires its child watch: the event and the reply come in either
    // order (ZooKeeper queues the event first, but zkCli prints them from two threads).
    cli.wait_for_all(
        &[
            &format!("Created {path}/kid\n"),
            &format!("WatchedEvent state:SyncConnected type:NodeChildrenChanged path:{path}\n"),
        ],
        WAIT,
    )
    .expect("create child, and the child watch fires");
    cli.send(&format!("ls {path}")).expect("send ls");
    cli.wait_for_line("[kid]", WAIT)
        .expect("ls shows the child");

    cli.send(&format!("delete {path}/kid"))
        .expect("send delete kid");
    cli.send(&format!("delete {path}")).expect("send delete");
    cli.send(&format!("stat {path}")).expect("send stat");
    cli.wait_for(&format!("Node does not exist: {path}"), WAIT)
        .expect("stat after delete");
    // zkCli's exit status is that of its last command (as with real ZooKeeper): end on one
    // that succeeds, so the status says whether the session ended cleanly.
    cli.send("ls /").expect("send ls /");
    cli.wait_for_line("[zookeeper]", WAIT)
        .expect("ls / shows only /zookeeper");
    cli.send("quit").expect("send quit");
    let status = cli.finish(WAIT).expect("zkCli exits");
    let out = cli.output();
    assert!(status.success(), "zkCli exit {status}:\n{out}");
    for bad in ["KeeperErrorCode", "Exception"] {
        assert!(!out.contains(bad), "zkCli reported {bad}:\n{out}");
    }
    assert_eq!(raw_get(&addr, &path), None, "{path} still exists");
    assert_eq!(raw_get(&addr, &format!("{path}/kid")), None);
}

/// Persistent recursive watches through the Java client: addWatch's reply must decode (a
/// reply without its ErrorResponse body made the Java client drop the connection on the next
/// event), and every later change below the path is delivered on the same connection.
#[test]
fn zkcli_add_watch_keeps_the_connection() {
    let Some(zkcli) = zkcli() else { return };
    let server = CorralServer::start("");
    let addr = server.addr();
    let path = format!("/{}", unique_name("zkcli-addwatch"));
    raw_create(&addr, &path, b"");

    let mut cmd = Command::new(&zkcli);
    cmd.arg("-server").arg(&addr);
    let mut cli = Interactive::spawn("zkCli.sh", cmd).expect("start zkCli.sh");
    cli.wait_for("WatchedEvent state:SyncConnected type:None path:null", WAIT)
        .expect("zkCli connects");
    cli.send(&format!("addWatch -m PERSISTENT_RECURSIVE {path}"))
        .expect("send addWatch");
    // A command that answers shows addWatch's reply was taken.
    cli.send(&format!("ls {path}")).expect("send ls");
    cli.wait_for_line("[]", WAIT).expect("ls after addWatch");

    // Changes by another session, three of them, each delivered once.
    raw_create(&addr, &format!("{path}/a"), b"1");
    raw_set(&addr, &format!("{path}/a"), b"2");
    raw_set(&addr, &path, b"top");
    for (event, p) in [
        ("NodeCreated", format!("{path}/a")),
        ("NodeDataChanged", format!("{path}/a")),
        ("NodeDataChanged", path.clone()),
    ] {
        cli.wait_for(
            &format!("WatchedEvent state:SyncConnected type:{event} path:{p}\n"),
            WAIT,
        )
        .unwrap_or_else(|e| panic!("{event} on {p} not delivered: {e}"));
    }
    // The connection survived: still the same session, still answering.
    cli.send(&format!("get {path}")).expect("send get");
    cli.wait_for_line("top", WAIT)
        .expect("get after the events");
    cli.send("quit").expect("send quit");
    let status = cli.finish(WAIT).expect("zkCli exits");
    let out = cli.output();
    assert!(status.success(), "zkCli exit {status}:\n{out}");
    for bad in [
        "ConnectionLoss",
        "Disconnected",
        "Exception",
        "KeeperErrorCode",
    ] {
        assert!(!out.contains(bad), "zkCli reported {bad}:\n{out}");
    }
    assert_eq!(
        out.matches("type:NodeDataChanged").count(),
        2,
        "each change once:\n{out}"
    );
}

// ---------------------------------------------------------------------------------------------
// (b) the C client: cli_mt

#[test]
fn cli_mt_create_get_watch_delete() {
    let Some(cli_mt) = cli_mt() else { return };
    let server = CorralServer::start("");
    let addr = server.addr();
    let path = format!("/{}", unique_name("climt"));

    let mut cmd = Command::new(&cli_mt);
    cmd.arg(&addr);
    let mut cli = Interactive::spawn("cli_mt", cmd).expect("start cli_mt");
    cli.wait_for("Watcher SESSION_EVENT state = CONNECTED_STATE", WAIT)
        .expect("cli_mt connects");

    // cli_mt creates nodes with the data "new".
    cli.send(&format!("create {path}")).expect("send create");
    cli.wait_for(&format!("[{path}]: rc = 0\n\tname = {path}\n"), WAIT)
        .expect("create succeeds");
    assert_eq!(raw_get(&addr, &path).as_deref(), Some(&b"new"[..]));

    // cli_mt's `get` leaves a data watch with the default watcher.
    cli.send(&format!("get {path}")).expect("send get");
    cli.wait_for(&format!("{path}: rc = 0\n value_len = 3\nnew\n"), WAIT)
        .expect("get shows the data");
    raw_set(&addr, &path, b"changed");
    cli.wait_for(
        &format!("Watcher CHANGED_EVENT state = CONNECTED_STATE for path {path}\n"),
        WAIT,
    )
    .expect("data watch fires on setData");
    cli.send(&format!("get {path}")).expect("send get");
    cli.wait_for(&format!("{path}: rc = 0\n value_len = 7\nchanged\n"), WAIT)
        .expect("get shows the new data");

    // That get watched again: the delete fires it.
    cli.send(&format!("delete {path}")).expect("send delete");
    cli.wait_for(
        &format!("Watcher DELETED_EVENT state = CONNECTED_STATE for path {path}\n"),
        WAIT,
    )
    .expect("data watch fires on delete");
    cli.send(&format!("exists {path}")).expect("send exists");
    cli.wait_for(&format!("Error -101 for {path}"), WAIT)
        .expect("exists after delete says ZNONODE");
    cli.send("quit").expect("send quit");
    let status = cli.finish(WAIT).expect("cli_mt exits");
    assert!(status.success(), "cli_mt exit {status}:\n{}", cli.output());
    assert_eq!(raw_get(&addr, &path), None, "{path} still exists");

    // Batch mode: one command from the argument list.
    raw_create(&addr, &format!("{path}-batch"), b"batch-data");
    let out = Command::new(&cli_mt)
        .arg(&addr)
        .arg(format!("cmd:get {path}-batch"))
        .stdin(Stdio::null())
        .output()
        .expect("run cli_mt in batch mode");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "cli_mt batch exit {}:\n{text}",
        out.status
    );
    assert!(
        text.contains(&format!(
            "{path}-batch: rc = 0\n value_len = 10\nbatch-data\n"
        )),
        "{text}"
    );
}

/// Creates a persistent node from a session of its own.
fn raw_create(addr: &str, path: &str, data: &[u8]) {
    let mut c = raw_session(addr);
    let (hdr, _) = c
        .request(
            1,
            &Request::Create(corral_proto::CreateRequest {
                path: path.to_string(),
                data: Some(data.to_vec()),
                acl: corral_client::open_acl_unsafe(),
                flags: 0,
            }),
        )
        .unwrap_or_else(|e| panic!("create {path}: {e}"));
    assert_eq!(hdr.err, 0, "create {path} failed: {hdr:?}");
    raw_close(c);
}

// ---------------------------------------------------------------------------------------------
// (c) the `zookeeper-client` crate

mod rust_client {
    use super::*;
    use zookeeper_client as zk;

    async fn connect(addr: &str) -> zk::Client {
        zk::Client::connector()
            .with_session_timeout(Duration::from_secs(10))
            .connect(addr)
            .await
            .unwrap_or_else(|e| panic!("zookeeper-client connect {addr}: {e}"))
    }

    fn persistent() -> zk::CreateOptions<'static> {
        zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())
    }

    async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
        within_for(what, WAIT, f).await
    }

    async fn within_for<T>(
        what: &str,
        limit: Duration,
        f: impl std::future::Future<Output = T>,
    ) -> T {
        tokio::time::timeout(limit, f)
            .await
            .unwrap_or_else(|_| panic!("{what}: nothing within {limit:?}"))
    }

    #[tokio::test]
    async fn create_get_watch_delete() {
        let server = CorralServer::start("");
        let addr = server.addr();
        let c = connect(&addr).await;
        let other = connect(&addr).await;
        let path = format!("/{}", unique_name("zkrs"));

        let (stat, seq) = c
            .create(&path, b"hello", &persistent())
            .await
            .expect("create");
        assert_eq!(seq.into_i64(), -1);
        assert_eq!(stat.version, 0);
        assert_eq!(stat.data_length, 5);
        assert_eq!(stat.ephemeral_owner, 0);
        assert_eq!(
            c.create(&path, b"again", &persistent()).await.map(|_| ()),
            Err(zk::Error::NodeExists)
        );

        let (data, stat2) = c.get_data(&path).await.expect("get_data");
        assert_eq!(data, b"hello");
        assert_eq!(stat2, stat);
        assert_eq!(
            raw_get(&addr, &path).as_deref(),
            Some(&b"hello"[..]),
            "what the server holds"
        );

        // A one-shot data watch fires when another session changes the data.
        let (data, _, watcher) = c.get_and_watch_data(&path).await.expect("watch data");
        assert_eq!(data, b"hello");
        let set = other
            .set_data(&path, b"changed", Some(0))
            .await
            .expect("set_data");
        assert_eq!(set.version, 1);
        let ev = within("data watch", watcher.changed()).await;
        assert_eq!(ev.event_type, zk::EventType::NodeDataChanged);
        assert_eq!(ev.path, path);
        assert_eq!(ev.session_state, zk::SessionState::SyncConnected);
        let (data, stat) = c.get_data(&path).await.expect("get_data after set");
        assert_eq!((data.as_slice(), stat.version), (&b"changed"[..], 1));

        // Child watch and exists watch.
        let (kids, _, kid_watcher) = c
            .get_and_watch_children(&path)
            .await
            .expect("watch children");
        assert!(kids.is_empty());
        let kid = format!("{path}/kid");
        let (none, exists_watcher) = c.check_and_watch_stat(&kid).await.expect("exists watch");
        assert!(none.is_none());
        other.create(&kid, b"", &persistent()).await.expect("kid");
        let ev = within("child watch", kid_watcher.changed()).await;
        assert_eq!(
            (ev.event_type, ev.path.as_str()),
            (zk::EventType::NodeChildrenChanged, path.as_str())
        );
        let ev = within("exists watch", exists_watcher.changed()).await;
        assert_eq!(
            (ev.event_type, ev.path.as_str()),
            (zk::EventType::NodeCreated, kid.as_str())
        );
        assert_eq!(
            c.list_children(&path).await.expect("list"),
            vec!["kid".to_string()]
        );

        // Delete: bad version refused, not-empty refused, then gone (and the watch fires).
        assert_eq!(c.delete(&path, Some(7)).await, Err(zk::Error::BadVersion));
        assert_eq!(c.delete(&path, None).await, Err(zk::Error::NotEmpty));
        let (_, _, delete_watcher) = c.get_and_watch_data(&kid).await.expect("watch kid");
        other.delete(&kid, Some(0)).await.expect("delete kid");
        let ev = within("delete watch", delete_watcher.changed()).await;
        assert_eq!(
            (ev.event_type, ev.path.as_str()),
            (zk::EventType::NodeDeleted, kid.as_str())
        );
        c.delete(&path, Some(1)).await.expect("delete");
        assert_eq!(c.check_stat(&path).await.expect("exists"), None);
        assert_eq!(c.get_data(&path).await, Err(zk::Error::NoNode));
        assert_eq!(raw_get(&addr, &path), None);
    }

    #[tokio::test]
    async fn ephemeral_disappears_when_its_client_closes() {
        let server = CorralServer::start("");
        let addr = server.addr();
        let watcher_client = connect(&addr).await;
        let owner = connect(&addr).await;
        let path = format!("/{}", unique_name("zkrs-eph"));

        let (stat, _) = owner
            .create(
                &path,
                b"mine",
                &zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all()),
            )
            .await
            .expect("create ephemeral");
        assert_eq!(stat.ephemeral_owner, owner.session_id().0);
        let (seen, watcher) = watcher_client
            .check_and_watch_stat(&path)
            .await
            .expect("exists watch");
        let seen = seen.expect("the ephemeral is visible to another session");
        assert_eq!(seen.ephemeral_owner, owner.session_id().0);
        assert_eq!(
            watcher_client
                .create(&format!("{path}/child"), b"", &persistent())
                .await
                .map(|_| ()),
            Err(zk::Error::NoChildrenForEphemerals)
        );

        // Dropping the last handle closes the session; its ephemeral goes with it. Half the
        // 10 s session timeout at most, so that only closeSession, not expiry, can pass this.
        drop(owner);
        let ev = within_for(
            "ephemeral deletion",
            Duration::from_secs(5),
            watcher.changed(),
        )
        .await;
        assert_eq!(
            (ev.event_type, ev.path.as_str()),
            (zk::EventType::NodeDeleted, path.as_str())
        );
        assert_eq!(
            watcher_client.check_stat(&path).await.expect("exists"),
            None
        );
        assert_eq!(raw_get(&addr, &path), None);
    }

    #[tokio::test]
    async fn persistent_recursive_watch() {
        let server = CorralServer::start("");
        let addr = server.addr();
        let c = connect(&addr).await;
        let other = connect(&addr).await;
        let root = format!("/{}", unique_name("zkrs-rec"));
        c.create(&root, b"", &persistent()).await.expect("root");

        let mut watcher = c
            .watch(&root, zk::AddWatchMode::PersistentRecursive)
            .await
            .expect("addWatch recursive");
        let a = format!("{root}/a");
        let b = format!("{root}/a/b");
        other.create(&a, b"1", &persistent()).await.expect("a");
        other.create(&b, b"2", &persistent()).await.expect("a/b");
        other.set_data(&b, b"3", None).await.expect("set a/b");
        other.set_data(&b, b"4", None).await.expect("set a/b again");
        other.delete(&b, None).await.expect("delete a/b");
        other.set_data(&root, b"r", None).await.expect("set root");

        // Persistent: every change fires, not just the first; recursive: descendants too,
        // and no child events (ZooKeeper sends none in recursive mode).
        let expected = [
            (zk::EventType::NodeCreated, &a),
            (zk::EventType::NodeCreated, &b),
            (zk::EventType::NodeDataChanged, &b),
            (zk::EventType::NodeDataChanged, &b),
            (zk::EventType::NodeDeleted, &b),
            (zk::EventType::NodeDataChanged, &root),
        ];
        for (i, (ty, p)) in expected.iter().enumerate() {
            let ev = within(&format!("recursive event {i}"), watcher.changed()).await;
            assert_eq!(
                (ev.event_type, ev.path.as_str()),
                (*ty, p.as_str()),
                "event {i}"
            );
        }
        // Nothing more queued.
        assert!(
            tokio::time::timeout(Duration::from_millis(300), watcher.changed())
                .await
                .is_err(),
            "unexpected extra event"
        );

        // A plain persistent watch on a node: its own changes and child changes, not deeper.
        let mut flat = c
            .watch(&a, zk::AddWatchMode::Persistent)
            .await
            .expect("addWatch persistent");
        other
            .create(&b, b"", &persistent())
            .await
            .expect("a/b again");
        let ev = within("persistent child event", flat.changed()).await;
        assert_eq!(
            (ev.event_type, ev.path.as_str()),
            (zk::EventType::NodeChildrenChanged, a.as_str())
        );
        other.set_data(&b, b"x", None).await.expect("set a/b");
        other.set_data(&a, b"y", None).await.expect("set a");
        let ev = within("persistent data event", flat.changed()).await;
        assert_eq!(
            (ev.event_type, ev.path.as_str()),
            (zk::EventType::NodeDataChanged, a.as_str())
        );
    }
}
