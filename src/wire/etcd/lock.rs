//! etcd's v3lock service (`v3lockpb.Lock`): the server-side form of etcd's `concurrency.Mutex`,
//! used by clients such as the Rust `etcd-client` crate's `lock()`.
//!
//! Lock(name, lease): the waiter key is `name/<lease id in hex>`, put with the lease if it does
//! not exist yet (one txn, which also reads the oldest waiter). The oldest waiter (lowest
//! create revision) holds the lock; everyone else waits, through the watch hub, for each older
//! waiter's key to be deleted (unlock, lease expiry or revoke). Unlock deletes the key.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::errors::EtcdError;
use super::Ctx;
use crate::command::*;
use crate::pb::etcdserverpb::ResponseHeader;
use crate::pb::v3lockpb as pb;
use crate::pb::v3lockpb::lock_server::Lock;
use crate::watch::{HubMsg, WatchSpec};

pub struct LockService {
    ctx: Arc<Ctx>,
}

impl LockService {
    pub fn new(ctx: Arc<Ctx>) -> LockService {
        LockService { ctx }
    }
}

/// The end of a prefix range: the prefix with its last byte incremented (etcd's GetPrefixRangeEnd).
pub(super) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Closes a hub stream when the waiting request ends, however it ends (a client that gives up
/// drops the future mid-wait).
struct StreamGuard<'a> {
    ctx: &'a Ctx,
    stream: crate::watch::StreamId,
}

impl Drop for StreamGuard<'_> {
    fn drop(&mut self) {
        self.ctx.hub.close_stream(self.stream);
    }
}

/// Waits until `key` is deleted, watching from `revision` (etcd's waitDelete).
async fn wait_delete(ctx: &Ctx, key: &[u8], revision: i64) -> Result<(), Status> {
    let (stream, mut rx) = ctx.hub.open_stream().map_err(|_| EtcdError::TooManyRequests)?;
    let _guard = StreamGuard { ctx, stream };
    let spec = WatchSpec { key: key.to_vec(), start_revision: revision, filter_put: true, ..Default::default() };
    ctx.hub.watch(stream, 0, spec).map_err(|_| EtcdError::TooManyRequests)?;
    while let Some(msg) = rx.recv().await {
        match msg {
            HubMsg::Events { events, .. } if events.iter().any(|e| e.kind == EventKind::Delete) => return Ok(()),
            // History was compacted under us: the caller re-reads the waiters and retries.
            HubMsg::Compacted { .. } => return Ok(()),
            _ => {}
        }
    }
    Err(EtcdError::Stopped.into())
}

/// etcd's waitDeletes: waits until no key under `prefix` was created at or before
/// `max_create_revision`, waiting out the newest such key each round. Returns the header of
/// the last read, which saw none.
pub(super) async fn wait_deletes(ctx: &Ctx, prefix: &[u8], max_create_revision: i64) -> Result<ResponseHeader, Status> {
    loop {
        let view = ctx.read(false).await?;
        let older = RangeOp {
            key: prefix.to_vec(),
            range_end: prefix_end(prefix),
            sort_target: SortTarget::Create,
            sort_order: SortOrder::Descend,
            max_create_revision,
            limit: 1,
            ..Default::default()
        };
        let rr = view.range(&older).map_err(EtcdError::from)?;
        let header = ctx.header(view.revision);
        let Some(last) = rr.kvs.first() else { return Ok(header) };
        let key = last.key.clone();
        drop(view);
        wait_delete(ctx, &key, header.revision).await?;
    }
}

/// The oldest key under `prefix` (etcd's WithFirstCreate), as a range op.
pub(super) fn first_created(prefix: &[u8]) -> RangeOp {
    RangeOp {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        sort_target: SortTarget::Create,
        sort_order: SortOrder::Ascend,
        limit: 1,
        ..Default::default()
    }
}

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(&self, request: Request<pb::LockRequest>) -> Result<Response<pb::LockResponse>, Status> {
        let r = request.into_inner();
        let mut prefix = r.name.clone();
        prefix.push(b'/');
        let my_key = [prefix.as_slice(), format!("{:x}", r.lease).as_bytes()].concat();
        let first_created = first_created(&prefix);
        let txn = TxnOp {
            compare: vec![Compare {
                result: CompareResult::Equal,
                target: CompareTarget::Create(0),
                key: my_key.clone(),
                range_end: vec![],
            }],
            success: vec![
                RequestOp::Put(PutOp { key: my_key.clone(), lease: r.lease, ..Default::default() }),
                RequestOp::Range(first_created.clone()),
            ],
            failure: vec![
                RequestOp::Range(RangeOp { key: my_key.clone(), ..Default::default() }),
                RequestOp::Range(first_created),
            ],
        };
        let applied = self.ctx.propose(Command::Txn(txn)).await?;
        let crate::command::Response::Txn(t) = applied.result.map_err(EtcdError::from)? else {
            return Err(Status::internal("conclave: unexpected lock txn result"));
        };
        let range = |i: usize| match t.responses.get(i) {
            Some(OpResult::Range(rr)) => Some(rr.clone()),
            _ => None,
        };
        let my_rev = if t.succeeded {
            applied.revision
        } else {
            range(0).and_then(|rr| rr.kvs.first().map(|kv| kv.create_revision)).unwrap_or(applied.revision)
        };
        let owner = range(1).and_then(|rr| rr.kvs.first().map(|kv| kv.create_revision));
        let mut header: ResponseHeader = self.ctx.header(applied.revision);
        if owner.is_some_and(|rev| rev != my_rev) {
            header = wait_deletes(&self.ctx, &prefix, my_rev - 1).await?;
        }
        Ok(Response::new(pb::LockResponse { header: Some(header), key: my_key }))
    }

    async fn unlock(&self, request: Request<pb::UnlockRequest>) -> Result<Response<pb::UnlockResponse>, Status> {
        let r = request.into_inner();
        let applied = self.ctx.propose(Command::DeleteRange(DeleteOp { key: r.key, ..Default::default() })).await?;
        applied.result.map_err(EtcdError::from)?;
        Ok(Response::new(pb::UnlockResponse { header: Some(self.ctx.header(applied.revision)) }))
    }
}
