//! etcd's Lease service. Grants and revokes go through raft; keep-alives and time-to-live are
//! answered by the leader's in-memory timers ([`Lessor`](crate::lessor::Lessor)), as in etcd.

use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::errors::EtcdError;
use super::{Ctx, LEASE_TTL_MAX_S};
use crate::command::{Command, Response as CmdResponse};
use crate::pb::etcdserverpb as pb;
use crate::pb::etcdserverpb::lease_server::Lease;

/// Keep-alive responses queued per stream before the stream stops reading requests.
const KEEPALIVE_QUEUE_MAX: usize = 64;

pub struct LeaseService {
    ctx: Arc<Ctx>,
}

impl LeaseService {
    pub fn new(ctx: Arc<Ctx>) -> LeaseService {
        LeaseService { ctx }
    }
}

type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<pb::LeaseKeepAliveResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<pb::LeaseGrantRequest>,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        let r = request.into_inner();
        if r.ttl > LEASE_TTL_MAX_S {
            return Err(EtcdError::LeaseTtlTooLarge.into());
        }
        self.ctx.check_quota().await?;
        let ttl_s = r.ttl.max(self.ctx.limits.lease_ttl_min_s);
        let id = if r.id == 0 { self.ctx.next_lease_id() } else { r.id };
        let applied = self.ctx.propose(Command::LeaseGrant { id, ttl_s }).await?;
        match applied.result.map_err(EtcdError::from)? {
            CmdResponse::LeaseGrant { id, ttl_s } => Ok(Response::new(pb::LeaseGrantResponse {
                header: Some(self.ctx.header(applied.revision)),
                id,
                ttl: ttl_s,
                error: String::new(),
            })),
            other => Err(Status::internal(format!("conclave: unexpected result {other:?}"))),
        }
    }

    async fn lease_revoke(
        &self,
        request: Request<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        let r = request.into_inner();
        let applied = self.ctx.propose(Command::LeaseRevoke { id: r.id }).await?;
        applied.result.map_err(EtcdError::from)?;
        Ok(Response::new(pb::LeaseRevokeResponse { header: Some(self.ctx.header(applied.revision)) }))
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(KEEPALIVE_QUEUE_MAX);
        let ctx = self.ctx.clone();
        tokio::spawn(async move {
            loop {
                let req = tokio::select! {
                    m = inbound.message() => m,
                    _ = tx.closed() => return,
                };
                let req = match req {
                    Ok(Some(r)) => r,
                    Ok(None) => return,
                    Err(_) => return,
                };
                // Like etcd: an unknown or expired lease answers TTL 0 rather than an error.
                let ttl = ctx.lessor.renew(req.id).unwrap_or(0);
                let rev = ctx.hub.revision();
                let resp = pb::LeaseKeepAliveResponse { header: Some(ctx.header(rev)), id: req.id, ttl };
                if tx.send(Ok(resp)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        let r = request.into_inner();
        let view = self.ctx.read(false).await?;
        let header = Some(self.ctx.header(view.revision));
        let row = view.lease(r.id).map_err(EtcdError::from)?;
        let (Some(row), Some((_, remaining))) = (row, self.ctx.lessor.remaining(r.id)) else {
            // etcd answers a missing lease with TTL -1 and no error ("already expired").
            return Ok(Response::new(pb::LeaseTimeToLiveResponse {
                header,
                id: r.id,
                ttl: -1,
                granted_ttl: 0,
                keys: vec![],
            }));
        };
        let keys = if r.keys { view.lease_keys(r.id).map_err(EtcdError::from)? } else { Vec::new() };
        Ok(Response::new(pb::LeaseTimeToLiveResponse {
            header,
            id: r.id,
            // etcd truncates the remaining time to whole seconds.
            ttl: remaining.as_secs() as i64,
            granted_ttl: row.ttl_s,
            keys,
        }))
    }

    async fn lease_leases(
        &self,
        _request: Request<pb::LeaseLeasesRequest>,
    ) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
        let view = self.ctx.read(false).await?;
        let leases =
            view.leases().map_err(EtcdError::from)?.into_iter().map(|(id, _)| pb::LeaseStatus { id }).collect();
        Ok(Response::new(pb::LeaseLeasesResponse { header: Some(self.ctx.header(view.revision)), leases }))
    }
}
