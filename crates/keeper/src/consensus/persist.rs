//! Snapshot persistence (writing built snapshots, retention), start-up recovery (the newest
//! valid snapshot, then the log after it) and the initial state an import lays down. Must not
//! decide when to snapshot.

use super::*;

/// Writes built snapshots to disk and keeps the retention rules.
pub(super) struct SnapshotPersist {
    pub(super) store: SnapshotStore,
    pub(super) wal: Arc<Wal>,
    pub(super) retain: usize,
    pub(super) counters: Mutex<SnapCounters>,
}

pub(super) fn lock_counters(m: &Mutex<SnapCounters>) -> MutexGuard<'_, SnapCounters> {
    // Plain counters: whatever a panicking holder left is still a usable number.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SnapshotPersist {
    /// Writes one snapshot; on failure (disk full, ...) logs and keeps the log it would have
    /// allowed to delete, so nothing is lost and the next snapshot tries again.
    pub(super) fn persist(&self, meta: &StoredSnapshotMeta, data: &[u8], started: Instant) -> bool {
        // In pieces: the store buffers what it is handed up to its pacing size, so one piece
        // the size of the snapshot would be copied whole.
        self.persist_streamed(meta, started, |sink| {
            data.chunks(1 << 20).try_for_each(sink)?;
            Ok(None)
        })
    }

    /// [`SnapshotPersist::persist`] with the payload handed to `produce`'s sink a piece at a
    /// time (an encoder writing straight to the file). `produce` returns how a background
    /// encoder fared, if there was one, for the log line.
    pub(super) fn persist_streamed(
        &self,
        meta: &StoredSnapshotMeta,
        started: Instant,
        produce: impl FnOnce(
            &mut dyn FnMut(&[u8]) -> io::Result<()>,
        ) -> io::Result<Option<BackgroundReport>>,
    ) -> bool {
        let Some(last) = meta.last_log_id else {
            return false;
        };
        let mut report = None;
        let written = self
            .store
            .write_with(last.index, &encode_snapshot_meta(meta), |sink| {
                report = produce(sink)?;
                Ok(())
            });
        self.record(last, written, started, report)
    }

    pub(super) fn record(
        &self,
        last: LogId<NodeId>,
        written: io::Result<u64>,
        started: Instant,
        encoder: Option<BackgroundReport>,
    ) -> bool {
        match written {
            Ok(bytes) => {
                {
                    let mut c = lock_counters(&self.counters);
                    c.written += 1;
                    c.last_ms = started.elapsed().as_millis() as u64;
                    c.last_index = last.index;
                    c.last_bytes = bytes;
                }
                tracing::info!(
                    index = last.index,
                    bytes,
                    ms = started.elapsed().as_millis() as u64,
                    cpu_wait_ms = encoder.map(|e| e.waited.as_millis() as u64),
                    raised = encoder.map(|e| e.raised),
                    "snapshot written"
                );
                self.apply_retention();
                true
            }
            Err(e) => {
                lock_counters(&self.counters).failures += 1;
                tracing::error!(
                    "cannot write the snapshot at zxid {}: {e}; the log it covers is kept and \
                     the next snapshot tries again",
                    last.index
                );
                false
            }
        }
    }

    /// Deletes snapshots beyond the retain count and lets the WAL delete segments below the
    /// oldest one kept: recovery can then fall back to any retained snapshot plus the log.
    pub(super) fn apply_retention(&self) {
        match self.store.retain(self.retain) {
            Ok(Some(oldest)) => self.wal.set_retain_floor(oldest),
            Ok(None) => {}
            Err(e) => tracing::warn!("cannot purge old snapshots: {e}"),
        }
    }
}

/// What [`recover`] hands back to `start_durable`.
pub(super) struct Recovered {
    pub(super) log: DurableLogStore,
    pub(super) wal: Arc<Wal>,
    pub(super) persist: Arc<SnapshotPersist>,
    pub(super) snapshot: Option<StoredSnapshot>,
    /// The sequence marks the snapshot carried (none without one).
    pub(super) high_water: HighWater,
}

/// Loads the newest valid snapshot into the hook and opens the log after it.
pub(super) fn recover(
    cfg: &StorageConfig,
    hook: Arc<dyn StateMachineHook>,
    ack: AckMode,
) -> Result<Recovered, ConsensusError> {
    let raft_dir = cfg.raft_dir();
    std::fs::create_dir_all(&raft_dir).map_err(|e| ConsensusError::io(&raft_dir, e))?;
    let store = SnapshotStore::open(cfg.snapshot_dir())
        .map_err(ConsensusError::Snapshots)?
        .with_write_rate(cfg.snapshot_write_rate);

    let mut newest: Option<(StoredSnapshotMeta, LoadedSnapshot)> = None;
    for index in store.list().map_err(ConsensusError::Snapshots)? {
        let skip = |why: &dyn std::fmt::Display| {
            tracing::warn!("skipping a damaged snapshot, trying an older one: {why}");
            store.set_aside(index);
        };
        let l = match store.load(index) {
            Ok(l) => l,
            Err(e) => {
                skip(&e);
                continue;
            }
        };
        match decode_snapshot_meta(&l.meta) {
            Ok(meta) if meta.last_log_id.map(|x| x.index) == Some(index) => {
                newest = Some((meta, l));
                break;
            }
            Ok(_) => {
                tracing::warn!(file = %l.path.display(), "snapshot metadata does not match its file name; skipping it");
                store.set_aside(index);
            }
            Err(e) => skip(&format_args!("{}: {e}", l.path.display())),
        }
    }
    let snap_last = newest.as_ref().and_then(|(m, _)| m.last_log_id);
    // The ack mode follows membership: a group that has ever had several voters acknowledges
    // appends only after their fsync.
    let mut group_of_several = newest
        .as_ref()
        .is_some_and(|(m, _)| several_voters(m.last_membership.membership()));
    // Decoding a large snapshot and scanning the log are independent and both take a while on
    // a big keeper: decode on a second thread while this one scans, and join before anything
    // is applied.
    let restoring = match newest.take() {
        None => None,
        Some((meta, loaded)) => {
            let hook = Arc::clone(&hook);
            let thread = std::thread::Builder::new()
                .name("corral-restore".into())
                .spawn(move || {
                    let restore = || -> Result<HighWater, ConsensusError> {
                        let index = meta.last_log_id.map_or(0, |l| l.index);
                        let (marks, payload) = HighWater::split_snapshot(loaded.payload())
                            .map_err(|source| ConsensusError::Decode {
                                path: loaded.path.clone(),
                                source,
                            })?;
                        hook.restore(payload)
                            .map_err(|source| ConsensusError::Restore { index, source })?;
                        let zxid = format!("{:#x}", hook.last_applied());
                        tracing::info!(index, zxid, bytes = payload.len(), "restored snapshot");
                        Ok(marks)
                    };
                    let restored = restore();
                    // Restored and on disk: the bytes are not kept in memory.
                    let stored = StoredSnapshot {
                        meta,
                        data: SnapshotBytes::Disk(loaded.index),
                    };
                    (restored, stored)
                })
                .map_err(|source| ConsensusError::Thread {
                    name: "snapshot restore",
                    source,
                })?;
            Some(thread)
        }
    };

    // Scan the log: log ids of its first and last entries, and the tail after the snapshot
    // into the cache (so replay reads memory, not disk).
    let mut first: Option<LogId<NodeId>> = None;
    let mut last: Option<LogId<NodeId>> = None;
    let mut mem = DurableMem::default();
    let skip_upto = snap_last.map_or(0, |l| l.index);
    let wal_opts = WalOptions {
        dir: cfg.wal_dir(),
        segment_bytes: cfg.segment_bytes.max(4096),
        force_sync: cfg.force_sync,
        fsync_warning: cfg.fsync_warning,
        #[cfg(test)]
        prealloc_fault: None,
    };
    // The WAL reports a record that does not decode as damage at that record's offset.
    let wal = Wal::open(wal_opts, |index, body| {
        let e = decode_log_entry(index, body)?;
        if let EntryPayload::Membership(m) = &e.payload {
            group_of_several |= several_voters(m);
        }
        if first.is_none() {
            first = Some(e.log_id);
        }
        last = Some(e.log_id);
        if index > skip_upto {
            mem.insert(e, body.len());
            // Everything read at start is on disk: any of it may be evicted.
            mem.evict(|| Some(index));
        }
        Ok(())
    })?;
    let wal = Arc::new(wal);
    let mut snapshot = None;
    let mut high_water = HighWater::default();
    if let Some(thread) = restoring {
        let (restored, s) = thread.join().map_err(|_| ConsensusError::Panicked {
            what: "snapshot restore thread",
        })?;
        high_water = restored?;
        snapshot = Some(s);
    }

    // Where the log starts relative to the snapshot decides what raft sees as purged.
    let gap = |first: u64, snapshot_last: u64| ConsensusError::LogGap {
        wal_dir: cfg.wal_dir(),
        snapshot_dir: cfg.snapshot_dir(),
        first,
        snapshot_last,
    };
    let last_purged = match first {
        None => snap_last,
        // openraft's first entry (the initial membership) has index 0.
        Some(f) if f.index == 0 => None,
        Some(f) => match snap_last {
            Some(s) if f.index == s.index + 1 => Some(s),
            // Entries already in the snapshot: the first present one serves as the purge mark.
            Some(s) if f.index <= s.index => Some(f),
            s => return Err(gap(f.index, s.map_or(0, |s| s.index))),
        },
    };
    if let Some(p) = last_purged {
        drop(mem.drop_upto(p.index));
        wal.purge(p.index);
    }
    mem.last_purged = last_purged;
    mem.last_log = last.max(last_purged);
    if let Some(oldest) = store.list().map_err(ConsensusError::Snapshots)?.last() {
        wal.set_retain_floor(*oldest);
    }

    let vote_path = raft_dir.join("vote");
    mem.vote = wal::read_framed(&vote_path)
        .map_err(ConsensusError::VoteUnreadable)?
        .map(|b| decode_vote(&b))
        .transpose()
        .map_err(|source| ConsensusError::Decode {
            path: vote_path,
            source,
        })?;
    // Only a hint for replay: a bad one costs time at start-up, not data.
    let committed_path = raft_dir.join("committed");
    let committed = match wal::read_framed(&committed_path) {
        Ok(None) => None,
        Ok(Some(b)) => match decode_committed(&b) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(
                    "ignoring the saved committed index: {}: {e}",
                    committed_path.display()
                );
                None
            }
        },
        Err(e) => {
            tracing::warn!("ignoring the saved committed index: {e}");
            None
        }
    };
    // With forceSync=no the log may have lost a tail that the hint still names.
    mem.committed = committed.filter(|c| mem.last_log.is_some_and(|l| c.index <= l.index));
    mem.committed_saved = mem.committed;
    tracing::info!(
        snapshot = ?snap_last.map(|l| l.index),
        first = ?first.map(|l| l.index),
        last = ?mem.last_log.map(|l| l.index),
        committed = ?mem.committed.map(|l| l.index),
        "opened the write-ahead log"
    );

    let persist = Arc::new(SnapshotPersist {
        store,
        wal: Arc::clone(&wal),
        retain: cfg.snap_retain_count.max(3) as usize,
        counters: Mutex::new(SnapCounters {
            last_index: snap_last.map_or(0, |l| l.index),
            ..SnapCounters::default()
        }),
    });
    let log = DurableLogStore {
        inner: Arc::new(DurableInner {
            wal: Arc::clone(&wal),
            raft_dir,
            mem: Mutex::new(mem),
            early_acks: Arc::new(EarlyAcks::new(ack, group_of_several)),
        }),
    };
    Ok(Recovered {
        log,
        wal,
        persist,
        snapshot,
        high_water,
    })
}

/// Lays down the state of a one-voter group whose whole history up to `last_index` is one
/// snapshot (its payload streamed by `produce`) and an empty log, so that the next start
/// restores it and appends from `last_index + 1`. Used to import another server's data
/// (`crate::zk_import`): the snapshot is the commit point, written last, so an import
/// interrupted before it leaves no snapshot and starts over.
///
/// The snapshot's last log id and the vote carry term 1 by this node; the membership is
/// the one `initialize` would have made (this node the only voter, at index 0).
pub(crate) fn write_initial_state(
    cfg: &StorageConfig,
    last_index: u64,
    produce: impl FnOnce(&mut dyn FnMut(&[u8]) -> io::Result<()>) -> io::Result<()>,
) -> Result<u64, ConsensusError> {
    let raft_dir = cfg.raft_dir();
    std::fs::create_dir_all(&raft_dir).map_err(|e| ConsensusError::io(&raft_dir, e))?;
    let last = LogId::new(CommittedLeaderId::new(1, STANDALONE_ID), last_index);
    let mut vote = Vote::new(1, STANDALONE_ID);
    vote.commit();
    let membership = Membership::new(
        vec![BTreeSet::from([STANDALONE_ID])],
        BTreeMap::from([(STANDALONE_ID, BasicNode::default())]),
    );
    let meta = SnapshotMeta {
        last_log_id: Some(last),
        last_membership: StoredMembership::new(
            Some(LogId::new(CommittedLeaderId::new(0, 0), 0)),
            membership,
        ),
        snapshot_id: format!("import-{last_index}"),
    };
    // The snapshot first: it holds the membership and everything imported, so a keeper
    // starts from it alone (it elects itself). A vote written first and then left alone by
    // an interrupted import made a directory no keeper could lead.
    let store = SnapshotStore::open(cfg.snapshot_dir()).map_err(ConsensusError::Snapshots)?;
    let written = store
        .write_with(last_index, &encode_snapshot_meta(&meta), produce)
        .map_err(ConsensusError::Snapshots)?;
    for (name, bytes) in [
        ("vote", encode_vote(&vote)),
        ("committed", encode_committed(&Some(last))),
    ] {
        let path = raft_dir.join(name);
        wal::write_atomic(&path, &wal::frame(&bytes), true)
            .map_err(|e| ConsensusError::io(&path, e))?;
    }
    Ok(written)
}
