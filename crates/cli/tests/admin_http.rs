//! The HTTP admin server: ZooKeeper's `/commands/<name>` JSON (`command`, `error` and the
//! command's fields), corral's `sessions` and `obituaries`, and a taken admin port refused at
//! start when the operator asked for it.

mod common;

use std::io::Write;

use common::{admin_get, admin_json, free_port, CorralServer, RawConn};
use corral_proto::ConnectRequest;

#[test]
fn commands_answer_json_with_sessions_and_obituaries() {
    let admin = free_port();
    let server = CorralServer::start(&format!(
        "admin.enableServer=true\nadmin.serverPort={admin}\n"
    ));
    let ruok = admin_json(admin, "ruok");
    assert!(ruok["error"].is_null(), "{ruok}");
    assert_eq!(admin_json(admin, "is_read_only")["read_only"], false);
    let unknown = admin_json(admin, "nosuch");
    assert_eq!(unknown["error"], "Unknown command: nosuch");
    let monitor = admin_json(admin, "monitor");
    assert_eq!(monitor["server_state"], "standalone", "{monitor}");
    assert!(
        monitor["znode_count"].as_i64().is_some_and(|n| n >= 4),
        "{monitor}"
    );
    let (status, list) = admin_get(admin, "/commands");
    assert_eq!(status, 200);
    assert!(list.contains("/commands/obituaries"), "{list}");

    let mut c = RawConn::connect(&server.addr()).expect("connect");
    let resp = c
        .handshake(&ConnectRequest {
            timeout: 4000,
            read_only: Some(false),
            ..Default::default()
        })
        .expect("handshake");
    let id = format!("0x{:x}", resp.session_id);
    let sessions = admin_json(admin, "sessions");
    let mine = sessions["sessions"]
        .as_array()
        .and_then(|l| l.iter().find(|s| s["session_id"] == id.as_str()))
        .unwrap_or_else(|| panic!("{id} in {sessions}"))
        .clone();
    assert_eq!(mine["timeout_ms"], 4000, "{mine}");
    assert_eq!(mine["connected_here"], true, "{mine}");
    assert!(
        mine["heartbeat_age_ms"].as_u64().is_some_and(|a| a < 4000),
        "{mine}"
    );

    c.close_session().expect("close");
    let obits = admin_json(admin, "obituaries");
    let ob = obits["obituaries"]
        .as_array()
        .and_then(|l| l.iter().find(|o| o["session_id"] == id.as_str()))
        .unwrap_or_else(|| panic!("{id} in {obits}"));
    assert_eq!(ob["cause"], "closed_by_client", "{ob}");
    assert!(ob["connections"][0]["event"] == "connected", "{ob}");
}

#[test]
fn a_taken_admin_port_stops_start_up_when_asked_for() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let err = match CorralServer::try_start(&format!(
        "admin.enableServer=true\nadmin.serverPort={port}\n"
    )) {
        Ok(_) => panic!("started with its admin port taken"),
        Err(e) => e,
    };
    assert!(err.contains("admin.serverPort"), "names the key: {err}");
    drop(taken);
}

/// `/metrics` read by the Prometheus project's own Python parser: every family parses, with
/// ZooKeeper's names and corral's typed metrics.
#[test]
fn metrics_parse_with_prometheus_own_parser() {
    let admin = free_port();
    let server = CorralServer::start(&format!(
        "admin.enableServer=true\nadmin.serverPort={admin}\n"
    ));
    // A session that ends, so a cause is counted.
    let (mut c, _) = RawConn::new_session(&server.addr()).expect("session");
    c.close_session().expect("close");
    let (status, text) = admin_get(admin, "/metrics");
    assert_eq!(status, 200, "{text}");
    let parser = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
for f in text_string_to_metric_families(sys.stdin.read()):
    for s in f.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        print(f.type, f.name, s.name, labels, s.value)
"#;
    let out = std::process::Command::new("/usr/bin/python3")
        .args(["-c", parser])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut p| {
            if let Some(mut stdin) = p.stdin.take() {
                stdin.write_all(text.as_bytes())?;
            }
            p.wait_with_output()
        });
    let out = match out {
        Ok(o) => o,
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("SKIP: /usr/bin/python3 not runnable: {e}");
            return;
        }
        Err(e) => panic!("/usr/bin/python3: {e}"),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("No module named 'prometheus_client'") && std::env::var_os("CI").is_none() {
        eprintln!("SKIP: apt-get install python3-prometheus-client");
        return;
    }
    assert!(
        out.status.success(),
        "the parser refused /metrics: {stderr}\n{text}"
    );
    let parsed = String::from_utf8_lossy(&out.stdout).into_owned();
    let has = |line: &str| parsed.lines().any(|l| l.starts_with(line));
    for want in [
        "gauge znode_count znode_count  ",
        "gauge num_alive_connections ",
        "gauge outstanding_requests ",
        "gauge ephemerals_count ",
        "gauge watch_count ",
        "counter corral_sessions_ended corral_sessions_ended_total cause=closed_by_client ",
        "counter corral_sessions_ended corral_sessions_ended_total cause=member_lost 0.0",
        "histogram corral_session_heartbeat_age_ratio corral_session_heartbeat_age_ratio_bucket ",
        "counter corral_keeper_stalls corral_keeper_stalls_total  ",
        "counter corral_keeper_stalled_seconds corral_keeper_stalled_seconds_total  ",
    ] {
        assert!(has(want), "no {want:?} in:\n{parsed}\nfrom:\n{text}");
    }
    let closed: f64 = parsed
        .lines()
        .find(|l| l.contains("cause=closed_by_client"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .expect("a count");
    // The readiness probe's session and ours.
    assert!(closed >= 2.0, "{parsed}");
}
