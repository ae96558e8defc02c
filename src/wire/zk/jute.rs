//! Jute, ZooKeeper's serialization: big-endian `int` (4 bytes) and `long` (8), `boolean` as one
//! byte, `buffer` and `ustring` as an `int` length (-1 = null) then the bytes, `vector` as an
//! `int` count (-1 = null) then the elements. A reader never panics on bad input: every read
//! checks the remaining length and returns [`JuteError`].

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JuteError {
    #[error("record ends early: need {need} bytes at offset {at}, have {have}")]
    Short { at: usize, need: usize, have: usize },
    #[error("negative or oversized length {len} at offset {at}")]
    BadLength { at: usize, len: i32 },
    #[error("null string at offset {at}, where ZooKeeper dereferences it")]
    Null { at: usize },
    #[error("op {op} may not be part of this multi")]
    BadOp { op: i32 },
}

/// Reads jute values from a byte slice.
pub struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, at: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.at
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], JuteError> {
        if self.remaining() < n {
            return Err(JuteError::Short { at: self.at, need: n, have: self.remaining() });
        }
        let s = &self.buf[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }

    pub fn int(&mut self) -> Result<i32, JuteError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn long(&mut self) -> Result<i64, JuteError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }

    pub fn boolean(&mut self) -> Result<bool, JuteError> {
        Ok(self.take(1)?[0] != 0)
    }

    fn len(&mut self) -> Result<Option<usize>, JuteError> {
        let at = self.at;
        let len = self.int()?;
        if len == -1 {
            return Ok(None);
        }
        if len < 0 || len as usize > self.remaining() {
            return Err(JuteError::BadLength { at, len });
        }
        Ok(Some(len as usize))
    }

    /// A `buffer`; null reads as empty (ZooKeeper treats them alike for data).
    pub fn buffer(&mut self) -> Result<Vec<u8>, JuteError> {
        match self.len()? {
            None => Ok(Vec::new()),
            Some(n) => Ok(self.take(n)?.to_vec()),
        }
    }

    /// A `buffer` where null (length -1) and empty differ, as for znode data.
    pub fn buffer_opt(&mut self) -> Result<Option<Vec<u8>>, JuteError> {
        match self.len()? {
            None => Ok(None),
            Some(n) => Ok(Some(self.take(n)?.to_vec())),
        }
    }

    /// A `buffer` that may not be null (see [`Reader::ustring_not_null`]).
    pub fn buffer_not_null(&mut self) -> Result<Vec<u8>, JuteError> {
        let at = self.at;
        self.buffer_opt()?.ok_or(JuteError::Null { at })
    }

    /// A `ustring`, None when null. Bytes that are not UTF-8 are replaced by U+FFFD, as Java's
    /// `new String(bytes, UTF_8)` in ZooKeeper's `readString` does: such a path then fails
    /// validation where ZooKeeper validates (BadArguments) and is simply absent where it does
    /// not (NoNode), instead of failing the whole request.
    pub fn ustring_opt(&mut self) -> Result<Option<String>, JuteError> {
        Ok(self.buffer_opt()?.map(|bytes| {
            String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
        }))
    }

    /// A `ustring`; null reads as empty.
    pub fn ustring(&mut self) -> Result<String, JuteError> {
        Ok(self.ustring_opt()?.unwrap_or_default())
    }

    /// A `ustring` that may not be null: ZooKeeper dereferences these (a path it takes apart,
    /// or looks up), and its NullPointerException answers the request as a MarshallingError.
    pub fn ustring_not_null(&mut self) -> Result<String, JuteError> {
        let at = self.at;
        self.ustring_opt()?.ok_or(JuteError::Null { at })
    }

    /// A `vector`: null reads as empty, and so does any other negative count (jute's
    /// `BinaryIndex` is done at `nelems <= 0`; strings and buffers, by contrast, refuse a
    /// negative length). Each element needs at least one byte, so a count larger than the bytes
    /// left is refused before anything is allocated.
    pub fn vector<T>(&mut self, item: impl FnMut(&mut Self) -> Result<T, JuteError>) -> Result<Vec<T>, JuteError> {
        Ok(self.vector_opt(item)?.unwrap_or_default())
    }

    /// A `vector` that may not be null (-1; other negative counts still read as empty): see
    /// [`Reader::ustring_not_null`].
    pub fn vector_not_null<T>(
        &mut self,
        item: impl FnMut(&mut Self) -> Result<T, JuteError>,
    ) -> Result<Vec<T>, JuteError> {
        let at = self.at;
        self.vector_opt(item)?.ok_or(JuteError::Null { at })
    }

    /// A `vector`, None when null (-1).
    fn vector_opt<T>(
        &mut self,
        mut item: impl FnMut(&mut Self) -> Result<T, JuteError>,
    ) -> Result<Option<Vec<T>>, JuteError> {
        let at = self.at;
        let n = self.int()?;
        if n == -1 {
            return Ok(None);
        }
        if n < 0 {
            return Ok(Some(Vec::new()));
        }
        if n as usize > self.remaining() {
            return Err(JuteError::BadLength { at, len: n });
        }
        let mut out = Vec::with_capacity(n as usize);
        for _ in 0..n {
            out.push(item(self)?);
        }
        Ok(Some(out))
    }
}

/// Writes jute values into a growable buffer.
#[derive(Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Writer {
        Writer::default()
    }

    pub fn int(&mut self, v: i32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn long(&mut self, v: i64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn boolean(&mut self, v: bool) -> &mut Self {
        self.buf.push(u8::from(v));
        self
    }

    pub fn buffer(&mut self, v: &[u8]) -> &mut Self {
        self.int(v.len() as i32);
        self.buf.extend_from_slice(v);
        self
    }

    /// A null `buffer` (length -1), as ZooKeeper writes for a node without data.
    pub fn null_buffer(&mut self) -> &mut Self {
        self.int(-1)
    }

    pub fn ustring(&mut self, v: &str) -> &mut Self {
        self.buffer(v.as_bytes())
    }

    pub fn vector<T>(&mut self, items: &[T], mut item: impl FnMut(&mut Self, &T)) -> &mut Self {
        self.int(items.len() as i32);
        for i in items {
            item(self, i);
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_exact_bytes() {
        let mut w = Writer::new();
        w.int(-2).long(0x0102030405060708).boolean(true).ustring("/a").buffer(b"").vector(&["x", "yz"], |w, s| {
            w.ustring(s);
        });
        assert_eq!(
            w.buf,
            [
                &[0xff, 0xff, 0xff, 0xfe][..],
                &[1, 2, 3, 4, 5, 6, 7, 8],
                &[1],
                &[0, 0, 0, 2, b'/', b'a'],
                &[0, 0, 0, 0],
                &[0, 0, 0, 2, 0, 0, 0, 1, b'x', 0, 0, 0, 2, b'y', b'z'],
            ]
            .concat()
        );
        let mut r = Reader::new(&w.buf);
        assert_eq!(r.int().unwrap(), -2);
        assert_eq!(r.long().unwrap(), 0x0102030405060708);
        assert!(r.boolean().unwrap());
        assert_eq!(r.ustring().unwrap(), "/a");
        assert_eq!(r.buffer().unwrap(), b"");
        assert_eq!(r.vector(|r| r.ustring()).unwrap(), vec!["x", "yz"]);
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert!(matches!(Reader::new(&[0, 0, 1]).int(), Err(JuteError::Short { .. })));
        // A length beyond the record, a negative length, a huge vector count.
        assert!(matches!(Reader::new(&[0, 0, 0, 9, 1]).buffer(), Err(JuteError::BadLength { len: 9, .. })));
        assert!(matches!(Reader::new(&[0xff, 0xff, 0xff, 0xf0]).buffer(), Err(JuteError::BadLength { len: -16, .. })));
        assert!(matches!(Reader::new(&[0x7f, 0xff, 0xff, 0xff]).vector(|r| r.int()), Err(JuteError::BadLength { .. })));
        assert_eq!(Reader::new(&[0, 0, 0, 2, b'/', 0xff]).ustring().unwrap(), "/\u{fffd}");
        assert_eq!(Reader::new(&[0xff, 0xff, 0xff, 0xff]).ustring().unwrap(), "");
        assert_eq!(Reader::new(&[0xff, 0xff, 0xff, 0xff]).ustring_opt().unwrap(), None);
        assert!(matches!(Reader::new(&[0xff, 0xff, 0xff, 0xff]).ustring_not_null(), Err(JuteError::Null { at: 0 })));
        assert_eq!(Reader::new(&[0, 0, 0, 0]).ustring_not_null().unwrap(), "");
        // Null buffer and vector read as empty.
        assert_eq!(Reader::new(&[0xff, 0xff, 0xff, 0xff]).buffer().unwrap(), b"");
        assert!(Reader::new(&[0xff, 0xff, 0xff, 0xff]).vector(|r| r.int()).unwrap().is_empty());
        assert!(Reader::new(&[0xff, 0xfe, 0, 0]).vector(|r| r.int()).unwrap().is_empty());
        assert!(Reader::new(&[0xff, 0xfe, 0, 0]).vector_not_null(|r| r.int()).unwrap().is_empty());
        assert!(matches!(
            Reader::new(&[0xff, 0xff, 0xff, 0xff]).vector_not_null(|r| r.int()),
            Err(JuteError::Null { at: 0 })
        ));
    }
}
