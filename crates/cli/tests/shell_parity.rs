//! `corral shell` against zkCli.sh 3.8 (the Debian package's): the same script runs through
//! both, against the same corral server, and their stdout and stderr must be equal line by
//! line once zkCli's log noise is dropped and what legitimately differs is masked (times,
//! zxids, session ids, the version string). Watch events are printed by both from a thread of
//! their own, so they are taken out of the output and compared as a set.
//!
//! When zkCli.sh or java is missing the tests print SKIP and pass, unless CI is set (CI
//! installs them). ZKCLI overrides where zkCli.sh is looked for.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{free_port, CorralServer, RealZk, Restartable};

const ZKCLI_DEFAULT: &str = "/usr/share/zookeeper/bin/zkCli.sh";

fn zkcli() -> Option<PathBuf> {
    let path = std::env::var_os("ZKCLI")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(ZKCLI_DEFAULT));
    let why = if !path.is_file() {
        Some(format!(
            "{} not found (apt-get install zookeeper, or set ZKCLI)",
            path.display()
        ))
    } else {
        match Command::new("java")
            .arg("-version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
        {
            Ok(s) if s.success() => None,
            Ok(s) => Some(format!("zkCli.sh needs java; `java -version` failed: {s}")),
            Err(e) => Some(format!("zkCli.sh needs java, which cannot run: {e}")),
        }
    };
    match why {
        None => Some(path),
        Some(why) if std::env::var_os("CI").is_some() => panic!("{why}; CI must install it"),
        Some(why) => {
            eprintln!("SKIP: {why}");
            None
        }
    }
}

/// What one run printed.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: Vec<String>,
    stderr: Vec<String>,
    events: Vec<String>,
}

fn run(mut cmd: Command, stdin: &str) -> Run {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    if let Some(mut i) = child.stdin.take() {
        i.write_all(stdin.as_bytes())
            .unwrap_or_else(|e| panic!("write stdin: {e}"));
    }
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("wait {cmd:?}: {e}"));
    let (stdout, events) = normalize_stdout(&String::from_utf8_lossy(&out.stdout));
    let stderr = String::from_utf8_lossy(&out.stderr)
        .lines()
        // zkCli's logging has no binding: SLF4J says so on stderr.
        .filter(|l| !l.starts_with("SLF4J:"))
        .map(mask)
        .collect();
    Run {
        code: out.status.code(),
        stdout,
        stderr,
        events,
    }
}

/// Takes the watch events out (zkCli prints "\nWATCHER::" and "\nWatchedEvent ..." as two
/// lines of their own, each after an empty line, from its event thread, so other output may
/// fall between them) and masks the rest. Events come back sorted.
fn normalize_stdout(text: &str) -> (Vec<String>, Vec<String>) {
    let lines: Vec<&str> = text.split('\n').collect();
    let mut out = Vec::new();
    let mut events = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let next = lines.get(i + 1).copied().unwrap_or("");
        if lines[i].is_empty() && next == "WATCHER::" {
            i += 2;
            continue;
        }
        if lines[i].is_empty() && next.starts_with("WatchedEvent ") {
            events.push(next.to_string());
            i += 2;
            continue;
        }
        out.push(lines[i]);
        i += 1;
    }
    // The text's final newline leaves one empty piece.
    if out.last() == Some(&"") {
        out.pop();
    }
    events.sort();
    let out = out
        .into_iter()
        .filter(|l| *l != "JLine support is disabled")
        .map(mask)
        .collect();
    (out, events)
}

/// Masks what differs between two correct runs.
fn mask(line: &str) -> String {
    for key in ["ctime = ", "mtime = ", "cZxid = ", "mZxid = ", "pZxid = "] {
        if line.starts_with(key) {
            return format!("{key}<masked>");
        }
    }
    if line.starts_with("ephemeralOwner = ") && line != "ephemeralOwner = 0x0" {
        return "ephemeralOwner = <session>".into();
    }
    if line.starts_with("ZooKeeper CLI version: ") {
        return "ZooKeeper CLI version: <version>".into();
    }
    line.to_string()
}

fn zk_cmd(zkcli: &PathBuf, args: &[&str]) -> Command {
    let mut c = Command::new(zkcli);
    c.args(args);
    c
}

fn corral_cmd(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_corral"));
    c.arg("shell").args(args);
    c
}

/// Runs the script (stdin) with the same arguments through both, and compares.
fn assert_same(zkcli: &PathBuf, args: &[&str], script: &str) {
    assert_same_with_reset(zkcli, args, script, None)
}

/// Like [`assert_same`]; `reset` (one command, run by `corral shell -c` on `reset.0`) undoes
/// what zkCli's run changed, so that corral's run starts from the same tree.
fn assert_same_with_reset(
    zkcli: &PathBuf,
    args: &[&str],
    script: &str,
    reset: Option<(&str, &str)>,
) {
    let zk = run(zk_cmd(zkcli, args), script);
    if let Some((server, line)) = reset {
        let r = run(corral_cmd(&["-server", server, "-c", line]), "");
        assert_eq!(r.code, Some(0), "reset {line:?}: {r:#?}");
    }
    let mut corral = run(corral_cmd(args), script);
    let mut zk = zk;
    if script.is_empty() {
        // A trailing command that needs no server (or a fast one) lets zkCli exit before its
        // event thread prints the connection event: that line is a race in zkCli itself.
        for r in [&mut zk, &mut corral] {
            r.events
                .retain(|e| !e.contains("state:SyncConnected type:None"));
        }
    }
    let context =
        format!("args {args:?}\nscript:\n{script}\nzkCli: {zk:#?}\ncorral shell: {corral:#?}");
    assert!(
        zk.stdout
            .first()
            .is_some_and(|l| l.starts_with("Connecting to ")),
        "zkCli did not start\n{context}"
    );
    assert!(
        !script.is_empty() || zk.stdout.len() + zk.stderr.len() > 1,
        "zkCli's one-shot printed nothing\n{context}"
    );
    if std::env::var_os("SHELL_PARITY_SHOW").is_some() {
        eprintln!("{context}");
    }
    for (n, (a, b)) in zk.stdout.iter().zip(&corral.stdout).enumerate() {
        assert_eq!(a, b, "stdout line {n} differs\n{context}");
    }
    assert_eq!(
        zk.stdout.len(),
        corral.stdout.len(),
        "stdout length\n{context}"
    );
    for (n, (a, b)) in zk.stderr.iter().zip(&corral.stderr).enumerate() {
        assert_eq!(a, b, "stderr line {n} differs\n{context}");
    }
    assert_eq!(
        zk.stderr.len(),
        corral.stderr.len(),
        "stderr length\n{context}"
    );
    assert_eq!(zk.events, corral.events, "watch events\n{context}");
    assert_eq!(zk.code, corral.code, "exit code\n{context}");
}

/// Every new command, its refusals and usage lines, and the commands around them. (The
/// event of `set /t y` must reach zkCli's event thread while printwatches is off: the dozen
/// commands before `printwatches on` leave it the time.)
#[test]
fn new_commands_print_what_zkcli_prints() {
    let Some(zkcli) = zkcli() else { return };
    let server = CorralServer::start("");
    let addr = server.addr();
    let script = format!(
        "\
create /t x
create /t/a 1
create /t/a/b 2
create -e /t/e eph
printwatches
printwatches off
printwatches
get -w /t
set /t y
getEphemerals
getEphemerals /t
getEphemerals /nope
getEphemerals t
getAllChildrenNumber /t
getAllChildrenNumber /nope
getAllChildrenNumber
config
config -s
config -c
version
version extra
printwatches on
get -w /t
stat -w /t/a
ls -w /t/a
removewatches /t/a -d
removewatches /t/a -c
removewatches /t/a -c
removewatches /t/a
removewatches /t -x
removewatches
removewatches t
set /t z
setquota -n 5 /t/a
stat /zookeeper/quota/t/a/zookeeper_limits
setquota -N 7 /t/a
stat /zookeeper/quota/t/a/zookeeper_limits
setquota -b 100 /t/a
listquota /t/a
get /zookeeper/quota/t/a/zookeeper_limits
listquota /t
setquota -n 5 /t
setquota -n 0 /t/a
setquota -b -1 /t/a
setquota -n x /t/a
setquota /t/a
setquota -n 1 -b 2 /t/a
setquota -n 3 /nope
setquota -n 3 /zookeeper/quota/x
delquota -n /t/a
listquota /t/a
delquota /t/a
listquota /t/a
delquota /t/a
ls /zookeeper/quota
setAcl -R /t world:anyone:cdrwa
getAcl /t/a/b
setAcl -R /nope world:anyone:r
setAcl /t foo
ls -R /t
history
redo 1
redo 999
redo 0
deleteall -b x /t
deleteall
deleteall /nope
create /t/c
create /t/c/d
deleteall /t -b 2
ls /t
help
ls -z /
ls --long /
ls -sz /
set /t -1
addWatch -m FOO /t
addWatch /a /b
addWatch -m
get /t extra
ls
whoami extra
reconfig
reconfig -add server.5=localhost:1234:1235;1236
reconfig -s -v 100000000 -remove 3
reconfig -members server.1=localhost:1234:1235;1236 -add x
reconfig -v zz -remove 3
reconfig -bogus
close
ls /
history
printwatches
connect {addr}
ls /zookeeper
sync /
"
    );
    assert_same(&zkcli, &["-server", &addr], &script);
}

/// The commands corral's shell had before, with their options, refusals and edge cases.
#[test]
fn older_commands_print_what_zkcli_prints() {
    let Some(zkcli) = zkcli() else { return };
    let server = CorralServer::start("");
    let addr = server.addr();
    let script = "\
create /o
create /o/data 'some data'
create /o/empty ''
create /o/null
get /o/null
get /o/empty
get -s /o/data
create -s /o/seq- a
create -s /o/seq- b
ls /o
ls -s /o
stat /o/data
stat /o/nope
stat -w /o/nope
create /o/nope
set -s /o/data new
set -v 7 /o/data x
set -v 1 /o/data x
delete -v 0 /o/data
delete /o/data 9
get /o/data
create -c /o/box
create -c -e /o/bad
create -t 5000 /o/ttl
create -t x /o/ttl2
create -t 5 -e /o/ttl3
create -t 0 /o/ttl4
create /o/acl x world:anyone:r
getAcl /o/acl
getAcl -s /o/acl
set /o/acl y
create /o/acl2 x world:anyone:rz
create /o/acl3 x foo
create /o/ip x ip:127.0.0.1:cdrwa,world:anyone:r
getAcl /o/ip
setAcl -s /o/ip world:anyone:cdrwa
setAcl -v 9 /o/ip world:anyone:cdrwa
addauth digest user:pass
whoami
create /o/dig x auth::cdrwa
getAcl /o/dig
addauth
sync /o
sync o
create o
create /o/a/b
create -e /o/eph
create /o/eph/kid
delete /o
get /o/
get /o//x
get /o/./x
ls -w /o
create /o/w
ls -R /o
ls -?
ls -R -s /o
deleteall /o
ls /o
quit
ls /
";
    assert_same(&zkcli, &["-server", &addr], script);
}

/// `-server h1:p,h2:p/chroot` (a dead first host, a chroot) and a trailing command.
#[test]
fn connect_strings_and_trailing_commands() {
    let Some(zkcli) = zkcli() else { return };
    let server = CorralServer::start("");
    let addr = server.addr();
    let setup = run(
        corral_cmd(&["-server", &addr]),
        "create /app\ncreate /app/x 1\ncreate /app/x/y 2\n",
    );
    assert_eq!(setup.code, Some(0), "setup: {setup:#?}");
    let chrooted = format!("{addr}/app");
    // A trailing command, with and without a chroot, failing and succeeding.
    for args in [
        vec!["-server", &addr, "ls", "/app"],
        vec!["-server", &chrooted, "ls", "/"],
        vec!["-server", &chrooted, "ls", "-R", "/"],
        vec!["-server", &chrooted, "get", "/x"],
        vec!["-server", &chrooted, "get", "/nope"],
        vec!["-server", &chrooted, "getAllChildrenNumber", "/"],
        vec!["-server", &addr, "-timeout", "5000", "stat", "/nope"],
        vec!["-server", &addr, "frobnicate"],
    ] {
        assert_same(&zkcli, &args, "");
    }
    assert_same_with_reset(
        &zkcli,
        &["-server", &chrooted, "create", "/made", "data"],
        "",
        Some((&addr, "delete /app/made")),
    );
    // A host list whose first member is down, and a script under the chroot.
    let dead = format!("127.0.0.1:{}", free_port());
    let list = format!("{dead},{addr}/app");
    assert_same_with_reset(
        &zkcli,
        // Without -waitforconnection zkCli sends its first command before it has connected
        // and, trying the dead host first, fails it with ConnectionLoss.
        &["-waitforconnection", "-server", &list],
        "create -e /x/eph\ngetEphemerals\ngetEphemerals /x\nls /x\nsetquota -n 2 /x\nlistquota /x\ndelquota /x\nls /\n",
        // zkCli exits without closing its session: its ephemeral outlives it.
        Some((&addr, "delete /app/x/eph")),
    );
}

/// addWatch and the persistent watches' events, both shells against corral.
#[test]
fn add_watch_prints_what_zkcli_prints() {
    let Some(zkcli) = zkcli() else { return };
    let corral = CorralServer::start("");
    let addr = corral.addr();
    let script = "\
create /w
addWatch /w
addWatch -m PERSISTENT /w
addWatch -m persistent_recursive /w
create /w/k
set /w/k v
set /w x
removewatches /w -c
removewatches /w
removewatches /w
deleteall /w
sync /
";
    assert_same(&zkcli, &["-server", &addr], script);
}

/// Options corral does not support are refused by name (zkCli ignores unknown ones silently).
#[test]
fn unsupported_command_line_options_are_refused_by_name() {
    for (args, needle) in [
        (vec!["-bogus"], "unknown option -bogus"),
        (
            vec!["-client-configuration", "x.properties"],
            "-client-configuration is not supported",
        ),
        (vec!["-server"], "no argument found for option -server"),
    ] {
        let r = run(corral_cmd(&args), "");
        assert_eq!(r.code, Some(2), "{args:?}: {r:#?}");
        assert!(
            r.stderr.iter().any(|l| l.contains(needle)),
            "{args:?} should say {needle:?}: {r:#?}"
        );
    }
}

/// corral's own `-c 'cmd'` stays quiet: the output alone, the exit code of the command.
#[test]
fn dash_c_still_runs_one_command_quietly() {
    let server = CorralServer::start("");
    let addr = server.addr();
    let r = run(corral_cmd(&["-server", &addr, "-c", "create /q 'a b'"]), "");
    assert_eq!(
        (r.code, r.stderr.as_slice()),
        (Some(0), &["Created /q".to_string()][..]),
        "{r:#?}"
    );
    let r = run(corral_cmd(&["--server", &addr, "-c", "get /q"]), "");
    assert_eq!(
        (r.code, r.stdout.as_slice()),
        (Some(0), &["a b".to_string()][..]),
        "{r:#?}"
    );
    let r = run(corral_cmd(&["-server", &addr, "-c", "get /nope"]), "");
    assert_eq!(r.code, Some(1), "{r:#?}");
    assert_eq!(r.stderr, vec!["Node does not exist: /nope"], "{r:#?}");
}

/// A `corral shell` driven line by line, its stdout and stderr read as they come (one stream
/// of lines: what the user sees).
struct LiveShell {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl LiveShell {
    fn start(args: &[&str]) -> LiveShell {
        let mut cmd = corral_cmd(args);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let stdin = child.stdin.take().expect("piped stdin");
        let (tx, lines) = mpsc::channel();
        fn forward(from: impl std::io::Read + Send + 'static, tx: mpsc::Sender<String>) {
            std::thread::spawn(move || {
                for line in std::io::BufRead::lines(std::io::BufReader::new(from)) {
                    let Ok(line) = line else { return };
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            });
        }
        forward(child.stdout.take().expect("piped stdout"), tx.clone());
        forward(child.stderr.take().expect("piped stderr"), tx);
        LiveShell {
            child,
            stdin,
            lines,
            seen: Vec::new(),
        }
    }

    fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap_or_else(|e| panic!("shell stdin: {e}"));
    }

    /// Waits until a line after the first `from` lines equals `want`; returns its index.
    fn wait_line(&mut self, from: usize, want: &str, within: Duration) -> usize {
        let end = Instant::now() + within;
        loop {
            if let Some(i) = self.seen.iter().skip(from).position(|l| l == want) {
                return from + i;
            }
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => self.seen.push(l),
                Err(_) => panic!(
                    "no {want:?} within {within:?} (after line {from}); the shell printed:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }
}

impl Drop for LiveShell {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The shell's server is killed and restarted: the shell resumes its session by itself (its
/// ephemeral is still its own) and its watches, re-sent to the restarted server, still fire,
/// as zkCli's do. On corral and on ZooKeeper 3.8.
#[test]
fn a_restarted_server_keeps_the_shells_session_and_watches() {
    let mut corral = CorralServer::start("");
    shell_across_a_restart(&mut corral);
    if let Some(mut zk) = RealZk::start("") {
        shell_across_a_restart(&mut zk);
    }
}

fn shell_across_a_restart(server: &mut dyn Restartable) {
    let addr = server.addr();
    let began = Instant::now();
    let mut shell = LiveShell::start(&["-server", &addr, "-timeout", "15000"]);
    let connected = "WatchedEvent state:SyncConnected type:None path:null";
    shell.send("create /r x");
    shell.send("create -e /r/e 1");
    shell.send("get -w /r");
    shell.send("ls -w /r");
    let listed = shell.wait_line(0, "[e]", Duration::from_secs(20));
    server
        .kill_and_restart_after(Duration::from_millis(500))
        .unwrap_or_else(|e| panic!("restart {addr}: {e}"));
    let lost = shell.wait_line(
        listed,
        "WatchedEvent state:Disconnected type:None path:null",
        Duration::from_secs(10),
    );
    let back = shell.wait_line(lost, connected, Duration::from_secs(15));
    eprintln!(
        "{addr}: the shell was back in its session {:?} after the start",
        began.elapsed()
    );
    // The same session: its ephemeral is listed as its own.
    shell.send("getEphemerals /r");
    let mine = shell.wait_line(back, "[/r/e]", Duration::from_secs(10));
    // Both one-shot watches were re-sent: each fires once.
    shell.send("create /r/f 2");
    shell.send("set /r y");
    let child_event = "WatchedEvent state:SyncConnected type:NodeChildrenChanged path:/r";
    let data_event = "WatchedEvent state:SyncConnected type:NodeDataChanged path:/r";
    shell.wait_line(mine, child_event, Duration::from_secs(10));
    shell.wait_line(mine, data_event, Duration::from_secs(10));
    shell.send("deleteall /r");
    shell.send("quit");
    let status = common::wait_child(&mut shell.child, Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| s.success()),
        "the shell did not quit cleanly: {status:?}\n{}",
        shell.seen.join("\n")
    );
}

/// While its server is down the shell answers at once, as zkCli does (ConnectionLoss when a
/// connection attempt fails, not after the session timeout), and it does not declare the
/// session expired on its own: the server, back after twice the timeout with its sessions,
/// resumes it (zkCli 3.8 has no client-side expiry either).
#[test]
fn a_long_outage_fails_commands_at_once_and_keeps_the_session() {
    let mut server = CorralServer::start("");
    let addr = server.addr();
    let mut shell = LiveShell::start(&["-server", &addr, "-timeout", "4000"]);
    let connected = "WatchedEvent state:SyncConnected type:None path:null";
    let up = shell.wait_line(0, connected, Duration::from_secs(20));
    shell.send("create -e /long 1");
    let made = shell.wait_line(up, "Created /long", Duration::from_secs(10));
    server.kill9().unwrap_or_else(|e| panic!("kill: {e}"));
    let lost = shell.wait_line(
        made,
        "WatchedEvent state:Disconnected type:None path:null",
        Duration::from_secs(10),
    );
    let asked = Instant::now();
    shell.send("ls /");
    let failed = shell.wait_line(
        lost,
        "KeeperErrorCode = ConnectionLoss for /",
        Duration::from_secs(10),
    );
    let answered_in = asked.elapsed();
    assert!(
        answered_in < Duration::from_secs(3),
        "ls took {answered_in:?} to fail while the server was down"
    );
    // Twice the timeout down: no Expired from the shell itself.
    std::thread::sleep(Duration::from_secs(8));
    server.restart().unwrap_or_else(|e| panic!("restart: {e}"));
    let back = shell.wait_line(failed, connected, Duration::from_secs(15));
    assert!(
        !shell.seen[failed..back]
            .iter()
            .any(|l| l.contains("Expired")),
        "the shell gave up its session:\n{}",
        shell.seen.join("\n")
    );
    shell.send("getEphemerals /");
    shell.wait_line(back, "[/long]", Duration::from_secs(10));
    eprintln!(
        "ls failed {answered_in:?} after it was typed; the session came back after the restart"
    );
    shell.send("quit");
    let status = common::wait_child(&mut shell.child, Duration::from_secs(20));
    assert!(status.is_some_and(|s| s.success()), "quit: {status:?}");
}

/// Against a server that is not there, commands fail with ConnectionLoss and the shell goes
/// on, exactly as zkCli's (same lines, same exit code).
#[test]
fn no_server_prints_what_zkcli_prints() {
    let Some(zkcli) = zkcli() else { return };
    let dead = format!("127.0.0.1:{}", free_port());
    assert_same(&zkcli, &["-server", &dead], "ls /\ncreate /x\nget /x\n");
}
