//! ZooKeeper's framing: every packet is a 4-byte big-endian length and that many bytes. The
//! parser only parses: it says [`Frame::Incomplete`] until a whole packet is buffered, and
//! refuses a length above the packet limit (`jute.maxbuffer`, 0xfffff by default) or below
//! zero, after which ZooKeeper closes the connection.

pub const JUTE_MAXBUFFER_DEFAULT: usize = 0xfffff;

#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// More bytes are needed.
    Incomplete,
    /// A whole packet: its payload spans `buf[4..4 + len]`, and `4 + len` bytes are consumed.
    Packet { len: usize },
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("packet length {0} is out of range")]
    BadLength(i64),
}

/// Looks at the start of `buf` for one packet of at most `max_len` bytes.
pub fn check(buf: &[u8], max_len: usize) -> Result<Frame, FrameError> {
    if buf.len() < 4 {
        return Ok(Frame::Incomplete);
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if len < 0 || len as usize > max_len {
        return Err(FrameError::BadLength(len as i64));
    }
    let len = len as usize;
    if buf.len() < 4 + len {
        return Ok(Frame::Incomplete);
    }
    Ok(Frame::Packet { len })
}

/// Appends to `out` one packet whose payload is `parts`, one after the other: no copy of the
/// payload is made first (a reply's header and body are separate).
pub fn append(out: &mut Vec<u8>, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    out.reserve(4 + len);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    for p in parts {
        out.extend_from_slice(p);
    }
}

/// Prefixes `payload` with its length.
pub fn encode(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    append(&mut out, &[payload]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incomplete_until_whole() {
        let pkt = encode(b"hello");
        for cut in 0..pkt.len() {
            assert_eq!(check(&pkt[..cut], 100), Ok(Frame::Incomplete), "cut at {cut}");
        }
        assert_eq!(check(&pkt, 100), Ok(Frame::Packet { len: 5 }));
        let mut two = pkt.clone();
        two.extend_from_slice(&encode(b"x"));
        assert_eq!(check(&two, 100), Ok(Frame::Packet { len: 5 }));
    }

    #[test]
    fn append_frames_its_parts_as_one_packet() {
        let mut out = encode(b"first");
        append(&mut out, &[b"ab", b"", b"cde"]);
        assert_eq!(out, [&encode(b"first")[..], &[0, 0, 0, 5], b"abcde"].concat());
    }

    #[test]
    fn lengths_out_of_range_are_refused() {
        assert_eq!(check(&[0, 0x10, 0, 0], JUTE_MAXBUFFER_DEFAULT), Err(FrameError::BadLength(0x100000)));
        assert_eq!(check(&[0xff, 0xff, 0xff, 0xff], JUTE_MAXBUFFER_DEFAULT), Err(FrameError::BadLength(-1)));
        assert_eq!(check(&[0, 0x0f, 0xff, 0xff], JUTE_MAXBUFFER_DEFAULT), Ok(Frame::Incomplete));
    }
}
