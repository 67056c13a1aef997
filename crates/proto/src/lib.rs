//! corral-proto: ZooKeeper's client wire protocol.
//!
//! Owns the Jute encoding ([`jute`]), every client record ([`records`]), opcodes, error codes
//! and other constants ([`codes`]), request/response bodies by opcode ([`message`]) and
//! length-prefixed framing bounded by jute.maxbuffer ([`frame`]).
//!
//! Invariant: pure. No I/O, no tokio, no clock. Decoding never panics on any input and never
//! allocates more than the input can justify; errors are values ([`jute::DecodeError`]).
//! The server, the client and the tests all use this one codec.

pub mod codes;
pub mod frame;
pub mod jute;
pub mod message;
pub mod records;

pub use codes::{
    perms, xid, AddWatchMode, CreateMode, ErrorCode, EventType, KeeperState, OpCode, WatcherType,
};
pub use jute::{DecodeError, Jute, Reader, Writer};
pub use message::{MultiResult, Request, Response};
pub use records::*;
