//! The ZooKeeper wire protocol.
//!
//! - [`frame`]: length-prefixed packets; only parses, `Incomplete` until whole.
//! - [`jute`]: ZooKeeper's serialization primitives; never panics on bad input.
//! - [`proto`]: typed records, op codes and error codes with exact encodings.
//! - [`server`]: listener, connections, sessions (each one a lease), request execution.
//! - [`watches`]: ZooKeeper's watch semantics, fed by the one watch hub.
//! - [`auth`]: the digest scheme. [`sasl`]: SASL (opcode 102) with DIGEST-MD5; [`gssapi`]:
//!   SASL GSSAPI (Kerberos) through the system's GSS-API library.
//! - [`fourlw`]: four-letter words.

pub mod auth;
pub mod fourlw;
pub mod frame;
pub mod gssapi;
pub mod jute;
pub mod proto;
pub mod sasl;
pub mod server;
pub mod watches;

pub use server::{serve, ZkConfig, ZkCtx};
