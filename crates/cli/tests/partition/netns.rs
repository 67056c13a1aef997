//! Running code inside a network namespace made by `ip netns add`: a thread that joins the
//! namespace and runs a single-threaded tokio runtime there, so every socket it opens belongs
//! to that namespace (a socket keeps the namespace it was made in).
//!
//! Owns: entering namespaces. Must not: create or delete them (scripts/partition-test.sh
//! does, and removes them however the run ends).

use std::fs::File;
use std::future::Future;
use std::os::fd::AsRawFd;
use std::thread::JoinHandle;

/// Moves the calling thread into the named namespace.
fn enter(ns: &str) -> Result<(), String> {
    let path = format!("/run/netns/{ns}");
    let f = File::open(&path).map_err(|e| format!("open {path}: {e}"))?;
    // SAFETY: setns(2) takes a file descriptor and a flag and touches no memory of ours;
    // `f` owns the descriptor and stays open for the whole call. It changes the network
    // namespace of this thread only (other threads are unaffected), and its result is
    // checked below.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(format!(
            "setns({path}): {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Runs `f()`'s future to completion on a new thread inside `ns`.
pub fn spawn_in<F, Fut, T>(ns: &str, f: F) -> JoinHandle<Result<T, String>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    let ns = ns.to_string();
    std::thread::spawn(move || {
        enter(&ns)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("tokio runtime in {ns}: {e}"))?;
        Ok(rt.block_on(f()))
    })
}

/// Runs `f()`'s future inside `ns` and waits for it.
pub fn run_in<F, Fut, T>(ns: &str, f: F) -> Result<T, String>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    spawn_in(ns, f)
        .join()
        .map_err(|_| format!("the thread in {ns} panicked"))?
}
