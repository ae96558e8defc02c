//! Command-line and environment configuration. Flag names are etcd's (and ETCD_* environment
//! variables work as with etcd), so a script that starts etcd starts Conclave by changing the
//! binary name. Flags that only matter to a multi-node cluster are accepted now and used by the
//! cluster work later.

use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory, Parser};

use crate::wire::zk::sasl::SaslUsers;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "conclave",
    version,
    about = "Conclave: an etcd v3 compatible server on one raft-replicated MVCC store",
    long_about = "Conclave serves etcd's v3 gRPC API (KV, Watch, Lease, Maintenance, Cluster) and its \
HTTP endpoints (/health, /version, /metrics) on one port, from one MVCC store kept in a single redb \
file and written only through raft.\n\n\
It takes etcd's flag names and ETCD_* environment variables. Flags may be written with one dash or \
two (-name or --name), as etcd accepts.\n\n\
Example (what the README's first command runs):\n  conclave --data-dir ./default.conclave\n\
then:\n  ETCDCTL_API=3 etcdctl --endpoints=127.0.0.1:2379 put foo bar"
)]
pub struct Config {
    /// Human-readable name for this member.
    #[arg(long, env = "ETCD_NAME", default_value = "default")]
    pub name: String,

    /// Directory for the store (one redb file holding data, raft log and vote).
    /// Default: "<name>.conclave" in the working directory.
    #[arg(long, env = "ETCD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// URLs to listen on for client traffic (gRPC and HTTP share the port). Comma separated.
    #[arg(long, env = "ETCD_LISTEN_CLIENT_URLS", default_value = "http://127.0.0.1:2379")]
    pub listen_client_urls: String,

    /// Client URLs advertised to clients (member list).
    #[arg(long, env = "ETCD_ADVERTISE_CLIENT_URLS", default_value = "http://127.0.0.1:2379")]
    pub advertise_client_urls: String,

    /// URLs to listen on for peer (raft) traffic. Accepted; used by the cluster mode.
    #[arg(long, env = "ETCD_LISTEN_PEER_URLS", default_value = "http://127.0.0.1:2380")]
    pub listen_peer_urls: String,

    /// Peer URLs advertised to the rest of the cluster.
    #[arg(long, env = "ETCD_INITIAL_ADVERTISE_PEER_URLS", default_value = "http://127.0.0.1:2380")]
    pub initial_advertise_peer_urls: String,

    /// Initial cluster configuration, name=peer-url pairs, comma separated.
    #[arg(long, env = "ETCD_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,

    /// "new" or "existing". Accepted; used by the cluster mode.
    #[arg(long, env = "ETCD_INITIAL_CLUSTER_STATE", default_value = "new")]
    pub initial_cluster_state: String,

    /// Initial cluster token; part of the cluster id.
    #[arg(long, env = "ETCD_INITIAL_CLUSTER_TOKEN", default_value = "etcd-cluster")]
    pub initial_cluster_token: String,

    /// Largest client request accepted, in bytes.
    #[arg(long, env = "ETCD_MAX_REQUEST_BYTES", default_value_t = 1_572_864)]
    pub max_request_bytes: u64,

    /// Most operations in one txn (per compare/success/failure list).
    #[arg(long, env = "ETCD_MAX_TXN_OPS", default_value_t = 128)]
    pub max_txn_ops: u64,

    /// Backend size above which writes fail with "database space exceeded". 0 = 2 GiB.
    #[arg(long, env = "ETCD_QUOTA_BACKEND_BYTES", default_value_t = 0)]
    pub quota_backend_bytes: u64,

    /// "periodic" (retention is a duration, e.g. 1h, 30m; a bare number means hours) or
    /// "revision" (retention is a number of revisions to keep).
    #[arg(long, env = "ETCD_AUTO_COMPACTION_MODE", default_value = "periodic")]
    pub auto_compaction_mode: String,

    /// How much history auto-compaction keeps; "0" turns it off.
    #[arg(long, env = "ETCD_AUTO_COMPACTION_RETENTION", default_value = "0")]
    pub auto_compaction_retention: String,

    /// Raft heartbeat interval in milliseconds.
    #[arg(long, env = "ETCD_HEARTBEAT_INTERVAL", default_value_t = 100)]
    pub heartbeat_interval: u64,

    /// Raft election timeout in milliseconds.
    #[arg(long, env = "ETCD_ELECTION_TIMEOUT", default_value_t = 1000)]
    pub election_timeout: u64,

    /// Raft log entries between snapshots. A Conclave snapshot only makes the store durable and
    /// lets the write-ahead log be trimmed, so it is cheap and frequent; one entry holds a batch
    /// of up to 1024 client writes.
    #[arg(long, env = "ETCD_SNAPSHOT_COUNT", default_value_t = 1000)]
    pub snapshot_count: u64,

    /// Interval of watch progress notifications (e.g. 10m, 5s).
    #[arg(long, env = "ETCD_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL", default_value = "10m")]
    pub experimental_watch_progress_notify_interval: String,

    /// Log level: debug, info, warn, error.
    #[arg(long, env = "ETCD_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Accepted for compatibility with etcd's command lines (etcd's logger choice).
    #[arg(long, env = "ETCD_LOGGER", default_value = "zap")]
    pub logger: String,

    /// Accepted for compatibility (etcd's log outputs); Conclave logs to stderr.
    #[arg(long, env = "ETCD_LOG_OUTPUTS", default_value = "default")]
    pub log_outputs: String,

    /// Group commit: the longest a forming log entry waits, in milliseconds, for the writers
    /// the previous entry just answered to send their next command (they usually do within a
    /// client round trip, and then share one fsync instead of splitting into groups that
    /// alternate between entries). Reached only when a writer does not come back; where that
    /// is the rule, the wait turns itself off. 0 turns it off.
    #[arg(long, env = "CONCLAVE_GROUP_COMMIT_LINGER_MS", default_value_t = 1)]
    pub group_commit_linger_ms: u64,

    /// Most client connections served at once; more wait in the listen backlog.
    #[arg(long, env = "CONCLAVE_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Most watchers on one watch stream.
    #[arg(long, env = "CONCLAVE_MAX_WATCHERS_PER_STREAM", default_value_t = 10_000)]
    pub max_watchers_per_stream: usize,

    /// Most watch streams on the node.
    #[arg(long, env = "CONCLAVE_MAX_WATCH_STREAMS", default_value_t = 10_000)]
    pub max_watch_streams: usize,

    /// ZooKeeper client address (host:port); empty turns the ZooKeeper protocol off. Without
    /// this flag Conclave listens on 127.0.0.1:2181 if that port is free, and otherwise serves
    /// etcd alone (with a warning), so it still starts as a plain etcd next to a ZooKeeper.
    /// zoo.cfg's `clientPort` is accepted as an alias (it then listens on 127.0.0.1).
    #[arg(long, env = "CONCLAVE_ZK_LISTEN")]
    pub zk_listen: Option<String>,

    /// zoo.cfg's clientPort: listen for ZooKeeper clients on 127.0.0.1:PORT (overrides --zk-listen).
    #[arg(long = "clientPort", env = "CONCLAVE_ZK_CLIENT_PORT")]
    pub zk_client_port: Option<u16>,

    /// ZooKeeper's tickTime in ms: session timeouts are clamped to [2, 20] ticks by default.
    #[arg(long = "zk-tick-time", alias = "tickTime", env = "CONCLAVE_ZK_TICK_TIME", default_value_t = 2000)]
    pub zk_tick_time_ms: u64,

    /// Shortest session timeout granted, in ms (default 2 × tickTime).
    #[arg(long = "zk-min-session-timeout", alias = "minSessionTimeout", env = "CONCLAVE_ZK_MIN_SESSION_TIMEOUT")]
    pub zk_min_session_timeout_ms: Option<u64>,

    /// Longest session timeout granted, in ms (default 20 × tickTime).
    #[arg(long = "zk-max-session-timeout", alias = "maxSessionTimeout", env = "CONCLAVE_ZK_MAX_SESSION_TIMEOUT")]
    pub zk_max_session_timeout_ms: Option<u64>,

    /// Four-letter words answered on the ZooKeeper port: a comma-separated list, or "*" for all
    /// (zoo.cfg's 4lw.commands.whitelist; ZooKeeper's default is "srvr" only, ours is "*").
    #[arg(
        long = "zk-4lw-whitelist",
        alias = "4lw.commands.whitelist",
        env = "CONCLAVE_ZK_4LW_WHITELIST",
        default_value = "*"
    )]
    pub zk_4lw_whitelist: String,

    /// Whether TTL znodes are allowed (ZooKeeper's zookeeper.extendedTypesEnabled; on by default here).
    #[arg(long = "zk-ttl-nodes", env = "CONCLAVE_ZK_TTL_NODES", default_value_t = true, action = clap::ArgAction::Set)]
    pub zk_ttl_nodes: bool,

    /// How often the leader reaps empty containers and expired TTL nodes, in ms
    /// (ZooKeeper's znode.container.checkIntervalMs, whose default is 60000).
    #[arg(long = "zk-container-check-interval", env = "CONCLAVE_ZK_CONTAINER_CHECK_INTERVAL", default_value_t = 1000)]
    pub zk_container_check_interval_ms: u64,

    /// ZooKeeper connections from one IP address at once (zoo.cfg's maxClientCnxns, same
    /// default); 0 = no per-address limit. One more from that address is closed unanswered.
    #[arg(
        long = "zk-max-client-cnxns",
        alias = "maxClientCnxns",
        env = "CONCLAVE_ZK_MAX_CLIENT_CNXNS",
        default_value_t = 60
    )]
    pub zk_max_client_cnxns: usize,

    /// ZooKeeper connections at once from all addresses together; beyond it, new connections
    /// wait in the listen backlog.
    #[arg(long = "zk-max-connections", env = "CONCLAVE_ZK_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub zk_max_connections: usize,

    /// Users ZooKeeper clients may SASL-authenticate as (DIGEST-MD5), `user:password,user2:password2`:
    /// what a JAAS DigestLoginModule's `user_<name>="<password>"` lines give ZooKeeper. An
    /// authenticated connection gains the ACL identity sasl:<user>. Unset: SASL is not configured.
    #[arg(long = "zk-sasl-users", env = "CONCLAVE_ZK_SASL_USERS", hide_env_values = true, value_parser = SaslUsersParser)]
    pub zk_sasl_users: Option<SaslUsers>,

    /// A Kerberos keytab: ZooKeeper clients may SASL-authenticate with GSSAPI against any
    /// service principal in it (e.g. zookeeper/host@REALM), what a JAAS Krb5LoginModule with
    /// useKeyTab gives ZooKeeper. An authenticated connection gains the ACL identity
    /// sasl:<client principal>. Uses the system's libgssapi_krb5.so.2 (Debian:
    /// libgssapi-krb5-2) and its krb5.conf (KRB5_CONFIG). Not together with --zk-sasl-users.
    #[arg(long = "zk-sasl-keytab", env = "CONCLAVE_ZK_SASL_KEYTAB")]
    pub zk_sasl_keytab: Option<std::path::PathBuf>,
}

/// Parses --zk-sasl-users; a malformed list is refused without echoing it (it holds passwords).
#[derive(Clone)]
struct SaslUsersParser;

impl clap::builder::TypedValueParser for SaslUsersParser {
    type Value = SaslUsers;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<SaslUsers, clap::Error> {
        let bad = |why: String| clap::Error::raw(clap::error::ErrorKind::ValueValidation, why).with_cmd(cmd);
        let text = value.to_str().ok_or_else(|| bad("--zk-sasl-users is not UTF-8\n".to_string()))?;
        SaslUsers::parse(text).map_err(|e| bad(format!("invalid --zk-sasl-users: {e}\n")))
    }
}

impl Config {
    /// Parses etcd-style arguments: `-name x` is read as `--name x`, as Go's flag package allows.
    pub fn parse_etcd_style<I: IntoIterator<Item = String>>(args: I) -> Config {
        let longs: Vec<String> =
            Config::command().get_arguments().filter_map(|a| a.get_long().map(|l| l.to_string())).collect();
        let args = args.into_iter().enumerate().map(|(i, a)| {
            if i > 0 && a.starts_with('-') && !a.starts_with("--") && a.len() > 2 {
                let name = a[1..].split('=').next().unwrap_or("");
                if longs.iter().any(|l| l == name) {
                    return format!("-{a}");
                }
            }
            a
        });
        Config::parse_from(args)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(|| PathBuf::from(format!("{}.conclave", self.name)))
    }

    pub fn quota_bytes(&self) -> u64 {
        if self.quota_backend_bytes == 0 {
            2 << 30
        } else {
            self.quota_backend_bytes
        }
    }

    /// The ZooKeeper listen address, or None when the protocol is off, and whether it was asked
    /// for explicitly (an explicit address that cannot be bound is an error; the default one
    /// is skipped with a warning).
    pub fn zk_addr(&self) -> Option<(String, bool)> {
        match (self.zk_client_port, &self.zk_listen) {
            (Some(p), _) => Some((format!("127.0.0.1:{p}"), true)),
            (None, Some(a)) if a.is_empty() => None,
            (None, Some(a)) => Some((a.clone(), true)),
            (None, None) => Some((DEFAULT_ZK_LISTEN.to_string(), false)),
        }
    }

    pub fn progress_notify_interval(&self) -> Duration {
        parse_duration(&self.experimental_watch_progress_notify_interval).unwrap_or(Duration::from_secs(600))
    }
}

/// Where ZooKeeper clients connect unless told otherwise: ZooKeeper's port on loopback.
pub const DEFAULT_ZK_LISTEN: &str = "127.0.0.1:2181";

/// Splits a comma-separated URL list.
pub fn split_urls(s: &str) -> Vec<String> {
    s.split(',').map(|u| u.trim().to_string()).filter(|u| !u.is_empty()).collect()
}

/// "http://127.0.0.1:2379" -> "127.0.0.1:2379" ("localhost" becomes 127.0.0.1).
pub fn url_host_port(url: &str) -> Result<String, String> {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let hostport = rest.split('/').next().unwrap_or(rest);
    if hostport.is_empty() {
        return Err(format!("bad URL {url:?}"));
    }
    let hostport = hostport.replace("localhost", "127.0.0.1");
    if hostport.contains(':') {
        Ok(hostport)
    } else {
        Ok(format!("{hostport}:80"))
    }
}

/// Go-style durations: "1h", "30m", "5s", "100ms", "1h30m"; a bare number is taken in the
/// unit `bare_unit_s` (etcd reads a bare periodic retention as hours).
pub fn parse_duration_or_hours(s: &str) -> Option<Duration> {
    if let Ok(h) = s.parse::<f64>() {
        return Some(Duration::from_secs_f64(h * 3600.0));
    }
    parse_duration(s)
}

pub fn parse_duration(s: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_alphabetic() {
                unit.push(n);
                chars.next();
            } else {
                break;
            }
        }
        let v: f64 = num.parse().ok()?;
        num.clear();
        let secs = match unit.as_str() {
            "h" => v * 3600.0,
            "m" => v * 60.0,
            "s" => v,
            "ms" => v / 1000.0,
            "us" | "µs" => v / 1e6,
            "ns" => v / 1e9,
            _ => return None,
        };
        total += Duration::from_secs_f64(secs);
        any = true;
    }
    if !num.is_empty() || !any {
        return None;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration_or_hours("2"), Some(Duration::from_secs(7200)));
    }

    #[test]
    fn single_dash_flags_are_etcd_style() {
        let c = Config::parse_etcd_style(["conclave", "-name", "n1", "--max-txn-ops=7"].map(String::from));
        assert_eq!(c.name, "n1");
        assert_eq!(c.max_txn_ops, 7);
        assert_eq!(c.data_dir(), PathBuf::from("n1.conclave"));
    }

    #[test]
    fn zk_sasl_users() {
        let c = Config::parse_etcd_style(["conclave", "--zk-sasl-users", "super:s,jaasuser:j:p"].map(String::from));
        assert_eq!(c.zk_sasl_users, Some(SaslUsers::from_pairs([("super", "s"), ("jaasuser", "j:p")])));
        let err = Config::try_parse_from(["conclave", "--zk-sasl-users", "u:secret,nocolon"]).unwrap_err().to_string();
        assert!(err.contains("not user:password") && !err.contains("secret"), "{err}");
    }

    /// One SASL mechanism, as one JAAS Server section: both flags are refused at start,
    /// before anything is opened, and a missing keytab is named.
    #[tokio::test]
    async fn zk_sasl_keytab_is_one_mechanism_and_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let c = Config::parse_etcd_style(
            ["conclave", "--zk-sasl-keytab", "/x/server.keytab", "--zk-sasl-users", "u:p", "--data-dir"]
                .map(String::from)
                .into_iter()
                .chain([data.display().to_string()]),
        );
        assert_eq!(c.zk_sasl_keytab.as_deref(), Some(std::path::Path::new("/x/server.keytab")));
        let err = crate::node::start(c).await.err().unwrap();
        assert!(err.contains("choose one"), "{err}");
        let c = Config::parse_etcd_style(
            ["conclave", "--zk-sasl-keytab", "/nonexistent/server.keytab", "--data-dir"]
                .map(String::from)
                .into_iter()
                .chain([data.display().to_string()]),
        );
        let err = crate::node::start(c).await.err().unwrap();
        assert!(err.contains("/nonexistent/server.keytab: no such file"), "{err}");
        assert!(!data.exists(), "nothing is created before the flags are checked");
    }

    #[test]
    fn urls() {
        assert_eq!(url_host_port("http://localhost:2379").unwrap(), "127.0.0.1:2379");
        assert_eq!(split_urls("http://a:1, http://b:2"), vec!["http://a:1", "http://b:2"]);
    }
}
