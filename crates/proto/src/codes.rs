//! Numeric constants of the protocol: opcodes, error codes, special xids, watch event
//! types, keeper states, watcher types, create modes and permission bits.

macro_rules! int_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $value:expr),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(i32)]
        pub enum $name { $($(#[$vm])* $variant = $value),* }
        impl $name {
            pub fn from_i32(v: i32) -> Option<Self> {
                match v { $($value => Some($name::$variant),)* _ => None }
            }
            pub fn code(self) -> i32 { self as i32 }
            pub fn name(self) -> &'static str {
                match self { $($name::$variant => stringify!($variant)),* }
            }
        }
    };
}

int_enum!(
    /// Request types (ZooDefs.OpCode).
    OpCode {
        Notification = 0,
        Create = 1,
        Delete = 2,
        Exists = 3,
        GetData = 4,
        SetData = 5,
        GetAcl = 6,
        SetAcl = 7,
        GetChildren = 8,
        Sync = 9,
        Ping = 11,
        GetChildren2 = 12,
        Check = 13,
        Multi = 14,
        Create2 = 15,
        Reconfig = 16,
        CheckWatches = 17,
        RemoveWatches = 18,
        CreateContainer = 19,
        DeleteContainer = 20,
        CreateTtl = 21,
        MultiRead = 22,
        Auth = 100,
        SetWatches = 101,
        Sasl = 102,
        GetEphemerals = 103,
        GetAllChildrenNumber = 104,
        SetWatches2 = 105,
        AddWatch = 106,
        WhoAmI = 107,
        CreateSession = -10,
        CloseSession = -11,
        Error = -1,
    }
);

impl OpCode {
    /// The four-letter abbreviation ZooKeeper shows as a connection's last operation (`lop=` in
    /// the `cons` admin command). `None` for the opcodes ZooKeeper never names there
    /// (notification, auth, sasl, error), for which it keeps showing its initial "NA".
    pub fn short_name(self) -> Option<&'static str> {
        use OpCode::*;
        Some(match self {
            Create | Create2 | CreateContainer | CreateTtl => "CREA",
            Delete | DeleteContainer => "DELE",
            Exists => "EXIS",
            GetData => "GETD",
            SetData => "SETD",
            GetAcl => "GETA",
            SetAcl => "SETA",
            GetChildren | GetChildren2 => "GETC",
            Sync => "SYNC",
            Ping => "PING",
            Check => "CHEC",
            Multi => "MULT",
            Reconfig => "RECO",
            CheckWatches => "CHKW",
            RemoveWatches => "REMW",
            MultiRead => "MLTR",
            SetWatches => "SETW",
            GetEphemerals => "GETE",
            GetAllChildrenNumber => "GETACN",
            SetWatches2 => "STW2",
            AddWatch => "ADDW",
            WhoAmI => "HOMI",
            CreateSession => "SESS",
            CloseSession => "CLOS",
            Notification | Auth | Sasl | Error => return None,
        })
    }
}

int_enum!(
    /// KeeperException.Code values carried in `ReplyHeader.err`.
    ErrorCode {
        Ok = 0,
        SystemError = -1,
        RuntimeInconsistency = -2,
        DataInconsistency = -3,
        ConnectionLoss = -4,
        MarshallingError = -5,
        Unimplemented = -6,
        OperationTimeout = -7,
        BadArguments = -8,
        UnknownSession = -12,
        NewConfigNoQuorum = -13,
        ReconfigInProgress = -14,
        ApiError = -100,
        NoNode = -101,
        NoAuth = -102,
        BadVersion = -103,
        NoChildrenForEphemerals = -108,
        NodeExists = -110,
        NotEmpty = -111,
        SessionExpired = -112,
        InvalidCallback = -113,
        InvalidAcl = -114,
        AuthFailed = -115,
        SessionMoved = -118,
        NotReadOnly = -119,
        EphemeralOnLocalSession = -120,
        NoWatcher = -121,
        RequestTimeout = -122,
        ReconfigDisabled = -123,
        SessionClosedRequireSaslAuth = -124,
        QuotaExceeded = -125,
        ThrottledOp = -127,
    }
);

int_enum!(
    /// Watcher.Event.EventType.
    EventType {
        None = -1,
        NodeCreated = 1,
        NodeDeleted = 2,
        NodeDataChanged = 3,
        NodeChildrenChanged = 4,
        DataWatchRemoved = 5,
        ChildWatchRemoved = 6,
        PersistentWatchRemoved = 7,
    }
);

int_enum!(
    /// Watcher.Event.KeeperState.
    KeeperState {
        Disconnected = 0,
        SyncConnected = 3,
        AuthFailed = 4,
        ConnectedReadOnly = 5,
        SaslAuthenticated = 6,
        Expired = -112,
        Closed = 7,
    }
);

int_enum!(
    /// Watcher.WatcherType, used by checkWatches and removeWatches.
    WatcherType {
        Children = 1,
        Data = 2,
        Any = 3,
        Persistent = 4,
        PersistentRecursive = 5,
    }
);

int_enum!(
    /// AddWatchModes.
    AddWatchMode {
        Persistent = 0,
        PersistentRecursive = 1,
    }
);

int_enum!(
    /// CreateMode flags.
    CreateMode {
        Persistent = 0,
        Ephemeral = 1,
        PersistentSequential = 2,
        EphemeralSequential = 3,
        Container = 4,
        PersistentWithTtl = 5,
        PersistentSequentialWithTtl = 6,
    }
);

impl CreateMode {
    pub fn is_ephemeral(self) -> bool {
        matches!(
            self,
            CreateMode::Ephemeral | CreateMode::EphemeralSequential
        )
    }
    pub fn is_sequential(self) -> bool {
        matches!(
            self,
            CreateMode::PersistentSequential
                | CreateMode::EphemeralSequential
                | CreateMode::PersistentSequentialWithTtl
        )
    }
    pub fn is_ttl(self) -> bool {
        matches!(
            self,
            CreateMode::PersistentWithTtl | CreateMode::PersistentSequentialWithTtl
        )
    }
}

/// Special xids.
pub mod xid {
    pub const NOTIFICATION: i32 = -1;
    pub const PING: i32 = -2;
    pub const AUTH: i32 = -4;
    pub const SET_WATCHES: i32 = -8;
}

/// ZooDefs.Perms bits.
pub mod perms {
    pub const READ: i32 = 1;
    pub const WRITE: i32 = 2;
    pub const CREATE: i32 = 4;
    pub const DELETE: i32 = 8;
    pub const ADMIN: i32 = 16;
    pub const ALL: i32 = 31;
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::OpCode;

    #[test]
    fn short_names_are_zookeepers() {
        // (opcode, the name ZooKeeper 3.8 shows in `cons`), written out from its source.
        let expected = [
            (1, "CREA"),
            (15, "CREA"),
            (19, "CREA"),
            (21, "CREA"),
            (2, "DELE"),
            (20, "DELE"),
            (3, "EXIS"),
            (4, "GETD"),
            (5, "SETD"),
            (6, "GETA"),
            (7, "SETA"),
            (8, "GETC"),
            (12, "GETC"),
            (9, "SYNC"),
            (11, "PING"),
            (13, "CHEC"),
            (14, "MULT"),
            (16, "RECO"),
            (17, "CHKW"),
            (18, "REMW"),
            (22, "MLTR"),
            (101, "SETW"),
            (103, "GETE"),
            (104, "GETACN"),
            (105, "STW2"),
            (106, "ADDW"),
            (107, "HOMI"),
            (-10, "SESS"),
            (-11, "CLOS"),
        ];
        for (code, name) in expected {
            let op = OpCode::from_i32(code).unwrap_or_else(|| panic!("no opcode {code}"));
            assert_eq!(op.short_name(), Some(name), "{op:?}");
        }
        for op in [
            OpCode::Notification,
            OpCode::Auth,
            OpCode::Sasl,
            OpCode::Error,
        ] {
            assert_eq!(op.short_name(), None, "{op:?}");
        }
    }
}
