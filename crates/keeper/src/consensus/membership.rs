//! Raft membership follows the replicated configuration: the leader makes raft's voters and
//! learners what the keeper's [`StateMachineHook::desired_membership`] asks for (the ensemble's
//! `/zookeeper/config`, which zoo.cfg seeds and a committed `reconfig` changes), and before
//! that is known, what zoo.cfg lists.
//!
//! One task per member, woken by a leadership or membership change and by every applied
//! reconfig; it acts only while its member leads. Joining participants are added as learners,
//! then made voters by one `change_membership` (openraft's joint consensus); joining observers
//! stay learners; leaving members are dropped. It must not block the apply path (it runs on its
//! own task and only reads the hook) and must not stall the ensemble: a voter set whose majority
//! is not caught up with the leader is not installed (ZooKeeper refuses such a reconfig with
//! NewConfigNoQuorum; here the node has changed already, so the change waits, retried every
//! [`RETRY`], and is logged), so an unreachable joiner never takes the quorum with it, and an
//! unreachable leaver is removed without its help (the joint majority needs only the others).

use super::*;

/// The membership the replicated state asks for: quorum addresses (`host:port`) by id.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DesiredMembership {
    pub voters: BTreeMap<NodeId, String>,
    /// Observers: raft learners.
    pub learners: BTreeMap<NodeId, String>,
    /// The raft log index of the reconfig that made it (0 for zoo.cfg's): a voter has caught
    /// up with the change once raft has replicated that far to it. Filled in by consensus,
    /// which knows where the reconfig's entry is (a zxid is not a log index).
    pub since: u64,
}

impl DesiredMembership {
    /// zoo.cfg's: the participants vote, the observers learn.
    pub fn from_config(members: &MemberConfig) -> DesiredMembership {
        let (voters, learners) = members
            .addrs
            .iter()
            .map(|(id, a)| (*id, a.clone()))
            .partition(|(id, _)| members.voters.contains(id));
        DesiredMembership {
            voters,
            learners,
            since: 0,
        }
    }
}

/// How often a change that could not be made yet is tried again.
const RETRY: Duration = Duration::from_millis(250);

/// Starts the task; it ends with the raft core (whose metrics channel then closes).
pub(super) fn spawn_reconciler(
    raft: Raft,
    me: NodeId,
    hook: Arc<dyn StateMachineHook>,
    fallback: DesiredMembership,
    mut config_changed: watch::Receiver<u64>,
    liveness: Arc<dyn LivenessHooks>,
) {
    tokio::spawn(async move {
        let mut metrics = raft.metrics();
        let mut seen = None;
        let mut pending = true;
        let mut waiting: Option<DesiredMembership> = None;
        // Whether a membership holding this member was seen (in this run), and whether it
        // was then left: see `LivenessHooks::left_ensemble`.
        let (mut was_member, mut left, mut check_config) = (false, false, true);
        loop {
            let mut removed_now = false;
            let (leads, key) = {
                let m = metrics.borrow_and_update();
                let leads = m.state == ServerState::Leader && m.current_leader == Some(me);
                let membership = m.membership_config.membership();
                let holds_me = membership.nodes().any(|(id, _)| *id == me);
                let settled = membership.get_joint_config().len() == 1
                    && m.membership_config.log_id().is_some()
                    && m.membership_config.log_id().map(|l| l.index)
                        <= m.last_applied.map(|l| l.index);
                if holds_me {
                    was_member = true;
                } else if was_member && settled && !left {
                    left = true;
                    removed_now = true;
                }
                let key = (
                    m.state,
                    m.current_leader,
                    m.membership_config.log_id().map(|l| l.index),
                );
                (leads, key)
            };
            if removed_now {
                liveness.left_ensemble();
            }
            // The replicated configuration: a member removed by a reconfig learns it from
            // the reconfig's own entry, which it applies before the membership change that
            // follows (and which, once it is out, nobody replicates to it).
            if check_config {
                check_config = false;
                if let Some(cfg) = hook.desired_membership() {
                    let holds_me = cfg.voters.contains_key(&me) || cfg.learners.contains_key(&me);
                    if holds_me {
                        was_member = true;
                    } else if was_member && !left {
                        left = true;
                        liveness.left_ensemble();
                    }
                }
            }
            if seen != Some(key) {
                seen = Some(key);
                pending = true;
            }
            if leads && pending {
                let want = match hook.desired_membership() {
                    Some(mut w) => {
                        w.since = *config_changed.borrow();
                        w
                    }
                    None => fallback.clone(),
                };
                pending = match reconcile(&raft, me, &want).await {
                    Step::Done => false,
                    Step::Again => true,
                    Step::NoQuorum { synced } => {
                        // Said once per membership asked for; retried quietly.
                        if waiting.as_ref() != Some(&want) {
                            tracing::warn!(
                                voters = ?want.voters.keys().collect::<Vec<_>>(),
                                synced,
                                "the new voters have no caught-up majority; the membership \
                                 change waits for them"
                            );
                            waiting = Some(want);
                        }
                        true
                    }
                };
            }
            let retry = async {
                if pending {
                    tokio::time::sleep(RETRY).await
                } else {
                    std::future::pending::<()>().await
                }
            };
            tokio::select! {
                changed = metrics.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                changed = config_changed.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    pending = true;
                    check_config = true;
                }
                _ = retry => {}
            }
        }
    });
}

enum Step {
    /// Raft's membership is the one asked for.
    Done,
    /// Try again (a change under way, or one that failed).
    Again,
    /// The new voters have only `synced` caught-up members, not a majority.
    NoQuorum { synced: usize },
}

/// One step towards `want`.
async fn reconcile(raft: &Raft, me: NodeId, want: &DesiredMembership) -> Step {
    let (membership, replication) = {
        let m = raft.metrics();
        let m = m.borrow();
        (
            m.membership_config.membership().clone(),
            m.replication.clone().unwrap_or_default(),
        )
    };
    if membership.get_joint_config().len() > 1 {
        return Step::Again; // a change is under way; look again when it is done
    }
    let nodes: BTreeMap<NodeId, String> = membership
        .nodes()
        .map(|(id, n)| (*id, n.addr.clone()))
        .collect();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let want_voters: BTreeSet<NodeId> = want.voters.keys().copied().collect();
    // Joiners first, as learners (not waiting for them to catch up).
    for (id, addr) in want.voters.iter().chain(want.learners.iter()) {
        if nodes.contains_key(id) {
            continue;
        }
        let node = BasicNode { addr: addr.clone() };
        match raft.add_learner(*id, node, false).await {
            Ok(_) => tracing::info!(member = id, addr, "member added as a raft learner"),
            Err(e) => {
                tracing::warn!(member = id, "cannot add the member as a learner: {e}");
                return Step::Again;
            }
        }
    }
    if voters != want_voters {
        let synced = want_voters
            .iter()
            .filter(|id| {
                **id == me
                    || replication
                        .get(id)
                        .is_some_and(|l| l.is_some_and(|l| l.index >= want.since))
            })
            .count();
        if synced * 2 <= want_voters.len() {
            return Step::NoQuorum { synced };
        }
        tracing::info!(from = ?voters, to = ?want_voters, "changing the voting members");
        if let Err(e) = raft
            .change_membership(ChangeMembers::ReplaceAllVoters(want_voters), false)
            .await
        {
            tracing::warn!("cannot change the voting members: {e}");
            return Step::Again;
        }
    }
    // Leaving learners (observers, or voters that became ones) are dropped.
    let wanted = |id: &NodeId| want.voters.contains_key(id) || want.learners.contains_key(id);
    let leaving: BTreeSet<NodeId> = {
        let m = raft.metrics();
        let m = m.borrow();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, _)| *id)
            .filter(|id| !wanted(id) && !voters.contains(id))
            .collect()
    };
    if !leaving.is_empty() {
        tracing::info!(learners = ?leaving, "removing members that left");
        if let Err(e) = raft
            .change_membership(ChangeMembers::RemoveNodes(leaving), false)
            .await
        {
            tracing::warn!("cannot remove the members that left: {e}");
            return Step::Again;
        }
    }
    Step::Done
}
