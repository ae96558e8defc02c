//! openraft's log storage on the [`Wal`](super::wal::Wal) (entries) and redb (vote, purge point).
//!
//! Entries are bincode-encoded openraft entries; an append is durable (fdatasync) before
//! openraft is told it is flushed. The vote is written with a durable redb commit, the purge
//! point too.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, StorageError, StorageIOError, Vote};

use super::wal::{Wal, WalError};
use super::TypeConfig;
use crate::store::{Store, StoreError};

const META_VOTE: &str = "vote";
const META_PURGED: &str = "last_purged";

#[derive(Clone)]
pub struct LogStore {
    store: Store,
    wal: Arc<Mutex<Wal>>,
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    bincode::deserialize(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn encode<T: serde::Serialize>(v: &T) -> Vec<u8> {
    bincode::serialize(v).expect("in-memory serialization of raft metadata cannot fail")
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl LogStore {
    pub fn open(store: Store, wal_dir: &Path) -> Result<LogStore, LogError> {
        let mut wal = Wal::open(wal_dir)?;
        // A purged prefix may survive in a kept segment; hide it again.
        let purged: Option<Option<LogId<u64>>> = store.raft_meta_get(META_PURGED)?.map(|b| decode(&b)).transpose()?;
        if let Some(Some(purged)) = purged {
            wal.purge(purged.index)?;
        }
        Ok(LogStore { store, wal: Arc::new(Mutex::new(wal)) })
    }

    fn wal_lock(&self) -> std::sync::MutexGuard<'_, Wal> {
        self.wal.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        self.store.raft_meta_get(key)?.map(|b| decode(&b)).transpose()
    }
}

fn read_err(e: impl Into<LogError>) -> StorageError<u64> {
    StorageIOError::read_logs(&e.into()).into()
}

fn write_err(e: impl Into<LogError>) -> StorageError<u64> {
    StorageIOError::write_logs(&e.into()).into()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<u64>> {
        let start = match range.start_bound() {
            Bound::Included(s) => *s,
            Bound::Excluded(s) => s + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(e) => e.saturating_add(1),
            Bound::Excluded(e) => *e,
            Bound::Unbounded => u64::MAX,
        };
        let rows = self.wal_lock().read(start, end).map_err(read_err)?;
        let mut out = Vec::with_capacity(rows.len());
        for (_, b) in &rows {
            out.push(decode(b).map_err(read_err)?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<u64>> {
        let last_purged_log_id: Option<LogId<u64>> = self.meta(META_PURGED).map_err(read_err)?.flatten();
        let last = {
            let wal = self.wal_lock();
            let next = wal.next_index();
            if wal.is_empty() {
                None
            } else {
                wal.read(next - 1, next).map_err(read_err)?.pop()
            }
        };
        let last_log_id = match last {
            Some((_, bytes)) => {
                let e: Entry<TypeConfig> = decode(&bytes).map_err(read_err)?;
                Some(e.log_id)
            }
            None => last_purged_log_id,
        };
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError<u64>> {
        self.store.raft_meta_put(META_VOTE, &encode(vote)).map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError<u64>> {
        self.meta(META_VOTE).map_err(|e| StorageIOError::read_vote(&e).into())
    }

    // The committed index is not saved: it is only a hint that lets a restarted node re-apply
    // before it hears from a leader, and writing it was an extra redb transaction on every
    // commit. A restarted leader commits its whole log again with its first entry anyway.

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let rows: Vec<(u64, Vec<u8>)> = entries.into_iter().map(|e| (e.log_id.index, encode(&e))).collect();
        let t0 = std::time::Instant::now();
        let result = self.wal_lock().append(rows);
        metrics::histogram!("conclave_raft_log_append_seconds").record(t0.elapsed().as_secs_f64());
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(write_err(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        self.wal_lock().truncate(log_id.index).map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        // Record the purge point durably first: a crash in between leaves entries that are
        // hidden on the next open, never a hole.
        self.store.raft_meta_put(META_PURGED, &encode(&Some(log_id))).map_err(write_err)?;
        self.wal_lock().purge(log_id.index).map_err(write_err)
    }
}
