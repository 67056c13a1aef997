//! Typed builders for ZooKeeper's two batch requests: [`Transaction`] (multi: creates, deletes,
//! setData and version checks applied all or none) and [`MultiRead`] (multiRead, 3.6+: getData
//! and getChildren answered together, each with its own result or error).
//!
//! Owns: building the operations (chroot applied), and turning the server's per-operation
//! results into typed ones: a failed transaction is one error naming the operation that failed
//! ([`ClientError::TransactionFailed`]), since the server then applied none of them.
//!
//! Must not: retry a transaction whose connection was lost (it may have been applied), or
//! split a batch in two (that would lose its atomicity, or its one point in time).

use corral_proto::{
    Acl, CheckVersionRequest, CreateMode, CreateRequest, CreateTtlRequest, DeleteRequest,
    ErrorCode, GetDataRequest, MultiResult, Request, Response, SetDataRequest, Stat,
};

use crate::{Client, ClientError};

/// What one operation of a committed [`Transaction`] did, in the order they were added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResult {
    /// A node was created at `path` (chroot-relative, with its sequence suffix). The Stat is
    /// there for containers and TTL nodes, whose create answers with one.
    Created {
        /// The node's actual path.
        path: String,
        /// Its Stat, when the server sent one.
        stat: Option<Stat>,
    },
    /// A node was deleted.
    Deleted,
    /// A node's data was set; its new Stat.
    DataSet(Stat),
    /// A version check held.
    Checked,
}

/// A multi under construction: see [`Client::transaction`].
#[derive(Debug, Clone)]
#[must_use = "a transaction does nothing until it is committed"]
pub struct Transaction {
    client: Client,
    ops: Vec<Request>,
    /// The first path that was not absolute: the commit fails with it, sending nothing.
    bad_path: Option<String>,
}

impl Transaction {
    fn push(mut self, path: &str, op: impl FnOnce(String) -> Request) -> Transaction {
        match self.client.inner.server_path(path) {
            Ok(p) => self.ops.push(op(p)),
            Err(_) => {
                self.bad_path.get_or_insert_with(|| path.to_string());
            }
        }
        self
    }

    /// Creates a node (any mode but the TTL ones: see [`Transaction::create_ttl`]).
    pub fn create(self, path: &str, data: &[u8], acl: &[Acl], mode: CreateMode) -> Transaction {
        let body = |path| CreateRequest {
            path,
            data: Some(data.to_vec()),
            acl: acl.to_vec(),
            flags: mode.code(),
        };
        // A container is made with createContainer; a TTL mode without a TTL is the server's
        // to refuse, as it is when the Java client sends it.
        if mode == CreateMode::Container {
            self.push(path, |p| Request::CreateContainer(body(p)))
        } else {
            self.push(path, |p| Request::Create(body(p)))
        }
    }

    /// Creates a node with a time-to-live (mode PersistentWithTtl or
    /// PersistentSequentialWithTtl; the server needs extended types enabled).
    pub fn create_ttl(
        self,
        path: &str,
        data: &[u8],
        acl: &[Acl],
        mode: CreateMode,
        ttl_ms: i64,
    ) -> Transaction {
        self.push(path, |path| {
            Request::CreateTtl(CreateTtlRequest {
                path,
                data: Some(data.to_vec()),
                acl: acl.to_vec(),
                flags: mode.code(),
                ttl: ttl_ms,
            })
        })
    }

    /// Deletes a node; `version` -1 matches any version.
    pub fn delete(self, path: &str, version: i32) -> Transaction {
        self.push(path, |path| {
            Request::Delete(DeleteRequest { path, version })
        })
    }

    /// Sets a node's data; `version` -1 matches any version.
    pub fn set_data(self, path: &str, data: &[u8], version: i32) -> Transaction {
        self.push(path, |path| {
            Request::SetData(SetDataRequest {
                path,
                data: Some(data.to_vec()),
                version,
            })
        })
    }

    /// Fails the whole transaction unless the node is at `version`.
    pub fn check(self, path: &str, version: i32) -> Transaction {
        self.push(path, |path| {
            Request::Check(CheckVersionRequest { path, version })
        })
    }

    /// Sends the operations as one multi. Either all were applied (one [`OpResult`] each, in
    /// order) or none was: [`ClientError::TransactionFailed`] names the first operation the
    /// server refused and why. An empty transaction succeeds without asking the server.
    pub async fn commit(self) -> Result<Vec<OpResult>, ClientError> {
        if let Some(p) = self.bad_path {
            return Err(ClientError::BadPath(p));
        }
        if self.ops.is_empty() {
            return Ok(Vec::new());
        }
        let client = self.client;
        let c = client.conn().await?;
        let results = c.multi(self.ops).await.map_err(Client::lost)?;
        // The server marks the operations it did not get to (or rolled back) with Ok or
        // RuntimeInconsistency, and the one that failed with its own code.
        let failed = results.iter().enumerate().find_map(|(index, r)| match r {
            MultiResult::Error(code)
                if *code != ErrorCode::Ok && *code != ErrorCode::RuntimeInconsistency =>
            {
                Some((index, *code))
            }
            _ => None,
        });
        if let Some((index, code)) = failed {
            return Err(ClientError::TransactionFailed { index, code });
        }
        results
            .into_iter()
            .map(|r| match r {
                MultiResult::Create(p) => Ok(OpResult::Created {
                    path: client.inner.client_path(&p),
                    stat: None,
                }),
                MultiResult::Create2(p, s) => Ok(OpResult::Created {
                    path: client.inner.client_path(&p),
                    stat: Some(s),
                }),
                MultiResult::Delete => Ok(OpResult::Deleted),
                MultiResult::SetData(s) => Ok(OpResult::DataSet(s)),
                MultiResult::Check => Ok(OpResult::Checked),
                r => Err(ClientError::UnexpectedResponse(format!(
                    "in a multi's results: {r:?}"
                ))),
            })
            .collect()
    }
}

/// What one read of a [`MultiRead`] found, in the order they were added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadResult {
    /// getData: the node's data (null reads as empty, as [`Client::get_data`]) and Stat.
    Data(Vec<u8>, Stat),
    /// getChildren: the node's children (names).
    Children(Vec<String>),
    /// This read failed (e.g. NoNode); the others still answered.
    Error(ErrorCode),
}

/// A multiRead under construction: see [`Client::multi_read`].
#[derive(Debug, Clone)]
#[must_use = "a multiRead does nothing until it is run"]
pub struct MultiRead {
    client: Client,
    ops: Vec<Request>,
    bad_path: Option<String>,
}

impl MultiRead {
    fn push(mut self, path: &str, op: fn(GetDataRequest) -> Request) -> MultiRead {
        match self.client.inner.server_path(path) {
            Ok(path) => self.ops.push(op(GetDataRequest { path, watch: false })),
            Err(_) => {
                self.bad_path.get_or_insert_with(|| path.to_string());
            }
        }
        self
    }

    /// Reads a node's data and Stat.
    pub fn get_data(self, path: &str) -> MultiRead {
        self.push(path, Request::GetData)
    }

    /// Lists a node's children.
    pub fn get_children(self, path: &str) -> MultiRead {
        self.push(path, Request::GetChildren)
    }

    /// Sends the reads as one multiRead (3.6+ servers) and returns one [`ReadResult`] each,
    /// in order: a read that failed is a [`ReadResult::Error`], not a failed call.
    pub async fn run(self) -> Result<Vec<ReadResult>, ClientError> {
        if let Some(p) = self.bad_path {
            return Err(ClientError::BadPath(p));
        }
        if self.ops.is_empty() {
            return Ok(Vec::new());
        }
        let c = self.client.conn().await?;
        let results = match c.call(Request::MultiRead(self.ops)).await {
            Ok(Response::Multi(r)) => r,
            Ok(r) => {
                return Err(ClientError::UnexpectedResponse(format!("multiRead: {r:?}")));
            }
            Err(e) => return Err(Client::lost(e)),
        };
        results
            .into_iter()
            .map(|r| match r {
                MultiResult::GetData(d, s) => Ok(ReadResult::Data(d.unwrap_or_default(), s)),
                MultiResult::GetChildren(c) => Ok(ReadResult::Children(c)),
                MultiResult::Error(code) => Ok(ReadResult::Error(code)),
                r => Err(ClientError::UnexpectedResponse(format!(
                    "in a multiRead's results: {r:?}"
                ))),
            })
            .collect()
    }
}

impl Client {
    /// A transaction (ZooKeeper's multi): add creates, deletes, setData and version checks,
    /// then [`Transaction::commit`] applies all of them or none. Paths are chroot-relative.
    ///
    /// ```no_run
    /// # async fn f(client: corral_client::Client) -> Result<(), corral_client::ClientError> {
    /// use corral_client::{open_acl_unsafe, proto::CreateMode};
    /// let done = client
    ///     .transaction()
    ///     .check("/config", 7)
    ///     .set_data("/config", b"new", 7)
    ///     .create("/config/applied-", b"", &open_acl_unsafe(), CreateMode::PersistentSequential)
    ///     .commit()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn transaction(&self) -> Transaction {
        Transaction {
            client: self.clone(),
            ops: Vec::new(),
            bad_path: None,
        }
    }

    /// A multiRead (3.6+ servers): add getData and getChildren reads, then
    /// [`MultiRead::run`] answers them together, from one point in the server's history.
    pub fn multi_read(&self) -> MultiRead {
        MultiRead {
            client: self.clone(),
            ops: Vec::new(),
            bad_path: None,
        }
    }
}
