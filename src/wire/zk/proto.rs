//! ZooKeeper's client protocol records (zookeeper.jute), op codes and error codes, as typed
//! Rust values with exact jute encodings. Knows nothing of sessions, the store or sockets.

use super::jute::{JuteError, Reader, Writer};

/// Op codes (ZooDefs.OpCode).
pub mod op {
    pub const NOTIFICATION: i32 = 0;
    pub const CREATE: i32 = 1;
    pub const DELETE: i32 = 2;
    pub const EXISTS: i32 = 3;
    pub const GET_DATA: i32 = 4;
    pub const SET_DATA: i32 = 5;
    pub const GET_ACL: i32 = 6;
    pub const SET_ACL: i32 = 7;
    pub const GET_CHILDREN: i32 = 8;
    pub const SYNC: i32 = 9;
    pub const PING: i32 = 11;
    pub const GET_CHILDREN2: i32 = 12;
    pub const CHECK: i32 = 13;
    pub const MULTI: i32 = 14;
    pub const CREATE2: i32 = 15;
    pub const RECONFIG: i32 = 16;
    pub const CHECK_WATCHES: i32 = 17;
    pub const REMOVE_WATCHES: i32 = 18;
    pub const CREATE_CONTAINER: i32 = 19;
    pub const DELETE_CONTAINER: i32 = 20;
    pub const CREATE_TTL: i32 = 21;
    pub const MULTI_READ: i32 = 22;
    pub const AUTH: i32 = 100;
    pub const SET_WATCHES: i32 = 101;
    pub const SASL: i32 = 102;
    pub const GET_EPHEMERALS: i32 = 103;
    pub const GET_ALL_CHILDREN_NUMBER: i32 = 104;
    pub const SET_WATCHES2: i32 = 105;
    pub const ADD_WATCH: i32 = 106;
    pub const WHO_AM_I: i32 = 107;
    pub const CREATE_SESSION: i32 = -10;
    pub const CLOSE_SESSION: i32 = -11;
    pub const ERROR: i32 = -1;
}

/// Error codes (KeeperException.Code), as they travel in a reply header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum ErrorCode {
    Ok = 0,
    SystemError = -1,
    RuntimeInconsistency = -2,
    DataInconsistency = -3,
    ConnectionLoss = -4,
    MarshallingError = -5,
    Unimplemented = -6,
    OperationTimeout = -7,
    BadArguments = -8,
    UnknownSession = -12,
    NewConfigNoQuorum = -13,
    ReconfigInProgress = -14,
    ApiError = -100,
    NoNode = -101,
    NoAuth = -102,
    BadVersion = -103,
    NoChildrenForEphemerals = -108,
    NodeExists = -110,
    NotEmpty = -111,
    SessionExpired = -112,
    InvalidCallback = -113,
    InvalidAcl = -114,
    AuthFailed = -115,
    SessionMoved = -118,
    NotReadOnly = -119,
    EphemeralOnLocalSession = -120,
    NoWatcher = -121,
    RequestTimeout = -122,
    ReconfigDisabled = -123,
    SessionClosedRequireSaslAuth = -124,
    QuotaExceeded = -125,
    Throttled = -127,
}

/// Special xids: a notification carries -1, a ping reply -2, an auth reply -4, setWatches -8.
pub mod xid {
    pub const NOTIFICATION: i32 = -1;
    pub const PING: i32 = -2;
    pub const AUTH: i32 = -4;
    pub const SET_WATCHES: i32 = -8;
}

/// ZooKeeper's Stat record: the store's [`ZkStat`](crate::command::ZkStat), which is field for
/// field the jute record; the encoding lives here with the other records.
pub type Stat = crate::command::ZkStat;

impl Stat {
    pub fn write(&self, w: &mut Writer) {
        w.long(self.czxid).long(self.mzxid).long(self.ctime).long(self.mtime);
        w.int(self.version).int(self.cversion).int(self.aversion);
        w.long(self.ephemeral_owner).int(self.data_length).int(self.num_children).long(self.pzxid);
    }

    pub fn read(r: &mut Reader<'_>) -> Result<Stat, JuteError> {
        Ok(Stat {
            czxid: r.long()?,
            mzxid: r.long()?,
            ctime: r.long()?,
            mtime: r.long()?,
            version: r.int()?,
            cversion: r.int()?,
            aversion: r.int()?,
            ephemeral_owner: r.long()?,
            data_length: r.int()?,
            num_children: r.int()?,
            pzxid: r.long()?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acl {
    pub perms: i32,
    pub scheme: String,
    pub id: String,
}

impl Acl {
    pub fn read(r: &mut Reader<'_>) -> Result<Acl, JuteError> {
        Ok(Acl { perms: r.int()?, scheme: r.ustring()?, id: r.ustring()? })
    }

    pub fn write(&self, w: &mut Writer) {
        w.int(self.perms).ustring(&self.scheme).ustring(&self.id);
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    pub protocol_version: i32,
    pub last_zxid_seen: i64,
    pub timeout_ms: i32,
    pub session_id: i64,
    pub passwd: Vec<u8>,
    /// None for an old client that did not send the flag; such a client gets no flag back.
    pub read_only: Option<bool>,
}

impl ConnectRequest {
    pub fn read(r: &mut Reader<'_>) -> Result<ConnectRequest, JuteError> {
        Ok(ConnectRequest {
            protocol_version: r.int()?,
            last_zxid_seen: r.long()?,
            timeout_ms: r.int()?,
            session_id: r.long()?,
            passwd: r.buffer()?,
            read_only: if r.remaining() > 0 { Some(r.boolean()?) } else { None },
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectResponse {
    pub protocol_version: i32,
    pub timeout_ms: i32,
    pub session_id: i64,
    pub passwd: Vec<u8>,
    pub read_only: Option<bool>,
}

impl ConnectResponse {
    pub fn write(&self, w: &mut Writer) {
        w.int(self.protocol_version).int(self.timeout_ms).long(self.session_id).buffer(&self.passwd);
        if let Some(ro) = self.read_only {
            w.boolean(ro);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyHeader {
    pub xid: i32,
    pub zxid: i64,
    pub err: i32,
}

impl ReplyHeader {
    pub fn write(&self, w: &mut Writer) {
        w.buf.extend_from_slice(&self.bytes());
    }

    /// The header's 16 bytes (xid, zxid, err, big-endian), without a buffer to write them to.
    pub fn bytes(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&self.xid.to_be_bytes());
        b[4..12].copy_from_slice(&self.zxid.to_be_bytes());
        b[12..].copy_from_slice(&self.err.to_be_bytes());
        b
    }
}

/// One request after the connect handshake: the header's xid and the typed body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub xid: i32,
    pub op: i32,
    pub body: RequestBody,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestBody {
    Ping,
    CloseSession,
    /// create, create2, createContainer, createTTL (ttl_ms 0 unless createTTL).
    /// `data` None is jute's null buffer (zkCli's `create /n`), which ZooKeeper keeps apart
    /// from empty data.
    Create {
        path: String,
        data: Option<Vec<u8>>,
        acl: Vec<Acl>,
        flags: i32,
        ttl_ms: i64,
    },
    Delete {
        path: String,
        version: i32,
    },
    Exists {
        path: String,
        watch: bool,
    },
    GetData {
        path: String,
        watch: bool,
    },
    SetData {
        path: String,
        data: Option<Vec<u8>>,
        version: i32,
    },
    GetAcl {
        path: String,
    },
    SetAcl {
        path: String,
        acl: Vec<Acl>,
        version: i32,
    },
    /// getChildren and getChildren2.
    GetChildren {
        path: String,
        watch: bool,
    },
    GetAllChildrenNumber {
        path: String,
    },
    GetEphemerals {
        prefix: String,
    },
    /// sync; a null path is echoed as null.
    Sync {
        path: Option<String>,
    },
    Check {
        path: String,
        version: i32,
    },
    /// multi and multiRead: the ops in order.
    Multi(Vec<Request>),
    Auth {
        auth_type: i32,
        scheme: String,
        auth: Vec<u8>,
    },
    /// setWatches (persistent lists empty) and setWatches2.
    SetWatches {
        relative_zxid: i64,
        data: Vec<String>,
        exist: Vec<String>,
        child: Vec<String>,
        persistent: Vec<String>,
        persistent_recursive: Vec<String>,
    },
    AddWatch {
        path: String,
        mode: i32,
    },
    /// checkWatches and removeWatches.
    Watches {
        path: String,
        watch_type: i32,
    },
    WhoAmI,
    /// GetSASLRequest: the client's next SASL token (a null one is a read error).
    Sasl {
        token: Vec<u8>,
    },
    GetConfig {
        watch: bool,
    },
    /// reconfig (ReconfigRequest: joining, leaving, new members, config id), decoded only to
    /// tell a malformed one (MarshallingError) from a well-formed one, which a standalone
    /// server refuses with ReconfigDisabled.
    Reconfig,
    /// deleteContainer. Its body is never read: ZooKeeper 3.8.0 takes the whole packet's bytes
    /// as the path (`new String(request.request.array())`, the header included), so from a
    /// client it always fails validation and answers BadArguments.
    DeleteContainer,
    /// An op code this codec does not know; the server answers Unimplemented and closes the
    /// connection (ZooKeeper's UnimplementedRequestProcessor).
    Unknown,
    /// A known op whose body does not decode. ZooKeeper decodes a body in its request
    /// processors, which answer MarshallingError and keep the connection (only auth and SASL
    /// packets are decoded as they arrive, and a bad one closes the connection: those stay
    /// errors of [`Request::read`]).
    Malformed,
}

fn read_multi(r: &mut Reader<'_>, xid: i32) -> Result<Vec<Request>, JuteError> {
    // MultiHeader {type, done, err} before each op; done=true ends the list.
    let mut ops = Vec::new();
    loop {
        let op = r.int()?;
        let done = r.boolean()?;
        let _err = r.int()?;
        if done {
            return Ok(ops);
        }
        // ZooKeeper's MultiOperationRecord takes only these, and one kind per multi ("Mixing
        // different kind of ops"); anything else fails the whole record.
        let read = match op {
            op::CREATE
            | op::CREATE2
            | op::CREATE_CONTAINER
            | op::CREATE_TTL
            | op::DELETE
            | op::SET_DATA
            | op::CHECK => false,
            op::GET_CHILDREN | op::GET_DATA => true,
            _ => return Err(JuteError::BadOp { op }),
        };
        if ops.first().is_some_and(|first: &Request| matches!(first.op, op::GET_CHILDREN | op::GET_DATA) != read) {
            return Err(JuteError::BadOp { op });
        }
        let body = read_body(r, op, xid)?;
        ops.push(Request { xid, op, body });
        if ops.len() > MULTI_OPS_MAX {
            return Err(JuteError::BadLength { at: 0, len: ops.len() as i32 });
        }
    }
}

/// Most operations in one multi; the packet size limit bounds it too.
pub const MULTI_OPS_MAX: usize = 10_000;

fn read_body(r: &mut Reader<'_>, op: i32, xid: i32) -> Result<RequestBody, JuteError> {
    use RequestBody as B;
    Ok(match op {
        op::PING => B::Ping,
        op::CLOSE_SESSION => B::CloseSession,
        op::CREATE | op::CREATE2 | op::CREATE_CONTAINER => B::Create {
            path: r.ustring_not_null()?,
            data: r.buffer_opt()?,
            acl: r.vector(Acl::read)?,
            flags: r.int()?,
            ttl_ms: 0,
        },
        op::CREATE_TTL => B::Create {
            path: r.ustring_not_null()?,
            data: r.buffer_opt()?,
            acl: r.vector(Acl::read)?,
            flags: r.int()?,
            ttl_ms: r.long()?,
        },
        op::DELETE => B::Delete { path: r.ustring_not_null()?, version: r.int()? },
        op::DELETE_CONTAINER => B::DeleteContainer,
        op::RECONFIG => {
            for _ in 0..3 {
                r.ustring()?;
            }
            r.long()?;
            B::Reconfig
        }
        op::EXISTS => B::Exists { path: r.ustring_not_null()?, watch: r.boolean()? },
        op::GET_DATA => {
            let path = r.ustring_not_null()?;
            let watch = r.boolean()?;
            if path == "/zookeeper/config" {
                B::GetConfig { watch }
            } else {
                B::GetData { path, watch }
            }
        }
        op::SET_DATA => B::SetData { path: r.ustring()?, data: r.buffer_opt()?, version: r.int()? },
        op::GET_ACL => B::GetAcl { path: r.ustring_not_null()? },
        op::SET_ACL => B::SetAcl { path: r.ustring()?, acl: r.vector(Acl::read)?, version: r.int()? },
        op::GET_CHILDREN | op::GET_CHILDREN2 => B::GetChildren { path: r.ustring_not_null()?, watch: r.boolean()? },
        op::GET_ALL_CHILDREN_NUMBER => B::GetAllChildrenNumber { path: r.ustring_not_null()? },
        op::GET_EPHEMERALS => B::GetEphemerals { prefix: r.ustring()? },
        op::SYNC => B::Sync { path: r.ustring_opt()? },
        op::CHECK => B::Check { path: r.ustring()?, version: r.int()? },
        op::MULTI | op::MULTI_READ => B::Multi(read_multi(r, xid)?),
        op::AUTH => B::Auth { auth_type: r.int()?, scheme: r.ustring()?, auth: r.buffer()? },
        op::SET_WATCHES | op::SET_WATCHES2 => {
            // DataTree.setWatches iterates every list: a null one is a NullPointerException.
            let relative_zxid = r.long()?;
            let data = r.vector_not_null(|r| r.ustring())?;
            let exist = r.vector_not_null(|r| r.ustring())?;
            let child = r.vector_not_null(|r| r.ustring())?;
            let (persistent, persistent_recursive) = if op == op::SET_WATCHES2 {
                (r.vector_not_null(|r| r.ustring())?, r.vector_not_null(|r| r.ustring())?)
            } else {
                (Vec::new(), Vec::new())
            };
            B::SetWatches { relative_zxid, data, exist, child, persistent, persistent_recursive }
        }
        op::ADD_WATCH => B::AddWatch { path: r.ustring()?, mode: r.int()? },
        op::CHECK_WATCHES => B::Watches { path: r.ustring_not_null()?, watch_type: r.int()? },
        op::REMOVE_WATCHES => B::Watches { path: r.ustring()?, watch_type: r.int()? },
        op::WHO_AM_I => B::WhoAmI,
        // processSasl reads the token's length at once: a null token closes the connection.
        op::SASL => B::Sasl { token: r.buffer_not_null()? },
        _ => B::Unknown,
    })
}

impl Request {
    /// Parses one packet payload (after the handshake): RequestHeader then the body. An error
    /// (the connection closes) for a short header or a bad auth or SASL body; any other body
    /// that does not decode is [`RequestBody::Malformed`] (see there).
    pub fn read(payload: &[u8]) -> Result<Request, JuteError> {
        let mut r = Reader::new(payload);
        let xid = r.int()?;
        let op = r.int()?;
        let body = match read_body(&mut r, op, xid) {
            Ok(body) => body,
            Err(e) if op == op::AUTH || op == op::SASL => return Err(e),
            Err(_) => RequestBody::Malformed,
        };
        Ok(Request { xid, op, body })
    }
}

/// A watch notification's event type (Watcher.Event.EventType).
pub mod event_type {
    pub const NONE: i32 = -1;
    pub const NODE_CREATED: i32 = 1;
    pub const NODE_DELETED: i32 = 2;
    pub const NODE_DATA_CHANGED: i32 = 3;
    pub const NODE_CHILDREN_CHANGED: i32 = 4;
    pub const DATA_WATCH_REMOVED: i32 = 5;
    pub const CHILD_WATCH_REMOVED: i32 = 6;
    pub const PERSISTENT_WATCH_REMOVED: i32 = 7;
}

/// Keeper states sent in notifications (Watcher.Event.KeeperState).
pub mod keeper_state {
    pub const SYNC_CONNECTED: i32 = 3;
    pub const EXPIRED: i32 = -112;
}

/// A notification packet payload: ReplyHeader(xid -1, zxid, 0) then WatcherEvent.
pub fn notification(zxid: i64, event_type: i32, state: i32, path: &str) -> Vec<u8> {
    let mut w = Writer::new();
    ReplyHeader { xid: xid::NOTIFICATION, zxid, err: 0 }.write(&mut w);
    w.int(event_type).int(state).ustring(path);
    w.buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_header_bytes_are_what_write_writes() {
        let h = ReplyHeader { xid: -2, zxid: 0x0102_0304_0506_0708, err: ErrorCode::NoNode as i32 };
        let mut w = Writer::new();
        h.write(&mut w);
        assert_eq!(h.bytes().as_slice(), w.buf.as_slice());
        assert_eq!(h.bytes(), [0xff, 0xff, 0xff, 0xfe, 1, 2, 3, 4, 5, 6, 7, 8, 0xff, 0xff, 0xff, 0x9b]);
    }

    /// The bytes kazoo sends for `create("/a", b"x", ephemeral=True)` with the open ACL,
    /// xid 1: header, path, data, one ACL (perms 31, world:anyone), flags 1.
    #[test]
    fn parses_a_create_exactly() {
        let mut w = Writer::new();
        w.int(1).int(op::CREATE).ustring("/a").buffer(b"x");
        w.int(1).int(31).ustring("world").ustring("anyone");
        w.int(1);
        let req = Request::read(&w.buf).unwrap();
        assert_eq!(req.xid, 1);
        assert_eq!(
            req.body,
            RequestBody::Create {
                path: "/a".into(),
                data: Some(b"x".to_vec()),
                acl: vec![Acl { perms: 31, scheme: "world".into(), id: "anyone".into() }],
                flags: 1,
                ttl_ms: 0
            }
        );
    }

    #[test]
    fn parses_connect_with_and_without_read_only() {
        let mut w = Writer::new();
        w.int(0).long(0).int(30000).long(0).buffer(&[0; 16]);
        let old = ConnectRequest::read(&mut Reader::new(&w.buf)).unwrap();
        assert_eq!((old.timeout_ms, old.read_only), (30000, None));
        w.boolean(false);
        let new = ConnectRequest::read(&mut Reader::new(&w.buf)).unwrap();
        assert_eq!(new.read_only, Some(false));
    }

    #[test]
    fn writes_connect_response_and_stat_exactly() {
        let mut w = Writer::new();
        ConnectResponse {
            protocol_version: 0,
            timeout_ms: 4000,
            session_id: 0x0100,
            passwd: vec![7; 16],
            read_only: Some(false),
        }
        .write(&mut w);
        let mut want = vec![0, 0, 0, 0, 0, 0, 0x0f, 0xa0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 16];
        want.extend_from_slice(&[7; 16]);
        want.push(0);
        assert_eq!(w.buf, want);
        let mut w = Writer::new();
        let st = Stat {
            czxid: 1,
            mzxid: 2,
            ctime: 3,
            mtime: 4,
            version: 5,
            cversion: 6,
            aversion: 7,
            ephemeral_owner: 8,
            data_length: 9,
            num_children: 10,
            pzxid: 11,
        };
        st.write(&mut w);
        assert_eq!(w.buf.len(), 68, "Stat is 8 longs... 4 longs, 3 ints, a long, 2 ints, a long");
        assert_eq!(Stat::read(&mut Reader::new(&w.buf)).unwrap(), st);
    }

    #[test]
    fn parses_multi_and_set_watches2() {
        let mut w = Writer::new();
        w.int(9).int(op::MULTI);
        w.int(op::CHECK).boolean(false).int(-1).ustring("/a").int(3);
        w.int(op::DELETE).boolean(false).int(-1).ustring("/a").int(-1);
        w.int(-1).boolean(true).int(-1);
        let req = Request::read(&w.buf).unwrap();
        let RequestBody::Multi(ops) = req.body else { panic!() };
        assert_eq!(ops.len(), 2);
        assert_eq!(ops[0].body, RequestBody::Check { path: "/a".into(), version: 3 });

        let mut w = Writer::new();
        w.int(xid::SET_WATCHES).int(op::SET_WATCHES2).long(42);
        for list in [&["/d"][..], &[], &["/c"], &[], &["/r"]] {
            w.vector(list, |w, s| {
                w.ustring(s);
            });
        }
        let RequestBody::SetWatches { relative_zxid, data, child, persistent_recursive, .. } =
            Request::read(&w.buf).unwrap().body
        else {
            panic!()
        };
        assert_eq!(
            (relative_zxid, data, child, persistent_recursive),
            (42, vec!["/d".to_string()], vec!["/c".to_string()], vec!["/r".to_string()])
        );
    }

    /// GetSASLRequest {buffer token}, as kazoo sends it (an empty first token).
    #[test]
    fn parses_sasl() {
        let mut w = Writer::new();
        w.int(1).int(op::SASL).buffer(b"");
        assert_eq!(Request::read(&w.buf).unwrap().body, RequestBody::Sasl { token: Vec::new() });
        let mut w = Writer::new();
        w.int(2).int(op::SASL).buffer(b"nc=00000001");
        assert_eq!(Request::read(&w.buf).unwrap().body, RequestBody::Sasl { token: b"nc=00000001".to_vec() });
        let mut w = Writer::new();
        w.int(3).int(op::SASL).null_buffer();
        assert!(Request::read(&w.buf).is_err(), "a null token closes the connection");
    }

    /// Goal: a short header, auth or SASL packet is an error (ZooKeeper closes the
    /// connection); any other request cut short is `Malformed` (ZooKeeper answers
    /// MarshallingError).
    #[test]
    fn truncated_packets_are_errors_or_malformed() {
        let mut w = Writer::new();
        w.int(1).int(op::SET_DATA).ustring("/a").buffer(b"xyz").int(0);
        for cut in 0..w.buf.len() {
            match Request::read(&w.buf[..cut]) {
                Err(_) => assert!(cut < 8, "cut at {cut}"),
                Ok(req) => assert!(cut >= 8 && req.body == RequestBody::Malformed, "cut at {cut}"),
            }
        }
        assert!(matches!(Request::read(&w.buf).unwrap().body, RequestBody::SetData { .. }));
        for op in [op::AUTH, op::SASL] {
            let mut w = Writer::new();
            w.int(1).int(op).int(5); // a length with nothing after it
            assert!(Request::read(&w.buf).is_err(), "op {op}");
        }
    }

    /// Goal: a multi holds only the op types ZooKeeper's MultiOperationRecord reads, all of one
    /// kind (writes, or getChildren/getData); anything else makes the whole request Malformed.
    #[test]
    fn multi_ops_of_other_types_or_mixed_kinds_are_malformed() {
        let multi = |ops: &[(i32, &[u8])]| {
            let mut w = Writer::new();
            w.int(1).int(op::MULTI);
            for (code, body) in ops {
                w.int(*code).boolean(false).int(-1);
                w.buf.extend_from_slice(body);
            }
            w.int(-1).boolean(true).int(-1);
            Request::read(&w.buf).unwrap().body
        };
        let mut get = Writer::new();
        get.ustring("/a").boolean(false);
        let get = get.buf.as_slice();
        let mut del = Writer::new();
        del.ustring("/a").int(-1);
        let del = del.buf.as_slice();
        assert!(matches!(multi(&[(op::DELETE, del), (op::DELETE, del)]), RequestBody::Multi(ops) if ops.len() == 2));
        assert!(matches!(multi(&[(op::GET_DATA, get), (op::GET_CHILDREN, get)]), RequestBody::Multi(_)));
        assert_eq!(multi(&[(op::DELETE, del), (op::GET_DATA, get)]), RequestBody::Malformed);
        assert_eq!(multi(&[(op::GET_DATA, get), (op::DELETE, del)]), RequestBody::Malformed);
        assert_eq!(multi(&[(op::EXISTS, get)]), RequestBody::Malformed);
        assert_eq!(multi(&[(op::DELETE_CONTAINER, del)]), RequestBody::Malformed);
    }

    #[test]
    fn notification_bytes() {
        assert_eq!(
            notification(5, event_type::NODE_DATA_CHANGED, keeper_state::SYNC_CONNECTED, "/a"),
            [
                &[0xff, 0xff, 0xff, 0xff][..],
                &[0, 0, 0, 0, 0, 0, 0, 5],
                &[0, 0, 0, 0],
                &[0, 0, 0, 3],
                &[0, 0, 0, 3],
                &[0, 0, 0, 2, b'/', b'a']
            ]
            .concat()
        );
    }

    /// Goal: no packet makes the parser panic or allocate without bound. Method: 20 000
    /// pseudo-random packets, half of them mutations of valid requests.
    #[test]
    fn random_bytes_never_panic() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut w = Writer::new();
        w.int(1).int(op::MULTI).int(op::CREATE).boolean(false).int(-1).ustring("/a").buffer(b"x");
        w.vector(&[0], |w, _| {
            w.int(31).ustring("world").ustring("anyone");
        });
        w.int(0).int(-1).boolean(true).int(-1);
        let valid = w.buf;
        for i in 0..20_000 {
            let mut pkt = if i % 2 == 0 {
                let mut p = valid.clone();
                let flips = 1 + rand() % 4;
                for _ in 0..flips {
                    let at = (rand() as usize) % p.len();
                    p[at] = rand() as u8;
                }
                p
            } else {
                (0..rand() % 64).map(|_| rand() as u8).collect()
            };
            if i % 7 == 0 {
                pkt.truncate((rand() as usize) % (pkt.len() + 1));
            }
            let _ = Request::read(&pkt);
            let _ = ConnectRequest::read(&mut Reader::new(&pkt));
        }
    }
}
