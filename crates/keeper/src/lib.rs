//! corral-keeper: the server. Everything between the socket and corral-tree's state machine.
//!
//! # Code map
//! A request flows top to bottom through these modules:
//!
//! - [`config`]: zoo.cfg and the embedded default. Owns parsing and validation; a wrong value
//!   stops start-up naming its key. Never read after start-up except through `Keeper::config`.
//! - [`keeper`]: the composition root. Builds and starts the parts in order, stops them with
//!   one shutdown token and waits for every task. Nothing else depends on it.
//! - `shared`: what every task holds an `Arc` of: the state and its locks (one per
//!   invariant, in a fixed order), the connection registry, the outstanding-request
//!   throttle, the consensus handle, the shutdown token.
//! - `listener`: the client port. Owns accept and admission (maxClientCnxns at accept).
//!   Never reads a socket.
//! - `connection`: one client, first byte to teardown: handshake, reader, responder,
//!   local requests. Never changes the tree; writes leave it only as entries submitted to
//!   consensus.
//! - `outbound`: a connection's byte-bounded queue and the task writing it to the socket.
//!   Decides nothing about what is sent.
//! - `consensus`: the openraft group (log store, state machine adapter, the way in through
//!   `Pending` and the submitter, the leader's intake that batches writes into raft
//!   entries, the quorum port's network and wire format, membership). Owns ordering,
//!   durability, zxids and exactly-once application of entries, in one member or an
//!   ensemble. Never interprets an entry.
//! - `apply`: a committed entry → the tree → session tracking → watch events queued to
//!   connections, under one hold of the state lock. Never blocks.
//! - `session`: liveness and precise expiry, stall forgiveness, obituaries, and in an
//!   ensemble who holds each session. Decides *when* a session expires. Pure bookkeeping.
//! - `watch`: the watch registry, ZooKeeper 3.8's model. Pure bookkeeping.
//! - `housekeeping`: the periodic loops: on the leader, session expiry (a CloseSession entry
//!   through consensus), containers and TTL nodes; on every member of an ensemble, session
//!   reports to the leader and closing the sessions that moved away or that a cut-off member
//!   cannot keep.
//! - `storage`: the files under dataDir and dataLogDir. `storage::wal`, whose one writer
//!   thread owns every change of the log's files; `storage::snapshot_store`, snapshots
//!   written whole and paced, encoded off the request path at low CPU priority
//!   (`storage::background`); start-up's restore; the data-dir lock. Never interprets an
//!   entry, never knows about connections or sessions; depends on no other keeper module.
//! - `admin`: the four-letter words. Each gathers only what it prints, one lock at a time;
//!   never changes state.
//! - `stats`: server-wide counters (atomics) and throttled log lines.
//! - [`zk_import`]: reads ZooKeeper's data directory (snapshots and logs) into a first
//!   snapshot, before consensus starts. Never writes ZooKeeper's files.
//!
//! Invariant: every state change goes through consensus as a [`corral_tree::Entry`]; the
//! keeper never mutates the tree directly (an import builds a tree only before consensus
//! starts, as its initial snapshot). It must not know the wire encoding beyond what
//! corral-proto exposes, nor decide write results (that is corral-tree's `apply`).

mod admin;
mod apply;
pub mod config;
mod connection;
mod consensus;
#[cfg(feature = "failpoints")]
mod failpoints;
mod housekeeping;
pub mod keeper;
mod listener;
mod outbound;
mod session;
mod shared;
mod stats;
mod storage;
mod watch;
pub mod zk_import;

pub use admin::java_date;
pub use consensus::StorageConfig;
pub use keeper::{Keeper, StartError};

#[cfg(test)]
mod tests;
