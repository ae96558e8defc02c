//! ZooKeeper watches, fed by the one watch hub (a tap: every applied revision, in order).
//!
//! ZooKeeper's WatchManager semantics: data and exist watches share the data table, child
//! watches have their own; a standard watch fires once and is removed, a persistent one stays
//! (and also hears child changes), a persistent recursive one hears creates, deletes and data
//! changes of the whole subtree but no child-list changes. A connection gets one notification
//! per (path, event) even if several of its watches match (ZooKeeper suppresses the duplicate).
//!
//! Ordering (ZooKeeper's guarantee: a client sees a watch event before any reply that shows the
//! change). Every notification goes into its connection's queue from the tap, i.e. before the
//! revision is marked published; a connection writes queued notifications before each reply
//! and, before replying with zxid R, waits until R is published. Registration is atomic with the
//! read that arms it: the read and the registration happen under this table's lock, which the
//! tap also takes, and a watch ignores events at or below the revision its read saw.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{mpsc, Notify};

use super::proto::{event_type, keeper_state, notification};
use crate::command::{Event, EventKind};
use crate::store::znode::{is_special, java_children_order, java_hash, java_table_after_add, parent_of, path_of};

pub type ConnId = u64;

/// Which table a request targets (ZooKeeper's WatcherType for check/removeWatches).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Data,
    Child,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// One-shot; ignores events at or below the revision its read saw.
    Standard {
        armed_after: i64,
    },
    Persistent,
    Recursive,
}

/// One notification queued for a connection: the encoded payload (without length prefix), and
/// the revision it belongs to (the change's, or the view's for setWatches). Its header carries
/// zxid -1, as ZooKeeper's does, so the connection learns the order from `revision`: ZooKeeper
/// sends an event as it applies the change, so between the replies of the requests applied
/// before and after it (see `session_loop`).
#[derive(Debug)]
pub struct Notification {
    pub revision: i64,
    pub frame: Vec<u8>,
}

struct Conn {
    tx: mpsc::Sender<Notification>,
    /// Set when the queue overflowed: the connection must close (its client will reconnect
    /// and re-arm its watches with setWatches, which reports what it missed).
    overflowed: Arc<std::sync::atomic::AtomicBool>,
    /// The session's identities (scheme, id), for the READ check on each event.
    auth: Arc<Vec<(String, String)>>,
}

/// The ACLs that gate a publish's events, by path and revision (see `Effects::zk_acls`); a
/// path not in it at an event's revision is readable by anyone then.
type GateAcls<'a> = &'a [crate::command::ReadGate];

/// The order a `java.util.HashMap` (or `HashSet`) of strings made with the default 16 buckets
/// iterates its keys in: by bucket (`java_hash & (buckets - 1)`), then by when each key went
/// in (a bucket is a list a new key is appended to; a resize keeps each list's order; a
/// removal leaves the others where they are). The table grows as `java_table_after_add`
/// says and never shrinks. Not modelled: a bucket turned into a tree (9+ keys in one bucket
/// of a table of 64+ buckets), which tables of watched paths all but never have.
#[derive(Default)]
struct JavaKeyOrder {
    buckets: u32,
    next: u64,
    /// Each key's insertion stamp and spread Java hash.
    stamps: HashMap<String, (u64, u32)>,
}

impl JavaKeyOrder {
    const INITIAL_BUCKETS: u32 = 16;

    fn insert(&mut self, key: &str) {
        if self.stamps.contains_key(key) {
            return;
        }
        let size = u32::try_from(self.stamps.len()).unwrap_or(u32::MAX);
        let h = java_hash(key);
        let stamps = &self.stamps;
        let in_bucket = |cap: u32| Ok(stamps.values().filter(|(_, k)| k & (cap - 1) == h & (cap - 1)).count() as u32);
        self.buckets = java_table_after_add(Self::INITIAL_BUCKETS, self.buckets, size, in_bucket)
            .expect("counting a bucket cannot fail");
        self.stamps.insert(key.to_string(), (self.next, h));
        self.next += 1;
    }

    fn remove(&mut self, key: &str) {
        self.stamps.remove(key);
    }

    /// The keys in iteration order: the order getChildren lists a node's children in, whose
    /// rule `java_children_order` keeps.
    fn ordered(&self) -> Vec<&str> {
        let mut keys: Vec<(&str, u64)> = self.stamps.iter().map(|(k, (stamp, _))| (k.as_str(), *stamp)).collect();
        java_children_order(&mut keys, self.buckets.max(Self::INITIAL_BUCKETS), |k| k.0, |k| k.1);
        keys.into_iter().map(|(k, _)| k).collect()
    }
}

#[derive(Default)]
struct Inner {
    data: HashMap<String, HashMap<ConnId, Mode>>,
    child: HashMap<String, HashMap<ConnId, Mode>>,
    recursive_count: usize,
    conns: HashMap<ConnId, Conn>,
    watch_count: usize,
    /// The data table's paths in the order of ZooKeeper's `watchTable` (wchp lists them so).
    data_paths: JavaKeyOrder,
    /// Each connection's data-table paths in the order of its set in ZooKeeper's
    /// `watch2Paths` (wchc lists them so). A connection that armed a data watch keeps its set
    /// after its last watch fired or went, until it closes, as ZooKeeper's WatchManager keeps
    /// the (then empty) set: wchs and wchc list such a connection with no paths.
    conn_paths: HashMap<ConnId, JavaKeyOrder>,
}

impl Inner {
    /// `conn`'s watch on `path` left the data table (fired, removed, or its connection went);
    /// `path_left` says whether that emptied the path's watcher set.
    fn data_watch_gone(&mut self, conn: ConnId, path: &str, path_left: bool) {
        if let Some(paths) = self.conn_paths.get_mut(&conn) {
            paths.remove(path);
        }
        if path_left {
            self.data_paths.remove(path);
        }
    }
}

pub struct WatchTable {
    inner: Mutex<Inner>,
    published: AtomicI64,
    published_notify: Notify,
    /// Most watches one connection may hold.
    pub watches_per_conn_max: usize,
}

/// A locked table: reads that arm watches run while holding it.
pub struct Guard<'a> {
    inner: MutexGuard<'a, Inner>,
}

impl WatchTable {
    pub fn new(revision: i64, watches_per_conn_max: usize) -> Arc<WatchTable> {
        Arc::new(WatchTable {
            inner: Mutex::new(Inner::default()),
            published: AtomicI64::new(revision),
            published_notify: Notify::new(),
            watches_per_conn_max,
        })
    }

    pub fn lock(&self) -> Guard<'_> {
        Guard { inner: self.inner.lock().unwrap_or_else(|p| p.into_inner()) }
    }

    pub fn register_conn(&self, id: ConnId, tx: mpsc::Sender<Notification>) -> Arc<std::sync::atomic::AtomicBool> {
        let overflowed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        self.lock().inner.conns.insert(id, Conn { tx, overflowed: overflowed.clone(), auth: Arc::new(Vec::new()) });
        overflowed
    }

    /// The connection's identities changed (addauth, SASL, or its address at the start).
    pub fn set_auth(&self, id: ConnId, auth: Arc<Vec<(String, String)>>) {
        if let Some(c) = self.lock().inner.conns.get_mut(&id) {
            c.auth = auth;
        }
    }

    /// Drops a connection and every watch it held.
    pub fn remove_conn(&self, id: ConnId) {
        let mut g = self.lock();
        let inner = &mut *g.inner;
        inner.conns.remove(&id);
        if let Some(paths) = inner.conn_paths.remove(&id) {
            for path in paths.stamps.keys() {
                if inner.data.get(path).is_some_and(|m| m.len() == 1 && m.contains_key(&id)) {
                    inner.data_paths.remove(path);
                }
            }
        }
        for table in [&mut inner.data, &mut inner.child] {
            table.retain(|_, m| {
                if let Some(mode) = m.remove(&id) {
                    inner.watch_count -= 1;
                    if mode == Mode::Recursive {
                        inner.recursive_count -= 1;
                    }
                }
                !m.is_empty()
            });
        }
    }

    /// The highest revision whose events have all been dispatched.
    pub fn published(&self) -> i64 {
        self.published.load(Ordering::Acquire)
    }

    /// Waits until every event up to `revision` is dispatched (see the module comment).
    pub async fn wait_published(&self, revision: i64) {
        loop {
            let notified = self.published_notify.notified();
            if self.published() >= revision {
                return;
            }
            // The tap runs right after the commit that made `revision` readable; this wait is
            // normally microseconds. The timeout only guards against a lost wakeup.
            let _ = tokio::time::timeout(std::time::Duration::from_millis(50), notified).await;
        }
    }

    /// The hub's tap: dispatches a revision's znode events, then marks it published.
    /// Dispatches a publish's events. An event goes only to a connection that may READ the
    /// node it names under `acls` (the parent, for NodeChildrenChanged): Debian's ZooKeeper
    /// 3.8.0 carries the fix of CVE-2024-23944 (ZOOKEEPER-4799), which checks this as each
    /// event is sent. A one-shot watch whose event is withheld is used up all the same (the
    /// check comes after the watch table gave it up).
    pub fn on_publish(&self, revision: i64, events: &[Event], acls: GateAcls<'_>) {
        if events.iter().any(|e| path_of(&e.kv.key).is_some()) {
            let mut g = self.lock();
            // Which change of its path in its revision each event is, for its gate (counted
            // only when there are gates, which few publishes have).
            let mut changes_of: HashMap<(&str, i64), u32> = HashMap::new();
            for e in events {
                let Some(path) = path_of(&e.kv.key) else { continue };
                // One publish holds a whole log entry's changes: each event goes out with its
                // own change's revision (a delete's kv carries the deletion's).
                let at = if e.kv.mod_revision > 0 { e.kv.mod_revision } else { revision };
                let change = if acls.is_empty() {
                    0
                } else {
                    let n = changes_of.entry((path, at)).or_insert(0);
                    *n += 1;
                    *n - 1
                };
                g.dispatch(path, e, at, change, acls);
            }
        }
        self.published.fetch_max(revision, Ordering::AcqRel);
        self.published_notify.notify_waiters();
    }

    pub fn counts(&self) -> (usize, usize, usize) {
        let g = self.lock();
        (g.inner.conns.len(), g.inner.data.len() + g.inner.child.len(), g.inner.watch_count)
    }

    /// (connection, paths) for the wchs and wchc words: as ZooKeeper 3.8 prints them, the data
    /// table only (data, exist, persistent and persistent recursive watches; child watches are
    /// left out), with every connection that has had one (see `conn_paths`), each connection's
    /// paths in the order of its Java set. Connections come by id: ZooKeeper's come in the
    /// identity-hash order of their objects, which no client can predict.
    pub fn by_conn(&self) -> Vec<(ConnId, Vec<String>)> {
        let g = self.lock();
        let mut out: Vec<(ConnId, Vec<String>)> = g
            .inner
            .conn_paths
            .iter()
            .map(|(c, paths)| (*c, paths.ordered().into_iter().map(str::to_string).collect()))
            .collect();
        out.sort();
        out
    }

    /// (path, connections) for the wchp word: the data table's paths in the order of
    /// ZooKeeper's `watchTable`, each path's connections by id (ZooKeeper's: identity-hash
    /// order, as in `by_conn`).
    pub fn by_path(&self) -> Vec<(String, Vec<ConnId>)> {
        let g = self.lock();
        g.inner
            .data_paths
            .ordered()
            .into_iter()
            .map(|p| {
                let mut conns: Vec<ConnId> =
                    g.inner.data.get(p).map(|m| m.keys().copied().collect()).unwrap_or_default();
                conns.sort();
                (p.to_string(), conns)
            })
            .collect()
    }
}

/// Events a change produces: (table, path, event type).
fn triggers(path: &str, e: &Event) -> Vec<(Kind, String, i32)> {
    // A built-in node's first setData is a put without a previous value, not a creation
    // (`is_special`); a client's node under /zookeeper is created like any other.
    match e.kind {
        EventKind::Put if e.prev_kv.is_none() && !is_special(path) => vec![
            (Kind::Data, path.to_string(), event_type::NODE_CREATED),
            (Kind::Child, parent_of(path).to_string(), event_type::NODE_CHILDREN_CHANGED),
        ],
        EventKind::Put => vec![(Kind::Data, path.to_string(), event_type::NODE_DATA_CHANGED)],
        EventKind::Delete => vec![
            (Kind::Data, path.to_string(), event_type::NODE_DELETED),
            (Kind::Child, path.to_string(), event_type::NODE_DELETED),
            (Kind::Child, parent_of(path).to_string(), event_type::NODE_CHILDREN_CHANGED),
        ],
    }
}

/// The ACL that gates an event of type `ty` on `target` (see `ReadGate`): a child list's
/// event is checked against its node's ACL, any other event against the ACL of the node as the
/// event's own change (`change`, the how-manieth of the path's in `revision`) saw it.
fn gate_of<'a>(
    acls: GateAcls<'a>,
    revision: i64,
    target: &str,
    ty: i32,
    change: u32,
) -> Option<&'a [crate::command::ZkAcl]> {
    let change = (ty != event_type::NODE_CHILDREN_CHANGED).then_some(change);
    acls.iter().find(|g| g.revision == revision && g.change == change && g.path == target).map(|g| g.acl.as_slice())
}

impl Guard<'_> {
    fn dispatch(&mut self, path: &str, e: &Event, revision: i64, change: u32, acls: GateAcls<'_>) {
        // ZooKeeper hands the recipients of a path's data trigger to the child trigger of the
        // same path and event, so a connection hears NodeDeleted once.
        let mut notified: HashSet<ConnId> = HashSet::new();
        let mut last: Option<(String, i32)> = None;
        for (kind, target, ty) in triggers(path, e) {
            if last.as_ref() != Some(&(target.clone(), ty)) {
                notified.clear();
            }
            let gate = gate_of(acls, revision, &target, ty, change);
            self.trigger(kind, &target, ty, revision, &mut notified, gate);
            last = Some((target, ty));
        }
    }

    fn trigger(
        &mut self,
        kind: Kind,
        path: &str,
        ty: i32,
        revision: i64,
        notified: &mut HashSet<ConnId>,
        gate: Option<&[crate::command::ZkAcl]>,
    ) {
        let inner = &mut *self.inner;
        let mut hits: Vec<ConnId> = Vec::new();
        let table = match kind {
            Kind::Data => &mut inner.data,
            Kind::Child => &mut inner.child,
        };
        // One-shot watches used up here: they leave the table.
        let mut spent: Vec<ConnId> = Vec::new();
        let mut path_left = false;
        if let Some(watchers) = table.get_mut(path) {
            watchers.retain(|conn, mode| match *mode {
                Mode::Standard { armed_after } => {
                    if revision <= armed_after {
                        return true;
                    }
                    hits.push(*conn);
                    spent.push(*conn);
                    inner.watch_count -= 1;
                    false
                }
                Mode::Persistent => {
                    hits.push(*conn);
                    true
                }
                // Recursive watches are matched below, by ancestry, never for child lists.
                Mode::Recursive => {
                    if ty != event_type::NODE_CHILDREN_CHANGED {
                        hits.push(*conn);
                    }
                    true
                }
            });
            if watchers.is_empty() {
                table.remove(path);
                path_left = true;
            }
        }
        if kind == Kind::Data {
            for conn in spent {
                inner.data_watch_gone(conn, path, path_left);
            }
        }
        // Recursive watches on the path's ancestors, in this table (the child table's matter
        // only once the data table's twin was removed: the `notified` set drops repeats).
        if inner.recursive_count > 0 && ty != event_type::NODE_CHILDREN_CHANGED {
            let table = match kind {
                Kind::Data => &inner.data,
                Kind::Child => &inner.child,
            };
            let mut at = path;
            while at != "/" {
                at = parent_of(at);
                if let Some(w) = table.get(at) {
                    hits.extend(w.iter().filter(|(_, m)| **m == Mode::Recursive).map(|(c, _)| *c));
                }
            }
        }
        for conn in hits {
            if !notified.insert(conn) {
                continue;
            }
            if let Some(c) = inner.conns.get(&conn) {
                if gate
                    .is_some_and(|acl| !crate::store::znode::acl_allows(acl, crate::store::znode::perms::READ, &c.auth))
                {
                    continue;
                }
                let n = Notification { revision, frame: notification(-1, ty, keeper_state::SYNC_CONNECTED, path) };
                if c.tx.try_send(n).is_err() {
                    c.overflowed.store(true, Ordering::Release);
                }
            }
        }
    }

    fn add(&mut self, conn: ConnId, kind: Kind, path: &str, mode: Mode, max: usize) -> bool {
        let inner = &mut *self.inner;
        let table = match kind {
            Kind::Data => &mut inner.data,
            Kind::Child => &mut inner.child,
        };
        let new_path = !table.contains_key(path);
        let old = table.get(path).and_then(|m| m.get(&conn).copied());
        // Refused before the path gets an entry: an empty watcher set must not stay behind.
        if old.is_none() && inner.watch_count >= max.saturating_mul(inner.conns.len().max(1)) {
            return false;
        }
        match old {
            Some(Mode::Recursive) => inner.recursive_count -= 1,
            Some(_) => {}
            None => inner.watch_count += 1,
        }
        if mode == Mode::Recursive {
            inner.recursive_count += 1;
        }
        table.entry(path.to_string()).or_default().insert(conn, mode);
        if kind == Kind::Data {
            if new_path {
                inner.data_paths.insert(path);
            }
            inner.conn_paths.entry(conn).or_default().insert(path);
        }
        true
    }

    /// A one-shot watch armed by a read at revision `read_rev`.
    pub fn add_standard(&mut self, conn: ConnId, kind: Kind, path: &str, read_rev: i64, max: usize) -> bool {
        self.add(conn, kind, path, Mode::Standard { armed_after: read_rev }, max)
    }

    /// addWatch: mode 0 persistent (data and child tables), 1 persistent recursive (data only).
    pub fn add_persistent(&mut self, conn: ConnId, path: &str, recursive: bool, max: usize) -> bool {
        // ZooKeeper 3.8.0's DataTree.addWatch puts both modes in both tables. A recursive
        // watch's child-table entry fires no event the data-table one does not already (never
        // NodeChildrenChanged), but check/removeWatches of type Children find it, it can be
        // removed on its own, and mntr's zk_watch_count counts it.
        let mode = if recursive { Mode::Recursive } else { Mode::Persistent };
        self.add(conn, Kind::Data, path, mode, max) && self.add(conn, Kind::Child, path, mode, max)
    }

    /// check/removeWatches: `watch_type` 1 children, 2 data, 3 any. Returns whether a watch
    /// was there (ZooKeeper answers NoWatcher otherwise). removeWatches removes `conn`'s own
    /// watches. checkWatches answers as ZooKeeper 3.8.0's `WatchManager.containsWatcher` does:
    /// true when ANY connection watches exactly `path` in that table (it tests the path's
    /// watcher set for null, not for this watcher), and the recursive-mode test it adds can only
    /// hold when that set is not empty.
    pub fn has_or_remove(&mut self, conn: ConnId, path: &str, watch_type: i32, remove: bool) -> bool {
        let kinds: &[Kind] = match watch_type {
            1 => &[Kind::Child],
            2 => &[Kind::Data],
            _ => &[Kind::Data, Kind::Child],
        };
        let inner = &mut *self.inner;
        let mut found = false;
        for kind in kinds {
            let table = match kind {
                Kind::Data => &mut inner.data,
                Kind::Child => &mut inner.child,
            };
            let Some(m) = table.get_mut(path) else { continue };
            if remove {
                let removed = m.remove(&conn);
                if let Some(mode) = removed {
                    found = true;
                    inner.watch_count -= 1;
                    if mode == Mode::Recursive {
                        inner.recursive_count -= 1;
                    }
                }
                let path_left = m.is_empty();
                if path_left {
                    table.remove(path);
                }
                if removed.is_some() && *kind == Kind::Data {
                    inner.data_watch_gone(conn, path, path_left);
                }
            } else if !m.is_empty() {
                found = true;
            }
        }
        found
    }

    /// Queues a notification for `conn` now (setWatches reporting a missed change, as of the
    /// view at `revision`).
    pub fn notify_now(&self, conn: ConnId, ty: i32, path: &str, revision: i64) {
        if let Some(c) = self.inner.conns.get(&conn) {
            let n = Notification { revision, frame: notification(-1, ty, keeper_state::SYNC_CONNECTED, path) };
            if c.tx.try_send(n).is_err() {
                c.overflowed.store(true, Ordering::Release);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::KeyValue;

    /// Orders printed by a Java 17 `HashSet<String>` built the same way (`String.join(",", s)`).
    #[test]
    fn java_key_order_is_a_java_hash_sets() {
        let mut s = JavaKeyOrder::default();
        for i in 0..30 {
            s.insert(&format!("/p/n{i}"));
        }
        for i in (0..30).step_by(3) {
            s.remove(&format!("/p/n{i}"));
        }
        for k in ["/p/n0", "/", "/zookeeper", "/\u{e9}"] {
            s.insert(k);
        }
        assert_eq!(
            s.ordered().join(","),
            "/p/n20,/p/n16,/p/n17,/p/n11,/p/n14,/p/n13,/zookeeper,/\u{e9},/p/n19,/p/n10,/,/p/n8,/p/n26,\
             /p/n29,/p/n28,/p/n23,/p/n22,/p/n25,/p/n1,/p/n0,/p/n2,/p/n5,/p/n4,/p/n7"
        );
        let mut t = JavaKeyOrder::default();
        for k in ["/b", "/a", "/c", "/s/a/x", "/s"] {
            t.insert(k);
        }
        t.remove("/b");
        t.insert("/b");
        t.insert("/a"); // already there: stays where it is
        assert_eq!(t.ordered().join(","), "/s/a/x,/a,/b,/c,/s");
    }

    /// The table's view for the words stays consistent as watches come, fire, are removed,
    /// are refused at the bound, and as a connection goes.
    #[test]
    fn watch_words_follow_the_table() {
        let t = WatchTable::new(1, 2);
        let (tx1, _rx1) = mpsc::channel(16);
        let (tx2, _rx2) = mpsc::channel(16);
        t.register_conn(1, tx1);
        t.register_conn(2, tx2);
        {
            let mut g = t.lock();
            assert!(g.add_standard(1, Kind::Data, "/b", 1, 2));
            assert!(g.add_standard(1, Kind::Data, "/a", 1, 2));
            assert!(g.add_standard(2, Kind::Data, "/a", 1, 2));
            assert!(g.add_standard(2, Kind::Data, "/c", 1, 2));
            // Four watches of two connections at two each: the table is full.
            assert!(!g.add_standard(1, Kind::Data, "/d", 1, 2), "refused at the bound");
            assert!(!g.has_or_remove(1, "/d", 2, false), "a refused path leaves no entry");
        }
        let by_path = |v: &[(&str, &[ConnId])]| v.iter().map(|(p, c)| (p.to_string(), c.to_vec())).collect::<Vec<_>>();
        assert_eq!(t.by_path(), by_path(&[("/a", &[1, 2]), ("/b", &[1]), ("/c", &[2])]));
        // /b fires (conn 1's one-shot), conn 2 removes /a: conn 1 keeps /a, /b leaves.
        t.on_publish(2, &[ev(EventKind::Put, "/b", 2, false)], &[]);
        assert!(t.lock().has_or_remove(2, "/a", 2, true));
        assert_eq!(t.by_conn(), vec![(1, vec!["/a".to_string()]), (2, vec!["/c".to_string()])]);
        assert_eq!(t.by_path(), by_path(&[("/a", &[1]), ("/c", &[2])]));
        // Conn 2 goes with its last watch: /c leaves the path table; conn 1 stays listed with
        // no paths once its last watch fires.
        t.remove_conn(2);
        t.on_publish(3, &[ev(EventKind::Put, "/a", 3, false)], &[]);
        assert_eq!(t.by_conn(), vec![(1, Vec::<String>::new())]);
        assert!(t.by_path().is_empty());
    }

    fn ev(kind: EventKind, path: &str, rev: i64, created: bool) -> Event {
        let key = [b"/zk".as_slice(), path.as_bytes()].concat();
        let kv = KeyValue { key: key.clone(), mod_revision: rev, ..Default::default() };
        let prev_kv =
            if created || kind == EventKind::Delete { None } else { Some(KeyValue { key, ..Default::default() }) };
        Event { kind, kv, prev_kv }
    }

    /// (event type, path) of every queued notification.
    fn drain(rx: &mut mpsc::Receiver<Notification>) -> Vec<(i32, String)> {
        let mut out = Vec::new();
        while let Ok(n) = rx.try_recv() {
            let mut r = super::super::jute::Reader::new(&n.frame);
            let (_xid, _zxid, _err) = (r.int().unwrap(), r.long().unwrap(), r.int().unwrap());
            let ty = r.int().unwrap();
            let _state = r.int().unwrap();
            out.push((ty, r.ustring().unwrap()));
        }
        out
    }

    /// Goal: ZooKeeper's WatchManager semantics. Method: arm watches of each kind on one
    /// connection, publish changes, and compare the queued notifications.
    #[test]
    fn one_shot_persistent_and_recursive_watches() {
        let t = WatchTable::new(1, 100);
        let (tx, mut rx) = mpsc::channel(100);
        t.register_conn(1, tx);
        {
            let mut g = t.lock();
            g.add_standard(1, Kind::Data, "/a", 1, 100);
            g.add_standard(1, Kind::Child, "/a", 1, 100);
            g.add_standard(1, Kind::Child, "/", 1, 100);
            g.add_persistent(1, "/p", false, 100);
            g.add_persistent(1, "/r", true, 100);
        }
        // An event at or below the arming read's revision is one the read already saw.
        t.on_publish(1, &[ev(EventKind::Put, "/a", 1, false)], &[]);
        assert!(drain(&mut rx).is_empty());
        // Deleting /a: one NodeDeleted for /a (data and child watch together), and the root's
        // child watch; then both one-shot watches of /a are gone.
        t.on_publish(2, &[ev(EventKind::Delete, "/a", 2, false)], &[]);
        assert_eq!(
            drain(&mut rx),
            [(event_type::NODE_DELETED, "/a".into()), (event_type::NODE_CHILDREN_CHANGED, "/".into())]
        );
        t.on_publish(3, &[ev(EventKind::Put, "/a", 3, true)], &[]);
        assert!(drain(&mut rx).is_empty(), "one-shot watches fired once");
        // Persistent: data and child changes, every time.
        t.on_publish(4, &[ev(EventKind::Put, "/p", 4, false), ev(EventKind::Put, "/p/c", 4, true)], &[]);
        t.on_publish(5, &[ev(EventKind::Put, "/p", 5, false)], &[]);
        assert_eq!(
            drain(&mut rx),
            [
                (event_type::NODE_DATA_CHANGED, "/p".into()),
                (event_type::NODE_CHILDREN_CHANGED, "/p".into()),
                (event_type::NODE_DATA_CHANGED, "/p".into())
            ]
        );
        // Recursive: the whole subtree's creates, changes and deletes, no child-list events.
        t.on_publish(6, &[ev(EventKind::Put, "/r/x/y", 6, true), ev(EventKind::Delete, "/r/x/y", 6, false)], &[]);
        assert_eq!(
            drain(&mut rx),
            [(event_type::NODE_CREATED, "/r/x/y".into()), (event_type::NODE_DELETED, "/r/x/y".into())]
        );
        assert_eq!(t.published(), 6);
        // As in ZooKeeper 3.8.0, a recursive watch sits in both tables: checkWatches of type
        // Children finds it, and with its data entry removed, its child entry still hears the
        // subtree's deletes (only those).
        {
            let mut g = t.lock();
            assert!(g.has_or_remove(1, "/r", 1, false));
            assert!(g.has_or_remove(1, "/r", 2, true));
            assert!(!g.has_or_remove(1, "/r", 2, false));
            assert!(g.has_or_remove(1, "/r", 1, false));
        }
        t.on_publish(7, &[ev(EventKind::Put, "/r/z", 7, true), ev(EventKind::Delete, "/r/z", 7, false)], &[]);
        assert_eq!(drain(&mut rx), [(event_type::NODE_DELETED, "/r/z".into())]);
        // checkWatches answers for ANY connection's watch on the path (ZooKeeper's
        // containsWatcher tests the path's watcher set, not this watcher); removeWatches only
        // removes the asking connection's.
        {
            let mut g = t.lock();
            assert!(g.has_or_remove(2, "/p", 3, false));
            assert!(!g.has_or_remove(2, "/p", 3, true));
        }
        t.remove_conn(1);
        assert_eq!(t.counts(), (0, 0, 0));
    }

    /// Goal: an event goes only to a connection that may READ the node under the ACL the
    /// apply recorded (the parent's for a child change); a withheld one-shot watch is used up.
    #[test]
    fn events_are_gated_by_read_acls() {
        let t = WatchTable::new(1, 100);
        let (tx1, mut rx1) = mpsc::channel(100);
        let (tx2, mut rx2) = mpsc::channel(100);
        t.register_conn(1, tx1);
        t.register_conn(2, tx2);
        t.set_auth(2, Arc::new(vec![("digest".into(), "u:hash".into())]));
        {
            let mut g = t.lock();
            for conn in [1, 2] {
                g.add_standard(conn, Kind::Data, "/a", 0, 100);
                g.add_persistent(conn, "/p", false, 100);
            }
        }
        let only_u = Arc::new(vec![crate::command::ZkAcl { perms: 31, scheme: "digest".into(), id: "u:hash".into() }]);
        let gate = |path: &str, acl: &Arc<Vec<crate::command::ZkAcl>>, change| crate::command::ReadGate {
            path: path.into(),
            acl: acl.clone(),
            revision: 1,
            change,
        };
        let acls = vec![gate("/a", &only_u, Some(0)), gate("/p", &only_u, None)];
        t.on_publish(1, &[ev(EventKind::Put, "/a", 1, false), ev(EventKind::Put, "/p/c", 1, true)], &acls);
        assert!(drain(&mut rx1).is_empty(), "conn 1 may not read /a or /p");
        assert_eq!(
            drain(&mut rx2),
            [(event_type::NODE_DATA_CHANGED, "/a".into()), (event_type::NODE_CHILDREN_CHANGED, "/p".into())]
        );
        // conn 1's one-shot watch on /a is gone although it heard nothing; without a gate the
        // persistent one still speaks.
        t.on_publish(2, &[ev(EventKind::Put, "/a", 2, false), ev(EventKind::Put, "/p/d", 2, true)], &[]);
        assert_eq!(drain(&mut rx1), [(event_type::NODE_CHILDREN_CHANGED, "/p".into())]);
    }

    /// Goal: when one revision changes a node several times (a multi that deletes it, creates
    /// it again and deletes it once more), each event is gated by the ACL its own change saw,
    /// as ZooKeeper checks each while applying its op. Method: gates by change index.
    #[test]
    fn each_change_of_a_path_in_one_revision_has_its_own_gate() {
        let t = WatchTable::new(1, 100);
        let (tx, mut rx) = mpsc::channel(100);
        t.register_conn(1, tx);
        t.lock().add_persistent(1, "/n", true, 100);
        let secret = Arc::new(vec![crate::command::ZkAcl { perms: 31, scheme: "digest".into(), id: "u:h".into() }]);
        let gate = |revision: i64, change| crate::command::ReadGate {
            path: "/n/y".into(),
            acl: secret.clone(),
            revision,
            change: Some(change),
        };
        let (delete, create) = (|r| ev(EventKind::Delete, "/n/y", r, false), |r| ev(EventKind::Put, "/n/y", r, true));
        // Secret node deleted, open one created.
        t.on_publish(2, &[delete(2), create(2)], &[gate(2, 0)]);
        assert_eq!(drain(&mut rx), [(event_type::NODE_CREATED, "/n/y".into())]);
        // Open node deleted, secret one created.
        t.on_publish(3, &[delete(3), create(3)], &[gate(3, 1)]);
        assert_eq!(drain(&mut rx), [(event_type::NODE_DELETED, "/n/y".into())]);
        // Secret deleted, open created and deleted.
        t.on_publish(4, &[delete(4), create(4), delete(4)], &[gate(4, 0)]);
        assert_eq!(
            drain(&mut rx),
            [(event_type::NODE_CREATED, "/n/y".into()), (event_type::NODE_DELETED, "/n/y".into())]
        );
    }

    /// Goal: a client's node under /zookeeper is created like any other (its parent's child
    /// watch fires), while a built-in node's first setData (a put with no previous value: the
    /// built-ins have no `kv` row) is a data change. Method: the triggers of both puts.
    #[test]
    fn only_the_built_in_nodes_first_set_is_not_a_creation() {
        let kinds = |path: &str| triggers(path, &ev(EventKind::Put, path, 2, true));
        assert_eq!(
            kinds("/zookeeper/x"),
            [
                (Kind::Data, "/zookeeper/x".into(), event_type::NODE_CREATED),
                (Kind::Child, "/zookeeper".into(), event_type::NODE_CHILDREN_CHANGED)
            ]
        );
        assert_eq!(kinds("/zookeeperx")[1], (Kind::Child, "/".into(), event_type::NODE_CHILDREN_CHANGED));
        for builtin in ["/", "/zookeeper", "/zookeeper/quota"] {
            assert_eq!(kinds(builtin), [(Kind::Data, builtin.into(), event_type::NODE_DATA_CHANGED)]);
        }
    }
}
