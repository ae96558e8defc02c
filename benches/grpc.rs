//! A lean unary gRPC client for the closed-loop workloads (put, range, txn), written straight on
//! the `h2` crate.
//!
//! Why: the load generator shares the machine's cores with the server it measures. Through
//! tonic's `Channel` a unary call passes a tower `Buffer` (an mpsc hop to a worker task), hyper's
//! client dispatch and a per-call timeout; measured against Conclave at 100 clients that cost
//! ~21 µs of the load generator's CPU per put, more than half of what the server itself spent.
//! Every microsecond the tool spends is taken from the server under test, and it is taken from
//! a fast server in a larger proportion than from a slow one, so a heavy client compresses the
//! ratios it is meant to measure. This client does one HTTP/2 stream per call on a shared
//! connection: HEADERS + one DATA frame out, HEADERS + DATA + trailers in, nothing else.
//! `--grpc-client tonic` keeps the old path for comparison.
//!
//! What it checks: HTTP status 200, `grpc-status` in the trailers (or in the headers of a
//! trailers-only answer) and the 5-byte gRPC message prefix (uncompressed only). Anything else
//! is an error with the server's `grpc-message` when there is one.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderMap, Method, Request, Uri};
use prost::Message;
use tokio::net::TcpStream;

/// Largest answer accepted (etcd's default --max-recv-bytes is far larger; a bench answer is
/// small: this only bounds a misbehaving server's memory here).
const MAX_ANSWER_BYTES: usize = 16 << 20;

/// One HTTP/2 connection; cheap to clone (all clones share the connection).
#[derive(Clone)]
pub struct Conn {
    send: h2::client::SendRequest<Bytes>,
    authority: String,
}

/// Opens the TCP connection (TCP_NODELAY, as tonic's client is configured here) and runs the
/// HTTP/2 handshake; the connection's frames are driven by a task of its own.
pub async fn connect(endpoint: &str) -> Result<Conn, String> {
    let authority = endpoint.strip_prefix("http://").unwrap_or(endpoint).trim_end_matches('/').to_string();
    let tcp = TcpStream::connect(&authority).await.map_err(|e| format!("connecting to {endpoint}: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| format!("TCP_NODELAY on {endpoint}: {e}"))?;
    let (send, conn) = h2::client::Builder::new()
        // The defaults of tonic's client (and grpc-go's): windows that never stall a bench.
        .initial_window_size(1 << 20)
        .initial_connection_window_size(1 << 20)
        .handshake::<_, Bytes>(tcp)
        .await
        .map_err(|e| format!("HTTP/2 handshake with {endpoint}: {e}"))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            if !e.is_go_away() {
                crate::note_error(&format!("connection: {e}"));
            }
        }
    });
    Ok(Conn { send, authority })
}

/// A method's full URI, made once per worker (`/etcdserverpb.KV/Put`).
pub fn method_uri(conn: &Conn, path: &str) -> Result<Uri, String> {
    format!("http://{}{path}", conn.authority).parse().map_err(|e| format!("uri for {path}: {e}"))
}

impl Conn {
    /// One unary call: `req` out, the decoded answer back.
    pub async fn unary<Req: Message, Resp: Message + Default>(&mut self, uri: &Uri, req: &Req) -> Result<Resp, String> {
        let len = req.encoded_len();
        let mut body = BytesMut::with_capacity(5 + len);
        body.put_u8(0); // not compressed
        body.put_u32(len as u32);
        req.encode(&mut body).map_err(|e| format!("encode: {e}"))?;

        let request = Request::builder()
            .method(Method::POST)
            .uri(uri.clone())
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .map_err(|e| format!("request: {e}"))?;
        let mut send = self.send.clone().ready().await.map_err(|e| format!("connection: {e}"))?;
        let (answer, mut stream) = send.send_request(request, false).map_err(|e| format!("send: {e}"))?;
        stream.send_data(body.freeze(), true).map_err(|e| format!("send: {e}"))?;

        let answer = answer.await.map_err(|e| format!("answer: {e}"))?;
        let (head, mut recv) = answer.into_parts();
        if head.status != http::StatusCode::OK {
            return Err(format!("HTTP status {}", head.status));
        }
        // A trailers-only answer (an error) carries grpc-status in its headers.
        if head.headers.contains_key("grpc-status") {
            status_ok(&head.headers)?;
        }
        let mut data = BytesMut::new();
        while let Some(chunk) = recv.data().await {
            let chunk = chunk.map_err(|e| format!("answer body: {e}"))?;
            // Give the window back at once, as a real client does, so long runs never stall.
            let _ = recv.flow_control().release_capacity(chunk.len());
            if data.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err("answer larger than 16 MiB".into());
            }
            data.extend_from_slice(&chunk);
        }
        if let Some(trailers) = recv.trailers().await.map_err(|e| format!("answer trailers: {e}"))? {
            status_ok(&trailers)?;
        } else if !head.headers.contains_key("grpc-status") {
            return Err("answer without grpc-status".into());
        }
        let mut data = data.freeze();
        if data.len() < 5 {
            return Err(format!("answer of {} bytes has no gRPC message", data.len()));
        }
        if data.get_u8() != 0 {
            return Err("compressed answer (not asked for)".into());
        }
        let msg_len = data.get_u32() as usize;
        if msg_len != data.len() {
            return Err(format!("gRPC message says {msg_len} bytes, has {}", data.len()));
        }
        Resp::decode(data).map_err(|e| format!("decode: {e}"))
    }
}

fn status_ok(h: &HeaderMap) -> Result<(), String> {
    let code = h.get("grpc-status").and_then(|v| v.to_str().ok()).unwrap_or("");
    if code == "0" {
        return Ok(());
    }
    let msg = h.get("grpc-message").map(|v| percent_decode(v.as_bytes())).unwrap_or_default();
    Err(format!("grpc-status {code}: {msg}"))
}

/// grpc-message is percent-encoded on the wire (tonic encodes spaces too; etcd does not).
fn percent_decode(raw: &[u8]) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match (raw[i], raw.get(i + 1).and_then(|&b| hex(b)), raw.get(i + 2).and_then(|&b| hex(b))) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
