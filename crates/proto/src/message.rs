//! Request and response bodies, tagged by opcode. The request header says which body follows;
//! a response body is interpreted by the opcode of the request it answers.

use crate::codes::{ErrorCode, OpCode};
use crate::jute::{DecodeError, Jute, Reader, Writer};
use crate::records::*;

/// A decoded client request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Create(CreateRequest),
    Create2(CreateRequest),
    CreateContainer(CreateRequest),
    CreateTtl(CreateTtlRequest),
    Delete(DeleteRequest),
    DeleteContainer(PathRequest),
    Exists(GetDataRequest),
    GetData(GetDataRequest),
    SetData(SetDataRequest),
    GetAcl(PathRequest),
    SetAcl(SetAclRequest),
    GetChildren(GetDataRequest),
    GetChildren2(GetDataRequest),
    Sync(PathRequest),
    Ping,
    Check(CheckVersionRequest),
    Multi(Vec<Request>),
    MultiRead(Vec<Request>),
    Reconfig(ReconfigRequest),
    CheckWatches(WatchesRequest),
    RemoveWatches(WatchesRequest),
    Auth(AuthPacket),
    SetWatches(SetWatches),
    SetWatches2(SetWatches2),
    Sasl(SaslRequest),
    GetEphemerals(PathRequest),
    GetAllChildrenNumber(PathRequest),
    AddWatch(AddWatchRequest),
    WhoAmI,
    CloseSession,
}

impl Request {
    pub fn op_code(&self) -> OpCode {
        use Request::*;
        match self {
            Create(_) => OpCode::Create,
            Create2(_) => OpCode::Create2,
            CreateContainer(_) => OpCode::CreateContainer,
            CreateTtl(_) => OpCode::CreateTtl,
            Delete(_) => OpCode::Delete,
            DeleteContainer(_) => OpCode::DeleteContainer,
            Exists(_) => OpCode::Exists,
            GetData(_) => OpCode::GetData,
            SetData(_) => OpCode::SetData,
            GetAcl(_) => OpCode::GetAcl,
            SetAcl(_) => OpCode::SetAcl,
            GetChildren(_) => OpCode::GetChildren,
            GetChildren2(_) => OpCode::GetChildren2,
            Sync(_) => OpCode::Sync,
            Ping => OpCode::Ping,
            Check(_) => OpCode::Check,
            Multi(_) => OpCode::Multi,
            MultiRead(_) => OpCode::MultiRead,
            Reconfig(_) => OpCode::Reconfig,
            CheckWatches(_) => OpCode::CheckWatches,
            RemoveWatches(_) => OpCode::RemoveWatches,
            Auth(_) => OpCode::Auth,
            SetWatches(_) => OpCode::SetWatches,
            SetWatches2(_) => OpCode::SetWatches2,
            Sasl(_) => OpCode::Sasl,
            GetEphemerals(_) => OpCode::GetEphemerals,
            GetAllChildrenNumber(_) => OpCode::GetAllChildrenNumber,
            AddWatch(_) => OpCode::AddWatch,
            WhoAmI => OpCode::WhoAmI,
            CloseSession => OpCode::CloseSession,
        }
    }

    /// Whether the request changes state and so goes through consensus.
    pub fn is_write(&self) -> bool {
        use Request::*;
        matches!(
            self,
            Create(_)
                | Create2(_)
                | CreateContainer(_)
                | CreateTtl(_)
                | Delete(_)
                | DeleteContainer(_)
                | SetData(_)
                | SetAcl(_)
                | Check(_)
                | Multi(_)
                | Reconfig(_)
                | CloseSession
        )
    }

    /// The path a request names, if it names exactly one.
    pub fn path(&self) -> Option<&str> {
        use Request::*;
        Some(match self {
            Create(r) | Create2(r) | CreateContainer(r) => &r.path,
            CreateTtl(r) => &r.path,
            Delete(r) => &r.path,
            DeleteContainer(r)
            | GetAcl(r)
            | Sync(r)
            | GetEphemerals(r)
            | GetAllChildrenNumber(r) => &r.path,
            Exists(r) | GetData(r) | GetChildren(r) | GetChildren2(r) => &r.path,
            SetData(r) => &r.path,
            SetAcl(r) => &r.path,
            Check(r) => &r.path,
            CheckWatches(r) | RemoveWatches(r) => &r.path,
            AddWatch(r) => &r.path,
            _ => return None,
        })
    }

    /// The path a request names, mutable (a client's chroot rewrites it).
    pub fn path_mut(&mut self) -> Option<&mut String> {
        use Request::*;
        Some(match self {
            Create(r) | Create2(r) | CreateContainer(r) => &mut r.path,
            CreateTtl(r) => &mut r.path,
            Delete(r) => &mut r.path,
            DeleteContainer(r)
            | GetAcl(r)
            | Sync(r)
            | GetEphemerals(r)
            | GetAllChildrenNumber(r) => &mut r.path,
            Exists(r) | GetData(r) | GetChildren(r) | GetChildren2(r) => &mut r.path,
            SetData(r) => &mut r.path,
            SetAcl(r) => &mut r.path,
            Check(r) => &mut r.path,
            CheckWatches(r) | RemoveWatches(r) => &mut r.path,
            AddWatch(r) => &mut r.path,
            _ => return None,
        })
    }

    /// Decodes the body that follows a request header carrying `op`.
    pub fn decode(op: i32, body: &[u8]) -> Result<Request, DecodeError> {
        let mut r = Reader::new(body);
        let req = Self::read_body(op, &mut r)?;
        // ZooKeeper tolerates trailing bytes in a request body; so do we.
        Ok(req)
    }

    fn read_body(op: i32, r: &mut Reader<'_>) -> Result<Request, DecodeError> {
        let code = OpCode::from_i32(op).ok_or(DecodeError::UnknownOpCode(op))?;
        use Request as Q;
        Ok(match code {
            OpCode::Create => Q::Create(Jute::read(r)?),
            OpCode::Create2 => Q::Create2(Jute::read(r)?),
            OpCode::CreateContainer => Q::CreateContainer(Jute::read(r)?),
            OpCode::CreateTtl => Q::CreateTtl(Jute::read(r)?),
            OpCode::Delete => Q::Delete(Jute::read(r)?),
            OpCode::DeleteContainer => Q::DeleteContainer(Jute::read(r)?),
            OpCode::Exists => Q::Exists(Jute::read(r)?),
            OpCode::GetData => Q::GetData(Jute::read(r)?),
            OpCode::SetData => Q::SetData(Jute::read(r)?),
            OpCode::GetAcl => Q::GetAcl(Jute::read(r)?),
            OpCode::SetAcl => Q::SetAcl(Jute::read(r)?),
            OpCode::GetChildren => Q::GetChildren(Jute::read(r)?),
            OpCode::GetChildren2 => Q::GetChildren2(Jute::read(r)?),
            OpCode::Sync => Q::Sync(Jute::read(r)?),
            OpCode::Ping => Q::Ping,
            OpCode::Check => Q::Check(Jute::read(r)?),
            OpCode::Multi => Q::Multi(read_multi(r, false)?),
            OpCode::MultiRead => Q::MultiRead(read_multi(r, true)?),
            OpCode::Reconfig => Q::Reconfig(Jute::read(r)?),
            OpCode::CheckWatches => Q::CheckWatches(Jute::read(r)?),
            OpCode::RemoveWatches => Q::RemoveWatches(Jute::read(r)?),
            OpCode::Auth => Q::Auth(Jute::read(r)?),
            OpCode::SetWatches => Q::SetWatches(Jute::read(r)?),
            OpCode::SetWatches2 => Q::SetWatches2(Jute::read(r)?),
            OpCode::Sasl => Q::Sasl(Jute::read(r)?),
            OpCode::GetEphemerals => Q::GetEphemerals(Jute::read(r)?),
            OpCode::GetAllChildrenNumber => Q::GetAllChildrenNumber(Jute::read(r)?),
            OpCode::AddWatch => Q::AddWatch(Jute::read(r)?),
            OpCode::WhoAmI => Q::WhoAmI,
            OpCode::CloseSession => Q::CloseSession,
            OpCode::Notification | OpCode::CreateSession | OpCode::Error => {
                return Err(DecodeError::UnknownOpCode(op))
            }
        })
    }

    /// Encodes the body (not the header).
    pub fn write_body(&self, w: &mut Writer) {
        use Request::*;
        match self {
            Create(r) | Create2(r) | CreateContainer(r) => r.write(w),
            CreateTtl(r) => r.write(w),
            Delete(r) => r.write(w),
            DeleteContainer(r)
            | GetAcl(r)
            | Sync(r)
            | GetEphemerals(r)
            | GetAllChildrenNumber(r) => r.write(w),
            Exists(r) | GetData(r) | GetChildren(r) | GetChildren2(r) => r.write(w),
            SetData(r) => r.write(w),
            SetAcl(r) => r.write(w),
            Check(r) => r.write(w),
            Multi(ops) | MultiRead(ops) => {
                for op in ops {
                    MultiHeader {
                        op: op.op_code().code(),
                        done: false,
                        err: -1,
                    }
                    .write(w);
                    op.write_body(w);
                }
                MultiHeader {
                    op: -1,
                    done: true,
                    err: -1,
                }
                .write(w);
            }
            Reconfig(r) => r.write(w),
            CheckWatches(r) | RemoveWatches(r) => r.write(w),
            Auth(r) => r.write(w),
            SetWatches(r) => r.write(w),
            SetWatches2(r) => r.write(w),
            Sasl(r) => r.write(w),
            AddWatch(r) => r.write(w),
            Ping | WhoAmI | CloseSession => {}
        }
    }

    /// A whole frame body: header then request.
    pub fn to_frame_body(&self, xid: i32) -> Vec<u8> {
        let mut w = Writer::new();
        self.write_frame_body(xid, &mut w);
        w.buf
    }

    /// The whole frame, length prefix included, encoded in place (no copy to prefix it).
    pub fn to_frame(&self, xid: i32) -> Vec<u8> {
        let mut w = Writer::new();
        w.buf.extend_from_slice(&[0; 4]);
        self.write_frame_body(xid, &mut w);
        let len = (w.buf.len() - 4) as i32;
        w.buf[..4].copy_from_slice(&len.to_be_bytes());
        w.buf
    }

    fn write_frame_body(&self, xid: i32, w: &mut Writer) {
        RequestHeader {
            xid,
            op: self.op_code().code(),
        }
        .write(w);
        self.write_body(w);
    }
}

fn read_multi(r: &mut Reader<'_>, read_only: bool) -> Result<Vec<Request>, DecodeError> {
    let mut ops = Vec::new();
    loop {
        let h = MultiHeader::read(r)?;
        if h.done {
            return Ok(ops);
        }
        let allowed = if read_only {
            matches!(
                OpCode::from_i32(h.op),
                Some(OpCode::GetChildren | OpCode::GetData)
            )
        } else {
            matches!(
                OpCode::from_i32(h.op),
                Some(
                    OpCode::Create
                        | OpCode::Create2
                        | OpCode::CreateContainer
                        | OpCode::CreateTtl
                        | OpCode::Delete
                        | OpCode::SetData
                        | OpCode::Check
                )
            )
        };
        if !allowed {
            return Err(DecodeError::BadMultiOp(h.op));
        }
        ops.push(Request::read_body(h.op, r)?);
    }
}

/// One entry of a multi or multiRead reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultiResult {
    Create(String),
    Create2(String, Stat),
    Delete,
    SetData(Stat),
    Check,
    GetData(Option<Vec<u8>>, Stat),
    GetChildren(Vec<String>),
    Error(ErrorCode),
}

/// A decoded reply body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// Replies with no body (delete, ping, auth, setWatches, ... and every error reply).
    Empty,
    /// create, sync: a path.
    Path(String),
    /// create2, createContainer, createTTL.
    Create2(String, Stat),
    /// exists, setData, setACL.
    Stat(Stat),
    /// getData, reconfig. `None` is null data.
    Data(Option<Vec<u8>>, Stat),
    Acl(Vec<Acl>, Stat),
    Children(Vec<String>),
    Children2(Vec<String>, Stat),
    Multi(Vec<MultiResult>),
    /// getEphemerals.
    Paths(Vec<String>),
    /// getAllChildrenNumber.
    Count(i32),
    WhoAmI(Vec<ClientInfo>),
    Sasl(Vec<u8>),
    /// addWatch: ZooKeeper's ErrorResponse, the error code again (0 on success). Without it
    /// the Java client cannot decode the reply and drops its connection.
    ErrorResponse(i32),
}

impl Response {
    pub fn write(&self, w: &mut Writer) {
        match self {
            Response::Empty => {}
            Response::Path(p) => w.string(p),
            Response::Create2(p, s) => {
                w.string(p);
                s.write(w)
            }
            Response::Stat(s) => s.write(w),
            Response::Data(d, s) => {
                w.nullable_buffer(d);
                s.write(w)
            }
            Response::Acl(a, s) => {
                w.vec(a);
                s.write(w)
            }
            Response::Children(c) | Response::Paths(c) => w.vec(c),
            Response::Children2(c, s) => {
                w.vec(c);
                s.write(w)
            }
            Response::Multi(results) => {
                for res in results {
                    let (op, err) = match res {
                        MultiResult::Create(_) => (OpCode::Create, 0),
                        MultiResult::Create2(..) => (OpCode::Create2, 0),
                        MultiResult::Delete => (OpCode::Delete, 0),
                        MultiResult::SetData(_) => (OpCode::SetData, 0),
                        MultiResult::Check => (OpCode::Check, 0),
                        MultiResult::GetData(..) => (OpCode::GetData, 0),
                        MultiResult::GetChildren(_) => (OpCode::GetChildren, 0),
                        MultiResult::Error(e) => (OpCode::Error, e.code()),
                    };
                    MultiHeader {
                        op: op.code(),
                        done: false,
                        err,
                    }
                    .write(w);
                    match res {
                        MultiResult::Create(p) => w.string(p),
                        MultiResult::Create2(p, s) => {
                            w.string(p);
                            s.write(w)
                        }
                        MultiResult::SetData(s) => s.write(w),
                        MultiResult::GetData(d, s) => {
                            w.nullable_buffer(d);
                            s.write(w)
                        }
                        MultiResult::GetChildren(c) => w.vec(c),
                        MultiResult::Error(e) => w.i32(e.code()),
                        MultiResult::Delete | MultiResult::Check => {}
                    }
                }
                MultiHeader {
                    op: -1,
                    done: true,
                    err: -1,
                }
                .write(w);
            }
            Response::Count(n) => w.i32(*n),
            Response::WhoAmI(c) => w.vec(c),
            Response::Sasl(t) => w.buffer(t),
            Response::ErrorResponse(code) => w.i32(*code),
        }
    }

    /// Decodes the body of a successful reply to a request with opcode `op`.
    pub fn decode(op: OpCode, body: &[u8]) -> Result<Response, DecodeError> {
        let mut r = Reader::new(body);
        let resp = match op {
            OpCode::Create | OpCode::Sync => Response::Path(r.string()?),
            OpCode::Create2 | OpCode::CreateContainer | OpCode::CreateTtl => {
                Response::Create2(r.string()?, Stat::read(&mut r)?)
            }
            OpCode::Exists | OpCode::SetData | OpCode::SetAcl => {
                Response::Stat(Stat::read(&mut r)?)
            }
            OpCode::GetData | OpCode::Reconfig => {
                Response::Data(r.nullable_buffer()?, Stat::read(&mut r)?)
            }
            OpCode::GetAcl => Response::Acl(r.vec()?, Stat::read(&mut r)?),
            OpCode::GetChildren => Response::Children(r.vec()?),
            OpCode::GetChildren2 => Response::Children2(r.vec()?, Stat::read(&mut r)?),
            OpCode::GetEphemerals => Response::Paths(r.vec()?),
            OpCode::GetAllChildrenNumber => Response::Count(r.i32()?),
            OpCode::WhoAmI => Response::WhoAmI(r.vec()?),
            OpCode::Sasl => Response::Sasl(r.buffer()?),
            OpCode::AddWatch => Response::ErrorResponse(r.i32()?),
            OpCode::Multi | OpCode::MultiRead => {
                let mut results = Vec::new();
                loop {
                    let h = MultiHeader::read(&mut r)?;
                    if h.done {
                        break;
                    }
                    let res = match OpCode::from_i32(h.op) {
                        Some(OpCode::Create) => MultiResult::Create(r.string()?),
                        Some(OpCode::Create2 | OpCode::CreateContainer | OpCode::CreateTtl) => {
                            MultiResult::Create2(r.string()?, Stat::read(&mut r)?)
                        }
                        Some(OpCode::Delete) => MultiResult::Delete,
                        Some(OpCode::SetData) => MultiResult::SetData(Stat::read(&mut r)?),
                        Some(OpCode::Check) => MultiResult::Check,
                        Some(OpCode::GetData) => {
                            MultiResult::GetData(r.nullable_buffer()?, Stat::read(&mut r)?)
                        }
                        Some(OpCode::GetChildren) => MultiResult::GetChildren(r.vec()?),
                        Some(OpCode::Error) => {
                            let code = r.i32()?;
                            MultiResult::Error(
                                ErrorCode::from_i32(code).unwrap_or(ErrorCode::SystemError),
                            )
                        }
                        _ => return Err(DecodeError::BadMultiOp(h.op)),
                    };
                    results.push(res);
                }
                Response::Multi(results)
            }
            _ => Response::Empty,
        };
        Ok(resp)
    }
}

/// Body of a watch notification frame (xid -1).
pub fn notification_body(zxid: i64, event: &WatcherEvent) -> Vec<u8> {
    let mut w = Writer::new();
    ReplyHeader {
        xid: crate::codes::xid::NOTIFICATION,
        zxid,
        err: 0,
    }
    .write(&mut w);
    event.write(&mut w);
    w.buf
}

/// A whole reply frame body: header, then the body when `err` is Ok. (A multi with a failed op
/// is answered Ok, its per-op errors in the body, as ZooKeeper does.)
pub fn reply_body(xid: i32, zxid: i64, err: ErrorCode, resp: &Response) -> Vec<u8> {
    let mut w = Writer::new();
    ReplyHeader {
        xid,
        zxid,
        err: err.code(),
    }
    .write(&mut w);
    if err == ErrorCode::Ok {
        resp.write(&mut w);
    }
    w.buf
}
