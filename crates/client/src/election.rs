//! Leader election with a fencing token: the Kafka controller pattern.
//!
//! Owns: [`LeaderElection`] and [`Leadership`]. Under a directory, `leader` is an ephemeral
//! node naming the leader and `epoch` a persistent node whose data is the leadership epoch.
//! A candidate becomes leader with one multi that bumps `epoch` (checking the version it
//! read) and creates `leader`, so every leadership has its own epoch and its own version of
//! the epoch node. Every leader write goes through [`Leadership::fenced_multi`], which puts a
//! check of that version first: once another leader has been elected, the old leader's
//! writes fail on the server, whatever the old leader believes. Locally, leadership is given
//! up when the session is Suspended for longer than a configurable fraction of the timeout,
//! and at once on Expired, Closed, a new session, or the leader node's deletion.
//!
//! Must not: send a leader write outside the session that won the election, or keep a
//! leadership across an expiry (a new session campaigns anew, for a new epoch).

use std::sync::Arc;
use std::time::Duration;

use corral_proto::{
    CheckVersionRequest, CreateMode, CreateRequest, ErrorCode, MultiResult, Request, SetDataRequest,
};
use tokio::sync::{broadcast, watch};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::client::Client;
use crate::lock::ensure_path;
use crate::{open_acl_unsafe, ClientError, SessionEvent, SessionState};

/// Why a [`Leadership`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeadershipLost {
    /// The session stayed Suspended past the configured fraction of its timeout: the server
    /// may expire it any moment, and another leader be elected.
    Suspended,
    /// The session expired (or was replaced by a new one).
    Expired,
    /// The client was closed or failed authentication.
    Closed,
    /// The leader node was deleted or is no longer ours.
    NodeGone,
    /// A fenced write found the epoch moved on: another leader has been elected.
    Fenced,
    /// [`Leadership::resign`] was called.
    Resigned,
}

/// A participant in a leader election on a directory.
#[derive(Debug, Clone)]
pub struct LeaderElection {
    client: Client,
    dir: String,
    id: String,
    suspended_fraction: f64,
}

fn join(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

fn parse_epoch(data: &[u8]) -> Option<i64> {
    std::str::from_utf8(data).ok()?.trim().parse().ok()
}

/// The leader node's data: "<id>\n<epoch>".
fn leader_data(id: &str, epoch: i64) -> Vec<u8> {
    format!("{id}\n{epoch}").into_bytes()
}

fn leader_epoch(data: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(data).ok()?;
    s.rsplit('\n').next()?.trim().parse().ok()
}

impl LeaderElection {
    /// A participant named `id` (stored in the leader node) in the election on `dir`
    /// (chroot-relative; created with its parents when missing). Leadership is given up
    /// after a quarter of the session timeout Suspended (see
    /// [`LeaderElection::suspended_fraction`]).
    pub fn new(client: &Client, dir: &str, id: &str) -> LeaderElection {
        LeaderElection {
            client: client.clone(),
            dir: dir.to_string(),
            id: id.to_string(),
            suspended_fraction: 0.25,
        }
    }

    /// How long a Suspended session may last, as a fraction of the negotiated timeout,
    /// before leadership is given up (clamped into [0, 1]; 0: at once). Suspended is reported
    /// two thirds of the timeout after the last news from the server, so fractions up to a
    /// third give up before the server can have expired the session.
    pub fn suspended_fraction(mut self, fraction: f64) -> LeaderElection {
        self.suspended_fraction = if fraction.is_finite() {
            fraction.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self
    }

    /// The leader node's path.
    pub fn leader_path(&self) -> String {
        join(&self.dir, "leader")
    }

    /// The epoch node's path.
    pub fn epoch_path(&self) -> String {
        join(&self.dir, "epoch")
    }

    /// The current leader's id and epoch, if there is one.
    pub async fn current_leader(&self) -> Result<Option<(String, i64)>, ClientError> {
        match self.client.get_data(&self.leader_path()).await {
            Ok((data, _)) => {
                let s = String::from_utf8_lossy(&data);
                let (id, epoch) = s.rsplit_once('\n').unwrap_or((&s, ""));
                Ok(Some((id.to_string(), epoch.trim().parse().unwrap_or(-1))))
            }
            Err(ClientError::Server(ErrorCode::NoNode)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Waits until this participant is the leader. Connection losses and expiries while
    /// waiting are ridden out (with recovery on); Closed and AuthFailed end it with an error.
    pub async fn campaign(&self) -> Result<Leadership, ClientError> {
        loop {
            match self.try_lead().await {
                Ok(Some(l)) => return Ok(l),
                Ok(None) => {}
                Err(e @ (ClientError::Closed | ClientError::AuthFailed)) => return Err(e),
                Err(ClientError::SessionExpired) if !self.client.recovers() => {
                    return Err(ClientError::SessionExpired)
                }
                Err(e) => {
                    tracing::debug!(error = %e, dir = %self.dir, "campaign round failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    /// One round: Some when we became (or still are) the leader, None when someone else is
    /// and has gone (or changed) since, so the caller should look again.
    async fn try_lead(&self) -> Result<Option<Leadership>, ClientError> {
        let leader = self.leader_path();
        let epoch_path = self.epoch_path();
        ensure_path(&self.client, &self.dir).await?;
        match self
            .client
            .create(
                &epoch_path,
                b"0",
                &open_acl_unsafe(),
                CreateMode::Persistent,
            )
            .await
        {
            Ok(_) | Err(ClientError::Server(ErrorCode::NodeExists)) => {}
            Err(e) => return Err(e),
        }
        // Subscribed before anything is decided, so no state change after it is missed.
        let events = self.client.session_events();
        let session = self.client.session_id();
        if session == 0 {
            return Err(ClientError::ConnectionLoss);
        }
        let (stat, watch) = self.client.exists_w(&leader).await?;
        match stat {
            Some(s) if s.ephemeral_owner == session => {
                // Ours in this session: a lost reply of our own election, or a leadership
                // given up locally while Suspended and then resumed. Nobody can have been
                // elected since (that needs our node gone), so the epoch is still ours.
                let (data, _) = self.client.get_data(&leader).await?;
                let (edata, estat) = self.client.get_data(&epoch_path).await?;
                match (leader_epoch(&data), parse_epoch(&edata)) {
                    (Some(mine), Some(current)) if mine == current => {
                        Ok(Some(self.leadership(mine, estat.version, session, events)))
                    }
                    _ => {
                        let _ = self.client.delete(&leader, s.version).await;
                        Ok(None)
                    }
                }
            }
            Some(s) if self.client.previous_sessions().contains(&s.ephemeral_owner) => {
                // Left by a session of ours that expired client-side before the server
                // noticed: nobody leads through it (we do not), so clear the way now.
                match self.client.delete(&leader, s.version).await {
                    Ok(())
                    | Err(ClientError::Server(ErrorCode::NoNode | ErrorCode::BadVersion)) => {
                        Ok(None)
                    }
                    Err(e) => Err(e),
                }
            }
            Some(_) => {
                // Someone else leads: wait for their node to change or go.
                match watch.await {
                    Ok(_) => Ok(None),
                    Err(e) => Err(e),
                }
            }
            None => {
                let (edata, estat) = self.client.get_data(&epoch_path).await?;
                let epoch = parse_epoch(&edata).unwrap_or(0) + 1;
                let ops = vec![
                    Request::SetData(SetDataRequest {
                        path: epoch_path.clone(),
                        data: Some(epoch.to_string().into_bytes()),
                        version: estat.version,
                    }),
                    Request::Create(CreateRequest {
                        path: leader.clone(),
                        data: Some(leader_data(&self.id, epoch)),
                        acl: open_acl_unsafe(),
                        flags: CreateMode::Ephemeral.code(),
                    }),
                ];
                let results = self.client.multi_in(ops, Some(session)).await?;
                match results.first() {
                    Some(MultiResult::SetData(stat)) => {
                        Ok(Some(self.leadership(epoch, stat.version, session, events)))
                    }
                    // Someone else won the round (NodeExists, BadVersion).
                    _ => Ok(None),
                }
            }
        }
    }

    fn leadership(
        &self,
        epoch: i64,
        epoch_version: i32,
        session_id: i64,
        events: broadcast::Receiver<SessionEvent>,
    ) -> Leadership {
        let (lost_tx, lost_rx) = watch::channel(None);
        let lost_tx = Arc::new(lost_tx);
        let grace = self
            .client
            .session_timeout()
            .mul_f64(self.suspended_fraction);
        let monitor = tokio::spawn(monitor(
            self.client.clone(),
            self.leader_path(),
            session_id,
            grace,
            events,
            lost_tx.clone(),
        ));
        Leadership {
            client: self.client.clone(),
            leader_path: self.leader_path(),
            epoch_path: self.epoch_path(),
            epoch,
            epoch_version,
            session_id,
            lost_tx,
            lost_rx,
            monitor: monitor.abort_handle(),
        }
    }
}

/// Marks the leadership lost (the first reason wins).
fn give_up(tx: &watch::Sender<Option<LeadershipLost>>, why: LeadershipLost) {
    tx.send_if_modified(|cur| {
        if cur.is_none() {
            tracing::info!(?why, "leadership lost");
            *cur = Some(why);
            true
        } else {
            false
        }
    });
}

/// Watches the session and the leader node; gives leadership up when either says so.
async fn monitor(
    client: Client,
    leader: String,
    session_id: i64,
    grace: Duration,
    mut events: broadcast::Receiver<SessionEvent>,
    lost: Arc<watch::Sender<Option<LeadershipLost>>>,
) {
    // The state may have moved between the election and now: start from the latest.
    let st = client.status();
    let mut suspended_until: Option<Instant> = match st.state {
        SessionState::Connected if st.session_id == session_id => None,
        SessionState::Suspended if client.session_id() == session_id => Some(st.at + grace),
        // A read-only server serves a session of its own: ours waits, as if suspended.
        SessionState::ConnectedReadOnly => Some(st.at + grace),
        _ => {
            give_up(&lost, LeadershipLost::Expired);
            return;
        }
    };
    let node_gone = {
        let client = client.clone();
        let lost = lost.clone();
        async move {
            loop {
                match client.exists_w(&leader).await {
                    Ok((Some(s), w)) if s.ephemeral_owner == session_id => {
                        if let Err(ClientError::SessionExpired | ClientError::Closed) = w.await {
                            give_up(&lost, LeadershipLost::Expired);
                            return;
                        }
                    }
                    Ok(_) => {
                        give_up(&lost, LeadershipLost::NodeGone);
                        return;
                    }
                    Err(ClientError::SessionExpired) => {
                        give_up(&lost, LeadershipLost::Expired);
                        return;
                    }
                    Err(ClientError::Closed | ClientError::AuthFailed) => {
                        give_up(&lost, LeadershipLost::Closed);
                        return;
                    }
                    // Connection loss: the session events decide; look again once back.
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        }
    };
    tokio::pin!(node_gone);
    loop {
        let deadline = suspended_until;
        tokio::select! {
            _ = &mut node_gone => return,
            _ = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => {
                give_up(&lost, LeadershipLost::Suspended);
                return;
            }
            ev = events.recv() => {
                let ev = match ev {
                    Ok(ev) => ev,
                    Err(broadcast::error::RecvError::Lagged(_)) => client.status(),
                    Err(broadcast::error::RecvError::Closed) => {
                        give_up(&lost, LeadershipLost::Closed);
                        return;
                    }
                };
                match ev.state {
                    SessionState::Suspended | SessionState::ConnectedReadOnly => {
                        suspended_until.get_or_insert(ev.at + grace);
                    }
                    SessionState::Connected if ev.session_id == session_id => {
                        suspended_until = None;
                    }
                    SessionState::Connecting => {}
                    SessionState::Closed | SessionState::AuthFailed => {
                        give_up(&lost, LeadershipLost::Closed);
                        return;
                    }
                    SessionState::Connected | SessionState::Expired => {
                        give_up(&lost, LeadershipLost::Expired);
                        return;
                    }
                }
                if grace.is_zero() && suspended_until.is_some() {
                    give_up(&lost, LeadershipLost::Suspended);
                    return;
                }
            }
        }
    }
}

/// Leadership won by [`LeaderElection::campaign`]: an epoch, and the fenced writes that
/// only succeed while no later leader exists. Dropping it stops the monitoring but leaves
/// the leader node (call [`Leadership::resign`] to step down for others).
#[derive(Debug)]
pub struct Leadership {
    client: Client,
    leader_path: String,
    epoch_path: String,
    epoch: i64,
    epoch_version: i32,
    session_id: i64,
    lost_tx: Arc<watch::Sender<Option<LeadershipLost>>>,
    lost_rx: watch::Receiver<Option<LeadershipLost>>,
    monitor: AbortHandle,
}

impl Leadership {
    /// The fencing token: this leadership's epoch (1 for the first leader of a directory).
    pub fn epoch(&self) -> i64 {
        self.epoch
    }

    /// The session the leadership lives in.
    pub fn session_id(&self) -> i64 {
        self.session_id
    }

    /// Whether this participant still leads as far as it knows. A fenced write is the only
    /// proof: it fails on the server once another leader has been elected.
    pub fn is_leader(&self) -> bool {
        self.lost_rx.borrow().is_none() && self.client.session_id() == self.session_id
    }

    /// Why the leadership ended, if it has.
    pub fn lost_reason(&self) -> Option<LeadershipLost> {
        *self.lost_rx.borrow()
    }

    /// Resolves when the leadership ends, with the reason.
    pub async fn lost(&self) -> LeadershipLost {
        let mut rx = self.lost_rx.clone();
        let why = match rx.wait_for(Option::is_some).await {
            Ok(v) => v.unwrap_or(LeadershipLost::Closed),
            Err(_) => LeadershipLost::Closed,
        };
        why
    }

    /// Runs `ops` atomically behind a check that the epoch node is still at this
    /// leadership's version, in this leadership's session only. Fails with
    /// [`ClientError::NotLeader`] (and the leadership is over) when the check fails or the
    /// leadership was already given up; the results returned are those of `ops`.
    pub async fn fenced_multi(&self, ops: Vec<Request>) -> Result<Vec<MultiResult>, ClientError> {
        if !self.is_leader() {
            return Err(ClientError::NotLeader);
        }
        let mut all = Vec::with_capacity(ops.len() + 1);
        all.push(Request::Check(CheckVersionRequest {
            path: self.epoch_path.clone(),
            version: self.epoch_version,
        }));
        all.extend(ops);
        let mut results = match self.client.multi_in(all, Some(self.session_id)).await {
            Ok(r) => r,
            Err(ClientError::SessionExpired) => {
                give_up(&self.lost_tx, LeadershipLost::Expired);
                return Err(ClientError::NotLeader);
            }
            Err(e) => return Err(e),
        };
        if let Some(MultiResult::Error(code)) = results.first() {
            if *code != ErrorCode::Ok && *code != ErrorCode::RuntimeInconsistency {
                give_up(&self.lost_tx, LeadershipLost::Fenced);
                return Err(ClientError::NotLeader);
            }
        }
        if results.is_empty() {
            return Err(ClientError::UnexpectedResponse(
                "empty multi result".to_string(),
            ));
        }
        results.remove(0);
        Ok(results)
    }

    /// A fenced setData (see [`Leadership::fenced_multi`]); a failure of the setData itself
    /// is returned as its server error.
    pub async fn fenced_set_data(
        &self,
        path: &str,
        data: &[u8],
        version: i32,
    ) -> Result<corral_proto::Stat, ClientError> {
        let r = self
            .fenced_multi(vec![Request::SetData(SetDataRequest {
                path: path.to_string(),
                data: Some(data.to_vec()),
                version,
            })])
            .await?;
        match r.into_iter().next() {
            Some(MultiResult::SetData(stat)) => Ok(stat),
            Some(MultiResult::Error(code)) => Err(ClientError::Server(code)),
            other => Err(ClientError::UnexpectedResponse(format!("{other:?}"))),
        }
    }

    /// Steps down: deletes the leader node (if still ours) so another participant can lead.
    pub async fn resign(self) -> Result<(), ClientError> {
        give_up(&self.lost_tx, LeadershipLost::Resigned);
        match self.client.exists(&self.leader_path).await? {
            Some(s) if s.ephemeral_owner == self.session_id => {
                match self.client.delete(&self.leader_path, s.version).await {
                    Ok(()) | Err(ClientError::Server(ErrorCode::NoNode)) => Ok(()),
                    Err(e) => Err(e),
                }
            }
            _ => Ok(()),
        }
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.monitor.abort();
    }
}

impl Client {
    /// Shorthand for [`LeaderElection::new`].
    pub fn leader_election(&self, dir: &str, id: &str) -> LeaderElection {
        LeaderElection::new(self, dir, id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leader_data_round_trip() {
        assert_eq!(leader_epoch(&leader_data("broker-1", 42)), Some(42));
        assert_eq!(leader_epoch(b"x"), None);
        assert_eq!(parse_epoch(b"7"), Some(7));
        assert_eq!(parse_epoch(b""), None);
    }
}
