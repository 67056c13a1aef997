use super::*;
use corral_proto::{DeleteRequest, Id};
use corral_tree::obituary::{ConnEvent, ConnEventKind, EndCause, Evidence};
use corral_tree::EntryOp;
use proptest::collection::{btree_set, vec};
use proptest::prelude::*;

/// Counts, per thread, the bytes allocated and not yet freed, and their peak: how the decoder
/// tests check that no input makes it allocate beyond a frame's worth. Every keeper unit test
/// runs under it; the cost is two thread-local additions per allocation.
mod meter {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    pub struct Meter;

    thread_local! {
        static LIVE: Cell<isize> = const { Cell::new(0) };
        static PEAK: Cell<isize> = const { Cell::new(0) };
    }

    fn add(n: isize) {
        // `try_with`: nothing to count once the thread's locals are gone.
        let _ = LIVE.try_with(|live| {
            let v = live.get() + n;
            live.set(v);
            let _ = PEAK.try_with(|p| p.set(p.get().max(v)));
        });
    }

    fn size(n: usize) -> isize {
        isize::try_from(n).unwrap_or(isize::MAX)
    }

    // SAFETY: every method hands its arguments unchanged to `System`, which implements
    // `GlobalAlloc`'s contract, and returns what `System` returned; the bookkeeping touches only
    // const-initialised thread-locals of `Cell<isize>` (no destructor, no lazy initialisation),
    // which neither allocate nor unwind, so it cannot re-enter the allocator or panic.
    unsafe impl GlobalAlloc for Meter {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: the caller's guarantees for `layout` are System's.
            let p = unsafe { System.alloc(layout) };
            if !p.is_null() {
                add(size(layout.size()));
            }
            p
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            // SAFETY: as `alloc`.
            let p = unsafe { System.alloc_zeroed(layout) };
            if !p.is_null() {
                add(size(layout.size()));
            }
            p
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: `ptr` came from this allocator, that is from System, with `layout`.
            unsafe { System.dealloc(ptr, layout) };
            add(-size(layout.size()));
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: as `dealloc` for `ptr` and `layout`; `new_size` is the caller's.
            let p = unsafe { System.realloc(ptr, layout, new_size) };
            if !p.is_null() {
                add(size(new_size) - size(layout.size()));
            }
            p
        }
    }

    #[global_allocator]
    static METER: Meter = Meter;

    /// Runs `f` and returns its result with the most bytes it had allocated on this thread at
    /// once (its result included, which is dropped after the measure).
    pub fn peak<T>(f: impl FnOnce() -> T) -> (T, usize) {
        let base = LIVE.with(Cell::get);
        PEAK.with(|p| p.set(base));
        let out = f();
        let peak = PEAK.with(Cell::get);
        (out, usize::try_from(peak - base).unwrap_or(0))
    }
}

// ---- Generated values ----

fn log_id() -> impl Strategy<Value = Option<LogId<NodeId>>> {
    proptest::option::of(
        (0u64..1000, 0u64..10, any::<u64>())
            .prop_map(|(t, n, i)| LogId::new(CommittedLeaderId::new(t, n), i)),
    )
}

fn vote() -> impl Strategy<Value = Vote<NodeId>> {
    (any::<u64>(), any::<u64>(), any::<bool>()).prop_map(|(term, node, committed)| {
        let mut v = Vote::new(term, node);
        if committed {
            v.commit();
        }
        v
    })
}

fn client_entry() -> impl Strategy<Value = Entry> {
    let op = prop_oneof![
        (any::<i64>(), any::<i32>(), vec(any::<u8>(), 0..16)).prop_map(|(s, t, p)| {
            EntryOp::CreateSession {
                session_id: s,
                timeout_ms: t,
                passwd: p,
            }
        }),
        (any::<i64>(), ".{0,12}", ".{0,12}", vec(conn_event(), 0..3)).prop_map(
            |(session_id, detail, remote, history)| EntryOp::CloseSession {
                session_id,
                evidence: Evidence {
                    remote,
                    history,
                    ..Evidence::bare(EndCause::SilentWhileConnected, detail)
                },
            }
        ),
        vec("/[a-z]{1,8}", 0..4)
            .prop_map(|candidates| EntryOp::PurgeContainersAndTtl { candidates }),
        ("/[a-z/]{1,12}", any::<i32>()).prop_map(|(path, version)| {
            EntryOp::Request(corral_proto::Request::Delete(DeleteRequest {
                path,
                version,
            }))
        }),
    ];
    let ids = vec(
        ("[a-z]{1,6}", ".{0,8}").prop_map(|(scheme, id)| Id { scheme, id }),
        0..3,
    );
    (any::<i64>(), any::<i64>(), ids, op).prop_map(|(session_id, time_ms, identities, op)| Entry {
        session_id,
        time_ms,
        identities,
        op,
    })
}

fn membership() -> impl Strategy<Value = Membership<NodeId, BasicNode>> {
    (
        vec(btree_set(1u64..8, 1..4), 1..3),
        btree_set(1u64..12, 0..3),
        "[a-z0-9.:]{0,12}",
    )
        .prop_map(|(configs, learners, addr)| {
            let nodes: BTreeMap<_, _> = configs
                .iter()
                .flatten()
                .chain(&learners)
                .map(|id| (*id, BasicNode::new(format!("{addr}{id}"))))
                .collect();
            Membership::new(configs, nodes)
        })
}

fn log_entry() -> impl Strategy<Value = LogEntry> {
    let payload = prop_oneof![
        Just(EntryPayload::Blank),
        // Untagged (origin 0 carries no sequence) and tagged client entries.
        client_entry().prop_map(|entry| EntryPayload::Normal(Batch(vec![Proposal {
            origin: 0,
            seq: 0,
            entry
        }]))),
        (1..=u64::MAX, any::<u64>(), client_entry()).prop_map(|(origin, seq, entry)| {
            EntryPayload::Normal(Batch(vec![Proposal { origin, seq, entry }]))
        }),
        // Batches of several (or none), untagged ones among them.
        prop::collection::vec(
            (any::<u64>(), any::<u64>(), client_entry())
                .prop_map(|(origin, seq, entry)| Proposal { origin, seq, entry }),
            0..4
        )
        .prop_filter("not one", |ps| ps.len() != 1)
        .prop_map(|ps| EntryPayload::Normal(Batch(ps))),
        membership().prop_map(EntryPayload::Membership),
    ];
    (log_id(), any::<u64>(), payload).prop_map(|(id, index, payload)| LogEntry {
        log_id: id.unwrap_or_else(|| LogId::new(CommittedLeaderId::new(1, 1), index)),
        payload,
    })
}

fn snapshot_meta() -> impl Strategy<Value = StoredSnapshotMeta> {
    (log_id(), log_id(), membership(), "[a-z0-9-]{0,20}").prop_map(|(last, mlog, m, id)| {
        SnapshotMeta {
            last_log_id: last,
            last_membership: StoredMembership::new(mlog, m),
            snapshot_id: id,
        }
    })
}

fn conn_kind() -> impl Strategy<Value = ConnEventKind> {
    prop_oneof![
        Just(ConnEventKind::Connected),
        Just(ConnEventKind::Resumed),
        Just(ConnEventKind::Disconnected),
        Just(ConnEventKind::Moved),
    ]
}

fn conn_event() -> impl Strategy<Value = ConnEvent> {
    (any::<i64>(), any::<u64>(), conn_kind(), ".{0,8}", ".{0,8}").prop_map(
        |(at_ms, member, kind, remote, cause)| ConnEvent {
            at_ms,
            member,
            kind,
            remote,
            cause,
        },
    )
}

fn reported_event() -> impl Strategy<Value = ReportedEvent> {
    (any::<i64>(), any::<u32>(), conn_kind(), ".{0,8}", ".{0,8}").prop_map(
        |(session_id, age_ms, kind, remote, cause)| ReportedEvent {
            session_id,
            age_ms,
            kind,
            remote,
            cause,
        },
    )
}

fn proposal() -> impl Strategy<Value = Proposal> {
    (any::<u64>(), any::<u64>(), client_entry()).prop_map(|(origin, seq, entry)| Proposal {
        origin,
        seq,
        entry,
    })
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        (any::<u16>(), ".{0,16}", any::<u64>(), any::<u64>()).prop_map(
            |(version, cluster, from, to)| Request::Hello(Hello {
                version,
                cluster,
                from,
                to
            })
        ),
        (vote(), log_id(), vec(log_entry(), 0..6), log_id()).prop_map(
            |(vote, prev_log_id, entries, leader_commit)| {
                Request::AppendEntries(AppendEntriesRequest {
                    vote,
                    prev_log_id,
                    entries,
                    leader_commit,
                })
            }
        ),
        (vote(), log_id())
            .prop_map(|(vote, last_log_id)| Request::Vote(VoteRequest { vote, last_log_id })),
        (
            vote(),
            snapshot_meta(),
            any::<u64>(),
            vec(any::<u8>(), 0..64),
            any::<bool>()
        )
            .prop_map(|(vote, meta, offset, data, done)| {
                Request::InstallSnapshot(InstallSnapshotRequest {
                    vote,
                    meta,
                    offset,
                    data,
                    done,
                })
            }),
        (any::<u64>(), vec(proposal(), 0..5))
            .prop_map(|(term, proposals)| Request::Forward { term, proposals }),
        (
            any::<u64>(),
            vec((any::<i64>(), any::<u32>()), 0..20),
            vec(reported_event(), 0..4)
        )
            .prop_map(|(from, sessions, events)| Request::SessionReport {
                from,
                sessions,
                events
            }),
        Just(Request::ReadIndex),
    ]
}

fn segment() -> impl Strategy<Value = SnapshotSegmentId> {
    ("[a-z0-9-]{0,20}", any::<u64>()).prop_map(|(id, offset)| SnapshotSegmentId { id, offset })
}

fn response() -> impl Strategy<Value = Response> {
    let fatal_kind = prop_oneof![
        Just(FatalKind::Stopped),
        Just(FatalKind::Panicked),
        Just(FatalKind::Storage)
    ];
    // openraft's replies are not Clone, which `Just` needs: they are built from parts.
    let append = (0u8..4, log_id(), vote()).prop_map(|(tag, id, v)| match tag {
        0 => AppendEntriesResponse::Success,
        1 => AppendEntriesResponse::PartialSuccess(id),
        2 => AppendEntriesResponse::Conflict,
        _ => AppendEntriesResponse::HigherVote(v),
    });
    prop_oneof![
        Just(()).prop_map(|()| Response::HelloOk),
        ".{0,40}".prop_map(|reason| Response::Refused { reason }),
        append.prop_map(Response::AppendEntries),
        (vote(), any::<bool>(), log_id()).prop_map(|(vote, vote_granted, last_log_id)| {
            Response::Vote(VoteResponse {
                vote,
                vote_granted,
                last_log_id,
            })
        }),
        vote().prop_map(|vote| Response::InstallSnapshot(InstallSnapshotResponse { vote })),
        (fatal_kind, ".{0,40}")
            .prop_map(|(kind, message)| Response::RaftError(RaftFailure::Fatal { kind, message })),
        (segment(), segment()).prop_map(|(expect, got)| Response::RaftError(
            RaftFailure::SnapshotMismatch(SnapshotMismatch { expect, got })
        )),
        (
            any::<u32>(),
            proptest::option::of((any::<u64>(), proptest::option::of(any::<u64>())))
        )
            .prop_map(|(accepted, not_leader)| Response::ForwardReply {
                accepted,
                not_leader
            }),
        vec(any::<i64>(), 0..20).prop_map(|moved_away| Response::SessionReportReply { moved_away }),
        prop_oneof![
            any::<u64>().prop_map(Ok),
            proptest::option::of(any::<u64>()).prop_map(|leader| Err(NotLeader { leader })),
        ]
        .prop_map(Response::ReadIndexReply),
        ".{0,40}".prop_map(|message| Response::Error { message }),
    ]
}

// ---- Helpers ----

const MAX: usize = 1 << 20;

fn frame_bytes<M: WireMessage>(id: u64, msg: &M) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(id, msg, MAX, &mut out).unwrap();
    out
}

/// Recomputes the checksum of the frame in `b` after a test changed its body.
fn reseal(b: &mut [u8]) {
    let crc = crc32c::crc32c(&b[FRAME_HEADER..]);
    b[4..8].copy_from_slice(&crc.to_be_bytes());
}

/// Rewrites the length of the frame in `b` after a test changed its size.
fn relength(b: &mut [u8]) {
    let len = (b.len() - 4) as u32;
    b[..4].copy_from_slice(&len.to_be_bytes());
}

fn decode_one<M: WireMessage>(b: &[u8]) -> Result<Frame<M>, WireError> {
    match decode_frame::<M>(b, MAX)? {
        Some((f, used)) => {
            assert_eq!(used, b.len(), "a frame is all its bytes");
            Ok(f)
        }
        None => panic!("a whole frame reads as incomplete"),
    }
}

/// Decodes `bytes` as a peer would send them, in `chunk`-byte reads through the codec: every
/// frame in them, or the first error.
fn through_codec<M: WireMessage>(
    bytes: &[u8],
    chunk: usize,
    max: usize,
) -> Result<Vec<Frame<M>>, WireError> {
    let mut codec = PeerCodec::<M>::new(max);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in bytes.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        while let Some(f) = codec.decode(&mut buf)? {
            out.push(f);
        }
    }
    Ok(out)
}

/// Feeds `bytes` to a decoder in `chunk`-byte reads, dropping each frame once decoded: the
/// frames read (or the first error), and the largest capacity its buffer reached.
fn feed<M: WireMessage>(
    bytes: &[u8],
    chunk: usize,
    max: usize,
) -> (Result<usize, WireError>, usize) {
    let mut codec = PeerCodec::<M>::new(max);
    let mut buf = BytesMut::new();
    let mut frames = 0;
    let mut most = 0;
    for piece in bytes.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            let r = codec.decode(&mut buf);
            most = most.max(buf.capacity());
            match r {
                Ok(Some(_)) => frames += 1,
                Ok(None) => break,
                Err(e) => return (Err(e), most),
            }
        }
    }
    (Ok(frames), most)
}

/// Random bytes; or a frame header with a length within `max` (and 64 over), a checksum right
/// or not, and random body bytes, possibly fewer than the length says.
fn arbitrary_piece(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..2048),
        (
            0..max as u32 + 64,
            any::<bool>(),
            any::<u64>(),
            any::<u8>(),
            vec(any::<u8>(), 0..2048)
        )
            .prop_map(|(len, seal, id, kind, payload)| {
                let mut body = id.to_be_bytes().to_vec();
                body.push(kind);
                body.extend_from_slice(&payload);
                body.truncate((len as usize).saturating_sub(4));
                let crc = if seal {
                    crc32c::crc32c(&body)
                } else {
                    id as u32
                };
                let mut b = len.to_be_bytes().to_vec();
                b.extend_from_slice(&crc.to_be_bytes());
                b.extend_from_slice(&body);
                b
            }),
    ]
}

/// Bytes a decoded message may take per byte of its frame. The densest known: a membership of
/// one-voter configurations, each a B-tree of its own (see
/// `the_densest_known_message_stays_within_bound`).
const DECODED_BOUND: usize = 16;

// ---- Round trips ----

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn every_request_round_trips(id in any::<u64>(), msg in request()) {
        let b = frame_bytes(id, &msg);
        let f = decode_one::<Request>(&b).unwrap();
        prop_assert_eq!(f.id, id);
        prop_assert!(f.msg == msg, "{:?} became {:?}", msg, f.msg);
    }

    #[test]
    fn every_response_round_trips(id in any::<u64>(), msg in response()) {
        let b = frame_bytes(id, &msg);
        let f = decode_one::<Response>(&b).unwrap();
        prop_assert_eq!(f.id, id);
        prop_assert_eq!(f.msg, msg);
    }

    /// Several frames in one stream, arriving in pieces of any size, through the codec: the
    /// same frames in the same order.
    #[test]
    fn the_codec_reads_back_a_stream_cut_anywhere(
        msgs in vec(request(), 1..5),
        chunk in 1usize..200,
    ) {
        let mut codec = PeerCodec::<Response>::new(MAX);
        let mut stream = BytesMut::new();
        for (i, m) in msgs.iter().enumerate() {
            codec.encode(Frame { id: i as u64, msg: m.clone() }, &mut stream).unwrap();
        }
        let got = through_codec::<Request>(&stream, chunk, MAX).unwrap();
        prop_assert_eq!(got.len(), msgs.len());
        for (i, (f, m)) in got.iter().zip(&msgs).enumerate() {
            prop_assert_eq!(f.id, i as u64);
            prop_assert!(&f.msg == m);
        }
    }

    /// Any single flipped bit of the checksum or the body is caught.
    #[test]
    fn a_corrupted_frame_fails_its_checksum(msg in request(), pick in any::<prop::sample::Index>(), bit in 0u8..8) {
        let mut b = frame_bytes(7, &msg);
        let at = 4 + pick.index(b.len() - 4);
        b[at] ^= 1 << bit;
        let r = decode_one::<Request>(&b);
        prop_assert!(matches!(r, Err(WireError::Checksum { .. })), "{:?}", r);
    }

    /// Arbitrary bytes: no panic, a buffer of no more than a frame and a read, and memory
    /// within a bound of the frame limit, whatever lengths and counts they claim. Half the pieces start with a length within the limit,
    /// some with the right checksum, so the decoder also waits for frames and reads payloads.
    #[test]
    fn arbitrary_bytes_never_panic_nor_overallocate(
        pieces in vec(arbitrary_piece(4096), 1..4),
        chunk in 1usize..512,
    ) {
        let max = 4096;
        let b = pieces.concat();
        for request_side in [true, false] {
            let ((_, capacity), peak) = meter::peak(|| {
                if request_side {
                    feed::<Request>(&b, chunk, max)
                } else {
                    feed::<Response>(&b, chunk, max)
                }
            });
            // Room for one frame and one read, which the buffer may double as it grows.
            prop_assert!(capacity <= 2 * (4 + max + chunk), "buffer of {capacity} bytes");
            // While it grows the old buffer is still there; and one decoded message.
            let bound = 3 * 2 * (4 + max + chunk) + DECODED_BOUND * max;
            prop_assert!(peak <= bound, "{peak} bytes for {} bytes of input", b.len());
        }
    }

    /// Valid frames with bytes changed after the header and the checksum made right again, so
    /// the payload decoders see them: an error or a message, never a panic, and memory within
    /// a bound of the frame.
    #[test]
    fn damaged_payloads_decode_or_fail_cleanly(
        msg in request(),
        reply in response(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        for mut b in [frame_bytes(1, &msg), frame_bytes(2, &reply)] {
            for (at, v) in &edits {
                let i = FRAME_HEADER + at.index(b.len() - FRAME_HEADER);
                b[i] = *v;
            }
            reseal(&mut b);
            let (_, peak) = meter::peak(|| {
                let _ = decode_frame::<Request>(&b, MAX);
                let _ = decode_frame::<Response>(&b, MAX);
            });
            prop_assert!(peak <= DECODED_BOUND * b.len() + 4096, "{peak} bytes for a frame of {}", b.len());
            // Cut short (length rewritten to match): a typed error, never a panic.
            let keep = FRAME_HEADER + BODY_HEAD + cut.index(b.len() - FRAME_HEADER - BODY_HEAD + 1);
            let mut short = b[..keep].to_vec();
            relength(&mut short);
            reseal(&mut short);
            let _ = decode_frame::<Request>(&short, MAX);
            let _ = decode_frame::<Response>(&short, MAX);
        }
    }

    /// Sizing: `entries_fit` is exact (that many fit, one more does not), the encoder writes
    /// nothing for a request over the limit, and `append_entries_fit` agrees with it.
    #[test]
    fn append_entries_fit_is_exact(entries in vec(log_entry(), 1..12), max in 64usize..2048) {
        let req = AppendEntriesRequest::<TypeConfig> {
            vote: Vote::new(3, 1),
            prev_log_id: None,
            entries,
            leader_commit: None,
        };
        let fit = append_entries_fit(&req, max);
        let with = |n: usize| Request::AppendEntries(AppendEntriesRequest {
            entries: req.entries[..n].to_vec(),
            ..req.clone()
        });
        let mut out = vec![0xee];
        match encode_frame(5, &Request::AppendEntries(req.clone()), max, &mut out) {
            Ok(()) => prop_assert_eq!(fit, req.entries.len()),
            Err(WireError::TooLarge { entries_fit, max: m, .. }) => {
                prop_assert_eq!(out.as_slice(), &[0xee][..], "nothing written");
                prop_assert_eq!(m, max);
                // A header over the limit on its own fits no entry either.
                prop_assert_eq!(entries_fit.unwrap_or(0), fit);
                prop_assert!(fit < req.entries.len());
                prop_assert!(encode_frame(5, &with(fit + 1), max, &mut Vec::new()).is_err());
            }
            Err(e) => prop_assert!(false, "{e}"),
        }
        if fit > 0 {
            let mut b = Vec::new();
            prop_assert!(encode_frame(5, &with(fit), max, &mut b).is_ok());
            prop_assert!(b.len() - 4 <= max);
        }
    }
}

#[test]
fn the_densest_known_message_stays_within_bound() {
    // Each voter in a configuration of its own: 12 bytes on the wire, a B-tree node, a slot in
    // the configuration list and a node entry in memory.
    let n = 5000;
    let configs = (1..=n).map(|id| BTreeSet::from([id])).collect();
    let entry = LogEntry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), 1),
        payload: EntryPayload::Membership(Membership::new(
            configs,
            BTreeMap::<u64, BasicNode>::new(),
        )),
    };
    let req = Request::AppendEntries(AppendEntriesRequest {
        vote: Vote::new(1, 1),
        prev_log_id: None,
        entries: vec![entry],
        leader_commit: None,
    });
    let b = frame_bytes(1, &req);
    let (r, peak) = meter::peak(|| decode_one::<Request>(&b).map(|f| f.msg == req));
    assert!(r.unwrap());
    assert!(
        peak <= DECODED_BOUND * b.len(),
        "{peak} bytes for a frame of {}",
        b.len()
    );
}

/// A list whose count claims far more items than the bytes behind it hold: room is reserved
/// only for what those bytes could be, so the memory stays within the bound of the frame.
#[test]
fn a_count_beyond_the_bytes_present_reserves_only_what_they_back() {
    let empty_append = Request::AppendEntries(AppendEntriesRequest {
        vote: Vote::new(1, 1),
        prev_log_id: None,
        entries: vec![],
        leader_commit: None,
    });
    let frames = [
        frame_bytes(1, &empty_append),
        frame_bytes(
            1,
            &Request::Forward {
                term: 1,
                proposals: vec![],
            },
        ),
        frame_bytes(
            1,
            &Request::SessionReport {
                from: 1,
                sessions: vec![],
                events: vec![],
            },
        ),
        frame_bytes(1, &Response::SessionReportReply { moved_away: vec![] }),
    ];
    for mut b in frames {
        // Each list is the payload's last field: its count the frame's last 4 bytes.
        let n = b.len();
        b[n - 4..].copy_from_slice(&u32::MAX.to_be_bytes());
        b.extend_from_slice(&[0xff; 64 * 1024]);
        relength(&mut b);
        reseal(&mut b);
        let (r, peak) = meter::peak(|| {
            if b[FRAME_HEADER + 8] < 0x80 {
                decode_frame::<Request>(&b, MAX).map(|_| ())
            } else {
                decode_frame::<Response>(&b, MAX).map(|_| ())
            }
        });
        assert!(
            matches!(r, Err(WireError::Payload { .. })),
            "{r:?}, kind {:#x}",
            b[FRAME_HEADER + 8]
        );
        assert!(
            peak <= DECODED_BOUND * b.len(),
            "{peak} bytes for a frame of {} (kind {:#x})",
            b.len(),
            b[FRAME_HEADER + 8]
        );
    }
}

// ---- Framing errors ----

#[test]
fn the_frame_layout_is_length_checksum_id_kind_payload() {
    let b = frame_bytes(0x0102_0304_0506_0708, &Request::ReadIndex);
    let body = [1, 2, 3, 4, 5, 6, 7, 8, K_READ_INDEX];
    let mut want = 13u32.to_be_bytes().to_vec();
    want.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    want.extend_from_slice(&body);
    assert_eq!(b, want);

    // The hello's layout is fixed across versions: version, cluster, from, to.
    let b = frame_bytes(1, &Request::Hello(Hello::new("zk", 2, 3)));
    let payload = &b[FRAME_HEADER + BODY_HEAD..];
    assert_eq!(
        payload,
        [
            &PROTOCOL_VERSION.to_be_bytes()[..],
            &[0, 0, 0, 2, b'z', b'k'],
            &2u64.to_be_bytes(),
            &3u64.to_be_bytes()
        ]
        .concat()
    );
}

#[test]
fn a_frame_over_the_limit_is_refused_from_its_length_alone() {
    let mut codec = PeerCodec::<Request>::new(1000);
    // Only the length prefix has arrived: refused before a byte of room is reserved for it.
    let mut buf = BytesMut::from(&1001u32.to_be_bytes()[..]);
    let cap = buf.capacity();
    match codec.decode(&mut buf) {
        Err(WireError::FrameTooLarge {
            len: 1001,
            max: 1000,
        }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(buf.capacity(), cap);
    // u32::MAX too (not read as negative).
    let mut buf = BytesMut::from(&u32::MAX.to_be_bytes()[..]);
    assert!(matches!(
        codec.decode(&mut buf),
        Err(WireError::FrameTooLarge { .. })
    ));
    // A frame at the limit is waited for, with room for exactly it.
    let mut buf = BytesMut::from(&1000u32.to_be_bytes()[..]);
    assert!(codec.decode(&mut buf).unwrap().is_none());
    assert!(buf.capacity() >= 1004);
    // Too short to hold a checksum, an id and a kind.
    let mut buf = BytesMut::from(&12u32.to_be_bytes()[..]);
    assert!(matches!(
        codec.decode(&mut buf),
        Err(WireError::FrameTooShort { len: 12 })
    ));
}

#[test]
fn unknown_kinds_and_the_wrong_direction_are_refused() {
    let mut b = frame_bytes(1, &Request::ReadIndex);
    b[FRAME_HEADER + 8] = 0x7f;
    reseal(&mut b);
    assert!(matches!(
        decode_one::<Request>(&b),
        Err(WireError::UnknownKind { kind: 0x7f })
    ));
    // A request sent to a dialer, a response to a listener.
    let b = frame_bytes(1, &Request::ReadIndex);
    assert!(matches!(
        decode_one::<Response>(&b),
        Err(WireError::UnknownKind { kind: K_READ_INDEX })
    ));
    let b = frame_bytes(1, &Response::HelloOk);
    assert!(matches!(
        decode_one::<Request>(&b),
        Err(WireError::UnknownKind { kind: K_HELLO_OK })
    ));
}

#[test]
fn truncated_and_overlong_payloads_are_typed_errors() {
    let vote = Request::Vote(VoteRequest {
        vote: Vote::new(2, 1),
        last_log_id: None,
    });
    let whole = frame_bytes(9, &vote);

    let mut short = whole[..whole.len() - 1].to_vec();
    relength(&mut short);
    reseal(&mut short);
    let e = decode_one::<Request>(&short).unwrap_err();
    assert!(
        matches!(
            &e,
            WireError::Payload {
                kind: K_VOTE,
                problem: PayloadProblem::Bytes {
                    field: "last_log_id",
                    source: corral_proto::DecodeError::Truncated { .. }
                }
            }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string().starts_with("vote message: last_log_id: "),
        "{e}"
    );

    let mut long = whole.clone();
    long.push(0);
    relength(&mut long);
    reseal(&mut long);
    let e = decode_one::<Request>(&long).unwrap_err();
    assert!(
        matches!(
            e,
            WireError::Payload {
                kind: K_VOTE,
                problem: PayloadProblem::Bytes {
                    source: corral_proto::DecodeError::TrailingBytes(1),
                    ..
                }
            }
        ),
        "{e:?}"
    );

    // A raft value the consensus codec refuses: its error is kept as the source.
    let mut bad = whole.clone();
    // The vote's version byte, after its 4-byte length.
    bad[FRAME_HEADER + BODY_HEAD + 4] = 9;
    reseal(&mut bad);
    let e = decode_one::<Request>(&bad).unwrap_err();
    assert!(
        matches!(
            &e,
            WireError::Payload {
                problem: PayloadProblem::Raft { field: "vote", .. },
                ..
            }
        ),
        "{e:?}"
    );

    // A count far beyond the bytes present: refused as truncated, not allocated for.
    let mut b = frame_bytes(
        1,
        &Request::SessionReport {
            from: 1,
            sessions: vec![],
            events: vec![],
        },
    );
    let n = b.len();
    b[n - 4..].copy_from_slice(&u32::MAX.to_be_bytes());
    reseal(&mut b);
    let (r, peak) = meter::peak(|| decode_one::<Request>(&b).map(|_| ()));
    assert!(matches!(r, Err(WireError::Payload { .. })));
    assert!(peak < 1024, "{peak}");

    // A bad option tag.
    let mut b = frame_bytes(1, &Response::ReadIndexReply(Ok(5)));
    b[FRAME_HEADER + BODY_HEAD] = 2;
    reseal(&mut b);
    assert!(matches!(
        decode_one::<Response>(&b),
        Err(WireError::Payload {
            problem: PayloadProblem::Tag {
                field: "not leader",
                tag: 2
            },
            ..
        })
    ));
}

#[test]
fn the_encoder_writes_nothing_for_a_message_over_the_limit() {
    let mut codec = PeerCodec::<Request>::new(100);
    let mut dst = BytesMut::from(&b"before"[..]);
    let big = Response::Error {
        message: "x".repeat(200),
    };
    assert!(matches!(
        codec.encode(Frame { id: 1, msg: big }, &mut dst),
        Err(WireError::TooLarge { max: 100, .. })
    ));
    let chunk = Request::InstallSnapshot(InstallSnapshotRequest {
        vote: Vote::new(1, 1),
        meta: SnapshotMeta::default(),
        offset: 0,
        data: vec![0; 1000],
        done: false,
    });
    assert!(matches!(
        Encoder::<Frame<Request>>::encode(&mut codec, Frame { id: 2, msg: chunk }, &mut dst),
        Err(WireError::TooLarge {
            entries_fit: None,
            ..
        })
    ));
    assert_eq!(&dst[..], b"before");
    // The same codec goes on encoding what fits.
    codec
        .encode(
            Frame {
                id: 3,
                msg: Response::HelloOk,
            },
            &mut dst,
        )
        .unwrap();
    assert_eq!(dst.len(), 6 + FRAME_HEADER + BODY_HEAD);
}

#[test]
fn too_large_hints_how_many_entries_fit_and_gives_up_on_none() {
    match too_large(3, 100) {
        RPCError::PayloadTooLarge(p) => assert_eq!(p.entries_hint(), 3),
        other => panic!("{other:?}"),
    }
    assert!(matches!(too_large(0, 100), RPCError::Unreachable(_)));
}

// ---- The hello ----

#[test]
fn a_hello_is_refused_for_another_version_cluster_addressee_or_a_stranger() {
    let members = |id: NodeId| (1..=3).contains(&id);
    assert_eq!(Hello::new("c", 2, 1).check("c", 1, members), Ok(()));
    let mut old = Hello::new("c", 2, 1);
    old.version = PROTOCOL_VERSION + 1;
    assert_eq!(
        old.check("c", 1, members),
        Err(Refusal::Version {
            theirs: PROTOCOL_VERSION + 1,
            ours: PROTOCOL_VERSION
        })
    );
    assert!(matches!(
        Hello::new("other", 2, 1).check("c", 1, members),
        Err(Refusal::Cluster { .. })
    ));
    assert_eq!(
        Hello::new("c", 2, 3).check("c", 1, members),
        Err(Refusal::WrongTo { to: 3, me: 1 })
    );
    assert_eq!(
        Hello::new("c", 9, 1).check("c", 1, members),
        Err(Refusal::UnknownFrom { from: 9 })
    );
    assert_eq!(hello_reply(Ok(())), Response::HelloOk);
    assert_eq!(
        hello_reply(Err(Refusal::UnknownFrom { from: 9 })),
        Response::Refused {
            reason: "member 9 is not in this ensemble".into()
        }
    );
}

// ---- Raft errors ----

fn mismatch() -> SnapshotMismatch {
    SnapshotMismatch {
        expect: SnapshotSegmentId {
            id: "3-1-500".into(),
            offset: 0,
        },
        got: SnapshotSegmentId {
            id: "3-1-500".into(),
            offset: 4096,
        },
    }
}

/// Encodes and decodes a response, as it crosses the wire.
fn across(r: Response) -> Response {
    decode_one::<Response>(&frame_bytes(1, &r)).unwrap().msg
}

#[test]
fn a_snapshot_mismatch_comes_back_exactly() {
    let sent: RaftError<NodeId, InstallSnapshotError> =
        RaftError::APIError(InstallSnapshotError::SnapshotMismatch(mismatch()));
    let resp = across(Response::RaftError(sent.into()));
    match install_snapshot_reply(2, resp) {
        Err(RPCError::RemoteError(RemoteError {
            target: 2,
            source: RaftError::APIError(InstallSnapshotError::SnapshotMismatch(m)),
            ..
        })) => assert_eq!(m, mismatch()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn fatal_errors_come_back_as_remote_errors_of_their_kind() {
    for (fatal, kind) in [
        (Fatal::Stopped, FatalKind::Stopped),
        (Fatal::Panicked, FatalKind::Panicked),
    ] {
        let failure = RaftFailure::from(RaftError::<NodeId>::Fatal(fatal.clone()));
        assert!(matches!(&failure, RaftFailure::Fatal { kind: k, .. } if *k == kind));
        match append_entries_reply(3, across(Response::RaftError(failure.clone()))) {
            Err(RPCError::RemoteError(RemoteError {
                target: 3,
                source: RaftError::Fatal(f),
                ..
            })) => assert_eq!(f, fatal),
            other => panic!("{other:?}"),
        }
        match vote_reply(3, across(Response::RaftError(failure))) {
            Err(RPCError::RemoteError(e)) => assert_eq!(e.source, RaftError::Fatal(fatal)),
            other => panic!("{other:?}"),
        }
    }
    // A storage error keeps its text.
    let storage =
        Fatal::StorageError(StorageIOError::write_vote(AnyError::error("disk full")).into());
    let failure = RaftFailure::from(RaftError::<NodeId, InstallSnapshotError>::Fatal(storage));
    match install_snapshot_reply(1, across(Response::RaftError(failure))) {
        Err(RPCError::RemoteError(RemoteError {
            source: RaftError::Fatal(Fatal::StorageError(e)),
            ..
        })) => assert!(e.to_string().contains("disk full"), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn replies_map_to_what_the_raft_network_returns() {
    assert_eq!(
        append_entries_reply(1, Response::AppendEntries(AppendEntriesResponse::Conflict)).unwrap(),
        AppendEntriesResponse::Conflict
    );
    let v = VoteResponse {
        vote: Vote::new(4, 2),
        vote_granted: true,
        last_log_id: None,
    };
    assert_eq!(vote_reply(1, Response::Vote(v.clone())).unwrap(), v);
    let s = InstallSnapshotResponse {
        vote: Vote::new(4, 2),
    };
    assert_eq!(
        install_snapshot_reply(1, Response::InstallSnapshot(s)).unwrap(),
        InstallSnapshotResponse {
            vote: Vote::new(4, 2)
        }
    );
    // A peer that cannot serve raft: back off.
    let busy = Response::Error {
        message: "starting".into(),
    };
    assert!(matches!(
        append_entries_reply(1, busy),
        Err(RPCError::Unreachable(_))
    ));
    // The wrong reply, or a mismatch to anything but a snapshot: a network error.
    assert!(matches!(
        vote_reply(1, Response::HelloOk),
        Err(RPCError::Network(_))
    ));
    assert!(matches!(
        append_entries_reply(
            1,
            Response::RaftError(RaftFailure::SnapshotMismatch(mismatch()))
        ),
        Err(RPCError::Network(_))
    ));
    assert!(matches!(
        install_snapshot_reply(1, Response::Vote(v)),
        Err(RPCError::Network(_))
    ));
}
