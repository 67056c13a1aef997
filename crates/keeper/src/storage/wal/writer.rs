//! The WAL's writer thread: group commit, segment rolls (into the file `prealloc` made ready),
//! truncation, purge.
//!
//! Owns: every mutation of segment files. Must not: block on anything but its own disk I/O and
//! the preallocator (a caller waiting for an ack never holds a lock the writer needs).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::Instant;

use super::files::{sync_dir, with_path, zero_range};
use super::prealloc;
use super::segment::segment_name;
use super::{
    doomed_path, lock, AppendDone, Cmd, Ctl, Loc, Record, RecoveredSegment, Shared, PREALLOC_NAME,
};

/// A segment the writer knows of.
struct Seg {
    path: PathBuf,
    last: Option<u64>,
    /// Byte offset where its data ends (the write position for the current segment).
    end: u64,
    capacity: u64,
}

/// The segment appends go to.
struct Current {
    first: u64,
    file: File,
    /// Whether the preallocator has been asked for the next segment already.
    asked: bool,
}

pub(super) struct Writer {
    shared: Arc<Shared>,
    segs: BTreeMap<u64, Seg>,
    cur: Option<Current>,
    /// The index the next append must carry; `None` for an empty log.
    next: Option<u64>,
    purged: u64,
    floor: u64,
}

/// An io::Error can't be cloned; every waiter of a failed batch gets the same message.
fn copy_err(e: &io::Error) -> io::Error {
    io::Error::new(e.kind(), e.to_string())
}

impl Writer {
    pub(super) fn new(
        shared: Arc<Shared>,
        recovered: Vec<RecoveredSegment>,
        next: Option<u64>,
    ) -> io::Result<Writer> {
        let mut segs = BTreeMap::new();
        for s in recovered {
            segs.insert(
                s.first,
                Seg {
                    path: s.path,
                    last: s.last,
                    end: s.end,
                    capacity: s.capacity,
                },
            );
        }
        let mut w = Writer {
            shared,
            segs,
            cur: None,
            next,
            purged: 0,
            floor: 0,
        };
        // Keep appending into the last segment: its preallocated space is still ours.
        if let Some((&first, seg)) = w.segs.iter().next_back() {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&seg.path)
                .map_err(|e| with_path(&seg.path, e))?;
            w.cur = Some(Current {
                first,
                file,
                asked: false,
            });
        }
        // An empty log (or a nearly full segment) needs the next segment soon; start now so
        // the first append does not wait for 64 MiB of zeros.
        w.maybe_ask_prealloc();
        Ok(w)
    }

    pub(super) fn run(mut self, rx: mpsc::Receiver<Cmd>) {
        while let Ok(first) = rx.recv() {
            // Group commit: everything queued while the previous fdatasync ran goes into this
            // batch.
            let mut cmds = vec![first];
            while let Ok(c) = rx.try_recv() {
                cmds.push(c);
            }
            let mut appends: Vec<(Vec<Record>, AppendDone)> = Vec::new();
            for cmd in cmds {
                match cmd {
                    Cmd::Append { records, done } => appends.push((records, done)),
                    Cmd::Ctl(ctl) => {
                        self.flush(std::mem::take(&mut appends));
                        self.control(ctl);
                    }
                }
            }
            self.flush(appends);
        }
    }

    fn failed(&self) -> bool {
        self.shared.failed.load(Ordering::Acquire)
    }

    fn fail(&self, e: &io::Error) {
        tracing::error!("write-ahead log write failed, refusing further writes: {e}");
        self.shared.failed.store(true, Ordering::Release);
        self.shared.durable.send_modify(|d| d.failed = true);
    }

    fn control(&mut self, ctl: Ctl) {
        match ctl {
            Ctl::Truncate { from, done } => {
                let r = if self.failed() {
                    Err(super::closed())
                } else {
                    self.truncate(from)
                };
                if let Err(e) = &r {
                    self.fail(e);
                }
                let _ = done.send(r);
            }
            Ctl::Purge { upto } => {
                self.purged = self.purged.max(upto);
                self.delete_covered();
            }
            Ctl::Floor { index } => {
                self.floor = self.floor.max(index);
                self.delete_covered();
            }
            Ctl::Run { f, done } => {
                let _ = done.send(f());
            }
        }
    }

    fn flush(&mut self, appends: Vec<(Vec<Record>, AppendDone)>) {
        if appends.is_empty() {
            return;
        }
        let result = if self.failed() {
            Err(super::closed())
        } else {
            self.write_batch(&appends)
        };
        match result {
            Ok(()) => {
                for (_, done) in appends {
                    done(Ok(()));
                }
            }
            Err(e) => {
                self.fail(&e);
                for (_, done) in appends {
                    done(Err(copy_err(&e)));
                }
            }
        }
    }

    fn sync(&self, file: &File, first: u64) -> io::Result<()> {
        if !self.shared.opts.force_sync {
            return Ok(());
        }
        let t = Instant::now();
        // A slow disk ("sleep(ms)", timed as the fsync's own latency) or a failed one
        // ("return").
        fail::fail_point!("wal-fsync", |_| Err(io::Error::other(
            "fsync failed (injected by failpoint wal-fsync)"
        )));
        file.sync_data()
            .map_err(|e| with_path(&self.shared.opts.dir.join(segment_name(first)), e))?;
        let took = t.elapsed();
        let slow = took > self.shared.opts.fsync_warning;
        if slow {
            tracing::warn!(
                ms = took.as_millis() as u64,
                threshold_ms = self.shared.opts.fsync_warning.as_millis() as u64,
                "fsync of the write-ahead log was slow; every write in the batch waited for it \
                 (fsync.warningthresholdms)"
            );
        }
        let us = took.as_micros() as u64;
        let mut s = lock(&self.shared.stats);
        s.fsync_threshold_exceeded += u64::from(slow);
        s.fsyncs += 1;
        if let Some(h) = s.hist.as_mut() {
            let _ = h.record(us.max(1));
        }
        Ok(())
    }

    /// Writes `buf` at the current segment's end and records the locations.
    fn write_out(&mut self, buf: &[u8]) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let Some(cur) = self.cur.as_ref() else {
            return Err(io::Error::other("records to write but no current segment"));
        };
        let Some(seg) = self.segs.get_mut(&cur.first) else {
            return Err(io::Error::other("current segment is not tracked"));
        };
        cur.file
            .write_all_at(buf, seg.end)
            .map_err(|e| with_path(&seg.path, e))?;
        seg.end += buf.len() as u64;
        if seg.end > seg.capacity {
            // A record larger than a whole segment grew the file.
            seg.capacity = seg.end;
        }
        Ok(())
    }

    fn write_batch(&mut self, appends: &[(Vec<Record>, AppendDone)]) -> io::Result<()> {
        let mut buf: Vec<u8> = Vec::new();
        let mut locs: Vec<Loc> = Vec::new();
        let mut n_records = 0u64;
        for (records, _) in appends {
            for rec in records {
                let (index, rec) = (rec.index, &rec.framed);
                match self.next {
                    Some(n) if n == index => {}
                    // Raft purged up to a snapshot beyond the end of the log (a snapshot
                    // installed from a leader, or a log tail lost with forceSync=no): the log
                    // restarts at the snapshot, in a fresh segment.
                    Some(n) if index > n && self.purged >= index - 1 => {
                        // Records queued ahead of the jump in this batch are all at or below the
                        // purge point: discard them with the old segments. (Writing them out
                        // would leave them in the buffer for the fresh segment, or fail for
                        // want of a current segment.)
                        buf.clear();
                        locs.clear();
                        self.drop_all_segments()?;
                        self.next = None;
                    }
                    None => {}
                    Some(n) => {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidInput,
                            format!("append of log index {index} where {n} was expected"),
                        ))
                    }
                }
                let fits = self
                    .cur
                    .as_ref()
                    .and_then(|c| self.segs.get(&c.first))
                    .is_some_and(|s| {
                        let pos = s.end + buf.len() as u64;
                        // An empty segment takes any record, growing if it must.
                        pos == 0 || pos + rec.len() as u64 <= s.capacity
                    });
                if !fits {
                    self.write_out(&buf)?;
                    buf.clear();
                    if let Some(c) = self.cur.as_ref() {
                        // The old segment must be complete on disk before the new one has
                        // data, so a torn write can only ever be at the tail of the last one.
                        self.sync(&c.file, c.first)?;
                    }
                    self.publish(std::mem::take(&mut locs));
                    self.roll(index)?;
                }
                let (first, end) = match self
                    .cur
                    .as_ref()
                    .and_then(|c| self.segs.get(&c.first).map(|s| (c.first, s.end)))
                {
                    Some(x) => x,
                    None => return Err(io::Error::other("no current segment after roll")),
                };
                locs.push(Loc {
                    seg: first,
                    offset: end + buf.len() as u64,
                    len: (rec.len() - super::HEADER) as u32,
                });
                buf.extend_from_slice(rec);
                if let Some(s) = self.segs.get_mut(&first) {
                    s.last = Some(index);
                }
                self.next = Some(index + 1);
                n_records += 1;
            }
        }
        self.write_out(&buf)?;
        if let Some(c) = self.cur.as_ref() {
            self.sync(&c.file, c.first)?;
        }
        self.publish(locs);
        let upto = self.next.and_then(|n| n.checked_sub(1));
        self.shared.durable.send_modify(|d| d.upto = upto);
        {
            let mut s = lock(&self.shared.stats);
            s.batches += 1;
            s.records += n_records;
        }
        self.maybe_ask_prealloc();
        Ok(())
    }

    /// Makes written records readable.
    fn publish(&self, locs: Vec<Loc>) {
        if locs.is_empty() {
            return;
        }
        let mut ix = lock(&self.shared.index);
        if ix.locs.is_empty() {
            // The first record after an empty log: reads are relative to it.
            if let (Some(n), Some(_)) = (self.next, locs.first()) {
                ix.base = n - locs.len() as u64;
            }
        }
        ix.locs.extend(locs);
    }

    /// Asks the preallocator for the next segment once the current one is half full.
    fn maybe_ask_prealloc(&mut self) {
        let half_full = match self.cur.as_ref() {
            None => true,
            Some(c) => self
                .segs
                .get(&c.first)
                .is_none_or(|s| s.end >= s.capacity / 2),
        };
        let asked = self.cur.as_ref().is_some_and(|c| c.asked);
        if half_full && !asked {
            if let Some(c) = self.cur.as_mut() {
                c.asked = true;
            }
            let mut p = lock(&self.shared.pre);
            p.wanted = true;
            drop(p);
            self.shared.pre_cv.notify_all();
        }
    }

    /// Starts a new segment whose first record will be `first`.
    fn roll(&mut self, first: u64) -> io::Result<()> {
        let dir = self.shared.opts.dir.clone();
        let capacity = prealloc::take(&self.shared)?;
        let pre = dir.join(PREALLOC_NAME);
        let path = dir.join(segment_name(first));
        fs::rename(&pre, &path).map_err(|e| with_path(&path, e))?;
        sync_dir(&dir)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| with_path(&path, e))?;
        let reader = File::open(&path).map_err(|e| with_path(&path, e))?;
        lock(&self.shared.index)
            .files
            .insert(first, (path.clone(), Arc::new(reader)));
        self.segs.insert(
            first,
            Seg {
                path,
                last: None,
                end: 0,
                capacity,
            },
        );
        self.shared.log_bytes.fetch_add(capacity, Ordering::Relaxed);
        self.cur = Some(Current {
            first,
            file,
            asked: false,
        });
        Ok(())
    }

    fn remove_segment(&mut self, first: u64) -> io::Result<()> {
        if let Some(seg) = self.segs.remove(&first) {
            // Renamed out of the log here (quick, and atomic for recovery); the data is freed
            // by the preallocator thread, a little at a time, because unlinking tens of
            // megabytes at once stalls the fsyncs this thread is waiting on.
            let doomed = doomed_path(&seg.path);
            match fs::rename(&seg.path, &doomed) {
                Ok(()) => {
                    lock(&self.shared.pre).doomed.push(doomed);
                    self.shared.pre_cv.notify_all();
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(with_path(&seg.path, e)),
            }
            let _ = self
                .shared
                .log_bytes
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                    Some(b.saturating_sub(seg.capacity))
                });
            lock(&self.shared.index).files.remove(&first);
        }
        if self.cur.as_ref().is_some_and(|c| c.first == first) {
            self.cur = None;
        }
        Ok(())
    }

    fn drop_all_segments(&mut self) -> io::Result<()> {
        let all: Vec<u64> = self.segs.keys().copied().collect();
        // Oldest first: a crash half way leaves a shorter log, never one with a hole.
        for first in all {
            self.remove_segment(first)?;
        }
        sync_dir(&self.shared.opts.dir)?;
        let mut ix = lock(&self.shared.index);
        ix.locs.clear();
        Ok(())
    }

    fn truncate(&mut self, from: u64) -> io::Result<()> {
        let Some(next) = self.next else {
            return Ok(());
        };
        if from >= next {
            return Ok(());
        }
        // Later segments go entirely, newest first so no hole appears on a crash.
        let later: Vec<u64> = self.segs.range(from..).map(|(&f, _)| f).rev().collect();
        for first in later {
            self.remove_segment(first)?;
        }
        // The segment holding `from` is cut where `from` begins.
        let loc = {
            let ix = lock(&self.shared.index);
            from.checked_sub(ix.base)
                .and_then(|p| usize::try_from(p).ok())
                .and_then(|p| ix.locs.get(p).copied())
        };
        if let Some(loc) = loc {
            if let Some(seg) = self.segs.get_mut(&loc.seg) {
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&seg.path)
                    .map_err(|e| with_path(&seg.path, e))?;
                zero_range(&file, loc.offset, seg.end, self.shared.opts.force_sync)
                    .map_err(|e| with_path(&seg.path, e))?;
                seg.end = loc.offset;
                seg.last = from.checked_sub(1).filter(|&l| l >= loc.seg);
                let first = loc.seg;
                self.sync(&file, first)?;
                self.cur = Some(Current {
                    first,
                    file,
                    asked: false,
                });
            }
        }
        sync_dir(&self.shared.opts.dir)?;
        {
            let mut ix = lock(&self.shared.index);
            let keep = from.saturating_sub(ix.base) as usize;
            ix.locs.truncate(keep);
        }
        self.next = if self.segs.is_empty() {
            None
        } else {
            Some(from)
        };
        let upto = from.checked_sub(1);
        self.shared
            .durable
            .send_modify(|d| d.upto = d.upto.min(upto));
        self.maybe_ask_prealloc();
        Ok(())
    }

    /// Deletes whole segments whose records are all purged and below the retain floor. Never
    /// the current segment: appends go there.
    fn delete_covered(&mut self) {
        let bound = self.purged.min(self.floor);
        let cur = self.cur.as_ref().map(|c| c.first);
        let doomed: Vec<u64> = self
            .segs
            .iter()
            .take_while(|(&first, s)| {
                Some(first) != cur && s.last.unwrap_or(first.saturating_sub(1)) <= bound
            })
            .map(|(&f, _)| f)
            .collect();
        if doomed.is_empty() {
            return;
        }
        let mut removed = Vec::new();
        for first in doomed {
            if let Err(e) = self.remove_segment(first) {
                // Not fatal: the log is intact, only larger than it needs to be.
                tracing::warn!("cannot delete a purged write-ahead log segment: {e}");
                break;
            }
            removed.push(first);
        }
        if let Err(e) = sync_dir(&self.shared.opts.dir) {
            tracing::warn!("{e}");
        }
        let mut ix = lock(&self.shared.index);
        while let Some(l) = ix.locs.front() {
            if !removed.contains(&l.seg) {
                break;
            }
            ix.locs.pop_front();
            ix.base += 1;
        }
    }
}
