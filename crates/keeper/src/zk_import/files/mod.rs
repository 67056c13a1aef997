//! ZooKeeper's on-disk formats (3.4 to 3.9), read only: which files of `version-2` matter,
//! snapshots (`snapshot.<hex zxid>`) and transaction logs (`log.<hex zxid>`), parsed into
//! values for [`super::replay`]. Every error names the file and the byte offset.
//!
//! Snapshot: FileHeader (magic "ZKSN", version, dbid), session count and (id, timeout)
//! pairs, the ACL cache (count, then id and ACL vector), then (path, DataNode{data, acl id,
//! StatPersisted}) records until the path "/", then the Adler32 of every byte so far as a
//! long and the string "/"; 3.6+ may add a ZxidDigest followed by a second such seal.
//! Log: FileHeader (magic "ZKLG"), then records of checksum (Adler32 as a long), length,
//! TxnHeader and txn bytes, and the byte 'B'; zeros (preallocation) end the log.
//!
//! Here: which files matter, the reader whose errors name file and offset, Adler32 and the
//! opcodes; the snapshot format is parsed in `snapshot`, the log in `txnlog`.

use std::path::{Path, PathBuf};

use corral_proto::{DecodeError, Reader};

use super::ImportError;

mod snapshot;
mod txnlog;

#[cfg(test)]
pub(crate) use snapshot::SnapNode;
pub(crate) use snapshot::{
    parse_snapshot, snapshot_content, snapshot_looks_complete, Snapshot, StatPersisted,
};
pub(crate) use txnlog::{LogEnd, LogReader, Txn, TxnHeader};

/// ZooKeeper's opcodes as they appear in TxnHeader.type and in a multi's sub-txns.
pub(crate) mod op {
    pub const ERROR: i32 = -1;
    pub const CREATE: i32 = 1;
    pub const DELETE: i32 = 2;
    pub const SET_DATA: i32 = 5;
    pub const SET_ACL: i32 = 7;
    pub const CHECK: i32 = 13;
    pub const MULTI: i32 = 14;
    pub const CREATE2: i32 = 15;
    pub const RECONFIG: i32 = 16;
    pub const CREATE_CONTAINER: i32 = 19;
    pub const DELETE_CONTAINER: i32 = 20;
    pub const CREATE_TTL: i32 = 21;
    pub const CREATE_SESSION: i32 = -10;
    pub const CLOSE_SESSION: i32 = -11;
}

/// The files of one or two `version-2` directories, by zxid.
#[derive(Debug, Default)]
pub(crate) struct ZkFiles {
    /// (zxid in the name, path), newest first.
    pub snapshots: Vec<(i64, PathBuf)>,
    /// (first zxid in the name, path), oldest first.
    pub logs: Vec<(i64, PathBuf)>,
}

/// `prefix.<hex>` or `prefix.<hex>.<suffix>` (compressed snapshots): the zxid.
fn zxid_in_name(name: &str, prefix: &str) -> Option<i64> {
    let rest = name.strip_prefix(prefix)?.strip_prefix('.')?;
    let hex = rest.split('.').next()?;
    u64::from_str_radix(hex, 16).ok().map(|z| z as i64)
}

impl ZkFiles {
    /// Lists snapshots in `snap_dir` and logs in `log_dir` (both `.../version-2`).
    pub fn scan(snap_dir: &Path, log_dir: &Path) -> Result<ZkFiles, ImportError> {
        let mut files = ZkFiles::default();
        for (dir, snaps) in [(snap_dir, true), (log_dir, false)] {
            let rd = match std::fs::read_dir(dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(ImportError::io(dir, e)),
            };
            for ent in rd {
                let ent = ent.map_err(|e| ImportError::io(dir, e))?;
                let Some(name) = ent.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                if snaps {
                    if let Some(z) = zxid_in_name(&name, "snapshot") {
                        files.snapshots.push((z, ent.path()));
                    }
                }
                // Logs only from the log dir (which may be the snapshot dir too).
                if !snaps {
                    if let Some(z) = zxid_in_name(&name, "log") {
                        files.logs.push((z, ent.path()));
                    }
                }
            }
        }
        files.snapshots.sort_by_key(|s| std::cmp::Reverse(s.0));
        files.logs.sort_by_key(|l| l.0);
        Ok(files)
    }

    pub fn is_empty(&self) -> bool {
        self.snapshots.is_empty() && self.logs.is_empty()
    }
}

/// Adler32 (java.util.zip.Adler32), which ZooKeeper uses for snapshot and log checksums.
pub(crate) fn adler32(bytes: &[u8]) -> u32 {
    const MOD: u32 = 65521;
    let (mut a, mut b) = (1u32, 0u32);
    // 5552 bytes is the most that can be summed before the u32s could overflow.
    for chunk in bytes.chunks(5552) {
        for &x in chunk {
            a += u32::from(x);
            b += a;
        }
        a %= MOD;
        b %= MOD;
    }
    (b << 16) | a
}

/// A jute reader over one file's bytes whose errors say file and offset.
pub(crate) struct FileReader<'a> {
    pub file: &'a Path,
    /// The bytes are a compressed file's content: offsets are in that, not in the file.
    pub decompressed: bool,
    /// Offset of `r`'s first byte in the file.
    base: usize,
    pub r: Reader<'a>,
}

impl<'a> FileReader<'a> {
    pub fn new(file: &'a Path, bytes: &'a [u8], base: usize) -> Self {
        FileReader {
            file,
            decompressed: false,
            base,
            r: Reader::new(bytes),
        }
    }

    /// Offset in the file of the next byte to read.
    pub fn offset(&self) -> usize {
        self.base + self.r.position()
    }

    pub fn corrupt(&self, offset: usize, what: impl Into<String>) -> ImportError {
        let mut what = what.into();
        if self.decompressed {
            what.push_str(" (offset in the decompressed data)");
        }
        ImportError::Corrupt {
            file: self.file.to_path_buf(),
            offset: offset as u64,
            what,
        }
    }

    /// Runs one read; a decoding error becomes a Corrupt naming the file and the offset
    /// where the read began.
    pub fn read<T>(
        &mut self,
        what: &str,
        f: impl FnOnce(&mut Reader<'a>) -> Result<T, DecodeError>,
    ) -> Result<T, ImportError> {
        let at = self.offset();
        f(&mut self.r).map_err(|e| self.corrupt(at, format!("{what}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adler32_matches_known_values() {
        // zlib's test vectors.
        assert_eq!(adler32(b""), 1);
        assert_eq!(adler32(b"a"), 0x0062_0062);
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
        let big = vec![0xffu8; 100_000];
        // Computed the slow way, one modulo per byte.
        let (mut a, mut b) = (1u64, 0u64);
        for &x in &big {
            a = (a + u64::from(x)) % 65521;
            b = (b + a) % 65521;
        }
        assert_eq!(adler32(&big), ((b << 16) | a) as u32);
    }

    #[test]
    fn names_give_zxids() {
        assert_eq!(zxid_in_name("snapshot.1a", "snapshot"), Some(0x1a));
        assert_eq!(zxid_in_name("snapshot.1a.gz", "snapshot"), Some(0x1a));
        assert_eq!(zxid_in_name("log.100000001", "log"), Some(0x1_0000_0001));
        assert_eq!(zxid_in_name("logx.1", "log"), None);
        assert_eq!(zxid_in_name("log.zz", "log"), None);
        assert_eq!(zxid_in_name("snapshot.1a", "log"), None);
    }
}
