//! `conclave-bench`: a load generator for ANY etcd v3 endpoint (Conclave or real etcd) and ANY
//! ZooKeeper endpoint (Conclave's `--zk-listen` or Apache ZooKeeper).
//!
//! Workloads (subcommands): `put`, `range`, `txn`, `watch-latency` (etcd v3 gRPC) and
//! `zk create|set|get|delete|exists|get-children|lock` (ZooKeeper, see zk.rs); plus two
//! measurements that are not requests: `startup` (spawn a server binary on an empty data dir and
//! time it to its first served request) and `rss` (VmRSS of a pid). Helpers for scripts: `ping`
//! (wait until an endpoint serves) and `free-ports`. See benches/README.md.
//!
//! Every workload prints one human line and one JSON line:
//! `{"workload":..,"clients":..,"conns":..,"ops":..,"seconds":..,"ops_per_s":..,"p50_ms":..,
//!   "p90_ms":..,"p99_ms":..,"max_ms":..,"errors":..}`
//! Latencies are kept exactly: every successful operation's latency goes into a `Vec<u32>` of
//! microseconds per worker; the vectors are merged and sorted at the end.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use conclave::pb::etcdserverpb as pb;
use futures_util::StreamExt;
use pb::kv_client::KvClient;
use pb::watch_client::WatchClient;
use serde_json::{json, Value};
use tonic::transport::{Channel, Endpoint};

/// `println!` that ignores a closed stdout (e.g. `conclave-bench ... | head -1`).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod grpc;
mod zk;

#[derive(Parser, Debug)]
#[command(
    name = "conclave-bench",
    about = "Load generator for any etcd v3 or ZooKeeper endpoint (Conclave, etcd, ZooKeeper); prints a human line and a JSON line per run",
    after_help = "Examples:\n  conclave-bench --endpoints 127.0.0.1:2379 --clients 100 --conns 10 --total 20000 put\n  \
conclave-bench --clients 100 --conns 10 range --consistency s --prefill 10000\n  \
conclave-bench --conns 10 --total 1000 watch-latency --watchers 100 --streams 10 --rate 100\n  \
conclave-bench startup --runs 5 --bin /usr/bin/etcd -- --data-dir {DATA} \\\n    \
--listen-client-urls http://127.0.0.1:{PORT} --advertise-client-urls http://127.0.0.1:{PORT} \\\n    \
--listen-peer-urls http://127.0.0.1:{PEER_PORT} --initial-advertise-peer-urls http://127.0.0.1:{PEER_PORT} \\\n    \
--initial-cluster default=http://127.0.0.1:{PEER_PORT}\n  \
conclave-bench --endpoints 127.0.0.1:2181 --clients 16 zk set --inflight 16\n  \
conclave-bench --endpoints 127.0.0.1:2181 --clients 64 --total 5000 zk lock\n  \
conclave-bench rss --pid 1234"
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Debug, Clone)]
struct Common {
    /// Endpoints (etcd: host:port or http://host:port; zk: host:port), comma separated;
    /// connections are spread over them round-robin. Default 127.0.0.1:2379, for zk
    /// 127.0.0.1:2181.
    #[arg(long, global = true, value_delimiter = ',')]
    endpoints: Vec<String>,

    /// Concurrent workers (etcd: each keeps one request in flight; zk: each is its own
    /// connection and session, with --inflight requests in flight).
    #[arg(long, global = true, default_value_t = 1)]
    clients: usize,

    /// gRPC channels (TCP connections) shared round-robin by the workers (etcd only).
    #[arg(long, global = true, default_value_t = 1)]
    conns: usize,

    /// Operations to run (for watch-latency: puts). Default 10000 unless only --duration-s is
    /// given; when both are given the run stops at whichever comes first.
    #[arg(long, global = true)]
    total: Option<u64>,

    /// Stop the run after this many seconds.
    #[arg(long, global = true)]
    duration_s: Option<f64>,

    /// Key length in bytes: keys are zero-padded decimal numbers of this width.
    #[arg(long, global = true, default_value_t = 8)]
    key_size: usize,

    /// Value length in bytes (default 256; zk: 100).
    #[arg(long = "val-size", value_name = "VAL_SIZE", global = true)]
    val_size_arg: Option<usize>,
    #[arg(skip)]
    val_size: usize,

    /// Number of distinct keys (keys 0..key-space; default 100000; zk: 10000).
    #[arg(long = "key-space", value_name = "KEY_SPACE", global = true)]
    key_space_arg: Option<u64>,
    #[arg(skip)]
    key_space: u64,

    /// Per-request timeout in seconds; a request that takes longer counts as an error.
    #[arg(long, global = true, default_value_t = 10.0)]
    timeout_s: f64,

    /// Tokio worker threads for the load generator (0 = one per core).
    #[arg(long, global = true, default_value_t = 0)]
    threads: usize,

    /// gRPC client of put / range / txn: `lean` (one HTTP/2 stream per call straight on h2,
    /// see benches/grpc.rs) or `tonic` (tonic's generated client over a Channel; costs the
    /// load generator about twice the CPU per call).
    #[arg(long, global = true, value_enum, default_value_t = GrpcClient::Lean)]
    grpc_client: GrpcClient,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum GrpcClient {
    Lean,
    Tonic,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Consistency {
    /// Linearizable (the etcd default: confirmed with the leader / quorum).
    #[value(name = "l", alias = "linearizable")]
    L,
    /// Serializable (served from the local store).
    #[value(name = "s", alias = "serializable")]
    S,
}

/// The protocol `ping` and `startup` probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Probe {
    Etcd,
    Zk,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Put a value of --val-size bytes on a random key of the key space.
    Put {
        /// Write keys in order 0,1,2,... (mod key space) instead of at random; with
        /// --total = --key-space this writes every key exactly once.
        #[arg(long)]
        sequential: bool,
    },
    /// Range (get) one existing key at random.
    Range {
        /// l = linearizable, s = serializable.
        #[arg(long, value_enum, default_value = "l")]
        consistency: Consistency,
        /// First write keys 0..N (not measured), then read only those keys.
        #[arg(long)]
        prefill: Option<u64>,
    },
    /// Txn on a random key: if mod_revision(key) > 0 then put(key) else put(key).
    /// (The else-put only creates missing keys so that every txn writes; the number of txns
    /// whose compare failed is reported.)
    Txn {
        /// First write keys 0..N (not measured), then txn only on those keys.
        #[arg(long)]
        prefill: Option<u64>,
    },
    /// Put -> watch event latency: --watchers watchers spread over --streams watch streams
    /// (themselves spread over --conns channels) all watch one key prefix; one writer puts
    /// --rate puts/s under that prefix with its send time in the value; every watcher measures
    /// send -> event received.
    WatchLatency {
        /// Total watchers.
        #[arg(long, default_value_t = 100)]
        watchers: usize,
        /// Watch streams the watchers are spread over.
        #[arg(long, default_value_t = 10)]
        streams: usize,
        /// Puts per second.
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        /// Key prefix written and watched (keys are PREFIX + zero-padded number).
        #[arg(long, default_value = "bench-watch/")]
        prefix: String,
        /// After the last put, wait at most this many seconds for missing events.
        #[arg(long, default_value_t = 5.0)]
        drain_s: f64,
    },
    /// ZooKeeper workloads: N clients (--clients, each its own connection and session) x M
    /// requests in flight (--inflight).
    Zk(zk::ZkArgs),
    /// Time from spawning a server binary (empty temp data dir, free loopback ports) until a TCP
    /// connect and a first request succeed on {PORT}: a linearizable gRPC Range on key "x"
    /// (--probe etcd) or a ZooKeeper session and exists("/") (--probe zk). Args after `--` are
    /// the server's; {PORT}, {PEER_PORT}, {PORT2} and {DATA} are replaced by the probed port,
    /// the peer port, one more free port and the data dir.
    Startup {
        /// Server binary to spawn.
        #[arg(long)]
        bin: PathBuf,
        /// What "serving" means: etcd (a Range) or zk (a session and an exists).
        #[arg(long, value_enum, default_value = "etcd")]
        probe: Probe,
        /// Repetitions (the median is reported).
        #[arg(long, default_value_t = 1)]
        runs: usize,
        /// Give up on one start after this many seconds.
        #[arg(long, default_value_t = 60.0)]
        wait_s: f64,
        /// Server arguments (after `--`), with {PORT} {PEER_PORT} {PORT2} {DATA} placeholders.
        #[arg(last = true, required = true)]
        args: Vec<String>,
    },
    /// Print VmRSS of a process (from /proc/PID/status).
    Rss {
        #[arg(long)]
        pid: u32,
    },
    /// Wait until the first endpoint serves (etcd: a linearizable Range on "x"; zk: a session
    /// and an exists("/")); exit 1 if it does not within --wait-s.
    Ping {
        #[arg(long, default_value_t = 30.0)]
        wait_s: f64,
        #[arg(long, value_enum, default_value = "etcd")]
        probe: Probe,
    },
    /// Print N free loopback TCP ports, space separated (for scripts).
    FreePorts {
        #[arg(long, default_value_t = 2)]
        count: usize,
    },
}

fn main() {
    let cli = Cli::parse();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if cli.common.threads > 0 {
        rt.worker_threads(cli.common.threads);
    }
    let rt = match rt.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("conclave-bench: tokio runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("conclave-bench: {e}");
            1
        }
    };
    // Do not wait for stray tasks (e.g. a watch stream that never answered).
    rt.shutdown_timeout(Duration::from_millis(200));
    std::process::exit(code);
}

async fn run(cli: Cli) -> Result<i32, String> {
    let mut c = cli.common;
    // Defaults that depend on the protocol.
    let zk = matches!(cli.cmd, Cmd::Zk(_) | Cmd::Ping { probe: Probe::Zk, .. });
    if c.endpoints.is_empty() {
        c.endpoints = vec![if zk { "127.0.0.1:2181" } else { "127.0.0.1:2379" }.to_string()];
    }
    c.val_size = c.val_size_arg.unwrap_or(if zk { 100 } else { 256 });
    c.key_space = c.key_space_arg.unwrap_or(if zk { 10_000 } else { 100_000 });
    match cli.cmd {
        Cmd::Zk(args) => {
            tokio::select! {
                r = zk::run(&c, args) => r,
                s = interrupted() => Err(format!("zk: interrupted by {s}")),
            }
        }
        Cmd::Put { sequential } => {
            check_common(&c)?;
            let conns = connect_kv(&c).await?;
            let op = Op::Put { sequential, space: c.key_space };
            let r = run_closed(&c, &conns, op, c.clients, total(&c), deadline(&c)).await;
            let extra = if sequential { vec![("sequential", json!(true))] } else { vec![] };
            Ok(report("put", &c, Reach::Conns(c.conns), &r, "", extra))
        }
        Cmd::Range { consistency, prefill } => {
            check_common(&c)?;
            let conns = connect_kv(&c).await?;
            let space = prefilled_space(&c, &conns, prefill).await?;
            let serializable = matches!(consistency, Consistency::S);
            let op = Op::Range { serializable, space };
            let r = run_closed(&c, &conns, op, c.clients, total(&c), deadline(&c)).await;
            let name = if serializable { "range-s" } else { "range-l" };
            let note = format!(", {} misses (key not found)", r.flagged);
            Ok(report(name, &c, Reach::Conns(c.conns), &r, &note, vec![("misses", json!(r.flagged))]))
        }
        Cmd::Txn { prefill } => {
            check_common(&c)?;
            let conns = connect_kv(&c).await?;
            let space = prefilled_space(&c, &conns, prefill).await?;
            let op = Op::Txn { space };
            let r = run_closed(&c, &conns, op, c.clients, total(&c), deadline(&c)).await;
            let note = format!(", {} compares failed (key created)", r.flagged);
            Ok(report("txn", &c, Reach::Conns(c.conns), &r, &note, vec![("compare_failed", json!(r.flagged))]))
        }
        Cmd::WatchLatency { watchers, streams, rate, prefix, drain_s } => {
            check_common(&c)?;
            if watchers == 0 || streams == 0 || streams > watchers {
                return Err("need 0 < --streams <= --watchers".into());
            }
            if rate <= 0.0 || !rate.is_finite() {
                return Err("--rate must be > 0".into());
            }
            if c.val_size < 8 {
                return Err("watch-latency needs --val-size >= 8 (the send time is in the value)".into());
            }
            let chans = connect_all(&c).await?;
            watch_latency(&c, &chans, watchers, streams, rate, prefix, drain_s).await
        }
        Cmd::Startup { bin, probe, runs, wait_s, args } => {
            // On SIGINT/SIGTERM drop the startup future: its guards stop the server and remove
            // the temp dir.
            tokio::select! {
                r = startup(&bin, probe, runs.max(1), wait_s, &args) => r,
                s = interrupted() => Err(format!("startup: interrupted by {s}")),
            }
        }
        Cmd::Rss { pid } => {
            let kb = rss_kb(pid)?;
            say!("rss: pid {pid} VmRSS {kb} kB ({:.1} MiB)", kb as f64 / 1024.0);
            say!("{}", ordered_json(vec![("workload", json!("rss")), ("pid", json!(pid)), ("rss_kb", json!(kb))]));
            Ok(0)
        }
        Cmd::Ping { wait_s, probe } => {
            let ep = c.endpoints.first().ok_or("no --endpoints")?.clone();
            let t0 = Instant::now();
            let limit = Duration::from_secs_f64(wait_s.max(0.0));
            loop {
                if probe_once(probe, &ep, Duration::from_secs(1)).await.is_ok() {
                    say!("ping: {ep} serving after {:.0} ms", ms(t0.elapsed()));
                    return Ok(0);
                }
                if t0.elapsed() >= limit {
                    let e = probe_once(probe, &ep, Duration::from_secs(1)).await.err().unwrap_or_default();
                    eprintln!("ping: {ep} not serving after {wait_s} s: {e}");
                    return Ok(1);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Cmd::FreePorts { count } => {
            let ports = free_ports(count)?;
            let s: Vec<String> = ports.iter().map(|p| p.to_string()).collect();
            say!("{}", s.join(" "));
            Ok(0)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Common helpers

fn check_common(c: &Common) -> Result<(), String> {
    if c.endpoints.is_empty() {
        return Err("no --endpoints".into());
    }
    if c.clients == 0 || c.conns == 0 {
        return Err("--clients and --conns must be >= 1".into());
    }
    if c.key_space == 0 {
        return Err("--key-space must be >= 1".into());
    }
    let digits = (c.key_space - 1).to_string().len();
    if digits > c.key_size {
        return Err(format!(
            "--key-size {} is too short for --key-space {} (keys are zero-padded numbers; need {digits} bytes)",
            c.key_size, c.key_space
        ));
    }
    Ok(())
}

fn total(c: &Common) -> u64 {
    match (c.total, c.duration_s) {
        (Some(t), _) => t,
        (None, Some(_)) => u64::MAX,
        (None, None) => 10_000,
    }
}

fn deadline(c: &Common) -> Option<Instant> {
    c.duration_s.map(|s| Instant::now() + Duration::from_secs_f64(s.max(0.0)))
}

fn timeout(c: &Common) -> Duration {
    Duration::from_secs_f64(c.timeout_s.max(0.001))
}

fn uri(ep: &str) -> String {
    if ep.contains("://") {
        ep.to_string()
    } else {
        format!("http://{ep}")
    }
}

async fn connect(ep: &str) -> Result<Channel, String> {
    Endpoint::from_shared(uri(ep))
        .map_err(|e| format!("bad endpoint {ep}: {e}"))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| format!("connecting to {ep}: {e} ({e:?})"))
}

/// One channel (one TCP connection / HTTP/2 session) per --conns, endpoints round-robin.
async fn connect_all(c: &Common) -> Result<Vec<Channel>, String> {
    let mut chans = Vec::with_capacity(c.conns);
    for i in 0..c.conns {
        chans.push(connect(&c.endpoints[i % c.endpoints.len()]).await?);
    }
    Ok(chans)
}

/// The closed-loop workloads' connections, --conns of them, in the client --grpc-client names.
enum Conns {
    Tonic(Vec<Channel>),
    Lean(Vec<grpc::Conn>),
}

async fn connect_kv(c: &Common) -> Result<Conns, String> {
    match c.grpc_client {
        GrpcClient::Tonic => Ok(Conns::Tonic(connect_all(c).await?)),
        GrpcClient::Lean => {
            let mut conns = Vec::with_capacity(c.conns);
            for i in 0..c.conns {
                conns.push(grpc::connect(&c.endpoints[i % c.endpoints.len()]).await?);
            }
            Ok(Conns::Lean(conns))
        }
    }
}

/// One worker's KV client: the same three calls over either gRPC client.
enum KvCall {
    Tonic(KvClient<Channel>),
    Lean { conn: grpc::Conn, put: http::Uri, range: http::Uri, txn: http::Uri },
}

impl KvCall {
    fn new(conns: &Conns, w: usize) -> Result<Self, String> {
        Ok(match conns {
            Conns::Tonic(chans) => KvCall::Tonic(KvClient::new(chans[w % chans.len()].clone())),
            Conns::Lean(conns) => {
                let conn = conns[w % conns.len()].clone();
                KvCall::Lean {
                    put: grpc::method_uri(&conn, "/etcdserverpb.KV/Put")?,
                    range: grpc::method_uri(&conn, "/etcdserverpb.KV/Range")?,
                    txn: grpc::method_uri(&conn, "/etcdserverpb.KV/Txn")?,
                    conn,
                }
            }
        })
    }

    async fn put(&mut self, req: pb::PutRequest) -> Result<pb::PutResponse, String> {
        match self {
            KvCall::Tonic(kv) => kv.put(req).await.map(|r| r.into_inner()).map_err(|e| e.to_string()),
            KvCall::Lean { conn, put, .. } => conn.unary(put, &req).await,
        }
    }

    async fn range(&mut self, req: pb::RangeRequest) -> Result<pb::RangeResponse, String> {
        match self {
            KvCall::Tonic(kv) => kv.range(req).await.map(|r| r.into_inner()).map_err(|e| e.to_string()),
            KvCall::Lean { conn, range, .. } => conn.unary(range, &req).await,
        }
    }

    async fn txn(&mut self, req: pb::TxnRequest) -> Result<pb::TxnResponse, String> {
        match self {
            KvCall::Tonic(kv) => kv.txn(req).await.map(|r| r.into_inner()).map_err(|e| e.to_string()),
            KvCall::Lean { conn, txn, .. } => conn.unary(txn, &req).await,
        }
    }
}

fn key(n: u64, size: usize) -> Vec<u8> {
    format!("{n:0size$}").into_bytes()
}

fn value(size: usize) -> Vec<u8> {
    (0..size).map(|i| b'a' + (i % 26) as u8).collect()
}

/// splitmix64: a tiny deterministic generator, good enough to pick keys.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A JSON object with keys in the order given (serde_json's `json!` sorts them).
fn ordered_json(fields: Vec<(&str, Value)>) -> String {
    let body: Vec<String> = fields.into_iter().map(|(k, v)| format!("{}:{}", Value::from(k), v)).collect();
    format!("{{{}}}", body.join(","))
}

fn us(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Prints at most a few error messages per process, so a broken server does not flood stderr.
fn note_error(msg: &str) {
    static SHOWN: AtomicU64 = AtomicU64::new(0);
    let n = SHOWN.fetch_add(1, Ordering::Relaxed);
    if n < 5 {
        eprintln!("error: {msg}");
    } else if n == 5 {
        eprintln!("error: (further errors not shown)");
    }
}

// ---------------------------------------------------------------------------------------------
// Closed-loop workloads (put / range / txn)

#[derive(Clone, Copy, Debug)]
enum Op {
    Put { sequential: bool, space: u64 },
    Range { serializable: bool, space: u64 },
    Txn { space: u64 },
}

struct Shared {
    next: AtomicU64,
    total: u64,
    deadline: Option<Instant>,
    timeout: Duration,
    key_size: usize,
    value: Vec<u8>,
}

#[derive(Default)]
struct RunResult {
    lat_us: Vec<u32>,
    errors: u64,
    /// Range: misses; txn: failed compares.
    flagged: u64,
    seconds: f64,
}

async fn run_closed(
    c: &Common,
    conns: &Conns,
    op: Op,
    workers: usize,
    total: u64,
    deadline: Option<Instant>,
) -> RunResult {
    let shared = Arc::new(Shared {
        next: AtomicU64::new(0),
        total,
        deadline,
        timeout: timeout(c),
        key_size: c.key_size,
        value: value(c.val_size),
    });
    let seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1);
    let start = Instant::now();
    let mut handles = Vec::with_capacity(workers);
    for w in 0..workers {
        let kv = match KvCall::new(conns, w) {
            Ok(kv) => kv,
            Err(e) => {
                note_error(&e);
                continue;
            }
        };
        let shared = shared.clone();
        let rng = Rng::new(seed.wrapping_add(w as u64 * 7919));
        handles.push(tokio::spawn(worker(kv, op, shared, rng)));
    }
    let mut out = RunResult::default();
    for h in handles {
        match h.await {
            Ok(r) => {
                out.lat_us.extend_from_slice(&r.lat_us);
                out.errors += r.errors;
                out.flagged += r.flagged;
            }
            Err(e) => {
                note_error(&format!("worker task failed: {e}"));
                out.errors += 1;
            }
        }
    }
    out.seconds = start.elapsed().as_secs_f64();
    out
}

async fn worker(mut kv: KvCall, op: Op, s: Arc<Shared>, mut rng: Rng) -> RunResult {
    let mut r = RunResult { lat_us: Vec::with_capacity(1024), ..Default::default() };
    loop {
        if let Some(d) = s.deadline {
            if Instant::now() >= d {
                break;
            }
        }
        let i = s.next.fetch_add(1, Ordering::Relaxed);
        if i >= s.total {
            break;
        }
        let t0 = Instant::now();
        let res: Result<bool, String> = match op {
            Op::Put { sequential, space } => {
                let n = if sequential { i % space } else { rng.below(space) };
                let req = pb::PutRequest { key: key(n, s.key_size), value: s.value.clone(), ..Default::default() };
                match tokio::time::timeout(s.timeout, kv.put(req)).await {
                    Ok(Ok(_)) => Ok(true),
                    Ok(Err(e)) => Err(format!("put: {e}")),
                    Err(_) => Err("put: timed out".into()),
                }
            }
            Op::Range { serializable, space } => {
                let req =
                    pb::RangeRequest { key: key(rng.below(space), s.key_size), serializable, ..Default::default() };
                match tokio::time::timeout(s.timeout, kv.range(req)).await {
                    Ok(Ok(resp)) => Ok(!resp.kvs.is_empty()),
                    Ok(Err(e)) => Err(format!("range: {e}")),
                    Err(_) => Err("range: timed out".into()),
                }
            }
            Op::Txn { space } => {
                let k = key(rng.below(space), s.key_size);
                let put = pb::RequestOp {
                    request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                        key: k.clone(),
                        value: s.value.clone(),
                        ..Default::default()
                    })),
                };
                let req = pb::TxnRequest {
                    compare: vec![pb::Compare {
                        result: pb::compare::CompareResult::Greater as i32,
                        target: pb::compare::CompareTarget::Mod as i32,
                        key: k,
                        range_end: vec![],
                        target_union: Some(pb::compare::TargetUnion::ModRevision(0)),
                    }],
                    success: vec![put.clone()],
                    failure: vec![put],
                };
                match tokio::time::timeout(s.timeout, kv.txn(req)).await {
                    Ok(Ok(resp)) => Ok(resp.succeeded),
                    Ok(Err(e)) => Err(format!("txn: {e}")),
                    Err(_) => Err("txn: timed out".into()),
                }
            }
        };
        match res {
            Ok(ok) => {
                r.lat_us.push(us(t0.elapsed()));
                if !ok {
                    r.flagged += 1;
                }
            }
            Err(e) => {
                r.errors += 1;
                note_error(&e);
            }
        }
    }
    r
}

/// The keys a read workload draws from: with `--prefill N`, keys 0..N-1, written first (not
/// measured); without, the whole key space.
async fn prefilled_space(c: &Common, conns: &Conns, prefill: Option<u64>) -> Result<u64, String> {
    match prefill {
        Some(n) => {
            do_prefill(c, conns, n).await?;
            Ok(n)
        }
        None => Ok(c.key_space),
    }
}

/// Writes keys 0..n once each (sequentially numbered, --clients workers), not measured.
async fn do_prefill(c: &Common, conns: &Conns, n: u64) -> Result<(), String> {
    if n == 0 {
        return Err("--prefill must be >= 1".into());
    }
    let digits = (n - 1).to_string().len();
    if digits > c.key_size {
        return Err(format!("--prefill {n} does not fit in --key-size {}", c.key_size));
    }
    let op = Op::Put { sequential: true, space: n };
    let r = run_closed(c, conns, op, c.clients, n, None).await;
    eprintln!(
        "prefill: {} keys in {:.2} s ({:.0} puts/s), {} errors",
        r.lat_us.len(),
        r.seconds,
        r.lat_us.len() as f64 / r.seconds.max(1e-9),
        r.errors
    );
    if r.errors > 0 {
        return Err(format!("prefill had {} errors", r.errors));
    }
    Ok(())
}

struct Summary {
    ops: u64,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

/// Nearest-rank percentiles (ms) of a latency vector in µs; sorts it.
fn summarize(lat: &mut [u32]) -> Summary {
    lat.sort_unstable();
    let n = lat.len();
    let pct = |q: f64| -> f64 {
        if n == 0 {
            return 0.0;
        }
        let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
        lat[rank - 1] as f64 / 1000.0
    };
    Summary { ops: n as u64, p50: pct(0.50), p90: pct(0.90), p99: pct(0.99), max: pct(1.0) }
}

/// How a run's clients reached the server, as its report says it.
enum Reach {
    /// etcd workloads: the workers share this many gRPC channels.
    Conns(usize),
    /// ZooKeeper workloads: a connection per client, with this many requests in flight on each.
    InFlight(usize),
}

/// Prints the human line and the JSON line; returns the exit code.
fn report(workload: &str, c: &Common, reach: Reach, r: &RunResult, note: &str, extra: Vec<(&str, Value)>) -> i32 {
    let mut lat = r.lat_us.clone();
    let s = summarize(&mut lat);
    let ops_per_s = s.ops as f64 / r.seconds.max(1e-9);
    let (shape, conns) = match reach {
        Reach::Conns(n) => (format!("conns {n}"), n),
        Reach::InFlight(n) => (format!("in-flight {n}"), c.clients),
    };
    say!(
        "{workload}: clients {} {shape}: {} ops in {:.3} s = {:.1} ops/s; latency ms p50 {:.3} p90 {:.3} p99 {:.3} max {:.3}; {} errors{note}",
        c.clients, s.ops, r.seconds, ops_per_s, s.p50, s.p90, s.p99, s.max, r.errors
    );
    if r.errors > 0 {
        eprintln!("{workload}: THIS RUN HAD {} ERRORS (first messages above)", r.errors);
    }
    let mut fields = vec![
        ("workload", json!(workload)),
        ("clients", json!(c.clients)),
        ("conns", json!(conns)),
        ("ops", json!(s.ops)),
        ("seconds", json!(round3(r.seconds))),
        ("ops_per_s", json!(round3(ops_per_s))),
        ("p50_ms", json!(s.p50)),
        ("p90_ms", json!(s.p90)),
        ("p99_ms", json!(s.p99)),
        ("max_ms", json!(s.max)),
        ("errors", json!(r.errors)),
    ];
    fields.extend(extra);
    say!("{}", ordered_json(fields));
    if s.ops == 0 {
        2
    } else {
        0
    }
}

// ---------------------------------------------------------------------------------------------
// watch-latency

fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0] // whole keyspace
}

async fn watch_latency(
    c: &Common,
    chans: &[Channel],
    watchers: usize,
    streams: usize,
    rate: f64,
    prefix: String,
    drain_s: f64,
) -> Result<i32, String> {
    let epoch = Instant::now(); // the shared clock: values carry nanoseconds since `epoch`
    let pfx = prefix.into_bytes();
    let range_end = prefix_end(&pfx);
    let received = Arc::new(AtomicU64::new(0));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<Result<(), String>>(streams);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);

    let mut stream_tasks = Vec::with_capacity(streams);
    for s in 0..streams {
        let n = watchers / streams + usize::from(s < watchers % streams);
        let reqs: Vec<pb::WatchRequest> = (0..n)
            .map(|_| pb::WatchRequest {
                request_union: Some(pb::watch_request::RequestUnion::CreateRequest(pb::WatchCreateRequest {
                    key: pfx.clone(),
                    range_end: range_end.clone(),
                    ..Default::default()
                })),
            })
            .collect();
        let mut wc = WatchClient::new(chans[s % chans.len()].clone());
        let ready_tx = ready_tx.clone();
        let mut stop_rx = stop_rx.clone();
        let received = received.clone();
        stream_tasks.push(tokio::spawn(async move {
            let mut lat: Vec<u32> = Vec::new();
            let mut errors = 0u64;
            // Keep the request side open after the creates: the stream ends when we drop it.
            let outbound = futures_util::stream::iter(reqs).chain(futures_util::stream::pending());
            let mut inbound = match wc.watch(outbound).await {
                Ok(r) => r.into_inner(),
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("watch stream {s}: {e}"))).await;
                    return (lat, 1);
                }
            };
            let mut created = 0usize;
            loop {
                tokio::select! {
                    msg = inbound.message() => match msg {
                        Ok(Some(resp)) => {
                            let now_ns = epoch.elapsed().as_nanos() as u64;
                            if resp.created {
                                created += 1;
                                if created == n {
                                    let _ = ready_tx.send(Ok(())).await;
                                }
                            }
                            if resp.canceled {
                                errors += 1;
                                note_error(&format!(
                                    "watch {} on stream {s} canceled: {}",
                                    resp.watch_id, resp.cancel_reason
                                ));
                            }
                            for ev in &resp.events {
                                let Some(kv) = ev.kv.as_ref() else { errors += 1; continue };
                                match kv.value.get(..8) {
                                    Some(b) => {
                                        let sent = u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
                                        lat.push(us(Duration::from_nanos(now_ns.saturating_sub(sent))));
                                        received.fetch_add(1, Ordering::Relaxed);
                                    }
                                    None => errors += 1,
                                }
                            }
                        }
                        Ok(None) => {
                            if !*stop_rx.borrow() {
                                errors += 1;
                                note_error(&format!("watch stream {s} closed by the server"));
                            }
                            break;
                        }
                        Err(e) => {
                            errors += 1;
                            note_error(&format!("watch stream {s}: {e}"));
                            break;
                        }
                    },
                    _ = stop_rx.changed() => break,
                }
            }
            if created < n {
                let _ = ready_tx.send(Err(format!("watch stream {s}: only {created}/{n} watchers created"))).await;
            }
            (lat, errors)
        }));
    }
    drop(ready_tx);

    // All watchers must be created before the first put.
    let setup_deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut ready = 0;
    while ready < streams {
        match tokio::time::timeout_at(setup_deadline, ready_rx.recv()).await {
            Ok(Some(Ok(()))) => ready += 1,
            Ok(Some(Err(e))) => {
                let _ = stop_tx.send(true);
                return Err(e);
            }
            Ok(None) | Err(_) => {
                let _ = stop_tx.send(true);
                return Err(format!("only {ready}/{streams} watch streams ready after 30 s"));
            }
        }
    }

    // The writer: open loop at --rate, each put in its own task so a slow put does not delay
    // the next one; the send time is taken right before the request goes out.
    let total_puts = total(c);
    let run_deadline = deadline(c);
    let period = Duration::from_secs_f64(1.0 / rate);
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let kv = KvClient::new(chans[0].clone());
    let to = timeout(c);
    let pad = value(c.val_size);
    let start = Instant::now();
    let mut puts = Vec::new();
    let mut i = 0u64;
    while i < total_puts {
        ticker.tick().await;
        if run_deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let mut kv = kv.clone();
        let k = {
            let mut k = pfx.clone();
            k.extend(key(i % c.key_space, c.key_size));
            k
        };
        let mut v = pad.clone();
        puts.push(tokio::spawn(async move {
            let sent = epoch.elapsed().as_nanos() as u64;
            v[..8].copy_from_slice(&sent.to_le_bytes());
            let req = pb::PutRequest { key: k, value: v, ..Default::default() };
            match tokio::time::timeout(to, kv.put(req)).await {
                Ok(Ok(_)) => true,
                Ok(Err(e)) => {
                    note_error(&format!("put: {e}"));
                    false
                }
                Err(_) => {
                    note_error("put: timed out");
                    false
                }
            }
        }));
        i += 1;
    }
    let mut puts_ok = 0u64;
    let mut put_errors = 0u64;
    for p in puts {
        if matches!(p.await, Ok(true)) {
            puts_ok += 1;
        } else {
            put_errors += 1;
        }
    }
    let seconds = start.elapsed().as_secs_f64();

    // Drain: wait until every watcher saw every successful put, or --drain-s.
    let expected = puts_ok * watchers as u64;
    let drain_deadline = Instant::now() + Duration::from_secs_f64(drain_s.max(0.0));
    while received.load(Ordering::Relaxed) < expected && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop_tx.send(true);
    let mut lat = Vec::new();
    let mut stream_errors = 0u64;
    for t in stream_tasks {
        match tokio::time::timeout(Duration::from_secs(5), t).await {
            Ok(Ok((l, e))) => {
                lat.extend_from_slice(&l);
                stream_errors += e;
            }
            _ => stream_errors += 1,
        }
    }
    let got = lat.len() as u64;
    let missing = expected.saturating_sub(got);
    let extra_events = got.saturating_sub(expected);
    let s = summarize(&mut lat);
    let errors = put_errors + stream_errors + missing;
    let events_per_s = got as f64 / seconds.max(1e-9);
    say!(
        "watch-latency: {watchers} watchers on {streams} streams over {} conns, {puts_ok} puts at {rate}/s in {seconds:.3} s: \
{got} events ({missing} missing, {extra_events} unexpected); put->event ms p50 {:.3} p90 {:.3} p99 {:.3} max {:.3}; \
{errors} errors ({put_errors} put, {stream_errors} stream, {missing} missing events)",
        c.conns, s.p50, s.p90, s.p99, s.max
    );
    say!(
        "{}",
        ordered_json(vec![
            ("workload", json!("watch-latency")),
            ("clients", json!(watchers)),
            ("conns", json!(c.conns)),
            ("ops", json!(got)),
            ("seconds", json!(round3(seconds))),
            ("ops_per_s", json!(round3(events_per_s))),
            ("p50_ms", json!(s.p50)),
            ("p90_ms", json!(s.p90)),
            ("p99_ms", json!(s.p99)),
            ("max_ms", json!(s.max)),
            ("errors", json!(errors)),
            ("watchers", json!(watchers)),
            ("streams", json!(streams)),
            ("rate", json!(rate)),
            ("puts", json!(puts_ok)),
            ("put_errors", json!(put_errors)),
            ("missing_events", json!(missing)),
        ])
    );
    Ok(if got == 0 { 2 } else { 0 })
}

// ---------------------------------------------------------------------------------------------
// startup / rss / ping / free-ports

fn free_ports(count: usize) -> Result<Vec<u16>, String> {
    // Hold all listeners until every port is chosen so the ports differ.
    let mut ls = Vec::with_capacity(count);
    for _ in 0..count {
        let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
        ls.push(l);
    }
    ls.iter().map(|l| l.local_addr().map(|a| a.port()).map_err(|e| format!("local_addr: {e}"))).collect()
}

async fn probe_once(probe: Probe, ep: &str, limit: Duration) -> Result<(), String> {
    match probe {
        Probe::Etcd => probe_range(ep, limit).await,
        Probe::Zk => zk::probe(ep.strip_prefix("http://").unwrap_or(ep), limit).await,
    }
}

/// One linearizable Range on key "x" over a fresh connection.
async fn probe_range(ep: &str, limit: Duration) -> Result<(), String> {
    let attempt = async {
        let ch = Endpoint::from_shared(uri(ep))
            .map_err(|e| e.to_string())?
            .connect_timeout(limit)
            .connect()
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let mut kv = KvClient::new(ch);
        kv.range(pb::RangeRequest { key: b"x".to_vec(), ..Default::default() })
            .await
            .map_err(|e| format!("range: {e}"))?;
        Ok::<(), String>(())
    };
    match tokio::time::timeout(limit, attempt).await {
        Ok(r) => r,
        Err(_) => Err("timed out".into()),
    }
}

fn rss_kb(pid: u32) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("reading /proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("no VmRSS in /proc/{pid}/status"))
}

async fn interrupted() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

/// Removes a temp dir when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Stops a spawned server when dropped.
struct Spawned {
    child: Child,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        // SIGTERM first (lets the server release its files), SIGKILL if it lingers.
        let pid = self.child.id() as libc::pid_t;
        if matches!(self.child.try_wait(), Ok(None)) {
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
            let t0 = Instant::now();
            while matches!(self.child.try_wait(), Ok(None)) && t0.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn log_tail(path: &Path) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

async fn startup(bin: &Path, probe: Probe, runs: usize, wait_s: f64, args: &[String]) -> Result<i32, String> {
    // The server runs in its temp dir: resolve a relative binary path first.
    let bin = if bin.components().count() > 1 {
        std::fs::canonicalize(bin).map_err(|e| format!("{}: {e}", bin.display()))?
    } else {
        bin.to_path_buf()
    };
    let bin = bin.as_path();
    let mut samples = Vec::with_capacity(runs);
    for run in 0..runs {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let base = std::env::temp_dir().join(format!("conclave-bench-startup-{}-{run}-{nanos}", std::process::id()));
        let data = base.join("data");
        let _dir = TempDir(base.clone()); // declared before the child guard: dropped after it
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&data)
                .map_err(|e| format!("creating {}: {e}", data.display()))?;
        }
        let ports = free_ports(3)?;
        let (port, peer, port2) = (ports[0], ports[1], ports[2]);
        let argv: Vec<String> = args
            .iter()
            .map(|a| {
                a.replace("{PORT}", &port.to_string())
                    .replace("{PEER_PORT}", &peer.to_string())
                    .replace("{PORT2}", &port2.to_string())
                    .replace("{DATA}", &data.to_string_lossy())
            })
            .collect();
        let log_path = base.join("server.log");
        let log = std::fs::File::create(&log_path).map_err(|e| format!("creating log: {e}"))?;
        let log2 = log.try_clone().map_err(|e| format!("log: {e}"))?;
        let mut cmd = Command::new(bin);
        cmd.args(&argv).stdin(Stdio::null()).stdout(log).stderr(log2).current_dir(&base);
        {
            use std::os::unix::process::CommandExt;
            // If this tool dies, the server dies with it (the spawn runs on the main thread).
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
        }
        let t0 = Instant::now();
        let child = cmd.spawn().map_err(|e| format!("spawning {}: {e}", bin.display()))?;
        let mut sp = Spawned { child };
        let addr = format!("127.0.0.1:{port}");
        let limit = Duration::from_secs_f64(wait_s.max(0.1));
        let mut last_err = String::from("never reached");
        let served = loop {
            if let Ok(Some(status)) = sp.child.try_wait() {
                return Err(format!(
                    "{} exited with {status} before serving; log tail:\n{}",
                    bin.display(),
                    log_tail(&log_path)
                ));
            }
            if t0.elapsed() >= limit {
                break None;
            }
            let tcp = tokio::time::timeout(Duration::from_millis(200), tokio::net::TcpStream::connect(&addr)).await;
            match tcp {
                Ok(Ok(_)) => match probe_once(probe, &addr, Duration::from_secs(1)).await {
                    Ok(()) => break Some(t0.elapsed()),
                    Err(e) => last_err = e,
                },
                Ok(Err(e)) => last_err = format!("tcp connect: {e}"),
                Err(_) => last_err = "tcp connect timed out".into(),
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        match served {
            Some(d) => {
                eprintln!("startup run {}: {:.1} ms", run + 1, ms(d));
                samples.push(ms(d));
            }
            None => {
                return Err(format!(
                    "{} not serving after {wait_s} s ({last_err}); log tail:\n{}",
                    bin.display(),
                    log_tail(&log_path)
                ));
            }
        }
        drop(sp);
        drop(_dir);
    }
    let mut sorted = samples.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let median = if sorted.len() % 2 == 1 {
        sorted[sorted.len() / 2]
    } else {
        (sorted[sorted.len() / 2 - 1] + sorted[sorted.len() / 2]) / 2.0
    };
    say!(
        "startup: {} to serving: median {:.1} ms over {} runs (min {:.1}, max {:.1})",
        bin.display(),
        median,
        runs,
        sorted[0],
        sorted[sorted.len() - 1]
    );
    say!(
        "{}",
        ordered_json(vec![
            ("workload", json!("startup")),
            ("bin", json!(bin.display().to_string())),
            ("probe", json!(if probe == Probe::Zk { "zk" } else { "etcd" })),
            ("runs", json!(runs)),
            ("median_ms", json!(round3(median))),
            ("min_ms", json!(round3(sorted[0]))),
            ("max_ms", json!(round3(sorted[sorted.len() - 1]))),
            ("samples_ms", json!(samples.iter().map(|x| round3(*x)).collect::<Vec<_>>())),
        ])
    );
    Ok(0)
}
