//! Wiring: the store, raft, the watch hub, the lessor, and the listeners. The only module that
//! sees every other one.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tonic::service::Routes;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::command::Command;
use crate::config::{self, Config};
use crate::lessor::Lessor;
use crate::pb::etcdserverpb as pb;
use crate::replication::{ApplySink, Linger, Replica, ReplicaConfig};
use crate::store::{Effects, Store, StoreConfig};
use crate::watch::{Hub, HubConfig};
use crate::wire::etcd::{self as etcd_wire, Ctx, Limits, Member};
use crate::wire::h2_authority::AuthorityFix;
use crate::wire::http::{self, HttpState};
use crate::wire::zk::{ZkConfig, ZkCtx};

/// gRPC framing on top of the request limit, as etcd allows (grpcOverheadBytes).
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;
/// How long a shutdown waits for open client requests and streams.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// How often the leader looks for expired leases.
const LEASE_CHECK_INTERVAL: Duration = Duration::from_millis(250);
/// Expired leases revoked per check at most; the rest wait for the next check.
const LEASE_REVOKES_PER_CHECK_MAX: usize = 1000;

/// Feeds apply effects to the watch hub and the lease timers.
struct Sink {
    hub: OnceLock<Arc<Hub>>,
    lessor: Arc<Lessor>,
}

impl ApplySink for Sink {
    fn applied(&self, effects: &Effects) {
        for (id, ttl) in &effects.leases_granted {
            self.lessor.granted(*id, *ttl);
        }
        for id in &effects.leases_revoked {
            self.lessor.revoked(*id);
        }
        metrics::counter!("etcd_mvcc_events_total").increment(effects.events.len() as u64);
        if let Some(hub) = self.hub.get() {
            hub.publish(effects.revision, &effects.events, effects.prev_values, &effects.zk_acls);
        }
    }
}

/// A running node. Dropping it does not stop it; call [`NodeHandle::shutdown`].
pub struct NodeHandle {
    pub client_addr: SocketAddr,
    /// Where ZooKeeper clients connect, if the protocol is on.
    pub zk_addr: Option<SocketAddr>,
    pub replica: Replica,
    shutdown: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
}

impl NodeHandle {
    /// Stops serving: connections get [`SHUTDOWN_GRACE`] to finish (a watch stream never
    /// finishes by itself), then the server is dropped and raft stops.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut self.server).await.is_err() {
            self.server.abort();
        }
        self.replica.shutdown().await;
    }

    /// Resolves when the server stops by itself (it should not).
    pub async fn wait(&mut self) {
        let _ = (&mut self.server).await;
    }
}

/// FNV-1a over the parts, each followed by a 0 byte (so ("ab","c") and ("a","bc") differ).
fn fnv64(parts: &[&str]) -> u64 {
    crate::store::fnv1a64(parts.iter().flat_map(|p| p.bytes().chain(std::iter::once(0))))
}

fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // In tests several nodes share a process; only the first install wins, which is fine.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

fn resident_memory_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * page.max(0) as u64
}

/// Starts a node from `config` and returns once it serves clients.
pub async fn start(config: Config) -> Result<NodeHandle, String> {
    let t0 = std::time::Instant::now();
    if let Some(keytab) = &config.zk_sasl_keytab {
        // ZooKeeper picks ONE SASL mechanism from its JAAS Server section; so do we.
        if config.zk_sasl_users.is_some() {
            return Err("--zk-sasl-keytab (GSSAPI) and --zk-sasl-users (DIGEST-MD5): choose one, as a JAAS Server section configures one login module for ZooKeeper".into());
        }
        crate::wire::zk::gssapi::init(keytab)?;
    }
    let data_dir = config.data_dir();
    std::fs::create_dir_all(&data_dir).map_err(|e| format!("creating data dir {}: {e}", data_dir.display()))?;
    let store = Store::open(&data_dir.join("conclave.redb"), StoreConfig::default()).map_err(|e| e.to_string())?;

    let client_urls = config::split_urls(&config.listen_client_urls);
    let advertise_client = config::split_urls(&config.advertise_client_urls);
    let peer_urls = config::split_urls(&config.initial_advertise_peer_urls);
    let initial_cluster =
        config.initial_cluster.clone().unwrap_or_else(|| format!("{}={}", config.name, peer_urls.join(",")));
    let member_id = fnv64(&[&peer_urls.join(","), &config.initial_cluster_token]);
    let cluster_id = fnv64(&[&initial_cluster, &config.initial_cluster_token]);

    let lessor = Arc::new(Lessor::new());
    let sink = Arc::new(Sink { hub: OnceLock::new(), lessor: lessor.clone() });
    let replica_config = ReplicaConfig {
        node_id: 1,
        peer_addr: peer_urls.first().cloned().unwrap_or_default(),
        data_dir: data_dir.clone(),
        heartbeat_interval_ms: config.heartbeat_interval,
        election_timeout_ms: config.election_timeout,
        snapshot_logs_since_last: config.snapshot_count.max(1),
        linger: Linger { max: Duration::from_millis(config.group_commit_linger_ms) },
        ..Default::default()
    };
    let replica = Replica::start(replica_config, store.clone(), sink.clone()).await.map_err(|e| e.to_string())?;
    if !replica.wait_leader(Duration::from_millis(config.election_timeout * 5)).await {
        return Err("raft did not elect this node leader".into());
    }
    // Every entry in the log is applied now; the hub starts at the store's revision.
    let view = store.read().map_err(|e| e.to_string())?;
    let hub = Hub::new(
        store.clone(),
        view.revision,
        HubConfig {
            watchers_per_stream_max: config.max_watchers_per_stream,
            streams_max: config.max_watch_streams,
            progress_notify_interval: config.progress_notify_interval(),
            ..Default::default()
        },
    );
    let _ = sink.hub.set(hub.clone());
    hub.spawn_tasks();
    // After a restart every lease gets a full TTL again (etcd does the same on a new leader).
    lessor.reset_all(&view.leases().map_err(|e| e.to_string())?);
    drop(view);

    let election_ticks = (config.election_timeout / config.heartbeat_interval.max(1)).max(1);
    let lease_ttl_min_ms = (3 * election_ticks / 2) * config.heartbeat_interval;
    let limits = Limits {
        max_txn_ops: config.max_txn_ops as usize,
        max_request_bytes: config.max_request_bytes as usize,
        quota_backend_bytes: config.quota_bytes(),
        lease_ttl_min_s: lease_ttl_min_ms.div_ceil(1000) as i64,
    };
    let member = Member {
        id: member_id,
        name: config.name.clone(),
        peer_urls: peer_urls.clone(),
        client_urls: advertise_client,
    };
    let ctx = Ctx::new(replica.clone(), store.clone(), hub.clone(), lessor.clone(), cluster_id, member, limits);

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    spawn_lease_expiry(ctx.clone(), shutdown_rx.clone());
    spawn_auto_compaction(&config, ctx.clone(), shutdown_rx.clone());

    let addr = config::url_host_port(client_urls.first().ok_or("no --listen-client-urls")?)?;
    let listener = TcpListener::bind(&addr).await.map_err(|e| format!("listening on {addr}: {e}"))?;
    let client_addr = listener.local_addr().map_err(|e| e.to_string())?;

    let zk_listener = match config.zk_addr() {
        None => None,
        Some((addr, explicit)) => match TcpListener::bind(&addr).await {
            Ok(l) => Some(l),
            Err(e) if !explicit => {
                tracing::warn!(
                    "not serving ZooKeeper clients: the default address {addr} is unavailable ({e}); \
                     set --zk-listen to choose one"
                );
                None
            }
            Err(e) => return Err(format!("listening for ZooKeeper clients on {addr}: {e}")),
        },
    };
    let zk_addr = match zk_listener {
        None => None,
        Some(listener) => {
            let local = listener.local_addr().map_err(|e| e.to_string())?;
            let zk_config = zk_config(&config, &data_dir, local.port(), member_id);
            let zk = ZkCtx::new(replica.clone(), store.clone(), hub.clone(), lessor.clone(), zk_config, cluster_id);
            tokio::spawn(crate::wire::zk::serve(zk, listener, shutdown_rx.clone()));
            Some(local)
        }
    };

    let routes = client_routes(ctx.clone(), config.max_request_bytes as usize + GRPC_OVERHEAD_BYTES);
    let incoming = limited_incoming(listener, config.max_connections);
    let mut stop = shutdown_rx.clone();
    let server = tokio::spawn(async move {
        let result = tonic::transport::Server::builder()
            .accept_http1(true)
            .tcp_nodelay(true)
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
        if let Err(e) = result {
            tracing::error!("client server stopped: {e}");
        }
    });
    tracing::info!(
        "serving etcd v3 on {client_addr}{} (data in {}, revision {}, ready in {:?})",
        zk_addr.map(|a| format!(" and ZooKeeper on {a}")).unwrap_or_default(),
        data_dir.display(),
        hub.revision(),
        t0.elapsed()
    );
    Ok(NodeHandle { client_addr, zk_addr, replica, shutdown: shutdown_tx, server })
}

fn zk_config(config: &Config, data_dir: &std::path::Path, port: u16, member_id: u64) -> ZkConfig {
    let tick = config.zk_tick_time_ms.max(1);
    let min = config.zk_min_session_timeout_ms.unwrap_or(2 * tick);
    let max = config.zk_max_session_timeout_ms.unwrap_or(20 * tick).max(min);
    let words = config.zk_4lw_whitelist.trim();
    ZkConfig {
        tick_time_ms: tick,
        min_session_timeout_ms: min,
        max_session_timeout_ms: max,
        four_letter_words: if words == "*" {
            None
        } else {
            Some(words.split(',').map(|w| w.trim().to_string()).filter(|w| !w.is_empty()).collect())
        },
        ttl_enabled: config.zk_ttl_nodes,
        max_client_cnxns: config.zk_max_client_cnxns,
        connections_max: config.zk_max_connections,
        container_check_interval: Duration::from_millis(config.zk_container_check_interval_ms.max(10)),
        data_dir: std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf()).display().to_string(),
        client_port: port,
        sasl_users: config.zk_sasl_users.clone().unwrap_or_default(),
        sasl_gssapi: config.zk_sasl_keytab.is_some(),
        quota_backend_bytes: config.quota_bytes(),
        member_id,
        ..Default::default()
    }
}

fn client_routes(ctx: Arc<Ctx>, max_decode: usize) -> Routes {
    use pb::auth_server::AuthServer;
    use pb::cluster_server::ClusterServer;
    use pb::kv_server::KvServer;
    use pb::lease_server::LeaseServer;
    use pb::maintenance_server::MaintenanceServer;
    use pb::watch_server::WatchServer;

    let prom = prometheus();
    let hctx = ctx.clone();
    let mctx = ctx.clone();
    let state = HttpState {
        health: Arc::new(
            move || {
                if hctx.replica.status().leader.is_some() {
                    None
                } else {
                    Some("RAFT NO LEADER".into())
                }
            },
        ),
        metrics: Arc::new(move || {
            let st = mctx.replica.status();
            metrics::gauge!("etcd_server_has_leader").set(if st.leader.is_some() { 1.0 } else { 0.0 });
            metrics::gauge!("etcd_server_is_leader").set(if st.is_leader { 1.0 } else { 0.0 });
            metrics::gauge!("etcd_mvcc_db_total_size_in_bytes").set(mctx.store.size_bytes() as f64);
            metrics::gauge!("etcd_debugging_mvcc_current_revision").set(mctx.hub.revision() as f64);
            metrics::gauge!("etcd_debugging_mvcc_watcher_total").set(mctx.hub.watcher_count() as f64);
            metrics::gauge!("etcd_debugging_lease_total").set(mctx.lessor.len() as f64);
            if let Ok(view) = mctx.store.read() {
                metrics::gauge!("etcd_debugging_mvcc_keys_total").set(view.key_count().unwrap_or(0) as f64);
                metrics::gauge!("etcd_debugging_mvcc_compact_revision").set(view.compact_revision.max(0) as f64);
            }
            metrics::gauge!("etcd_server_proposals_applied_total").set(st.applied_index as f64);
            metrics::gauge!("etcd_server_proposals_committed_total").set(st.applied_index as f64);
            metrics::gauge!("process_resident_memory_bytes").set(resident_memory_bytes() as f64);
            prom.render()
        }),
        server_version: etcd_wire::SERVER_VERSION,
        cluster_version: etcd_wire::CLUSTER_VERSION,
    };
    // gRPC health (grpc.health.v1), as etcd serves it: SERVING for the whole server.
    let (reporter, health) = tonic_health::server::health_reporter();
    tokio::spawn(async move { reporter.set_service_status("", tonic_health::ServingStatus::Serving).await });
    Routes::from(http::router(state))
        .add_service(health)
        .add_service(KvServer::new(etcd_wire::KvService::new(ctx.clone())).max_decoding_message_size(max_decode))
        .add_service(WatchServer::new(etcd_wire::WatchService::new(ctx.clone())).max_decoding_message_size(max_decode))
        .add_service(LeaseServer::new(etcd_wire::LeaseService::new(ctx.clone())).max_decoding_message_size(max_decode))
        .add_service(
            ClusterServer::new(etcd_wire::ClusterService::new(ctx.clone())).max_decoding_message_size(max_decode),
        )
        .add_service(
            MaintenanceServer::new(etcd_wire::MaintenanceService::new(ctx.clone()))
                .max_decoding_message_size(max_decode),
        )
        .add_service(AuthServer::new(etcd_wire::AuthService::new(ctx.clone())).max_decoding_message_size(max_decode))
        .add_service(
            crate::pb::v3lockpb::lock_server::LockServer::new(etcd_wire::LockService::new(ctx.clone()))
                .max_decoding_message_size(max_decode),
        )
        .add_service(
            crate::pb::v3electionpb::election_server::ElectionServer::new(etcd_wire::ElectionService::new(ctx))
                .max_decoding_message_size(max_decode),
        )
}

/// The leader's lease expiry loop: revoke through raft whatever the timers say has expired.
fn spawn_lease_expiry(ctx: Arc<Ctx>, mut stop: watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(LEASE_CHECK_INTERVAL);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            if !ctx.replica.status().is_leader {
                continue;
            }
            for id in ctx.lessor.take_expired(LEASE_REVOKES_PER_CHECK_MAX) {
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    match ctx.replica.propose(Command::LeaseRevoke { id }).await {
                        Ok(_) => {}
                        Err(e) => tracing::warn!("revoking expired lease {id:x}: {e}"),
                    }
                });
            }
        }
    });
}

/// etcd's auto compaction. periodic: keep `retention` worth of history, compacting to the
/// revision seen `retention` ago, sampled every retention/10 (at least every second);
/// revision: keep the newest `retention` revisions, checked every 5 minutes (as etcd).
fn spawn_auto_compaction(config: &Config, ctx: Arc<Ctx>, mut stop: watch::Receiver<bool>) {
    let retention = config.auto_compaction_retention.clone();
    if retention == "0" || retention.is_empty() {
        return;
    }
    let mode = config.auto_compaction_mode.clone();
    tokio::spawn(async move {
        let compact = |rev: i64| {
            let ctx = ctx.clone();
            async move {
                if rev <= 0 {
                    return;
                }
                match ctx.replica.propose(Command::Compact { revision: rev }).await {
                    Ok(a) => {
                        if a.result.is_ok() {
                            tracing::info!("auto-compacted at revision {rev}");
                        }
                    }
                    Err(e) => tracing::warn!("auto-compaction at {rev}: {e}"),
                }
            }
        };
        if mode == "revision" {
            let Ok(keep) = retention.parse::<i64>() else {
                tracing::error!("bad --auto-compaction-retention {retention:?} for revision mode");
                return;
            };
            let mut tick = tokio::time::interval(Duration::from_secs(300));
            loop {
                tokio::select! { _ = tick.tick() => {}, _ = stop.changed() => return }
                compact(ctx.hub.revision() - keep).await;
            }
        }
        let Some(keep) = config::parse_duration_or_hours(&retention) else {
            tracing::error!("bad --auto-compaction-retention {retention:?}");
            return;
        };
        let step = (keep / 10).max(Duration::from_secs(1));
        let mut samples: std::collections::VecDeque<(tokio::time::Instant, i64)> = Default::default();
        let mut tick = tokio::time::interval(step);
        loop {
            tokio::select! { _ = tick.tick() => {}, _ = stop.changed() => return }
            let now = tokio::time::Instant::now();
            samples.push_back((now, ctx.hub.revision()));
            let mut target = None;
            while let Some(&(t, rev)) = samples.front() {
                if now.duration_since(t) >= keep {
                    target = Some(rev);
                    samples.pop_front();
                } else {
                    break;
                }
            }
            if let Some(rev) = target {
                compact(rev).await;
            }
        }
    });
}

/// A client connection holding one of the node's connection slots.
pub struct LimitedConn {
    inner: TcpStream,
    _slot: OwnedSemaphorePermit,
    /// Whether the last write yielded first (see [`LimitedConn::yield_before_write`]).
    write_yielded: bool,
    /// Inbound bytes on their way to h2: a malformed `:authority` is fixed there (see
    /// [`crate::wire::h2_authority`]).
    fix: AuthorityFix,
    /// Socket reads land here before [`AuthorityFix::push`] (allocated on the first read that
    /// is not passed straight through).
    scratch: Vec<u8>,
    /// The peer closed its side.
    eof: bool,
}

impl LimitedConn {
    /// Every other write yields to the runtime once before it reaches the socket, so the
    /// responses of the other requests that one apply answered join it in one `writev`.
    ///
    /// Why: an apply answers all of its entry's writers at once, and each answer makes a gRPC
    /// handler finish and wake its connection's HTTP/2 task. tokio runs a task woken that way
    /// next (its LIFO slot), so the connection task wrote each response as soon as its handler
    /// finished: ~0.7 `writev` per put at 100 clients on 10 connections. A task that wakes
    /// itself and returns Pending goes to the back of the run queue instead, behind the other
    /// handlers; when it runs again, hyper has their responses too. A lone request pays one
    /// extra poll of its connection task, no system call.
    fn yield_before_write(&mut self, cx: &mut Context<'_>) -> bool {
        self.write_yielded = !self.write_yielded;
        if self.write_yielded {
            cx.waker().wake_by_ref();
        }
        self.write_yielded
    }
}

impl Connected for LimitedConn {
    type ConnectInfo = TcpConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// Bytes read from a client socket at once before they are handed on.
const CONN_READ_BYTES: usize = 16 * 1024;

impl AsyncRead for LimitedConn {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.fix.passes_through() {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            let ready = this.fix.ready();
            if !ready.is_empty() {
                let n = ready.len().min(buf.remaining());
                buf.put_slice(&ready[..n]);
                this.fix.consume(n);
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            if this.scratch.is_empty() {
                this.scratch = vec![0; CONN_READ_BYTES];
            }
            let mut into = ReadBuf::new(&mut this.scratch);
            match Pin::new(&mut this.inner).poll_read(cx, &mut into) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) if into.filled().is_empty() => {
                    this.eof = true;
                    this.fix.finish();
                }
                Poll::Ready(Ok(())) => this.fix.push(into.filled()),
            }
        }
    }
}

impl AsyncWrite for LimitedConn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        if self.yield_before_write(cx) {
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        if self.yield_before_write(cx) {
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Accepts connections only while fewer than `max` are open: the rest wait in the kernel's
/// listen backlog, so a connection flood cannot exhaust memory or file descriptors.
fn limited_incoming(
    listener: TcpListener,
    max: usize,
) -> impl futures_util::Stream<Item = Result<LimitedConn, std::io::Error>> + Send + 'static {
    let slots = Arc::new(Semaphore::new(max.max(1)));
    futures_util::stream::unfold((listener, slots), |(listener, slots)| async move {
        let slot = slots.clone().acquire_owned().await.ok()?;
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    return Some((
                        Ok(LimitedConn {
                            inner: stream,
                            _slot: slot,
                            write_yielded: false,
                            fix: AuthorityFix::default(),
                            scratch: Vec::new(),
                            eof: false,
                        }),
                        (listener, slots),
                    ));
                }
                Err(e) => {
                    // Out of descriptors or a reset before accept: keep serving.
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    })
}
