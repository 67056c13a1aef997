//! Turns the replayed ZooKeeper tree into corral's: a [`DataTree`] with every znode's data,
//! ACL and stat as ZooKeeper kept them, and every session with the password ZooKeeper
//! derives from its id; then writes it as the snapshot of a fresh one-voter group
//! ([`crate::consensus::write_initial_state`]). Must not: touch ZooKeeper's files.

use corral_proto::Stat;
use corral_tree::{DataTree, TreeConfig};

use super::replay::ZkTree;
use super::ImportError;
use crate::consensus::{write_initial_state, StorageConfig};

/// ZooKeeper's "superSecret", mixed into the seed of a session's password.
const SUPER_SECRET: i64 = 0xB341_5C00;

/// The password ZooKeeper gives session `session_id`: it never stores passwords, but
/// derives each from the id with `java.util.Random(id ^ 0xB3415C00).nextBytes(16 bytes)`.
/// java.util.Random is a documented 48-bit linear congruential generator; nextBytes takes
/// 32-bit outputs and spends each low byte first.
pub fn zk_session_password(session_id: i64) -> [u8; 16] {
    const MULTIPLIER: u64 = 0x5_DEEC_E66D;
    const ADDEND: u64 = 0xB;
    const MASK: u64 = (1 << 48) - 1;
    let mut seed = ((session_id ^ SUPER_SECRET) as u64 ^ MULTIPLIER) & MASK;
    let mut out = [0u8; 16];
    for chunk in out.chunks_mut(4) {
        seed = seed.wrapping_mul(MULTIPLIER).wrapping_add(ADDEND) & MASK;
        let mut word = (seed >> 16) as u32;
        for b in chunk {
            *b = word as u8;
            word >>= 8;
        }
    }
    out
}

/// corral's tree for `zk`. Stats carry over field for field: ZooKeeper's persisted
/// cversion is already the count of child creations that corral stores (both report
/// `2 * cversion - numChildren` and take the sequential suffix from it).
pub(crate) fn to_data_tree(zk: &ZkTree) -> Result<DataTree, ImportError> {
    let sessions = zk
        .sessions
        .iter()
        .map(|(&id, &timeout)| (id, timeout, zk_session_password(id).to_vec()))
        .collect();
    let nodes = zk.nodes.iter().map(|(path, n)| {
        let stat = Stat {
            czxid: n.stat.czxid,
            mzxid: n.stat.mzxid,
            ctime: n.stat.ctime,
            mtime: n.stat.mtime,
            version: n.stat.version,
            cversion: n.stat.cversion,
            aversion: n.stat.aversion,
            ephemeral_owner: n.stat.ephemeral_owner,
            data_length: n.data.as_ref().map_or(0, |d| d.len()) as i32,
            num_children: 0,
            pzxid: n.stat.pzxid,
        };
        (path.clone(), n.data.clone(), n.acl.clone(), stat)
    });
    // The configuration is not kept: the keeper replaces it with its own at start.
    DataTree::from_parts(TreeConfig::default(), sessions, zk.last_zxid, nodes)
        .map_err(ImportError::Tree)
}

/// Writes `tree` as corral's initial state in `dest`; the snapshot's size in bytes.
pub(crate) fn write_corral_state(
    tree: &DataTree,
    dest: &StorageConfig,
) -> Result<u64, ImportError> {
    let last =
        u64::try_from(tree.last_zxid()).map_err(|_| ImportError::NegativeZxid(tree.last_zxid()))?;
    write_initial_state(dest, last, |sink| tree.write_snapshot(1 << 20, sink))
        .map_err(ImportError::Write)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// Expected values printed by real Java (OpenJDK 17):
    /// `new java.util.Random(id ^ 0xB3415C00L).nextBytes(p)` for a 16-byte `p`.
    #[test]
    fn passwords_match_javas_random() {
        for (id, want) in [
            (0i64, "f22acd4a97e69d6d20a49bb638eadb38"),
            // Only the low 48 bits of the seed count.
            (1 << 56, "f22acd4a97e69d6d20a49bb638eadb38"),
            (-1, "20f62cb5648dc2d771471c8a2486a9ee"),
            (1_234_567_890_123, "40b51d0074cd652e16c884a0cf746290"),
            (0x0100_002f_5e6a_0003, "f1be6e90a1df50398d59e4bb1f2f3436"),
            (i64::MAX, "20f62cb5648dc2d771471c8a2486a9ee"),
        ] {
            assert_eq!(hex(&zk_session_password(id)), want, "session {id:#x}");
        }
    }

    /// A replayed tree corral-tree refuses keeps corral-tree's error as the source.
    #[test]
    fn an_orphan_node_is_a_tree_error_with_corral_trees_cause() {
        let mut zk = ZkTree::empty();
        let root = zk.nodes.get("/").map(|n| n.acl.clone()).unwrap();
        zk.nodes.insert(
            "/missing/child".to_string(),
            super::super::replay::ZNode {
                data: None,
                acl: root,
                stat: Default::default(),
            },
        );
        let e = to_data_tree(&zk).err().unwrap();
        let msg = e.to_string();
        assert!(matches!(e, ImportError::Tree(_)), "{msg}");
        assert!(
            msg.starts_with("the imported tree is not consistent: ") && msg.contains("/missing"),
            "{msg}"
        );
    }

    #[test]
    fn a_negative_last_zxid_is_refused_before_anything_is_written() {
        let mut zk = ZkTree::empty();
        zk.last_zxid = -5;
        let tree = to_data_tree(&zk).unwrap();
        let dir = crate::storage::wal::tests::TestDir::new("import-negative");
        let dest = StorageConfig::new(dir.path().join("data"));
        let e = write_corral_state(&tree, &dest).err().unwrap();
        assert!(matches!(e, ImportError::NegativeZxid(-5)), "{e}");
        assert!(!dir.path().join("data").exists(), "nothing written");
    }
}
