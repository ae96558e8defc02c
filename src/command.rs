//! Protocol-neutral commands: the ONLY payload of the raft log.
//!
//! Every mutation from any client protocol is turned into a [`Command`] by its wire layer,
//! proposed through raft, and applied deterministically by [`crate::store`]. A command carries
//! everything apply needs (lease IDs chosen by the proposer, TTLs), so apply never reads a
//! clock or a random source: replaying the same log on any replica gives the same store.
//!
//! The types mirror etcd's request semantics (range ends, compare targets) because those are a
//! superset of what the ZooKeeper layer needs; they are NOT the protobuf messages, so the wire
//! format can evolve without touching the log format.

use serde::{Deserialize, Serialize};

/// The log format version, stored in every log entry so an upgrade can read old logs.
pub const COMMAND_FORMAT_VERSION: u16 = 1;

/// A batch of commands proposed as ONE raft log entry. Batching is how concurrent proposals share
/// a single fsync (group commit): the proposer collects what arrived while the previous entry was
/// in flight. Each command in the batch still gets its own revision and its own result.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Batch {
    pub version: u16,
    /// Shared with the store's run of the batch ahead of its commit (`Store::prepare`)
    /// instead of copied; serde writes an `Arc<T>` exactly as `T`, so the log format is the
    /// same as with a plain Vec.
    pub commands: std::sync::Arc<Vec<Command>>,
    /// Who to tell when this entry fails to commit: set by the proposer for the replication
    /// layer, opaque here; never written to the log, never compared.
    #[serde(skip)]
    pub hook: ProposerHook,
}

/// An opaque handle the replication layer attaches to a [`Batch`] it proposes (its proposers'
/// reply channels), so that raft's response reaches them without a task waiting for it.
#[derive(Clone, Default)]
pub struct ProposerHook(pub Option<std::sync::Arc<dyn std::any::Any + Send + Sync>>);

impl std::fmt::Debug for ProposerHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "ProposerHook(set)" } else { "ProposerHook(none)" })
    }
}

impl PartialEq for ProposerHook {
    /// Not part of the entry's value: two batches of the same commands are equal.
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum Command {
    Put(PutOp),
    DeleteRange(DeleteOp),
    Txn(TxnOp),
    /// Remove history below `revision` (etcd Compact).
    Compact {
        revision: i64,
    },
    /// Create a lease. `id` is chosen by the proposer (never 0 here), `ttl_s` already clamped.
    LeaseGrant {
        id: i64,
        ttl_s: i64,
    },
    /// Delete a lease and every key attached to it, in one revision.
    LeaseRevoke {
        id: i64,
    },
    /// Raise or clear an alarm (etcd's AlarmRequest ACTIVATE / DEACTIVATE).
    Alarm {
        activate: bool,
        member_id: u64,
        alarm: AlarmType,
    },
    /// ZooKeeper writes (one op, or a multi): see [`ZkTxn`].
    Zk(ZkTxn),
    /// Open a ZooKeeper session: the lease [`Command::LeaseGrant`] would create (same answer),
    /// except that NOSPACE does not refuse it. Why: a ZooKeeper client can do nothing without a
    /// session, not even read or delete what would free the space; an etcd client reads and
    /// deletes without a lease. Sessions stay bounded by the server's session limit.
    /// (Last, so the commands of older logs keep their encoding.)
    ZkSession {
        id: i64,
        ttl_s: i64,
    },
}

// ---------------------------------------------------------------------------------------------
// ZooKeeper writes

/// One ZooKeeper write request: a single op, or the ops of a `multi`, applied atomically in ONE
/// revision (the zxid). Everything apply needs travels inside: the proposer's wall clock (for
/// ctime/mtime and TTL expiry checks), the session (owner of ephemerals) and the identities the
/// session authenticated as (for ACL checks), so apply never reads a clock or a connection.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ZkTxn {
    pub ops: Vec<ZkOp>,
    pub now_ms: i64,
    pub session_id: i64,
    /// (scheme, id) pairs: "ip" and "digest" identities, as ZooKeeper's authInfo.
    pub auth: Vec<(String, String)>,
    /// Whether TTL nodes are allowed (ZooKeeper's extended types).
    pub ttl_enabled: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum ZkOp {
    /// `data` None is ZooKeeper's null data (reads return a null buffer), apart from empty.
    Create {
        path: String,
        data: Option<Vec<u8>>,
        acl: Vec<ZkAcl>,
        mode: CreateMode,
        ttl_ms: i64,
    },
    Delete {
        path: String,
        version: i32,
    },
    SetData {
        path: String,
        data: Option<Vec<u8>>,
        version: i32,
    },
    SetAcl {
        path: String,
        acl: Vec<ZkAcl>,
        version: i32,
    },
    Check {
        path: String,
        version: i32,
    },
    /// Proposed by the leader's reaper: delete `path` if it is still an empty container, or a
    /// childless TTL node not modified for its TTL at `now_ms` (ZooKeeper's deleteContainer).
    Reap {
        path: String,
    },
    /// An op the server refused before looking at the tree (a create's unknown mode flags:
    /// ZooKeeper's CreateMode.fromFlag): it fails with `code` in its place in a multi, so the
    /// multi reports its first failing op in order, as ZooKeeper does (an earlier op's failure
    /// comes first). Last in the enum: older log entries decode unchanged.
    Fail {
        code: i32,
    },
}

/// A znode path and the ACL that decides who hears its watch events at `revision`: only
/// sessions that may READ it (see `store::Effects::zk_acls`). One publish can hold several
/// changes of the same node (a log entry's commands, a multi's ops): each event is gated by
/// the ACL as of its own change, as ZooKeeper checks it while applying that change.
///
/// `change: Some(i)` gates the events of the `i`th change of `path` in `revision` (counted
/// from 0 over that revision's changes of the path): one multi may delete a node, create it
/// again with another ACL and delete it once more, and ZooKeeper checks each op's event
/// against the node that op saw. `None` gates the events about the node's children
/// (NodeChildrenChanged), by the node's ACL.
#[derive(Clone, Debug, PartialEq)]
pub struct ReadGate {
    pub path: String,
    pub acl: std::sync::Arc<Vec<ZkAcl>>,
    pub revision: i64,
    pub change: Option<u32>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ZkAcl {
    pub perms: i32,
    pub scheme: String,
    pub id: String,
}

/// ZooKeeper's CreateMode, by its wire flag value.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum CreateMode {
    Persistent,
    Ephemeral,
    PersistentSequential,
    EphemeralSequential,
    Container,
    PersistentWithTtl,
    PersistentSequentialWithTtl,
    /// No flag of its own: what ZooKeeper's createContainer makes of sequential flags (a
    /// container named with the sequence suffix). Last in the enum: older log entries decode
    /// unchanged.
    ContainerSequential,
}

impl CreateMode {
    pub fn from_flag(flag: i32) -> Option<CreateMode> {
        Some(match flag {
            0 => CreateMode::Persistent,
            1 => CreateMode::Ephemeral,
            2 => CreateMode::PersistentSequential,
            3 => CreateMode::EphemeralSequential,
            4 => CreateMode::Container,
            5 => CreateMode::PersistentWithTtl,
            6 => CreateMode::PersistentSequentialWithTtl,
            _ => return None,
        })
    }
    pub fn is_sequential(self) -> bool {
        matches!(
            self,
            CreateMode::PersistentSequential
                | CreateMode::EphemeralSequential
                | CreateMode::PersistentSequentialWithTtl
                | CreateMode::ContainerSequential
        )
    }
    pub fn is_ephemeral(self) -> bool {
        matches!(self, CreateMode::Ephemeral | CreateMode::EphemeralSequential)
    }
    pub fn is_ttl(self) -> bool {
        matches!(self, CreateMode::PersistentWithTtl | CreateMode::PersistentSequentialWithTtl)
    }
}

/// A znode's Stat, as ZooKeeper's client sees it (zxids are store revisions).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ZkStat {
    pub czxid: i64,
    pub mzxid: i64,
    pub ctime: i64,
    pub mtime: i64,
    pub version: i32,
    pub cversion: i32,
    pub aversion: i32,
    pub ephemeral_owner: i64,
    pub data_length: i32,
    pub num_children: i32,
    pub pzxid: i64,
}

/// ZooKeeper error codes that apply can produce (KeeperException.Code values).
pub mod zk_err {
    pub const OK: i32 = 0;
    pub const SYSTEM_ERROR: i32 = -1;
    pub const RUNTIME_INCONSISTENCY: i32 = -2;
    pub const UNIMPLEMENTED: i32 = -6;
    pub const BAD_ARGUMENTS: i32 = -8;
    pub const NO_NODE: i32 = -101;
    pub const NO_AUTH: i32 = -102;
    pub const BAD_VERSION: i32 = -103;
    pub const NO_CHILDREN_FOR_EPHEMERALS: i32 = -108;
    pub const NODE_EXISTS: i32 = -110;
    pub const NOT_EMPTY: i32 = -111;
    pub const SESSION_EXPIRED: i32 = -112;
    pub const INVALID_ACL: i32 = -114;
    /// ZooKeeper's answer when a write would pass an enforced quota; ours while NOSPACE is
    /// raised (the backend over --quota-backend-bytes), where etcd answers "database space
    /// exceeded".
    pub const QUOTA_EXCEEDED: i32 = -125;
}

/// The outcome of one op of a [`ZkTxn`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum ZkOpResult {
    Created {
        path: String,
        stat: ZkStat,
    },
    Deleted,
    SetData {
        stat: ZkStat,
    },
    SetAcl {
        stat: ZkStat,
    },
    Checked,
    /// A failed op (its ZooKeeper error code); in a failed multi, the ops before the failure
    /// carry code 0 and those after it RuntimeInconsistency, as ZooKeeper reports them.
    Error(i32),
}

/// etcd's alarm types. While NOSPACE is raised, writes that add data (puts, txns with a put,
/// lease grants) fail with "database space exceeded"; reads and deletes still work.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AlarmType {
    None,
    NoSpace,
    Corrupt,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RangeOp {
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
    pub limit: i64,
    /// 0 = the current revision.
    pub revision: i64,
    pub sort_order: SortOrder,
    pub sort_target: SortTarget,
    pub keys_only: bool,
    pub count_only: bool,
    pub min_mod_revision: i64,
    pub max_mod_revision: i64,
    pub min_create_revision: i64,
    pub max_create_revision: i64,
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub enum SortOrder {
    #[default]
    None,
    Ascend,
    Descend,
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub enum SortTarget {
    #[default]
    Key,
    Version,
    Create,
    Mod,
    Value,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct PutOp {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub lease: i64,
    pub prev_kv: bool,
    pub ignore_value: bool,
    pub ignore_lease: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct DeleteOp {
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
    pub prev_kv: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct TxnOp {
    pub compare: Vec<Compare>,
    pub success: Vec<RequestOp>,
    pub failure: Vec<RequestOp>,
}

impl TxnOp {
    /// Whether any branch (nested ones included) may write a value: such a txn is refused while
    /// the space quota is exceeded.
    pub fn has_put(&self) -> bool {
        self.success.iter().chain(self.failure.iter()).any(|o| match o {
            RequestOp::Put(_) => true,
            RequestOp::Txn(t) => t.has_put(),
            _ => false,
        })
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum RequestOp {
    Range(RangeOp),
    Put(PutOp),
    DeleteRange(DeleteOp),
    Txn(TxnOp),
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum CompareResult {
    Equal,
    Greater,
    Less,
    NotEqual,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum CompareTarget {
    Version(i64),
    Create(i64),
    Mod(i64),
    Value(Vec<u8>),
    Lease(i64),
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Compare {
    pub result: CompareResult,
    pub target: CompareTarget,
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
}

// ---------------------------------------------------------------------------------------------
// Results

/// A key's state at one revision, as etcd's mvccpb.KeyValue.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub value: Vec<u8>,
    pub lease: i64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RangeResult {
    pub kvs: Vec<KeyValue>,
    pub more: bool,
    pub count: i64,
    /// The revision the range was served at (header revision of a standalone range).
    pub revision: i64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct PutResult {
    pub prev_kv: Option<KeyValue>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct DeleteResult {
    pub deleted: i64,
    pub prev_kvs: Vec<KeyValue>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct TxnResult {
    pub succeeded: bool,
    pub responses: Vec<OpResult>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum OpResult {
    Range(RangeResult),
    Put(PutResult),
    DeleteRange(DeleteResult),
    Txn(TxnResult),
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum Response {
    Put(PutResult),
    DeleteRange(DeleteResult),
    Txn(TxnResult),
    Compact,
    LeaseGrant {
        id: i64,
        ttl_s: i64,
    },
    LeaseRevoke,
    /// The alarm raised or cleared, or none if nothing changed.
    Alarm(Option<(u64, AlarmType)>),
    /// One result per op; the txn changed the store only if none is an error.
    Zk(Vec<ZkOpResult>),
}

/// Errors a command can deterministically fail with during apply. Every replica reaches the same
/// error for the same command, so these are results, not faults.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("key not found")]
    KeyNotFound,
    #[error("requested lease not found")]
    LeaseNotFound,
    #[error("lease already exists")]
    LeaseExists,
    #[error("required revision has been compacted")]
    Compacted,
    #[error("required revision is a future revision")]
    FutureRevision,
    #[error("value is provided")]
    ValueProvided,
    #[error("lease is provided")]
    LeaseProvided,
    #[error("database space exceeded")]
    NoSpace,
    /// An etcd write into the keyspace reserved for ZooKeeper znodes.
    #[error("key is reserved for ZooKeeper znodes")]
    ReservedKey,
}

/// The outcome of one command: the store revision after it (the response header revision) and
/// the command's own result.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Applied {
    pub revision: i64,
    pub result: Result<Response, ApplyError>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change at one revision, as a watcher sees it. For a delete, `kv` holds only the key and
/// the deletion revision (as etcd sends it).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
    pub prev_kv: Option<KeyValue>,
}

impl Event {
    pub fn revision(&self) -> i64 {
        self.kv.mod_revision
    }
}
