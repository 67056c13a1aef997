//! corral-client: the async (tokio) ZooKeeper client of corral.
//!
//! Owns: the client side of ZooKeeper's wire protocol over one TCP connection — the
//! handshake, pipelined requests with their replies matched in order, watch notifications,
//! keep-alive pings and an orderly or abrupt close ([`Connection`]), plus typed convenience
//! calls on top (create, getData, setData, ...). Later it also owns the session state machine
//! that moves between servers and recovers from expiry by itself (new session, ephemerals
//! re-created, watches re-registered); that is not here yet.
//!
//! Must not: contain server logic or encode anything itself. Every byte on the wire is
//! produced and parsed by `corral-proto`, the one codec the server and the tests also use.

mod connection;
mod error;
mod ops;

pub use connection::{ConnectOptions, Connection, Reply, WatchedEvent};
pub use corral_proto::{creator_all_acl, open_acl_unsafe, read_acl_unsafe};
pub use error::ClientError;

/// The wire types, re-exported so callers need not depend on corral-proto themselves.
pub use corral_proto as proto;
