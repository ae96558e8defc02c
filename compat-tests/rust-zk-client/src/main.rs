//! Drives a ZooKeeper-protocol server through the `zookeeper-client` crate
//! (0.11.2, crates.io) and prints one deterministic line per step: data,
//! versions, child counts, error kinds, event types and paths, relations
//! between zxids ("mzxid>czxid=true"), ephemeral owners as self/other/none --
//! never a session id, zxid or time.  compat-tests/test_rust_zk_client.py
//! compares the lines with what the real ZooKeeper 3.8.0 printed.
//!
//!     zk-client-scenario HOST:PORT
//!
//! Expected errors are printed as `err <Error variant>`; an unexpected one is
//! printed the same way and the run goes on, so a difference shows up as a
//! differing line.  A step that waits longer than 15 s prints `TIMEOUT <step>`
//! and the program exits 3.  Exit 0 after the last line, "all steps done".

// PersistentWatcher::remove (a RemoveWatches request) is deprecated in favour of
// Drop, which removes the watcher only on the client side; the scenario
// wants the request.
#![allow(deprecated)]

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use zookeeper_client as zk;
use zk::{Acls, AddWatchMode, Client, CreateMode, LockOptions, LockPrefix, MultiReadResult,
         MultiWriteResult, OneshotWatcher, PersistentWatcher, Stat, WatchedEvent};

const WAIT: Duration = Duration::from_secs(15);

/// Awaits `f` for at most WAIT; exits 3 on a timeout.
async fn w<T>(step: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, f).await {
        Ok(v) => v,
        Err(_) => {
            println!("TIMEOUT {step}");
            std::process::exit(3);
        },
    }
}

/// A Stat without zxids, times and session ids; the owner relative to `me`.
fn st(s: &Stat, me: i64) -> String {
    let owner = if s.ephemeral_owner == 0 {
        "none"
    } else if s.ephemeral_owner == me {
        "self"
    } else {
        "other"
    };
    format!(
        "version={} cversion={} aversion={} owner={} dataLength={} numChildren={}",
        s.version, s.cversion, s.aversion, owner, s.data_length, s.num_children
    )
}

fn res<T, E: Debug>(r: Result<T, E>, ok: impl FnOnce(T) -> String) -> String {
    match r {
        Ok(v) => {
            let s = ok(v);
            if s.is_empty() {
                "ok".to_string()
            } else {
                format!("ok {s}")
            }
        },
        Err(e) => format!("err {e:?}"),
    }
}

fn utf8(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ev(e: &WatchedEvent) -> String {
    format!(
        "{} path={} state={:?} zxid={}",
        e.event_type,
        e.path,
        e.session_state,
        if e.zxid == WatchedEvent::NO_ZXID { "none" } else { "set" }
    )
}

async fn oneshot(step: &str, watcher: OneshotWatcher) -> String {
    ev(&w(step, watcher.changed()).await)
}

async fn persistent(step: &str, watcher: &mut PersistentWatcher) -> String {
    ev(&w(step, watcher.changed()).await)
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

async fn connect(hosts: &str) -> Client {
    match w("connect", Client::connector().with_session_timeout(Duration::from_secs(10)).connect(hosts)).await {
        Ok(c) => c,
        Err(e) => {
            println!("connect: err {e:?}");
            std::process::exit(1);
        },
    }
}

/// The name of a Curator-style lock node with its random UUID replaced.
fn lock_name(path: &str) -> String {
    match path.rsplit_once('/') {
        Some((dir, name)) if name.starts_with("_c_") && name.len() > 3 + 36 => {
            let uuid = &name[3..39];
            let shape_ok = uuid.len() == 36 && uuid.chars().enumerate().all(|(i, ch)| {
                if [8, 13, 18, 23].contains(&i) {
                    ch == '-'
                } else {
                    ch.is_ascii_hexdigit()
                }
            });
            format!("{dir}/_c_{}{}", if shape_ok { "<uuid>" } else { uuid }, &name[39..])
        },
        _ => path.to_string(),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let hosts = std::env::args().nth(1).expect("usage: zk-client-scenario HOST:PORT");
    let persistent_opts = CreateMode::Persistent.with_acls(Acls::anyone_all());
    let ephemeral_opts = CreateMode::Ephemeral.with_acls(Acls::anyone_all());
    let pseq_opts = CreateMode::PersistentSequential.with_acls(Acls::anyone_all());
    let eseq_opts = CreateMode::EphemeralSequential.with_acls(Acls::anyone_all());
    let container_opts = CreateMode::Container.with_acls(Acls::anyone_all());
    let ttl_opts = CreateMode::Persistent.with_acls(Acls::anyone_all()).with_ttl(Duration::from_secs(60));

    // ------------------------------------------------------------- sessions
    let a = connect(&hosts).await;
    let b = connect(&hosts).await;
    let (ma, mb) = (a.session_id().0, b.session_id().0);
    println!("connect a: state={:?} session_timeout_ms={}", a.state(), a.session_timeout().as_millis());
    println!("connect b: state={:?} distinct session={}", b.state(), ma != mb && ma != 0 && mb != 0);

    // ------------------------------------------------------------- create
    let r = w("create /rz", a.create("/rz", b"root", &persistent_opts)).await;
    println!("create /rz: {}", res(r, |(s, seq)| format!("{} seq={}", st(&s, ma), seq.into_i64())));
    let czxid_rz = w("get", a.get_data("/rz")).await.map(|(_, s)| s.czxid).unwrap_or(0);
    let r = w("create /rz again", a.create("/rz", b"again", &persistent_opts)).await;
    println!("create /rz again: {}", res(r, |_| String::new()));
    let r = w("create without parent", a.create("/rz/missing/child", b"", &persistent_opts)).await;
    println!("create without parent: {}", res(r, |_| String::new()));
    let r = w("create ephemeral", a.create("/rz/eph", b"e", &ephemeral_opts)).await;
    println!("create ephemeral: {}", res(r, |(s, _)| st(&s, ma)));
    let r = w("exists ephemeral from b", b.check_stat("/rz/eph")).await;
    println!("check_stat ephemeral from b: {}", res(r, |s| s.map(|s| st(&s, mb)).unwrap_or("None".into())));
    let r = w("child of ephemeral", a.create("/rz/eph/child", b"", &persistent_opts)).await;
    println!("create child of ephemeral: {}", res(r, |_| String::new()));
    for i in 0..2 {
        let r = w("create sequential", a.create("/rz/seq-", format!("s{i}").as_bytes(), &pseq_opts)).await;
        println!("create persistent sequential: {}", res(r, |(s, seq)| format!("seq={seq} {}", st(&s, ma))));
    }
    let r = w("create ephemeral sequential", a.create("/rz/eseq-", b"", &eseq_opts)).await;
    println!("create ephemeral sequential: {}", res(r, |(s, seq)| format!("seq={seq} {}", st(&s, ma))));
    let r = w("create container", a.create("/rz/box", b"c", &container_opts)).await;
    println!("create container: {}", res(r, |(s, seq)| format!("seq={} {}", seq.into_i64(), st(&s, ma))));
    let r = w("create ttl", a.create("/rz/ttl", b"t", &ttl_opts)).await;
    println!("create ttl: {}", res(r, |(s, seq)| format!("seq={} {}", seq.into_i64(), st(&s, ma))));
    let r = w("mkdir", a.mkdir("/rz/dir/x/y", &persistent_opts)).await;
    println!("mkdir /rz/dir/x/y: {}", res(r, |_| String::new()));

    // ------------------------------------------------------------- children
    let r = w("list_children", a.list_children("/rz")).await;
    println!("list_children /rz: {}", res(r, |c| format!("{:?}", sorted(c))));
    let r = w("get_children", a.get_children("/rz")).await;
    println!("get_children /rz: {}", res(r, |(c, s)| format!("{} {}", c.len(), st(&s, ma))));
    let r = w("list_children missing", a.list_children("/rz/none")).await;
    println!("list_children missing: {}", res(r, |c| format!("{c:?}")));
    let r = w("count_descendants_number", a.count_descendants_number("/rz")).await;
    println!("count_descendants_number /rz: {}", res(r, |n| n.to_string()));
    let r = w("list_ephemerals", a.list_ephemerals("/rz")).await;
    println!("list_ephemerals /rz from a: {}", res(r, |c| format!("{:?}", sorted(c))));
    let r = w("list_ephemerals b", b.list_ephemerals("/")).await;
    println!("list_ephemerals / from b: {}", res(r, |c| format!("{c:?}")));

    // ------------------------------------------------------------- data and versions
    let r = w("get_data", a.get_data("/rz")).await;
    println!("get_data /rz: {}", res(r, |(d, s)| format!("{} {}", utf8(&d), st(&s, ma))));
    let r = w("set_data v0", a.set_data("/rz", b"v1", Some(0))).await;
    println!("set_data version 0: {}", res(r, |s| format!("{} mzxid>czxid={}", st(&s, ma), s.mzxid > s.czxid)));
    let r = w("set_data stale", a.set_data("/rz", b"stale", Some(0))).await;
    println!("set_data stale version: {}", res(r, |s| st(&s, ma)));
    let r = w("set_data any", a.set_data("/rz", b"v2", None)).await;
    println!("set_data any version: {}", res(r, |s| st(&s, ma)));
    let r = w("set_data missing", a.set_data("/rz/none", b"x", None)).await;
    println!("set_data missing: {}", res(r, |s| st(&s, ma)));
    let r = w("get_data", b.get_data("/rz")).await;
    println!("get_data /rz from b: {}", res(r, |(d, s)| format!("{} version={} same czxid={}", utf8(&d), s.version, s.czxid == czxid_rz)));
    let r = w("get_data missing", a.get_data("/rz/none")).await;
    println!("get_data missing: {}", res(r, |(d, _)| utf8(&d)));
    let r = w("check_stat", a.check_stat("/rz")).await;
    println!("check_stat /rz: {}", res(r, |s| s.map(|s| st(&s, ma)).unwrap_or("None".into())));
    let r = w("check_stat missing", a.check_stat("/rz/none")).await;
    println!("check_stat missing: {}", res(r, |s| format!("{s:?}")));
    let r = w("get_acl", a.get_acl("/rz")).await;
    println!("get_acl /rz: {}", res(r, |(acls, s)| {
        let l: Vec<String> = acls.iter().map(|x| format!("{}:{}={}", x.scheme(), x.id(), x.permission())).collect();
        format!("{l:?} {}", st(&s, ma))
    }));
    let r = w("sync", a.sync("/rz")).await;
    println!("sync /rz: {}", res(r, |_| String::new()));

    // ------------------------------------------------------------- one-shot watches
    match w("get_and_watch_data", a.get_and_watch_data("/rz")).await {
        Ok((d, _, watcher)) => {
            let r = w("b set_data", b.set_data("/rz", b"w", None)).await;
            println!("watch data: got {} ; b set_data {}", utf8(&d), res(r, |s| format!("version={}", s.version)));
            println!("  event: {}", oneshot("data watch", watcher).await);
        },
        Err(e) => println!("get_and_watch_data: err {e:?}"),
    }
    match w("check_and_watch_stat", a.check_and_watch_stat("/rz/new")).await {
        Ok((s, watcher)) => {
            let r = w("b create", b.create("/rz/new", b"n", &persistent_opts)).await;
            println!("watch exists: stat {:?} ; b create {}", s.map(|s| s.version), res(r, |_| String::new()));
            println!("  event: {}", oneshot("exists watch", watcher).await);
        },
        Err(e) => println!("check_and_watch_stat: err {e:?}"),
    }
    match w("get_and_watch_children", a.get_and_watch_children("/rz")).await {
        Ok((c, _, watcher)) => {
            let r = w("b create kid", b.create("/rz/kid", b"k", &persistent_opts)).await;
            println!("watch children: {} children ; b create {}", c.len(), res(r, |_| String::new()));
            println!("  event: {}", oneshot("child watch", watcher).await);
        },
        Err(e) => println!("get_and_watch_children: err {e:?}"),
    }
    match w("get_and_watch_data new", a.get_and_watch_data("/rz/new")).await {
        Ok((_, _, watcher)) => {
            let r = w("b delete", b.delete("/rz/new", None)).await;
            println!("watch deletion: b delete {}", res(r, |_| String::new()));
            println!("  event: {}", oneshot("deletion watch", watcher).await);
        },
        Err(e) => println!("get_and_watch_data /rz/new: err {e:?}"),
    }
    match w("list_and_watch_children", a.list_and_watch_children("/rz/kid")).await {
        Ok((_, watcher)) => {
            let r = w("b delete kid", b.delete("/rz/kid", None)).await;
            println!("child watch on a deleted node: b delete {}", res(r, |_| String::new()));
            println!("  event: {}", oneshot("child watch deletion", watcher).await);
        },
        Err(e) => println!("list_and_watch_children: err {e:?}"),
    }

    // ------------------------------------------------------------- persistent watches (addWatch)
    match w("watch persistent", a.watch("/rz/pw", AddWatchMode::Persistent)).await {
        Ok(mut watcher) => {
            println!("watch persistent /rz/pw: ok");
            let _ = w("b", b.create("/rz/pw", b"", &persistent_opts)).await;
            println!("  event: {}", persistent("persistent create", &mut watcher).await);
            let _ = w("b", b.create("/rz/pw/c", b"", &persistent_opts)).await;
            println!("  event: {}", persistent("persistent child", &mut watcher).await);
            let _ = w("b", b.set_data("/rz/pw", b"x", None)).await;
            println!("  event: {}", persistent("persistent data", &mut watcher).await);
            let _ = w("b", b.set_data("/rz/pw/c", b"x", None)).await;
            let _ = w("b", b.delete("/rz/pw/c", None)).await;
            println!("  event: {}", persistent("persistent child delete", &mut watcher).await);
            let r = w("remove watch", watcher.remove()).await;
            println!("  remove: {}", res(r, |_| String::new()));
        },
        Err(e) => println!("watch persistent /rz/pw: err {e:?}"),
    }
    match w("watch recursive", a.watch("/rz/tree", AddWatchMode::PersistentRecursive)).await {
        Ok(mut watcher) => {
            println!("watch persistent recursive /rz/tree: ok");
            let _ = w("b", b.create("/rz/tree", b"", &persistent_opts)).await;
            println!("  event: {}", persistent("recursive create", &mut watcher).await);
            let _ = w("b", b.create("/rz/tree/x", b"", &persistent_opts)).await;
            println!("  event: {}", persistent("recursive child create", &mut watcher).await);
            let _ = w("b", b.create("/rz/tree/x/y", b"", &persistent_opts)).await;
            println!("  event: {}", persistent("recursive grandchild create", &mut watcher).await);
            let _ = w("b", b.set_data("/rz/tree/x/y", b"d", None)).await;
            println!("  event: {}", persistent("recursive data", &mut watcher).await);
            let _ = w("b", b.delete("/rz/tree/x/y", None)).await;
            println!("  event: {}", persistent("recursive delete", &mut watcher).await);
            let r = w("remove watch", watcher.remove()).await;
            println!("  remove: {}", res(r, |_| String::new()));
        },
        Err(e) => println!("watch persistent recursive /rz/tree: err {e:?}"),
    }

    // ------------------------------------------------------------- multi
    let v_rz = w("get", a.get_data("/rz")).await.map(|(_, s)| s.version).unwrap_or(-100);
    println!("version of /rz before multi: {v_rz}");
    let mut mw = a.new_multi_writer();
    mw.add_check_version("/rz", v_rz).unwrap();
    mw.add_create("/rz/m1", b"m", &persistent_opts).unwrap();
    mw.add_create("/rz/ms-", b"s", &pseq_opts).unwrap();
    mw.add_set_data("/rz/m1", b"m2", Some(0)).unwrap();
    mw.add_create("/rz/me", b"", &ephemeral_opts).unwrap();
    mw.add_delete("/rz/eph", None).unwrap();
    let r = w("multi", mw.commit()).await;
    match r {
        Ok(results) => {
            println!("multi: ok {} results", results.len());
            for x in results {
                println!("  {}", match x {
                    MultiWriteResult::Check => "Check".to_string(),
                    MultiWriteResult::Delete => "Delete".to_string(),
                    MultiWriteResult::Create { path, stat } => format!("Create {path} {}", st(&stat, ma)),
                    MultiWriteResult::SetData { stat } => format!("SetData {}", st(&stat, ma)),
                    other => format!("{other:?}"),
                });
            }
        },
        Err(e) => println!("multi: err {e:?}"),
    }
    let mut mw = a.new_multi_writer();
    mw.add_create("/rz/m2", b"", &persistent_opts).unwrap();
    mw.add_set_data("/rz/m1", b"stale", Some(0)).unwrap();
    mw.add_create("/rz/m3", b"", &persistent_opts).unwrap();
    let r = w("failing multi", mw.commit()).await;
    println!("failing multi: {}", res(r, |x| format!("{x:?}")));
    let r = w("exists m2", a.check_stat("/rz/m2")).await;
    println!("after failing multi: /rz/m2 {}", res(r, |s| format!("{s:?}")));
    let mut mw = a.new_multi_writer();
    let r = w("empty multi", mw.commit()).await;
    println!("empty multi: {}", res(r, |x| format!("{x:?}")));
    let mut cw = a.new_check_writer("/rz", Some(12345)).unwrap();
    cw.add_create("/rz/cw", b"", &persistent_opts).unwrap();
    let r = w("check writer", cw.commit()).await;
    println!("check writer with a wrong version: {}", res(r, |x| format!("{x:?}")));
    let mut mr = a.new_multi_reader();
    mr.add_get_data("/rz/m1").unwrap();
    mr.add_get_children("/rz/dir").unwrap();
    mr.add_get_data("/rz/none").unwrap();
    let r = w("multi read", mr.commit()).await;
    match r {
        Ok(results) => {
            println!("multi read: ok {} results", results.len());
            for x in results {
                println!("  {}", match x {
                    MultiReadResult::Data { data, stat } => format!("Data {} {}", utf8(&data), st(&stat, ma)),
                    MultiReadResult::Children { children } => format!("Children {:?}", sorted(children)),
                    MultiReadResult::Error { err } => format!("Error {err:?}"),
                    other => format!("{other:?}"),
                });
            }
        },
        Err(e) => println!("multi read: err {e:?}"),
    }

    // ------------------------------------------------------------- lock recipe (Curator-compatible)
    let lock_opts = || {
        LockOptions::new(Acls::anyone_all())
            .with_ancestor_options(CreateMode::Persistent.with_acls(Acls::anyone_all()))
            .unwrap()
    };
    match w("a lock", a.lock(LockPrefix::new_curator("/rz/locks", "lock-").unwrap(), b"a", lock_opts())).await {
        Ok(lock_a) => {
            println!("a lock: ok {}", lock_name(lock_a.lock_path()));
            let bc = b.clone();
            let mut h = tokio::spawn(async move {
                bc.lock(LockPrefix::new_curator("/rz/locks", "lock-").unwrap(), b"b", lock_opts())
                    .await
                    .map(|l| l.into_owned())
            });
            let blocked = tokio::time::timeout(Duration::from_millis(500), &mut h).await.is_err();
            println!("b lock blocked while a holds it: {blocked}");
            let r = w("children", a.list_children("/rz/locks")).await;
            println!("lock nodes: {}", res(r, |c| c.len().to_string()));
            drop(lock_a);
            match w("b lock", h).await {
                Ok(Ok(lock_b)) => {
                    println!("b lock after a released: ok {}", lock_name(lock_b.lock_path()));
                    let r = w("get", b.get_data(lock_b.lock_path())).await;
                    println!("b lock node: {}", res(r, |(d, s)| format!("{} {}", utf8(&d), st(&s, mb))));
                    drop(lock_b);
                },
                Ok(Err(e)) => println!("b lock after a released: err {e:?}"),
                Err(e) => println!("b lock task: {e}"),
            }
            let mut n = usize::MAX;
            for _ in 0..150 {
                n = w("children", a.list_children("/rz/locks")).await.map(|c| c.len()).unwrap_or(usize::MAX);
                if n == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            println!("lock nodes after both released: {n}");
        },
        Err(e) => println!("a lock: err {e:?}"),
    }

    // ------------------------------------------------------------- session end drops ephemerals
    let r = w("ephemerals", b.list_ephemerals("/")).await;
    println!("list_ephemerals / from b: {}", res(r, |c| format!("{c:?}")));
    let r = w("ephemerals a", a.list_ephemerals("/")).await;
    println!("list_ephemerals / from a: {}", res(r, |c| format!("{:?}", sorted(c))));
    match w("b watch /rz/me", b.check_and_watch_stat("/rz/me")).await {
        Ok((s, watcher)) => {
            println!("b watches a's ephemeral: {}", s.map(|s| st(&s, mb)).unwrap_or("None".into()));
            let mut state = a.state_watcher();
            drop(a);
            println!("  a dropped: state {:?}", w("a closed", state.changed()).await);
            println!("  event: {}", oneshot("ephemeral gone", watcher).await);
        },
        Err(e) => {
            println!("b watch /rz/me: err {e:?}");
            drop(a);
        },
    }
    let r = w("children", b.list_children("/rz")).await;
    println!("children of /rz after a's session closed: {}", res(r, |c| format!("{:?}", sorted(c))));

    // ------------------------------------------------------------- delete
    let r = w("delete bad version", b.delete("/rz/m1", Some(7))).await;
    println!("delete wrong version: {}", res(r, |_| String::new()));
    let r = w("delete non-empty", b.delete("/rz", None)).await;
    println!("delete non-empty: {}", res(r, |_| String::new()));
    let r = w("delete v1", b.delete("/rz/m1", Some(1))).await;
    println!("delete right version: {}", res(r, |_| String::new()));
    let r = w("delete missing", b.delete("/rz/m1", None)).await;
    println!("delete missing: {}", res(r, |_| String::new()));
    let mut stack = vec!["/rz".to_string()];
    let mut order = Vec::new();
    while let Some(p) = stack.pop() {
        if let Ok(c) = w("children", b.list_children(&p)).await {
            for x in c {
                stack.push(format!("{p}/{x}"));
            }
        }
        order.push(p);
    }
    let mut failed = Vec::new();
    for p in order.iter().rev() {
        if let Err(e) = w("delete", b.delete(p, None)).await {
            failed.push(format!("{p}: {e:?}"));
        }
    }
    println!("delete the tree ({} nodes): failures {failed:?}", order.len());
    let r = w("exists /rz", b.check_stat("/rz")).await;
    println!("check_stat /rz after delete: {}", res(r, |s| format!("{s:?}")));
    let r = w("root children", b.list_children("/")).await;
    println!("list_children /: {}", res(r, |c| format!("{:?}", sorted(c))));
    drop(b);
    println!("all steps done");
}

