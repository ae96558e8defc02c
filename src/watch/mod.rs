//! The watch hub: ONE fan-out of applied changes to every watcher of every protocol.
//!
//! Design (etcd's synced/unsynced split): a watcher is either *synced* — it has seen every
//! revision up to the hub's revision, and [`Hub::publish`] hands it new events directly — or
//! *unsynced* — it is behind (it asked for an old start revision, or its stream's bounded queue
//! was full), and the catch-up task reads its missing events from the store's history, page by
//! page, until it reaches the hub's revision and becomes synced again. Publishing never waits:
//! a full queue only moves a watcher to the unsynced group, so a slow watcher can never block
//! a writer, and it never loses an event, because history in the store is the source of truth.
//!
//! Invariants, per watcher: events are delivered in revision order with no gap and no
//! duplicate; `next_rev` is the first revision not yet delivered; a synced watcher's `next_rev`
//! is above the hub's revision.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, Notify};

use crate::command::{ApplyError, Event, EventKind};
use crate::store::{Error as StoreErr, Store};

pub type StreamId = u64;

#[derive(Clone, Debug, Default)]
pub struct WatchSpec {
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
    /// 0 = from the next revision.
    pub start_revision: i64,
    pub prev_kv: bool,
    pub filter_put: bool,
    pub filter_delete: bool,
    pub progress_notify: bool,
}

/// What the hub sends to a stream. The stream's owner turns it into its protocol's messages.
#[derive(Debug)]
pub enum HubMsg {
    Events {
        watch_id: i64,
        revision: i64,
        events: Vec<Event>,
    },
    /// The watcher's start revision was compacted away; it has been removed.
    Compacted {
        watch_id: i64,
        revision: i64,
        compact_revision: i64,
    },
    /// Every event up to `revision` has been delivered (watch_id -1: for the whole stream).
    Progress {
        watch_id: i64,
        revision: i64,
    },
}

#[derive(Clone, Debug)]
pub struct HubConfig {
    /// Messages queued per stream before its watchers fall back to catch-up.
    pub stream_queue_max: usize,
    /// Events read from history per catch-up step.
    pub catchup_events_max: usize,
    pub watchers_per_stream_max: usize,
    pub streams_max: usize,
    pub progress_notify_interval: Duration,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            stream_queue_max: 256,
            catchup_events_max: 1000,
            watchers_per_stream_max: 10_000,
            streams_max: 10_000,
            progress_notify_interval: Duration::from_secs(600),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WatchError {
    #[error("too many watch streams")]
    TooManyStreams,
    #[error("too many watchers on this stream")]
    TooManyWatchers,
    #[error("watch id already in use")]
    DuplicateId,
}

struct Watcher {
    spec: WatchSpec,
    next_rev: i64,
    synced: bool,
}

struct Stream {
    tx: mpsc::Sender<HubMsg>,
    watchers: HashMap<i64, Watcher>,
}

struct Inner {
    revision: i64,
    streams: HashMap<StreamId, Stream>,
    next_stream_id: StreamId,
    unsynced: usize,
}

/// A synchronous subscriber to every publish (see [`Hub::add_tap`]).
/// Its arguments: the revision, the events, and the READ-gating ACLs of the znodes they name
/// (see [`crate::store::Effects::zk_acls`]).
pub type Tap = Box<dyn Fn(i64, &[Event], &[crate::command::ReadGate]) + Send + Sync>;

pub struct Hub {
    inner: Mutex<Inner>,
    taps: Mutex<Vec<Tap>>,
    store: Store,
    config: HubConfig,
    wake_catchup: Notify,
}

impl Hub {
    pub fn new(store: Store, revision: i64, config: HubConfig) -> Arc<Hub> {
        Arc::new(Hub {
            inner: Mutex::new(Inner { revision, streams: HashMap::new(), next_stream_id: 1, unsynced: 0 }),
            taps: Mutex::new(Vec::new()),
            store,
            config,
            wake_catchup: Notify::new(),
        })
    }

    /// Starts the catch-up and progress-notify tasks; they end when the hub is dropped.
    pub fn spawn_tasks(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(hub) = weak.upgrade() else { return };
                let woken = hub.wake_catchup.notified();
                let more = hub.catch_up_once();
                if !more {
                    let _ = tokio::time::timeout(Duration::from_millis(100), woken).await;
                } else {
                    drop(woken);
                    tokio::task::yield_now().await;
                }
            }
        });
        let weak = Arc::downgrade(self);
        let interval = self.config.progress_notify_interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(hub) = weak.upgrade() else { return };
                hub.notify_progress();
            }
        });
    }

    pub fn revision(&self) -> i64 {
        self.lock().revision
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock would already have stopped the node; the data is
        // still consistent (every mutation is a single field update), so keep serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn open_stream(&self) -> Result<(StreamId, mpsc::Receiver<HubMsg>), WatchError> {
        let mut inner = self.lock();
        if inner.streams.len() >= self.config.streams_max {
            return Err(WatchError::TooManyStreams);
        }
        let (tx, rx) = mpsc::channel(self.config.stream_queue_max);
        let id = inner.next_stream_id;
        inner.next_stream_id += 1;
        inner.streams.insert(id, Stream { tx, watchers: HashMap::new() });
        Ok((id, rx))
    }

    pub fn close_stream(&self, stream: StreamId) {
        let mut inner = self.lock();
        if let Some(s) = inner.streams.remove(&stream) {
            let n = s.watchers.values().filter(|w| !w.synced).count();
            inner.unsynced -= n;
            for _ in s.watchers.values().filter(|w| w.spec.prev_kv) {
                self.store.prev_value_watcher(false);
            }
        }
    }

    pub fn watcher_count(&self) -> usize {
        self.lock().streams.values().map(|s| s.watchers.len()).sum()
    }

    /// Adds a watcher. A start revision at or below the hub's revision makes it unsynced: the
    /// catch-up task replays history first.
    pub fn watch(&self, stream: StreamId, watch_id: i64, spec: WatchSpec) -> Result<(), WatchError> {
        let mut inner = self.lock();
        let revision = inner.revision;
        let s = inner.streams.get_mut(&stream).expect("watch on a closed stream");
        if s.watchers.len() >= self.config.watchers_per_stream_max {
            return Err(WatchError::TooManyWatchers);
        }
        if s.watchers.contains_key(&watch_id) {
            return Err(WatchError::DuplicateId);
        }
        let (next_rev, synced) = if spec.start_revision == 0 || spec.start_revision > revision {
            (spec.start_revision.max(revision + 1), true)
        } else {
            (spec.start_revision, false)
        };
        if spec.prev_kv {
            // Before the watcher can see any publish: writes from now on carry prev values.
            self.store.prev_value_watcher(true);
        }
        s.watchers.insert(watch_id, Watcher { spec, next_rev, synced });
        if !synced {
            inner.unsynced += 1;
            drop(inner);
            self.wake_catchup.notify_one();
        }
        Ok(())
    }

    pub fn cancel(&self, stream: StreamId, watch_id: i64) -> bool {
        let mut inner = self.lock();
        let Some(s) = inner.streams.get_mut(&stream) else {
            return false;
        };
        match s.watchers.remove(&watch_id) {
            Some(w) => {
                if !w.synced {
                    inner.unsynced -= 1;
                }
                if w.spec.prev_kv {
                    self.store.prev_value_watcher(false);
                }
                true
            }
            None => false,
        }
    }

    /// Whether every watcher of the stream has seen everything up to the hub's revision: only
    /// then may a progress notification claim that revision (etcd defers it otherwise).
    pub fn stream_synced(&self, stream: StreamId) -> bool {
        let inner = self.lock();
        inner.streams.get(&stream).is_none_or(|s| s.watchers.values().all(|w| w.synced))
    }

    fn notify_progress(&self) {
        let inner = self.lock();
        for s in inner.streams.values() {
            for (id, w) in &s.watchers {
                if w.synced && w.spec.progress_notify {
                    let _ = s.tx.try_send(HubMsg::Progress { watch_id: *id, revision: inner.revision });
                }
            }
        }
    }

    /// Adds a subscriber that sees every publish, in revision order, inline (before the writes'
    /// proposers get their replies). The ZooKeeper watch table is one: its one-shot watches
    /// need every change as it happens and an ordering point ("everything up to revision R is
    /// dispatched") that a reply at R can wait for. A tap must not block.
    pub fn add_tap(&self, tap: Tap) {
        self.taps.lock().unwrap_or_else(|p| p.into_inner()).push(tap);
    }

    /// Hands the events of an apply to every synced watcher. Never blocks: a full queue moves
    /// the watcher to catch-up. `events` are in revision order and end at `revision`.
    /// `prev_values`: whether put events carry the replaced value in prev_kv (see
    /// [`crate::store::Effects::prev_values`]). When they do not, a prev_kv watcher that
    /// matches a put falls back to catch-up, which reads prev values from history.
    /// `zk_acls`: the ACLs that gate ZooKeeper watch events, handed to the taps.
    pub fn publish(&self, revision: i64, events: &[Event], prev_values: bool, zk_acls: &[crate::command::ReadGate]) {
        for tap in self.taps.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            tap(revision, events, zk_acls);
        }
        let mut guard = self.lock();
        let inner = &mut *guard;
        if revision <= inner.revision && events.is_empty() {
            return;
        }
        inner.revision = inner.revision.max(revision);
        let mut fell_behind = 0;
        for s in inner.streams.values_mut() {
            let mut closed = false;
            for (id, w) in s.watchers.iter_mut() {
                if !w.synced {
                    continue;
                }
                let mine: Vec<Event> = events
                    .iter()
                    .filter(|e| e.revision() >= w.next_rev && wants(&w.spec, e))
                    .map(|e| shape(&w.spec, e))
                    .collect();
                // Only a write that began before this watcher existed can lack prev values.
                if w.spec.prev_kv
                    && !prev_values
                    && mine.iter().any(|e| e.kind == EventKind::Put && e.prev_kv.is_some())
                {
                    w.synced = false;
                    fell_behind += 1;
                    continue;
                }
                if !mine.is_empty() {
                    match s.tx.try_send(HubMsg::Events { watch_id: *id, revision, events: mine }) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            // Keep next_rev: catch-up resends from there.
                            w.synced = false;
                            fell_behind += 1;
                            continue;
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => {
                            closed = true;
                            break;
                        }
                    }
                }
                w.next_rev = w.next_rev.max(revision + 1);
            }
            if closed {
                // The stream's owner is gone; close_stream will remove it.
                continue;
            }
        }
        inner.unsynced += fell_behind;
        drop(guard);
        if fell_behind > 0 {
            self.wake_catchup.notify_one();
        }
    }

    /// One catch-up pass over the unsynced watchers. Returns whether more work is pending.
    fn catch_up_once(&self) -> bool {
        let todo: Vec<(StreamId, i64, WatchSpec, i64)> = {
            let inner = self.lock();
            if inner.unsynced == 0 {
                return false;
            }
            inner
                .streams
                .iter()
                .flat_map(|(sid, s)| {
                    s.watchers.iter().filter(|(_, w)| !w.synced).map(|(id, w)| (*sid, *id, w.spec.clone(), w.next_rev))
                })
                .collect()
        };
        let view = match self.store.read() {
            Ok(v) => v,
            Err(e) => {
                tracing::error!("watch catch-up cannot read the store: {e}");
                return false;
            }
        };
        let mut pending = false;
        for (sid, id, spec, from) in todo {
            let page = view.events(from, &spec.key, &spec.range_end, spec.prev_kv, self.config.catchup_events_max);
            let mut guard = self.lock();
            let inner = &mut *guard;
            let hub_rev = inner.revision;
            let Some(s) = inner.streams.get_mut(&sid) else {
                continue;
            };
            let Some(w) = s.watchers.get_mut(&id) else {
                continue;
            };
            if w.synced || w.next_rev != from {
                continue;
            }
            match page {
                Err(StoreErr::Apply(ApplyError::Compacted)) => {
                    let msg =
                        HubMsg::Compacted { watch_id: id, revision: hub_rev, compact_revision: view.compact_revision };
                    if s.tx.try_send(msg).is_ok() {
                        s.watchers.remove(&id);
                        inner.unsynced -= 1;
                    } else {
                        pending = true;
                    }
                }
                Err(e) => {
                    tracing::error!("watch catch-up read failed: {e}");
                }
                Ok(page) => {
                    let events: Vec<Event> =
                        page.events.iter().filter(|e| wants(&spec, e)).map(|e| shape(&spec, e)).collect();
                    if !events.is_empty() {
                        let msg = HubMsg::Events { watch_id: id, revision: view.revision.max(hub_rev), events };
                        if s.tx.try_send(msg).is_err() {
                            pending = true;
                            continue;
                        }
                    }
                    w.next_rev = page.next_revision.max(w.next_rev);
                    if w.next_rev > hub_rev {
                        w.synced = true;
                        inner.unsynced -= 1;
                    } else {
                        pending = true;
                    }
                }
            }
        }
        pending
    }
}

fn wants(spec: &WatchSpec, e: &Event) -> bool {
    if !crate::store::key_in_range(&e.kv.key, &spec.key, &spec.range_end) {
        return false;
    }
    match e.kind {
        EventKind::Put => !spec.filter_put,
        EventKind::Delete => !spec.filter_delete,
    }
}

fn shape(spec: &WatchSpec, e: &Event) -> Event {
    let mut e = e.clone();
    if !spec.prev_kv {
        e.prev_kv = None;
    }
    e
}
