//! Import of ZooKeeper's on-disk state (`dataDir/version-2` snapshots and
//! `dataLogDir/version-2` transaction logs, ZooKeeper 3.4 to 3.9) into corral's: the newest
//! complete snapshot is loaded and the logged transactions after it replayed the way
//! ZooKeeper's own start-up does (`replay`), then the result is written as the snapshot of
//! a fresh one-voter group whose last log index is ZooKeeper's last zxid (`write`). The tree
//! carries that zxid and corral's zxids go on from it, so clients that reconnect with their
//! lastZxidSeen, session id and password keep their sessions.
//!
//! Owns: reading ZooKeeper's formats (`files`), the replay, the conversion. Must not:
//! write anything in ZooKeeper's directories (they are left as they were, so the operator
//! can go back), or leave half-written corral data (the snapshot, written last through a
//! temporary file, is the commit point).

mod compress;
mod files;
mod replay;
mod write;

use std::path::{Path, PathBuf};
use std::time::Instant;

use thiserror::Error;

use crate::consensus::StorageConfig;
pub use write::zk_session_password;

/// Why an import stopped. File errors name the file and, where one applies, the offset.
#[derive(Debug, Error)]
pub enum ImportError {
    #[error("{}: {what} at byte offset {offset}", file.display())]
    Corrupt {
        file: PathBuf,
        offset: u64,
        what: String,
    },
    #[error("{}: unsupported: {what}", file.display())]
    Unsupported { file: PathBuf, what: String },
    #[error("{}: {what}", file.display())]
    Inconsistent { file: PathBuf, what: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no ZooKeeper snapshot.* or log.* files in {}", .0.display())]
    NothingToImport(PathBuf),
    #[error(
        "{} already holds corral data (snapshots or write-ahead log); import only into an \
         empty data directory", .0.display()
    )]
    DestinationInUse(PathBuf),
    /// Another keeper (or import) holds the destination.
    #[error(transparent)]
    DestinationLocked(#[from] crate::storage::data_lock::DataDirLockError),
    #[error(
        "{}: transactions {from:#x} to {to:#x} are missing before this log's next one (a log \
         file deleted or damaged?)", file.display()
    )]
    Gap { file: PathBuf, from: i64, to: i64 },
    /// corral-tree refused the tree the replay built (a node without its parent, say).
    #[error("the imported tree is not consistent: {0}")]
    Tree(#[source] corral_tree::CodecError),
    /// ZooKeeper's last zxid is negative: it cannot be a log index.
    #[error("the imported tree is not consistent: negative last zxid {0}")]
    NegativeZxid(i64),
    #[error("cannot write corral's data: {0}")]
    Write(#[source] crate::consensus::ConsensusError),
    /// The marker an import leaves does not say what it imported.
    #[error("{}: no last_zxid line", .0.display())]
    MarkerUnreadable(PathBuf),
    /// ZooKeeper was started again on the data dir after the import and wrote `later`.
    #[error(
        "ZooKeeper has written to this data dir since corral imported it at zxid {imported:#x} \
         ({}); corral's data would miss those writes. To import them, move corral's data \
         ({} and its write-ahead log) aside and start again; to keep corral's, move \
         ZooKeeper's version-2 aside",
        later.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
        data_dir.display()
    )]
    WrittenSinceImport {
        imported: i64,
        later: Vec<PathBuf>,
        data_dir: PathBuf,
    },
}

impl ImportError {
    fn io(path: &Path, source: std::io::Error) -> ImportError {
        ImportError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// What an import read and wrote.
#[derive(Debug, Clone)]
pub struct ImportSummary {
    /// The ZooKeeper snapshot loaded (None: the logs alone were replayed).
    pub snapshot: Option<PathBuf>,
    pub logs: Vec<PathBuf>,
    pub txns_replayed: u64,
    pub znodes: usize,
    pub sessions: usize,
    pub ephemerals: usize,
    /// ZooKeeper's last zxid: the last log index of the corral snapshot written.
    pub last_zxid: i64,
    /// Bytes of the corral snapshot written.
    pub snapshot_bytes: u64,
    pub elapsed_ms: u64,
}

/// ZooKeeper's `version-2` under `dir`, or `dir` itself when it is one.
pub fn version2_dir(dir: &Path) -> PathBuf {
    if dir.file_name().is_some_and(|n| n == "version-2") {
        dir.to_path_buf()
    } else {
        dir.join("version-2")
    }
}

/// Whether ZooKeeper left snapshots or logs in `data_dir` (or `data_log_dir`).
pub fn has_zk_data(data_dir: &Path, data_log_dir: Option<&Path>) -> bool {
    let snaps = version2_dir(data_dir);
    let logs = version2_dir(data_log_dir.unwrap_or(data_dir));
    files::ZkFiles::scan(&snaps, &logs).is_ok_and(|f| !f.is_empty())
}

/// Whether corral already has data (a snapshot or a log segment) where `storage` points.
pub fn has_corral_data(storage: &StorageConfig) -> bool {
    let any = |dir: PathBuf, is_data: &dyn Fn(&str) -> bool| {
        std::fs::read_dir(dir).is_ok_and(|rd| {
            rd.filter_map(Result::ok)
                .any(|e| e.file_name().to_str().is_some_and(is_data))
        })
    };
    any(storage.snapshot_dir(), &|n: &str| {
        n.starts_with("snapshot.") && !n.ends_with(".tmp")
    }) || any(storage.wal_dir(), &|n: &str| n.ends_with(".log"))
}

/// The file in corral's dataDir recording what was imported: ZooKeeper's last zxid.
const MARKER: &str = "zk-imported";

/// After an import, refuses a start on a dataDir where ZooKeeper has written since (it was
/// started again on it: a log or snapshot past the zxid imported). corral would otherwise
/// serve its own older copy and ZooKeeper's later writes would be lost without a word.
pub fn check_zk_not_written_since_import(
    storage: &StorageConfig,
    data_dir: &Path,
    data_log_dir: Option<&Path>,
) -> Result<(), ImportError> {
    let marker = storage.data_dir.join(MARKER);
    let Ok(text) = std::fs::read_to_string(&marker) else {
        return Ok(());
    };
    let Some(imported) = text
        .lines()
        .find_map(|l| l.strip_prefix("last_zxid=0x"))
        .and_then(|h| i64::from_str_radix(h.trim(), 16).ok())
    else {
        return Err(ImportError::MarkerUnreadable(marker));
    };
    let found = files::ZkFiles::scan(
        &version2_dir(data_dir),
        &version2_dir(data_log_dir.unwrap_or(data_dir)),
    )?;
    let later: Vec<PathBuf> = found
        .logs
        .iter()
        .chain(&found.snapshots)
        .filter(|(z, _)| *z > imported)
        .map(|(_, p)| p.clone())
        .collect();
    if later.is_empty() {
        return Ok(());
    }
    Err(ImportError::WrittenSinceImport {
        imported,
        later,
        data_dir: storage.data_dir.clone(),
    })
}

/// [`import`] for `corral import-zk`: the destination's directories locked first, as a
/// keeper locks them, so an import and a keeper starting on the same directory cannot race.
pub fn import_offline(
    zk_data_dir: &Path,
    zk_log_dir: Option<&Path>,
    dest: &StorageConfig,
) -> Result<ImportSummary, ImportError> {
    let mut dirs = vec![dest.data_dir.as_path()];
    dirs.extend(dest.data_log_dir.as_deref());
    let _lock = crate::storage::data_lock::lock(&dirs)?;
    import(zk_data_dir, zk_log_dir, dest)
}

/// Imports ZooKeeper's state from `zk_data_dir` (its dataDir, or the `version-2` in it) and
/// `zk_log_dir` (its dataLogDir, when separate) into corral's empty storage `dest`.
pub fn import(
    zk_data_dir: &Path,
    zk_log_dir: Option<&Path>,
    dest: &StorageConfig,
) -> Result<ImportSummary, ImportError> {
    let started = Instant::now();
    if has_corral_data(dest) {
        return Err(ImportError::DestinationInUse(dest.data_dir.clone()));
    }
    let snap_dir = version2_dir(zk_data_dir);
    let log_dir = version2_dir(zk_log_dir.unwrap_or(zk_data_dir));
    let found = files::ZkFiles::scan(&snap_dir, &log_dir)?;
    if found.is_empty() {
        return Err(ImportError::NothingToImport(snap_dir));
    }

    // The newest complete snapshot, as ZooKeeper picks it: one a crash left incomplete is
    // passed over; any other damage stops the import.
    let mut tree = None;
    let mut snapshot = None;
    for (zxid, path) in &found.snapshots {
        let raw = std::fs::read(path).map_err(|e| ImportError::io(path, e))?;
        let content = files::snapshot_content(path, raw)?;
        let Some((bytes, decompressed)) =
            content.filter(|(b, _)| files::snapshot_looks_complete(b))
        else {
            tracing::warn!(
                file = %path.display(),
                "ZooKeeper snapshot is incomplete (ZooKeeper stopped while writing it); \
                 using the one before, as ZooKeeper does"
            );
            continue;
        };
        let parsed = files::parse_snapshot(path, &bytes, decompressed)?;
        tree = Some(replay::ZkTree::from_snapshot(path, parsed, *zxid)?);
        snapshot = Some(path.clone());
        break;
    }
    let mut tree = tree.unwrap_or_else(replay::ZkTree::empty);
    let snap_zxid = tree.last_zxid;

    // The logs from the last one starting at or before the snapshot's zxid.
    let first = found
        .logs
        .iter()
        .filter(|(z, _)| *z <= snap_zxid)
        .map(|(z, _)| *z)
        .max()
        .unwrap_or(0);
    let mut logs = Vec::new();
    for (_, path) in found.logs.iter().filter(|(z, _)| *z >= first) {
        let bytes = std::fs::read(path).map_err(|e| ImportError::io(path, e))?;
        let mut reader = files::LogReader::open(path, &bytes)?;
        loop {
            match reader.next_txn()? {
                Ok((hdr, txn)) => {
                    if hdr.zxid <= snap_zxid {
                        continue;
                    }
                    // zxid = epoch << 32 | counter, and every transaction takes the next
                    // counter: a jump inside an epoch means transactions are missing (a log
                    // deleted, or damage ZooKeeper would read past without a word).
                    let expected = tree.last_zxid.wrapping_add(1);
                    if (snapshot.is_some() || tree.replayed > 0)
                        && hdr.zxid > expected
                        && hdr.zxid >> 32 == tree.last_zxid >> 32
                    {
                        return Err(ImportError::Gap {
                            file: path.clone(),
                            from: expected,
                            to: hdr.zxid - 1,
                        });
                    }
                    if hdr.zxid <= tree.last_zxid && tree.replayed > 0 {
                        tracing::warn!(
                            file = %path.display(),
                            "transaction {:#x} follows {:#x}: out of order (replayed anyway, as ZooKeeper does)",
                            hdr.zxid, tree.last_zxid
                        );
                    }
                    tree.replay(&hdr, &txn);
                }
                Err(files::LogEnd::Clean) => break,
                Err(files::LogEnd::Torn { offset }) => {
                    tracing::warn!(
                        file = %path.display(),
                        offset,
                        "ZooKeeper log ends in a partly written record (ZooKeeper stopped \
                         while writing it; it was never acknowledged); reading stops there, \
                         as ZooKeeper's does"
                    );
                    break;
                }
            }
        }
        logs.push(path.clone());
    }

    if let Some(snap) = &snapshot {
        tree.resolve_pending_acls(snap)?;
    }

    // ZooKeeper kills, at load, sessions that own ephemerals but have no timeout recorded.
    for orphan in tree.orphan_owners() {
        tracing::warn!(
            "session {orphan:#x} owns ephemerals but is not among ZooKeeper's sessions; its \
             ephemerals are deleted, as ZooKeeper does at start"
        );
        let zxid = tree.last_zxid;
        tree.kill_session(orphan, zxid, None);
    }
    if tree.last_zxid <= 0 {
        return Err(ImportError::NothingToImport(snap_dir));
    }

    let corral = write::to_data_tree(&tree)?;
    let summary = ImportSummary {
        snapshot,
        logs,
        txns_replayed: tree.replayed,
        znodes: corral.node_count(),
        sessions: corral.sessions().count(),
        ephemerals: corral.ephemeral_count(),
        last_zxid: corral.last_zxid(),
        snapshot_bytes: 0,
        elapsed_ms: 0,
    };
    drop(tree);
    // Before the snapshot, which commits the import: a marker without one is overwritten by
    // the next attempt.
    std::fs::create_dir_all(&dest.data_dir).map_err(|e| ImportError::io(&dest.data_dir, e))?;
    let marker = dest.data_dir.join(MARKER);
    crate::storage::wal::write_atomic(
        &marker,
        format!(
            "imported from ZooKeeper's {}\nlast_zxid=0x{:x}\n",
            snap_dir.display(),
            summary.last_zxid
        )
        .as_bytes(),
        true,
    )
    .map_err(|e| ImportError::io(&marker, e))?;
    let snapshot_bytes = write::write_corral_state(&corral, dest)?;
    Ok(ImportSummary {
        snapshot_bytes,
        elapsed_ms: started.elapsed().as_millis() as u64,
        ..summary
    })
}

#[cfg(test)]
mod tests;
