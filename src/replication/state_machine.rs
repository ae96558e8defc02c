//! The raft state machine: committed entries applied to the [`Store`].
//!
//! Each `apply` call runs ALL its entries in one redb write transaction that also records the
//! last applied log id (and membership), so after a crash the store is exactly at some applied
//! log id and raft replays from there: no entry is ever applied twice or half. The commit is
//! usually not fsynced (and for a prepared batch not even done before the answers: the store
//! commits it when it is next used, see `Store::write_prepared`): the entries are already
//! durable in the write-ahead log, so an apply lost in a crash is replayed from there. A durable commit every second (or every
//! [`APPLIES_PER_DURABLE_COMMIT_MAX`] applies) bounds that replay, and one before every
//! snapshot makes sure the log is never purged past what is on disk.
//!
//! Snapshots: the state machine IS persistent, so building a snapshot only records which log id
//! the store has reached (letting raft purge the log). The full content is produced from one
//! read transaction when a snapshot is actually requested, with the log id found in that same
//! transaction, so content and metadata always agree.

use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};

use super::{Ahead, ApplySink, TypeConfig};
use crate::command::Applied;
use crate::store::{ReadView, Store, StoreError};

const META_APPLIED: &str = "raft_applied";
const META_MEMBERSHIP: &str = "raft_membership";

/// Applies between durable commits at most, and time between them at most: bounds how much of
/// the log a restart replays, at the cost of one fsync per period.
const APPLIES_PER_DURABLE_COMMIT_MAX: u32 = 10_000;
const DURABLE_COMMIT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

pub struct StateMachine {
    store: Store,
    sink: Arc<dyn ApplySink>,
    /// Told of every applied batch, so the next proposed one can be run ahead.
    ahead: Arc<Ahead>,
    applies_since_durable: u32,
    last_durable: std::time::Instant,
}

impl StateMachine {
    pub(crate) fn new(store: Store, sink: Arc<dyn ApplySink>, ahead: Arc<Ahead>) -> StateMachine {
        StateMachine { store, sink, ahead, applies_since_durable: 0, last_durable: std::time::Instant::now() }
    }
}

type Membership = StoredMembership<u64, BasicNode>;

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    bincode::deserialize(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The bookkeeping row the apply of the entry at `log_id` writes (what a prepare may write
/// ahead: see `Store::prepare_logged`).
pub(super) fn applied_row(log_id: LogId<u64>) -> (String, Vec<u8>) {
    (META_APPLIED.to_string(), encode(&Some(log_id)))
}

fn encode<T: serde::Serialize>(v: &T) -> Vec<u8> {
    bincode::serialize(v).expect("in-memory serialization of raft metadata cannot fail")
}

fn applied_state(view: &ReadView) -> Result<(Option<LogId<u64>>, Membership), StoreError> {
    let applied = view.meta(META_APPLIED)?.map(|b| decode::<Option<LogId<u64>>>(&b)).transpose()?.flatten();
    let membership = view.meta(META_MEMBERSHIP)?.map(|b| decode::<Membership>(&b)).transpose()?.unwrap_or_default();
    Ok((applied, membership))
}

fn sm_read_err(e: StoreError) -> StorageError<u64> {
    StorageIOError::read_state_machine(&e).into()
}

/// The serialized snapshot: every state-machine row.
#[derive(serde::Serialize, serde::Deserialize)]
struct SnapshotRows {
    rows: Vec<(u8, Vec<u8>, Vec<u8>)>,
}

fn full_snapshot(store: &Store) -> Result<Option<Snapshot<TypeConfig>>, StoreError> {
    let view = store.read()?;
    let (applied, membership) = applied_state(&view)?;
    let Some(last) = applied else { return Ok(None) };
    let rows = view.dump()?;
    let data = encode(&SnapshotRows { rows });
    let meta = SnapshotMeta {
        last_log_id: Some(last),
        last_membership: membership,
        snapshot_id: format!("{}-{}", last.leader_id.term, last.index),
    };
    Ok(Some(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) }))
}

pub struct Builder {
    store: Store,
}

impl RaftSnapshotBuilder<TypeConfig> for Builder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<u64>> {
        // Raft purges the log up to the snapshot next: what was applied from it must be on disk.
        self.store.sync().map_err(|e| StorageError::from(StorageIOError::write_snapshot(None, &e)))?;
        let view = self.store.read().map_err(sm_read_err)?;
        let (applied, membership) = applied_state(&view).map_err(sm_read_err)?;
        let id = applied.map(|l| format!("{}-{}", l.leader_id.term, l.index)).unwrap_or_default();
        let meta = SnapshotMeta { last_log_id: applied, last_membership: membership, snapshot_id: id };
        // See the module comment: the store itself is the snapshot; content is materialized
        // by get_current_snapshot when someone needs to receive it.
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(Vec::new())) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Builder;

    async fn applied_state(&mut self) -> Result<(Option<LogId<u64>>, Membership), StorageError<u64>> {
        let view = self.store.read().map_err(sm_read_err)?;
        applied_state(&view).map_err(sm_read_err)
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<Applied>>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        let Some(last) = entries.last().map(|e| e.log_id) else {
            return Ok(Vec::new());
        };
        let t0 = std::time::Instant::now();
        self.applies_since_durable += 1;
        let durable = self.applies_since_durable >= APPLIES_PER_DURABLE_COMMIT_MAX
            || self.last_durable.elapsed() >= DURABLE_COMMIT_INTERVAL;
        if durable {
            self.applies_since_durable = 0;
            self.last_durable = t0;
        }
        // The usual case: one entry, a batch the proposer had the store run already while
        // the entry was being made durable (Store::prepare); only the bookkeeping is left.
        if let [Entry { payload: EntryPayload::Normal(batch), .. }] = entries.as_slice() {
            let prepared = self
                .store
                .write_prepared(durable, &batch.commands, &[(META_APPLIED, &encode(&Some(last)))])
                .map_err(|e| StorageError::from(StorageIOError::apply(last, &e)))?;
            metrics::counter!("conclave_apply_batches_total", "prepared" => if prepared.is_some() { "yes" } else { "no" })
                .increment(1);
            if let Some((results, effects)) = prepared {
                metrics::histogram!("conclave_apply_seconds").record(t0.elapsed().as_secs_f64());
                // Events first: no answer may overtake the event its write caused.
                self.sink.applied(&effects);
                let answered = self.ahead.applied(last.leader_id.term, &batch.commands, results);
                if self.store.wants_commit_for_readers() && !self.ahead.reader_commit_claimed() {
                    // The batch is left uncommitted (see `Store::write_prepared`), and while
                    // reads are under way the next read would commit it on its own path: the
                    // lock recipe's next holder reads the children right after the event of
                    // this batch's delete, a config watcher re-reads after its event. So let
                    // the answers and events go out first (their connection tasks run before
                    // this one resumes), then commit while the clients react. Measured in
                    // benches/README.md (December 6, night); a thread of its own for this
                    // commit cost more in wake-ups than it saved. When the preparer ran this
                    // batch, it waits for this apply and commits at once, beside the answers
                    // (`Ahead::commit_for_readers_once_applied`): then this is left to it.
                    tokio::task::yield_now().await;
                    self.store.commit_for_readers().map_err(|e| StorageError::from(StorageIOError::apply(last, &e)))?;
                }
                return Ok(vec![answered]);
            }
        }
        let (responses, effects) = self
            .store
            .write(durable, |tx| {
                let mut out = Vec::with_capacity(entries.len());
                for e in &entries {
                    match &e.payload {
                        EntryPayload::Blank => out.push(Vec::new()),
                        EntryPayload::Normal(batch) => {
                            let mut results = Vec::with_capacity(batch.commands.len());
                            for cmd in batch.commands.iter() {
                                results.push(tx.apply(cmd)?);
                            }
                            out.push(results);
                        }
                        EntryPayload::Membership(m) => {
                            let stored = Membership::new(Some(e.log_id), m.clone());
                            tx.set_meta(META_MEMBERSHIP, &encode(&stored))?;
                            out.push(Vec::new());
                        }
                    }
                }
                tx.set_meta(META_APPLIED, &encode(&Some(last)))?;
                Ok(out)
            })
            .map_err(|e| StorageError::from(StorageIOError::apply(last, &e)))?;
        metrics::histogram!("conclave_apply_seconds").record(t0.elapsed().as_secs_f64());
        self.sink.applied(&effects);
        let responses = entries
            .iter()
            .zip(responses)
            .map(|(e, results)| match &e.payload {
                EntryPayload::Normal(batch) => self.ahead.applied(e.log_id.leader_id.term, &batch.commands, results),
                _ => results,
            })
            .collect();
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        Builder { store: self.store.clone() }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError<u64>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<u64>> {
        let err = |e: StoreError| StorageError::from(StorageIOError::write_snapshot(Some(meta.signature()), &e));
        let rows: SnapshotRows = decode(snapshot.get_ref()).map_err(err)?;
        self.store.restore(&rows.rows).map_err(err)?;
        let view = self.store.read().map_err(err)?;
        let (applied, _) = applied_state(&view).map_err(err)?;
        if applied != meta.last_log_id {
            return Err(err(StoreError::Corrupt(format!(
                "snapshot content is at {applied:?}, its metadata says {:?}",
                meta.last_log_id
            ))));
        }
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError<u64>> {
        full_snapshot(&self.store).map_err(sm_read_err)
    }
}
