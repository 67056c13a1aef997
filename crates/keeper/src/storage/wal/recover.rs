//! Start-up recovery of the log: every segment read in order and checked to follow the one
//! before, a torn tail of the last one cut (with a warning), damage before it refused naming
//! file and byte offset, every record handed to the caller's reader, and where each record
//! lives noted for [`super::Wal::read`].
//!
//! Owns: deciding what on disk is the log at start. Must not: run once the writer thread has
//! started (from then on it alone changes the files), or interpret a record's body (the
//! caller's reader may refuse one; that is corruption at its offset).

use std::collections::VecDeque;
use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use super::segment::{self, ScanEnd, INDEX};
use super::{
    files, BodyError, Corruption, Loc, WalError, WalOptions, DOOMED_SUFFIX, PREALLOC_NAME,
};

/// One segment as recovery found it.
pub(super) struct RecoveredSegment {
    pub(super) first: u64,
    pub(super) path: PathBuf,
    /// Index of its last record, if any.
    pub(super) last: Option<u64>,
    /// Byte offset where its data ends.
    pub(super) end: u64,
    pub(super) capacity: u64,
}

/// What recovery found: the segments, where each record lives, and the first record's index.
pub(super) struct Recovered {
    pub(super) segs: Vec<RecoveredSegment>,
    pub(super) locs: VecDeque<Loc>,
    pub(super) base: Option<u64>,
}

/// Reads the log in `opts.dir` (creating the directory), calling `visit(index, body)` for every
/// record in order.
pub(super) fn recover(
    opts: &WalOptions,
    mut visit: impl FnMut(u64, &[u8]) -> Result<(), BodyError>,
) -> Result<Recovered, WalError> {
    let dir = opts.dir.clone();
    fs::create_dir_all(&dir).map_err(|e| files::with_path(&dir, e))?;
    // A preallocated file from an earlier run may be partial; a fresh one is cheap.
    let stale = dir.join(PREALLOC_NAME);
    match fs::remove_file(&stale) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(files::with_path(&stale, e).into()),
    }
    let mut names = Vec::new();
    for ent in fs::read_dir(&dir).map_err(|e| files::with_path(&dir, e))? {
        let ent = ent.map_err(|e| files::with_path(&dir, e))?;
        // A purged segment whose deletion a stop interrupted.
        if ent
            .file_name()
            .to_str()
            .is_some_and(|n| n.ends_with(DOOMED_SUFFIX))
        {
            let p = ent.path();
            fs::remove_file(&p).map_err(|e| files::with_path(&p, e))?;
            continue;
        }
        if let Some(first) = ent
            .file_name()
            .to_str()
            .and_then(segment::parse_segment_name)
        {
            names.push(first);
        }
    }
    names.sort_unstable();

    let mut segs: Vec<RecoveredSegment> = Vec::new();
    let mut locs = VecDeque::new();
    let mut base = None;
    let n = names.len();
    for (i, first) in names.into_iter().enumerate() {
        let path = dir.join(segment::segment_name(first));
        if let Some(prev) = segs.last() {
            let expected = prev.last.map_or(prev.first, |l| l + 1);
            if first != expected {
                return Err(WalError::Gap {
                    file: path,
                    expected,
                });
            }
        }
        let bytes = fs::read(&path).map_err(|e| files::with_path(&path, e))?;
        let (recs, end) = segment::scan(&bytes, first);
        let corrupt = |offset: u64, reason: Corruption| WalError::Corrupt {
            file: path.clone(),
            dir: dir.clone(),
            offset,
            reason,
        };
        let data_end = match end {
            ScanEnd::Clean { end } => end,
            ScanEnd::Bad {
                offset,
                reason,
                followed_by_valid,
            } => {
                if i + 1 != n {
                    return Err(corrupt(
                        offset,
                        Corruption::Frame(format!("{reason}, in a segment that is not the last")),
                    ));
                }
                if followed_by_valid {
                    return Err(corrupt(
                        offset,
                        Corruption::Frame(format!("{reason}, followed by valid records")),
                    ));
                }
                tracing::warn!(
                    file = %path.display(),
                    offset,
                    "write-ahead log ends in a torn or corrupt record ({reason}); cutting the \
                     log at the last good record (the lost tail was never acknowledged)"
                );
                cut_tail(&path, &bytes, offset, opts.force_sync)?;
                offset
            }
        };
        for r in &recs {
            visit(r.index, &bytes[r.body.clone()])
                .map_err(|e| corrupt(r.offset, Corruption::Body(e)))?;
            if base.is_none() {
                base = Some(r.index);
            }
            let len = (r.body.end - r.body.start + INDEX) as u32;
            locs.push_back(Loc {
                seg: first,
                offset: r.offset,
                len,
            });
        }
        segs.push(RecoveredSegment {
            first,
            path,
            last: recs.last().map(|r| r.index),
            end: data_end,
            capacity: bytes.len() as u64,
        });
    }
    Ok(Recovered { segs, locs, base })
}

/// Zeroes a segment from `offset` to its last non-zero byte, so the cut tail reads as end of
/// data and a later scan finds nothing behind it.
fn cut_tail(path: &Path, bytes: &[u8], offset: u64, sync: bool) -> io::Result<()> {
    let start = offset as usize;
    let Some(last_nonzero) = bytes[start.min(bytes.len())..]
        .iter()
        .rposition(|&b| b != 0)
    else {
        return Ok(());
    };
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| files::with_path(path, e))?;
    files::zero_range(&f, offset, (start + last_nonzero + 1) as u64, false)
        .map_err(|e| files::with_path(path, e))?;
    if sync {
        f.sync_data().map_err(|e| files::with_path(path, e))?;
    }
    Ok(())
}
