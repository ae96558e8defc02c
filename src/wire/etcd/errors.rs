//! The one table from failures to etcd's gRPC errors: same code, same message
//! (etcd's api/v3rpc/rpctypes), because clients match on both.

use tonic::{Code, Status};

use crate::command::ApplyError;
use crate::replication::ProposeError;
use crate::store::{Error as StoreFailure, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EtcdError {
    EmptyKey,
    KeyNotFound,
    ValueProvided,
    LeaseProvided,
    TooManyOps,
    DuplicateKey,
    InvalidSortOption,
    Compacted,
    FutureRev,
    NoSpace,
    LeaseNotFound,
    LeaseExist,
    LeaseTtlTooLarge,
    RequestTooLarge,
    NoLeader,
    Stopped,
    TooManyRequests,
    AuthNotEnabled,
    BadLeaderTransferee,
    NotCapable,
    ReservedKey,
    Unimplemented(&'static str),
    Internal(String),
}

impl EtcdError {
    pub fn code_and_message(&self) -> (Code, String) {
        use EtcdError::*;
        let (code, msg) = match self {
            EmptyKey => (Code::InvalidArgument, "etcdserver: key is not provided"),
            KeyNotFound => (Code::InvalidArgument, "etcdserver: key not found"),
            ValueProvided => (Code::InvalidArgument, "etcdserver: value is provided"),
            LeaseProvided => (Code::InvalidArgument, "etcdserver: lease is provided"),
            TooManyOps => (Code::InvalidArgument, "etcdserver: too many operations in txn request"),
            DuplicateKey => (Code::InvalidArgument, "etcdserver: duplicate key given in txn request"),
            InvalidSortOption => (Code::InvalidArgument, "etcdserver: invalid sort option"),
            Compacted => (Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted"),
            FutureRev => (Code::OutOfRange, "etcdserver: mvcc: required revision is a future revision"),
            NoSpace => (Code::ResourceExhausted, "etcdserver: mvcc: database space exceeded"),
            LeaseNotFound => (Code::NotFound, "etcdserver: requested lease not found"),
            LeaseExist => (Code::FailedPrecondition, "etcdserver: lease already exists"),
            LeaseTtlTooLarge => (Code::OutOfRange, "etcdserver: too large lease TTL"),
            RequestTooLarge => (Code::InvalidArgument, "etcdserver: request is too large"),
            NoLeader => (Code::Unavailable, "etcdserver: no leader"),
            Stopped => (Code::Unavailable, "etcdserver: server stopped"),
            TooManyRequests => (Code::ResourceExhausted, "etcdserver: too many requests"),
            AuthNotEnabled => (Code::FailedPrecondition, "etcdserver: authentication is not enabled"),
            BadLeaderTransferee => (Code::FailedPrecondition, "etcdserver: bad leader transferee"),
            NotCapable => (Code::Unavailable, "etcdserver: not capable"),
            ReservedKey => (
                Code::FailedPrecondition,
                "conclave: keys under /zk/ are ZooKeeper znodes; change them through the ZooKeeper protocol",
            ),
            Unimplemented(what) => return (Code::Unimplemented, format!("conclave: {what} is not implemented yet")),
            Internal(m) => return (Code::Unknown, m.clone()),
        };
        (code, msg.to_string())
    }
}

impl From<EtcdError> for Status {
    fn from(e: EtcdError) -> Status {
        let (code, msg) = e.code_and_message();
        Status::new(code, msg)
    }
}

impl From<ApplyError> for EtcdError {
    fn from(e: ApplyError) -> Self {
        match e {
            ApplyError::KeyNotFound => EtcdError::KeyNotFound,
            ApplyError::LeaseNotFound => EtcdError::LeaseNotFound,
            ApplyError::LeaseExists => EtcdError::LeaseExist,
            ApplyError::Compacted => EtcdError::Compacted,
            ApplyError::FutureRevision => EtcdError::FutureRev,
            ApplyError::ValueProvided => EtcdError::ValueProvided,
            ApplyError::LeaseProvided => EtcdError::LeaseProvided,
            ApplyError::NoSpace => EtcdError::NoSpace,
            ApplyError::ReservedKey => EtcdError::ReservedKey,
        }
    }
}

impl From<ProposeError> for EtcdError {
    fn from(e: ProposeError) -> Self {
        match e {
            ProposeError::NoLeader => EtcdError::NoLeader,
            ProposeError::Stopped => EtcdError::Stopped,
            ProposeError::Overloaded => EtcdError::TooManyRequests,
            ProposeError::Raft(m) => EtcdError::Internal(format!("etcdserver: {m}")),
        }
    }
}

impl From<StoreError> for EtcdError {
    fn from(e: StoreError) -> Self {
        tracing::error!("store failure: {e}");
        EtcdError::Internal(format!("etcdserver: {e}"))
    }
}

impl From<StoreFailure> for EtcdError {
    fn from(e: StoreFailure) -> Self {
        match e {
            StoreFailure::Apply(a) => a.into(),
            StoreFailure::Store(s) => s.into(),
        }
    }
}
