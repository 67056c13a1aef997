//! Snapshot store tests: round trips, damage named by file and offset, retention and the
//! spare, streamed and throttled writes, clean-up of what a crash left.

use super::*;
use crate::storage::wal::tests::TestDir;

#[test]
fn names_round_trip() {
    assert_eq!(snapshot_name(7), "snapshot.00000000000000000007");
    assert_eq!(parse_name(&snapshot_name(u64::MAX)), Some(u64::MAX));
    assert_eq!(parse_name("snapshot.7"), None);
    assert_eq!(parse_name("snapshot.00000000000000000007.tmp"), None);
    assert_eq!(parse_name("00000000000000000007.log"), None);
    // Twenty digits, but past u64.
    assert_eq!(parse_name("snapshot.99999999999999999999"), None);
}

#[test]
fn snapshot_writes_are_held_to_the_configured_rate() {
    let d = TestDir::new("snap-rate");
    // 2 MB at 4 MB/s: at least half a second, whatever the disk's speed.
    let s = SnapshotStore::open(d.path())
        .unwrap()
        .with_write_rate(Some(4_000_000));
    let payload = vec![7u8; 2_000_000];
    let t = std::time::Instant::now();
    s.write(1, b"m", &payload).unwrap();
    let took = t.elapsed();
    assert!(took >= std::time::Duration::from_millis(450), "{took:?}");
    assert_eq!(s.load(1).unwrap().payload(), payload);
}

#[test]
fn write_load_retain() {
    let d = TestDir::new("snap");
    let s = SnapshotStore::open(d.path()).unwrap();
    for i in [5u64, 10, 15, 20] {
        s.write(i, format!("meta{i}").as_bytes(), &vec![i as u8; 1000])
            .unwrap();
    }
    assert!(d.path().join("snapshot.00000000000000000020").exists());
    assert_eq!(s.list().unwrap(), vec![20, 15, 10, 5]);
    let l = s.load(15).unwrap();
    assert_eq!(l.meta, b"meta15");
    assert_eq!(l.payload(), vec![15u8; 1000]);
    assert_eq!(s.retain(3).unwrap(), Some(10));
    assert_eq!(s.list().unwrap(), vec![20, 15, 10]);
    assert!(
        d.path().join(SPARE).exists(),
        "the purged snapshot is kept as the spare"
    );

    // Damage is reported with file and offset.
    let p = s.path_of(20);
    let mut b = fs::read(&p).unwrap();
    let n = b.len();
    b[n - 1] ^= 1;
    fs::write(&p, &b).unwrap();
    // The payload starts after the 20-byte head, "meta20" and its length and checksum.
    let payload_at = 20 + 6 + 12;
    let e = s.load(20).unwrap_err();
    assert!(
        matches!(&e, SnapshotLoadError::Damaged { path, offset, damage: Damage::PayloadChecksum }
            if *path == p && *offset == payload_at),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("payload checksum mismatch at byte offset 38")
            && msg.contains(&p.display().to_string()),
        "{msg}"
    );
    fs::write(&p, &b[..n / 2]).unwrap();
    let e = s.load(20).unwrap_err();
    assert!(
        matches!(e, SnapshotLoadError::Damaged { offset, damage: Damage::EndsEarly, .. }
            if offset == payload_at),
        "{e:?}"
    );
    assert!(e.to_string().contains("file ends early"), "{e}");
    let gone = s.path_of(21);
    assert!(matches!(s.load(21).unwrap_err(), SnapshotLoadError::Io { path, .. } if path == gone));

    // Leftover temp files and interrupted deletions vanish on open.
    fs::write(d.path().join("snapshot.00000000000000000099.tmp"), b"x").unwrap();
    fs::write(
        d.path().join("snapshot.00000000000000000001.deleting"),
        b"x",
    )
    .unwrap();
    let s = SnapshotStore::open(d.path()).unwrap();
    assert_eq!(s.list().unwrap(), vec![20, 15, 10]);
    assert_eq!(
        fs::read_dir(d.path()).unwrap().count(),
        4,
        "3 snapshots and the spare"
    );

    // A streamed payload reads back whole, its length and checksum filled in at the end.
    let pieces: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 300_000]).collect();
    s.write_with(30, b"m30", |sink| pieces.iter().try_for_each(|p| sink(p)))
        .unwrap();
    assert_eq!(s.load(30).unwrap().payload(), pieces.concat());
    let (mut f, start) = s.open_payload(30).unwrap();
    let mut rest = Vec::new();
    f.read_to_end(&mut rest).unwrap();
    assert_eq!((rest, start), (pieces.concat(), 20 + 3 + 12));
    assert!(
        !d.path().join(SPARE).exists(),
        "the new snapshot took the spare"
    );
    // A producer that fails leaves nothing behind.
    let e = s
        .write_with(40, b"m40", |sink| {
            sink(b"partial")?;
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
    assert!(e.to_string().contains("disk full"), "{e}");
    assert_eq!(s.list().unwrap(), vec![30, 20, 15, 10]);
    assert_eq!(fs::read_dir(d.path()).unwrap().count(), 4);
}

#[test]
fn retired_snapshots_are_overwritten_unless_being_read() {
    let d = TestDir::new("spare");
    let s = SnapshotStore::open(d.path()).unwrap();
    let big = vec![7u8; 3 << 20];
    s.write(1, b"m1", &big).unwrap();
    s.write(2, b"m2", &[2u8; 5000]).unwrap();
    assert_eq!(s.retain(1).unwrap(), Some(2));
    let spare = d.path().join(SPARE);
    let spare_len = fs::metadata(&spare).unwrap().len();
    assert_eq!(
        s.total_bytes(),
        spare_len + fs::metadata(s.path_of(2)).unwrap().len()
    );

    // A smaller snapshot written over the larger spare is cut to its own length.
    s.write(3, b"m3", &[3u8; 1000]).unwrap();
    assert!(!spare.exists());
    assert_eq!(
        fs::metadata(s.path_of(3)).unwrap().len(),
        20 + 2 + 12 + 1000
    );
    assert_eq!(s.load(3).unwrap().payload(), vec![3u8; 1000]);

    // A snapshot being read is deleted, not overwritten: the reader keeps its bytes.
    let (mut reader, _) = s.open_payload(2).unwrap();
    s.write(4, b"m4", &big).unwrap();
    assert_eq!(s.retain(2).unwrap(), Some(3));
    assert!(
        !spare.exists(),
        "a snapshot being read must not become the spare"
    );
    s.write(5, b"m5", &big).unwrap();
    let mut read = Vec::new();
    reader.read_to_end(&mut read).unwrap();
    assert_eq!(read, vec![2u8; 5000]);
    drop(reader);
    assert_eq!(s.retain(1).unwrap(), Some(5));
    assert!(spare.exists());
    assert_eq!(s.list().unwrap(), vec![5]);
    assert!(
        s.open_payload(3).is_err(),
        "a purged snapshot cannot be opened"
    );
}
