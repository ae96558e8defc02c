//! ZooKeeper's four-letter words on the client port, in ZooKeeper 3.8's text formats (its
//! command/*Command.java): a client sends four ASCII letters instead of a length prefix and gets
//! plain text back, then the server closes the connection.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use super::server::ZkCtx;

/// The ZooKeeper version we answer as: clients (kazoo's `server_version`) parse the
/// major.minor.patch from `envi` and pick features by it.
pub const ZK_VERSION: &str = concat!("3.8.0-conclave-", env!("CARGO_PKG_VERSION"), ", built on 1970-01-01 00:00 UTC");

const WORDS: &[&str] = &[
    "ruok", "srvr", "stat", "conf", "envi", "cons", "wchs", "wchc", "wchp", "dirs", "isro", "crst", "srst", "mntr",
    "dump", "reqs", "gtmk", "stmk", "hash",
];

pub fn is_word(w: &str) -> bool {
    WORDS.contains(&w)
}

fn enabled(ctx: &ZkCtx, word: &str) -> bool {
    match &ctx.config.four_letter_words {
        None => true,
        Some(list) => list.iter().any(|w| w == word || w == "*"),
    }
}

pub fn answer(ctx: &ZkCtx, word: &str) -> String {
    if !enabled(ctx, word) {
        return format!("{word} is not executed because it is not in the whitelist.\n");
    }
    let mut s = String::new();
    match word {
        "ruok" => s.push_str("imok"),
        "isro" => s.push_str("rw"),
        "srvr" => {
            let _ = writeln!(s, "Zookeeper version: {ZK_VERSION}");
            server_stats(ctx, &mut s);
        }
        "stat" => {
            let _ = writeln!(s, "Zookeeper version: {ZK_VERSION}");
            s.push_str("Clients:\n");
            for (peer, queued, recved, sent) in conn_list(ctx) {
                let _ = writeln!(s, " /{peer}[1](queued={queued},recved={recved},sent={sent})");
            }
            s.push('\n');
            server_stats(ctx, &mut s);
        }
        "cons" => {
            let conns: Vec<_> = ctx.conns.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
            for c in conns {
                let (min, avg, max) = c.latency.get();
                let _ = writeln!(
                    s,
                    " /{}[1](queued={},recved={},sent={},sid=0x{:x},lop={},est={},to={},lcxid=0x{:x},lzxid=0x{:x},lresp={},llat={},minlat={min},avglat={},maxlat={max})",
                    c.peer,
                    c.outstanding.load(Ordering::Relaxed),
                    c.received.load(Ordering::Relaxed),
                    c.sent.load(Ordering::Relaxed),
                    c.session_id.load(Ordering::Relaxed),
                    c.last_op.lock().unwrap_or_else(|p| p.into_inner()),
                    c.established_ms,
                    c.timeout_ms.load(Ordering::Relaxed),
                    c.last_cxid.load(Ordering::Relaxed).max(0),
                    c.last_zxid.load(Ordering::Relaxed),
                    c.last_response_ms.load(Ordering::Relaxed),
                    c.last_latency_ms.load(Ordering::Relaxed),
                    avg as u64,
                );
            }
            s.push('\n');
        }
        "dump" => dump(ctx, &mut s),
        "conf" => {
            let c = &ctx.config;
            let _ = writeln!(s, "clientPort={}", c.client_port);
            s.push_str("secureClientPort=-1\n");
            let _ = writeln!(s, "dataDir={}", c.data_dir);
            let _ = writeln!(s, "dataDirSize={}", dir_size(ctx));
            let _ = writeln!(s, "dataLogDir={}", c.data_dir);
            let _ = writeln!(s, "dataLogSize=0");
            let _ = writeln!(s, "tickTime={}", c.tick_time_ms);
            let _ = writeln!(s, "maxClientCnxns={}", c.max_client_cnxns);
            let _ = writeln!(s, "minSessionTimeout={}", c.min_session_timeout_ms);
            let _ = writeln!(s, "maxSessionTimeout={}", c.max_session_timeout_ms);
            s.push_str("clientPortListenBacklog=-1\n");
            s.push_str("serverId=0\n");
        }
        "envi" => {
            s.push_str("Environment:\n");
            let _ = writeln!(s, "zookeeper.version={ZK_VERSION}");
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            let _ = writeln!(s, "host.name={}", host.trim());
            // The keys ZooKeeper prints about its host (its java.* keys describe a JVM we do not have).
            let os = if cfg!(target_os = "linux") { "Linux" } else { std::env::consts::OS };
            let _ = writeln!(s, "os.name={os}");
            let arch = if cfg!(target_arch = "x86_64") { "amd64" } else { std::env::consts::ARCH };
            let _ = writeln!(s, "os.arch={arch}");
            let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
            let _ = writeln!(s, "os.version={}", release.trim());
            let _ = writeln!(s, "user.name={}", std::env::var("USER").unwrap_or_else(|_| user_name()));
            let _ = writeln!(s, "user.home={}", std::env::var("HOME").unwrap_or_default());
            let dir = std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default();
            let _ = writeln!(s, "user.dir={dir}");
        }
        "wchs" => {
            let (conns, paths, total) = watch_summary(ctx);
            let _ = writeln!(s, "{conns} connections watching {paths} paths\nTotal watches:{total}");
        }
        "wchc" => {
            for (conn, paths) in ctx.watches.by_conn() {
                let _ = writeln!(s, "0x{:x}", session_of(ctx, conn));
                for p in paths {
                    let _ = writeln!(s, "\t{p}");
                }
            }
            s.push('\n');
        }
        "wchp" => {
            let mut by_path: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
            for (conn, paths) in ctx.watches.by_conn() {
                let sid = session_of(ctx, conn);
                for p in paths {
                    by_path.entry(p).or_default().push(sid);
                }
            }
            for (p, sids) in by_path {
                let _ = writeln!(s, "{p}");
                for sid in sids {
                    let _ = writeln!(s, "\t0x{sid:x}");
                }
            }
            s.push('\n');
        }
        "dirs" => {
            let _ = writeln!(s, "datadir_size: {}", dir_size(ctx));
            s.push_str("logdir_size: 0\n");
        }
        "crst" => {
            for c in ctx.conns.lock().unwrap_or_else(|p| p.into_inner()).values() {
                c.received.store(0, Ordering::Relaxed);
                c.sent.store(0, Ordering::Relaxed);
            }
            s.push_str("Connection stats reset.\n");
        }
        "srst" => {
            ctx.stats.reset();
            s.push_str("Server stats reset.\n");
        }
        "mntr" => mntr(ctx, &mut s),
        // Words ZooKeeper knows that we do not answer with content.
        _ => {
            let _ = writeln!(s, "{word} is not executed because it is not in the whitelist.");
        }
    }
    s
}

fn session_of(ctx: &ZkCtx, conn: u64) -> i64 {
    ctx.conns
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&conn)
        .map(|c| c.session_id.load(Ordering::Relaxed))
        .unwrap_or(0)
}

/// ZooKeeper's `wchs` counts its data-watch table: connections, paths and watches.
fn watch_summary(ctx: &ZkCtx) -> (usize, usize, usize) {
    let by_conn = ctx.watches.by_conn();
    let mut paths = std::collections::HashSet::new();
    let mut total = 0;
    for (_, p) in &by_conn {
        total += p.len();
        paths.extend(p.iter().cloned());
    }
    (by_conn.len(), paths.len(), total)
}

fn conn_list(ctx: &ZkCtx) -> Vec<(std::net::SocketAddr, usize, u64, u64)> {
    ctx.conns
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .map(|c| {
            (
                c.peer,
                c.outstanding.load(Ordering::Relaxed),
                c.received.load(Ordering::Relaxed),
                c.sent.load(Ordering::Relaxed),
            )
        })
        .collect()
}

/// Java's Double.toString for the averages ZooKeeper prints: "0.0", "1.25".
fn java_double(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.1}")
    } else {
        format!("{}", (v * 1e4).round() / 1e4)
    }
}

fn node_count(ctx: &ZkCtx) -> u64 {
    ctx.store.read().and_then(|v| v.zk_node_count()).unwrap_or(0)
}

fn dir_size(ctx: &ZkCtx) -> u64 {
    ctx.store.size_bytes()
}

fn server_stats(ctx: &ZkCtx, s: &mut String) {
    let (min, avg, max) = ctx.stats.latency.get();
    let _ = writeln!(s, "Latency min/avg/max: {min}/{}/{max}", java_double(avg));
    let _ = writeln!(s, "Received: {}", ctx.stats.received.load(Ordering::Relaxed));
    let _ = writeln!(s, "Sent: {}", ctx.stats.sent.load(Ordering::Relaxed));
    let _ = writeln!(s, "Connections: {}", ctx.conns.lock().unwrap_or_else(|p| p.into_inner()).len());
    let _ = writeln!(s, "Outstanding: {}", ctx.stats.outstanding.load(Ordering::Relaxed));
    let _ = writeln!(s, "Zxid: 0x{:x}", ctx.revision());
    s.push_str("Mode: standalone\n");
    let _ = writeln!(s, "Node count: {}", node_count(ctx));
}

fn mntr(ctx: &ZkCtx, s: &mut String) {
    let (min, avg, max) = ctx.stats.latency.get();
    let (_, _, watches) = ctx.watches.counts();
    let fds = std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0);
    let kv: Vec<(&str, String)> = vec![
        ("zk_version", ZK_VERSION.to_string()),
        ("zk_server_state", "standalone".into()),
        ("zk_avg_latency", java_double(avg)),
        ("zk_max_latency", max.to_string()),
        ("zk_min_latency", min.to_string()),
        ("zk_packets_received", ctx.stats.received.load(Ordering::Relaxed).to_string()),
        ("zk_packets_sent", ctx.stats.sent.load(Ordering::Relaxed).to_string()),
        ("zk_num_alive_connections", ctx.conns.lock().unwrap_or_else(|p| p.into_inner()).len().to_string()),
        ("zk_outstanding_requests", ctx.stats.outstanding.load(Ordering::Relaxed).to_string()),
        // Every ZooKeeper session is a lease; etcd leases count here too.
        ("zk_global_sessions", ctx.lessor.len().to_string()),
        ("zk_znode_count", node_count(ctx).to_string()),
        ("zk_watch_count", watches.to_string()),
        ("zk_ephemerals_count", ctx.store.read().and_then(|v| v.zk_ephemeral_count()).unwrap_or(0).to_string()),
        ("zk_approximate_data_size", dir_size(ctx).to_string()),
        ("zk_open_file_descriptor_count", fds.to_string()),
        ("zk_max_file_descriptor_count", max_fds().to_string()),
        ("zk_uptime", ctx.started.elapsed().as_millis().to_string()),
        ("zk_last_zxid", ctx.revision().to_string()),
    ];
    for (k, v) in kv {
        let _ = writeln!(s, "{k}\t{v}");
    }
}

fn max_fds() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we pass and has no other effect.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        lim.rlim_cur
    } else {
        0
    }
}

fn user_name() -> String {
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    std::fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 2 && f[2] == uid.to_string()).then(|| f[0].to_string())
        })
        .unwrap_or_default()
}

/// `dump`: the live sessions with their remaining time, the ephemerals of each session, and
/// (as ZooKeeper's Netty connection factory) no connection section body.
fn dump(ctx: &ZkCtx, s: &mut String) {
    s.push_str("SessionTracker dump:\n");
    let view = ctx.store.read().ok();
    let leases = view.as_ref().and_then(|v| v.leases().ok()).unwrap_or_default();
    let _ = writeln!(s, "Session Sets ({})/({}):", leases.len(), leases.len());
    for (id, _) in &leases {
        let left_ms = ctx.lessor.remaining(*id).map(|(_, d)| d.as_millis()).unwrap_or(0);
        let _ = writeln!(s, "1 expire in {left_ms} ms:\n\t0x{id:x}");
    }
    s.push_str("ephemeral nodes dump:\n");
    let by_session: Vec<(i64, Vec<String>)> = leases
        .iter()
        .filter_map(|(id, _)| {
            let e = view.as_ref()?.zk_ephemerals(*id).ok()?;
            (!e.is_empty()).then_some((*id, e))
        })
        .collect();
    let _ = writeln!(s, "Sessions with Ephemerals ({}):", by_session.len());
    for (id, paths) in by_session {
        let _ = writeln!(s, "0x{id:x}:");
        for p in paths {
            let _ = writeln!(s, "\t{p}");
        }
    }
    s.push_str("Connections dump:\n");
}
