//! etcd's KV service: Range, Put, DeleteRange, Txn, Compact.

use std::sync::Arc;

use prost::Message;
use tonic::{Request, Response, Status};

use super::convert::*;
use super::errors::EtcdError;
use super::Ctx;
use crate::command::{Command, Response as CmdResponse};
use crate::pb::etcdserverpb as pb;
use crate::pb::etcdserverpb::kv_server::Kv;

pub struct KvService {
    ctx: Arc<Ctx>,
}

impl KvService {
    pub fn new(ctx: Arc<Ctx>) -> KvService {
        KvService { ctx }
    }

    /// etcd refuses a write whose encoded request exceeds --max-request-bytes.
    fn check_size<M: Message>(&self, m: &M) -> Result<(), EtcdError> {
        if m.encoded_len() > self.ctx.limits.max_request_bytes {
            return Err(EtcdError::RequestTooLarge);
        }
        Ok(())
    }

    /// etcd's space quota: a write that finds the backend over --quota-backend-bytes raises
    /// the NOSPACE alarm (through raft, so every member goes read-only for new data) and fails;
    /// deletes and compactions still pass, so space can be reclaimed, then the alarm disarmed.
    async fn check_quota(&self) -> Result<(), EtcdError> {
        self.ctx.check_quota().await
    }

    async fn propose(&self, writer: u64, cmd: Command) -> Result<(i64, CmdResponse), EtcdError> {
        let applied = self.ctx.propose_as(writer, cmd).await?;
        let r = applied.result.map_err(EtcdError::from)?;
        Ok((applied.revision, r))
    }
}

fn unexpected(r: CmdResponse) -> Status {
    Status::internal(format!("conclave: unexpected command result {r:?}"))
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, request: Request<pb::RangeRequest>) -> Result<Response<pb::RangeResponse>, Status> {
        let r = request.into_inner();
        let serializable = r.serializable;
        let op = range_from_pb(r)?;
        let view = self.ctx.read(serializable).await?;
        let result = view.range(&op).map_err(EtcdError::from)?;
        let header = Some(self.ctx.header(view.revision));
        Ok(Response::new(range_result_to_pb(result, header)))
    }

    async fn put(&self, request: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        let writer = super::writer_of(request.remote_addr());
        let r = request.into_inner();
        self.check_size(&r)?;
        self.check_quota().await?;
        let op = put_from_pb(r)?;
        match self.propose(writer, Command::Put(op)).await? {
            (rev, CmdResponse::Put(p)) => Ok(Response::new(pb::PutResponse {
                header: Some(self.ctx.header(rev)),
                prev_kv: p.prev_kv.map(kv_to_pb),
            })),
            (_, other) => Err(unexpected(other)),
        }
    }

    async fn delete_range(
        &self,
        request: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        let writer = super::writer_of(request.remote_addr());
        let r = request.into_inner();
        self.check_size(&r)?;
        let op = delete_from_pb(r)?;
        match self.propose(writer, Command::DeleteRange(op)).await? {
            (rev, CmdResponse::DeleteRange(d)) => Ok(Response::new(pb::DeleteRangeResponse {
                header: Some(self.ctx.header(rev)),
                deleted: d.deleted,
                prev_kvs: d.prev_kvs.into_iter().map(kv_to_pb).collect(),
            })),
            (_, other) => Err(unexpected(other)),
        }
    }

    async fn txn(&self, request: Request<pb::TxnRequest>) -> Result<Response<pb::TxnResponse>, Status> {
        let writer = super::writer_of(request.remote_addr());
        let r = request.into_inner();
        self.check_size(&r)?;
        let op = txn_from_pb(r, self.ctx.limits.max_txn_ops)?;
        if op.has_put() {
            self.check_quota().await?;
        }
        match self.propose(writer, Command::Txn(op)).await? {
            (rev, CmdResponse::Txn(t)) => Ok(Response::new(txn_result_to_pb(t, rev, Some(self.ctx.header(rev))))),
            (_, other) => Err(unexpected(other)),
        }
    }

    async fn compact(
        &self,
        request: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        let r = request.into_inner();
        // Compaction runs inside apply, so when the proposal returns it is already physical.
        match self.propose(crate::replication::UNKNOWN_WRITER, Command::Compact { revision: r.revision }).await? {
            (rev, CmdResponse::Compact) => {
                Ok(Response::new(pb::CompactionResponse { header: Some(self.ctx.header(rev)) }))
            }
            (_, other) => Err(unexpected(other)),
        }
    }
}
