//! Property tests: random create/delete/setData/check/multi sequences against a simple model
//! (path -> (data, version)); determinism and snapshot round trips on the same sequences.

use std::collections::BTreeMap;

use corral_proto::*;
use corral_tree::*;
use proptest::prelude::*;

const SESSION: i64 = 7;
const PATHS: &[&str] = &["/a", "/b", "/a/a", "/a/b", "/b/a", "/a/a/a", "/a/b/c"];

#[derive(Debug, Clone)]
enum Op {
    Create(usize, u8),
    Delete(usize, i32),
    Set(usize, u8, i32),
    Check(usize, i32),
}

fn op() -> impl Strategy<Value = Op> {
    let p = 0..PATHS.len();
    let v = -1..3i32;
    prop_oneof![
        (p.clone(), any::<u8>()).prop_map(|(p, d)| Op::Create(p, d)),
        (p.clone(), v.clone()).prop_map(|(p, v)| Op::Delete(p, v)),
        (p.clone(), any::<u8>(), v.clone()).prop_map(|(p, d, v)| Op::Set(p, d, v)),
        (p, v).prop_map(|(p, v)| Op::Check(p, v)),
    ]
}

#[derive(Debug, Clone)]
enum Step {
    Single(Op),
    Multi(Vec<Op>),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => op().prop_map(Step::Single),
        1 => prop::collection::vec(op(), 0..5).prop_map(Step::Multi),
    ]
}

fn to_request(op: &Op) -> Request {
    match *op {
        Op::Create(p, d) => Request::Create(CreateRequest {
            path: PATHS[p].into(),
            data: Some(vec![d]),
            acl: acl::open_acl_unsafe(),
            flags: 0,
        }),
        Op::Delete(p, version) => Request::Delete(DeleteRequest {
            path: PATHS[p].into(),
            version,
        }),
        Op::Set(p, d, version) => Request::SetData(SetDataRequest {
            path: PATHS[p].into(),
            data: Some(vec![d]),
            version,
        }),
        Op::Check(p, version) => Request::Check(CheckVersionRequest {
            path: PATHS[p].into(),
            version,
        }),
    }
}

type Model = BTreeMap<String, (Vec<u8>, i32)>;

fn parent(p: &str) -> &str {
    match p.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &p[..i],
    }
}

fn model_apply(m: &mut Model, op: &Op) -> ErrorCode {
    let exists = |m: &Model, p: &str| p == "/" || m.contains_key(p);
    let version_ok = |cur: i32, want: i32| want == -1 || want == cur;
    match *op {
        Op::Create(p, d) => {
            let p = PATHS[p];
            if !exists(m, parent(p)) {
                ErrorCode::NoNode
            } else if m.contains_key(p) {
                ErrorCode::NodeExists
            } else {
                m.insert(p.into(), (vec![d], 0));
                ErrorCode::Ok
            }
        }
        Op::Delete(p, v) => {
            let p = PATHS[p];
            let Some(&(_, cur)) = m.get(p) else {
                return ErrorCode::NoNode;
            };
            if !version_ok(cur, v) {
                ErrorCode::BadVersion
            } else if m.keys().any(|k| parent(k) == p) {
                ErrorCode::NotEmpty
            } else {
                m.remove(p);
                ErrorCode::Ok
            }
        }
        Op::Set(p, d, v) => match m.get_mut(PATHS[p]) {
            None => ErrorCode::NoNode,
            Some((_, cur)) if !version_ok(*cur, v) => ErrorCode::BadVersion,
            Some(e) => {
                *e = (vec![d], e.1 + 1);
                ErrorCode::Ok
            }
        },
        Op::Check(p, v) => match m.get(PATHS[p]) {
            None => ErrorCode::NoNode,
            Some((_, cur)) if !version_ok(*cur, v) => ErrorCode::BadVersion,
            Some(_) => ErrorCode::Ok,
        },
    }
}

/// Expected (reply err, per-op multi errors or None for a single op).
fn model_step(m: &mut Model, step: &Step) -> (ErrorCode, Option<Vec<ErrorCode>>) {
    match step {
        Step::Single(op) => (model_apply(m, op), None),
        Step::Multi(ops) => {
            let mut scratch = m.clone();
            for (i, op) in ops.iter().enumerate() {
                let e = model_apply(&mut scratch, op);
                if e != ErrorCode::Ok {
                    let mut errs = vec![ErrorCode::Ok; i];
                    errs.push(e);
                    errs.resize(ops.len(), ErrorCode::RuntimeInconsistency);
                    return (ErrorCode::Ok, Some(errs));
                }
            }
            *m = scratch;
            (ErrorCode::Ok, Some(vec![ErrorCode::Ok; ops.len()]))
        }
    }
}

fn entry(step: &Step, zxid: i64) -> Entry {
    let req = match step {
        Step::Single(op) => to_request(op),
        Step::Multi(ops) => Request::Multi(ops.iter().map(to_request).collect()),
    };
    Entry {
        session_id: SESSION,
        time_ms: zxid * 10,
        identities: vec![],
        op: EntryOp::Request(req),
    }
}

fn fresh() -> DataTree {
    let mut t = DataTree::new(TreeConfig::default());
    let e = Entry {
        session_id: 0,
        time_ms: 0,
        identities: vec![],
        op: EntryOp::CreateSession {
            session_id: SESSION,
            timeout_ms: 1000,
            passwd: vec![0; 16],
        },
    };
    t.apply(1, &e);
    t
}

fn user_nodes(t: &DataTree) -> Model {
    t.nodes()
        .filter(|(p, _)| p.as_str() != "/" && !p.starts_with("/zookeeper"))
        .map(|(p, n)| {
            (
                p.clone(),
                (n.data.clone().unwrap_or_default(), n.stat.version),
            )
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn tree_agrees_with_model(steps in prop::collection::vec(step(), 1..40)) {
        let mut tree = fresh();
        let mut twin = fresh();
        let mut model = Model::new();
        for (i, step) in steps.iter().enumerate() {
            let zxid = i as i64 + 2;
            let e = entry(step, zxid);
            let got = tree.apply(zxid, &e);
            prop_assert_eq!(&twin.apply(zxid, &e), &got);
            let (want_err, want_multi) = model_step(&mut model, step);
            prop_assert_eq!(got.err, want_err);
            // A failed write, or a multi with a failed op (answered Ok with per-op
            // errors), changes nothing, so it fires no watch.
            let mut failed = got.err != ErrorCode::Ok;
            if let Some(want) = want_multi {
                let Response::Multi(results) = &got.response else { panic!("not a multi reply") };
                let errs: Vec<ErrorCode> = results
                    .iter()
                    .map(|r| match r { MultiResult::Error(e) => *e, _ => ErrorCode::Ok })
                    .collect();
                failed |= errs.iter().any(|e| *e != ErrorCode::Ok);
                prop_assert_eq!(errs, want);
            }
            if failed {
                prop_assert!(got.triggers.is_empty());
            }
            prop_assert_eq!(user_nodes(&tree), model.clone());
            for (p, n) in tree.nodes() {
                prop_assert_eq!(n.stat.num_children as usize, n.children.len(), "{}", p);
                prop_assert_eq!(n.stat.data_length as usize, corral_tree::data_len(&n.data));
            }
        }
        let snap = tree.encode_snapshot();
        prop_assert_eq!(&twin.encode_snapshot(), &snap);
        let back = DataTree::decode_snapshot(&snap).expect("decodes");
        prop_assert_eq!(&back, &tree);
        prop_assert_eq!(back.encode_snapshot(), snap);
    }

    #[test]
    fn entries_round_trip(steps in prop::collection::vec(step(), 1..10)) {
        for (i, s) in steps.iter().enumerate() {
            let e = entry(s, i as i64);
            prop_assert_eq!(Entry::decode(&e.encode()).expect("decodes"), e);
        }
    }

    #[test]
    fn decoders_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = Entry::decode(&bytes);
        let _ = DataTree::decode_snapshot(&bytes);
    }
}
