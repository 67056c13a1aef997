//! Decompression of the snapshots ZooKeeper writes with
//! `zookeeper.snapshot.compression.method`: `gz` (a gzip member, RFC 1952 around RFC 1951
//! deflate) and `snappy` (snappy-java's stream: an 8-byte magic, two version ints, then
//! length-prefixed raw snappy blocks). Both written from the specifications, so the import
//! needs no compression crate. Input is untrusted: every length and back-reference is
//! checked, and errors say where in the compressed file they are.

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

/// snappy-java's stream format (SnappyOutputStream).
pub(crate) fn snappy_stream(src: &[u8]) -> Result<Vec<u8>, Bad> {
    if !src.starts_with(SNAPPY_MAGIC) || src.len() < 16 {
        return Err(bad(0, "not a snappy-java stream (bad magic)"));
    }
    let mut out = Vec::new();
    let mut at = 16;
    while at < src.len() {
        let len = src
            .get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| short(at, "block length cut short"))?;
        let block = src
            .get(at + 4..at + 4 + len)
            .ok_or_else(|| short(at, format!("block of {len} bytes cut short")))?;
        snappy_block(block, &mut out).map_err(|b| Bad {
            offset: at + 4 + b.offset,
            ..b
        })?;
        at += 4 + len;
    }
    Ok(out)
}

/// One raw snappy block appended to `out`; error offsets are within the block.
fn snappy_block(src: &[u8], out: &mut Vec<u8>) -> Result<(), Bad> {
    let (expected, mut i) = {
        let (mut v, mut shift, mut i) = (0u64, 0u32, 0usize);
        loop {
            let b = *src.get(i).ok_or_else(|| short(i, "length cut short"))?;
            v |= u64::from(b & 0x7f) << shift;
            i += 1;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 28 {
                return Err(bad(0, "length too long"));
            }
        }
        (v as usize, i)
    };
    let start = out.len();
    let end = start + expected;
    while i < src.len() {
        let at = i;
        let tag = src[i];
        i += 1;
        let take = |i: &mut usize, n: usize| -> Result<usize, Bad> {
            let b = src
                .get(*i..*i + n)
                .ok_or_else(|| short(at, "element cut short"))?;
            *i += n;
            Ok(b.iter()
                .rev()
                .fold(0usize, |v, &x| (v << 8) | usize::from(x)))
        };
        let (len, offset) = match tag & 3 {
            0 => {
                let mut len = usize::from(tag >> 2);
                if len >= 60 {
                    len = take(&mut i, len - 59)?;
                }
                let lit = src
                    .get(i..i + len + 1)
                    .ok_or_else(|| short(at, "literal cut short"))?;
                if out.len() + lit.len() > end {
                    return Err(bad(at, "more data than the block announced"));
                }
                out.extend_from_slice(lit);
                i += len + 1;
                continue;
            }
            1 => (
                usize::from((tag >> 2) & 7) + 4,
                (usize::from(tag >> 5) << 8) | take(&mut i, 1)?,
            ),
            2 => (usize::from(tag >> 2) + 1, take(&mut i, 2)?),
            _ => (usize::from(tag >> 2) + 1, take(&mut i, 4)?),
        };
        if offset == 0 || offset > out.len() - start {
            return Err(bad(
                at,
                format!("copy from {offset} bytes back, before the block"),
            ));
        }
        if out.len() + len > end {
            return Err(bad(at, "more data than the block announced"));
        }
        // Byte by byte: a copy may overlap what it writes.
        for _ in 0..len {
            let b = out[out.len() - offset];
            out.push(b);
        }
    }
    if out.len() != end {
        return Err(bad(src.len(), "less data than the block announced"));
    }
    Ok(())
}

// ---- gzip / deflate ----

/// A gzip member (what java.util.zip.GZIPOutputStream writes).
pub(crate) fn gzip(src: &[u8]) -> Result<Vec<u8>, Bad> {
    if src.len() < 18 || src[0] != 0x1f || src[1] != 0x8b || src[2] != 8 {
        return Err(bad(0, "not a gzip (deflate) stream"));
    }
    let flags = src[3];
    let mut at = 10;
    if flags & 4 != 0 {
        let n = src
            .get(at..at + 2)
            .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
            .ok_or_else(|| short(at, "header cut short"))?;
        at += 2 + n;
    }
    for flag in [8u8, 16] {
        if flags & flag != 0 {
            let zero = src
                .get(at..)
                .and_then(|r| r.iter().position(|&b| b == 0))
                .ok_or_else(|| short(at, "header cut short"))?;
            at += zero + 1;
        }
    }
    if flags & 2 != 0 {
        at += 2;
    }
    let mut bits = Bits {
        src,
        pos: at,
        buf: 0,
        n: 0,
    };
    let out = inflate(&mut bits)?;
    // The trailer: CRC32 (not checked: ZooKeeper's own Adler32 seal covers the content)
    // and the length modulo 2^32.
    let t = bits.pos;
    let size = src
        .get(t + 4..t + 8)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| short(t, "gzip trailer cut short"))?;
    if size != out.len() as u32 {
        return Err(bad(t + 4, "gzip trailer's length does not match the data"));
    }
    Ok(out)
}

/// Reads bits least significant first, as deflate packs them.
struct Bits<'a> {
    src: &'a [u8],
    pos: usize,
    buf: u64,
    n: u32,
}

impl Bits<'_> {
    fn get(&mut self, n: u32) -> Result<usize, Bad> {
        while self.n < n {
            let b = *self
                .src
                .get(self.pos)
                .ok_or_else(|| short(self.pos, "deflate data cut short"))?;
            self.buf |= u64::from(b) << self.n;
            self.pos += 1;
            self.n += 8;
        }
        let v = (self.buf & ((1u64 << n) - 1)) as usize;
        self.buf >>= n;
        self.n -= n;
        Ok(v)
    }

    /// Offset of the byte holding the next bit.
    fn byte_at(&self) -> usize {
        self.pos - (self.n as usize).div_ceil(8)
    }

    /// Drops the bits left in the current byte (before a stored block).
    fn align(&mut self) {
        self.buf = 0;
        self.n = 0;
    }
}

/// A canonical Huffman code: how many codes of each length, and the symbols in code order.
struct Huffman {
    count: [u16; 16],
    symbols: Vec<u16>,
}

impl Huffman {
    fn new(lengths: &[u8], at: usize) -> Result<Huffman, Bad> {
        let mut count = [0u16; 16];
        for &l in lengths {
            count[usize::from(l)] += 1;
        }
        count[0] = 0;
        let mut left = 1i32;
        for &c in &count[1..] {
            left = (left << 1) - i32::from(c);
            if left < 0 {
                return Err(bad(at, "over-subscribed Huffman code"));
            }
        }
        let mut offs = [0u16; 16];
        for len in 1..15 {
            offs[len + 1] = offs[len] + count[len];
        }
        let mut symbols = vec![0u16; lengths.len()];
        for (sym, &l) in lengths.iter().enumerate() {
            if l != 0 {
                let slot = &mut offs[usize::from(l)];
                symbols[usize::from(*slot)] = sym as u16;
                *slot += 1;
            }
        }
        Ok(Huffman { count, symbols })
    }

    fn decode(&self, bits: &mut Bits<'_>) -> Result<usize, Bad> {
        let at = bits.byte_at();
        let (mut code, mut first, mut index) = (0i32, 0i32, 0i32);
        for len in 1..16 {
            code |= bits.get(1)? as i32;
            let count = i32::from(self.count[len]);
            if code - first < count {
                return self
                    .symbols
                    .get((index + code - first) as usize)
                    .map(|&s| usize::from(s))
                    .ok_or_else(|| bad(at, "bad Huffman code"));
            }
            index += count;
            first = (first + count) << 1;
            code <<= 1;
        }
        Err(bad(at, "bad Huffman code"))
    }
}

const LEN_BASE: [usize; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LEN_EXTRA: [u32; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const DIST_BASE: [usize; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
const DIST_EXTRA: [u32; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];
/// The order code-length code lengths come in.
const CLEN_ORDER: [usize; 19] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];

fn inflate(bits: &mut Bits<'_>) -> Result<Vec<u8>, Bad> {
    let mut out = Vec::new();
    loop {
        let at = bits.byte_at();
        let last = bits.get(1)? == 1;
        match bits.get(2)? {
            0 => {
                bits.align();
                let p = bits.pos;
                let hdr = bits
                    .src
                    .get(p..p + 4)
                    .ok_or_else(|| short(p, "stored block cut short"))?;
                let len = usize::from(u16::from_le_bytes([hdr[0], hdr[1]]));
                if len != usize::from(!u16::from_le_bytes([hdr[2], hdr[3]])) {
                    return Err(bad(p, "stored block length check fails"));
                }
                let data = bits
                    .src
                    .get(p + 4..p + 4 + len)
                    .ok_or_else(|| short(p, "stored block cut short"))?;
                out.extend_from_slice(data);
                bits.pos = p + 4 + len;
            }
            1 => {
                let mut lengths = [8u8; 288];
                lengths[144..256].fill(9);
                lengths[256..280].fill(7);
                let lit = Huffman::new(&lengths, at)?;
                let dist = Huffman::new(&[5u8; 30], at)?;
                codes(bits, &lit, &dist, &mut out)?;
            }
            2 => {
                let nlen = bits.get(5)? + 257;
                let ndist = bits.get(5)? + 1;
                let ncode = bits.get(4)? + 4;
                let mut clens = [0u8; 19];
                for &i in &CLEN_ORDER[..ncode] {
                    clens[i] = bits.get(3)? as u8;
                }
                let clen = Huffman::new(&clens, at)?;
                let mut lengths = vec![0u8; nlen + ndist];
                let mut i = 0;
                while i < nlen + ndist {
                    let sym = clen.decode(bits)?;
                    let (value, repeat) = match sym {
                        0..=15 => (sym as u8, 1),
                        16 if i > 0 => (lengths[i - 1], 3 + bits.get(2)?),
                        16 => return Err(bad(at, "repeat with no length before it")),
                        17 => (0, 3 + bits.get(3)?),
                        _ => (0, 11 + bits.get(7)?),
                    };
                    if i + repeat > nlen + ndist {
                        return Err(bad(at, "too many code lengths"));
                    }
                    lengths[i..i + repeat].fill(value);
                    i += repeat;
                }
                let lit = Huffman::new(&lengths[..nlen], at)?;
                let dist = Huffman::new(&lengths[nlen..], at)?;
                codes(bits, &lit, &dist, &mut out)?;
            }
            _ => return Err(bad(at, "invalid deflate block type")),
        }
        if last {
            // The trailer starts at the next whole byte.
            bits.align();
            return Ok(out);
        }
    }
}

fn codes(bits: &mut Bits<'_>, lit: &Huffman, dist: &Huffman, out: &mut Vec<u8>) -> Result<(), Bad> {
    loop {
        let at = bits.byte_at();
        let sym = lit.decode(bits)?;
        match sym {
            0..=255 => out.push(sym as u8),
            256 => return Ok(()),
            _ => {
                let s = sym - 257;
                let len = LEN_BASE.get(s).ok_or_else(|| bad(at, "bad length code"))?
                    + bits.get(LEN_EXTRA[s])?;
                let d = dist.decode(bits)?;
                let back = DIST_BASE
                    .get(d)
                    .ok_or_else(|| bad(at, "bad distance code"))?
                    + bits.get(DIST_EXTRA[d])?;
                if back > out.len() {
                    return Err(bad(at, "distance before the start of the data"));
                }
                for _ in 0..len {
                    let b = out[out.len() - back];
                    out.push(b);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snappy_literals_and_copies() {
        // "abcabcabcab": literal "abc", then a copy of 8 from 3 back (1-byte offset form).
        // Tags: literal of 3 (length-1 in the high six bits), copy with a 1-byte offset.
        let mut block = vec![11u8, 2 << 2, b'a', b'b', b'c', ((8 - 4) << 2) | 1, 3];
        let mut stream = SNAPPY_MAGIC.to_vec();
        stream.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]);
        stream.extend_from_slice(&(block.len() as u32).to_be_bytes());
        stream.extend_from_slice(&block);
        assert_eq!(snappy_stream(&stream).unwrap(), b"abcabcabcab");
        // A copy reaching before the data is refused, not a panic.
        block[6] = 9;
        let mut out = Vec::new();
        assert!(snappy_block(&block, &mut out).is_err());
    }

    #[test]
    fn gzip_of_fixed_and_stored_blocks() {
        // `printf 'hello hello hello\n' | gzip -n` (fixed Huffman codes).
        let gz = [
            0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0xcb, 0x48, 0xcd, 0xc9,
            0xc9, 0x57, 0xc8, 0x40, 0x90, 0x5c, 0x00, 0x3b, 0x7c, 0x8a, 0xdf, 0x12, 0x00, 0x00,
            0x00,
        ];
        assert_eq!(gzip(&gz).unwrap(), b"hello hello hello\n");
        // A stored block: BFINAL=1, BTYPE=00, LEN 3, NLEN !3, "abc".
        let mut st = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0x01, 3, 0, 0xfc, 0xff];
        st.extend_from_slice(b"abc");
        st.extend_from_slice(&[0, 0, 0, 0, 3, 0, 0, 0]);
        assert_eq!(gzip(&st).unwrap(), b"abc");
        // Truncated input is an error with an offset, not a panic.
        assert!(gzip(&gz[..20]).is_err());
    }
}
