//! Framing: every packet is a 4-byte big-endian length followed by that many bytes.
//! The length is bounded by jute.maxbuffer so a peer cannot make us buffer without limit.

use thiserror::Error;

/// ZooKeeper's default jute.maxbuffer: 1 MiB - 1.
pub const DEFAULT_MAX_FRAME: usize = 0xfffff;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame length {len} is outside 0..={max} (jute.maxbuffer)")]
    BadLength { len: i64, max: usize },
}

/// Looks for one complete frame at the start of `buf`. Returns the frame body and the
/// number of bytes it occupies (length prefix included), or None if more bytes are needed.
pub fn split_frame(buf: &[u8], max: usize) -> Result<Option<(&[u8], usize)>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if len < 0 || len as usize > max {
        return Err(FrameError::BadLength {
            len: len as i64,
            max,
        });
    }
    let total = 4 + len as usize;
    if buf.len() < total {
        return Ok(None);
    }
    Ok(Some((&buf[4..total], total)))
}

/// Prefixes a body with its length.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as i32).to_be_bytes());
    out.extend_from_slice(body);
    out
}
