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
//! Owns: the files in the snapshots directory, their integrity check and retention. Must not:
//! interpret meta or payload, or decide when to snapshot (openraft's policy does).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::wal::sync_dir;

const MAGIC: &[u8; 8] = b"CRLSNAP\0";
const VERSION: u32 = 1;
const PREFIX: &str = "snapshot.";

/// A snapshot read back from disk.
#[derive(Debug)]
pub struct LoadedSnapshot {
    pub index: u64,
    pub path: PathBuf,
    pub meta: Vec<u8>,
    pub payload: Vec<u8>,
}

/// The snapshot directory.
#[derive(Clone, Debug)]
pub struct SnapshotStore {
    dir: PathBuf,
}

fn with_path(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// File name of the snapshot whose last included entry has log index `index`.
pub fn snapshot_name(index: u64) -> String {
    format!("{PREFIX}{index:020}")
}

fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(PREFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

impl SnapshotStore {
    /// Opens `dir`, creating it, and removes temporary files a crash left behind.
    pub fn open(dir: impl Into<PathBuf>) -> io::Result<SnapshotStore> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|e| with_path(&dir, e))?;
        for ent in fs::read_dir(&dir).map_err(|e| with_path(&dir, e))? {
            let ent = ent.map_err(|e| with_path(&dir, e))?;
            let name = ent.file_name();
            if name.to_str().is_some_and(|n| n.ends_with(".tmp")) {
                let p = ent.path();
                fs::remove_file(&p).map_err(|e| with_path(&p, e))?;
            }
        }
        Ok(SnapshotStore { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
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

    pub fn path_of(&self, index: u64) -> PathBuf {
        self.dir.join(snapshot_name(index))
    }

    /// Reads and verifies one snapshot; the error names the file and what is wrong.
    pub fn load(&self, index: u64) -> Result<LoadedSnapshot, String> {
        let path = self.path_of(index);
        // Sized from the file up front: a growing buffer would copy a large snapshot several
        // times over, which dominates start-up on big trees.
        let mut bytes = Vec::new();
        File::open(&path)
            .and_then(|mut f| {
                let len = f.metadata().map(|m| m.len()).unwrap_or(0);
                bytes.reserve_exact(usize::try_from(len).unwrap_or(0));
                f.read_to_end(&mut bytes)
            })
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let bad =
            |off: usize, what: &str| format!("{}: {what} at byte offset {off}", path.display());
        let take = |at: usize, n: usize| -> Result<&[u8], String> {
            bytes
                .get(at..at.saturating_add(n))
                .ok_or_else(|| bad(at, "file ends early"))
        };
        if take(0, 8)? != MAGIC {
            return Err(bad(0, "not a corral snapshot (bad magic)"));
        }
        let u32_at = |at: usize| -> Result<u32, String> {
            let b = take(at, 4)?;
            Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        };
        let version = u32_at(8)?;
        if version != VERSION {
            return Err(bad(8, &format!("unsupported snapshot version {version}")));
        }
        let meta_len = u32_at(12)? as usize;
        let meta_crc = u32_at(16)?;
        let meta = take(20, meta_len)?;
        if crc32c::crc32c(meta) != meta_crc {
            return Err(bad(20, "metadata checksum mismatch"));
        }
        let at = 20 + meta_len;
        let pl = take(at, 8)?;
        let payload_len =
            u64::from_be_bytes([pl[0], pl[1], pl[2], pl[3], pl[4], pl[5], pl[6], pl[7]]);
        let payload_crc = u32_at(at + 8)?;
        let start = at + 12;
        let payload_len =
            usize::try_from(payload_len).map_err(|_| bad(at, "payload length too large"))?;
        let payload = take(start, payload_len)?;
        if start + payload_len != bytes.len() {
            return Err(bad(start + payload_len, "trailing bytes after the payload"));
        }
        if crc32c::crc32c(payload) != payload_crc {
            return Err(bad(start, "payload checksum mismatch"));
        }
        let meta = meta.to_vec();
        // The payload is the file's tail: drop the header in place instead of copying it out.
        bytes.drain(..start);
        Ok(LoadedSnapshot {
            index,
            meta,
            payload: bytes,
            path,
        })
    }

    /// Writes a snapshot durably (temp file, fsync, rename, fsync directory) and returns its
    /// size in bytes. On failure the temp file is removed and nothing else changes.
    pub fn write(&self, index: u64, meta: &[u8], payload: &[u8]) -> io::Result<u64> {
        let path = self.path_of(index);
        let tmp = self.dir.join(format!("{}.tmp", snapshot_name(index)));
        let meta_len = u32::try_from(meta.len()).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "snapshot metadata too large")
        })?;
        let r = (|| {
            let f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            let mut w = io::BufWriter::with_capacity(1 << 20, f);
            w.write_all(MAGIC)?;
            w.write_all(&VERSION.to_be_bytes())?;
            w.write_all(&meta_len.to_be_bytes())?;
            w.write_all(&crc32c::crc32c(meta).to_be_bytes())?;
            w.write_all(meta)?;
            w.write_all(&(payload.len() as u64).to_be_bytes())?;
            w.write_all(&crc32c::crc32c(payload).to_be_bytes())?;
            w.write_all(payload)?;
            let f = w.into_inner().map_err(|e| e.into_error())?;
            // A snapshot lets the log before it be deleted: it must be on disk before it is
            // published, whatever forceSync says.
            f.sync_all()?;
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
        Ok(20 + meta.len() as u64 + 12 + payload.len() as u64)
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
            match fs::remove_file(&p) {
                Ok(()) => tracing::info!(file = %p.display(), "purged old snapshot"),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(with_path(&p, e)),
            }
        }
        Ok(all.iter().take(retain.max(1)).next_back().copied())
    }

    /// Total bytes of the snapshot files present.
    pub fn total_bytes(&self) -> u64 {
        self.list()
            .unwrap_or_default()
            .iter()
            .filter_map(|&i| fs::metadata(self.path_of(i)).ok())
            .map(|m| m.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::tests::TestDir;

    #[test]
    fn write_load_retain() {
        let d = TestDir::new("snap");
        let s = SnapshotStore::open(d.path()).unwrap();
        for i in [5u64, 10, 15, 20] {
            s.write(i, format!("meta{i}").as_bytes(), &vec![i as u8; 1000])
                .unwrap();
        }
        assert!(d.path().join("snapshot.00000000000000000020").exists());
        assert_eq!(s.list().unwrap(), vec![20, 15, 10, 5]);
        let l = s.load(15).unwrap();
        assert_eq!(l.meta, b"meta15");
        assert_eq!(l.payload, vec![15u8; 1000]);
        assert_eq!(s.retain(3).unwrap(), Some(10));
        assert_eq!(s.list().unwrap(), vec![20, 15, 10]);

        // Damage is reported with file and offset.
        let p = s.path_of(20);
        let mut b = fs::read(&p).unwrap();
        let n = b.len();
        b[n - 1] ^= 1;
        fs::write(&p, &b).unwrap();
        let e = s.load(20).unwrap_err();
        assert!(
            e.contains("payload checksum") && e.contains(&p.display().to_string()),
            "{e}"
        );
        fs::write(&p, &b[..n / 2]).unwrap();
        assert!(s.load(20).unwrap_err().contains("ends early"));

        // Leftover temp files vanish on open.
        fs::write(d.path().join("snapshot.00000000000000000099.tmp"), b"x").unwrap();
        let s = SnapshotStore::open(d.path()).unwrap();
        assert_eq!(s.list().unwrap(), vec![20, 15, 10]);
    }
}
