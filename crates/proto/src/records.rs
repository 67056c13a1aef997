//! Every record of ZooKeeper's client protocol (zookeeper.jute, 3.9), field for field.

use crate::{perms, record};

record!(Id {
    scheme: ustring,
    id: ustring
});
record!(Acl { perms: int, id: Id });
record!(
    /// The metadata of a znode as clients see it.
    Stat {
        czxid: long,
        mzxid: long,
        ctime: long,
        mtime: long,
        version: int,
        cversion: int,
        aversion: int,
        ephemeral_owner: long,
        data_length: int,
        num_children: int,
        pzxid: long,
    }
);

record!(RequestHeader { xid: int, op: int });
record!(ReplyHeader {
    xid: int,
    zxid: long,
    err: int
});
record!(MultiHeader {
    op: int,
    done: boolean,
    err: int
});

record!(SetWatches {
    relative_zxid: long,
    data_watches: vector<String>,
    exist_watches: vector<String>,
    child_watches: vector<String>,
});
record!(SetWatches2 {
    relative_zxid: long,
    data_watches: vector<String>,
    exist_watches: vector<String>,
    child_watches: vector<String>,
    persistent_watches: vector<String>,
    persistent_recursive_watches: vector<String>,
});
record!(AuthPacket {
    auth_type: int,
    scheme: ustring,
    auth: buffer
});

record!(
    /// Requests whose body is a single path: getACL, sync, getEphemerals (prefix),
    /// getAllChildrenNumber, deleteContainer.
    PathRequest { path: ustring }
);
record!(GetDataRequest {
    path: ustring,
    watch: boolean
});
/// Znode data is a nullable buffer: a client may send null, and ZooKeeper hands null back.
pub type Data = Option<Vec<u8>>;

record!(SetDataRequest {
    path: ustring,
    data: nbuffer,
    version: int
});
record!(ReconfigRequest {
    joining_servers: ustring,
    leaving_servers: ustring,
    new_members: ustring,
    cur_config_id: long,
});
record!(SaslRequest { token: buffer });
record!(CreateRequest { path: ustring, data: nbuffer, acl: vector<Acl>, flags: int });
record!(CreateTtlRequest { path: ustring, data: nbuffer, acl: vector<Acl>, flags: int, ttl: long });
record!(DeleteRequest {
    path: ustring,
    version: int
});
record!(CheckVersionRequest {
    path: ustring,
    version: int
});
record!(SetAclRequest { path: ustring, acl: vector<Acl>, version: int });
record!(
    /// checkWatches and removeWatches: `watcher_type` is a WatcherType value.
    WatchesRequest { path: ustring, watcher_type: int }
);
record!(AddWatchRequest {
    path: ustring,
    mode: int
});

record!(WatcherEvent {
    event_type: int,
    state: int,
    path: ustring
});
record!(ErrorResponse { err: int });
record!(PathResponse { path: ustring });
record!(Create2Response {
    path: ustring,
    stat: Stat
});
record!(StatResponse { stat: Stat });
record!(GetDataResponse {
    data: nbuffer,
    stat: Stat
});
record!(GetChildrenResponse { children: vector<String> });
record!(GetChildren2Response { children: vector<String>, stat: Stat });
record!(GetAclResponse { acl: vector<Acl>, stat: Stat });
record!(CountResponse { count: int });
record!(SaslResponse { token: buffer });
record!(ClientInfo {
    auth_scheme: ustring,
    user: ustring
});
record!(WhoAmIResponse { client_info: vector<ClientInfo> });

/// The handshake a client sends first. 3.4 clients omit the trailing `read_only` byte; the
/// server must answer them without it too, so whether it was present is kept.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectRequest {
    pub protocol_version: i32,
    pub last_zxid_seen: i64,
    pub timeout: i32,
    pub session_id: i64,
    pub passwd: Vec<u8>,
    pub read_only: Option<bool>,
}

impl crate::jute::Jute for ConnectRequest {
    const MIN_SIZE: usize = 28;
    fn read(r: &mut crate::jute::Reader<'_>) -> Result<Self, crate::jute::DecodeError> {
        Ok(ConnectRequest {
            protocol_version: r.i32()?,
            last_zxid_seen: r.i64()?,
            timeout: r.i32()?,
            session_id: r.i64()?,
            passwd: r.buffer()?,
            read_only: if r.remaining() > 0 {
                Some(r.bool()?)
            } else {
                None
            },
        })
    }
    fn write(&self, w: &mut crate::jute::Writer) {
        w.i32(self.protocol_version);
        w.i64(self.last_zxid_seen);
        w.i32(self.timeout);
        w.i64(self.session_id);
        w.buffer(&self.passwd);
        if let Some(ro) = self.read_only {
            w.bool(ro);
        }
    }
}

/// The server's answer to the handshake. A timeout of 0 with session id 0 tells the client
/// its session has expired.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectResponse {
    pub protocol_version: i32,
    pub timeout: i32,
    pub session_id: i64,
    pub passwd: Vec<u8>,
    pub read_only: Option<bool>,
}

impl crate::jute::Jute for ConnectResponse {
    const MIN_SIZE: usize = 20;
    fn read(r: &mut crate::jute::Reader<'_>) -> Result<Self, crate::jute::DecodeError> {
        Ok(ConnectResponse {
            protocol_version: r.i32()?,
            timeout: r.i32()?,
            session_id: r.i64()?,
            passwd: r.buffer()?,
            read_only: if r.remaining() > 0 {
                Some(r.bool()?)
            } else {
                None
            },
        })
    }
    fn write(&self, w: &mut crate::jute::Writer) {
        w.i32(self.protocol_version);
        w.i32(self.timeout);
        w.i64(self.session_id);
        w.buffer(&self.passwd);
        if let Some(ro) = self.read_only {
            w.bool(ro);
        }
    }
}

fn anyone() -> Id {
    Id {
        scheme: "world".into(),
        id: "anyone".into(),
    }
}

/// Everyone may do everything (ZooDefs.Ids.OPEN_ACL_UNSAFE).
pub fn open_acl_unsafe() -> Vec<Acl> {
    vec![Acl {
        perms: perms::ALL,
        id: anyone(),
    }]
}

/// Everyone may read (ZooDefs.Ids.READ_ACL_UNSAFE).
pub fn read_acl_unsafe() -> Vec<Acl> {
    vec![Acl {
        perms: perms::READ,
        id: anyone(),
    }]
}

/// Every permission for the identities the session has authenticated as
/// (ZooDefs.Ids.CREATOR_ALL_ACL).
pub fn creator_all_acl() -> Vec<Acl> {
    vec![Acl {
        perms: perms::ALL,
        id: Id {
            scheme: "auth".into(),
            id: String::new(),
        },
    }]
}
