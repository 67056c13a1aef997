//! A full disk under the keeper (DESIGN.md "Testing" -> faults: full disk; issue 3).
//!
//! The dataDir is a tmpfs of its own. Once the keeper runs, a filler file takes every free
//! byte, and writes go on until one fails. Then:
//! - the failed write is answered with an error code (any), on a connection that stays
//!   usable: a read on it works, as do reads on new connections; the keeper stays up;
//!   the failed znode does not exist (an error means "not applied");
//! - after space is freed (the filler deleted, the tmpfs grown) writes succeed again;
//! - after SIGKILL and a restart every acknowledged write is there and the failed one is not.
//!
//! Writes fill the disk only if they go to disk: against an in-memory log no write ever
//! fails and the test says so.
//!
//! Needs Linux and root (mount). Otherwise it prints SKIP and passes, unless CI is set.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{unique_name, CorralServer};
use corral_client::proto::{CreateMode, ErrorCode};
use corral_client::{open_acl_unsafe, ClientError, ConnectOptions, Connection};

/// Initial tmpfs size. Room for the keeper's start (a preallocated segment, a start-up
/// snapshot); the filler takes the rest.
const TMPFS_MB: u64 = 128;
/// Size after "freeing space": deleting the filler alone may not leave room for a new
/// preallocated segment next to a full one.
const TMPFS_GROWN_MB: u64 = 512;
/// Data of each filling write (below jute.maxbuffer's 1 MB).
const VALUE_BYTES: usize = 256 * 1024;
/// Bound on the filling writes: three times the tmpfs, in case segments are preallocated
/// ahead (every preallocated byte is written into before a write can fail).
const MAX_FILL_WRITES: u64 = 3 * TMPFS_MB * 1024 * 1024 / VALUE_BYTES as u64;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

fn skip_or_fail(why: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("disk-full test cannot run with CI set: {why}");
    }
    eprintln!("SKIP: disk-full test: {why}");
}

fn is_root() -> bool {
    // /proc/self/status: "Uid:\t<real>\t<effective>\t..."
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A tmpfs mounted on `path`; unmounted (and `dir`, the test's temp dir, removed) on drop,
/// also when the test fails. Declared before the server, so the server is stopped first.
struct TmpfsMount {
    path: PathBuf,
    dir: PathBuf,
}

impl TmpfsMount {
    fn mount(dir: &Path, size_mb: u64) -> Result<TmpfsMount, String> {
        let path = dir.join("data");
        std::fs::create_dir_all(&path).map_err(|e| format!("create {}: {e}", path.display()))?;
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mb}m"), "tmpfs"])
            .arg(&path))?;
        Ok(TmpfsMount {
            path,
            dir: dir.to_path_buf(),
        })
    }

    fn resize(&self, size_mb: u64) -> Result<(), String> {
        run(Command::new("mount")
            .args(["-o", &format!("remount,size={size_mb}m")])
            .arg(&self.path))
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        if let Err(e) = run(Command::new("umount").arg(&self.path)) {
            eprintln!("umount failed ({e}); lazy unmount");
            let _ = run(Command::new("umount").arg("-l").arg(&self.path));
        }
        if std::env::var_os("CORRAL_KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Writes 1 MB blocks (then smaller ones) to `path` until the file system is full.
/// Returns the bytes written.
fn fill(path: &Path, limit_mb: u64) -> Result<u64, String> {
    let mut f = std::fs::File::create(path).map_err(|e| format!("create filler: {e}"))?;
    let mut written = 0u64;
    let mut block = 1024 * 1024;
    let buf = vec![0xa5u8; block];
    // Bounded: never more than the whole file system plus slack.
    for _ in 0..(limit_mb + 64) * 2 {
        match f.write(&buf[..block]) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(28) => {
                // ENOSPC: try smaller blocks for the last pages.
                if block <= 4096 {
                    break;
                }
                block /= 16;
            }
            Err(e) => return Err(format!("write filler: {e}")),
        }
    }
    let _ = f.sync_all();
    Ok(written)
}

async fn timed<T>(
    fut: impl std::future::Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    tokio::time::timeout(REQUEST_TIMEOUT, fut)
        .await
        .unwrap_or(Err(ClientError::Timeout))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_fails_writes_cleanly_and_recovers() {
    if !cfg!(target_os = "linux") {
        skip_or_fail("needs Linux (tmpfs)");
        return;
    }
    if !is_root() {
        skip_or_fail("needs root to mount a tmpfs");
        return;
    }
    let dir = common::fresh_temp_dir("corral-diskfull").expect("temp dir");
    let mount = match TmpfsMount::mount(&dir, TMPFS_MB) {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            skip_or_fail(&format!("cannot mount a tmpfs: {e}"));
            return;
        }
    };
    // Dropped before `mount` (reverse order): the keeper stops before the unmount.
    let mut server = CorralServer::start_in(dir.clone(), "");
    let addr = server.addr();
    let c = timed(Connection::connect(&addr, ConnectOptions::default()))
        .await
        .expect("connect");
    let root = format!("/{}", unique_name("diskfull"));
    c.create(&root, b"root", &open_acl_unsafe(), CreateMode::Persistent)
        .await
        .expect("create root");
    let mut acked: Vec<(String, Vec<u8>)> = vec![(root.clone(), b"root".to_vec())];
    for i in 0..5 {
        let (p, d) = (
            format!("{root}/before-{i}"),
            format!("before-{i}").into_bytes(),
        );
        c.create(&p, &d, &open_acl_unsafe(), CreateMode::Persistent)
            .await
            .expect("create before the disk is full");
        acked.push((p, d));
    }

    let filler = mount.path.join("filler");
    let filled = fill(&filler, TMPFS_MB).expect("fill the tmpfs");
    eprintln!(
        "filler took {} MB of the {TMPFS_MB} MB tmpfs",
        filled / (1024 * 1024)
    );

    // Write until a write fails.
    let started = Instant::now();
    let mut failed: Option<(String, ErrorCode)> = None;
    for i in 0..MAX_FILL_WRITES {
        let p = format!("{root}/fill-{i:05}");
        let mut d = format!("fill-{i}-").into_bytes();
        d.resize(VALUE_BYTES, b'0' + (i % 10) as u8);
        match timed(c.create(&p, &d, &open_acl_unsafe(), CreateMode::Persistent)).await {
            Ok(_) => acked.push((p, d)),
            Err(ClientError::Server(code)) => {
                failed = Some((p, code));
                break;
            }
            Err(e) => panic!(
                "write {p} on a full disk did not get an error reply: {e} (keeper running: {}); log:\n{}",
                server.is_running(),
                server.log_tail()
            ),
        }
    }
    let Some((failed_path, code)) = failed else {
        panic!(
            "no write failed after {MAX_FILL_WRITES} writes of {} KB ({} MB) into a full {TMPFS_MB} MB tmpfs dataDir in {:.1?}: are writes going to disk?",
            VALUE_BYTES / 1024,
            MAX_FILL_WRITES * VALUE_BYTES as u64 / (1024 * 1024),
            started.elapsed()
        );
    };
    eprintln!(
        "write {} of {} KB failed with {code:?} after {} acknowledged",
        failed_path,
        VALUE_BYTES / 1024,
        acked.len()
    );

    // Same connection: reads still work, and the failed write was not applied.
    let (d, _) = timed(c.get_data(&acked[1].0, false))
        .await
        .unwrap_or_else(|e| panic!("read on the connection whose write failed: {e}"));
    assert_eq!(d, acked[1].1);
    assert!(
        timed(c.exists(&failed_path, false))
            .await
            .expect("exists on the same connection")
            .is_none(),
        "{failed_path} was answered {code:?} but exists"
    );
    // A new connection reads too; the keeper is still up a moment later.
    let c2 = timed(Connection::connect(&addr, ConnectOptions::default()))
        .await
        .expect("new connection while the disk is full");
    timed(c2.get_data(&root, false))
        .await
        .expect("read on a new connection while the disk is full");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        server.is_running(),
        "the keeper exited on a full disk; log:\n{}",
        server.log_tail()
    );

    // Free space: writes succeed again (allowing the keeper a moment to notice).
    std::fs::remove_file(&filler).expect("remove filler");
    mount.resize(TMPFS_GROWN_MB).expect("grow the tmpfs");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut attempt = 0;
    loop {
        let p = format!("{root}/after-{attempt}");
        let d = format!("after-{attempt}").into_bytes();
        match timed(c.create(&p, &d, &open_acl_unsafe(), CreateMode::Persistent)).await {
            Ok(_) => {
                acked.push((p, d));
                break;
            }
            Err(ClientError::Server(code)) if Instant::now() < deadline => {
                eprintln!("write after freeing space: {code:?}; retrying");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => panic!(
                "writes do not succeed again after freeing space: {e}; log:\n{}",
                server.log_tail()
            ),
        }
        attempt += 1;
    }
    for i in 0..10 {
        let (p, d) = (format!("{root}/later-{i}"), vec![b'l'; 64 * 1024]);
        c.create(&p, &d, &open_acl_unsafe(), CreateMode::Persistent)
            .await
            .unwrap_or_else(|e| panic!("write {p} after freeing space: {e}"));
        acked.push((p, d));
    }

    // SIGKILL + restart: the log is intact.
    server.kill9().expect("SIGKILL");
    c.abort();
    c2.abort();
    if let Err(e) = server.restart() {
        panic!("restart after the disk was full: {e}");
    }
    let c = timed(Connection::connect(&addr, ConnectOptions::default()))
        .await
        .expect("connect after restart");
    let mut lost = Vec::new();
    for (p, d) in &acked {
        match timed(c.get_data(p, false)).await {
            Ok((got, _)) if got == *d => {}
            Ok((got, _)) => lost.push(format!("{p}: data differs ({} bytes)", got.len())),
            Err(e) => lost.push(format!("{p}: {e}")),
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost after the full disk and a restart:\n{}\nlog:\n{}",
        lost.len(),
        acked.len(),
        lost.iter().take(10).cloned().collect::<Vec<_>>().join("\n"),
        server.log_tail()
    );
    assert!(
        timed(c.exists(&failed_path, false))
            .await
            .expect("exists after restart")
            .is_none(),
        "{failed_path} was answered {code:?} but exists after the restart"
    );
    let _ = c.close().await;
    drop(server);
    drop(mount);
}
