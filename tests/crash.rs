//! Crash consistency of the real binary: kill -9 under write load, restart, and every write that
//! was acknowledged is there; revision, leases and compaction continue where they were.

use std::collections::HashMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conclave::pb::etcdserverpb::kv_client::KvClient;
use conclave::pb::etcdserverpb::lease_client::LeaseClient;
use conclave::pb::etcdserverpb::{
    CompactionRequest, LeaseGrantRequest, LeaseTimeToLiveRequest, PutRequest, RangeRequest,
};
use tonic::transport::Channel;

mod common;
use common::zk;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Server {
    child: Child,
    port: u16,
    zk_port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(data_dir: &std::path::Path) -> Server {
    let port = free_port();
    let peer = free_port();
    let zk_port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_conclave"))
        .args(["--data-dir", data_dir.to_str().unwrap()])
        .args(["--listen-client-urls", &format!("http://127.0.0.1:{port}")])
        .args(["--advertise-client-urls", &format!("http://127.0.0.1:{port}")])
        .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
        .args(["--initial-advertise-peer-urls", &format!("http://127.0.0.1:{peer}")])
        .args(["--zk-listen", &format!("127.0.0.1:{zk_port}")])
        .args(["--log-level", "warn"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn conclave");
    Server { child, port, zk_port }
}

async fn connect(port: u16) -> Channel {
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..200 {
        if let Ok(ch) = Channel::from_shared(url.clone()).unwrap().connect().await {
            let mut kv = KvClient::new(ch.clone());
            if kv.range(RangeRequest { key: b"probe".to_vec(), ..Default::default() }).await.is_ok() {
                return ch;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("server on {port} did not come up");
}

/// Goal: no acknowledged write is lost by a kill -9 at any moment. Method: three rounds of
/// 16 writers putting unique keys; after a random-ish delay the server is SIGKILLed; on
/// restart, every key whose put returned OK must read back with its value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let acked: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let mut lease_id = 0;
    let mut last_revision = 0;
    for round in 0..3u64 {
        let mut server = spawn(dir.path());
        let ch = connect(server.port).await;
        let mut kv = KvClient::new(ch.clone());
        // Everything acknowledged before the previous crash is here.
        let snapshot = acked.lock().unwrap().clone();
        for (k, v) in snapshot {
            let r = kv
                .range(RangeRequest { key: k.clone().into_bytes(), ..Default::default() })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(r.kvs.len(), 1, "round {round}: acknowledged key {k} lost");
            assert_eq!(r.kvs[0].value, v.as_bytes(), "round {round}: key {k} has the wrong value");
        }
        let rev = kv.range(RangeRequest { key: b"x".to_vec(), ..Default::default() }).await.unwrap().into_inner();
        let rev = rev.header.unwrap().revision;
        assert!(rev >= last_revision, "revision went back from {last_revision} to {rev}");
        let mut lease = LeaseClient::new(ch.clone());
        if round == 0 {
            lease_id = lease.lease_grant(LeaseGrantRequest { ttl: 3600, id: 0 }).await.unwrap().into_inner().id;
        } else {
            let t = lease
                .lease_time_to_live(LeaseTimeToLiveRequest { id: lease_id, keys: false })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(t.granted_ttl, 3600, "the lease survived the crash");
            assert!(t.ttl > 3500, "and got its TTL renewed");
        }
        if round == 1 {
            kv.compact(CompactionRequest { revision: rev, physical: true }).await.unwrap();
        }
        if round == 2 {
            let err =
                kv.range(RangeRequest { key: b"x".to_vec(), revision: 2, ..Default::default() }).await.unwrap_err();
            assert!(err.message().contains("compacted"), "compaction state survived: {err:?}");
        }
        let mut writers = Vec::new();
        for w in 0..16 {
            let mut kv = KvClient::new(ch.clone());
            let acked = acked.clone();
            writers.push(tokio::spawn(async move {
                for i in 0.. {
                    let k = format!("r{round}/w{w}/{i}");
                    let v = format!("value-{round}-{w}-{i}");
                    let put =
                        PutRequest { key: k.clone().into_bytes(), value: v.clone().into_bytes(), ..Default::default() };
                    match kv.put(put).await {
                        Ok(_) => {
                            acked.lock().unwrap().insert(k, v);
                        }
                        Err(_) => return,
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(700 + 300 * round)).await;
        // SIGKILL: no shutdown path runs.
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        for w in writers {
            w.await.unwrap();
        }
        last_revision = rev;
        assert!(acked.lock().unwrap().len() > 100 * (round as usize + 1), "the load wrote something");
    }
    let server = spawn(dir.path());
    let ch = connect(server.port).await;
    let mut kv = KvClient::new(ch);
    let all = kv
        .range(RangeRequest { key: b"r".to_vec(), range_end: b"s".to_vec(), count_only: true, ..Default::default() })
        .await
        .unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(all.into_inner().count as usize >= acked.len(), "every acknowledged write is present");
    for (k, v) in acked.iter() {
        let r =
            kv.range(RangeRequest { key: k.clone().into_bytes(), ..Default::default() }).await.unwrap().into_inner();
        assert_eq!(r.kvs.first().map(|kv| kv.value.clone()), Some(v.clone().into_bytes()), "final check: {k}");
    }
}

/// Goal: the same for ZooKeeper writes, and the tree's metadata stays consistent with its keys
/// across crashes. Method: three rounds of 8 sessions creating unique znodes under /zc, SIGKILL
/// mid-load; after each restart every acknowledged create exists, and the parent's numChildren
/// equals its child list and the etcd view's key count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_zookeeper_load_loses_no_acknowledged_create() {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;

    async fn session(port: u16) -> TcpStream {
        for _ in 0..200 {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await {
                zk::connect(&mut s, 30_000).await;
                return s;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no ZooKeeper port on {port}");
    }

    let dir = tempfile::tempdir().unwrap();
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    for round in 0..4u64 {
        let mut server = spawn(dir.path());
        let mut s = session(server.zk_port).await;
        if round == 0 {
            s.write_all(&zk::create(1, "/zc", "", 0)).await.unwrap();
            assert_eq!(zk::err_of(&zk::read_packet(&mut s).await), 0);
        }
        let expected = acked.lock().unwrap().clone();
        for (i, path) in expected.iter().enumerate() {
            let exists = zk::packet(&[&zk::be32(i as i32 + 2), &zk::be32(3), &zk::string(path), &[0]]);
            s.write_all(&exists).await.unwrap();
            assert_eq!(zk::err_of(&zk::read_packet(&mut s).await), 0, "round {round}: acknowledged {path} lost");
        }
        // getChildren2 on /zc: the child list and the Stat's numChildren agree...
        s.write_all(&zk::packet(&[&zk::be32(-5), &zk::be32(12), &zk::string("/zc"), &[0]])).await.unwrap();
        let r = zk::read_packet(&mut s).await;
        let children = i32::from_be_bytes(r[16..20].try_into().unwrap());
        let num_children = i32::from_be_bytes(r[r.len() - 12..r.len() - 8].try_into().unwrap());
        assert_eq!(children, num_children, "round {round}: numChildren matches the child list");
        assert!(children as usize >= expected.len());
        // ...and the etcd view has one key per child.
        let mut kv = KvClient::new(connect(server.port).await);
        let count = kv
            .range(RangeRequest {
                key: b"/zk/zc/".to_vec(),
                range_end: b"/zk/zc0".to_vec(),
                count_only: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .count;
        assert_eq!(count, children as i64, "round {round}: etcd sees the same children");
        if round == 3 {
            break;
        }
        let mut writers = Vec::new();
        for w in 0..8 {
            let acked = acked.clone();
            let mut s = session(server.zk_port).await;
            writers.push(tokio::spawn(async move {
                for i in 1.. {
                    let path = format!("/zc/r{round}-w{w}-{i}");
                    if s.write_all(&zk::create(i, &path, "v", 0)).await.is_err() {
                        return;
                    }
                    let mut len = [0u8; 4];
                    use tokio::io::AsyncReadExt;
                    if s.read_exact(&mut len).await.is_err() {
                        return;
                    }
                    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
                    if s.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    if zk::err_of(&body) == 0 {
                        acked.lock().unwrap().push(path);
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(600 + 300 * round)).await;
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        for w in writers {
            w.await.unwrap();
        }
        assert!(acked.lock().unwrap().len() > 50 * (round as usize + 1), "the load wrote something");
    }
}
