//! Housekeeping on the leader: empty containers and expired TTL nodes are deleted, as
//! ZooKeeper's ContainerManager does (every `znode.container.checkIntervalMs`, default one
//! minute). Candidates are chosen here and re-checked when the entry is applied, so a node
//! that gained a child meanwhile survives. Must not: delete anything but through the log.

use std::sync::Arc;
use std::time::Duration;

use corral_tree::{Entry, EntryOp};
use tracing::warn;

use crate::shared::{now_ms, Shared};

/// ZooKeeper's default `znode.container.checkIntervalMs`.
pub const CONTAINER_CHECK_INTERVAL: Duration = Duration::from_secs(60);

pub(crate) async fn run(keeper: Arc<Shared>) {
    loop {
        tokio::select! {
            _ = keeper.shutting_down() => return,
            _ = tokio::time::sleep(CONTAINER_CHECK_INTERVAL) => {}
        }
        if !keeper.is_leader() {
            continue;
        }
        let now = now_ms();
        let candidates = keeper.state().tree.container_and_ttl_candidates(now);
        if candidates.is_empty() {
            continue;
        }
        let entry = Entry {
            session_id: 0,
            time_ms: now,
            identities: Vec::new(),
            op: EntryOp::PurgeContainersAndTtl { candidates },
        };
        if let Err(e) = keeper.propose_as_leader(entry).await {
            warn!("container/TTL cleanup failed: {e}");
        }
    }
}
