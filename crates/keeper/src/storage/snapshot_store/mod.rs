//! Snapshot files: `<dataDir>/snapshots/snapshot.<last included log index, 20 digits>`.
//!
//! Format (all integers big-endian):
//!
//! ```text
//! magic "CRLSNAP\0" | version u32 (1) | meta length u32 | crc32c(meta) u32 | meta
//!   | payload length u64 | crc32c(payload) u32 | payload
//! ```
//!
//! `meta` is consensus's encoding of the last included log id and membership; `payload` is the
//! state machine hook's snapshot bytes. A snapshot is written to `<name>.tmp`, fsynced, renamed
//! and the directory fsynced, so a crash leaves either the whole file or none of it.
//!
//! One retired snapshot is kept as `snapshot.spare` and overwritten by the next snapshot
//! instead of a new file being allocated: see `SPARE`.
//!
//! Owns: the files in the snapshots directory, their integrity check and retention. Must not:
//! interpret meta or payload, or decide when to snapshot (openraft's policy does).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::wal::{parse_index, remove_gradually, sync_dir, with_path, write_paced, Throttle};

const MAGIC: &[u8; 8] = b"CRLSNAP\0";
const VERSION: u32 = 1;
const PREFIX: &str = "snapshot.";
/// Suffix of a purged snapshot being deleted.
const DOOMED: &str = ".deleting";
/// A retired snapshot kept for the next one to overwrite. Writing into blocks a file already
/// has costs the file system no allocation, and on a virtual disk whose freed blocks were
/// discarded, none on the host either. Measured (1M znodes, snapshots back to back, mixed
/// load, 3 interleaved pairs): p99.9 1,464 µs recycling vs 2,179 µs with a new file each time.
/// It costs one snapshot's worth of disk beyond `autopurge.snapRetainCount`.
const SPARE: &str = "snapshot.spare";

/// A snapshot read back from disk.
#[derive(Debug)]
pub struct LoadedSnapshot {
    pub index: u64,
    pub path: PathBuf,
    pub meta: Vec<u8>,
    /// The whole file, mapped; the payload is its tail from `payload_start`.
    bytes: MappedFile,
    payload_start: usize,
}

impl LoadedSnapshot {
    pub fn payload(&self) -> &[u8] {
        &self.bytes.bytes()[self.payload_start..]
    }
}

/// A snapshot file mapped read-only, its shared lock held for as long as the mapping lives.
/// Mapped rather than read: reading 200 MB into fresh memory cost a copy and a page fault per
/// 4 KB page, a quarter of the CPU time of restoring a million znodes; the mapping takes the
/// page cache's pages as they are (populated at once, so decoding takes no faults).
#[derive(Debug)]
struct MappedFile {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
    /// Holds the shared lock ([`open_for_reading`]) that keeps corral from recycling the file.
    _file: File,
}

// SAFETY: the mapping is read-only and owned by this value alone; `&[u8]` into it may be used
// from any thread, like any shared immutable bytes.
unsafe impl Send for MappedFile {}
// SAFETY: as above; no method mutates through `&self`.
unsafe impl Sync for MappedFile {}

impl MappedFile {
    fn map(file: File) -> io::Result<MappedFile> {
        use std::os::fd::AsRawFd;
        let len = usize::try_from(file.metadata()?.len())
            .map_err(|_| io::Error::other("file too large to map"))?;
        if len == 0 {
            // mmap refuses a length of 0; nothing to map.
            return Ok(MappedFile {
                ptr: std::ptr::NonNull::dangling(),
                len,
                _file: file,
            });
        }
        #[cfg(target_os = "linux")]
        let flags = libc::MAP_PRIVATE | libc::MAP_POPULATE;
        #[cfg(not(target_os = "linux"))]
        let flags = libc::MAP_PRIVATE;
        // SAFETY: a fresh read-only private mapping of `len` bytes of an open descriptor,
        // at an address the kernel picks: it aliases no memory of ours. Failure is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                flags,
                file.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = std::ptr::NonNull::new(p.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap returned a null address"))?;
        Ok(MappedFile {
            ptr,
            len,
            _file: file,
        })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` maps `len` readable bytes (or is dangling with `len` 0) until `drop`,
        // and the slice cannot outlive `self`. The bytes do not change under it: corral
        // writes a snapshot file only to a new name or as the recycled spare, and recycles
        // a retired snapshot only after taking its lock exclusively (`keep_as_spare`),
        // which this value's shared lock prevents; deleting old snapshots (truncating them
        // in steps) happens after a snapshot is written, never during recovery, the only
        // user of a mapping. Another process writing or truncating the data dir's files
        // would break this, as it would break the snapshot's checksums.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for MappedFile {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: exactly the mapping made in `map`, unmapped once; no slice of it
            // outlives `self`.
            unsafe {
                libc::munmap(self.ptr.as_ptr().cast(), self.len);
            }
        }
    }
}

/// The encoder's output is gathered to this much before it is written (in PACE_BYTES
/// pieces): alternating between encoding and waiting on the disk every piece measured worse.
const GATHER_BYTES: usize = 4 << 20;

/// Why [`SnapshotStore::load`] refused a snapshot file. Each names the file; damage names the
/// byte offset where it was found.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotLoadError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: {damage} at byte offset {offset}", path.display())]
    Damaged {
        path: PathBuf,
        offset: u64,
        damage: Damage,
    },
}

/// What is wrong with a snapshot file's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Damage {
    #[error("file ends early")]
    EndsEarly,
    #[error("not a corral snapshot (bad magic)")]
    BadMagic,
    #[error("unsupported snapshot version {0}")]
    Version(u32),
    #[error("metadata checksum mismatch")]
    MetaChecksum,
    #[error("payload length too large")]
    PayloadTooLarge,
    #[error("trailing bytes after the payload")]
    TrailingBytes,
    #[error("payload checksum mismatch")]
    PayloadChecksum,
}

/// The snapshot directory.
#[derive(Clone, Debug)]
pub struct SnapshotStore {
    dir: PathBuf,
    /// Bytes per second a snapshot is written at most (`snapshot.maxWriteMBps`); None: as
    /// fast as the disk takes them.
    write_rate: Option<u64>,
}

/// File name of the snapshot whose last included entry has log index `index`.
pub fn snapshot_name(index: u64) -> String {
    format!("{PREFIX}{index:020}")
}

fn parse_name(name: &str) -> Option<u64> {
    name.strip_prefix(PREFIX).and_then(parse_index)
}

impl SnapshotStore {
    /// Opens `dir`, creating it, and removes temporary files a crash left behind.
    pub fn open(dir: impl Into<PathBuf>) -> io::Result<SnapshotStore> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|e| with_path(&dir, e))?;
        for ent in fs::read_dir(&dir).map_err(|e| with_path(&dir, e))? {
            let ent = ent.map_err(|e| with_path(&dir, e))?;
            let name = ent.file_name();
            // Left by a crash: half-written snapshots, half-deleted old ones.
            if name
                .to_str()
                .is_some_and(|n| n.ends_with(".tmp") || n.ends_with(DOOMED))
            {
                let p = ent.path();
                fs::remove_file(&p).map_err(|e| with_path(&p, e))?;
            }
        }
        Ok(SnapshotStore {
            dir,
            write_rate: None,
        })
    }

    /// Writes snapshots at no more than `bytes_per_sec` (None: unthrottled).
    pub fn with_write_rate(mut self, bytes_per_sec: Option<u64>) -> SnapshotStore {
        self.write_rate = bytes_per_sec;
        self
    }

    /// Indexes of the snapshot files present, newest first.
    pub fn list(&self) -> io::Result<Vec<u64>> {
        let mut v = Vec::new();
        for ent in fs::read_dir(&self.dir).map_err(|e| with_path(&self.dir, e))? {
            let ent = ent.map_err(|e| with_path(&self.dir, e))?;
            if let Some(i) = ent.file_name().to_str().and_then(parse_name) {
                v.push(i);
            }
        }
        v.sort_unstable_by(|a, b| b.cmp(a));
        Ok(v)
    }

    /// Where a snapshot from the leader is received; a crash leaves it to [`Self::open`]'s
    /// clean-up (`.tmp`).
    pub fn receiving_path(&self) -> PathBuf {
        self.dir.join("snapshot.receiving.tmp")
    }

    pub fn path_of(&self, index: u64) -> PathBuf {
        self.dir.join(snapshot_name(index))
    }

    /// Reads and verifies one snapshot; the error names the file and what is wrong.
    pub fn load(&self, index: u64) -> Result<LoadedSnapshot, SnapshotLoadError> {
        let path = self.path_of(index);
        let mapped = match open_for_reading(&path).and_then(MappedFile::map) {
            Ok(m) => m,
            Err(source) => return Err(SnapshotLoadError::Io { path, source }),
        };
        let bytes = mapped.bytes();
        let bad = |offset: usize, damage: Damage| SnapshotLoadError::Damaged {
            path: path.clone(),
            offset: offset as u64,
            damage,
        };
        let take = |at: usize, n: usize| -> Result<&[u8], SnapshotLoadError> {
            bytes
                .get(at..at.saturating_add(n))
                .ok_or_else(|| bad(at, Damage::EndsEarly))
        };
        if take(0, 8)? != MAGIC {
            return Err(bad(0, Damage::BadMagic));
        }
        let u32_at = |at: usize| -> Result<u32, SnapshotLoadError> {
            let b = take(at, 4)?;
            Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        };
        let version = u32_at(8)?;
        if version != VERSION {
            return Err(bad(8, Damage::Version(version)));
        }
        let meta_len = u32_at(12)? as usize;
        let meta_crc = u32_at(16)?;
        let meta = take(20, meta_len)?;
        if crc32c::crc32c(meta) != meta_crc {
            return Err(bad(20, Damage::MetaChecksum));
        }
        let at = 20 + meta_len;
        let pl = take(at, 8)?;
        let payload_len =
            u64::from_be_bytes([pl[0], pl[1], pl[2], pl[3], pl[4], pl[5], pl[6], pl[7]]);
        let payload_crc = u32_at(at + 8)?;
        let start = at + 12;
        let payload_len =
            usize::try_from(payload_len).map_err(|_| bad(at, Damage::PayloadTooLarge))?;
        let payload = take(start, payload_len)?;
        if start + payload_len != bytes.len() {
            return Err(bad(start + payload_len, Damage::TrailingBytes));
        }
        if crc32c::crc32c(payload) != payload_crc {
            return Err(bad(start, Damage::PayloadChecksum));
        }
        let meta = meta.to_vec();
        Ok(LoadedSnapshot {
            index,
            meta,
            bytes: mapped,
            payload_start: start,
            path,
        })
    }

    /// Opens a snapshot file positioned at its payload, without reading the payload, for
    /// streaming it (to a follower that needs it); returns the file and the payload's offset.
    /// The checksums are not verified here: the receiver decodes and checks what it gets.
    pub fn open_payload(&self, index: u64) -> io::Result<(File, u64)> {
        let path = self.path_of(index);
        let mut f = open_for_reading(&path).map_err(|e| with_path(&path, e))?;
        let mut head = [0u8; 20];
        f.read_exact(&mut head).map_err(|e| with_path(&path, e))?;
        if &head[..8] != MAGIC {
            return Err(with_path(
                &path,
                io::Error::new(io::ErrorKind::InvalidData, "not a corral snapshot"),
            ));
        }
        let meta_len = u64::from(u32::from_be_bytes([head[12], head[13], head[14], head[15]]));
        let start = 20 + meta_len + 12;
        f.seek(io::SeekFrom::Start(start))
            .map_err(|e| with_path(&path, e))?;
        Ok((f, start))
    }

    /// Writes a snapshot durably (temp file, fsync, rename, fsync directory) and returns its
    /// size in bytes. On failure the temp file is removed and nothing else changes. (The
    /// keeper streams with [`SnapshotStore::write_with`]; this whole-buffer form is for tests.)
    #[cfg(test)]
    pub fn write(&self, index: u64, meta: &[u8], payload: &[u8]) -> io::Result<u64> {
        self.write_with(index, meta, |sink| {
            payload.chunks(super::wal::PACE_BYTES).try_for_each(sink)
        })
    }

    /// Writes a snapshot durably (temp file, fsync, rename, fsync directory), the payload
    /// streamed: `produce` hands it to the sink in pieces, each written out and paced
    /// (`write_paced`) as it comes, so a large payload is never whole in memory. Length and checksum are filled in at the end.
    pub fn write_with(
        &self,
        index: u64,
        meta: &[u8],
        produce: impl FnOnce(&mut dyn FnMut(&[u8]) -> io::Result<()>) -> io::Result<()>,
    ) -> io::Result<u64> {
        use std::os::unix::fs::FileExt;
        let path = self.path_of(index);
        let tmp = self.dir.join(format!("{}.tmp", snapshot_name(index)));
        let meta_len = u32::try_from(meta.len()).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "snapshot metadata too large")
        })?;
        let mut payload_len = 0u64;
        let r = (|| {
            let recycled = fs::rename(self.dir.join(SPARE), &tmp).is_ok();
            let f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(!recycled)
                .open(&tmp)?;
            let mut head = Vec::with_capacity(32 + meta.len());
            head.extend_from_slice(MAGIC);
            head.extend_from_slice(&VERSION.to_be_bytes());
            head.extend_from_slice(&meta_len.to_be_bytes());
            head.extend_from_slice(&crc32c::crc32c(meta).to_be_bytes());
            head.extend_from_slice(meta);
            let len_at = head.len() as u64;
            // Length and checksum, known only at the end.
            head.extend_from_slice(&[0; 12]);
            let mut offset = 0u64;
            let mut crc = 0u32;
            // Written in whole GATHER_BYTES from the start of the file (the header begins the
            // first), so every flushed piece covers whole pages, and never a sliver: the
            // encoder's pieces are a little over or under any given size.
            let mut pending = head;
            pending.reserve(2 * GATHER_BYTES);
            let mut throttle = self.write_rate.map(Throttle::new);
            produce(&mut |chunk: &[u8]| {
                crc = crc32c::crc32c_append(crc, chunk);
                payload_len += chunk.len() as u64;
                pending.extend_from_slice(chunk);
                let whole = pending.len() / GATHER_BYTES * GATHER_BYTES;
                if whole > 0 {
                    write_paced(&f, offset, &pending[..whole], throttle.as_mut())?;
                    offset += whole as u64;
                    pending.drain(..whole);
                }
                Ok(())
            })?;
            write_paced(&f, offset, &pending, throttle.as_mut())?;
            // A recycled file may be longer than this snapshot.
            f.set_len(offset + pending.len() as u64)?;
            let mut tail = [0u8; 12];
            tail[..8].copy_from_slice(&payload_len.to_be_bytes());
            tail[8..].copy_from_slice(&crc.to_be_bytes());
            f.write_all_at(&tail, len_at)?;
            // A snapshot lets the log before it be deleted: it must be on disk before it is
            // published, whatever forceSync says. fdatasync is enough (data, size, blocks:
            // all that reading it back needs) and spares a recycled file, whose size and
            // blocks rarely change, the journal commit its new mtime would cost: every log
            // fsync waiting behind that commit.
            fail::fail_point!("snapshot-write", |_| Err(io::Error::other(
                "snapshot write failed (injected by failpoint snapshot-write)"
            )));
            f.sync_data()?;
            fs::rename(&tmp, &path)
        })();
        if let Err(e) = r {
            let _ = fs::remove_file(&tmp);
            return Err(with_path(&path, e));
        }
        if let Err(e) = sync_dir(&self.dir) {
            // Without the directory fsync the rename might not survive a crash; treat the
            // snapshot as not written so no log is deleted on its account.
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        Ok(20 + meta.len() as u64 + 12 + payload_len)
    }

    /// Renames a damaged snapshot to `<name>.corrupt`: kept for inspection, no longer counted
    /// or loaded.
    pub fn set_aside(&self, index: u64) {
        let p = self.path_of(index);
        let to = self.dir.join(format!("{}.corrupt", snapshot_name(index)));
        if let Err(e) = fs::rename(&p, &to) {
            tracing::warn!("cannot set aside {}: {e}", p.display());
        }
    }

    /// Deletes all but the newest `retain` snapshots; returns the index of the oldest one kept.
    pub fn retain(&self, retain: usize) -> io::Result<Option<u64>> {
        let all = self.list()?;
        for &old in all.iter().skip(retain.max(1)) {
            let p = self.path_of(old);
            // Out of the snapshot names first: from here on recovery never considers it.
            let doomed = self.dir.join(format!("{}{DOOMED}", snapshot_name(old)));
            match fs::rename(&p, &doomed) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(with_path(&p, e)),
            }
            if self.keep_as_spare(&doomed) {
                tracing::info!(file = %p.display(), "purged old snapshot (kept as the spare)");
            } else {
                remove_gradually(&doomed)?;
                tracing::info!(file = %p.display(), "purged old snapshot");
            }
        }
        Ok(all.iter().take(retain.max(1)).next_back().copied())
    }

    /// Makes a retired snapshot (already out of the snapshot names) the spare, unless there
    /// is one or somebody is reading it: overwriting it would change what they read. Readers
    /// hold a shared lock ([`open_for_reading`]); while this holds the exclusive one, no reader
    /// can start, and one that opened the file just before sees its name gone and gives up.
    fn keep_as_spare(&self, retired: &Path) -> bool {
        let spare = self.dir.join(SPARE);
        if spare.exists() {
            return false;
        }
        let Ok(f) = File::open(retired) else {
            return false;
        };
        if f.try_lock().is_err() {
            return false;
        }
        fs::rename(retired, &spare).is_ok()
    }

    /// Total bytes of the snapshot files present, the spare included.
    pub fn total_bytes(&self) -> u64 {
        self.list()
            .unwrap_or_default()
            .iter()
            .map(|&i| self.path_of(i))
            .chain([self.dir.join(SPARE)])
            .filter_map(|p| fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }
}

/// Opens a snapshot to read it, with a shared lock held while the file is open, so that
/// retention never turns it into the spare meanwhile. A file retired between the open and the
/// lock is reported as not found: its name is gone, or names another file.
fn open_for_reading(path: &Path) -> io::Result<File> {
    let f = File::open(path)?;
    f.lock_shared()?;
    let opened = f.metadata()?;
    match fs::metadata(path) {
        Ok(now) if now.ino() == opened.ino() && now.dev() == opened.dev() => Ok(f),
        Ok(_) | Err(_) => Err(io::Error::new(
            io::ErrorKind::NotFound,
            "the snapshot was purged while being opened",
        )),
    }
}

#[cfg(test)]
mod tests;
