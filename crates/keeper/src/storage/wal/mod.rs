//! The write-ahead log: numbered records in preallocated segment files, appended with group
//! commit, readable by index, truncated on raft conflicts and purged below snapshots.
//!
//! Layout: `<dir>/<first index, 20 digits>.log` segments (format in `segment`) and at most
//! one `<dir>/prealloc.tmp`, the zero-filled file that becomes the next segment.
//!
//! Threads: one writer thread owns every file mutation (appends, rolls to a new segment,
//! truncation, deletion, and closures run "in order" such as the vote save), so all write I/O
//! is serialized as openraft requires. It drains every queued append, writes them with one
//! `write`, one `fdatasync`, then acknowledges them all. A preallocator thread prepares the next
//! segment in the background once the current one is half full, so the writer only ever writes
//! into space the filesystem has already given us; when it cannot (disk full) it raises
//! [`StorageHealth::writes_blocked`] and retries every second. Readers `pread` written records
//! from any thread.
//!
//! Files: this one holds the handle and what the threads share; `recover` reads the log at
//! open, before the threads start; `writer` and `prealloc` are the two threads; `segment` is
//! the record format, `files` the file helpers storage shares.
//!
//! Owns: files under its directory and the meaning of index, offset and segment. Must not: know
//! what a record body means (consensus encodes raft entries), decide what is committed, or touch
//! snapshots (it only learns, through [`Wal::set_retain_floor`], below which index it may delete).

mod files;
mod prealloc;
mod recover;
mod segment;
mod writer;

#[cfg(test)]
pub(crate) use files::PACE_BYTES;
pub use files::{frame, read_framed, remove_gradually, sync_dir, write_atomic};
pub(crate) use files::{parse_index, with_path, write_paced, Throttle};

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use prealloc::PreState;
use recover::{Recovered, RecoveredSegment};
use segment::{Parsed, HEADER, INDEX};
use tokio::sync::oneshot;

/// Default segment size, as ZooKeeper preallocates 64 MiB transaction logs.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

/// Name of the preallocated file waiting to become the next segment.
const PREALLOC_NAME: &str = "prealloc.tmp";
/// Suffix of a purged segment waiting to be deleted.
const DOOMED_SUFFIX: &str = ".deleting";

/// Where a purged segment waits for deletion: out of the segment names, so recovery never
/// reads it, and swept at the next start if a stop came first.
fn doomed_path(segment: &Path) -> PathBuf {
    let mut s = segment.as_os_str().to_owned();
    s.push(DOOMED_SUFFIX);
    PathBuf::from(s)
}

/// How to open a WAL.
#[derive(Clone, Debug)]
pub struct WalOptions {
    /// The directory holding the segments (`<dataLogDir or dataDir>/wal`).
    pub dir: PathBuf,
    /// Size each segment is preallocated to.
    pub segment_bytes: u64,
    /// `false` skips fdatasync (ZooKeeper's forceSync=no): an OS crash may lose acknowledged
    /// appends.
    pub force_sync: bool,
    /// An fdatasync slower than this is logged and counted (ZooKeeper's
    /// `fsync.warningthresholdms`): every write in its batch waited that long.
    pub fsync_warning: Duration,
    /// When set and true, preallocation fails as if the disk were full, to reach the
    /// writes-blocked path without filling a real disk.
    #[cfg(test)]
    pub(crate) prealloc_fault: Option<Arc<AtomicBool>>,
}

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("write-ahead log I/O: {0}")]
    Io(#[from] io::Error),
    /// Damage that recovery must not guess about.
    #[error(
        "write-ahead log is corrupt in {} at byte offset {offset}: {reason}. The log cannot be \
         trusted past this point, so the node refuses to start. Restore this node from a \
         snapshot or another replica; or, accepting that every entry from here on is lost, cut \
         the log here: truncate {} to {offset} bytes and remove every segment after it in {}",
        file.display(), file.display(), dir.display()
    )]
    Corrupt {
        file: PathBuf,
        dir: PathBuf,
        offset: u64,
        #[source]
        reason: Corruption,
    },
    /// Segments that do not follow each other.
    #[error(
        "write-ahead log has a gap: {} should start at log index {expected}. Restore this node \
         from a snapshot or another replica, or remove {} and every later segment to discard \
         those entries",
        file.display(), file.display()
    )]
    Gap { file: PathBuf, expected: u64 },
}

/// What is wrong at the offset a [`WalError::Corrupt`] names.
#[derive(Debug, thiserror::Error)]
pub enum Corruption {
    /// The frame: a torn or short header, a checksum mismatch, an index out of sequence.
    #[error("{0}")]
    Frame(String),
    /// The frame is sound but the reader given to [`Wal::open`] refused the body (it does not
    /// decode); its error, which says where in the body.
    #[error("{0}")]
    Body(#[source] BodyError),
}

/// Why the reader given to [`Wal::open`] refused a record's body: the caller's own error type,
/// kept as the source of the [`WalError::Corrupt`] it becomes.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// One record framed for the log, built by the caller before it is queued: the body is
/// encoded straight into the bytes the writer thread writes.
pub struct Record {
    index: u64,
    framed: Vec<u8>,
}

impl Record {
    /// The record at log index `index` whose body `write_body` appends to the buffer it is
    /// given; `body_hint` is the expected body size, to allocate once. Fails if the body is
    /// too large for a record.
    pub fn encode(
        index: u64,
        body_hint: usize,
        write_body: impl FnOnce(&mut Vec<u8>),
    ) -> io::Result<Record> {
        let framed = segment::frame_record(index, body_hint, write_body).map_err(|len| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("log entry {index} is too large for a WAL record ({len} bytes)"),
            )
        })?;
        Ok(Record { index, framed })
    }

    /// Bytes of the body.
    pub fn body_len(&self) -> usize {
        self.framed.len() - HEADER - INDEX
    }
}

/// The body of a record read by [`Wal::read`]. It derefs to the body; the frame read with it
/// stays in front, so the body is not moved to drop it.
#[derive(Debug)]
pub struct RecordBody(Vec<u8>);

impl std::ops::Deref for RecordBody {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0[HEADER + INDEX..]
    }
}

/// Called once an append is durable (or failed).
pub type AppendDone = Box<dyn FnOnce(io::Result<()>) + Send>;

/// Work run on the writer thread in order with appends (e.g. saving the raft vote).
pub type InOrder = Box<dyn FnOnce() -> io::Result<()> + Send>;

/// Shared view of whether the disk has room for more client writes.
#[derive(Clone, Debug, Default)]
pub struct StorageHealth {
    blocked: Arc<AtomicBool>,
}

impl StorageHealth {
    /// True while the next segment cannot be preallocated (disk full). The keeper refuses new
    /// client writes then; the space already reserved carries raft's own entries and whatever
    /// was in flight.
    pub fn writes_blocked(&self) -> bool {
        self.blocked.load(Ordering::Acquire)
    }
}

/// Counters of the WAL, for metrics.
#[derive(Clone, Debug, Default)]
pub struct WalStats {
    pub fsyncs: u64,
    pub appended_records: u64,
    /// Group-commit batches written (one write + one fdatasync each, rolls aside).
    pub batches: u64,
    pub fsync_p50_us: u64,
    pub fsync_p99_us: u64,
    pub fsync_p999_us: u64,
    pub fsync_max_us: u64,
    /// fdatasyncs slower than `fsync_warning` (ZooKeeper's fsync_threshold_exceed_count).
    pub fsync_threshold_exceeded: u64,
    /// Bytes of segment files on disk (preallocated size, so what the disk actually holds).
    pub log_bytes: u64,
}

/// Where a written record lives.
#[derive(Clone, Copy, Debug)]
struct Loc {
    seg: u64,
    offset: u64,
    /// Payload length (index + body).
    len: u32,
}

/// What readers need: record locations and read handles of segments.
struct ReadIndex {
    /// Log index of `locs[0]`.
    base: u64,
    locs: VecDeque<Loc>,
    files: BTreeMap<u64, (PathBuf, Arc<File>)>,
}

struct Stats {
    fsyncs: u64,
    fsync_threshold_exceeded: u64,
    records: u64,
    batches: u64,
    hist: Option<hdrhistogram::Histogram<u64>>,
}

struct Shared {
    opts: WalOptions,
    index: Mutex<ReadIndex>,
    health: StorageHealth,
    stats: Mutex<Stats>,
    log_bytes: AtomicU64,
    pre: Mutex<PreState>,
    pre_cv: Condvar,
    /// Set when a write failed: the files are in an unknown state, nothing more is accepted.
    failed: AtomicBool,
    /// How far the log is durable, for callers that acknowledge appends early and wait here.
    durable: tokio::sync::watch::Sender<Durability>,
}

/// How far the log is on disk: every record up to `upto` has been fsynced (or, with
/// forceSync=no, written). `failed` once a write failed: nothing further will become durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Durability {
    pub upto: Option<u64>,
    pub failed: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here leaves its data consistent before anything that can panic,
    // so a poisoned lock still holds usable data.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

enum Cmd {
    Append {
        records: Vec<Record>,
        done: AppendDone,
    },
    /// Everything else: runs after the appends queued before it are flushed.
    Ctl(Ctl),
}

enum Ctl {
    Truncate {
        from: u64,
        done: oneshot::Sender<io::Result<()>>,
    },
    Purge {
        upto: u64,
    },
    Floor {
        index: u64,
    },
    Run {
        f: InOrder,
        done: oneshot::Sender<io::Result<()>>,
    },
}

/// The write-ahead log handle. Dropping it (or [`Wal::close`]) stops the threads after the
/// queued work is done.
pub struct Wal {
    shared: Arc<Shared>,
    tx: Mutex<Option<mpsc::Sender<Cmd>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Wal {
    /// Opens (or creates) the WAL in `opts.dir`, calling `visit(index, body)` for every
    /// record in order. A torn tail of the last segment is cut (with a warning); damage before it
    /// is an error that names file and offset. `visit` may refuse a record (e.g. undecodable)
    /// with its own error; that is reported as corruption at the record's offset.
    pub fn open(
        opts: WalOptions,
        visit: impl FnMut(u64, &[u8]) -> Result<(), BodyError>,
    ) -> Result<Wal, WalError> {
        let Recovered { segs, locs, base } = recover::recover(&opts, visit)?;

        let mut files = BTreeMap::new();
        let mut log_bytes = 0;
        for s in &segs {
            let f = File::open(&s.path).map_err(|e| files::with_path(&s.path, e))?;
            files.insert(s.first, (s.path.clone(), Arc::new(f)));
            log_bytes += s.capacity;
        }
        let next = segs.last().map(|s| s.last.map_or(s.first, |l| l + 1));
        let hist = hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3).ok();
        let shared = Arc::new(Shared {
            index: Mutex::new(ReadIndex {
                base: base.or(next).unwrap_or(0),
                locs,
                files,
            }),
            health: StorageHealth::default(),
            stats: Mutex::new(Stats {
                fsyncs: 0,
                fsync_threshold_exceeded: 0,
                records: 0,
                batches: 0,
                hist,
            }),
            log_bytes: AtomicU64::new(log_bytes),
            pre: Mutex::new(PreState::default()),
            pre_cv: Condvar::new(),
            failed: AtomicBool::new(false),
            durable: tokio::sync::watch::Sender::new(Durability {
                upto: next.and_then(|n| n.checked_sub(1)),
                failed: false,
            }),
            opts,
        });
        let (tx, rx) = mpsc::channel();
        let mut threads = Vec::new();
        let pre_shared = Arc::clone(&shared);
        threads.push(
            std::thread::Builder::new()
                .name("wal-prealloc".into())
                .spawn(move || prealloc::preallocator(pre_shared))
                .map_err(WalError::Io)?,
        );
        let w = writer::Writer::new(Arc::clone(&shared), segs, next)?;
        threads.push(
            std::thread::Builder::new()
                .name("wal-writer".into())
                .spawn(move || w.run(rx))
                .map_err(WalError::Io)?,
        );
        Ok(Wal {
            shared,
            tx: Mutex::new(Some(tx)),
            threads: Mutex::new(threads),
        })
    }

    fn send(&self, cmd: Cmd) -> Result<(), Cmd> {
        match lock(&self.tx).as_ref() {
            Some(tx) => tx.send(cmd).map_err(|e| e.0),
            None => Err(cmd),
        }
    }

    /// Queues records (consecutive, continuing the log) for writing; `done` runs on the writer
    /// thread once they are durable. The records are readable with [`Wal::read`] only after
    /// that.
    pub fn append(&self, records: Vec<Record>, done: AppendDone) {
        if let Err(Cmd::Append { done, .. }) = self.send(Cmd::Append { records, done }) {
            done(Err(closed()));
        }
    }

    async fn call(
        &self,
        make: impl FnOnce(oneshot::Sender<io::Result<()>>) -> Cmd,
    ) -> io::Result<()> {
        let (tx, rx) = oneshot::channel();
        if self.send(make(tx)).is_err() {
            return Err(closed());
        }
        rx.await.unwrap_or_else(|_| Err(closed()))
    }

    /// Removes the record at `from` and every later one, durably, before returning.
    pub async fn truncate(&self, from: u64) -> io::Result<()> {
        self.call(|done| Cmd::Ctl(Ctl::Truncate { from, done }))
            .await
    }

    /// Runs `f` on the writer thread after every append queued before it is durable, and before
    /// any queued after it: the vote must be saved in order with the log.
    pub async fn in_order(&self, f: InOrder) -> io::Result<()> {
        self.call(|done| Cmd::Ctl(Ctl::Run { f, done })).await
    }

    /// Records at and below `upto` are no longer needed by raft. Segment files are deleted
    /// once all their records are also at or below the retain floor.
    pub fn purge(&self, upto: u64) {
        let _ = self.send(Cmd::Ctl(Ctl::Purge { upto }));
    }

    /// Records at or below `index` are covered by every retained snapshot: segments entirely
    /// below it (and purged) may be deleted.
    pub fn set_retain_floor(&self, index: u64) {
        let _ = self.send(Cmd::Ctl(Ctl::Floor { index }));
    }

    /// Reads the body of the written record at `index`, `None` if there is no such record
    /// (purged, truncated, or not yet written).
    pub fn read(&self, index: u64) -> io::Result<Option<RecordBody>> {
        let (loc, path, file) = {
            let ix = lock(&self.shared.index);
            let Some(pos) = index.checked_sub(ix.base) else {
                return Ok(None);
            };
            let Some(loc) = usize::try_from(pos)
                .ok()
                .and_then(|p| ix.locs.get(p))
                .copied()
            else {
                return Ok(None);
            };
            let Some((path, file)) = ix.files.get(&loc.seg) else {
                return Ok(None);
            };
            (loc, path.clone(), Arc::clone(file))
        };
        let mut buf = vec![0u8; HEADER + loc.len as usize];
        file.read_exact_at(&mut buf, loc.offset).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("{} at byte offset {}: {e}", path.display(), loc.offset),
            )
        })?;
        let damage = match segment::parse_at(&buf, 0) {
            Parsed::Good { index: i, next } if i == index && next == buf.len() => {
                return Ok(Some(RecordBody(buf)));
            }
            Parsed::Good { index: i, .. } if i != index => {
                format!("record has log index {i} where {index} was expected")
            }
            Parsed::Good { .. } => "record length differs from the one written".to_string(),
            Parsed::End => "zero length where the record was written".to_string(),
            Parsed::Bad { reason, .. } => reason,
        };
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} at byte offset {}: record {index} fails its check on read: {damage}",
                path.display(),
                loc.offset
            ),
        ))
    }

    /// The oldest index from which the records up to `upto` together hold at most `budget`
    /// bytes (framing included), so a caller can keep a log tail of bounded size; `upto + 1`
    /// when even the record at `upto` is larger, `None` when `upto` is not in the log.
    /// Walks the index back from `upto`: called once per snapshot, not per write.
    pub fn oldest_within(&self, upto: u64, budget: u64) -> Option<u64> {
        let ix = lock(&self.shared.index);
        let last = usize::try_from(upto.checked_sub(ix.base)?).ok()?;
        if last >= ix.locs.len() {
            return None;
        }
        let mut used = 0u64;
        let mut oldest = upto + 1;
        for (pos, loc) in ix.locs.iter().enumerate().take(last + 1).rev() {
            used += HEADER as u64 + u64::from(loc.len);
            if used > budget {
                break;
            }
            oldest = ix.base + pos as u64;
        }
        Some(oldest)
    }

    /// The highest index written (readable with [`Wal::read`]), if any.
    pub fn written_upto(&self) -> Option<u64> {
        let ix = lock(&self.shared.index);
        if ix.locs.is_empty() {
            None
        } else {
            Some(ix.base + ix.locs.len() as u64 - 1)
        }
    }

    /// Watches how far the log is durable (see [`Durability`]).
    pub fn durability(&self) -> tokio::sync::watch::Receiver<Durability> {
        self.shared.durable.subscribe()
    }

    pub fn health(&self) -> StorageHealth {
        self.shared.health.clone()
    }

    pub fn stats(&self) -> WalStats {
        let s = lock(&self.shared.stats);
        let q = |p: f64| s.hist.as_ref().map_or(0, |h| h.value_at_quantile(p));
        WalStats {
            fsyncs: s.fsyncs,
            appended_records: s.records,
            batches: s.batches,
            fsync_p50_us: q(0.5),
            fsync_p99_us: q(0.99),
            fsync_p999_us: q(0.999),
            fsync_max_us: s.hist.as_ref().map_or(0, |h| h.max()),
            fsync_threshold_exceeded: s.fsync_threshold_exceeded,
            log_bytes: self.shared.log_bytes.load(Ordering::Relaxed),
        }
    }

    /// Finishes queued work and stops the threads. Later calls fail as closed. Idempotent.
    pub fn close(&self) {
        // Dropping the sender ends the writer's loop once the queue is drained.
        lock(&self.tx).take();
        {
            let mut p = lock(&self.shared.pre);
            p.shutdown = true;
        }
        self.shared.pre_cv.notify_all();
        let threads = std::mem::take(&mut *lock(&self.threads));
        for t in threads {
            // Dropped from one of its own callbacks: that thread ends by itself once the
            // queue is closed; joining it from itself would deadlock.
            if t.thread().id() == std::thread::current().id() {
                continue;
            }
            if t.join().is_err() {
                tracing::error!("a write-ahead log thread panicked");
            }
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.close();
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the write-ahead log is closed")
}

#[cfg(test)]
pub(crate) mod tests;
