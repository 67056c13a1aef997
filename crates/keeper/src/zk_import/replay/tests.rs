//! Tests of the replay: ZooKeeper's fuzzy-snapshot rules, ACL numbering, sessions and quota
//! stats.

use super::quota::stats_add;
use super::*;

#[test]
fn quota_stat_text_is_zookeepers() {
    assert_eq!(
        stats_add("count=3,bytes=10", 1, 5).as_deref(),
        Some("count=4,bytes=15")
    );
    assert_eq!(
        stats_add("count=3,bytes=10=;countHardLimit=5;byteHardLimit=9", -1, -2).as_deref(),
        Some("count=2,bytes=8=;byteHardLimit=9;countHardLimit=5")
    );
    assert_eq!(stats_add("", 1, 1).as_deref(), Some("count=0,bytes=0"));
    assert_eq!(stats_add("count=x", 1, 1), None);
}

fn hdr(kind: i32, zxid: i64, client_id: i64) -> TxnHeader {
    TxnHeader {
        client_id,
        zxid,
        time: 1000 + zxid,
        kind,
    }
}

fn create(path: &str, parent_cversion: i32, ephemeral: bool) -> Txn {
    Txn::Create {
        path: path.into(),
        data: Some(b"d".to_vec()),
        acl: open_acl_unsafe(),
        ephemeral,
        parent_cversion,
    }
}

/// A node created while the snapshot was written may refer to an ACL list added to the
/// cache after the cache was written: the replayed create numbers the list again, as
/// ZooKeeper's does, and the node gets it. An id nothing defines stops the import.
#[test]
fn a_snapshot_node_whose_acl_the_log_defines_gets_it() {
    use crate::zk_import::files::SnapNode;
    let digest = vec![Acl {
        perms: 31,
        id: corral_proto::Id {
            scheme: "digest".into(),
            id: "u:h".into(),
        },
    }];
    let node = |path: &str, acl_ref: i64| SnapNode {
        path: path.into(),
        data: Some(Vec::new()),
        acl_ref,
        stat: StatPersisted::default(),
    };
    let snapshot = |refs: i64| Snapshot {
        sessions: Vec::new(),
        acls: vec![(1, open_acl_unsafe())],
        nodes: vec![
            node("", -1),
            node("/zookeeper", -1),
            node("/a", 1),
            node("/a/new", refs),
        ],
    };
    let file = Path::new("snapshot.5");
    let mut t = ZkTree::from_snapshot(file, snapshot(2), 5).expect("loads");
    // The create logged after the snapshot's start, already in the snapshot.
    t.replay(
        &hdr(op::CREATE, 6, 0),
        &Txn::Create {
            path: "/a/new".into(),
            data: Some(Vec::new()),
            acl: digest.clone(),
            ephemeral: false,
            parent_cversion: 1,
        },
    );
    t.resolve_pending_acls(file).expect("resolved");
    assert_eq!(&*t.nodes["/a/new"].acl, &digest[..]);
    assert_eq!(&*t.nodes["/a"].acl, &open_acl_unsafe()[..]);

    let mut t = ZkTree::from_snapshot(file, snapshot(9), 5).expect("loads");
    let e = t
        .resolve_pending_acls(file)
        .expect_err("id 9 is defined nowhere");
    assert!(e.to_string().contains("ACL 9"), "{e}");
}

/// A fuzzy snapshot may already hold what the log replays: ZooKeeper's rules keep the
/// replay idempotent and never move a parent's cversion or pzxid back.
#[test]
fn replay_is_idempotent_over_a_fuzzy_snapshot() {
    let mut t = ZkTree::empty();
    t.replay(&hdr(op::CREATE, 1, 0), &create("/a", 1, false));
    t.replay(&hdr(op::CREATE, 2, 0), &create("/a/x", 1, false));
    let a = t.nodes["/a"].stat.clone();
    // The same create again (it was in the snapshot already): nothing moves.
    t.replay(&hdr(op::CREATE, 2, 0), &create("/a/x", 1, false));
    assert_eq!(t.nodes["/a"].stat, a);
    // A create that failed because another session re-created the node meanwhile
    // still raises the parent's cversion and pzxid.
    t.replay(&hdr(op::CREATE, 5, 0), &create("/a/x", 3, false));
    assert_eq!(
        (t.nodes["/a"].stat.cversion, t.nodes["/a"].stat.pzxid),
        (3, 5)
    );
    // A delete of a node already gone still raises the parent's pzxid, never lowers it.
    t.replay(
        &hdr(op::DELETE, 7, 0),
        &Txn::Delete {
            path: "/a/y".into(),
        },
    );
    assert_eq!(t.nodes["/a"].stat.pzxid, 7);
    t.replay(
        &hdr(op::DELETE, 6, 0),
        &Txn::Delete {
            path: "/a/x".into(),
        },
    );
    assert_eq!(t.nodes["/a"].stat.pzxid, 7);
    assert!(!t.nodes.contains_key("/a/x"));
    // setData takes the version from the log, so replaying it twice is harmless.
    for _ in 0..2 {
        t.replay(
            &hdr(op::SET_DATA, 8, 0),
            &Txn::SetData {
                path: "/a".into(),
                data: None,
                version: 4,
            },
        );
    }
    assert_eq!(
        (t.nodes["/a"].stat.version, t.nodes["/a"].stat.mzxid),
        (4, 8)
    );
    assert_eq!(t.nodes["/a"].data, None);
    assert_eq!(t.last_zxid, 8);
}

#[test]
fn multis_and_sessions() {
    let mut t = ZkTree::empty();
    t.replay(
        &hdr(op::CREATE_SESSION, 1, 77),
        &Txn::CreateSession { timeout: 9000 },
    );
    t.replay(
        &hdr(op::MULTI, 2, 77),
        &Txn::Multi(vec![
            (op::CREATE, create("/e", 1, true)),
            (op::CREATE, create("/p", 2, false)),
        ]),
    );
    assert_eq!(t.nodes["/e"].stat.ephemeral_owner, 77);
    // A failed multi is logged with error sub-txns: none of it applies.
    t.replay(
        &hdr(op::MULTI, 3, 77),
        &Txn::Multi(vec![
            (op::ERROR, Txn::Error),
            (op::CREATE, create("/never", 3, false)),
        ]),
    );
    assert!(!t.nodes.contains_key("/never"));
    assert_eq!(t.sessions.get(&77), Some(&9000));
    t.replay(
        &hdr(op::CLOSE_SESSION, 4, 77),
        &Txn::CloseSession { paths: None },
    );
    assert!(!t.nodes.contains_key("/e") && t.nodes.contains_key("/p"));
    assert!(t.sessions.is_empty());
    assert_eq!(t.nodes["/"].stat.pzxid, 4);
}

#[test]
fn quota_stats_follow_creates_deletes_and_set_data() {
    let mut t = ZkTree::empty();
    t.replay(&hdr(op::CREATE, 1, 0), &create("/q", 1, false));
    t.replay(&hdr(op::CREATE, 2, 0), &create("/q/a", 1, false));
    t.replay(
        &hdr(op::CREATE, 3, 0),
        &create("/zookeeper/quota/q", 1, false),
    );
    t.replay(
        &hdr(op::CREATE, 4, 0),
        &create("/zookeeper/quota/q/zookeeper_limits", 1, false),
    );
    t.replay(
        &hdr(op::CREATE, 5, 0),
        &create("/zookeeper/quota/q/zookeeper_stats", 2, false),
    );
    let stats = |t: &ZkTree| {
        String::from_utf8_lossy(
            t.nodes["/zookeeper/quota/q/zookeeper_stats"]
                .data
                .as_deref()
                .unwrap_or_default(),
        )
        .into_owned()
    };
    // Recounted when the stat node is created: /q and /q/a, one byte each.
    assert_eq!(stats(&t), "count=2,bytes=2");
    t.replay(&hdr(op::CREATE, 6, 0), &create("/q/a/b", 1, false));
    assert_eq!(stats(&t), "count=3,bytes=3");
    t.replay(
        &hdr(op::SET_DATA, 7, 0),
        &Txn::SetData {
            path: "/q/a".into(),
            data: Some(b"hello".to_vec()),
            version: 1,
        },
    );
    assert_eq!(stats(&t), "count=3,bytes=7");
    t.replay(
        &hdr(op::DELETE, 8, 0),
        &Txn::Delete {
            path: "/q/a/b".into(),
        },
    );
    assert_eq!(stats(&t), "count=2,bytes=6");
    // Outside the quota'd path nothing counts.
    t.replay(&hdr(op::CREATE, 9, 0), &create("/qq", 2, false));
    assert_eq!(stats(&t), "count=2,bytes=6");
}

#[test]
fn paths() {
    assert_eq!(parent_of("/a"), Some("/"));
    assert_eq!(parent_of("/a/b"), Some("/a"));
    assert_eq!(parent_of("/"), None);
    assert_eq!(normalise("/a//b/"), "/a/b");
}
