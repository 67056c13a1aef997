//! The on-disk format of one WAL segment: file naming, record framing and the recovery scan.
//!
//! A segment is a preallocated, zero-filled file named after the log index of its first record
//! (`<20 decimal digits>.log`). It holds records back to back:
//!
//! ```text
//! length: u32 BE | crc32c(payload): u32 BE | payload = index: u64 BE | body
//! ```
//!
//! A length of 0 is the end of data: the zeros of the preallocation, or of a cut tail. The
//! index inside the payload lets recovery prove that records are consecutive without trusting
//! file names alone.
//!
//! Owns: encoding a record and classifying what a scan finds. Must not: open files, decide what
//! to do about a bad record (recovery in `mod.rs` does: cut a torn tail, refuse corruption in the
//! middle), or know what a body means (consensus encodes it).

use std::ops::Range;

/// Bytes of the length and checksum fields in front of every payload.
pub(crate) const HEADER: usize = 8;
/// Bytes of the log index at the start of every payload.
pub(crate) const INDEX: usize = 8;

/// File name of the segment whose first record has log index `first`.
pub(crate) fn segment_name(first: u64) -> String {
    format!("{first:020}.log")
}

/// The first log index of a segment file name, `None` for anything else in the directory.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    name.strip_suffix(".log")
        .and_then(super::files::parse_index)
}

/// One framed record: `write_body` appends the body to a buffer that already holds room for the
/// header and the index, and length and checksum are filled in after, so the body is encoded in
/// place instead of being copied into the frame. `body_hint` is the expected body size, to
/// allocate once. Fails with the body's size if it does not fit a u32 length.
pub(crate) fn frame_record(
    index: u64,
    body_hint: usize,
    write_body: impl FnOnce(&mut Vec<u8>),
) -> Result<Vec<u8>, usize> {
    let mut out = Vec::with_capacity(HEADER + INDEX + body_hint);
    out.extend_from_slice(&[0; HEADER]);
    out.extend_from_slice(&index.to_be_bytes());
    write_body(&mut out);
    let payload = &out[HEADER..];
    let len = u32::try_from(payload.len()).map_err(|_| payload.len() - INDEX)?;
    let crc = crc32c::crc32c(payload);
    out[..4].copy_from_slice(&len.to_be_bytes());
    out[4..HEADER].copy_from_slice(&crc.to_be_bytes());
    Ok(out)
}

/// One good record found by [`scan`].
#[derive(Debug, Clone)]
pub(crate) struct Scanned {
    pub index: u64,
    /// Byte offset of the record's header in the segment.
    pub offset: u64,
    /// The body (payload without the index) within the scanned bytes.
    pub body: Range<usize>,
}

/// How a scan stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ScanEnd {
    /// A zero length or the end of the file exactly at a record boundary.
    Clean { end: u64 },
    /// A record that cannot be trusted starts at `offset`.
    Bad {
        offset: u64,
        reason: String,
        /// Whether a valid record follows it: then this is not a torn write at the tail but
        /// damage in the middle of the log.
        followed_by_valid: bool,
    },
}

/// Result of parsing the record that starts at some offset.
pub(crate) enum Parsed {
    End,
    Good { index: u64, next: usize },
    Bad { reason: String, next: Option<usize> },
}

fn be_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_be_bytes(a)
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// Parses the record at `at`, checking its frame and checksum (not its index's place in the
/// log: that is the caller's to know).
pub(crate) fn parse_at(bytes: &[u8], at: usize) -> Parsed {
    let rest = &bytes[at..];
    if rest.is_empty() {
        return Parsed::End;
    }
    if rest.len() < HEADER {
        if rest.iter().all(|&b| b == 0) {
            return Parsed::End;
        }
        return Parsed::Bad {
            reason: format!("partial record header ({} bytes)", rest.len()),
            next: None,
        };
    }
    let len = be_u32(rest) as usize;
    if len == 0 {
        return Parsed::End;
    }
    if len < INDEX {
        return Parsed::Bad {
            reason: format!("record length {len} is shorter than its log index"),
            next: Some(at + HEADER + len),
        };
    }
    if rest.len() < HEADER + len {
        return Parsed::Bad {
            reason: format!(
                "record length {len} runs past the end of the file ({} bytes left)",
                rest.len() - HEADER
            ),
            next: None,
        };
    }
    let stored = be_u32(&rest[4..]);
    let payload = &rest[HEADER..HEADER + len];
    let actual = crc32c::crc32c(payload);
    if stored != actual {
        return Parsed::Bad {
            reason: format!("checksum mismatch (stored {stored:#010x}, computed {actual:#010x})"),
            next: Some(at + HEADER + len),
        };
    }
    Parsed::Good {
        index: be_u64(payload),
        next: at + HEADER + len,
    }
}

/// Reads records from the start of a segment whose first record must have index `first`.
/// Returns the good records and how the scan ended; never panics on any input.
pub(crate) fn scan(bytes: &[u8], first: u64) -> (Vec<Scanned>, ScanEnd) {
    let mut out = Vec::new();
    let mut at = 0usize;
    let mut expected = first;
    loop {
        match parse_at(bytes, at) {
            Parsed::End => return (out, ScanEnd::Clean { end: at as u64 }),
            Parsed::Good { index, next } => {
                if index != expected {
                    // A checksummed record out of sequence is not a torn write: something
                    // rewrote the log. Always treated as damage in the middle.
                    return (
                        out,
                        ScanEnd::Bad {
                            offset: at as u64,
                            reason: format!(
                                "record has log index {index} where {expected} was expected"
                            ),
                            followed_by_valid: true,
                        },
                    );
                }
                out.push(Scanned {
                    index,
                    offset: at as u64,
                    body: at + HEADER + INDEX..next,
                });
                expected += 1;
                at = next;
            }
            Parsed::Bad { reason, next } => {
                let followed_by_valid = next.is_some_and(|n| {
                    n <= bytes.len() && matches!(parse_at(bytes, n), Parsed::Good { .. })
                });
                return (
                    out,
                    ScanEnd::Bad {
                        offset: at as u64,
                        reason,
                        followed_by_valid,
                    },
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(records: &[(u64, &[u8])], size: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, b) in records {
            let rec = frame_record(*i, b.len(), |o| o.extend_from_slice(b)).unwrap();
            out.extend_from_slice(&rec);
        }
        out.resize(size.max(out.len()), 0);
        out
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(segment_name(42), "00000000000000000042.log");
        assert_eq!(parse_segment_name(&segment_name(42)), Some(42));
        assert_eq!(parse_segment_name("42.log"), None);
        assert_eq!(parse_segment_name("prealloc.tmp"), None);
    }

    /// The frame as the format defines it, written field by field: what is on disk must not
    /// change.
    #[test]
    fn frame_layout() {
        let rec = frame_record(0x0102, 0, |o| o.extend_from_slice(b"xyz")).unwrap();
        let mut payload = 0x0102u64.to_be_bytes().to_vec();
        payload.extend_from_slice(b"xyz");
        let mut want = 11u32.to_be_bytes().to_vec();
        want.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
        want.extend_from_slice(&payload);
        assert_eq!(rec, want);
    }

    #[test]
    fn clean_scan_stops_at_zeros() {
        let b = segment(&[(5, b"a"), (6, b"bc")], 256);
        let (recs, end) = scan(&b, 5);
        assert_eq!(recs.len(), 2);
        assert_eq!(&b[recs[1].body.clone()], b"bc");
        assert_eq!(end, ScanEnd::Clean { end: 2 * 16 + 3 });
    }

    #[test]
    fn bad_crc_in_the_middle_is_followed_by_valid() {
        let mut b = segment(&[(1, b"aaaa"), (2, b"bbbb"), (3, b"cccc")], 256);
        b[20 + HEADER + INDEX] ^= 1; // body of record 2
        let (recs, end) = scan(&b, 1);
        assert_eq!(recs.len(), 1);
        assert!(matches!(
            end,
            ScanEnd::Bad {
                offset: 20,
                followed_by_valid: true,
                ..
            }
        ));
    }

    #[test]
    fn torn_last_record() {
        let b = segment(&[(1, b"aaaa"), (2, b"bbbb")], 0);
        let (recs, end) = scan(&b[..30], 1);
        assert_eq!(recs.len(), 1);
        assert!(matches!(
            end,
            ScanEnd::Bad {
                offset: 20,
                followed_by_valid: false,
                ..
            }
        ));
    }

    #[test]
    fn garbage_never_panics() {
        for seed in 0..200u32 {
            let b: Vec<u8> = (0..97u32)
                .map(|i| (i.wrapping_mul(seed).wrapping_add(seed) % 251) as u8)
                .collect();
            let _ = scan(&b, 0);
        }
    }
}
