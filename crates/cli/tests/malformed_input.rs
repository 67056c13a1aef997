//! Malformed input on the client port: truncated frames, lengths over jute.maxbuffer, garbage
//! before and after the handshake, unknown opcodes, a request in place of the handshake and a
//! handshake with a negative password length. Each offending connection must end the way it
//! ends on real ZooKeeper, within 5 s, while a well-behaved session keeps getting correct
//! replies, new clients can still connect, and the server process stays up.
//!
//! `real_zookeeper_behaves_as_expected` checks the same expectations against real ZooKeeper
//! 3.8 (skipped without it, unless CI is set), so they are ZooKeeper's behaviour, not guesses.

mod common;

use std::time::Duration;

use common::{unique_name, CorralServer, Outcome, RawConn, RealZk, ServerProcess};
use corral_client::{ConnectOptions, Connection};
use corral_proto::{
    ConnectRequest, CreateMode, CreateRequest, ErrorCode, GetDataRequest, Jute, Reader,
    ReplyHeader, Request, RequestHeader, Response, SetDataRequest,
};

/// How long an offending connection may stay open.
const CLOSE_WITHIN: Duration = Duration::from_secs(5);

/// What a case must lead to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// The server closes the connection, sending nothing first.
    ClosedSilently,
    /// The server answers the request with this error code (xid echoed), then closes.
    ErrorReplyThenClosed(ErrorCode),
}

struct Case {
    name: &'static str,
    expect: Expect,
    /// Sends the offending bytes (after its own handshake, if the case needs one).
    run: fn(&str) -> Result<RawConn, String>,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "truncated frame before the handshake",
            expect: Expect::ClosedSilently,
            run: truncated_first,
        },
        Case {
            name: "truncated frame after the handshake",
            expect: Expect::ClosedSilently,
            run: truncated_after,
        },
        Case {
            name: "length 0x7fffffff before the handshake",
            expect: Expect::ClosedSilently,
            run: |a| huge_first(a, 0x7fff_ffff),
        },
        Case {
            name: "length 0x00100001 before the handshake",
            expect: Expect::ClosedSilently,
            run: |a| huge_first(a, 0x0010_0001),
        },
        Case {
            name: "length 0x7fffffff after the handshake",
            expect: Expect::ClosedSilently,
            run: |a| huge_after(a, 0x7fff_ffff),
        },
        Case {
            name: "length 0x00100001 after the handshake",
            expect: Expect::ClosedSilently,
            run: |a| huge_after(a, 0x0010_0001),
        },
        Case {
            name: "negative length before the handshake",
            expect: Expect::ClosedSilently,
            run: |a| huge_first(a, 0xffff_fff0),
        },
        Case {
            name: "random bytes before the handshake",
            expect: Expect::ClosedSilently,
            run: garbage_first,
        },
        Case {
            name: "plausible length, random body as handshake",
            expect: Expect::ClosedSilently,
            run: garbage_frame_first,
        },
        Case {
            name: "valid handshake, then random bytes",
            expect: Expect::ClosedSilently,
            run: garbage_after,
        },
        Case {
            name: "valid handshake, then a 3-byte frame",
            expect: Expect::ClosedSilently,
            run: short_frame_after,
        },
        Case {
            name: "valid handshake, then opcode 999",
            expect: Expect::ErrorReplyThenClosed(ErrorCode::Unimplemented),
            run: unknown_opcode,
        },
        Case {
            name: "getData request instead of the handshake",
            expect: Expect::ClosedSilently,
            run: request_first,
        },
        Case {
            name: "handshake with passwd length -5",
            expect: Expect::ClosedSilently,
            run: negative_passwd,
        },
    ]
}

// ---------------------------------------------------------------------------------------------
// The cases. Each returns the connection so the caller can watch what the server does.

fn connect(addr: &str) -> Result<RawConn, String> {
    RawConn::connect(addr).map_err(|e| format!("connect {addr}: {e}"))
}

fn session(addr: &str) -> Result<RawConn, String> {
    RawConn::new_session(addr).map(|(c, _)| c)
}

fn send(c: &mut RawConn, bytes: &[u8]) -> Result<(), String> {
    c.send_raw(bytes).map_err(|e| format!("send: {e}"))
}

/// Deterministic pseudo-random bytes (xorshift), so a failure can be reproduced.
fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn truncated_first(addr: &str) -> Result<RawConn, String> {
    let mut c = connect(addr)?;
    let mut bytes = 100i32.to_be_bytes().to_vec();
    bytes.extend_from_slice(&noise(1, 10));
    send(&mut c, &bytes)?;
    c.shutdown_write();
    Ok(c)
}

fn truncated_after(addr: &str) -> Result<RawConn, String> {
    let mut c = session(addr)?;
    let mut bytes = 100i32.to_be_bytes().to_vec();
    bytes.extend_from_slice(&noise(2, 10));
    send(&mut c, &bytes)?;
    c.shutdown_write();
    Ok(c)
}

fn huge_first(addr: &str, len: u32) -> Result<RawConn, String> {
    let mut c = connect(addr)?;
    let mut bytes = len.to_be_bytes().to_vec();
    bytes.extend_from_slice(&noise(3, 64));
    send(&mut c, &bytes)?;
    Ok(c)
}

fn huge_after(addr: &str, len: u32) -> Result<RawConn, String> {
    let mut c = session(addr)?;
    let mut bytes = len.to_be_bytes().to_vec();
    bytes.extend_from_slice(&noise(4, 64));
    send(&mut c, &bytes)?;
    Ok(c)
}

fn garbage_first(addr: &str) -> Result<RawConn, String> {
    let mut c = connect(addr)?;
    let mut bytes = noise(5, 256);
    // Not a four-letter word and not a plausible length: high bit set.
    bytes[0] |= 0x80;
    send(&mut c, &bytes)?;
    Ok(c)
}

fn garbage_frame_first(addr: &str) -> Result<RawConn, String> {
    let mut c = connect(addr)?;
    let mut bytes = 40i32.to_be_bytes().to_vec();
    bytes.extend_from_slice(&noise(6, 40));
    send(&mut c, &bytes)?;
    Ok(c)
}

fn garbage_after(addr: &str) -> Result<RawConn, String> {
    let mut c = session(addr)?;
    let mut bytes = noise(7, 256);
    bytes[0] |= 0x80;
    send(&mut c, &bytes)?;
    Ok(c)
}

fn short_frame_after(addr: &str) -> Result<RawConn, String> {
    let mut c = session(addr)?;
    c.send_frame(&[1, 2, 3]).map_err(|e| format!("send: {e}"))?;
    Ok(c)
}

fn unknown_opcode(addr: &str) -> Result<RawConn, String> {
    let mut c = session(addr)?;
    let body = RequestHeader { xid: 7, op: 999 }.to_bytes();
    c.send_frame(&body).map_err(|e| format!("send: {e}"))?;
    Ok(c)
}

fn request_first(addr: &str) -> Result<RawConn, String> {
    let mut c = connect(addr)?;
    let body = Request::GetData(GetDataRequest {
        path: "/".into(),
        watch: false,
    })
    .to_frame_body(1);
    c.send_frame(&body).map_err(|e| format!("send: {e}"))?;
    Ok(c)
}

fn negative_passwd(addr: &str) -> Result<RawConn, String> {
    let mut c = connect(addr)?;
    let mut body = ConnectRequest {
        timeout: 10_000,
        read_only: Some(false),
        ..Default::default()
    }
    .to_bytes();
    // protocol_version(4) last_zxid(8) timeout(4) session_id(8), then the passwd length.
    body[24..28].copy_from_slice(&(-5i32).to_be_bytes());
    body.extend_from_slice(&noise(8, 16));
    c.send_frame(&body).map_err(|e| format!("send: {e}"))?;
    Ok(c)
}

// ---------------------------------------------------------------------------------------------
// Checking one case.

/// Runs one case and checks its expectation. Blocking.
fn check_case(addr: &str, case: &Case) -> Result<String, String> {
    let mut c = (case.run)(addr)?;
    match case.expect {
        Expect::ClosedSilently => match c.outcome(CLOSE_WITHIN) {
            Outcome::Closed(frames) if frames.is_empty() => Ok("closed".to_string()),
            Outcome::Closed(frames) => Err(format!(
                "closed, but first sent {} frame(s): {frames:?}",
                frames.len()
            )),
            Outcome::Open(frames) => Err(format!(
                "still open after {CLOSE_WITHIN:?} (got {} frame(s))",
                frames.len()
            )),
        },
        Expect::ErrorReplyThenClosed(code) => {
            let body = c
                .read_frame(CLOSE_WITHIN)?
                .ok_or_else(|| "closed without answering".to_string())?;
            let hdr = ReplyHeader::read(&mut Reader::new(&body))
                .map_err(|e| format!("reply header: {e}"))?;
            if hdr.xid != 7 || hdr.err != code.code() {
                return Err(format!("expected xid 7 with {code}, got {hdr:?}"));
            }
            match c.outcome(CLOSE_WITHIN) {
                Outcome::Closed(frames) if frames.is_empty() => {
                    Ok(format!("answered {hdr:?}, then closed"))
                }
                Outcome::Closed(frames) => {
                    Err(format!("answered {hdr:?}, then sent {frames:?} and closed"))
                }
                Outcome::Open(_) => Err(format!(
                    "answered {hdr:?}, but still open after {CLOSE_WITHIN:?}"
                )),
            }
        }
    }
}

/// Runs every case against `server` while session A stays connected; returns the failures.
async fn run_all(server: &mut ServerProcess) -> Vec<String> {
    let addr = server.addr();
    let a = Connection::connect(&addr, ConnectOptions::default())
        .await
        .expect("session A connects");
    let path = format!("/{}", unique_name("malformed"));
    let created = a
        .request(Request::Create(CreateRequest {
            path: path.clone(),
            data: Some(b"v0".to_vec()),
            acl: corral_client::open_acl_unsafe(),
            flags: CreateMode::Persistent.code(),
        }))
        .await
        .expect("session A creates its node");
    assert_eq!(created.err, ErrorCode::Ok, "session A creates {path}");

    let mut failures = Vec::new();
    for (i, case) in cases().into_iter().enumerate() {
        let name = case.name;
        let addr2 = addr.clone();
        let result = tokio::task::spawn_blocking(move || check_case(&addr2, &case))
            .await
            .unwrap_or_else(|e| Err(format!("case panicked: {e}")));
        match &result {
            Ok(what) => println!("[{}] {name}: {what}", server.name),
            Err(why) => {
                println!("[{}] {name}: FAILED: {why}", server.name);
                failures.push(format!("{name}: {why}"));
            }
        }

        // Session A is unaffected: a write and a read give the right answers.
        let data = format!("v{}", i + 1);
        let set = a
            .request(Request::SetData(SetDataRequest {
                path: path.clone(),
                data: Some(data.clone().into_bytes()),
                version: i as i32,
            }))
            .await;
        match set {
            Ok(r) if r.err == ErrorCode::Ok => {}
            other => failures.push(format!("after '{name}': session A setData: {other:?}")),
        }
        let got = a
            .request(Request::GetData(GetDataRequest {
                path: path.clone(),
                watch: false,
            }))
            .await;
        match got {
            Ok(r) => match r.response {
                Response::Data(d, stat)
                    if d.as_deref() == Some(data.as_bytes()) && stat.version == i as i32 + 1 => {}
                other => failures.push(format!(
                    "after '{name}': session A getData answered {:?} {other:?}",
                    r.err
                )),
            },
            Err(e) => failures.push(format!("after '{name}': session A getData failed: {e}")),
        }

        // A new client can still connect.
        match Connection::connect(&addr, ConnectOptions::default()).await {
            Ok(b) => {
                if let Err(e) = b.close().await {
                    failures.push(format!("after '{name}': new client's close failed: {e}"));
                }
            }
            Err(e) => failures.push(format!("after '{name}': a new client cannot connect: {e}")),
        }

        if !server.is_running() {
            failures.push(format!("after '{name}': the server process exited"));
            break;
        }
    }
    let _ = a
        .request(Request::Delete(corral_proto::DeleteRequest {
            path,
            version: -1,
        }))
        .await;
    let _ = a.close().await;
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corral_survives_malformed_input() {
    let mut server = CorralServer::start("");
    let failures = run_all(&mut server).await;
    assert!(
        server.is_running(),
        "corral exited; log:\n{}",
        server.log_tail()
    );
    assert!(
        failures.is_empty(),
        "corral:\n  {}\nlog:\n{}",
        failures.join("\n  "),
        server.log_tail()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_zookeeper_behaves_as_expected() {
    let Some(mut zk) = RealZk::start("") else {
        return;
    };
    let failures = run_all(&mut zk).await;
    assert!(zk.is_running(), "zookeeper exited");
    assert!(
        failures.is_empty(),
        "zookeeper does not behave as the test expects:\n  {}",
        failures.join("\n  ")
    );
}
