//! The payload of every quorum-port message: how each [`Request`] and [`Response`] is laid
//! out after its frame's kind byte. Raft values go through the consensus codec's own
//! functions. Must not: frame, size or check anything (the parent does), or panic on input.

use super::*;

pub(super) fn bytes(field: &'static str, source: corral_proto::DecodeError) -> PayloadProblem {
    PayloadProblem::Bytes { field, source }
}

pub(super) fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// A count or length: the frame limit keeps them far below 4 GiB.
pub(super) fn put_len(out: &mut Vec<u8>, n: usize) {
    put_u32(out, u32::try_from(n).unwrap_or(u32::MAX));
}

/// A value encoded elsewhere, length-prefixed.
pub(super) fn put_value(out: &mut Vec<u8>, v: &[u8]) {
    put_len(out, v.len());
    out.extend_from_slice(v);
}

pub(super) fn put_vote(out: &mut Vec<u8>, v: &Vote<NodeId>) {
    put_value(out, &encode_vote(v));
}

pub(super) fn put_opt_log_id(out: &mut Vec<u8>, id: &Option<LogId<NodeId>>) {
    put_value(out, &encode_committed(id));
}

pub(super) fn put_bool(out: &mut Vec<u8>, b: bool) {
    out.push(u8::from(b));
}

pub(super) fn put_opt_u64(out: &mut Vec<u8>, v: Option<u64>) {
    match v {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            put_u64(out, v);
        }
    }
}

/// Reads the fields of one payload, naming each in its errors. Only a namer of fields over
/// corral-proto's reader: the bytes are read by `Reader`, raft values by the consensus codec.
pub(super) struct Fields<'r, 'a> {
    r: &'r mut Reader<'a>,
}

impl<'a> Fields<'_, 'a> {
    fn u8(&mut self, field: &'static str) -> Result<u8, PayloadProblem> {
        self.r.u8().map_err(|e| bytes(field, e))
    }
    fn u16(&mut self, field: &'static str) -> Result<u16, PayloadProblem> {
        let b = self.r.take(2).map_err(|e| bytes(field, e))?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, field: &'static str) -> Result<u32, PayloadProblem> {
        self.r.i32().map(|v| v as u32).map_err(|e| bytes(field, e))
    }
    fn u64(&mut self, field: &'static str) -> Result<u64, PayloadProblem> {
        self.r.i64().map(|v| v as u64).map_err(|e| bytes(field, e))
    }
    fn i64(&mut self, field: &'static str) -> Result<i64, PayloadProblem> {
        self.r.i64().map_err(|e| bytes(field, e))
    }
    fn string(&mut self, field: &'static str) -> Result<String, PayloadProblem> {
        self.r.string().map_err(|e| bytes(field, e))
    }
    fn bool(&mut self, field: &'static str) -> Result<bool, PayloadProblem> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(PayloadProblem::Tag { field, tag }),
        }
    }
    fn opt_u64(&mut self, field: &'static str) -> Result<Option<u64>, PayloadProblem> {
        Ok(if self.bool(field)? {
            Some(self.u64(field)?)
        } else {
            None
        })
    }
    /// A length-prefixed value, borrowed: its length is checked against the bytes present.
    fn value(&mut self, field: &'static str) -> Result<&'a [u8], PayloadProblem> {
        let at = self.r.position();
        let len = self.r.i32().map_err(|e| bytes(field, e))?;
        let n = usize::try_from(len).map_err(|_| {
            bytes(
                field,
                corral_proto::DecodeError::BadLength { offset: at, len },
            )
        })?;
        self.r.take(n).map_err(|e| bytes(field, e))
    }
    /// A count of items at least `min_size` bytes each; room is reserved only for as many as
    /// the bytes left can hold.
    fn count(
        &mut self,
        field: &'static str,
        min_size: usize,
    ) -> Result<(usize, usize), PayloadProblem> {
        let n = self.u32(field)? as usize;
        Ok((n, n.min(self.r.remaining() / min_size)))
    }
    fn raft<T>(
        &mut self,
        field: &'static str,
        decode: impl FnOnce(&[u8]) -> Result<T, DecodeError>,
    ) -> Result<T, PayloadProblem> {
        let v = self.value(field)?;
        decode(v).map_err(|source| PayloadProblem::Raft { field, source })
    }
    fn vote(&mut self, field: &'static str) -> Result<Vote<NodeId>, PayloadProblem> {
        self.raft(field, decode_vote)
    }
    fn log_id(&mut self, field: &'static str) -> Result<Option<LogId<NodeId>>, PayloadProblem> {
        self.raft(field, decode_committed)
    }
    fn client_entry(&mut self, field: &'static str) -> Result<Entry, PayloadProblem> {
        let v = self.value(field)?;
        Entry::decode(v).map_err(|source| PayloadProblem::ClientEntry { field, source })
    }
}

/// The payload of an append-entries request, stopping at the first entry that ends past
/// `limit`.
pub(super) fn put_append_entries(
    out: &mut Vec<u8>,
    a: &AppendEntriesRequest<TypeConfig>,
    limit: usize,
) -> Result<(), Overflow> {
    put_vote(out, &a.vote);
    put_opt_log_id(out, &a.prev_log_id);
    put_opt_log_id(out, &a.leader_commit);
    // Entries last, so those that fit are a prefix of the frame.
    put_len(out, a.entries.len());
    for (i, e) in a.entries.iter().enumerate() {
        let start = out.len();
        put_u64(out, e.log_id.index);
        put_u32(out, 0);
        put_log_body(out, e, &client_bytes(e));
        let body_len = out.len() - start - 12;
        out[start + 8..start + 12]
            .copy_from_slice(&u32::try_from(body_len).unwrap_or(u32::MAX).to_be_bytes());
        if out.len() > limit {
            return Err(Overflow {
                entries_fit: Some(i),
            });
        }
    }
    Ok(())
}

impl Request {
    pub fn kind(&self) -> u8 {
        match self {
            Request::Hello(_) => K_HELLO,
            Request::AppendEntries(_) => K_APPEND,
            Request::Vote(_) => K_VOTE,
            Request::InstallSnapshot(_) => K_SNAPSHOT,
            Request::Forward { .. } => K_FORWARD,
            Request::SessionReport { events, .. } if !events.is_empty() => K_SESSIONS_EVENTS,
            Request::SessionReport { .. } => K_SESSIONS,
            Request::ReadIndex => K_READ_INDEX,
        }
    }
}

impl WireMessage for Request {
    fn kind(&self) -> u8 {
        Request::kind(self)
    }

    fn put_payload(&self, out: &mut Vec<u8>, limit: usize) -> Result<(), Overflow> {
        match self {
            Request::Hello(h) => {
                put_u16(out, h.version);
                put_str(out, &h.cluster);
                put_u64(out, h.from);
                put_u64(out, h.to);
            }
            Request::AppendEntries(a) => put_append_entries(out, a, limit)?,
            Request::Vote(v) => {
                put_vote(out, &v.vote);
                put_opt_log_id(out, &v.last_log_id);
            }
            Request::InstallSnapshot(s) => {
                put_vote(out, &s.vote);
                put_value(out, &encode_snapshot_meta(&s.meta));
                put_u64(out, s.offset);
                // Not copied at all when it cannot fit.
                if out.len().saturating_add(s.data.len()) > limit {
                    return Err(Overflow { entries_fit: None });
                }
                put_value(out, &s.data);
                put_bool(out, s.done);
            }
            Request::Forward { term, proposals } => {
                put_u64(out, *term);
                put_len(out, proposals.len());
                for p in proposals {
                    put_u64(out, p.origin);
                    put_u64(out, p.seq);
                    put_value(out, &p.entry.encode());
                    // A batch too large stops here rather than growing past the frame.
                    if out.len() > limit {
                        return Err(Overflow { entries_fit: None });
                    }
                }
            }
            Request::SessionReport {
                from,
                sessions,
                events,
            } => {
                put_u64(out, *from);
                put_len(out, sessions.len());
                for (id, idle) in sessions {
                    put_u64(out, *id as u64);
                    put_u32(out, *idle);
                }
                if !events.is_empty() {
                    put_len(out, events.len());
                    for e in events {
                        put_u64(out, e.session_id as u64);
                        put_u32(out, e.age_ms);
                        out.push(e.kind.code());
                        put_str(out, &e.remote);
                        put_str(out, &e.cause);
                    }
                }
            }
            Request::ReadIndex => {}
        }
        Ok(())
    }

    fn read_payload(kind: u8, r: &mut Reader<'_>) -> Result<Option<Request>, PayloadProblem> {
        let mut f = Fields { r };
        let req = match kind {
            K_HELLO => Request::Hello(Hello {
                version: f.u16("version")?,
                cluster: f.string("cluster")?,
                from: f.u64("from")?,
                to: f.u64("to")?,
            }),
            K_APPEND => {
                let vote = f.vote("vote")?;
                let prev_log_id = f.log_id("prev_log_id")?;
                let leader_commit = f.log_id("leader_commit")?;
                // Index and length, then at least the term, node and kind of the body.
                let (n, cap) = f.count("entries", 12 + 17)?;
                let mut entries = Vec::with_capacity(cap);
                for _ in 0..n {
                    let index = f.u64("entry index")?;
                    entries.push(f.raft("entry", |b| decode_log_entry(index, b))?);
                }
                Request::AppendEntries(AppendEntriesRequest {
                    vote,
                    prev_log_id,
                    entries,
                    leader_commit,
                })
            }
            K_VOTE => Request::Vote(VoteRequest {
                vote: f.vote("vote")?,
                last_log_id: f.log_id("last_log_id")?,
            }),
            K_SNAPSHOT => Request::InstallSnapshot(InstallSnapshotRequest {
                vote: f.vote("vote")?,
                meta: f.raft("meta", decode_snapshot_meta)?,
                offset: f.u64("offset")?,
                data: f.value("data")?.to_vec(),
                done: f.bool("done")?,
            }),
            K_FORWARD => {
                let term = f.u64("term")?;
                // Origin, seq and length, then at least corral-tree's session id, time,
                // identity count and entry kind.
                let (n, cap) = f.count("proposals", 20 + 24)?;
                let mut proposals = Vec::with_capacity(cap);
                for _ in 0..n {
                    proposals.push(Proposal {
                        origin: f.u64("origin")?,
                        seq: f.u64("seq")?,
                        entry: f.client_entry("entry")?,
                    });
                }
                Request::Forward { term, proposals }
            }
            K_SESSIONS | K_SESSIONS_EVENTS => {
                let from = f.u64("from")?;
                let (n, cap) = f.count("sessions", 12)?;
                let mut sessions = Vec::with_capacity(cap);
                for _ in 0..n {
                    sessions.push((f.i64("session id")?, f.u32("idle ms")?));
                }
                let mut events = Vec::new();
                if kind == K_SESSIONS_EVENTS {
                    let (n, cap) = f.count("events", 21)?;
                    events.reserve(cap);
                    for _ in 0..n {
                        let session_id = f.i64("event session id")?;
                        let age_ms = f.u32("event age ms")?;
                        let tag = f.u8("event kind")?;
                        let kind = ConnEventKind::from_code(tag).ok_or(PayloadProblem::Tag {
                            field: "event kind",
                            tag,
                        })?;
                        events.push(ReportedEvent {
                            session_id,
                            age_ms,
                            kind,
                            remote: f.string("event remote")?,
                            cause: f.string("event cause")?,
                        });
                    }
                }
                Request::SessionReport {
                    from,
                    sessions,
                    events,
                }
            }
            K_READ_INDEX => Request::ReadIndex,
            _ => return Ok(None),
        };
        Ok(Some(req))
    }
}

/// Field by field: openraft's request has no `PartialEq`. For tests and assertions.
impl PartialEq for Request {
    fn eq(&self, other: &Request) -> bool {
        match (self, other) {
            (Request::Hello(a), Request::Hello(b)) => a == b,
            (Request::AppendEntries(a), Request::AppendEntries(b)) => {
                a.vote == b.vote
                    && a.prev_log_id == b.prev_log_id
                    && a.leader_commit == b.leader_commit
                    && a.entries == b.entries
            }
            (Request::Vote(a), Request::Vote(b)) => a == b,
            (Request::InstallSnapshot(a), Request::InstallSnapshot(b)) => a == b,
            (
                Request::Forward {
                    term: t1,
                    proposals: p1,
                },
                Request::Forward {
                    term: t2,
                    proposals: p2,
                },
            ) => t1 == t2 && p1 == p2,
            (
                Request::SessionReport {
                    from: f1,
                    sessions: s1,
                    events: e1,
                },
                Request::SessionReport {
                    from: f2,
                    sessions: s2,
                    events: e2,
                },
            ) => f1 == f2 && s1 == s2 && e1 == e2,
            (Request::ReadIndex, Request::ReadIndex) => true,
            _ => false,
        }
    }
}

// AppendEntriesResponse tags.
pub(super) const AE_SUCCESS: u8 = 0;
pub(super) const AE_PARTIAL: u8 = 1;
pub(super) const AE_CONFLICT: u8 = 2;
pub(super) const AE_HIGHER_VOTE: u8 = 3;
// RaftFailure tags, and FatalKind's.
pub(super) const RF_FATAL: u8 = 0;
pub(super) const RF_MISMATCH: u8 = 1;
pub(super) const FATAL_STOPPED: u8 = 0;
pub(super) const FATAL_PANICKED: u8 = 1;
pub(super) const FATAL_STORAGE: u8 = 2;

impl Response {
    pub fn kind(&self) -> u8 {
        match self {
            Response::HelloOk => K_HELLO_OK,
            Response::Refused { .. } => K_REFUSED,
            Response::AppendEntries(_) => K_APPEND_REPLY,
            Response::Vote(_) => K_VOTE_REPLY,
            Response::InstallSnapshot(_) => K_SNAPSHOT_REPLY,
            Response::RaftError(_) => K_RAFT_ERROR,
            Response::ForwardReply { .. } => K_FORWARD_REPLY,
            Response::SessionReportReply { .. } => K_SESSIONS_REPLY,
            Response::ReadIndexReply(_) => K_READ_INDEX_REPLY,
            Response::Error { .. } => K_ERROR,
        }
    }
}

pub(super) fn put_segment(out: &mut Vec<u8>, s: &SnapshotSegmentId) {
    put_str(out, &s.id);
    put_u64(out, s.offset);
}

impl WireMessage for Response {
    fn kind(&self) -> u8 {
        Response::kind(self)
    }

    fn put_payload(&self, out: &mut Vec<u8>, limit: usize) -> Result<(), Overflow> {
        match self {
            Response::HelloOk => {}
            Response::Refused { reason } => put_str(out, reason),
            Response::AppendEntries(r) => match r {
                AppendEntriesResponse::Success => out.push(AE_SUCCESS),
                AppendEntriesResponse::PartialSuccess(id) => {
                    out.push(AE_PARTIAL);
                    put_opt_log_id(out, id);
                }
                AppendEntriesResponse::Conflict => out.push(AE_CONFLICT),
                AppendEntriesResponse::HigherVote(v) => {
                    out.push(AE_HIGHER_VOTE);
                    put_vote(out, v);
                }
            },
            Response::Vote(v) => {
                put_vote(out, &v.vote);
                put_bool(out, v.vote_granted);
                put_opt_log_id(out, &v.last_log_id);
            }
            Response::InstallSnapshot(r) => put_vote(out, &r.vote),
            Response::RaftError(RaftFailure::Fatal { kind, message }) => {
                out.push(RF_FATAL);
                out.push(match kind {
                    FatalKind::Stopped => FATAL_STOPPED,
                    FatalKind::Panicked => FATAL_PANICKED,
                    FatalKind::Storage => FATAL_STORAGE,
                });
                put_str(out, message);
            }
            Response::RaftError(RaftFailure::SnapshotMismatch(m)) => {
                out.push(RF_MISMATCH);
                put_segment(out, &m.expect);
                put_segment(out, &m.got);
            }
            Response::ForwardReply {
                accepted,
                not_leader,
            } => {
                put_u32(out, *accepted);
                match not_leader {
                    None => out.push(0),
                    Some((term, leader)) => {
                        out.push(1);
                        put_u64(out, *term);
                        put_opt_u64(out, *leader);
                    }
                }
            }
            Response::SessionReportReply { moved_away } => {
                put_len(out, moved_away.len());
                for id in moved_away {
                    put_u64(out, *id as u64);
                    if out.len() > limit {
                        return Err(Overflow { entries_fit: None });
                    }
                }
            }
            Response::ReadIndexReply(Ok(index)) => {
                out.push(0);
                put_u64(out, *index);
            }
            Response::ReadIndexReply(Err(NotLeader { leader })) => {
                out.push(1);
                put_opt_u64(out, *leader);
            }
            Response::Error { message } => put_str(out, message),
        }
        Ok(())
    }

    fn read_payload(kind: u8, r: &mut Reader<'_>) -> Result<Option<Response>, PayloadProblem> {
        let mut f = Fields { r };
        let resp = match kind {
            K_HELLO_OK => Response::HelloOk,
            K_REFUSED => Response::Refused {
                reason: f.string("reason")?,
            },
            K_APPEND_REPLY => Response::AppendEntries(match f.u8("result")? {
                AE_SUCCESS => AppendEntriesResponse::Success,
                AE_PARTIAL => AppendEntriesResponse::PartialSuccess(f.log_id("matching")?),
                AE_CONFLICT => AppendEntriesResponse::Conflict,
                AE_HIGHER_VOTE => AppendEntriesResponse::HigherVote(f.vote("higher vote")?),
                tag => {
                    return Err(PayloadProblem::Tag {
                        field: "result",
                        tag,
                    })
                }
            }),
            K_VOTE_REPLY => Response::Vote(VoteResponse {
                vote: f.vote("vote")?,
                vote_granted: f.bool("vote_granted")?,
                last_log_id: f.log_id("last_log_id")?,
            }),
            K_SNAPSHOT_REPLY => Response::InstallSnapshot(InstallSnapshotResponse {
                vote: f.vote("vote")?,
            }),
            K_RAFT_ERROR => Response::RaftError(match f.u8("error")? {
                RF_FATAL => {
                    let kind = match f.u8("fatal kind")? {
                        FATAL_STOPPED => FatalKind::Stopped,
                        FATAL_PANICKED => FatalKind::Panicked,
                        FATAL_STORAGE => FatalKind::Storage,
                        tag => {
                            return Err(PayloadProblem::Tag {
                                field: "fatal kind",
                                tag,
                            })
                        }
                    };
                    RaftFailure::Fatal {
                        kind,
                        message: f.string("message")?,
                    }
                }
                RF_MISMATCH => RaftFailure::SnapshotMismatch(SnapshotMismatch {
                    expect: SnapshotSegmentId {
                        id: f.string("expected snapshot id")?,
                        offset: f.u64("expected offset")?,
                    },
                    got: SnapshotSegmentId {
                        id: f.string("snapshot id")?,
                        offset: f.u64("offset")?,
                    },
                }),
                tag => {
                    return Err(PayloadProblem::Tag {
                        field: "error",
                        tag,
                    })
                }
            }),
            K_FORWARD_REPLY => {
                let accepted = f.u32("accepted")?;
                let not_leader = if f.bool("not leader")? {
                    Some((f.u64("term")?, f.opt_u64("leader")?))
                } else {
                    None
                };
                Response::ForwardReply {
                    accepted,
                    not_leader,
                }
            }
            K_SESSIONS_REPLY => {
                let (n, cap) = f.count("moved away", 8)?;
                let mut moved_away = Vec::with_capacity(cap);
                for _ in 0..n {
                    moved_away.push(f.i64("session id")?);
                }
                Response::SessionReportReply { moved_away }
            }
            K_READ_INDEX_REPLY => Response::ReadIndexReply(if f.bool("not leader")? {
                Err(NotLeader {
                    leader: f.opt_u64("leader")?,
                })
            } else {
                Ok(f.u64("index")?)
            }),
            K_ERROR => Response::Error {
                message: f.string("message")?,
            },
            _ => return Ok(None),
        };
        Ok(Some(resp))
    }
}
