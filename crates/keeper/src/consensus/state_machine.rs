//! openraft's state machine: hands committed entries to the keeper's [`StateMachineHook`] and
//! builds, stores and installs snapshots through it. Must not touch the tree itself.

use super::*;

/// The latest snapshot, built here or received from a leader.
pub(super) struct StoredSnapshot {
    pub(super) meta: StoredSnapshotMeta,
    pub(super) data: SnapshotBytes,
}

pub(super) enum SnapshotBytes {
    /// Not on disk: writing it failed (disk full, ...).
    Memory(Vec<u8>),
    /// The snapshot file with this index.
    Disk(u64),
}

/// openraft's state machine: records the applied position and membership, and passes client
/// entries to the hook. openraft's worker task owns it, so applies are strictly sequential.
pub struct HookStateMachine {
    pub(super) hook: Arc<dyn StateMachineHook>,
    pub(super) last_applied: Option<LogId<NodeId>>,
    pub(super) last_membership: StoredMembership<NodeId, BasicNode>,
    // Shared with snapshot builders, which finish in their own tasks.
    pub(super) current_snapshot: Arc<Mutex<Option<StoredSnapshot>>>,
    pub(super) snapshot_seq: u64,
    // Writes snapshots to disk.
    pub(super) persist: Arc<SnapshotPersist>,
    // With `AckMode::Pipelined`: apply waits until the WAL has made the entries durable.
    pub(super) durable_gate: Option<watch::Receiver<wal::Durability>>,
    // The log store's acknowledge-before-fsync switch: a snapshot installed from a leader
    // brings a membership the log never sees as an entry.
    pub(super) early_acks: Arc<EarlyAcks>,
    /// Per origin, the last sequence applied: later copies of an entry are skipped.
    pub(super) high_water: HighWater,
    /// This member's own entries waiting for their apply.
    pub(super) pending: Arc<Pending>,
    /// The raft index of the latest entry that may have changed the membership the state asks
    /// for: an applied reconfig, or an installed snapshot's last (see [`super::membership`]).
    pub(super) config_changed: Arc<watch::Sender<u64>>,
    /// The zxid of the newest snapshot's view, from the moment its build began (or it was
    /// restored): what the snapshot scheduler counts snapCount from.
    pub(super) snapshot_zxid: Arc<AtomicI64>,
}

impl HookStateMachine {
    pub(super) fn new(
        hook: Arc<dyn StateMachineHook>,
        persist: Arc<SnapshotPersist>,
        early_acks: Arc<EarlyAcks>,
        pending: Arc<Pending>,
    ) -> Self {
        HookStateMachine {
            last_applied: None,
            last_membership: StoredMembership::default(),
            current_snapshot: Arc::new(Mutex::new(None)),
            snapshot_seq: 0,
            persist,
            durable_gate: None,
            early_acks,
            high_water: HighWater::default(),
            pending,
            config_changed: Arc::new(watch::Sender::new(0)),
            snapshot_zxid: Arc::new(AtomicI64::new(hook.last_applied())),
            hook,
        }
    }
}

// StorageError is large, but it is what every storage trait method returns anyway.
#[allow(clippy::result_large_err)]
pub(super) fn lock_snapshot(
    slot: &Mutex<Option<StoredSnapshot>>,
) -> Result<MutexGuard<'_, Option<StoredSnapshot>>, StorageError<NodeId>> {
    slot.lock().map_err(|_| {
        StorageIOError::read_snapshot(None, AnyError::error("snapshot slot lock poisoned")).into()
    })
}

impl HookStateMachine {
    /// One client entry, as the next zxid; a copy of one applied before (handed to two
    /// leaders) is skipped on every member alike, as the marks are part of the replicated
    /// state.
    #[allow(clippy::result_large_err)]
    fn apply_proposal(
        &mut self,
        log_id: LogId<NodeId>,
        p: &Proposal,
    ) -> Result<(), StorageError<NodeId>> {
        if self.high_water.is_duplicate(p) {
            return Ok(());
        }
        // One past the last, and never below the entry's raft index: a log written one write
        // per entry (before batches) keeps the zxids it had, zxid = index, on every member
        // whatever snapshot it restarts from; batches then count on past the index.
        let zxid = self
            .hook
            .last_applied()
            .checked_add(1)
            .zip(i64::try_from(log_id.index).ok())
            .map(|(next, index)| next.max(index))
            .ok_or_else(|| {
                StorageIOError::apply(log_id, AnyError::error("the zxid reached its maximum"))
            })?;
        let result = self.hook.apply(zxid, &p.entry);
        if result.err == corral_proto::ErrorCode::Ok
            && matches!(
                p.entry.op,
                corral_tree::EntryOp::Request(corral_proto::Request::Reconfig(_))
            )
        {
            self.config_changed.send_replace(log_id.index);
        }
        self.high_water.record(p);
        if p.origin == self.pending.me() {
            self.pending.applied(p.seq, zxid, result);
        }
        Ok(())
    }
}

impl RaftStateMachine<TypeConfig> for HookStateMachine {
    type SnapshotBuilder = HookSnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), StorageError<NodeId>>
    {
        Ok((self.last_applied, self.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<()>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = LogEntry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<LogEntry> = entries.into_iter().collect();
        if let (Some(gate), Some(last)) = (self.durable_gate.as_mut(), entries.last()) {
            let (index, log_id) = (last.log_id.index, last.log_id);
            let d = gate
                .wait_for(|d| d.failed || d.upto >= Some(index))
                .await
                .map(|d| *d)
                .unwrap_or(wal::Durability {
                    upto: None,
                    failed: true,
                });
            if d.failed {
                return Err(StorageIOError::apply(
                    log_id,
                    AnyError::error("the write-ahead log failed before this entry was durable"),
                )
                .into());
            }
        }
        let mut results = Vec::with_capacity(entries.len());
        for entry in entries {
            let log_id = entry.log_id;
            match entry.payload {
                // A copy of an entry applied before (handed to two leaders): skipped on
                // every member alike, as the marks are part of the replicated state.
                EntryPayload::Normal(ref batch) => {
                    for p in &batch.0 {
                        self.apply_proposal(log_id, p)?;
                    }
                }
                EntryPayload::Blank => {}
                EntryPayload::Membership(ref m) => {
                    self.last_membership = StoredMembership::new(Some(log_id), m.clone());
                }
            }
            results.push(());
            self.last_applied = Some(log_id);
        }
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // Runs between applies, so the view, last_applied and membership all agree.
        self.snapshot_seq += 1;
        self.snapshot_zxid
            .store(self.hook.last_applied(), Ordering::Release);
        let snapshot_id = match self.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, self.snapshot_seq),
            None => format!("--{}", self.snapshot_seq),
        };
        HookSnapshotBuilder {
            meta: SnapshotMeta {
                last_log_id: self.last_applied,
                last_membership: self.last_membership.clone(),
                snapshot_id,
            },
            // The marks as of this view go in front of the state machine's bytes.
            encoder: self.hook.snapshot().map(|enc| {
                let prefix = self.high_water.snapshot_prefix();
                let wrapped: SnapshotEncoder = Arc::new(move |scratch, sink| {
                    sink(&prefix)?;
                    enc(scratch, sink)
                });
                wrapped
            }),
            current_snapshot: Arc::clone(&self.current_snapshot),
            persist: Arc::clone(&self.persist),
        }
    }

    /// A file in the snapshot directory: a snapshot of millions of znodes arrives in chunks
    /// and is never whole in memory.
    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<SnapshotData>, StorageError<NodeId>> {
        let path = self.persist.store.receiving_path();
        match SnapshotData::receive_into(path).await {
            Ok(d) => Ok(Box::new(d)),
            Err(e) => Err(StorageIOError::write_snapshot(
                None,
                AnyError::new(&e).add_context(|| "creating the file to receive a snapshot in"),
            )
            .into()),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &StoredSnapshotMeta,
        snapshot: Box<SnapshotData>,
    ) -> Result<(), StorageError<NodeId>> {
        // Before anything after this snapshot is appended to the log.
        self.early_acks.note(meta.last_membership.membership());
        let read_err = |e: AnyError| StorageIOError::read_snapshot(Some(meta.signature()), e);
        if let SnapshotData::Receiving { file, path } = *snapshot {
            return self.install_received(meta, file, path).await;
        }
        let data = Arc::new(snapshot.into_bytes().await.map_err(|e| {
            read_err(AnyError::new(&e).add_context(|| "reading the received snapshot"))
        })?);
        // A snapshot from the leader replaces log we may not have: it must be on disk before
        // raft purges that log, or a restart would find neither.
        let (p, m, d) = (Arc::clone(&self.persist), meta.clone(), Arc::clone(&data));
        let ok = tokio::task::spawn_blocking(move || p.persist(&m, &d, Instant::now()))
            .await
            .unwrap_or(false);
        if !ok {
            return Err(StorageIOError::write_snapshot(
                Some(meta.signature()),
                AnyError::error("cannot write the installed snapshot to disk"),
            )
            .into());
        }
        let on_disk = meta.last_log_id.map(|l| l.index);
        let (marks, payload) =
            HighWater::split_snapshot(&data).map_err(|e| read_err(AnyError::new(&e)))?;
        self.hook
            .restore(payload)
            .map_err(|e| read_err(AnyError::new(&e)))?;
        self.config_changed.send_replace(on_disk.unwrap_or(0));
        self.snapshot_zxid
            .store(self.hook.last_applied(), Ordering::Release);
        self.pending
            .covered_by_snapshot(marks.get(self.pending.me()));
        self.high_water = marks;
        self.last_applied = meta.last_log_id;
        self.last_membership = meta.last_membership.clone();
        let data = match on_disk {
            Some(index) => SnapshotBytes::Disk(index),
            None => SnapshotBytes::Memory(Arc::unwrap_or_clone(data)),
        };
        *lock_snapshot(&self.current_snapshot)? = Some(StoredSnapshot {
            meta: meta.clone(),
            data,
        });
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let current = lock_snapshot(&self.current_snapshot)?;
        let Some(s) = current.as_ref() else {
            return Ok(None);
        };
        let data = match &s.data {
            SnapshotBytes::Memory(bytes) => SnapshotData::memory(bytes.clone()),
            SnapshotBytes::Disk(index) => {
                let (file, start) = self.persist.store.open_payload(*index).map_err(|e| {
                    StorageIOError::read_snapshot(Some(s.meta.signature()), AnyError::new(&e))
                })?;
                SnapshotData::file(file, start)
            }
        };
        Ok(Some(Snapshot {
            meta: s.meta.clone(),
            snapshot: Box::new(data),
        }))
    }
}

impl HookStateMachine {
    /// Installs a snapshot received into a file: it becomes a snapshot file of the store
    /// (copied in pieces), which is then mapped and restored from, as at start-up.
    async fn install_received(
        &mut self,
        meta: &StoredSnapshotMeta,
        mut file: tokio::fs::File,
        received: std::path::PathBuf,
    ) -> Result<(), StorageError<NodeId>> {
        use tokio::io::AsyncWriteExt;
        let read_err = |e: AnyError| -> StorageError<NodeId> {
            StorageIOError::read_snapshot(Some(meta.signature()), e).into()
        };
        file.flush()
            .await
            .map_err(|e| read_err(AnyError::new(&e)))?;
        drop(file);
        let Some(last) = meta.last_log_id else {
            return Err(read_err(AnyError::error(
                "a snapshot without a last log id",
            )));
        };
        let (persist, m) = (Arc::clone(&self.persist), meta.clone());
        let hook = Arc::clone(&self.hook);
        // Disk and decoding work: off the async workers.
        let restored = tokio::task::spawn_blocking(move || -> Result<HighWater, String> {
            let copied = persist.persist_streamed(&m, Instant::now(), |sink| {
                use std::io::Read;
                let mut f = std::fs::File::open(&received)?;
                let mut piece = vec![0u8; 1 << 20];
                loop {
                    let n = f.read(&mut piece)?;
                    if n == 0 {
                        return Ok(None);
                    }
                    sink(&piece[..n])?;
                }
            });
            let _ = std::fs::remove_file(&received);
            if !copied {
                return Err("cannot write the received snapshot to disk".into());
            }
            let loaded = persist.store.load(last.index).map_err(|e| e.to_string())?;
            let (marks, payload) =
                HighWater::split_snapshot(loaded.payload()).map_err(|e| e.to_string())?;
            hook.restore(payload).map_err(|e| e.to_string())?;
            Ok(marks)
        })
        .await
        .map_err(|e| read_err(AnyError::new(&e)))?
        .map_err(|e| read_err(AnyError::error(e)))?;
        self.config_changed.send_replace(last.index);
        self.snapshot_zxid
            .store(self.hook.last_applied(), Ordering::Release);
        self.pending
            .covered_by_snapshot(restored.get(self.pending.me()));
        self.high_water = restored;
        self.last_applied = meta.last_log_id;
        self.last_membership = meta.last_membership.clone();
        *lock_snapshot(&self.current_snapshot)? = Some(StoredSnapshot {
            meta: meta.clone(),
            data: SnapshotBytes::Disk(last.index),
        });
        let zxid = format!("{:#x}", self.hook.last_applied());
        tracing::info!(index = last.index, zxid, "installed the leader's snapshot");
        Ok(())
    }
}

/// Builds one snapshot from a view captured by [`StateMachineHook::snapshot`]; openraft runs
/// it in its own task, concurrently with further applies.
pub struct HookSnapshotBuilder {
    pub(super) meta: StoredSnapshotMeta,
    // A Mutex only to make the builder Sync, as openraft requires; it is taken exactly once.
    pub(super) encoder: Option<SnapshotEncoder>,
    pub(super) current_snapshot: Arc<Mutex<Option<StoredSnapshot>>>,
    pub(super) persist: Arc<SnapshotPersist>,
}

impl RaftSnapshotBuilder<TypeConfig> for HookSnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let signature = self.meta.signature();
        let err = |e: AnyError| -> StorageError<NodeId> {
            StorageIOError::write_snapshot(Some(signature.clone()), e).into()
        };
        let encoder = self.encoder.take().ok_or_else(|| {
            err(AnyError::error(
                "the state machine does not support snapshots",
            ))
        })?;
        let started = Instant::now();
        // Encoding millions of znodes is CPU work: it runs on the background worker at idle
        // CPU priority, raised only if it starves, so on a busy machine it takes idle time
        // instead of time from request handling. This thread writes the file, at normal
        // priority (`produce_in_background` says why). A write failure (disk full) is not
        // returned: openraft 0.9 treats any build_snapshot error as fatal and stops the node.
        // The snapshot then lives in memory only, and the WAL keeps every segment it would
        // have allowed to delete.
        let persist = Arc::clone(&self.persist);
        let meta = self.meta.clone();
        let (data, stored) = on_snapshot_thread(move || {
            // Encoded straight into the file: a snapshot of millions of znodes is never whole
            // in memory, so writing one costs no page faults and no large frees, which would
            // stall the request path.
            let on_disk = persist.persist_streamed(&meta, started, |sink| {
                let enc = Arc::clone(&encoder);
                let p = produce_in_background(move |scratch, s| enc(scratch, s), sink)?;
                p.consumed?;
                p.value?;
                Ok(Some(p.report))
            });
            if let (Some(l), true) = (meta.last_log_id, on_disk) {
                match persist.store.open_payload(l.index) {
                    Ok((file, start)) => {
                        return Ok((
                            SnapshotData::file(file, start),
                            SnapshotBytes::Disk(l.index),
                        ))
                    }
                    Err(e) => tracing::warn!("cannot reopen the snapshot just written: {e}"),
                }
            }
            // Not on disk (the disk refused it): kept in memory.
            let mut data = Vec::new();
            let p = produce_in_background(
                move |scratch, s| encoder(scratch, s),
                &mut |piece: &[u8]| {
                    data.extend_from_slice(piece);
                    Ok(())
                },
            )?;
            p.consumed?;
            p.value?;
            let copy = data.clone();
            Ok::<_, io::Error>((SnapshotData::memory(data), SnapshotBytes::Memory(copy)))
        })
        .await
        .map_err(|e| err(AnyError::new(&e)))?
        .map_err(|e| err(AnyError::new(&e).add_context(|| "encoding the snapshot")))?;
        *lock_snapshot(&self.current_snapshot)? = Some(StoredSnapshot {
            meta: self.meta.clone(),
            data: stored,
        });
        Ok(Snapshot {
            meta: self.meta.clone(),
            snapshot: Box::new(data),
        })
    }
}

/// Runs `work` on a new thread (it waits on the disk, and must not hold a runtime worker)
/// and returns its result.
pub(super) async fn on_snapshot_thread<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ConsensusError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("corral-snapshot".into())
        .spawn(move || {
            let _ = tx.send(work());
        })
        .map_err(|source| ConsensusError::Thread {
            name: "snapshot",
            source,
        })?;
    rx.await.map_err(|_| ConsensusError::Panicked {
        what: "snapshot thread",
    })
}
