//! `corral doctor` end to end: a healthy keeper is reported healthy (exit 0); the same keeper
//! behind a proxy that delays every byte is diagnosed as a network too slow for the session
//! timeout, with a timeout to ask for instead (exit 1).

mod common;
mod proxy;

use std::time::Duration;

use common::{doctor, finding, CorralServer};
use proxy::Proxy;

#[test]
fn a_healthy_keeper_is_reported_healthy() {
    let server = CorralServer::start("");
    let (code, doc) = doctor(&["--server", &server.addr()]);
    assert_eq!(code, 0, "{doc:#}");
    assert_eq!(doc["healthy"], true, "{doc:#}");
    let member = &doc["members"][0];
    assert_eq!(member["mode"], "standalone", "{doc:#}");
    assert!(
        member["round_trips"]["probes"]
            .as_u64()
            .is_some_and(|n| n >= 5),
        "{doc:#}"
    );
    assert_eq!(member["min_session_timeout_ms"], 4000, "{doc:#}");
    assert!(finding(&doc, "network").is_none(), "{doc:#}");
    assert!(finding(&doc, "unreadable").is_none(), "{doc:#}");
    assert_eq!(member["is_corral"], true, "{doc:#}");
}

/// The doctor reads only four-letter words ZooKeeper has too: pointed at ZooKeeper 3.8 it
/// measures and judges the same, and skips what only corral keeps.
#[test]
fn zookeeper_can_be_examined_too() {
    let Some(zk) = common::RealZk::start("") else {
        return;
    };
    let (code, doc) = doctor(&["--server", &zk.proc.addr()]);
    assert_eq!(code, 0, "{doc:#}");
    let member = &doc["members"][0];
    assert_eq!(member["mode"], "standalone", "{doc:#}");
    assert_eq!(member["is_corral"], false, "{doc:#}");
    assert_eq!(member["max_session_timeout_ms"], 40000, "{doc:#}");
    assert!(finding(&doc, "unreadable").is_none(), "{doc:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_network_is_named_with_a_timeout_to_ask_for() {
    let server = CorralServer::start("");
    // 700 ms each way: a 1400 ms round trip against the 4000 ms minimum timeout, over the
    // 1333 ms a client waits before it pings.
    let proxy = Proxy::start_slow(server.addr(), Duration::from_millis(700)).await;
    let addr = proxy.addr.clone();
    let (code, doc) =
        tokio::task::spawn_blocking(move || doctor(&["--server", &addr, "--probe-seconds", "3"]))
            .await
            .expect("doctor ran");
    assert_eq!(code, 1, "a problem found: {doc:#}");
    assert_eq!(doc["healthy"], false, "{doc:#}");
    let net = &doc["findings"][0];
    assert_eq!(net["kind"], "network", "the likeliest finding: {doc:#}");
    assert_eq!(net["severity"], "problem", "{doc:#}");
    let summary = net["summary"].as_str().unwrap_or_default();
    assert!(summary.contains("negotiated timeout 4000 ms"), "{summary}");
    let p99 = doc["members"][0]["round_trips"]["stats"]["p99_ms"]
        .as_f64()
        .expect("a p99");
    assert!((1400.0..2500.0).contains(&p99), "p99 {p99}: {doc:#}");
    // Three round trips must fit in the timeout: 3 x ~1400 ms, rounded up to a second.
    let fix = net["fix"].as_str().unwrap_or_default();
    let advised: u64 = fix
        .split(">= ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a timeout in the fix: {fix}"));
    assert!(
        advised >= 5000 && advised as f64 >= 3.0 * p99,
        "advised {advised} for p99 {p99}: {fix}"
    );
    assert!(fix.contains("zookeeper.session.timeout.ms"), "{fix}");
    eprintln!("doctor behind a 700 ms-each-way proxy: {summary}\nfix: {fix}");
}
