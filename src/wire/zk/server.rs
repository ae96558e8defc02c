//! The ZooKeeper front end: listener, connections, sessions (= leases), and request execution.
//!
//! One connection = one task ([`session_loop`]). It parses packets in order, renews the
//! session's lease on each one, turns writes into [`Command::Zk`] and submits them to raft at
//! once (so pipelined writes share log entries and keep their order; a write behind a queued
//! read waits for that read, which must not see it), and queues everything in request order. It
//! answers the queue in order: it waits for a write to apply or executes a read (after every
//! earlier request was answered: ZooKeeper's read-your-writes), writes queued watch
//! notifications first, then the reply.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify, Semaphore};

use super::auth;
use super::fourlw;
use super::frame::{self, Frame, JUTE_MAXBUFFER_DEFAULT};
use super::gssapi::GssapiServer;
use super::jute::{Reader, Writer};
use super::proto::*;
use super::sasl::{self, DigestMd5Server, SaslUsers};
use super::watches::{ConnId, Guard, Kind, Notification, WatchTable};
use crate::command::{
    zk_err, AlarmType, Applied, Command, CreateMode, Response, ZkAcl, ZkOp, ZkOpResult, ZkStat, ZkTxn,
};
use crate::lessor::Lessor;
use crate::replication::{ProposeError, Replica};
use crate::store::znode::perms;
use crate::store::{znode, ReadView, Store};
use crate::watch::Hub;

#[derive(Clone, Debug)]
pub struct ZkConfig {
    pub tick_time_ms: u64,
    pub min_session_timeout_ms: u64,
    pub max_session_timeout_ms: u64,
    /// None = every word.
    pub four_letter_words: Option<Vec<String>>,
    pub ttl_enabled: bool,
    /// Connections from one IP address at once, as zoo.cfg's maxClientCnxns (ZooKeeper's
    /// default 60); 0 = no per-address limit. One more from that address is closed at once.
    pub max_client_cnxns: usize,
    /// Connections at once from everyone together: the bound that holds when
    /// `max_client_cnxns` is 0 or many addresses connect. Beyond it, accepting waits.
    pub connections_max: usize,
    pub container_check_interval: Duration,
    /// jute.maxbuffer: the largest packet accepted.
    pub max_packet_bytes: usize,
    /// Requests read from a connection and not yet answered (ZooKeeper's outstanding limit).
    pub outstanding_per_conn_max: usize,
    /// Notifications queued for a connection before it is closed as too slow.
    pub notifications_per_conn_max: usize,
    pub watches_per_conn_max: usize,
    /// Live sessions (leases) at most: a client reconnecting in a loop cannot pile up sessions
    /// that wait for their timeout.
    pub sessions_max: usize,
    /// Children returned by one getChildren at most (bounded by the packet size anyway).
    pub children_max: usize,
    pub data_dir: String,
    pub client_port: u16,
    /// DIGEST-MD5 users for SASL (a JAAS DigestLoginModule's user_<name> lines); none = SASL
    /// not configured.
    pub sasl_users: SaslUsers,
    /// SASL is GSSAPI (Kerberos) with the keytab `gssapi::init` registered.
    pub sasl_gssapi: bool,
    /// etcd's --quota-backend-bytes: a create or setData that finds the backend larger raises
    /// NOSPACE for `member_id` (as an etcd put does), and is then refused with QuotaExceeded.
    pub quota_backend_bytes: u64,
    pub member_id: u64,
}

impl Default for ZkConfig {
    fn default() -> Self {
        ZkConfig {
            tick_time_ms: 2000,
            min_session_timeout_ms: 4000,
            max_session_timeout_ms: 40000,
            four_letter_words: None,
            ttl_enabled: true,
            max_client_cnxns: 60,
            connections_max: 10_000,
            container_check_interval: Duration::from_secs(1),
            max_packet_bytes: JUTE_MAXBUFFER_DEFAULT,
            outstanding_per_conn_max: 1000,
            notifications_per_conn_max: 10_000,
            watches_per_conn_max: 100_000,
            children_max: 1_000_000,
            sessions_max: 100_000,
            data_dir: String::new(),
            client_port: 2181,
            sasl_users: SaslUsers::default(),
            sasl_gssapi: false,
            quota_backend_bytes: u64::MAX,
            member_id: 0,
        }
    }
}

/// Per-connection facts for the `cons` and `stat` words.
pub struct ConnStats {
    pub peer: SocketAddr,
    pub session_id: AtomicI64,
    pub timeout_ms: AtomicI64,
    pub received: AtomicU64,
    pub sent: AtomicU64,
    pub outstanding: AtomicUsize,
    pub last_zxid: AtomicI64,
    /// The last answered request: ZooKeeper's short op name, xid, answer time (epoch ms).
    pub last_op: Mutex<&'static str>,
    pub last_cxid: AtomicI64,
    pub last_response_ms: AtomicI64,
    pub last_latency_ms: AtomicU64,
    pub latency: Latency,
    pub established_ms: i64,
    /// A connection that sent a four-letter word: listed (sessionless) while it is answered.
    pub four_letter: bool,
    close: Notify,
    closed: AtomicBool,
}

impl ConnStats {
    /// `crst`: ServerCnxn.resetStats — counters to zero, and the last operation forgotten
    /// (cons then prints lop=NA, no lcxid, lzxid=0xffffffffffffffff, lresp=0).
    pub fn reset(&self) {
        self.received.store(0, Ordering::Relaxed);
        self.sent.store(0, Ordering::Relaxed);
        self.latency.reset();
        *self.last_op.lock().unwrap_or_else(|p| p.into_inner()) = "NA";
        self.last_cxid.store(-1, Ordering::Relaxed);
        self.last_zxid.store(-1, Ordering::Relaxed);
        self.last_response_ms.store(0, Ordering::Relaxed);
        self.last_latency_ms.store(0, Ordering::Relaxed);
    }

    /// A connection's counters as it starts: the connect request (or the four-letter word)
    /// received, `sent` answers so far, the last zxid and operation it saw.
    fn new(
        peer: SocketAddr,
        four_letter: bool,
        session_id: i64,
        timeout_ms: i64,
        sent: u64,
        last_zxid: i64,
        last_op: &'static str,
    ) -> ConnStats {
        ConnStats {
            peer,
            session_id: AtomicI64::new(session_id),
            timeout_ms: AtomicI64::new(timeout_ms),
            received: AtomicU64::new(1),
            sent: AtomicU64::new(sent),
            outstanding: AtomicUsize::new(0),
            last_zxid: AtomicI64::new(last_zxid),
            last_op: Mutex::new(last_op),
            // Java's default for a new ServerCnxn's lastCxid: cons prints lcxid=0x0.
            last_cxid: AtomicI64::new(0),
            last_response_ms: AtomicI64::new(now_ms()),
            last_latency_ms: AtomicU64::new(0),
            latency: Latency::default(),
            established_ms: now_ms(),
            four_letter,
            close: Notify::new(),
            closed: AtomicBool::new(false),
        }
    }
}

/// Request latencies in ms: min/avg/max as the four-letter words report them.
#[derive(Default)]
pub struct Latency {
    total_ms: AtomicU64,
    count: AtomicU64,
    max_ms: AtomicU64,
    min_ms: AtomicU64,
}

impl Latency {
    fn record(&self, ms: u64) {
        self.total_ms.fetch_add(ms, Ordering::Relaxed);
        let n = self.count.fetch_add(1, Ordering::Relaxed);
        self.max_ms.fetch_max(ms, Ordering::Relaxed);
        if n == 0 {
            self.min_ms.store(ms, Ordering::Relaxed);
        } else {
            self.min_ms.fetch_min(ms, Ordering::Relaxed);
        }
    }

    /// (min, avg, max); all 0 before the first request.
    pub fn get(&self) -> (u64, f64, u64) {
        let n = self.count.load(Ordering::Relaxed);
        let avg = if n == 0 { 0.0 } else { self.total_ms.load(Ordering::Relaxed) as f64 / n as f64 };
        (self.min_ms.load(Ordering::Relaxed), avg, self.max_ms.load(Ordering::Relaxed))
    }

    pub fn reset(&self) {
        for c in [&self.total_ms, &self.count, &self.max_ms, &self.min_ms] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

/// Server-wide counters for srvr/stat/mntr.
#[derive(Default)]
pub struct ServerStats {
    pub received: AtomicU64,
    pub sent: AtomicU64,
    pub latency: Latency,
    pub outstanding: AtomicUsize,
    pub response_sizes: ResponseSizes,
}

impl ServerStats {
    /// `srst`: as ZooKeeper's ServerStats.reset (latency, packet counters, response sizes).
    pub fn reset(&self) {
        self.received.store(0, Ordering::Relaxed);
        self.sent.store(0, Ordering::Relaxed);
        self.latency.reset();
        self.response_sizes.reset();
    }
}

/// The sizes of the frames sent to clients, ZooKeeper's `clientResponseStats` (mntr's
/// `zk_{last,min,max}_client_response_size`): every reply and watch notification, counted
/// without its 4-byte length prefix (ServerCnxn.serialize); not the connect response, not a
/// four-letter word's text. -1 for each until the first frame, as ZooKeeper prints them.
pub struct ResponseSizes {
    last: AtomicI64,
    min: AtomicI64,
    max: AtomicI64,
}

impl Default for ResponseSizes {
    fn default() -> Self {
        ResponseSizes { last: AtomicI64::new(-1), min: AtomicI64::new(i64::MAX), max: AtomicI64::new(-1) }
    }
}

impl ResponseSizes {
    /// One frame of `bytes` went out. Min and max are written only when they change, so the
    /// usual frame costs one store and two loads of shared lines, not three read-modify-writes.
    pub fn record(&self, bytes: usize) {
        let n = bytes as i64;
        self.last.store(n, Ordering::Relaxed);
        if n > self.max.load(Ordering::Relaxed) {
            self.max.fetch_max(n, Ordering::Relaxed);
        }
        if n < self.min.load(Ordering::Relaxed) {
            self.min.fetch_min(n, Ordering::Relaxed);
        }
    }

    /// (last, min, max), each -1 while no frame was sent since the start or the last reset.
    pub fn get(&self) -> (i64, i64, i64) {
        let min = self.min.load(Ordering::Relaxed);
        (self.last.load(Ordering::Relaxed), if min == i64::MAX { -1 } else { min }, self.max.load(Ordering::Relaxed))
    }

    fn reset(&self) {
        self.last.store(-1, Ordering::Relaxed);
        self.min.store(i64::MAX, Ordering::Relaxed);
        self.max.store(-1, Ordering::Relaxed);
    }
}

/// ZooKeeper's short names of operations (FinalRequestProcessor's lastOp), for `cons`.
/// The operations whose refusal ZooKeeper's PrepRequestProcessor turns into an error
/// transaction (a multi's refusal is a multi transaction of error results instead).
fn refused_write_is_error_txn(op: i32) -> bool {
    matches!(
        op,
        op::CREATE
            | op::CREATE2
            | op::CREATE_TTL
            | op::CREATE_CONTAINER
            | op::DELETE
            | op::DELETE_CONTAINER
            | op::SET_DATA
            | op::SET_ACL
            | op::CHECK
            | op::RECONFIG
    )
}

fn op_name(op: i32) -> &'static str {
    match op {
        op::PING => "PING",
        op::CREATE_SESSION => "SESS",
        op::MULTI => "MULT",
        op::MULTI_READ => "MLTR",
        op::CREATE | op::CREATE2 | op::CREATE_TTL | op::CREATE_CONTAINER => "CREA",
        op::DELETE | op::DELETE_CONTAINER => "DELE",
        op::SET_DATA => "SETD",
        op::RECONFIG => "RECO",
        op::SET_ACL => "SETA",
        op::CLOSE_SESSION => "CLOS",
        op::SYNC => "SYNC",
        op::CHECK => "CHEC",
        op::EXISTS => "EXIS",
        op::GET_DATA => "GETD",
        op::SET_WATCHES => "SETW",
        op::SET_WATCHES2 => "STW2",
        op::ADD_WATCH => "ADDW",
        op::GET_ACL => "GETA",
        op::GET_CHILDREN | op::GET_CHILDREN2 => "GETC",
        op::GET_ALL_CHILDREN_NUMBER => "GETACN",
        op::CHECK_WATCHES => "CHKW",
        op::REMOVE_WATCHES => "REMW",
        op::GET_EPHEMERALS => "GETE",
        op::WHO_AM_I => "HOMI",
        _ => "NA",
    }
}

pub struct ZkCtx {
    pub replica: Replica,
    pub store: Store,
    pub hub: Arc<Hub>,
    pub lessor: Arc<Lessor>,
    pub watches: Arc<WatchTable>,
    pub config: ZkConfig,
    pub stats: ServerStats,
    pub conns: Mutex<HashMap<ConnId, Arc<ConnStats>>>,
    /// session id -> the connection that holds it.
    sessions: Mutex<HashMap<i64, ConnId>>,
    next_conn: AtomicU64,
    /// ZooKeeper's ZooTrace text trace level, read by `gtmk` and set by `stmk` (it changes
    /// nothing else here; ZooKeeper's default is 306).
    pub trace_mask: AtomicI64,
    session_ids: AtomicU64,
    secret: u64,
    pub started: Instant,
}

impl ZkCtx {
    /// etcd's space quota for ZooKeeper writes: one that adds data (a create or setData) and
    /// finds the backend file over `quota_backend_bytes` raises NOSPACE first, queued ahead of
    /// it, so its apply refuses it with QuotaExceeded as every such write after it until the
    /// alarm is disarmed (`etcdctl alarm disarm`, after compaction and defragmentation).
    /// Deletes, setACL, reads and new sessions ([`Command::ZkSession`]) are never refused, as
    /// etcd lets deletes and compactions through. Returns the replica to submit `cmd` to.
    fn over_quota(&self, cmd: &Command) -> &Replica {
        if self.store.size_bytes() > self.config.quota_backend_bytes {
            let adds = match cmd {
                Command::Zk(txn) => txn.ops.iter().any(|op| matches!(op, ZkOp::Create { .. } | ZkOp::SetData { .. })),
                _ => false,
            };
            if adds {
                let raise =
                    Command::Alarm { activate: true, member_id: self.config.member_id, alarm: AlarmType::NoSpace };
                if let Err(e) = self.replica.submit(raise) {
                    tracing::warn!("raising NOSPACE: {e}");
                }
            }
        }
        &self.replica
    }

    pub fn new(
        replica: Replica,
        store: Store,
        hub: Arc<Hub>,
        lessor: Arc<Lessor>,
        config: ZkConfig,
        secret: u64,
    ) -> Arc<ZkCtx> {
        let watches = WatchTable::new(hub.revision(), config.watches_per_conn_max);
        let w = watches.clone();
        hub.add_tap(Box::new(move |rev, events, acls| w.on_publish(rev, events, acls)));
        // Session ids: like ZooKeeper's, a time-based seed then a counter; the high byte is
        // this member's, and they stay positive.
        let seed = ((secret & 0x7f) << 56) | ((now_ms() as u64 & 0xff_ffff_ffff) << 16);
        Arc::new(ZkCtx {
            replica,
            store,
            hub,
            lessor,
            watches,
            config,
            stats: ServerStats::default(),
            conns: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            trace_mask: AtomicI64::new(306),
            session_ids: AtomicU64::new(seed),
            secret,
            started: Instant::now(),
        })
    }

    fn password(&self, session_id: i64) -> Vec<u8> {
        let mut input = self.secret.to_be_bytes().to_vec();
        input.extend_from_slice(&session_id.to_be_bytes());
        crate::store::sha256::digest(&input)[..16].to_vec()
    }

    /// Closes a connection (its loop ends and drops the socket, without a reply). Its watches
    /// go now, not when its task gets round to ending: ZooKeeper drops them before it answers
    /// the reattach that closed the connection, and a checkWatches on the new connection must
    /// not find them (it answers for any connection's watch on the path).
    fn close_conn(&self, conn_id: ConnId) {
        if let Some(s) = self.conns.lock().unwrap_or_else(|p| p.into_inner()).get(&conn_id) {
            s.closed.store(true, Ordering::Release);
            s.close.notify_waiters();
        }
        self.watches.remove_conn(conn_id);
    }

    fn next_session_id(&self) -> i64 {
        (self.session_ids.fetch_add(1, Ordering::Relaxed).wrapping_add(1) & (i64::MAX as u64)) as i64
    }

    pub fn revision(&self) -> i64 {
        self.watches.published()
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Serves ZooKeeper clients on `listener` until `stop` turns true.
pub async fn serve(ctx: Arc<ZkCtx>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(ctx.config.connections_max.max(1)));
    let per_ip = PerIpCount::new(ctx.config.max_client_cnxns);
    spawn_reaper(ctx.clone(), stop.clone());
    loop {
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => match s { Ok(s) => s, Err(_) => return },
            _ = stop.wait_for(|s| *s) => return,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let Some(ip_slot) = per_ip.take(peer.ip()) else {
                    // ZooKeeper's NIO factory does the same: log, close the socket unanswered.
                    tracing::warn!("Too many connections from /{} - max is {}", peer.ip(), ctx.config.max_client_cnxns);
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let ctx = ctx.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    connection(ctx, stream, peer, stop).await;
                    drop(ip_slot);
                    drop(slot);
                });
            }
            Err(e) => {
                tracing::warn!("zookeeper accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Open connections per client IP address, for maxClientCnxns.
#[derive(Clone)]
struct PerIpCount {
    /// 0 = unlimited (nothing is counted).
    max: usize,
    open: Arc<Mutex<HashMap<std::net::IpAddr, usize>>>,
}

/// One counted connection; gives its place back when dropped.
struct IpSlot {
    count: PerIpCount,
    ip: Option<std::net::IpAddr>,
}

impl PerIpCount {
    fn new(max: usize) -> PerIpCount {
        PerIpCount { max, open: Arc::new(Mutex::new(HashMap::new())) }
    }

    /// A place for one more connection from `ip`, or None when it already has `max`.
    fn take(&self, ip: std::net::IpAddr) -> Option<IpSlot> {
        if self.max == 0 {
            return Some(IpSlot { count: self.clone(), ip: None });
        }
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(IpSlot { count: self.clone(), ip: Some(ip) })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let Some(ip) = self.ip else { return };
        let mut open = self.count.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                // No entry outlives its last connection: the map stays as small as the set
                // of addresses connected now.
                open.remove(&ip);
            }
        }
    }
}

/// The leader's container and TTL reaper (ZooKeeper's ContainerManager).
fn spawn_reaper(ctx: Arc<ZkCtx>, mut stop: watch::Receiver<bool>) {
    const REAPS_PER_CHECK_MAX: usize = 1000;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(ctx.config.container_check_interval);
        loop {
            tokio::select! { _ = tick.tick() => {}, _ = stop.changed() => return }
            if !ctx.replica.status().is_leader {
                continue;
            }
            let now = now_ms();
            let candidates = match ctx.store.read().and_then(|v| v.zk_reap_candidates(now, REAPS_PER_CHECK_MAX)) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!("reaper cannot read the store: {e}");
                    continue;
                }
            };
            for path in candidates {
                let txn = ZkTxn {
                    ops: vec![ZkOp::Reap { path }],
                    now_ms: now,
                    session_id: 0,
                    auth: Vec::new(),
                    ttl_enabled: ctx.config.ttl_enabled,
                };
                if let Err(e) = ctx.replica.propose(Command::Zk(txn)).await {
                    tracing::warn!("reaping: {e}");
                }
            }
        }
    });
}

/// Reads until `buf` holds one whole packet; returns its payload length, or None at EOF.
async fn read_packet(rd: &mut OwnedReadHalf, buf: &mut Vec<u8>, max: usize) -> Result<Option<usize>, std::io::Error> {
    loop {
        match frame::check(buf, max) {
            Ok(Frame::Packet { len }) => return Ok(Some(len)),
            Ok(Frame::Incomplete) => {}
            Err(e) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())),
        }
        // Straight into the buffer's spare room: a zeroed stack chunk and a copy per read were
        // 3 % of a get's server CPU. The room asked for bounds what one read can add.
        buf.reserve(READ_CHUNK_BYTES);
        let n = (&mut *rd).take(READ_CHUNK_BYTES as u64).read_buf(buf).await?;
        if n == 0 {
            return Ok(None);
        }
    }
}

/// The most one read from a client's socket adds to its connection's buffer.
const READ_CHUNK_BYTES: usize = 16 * 1024;

/// The most identities one connection may hold (its ip one, addauth digests, a SASL one).
/// Why: every write carries them through the log and every ACL check walks them, and adding
/// one costs a pass over the others (`auth::add_like_zookeeper`); clients hold a handful.
/// ZooKeeper sets no bound; an addauth past this one fails like a bad one (AuthFailed, and
/// the connection closes).
const AUTH_IDENTITIES_MAX: usize = 1024;

async fn connection(ctx: Arc<ZkCtx>, stream: TcpStream, peer: SocketAddr, stop: watch::Receiver<bool>) {
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = Vec::with_capacity(1024);
    // A four-letter word comes instead of the first length prefix.
    while buf.len() < 4 {
        let mut chunk = [0u8; 1024];
        match rd.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    if let Ok(word) = std::str::from_utf8(&buf[..4]) {
        if fourlw::is_word(word) {
            // As ZooKeeper: the word counts as a received packet, its connection is one of the
            // server's connections (listed in cons/stat/dump, counted in Connections) while it
            // is answered, and the answer counts as sent once written.
            let conn_id = ctx.next_conn.fetch_add(1, Ordering::Relaxed);
            let stats = Arc::new(ConnStats::new(peer, true, 0, 0, 0, 0, "NA"));
            ctx.conns.lock().unwrap_or_else(|p| p.into_inner()).insert(conn_id, stats);
            ctx.stats.received.fetch_add(1, Ordering::Relaxed);
            let text = if word == "stmk" {
                // The mask follows as 8 bytes; without them ZooKeeper closes without an answer.
                let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
                while buf.len() < 12 {
                    let mut chunk = [0u8; 16];
                    match tokio::time::timeout_at(deadline, rd.read(&mut chunk)).await {
                        Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                        _ => break,
                    }
                }
                match buf.get(4..12).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
                    Some(mask) => fourlw::answer_stmk(&ctx, i64::from_be_bytes(mask)),
                    None => String::new(),
                }
            } else {
                fourlw::answer(&ctx, word)
            };
            ctx.conns.lock().unwrap_or_else(|p| p.into_inner()).remove(&conn_id);
            write_counted(&ctx, &mut wr, text.as_bytes()).await;
            let _ = wr.shutdown().await;
            return;
        }
    }
    let len = match read_packet(&mut rd, &mut buf, ctx.config.max_packet_bytes).await {
        Ok(Some(len)) => len,
        _ => return,
    };
    // ZooKeeper counts every whole packet it reads, the ConnectRequest included, and every
    // packet it writes, the ConnectResponse included (srvr's Received / Sent, mntr's
    // zk_packets_*); the connection's own counts start at one each (`ConnStats::new`).
    ctx.stats.received.fetch_add(1, Ordering::Relaxed);
    let Ok(req) = ConnectRequest::read(&mut Reader::new(&buf[4..4 + len])) else { return };
    buf.drain(..4 + len);
    let conn_id = ctx.next_conn.fetch_add(1, Ordering::Relaxed);
    let Some((session_id, timeout_ms, welcome)) = handshake(&ctx, &req, &mut wr).await else { return };

    // The connection holds the session before the client hears so: a reattach the client
    // sends next must find it here to close it.
    let stats = Arc::new(ConnStats::new(peer, false, session_id, timeout_ms as i64, 1, ctx.revision(), "SESS"));
    ctx.conns.lock().unwrap_or_else(|p| p.into_inner()).insert(conn_id, stats.clone());
    // The handshake closed the session's previous connection; one that attached in the
    // meantime (two reconnects racing) is closed here: the newest wins, as in ZooKeeper.
    let previous = ctx.sessions.lock().unwrap_or_else(|p| p.into_inner()).insert(session_id, conn_id);
    if let Some(prev) = previous {
        ctx.close_conn(prev);
    }
    let greeted = write_counted(&ctx, &mut wr, &welcome).await;

    let (ntx, nrx) = mpsc::channel(ctx.config.notifications_per_conn_max);
    let overflowed = ctx.watches.register_conn(conn_id, ntx);
    // The client's address as Java gives it: an IPv4 client of a dual-stack listener (an
    // IPv4-mapped IPv6 address here) is an Inet4Address there, so ip ACLs match it.
    let auth = Arc::new(vec![("ip".to_string(), peer.ip().to_canonical().to_string())]);
    ctx.watches.set_auth(conn_id, auth.clone());
    let conn = Conn {
        ctx: ctx.clone(),
        id: conn_id,
        session_id,
        timeout: Duration::from_millis(timeout_ms),
        lease_period: Duration::from_secs(session_ttl_s(timeout_ms) as u64),
        auth,
        sasl: None,
        stats: stats.clone(),
        reads_queued: 0,
        deferred: 0,
    };
    if greeted {
        session_loop(conn, rd, wr, buf, nrx, overflowed, stop).await;
    }

    ctx.watches.remove_conn(conn_id);
    ctx.conns.lock().unwrap_or_else(|p| p.into_inner()).remove(&conn_id);
    let mut sessions = ctx.sessions.lock().unwrap_or_else(|p| p.into_inner());
    if sessions.get(&session_id) == Some(&conn_id) {
        sessions.remove(&session_id);
    }
}

/// ZooKeeper's negotiation: the asked timeout clamped to [min, max] session timeout.
fn negotiate_timeout_ms(asked_ms: i32, cfg: &ZkConfig) -> u64 {
    (asked_ms.max(0) as u64).clamp(cfg.min_session_timeout_ms, cfg.max_session_timeout_ms)
}

/// The lease behind a session: whole seconds (a lease's unit), rounded up so a session never
/// expires before its timeout.
fn session_ttl_s(timeout_ms: u64) -> i64 {
    timeout_ms.div_ceil(1000) as i64
}

/// Establishes or resumes the session. Returns (session id, negotiated timeout ms, the
/// ConnectResponse frame for the caller to send once the connection holds the session), or
/// None when the connection must close (after ZooKeeper's "expired" answer where it sends one).
async fn handshake(ctx: &ZkCtx, req: &ConnectRequest, wr: &mut OwnedWriteHalf) -> Option<(i64, u64, Vec<u8>)> {
    let cfg = &ctx.config;
    let timeout_ms = negotiate_timeout_ms(req.timeout_ms, cfg);
    if req.last_zxid_seen > ctx.revision() {
        // ZooKeeper refuses a client that has seen a newer state: it must try another server.
        tracing::info!(
            "refusing a session: the client has seen zxid 0x{:x}, ours is 0x{:x}",
            req.last_zxid_seen,
            ctx.revision()
        );
        return None;
    }
    let read_only = req.read_only.map(|_| false);
    let (session_id, ok) = if req.session_id == 0 {
        if ctx.lessor.len() >= cfg.sessions_max {
            tracing::warn!("refusing a new ZooKeeper session: {} sessions and leases live", ctx.lessor.len());
            return None;
        }
        let ttl_s = session_ttl_s(timeout_ms);
        let mut granted = None;
        for _ in 0..3 {
            let id = ctx.next_session_id();
            match ctx.replica.propose(Command::ZkSession { id, ttl_s }).await {
                Ok(Applied { result: Ok(_), .. }) => {
                    granted = Some(id);
                    break;
                }
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!("creating a session: {e}");
                    return None;
                }
            }
        }
        (granted?, true)
    } else {
        let id = req.session_id;
        // ZooKeeper closes the connection that holds the session before it checks anything
        // else (ZooKeeperServer.processConnectRequest): any attempt to reattach a session,
        // even with a wrong password or to one that has expired, ends its current connection.
        let holder = ctx.sessions.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        if let Some(conn_id) = holder {
            ctx.close_conn(conn_id);
        }
        let known = ctx.store.read().ok().and_then(|v| v.lease(id).ok().flatten()).is_some();
        let period = Duration::from_secs(session_ttl_s(timeout_ms) as u64);
        let ok = known && req.passwd == ctx.password(id) && ctx.lessor.renew_for(id, period);
        (id, ok)
    };
    let resp = if ok {
        ConnectResponse {
            protocol_version: 0,
            timeout_ms: timeout_ms as i32,
            session_id,
            passwd: ctx.password(session_id),
            read_only,
        }
    } else {
        ConnectResponse { protocol_version: 0, timeout_ms: 0, session_id: 0, passwd: vec![0; 16], read_only }
    };
    let mut w = Writer::new();
    resp.write(&mut w);
    let welcome = frame::encode(&w.buf);
    if !ok {
        write_counted(ctx, wr, &welcome).await;
        let _ = wr.shutdown().await;
        return None;
    }
    Some((session_id, timeout_ms, welcome))
}

/// Writes a packet outside the session loop (a four-letter word's answer, a ConnectResponse)
/// and counts it as sent server-wide, as ZooKeeper does once it is written. Counted before
/// the write, and taken back if the write fails: a client that has read the packet and asks
/// `srvr` next must find it counted, which a count after the write does not ensure (the
/// client can read the bytes before this task runs on).
async fn write_counted(ctx: &ZkCtx, wr: &mut OwnedWriteHalf, packet: &[u8]) -> bool {
    ctx.stats.sent.fetch_add(1, Ordering::Relaxed);
    let written = wr.write_all(packet).await.is_ok();
    if !written {
        ctx.stats.sent.fetch_sub(1, Ordering::Relaxed);
    }
    written
}

struct Conn {
    ctx: Arc<ZkCtx>,
    /// This connection (stats, the watch table).
    id: ConnId,
    session_id: i64,
    timeout: Duration,
    /// How long each request keeps the session alive: this connection's timeout in the
    /// lease's whole seconds (see `Lessor::renew_for`).
    lease_period: Duration,
    /// The identities the connection authenticated as, shared with its queued reads (a copy
    /// per read was three allocations on every get); changed only by auth and SASL.
    auth: Arc<Vec<(String, String)>>,
    /// The connection's DIGEST-MD5 exchange, from its first SASL request on.
    sasl: Option<SaslServer>,
    stats: Arc<ConnStats>,
    /// Reads queued and not executed yet; while there is one, writes are deferred.
    reads_queued: usize,
    /// Writes deferred behind a queued read.
    deferred: usize,
}

type WriteFuture = Pin<Box<dyn std::future::Future<Output = Result<Applied, ProposeError>> + Send>>;

/// A request waiting for its turn to be answered.
enum Queued {
    Write {
        xid: i32,
        op: i32,
        ops: Vec<i32>,
        fut: WriteFuture,
        started: Instant,
    },
    Read {
        req: Request,
        auth: Arc<Vec<(String, String)>>,
        started: Instant,
    },
    /// A write not submitted yet: a read sent before it is still queued, and must not see it
    /// (ZooKeeper runs a session's requests strictly in order).
    Deferred {
        xid: i32,
        op: i32,
        ops: Vec<i32>,
        cmd: Command,
        started: Instant,
    },
    /// An answer known at read time (ping, auth, errors found before proposing).
    Ready {
        xid: i32,
        op: i32,
        err: i32,
        body: Vec<u8>,
        close: bool,
    },
}

/// What woke a connection's task.
enum Step {
    Packet(Result<Option<usize>, std::io::Error>),
    Applied(Result<Applied, ProposeError>),
    Notification(Option<Notification>),
    Silence,
    Closed,
    Stopped,
}

/// A session's connection after the handshake: one task that reads requests, answers them in
/// request order and writes notifications.
///
/// Why one task and not a reader and a responder: a get handed from one task to the other was
/// a channel send, a wake and a second task poll per request, for nothing the order needed.
/// Pipelining is kept: a write is submitted to raft as soon as its packet is parsed (so a
/// client's pipelined writes share log entries), reading goes on while the oldest write
/// applies, and a read waits in the queue until every earlier request was answered (ZooKeeper's
/// read-your-writes). The socket is written once nothing more can be answered at once (no whole
/// packet left in the buffer, the oldest request not answerable yet), so a pipelining client
/// gets many replies per system call.
async fn session_loop(
    mut conn: Conn,
    mut rd: OwnedReadHalf,
    mut wr: OwnedWriteHalf,
    mut buf: Vec<u8>,
    mut notifications: mpsc::Receiver<Notification>,
    overflowed: Arc<AtomicBool>,
    mut stop: watch::Receiver<bool>,
) {
    let ctx = conn.ctx.clone();
    let stats = conn.stats.clone();
    let conn_id = conn.id;
    let max_packet = ctx.config.max_packet_bytes;
    let max_outstanding = ctx.config.outstanding_per_conn_max.max(1);
    let mut pending: VecDeque<Queued> = VecDeque::new();
    // Notifications received but not written yet: one whose revision is past the oldest
    // unanswered write's waits for that write's reply (see `send`).
    let mut held: VecDeque<Notification> = VecDeque::new();
    let held_max = ctx.config.notifications_per_conn_max;
    // The revision the last reply was ordered at (see `send`).
    let mut last_order: i64 = 0;
    let mut out: Vec<u8> = Vec::with_capacity(16 * 1024);
    // False once the client may send nothing more: EOF, a malformed packet, closeSession, an
    // expired session, a close from elsewhere, server shutdown. What was read is still answered.
    let mut reading = true;
    // Made once for the connection, not per packet: a timer and two waiter registrations per
    // request were a measurable part of a read's server CPU. The silence timer is only moved
    // when it fires early (a packet came since it was set), so at most once per timeout.
    let closed = stats.close.notified();
    let stopped = stop.wait_for(|s| *s);
    let silence = tokio::time::sleep(conn.timeout);
    tokio::pin!(closed, stopped, silence);
    let mut last_packet = tokio::time::Instant::now();
    // The outcome of the oldest write once its future returned it (a finished future is never
    // polled again).
    let mut front_outcome: Option<Result<Applied, ProposeError>> = None;
    'conn: loop {
        if overflowed.load(Ordering::Acquire) {
            tracing::info!("closing ZooKeeper connection {conn_id}: its notification queue overflowed");
            break;
        }
        if stats.closed.load(Ordering::Acquire) {
            reading = false;
        }
        // Every whole packet already in the buffer, while there is room for it.
        while reading && pending.len() < max_outstanding {
            match frame::check(&buf, max_packet) {
                Ok(Frame::Packet { len }) => {
                    last_packet = tokio::time::Instant::now();
                    if !conn.take_packet(&mut buf, len, &mut pending) {
                        reading = false;
                    }
                }
                Ok(Frame::Incomplete) => break,
                Err(_) => {
                    tracing::debug!("closing a ZooKeeper connection: malformed frame");
                    reading = false;
                }
            }
        }
        // Silence counts from when there is room to read again, not from the last packet: a
        // client whose requests wait for room (the server is slow, not the client) is not silent.
        if pending.len() >= max_outstanding {
            last_packet = tokio::time::Instant::now();
        }
        // Every request at the front that can be answered without waiting (writes that have
        // applied too: one apply answers a pipelining client's writes together, and they go
        // out in one system call); each read answered lets the writes deferred behind it go to
        // raft.
        loop {
            conn.start_deferred(&mut pending);
            let applied = match pending.front() {
                Some(Queued::Ready { .. } | Queued::Read { .. }) => None,
                Some(Queued::Write { .. }) => match front_outcome.take() {
                    Some(r) => Some(r),
                    None => match poll_front_now(&mut pending).await {
                        Some(r) => Some(r),
                        None => break,
                    },
                },
                _ => break,
            };
            let Some(item) = pending.pop_front() else { break };
            if matches!(item, Queued::Read { .. }) {
                conn.reads_queued -= 1;
            }
            let reply = reply(&ctx, conn_id, item, applied);
            let close = reply.close;
            last_order = send(&ctx, &stats, reply, last_order, &mut notifications, &mut held, &mut out).await;
            if close {
                let _ = wr.write_all(&out).await;
                let _ = wr.shutdown().await;
                break 'conn;
            }
        }
        // No write waits at the front for its outcome: every notification received goes out
        // now, as ZooKeeper sends an event as soon as it applies the change. Behind such a
        // write they wait: the write may have applied in the same log entry as a later change,
        // and then its reply comes first (`send` compares the revisions).
        if !matches!(pending.front(), Some(Queued::Write { .. } | Queued::Deferred { .. })) {
            while let Ok(n) = notifications.try_recv() {
                held.push_back(n);
            }
            for n in held.drain(..) {
                notification_out(&ctx, &stats, &mut out, &n.frame);
            }
        }
        if !reading && pending.is_empty() {
            let _ = wr.write_all(&out).await;
            break;
        }
        let more_now = reading
            && pending.len() < max_outstanding
            && matches!(frame::check(&buf, max_packet), Ok(Frame::Packet { .. }) | Err(_));
        if !out.is_empty() && (!more_now || out.len() >= FLUSH_BYTES) {
            if wr.write_all(&out).await.is_err() {
                break;
            }
            out.clear();
        }
        if more_now {
            continue;
        }
        let can_read = reading && pending.len() < max_outstanding;
        let awaiting_write = matches!(pending.front(), Some(Queued::Write { .. }));
        let applied = std::future::poll_fn(|cx| poll_front(&mut pending, cx));
        let step = tokio::select! {
            biased;
            n = notifications.recv() => Step::Notification(n),
            r = applied, if awaiting_write => Step::Applied(r),
            p = read_packet(&mut rd, &mut buf, max_packet), if can_read => Step::Packet(p),
            _ = &mut silence, if reading => Step::Silence,
            _ = &mut closed, if reading => Step::Closed,
            _ = &mut stopped, if reading => Step::Stopped,
        };
        match step {
            // Written at the top of the loop, in their place among the replies.
            Step::Notification(Some(n)) => {
                held.push_back(n);
                while let Ok(n) = notifications.try_recv() {
                    held.push_back(n);
                }
                if held.len() > held_max {
                    tracing::info!("closing ZooKeeper connection {conn_id}: its notification queue overflowed");
                    break;
                }
            }
            // The watch table dropped this connection's sender: nothing more can be delivered.
            Step::Notification(None) => break,
            // Answered at the top of the loop, with whatever else is answerable then.
            Step::Applied(r) => front_outcome = Some(r),
            // The packet stays in the buffer; the top of the loop takes it.
            Step::Packet(Ok(Some(_))) => {}
            Step::Packet(_) => reading = false,
            Step::Silence => {
                // The client pings every third of the timeout; silence for a whole timeout means
                // the session is gone (ZooKeeper expires it and closes the connection).
                if last_packet.elapsed() >= conn.timeout {
                    reading = false;
                } else {
                    silence.as_mut().reset(last_packet + conn.timeout);
                }
            }
            Step::Closed | Step::Stopped => reading = false,
        }
    }
    stats.closed.store(true, Ordering::Release);
    stats.close.notify_waiters();
}

/// Polls the oldest request's write future; Pending if the oldest is not a submitted write.
fn poll_front(
    pending: &mut VecDeque<Queued>,
    cx: &mut std::task::Context<'_>,
) -> std::task::Poll<Result<Applied, ProposeError>> {
    match pending.front_mut() {
        Some(Queued::Write { fut, .. }) => fut.as_mut().poll(cx),
        _ => std::task::Poll::Pending,
    }
}

/// The outcome of the oldest request if it is a write that has applied, without waiting; None
/// otherwise (this task is then woken when it applies). The caller takes the request off the
/// queue when this returns Some, so a finished future is never polled again.
async fn poll_front_now(pending: &mut VecDeque<Queued>) -> Option<Result<Applied, ProposeError>> {
    std::future::poll_fn(|cx| match poll_front(pending, cx) {
        std::task::Poll::Ready(r) => std::task::Poll::Ready(Some(r)),
        std::task::Poll::Pending => std::task::Poll::Ready(None),
    })
    .await
}

/// Replies buffered past this are written even if more could be answered at once.
const FLUSH_BYTES: usize = 64 * 1024;

/// One reply: its header fields, its body, and whether the connection closes after it.
struct Reply {
    xid: i32,
    op: i32,
    zxid: i64,
    err: i32,
    body: Vec<u8>,
    close: bool,
    /// When the request was read, for the latency statistics (none for answers known at once).
    started: Option<Instant>,
    /// An answer known when the request was read (`Queued::Ready`), not from the store.
    known: bool,
}

/// The reply to the oldest request; `applied` is a write's outcome.
///
/// A write is taken off the queue only with its outcome, and a deferred write is submitted
/// before it can be the oldest ([`Conn::start_deferred`] runs first), so either without an
/// outcome is a broken invariant: asserted in debug builds, answered with ZooKeeper's
/// SystemError in release builds rather than a panic.
fn reply(ctx: &ZkCtx, conn_id: ConnId, item: Queued, applied: Option<Result<Applied, ProposeError>>) -> Reply {
    match (item, applied) {
        // ZooKeeper answers auth and SASL outside the request pipeline, with zxid 0.
        (Queued::Ready { xid, op, err, body, close }, _) => {
            let zxid = if op == op::SASL || op == op::AUTH { 0 } else { ctx.revision() };
            Reply { xid, op, zxid, err, body, close, started: None, known: true }
        }
        (Queued::Write { xid, op, ops, started, .. }, Some(applied)) => {
            let (zxid, err, body) = write_reply(op, &ops, applied);
            Reply { xid, op, zxid, err, body, close: op == op::CLOSE_SESSION, started: Some(started), known: false }
        }
        (Queued::Read { req, auth, started }, _) => {
            let (zxid, err, body) = execute_read(ctx, conn_id, &req, &auth);
            Reply { xid: req.xid, op: req.op, zxid, err, body, close: false, started: Some(started), known: false }
        }
        (Queued::Write { xid, op, started, .. }, None) | (Queued::Deferred { xid, op, started, .. }, _) => {
            debug_assert!(false, "a write answered before its outcome");
            let zxid = ctx.revision();
            Reply {
                xid,
                op,
                zxid,
                err: zk_err::SYSTEM_ERROR,
                body: Vec::new(),
                close: false,
                started: Some(started),
                known: false,
            }
        }
    }
}

/// Queues a watch notification's frame, and counts its size as ZooKeeper does.
/// Writes a watch event into `out`. ZooKeeper counts it as a packet sent, on the connection
/// (cons's `sent`) and server-wide (`zk_packets_sent`, srvr's `Sent`), as a reply is.
fn notification_out(ctx: &ZkCtx, stats: &ConnStats, out: &mut Vec<u8>, n: &[u8]) {
    frame::append(out, &[n]);
    ctx.stats.response_sizes.record(n.len());
    stats.sent.fetch_add(1, Ordering::Relaxed);
    ctx.stats.sent.fetch_add(1, Ordering::Relaxed);
}

/// Writes one reply into `out` after every watch event up to the revision it is ordered at and
/// before every later one, as ZooKeeper, which sends an event while it applies the change,
/// orders them: a client sees an event before any reply showing newer state (the guarantee),
/// and the replies of requests answered before the change before the event. A write or a read
/// is ordered at its zxid; an answer known without the store (ping, auth, an error found
/// before proposing) at the previous reply's (`last_order`): its place in the session's
/// order, before the changes of the writes sent after it. Counts the reply; returns the
/// revision it was ordered at.
async fn send(
    ctx: &ZkCtx,
    stats: &ConnStats,
    reply: Reply,
    last_order: i64,
    notifications: &mut mpsc::Receiver<Notification>,
    held: &mut VecDeque<Notification>,
    out: &mut Vec<u8>,
) -> i64 {
    let Reply { xid, op, zxid, err, body, close: _, started, known } = reply;
    ctx.watches.wait_published(zxid).await;
    while let Ok(n) = notifications.try_recv() {
        held.push_back(n);
    }
    let order = if known { last_order } else { zxid.max(last_order) };
    while held.front().is_some_and(|n| n.revision <= order) {
        if let Some(n) = held.pop_front() {
            notification_out(ctx, stats, out, &n.frame);
        }
    }
    let header = ReplyHeader { xid, zxid, err }.bytes();
    frame::append(out, &[&header, &body]);
    ctx.stats.response_sizes.record(header.len() + body.len());
    stats.outstanding.fetch_sub(1, Ordering::Relaxed);
    ctx.stats.outstanding.fetch_sub(1, Ordering::Relaxed);
    stats.sent.fetch_add(1, Ordering::Relaxed);
    ctx.stats.sent.fetch_add(1, Ordering::Relaxed);
    // Only the pipeline's replies count (FinalRequestProcessor's updateStatsForResponse).
    if op != op::SASL && op != op::AUTH {
        stats.last_zxid.store(zxid, Ordering::Relaxed);
    }
    if op != op::AUTH && op != op::SASL {
        // A write ZooKeeper refused became an error transaction, which its FinalRequestProcessor
        // answers before naming the operation: cons prints lop=NA for it.
        let name = if err != 0 && refused_write_is_error_txn(op) { "NA" } else { op_name(op) };
        *stats.last_op.lock().unwrap_or_else(|p| p.into_inner()) = name;
        // As ServerCnxn.updateStatsForResponse: special xids (ping, notifications) keep the
        // client's last real request.
        if xid >= 0 {
            stats.last_cxid.store(xid as i64, Ordering::Relaxed);
        }
        stats.last_response_ms.store(now_ms(), Ordering::Relaxed);
    }
    if let Some(t) = started {
        let ms = t.elapsed().as_millis() as u64;
        ctx.stats.latency.record(ms);
        stats.latency.record(ms);
        stats.last_latency_ms.store(ms, Ordering::Relaxed);
    }
    order
}

impl Conn {
    /// Takes the whole packet of `len` bytes at the front of `buf`: renews the session and
    /// queues the request (a write is submitted to raft now, unless a read before it is still
    /// queued: then when that read is answered). Returns false when nothing more
    /// may be read from the client: a malformed packet, an expired session, closeSession, or a
    /// request whose answer closes the connection.
    fn take_packet(&mut self, buf: &mut Vec<u8>, len: usize, pending: &mut VecDeque<Queued>) -> bool {
        let Ok(req) = Request::read(&buf[4..4 + len]) else {
            tracing::debug!("closing a ZooKeeper connection: malformed packet");
            return false;
        };
        buf.drain(..4 + len);
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        self.ctx.stats.received.fetch_add(1, Ordering::Relaxed);
        if !self.ctx.lessor.renew_for(self.session_id, self.lease_period) {
            // Expired (or revoked through etcd): the client learns it when it reconnects.
            return false;
        }
        let closing = matches!(req.body, RequestBody::CloseSession);
        let item = self.queue_item(req);
        // A write goes to raft at once (pipelined writes share log entries) unless a read sent
        // before it is still queued: that read must not see it.
        let item = match item {
            Queued::Deferred { .. } if self.reads_queued > 0 => {
                self.deferred += 1;
                item
            }
            Queued::Read { .. } => {
                self.reads_queued += 1;
                item
            }
            other => self.start(other),
        };
        let close = closing || matches!(item, Queued::Ready { close: true, .. });
        self.stats.outstanding.fetch_add(1, Ordering::Relaxed);
        self.ctx.stats.outstanding.fetch_add(1, Ordering::Relaxed);
        pending.push_back(item);
        !close
    }

    fn txn(&self, ops: Vec<ZkOp>) -> Command {
        Command::Zk(ZkTxn {
            ops,
            now_ms: now_ms(),
            session_id: self.session_id,
            auth: self.auth.to_vec(),
            ttl_enabled: self.ctx.config.ttl_enabled,
        })
    }

    /// This connection's session as a writer for group commit (see `Replica::submit_as`).
    fn writer_id(&self) -> u64 {
        self.session_id as u64
    }

    /// A write, not submitted yet: see [`Conn::start`].
    fn submit(&self, xid: i32, op: i32, ops: Vec<i32>, cmd: Command) -> Queued {
        Queued::Deferred { xid, op, ops, cmd, started: Instant::now() }
    }

    /// Submits a deferred write to raft; anything else is returned unchanged.
    fn start(&self, item: Queued) -> Queued {
        match item {
            Queued::Deferred { xid, op, ops, cmd, started } => {
                match self.ctx.over_quota(&cmd).submit_as(self.writer_id(), cmd) {
                    Ok(fut) => Queued::Write { xid, op, ops, fut: Box::pin(fut), started },
                    Err(e) => Queued::Ready { xid, op, err: propose_error_code(&e), body: Vec::new(), close: false },
                }
            }
            other => other,
        }
    }

    /// Submits the deferred writes that no queued read precedes any more.
    fn start_deferred(&mut self, pending: &mut VecDeque<Queued>) {
        if self.deferred == 0 {
            return;
        }
        for item in pending.iter_mut() {
            match item {
                Queued::Read { .. } => break,
                Queued::Deferred { .. } => {
                    let placeholder = Queued::Ready { xid: 0, op: 0, err: 0, body: Vec::new(), close: false };
                    *item = self.start(std::mem::replace(item, placeholder));
                    self.deferred -= 1;
                }
                _ => {}
            }
        }
    }

    fn queue_item(&mut self, mut req: Request) -> Queued {
        if self.ctx.config.sasl_users.is_empty() && !self.ctx.config.sasl_gssapi {
            no_sasl_provider(&mut req.body);
        }
        let xid = req.xid;
        let ready = |err: i32| Queued::Ready { xid, op: req.op, err, body: Vec::new(), close: false };
        match req.body {
            RequestBody::Ping => Queued::Ready { xid: xid::PING, op: op::PING, err: 0, body: Vec::new(), close: false },
            // The reply echoes the request's xid, as ZooKeeper's processPacket does (clients
            // send auth with xid -4 and expect -4 back).
            RequestBody::Auth { scheme, auth: cred, .. } => {
                let digest = (scheme == "digest").then(|| auth::digest_id(&String::from_utf8_lossy(&cred)));
                let held = digest.as_ref().is_some_and(|id| self.auth.iter().any(|(s, i)| s == "digest" && i == id));
                let full = !held && self.auth.len() >= AUTH_IDENTITIES_MAX;
                if let (Some(id), false) = (digest, full) {
                    if !held {
                        auth::add_like_zookeeper(Arc::make_mut(&mut self.auth), ("digest".into(), id));
                        self.ctx.watches.set_auth(self.id, self.auth.clone());
                    }
                    Queued::Ready { xid, op: op::AUTH, err: 0, body: Vec::new(), close: false }
                } else if scheme == "ip" {
                    // ZooKeeper's ip provider authenticates the connection's own address, which
                    // every session already has.
                    Queued::Ready { xid, op: op::AUTH, err: 0, body: Vec::new(), close: false }
                } else {
                    // An unknown scheme (or one identity too many): ZooKeeper answers
                    // AuthFailed and closes the connection.
                    Queued::Ready {
                        xid,
                        op: op::AUTH,
                        err: ErrorCode::AuthFailed as i32,
                        body: Vec::new(),
                        close: true,
                    }
                }
            }
            RequestBody::Sasl { token } => self.sasl_step(xid, &token),
            RequestBody::CloseSession => {
                self.submit(xid, req.op, Vec::new(), Command::LeaseRevoke { id: self.session_id })
            }
            // A multi's ops are all writes or all reads (`read_multi`); multi takes writes and
            // multiRead reads, and ZooKeeper fails the whole request otherwise ("Invalid type of
            // op" in FinalRequestProcessor for multiRead, an exception in PrepRequestProcessor
            // for multi).
            RequestBody::Multi(ops)
                if ops
                    .first()
                    .is_some_and(|o| matches!(o.op, op::GET_CHILDREN | op::GET_DATA) != (req.op == op::MULTI_READ)) =>
            {
                ready(ErrorCode::MarshallingError as i32)
            }
            RequestBody::Multi(ops) if req.op == op::MULTI => {
                // Each op with the code it runs as (its result's shape follows that code). An op
                // refused here still fails in its place, after the ops before it.
                let (codes, zops): (Vec<i32>, Vec<ZkOp>) = ops.into_iter().map(|o| multi_zk_op(o.op, o.body)).unzip();
                let cmd = self.txn(zops);
                self.submit(xid, req.op, codes, cmd)
            }
            body @ (RequestBody::Create { .. }
            | RequestBody::Delete { .. }
            | RequestBody::SetData { .. }
            | RequestBody::SetAcl { .. }
            | RequestBody::Check { .. }) => match to_zk_op(req.op, body) {
                Ok(z) => {
                    let cmd = self.txn(vec![z]);
                    self.submit(xid, req.op, Vec::new(), cmd)
                }
                Err(code) => ready(code),
            },
            RequestBody::Reconfig => ready(ErrorCode::ReconfigDisabled as i32),
            // ZooKeeper's UnimplementedRequestProcessor: the answer, then the connection closes
            // (the session stays until it expires or the client reconnects).
            RequestBody::Unknown => {
                Queued::Ready { xid, op: req.op, err: ErrorCode::Unimplemented as i32, body: Vec::new(), close: true }
            }
            RequestBody::Malformed => ready(ErrorCode::MarshallingError as i32),
            RequestBody::DeleteContainer => ready(ErrorCode::BadArguments as i32),
            body => Queued::Read {
                req: Request { xid, op: req.op, body },
                auth: self.auth.clone(),
                started: Instant::now(),
            },
        }
    }

    /// A SASL token (ZooKeeperServer.processSasl): the reply is SetSASLResponse {buffer token}.
    /// Success adds the identity ("sasl", user); a failed exchange is answered AuthFailed with a
    /// null token and the connection closes (the session stays until it expires).
    fn sasl_step(&mut self, xid: i32, token: &[u8]) -> Queued {
        let reply = |err: i32, token: Option<Vec<u8>>, close: bool| {
            let mut w = Writer::new();
            match token {
                Some(t) => w.buffer(&t),
                None => w.null_buffer(),
            };
            Queued::Ready { xid, op: op::SASL, err, body: w.buf, close }
        };
        let users = &self.ctx.config.sasl_users;
        if users.is_empty() && !self.ctx.config.sasl_gssapi {
            // ZooKeeper without a JAAS Server section has no SASL server for the connection:
            // it answers OK with a null token.
            return reply(0, None, false);
        }
        let session_id = self.session_id;
        let gssapi = self.ctx.config.sasl_gssapi;
        let server = self.sasl.get_or_insert_with(|| {
            if gssapi {
                SaslServer::Gssapi(GssapiServer::new())
            } else {
                SaslServer::Digest(DigestMd5Server::new(sasl::new_nonce(session_id)))
            }
        });
        let step = match server {
            SaslServer::Digest(s) => s.evaluate(token, users),
            SaslServer::Gssapi(s) => s.evaluate(token),
        };
        let mut gained = |authorization_id: String| {
            tracing::info!("session 0x{session_id:x}: SASL authenticated as {authorization_id:?}");
            let id = ("sasl".to_string(), authorization_id);
            if !self.auth.contains(&id) && self.auth.len() < AUTH_IDENTITIES_MAX {
                auth::add_like_zookeeper(Arc::make_mut(&mut self.auth), id);
                self.ctx.watches.set_auth(self.id, self.auth.clone());
            }
        };
        match step {
            Ok(sasl::Step::Challenge(t)) => reply(0, Some(t), false),
            Ok(sasl::Step::Success { token, authorization_id }) => {
                gained(authorization_id);
                reply(0, Some(token), false)
            }
            Ok(sasl::Step::Complete { authorization_id }) => {
                gained(authorization_id);
                reply(0, None, false)
            }
            Err(e) => {
                tracing::warn!(
                    "session 0x{session_id:x}: SASL authentication from {} failed ({e}); closing the connection",
                    self.stats.peer
                );
                reply(ErrorCode::AuthFailed as i32, None, true)
            }
        }
    }
}

/// One connection's SASL exchange, with the mechanism the server is configured for.
enum SaslServer {
    Digest(DigestMd5Server),
    Gssapi(GssapiServer),
}

fn propose_error_code(e: &ProposeError) -> i32 {
    match e {
        ProposeError::Overloaded => ErrorCode::Throttled as i32,
        ProposeError::NoLeader | ProposeError::Stopped => ErrorCode::ConnectionLoss as i32,
        ProposeError::Raft(_) => ErrorCode::SystemError as i32,
    }
}

/// Without SASL configured ZooKeeper has no "sasl" authentication provider, and fixupACL
/// refuses a sasl ACL entry with InvalidACL, as it refuses any scheme without a provider. The
/// store does not know the configuration, so such an entry reaches it under a scheme nothing
/// accepts: it fails at the same point of the store's checks, and is never stored.
fn no_sasl_provider(body: &mut RequestBody) {
    let acl = match body {
        RequestBody::Create { acl, .. } | RequestBody::SetAcl { acl, .. } => acl,
        RequestBody::Multi(ops) => {
            ops.iter_mut().for_each(|o| no_sasl_provider(&mut o.body));
            return;
        }
        _ => return,
    };
    for a in acl.iter_mut().filter(|a| a.scheme == "sasl") {
        a.scheme = "sasl (no SASL configured)".into();
    }
}

fn to_acl(acl: Vec<Acl>) -> Vec<ZkAcl> {
    acl.into_iter().map(|a| ZkAcl { perms: a.perms, scheme: a.scheme, id: a.id }).collect()
}

/// A standalone create's mode and TTL as ZooKeeper 3.8.0's PrepRequestProcessor runs it; Err
/// is an error code. Its flags must name a CreateMode. create and create2 write a CreateTxn,
/// which knows only "ephemeral or not": the container flag makes a plain persistent node
/// there. createContainer writes a CreateContainerTxn whatever the flags: a container, named
/// with the sequence suffix if the flags are sequential (TTL flags fail the TTL check, as
/// they do for create). Only createTTL carries a TTL (every other create has ZooKeeper's -1).
fn create_mode(op: i32, flags: i32, ttl_ms: i64) -> Result<(CreateMode, i64), i32> {
    let mode = CreateMode::from_flag(flags).ok_or(zk_err::BAD_ARGUMENTS)?;
    Ok(match op {
        op::CREATE_TTL => (mode, ttl_ms),
        op::CREATE_CONTAINER if mode.is_sequential() && !mode.is_ttl() => (CreateMode::ContainerSequential, -1),
        op::CREATE_CONTAINER if !mode.is_ttl() => (CreateMode::Container, -1),
        _ if mode == CreateMode::Container => (CreateMode::Persistent, -1),
        _ => (mode, -1),
    })
}

/// A multi's op as a store op, with the op code it runs as. A create is rebuilt as ZooKeeper
/// 3.8.0's MultiOperationRecord does (`Op.create`): its kind comes from its flags, read
/// leniently (unknown flags count as persistent), not from its header. The container flag
/// makes it createContainer; a TTL flag keeps createTTL a createTTL; anything else is a
/// create, which then reads the flags strictly (unknown: BadArguments) and drops a TTL. A TTL
/// flag on create, create2 or createContainer types the op createTTL around a record without
/// a TTL: ZooKeeper's ClassCastException, which fails the whole multi with MarshallingError
/// when that op's turn comes (`write_reply`).
fn multi_zk_op(op: i32, body: RequestBody) -> (i32, ZkOp) {
    let RequestBody::Create { path, data, acl, flags, ttl_ms } = body else {
        return (op, to_zk_op(op, body).unwrap_or_else(|code| ZkOp::Fail { code }));
    };
    let lenient = CreateMode::from_flag(flags).unwrap_or(CreateMode::Persistent);
    let (code, mode) = if lenient.is_ttl() && op == op::CREATE_TTL {
        (op::CREATE_TTL, Ok((lenient, ttl_ms)))
    } else if lenient.is_ttl() {
        (op::CREATE_TTL, Err(ErrorCode::MarshallingError as i32))
    } else if lenient == CreateMode::Container {
        (op::CREATE_CONTAINER, Ok((CreateMode::Container, -1)))
    } else {
        (op::CREATE, CreateMode::from_flag(flags).map(|m| (m, -1)).ok_or(zk_err::BAD_ARGUMENTS))
    };
    let zop = match mode {
        Ok((mode, ttl_ms)) => ZkOp::Create { path, data, acl: to_acl(acl), mode, ttl_ms },
        Err(code) => ZkOp::Fail { code },
    };
    (code, zop)
}

/// A write request as a store op; Err is a ZooKeeper error code found before proposing.
fn to_zk_op(op: i32, body: RequestBody) -> Result<ZkOp, i32> {
    Ok(match body {
        RequestBody::Create { path, data, acl, flags, ttl_ms } => {
            let (mode, ttl_ms) = create_mode(op, flags, ttl_ms)?;
            ZkOp::Create { path, data, acl: to_acl(acl), mode, ttl_ms }
        }
        RequestBody::Delete { path, version } => ZkOp::Delete { path, version },
        RequestBody::SetData { path, data, version } => ZkOp::SetData { path, data, version },
        RequestBody::SetAcl { path, acl, version } => ZkOp::SetAcl { path, acl: to_acl(acl), version },
        RequestBody::Check { path, version } => ZkOp::Check { path, version },
        _ => return Err(ErrorCode::MarshallingError as i32),
    })
}

fn write_stat(w: &mut Writer, s: &ZkStat) {
    s.write(w);
}

/// MultiResponse: per op a MultiHeader {type, done=false, err} and its result, then the end
/// marker {-1, true, -1}.
fn write_multi(w: &mut Writer, codes: &[i32], results: &[ZkOpResult]) {
    for (code, r) in codes.iter().zip(results) {
        match r {
            ZkOpResult::Created { path, stat } => {
                // By the code the op ran as (`multi_zk_op`): a create answers its path only,
                // a createContainer or createTTL its path and Stat. So ZooKeeper 3.8.0 answers
                // a create2 inside a multi with a plain create result (ZOOKEEPER-4026, fixed
                // only in 3.8.2); clients of 3.8.0 see exactly that.
                if *code == op::CREATE {
                    w.int(op::CREATE).boolean(false).int(0).ustring(path);
                } else {
                    w.int(op::CREATE2).boolean(false).int(0).ustring(path);
                    write_stat(w, stat);
                }
            }
            ZkOpResult::Deleted => {
                w.int(op::DELETE).boolean(false).int(0);
            }
            ZkOpResult::SetData { stat } | ZkOpResult::SetAcl { stat } => {
                w.int(op::SET_DATA).boolean(false).int(0);
                write_stat(w, stat);
            }
            ZkOpResult::Checked => {
                w.int(op::CHECK).boolean(false).int(0);
            }
            ZkOpResult::Error(e) => {
                w.int(op::ERROR).boolean(false).int(*e).int(*e);
            }
        }
    }
    w.int(-1).boolean(true).int(-1);
}

/// The reply to an applied write: (err, body).
fn write_reply(op: i32, codes: &[i32], applied: Result<Applied, ProposeError>) -> (i64, i32, Vec<u8>) {
    let applied = match applied {
        Ok(a) => a,
        Err(e) => return (0, propose_error_code(&e), Vec::new()),
    };
    let zxid = applied.revision;
    let results = match applied.result {
        Ok(Response::Zk(r)) => r,
        Ok(Response::LeaseRevoke) | Err(_) if op == op::CLOSE_SESSION => return (zxid, 0, Vec::new()),
        _ => return (zxid, ErrorCode::SystemError as i32, Vec::new()),
    };
    let mut w = Writer::new();
    if op == op::MULTI {
        // An op that failed with MarshallingError fails the whole request so (`multi_zk_op`).
        if results.contains(&ZkOpResult::Error(ErrorCode::MarshallingError as i32)) {
            return (zxid, ErrorCode::MarshallingError as i32, Vec::new());
        }
        write_multi(&mut w, codes, &results);
        return (zxid, 0, w.buf);
    }
    let Some(r) = results.into_iter().next() else { return (zxid, ErrorCode::SystemError as i32, Vec::new()) };
    match r {
        ZkOpResult::Error(e) => return (zxid, e, Vec::new()),
        ZkOpResult::Created { path, stat } => {
            w.ustring(&path);
            if op != op::CREATE {
                write_stat(&mut w, &stat);
            }
        }
        ZkOpResult::Deleted => {}
        ZkOpResult::SetData { stat } | ZkOpResult::SetAcl { stat } => write_stat(&mut w, &stat),
        ZkOpResult::Checked => write_stat(&mut w, &ZkStat::default()),
    }
    (zxid, 0, w.buf)
}

/// Executes a read under the watch table's lock (so a watch it arms misses nothing) and
/// returns (zxid, err, body).
fn execute_read(ctx: &ZkCtx, conn: ConnId, req: &Request, auth: &[(String, String)]) -> (i64, i32, Vec<u8>) {
    let mut g = Watching(if arms_watches(&req.body) { Some(ctx.watches.lock()) } else { None });
    let view = match ctx.store.read() {
        Ok(v) => v,
        Err(e) => {
            tracing::error!("zookeeper read: {e}");
            return (ctx.revision(), ErrorCode::SystemError as i32, Vec::new());
        }
    };
    let zxid = view.revision;
    let mut w = Writer::new();
    let err = match read_op(ctx, &mut g, &view, conn, req, auth, &mut w) {
        Ok(()) => 0,
        Err(code) => {
            w.buf.clear();
            code
        }
    };
    (zxid, err, w.buf)
}

/// Whether a read arms or changes watches: only those take the watch table's lock (before the
/// read view opens, see `watches`), so plain reads never contend on it.
fn arms_watches(body: &RequestBody) -> bool {
    match body {
        RequestBody::Exists { watch, .. }
        | RequestBody::GetData { watch, .. }
        | RequestBody::GetConfig { watch }
        | RequestBody::GetChildren { watch, .. } => *watch,
        RequestBody::SetWatches { .. } | RequestBody::AddWatch { .. } | RequestBody::Watches { .. } => true,
        RequestBody::Multi(ops) => ops.iter().any(|o| arms_watches(&o.body)),
        _ => false,
    }
}

/// The watch table's lock, held for a read that arms watches.
struct Watching<'a>(Option<Guard<'a>>);

impl<'a> Watching<'a> {
    fn get(&mut self) -> Result<&mut Guard<'a>, i32> {
        // arms_watches decided; a read that arms without the lock would be a bug here.
        self.0.as_mut().ok_or(ErrorCode::SystemError as i32)
    }
}

/// A znode's Stat and ACL, without its data (which only getData returns).
fn node(view: &ReadView, path: &str) -> Result<Option<std::sync::Arc<crate::store::ZkNode>>, i32> {
    view.zk_node_stat(stored(path)).map_err(|e| read_fault(path, e))
}

/// The node a read of `path` finds: ZooKeeper's DataTree keeps the root under "" as well as
/// "/", and reads do not validate their path, so a read of "" answers with the root. (A watch
/// such a read arms stays on "", where no event ever fires, as in ZooKeeper.)
fn stored(path: &str) -> &str {
    if path.is_empty() {
        "/"
    } else {
        path
    }
}

/// A store fault during a read: logged, and answered as ZooKeeper's SystemError.
fn read_fault(path: &str, e: crate::store::StoreError) -> i32 {
    tracing::error!("zookeeper read of {path}: {e}");
    ErrorCode::SystemError as i32
}

fn readable(n: &crate::store::ZkNode, auth: &[(String, String)]) -> Result<(), i32> {
    if znode::acl_allows(&n.acl, perms::READ, auth) {
        Ok(())
    } else {
        Err(ErrorCode::NoAuth as i32)
    }
}

fn read_op(
    ctx: &ZkCtx,
    g: &mut Watching<'_>,
    view: &ReadView,
    conn: ConnId,
    req: &Request,
    auth: &[(String, String)],
    w: &mut Writer,
) -> Result<(), i32> {
    let rev = view.revision;
    let max = ctx.watches.watches_per_conn_max;
    let no_node = ErrorCode::NoNode as i32;
    match &req.body {
        RequestBody::Exists { path, watch } => {
            if path.contains('\0') {
                return Err(ErrorCode::BadArguments as i32);
            }
            let n = node(view, path)?;
            if *watch {
                // Data and exist watches share ZooKeeper's data table; an exists watch on a
                // missing node is armed too (it fires on create).
                g.get()?.add_standard(conn, Kind::Data, path, rev, max);
            }
            let n = n.ok_or(no_node)?;
            write_stat(w, &n.stat);
        }
        RequestBody::GetData { path, watch } => get_data(g, view, conn, path, *watch, auth, w, max)?,
        RequestBody::GetConfig { watch } => get_data(g, view, conn, "/zookeeper/config", *watch, auth, w, max)?,
        RequestBody::GetAcl { path } => {
            let n = node(view, path)?.ok_or(no_node)?;
            if !znode::acl_allows(&n.acl, perms::READ | perms::ADMIN, auth) {
                return Err(ErrorCode::NoAuth as i32);
            }
            // Without ADMIN, digest ids are shown with their hash masked, as ZooKeeper does.
            let admin = znode::acl_allows(&n.acl, perms::ADMIN, auth);
            w.vector(&n.acl, |w, a| {
                let id = if !admin && a.scheme == "digest" {
                    format!("{}:x", a.id.split(':').next().unwrap_or(""))
                } else {
                    a.id.clone()
                };
                w.int(a.perms).ustring(&a.scheme).ustring(&id);
            });
            write_stat(w, &n.stat);
        }
        RequestBody::GetChildren { path, watch } => {
            let n = node(view, path)?.ok_or(no_node)?;
            readable(&n, auth)?;
            if *watch {
                g.get()?.add_standard(conn, Kind::Child, path, rev, max);
            }
            // The names go straight into the reply; the count in front is filled in after.
            let count_at = w.buf.len();
            w.int(0);
            let count = view
                .zk_each_child(stored(path), ctx.config.children_max, |name| {
                    w.ustring(name);
                })
                .map_err(|_| ErrorCode::SystemError as i32)?;
            w.buf[count_at..count_at + 4].copy_from_slice(&(count as i32).to_be_bytes());
            if req.op == op::GET_CHILDREN2 {
                write_stat(w, &n.stat);
            }
        }
        RequestBody::GetAllChildrenNumber { path } => {
            let n = node(view, path)?.ok_or(no_node)?;
            readable(&n, auth)?;
            let count = view.zk_all_children_number(stored(path)).map_err(|_| ErrorCode::SystemError as i32)?;
            // ZooKeeper counts the DataTree's keys under `path + "/"`; for "" that is every key
            // but "", the root's alias "/" included: one more than for "/".
            let count = count + u64::from(path.is_empty());
            w.int(count.min(i32::MAX as u64) as i32);
        }
        RequestBody::GetEphemerals { prefix } => {
            let session = ctx
                .conns
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&conn)
                .map(|s| s.session_id.load(Ordering::Relaxed));
            let all = view.zk_ephemerals(session.unwrap_or(0), true).map_err(|_| ErrorCode::SystemError as i32)?;
            let p = prefix.trim();
            let list: Vec<&String> =
                all.iter().filter(|e| p.is_empty() || p == "/" || e.starts_with(prefix.as_str())).collect();
            w.vector(&list, |w, e| {
                w.ustring(e);
            });
        }
        RequestBody::Sync { path } => {
            match path {
                Some(p) => w.ustring(p),
                None => w.null_buffer(),
            };
        }
        RequestBody::SetWatches { relative_zxid, data, exist, child, persistent, persistent_recursive } => {
            let g = g.get()?;
            set_watches(g, view, conn, *relative_zxid, data, exist, child, max);
            for p in persistent {
                g.add_persistent(conn, p, false, max);
            }
            for p in persistent_recursive {
                g.add_persistent(conn, p, true, max);
            }
            return Ok(());
        }
        RequestBody::AddWatch { path, mode } => {
            // AddWatchMode.fromValue: anything but PERSISTENT (0) and PERSISTENT_RECURSIVE (1)
            // throws, which ZooKeeper answers as a MarshallingError.
            if !matches!(*mode, 0 | 1) {
                return Err(ErrorCode::MarshallingError as i32);
            }
            if !g.get()?.add_persistent(conn, path, *mode == 1, max) {
                return Err(ErrorCode::Throttled as i32);
            }
            w.int(0);
        }
        RequestBody::Watches { path, watch_type } => {
            // WatcherType.fromInt: Children (1), Data (2), Any (3); anything else throws, which
            // ZooKeeper answers as a MarshallingError.
            if !matches!(*watch_type, 1..=3) {
                return Err(ErrorCode::MarshallingError as i32);
            }
            let remove = req.op == op::REMOVE_WATCHES;
            // checkWatches walks the path's parents for recursive watches, which throws for a
            // path that does not start with '/' (MarshallingError); removeWatches does not.
            if !remove && !path.is_empty() && !path.starts_with('/') {
                return Err(ErrorCode::MarshallingError as i32);
            }
            // checkWatches of "" never finds a watch: ZooKeeper's walk over the path and its
            // parents (PathParentIterator) yields nothing for an empty path.
            let checked_empty = !remove && path.is_empty();
            if checked_empty || !g.get()?.has_or_remove(conn, path, *watch_type, remove) {
                return Err(ErrorCode::NoWatcher as i32);
            }
        }
        RequestBody::WhoAmI => {
            w.vector(auth, |w, (scheme, id)| {
                let user = if scheme == "digest" { id.split(':').next().unwrap_or("") } else { id.as_str() };
                w.ustring(scheme).ustring(user);
            });
        }
        RequestBody::Multi(ops) => {
            // multiRead: getChildren and getData, each answered or failed on its own.
            for o in ops {
                let mut sub = Writer::new();
                let r = match &o.body {
                    RequestBody::GetChildren { path, watch } => {
                        let req = Request {
                            xid: o.xid,
                            op: op::GET_CHILDREN,
                            body: RequestBody::GetChildren { path: path.clone(), watch: *watch },
                        };
                        read_op(ctx, g, view, conn, &req, auth, &mut sub).map(|()| op::GET_CHILDREN)
                    }
                    RequestBody::GetData { .. } | RequestBody::GetConfig { .. } => {
                        read_op(ctx, g, view, conn, o, auth, &mut sub).map(|()| op::GET_DATA)
                    }
                    _ => Err(ErrorCode::Unimplemented as i32),
                };
                match r {
                    Ok(code) => {
                        w.int(code).boolean(false).int(0);
                        w.buf.extend_from_slice(&sub.buf);
                    }
                    Err(e) => {
                        w.int(op::ERROR).boolean(false).int(e).int(e);
                    }
                }
            }
            w.int(-1).boolean(true).int(-1);
        }
        _ => return Err(ErrorCode::Unimplemented as i32),
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn get_data(
    g: &mut Watching<'_>,
    view: &ReadView,
    conn: ConnId,
    path: &str,
    watch: bool,
    auth: &[(String, String)],
    w: &mut Writer,
    max: usize,
) -> Result<(), i32> {
    let n = view.zk_node(stored(path)).map_err(|e| read_fault(path, e))?.ok_or(ErrorCode::NoNode as i32)?;
    readable(&n, auth)?;
    if watch {
        g.get()?.add_standard(conn, Kind::Data, path, view.revision, max);
    }
    match &n.data {
        Some(d) => w.buffer(d),
        None => w.null_buffer(),
    };
    write_stat(w, &n.stat);
    Ok(())
}

/// setWatches after a reconnect: report what changed since the client's last zxid, arm the rest.
#[allow(clippy::too_many_arguments)]
fn set_watches(
    g: &mut Guard<'_>,
    view: &ReadView,
    conn: ConnId,
    rel: i64,
    data: &[String],
    exist: &[String],
    child: &[String],
    max: usize,
) {
    let rev = view.revision;
    // As reads, these find the root under "" too (`stored`), and the watch stays on "".
    for p in data {
        match view.zk_node_stat(stored(p)).ok().flatten() {
            None => g.notify_now(conn, event_type::NODE_DELETED, p, rev),
            Some(n) if n.stat.mzxid > rel => g.notify_now(conn, event_type::NODE_DATA_CHANGED, p, rev),
            Some(_) => {
                g.add_standard(conn, Kind::Data, p, rev, max);
            }
        }
    }
    for p in exist {
        match view.zk_node_stat(stored(p)).ok().flatten() {
            Some(_) => g.notify_now(conn, event_type::NODE_CREATED, p, rev),
            None => {
                g.add_standard(conn, Kind::Data, p, rev, max);
            }
        }
    }
    for p in child {
        match view.zk_node_stat(stored(p)).ok().flatten() {
            None => g.notify_now(conn, event_type::NODE_DELETED, p, rev),
            Some(n) if n.stat.pzxid > rel => g.notify_now(conn, event_type::NODE_CHILDREN_CHANGED, p, rev),
            Some(_) => {
                g.add_standard(conn, Kind::Child, p, rev, max);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: creates run as ZooKeeper 3.8.0 runs them. Method: the mode and TTL (or error) a
    /// standalone create and a create inside a multi get, for each op and some flags.
    #[test]
    fn creates_take_zookeepers_modes() {
        use CreateMode as M;
        let bad = Err(zk_err::BAD_ARGUMENTS);
        // Standalone: create/create2 make no container; createContainer always does.
        assert_eq!(create_mode(op::CREATE, 4, 0), Ok((M::Persistent, -1)));
        assert_eq!(create_mode(op::CREATE2, 3, 0), Ok((M::EphemeralSequential, -1)));
        assert_eq!(create_mode(op::CREATE_CONTAINER, 0, 0), Ok((M::Container, -1)));
        assert_eq!(create_mode(op::CREATE_CONTAINER, 1, 0), Ok((M::Container, -1)));
        assert_eq!(create_mode(op::CREATE_CONTAINER, 2, 0), Ok((M::ContainerSequential, -1)));
        assert_eq!(create_mode(op::CREATE_CONTAINER, 5, 7), Ok((M::PersistentWithTtl, -1)));
        assert_eq!(create_mode(op::CREATE_TTL, 5, 7), Ok((M::PersistentWithTtl, 7)));
        assert_eq!(create_mode(op::CREATE, 7, 0), bad);
        // In a multi the flags choose the op.
        let multi = |op: i32, flags: i32| {
            let body = RequestBody::Create { path: "/a".into(), data: None, acl: vec![], flags, ttl_ms: 9 };
            match multi_zk_op(op, body) {
                (code, ZkOp::Create { mode, ttl_ms, .. }) => (code, Ok((mode, ttl_ms))),
                (code, ZkOp::Fail { code: e }) => (code, Err(e)),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(multi(op::CREATE_CONTAINER, 0), (op::CREATE, Ok((M::Persistent, -1))));
        assert_eq!(multi(op::CREATE_CONTAINER, 2), (op::CREATE, Ok((M::PersistentSequential, -1))));
        assert_eq!(multi(op::CREATE2, 4), (op::CREATE_CONTAINER, Ok((M::Container, -1))));
        assert_eq!(multi(op::CREATE_TTL, 0), (op::CREATE, Ok((M::Persistent, -1))));
        assert_eq!(multi(op::CREATE_TTL, 6), (op::CREATE_TTL, Ok((M::PersistentSequentialWithTtl, 9))));
        assert_eq!(multi(op::CREATE_TTL, 7), (op::CREATE, bad));
        assert_eq!(multi(op::CREATE, 5), (op::CREATE_TTL, Err(ErrorCode::MarshallingError as i32)));
    }

    #[test]
    fn timeouts_negotiate_like_zookeeper() {
        let cfg = ZkConfig::default();
        for (asked, got) in [(0, 4000), (1000, 4000), (5000, 5000), (40_000, 40_000), (120_000, 40_000), (-5, 4000)] {
            assert_eq!(negotiate_timeout_ms(asked, &cfg), got, "asked {asked}");
        }
        assert_eq!((session_ttl_s(4000), session_ttl_s(4001), session_ttl_s(999)), (4, 5, 1));
    }

    /// Goal: a session lives as long as its client talks, and ends one timeout after it goes
    /// quiet. Method: paused time; the lessor renewed on each "packet" (as the reader does),
    /// then silence.
    #[tokio::test(start_paused = true)]
    async fn a_session_lives_while_pinged_and_expires_after_silence() {
        let lessor = Lessor::new();
        let cfg = ZkConfig::default();
        let timeout = negotiate_timeout_ms(10_000, &cfg);
        lessor.granted(42, session_ttl_s(timeout));
        // A client pings every third of its timeout for a minute.
        for _ in 0..18 {
            tokio::time::advance(Duration::from_millis(timeout / 3)).await;
            assert!(lessor.take_expired(10).is_empty());
            assert_eq!(lessor.renew(42), Some(10));
        }
        tokio::time::advance(Duration::from_millis(timeout - 1)).await;
        assert!(lessor.take_expired(10).is_empty(), "not before the timeout");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(lessor.take_expired(10), vec![42], "offered for revocation at the timeout");
        assert_eq!(lessor.renew(42), None, "a reconnect now finds the session expired");
    }
}
