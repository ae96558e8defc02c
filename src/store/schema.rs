//! Every redb table of the node, and the byte encodings of their values.
//!
//! Keyspace layout (see docs/ARCHITECTURE.md):
//! - `kv`: user key -> the key's CURRENT state ([`CurrentKv`]); only live keys. Serves reads at
//!   the current revision without touching history.
//! - `hist`: revision (main << 64 | sub) -> one change ([`HistEntry`]): a put or a tombstone,
//!   with its key and the revision of the key's previous change (`prev`). Feeds historical
//!   reads, watch catch-up and compaction. The `prev` links chain each key's changes from the
//!   newest down, so a read at an old revision walks its key's chain instead of a per-key
//!   index that every write would have to update at a random place.
//! - `dead`: user key -> revision of its deletion, for deleted keys (not in `kv`) whose
//!   tombstone is not compacted yet: where a read at an old revision starts the chain of a key
//!   that is gone now.
//! - `leases`: lease id -> granted TTL.
//! - `lease_keys`: (lease id, user key) -> (): the keys attached to a lease.
//! - `meta`: store bookkeeping (current revision, compacted revision, applied raft log id).
//! - `zk_nodes`, `zk_reap`: what ZooKeeper needs beyond MVCC (see store::znode).
//! - `raft_meta`: the raft vote and log bookkeeping, owned by the replication layer (the log
//!   itself is a separate write-ahead log, see replication::wal).
//!
//! Integers inside values are little-endian fixed width: values are decoded on every read, and
//! fixed offsets make that a few loads rather than a parse.

use redb::TableDefinition;

use super::StoreError;

pub const KV: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");
pub const HIST: TableDefinition<u128, &[u8]> = TableDefinition::new("hist");
pub const DEAD: TableDefinition<&[u8], u128> = TableDefinition::new("dead");
pub const LEASES: TableDefinition<i64, &[u8]> = TableDefinition::new("leases");
pub const LEASE_KEYS: TableDefinition<(i64, &[u8]), ()> = TableDefinition::new("lease_keys");
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
pub const RAFT_META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");
/// ZooKeeper: parent path NUL child name (`znode::node_key`: the path with its last '/' made
/// a NUL; the root's key is empty) -> the znode's insertion stamp in its parent's set
/// (`znode::child_stamp`, 8 bytes LE: the order children were added in, which getChildren's
/// order depends on), then its metadata (`znode::ZnodeMeta`). Keyed so that a node's children
/// are one range and a create or delete writes one row, not a metadata row and a child row;
/// one byte string rather than a (parent, name) tuple, so that a lookup compares keys with
/// `memcmp` (a tuple's compare decodes both keys' lengths first: setData at 64 clients lost
/// 4-7 % with it, `benches/ab.sh`).
pub const ZK_NODES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("zk_nodes");
/// Format 3's tables, read by the upgrade to 4: path -> znode metadata, and (parent path,
/// child name) -> insertion stamp.
pub const ZNODES_V3: TableDefinition<&str, &[u8]> = TableDefinition::new("znodes");
pub const ZK_CHILDREN_V3: TableDefinition<(&str, &str), u64> = TableDefinition::new("zk_children");
/// `zk_children` in store format 2, before it kept insertion stamps (read by the upgrade).
pub const ZK_CHILDREN_V2: TableDefinition<(&str, &str), ()> = TableDefinition::new("zk_children");
/// ZooKeeper: containers and TTL nodes, the reaper's candidates.
pub const ZK_REAP: TableDefinition<&str, ()> = TableDefinition::new("zk_reap");

pub const META_REVISION: &str = "revision";
/// The layout version of the tables, so a store written in another layout is refused at open
/// instead of being misread. 2: `hist` rows carry `prev` links, table `dead` (1 had `keyrev`).
/// 3: `zk_children` rows carry insertion stamps (2 had none). 4: `zk_nodes`, keyed by parent NUL
/// name, holds the stamps and the metadata that 3 kept in `zk_children` and `znodes`. A store
/// in format 2 or 3 is upgraded at open.
pub const META_FORMAT: &str = "format";
pub const STORE_FORMAT: i64 = 4;

/// The revision of an empty store. etcd starts at 1, so the first write is revision 2; clients
/// and tests see these numbers, so we start there too.
pub const INITIAL_REVISION: i64 = 1;
/// The compaction revision of a store never compacted: below every revision, so that a first
/// compaction at 0 is accepted, as etcd's (its `compactMainRev` starts at -1, and HashKV reports
/// it as it is).
pub const NEVER_COMPACTED: i64 = -1;
pub const META_COMPACT_REVISION: &str = "compact_revision";
pub const META_ALARMS: &str = "alarms";

/// Raised alarms as (member id, alarm type code) pairs: 16 bytes each.
pub fn encode_alarms(alarms: &[(u64, u8)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(alarms.len() * 16);
    for (m, a) in alarms {
        out.extend_from_slice(&m.to_le_bytes());
        out.extend_from_slice(&(*a as u64).to_le_bytes());
    }
    out
}

pub fn decode_alarms(b: &[u8]) -> Vec<(u64, u8)> {
    b.chunks_exact(16)
        .map(|c| {
            let mut m = [0u8; 8];
            m.copy_from_slice(&c[..8]);
            (u64::from_le_bytes(m), c[8])
        })
        .collect()
}

/// A revision as one sortable table key: the main revision in the high 64 bits and the
/// sub-revision (index of the change inside its transaction) in the low 64 bits.
pub fn rev_key(main: i64, sub: i64) -> u128 {
    debug_assert!(main >= 0 && sub >= 0);
    ((main as u128) << 64) | (sub as u64 as u128)
}

pub fn rev_main(rev: u128) -> i64 {
    (rev >> 64) as i64
}

pub fn rev_sub(rev: u128) -> i64 {
    rev as u64 as i64
}

fn get_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_le_bytes(a)
}

/// The current state of a live key (table `kv`). The value itself is NOT stored here: it lives
/// once, in the key's newest `hist` row (at `mod_main`, `mod_sub`), which compaction never
/// removes. Keeping `kv` rows small (52 bytes) halves the disk and keeps its B-tree shallow;
/// a read that needs values pays one `hist` lookup per returned key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CurrentKv {
    pub create_revision: i64,
    pub mod_main: i64,
    pub mod_sub: i64,
    pub version: i64,
    pub lease: i64,
    /// A znode's mtime (ZooKeeper's, from the command that last wrote it); 0 for etcd keys.
    /// Here and not in the znode's metadata so that a setData rewrites one row, not two.
    pub mtime_ms: i64,
    /// Length of the value, so a ZooKeeper write (quota bytes, Stat.dataLength) need not read
    /// the value it replaces.
    pub value_len: u32,
    /// Filled from `hist` when needed; never encoded.
    pub value: Vec<u8>,
}

const CURRENT_BYTES: usize = 52;

impl CurrentKv {
    pub fn encode(&self) -> [u8; CURRENT_BYTES] {
        let mut out = [0u8; CURRENT_BYTES];
        for (i, v) in [self.create_revision, self.mod_main, self.mod_sub, self.version, self.lease, self.mtime_ms]
            .into_iter()
            .enumerate()
        {
            out[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        out[48..52].copy_from_slice(&self.value_len.to_le_bytes());
        out
    }

    /// Decodes a row; `value` is left empty (see the type's comment).
    pub fn decode(b: &[u8]) -> Result<CurrentKv, StoreError> {
        if b.len() < CURRENT_BYTES {
            return Err(StoreError::Corrupt(format!("kv row of {} bytes", b.len())));
        }
        Ok(CurrentKv {
            create_revision: get_i64(b, 0),
            mod_main: get_i64(b, 8),
            mod_sub: get_i64(b, 16),
            version: get_i64(b, 24),
            lease: get_i64(b, 32),
            mtime_ms: get_i64(b, 40),
            value_len: u32::from_le_bytes([b[48], b[49], b[50], b[51]]),
            value: Vec::new(),
        })
    }

    /// Where this state's value lives in `hist`.
    pub fn hist_key(&self) -> u128 {
        rev_key(self.mod_main, self.mod_sub)
    }
}

/// One change in history (table `hist`). A tombstone records a deletion; its other fields are 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistEntry {
    pub tombstone: bool,
    pub create_revision: i64,
    pub version: i64,
    pub lease: i64,
    /// The revision key of this key's previous change (put or tombstone), 0 if it has none.
    /// That row may be gone (compacted): a chain ends at the first missing row, which is only
    /// ever below the compacted revision.
    pub prev: u128,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

/// tombstone, create_revision, version, lease, key length, prev.
const HIST_HEADER: usize = 1 + 8 * 3 + 4 + 16;

impl HistEntry {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HIST_HEADER + self.key.len() + self.value.len());
        out.push(u8::from(self.tombstone));
        for v in [self.create_revision, self.version, self.lease] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&(self.key.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.prev.to_le_bytes());
        out.extend_from_slice(&self.key);
        out.extend_from_slice(&self.value);
        out
    }

    /// The key length of an encoded row, checked against the row's size. A row read from disk
    /// that does not fit is a storage fault, reported as such, never a panic.
    fn key_len(b: &[u8]) -> Result<usize, StoreError> {
        if b.len() < HIST_HEADER {
            return Err(StoreError::Corrupt(format!("hist row of {} bytes", b.len())));
        }
        let key_len = u32::from_le_bytes([b[25], b[26], b[27], b[28]]) as usize;
        if b.len() < HIST_HEADER + key_len {
            return Err(StoreError::Corrupt(format!("hist row of {} bytes with a {key_len}-byte key", b.len())));
        }
        Ok(key_len)
    }

    /// Bytes 29..45 of a row whose length `key_len` has checked.
    fn prev_of_checked(b: &[u8]) -> u128 {
        let mut p = [0u8; 16];
        p.copy_from_slice(&b[29..45]);
        u128::from_le_bytes(p)
    }

    /// Just the `prev` link and the tombstone flag of an encoded row, without copying.
    pub fn link_of(b: &[u8]) -> Result<(u128, bool), StoreError> {
        Self::key_len(b)?;
        Ok((Self::prev_of_checked(b), b[0] != 0))
    }

    /// Just the value of an encoded row, without copying the rest.
    pub fn value_of(b: &[u8]) -> Result<&[u8], StoreError> {
        Ok(&b[HIST_HEADER + Self::key_len(b)?..])
    }

    pub fn decode(b: &[u8]) -> Result<HistEntry, StoreError> {
        let key_len = Self::key_len(b)?;
        Ok(HistEntry {
            tombstone: b[0] != 0,
            create_revision: get_i64(b, 1),
            version: get_i64(b, 9),
            lease: get_i64(b, 17),
            prev: Self::prev_of_checked(b),
            key: b[HIST_HEADER..HIST_HEADER + key_len].to_vec(),
            value: b[HIST_HEADER + key_len..].to_vec(),
        })
    }
}

/// A lease row (table `leases`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseRow {
    pub ttl_s: i64,
    /// For a ZooKeeper session: its ephemerals as ZooKeeper's set of them stands (see
    /// `znode::JavaCloneOrder`). None: no ephemeral created since this was kept (a row of an
    /// older store, an etcd lease).
    pub zk_set: Option<ZkSessionSet>,
}

/// A session's set of ephemeral paths in ZooKeeper (`DataTree.ephemerals`, a `HashSet` made at
/// the session's first ephemeral and dropped only with the session): how many it holds and its
/// bucket count, which never shrinks. Their order depends on both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZkSessionSet {
    pub count: u32,
    pub table: u32,
}

impl LeaseRow {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.ttl_s.to_le_bytes().to_vec();
        if let Some(z) = self.zk_set {
            out.extend_from_slice(&z.count.to_le_bytes());
            out.extend_from_slice(&z.table.to_le_bytes());
        }
        out
    }
    pub fn decode(b: &[u8]) -> Result<LeaseRow, StoreError> {
        if b.len() < 8 {
            return Err(StoreError::Corrupt(format!("lease row of {} bytes", b.len())));
        }
        let u32_at = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let zk_set = (b.len() >= 16).then(|| ZkSessionSet { count: u32_at(8), table: u32_at(12) });
        Ok(LeaseRow { ttl_s: get_i64(b, 0), zk_set })
    }
}

pub fn encode_i64(v: i64) -> [u8; 8] {
    v.to_le_bytes()
}

pub fn decode_i64(b: &[u8]) -> i64 {
    get_i64(b, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rev_key_orders_by_main_then_sub() {
        assert!(rev_key(1, 5) < rev_key(2, 0));
        assert!(rev_key(2, 0) < rev_key(2, 1));
        assert_eq!(rev_main(rev_key(7, 3)), 7);
        assert_eq!(rev_sub(rev_key(7, 3)), 3);
    }

    #[test]
    fn rows_round_trip() {
        let c = CurrentKv {
            create_revision: 2,
            mod_main: 5,
            mod_sub: 1,
            version: 3,
            lease: 9,
            mtime_ms: 1_700_000_000_123,
            value_len: 77,
            value: vec![],
        };
        assert_eq!(CurrentKv::decode(&c.encode()).unwrap(), c);
        assert!(CurrentKv::decode(&[0; 51]).is_err());
        let h = HistEntry {
            tombstone: true,
            create_revision: 0,
            version: 0,
            lease: 0,
            prev: rev_key(4, 2),
            key: b"k".to_vec(),
            value: vec![],
        };
        assert_eq!(HistEntry::decode(&h.encode()).unwrap(), h);
        assert_eq!(HistEntry::link_of(&h.encode()).unwrap(), (rev_key(4, 2), true));
        assert!(HistEntry::decode(&h.encode()[..h.encode().len() - 1]).is_err(), "a cut key is an error");
        assert!(HistEntry::decode(&[1, 2, 3]).is_err());
        let mut row = h.encode();
        row.extend_from_slice(b"val");
        assert_eq!(HistEntry::value_of(&row).unwrap(), b"val");
    }
}
