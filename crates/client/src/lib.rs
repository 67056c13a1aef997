//! corral-client: the async (tokio) ZooKeeper client of corral.
//!
//! Owns: the client side of ZooKeeper's wire protocol. Two layers:
//! - [`Client`]: one session over a list of servers with an optional chroot
//!   ("h1:2181,h2:2181/app"). It reports its state as a stream ([`SessionState`]), resumes the
//!   session on another server when a connection is lost (auth and watches re-sent), declares
//!   it expired on its own clock when no server answers, and — recovery being on by default —
//!   replaces an expired session with a new one in which its [`EphemeralNode`]s are re-created
//!   (a [`RecoveryReport`] says what was done). This is what applications should use.
//! - [`Connection`]: one session over one TCP connection — the handshake, pipelined requests
//!   with their replies matched in order, watch notifications, keep-alive pings and an orderly
//!   or abrupt close — plus typed calls on top (create, getData, setData, ...). `corral
//!   bench`'s probe uses it directly, to see when a server first answers.
//! - [`RawClient`] ([`Client::raw`]): the same typed calls, with server paths and explicit
//!   watch flags, sent in a [`Client`]'s session (so they wait out a move, and their watches
//!   are re-sent). `corral shell`, which keeps zkCli's own chroot rules, speaks through it.
//!
//! - [`PersistentWatch`]: a persistent (optionally recursive) watch as a stream that survives
//!   reconnections and expiries and says where its gaps are ([`PersistentEvent::Rearmed`]).
//! - [`NodeCache`] / [`TreeCache`]: a node or a subtree kept current, re-read after every gap;
//!   what differs from what they held is reported as the changes made during the outage
//!   ([`ResyncReport`], also on [`Client::resync_reports`]).
//! - Recipes: [`Lock`] (sequential ephemerals, each waiter watching only its predecessor) and
//!   [`LeaderElection`] with a fencing epoch (the Kafka controller pattern: every leader
//!   write is a multi that checks the epoch, so a deposed leader's writes fail).
//!
//! Must not: contain server logic or encode anything itself. Every byte on the wire is
//! produced and parsed by `corral-proto`, the one codec the server and the tests also use.

#![warn(missing_docs)]

mod cache;
mod client;
mod connection;
mod election;
mod error;
mod lock;
mod ops;
mod persistent;
mod queue;
mod raw;
mod txn;

pub use cache::{
    CacheEvent, CachedNode, Change, ChangeKind, NodeCache, ResyncCause, ResyncReport, TreeCache,
};
pub use client::{
    four_letter_word, Client, ClientBuilder, EphemeralNode, EphemeralOutcome, EphemeralRecovery,
    RecoveryReport, SessionEvent, SessionState, Watch, WatchKind,
};
pub use connection::{ConnectOptions, Connection, Reply, WatchedEvent};
pub use corral_proto::{creator_all_acl, open_acl_unsafe, read_acl_unsafe};
pub use election::{LeaderElection, Leadership, LeadershipLost};
pub use error::ClientError;
pub use lock::{Lock, LockGuard};
pub use persistent::{PersistentEvent, PersistentWatch};
pub use raw::RawClient;
pub use txn::{MultiRead, OpResult, ReadResult, Transaction};

/// The wire types, re-exported so callers need not depend on corral-proto themselves.
pub use corral_proto as proto;
