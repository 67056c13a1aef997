//! Property tests of the codec: every request and response survives encode → decode, and
//! decoding arbitrary bytes returns an error or a value but never panics.

use corral_proto::frame::{frame, split_frame, DEFAULT_MAX_FRAME};
use corral_proto::jute::Jute;
use corral_proto::{
    Acl, ConnectRequest, ConnectResponse, CreateRequest, DeleteRequest, ErrorCode, GetDataRequest,
    Id, MultiResult, OpCode, Request, Response, SetDataRequest, SetWatches2, Stat,
};
use proptest::prelude::*;

fn path() -> impl Strategy<Value = String> {
    "(/[a-z0-9]{1,8}){1,4}"
}

fn data() -> impl Strategy<Value = Option<Vec<u8>>> {
    proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64))
}

fn acl() -> impl Strategy<Value = Vec<Acl>> {
    proptest::collection::vec(
        (0..32i32, "[a-z]{1,6}", "[a-z:0-9]{0,12}").prop_map(|(perms, scheme, id)| Acl {
            perms,
            id: Id { scheme, id },
        }),
        0..3,
    )
}

fn stat() -> impl Strategy<Value = Stat> {
    (any::<[i64; 5]>(), any::<[i32; 5]>(), any::<i64>()).prop_map(|(l, i, pzxid)| Stat {
        czxid: l[0],
        mzxid: l[1],
        ctime: l[2],
        mtime: l[3],
        version: i[0],
        cversion: i[1],
        aversion: i[2],
        ephemeral_owner: l[4],
        data_length: i[3],
        num_children: i[4],
        pzxid,
    })
}

fn write_request() -> impl Strategy<Value = Request> {
    prop_oneof![
        (path(), data(), acl(), 0..7i32).prop_map(|(path, data, acl, flags)| Request::Create(
            CreateRequest {
                path,
                data,
                acl,
                flags
            }
        )),
        (path(), data(), acl(), 0..7i32).prop_map(|(path, data, acl, flags)| Request::Create2(
            CreateRequest {
                path,
                data,
                acl,
                flags
            }
        )),
        (path(), any::<i32>())
            .prop_map(|(path, version)| Request::Delete(DeleteRequest { path, version })),
        (path(), data(), any::<i32>()).prop_map(|(path, data, version)| Request::SetData(
            SetDataRequest {
                path,
                data,
                version
            }
        )),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        write_request(),
        (path(), any::<bool>())
            .prop_map(|(path, watch)| Request::GetData(GetDataRequest { path, watch })),
        (path(), any::<bool>())
            .prop_map(|(path, watch)| Request::GetChildren2(GetDataRequest { path, watch })),
        proptest::collection::vec(write_request(), 0..5).prop_map(Request::Multi),
        (any::<i64>(), proptest::collection::vec(path(), 0..4)).prop_map(|(z, p)| {
            Request::SetWatches2(SetWatches2 {
                relative_zxid: z,
                data_watches: p.clone(),
                exist_watches: p.clone(),
                child_watches: p.clone(),
                persistent_watches: p.clone(),
                persistent_recursive_watches: p,
            })
        }),
        Just(Request::Ping),
        Just(Request::WhoAmI),
        Just(Request::CloseSession),
    ]
}

fn response() -> impl Strategy<Value = (OpCode, Response)> {
    prop_oneof![
        path().prop_map(|p| (OpCode::Create, Response::Path(p))),
        (path(), stat()).prop_map(|(p, s)| (OpCode::Create2, Response::Create2(p, s))),
        stat().prop_map(|s| (OpCode::SetData, Response::Stat(s))),
        (data(), stat()).prop_map(|(d, s)| (OpCode::GetData, Response::Data(d, s))),
        (acl(), stat()).prop_map(|(a, s)| (OpCode::GetAcl, Response::Acl(a, s))),
        (proptest::collection::vec("[a-z]{1,5}", 0..5), stat())
            .prop_map(|(c, s)| (OpCode::GetChildren2, Response::Children2(c, s))),
        proptest::collection::vec(
            prop_oneof![
                path().prop_map(MultiResult::Create),
                (path(), stat()).prop_map(|(p, s)| MultiResult::Create2(p, s)),
                Just(MultiResult::Delete),
                stat().prop_map(MultiResult::SetData),
                Just(MultiResult::Check),
                Just(MultiResult::Error(ErrorCode::NodeExists)),
                Just(MultiResult::Error(ErrorCode::RuntimeInconsistency)),
            ],
            0..5
        )
        .prop_map(|r| (OpCode::Multi, Response::Multi(r))),
        any::<i32>().prop_map(|n| (OpCode::GetAllChildrenNumber, Response::Count(n))),
    ]
}

proptest! {
    #[test]
    fn requests_round_trip(req in request()) {
        let body = req.to_frame_body(7);
        let header = corral_proto::RequestHeader::read(&mut corral_proto::Reader::new(&body)).expect("header");
        prop_assert_eq!(header.xid, 7);
        let back = Request::decode(header.op, &body[8..]).expect("decode");
        // The framed form is the same body behind its length.
        prop_assert_eq!(req.to_frame(7), corral_proto::frame::frame(&body));
        prop_assert_eq!(back, req);
    }

    #[test]
    fn responses_round_trip((op, resp) in response()) {
        let mut w = corral_proto::Writer::new();
        resp.write(&mut w);
        prop_assert_eq!(Response::decode(op, &w.buf).expect("decode"), resp);
    }

    #[test]
    fn handshake_round_trips(z in any::<i64>(), t in any::<i32>(), id in any::<i64>(),
                             pw in proptest::collection::vec(any::<u8>(), 16), ro in proptest::option::of(any::<bool>())) {
        let req = ConnectRequest { protocol_version: 0, last_zxid_seen: z, timeout: t, session_id: id, passwd: pw.clone(), read_only: ro };
        prop_assert_eq!(ConnectRequest::from_bytes(&req.to_bytes()).expect("req"), req);
        let resp = ConnectResponse { protocol_version: 0, timeout: t, session_id: id, passwd: pw, read_only: ro };
        prop_assert_eq!(ConnectResponse::from_bytes(&resp.to_bytes()).expect("resp"), resp);
    }

    /// Whatever arrives on a socket: decoding returns, it never panics or over-allocates.
    #[test]
    fn arbitrary_bytes_never_panic(op in -20i32..120, bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = Request::decode(op, &bytes);
        let _ = ConnectRequest::read(&mut corral_proto::Reader::new(&bytes));
        if let Some(code) = OpCode::from_i32(op) {
            let _ = Response::decode(code, &bytes);
        }
        let _ = split_frame(&bytes, DEFAULT_MAX_FRAME);
    }
}

#[test]
fn frames_split_at_their_length_and_refuse_oversize() {
    let mut two = frame(b"abc");
    two.extend_from_slice(&frame(b""));
    let (body, used) = split_frame(&two, DEFAULT_MAX_FRAME)
        .expect("ok")
        .expect("complete");
    assert_eq!((body, used), (&b"abc"[..], 7));
    assert_eq!(split_frame(&two[..5], DEFAULT_MAX_FRAME), Ok(None));
    let huge = (DEFAULT_MAX_FRAME as i32 + 1).to_be_bytes();
    assert!(split_frame(&huge, DEFAULT_MAX_FRAME).is_err());
    assert!(split_frame(&(-1i32).to_be_bytes(), DEFAULT_MAX_FRAME).is_err());
}

#[test]
fn null_data_stays_null_and_huge_lengths_are_refused() {
    let req = Request::SetData(SetDataRequest {
        path: "/a".into(),
        data: None,
        version: -1,
    });
    let body = req.to_frame_body(1);
    assert_eq!(Request::decode(OpCode::SetData.code(), &body[8..]), Ok(req));
    // A vector claiming 2^31-1 strings in 8 bytes is refused before allocating.
    let mut b = Vec::new();
    b.extend_from_slice(&0i32.to_be_bytes());
    b.extend_from_slice(&i32::MAX.to_be_bytes());
    assert!(Response::decode(OpCode::GetChildren, &b[4..]).is_err());
}
