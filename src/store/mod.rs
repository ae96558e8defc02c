//! The store: an MVCC keyspace with leases, kept in redb.
//!
//! Deterministic and synchronous: no tokio, no clock, no network. The replication layer feeds it
//! committed [`Command`](crate::command::Command)s through [`Store::write`], which runs them in ONE
//! redb write transaction together with the raft bookkeeping it is given (the applied log id),
//! so a crash leaves either all of an apply or none of it. Readers get a [`ReadView`]: a redb
//! read transaction, i.e. a consistent snapshot of every table at one revision.

pub mod bolt;
mod mvcc;
mod read;
pub mod schema;
pub mod sha256;
pub mod znode;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redb::{Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata};

pub use mvcc::{Effects, WriteTx};
pub use read::{EventPage, ReadView, ZkNode};

use crate::command::{Applied, ApplyError, Command};
use schema::*;

/// A storage fault (I/O, corruption). Unlike [`ApplyError`] this is not a result of the
/// command: the node cannot continue applying and must stop.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("opening the database at {path}: {source}")]
    Open { path: PathBuf, source: redb::DatabaseError },
    #[error("storage: {0}")]
    Storage(#[from] redb::StorageError),
    #[error("transaction: {0}")]
    Transaction(#[from] redb::TransactionError),
    #[error("table: {0}")]
    Table(#[from] redb::TableError),
    #[error("commit: {0}")]
    Commit(#[from] redb::CommitError),
    #[error("durability: {0}")]
    Durability(#[from] redb::SetDurabilityError),
    #[error("corrupt data: {0}")]
    Corrupt(String),
    #[error(
        "{path}: written in store format {found}, this Conclave reads format {STORE_FORMAT}; start it on an empty data directory"
    )]
    Format { path: PathBuf, found: i64 },
}

/// Either the command's deterministic failure or a storage fault; used inside apply and reads
/// so `?` works for both, then split apart at the boundary.
#[derive(Debug)]
pub enum Error {
    Apply(ApplyError),
    Store(StoreError),
}

impl From<ApplyError> for Error {
    fn from(e: ApplyError) -> Self {
        Error::Apply(e)
    }
}

macro_rules! storage_error_from {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::Store(e.into())
            }
        }
    )*};
}
storage_error_from!(StoreError, redb::StorageError, redb::TableError);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Apply(e) => write!(f, "{e}"),
            Error::Store(e) => write!(f, "{e}"),
        }
    }
}

/// One row of a store dump: (table number, key bytes, value bytes). See [`ReadView::dump`].
pub type DumpRow = (u8, Vec<u8>, Vec<u8>);

#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// redb's page cache. Kept small: the OS page cache holds the file anyway, and RSS is a goal.
    pub cache_bytes: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig { cache_bytes: 16 << 20 }
    }
}

#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    path: PathBuf,
    /// Watchers that want their events' prev_kv: while there are none, a put does not read the
    /// value it replaces (a history lookup at a random place, ~20% of a put's apply cost)
    /// just to put it in an event nobody reads.
    prev_value_watchers: Arc<AtomicUsize>,
    /// The database file's size as of the last commit. Asked for on every etcd write (the
    /// backend quota check) and by status calls; a `stat` each time was 3.5 % of a put's CPU,
    /// and the size only changes when a transaction commits.
    file_bytes: Arc<AtomicU64>,
    /// The database file, open for `fstat` only: the size after each commit without resolving
    /// the path again (`stat` by path was ~6 % of the apply's commit in a profile of puts at
    /// 100 clients).
    file: Arc<std::fs::File>,
    /// The transaction [`Store::prepare`] ran ahead of its commit, if any. Every write takes
    /// this lock first and aborts a transaction it finds here (dropping it rolls it back and
    /// frees redb's write lock), so nothing ever waits for a prepared transaction that nobody
    /// will commit.
    prepared: Arc<Mutex<Option<Prepared>>>,
    /// Signalled whenever `prepared` is emptied (used by its apply, or aborted), for a
    /// [`Store::prepare`] waiting to run the next batch on the state after it.
    prepared_taken: Arc<Condvar>,
    /// Counts the writes that changed the state (bumped under the write lock, by every write
    /// and every applied prepared batch, committed yet or not): a prepare names the state it
    /// expects to build on, so it never runs on a later state than intended.
    applies: Arc<AtomicU64>,
    /// An applied prepared batch whose transaction is not committed yet (see
    /// [`Store::write_prepared`]). Whoever needs the store next commits it: the preparer before
    /// it runs the next batch, a reader, any other write. Why: the commit (redb's checksums and
    /// page bookkeeping, 20–80 µs per entry) then runs while the next entry is fsynced, or on
    /// a reader's thread, instead of between a write's fsync and its answer.
    applied: Arc<Mutex<Option<redb::WriteTransaction>>>,
    /// Whether `applied` holds a transaction: looked at by every read, without the lock.
    uncommitted: Arc<AtomicBool>,
    /// Set when committing an applied transaction failed: those writes were answered and are
    /// lost from the store (not from the raft log), so nothing may read or write it any more.
    failed: Arc<AtomicBool>,
    /// The view of the last commit, shared by the reads until the next commit: a read
    /// transaction and its table handles cost about as much as a small read itself. Dropped
    /// at every commit, so no old snapshot is kept alive (redb cannot reuse the pages a
    /// snapshot still sees) and no read after a commit sees the state before it.
    view: Arc<Mutex<Option<Arc<ReadView>>>>,
}

/// Commands already run in an open write transaction on the state as it is now committed:
/// the results of running exactly these commands next, as long as nothing else commits (and
/// nothing can while the transaction is open: it holds redb's write lock).
struct Prepared {
    tx: redb::WriteTransaction,
    commands: Arc<Vec<Command>>,
    results: Vec<Applied>,
    effects: Effects,
}

impl Store {
    /// Opens (or creates) the database file and every table, so later transactions never see a
    /// missing table.
    pub fn open(path: &Path, config: StoreConfig) -> Result<Store, StoreError> {
        let db = Database::builder()
            .set_cache_size(config.cache_bytes)
            .create(path)
            .map_err(|source| StoreError::Open { path: path.to_path_buf(), source })?;
        let tx = db.begin_write()?;
        {
            let kv = tx.open_table(KV)?;
            let hist = tx.open_table(HIST)?;
            tx.open_table(DEAD)?;
            tx.open_table(LEASES)?;
            tx.open_table(LEASE_KEYS)?;
            let mut meta = tx.open_table(META)?;
            tx.open_table(RAFT_META)?;
            tx.open_table(ZK_CHILDREN)?;
            tx.open_table(ZK_REAP)?;
            // A store from before formats were recorded has keys or history but no format:
            // format 1. Nothing at all: a new store.
            let found = match meta.get(META_FORMAT)? {
                Some(v) => Some(decode_i64(v.value())),
                None if kv.is_empty()? && hist.is_empty()? => None,
                None => Some(1),
            };
            match found {
                None => {
                    meta.insert(META_FORMAT, encode_i64(STORE_FORMAT).as_slice())?;
                }
                Some(STORE_FORMAT) => {}
                Some(found) => return Err(StoreError::Format { path: path.to_path_buf(), found }),
            }
        }
        znode::init_builtins(&tx)?;
        tx.commit()?;
        let file = std::fs::File::open(path).map_err(|e| StoreError::Open {
            path: path.to_path_buf(),
            source: redb::DatabaseError::Storage(redb::StorageError::Io(e)),
        })?;
        let store = Store {
            db: Arc::new(db),
            path: path.to_path_buf(),
            file: Arc::new(file),
            prev_value_watchers: Arc::new(AtomicUsize::new(0)),
            file_bytes: Arc::new(AtomicU64::new(0)),
            prepared: Arc::new(Mutex::new(None)),
            prepared_taken: Arc::new(Condvar::new()),
            applies: Arc::new(AtomicU64::new(0)),
            applied: Arc::new(Mutex::new(None)),
            uncommitted: Arc::new(AtomicBool::new(false)),
            failed: Arc::new(AtomicBool::new(false)),
            view: Arc::new(Mutex::new(None)),
        };
        store.committed();
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A watcher that wants prev_kv values was added (true) or removed (false). Writes that
    /// begin after an addition put the replaced values into their events' prev_kv; see
    /// [`Effects::prev_values`] for the ones already under way.
    pub fn prev_value_watcher(&self, added: bool) {
        if added {
            self.prev_value_watchers.fetch_add(1, Ordering::SeqCst);
        } else {
            let was = self.prev_value_watchers.fetch_sub(1, Ordering::SeqCst);
            assert!(was > 0, "more prev_kv watchers removed than added");
        }
    }

    /// A consistent snapshot of the whole store, with every applied write in it.
    pub fn read(&self) -> Result<Arc<ReadView>, StoreError> {
        if self.uncommitted.load(Ordering::SeqCst) {
            self.settle()?;
        }
        self.check_failed()?;
        let mut view = self.view.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = view.as_ref() {
            return Ok(v.clone());
        }
        let v = Arc::new(ReadView::new(self.db.begin_read()?)?);
        *view = Some(v.clone());
        Ok(v)
    }

    fn check_failed(&self) -> Result<(), StoreError> {
        if self.failed.load(Ordering::SeqCst) {
            return Err(StoreError::Corrupt("an applied write could not be committed; restart to replay it".into()));
        }
        Ok(())
    }

    /// Commits the transaction [`Store::write_prepared`] left open, if any: every applied
    /// write is visible to the reads that begin after this returns.
    fn settle(&self) -> Result<(), StoreError> {
        let mut applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = applied.take() {
            let r = tx.commit();
            if r.is_err() {
                self.failed.store(true, Ordering::SeqCst);
            }
            self.committed();
            self.uncommitted.store(false, Ordering::SeqCst);
            r?;
        }
        Ok(())
    }

    /// Runs `f` in one write transaction and commits it. With `durable == false` the commit is
    /// not fsynced: the caller guarantees that what it wrote can be recomputed after a crash
    /// (apply can: the raft log it comes from is durable, and the applied log id is in the same
    /// transaction, so a lost apply is simply replayed). The next durable commit of this
    /// database makes every earlier one durable too.
    pub fn write<R>(
        &self,
        durable: bool,
        f: impl FnOnce(&mut WriteTx<'_>) -> Result<R, StoreError>,
    ) -> Result<(R, Effects), StoreError> {
        let _writing = self.exclusive()?;
        let mut tx = self.db.begin_write()?;
        if !durable {
            tx.set_durability(Durability::None)?;
        }
        let (r, effects) = {
            let prev_values = self.prev_value_watchers.load(Ordering::SeqCst) > 0;
            let mut w = WriteTx::new(&tx, prev_values)?;
            let r = f(&mut w)?;
            let effects = w.finish()?;
            (r, effects)
        };
        tx.commit()?;
        self.applies.fetch_add(1, Ordering::SeqCst);
        self.committed();
        Ok((r, effects))
    }

    /// The right to begin a write transaction: aborts a prepared one (see `prepared`) and
    /// commits an applied one (see `applied`).
    fn exclusive(&self) -> Result<MutexGuard<'_, Option<Prepared>>, StoreError> {
        let mut slot = self.prepared.lock().unwrap_or_else(|p| p.into_inner());
        if slot.take().is_some() {
            self.prepared_taken.notify_all();
        }
        self.settle()?;
        self.check_failed()?;
        Ok(slot)
    }

    /// Runs `commands` now, in a write transaction that stays open, so that applying them
    /// later ([`Store::write_prepared`]) only has to record the applied position and commit.
    /// Why: a raft entry's commands are known before the entry is durable; running them while
    /// the log's fsync is under way takes the apply (B-tree work) off the write's critical
    /// path. Nothing of it is visible to readers before that commit, and any other write
    /// aborts it, so a prepared transaction is only ever used on the state it ran on.
    ///
    /// Only one transaction can be prepared at a time (it holds redb's write lock). If an
    /// earlier one is still waiting for its apply, this waits up to `wait` for that apply to
    /// take it, and then runs on the state after it (first committing it, if nobody did yet).
    /// Returns false, having done nothing, if the earlier one is still there after `wait`: the
    /// apply then runs the commands itself.
    ///
    /// `after` is the [`Store::applies`] count the commands are meant to follow (the one
    /// right after their predecessor's apply); if anything else has been applied since, they
    /// would run on the wrong state (typically: their own apply got there first), and nothing
    /// is done either.
    pub fn prepare(&self, commands: Arc<Vec<Command>>, wait: Duration, after: u64) -> Result<bool, StoreError> {
        let deadline = Instant::now() + wait;
        let mut slot = self.prepared.lock().unwrap_or_else(|p| p.into_inner());
        while slot.is_some() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            slot = self.prepared_taken.wait_timeout(slot, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        if self.applies() != after {
            return Ok(false);
        }
        self.settle()?;
        self.check_failed()?;
        let mut tx = self.db.begin_write()?;
        tx.set_durability(Durability::None)?;
        let (results, effects) = {
            let prev_values = self.prev_value_watchers.load(Ordering::SeqCst) > 0;
            let mut w = WriteTx::new(&tx, prev_values)?;
            let mut results = Vec::with_capacity(commands.len());
            for cmd in commands.iter() {
                results.push(w.apply(cmd)?);
            }
            (results, w.finish()?)
        };
        *slot = Some(Prepared { tx, commands, results, effects });
        Ok(true)
    }

    /// Applies `commands` with the transaction [`Store::prepare`] ran them in, after adding
    /// the bookkeeping rows `meta` (the applied log id) to its `meta` table: the same results
    /// and effects as running them in [`Store::write`] and then [`WriteTx::set_meta`].
    /// None, and nothing written, when there is no such transaction (another write aborted it,
    /// or it ran other commands: it is aborted now); the caller then writes as usual.
    ///
    /// The transaction is not committed here unless `durable` (which also costs one more,
    /// empty and durable, commit): it is left for whoever needs the store next (see
    /// `applied`), and every read commits it before it looks. Crash safety is that of a
    /// non-durable commit: the entry is in the raft log, the applied log id is in the same
    /// transaction, and a restart replays it.
    ///
    /// Only the `meta` table is opened here, not every table as [`WriteTx`] does: this runs
    /// between the entry's fsync and its answers, and opening nine tables a second time was a
    /// measurable part of that gap.
    pub fn write_prepared(
        &self,
        durable: bool,
        commands: &[Command],
        meta: &[(&str, &[u8])],
    ) -> Result<Option<(Vec<Applied>, Effects)>, StoreError> {
        let mut slot = self.prepared.lock().unwrap_or_else(|p| p.into_inner());
        let Some(prepared) = slot.take() else { return Ok(None) };
        self.prepared_taken.notify_all();
        if !same_commands(prepared.commands.as_slice(), commands) {
            return Ok(None);
        }
        let Prepared { tx, results, effects, .. } = prepared;
        {
            let mut table = tx.open_table(META)?;
            for (key, value) in meta {
                assert!(mvcc::is_bookkeeping_key(key), "bookkeeping may not set revisions");
                table.insert(*key, *value)?;
            }
        }
        if durable {
            tx.commit()?;
            self.applies.fetch_add(1, Ordering::SeqCst);
            self.committed();
            drop(slot);
            self.sync()?;
        } else {
            let mut applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
            // A prepared transaction holds redb's write lock, and prepare settles first.
            assert!(applied.is_none(), "an applied transaction next to a prepared one");
            *applied = Some(tx);
            self.applies.fetch_add(1, Ordering::SeqCst);
            self.uncommitted.store(true, Ordering::SeqCst);
        }
        Ok(Some((results, effects)))
    }

    /// Size of the database file, as etcd reports dbSize (as of the last commit).
    pub fn size_bytes(&self) -> u64 {
        self.file_bytes.load(Ordering::Relaxed)
    }

    /// How many writes have changed the state since open (see [`Store::prepare`]).
    pub fn applies(&self) -> u64 {
        self.applies.load(Ordering::SeqCst)
    }

    /// Called after every commit, still holding the write lock: no cached view may outlive
    /// it, and the file may have grown.
    fn committed(&self) {
        drop(self.view.lock().unwrap_or_else(|p| p.into_inner()).take());
        let len = self.file.metadata().map(|m| m.len()).unwrap_or(0);
        self.file_bytes.store(len, Ordering::Relaxed);
    }

    /// Makes every earlier write durable: commits an applied transaction, then one durable
    /// empty commit.
    pub fn sync(&self) -> Result<(), StoreError> {
        let _writing = self.exclusive()?;
        let tx = self.db.begin_write()?;
        tx.commit()?;
        self.committed();
        Ok(())
    }

    // ---- raft vote and log bookkeeping: opaque bytes owned by the replication layer --------

    pub fn raft_meta_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(RAFT_META)?;
        Ok(t.get(key)?.map(|v| v.value().to_vec()))
    }

    /// Durable: used for the vote, which raft requires on disk before answering.
    pub fn raft_meta_put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let _writing = self.exclusive()?;
        let tx = self.db.begin_write()?;
        {
            let mut t = tx.open_table(RAFT_META)?;
            t.insert(key, value)?;
        }
        tx.commit()?;
        self.committed();
        Ok(())
    }

    /// State-machine bookkeeping written by apply through [`WriteTx::set_meta`].
    pub fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.settle()?;
        let tx = self.db.begin_read()?;
        let t = tx.open_table(META)?;
        Ok(t.get(key)?.map(|v| v.value().to_vec()))
    }

    /// Every state-machine table as (table, key, value) rows: the raft snapshot's content.
    pub fn dump(&self) -> Result<Vec<DumpRow>, StoreError> {
        self.read()?.dump()
    }

    /// Replaces every state-machine table with `rows` (from [`Store::dump`]) in one durable
    /// transaction: installing a snapshot is all or nothing.
    pub fn restore(&self, rows: &[DumpRow]) -> Result<(), StoreError> {
        let _writing = self.exclusive()?;
        let tx = self.db.begin_write()?;
        {
            tx.delete_table(KV)?;
            tx.delete_table(HIST)?;
            tx.delete_table(DEAD)?;
            tx.delete_table(LEASES)?;
            tx.delete_table(LEASE_KEYS)?;
            tx.delete_table(META)?;
            tx.delete_table(ZNODES)?;
            tx.delete_table(ZK_CHILDREN)?;
            tx.delete_table(ZK_REAP)?;
            let mut znodes = tx.open_table(ZNODES)?;
            let mut zk_children = tx.open_table(ZK_CHILDREN)?;
            let mut zk_reap = tx.open_table(ZK_REAP)?;
            let utf8 = |b: &[u8]| {
                std::str::from_utf8(b).map(str::to_string).map_err(|_| StoreError::Corrupt("znode path".into()))
            };
            let mut kv = tx.open_table(KV)?;
            let mut hist = tx.open_table(HIST)?;
            let mut dead = tx.open_table(DEAD)?;
            let mut leases = tx.open_table(LEASES)?;
            let mut lease_keys = tx.open_table(LEASE_KEYS)?;
            let mut meta = tx.open_table(META)?;
            for (table, k, v) in rows {
                match *table {
                    0 => {
                        kv.insert(k.as_slice(), v.as_slice())?;
                    }
                    1 => {
                        let rev = u128::from_be_bytes(
                            k.as_slice().try_into().map_err(|_| StoreError::Corrupt("hist key".into()))?,
                        );
                        hist.insert(rev, v.as_slice())?;
                        // `dead` is derived: history comes in revision order, so a key's last
                        // change decides whether it is deleted now.
                        let e = HistEntry::decode(v)?;
                        if e.tombstone {
                            dead.insert(e.key.as_slice(), rev)?;
                        } else {
                            dead.remove(e.key.as_slice())?;
                        }
                    }
                    2 => {
                        let id = decode_i64(k);
                        leases.insert(id, v.as_slice())?;
                    }
                    3 => {
                        let id = decode_i64(&k[..8]);
                        lease_keys.insert((id, &k[8..]), ())?;
                    }
                    4 => {
                        let key = std::str::from_utf8(k).map_err(|_| StoreError::Corrupt("meta key".into()))?;
                        meta.insert(key, v.as_slice())?;
                    }
                    5 => {
                        znodes.insert(utf8(k)?.as_str(), v.as_slice())?;
                    }
                    6 => {
                        let nul =
                            k.iter().position(|b| *b == 0).ok_or_else(|| StoreError::Corrupt("zk child".into()))?;
                        zk_children.insert((utf8(&k[..nul])?.as_str(), utf8(&k[nul + 1..])?.as_str()), ())?;
                    }
                    7 => {
                        zk_reap.insert(utf8(k)?.as_str(), ())?;
                    }
                    t => return Err(StoreError::Corrupt(format!("snapshot table {t}"))),
                }
            }
        }
        tx.commit()?;
        self.applies.fetch_add(1, Ordering::SeqCst);
        self.committed();
        Ok(())
    }
}

/// Whether `k` is in etcd's range (key, range_end): empty end = only `key`, "\0" = from `key`.
pub fn key_in_range(k: &[u8], key: &[u8], range_end: &[u8]) -> bool {
    mvcc::in_range(k, key, range_end)
}

#[cfg(test)]
mod tests;

/// Whether two batches are the same commands. Usually they are literally the same slice (the
/// log store hands the state machine the proposer's own `Arc`), which is answered without
/// comparing every command's bytes; a batch read back from disk is compared in full.
pub fn same_commands(a: &[Command], b: &[Command]) -> bool {
    std::ptr::eq(a, b) || a == b
}
