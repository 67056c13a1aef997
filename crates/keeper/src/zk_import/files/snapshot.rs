//! ZooKeeper's snapshot file (`snapshot.<hex zxid>`, possibly gzip- or snappy-compressed):
//! its header, sessions, ACL cache and node records, and the Adler32 seal(s) that say it was
//! written to the end. Every error names the file and the byte offset.

use std::path::Path;

use corral_proto::{Acl, DecodeError, Reader};

use super::super::{compress, ImportError};
use super::{adler32, FileReader};

const SNAP_MAGIC: &[u8; 4] = b"ZKSN";

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
