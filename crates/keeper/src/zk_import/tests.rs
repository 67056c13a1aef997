//! Import tests: ZooKeeper's files written byte by byte here, imported, and the result
//! checked; a keeper started on an imported dir; refusals (a gap in the logs, a used
//! destination, ZooKeeper writing after the import); torn tails and incomplete snapshots
//! passed over as ZooKeeper does.

use super::*;
use crate::storage::wal::tests::TestDir;
use corral_proto::{open_acl_unsafe, Writer};

fn stat(w: &mut Writer, zxid: i64) {
    for v in [zxid, zxid, 0, 0] {
        w.i64(v);
    }
    for v in [0, 0, 0] {
        w.i32(v);
    }
    w.i64(0);
    w.i64(zxid);
}

/// A ZooKeeper snapshot of a fresh tree with one session (0x42, 5000 ms).
fn snapshot() -> Vec<u8> {
    let mut w = Writer::new();
    w.buf.extend_from_slice(b"ZKSN");
    w.i32(2);
    w.i64(-1);
    w.i32(1);
    w.i64(0x42);
    w.i32(5000);
    w.i32(0);
    for p in ["", "/zookeeper", "/zookeeper/quota"] {
        w.string(p);
        w.buffer(b"");
        w.i64(-1);
        stat(&mut w, 0);
    }
    w.string("/");
    let sum = files::adler32(&w.buf);
    w.i64(i64::from(sum));
    w.string("/");
    w.buf
}

fn create(path: &str, parent_cversion: i32) -> Vec<u8> {
    let mut w = Writer::new();
    w.string(path);
    w.buffer(path.as_bytes());
    w.vec(&open_acl_unsafe());
    w.bool(false);
    w.i32(parent_cversion);
    w.buf
}

/// A log of (zxid, type, body) records, preallocated zeros after them.
fn log(txns: &[(i64, i32, Vec<u8>)]) -> Vec<u8> {
    let mut w = Writer::new();
    w.buf.extend_from_slice(b"ZKLG");
    w.i32(2);
    w.i64(0);
    for (zxid, kind, body) in txns {
        let mut r = Writer::new();
        r.i64(0x42);
        r.i32(1);
        r.i64(*zxid);
        r.i64(1000);
        r.i32(*kind);
        r.buf.extend_from_slice(body);
        w.i64(i64::from(files::adler32(&r.buf)));
        w.buffer(&r.buf);
        w.buf.push(b'B');
    }
    w.buf.extend_from_slice(&[0; 64]);
    w.buf
}

fn zk_dir(files: &[(&str, Vec<u8>)]) -> TestDir {
    let d = TestDir::new("zk-import");
    let v2 = d.path().join("version-2");
    std::fs::create_dir_all(&v2).unwrap();
    for (name, bytes) in files {
        std::fs::write(v2.join(name), bytes).unwrap();
    }
    d
}

#[test]
fn imports_a_snapshot_and_the_log_after_it() {
    let zk = zk_dir(&[
        ("snapshot.0", snapshot()),
        (
            "log.1",
            log(&[
                (1, files::op::CREATE, create("/a", 1)),
                (2, files::op::CREATE, create("/a/b", 1)),
            ]),
        ),
    ]);
    let dest = TestDir::new("zk-import-dest");
    let storage = StorageConfig::new(dest.path());
    let s = import(zk.path(), None, &storage).unwrap();
    assert_eq!(
        (s.znodes, s.sessions, s.txns_replayed, s.last_zxid),
        (5, 1, 2, 2)
    );
    assert!(has_corral_data(&storage));
    // ZooKeeper's files are only read, and a second import is refused.
    assert_eq!(
        std::fs::read_dir(zk.path().join("version-2"))
            .unwrap()
            .count(),
        2
    );
    assert!(matches!(
        import(zk.path(), None, &storage),
        Err(ImportError::DestinationInUse(_))
    ));
}

/// The snapshot is the import's commit point: an import stopped before its raft vote was
/// written leaves a directory a keeper starts from all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_imported_snapshot_alone_is_enough_to_start() {
    use crate::config::Config;
    use crate::keeper::Keeper;
    let zk = zk_dir(&[
        ("snapshot.0", snapshot()),
        ("log.1", log(&[(1, files::op::CREATE, create("/a", 1))])),
    ]);
    let dest = TestDir::new("zk-import-no-vote");
    let storage = StorageConfig::new(dest.path());
    import(zk.path(), None, &storage).unwrap();
    std::fs::remove_dir_all(storage.raft_dir()).unwrap();
    let keeper = Keeper::new(Config {
        data_dir: dest.path().to_path_buf(),
        client_port: 0,
        admin_enable_server: false,
        ..Config::default()
    });
    keeper
        .start()
        .await
        .expect("starts from the snapshot alone");
    assert!(keeper.state().tree.node("/a").is_some());
    keeper.shutdown(std::time::Duration::from_secs(5)).await;
}

/// zxids of a later epoch (ZooKeeper's high 32 bits) make log indexes past 2^32; a
/// keeper started on such a dataDir imports it by itself (the logs in a separate
/// dataLogDir), serves at ZooKeeper's last zxid and writes after it, and starts again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keeper_starts_on_an_imported_later_epoch_and_writes_after_it() {
    use crate::config::Config;
    use crate::keeper::Keeper;
    use corral_tree::{Entry, EntryOp};

    let base = 0x3_0000_0000i64;
    let data = TestDir::new("zk-import-serve");
    let logs = TestDir::new("zk-import-serve-logs");
    let put = |dir: &Path, name: String, bytes: Vec<u8>| {
        std::fs::create_dir_all(dir.join("version-2")).unwrap();
        std::fs::write(dir.join("version-2").join(name), bytes).unwrap();
    };
    put(data.path(), format!("snapshot.{:x}", base), snapshot());
    put(
        logs.path(),
        format!("log.{:x}", base + 1),
        log(&[
            (base + 1, files::op::CREATE, create("/a", 1)),
            (base + 2, files::op::CREATE, create("/b", 2)),
        ]),
    );
    let config = Config {
        data_dir: data.path().to_path_buf(),
        data_log_dir: Some(logs.path().to_path_buf()),
        client_port: 0,
        admin_enable_server: false,
        ..Config::default()
    };
    for round in 0..2 {
        let keeper = Keeper::new(config.clone());
        keeper.start().await.unwrap();
        assert!(keeper.shared().last_zxid() >= base + 2, "round {round}");
        {
            let st = keeper.state();
            assert!(st.tree.node("/a").is_some() && st.tree.node("/b").is_some());
            // The snapshot's session, closed in the first round.
            assert_eq!(st.tree.session(0x42).is_some(), round == 0);
        }
        let (zxid, _) = keeper
            .shared()
            .propose(Entry {
                session_id: 0,
                time_ms: 0,
                identities: Vec::new(),
                op: EntryOp::CloseSession {
                    session_id: 0x42 + round,
                    evidence: corral_tree::obituary::Evidence::bare(
                        corral_tree::obituary::EndCause::Unknown,
                        "test",
                    ),
                },
            })
            .await
            .unwrap();
        assert!(zxid > base + 2, "round {round}: zxid {zxid:#x}");
        keeper.shutdown(std::time::Duration::from_secs(5)).await;
    }
    // ZooKeeper's files are as they were.
    assert_eq!(
        std::fs::read_dir(data.path().join("version-2"))
            .unwrap()
            .count(),
        1
    );
    assert_eq!(
        std::fs::read_dir(logs.path().join("version-2"))
            .unwrap()
            .count(),
        1
    );

    // ZooKeeper started again on the dir and wrote: corral refuses to serve its older copy.
    put(
        logs.path(),
        format!("log.{:x}", base + 3),
        log(&[(base + 3, files::op::CREATE, create("/c", 3))]),
    );
    let keeper = Keeper::new(config.clone());
    let e = keeper.start().await.unwrap_err();
    assert!(
        matches!(&e, crate::StartError::ZkWrittenSinceImport(
            ImportError::WrittenSinceImport { imported, later, .. }
        ) if *imported == base + 2 && later.len() == 1),
        "{e}"
    );
    let e = e.to_string();
    assert!(
        e.contains("ZooKeeper has written") && e.contains("log.300000003"),
        "{e}"
    );
}

#[test]
fn a_gap_in_the_logs_stops_the_import() {
    let zk = zk_dir(&[
        ("snapshot.0", snapshot()),
        ("log.1", log(&[(1, files::op::CREATE, create("/a", 1))])),
        ("log.3", log(&[(3, files::op::CREATE, create("/b", 2))])),
    ]);
    let dest = TestDir::new("zk-import-dest");
    let storage = StorageConfig::new(dest.path());
    let e = import(zk.path(), None, &storage).unwrap_err();
    assert!(
        matches!(&e, ImportError::Gap { from: 2, to: 2, file } if file.ends_with("log.3")),
        "{e}"
    );
    assert!(!has_corral_data(&storage));
}

#[test]
fn torn_tails_and_incomplete_snapshots_are_passed_over_as_zookeeper_does() {
    let mut torn = log(&[
        (1, files::op::CREATE, create("/a", 1)),
        (2, files::op::CREATE, create("/b", 2)),
    ]);
    // Cut the second record short.
    let cut = torn.len() - 64 - 10;
    torn.truncate(cut);
    let mut incomplete = snapshot();
    incomplete.truncate(incomplete.len() - 5);
    let zk = zk_dir(&[
        ("snapshot.0", snapshot()),
        ("snapshot.1", incomplete),
        ("log.1", torn),
    ]);
    let dest = TestDir::new("zk-import-dest");
    let s = import(zk.path(), None, &StorageConfig::new(dest.path())).unwrap();
    assert!(s.snapshot.unwrap().ends_with("snapshot.0"));
    assert_eq!((s.txns_replayed, s.last_zxid, s.znodes), (1, 1, 4));
}
