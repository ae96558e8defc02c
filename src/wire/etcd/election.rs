//! etcd's v3election service (`v3electionpb.Election`): the server-side form of etcd's
//! `concurrency.Election`, used by clients such as the Rust `etcd-client` crate.
//!
//! A campaigner's key is `name/<lease id in hex>` holding its proclaimed value, attached to its
//! lease. The oldest campaigner (lowest create revision) leads; Campaign returns once every
//! older one is gone. Proclaim and Resign act only while the key still has the create
//! revision the caller won with, so a deposed leader cannot clobber its successor.

use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::convert::kv_to_pb;
use super::errors::EtcdError;
use super::lock::{first_created, wait_deletes};
use super::Ctx;
use crate::command::*;
use crate::pb::v3electionpb as pb;
use crate::pb::v3electionpb::election_server::Election;
use crate::watch::{HubMsg, WatchSpec};

pub struct ElectionService {
    ctx: Arc<Ctx>,
}

impl ElectionService {
    pub fn new(ctx: Arc<Ctx>) -> ElectionService {
        ElectionService { ctx }
    }

    async fn txn(&self, t: TxnOp) -> Result<(i64, TxnResult), Status> {
        let applied = self.ctx.propose(Command::Txn(t)).await?;
        match applied.result.map_err(EtcdError::from)? {
            crate::command::Response::Txn(t) => Ok((applied.revision, t)),
            other => Err(Status::internal(format!("conclave: unexpected result {other:?}"))),
        }
    }

    /// Puts `value` on the leader key if it is still the caller's (etcd's Proclaim).
    async fn proclaim_value(&self, leader: &pb::LeaderKey, value: Vec<u8>) -> Result<i64, Status> {
        let (rev, t) = self
            .txn(TxnOp {
                compare: vec![owns(leader)],
                success: vec![RequestOp::Put(PutOp {
                    key: leader.key.clone(),
                    value,
                    lease: leader.lease,
                    ..Default::default()
                })],
                failure: vec![],
            })
            .await?;
        if !t.succeeded {
            return Err(not_leader());
        }
        Ok(rev)
    }
}

fn owns(leader: &pb::LeaderKey) -> Compare {
    Compare {
        result: CompareResult::Equal,
        target: CompareTarget::Create(leader.rev),
        key: leader.key.clone(),
        range_end: vec![],
    }
}

fn prefix_of(name: &[u8]) -> Vec<u8> {
    let mut p = name.to_vec();
    p.push(b'/');
    p
}

// etcd's election errors are plain Go errors, which gRPC sends as Unknown with their text.
fn not_leader() -> Status {
    Status::unknown("election: not leader")
}

fn missing_leader() -> Status {
    Status::unknown("\"leader\" field must be provided")
}

type ObserveStream = Pin<Box<dyn Stream<Item = Result<pb::LeaderResponse, Status>> + Send + 'static>>;

/// Leader updates queued towards one observer.
const OBSERVE_QUEUE_MAX: usize = 16;

#[tonic::async_trait]
impl Election for ElectionService {
    async fn campaign(&self, request: Request<pb::CampaignRequest>) -> Result<Response<pb::CampaignResponse>, Status> {
        let r = request.into_inner();
        let prefix = prefix_of(&r.name);
        let key = [prefix.as_slice(), format!("{:x}", r.lease).as_bytes()].concat();
        let (rev, t) = self
            .txn(TxnOp {
                compare: vec![Compare {
                    result: CompareResult::Equal,
                    target: CompareTarget::Create(0),
                    key: key.clone(),
                    range_end: vec![],
                }],
                success: vec![RequestOp::Put(PutOp {
                    key: key.clone(),
                    value: r.value.clone(),
                    lease: r.lease,
                    ..Default::default()
                })],
                failure: vec![RequestOp::Range(RangeOp { key: key.clone(), ..Default::default() })],
            })
            .await?;
        let mut leader = pb::LeaderKey { name: r.name.clone(), key: key.clone(), rev, lease: r.lease };
        if !t.succeeded {
            // Campaigning again with the same lease: keep the old key, update its value.
            let existing = match t.responses.first() {
                Some(OpResult::Range(rr)) => rr.kvs.first().cloned(),
                _ => None,
            };
            if let Some(kv) = existing {
                leader.rev = kv.create_revision;
                if kv.value != r.value {
                    self.proclaim_value(&leader, r.value).await?;
                }
            }
        }
        let header = wait_deletes(&self.ctx, &prefix, leader.rev - 1).await?;
        Ok(Response::new(pb::CampaignResponse { header: Some(header), leader: Some(leader) }))
    }

    async fn proclaim(&self, request: Request<pb::ProclaimRequest>) -> Result<Response<pb::ProclaimResponse>, Status> {
        let r = request.into_inner();
        let leader = r.leader.ok_or_else(missing_leader)?;
        let rev = self.proclaim_value(&leader, r.value).await?;
        Ok(Response::new(pb::ProclaimResponse { header: Some(self.ctx.header(rev)) }))
    }

    async fn leader(&self, request: Request<pb::LeaderRequest>) -> Result<Response<pb::LeaderResponse>, Status> {
        let r = request.into_inner();
        let view = self.ctx.read(false).await?;
        let rr = view.range(&first_created(&prefix_of(&r.name))).map_err(EtcdError::from)?;
        let kv = rr.kvs.into_iter().next().ok_or_else(|| Status::unknown("election: no leader"))?;
        Ok(Response::new(pb::LeaderResponse { header: Some(self.ctx.header(view.revision)), kv: Some(kv_to_pb(kv)) }))
    }

    type ObserveStream = ObserveStream;

    /// Streams the leader's key-value each time leadership or the leader's value changes
    /// (etcd's Election.Observe), starting with the current leader if there is one.
    async fn observe(&self, request: Request<pb::LeaderRequest>) -> Result<Response<Self::ObserveStream>, Status> {
        let r = request.into_inner();
        let prefix = prefix_of(&r.name);
        let (stream, mut rx) = self.ctx.hub.open_stream().map_err(|_| EtcdError::TooManyRequests)?;
        let (tx, out) = mpsc::channel(OBSERVE_QUEUE_MAX);
        let ctx = self.ctx.clone();
        tokio::spawn(async move {
            // Watch the whole election prefix from the start revision; recompute the leader
            // after every change and report it when it differs from the last one reported.
            let result: Result<(), Status> = async {
                let view = ctx.read(false).await?;
                let spec = WatchSpec {
                    key: prefix.clone(),
                    range_end: super::lock::prefix_end(&prefix),
                    start_revision: view.revision + 1,
                    ..Default::default()
                };
                let mut last: Option<KeyValue> = None;
                let report = |view: &crate::store::ReadView,
                              last: &mut Option<KeyValue>|
                 -> Result<Option<pb::LeaderResponse>, Status> {
                    let rr = view.range(&first_created(&prefix)).map_err(EtcdError::from)?;
                    let now = rr.kvs.into_iter().next();
                    if now.is_some() && now != *last {
                        *last = now.clone();
                        return Ok(Some(pb::LeaderResponse {
                            header: Some(ctx.header(view.revision)),
                            kv: now.map(kv_to_pb),
                        }));
                    }
                    *last = now;
                    Ok(None)
                };
                if let Some(resp) = report(&view, &mut last)? {
                    tx.send(Ok(resp)).await.map_err(|_| EtcdError::Stopped)?;
                }
                drop(view);
                ctx.hub.watch(stream, 0, spec).map_err(|_| EtcdError::TooManyRequests)?;
                loop {
                    tokio::select! {
                        m = rx.recv() => match m {
                            Some(HubMsg::Events { .. }) | Some(HubMsg::Compacted { .. }) => {
                                let view = ctx.store.read().map_err(EtcdError::from)?;
                                if let Some(resp) = report(&view, &mut last)? {
                                    tx.send(Ok(resp)).await.map_err(|_| EtcdError::Stopped)?;
                                }
                            }
                            Some(HubMsg::Progress { .. }) => {}
                            None => return Ok(()),
                        },
                        _ = tx.closed() => return Ok(()),
                    }
                }
            }
            .await;
            ctx.hub.close_stream(stream);
            if let Err(e) = result {
                let _ = tx.send(Err(e)).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out))))
    }

    async fn resign(&self, request: Request<pb::ResignRequest>) -> Result<Response<pb::ResignResponse>, Status> {
        let r = request.into_inner();
        let leader = r.leader.ok_or_else(missing_leader)?;
        let (rev, _) = self
            .txn(TxnOp {
                compare: vec![owns(&leader)],
                success: vec![RequestOp::DeleteRange(DeleteOp { key: leader.key.clone(), ..Default::default() })],
                failure: vec![],
            })
            .await?;
        Ok(Response::new(pb::ResignResponse { header: Some(self.ctx.header(rev)) }))
    }
}
