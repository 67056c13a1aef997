//! corral-client's `Client` operations beyond the basic reads and writes, under a chroot,
//! against corral and real ZooKeeper 3.8 alike: transactions (multi) that apply all or
//! nothing and name the operation that failed, multiRead with per-read results, createTTL,
//! getEphemerals, getAllChildrenNumber, whoAmI and the ensemble's config.

mod common;

use std::time::Duration;

use common::{unique_name, CorralServer, RealZk};
use corral_client::proto::{CreateMode, ErrorCode};
use corral_client::{open_acl_unsafe, Client, ClientBuilder, ClientError, OpResult, ReadResult};

/// TTL nodes need extended types on either server.
const CFG: &str = "extendedTypesEnabled=true";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_against_corral() {
    let server = CorralServer::start(CFG);
    operations(&server.addr()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_against_zookeeper() {
    let Some(zk) = RealZk::start(CFG) else { return };
    operations(&zk.addr()).await;
}

async fn operations(addr: &str) {
    let root = format!("/{}", unique_name("ops"));
    let setup = Client::connect(addr).await.expect("connect");
    let acl = open_acl_unsafe();
    setup
        .create(&root, b"", &acl, CreateMode::Persistent)
        .await
        .expect("root");
    let client = ClientBuilder::new(&format!("{addr}{root}"))
        .connect()
        .await
        .expect("chrooted client");

    // A transaction applies everything, each result typed, paths chroot-relative.
    let done = client
        .transaction()
        .create("/a", b"1", &acl, CreateMode::Persistent)
        .create("/a/s-", b"", &acl, CreateMode::PersistentSequential)
        .set_data("/a", b"2", 0)
        .check("/a", 1)
        .commit()
        .await
        .expect("transaction");
    assert_eq!(done.len(), 4, "{done:?}");
    assert_eq!(
        done[0],
        OpResult::Created {
            path: "/a".into(),
            stat: None
        }
    );
    match &done[1] {
        OpResult::Created { path, .. } => assert!(path.starts_with("/a/s-"), "{path}"),
        other => panic!("a create's result, not {other:?}"),
    }
    assert!(
        matches!(&done[2], OpResult::DataSet(s) if s.version == 1),
        "{done:?}"
    );
    assert_eq!(done[3], OpResult::Checked);

    // One failing operation: none applied, and the error says which and why.
    let refused = client
        .transaction()
        .create("/b", b"", &acl, CreateMode::Persistent)
        .check("/a", 0)
        .delete("/a", -1)
        .commit()
        .await;
    match refused {
        Err(ClientError::TransactionFailed { index, code }) => {
            assert_eq!((index, code), (1, ErrorCode::BadVersion))
        }
        other => panic!("a refused transaction, not {other:?}"),
    }
    assert_eq!(
        client.exists("/b").await.expect("exists"),
        None,
        "/b was rolled back"
    );
    assert!(client.exists("/a").await.expect("exists").is_some());
    let bad = client.transaction().delete("relative", -1).commit().await;
    assert!(matches!(bad, Err(ClientError::BadPath(_))), "{bad:?}");

    // multiRead: each read answers on its own.
    let reads = client
        .multi_read()
        .get_data("/a")
        .get_children("/a")
        .get_data("/missing")
        .run()
        .await
        .expect("multiRead");
    assert_eq!(reads.len(), 3, "{reads:?}");
    assert!(matches!(&reads[0], ReadResult::Data(d, s) if d == b"2" && s.version == 1));
    assert!(matches!(&reads[1], ReadResult::Children(c) if c.len() == 1));
    assert_eq!(reads[2], ReadResult::Error(ErrorCode::NoNode));

    // createTTL.
    let (path, stat) = client
        .create_ttl(
            "/t",
            b"x",
            &acl,
            CreateMode::PersistentWithTtl,
            Duration::from_secs(60),
        )
        .await
        .expect("createTTL");
    assert_eq!(path, "/t");
    assert!(stat.czxid > 0);

    // getEphemerals, under the chroot: ours only, chroot-relative.
    for p in ["/a/e1", "/e2"] {
        client
            .create(p, b"", &acl, CreateMode::Ephemeral)
            .await
            .expect("ephemeral");
    }
    let mut mine = client.get_ephemerals("/").await.expect("getEphemerals");
    mine.sort();
    assert_eq!(mine, vec!["/a/e1".to_string(), "/e2".to_string()]);
    assert_eq!(
        client.get_ephemerals("/a").await.expect("getEphemerals /a"),
        vec!["/a/e1".to_string()]
    );
    assert!(setup
        .get_ephemerals("/")
        .await
        .expect("another session's")
        .is_empty());

    // getAllChildrenNumber counts every depth: /a/s-N and /a/e1 under /a.
    assert_eq!(
        client.get_all_children_number("/a").await.expect("count"),
        2
    );
    // Under the chroot: /a, its two, /t, /e2.
    assert_eq!(client.get_all_children_number("/").await.expect("count"), 5);

    // whoAmI: the address a session without credentials is known by.
    let ids = client.who_am_i().await.expect("whoAmI");
    assert!(ids.iter().any(|i| i.auth_scheme == "ip"), "{ids:?}");
    client
        .add_auth("digest", b"ops:secret")
        .await
        .expect("auth");
    let ids = client.who_am_i().await.expect("whoAmI");
    assert!(
        ids.iter()
            .any(|i| i.auth_scheme == "digest" && i.user == "ops"),
        "{ids:?}"
    );

    // The config node is read outside the chroot.
    let (_, stat) = client.get_config().await.expect("getConfig");
    assert!(stat.ctime >= 0);

    client.close().await.expect("close");
    delete_tree(&setup, &root).await;
    setup.close().await.expect("close");
}

/// Removes `path` and everything below it, children first.
async fn delete_tree(c: &Client, path: &str) {
    let mut order = vec![path.to_string()];
    let mut i = 0;
    while i < order.len() {
        let p = order[i].clone();
        for k in c.get_children(&p).await.unwrap_or_default() {
            order.push(format!("{p}/{k}"));
        }
        i += 1;
    }
    for p in order.iter().rev() {
        let _ = c.delete(p, -1).await;
    }
}
