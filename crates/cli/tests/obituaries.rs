//! Why each session ended, read back through the `obit` four-letter word: one scenario per
//! cause (a frozen client, a dropped connection, the client's own close, a Kafka broker's
//! registration, a member lost with its client pinned to it), and the obituaries surviving a
//! restart unchanged and reading the same on every member of an ensemble.

mod common;

use std::time::{Duration, Instant};

use common::{unique_name, CorralEnsemble, CorralServer, RawConn};
use corral_proto::CreateMode;

/// The shortest timeout the test configs allow (2 ticks of 2000 ms).
const SHORT_TIMEOUT_MS: i32 = 4000;

/// A raw session asking for `timeout_ms`: it sends nothing after the handshake unless told.
fn session(addr: &str, timeout_ms: i32) -> (RawConn, i64) {
    let (c, resp) = RawConn::new_session_with_timeout(addr, timeout_ms)
        .unwrap_or_else(|e| panic!("session on {addr}: {e}"));
    (c, resp.session_id)
}

fn create(c: &mut RawConn, xid: i32, path: &str, mode: CreateMode) {
    c.create(xid, path, mode).unwrap_or_else(|e| panic!("{e}"));
}

/// `obit`'s block for `session`, waiting up to `within` for it to appear.
fn obituary(addr: &str, session: i64, within: Duration) -> String {
    let header = format!("0x{session:x} ");
    let deadline = Instant::now() + within;
    loop {
        let text = common::four_letter(addr, "obit").unwrap_or_default();
        if let Some(block) = block_of(&text, &header) {
            return block;
        }
        if Instant::now() >= deadline {
            panic!("no obituary for 0x{session:x} within {within:?}; obit said:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The block starting with `header` in `obit`'s text: its header line and the indented lines
/// after it.
fn block_of(text: &str, header: &str) -> Option<String> {
    let mut lines = text.lines().skip_while(|l| !l.starts_with(header));
    let first = lines.next()?;
    let mut block = format!("{first}\n");
    for l in lines.take_while(|l| l.starts_with('\t')) {
        block.push_str(l);
        block.push('\n');
    }
    Some(block)
}

/// The value of `key: ` in an obituary block.
fn field<'a>(block: &'a str, key: &str) -> Option<&'a str> {
    let prefix = format!("\t{key}: ");
    block.lines().find_map(|l| l.strip_prefix(prefix.as_str()))
}

fn cause(block: &str) -> &str {
    block
        .lines()
        .next()
        .and_then(|l| l.split(' ').nth(2))
        .unwrap_or("")
}

#[test]
fn each_cause_is_told_with_its_evidence_and_survives_a_restart() {
    // Snapshots every few writes: the restart reads the obituaries from one.
    let mut server = CorralServer::start("snapCount=4\n");
    let addr = server.addr();
    let root = format!("/{}", unique_name("obit"));
    let (mut admin, _) = session(&addr, 30_000);
    create(&mut admin, 1, &root, CreateMode::Persistent);
    create(
        &mut admin,
        2,
        &format!("{root}/brokers"),
        CreateMode::Persistent,
    );
    create(
        &mut admin,
        3,
        &format!("{root}/brokers/ids"),
        CreateMode::Persistent,
    );

    // A Kafka broker registers itself, then freezes (its connection stays open).
    let (mut broker, broker_id) = session(&addr, SHORT_TIMEOUT_MS);
    create(
        &mut broker,
        1,
        &format!("{root}/brokers/ids/1"),
        CreateMode::Ephemeral,
    );
    // A client whose connection drops and who never comes back.
    let (mut dropped, dropped_id) = session(&addr, SHORT_TIMEOUT_MS);
    create(
        &mut dropped,
        1,
        &format!("{root}/dropped"),
        CreateMode::Ephemeral,
    );
    dropped.shutdown_write();
    drop(dropped);
    // A client that closes its own session.
    let (mut closer, closer_id) = session(&addr, 30_000);
    closer.close_session().expect("close");

    let closed = obituary(&addr, closer_id, Duration::from_secs(5));
    assert_eq!(cause(&closed), "closed_by_client", "{closed}");
    assert_eq!(
        field(&closed, "timeout_ms"),
        Some("30000 (requested 30000)")
    );

    let frozen = obituary(&addr, broker_id, Duration::from_secs(15));
    assert_eq!(cause(&frozen), "silent_while_connected", "{frozen}");
    let silent: u64 = field(&frozen, "silent_ms")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("silent_ms in {frozen}"));
    assert!(
        (4000..4500).contains(&silent),
        "expired at its timeout: {frozen}"
    );
    assert_eq!(field(&frozen, "kafka_brokers"), Some("1"), "{frozen}");
    assert_eq!(field(&frozen, "last_request"), Some("Create"), "{frozen}");
    assert!(
        field(&frozen, "ephemerals_deleted")
            .is_some_and(|v| v == format!("1 {root}/brokers/ids/1")),
        "{frozen}"
    );
    assert!(
        frozen.contains(" connected member 1 127.0.0.1:"),
        "its connection history: {frozen}"
    );

    let lost = obituary(&addr, dropped_id, Duration::from_secs(15));
    assert_eq!(cause(&lost), "connection_lost", "{lost}");
    assert!(
        lost.contains("disconnected member 1") && lost.contains("client closed the connection"),
        "how the connection ended: {lost}"
    );
    assert!(
        field(&lost, "ephemerals_deleted").is_some_and(|v| v.ends_with("/dropped")),
        "{lost}"
    );

    // The log carries the same story, one line per obituary.
    let log = server.stderr_text();
    assert!(
        log.lines().any(|l| l.contains("session ended")
            && l.contains(&format!("0x{broker_id:x}"))
            && l.contains("cause=\"silent_while_connected\"")
            && l.contains("kafka_brokers=[1]")),
        "an INFO line for the broker's session:\n{log}"
    );

    // After a restart (the log replayed, or a snapshot read): the same text, once each.
    let before = common::four_letter(&addr, "obit").expect("obit");
    drop(broker);
    server.kill9().expect("kill -9");
    server.restart().expect("restart");
    let after = common::four_letter(&addr, "obit").expect("obit after restart");
    // The same, then only what ended since (the restart's readiness probe closes a session).
    assert!(
        after.starts_with(&before),
        "obituaries after a restart:\n{after}\nbefore it:\n{before}"
    );
    for id in [broker_id, dropped_id, closer_id] {
        let header = format!("0x{id:x} ");
        assert_eq!(
            after.lines().filter(|l| l.starts_with(&header)).count(),
            1,
            "one obituary for 0x{id:x}:\n{after}"
        );
    }
}

/// A client pinned to one member (it knows no other) whose member freezes: the leader ends
/// the session as lost with its member, and every member tells it the same.
#[test]
fn a_session_lost_with_its_member_reads_the_same_on_every_member() {
    let mut ens = CorralEnsemble::start(3, "");
    let leader = ens.leader(Duration::from_secs(10)).expect("a leader");
    let pinned_to = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    let (mut pinned, id) = session(&ens.members[pinned_to].addr(), SHORT_TIMEOUT_MS);
    // One request so the session has something to show, then silence with its member.
    create(
        &mut pinned,
        1,
        &format!("/{}", unique_name("pinned")),
        CreateMode::Ephemeral,
    );
    // Its member reports it (and its connection) to the leader at least every 500 ms.
    std::thread::sleep(Duration::from_millis(1200));
    ens.members[pinned_to].signal("STOP").expect("SIGSTOP");
    let on_leader = obituary(&ens.members[leader].addr(), id, Duration::from_secs(20));
    let stopped_member = format!("member {}", pinned_to + 1);
    assert_eq!(cause(&on_leader), "member_lost", "{on_leader}");
    assert!(on_leader.contains(&stopped_member), "{on_leader}");
    assert!(
        on_leader.contains(&format!("connected {stopped_member} 127.0.0.1:")),
        "the connection its member reported: {on_leader}"
    );
    assert_eq!(
        field(&on_leader, "member"),
        Some((pinned_to + 1).to_string().as_str())
    );
    let on_other = obituary(&ens.members[other].addr(), id, Duration::from_secs(10));
    assert_eq!(on_other, on_leader, "the same obituary on every member");
    ens.members[pinned_to].signal("CONT").expect("SIGCONT");
    let on_pinned = obituary(&ens.members[pinned_to].addr(), id, Duration::from_secs(10));
    assert_eq!(on_pinned, on_leader, "the frozen member learns it too");
}
