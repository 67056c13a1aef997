//! [`RawClient`]: every ZooKeeper operation as the wire has it, sent in a [`Client`]'s session.
//!
//! Owns: the escape hatch for callers that must speak the protocol as it is (zkCli's shell,
//! which keeps its own chroot rules, and operations [`Client`] has no method for: reconfig,
//! whoAmI, getEphemerals, createTTL, getAllChildrenNumber, null data). Paths are the server's
//! (the chroot is not applied) and watch flags are sent as given; the one-shot watches they
//! leave are still tracked by the client, so they are re-sent when the session moves and
//! their notifications reach [`Client::notifications`].
//!
//! Must not: bypass the session's rules. A call waits while the session is Suspended, fails
//! with SessionExpired once it is gone, and is never retried (its fate on a lost connection
//! is unknown).

use corral_proto::{Request, Response};

use crate::{Client, ClientError};

/// A [`Client`]'s session, spoken to as the wire has it: see the module documentation. The
/// typed calls are [`Connection`](crate::Connection)'s, with the same names and arguments.
/// Persistent watches added here (addWatch) are not re-sent when the session moves: use
/// [`Client::watch_persistent`] for that.
#[derive(Clone, Debug)]
pub struct RawClient {
    client: Client,
}

impl Client {
    /// This session, spoken to with server paths and explicit watch flags ([`RawClient`]).
    pub fn raw(&self) -> RawClient {
        RawClient {
            client: self.clone(),
        }
    }
}

impl RawClient {
    /// Sends the request in the session; a reply with an error code becomes
    /// `Err(Server(code))`, a connection lost under it `Err(ConnectionLoss)`. A getData,
    /// exists or getChildren with its watch flag set leaves a watch the client tracks; a
    /// removeWatches that succeeds makes the client forget the watches it removed.
    pub async fn call(&self, req: Request) -> Result<Response, ClientError> {
        self.client.call_tracked(req).await
    }

    /// The client this speaks for.
    pub fn client(&self) -> &Client {
        &self.client
    }
}
