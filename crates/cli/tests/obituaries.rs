//! Why each session ended, read back through the `obit` four-letter word, the admin server's
//! `/commands/obituaries` and `corral doctor`: one scenario per cause (a frozen client, a
//! dropped connection, the client's own close, a Kafka broker's registration, a member lost
//! with its client pinned to it), and the obituaries surviving a restart unchanged and
//! reading the same on every member of an ensemble.

mod common;

use std::time::{Duration, Instant};

use common::{
    admin_obituary, doctor, free_port, unique_name, CorralEnsemble, CorralServer, RawConn,
};
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

/// `corral doctor --json` on `args`: its exit code and its likeliest finding.
fn doctor_says(args: &[&str]) -> (i32, serde_json::Value) {
    let (code, doc) = doctor(args);
    let first = doc["findings"][0].clone();
    assert!(first.is_object(), "a finding: {doc:#}");
    (code, first)
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
    let http_port = free_port();
    let mut server = CorralServer::start(&format!(
        "snapCount=4\nadmin.enableServer=true\nadmin.serverPort={http_port}\n"
    ));
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
    let http = admin_obituary(http_port, closer_id).expect("over HTTP");
    assert_eq!(http["cause"], "closed_by_client", "{http:#}");
    let closer_hex = format!("0x{closer_id:x}");
    let (code, said) = doctor_says(&["--server", &addr, "--session", &closer_hex]);
    assert_eq!(said["kind"], "closed_by_client", "{said:#}");
    assert_eq!(said["severity"], "note", "{said:#}");
    assert_eq!(code, 0, "a client's own close is no problem: {said:#}");

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
    let http = admin_obituary(http_port, broker_id).expect("over HTTP");
    assert_eq!(http["cause"], "silent_while_connected", "{http:#}");
    assert_eq!(http["kafka_brokers"], serde_json::json!([1]), "{http:#}");
    assert_eq!(http["silent_ms"].as_u64(), Some(silent), "{http:#}");
    // Asked about broker 1 under its chroot, the doctor explains the pause.
    let chrooted = format!("{addr}{root}");
    let (code, said) = doctor_says(&["--server", &chrooted, "--broker", "1"]);
    assert_eq!(code, 1, "{said:#}");
    assert_eq!(said["kind"], "client_pause", "{said:#}");
    let summary = said["summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains("broker 1")
            && summary.contains(&format!(
                "silent while connected for {silent} ms with timeout 4000"
            )),
        "{summary}"
    );
    assert!(
        said["fix"].as_str().is_some_and(|f| f.contains("GC log")),
        "{said:#}"
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
    let http = admin_obituary(http_port, dropped_id).expect("over HTTP");
    assert_eq!(http["cause"], "connection_lost", "{http:#}");
    assert_eq!(
        http["connections"][1]["cause"], "client closed the connection",
        "{http:#}"
    );
    let (code, said) = doctor_says(&["--server", &addr, "--session", &format!("0x{dropped_id:x}")]);
    assert_eq!(
        (code, &said["kind"]),
        (1, &serde_json::json!("connection_lost")),
        "{said:#}"
    );
    assert!(
        said["evidence"].as_array().is_some_and(|e| e
            .iter()
            .any(|l| l.as_str().is_some_and(|l| l.contains("disconnected")))),
        "the connection history as evidence: {said:#}"
    );
    // Not asked about one session, the doctor still finds both lost sessions in its window.
    let (code, doc) = doctor(&["--server", &addr]);
    assert_eq!(code, 1, "{doc:#}");
    for kind in ["client_pause", "connection_lost"] {
        assert!(common::finding(&doc, kind).is_some(), "{kind}: {doc:#}");
    }

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
    let admin: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut ens = CorralEnsemble::try_start_each(3, "", |id| {
        format!(
            "admin.enableServer=true\nadmin.serverPort={}\n",
            admin[id - 1]
        )
    })
    .expect("a 3-member ensemble");
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
    for port in &admin {
        let http = admin_obituary(*port, id).expect("over HTTP on every member");
        assert_eq!(http["cause"], "member_lost", "{http:#}");
        assert_eq!(http["member"], pinned_to as u64 + 1, "{http:#}");
    }
    let (code, said) = doctor_says(&[
        "--server",
        &ens.connect_string(),
        "--session",
        &format!("0x{id:x}"),
    ]);
    assert_eq!(code, 1, "{said:#}");
    assert_eq!(said["kind"], "member_lost", "{said:#}");
    assert!(
        said["summary"]
            .as_str()
            .is_some_and(|s| s.contains(&format!("held by {stopped_member}"))),
        "{said:#}"
    );
}
