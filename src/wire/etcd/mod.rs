//! etcd v3 gRPC services: thin handlers that validate a request as etcd does, turn it into a
//! [`Command`] (writes) or a read on a [`ReadView`](crate::store::ReadView) (reads), and map
//! every failure through ONE table ([`errors`]) to etcd's gRPC status code and message.

mod convert;
mod election;
pub mod errors;
mod kv;
mod lease;
mod lock;
mod maintenance;
mod watch;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::command::{Applied, Command};
use crate::lessor::Lessor;
use crate::pb::etcdserverpb::ResponseHeader;
use crate::replication::Replica;
use crate::store::{ReadView, Store};
use crate::watch::Hub;
use errors::EtcdError;

pub use election::ElectionService;
pub use kv::KvService;
pub use lease::LeaseService;
pub use lock::LockService;
pub use maintenance::{AuthService, ClusterService, MaintenanceService};
pub use watch::WatchService;

/// The server version etcdctl and clients see (Status, /version).
pub const SERVER_VERSION: &str = "3.5.17";
pub const CLUSTER_VERSION: &str = "3.5.0";

/// etcd's largest lease TTL (lease.MaxLeaseTTL).
pub const LEASE_TTL_MAX_S: i64 = 9_000_000_000;

#[derive(Clone, Debug)]
pub struct Member {
    pub id: u64,
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct Limits {
    pub max_txn_ops: usize,
    pub max_request_bytes: usize,
    pub quota_backend_bytes: u64,
    /// etcd's minimum lease TTL: shorter grants are raised to it.
    pub lease_ttl_min_s: i64,
}

/// Everything the etcd services share.
pub struct Ctx {
    pub replica: Replica,
    pub store: Store,
    pub hub: Arc<Hub>,
    pub lessor: Arc<Lessor>,
    pub cluster_id: u64,
    pub member: Member,
    pub limits: Limits,
    lease_ids: AtomicU64,
}

impl Ctx {
    pub fn new(
        replica: Replica,
        store: Store,
        hub: Arc<Hub>,
        lessor: Arc<Lessor>,
        cluster_id: u64,
        member: Member,
        limits: Limits,
    ) -> Arc<Ctx> {
        // etcd's id generator: the member id's low 16 bits, then a millisecond timestamp and a
        // counter, so ids from different members and restarts do not collide.
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let seed = ((member.id & 0xffff) << 48) | ((now_ms & ((1 << 40) - 1)) << 8);
        Arc::new(Ctx { replica, store, hub, lessor, cluster_id, member, limits, lease_ids: AtomicU64::new(seed) })
    }

    pub fn header(&self, revision: i64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.member.id,
            revision,
            raft_term: self.replica.term(),
        }
    }

    /// A fresh positive lease id (the proposer chooses ids so apply stays deterministic).
    pub fn next_lease_id(&self) -> i64 {
        loop {
            let prefix = self.lease_ids.load(Ordering::Relaxed) & !((1u64 << 48) - 1);
            let n = self.lease_ids.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
            let id = ((n & ((1u64 << 48) - 1)) | prefix) as i64 & i64::MAX;
            if id != 0 {
                return id;
            }
        }
    }

    pub async fn propose(&self, cmd: Command) -> Result<Applied, EtcdError> {
        Ok(self.replica.propose(cmd).await?)
    }

    /// [`Ctx::propose`] for a known writer (see [`writer_of`]).
    pub async fn propose_as(&self, writer: u64, cmd: Command) -> Result<Applied, EtcdError> {
        Ok(self.replica.propose_as(writer, cmd).await?)
    }

    /// See `KvService::check_quota`: over quota, raise NOSPACE for this member and refuse.
    pub async fn check_quota(&self) -> Result<(), EtcdError> {
        if self.store.size_bytes() <= self.limits.quota_backend_bytes {
            return Ok(());
        }
        let raise =
            Command::Alarm { activate: true, member_id: self.member.id, alarm: crate::command::AlarmType::NoSpace };
        self.propose(raise).await?;
        Err(EtcdError::NoSpace)
    }

    /// A read view for a linearizable read (after a raft read barrier) or a serializable one.
    pub async fn read(&self, serializable: bool) -> Result<std::sync::Arc<ReadView>, EtcdError> {
        if !serializable {
            self.replica.read_barrier().await?;
        }
        Ok(self.store.read()?)
    }
}

/// A write's writer for group commit (`Replica::submit_as`): the client's connection, from its
/// peer address. Why the connection: a gRPC client multiplexes its callers over one, and
/// group commit only asks whether writers of the previous entry came back, for which a
/// connection that writes again counts. Never `UNKNOWN_WRITER` for a known address.
pub fn writer_of(peer: Option<std::net::SocketAddr>) -> u64 {
    let Some(peer) = peer else { return crate::replication::UNKNOWN_WRITER };
    let id = match peer.ip() {
        std::net::IpAddr::V4(ip) => (u64::from(u32::from(ip)) << 16) | u64::from(peer.port()),
        std::net::IpAddr::V6(ip) => crate::store::fnv1a64(ip.octets().into_iter().chain(peer.port().to_be_bytes())),
    };
    id.max(1)
}

#[cfg(test)]
mod writer_tests {
    use super::writer_of;

    /// Goal: each client connection is a writer of its own, never the unknown writer.
    #[test]
    fn connections_are_distinct_writers() {
        let a = writer_of(Some("127.0.0.1:40000".parse().unwrap()));
        let b = writer_of(Some("127.0.0.1:40001".parse().unwrap()));
        let c = writer_of(Some("[::1]:40000".parse().unwrap()));
        assert!(a != b && a != c && b != c);
        assert_eq!(a, writer_of(Some("127.0.0.1:40000".parse().unwrap())));
        assert_ne!(writer_of(Some("0.0.0.0:0".parse().unwrap())), crate::replication::UNKNOWN_WRITER);
        assert_eq!(writer_of(None), crate::replication::UNKNOWN_WRITER);
    }
}
