//! A scenario run through the Rust `etcd-client` crate against ONE fresh server:
//!
//!     etcd-client-scenario [--with-lock] <endpoint>      (e.g. 127.0.0.1:2379)
//!
//! Prints one line per step, `ok   <step>: <observed>` or `FAIL <step>: <observed> (want
//! <expected>)`, and exits 1 if any step did not observe what etcd 3.4.23 answers (2 on a
//! connection failure).  The expected values assume a fresh server (revision 1) and were taken
//! from the real etcd.  Only values that legitimately differ between two servers (lease ids,
//! cluster/member ids, raft terms, the version) are never printed, so the whole output of a run
//! against conclave must equal the output of a run against etcd.
//!
//! `--with-lock` adds the v3lock Lock/Unlock step: etcd-client's `lock()` calls the
//! `v3lockpb.Lock` gRPC service, which etcd serves and conclave does not (yet), so the compat test
//! runs without it.

use std::fmt::Debug;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, DeleteOptions, Error, EventType, GetOptions, KeyValue, LeaseTimeToLiveOptions,
    LockOptions, PutOptions, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse, TxnResponse, WatchOptions,
    WatchResponse, WatchStream,
};
use tokio::time::timeout;

const STEP_TIMEOUT: Duration = Duration::from_secs(10);

struct Run {
    failures: usize,
}

impl Run {
    fn check(&mut self, step: &str, got: impl Into<String>, want: &str) {
        let got = got.into();
        if got == want {
            println!("ok   {step}: {got}");
        } else {
            self.failures += 1;
            println!("FAIL {step}: {got} (want {want})");
        }
    }

    /// A check whose observed value is a boolean predicate (for values that may vary by a second).
    fn check_that(&mut self, step: &str, what: &str, holds: bool, detail: impl Debug) {
        if holds {
            println!("ok   {step}: {what}");
        } else {
            self.failures += 1;
            println!("FAIL {step}: not {what} (observed {detail:?})");
        }
    }
}

fn s(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn kv(kv: &KeyValue) -> String {
    format!(
        "{}={} c{} m{} v{}{}",
        s(kv.key()),
        s(kv.value()),
        kv.create_revision(),
        kv.mod_revision(),
        kv.version(),
        if kv.lease() != 0 { " leased" } else { "" }
    )
}

fn kvs(kvs: &[KeyValue]) -> String {
    format!("[{}]", kvs.iter().map(kv).collect::<Vec<_>>().join(", "))
}

fn rev(h: Option<&etcd_client::ResponseHeader>) -> String {
    match h {
        Some(h) => format!("rev {}", h.revision()),
        None => "no header".into(),
    }
}

fn err(e: &Error) -> String {
    match e {
        Error::GRpcStatus(st) => format!("error {:?} {:?}", st.code(), st.message()),
        other => format!("error {other}"),
    }
}

fn res<T>(r: Result<T, Error>, f: impl FnOnce(T) -> String) -> String {
    match r {
        Ok(v) => f(v),
        Err(e) => err(&e),
    }
}

fn op_resp(r: &TxnOpResponse) -> String {
    match r {
        TxnOpResponse::Put(p) => format!("put({})", rev(p.header())),
        TxnOpResponse::Get(g) => format!("get({} count {} {})", rev(g.header()), g.count(), kvs(g.kvs())),
        TxnOpResponse::Delete(d) => format!("delete({} deleted {})", rev(d.header()), d.deleted()),
        TxnOpResponse::Txn(t) => format!("txn({} succeeded {})", rev(t.header()), t.succeeded()),
    }
}

fn watch_resp(r: &WatchResponse) -> String {
    let mut out = format!("id {} {}", r.watch_id(), rev(r.header()));
    if r.created() {
        out.push_str(" created");
    }
    if r.canceled() {
        out.push_str(" canceled");
    }
    if r.compact_revision() != 0 {
        out.push_str(&format!(" compact_revision {}", r.compact_revision()));
    }
    if !r.cancel_reason().is_empty() {
        out.push_str(&format!(" reason {:?}", r.cancel_reason()));
    }
    let evs: Vec<String> = r
        .events()
        .iter()
        .map(|e| {
            let t = match e.event_type() {
                EventType::Put => "PUT",
                EventType::Delete => "DELETE",
            };
            let k = e.kv().map(kv).unwrap_or_default();
            match e.prev_kv() {
                Some(p) => format!("{t} {k} prev {}", s(p.value())),
                None => format!("{t} {k}"),
            }
        })
        .collect();
    if !evs.is_empty() {
        out.push_str(&format!(" events [{}]", evs.join("; ")));
    }
    out
}

async fn next_watch(stream: &mut WatchStream) -> String {
    match timeout(STEP_TIMEOUT, stream.message()).await {
        Err(_) => "timed out".into(),
        Ok(Err(e)) => err(&e),
        Ok(Ok(None)) => "stream ended".into(),
        Ok(Ok(Some(r))) => watch_resp(&r),
    }
}

#[tokio::main]
async fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let with_lock = args.iter().any(|a| a == "--with-lock");
    args.retain(|a| a != "--with-lock");
    let [endpoint] = args.as_slice() else {
        eprintln!("usage: etcd-client-scenario [--with-lock] <endpoint>");
        std::process::exit(2);
    };
    let mut c = match timeout(STEP_TIMEOUT, Client::connect([endpoint.as_str()], None)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            eprintln!("connect {endpoint}: {e}");
            std::process::exit(2);
        }
        Err(_) => {
            eprintln!("connect {endpoint}: timed out");
            std::process::exit(2);
        }
    };
    let mut run = Run { failures: 0 };
    match timeout(Duration::from_secs(120), scenario(&mut c, &mut run, with_lock)).await {
        Ok(()) => {}
        Err(_) => {
            run.failures += 1;
            println!("FAIL scenario timed out");
        }
    }
    if run.failures > 0 {
        println!("{} step(s) failed", run.failures);
        std::process::exit(1);
    }
    println!("all steps passed");
}

async fn scenario(c: &mut Client, run: &mut Run, with_lock: bool) {
    kv_steps(c, run).await;
    txn_steps(c, run).await;
    lease_steps(c, run).await;
    watch_steps(c, run).await;
    compaction_steps(c, run).await;
    cluster_steps(c, run).await;
    if with_lock {
        lock_steps(c, run).await;
    }
}

async fn kv_steps(c: &mut Client, run: &mut Run) {
    let r = c.put("foo", "bar", None).await;
    run.check("put foo=bar", res(r, |r| format!("{} prev {:?}", rev(r.header()), r.prev_key().map(kv))), "rev 2 prev None");

    let r = c.put("foo", "baz", Some(PutOptions::new().with_prev_key())).await;
    run.check(
        "put foo=baz prev_kv",
        res(r, |r| format!("{} prev {:?}", rev(r.header()), r.prev_key().map(kv))),
        "rev 3 prev Some(\"foo=bar c2 m2 v1\")",
    );

    let r = c.get("foo", None).await;
    run.check(
        "get foo",
        res(r, |r| format!("{} count {} more {} {}", rev(r.header()), r.count(), r.more(), kvs(r.kvs()))),
        "rev 3 count 1 more false [foo=baz c2 m3 v2]",
    );

    for (i, (k, v)) in [("foo/a", "1"), ("foo/b", "2"), ("fop", "x")].into_iter().enumerate() {
        let r = c.put(k, v, None).await;
        run.check(&format!("put {k}={v}"), res(r, |r| rev(r.header())), &format!("rev {}", 4 + i));
    }

    let r = c.get("foo/", Some(GetOptions::new().with_prefix())).await;
    run.check(
        "get prefix foo/",
        res(r, |r| format!("{} count {} more {} {}", rev(r.header()), r.count(), r.more(), kvs(r.kvs()))),
        "rev 6 count 2 more false [foo/a=1 c4 m4 v1, foo/b=2 c5 m5 v1]",
    );

    let r = c.get("foo/", Some(GetOptions::new().with_prefix().with_limit(1))).await;
    run.check(
        "get prefix foo/ limit 1",
        res(r, |r| format!("count {} more {} {}", r.count(), r.more(), kvs(r.kvs()))),
        "count 2 more true [foo/a=1 c4 m4 v1]",
    );

    let r = c.get("foo", Some(GetOptions::new().with_prefix().with_sort(SortTarget::Key, SortOrder::Descend))).await;
    run.check(
        "get prefix foo sorted by key descending",
        res(r, |r| format!("count {} {}", r.count(), kvs(r.kvs()))),
        "count 3 [foo/b=2 c5 m5 v1, foo/a=1 c4 m4 v1, foo=baz c2 m3 v2]",
    );

    let r = c.get("foo/", Some(GetOptions::new().with_prefix().with_count_only())).await;
    run.check("get prefix foo/ count_only", res(r, |r| format!("count {} {}", r.count(), kvs(r.kvs()))), "count 2 []");

    let r = c.get("foo/", Some(GetOptions::new().with_prefix().with_keys_only())).await;
    run.check(
        "get prefix foo/ keys_only",
        res(r, |r| format!("count {} {}", r.count(), kvs(r.kvs()))),
        "count 2 [foo/a= c4 m4 v1, foo/b= c5 m5 v1]",
    );

    let r = c.get("", Some(GetOptions::new().with_all_keys())).await;
    run.check(
        "get all keys",
        res(r, |r| format!("count {} {}", r.count(), r.kvs().iter().map(|k| s(k.key())).collect::<Vec<_>>().join(","))),
        "count 4 foo,foo/a,foo/b,fop",
    );

    let r = c.get("foo", Some(GetOptions::new().with_revision(2))).await;
    run.check("get foo at revision 2", res(r, |r| format!("{} {}", rev(r.header()), kvs(r.kvs()))), "rev 6 [foo=bar c2 m2 v1]");

    let r = c.get("foo", Some(GetOptions::new().with_revision(100))).await;
    run.check(
        "get foo at future revision 100",
        res(r, |r| kvs(r.kvs())),
        "error OutOfRange \"etcdserver: mvcc: required revision is a future revision\"",
    );

    let r = c.get("missing", None).await;
    run.check("get missing", res(r, |r| format!("{} count {} {}", rev(r.header()), r.count(), kvs(r.kvs()))), "rev 6 count 0 []");

    let r = c.put("", "v", None).await;
    run.check("put empty key", res(r, |r| rev(r.header())), "error InvalidArgument \"etcdserver: key is not provided\"");

    let r = c.delete("foo/a", None).await;
    run.check("delete foo/a", res(r, |r| format!("{} deleted {}", rev(r.header()), r.deleted())), "rev 7 deleted 1");

    let r = c.delete("foo/", Some(DeleteOptions::new().with_prefix().with_prev_key())).await;
    run.check(
        "delete prefix foo/ prev_kv",
        res(r, |r| format!("{} deleted {} prev {}", rev(r.header()), r.deleted(), kvs(r.prev_kvs()))),
        "rev 8 deleted 1 prev [foo/b=2 c5 m5 v1]",
    );

    let r = c.delete("foo/", Some(DeleteOptions::new().with_prefix())).await;
    run.check("delete prefix foo/ again", res(r, |r| format!("{} deleted {}", rev(r.header()), r.deleted())), "rev 8 deleted 0");
}

/// A txn response as the checks spell it: revision, branch, and each op's response.
fn txn_resp(r: TxnResponse) -> String {
    format!(
        "{} succeeded {} [{}]",
        rev(r.header()),
        r.succeeded(),
        r.op_responses().iter().map(op_resp).collect::<Vec<_>>().join(", ")
    )
}

async fn txn_steps(c: &mut Client, run: &mut Run) {
    let txn = Txn::new()
        .when([Compare::value("foo", CompareOp::Equal, "baz"), Compare::mod_revision("foo", CompareOp::Equal, 3)])
        .and_then([TxnOp::put("foo", "qux", None), TxnOp::get("foo", None)])
        .or_else([TxnOp::put("foo", "nope", None)]);
    let r = c.txn(txn).await;
    run.check(
        "txn value(foo)==baz && mod(foo)==3",
        res(r, txn_resp),
        "rev 9 succeeded true [put(rev 9), get(rev 9 count 1 [foo=qux c2 m9 v3])]",
    );

    let txn = Txn::new()
        .when([Compare::version("foo", CompareOp::Greater, 5)])
        .and_then([TxnOp::put("foo", "never", None)])
        .or_else([TxnOp::get("foo", None), TxnOp::delete("fop", Some(DeleteOptions::new().with_prev_key()))]);
    let r = c.txn(txn).await;
    run.check(
        "txn version(foo)>5 (else branch)",
        res(r, txn_resp),
        // a sub-response carries the revision at the time of its op: the get precedes the delete
        "rev 10 succeeded false [get(rev 9 count 1 [foo=qux c2 m9 v3]), delete(rev 10 deleted 1)]",
    );

    let txn = Txn::new()
        .when([Compare::create_revision("nokey", CompareOp::Equal, 0), Compare::version("nokey", CompareOp::Less, 1)])
        .and_then([TxnOp::put("nokey", "now", None)]);
    let r = c.txn(txn).await;
    run.check(
        "txn create(nokey)==0 && version(nokey)<1",
        res(r, |r| format!("{} succeeded {}", rev(r.header()), r.succeeded())),
        "rev 11 succeeded true",
    );

    let txn = Txn::new().when([Compare::value("absent", CompareOp::NotEqual, "x")]);
    let r = c.txn(txn).await;
    run.check(
        "txn value(absent)!=x (missing key: value compare false)",
        res(r, |r| format!("{} succeeded {}", rev(r.header()), r.succeeded())),
        "rev 11 succeeded false",
    );

    let txn = Txn::new().and_then([TxnOp::put("dup", "1", None), TxnOp::put("dup", "2", None)]);
    let r = c.txn(txn).await;
    run.check(
        "txn putting one key twice",
        res(r, |r| format!("succeeded {}", r.succeeded())),
        "error InvalidArgument \"etcdserver: duplicate key given in txn request\"",
    );
}

async fn lease_steps(c: &mut Client, run: &mut Run) {
    let grant = c.lease_grant(60, None).await;
    run.check("lease grant 60", res(grant.as_ref().map_err(clone_err), |r| format!("ttl {}", r.ttl())), "ttl 60");
    let Ok(grant) = grant else { return };
    let id = grant.id();

    let r = c.put("lk", "lv", Some(PutOptions::new().with_lease(id))).await;
    run.check("put lk with the lease", res(r, |r| rev(r.header())), "rev 12");

    let r = c.get("lk", None).await;
    run.check("get lk", res(r, |r| format!("lease matches {} {}", r.kvs().first().map(|k| k.lease() == id).unwrap_or(false), kvs(r.kvs()))), "lease matches true [lk=lv c12 m12 v1 leased]");

    match c.lease_keep_alive(id).await {
        Err(e) => run.check("lease keep-alive once", err(&e), "ttl 60"),
        Ok((mut keeper, mut stream)) => {
            let sent = keeper.keep_alive().await;
            let got = match sent {
                Err(e) => err(&e),
                Ok(()) => match timeout(STEP_TIMEOUT, stream.message()).await {
                    Err(_) => "timed out".into(),
                    Ok(Err(e)) => err(&e),
                    Ok(Ok(None)) => "stream ended".into(),
                    Ok(Ok(Some(r))) => format!("id matches {} ttl {}", r.id() == id, r.ttl()),
                },
            };
            run.check("lease keep-alive once", got, "id matches true ttl 60");
        }
    }

    let r = c.lease_time_to_live(id, Some(LeaseTimeToLiveOptions::new().with_keys())).await;
    match r {
        Err(e) => run.check("lease time-to-live with keys", err(&e), "granted 60 keys [lk]"),
        Ok(r) => {
            run.check(
                "lease time-to-live with keys",
                format!(
                    "id matches {} granted {} keys [{}]",
                    r.id() == id,
                    r.granted_ttl(),
                    r.keys().iter().map(|k| s(k)).collect::<Vec<_>>().join(",")
                ),
                "id matches true granted 60 keys [lk]",
            );
            run.check_that("lease time-to-live remaining", "55 <= ttl <= 60", (55..=60).contains(&r.ttl()), r.ttl());
        }
    }

    let r = c.leases().await;
    run.check("lease list", res(r, |r| format!("contains the lease {}", r.leases().iter().any(|l| l.id() == id))), "contains the lease true");

    let r = c.lease_revoke(id).await;
    run.check("lease revoke", res(r, |r| rev(r.header())), "rev 13");

    let r = c.get("lk", None).await;
    run.check("get lk after revoke", res(r, |r| format!("{} count {}", rev(r.header()), r.count())), "rev 13 count 0");

    let r = c.lease_time_to_live(id, None).await;
    run.check("lease time-to-live after revoke", res(r, |r| format!("ttl {} granted {}", r.ttl(), r.granted_ttl())), "ttl -1 granted 0");

    let r = c.lease_keep_alive(id).await;
    run.check("lease keep-alive after revoke", res(r, |_| "ok".into()), "error lease keep alive error: lease not found");

    let r = c.lease_revoke(id).await;
    run.check("lease revoke again", res(r, |r| rev(r.header())), "error NotFound \"etcdserver: requested lease not found\"");

    let r = c.put("lk", "lv", Some(PutOptions::new().with_lease(id))).await;
    run.check("put with the revoked lease", res(r, |r| rev(r.header())), "error NotFound \"etcdserver: requested lease not found\"");

    let r = c.lease_grant(1, None).await;
    run.check("lease grant 1 (raised to the minimum)", res(r, |r| format!("ttl {}", r.ttl())), "ttl 2");
}

fn clone_err(e: &Error) -> Error {
    Error::InvalidArgs(err(e))
}

async fn watch_steps(c: &mut Client, run: &mut Run) {
    let mut w = match c.watch("w/", Some(WatchOptions::new().with_prefix().with_prev_key())).await {
        Ok(w) => w,
        Err(e) => return run.check("watch prefix w/ prev_kv", err(&e), "created"),
    };
    run.check("watch prefix w/ prev_kv", next_watch(&mut w).await, "id 0 rev 13 created");

    let mut c2 = c.clone();
    let writer = tokio::spawn(async move {
        let a = c2.put("w/1", "a", None).await.map(|_| ());
        let b = c2.put("w/2", "b", None).await.map(|_| ());
        let d = c2.delete("w/1", None).await.map(|_| ());
        a.and(b).and(d)
    });
    let mut events = 0;
    let mut i = 0;
    while events < 3 && i < 5 {
        let got = next_watch(&mut w).await;
        events += got.matches("PUT ").count() + got.matches("DELETE ").count();
        let want = match i {
            0 => "id 0 rev 14 events [PUT w/1=a c14 m14 v1]",
            1 => "id 0 rev 15 events [PUT w/2=b c15 m15 v1]",
            2 => "id 0 rev 16 events [DELETE w/1= c0 m16 v0 prev a]",
            _ => "no more responses",
        };
        if got == "timed out" || got == "stream ended" || got.starts_with("error") {
            run.check(&format!("watch response {}", i + 1), got, want);
            break;
        }
        run.check(&format!("watch response {}", i + 1), got, want);
        i += 1;
    }
    let wr = writer.await.map_err(|e| e.to_string()).and_then(|r| r.map_err(|e| err(&e)));
    run.check("writes seen by the watch", format!("{wr:?}"), "Ok(())");

    let r = w.cancel(0).await;
    run.check("watch cancel", res(r, |_| "sent".into()), "sent");
    run.check("watch canceled", next_watch(&mut w).await, "id 0 rev 16 canceled");

    // History replay from a start revision: etcd sends it in one response.
    let r = w.watch("w/", Some(WatchOptions::new().with_prefix().with_start_revision(14))).await;
    run.check("watch prefix w/ from revision 14", res(r, |_| "sent".into()), "sent");
    run.check("watch from revision 14 created", next_watch(&mut w).await, "id 1 rev 16 created");
    run.check(
        "watch from revision 14 history",
        next_watch(&mut w).await,
        "id 1 rev 16 events [PUT w/1=a c14 m14 v1; PUT w/2=b c15 m15 v1; DELETE w/1= c0 m16 v0]",
    );
    let r = w.request_progress().await;
    run.check("watch progress request", res(r, |_| "sent".into()), "sent");
    run.check("watch progress notification", next_watch(&mut w).await, "id -1 rev 16");
    let _ = w.cancel(1).await;
    run.check("watch 1 canceled", next_watch(&mut w).await, "id 1 rev 16 canceled");
    let r = w.request_progress().await;
    run.check("watch progress request on a stream without watchers", res(r, |_| "sent".into()), "sent");
    run.check("watch progress notification without watchers", next_watch(&mut w).await, "id -1 rev 16");
}

async fn compaction_steps(c: &mut Client, run: &mut Run) {
    let r = c.compact(14, None).await;
    run.check("compact 14", res(r, |r| rev(r.header())), "rev 16");

    let r = c.get("foo", Some(GetOptions::new().with_revision(10))).await;
    run.check(
        "get foo at compacted revision 10",
        res(r, |r| kvs(r.kvs())),
        "error OutOfRange \"etcdserver: mvcc: required revision has been compacted\"",
    );

    let r = c.get("foo", Some(GetOptions::new().with_revision(14))).await;
    run.check("get foo at revision 14", res(r, |r| format!("{} {}", rev(r.header()), kvs(r.kvs()))), "rev 16 [foo=qux c2 m9 v3]");

    let r = c.compact(14, None).await;
    run.check("compact 14 again", res(r, |r| rev(r.header())), "error OutOfRange \"etcdserver: mvcc: required revision has been compacted\"");

    let mut w = match c.watch("w/", Some(WatchOptions::new().with_prefix().with_start_revision(5))).await {
        Ok(w) => w,
        Err(e) => return run.check("watch from compacted revision 5", err(&e), "created"),
    };
    run.check("watch from compacted revision 5", next_watch(&mut w).await, "id 0 rev 16 created");
    run.check(
        "watch from compacted revision 5 canceled",
        next_watch(&mut w).await,
        // etcd 3.4: an empty header (revision 0) and no cancel_reason
        "id 0 rev 0 canceled compact_revision 14",
    );
}

async fn cluster_steps(c: &mut Client, run: &mut Run) {
    let r = c.member_list().await;
    run.check(
        "member list",
        res(r, |r| {
            r.members()
                .iter()
                .map(|m| format!("{} peers {:?} clients {}", m.name(), m.peer_urls().len(), m.client_urls().len()))
                .collect::<Vec<_>>()
                .join("; ")
        }),
        "default peers 1 clients 1",
    );
    let r = c.status().await;
    run.check(
        "status",
        res(r, |r| format!("leader is member {} {}", r.leader() == r.header().map(|h| h.member_id()).unwrap_or(0), rev(r.header()))),
        "leader is member true rev 16",
    );
}

async fn lock_steps(c: &mut Client, run: &mut Run) {
    let lease = match c.lease_grant(30, None).await {
        Ok(l) => l.id(),
        Err(e) => return run.check("lock: lease grant", err(&e), "ok"),
    };
    let r = c.lock("mylock", Some(LockOptions::new().with_lease(lease))).await;
    let key = match r {
        Ok(r) => {
            let k = r.key().to_vec();
            run.check("lock mylock", format!("key has prefix {}", k.starts_with(b"mylock/")), "key has prefix true");
            k
        }
        Err(e) => return run.check("lock mylock", err(&e), "key has prefix true"),
    };
    let r = c.get(key.clone(), None).await;
    run.check("get the lock key", res(r, |r| format!("count {}", r.count())), "count 1");
    let r = c.unlock(key.clone()).await;
    run.check("unlock", res(r, |_| "ok".into()), "ok");
    let r = c.get(key, None).await;
    run.check("get the lock key after unlock", res(r, |r| format!("count {}", r.count())), "count 0");
}
