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

use std::path::{Path, PathBuf};

use corral_proto::{Acl, DecodeError, Reader};

use super::{compress, ImportError};

const SNAP_MAGIC: &[u8; 4] = b"ZKSN";
const LOG_MAGIC: &[u8; 4] = b"ZKLG";

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

/// A node record of a snapshot.
pub(crate) struct SnapNode {
    pub path: String,
    pub data: Option<Vec<u8>>,
    pub acl_ref: i64,
    pub stat: StatPersisted,
}

/// ZooKeeper's StatPersisted: what a znode keeps besides data and ACL. `cversion` counts
/// child creations (a client sees `2 * cversion - numChildren`), as corral stores it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct StatPersisted {
    pub czxid: i64,
    pub mzxid: i64,
    pub ctime: i64,
    pub mtime: i64,
    pub version: i32,
    pub cversion: i32,
    pub aversion: i32,
    pub ephemeral_owner: i64,
    pub pzxid: i64,
}

fn read_stat(r: &mut Reader<'_>) -> Result<StatPersisted, DecodeError> {
    Ok(StatPersisted {
        czxid: r.i64()?,
        mzxid: r.i64()?,
        ctime: r.i64()?,
        mtime: r.i64()?,
        version: r.i32()?,
        cversion: r.i32()?,
        aversion: r.i32()?,
        ephemeral_owner: r.i64()?,
        pzxid: r.i64()?,
    })
}

/// A parsed snapshot.
pub(crate) struct Snapshot {
    /// Session id and timeout.
    pub sessions: Vec<(i64, i32)>,
    /// ACL cache: id and list.
    pub acls: Vec<(i64, Vec<Acl>)>,
    /// In file order (each parent before its children).
    pub nodes: Vec<SnapNode>,
}

/// Whether a snapshot ends as a complete one does (ZooKeeper's own validity test: the last
/// five bytes are the length 1 and "/" of the seal's path). A crash while ZooKeeper wrote
/// it leaves one that fails, and ZooKeeper then uses the one before.
pub(crate) fn snapshot_looks_complete(bytes: &[u8]) -> bool {
    bytes.len() >= 10 && bytes[bytes.len() - 5..] == [0, 0, 0, 1, b'/']
}

/// A snapshot's bytes as ZooKeeper serialised them: decompressed when it was written with
/// `zookeeper.snapshot.compression.method` (gz or snappy). A file cut short (ZooKeeper
/// stopped while writing it) is `Ok(None)`, like an uncompressed one without its seal.
pub(crate) fn snapshot_content(
    file: &Path,
    bytes: Vec<u8>,
) -> Result<Option<(Vec<u8>, bool)>, ImportError> {
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let method = compress::method(name, &bytes);
    let out = match method {
        compress::Method::None => return Ok(Some((bytes, false))),
        compress::Method::Gzip => compress::gzip(&bytes),
        compress::Method::Snappy => compress::snappy_stream(&bytes),
    };
    match out {
        Ok(content) => Ok(Some((content, true))),
        Err(b) if b.truncated => Ok(None),
        Err(b) => Err(ImportError::Corrupt {
            file: file.to_path_buf(),
            offset: b.offset as u64,
            what: format!(
                "{} data: {}",
                if method == compress::Method::Gzip {
                    "gzip"
                } else {
                    "snappy"
                },
                b.what
            ),
        }),
    }
}

/// Parses a whole snapshot (decompressed: `decompressed` says so, and error offsets are
/// then in the decompressed data) and checks its checksum(s).
pub(crate) fn parse_snapshot(
    file: &Path,
    bytes: &[u8],
    decompressed: bool,
) -> Result<Snapshot, ImportError> {
    let mut f = FileReader::new(file, bytes, 0);
    f.decompressed = decompressed;
    let magic = f.read("file header", |r| r.take(4))?;
    if magic != SNAP_MAGIC {
        return Err(f.corrupt(0, "not a ZooKeeper snapshot (magic is not ZKSN)"));
    }
    let version = f.read("file header", |r| r.i32())?;
    if version != 2 {
        return Err(ImportError::Unsupported {
            file: file.to_path_buf(),
            what: format!("snapshot format version {version} (only 2 is known)"),
        });
    }
    f.read("file header", |r| r.i64())?;

    let count = f.read("session count", |r| r.i32())?;
    if count < 0 || count as usize > f.r.remaining() / 12 {
        return Err(f.corrupt(f.offset() - 4, format!("bad session count {count}")));
    }
    let mut sessions = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let s = f.read("session", |r| Ok((r.i64()?, r.i32()?)))?;
        sessions.push(s);
    }

    let count = f.read("ACL cache size", |r| r.i32())?;
    if count < 0 || count as usize > f.r.remaining() / 12 {
        return Err(f.corrupt(f.offset() - 4, format!("bad ACL cache size {count}")));
    }
    let mut acls = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let a = f.read("ACL cache entry", |r| Ok((r.i64()?, r.vec::<Acl>()?)))?;
        acls.push(a);
    }

    let mut nodes = Vec::new();
    loop {
        let at = f.offset();
        let path = f.read("node path", |r| r.string())?;
        if path == "/" {
            break;
        }
        let (data, acl_ref, stat) = f.read(&format!("node {path:?}"), |r| {
            Ok((r.nullable_buffer()?, r.i64()?, read_stat(r)?))
        })?;
        if !(path.is_empty() || path.starts_with('/')) {
            return Err(f.corrupt(at, format!("bad node path {path:?}")));
        }
        nodes.push(SnapNode {
            path,
            data,
            acl_ref,
            stat,
        });
    }
    check_seal(&mut f, bytes)?;
    if f.r.remaining() > 0 {
        // 3.6+: the digest of the tree at some zxid, then a second seal over everything.
        let at = f.offset();
        f.read("snapshot digest", |r| {
            r.i64()?;
            if r.i32()? < 2 {
                r.string()?;
            } else {
                r.i64()?;
            }
            Ok(())
        })?;
        check_seal(&mut f, bytes)?;
        if f.r.remaining() > 0 {
            return Err(f.corrupt(
                f.offset(),
                format!(
                    "{} unexpected bytes after the digest begun at {at}",
                    f.r.remaining()
                ),
            ));
        }
    }
    Ok(Snapshot {
        sessions,
        acls,
        nodes,
    })
}

/// The checksum of every byte before it, then the path "/".
fn check_seal(f: &mut FileReader<'_>, bytes: &[u8]) -> Result<(), ImportError> {
    let at = f.offset();
    let expected = adler32(&bytes[..at]);
    let val = f.read("checksum", |r| r.i64())?;
    let slash = f.read("checksum", |r| r.string())?;
    if val != i64::from(expected) || slash != "/" {
        return Err(f.corrupt(
            at,
            format!("checksum mismatch: file says {val:#x}, content sums to {expected:#x}"),
        ));
    }
    Ok(())
}

/// TxnHeader.
#[derive(Debug, Clone)]
pub(crate) struct TxnHeader {
    pub client_id: i64,
    pub zxid: i64,
    pub time: i64,
    pub kind: i32,
}

/// One transaction's body, as the kinds ZooKeeper logs.
#[derive(Debug, Clone)]
pub(crate) enum Txn {
    CreateSession {
        timeout: i32,
    },
    /// 3.6+ lists the ephemerals to delete; older logs leave it to the server.
    CloseSession {
        paths: Option<Vec<String>>,
    },
    /// create and create2; `parent_cversion` -1 for 3.2-era records without it.
    Create {
        path: String,
        data: Option<Vec<u8>>,
        acl: Vec<Acl>,
        ephemeral: bool,
        parent_cversion: i32,
    },
    CreateContainer {
        path: String,
        data: Option<Vec<u8>>,
        acl: Vec<Acl>,
        parent_cversion: i32,
    },
    CreateTtl {
        path: String,
        data: Option<Vec<u8>>,
        acl: Vec<Acl>,
        parent_cversion: i32,
        ttl: i64,
    },
    /// delete and deleteContainer.
    Delete {
        path: String,
    },
    /// setData and reconfig (which sets /zookeeper/config).
    SetData {
        path: String,
        data: Option<Vec<u8>>,
        version: i32,
    },
    SetAcl {
        path: String,
        acl: Vec<Acl>,
        version: i32,
    },
    Check,
    Error,
    /// Sub-txns with their kinds.
    Multi(Vec<(i32, Txn)>),
}

/// Parses a txn body of `kind`. `top` is false inside a multi.
fn parse_txn(kind: i32, r: &mut Reader<'_>, top: bool) -> Result<Txn, String> {
    let e = |e: DecodeError| e.to_string();
    Ok(match kind {
        op::CREATE_SESSION if top => Txn::CreateSession {
            timeout: r.i32().map_err(e)?,
        },
        op::CLOSE_SESSION if top => {
            // CloseSessionTxn (3.6+, unless disabled), possibly followed by a 12-byte digest;
            // anything else is an older record without it.
            let mut probe = Reader::new(r.take(r.remaining()).map_err(e)?);
            let paths = probe
                .vec::<String>()
                .ok()
                .filter(|_| matches!(probe.remaining(), 0 | 12));
            Txn::CloseSession { paths }
        }
        op::CREATE | op::CREATE2 => {
            let path = r.string().map_err(e)?;
            let data = r.nullable_buffer().map_err(e)?;
            let acl = r.vec::<Acl>().map_err(e)?;
            let ephemeral = r.bool().map_err(e)?;
            // CreateTxnV0 had no parentCVersion: -1 asks for the parent's own plus one.
            let parent_cversion = if r.remaining() >= 4 {
                r.i32().map_err(e)?
            } else if r.remaining() == 0 && kind == op::CREATE {
                -1
            } else {
                return Err("create record truncated".into());
            };
            Txn::Create {
                path,
                data,
                acl,
                ephemeral,
                parent_cversion,
            }
        }
        op::CREATE_CONTAINER => Txn::CreateContainer {
            path: r.string().map_err(e)?,
            data: r.nullable_buffer().map_err(e)?,
            acl: r.vec::<Acl>().map_err(e)?,
            parent_cversion: r.i32().map_err(e)?,
        },
        op::CREATE_TTL => Txn::CreateTtl {
            path: r.string().map_err(e)?,
            data: r.nullable_buffer().map_err(e)?,
            acl: r.vec::<Acl>().map_err(e)?,
            parent_cversion: r.i32().map_err(e)?,
            ttl: r.i64().map_err(e)?,
        },
        op::DELETE | op::DELETE_CONTAINER => Txn::Delete {
            path: r.string().map_err(e)?,
        },
        op::SET_DATA | op::RECONFIG => Txn::SetData {
            path: r.string().map_err(e)?,
            data: r.nullable_buffer().map_err(e)?,
            version: r.i32().map_err(e)?,
        },
        op::SET_ACL if top => Txn::SetAcl {
            path: r.string().map_err(e)?,
            acl: r.vec::<Acl>().map_err(e)?,
            version: r.i32().map_err(e)?,
        },
        op::CHECK => {
            r.string().map_err(e)?;
            r.i32().map_err(e)?;
            Txn::Check
        }
        op::ERROR => {
            r.i32().map_err(e)?;
            Txn::Error
        }
        op::MULTI if top => {
            let n = r.i32().map_err(e)?;
            if n < 0 || n as usize > r.remaining() / 8 {
                return Err(format!("bad multi count {n}"));
            }
            let mut subs = Vec::with_capacity(n as usize);
            for _ in 0..n {
                let sub_kind = r.i32().map_err(e)?;
                let body = r.buffer().map_err(e)?;
                let mut sr = Reader::new(&body);
                let sub = parse_txn(sub_kind, &mut sr, false)
                    .map_err(|m| format!("multi sub-txn of type {sub_kind}: {m}"))?;
                subs.push((sub_kind, sub));
            }
            Txn::Multi(subs)
        }
        k => {
            return Err(format!(
                "unsupported transaction type {k}{}",
                if top { "" } else { " inside a multi" }
            ))
        }
    })
}

/// A transaction log file, read record by record.
pub(crate) struct LogReader<'a> {
    f: FileReader<'a>,
    bytes: &'a [u8],
}

/// What ended a log.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LogEnd {
    /// Zeros (preallocation) or the end of the file: the normal end.
    Clean,
    /// A record cut short (ZooKeeper stopped while writing it). ZooKeeper reads such a
    /// log up to there and goes on with the next one; so does the import.
    Torn { offset: usize },
}

impl<'a> LogReader<'a> {
    pub fn open(file: &'a Path, bytes: &'a [u8]) -> Result<LogReader<'a>, ImportError> {
        let mut f = FileReader::new(file, bytes, 0);
        let magic = f.read("file header", |r| r.take(4))?;
        if magic != LOG_MAGIC {
            return Err(f.corrupt(0, "not a ZooKeeper transaction log (magic is not ZKLG)"));
        }
        let version = f.read("file header", |r| r.i32())?;
        if version != 2 {
            return Err(ImportError::Unsupported {
                file: file.to_path_buf(),
                what: format!("transaction log format version {version} (only 2 is known)"),
            });
        }
        f.read("file header", |r| r.i64())?;
        Ok(LogReader { f, bytes })
    }

    /// The next transaction, or how the log ended.
    pub fn next_txn(&mut self) -> Result<Result<(TxnHeader, Txn), LogEnd>, ImportError> {
        let start = self.f.offset();
        if self.f.r.remaining() < 12 {
            return Ok(Err(self.end_at(start)));
        }
        let crc = self.f.read("record checksum", |r| r.i64())?;
        let len = self.f.read("record length", |r| r.i32())?;
        if len == 0 {
            return Ok(Err(LogEnd::Clean));
        }
        if len < 0 {
            return Err(self
                .f
                .corrupt(start + 8, format!("negative record length {len}")));
        }
        let body_at = self.f.offset();
        let len = len as usize;
        if self.f.r.remaining() < len + 1 {
            return Ok(Err(LogEnd::Torn { offset: start }));
        }
        let body = &self.bytes[body_at..body_at + len];
        self.f.read("record", |r| r.take(len + 1))?;
        if self.bytes[body_at + len] != b'B' {
            return Ok(Err(LogEnd::Torn { offset: start }));
        }
        let sum = adler32(body);
        if crc != i64::from(sum) {
            return Err(self.f.corrupt(
                start,
                format!("record checksum mismatch: file says {crc:#x}, record sums to {sum:#x}"),
            ));
        }
        let mut r = Reader::new(body);
        let hdr = (|| -> Result<TxnHeader, DecodeError> {
            let client_id = r.i64()?;
            r.i32()?; // cxid
            Ok(TxnHeader {
                client_id,
                zxid: r.i64()?,
                time: r.i64()?,
                kind: r.i32()?,
            })
        })()
        .map_err(|e| self.f.corrupt(body_at, format!("transaction header: {e}")))?;
        let txn = parse_txn(hdr.kind, &mut r, true).map_err(|m| {
            self.f.corrupt(
                body_at,
                format!("transaction {:#x} (type {}): {m}", hdr.zxid, hdr.kind),
            )
        })?;
        Ok(Ok((hdr, txn)))
    }

    /// Past the last record: zeros are the preallocated end; anything else is a torn record.
    fn end_at(&self, offset: usize) -> LogEnd {
        if self.bytes[offset..].iter().all(|&b| b == 0) {
            LogEnd::Clean
        } else {
            LogEnd::Torn { offset }
        }
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
