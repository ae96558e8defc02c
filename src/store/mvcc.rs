//! Apply: etcd's MVCC semantics on the redb tables.
//!
//! One main revision per write command (a put, a delete that deleted something, a txn that
//! changed something, a lease revoke that deleted keys); each change inside it gets the next
//! sub-revision. A delete writes a tombstone into history. Compaction at revision C removes, for
//! every key, all history at or below C except its newest non-tombstone change at or below C,
//! so reads at any revision >= C still see the same state.

use std::ops::Bound;

use redb::{ReadableTable, Table, WriteTransaction};

use super::schema::*;
use super::{Error, StoreError};
use crate::command::*;

/// What an apply changed, for the layers above: watch events in revision order and lease
/// bookkeeping for the leader's expiry timers.
#[derive(Debug, Default, Clone)]
pub struct Effects {
    pub events: Vec<Event>,
    pub leases_granted: Vec<(i64, i64)>,
    pub leases_revoked: Vec<i64>,
    /// The store revision after the transaction.
    pub revision: i64,
    pub compact_revision: i64,
    /// Whether the put events carry the replaced value in prev_kv. False when no watcher
    /// wanted prev values as the transaction began: their prev_kv then has every field but
    /// the value, which a prev_kv watcher must fetch from history instead.
    pub prev_values: bool,
    /// ZooKeeper: the ACL of every znode a change event names (the node; for a child change,
    /// its parent), as of the change (a deleted node's from before its delete). Watch events
    /// go only to sessions that may READ it (Debian's ZooKeeper 3.8.0 carries the fix of
    /// CVE-2024-23944); empty for etcd-only transactions.
    pub zk_acls: Vec<crate::command::ReadGate>,
}

/// Revision allocation for one write command.
pub(super) struct Rev {
    pub(super) main: i64,
    next_sub: i64,
}

impl Rev {
    fn take(&mut self) -> i64 {
        let s = self.next_sub;
        self.next_sub += 1;
        s
    }
    pub(super) fn changed(&self) -> bool {
        self.next_sub > 0
    }
}

/// A `meta` row that callers may write as bookkeeping (applied log id, membership): anything
/// but the revisions, which only the store's own writes move.
pub(super) fn is_bookkeeping_key(key: &str) -> bool {
    key != META_REVISION && key != META_COMPACT_REVISION
}

pub(crate) type KvTable<'t> = Table<'t, &'static [u8], &'static [u8]>;

pub struct WriteTx<'t> {
    kv: KvTable<'t>,
    hist: Table<'t, u128, &'static [u8]>,
    dead: Table<'t, &'static [u8], u128>,
    pub(super) leases: Table<'t, i64, &'static [u8]>,
    pub(super) lease_keys: Table<'t, (i64, &'static [u8]), ()>,
    meta: Table<'t, &'static str, &'static [u8]>,
    /// Read and written only through [`WriteTx::znode_get`] and friends (see `znode_rows`).
    pub(super) znodes: Table<'t, &'static [u8], &'static [u8]>,
    /// The `zk_nodes` rows this transaction changed (`None`: deleted), in front of the table,
    /// written once by [`WriteTx::finish`]. Why: in a batch of creates under one parent,
    /// every create reads and rewrites the parent's row (cversion, pzxid, child count); each
    /// rewrite of that ~100-byte row was a B-tree insert, and each read a descent and a
    /// decode. Now the batch writes it once and reads it from here. Bounded by the rows the
    /// transaction's own commands change. A RefCell: the ZooKeeper checks read through `&self`.
    pub(super) znode_rows: std::cell::RefCell<std::collections::HashMap<String, Option<super::znode::ZnodeMeta>>>,
    /// Whether the table's quota root has children, once read (see `WriteTx::quotas_exist`).
    pub(super) quota_root_in_table: std::cell::Cell<Option<bool>>,
    /// Whether NOSPACE is raised, once read (see [`WriteTx::capped`]); reset by an alarm.
    space_capped: std::cell::Cell<Option<bool>>,
    pub(super) zk_reap: Table<'t, &'static str, ()>,
    rev: i64,
    compact_rev: i64,
    start_rev: i64,
    start_compact_rev: i64,
    pub(super) effects: Effects,
}

impl<'t> WriteTx<'t> {
    pub(super) fn new(tx: &'t WriteTransaction, prev_values: bool) -> Result<Self, StoreError> {
        let meta = tx.open_table(META)?;
        let (rev, compact_rev) = revisions(&meta)?;
        Ok(WriteTx {
            kv: tx.open_table(KV)?,
            hist: tx.open_table(HIST)?,
            dead: tx.open_table(DEAD)?,
            leases: tx.open_table(LEASES)?,
            lease_keys: tx.open_table(LEASE_KEYS)?,
            meta,
            znodes: tx.open_table(ZK_NODES)?,
            znode_rows: Default::default(),
            quota_root_in_table: Default::default(),
            space_capped: Default::default(),
            zk_reap: tx.open_table(ZK_REAP)?,
            rev,
            compact_rev,
            start_rev: rev,
            start_compact_rev: compact_rev,
            effects: Effects { prev_values, ..Effects::default() },
        })
    }

    pub fn revision(&self) -> i64 {
        self.rev
    }

    /// Records bookkeeping (applied log id, membership) in the same transaction as the data.
    pub fn set_meta(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        assert!(is_bookkeeping_key(key), "bookkeeping may not set revisions");
        self.meta.insert(key, value)?;
        Ok(())
    }

    pub(super) fn finish(mut self) -> Result<Effects, StoreError> {
        self.znode_flush()?;
        if self.rev != self.start_rev {
            assert!(self.rev > self.start_rev, "revision went backwards");
            self.meta.insert(META_REVISION, encode_i64(self.rev).as_slice())?;
        }
        if self.compact_rev != self.start_compact_rev {
            self.meta.insert(META_COMPACT_REVISION, encode_i64(self.compact_rev).as_slice())?;
        }
        self.effects.revision = self.rev;
        self.effects.compact_revision = self.compact_rev;
        Ok(self.effects)
    }

    /// Applies one command. A deterministic failure (missing lease, compacted revision, ...)
    /// is the command's result and changes nothing; a storage fault aborts the whole apply.
    pub fn apply(&mut self, cmd: &Command) -> Result<Applied, StoreError> {
        let result = match cmd {
            Command::Put(op) => self.apply_put(op).map(Response::Put),
            Command::DeleteRange(op) => self.apply_delete(op).map(Response::DeleteRange),
            Command::Txn(op) => self.apply_txn(op).map(Response::Txn),
            Command::Compact { revision } => self.compact(*revision).map(|()| Response::Compact),
            Command::LeaseGrant { id, ttl_s } => self.check_space().and_then(|()| self.lease_grant(*id, *ttl_s)),
            Command::ZkSession { id, ttl_s } => self.lease_grant(*id, *ttl_s),
            Command::LeaseRevoke { id } => self.lease_revoke(*id).map(|()| Response::LeaseRevoke),
            Command::Alarm { activate, member_id, alarm } => self.alarm(*activate, *member_id, *alarm),
            Command::Zk(txn) => self.apply_zk(txn),
        };
        match result {
            Ok(r) => Ok(Applied { revision: self.rev, result: Ok(r) }),
            Err(Error::Apply(e)) => Ok(Applied { revision: self.rev, result: Err(e) }),
            Err(Error::Store(e)) => Err(e),
        }
    }

    pub(super) fn begin(&self) -> Rev {
        Rev { main: self.rev + 1, next_sub: 0 }
    }

    pub(super) fn end(&mut self, rev: Rev) {
        if rev.changed() {
            self.rev = rev.main;
        }
    }

    fn apply_put(&mut self, op: &PutOp) -> Result<PutResult, Error> {
        self.check_space()?;
        self.check_put(op, CheckOrder::LeaseFirst)?;
        let mut rev = self.begin();
        let r = self.put(&mut rev, op)?;
        self.end(rev);
        Ok(r)
    }

    fn apply_delete(&mut self, op: &DeleteOp) -> Result<DeleteResult, Error> {
        self.check_delete(op)?;
        let mut rev = self.begin();
        let r = self.delete_range(&mut rev, op)?;
        self.end(rev);
        Ok(r)
    }

    fn apply_txn(&mut self, op: &TxnOp) -> Result<TxnResult, Error> {
        // Branches are chosen against the state before the txn (as etcd does), then every
        // write of the chosen path is validated before the first one is made, so a failing
        // txn changes nothing.
        if op.has_put() {
            self.check_space()?;
        }
        let mut path = Vec::new();
        self.choose_path(op, &mut path)?;
        // etcd checks every write of the path first, then every read: a txn with both a bad
        // read and a bad write fails on the write whatever their order.
        for pass in [CheckPass::Writes, CheckPass::Reads] {
            let mut at = 0;
            self.check_path(op, &path, &mut at, pass, &mut Vec::new())?;
        }
        let mut rev = self.begin();
        let mut at = 0;
        let r = self.exec_txn(&mut rev, op, &path, &mut at)?;
        self.end(rev);
        Ok(r)
    }

    fn choose_path(&self, op: &TxnOp, path: &mut Vec<bool>) -> Result<(), Error> {
        let ok = self.compares_hold(&op.compare)?;
        path.push(ok);
        for req in if ok { &op.success } else { &op.failure } {
            if let RequestOp::Txn(t) = req {
                self.choose_path(t, path)?;
            }
        }
        Ok(())
    }

    /// `deleted`: the deletes met so far on the path, in the order the txn runs them.
    fn check_path<'a>(
        &self,
        op: &'a TxnOp,
        path: &[bool],
        at: &mut usize,
        pass: CheckPass,
        deleted: &mut Vec<&'a DeleteOp>,
    ) -> Result<(), Error> {
        let ok = path[*at];
        *at += 1;
        for req in if ok { &op.success } else { &op.failure } {
            match (req, pass) {
                (RequestOp::Txn(t), _) => self.check_path(t, path, at, pass, deleted)?,
                (RequestOp::Put(p), CheckPass::Writes) => {
                    self.check_put(p, CheckOrder::KeyFirst)?;
                    // etcd checks a put's key against the state before the txn, then fails
                    // the same lookup while it runs the txn (and panics: the whole member
                    // goes down) when an earlier delete of the txn removed the key. A range
                    // end of "\0" lets such a pair past its overlap check. Refused here.
                    let needs_key = p.ignore_value || p.ignore_lease;
                    if needs_key && deleted.iter().any(|d| in_range(&p.key, &d.key, &d.range_end)) {
                        return Err(ApplyError::KeyNotFound.into());
                    }
                }
                (RequestOp::DeleteRange(d), CheckPass::Writes) => {
                    self.check_delete(d)?;
                    deleted.push(d);
                }
                (RequestOp::Range(r), CheckPass::Reads) => self.check_range_rev(r.revision)?,
                _ => {}
            }
        }
        Ok(())
    }

    /// etcd's checkRange for a read inside a txn: any revision but 0 below the compacted one
    /// fails, a negative one included (-1 passes only while nothing was ever compacted, the
    /// compacted revision being -1 then); at the top level a revision <= 0 means "now".
    fn check_range_rev(&self, revision: i64) -> Result<(), Error> {
        if revision > self.rev {
            return Err(ApplyError::FutureRevision.into());
        }
        if revision != 0 && revision < self.compact_rev {
            return Err(ApplyError::Compacted.into());
        }
        Ok(())
    }

    fn exec_txn(&mut self, rev: &mut Rev, op: &TxnOp, path: &[bool], at: &mut usize) -> Result<TxnResult, Error> {
        let ok = path[*at];
        *at += 1;
        let ops = if ok { &op.success } else { &op.failure };
        let mut responses = Vec::with_capacity(ops.len());
        for req in ops {
            responses.push(match req {
                RequestOp::Range(r) => {
                    // Reads inside a txn see the txn's earlier writes, at the revision the txn
                    // will commit as.
                    let current = if rev.changed() { rev.main } else { self.rev };
                    OpResult::Range(range(&self.kv, &self.hist, &self.dead, r, current, self.compact_rev)?)
                }
                RequestOp::Put(p) => OpResult::Put(self.put(rev, p)?),
                RequestOp::DeleteRange(d) => OpResult::DeleteRange(self.delete_range(rev, d)?),
                RequestOp::Txn(t) => OpResult::Txn(self.exec_txn(rev, t, path, at)?),
            });
        }
        Ok(TxnResult { succeeded: ok, responses })
    }

    fn compares_hold(&self, compares: &[Compare]) -> Result<bool, Error> {
        for c in compares {
            if !self.compare_holds(c)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// etcd's applyCompare: every key in the compare's range must satisfy it; an empty range
    /// compares against a zero KeyValue, except a VALUE compare, which then always fails.
    fn compare_holds(&self, c: &Compare) -> Result<bool, Error> {
        let op = RangeOp { key: c.key.clone(), range_end: c.range_end.clone(), ..Default::default() };
        let r = range(&self.kv, &self.hist, &self.dead, &op, self.rev, self.compact_rev)?;
        if r.kvs.is_empty() {
            if matches!(c.target, CompareTarget::Value(_)) {
                return Ok(false);
            }
            return Ok(compare_kv(c, &KeyValue::default()));
        }
        Ok(r.kvs.iter().all(|kv| compare_kv(c, kv)))
    }

    /// The key's current state without its value (left empty).
    pub(super) fn current_state(&self, key: &[u8]) -> Result<Option<CurrentKv>, Error> {
        let Some(row) = self.kv.get(key)? else { return Ok(None) };
        Ok(Some(CurrentKv::decode(row.value())?))
    }

    /// The key's current state with its value.
    pub(super) fn current(&self, key: &[u8]) -> Result<Option<CurrentKv>, Error> {
        let Some(row) = self.kv.get(key)? else { return Ok(None) };
        let mut c = CurrentKv::decode(row.value())?;
        drop(row);
        fill_value(&self.hist, &mut c)?;
        Ok(Some(c))
    }

    /// Znode keys change only through ZooKeeper ops, which keep the tree's invariants (parent
    /// counts, metadata); an etcd delete may not remove live znodes either.
    fn check_delete(&self, op: &DeleteOp) -> Result<(), Error> {
        if !super::znode::range_touches_znodes(&op.key, &op.range_end) {
            return Ok(());
        }
        let live = if op.range_end.is_empty() {
            self.kv.get(op.key.as_slice())?.is_some()
        } else {
            // Only the part of the range inside the znode range matters.
            let (zk_lo, zk_hi) = super::znode::ZK_KEY_RANGE;
            let lo = op.key.as_slice().max(zk_lo);
            let hi = if op.range_end == [0] { zk_hi } else { op.range_end.as_slice().min(zk_hi) };
            lo < hi && self.kv.range::<&[u8]>(lo..hi)?.next().is_some()
        };
        if live {
            return Err(ApplyError::ReservedKey.into());
        }
        Ok(())
    }

    fn check_put(&self, op: &PutOp, order: CheckOrder) -> Result<(), Error> {
        if super::znode::path_of(&op.key).is_some() {
            return Err(ApplyError::ReservedKey.into());
        }
        let lease_missing =
            || -> Result<bool, Error> { Ok(!op.ignore_lease && op.lease != 0 && self.leases.get(op.lease)?.is_none()) };
        if order == CheckOrder::LeaseFirst && lease_missing()? {
            return Err(ApplyError::LeaseNotFound.into());
        }
        if (op.ignore_value || op.ignore_lease) && self.kv.get(op.key.as_slice())?.is_none() {
            return Err(ApplyError::KeyNotFound.into());
        }
        if order == CheckOrder::KeyFirst && lease_missing()? {
            return Err(ApplyError::LeaseNotFound.into());
        }
        Ok(())
    }

    pub(super) fn put(&mut self, rev: &mut Rev, op: &PutOp) -> Result<PutResult, Error> {
        self.put_at(rev, op, 0)
    }

    /// A put that also records a znode's mtime (see [`CurrentKv::mtime_ms`]).
    pub(super) fn put_at(&mut self, rev: &mut Rev, op: &PutOp, mtime_ms: i64) -> Result<PutResult, Error> {
        self.put_row(rev, op, mtime_ms, false)
    }

    /// [`WriteTx::put_at`] for a key that is expected to have no live row: a znode being
    /// created (znode keys change only through ZooKeeper ops, and the create found no node).
    /// Why: the key's row is then written with one descent (`insert`), where `put_at` first
    /// looks for a row to rewrite (`get_mut`) and, missing, descends again to insert: ~10 % of
    /// a create's store work (perf of the preparer at 64 clients). If a row is there after
    /// all, the insert hands back the row it replaced, and the key's state is computed from it
    /// and written again: the result is `put_at`'s either way.
    pub(super) fn put_new_at(&mut self, rev: &mut Rev, op: &PutOp, mtime_ms: i64) -> Result<PutResult, Error> {
        self.put_row(rev, op, mtime_ms, true)
    }

    fn put_row(&mut self, rev: &mut Rev, op: &PutOp, mtime_ms: i64, new_expected: bool) -> Result<PutResult, Error> {
        // The replaced value only if someone reads it: the reply, the kept value, a watcher.
        let need_value = op.prev_kv || op.ignore_value || self.effects.prev_values;
        // A live key's row is rewritten where it lies (`get_mut`): one descent that copies the
        // path's pages once and overwrites the 52 bytes, where a lookup and then an insert
        // descended twice and rebuilt the whole leaf page entry by entry (measured in
        // benches/apply_cost). The row keeps its size, so redb replaces it in place.
        let mut old = None;
        let mut written = None;
        if !new_expected {
            if let Some(mut row) = self.kv.get_mut(op.key.as_slice())? {
                let mut o = CurrentKv::decode(row.value())?;
                if need_value {
                    fill_value(&self.hist, &mut o)?;
                }
                let cur = next_state(Some(&o), op, rev, mtime_ms)?;
                row.insert(cur.encode().as_slice())?;
                old = Some(o);
                written = Some(cur);
            }
        }
        let cur = match written {
            Some(cur) => cur,
            None => {
                let sub = rev.take();
                let cur = state_at(None, op, rev.main, sub, mtime_ms)?;
                let replaced =
                    self.kv.insert(op.key.as_slice(), cur.encode().as_slice())?.map(|r| CurrentKv::decode(r.value()));
                match replaced.transpose()? {
                    None => cur,
                    Some(mut o) => {
                        // Only when a row was not expected (`get_mut` found none otherwise).
                        if need_value {
                            fill_value(&self.hist, &mut o)?;
                        }
                        let cur = state_at(Some(&o), op, rev.main, sub, mtime_ms)?;
                        self.kv.insert(op.key.as_slice(), cur.encode().as_slice())?;
                        old = Some(o);
                        cur
                    }
                }
            }
        };
        self.put_recorded(rev, op, old, cur)
    }

    /// The `kv` row of a key that must be new (a znode's create), inserted without a lookup
    /// first: the insert hands back any row it replaced. Some(state), with the row written and
    /// its sub-revision taken, if the key had no row; the caller then records the rest with
    /// [`WriteTx::put_recorded`]. None if it had one: that row is put back, no sub-revision is
    /// taken, and nothing is changed.
    /// Why: a create's existence check (a lookup in `znodes`) was a B-tree descent of its own,
    /// ~7 % of a create's store work (benches/apply_cost), and a znode's key exists exactly
    /// when the znode does (outside the built-in nodes, which have no key).
    pub(super) fn insert_new_row(
        &mut self,
        rev: &mut Rev,
        op: &PutOp,
        mtime_ms: i64,
    ) -> Result<Option<CurrentKv>, Error> {
        let sub = rev.next_sub;
        let cur = state_at(None, op, rev.main, sub, mtime_ms)?;
        let replaced = self.kv.insert(op.key.as_slice(), cur.encode().as_slice())?.map(|r| r.value().to_vec());
        if let Some(old) = replaced {
            self.kv.insert(op.key.as_slice(), old.as_slice())?;
            return Ok(None);
        }
        rev.take();
        Ok(Some(cur))
    }

    /// A put of `op.key` while it is live and `check` accepts its state (a ZooKeeper
    /// setData's version): its row is rewritten in place and the rest recorded as by any put.
    /// None, with nothing written and no revision taken, if the key has no live row or
    /// `check` refuses; else the key's new state (without its value).
    pub(super) fn put_live_if(
        &mut self,
        rev: &mut Rev,
        op: &PutOp,
        mtime_ms: i64,
        check: impl FnOnce(&CurrentKv) -> bool,
    ) -> Result<Option<CurrentKv>, Error> {
        let Some(mut row) = self.kv.get_mut(op.key.as_slice())? else { return Ok(None) };
        let mut old = CurrentKv::decode(row.value())?;
        if !check(&old) {
            return Ok(None);
        }
        if op.prev_kv || op.ignore_value || self.effects.prev_values {
            fill_value(&self.hist, &mut old)?;
        }
        let mut cur = next_state(Some(&old), op, rev, mtime_ms)?;
        row.insert(cur.encode().as_slice())?;
        drop(row);
        let value = std::mem::take(&mut cur.value);
        let state = cur.clone();
        cur.value = value;
        self.put_recorded(rev, op, Some(old), cur)?;
        Ok(Some(state))
    }

    /// The rest of a put once the key's `kv` row holds `cur` (in place of `old`, if the key
    /// was live): its history row, its lease's key set, its event.
    pub(super) fn put_recorded(
        &mut self,
        rev: &Rev,
        op: &PutOp,
        old: Option<CurrentKv>,
        cur: CurrentKv,
    ) -> Result<PutResult, Error> {
        let (create_revision, version, lease, sub) = (cur.create_revision, cur.version, cur.lease, cur.mod_sub);
        // The key's previous change: its live state, or the deletion that ended it.
        let prev = match &old {
            Some(o) => o.hist_key(),
            None => self.dead.remove(op.key.as_slice())?.map(|g| g.value()).unwrap_or(0),
        };
        let rk = rev_key(rev.main, sub);
        let h = HistEntry {
            tombstone: false,
            create_revision,
            version,
            lease,
            prev,
            key: op.key.clone(),
            value: Vec::new(),
        };
        // The history row carries the value too: encode without cloning it twice.
        let mut row = h.encode();
        row.extend_from_slice(&cur.value);
        self.hist.insert(rk, row.as_slice())?;
        let old_lease = old.as_ref().map(|o| o.lease).unwrap_or(0);
        if old_lease != lease {
            if old_lease != 0 {
                self.lease_keys.remove((old_lease, op.key.as_slice()))?;
            }
            if lease != 0 {
                self.lease_keys.insert((lease, op.key.as_slice()), ())?;
            }
        }
        // A creation's event has no prev_kv, even after a delete of the same txn (etcd's
        // watch server skips create events); etcd lets no txn put a key twice.
        let prev = old.map(|o| to_kv(&op.key, o));
        let kv = to_kv(&op.key, cur);
        self.effects.events.push(Event { kind: EventKind::Put, kv, prev_kv: prev.clone() });
        Ok(PutResult { prev_kv: if op.prev_kv { prev } else { None } })
    }

    /// Replaces a key's current value without a new revision: its kv row keeps its
    /// mod_revision and version, and the history row of that revision gets the new value.
    /// No event. Only for ZooKeeper's quota stats nodes, which ZooKeeper rewrites in place
    /// (DataTree.updateCountBytes); deterministic like any apply, so replicas agree.
    pub(super) fn rewrite_value(&mut self, key: &[u8], value: Vec<u8>) -> Result<(), Error> {
        let Some(mut cur) = self.current_state(key)? else { return Ok(()) };
        let rk = cur.hist_key();
        let mut h = match self.hist.get(rk)? {
            Some(row) => HistEntry::decode(row.value())?,
            None => return Err(StoreError::Corrupt(format!("no history row for a live key at {rk}")).into()),
        };
        cur.value_len = u32::try_from(value.len()).map_err(|_| StoreError::Corrupt("value over 4 GiB".into()))?;
        h.value = value;
        self.hist.insert(rk, h.encode().as_slice())?;
        self.kv.insert(key, cur.encode().as_slice())?;
        Ok(())
    }

    fn delete_range(&mut self, rev: &mut Rev, op: &DeleteOp) -> Result<DeleteResult, Error> {
        let mut doomed = Vec::new();
        for row in self.kv.range::<&[u8]>(key_bounds(&op.key, &op.range_end))? {
            let (k, v) = row?;
            doomed.push((k.value().to_vec(), CurrentKv::decode(v.value())?));
        }
        for (_, c) in &mut doomed {
            fill_value(&self.hist, c)?;
        }
        let mut prev_kvs = Vec::new();
        let deleted = doomed.len() as i64;
        for (key, old) in doomed {
            let prev = self.delete_key(rev, &key, old)?;
            if op.prev_kv {
                prev_kvs.push(prev);
            }
        }
        Ok(DeleteResult { deleted, prev_kvs })
    }

    pub(super) fn delete_key(&mut self, rev: &mut Rev, key: &[u8], old: CurrentKv) -> Result<KeyValue, Error> {
        let sub = rev.take();
        let rk = rev_key(rev.main, sub);
        self.kv.remove(key)?;
        let h = HistEntry {
            tombstone: true,
            create_revision: 0,
            version: 0,
            lease: 0,
            prev: old.hist_key(),
            key: key.to_vec(),
            value: Vec::new(),
        };
        self.hist.insert(rk, h.encode().as_slice())?;
        self.dead.insert(key, rk)?;
        if old.lease != 0 {
            self.lease_keys.remove((old.lease, key))?;
        }
        // A key the txn changed already shows its state from before the txn.
        let changed_in_txn = old.mod_main == rev.main && etcd_prev_rule(key);
        let event_prev = if changed_in_txn { state_before(&self.hist, old.hist_key(), Some(rev.main))? } else { None };
        let prev = to_kv(key, old);
        let kv = KeyValue { key: key.to_vec(), mod_revision: rev.main, ..Default::default() };
        let prev_kv = if changed_in_txn { event_prev } else { Some(prev.clone()) };
        self.effects.events.push(Event { kind: EventKind::Delete, kv, prev_kv });
        Ok(prev)
    }

    fn lease_grant(&mut self, id: i64, ttl_s: i64) -> Result<Response, Error> {
        assert!(id != 0, "lease id 0 must be replaced by the proposer");
        if self.leases.get(id)?.is_some() {
            return Err(ApplyError::LeaseExists.into());
        }
        self.leases.insert(id, LeaseRow { ttl_s, zk_set: None }.encode().as_slice())?;
        self.effects.leases_granted.push((id, ttl_s));
        Ok(Response::LeaseGrant { id, ttl_s })
    }

    fn lease_revoke(&mut self, id: i64) -> Result<(), Error> {
        let Some(row) = self.leases.get(id)?.map(|r| LeaseRow::decode(r.value())).transpose()? else {
            return Err(ApplyError::LeaseNotFound.into());
        };
        let mut keys = Vec::new();
        for row in self.lease_keys.range::<(i64, &[u8])>((id, &[][..])..(id.saturating_add(1), &[][..]))? {
            let (k, _) = row?;
            keys.push(k.value().1.to_vec());
        }
        let mut attached = Vec::with_capacity(keys.len());
        for key in keys {
            let current = self.current(&key)?;
            attached.push((key, current));
        }
        // etcd keys go in key order (etcd's lessor sorts them), a session's ephemeral znodes
        // in the order ZooKeeper deletes them, which their watchers see (after the etcd keys:
        // a ZooKeeper session holds no etcd key unless an etcd client attached one to it).
        let mut inserted = std::collections::HashMap::new();
        for (key, _) in &attached {
            if let Some(path) = super::znode::path_of(key) {
                let stamp = self.znode_get(path)?.map_or(0, |m| m.stamp);
                inserted.insert(path.to_string(), stamp);
            }
        }
        super::znode::ephemeral_delete_order(&mut attached, row.zk_set.map_or(0, |z| z.table), |p| {
            inserted.get(p).copied().unwrap_or(0)
        });
        let mut rev = self.begin();
        let mut quota = super::znode::RevokeQuota::default();
        for (key, current) in attached {
            match current {
                Some(old) => {
                    let data_len = old.value_len;
                    self.delete_key(&mut rev, &key, old)?;
                    // An ephemeral znode: its parent, metadata and quota follow its key.
                    self.zk_forget_ephemeral(&key, rev.main, data_len, &mut quota)?;
                }
                None => {
                    // An attachment without a key would be a bug in put/delete; tolerate it
                    // rather than stop the node, and clean it up.
                    self.lease_keys.remove((id, key.as_slice()))?;
                }
            }
        }
        self.zk_revoke_quota_commit(quota)?;
        self.leases.remove(id)?;
        self.end(rev);
        self.effects.leases_revoked.push(id);
        Ok(())
    }

    /// The raised alarms, by (member, type).
    fn alarms(&self) -> Result<Vec<(u64, u8)>, Error> {
        Ok(self.meta.get(META_ALARMS)?.map(|v| decode_alarms(v.value())).unwrap_or_default())
    }

    /// etcd's capped mode: while NOSPACE is raised, nothing that adds data is applied.
    fn check_space(&self) -> Result<(), Error> {
        if self.capped()? {
            return Err(ApplyError::NoSpace.into());
        }
        Ok(())
    }

    /// Whether NOSPACE is raised (by any member): writes that add data are refused, etcd's
    /// and ZooKeeper's alike. Read once per transaction (a ZooKeeper create or setData asks
    /// for every op) until an alarm changes it.
    pub(super) fn capped(&self) -> Result<bool, Error> {
        if let Some(capped) = self.space_capped.get() {
            return Ok(capped);
        }
        let capped = self.alarms()?.iter().any(|(_, a)| *a == AlarmType::NoSpace as u8);
        self.space_capped.set(Some(capped));
        Ok(capped)
    }

    fn alarm(&mut self, activate: bool, member_id: u64, alarm: AlarmType) -> Result<Response, Error> {
        if alarm == AlarmType::None {
            return Ok(Response::Alarm(None));
        }
        let mut alarms = self.alarms()?;
        let entry = (member_id, alarm as u8);
        let present = alarms.contains(&entry);
        // etcd answers an activate with the alarm whether or not it was already raised, and a
        // deactivate with it only if it was.
        let changed = match (activate, present) {
            (true, false) => {
                alarms.push(entry);
                alarms.sort_unstable();
                true
            }
            (false, true) => {
                alarms.retain(|a| *a != entry);
                true
            }
            (true, true) => false,
            (false, false) => return Ok(Response::Alarm(None)),
        };
        if changed {
            self.meta.insert(META_ALARMS, encode_alarms(&alarms).as_slice())?;
            self.space_capped.set(None);
        }
        Ok(Response::Alarm(Some((member_id, alarm))))
    }

    /// The change of `key` right after the one at `rk` (None: `rk` is its newest), found by
    /// walking the key's chain down from its newest change. Only compaction asks, and only for
    /// deletions: the walk is as long as the key's history above `rk`.
    fn next_change(&self, key: &[u8], rk: u128) -> Result<Option<u128>, Error> {
        let newest = match self.kv.get(key)? {
            Some(row) => CurrentKv::decode(row.value())?.hist_key(),
            None => match self.dead.get(key)? {
                Some(d) => d.value(),
                None => return Ok(None),
            },
        };
        let mut at = newest;
        let mut next = None;
        while at > rk {
            let Some(row) = self.hist.get(at)? else {
                return Err(StoreError::Corrupt(format!("history chain of a key breaks at {at:x}")).into());
            };
            let (prev, _) = HistEntry::link_of(row.value())?;
            next = Some(at);
            at = prev;
        }
        if at != rk {
            return Err(StoreError::Corrupt(format!("change {rk:x} is not in its key's history chain")).into());
        }
        Ok(next)
    }

    fn compact(&mut self, revision: i64) -> Result<(), Error> {
        if revision <= self.compact_rev {
            return Err(ApplyError::Compacted.into());
        }
        if revision > self.rev {
            return Err(ApplyError::FutureRevision.into());
        }
        // Only history above the previous compaction can hold newly superseded changes: every
        // change at or below it is already the newest of its key at that point. Walking that
        // history upwards, each change supersedes its key's previous one (its `prev` link, at or
        // below `revision` too): remove that. A deletion is not state: it goes as well once it
        // is its key's newest change at or below `revision`. What stays is exactly etcd's: for
        // every key its newest non-tombstone change at or below `revision`, and everything above.
        let mut cursor = rev_key(self.compact_rev + 1, 0);
        let end = rev_key(revision + 1, 0);
        const CHUNK_ROWS_MAX: usize = 4096;
        loop {
            let mut chunk = Vec::with_capacity(CHUNK_ROWS_MAX);
            for row in self.hist.range(cursor..end)? {
                let (k, v) = row?;
                let (prev, tombstone) = HistEntry::link_of(v.value())?;
                let key = if tombstone { HistEntry::decode(v.value())?.key } else { Vec::new() };
                chunk.push((k.value(), prev, tombstone, key));
                if chunk.len() == CHUNK_ROWS_MAX {
                    break;
                }
            }
            let Some(&(last, ..)) = chunk.last() else {
                break;
            };
            for (rk, prev, tombstone, key) in &chunk {
                if *prev != 0 {
                    // Gone already if it was a deletion removed by an earlier compaction.
                    self.hist.remove(*prev)?;
                }
                if *tombstone && self.next_change(key, *rk)?.is_none_or(|next| next >= end) {
                    self.hist.remove(*rk)?;
                    let dead_here = self.dead.get(key.as_slice())?.map(|g| g.value()) == Some(*rk);
                    if dead_here {
                        self.dead.remove(key.as_slice())?;
                    }
                }
            }
            if chunk.len() < CHUNK_ROWS_MAX {
                break;
            }
            cursor = last + 1;
        }
        self.compact_rev = revision;
        Ok(())
    }
}

/// etcd's backend encoding of a revision key: 8-byte big-endian main, '_', 8-byte sub, and a
/// trailing 't' for a tombstone. Used to compute HashKV exactly as etcd does.
pub(crate) fn etcd_rev_bytes(rk: u128, tombstone: bool) -> Vec<u8> {
    let mut b = Vec::with_capacity(18);
    b.extend_from_slice(&(rev_main(rk) as u64).to_be_bytes());
    b.push(b'_');
    b.extend_from_slice(&(rev_sub(rk) as u64).to_be_bytes());
    if tombstone {
        b.push(b't');
    }
    b
}

/// The protobuf encoding of mvccpb.KeyValue (fields 1..6, zero values omitted), as etcd
/// stores it; written by hand so the store needs no protobuf library.
pub(crate) fn etcd_kv_bytes(kv: &KeyValue) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    let mut out = Vec::with_capacity(kv.key.len() + kv.value.len() + 40);
    let bytes = |out: &mut Vec<u8>, field: u8, b: &[u8]| {
        if !b.is_empty() {
            out.push(field << 3 | 2);
            varint(out, b.len() as u64);
            out.extend_from_slice(b);
        }
    };
    bytes(&mut out, 1, &kv.key);
    for (field, v) in [(2u8, kv.create_revision), (3, kv.mod_revision), (4, kv.version)] {
        if v != 0 {
            out.push(field << 3);
            varint(&mut out, v as u64);
        }
    }
    bytes(&mut out, 5, &kv.value);
    if kv.lease != 0 {
        out.push(6 << 3);
        varint(&mut out, kv.lease as u64);
    }
    out
}

/// CRC-32C (Castagnoli), the checksum etcd's HashKV uses.
pub(crate) struct Crc32c {
    table: [u32; 256],
    state: u32,
}

impl Crc32c {
    pub(crate) fn new() -> Crc32c {
        let mut table = [0u32; 256];
        for (i, slot) in table.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { (c >> 1) ^ 0x82F6_3B78 } else { c >> 1 };
            }
            *slot = c;
        }
        Crc32c { table, state: 0xFFFF_FFFF }
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        for &b in data {
            self.state = self.table[((self.state ^ b as u32) & 0xFF) as usize] ^ (self.state >> 8);
        }
    }

    pub(crate) fn finish(&self) -> u32 {
        self.state ^ 0xFFFF_FFFF
    }
}

/// Loads a current state's value from its `hist` row.
/// The newest change of a key below `limit_rk`, walking its chain down from its change
/// `newest`; None if it has none there (created later, or its older changes are compacted).
pub(crate) fn change_at<H: ReadableTable<u128, &'static [u8]>>(
    hist: &H,
    newest: u128,
    limit_rk: u128,
) -> Result<Option<u128>, Error> {
    let mut at = newest;
    while at >= limit_rk {
        let Some(row) = hist.get(at)? else { return Ok(None) };
        at = HistEntry::link_of(row.value())?.0;
        if at == 0 {
            return Ok(None);
        }
    }
    // `at` may still be a compacted (removed) change: then the key has no state there.
    Ok(if hist.get(at)?.is_some() { Some(at) } else { None })
}

/// A put's new state of its key, given the state it replaces (with its value if the put keeps
/// it: `ignore_value`); takes the put's sub-revision.
fn next_state(old: Option<&CurrentKv>, op: &PutOp, rev: &mut Rev, mtime_ms: i64) -> Result<CurrentKv, Error> {
    let sub = rev.take();
    state_at(old, op, rev.main, sub, mtime_ms)
}

/// The state a put leaves its key in at revision (`main`, `sub`), given its state before.
fn state_at(old: Option<&CurrentKv>, op: &PutOp, main: i64, sub: i64, mtime_ms: i64) -> Result<CurrentKv, Error> {
    let (create_revision, version) = match old {
        Some(o) => (o.create_revision, o.version + 1),
        None => (main, 1),
    };
    let value = match (old, op.ignore_value) {
        (Some(o), true) => o.value.clone(),
        _ => op.value.clone(),
    };
    let lease = match (old, op.ignore_lease) {
        (Some(o), true) => o.lease,
        _ => op.lease,
    };
    let value_len = u32::try_from(value.len()).map_err(|_| StoreError::Corrupt("value over 4 GiB".into()))?;
    Ok(CurrentKv { create_revision, mod_main: main, mod_sub: sub, version, lease, mtime_ms, value_len, value })
}

pub(crate) fn fill_value<H: ReadableTable<u128, &'static [u8]>>(hist: &H, c: &mut CurrentKv) -> Result<(), Error> {
    let rk = c.hist_key();
    let row = hist.get(rk)?.ok_or_else(|| StoreError::Corrupt(format!("kv points at missing revision {rk:x}")))?;
    c.value = HistEntry::value_of(row.value())?.to_vec();
    Ok(())
}

/// A watch event's prev_kv: the key's live state at the change `link` (the event's `prev`)
/// leads to; None if there is none (created there, deleted, compacted away). `skip`: the
/// event's revision, to pass over earlier changes of the same txn as etcd's watch server does
/// (it reads prev_kv at ModRevision - 1), so a key a txn puts and then deletes shows the state
/// from before the txn; None for a znode key (see [`etcd_prev_rule`]). Shared by the apply's
/// live events and a read view's history replay.
pub(crate) fn state_before<H: ReadableTable<u128, &'static [u8]>>(
    hist: &H,
    mut link: u128,
    skip: Option<i64>,
) -> Result<Option<KeyValue>, Error> {
    while link != 0 && Some(rev_main(link)) == skip {
        let Some(row) = hist.get(link)? else { return Ok(None) };
        link = HistEntry::link_of(row.value())?.0;
    }
    if link == 0 {
        return Ok(None);
    }
    let Some(row) = hist.get(link)? else { return Ok(None) };
    let e = HistEntry::decode(row.value())?;
    if e.tombstone {
        return Ok(None);
    }
    Ok(Some(super::read::put_kv(link, e)))
}

/// Whether a key's watch events take etcd's prev_kv rule (the state before the txn, see
/// [`state_before`]). Not a znode's: ZooKeeper's watch events tell a creation from a
/// change by whether the change had a previous state, so a multi that creates a node and
/// then sets its data must show the created state as the second change's previous one.
pub(crate) fn etcd_prev_rule(key: &[u8]) -> bool {
    super::znode::path_of(key).is_none()
}

/// Which of a put's two lookups etcd makes first: a put on its own checks its lease before the
/// key `ignore_value` / `ignore_lease` need (applierV3backend.Put), a put inside a txn the key
/// first (checkPut); a put failing both answers accordingly.
#[derive(Clone, Copy, PartialEq, Eq)]
enum CheckOrder {
    LeaseFirst,
    KeyFirst,
}

/// The two passes of a txn's checks (etcd's checkRequests with checkPut, then checkRange).
#[derive(Clone, Copy, PartialEq, Eq)]
enum CheckPass {
    Writes,
    Reads,
}

/// (current revision, compacted revision; [`NEVER_COMPACTED`] if none) as recorded in `meta`.
pub(crate) fn revisions<M: ReadableTable<&'static str, &'static [u8]>>(meta: &M) -> Result<(i64, i64), StoreError> {
    let rev = meta.get(META_REVISION)?.map(|v| decode_i64(v.value())).unwrap_or(INITIAL_REVISION);
    let compact = meta.get(META_COMPACT_REVISION)?.map(|v| decode_i64(v.value())).unwrap_or(NEVER_COMPACTED);
    Ok((rev, compact))
}

pub(crate) fn to_kv(key: &[u8], c: CurrentKv) -> KeyValue {
    KeyValue {
        key: key.to_vec(),
        create_revision: c.create_revision,
        mod_revision: c.mod_main,
        version: c.version,
        value: c.value,
        lease: c.lease,
    }
}

fn compare_kv(c: &Compare, kv: &KeyValue) -> bool {
    let ord = match &c.target {
        CompareTarget::Value(v) => kv.value.as_slice().cmp(v.as_slice()),
        CompareTarget::Create(r) => kv.create_revision.cmp(r),
        CompareTarget::Mod(r) => kv.mod_revision.cmp(r),
        CompareTarget::Version(r) => kv.version.cmp(r),
        CompareTarget::Lease(r) => kv.lease.cmp(r),
    };
    match c.result {
        CompareResult::Equal => ord.is_eq(),
        CompareResult::NotEqual => ord.is_ne(),
        CompareResult::Greater => ord.is_gt(),
        CompareResult::Less => ord.is_lt(),
    }
}

/// etcd's range_end convention: empty = the single key; "\0" = every key >= key; otherwise
/// [key, range_end). An end at or before the start is an empty range.
pub(crate) fn key_bounds<'a>(key: &'a [u8], range_end: &'a [u8]) -> (Bound<&'a [u8]>, Bound<&'a [u8]>) {
    if range_end.is_empty() {
        (Bound::Included(key), Bound::Included(key))
    } else if range_end == [0] {
        (Bound::Included(key), Bound::Unbounded)
    } else if range_end <= key {
        (Bound::Included(key), Bound::Excluded(key))
    } else {
        (Bound::Included(key), Bound::Excluded(range_end))
    }
}

pub(crate) fn in_range(k: &[u8], key: &[u8], range_end: &[u8]) -> bool {
    if range_end.is_empty() {
        k == key
    } else if range_end == [0] {
        k >= key
    } else {
        k >= key && k < range_end
    }
}

/// etcd's Range on a consistent view of the tables, at `op.revision` (0 = `current`).
pub(crate) fn range<KV, H, D>(
    kv: &KV,
    hist: &H,
    dead: &D,
    op: &RangeOp,
    current: i64,
    compact: i64,
) -> Result<RangeResult, Error>
where
    KV: ReadableTable<&'static [u8], &'static [u8]>,
    H: ReadableTable<u128, &'static [u8]>,
    D: ReadableTable<&'static [u8], u128>,
{
    let rev = if op.revision <= 0 { current } else { op.revision };
    if rev > current {
        return Err(ApplyError::FutureRevision.into());
    }
    if rev < compact {
        return Err(ApplyError::Compacted.into());
    }
    let filtered = op.min_mod_revision != 0
        || op.max_mod_revision != 0
        || op.min_create_revision != 0
        || op.max_create_revision != 0;
    let sorted = op.sort_order != SortOrder::None || op.sort_target != SortTarget::Key;
    // Like etcd: without a sort order or filtering, fetch one more than the limit to learn
    // `more`. A sort target without an order sorts only what was fetched (etcd 3.4 and 3.5
    // decide the fetch on the order alone, then sort ascending by default).
    let fetch_max = if op.count_only {
        0
    } else if op.sort_order != SortOrder::None || filtered || op.limit <= 0 {
        usize::MAX
    } else {
        op.limit as usize + 1
    };
    let mut kvs = Vec::new();
    let mut count: i64 = 0;
    // Sorting by value needs the values even when only keys are returned (etcd strips them
    // after sorting).
    let want_value = !op.keys_only || (sorted && op.sort_target == SortTarget::Value);
    if rev == current {
        for row in kv.range::<&[u8]>(key_bounds(&op.key, &op.range_end))? {
            let (k, v) = row?;
            count += 1;
            if kvs.len() < fetch_max {
                let mut c = CurrentKv::decode(v.value())?;
                if want_value {
                    fill_value(hist, &mut c)?;
                }
                kvs.push(to_kv(k.value(), c));
            }
        }
    } else {
        // Every key that has a change at or below `rev` is live now (`kv`) or deleted with its
        // tombstone not compacted (`dead`): the two tables, merged in key order, name them all.
        // From each key's newest change, its chain leads down to its state at `rev`.
        let limit_rk = rev_key(rev + 1, 0);
        let visit = |newest: u128, kvs: &mut Vec<KeyValue>, count: &mut i64| -> Result<(), Error> {
            let Some(rk) = change_at(hist, newest, limit_rk)? else { return Ok(()) };
            let row = hist.get(rk)?.ok_or_else(|| StoreError::Corrupt(format!("missing revision {rk:x}")))?;
            let e = HistEntry::decode(row.value())?;
            if e.tombstone {
                return Ok(());
            }
            *count += 1;
            if kvs.len() < fetch_max {
                kvs.push(KeyValue {
                    key: e.key,
                    create_revision: e.create_revision,
                    mod_revision: rev_main(rk),
                    version: e.version,
                    value: if want_value { e.value } else { Vec::new() },
                    lease: e.lease,
                });
            }
            Ok(())
        };
        let bounds = key_bounds(&op.key, &op.range_end);
        let mut live = kv.range::<&[u8]>(bounds)?;
        let mut gone = dead.range::<&[u8]>(bounds)?;
        let mut next_live = live.next().transpose()?;
        let mut next_gone = gone.next().transpose()?;
        loop {
            // A key is in one table or the other, never both.
            let take_live = match (&next_live, &next_gone) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some((lk, _)), Some((gk, _))) => lk.value() < gk.value(),
            };
            if take_live {
                let Some((_, v)) = next_live.take() else { break };
                visit(CurrentKv::decode(v.value())?.hist_key(), &mut kvs, &mut count)?;
                next_live = live.next().transpose()?;
            } else {
                let Some((_, d)) = next_gone.take() else { break };
                visit(d.value(), &mut kvs, &mut count)?;
                next_gone = gone.next().transpose()?;
            }
        }
    }
    if filtered {
        kvs.retain(|kv| {
            (op.min_mod_revision == 0 || kv.mod_revision >= op.min_mod_revision)
                && (op.max_mod_revision == 0 || kv.mod_revision <= op.max_mod_revision)
                && (op.min_create_revision == 0 || kv.create_revision >= op.min_create_revision)
                && (op.max_create_revision == 0 || kv.create_revision <= op.max_create_revision)
        });
    }
    if sorted {
        // etcd sorts ascending by default when the target is not the key, with Go's unstable
        // sort.Sort: ties land where that algorithm leaves them (see `gosort`).
        let descend = op.sort_order == SortOrder::Descend;
        let cmp = |a: &KeyValue, b: &KeyValue| match op.sort_target {
            SortTarget::Key => a.key.cmp(&b.key),
            SortTarget::Version => a.version.cmp(&b.version),
            SortTarget::Create => a.create_revision.cmp(&b.create_revision),
            SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
            SortTarget::Value => a.value.cmp(&b.value),
        };
        super::gosort::sort_by(&mut kvs, |a, b| {
            let (a, b) = if descend { (b, a) } else { (a, b) };
            cmp(a, b) == std::cmp::Ordering::Less
        });
    }
    let mut more = false;
    if op.limit > 0 && kvs.len() > op.limit as usize {
        kvs.truncate(op.limit as usize);
        more = true;
    }
    if op.keys_only {
        for kv in &mut kvs {
            kv.value = Vec::new();
        }
    }
    Ok(RangeResult { kvs, more, count, revision: current })
}
