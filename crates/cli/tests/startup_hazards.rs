//! Start-up refuses what would silently hurt an operator, and says why:
//! - a second keeper on a dataDir already in use (the two would diverge);
//! - a zoo.cfg with several `server.N` members (each would run alone: a split brain);
//! - keys asking for TLS or SASL protection corral does not give, unless the operator
//!   allows it knowingly (flag or corral key), and then with a warning every start;
//!
//! and a clean restart logs no ERROR, one banner with what the keeper runs with, and
//! `corral serve --port --data-dir` serves without a config file.

mod common;

use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use common::{four_letter, free_port, fresh_temp_dir, wait_child, CorralServer, RawConn};

/// How long a refused start may take to exit.
const REFUSED_WITHIN: Duration = Duration::from_secs(10);

/// `corral serve ARGS` in `dir`, its stderr to `err`.
fn spawn_serve(args: &[&str], dir: &Path, err: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_corral"))
        .arg("serve")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(err).expect("create stderr file"))
        .spawn()
        .expect("spawn corral")
}

/// Runs `corral serve ARGS` expecting it to exit by itself; (status, stderr).
fn serve_expecting_exit(args: &[&str], dir: &Path) -> (ExitStatus, String) {
    let err = dir.join("refused.err");
    let mut child = spawn_serve(args, dir, &err);
    let status = match wait_child(&mut child, REFUSED_WITHIN) {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "corral serve {args:?} was expected to refuse and exit, but kept running:\n{}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
    };
    (status, std::fs::read_to_string(&err).unwrap_or_default())
}

fn write_cfg(dir: &Path, body: &str) -> String {
    let port = free_port();
    let path = dir.join("zoo.cfg");
    let text = format!(
        "tickTime=2000\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
         admin.enableServer=false\n{body}\n",
        dir.join("data").display()
    );
    std::fs::write(&path, text).expect("write zoo.cfg");
    path.display().to_string()
}

#[test]
fn second_keeper_on_the_same_data_dir_is_refused_and_the_first_keeps_serving() {
    let first = CorralServer::start("");
    let dir = fresh_temp_dir("second").expect("temp dir");
    let cfg = dir.join("zoo.cfg");
    std::fs::write(
        &cfg,
        format!(
            "tickTime=2000\ndataDir={}\nclientPort={}\nclientPortAddress=127.0.0.1\n",
            first.data_dir().display(),
            free_port()
        ),
    )
    .expect("write zoo.cfg");
    let (status, err) = serve_expecting_exit(&["--config", &cfg.display().to_string()], &dir);
    assert!(!status.success(), "second keeper exited {status}:\n{err}");
    assert!(err.contains("corral.lock"), "names the lock:\n{err}");
    assert!(
        err.contains(&format!("pid {}", first.pid)),
        "names the holder's pid {}:\n{err}",
        first.pid
    );
    // The first one is untouched: it still takes writes and answers.
    let (mut c, _) = RawConn::new_session(&first.addr()).expect("session on the first keeper");
    c.close_session().expect("close");
    assert!(first.four_letter("ruok").contains("imok"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_ensemble_member_needs_its_myid_one_server_line_is_standalone() {
    let dir = fresh_temp_dir("ensemble").expect("temp dir");
    let servers =
        "server.1=127.0.0.1:2888:3888\nserver.2=127.0.0.1:2889:3889\nserver.3=127.0.0.1:2890:3890";
    let cfg = write_cfg(&dir, servers);
    // Several members and no myid: which one this is cannot be known.
    let (status, err) = serve_expecting_exit(&["--config", &cfg], &dir);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("myid"), "names myid:\n{err}");
    // A myid naming no server.N line.
    std::fs::create_dir_all(dir.join("data")).expect("data dir");
    std::fs::write(dir.join("data").join("myid"), "7\n").expect("write myid");
    let (status, err) = serve_expecting_exit(&["--config", &cfg], &dir);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("no server.7 line"), "{err}");
    assert!(
        !dir.join("data").join("wal").exists(),
        "nothing written before refusing"
    );
    let _ = std::fs::remove_dir_all(&dir);

    // A single server.N (kazoo's harness writes one) runs standalone.
    let one = CorralServer::start("server.1=127.0.0.1:2888:3888");
    assert!(one.four_letter("ruok").contains("imok"));
    assert!(one.four_letter("srvr").contains("Mode: standalone"));
}

#[test]
fn security_keys_are_refused_unless_allowed_knowingly() {
    let dir = fresh_temp_dir("security").expect("temp dir");
    let keys = "secureClientPort=2281\n\
                authProvider.1=org.apache.zookeeper.server.auth.SASLAuthenticationProvider\n\
                ssl.keyStore.location=/nonexistent/keystore.jks";
    let cfg = write_cfg(&dir, keys);
    let (status, err) = serve_expecting_exit(&["--config", &cfg], &dir);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("secureClientPort"), "names the key:\n{err}");
    assert!(err.contains("TLS"), "says what it would protect:\n{err}");
    assert!(
        err.contains("authProvider.1") && err.contains("ssl.keyStore.location"),
        "lists the others:\n{err}"
    );
    assert!(err.contains("--allow-unenforced-security"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);

    // The flag: starts, with a warning per key, every start.
    let dir = fresh_temp_dir("security-flag").expect("temp dir");
    let cfg = write_cfg(&dir, keys);
    let mut keeper = Launched::serve(&["--allow-unenforced-security", "--config", &cfg], &dir);
    let err = keeper.stderr();
    for key in [
        "secureClientPort",
        "authProvider.1",
        "ssl.keyStore.location",
    ] {
        assert!(
            err.lines()
                .any(|l| l.contains("WARN") && l.contains(key) && l.contains("WITHOUT")),
            "no warning for {key}:\n{err}"
        );
    }
    keeper.stop();
    let _ = std::fs::remove_dir_all(&dir);

    // The corral key in zoo.cfg does the same.
    let keyed = CorralServer::start(&format!("{keys}\ncorral.allowUnenforcedSecurity=true"));
    assert!(
        keyed.stderr_text().contains("WITHOUT"),
        "{}",
        keyed.log_tail()
    );
}

#[test]
fn clean_restart_logs_no_error_and_one_banner() {
    let mut keeper = CorralServer::start("snapCount=1000");
    let (mut c, _) = RawConn::new_session(&keeper.addr()).expect("session");
    c.close_session().expect("close");
    keeper
        .terminate(Duration::from_secs(10))
        .expect("SIGTERM stops it");
    keeper.restart().expect("restart");
    let (mut c, _) = RawConn::new_session(&keeper.addr()).expect("session after restart");
    c.close_session().expect("close");
    keeper
        .terminate(Duration::from_secs(10))
        .expect("SIGTERM stops it");
    for run in ["server.0.err", "server.err"] {
        let log = std::fs::read_to_string(keeper.dir.join(run)).expect("server log");
        let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
        assert!(errors.is_empty(), "{run} has ERROR lines: {errors:#?}");
        let banners: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("corral keeper serving"))
            .collect();
        assert_eq!(banners.len(), 1, "{run}: one banner:\n{log}");
        let banner = banners[0];
        let data_dir = keeper.data_dir().canonicalize().expect("data dir");
        for field in [
            format!("data_dir=\"{}\"", data_dir.display()),
            format!("client=127.0.0.1:{}", keeper.port),
            "tick_ms=2000".to_string(),
            "session_timeout_ms=\"4000-40000\"".to_string(),
            "snap_count=1000".to_string(),
            "four_letter_words=\"*\"".to_string(),
            "zoo.cfg".to_string(),
        ] {
            assert!(banner.contains(&field), "banner lacks {field}: {banner}");
        }
        assert_eq!(
            log.matches(&format!("127.0.0.1:{}", keeper.port)).count(),
            1,
            "{run}: the address is printed once:\n{log}"
        );
    }
}

#[test]
fn serve_with_port_and_data_dir_flags_needs_no_config() {
    let dir = fresh_temp_dir("flags").expect("temp dir");
    let port = free_port();
    let admin = free_port();
    let data = dir.join("trial-data");
    let mut keeper = Launched::serve(
        &[
            "--port",
            &port.to_string(),
            "--data-dir",
            &data.display().to_string(),
            "--admin-port",
            &admin.to_string(),
        ],
        &dir,
    );
    // The admin server is on, on loopback, as ZooKeeper's is on by default.
    let mut http = std::net::TcpStream::connect(("127.0.0.1", admin)).expect("admin port");
    std::io::Write::write_all(
        &mut http,
        b"GET /commands/ruok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .expect("send");
    let mut reply = String::new();
    std::io::Read::read_to_string(&mut http, &mut reply).expect("read");
    assert!(
        reply.contains("\"command\" : \"ruok\"") || reply.contains("\"command\": \"ruok\""),
        "{reply}"
    );
    assert_eq!(keeper.port, port);
    assert!(data.join("corral.lock").exists(), "data went to --data-dir");
    let err = keeper.stderr();
    assert!(err.contains("(embedded default)"), "{err}");
    keeper.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A keeper started by hand with arbitrary arguments, stopped (by pid) on drop.
struct Launched {
    child: std::process::Child,
    err: std::path::PathBuf,
    port: u16,
}

impl Launched {
    /// Starts `corral serve ARGS` and waits until it serves a session; the port comes from
    /// `--port` or the config file's clientPort.
    fn serve(args: &[&str], dir: &Path) -> Launched {
        let port = match args.iter().position(|a| *a == "--port") {
            Some(i) => args[i + 1].parse().expect("port"),
            None => {
                let i = args
                    .iter()
                    .position(|a| *a == "--config")
                    .expect("--config");
                let text = std::fs::read_to_string(args[i + 1]).expect("read zoo.cfg");
                text.lines()
                    .find_map(|l| l.strip_prefix("clientPort="))
                    .and_then(|p| p.parse().ok())
                    .expect("clientPort")
            }
        };
        let err = dir.join(format!("serve-{port}.err"));
        let child = spawn_serve(args, dir, &err);
        let mut launched = Launched { child, err, port };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let addr = format!("127.0.0.1:{port}");
        loop {
            if let Ok(Some(status)) = launched.child.try_wait() {
                panic!("corral exited {status}:\n{}", launched.stderr());
            }
            if let Ok((mut c, _)) = RawConn::new_session(&addr) {
                let _ = c.close_session();
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "corral did not serve on {addr}:\n{}",
                launched.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // srvr is always allowed (zkServer.sh status needs it).
        assert!(four_letter(&addr, "srvr").is_ok_and(|r| r.contains("Mode: standalone")));
        launched
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    fn stop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        if wait_child(&mut self.child, Duration::from_secs(10)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Launched {
    fn drop(&mut self) {
        self.stop();
    }
}
