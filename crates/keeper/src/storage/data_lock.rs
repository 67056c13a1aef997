//! One keeper per data directory: an exclusive `flock` on `corral.lock` in dataDir (and in
//! dataLogDir when it is elsewhere), taken before anything in them is read and held for the
//! process's life. Two keepers on one dataDir would both accept writes, diverge, and leave a
//! log the next start finds corrupt.
//!
//! The lock file holds the holder's pid, so the one refused can name it. The kernel drops the
//! lock when the holder dies, kill -9 included, so a stale file never blocks a start. Owns
//! only the lock; must not read or write anything else in the directories.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

pub(crate) const LOCK_FILE: &str = "corral.lock";

/// Why a data directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum DataDirLockError {
    #[error(
        "{dir} is in use by another corral keeper (pid {holder}; lock {lock}): two keepers on one data directory would diverge"
    )]
    Held {
        dir: String,
        lock: String,
        holder: String,
    },
    #[error("cannot lock {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Held locks; dropping this releases them.
#[derive(Debug)]
pub(crate) struct DataDirLock {
    _files: Vec<File>,
}

/// Locks every directory in `dirs` (creating it if missing), in order.
pub(crate) fn lock(dirs: &[&Path]) -> Result<DataDirLock, DataDirLockError> {
    let mut files = Vec::new();
    let mut seen: Vec<PathBuf> = Vec::new();
    for dir in dirs {
        let io = |source| DataDirLockError::Io {
            path: dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let canonical = dir.canonicalize().map_err(io)?;
        if seen.contains(&canonical) {
            continue;
        }
        let path = canonical.join(LOCK_FILE);
        let io = |source| DataDirLockError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = match holder.trim() {
                    "" => "unknown".to_string(),
                    pid => pid.to_string(),
                };
                return Err(DataDirLockError::Held {
                    dir: canonical.display().to_string(),
                    lock: path.display().to_string(),
                    holder,
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        files.push(file);
        seen.push(canonical);
    }
    Ok(DataDirLock { _files: files })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_directory_is_refused_naming_the_holder() {
        let dir = std::env::temp_dir().join(format!("corral-lock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let logs = dir.join("logs");
        let held = lock(&[&dir, &logs, &dir]).expect("first lock");
        // flock locks belong to the open file, so a second open in this process conflicts
        // just as another process would.
        match lock(&[&logs]) {
            Err(DataDirLockError::Held { holder, lock, .. }) => {
                assert_eq!(holder, std::process::id().to_string());
                assert!(lock.ends_with("logs/corral.lock"), "{lock}");
            }
            other => panic!("expected Held, got {other:?}"),
        }
        drop(held);
        let again = lock(&[&dir]).expect("free once dropped");
        drop(again);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
