//! WAL tests: round trips across segments, group commit, truncation, purge, recovery from torn
//! tails and refusal of mid-log corruption, preallocation failure.

use super::*;
use std::fs::{self, OpenOptions};
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

/// A directory under the system temp dir, removed on drop.
pub(crate) struct TestDir(PathBuf);

impl TestDir {
    pub(crate) fn new(tag: &str) -> TestDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "corral-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        TestDir(p)
    }
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn opts(dir: &Path, segment_bytes: u64) -> WalOptions {
    WalOptions {
        dir: dir.to_path_buf(),
        segment_bytes,
        force_sync: true,
        fsync_warning: std::time::Duration::from_secs(1),
        prealloc_fault: None,
    }
}

/// Records as `(log index, body)`.
type Records = Vec<(u64, Vec<u8>)>;

fn framed(records: Records) -> Vec<Record> {
    records
        .into_iter()
        .map(|(i, b)| Record::encode(i, b.len(), |o| o.extend_from_slice(&b)).unwrap())
        .collect()
}

fn open_collect(o: WalOptions) -> Result<(Wal, Records), WalError> {
    let mut seen = Vec::new();
    let wal = Wal::open(o, |i, b| {
        seen.push((i, b.to_vec()));
        Ok(())
    })?;
    Ok((wal, seen))
}

fn body(i: u64) -> Vec<u8> {
    format!("entry-{i}-{}", "x".repeat((i % 7) as usize)).into_bytes()
}

/// Appends and waits for the ack.
fn append_sync(wal: &Wal, records: Records) -> io::Result<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    wal.append(framed(records), Box::new(move |r| tx.send(r).unwrap()));
    rx.recv_timeout(Duration::from_secs(10)).unwrap()
}

/// The body read back at `index`.
fn read(wal: &Wal, index: u64) -> Option<Vec<u8>> {
    wal.read(index).unwrap().map(|b| b.to_vec())
}

fn segments(dir: &Path) -> Vec<u64> {
    let mut v: Vec<u64> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| segment::parse_segment_name(e.unwrap().file_name().to_str()?))
        .collect();
    v.sort();
    v
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

#[test]
fn append_and_read_back_across_segments() {
    let d = TestDir::new("wal-rw");
    let (wal, seen) = open_collect(opts(d.path(), 512)).unwrap();
    assert!(seen.is_empty());
    for chunk in (1..=200u64).collect::<Vec<_>>().chunks(9) {
        append_sync(&wal, chunk.iter().map(|&i| (i, body(i))).collect()).unwrap();
    }
    for i in 1..=200 {
        assert_eq!(read(&wal, i), Some(body(i)), "index {i}");
    }
    assert_eq!(read(&wal, 201), None);
    assert_eq!(wal.written_upto(), Some(200));
    drop(wal);
    let segs = segments(d.path());
    assert!(segs.len() > 5, "{segs:?}");
    assert_eq!(segs[0], 1);
    assert!(d.path().join("00000000000000000001.log").exists());

    let (wal, seen) = open_collect(opts(d.path(), 512)).unwrap();
    assert_eq!(seen, (1..=200).map(|i| (i, body(i))).collect::<Vec<_>>());
    // Appending continues where the log ended, in the last segment's remaining space.
    append_sync(&wal, vec![(201, body(201))]).unwrap();
    assert_eq!(read(&wal, 201), Some(body(201)));
    assert!(append_sync(&wal, vec![(203, body(203))]).is_err(), "hole");
}

/// fsyncs slower than fsync.warningthresholdms are counted; faster ones are not.
#[test]
fn slow_fsyncs_are_counted_against_the_threshold() {
    for (threshold, expect_all) in [(Duration::ZERO, true), (Duration::from_secs(3600), false)] {
        let d = TestDir::new("wal-fsync-warn");
        let mut o = opts(d.path(), 1 << 20);
        o.fsync_warning = threshold;
        let (wal, _) = open_collect(o).unwrap();
        for i in 1..=3u64 {
            append_sync(&wal, vec![(i, body(i))]).unwrap();
        }
        let s = wal.stats();
        assert!(s.fsyncs >= 3, "{s:?}");
        let expected = if expect_all { s.fsyncs } else { 0 };
        assert_eq!(s.fsync_threshold_exceeded, expected, "{s:?}");
    }
}

/// A record damaged after it was written is refused on read, naming file and offset.
#[test]
fn damage_after_writing_is_caught_on_read() {
    let d = TestDir::new("wal-readcrc");
    let (wal, _) = open_collect(opts(d.path(), 1 << 20)).unwrap();
    append_sync(&wal, (1..=3).map(|i| (i, body(i))).collect()).unwrap();
    let path = seg_path(&d, 1);
    let off = offsets(&path, 1)[1];
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(b"X", off + (HEADER + INDEX) as u64).unwrap();
    let e = wal.read(2).unwrap_err();
    let msg = e.to_string();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains(&format!("byte offset {off}")), "{msg}");
    assert!(msg.contains("checksum mismatch"), "{msg}");
    assert_eq!(read(&wal, 1), Some(body(1)));
    assert_eq!(read(&wal, 3), Some(body(3)));
}

#[test]
fn group_commit_batches_concurrent_appends_and_acks_after_sync() {
    let d = TestDir::new("wal-gc");
    let (wal, _) = open_collect(opts(d.path(), 1 << 20)).unwrap();
    let wal = Arc::new(wal);
    let next = Arc::new(Mutex::new(1u64));
    let acked_before_sync = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let wal = Arc::clone(&wal);
            let next = Arc::clone(&next);
            let bad = Arc::clone(&acked_before_sync);
            std::thread::spawn(move || {
                for _ in 0..100 {
                    let (tx, rx) = std::sync::mpsc::channel();
                    {
                        // Indexes must reach the WAL in order, as openraft's single core does.
                        let mut n = next.lock().unwrap();
                        let i = *n;
                        *n += 1;
                        let w = Arc::clone(&wal);
                        let bad = Arc::clone(&bad);
                        wal.append(
                            framed(vec![(i, body(i))]),
                            Box::new(move |r| {
                                // The ack runs after the fdatasync that covers this record:
                                // the durability watermark already includes it.
                                if w.stats().fsyncs == 0 || w.durability().borrow().upto < Some(i) {
                                    bad.fetch_add(1, Ordering::SeqCst);
                                }
                                tx.send(r).unwrap()
                            }),
                        );
                    }
                    rx.recv().unwrap().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let s = wal.stats();
    assert_eq!(s.appended_records, 1600);
    assert_eq!(acked_before_sync.load(Ordering::SeqCst), 0);
    assert!(s.fsyncs < 1600, "no batching: {s:?}");
    println!(
        "group commit: 1600 records, {} batches, {} fsyncs ({:.1} records/fsync), p50 {}us p99 {}us",
        s.batches,
        s.fsyncs,
        1600.0 / s.fsyncs as f64,
        s.fsync_p50_us,
        s.fsync_p99_us
    );
    drop(wal);
    let (_, seen) = open_collect(opts(d.path(), 1 << 20)).unwrap();
    assert_eq!(seen.len(), 1600);
}

#[test]
fn truncate_removes_the_suffix_durably() {
    let d = TestDir::new("wal-trunc");
    let rt = rt();
    let (wal, _) = open_collect(opts(d.path(), 300)).unwrap();
    append_sync(&wal, (1..=60).map(|i| (i, body(i))).collect()).unwrap();
    let before = segments(d.path());
    rt.block_on(wal.truncate(25)).unwrap();
    assert_eq!(read(&wal, 25), None);
    assert_eq!(read(&wal, 24), Some(body(24)));
    assert!(segments(d.path()).len() < before.len());
    // Raft then appends the new leader's entries from the truncation point.
    append_sync(&wal, (25..=30).map(|i| (i, b"new".to_vec())).collect()).unwrap();
    // Truncating at a segment's first index removes that whole segment.
    let segs = segments(d.path());
    let last_first = *segs.last().unwrap();
    drop(wal);
    let (wal, seen) = open_collect(opts(d.path(), 300)).unwrap();
    assert_eq!(seen.len(), 30);
    assert_eq!(seen[23], (24, body(24)));
    assert_eq!(seen[24], (25, b"new".to_vec()));
    rt.block_on(wal.truncate(last_first)).unwrap();
    assert!(!segments(d.path()).contains(&last_first) || last_first == 1);
    append_sync(&wal, vec![(last_first, b"again".to_vec())]).unwrap();
    drop(wal);
    let (_, seen) = open_collect(opts(d.path(), 300)).unwrap();
    assert_eq!(seen.last().unwrap(), &(last_first, b"again".to_vec()));
    assert_eq!(seen.len() as u64, last_first);
}

#[test]
fn purge_deletes_whole_segments_below_purge_and_floor() {
    let d = TestDir::new("wal-purge");
    let (wal, _) = open_collect(opts(d.path(), 300)).unwrap();
    append_sync(&wal, (1..=100).map(|i| (i, body(i))).collect()).unwrap();
    let n_before = segments(d.path()).len();
    // Purged but not below the floor (no snapshot retained that covers them): nothing goes.
    wal.purge(60);
    rt().block_on(wal.in_order(Box::new(|| Ok(())))).unwrap();
    assert_eq!(segments(d.path()).len(), n_before);
    wal.set_retain_floor(60);
    rt().block_on(wal.in_order(Box::new(|| Ok(())))).unwrap();
    let segs = segments(d.path());
    assert!(segs.len() < n_before);
    assert!(segs[0] > 1 && segs[0] <= 61, "{segs:?}");
    assert_eq!(read(&wal, 1), None);
    assert_eq!(read(&wal, 61), Some(body(61)));
    assert_eq!(read(&wal, 100), Some(body(100)));
    // The purged segments are renamed away at once and deleted in the background.
    let doomed = |dir: &Path| -> usize {
        fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_str().unwrap().ends_with(".deleting")
            })
            .count()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while doomed(d.path()) > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(doomed(d.path()), 0);
    drop(wal);
    // A deletion a stop interrupted is finished at the next start.
    fs::write(d.path().join("00000000000000000001.log.deleting"), b"old").unwrap();
    let (wal, seen) = open_collect(opts(d.path(), 300)).unwrap();
    assert_eq!(doomed(d.path()), 0);
    assert_eq!(seen.first().unwrap().0, segs[0]);
    assert_eq!(seen.last().unwrap().0, 100);
    append_sync(&wal, vec![(101, body(101))]).unwrap();
}

#[test]
fn append_beyond_a_purged_end_restarts_the_log() {
    let d = TestDir::new("wal-gap");
    let (wal, _) = open_collect(opts(d.path(), 300)).unwrap();
    append_sync(&wal, (1..=10).map(|i| (i, body(i))).collect()).unwrap();
    assert!(append_sync(&wal, vec![(50, body(50))]).is_err());
    drop(wal);
    let (wal, _) = open_collect(opts(d.path(), 300)).unwrap();
    // A snapshot at 49 was installed: raft purges to it and continues at 50.
    wal.purge(49);
    append_sync(&wal, vec![(50, body(50))]).unwrap();
    assert_eq!(read(&wal, 50), Some(body(50)));
    assert_eq!(read(&wal, 5), None);
    drop(wal);
    assert_eq!(segments(d.path()), vec![50]);
    let (_, seen) = open_collect(opts(d.path(), 300)).unwrap();
    assert_eq!(seen, vec![(50, body(50))]);
}

/// A batch that carries records from before a snapshot jump and the jump itself: the old ones
/// go with the purged segments and the log restarts cleanly at the jump.
#[test]
fn jump_in_the_middle_of_a_batch_discards_what_precedes_it() {
    let d = TestDir::new("wal-gap-mid");
    let (wal, _) = open_collect(opts(d.path(), 300)).unwrap();
    append_sync(&wal, (1..=10).map(|i| (i, body(i))).collect()).unwrap();
    wal.purge(49);
    append_sync(&wal, vec![(11, body(11)), (50, body(50))]).unwrap();
    append_sync(&wal, vec![(51, body(51))]).unwrap();
    assert_eq!(read(&wal, 50), Some(body(50)));
    assert_eq!(read(&wal, 11), None);
    drop(wal);
    let (_, seen) = open_collect(opts(d.path(), 300)).unwrap();
    assert_eq!(seen, vec![(50, body(50)), (51, body(51))]);
}

// --- recovery -------------------------------------------------------------------------------

/// Captures warning messages, to check that recovery says what it cut.
#[derive(Default, Clone)]
struct Warnings(Arc<Mutex<Vec<String>>>);

struct MsgVisitor<'a>(&'a mut String);
impl tracing::field::Visit for MsgVisitor<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={:?} ", field.name(), value));
    }
}

impl tracing::Subscriber for Warnings {
    fn enabled(&self, m: &tracing::Metadata<'_>) -> bool {
        *m.level() <= tracing::Level::WARN
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, e: &tracing::Event<'_>) {
        let mut s = String::new();
        e.record(&mut MsgVisitor(&mut s));
        self.0.lock().unwrap().push(s);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Writes records 1..=n with 300-byte segments and returns the segment files.
fn written_log(d: &TestDir, n: u64) -> Vec<u64> {
    let (wal, _) = open_collect(opts(d.path(), 300)).unwrap();
    append_sync(&wal, (1..=n).map(|i| (i, body(i))).collect()).unwrap();
    drop(wal);
    segments(d.path())
}

fn seg_path(d: &TestDir, first: u64) -> PathBuf {
    d.path().join(segment::segment_name(first))
}

/// Offset of each record in a segment file.
fn offsets(path: &Path, first: u64) -> Vec<u64> {
    let b = fs::read(path).unwrap();
    segment::scan(&b, first)
        .0
        .iter()
        .map(|r| r.offset)
        .collect()
}

#[test]
fn torn_tail_is_cut_with_a_warning() {
    let d = TestDir::new("wal-torn");
    let segs = written_log(&d, 40);
    let last = *segs.last().unwrap();
    let path = seg_path(&d, last);
    let offs = offsets(&path, last);
    assert!(offs.len() >= 2);
    let tail_off = *offs.last().unwrap();
    // A torn write: the last record's payload only half made it (the rest reads as zeros).
    let mut b = fs::read(&path).unwrap();
    let rec_len = u32::from_be_bytes(b[tail_off as usize..][..4].try_into().unwrap()) as usize;
    for x in &mut b[tail_off as usize + 8 + rec_len / 2..tail_off as usize + 8 + rec_len] {
        *x = 0;
    }
    fs::write(&path, &b).unwrap();

    let warnings = Warnings::default();
    let r =
        tracing::subscriber::with_default(warnings.clone(), || open_collect(opts(d.path(), 300)));
    let (wal, seen) = r.unwrap();
    assert_eq!(seen.len(), 39);
    let w = warnings.0.lock().unwrap().join("\n");
    assert!(w.contains(&path.display().to_string()), "{w}");
    assert!(w.contains(&format!("offset={tail_off}")), "{w}");
    // The cut region is zero, and the log continues from the last good record.
    let b = fs::read(&path).unwrap();
    assert!(b[tail_off as usize..].iter().all(|&x| x == 0));
    append_sync(&wal, vec![(40, b"rewritten".to_vec())]).unwrap();
    drop(wal);
    let (_, seen) = open_collect(opts(d.path(), 300)).unwrap();
    assert_eq!(seen.last().unwrap(), &(40, b"rewritten".to_vec()));
}

#[test]
fn crash_simulated_by_truncating_the_last_file() {
    let d = TestDir::new("wal-crash");
    let segs = written_log(&d, 40);
    let last = *segs.last().unwrap();
    let path = seg_path(&d, last);
    let offs = offsets(&path, last);
    let cut = offs[offs.len() - 1] + 5; // inside the last record's header
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(cut).unwrap();
    drop(f);
    let (wal, seen) = open_collect(opts(d.path(), 300)).unwrap();
    assert_eq!(seen.len(), 39);
    append_sync(&wal, vec![(40, body(40)), (41, body(41))]).unwrap();
    drop(wal);
    // Cut exactly at a record boundary (EOF there is a clean end).
    let segs = segments(d.path());
    let last = *segs.last().unwrap();
    let path = seg_path(&d, last);
    let offs = offsets(&path, last);
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(*offs.last().unwrap()).unwrap();
    drop(f);
    let (_, seen) = open_collect(opts(d.path(), 300)).unwrap();
    assert_eq!(seen.len(), 40);
}

#[test]
fn bad_crc_of_the_last_record_is_cut() {
    let d = TestDir::new("wal-lastcrc");
    let segs = written_log(&d, 20);
    let last = *segs.last().unwrap();
    let path = seg_path(&d, last);
    let tail_off = *offsets(&path, last).last().unwrap() as usize;
    let mut b = fs::read(&path).unwrap();
    b[tail_off + 4] ^= 0x55;
    fs::write(&path, &b).unwrap();
    let (_, seen) = open_collect(opts(d.path(), 300)).unwrap();
    assert_eq!(seen.len(), 19);
}

#[test]
fn corruption_in_the_middle_refuses_to_start() {
    let d = TestDir::new("wal-mid");
    let segs = written_log(&d, 40);
    let last = *segs.last().unwrap();
    let path = seg_path(&d, last);
    let offs = offsets(&path, last);
    assert!(offs.len() >= 2);
    // Flip a payload byte of a record that has a valid record after it.
    let off = offs[offs.len() - 2];
    let mut b = fs::read(&path).unwrap();
    b[off as usize + 20] ^= 0xff;
    fs::write(&path, &b).unwrap();
    let before = fs::read(&path).unwrap();
    let e = open_collect(opts(d.path(), 300)).err().unwrap();
    let msg = e.to_string();
    assert!(
        matches!(e, WalError::Corrupt { offset, .. } if offset == off),
        "{msg}"
    );
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains(&format!("byte offset {off}")), "{msg}");
    assert!(msg.contains("another replica"), "{msg}");
    // Refusing touches nothing.
    assert_eq!(fs::read(&path).unwrap(), before);
}

/// A body the reader refuses stops the open as corruption at that record's offset, the
/// reader's own error kept as the source.
#[test]
fn a_refused_body_is_corruption_with_the_readers_error_as_source() {
    #[derive(Debug, thiserror::Error)]
    #[error("body of {0} does not decode")]
    struct Undecodable(u64);

    let d = TestDir::new("wal-refused");
    let segs = written_log(&d, 40);
    let path = seg_path(&d, segs[1]);
    let refused = segs[1] + 1;
    let off = offsets(&path, segs[1])[1];
    let e = Wal::open(opts(d.path(), 300), |i, _| {
        if i == refused {
            return Err(Undecodable(i).into());
        }
        Ok(())
    })
    .err()
    .unwrap();
    let msg = e.to_string();
    let WalError::Corrupt {
        file,
        offset,
        reason: Corruption::Body(source),
        ..
    } = e
    else {
        panic!("not a refused body: {msg}");
    };
    assert_eq!((file, offset), (path.clone(), off));
    assert!(
        source
            .downcast_ref::<Undecodable>()
            .is_some_and(|u| u.0 == refused),
        "{source:?}"
    );
    assert!(
        msg.contains(&format!(
            "{} at byte offset {off}: body of {refused} does not decode",
            path.display()
        )),
        "{msg}"
    );
}

#[test]
fn corruption_in_a_non_last_segment_refuses_to_start() {
    let d = TestDir::new("wal-midseg");
    let segs = written_log(&d, 40);
    assert!(segs.len() >= 3);
    let path = seg_path(&d, segs[1]);
    let offs = offsets(&path, segs[1]);
    let off = *offs.last().unwrap();
    let mut b = fs::read(&path).unwrap();
    b[off as usize + 6] ^= 0x01; // its checksum
    fs::write(&path, &b).unwrap();
    let e = open_collect(opts(d.path(), 300)).err().unwrap();
    assert!(
        matches!(&e, WalError::Corrupt { file, offset, .. } if *file == path && *offset == off),
        "{e}"
    );
}

#[test]
fn missing_segment_is_a_gap() {
    let d = TestDir::new("wal-hole");
    let segs = written_log(&d, 40);
    assert!(segs.len() >= 3);
    fs::remove_file(seg_path(&d, segs[1])).unwrap();
    let e = open_collect(opts(d.path(), 300)).err().unwrap();
    assert!(matches!(e, WalError::Gap { .. }), "{e}");
}

// --- disk full ------------------------------------------------------------------------------

#[test]
fn preallocation_failure_blocks_writes_and_recovers() {
    let d = TestDir::new("wal-full");
    let fault = Arc::new(AtomicBool::new(false));
    let mut o = opts(d.path(), 1000);
    o.prealloc_fault = Some(Arc::clone(&fault));
    let (wal, _) = open_collect(o.clone()).unwrap();
    let health = wal.health();
    // The first segment is ready; then the disk "fills".
    append_sync(&wal, vec![(1, body(1))]).unwrap();
    fault.store(true, Ordering::SeqCst);
    // Crossing half of the segment asks for the next one, which fails.
    let mut i = 2;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !health.writes_blocked() {
        append_sync(&wal, vec![(i, vec![b'x'; 40])]).unwrap();
        i += 1;
        if i > 15 {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(Instant::now() < deadline, "writes_blocked never set");
    }
    // Appends into the reserved rest of the segment still succeed...
    while append_sync(&wal, vec![(i, vec![b'x'; 40])]).is_ok() {
        i += 1;
        assert!(i < 100, "the reserve never ran out");
    }
    // ...until it is exhausted, when an append may fail (and the WAL stops).
    assert!(health.writes_blocked());
    drop(wal);

    // After restart with room again, the flag clears once preallocation succeeds.
    fault.store(false, Ordering::SeqCst);
    let (wal, seen) = open_collect(o.clone()).unwrap();
    assert_eq!(seen.len() as u64, i - 1);
    append_sync(&wal, vec![(i, body(i))]).unwrap();
    assert!(!wal.health().writes_blocked());
}

#[test]
fn writes_blocked_clears_when_space_returns() {
    let d = TestDir::new("wal-retry");
    let fault = Arc::new(AtomicBool::new(true));
    let mut o = opts(d.path(), 1000);
    o.prealloc_fault = Some(Arc::clone(&fault));
    // An empty log asks for its first segment at once.
    let (wal, _) = open_collect(o).unwrap();
    let health = wal.health();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !health.writes_blocked() {
        std::thread::sleep(Duration::from_millis(10));
        assert!(Instant::now() < deadline);
    }
    fault.store(false, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(5);
    while health.writes_blocked() {
        std::thread::sleep(Duration::from_millis(50));
        assert!(Instant::now() < deadline, "never retried");
    }
    append_sync(&wal, vec![(1, body(1))]).unwrap();
}

/// The log tail kept after a snapshot is bounded in bytes: framing and the index count.
#[test]
fn oldest_within_counts_whole_records_back_from_upto() {
    let d = TestDir::new("wal-within");
    let (wal, _) = open_collect(opts(d.path(), 1024)).unwrap();
    let fixed = |_: u64| vec![7u8; 100];
    append_sync(&wal, (1..=50).map(|i| (i, fixed(i))).collect()).unwrap();
    // Each record costs its header, its 8-byte index and its 100-byte body.
    let each = (segment::HEADER + 8 + 100) as u64;
    assert_eq!(wal.oldest_within(40, each * 5), Some(36));
    assert_eq!(wal.oldest_within(40, each * 5 - 1), Some(37));
    assert_eq!(wal.oldest_within(40, each * 1000), Some(1));
    // Not even the record at `upto` fits: nothing below it need be kept.
    assert_eq!(wal.oldest_within(40, 0), Some(41));
    assert_eq!(wal.oldest_within(51, each), None, "beyond the log");
    wal.set_retain_floor(30);
    wal.purge(30);
    rt().block_on(wal.in_order(Box::new(|| Ok(())))).unwrap();
    assert_eq!(wal.oldest_within(2, each), None, "purged");
    assert_eq!(wal.oldest_within(50, each * 2), Some(49));
}
