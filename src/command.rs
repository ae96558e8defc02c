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
    pub commands: Vec<Command>,
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
