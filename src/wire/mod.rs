//! Protocol front ends. Each sees the propose handle, read views, the watch hub and the
//! lessor, never redb and never another front end.

pub mod etcd;
pub mod h2_authority;
pub mod http;
pub mod zk;
