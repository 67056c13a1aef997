//! An ensemble member: starting one (recovery, quorum port, joining the group), what it knows
//! of its leader (`leaderless_for`, `role`, `followers`), and what it asks of the leader
//! (session reports, `sync`'s read index). Must not: know about clients or sessions beyond
//! passing reports through.

use super::*;

/// What a member of an ensemble keeps besides raft: links to the leader for its reports and
/// read indexes, and the stop of its quorum port.
pub(super) struct Ensemble {
    reports: LeaderLinks,
    reads: LeaderLinks,
    pub(super) stop: tokio_util::sync::CancellationToken,
    /// Since when this member has known no leader (None while it knows one), and, while it
    /// leads, when a quorum last acknowledged it.
    leadership: Arc<Mutex<Leadership>>,
    /// A leader that no quorum has acknowledged for this long counts as no leader
    /// (syncLimit ticks, as ZooKeeper's leader; a loaded leader's acknowledgements can lag
    /// by a second or more, which must not cut its clients off).
    quorum_lost_after: Duration,
    /// Which members raft's calls found down.
    health: Arc<PeerHealth>,
}

#[derive(Default, Clone, Copy)]
pub(super) struct Leadership {
    leaderless_since: Option<Instant>,
    quorum_acked: Option<Instant>,
}

/// How long `sync` waits for this member to apply up to the leader's commit index.
pub(super) const CATCH_UP_WAIT: Duration = Duration::from_secs(30);

impl Consensus {
    /// Starts this member of an ensemble: recovers its data, listens on its quorum port,
    /// and joins the group. A new ensemble is initialised once, by its lowest-numbered voter;
    /// the others wait to hear from a leader. Returns once the member runs, not once it has a
    /// leader: it serves reads of what it has meanwhile, and writes wait for a leader.
    pub async fn start_member(
        hook: Arc<dyn StateMachineHook>,
        storage: StorageConfig,
        members: MemberConfig,
        liveness: Arc<dyn LivenessHooks>,
    ) -> Result<Consensus, ConsensusError> {
        let me = members.me;
        let config = Arc::new(member_config(members.timing)?);
        // Bound first: a port in use is reported before a long recovery.
        let listener = tokio::net::TcpListener::bind(members.listen)
            .await
            .map_err(|source| ConsensusError::Listen {
                addr: members.listen,
                source,
            })?;
        let Opened {
            sm,
            log,
            handle,
            pending,
            mut snapshots,
        } = open(hook, &storage, AckMode::AfterSync, me).await?;
        snapshots.retention = Some(LogRetention {
            wal: Arc::clone(&handle.wal),
            persist: Arc::clone(&handle.persist),
            size_factor: storage.snapshot_size_factor,
        });
        let config_changed = sm.config_changed.subscribe();
        let desired_hook = Arc::clone(&sm.hook);
        let contact = Arc::new(LeaderContact::new());
        let health = Arc::new(PeerHealth::default());
        let network = TcpNetwork {
            me,
            max_frame: members.max_frame,
            contact: Arc::clone(&contact),
            health: Arc::clone(&health),
        };
        let raft = match Raft::new(me, config, network, log, sm).await {
            Ok(r) => r,
            Err(e) => {
                handle.close();
                return Err(ConsensusError::raft("cannot start raft", e));
            }
        };
        let stop = tokio_util::sync::CancellationToken::new();
        let intake = Arc::new(Intake::start(raft.clone(), me));
        let service = Arc::new(PeerService {
            raft: raft.clone(),
            intake: Arc::clone(&intake),
            members: members.clone(),
            max_frame: members.max_frame,
            liveness: Arc::clone(&liveness),
            contact: Arc::clone(&contact),
        });
        tokio::spawn(serve_peers(listener, service, stop.clone()));
        spawn_silence_watch(raft.clone(), me, contact, members.timing, stop.clone());
        let forwarder = Arc::new(PeerForwarder {
            raft: raft.clone(),
            links: LeaderLinks::new(&members, members.max_frame),
        });
        tokio::spawn(run_submitter(
            raft.clone(),
            Arc::clone(&pending),
            intake,
            Some(forwarder),
        ));
        let leadership = watch_leadership(&raft);
        let consensus = Consensus {
            metrics: raft.metrics(),
            raft,
            node_id: me,
            shut_down: Arc::new(AtomicBool::new(false)),
            storage: handle,
            pending,
            ensemble: Some(Arc::new(Ensemble {
                reports: LeaderLinks::new(&members, members.max_frame),
                reads: LeaderLinks::new(&members, members.max_frame),
                stop,
                leadership,
                quorum_lost_after: members.quorum_lost_after,
                health,
            })),
        };
        if let Err(e) = consensus.bootstrap(&members).await {
            consensus.shutdown().await;
            return Err(e);
        }
        membership::spawn_reconciler(
            consensus.raft.clone(),
            me,
            desired_hook,
            DesiredMembership::from_config(&members),
            config_changed,
            liveness,
        );
        snapshots.start(consensus.raft.clone());
        Ok(consensus)
    }

    /// Initialises a new ensemble's membership, on its lowest-numbered voter only (the others
    /// learn it from that one's first entries); nothing on a member that has a log.
    async fn bootstrap(&self, members: &MemberConfig) -> Result<(), ConsensusError> {
        let initialized = self
            .raft
            .is_initialized()
            .await
            .map_err(|e| ConsensusError::raft("cannot read the membership", e))?;
        if initialized || members.voters.first() != Some(&members.me) {
            return Ok(());
        }
        let nodes: BTreeMap<NodeId, BasicNode> = members
            .voters
            .iter()
            .map(|id| {
                let addr = members.addrs.get(id).cloned().unwrap_or_default();
                (*id, BasicNode { addr })
            })
            .collect();
        tracing::info!(voters = ?members.voters, "initialising the ensemble's membership");
        match self.raft.initialize(nodes).await {
            Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(ConsensusError::raft("cannot initialise the ensemble", e)),
        }
    }

    /// Sends the leader the sessions this member's clients touched (id, ms idle); returns the
    /// sessions that moved from this member to another since its last report. Standalone:
    /// nothing to report to.
    pub async fn report_liveness(
        &self,
        sessions: Vec<(i64, u32)>,
        events: Vec<wire::ReportedEvent>,
    ) -> Result<Vec<i64>, ConsensusError> {
        let Some(ensemble) = &self.ensemble else {
            return Ok(Vec::new());
        };
        let leader = self
            .leader()
            .ok_or(ConsensusError::NotLeader { leader: None })?;
        let req = wire::Request::SessionReport {
            from: self.node_id,
            sessions,
            events,
        };
        match ensemble.reports.call(&self.raft, leader, req).await {
            Ok(wire::Response::SessionReportReply { moved_away }) => Ok(moved_away),
            Ok(_) => Err(ConsensusError::NotLeader {
                leader: Some(leader),
            }),
            Err(e) => Err(ConsensusError::raft("cannot report to the leader", e)),
        }
    }

    /// `sync`: returns once this member has applied everything the leader had committed when
    /// asked (ZooKeeper's sync: a read after it sees every write acknowledged before it).
    pub async fn catch_up(&self) -> Result<(), ConsensusError> {
        let Some(ensemble) = &self.ensemble else {
            // Standalone: everything committed is applied before it is acknowledged.
            return Ok(());
        };
        let index = if self.is_leader() {
            let (read, _) = self
                .raft
                .get_read_log_id()
                .await
                .map_err(|e| ConsensusError::raft("cannot confirm the lead", e))?;
            read.map_or(0, |l| l.index)
        } else {
            let leader = self
                .leader()
                .ok_or(ConsensusError::NotLeader { leader: None })?;
            match ensemble
                .reads
                .call(&self.raft, leader, wire::Request::ReadIndex)
                .await
            {
                Ok(wire::Response::ReadIndexReply(Ok(index))) => index,
                Ok(wire::Response::ReadIndexReply(Err(n))) => {
                    return Err(ConsensusError::NotLeader { leader: n.leader })
                }
                Ok(_) => {
                    return Err(ConsensusError::NotLeader {
                        leader: Some(leader),
                    })
                }
                Err(e) => return Err(ConsensusError::raft("cannot ask the leader", e)),
            }
        };
        self.raft
            .wait(Some(CATCH_UP_WAIT))
            .applied_index_at_least(Some(index), "sync")
            .await
            .map(|_| ())
            .map_err(|e| ConsensusError::raft("sync did not catch up", e))
    }

    /// How long this ensemble member has known no leader; None while it knows one, and
    /// always for a standalone keeper.
    ///
    /// A leader counts as leaderless once too many voters' connections were refused or
    /// closed for a quorum to remain, or once no quorum has acknowledged it for syncLimit
    /// ticks (members gone silent): cut off from the others, it can commit nothing
    /// (openraft keeps it leader until it hears a higher term).
    pub fn leaderless_for(&self) -> Option<Duration> {
        let e = self.ensemble.as_ref()?;
        let l = *e.leadership.lock().unwrap_or_else(|p| p.into_inner());
        if !self.is_leader() {
            return l.leaderless_since.map(|s| s.elapsed());
        }
        let silent = l
            .quorum_acked
            .and_then(|acked| acked.elapsed().checked_sub(e.quorum_lost_after));
        let gone = {
            let m = self.metrics.borrow();
            let voters = m.membership_config.membership().voter_ids();
            e.health.quorum_gone_for(self.node_id, voters)
        };
        silent.max(gone)
    }

    /// The leader this member knows of.
    fn leader(&self) -> Option<NodeId> {
        self.metrics.borrow().current_leader
    }

    /// What `srvr` and `mntr` call this member: standalone, leader, follower or observer;
    /// None while it has no leader (ZooKeeper's "not currently serving requests").
    pub fn role(&self) -> Option<&'static str> {
        if self.ensemble.is_none() {
            return Some("standalone");
        }
        if self.leaderless_for().is_some() {
            // A leader cut off from its quorum.
            return None;
        }
        let m = self.metrics.borrow();
        match m.state {
            ServerState::Leader if m.current_leader == Some(self.node_id) => Some("leader"),
            ServerState::Follower if m.current_leader.is_some() => Some("follower"),
            ServerState::Learner if m.current_leader.is_some() => Some("observer"),
            _ => None,
        }
    }

    /// On the leader: how many voters and learners follow, and how many of them have the
    /// leader's last entry (mntr's zk_followers, zk_synced_followers).
    pub fn followers(&self) -> Option<(usize, usize)> {
        let m = self.metrics.borrow();
        let replication = m.replication.as_ref()?;
        let last = m.last_log_index;
        let others = replication.iter().filter(|(id, _)| **id != self.node_id);
        let (mut all, mut synced) = (0, 0);
        for (_, matched) in others {
            all += 1;
            if matched.map(|l| l.index) == last {
                synced += 1;
            }
        }
        Some((all, synced))
    }
}

/// Keeps the instant since which `raft` has known no leader (from its start, until it hears
/// one), and while it leads, when a quorum last acknowledged it. Ends with the raft core.
pub(super) fn watch_leadership(raft: &Raft) -> Arc<Mutex<Leadership>> {
    let shared = Arc::new(Mutex::new(Leadership {
        leaderless_since: Some(Instant::now()),
        quorum_acked: None,
    }));
    let mut metrics = raft.metrics();
    let slot = Arc::clone(&shared);
    tokio::spawn(async move {
        loop {
            let (has_leader, acked_ms) = {
                let m = metrics.borrow_and_update();
                let leads = m.state == ServerState::Leader && m.current_leader == Some(m.id);
                (
                    m.current_leader.is_some(),
                    m.millis_since_quorum_ack.filter(|_| leads),
                )
            };
            {
                let mut l = slot.lock().unwrap_or_else(|p| p.into_inner());
                match (has_leader, l.leaderless_since) {
                    (true, _) => l.leaderless_since = None,
                    (false, None) => l.leaderless_since = Some(Instant::now()),
                    (false, Some(_)) => {}
                }
                let now = Instant::now();
                l.quorum_acked =
                    acked_ms.map(|ms| now.checked_sub(Duration::from_millis(ms)).unwrap_or(now));
            }
            if metrics.changed().await.is_err() {
                return;
            }
        }
    });
    shared
}

/// openraft configuration for an ensemble member: the standalone one with `timing`
/// (heartbeat, election timeout min and max, ms).
pub(super) fn member_config(timing: (u64, u64, u64)) -> Result<openraft::Config, ConsensusError> {
    let (heartbeat, election_min, election_max) = timing;
    let config = openraft::Config {
        heartbeat_interval: heartbeat,
        election_timeout_min: election_min,
        election_timeout_max: election_max.max(election_min + 1),
        // Snapshot chunks well inside a quorum frame.
        snapshot_max_chunk_size: 1 << 20,
        // openraft never purges by itself: the snapshot scheduler purges by bytes
        // (`LogRetention`).
        ..standalone_config(u64::MAX)?
    };
    config
        .validate()
        .map_err(|e| ConsensusError::raft("bad raft configuration", e))
}
