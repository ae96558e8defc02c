//! ZooKeeper workloads for `conclave-bench` against ANY ZooKeeper endpoint (Conclave's
//! `--zk-listen` or Apache ZooKeeper): a small raw-TCP client (jute records in 4-byte big-endian
//! length frames, with the crate's own codec) and the `zk` subcommand's workloads.
//!
//! Each client is its own TCP connection and its own session. A client keeps up to
//! `--inflight` requests pipelined: ZooKeeper answers a session's requests in order, so replies
//! are matched to requests by position and the xid is checked. The requests that the replies
//! of one read make room for go out together, in one write. Whenever a client has sent
//! nothing for a third of the negotiated session timeout (e.g. while it waits for a lock) it
//! pings (xid -2, op 11), as ZooKeeper's clients do. Every session is closed (closeSession) at
//! the end, after the clock stopped.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use conclave::wire::zk::frame::{self, Frame};
use conclave::wire::zk::jute::{JuteError, Reader, Writer};
use conclave::wire::zk::proto::{event_type, op, xid, Acl, Stat};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use super::{key, note_error, report, timeout, us, value, Common, Reach, Rng, RunResult};

/// Largest reply accepted (ZooKeeper's own limit is jute.maxbuffer, 1 MiB by default).
const MAX_REPLY: usize = 64 << 20;

const NO_NODE: i32 = -101;
const NODE_EXISTS: i32 = -110;

/// Create flags (CreateMode).
const PERSISTENT: i32 = 0;
const EPHEMERAL_SEQUENTIAL: i32 = 3;

/// An error code (KeeperException.Code) with its name, for messages.
fn err_name(code: i32) -> String {
    let name = match code {
        -1 => "SystemError",
        -2 => "RuntimeInconsistency",
        -3 => "DataInconsistency",
        -4 => "ConnectionLoss",
        -5 => "MarshallingError",
        -6 => "Unimplemented",
        -7 => "OperationTimeout",
        -8 => "BadArguments",
        -12 => "UnknownSession",
        -13 => "NewConfigNoQuorum",
        -14 => "ReconfigInProgress",
        -100 => "APIError",
        -101 => "NoNode",
        -102 => "NoAuth",
        -103 => "BadVersion",
        -108 => "NoChildrenForEphemerals",
        -110 => "NodeExists",
        -111 => "NotEmpty",
        -112 => "SessionExpired",
        -113 => "InvalidCallback",
        -114 => "InvalidACL",
        -115 => "AuthFailed",
        -118 => "SessionMoved",
        -119 => "NotReadOnly",
        -120 => "EphemeralOnLocalSession",
        -121 => "NoWatcher",
        -122 => "RequestTimeout",
        -123 => "ReconfigDisabled",
        -124 => "SessionClosedRequireSaslAuth",
        -125 => "QuotaExceeded",
        -127 => "Throttled",
        _ => "unknown",
    };
    format!("{name} ({code})")
}

fn jerr(e: JuteError) -> String {
    format!("malformed reply: {e}")
}

fn open_acl() -> Acl {
    Acl { perms: 31, scheme: "world".into(), id: "anyone".into() }
}

// ---------------------------------------------------------------------------------------------
// The client

/// A reply: its header and where its body lies in the client's input buffer (valid until the
/// next receive).
#[derive(Debug, Clone, Copy)]
struct Reply {
    xid: i32,
    err: i32,
    body: (usize, usize),
}

/// A watch notification (WatcherEvent).
#[derive(Debug, Clone)]
struct Event {
    kind: i32,
    path: String,
}

enum Incoming {
    Reply(Reply),
    Event(Event),
}

struct ZkClient {
    rd: OwnedReadHalf,
    wr: OwnedWriteHalf,
    inbuf: Vec<u8>,
    /// Start of the unparsed bytes in `inbuf`.
    pos: usize,
    out: Vec<u8>,
    next_xid: i32,
    session_id: i64,
    last_send: Instant,
    ping_every: Duration,
    /// Notifications received while waiting for a reply.
    events: VecDeque<Event>,
}

impl ZkClient {
    /// TCP connect, then ConnectRequest {protocolVersion 0, lastZxidSeen 0, timeOut,
    /// sessionId 0, passwd 16 zero bytes, readOnly false} and its ConnectResponse.
    async fn connect(addr: &str, session_timeout_ms: i32, limit: Duration) -> Result<ZkClient, String> {
        let deadline = Instant::now() + limit;
        let stream = tokio::time::timeout(limit, TcpStream::connect(addr))
            .await
            .map_err(|_| format!("connecting to {addr}: timed out"))?
            .map_err(|e| format!("connecting to {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (rd, wr) = stream.into_split();
        let mut c = ZkClient {
            rd,
            wr,
            inbuf: Vec::with_capacity(64 * 1024),
            pos: 0,
            out: Vec::with_capacity(16 * 1024),
            next_xid: 1,
            session_id: 0,
            last_send: Instant::now(),
            ping_every: Duration::from_secs(3600), // no pings before the session exists
            events: VecDeque::new(),
        };
        c.put_frame(|w| {
            w.int(0).long(0).int(session_timeout_ms).long(0).buffer(&[0; 16]).boolean(false);
        });
        c.flush().await.map_err(|e| format!("{addr}: {e}"))?;
        let (s, len) = c.next_packet(deadline).await.map_err(|e| format!("{addr}: handshake: {e}"))?;
        let mut r = Reader::new(&c.inbuf[s..s + len]);
        let _protocol = r.int().map_err(jerr)?;
        let timeout_ms = r.int().map_err(jerr)?;
        let session_id = r.long().map_err(jerr)?;
        let _passwd = r.buffer().map_err(jerr)?;
        if timeout_ms <= 0 || session_id == 0 {
            return Err(format!("{addr}: the server refused the session (negotiated timeout {timeout_ms} ms)"));
        }
        c.session_id = session_id;
        c.ping_every = Duration::from_millis((timeout_ms as u64 / 3).max(1));
        Ok(c)
    }

    /// Appends one frame to the output buffer: the length, then what `body` writes.
    fn put_frame(&mut self, body: impl FnOnce(&mut Writer)) {
        let start = self.out.len();
        let mut w = Writer { buf: std::mem::take(&mut self.out) };
        w.buf.extend_from_slice(&[0; 4]);
        body(&mut w);
        self.out = w.buf;
        let len = (self.out.len() - start - 4) as u32;
        self.out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    }

    /// Queues a request (header {xid, type} then the body); returns its xid. Not sent until
    /// `flush`.
    fn queue(&mut self, opcode: i32, body: impl FnOnce(&mut Writer)) -> i32 {
        let x = self.next_xid;
        // xids stay positive: negative ones are ZooKeeper's special xids.
        self.next_xid = if x == i32::MAX { 1 } else { x + 1 };
        self.put_frame(|w| {
            w.int(x).int(opcode);
            body(w);
        });
        x
    }

    async fn flush(&mut self) -> Result<(), String> {
        if self.out.is_empty() {
            return Ok(());
        }
        let r = self.wr.write_all(&self.out).await;
        self.out.clear();
        self.last_send = Instant::now();
        r.map_err(|e| format!("write: {e}"))
    }

    async fn ping(&mut self) -> Result<(), String> {
        self.put_frame(|w| {
            w.int(xid::PING).int(op::PING);
        });
        self.flush().await
    }

    /// The next whole packet as (start, len) in `inbuf`; pings when idle; fails at `deadline`.
    async fn next_packet(&mut self, deadline: Instant) -> Result<(usize, usize), String> {
        loop {
            match frame::check(&self.inbuf[self.pos..], MAX_REPLY) {
                Ok(Frame::Packet { len }) => {
                    let s = self.pos + 4;
                    self.pos += 4 + len;
                    return Ok((s, len));
                }
                Ok(Frame::Incomplete) => {}
                Err(e) => return Err(format!("bad frame: {e}")),
            }
            if self.pos > 0 {
                self.inbuf.drain(..self.pos);
                self.pos = 0;
            }
            let ping_at = self.last_send + self.ping_every;
            let wake = deadline.min(ping_at);
            if self.inbuf.capacity() - self.inbuf.len() < 16 * 1024 {
                self.inbuf.reserve(64 * 1024);
            }
            match tokio::time::timeout_at(wake.into(), self.rd.read_buf(&mut self.inbuf)).await {
                Ok(Ok(0)) => return Err("connection closed by the server".into()),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(format!("read: {e}")),
                Err(_) => {
                    if Instant::now() >= deadline {
                        return Err("timed out".into());
                    }
                    self.ping().await?;
                }
            }
        }
    }

    /// Whether a whole packet is already buffered (the next `recv` needs no read).
    fn has_packet(&self) -> bool {
        matches!(frame::check(&self.inbuf[self.pos..], MAX_REPLY), Ok(Frame::Packet { .. }))
    }

    /// The next reply or notification (ping replies are consumed here).
    async fn recv(&mut self, deadline: Instant) -> Result<Incoming, String> {
        loop {
            let (s, len) = self.next_packet(deadline).await?;
            let mut r = Reader::new(&self.inbuf[s..s + len]);
            let x = r.int().map_err(jerr)?;
            let _zxid = r.long().map_err(jerr)?;
            let err = r.int().map_err(jerr)?;
            match x {
                xid::PING => continue,
                xid::NOTIFICATION => {
                    let kind = r.int().map_err(jerr)?;
                    let _state = r.int().map_err(jerr)?;
                    let path = r.ustring().map_err(jerr)?;
                    return Ok(Incoming::Event(Event { kind, path }));
                }
                _ => return Ok(Incoming::Reply(Reply { xid: x, err, body: (s + 16, s + len) })),
            }
        }
    }

    fn body(&self, r: &Reply) -> &[u8] {
        &self.inbuf[r.body.0..r.body.1]
    }

    /// One request, sent at once; waits for its reply (notifications meanwhile are kept).
    async fn call(&mut self, opcode: i32, body: impl FnOnce(&mut Writer), deadline: Instant) -> Result<Reply, String> {
        let x = self.queue(opcode, body);
        self.flush().await?;
        loop {
            match self.recv(deadline).await? {
                Incoming::Event(e) => self.events.push_back(e),
                Incoming::Reply(r) if r.xid == x => return Ok(r),
                Incoming::Reply(r) => return Err(format!("reply for xid {} while waiting for xid {x}", r.xid)),
            }
        }
    }

    /// Waits for a notification of `kind` on `path` (others are dropped).
    async fn wait_event(&mut self, kind: i32, path: &str, deadline: Instant) -> Result<(), String> {
        while let Some(e) = self.events.pop_front() {
            if e.kind == kind && e.path == path {
                return Ok(());
            }
        }
        loop {
            match self.recv(deadline).await? {
                Incoming::Event(e) if e.kind == kind && e.path == path => return Ok(()),
                Incoming::Event(_) => {}
                Incoming::Reply(r) => {
                    return Err(format!("unexpected reply (xid {}) while waiting for a watch", r.xid))
                }
            }
        }
    }

    /// closeSession (op -11): the server drops the session and its ephemeral nodes.
    async fn close(mut self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        let x = self.queue(op::CLOSE_SESSION, |_| {});
        self.flush().await?;
        loop {
            match self.recv(deadline).await? {
                Incoming::Reply(r) if r.xid == x => {
                    return if r.err == 0 { Ok(()) } else { Err(format!("closeSession: {}", err_name(r.err))) };
                }
                _ => {}
            }
        }
    }
}

// ---- request bodies (zookeeper.jute) ----

fn create_body(w: &mut Writer, path: &str, data: &[u8], flags: i32) {
    w.ustring(path).buffer(data);
    w.vector(&[open_acl()], |w, a| a.write(w));
    w.int(flags);
}

/// Creates `path` and its missing ancestors as empty persistent nodes.
async fn ensure_path(c: &mut ZkClient, path: &str, limit: Duration) -> Result<(), String> {
    let mut at = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        at.push('/');
        at.push_str(part);
        let r = c.call(op::CREATE, |w| create_body(w, &at, b"", PERSISTENT), Instant::now() + limit).await?;
        if r.err != 0 && r.err != NODE_EXISTS {
            return Err(format!("create {at}: {}", err_name(r.err)));
        }
    }
    Ok(())
}

/// Probe for `ping`/`startup`: a session, exists("/") answered, closeSession.
pub(super) async fn probe(addr: &str, limit: Duration) -> Result<(), String> {
    let attempt = async {
        let deadline = Instant::now() + limit;
        let mut c = ZkClient::connect(addr, 30_000, limit).await?;
        let r = c
            .call(
                op::EXISTS,
                |w| {
                    w.ustring("/").boolean(false);
                },
                deadline,
            )
            .await?;
        if r.err != 0 {
            return Err(format!("exists /: {}", err_name(r.err)));
        }
        let _ = c.close(limit).await;
        Ok(())
    };
    match tokio::time::timeout(limit, attempt).await {
        Ok(r) => r,
        Err(_) => Err("timed out".into()),
    }
}

// ---------------------------------------------------------------------------------------------
// The `zk` subcommand

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(super) enum ZkWorkload {
    /// create ROOT/<n> (persistent, --val-size data), n = 0, 1, 2, ...: every op a new node.
    Create,
    /// setData (version -1) on a random node of the prefilled ones.
    Set,
    /// getData (no watch) on a random node of the prefilled ones.
    Get,
    /// delete (version -1) the prefilled nodes, in order, each once.
    Delete,
    /// exists (no watch) on a random node of the prefilled ones.
    Exists,
    /// getChildren (no watch) of ROOT, which holds the prefilled nodes.
    GetChildren,
    /// the lock recipe (kazoo/Curator): ephemeral-sequential LOCK_ROOT/lock-, getChildren,
    /// exists-watch on the predecessor, ..., delete; one op = one acquire + release.
    Lock,
}

impl ZkWorkload {
    fn name(self) -> &'static str {
        match self {
            ZkWorkload::Create => "zk-create",
            ZkWorkload::Set => "zk-set",
            ZkWorkload::Get => "zk-get",
            ZkWorkload::Delete => "zk-delete",
            ZkWorkload::Exists => "zk-exists",
            ZkWorkload::GetChildren => "zk-get-children",
            ZkWorkload::Lock => "zk-lock",
        }
    }
}

#[derive(Args, Debug)]
pub(super) struct ZkArgs {
    /// The workload.
    #[arg(value_enum)]
    workload: ZkWorkload,

    /// Requests each client keeps in flight (pipelined on its connection). The lock recipe is
    /// sequential: 1.
    #[arg(long, default_value_t = 1)]
    inflight: usize,

    /// Nodes created under --root before the run (not measured). Default: the key space for
    /// set/get/exists, --total for delete, 100 for get-children, none for create. 0 skips the
    /// prefill (e.g. the nodes exist from an earlier run with the same --root).
    #[arg(long)]
    prefill: Option<u64>,

    /// Parent of the data nodes (created if missing).
    #[arg(long, default_value = "/bench")]
    root: String,

    /// Parent of the lock nodes (created if missing).
    #[arg(long, default_value = "/bench-lock")]
    lock_root: String,

    /// Session timeout asked for, in ms (the server clamps it to its [2, 20] ticks).
    #[arg(long, default_value_t = 30_000)]
    session_timeout_ms: i32,
}

/// What a pipelined op does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Creates node i (the shared counter); NodeExists is `flagged`, not an error, when
    /// `exists_ok` (the prefill).
    Create {
        exists_ok: bool,
    },
    Set,
    Get,
    Delete,
    Exists,
    GetChildren,
}

struct Shared {
    next: AtomicU64,
    total: u64,
    deadline: Option<Instant>,
    timeout: Duration,
    key_size: usize,
    value: Vec<u8>,
    root: String,
    /// Keys 0..space for the random-key ops.
    space: u64,
    /// Lock recipe: true while some client holds the lock.
    held: AtomicBool,
    /// Lock recipe: the highest sequence number that held the lock (-1: none yet).
    last_seq: AtomicI64,
    /// Lock recipe: where an acquire + release spends its time (see [`LockPhase`]).
    lock_phases: [PhaseTotal; 3],
}

/// The parts of a lock op that say where a server is fast or slow: the create's round trip,
/// the hand-off (from the predecessor's NodeDeleted event to holding the lock: the
/// getChildren that shows this client first), and the delete's round trip. A hand-off from
/// one holder to the next is a delete plus the next one's `Handoff`, so those two set the
/// lock's throughput under contention.
#[derive(Clone, Copy)]
enum LockPhase {
    Create = 0,
    Handoff = 1,
    Delete = 2,
}

impl LockPhase {
    const ALL: [LockPhase; 3] = [LockPhase::Create, LockPhase::Handoff, LockPhase::Delete];

    /// Its name in the JSON line and the human one.
    fn name(self) -> &'static str {
        match self {
            LockPhase::Create => "create",
            LockPhase::Handoff => "event_to_acquired",
            LockPhase::Delete => "delete",
        }
    }
}

/// Sum and count of one [`LockPhase`] over all clients.
#[derive(Default)]
struct PhaseTotal {
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl PhaseTotal {
    fn add(&self, since: Instant) {
        self.sum_us.fetch_add(u64::from(us(since.elapsed())), Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Mean in µs; None if never measured.
    fn mean_us(&self) -> Option<u64> {
        let n = self.count.load(Ordering::Relaxed);
        (n > 0).then(|| self.sum_us.load(Ordering::Relaxed) / n)
    }
}

impl Shared {
    fn new(c: &Common, total: u64, deadline: Option<Instant>, root: &str, space: u64) -> Arc<Shared> {
        Arc::new(Shared {
            next: AtomicU64::new(0),
            total,
            deadline,
            timeout: timeout(c),
            key_size: c.key_size,
            value: value(c.val_size),
            root: root.trim_end_matches('/').to_string(),
            space,
            held: AtomicBool::new(false),
            last_seq: AtomicI64::new(-1),
            lock_phases: Default::default(),
        })
    }

    fn path(&self, n: u64) -> String {
        let k = key(n, self.key_size);
        format!("{}/{}", self.root, String::from_utf8_lossy(&k))
    }

    /// The next op's number, or None when the run is over.
    fn take(&self) -> Option<u64> {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        (i < self.total).then_some(i)
    }
}

fn check_path(p: &str, what: &str) -> Result<(), String> {
    if !p.starts_with('/') || p.len() < 2 || p.ends_with('/') || p.contains("//") {
        return Err(format!("{what} must be an absolute znode path like /bench, not {p:?}"));
    }
    Ok(())
}

pub(super) async fn run(c: &Common, a: ZkArgs) -> Result<i32, String> {
    if c.endpoints.is_empty() {
        return Err("no --endpoints".into());
    }
    if c.clients == 0 || a.inflight == 0 {
        return Err("--clients and --inflight must be >= 1".into());
    }
    if a.workload == ZkWorkload::Lock && a.inflight != 1 {
        return Err("the lock recipe is sequential: use --inflight 1".into());
    }
    check_path(&a.root, "--root")?;
    check_path(&a.lock_root, "--lock-root")?;
    if c.key_space == 0 {
        return Err("--key-space must be >= 1".into());
    }
    let total = super::total(c);
    let prefill = match a.workload {
        ZkWorkload::Set | ZkWorkload::Get | ZkWorkload::Exists => a.prefill.unwrap_or(c.key_space),
        ZkWorkload::Delete => match (a.prefill, c.total) {
            (Some(n), _) => n,
            (None, Some(t)) => t,
            (None, None) if c.duration_s.is_some() => {
                return Err("delete with only --duration-s needs --prefill (the nodes it may delete)".into())
            }
            (None, None) => total,
        },
        ZkWorkload::GetChildren => a.prefill.unwrap_or(100),
        ZkWorkload::Create | ZkWorkload::Lock => 0,
    };
    // The random-key ops go over the prefilled nodes (over the key space without a prefill).
    let space = if prefill == 0 { c.key_space } else { prefill };
    let to = timeout(c);

    // Parents first, over one session.
    {
        let mut setup = ZkClient::connect(&c.endpoints[0], a.session_timeout_ms, to).await?;
        ensure_path(&mut setup, &a.root, to).await?;
        if a.workload == ZkWorkload::Lock {
            ensure_path(&mut setup, &a.lock_root, to).await?;
        }
        let _ = setup.close(to).await;
    }

    if prefill > 0 {
        // Nodes 0..prefill: 4 to 16 sessions x 16 in flight, not measured.
        let clients = connect_clients(c, &a, c.clients.clamp(4, 16)).await?;
        let sh = Shared::new(c, prefill, None, &a.root, space);
        let r = drive(c, clients, 16, sh, Some(Kind::Create { exists_ok: true })).await;
        eprintln!(
            "prefill: {} nodes under {} in {:.2} s ({:.0} creates/s), {} already existed, {} errors",
            r.lat_us.len() as u64,
            a.root,
            r.seconds,
            r.lat_us.len() as f64 / r.seconds.max(1e-9),
            r.flagged,
            r.errors
        );
        if r.errors > 0 {
            return Err(format!("prefill had {} errors", r.errors));
        }
    }

    let kind = match a.workload {
        ZkWorkload::Create => Some(Kind::Create { exists_ok: false }),
        ZkWorkload::Set => Some(Kind::Set),
        ZkWorkload::Get => Some(Kind::Get),
        ZkWorkload::Delete => Some(Kind::Delete),
        ZkWorkload::Exists => Some(Kind::Exists),
        ZkWorkload::GetChildren => Some(Kind::GetChildren),
        ZkWorkload::Lock => None,
    };
    let total = if a.workload == ZkWorkload::Delete { total.min(prefill) } else { total };
    let root = if kind.is_some() { &a.root } else { &a.lock_root };
    // The clock (and --duration-s) starts once every client has its session.
    let clients = connect_clients(c, &a, c.clients).await?;
    let deadline = super::deadline(c);
    let shared = Shared::new(c, total, deadline, root, space);
    let r = drive(c, clients, a.inflight, shared.clone(), kind).await;

    let mut extra: Vec<(&str, Value)> = vec![("in_flight", json!(a.inflight))];
    let mut note = String::new();
    match a.workload {
        ZkWorkload::Exists => {
            note = format!(", {} misses (NoNode)", r.flagged);
            extra.push(("misses", json!(r.flagged)));
        }
        ZkWorkload::Lock => {
            note = format!(", {} mutual exclusion violations (counted in errors)", r.flagged);
            extra.push(("violations", json!(r.flagged)));
            let mut phases = serde_json::Map::new();
            let mut text = Vec::new();
            for phase in LockPhase::ALL {
                let name = phase.name();
                let mean = shared.lock_phases[phase as usize].mean_us();
                phases.insert(name.to_string(), json!(mean));
                text.push(format!("{name} {}", mean.map_or("-".to_string(), |m| m.to_string())));
            }
            note += &format!("; mean µs: {}", text.join(", "));
            extra.push(("lock_phase_mean_us", Value::Object(phases)));
        }
        _ => {}
    }
    if prefill > 0 {
        extra.push(("prefill", json!(prefill)));
    }
    extra.push(("val_size", json!(c.val_size)));
    Ok(report(a.workload.name(), c, Reach::InFlight(a.inflight), &r, &note, extra))
}

/// Opens `n` sessions, endpoints round-robin, up to 16 handshakes at a time.
async fn connect_clients(c: &Common, a: &ZkArgs, n: usize) -> Result<Vec<ZkClient>, String> {
    let to = timeout(c);
    let mut out = Vec::with_capacity(n);
    let mut pending = Vec::new();
    for i in 0..n {
        let ep = c.endpoints[i % c.endpoints.len()].clone();
        let st = a.session_timeout_ms;
        pending.push(tokio::spawn(async move { ZkClient::connect(&ep, st, to).await }));
        if pending.len() == 16 || i + 1 == n {
            for p in pending.drain(..) {
                out.push(p.await.map_err(|e| format!("connect task: {e}"))??);
            }
        }
    }
    Ok(out)
}

/// Runs the clients to the end (the clock starts here), then closes their sessions (not
/// measured).
async fn drive(c: &Common, clients: Vec<ZkClient>, inflight: usize, sh: Arc<Shared>, kind: Option<Kind>) -> RunResult {
    let seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1);
    let start = Instant::now();
    let mut handles = Vec::with_capacity(clients.len());
    for (w, client) in clients.into_iter().enumerate() {
        let sh = sh.clone();
        let rng = Rng::new(seed.wrapping_add(w as u64 * 7919));
        handles.push(tokio::spawn(async move {
            match kind {
                Some(k) => pipelined(client, k, inflight, sh, rng).await,
                None => lock_client(client, sh).await,
            }
        }));
    }
    let mut out = RunResult::default();
    let mut finished = Vec::with_capacity(handles.len());
    for h in handles {
        match h.await {
            Ok((r, client)) => {
                out.lat_us.extend_from_slice(&r.lat_us);
                out.errors += r.errors;
                out.flagged += r.flagged;
                finished.extend(client);
            }
            Err(e) => {
                note_error(&format!("client task failed: {e}"));
                out.errors += 1;
            }
        }
    }
    out.seconds = start.elapsed().as_secs_f64();
    let to = timeout(c).min(Duration::from_secs(5));
    let closes: Vec<_> = finished.into_iter().map(|cl| tokio::spawn(cl.close(to))).collect();
    for cl in closes {
        if let Ok(Err(e)) = cl.await {
            note_error(&format!("closing a session: {e}"));
        }
    }
    out
}

/// One client, up to `inflight` requests pipelined. Returns the client for closing unless its
/// connection broke.
async fn pipelined(
    mut cl: ZkClient,
    kind: Kind,
    inflight: usize,
    s: Arc<Shared>,
    mut rng: Rng,
) -> (RunResult, Option<ZkClient>) {
    let mut r = RunResult { lat_us: Vec::with_capacity(1024), ..Default::default() };
    let mut pending: VecDeque<(i32, Instant)> = VecDeque::with_capacity(inflight);
    let mut done = false;
    loop {
        // The window is refilled once every reply already received has been taken, so the
        // requests that one read's replies make room for go out in one write, as a pipelining
        // client's do; refilling after each reply cost a `sendto` per request, and at 16 x 16
        // in flight that made the load generator's loopback sends the bottleneck (its kernel
        // time twice the server's under `zk get --inflight 16`). Queueing does not touch the
        // read buffer, so whether to refill is decided once per pass.
        let refill = pending.is_empty() || !cl.has_packet();
        while refill && !done && pending.len() < inflight {
            let Some(i) = s.take() else {
                done = true;
                break;
            };
            let x = match kind {
                Kind::Create { .. } => {
                    let p = s.path(i);
                    cl.queue(op::CREATE, |w| create_body(w, &p, &s.value, PERSISTENT))
                }
                Kind::Delete => {
                    let p = s.path(i);
                    cl.queue(op::DELETE, |w| {
                        w.ustring(&p).int(-1);
                    })
                }
                Kind::Set => {
                    let p = s.path(rng.below(s.space));
                    cl.queue(op::SET_DATA, |w| {
                        w.ustring(&p).buffer(&s.value).int(-1);
                    })
                }
                Kind::Get | Kind::Exists => {
                    let p = s.path(rng.below(s.space));
                    let opcode = if kind == Kind::Get { op::GET_DATA } else { op::EXISTS };
                    cl.queue(opcode, |w| {
                        w.ustring(&p).boolean(false);
                    })
                }
                Kind::GetChildren => cl.queue(op::GET_CHILDREN, |w| {
                    w.ustring(&s.root).boolean(false);
                }),
            };
            pending.push_back((x, Instant::now()));
        }
        let Some(&(want, t0)) = pending.front() else { break };
        if let Err(e) = cl.flush().await {
            note_error(&e);
            r.errors += pending.len() as u64;
            return (r, None);
        }
        let reply = match cl.recv(t0 + s.timeout).await {
            Ok(Incoming::Reply(rep)) => rep,
            Ok(Incoming::Event(e)) => {
                note_error(&format!("unexpected notification (type {} on {}); no watch was set", e.kind, e.path));
                r.errors += 1;
                continue;
            }
            Err(e) => {
                // The connection is unusable (or a request timed out): everything in flight fails.
                note_error(&format!("session 0x{:x}: {e}", cl.session_id));
                r.errors += pending.len() as u64;
                return (r, None);
            }
        };
        pending.pop_front();
        if reply.xid != want {
            note_error(&format!("reply for xid {} while xid {want} was the oldest in flight", reply.xid));
            r.errors += 1 + pending.len() as u64;
            return (r, None);
        }
        match check_reply(&cl, kind, &reply, s.value.len()) {
            Ok(Outcome::Ok) => r.lat_us.push(us(t0.elapsed())),
            Ok(Outcome::Flagged) => {
                r.lat_us.push(us(t0.elapsed()));
                r.flagged += 1;
            }
            Err(e) => {
                r.errors += 1;
                note_error(&e);
            }
        }
    }
    (r, Some(cl))
}

enum Outcome {
    Ok,
    /// A counted non-error: exists on a missing node, prefill create of an existing node.
    Flagged,
}

/// Checks a reply: error code, and that the body parses (get: the data has --val-size bytes).
fn check_reply(cl: &ZkClient, kind: Kind, rep: &Reply, val_size: usize) -> Result<Outcome, String> {
    let what = match kind {
        Kind::Create { .. } => "create",
        Kind::Set => "setData",
        Kind::Get => "getData",
        Kind::Delete => "delete",
        Kind::Exists => "exists",
        Kind::GetChildren => "getChildren",
    };
    match (kind, rep.err) {
        (_, 0) => {}
        (Kind::Exists, NO_NODE) => return Ok(Outcome::Flagged),
        (Kind::Create { exists_ok: true }, NODE_EXISTS) => return Ok(Outcome::Flagged),
        (_, e) => return Err(format!("{what}: {}", err_name(e))),
    }
    let bad = |e: JuteError| format!("{what}: {}", jerr(e));
    let mut r = Reader::new(cl.body(rep));
    match kind {
        Kind::Create { .. } => {
            r.ustring().map_err(bad)?;
        }
        Kind::Set | Kind::Exists => {
            Stat::read(&mut r).map_err(bad)?;
        }
        Kind::Get => {
            let data = r.buffer().map_err(bad)?;
            Stat::read(&mut r).map_err(bad)?;
            if data.len() != val_size {
                return Err(format!("getData: {} bytes of data, expected --val-size {val_size}", data.len()));
            }
        }
        Kind::Delete => {}
        Kind::GetChildren => {
            r.vector(|r| r.ustring()).map_err(bad)?;
        }
    }
    Ok(Outcome::Ok)
}

// ---- the lock recipe ----

/// The sequence number of a `lock-NNNNNNNNNN` child.
fn seq_of(name: &str) -> Option<i64> {
    name.strip_prefix("lock-").and_then(|s| s.parse().ok())
}

/// One client of the lock recipe: until the run is over, acquire and release. One op = one
/// acquire + release, timed from the create to the delete's reply.
async fn lock_client(mut cl: ZkClient, s: Arc<Shared>) -> (RunResult, Option<ZkClient>) {
    let mut r = RunResult { lat_us: Vec::with_capacity(1024), ..Default::default() };
    while s.take().is_some() {
        let t0 = Instant::now();
        match lock_once(&mut cl, &s).await {
            Ok(violated) => {
                r.lat_us.push(us(t0.elapsed()));
                if violated {
                    r.flagged += 1;
                    r.errors += 1;
                }
            }
            Err(e) => {
                // This session's state is unknown now: stop this client, and close its session
                // at once so that its lock node goes and the others are not blocked behind it.
                note_error(&format!("lock, session 0x{:x}: {e}", cl.session_id));
                r.errors += 1;
                if let Err(e) = cl.close(s.timeout.min(Duration::from_secs(5))).await {
                    note_error(&format!("closing a session: {e}"));
                }
                return (r, None);
            }
        }
    }
    (r, Some(cl))
}

/// Acquire (create ephemeral-sequential, wait to be the lowest) and release (delete). Returns
/// whether mutual exclusion looked violated: another client held the lock when this one got
/// it, or a node with a higher sequence number held it before this one (the recipe is FIFO).
async fn lock_once(cl: &mut ZkClient, s: &Shared) -> Result<bool, String> {
    let dir = s.root.as_str();
    let prefix = format!("{dir}/lock-");
    let phase = |p: LockPhase| &s.lock_phases[p as usize];
    let created = Instant::now();
    let rep =
        cl.call(op::CREATE, |w| create_body(w, &prefix, b"", EPHEMERAL_SEQUENTIAL), Instant::now() + s.timeout).await?;
    if rep.err != 0 {
        return Err(format!("create {prefix}: {}", err_name(rep.err)));
    }
    phase(LockPhase::Create).add(created);
    // When the predecessor's NodeDeleted event arrived, if this client waited for one.
    let mut woken: Option<Instant> = None;
    let mine = Reader::new(cl.body(&rep)).ustring().map_err(jerr)?;
    let my_name = mine.rsplit('/').next().unwrap_or("").to_string();
    let my_seq = seq_of(&my_name).ok_or_else(|| format!("create returned {mine:?}, not {prefix}NNNNNNNNNN"))?;
    loop {
        let rep = cl
            .call(
                op::GET_CHILDREN,
                |w| {
                    w.ustring(dir).boolean(false);
                },
                Instant::now() + s.timeout,
            )
            .await?;
        if rep.err != 0 {
            return Err(format!("getChildren {dir}: {}", err_name(rep.err)));
        }
        let children = Reader::new(cl.body(&rep)).vector(|r| r.ustring()).map_err(jerr)?;
        let mut seqs: Vec<(i64, &str)> = children.iter().filter_map(|c| seq_of(c).map(|n| (n, c.as_str()))).collect();
        seqs.sort_unstable();
        let Some(at) = seqs.iter().position(|&(n, _)| n == my_seq) else {
            return Err(format!("our lock node {mine} is not among the children of {dir}"));
        };
        if at == 0 {
            if let Some(t) = woken {
                phase(LockPhase::Handoff).add(t);
            }
            break;
        }
        let pred = format!("{dir}/{}", seqs[at - 1].1);
        let rep = cl
            .call(
                op::EXISTS,
                |w| {
                    w.ustring(&pred).boolean(true);
                },
                Instant::now() + s.timeout,
            )
            .await?;
        match rep.err {
            0 => {
                cl.wait_event(event_type::NODE_DELETED, &pred, Instant::now() + s.timeout).await?;
                woken = Some(Instant::now());
            }
            NO_NODE => {} // gone already: look again
            e => return Err(format!("exists {pred}: {}", err_name(e))),
        }
    }
    // Held. The flag is cleared before the delete is sent: the next holder can only learn of
    // the delete after it was sent, so it finds the flag set only if two clients hold at once.
    let overlap = s.held.swap(true, Ordering::SeqCst);
    let out_of_order = s.last_seq.fetch_max(my_seq, Ordering::SeqCst) >= my_seq;
    s.held.store(false, Ordering::SeqCst);
    let violated = overlap || out_of_order;
    if violated {
        note_error(&format!(
            "lock {mine}: mutual exclusion violated ({})",
            if overlap { "another client held the lock" } else { "a later node held the lock first" }
        ));
    }
    let deleting = Instant::now();
    let rep = cl
        .call(
            op::DELETE,
            |w| {
                w.ustring(&mine).int(-1);
            },
            Instant::now() + s.timeout,
        )
        .await?;
    if rep.err != 0 {
        return Err(format!("delete {mine}: {}", err_name(rep.err)));
    }
    phase(LockPhase::Delete).add(deleting);
    Ok(violated)
}
