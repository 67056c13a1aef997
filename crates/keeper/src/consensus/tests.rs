//! Consensus tests: durability, recovery and snapshots through the real WAL.

use super::*;
use corral_proto::{ErrorCode, Response};
use corral_tree::obituary::{EndCause, Evidence};
use corral_tree::EntryOp;
use std::sync::atomic::AtomicI64;

/// Records (zxid, session id) of every apply; the session id identifies the proposal.
#[derive(Default)]
struct Recorder {
    applied: Mutex<Vec<(i64, i64)>>,
    last: AtomicI64,
}

impl StateMachineHook for Recorder {
    fn apply(&self, zxid: i64, entry: &Entry) -> ApplyResult {
        self.applied.lock().unwrap().push((zxid, entry.session_id));
        self.last.store(zxid, Ordering::SeqCst);
        ApplyResult {
            err: ErrorCode::Ok,
            response: Response::Path(format!("/{}", entry.session_id)),
            triggers: Vec::new(),
            deleted_ephemerals: Vec::new(),
            obituary: None,
            quota_warnings: Vec::new(),
        }
    }
    fn last_applied(&self) -> i64 {
        self.last.load(Ordering::SeqCst)
    }
    fn snapshot(&self) -> Option<SnapshotEncoder> {
        let n = self.applied.lock().unwrap().len();
        Some(Arc::new(move |_, sink| sink(n.to_string().as_bytes())))
    }
}

fn entry(n: i64) -> Entry {
    Entry {
        session_id: n,
        time_ms: 0,
        identities: Vec::new(),
        op: EntryOp::CloseSession {
            session_id: n,
            evidence: Evidence::bare(EndCause::Unknown, ""),
        },
    }
}

/// The cache's byte count stays the sum of what it holds, whichever side of a purge is
/// the smaller one.
#[test]
fn purging_the_cache_keeps_its_byte_count() {
    let mut m = DurableMem::default();
    for i in 1..=100u64 {
        let e = LogEntry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), i),
            payload: EntryPayload::Normal(Batch(vec![Proposal {
                origin: 0,
                seq: 0,
                entry: entry(i as i64),
            }])),
        };
        m.insert(e, i as usize);
    }
    let held = |m: &DurableMem| m.cache.values().map(|(_, s)| s).sum::<usize>();
    for upto in [10, 90, 100] {
        let dropped = m.drop_upto(upto);
        assert!(dropped.0.keys().all(|&k| k <= upto));
        assert_eq!(m.cache_bytes, held(&m), "after purging up to {upto}");
    }
    assert_eq!(m.cache_bytes, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_proposals_apply_once_in_order() {
    let dir = crate::storage::wal::tests::TestDir::new("consensus-concurrent");
    let hook = Arc::new(Recorder::default());
    let started = std::time::Instant::now();
    let c = Consensus::start_durable(hook.clone(), unsynced(dir.path()))
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "startup took {:?}",
        started.elapsed()
    );
    assert!(c.is_leader());

    let tasks: Vec<_> = (1..=1000i64)
        .map(|n| {
            let c = c.clone();
            tokio::spawn(async move { (n, c.propose(entry(n)).await.unwrap()) })
        })
        .collect();
    let mut replies = Vec::new();
    for t in tasks {
        let (n, (zxid, res)) = t.await.unwrap();
        // Each caller gets the result of its own entry.
        assert_eq!(res.response, Response::Path(format!("/{n}")));
        replies.push((zxid, n));
    }
    replies.sort();
    let zxids: Vec<i64> = replies.iter().map(|r| r.0).collect();
    assert!(zxids.windows(2).all(|w| w[0] < w[1]), "zxids not distinct");
    assert!(zxids[0] > 0);

    // The hook saw exactly the proposed entries, once each, in zxid order, with the same
    // zxid the proposer was told.
    let applied = hook.applied.lock().unwrap().clone();
    assert_eq!(applied, replies);
    let mut sessions: Vec<i64> = applied.iter().map(|a| a.1).collect();
    sessions.sort();
    assert_eq!(sessions, (1..=1000).collect::<Vec<_>>());

    // A later proposal gets a larger zxid.
    let (z, _) = c.propose(entry(1001)).await.unwrap();
    assert!(z > *zxids.last().unwrap());

    // The snapshot builder works through the hook.
    // (The metrics may trail the apply that answered the proposal: at least this far.)
    let applied = c.raft.metrics().borrow().last_applied;
    c.raft.trigger().snapshot().await.unwrap();
    let snap = c
        .raft
        .wait(Some(Duration::from_secs(5)))
        .metrics(
            |m| m.snapshot.is_some() && m.snapshot >= applied,
            "snapshot",
        )
        .await;
    assert!(snap.is_ok(), "{snap:?}");

    c.shutdown().await;
    assert!(!c.is_leader());
    assert!(matches!(
        c.propose(entry(1002)).await,
        Err(ConsensusError::Shutdown)
    ));
    // Idempotent.
    c.shutdown().await;
}

/// A hook whose state is the list of (zxid, session id) applied; it snapshots and restores
/// that list, so a restart can be compared entry by entry.
#[derive(Default)]
struct ListHook {
    applied: Mutex<Vec<(i64, i64)>>,
    /// The last zxid of the list restored from a snapshot, if one was.
    restored_at: Mutex<Option<i64>>,
}

impl StateMachineHook for ListHook {
    fn apply(&self, zxid: i64, entry: &Entry) -> ApplyResult {
        let mut a = self.applied.lock().unwrap();
        assert!(
            a.last().is_none_or(|l| l.0 < zxid),
            "zxid {zxid} out of order"
        );
        a.push((zxid, entry.session_id));
        ApplyResult {
            err: ErrorCode::Ok,
            response: Response::Path(format!("/{}", entry.session_id)),
            triggers: Vec::new(),
            deleted_ephemerals: Vec::new(),
            obituary: None,
            quota_warnings: Vec::new(),
        }
    }
    fn last_applied(&self) -> i64 {
        self.applied.lock().unwrap().last().map_or(0, |l| l.0)
    }
    fn snapshot(&self) -> Option<SnapshotEncoder> {
        let view = self.applied.lock().unwrap().clone();
        Some(Arc::new(move |_, sink| {
            view.iter().try_for_each(|(z, s)| {
                sink(&z.to_be_bytes())?;
                sink(&s.to_be_bytes())
            })
        }))
    }
    fn restore(&self, bytes: &[u8]) -> Result<(), RestoreError> {
        let list: Vec<(i64, i64)> = bytes
            .chunks(16)
            .map(|c| {
                (
                    i64::from_be_bytes(c[..8].try_into().unwrap()),
                    i64::from_be_bytes(c[8..].try_into().unwrap()),
                )
            })
            .collect();
        let last = list.last().map_or(0, |l| l.0);
        *self.applied.lock().unwrap() = list;
        *self.restored_at.lock().unwrap() = Some(last);
        Ok(())
    }
}

fn storage(dir: &std::path::Path, snap_count: u64) -> StorageConfig {
    StorageConfig {
        segment_bytes: 64 * 1024,
        snap_count,
        ..StorageConfig::new(dir)
    }
}

/// For tests that are not about durability: no fdatasync, snapshots only when triggered.
fn unsynced(dir: &std::path::Path) -> StorageConfig {
    StorageConfig {
        force_sync: false,
        ..storage(dir, 1_000_000)
    }
}

/// 16 tasks each proposing `per_task` entries one after the other.
async fn propose_concurrently(c: &Consensus, per_task: i64, offset: i64) -> Vec<(i64, i64)> {
    let tasks: Vec<_> = (0..16i64)
        .map(|t| {
            let c = c.clone();
            tokio::spawn(async move {
                let mut out = Vec::new();
                for k in 0..per_task {
                    let n = offset + t * per_task + k + 1;
                    let (zxid, res) = c.propose(entry(n)).await.unwrap();
                    assert_eq!(res.response, Response::Path(format!("/{n}")));
                    out.push((zxid, n));
                }
                out
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    all
}

fn term(c: &Consensus) -> u64 {
    c.metrics.borrow().current_term
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn durable_restart_reapplies_every_entry_once_in_order() {
    let dir = crate::storage::wal::tests::TestDir::new("consensus-durable");
    let hook = Arc::new(ListHook::default());
    // No snapshots: the restart replays the whole log.
    let c = Consensus::start_durable(hook.clone(), storage(dir.path(), 1_000_000))
        .await
        .unwrap();
    assert!(c.is_leader());
    assert!(!c.writes_blocked());
    let proposed = propose_concurrently(&c, 63, 0).await;
    let (z, _) = c.propose(entry(5000)).await.unwrap();
    let before = hook.applied.lock().unwrap().clone();
    assert_eq!(before.len(), 16 * 63 + 1);
    // One leader, no blank entry after the first writes: no gap.
    assert!(
        before.windows(2).all(|w| w[1].0 == w[0].0 + 1),
        "zxids count on by one"
    );
    assert_eq!(z, before.last().unwrap().0);
    assert_eq!(&before[..before.len() - 1], &proposed[..]);
    let stats = c.storage_stats();
    println!(
        "durable group commit: {} log records in {} fsyncs ({:.1}/fsync), p50 {}us p99 {}us max {}us",
        stats.log_records,
        stats.fsyncs,
        stats.log_records as f64 / stats.fsyncs.max(1) as f64,
        stats.fsync_p50_us,
        stats.fsync_p99_us,
        stats.fsync_max_us
    );
    // 63 writers at once: their writes share raft entries (the intake's batches)...
    assert!(
        stats.log_records * 4 < before.len() as u64,
        "{} writes in {} log records",
        before.len(),
        stats.log_records
    );
    // ... and fsyncs.
    assert!(
        stats.fsyncs < before.len() as u64 / 2,
        "{} writes: {stats:?}",
        before.len()
    );
    let term_before = term(&c);
    c.shutdown().await;
    drop(c);

    // The layout the keeper's tests rely on.
    let p = dir.path();
    assert!(p.join("wal/00000000000000000000.log").is_file());
    assert!(p.join("raft/vote").is_file());
    assert!(p.join("raft/committed").is_file());

    let hook2 = Arc::new(ListHook::default());
    let started = std::time::Instant::now();
    let c = Consensus::start_durable(hook2.clone(), storage(dir.path(), 1_000_000))
        .await
        .unwrap();
    println!(
        "restart with {} entries took {:?}",
        before.len(),
        started.elapsed()
    );
    assert!(hook2.restored_at.lock().unwrap().is_none());
    assert_eq!(*hook2.applied.lock().unwrap(), before);
    assert!(term(&c) >= term_before);
    let (z2, _) = c.propose(entry(5001)).await.unwrap();
    assert_eq!(
        z2,
        before.last().unwrap().0 + 1,
        "zxids go on after a restart"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn durable_restart_from_snapshot_plus_log() {
    let dir = crate::storage::wal::tests::TestDir::new("consensus-snap");
    let hook = Arc::new(ListHook::default());
    let storage = |p: &std::path::Path, n| StorageConfig {
        segment_bytes: 4096,
        ..storage(p, n)
    };
    let c = Consensus::start_durable(hook.clone(), storage(dir.path(), 100))
        .await
        .unwrap();
    // Five rounds of twice snapCount entries, each waiting for a snapshot newer than the
    // last round's, so five distinct snapshots are written however slowly the background
    // thread builds them (on a loaded machine one build can span many asks). Snapshots are
    // built at a lowered priority; the margin is for a loaded machine.
    let mut seen = None;
    for round in 0..5i64 {
        propose_concurrently(&c, 13, round * 16 * 13).await;
        c.propose(entry(5000 + round)).await.unwrap();
        let snap = c
            .raft
            .wait(Some(Duration::from_secs(60)))
            .metrics(|m| m.snapshot > seen, "a newer snapshot")
            .await;
        assert!(snap.is_ok(), "{snap:?}");
        seen = snap.ok().and_then(|m| m.snapshot);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stats = c.storage_stats();
    assert!(stats.snapshots_written >= 5, "{stats:?}");
    assert!(
        stats.last_snapshot_index > 0 && stats.snapshot_bytes > 0,
        "{stats:?}"
    );
    let before = hook.applied.lock().unwrap().clone();
    c.shutdown().await;
    drop(c);

    // Retention: 3 snapshots, and the log only from the oldest of them on.
    let snaps = SnapshotStore::open(dir.path().join("snapshots"))
        .unwrap()
        .list()
        .unwrap();
    assert_eq!(snaps.len(), 3, "{snaps:?}");
    let segs: Vec<String> = std::fs::read_dir(dir.path().join("wal"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".log"))
        .collect();
    assert!(
        !segs.contains(&"00000000000000000000.log".to_string()),
        "{segs:?}"
    );

    let hook2 = Arc::new(ListHook::default());
    let c = Consensus::start_durable(hook2.clone(), storage(dir.path(), 100))
        .await
        .unwrap();
    let restored = hook2
        .restored_at
        .lock()
        .unwrap()
        .expect("restored from a snapshot");
    assert!(
        before.iter().any(|b| b.0 == restored),
        "restored up to zxid {restored}, which was applied before"
    );
    assert_eq!(*hook2.applied.lock().unwrap(), before);
    // The restored snapshot is not held in memory: raft gets the file, which reads as
    // exactly the payload.
    let current = c
        .raft
        .get_snapshot()
        .await
        .unwrap()
        .expect("a current snapshot");
    assert!(matches!(*current.snapshot, SnapshotData::File { .. }));
    let on_disk = SnapshotStore::open(dir.path().join("snapshots"))
        .unwrap()
        .load(snaps[0])
        .unwrap();
    assert_eq!(
        current.snapshot.into_bytes().await.unwrap(),
        on_disk.payload()
    );
    let (z2, _) = c.propose(entry(5001)).await.unwrap();
    assert_eq!(
        z2,
        before.last().unwrap().0 + 1,
        "zxids go on after a restart"
    );
    c.shutdown().await;

    // A damaged newest snapshot: recovery falls back to the previous one plus the log.
    let newest = dir.path().join(format!(
        "snapshots/{}",
        crate::storage::snapshot_store::snapshot_name(
            SnapshotStore::open(dir.path().join("snapshots"))
                .unwrap()
                .list()
                .unwrap()[0],
        )
    ));
    let mut b = std::fs::read(&newest).unwrap();
    let n = b.len();
    b[n - 3] ^= 0xff;
    std::fs::write(&newest, &b).unwrap();
    let hook3 = Arc::new(ListHook::default());
    let c = Consensus::start_durable(hook3.clone(), storage(dir.path(), 100))
        .await
        .unwrap();
    let mut expected = before.clone();
    expected.push((z2, 5001));
    assert_eq!(*hook3.applied.lock().unwrap(), expected);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_start_refuses_mid_log_corruption_and_cuts_a_torn_tail() {
    let dir = crate::storage::wal::tests::TestDir::new("consensus-corrupt");
    let hook = Arc::new(ListHook::default());
    let c = Consensus::start_durable(hook.clone(), storage(dir.path(), 1_000_000))
        .await
        .unwrap();
    for n in 1..=20 {
        c.propose(entry(n)).await.unwrap();
    }
    let before = hook.applied.lock().unwrap().clone();
    c.shutdown().await;
    drop(c);
    let seg = dir.path().join("wal/00000000000000000000.log");
    let clean = std::fs::read(&seg).unwrap();

    // Garbage right after the last record: a torn append that was never acknowledged.
    let mut end = 0;
    loop {
        let len = u32::from_be_bytes(clean[end..end + 4].try_into().unwrap()) as usize;
        if len == 0 {
            break;
        }
        end += 8 + len;
    }
    let mut torn = clean.clone();
    torn[end..end + 12].copy_from_slice(&[0, 0, 0, 40, 1, 2, 3, 4, 9, 9, 9, 9]);
    std::fs::write(&seg, &torn).unwrap();
    let hook2 = Arc::new(ListHook::default());
    let c = Consensus::start_durable(hook2.clone(), storage(dir.path(), 1_000_000))
        .await
        .unwrap();
    assert_eq!(*hook2.applied.lock().unwrap(), before);
    c.shutdown().await;
    drop(c);

    // A flipped bit in the first record's payload, valid records after it: refused.
    let mut bad = std::fs::read(&seg).unwrap();
    bad[30] ^= 0x10;
    std::fs::write(&seg, &bad).unwrap();
    let err = Consensus::start_durable(
        Arc::new(ListHook::default()),
        storage(dir.path(), 1_000_000),
    )
    .await
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("00000000000000000000.log") && err.contains("byte offset 0"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ack_after_sync_mode_is_durable_too() {
    // raft's literal contract (needed by an ensemble): one fsync per leader append, since
    // openraft 0.9 awaits each flush before the next client write.
    let dir = crate::storage::wal::tests::TestDir::new("consensus-strict");
    let hook = Arc::new(ListHook::default());
    let c = Consensus::start_durable_with(
        hook.clone(),
        storage(dir.path(), 1_000_000),
        AckMode::AfterSync,
    )
    .await
    .unwrap();
    propose_concurrently(&c, 20, 0).await;
    let stats = c.storage_stats();
    println!(
        "after-sync mode: {} log records in {} fsyncs ({:.1}/fsync)",
        stats.log_records,
        stats.fsyncs,
        stats.log_records as f64 / stats.fsyncs.max(1) as f64
    );
    let before = hook.applied.lock().unwrap().clone();
    c.shutdown().await;
    let hook2 = Arc::new(ListHook::default());
    let c = Consensus::start_durable_with(
        hook2.clone(),
        storage(dir.path(), 1_000_000),
        AckMode::AfterSync,
    )
    .await
    .unwrap();
    assert_eq!(*hook2.applied.lock().unwrap(), before);
    c.shutdown().await;
}

/// Entries evicted from the cache are read back from the WAL, in one run with cached ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_reads_join_the_cache_and_the_wal() {
    let dir = crate::storage::wal::tests::TestDir::new("consensus-read");
    let hook = Arc::new(ListHook::default());
    let c = Consensus::start_durable(hook, unsynced(dir.path()))
        .await
        .unwrap();
    for n in 1..=30 {
        c.propose(entry(n)).await.unwrap();
    }
    let mut log = c.storage.log.clone();
    let all = log.try_get_log_entries(..).await.unwrap();
    let last = c.metrics.borrow().last_log_index.unwrap();
    assert_eq!(all.len() as u64, last + 1);
    {
        let mut m = log.mem().unwrap();
        for i in (0..5).chain(10..20) {
            let (_, size) = m.cache.remove(&i).unwrap();
            m.cache_bytes -= size;
        }
    }
    // LogEntry's Debug omits client payloads; compare with ==.
    assert!(log.try_get_log_entries(..).await.unwrap() == all);
    assert!(log.try_get_log_entries(3..=12).await.unwrap()[..] == all[3..=12]);
    c.shutdown().await;
}

#[tokio::test]
async fn refuses_a_hook_with_history() {
    let dir = crate::storage::wal::tests::TestDir::new("consensus-history");
    let hook = Arc::new(Recorder::default());
    hook.last.store(5, Ordering::SeqCst);
    let r = Consensus::start_durable(hook, unsynced(dir.path())).await;
    assert!(
        matches!(&r, Err(e @ ConsensusError::NotFresh { applied: 5 })
            if e.to_string().contains("applied up to zxid 5")),
        "{:?}",
        r.err()
    );
    // Refused before touching the data directory.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// The acknowledge-on-queue mode is for one voter only: a membership with more than one
/// voter, appended or found in the log at start-up, ends it for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_voters_end_the_acknowledge_before_fsync_mode() {
    let dir = crate::storage::wal::tests::TestDir::new("consensus-ack-mode");
    let c = Consensus::start_durable(Arc::new(ListHook::default()), unsynced(dir.path()))
        .await
        .unwrap();
    c.propose(entry(1)).await.unwrap();
    let log = c.storage.log.clone();
    assert!(
        log.inner.acks_on_queue(),
        "one voter: acknowledged on queueing"
    );
    let membership = |voters: &[NodeId]| {
        let m = Membership::new(
            vec![voters.iter().copied().collect::<BTreeSet<_>>()],
            voters
                .iter()
                .map(|v| (*v, BasicNode::default()))
                .collect::<BTreeMap<_, _>>(),
        );
        LogEntry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), 99),
            payload: EntryPayload::Membership(m),
        }
    };
    log.inner.note_membership(&membership(&[1]));
    assert!(log.inner.acks_on_queue());
    log.inner.note_membership(&membership(&[1, 2, 3]));
    assert!(!log.inner.acks_on_queue(), "three voters: after fsync only");
    log.inner.note_membership(&membership(&[1]));
    assert!(!log.inner.acks_on_queue(), "never back");
    c.shutdown().await;
}

/// A WAL record whose frame is sound but whose body does not decode stops start-up, the
/// message naming the segment, the record's offset, the log index and the bad field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_record_refuses_start_naming_file_offset_and_field() {
    let dir = crate::storage::wal::tests::TestDir::new("consensus-undecodable");
    let c = Consensus::start_durable(Arc::new(ListHook::default()), unsynced(dir.path()))
        .await
        .unwrap();
    c.propose(entry(1)).await.unwrap();
    let last = c.metrics.borrow().last_log_index.unwrap();
    c.shutdown().await;
    drop(c);

    // The next record, its kind byte 9.
    let opts = WalOptions {
        dir: dir.path().join("wal"),
        segment_bytes: 64 * 1024,
        force_sync: false,
        fsync_warning: Duration::from_secs(1),
        prealloc_fault: None,
    };
    let wal = Wal::open(opts, |_, _| Ok(())).unwrap();
    let record = wal::Record::encode(last + 1, 17, |out| {
        put_u64(out, 1);
        put_u64(out, 1);
        out.push(9);
    })
    .unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    wal.append(
        vec![record],
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    rx.await.unwrap().unwrap();
    wal.close();

    let err = Consensus::start_durable(Arc::new(ListHook::default()), unsynced(dir.path()))
        .await
        .err()
        .unwrap();
    let msg = err.to_string();
    assert!(
        matches!(&err, ConsensusError::Wal(wal::WalError::Corrupt {
            reason: wal::Corruption::Body(e), ..
        }) if e.is::<DecodeError>()),
        "{msg}"
    );
    assert!(
        msg.contains("00000000000000000000.log")
            && msg.contains("byte offset")
            && msg.contains(&format!(
                "the body of log entry {}, byte offset 16: unknown entry kind 9",
                last + 1
            )),
        "{msg}"
    );
}

fn voters(ids: &[NodeId]) -> Membership<NodeId, BasicNode> {
    Membership::new(
        vec![ids.iter().copied().collect::<BTreeSet<_>>()],
        ids.iter()
            .map(|v| (*v, BasicNode::default()))
            .collect::<BTreeMap<_, _>>(),
    )
}

fn log_id(term: u64, node: NodeId, index: u64) -> LogId<NodeId> {
    LogId::new(CommittedLeaderId::new(term, node), index)
}

/// A WAL in `cfg` holding one membership entry at index 0, as `initialize` writes it.
fn wal_with_membership(cfg: &StorageConfig, m: Membership<NodeId, BasicNode>) {
    let opts = WalOptions {
        dir: cfg.wal_dir(),
        segment_bytes: cfg.segment_bytes,
        force_sync: false,
        fsync_warning: Duration::from_secs(1),
        prealloc_fault: None,
    };
    let wal = Wal::open(opts, |_, _| Ok(())).unwrap();
    let entry = LogEntry {
        log_id: log_id(0, 0, 0),
        payload: EntryPayload::Membership(m),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    wal.append(
        vec![log_record(&entry).unwrap()],
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    rx.recv().unwrap().unwrap();
    wal.close();
}

/// Start-up derives the ack mode from what is on disk: a membership of several voters in the
/// log or in the newest snapshot rules out acknowledging before fsync, whatever was asked;
/// after-sync asked is never overridden the other way.
#[test]
fn several_voters_on_disk_rule_out_acknowledging_before_fsync_at_start() {
    for (ids, early) in [(&[1][..], true), (&[1, 2, 3][..], false)] {
        // In the log.
        let dir = crate::storage::wal::tests::TestDir::new("consensus-ack-log");
        let cfg = unsynced(dir.path());
        wal_with_membership(&cfg, voters(ids));
        let r = recover(&cfg, Arc::new(ListHook::default()), AckMode::Pipelined).unwrap();
        assert_eq!(r.log.inner.acks_on_queue(), early, "{ids:?} in the log");
        r.wal.close();
        let r = recover(&cfg, Arc::new(ListHook::default()), AckMode::AfterSync).unwrap();
        assert!(!r.log.inner.acks_on_queue(), "after-sync asked");
        r.wal.close();

        // In the newest snapshot, with an empty log after it.
        let dir = crate::storage::wal::tests::TestDir::new("consensus-ack-snap");
        let cfg = unsynced(dir.path());
        let meta = SnapshotMeta {
            last_log_id: Some(log_id(1, 1, 5)),
            last_membership: StoredMembership::new(Some(log_id(0, 0, 0)), voters(ids)),
            snapshot_id: "1-1-5-1".into(),
        };
        SnapshotStore::open(cfg.snapshot_dir())
            .unwrap()
            .write(5, &encode_snapshot_meta(&meta), &[])
            .unwrap();
        let hook = Arc::new(ListHook::default());
        let r = recover(&cfg, hook.clone(), AckMode::Pipelined).unwrap();
        assert_eq!(
            *hook.restored_at.lock().unwrap(),
            Some(0),
            "the empty snapshot"
        );
        assert_eq!(r.log.inner.acks_on_queue(), early, "{ids:?} in a snapshot");
        r.wal.close();
    }
}

/// A snapshot installed from a leader carries a membership the log never sees as an entry:
/// with several voters it ends the acknowledge-before-fsync mode too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_installed_snapshot_of_several_voters_ends_acknowledging_before_fsync() {
    let dir = crate::storage::wal::tests::TestDir::new("consensus-ack-install");
    let cfg = unsynced(dir.path());
    let hook = Arc::new(ListHook::default());
    let r = recover(&cfg, hook.clone(), AckMode::Pipelined).unwrap();
    assert!(r.log.inner.acks_on_queue(), "a new node: one voter at most");
    let early = Arc::clone(&r.log.inner.early_acks);
    let mut sm = HookStateMachine::new(
        hook.clone(),
        Arc::clone(&r.persist),
        early,
        Arc::new(Pending::new(1)),
    );
    let meta = SnapshotMeta {
        last_log_id: Some(log_id(2, 2, 40)),
        last_membership: StoredMembership::new(Some(log_id(1, 2, 3)), voters(&[1, 2, 3])),
        snapshot_id: "2-2-40-1".into(),
    };
    sm.install_snapshot(&meta, Box::new(SnapshotData::memory(Vec::new())))
        .await
        .unwrap();
    assert_eq!(
        *hook.restored_at.lock().unwrap(),
        Some(0),
        "the empty snapshot"
    );
    assert!(
        !r.log.inner.acks_on_queue(),
        "three voters: after fsync only"
    );
    r.wal.close();
}

/// A proposal handed to two leaders is applied once on every member; the origin's client
/// gets this member's own result; an earlier entry of the origin overtaken by a later one is
/// failed, never left waiting; the marks survive a snapshot and a restore from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proposal_applies_once_however_often_it_is_submitted() {
    let dir = crate::storage::wal::tests::TestDir::new("consensus-exactly-once");
    let cfg = unsynced(dir.path());
    let hook = Arc::new(ListHook::default());
    let r = recover(&cfg, hook.clone(), AckMode::AfterSync).unwrap();
    let pending = Arc::new(Pending::new(7));
    let mut sm = HookStateMachine::new(
        hook.clone(),
        Arc::clone(&r.persist),
        Arc::clone(&r.log.inner.early_acks),
        Arc::clone(&pending),
    );
    let first = pending.submit(entry(1), None).unwrap();
    let overtaken = pending.submit(entry(2), None).unwrap();
    let third = pending.submit(entry(3), None).unwrap();
    let tagged = |origin, seq, n| Proposal {
        origin,
        seq,
        entry: entry(n),
    };
    let at = |index, p| LogEntry {
        log_id: log_id(1, 1, index),
        payload: EntryPayload::Normal(Batch(vec![p])),
    };
    sm.apply(vec![
        at(1, tagged(7, 1, 1)),
        at(2, tagged(7, 1, 1)), // the same entry, from a second leader
        at(3, tagged(9, 5, 50)),
        at(4, tagged(7, 3, 3)),  // entry 2 was lost, entry 3 kept
        at(5, tagged(9, 4, 40)), // older than 9's mark: a copy
        at(6, tagged(0, 0, 60)), // untagged: always applied
        at(7, tagged(0, 0, 60)),
        // One entry of several proposals: each its own zxid, copies inside it skipped too.
        LogEntry {
            log_id: log_id(1, 1, 8),
            payload: EntryPayload::Normal(Batch(vec![
                tagged(9, 6, 70),
                tagged(9, 6, 70),
                tagged(7, 1, 1),
                tagged(9, 7, 80),
            ])),
        },
    ])
    .await
    .unwrap();
    // One past the last, never below the raft index; copies spend none.
    assert_eq!(
        *hook.applied.lock().unwrap(),
        vec![(1, 1), (3, 50), (4, 3), (6, 60), (7, 60), (8, 70), (9, 80)]
    );
    assert_eq!(first.wait().await.unwrap().0, 1);
    assert!(matches!(
        overtaken.wait().await,
        Err(ConsensusError::Dropped)
    ));
    assert_eq!(third.wait().await.unwrap().0, 4);

    // Through a snapshot: the marks come back with the state.
    let mut builder = sm.get_snapshot_builder().await;
    let snap = builder.build_snapshot().await.unwrap();
    let bytes = snap.snapshot.into_bytes().await.unwrap();
    let (marks, rest) = HighWater::split_snapshot(&bytes).unwrap();
    assert_eq!((marks.get(7), marks.get(9), marks.get(1)), (3, 7, 0));
    assert_eq!(rest.len(), 7 * 16, "the hook's own bytes follow the marks");
    let hook2 = Arc::new(ListHook::default());
    let pending2 = Arc::new(Pending::new(7));
    let waiting = pending2.submit(entry(9), None).unwrap();
    let mut sm2 = HookStateMachine::new(
        hook2.clone(),
        Arc::clone(&r.persist),
        Arc::clone(&r.log.inner.early_acks),
        Arc::clone(&pending2),
    );
    sm2.install_snapshot(&snap.meta, Box::new(SnapshotData::memory(bytes)))
        .await
        .unwrap();
    assert_eq!(hook2.applied.lock().unwrap().len(), 7);
    assert!(
        matches!(waiting.wait().await, Err(ConsensusError::AppliedBySnapshot)),
        "seq 1 of origin 7 is inside the snapshot"
    );
    sm2.apply(vec![at(9, tagged(7, 3, 3)), at(10, tagged(7, 4, 4))])
        .await
        .unwrap();
    let after: Vec<i64> = hook2.applied.lock().unwrap().iter().map(|a| a.1).collect();
    assert_eq!(
        after[7..],
        [4],
        "the copy of 3 is skipped after a restore too"
    );
    r.wal.close();
}

#[test]
fn snapshots_without_marks_read_as_before() {
    let legacy = b"CRTS and the rest of a tree";
    let (marks, rest) = HighWater::split_snapshot(legacy).unwrap();
    assert_eq!((marks, rest), (HighWater::default(), &legacy[..]));
    let mut cut = HighWater::default().snapshot_prefix();
    cut.extend_from_slice(&[0, 0, 0, 2, 0, 0]);
    cut[7] = 2;
    assert!(HighWater::split_snapshot(&cut).is_err());
}

/// A leader's own decision (an expiry) goes only to that leader in that term: handed to
/// another leader, or to itself in a later term, it is dropped; client writes go anywhere.
#[tokio::test]
async fn a_leaders_decision_is_never_handed_to_another_leader() {
    let pending = Pending::new(3);
    let write = pending.submit(entry(1), None).unwrap();
    let expiry = pending.submit(entry(2), Some(7)).unwrap();
    // Leading in term 7: both go.
    assert_eq!(pending.unsent(0, (3, 7)).len(), 2);
    // Member 1 leads now: the expiry is dropped, the client's write goes to it.
    let to_new = pending.unsent(0, (1, 8));
    assert_eq!(
        to_new
            .iter()
            .map(|p| p.entry.session_id)
            .collect::<Vec<_>>(),
        [1]
    );
    assert!(matches!(expiry.wait().await, Err(ConsensusError::Dropped)));
    pending.applied(to_new[0].seq, 5, ListHook::default().apply(5, &entry(1)));
    assert_eq!(write.wait().await.unwrap().0, 5);
}

/// Append-entries calls stay within their byte budget by openraft's hint; one entry always
/// goes, however large.
#[test]
fn append_entries_carry_a_bounded_number_of_bytes() {
    let big = |index| LogEntry {
        log_id: log_id(1, 1, index),
        payload: EntryPayload::Normal(Batch(
            (0..1024)
                .map(|n| Proposal {
                    origin: 1,
                    seq: n,
                    entry: Entry {
                        op: EntryOp::CloseSession {
                            session_id: 1,
                            evidence: Evidence::bare(EndCause::Unknown, "x".repeat(1000)),
                        },
                        ..entry(1)
                    },
                })
                .collect(),
        )),
    };
    let entries: Vec<LogEntry> = (1..=10).map(big).collect();
    let one = entry_size_estimate(&entries[0]);
    assert!(one > 1 << 20, "{one}");
    let fit = network::entries_within(&entries, 4 << 20).expect("not all fit");
    assert_eq!(fit, (4 << 20) / one);
    assert_eq!(network::entries_within(&entries[..1], 1024), None);
    assert_eq!(network::entries_within(&entries[..3], 4 << 20), None);
}

/// A leader's quorum is gone only once more voters than a minority are found down; the
/// answer of one of them brings it back.
#[test]
fn a_quorum_is_gone_only_when_too_many_voters_are() {
    let health = network::PeerHealth::default();
    let refused = |target| -> Result<(), network::CallError> {
        Err(network::CallError::Refused {
            target,
            reason: "test".into(),
        })
    };
    let slow: Result<(), network::CallError> =
        Err(network::CallError::Timeout { target: 3, ms: 5 });
    let three = [1, 2, 3];
    let five = [1, 2, 3, 4, 5];

    health.record(2, &refused(2));
    assert_eq!(health.quorum_gone_for(1, three), None, "one of three down");
    // Silence is not a refusal.
    health.record(3, &slow);
    assert_eq!(health.quorum_gone_for(1, three), None);
    health.record(3, &refused(3));
    assert!(
        health.quorum_gone_for(1, three).is_some(),
        "two of three down"
    );
    assert_eq!(health.quorum_gone_for(1, five), None, "two of five down");
    health.record(4, &refused(4));
    assert!(
        health.quorum_gone_for(1, five).is_some(),
        "three of five down"
    );
    // A member that answers is back.
    health.record(3, &Ok(()));
    assert_eq!(health.quorum_gone_for(1, three), None);
    // This member never counts itself gone, and a lone voter always has its quorum.
    health.record(1, &refused(1));
    assert_eq!(health.quorum_gone_for(1, [1]), None);
}
