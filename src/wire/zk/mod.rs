//! The ZooKeeper wire protocol (work in progress for the ZooKeeper issue): the codec layer.
//!
//! - [`frame`]: length-prefixed packets; only parses, `Incomplete` until whole.
//! - [`jute`]: ZooKeeper's serialization primitives; never panics on bad input.
//! - [`proto`]: typed records, op codes and error codes with exact encodings.
//!
//! The connection owner, sessions (= leases) and the znode tree on the store come next; this
//! module already fixes the bytes they will speak, with raw-byte tests.

pub mod frame;
pub mod jute;
pub mod proto;
