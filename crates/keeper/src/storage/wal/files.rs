//! Small durable files (the raft vote, the committed index), the directory fsync that makes
//! a create, rename or delete survive power loss, the gentle deletion of large files, and the
//! helpers the WAL and the snapshot store share (error paths, the log index in file names).
//!
//! Owns: the write-temp, fsync, rename, fsync-directory sequence and a checksummed framing for
//! small values. Must not: know what the values mean (consensus encodes them).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Adds the path to an I/O error, so every message names its file.
pub(crate) fn with_path(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// The log index in a file name: exactly 20 decimal digits (`{:020}`), so names sort by index.
pub(crate) fn parse_index(digits: &str) -> Option<u64> {
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// How much bulk data (a snapshot, a segment's zeros) may be written ahead of the disk before
/// the writer waits for it. Every log fsync issued meanwhile queues behind the piece in flight;
/// written whole and fsynced at the end, 64 MiB of preallocated zeros stalled requests for
/// ~120 ms. Measured on a virtio disk (1M znodes, mixed 90/10 load, snapshots back to back),
/// p99.9 over idle: 4 MB pieces 2.5-3x, 1 MB 1.1-1.3x on one day and 1.7-2.5x on another,
/// 512 KB 1.15-1.35x on both, 256 KB no better than 512 KB.
pub(crate) const PACE_BYTES: usize = 512 << 10;

/// Piece size of a throttled writer. At 100 MB/s, p99.9 of requests sent during snapshots over
/// the rest of the run (1M znodes, interleaved runs): 512 KB pieces 2.26x, 1.64x; 128 KB 1.51x,
/// 1.15x; 64 KB 0.80x, 1.46x. Each log fsync carries at most one piece's flush, so smaller
/// pieces spread the same bytes over more fsyncs in smaller shares.
const THROTTLED_PIECE_BYTES: usize = 128 << 10;

/// Holds a bulk writer to a rate in bytes per second, averaged from its first byte: a log
/// fsync issued while bulk data is being flushed waits for it, so the fewer bulk bytes per
/// second, the less each fsync waits. Measured with 1M znodes (a 208 MB snapshot, 8 clients of
/// a 90/10 get/set load): the p99 of writes sent while a snapshot was being written was about
/// 2x that of the rest of the run unthrottled, the same as the rest at 100 MB/s.
pub(crate) struct Throttle {
    started: std::time::Instant,
    bytes: u64,
    bytes_per_sec: u64,
}

impl Throttle {
    pub(crate) fn new(bytes_per_sec: u64) -> Throttle {
        Throttle {
            started: std::time::Instant::now(),
            bytes: 0,
            bytes_per_sec: bytes_per_sec.max(1),
        }
    }

    /// Counts `n` bytes written and sleeps until they are due at the rate.
    fn wrote(&mut self, n: usize) {
        self.bytes += n as u64;
        let due = std::time::Duration::from_secs_f64(self.bytes as f64 / self.bytes_per_sec as f64);
        if let Some(rest) = due.checked_sub(self.started.elapsed()) {
            std::thread::sleep(rest);
        }
    }
}

/// Writes `data` at `offset` in PACE_BYTES pieces, each flushed to the disk before the next
/// is written, so the final fsync has little left to do and nothing waits behind a long flush;
/// with a throttle, in THROTTLED_PIECE_BYTES pieces and no faster than its rate.
pub(crate) fn write_paced(
    f: &File,
    mut offset: u64,
    data: &[u8],
    mut throttle: Option<&mut Throttle>,
) -> io::Result<()> {
    let piece_bytes = if throttle.is_some() {
        THROTTLED_PIECE_BYTES
    } else {
        PACE_BYTES
    };
    for piece in data.chunks(piece_bytes) {
        f.write_all_at(piece, offset)?;
        flush_range(f, offset, piece.len())?;
        if let Some(t) = throttle.as_deref_mut() {
            t.wrote(piece.len());
        }
        offset += piece.len() as u64;
    }
    Ok(())
}

/// Starts write-back of `offset..offset+len` and waits for it. Not a durability barrier (no
/// device cache flush, no metadata): only pacing; the fsync that follows makes it durable.
#[cfg(target_os = "linux")]
fn flush_range(f: &File, offset: u64, len: usize) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
        | libc::SYNC_FILE_RANGE_WRITE
        | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    let (Ok(offset), Ok(len)) = (
        libc::off64_t::try_from(offset),
        libc::off64_t::try_from(len),
    ) else {
        return Ok(());
    };
    // SAFETY: sync_file_range only reads the descriptor, which `f` keeps open for the call;
    // it touches no memory of ours.
    let r = unsafe { libc::sync_file_range(f.as_raw_fd(), offset, len, flags) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Elsewhere the final fsync does all the work.
#[cfg(not(target_os = "linux"))]
fn flush_range(_: &File, _: u64, _: usize) -> io::Result<()> {
    Ok(())
}

/// Writes zeros over bytes `start..end` of `f` a piece at a time (a range as large as a whole
/// segment must not need a buffer its size); `paced` flushes each piece as [`write_paced`] does.
pub(crate) fn zero_range(f: &File, start: u64, end: u64, paced: bool) -> io::Result<()> {
    let zeros = vec![0u8; end.saturating_sub(start).min(PACE_BYTES as u64) as usize];
    let mut at = start;
    while at < end {
        let n = (end - at).min(PACE_BYTES as u64) as usize;
        if paced {
            write_paced(f, at, &zeros[..n], None)?;
        } else {
            f.write_all_at(&zeros[..n], at)?;
        }
        at += n as u64;
    }
    Ok(())
}

/// Makes the directory entries of `dir` (creates, renames, deletes) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| with_path(dir, e))
}

/// Deletes a large file a few megabytes at a time. Unlinked at once, a file of hundreds of
/// megabytes frees (and, on a filesystem mounted with `discard`, trims) all its blocks in one
/// journal commit, and every write-ahead-log fsync waiting on that commit stalls for tens of
/// milliseconds (measured: 40 ms for a 200 MB snapshot). Truncated in steps with pauses, each
/// commit frees a little. The caller must have renamed the file out of any name it is known
/// by first, so a crash half way leaves only a leftover to sweep, never a short live file.
/// Runs for a while: call it from a background thread.
pub fn remove_gradually(path: &Path) -> io::Result<()> {
    const STEP: u64 = 4 << 20;
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| with_path(path, e))?;
    let mut len = f.metadata().map_err(|e| with_path(path, e))?.len();
    while len > STEP {
        len -= STEP;
        f.set_len(len).map_err(|e| with_path(path, e))?;
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    drop(f);
    fs::remove_file(path).map_err(|e| with_path(path, e))
}

/// Replaces `path` with `bytes` atomically: a reader sees the old or the new content, never a
/// mix. With `durable`, the new content is on disk when this returns; without, it may be lost
/// on power failure (the old content then survives), which suits values that are only hints.
pub fn write_atomic(path: &Path, bytes: &[u8], durable: bool) -> io::Result<()> {
    let tmp = tmp_path(path);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        if durable {
            // The data must be on disk before the rename publishes it, or a crash could leave
            // the new name pointing at an empty file.
            f.sync_all()?;
        }
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(with_path(path, e));
    }
    if durable {
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
    }
    Ok(())
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

/// Frames a small value as `length u32 BE | crc32c u32 BE | payload`, the WAL's record framing.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + payload.len());
    // Small values only (a vote, a log id): far below 4 GiB.
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Reads a file written with [`frame`]: `Ok(None)` if it does not exist, an error naming the
/// file if it is damaged.
pub fn read_framed(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(with_path(path, e)),
    };
    let bad = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {what} (file is {} bytes)", path.display(), bytes.len()),
        )
    };
    if bytes.len() < 8 {
        return Err(bad("too short for its header at byte offset 0"));
    }
    let len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let crc = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    if bytes.len() != 8 + len {
        return Err(bad(&format!(
            "header says {len} payload bytes at byte offset 8"
        )));
    }
    let payload = &bytes[8..];
    if crc32c::crc32c(payload) != crc {
        return Err(bad("checksum mismatch at byte offset 8"));
    }
    Ok(Some(payload.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_file_is_removed_in_steps() {
        let dir = crate::storage::wal::tests::TestDir::new("files-gradual");
        let p = dir.path().join("big");
        let f = File::create(&p).unwrap();
        f.set_len(9 << 20).unwrap();
        drop(f);
        remove_gradually(&p).unwrap();
        assert!(!p.exists());
        let e = remove_gradually(&p).unwrap_err();
        assert!(e.to_string().contains("big"), "{e}");
    }

    #[test]
    fn zero_range_spans_chunks_and_touches_nothing_else() {
        let dir = crate::storage::wal::tests::TestDir::new("files-zero");
        let p = dir.path().join("z");
        let len = (3 << 20) + 100;
        fs::write(&p, vec![7u8; len]).unwrap();
        let f = OpenOptions::new().write(true).open(&p).unwrap();
        let mid = len as u64 / 2 + 3;
        zero_range(&f, 10, mid, true).unwrap();
        zero_range(&f, mid, len as u64 - 10, false).unwrap();
        zero_range(&f, 5, 5, true).unwrap();
        let b = fs::read(&p).unwrap();
        assert_eq!(b.len(), len);
        assert!(b[..10].iter().chain(&b[len - 10..]).all(|&x| x == 7));
        assert!(b[10..len - 10].iter().all(|&x| x == 0));
    }

    #[test]
    fn framed_round_trip_and_damage() {
        let dir = crate::storage::wal::tests::TestDir::new("files");
        let p = dir.path().join("v");
        assert!(read_framed(&p).unwrap().is_none());
        write_atomic(&p, &frame(b"hello"), true).unwrap();
        assert_eq!(read_framed(&p).unwrap().unwrap(), b"hello");
        let mut b = fs::read(&p).unwrap();
        b[9] ^= 0xff;
        fs::write(&p, &b).unwrap();
        let e = read_framed(&p).unwrap_err();
        assert!(e.to_string().contains("checksum"), "{e}");
        assert!(e.to_string().contains(&p.display().to_string()));
    }
}
