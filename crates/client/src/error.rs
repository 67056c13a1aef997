//! Errors of the client. Server-side failures of a request are not errors of
//! [`crate::Connection::request`] (they come back in the reply); the typed convenience calls
//! turn them into [`ClientError::Server`].

use corral_proto::frame::FrameError;
use corral_proto::{DecodeError, ErrorCode};

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A server frame did not decode as the reply it should be.
    #[error("cannot decode a server frame: {0}")]
    Decode(#[from] DecodeError),
    /// A server frame was malformed (e.g. a negative or oversized length).
    #[error("bad frame from server: {0}")]
    Frame(#[from] FrameError),
    /// The server broke the protocol (e.g. a reply out of order); the connection is closed.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The connection is closed (by us, by the server, or because it was aborted).
    #[error("connection closed")]
    Closed,
    /// The server refused to resume the session: it has expired (or the password is wrong).
    #[error("session expired")]
    SessionExpired,
    /// Connecting took too long, or the server went silent for two thirds of the session timeout.
    #[error("timed out")]
    Timeout,
    /// The server answered the request with this error code.
    #[error("server error: {0}")]
    Server(ErrorCode),
    /// The server answered with a body of a kind this request cannot have.
    #[error("unexpected response: {0}")]
    UnexpectedResponse(String),
    /// No server could be reached in time ([`crate::Client`]): the request was not sent, or
    /// its connection was lost before the reply (then it may or may not have been applied).
    #[error("connection loss")]
    ConnectionLoss,
    /// The server rejected the client's credentials; the client will not reconnect.
    #[error("authentication failed")]
    AuthFailed,
    /// The connect string is not `host:port[,host:port...][/chroot]`.
    #[error("bad connect string {0:?}: {1}")]
    BadConnectString(String, String),
    /// The path is not an absolute ZooKeeper path.
    #[error("bad path {0:?}")]
    BadPath(String),
    /// A leader-only write was refused: leadership was lost (locally, or the epoch check in
    /// the write failed on the server because another leader has been elected since).
    #[error("not the leader")]
    NotLeader,
    /// A [`Transaction`](crate::Transaction) was refused as a whole: its operation `index`
    /// (from 0, in the order added) failed with `code`, so the server applied none of them.
    #[error("transaction refused: operation {index} failed with {code:?}")]
    TransactionFailed {
        /// Which operation failed.
        index: usize,
        /// Why.
        code: ErrorCode,
    },
}

impl ClientError {
    /// The server's error code, if this is a server-side failure.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server(c) | ClientError::TransactionFailed { code: c, .. } => Some(*c),
            _ => None,
        }
    }
}

/// Why a connection ended. Kept as a cloneable value because every caller still waiting
/// when it ends gets its own [`ClientError`] built from it.
#[derive(Debug, Clone)]
pub(crate) enum Lost {
    Closed,
    Timeout,
    Io(std::io::ErrorKind, String),
    Protocol(String),
}

impl Lost {
    pub(crate) fn to_error(&self) -> ClientError {
        match self {
            Lost::Closed => ClientError::Closed,
            Lost::Timeout => ClientError::Timeout,
            Lost::Io(kind, msg) => ClientError::Io(std::io::Error::new(*kind, msg.clone())),
            Lost::Protocol(msg) => ClientError::Protocol(msg.clone()),
        }
    }
}
