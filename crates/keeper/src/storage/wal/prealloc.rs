//! The preallocator: a thread that keeps the next segment ready, zero-filled, before the
//! writer needs it, so appends only ever write into space the filesystem has already given.
//! When it cannot (disk full) it raises [`super::StorageHealth::writes_blocked`] and retries
//! every second. It also deletes purged segments, a little at a time, off the writer thread.
//!
//! Owns: `<dir>/prealloc.tmp` until the writer takes it (renaming it is the writer's), the
//! hand-off state with the writer, and the `.deleting` files the writer hands over. Must not:
//! touch a live segment, or make the writer wait except while a preallocation it needs is
//! under way.

use std::fs::{self, OpenOptions};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::files::{remove_gradually, with_path, zero_range};
use super::{lock, Shared, PREALLOC_NAME};

/// State of the preallocator, shared with the writer under `Shared::pre`.
#[derive(Default)]
pub(super) struct PreState {
    /// The writer wants a next segment.
    pub(super) wanted: bool,
    /// A preallocated file is waiting at `<dir>/prealloc.tmp`, of this many bytes.
    pub(super) ready: Option<u64>,
    pub(super) in_progress: bool,
    pub(super) shutdown: bool,
    /// Segments purged and renamed to `<name>.deleting`, for this thread to delete.
    pub(super) doomed: Vec<PathBuf>,
}

/// On the writer thread, the preallocated next segment: waits for the preallocator if it is at
/// work; if it has nothing (it failed, disk full), makes one here as the last resort. Returns
/// its size.
pub(super) fn take(shared: &Shared) -> io::Result<u64> {
    let mut p = lock(&shared.pre);
    p.wanted = true;
    shared.pre_cv.notify_all();
    while p.in_progress {
        p = shared.pre_cv.wait(p).unwrap_or_else(|e| e.into_inner());
    }
    if let Some(size) = p.ready.take() {
        // The one just taken is consumed; the next is asked for at half of this one.
        p.wanted = false;
        return Ok(size);
    }
    // Hold the preallocator off while we try ourselves.
    p.in_progress = true;
    drop(p);
    let r = preallocate(shared);
    let mut p = lock(&shared.pre);
    p.in_progress = false;
    // After a failure the preallocator keeps retrying, so writes resume on their own.
    p.wanted = r.is_err();
    drop(p);
    shared.pre_cv.notify_all();
    match r {
        Ok(size) => {
            shared.health.blocked.store(false, Ordering::Release);
            Ok(size)
        }
        Err(e) => {
            shared.health.blocked.store(true, Ordering::Release);
            Err(e)
        }
    }
}

/// Creates `<dir>/prealloc.tmp` filled with zeros to the segment size. Writing real zeros
/// (rather than a sparse `set_len`) makes the filesystem allocate the blocks now, so a full disk
/// shows up here and not in the middle of an append, and later fdatasyncs need not update
/// block allocation metadata.
fn preallocate(shared: &Shared) -> io::Result<u64> {
    let path = shared.opts.dir.join(PREALLOC_NAME);
    let size = shared.opts.segment_bytes;
    let r = (|| {
        #[cfg(test)]
        if shared
            .opts
            .prealloc_fault
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Acquire))
        {
            return Err(io::Error::other("no space left on device (injected)"));
        }
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        zero_range(&f, 0, size, shared.opts.force_sync)?;
        if shared.opts.force_sync {
            f.sync_all()?;
        }
        Ok(size)
    })();
    if r.is_err() {
        // Give the partial file's space back: the current segment may need the room.
        let _ = fs::remove_file(&path);
    }
    r.map_err(|e| with_path(&path, e))
}

/// Keeps one preallocated segment ready whenever the writer wants one; on failure raises
/// writes-blocked and retries every second until it succeeds.
pub(super) fn preallocator(shared: Arc<Shared>) {
    let mut p = lock(&shared.pre);
    loop {
        if p.shutdown {
            return;
        }
        if !p.doomed.is_empty() {
            let doomed = std::mem::take(&mut p.doomed);
            drop(p);
            for path in doomed {
                if let Err(e) = remove_gradually(&path) {
                    tracing::warn!("cannot delete a purged write-ahead log segment: {e}");
                }
            }
            p = lock(&shared.pre);
            continue;
        }
        let blocked = shared.health.blocked.load(Ordering::Acquire);
        if !(p.wanted && p.ready.is_none() && !p.in_progress) {
            p = shared.pre_cv.wait(p).unwrap_or_else(|e| e.into_inner());
            continue;
        }
        p.in_progress = true;
        drop(p);
        let r = preallocate(&shared);
        p = lock(&shared.pre);
        p.in_progress = false;
        match r {
            Ok(size) => {
                p.ready = Some(size);
                if blocked {
                    tracing::info!("write-ahead log space available again: client writes resume");
                }
                shared.health.blocked.store(false, Ordering::Release);
            }
            Err(e) => {
                if !blocked {
                    tracing::error!(
                        "cannot preallocate the next write-ahead log segment ({e}); refusing \
                         client writes until there is room, retrying every second"
                    );
                }
                shared.health.blocked.store(true, Ordering::Release);
            }
        }
        shared.pre_cv.notify_all();
        if p.ready.is_none() && !p.shutdown {
            // Retry after a pause rather than spinning on a full disk.
            p = shared
                .pre_cv
                .wait_timeout(p, Duration::from_secs(1))
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }
}
