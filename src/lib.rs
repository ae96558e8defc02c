//! # Conclave
//!
//! One server that speaks etcd's v3 API (and, next, ZooKeeper's protocol) over one
//! raft-replicated MVCC store.
//!
//! ## Layout and import rules
//! - [`command`]: protocol-neutral commands and results; the only raft log payload. Imports
//!   nothing internal.
//! - [`store`]: the MVCC keyspace and leases in redb. Deterministic, synchronous; imports only
//!   `command` (no tokio, tonic, openraft).
//! - [`watch`]: the one watch hub for every protocol; imports `command` and the store's read view.
//! - [`lessor`]: the leader's lease expiry timers (in memory, tokio time).
//! - [`replication`]: openraft glue (log store, state machine, network). Every openraft type
//!   stays inside it.
//! - [`wire`]: protocol front ends (etcd gRPC, HTTP). A wire module never touches redb and never
//!   imports another wire module.
//! - [`node`]: wires everything together; the only module that sees all others.
//! - [`pb`]: generated etcd protobuf code.

pub mod command;
pub mod config;
pub mod lessor;
pub mod node;
pub mod pb;
pub mod replication;
pub mod store;
pub mod watch;
pub mod wire;
