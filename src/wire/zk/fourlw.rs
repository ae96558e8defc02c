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
            for c in live_conns(ctx) {
                conn_info(&mut s, &c, true);
            }
            s.push('\n');
            server_stats(ctx, &mut s);
        }
        "cons" => {
            for c in live_conns(ctx) {
                conn_info(&mut s, &c, false);
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
            for (p, conns) in ctx.watches.by_path() {
                let _ = writeln!(s, "{p}");
                for conn in conns {
                    let _ = writeln!(s, "\t0x{:x}", session_of(ctx, conn));
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
                c.reset();
            }
            s.push_str("Connection stats reset.\n");
        }
        "srst" => {
            ctx.stats.reset();
            s.push_str("Server stats reset.\n");
        }
        "mntr" => mntr(ctx, &mut s),
        "gtmk" => {
            let _ = write!(s, "{}", ctx.trace_mask.load(Ordering::Relaxed));
        }
        // Standalone ZooKeeper 3.8 answers both with nothing: no request is queued between
        // its processors when a word is answered, and it keeps no digest history.
        "reqs" | "hash" => {}
        // stmk comes with its mask: see `answer_stmk`.
        _ => {
            let _ = writeln!(s, "{word} is not executed because it is not in the whitelist.");
        }
    }
    s
}

/// cons's ",lcxid=0x.." field, left out after `crst` (ServerCnxn prints it only when known).
fn lcxid(cxid: i64) -> String {
    if cxid >= 0 {
        format!(",lcxid=0x{cxid:x}")
    } else {
        String::new()
    }
}

/// `stmk` and the 8-byte big-endian mask that follows it: sets ZooKeeper's trace mask and
/// answers it in decimal.
pub fn answer_stmk(ctx: &ZkCtx, mask: i64) -> String {
    if !enabled(ctx, "stmk") {
        return "stmk is not executed because it is not in the whitelist.\n".to_string();
    }
    ctx.trace_mask.store(mask, Ordering::Relaxed);
    mask.to_string()
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

/// The open connections' stats, copied out so no lock is held while a reply is written.
fn live_conns(ctx: &ZkCtx) -> Vec<std::sync::Arc<super::server::ConnStats>> {
    ctx.conns.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
}

/// One connection's line in stat (`brief`) and cons, as ServerCnxn.dumpConnectionInfo prints
/// it: address, selector interest set, counters, and for a session's connection in cons its
/// session fields. The interest set is OP_READ (1) for a session's connection and none (0) for
/// a four-letter word's own, which ZooKeeper stops reading while it answers.
fn conn_info(s: &mut String, c: &super::server::ConnStats, brief: bool) {
    let _ = write!(
        s,
        " /{}[{}](queued={},recved={},sent={}",
        c.peer,
        if c.four_letter { 0 } else { 1 },
        c.outstanding.load(Ordering::Relaxed),
        c.received.load(Ordering::Relaxed),
        c.sent.load(Ordering::Relaxed),
    );
    let session = c.session_id.load(Ordering::Relaxed);
    if !brief && session != 0 {
        let (min, avg, max) = c.latency.get();
        let _ = write!(
            s,
            ",sid=0x{session:x},lop={},est={},to={}{},lzxid=0x{:x},lresp={},llat={},minlat={min},avglat={},maxlat={max}",
            c.last_op.lock().unwrap_or_else(|p| p.into_inner()),
            c.established_ms,
            c.timeout_ms.load(Ordering::Relaxed),
            lcxid(c.last_cxid.load(Ordering::Relaxed)),
            c.last_zxid.load(Ordering::Relaxed),
            c.last_response_ms.load(Ordering::Relaxed),
            c.last_latency_ms.load(Ordering::Relaxed),
            avg as u64,
        );
    }
    s.push_str(")\n");
}

/// Java's Double.toString for the averages ZooKeeper prints: "0.0", "1.25".
fn java_double(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.1}")
    } else {
        format!("{}", (v * 1e4).round() / 1e4)
    }
}

/// ZooKeeper's "Node count" / zk_znode_count: its DataTree keeps the root under both "" and
/// "/", and counts the map's entries, so the root counts twice (a fresh server says 5).
fn node_count(ctx: &ZkCtx) -> u64 {
    ctx.store.read().and_then(|v| v.zk_node_count()).map(|n| n + 1).unwrap_or(0)
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

/// `mntr`: ZooKeeper 3.8's server gauges (ZooKeeperServer.registerMetrics and
/// dumpMonitorValues), in the order a 3.8.0 server prints them, then `zk_last_zxid`.
///
/// ZooKeeper also prints ~460 counters and summaries of its own request pipeline
/// (ServerMetrics: commit processor queues, learner counts, per-stage latencies); those stages
/// do not exist here, and printing them as zeros would only pretend, so they are left out.
/// The gauges that are always 0 here are 0 on a standalone ZooKeeper 3.8.0 on a plain port as
/// well (checked: an addauth with an unknown scheme does not count as an auth failure there,
/// only a failed X.509 handshake does; no TLS, no local sessions, no connection dropping).
fn mntr(ctx: &ZkCtx, s: &mut String) {
    let (min, avg, max) = ctx.stats.latency.get();
    let (_, _, watches) = ctx.watches.counts();
    let (last_size, min_size, max_size) = ctx.stats.response_sizes.get();
    let fds = std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0);
    let kv: Vec<(&str, String)> = vec![
        ("zk_version", ZK_VERSION.to_string()),
        ("zk_server_state", "standalone".into()),
        ("zk_ephemerals_count", ctx.store.read().and_then(|v| v.zk_ephemeral_count()).unwrap_or(0).to_string()),
        ("zk_num_alive_connections", ctx.conns.lock().unwrap_or_else(|p| p.into_inner()).len().to_string()),
        ("zk_avg_latency", java_double(avg)),
        ("zk_outstanding_requests", ctx.stats.outstanding.load(Ordering::Relaxed).to_string()),
        ("zk_znode_count", node_count(ctx).to_string()),
        // Every ZooKeeper session is a lease; etcd leases count here too.
        ("zk_global_sessions", ctx.lessor.len().to_string()),
        ("zk_non_mtls_remote_conn_count", "0".into()),
        ("zk_last_client_response_size", last_size.to_string()),
        ("zk_packets_sent", ctx.stats.sent.load(Ordering::Relaxed).to_string()),
        ("zk_packets_received", ctx.stats.received.load(Ordering::Relaxed).to_string()),
        ("zk_max_client_response_size", max_size.to_string()),
        ("zk_connection_drop_probability", "0.0".into()),
        ("zk_watch_count", watches.to_string()),
        ("zk_auth_failed_count", "0".into()),
        ("zk_min_latency", min.to_string()),
        ("zk_max_file_descriptor_count", max_fds().to_string()),
        ("zk_approximate_data_size", ctx.store.read().and_then(|v| v.zk_data_size()).unwrap_or(0).to_string()),
        ("zk_open_file_descriptor_count", fds.to_string()),
        ("zk_local_sessions", "0".into()),
        ("zk_uptime", ctx.started.elapsed().as_millis().to_string()),
        ("zk_max_latency", max.to_string()),
        ("zk_outstanding_tls_handshake", "0".into()),
        ("zk_min_client_response_size", min_size.to_string()),
        ("zk_non_mtls_local_conn_count", "0".into()),
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

/// `dump` as ZooKeeper 3.8's NIO server writes it: the session tracker's expiry sets, the
/// ephemerals of each session, and the connections' expiry sets.
///
/// ZooKeeper keeps sessions and connections in expiry queues whose deadlines are rounded up
/// to the next multiple of tickTime on its monotonic clock (ExpiryQueue.roundToNextInterval)
/// and prints each set's deadline as a wall-clock `java.util.Date`; here the deadlines are
/// the lessor's (sessions) and the last answer plus the session timeout, or ZooKeeper's 10 s
/// for a connection without a session (connections), on the same kind of clock.
fn dump(ctx: &ZkCtx, s: &mut String) {
    let tick_ms = ctx.config.tick_time_ms.max(1) as i64;
    let clock = ExpiryClock::now();
    s.push_str("SessionTracker dump:\n");
    let view = ctx.store.read().ok();
    let leases = view.as_ref().and_then(|v| v.leases().ok()).unwrap_or_default();
    let sessions = leases.iter().map(|(id, _)| {
        let left_ms = ctx.lessor.remaining(*id).map(|(_, d)| d.as_millis() as i64).unwrap_or(0);
        (clock.bucket(left_ms, tick_ms), format!("0x{id:x}"))
    });
    expiry_sets(s, "Session", &clock, sessions.collect());
    s.push_str("ephemeral nodes dump:\n");
    // ZooKeeper lists every session whose set of ephemerals exists: made at its first
    // ephemeral, kept (perhaps empty) until the session ends.
    let by_session: Vec<(i64, Vec<String>)> = leases
        .iter()
        .filter_map(|(id, _)| {
            let view = view.as_ref()?;
            let e = view.zk_ephemerals(*id, false).ok()?;
            let had_set = view.lease(*id).ok().flatten().is_some_and(|l| l.zk_set.is_some());
            (had_set || !e.is_empty()).then_some((*id, e))
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
    let conns = live_conns(ctx);
    let conns = conns.iter().map(|c| {
        let session = c.session_id.load(Ordering::Relaxed);
        // NIOServerCnxnFactory.touchCnxn: the session timeout, or sessionlessCnxnTimeout.
        let timeout_ms = match c.timeout_ms.load(Ordering::Relaxed) {
            t if t > 0 && session != 0 => t,
            _ => 10_000,
        };
        let touched_ms = c.last_response_ms.load(Ordering::Relaxed).max(c.established_ms);
        let left_ms = touched_ms + timeout_ms - clock.wall_ms;
        (clock.bucket(left_ms, tick_ms), format!("ip: /{} sessionId: 0x{session:x}", c.peer))
    });
    expiry_sets(s, "Connections", &clock, conns.collect());
}

/// A monotonic clock in ms (ZooKeeper's Time.currentElapsedTime) and the wall clock read at
/// the same moment, to print monotonic deadlines as dates (Time.elapsedTimeToDate).
struct ExpiryClock {
    mono_ms: i64,
    wall_ms: i64,
}

impl ExpiryClock {
    fn now() -> ExpiryClock {
        static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        let mono_ms = EPOCH.get_or_init(std::time::Instant::now).elapsed().as_millis() as i64;
        let wall_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        ExpiryClock { mono_ms, wall_ms }
    }

    /// The expiry set of a deadline `left_ms` from now: ExpiryQueue.roundToNextInterval.
    fn bucket(&self, left_ms: i64, tick_ms: i64) -> i64 {
        ((self.mono_ms + left_ms) / tick_ms + 1) * tick_ms
    }

    fn wall_of(&self, mono_ms: i64) -> i64 {
        self.wall_ms - self.mono_ms + mono_ms
    }
}

/// ExpiryQueue.dump: "<what> Sets (sets)/(elements):", then per set in deadline order
/// "<n> expire at <date>:" and a tab-indented line per element.
fn expiry_sets(s: &mut String, what: &str, clock: &ExpiryClock, mut elems: Vec<(i64, String)>) {
    elems.sort();
    let mut sets: Vec<(i64, Vec<String>)> = Vec::new();
    for (at, e) in elems {
        match sets.last_mut() {
            Some((t, v)) if *t == at => v.push(e),
            _ => sets.push((at, vec![e])),
        }
    }
    let total: usize = sets.iter().map(|(_, v)| v.len()).sum();
    let _ = writeln!(s, "{what} Sets ({})/({total}):", sets.len());
    for (at, v) in sets {
        let _ = writeln!(s, "{} expire at {}:", v.len(), java_date_utc(clock.wall_of(at)));
        for e in v {
            let _ = writeln!(s, "\t{e}");
        }
    }
}

/// `java.util.Date.toString()` in UTC: "Wed Dec 02 07:02:41 UTC 2026" (ZooKeeper prints its
/// JVM's default zone; Debian's is the system's, UTC on servers like these).
fn java_date_utc(epoch_ms: i64) -> String {
    let secs = epoch_ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Days to civil date (Howard Hinnant's algorithm, proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    format!(
        "{} {} {day:02} {:02}:{:02}:{:02} UTC {year}",
        WEEKDAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_dates() {
        for (ms, want) in [
            (0, "Thu Jan 01 00:00:00 UTC 1970"),
            (1_796_194_961_000, "Wed Dec 02 07:02:41 UTC 2026"),
            (1_709_251_199_000, "Thu Feb 29 23:59:59 UTC 2024"),
            (-1_000, "Wed Dec 31 23:59:59 UTC 1969"),
            (951_868_800_000, "Wed Mar 01 00:00:00 UTC 2000"),
        ] {
            assert_eq!(java_date_utc(ms), want);
        }
    }

    #[test]
    fn expiry_sets_group_by_tick_and_sort() {
        let clock = ExpiryClock { mono_ms: 10_500, wall_ms: 1_796_194_951_000 };
        let elems = vec![
            (clock.bucket(4_000, 2_000), "0xb".to_string()),
            (clock.bucket(100, 2_000), "0xa".to_string()),
            (clock.bucket(4_400, 2_000), "0xc".to_string()),
        ];
        let mut s = String::new();
        expiry_sets(&mut s, "Session", &clock, elems);
        // 10.6 s -> the set at 12 s; 14.5 and 14.9 s -> both in the set at 16 s.
        assert_eq!(
            s,
            "Session Sets (2)/(3):\n\
             1 expire at Wed Dec 02 07:02:32 UTC 2026:\n\t0xa\n\
             2 expire at Wed Dec 02 07:02:36 UTC 2026:\n\t0xb\n\t0xc\n"
        );
    }
}
