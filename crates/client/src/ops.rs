//! Typed calls: one request, its reply checked and unpacked, a server-side error turned into
//! [`ClientError::Server`]. Written once, for every type with a `call` that sends a request and
//! returns its checked reply: [`Connection`] (one connection) and [`RawClient`] (a [`Client`]'s
//! session, wherever it is served).
//!
//! [`Client`]: crate::Client

use corral_proto::{
    Acl, AddWatchMode, AddWatchRequest, AuthPacket, CheckVersionRequest, ClientInfo, CreateMode,
    CreateRequest, CreateTtlRequest, DeleteRequest, ErrorCode, GetDataRequest, MultiResult,
    PathRequest, Request, Response, SetAclRequest, SetDataRequest, Stat, WatcherType,
    WatchesRequest,
};

use crate::{ClientError, Connection, RawClient, Reply};

fn unexpected(what: &str, r: &Response) -> ClientError {
    ClientError::UnexpectedResponse(format!("{what}: {r:?}"))
}

impl Connection {
    /// Sends the request; a reply with an error code becomes `Err(Server(code))`.
    pub async fn call(&self, req: Request) -> Result<Response, ClientError> {
        let Reply { err, response, .. } = self.request(req).await?;
        if err != ErrorCode::Ok {
            return Err(ClientError::Server(err));
        }
        Ok(response)
    }

    /// A delete operation for [`Connection::multi`]; `version` -1 matches any version.
    pub fn delete_op(path: &str, version: i32) -> Request {
        Request::Delete(DeleteRequest {
            path: path.into(),
            version,
        })
    }

    /// A check-version operation for [`Connection::multi`].
    pub fn check_op(path: &str, version: i32) -> Request {
        Request::Check(CheckVersionRequest {
            path: path.into(),
            version,
        })
    }
}

/// The typed calls, as inherent methods of `$ty` (which has `async fn call(&self, Request)`).
macro_rules! typed_calls {
    ($ty:ty) => {
        impl $ty {
            /// Creates a node; returns its actual path (with the sequence suffix, if sequential).
            /// TTL modes need [`Self::create_ttl`].
            pub async fn create(
                &self,
                path: &str,
                data: &[u8],
                acl: &[Acl],
                mode: CreateMode,
            ) -> Result<String, ClientError> {
                // Plain create is the oldest, most widely supported request; a container can
                // only be made with createContainer, which answers like create2.
                if mode == CreateMode::Container || mode.is_ttl() {
                    return self.create2(path, data, acl, mode).await.map(|(p, _)| p);
                }
                let body = CreateRequest {
                    path: path.into(),
                    data: Some(data.to_vec()),
                    acl: acl.to_vec(),
                    flags: mode.code(),
                };
                match self.call(Request::Create(body)).await? {
                    Response::Path(p) => Ok(p),
                    r => Err(unexpected("create", &r)),
                }
            }

            /// Creates a node and returns its path and Stat (create2, or createContainer).
            pub async fn create2(
                &self,
                path: &str,
                data: &[u8],
                acl: &[Acl],
                mode: CreateMode,
            ) -> Result<(String, Stat), ClientError> {
                if mode.is_ttl() {
                    return Err(ClientError::Server(ErrorCode::BadArguments));
                }
                let body = CreateRequest {
                    path: path.into(),
                    data: Some(data.to_vec()),
                    acl: acl.to_vec(),
                    flags: mode.code(),
                };
                let req = if mode == CreateMode::Container {
                    Request::CreateContainer(body)
                } else {
                    Request::Create2(body)
                };
                match self.call(req).await? {
                    Response::Create2(p, s) => Ok((p, s)),
                    r => Err(unexpected("create", &r)),
                }
            }

            /// Creates a node with a time-to-live (mode PersistentWithTtl or
            /// PersistentSequentialWithTtl).
            pub async fn create_ttl(
                &self,
                path: &str,
                data: &[u8],
                acl: &[Acl],
                mode: CreateMode,
                ttl_ms: i64,
            ) -> Result<(String, Stat), ClientError> {
                let body = CreateTtlRequest {
                    path: path.into(),
                    data: Some(data.to_vec()),
                    acl: acl.to_vec(),
                    flags: mode.code(),
                    ttl: ttl_ms,
                };
                match self.call(Request::CreateTtl(body)).await? {
                    Response::Create2(p, s) => Ok((p, s)),
                    r => Err(unexpected("createTTL", &r)),
                }
            }

            /// Deletes a node; `version` -1 matches any version.
            pub async fn delete(&self, path: &str, version: i32) -> Result<(), ClientError> {
                self.call(Request::Delete(DeleteRequest {
                    path: path.into(),
                    version,
                }))
                .await
                .map(|_| ())
            }

            /// The node's Stat, or None if it does not exist. With `watch`, leaves an exist watch
            /// (which fires on creation too).
            pub async fn exists(
                &self,
                path: &str,
                watch: bool,
            ) -> Result<Option<Stat>, ClientError> {
                match self
                    .call(Request::Exists(GetDataRequest {
                        path: path.into(),
                        watch,
                    }))
                    .await
                {
                    Ok(Response::Stat(s)) => Ok(Some(s)),
                    Ok(r) => Err(unexpected("exists", &r)),
                    Err(ClientError::Server(ErrorCode::NoNode)) => Ok(None),
                    Err(e) => Err(e),
                }
            }

            /// A node's data and stat; null data reads as empty (see [`Self::get_data_nullable`]).
            pub async fn get_data(
                &self,
                path: &str,
                watch: bool,
            ) -> Result<(Vec<u8>, Stat), ClientError> {
                let (d, s) = self.get_data_nullable(path, watch).await?;
                Ok((d.unwrap_or_default(), s))
            }

            /// A node's data (`None` when the node holds null data, which ZooKeeper keeps apart
            /// from empty data) and stat.
            pub async fn get_data_nullable(
                &self,
                path: &str,
                watch: bool,
            ) -> Result<(Option<Vec<u8>>, Stat), ClientError> {
                match self
                    .call(Request::GetData(GetDataRequest {
                        path: path.into(),
                        watch,
                    }))
                    .await?
                {
                    Response::Data(d, s) => Ok((d, s)),
                    r => Err(unexpected("getData", &r)),
                }
            }

            /// Sets a node's data; `version` -1 matches any version.
            pub async fn set_data(
                &self,
                path: &str,
                data: &[u8],
                version: i32,
            ) -> Result<Stat, ClientError> {
                match self
                    .call(Request::SetData(SetDataRequest {
                        path: path.into(),
                        data: Some(data.to_vec()),
                        version,
                    }))
                    .await?
                {
                    Response::Stat(s) => Ok(s),
                    r => Err(unexpected("setData", &r)),
                }
            }

            /// A node's children (names, not paths); with `watch`, leaves a child watch.
            pub async fn get_children(
                &self,
                path: &str,
                watch: bool,
            ) -> Result<Vec<String>, ClientError> {
                match self
                    .call(Request::GetChildren(GetDataRequest {
                        path: path.into(),
                        watch,
                    }))
                    .await?
                {
                    Response::Children(c) => Ok(c),
                    r => Err(unexpected("getChildren", &r)),
                }
            }

            /// Children and the parent's Stat (getChildren2).
            pub async fn get_children2(
                &self,
                path: &str,
                watch: bool,
            ) -> Result<(Vec<String>, Stat), ClientError> {
                match self
                    .call(Request::GetChildren2(GetDataRequest {
                        path: path.into(),
                        watch,
                    }))
                    .await?
                {
                    Response::Children2(c, s) => Ok((c, s)),
                    r => Err(unexpected("getChildren2", &r)),
                }
            }

            /// A node's ACL and Stat.
            pub async fn get_acl(&self, path: &str) -> Result<(Vec<Acl>, Stat), ClientError> {
                match self
                    .call(Request::GetAcl(PathRequest { path: path.into() }))
                    .await?
                {
                    Response::Acl(a, s) => Ok((a, s)),
                    r => Err(unexpected("getACL", &r)),
                }
            }

            /// Replaces a node's ACL; `version` is the expected aversion, -1 for any.
            pub async fn set_acl(
                &self,
                path: &str,
                acl: &[Acl],
                version: i32,
            ) -> Result<Stat, ClientError> {
                match self
                    .call(Request::SetAcl(SetAclRequest {
                        path: path.into(),
                        acl: acl.to_vec(),
                        version,
                    }))
                    .await?
                {
                    Response::Stat(s) => Ok(s),
                    r => Err(unexpected("setACL", &r)),
                }
            }

            /// Makes the server catch up with the leader before this session's next read.
            pub async fn sync(&self, path: &str) -> Result<String, ClientError> {
                match self
                    .call(Request::Sync(PathRequest { path: path.into() }))
                    .await?
                {
                    Response::Path(p) => Ok(p),
                    r => Err(unexpected("sync", &r)),
                }
            }

            /// Adds an identity to the session (e.g. scheme "digest", auth b"user:password").
            /// A rejected identity makes a ZooKeeper server answer AuthFailed and close the
            /// connection.
            pub async fn add_auth(&self, scheme: &str, auth: &[u8]) -> Result<(), ClientError> {
                let req = Request::Auth(AuthPacket {
                    auth_type: 0,
                    scheme: scheme.into(),
                    auth: auth.to_vec(),
                });
                self.call(req).await.map(|_| ())
            }

            /// The identities the session has authenticated as (3.7+ servers).
            pub async fn who_am_i(&self) -> Result<Vec<ClientInfo>, ClientError> {
                match self.call(Request::WhoAmI).await? {
                    Response::WhoAmI(c) => Ok(c),
                    r => Err(unexpected("whoAmI", &r)),
                }
            }

            /// Runs the operations atomically. When one fails, the server fails them all: the
            /// result is still `Ok`, with [`MultiResult::Error`] entries saying which failed
            /// and why.
            pub async fn multi(&self, ops: Vec<Request>) -> Result<Vec<MultiResult>, ClientError> {
                match self.call(Request::Multi(ops)).await? {
                    Response::Multi(r) => Ok(r),
                    r => Err(unexpected("multi", &r)),
                }
            }

            /// Adds a persistent (optionally recursive) watch on `path` (3.6+ servers).
            pub async fn add_watch(
                &self,
                path: &str,
                mode: AddWatchMode,
            ) -> Result<(), ClientError> {
                self.call(Request::AddWatch(AddWatchRequest {
                    path: path.into(),
                    mode: mode.code(),
                }))
                .await
                .map(|_| ())
            }

            /// Number of all descendants of `path` (3.6+ servers).
            pub async fn get_all_children_number(&self, path: &str) -> Result<i32, ClientError> {
                match self
                    .call(Request::GetAllChildrenNumber(PathRequest {
                        path: path.into(),
                    }))
                    .await?
                {
                    Response::Count(n) => Ok(n),
                    r => Err(unexpected("getAllChildrenNumber", &r)),
                }
            }

            /// Paths of the ephemeral nodes this session owns whose path starts with `prefix`.
            pub async fn get_ephemerals(&self, prefix: &str) -> Result<Vec<String>, ClientError> {
                match self
                    .call(Request::GetEphemerals(PathRequest {
                        path: prefix.into(),
                    }))
                    .await?
                {
                    Response::Paths(p) => Ok(p),
                    r => Err(unexpected("getEphemerals", &r)),
                }
            }

            /// Removes this session's watches of `kind` on `path` on the server (removeWatches,
            /// 3.5+ servers); a server holding none answers NoWatcher.
            pub async fn remove_watches(
                &self,
                path: &str,
                kind: WatcherType,
            ) -> Result<(), ClientError> {
                self.call(Request::RemoveWatches(WatchesRequest {
                    path: path.into(),
                    watcher_type: kind.code(),
                }))
                .await
                .map(|_| ())
            }
        }
    };
}

typed_calls!(Connection);
typed_calls!(RawClient);
