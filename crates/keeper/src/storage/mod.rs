//! Storage: the bytes on disk under dataDir and dataLogDir, and the threads that write them.
//!
//! Owns:
//! - [`wal`]: the write-ahead log. Its one writer thread owns every change of the log's
//!   files (append with group commit, roll, truncate, purge, the vote save); readers only
//!   `pread` what it has written.
//! - [`snapshot_store`]: the snapshot files, written whole (temp file, fsync, rename) and
//!   paced so they do not starve the log's fsyncs; their integrity check and retention.
//! - [`snapshot_data`]: a snapshot as openraft handles it, in memory or as its open file.
//! - `background`: the worker that encodes snapshots off the request path, at the lowest
//!   CPU priority that still lets a snapshot finish.
//! - `restore`: start-up's snapshot decode on two threads.
//! - `data_lock`: the data directory lock, one keeper per dataDir.
//!
//! Must never: interpret an entry or a snapshot's bytes (consensus encodes entries,
//! corral-tree owns the snapshot format), decide what is committed or when to snapshot, or
//! know about connections or sessions. Nothing here depends on another module of the keeper:
//! consensus, the import and the composition root depend on storage, never the reverse.

pub(crate) mod background;
pub(crate) mod data_lock;
pub(crate) mod restore;
pub mod snapshot_data;
pub mod snapshot_store;
pub mod wal;
