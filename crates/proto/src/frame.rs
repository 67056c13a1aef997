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

/// Bytes read from a stream, cut into frames. Consumed frames are dropped together when
/// more input arrives, not one at a time: shifting the rest of the buffer after every frame
/// makes many pipelined frames in one read cost quadratic copying.
#[derive(Debug, Default)]
pub struct FrameBuffer {
    buf: Vec<u8>,
    /// Where the unconsumed bytes begin.
    start: usize,
}

impl FrameBuffer {
    /// A buffer that already holds `bytes` (read together with an earlier reply).
    pub fn with(bytes: Vec<u8>) -> FrameBuffer {
        FrameBuffer {
            buf: bytes,
            start: 0,
        }
    }

    /// The body of the next complete frame, consumed; None if more bytes are needed.
    pub fn next_frame(&mut self, max: usize) -> Result<Option<&[u8]>, FrameError> {
        match split_frame(&self.buf[self.start..], max)? {
            None => Ok(None),
            Some((body, used)) => {
                let body_start = self.start + 4;
                let body_end = body_start + body.len();
                self.start += used;
                Ok(Some(&self.buf[body_start..body_end]))
            }
        }
    }

    /// Appends newly read bytes.
    pub fn extend(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The bytes not consumed yet.
    pub fn into_rest(mut self) -> Vec<u8> {
        self.buf.drain(..self.start);
        self.buf
    }
}

/// Prefixes a body with its length.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as i32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_buffer_cuts_pipelined_and_split_frames() {
        let mut fb = FrameBuffer::default();
        let mut wire = Vec::new();
        for body in [&b"one"[..], b"", b"three"] {
            wire.extend(frame(body));
        }
        // The first two frames whole, the third split across two reads.
        fb.extend(&wire[..wire.len() - 2]);
        assert_eq!(fb.next_frame(16), Ok(Some(&b"one"[..])));
        assert_eq!(fb.next_frame(16), Ok(Some(&b""[..])));
        assert_eq!(fb.next_frame(16), Ok(None));
        fb.extend(&wire[wire.len() - 2..]);
        assert_eq!(fb.next_frame(16), Ok(Some(&b"three"[..])));
        assert_eq!(fb.next_frame(16), Ok(None));
        fb.extend(&frame(b"more than four"));
        assert_eq!(
            fb.next_frame(4),
            Err(FrameError::BadLength { len: 14, max: 4 })
        );
        let mut fb = FrameBuffer::with(frame(b"x"));
        fb.extend(b"\x00\x00");
        assert_eq!(fb.next_frame(16), Ok(Some(&b"x"[..])));
        assert_eq!(fb.into_rest(), vec![0, 0]);
    }
}
