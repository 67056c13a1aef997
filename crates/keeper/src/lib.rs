//! corral-keeper: the server.
//!
//! Owns configuration ([`config`]), the listener and per-connection protocol handling
//! ([`server`], [`connection`]), session liveness and precise expiry ([`session`]), the watch
//! registry ([`watch`]), the request pipeline through consensus ([`consensus`]: an openraft
//! group whose state machine is corral-tree), the admin surface ([`four_letter`]) and the
//! import of ZooKeeper's data directory ([`zk_import`]).
//!
//! Invariant: every state change goes through consensus as an [`corral_tree::Entry`]; the
//! keeper never mutates the tree directly (an import builds a tree only before consensus
//! starts, as its initial snapshot). It must not know the wire encoding beyond what
//! corral-proto exposes, nor decide write results (that is corral-tree's `apply`).

pub mod admin;
mod background;
pub mod config;
pub mod connection;
pub mod consensus;
mod data_lock;
pub mod four_letter;
mod identity;
pub mod outbound;
mod restore;
pub mod server;
pub mod session;
pub mod snapshot_data;
pub mod snapshot_store;
pub mod wal;
pub mod watch;
pub mod zk_import;
