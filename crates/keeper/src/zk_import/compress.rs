//! Decompression of the snapshots ZooKeeper writes with
//! `zookeeper.snapshot.compression.method`: `gz` (a gzip member, RFC 1952 around RFC 1951
//! deflate) and `snappy` (snappy-java's stream: an 8-byte magic, two version ints, then
//! length-prefixed raw snappy blocks). The codecs are flate2's and snap's; only
//! snappy-java's framing is read here. Errors say where in the compressed file they are (for
//! gzip, how far the decoder had read).

const SNAPPY_MAGIC: &[u8; 8] = b"\x82SNAPPY\0";

/// How a snapshot file is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    None,
    Gzip,
    Snappy,
}

/// By content first (the magic numbers), then by ZooKeeper's name suffix.
pub(crate) fn method(name: &str, bytes: &[u8]) -> Method {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        Method::Gzip
    } else if bytes.starts_with(SNAPPY_MAGIC) {
        Method::Snappy
    } else if name.ends_with(".gz") {
        Method::Gzip
    } else if name.ends_with(".snappy") {
        Method::Snappy
    } else {
        Method::None
    }
}

/// Decompression failed at this offset of the compressed bytes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Bad {
    pub offset: usize,
    pub what: String,
    /// The data ends too early (as when ZooKeeper stopped while writing the file).
    pub truncated: bool,
}

fn bad(offset: usize, what: impl Into<String>) -> Bad {
    Bad {
        offset,
        what: what.into(),
        truncated: false,
    }
}

fn short(offset: usize, what: impl Into<String>) -> Bad {
    Bad {
        truncated: true,
        ..bad(offset, what)
    }
}

// ---- snappy ----

/// snappy-java's stream format (SnappyOutputStream): the magic, two version ints, then raw
/// snappy blocks each behind a big-endian length.
pub(crate) fn snappy_stream(src: &[u8]) -> Result<Vec<u8>, Bad> {
    if !src.starts_with(SNAPPY_MAGIC) || src.len() < 16 {
        return Err(bad(0, "not a snappy-java stream (bad magic)"));
    }
    let mut out = Vec::new();
    let mut decoder = snap::raw::Decoder::new();
    let mut at = 16;
    while at < src.len() {
        let len = src
            .get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| short(at, "block length cut short"))?;
        let block = src
            .get(at + 4..at + 4 + len)
            .ok_or_else(|| short(at, format!("block of {len} bytes cut short")))?;
        let decoded = decoder
            .decompress_vec(block)
            .map_err(|e| bad(at + 4, format!("block: {e}")))?;
        out.extend_from_slice(&decoded);
        at += 4 + len;
    }
    Ok(out)
}

// ---- gzip ----

/// One gzip member (Java's GZIPOutputStream), its CRC and length checked.
pub(crate) fn gzip(src: &[u8]) -> Result<Vec<u8>, Bad> {
    use std::io::Read;
    let mut decoder = flate2::bufread::GzDecoder::new(src);
    let mut out = Vec::new();
    match decoder.read_to_end(&mut out) {
        Ok(_) => Ok(out),
        Err(e) => {
            let offset = src.len() - decoder.get_ref().len();
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Err(short(offset, format!("cut short: {e}")))
            } else {
                Err(bad(offset, e.to_string()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snappy_java_framing_around_raw_blocks() {
        let text = b"abcabcabcab".repeat(100);
        let mut stream = SNAPPY_MAGIC.to_vec();
        stream.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]);
        for half in text.chunks(600) {
            let block = snap::raw::Encoder::new()
                .compress_vec(half)
                .expect("compress");
            stream.extend_from_slice(&(block.len() as u32).to_be_bytes());
            stream.extend_from_slice(&block);
        }
        assert_eq!(snappy_stream(&stream).expect("decodes"), text);
        // Cut inside the last block: truncated, with the offset of that block.
        let cut = snappy_stream(&stream[..stream.len() - 3]).expect_err("cut short");
        assert!(cut.truncated, "{cut:?}");
        // A damaged block is an error, not a panic.
        let mut damaged = stream.clone();
        let n = damaged.len();
        damaged[n - 5..].fill(0xff);
        assert!(snappy_stream(&damaged).is_err());
        assert!(snappy_stream(b"not snappy at all").is_err());
    }

    #[test]
    fn gzip_members_are_checked() {
        use std::io::Write;
        let text = b"hello hello hello\n".repeat(50);
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&text).expect("compress");
        let gz = enc.finish().expect("finish");
        assert_eq!(gzip(&gz).expect("decodes"), text);
        let cut = gzip(&gz[..gz.len() / 2]).expect_err("cut short");
        assert!(cut.truncated, "{cut:?}");
        // A wrong CRC in the trailer is corruption.
        let mut crc = gz.clone();
        let n = crc.len();
        crc[n - 8] ^= 0xff;
        let e = gzip(&crc).expect_err("bad crc");
        assert!(!e.truncated, "{e:?}");
    }
}
