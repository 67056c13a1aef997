//! ZooKeeper's transaction log (`log.<hex zxid>`): the header, then checksummed records of
//! TxnHeader and txn, each parsed into a [`Txn`]; zeros (preallocation) or a torn record end
//! it. Every error names the file and the byte offset.

use std::path::Path;

use corral_proto::{Acl, DecodeError, Reader};

use super::super::ImportError;
use super::{adler32, op, FileReader};

const LOG_MAGIC: &[u8; 4] = b"ZKLG";

/// TxnHeader.
#[derive(Debug, Clone)]
pub(crate) struct TxnHeader {
    pub client_id: i64,
    pub zxid: i64,
    pub time: i64,
    pub kind: i32,
}

/// One transaction's body, as the kinds ZooKeeper logs.
#[derive(Debug, Clone)]
pub(crate) enum Txn {
    CreateSession {
        timeout: i32,
    },
    /// 3.6+ lists the ephemerals to delete; older logs leave it to the server.
    CloseSession {
        paths: Option<Vec<String>>,
    },
    /// create and create2; `parent_cversion` -1 for 3.2-era records without it.
    Create {
        path: String,
        data: Option<Vec<u8>>,
        acl: Vec<Acl>,
        ephemeral: bool,
        parent_cversion: i32,
    },
    CreateContainer {
        path: String,
        data: Option<Vec<u8>>,
        acl: Vec<Acl>,
        parent_cversion: i32,
    },
    CreateTtl {
        path: String,
        data: Option<Vec<u8>>,
        acl: Vec<Acl>,
        parent_cversion: i32,
        ttl: i64,
    },
    /// delete and deleteContainer.
    Delete {
        path: String,
    },
    /// setData and reconfig (which sets /zookeeper/config).
    SetData {
        path: String,
        data: Option<Vec<u8>>,
        version: i32,
    },
    SetAcl {
        path: String,
        acl: Vec<Acl>,
        version: i32,
    },
    Check,
    Error,
    /// Sub-txns with their kinds.
    Multi(Vec<(i32, Txn)>),
}

/// Parses a txn body of `kind`. `top` is false inside a multi.
fn parse_txn(kind: i32, r: &mut Reader<'_>, top: bool) -> Result<Txn, String> {
    let e = |e: DecodeError| e.to_string();
    Ok(match kind {
        op::CREATE_SESSION if top => Txn::CreateSession {
            timeout: r.i32().map_err(e)?,
        },
        op::CLOSE_SESSION if top => {
            // CloseSessionTxn (3.6+, unless disabled), possibly followed by a 12-byte digest;
            // anything else is an older record without it.
            let mut probe = Reader::new(r.take(r.remaining()).map_err(e)?);
            let paths = probe
                .vec::<String>()
                .ok()
                .filter(|_| matches!(probe.remaining(), 0 | 12));
            Txn::CloseSession { paths }
        }
        op::CREATE | op::CREATE2 => {
            let path = r.string().map_err(e)?;
            let data = r.nullable_buffer().map_err(e)?;
            let acl = r.vec::<Acl>().map_err(e)?;
            let ephemeral = r.bool().map_err(e)?;
            // CreateTxnV0 had no parentCVersion: -1 asks for the parent's own plus one.
            let parent_cversion = if r.remaining() >= 4 {
                r.i32().map_err(e)?
            } else if r.remaining() == 0 && kind == op::CREATE {
                -1
            } else {
                return Err("create record truncated".into());
            };
            Txn::Create {
                path,
                data,
                acl,
                ephemeral,
                parent_cversion,
            }
        }
        op::CREATE_CONTAINER => Txn::CreateContainer {
            path: r.string().map_err(e)?,
            data: r.nullable_buffer().map_err(e)?,
            acl: r.vec::<Acl>().map_err(e)?,
            parent_cversion: r.i32().map_err(e)?,
        },
        op::CREATE_TTL => Txn::CreateTtl {
            path: r.string().map_err(e)?,
            data: r.nullable_buffer().map_err(e)?,
            acl: r.vec::<Acl>().map_err(e)?,
            parent_cversion: r.i32().map_err(e)?,
            ttl: r.i64().map_err(e)?,
        },
        op::DELETE | op::DELETE_CONTAINER => Txn::Delete {
            path: r.string().map_err(e)?,
        },
        op::SET_DATA | op::RECONFIG => Txn::SetData {
            path: r.string().map_err(e)?,
            data: r.nullable_buffer().map_err(e)?,
            version: r.i32().map_err(e)?,
        },
        op::SET_ACL if top => Txn::SetAcl {
            path: r.string().map_err(e)?,
            acl: r.vec::<Acl>().map_err(e)?,
            version: r.i32().map_err(e)?,
        },
        op::CHECK => {
            r.string().map_err(e)?;
            r.i32().map_err(e)?;
            Txn::Check
        }
        op::ERROR => {
            r.i32().map_err(e)?;
            Txn::Error
        }
        op::MULTI if top => {
            let n = r.i32().map_err(e)?;
            if n < 0 || n as usize > r.remaining() / 8 {
                return Err(format!("bad multi count {n}"));
            }
            let mut subs = Vec::with_capacity(n as usize);
            for _ in 0..n {
                let sub_kind = r.i32().map_err(e)?;
                let body = r.buffer().map_err(e)?;
                let mut sr = Reader::new(&body);
                let sub = parse_txn(sub_kind, &mut sr, false)
                    .map_err(|m| format!("multi sub-txn of type {sub_kind}: {m}"))?;
                subs.push((sub_kind, sub));
            }
            Txn::Multi(subs)
        }
        k => {
            return Err(format!(
                "unsupported transaction type {k}{}",
                if top { "" } else { " inside a multi" }
            ))
        }
    })
}

/// A transaction log file, read record by record.
pub(crate) struct LogReader<'a> {
    f: FileReader<'a>,
    bytes: &'a [u8],
}

/// What ended a log.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LogEnd {
    /// Zeros (preallocation) or the end of the file: the normal end.
    Clean,
    /// A record cut short (ZooKeeper stopped while writing it). ZooKeeper reads such a
    /// log up to there and goes on with the next one; so does the import.
    Torn { offset: usize },
}

impl<'a> LogReader<'a> {
    pub fn open(file: &'a Path, bytes: &'a [u8]) -> Result<LogReader<'a>, ImportError> {
        let mut f = FileReader::new(file, bytes, 0);
        let magic = f.read("file header", |r| r.take(4))?;
        if magic != LOG_MAGIC {
            return Err(f.corrupt(0, "not a ZooKeeper transaction log (magic is not ZKLG)"));
        }
        let version = f.read("file header", |r| r.i32())?;
        if version != 2 {
            return Err(ImportError::Unsupported {
                file: file.to_path_buf(),
                what: format!("transaction log format version {version} (only 2 is known)"),
            });
        }
        f.read("file header", |r| r.i64())?;
        Ok(LogReader { f, bytes })
    }

    /// The next transaction, or how the log ended.
    pub fn next_txn(&mut self) -> Result<Result<(TxnHeader, Txn), LogEnd>, ImportError> {
        let start = self.f.offset();
        if self.f.r.remaining() < 12 {
            return Ok(Err(self.end_at(start)));
        }
        let crc = self.f.read("record checksum", |r| r.i64())?;
        let len = self.f.read("record length", |r| r.i32())?;
        if len == 0 {
            return Ok(Err(LogEnd::Clean));
        }
        if len < 0 {
            return Err(self
                .f
                .corrupt(start + 8, format!("negative record length {len}")));
        }
        let body_at = self.f.offset();
        let len = len as usize;
        if self.f.r.remaining() < len + 1 {
            return Ok(Err(LogEnd::Torn { offset: start }));
        }
        let body = &self.bytes[body_at..body_at + len];
        self.f.read("record", |r| r.take(len + 1))?;
        if self.bytes[body_at + len] != b'B' {
            return Ok(Err(LogEnd::Torn { offset: start }));
        }
        let sum = adler32(body);
        if crc != i64::from(sum) {
            return Err(self.f.corrupt(
                start,
                format!("record checksum mismatch: file says {crc:#x}, record sums to {sum:#x}"),
            ));
        }
        let mut r = Reader::new(body);
        let hdr = (|| -> Result<TxnHeader, DecodeError> {
            let client_id = r.i64()?;
            r.i32()?; // cxid
            Ok(TxnHeader {
                client_id,
                zxid: r.i64()?,
                time: r.i64()?,
                kind: r.i32()?,
            })
        })()
        .map_err(|e| self.f.corrupt(body_at, format!("transaction header: {e}")))?;
        let txn = parse_txn(hdr.kind, &mut r, true).map_err(|m| {
            self.f.corrupt(
                body_at,
                format!("transaction {:#x} (type {}): {m}", hdr.zxid, hdr.kind),
            )
        })?;
        Ok(Ok((hdr, txn)))
    }

    /// Past the last record: zeros are the preallocated end; anything else is a torn record.
    fn end_at(&self, offset: usize) -> LogEnd {
        if self.bytes[offset..].iter().all(|&b| b == 0) {
            LogEnd::Clean
        } else {
            LogEnd::Torn { offset }
        }
    }
}
