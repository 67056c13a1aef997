//! The lock recipe: sequential ephemeral nodes under a directory, the lowest holds the lock,
//! each waiter watches only the node just before its own (no herd effect: one release wakes
//! one waiter).
//!
//! Owns: [`Lock`] and [`LockGuard`]. A lock node is a plain ephemeral, not an
//! [`crate::EphemeralNode`]: after an expiry the lock is lost and must not come back by
//! itself. A create whose reply was lost is found again by the random prefix in its name (a
//! lost create may have happened; a second node of ours would deadlock the lock).
//!
//! Must not: keep waiting in a session other than the one its node lives in.

use corral_proto::{CreateMode, ErrorCode};

use crate::client::{random, Client};
use crate::{open_acl_unsafe, ClientError, SessionState};

/// Creates `path` and its missing parents as empty persistent nodes (existing ones are fine).
pub(crate) async fn ensure_path(client: &Client, path: &str) -> Result<(), ClientError> {
    if path == "/" || client.exists(path).await?.is_some() {
        return Ok(());
    }
    let mut at = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        at.push('/');
        at.push_str(part);
        match client
            .create(&at, b"", &open_acl_unsafe(), CreateMode::Persistent)
            .await
        {
            Ok(_) | Err(ClientError::Server(ErrorCode::NodeExists)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The sequence number ZooKeeper appended to a sequential node's name (its last 10 digits).
pub(crate) fn sequence(name: &str) -> Option<i64> {
    let digits = name.get(name.len().checked_sub(10)?..)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn join(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// A distributed mutual-exclusion lock on a directory. Every contender creates a sequential
/// ephemeral `lock-<random>-<seq>` under it; the lowest sequence holds the lock.
#[derive(Debug, Clone)]
pub struct Lock {
    client: Client,
    dir: String,
}

/// A held lock. Released by [`LockGuard::release`]; dropping the guard also releases it (in
/// a background task), and an expiry of the session releases it on the server.
#[derive(Debug)]
pub struct LockGuard {
    client: Client,
    path: String,
    session_id: i64,
    woken: u32,
    released: bool,
}

impl Lock {
    /// A lock on `dir` (chroot-relative; created with its parents when missing).
    pub fn new(client: &Client, dir: &str) -> Lock {
        Lock {
            client: client.clone(),
            dir: dir.to_string(),
        }
    }

    /// Waits until this client holds the lock. Fails with SessionExpired when the session
    /// ends while waiting (the node went with it; call again to queue anew).
    pub async fn acquire(&self) -> Result<LockGuard, ClientError> {
        ensure_path(&self.client, &self.dir).await?;
        let prefix = format!("lock-{:016x}-", random());
        let session_id = self.client.session_id();
        let ours = self.create_ours(&prefix).await?;
        match self.wait_turn(&ours, session_id).await {
            Ok(woken) => Ok(LockGuard {
                client: self.client.clone(),
                path: join(&self.dir, &ours),
                session_id,
                woken,
                released: false,
            }),
            Err(e) => {
                // Best effort: leave no node that would block the others until our session
                // ends.
                let _ = self.client.delete(&join(&self.dir, &ours), -1).await;
                Err(e)
            }
        }
    }

    /// Creates our node; returns its name.
    async fn create_ours(&self, prefix: &str) -> Result<String, ClientError> {
        for _ in 0..5 {
            match self
                .client
                .create(
                    &join(&self.dir, prefix),
                    b"",
                    &open_acl_unsafe(),
                    CreateMode::EphemeralSequential,
                )
                .await
            {
                Ok(path) => {
                    let name = path.rsplit('/').next().unwrap_or(&path).to_string();
                    return Ok(name);
                }
                Err(ClientError::ConnectionLoss) => {
                    // The create may have happened: look for it before trying again.
                    if let Ok(children) = self.client.get_children(&self.dir).await {
                        if let Some(n) = children.into_iter().find(|c| c.starts_with(prefix)) {
                            return Ok(n);
                        }
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(ClientError::ConnectionLoss)
    }

    /// Waits until `ours` is the lowest; returns how many times a watch woke us.
    async fn wait_turn(&self, ours: &str, session_id: i64) -> Result<u32, ClientError> {
        let our_seq = sequence(ours).ok_or_else(|| {
            ClientError::UnexpectedResponse(format!("sequential name without sequence: {ours}"))
        })?;
        let mut woken = 0;
        loop {
            if self.client.session_id() != session_id {
                return Err(ClientError::SessionExpired);
            }
            let children = self.client.get_children(&self.dir).await?;
            let mut contenders: Vec<(i64, String)> = children
                .into_iter()
                .filter(|c| c.starts_with("lock-"))
                .filter_map(|c| sequence(&c).map(|s| (s, c)))
                .collect();
            contenders.sort();
            if !contenders.iter().any(|(_, c)| c == ours) {
                // Our node is gone: only our session's end removes it.
                return Err(ClientError::SessionExpired);
            }
            let Some((_, before)) = contenders.iter().rev().find(|(s, _)| *s < our_seq) else {
                return Ok(woken);
            };
            let (stat, watch) = self.client.exists_w(&join(&self.dir, before)).await?;
            if stat.is_none() {
                continue; // gone between the listing and the watch
            }
            watch.await?;
            woken += 1;
        }
    }
}

impl LockGuard {
    /// The lock node's path (chroot-relative).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// How many times the waiter was woken before it got the lock (1 per predecessor that
    /// went away; never the whole queue).
    pub fn woken(&self) -> u32 {
        self.woken
    }

    /// Whether the lock is still held as far as this client knows: its session is the one
    /// the lock was taken in and it is connected. (While Suspended the server may already
    /// have expired the session: this answers false.)
    pub fn is_held(&self) -> bool {
        let st = self.client.status();
        !self.released && st.session_id == self.session_id && st.state == SessionState::Connected
    }

    /// Releases the lock (deletes its node).
    pub async fn release(mut self) -> Result<(), ClientError> {
        self.released = true;
        match self.client.delete(&self.path, -1).await {
            Ok(()) | Err(ClientError::Server(ErrorCode::NoNode)) => Ok(()),
            Err(ClientError::SessionExpired) => Ok(()), // the node went with the session
            Err(e) => Err(e),
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if self.released || self.client.session_id() != self.session_id {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let client = self.client.clone();
            let path = std::mem::take(&mut self.path);
            rt.spawn(async move {
                let _ = client.delete(&path, -1).await;
            });
        }
    }
}

impl Client {
    /// Shorthand for [`Lock::new`].
    pub fn lock(&self, dir: &str) -> Lock {
        Lock::new(self, dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers() {
        assert_eq!(sequence("lock-abc-0000000042"), Some(42));
        assert_eq!(sequence("lock-abc-00000000x2"), None);
        assert_eq!(sequence("short"), None);
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("/d", "a"), "/d/a");
    }
}
