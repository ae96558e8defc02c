//! Raw ZooKeeper wire helpers for tests: build exact request bytes, read whole reply packets.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub fn be32(v: i32) -> [u8; 4] {
    v.to_be_bytes()
}

pub fn be64(v: i64) -> [u8; 8] {
    v.to_be_bytes()
}

/// A jute ustring / buffer: length then bytes.
pub fn string(s: &str) -> Vec<u8> {
    [&be32(s.len() as i32)[..], s.as_bytes()].concat()
}

/// A length-prefixed packet of the concatenated parts.
pub fn packet(parts: &[&[u8]]) -> Vec<u8> {
    let body = parts.concat();
    [&be32(body.len() as i32)[..], &body].concat()
}

/// The open ACL, world:anyone with every permission, as a one-element jute vector.
pub fn open_acl() -> Vec<u8> {
    [&be32(1)[..], &be32(31), &string("world"), &string("anyone")].concat()
}

/// A create request: xid, path, data, open ACL, flags.
pub fn create(xid: i32, path: &str, data: &str, flags: i32) -> Vec<u8> {
    packet(&[&be32(xid), &be32(1), &string(path), &string(data), &open_acl(), &be32(flags)])
}

pub async fn read_packet(s: &mut TcpStream) -> Vec<u8> {
    let mut len = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut len)).await.expect("reply in time").unwrap();
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).await.unwrap();
    body
}

/// The error code of a reply packet (header: xid, zxid, err).
pub fn err_of(reply: &[u8]) -> i32 {
    i32::from_be_bytes(reply[12..16].try_into().unwrap())
}

/// Opens a new session with `timeout_ms` requested; returns (session id, password, timeout).
pub async fn connect(s: &mut TcpStream, timeout_ms: i32) -> (i64, Vec<u8>, i32) {
    let req = packet(&[&be32(0), &be64(0), &be32(timeout_ms), &be64(0), &be32(16), &[0u8; 16], &[0]]);
    s.write_all(&req).await.unwrap();
    let r = read_packet(s).await;
    assert_eq!(r.len(), 4 + 4 + 8 + 4 + 16 + 1, "ConnectResponse with the readOnly flag");
    assert_eq!(&r[0..4], &be32(0), "protocol version");
    let timeout = i32::from_be_bytes(r[4..8].try_into().unwrap());
    let sid = i64::from_be_bytes(r[8..16].try_into().unwrap());
    assert_eq!(&r[16..20], &be32(16));
    assert_eq!(r[36], 0, "not read-only");
    (sid, r[20..36].to_vec(), timeout)
}
