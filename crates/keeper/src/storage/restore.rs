//! Start-up's snapshot restore on two threads.
//!
//! Owns: decoding a snapshot into a tree with the parsing (this thread) beside the building
//! (a second one), using corral-tree's staged restore. Must not: decide anything about the
//! bytes; every check is corral-tree's, and the result equals [`DataTree::decode_snapshot`]'s.
//!
//! Why: start-up of a big keeper waits for the restore, and reading and checking the records
//! takes about as long as inserting them. With one thread, 1M znodes took 1.7-3.4 s; with two,
//! 1.0-1.4 s (4 interleaved restarts each on 2 vCPUs).

use std::sync::mpsc;

use corral_tree::{DataTree, RestoredNode};

/// Records handed to the builder at a time, and batches queued for it.
const BATCH: usize = 4096;
const BATCHES_IN_FLIGHT: usize = 4;

/// Why a snapshot did not become a tree.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotDecodeError {
    /// The bytes: corral-tree's checks, the same error [`DataTree::decode_snapshot`] gives.
    #[error(transparent)]
    Tree(#[from] corral_tree::CodecError),
    #[error("cannot start a thread to restore the snapshot: {0}")]
    Thread(#[source] std::io::Error),
    #[error("the snapshot builder thread panicked")]
    BuilderPanicked,
}

/// [`DataTree::decode_snapshot`] on two threads. On damage, the same error: the builder's if
/// it found one (it gets every record before a parse error, so its error comes first in the
/// file), else the parser's.
pub(crate) fn decode_snapshot(bytes: &[u8]) -> Result<DataTree, SnapshotDecodeError> {
    let (tree, mut records) = DataTree::begin_restore(bytes)?;
    let (built, parsed) = std::thread::scope(|scope| {
        let (tx, rx) = mpsc::sync_channel::<Vec<RestoredNode>>(BATCHES_IN_FLIGHT);
        let builder = std::thread::Builder::new()
            .name("corral-builder".into())
            .spawn_scoped(scope, move || {
                let mut tree = tree;
                for batch in rx {
                    for node in batch {
                        tree.restore_node(node)?;
                    }
                }
                Ok::<_, corral_tree::CodecError>(tree)
            })
            .map_err(SnapshotDecodeError::Thread)?;
        let mut batch = Vec::with_capacity(BATCH);
        let mut parsed = Ok(());
        for record in records.by_ref() {
            match record {
                Ok(node) => batch.push(node),
                Err(e) => {
                    parsed = Err(e);
                    break;
                }
            }
            if batch.len() == BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                if tx.send(full).is_err() {
                    // The builder stopped at an error, which it reports.
                    break;
                }
            }
        }
        let _ = tx.send(batch);
        drop(tx);
        let built = builder
            .join()
            .map_err(|_| SnapshotDecodeError::BuilderPanicked)?;
        Ok::<_, SnapshotDecodeError>((built, parsed))
    })?;
    let tree = built?;
    parsed?;
    records.finish()?;
    Ok(tree.finish_restore()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_proto::{CreateRequest, Jute, Request, Stat, Writer};
    use corral_tree::{acl, CodecError, Entry, EntryOp, Inconsistency, TreeConfig};

    fn tree_of(n: usize) -> DataTree {
        let mut tree = DataTree::new(TreeConfig::default());
        for zxid in 1..=n as i64 {
            let e = Entry {
                session_id: 0,
                time_ms: zxid,
                identities: vec![],
                op: EntryOp::Request(Request::Create(CreateRequest {
                    path: format!("/c{zxid:05}"),
                    data: Some(vec![b'x'; 10]),
                    acl: acl::open_acl_unsafe(),
                    flags: 0,
                })),
            };
            tree.apply(zxid, &e);
        }
        tree
    }

    /// `snap` with one more node record at its end.
    fn with_extra_node(snap: &[u8], nodes: usize, path: &str) -> Vec<u8> {
        let mut count_then_root = (nodes as i64).to_be_bytes().to_vec();
        count_then_root.extend_from_slice(&1i32.to_be_bytes());
        count_then_root.push(b'/');
        let at = snap
            .windows(count_then_root.len())
            .position(|w| w == count_then_root)
            .expect("the node count before the root's record");
        let mut out = snap.to_vec();
        out[at..at + 8].copy_from_slice(&(nodes as i64 + 1).to_be_bytes());
        let mut w = Writer::new();
        w.string(path);
        w.nullable_buffer(&Some(Vec::new()));
        w.i32(0);
        Stat::default().write(&mut w);
        out.extend_from_slice(&w.buf);
        out
    }

    #[test]
    fn two_threads_restore_what_one_does_and_fail_the_same_way() {
        // Several batches, the last one partial.
        let tree = tree_of(3 * BATCH + 17);
        let snap = tree.encode_snapshot();
        let restored = decode_snapshot(&snap).expect("restores");
        assert_eq!(restored, tree);
        assert_eq!(restored.encode_snapshot(), snap);

        let nodes = tree.node_count();
        // Found by the builder, after several batches: a node without its parent.
        let orphan = with_extra_node(&snap, nodes, "/zzz/orphan");
        let tree_error = |e| match e {
            SnapshotDecodeError::Tree(e) => e,
            e => panic!("not the tree's error: {e}"),
        };
        let e = tree_error(decode_snapshot(&orphan).unwrap_err());
        assert_eq!(
            e,
            CodecError::Inconsistent(Inconsistency::NoParent("/zzz/orphan".into()))
        );
        assert!(
            e.to_string().contains("\"/zzz/orphan\" has no parent"),
            "{e}"
        );
        assert_eq!(e, DataTree::decode_snapshot(&orphan).unwrap_err());
        // Found by the parser: a record out of order.
        let late = with_extra_node(&snap, nodes, "/c00001/late");
        let e = tree_error(decode_snapshot(&late).unwrap_err());
        assert!(e.to_string().contains("out of order"), "{e}");
        assert_eq!(e, DataTree::decode_snapshot(&late).unwrap_err());
        // Cut short: the last records are missing.
        let e = tree_error(decode_snapshot(&snap[..snap.len() - 40]).unwrap_err());
        assert_eq!(
            e,
            DataTree::decode_snapshot(&snap[..snap.len() - 40]).unwrap_err()
        );
    }
}
