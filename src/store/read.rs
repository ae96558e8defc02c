//! A read view: one redb read transaction, i.e. a consistent snapshot of every table. This is
//! the only way the layers above read the store.

// OnceLock, not OnceCell: one view is shared by concurrent readers (see `Store::read`).
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock as OnceCell};

use redb::{ReadOnlyTable, ReadTransaction, ReadableTable, ReadableTableMetadata};

use super::mvcc::{etcd_kv_bytes, etcd_rev_bytes, fill_value, in_range, range, revisions, to_kv, Crc32c};
use super::schema::*;
use super::znode::{self, KvState};
use super::{DumpRow, Error, StoreError};
use crate::command::*;

pub struct ReadView {
    tx: ReadTransaction,
    // Tables open on first use: a read touches two or three of them, and opening one is a
    // lookup in redb's table directory (most of a small read's cost when all were opened).
    kv: OnceCell<ReadOnlyTable<&'static [u8], &'static [u8]>>,
    hist: OnceCell<ReadOnlyTable<u128, &'static [u8]>>,
    dead: OnceCell<ReadOnlyTable<&'static [u8], u128>>,
    leases: OnceCell<ReadOnlyTable<i64, &'static [u8]>>,
    lease_keys: OnceCell<ReadOnlyTable<(i64, &'static [u8]), ()>>,
    znodes: OnceCell<ReadOnlyTable<&'static [u8], &'static [u8]>>,
    zk_reap: OnceCell<ReadOnlyTable<&'static str, ()>>,
    meta: ReadOnlyTable<&'static str, &'static [u8]>,
    /// The znodes this view has read, so a read-mostly ZooKeeper load reads each one from
    /// redb once per commit instead of once per request (see [`ZkViewCache`]).
    zk_cache: ZkViewCache,
    /// The store revision this view shows.
    pub revision: i64,
    pub compact_revision: i64,
}

/// The znodes one view has read: path -> the node as that view shows it (`None`: no such
/// node). A view is an immutable snapshot, so an entry can never go stale: the cache lives and
/// dies with its view (every commit drops the shared view, see `Store::read`), and needs no
/// invalidation.
///
/// Why: a getData read from redb is three B-tree lookups (`znodes`, `kv`, `hist`), each page
/// of them a locked hash lookup in redb's page cache; that was a quarter of the server's CPU
/// per getData under 64 readers. A hit here is one locked hash lookup and an `Arc` clone.
///
/// Bounded: at most [`ZK_VIEW_CACHE_NODES_MAX`] nodes and [`ZK_VIEW_CACHE_BYTES_MAX`] bytes of
/// paths and data per view; past either, reads go to redb uncached. Sharded by path so that
/// readers on different threads rarely meet on one lock.
///
/// It also keeps the child lists it has listed (getChildren: a range scan of `zk_nodes`,
/// ~45 % of the server's CPU per getChildren of 100 children under 64 readers), under the same
/// bounds: a list counts as one entry and its names' bytes.
struct ZkViewCache {
    shards: [Mutex<HashMap<Box<str>, CachedZnode>>; ZK_VIEW_CACHE_SHARDS],
    children: [Mutex<HashMap<Box<str>, Arc<ChildList>>>; ZK_VIEW_CACHE_SHARDS],
    nodes: AtomicUsize,
    bytes: AtomicUsize,
}

/// A znode's children as one view lists them, in ZooKeeper's order: the names back to back in
/// `names`, name i ending at `ends[i]` (one allocation for the list, not one per name).
#[derive(Debug, Default, PartialEq, Eq)]
struct ChildList {
    names: String,
    ends: Vec<u32>,
}

impl ChildList {
    fn push(&mut self, name: &str) {
        self.names.push_str(name);
        self.ends.push(self.names.len() as u32);
    }

    fn iter(&self) -> impl Iterator<Item = &str> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(self.ends.iter().copied()).map(|(a, b)| &self.names[a as usize..b as usize])
    }

    fn bytes(&self) -> usize {
        self.names.len() + 4 * self.ends.len()
    }
}

/// Lists longer than this are not cached (read from redb each time, up to the caller's max):
/// a list past it would take a large share of the view's byte bound on its own.
const ZK_VIEW_CACHE_CHILDREN_MAX: usize = 1 << 14;

pub const ZK_VIEW_CACHE_NODES_MAX: usize = 1 << 16;
pub const ZK_VIEW_CACHE_BYTES_MAX: usize = 16 << 20;
const ZK_VIEW_CACHE_SHARDS: usize = 8;
/// What an entry costs beyond its path and data: the map slot, the `Arc` and the `ZkNode`.
const ZK_VIEW_CACHE_ENTRY_BYTES: usize = 160;

#[derive(Clone)]
struct CachedZnode {
    node: Option<Arc<ZkNode>>,
    /// Whether `node` holds the data (a Stat-only read caches the node without it).
    with_data: bool,
}

impl ZkViewCache {
    fn new() -> ZkViewCache {
        ZkViewCache {
            shards: Default::default(),
            children: Default::default(),
            nodes: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
        }
    }

    fn shard_of(path: &str) -> usize {
        // FNV-1a: the shard choice needs spread, not resistance to chosen keys (the map inside
        // hashes with std's keyed hasher).
        (super::fnv1a64(path.bytes()) % ZK_VIEW_CACHE_SHARDS as u64) as usize
    }

    /// Takes room for one more entry of `cost` bytes; false (nothing taken) past a bound.
    fn reserve(&self, cost: usize) -> bool {
        if self.nodes.load(Ordering::Relaxed) >= ZK_VIEW_CACHE_NODES_MAX
            || self.bytes.load(Ordering::Relaxed) + cost > ZK_VIEW_CACHE_BYTES_MAX
        {
            return false;
        }
        self.nodes.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(cost, Ordering::Relaxed);
        true
    }

    fn children_of(&self, path: &str) -> Option<Arc<ChildList>> {
        self.children[Self::shard_of(path)].lock().unwrap_or_else(|p| p.into_inner()).get(path).cloned()
    }

    fn put_children(&self, path: &str, list: Arc<ChildList>) {
        let mut shard = self.children[Self::shard_of(path)].lock().unwrap_or_else(|p| p.into_inner());
        if shard.contains_key(path) || !self.reserve(path.len() + list.bytes() + ZK_VIEW_CACHE_ENTRY_BYTES) {
            return;
        }
        shard.insert(path.into(), list);
    }

    fn shard(&self, path: &str) -> &Mutex<HashMap<Box<str>, CachedZnode>> {
        &self.shards[Self::shard_of(path)]
    }

    /// The cached read of `path`, if there is one that answers a read `with_data` or not.
    fn get(&self, path: &str, with_data: bool) -> Option<Option<Arc<ZkNode>>> {
        let shard = self.shard(path).lock().unwrap_or_else(|p| p.into_inner());
        let c = shard.get(path)?;
        // A missing node is missing with or without data.
        (c.with_data || !with_data || c.node.is_none()).then(|| c.node.clone())
    }

    fn put(&self, path: &str, node: Option<Arc<ZkNode>>, with_data: bool) {
        let data_len = node.as_ref().and_then(|n| n.data.as_ref()).map_or(0, Vec::len);
        let cost = path.len() + data_len + ZK_VIEW_CACHE_ENTRY_BYTES;
        let mut shard = self.shard(path).lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = shard.get_mut(path) {
            // Only upgrade a Stat-only entry to one with data (whose bytes are then counted).
            if with_data && !c.with_data && self.bytes.load(Ordering::Relaxed) + data_len <= ZK_VIEW_CACHE_BYTES_MAX {
                self.bytes.fetch_add(data_len, Ordering::Relaxed);
                *c = CachedZnode { node, with_data };
            }
            return;
        }
        if self.reserve(cost) {
            shard.insert(path.into(), CachedZnode { node, with_data });
        }
    }
}

/// A znode as a ZooKeeper read returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZkNode {
    pub stat: ZkStat,
    /// None is ZooKeeper's null data.
    pub data: Option<Vec<u8>>,
    pub acl: Vec<ZkAcl>,
    /// The bucket count of ZooKeeper's set of its children (`ZnodeMeta::child_table`).
    pub child_table: u32,
}

/// A page of history read for a watcher that is catching up.
pub struct EventPage {
    pub events: Vec<Event>,
    /// The first revision NOT covered by this page.
    pub next_revision: i64,
}

/// A change as etcd's backend stores it: its revision key (with the tombstone mark) and the
/// protobuf KeyValue (a tombstone keeps only the key). HashKV and snapshots are built from these.
fn etcd_backend_row(rk: u128, e: HistEntry) -> (Vec<u8>, Vec<u8>) {
    let tombstone = e.tombstone;
    let kv = if tombstone { KeyValue { key: e.key, ..Default::default() } } else { put_kv(rk, e) };
    (etcd_rev_bytes(rk, tombstone), etcd_kv_bytes(&kv))
}

/// The state a put in history wrote.
pub(super) fn put_kv(rk: u128, e: HistEntry) -> KeyValue {
    KeyValue {
        key: e.key,
        create_revision: e.create_revision,
        mod_revision: rev_main(rk),
        version: e.version,
        value: e.value,
        lease: e.lease,
    }
}

impl ReadView {
    pub(super) fn new(tx: ReadTransaction) -> Result<ReadView, StoreError> {
        let meta = tx.open_table(META)?;
        let (revision, compact_revision) = revisions(&meta)?;
        Ok(ReadView {
            tx,
            kv: OnceCell::new(),
            hist: OnceCell::new(),
            dead: OnceCell::new(),
            leases: OnceCell::new(),
            lease_keys: OnceCell::new(),
            znodes: OnceCell::new(),
            zk_reap: OnceCell::new(),
            meta,
            zk_cache: ZkViewCache::new(),
            revision,
            compact_revision,
        })
    }

    fn t_kv(&self) -> Result<&ReadOnlyTable<&'static [u8], &'static [u8]>, StoreError> {
        if let Some(t) = self.kv.get() {
            return Ok(t);
        }
        let t = self.tx.open_table(KV)?;
        Ok(self.kv.get_or_init(|| t))
    }

    fn t_hist(&self) -> Result<&ReadOnlyTable<u128, &'static [u8]>, StoreError> {
        if let Some(t) = self.hist.get() {
            return Ok(t);
        }
        let t = self.tx.open_table(HIST)?;
        Ok(self.hist.get_or_init(|| t))
    }

    fn t_dead(&self) -> Result<&ReadOnlyTable<&'static [u8], u128>, StoreError> {
        if let Some(t) = self.dead.get() {
            return Ok(t);
        }
        let t = self.tx.open_table(DEAD)?;
        Ok(self.dead.get_or_init(|| t))
    }

    fn t_leases(&self) -> Result<&ReadOnlyTable<i64, &'static [u8]>, StoreError> {
        if let Some(t) = self.leases.get() {
            return Ok(t);
        }
        let t = self.tx.open_table(LEASES)?;
        Ok(self.leases.get_or_init(|| t))
    }

    fn t_lease_keys(&self) -> Result<&ReadOnlyTable<(i64, &'static [u8]), ()>, StoreError> {
        if let Some(t) = self.lease_keys.get() {
            return Ok(t);
        }
        let t = self.tx.open_table(LEASE_KEYS)?;
        Ok(self.lease_keys.get_or_init(|| t))
    }

    fn t_znodes(&self) -> Result<&ReadOnlyTable<&'static [u8], &'static [u8]>, StoreError> {
        if let Some(t) = self.znodes.get() {
            return Ok(t);
        }
        let t = self.tx.open_table(ZK_NODES)?;
        Ok(self.znodes.get_or_init(|| t))
    }

    fn t_zk_reap(&self) -> Result<&ReadOnlyTable<&'static str, ()>, StoreError> {
        if let Some(t) = self.zk_reap.get() {
            return Ok(t);
        }
        let t = self.tx.open_table(ZK_REAP)?;
        Ok(self.zk_reap.get_or_init(|| t))
    }

    pub fn range(&self, op: &RangeOp) -> Result<RangeResult, Error> {
        range(self.t_kv()?, self.t_hist()?, self.t_dead()?, op, self.revision, self.compact_revision)
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<KeyValue>, StoreError> {
        Ok(self.current(key)?.map(|c| to_kv(key, c)))
    }

    /// A key's current row with its value.
    fn current(&self, key: &[u8]) -> Result<Option<CurrentKv>, StoreError> {
        let Some(row) = self.t_kv()?.get(key)? else { return Ok(None) };
        let mut c = CurrentKv::decode(row.value())?;
        drop(row);
        fill_value(self.t_hist()?, &mut c).map_err(store_fault)?;
        Ok(Some(c))
    }

    pub fn key_count(&self) -> Result<u64, StoreError> {
        Ok(self.t_kv()?.len()?)
    }

    pub fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.meta.get(key)?.map(|v| v.value().to_vec()))
    }

    /// Raised alarms as (member id, type), ordered.
    pub fn alarms(&self) -> Result<Vec<(u64, AlarmType)>, StoreError> {
        let raw = self.meta.get(META_ALARMS)?.map(|v| decode_alarms(v.value())).unwrap_or_default();
        Ok(raw
            .into_iter()
            .map(|(m, a)| (m, if a == AlarmType::NoSpace as u8 { AlarmType::NoSpace } else { AlarmType::Corrupt }))
            .collect())
    }

    /// The granted TTL of a lease, if it exists.
    pub fn lease(&self, id: i64) -> Result<Option<LeaseRow>, StoreError> {
        self.t_leases()?.get(id)?.map(|v| LeaseRow::decode(v.value())).transpose()
    }

    pub fn lease_keys(&self, id: i64) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut keys = Vec::new();
        for row in self.t_lease_keys()?.range::<(i64, &[u8])>((id, &[][..])..(id.saturating_add(1), &[][..]))? {
            let (k, _) = row?;
            keys.push(k.value().1.to_vec());
        }
        Ok(keys)
    }

    /// Every lease as (id, granted TTL), by id.
    pub fn leases(&self) -> Result<Vec<(i64, i64)>, StoreError> {
        let mut out = Vec::new();
        for row in self.t_leases()?.iter()? {
            let (k, v) = row?;
            out.push((k.value(), LeaseRow::decode(v.value())?.ttl_s));
        }
        Ok(out)
    }

    /// Changes to keys in [key, range_end) from revision `from` up to this view's revision, in
    /// revision order; stops after about `events_max` events, but never inside a revision, so
    /// a page always ends on a revision boundary.
    ///
    /// `from` below the compacted revision is `Compacted` (so any negative `from` once
    /// something was compacted, and below -1 even before: etcd's "never compacted" is -1).
    /// A `from` of -1 before any compaction yields nothing, as in etcd, which reads history
    /// from the revision's bytes and finds none after a negative one's (two's complement
    /// sorts it after every revision): such a watcher simply starts at the next revision.
    pub fn events(
        &self,
        from: i64,
        key: &[u8],
        range_end: &[u8],
        with_prev_kv: bool,
        events_max: usize,
    ) -> Result<EventPage, Error> {
        if from < self.compact_revision {
            return Err(ApplyError::Compacted.into());
        }
        let mut events = Vec::new();
        if from < 1 {
            return Ok(EventPage { events, next_revision: self.revision + 1 });
        }
        let start = rev_key(from, 0);
        let end = rev_key(self.revision + 1, 0);
        let mut next_revision = self.revision + 1;
        let mut last_main = -1;
        if start >= end {
            return Ok(EventPage { events, next_revision: from.max(next_revision) });
        }
        for row in self.t_hist()?.range(start..end)? {
            let (k, v) = row?;
            let rk = k.value();
            let main = rev_main(rk);
            if events.len() >= events_max && main != last_main {
                next_revision = main;
                break;
            }
            last_main = main;
            let e = HistEntry::decode(v.value())?;
            if !in_range(&e.key, key, range_end) {
                continue;
            }
            // etcd gives a creation no prev_kv, and a delete the state from before its txn.
            let creation = !e.tombstone && e.create_revision == main;
            let prev_kv = if with_prev_kv && !creation {
                let skip = super::mvcc::etcd_prev_rule(&e.key).then_some(main);
                super::mvcc::state_before(self.t_hist()?, e.prev, skip)?
            } else {
                None
            };
            let ev = if e.tombstone {
                Event {
                    kind: EventKind::Delete,
                    kv: KeyValue { key: e.key, mod_revision: main, ..Default::default() },
                    prev_kv,
                }
            } else {
                Event { kind: EventKind::Put, kv: put_kv(rk, e), prev_kv }
            };
            events.push(ev);
        }
        Ok(EventPage { events, next_revision })
    }

    /// etcd's HashKV (HashByRev), bit for bit: CRC-32C over the bucket name "key", then every
    /// kept change up to `rev` (0 = current) in revision order, each as etcd's revision key
    /// followed by the protobuf mvccpb.KeyValue etcd stores (a tombstone stores only its key).
    /// A row at or below the compacted revision counts only if its key has no change after it
    /// up to `rev` (etcd keeps it only if `kvindex.Keep(rev)` names it), unless no key at all
    /// is live at `rev` (then Keep is empty and etcd counts them all). Two stores with the
    /// same history, ours or etcd's, give the same hash. Returns (hash, revision).
    pub fn hash_kv(&self, rev: i64) -> Result<(u32, i64), Error> {
        if rev > 0 && rev <= self.compact_revision {
            return Err(ApplyError::Compacted.into());
        }
        let rev = if rev <= 0 { self.revision } else { rev };
        if rev > self.revision {
            return Err(ApplyError::FutureRevision.into());
        }
        let hist = self.t_hist()?;
        let compacted_end = rev_key(self.compact_revision.max(0) + 1, 0);
        let end = rev_key(rev + 1, 0);
        // Keys changed since the compaction, up to `rev`: whether each is live at `rev`.
        let mut changed: HashMap<Vec<u8>, bool> = HashMap::new();
        if compacted_end < end {
            for row in hist.range(compacted_end..end)? {
                let (_, v) = row?;
                let e = HistEntry::decode(v.value())?;
                changed.insert(e.key, !e.tombstone);
            }
        }
        let mut keep_empty = !changed.values().any(|live| *live);
        if keep_empty {
            // A row at or below the compaction is live there; it still is at `rev` unless
            // its key changed since.
            for row in hist.range(..compacted_end.min(end))? {
                let (_, v) = row?;
                if !changed.contains_key(&HistEntry::decode(v.value())?.key) {
                    keep_empty = false;
                    break;
                }
            }
        }
        let mut h = Crc32c::new();
        h.update(b"key");
        for row in hist.range(..end)? {
            let (k, v) = row?;
            let rk = k.value();
            let e = HistEntry::decode(v.value())?;
            if rk < compacted_end && !keep_empty && changed.contains_key(&e.key) {
                continue;
            }
            let (key, value) = etcd_backend_row(rk, e);
            h.update(&key);
            h.update(&value);
        }
        Ok((h.finish(), rev))
    }

    /// The store as the bbolt file etcd's Maintenance.Snapshot sends (see [`super::bolt`]):
    /// `etcdctl snapshot status` reads it and `etcdctl snapshot restore` can seed a real etcd.
    pub fn etcd_snapshot(&self) -> Result<Vec<u8>, StoreError> {
        let mut keys = Vec::new();
        for row in self.t_hist()?.iter()? {
            let (k, v) = row?;
            let rk = k.value();
            keys.push(etcd_backend_row(rk, HistEntry::decode(v.value())?));
        }
        // leasepb.Lease { ID = 1, TTL = 2 } keyed by the 8-byte big-endian id.
        let mut leases = Vec::new();
        for (id, ttl) in self.leases()? {
            let mut v = Vec::new();
            for (field, x) in [(1u8, id), (2, ttl)] {
                if x != 0 {
                    v.push(field << 3);
                    let mut n = x as u64;
                    while n >= 0x80 {
                        v.push((n as u8) | 0x80);
                        n >>= 7;
                    }
                    v.push(n as u8);
                }
            }
            leases.push(((id as u64).to_be_bytes().to_vec(), v));
        }
        let mut meta = Vec::new();
        if self.compact_revision >= 0 {
            let rev = etcd_rev_bytes(rev_key(self.compact_revision, 0), false);
            meta.push((b"finishedCompactRev".to_vec(), rev.clone()));
            meta.push((b"scheduledCompactRev".to_vec(), rev));
        }
        let mut buckets = vec![(b"key".to_vec(), keys), (b"lease".to_vec(), leases), (b"meta".to_vec(), meta)];
        Ok(super::bolt::write(&mut buckets))
    }

    // ---- ZooKeeper's view of the tree (see super::znode) ------------------------------------

    /// A znode: its Stat, data and ACL.
    pub fn zk_node(&self, path: &str) -> Result<Option<Arc<ZkNode>>, StoreError> {
        self.zk_read(path, true)
    }

    /// A znode's Stat and ACL, maybe without its data (`data` may be None; use
    /// [`ReadView::zk_node`] for the data): what exists, getChildren and getACL answer with.
    /// When the view has not read the node yet, one B-tree lookup fewer than
    /// [`ReadView::zk_node`] (the value in `hist`) and no copy of the data.
    pub fn zk_node_stat(&self, path: &str) -> Result<Option<Arc<ZkNode>>, StoreError> {
        self.zk_read(path, false)
    }

    fn zk_read(&self, path: &str, with_data: bool) -> Result<Option<Arc<ZkNode>>, StoreError> {
        if let Some(hit) = self.zk_cache.get(path, with_data) {
            return Ok(hit);
        }
        let found = znode::read_node(self.t_znodes()?, |key| self.zk_key(key, with_data), path)?;
        let node = found.map(|(meta, kv, data)| {
            Arc::new(ZkNode {
                stat: meta.stat(kv.as_ref()),
                data: if meta.null_data || !with_data { None } else { Some(data) },
                acl: Arc::unwrap_or_clone(meta.acl),
                child_table: meta.child_table,
            })
        });
        self.zk_cache.put(path, node.clone(), with_data);
        Ok(node)
    }

    /// A znode's kv state, and its value if asked for (the row keeps the value's length, which
    /// is all a Stat needs; the value itself is one more lookup, in `hist`).
    fn zk_key(&self, key: &[u8], with_value: bool) -> Result<Option<(KvState, Vec<u8>)>, StoreError> {
        if with_value {
            return Ok(self.current(key)?.map(|c| (KvState::of(&c), c.value)));
        }
        let Some(row) = self.t_kv()?.get(key)? else { return Ok(None) };
        Ok(Some((KvState::of(&CurrentKv::decode(row.value())?), Vec::new())))
    }

    /// Calls `f` with the names of a znode's children, in ZooKeeper's order (see
    /// `znode::java_children_order`), at most `max` of them; returns how many. Without
    /// collecting them: a getChildren writes them straight into its reply.
    /// The list comes from the view's cache when this view listed it before.
    pub fn zk_each_child(&self, path: &str, max: usize, mut f: impl FnMut(&str)) -> Result<usize, StoreError> {
        let list = match self.zk_cache.children_of(path) {
            Some(list) => list,
            None => {
                // The whole list is read up to `max` (ZooKeeper's order is not the table's);
                // a list cut there, or longer than a cached list may be, is not cached.
                let (list, complete) = self.zk_scan_children(path, max)?;
                let list = Arc::new(list);
                if complete && list.ends.len() <= ZK_VIEW_CACHE_CHILDREN_MAX {
                    self.zk_cache.put_children(path, list.clone());
                }
                list
            }
        };
        let mut n = 0;
        for name in list.iter().take(max) {
            f(name);
            n += 1;
        }
        Ok(n)
    }

    /// A znode's children (at most `max` of them, the first in byte order) from redb, in
    /// ZooKeeper's order, and whether that is all of them.
    fn zk_scan_children(&self, path: &str, max: usize) -> Result<(ChildList, bool), StoreError> {
        let table = self.zk_read(path, false)?.map_or(0, |n| n.child_table);
        let mut rows: Vec<(Box<str>, u64)> = Vec::new();
        let mut complete = true;
        let (start, end) = znode::children_range(path);
        for row in self.t_znodes()?.range(start.as_slice()..end.as_slice())? {
            let (k, v) = row?;
            let Some((_, name)) = znode::split_node_key(k.value())? else { continue };
            if rows.len() >= max {
                complete = false;
                break;
            }
            rows.push((name.into(), znode::stamp_of_row(v.value())?));
        }
        znode::java_children_order(&mut rows, table, |r| &r.0, |r| r.1);
        let mut list = ChildList::default();
        for (name, _) in &rows {
            list.push(name);
        }
        Ok((list, complete))
    }

    /// The names of a znode's children, in ZooKeeper's order, at most `max` of them.
    pub fn zk_children(&self, path: &str, max: usize) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        self.zk_each_child(path, max, |name| out.push(name.to_string()))?;
        Ok(out)
    }

    /// Every descendant of `path` (ZooKeeper's getAllChildrenNumber).
    pub fn zk_all_children_number(&self, path: &str) -> Result<u64, StoreError> {
        if path == "/" {
            return Ok(self.t_znodes()?.len()?.saturating_sub(1));
        }
        // Keyed by parent NUL name, a subtree is one range per node with children: walked
        // depth first, each child's row telling whether it has any.
        let mut n = 0;
        let mut todo = vec![path.to_string()];
        while let Some(parent) = todo.pop() {
            let (start, end) = znode::children_range(&parent);
            for row in self.t_znodes()?.range(start.as_slice()..end.as_slice())? {
                let (k, v) = row?;
                n += 1;
                if znode::decode_node_row(v.value())?.num_children > 0 {
                    todo.push(znode::path_of_node_key(k.value())?);
                }
            }
        }
        Ok(n)
    }

    /// The ephemeral znodes of a session (its lease's znode keys), in ZooKeeper's order (see
    /// `znode::JavaCloneOrder`): as getEphemerals lists them (a clone of the session's set)
    /// when `clone`, else as iterating the set itself does (the dump four-letter word).
    pub fn zk_ephemerals(&self, session_id: i64, clone: bool) -> Result<Vec<String>, StoreError> {
        let mut out: Vec<(String, u64)> = Vec::new();
        for key in self.lease_keys(session_id)? {
            if let Some(path) = znode::path_of(&key) {
                let row = self.t_znodes()?.get(znode::node_key(path).as_slice())?;
                let inserted = row.map(|v| znode::stamp_of_row(v.value())).transpose()?.unwrap_or(0);
                out.push((path.to_string(), inserted));
            }
        }
        let table = self.lease(session_id)?.and_then(|l| l.zk_set).map_or(0, |z| z.table);
        let order = znode::JavaCloneOrder::of(out.len(), table);
        out.sort_by_cached_key(|(path, created)| {
            let (in_clone, in_set, created) = order.key(path, *created);
            (if clone { in_clone } else { 0 }, in_set, created, path.clone())
        });
        Ok(out.into_iter().map(|(p, _)| p).collect())
    }

    /// Ephemeral znodes of every session.
    pub fn zk_ephemeral_count(&self) -> Result<u64, StoreError> {
        let mut n = 0;
        for row in self.t_lease_keys()?.iter()? {
            let (k, _) = row?;
            if znode::path_of(k.value().1).is_some() {
                n += 1;
            }
        }
        Ok(n)
    }

    /// ZooKeeper's `zk_approximate_data_size`: over every znode, its path's length in UTF-16
    /// units (Java's `String.length()`) plus its data's length in bytes. ZooKeeper keys its
    /// root twice, as "" and "/", so the root's path counts 1, as here. Two scans, no lookups:
    /// the paths from `znodes`, the data lengths from the znode range of `kv` (a built-in node
    /// never set has no row there, and no data).
    ///
    /// ZooKeeper keeps this as a running sum; a `mntr` is rare enough to count instead.
    pub fn zk_data_size(&self) -> Result<u64, StoreError> {
        let mut n = 0u64;
        for row in self.t_znodes()?.iter()? {
            let (k, _) = row?;
            // A key is its path with one '/' made a NUL (the root's is empty): as long.
            n += match std::str::from_utf8(k.value()) {
                Ok("") => 1,
                Ok(key) => key.encode_utf16().count() as u64,
                Err(_) => return Err(StoreError::Corrupt("zk_nodes key".into())),
            };
        }
        let (start, end) = znode::ZK_KEY_RANGE;
        for row in self.t_kv()?.range(start..end)? {
            let (_, v) = row?;
            n += u64::from(CurrentKv::decode(v.value())?.value_len);
        }
        Ok(n)
    }

    pub fn zk_node_count(&self) -> Result<u64, StoreError> {
        Ok(self.t_znodes()?.len()?)
    }

    /// Containers and TTL nodes that ZooKeeper's reaper would delete at `now_ms`: empty
    /// containers that once had a child, and childless TTL nodes unmodified for their TTL.
    pub fn zk_reap_candidates(&self, now_ms: i64, max: usize) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        for row in self.t_zk_reap()?.iter()? {
            let (k, _) = row?;
            let path = k.value();
            let Some(m) = self.t_znodes()?.get(znode::node_key(path).as_slice())? else { continue };
            let meta = znode::decode_node_row(m.value())?;
            let due = meta.num_children == 0
                && match meta.kind {
                    znode::NodeKind::Container => meta.creates > 0,
                    znode::NodeKind::Ttl(ttl) => {
                        // The mtime of a node with data is in its key's row.
                        let mtime_ms = match self.t_kv()?.get(znode::key_of(path).as_slice())? {
                            Some(row) => CurrentKv::decode(row.value())?.mtime_ms,
                            None => meta.mtime_ms,
                        };
                        now_ms - mtime_ms > ttl
                    }
                    _ => false,
                };
            if due {
                out.push(path.to_string());
                if out.len() >= max {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Every state-machine row, for a raft snapshot. Tables: 0 kv, 1 hist, 2 leases,
    /// 3 lease_keys, 4 meta, 5 znodes (key: path, value: the metadata), 6 zk_children (key:
    /// parent NUL name, value: the stamp, 8 bytes LE), 7 zk_reap (`dead` is rebuilt from hist
    /// on restore). 5 and 6 are store format 3's tables, made from `zk_nodes` rows, so that
    /// builds of formats 3 and 4 install each other's snapshots.
    pub fn dump(&self) -> Result<Vec<DumpRow>, StoreError> {
        let mut rows = Vec::new();
        for row in self.t_kv()?.iter()? {
            let (k, v) = row?;
            rows.push((0, k.value().to_vec(), v.value().to_vec()));
        }
        for row in self.t_hist()?.iter()? {
            let (k, v) = row?;
            rows.push((1, k.value().to_be_bytes().to_vec(), v.value().to_vec()));
        }
        for row in self.t_leases()?.iter()? {
            let (k, v) = row?;
            rows.push((2, encode_i64(k.value()).to_vec(), v.value().to_vec()));
        }
        for row in self.t_lease_keys()?.iter()? {
            let (k, _) = row?;
            let (id, key) = k.value();
            let mut b = encode_i64(id).to_vec();
            b.extend_from_slice(key);
            rows.push((3, b, Vec::new()));
        }
        for row in self.meta.iter()? {
            let (k, v) = row?;
            rows.push((4, k.value().as_bytes().to_vec(), v.value().to_vec()));
        }
        let mut children = Vec::new();
        for row in self.t_znodes()?.iter()? {
            let (k, v) = row?;
            let (meta, stamp) = znode::split_node_row(v.value())?;
            rows.push((5, znode::path_of_node_key(k.value())?.into_bytes(), meta.to_vec()));
            if let Some((parent, name)) = znode::split_node_key(k.value())? {
                children.push((6, [parent.as_bytes(), &[0], name.as_bytes()].concat(), stamp.to_le_bytes().to_vec()));
            }
        }
        rows.extend(children);
        for row in self.t_zk_reap()?.iter()? {
            let (k, _) = row?;
            rows.push((7, k.value().as_bytes().to_vec(), Vec::new()));
        }
        Ok(rows)
    }
}

/// A read that can only fail by a storage fault: an apply-style error here means bad data.
fn store_fault(e: Error) -> StoreError {
    match e {
        Error::Store(s) => s,
        Error::Apply(a) => StoreError::Corrupt(a.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(data_len: usize) -> Option<Arc<ZkNode>> {
        let stat = ZkStat {
            czxid: 1,
            mzxid: 1,
            ctime: 0,
            mtime: 0,
            version: 0,
            cversion: 0,
            aversion: 0,
            ephemeral_owner: 0,
            data_length: data_len as i32,
            num_children: 0,
            pzxid: 1,
        };
        Some(Arc::new(ZkNode { stat, data: Some(vec![7; data_len]), acl: Vec::new(), child_table: 0 }))
    }

    /// Goal: a view's znode cache never holds more than its node and byte bounds, answers a
    /// read with data only from an entry that has the data, and upgrades a Stat-only entry.
    /// Method: fill it past each bound and look at what it answers.
    #[test]
    fn the_view_cache_keeps_to_its_bounds() {
        let c = ZkViewCache::new();
        c.put("/s", node(3).map(|n| Arc::new(ZkNode { data: None, ..(*n).clone() })), false);
        assert!(c.get("/s", false).is_some());
        assert!(c.get("/s", true).is_none(), "a Stat-only entry does not answer getData");
        c.put("/s", node(3), true);
        assert_eq!(c.get("/s", true).flatten().and_then(|n| n.data.clone()), Some(vec![7; 3]));
        c.put("/gone", None, false);
        assert_eq!(c.get("/gone", true), Some(None), "a missing node is missing with or without data");

        // Bytes: 1 MiB values stop fitting at the byte bound.
        let big = 1 << 20;
        for i in 0..2 * ZK_VIEW_CACHE_BYTES_MAX / big {
            c.put(&format!("/big{i}"), node(big), true);
        }
        assert!(c.bytes.load(Ordering::Relaxed) <= ZK_VIEW_CACHE_BYTES_MAX);
        assert!(c.get(&format!("/big{}", ZK_VIEW_CACHE_BYTES_MAX / big), true).is_none());

        // Nodes: small entries stop at the node bound.
        let c = ZkViewCache::new();
        for i in 0..ZK_VIEW_CACHE_NODES_MAX + 100 {
            c.put(&format!("/n{i}"), node(0), true);
        }
        assert_eq!(c.nodes.load(Ordering::Relaxed), ZK_VIEW_CACHE_NODES_MAX);
        assert!(c.get(&format!("/n{}", ZK_VIEW_CACHE_NODES_MAX + 50), true).is_none());
        assert!(c.get("/n0", true).is_some());
        let mut list = ChildList::default();
        list.push("a");
        assert!(c.children_of("/p").is_none());
        c.put_children("/p", Arc::new(list));
        assert!(c.children_of("/p").is_none(), "a child list counts against the node bound too");
    }

    /// Goal: a cached child list gives back exactly the names pushed, in order, empty names and
    /// multi-byte names included; the cache keeps the first list of a path.
    #[test]
    fn a_child_list_gives_back_its_names() {
        let names = ["", "lock-0000000001", "é", "x"];
        let mut list = ChildList::default();
        for n in names {
            list.push(n);
        }
        assert_eq!(list.iter().collect::<Vec<_>>(), names);
        assert_eq!(ChildList::default().iter().count(), 0);
        let c = ZkViewCache::new();
        c.put_children("/p", Arc::new(list));
        c.put_children("/p", Arc::new(ChildList::default()));
        assert_eq!(c.children_of("/p").map(|l| l.iter().count()), Some(4));
        assert_eq!(c.nodes.load(Ordering::Relaxed), 1);
    }
}
