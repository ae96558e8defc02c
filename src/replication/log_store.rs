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
use openraft::{Entry, EntryPayload, LogId, OptionalSend, StorageError, StorageIOError, Vote};

use super::wal::{Wal, WalError};
use super::{Ahead, TypeConfig};
use crate::store::{Store, StoreError};

const META_VOTE: &str = "vote";
const META_PURGED: &str = "last_purged";
/// Newest appended entries kept as they were handed to `append` (see [`Recent`]). The state
/// machine reads each entry right after its append, so a few are enough; the bound keeps
/// what they pin (their commands, already held by the proposer until applied) small.
const RECENT_ENTRIES_MAX: usize = 16;

#[derive(Clone)]
pub struct LogStore {
    store: Store,
    wal: Arc<Mutex<Wal>>,
    recent: Arc<Mutex<Recent>>,
    /// The proposals to run ahead: a light one is run here while its entry is written
    /// ([`Ahead::take_inline`]).
    ahead: Option<Arc<Ahead>>,
}

/// The newest appended entries, undecoded: reading an entry back (the state machine does, for
/// every entry, right after its append) then costs an `Arc` clone of its commands instead of
/// a bincode decode of every command, and the state machine gets the very batch the proposer
/// made, which `store::same_commands` recognises without comparing it byte by byte.
/// Invariant: `entries` are consecutive log indexes and a suffix of what the WAL holds.
#[derive(Default)]
struct Recent {
    entries: std::collections::VecDeque<Entry<TypeConfig>>,
}

impl Recent {
    /// The entries `start..end` if every one of them is here.
    fn get(&self, start: u64, end: u64) -> Option<Vec<Entry<TypeConfig>>> {
        let first = self.entries.front()?.log_id.index;
        let next = first + self.entries.len() as u64;
        if start < first || end > next || start >= end {
            return None;
        }
        Some(self.entries.range((start - first) as usize..(end - first) as usize).cloned().collect())
    }

    fn push(&mut self, entries: &[Entry<TypeConfig>]) {
        for e in entries {
            let follows = self.entries.back().is_none_or(|b| b.log_id.index + 1 == e.log_id.index);
            if !follows {
                self.entries.clear();
            }
            self.entries.push_back(e.clone());
            if self.entries.len() > RECENT_ENTRIES_MAX {
                self.entries.pop_front();
            }
        }
    }

    /// Entries at `index` and after are gone from the log.
    fn truncate(&mut self, index: u64) {
        self.entries.retain(|e| e.log_id.index < index);
    }

    /// Entries up to `index` are gone from the log.
    fn purge(&mut self, index: u64) {
        self.entries.retain(|e| e.log_id.index > index);
    }
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
        forget_leadership(&store)?;
        Ok(LogStore { store, wal: Arc::new(Mutex::new(wal)), recent: Arc::default(), ahead: None })
    }

    /// Runs small proposed batches ahead while their entries are written (see [`Ahead`]).
    pub(crate) fn running_ahead(mut self, ahead: Arc<Ahead>) -> LogStore {
        self.ahead = Some(ahead);
        self
    }

    fn wal_lock(&self) -> std::sync::MutexGuard<'_, Wal> {
        self.wal.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn recent_lock(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        self.store.raft_meta_get(key)?.map(|b| decode(&b)).transpose()
    }
}

/// Starts this node as a candidate for a new term, as etcd does on every start, instead of
/// letting openraft restore a leadership it held before the restart at the same term: the
/// vote is kept (nobody else gets it in that term) but no longer marked as granted by a
/// quorum, so the node campaigns, and the term clients see goes up by one per restart as on
/// etcd. A leader that restarts holds no lease it could still rely on anyway.
fn forget_leadership(store: &Store) -> Result<(), LogError> {
    let Some(bytes) = store.raft_meta_get(META_VOTE)? else { return Ok(()) };
    let mut vote: Vote<u64> = decode(&bytes)?;
    if vote.committed {
        vote.committed = false;
        store.raft_meta_put(META_VOTE, &encode(&vote))?;
    }
    Ok(())
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
        if let Some(entries) = self.recent_lock().get(start, end) {
            return Ok(entries);
        }
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
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        let rows: Vec<(u64, Vec<u8>)> = entries.iter().map(|e| (e.log_id.index, encode(e))).collect();
        // A light batch of this node's own proposal runs in the store while its entry's pages
        // are written (see `Ahead::take_inline`); its apply then finds it prepared.
        // Its apply's bookkeeping row, for the prepare to write ahead (`Store::prepare_logged`).
        let inline = match (entries.as_slice(), &self.ahead) {
            ([Entry { payload: EntryPayload::Normal(batch), log_id, .. }], Some(ahead)) => {
                let row = super::state_machine::applied_row(*log_id);
                // An inline prepare gets the row here; only the preparer's needs it recorded.
                let inline = ahead.take_inline(&batch.commands);
                if inline.is_none() {
                    ahead.logged(&batch.commands, vec![row.clone()]);
                }
                inline.map(|(commands, after)| (commands, after, row))
            }
            _ => None,
        };
        let t0 = std::time::Instant::now();
        let result = {
            // The WAL lock is held while `recent` changes, so a reader never sees an entry
            // there that the WAL does not hold (or the other way round for the same index).
            let mut wal = self.wal_lock();
            let store = &self.store;
            let result = wal.append_overlapped(
                rows,
                inline.map(|(commands, after, row)| {
                    move || {
                        let prepared = store.prepare_logged(commands, std::time::Duration::ZERO, after, || vec![row]);
                        if let Err(e) = prepared {
                            // The apply runs the commands again and reports a storage fault itself.
                            tracing::warn!("running a batch ahead of its commit: {e}");
                        }
                    }
                }),
            );
            if result.is_ok() {
                self.recent_lock().push(&entries);
            }
            result
        };
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
        let mut wal = self.wal_lock();
        self.recent_lock().truncate(log_id.index);
        wal.truncate(log_id.index).map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        // Record the purge point durably first: a crash in between leaves entries that are
        // hidden on the next open, never a hole.
        self.store.raft_meta_put(META_PURGED, &encode(&Some(log_id))).map_err(write_err)?;
        let mut wal = self.wal_lock();
        self.recent_lock().purge(log_id.index);
        wal.purge(log_id.index).map_err(write_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(index: u64) -> Entry<TypeConfig> {
        Entry { log_id: LogId::new(CommittedLeaderId::new(1, 0), index), payload: EntryPayload::Blank }
    }

    fn indexes(entries: Option<Vec<Entry<TypeConfig>>>) -> Option<Vec<u64>> {
        entries.map(|v| v.iter().map(|e| e.log_id.index).collect())
    }

    /// Goal: `Recent` serves exactly the ranges it wholly holds, stays a run of consecutive
    /// indexes through pushes, truncation and purges, and keeps only the newest entries.
    #[test]
    fn recent_serves_only_whole_consecutive_ranges() {
        let mut r = Recent::default();
        assert_eq!(indexes(r.get(1, 2)), None);
        r.push(&(1..=5).map(entry).collect::<Vec<_>>());
        assert_eq!(indexes(r.get(2, 4)), Some(vec![2, 3]));
        assert_eq!(indexes(r.get(1, 6)), Some(vec![1, 2, 3, 4, 5]));
        assert_eq!(indexes(r.get(0, 3)), None, "index 0 is not here");
        assert_eq!(indexes(r.get(4, 7)), None, "index 6 is not here");
        assert_eq!(indexes(r.get(3, 3)), None, "an empty range is read from the log");

        r.truncate(4);
        assert_eq!(indexes(r.get(1, 4)), Some(vec![1, 2, 3]));
        assert_eq!(indexes(r.get(3, 5)), None);
        r.push(&[entry(4)]);
        assert_eq!(indexes(r.get(3, 5)), Some(vec![3, 4]));

        // A gap (after a snapshot, say) starts the run again.
        r.push(&[entry(9)]);
        assert_eq!(indexes(r.get(4, 5)), None);
        assert_eq!(indexes(r.get(9, 10)), Some(vec![9]));

        r.purge(9);
        assert_eq!(indexes(r.get(9, 10)), None);

        r.push(&(10..10 + 3 * RECENT_ENTRIES_MAX as u64).map(entry).collect::<Vec<_>>());
        let next = 10 + 3 * RECENT_ENTRIES_MAX as u64;
        let first = next - RECENT_ENTRIES_MAX as u64;
        assert_eq!(indexes(r.get(first, next)).map(|v| v.len()), Some(RECENT_ENTRIES_MAX));
        assert_eq!(indexes(r.get(first - 1, next)), None, "only the newest are kept");
    }
}
