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

/// Goal: a clean restart keeps revision, data, leases (with a renewed TTL) and compaction.
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
    assert_eq!(r.header.unwrap().revision, 22);
    let err = kv.range(RangeRequest { key: "k0".into(), revision: 5, ..Default::default() }).await.unwrap_err();
    assert_eq!(err.message(), "etcdserver: mvcc: required revision has been compacted");
    let t = lease.lease_time_to_live(LeaseTimeToLiveRequest { id: lease_id, keys: true }).await.unwrap().into_inner();
    assert_eq!(t.granted_ttl, 100);
    assert!(t.ttl >= 98, "TTL renewed on restart, got {}", t.ttl);
    assert_eq!(t.keys, vec![b"held".to_vec()]);
    assert_eq!(put(&mut kv, "next", "v").await, 23);
    node.shutdown().await;
}
