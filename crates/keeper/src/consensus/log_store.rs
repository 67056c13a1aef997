//! openraft's log storage on the write-ahead log: entries, the vote and the committed index,
//! with an in-memory cache of recent entries. Must not interpret entries beyond raft's needs.

use super::*;

/// Decoded entries kept in memory for openraft's readers (the apply path reads every entry
/// right after appending it). Older entries are read back from the WAL.
pub(super) const CACHE_BYTES: usize = 64 << 20;

/// How often at most the committed index is written. It is only a hint for replay at start-up
/// (a restarted leader commits its whole log again), so it is written without fsync and
/// coalesced rather than costing a file replacement per commit.
pub(super) const COMMITTED_EVERY: Duration = Duration::from_millis(100);

/// The raft log on the write-ahead log, the vote and committed index in `<dataDir>/raft`.
#[derive(Clone)]
pub struct DurableLogStore {
    pub(super) inner: Arc<DurableInner>,
}

pub(super) struct DurableInner {
    pub(super) wal: Arc<Wal>,
    pub(super) raft_dir: PathBuf,
    pub(super) mem: Mutex<DurableMem>,
    /// Whether appends are acknowledged to openraft as soon as they are queued; see
    /// [`AckMode`]. Shared with the state machine, which sees installed snapshots.
    pub(super) early_acks: Arc<EarlyAcks>,
}

impl DurableInner {
    /// Whether appends may be acknowledged before their fsync.
    pub(super) fn acks_on_queue(&self) -> bool {
        self.early_acks.allowed()
    }

    /// Called with every entry appended: a membership with more than one voter ends the
    /// acknowledge-before-fsync mode, before that entry itself is acknowledged.
    pub(super) fn note_membership(&self, entry: &LogEntry) {
        if let EntryPayload::Membership(m) = &entry.payload {
            self.early_acks.note(m);
        }
    }
}

/// The switch behind [`AckMode::Pipelined`]: on only if it was asked for and every membership
/// this node has seen has one voter — found at start-up (snapshot or log), appended to the log
/// ([`DurableInner::note_membership`]) or installed with a leader's snapshot
/// ([`HookStateMachine`]). It turns off for good; nothing turns it back on.
pub(super) struct EarlyAcks(AtomicBool);

impl EarlyAcks {
    /// `several_voters_seen`: a membership with more than one voter is already on disk.
    pub(super) fn new(ack: AckMode, several_voters_seen: bool) -> EarlyAcks {
        EarlyAcks(AtomicBool::new(
            ack == AckMode::Pipelined && !several_voters_seen,
        ))
    }

    pub(super) fn allowed(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// Ends the mode if `m` has more than one voter.
    pub(super) fn note(&self, m: &Membership<NodeId, BasicNode>) {
        if several_voters(m) && self.0.swap(false, Ordering::AcqRel) {
            tracing::info!(
                voters = m.voter_ids().count(),
                "the group has more than one voter: appends are acknowledged after their fsync from now on"
            );
        }
    }
}

/// More than one voter: a quorum spans nodes, and an append may count towards it only once
/// it is durable.
pub(super) fn several_voters(m: &Membership<NodeId, BasicNode>) -> bool {
    m.voter_ids().nth(1).is_some()
}

/// When the log store tells openraft that an append is flushed.
///
/// openraft 0.9's core awaits each append's flush before it takes the next client write, so
/// acknowledging only after fdatasync allows exactly one entry per fsync on a leader: no group
/// commit is possible. With one voter, [`AckMode::Pipelined`] acknowledges at once and moves
/// the durability wait to the state machine: [`HookStateMachine::apply`] applies nothing until
/// the WAL has fsynced it. Commit is then ahead of the disk for a moment, but nothing observes
/// it: no apply, no watch, no reply, no read of the tree happens before the fsync, and the
/// committed index on disk is clamped to the log at start-up. With more voters this is unsafe
/// (a follower's or the leader's early "flushed" would count towards a quorum that is not on
/// disk): the mode is left for good as soon as this node sees a membership with more than one
/// voter, whatever was asked (`EarlyAcks`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckMode {
    /// Call openraft's LogFlushed after the group fdatasync (raft's contract). Asked for
    /// explicitly only by tests until an ensemble member starts with it; a standalone keeper
    /// reaches it through `EarlyAcks` when a second voter appears.
    #[cfg_attr(not(test), allow(dead_code))]
    AfterSync,
    /// One voter only: acknowledge on queueing, gate apply on durability.
    Pipelined,
}

#[derive(Default)]
pub(super) struct DurableMem {
    /// Entries with their encoded size, newest at the back. Shared, so a reader takes them
    /// under the lock for a reference count each and copies them after releasing it.
    pub(super) cache: BTreeMap<u64, (Arc<LogEntry>, usize)>,
    pub(super) cache_bytes: usize,
    pub(super) last_purged: Option<LogId<NodeId>>,
    pub(super) last_log: Option<LogId<NodeId>>,
    pub(super) vote: Option<Vote<NodeId>>,
    pub(super) committed: Option<LogId<NodeId>>,
    pub(super) committed_saved: Option<LogId<NodeId>>,
    pub(super) committed_at: Option<Instant>,
}

impl DurableMem {
    pub(super) fn insert(&mut self, entry: LogEntry, size: usize) {
        let index = entry.log_id.index;
        if let Some((_, old)) = self.cache.insert(index, (Arc::new(entry), size)) {
            self.cache_bytes -= old;
        }
        self.cache_bytes += size;
    }

    /// Drops the oldest entries past the budget, but only those already written (readable
    /// from the WAL): nothing may be unreadable between append and fsync. `written_upto` is
    /// asked only when over budget: the WAL's answer takes a lock its writer thread also takes.
    pub(super) fn evict(&mut self, written_upto: impl FnOnce() -> Option<u64>) {
        if self.cache_bytes <= CACHE_BYTES {
            return;
        }
        let written_upto = written_upto();
        while self.cache_bytes > CACHE_BYTES {
            let Some((&first, _)) = self.cache.first_key_value() else {
                break;
            };
            if written_upto.is_none_or(|w| first > w) {
                break;
            }
            if let Some((_, size)) = self.cache.remove(&first) {
                self.cache_bytes -= size;
            }
        }
    }

    pub(super) fn drop_from(&mut self, index: u64) {
        for (_, (_, size)) in self.cache.split_off(&index) {
            self.cache_bytes -= size;
        }
    }

    /// Detaches the entries up to `index` and hands them back: the caller decides where
    /// they are freed.
    #[must_use]
    pub(super) fn drop_upto(&mut self, index: u64) -> CachedEntries {
        let keep = self.cache.split_off(&(index + 1));
        let dropped = std::mem::replace(&mut self.cache, keep);
        // Sized from the smaller side: after a snapshot most of the cache goes, and walking
        // hundreds of thousands of entries here would hold up every append.
        let bytes = |m: &BTreeMap<u64, (Arc<LogEntry>, usize)>| -> usize {
            m.values().map(|(_, size)| size).sum()
        };
        if self.cache.len() < dropped.len() {
            self.cache_bytes = bytes(&self.cache);
        } else {
            self.cache_bytes -= bytes(&dropped);
        }
        CachedEntries(dropped)
    }
}

/// Entries taken out of the log cache.
pub(super) struct CachedEntries(pub(super) BTreeMap<u64, (Arc<LogEntry>, usize)>);

impl CachedEntries {
    /// Frees the entries on a blocking thread when there are many: the first purge after a
    /// restart drops a full cache (64 MB, ~350,000 entries of a 100-byte setData), and
    /// freeing them took ~37 ms on the raft task, during which no request was answered.
    pub(super) fn free_in_background(self) {
        if self.0.len() < 4096 {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(move || drop(self))),
            Err(_) => drop(self),
        }
    }
}

impl DurableLogStore {
    #[allow(clippy::result_large_err)]
    pub(super) fn mem(&self) -> Result<MutexGuard<'_, DurableMem>, StorageError<NodeId>> {
        self.inner.mem.lock().map_err(|_| {
            StorageIOError::read_logs(AnyError::error("log store lock poisoned")).into()
        })
    }

    pub(super) fn committed_path(&self) -> PathBuf {
        self.inner.raft_dir.join("committed")
    }

    pub(super) fn write_committed(&self, c: Option<LogId<NodeId>>) {
        let path = self.committed_path();
        if let Err(e) = wal::write_atomic(&path, &wal::frame(&encode_committed(&c)), false) {
            // Only a hint: losing it costs replay time at start-up, not data.
            tracing::warn!("cannot save the committed index: {e}");
        }
    }

    /// Writes the latest committed index if it has not been written yet (at shutdown).
    pub(super) fn flush_committed(&self) {
        let Ok(mut m) = self.inner.mem.lock() else {
            return;
        };
        if m.committed != m.committed_saved {
            let c = m.committed;
            m.committed_saved = c;
            drop(m);
            self.write_committed(c);
        }
    }

    /// Reads one entry back from the WAL.
    #[allow(clippy::result_large_err)]
    pub(super) fn read_wal(&self, index: u64) -> Result<Option<LogEntry>, StorageError<NodeId>> {
        let body = self
            .inner
            .wal
            .read(index)
            .map_err(|e| StorageIOError::read_log_at_index(index, AnyError::new(&e)))?;
        body.map(|b| decode_log_entry(index, &b))
            .transpose()
            .map_err(|e| StorageIOError::read_log_at_index(index, AnyError::new(&e)).into())
    }
}

impl RaftLogReader<TypeConfig> for DurableLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<LogEntry>, StorageError<NodeId>> {
        let (lo, hi) = {
            let m = self.mem()?;
            let first = m.last_purged.map_or(0, |l| l.index + 1);
            let end = m.last_log.map_or(0, |l| l.index + 1);
            let lo = match range.start_bound() {
                Bound::Included(&s) => s,
                Bound::Excluded(&s) => s.saturating_add(1),
                Bound::Unbounded => 0,
            };
            let hi = match range.end_bound() {
                Bound::Included(&e) => e.saturating_add(1),
                Bound::Excluded(&e) => e,
                Bound::Unbounded => u64::MAX,
            };
            (lo.max(first), hi.min(end))
        };
        let mut out = Vec::with_capacity(hi.saturating_sub(lo).min(4096) as usize);
        let mut i = lo;
        while i < hi {
            // The cached run under the lock, copied after it (appends wait on this lock); a
            // miss is read from disk without holding it.
            let run: Vec<Arc<LogEntry>> = {
                let m = self.mem()?;
                m.cache
                    .range(i..hi)
                    .zip(i..)
                    .take_while(|((&k, _), want)| k == *want)
                    .map(|((_, (e, _)), _)| Arc::clone(e))
                    .collect()
            };
            i += run.len() as u64;
            out.extend(run.iter().map(|e| LogEntry::clone(e)));
            if i >= hi {
                break;
            }
            match self.read_wal(i)? {
                Some(e) => out.push(e),
                None => break,
            }
            i += 1;
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for DurableLogStore {
    type LogReader = DurableLogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let m = self.mem()?;
        Ok(LogState {
            last_purged_log_id: m.last_purged,
            last_log_id: m.last_log.or(m.last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let path = self.inner.raft_dir.join("vote");
        let bytes = wal::frame(&encode_vote(vote));
        // In order with the log on the WAL's writer thread, and durable before returning:
        // a vote forgotten after a crash could let this node vote twice in one term.
        self.inner
            .wal
            .in_order(Box::new(move || wal::write_atomic(&path, &bytes, true)))
            .await
            .map_err(|e| StorageIOError::write_vote(AnyError::new(&e)))?;
        self.mem()?.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(self.mem()?.vote)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        let write = {
            let mut m = self.mem()?;
            m.committed = committed;
            let due = m
                .committed_at
                .is_none_or(|t| t.elapsed() >= COMMITTED_EVERY);
            if due {
                m.committed_at = Some(Instant::now());
                m.committed_saved = committed;
            }
            due
        };
        if write {
            self.write_committed(committed);
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self.mem()?.committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = LogEntry> + Send,
        I::IntoIter: Send,
    {
        // Encoded before taking the lock, which the apply path's reads wait on.
        let entries = entries.into_iter();
        let mut records = Vec::with_capacity(entries.size_hint().0);
        let mut decoded = Vec::with_capacity(entries.size_hint().0);
        for entry in entries {
            self.inner.note_membership(&entry);
            let record = log_record(&entry).map_err(|e| storage_err(&e))?;
            decoded.push((entry, record.body_len()));
            records.push(record);
        }
        {
            let mut m = self.mem()?;
            for (entry, size) in decoded {
                m.last_log = Some(entry.log_id);
                m.insert(entry, size);
            }
            let wal = &self.inner.wal;
            m.evict(|| wal.written_upto());
        }
        // Readable now from the cache; durable when the WAL's group fsync calls back.
        if self.inner.acks_on_queue() {
            // A failed write marks the WAL's durability as failed, which fails the gated
            // apply and so stops raft, as a failed flush would.
            self.inner.wal.append(records, Box::new(|_| {}));
            callback.log_io_completed(Ok(()));
        } else {
            self.inner
                .wal
                .append(records, Box::new(move |r| callback.log_io_completed(r)));
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let index = log_id.index;
        self.inner
            .wal
            .truncate(index)
            .await
            .map_err(|e| storage_err(&e))?;
        let prev = index.checked_sub(1);
        let mut m = self.mem()?;
        m.drop_from(index);
        let cached_prev = prev.and_then(|p| m.cache.get(&p).map(|(e, _)| e.log_id));
        m.last_log = match (prev, cached_prev) {
            (_, Some(id)) => Some(id),
            (None, None) => None,
            (Some(p), None) => {
                if m.last_purged.is_some_and(|l| l.index >= p) {
                    m.last_purged
                } else {
                    drop(m);
                    let id = self.read_wal(p)?.map(|e| e.log_id);
                    m = self.mem()?;
                    id
                }
            }
        };
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let dropped = {
            let mut m = self.mem()?;
            // openraft only purges forward; a backward purge is ignored.
            if m.last_purged >= Some(log_id) {
                return Ok(());
            }
            m.last_purged = Some(log_id);
            let dropped = m.drop_upto(log_id.index);
            if m.last_log < Some(log_id) {
                m.last_log = Some(log_id);
            }
            dropped
        };
        dropped.free_in_background();
        self.inner.wal.purge(log_id.index);
        Ok(())
    }
}
