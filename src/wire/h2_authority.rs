//! Makes HTTP/2 requests whose `:authority` is not a URI authority acceptable to the `h2` crate.
//!
//! Why: etcdctl 3.4 dials each endpoint separately for the per-member Maintenance calls
//! (`endpoint status`, `endpoint hashkv`, `defrag`, and all of them with `--cluster`), and with
//! an endpoint written as a URL (`--endpoints http://127.0.0.1:2379`, the usual way, and always
//! the case for the client URLs `--cluster` reads from the member list) grpc-go sends the whole
//! URL as `:authority`. etcd's server (grpc-go) ignores it; `h2` rejects the stream as malformed
//! (`RST_STREAM PROTOCOL_ERROR`) and has no option to relax that. Nothing in Conclave reads the
//! authority, so the bytes a client sends are fixed before `h2` sees them.
//!
//! How: [`AuthorityFix`] sits between the socket and `h2`. It recognises the HTTP/2 client
//! preface (anything else, e.g. HTTP/1, passes through untouched), then follows the frame
//! headers. Frames other than HEADERS are forwarded as they arrive; a HEADERS frame is held until
//! it is whole (at most [`HEADERS_FRAME_BYTES_MAX`]), and its HPACK block is walked
//! representation by representation. A literal field named `:authority` (static table index 1)
//! whose value is Huffman-coded or holds a byte no authority may hold gets the value
//! [`REPLACEMENT`] instead, and the frame's length is adjusted. Walking needs no HPACK state:
//! every representation says its own length, and indexed fields are skipped.
//!
//! Why the HPACK state stays consistent: a literal with incremental indexing also enters the
//! decoder's dynamic table. The replacement is one byte, never longer than the value it
//! replaces, so `h2`'s table holds each entry in no more room than the client counted, evicts no
//! entry the client still refers to, and every index the client sends names the same entry on
//! both sides (indexes count from the newest entry). An empty value is left as it is.
//!
//! Cost: bytes are copied once more on their way in (a few hundred per request); a HEADERS frame
//! without a literal `:authority` (every request after a connection's first one: clients index
//! it) is only scanned.

/// The HTTP/2 client connection preface (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER_BYTES: usize = 9;
const FRAME_HEADERS: u8 = 0x1;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
/// A larger HEADERS frame is forwarded unchanged rather than held (the server's advertised
/// SETTINGS_MAX_FRAME_SIZE is 16 KiB; a client should not send one larger).
const HEADERS_FRAME_BYTES_MAX: usize = 64 * 1024;
/// HPACK static table index of `:authority`.
const AUTHORITY_INDEX: u64 = 1;
/// The value a malformed `:authority` is given: one byte, a valid authority (a host name).
const REPLACEMENT: &[u8] = b"-";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Matching the first bytes against the preface.
    Preface,
    /// At a frame boundary.
    Frames,
    /// Forwarding this many more payload bytes of a frame that is not rewritten.
    Forward(usize),
    /// Not HTTP/2 with prior knowledge: everything passes untouched.
    PassThrough,
}

/// The inbound byte transformer: [`AuthorityFix::push`] what the socket gave, read what is
/// ready from [`AuthorityFix::ready`].
#[derive(Debug)]
pub struct AuthorityFix {
    state: State,
    /// Received bytes not yet decided on (an incomplete preface or frame header, a HEADERS
    /// frame not yet whole).
    held: Vec<u8>,
    /// Decided bytes not yet read.
    out: Vec<u8>,
    out_pos: usize,
    /// Fields rewritten so far (for the tests).
    rewritten: u64,
}

impl Default for AuthorityFix {
    fn default() -> Self {
        AuthorityFix { state: State::Preface, held: Vec::new(), out: Vec::new(), out_pos: 0, rewritten: 0 }
    }
}

impl AuthorityFix {
    /// Whether bytes can go straight from the socket to the reader (no HTTP/2 preface was seen,
    /// and nothing is held or waiting).
    pub fn passes_through(&self) -> bool {
        self.state == State::PassThrough && self.out_pos == self.out.len() && self.held.is_empty()
    }

    /// The bytes ready for the reader.
    pub fn ready(&self) -> &[u8] {
        &self.out[self.out_pos..]
    }

    /// `n` ready bytes were read.
    pub fn consume(&mut self, n: usize) {
        self.out_pos += n;
        debug_assert!(self.out_pos <= self.out.len());
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        }
    }

    /// The peer closed its side: what is held goes out as it is (the decoder reports whatever
    /// is wrong with it).
    pub fn finish(&mut self) {
        let held = std::mem::take(&mut self.held);
        self.out.extend_from_slice(&held);
    }

    /// Takes bytes from the socket.
    pub fn push(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match self.state {
                State::PassThrough => {
                    self.out.extend_from_slice(data);
                    return;
                }
                State::Forward(n) => {
                    let take = n.min(data.len());
                    self.out.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    self.state = if take == n { State::Frames } else { State::Forward(n - take) };
                }
                State::Preface => {
                    let want = PREFACE.len() - self.held.len();
                    let take = want.min(data.len());
                    self.held.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if !PREFACE.starts_with(&self.held) {
                        self.state = State::PassThrough;
                        let held = std::mem::take(&mut self.held);
                        self.out.extend_from_slice(&held);
                        continue;
                    }
                    if self.held.len() < PREFACE.len() {
                        return;
                    }
                    let held = std::mem::take(&mut self.held);
                    self.out.extend_from_slice(&held);
                    self.state = State::Frames;
                }
                State::Frames => {
                    // Hold until the frame header is here, and a HEADERS frame until it is whole.
                    if self.held.len() < FRAME_HEADER_BYTES {
                        let take = (FRAME_HEADER_BYTES - self.held.len()).min(data.len());
                        self.held.extend_from_slice(&data[..take]);
                        data = &data[take..];
                        if self.held.len() < FRAME_HEADER_BYTES {
                            return;
                        }
                    }
                    let len = u32::from_be_bytes([0, self.held[0], self.held[1], self.held[2]]) as usize;
                    let kind = self.held[3];
                    if kind != FRAME_HEADERS || len > HEADERS_FRAME_BYTES_MAX {
                        let header = std::mem::take(&mut self.held);
                        self.out.extend_from_slice(&header);
                        self.state = if len == 0 { State::Frames } else { State::Forward(len) };
                        continue;
                    }
                    let whole = FRAME_HEADER_BYTES + len;
                    let take = (whole - self.held.len()).min(data.len());
                    self.held.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if self.held.len() < whole {
                        return;
                    }
                    let frame = std::mem::take(&mut self.held);
                    match rewrite_headers_frame(&frame) {
                        Some(fixed) => {
                            self.rewritten += 1;
                            tracing::debug!("rewrote a malformed HTTP/2 :authority");
                            self.out.extend_from_slice(&fixed);
                        }
                        None => self.out.extend_from_slice(&frame),
                    }
                }
            }
        }
    }
}

/// An HPACK integer with an `prefix_bits`-bit prefix at `block[*at]` (RFC 7541 §5.1); moves `at`
/// past it. None if the block ends inside it or it does not fit in 62 bits.
fn hpack_int(block: &[u8], at: &mut usize, prefix_bits: u32) -> Option<u64> {
    let mask = (1u64 << prefix_bits) - 1;
    let first = u64::from(*block.get(*at)?) & mask;
    *at += 1;
    if first < mask {
        return Some(first);
    }
    let mut value = mask;
    let mut shift = 0u32;
    loop {
        let b = *block.get(*at)?;
        *at += 1;
        if shift > 56 {
            return None;
        }
        value += u64::from(b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            return Some(value);
        }
    }
}

/// An HPACK string literal at `block[*at]`: (huffman, start, end of its bytes); moves `at` past it.
fn hpack_string(block: &[u8], at: &mut usize) -> Option<(bool, usize, usize)> {
    let huffman = *block.get(*at)? & 0x80 != 0;
    let len = usize::try_from(hpack_int(block, at, 7)?).ok()?;
    let start = *at;
    let end = start.checked_add(len).filter(|&e| e <= block.len())?;
    *at = end;
    Some((huffman, start, end))
}

/// Whether `value` can be an URI authority as the `http` crate parses one (RFC 3986 §3.2, without
/// userinfo checks: a conservative subset: unreserved, sub-delims, ':', '[', ']', '%', '@').
fn plain_authority(value: &[u8]) -> bool {
    !value.is_empty()
        && value.iter().all(|&c| c.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:[]%@".contains(&c))
        && value.iter().filter(|&&c| c == b':').count() <= 1
}

/// The HEADERS frame with a malformed literal `:authority` value replaced, or None if it needs
/// no change (or cannot be walked: then `h2` sees it as it came).
fn rewrite_headers_frame(frame: &[u8]) -> Option<Vec<u8>> {
    let flags = frame[4];
    let payload = &frame[FRAME_HEADER_BYTES..];
    let mut start = 0usize;
    let mut pad = 0usize;
    if flags & FLAG_PADDED != 0 {
        pad = usize::from(*payload.first()?);
        start += 1;
    }
    if flags & FLAG_PRIORITY != 0 {
        start += 5;
    }
    let end = payload.len().checked_sub(pad).filter(|&e| e >= start)?;
    let block = &payload[start..end];
    let mut at = 0usize;
    while at < block.len() {
        let b = block[at];
        let (prefix_bits, literal) = if b & 0x80 != 0 {
            (7, false) // indexed field
        } else if b & 0x40 != 0 {
            (6, true) // literal with incremental indexing
        } else if b & 0x20 != 0 {
            (5, false) // dynamic table size update
        } else {
            (4, true) // literal without indexing / never indexed
        };
        let index = hpack_int(block, &mut at, prefix_bits)?;
        if !literal {
            continue;
        }
        if index == 0 {
            hpack_string(block, &mut at)?; // a literal name: not :authority as clients send it
            hpack_string(block, &mut at)?;
            continue;
        }
        let value_at = at;
        let (huffman, v0, v1) = hpack_string(block, &mut at)?;
        if index != AUTHORITY_INDEX || v0 == v1 || (!huffman && plain_authority(&block[v0..v1])) {
            continue;
        }
        // Splice: [frame header][payload up to the value][new value][rest of the payload].
        let value_start = FRAME_HEADER_BYTES + start + value_at;
        let value_end = FRAME_HEADER_BYTES + start + v1;
        let mut fixed = Vec::with_capacity(frame.len());
        fixed.extend_from_slice(&frame[..value_start]);
        fixed.push(REPLACEMENT.len() as u8); // raw (not Huffman), length < 127: one byte
        fixed.extend_from_slice(REPLACEMENT);
        fixed.extend_from_slice(&frame[value_end..]);
        let len = fixed.len() - FRAME_HEADER_BYTES;
        debug_assert!(len < frame.len() - FRAME_HEADER_BYTES + 1);
        fixed[..3].copy_from_slice(&(len as u32).to_be_bytes()[1..]);
        // Further fields are left as they are: a request carries one :authority.
        return Some(fixed);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        f.push(kind);
        f.push(flags);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// `push` in pieces of `step` bytes, read everything.
    fn run(input: &[u8], step: usize) -> (Vec<u8>, u64) {
        let mut fix = AuthorityFix::default();
        let mut out = Vec::new();
        for piece in input.chunks(step) {
            fix.push(piece);
            out.extend_from_slice(fix.ready());
            let n = fix.ready().len();
            fix.consume(n);
        }
        fix.finish();
        out.extend_from_slice(fix.ready());
        (out, fix.rewritten)
    }

    const SETTINGS: [u8; 9] = [0, 0, 0, 4, 0, 0, 0, 0, 0];

    /// A request's header block as grpc-go writes it: :method POST (indexed 3), :scheme http
    /// (indexed 6), :path (literal, incremental indexing, name index 4), :authority (literal,
    /// incremental indexing, name index 1) with `authority` as given (raw or Huffman bytes).
    fn block(authority: &[u8], huffman: bool) -> Vec<u8> {
        let mut b = vec![0x83, 0x86, 0x44, 5];
        b.extend_from_slice(b"/a/Ab");
        b.push(0x41);
        b.push(authority.len() as u8 | if huffman { 0x80 } else { 0 });
        b.extend_from_slice(authority);
        b.extend_from_slice(&[0x40, 2, b't', b'e', 8]); // literal name "te": value "trailers"
        b.extend_from_slice(b"trailers");
        b
    }

    #[test]
    fn a_url_authority_is_replaced_and_the_frame_length_follows() {
        let mut input = PREFACE.to_vec();
        input.extend_from_slice(&SETTINGS);
        input.extend(frame(FRAME_HEADERS, 0x4, 1, &block(b"http://127.0.0.1:2379", false)));
        input.extend(frame(0x0, 0x1, 1, b"\0\0\0\0\x02hi"));
        let mut want = PREFACE.to_vec();
        want.extend_from_slice(&SETTINGS);
        want.extend(frame(FRAME_HEADERS, 0x4, 1, &block(b"-", false)));
        want.extend(frame(0x0, 0x1, 1, b"\0\0\0\0\x02hi"));
        for step in [1, 2, 7, 9, 10, 64, 4096] {
            assert_eq!(run(&input, step), (want.clone(), 1), "in pieces of {step}");
        }
    }

    #[test]
    fn a_huffman_authority_is_replaced_a_plain_one_kept() {
        // Huffman bytes are not decoded: any Huffman-coded value is replaced (it is never
        // shorter than one byte decoded).
        let input = [PREFACE, &frame(FRAME_HEADERS, 0x4, 1, &block(&[0x9d, 0x29, 0xad, 0x17], true))].concat();
        let want = [PREFACE, &frame(FRAME_HEADERS, 0x4, 1, &block(b"-", false))].concat();
        assert_eq!(run(&input, 5), (want, 1));
        let input = [PREFACE, &frame(FRAME_HEADERS, 0x4, 1, &block(b"127.0.0.1:2379", false))].concat();
        assert_eq!(run(&input, 3), (input.clone(), 0));
    }

    #[test]
    fn padding_and_priority_are_kept() {
        let mut payload = vec![3u8]; // pad length
        payload.extend_from_slice(&[0x80, 0, 0, 0, 16]); // stream dependency + weight
        payload.extend(block(b"unix:///tmp/x.sock", false));
        payload.extend_from_slice(&[0, 0, 0]);
        let mut want_payload = vec![3u8, 0x80, 0, 0, 0, 16];
        want_payload.extend(block(b"-", false));
        want_payload.extend_from_slice(&[0, 0, 0]);
        let input = [PREFACE, &frame(FRAME_HEADERS, 0x4 | FLAG_PADDED | FLAG_PRIORITY, 3, &payload)].concat();
        let want = [PREFACE, &frame(FRAME_HEADERS, 0x4 | FLAG_PADDED | FLAG_PRIORITY, 3, &want_payload)].concat();
        assert_eq!(run(&input, 4), (want, 1));
    }

    #[test]
    fn what_is_not_http2_or_not_a_literal_authority_passes_untouched() {
        let http1 = b"GET /health HTTP/1.1\r\nHost: http://x\r\n\r\n".to_vec();
        assert_eq!(run(&http1, 3), (http1.clone(), 0));
        // A short HTTP/1 request that is a prefix of nothing: decided at its first byte.
        assert_eq!(run(b"G", 1), (b"G".to_vec(), 0));
        // Indexed fields only (a connection's later requests): unchanged.
        let input = [PREFACE, &frame(FRAME_HEADERS, 0x4, 5, &[0x83, 0x86, 0xbe, 0xbf])].concat();
        assert_eq!(run(&input, 2), (input.clone(), 0));
        // A truncated block cannot be walked: forwarded as it came, for h2 to refuse.
        let input = [PREFACE, &frame(FRAME_HEADERS, 0x4, 7, &[0x41, 0x0a, b'h'])].concat();
        assert_eq!(run(&input, 1), (input.clone(), 0));
        // A DATA frame whose bytes look like a HEADERS frame is not looked into.
        let inner = frame(FRAME_HEADERS, 0x4, 1, &block(b"http://x:1", false));
        let input = [PREFACE, &frame(0x0, 0x0, 1, &inner), &frame(0x4, 0, 0, &[])].concat();
        assert_eq!(run(&input, 6), (input.clone(), 0));
        // The preface cut short by EOF: handed on as it is.
        assert_eq!(run(&PREFACE[..10], 4), (PREFACE[..10].to_vec(), 0));
    }

    #[test]
    fn hpack_integers_decode_as_rfc_7541_c1() {
        // C.1.2: 1337 with a 5-bit prefix.
        let mut at = 0;
        assert_eq!(hpack_int(&[0x1f, 0x9a, 0x0a], &mut at, 5), Some(1337));
        assert_eq!(at, 3);
        let mut at = 0;
        assert_eq!(hpack_int(&[0x0a], &mut at, 5), Some(10));
        let mut at = 0;
        assert_eq!(hpack_int(&[0x1f, 0x9a], &mut at, 5), None);
        let mut at = 0;
        assert_eq!(hpack_int(&[0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], &mut at, 7), None);
    }
}
