//! The etcd gRPC API against an in-process node over real TCP: watch ordering under a slow
//! reader, history replay, lease expiry through raft, restart durability.

mod common;

use std::time::Duration;

use conclave::pb::etcdserverpb::{
    watch_request::RequestUnion, LeaseGrantRequest, LeaseTimeToLiveRequest, PutRequest, RangeRequest,
    WatchCreateRequest, WatchRequest, WatchResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

fn create(key: &str, range_end: &str, start_revision: i64) -> WatchRequest {
    WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: key.into(),
            range_end: range_end.into(),
            start_revision,
            ..Default::default()
        })),
    }
}

async fn put(
    kv: &mut conclave::pb::etcdserverpb::kv_client::KvClient<tonic::transport::Channel>,
    k: &str,
    v: &str,
) -> i64 {
    let r = kv.put(PutRequest { key: k.into(), value: v.into(), ..Default::default() }).await.unwrap().into_inner();
    r.header.unwrap().revision
}

/// Goal: a watcher that does not read while thousands of writes happen still receives every
/// event exactly once, in revision order. Method: open a watch, stop reading, write more than
/// every queue on the path can hold, then drain and check revisions are 2..=N+1 with no gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_watcher_loses_nothing_and_sees_no_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let node = common::start(dir.path()).await;
    let (mut kv, mut watch, _) = common::clients(&node).await;
    let first = put(&mut kv, "w/0", "x").await;
    let (tx, rx) = mpsc::channel(4);
    tx.send(create("w/", "w0", 0)).await.unwrap();
    let mut stream = watch.watch(ReceiverStream::new(rx)).await.unwrap().into_inner();
    let created: WatchResponse = stream.message().await.unwrap().unwrap();
    assert!(created.created);
    const PUTS: i64 = 3000;
    let value = "v".repeat(512);
    let mut tasks = Vec::new();
    for w in 0..8 {
        let mut kv = kv.clone();
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..PUTS / 8 {
                put(&mut kv, &format!("w/{w}/{i}"), &value).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut seen = Vec::new();
    while (seen.len() as i64) < PUTS {
        let m = tokio::time::timeout(Duration::from_secs(20), stream.message())
            .await
            .expect("events keep coming")
            .unwrap()
            .unwrap();
        for e in m.events {
            seen.push(e.kv.unwrap().mod_revision);
        }
    }
    let expected: Vec<i64> = (first + 1..=first + PUTS).collect();
    assert_eq!(seen, expected);
    drop(tx);
    node.shutdown().await;
}

/// Goal: a watch from an old revision replays history, then continues live without a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_old_revision_replays_then_follows() {
    let dir = tempfile::tempdir().unwrap();
    let node = common::start(dir.path()).await;
    let (mut kv, mut watch, _) = common::clients(&node).await;
    for i in 0..50 {
        put(&mut kv, "k", &i.to_string()).await;
    }
    let (tx, rx) = mpsc::channel(4);
    tx.send(create("k", "", 11)).await.unwrap();
    let mut stream = watch.watch(ReceiverStream::new(rx)).await.unwrap().into_inner();
    assert!(stream.message().await.unwrap().unwrap().created);
    let writer = {
        let mut kv = kv.clone();
        tokio::spawn(async move {
            for i in 50..100 {
                put(&mut kv, "k", &i.to_string()).await;
            }
        })
    };
    let mut revs = Vec::new();
    while revs.len() < 91 {
        let m = tokio::time::timeout(Duration::from_secs(10), stream.message()).await.unwrap().unwrap().unwrap();
        revs.extend(m.events.into_iter().map(|e| e.kv.unwrap().mod_revision));
    }
    writer.await.unwrap();
    assert_eq!(revs, (11..=101).collect::<Vec<i64>>());
    drop(tx);
    node.shutdown().await;
}

/// Goal: an expired lease is revoked through raft, its keys deleted, and the lease is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_expiry_deletes_keys() {
    let dir = tempfile::tempdir().unwrap();
    let node = common::start(dir.path()).await;
    let (mut kv, _, mut lease) = common::clients(&node).await;
    // TTL 1 is raised to etcd's minimum of 2 s.
    let g = lease.lease_grant(LeaseGrantRequest { ttl: 1, id: 0 }).await.unwrap().into_inner();
    assert_eq!(g.ttl, 2);
    kv.put(PutRequest { key: "eph".into(), value: "1".into(), lease: g.id, ..Default::default() }).await.unwrap();
    let gone = common::eventually(Duration::from_secs(6), || {
        let mut kv = kv.clone();
        async move {
            kv.range(RangeRequest { key: "eph".into(), ..Default::default() }).await.unwrap().into_inner().count == 0
        }
    })
    .await;
    assert!(gone, "the key goes with its lease");
    let ttl = lease.lease_time_to_live(LeaseTimeToLiveRequest { id: g.id, keys: false }).await.unwrap().into_inner();
    assert_eq!(ttl.ttl, -1);
    node.shutdown().await;
}

/// Goal: a clean restart keeps revision, data, leases (with a renewed TTL) and compaction, and
/// moves to the next raft term as etcd does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_revision_leases_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let lease_id;
    {
        let node = common::start(dir.path()).await;
        let (mut kv, _, mut lease) = common::clients(&node).await;
        for i in 0..20 {
            put(&mut kv, &format!("k{i}"), "v").await;
        }
        // etcd's numbering: a fresh member leads in term 2.
        let h = kv.range(RangeRequest { key: "k0".into(), ..Default::default() }).await.unwrap().into_inner();
        assert_eq!(h.header.unwrap().raft_term, 2);
        lease_id = lease.lease_grant(LeaseGrantRequest { ttl: 100, id: 0 }).await.unwrap().into_inner().id;
        kv.put(PutRequest { key: "held".into(), value: "1".into(), lease: lease_id, ..Default::default() })
            .await
            .unwrap();
        kv.compact(conclave::pb::etcdserverpb::CompactionRequest { revision: 10, physical: true }).await.unwrap();
        drop((kv, lease));
        node.shutdown().await;
    }
    let node = common::restart(dir.path()).await;
    let (mut kv, _, mut lease) = common::clients(&node).await;
    let r = kv
        .range(RangeRequest { key: "k".into(), range_end: "l".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.count, 20);
    let header = r.header.unwrap();
    assert_eq!(header.revision, 22);
    // A restarted member campaigns in the next term, as etcd does.
    assert_eq!(header.raft_term, 3);
    let err = kv.range(RangeRequest { key: "k0".into(), revision: 5, ..Default::default() }).await.unwrap_err();
    assert_eq!(err.message(), "etcdserver: mvcc: required revision has been compacted");
    let t = lease.lease_time_to_live(LeaseTimeToLiveRequest { id: lease_id, keys: true }).await.unwrap().into_inner();
    assert_eq!(t.granted_ttl, 100);
    assert!(t.ttl >= 98, "TTL renewed on restart, got {}", t.ttl);
    assert_eq!(t.keys, vec![b"held".to_vec()]);
    assert_eq!(put(&mut kv, "next", "v").await, 23);
    node.shutdown().await;
}

fn create_with(c: WatchCreateRequest) -> WatchRequest {
    WatchRequest { request_union: Some(RequestUnion::CreateRequest(c)) }
}

async fn next(stream: &mut tonic::Streaming<WatchResponse>) -> WatchResponse {
    tokio::time::timeout(Duration::from_secs(10), stream.message()).await.expect("a response in time").unwrap().unwrap()
}

/// Goal: the watch options etcdctl and clients use beyond plain events: NOPUT/NODELETE
/// filters, prev_kv, cancel, client progress requests, periodic progress notifications and
/// fragmentation of a response larger than the request limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_filters_progress_cancel_and_fragments() {
    use conclave::pb::etcdserverpb::watch_create_request::FilterType;
    use conclave::pb::etcdserverpb::{DeleteRangeRequest, WatchCancelRequest, WatchProgressRequest};
    let dir = tempfile::tempdir().unwrap();
    let node = common::start_with(
        dir.path(),
        &["--experimental-watch-progress-notify-interval", "300ms", "--max-request-bytes", "65536"],
    )
    .await;
    let (mut kv, mut watch, _) = common::clients(&node).await;
    let (tx, rx) = mpsc::channel(8);
    let mut stream = watch.watch(ReceiverStream::new(rx)).await.unwrap().into_inner();

    // Watch 0: deletes only, with prev_kv. Watch 1: puts only.
    tx.send(create_with(WatchCreateRequest {
        key: "f".into(),
        filters: vec![FilterType::Noput as i32],
        prev_kv: true,
        ..Default::default()
    }))
    .await
    .unwrap();
    assert_eq!(next(&mut stream).await.watch_id, 0);
    tx.send(create_with(WatchCreateRequest {
        key: "f".into(),
        filters: vec![FilterType::Nodelete as i32],
        ..Default::default()
    }))
    .await
    .unwrap();
    assert_eq!(next(&mut stream).await.watch_id, 1);
    put(&mut kv, "f", "1").await;
    kv.delete_range(DeleteRangeRequest { key: "f".into(), ..Default::default() }).await.unwrap();
    let a = next(&mut stream).await;
    assert_eq!((a.watch_id, a.events.len(), a.events[0].r#type), (1, 1, 0), "the put goes to the NODELETE watcher");
    let b = next(&mut stream).await;
    assert_eq!((b.watch_id, b.events[0].r#type), (0, 1), "the delete goes to the NOPUT watcher");
    assert_eq!(b.events[0].prev_kv.as_ref().unwrap().value, b"1");

    // A progress request gets etcd 3.5's one answer for the stream: watch id -1, current revision.
    tx.send(WatchRequest { request_union: Some(RequestUnion::ProgressRequest(WatchProgressRequest {})) })
        .await
        .unwrap();
    let p = next(&mut stream).await;
    assert!(p.events.is_empty() && !p.created && !p.canceled);
    assert_eq!((p.watch_id, p.header.unwrap().revision), (-1, 3));

    // Cancel both; then nothing more arrives for them.
    for id in [0, 1] {
        tx.send(WatchRequest { request_union: Some(RequestUnion::CancelRequest(WatchCancelRequest { watch_id: id })) })
            .await
            .unwrap();
        let c = next(&mut stream).await;
        assert!(c.canceled);
        assert_eq!(c.watch_id, id);
    }

    // Periodic progress notifications go to watchers that asked for them.
    tx.send(create_with(WatchCreateRequest { key: "p".into(), progress_notify: true, ..Default::default() }))
        .await
        .unwrap();
    let created = next(&mut stream).await;
    assert!(created.created);
    let n = next(&mut stream).await;
    assert_eq!((n.watch_id, n.events.len()), (created.watch_id, 0), "a progress notification");

    // A replay bigger than the request limit plus etcd's 512 KiB allowance arrives in
    // fragments when asked to.
    let value = "x".repeat(20_000);
    for i in 0..40 {
        put(&mut kv, &format!("big/{i:02}"), &value).await;
    }
    tx.send(create_with(WatchCreateRequest {
        key: "big/".into(),
        range_end: "big0".into(),
        start_revision: 1,
        fragment: true,
        ..Default::default()
    }))
    .await
    .unwrap();
    // Watcher "p" gets a progress notification every 300 ms, and one can come before this
    // watcher's created reply: skip them (taking one for the reply made this loop wait for
    // events of "p" forever — a CI hang). A deadline turns any other stall into a failure.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let created = loop {
        let r = next(&mut stream).await;
        if r.created {
            break r;
        }
        assert!(tokio::time::Instant::now() < deadline, "no created reply for the fragmenting watcher");
    };
    assert_ne!(created.watch_id, n.watch_id);
    let mut parts = 0;
    let mut events = 0;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the replay did not end in time: {parts} parts, {events} events"
        );
        let r = next(&mut stream).await;
        if r.watch_id != created.watch_id || r.events.is_empty() {
            continue; // progress notifications of the other watcher
        }
        parts += 1;
        events += r.events.len();
        if !r.fragment {
            break;
        }
    }
    assert_eq!(events, 40);
    assert!(parts >= 2, "800 KB of events under a 64 + 512 KiB bound come in fragments, got {parts}");
    drop(tx);
    node.shutdown().await;
}

/// Goal: the v3lock service is a real mutex: a second locker waits until the first unlocks,
/// and a holder whose lease is revoked loses the lock to the next waiter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v3lock_serializes_holders() {
    use conclave::pb::etcdserverpb::LeaseRevokeRequest;
    use conclave::pb::v3lockpb::lock_client::LockClient;
    use conclave::pb::v3lockpb::{LockRequest, UnlockRequest};
    let dir = tempfile::tempdir().unwrap();
    let node = common::start(dir.path()).await;
    let ch = common::channel(&node).await;
    let (_, _, mut lease) = common::clients(&node).await;
    let mut locks = LockClient::new(ch.clone());
    let l1 = lease.lease_grant(LeaseGrantRequest { ttl: 60, id: 0 }).await.unwrap().into_inner().id;
    let l2 = lease.lease_grant(LeaseGrantRequest { ttl: 60, id: 0 }).await.unwrap().into_inner().id;
    let l3 = lease.lease_grant(LeaseGrantRequest { ttl: 60, id: 0 }).await.unwrap().into_inner().id;
    let k1 = locks.lock(LockRequest { name: b"m".to_vec(), lease: l1 }).await.unwrap().into_inner().key;
    assert_eq!(k1, format!("m/{l1:x}").into_bytes());
    let second = {
        let mut locks = LockClient::new(ch.clone());
        tokio::spawn(async move {
            locks.lock(LockRequest { name: b"m".to_vec(), lease: l2 }).await.unwrap().into_inner().key
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!second.is_finished(), "the second locker waits while the first holds the lock");
    locks.unlock(UnlockRequest { key: k1 }).await.unwrap();
    let k2 = tokio::time::timeout(Duration::from_secs(5), second).await.expect("acquired after unlock").unwrap();
    assert_eq!(k2, format!("m/{l2:x}").into_bytes());
    let third = {
        let mut locks = LockClient::new(ch.clone());
        tokio::spawn(async move {
            locks.lock(LockRequest { name: b"m".to_vec(), lease: l3 }).await.unwrap().into_inner().key
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!third.is_finished());
    lease.lease_revoke(LeaseRevokeRequest { id: l2 }).await.unwrap();
    let k3 = tokio::time::timeout(Duration::from_secs(5), third)
        .await
        .expect("acquired after the holder's lease went")
        .unwrap();
    assert_eq!(k3, format!("m/{l3:x}").into_bytes());
    drop((locks, lease, ch));
    node.shutdown().await;
}

/// Goal: the v3election service elects the oldest campaigner, lets only the leader proclaim,
/// reports changes to observers, and hands leadership over on resign.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v3election_campaign_proclaim_observe_resign() {
    use conclave::pb::v3electionpb::election_client::ElectionClient;
    use conclave::pb::v3electionpb::{CampaignRequest, LeaderRequest, ProclaimRequest, ResignRequest};
    let dir = tempfile::tempdir().unwrap();
    let node = common::start(dir.path()).await;
    let ch = common::channel(&node).await;
    let (_, _, mut lease) = common::clients(&node).await;
    let mut el = ElectionClient::new(ch.clone());
    let l1 = lease.lease_grant(LeaseGrantRequest { ttl: 60, id: 0 }).await.unwrap().into_inner().id;
    let l2 = lease.lease_grant(LeaseGrantRequest { ttl: 60, id: 0 }).await.unwrap().into_inner().id;
    let a = el
        .campaign(CampaignRequest { name: b"e".to_vec(), lease: l1, value: b"a".to_vec() })
        .await
        .unwrap()
        .into_inner();
    let a = a.leader.unwrap();
    let mut observe = el.observe(LeaderRequest { name: b"e".to_vec() }).await.unwrap().into_inner();
    let first = tokio::time::timeout(Duration::from_secs(5), observe.message()).await.unwrap().unwrap().unwrap();
    assert_eq!(first.kv.unwrap().value, b"a");
    let b_task = {
        let mut el = ElectionClient::new(ch.clone());
        tokio::spawn(async move {
            el.campaign(CampaignRequest { name: b"e".to_vec(), lease: l2, value: b"b".to_vec() })
                .await
                .unwrap()
                .into_inner()
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!b_task.is_finished(), "b waits while a leads");
    el.proclaim(ProclaimRequest { leader: Some(a.clone()), value: b"a2".to_vec() }).await.unwrap();
    let upd = tokio::time::timeout(Duration::from_secs(5), observe.message()).await.unwrap().unwrap().unwrap();
    assert_eq!(upd.kv.unwrap().value, b"a2");
    let leader = el.leader(LeaderRequest { name: b"e".to_vec() }).await.unwrap().into_inner();
    assert_eq!(leader.kv.unwrap().value, b"a2");
    el.resign(ResignRequest { leader: Some(a.clone()) }).await.unwrap();
    let b = tokio::time::timeout(Duration::from_secs(5), b_task).await.expect("b leads after a resigns").unwrap();
    assert_eq!(b.leader.unwrap().lease, l2);
    let next = tokio::time::timeout(Duration::from_secs(5), observe.message()).await.unwrap().unwrap().unwrap();
    assert_eq!(next.kv.unwrap().value, b"b");
    let err = el.proclaim(ProclaimRequest { leader: Some(a), value: b"late".to_vec() }).await.unwrap_err();
    assert_eq!(err.message(), "election: not leader");
    drop((el, observe, lease, ch));
    node.shutdown().await;
}

/// Goal: a watch with prev_kv gets the replaced value in every event, also for writes that
/// were already being applied when it was created (while no watcher wants prev values, puts
/// skip reading them). Method: 8 writers overwrite their own key with 0, 1, 2, ... without
/// pause; watches with prev_kv are created while they run (each from "now", i.e. racing
/// the writes in flight); every event's prev_kv must be the key's previous value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prev_kv_watch_created_under_load_gets_every_prev_value() {
    let dir = tempfile::tempdir().unwrap();
    let node = common::start(dir.path()).await;
    let (kv, mut watch, _) = common::clients(&node).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..8 {
        let mut kv = kv.clone();
        let stop = stop.clone();
        // Value 0 before any watch exists: every watched value then has a previous one.
        put(&mut kv, &format!("p/{w}"), "0").await;
        writers.push(tokio::spawn(async move {
            let mut i = 1u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                put(&mut kv, &format!("p/{w}"), &i.to_string()).await;
                i += 1;
            }
        }));
    }
    for round in 0..10 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let (tx, rx) = mpsc::channel(4);
        let mut req = create("p/", "p0", 0);
        if let Some(RequestUnion::CreateRequest(c)) = &mut req.request_union {
            c.prev_kv = true;
        }
        tx.send(req).await.unwrap();
        let mut stream = watch.watch(ReceiverStream::new(rx)).await.unwrap().into_inner();
        assert!(stream.message().await.unwrap().unwrap().created);
        let mut checked = 0;
        while checked < 200 {
            let m = tokio::time::timeout(Duration::from_secs(20), stream.message()).await.unwrap().unwrap().unwrap();
            for e in m.events {
                let kv = e.kv.unwrap();
                let value: u64 = String::from_utf8(kv.value).unwrap().parse().unwrap();
                let prev = e.prev_kv.unwrap_or_else(|| panic!("round {round}: no prev_kv for value {value}"));
                assert_eq!(prev.key, kv.key);
                assert_eq!(
                    String::from_utf8(prev.value).unwrap(),
                    (value - 1).to_string(),
                    "round {round}: prev value of {}",
                    String::from_utf8(kv.key).unwrap()
                );
                assert_eq!(prev.version, kv.version - 1);
                checked += 1;
            }
        }
        drop(tx);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    node.shutdown().await;
}
