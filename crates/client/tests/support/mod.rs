//! What the mock-server tests share: reading the client's frames and requests.

use corral_client::proto::frame::{split_frame, DEFAULT_MAX_FRAME};
use corral_client::proto::{Jute, Reader, Request, RequestHeader};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

pub async fn read_frame(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    loop {
        if let Ok(Some((body, used))) = split_frame(buf, DEFAULT_MAX_FRAME) {
            let body = body.to_vec();
            buf.drain(..used);
            return Some(body);
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The next request that is not a ping.
pub async fn next_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(i32, Request)> {
    loop {
        let body = read_frame(s, buf).await?;
        let mut r = Reader::new(&body);
        let h = RequestHeader::read(&mut r).ok()?;
        let req = Request::decode(h.op, &body[r.position()..]).ok()?;
        if req != Request::Ping {
            return Some((h.xid, req));
        }
    }
}
