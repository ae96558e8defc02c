//! Replication: openraft glue. Every openraft type stays inside this module; the rest of the
//! node sees [`Replica`]: propose a [`Command`], wait for a read barrier, read raft status.
//!
//! Pieces, as in openraft's examples: [`log_store`] (the raft log and vote in redb),
//! [`state_machine`] (applies committed entries to the [`Store`] in one redb transaction each
//! call, with the applied log id), [`network`] (peer transport; single node for now).
//!
//! Group commit: [`Replica::propose`] hands the command to a proposer task, which packs
//! everything that arrived while the previous entries were in flight into ONE log entry (a
//! [`Batch`]), so N concurrent writers cost one log append, one fsync and one apply transaction.

mod log_store;
mod network;
mod state_machine;
pub mod wal;

use std::collections::{BTreeMap, VecDeque};
use std::io::Cursor;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use openraft::{BasicNode, Config, Raft, SnapshotPolicy};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use crate::command::{Applied, Batch, Command, COMMAND_FORMAT_VERSION};
use crate::store::{Effects, Store};

openraft::declare_raft_types!(
    /// The raft type configuration: the log carries [`Batch`]es of commands and returns one
    /// [`Applied`] per command.
    pub TypeConfig:
        D = Batch,
        R = Vec<Applied>,
        NodeId = u64,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
        Responder = WaitersResponder,
);

/// Raft's response to a proposed entry goes straight to the entry's [`Waiters`] (attached to
/// the batch by the proposer), on the raft core's task. Why not openraft's oneshot: a oneshot
/// needs a task per entry waiting on it, and waking that task when raft answers put a second
/// runnable task beside the writers' on the worker, which made tokio wake the other worker
/// (a context switch, ~10 µs of CPU on these VMs) for nothing: the state machine has usually
/// answered the writers already ([`Ahead::applied`]); raft's response only matters for errors.
pub struct WaitersResponder(Option<Arc<Waiters>>);

/// A responder dropped unanswered (the raft core stopped with the entry pending) answers
/// the writers that the node stopped, as the oneshot's closed channel did.
impl Drop for WaitersResponder {
    fn drop(&mut self) {
        if let Some(waiters) = self.0.take() {
            waiters.answer(Err(ProposeError::Stopped));
        }
    }
}

impl openraft::raft::responder::Responder<TypeConfig> for WaitersResponder {
    type Receiver = ();

    fn from_app_data(mut batch: Batch) -> (Batch, Self, ()) {
        let waiters = batch.hook.0.take().and_then(|h| h.downcast::<Waiters>().ok());
        (batch, WaitersResponder(waiters), ())
    }

    fn send(mut self, result: openraft::raft::ClientWriteResult<TypeConfig>) {
        let Some(waiters) = self.0.take() else { return };
        // Usually answered by the state machine already; then this does nothing.
        waiters.answer(match result {
            Ok(resp) => Ok(resp.data),
            Err(openraft::error::ClientWriteError::ForwardToLeader(_)) => Err(ProposeError::NoLeader),
            Err(other) => Err(ProposeError::Raft(other.to_string())),
        });
    }
}

/// Receives the effects of every apply, right after its transaction commits and before the
/// proposers get their responses, so watch events are published before a client can see the
/// write's reply (no reply overtakes the event that it caused).
pub trait ApplySink: Send + Sync + 'static {
    fn applied(&self, effects: &Effects);
}

#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    pub node_id: u64,
    pub peer_addr: String,
    pub data_dir: PathBuf,
    /// Commands packed into one log entry at most.
    pub batch_commands_max: usize,
    /// Log entries proposed and not yet applied at once. While they are in flight, new
    /// commands accumulate into the next batch. One: the log append (fsync) and the apply of
    /// consecutive entries cannot overlap much on a small machine (the raft core waits for
    /// the fsync, and both want the same CPUs), so a second entry in flight mostly split the
    /// waiting writers into two small batches that each paid a fsync and a transaction.
    /// Measured side by side (benches/README.md): 1 instead of 2 gave ZooKeeper set +10 % at
    /// 16 clients, +25 % at 64, etcd put +9 % at 100; a single writer is not affected. Measured
    /// again with the next entry proposed only once the previous one was durable and the
    /// proposers answered by the state machine (so the fsync of N+1 could overlap the apply and
    /// answers of N): 2 was still slower, set at 16 clients −18 %, at 64 −10 %.
    pub entries_in_flight_max: usize,
    /// Group commit's linger (with one entry in flight): see [`Linger`].
    pub linger: Linger,
    /// Queue of commands waiting for the proposer.
    pub proposal_queue_max: usize,
    pub heartbeat_interval_ms: u64,
    pub election_timeout_ms: u64,
    pub snapshot_logs_since_last: u64,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        ReplicaConfig {
            node_id: 1,
            peer_addr: "127.0.0.1:2380".into(),
            data_dir: PathBuf::from("."),
            batch_commands_max: 1024,
            entries_in_flight_max: 1,
            linger: Linger::default(),
            proposal_queue_max: 16 * 1024,
            heartbeat_interval_ms: 100,
            election_timeout_ms: 1000,
            snapshot_logs_since_last: 10_000,
        }
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ProposeError {
    #[error("no leader")]
    NoLeader,
    #[error("server is shutting down")]
    Stopped,
    #[error("too many requests")]
    Overloaded,
    #[error("raft: {0}")]
    Raft(String),
}

/// openraft's term plus this is the term etcd would be in, and the one clients see (response
/// headers, Status). Why they differ by one: etcd bootstraps a new cluster with its membership
/// entries in term 1 and holds the first election in term 2 (a fresh single node answers
/// `raft_term: 2`), while openraft writes its first membership entry at term 0 and elects in
/// term 1. Every later election adds one in both, so the offset stays.
const ETCD_TERM_OFFSET: u64 = 1;

#[derive(Clone, Debug, Default)]
pub struct RaftStatus {
    pub leader: Option<u64>,
    pub term: u64,
    pub last_log_index: u64,
    pub applied_index: u64,
    pub is_leader: bool,
}

struct Proposal {
    cmd: Command,
    reply: oneshot::Sender<Result<Applied, ProposeError>>,
    /// Who sent it, as far as the caller knows (a ZooKeeper session, an etcd client's
    /// connection), or [`UNKNOWN_WRITER`]: group commit's linger asks whether the writers it
    /// waited for came back (see [`LingerState`]).
    writer: u64,
}

/// The writer of a proposal whose caller does not say (internal commands, etcd requests
/// without a peer address): counted as a writer that came back.
pub const UNKNOWN_WRITER: u64 = 0;

#[derive(Clone)]
pub struct Replica {
    raft: Raft<TypeConfig>,
    proposals: mpsc::Sender<Proposal>,
    node_id: u64,
}

impl Replica {
    /// Opens the raft log and state machine on `store`, starts raft, and on a first start
    /// initialises a one-voter cluster of this node.
    pub async fn start(config: ReplicaConfig, store: Store, sink: Arc<dyn ApplySink>) -> Result<Replica, ProposeError> {
        let raft_config = Config {
            cluster_name: "conclave".into(),
            heartbeat_interval: config.heartbeat_interval_ms,
            election_timeout_min: config.election_timeout_ms,
            election_timeout_max: config.election_timeout_ms * 2,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_logs_since_last),
            max_in_snapshot_log_to_keep: 100,
            ..Default::default()
        };
        let raft_config = Arc::new(raft_config.validate().map_err(|e| ProposeError::Raft(e.to_string()))?);
        let ahead = Ahead::new(store.clone());
        let log = log_store::LogStore::open(store.clone(), &config.data_dir.join("wal"))
            .map_err(|e| ProposeError::Raft(e.to_string()))?
            .running_ahead(ahead.clone());
        let sm = state_machine::StateMachine::new(store.clone(), sink, ahead.clone());
        let raft = Raft::new(config.node_id, raft_config, network::Network, log, sm)
            .await
            .map_err(|e| ProposeError::Raft(e.to_string()))?;
        if !raft.is_initialized().await.map_err(|e| ProposeError::Raft(e.to_string()))? {
            let mut members = BTreeMap::new();
            members.insert(config.node_id, BasicNode { addr: config.peer_addr.clone() });
            raft.initialize(members).await.map_err(|e| ProposeError::Raft(e.to_string()))?;
        } else {
            // A restarted single voter need not wait an election timeout to lead again.
            let _ = raft.trigger().elect().await;
        }
        let (tx, rx) = mpsc::channel(config.proposal_queue_max);
        spawn_preparer(store, ahead.clone())?;
        let linger = if config.entries_in_flight_max == 1 { config.linger } else { Linger::OFF };
        tokio::spawn(proposer(
            raft.clone(),
            ahead,
            rx,
            config.batch_commands_max,
            config.entries_in_flight_max,
            linger,
        ));
        Ok(Replica { raft, proposals: tx, node_id: config.node_id })
    }

    /// Waits until this node is the leader (a single node elects itself in about one
    /// election timeout after start).
    pub async fn wait_leader(&self, timeout: Duration) -> bool {
        let id = self.node_id;
        self.raft
            .wait(Some(timeout))
            .metrics(|m| m.current_leader == Some(id) && m.last_applied.is_some(), "leader")
            .await
            .is_ok()
    }

    /// Proposes a command and waits until it is durable in the log and applied.
    pub async fn propose(&self, cmd: Command) -> Result<Applied, ProposeError> {
        self.submit(cmd)?.await
    }

    /// [`Replica::propose`] for a known `writer` (see [`Replica::submit_as`]).
    pub async fn propose_as(&self, writer: u64, cmd: Command) -> Result<Applied, ProposeError> {
        self.submit_as(writer, cmd)?.await
    }

    /// Queues a command for proposal NOW and returns a future of its outcome, so a client that
    /// pipelines writes gets them into the log in the order it sent them.
    pub fn submit(
        &self,
        cmd: Command,
    ) -> Result<impl std::future::Future<Output = Result<Applied, ProposeError>> + Send + 'static, ProposeError> {
        self.submit_as(UNKNOWN_WRITER, cmd)
    }

    /// [`Replica::submit`] for a known `writer` (a ZooKeeper session id, an etcd client's
    /// connection: see `wire::etcd::writer_of`): lets group commit tell writers that come back
    /// right after their answer from others (see [`LingerState`]).
    pub fn submit_as(
        &self,
        writer: u64,
        cmd: Command,
    ) -> Result<impl std::future::Future<Output = Result<Applied, ProposeError>> + Send + 'static, ProposeError> {
        let (reply, rx) = oneshot::channel();
        self.proposals.try_send(Proposal { cmd, reply, writer }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => ProposeError::Overloaded,
            mpsc::error::TrySendError::Closed(_) => ProposeError::Stopped,
        })?;
        Ok(async move { rx.await.map_err(|_| ProposeError::Stopped)? })
    }

    /// A linearizable read barrier (raft read-index): returns once this node has applied
    /// everything committed before the call, confirmed as leader.
    pub async fn read_barrier(&self) -> Result<(), ProposeError> {
        self.raft.ensure_linearizable().await.map(|_| ()).map_err(|e| ProposeError::Raft(e.to_string()))
    }

    pub fn status(&self) -> RaftStatus {
        let m = self.raft.metrics().borrow().clone();
        RaftStatus {
            leader: m.current_leader,
            term: m.current_term + ETCD_TERM_OFFSET,
            last_log_index: m.last_log_index.unwrap_or(0),
            applied_index: m.last_applied.map(|l| l.index).unwrap_or(0),
            is_leader: m.current_leader == Some(self.node_id),
        }
    }

    /// The current raft term as etcd counts it (see [`ETCD_TERM_OFFSET`]; cheap: reads the
    /// latest metrics without copying them).
    pub fn term(&self) -> u64 {
        self.raft.metrics().borrow().current_term + ETCD_TERM_OFFSET
    }

    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    pub async fn shutdown(&self) {
        let _ = self.raft.shutdown().await;
    }
}

/// How long a prepare waits for an earlier prepared transaction to be used (see
/// [`Store::prepare`]); the preparer only starts on an entry once the previous one is applied,
/// so this is a safety net, not the usual path.
const PREPARE_WAIT: Duration = Duration::from_millis(5);

/// How long the preparer waits for the apply of a batch it prepared, to commit it for the
/// readers (see `Ahead::commit_for_readers_once_applied`): past a slow fsync the state machine
/// does it, as it did before.
const READER_COMMIT_WAIT: Duration = Duration::from_micros(300);

/// How long the preparer, told that an entry is about to form ([`Ahead::heads_up`]), looks for
/// it yielding its core before it sleeps again.
/// Why: a sleeping preparer is woken by a futex, and on these VMs the woken thread ran ~20–50
/// µs later; where the prepare of an entry outlasts its fsync (64 ZooKeeper sets or creates
/// take ~300 µs against a ~130–200 µs append), that late start held the apply back.
const PREPARER_SPIN: Duration = Duration::from_micros(500);

/// The proposer gives the preparer a heads-up ([`Ahead::heads_up`]) only while it lingers for
/// an entry of at least this many commands, once three quarters of them are in; otherwise
/// the preparer sleeps between batches and is woken when the entry is proposed.
///
/// Why not always spin after a batch (as the preparer did): the spin never ended under a
/// closed-loop load (the next entry comes within [`PREPARER_SPIN`]), so the preparer was on a
/// core the whole answer phase, when the replies, the next requests and the clients need both
/// cores: at 16 ZooKeeper clients it was 42 % of the machine's samples (`perf record -a`,
/// almost all of it `sched_yield`). Measured on Linux 6.18 (`ab.sh` and an etcd loop, rounds
/// interleaved in both orders, fresh servers): sleeping at once after batches under this size,
/// etcd put at 16 clients +10..+29 % (server CPU 46 -> 27 µs per put), ZooKeeper create and set
/// at 16 clients within the noise (−10..+12 %) at 27–33 -> 17–22 µs per op, create at 4
/// clients 69 -> 37 µs per op; sleeping as well after larger batches until the heads-up
/// (against spinning after them): etcd put at 100 clients +6..+11 % in 5 of 5 rounds (20 ->
/// 17 µs per put), ZooKeeper set at 64 clients +8..+29 % in 6 of 7, create at 64 −21..+29 %
/// (mean +5 %); the lock recipe (entries of two commands, no heads-up) within the noise (16
/// pairs at 64 clients, 9 won by the spin). Without either (always asleep), create at 64
/// clients lost 4–30 %. A batch of 16 takes ~80–100 µs to prepare, so a start ~20 µs late
/// still ends before its fsync.
const HEADS_UP_MIN_COMMANDS: usize = 33;

/// Batches proposed and not yet applied, kept at most (a proposal that never reaches apply,
/// e.g. after a lost leadership, must not make the queue grow).
const AHEAD_QUEUE_MAX: usize = 16;

type Reply = oneshot::Sender<Result<Applied, ProposeError>>;

/// The proposers of one batch, answered exactly once: by the state machine right after the
/// apply ([`Ahead::applied`]), or else by the task that waits for raft's response (errors, and
/// entries the state machine did not recognise). Answering also frees the batch's in-flight
/// slot.
struct Waiters {
    inner: Mutex<Option<(Vec<Reply>, OwnedSemaphorePermit)>>,
}

impl Waiters {
    fn answer(&self, outcome: Result<Vec<Applied>, ProposeError>) {
        let taken = self.inner.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some((replies, slot)) = taken else { return };
        drop(slot);
        match outcome {
            Ok(results) if results.len() == replies.len() => {
                for (reply, r) in replies.into_iter().zip(results) {
                    let _ = reply.send(Ok(r));
                }
            }
            Ok(results) => {
                tracing::error!("{} results for {} proposed commands", results.len(), replies.len());
                for reply in replies {
                    let _ = reply.send(Err(ProposeError::Raft("apply returned a wrong number of results".into())));
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// The batches this node proposed, in proposal order, for the preparer thread: it runs the
/// oldest not-yet-applied batch ahead of its commit ([`Store::prepare`]) once every batch
/// before it has been applied, so a prepared transaction always builds on the state its
/// predecessor leaves, and never on a batch that was applied already (which would only waste
/// the work and then make the next batch's prepare miss too).
pub(crate) struct Ahead {
    store: Store,
    queue: Mutex<AheadQueue>,
    changed: Condvar,
    /// The preparer waits for the apply of the batch it just prepared, to commit it for the
    /// readers itself (see [`Ahead::commit_for_readers_once_applied`]): the state machine
    /// leaves that commit to it.
    reader_commit_claimed: std::sync::atomic::AtomicBool,
    /// Bumped by every change the preparer may be waiting for, before `changed` is notified:
    /// what the preparer watches while it spins instead of sleeping (see [`PREPARER_SPIN`]).
    changes: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct AheadQueue {
    /// The proposals, oldest first.
    jobs: VecDeque<AheadJob>,
    /// The proposer has stopped: the preparer thread ends.
    stopped: bool,
    /// An apply left the applied batches' transaction full: the preparer commits it when it
    /// has nothing to prepare ([`Store::commit_if_full`]).
    commit: bool,
    /// An entry is about to form ([`Ahead::heads_up`]): the preparer waiting for work spins
    /// ([`PREPARER_SPIN`]) instead of sleeping. Cleared when it starts a batch.
    heads_up: bool,
}

/// What the preparer thread is given to do.
enum Work {
    /// Run these commands ahead, on the state after this many applies.
    Prepare(Arc<Vec<Command>>, u64),
    /// Commit the applied batches' full transaction.
    Commit,
}

struct AheadJob {
    /// The raft term when it was proposed: an entry of another term is not this proposal,
    /// whatever its commands (only this node's entries of its own terms can answer it).
    term: u64,
    commands: Arc<Vec<Command>>,
    waiters: Arc<Waiters>,
    started: bool,
    /// The store's applies count when every batch before this one had been applied: the
    /// state this one must be run on. Known once it is the oldest in the queue.
    after: Option<u64>,
    /// Small: run by the log store, between writing its entry and the `fdatasync`
    /// ([`Ahead::take_inline`]), not by the preparer thread.
    inline: bool,
    /// The bookkeeping rows its apply will write, once the log store has given the entry its
    /// log id ([`Ahead::logged`]): the prepare writes them ahead (`Store::prepare_logged`).
    logged: Vec<(String, Vec<u8>)>,
}

/// Batches whose store work weighs at most this much ([`inline_weight`]) are run ahead by the
/// log store on its own thread, while the entry's pages are being written
/// ([`wal::Wal::append_overlapped`]), instead of by the preparer thread: one or two ZooKeeper
/// sets or etcd puts (~5 µs each), or one create or delete (~10–25 µs).
///
/// Why inline at all: handing a batch to the preparer costs a wake and a sleep of that thread,
/// ~10 µs of CPU each on these VMs, and ~20 µs of latency before it starts; a batch this light
/// finishes under the device's write of the entry, which `sync_file_range` has started, so it
/// delays the `fdatasync` by nothing or little (set at 2 clients: 7–14 % fewer sets/s when even
/// two sets went to the preparer).
///
/// Why not more: a heavier batch outlasts that write and pushes the `fdatasync` back by the
/// difference, while the preparer thread runs it on the other core beside the whole
/// `fdatasync`. Measured (`benches/ab.sh`, 3 interleaved rounds) against the former limit of 4
/// commands of any kind, under which the lock recipe's entry (the released holder's create and
/// the next holder's delete, ~50–60 µs of store work on a grown store) ran inline: lock at 16
/// clients +12–16 %, at 64 clients +18–24 %, the delete's round trip ~40 µs shorter; set at 4
/// clients +8–14 %; create at 2 clients −1..−6 % (its two creates now go to the preparer).
const INLINE_PREPARE_WEIGHT_MAX: usize = 2;

/// A rough measure of a command's store work for [`INLINE_PREPARE_WEIGHT_MAX`], in units of
/// one in-place update (a ZooKeeper setData or an etcd put: one `kv` row rewritten, one `hist`
/// row appended). A create or delete touches the znode, child, session and tombstone rows too:
/// two units; a compaction or a lease revoke can touch any number of rows.
fn inline_weight(cmd: &Command) -> usize {
    use crate::command::ZkOp;
    match cmd {
        Command::Put(_) | Command::LeaseGrant { .. } | Command::ZkSession { .. } | Command::Alarm { .. } => 1,
        Command::DeleteRange(_) => 2,
        Command::Txn(t) => 1 + t.success.len().max(t.failure.len()),
        Command::Zk(t) => t
            .ops
            .iter()
            .map(|op| match op {
                ZkOp::SetData { .. } | ZkOp::SetAcl { .. } | ZkOp::Check { .. } => 1,
                _ => 2,
            })
            .sum::<usize>()
            .max(1),
        Command::Compact { .. } | Command::LeaseRevoke { .. } => INLINE_PREPARE_WEIGHT_MAX + 1,
    }
}

/// Whether `commands` are light enough to run inline (see [`INLINE_PREPARE_WEIGHT_MAX`]).
fn inline_batch(commands: &[Command]) -> bool {
    // A long batch is never light: no need to weigh each command.
    commands.len() <= INLINE_PREPARE_WEIGHT_MAX
        && commands.iter().map(inline_weight).sum::<usize>() <= INLINE_PREPARE_WEIGHT_MAX
}

impl Ahead {
    fn new(store: Store) -> Arc<Ahead> {
        Arc::new(Ahead {
            store,
            queue: Mutex::new(AheadQueue::default()),
            changed: Condvar::new(),
            reader_commit_claimed: std::sync::atomic::AtomicBool::new(false),
            changes: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Tells the preparer that the queue changed (call after the change, without the lock).
    fn wake(&self) {
        self.changes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.changed.notify_all();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AheadQueue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A batch was proposed.
    fn proposed(&self, term: u64, commands: Arc<Vec<Command>>, waiters: Arc<Waiters>) {
        let mut guard = self.lock();
        let q = &mut guard.jobs;
        if q.len() >= AHEAD_QUEUE_MAX {
            q.pop_front();
            if let Some(front) = q.front_mut() {
                front.started = true; // its predecessor's state is unknown: not run ahead
            }
        }
        // An empty queue: everything this node proposed is applied, the store is at the
        // state this batch follows.
        let after = q.is_empty().then(|| self.store.applies());
        let inline = inline_batch(&commands);
        q.push_back(AheadJob { term, commands, waiters, started: false, after, inline, logged: Vec::new() });
        drop(guard);
        // Only the oldest batch can be started; behind others this one waits for `applied`.
        // (A wake of the preparer thread that finds nothing to do costs two context switches,
        // ~10 µs of CPU each on these VMs.) After the unlock: a preparer woken while the lock
        // is still held blocks on it at once, three more futex calls per entry (strace).
        if after.is_some() && !inline {
            self.wake();
        }
    }

    /// The log store is about to make the entry holding `commands` durable: if that batch is
    /// the oldest proposal, not started and light ([`inline_batch`]), it is started now and the
    /// caller runs it (its commands and the applies count they follow). A light batch that
    /// cannot start yet (an older one is not applied) is left to the preparer thread instead.
    pub(crate) fn take_inline(&self, commands: &Arc<Vec<Command>>) -> Option<(Arc<Vec<Command>>, u64)> {
        // A long batch was never the log store's: no need to take the queue's lock (whether a
        // short one is light was decided once, when it was proposed: `job.inline`).
        if commands.len() > INLINE_PREPARE_WEIGHT_MAX {
            return None;
        }
        let mut guard = self.lock();
        let q = &mut guard.jobs;
        let at = q.iter().position(|j| Arc::ptr_eq(&j.commands, commands))?;
        let job = &mut q[at];
        if !job.inline || job.started {
            return None;
        }
        match (at, job.after) {
            (0, Some(after)) => {
                job.started = true;
                Some((job.commands.clone(), after))
            }
            _ => {
                job.inline = false;
                drop(guard);
                self.wake();
                None
            }
        }
    }

    /// The log store is appending the entry holding `commands`, whose apply will write
    /// `rows` (its applied log id): recorded for the prepare of that batch.
    pub(crate) fn logged(&self, commands: &Arc<Vec<Command>>, rows: Vec<(String, Vec<u8>)>) {
        let mut guard = self.lock();
        if let Some(job) = guard.jobs.iter_mut().find(|j| Arc::ptr_eq(&j.commands, commands)) {
            job.logged = rows;
        }
    }

    /// The rows recorded by [`Ahead::logged`] for the batch `commands`, if any yet.
    fn logged_rows(&self, commands: &Arc<Vec<Command>>) -> Vec<(String, Vec<u8>)> {
        let guard = self.lock();
        guard.jobs.iter().find(|j| Arc::ptr_eq(&j.commands, commands)).map(|j| j.logged.clone()).unwrap_or_default()
    }

    /// A log entry of `term` holding `commands` was applied with `results`: if this node proposed it,
    /// its proposers are answered now (and the results it returns to raft are empty), and it
    /// and every older proposal leave the queue so the next batch may be run ahead. Why answer
    /// here and not through raft's response: openraft's core sends client responses, and it
    /// waits for each log append's fsync in between, so an answer would also wait for the
    /// next entry's fsync. An entry this node did not propose (replayed after a restart, or
    /// from another leader) matches nothing; its results go back to raft.
    pub(crate) fn applied(&self, term: u64, commands: &[Command], results: Vec<Applied>) -> Vec<Applied> {
        let mut guard = self.lock();
        let q = &mut guard.jobs;
        let Some(pos) =
            q.iter().position(|j| j.term == term && crate::store::same_commands(j.commands.as_slice(), commands))
        else {
            return results;
        };
        let job = q.drain(..=pos).next_back();
        // The next batch may be started now; with none queued there is nothing to wake the
        // preparer for, unless the transaction it would continue is full: it commits that
        // now, while this batch's answers go out, instead of before the next batch.
        let wake = match q.front_mut() {
            Some(front) => {
                front.after = Some(self.store.applies());
                true
            }
            None => {
                guard.commit = self.store.unsaved_full();
                guard.commit
            }
        };
        drop(guard);
        if wake {
            self.wake();
        }
        match job {
            Some(job) => {
                job.waiters.answer(Ok(results));
                Vec::new()
            }
            None => results,
        }
    }

    /// Waits for the oldest proposal to be one that has not been started yet, and starts it
    /// (its commands and the applies count they must follow), or, with none to start, for a
    /// full transaction to commit. None once the proposer stopped.
    ///
    /// For [`PREPARER_SPIN`] after a heads-up ([`Ahead::heads_up`]) it does not sleep: it
    /// yields its core while it watches for a change.
    fn next(&self) -> Option<Work> {
        use std::sync::atomic::Ordering;
        let mut guard = self.lock();
        let mut spin_end = std::time::Instant::now();
        loop {
            if guard.stopped {
                return None;
            }
            let q = &mut *guard;
            if let Some(front) = q.jobs.front_mut() {
                if let (false, false, Some(after)) = (front.started, front.inline, front.after) {
                    front.started = true;
                    q.heads_up = false;
                    // Its prepare commits the full transaction itself, if still needed.
                    q.commit = false;
                    return Some(Work::Prepare(front.commands.clone(), after));
                }
            }
            if std::mem::take(&mut guard.commit) {
                return Some(Work::Commit);
            }
            if std::mem::take(&mut guard.heads_up) {
                spin_end = std::time::Instant::now() + PREPARER_SPIN;
            }
            if std::time::Instant::now() < spin_end {
                let seen = self.changes.load(Ordering::SeqCst);
                drop(guard);
                yield_while(spin_end, || self.changes.load(Ordering::SeqCst) == seen);
                guard = self.lock();
                continue;
            }
            guard = self.changed.wait(guard).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Whether the preparer will commit the batch being applied for the readers (the state
    /// machine then does not).
    pub(crate) fn reader_commit_claimed(&self) -> bool {
        self.reader_commit_claimed.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Called by the preparer once it prepared a batch following `after` applies while reads
    /// are under way: waits, yielding the core, for that batch's apply, up to
    /// `wait` ([`READER_COMMIT_WAIT`]), and commits it for the readers at once.
    /// Why: a read commits applied batches before it looks. The state machine did that commit
    /// after the batch's answers and events were out, on a tokio worker, and the read that an
    /// event prompts (the lock recipe's next holder listing the children) often came during
    /// it and waited. The preparer is idle while the entry's fsync ends, and committing as
    /// soon as the batch is applied runs beside the answers instead of after them.
    fn commit_for_readers_once_applied(&self, after: u64, wait: Duration) {
        use std::sync::atomic::Ordering;
        self.reader_commit_claimed.store(true, Ordering::SeqCst);
        yield_while(std::time::Instant::now() + wait, || self.store.applies() <= after);
        let applied = self.store.applies() > after;
        if applied {
            if let Err(e) = self.store.commit_for_readers() {
                tracing::error!("committing applied batches: {e}");
            }
        }
        self.reader_commit_claimed.store(false, Ordering::SeqCst);
        metrics::counter!("conclave_reader_commit_waits_total", "end" => if applied { "applied" } else { "timeout" })
            .increment(1);
    }

    /// The proposer expects to propose a large entry soon (see [`HEADS_UP_MIN_COMMANDS`]): the
    /// preparer, if it waits for work, looks for it without sleeping for [`PREPARER_SPIN`].
    fn heads_up(&self) {
        self.lock().heads_up = true;
        self.wake();
    }

    /// The proposer stopped: ends the preparer thread (which holds a handle on the store).
    fn stop(&self) {
        self.lock().stopped = true;
        self.wake();
    }
}

/// Gives the core away (`sched_yield`: any runnable thread goes first) while `waiting` holds,
/// until `deadline`: the preparer's wait for a change it expects soon, without the 20–50 µs a
/// futex wake took to reach a sleeping thread on these VMs.
fn yield_while(deadline: std::time::Instant, mut waiting: impl FnMut() -> bool) {
    while waiting() && std::time::Instant::now() < deadline {
        std::thread::yield_now();
    }
}

/// Starts the thread that runs proposed batches ahead of their commit (see [`Ahead`]).
fn spawn_preparer(store: Store, ahead: Arc<Ahead>) -> Result<(), ProposeError> {
    std::thread::Builder::new()
        .name("conclave-prepare".into())
        .spawn(move || {
            while let Some(work) = ahead.next() {
                match work {
                    Work::Prepare(commands, after) => {
                        match store
                            .prepare_logged(commands.clone(), PREPARE_WAIT, after, || ahead.logged_rows(&commands))
                        {
                            Ok(true) if store.reads_seen() => {
                                ahead.commit_for_readers_once_applied(after, READER_COMMIT_WAIT)
                            }
                            Ok(_) => {}
                            Err(e) => {
                                // The apply runs the commands again and reports a storage fault itself.
                                tracing::warn!("running a batch ahead of its commit: {e}");
                            }
                        }
                    }
                    Work::Commit => {
                        if let Err(e) = store.commit_if_full() {
                            // The store refuses reads and writes from now on and says why.
                            tracing::error!("committing applied batches: {e}");
                        }
                    }
                }
            }
        })
        .map_err(|e| ProposeError::Raft(format!("starting the prepare thread: {e}")))?;
    Ok(())
}

/// Group commit's linger: how long the proposer may hold a forming entry back for the writers
/// that the previous entry just answered.
///
/// Why: with one entry in flight, the writers answered by an entry send their next command a
/// client round trip later, while the next entry has already formed from the commands that
/// queued during the flight. Under a closed-loop load the writers then split into groups that
/// alternate between consecutive entries, and each command waits for about two log appends
/// (ZooKeeper set at 64 clients: ~30 commands per entry, not 64). So when an entry forms, the
/// proposer expects the previous entry's writers back (the `target`, see [`Grouping`]) and
/// keeps collecting until they are, or `max` has passed.
///
/// The wait sleeps on the queue (a spinning wait was measured: it took the CPU the answers
/// and the clients need, and lost up to half the throughput). tokio's timers round up to the
/// next millisecond, so `max` is at least that in effect; it is reached only when a writer
/// does not come back (it waits on a lock, or thinks, or wrote once and left), and a `credit`
/// stops the lingering where that is the rule: each linger that ends in a timeout halves the
/// credit, each that fills adds one; at zero the proposer stops lingering and tries again
/// after [`LINGER_RETRY_ENTRIES`] entries. A lone writer never waits: the target is then its
/// own command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Linger {
    /// The longest a forming entry is held back; zero turns lingering off.
    pub max: Duration,
}

impl Linger {
    pub const OFF: Linger = Linger { max: Duration::ZERO };
}

impl Default for Linger {
    fn default() -> Self {
        Linger { max: Duration::from_millis(1) }
    }
}

/// The most credit lingering can build up (timeouts in a row it survives: log2 of this).
const LINGER_CREDIT_MAX: u32 = 16;

/// Entries formed without lingering, once the credit ran out, before lingering is tried again.
const LINGER_RETRY_ENTRIES: u32 = 64;

/// The proposer's lingering state (see [`Linger`]).
///
/// A linger counts as filled only if the entry then holds a command of a writer of the
/// previous entry (or of an unknown writer). Why: writers that wait between writes (many
/// clients each writing now and then: a configuration store's load) fill a linger too, with
/// other writers' commands that happen to arrive, while the ones it waited for do not come
/// back; every such wait of up to `max` fell on the commands already in the batch (16 ZooKeeper
/// clients writing every ~5 ms at random: mean write latency 0.63 ms with lingering against
/// 0.23 without, p90 1.5 against 0.33 ms). Counted as timeouts, they turn lingering off.
struct LingerState {
    cfg: Linger,
    credit: u32,
    /// Entries formed since the credit ran out.
    idle_entries: u32,
}

impl LingerState {
    fn new(cfg: Linger) -> LingerState {
        LingerState { cfg, credit: LINGER_CREDIT_MAX / 2, idle_entries: 0 }
    }

    /// Whether to linger for this entry.
    fn allowed(&mut self) -> bool {
        if self.cfg.max.is_zero() {
            return false;
        }
        if self.credit == 0 {
            self.idle_entries += 1;
            if self.idle_entries < LINGER_RETRY_ENTRIES {
                return false;
            }
            self.idle_entries = 0;
            self.credit = 1;
        }
        true
    }

    fn ended(&mut self, filled: bool) {
        self.credit = if filled { (self.credit + 1).min(LINGER_CREDIT_MAX) } else { self.credit / 2 };
    }
}

/// Whom the proposer expects in the entry it is forming (the `target` of [`linger`]), from the
/// entries before it.
///
/// - The previous entry's writers: with one entry in flight, they were answered just before
///   this entry forms, and a closed-loop writer sends its next command a round trip later.
/// - If this entry waited for its slot: the commands that came during the previous flight
///   (they are in the batch already) and, as above, the previous entry's writers.
/// - `late`: if the last entry formed at once (with a free slot) saw commands come during its
///   flight, just too late for it, and no returning writers joined them, the next entry
///   formed at once waits for as many besides its returning writers. Why: a lock hand-off.
///   The released holder's next create comes right after its delete is answered and formed an
///   entry alone; the next holder's delete came a read round trip later (the NodeDeleted
///   event, a getChildren) and waited for that entry's whole append: two appends per
///   hand-off. Waiting for it puts both in one entry, and from then on the previous entry's
///   two writers are the target (lock recipe at 16 clients: 2.2k to 3.2k locks/s where the
///   proposer had settled into one command per entry). Where the late commands did join
///   returning writers (a closed-loop group split by a slow writer), the groups merged and
///   nothing is added.
#[derive(Debug)]
struct Grouping {
    /// Commands in the previous entry.
    previous_len: usize,
    /// Whether the previous entry waited for its slot.
    previous_waited: bool,
    /// See the type's comment; taken by the next entry formed at once.
    late: usize,
    /// The previous entry's writers, sorted, each once (at most `batch_max`): see
    /// [`LingerState`] for why a linger asks.
    previous_writers: Vec<u64>,
}

impl Default for Grouping {
    fn default() -> Self {
        Grouping { previous_len: 0, previous_waited: true, late: 0, previous_writers: Vec::new() }
    }
}

impl Grouping {
    /// The commands to collect for an entry whose first `arrived` commands are in its batch;
    /// `waited`: the first of them came while the previous entry was in flight.
    fn target(&mut self, waited: bool, arrived: usize) -> usize {
        let expected = if waited { arrived } else { std::mem::take(&mut self.late) };
        expected + self.previous_len
    }

    /// The entry formed with `len` commands, `arrived` of them there before any lingering,
    /// and `filled`: it reached its target.
    fn formed(&mut self, waited: bool, arrived: usize, filled: bool, len: usize) {
        if waited && !self.previous_waited && !filled {
            self.late = arrived;
        }
        self.previous_waited = waited;
        self.previous_len = len;
    }

    /// The writers of the entry just formed.
    fn remember_writers(&mut self, writers: impl Iterator<Item = u64>) {
        self.previous_writers.clear();
        self.previous_writers.extend(writers);
        self.previous_writers.sort_unstable();
        self.previous_writers.dedup();
    }
}

/// Whether `batch` holds a command of a writer of the previous entry (`previous_writers`,
/// sorted) or of an unknown writer (see [`LingerState`]).
fn came_back(batch: &[Proposal], previous_writers: &[u64]) -> bool {
    batch.iter().any(|p| p.writer == UNKNOWN_WRITER || previous_writers.binary_search(&p.writer).is_ok())
}

/// Collects commands into `batch` until it holds `target` of them or `max` has passed (the
/// label of `conclave_proposal_lingers_total`: "full", "timeout", or "closed" at shutdown).
/// `near`: once the batch holds this many, give the preparer its heads-up
/// ([`Ahead::heads_up`]).
async fn linger(
    rx: &mut mpsc::Receiver<Proposal>,
    batch: &mut Vec<Proposal>,
    target: usize,
    max: Duration,
    mut near: Option<(usize, &Ahead)>,
) -> &'static str {
    let deadline = tokio::time::sleep(max);
    tokio::pin!(deadline);
    while batch.len() < target {
        if let Some((n, ahead)) = near {
            if batch.len() >= n {
                ahead.heads_up();
                near = None;
            }
        }
        tokio::select! {
            biased;
            p = rx.recv() => match p {
                Some(p) => batch.push(p),
                None => return "closed",
            },
            _ = &mut deadline => return "timeout",
        }
    }
    "full"
}

/// The group-commit loop: take what is queued (up to `batch_max`), propose it as one entry,
/// and let at most `in_flight_max` entries be outstanding; with one in flight, [`Linger`].
///
/// While the raft core makes an entry durable, the store runs its commands in a transaction
/// it keeps open (`Store::prepare`, on the preparer thread), and the state machine applies that
/// transaction when raft applies the entry: the apply's work overlaps the log's fsync instead
/// of following it (and its commit overlaps the next entry's fsync). A prepared transaction is
/// used only if nothing else wrote in between and it ran exactly the entry's commands;
/// otherwise the entry is applied as usual.
async fn proposer(
    raft: Raft<TypeConfig>,
    ahead: Arc<Ahead>,
    mut rx: mpsc::Receiver<Proposal>,
    batch_max: usize,
    in_flight_max: usize,
    linger_cfg: Linger,
) {
    let slots = Arc::new(Semaphore::new(in_flight_max));
    let mut groups = Grouping::default();
    let mut lingering = LingerState::new(linger_cfg);
    while let Some(first) = rx.recv().await {
        // A command that arrives while an entry is in flight is not from that entry's writers.
        let waited = slots.available_permits() == 0;
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let mut batch = vec![first];
        while batch.len() < batch_max {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let target = groups.target(waited, batch.len()).min(batch_max);
        let arrived = batch.len();
        let mut filled = batch.len() >= target;
        if batch.len() < target && lingering.allowed() {
            let near = (target >= HEADS_UP_MIN_COMMANDS).then(|| (target - target / 4, &*ahead));
            let end = linger(&mut rx, &mut batch, target, lingering.cfg.max, near).await;
            filled = end == "full";
            lingering.ended(filled && came_back(&batch, &groups.previous_writers));
            metrics::counter!("conclave_proposal_lingers_total", "end" => end).increment(1);
        }
        groups.formed(waited, arrived, filled, batch.len());
        if !linger_cfg.max.is_zero() {
            // Asked only by a linger (and an entry of 1024 commands sorts in a few µs).
            groups.remember_writers(batch.iter().map(|p| p.writer));
        }
        let (commands, replies): (Vec<Command>, Vec<_>) = batch.into_iter().map(|p| (p.cmd, p.reply)).unzip();
        metrics::histogram!("conclave_proposal_batch_commands").record(commands.len() as f64);
        let commands = Arc::new(commands);
        let waiters = Arc::new(Waiters { inner: Mutex::new(Some((replies, slot))) });
        ahead.proposed(raft.metrics().borrow().current_term, commands.clone(), waiters.clone());
        let hook = crate::command::ProposerHook(Some(waiters.clone()));
        let entry = Batch { version: COMMAND_FORMAT_VERSION, commands, hook };
        // Enqueue in order; raft answers through the hook (see [`WaitersResponder`]). Only a
        // raft core that stopped answers nothing: then the waiters learn it here.
        if let Err(e) = raft.client_write_ff(entry).await {
            waiters.answer(Err(ProposeError::Raft(e.to_string())));
        }
    }
    ahead.stop();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proposal() -> Proposal {
        proposal_of(UNKNOWN_WRITER)
    }

    fn proposal_of(writer: u64) -> Proposal {
        let (reply, _rx) = oneshot::channel();
        Proposal { cmd: Command::LeaseRevoke { id: 1 }, reply, writer }
    }

    /// Goal: a linger filled by writers that happened to arrive, while the previous entry's
    /// writers did not come back, does not count as filled; one that holds a returning (or
    /// unknown) writer does.
    #[test]
    fn a_linger_counts_as_filled_only_if_a_previous_writer_came_back() {
        let previous = [3, 7, 9];
        assert!(came_back(&[proposal_of(11), proposal_of(7)], &previous));
        assert!(!came_back(&[proposal_of(11), proposal_of(12)], &previous), "others only");
        assert!(came_back(&[proposal_of(11), proposal()], &previous), "unknown writers count");
        assert!(!came_back(&[proposal_of(1)], &[]));
    }

    #[tokio::test(start_paused = true)]
    async fn a_linger_ends_when_the_expected_writers_are_back_or_at_its_limit() {
        let (tx, mut rx) = mpsc::channel(16);
        let mut batch = vec![proposal()];
        // Two writers come back 200 µs apart: the batch fills without waiting for the limit.
        let sender = tx.clone();
        tokio::spawn(async move {
            for _ in 0..2 {
                tokio::time::sleep(Duration::from_micros(200)).await;
                let _ = sender.send(proposal()).await;
            }
        });
        let start = tokio::time::Instant::now();
        assert_eq!(linger(&mut rx, &mut batch, 3, Duration::from_millis(5), None).await, "full");
        assert_eq!(batch.len(), 3);
        assert!(start.elapsed() < Duration::from_millis(5));

        // A writer that does not come back costs the limit, and the batch keeps what it has.
        let start = tokio::time::Instant::now();
        assert_eq!(linger(&mut rx, &mut batch, 4, Duration::from_millis(5), None).await, "timeout");
        assert_eq!(batch.len(), 3);
        assert_eq!(start.elapsed(), Duration::from_millis(5));

        drop(tx);
        assert_eq!(linger(&mut rx, &mut batch, 4, Duration::from_millis(5), None).await, "closed");
    }

    /// Goal: a linger for a large entry tells the preparer once the entry is near (so that it
    /// is awake when the entry is proposed), and only once.
    #[tokio::test]
    async fn a_linger_gives_the_preparer_its_heads_up_when_the_entry_is_near() {
        let (_d, _store, ahead) = store_and_ahead();
        let (tx, mut rx) = mpsc::channel(16);
        let mut batch = vec![proposal()];
        tx.send(proposal()).await.unwrap();
        let end = linger(&mut rx, &mut batch, 4, Duration::from_millis(5), Some((3, &*ahead))).await;
        assert_eq!((end, batch.len()), ("timeout", 2));
        assert!(!ahead.lock().heads_up, "not near yet at 2 of 4");
        tx.send(proposal()).await.unwrap();
        tx.send(proposal()).await.unwrap();
        let seen = ahead.changes.load(std::sync::atomic::Ordering::SeqCst);
        let end = linger(&mut rx, &mut batch, 4, Duration::from_millis(5), Some((3, &*ahead))).await;
        assert_eq!((end, batch.len()), ("full", 4));
        assert!(ahead.lock().heads_up);
        assert_eq!(ahead.changes.load(std::sync::atomic::Ordering::SeqCst), seen + 1, "one wake");
    }

    /// A store in a temporary directory (kept while the first value lives) and its `Ahead`.
    fn store_and_ahead() -> (tempfile::TempDir, Store, Arc<Ahead>) {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(&d.path().join("db"), crate::store::StoreConfig::default()).unwrap();
        let ahead = Ahead::new(store.clone());
        (d, store, ahead)
    }

    fn unanswered() -> Arc<Waiters> {
        let slot = Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap();
        Arc::new(Waiters { inner: Mutex::new(Some((Vec::new(), slot))) })
    }

    /// `n` commands of weight 1 each (see `inline_weight`).
    fn grants(n: usize) -> Arc<Vec<Command>> {
        Arc::new((0..n as i64).map(|id| Command::LeaseGrant { id: id + 1, ttl_s: 10 }).collect())
    }

    fn zk(ops: Vec<crate::command::ZkOp>) -> Command {
        Command::Zk(crate::command::ZkTxn { ops, now_ms: 0, session_id: 1, auth: Vec::new(), ttl_enabled: true })
    }

    /// Goal: while reads happen, the preparer commits the batch it prepared as soon as that
    /// batch is applied, and the state machine is told to leave that commit alone meanwhile;
    /// a batch whose apply does not come in time is left as it is.
    #[test]
    fn the_preparer_commits_its_batch_for_the_readers_once_applied() {
        let (_d, store, ahead) = store_and_ahead();
        let cmds = grants(3);
        let after = store.applies();
        assert!(store.prepare(cmds.clone(), Duration::ZERO, after).unwrap());
        let waiter = {
            let ahead = ahead.clone();
            std::thread::spawn(move || ahead.commit_for_readers_once_applied(after, Duration::from_secs(60)))
        };
        while !ahead.reader_commit_claimed() {
            std::thread::yield_now();
        }
        store.read().unwrap(); // a read since the last commit: the commit is for the readers
        store.write_prepared(false, &cmds, &[]).unwrap().expect("prepared");
        waiter.join().unwrap();
        assert!(!ahead.reader_commit_claimed());
        assert!(!store.wants_commit_for_readers(), "committed by the preparer");

        // No apply comes: the wait ends and the prepared batch stays for its apply.
        let cmds = grants(3);
        let after = store.applies();
        store.read().unwrap();
        assert!(store.prepare(cmds.clone(), Duration::ZERO, after).unwrap());
        ahead.commit_for_readers_once_applied(after, Duration::from_millis(1));
        assert!(!ahead.reader_commit_claimed());
        assert!(store.write_prepared(false, &cmds, &[]).unwrap().is_some(), "still prepared");
    }

    /// Goal: when an apply leaves the applied batches' transaction full and no batch waits to
    /// be prepared, the preparer is given that commit to do (it would otherwise fall on the
    /// next batch's prepare); with a batch waiting, the prepare comes first and the commit is
    /// its own.
    #[test]
    fn the_preparer_commits_a_full_transaction_when_idle() {
        let (_d, store, ahead) = store_and_ahead();
        let put = |v: usize| {
            Arc::new(vec![Command::Put(crate::command::PutOp {
                key: b"k".to_vec(),
                value: v.to_string().into_bytes(),
                ..Default::default()
            })])
        };
        let mut i = 0;
        let mut apply = |ahead: &Ahead| {
            i += 1;
            let cmds = put(i);
            ahead.proposed(1, cmds.clone(), unanswered());
            assert!(store.prepare(cmds.clone(), Duration::ZERO, store.applies()).unwrap());
            let (results, _) = store.write_prepared(false, &cmds, &[]).unwrap().expect("prepared");
            assert!(ahead.applied(1, &cmds, results).is_empty(), "answered here");
        };
        while !store.unsaved_full() {
            assert!(!ahead.lock().commit, "nothing to commit before the transaction is full");
            apply(&ahead);
        }
        assert!(ahead.lock().commit);
        assert!(matches!(ahead.next(), Some(Work::Commit)));
        store.commit_if_full().unwrap();
        assert!(!store.unsaved_full());

        // Full again, and the next batch already proposed: the preparer prepares it.
        while !store.unsaved_full() {
            apply(&ahead);
        }
        // (Heavier than the log store runs inline.)
        let waiting = Arc::new([put(0).as_slice(), put(0).as_slice(), put(0).as_slice()].concat());
        ahead.proposed(1, waiting.clone(), unanswered());
        assert!(matches!(ahead.next(), Some(Work::Prepare(c, _)) if Arc::ptr_eq(&c, &waiting)));
        assert!(!ahead.lock().commit);
    }

    /// Goal: the log store runs what finishes under the device's write of the entry (a set or
    /// two, a lone create or delete), and not the lock recipe's hand-off (a create and a
    /// delete), a longer batch, or work of unbounded size.
    #[test]
    fn only_light_batches_are_run_inline() {
        use crate::command::{CreateMode, ZkOp};
        let set = || zk(vec![ZkOp::SetData { path: "/a".into(), data: None, version: -1 }]);
        let create = || {
            zk(vec![ZkOp::Create {
                path: "/l/n-".into(),
                data: None,
                acl: Vec::new(),
                mode: CreateMode::EphemeralSequential,
                ttl_ms: 0,
            }])
        };
        let delete = || zk(vec![ZkOp::Delete { path: "/l/n-0000000001".into(), version: -1 }]);
        assert!(inline_batch(&[set()]));
        assert!(inline_batch(&[set(), set()]));
        assert!(!inline_batch(&[set(), set(), set()]));
        assert!(inline_batch(&[create()]));
        assert!(inline_batch(&[delete()]));
        assert!(!inline_batch(&[create(), delete()]), "the lock hand-off's entry");
        assert!(!inline_batch(&[zk(vec![ZkOp::SetData { path: "/a".into(), data: None, version: -1 }; 3])]));
        assert!(!inline_batch(&[Command::LeaseRevoke { id: 1 }]));
        assert!(!inline_batch(&[Command::Compact { revision: 2 }]));
        assert!(inline_batch(&grants(INLINE_PREPARE_WEIGHT_MAX)));
        assert!(!inline_batch(&grants(INLINE_PREPARE_WEIGHT_MAX + 1)));
    }

    /// Goal: a light batch is run by the log store, exactly once, and never handed to the
    /// preparer thread; a heavier one, or a light one that cannot start when its entry is
    /// written, is the preparer's.
    /// Method: propose batches and look at what `take_inline` returns and what the queue
    /// lets the preparer start.
    #[test]
    fn small_batches_run_in_the_log_store_and_the_rest_in_the_preparer() {
        let (_d, store, ahead) = store_and_ahead();
        let preparer_may_start = |ahead: &Ahead| {
            let guard = ahead.lock();
            guard.jobs.front().is_some_and(|j| !j.started && !j.inline && j.after.is_some())
        };

        let small = grants(INLINE_PREPARE_WEIGHT_MAX);
        ahead.proposed(1, small.clone(), unanswered());
        assert!(!preparer_may_start(&ahead));
        // Equal commands in another batch are not this proposal.
        assert_eq!(ahead.take_inline(&grants(INLINE_PREPARE_WEIGHT_MAX)), None);
        let (commands, after) = ahead.take_inline(&small).expect("the oldest light batch starts here");
        assert!(Arc::ptr_eq(&commands, &small));
        assert_eq!(after, store.applies());
        assert_eq!(ahead.take_inline(&small), None, "started once only");
        assert!(!preparer_may_start(&ahead));

        // Behind it, a large batch is the preparer's, once the small one is applied.
        let large = grants(INLINE_PREPARE_WEIGHT_MAX + 1);
        ahead.proposed(1, large.clone(), unanswered());
        assert_eq!(ahead.take_inline(&large), None);
        // And a light one behind that cannot start when its entry is written: the preparer's.
        let late = grants(1);
        ahead.proposed(1, late.clone(), unanswered());
        assert_eq!(ahead.take_inline(&late), None);
        assert!(!preparer_may_start(&ahead));
        let results =
            vec![Applied { revision: 1, result: Err(crate::command::ApplyError::LeaseNotFound) }; small.len()];
        assert!(ahead.applied(1, &small, results).is_empty(), "answered by the queue");
        assert!(preparer_may_start(&ahead));
        assert_eq!(ahead.lock().jobs.iter().map(|j| j.inline).collect::<Vec<_>>(), [false, false]);
    }

    /// Goal: the applied log id the log store records for a proposed batch is what the
    /// preparer writes ahead for exactly that batch (not for equal commands of another), and a
    /// batch the log store has not reached yet gets no rows.
    #[test]
    fn the_log_id_of_a_proposal_reaches_its_prepare() {
        let (_d, store, ahead) = store_and_ahead();
        let batch = grants(3);
        ahead.proposed(1, batch.clone(), unanswered());
        assert!(ahead.logged_rows(&batch).is_empty(), "not logged yet");
        let row = state_machine::applied_row(openraft::LogId::new(openraft::CommittedLeaderId::new(1, 1), 7));
        ahead.logged(&grants(3), vec![row.clone()]);
        assert!(ahead.logged_rows(&batch).is_empty(), "equal commands of another batch");
        ahead.logged(&batch, vec![row.clone()]);
        assert_eq!(ahead.logged_rows(&batch), vec![row.clone()]);

        let after = store.applies();
        assert!(store.prepare_logged(batch.clone(), Duration::ZERO, after, || ahead.logged_rows(&batch)).unwrap());
        let (key, value) = row;
        let applied = store.write_prepared(false, &batch, &[(key.as_str(), value.as_slice())]).unwrap();
        assert!(applied.is_some());
        assert_eq!(store.meta_get(&key).unwrap(), Some(value));
    }

    /// Goal: the lock recipe's hand-off settles into one entry per hand-off (the released
    /// holder's create and the next holder's delete), while a closed-loop group that a slow
    /// writer split merges back without waiting for more writers than it has.
    /// Method: feed `Grouping` the entries each pattern forms and look at the targets.
    #[test]
    fn late_commands_are_waited_for_once_and_merged_groups_are_not() {
        // Lock recipe, one command per entry: a create formed at once (previous: a delete,
        // whose writer comes back), and the next holder's delete came during its flight.
        let mut g = Grouping::default();
        assert_eq!(g.target(false, 1), 0);
        g.formed(false, 1, true, 1); // create
        assert_eq!(g.target(true, 1), 2, "the delete waited: its own and the create's writer");
        g.formed(true, 1, false, 1); // the creator waits for the lock: timed out
                                     // The next create formed at once also waits for the delete that will come late.
        assert_eq!(g.target(false, 1), 2);
        g.formed(false, 1, true, 2); // create + delete in one entry
                                     // From then on the previous entry's two writers are the target, nothing more.
        for _ in 0..3 {
            assert_eq!(g.target(false, 1), 2);
            g.formed(false, 1, true, 2);
        }

        // 16 closed-loop writers, one slow: 15 formed at once, the slow one came during the
        // flight and the 15 joined it (filled): one group of 16 again, no extra wait.
        let mut g = Grouping::default();
        g.formed(false, 16, true, 16);
        assert_eq!(g.target(false, 1), 16);
        g.formed(false, 15, false, 15);
        assert_eq!(g.target(true, 1), 16);
        g.formed(true, 1, true, 16);
        assert_eq!(g.target(false, 1), 16);
    }

    #[test]
    fn lingering_stops_where_writers_do_not_come_back_and_is_tried_again() {
        let mut s = LingerState::new(Linger::default());
        assert!(s.allowed());
        // Timeouts halve the credit: after a few in a row lingering is off...
        while s.credit > 0 {
            s.ended(false);
        }
        let mut skipped = 0;
        while !s.allowed() {
            skipped += 1;
        }
        // ...for LINGER_RETRY_ENTRIES entries, then one linger probes again.
        assert_eq!(skipped, LINGER_RETRY_ENTRIES - 1);
        s.ended(true);
        assert!(s.allowed());
        for _ in 0..100 {
            s.ended(true);
        }
        assert_eq!(s.credit, LINGER_CREDIT_MAX);
        assert!(!LingerState::new(Linger::OFF).allowed());
    }
}
