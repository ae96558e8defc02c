//! The ZooKeeper port at the byte level: exact request bytes in, exact reply bytes out, against
//! an in-process node over real TCP (mini-redis style). The bytes were written from
//! zookeeper.jute; the compat suite checks the same behaviour with real clients against both
//! Conclave and ZooKeeper 3.8.

mod common;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::zk::{be32, be64, connect, packet, read_packet, string};

#[tokio::test]
async fn handshake_requests_and_errors_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let node = common::start(dir.path()).await;
    let addr = node.zk_addr.expect("zookeeper listener");
    let mut s = TcpStream::connect(addr).await.unwrap();
    // 1 s asked, clamped to 2 ticks of the default 2000 ms tickTime.
    let (sid, passwd, timeout) = connect(&mut s, 1000).await;
    assert_eq!(timeout, 4000);
    assert!(sid > 0);

    // create("/a", "x", world:anyone, persistent) with xid 1: the reply is the header (xid 1,
    // zxid 2: the store's first write revision, as etcd's, err 0) and the created path.
    let acl = [&be32(1)[..], &be32(31), &string("world"), &string("anyone")].concat();
    s.write_all(&packet(&[&be32(1), &be32(1), &string("/a"), &string("x"), &acl, &be32(0)])).await.unwrap();
    assert_eq!(read_packet(&mut s).await, [&be32(1)[..], &be64(2), &be32(0), &string("/a")].concat());

    // getData("/nope") -> NoNode (-101): a header and no body.
    s.write_all(&packet(&[&be32(2), &be32(4), &string("/nope"), &[0]])).await.unwrap();
    assert_eq!(read_packet(&mut s).await, [&be32(2)[..], &be64(2), &be32(-101)].concat());

    // Pipelined: setData then getData; replies in order, the read sees the write.
    s.write_all(
        &[
            packet(&[&be32(3), &be32(5), &string("/a"), &string("yz"), &be32(0)]),
            packet(&[&be32(4), &be32(4), &string("/a"), &[0]]),
        ]
        .concat(),
    )
    .await
    .unwrap();
    let set = read_packet(&mut s).await;
    assert_eq!(&set[..16], [&be32(3)[..], &be64(3), &be32(0)].concat());
    let get = read_packet(&mut s).await;
    assert_eq!(&get[..16], [&be32(4)[..], &be64(3), &be32(0)].concat());
    assert_eq!(&get[16..22], &string("yz")[..]);
    // Stat: czxid 2, mzxid 3, ctime, mtime, version 1, cversion 0, aversion 0, owner 0,
    // dataLength 2, numChildren 0, pzxid 2.
    let stat = &get[22..];
    assert_eq!(stat.len(), 68);
    assert_eq!(&stat[0..16], [be64(2), be64(3)].concat());
    assert_eq!(&stat[32..44], [be32(1), be32(0), be32(0)].concat());
    assert_eq!(&stat[44..68], [&be64(0)[..], &be32(2), &be32(0), &be64(2)].concat());

    // Ping: xid -2, op 11 -> header only.
    s.write_all(&packet(&[&be32(-2), &be32(11)])).await.unwrap();
    assert_eq!(read_packet(&mut s).await, [&be32(-2)[..], &be64(3), &be32(0)].concat());

    // A body that does not decode -> MarshallingError (-5), and the connection goes on.
    s.write_all(&packet(&[&be32(6), &be32(1), &[0xff, 0xff, 0xff]])).await.unwrap();
    assert_eq!(read_packet(&mut s).await, [&be32(6)[..], &be64(3), &be32(-5)].concat());

    // An unknown op code -> Unimplemented (-6), then the connection closes (not the session:
    // it is resumed below).
    s.write_all(&packet(&[&be32(5), &be32(999)])).await.unwrap();
    assert_eq!(read_packet(&mut s).await, [&be32(5)[..], &be64(3), &be32(-6)].concat());
    let mut rest = Vec::new();
    assert_eq!(s.read_to_end(&mut rest).await.unwrap(), 0, "closed after the answer");

    // A second connection with the right password resumes the session; a wrong one gets
    // ZooKeeper's "expired" answer (timeout 0, session 0, zero password) and is closed.
    let mut again = TcpStream::connect(addr).await.unwrap();
    let resume = packet(&[&be32(0), &be64(3), &be32(4000), &be64(sid), &be32(16), &passwd, &[0]]);
    again.write_all(&resume).await.unwrap();
    let r = read_packet(&mut again).await;
    assert_eq!(&r[8..16], &be64(sid));
    let mut bad = TcpStream::connect(addr).await.unwrap();
    let wrong = packet(&[&be32(0), &be64(0), &be32(4000), &be64(sid), &be32(16), &[9u8; 16], &[0]]);
    bad.write_all(&wrong).await.unwrap();
    assert_eq!(read_packet(&mut bad).await, [&be32(0)[..], &be32(0), &be64(0), &be32(16), &[0u8; 16], &[0]].concat());
    assert_eq!(bad.read_to_end(&mut rest).await.unwrap(), 0, "closed after the answer");
    // As in ZooKeeper, the attempt (wrong password and all) also closed the connection that
    // held the session, without a word.
    // (Sooner than the 4 s session timeout, after which a silent connection closes anyway.)
    let closed = tokio::time::timeout(Duration::from_secs(2), again.read_to_end(&mut rest)).await;
    assert_eq!(closed.expect("closed before the timeout").unwrap(), 0, "the holder is closed");
    assert!(rest.is_empty());

    node.shutdown().await;
}

#[tokio::test]
async fn four_letter_words_and_bad_frames() {
    let dir = tempfile::tempdir().unwrap();
    let node = common::start(dir.path()).await;
    let addr = node.zk_addr.unwrap();

    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"ruok").await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert_eq!(out, "imok");

    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"srvr").await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("Zookeeper version: 3.8.0"), "{out}");
    assert!(out.contains("\nMode: standalone\n"), "{out}");

    // A length over jute.maxbuffer closes the connection and nothing else.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&be32(0x0100_0000)).await.unwrap();
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await.unwrap().unwrap_or(0);
    assert_eq!(n, 0);
    // So does a request header shorter than its 8 bytes after a good handshake (a body that
    // does not decode is answered instead: see handshake_requests_and_errors_byte_for_byte).
    let mut s = TcpStream::connect(addr).await.unwrap();
    connect(&mut s, 4000).await;
    s.write_all(&packet(&[&be32(1), &[0, 0]])).await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await.unwrap().unwrap_or(0);
    assert_eq!(n, 0);
    // The server still serves.
    let mut s = TcpStream::connect(addr).await.unwrap();
    connect(&mut s, 4000).await;

    node.shutdown().await;
}

#[tokio::test]
async fn watch_event_precedes_the_reply_that_shows_the_change() {
    let dir = tempfile::tempdir().unwrap();
    let node = common::start(dir.path()).await;
    let addr = node.zk_addr.unwrap();
    let acl = [&be32(1)[..], &be32(31), &string("world"), &string("anyone")].concat();
    let mut a = TcpStream::connect(addr).await.unwrap();
    connect(&mut a, 4000).await;
    let mut b = TcpStream::connect(addr).await.unwrap();
    connect(&mut b, 4000).await;
    a.write_all(&packet(&[&be32(1), &be32(1), &string("/w"), &string(""), &acl, &be32(0)])).await.unwrap();
    read_packet(&mut a).await;
    // a: getData("/w", watch) ; b: setData("/w") ; a: getData("/w") must see the
    // NodeDataChanged notification (xid -1, zxid -1) before the reply with the new data.
    a.write_all(&packet(&[&be32(2), &be32(4), &string("/w"), &[1]])).await.unwrap();
    read_packet(&mut a).await;
    b.write_all(&packet(&[&be32(1), &be32(5), &string("/w"), &string("new"), &be32(-1)])).await.unwrap();
    read_packet(&mut b).await;
    a.write_all(&packet(&[&be32(3), &be32(4), &string("/w"), &[0]])).await.unwrap();
    let first = read_packet(&mut a).await;
    assert_eq!(first, [&be32(-1)[..], &be64(-1), &be32(0), &be32(3), &be32(3), &string("/w")].concat());
    let second = read_packet(&mut a).await;
    assert_eq!(&second[..4], &be32(3));
    assert_eq!(&second[16..23], &string("new")[..]);
    node.shutdown().await;
}

/// Goal: a session whose client went away expires after its timeout: its ephemerals go in one
/// revision, and resuming it gets ZooKeeper's "expired" answer. Method: a 1 s session
/// (tickTime 500 ms), an ephemeral, the socket dropped, then polling from a second session.
#[tokio::test]
async fn session_expiry_removes_ephemerals() {
    let dir = tempfile::tempdir().unwrap();
    let node = common::start_with(dir.path(), &["--zk-tick-time", "500"]).await;
    let addr = node.zk_addr.unwrap();
    let acl = [&be32(1)[..], &be32(31), &string("world"), &string("anyone")].concat();
    let mut a = TcpStream::connect(addr).await.unwrap();
    let (sid, passwd, timeout) = connect(&mut a, 1000).await;
    assert_eq!(timeout, 1000);
    a.write_all(&packet(&[&be32(1), &be32(1), &string("/eph"), &string(""), &acl, &be32(1)])).await.unwrap();
    read_packet(&mut a).await;
    drop(a);

    let mut b = TcpStream::connect(addr).await.unwrap();
    connect(&mut b, 20_000).await;
    let mut gone = false;
    for xid in 1..200 {
        b.write_all(&packet(&[&be32(xid), &be32(3), &string("/eph"), &[0]])).await.unwrap();
        let r = read_packet(&mut b).await;
        if i32::from_be_bytes(r[12..16].try_into().unwrap()) == -101 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "the ephemeral of the expired session is deleted");
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(&packet(&[&be32(0), &be64(0), &be32(1000), &be64(sid), &be32(16), &passwd, &[0]])).await.unwrap();
    let r = read_packet(&mut c).await;
    assert_eq!(&r[4..16], [&be32(0)[..], &be64(0)].concat(), "timeout 0, session 0: expired");
    node.shutdown().await;
}

/// Goal: a connection answers a long pipeline in request order, each read seeing every write
/// sent before it, even with packets split across TCP segments; closeSession at the end of the
/// pipeline is answered after everything before it, and then the connection closes. Method:
/// 200 setData/getData pairs in one buffer written in uneven pieces, then closeSession.
#[tokio::test]
async fn a_pipeline_is_answered_in_order_and_close_session_comes_last() {
    let dir = tempfile::tempdir().unwrap();
    let node = common::start(dir.path()).await;
    let addr = node.zk_addr.unwrap();
    let mut s = TcpStream::connect(addr).await.unwrap();
    connect(&mut s, 4000).await;
    s.write_all(&common::zk::create(1, "/p", "", 0)).await.unwrap();
    assert_eq!(common::zk::err_of(&read_packet(&mut s).await), 0);

    const PAIRS: i32 = 200;
    let mut all = Vec::new();
    for i in 0..PAIRS {
        let data = format!("v{i}");
        all.extend(packet(&[&be32(10 + 2 * i), &be32(5), &string("/p"), &string(&data), &be32(i)]));
        all.extend(packet(&[&be32(11 + 2 * i), &be32(4), &string("/p"), &[0]]));
    }
    all.extend(packet(&[&be32(9999), &be32(-11)]));
    // Uneven pieces, so packets arrive split and several at once.
    for piece in all.chunks(777) {
        s.write_all(piece).await.unwrap();
    }
    for i in 0..PAIRS {
        let set = read_packet(&mut s).await;
        assert_eq!(&set[..4], &be32(10 + 2 * i), "replies in request order");
        assert_eq!(common::zk::err_of(&set), 0, "setData with version {i}");
        let get = read_packet(&mut s).await;
        assert_eq!(&get[..4], &be32(11 + 2 * i));
        let data = format!("v{i}");
        assert_eq!(&get[16..16 + 4 + data.len()], &string(&data)[..], "the read sees the write before it");
        assert_eq!(&set[8..16], &get[8..16], "the read's zxid is the write's");
    }
    let close = read_packet(&mut s).await;
    assert_eq!(&close[..4], &be32(9999));
    assert_eq!(common::zk::err_of(&close), 0);
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await.unwrap().unwrap_or(0);
    assert_eq!(n, 0, "closed after the closeSession reply");
    node.shutdown().await;
}

/// Goal: a connection holds at most 1024 identities (its ip one and 1023 digests): the addauth
/// past that is answered AuthFailed (-115) and the connection closes, as for an unknown scheme;
/// adding one it holds already is still fine. Method: 1023 distinct addauths pipelined, then one
/// repeated, then one more.
#[tokio::test]
async fn identities_per_connection_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let node = common::start(dir.path()).await;
    let mut s = TcpStream::connect(node.zk_addr.expect("zookeeper listener")).await.unwrap();
    connect(&mut s, 4000).await;
    let addauth = |user: &str| packet(&[&be32(-4), &be32(100), &be32(0), &string("digest"), &string(user)]);
    let burst: Vec<u8> = (0..1023).flat_map(|i| addauth(&format!("u{i}:pw"))).collect();
    s.write_all(&burst).await.unwrap();
    for _ in 0..1023 {
        assert_eq!(read_packet(&mut s).await, [&be32(-4)[..], &be64(0), &be32(0)].concat());
    }
    s.write_all(&addauth("u7:pw")).await.unwrap();
    assert_eq!(read_packet(&mut s).await, [&be32(-4)[..], &be64(0), &be32(0)].concat());
    s.write_all(&addauth("one-more:pw")).await.unwrap();
    assert_eq!(read_packet(&mut s).await, [&be32(-4)[..], &be64(0), &be32(-115)].concat());
    let mut rest = Vec::new();
    assert_eq!(s.read_to_end(&mut rest).await.unwrap(), 0, "closed after the answer");
    node.shutdown().await;
}
