//! The ZooKeeper tree on the MVCC store.
//!
//! Mapping (see docs/ARCHITECTURE.md, "Znodes"):
//! - A znode's DATA is an ordinary MVCC key: `/zk` + path (`/a/b` -> key `/zk/a/b`), so etcd
//!   clients can read and watch znodes, and every data change gets a revision. czxid is the key's
//!   create revision, mzxid its mod revision, the ZooKeeper `version` its etcd version - 1, and an
//!   ephemeral znode's key is attached to the session's lease (a session IS a lease).
//! - The key's row in `kv` also carries the znode's mtime (the proposer's clock, carried in the
//!   command) and data length, so a setData writes that row and history, not the metadata.
//! - What MVCC does not know lives in `zk_nodes` (parent NUL name, see [`node_key`] ->
//!   [`ZnodeMeta`]): the insertion stamp in the parent's set, ctime, cversion, aversion, pzxid,
//!   the child count, the kind (container, TTL) and the ACL; a write rewrites a node's row only
//!   if one of these changed. So keyed, a node's children are one range, without scanning
//!   subtrees; `zk_reap` lists containers and TTL nodes for the reaper.
//! - The root `/` and the built-in `/zookeeper`, `/zookeeper/quota`, `/zookeeper/config` exist
//!   from the start as metadata only (no key, zero zxids), as in a fresh ZooKeeper.
//!
//! A write ([`ZkTxn`]) runs ZooKeeper's checks in ZooKeeper's order against an overlay of the
//! nodes it touches (its "pending changes"), so a multi sees its own earlier ops; only when
//! every op succeeded are the changes written, all in one revision. Apply stays deterministic:
//! the clock, the session and its identities arrive inside the command.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use redb::ReadableTable;

use super::mvcc::WriteTx;
use super::schema::*;
use super::{Error, StoreError};
use crate::command::*;

/// The MVCC key prefix under which znode data lives.
pub const ZK_KEY_PREFIX: &[u8] = b"/zk";
/// The znode keys: [`/zk/`, `/zk0`).
const ZK_RANGE_START: &[u8] = b"/zk/";
const ZK_RANGE_END: &[u8] = b"/zk0";
pub const ZK_KEY_RANGE: (&[u8], &[u8]) = (ZK_RANGE_START, ZK_RANGE_END);

/// ZooKeeper's permission bits.
pub mod perms {
    pub const READ: i32 = 1;
    pub const WRITE: i32 = 2;
    pub const CREATE: i32 = 4;
    pub const DELETE: i32 = 8;
    pub const ADMIN: i32 = 16;
    pub const ALL: i32 = 31;
}

/// Built-in nodes, created at first open: (path, children in the order ZooKeeper's DataTree
/// adds them, which getChildren's order depends on).
const BUILTINS: &[(&str, &[&str])] = &[
    ("/", &["zookeeper"]),
    ("/zookeeper", &["quota", "config"]),
    ("/zookeeper/quota", &[]),
    ("/zookeeper/config", &[]),
];

/// ZooKeeper's "special" paths: never deleted or created by clients. They have no `kv` row
/// until their data is first set, so that first set is a put without a previous value.
pub fn is_special(path: &str) -> bool {
    BUILTINS.iter().any(|(p, _)| *p == path)
}

pub fn key_of(path: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(ZK_KEY_PREFIX.len() + path.len());
    k.extend_from_slice(ZK_KEY_PREFIX);
    k.extend_from_slice(path.as_bytes());
    k
}

/// `String.hashCode` of `s` (over its UTF-16 code units) spread as `HashMap.hash` spreads
/// it: the value whose low bits pick a `java.util.HashMap` bucket.
pub fn java_hash(s: &str) -> u32 {
    let h = s.encode_utf16().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c))) as u32;
    h ^ (h >> 16)
}

/// The initial bucket count of ZooKeeper's set of a node's children (`DataNode.children`: a
/// `new HashSet<String>(8)` at the first child).
pub const CHILD_TABLE_INITIAL: u32 = 8;
/// The initial bucket count of ZooKeeper's set of a session's ephemerals
/// (`DataTree.ephemerals`: a `new HashSet<String>()` at the session's first ephemeral).
pub const SESSION_TABLE_INITIAL: u32 = 16;

/// The bucket count of a `java.util.HashSet` made with `initial` buckets once one more entry is
/// added to `size` entries in `cap` buckets (0: the table is not made yet). `same_bucket(cap)`
/// counts the entries already in the new one's bucket; it is only asked when it can matter
/// (below 64 buckets, with 8 or more entries), since it costs a scan.
///
/// `HashMap.putVal`: the new entry is appended to its bucket's list; a list that reaches 9
/// entries in a table under 64 buckets doubles the table (`treeifyBin` resizes instead of
/// making a tree); then a size past 0.75 of the buckets doubles it. A table never shrinks.
pub fn java_table_after_add(
    initial: u32,
    cap: u32,
    size: u32,
    same_bucket: impl FnOnce(u32) -> Result<u32, Error>,
) -> Result<u32, Error> {
    let mut cap = cap.clamp(initial, JAVA_TABLE_MAX);
    if cap < 64 && size >= 8 && same_bucket(cap)? >= 8 {
        cap *= 2;
    }
    if u64::from(size) + 1 > u64::from(cap) / 4 * 3 {
        cap = (cap * 2).min(JAVA_TABLE_MAX);
    }
    Ok(cap)
}

/// `HashMap.MAXIMUM_CAPACITY`: a table stops growing there.
const JAVA_TABLE_MAX: u32 = 1 << 30;

/// The smallest children table a node with `n` children can have: a store written before
/// tables were recorded, or a row that never grew past it. A recorded table is at least this.
pub fn child_table_at_least(n: i32) -> u32 {
    java_table_at_least(CHILD_TABLE_INITIAL, u64::try_from(n).unwrap_or(0))
}

/// The smallest table a `HashSet` made with `initial` buckets has after `n` additions (0 for
/// none: the table is made at the first).
fn java_table_at_least(initial: u32, n: u64) -> u32 {
    if n == 0 {
        return 0;
    }
    let mut cap = initial;
    while n > u64::from(cap) / 4 * 3 && cap < JAVA_TABLE_MAX {
        cap *= 2;
    }
    cap
}

/// `other`, kept only if it shares `name`'s bucket in a table of `cap` buckets: a scan for
/// [`count_in_bucket`] keeps a handful of names, not the whole list.
fn in_bucket(name: &str, cap: u32, other: &str) -> Option<String> {
    (java_hash(other) & (cap - 1) == java_hash(name) & (cap - 1)).then(|| other.to_string())
}

/// How many entries share `name`'s bucket in a table of `cap` buckets: those `stored` (already
/// filtered by [`in_bucket`]) as a transaction's earlier adds (true) and removes change them,
/// in order.
fn count_in_bucket<'a>(
    name: &str,
    cap: u32,
    mut stored: Vec<String>,
    pending: impl Iterator<Item = (&'a str, bool)>,
) -> u32 {
    for (other, add) in pending {
        if let Some(other) = in_bucket(name, cap, other) {
            stored.retain(|x| *x != other);
            if add {
                stored.push(other);
            }
        }
    }
    stored.len() as u32
}

/// Sorts children into ZooKeeper's getChildren order: `new ArrayList<>(node.getChildren())`
/// iterates the `HashSet` bucket by bucket (`java_hash` masked by the table's size) and each
/// bucket's list in insertion order (a resize splits a list keeping its order; a removal
/// unlinks). `stamp` orders insertions ([`ZnodeMeta::stamp`]). Not modelled: a bucket of 9 or
/// more names in a table of 64 or more buckets, which Java turns into a tree (another order).
pub fn java_children_order<T>(children: &mut [T], cap: u32, name: impl Fn(&T) -> &str, stamp: impl Fn(&T) -> u64) {
    let mask = cap.max(1).next_power_of_two() - 1;
    children.sort_by_cached_key(|c| (java_hash(name(c)) & mask, stamp(c)));
}

/// The insertion stamp of a child added by the `index`th child change of the transaction
/// that commits as revision `rev`: revisions order transactions, the index a multi's ops.
pub fn child_stamp(rev: i64, index: usize) -> u64 {
    debug_assert!(index < 1 << 20, "a multi is far smaller than a million ops");
    (u64::try_from(rev).unwrap_or(0) << 20) | (index as u64 & ((1 << 20) - 1))
}

/// Orders the keys a revoked lease held as they are deleted: etcd keys first, in key order;
/// then ephemeral znodes in the order ZooKeeper 3.8.0 deletes a closed (or expired) session's
/// ephemerals, which its watchers see (see [`JavaCloneOrder`]).
/// `inserted` gives a path's insertion stamp ([`ZnodeMeta::stamp`]: the order the paths
/// entered the session's set in, a multi's creates in op order).
pub(super) fn ephemeral_delete_order(
    keys: &mut [(Vec<u8>, Option<CurrentKv>)],
    table: u32,
    inserted: impl Fn(&str) -> u64,
) {
    let order = JavaCloneOrder::of(keys.iter().filter(|(k, _)| path_of(k).is_some()).count(), table);
    keys.sort_by_cached_key(|(key, _)| match path_of(key) {
        None => (0, (0, 0, 0), key.clone()),
        Some(path) => (1, order.key(path, inserted(path)), key.clone()),
    });
}

/// A path's key in `zk_nodes`: the path with its last '/' made a NUL (`/a/b` -> `/a` NUL `b`,
/// `/a` -> NUL `a`), so that a node's children are the keys from its path NUL to its path
/// \x01 ([`children_range`]); the root's key is empty. A string that is not a path (the wire
/// refuses those first) gets a key no row has: invalid UTF-8.
pub fn node_key(path: &str) -> Vec<u8> {
    let mut key = path.as_bytes().to_vec();
    match path.rfind('/') {
        _ if path == "/" => key.clear(),
        Some(i) if path.starts_with('/') => key[i] = 0,
        _ => key.push(0xff),
    }
    key
}

/// The `zk_nodes` keys of `parent`'s children: [start, end).
pub fn children_range(parent: &str) -> (Vec<u8>, Vec<u8>) {
    let p = if parent == "/" { "" } else { parent };
    let mut start = Vec::with_capacity(p.len() + 1);
    start.extend_from_slice(p.as_bytes());
    start.push(0);
    let mut end = start.clone();
    end[p.len()] = 1;
    (start, end)
}

/// (parent, name) of a `zk_nodes` key ([`node_key`] reversed); None for the root's.
pub fn split_node_key(key: &[u8]) -> Result<Option<(&str, &str)>, StoreError> {
    if key.is_empty() {
        return Ok(None);
    }
    let bad = || StoreError::Corrupt(format!("zk_nodes key {:?}", String::from_utf8_lossy(key)));
    let nul = key.iter().position(|b| *b == 0).ok_or_else(bad)?;
    let parent = if nul == 0 { "/" } else { std::str::from_utf8(&key[..nul]).map_err(|_| bad())? };
    let name = std::str::from_utf8(&key[nul + 1..]).map_err(|_| bad())?;
    Ok(Some((parent, name)))
}

/// The path a `zk_nodes` key names.
pub fn path_of_node_key(key: &[u8]) -> Result<String, StoreError> {
    Ok(match split_node_key(key)? {
        None => "/".to_string(),
        Some((parent, name)) => join_path(parent, name),
    })
}

/// `parent` / `name`.
pub fn join_path(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

/// The order ZooKeeper 3.8.0 lists a session's ephemeral paths in: `HashSet.clone()` of the
/// session's set, iterated. That is the list of a CloseSessionTxn (`new ArrayList<>(es)`, the
/// order a closed session's ephemerals are deleted in) and of a getEphemerals reply. The clone
/// is a `HashMap` sized for its entries (`tableSizeFor((int) (n / 0.75f + 1))`) and filled in
/// the original's iteration order; a `HashMap` iterates by bucket, and within a bucket in
/// insertion order. So: by bucket in the clone, then by bucket in the original, then by
/// insertion.
///
/// The original set's bucket count is the session's `ZkSessionSet::table` (it depends on how
/// many ephemerals the session ever held at once: a Java set never shrinks); for a session
/// whose row does not keep it (made by an older store), the smallest a fresh `HashSet` (16,
/// doubling past a 0.75 load) has for what it holds now.
pub struct JavaCloneOrder {
    clone_mask: u32,
    original_mask: u32,
}

impl JavaCloneOrder {
    /// For a set of `count` paths in a table of `table` buckets (0: not known).
    pub fn of(count: usize, table: u32) -> JavaCloneOrder {
        let original = table.max(java_table_at_least(SESSION_TABLE_INITIAL, count as u64)).max(1);
        // HashMap.tableSizeFor of (int) (size / loadFactor + 1.0f), in Java's float arithmetic.
        let wanted = (count as f32 / 0.75f32 + 1.0f32) as u32;
        let clone = wanted.max(1).next_power_of_two();
        JavaCloneOrder { clone_mask: clone - 1, original_mask: original - 1 }
    }

    /// The sort key of `path`, added to the set with insertion stamp `inserted`.
    pub fn key(&self, path: &str, inserted: u64) -> (u32, u32, u64) {
        let h = java_hash(path);
        (h & self.clone_mask, h & self.original_mask, inserted)
    }
}

/// The znode path of an MVCC key, if the key is in the znode range.
pub fn path_of(key: &[u8]) -> Option<&str> {
    if key.starts_with(ZK_RANGE_START) {
        std::str::from_utf8(&key[ZK_KEY_PREFIX.len()..]).ok()
    } else {
        None
    }
}

/// Whether etcd's range [key, range_end) can touch a znode key.
pub fn range_touches_znodes(key: &[u8], range_end: &[u8]) -> bool {
    if range_end.is_empty() {
        return key.starts_with(ZK_RANGE_START);
    }
    let end_ok = range_end == [0] || range_end > ZK_RANGE_START;
    key < ZK_RANGE_END && end_ok
}

pub fn parent_of(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

pub fn name_of(path: &str) -> &str {
    match path.rfind('/') {
        Some(i) => &path[i + 1..],
        None => path,
    }
}

/// What kind of node, beyond what MVCC records (an ephemeral's owner is its key's lease).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    Persistent,
    Ephemeral,
    Container,
    Ttl(i64),
}

/// A znode's metadata row (table `zk_nodes`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZnodeMeta {
    /// When it entered its parent's set of children ([`child_stamp`]; the built-in nodes: their
    /// rank among their siblings, the root 0), which getChildren's order depends on.
    pub stamp: u64,
    pub czxid: i64,
    pub ctime_ms: i64,
    pub mtime_ms: i64,
    /// Children ever created (ZooKeeper's persisted cversion: sequence numbers come from it).
    pub creates: i32,
    pub aversion: i32,
    pub pzxid: i64,
    pub num_children: i32,
    pub kind: NodeKind,
    /// Built-in nodes (root, /zookeeper...) have no key until data is set: their version is
    /// the key's etcd version, where a created node's is etcd version - 1.
    pub builtin: bool,
    /// The data is ZooKeeper's null (not merely empty): reads answer a null buffer.
    pub null_data: bool,
    /// Shared: a node's metadata is copied into every transaction overlay that looks at it
    /// (a create reads its parent's), and the ACL was most of the copy.
    pub acl: Arc<Vec<ZkAcl>>,
    /// The bucket count of ZooKeeper's set of this node's children (0: none yet), which
    /// decides getChildren's order (see [`java_children_order`]). It depends on the node's
    /// history (a Java set never shrinks), so it is kept; rows written before it was kept
    /// read as [`child_table_at_least`] of their children.
    pub child_table: u32,
}

/// The ACL list of almost every znode, ZooKeeper's OPEN_ACL_UNSAFE ([`open_acl`]), as
/// [`ZnodeMeta::encode`] writes it.
static OPEN_ACL_ROW: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
    let mut row = Vec::new();
    encode_acl(&open_acl(), &mut row);
    row
});

/// A znode row's ACL list: a count, then each entry's perms, scheme and id.
fn encode_acl(acl: &[ZkAcl], out: &mut Vec<u8>) {
    out.extend_from_slice(&(acl.len() as u32).to_le_bytes());
    for a in acl {
        out.extend_from_slice(&a.perms.to_le_bytes());
        for s in [&a.scheme, &a.id] {
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
    }
}

thread_local! {
    /// OPEN_ACL_UNSAFE, shared by every node [`ZnodeMeta::decode`] finds it on (per thread, so
    /// that the threads that decode rows do not share a reference count).
    /// Why: decoding the list allocated a vector, two strings and the `Arc` for every row read,
    /// ~5 % of a setData's store work.
    static OPEN_ACL: Arc<Vec<ZkAcl>> = Arc::new(open_acl());
}

impl ZnodeMeta {
    /// The `zk_nodes` row: the stamp, then [`ZnodeMeta::encode`].
    fn encode_row(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(72);
        out.extend_from_slice(&self.stamp.to_le_bytes());
        self.encode_into(&mut out);
        out
    }

    fn decode_row(b: &[u8]) -> Result<ZnodeMeta, StoreError> {
        let (stamp, rest) = split_stamp(b)?;
        Ok(ZnodeMeta { stamp, ..ZnodeMeta::decode(rest)? })
    }

    /// Everything but the stamp: format 3's `znodes` row, and a raft snapshot's (whose
    /// stamps travel as format 3's child rows, so builds of both formats read each other's).
    #[cfg(test)]
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        self.encode_into(&mut out);
        out
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        for v in [self.czxid, self.ctime_ms, self.mtime_ms, self.pzxid] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for v in [self.creates, self.aversion, self.num_children] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        let (kind, ttl) = match self.kind {
            NodeKind::Persistent => (0u8, 0i64),
            NodeKind::Ephemeral => (1, 0),
            NodeKind::Container => (2, 0),
            NodeKind::Ttl(t) => (3, t),
        };
        out.push(kind);
        out.extend_from_slice(&ttl.to_le_bytes());
        out.push(u8::from(self.builtin) | u8::from(self.null_data) << 1);
        encode_acl(&self.acl, out);
        // A power of two (or 0), kept as its exponent + 1.
        out.push(if self.child_table == 0 { 0 } else { self.child_table.trailing_zeros() as u8 + 1 });
    }

    fn decode(b: &[u8]) -> Result<ZnodeMeta, StoreError> {
        let bad = || StoreError::Corrupt(format!("znode row of {} bytes", b.len()));
        let mut at = 0usize;
        let take = |at: &mut usize, n: usize| -> Result<&[u8], StoreError> {
            let s = b.get(*at..*at + n).ok_or_else(bad)?;
            *at += n;
            Ok(s)
        };
        let i64_ = |s: &[u8]| i64::from_le_bytes(s.try_into().unwrap_or([0; 8]));
        let i32_ = |s: &[u8]| i32::from_le_bytes(s.try_into().unwrap_or([0; 4]));
        let czxid = i64_(take(&mut at, 8)?);
        let ctime_ms = i64_(take(&mut at, 8)?);
        let mtime_ms = i64_(take(&mut at, 8)?);
        let pzxid = i64_(take(&mut at, 8)?);
        let creates = i32_(take(&mut at, 4)?);
        let aversion = i32_(take(&mut at, 4)?);
        let num_children = i32_(take(&mut at, 4)?);
        let kind_b = take(&mut at, 1)?[0];
        let ttl = i64_(take(&mut at, 8)?);
        let kind = match kind_b {
            0 => NodeKind::Persistent,
            1 => NodeKind::Ephemeral,
            2 => NodeKind::Container,
            3 => NodeKind::Ttl(ttl),
            _ => return Err(bad()),
        };
        let flags = take(&mut at, 1)?[0];
        let (builtin, null_data) = (flags & 1 != 0, flags & 2 != 0);
        let acl = if b[at..].starts_with(&OPEN_ACL_ROW) {
            at += OPEN_ACL_ROW.len();
            OPEN_ACL.with(|open| open.clone())
        } else {
            let n = u32::from_le_bytes(take(&mut at, 4)?.try_into().unwrap_or([0; 4])) as usize;
            let mut acl = Vec::with_capacity(n.min(64));
            for _ in 0..n {
                let perms = i32_(take(&mut at, 4)?);
                let mut strs = [String::new(), String::new()];
                for s in &mut strs {
                    let len = u32::from_le_bytes(take(&mut at, 4)?.try_into().unwrap_or([0; 4])) as usize;
                    *s = String::from_utf8(take(&mut at, len)?.to_vec()).map_err(|_| bad())?;
                }
                let [scheme, id] = strs;
                acl.push(ZkAcl { perms, scheme, id });
            }
            Arc::new(acl)
        };
        let child_table = match b.get(at) {
            None | Some(0) => 0,
            Some(&e) if e <= 32 => 1u32 << (e - 1),
            Some(_) => return Err(bad()),
        };
        let child_table = child_table.max(child_table_at_least(num_children));
        Ok(ZnodeMeta {
            stamp: 0,
            czxid,
            ctime_ms,
            mtime_ms,
            creates,
            aversion,
            pzxid,
            num_children,
            kind,
            builtin,
            null_data,
            acl,
            child_table,
        })
    }

    /// The client-visible Stat of a node with this metadata and (if it has one) its key.
    pub fn stat(&self, kv: Option<&KvState>) -> ZkStat {
        let (mzxid, version, owner, len) = match kv {
            Some(k) => (k.mod_revision, (k.version - i64::from(!self.builtin)) as i32, k.lease, k.data_len),
            None => (self.czxid, 0, 0, 0),
        };
        ZkStat {
            czxid: self.czxid,
            mzxid,
            ctime: self.ctime_ms,
            // A node with a key has its mtime there (written with its data); the built-in
            // nodes have none and keep theirs here.
            mtime: kv.map(|k| k.mtime_ms).unwrap_or(self.mtime_ms),
            version,
            // ZooKeeper reports creates*2 - children: every create but the live children was
            // matched by a delete, and each counts as a change.
            cversion: self.creates.wrapping_mul(2).wrapping_sub(self.num_children),
            aversion: self.aversion,
            ephemeral_owner: if self.kind == NodeKind::Ephemeral { owner } else { 0 },
            data_length: len as i32,
            num_children: self.num_children,
            pzxid: self.pzxid,
        }
    }
}

/// A `zk_nodes` row's stamp, and the rest of it (the metadata).
fn split_stamp(row: &[u8]) -> Result<(u64, &[u8]), StoreError> {
    match row.split_first_chunk::<8>() {
        Some((stamp, rest)) => Ok((u64::from_le_bytes(*stamp), rest)),
        None => Err(StoreError::Corrupt(format!("zk_nodes row of {} bytes", row.len()))),
    }
}

/// The insertion stamp of a `zk_nodes` row, without decoding the rest (getChildren's order).
pub fn stamp_of_row(row: &[u8]) -> Result<u64, StoreError> {
    Ok(split_stamp(row)?.0)
}

/// What the MVCC key of a znode says about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvState {
    pub mod_revision: i64,
    pub version: i64,
    pub lease: i64,
    pub data_len: usize,
    pub mtime_ms: i64,
}

impl KvState {
    pub(super) fn of(c: &CurrentKv) -> KvState {
        KvState {
            mod_revision: c.mod_main,
            version: c.version,
            lease: c.lease,
            data_len: c.value_len as usize,
            mtime_ms: c.mtime_ms,
        }
    }
}

fn open_acl() -> Vec<ZkAcl> {
    vec![ZkAcl { perms: perms::ALL, scheme: "world".into(), id: "anyone".into() }]
}

/// Creates the root and the built-in nodes if this store has none yet (first open).
pub(super) fn init_builtins(tx: &redb::WriteTransaction) -> Result<(), StoreError> {
    let mut znodes = tx.open_table(ZK_NODES)?;
    if znodes.get(node_key("/").as_slice())?.is_some() {
        return Ok(());
    }
    for (path, kids) in BUILTINS {
        let meta = ZnodeMeta {
            stamp: builtin_stamp(path),
            czxid: 0,
            ctime_ms: 0,
            mtime_ms: 0,
            creates: 0,
            aversion: 0,
            pzxid: 0,
            num_children: kids.len() as i32,
            kind: NodeKind::Persistent,
            builtin: true,
            null_data: false,
            acl: Arc::new(open_acl()),
            child_table: child_table_at_least(kids.len() as i32),
        };
        // ZooKeeper's config node is read-only to clients (reconfig writes it) and starts at
        // aversion -1.
        let meta = if *path == "/zookeeper/config" {
            ZnodeMeta {
                aversion: -1,
                acl: Arc::new(vec![ZkAcl { perms: perms::READ, scheme: "world".into(), id: "anyone".into() }]),
                ..meta
            }
        } else {
            meta
        };
        znodes.insert(node_key(path).as_slice(), meta.encode_row().as_slice())?;
    }
    Ok(())
}

/// A built-in node's insertion stamp: its rank in the order ZooKeeper's DataTree adds it to
/// its parent (the root: 0).
fn builtin_stamp(path: &str) -> u64 {
    let (parent, name) = (parent_of(path), name_of(path));
    BUILTINS
        .iter()
        .find(|(p, _)| *p == parent)
        .and_then(|(_, kids)| kids.iter().position(|k| *k == name))
        .map_or(0, |i| i as u64)
}

/// Store format 2 -> 3: `zk_children` rows gain insertion stamps. Format 2 did not record the
/// order children were added in, so it is taken as their creation order (czxid, then name;
/// the built-in nodes first, in ZooKeeper's order), which is what it was unless a multi
/// created several children of one parent. Parents' tables read as the smallest for their
/// children (`child_table_at_least`, at decode). In the open's transaction: all or nothing.
pub(super) fn upgrade_children_from_v2(tx: &redb::WriteTransaction) -> Result<(), StoreError> {
    let mut rows: Vec<(String, String, (i64, usize, String))> = Vec::new();
    {
        let old = tx.open_table(ZK_CHILDREN_V2)?;
        let znodes = tx.open_table(ZNODES_V3)?;
        for row in old.iter()? {
            let (k, _) = row?;
            let (parent, name) = k.value();
            let path = if parent == "/" { format!("/{name}") } else { format!("{parent}/{name}") };
            let builtin =
                BUILTINS.iter().find(|(p, _)| *p == parent).and_then(|(_, kids)| kids.iter().position(|k| *k == name));
            let key = match builtin {
                Some(i) => (0, i, String::new()),
                None => {
                    let czxid = match znodes.get(path.as_str())? {
                        Some(m) => ZnodeMeta::decode(m.value())?.czxid,
                        None => 0,
                    };
                    (czxid, usize::MAX, name.to_string())
                }
            };
            rows.push((parent.to_string(), name.to_string(), key));
        }
    }
    tx.delete_table(ZK_CHILDREN_V2)?;
    // Stamps as child_stamp gives them: the creation revision, then the rank among the
    // parent's children created at that revision.
    rows.sort_by(|a, b| (&a.0, &a.2).cmp(&(&b.0, &b.2)));
    let mut children = tx.open_table(ZK_CHILDREN_V3)?;
    let mut last: Option<(&str, i64)> = None;
    let mut rank = 0usize;
    for (parent, name, (czxid, builtin, _)) in &rows {
        rank = if last == Some((parent.as_str(), *czxid)) { rank + 1 } else { 0 };
        last = Some((parent.as_str(), *czxid));
        let stamp = if *builtin != usize::MAX { *builtin as u64 } else { child_stamp(*czxid, rank) };
        children.insert((parent.as_str(), name.as_str()), stamp)?;
    }
    Ok(())
}

/// Store format 3 -> 4: `znodes` (path -> metadata) and `zk_children` ((parent, name) ->
/// stamp) become one `zk_nodes` row per node, under its [`node_key`]. In the open's
/// transaction: all or nothing.
pub(super) fn upgrade_nodes_from_v3(tx: &redb::WriteTransaction) -> Result<(), StoreError> {
    {
        let znodes = tx.open_table(ZNODES_V3)?;
        let children = tx.open_table(ZK_CHILDREN_V3)?;
        let mut nodes = tx.open_table(ZK_NODES)?;
        for row in znodes.iter()? {
            let (k, v) = row?;
            let path = k.value();
            let stamp = match path {
                "/" => 0,
                _ => children.get((parent_of(path), name_of(path)))?.map_or(0, |s| s.value()),
            };
            nodes.insert(node_key(path).as_slice(), join_node_row(v.value(), stamp).as_slice())?;
        }
    }
    tx.delete_table(ZNODES_V3)?;
    tx.delete_table(ZK_CHILDREN_V3)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Paths and ACLs (ZooKeeper's PathUtils, fixupACL, checkACL)

/// ZooKeeper's PathUtils.validatePath.
pub fn valid_path(path: &str) -> bool {
    if path.is_empty() || !path.starts_with('/') {
        return false;
    }
    if path.len() == 1 {
        return true;
    }
    if path.ends_with('/') {
        return false;
    }
    for name in path[1..].split('/') {
        if name.is_empty() || name == "." || name == ".." {
            return false;
        }
    }
    if path.is_ascii() {
        // What the ranges below leave of ASCII (NUL, the controls, DEL), byte by byte. Why:
        // the char loop was ~2 % of a setData's store work, and paths are ASCII as a rule.
        return !path.bytes().any(|b| b < 0x20 || b == 0x7f);
    }
    !path.chars().any(|c| {
        c == '\0'
            || ('\u{1}'..='\u{1f}').contains(&c)
            || ('\u{7f}'..='\u{9f}').contains(&c)
            || ('\u{e000}'..='\u{f8ff}').contains(&c)
            || ('\u{fff0}'..='\u{ffff}').contains(&c)
    })
}

/// An ip ACL id as IPAuthenticationProvider reads it: `address[/bits]` (split at the first
/// '/'), the address four dot-separated Java ints of 0..=255 (v4addr2Bytes; ZooKeeper 3.8.0
/// has no IPv6 here, so an IPv6 id is invalid and an IPv6 client matches no ip ACL), the bits
/// a Java int of 0..=32. Returns (address, bits).
fn ip_acl(id: &str) -> Option<(u32, u32)> {
    let (addr, bits) = match id.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (id, None),
    };
    let addr = zk_ipv4(addr)?;
    let bits = match bits {
        // Rust's i32 parse takes what Integer.parseInt takes: a sign, then ASCII digits.
        Some(b) => u32::try_from(b.parse::<i32>().ok()?).ok().filter(|n| *n <= 32)?,
        None => 32,
    };
    Some((addr, bits))
}

fn zk_ipv4(addr: &str) -> Option<u32> {
    // split("\\.", -1) keeps empty pieces, which then fail to parse.
    let parts: Vec<&str> = addr.split('.').collect();
    if parts.len() != 4 {
        return None;
    }
    parts.iter().try_fold(0u32, |v, p| {
        let n = p.parse::<i32>().ok().filter(|n| (0..=255).contains(n))?;
        Some(v << 8 | n as u32)
    })
}

fn valid_ip_acl(id: &str) -> bool {
    ip_acl(id).is_some()
}

/// Whether connection identity `have` (an address) matches the ACL id `want` (address[/bits]):
/// both masked to the ACL's bits (IPAuthenticationProvider.matches).
fn ip_matches(have: &str, want: &str) -> bool {
    let (Some((want, bits)), Some(have)) = (ip_acl(want), zk_ipv4(have)) else { return false };
    let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
    want & mask == have & mask
}

/// ZooKeeper's fixupACL: drops duplicates, expands `auth` into the session's authenticated
/// identities, and refuses what no provider accepts.
pub fn fixup_acl(acl: &[ZkAcl], auth: &[(String, String)]) -> Result<Vec<ZkAcl>, i32> {
    let mut uniq: Vec<&ZkAcl> = Vec::new();
    for a in acl {
        if !uniq.contains(&a) {
            uniq.push(a);
        }
    }
    if uniq.is_empty() {
        return Err(zk_err::INVALID_ACL);
    }
    let mut out = Vec::new();
    for a in uniq {
        match a.scheme.as_str() {
            "world" if a.id == "anyone" => out.push(a.clone()),
            "auth" => {
                let mut any = false;
                for (scheme, id) in auth {
                    // Only providers whose identities are authenticated (digest, sasl) qualify.
                    if scheme == "digest" || scheme == "sasl" {
                        any = true;
                        out.push(ZkAcl { perms: a.perms, scheme: scheme.clone(), id: id.clone() });
                    }
                }
                if !any {
                    return Err(zk_err::INVALID_ACL);
                }
            }
            // Java's split(":") drops trailing empty parts: "u:" is one part, invalid.
            "digest" if a.id.trim_end_matches(':').split(':').count() == 2 => out.push(a.clone()),
            "ip" if valid_ip_acl(&a.id) => out.push(a.clone()),
            "sasl" if valid_sasl_id(&a.id) => out.push(a.clone()),
            _ => return Err(zk_err::INVALID_ACL),
        }
    }
    Ok(out)
}

/// [`fixup_acl`], shared: ZooKeeper's open ACL (what almost every create asks for) is the one
/// list every node with it shares ([`OPEN_ACL`]), with no copy made.
fn fixup_acl_shared(acl: &[ZkAcl], auth: &[(String, String)]) -> Result<Arc<Vec<ZkAcl>>, i32> {
    let shared = OPEN_ACL.with(|open| (!acl.is_empty() && acl.iter().all(|a| open.contains(a))).then(|| open.clone()));
    match shared {
        Some(open) => Ok(open),
        None => fixup_acl(acl, auth).map(Arc::new),
    }
}

/// SASLAuthenticationProvider.isValid: a Kerberos name, i.e. one without '@', or
/// `name[/host]@realm` (KerberosName's `([^/@]*)(/([^/@]*))?@([^/@]*)`).
fn valid_sasl_id(id: &str) -> bool {
    match id.split_once('@') {
        None => true,
        Some((name, realm)) => !realm.contains(['@', '/']) && name.matches('/').count() <= 1,
    }
}

/// The ACL that must let a session READ a node for it to hear the node's events: none if
/// anyone may.
fn read_gate(acl: &Arc<Vec<ZkAcl>>) -> Option<Arc<Vec<ZkAcl>>> {
    let world_readable = acl.iter().any(|a| a.scheme == "world" && a.id == "anyone" && a.perms & perms::READ != 0);
    (!world_readable).then(|| acl.clone())
}

/// ZooKeeper's checkACL: `perm` is granted by an ACL entry with that bit for world:anyone or for
/// one of the session's identities.
pub fn acl_allows(acl: &[ZkAcl], perm: i32, auth: &[(String, String)]) -> bool {
    if acl.is_empty() || auth.iter().any(|(s, _)| s == "super") {
        return true;
    }
    acl.iter().any(|a| {
        a.perms & perm != 0
            && ((a.scheme == "world" && a.id == "anyone")
                || auth.iter().any(|(s, id)| {
                    s == &a.scheme
                        && match s.as_str() {
                            "ip" => ip_matches(id, &a.id),
                            // SASLAuthenticationProvider.matches: the SASL user "super" matches
                            // every sasl ACL.
                            "sasl" => id == &a.id || id == "super",
                            _ => id == &a.id,
                        }
                }))
    })
}

// ---------------------------------------------------------------------------------------------
// Apply

#[cfg(test)]
thread_local! {
    /// Tests turn the write path's shortcuts off on their thread ([`WriteTx::zk_set_alone`],
    /// [`WriteTx::zk_load_meta`]), to compare them with the general path.
    pub(super) static SHORTCUTS_OFF: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the write path may take its shortcuts (see [`SHORTCUTS_OFF`]).
fn shortcuts_allowed() -> bool {
    #[cfg(test)]
    return !SHORTCUTS_OFF.with(|off| off.get());
    #[cfg(not(test))]
    true
}

/// A node as the overlay of one txn sees it.
#[derive(Clone, Debug)]
struct Node {
    meta: ZnodeMeta,
    /// The data when this transaction wrote it or needed it; None: not read (most writes only
    /// need its length, in `kv`).
    data: Option<Vec<u8>>,
    /// Its key's state (None: the node has no key, as a built-in node before its first
    /// setData), if `kv_read`.
    kv: Option<KvState>,
    /// Whether `kv` is known: a create's or a delete's parent is loaded without it
    /// ([`WriteTx::zk_load_meta`]), and [`WriteTx::zk_load`] reads it if a later op asks.
    kv_read: bool,
    /// The metadata as stored, for a node read from the table: the commit rewrites a node's
    /// row only if its metadata changed (a setData changes only the key).
    stored_meta: Option<ZnodeMeta>,
}

enum KvChange {
    /// `gate`: the node's ACL if not everyone may read it (its event's `ReadGate`).
    /// `created`: the node did not exist (see `WriteTx::put_new_at`).
    Put {
        path: String,
        data: Vec<u8>,
        lease: i64,
        mtime_ms: i64,
        gate: Option<Arc<Vec<ZkAcl>>>,
        created: bool,
    },
    Delete {
        path: String,
        gate: Option<Arc<Vec<ZkAcl>>>,
    },
    /// A quota stats node's data replaced in place (`WriteTx::rewrite_value`).
    Rewrite {
        path: String,
        data: Vec<u8>,
    },
}

/// ZooKeeper's pending changes: every node a txn touched, as the txn left it (None = deleted).
#[derive(Default)]
struct Overlay {
    nodes: BTreeMap<String, Option<Node>>,
    kv: Vec<KvChange>,
    children: Vec<(String, String, bool)>,
    /// The revision the txn commits as, if it changes a key.
    rev: i64,
    /// The ACLs of the nodes this txn deletes, from before (see `Effects::zk_acls`).
    deleted_acls: Vec<(String, Arc<Vec<ZkAcl>>)>,
    /// Sessions whose ephemeral set this txn changes, as it leaves them.
    sessions: BTreeMap<i64, ZkSessionSet>,
    /// The ephemeral paths this txn adds to (true) or removes from its sessions' sets.
    session_paths: Vec<(i64, String, bool)>,
}

impl WriteTx<'_> {
    /// A node's metadata row: the transaction's own version if it changed it, else the
    /// table's. Rows only read are not kept: a setData would pay for keeping its node's row
    /// and never use it again.
    pub(super) fn znode_get(&self, path: &str) -> Result<Option<ZnodeMeta>, Error> {
        if let Some(meta) = self.znode_rows.borrow().get(path) {
            return Ok(meta.clone());
        }
        Ok(self.znodes.get(node_key(path).as_slice())?.map(|row| ZnodeMeta::decode_row(row.value())).transpose()?)
    }

    /// Whether a node exists (without decoding its row).
    fn znode_exists(&self, path: &str) -> Result<bool, Error> {
        if let Some(meta) = self.znode_rows.borrow().get(path) {
            return Ok(meta.is_some());
        }
        Ok(self.znodes.get(node_key(path).as_slice())?.is_some())
    }

    fn znode_put(&mut self, path: &str, meta: ZnodeMeta) {
        self.znode_rows.get_mut().insert(path.to_string(), Some(meta));
    }

    fn znode_put_none(&mut self, path: &str) {
        self.znode_rows.get_mut().insert(path.to_string(), None);
    }

    /// Whether any quota is set (the quota root has children), as this transaction sees it.
    /// The table's answer is read once per transaction: every create and delete asks. A change
    /// of the quota root by this transaction is in its overlay or in `znode_rows`, which are
    /// asked first.
    fn quotas_exist(&self, ov: &Overlay) -> Result<bool, Error> {
        let unchanged = !ov.nodes.contains_key(QUOTA_ROOT) && !self.znode_rows.borrow().contains_key(QUOTA_ROOT);
        if let (true, Some(exist)) = (unchanged, self.quota_root_in_table.get()) {
            return Ok(exist);
        }
        let exist = self.zk_peek(ov, QUOTA_ROOT)?.is_some_and(|m| m.num_children > 0);
        if unchanged {
            self.quota_root_in_table.set(Some(exist));
        }
        Ok(exist)
    }

    /// Writes the changed rows to the table (before the transaction commits).
    pub(super) fn znode_flush(&mut self) -> Result<(), StoreError> {
        for (path, meta) in self.znode_rows.get_mut().drain() {
            match meta {
                Some(meta) => {
                    self.znodes.insert(node_key(&path).as_slice(), meta.encode_row().as_slice())?;
                }
                None => {
                    self.znodes.remove(node_key(&path).as_slice())?;
                }
            }
        }
        Ok(())
    }
}

type Op<T> = Result<T, i32>;

impl WriteTx<'_> {
    /// A node as the overlay or the table has it (added to the overlay), its key's state read.
    fn zk_load(&self, ov: &mut Overlay, path: &str) -> Result<Option<Node>, Error> {
        if let Some(n) = ov.nodes.get_mut(path) {
            if let Some(node) = n.as_mut().filter(|node| !node.kv_read) {
                // Loaded as a parent; the key is unchanged since (only ops that load the node
                // with its state change it): the table has it.
                node.kv = self.current_state(&key_of(path))?.map(|c| KvState::of(&c));
                node.kv_read = true;
            }
            return Ok(n.clone());
        }
        let Some(meta) = self.znode_get(path)? else {
            return Ok(None);
        };
        let kv = self.current_state(&key_of(path))?.map(|c| KvState::of(&c));
        let n = Node { stored_meta: Some(meta.clone()), meta, data: None, kv, kv_read: true };
        ov.nodes.insert(path.to_string(), Some(n.clone()));
        Ok(Some(n))
    }

    /// [`WriteTx::zk_load`] for a create's or a delete's parent, which changes only the node's
    /// metadata: its key's state is not read (`kv_read` false) unless the overlay has it.
    /// Why: that `kv` lookup was ~10 % of a create's store work, for nothing.
    fn zk_load_meta(&self, ov: &mut Overlay, path: &str) -> Result<Option<Node>, Error> {
        if !shortcuts_allowed() {
            return self.zk_load(ov, path);
        }
        if let Some(n) = ov.nodes.get(path) {
            return Ok(n.clone());
        }
        let Some(meta) = self.znode_get(path)? else {
            return Ok(None);
        };
        let n = Node { stored_meta: Some(meta.clone()), meta, data: None, kv: None, kv_read: false };
        ov.nodes.insert(path.to_string(), Some(n.clone()));
        Ok(Some(n))
    }

    /// Applies a ZooKeeper write: every op in order against the overlay; if all succeed the
    /// overlay is written in one revision, otherwise nothing changes.
    pub(super) fn apply_zk(&mut self, txn: &ZkTxn) -> Result<Response, Error> {
        match (txn.ops.as_slice(), shortcuts_allowed()) {
            ([ZkOp::SetData { path, data, version }], true) => {
                if let Some(stat) = self.zk_set_alone(txn, path, data, *version)? {
                    return Ok(Response::Zk(vec![ZkOpResult::SetData { stat }]));
                }
            }
            ([ZkOp::Create { path, data, acl, mode, ttl_ms }], true) => {
                if let Some((path, stat)) = self.zk_create_alone(txn, path, data, acl, *mode, *ttl_ms)? {
                    return Ok(Response::Zk(vec![ZkOpResult::Created { path, stat }]));
                }
            }
            _ => {}
        }
        let mut ov = Overlay {
            nodes: BTreeMap::new(),
            kv: Vec::new(),
            children: Vec::new(),
            rev: self.revision() + 1,
            deleted_acls: Vec::new(),
            sessions: BTreeMap::new(),
            session_paths: Vec::new(),
        };
        let mut results = Vec::with_capacity(txn.ops.len());
        let mut failed = None;
        for (i, op) in txn.ops.iter().enumerate() {
            match self.zk_op(&mut ov, txn, op)? {
                Ok(r) => results.push(r),
                Err(code) => {
                    failed = Some((i, code));
                    break;
                }
            }
        }
        if let Some((at, code)) = failed {
            let results = (0..txn.ops.len())
                .map(|i| {
                    ZkOpResult::Error(match i.cmp(&at) {
                        std::cmp::Ordering::Less => zk_err::OK,
                        std::cmp::Ordering::Equal => code,
                        std::cmp::Ordering::Greater => zk_err::RUNTIME_INCONSISTENCY,
                    })
                })
                .collect();
            return Ok(Response::Zk(results));
        }
        self.zk_commit(ov)?;
        Ok(Response::Zk(results))
    }

    fn zk_commit(&mut self, ov: Overlay) -> Result<(), Error> {
        let mut rev = self.begin();
        // Which change of its path each gated change is (see `ReadGate`); counted only when
        // some change is gated, which few are.
        let mut changes_of: Option<HashMap<String, u32>> = ov
            .kv
            .iter()
            .any(|c| matches!(c, KvChange::Put { gate: Some(_), .. } | KvChange::Delete { gate: Some(_), .. }))
            .then(HashMap::new);
        for change in ov.kv {
            if let (Some(counts), KvChange::Put { path, gate, .. } | KvChange::Delete { path, gate }) =
                (changes_of.as_mut(), &change)
            {
                let n = counts.entry(path.clone()).or_insert(0);
                if let Some(acl) = gate {
                    let gate = crate::command::ReadGate {
                        path: path.clone(),
                        acl: acl.clone(),
                        revision: ov.rev,
                        change: Some(*n),
                    };
                    self.effects.zk_acls.push(gate);
                }
                *n += 1;
            }
            match change {
                KvChange::Put { path, data, lease, mtime_ms, gate: _, created } => {
                    let op = PutOp { key: key_of(&path), value: data, lease, ..Default::default() };
                    if created {
                        self.put_new_at(&mut rev, &op, mtime_ms)?;
                    } else {
                        self.put_at(&mut rev, &op, mtime_ms)?;
                    }
                }
                KvChange::Delete { path, gate: _ } => {
                    let key = key_of(&path);
                    if let Some(old) = self.current(&key)? {
                        self.delete_key(&mut rev, &key, old)?;
                    }
                }
                KvChange::Rewrite { path, data } => self.rewrite_value(&key_of(&path), data)?,
            }
        }
        debug_assert!(!rev.changed() || rev.main == ov.rev);
        self.end(rev);
        for (id, set) in ov.sessions {
            let row = self.leases.get(id)?.map(|r| LeaseRow::decode(r.value())).transpose()?;
            if let Some(row) = row.filter(|r| r.zk_set != Some(set)) {
                self.leases.insert(id, LeaseRow { zk_set: Some(set), ..row }.encode().as_slice())?;
            }
        }
        // The ACLs its child events are delivered under (each change's own are above): every
        // node it left in place (changed or only read: a parent's counts may have changed),
        // every node it deleted.
        for (path, node) in &ov.nodes {
            if let Some(n) = node {
                self.note_read_acl(path, &n.meta.acl, ov.rev, None);
            }
        }
        for (path, acl) in &ov.deleted_acls {
            self.note_read_acl(path, acl, ov.rev, None);
        }
        for (path, node) in ov.nodes {
            match node {
                Some(n) if n.stored_meta.as_ref() == Some(&n.meta) => {}
                Some(n) => {
                    let reaped = matches!(n.meta.kind, NodeKind::Container | NodeKind::Ttl(_));
                    self.znode_put(&path, n.meta);
                    if reaped {
                        self.zk_reap.insert(path.as_str(), ())?;
                    }
                }
                None => {
                    self.znode_put_none(&path);
                    self.zk_reap.remove(path.as_str())?;
                }
            }
        }
        Ok(())
    }

    fn zk_op(&self, ov: &mut Overlay, txn: &ZkTxn, op: &ZkOp) -> Result<Op<ZkOpResult>, Error> {
        Ok(match op {
            ZkOp::Create { path, data, acl, mode, ttl_ms } => self
                .zk_create(ov, txn, path, data, acl, *mode, *ttl_ms)?
                .map(|(path, stat)| ZkOpResult::Created { path, stat }),
            ZkOp::Delete { path, version } => {
                self.zk_delete(ov, txn, path, *version, false)?.map(|()| ZkOpResult::Deleted)
            }
            ZkOp::Reap { path } => self.zk_delete(ov, txn, path, -1, true)?.map(|()| ZkOpResult::Deleted),
            ZkOp::Fail { code } => Err(*code),
            ZkOp::SetData { path, data, version } => {
                self.zk_set_data(ov, txn, path, data, *version)?.map(|stat| ZkOpResult::SetData { stat })
            }
            ZkOp::SetAcl { path, acl, version } => {
                self.zk_set_acl(ov, txn, path, acl, *version)?.map(|stat| ZkOpResult::SetAcl { stat })
            }
            ZkOp::Check { path, version } => {
                if !valid_path(path) {
                    return Ok(Err(zk_err::BAD_ARGUMENTS));
                }
                let Some(n) = self.zk_load(ov, path)? else { return Ok(Err(zk_err::NO_NODE)) };
                if !acl_allows(&n.meta.acl, perms::READ, &txn.auth) {
                    return Ok(Err(zk_err::NO_AUTH));
                }
                let current = n.meta.stat(n.kv.as_ref()).version;
                if *version != -1 && *version != current {
                    return Ok(Err(zk_err::BAD_VERSION));
                }
                Ok(ZkOpResult::Checked)
            }
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn zk_create(
        &self,
        ov: &mut Overlay,
        txn: &ZkTxn,
        path: &str,
        data: &Option<Vec<u8>>,
        acl: &[ZkAcl],
        mode: CreateMode,
        ttl_ms: i64,
    ) -> Result<Op<(String, ZkStat)>, Error> {
        // ZooKeeper's order of checks (PrepRequestProcessor.pRequest2TxnCreate).
        if mode.is_ttl() {
            if !txn.ttl_enabled {
                return Ok(Err(zk_err::UNIMPLEMENTED));
            }
            if ttl_ms <= 0 || ttl_ms > TTL_MAX_MS {
                return Ok(Err(zk_err::BAD_ARGUMENTS));
            }
        } else if ttl_ms >= 0 {
            // Only createTTL carries a TTL (every other create sends none: -1), and only for TTL modes.
            return Ok(Err(zk_err::BAD_ARGUMENTS));
        }
        // validatePathForCreate: only a '/' and no NUL here; the whole path is validated after
        // the ACL, the parent and the sequence suffix (a sequential path may end in '/'), so a
        // bad ACL answers InvalidACL and a missing parent NoNode before a bad name does.
        if !path.contains('/') || path.contains('\0') {
            return Ok(Err(zk_err::BAD_ARGUMENTS));
        }
        let acl = match fixup_acl_shared(acl, &txn.auth) {
            Ok(a) => a,
            Err(code) => return Ok(Err(code)),
        };
        let parent_path = match path.rfind('/') {
            Some(0) => "/".to_string(),
            Some(i) => path[..i].to_string(),
            None => return Ok(Err(zk_err::BAD_ARGUMENTS)),
        };
        let Some(mut parent) = self.zk_load_meta(ov, &parent_path)? else { return Ok(Err(zk_err::NO_NODE)) };
        if !acl_allows(&parent.meta.acl, perms::CREATE, &txn.auth) {
            return Ok(Err(zk_err::NO_AUTH));
        }
        let path = if mode.is_sequential() { format!("{path}{:010}", parent.meta.creates) } else { path.to_string() };
        if !valid_path(&path) {
            return Ok(Err(zk_err::BAD_ARGUMENTS));
        }
        if path == "/" || self.zk_load(ov, &path)?.is_some() {
            return Ok(Err(zk_err::NODE_EXISTS));
        }
        if parent.meta.kind == NodeKind::Ephemeral {
            return Ok(Err(zk_err::NO_CHILDREN_FOR_EPHEMERALS));
        }
        // Where ZooKeeper checks an enforced quota (zks.checkQuota).
        if self.capped()? {
            return Ok(Err(zk_err::QUOTA_EXCEEDED));
        }
        let kind = match mode {
            CreateMode::Container | CreateMode::ContainerSequential => NodeKind::Container,
            m if m.is_ttl() => NodeKind::Ttl(ttl_ms),
            m if m.is_ephemeral() => NodeKind::Ephemeral,
            _ => NodeKind::Persistent,
        };
        let lease = if kind == NodeKind::Ephemeral {
            if txn.session_id == 0 || self.leases.get(txn.session_id)?.is_none() {
                return Ok(Err(zk_err::SESSION_EXPIRED));
            }
            txn.session_id
        } else {
            0
        };
        if kind == NodeKind::Ephemeral {
            let set = self.zk_session_set(ov, lease)?;
            let table = java_table_after_add(SESSION_TABLE_INITIAL, set.table, set.count, |cap| {
                self.zk_session_bucket(ov, lease, &path, cap)
            })?;
            ov.sessions.insert(lease, ZkSessionSet { count: set.count.saturating_add(1), table });
            ov.session_paths.push((lease, path.clone(), true));
        }
        parent.meta.child_table = self.zk_child_table_after_add(ov, &parent_path, &parent.meta, name_of(&path))?;
        parent.meta.creates = parent.meta.creates.wrapping_add(1);
        parent.meta.num_children += 1;
        parent.meta.pzxid = ov.rev;
        ov.nodes.insert(parent_path.clone(), Some(parent));
        // The stamp of this add: the transaction's revision, then its rank among the
        // transaction's child changes (a multi's creates keep their op order).
        let stamp = child_stamp(ov.rev, ov.children.len());
        ov.children.push((parent_path, name_of(&path).to_string(), true));
        let mut meta = ZnodeMeta {
            stamp,
            czxid: ov.rev,
            ctime_ms: txn.now_ms,
            mtime_ms: txn.now_ms,
            creates: 0,
            aversion: 0,
            pzxid: ov.rev,
            num_children: 0,
            kind,
            builtin: false,
            null_data: data.is_none(),
            acl,
            child_table: 0,
        };
        let sent_len = data.as_ref().map_or(0, Vec::len);
        let mut data = data.clone().unwrap_or_default();
        if let Some(target) = quota_target(&path, QUOTA_STATS) {
            // ZooKeeper's updateQuotaForPath: a new stats node's data becomes a fresh StatsTrack
            // of the subtree as it is, whatever the client wrote. The reply's Stat was copied
            // before that, so it shows the length the client sent (below).
            let (count, bytes) = self.zk_subtree_usage(ov, target)?;
            data = format!("count={count},bytes={bytes}").into_bytes();
            meta.null_data = false;
        }
        let len = data.len() as i64;
        let kv = KvState { mod_revision: ov.rev, version: 1, lease, data_len: data.len(), mtime_ms: txn.now_ms };
        let gate = read_gate(&meta.acl);
        let node = Node { meta, data: Some(data.clone()), kv: Some(kv), kv_read: true, stored_meta: None };
        let mut stat = node.meta.stat(node.kv.as_ref());
        stat.data_length = sent_len as i32;
        ov.nodes.insert(path.clone(), Some(node));
        ov.kv.push(KvChange::Put { path: path.clone(), data, lease, mtime_ms: txn.now_ms, gate, created: true });
        self.zk_quota(ov, &path, 1, len)?;
        Ok(Ok((path, stat)))
    }

    /// A create of a persistent (or persistent sequential) node alone in its transaction (a
    /// queue's producer, a config tree being written: the commonest create), written without
    /// the transaction overlay: the parent's row is read and rewritten, the node's rows
    /// written, as [`WriteTx::zk_create`] and `zk_commit` would, in the same order and with the
    /// same effects. None, with nothing written, where the general path could answer or write
    /// anything else: any refusal (the general path then finds it and answers it), another
    /// mode (ephemeral nodes change their session's set, containers and TTL nodes the reap
    /// list), a path under /zookeeper (quota nodes), or any quota set.
    /// Why: the overlay cloned the parent's row three times and the new node's path, data and
    /// row into its maps and change list, and the commit walked them again: `apply_cost`'s
    /// create 4.56–4.86 -> 4.11–4.31 µs. Not inlined: inlined into `apply_zk`, it changed how
    /// that function and its callers were compiled, and a setData at 64 clients lost 7–13 %
    /// (`benches/ab.sh`, 3 rounds); kept apart, set is unchanged and create at 64 clients gains
    /// +0..+4 % with less server CPU per create.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn zk_create_alone(
        &mut self,
        txn: &ZkTxn,
        path: &str,
        data: &Option<Vec<u8>>,
        acl: &[ZkAcl],
        mode: CreateMode,
        ttl_ms: i64,
    ) -> Result<Option<(String, ZkStat)>, Error> {
        if !matches!(mode, CreateMode::Persistent | CreateMode::PersistentSequential)
            || ttl_ms >= 0
            || path.starts_with("/zookeeper")
            || path.contains('\0')
        {
            return Ok(None);
        }
        let Some(slash) = path.rfind('/') else { return Ok(None) };
        let Ok(acl) = fixup_acl_shared(acl, &txn.auth) else { return Ok(None) };
        let parent_path = if slash == 0 { "/" } else { &path[..slash] };
        let Some(mut parent) = self.znode_get(parent_path)? else { return Ok(None) };
        if !acl_allows(&parent.acl, perms::CREATE, &txn.auth) || parent.kind == NodeKind::Ephemeral {
            return Ok(None);
        }
        let path = if mode.is_sequential() { format!("{path}{:010}", parent.creates) } else { path.to_string() };
        // Whether the node exists is asked of its key's insert, below (`insert_new_row`).
        if !valid_path(&path) || path == "/" || self.capped()? {
            return Ok(None);
        }
        if self.quotas_exist(&Overlay::default())? {
            return Ok(None);
        }
        let mut rev = self.begin();
        let name = name_of(&path);
        parent.child_table = self.zk_child_table_after_add(&Overlay::default(), parent_path, &parent, name)?;
        parent.creates = parent.creates.wrapping_add(1);
        parent.num_children += 1;
        parent.pzxid = rev.main;
        let meta = ZnodeMeta {
            stamp: child_stamp(rev.main, 0),
            czxid: rev.main,
            ctime_ms: txn.now_ms,
            mtime_ms: txn.now_ms,
            creates: 0,
            aversion: 0,
            pzxid: rev.main,
            num_children: 0,
            kind: NodeKind::Persistent,
            builtin: false,
            null_data: data.is_none(),
            acl,
            child_table: 0,
        };
        let value = data.clone().unwrap_or_default();
        let kv = KvState { mod_revision: rev.main, version: 1, lease: 0, data_len: value.len(), mtime_ms: txn.now_ms };
        let stat = meta.stat(Some(&kv));
        let op = PutOp { key: key_of(&path), value, ..Default::default() };
        // The node exists after all (a sequential name taken by hand, or a create of a live
        // path): nothing was changed, and the general path answers NodeExists.
        let Some(cur) = self.insert_new_row(&mut rev, &op, txn.now_ms)? else { return Ok(None) };
        debug_assert!(!self.znode_exists(&path)?, "a znode without a key: {path}");
        // zk_commit's effects in its order: the key's gate, the key's event, the ACLs of the
        // nodes left in place (the parent sorts first); then the metadata rows.
        if let Some(acl) = read_gate(&meta.acl) {
            let gate = crate::command::ReadGate { path: path.clone(), acl, revision: rev.main, change: Some(0) };
            self.effects.zk_acls.push(gate);
        }
        self.put_recorded(&rev, &op, None, cur)?;
        let revision = rev.main;
        self.end(rev);
        self.note_read_acl(parent_path, &parent.acl, revision, None);
        self.note_read_acl(&path, &meta.acl, revision, None);
        let reaped = matches!(parent.kind, NodeKind::Container | NodeKind::Ttl(_));
        self.znode_put(parent_path, parent);
        if reaped {
            self.zk_reap.insert(parent_path, ())?;
        }
        self.znode_put(&path, meta);
        Ok(Some((path, stat)))
    }

    fn zk_delete(&self, ov: &mut Overlay, txn: &ZkTxn, path: &str, version: i32, reap: bool) -> Result<Op<()>, Error> {
        if !path.contains('/') || path.contains('\0') || is_special(path) {
            return Ok(Err(zk_err::BAD_ARGUMENTS));
        }
        let parent_path = parent_of(path).to_string();
        let Some(mut parent) = self.zk_load_meta(ov, &parent_path)? else { return Ok(Err(zk_err::NO_NODE)) };
        if !reap && !acl_allows(&parent.meta.acl, perms::DELETE, &txn.auth) {
            return Ok(Err(zk_err::NO_AUTH));
        }
        let Some(node) = self.zk_load(ov, path)? else { return Ok(Err(zk_err::NO_NODE)) };
        if reap {
            // The reaper's proposal raced with a change: re-check what made it a candidate.
            if node.meta.num_children > 0 {
                return Ok(Err(zk_err::NOT_EMPTY));
            }
            let due = match node.meta.kind {
                NodeKind::Container => node.meta.creates > 0,
                NodeKind::Ttl(ttl) => txn.now_ms - node.kv.as_ref().map_or(node.meta.mtime_ms, |k| k.mtime_ms) > ttl,
                _ => false,
            };
            if !due {
                return Ok(Err(zk_err::BAD_VERSION));
            }
        } else {
            let current = node.meta.stat(node.kv.as_ref()).version;
            if version != -1 && version != current {
                return Ok(Err(zk_err::BAD_VERSION));
            }
            if node.meta.num_children > 0 {
                return Ok(Err(zk_err::NOT_EMPTY));
            }
        }
        if let (NodeKind::Ephemeral, Some(owner)) = (node.meta.kind, node.kv.as_ref().map(|k| k.lease)) {
            // DataTree.deleteNode takes the path out of its owner's set (the set stays).
            let set = self.zk_session_set(ov, owner)?;
            ov.sessions.insert(owner, ZkSessionSet { count: set.count.saturating_sub(1), ..set });
            ov.session_paths.push((owner, path.to_string(), false));
        }
        parent.meta.num_children -= 1;
        parent.meta.pzxid = ov.rev;
        ov.nodes.insert(parent_path.clone(), Some(parent));
        ov.children.push((parent_path, name_of(path).to_string(), false));
        ov.deleted_acls.push((path.to_string(), node.meta.acl.clone()));
        ov.nodes.insert(path.to_string(), None);
        ov.kv.push(KvChange::Delete { path: path.to_string(), gate: read_gate(&node.meta.acl) });
        self.zk_quota(ov, path, -1, -(node.kv.as_ref().map_or(0, |k| k.data_len) as i64))?;
        Ok(Ok(()))
    }

    fn zk_set_data(
        &self,
        ov: &mut Overlay,
        txn: &ZkTxn,
        path: &str,
        data: &Option<Vec<u8>>,
        version: i32,
    ) -> Result<Op<ZkStat>, Error> {
        if !valid_path(path) {
            return Ok(Err(zk_err::BAD_ARGUMENTS));
        }
        let Some(mut node) = self.zk_load(ov, path)? else { return Ok(Err(zk_err::NO_NODE)) };
        if !acl_allows(&node.meta.acl, perms::WRITE, &txn.auth) {
            return Ok(Err(zk_err::NO_AUTH));
        }
        // Where ZooKeeper checks an enforced quota (zks.checkQuota), before the version.
        if self.capped()? {
            return Ok(Err(zk_err::QUOTA_EXCEEDED));
        }
        let current = node.meta.stat(node.kv.as_ref()).version;
        if version != -1 && version != current {
            return Ok(Err(zk_err::BAD_VERSION));
        }
        node.meta.null_data = data.is_none();
        let data = data.as_deref().unwrap_or_default();
        let lease = node.kv.as_ref().map(|k| k.lease).unwrap_or(0);
        let version = node.kv.as_ref().map(|k| k.version).unwrap_or(0) + 1;
        let bytes_diff = data.len() as i64 - node.kv.as_ref().map_or(0, |k| k.data_len) as i64;
        node.kv = Some(KvState { mod_revision: ov.rev, version, lease, data_len: data.len(), mtime_ms: txn.now_ms });
        node.data = Some(data.to_vec());
        let stat = node.meta.stat(node.kv.as_ref());
        let gate = read_gate(&node.meta.acl);
        ov.nodes.insert(path.to_string(), Some(node));
        ov.kv.push(KvChange::Put {
            path: path.to_string(),
            data: data.to_vec(),
            lease,
            mtime_ms: txn.now_ms,
            gate,
            created: false,
        });
        self.zk_quota(ov, path, 0, bytes_diff)?;
        Ok(Ok(stat))
    }

    /// A setData alone in its transaction (a config update, a counter's compare-and-set: the
    /// commonest ZooKeeper write), written without the transaction overlay: the node's row is
    /// read, and its `kv` row checked (the version) and rewritten in place, in one descent.
    /// What it writes, answers and publishes is what [`WriteTx::zk_set_data`] and
    /// `zk_commit` would; None, with nothing written, where it would differ or fail (no node,
    /// no key, an ACL, quota or version refusal, the data turning null or back, quotas to
    /// count): the general path then runs the op and gives the answer.
    /// Why: the overlay read the `kv` row and then `put_at` found it again to rewrite it, and
    /// copied the node, its path and its data into the overlay and the change list.
    fn zk_set_alone(
        &mut self,
        txn: &ZkTxn,
        path: &str,
        data: &Option<Vec<u8>>,
        version: i32,
    ) -> Result<Option<ZkStat>, Error> {
        if !valid_path(path) {
            return Ok(None);
        }
        let Some(meta) = self.znode_get(path)? else { return Ok(None) };
        if meta.null_data != data.is_none() || !acl_allows(&meta.acl, perms::WRITE, &txn.auth) || self.capped()? {
            return Ok(None);
        }
        if !path.starts_with("/zookeeper") && self.quotas_exist(&Overlay::default())? {
            return Ok(None);
        }
        let op = PutOp {
            key: key_of(path),
            value: data.as_deref().unwrap_or_default().to_vec(),
            ignore_lease: true,
            ..Default::default()
        };
        let mut rev = self.begin();
        let checked = |old: &CurrentKv| version == -1 || version == meta.stat(Some(&KvState::of(old))).version;
        let Some(state) = self.put_live_if(&mut rev, &op, txn.now_ms, checked)? else { return Ok(None) };
        if let Some(acl) = read_gate(&meta.acl) {
            let gate = crate::command::ReadGate { path: path.to_string(), acl, revision: rev.main, change: Some(0) };
            self.effects.zk_acls.push(gate);
        }
        let revision = rev.main;
        self.end(rev);
        self.note_read_acl(path, &meta.acl, revision, None);
        Ok(Some(meta.stat(Some(&KvState::of(&state)))))
    }

    fn zk_set_acl(
        &self,
        ov: &mut Overlay,
        txn: &ZkTxn,
        path: &str,
        acl: &[ZkAcl],
        version: i32,
    ) -> Result<Op<ZkStat>, Error> {
        if !valid_path(path) {
            return Ok(Err(zk_err::BAD_ARGUMENTS));
        }
        let acl = match fixup_acl_shared(acl, &txn.auth) {
            Ok(a) => a,
            Err(code) => return Ok(Err(code)),
        };
        let Some(mut node) = self.zk_load(ov, path)? else { return Ok(Err(zk_err::NO_NODE)) };
        if !acl_allows(&node.meta.acl, perms::ADMIN, &txn.auth) {
            return Ok(Err(zk_err::NO_AUTH));
        }
        if version != -1 && version != node.meta.aversion {
            return Ok(Err(zk_err::BAD_VERSION));
        }
        node.meta.aversion += 1;
        node.meta.acl = acl;
        let stat = node.meta.stat(node.kv.as_ref());
        ov.nodes.insert(path.to_string(), Some(node));
        Ok(Ok(stat))
    }

    /// A node as the overlay or the table has it, without adding it to the overlay.
    fn zk_peek(&self, ov: &Overlay, path: &str) -> Result<Option<ZnodeMeta>, Error> {
        if let Some(n) = ov.nodes.get(path) {
            return Ok(n.as_ref().map(|n| n.meta.clone()));
        }
        self.znode_get(path)
    }

    /// ZooKeeper's quota bookkeeping (DataTree.updateCountBytes): a change under a path with a
    /// quota (a `zookeeper_limits` node under /zookeeper/quota) adjusts the count and bytes in
    /// that quota's `zookeeper_stats` node, in place as ZooKeeper does: the node's version,
    /// mzxid and mtime stay, and no watch fires (see `WriteTx::rewrite_value`). A setData that
    /// keeps the data's length has zero diffs and still rewrites the text in StatsTrack's
    /// format, as ZooKeeper does ("" becomes "count=-1,bytes=-1"); only a text that comes out
    /// the same is not written again.
    fn zk_quota(&self, ov: &mut Overlay, path: &str, count_diff: i64, bytes_diff: i64) -> Result<(), Error> {
        if path.starts_with("/zookeeper") {
            return Ok(());
        }
        // Almost every tree has no quota: one lookup says so, once per transaction.
        if !self.quotas_exist(ov)? {
            return Ok(());
        }
        let mut at = path;
        while at != "/" {
            if self.zk_peek(ov, &format!("{QUOTA_ROOT}{at}/{QUOTA_LIMITS}"))?.is_some() {
                let stats_path = format!("{QUOTA_ROOT}{at}/{QUOTA_STATS}");
                if let Some(mut node) = self.zk_load(ov, &stats_path)? {
                    let old = match node.data.take() {
                        Some(d) => d,
                        None => self.current(&key_of(&stats_path))?.map(|c| c.value).unwrap_or_default(),
                    };
                    let Some(data) = updated_stats(&old, count_diff, bytes_diff) else { return Ok(()) };
                    if data == old {
                        return Ok(());
                    }
                    if let Some(k) = node.kv.as_mut() {
                        k.data_len = data.len();
                    }
                    node.data = Some(data.clone());
                    ov.kv.push(KvChange::Rewrite { path: stats_path.clone(), data });
                    ov.nodes.insert(stats_path, Some(node));
                }
                return Ok(());
            }
            at = parent_of(at);
        }
        Ok(())
    }

    /// (nodes, data bytes) of the subtree at `path`, the node itself included, as this
    /// transaction sees it: the tables (earlier commands of the batch included), then the
    /// changes of this transaction's earlier ops (a multi's delete before its stats create).
    fn zk_subtree_usage(&self, ov: &Overlay, path: &str) -> Result<(i64, i64), Error> {
        let stored_len = |p: &str| -> Result<Option<i64>, Error> {
            if !self.znode_exists(p)? {
                return Ok(None);
            }
            Ok(Some(self.current_state(&key_of(p))?.map_or(0, |c| i64::from(c.value_len))))
        };
        let (mut count, mut bytes) = (0i64, 0i64);
        let mut todo = vec![path.to_string()];
        while let Some(p) = todo.pop() {
            let Some(len) = stored_len(&p)? else { continue };
            count += 1;
            bytes += len;
            for name in self.zk_stored_children(&p)? {
                todo.push(join_path(&p, &name));
            }
        }
        for (p, node) in &ov.nodes {
            let inside = p == path || (p.starts_with(path) && (path == "/" || p[path.len()..].starts_with('/')));
            if !inside {
                continue;
            }
            let stored = stored_len(p)?;
            let now = match node {
                // A parent loaded without its key's state: its data is as stored.
                Some(n) if !n.kv_read => Some(stored.unwrap_or(0)),
                Some(n) => Some(n.kv.as_ref().map_or(0, |k| k.data_len as i64)),
                None => None,
            };
            match (stored, now) {
                (Some(was), Some(len)) => bytes += len - was,
                (Some(was), None) => {
                    count -= 1;
                    bytes -= was;
                }
                (None, Some(len)) => {
                    count += 1;
                    bytes += len;
                }
                (None, None) => {}
            }
        }
        Ok((count, bytes))
    }

    /// The names of `parent`'s children as the tables show them to this transaction: its
    /// `zk_nodes` range, and the rows this transaction changed and has not written yet
    /// (`znode_rows`: earlier commands of its batch). Only where it rarely runs (a quota's
    /// subtree, a small children table's bucket): it walks every changed row.
    fn zk_stored_children(&self, parent: &str) -> Result<Vec<String>, Error> {
        let mut names = std::collections::BTreeSet::new();
        let (start, end) = children_range(parent);
        for row in self.znodes.range(start.as_slice()..end.as_slice())? {
            let (k, _) = row?;
            if let Some((_, name)) = split_node_key(k.value())? {
                names.insert(name.to_string());
            }
        }
        for (path, row) in self.znode_rows.borrow().iter() {
            if path != "/" && parent_of(path) == parent {
                if row.is_some() {
                    names.insert(name_of(path).to_string());
                } else {
                    names.remove(name_of(path));
                }
            }
        }
        Ok(names.into_iter().collect())
    }

    /// The children table of `parent` once `name` is added (see [`java_table_after_add`]),
    /// counting the bucket's names as this transaction sees the children.
    fn zk_child_table_after_add(&self, ov: &Overlay, parent: &str, meta: &ZnodeMeta, name: &str) -> Result<u32, Error> {
        java_table_after_add(CHILD_TABLE_INITIAL, meta.child_table, meta.num_children.max(0) as u32, |cap| {
            let stored =
                self.zk_stored_children(parent)?.into_iter().filter_map(|n| in_bucket(name, cap, &n)).collect();
            let pending = ov.children.iter().filter(|(p, _, _)| p == parent).map(|(_, n, add)| (n.as_str(), *add));
            Ok(count_in_bucket(name, cap, stored, pending))
        })
    }

    /// A session's ephemeral set as this transaction sees it. A row that does not keep it yet
    /// (a session without ephemerals so far, or of an older store) counts what the session
    /// holds, in the smallest table for that.
    fn zk_session_set(&self, ov: &Overlay, id: i64) -> Result<ZkSessionSet, Error> {
        if let Some(set) = ov.sessions.get(&id) {
            return Ok(*set);
        }
        let row = self.leases.get(id)?.map(|r| LeaseRow::decode(r.value())).transpose()?;
        if let Some(set) = row.and_then(|r| r.zk_set) {
            return Ok(set);
        }
        // Counted once here; from then on the row keeps the count, so an ephemeral create
        // never scans a session's keys (a session may hold thousands).
        let mut count = 0u32;
        for row in self.lease_keys.range::<(i64, &[u8])>((id, ZK_RANGE_START)..(id, ZK_RANGE_END))? {
            row?;
            count = count.saturating_add(1);
        }
        Ok(ZkSessionSet { count, table: java_table_at_least(SESSION_TABLE_INITIAL, u64::from(count)) })
    }

    /// How many of a session's ephemeral paths (as this transaction sees them) share `path`'s
    /// bucket in a table of `cap` buckets.
    fn zk_session_bucket(&self, ov: &Overlay, id: i64, path: &str, cap: u32) -> Result<u32, Error> {
        let mut stored = Vec::new();
        for row in self.lease_keys.range::<(i64, &[u8])>((id, ZK_RANGE_START)..(id, ZK_RANGE_END))? {
            let (k, _) = row?;
            stored.extend(path_of(k.value().1).and_then(|p| in_bucket(path, cap, p)));
        }
        let pending = ov.session_paths.iter().filter(|(o, _, _)| *o == id).map(|(_, p, add)| (p.as_str(), *add));
        Ok(count_in_bucket(path, cap, stored, pending))
    }

    /// A lease revoke (session close or expiry) deletes an ephemeral znode: its key goes with
    /// the other keys of the lease, and here its parent learns of it, its metadata goes, and
    /// a quota over it counts it out (ZooKeeper's killSession removes each ephemeral through
    /// deleteNode, which updates the quota stats as any delete does). `data_len` is the
    /// length of the deleted value.
    pub(super) fn zk_forget_ephemeral(
        &mut self,
        key: &[u8],
        revision: i64,
        data_len: u32,
        quota: &mut RevokeQuota,
    ) -> Result<(), Error> {
        let Some(path) = path_of(key) else { return Ok(()) };
        let path = path.to_string();
        let parent_path = parent_of(&path).to_string();
        if let Some(node) = self.znode_get(&path)? {
            self.note_read_acl(&path, &node.acl, revision, Some(0));
        }
        if let Some(mut parent) = self.znode_get(&parent_path)? {
            parent.num_children -= 1;
            parent.pzxid = revision;
            self.note_read_acl(&parent_path, &parent.acl, revision, None);
            self.znode_put(&parent_path, parent);
        }
        self.znode_put_none(&path);
        quota.0.rev = revision;
        self.zk_quota(&mut quota.0, &path, -1, -i64::from(data_len))
    }

    /// Records the ACL that gates the watch events of `path` at `revision` (`Effects::zk_acls`;
    /// `change` as in `ReadGate`), unless anyone may read it, which is every node's but a few:
    /// most writes record nothing.
    fn note_read_acl(&mut self, path: &str, acl: &Arc<Vec<ZkAcl>>, revision: i64, change: Option<u32>) {
        if let Some(acl) = read_gate(acl) {
            self.effects.zk_acls.push(crate::command::ReadGate { path: path.to_string(), acl, revision, change });
        }
    }

    /// Writes the quota stats a lease revoke changed, in the revoke's revision.
    pub(super) fn zk_revoke_quota_commit(&mut self, quota: RevokeQuota) -> Result<(), Error> {
        // Quota bookkeeping (zk_quota) only ever rewrites stats nodes in place.
        debug_assert!(quota.0.kv.iter().all(|c| matches!(c, KvChange::Rewrite { .. })));
        for change in quota.0.kv {
            if let KvChange::Rewrite { path, data } = change {
                self.rewrite_value(&key_of(&path), data)?;
            }
        }
        Ok(())
    }
}

/// The quota stats one lease revoke changes (see [`WriteTx::zk_forget_ephemeral`]).
#[derive(Default)]
pub(super) struct RevokeQuota(Overlay);

const QUOTA_ROOT: &str = "/zookeeper/quota";
const QUOTA_LIMITS: &str = "zookeeper_limits";
const QUOTA_STATS: &str = "zookeeper_stats";

/// For `/zookeeper/quota/<p>/<leaf>`, the quota'd path `<p>`.
fn quota_target<'a>(path: &'a str, leaf: &str) -> Option<&'a str> {
    let rest = path.strip_prefix(QUOTA_ROOT)?;
    let target = rest.strip_suffix(leaf)?.strip_suffix('/')?;
    (target.starts_with('/') && target.len() > 1).then_some(target)
}

/// ZooKeeper's quota stats update (DataTree.updateQuotaStat): the stats text parsed as its
/// StatsTrack parses it, count and bytes moved by the diffs, and the text written anew in
/// StatsTrack's own format: "count=C,bytes=B", then any other keys, sorted, after an extra
/// "=" ("count=1,bytes=2=;countHardLimit=5"). A text StatsTrack cannot parse is left as it
/// is: ZooKeeper 3.8.0's SyncThread dies on it (and the server with it).
fn updated_stats(data: &[u8], count_diff: i64, bytes_diff: i64) -> Option<Vec<u8>> {
    let mut stats = parse_stats_track(data)?;
    for (key, diff) in [("count", count_diff), ("bytes", bytes_diff)] {
        let v = stats.get(key).copied().unwrap_or(-1);
        stats.insert(key.to_string(), v + diff);
    }
    let mut out = format!("count={},bytes={}", stats["count"], stats["bytes"]);
    let mut rest = stats.iter().filter(|(k, _)| *k != "count" && *k != "bytes").peekable();
    if rest.peek().is_some() {
        out.push('=');
        for (k, v) in rest {
            out.push_str(&format!(";{k}={v}"));
        }
    }
    Some(out.into_bytes())
}

/// StatsTrack(String): pairs split on runs of ',' and ';' (Java's split: a leading empty
/// piece stays, trailing ones go), each split on '=' (the same way); the value is the second
/// piece, -1 if empty. None where StatsTrack throws: a pair without a second piece, a value
/// that is not a long.
fn parse_stats_track(data: &[u8]) -> Option<std::collections::BTreeMap<String, i64>> {
    fn java_split(s: &str, sep: impl Fn(char) -> bool) -> Vec<&str> {
        let mut parts: Vec<&str> = s.split(sep).collect();
        while parts.len() > 1 && parts.last() == Some(&"") {
            parts.pop();
        }
        parts
    }
    let text = std::str::from_utf8(data).ok()?;
    let mut stats = std::collections::BTreeMap::new();
    if text.is_empty() {
        return Some(stats);
    }
    // Runs of separators are one separator: split on each, then drop the empty pieces
    // between two separators (not a leading one).
    let pairs: Vec<&str> = java_split(text, |c| c == ',' || c == ';')
        .into_iter()
        .enumerate()
        .filter(|(i, p)| *i == 0 || !p.is_empty())
        .map(|(_, p)| p)
        .collect();
    for pair in pairs {
        let kv = java_split(pair, |c| c == '=');
        let value = kv.get(1)?;
        let value = if value.is_empty() { -1 } else { value.parse::<i64>().ok()? };
        stats.insert(kv[0].to_string(), value);
    }
    Some(stats)
}

/// The longest TTL ZooKeeper accepts (its 40-bit TTL field, in ms).
pub const TTL_MAX_MS: i64 = 0x00ff_ffff_ffff;

// ---------------------------------------------------------------------------------------------
// Reads

/// A node's metadata, its key's state (if it has a key) and its data.
pub(super) type NodeRead = (ZnodeMeta, Option<KvState>, Vec<u8>);

/// A read of the tree on one read view (see [`super::ReadView`]).
pub(super) fn read_node<Z, C>(znodes: &Z, current: C, path: &str) -> Result<Option<NodeRead>, StoreError>
where
    Z: ReadableTable<&'static [u8], &'static [u8]>,
    C: FnOnce(&[u8]) -> Result<Option<(KvState, Vec<u8>)>, StoreError>,
{
    let Some(row) = znodes.get(node_key(path).as_slice())? else { return Ok(None) };
    let meta = ZnodeMeta::decode_row(row.value())?;
    drop(row);
    let (kv, data) = match current(&key_of(path))? {
        Some((kv, data)) => (Some(kv), data),
        None => (None, Vec::new()),
    };
    Ok(Some((meta, kv, data)))
}

/// A `zk_nodes` row.
pub(super) fn decode_node_row(b: &[u8]) -> Result<ZnodeMeta, StoreError> {
    ZnodeMeta::decode_row(b)
}

/// A `zk_nodes` row as a raft snapshot carries it: (the metadata without the stamp, the
/// stamp); see [`ZnodeMeta::encode`].
pub(super) fn split_node_row(b: &[u8]) -> Result<(&[u8], u64), StoreError> {
    let (stamp, meta) = split_stamp(b)?;
    Ok((meta, stamp))
}

/// A `zk_nodes` row from a raft snapshot's metadata row and stamp ([`split_node_row`]).
pub(super) fn join_node_row(meta: &[u8], stamp: u64) -> Vec<u8> {
    let mut row = stamp.to_le_bytes().to_vec();
    row.extend_from_slice(meta);
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: a znode row decodes to the metadata it was encoded from, whatever its ACL, and a
    /// row with ZooKeeper's open ACL shares one list instead of decoding it. Method: round
    /// trips of the open ACL, the open ACL with other permissions, two entries, none.
    #[test]
    fn znode_rows_round_trip_and_share_the_open_acl() {
        let meta = |acl: Vec<ZkAcl>| ZnodeMeta {
            stamp: 0,
            czxid: 3,
            ctime_ms: 4,
            mtime_ms: 5,
            creates: 6,
            aversion: 7,
            pzxid: 8,
            num_children: 9,
            kind: NodeKind::Ttl(10),
            builtin: false,
            null_data: true,
            acl: Arc::new(acl),
            child_table: 16,
        };
        let world = |perms| ZkAcl { perms, scheme: "world".into(), id: "anyone".into() };
        let digest = ZkAcl { perms: perms::READ, scheme: "digest".into(), id: "u:h".into() };
        for acl in [open_acl(), vec![world(perms::READ)], vec![world(perms::ALL), digest], vec![]] {
            let m = meta(acl.clone());
            let back = ZnodeMeta::decode(&m.encode()).unwrap();
            assert_eq!(back, m, "{acl:?}");
            let shared = OPEN_ACL.with(|open| Arc::ptr_eq(open, &back.acl));
            assert_eq!(shared, acl == open_acl(), "{acl:?}");
        }
    }

    /// Goal: quota stats texts updated as ZooKeeper's StatsTrack rewrites them. Method: texts
    /// and the diffs, against what StatsTrack(String) + setCount/setBytes + toString give.
    #[test]
    fn quota_stats_rewrite_like_statstrack() {
        let up = |t: &str| updated_stats(t.as_bytes(), 1, 10).map(|v| String::from_utf8(v).unwrap());
        assert_eq!(up("count=2,bytes=5").as_deref(), Some("count=3,bytes=15"));
        assert_eq!(up("").as_deref(), Some("count=0,bytes=9"));
        // zero diffs (a setData that keeps the length) still give StatsTrack's format
        let zero = |t: &str| updated_stats(t.as_bytes(), 0, 0).map(|v| String::from_utf8(v).unwrap());
        assert_eq!(zero("").as_deref(), Some("count=-1,bytes=-1"));
        assert_eq!(zero("bytes=3;count=1").as_deref(), Some("count=1,bytes=3"));
        assert_eq!(up("bytes=5;count=2").as_deref(), Some("count=3,bytes=15"));
        assert_eq!(up("count=2,,bytes==7").as_deref(), Some("count=3,bytes=9"));
        assert_eq!(
            up("count=1,bytes=2,countHardLimit=5,a=1").as_deref(),
            Some("count=2,bytes=12=;a=1;countHardLimit=5")
        );
        // Where StatsTrack throws (and ZooKeeper's SyncThread dies), the text stays.
        for bad in ["x", "count=", "bytes=,count=1", ",count=1", "count=x", "count=1,bytes"] {
            assert_eq!(up(bad), None, "{bad}");
        }
    }

    #[test]
    fn paths_validate_like_zookeeper() {
        for ok in ["/", "/a", "/a/b", "/a.b", "/..a", "/é", "/a~"] {
            assert!(valid_path(ok), "{ok}");
        }
        let bad_chars = ["/a\0b", "/a\u{1}", "/a\u{1f}", "/a\u{7f}", "/a\u{9f}", "/a\u{e000}", "/é\u{1}", "/a\u{fff0}"];
        for bad in ["", "a", "/a/", "//", "/a//b", "/.", "/a/.."].into_iter().chain(bad_chars) {
            assert!(!valid_path(bad), "{bad:?}");
        }
    }

    #[test]
    fn acl_rules() {
        let world = ZkAcl { perms: perms::ALL, scheme: "world".into(), id: "anyone".into() };
        assert_eq!(fixup_acl(&[world.clone(), world.clone()], &[]), Ok(vec![world.clone()]));
        assert_eq!(fixup_acl(&[], &[]), Err(zk_err::INVALID_ACL));
        // The open ACL (also repeated) is the shared list; anything else is fixup_acl's.
        let shared = |acl: &[ZkAcl]| OPEN_ACL.with(|open| Arc::ptr_eq(open, &fixup_acl_shared(acl, &[]).unwrap()));
        assert!(shared(&[world.clone(), world.clone()]));
        let one = std::slice::from_ref(&world);
        assert_eq!(*fixup_acl_shared(one, &[]).unwrap(), fixup_acl(one, &[]).unwrap());
        assert!(!shared(&[ZkAcl { perms: perms::READ, ..world.clone() }]));
        assert_eq!(fixup_acl_shared(&[], &[]), Err(zk_err::INVALID_ACL));
        let auth = ZkAcl { perms: perms::READ, scheme: "auth".into(), id: "".into() };
        assert_eq!(
            fixup_acl(std::slice::from_ref(&auth), &[("ip".into(), "127.0.0.1".into())]),
            Err(zk_err::INVALID_ACL)
        );
        let me = vec![("ip".to_string(), "127.0.0.1".to_string()), ("digest".to_string(), "u:h".to_string())];
        assert_eq!(
            fixup_acl(&[auth], &me),
            Ok(vec![ZkAcl { perms: perms::READ, scheme: "digest".into(), id: "u:h".into() }])
        );
        let digest = |id: &str| ZkAcl { perms: perms::ALL, scheme: "digest".into(), id: id.into() };
        assert!(fixup_acl(&[digest("u:")], &[]).is_err());
        assert!(fixup_acl(&[digest("u:a:b")], &[]).is_err());
        let ip = |id: &str| ZkAcl { perms: perms::READ, scheme: "ip".into(), id: id.into() };
        assert!(fixup_acl(&[ip("10.0.0.0/8")], &[]).is_ok());
        assert!(fixup_acl(&[ip("nonsense")], &[]).is_err());
        assert!(acl_allows(&[ip("127.0.0.0/8")], perms::READ, &me));
        assert!(!acl_allows(&[ip("10.0.0.0/8")], perms::READ, &me));
        assert!(!acl_allows(&[ip("127.0.0.1")], perms::WRITE, &me));
        assert!(acl_allows(&[digest("u:h")], perms::WRITE, &me));
    }

    /// SASL identities (ZooKeeper's SASLAuthenticationProvider): sasl ACLs hold Kerberos-style
    /// names, `auth` expands to the session's sasl id, the id matches exactly, and the SASL user
    /// "super" matches every sasl ACL.
    #[test]
    fn sasl_acls() {
        let sasl = |id: &str| ZkAcl { perms: perms::ALL, scheme: "sasl".into(), id: id.into() };
        for ok in ["jaasuser", "client@KAZOOTEST.ORG", "zookeeper/127.0.0.1@KAZOOTEST.ORG", "a@", ""] {
            assert_eq!(fixup_acl(&[sasl(ok)], &[]), Ok(vec![sasl(ok)]), "{ok}");
        }
        for bad in ["a@b@c", "a/b/c@R", "a@R/x"] {
            assert_eq!(fixup_acl(&[sasl(bad)], &[]), Err(zk_err::INVALID_ACL), "{bad}");
        }
        let me = vec![("ip".to_string(), "127.0.0.1".to_string()), ("sasl".to_string(), "jaasuser".to_string())];
        let auth = ZkAcl { perms: perms::ALL, scheme: "auth".into(), id: "".into() };
        assert_eq!(fixup_acl(&[auth], &me), Ok(vec![sasl("jaasuser")]));
        assert!(acl_allows(&[sasl("jaasuser")], perms::READ, &me));
        assert!(!acl_allows(&[sasl("other")], perms::READ, &me));
        assert!(!acl_allows(&[sasl("jaasuser")], perms::READ, &[("ip".into(), "127.0.0.1".into())]));
        let su = [("sasl".to_string(), "super".to_string())];
        assert!(acl_allows(&[sasl("other")], perms::ADMIN, &su));
        let digest = ZkAcl { perms: perms::ALL, scheme: "digest".into(), id: "u:h".into() };
        assert!(!acl_allows(&[digest], perms::READ, &su), "only sasl ACLs");
    }

    #[test]
    fn range_guard() {
        assert!(range_touches_znodes(b"/zk/a", b""));
        assert!(!range_touches_znodes(b"/zkx", b""));
        assert!(range_touches_znodes(b"", b"\0"));
        assert!(range_touches_znodes(b"/", b"0"));
        assert!(!range_touches_znodes(b"/zk0", b"\0"));
        assert!(!range_touches_znodes(b"/a", b"/b"));
        assert!(!range_touches_znodes(b"/zj", b"/zk/"));
    }

    /// Goal: a closed session's ephemerals go in the order ZooKeeper 3.8.0 deletes them (both
    /// sets were seen in these orders from it), etcd keys first.
    #[test]
    fn ephemerals_are_deleted_in_java_hash_set_order() {
        let kv = |rev: i64| {
            Some(CurrentKv {
                create_revision: rev,
                mod_main: rev,
                mod_sub: 0,
                version: 1,
                lease: 7,
                mtime_ms: 0,
                value_len: 0,
                value: Vec::new(),
            })
        };
        let mut keys = vec![
            (key_of("/s/a/x0000000000"), kv(3)),
            (key_of("/s/a0000000006"), kv(2)),
            (b"etcd-b".to_vec(), kv(9)),
            (key_of("/s/b0000000007"), kv(1)),
            (b"etcd-a".to_vec(), kv(8)),
        ];
        let stamps: std::collections::HashMap<String, u64> = keys
            .iter()
            .filter_map(|(k, c)| Some((path_of(k)?.to_string(), child_stamp(c.as_ref()?.create_revision, 0))))
            .collect();
        ephemeral_delete_order(&mut keys, 0, |p| stamps[p]);
        let order: Vec<Vec<u8>> = keys.into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            order,
            [
                b"etcd-a".to_vec(),
                b"etcd-b".to_vec(),
                key_of("/s/b0000000007"),
                key_of("/s/a0000000006"),
                key_of("/s/a/x0000000000")
            ]
        );
        // Four: /s/a/x..4 and /t/c..4 share a bucket of both tables (by creation), /t/c..9
        // and /t/c..7 come after them in the clone's 8 buckets though before them in the 16.
        let mut keys = vec![
            (key_of("/t/c0000000009"), kv(20)),
            (key_of("/t/c0000000007"), kv(15)),
            (key_of("/t/c0000000004"), kv(11)),
            (key_of("/s/a/x0000000004"), kv(10)),
        ];
        let stamps: std::collections::HashMap<String, u64> = keys
            .iter()
            .filter_map(|(k, c)| Some((path_of(k)?.to_string(), child_stamp(c.as_ref()?.create_revision, 0))))
            .collect();
        ephemeral_delete_order(&mut keys, 0, |p| stamps[p]);
        let order: Vec<Vec<u8>> = keys.into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            order,
            [key_of("/s/a/x0000000004"), key_of("/t/c0000000004"), key_of("/t/c0000000009"), key_of("/t/c0000000007")]
        );
    }

    /// Goal: `zk_nodes` keys name each path once, a node's children are exactly its range
    /// (not its grandchildren, nor a sibling whose name extends its own), and a string that is
    /// not a path names no row. Method: keys of chosen paths, sorted as redb sorts them.
    #[test]
    fn node_keys_put_each_nodes_children_in_one_range() {
        assert_eq!(node_key("/"), b"");
        assert_eq!(node_key("/a"), b"\0a");
        assert_eq!(node_key("/a/bc"), b"/a\0bc");
        for not_a_path in ["", "abc", "a/b"] {
            let key = node_key(not_a_path);
            assert!(std::str::from_utf8(&key).is_err(), "{not_a_path:?} -> {key:?}");
        }
        let paths = ["/", "/a", "/ab", "/a/b", "/a/b/c", "/a/bb", "/a/b0", "/a-", "/b", "/a/é"];
        for p in paths {
            assert_eq!(path_of_node_key(&node_key(p)).unwrap(), p);
        }
        for parent in ["/", "/a", "/a/b", "/ab", "/b"] {
            let (start, end) = children_range(parent);
            let mut inside: Vec<&str> = paths
                .iter()
                .copied()
                .filter(|p| (start.as_slice()..end.as_slice()).contains(&node_key(p).as_slice()))
                .collect();
            inside.sort();
            let mut want: Vec<&str> = paths.iter().copied().filter(|p| *p != "/" && parent_of(p) == parent).collect();
            want.sort();
            assert_eq!(inside, want, "children of {parent}");
        }
        assert!(split_node_key(b"no nul").is_err());
        assert_eq!(split_node_key(b"").unwrap(), None);
        assert_eq!(split_node_key(b"\0x").unwrap(), Some(("/", "x")));
    }

    #[test]
    fn meta_round_trip() {
        let m = ZnodeMeta {
            stamp: 0,
            czxid: 5,
            ctime_ms: 6,
            mtime_ms: 7,
            creates: 3,
            aversion: 1,
            pzxid: 9,
            num_children: 2,
            kind: NodeKind::Ttl(1000),
            builtin: false,
            null_data: false,
            acl: Arc::new(vec![ZkAcl { perms: 31, scheme: "digest".into(), id: "u:x".into() }]),
            child_table: 32,
        };
        assert_eq!(ZnodeMeta::decode(&m.encode()).unwrap(), m);
        assert!(ZnodeMeta::decode(&m.encode()[..20]).is_err());
        // A row from before tables were kept (no last byte) reads as the least table for its
        // children.
        let old = m.encode();
        assert_eq!(ZnodeMeta::decode(&old[..old.len() - 1]).unwrap(), ZnodeMeta { child_table: 8, ..m.clone() });
        // A `zk_nodes` row carries the stamp first; a snapshot's row is the rest.
        let m = ZnodeMeta { stamp: (7 << 20) | 3, ..m };
        let row = m.encode_row();
        assert_eq!(ZnodeMeta::decode_row(&row).unwrap(), m);
        assert_eq!(stamp_of_row(&row).unwrap(), (7 << 20) | 3);
        assert_eq!(split_node_row(&row).unwrap(), (m.encode().as_slice(), (7 << 20) | 3));
        assert_eq!(join_node_row(&m.encode(), m.stamp), row);
        assert!(ZnodeMeta::decode_row(&row[..7]).is_err());
    }

    /// A node's children as ZooKeeper's `HashSet` holds them: adds and removes, then the order.
    struct JavaSet {
        table: u32,
        kids: Vec<(String, u64)>,
        stamps: u64,
    }

    impl JavaSet {
        fn add(&mut self, name: &str) {
            let kids = &self.kids;
            self.table = java_table_after_add(CHILD_TABLE_INITIAL, self.table, kids.len() as u32, |cap| {
                let b = java_hash(name) & (cap - 1);
                Ok(kids.iter().filter(|(k, _)| java_hash(k) & (cap - 1) == b).count() as u32)
            })
            .unwrap();
            self.stamps += 1;
            self.kids.push((name.to_string(), self.stamps));
        }

        fn order(&self) -> String {
            let mut kids = self.kids.clone();
            java_children_order(&mut kids, self.table, |k| &k.0, |k| k.1);
            kids.iter().map(|k| k.0.as_str()).collect::<Vec<_>>().join(",")
        }
    }

    /// Goal: getChildren lists children in ZooKeeper's order. Method: add and remove names as
    /// `DataNode` does, and compare with what `new ArrayList<>(set)` gave on a JDK 17
    /// `HashSet<String>(8)` for the same steps (its order has been `HashMap`'s since Java 8).
    #[test]
    fn children_come_in_java_hash_set_order() {
        let mut set = JavaSet { table: 0, kids: Vec::new(), stamps: 0 };
        for i in 0..30 {
            set.add(&format!("n{i}"));
        }
        assert_eq!(set.table, 64);
        assert_eq!(
            set.order(),
            "n0,n1,n2,n3,n4,n5,n6,n7,n8,n9,n10,n12,n11,n14,n13,n16,n15,n18,n17,n19,n21,n20,n23,n22,n25,n24,\
             n27,n26,n29,n28"
        );
        set.kids.retain(|(k, _)| k != "n3" && k != "n17");
        for name in ["n3", "é", "zookeeper"] {
            set.add(name);
        }
        assert_eq!(
            set.order(),
            "n0,n1,n2,n3,n4,n5,n6,n7,n8,n9,n10,n12,n11,n14,n13,n16,n15,n18,n19,zookeeper,é,n21,n20,n23,n22,\
             n25,n24,n27,n26,n29,n28"
        );
        // Nine names in one bucket of 16: the ninth doubles the table though the size is only
        // 9 (`treeifyBin` resizes a table under 64 buckets instead of making a tree).
        let mut set = JavaSet { table: 0, kids: Vec::new(), stamps: 0 };
        for name in ["a6", "aF", "aV", "af", "av", "b7", "bG", "bW"] {
            set.add(name);
        }
        assert_eq!((set.table, set.order().as_str()), (16, "a6,aF,aV,af,av,b7,bG,bW"));
        set.add("bg");
        assert_eq!((set.table, set.order().as_str()), (32, "aF,af,bG,bg,a6,aV,av,b7,bW"));
        assert_eq!(child_table_at_least(0), 0);
        assert_eq!(child_table_at_least(6), 8);
        assert_eq!(child_table_at_least(7), 16);
        assert_eq!(child_table_at_least(25), 64);
        assert_eq!(child_table_at_least(i32::MAX), 1 << 30, "a table stops at Java's maximum");
        assert_eq!(java_table_after_add(8, 1 << 30, u32::MAX, |_| Ok(0)).unwrap(), 1 << 30);
    }
}
