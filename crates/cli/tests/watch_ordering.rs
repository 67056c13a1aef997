//! Watch ordering under load, read from raw frames: readers set a data watch with getData in
//! a loop while writers change the same nodes as fast as they can. For every round:
//! - no event for the node may arrive between the getData that sets the watch and its reply
//!   (the Java client registers its watcher when the reply arrives and drops an earlier
//!   event, so the server would have spent the one-shot watch for nothing);
//! - after the reply, the watch must fire: writers never stop while a reader waits, so a
//!   reader that hears nothing has lost its watch.
//!
//! `CORRAL_ORDERING_ROUNDS` sets the total number of rounds (default 100,000).

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{unique_name, CorralServer, RawConn};
use corral_proto::{
    xid, CreateMode, CreateRequest, EventType, GetDataRequest, Jute, OpCode, Reader, ReplyHeader,
    Request, Response, SetDataRequest, WatcherEvent,
};

const READERS: usize = 4;
const WRITERS: usize = 2;
const NODES: usize = 2;
/// setData requests each writer keeps in flight.
const WRITE_BATCH: usize = 32;
/// How long a reader waits for its watch to fire while writers are writing (well inside the
/// 10 s session timeout: a reader sends nothing while it waits).
const FIRE_WITHIN: Duration = Duration::from_secs(4);

#[derive(Default, Debug)]
struct Tally {
    rounds: AtomicU64,
    early_events: AtomicU64,
    lost_watches: AtomicU64,
    writes: AtomicU64,
}

#[test]
fn watch_event_never_overtakes_the_reply_that_set_it() {
    let total_rounds: u64 = std::env::var("CORRAL_ORDERING_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let server = CorralServer::start("");
    let addr = server.addr();
    let root = format!("/{}", unique_name("ordering"));
    let paths: Vec<String> = (0..NODES).map(|i| format!("{root}/n{i}")).collect();
    {
        let (mut c, _) = RawConn::new_session(&addr).expect("setup session");
        for p in std::iter::once(&root).chain(&paths) {
            let (hdr, _) = c
                .request(
                    1,
                    &Request::Create(CreateRequest {
                        path: p.clone(),
                        data: Some(b"0".to_vec()),
                        acl: corral_proto::open_acl_unsafe(),
                        flags: CreateMode::Persistent.code(),
                    }),
                )
                .expect("create");
            assert_eq!(hdr.err, 0, "create {p}");
        }
    }

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (addr, paths, tally, stop) = (
                addr.clone(),
                paths.clone(),
                Arc::clone(&tally),
                Arc::clone(&stop),
            );
            std::thread::spawn(move || write_loop(&addr, &paths, w, &tally, &stop))
        })
        .collect();
    let per_reader = total_rounds.div_ceil(READERS as u64);
    let readers: Vec<_> = (0..READERS)
        .map(|r| {
            let (addr, path, tally) = (addr.clone(), paths[r % NODES].clone(), Arc::clone(&tally));
            std::thread::spawn(move || read_loop(&addr, &path, per_reader, &tally))
        })
        .collect();
    let reader_errors: Vec<String> = readers
        .into_iter()
        .filter_map(|h| {
            h.join()
                .unwrap_or_else(|_| Err("reader panicked".into()))
                .err()
        })
        .collect();
    stop.store(true, Ordering::SeqCst);
    for h in writers {
        if let Ok(Err(e)) = h.join() {
            panic!("writer failed: {e}");
        }
    }
    let t = &*tally;
    println!(
        "{} rounds in {:.1} s by {READERS} readers against {WRITERS} writers ({} writes): {} events before their reply, {} lost watches",
        t.rounds.load(Ordering::SeqCst),
        started.elapsed().as_secs_f64(),
        t.writes.load(Ordering::SeqCst),
        t.early_events.load(Ordering::SeqCst),
        t.lost_watches.load(Ordering::SeqCst),
    );
    assert!(
        reader_errors.is_empty(),
        "readers failed: {reader_errors:?}"
    );
    assert_eq!(
        t.early_events.load(Ordering::SeqCst),
        0,
        "events overtook their reply"
    );
    assert_eq!(
        t.lost_watches.load(Ordering::SeqCst),
        0,
        "watches were lost"
    );
    assert!(t.rounds.load(Ordering::SeqCst) >= total_rounds);
    assert!(server.four_letter("ruok").contains("imok"));
}

fn header(body: &[u8]) -> Result<(ReplyHeader, Reader<'_>), String> {
    let mut r = Reader::new(body);
    let hdr = ReplyHeader::read(&mut r).map_err(|e| format!("reply header: {e}"))?;
    Ok((hdr, r))
}

/// Sets a watch on `path` with getData, then waits for it to fire; `rounds` times.
fn read_loop(addr: &str, path: &str, rounds: u64, tally: &Tally) -> Result<(), String> {
    let (mut c, _) = RawConn::new_session(addr)?;
    for round in 0..rounds {
        let my_xid = i32::try_from(round % i32::MAX as u64).unwrap_or(0) + 1;
        let get = Request::GetData(GetDataRequest {
            path: path.to_string(),
            watch: true,
        });
        c.send_frame(&get.to_frame_body(my_xid))
            .map_err(|e| format!("send getData: {e}"))?;
        // Until the reply: the previous watch has fired, so any event now is early.
        loop {
            let body = c
                .read_frame(FIRE_WITHIN)?
                .ok_or("server closed the reader's connection")?;
            let (hdr, r) = header(&body)?;
            if hdr.xid == xid::NOTIFICATION {
                tally.early_events.fetch_add(1, Ordering::SeqCst);
                continue;
            }
            if hdr.xid != my_xid || hdr.err != 0 {
                return Err(format!("unexpected reply {hdr:?} to getData {my_xid}"));
            }
            Response::decode(OpCode::GetData, &body[r.position()..])
                .map_err(|e| format!("getData reply: {e}"))?;
            break;
        }
        // After it: the watch must fire, once, for this node.
        match c.read_frame(FIRE_WITHIN) {
            Ok(Some(body)) => {
                let (hdr, mut r) = header(&body)?;
                let ev = WatcherEvent::read(&mut r).map_err(|e| format!("event: {e}"))?;
                if hdr.xid != xid::NOTIFICATION
                    || ev.path != path
                    || ev.event_type != EventType::NodeDataChanged.code()
                {
                    return Err(format!(
                        "expected the watch on {path} to fire, got {hdr:?} {ev:?}"
                    ));
                }
            }
            Ok(None) => return Err("server closed the reader's connection".into()),
            Err(_) => {
                tally.lost_watches.fetch_add(1, Ordering::SeqCst);
                return Err(format!("the watch on {path} never fired"));
            }
        }
        tally.rounds.fetch_add(1, Ordering::SeqCst);
    }
    Ok(())
}

/// Changes every node as fast as the keeper takes it, `WRITE_BATCH` requests in flight.
fn write_loop(
    addr: &str,
    paths: &[String],
    writer: usize,
    tally: &Tally,
    stop: &AtomicBool,
) -> Result<(), String> {
    let (mut c, _) = RawConn::new_session(addr)?;
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let mut batch = Vec::new();
        for i in 0..WRITE_BATCH {
            n += 1;
            let set = Request::SetData(SetDataRequest {
                path: paths[(writer + i) % paths.len()].clone(),
                data: Some(n.to_string().into_bytes()),
                version: -1,
            });
            batch.extend_from_slice(&corral_proto::frame::frame(
                &set.to_frame_body(i as i32 + 1),
            ));
        }
        c.send_raw(&batch)
            .map_err(|e| format!("send setData: {e}"))?;
        for _ in 0..WRITE_BATCH {
            let body = c
                .read_frame(Duration::from_secs(10))?
                .ok_or("server closed the writer's connection")?;
            let (hdr, _) = header(&body)?;
            if hdr.err != 0 {
                return Err(format!("setData failed: {hdr:?}"));
            }
        }
        tally.writes.fetch_add(WRITE_BATCH as u64, Ordering::SeqCst);
    }
    Ok(())
}
