//! Times snapshot encoding and decoding of a tree shaped like bench/snapshot-latency.sh's
//! (N znodes of 100 bytes, 1000 per parent). Figures to read, not a test.
//!
//! ```text
//! cargo run --release -p corral-tree --example snapshot_timing -- 1000000            # in one process
//! cargo run --release -p corral-tree --example snapshot_timing -- 1000000 /tmp/snap  # write a snapshot
//! cargo run --release -p corral-tree --example snapshot_timing -- /tmp/snap          # decode it fresh
//! ```
//!
//! Decoding in a fresh process is what start-up pays: there every page the tree needs is
//! new to the process, and on a VM faulting those pages in is a large share of the time.

use std::time::Instant;

use corral_proto::{CreateRequest, Request};
use corral_tree::{acl, DataTree, Entry, EntryOp, TreeConfig};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(first) = args.first() else {
        eprintln!("usage: snapshot_timing N [FILE] | FILE");
        std::process::exit(2);
    };
    let Ok(n) = first.parse::<usize>() else {
        decode_file(first);
        return;
    };
    let tree = build(n);
    if let Some(file) = args.get(1) {
        if let Err(e) = std::fs::write(file, tree.encode_snapshot()) {
            eprintln!("{file}: {e}");
            std::process::exit(1);
        }
        return;
    }
    for _ in 0..3 {
        let t = Instant::now();
        let bytes = tree.encode_snapshot();
        eprintln!("encode: {:?} ({} bytes)", t.elapsed(), bytes.len());
        let t = Instant::now();
        match DataTree::decode_snapshot(&bytes) {
            Ok(back) => eprintln!("decode: {:?} ({} nodes)", t.elapsed(), back.node_count()),
            Err(e) => eprintln!("decode failed: {e}"),
        }
    }
}

fn decode_file(file: &str) {
    let t = Instant::now();
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{file}: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("read: {:?}", t.elapsed());
    let t = Instant::now();
    match DataTree::decode_snapshot(&bytes) {
        Ok(back) => eprintln!(
            "decode in a fresh process: {:?} ({} nodes)",
            t.elapsed(),
            back.node_count()
        ),
        Err(e) => eprintln!("decode failed: {e}"),
    }
}

fn build(n: usize) -> DataTree {
    let mut tree = DataTree::new(TreeConfig::default());
    let mut zxid = 0;
    let mut create = |tree: &mut DataTree, path: String| {
        zxid += 1;
        let e = Entry {
            session_id: 0,
            time_ms: zxid,
            identities: vec![],
            op: EntryOp::Request(Request::Create(CreateRequest {
                path,
                data: Some(vec![b'x'; 100]),
                acl: acl::open_acl_unsafe(),
                flags: 0,
            })),
        };
        tree.apply(zxid, &e);
    };
    let t = Instant::now();
    create(&mut tree, "/corral-bench".into());
    for i in 0..n {
        if i % 1000 == 0 {
            create(&mut tree, format!("/corral-bench/a{:04}", i / 1000));
        }
        create(
            &mut tree,
            format!("/corral-bench/a{:04}/b{:07}", i / 1000, i),
        );
    }
    eprintln!("build {} nodes: {:?}", tree.node_count(), t.elapsed());
    tree
}
