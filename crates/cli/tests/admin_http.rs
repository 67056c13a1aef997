//! The HTTP admin server: ZooKeeper's `/commands/<name>` JSON (`command`, `error` and the
//! command's fields), corral's `sessions` and `obituaries`, and a taken admin port refused at
//! start when the operator asked for it.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{free_port, CorralServer, RawConn};
use corral_proto::ConnectRequest;
use serde_json::Value;

/// GET `path` over HTTP/1.1: the status code and the body.
fn get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the admin port");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let (head, body) = out.split_once("\r\n\r\n").expect("a header and a body");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status code");
    (status, body.to_string())
}

fn json(port: u16, command: &str) -> Value {
    let (status, body) = get(port, &format!("/commands/{command}"));
    assert_eq!(status, 200, "{command}: {body}");
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{command}: {e}: {body}"));
    assert_eq!(v["command"], command, "{body}");
    v
}

#[test]
fn commands_answer_json_with_sessions_and_obituaries() {
    let admin = free_port();
    let server = CorralServer::start(&format!(
        "admin.enableServer=true\nadmin.serverPort={admin}\n"
    ));
    let ruok = json(admin, "ruok");
    assert!(ruok["error"].is_null(), "{ruok}");
    assert_eq!(json(admin, "is_read_only")["read_only"], false);
    let unknown = json(admin, "nosuch");
    assert_eq!(unknown["error"], "Unknown command: nosuch");
    let monitor = json(admin, "monitor");
    assert_eq!(monitor["server_state"], "standalone", "{monitor}");
    assert!(
        monitor["znode_count"].as_i64().is_some_and(|n| n >= 4),
        "{monitor}"
    );
    let (status, list) = get(admin, "/commands");
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
    let sessions = json(admin, "sessions");
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
    let obits = json(admin, "obituaries");
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
