//! Store tests: etcd's MVCC semantics on small worked examples. Each test states the history
//! it builds and the reads it checks, like etcd's key_index_test.go tables.

use super::*;
use crate::command::*;

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db"), StoreConfig::default()).unwrap();
    (dir, store)
}

fn apply(store: &Store, cmd: Command) -> Applied {
    let (mut r, _) = store.write(true, |tx| Ok(vec![tx.apply(&cmd)?])).unwrap();
    r.pop().unwrap()
}

fn apply_fx(store: &Store, cmd: Command) -> (Applied, Effects) {
    let (mut r, fx) = store.write(true, |tx| Ok(vec![tx.apply(&cmd)?])).unwrap();
    (r.pop().unwrap(), fx)
}

fn put(k: &str, v: &str) -> Command {
    Command::Put(PutOp { key: k.into(), value: v.into(), ..Default::default() })
}

fn put_lease(k: &str, v: &str, lease: i64) -> Command {
    Command::Put(PutOp { key: k.into(), value: v.into(), lease, ..Default::default() })
}

fn del(k: &str, end: &str) -> Command {
    Command::DeleteRange(DeleteOp { key: k.into(), range_end: end.into(), prev_kv: true })
}

fn get_at(store: &Store, k: &str, end: &str, rev: i64) -> Result<RangeResult, ApplyError> {
    let op = RangeOp { key: k.into(), range_end: end.into(), revision: rev, ..Default::default() };
    store.read().unwrap().range(&op).map_err(|e| match e {
        Error::Apply(a) => a,
        Error::Store(s) => panic!("{s}"),
    })
}

fn keys(r: &RangeResult) -> Vec<String> {
    r.kvs.iter().map(|kv| String::from_utf8(kv.key.clone()).unwrap()).collect()
}

fn values(r: &RangeResult) -> Vec<String> {
    r.kvs.iter().map(|kv| String::from_utf8(kv.value.clone()).unwrap()).collect()
}

#[test]
fn revisions_versions_and_tombstones() {
    let (_d, s) = open();
    assert_eq!(apply(&s, put("a", "1")).revision, 2);
    assert_eq!(apply(&s, put("a", "2")).revision, 3);
    assert_eq!(apply(&s, put("b", "x")).revision, 4);
    // Deleting nothing does not consume a revision.
    assert_eq!(apply(&s, del("zzz", "")).revision, 4);
    let d = apply(&s, del("a", ""));
    assert_eq!(d.revision, 5);
    let Ok(Response::DeleteRange(dr)) = d.result else { panic!() };
    assert_eq!(dr.deleted, 1);
    assert_eq!(dr.prev_kvs[0].value, b"2");
    assert_eq!(apply(&s, put("a", "3")).revision, 6);

    let now = get_at(&s, "a", "", 0).unwrap();
    assert_eq!(now.kvs[0].create_revision, 6, "a new generation starts after a tombstone");
    assert_eq!(now.kvs[0].version, 1);
    assert_eq!(now.revision, 6);
    let at2 = get_at(&s, "a", "", 3).unwrap();
    assert_eq!((at2.kvs[0].create_revision, at2.kvs[0].mod_revision, at2.kvs[0].version), (2, 3, 2));
    assert!(get_at(&s, "a", "", 5).unwrap().kvs.is_empty(), "deleted at 5");
    assert_eq!(get_at(&s, "a", "\0", 4).unwrap().count, 2, "a and b at 4");
    assert_eq!(get_at(&s, "a", "", 7), Err(ApplyError::FutureRevision));
}

#[test]
fn compaction_keeps_the_newest_state_at_or_below_it() {
    // History: a@1, a@2, b@3, del a@4, c@5, a@6.
    let (_d, s) = open();
    for c in [put("a", "1"), put("a", "2"), put("b", "x"), del("a", ""), put("c", "y"), put("a", "3")] {
        apply(&s, c);
    }
    assert!(apply(&s, Command::Compact { revision: 5 }).result.is_ok());
    assert_eq!(get_at(&s, "a", "", 4), Err(ApplyError::Compacted));
    assert!(get_at(&s, "a", "", 5).unwrap().kvs.is_empty());
    assert_eq!(keys(&get_at(&s, "a", "\0", 5).unwrap()), vec!["b"]);
    assert_eq!(keys(&get_at(&s, "a", "\0", 6).unwrap()), vec!["b", "c"]);
    assert_eq!(values(&get_at(&s, "a", "", 7).unwrap()), vec!["3"]);
    assert_eq!(apply(&s, Command::Compact { revision: 5 }).result, Err(ApplyError::Compacted));
    assert_eq!(apply(&s, Command::Compact { revision: 8 }).result, Err(ApplyError::FutureRevision));
    // A second compaction supersedes b's old state only if it changed; it did not.
    assert!(apply(&s, Command::Compact { revision: 7 }).result.is_ok());
    assert_eq!(keys(&get_at(&s, "a", "\0", 7).unwrap()), vec!["a", "b", "c"]);
    // Watch history below the compaction is gone; from the compaction on it is complete.
    let view = s.read().unwrap();
    assert!(matches!(view.events(6, b"a", b"\0", false, 100), Err(Error::Apply(ApplyError::Compacted))));
    let page = view.events(7, b"a", b"\0", false, 100).unwrap();
    assert_eq!(page.events.len(), 1);
    assert_eq!(page.next_revision, 8);
}

#[test]
fn negative_watch_starts_as_etcd_reads_them() {
    let (_d, s) = open();
    apply(&s, put("a", "1"));
    apply(&s, put("a", "2"));
    // Never compacted (-1): below it is compacted; -1 itself has no history (etcd reads from
    // the bytes of uint64(-1), after every revision) and goes on from the next revision.
    let view = s.read().unwrap();
    assert!(matches!(view.events(-5, b"a", b"", false, 100), Err(Error::Apply(ApplyError::Compacted))));
    assert_eq!(view.compact_revision, -1);
    let page = view.events(-1, b"a", b"", false, 100).unwrap();
    assert!(page.events.is_empty());
    assert_eq!(page.next_revision, 4);
    assert_eq!(view.events(1, b"a", b"", false, 100).unwrap().events.len(), 2);
    drop(view);
    // Once compacted, every negative start is below it.
    apply(&s, Command::Compact { revision: 2 });
    let view = s.read().unwrap();
    assert!(matches!(view.events(-1, b"a", b"", false, 100), Err(Error::Apply(ApplyError::Compacted))));
}

#[test]
fn range_limit_sort_count_and_filters() {
    let (_d, s) = open();
    for (k, v) in [("k1", "c"), ("k2", "a"), ("k3", "b"), ("k4", "d")] {
        apply(&s, put(k, v));
    }
    apply(&s, put("k2", "a2"));
    let view = s.read().unwrap();
    let base = RangeOp { key: b"k".to_vec(), range_end: b"l".to_vec(), ..Default::default() };
    let r = view.range(&RangeOp { limit: 2, ..base.clone() }).unwrap();
    assert_eq!((keys(&r), r.more, r.count), (vec!["k1".to_string(), "k2".into()], true, 4));
    let r = view
        .range(&RangeOp { sort_target: SortTarget::Value, sort_order: SortOrder::Descend, ..base.clone() })
        .unwrap();
    assert_eq!(values(&r), vec!["d", "c", "b", "a2"]);
    let r = view.range(&RangeOp { sort_target: SortTarget::Mod, limit: 1, ..base.clone() }).unwrap();
    assert_eq!(keys(&r), vec!["k1"], "a non-key target sorts ascending by default");
    let r = view.range(&RangeOp { count_only: true, ..base.clone() }).unwrap();
    assert_eq!((r.kvs.len(), r.count), (0, 4));
    let r = view.range(&RangeOp { keys_only: true, ..base.clone() }).unwrap();
    assert!(r.kvs.iter().all(|kv| kv.value.is_empty()));
    let r = view.range(&RangeOp { min_mod_revision: 5, ..base.clone() }).unwrap();
    assert_eq!((keys(&r), r.count), (vec!["k2".to_string(), "k4".into()], 4));
    let r = view.range(&RangeOp { max_create_revision: 2, ..base }).unwrap();
    assert_eq!(keys(&r), vec!["k1"]);
}

#[test]
fn txn_compares_branches_and_reads_own_writes() {
    let (_d, s) = open();
    apply(&s, put("a", "1"));
    let cmp = |target, result| Compare { result, target, key: b"a".to_vec(), range_end: vec![] };
    let txn = |compare: Vec<Compare>| {
        Command::Txn(TxnOp {
            compare,
            success: vec![
                RequestOp::Put(PutOp { key: b"b".to_vec(), value: b"2".to_vec(), ..Default::default() }),
                RequestOp::Range(RangeOp { key: b"a".to_vec(), range_end: b"c".to_vec(), ..Default::default() }),
            ],
            failure: vec![RequestOp::DeleteRange(DeleteOp { key: b"a".to_vec(), ..Default::default() })],
        })
    };
    let r = apply(
        &s,
        txn(vec![
            cmp(CompareTarget::Value(b"1".to_vec()), CompareResult::Equal),
            cmp(CompareTarget::Version(1), CompareResult::Equal),
        ]),
    );
    assert_eq!(r.revision, 3);
    let Ok(Response::Txn(t)) = r.result else { panic!() };
    assert!(t.succeeded);
    let OpResult::Range(rr) = &t.responses[1] else { panic!() };
    assert_eq!(keys(rr), vec!["a", "b"], "the range sees the txn's own put");
    assert_eq!(rr.revision, 3);
    // A value compare on a missing key always fails; the failure branch runs.
    let r = apply(
        &s,
        Command::Txn(TxnOp {
            compare: vec![Compare {
                result: CompareResult::NotEqual,
                target: CompareTarget::Value(vec![]),
                key: b"zz".to_vec(),
                range_end: vec![],
            }],
            ..Default::default()
        }),
    );
    let Ok(Response::Txn(t)) = r.result else { panic!() };
    assert!(!t.succeeded);
    // create_revision == 0 holds for a missing key (the lock recipe's test).
    let r = apply(
        &s,
        Command::Txn(TxnOp {
            compare: vec![Compare {
                result: CompareResult::Equal,
                target: CompareTarget::Create(0),
                key: b"zz".to_vec(),
                range_end: vec![],
            }],
            ..Default::default()
        }),
    );
    assert!(matches!(r.result, Ok(Response::Txn(TxnResult { succeeded: true, .. }))));
    // Mod revision over a range: every key must satisfy it.
    let r = apply(
        &s,
        txn(vec![Compare {
            result: CompareResult::Greater,
            target: CompareTarget::Mod(2),
            key: b"a".to_vec(),
            range_end: b"c".to_vec(),
        }]),
    );
    let Ok(Response::Txn(t)) = r.result else { panic!() };
    assert!(!t.succeeded, "a has mod revision 2");
    assert!(get_at(&s, "a", "", 0).unwrap().kvs.is_empty());
}

#[test]
fn failed_txn_changes_nothing() {
    let (_d, s) = open();
    apply(&s, put("a", "1"));
    // The second put needs a lease that does not exist: the whole txn fails, the first put too.
    let r = apply(
        &s,
        Command::Txn(TxnOp {
            success: vec![
                RequestOp::Put(PutOp { key: b"x".to_vec(), value: b"1".to_vec(), ..Default::default() }),
                RequestOp::Put(PutOp { key: b"y".to_vec(), value: b"1".to_vec(), lease: 99, ..Default::default() }),
            ],
            ..Default::default()
        }),
    );
    assert_eq!(r.result, Err(ApplyError::LeaseNotFound));
    assert_eq!(r.revision, 2);
    assert!(get_at(&s, "x", "", 0).unwrap().kvs.is_empty());
}

/// Goal: a txn's checks fail as etcd 3.4's do (found by the etcd differential fuzzer): a put
/// on its own checks its lease before its key, a put in a txn its key first; every write of
/// the path is checked before any read; a read's revision below the compacted one fails,
/// negative ones included; an ignore_value put of a key an earlier delete of the same txn
/// removed is refused (etcd lets it through and then panics applying it).
#[test]
fn txn_checks_fail_in_etcds_order() {
    let (_d, s) = open();
    let missing = PutOp { key: b"nope".to_vec(), ignore_value: true, lease: 99, ..Default::default() };
    assert_eq!(apply(&s, Command::Put(missing.clone())).result, Err(ApplyError::LeaseNotFound));
    let txn = |success: Vec<RequestOp>| Command::Txn(TxnOp { success, ..Default::default() });
    assert_eq!(apply(&s, txn(vec![RequestOp::Put(missing.clone())])).result, Err(ApplyError::KeyNotFound));
    let bad_read = RequestOp::Range(RangeOp { key: b"a".to_vec(), revision: 100, ..Default::default() });
    assert_eq!(
        apply(&s, txn(vec![bad_read.clone(), RequestOp::Put(missing)])).result,
        Err(ApplyError::KeyNotFound),
        "the write is checked first"
    );
    assert_eq!(apply(&s, txn(vec![bad_read])).result, Err(ApplyError::FutureRevision));
    let at = |revision| RequestOp::Range(RangeOp { key: b"a".to_vec(), revision, ..Default::default() });
    assert!(apply(&s, txn(vec![at(-1)])).result.is_ok(), "-1 passes while nothing is compacted");
    assert_eq!(apply(&s, txn(vec![at(-2)])).result, Err(ApplyError::Compacted));
    apply(&s, put("a", "1"));
    apply(&s, put("b", "1"));
    apply(&s, Command::Compact { revision: 2 });
    assert_eq!(apply(&s, txn(vec![at(-1)])).result, Err(ApplyError::Compacted));
    assert_eq!(get_at(&s, "a", "", -1).unwrap().kvs.len(), 1, "at the top level -1 means now");

    let delete_from_a = RequestOp::DeleteRange(DeleteOp { key: b"a".to_vec(), range_end: vec![0], prev_kv: false });
    let keep_b = RequestOp::Put(PutOp { key: b"b".to_vec(), ignore_value: true, ..Default::default() });
    let r = apply(&s, txn(vec![delete_from_a, keep_b]));
    assert_eq!(r.result, Err(ApplyError::KeyNotFound));
    assert_eq!(get_at(&s, "b", "", 0).unwrap().kvs.len(), 1, "nothing was deleted");
}

#[test]
fn put_ignore_value_and_lease() {
    let (_d, s) = open();
    assert_eq!(
        apply(&s, Command::Put(PutOp { key: b"a".to_vec(), ignore_value: true, ..Default::default() })).result,
        Err(ApplyError::KeyNotFound)
    );
    apply(&s, Command::LeaseGrant { id: 7, ttl_s: 60 });
    apply(&s, put_lease("a", "v", 7));
    apply(&s, Command::Put(PutOp { key: b"a".to_vec(), ignore_value: true, ignore_lease: true, ..Default::default() }));
    let kv = &get_at(&s, "a", "", 0).unwrap().kvs[0];
    assert_eq!((kv.value.as_slice(), kv.lease, kv.version), (&b"v"[..], 7, 2));
}

#[test]
fn lease_revoke_deletes_attached_keys_in_one_revision() {
    let (_d, s) = open();
    assert_eq!(apply(&s, Command::LeaseGrant { id: 5, ttl_s: 10 }).revision, 1, "a grant is not a revision");
    assert_eq!(apply(&s, Command::LeaseGrant { id: 5, ttl_s: 10 }).result, Err(ApplyError::LeaseExists));
    apply(&s, put_lease("a", "1", 5));
    apply(&s, put_lease("b", "1", 5));
    apply(&s, put("c", "1"));
    // Re-putting b without the lease detaches it.
    apply(&s, put("b", "2"));
    assert_eq!(s.read().unwrap().lease_keys(5).unwrap(), vec![b"a".to_vec()]);
    apply(&s, put_lease("d", "1", 5));
    let (r, fx) = apply_fx(&s, Command::LeaseRevoke { id: 5 });
    assert_eq!(r.revision, 7);
    assert_eq!(fx.events.len(), 2);
    assert!(fx.events.iter().all(|e| e.kind == EventKind::Delete && e.kv.mod_revision == 7));
    assert_eq!(fx.leases_revoked, vec![5]);
    assert_eq!(keys(&get_at(&s, "a", "\0", 0).unwrap()), vec!["b", "c"]);
    assert_eq!(apply(&s, Command::LeaseRevoke { id: 5 }).result, Err(ApplyError::LeaseNotFound));
    assert!(s.read().unwrap().lease(5).unwrap().is_none());
}

#[test]
fn events_carry_prev_kv_and_split_on_revision_boundaries() {
    let (_d, s) = open();
    apply(&s, put("a", "1"));
    apply(
        &s,
        Command::Txn(TxnOp {
            success: vec![
                RequestOp::Put(PutOp { key: b"a".to_vec(), value: b"2".to_vec(), ..Default::default() }),
                RequestOp::Put(PutOp { key: b"b".to_vec(), value: b"1".to_vec(), ..Default::default() }),
            ],
            ..Default::default()
        }),
    );
    apply(&s, del("a", ""));
    let view = s.read().unwrap();
    let page = view.events(1, b"a", b"\0", true, 2).unwrap();
    // Three changes would pass the max of 2, but revision 3 is not split.
    assert_eq!(page.events.len(), 3);
    assert_eq!(page.next_revision, 4);
    assert_eq!(page.events[1].prev_kv.as_ref().unwrap().value, b"1");
    let page = view.events(4, b"a", b"", true, 10).unwrap();
    assert_eq!(page.events.len(), 1);
    assert_eq!(page.events[0].kind, EventKind::Delete);
    assert_eq!(page.events[0].prev_kv.as_ref().unwrap().value, b"2");
    assert_eq!(page.next_revision, 5);
}

/// Goal: a watch event's prev_kv as etcd's watch server gives it when one txn changes a key
/// twice: a delete after a put of the same txn shows the state from before the txn, a put
/// that creates the key after a delete of the same txn shows none; live and replayed alike.
#[test]
fn events_of_a_key_changed_twice_in_a_txn_carry_etcds_prev_kv() {
    let (_d, s) = open();
    apply(&s, put("a", "1")); // 2
    apply(&s, put("b", "1")); // 3
    let put_op = |k: &str| RequestOp::Put(PutOp { key: k.into(), value: b"2".to_vec(), ..Default::default() });
    let delete_from = |k: &str| RequestOp::DeleteRange(DeleteOp { key: k.into(), range_end: vec![0], prev_kv: false });
    let txn = |ops| Command::Txn(TxnOp { success: ops, ..Default::default() });
    // 4: a put, then a and b deleted (a delete ending in "\0" passes etcd's overlap check).
    let (_, fx4) = apply_fx(&s, txn(vec![put_op("a"), delete_from("a")]));
    apply(&s, put("b", "5")); // 5
                              // 6: b deleted, then created again.
    let (_, fx6) = apply_fx(&s, txn(vec![delete_from("b"), put_op("b")]));
    let shape = |events: &[Event]| -> Vec<(String, EventKind, Option<i64>)> {
        events
            .iter()
            .map(|e| (String::from_utf8(e.kv.key.clone()).unwrap(), e.kind, e.prev_kv.as_ref().map(|p| p.mod_revision)))
            .collect()
    };
    let live = [shape(&fx4.events), shape(&fx6.events)].concat();
    let want = vec![
        ("a".to_string(), EventKind::Put, Some(2)),
        ("a".into(), EventKind::Delete, Some(2)),
        ("b".into(), EventKind::Delete, Some(3)),
        ("b".into(), EventKind::Delete, Some(5)),
        ("b".into(), EventKind::Put, None),
    ];
    assert_eq!(live, want);
    let view = s.read().unwrap();
    let replayed = shape(&view.events(4, b"a", b"\0", true, 100).unwrap().events);
    // The replay lists revision 5's creation of b too (no prev_kv).
    let mut want_replayed = want.clone();
    want_replayed.insert(3, ("b".into(), EventKind::Put, None));
    assert_eq!(replayed, want_replayed);
}

#[test]
fn applied_state_survives_reopen_and_snapshots_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let s = Store::open(&path, StoreConfig::default()).unwrap();
        apply(&s, put("a", "1"));
        apply(&s, Command::LeaseGrant { id: 3, ttl_s: 9 });
        apply(&s, put_lease("b", "2", 3));
        s.write(true, |tx| tx.set_meta("raft_applied", b"x")).unwrap();
    }
    let s = Store::open(&path, StoreConfig::default()).unwrap();
    let view = s.read().unwrap();
    assert_eq!(view.revision, 3);
    assert_eq!(view.meta("raft_applied").unwrap().unwrap(), b"x");
    let rows = view.dump().unwrap();
    let (_d2, other) = open();
    apply(&other, put("junk", "1"));
    other.restore(&rows).unwrap();
    let v2 = other.read().unwrap();
    assert_eq!(v2.revision, 3);
    assert_eq!(v2.lease_keys(3).unwrap(), vec![b"b".to_vec()]);
    assert_eq!(v2.hash_kv(0).unwrap(), view.hash_kv(0).unwrap());
    assert!(v2.get(b"junk").unwrap().is_none());
    assert_eq!(v2.range(&RangeOp { key: b"a".to_vec(), revision: 2, ..Default::default() }).unwrap().kvs.len(), 1);
}

/// Goal: HashKV equals etcd's for the same history. The expected figures were computed by
/// etcd 3.4.23 for this exact sequence (see compat-tests/test_etcdctl_cluster.py).
#[test]
fn hash_kv_matches_etcd() {
    let (_d, s) = open();
    assert_eq!(s.read().unwrap().hash_kv(0).unwrap(), (1084519789, 1));
    apply(&s, put("a", "1"));
    apply(&s, put("b", "2"));
    apply(
        &s,
        Command::Txn(TxnOp {
            success: vec![
                RequestOp::Put(PutOp { key: b"c".to_vec(), value: b"3".to_vec(), ..Default::default() }),
                RequestOp::Put(PutOp { key: b"d".to_vec(), value: b"4".to_vec(), ..Default::default() }),
            ],
            ..Default::default()
        }),
    );
    apply(&s, del("a", ""));
    let view = s.read().unwrap();
    assert_eq!(view.hash_kv(0).unwrap(), (3371320365, 5));
    assert_eq!(view.hash_kv(2).unwrap(), (2587454935, 2));
}

/// Goal: HashKV after a compaction counts a kept row only while its key is unchanged since
/// (etcd's kvindex.Keep), and counts them all when no key is live. The hashes are etcd
/// 3.4.23's for the same history.
#[test]
fn hash_kv_after_a_compaction_matches_etcd() {
    let (_d, s) = open();
    for (k, v) in [("a", "1"), ("b", "2"), ("c", "3"), ("a", "4")] {
        apply(&s, put(k, v));
    }
    apply(&s, Command::Compact { revision: 4 });
    apply(&s, put("b", "5"));
    apply(&s, del("c", ""));
    let view = s.read().unwrap();
    assert_eq!(view.hash_kv(0).unwrap().0, 3930747085);
    assert_eq!(view.hash_kv(5).unwrap().0, 170281979);
    assert_eq!(view.hash_kv(6).unwrap().0, 2116327427);
    assert!(matches!(view.hash_kv(4), Err(Error::Apply(ApplyError::Compacted))));
    drop(view);
    apply(&s, del("a", "\0"));
    assert_eq!(s.read().unwrap().hash_kv(0).unwrap().0, 2959505731);
}

/// Goal: etcd's NOSPACE alarm caps the store: puts, txns with a put and lease grants fail,
/// reads, deletes and read-only txns still work, and clearing the alarm restores writes.
#[test]
fn nospace_alarm_caps_writes() {
    let (_d, s) = open();
    apply(&s, put("a", "1"));
    let raise = Command::Alarm { activate: true, member_id: 0, alarm: AlarmType::NoSpace };
    assert_eq!(apply(&s, raise.clone()).result, Ok(Response::Alarm(Some((0, AlarmType::NoSpace)))));
    assert_eq!(
        apply(&s, raise).result,
        Ok(Response::Alarm(Some((0, AlarmType::NoSpace)))),
        "raising twice answers too"
    );
    assert_eq!(s.read().unwrap().alarms().unwrap(), vec![(0, AlarmType::NoSpace)]);
    assert_eq!(apply(&s, put("b", "1")).result, Err(ApplyError::NoSpace));
    assert_eq!(apply(&s, Command::LeaseGrant { id: 1, ttl_s: 5 }).result, Err(ApplyError::NoSpace));
    let read_only = Command::Txn(TxnOp {
        success: vec![RequestOp::Range(RangeOp { key: b"a".to_vec(), ..Default::default() })],
        ..Default::default()
    });
    assert!(apply(&s, read_only).result.is_ok());
    assert!(apply(&s, del("a", "")).result.is_ok());
    let clear = Command::Alarm { activate: false, member_id: 0, alarm: AlarmType::NoSpace };
    assert_eq!(apply(&s, clear.clone()).result, Ok(Response::Alarm(Some((0, AlarmType::NoSpace)))));
    assert_eq!(apply(&s, clear).result, Ok(Response::Alarm(None)), "clearing twice answers nothing");
    assert!(apply(&s, put("b", "1")).result.is_ok());
}

/// Goal: the size (etcd's dbSize, what the space quota checks) counts the pages written to the
/// file, never more than its length, not the space redb grew the file by ahead of use.
#[test]
fn the_size_counts_the_pages_written_not_the_file_grown_ahead() {
    let (d, s) = open();
    let big = "x".repeat(100_000);
    for i in 0..200 {
        apply(&s, put(&format!("k{i}"), &big));
    }
    let len = std::fs::metadata(d.path().join("db")).unwrap().len();
    // 20 MB of values are in it, and no more than the file's length is counted.
    assert!(s.size_bytes() >= 20_000_000, "{}", s.size_bytes());
    assert!(s.size_bytes() <= len, "{} of {len}", s.size_bytes());
}

/// Goal: defragment gives back to the file system what compaction freed inside the file, the
/// state and the applied bookkeeping unchanged, and the store stays writable (also with an
/// applied batch still uncommitted when it starts).
#[test]
fn defragment_shrinks_the_file_and_keeps_the_state() {
    let (_d, s) = open();
    let big = "x".repeat(100_000);
    for _ in 0..40 {
        apply(&s, put("k", &big));
    }
    apply(&s, put("small", "1"));
    let rev = s.read().unwrap().revision;
    apply(&s, Command::Compact { revision: rev });
    let b = vec![put("pending", "1")];
    assert!(s.prepare(Arc::new(b.clone()), Duration::ZERO, s.applies()).unwrap());
    s.write_prepared(false, &b, &[("applied", b"7")]).unwrap().expect("prepared");
    let full = s.size_bytes();
    assert!(matches!(&*s.lock_pending(), Pending::Applied(_)), "an applied batch waits uncommitted");
    s.defragment().unwrap();
    assert_eq!(values(&get_at(&s, "pending", "", 0).unwrap()), ["1"]);
    let hash = s.read().unwrap().hash_kv(0).unwrap();
    s.defragment().unwrap();
    assert!(s.size_bytes() < full / 2, "{} of {full}", s.size_bytes());
    assert_eq!(s.read().unwrap().hash_kv(0).unwrap(), hash);
    assert_eq!(s.meta_get("applied").unwrap().as_deref(), Some(&b"7"[..]));
    assert_eq!(values(&get_at(&s, "k", "", 0).unwrap()), [big]);
    apply(&s, put("after", "1"));
    assert_eq!(values(&get_at(&s, "after", "", 0).unwrap()), ["1"]);
}

// ---- ZooKeeper znodes on the MVCC store --------------------------------------------------------

fn zk(store: &Store, session: i64, ops: Vec<ZkOp>) -> (i64, Vec<ZkOpResult>) {
    let txn = ZkTxn { ops, now_ms: 1000, session_id: session, auth: Vec::new(), ttl_enabled: true };
    let a = apply(store, Command::Zk(txn));
    match a.result {
        Ok(Response::Zk(r)) => (a.revision, r),
        other => panic!("{other:?}"),
    }
}

fn create(path: &str, data: &str, mode: CreateMode) -> ZkOp {
    create_op(path, Some(data), vec![world_acl()], mode, -1)
}

/// A create op with every field given (`None`: null data).
fn create_op(path: &str, data: Option<&str>, acl: Vec<ZkAcl>, mode: CreateMode, ttl_ms: i64) -> ZkOp {
    ZkOp::Create { path: path.into(), data: data.map(Into::into), acl, mode, ttl_ms }
}

fn stat(store: &Store, path: &str) -> ZkStat {
    store.read().unwrap().zk_node(path).unwrap().unwrap().stat.clone()
}

/// Goal: a fresh tree looks like a fresh ZooKeeper's, and creates/deletes move the parent's
/// Stat as ZooKeeper's do (cversion counts changes, pzxid the last one, sequence numbers come
/// from the creates). Method: a worked example checked field by field.
#[test]
fn znode_stats_follow_zookeeper() {
    let (_d, s) = open();
    let root = stat(&s, "/");
    assert_eq!((root.czxid, root.num_children, root.cversion), (0, 1, -1), "/zookeeper only");
    assert_eq!(s.read().unwrap().zk_children("/zookeeper", 10).unwrap(), ["config", "quota"]);

    let (rev, r) = zk(&s, 0, vec![create("/a", "x", CreateMode::Persistent)]);
    assert_eq!(rev, 2);
    let ZkOpResult::Created { path, stat: st } = &r[0] else { panic!("{r:?}") };
    assert_eq!(path, "/a");
    assert_eq!((st.czxid, st.mzxid, st.pzxid, st.version, st.data_length), (2, 2, 2, 0, 1));
    let (rev, r) = zk(&s, 0, vec![create("/a/q-", "", CreateMode::PersistentSequential)]);
    assert_eq!(r[0], ZkOpResult::Created { path: "/a/q-0000000000".into(), stat: stat(&s, "/a/q-0000000000") });
    zk(&s, 0, vec![ZkOp::Delete { path: "/a/q-0000000000".into(), version: -1 }]);
    let (_, r) = zk(&s, 0, vec![create("/a/q-", "", CreateMode::PersistentSequential)]);
    let ZkOpResult::Created { path, .. } = &r[0] else { panic!() };
    assert_eq!(path, "/a/q-0000000001", "the suffix counts creates, not live children");
    let a = stat(&s, "/a");
    assert_eq!((a.num_children, a.cversion, a.pzxid), (1, 3, rev + 2));

    // Data: version counts sets; the key is visible to etcd as /zk/a.
    let (_, r) = zk(&s, 0, vec![ZkOp::SetData { path: "/a".into(), data: Some("yz".into()), version: 0 }]);
    let ZkOpResult::SetData { stat: st } = &r[0] else { panic!() };
    assert_eq!((st.version, st.data_length, st.czxid), (1, 2, 2));
    assert_eq!(values(&get_at(&s, "/zk/a", "", 0).unwrap()), ["yz"]);
    assert_eq!(
        zk(&s, 0, vec![ZkOp::SetData { path: "/a".into(), data: Some("".into()), version: 0 }]).1,
        [ZkOpResult::Error(zk_err::BAD_VERSION)]
    );
}

/// Goal: NOSPACE caps ZooKeeper writes as it caps etcd's: a create or setData is refused with
/// QuotaExceeded where ZooKeeper checks an enforced quota (after NodeExists and the ACL, before
/// the version), a multi holding one fails as a whole; deletes, setACL, checks and new sessions
/// pass (a client needs a session to delete anything), while an etcd lease grant is refused;
/// clearing the alarm restores writes.
#[test]
fn nospace_alarm_caps_zookeeper_writes_but_not_sessions() {
    let (_d, s) = open();
    zk(&s, 0, vec![create("/a", "x", CreateMode::Persistent), create("/b", "y", CreateMode::Persistent)]);
    apply(&s, Command::Alarm { activate: true, member_id: 9, alarm: AlarmType::NoSpace });
    let quota = [ZkOpResult::Error(zk_err::QUOTA_EXCEEDED)];
    assert_eq!(zk(&s, 0, vec![create("/c", "", CreateMode::Persistent)]).1, quota);
    assert_eq!(zk(&s, 0, vec![create("/a", "", CreateMode::Persistent)]).1, [ZkOpResult::Error(zk_err::NODE_EXISTS)]);
    assert_eq!(zk(&s, 0, vec![create("/x/y", "", CreateMode::Persistent)]).1, [ZkOpResult::Error(zk_err::NO_NODE)]);
    let set = |version| ZkOp::SetData { path: "/a".into(), data: Some("z".into()), version };
    assert_eq!(zk(&s, 0, vec![set(-1)]).1, quota);
    assert_eq!(zk(&s, 0, vec![set(7)]).1, quota, "before the version check");
    let (_, r) = zk(&s, 0, vec![ZkOp::Delete { path: "/b".into(), version: -1 }, set(-1)]);
    assert_eq!(r, [ZkOpResult::Error(zk_err::OK), ZkOpResult::Error(zk_err::QUOTA_EXCEEDED)], "as ZooKeeper answers");
    assert!(s.read().unwrap().zk_node("/b").unwrap().is_some(), "the failed multi changed nothing");
    let acl = vec![ZkAcl { perms: 31, scheme: "world".into(), id: "anyone".into() }];
    assert!(matches!(
        zk(&s, 0, vec![ZkOp::SetAcl { path: "/a".into(), acl, version: -1 }]).1[..],
        [ZkOpResult::SetAcl { .. }]
    ));
    assert_eq!(zk(&s, 0, vec![ZkOp::Delete { path: "/b".into(), version: -1 }]).1, [ZkOpResult::Deleted]);
    assert_eq!(apply(&s, Command::LeaseGrant { id: 1, ttl_s: 5 }).result, Err(ApplyError::NoSpace));
    assert_eq!(apply(&s, Command::ZkSession { id: 2, ttl_s: 5 }).result, Ok(Response::LeaseGrant { id: 2, ttl_s: 5 }));
    assert_eq!(zk(&s, 0, vec![set(-1), ZkOp::Delete { path: "/a".into(), version: -1 }]).1[0], quota[0]);

    apply(&s, Command::Alarm { activate: false, member_id: 9, alarm: AlarmType::NoSpace });
    assert!(matches!(zk(&s, 2, vec![create("/e", "", CreateMode::Ephemeral)]).1[..], [ZkOpResult::Created { .. }]));
    assert!(matches!(zk(&s, 0, vec![set(-1)]).1[..], [ZkOpResult::SetData { .. }]));
}

/// Goal: a batch of ZooKeeper writes applied in one transaction (as the state machine applies
/// a raft entry) leaves exactly the state the same writes leave one transaction each, though a
/// transaction keeps the metadata rows it changes in memory until it commits (the parent
/// rewritten by each create, the quota root's answer read once). Method: the same commands
/// both ways, a quota set in the middle of the batch, every node compared.
#[test]
fn a_batch_in_one_transaction_matches_one_transaction_per_write() {
    let zk_cmd = |session: i64, op: ZkOp| {
        Command::Zk(ZkTxn { ops: vec![op], now_ms: 1000, session_id: session, auth: Vec::new(), ttl_enabled: true })
    };
    let cmds: Vec<Command> = {
        let mut v = vec![Command::LeaseGrant { id: 7, ttl_s: 10 }, zk_cmd(0, create("/p", "", CreateMode::Persistent))];
        for i in 0..5 {
            v.push(zk_cmd(0, create("/p/s-", &"x".repeat(i), CreateMode::PersistentSequential)));
        }
        v.push(zk_cmd(0, ZkOp::Delete { path: "/p/s-0000000001".into(), version: -1 }));
        v.push(zk_cmd(0, create("/zookeeper/quota/p", "", CreateMode::Persistent)));
        v.push(zk_cmd(0, create("/zookeeper/quota/p/zookeeper_limits", "count=100,bytes=-1", CreateMode::Persistent)));
        v.push(zk_cmd(0, create("/zookeeper/quota/p/zookeeper_stats", "count=0,bytes=0", CreateMode::Persistent)));
        for i in 0..4 {
            v.push(zk_cmd(0, create("/p/t-", &"y".repeat(i), CreateMode::PersistentSequential)));
        }
        v.push(zk_cmd(0, ZkOp::Delete { path: "/p/t-0000000006".into(), version: -1 }));
        v.push(zk_cmd(0, ZkOp::SetData { path: "/p".into(), data: Some("grown".into()), version: -1 }));
        // A session's ephemerals, then its end: the parent and the quota learn of it.
        v.push(zk_cmd(7, create("/p/e", "zz", CreateMode::Ephemeral)));
        v.push(zk_cmd(7, create("/p/f", "", CreateMode::Ephemeral)));
        v.push(Command::LeaseRevoke { id: 7 });
        v.push(zk_cmd(0, create("/p/after", "", CreateMode::Persistent)));
        v
    };
    let ok = |a: &Applied| match &a.result {
        Ok(Response::Zk(r)) => !r.iter().any(|r| matches!(r, ZkOpResult::Error(_))),
        r => r.is_ok(),
    };
    let (_d1, one_each) = open();
    for c in &cmds {
        assert!(ok(&apply(&one_each, c.clone())), "{c:?}");
    }
    let (_d2, batched) = open();
    batched
        .write(false, |tx| {
            for c in &cmds {
                assert!(ok(&tx.apply(c)?), "{c:?}");
            }
            Ok(())
        })
        .unwrap();
    let paths = |s: &Store| {
        let view = s.read().unwrap();
        let mut todo = vec!["/".to_string()];
        let mut all = Vec::new();
        while let Some(p) = todo.pop() {
            for c in view.zk_children(&p, 1000).unwrap() {
                todo.push(if p == "/" { format!("/{c}") } else { format!("{p}/{c}") });
            }
            let n = view.zk_node(&p).unwrap().unwrap();
            all.push((p, n.stat.clone(), n.data.clone()));
        }
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    };
    let (a, b) = (paths(&one_each), paths(&batched));
    assert_eq!(a, b);
    let stats = a.iter().find(|(p, ..)| p == "/zookeeper/quota/p/zookeeper_stats").unwrap();
    assert_eq!(stats.2.as_deref(), Some(&b"count=9,bytes=19"[..]), "the quota counted the writes after it");
}

/// ZooKeeper's open ACL (`world:anyone`, every permission).
fn world_acl() -> ZkAcl {
    ZkAcl { perms: 31, scheme: "world".into(), id: "anyone".into() }
}

/// Every permission for the digest identity `u:h` (added as `("digest", "u:h")`).
fn digest_acl() -> ZkAcl {
    ZkAcl { perms: 31, scheme: "digest".into(), id: "u:h".into() }
}

/// Numbers below `n` from a xorshift generator, for the randomized tests (seeded: a failure
/// repeats).
fn below(mut seed: u64) -> impl FnMut(u64) -> u64 {
    move |n| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    }
}

/// Applies `cmd` to `fast` with the write path's shortcuts on and to `general` with them off
/// (`znode::SHORTCUTS_OFF`), and checks that both answer and publish the same.
fn same_without_shortcuts(fast: &Store, general: &Store, cmd: Command) {
    let run = |store: &Store, off: bool| {
        znode::SHORTCUTS_OFF.with(|o| o.set(off));
        let out = apply_fx(store, cmd.clone());
        znode::SHORTCUTS_OFF.with(|o| o.set(false));
        format!("{out:?}")
    };
    assert_eq!(run(fast, false), run(general, true), "{cmd:?}");
}

/// Goal: a setData alone in its transaction (`WriteTx::zk_set_alone`, which skips the
/// transaction overlay) answers, publishes and writes exactly what the general path does, in
/// every case it takes and every case it leaves to the general path. Method: two stores given
/// the same random commands, one with that path turned off; every answer and every effect
/// compared as they come, and at the end every table row. The commands: setData of nodes with
/// data, with null data, ephemeral, readable only with a digest, built-in, missing or with a
/// bad path, with versions right and wrong, with and without the digest, data turning null and
/// back; between them creates, setACL, a quota set up halfway, prev_kv watchers on and off.
#[test]
fn a_set_data_alone_matches_the_general_path() {
    let (_d1, fast) = open();
    let (_d2, general) = open();
    let mut rnd = below(0x9e37_79b9_7f4a_7c15);
    let (world, digest) = (world_acl(), digest_acl());
    let read_only = ZkAcl { perms: znode::perms::READ, scheme: "world".into(), id: "anyone".into() };
    let node = |path: &str, data: Option<&str>, acl: Vec<ZkAcl>, mode| create_op(path, data, acl, mode, -1);
    let mut setup = vec![
        (0, node("/a", Some("x"), vec![world.clone()], CreateMode::Persistent)),
        (0, node("/a/b", Some(""), vec![world.clone()], CreateMode::Persistent)),
        (0, node("/n", None, vec![world.clone()], CreateMode::Persistent)),
        (0, node("/d", Some("secret"), vec![digest.clone()], CreateMode::Persistent)),
        (0, node("/r", Some("ro"), vec![read_only], CreateMode::Persistent)),
        (7, node("/e", Some("eph"), vec![world.clone()], CreateMode::Ephemeral)),
    ];
    let paths = ["/a", "/a/b", "/n", "/d", "/r", "/e", "/", "/zookeeper", "/missing", "bad", "/a/"];
    let both = |cmd: Command| same_without_shortcuts(&fast, &general, cmd);
    both(Command::LeaseGrant { id: 7, ttl_s: 10 });
    for (session, op) in setup.drain(..) {
        both(Command::Zk(ZkTxn { ops: vec![op], now_ms: 1000, session_id: session, auth: vec![], ttl_enabled: true }));
    }
    let mut watchers = 0;
    for step in 0..3000u64 {
        let auth = match rnd(3) {
            0 => vec![("digest".to_string(), "u:h".to_string())],
            _ => vec![],
        };
        let op = match rnd(40) {
            0 => node("/a/c-", Some("s"), vec![world.clone()], CreateMode::PersistentSequential),
            1 => ZkOp::SetAcl {
                path: paths[rnd(3) as usize * 2 + 1].into(),
                acl: vec![if rnd(2) == 0 { world.clone() } else { digest.clone() }],
                version: -1,
            },
            2 if step > 1500 && rnd(4) == 0 => {
                node("/zookeeper/quota/a", None, vec![world.clone()], CreateMode::Persistent)
            }
            3 if step > 1500 => node(
                "/zookeeper/quota/a/zookeeper_limits",
                Some("count=-1,bytes=1000"),
                vec![world.clone()],
                CreateMode::Persistent,
            ),
            4 if step > 1500 => node(
                "/zookeeper/quota/a/zookeeper_stats",
                Some("count=0,bytes=0"),
                vec![world.clone()],
                CreateMode::Persistent,
            ),
            5 => {
                let added = watchers == 0;
                watchers = if added { 1 } else { 0 };
                fast.prev_value_watcher(added);
                general.prev_value_watcher(added);
                continue;
            }
            _ => {
                let path = paths[rnd(paths.len() as u64) as usize];
                let current = fast.read().unwrap().zk_node(path).ok().flatten().map_or(0, |n| n.stat.version);
                let version = match rnd(4) {
                    0 => current,
                    1 => current + 1,
                    _ => -1,
                };
                let data = match rnd(5) {
                    0 => None,
                    1 => Some(Vec::new()),
                    _ => Some(format!("v{step}").into_bytes()),
                };
                ZkOp::SetData { path: path.into(), data, version }
            }
        };
        let session = if rnd(2) == 0 { 7 } else { 0 };
        both(Command::Zk(ZkTxn {
            ops: vec![op],
            now_ms: 1000 + step as i64,
            session_id: session,
            auth,
            ttl_enabled: true,
        }));
    }
    assert_eq!(fast.dump().unwrap(), general.dump().unwrap());
}

/// Goal: a persistent create alone in its transaction (`WriteTx::zk_create_alone`, which skips
/// the transaction overlay) answers, publishes and writes exactly what the general path does,
/// in every case it takes and every case it leaves to the general path. Method: two stores
/// given the same random creates (and deletes, so that names come back), one with the shortcuts
/// off; every answer and effect compared as they come, every table row at the end. The
/// parents: open, readable only with a digest, creatable only with it, a container and a TTL
/// node (their rows go to the reap list when they change), an ephemeral node, missing, the
/// root, /zookeeper; the creates: persistent and sequential (and the other modes, which go to
/// the general path), null data, open, digest and `auth` ACLs with and without the digest
/// added, bad ACLs and paths, names that exist; between them a NOSPACE alarm raised and
/// cleared, prev_kv watchers on and off, and a quota set up halfway.
#[test]
fn a_create_alone_matches_the_general_path() {
    let (_d1, fast) = open();
    let (_d2, general) = open();
    let mut rnd = below(0x5851_f42d_4c95_7f2d);
    let (world, digest) = (world_acl(), digest_acl());
    let by_auth = ZkAcl { perms: 31, scheme: "auth".into(), id: "".into() };
    let no_create = ZkAcl { perms: 31 & !znode::perms::CREATE, scheme: "world".into(), id: "anyone".into() };
    let bad = ZkAcl { perms: 31, scheme: "nosuch".into(), id: "x".into() };
    let node = create_op;
    let txn = |session: i64, auth: Vec<(String, String)>, op: ZkOp, now_ms: i64| {
        Command::Zk(ZkTxn { ops: vec![op], now_ms, session_id: session, auth, ttl_enabled: true })
    };
    let both = |cmd: Command| same_without_shortcuts(&fast, &general, cmd);
    both(Command::LeaseGrant { id: 7, ttl_s: 10 });
    let setup = [
        (0, node("/a", Some("x"), vec![world.clone()], CreateMode::Persistent, -1)),
        (0, node("/d", Some("secret"), vec![digest.clone()], CreateMode::Persistent, -1)),
        (0, node("/n", None, vec![no_create.clone(), digest.clone()], CreateMode::Persistent, -1)),
        (0, node("/c", None, vec![world.clone()], CreateMode::Container, -1)),
        (0, node("/c/keep", None, vec![world.clone()], CreateMode::Persistent, -1)),
        (0, node("/t", None, vec![world.clone()], CreateMode::PersistentWithTtl, 60_000)),
        (7, node("/e", Some("eph"), vec![world.clone()], CreateMode::Ephemeral, -1)),
    ];
    for (session, op) in setup {
        both(txn(session, vec![], op, 1000));
    }
    let parents = ["/a", "/d", "/n", "/c", "/t", "/e", "/", "/zookeeper", "/missing", "/a/x"];
    let names = ["x", "y", "s-", ""];
    let modes = [
        CreateMode::Persistent,
        CreateMode::Persistent,
        CreateMode::PersistentSequential,
        CreateMode::Ephemeral,
        CreateMode::EphemeralSequential,
        CreateMode::Container,
        CreateMode::PersistentWithTtl,
    ];
    let mut watchers = 0;
    for step in 0..4000i64 {
        let auth = match rnd(3) {
            0 => vec![("digest".to_string(), "u:h".to_string())],
            _ => vec![],
        };
        let parent = parents[rnd(parents.len() as u64) as usize];
        let name = names[rnd(names.len() as u64) as usize];
        let path = match rnd(20) {
            0 => "bad".to_string(),
            1 => format!("{parent}/x\0"),
            _ => format!("{}/{name}", parent.trim_end_matches('/')),
        };
        if step % 20 == 0 {
            // Rows a later write rewrites (a parent's pzxid) are compared before it does.
            assert_eq!(fast.dump().unwrap(), general.dump().unwrap(), "step {step}");
        }
        let op = match rnd(24) {
            0 => {
                let added = watchers == 0;
                watchers = if added { 1 } else { 0 };
                fast.prev_value_watcher(added);
                general.prev_value_watcher(added);
                continue;
            }
            1 => {
                let activate = rnd(2) == 0;
                both(Command::Alarm { activate, member_id: 0, alarm: AlarmType::NoSpace });
                continue;
            }
            2..=5 => ZkOp::Delete { path, version: -1 },
            6 if step > 3000 && rnd(8) == 0 => {
                node("/zookeeper/quota/a", None, vec![world.clone()], CreateMode::Persistent, -1)
            }
            7 if step > 3000 && rnd(8) == 0 => node(
                "/zookeeper/quota/a/zookeeper_limits",
                Some("count=-1,bytes=1000"),
                vec![world.clone()],
                CreateMode::Persistent,
                -1,
            ),
            _ => {
                let mode = modes[rnd(modes.len() as u64) as usize];
                let acl = match rnd(8) {
                    0 => vec![digest.clone()],
                    1 => vec![by_auth.clone()],
                    2 => vec![bad.clone()],
                    3 => vec![],
                    4 => vec![world.clone(), digest.clone()],
                    _ => vec![world.clone()],
                };
                let data = match rnd(5) {
                    0 => None,
                    1 => Some(""),
                    _ => Some("data"),
                };
                let ttl_ms = if mode.is_ttl() || rnd(30) == 0 { 30_000 } else { -1 };
                node(&path, data, acl, mode, ttl_ms)
            }
        };
        both(txn(if rnd(2) == 0 { 7 } else { 0 }, auth, op, 1000 + step));
    }
    assert_eq!(fast.dump().unwrap(), general.dump().unwrap());
}

/// Goal: creates and deletes, which load their parent without its key's state
/// (`WriteTx::zk_load_meta`), answer, publish and write what they did when every load read it,
/// also in a multi that then sets, checks or counts (a quota) that parent. Method: two stores
/// given the same random transactions of 1–3 ops, one with the shortcuts off; answers and
/// effects compared as they come, every table row at the end.
#[test]
fn creates_and_deletes_match_the_general_path_in_any_multi() {
    let (_d1, fast) = open();
    let (_d2, general) = open();
    let mut rnd = below(0x2545_f491_4f6c_dd1d);
    let both = |cmd: Command| same_without_shortcuts(&fast, &general, cmd);
    let txn = |session: i64, ops: Vec<ZkOp>, now_ms: i64| {
        Command::Zk(ZkTxn { ops, now_ms, session_id: session, auth: vec![], ttl_enabled: true })
    };
    both(Command::LeaseGrant { id: 7, ttl_s: 10 });
    for p in ["/a", "/b", "/zookeeper/quota/a"] {
        both(txn(0, vec![create(p, "", CreateMode::Persistent)], 1000));
    }
    let parents = ["/a", "/b", "/", "/zookeeper", "/missing"];
    let names = ["x", "y", "z"];
    for step in 0..3000i64 {
        let mut ops = Vec::new();
        for _ in 0..1 + rnd(3) {
            let parent = parents[rnd(parents.len() as u64) as usize];
            let child = format!("{}/{}", parent.trim_end_matches('/'), names[rnd(3) as usize]);
            ops.push(match rnd(9) {
                0 | 1 => create(&child, &"d".repeat(rnd(4) as usize), CreateMode::Persistent),
                2 => create(&format!("{parent}/s-"), "q", CreateMode::PersistentSequential),
                3 => create(&child, "e", CreateMode::Ephemeral),
                4 | 5 => ZkOp::Delete { path: child, version: -1 },
                6 => ZkOp::SetData { path: parent.into(), data: Some(vec![b'p'; rnd(5) as usize]), version: -1 },
                7 => {
                    let version = fast.read().unwrap().zk_node(parent).ok().flatten().map_or(0, |n| n.stat.version);
                    ZkOp::Check { path: parent.into(), version: version + rnd(2) as i32 }
                }
                _ => ZkOp::Delete { path: parent.into(), version: -1 },
            });
        }
        if step == 1000 {
            // The stats node counts its subtree as the multi leaves it: with /a loaded as a
            // parent, without its key's state.
            ops = vec![
                create("/a/probe", "pp", CreateMode::Persistent),
                create("/zookeeper/quota/a/zookeeper_limits", "count=-1,bytes=1000", CreateMode::Persistent),
                create("/zookeeper/quota/a/zookeeper_stats", "count=0,bytes=0", CreateMode::Persistent),
            ];
        }
        both(txn(if rnd(2) == 0 { 7 } else { 0 }, ops, 1000 + step));
        if rnd(200) == 0 {
            both(Command::LeaseRevoke { id: 7 });
            both(Command::LeaseGrant { id: 7, ttl_s: 10 });
        }
    }
    assert_eq!(fast.dump().unwrap(), general.dump().unwrap());
}

/// Goal: ZooKeeper's error codes, in ZooKeeper's order of checks.
#[test]
fn znode_errors() {
    let (_d, s) = open();
    let one = |op| zk(&s, 0, vec![op]).1.remove(0);
    assert_eq!(one(create("/x/y", "", CreateMode::Persistent)), ZkOpResult::Error(zk_err::NO_NODE));
    assert_eq!(one(create("bad", "", CreateMode::Persistent)), ZkOpResult::Error(zk_err::BAD_ARGUMENTS));
    assert_eq!(one(create("/zookeeper", "", CreateMode::Persistent)), ZkOpResult::Error(zk_err::NODE_EXISTS));
    assert_eq!(one(ZkOp::Delete { path: "/zookeeper".into(), version: -1 }), ZkOpResult::Error(zk_err::BAD_ARGUMENTS));
    assert_eq!(one(ZkOp::Delete { path: "/nope".into(), version: -1 }), ZkOpResult::Error(zk_err::NO_NODE));
    one(create("/p", "", CreateMode::Persistent));
    one(create("/p/c", "", CreateMode::Persistent));
    assert_eq!(one(ZkOp::Delete { path: "/p".into(), version: -1 }), ZkOpResult::Error(zk_err::NOT_EMPTY));
    assert_eq!(one(ZkOp::Delete { path: "/p/c".into(), version: 3 }), ZkOpResult::Error(zk_err::BAD_VERSION));
    // Ephemerals need a live session, and take no children.
    assert_eq!(one(create("/p/e", "", CreateMode::Ephemeral)), ZkOpResult::Error(zk_err::SESSION_EXPIRED));
    apply(&s, Command::LeaseGrant { id: 7, ttl_s: 10 });
    let (_, r) = zk(&s, 7, vec![create("/p/e", "", CreateMode::Ephemeral)]);
    assert!(matches!(&r[0], ZkOpResult::Created { stat, .. } if stat.ephemeral_owner == 7));
    assert_eq!(
        one(create("/p/e/x", "", CreateMode::Persistent)),
        ZkOpResult::Error(zk_err::NO_CHILDREN_FOR_EPHEMERALS)
    );
    let digest = ZkAcl { perms: 31, scheme: "digest".into(), id: "u:h".into() };
    let locked = ZkOp::Create {
        path: "/locked".into(),
        data: None,
        acl: vec![digest],
        mode: CreateMode::Persistent,
        ttl_ms: -1,
    };
    assert!(matches!(one(locked), ZkOpResult::Created { .. }));
    assert_eq!(
        one(ZkOp::SetData { path: "/locked".into(), data: None, version: -1 }),
        ZkOpResult::Error(zk_err::NO_AUTH)
    );
    let ttl =
        ZkOp::Create { path: "/t".into(), data: None, acl: vec![], mode: CreateMode::PersistentWithTtl, ttl_ms: 0 };
    assert_eq!(one(ttl), ZkOpResult::Error(zk_err::BAD_ARGUMENTS));
}

/// Goal: a session's ephemerals list (getEphemerals, and the delete order when it ends) in
/// the order of ZooKeeper's set of them, which remembers how many the session once held.
/// Method: 20 ephemerals, 17 deleted, against JDK 17 (`HashSet` of the 20, 17 removed,
/// cloned: /p/e8, /p/e0, /p/e3; a set that only ever held the three: /p/e0, /p/e8, /p/e3).
#[test]
fn a_sessions_ephemerals_list_in_its_java_sets_order() {
    let (_d, s) = open();
    apply(&s, Command::LeaseGrant { id: 7, ttl_s: 10 });
    apply(&s, Command::LeaseGrant { id: 8, ttl_s: 10 });
    zk(&s, 0, vec![create("/p", "", CreateMode::Persistent)]);
    for i in 0..20 {
        zk(&s, 7, vec![create(&format!("/p/e{i}"), "", CreateMode::Ephemeral)]);
    }
    for i in (0..20).filter(|i| ![0, 3, 8].contains(i)) {
        // Half of them deleted by another session: the owner's set loses them all the same.
        let session = if i % 2 == 0 { 7 } else { 8 };
        zk(&s, session, vec![ZkOp::Delete { path: format!("/p/e{i}"), version: -1 }]);
    }
    let want = ["/p/e8", "/p/e0", "/p/e3"];
    assert_eq!(s.read().unwrap().zk_ephemerals(7, true).unwrap(), want);
    assert_eq!(s.read().unwrap().zk_ephemerals(7, false).unwrap(), want);
    let (_, fx) = apply_fx(&s, Command::LeaseRevoke { id: 7 });
    let deleted: Vec<String> = fx.events.iter().map(|e| String::from_utf8(e.kv.key.clone()).unwrap()).collect();
    assert_eq!(deleted, want.map(|p| format!("/zk{p}")));
    // A session that only ever held three.
    zk(&s, 8, vec![create("/p/e3", "", CreateMode::Ephemeral), create("/p/e0", "", CreateMode::Ephemeral)]);
    zk(&s, 8, vec![create("/p/e8", "", CreateMode::Ephemeral)]);
    assert_eq!(s.read().unwrap().zk_ephemerals(8, true).unwrap(), ["/p/e0", "/p/e8", "/p/e3"]);
    // Two in one bucket, added by one multi: in op order, not by name (JDK: /p/e30, /p/e0).
    apply(&s, Command::LeaseRevoke { id: 8 });
    apply(&s, Command::LeaseGrant { id: 9, ttl_s: 10 });
    zk(&s, 9, vec![create("/p/e30", "", CreateMode::Ephemeral), create("/p/e0", "", CreateMode::Ephemeral)]);
    assert_eq!(s.read().unwrap().zk_ephemerals(9, true).unwrap(), ["/p/e30", "/p/e0"]);
}

/// Goal: a failed multi changes nothing and reports ZooKeeper's per-op codes; a good one is
/// one revision. Then a lease revoke (session expiry) removes the session's ephemerals and
/// keeps the parent's counts right.
#[test]
fn znode_multi_and_session_end() {
    let (_d, s) = open();
    let before = s.read().unwrap().revision;
    let (rev, r) = zk(
        &s,
        0,
        vec![
            create("/m", "", CreateMode::Persistent),
            ZkOp::Check { path: "/m".into(), version: 5 },
            create("/n", "", CreateMode::Persistent),
        ],
    );
    assert_eq!(rev, before);
    assert_eq!(
        r,
        [
            ZkOpResult::Error(0),
            ZkOpResult::Error(zk_err::BAD_VERSION),
            ZkOpResult::Error(zk_err::RUNTIME_INCONSISTENCY)
        ]
    );
    assert!(s.read().unwrap().zk_node("/m").unwrap().is_none());
    // A refused op fails in its place: an earlier op's failure is still reported first.
    let (_, r) = zk(&s, 0, vec![create("bad", "", CreateMode::Persistent), ZkOp::Fail { code: zk_err::BAD_ARGUMENTS }]);
    assert_eq!(r, [ZkOpResult::Error(zk_err::BAD_ARGUMENTS), ZkOpResult::Error(zk_err::RUNTIME_INCONSISTENCY)]);
    let (_, r) = zk(&s, 0, vec![create("/m", "", CreateMode::Persistent), ZkOp::Fail { code: zk_err::BAD_ARGUMENTS }]);
    assert_eq!(r, [ZkOpResult::Error(0), ZkOpResult::Error(zk_err::BAD_ARGUMENTS)]);
    assert!(s.read().unwrap().zk_node("/m").unwrap().is_none());
    let (rev, r) =
        zk(&s, 0, vec![create("/m", "", CreateMode::Persistent), create("/m/k", "", CreateMode::Persistent)]);
    assert_eq!(rev, before + 1);
    assert_eq!(r.len(), 2);
    assert_eq!(stat(&s, "/m/k").czxid, rev);

    apply(&s, Command::LeaseGrant { id: 9, ttl_s: 10 });
    zk(&s, 9, vec![create("/m/e1", "", CreateMode::Ephemeral), create("/m/e2", "", CreateMode::EphemeralSequential)]);
    assert_eq!(s.read().unwrap().zk_ephemerals(9, true).unwrap(), ["/m/e1", "/m/e20000000002"]);
    let (a, fx) = apply_fx(&s, Command::LeaseRevoke { id: 9 });
    assert_eq!(fx.events.len(), 2, "both ephemerals deleted in one revision");
    let m = stat(&s, "/m");
    assert_eq!((m.num_children, m.pzxid), (1, a.revision));
    assert_eq!(s.read().unwrap().zk_children("/m", 10).unwrap(), ["k"]);
    // etcd writes cannot bypass the tree.
    assert_eq!(apply(&s, put("/zk/m/x", "v")).result, Err(ApplyError::ReservedKey));
    assert_eq!(apply(&s, del("", "\0")).result, Err(ApplyError::ReservedKey));
    assert!(apply(&s, del("/zk0", "\0")).result.is_ok());
}

/// Goal: the reaper's rules: a container goes only once it had a child and lost it; a TTL node
/// only when childless and unmodified for longer than its TTL.
#[test]
fn containers_and_ttl_nodes_are_reaped() {
    let (_d, s) = open();
    zk(&s, 0, vec![create("/c", "", CreateMode::Container)]);
    let ttl =
        ZkOp::Create { path: "/t".into(), data: None, acl: vec![], mode: CreateMode::PersistentWithTtl, ttl_ms: 500 };
    let acl = vec![ZkAcl { perms: 31, scheme: "world".into(), id: "anyone".into() }];
    let ttl = match ttl {
        ZkOp::Create { path, data, mode, ttl_ms, .. } => ZkOp::Create { path, data, acl, mode, ttl_ms },
        o => o,
    };
    zk(&s, 0, vec![ttl]);
    assert!(s.read().unwrap().zk_reap_candidates(1000, 10).unwrap().is_empty(), "unused container, young TTL node");
    assert_eq!(s.read().unwrap().zk_reap_candidates(1501, 10).unwrap(), ["/t"]);
    zk(&s, 0, vec![create("/c/x", "", CreateMode::Persistent)]);
    zk(&s, 0, vec![ZkOp::Delete { path: "/c/x".into(), version: -1 }]);
    assert_eq!(s.read().unwrap().zk_reap_candidates(1000, 10).unwrap(), ["/c"]);
    assert_eq!(zk(&s, 0, vec![ZkOp::Reap { path: "/c".into() }]).1, [ZkOpResult::Deleted]);
    // now_ms is 1000 in every txn here: the TTL node is not yet due at apply time.
    assert_eq!(zk(&s, 0, vec![ZkOp::Reap { path: "/t".into() }]).1, [ZkOpResult::Error(zk_err::BAD_VERSION)]);
}

/// Goal: a raft snapshot carries the tree: after dump and restore into an empty store, every
/// znode reads back the same (Stat, data, ACL, children, ephemerals, reaper candidates).
#[test]
fn znodes_survive_snapshot_restore() {
    let (_d, s) = open();
    apply(&s, Command::LeaseGrant { id: 5, ttl_s: 10 });
    zk(&s, 5, vec![create("/a", "1", CreateMode::Persistent), create("/a/e", "2", CreateMode::Ephemeral)]);
    zk(&s, 0, vec![create("/c", "", CreateMode::Container), create("/c/x", "", CreateMode::Persistent)]);
    zk(&s, 0, vec![ZkOp::Delete { path: "/c/x".into(), version: -1 }]);
    let rows = s.dump().unwrap();
    let (_d2, t) = open();
    t.restore(&rows).unwrap();
    let (a, b) = (s.read().unwrap(), t.read().unwrap());
    for p in ["/", "/zookeeper", "/zookeeper/config", "/a", "/a/e", "/c"] {
        assert_eq!(a.zk_node(p).unwrap(), b.zk_node(p).unwrap(), "{p}");
        assert_eq!(a.zk_children(p, 100).unwrap(), b.zk_children(p, 100).unwrap(), "{p}");
    }
    assert_eq!(b.zk_ephemerals(5, true).unwrap(), ["/a/e"]);
    assert_eq!(b.zk_reap_candidates(0, 10).unwrap(), ["/c"]);
    drop(b);
    // A snapshot from a leader of the format before child stamps: no stamps, format 2 in its
    // meta rows. It installs in this layout, and the store opens again afterwards.
    let old: Vec<DumpRow> = rows
        .iter()
        .map(|(t, k, v)| match *t {
            6 => (6, k.clone(), Vec::new()),
            4 if k.as_slice() == META_FORMAT.as_bytes() => (4, k.clone(), encode_i64(2).to_vec()),
            _ => (*t, k.clone(), v.clone()),
        })
        .collect();
    let (d3, u) = open();
    u.restore(&old).unwrap();
    assert_eq!(u.read().unwrap().zk_children("/a", 10).unwrap(), ["e"]);
    let path = u.path().to_path_buf();
    drop(u);
    let u = Store::open(&path, StoreConfig::default()).unwrap();
    assert_eq!(u.meta_get(META_FORMAT).unwrap(), Some(encode_i64(STORE_FORMAT).to_vec()));
    assert_eq!(u.read().unwrap().zk_children("/", 10).unwrap(), ["a", "c", "zookeeper"]);
    drop(d3);
}

/// Goal: reads at every uncompacted revision, watch history with prev_kv, and what compaction
/// keeps agree with a plain model of etcd's MVCC, through random puts, deletes (single keys,
/// ranges, re-creations) and compactions. Method: a seeded generator drives the store and a
/// list of every change; after each step, every revision from the compacted one to the current
/// one is read back and compared with the model's state at that revision.
#[test]
fn history_chains_match_a_model_through_random_writes_and_compactions() {
    let (_d, s) = open();
    let keys = ["a", "b", "c", "d", "e"];
    // Every change: (revision, key, Some(kv) for a put, None for a delete).
    let mut changes: Vec<(i64, String, Option<KeyValue>)> = Vec::new();
    let mut compacted = 0i64;
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    // The model's live state of `key` at `rev`.
    let state_at = |changes: &[(i64, String, Option<KeyValue>)], key: &str, rev: i64| {
        changes.iter().rev().find(|(r, k, _)| *r <= rev && k == key).and_then(|(_, _, kv)| kv.clone())
    };
    for step in 0..400 {
        let current = apply(&s, Command::DeleteRange(DeleteOp { key: "zz".into(), ..Default::default() })).revision;
        match next() % 20 {
            0..=11 => {
                let key = keys[(next() % 5) as usize];
                let value = format!("v{step}");
                let a = apply(&s, put(key, &value));
                let prev = state_at(&changes, key, current);
                let kv = KeyValue {
                    key: key.into(),
                    create_revision: prev.as_ref().map(|p| p.create_revision).unwrap_or(a.revision),
                    mod_revision: a.revision,
                    version: prev.as_ref().map(|p| p.version + 1).unwrap_or(1),
                    value: value.into_bytes(),
                    lease: 0,
                };
                changes.push((a.revision, key.into(), Some(kv)));
            }
            12..=16 => {
                let lo = (next() % 5) as usize;
                let hi = if next() % 2 == 0 { lo + 1 } else { (lo + 1 + (next() % 3) as usize).min(5) };
                let end = if hi == lo + 1 { "".to_string() } else { keys.get(hi).copied().unwrap_or("z").to_string() };
                let a = apply(&s, del(keys[lo], &end));
                for key in &keys[lo..hi] {
                    if state_at(&changes, key, current).is_some() {
                        changes.push((a.revision, key.to_string(), None));
                    }
                }
            }
            _ => {
                if current > compacted {
                    let c = compacted + 1 + (next() % (current - compacted) as u64) as i64;
                    assert!(apply(&s, Command::Compact { revision: c }).result.is_ok());
                    compacted = c;
                }
            }
        }
        let current = s.read().unwrap().range(&RangeOp { key: "a".into(), ..Default::default() }).unwrap().revision;
        for rev in compacted.max(1)..=current {
            let r = get_at(&s, "a", "z", rev).unwrap_or_else(|e| panic!("step {step}: read at {rev}: {e:?}"));
            let want: Vec<KeyValue> = keys.iter().filter_map(|k| state_at(&changes, k, rev)).collect();
            assert_eq!(r.kvs, want, "step {step}: state at revision {rev} (compacted {compacted})");
        }
        // Watch history above the compacted revision: every change with its prev_kv. (At the
        // compacted revision itself a deletion is gone, as in etcd, and so is the prev of a
        // change there.)
        let page = s.read().unwrap().events(compacted + 1, b"a", b"z", true, usize::MAX).unwrap();
        let want: Vec<(i64, String, Option<KeyValue>)> = changes
            .iter()
            .filter(|(r, _, _)| *r > compacted)
            .map(|(r, k, _)| (*r, k.clone(), state_at(&changes, k, r - 1)))
            .collect();
        let got: Vec<(i64, String, Option<KeyValue>)> = page
            .events
            .iter()
            .map(|e| (e.kv.mod_revision, String::from_utf8(e.kv.key.clone()).unwrap(), e.prev_kv.clone()))
            .collect();
        assert_eq!(got, want, "step {step}: watch history above {compacted}");
        // What compaction keeps is etcd's: every change above it, and per key the newest
        // change at or below it unless that is a deletion.
        let hist_rows = s.dump().unwrap().iter().filter(|(t, _, _)| *t == 1).count();
        let kept = changes.iter().filter(|(r, _, _)| *r > compacted).count()
            + keys.iter().filter(|k| state_at(&changes, k, compacted).is_some()).count();
        assert_eq!(hist_rows, kept, "step {step}: history rows after compacting at {compacted}");
    }
}

/// Goal: a data directory written in another table layout is refused with a clear error, not
/// misread. Method: a store with a key whose format record is removed (what a store written
/// before formats were recorded looks like) does not open; an empty one opens and gets one.
#[test]
fn a_store_in_another_format_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let s = Store::open(&path, StoreConfig::default()).unwrap();
        apply(&s, put("a", "1"));
        let tx = s.db().begin_write().unwrap();
        tx.open_table(META).unwrap().remove(META_FORMAT).unwrap();
        tx.commit().unwrap();
    }
    match Store::open(&path, StoreConfig::default()) {
        Err(e @ StoreError::Format { found: 1, .. }) => {
            assert!(e.to_string().contains("store format 1, this Conclave reads format 4"), "{e}")
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a format-1 store opened"),
    }
    let empty = dir.path().join("empty");
    drop(Store::open(&empty, StoreConfig::default()).unwrap());
    let s = Store::open(&empty, StoreConfig::default()).unwrap();
    assert_eq!(s.meta_get(META_FORMAT).unwrap(), Some(encode_i64(STORE_FORMAT).to_vec()));
}

/// Rewrites a store's ZooKeeper tables back to format 3 (`znodes` by path, `zk_children` with
/// stamps) or 2 (`zk_children` without stamps), with that format's record, as an older build
/// left them.
fn downgrade_zk_tables(s: &Store, format: i64) {
    let tx = s.db().begin_write().unwrap();
    let rows: Vec<(String, String, Vec<u8>, u64)> = {
        let t = tx.open_table(ZK_NODES).unwrap();
        t.iter()
            .unwrap()
            .map(|r| {
                let (k, v) = r.unwrap();
                let (p, n) = znode::split_node_key(k.value()).unwrap().unwrap_or(("", ""));
                let (meta, stamp) = znode::split_node_row(v.value()).unwrap();
                (p.to_string(), n.to_string(), meta.to_vec(), stamp)
            })
            .collect()
    };
    tx.delete_table(ZK_NODES).unwrap();
    {
        let mut znodes = tx.open_table(ZNODES_V3).unwrap();
        for (p, n, meta, _) in &rows {
            let path = if p.is_empty() { "/".to_string() } else { znode::join_path(p, n) };
            znodes.insert(path.as_str(), meta.as_slice()).unwrap();
        }
        let children = rows.iter().filter(|(p, ..)| !p.is_empty());
        if format == 3 {
            let mut t = tx.open_table(ZK_CHILDREN_V3).unwrap();
            for (p, n, _, stamp) in children {
                t.insert((p.as_str(), n.as_str()), *stamp).unwrap();
            }
        } else {
            let mut t = tx.open_table(ZK_CHILDREN_V2).unwrap();
            for (p, n, ..) in children {
                t.insert((p.as_str(), n.as_str()), ()).unwrap();
            }
        }
        tx.open_table(META).unwrap().insert(META_FORMAT, encode_i64(format).as_slice()).unwrap();
    }
    tx.commit().unwrap();
}

/// Goal: a store in format 2 (children without insertion stamps) is upgraded at open, and
/// its children then list in ZooKeeper's order. Method: a store's tables rewritten to format
/// 2's `znodes` and `zk_children` (a unit value) and format record, reopened: children created
/// one by one list as before.
#[test]
fn a_format_2_store_is_upgraded_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let names: Vec<String> = (0..20).map(|i| format!("n{i}")).collect();
    let want = {
        let s = Store::open(&path, StoreConfig::default()).unwrap();
        zk(&s, 0, vec![create("/p", "", CreateMode::Persistent)]);
        for n in &names {
            zk(&s, 0, vec![create(&format!("/p/{n}"), "", CreateMode::Persistent)]);
        }
        let want = s.read().unwrap().zk_children("/p", 100).unwrap();
        downgrade_zk_tables(&s, 2);
        want
    };
    let s = Store::open(&path, StoreConfig::default()).unwrap();
    assert_eq!(s.meta_get(META_FORMAT).unwrap(), Some(encode_i64(STORE_FORMAT).to_vec()));
    let view = s.read().unwrap();
    assert_eq!(view.zk_children("/p", 100).unwrap(), want, "20 children created one by one");
    assert_ne!(
        want,
        {
            let mut w = want.clone();
            w.sort();
            w
        },
        "not simply sorted"
    );
    assert_eq!(view.zk_children("/zookeeper", 10).unwrap(), ["config", "quota"]);
    assert_eq!(view.zk_children("/", 10).unwrap(), ["p", "zookeeper"]);
    drop(view);
    // And it goes on from there.
    zk(&s, 0, vec![create("/p/n3x", "", CreateMode::Persistent)]);
    assert_eq!(s.read().unwrap().zk_children("/p", 100).unwrap().len(), 21);
}

/// Goal: a store in format 3 (`znodes` by path beside `zk_children`) is upgraded at open to
/// the same rows a format-4 store holds, so nothing a client sees changes. Method: a tree with
/// a multi's children (stamps that differ only in their rank), an ephemeral, a deleted node,
/// a digest ACL, a container and the built-in nodes; its dump, its child lists and a session's
/// ephemerals taken, the tables rewritten to format 3, the store reopened: all equal, and
/// writes go on (a create, a delete, the session's end).
#[test]
fn a_format_3_store_is_upgraded_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let parents = ["/", "/a", "/a/m", "/zookeeper", "/c"];
    let lists = |s: &Store| -> Vec<Vec<String>> {
        let view = s.read().unwrap();
        parents.iter().map(|p| view.zk_children(p, 100).unwrap()).collect()
    };
    let (dump, children, ephemerals) = {
        let s = Store::open(&path, StoreConfig::default()).unwrap();
        apply(&s, Command::ZkSession { id: 9, ttl_s: 30 });
        zk(&s, 0, vec![create("/a", "x", CreateMode::Persistent)]);
        let multi: Vec<ZkOp> = (0..12).map(|i| create(&format!("/a/m{i}"), "", CreateMode::Persistent)).collect();
        zk(&s, 0, multi);
        zk(&s, 0, vec![create("/a/m", "", CreateMode::Persistent)]);
        zk(&s, 0, vec![create("/a/m/q-", "", CreateMode::PersistentSequential)]);
        for i in 0..3 {
            zk(&s, 9, vec![create(&format!("/a/e{i}"), "", CreateMode::Ephemeral)]);
        }
        zk(&s, 0, vec![ZkOp::Delete { path: "/a/m3".into(), version: -1 }]);
        zk(&s, 0, vec![create_op("/a/d", Some("s"), vec![digest_acl()], CreateMode::Persistent, -1)]);
        zk(&s, 0, vec![create("/c", "", CreateMode::Container)]);
        zk(&s, 0, vec![create("/c/k", "", CreateMode::Persistent)]);
        let taken = (s.dump().unwrap(), lists(&s), s.read().unwrap().zk_ephemerals(9, true).unwrap());
        downgrade_zk_tables(&s, 3);
        taken
    };
    let s = Store::open(&path, StoreConfig::default()).unwrap();
    assert_eq!(s.meta_get(META_FORMAT).unwrap(), Some(encode_i64(STORE_FORMAT).to_vec()));
    assert_eq!(s.dump().unwrap(), dump);
    assert_eq!(lists(&s), children);
    assert_eq!(s.read().unwrap().zk_ephemerals(9, true).unwrap(), ephemerals);
    {
        let tx = s.db().begin_read().unwrap();
        assert!(tx.open_table(ZNODES_V3).is_err(), "format 3's tables are gone");
        assert!(tx.open_table(ZK_CHILDREN_V3).is_err());
    }
    zk(&s, 0, vec![create("/a/m40", "", CreateMode::Persistent)]);
    zk(&s, 0, vec![ZkOp::Delete { path: "/a/m5".into(), version: -1 }]);
    apply(&s, Command::LeaseRevoke { id: 9 });
    let view = s.read().unwrap();
    // m0..m11 and m, less m3 and m5, with d and m40; the ephemerals went with the session.
    assert_eq!(view.zk_children("/a", 100).unwrap().len(), 12 + 1 - 2 + 2);
    assert!(view.zk_ephemerals(9, true).unwrap().is_empty());
}

/// Goal: getAllChildrenNumber and mntr's approximate data size count the tree as ZooKeeper
/// does, now that nodes are keyed by (parent, name) and a subtree is not one range. Method: a
/// tree with siblings whose names extend each other's (`/a`, `/ab`, `/a/b`), with leaves
/// and deep paths; the figures against counts made from the list of paths.
#[test]
fn subtree_counts_and_data_size_follow_the_paths() {
    let (_d, s) = open();
    let paths = ["/a", "/ab", "/a/b", "/a/b/c", "/a/b/c/d", "/a/bb", "/a/b0", "/ab/x", "/z", "/a/é"];
    for p in paths {
        zk(&s, 0, vec![create(p, "12345", CreateMode::Persistent)]);
    }
    let view = s.read().unwrap();
    let below = |root: &str| paths.iter().filter(|p| p.starts_with(&format!("{root}/"))).count() as u64;
    for root in ["/a", "/ab", "/a/b", "/a/b/c/d", "/z"] {
        assert_eq!(view.zk_all_children_number(root).unwrap(), below(root), "{root}");
    }
    // The built-in /zookeeper, /zookeeper/quota and /zookeeper/config, and ours.
    assert_eq!(view.zk_all_children_number("/").unwrap(), 3 + paths.len() as u64);
    // Paths in UTF-16 units ("/" once, the built-ins' paths) plus the data.
    let utf16 = |p: &str| p.encode_utf16().count() as u64;
    let builtins = 1 + utf16("/zookeeper") + utf16("/zookeeper/quota") + utf16("/zookeeper/config");
    let ours: u64 = paths.iter().map(|p| utf16(p) + 5).sum();
    assert_eq!(view.zk_data_size().unwrap(), builtins + ours);
}

/// Goal: ctime/mtime as ZooKeeper keeps them, now that a node's mtime lives in its key's row:
/// setData moves mtime (and not ctime), setACL moves neither, a TTL node's age counts from its
/// last setData. Method: commands with chosen clocks, Stat and reaper candidates checked.
#[test]
fn znode_mtime_moves_with_data_only() {
    let (_d, s) = open();
    let at = |now_ms: i64, ops: Vec<ZkOp>| {
        let txn = ZkTxn { ops, now_ms, session_id: 0, auth: Vec::new(), ttl_enabled: true };
        match apply(&s, Command::Zk(txn)).result {
            Ok(Response::Zk(r)) => r,
            other => panic!("{other:?}"),
        }
    };
    let acl = vec![ZkAcl { perms: 31, scheme: "world".into(), id: "anyone".into() }];
    at(100, vec![create("/n", "a", CreateMode::Persistent)]);
    let ttl = ZkOp::Create {
        path: "/t".into(),
        data: Some("x".into()),
        acl: acl.clone(),
        mode: CreateMode::PersistentWithTtl,
        ttl_ms: 1000,
    };
    at(100, vec![ttl]);
    let st = stat(&s, "/n");
    assert_eq!((st.ctime, st.mtime), (100, 100));
    let r = at(200, vec![ZkOp::SetData { path: "/n".into(), data: Some("bb".into()), version: -1 }]);
    let ZkOpResult::SetData { stat: st } = &r[0] else { panic!("{r:?}") };
    assert_eq!((st.ctime, st.mtime, st.data_length), (100, 200, 2));
    assert_eq!(stat(&s, "/n"), *st, "the reply's Stat is the stored one");
    at(300, vec![ZkOp::SetAcl { path: "/n".into(), acl: acl.clone(), version: -1 }]);
    let st = stat(&s, "/n");
    assert_eq!((st.ctime, st.mtime, st.aversion, st.version), (100, 200, 1, 1));

    let due = |now_ms: i64| s.read().unwrap().zk_reap_candidates(now_ms, 10).unwrap();
    assert_eq!(due(1101), ["/t"], "unmodified for its TTL");
    at(5000, vec![ZkOp::SetData { path: "/t".into(), data: Some("y".into()), version: -1 }]);
    assert!(due(5900).is_empty(), "a setData restarts the TTL");
    assert_eq!(due(6001), ["/t"]);
    // The reaper's own re-check in apply uses the same clock.
    assert_eq!(at(5900, vec![ZkOp::Reap { path: "/t".into() }]), [ZkOpResult::Error(zk_err::BAD_VERSION)]);
    assert_eq!(at(6001, vec![ZkOp::Reap { path: "/t".into() }]), [ZkOpResult::Deleted]);
}

/// An applied prepared batch is left uncommitted (its commit is off the write's critical
/// path) but is never invisible: the next read, prepare or write commits it first. Dropped
/// uncommitted (a crash), it is gone from the store and the applied log id is the one before
/// it: what the raft log replays.
#[test]
fn applied_batches_are_committed_by_whoever_comes_next() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let s = Store::open(&path, StoreConfig::default()).unwrap();
    let prepare_and_apply = |cmds: Vec<Command>, id: &[u8]| {
        assert!(s.prepare(Arc::new(cmds.clone()), Duration::ZERO, s.applies()).unwrap());
        s.write_prepared(false, &cmds, &[("applied", id)]).unwrap().expect("prepared");
    };
    s.write(true, |tx| tx.set_meta("applied", b"1")).unwrap();

    // A reader commits it.
    prepare_and_apply(vec![put("a", "1")], b"2");
    assert!(s.uncommitted.load(Ordering::SeqCst));
    assert_eq!(values(&get_at(&s, "a", "", 0).unwrap()), ["1"]);
    assert!(!s.uncommitted.load(Ordering::SeqCst));

    // The next prepare commits it and runs on the state after it; so does a plain write.
    prepare_and_apply(vec![put("a", "2")], b"3");
    prepare_and_apply(vec![put("a", "3")], b"4");
    assert_eq!(get_at(&s, "a", "", 0).unwrap().kvs[0].version, 3);
    prepare_and_apply(vec![put("b", "1")], b"5");
    assert_eq!(apply(&s, put("c", "1")).revision, 6, "the write ran after the applied batch");
    assert_eq!(s.meta_get("applied").unwrap().as_deref(), Some(&b"5"[..]));

    // sync makes it durable.
    prepare_and_apply(vec![put("d", "1")], b"7");
    s.sync().unwrap();
    // A crash: the last applied batch is lost with its applied log id, nothing else.
    prepare_and_apply(vec![put("e", "1")], b"8");
    assert!(s.uncommitted.load(Ordering::SeqCst));
    drop(s);
    let s = Store::open(&path, StoreConfig::default()).unwrap();
    assert_eq!(s.meta_get("applied").unwrap().as_deref(), Some(&b"7"[..]));
    assert_eq!(keys(&get_at(&s, "", "\0", 0).unwrap()), ["a", "b", "c", "d"]);
}

/// While nothing reads, consecutive prepared batches continue the applied ones' transaction
/// (one commit for several entries). A read arriving while such a transaction also holds a
/// batch not applied yet drops it and runs the applied ones again: the read sees exactly the
/// applied batches, and the dropped one is applied as usual later.
#[test]
fn prepared_batches_continue_unread_applied_ones_and_a_read_replays_them() {
    let (_d1, plain) = open();
    let (_d2, s) = open();
    let batches: Vec<Vec<Command>> =
        vec![vec![put("a", "1"), put("b", "1")], vec![put("a", "2"), del("b", "")], vec![put("c", "1")]];
    let mut want = Vec::new();
    for (i, b) in batches.iter().enumerate() {
        let id = format!("{i}");
        want.push(
            plain
                .write(false, |tx| {
                    let r = b.iter().map(|c| tx.apply(c)).collect::<Result<Vec<_>, _>>()?;
                    tx.set_meta("applied", id.as_bytes())?;
                    Ok(r)
                })
                .unwrap()
                .0,
        );
    }
    let prepare = |b: &Vec<Command>| assert!(s.prepare(Arc::new(b.clone()), Duration::ZERO, s.applies()).unwrap());
    let applied = |b: &Vec<Command>, id: &str| s.write_prepared(false, b, &[("applied", id.as_bytes())]).unwrap();

    prepare(&batches[0]);
    let got0 = applied(&batches[0], "0").expect("prepared").0;
    prepare(&batches[1]);
    assert!(
        matches!(&*s.lock_pending(), Pending::Prepared(p) if p.unsaved.batches.len() == 1),
        "continues the applied batch's transaction"
    );
    // A read now: the applied batch is replayed and committed, the prepared one dropped.
    assert_eq!(values(&get_at(&s, "a", "", 0).unwrap()), ["1"]);
    assert_eq!(keys(&get_at(&s, "", "\0", 0).unwrap()), ["a", "b"]);
    assert_eq!(s.meta_get("applied").unwrap().as_deref(), Some(&b"0"[..]));
    assert!(applied(&batches[1], "1").is_none(), "dropped by the read");
    let got1 = s
        .write(false, |tx| {
            let r = batches[1].iter().map(|c| tx.apply(c)).collect::<Result<Vec<_>, _>>()?;
            tx.set_meta("applied", b"1")?;
            Ok(r)
        })
        .unwrap()
        .0;

    // Batch 2 after a plain write: prepared on committed state, as usual.
    prepare(&batches[2]);
    let got2 = applied(&batches[2], "2").expect("prepared").0;
    assert_eq!(format!("{:?}", [got0, got1, got2]), format!("{want:?}"));
    assert_eq!(keys(&get_at(&s, "", "\0", 0).unwrap()), ["a", "c"]);
    assert_eq!(s.meta_get("applied").unwrap().as_deref(), Some(&b"2"[..]));
    assert_eq!(s.read().unwrap().revision, plain.read().unwrap().revision);

    // Many batches with no read share one transaction, up to the bound.
    s.sync().unwrap();
    let before = s.applies();
    for i in 0..UNSAVED_BATCHES_MAX + 2 {
        let b = vec![put("n", &i.to_string())];
        prepare(&b);
        applied(&b, "x").expect("prepared");
    }
    assert_eq!(s.applies(), before + UNSAVED_BATCHES_MAX as u64 + 2);
    assert!(matches!(&*s.lock_pending(), Pending::Applied(o) if o.unsaved.batches.len() == 2), "bounded");
    assert_eq!(get_at(&s, "n", "", 0).unwrap().kvs[0].version, UNSAVED_BATCHES_MAX as i64 + 2);
}

/// A put of `v` to "k", run ahead and then applied (non-durable), as the preparer and the
/// state machine do it.
fn prepared_put(s: &Store, v: &str) {
    let b = vec![put("k", v)];
    assert!(s.prepare(Arc::new(b.clone()), Duration::ZERO, s.applies()).unwrap());
    s.write_prepared(false, &b, &[("applied", v.as_bytes())]).unwrap().expect("prepared");
}

/// Store::commit_for_readers commits an applied batch and opens the view after it only while
/// reads are under way, and never touches a prepared transaction (which still holds a batch
/// not applied).
#[test]
fn applied_batches_are_committed_for_readers_only_while_reads_happen() {
    let (_d, s) = open();
    let step = |v: &str| prepared_put(&s, v);
    // Nothing has read: the batch stays open for the next one to continue.
    step("1");
    assert!(!s.wants_commit_for_readers());
    s.commit_for_readers().unwrap();
    assert!(matches!(&*s.lock_pending(), Pending::Applied(_)));

    // A read (it commits), then another applied batch: committed for the readers, view ready.
    assert_eq!(values(&get_at(&s, "k", "", 0).unwrap()), ["1"]);
    step("2");
    assert!(s.wants_commit_for_readers());
    s.commit_for_readers().unwrap();
    assert!(matches!(&*s.lock_pending(), Pending::Idle));
    assert!(!s.uncommitted.load(Ordering::SeqCst));
    let view = s.view.lock().unwrap().clone().expect("the view after the commit is open");
    assert!(Arc::ptr_eq(&view, &s.read().unwrap()), "the next read takes that view");
    assert_eq!(values(&get_at(&s, "k", "", 0).unwrap()), ["2"]);
    assert!(!s.wants_commit_for_readers(), "nothing applied since");

    // A prepared batch continuing an applied one is left alone: it is not applied yet.
    step("3");
    assert!(s.prepare(Arc::new(vec![put("k", "4")]), Duration::ZERO, s.applies()).unwrap());
    s.commit_for_readers().unwrap();
    assert!(matches!(&*s.lock_pending(), Pending::Prepared(_)));
    s.write_prepared(false, &[put("k", "4")], &[("applied", b"4")]).unwrap().expect("still prepared");
    assert_eq!(values(&get_at(&s, "k", "", 0).unwrap()), ["4"]);
}

/// Store::prepare runs commands ahead of their commit: readers do not see them, committing
/// with write_prepared gives exactly what Store::write gives, and any other write, or a
/// write_prepared of other commands, aborts the prepared transaction instead of waiting for it.
#[test]
fn prepared_writes_match_plain_writes_and_never_block_others() {
    let (_d1, plain) = open();
    let (_d2, ahead) = open();
    let batch = vec![put("a", "1"), put("b", "2"), del("a", ""), put("c", "3")];
    let bookkeeping: &[(&str, &[u8])] = &[("applied", b"7")];
    for s in [&plain, &ahead] {
        apply(s, put("a", "0"));
    }

    let (want, want_fx) = plain
        .write(false, |tx| {
            let r = batch.iter().map(|c| tx.apply(c)).collect::<Result<Vec<_>, _>>()?;
            tx.set_meta(bookkeeping[0].0, bookkeeping[0].1)?;
            Ok(r)
        })
        .unwrap();
    assert!(ahead.prepare(Arc::new(batch.clone()), Duration::ZERO, ahead.applies()).unwrap());
    assert_eq!(values(&get_at(&ahead, "a", "", 0).unwrap()), ["0"], "not visible before commit");
    let (got, got_fx) = ahead.write_prepared(false, &batch, bookkeeping).unwrap().expect("prepared");
    assert_eq!(format!("{got:?}"), format!("{want:?}"));
    assert_eq!(format!("{:?}", got_fx.events), format!("{:?}", want_fx.events));
    assert_eq!(got_fx.revision, want_fx.revision);
    assert_eq!(ahead.meta_get("applied").unwrap().as_deref(), Some(&b"7"[..]));
    assert_eq!(keys(&get_at(&ahead, "", "\0", 0).unwrap()), ["b", "c"]);
    assert!(ahead.write_prepared(false, &batch, bookkeeping).unwrap().is_none(), "used once");

    // Another write aborts it (it would otherwise wait forever for redb's write lock).
    assert!(ahead.prepare(Arc::new(vec![put("x", "1")]), Duration::ZERO, ahead.applies()).unwrap());
    apply(&ahead, put("y", "1"));
    ahead.sync().unwrap();
    ahead.raft_meta_put("vote", b"v").unwrap();
    assert!(ahead.write_prepared(false, &[put("x", "1")], bookkeeping).unwrap().is_none());
    assert!(get_at(&ahead, "x", "", 0).unwrap().kvs.is_empty(), "aborted, not committed");

    // Other commands: no match, aborted, and the next write goes through.
    assert!(ahead.prepare(Arc::new(vec![put("x", "1")]), Duration::ZERO, ahead.applies()).unwrap());
    assert!(ahead.write_prepared(false, &[put("x", "2")], bookkeeping).unwrap().is_none());
    assert_eq!(apply(&ahead, put("z", "1")).revision, 8);
    assert!(get_at(&ahead, "x", "", 0).unwrap().kvs.is_empty());

    // One prepared at a time: the next one waits for the first to be used, then runs on the
    // state after it; if the first is not used in time, the next is not prepared at all.
    let first = vec![put("p", "1")];
    let second = vec![put("p", "2")];
    assert!(ahead.prepare(Arc::new(first.clone()), Duration::ZERO, ahead.applies()).unwrap());
    assert!(
        !ahead.prepare(Arc::new(second.clone()), Duration::from_millis(10), ahead.applies()).unwrap(),
        "first still pending"
    );
    std::thread::scope(|scope| {
        let (store, after_first, commands) = (ahead.clone(), ahead.applies() + 1, Arc::new(second.clone()));
        let next = scope.spawn(move || store.prepare(commands, Duration::from_secs(30), after_first).unwrap());
        std::thread::sleep(Duration::from_millis(20));
        assert!(ahead.write_prepared(false, &first, bookkeeping).unwrap().is_some());
        assert!(next.join().unwrap(), "prepared once the first was committed");
    });
    let (_, fx) = ahead.write_prepared(false, &second, bookkeeping).unwrap().expect("second prepared");
    assert_eq!(fx.revision, 10, "ran on the state after the first");
    // Meant to follow a commit that is not the last one: it would run on the wrong state.
    let stale = ahead.applies() - 1;
    assert!(!ahead.prepare(Arc::new(vec![put("q", "1")]), Duration::ZERO, stale).unwrap());
    assert!(ahead.write_prepared(false, &[put("q", "1")], bookkeeping).unwrap().is_none());
    assert_eq!(values(&get_at(&ahead, "p", "", 0).unwrap()), ["2"]);
}

/// Overwrites rewrite a key's `kv` row in place (`get_mut`) across many leaf pages and many
/// transactions: every key's state, every old revision's value and the state after a reopen
/// must match a model. 3000 keys fill several B-tree leaves; each round's transaction
/// rewrites a random third of them (some twice, so a page dirtied earlier in the same
/// transaction is rewritten again), mixed with deletes and re-creates.
#[test]
fn in_place_overwrites_match_a_model() {
    use std::collections::BTreeMap;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let s = Store::open(&path, StoreConfig::default()).unwrap();
    let key = |i: u64| format!("k{:05}", i * 7919 % 3000);
    // key -> (create_revision, mod_revision, version, value); history: (key, rev) -> value
    let mut model: BTreeMap<String, (i64, i64, i64, String)> = BTreeMap::new();
    let mut history: Vec<(String, i64, Option<String>)> = Vec::new();
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut rnd = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for i in 0..3000 {
        let r = apply(&s, put(&key(i), "v0")).revision;
        model.insert(key(i), (r, r, 1, "v0".into()));
    }
    for round in 0..6 {
        let mut cmds = Vec::new();
        for n in 0..1000 {
            let k = key(rnd(3000));
            if rnd(20) == 0 {
                cmds.push(del(&k, ""));
            } else {
                cmds.push(put(&k, &format!("r{round}n{n}")));
            }
        }
        let (results, _) =
            s.write(false, |tx| cmds.iter().map(|c| tx.apply(c)).collect::<Result<Vec<Applied>, _>>()).unwrap();
        for (cmd, r) in cmds.iter().zip(results) {
            match cmd {
                Command::Put(p) => {
                    let k = String::from_utf8(p.key.clone()).unwrap();
                    let v = String::from_utf8(p.value.clone()).unwrap();
                    let e = model.entry(k.clone()).or_insert((r.revision, 0, 0, String::new()));
                    *e = (e.0, r.revision, e.2 + 1, v.clone());
                    history.push((k, r.revision, Some(v)));
                }
                Command::DeleteRange(d) => {
                    let k = String::from_utf8(d.key.clone()).unwrap();
                    if model.remove(&k).is_some() {
                        history.push((k, r.revision, None));
                    }
                }
                _ => unreachable!(),
            }
        }
    }
    let check = |s: &Store| {
        let all = get_at(s, "k", "l", 0).unwrap();
        assert_eq!(all.kvs.len(), model.len());
        for kv in &all.kvs {
            let k = String::from_utf8(kv.key.clone()).unwrap();
            let (create, modr, version, v) = &model[&k];
            assert_eq!(
                (kv.create_revision, kv.mod_revision, kv.version, kv.value.as_slice()),
                (*create, *modr, *version, v.as_bytes()),
                "{k}"
            );
        }
        // Every 97th change read back at its own revision.
        for (k, rev, v) in history.iter().step_by(97) {
            let got = get_at(s, k, "", *rev).unwrap();
            assert_eq!(values(&got).first().map(String::as_str), v.as_deref(), "{k} at {rev}");
        }
    };
    check(&s);
    drop(s);
    let s = Store::open(&path, StoreConfig::default()).unwrap();
    check(&s);
}

/// Goal: the znodes a view caches answer exactly as uncached reads of the same snapshot, a
/// Stat-only read never hides the data from a later getData, and a commit's new view shows the
/// commit (a held view keeps showing its snapshot). Method: reads through a held view around a
/// write, compared with the reads of a fresh view.
#[test]
fn a_views_znode_cache_answers_as_its_snapshot() {
    let (_d, s) = open();
    zk(&s, 0, vec![create("/c", "one", CreateMode::Persistent)]);
    let old = s.read().unwrap();
    assert!(old.zk_node_stat("/c").unwrap().unwrap().data.is_none(), "a Stat-only read, cached");
    let n = old.zk_node("/c").unwrap().unwrap();
    assert_eq!(n.data.as_deref(), Some(&b"one"[..]), "the data after a Stat-only read of the same path");
    assert!(old.zk_node("/missing").unwrap().is_none());
    assert!(old.zk_node_stat("/missing").unwrap().is_none(), "a missing node is cached as missing");

    zk(&s, 0, vec![ZkOp::SetData { path: "/c".into(), data: Some(b"two".to_vec()), version: -1 }]);
    zk(&s, 0, vec![create("/missing", "", CreateMode::Persistent)]);
    let new = s.read().unwrap();
    assert!(!Arc::ptr_eq(&old, &new), "a commit drops the shared view");
    let m = new.zk_node("/c").unwrap().unwrap();
    assert_eq!((m.data.as_deref(), m.stat.version), (Some(&b"two"[..]), 1));
    assert!(new.zk_node("/missing").unwrap().is_some());
    // The held view still answers from its snapshot, cached or not.
    assert_eq!(old.zk_node("/c").unwrap().unwrap(), n);
    assert!(old.zk_node("/missing").unwrap().is_none());
}

/// Goal: a view lists a znode's children the same way whether it reads them from redb or from
/// its cache (order, the caller's max), and a view after a create or delete shows the change
/// (the cache dies with its view). Method: list twice in one view, change, list again.
#[test]
fn child_lists_are_cached_per_view_and_follow_changes() {
    let (_d, s) = open();
    zk(&s, 0, vec![create("/p", "", CreateMode::Persistent)]);
    for n in ["c", "a", "b"] {
        zk(&s, 0, vec![create(&format!("/p/{n}"), "", CreateMode::Persistent)]);
    }
    let view = s.read().unwrap();
    assert_eq!(view.zk_children("/p", 10).unwrap(), ["a", "b", "c"]);
    assert_eq!(view.zk_children("/p", 10).unwrap(), ["a", "b", "c"], "from the view's cache");
    assert_eq!(view.zk_children("/p", 2).unwrap(), ["a", "b"]);
    assert!(view.zk_children("/p/a", 10).unwrap().is_empty());
    zk(&s, 0, vec![ZkOp::Delete { path: "/p/b".into(), version: -1 }, create("/p/d", "", CreateMode::Persistent)]);
    assert_eq!(view.zk_children("/p", 10).unwrap(), ["a", "b", "c"], "an old view keeps its snapshot");
    assert_eq!(s.read().unwrap().zk_children("/p", 10).unwrap(), ["a", "c", "d"]);
}

/// Store::commit_if_full commits the applied batches of a write-only load once their
/// transaction can take no further batch, and not before; the next batch then begins a new
/// transaction instead of committing first.
#[test]
fn a_full_transaction_of_applied_batches_is_committed_early() {
    let (_d, s) = open();
    let step = |v: &str| prepared_put(&s, v);
    for i in 0..UNSAVED_BATCHES_MAX - 1 {
        step(&i.to_string());
        assert!(!s.unsaved_full(), "room for more after {} batches", i + 1);
        s.commit_if_full().unwrap();
        assert!(matches!(&*s.lock_pending(), Pending::Applied(_)), "not committed early");
    }
    step("last");
    assert!(s.unsaved_full());
    s.commit_if_full().unwrap();
    assert!(matches!(&*s.lock_pending(), Pending::Idle));
    assert!(!s.uncommitted.load(Ordering::SeqCst));
    assert!(!s.unsaved_full());
    step("next");
    assert!(matches!(&*s.lock_pending(), Pending::Applied(o) if o.unsaved.batches.len() == 1), "a new transaction");
    assert_eq!(values(&get_at(&s, "k", "", 0).unwrap()), ["next"]);
}

/// Goal: bookkeeping rows a prepare wrote ahead (`prepare_logged`) are what the apply finds and
/// keeps when it names the same rows, and the apply's own rows win when they differ; either
/// way the rows are there after a commit, and a prepare dropped before its apply leaves none.
#[test]
fn a_prepare_writes_its_applys_bookkeeping_rows_ahead() {
    let (_d, s) = open();
    let row = |v: &str| vec![("applied".to_string(), v.as_bytes().to_vec())];
    let b = vec![put("k", "1")];
    assert!(s.prepare_logged(Arc::new(b.clone()), Duration::ZERO, s.applies(), || row("a")).unwrap());
    assert!(matches!(&*s.lock_pending(), Pending::Prepared(p) if p.meta == row("a")));
    s.write_prepared(false, &b, &[("applied", b"a")]).unwrap().expect("prepared");
    assert_eq!(s.meta_get("applied").unwrap().as_deref(), Some(&b"a"[..]));

    let b = vec![put("k", "2")];
    assert!(s.prepare_logged(Arc::new(b.clone()), Duration::ZERO, s.applies(), || row("b")).unwrap());
    s.write_prepared(false, &b, &[("applied", b"c")]).unwrap().expect("prepared");
    assert_eq!(s.meta_get("applied").unwrap().as_deref(), Some(&b"c"[..]), "the apply's row wins");

    // Dropped unapplied (another write comes first): its row goes with it.
    let b = vec![put("k", "3")];
    assert!(s.prepare_logged(Arc::new(b), Duration::ZERO, s.applies(), || row("d")).unwrap());
    s.write(false, |tx| tx.set_meta("other", b"x")).unwrap();
    assert_eq!(s.meta_get("applied").unwrap().as_deref(), Some(&b"c"[..]));
    assert_eq!(values(&get_at(&s, "k", "", 0).unwrap()), ["2"]);
}

/// Goal: a put that expects its key to be new (`put_new_at`: a znode's create, one descent
/// instead of two) leaves the store, its reply and its events exactly as a plain put does,
/// for a new key and also for a key that has a row after all; with and without watchers that
/// want the replaced values.
#[test]
fn a_put_expecting_a_new_key_matches_a_plain_put_either_way() {
    let run = |new_expected: bool, watchers: bool| {
        let (_d, s) = open();
        if watchers {
            s.prev_value_watcher(true);
        }
        apply(&s, put("old", "1"));
        apply(&s, put("old", "2"));
        let (replies, fx) = s
            .write(true, |tx| {
                let mut replies = Vec::new();
                for key in ["old", "new"] {
                    let mut rev = tx.begin();
                    let op = PutOp { key: key.into(), value: "3".into(), prev_kv: true, ..Default::default() };
                    let r = if new_expected { tx.put_new_at(&mut rev, &op, 7) } else { tx.put_at(&mut rev, &op, 7) };
                    replies.push(r.map_err(|e| match e {
                        Error::Store(s) => s,
                        Error::Apply(a) => panic!("{a:?}"),
                    })?);
                    tx.end(rev);
                }
                Ok(replies)
            })
            .unwrap();
        (s.dump().unwrap(), replies, format!("{:?}", fx.events))
    };
    for watchers in [false, true] {
        let (plain_rows, plain_replies, plain_events) = run(false, watchers);
        let (new_rows, new_replies, new_events) = run(true, watchers);
        assert_eq!(new_rows, plain_rows);
        assert_eq!(new_replies, plain_replies);
        assert_eq!(new_events, plain_events);
        assert!(plain_replies[0].prev_kv.is_some(), "the existing key's reply has its prev_kv");
    }
}
