//! Jute, ZooKeeper's binary encoding: big-endian ints and longs, one-byte booleans,
//! length-prefixed buffers, strings and vectors (a length of -1 means null, read as empty).

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record truncated: needed {needed} more bytes at offset {offset}")]
    Truncated { offset: usize, needed: usize },
    #[error("invalid length {len} at offset {offset}")]
    BadLength { offset: usize, len: i32 },
    #[error("string at offset {offset} is not UTF-8")]
    BadUtf8 { offset: usize },
    #[error("unknown opcode {0}")]
    UnknownOpCode(i32),
    #[error("opcode {0} is not allowed inside multi")]
    BadMultiOp(i32),
    #[error("{0} trailing bytes after record")]
    TrailingBytes(usize),
    #[error("{what}: unknown value {value}")]
    BadValue { what: &'static str, value: i64 },
}

/// Cursor over a received frame body.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    pub fn position(&self) -> usize {
        self.pos
    }
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated {
                offset: self.pos,
                needed: n - self.remaining(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    pub fn i32(&mut self) -> Result<i32, DecodeError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn i64(&mut self) -> Result<i64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }
    pub fn bool(&mut self) -> Result<bool, DecodeError> {
        Ok(self.u8()? != 0)
    }
    /// One raw byte (jute's `byte`, unsigned here: corral's own tags and versions).
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    /// Every byte not read yet: a body that runs to the end of its record.
    pub fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }
    /// A length prefix; -1 (null) reads as 0. Lengths larger than what is left are refused
    /// before anything is allocated, so a hostile length cannot make us reserve memory.
    fn len(&mut self, elem_min: usize) -> Result<usize, DecodeError> {
        let offset = self.pos;
        let len = self.i32()?;
        if len == -1 {
            return Ok(0);
        }
        if len < 0 || (len as usize).saturating_mul(elem_min) > self.remaining() {
            return Err(DecodeError::BadLength { offset, len });
        }
        Ok(len as usize)
    }
    pub fn buffer(&mut self) -> Result<Vec<u8>, DecodeError> {
        let n = self.len(1)?;
        Ok(self.take(n)?.to_vec())
    }
    /// A buffer that keeps null (-1) apart from empty: znode data is one.
    pub fn nullable_buffer(&mut self) -> Result<Option<Vec<u8>>, DecodeError> {
        let offset = self.pos;
        let len = self.i32()?;
        if len == -1 {
            return Ok(None);
        }
        if len < 0 || len as usize > self.remaining() {
            return Err(DecodeError::BadLength { offset, len });
        }
        Ok(Some(self.take(len as usize)?.to_vec()))
    }
    pub fn string(&mut self) -> Result<String, DecodeError> {
        let offset = self.pos;
        let n = self.len(1)?;
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| DecodeError::BadUtf8 { offset })
    }
    pub fn vec<T: Jute>(&mut self) -> Result<Vec<T>, DecodeError> {
        let n = self.len(T::MIN_SIZE)?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(T::read(self)?);
        }
        Ok(v)
    }
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }
}

/// Output buffer for one frame body.
#[derive(Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Writer {
            buf: Vec::with_capacity(64),
        }
    }
    pub fn i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn bool(&mut self, v: bool) {
        self.buf.push(v as u8);
    }
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn buffer(&mut self, v: &[u8]) {
        self.i32(v.len() as i32);
        self.buf.extend_from_slice(v);
    }
    pub fn string(&mut self, v: &str) {
        self.buffer(v.as_bytes());
    }
    pub fn nullable_buffer(&mut self, v: &Option<Vec<u8>>) {
        match v {
            Some(b) => self.buffer(b),
            None => self.i32(-1),
        }
    }
    pub fn vec<T: Jute>(&mut self, v: &[T]) {
        self.i32(v.len() as i32);
        for item in v {
            item.write(self);
        }
    }
}

/// A value with a jute encoding.
pub trait Jute: Sized {
    /// Smallest encoded size, used to reject impossible vector lengths early.
    const MIN_SIZE: usize;
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError>;
    fn write(&self, w: &mut Writer);

    fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.write(&mut w);
        w.buf
    }
    /// Decodes a whole body, refusing trailing bytes.
    fn from_bytes(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(b);
        let v = Self::read(&mut r)?;
        r.finish()?;
        Ok(v)
    }
}

impl Jute for i32 {
    const MIN_SIZE: usize = 4;
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.i32()
    }
    fn write(&self, w: &mut Writer) {
        w.i32(*self)
    }
}
impl Jute for i64 {
    const MIN_SIZE: usize = 8;
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.i64()
    }
    fn write(&self, w: &mut Writer) {
        w.i64(*self)
    }
}
impl Jute for bool {
    const MIN_SIZE: usize = 1;
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.bool()
    }
    fn write(&self, w: &mut Writer) {
        w.bool(*self)
    }
}
impl Jute for String {
    const MIN_SIZE: usize = 4;
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.string()
    }
    fn write(&self, w: &mut Writer) {
        w.string(self)
    }
}
impl Jute for Vec<u8> {
    const MIN_SIZE: usize = 4;
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.buffer()
    }
    fn write(&self, w: &mut Writer) {
        w.buffer(self)
    }
}

/// Declares a jute record: a struct whose fields are encoded in declaration order.
/// Vectors of records are declared as `Vec<T>` fields with `vec` marker so that
/// `Vec<u8>` (a buffer) and `Vec<T>` (a vector) stay distinct.
#[macro_export]
macro_rules! record {
    ($(#[$m:meta])* $name:ident { $($(#[$fm:meta])* $field:ident : $kind:tt $(<$inner:ty>)?),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
        pub struct $name { $($(#[$fm])* pub $field: $crate::record!(@ty $kind $(<$inner>)?)),* }
        impl $crate::jute::Jute for $name {
            const MIN_SIZE: usize = 0 $(+ $crate::record!(@min $kind))*;
            #[allow(unused_variables)]
            fn read(r: &mut $crate::jute::Reader<'_>) -> Result<Self, $crate::jute::DecodeError> {
                Ok($name { $($field: $crate::record!(@read r $kind)),* })
            }
            #[allow(unused_variables)]
            fn write(&self, w: &mut $crate::jute::Writer) {
                $($crate::record!(@write w self.$field, $kind);)*
            }
        }
    };
    (@ty int) => { i32 };
    (@ty long) => { i64 };
    (@ty boolean) => { bool };
    (@ty ustring) => { String };
    (@ty buffer) => { Vec<u8> };
    (@ty nbuffer) => { Option<Vec<u8>> };
    (@ty vector<$t:ty>) => { Vec<$t> };
    (@ty $t:ty) => { $t };
    (@min int) => { 4 };
    (@min long) => { 8 };
    (@min boolean) => { 1 };
    (@min ustring) => { 4 };
    (@min buffer) => { 4 };
    (@min nbuffer) => { 4 };
    (@min vector) => { 4 };
    (@min $t:ty) => { <$t as $crate::jute::Jute>::MIN_SIZE };
    (@read $r:ident int) => { $r.i32()? };
    (@read $r:ident long) => { $r.i64()? };
    (@read $r:ident boolean) => { $r.bool()? };
    (@read $r:ident ustring) => { $r.string()? };
    (@read $r:ident buffer) => { $r.buffer()? };
    (@read $r:ident nbuffer) => { $r.nullable_buffer()? };
    (@read $r:ident vector) => { $r.vec()? };
    (@read $r:ident $t:ty) => { <$t as $crate::jute::Jute>::read($r)? };
    (@write $w:ident $e:expr, int) => { $w.i32($e) };
    (@write $w:ident $e:expr, long) => { $w.i64($e) };
    (@write $w:ident $e:expr, boolean) => { $w.bool($e) };
    (@write $w:ident $e:expr, ustring) => { $w.string(&$e) };
    (@write $w:ident $e:expr, buffer) => { $w.buffer(&$e) };
    (@write $w:ident $e:expr, nbuffer) => { $w.nullable_buffer(&$e) };
    (@write $w:ident $e:expr, vector) => { $w.vec(&$e) };
    (@write $w:ident $e:expr, $t:ty) => { $crate::jute::Jute::write(&$e, $w) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_and_the_rest_read_in_place_and_stop_at_the_end() {
        let mut r = Reader::new(&[7, 0, 1, 0xff, 0, 0, 0, 2, 9]);
        assert_eq!(r.u8(), Ok(7));
        assert_eq!(r.bool(), Ok(false));
        assert_eq!(r.bool(), Ok(true));
        assert_eq!(r.u8(), Ok(0xff));
        assert_eq!(r.i32(), Ok(2));
        assert_eq!(r.position(), 8);
        assert_eq!(r.rest(), &[9]);
        assert_eq!(r.remaining(), 0);
        assert_eq!(r.rest(), &[] as &[u8]);
        assert_eq!(r.finish(), Ok(()));
        assert_eq!(
            r.u8(),
            Err(DecodeError::Truncated {
                offset: 9,
                needed: 1
            })
        );
        // A failed read consumes nothing.
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(
            r.i64(),
            Err(DecodeError::Truncated {
                offset: 0,
                needed: 5
            })
        );
        assert_eq!(r.rest(), &[1, 2, 3]);
    }
}
