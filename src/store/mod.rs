//! The store: an MVCC keyspace with leases, kept in redb.
//!
//! Deterministic and synchronous: no tokio, no clock, no network. The replication layer feeds it
//! committed [`Command`](crate::command::Command)s through [`Store::write`], which runs them in ONE
//! redb write transaction together with the raft bookkeeping it is given (the applied log id),
//! so a crash leaves either all of an apply or none of it. Readers get a [`ReadView`]: a redb
//! read transaction, i.e. a consistent snapshot of every table at one revision.

pub mod bolt;
mod gosort;
mod mvcc;
mod read;
pub mod schema;
pub mod sha256;
pub mod znode;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard};
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
    #[error("defragment: {0}")]
    Compaction(#[from] redb::CompactionError),
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
    /// Behind a lock only for [`Store::defragment`], which needs the database to itself;
    /// everything else takes it shared, just to begin a transaction.
    db: Arc<RwLock<Database>>,
    path: PathBuf,
    /// Watchers that want their events' prev_kv: while there are none, a put does not read the
    /// value it replaces (a history lookup at a random place, ~20% of a put's apply cost)
    /// just to put it in an event nobody reads.
    prev_value_watchers: Arc<AtomicUsize>,
    /// The database's size as of the last commit, as [`db_file_bytes`] counts it. Asked for on
    /// every etcd write (the backend quota check) and by status calls; a `stat` each time was
    /// 3.5 % of a put's CPU, and the size only changes when a transaction commits.
    file_bytes: Arc<AtomicU64>,
    /// The database file, open for `fstat` only: the size after each commit without resolving
    /// the path again (`stat` by path was ~6 % of the apply's commit in a profile of puts at
    /// 100 clients).
    file: Arc<std::fs::File>,
    /// The most redb's write buffer holds (half its cache): see [`db_file_bytes`].
    write_buffer_bytes: u64,
    /// What holds redb's write lock between writes, if anything: a batch run ahead of its
    /// apply ([`Store::prepare`]) or applied batches not committed yet
    /// ([`Store::write_prepared`]). Every other write takes this lock first, aborts a prepared
    /// transaction and commits applied ones (dropping a transaction rolls it back and frees
    /// redb's write lock), so nothing ever waits for a transaction nobody will finish.
    pending: Arc<Mutex<Pending>>,
    /// Signalled whenever a prepared transaction leaves `pending` (used by its apply, or
    /// aborted), for a [`Store::prepare`] waiting to run the next batch on the state after it.
    prepared_taken: Arc<Signal>,
    /// Counts the writes that changed the state (bumped under the write lock, by every write
    /// and every applied prepared batch, committed yet or not): a prepare names the state it
    /// expects to build on, so it never runs on a later state than intended.
    applies: Arc<AtomicU64>,
    /// Whether applied batches are not committed yet (in `pending`): looked at by every read,
    /// without the lock, so that a read commits them before it looks.
    uncommitted: Arc<AtomicBool>,
    /// Whether anything read the store since its last commit: while nothing does, a prepare
    /// runs its batch in the applied batches' transaction instead of committing them first.
    read_seen: Arc<AtomicBool>,
    /// Whether the applied batches' open transaction can take no further batch
    /// (`UNSAVED_*_MAX`, judged by the last batch's size): the next prepare would commit it
    /// first, on its own entry's path, unless [`Store::commit_if_full`] does it before.
    unsaved_full: Arc<AtomicBool>,
    /// Set when committing applied batches failed: those writes were answered and are lost
    /// from the store (not from the raft log), so nothing may read or write it any more.
    failed: Arc<AtomicBool>,
    /// The view of the last commit, shared by the reads until the next commit: a read
    /// transaction and its table handles cost about as much as a small read itself. Dropped
    /// at every commit, so no old snapshot is kept alive (redb cannot reuse the pages a
    /// snapshot still sees) and no read after a commit sees the state before it.
    view: Arc<Mutex<Option<Arc<ReadView>>>>,
}

/// A condition variable that knows whether anyone waits on it, for a signal given on every
/// apply and almost never awaited.
///
/// Why: std's `Condvar::notify_all` makes a `futex` system call every time, waiters or not,
/// and `prepared_taken` is signalled by every applied entry, while a prepare waits on it only
/// when it comes before the previous entry's apply. Both sides use it only under the
/// `pending` mutex, so a waiter counted there cannot miss a notification.
#[derive(Default)]
struct Signal {
    cv: Condvar,
    waiters: AtomicUsize,
}

impl Signal {
    /// Wakes every waiter, if there is one. Call with the mutex held.
    fn notify(&self) {
        if self.waiters.load(Ordering::Relaxed) > 0 {
            self.cv.notify_all();
        }
    }

    /// `Condvar::wait_timeout`, counted.
    fn wait_timeout<'a, T>(&self, guard: MutexGuard<'a, T>, timeout: Duration) -> MutexGuard<'a, T> {
        self.waiters.fetch_add(1, Ordering::Relaxed);
        let guard = self.cv.wait_timeout(guard, timeout).unwrap_or_else(|p| p.into_inner()).0;
        self.waiters.fetch_sub(1, Ordering::Relaxed);
        guard
    }
}

/// Applied batches share one redb transaction at most this many at a time (and with at most
/// `UNSAVED_COMMANDS_MAX` commands): bounds the memory of its dirty pages and the work of a
/// replay (see [`Store::settle`]).
const UNSAVED_BATCHES_MAX: usize = 16;
const UNSAVED_COMMANDS_MAX: usize = 1024;

/// How long the apply of a prepared batch yields while the prepare still holds the store's
/// lock before it sleeps on it (see `Store::lock_pending_spinning`): longer than a 64-command
/// prepare outlasts its fsync (~100–200 µs), short enough that a stuck prepare costs little.
const APPLY_LOCK_SPIN: Duration = Duration::from_millis(1);

/// How long [`Store::defragment`] waits for reads that hold a view of the store to end.
const DEFRAG_WAIT: Duration = Duration::from_secs(5);

/// See `Store::pending`.
enum Pending {
    Idle,
    Prepared(Prepared),
    Applied(Open),
}

/// Commands already run in an open write transaction on the state as it is now applied:
/// the results of running exactly these commands next, as long as nothing else writes (and
/// nothing can while the transaction is open: it holds redb's write lock).
struct Prepared {
    tx: redb::WriteTransaction,
    commands: Arc<Vec<Command>>,
    results: Vec<Applied>,
    effects: Effects,
    /// The bookkeeping rows written with the commands (see [`Store::prepare_logged`]).
    meta: Vec<(String, Vec<u8>)>,
    /// Applied batches this transaction continues (not committed yet).
    unsaved: Unsaved,
}

/// A transaction holding applied batches, not committed yet.
struct Open {
    tx: redb::WriteTransaction,
    unsaved: Unsaved,
}

/// Applied batches not committed yet, in apply order, with the last one's bookkeeping rows:
/// what a new transaction must run again if the one holding them has to be dropped.
#[derive(Default)]
struct Unsaved {
    batches: Vec<Arc<Vec<Command>>>,
    meta: Vec<(String, Vec<u8>)>,
}

impl Unsaved {
    /// Commands in the batches (at most UNSAVED_BATCHES_MAX of them to add up).
    fn commands(&self) -> usize {
        self.batches.iter().map(|b| b.len()).sum()
    }

    /// Whether a further batch of `len` commands may join these in their transaction
    /// (`UNSAVED_*_MAX`).
    fn can_take(&self, len: usize) -> bool {
        self.batches.len() < UNSAVED_BATCHES_MAX && self.commands() + len <= UNSAVED_COMMANDS_MAX
    }
}

/// Turns the kernel's readahead off for the database file.
///
/// Why: redb reads single pages, wherever the B-tree leads, when one is not in its own cache.
/// With readahead on, such a read of a growing (sparse) file also read the following window
/// of large folios, mostly holes the kernel zero-filled: under 100 concurrent etcd puts on a
/// fresh store that zeroing was ~4.5 % of the server's CPU (perf: `page_cache_ra_order` ->
/// memset under redb's `FileBackend::read`), for pages nobody asked for. Advice only: if the
/// call fails, reads are as before.
fn no_readahead(file: &std::fs::File) {
    use std::os::fd::AsRawFd;
    // SAFETY: posix_fadvise only reads its integer arguments; the fd is open for the call.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_RANDOM) };
    if rc != 0 {
        tracing::debug!("posix_fadvise(RANDOM) on the database file: error {rc}");
    }
}

/// The bytes of the database file that hold pages, or will once redb's write buffer is out:
/// its allocated blocks plus that buffer's bound (half of redb's cache), at most its length.
///
/// Why not the length: etcd's dbSize (and the space quota it checks writes against) is bbolt's
/// high-water mark of pages, and bbolt grows its file 16 MiB past it at most. redb grows its
/// file by doubling it (up to 4 GiB regions) and leaves the new part a hole until pages are
/// written there, so the length was up to twice the pages in use: NOSPACE came at half the data
/// etcd holds under the same `--quota-backend-bytes` (seen: 1.1 GB of pages in a 2.2 GB file).
/// The allocated blocks are the pages ever written, freed ones included, as bbolt's high-water
/// mark counts them; pages that non-durable commits dirtied wait in redb's write buffer, which
/// redb keeps at half its cache and flushes at every durable commit (at least once a second),
/// so they are counted by that bound. A file system that allocates blocks ahead of the data
/// (XFS's speculative preallocation) is capped by the length; one that compresses blocks would
/// count fewer.
fn db_file_bytes(m: &std::fs::Metadata, write_buffer_bytes: u64) -> u64 {
    use std::os::unix::fs::MetadataExt;
    m.len().min(m.blocks().saturating_mul(512).saturating_add(write_buffer_bytes))
}

impl Store {
    /// Opens (or creates) the database file and every table, so later transactions never see a
    /// missing table.
    pub fn open(path: &Path, config: StoreConfig) -> Result<Store, StoreError> {
        let open_err = |source: redb::DatabaseError| StoreError::Open { path: path.to_path_buf(), source };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| open_err(e.into()))?;
        no_readahead(&file);
        let backend = redb::backends::FileBackend::new(file).map_err(open_err)?;
        let db =
            Database::builder().set_cache_size(config.cache_bytes).create_with_backend(backend).map_err(open_err)?;
        let tx = db.begin_write()?;
        {
            let kv = tx.open_table(KV)?;
            let hist = tx.open_table(HIST)?;
            tx.open_table(DEAD)?;
            tx.open_table(LEASES)?;
            tx.open_table(LEASE_KEYS)?;
            let mut meta = tx.open_table(META)?;
            tx.open_table(RAFT_META)?;
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
                Some(2) => {
                    znode::upgrade_children_from_v2(&tx)?;
                    znode::upgrade_nodes_from_v3(&tx)?;
                    meta.insert(META_FORMAT, encode_i64(STORE_FORMAT).as_slice())?;
                }
                Some(3) => {
                    znode::upgrade_nodes_from_v3(&tx)?;
                    meta.insert(META_FORMAT, encode_i64(STORE_FORMAT).as_slice())?;
                }
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
            db: Arc::new(RwLock::new(db)),
            path: path.to_path_buf(),
            file: Arc::new(file),
            write_buffer_bytes: config.cache_bytes as u64 / 2,
            prev_value_watchers: Arc::new(AtomicUsize::new(0)),
            file_bytes: Arc::new(AtomicU64::new(0)),
            pending: Arc::new(Mutex::new(Pending::Idle)),
            prepared_taken: Arc::new(Signal::default()),
            applies: Arc::new(AtomicU64::new(0)),
            uncommitted: Arc::new(AtomicBool::new(false)),
            read_seen: Arc::new(AtomicBool::new(false)),
            unsaved_full: Arc::new(AtomicBool::new(false)),
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
        // After the settle (its commit clears the flag). A load first: the flag's cache line
        // stays shared while it is already set.
        if !self.read_seen.load(Ordering::Relaxed) {
            self.read_seen.store(true, Ordering::Relaxed);
        }
        self.check_failed()?;
        let mut view = self.view.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = view.as_ref() {
            return Ok(v.clone());
        }
        let v = Arc::new(ReadView::new(self.db().begin_read()?)?);
        *view = Some(v.clone());
        Ok(v)
    }

    /// Whether anything has read the store since its last commit.
    pub fn reads_seen(&self) -> bool {
        self.read_seen.load(Ordering::Relaxed)
    }

    /// Whether applied batches wait uncommitted while something has read the store since its
    /// last commit: a read is then likely to come and commit them itself (see
    /// [`Store::commit_for_readers`]).
    pub fn wants_commit_for_readers(&self) -> bool {
        self.read_seen.load(Ordering::Relaxed) && self.uncommitted.load(Ordering::SeqCst)
    }

    /// Commits the applied batches that wait in a transaction of their own, if anything has
    /// read the store since its last commit, and opens the read view after it, so that the
    /// next read finds both done. Why: reads commit applied batches before they look (they
    /// must see every answered write), which put a redb commit and the view's opening on the
    /// path of a read that follows a write (the lock recipe's hand-off: a delete, its event,
    /// the next holder's getChildren). Called by the state machine once the batch's answers
    /// and events are out, while the clients react to them. A prepared transaction is left
    /// alone: settling it would throw its unapplied batch away.
    pub fn commit_for_readers(&self) -> Result<(), StoreError> {
        {
            let mut pending = self.lock_pending();
            if !self.read_seen.load(Ordering::Relaxed) || !matches!(*pending, Pending::Applied(_)) {
                return Ok(());
            }
            self.settle_locked(&mut pending)?;
        }
        self.check_failed()?;
        // Not `read`: that would count as a read (`read_seen`) and keep these commits going
        // in a load that has stopped reading.
        let mut view = self.view.lock().unwrap_or_else(|p| p.into_inner());
        if view.is_none() && !self.uncommitted.load(Ordering::SeqCst) {
            // Under the view's lock, as in `read`: a commit after `begin_read` drops the view.
            *view = Some(Arc::new(ReadView::new(self.db().begin_read()?)?));
        }
        Ok(())
    }

    /// Whether applied batches wait uncommitted in a transaction that can take no further
    /// batch: the next prepare would have to commit them first (see [`Store::commit_if_full`]).
    pub fn unsaved_full(&self) -> bool {
        self.unsaved_full.load(Ordering::Relaxed)
    }

    /// Commits the applied batches if their transaction is full ([`Store::unsaved_full`]).
    /// Why: otherwise the next prepare commits them before it runs its own batch, and that
    /// commit (every dirty page of up to `UNSAVED_BATCHES_MAX` entries checksummed and
    /// written back) made the prepare outlast its entry's fsync, so the apply, and every
    /// answer of the entry, waited for it. Called by the preparer thread when it has nothing
    /// to prepare, which under a closed-loop load is while the last entry's answers go out and
    /// the next entry forms. A prepared transaction is left alone (its batch is not applied).
    pub fn commit_if_full(&self) -> Result<(), StoreError> {
        let mut pending = self.lock_pending();
        if !self.unsaved_full() || !matches!(*pending, Pending::Applied(_)) {
            return Ok(());
        }
        metrics::counter!("conclave_store_early_commits_total").increment(1);
        self.settle_locked(&mut pending)
    }

    fn db(&self) -> RwLockReadGuard<'_, Database> {
        self.db.read().unwrap_or_else(|p| p.into_inner())
    }

    /// etcd's defragmentation: rewrites the database file without its free pages (redb's
    /// `compact`) and truncates it, so space that compaction freed inside the file is given
    /// back, the size the space quota looks at falls, and a NOSPACE alarm can be disarmed.
    /// Like etcd's, it holds this member's reads and writes until it is done. redb compacts only
    /// with no transaction open: applied batches are committed and a prepared one dropped
    /// first (as for any other write), and reads still holding a view of the store are waited
    /// for, up to [`DEFRAG_WAIT`], before giving up with an error.
    pub fn defragment(&self) -> Result<(), StoreError> {
        let deadline = Instant::now() + DEFRAG_WAIT;
        loop {
            let writing = self.exclusive()?;
            drop(self.view.lock().unwrap_or_else(|p| p.into_inner()).take());
            let done = self.db.write().unwrap_or_else(|p| p.into_inner()).compact();
            match done {
                Ok(_) => {
                    self.committed();
                    drop(writing);
                    return Ok(());
                }
                Err(redb::CompactionError::TransactionInProgress) if Instant::now() < deadline => {}
                Err(e) => return Err(e.into()),
            }
            // A read still holds a view: let it finish (reads take no lock the write path holds).
            drop(writing);
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn check_failed(&self) -> Result<(), StoreError> {
        if self.failed.load(Ordering::SeqCst) {
            return Err(StoreError::Corrupt("an applied write could not be committed; restart to replay it".into()));
        }
        Ok(())
    }

    fn lock_pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// [`Store::lock_pending`] for the apply of a prepared batch: while the lock is held (by
    /// the prepare still running that batch, as a rule), it yields its core and tries again,
    /// for up to `spin`, before it sleeps on the lock.
    ///
    /// Why: at 64 writers an entry's prepare outlasts its fsync, and the apply waits for it on
    /// this lock. Asleep on the futex, it ran ~50 µs after the prepare released the lock
    /// (a wake on these VMs), and that was on every write's path: ZooKeeper set at 64 clients
    /// +2..+9 %, create at 64 +2..+23 % (`benches/ab.sh`, 3 rounds).
    fn lock_pending_spinning(&self, spin: Duration) -> MutexGuard<'_, Pending> {
        let deadline = Instant::now() + spin;
        loop {
            match self.pending.try_lock() {
                Ok(guard) => return guard,
                Err(std::sync::TryLockError::Poisoned(p)) => return p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) if Instant::now() < deadline => std::thread::yield_now(),
                Err(std::sync::TryLockError::WouldBlock) => return self.lock_pending(),
            }
        }
    }

    /// Commits every applied batch: every applied write is visible to the reads that begin
    /// after this returns.
    fn settle(&self) -> Result<(), StoreError> {
        let mut pending = self.lock_pending();
        self.settle_locked(&mut pending)
    }

    /// [`Store::settle`] under the lock. Applied batches are either in a transaction of their
    /// own, which is committed, or in a prepared transaction that continues theirs and also
    /// holds commands not applied yet: that one is dropped (aborted), and the applied batches
    /// are run again in a new transaction and committed (apply is deterministic, so this is
    /// the same state). A prepared transaction on committed state is left as it is.
    fn settle_locked(&self, pending: &mut Pending) -> Result<(), StoreError> {
        let result = match std::mem::replace(pending, Pending::Idle) {
            Pending::Idle => return Ok(()),
            Pending::Prepared(p) if p.unsaved.batches.is_empty() => {
                *pending = Pending::Prepared(p);
                return Ok(());
            }
            Pending::Prepared(p) => {
                self.prepared_taken.notify();
                drop(p.tx);
                metrics::counter!("conclave_store_replays_total").increment(1);
                self.replay(&p.unsaved)
            }
            Pending::Applied(open) => open.tx.commit().map_err(StoreError::from),
        };
        self.saved(result)
    }

    /// After committing the applied batches (`result`): nothing is left uncommitted, or, if
    /// that failed, they are lost from the store and it must not be used any more.
    fn saved(&self, result: Result<(), StoreError>) -> Result<(), StoreError> {
        if result.is_err() {
            self.failed.store(true, Ordering::SeqCst);
        }
        self.committed();
        self.uncommitted.store(false, Ordering::SeqCst);
        result
    }

    /// Runs applied batches again in a new transaction, with their bookkeeping, and commits
    /// it (non-durable, as their apply would have).
    fn replay(&self, unsaved: &Unsaved) -> Result<(), StoreError> {
        let mut tx = self.db().begin_write()?;
        tx.set_durability(Durability::None)?;
        {
            let mut w = WriteTx::new(&tx, false)?;
            for batch in &unsaved.batches {
                for cmd in batch.iter() {
                    w.apply(cmd)?;
                }
            }
            w.finish()?;
            let mut table = tx.open_table(META)?;
            for (key, value) in &unsaved.meta {
                table.insert(key.as_str(), value.as_slice())?;
            }
        }
        tx.commit()?;
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
        let mut tx = self.db().begin_write()?;
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

    /// The right to begin a write transaction: commits applied batches and aborts a prepared
    /// transaction (see `pending`).
    fn exclusive(&self) -> Result<MutexGuard<'_, Pending>, StoreError> {
        let mut pending = self.lock_pending();
        self.settle_locked(&mut pending)?;
        if let Pending::Prepared(_) = std::mem::replace(&mut *pending, Pending::Idle) {
            self.prepared_taken.notify();
        }
        self.check_failed()?;
        Ok(pending)
    }

    /// Runs `commands` now, in a write transaction that stays open, so that applying them
    /// later ([`Store::write_prepared`]) only has to record the applied position.
    /// Why: a raft entry's commands are known before the entry is durable; running them while
    /// the log's fsync is under way takes the apply (B-tree work) off the write's critical
    /// path. Nothing of it is visible to readers before it is applied and committed, and any
    /// other write aborts it, so a prepared transaction is only ever used on the state it ran on.
    ///
    /// Only one transaction can be prepared at a time (it holds redb's write lock). If an
    /// earlier one is still waiting for its apply, this waits up to `wait` for that apply to
    /// take it, and then runs on the state after it. Returns false, having done nothing, if the
    /// earlier one is still there after `wait`: the apply then runs the commands itself.
    ///
    /// Applied batches not committed yet are committed first, unless nothing has read the
    /// store since its last commit and they are few (`UNSAVED_*_MAX`): then the commands run
    /// in their transaction, so consecutive entries share one redb commit and the B-tree pages
    /// they dirty are copied once. A read arriving meanwhile settles them (see `settle_locked`).
    ///
    /// `after` is the [`Store::applies`] count the commands are meant to follow (the one
    /// right after their predecessor's apply); if anything else has been applied since, they
    /// would run on the wrong state (typically: their own apply got there first), and nothing
    /// is done either.
    pub fn prepare(&self, commands: Arc<Vec<Command>>, wait: Duration, after: u64) -> Result<bool, StoreError> {
        self.prepare_logged(commands, wait, after, Vec::new)
    }

    /// [`Store::prepare`], also writing the bookkeeping rows `meta` gives once the commands
    /// have run (the entry's applied log id, when the log has assigned it by then), so that
    /// their apply ([`Store::write_prepared`] with the same rows) has nothing left to write.
    /// Why: opening the `meta` table and writing that row in the apply took ~8 µs between the
    /// entry's fsync and its answers; here it is one insert into a table the prepare has open,
    /// while the fsync is still under way.
    pub fn prepare_logged(
        &self,
        commands: Arc<Vec<Command>>,
        wait: Duration,
        after: u64,
        meta: impl FnOnce() -> Vec<(String, Vec<u8>)>,
    ) -> Result<bool, StoreError> {
        let deadline = Instant::now() + wait;
        let mut pending = self.lock_pending();
        while let Pending::Prepared(_) = *pending {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            pending = self.prepared_taken.wait_timeout(pending, left);
        }
        if self.applies() != after {
            return Ok(false);
        }
        let continues = match &*pending {
            Pending::Applied(open) => !self.read_seen.load(Ordering::Relaxed) && open.unsaved.can_take(commands.len()),
            _ => false,
        };
        if !continues {
            self.settle_locked(&mut pending)?;
        }
        self.check_failed()?;
        let (tx, unsaved) = match std::mem::replace(&mut *pending, Pending::Idle) {
            Pending::Applied(open) => (open.tx, open.unsaved),
            _ => {
                let mut tx = self.db().begin_write()?;
                tx.set_durability(Durability::None)?;
                (tx, Unsaved::default())
            }
        };
        let run = (|| {
            let prev_values = self.prev_value_watchers.load(Ordering::SeqCst) > 0;
            let mut w = WriteTx::new(&tx, prev_values)?;
            let mut results = Vec::with_capacity(commands.len());
            for cmd in commands.iter() {
                results.push(w.apply(cmd)?);
            }
            let meta = meta();
            for (key, value) in &meta {
                w.set_meta(key, value)?;
            }
            Ok::<_, StoreError>((results, meta, w.finish()?))
        })();
        match run {
            Ok((results, meta, effects)) => {
                *pending = Pending::Prepared(Prepared { tx, commands, results, effects, meta, unsaved });
                Ok(true)
            }
            Err(e) => {
                // The transaction holds a part of the batch: drop it, and keep what was applied.
                drop(tx);
                if !unsaved.batches.is_empty() {
                    self.saved(self.replay(&unsaved))?;
                }
                Err(e)
            }
        }
    }

    /// Applies `commands` with the transaction [`Store::prepare`] ran them in, after adding
    /// the bookkeeping rows `meta` (the applied log id) to its `meta` table: the same results
    /// and effects as running them in [`Store::write`] and then [`WriteTx::set_meta`].
    /// None, and nothing written, when there is no such transaction (another write aborted it,
    /// or it ran other commands: it is aborted now); the caller then writes as usual.
    ///
    /// The transaction is not committed here unless `durable` (which also costs one more,
    /// empty and durable, commit): it is left for whoever needs the store next (see
    /// `pending`), and every read commits it before it looks. Crash safety is that of a
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
        let mut pending = self.lock_pending_spinning(APPLY_LOCK_SPIN);
        let prepared = match std::mem::replace(&mut *pending, Pending::Idle) {
            Pending::Prepared(p) if same_commands(p.commands.as_slice(), commands) => p,
            other => {
                // Not these commands: settle keeps what is applied and drops the rest.
                *pending = other;
                self.settle_locked(&mut pending)?;
                if let Pending::Prepared(_) = std::mem::replace(&mut *pending, Pending::Idle) {
                    self.prepared_taken.notify();
                }
                return Ok(None);
            }
        };
        self.prepared_taken.notify();
        let Prepared { tx, commands: batch, results, effects, meta: written, mut unsaved } = prepared;
        let recorded = (|| {
            // Written by the prepare already (see `prepare_logged`).
            let same = written.len() == meta.len()
                && written.iter().zip(meta).all(|((wk, wv), (k, v))| wk == k && wv.as_slice() == *v);
            if same {
                return Ok(());
            }
            let mut table = tx.open_table(META)?;
            for (key, value) in meta {
                assert!(mvcc::is_bookkeeping_key(key), "bookkeeping may not set revisions");
                table.insert(*key, *value)?;
            }
            Ok::<_, StoreError>(())
        })();
        if let Err(e) = recorded {
            // The transaction is dropped, and with it any applied batches it continued.
            drop(tx);
            return if unsaved.batches.is_empty() { Err(e) } else { self.saved(Err(e)) }.map(|()| None);
        }
        self.applies.fetch_add(1, Ordering::SeqCst);
        if durable {
            self.saved(tx.commit().map_err(StoreError::from))?;
            drop(pending);
            self.sync()?;
        } else {
            let len = batch.len();
            unsaved.batches.push(batch);
            unsaved.meta = meta.iter().map(|(k, v)| (k.to_string(), v.to_vec())).collect();
            // Full if a next batch as long as this one could not continue the transaction.
            self.unsaved_full.store(!unsaved.can_take(len), Ordering::Relaxed);
            *pending = Pending::Applied(Open { tx, unsaved });
            self.uncommitted.store(true, Ordering::SeqCst);
        }
        Ok(Some((results, effects)))
    }

    /// Size of the database, as etcd reports dbSize and checks its space quota against (as of
    /// the last commit; see [`db_file_bytes`]).
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
        self.read_seen.store(false, Ordering::Relaxed);
        self.unsaved_full.store(false, Ordering::Relaxed);
        drop(self.view.lock().unwrap_or_else(|p| p.into_inner()).take());
        let len = self.file.metadata().map(|m| db_file_bytes(&m, self.write_buffer_bytes)).unwrap_or(0);
        self.file_bytes.store(len, Ordering::Relaxed);
    }

    /// Makes every earlier write durable: commits an applied transaction, then one durable
    /// empty commit.
    pub fn sync(&self) -> Result<(), StoreError> {
        let _writing = self.exclusive()?;
        let tx = self.db().begin_write()?;
        tx.commit()?;
        self.committed();
        Ok(())
    }

    // ---- raft vote and log bookkeeping: opaque bytes owned by the replication layer --------

    pub fn raft_meta_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db().begin_read()?;
        let t = tx.open_table(RAFT_META)?;
        Ok(t.get(key)?.map(|v| v.value().to_vec()))
    }

    /// Durable: used for the vote, which raft requires on disk before answering.
    pub fn raft_meta_put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let _writing = self.exclusive()?;
        let tx = self.db().begin_write()?;
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
        let tx = self.db().begin_read()?;
        let t = tx.open_table(META)?;
        Ok(t.get(key)?.map(|v| v.value().to_vec()))
    }

    /// Every state-machine table as (table, key, value) rows: the raft snapshot's content.
    pub fn dump(&self) -> Result<Vec<DumpRow>, StoreError> {
        self.read()?.dump()
    }

    /// Replaces every state-machine table with `rows` (from [`Store::dump`]) in one durable
    /// transaction: installing a snapshot is all or nothing.
    pub fn restore<'r>(&self, rows: &'r [DumpRow]) -> Result<(), StoreError> {
        let _writing = self.exclusive()?;
        let tx = self.db().begin_write()?;
        {
            tx.delete_table(KV)?;
            tx.delete_table(HIST)?;
            tx.delete_table(DEAD)?;
            tx.delete_table(LEASES)?;
            tx.delete_table(LEASE_KEYS)?;
            tx.delete_table(META)?;
            tx.delete_table(ZK_NODES)?;
            tx.delete_table(ZK_REAP)?;
            let mut zk_reap = tx.open_table(ZK_REAP)?;
            // Tables 5 and 6 are format 3's (see `ReadView::dump`), joined into `zk_nodes`
            // rows once all are read (borrowed from `rows`, not copied).
            let mut znodes: Vec<(&str, &[u8])> = Vec::new();
            let mut stamps: std::collections::HashMap<(&str, &str), u64> = std::collections::HashMap::new();
            let utf8 = |b: &'r [u8]| -> Result<&'r str, StoreError> {
                std::str::from_utf8(b).map_err(|_| StoreError::Corrupt("znode path".into()))
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
                        znodes.push((utf8(k)?, v.as_slice()));
                    }
                    6 => {
                        let nul =
                            k.iter().position(|b| *b == 0).ok_or_else(|| StoreError::Corrupt("zk child".into()))?;
                        // A snapshot of a format-2 store (an older leader) has no stamps:
                        // creation order is then what the names' order gives.
                        let stamp = match v.len() {
                            0 => 0,
                            _ => u64::from_le_bytes(
                                v.as_slice().try_into().map_err(|_| StoreError::Corrupt("zk child stamp".into()))?,
                            ),
                        };
                        stamps.insert((utf8(&k[..nul])?, utf8(&k[nul + 1..])?), stamp);
                    }
                    7 => {
                        zk_reap.insert(utf8(k)?, ())?;
                    }
                    t => return Err(StoreError::Corrupt(format!("snapshot table {t}"))),
                }
            }
            let mut zk_nodes = tx.open_table(ZK_NODES)?;
            for (path, meta) in znodes {
                let child = (znode::parent_of(path), znode::name_of(path));
                let stamp = if path == "/" { 0 } else { stamps.get(&child).copied().unwrap_or(0) };
                zk_nodes.insert(znode::node_key(path).as_slice(), znode::join_node_row(meta, stamp).as_slice())?;
            }
            // The rows were written in this build's layout, whatever format the snapshot's
            // `meta` names (a leader of an older build sends its own).
            meta.insert(META_FORMAT, encode_i64(STORE_FORMAT).as_slice())?;
        }
        tx.commit()?;
        self.applies.fetch_add(1, Ordering::SeqCst);
        self.committed();
        Ok(())
    }
}

/// Whether `k` is in etcd's range (key, range_end): empty end = only `key`, "\0" = from `key`.
/// FNV-1a, 64 bits: a fixed, unkeyed hash for what needs spread or a stable value (bbolt's
/// meta checksum, the read cache's shard, the cluster id), never for keys a client chooses to
/// collide.
pub fn fnv1a64(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

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
