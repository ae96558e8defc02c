//! Apply cost without the network: the store's write path alone, `BATCH` commands (default 20,
//! about what one raft entry holds at 16-64 clients) per write transaction, as the state
//! machine runs them, non-durable commits as apply does. It prints microseconds per command for
//! ZooKeeper creates and sets (10 000 nodes of 100 B) and etcd puts (random keys of 100 000,
//! 256 B values: the first run fills the key space, the second overwrites).
//!
//!     cargo run --release --example apply_cost            # OPS=40000 BATCH=20 by default
//!
//! Then the lock recipe's log entry (`zk lock pair`): an ephemeral sequential create and the
//! delete of the oldest of 16 waiters' nodes, alone in a transaction that is committed, as when
//! the hand-off's reads come between entries (`LOCK_OPS`, 20 000); `LOCK_FILL=N` first adds N
//! nodes and N sets of them, to see how a larger store slows it.
//!
//! `ONLY=zk` skips the etcd puts; `CREATES=N` makes N creates instead of 10 000. Under `valgrind --tool=cachegrind` the instruction counts
//! of two builds compare without this machine's noise.
//!
//! This is where a change to the store's write path shows up without the noise of the
//! network, raft and the load generator sharing two cores (see benches/README.md).
use conclave::command::*;
use conclave::store::{Store, StoreConfig};
use std::time::Instant;

fn rnd(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn zk_create_seq(acl: &[ZkAcl]) -> ZkOp {
    ZkOp::Create {
        path: "/lock/x-".into(),
        data: Some(vec![]),
        acl: acl.to_vec(),
        mode: CreateMode::EphemeralSequential,
        ttl_ms: -1,
    }
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db"), StoreConfig::default()).unwrap();
    let batch: usize = std::env::var("BATCH").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let ops: usize = std::env::var("OPS").ok().and_then(|v| v.parse().ok()).unwrap_or(40000);
    let acl = vec![ZkAcl { perms: 31, scheme: "world".into(), id: "anyone".into() }];
    let zk = |ops: Vec<ZkOp>| Command::Zk(ZkTxn { ops, now_ms: 1, session_id: 0, auth: vec![], ttl_enabled: true });
    let run = |name: &str, cmds: &mut dyn FnMut(u64) -> Command, n: usize| {
        let mut seed = 88172645463325252u64;
        let t0 = Instant::now();
        let mut done = 0;
        while done < n {
            store
                .write(false, |tx| {
                    for _ in 0..batch {
                        let applied = tx.apply(&cmds(rnd(&mut seed)))?;
                        // A failing command is cheap and would flatter the figure.
                        let ok = match &applied.result {
                            Ok(Response::Zk(results)) => !results.iter().any(|r| matches!(r, ZkOpResult::Error(_))),
                            r => r.is_ok(),
                        };
                        assert!(ok, "{name}: {:?}", applied.result);
                    }
                    Ok(())
                })
                .unwrap();
            done += batch;
        }
        let us = t0.elapsed().as_secs_f64() * 1e6 / done as f64;
        println!("{name:12} batch {batch}: {us:.2} us/op");
    };
    // /bench for the creates and sets; /lock and session 7 for the lock recipe's entries.
    store
        .write(true, |tx| {
            tx.apply(&Command::ZkSession { id: 7, ttl_s: 30 })?;
            for path in ["/bench", "/lock"] {
                tx.apply(&zk(vec![ZkOp::Create {
                    path: path.into(),
                    data: None,
                    acl: acl.clone(),
                    mode: CreateMode::Persistent,
                    ttl_ms: -1,
                }]))?;
            }
            Ok(())
        })
        .unwrap();
    // CREATES: how many (10 000 by default; the sets need the first 10 000).
    let creates: usize = std::env::var("CREATES").ok().and_then(|v| v.parse().ok()).unwrap_or(10000).max(10000);
    let mut i = 0u64;
    run(
        "zk create",
        &mut |_| {
            i += 1;
            zk(vec![ZkOp::Create {
                path: format!("/bench/{:08}", i - 1),
                data: Some(vec![b'x'; 100]),
                acl: acl.clone(),
                mode: CreateMode::Persistent,
                ttl_ms: -1,
            }])
        },
        creates,
    );
    run(
        "zk set",
        &mut |r| {
            zk(vec![ZkOp::SetData {
                path: format!("/bench/{:08}", r % 10000),
                data: Some(vec![b'y'; 100]),
                version: -1,
            }])
        },
        ops,
    );
    // The lock recipe's log entry: one session's ephemeral sequential create and the delete of
    // the oldest waiter's node (16 waiters), two commands per transaction, committed after
    // each as when the hand-off's reads come between entries.
    // LOCK_FILL=N: N persistent nodes (and as many sets of them) first, as a store that has
    // served other work holds: the lock's transactions then touch deeper B-trees.
    let fill: usize = std::env::var("LOCK_FILL").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    for round in 0..2 * fill.div_ceil(256) {
        store
            .write(false, |tx| {
                for j in 0..256 {
                    let n = (round % fill.div_ceil(256)) * 256 + j;
                    let path = format!("/bench/f{n:08}");
                    let op = if round < fill.div_ceil(256) {
                        ZkOp::Create {
                            path,
                            data: Some(vec![b'f'; 100]),
                            acl: acl.clone(),
                            mode: CreateMode::Persistent,
                            ttl_ms: -1,
                        }
                    } else {
                        ZkOp::SetData { path, data: Some(vec![b'g'; 100]), version: -1 }
                    };
                    tx.apply(&zk(vec![op]))?;
                }
                Ok(())
            })
            .unwrap();
    }
    let mut waiters = std::collections::VecDeque::new();
    let lock_ops: usize = std::env::var("LOCK_OPS").ok().and_then(|v| v.parse().ok()).unwrap_or(20000);
    let t0 = Instant::now();
    for i in 0..lock_ops + 16 {
        let (created, _) = store
            .write(false, |tx| {
                let mut ops = vec![zk_create_seq(&acl)];
                if i >= 16 {
                    ops.push(ZkOp::Delete { path: waiters.pop_front().unwrap(), version: -1 });
                }
                let mut names = Vec::new();
                for op in ops {
                    let applied = tx.apply(&Command::Zk(ZkTxn {
                        ops: vec![op],
                        now_ms: 1,
                        session_id: 7,
                        auth: vec![],
                        ttl_enabled: true,
                    }))?;
                    match applied.result {
                        Ok(Response::Zk(r)) => match &r[..] {
                            [ZkOpResult::Created { path, .. }] => names.push(path.clone()),
                            [ZkOpResult::Deleted] => {}
                            r => panic!("lock: {r:?}"),
                        },
                        r => panic!("lock: {r:?}"),
                    }
                }
                Ok(names)
            })
            .unwrap();
        waiters.extend(created);
    }
    let us = t0.elapsed().as_secs_f64() * 1e6 / (lock_ops + 16) as f64;
    println!("{:12} pair: {us:.2} us/entry (create + delete, committed)", "zk lock");
    // Random keys of 100 000: the first run mostly creates them, the second overwrites.
    let mut etcd_put = |r: u64| {
        Command::Put(PutOp {
            key: format!("{:08}", r % 100000).into_bytes(),
            value: vec![b'v'; 256],
            ..Default::default()
        })
    };
    if std::env::var("ONLY").as_deref() == Ok("zk") {
        return;
    }
    run("etcd put", &mut etcd_put, 100000);
    run("etcd put", &mut etcd_put, ops);
}
