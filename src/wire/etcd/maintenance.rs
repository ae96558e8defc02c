//! etcd's Maintenance, Cluster and Auth services, for one node.

use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use tonic::{Request, Response, Status};

use super::errors::EtcdError;
use super::{Ctx, SERVER_VERSION};
use crate::command::{AlarmType, Command, Response as CmdResponse};
use crate::pb::etcdserverpb as pb;
use crate::pb::etcdserverpb::auth_server::Auth;
use crate::pb::etcdserverpb::cluster_server::Cluster;
use crate::pb::etcdserverpb::maintenance_server::Maintenance;

pub struct MaintenanceService {
    ctx: Arc<Ctx>,
}

impl MaintenanceService {
    pub fn new(ctx: Arc<Ctx>) -> Self {
        MaintenanceService { ctx }
    }
}

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<pb::SnapshotResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(&self, request: Request<pb::AlarmRequest>) -> Result<Response<pb::AlarmResponse>, Status> {
        let r = request.into_inner();
        let alarm = alarm_from_pb(r.alarm);
        let member = |(member_id, a): (u64, AlarmType)| pb::AlarmMember { member_id, alarm: a as i32 };
        match r.action {
            // GET: every raised alarm of the asked type (NONE = all), read linearizably.
            0 => {
                let view = self.ctx.read(false).await?;
                let alarms = view
                    .alarms()
                    .map_err(EtcdError::from)?
                    .into_iter()
                    .filter(|(_, a)| alarm == AlarmType::None || *a == alarm)
                    .map(member)
                    .collect();
                Ok(Response::new(pb::AlarmResponse { header: Some(self.ctx.header(view.revision)), alarms }))
            }
            1 | 2 => {
                let cmd = Command::Alarm { activate: r.action == 1, member_id: r.member_id, alarm };
                let applied = self.ctx.propose(cmd).await?;
                let alarms = match applied.result.map_err(EtcdError::from)? {
                    CmdResponse::Alarm(a) => a.into_iter().map(member).collect(),
                    other => return Err(Status::internal(format!("conclave: unexpected result {other:?}"))),
                };
                Ok(Response::new(pb::AlarmResponse { header: Some(self.ctx.header(applied.revision)), alarms }))
            }
            _ => Err(Status::invalid_argument("etcdserver: unknown alarm action")),
        }
    }

    async fn status(&self, _request: Request<pb::StatusRequest>) -> Result<Response<pb::StatusResponse>, Status> {
        let st = self.ctx.replica.status();
        let rev = self.ctx.hub.revision();
        let db_size = self.ctx.store.size_bytes() as i64;
        // Raised alarms, in Go's protobuf text form as etcd prints them ("alarm:NOSPACE ",
        // with "memberID:<id> " first for a member-specific alarm).
        let errors = self
            .ctx
            .store
            .read()
            .and_then(|v| v.alarms())
            .map_err(EtcdError::from)?
            .into_iter()
            .map(|(m, a)| {
                let name = if a == AlarmType::NoSpace { "NOSPACE" } else { "CORRUPT" };
                if m == 0 {
                    format!("alarm:{name} ")
                } else {
                    format!("memberID:{m} alarm:{name} ")
                }
            })
            .collect();
        Ok(Response::new(pb::StatusResponse {
            header: Some(self.ctx.header(rev)),
            version: SERVER_VERSION.into(),
            db_size,
            leader: if st.leader.is_some() { self.ctx.member.id } else { 0 },
            raft_index: st.last_log_index,
            raft_term: st.term,
            raft_applied_index: st.applied_index,
            errors,
            db_size_in_use: db_size,
            is_learner: false,
            ..Default::default()
        }))
    }

    async fn defragment(
        &self,
        _request: Request<pb::DefragmentRequest>,
    ) -> Result<Response<pb::DefragmentResponse>, Status> {
        let store = self.ctx.store.clone();
        // Blocking: it holds the store (and, through it, this member's reads and writes) until
        // the file is rewritten.
        tokio::task::spawn_blocking(move || store.defragment())
            .await
            .map_err(|e| Status::internal(format!("defragment: {e}")))?
            .map_err(EtcdError::from)?;
        let rev = self.ctx.hub.revision();
        Ok(Response::new(pb::DefragmentResponse { header: Some(self.ctx.header(rev)) }))
    }

    async fn hash(&self, _request: Request<pb::HashRequest>) -> Result<Response<pb::HashResponse>, Status> {
        let view = self.ctx.read(true).await?;
        let (hash, _) = view.hash_kv(0).map_err(EtcdError::from)?;
        Ok(Response::new(pb::HashResponse { header: Some(self.ctx.header(view.revision)), hash }))
    }

    async fn hash_kv(&self, request: Request<pb::HashKvRequest>) -> Result<Response<pb::HashKvResponse>, Status> {
        let r = request.into_inner();
        let view = self.ctx.read(true).await?;
        let (hash, hash_revision) = view.hash_kv(r.revision).map_err(EtcdError::from)?;
        Ok(Response::new(pb::HashKvResponse {
            header: Some(self.ctx.header(view.revision)),
            hash,
            // etcd reports -1 until the first compaction.
            compact_revision: view.compact_revision,
            hash_revision,
        }))
    }

    type SnapshotStream = SnapshotStream;

    /// etcd's snapshot stream: the store as a bbolt file in 32 KiB chunks, each saying how many
    /// bytes remain, then one last message holding the SHA-256 of the file (which `etcdctl
    /// snapshot restore` checks).
    async fn snapshot(&self, _request: Request<pb::SnapshotRequest>) -> Result<Response<Self::SnapshotStream>, Status> {
        const CHUNK_BYTES: usize = 32 * 1024;
        let view = self.ctx.read(false).await?;
        let header = self.ctx.header(view.revision);
        let file = tokio::task::spawn_blocking(move || view.etcd_snapshot())
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(EtcdError::from)?;
        let sha = crate::store::sha256::digest(&file);
        let mut messages = Vec::with_capacity(file.len() / CHUNK_BYTES + 2);
        let mut sent = 0;
        for chunk in file.chunks(CHUNK_BYTES) {
            sent += chunk.len();
            messages.push(Ok(pb::SnapshotResponse {
                header: if sent == chunk.len() { Some(header) } else { None },
                remaining_bytes: (file.len() - sent) as u64,
                blob: chunk.to_vec(),
                ..Default::default()
            }));
        }
        messages.push(Ok(pb::SnapshotResponse { remaining_bytes: 0, blob: sha.to_vec(), ..Default::default() }));
        Ok(Response::new(Box::pin(futures_util::stream::iter(messages))))
    }

    async fn move_leader(
        &self,
        request: Request<pb::MoveLeaderRequest>,
    ) -> Result<Response<pb::MoveLeaderResponse>, Status> {
        let r = request.into_inner();
        // etcd refuses a transferee that is not a voting member before it looks at anything
        // else; to itself (the only member here) the move is done at once.
        if r.target_id != self.ctx.member.id {
            return Err(EtcdError::BadLeaderTransferee.into());
        }
        let rev = self.ctx.hub.revision();
        Ok(Response::new(pb::MoveLeaderResponse { header: Some(self.ctx.header(rev)) }))
    }

    async fn downgrade(
        &self,
        _request: Request<pb::DowngradeRequest>,
    ) -> Result<Response<pb::DowngradeResponse>, Status> {
        Err(EtcdError::NotCapable.into())
    }
}

fn alarm_from_pb(a: i32) -> AlarmType {
    match a {
        1 => AlarmType::NoSpace,
        2 => AlarmType::Corrupt,
        _ => AlarmType::None,
    }
}

pub struct ClusterService {
    ctx: Arc<Ctx>,
}

impl ClusterService {
    pub fn new(ctx: Arc<Ctx>) -> Self {
        ClusterService { ctx }
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        _request: Request<pb::MemberAddRequest>,
    ) -> Result<Response<pb::MemberAddResponse>, Status> {
        Err(EtcdError::Unimplemented("member add").into())
    }

    async fn member_remove(
        &self,
        _request: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        Err(EtcdError::Unimplemented("member remove").into())
    }

    async fn member_update(
        &self,
        _request: Request<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
        Err(EtcdError::Unimplemented("member update").into())
    }

    async fn member_list(
        &self,
        _request: Request<pb::MemberListRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
        let m = &self.ctx.member;
        // etcd's member list header carries no revision.
        Ok(Response::new(pb::MemberListResponse {
            header: Some(self.ctx.header(0)),
            members: vec![pb::Member {
                id: m.id,
                name: m.name.clone(),
                peer_ur_ls: m.peer_urls.clone(),
                client_ur_ls: m.client_urls.clone(),
                is_learner: false,
            }],
        }))
    }

    async fn member_promote(
        &self,
        _request: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        Err(EtcdError::Unimplemented("member promote").into())
    }
}

/// Authentication is not enabled on this node; everything answers as etcd does with auth off.
pub struct AuthService {
    ctx: Arc<Ctx>,
}

impl AuthService {
    pub fn new(ctx: Arc<Ctx>) -> Self {
        AuthService { ctx }
    }
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_status(
        &self,
        _request: Request<pb::AuthStatusRequest>,
    ) -> Result<Response<pb::AuthStatusResponse>, Status> {
        let rev = self.ctx.hub.revision();
        Ok(Response::new(pb::AuthStatusResponse {
            header: Some(self.ctx.header(rev)),
            enabled: false,
            auth_revision: 0,
        }))
    }

    async fn authenticate(
        &self,
        _request: Request<pb::AuthenticateRequest>,
    ) -> Result<Response<pb::AuthenticateResponse>, Status> {
        Err(EtcdError::AuthNotEnabled.into())
    }

    async fn auth_enable(
        &self,
        _request: Request<pb::AuthEnableRequest>,
    ) -> Result<Response<pb::AuthEnableResponse>, Status> {
        Err(EtcdError::Unimplemented("auth auth_enable").into())
    }

    async fn auth_disable(
        &self,
        _request: Request<pb::AuthDisableRequest>,
    ) -> Result<Response<pb::AuthDisableResponse>, Status> {
        Err(EtcdError::Unimplemented("auth auth_disable").into())
    }

    async fn user_add(
        &self,
        _request: Request<pb::AuthUserAddRequest>,
    ) -> Result<Response<pb::AuthUserAddResponse>, Status> {
        Err(EtcdError::Unimplemented("auth user_add").into())
    }

    async fn user_get(
        &self,
        _request: Request<pb::AuthUserGetRequest>,
    ) -> Result<Response<pb::AuthUserGetResponse>, Status> {
        Err(EtcdError::Unimplemented("auth user_get").into())
    }

    async fn user_list(
        &self,
        _request: Request<pb::AuthUserListRequest>,
    ) -> Result<Response<pb::AuthUserListResponse>, Status> {
        Err(EtcdError::Unimplemented("auth user_list").into())
    }

    async fn user_delete(
        &self,
        _request: Request<pb::AuthUserDeleteRequest>,
    ) -> Result<Response<pb::AuthUserDeleteResponse>, Status> {
        Err(EtcdError::Unimplemented("auth user_delete").into())
    }

    async fn user_change_password(
        &self,
        _request: Request<pb::AuthUserChangePasswordRequest>,
    ) -> Result<Response<pb::AuthUserChangePasswordResponse>, Status> {
        Err(EtcdError::Unimplemented("auth user_change_password").into())
    }

    async fn user_grant_role(
        &self,
        _request: Request<pb::AuthUserGrantRoleRequest>,
    ) -> Result<Response<pb::AuthUserGrantRoleResponse>, Status> {
        Err(EtcdError::Unimplemented("auth user_grant_role").into())
    }

    async fn user_revoke_role(
        &self,
        _request: Request<pb::AuthUserRevokeRoleRequest>,
    ) -> Result<Response<pb::AuthUserRevokeRoleResponse>, Status> {
        Err(EtcdError::Unimplemented("auth user_revoke_role").into())
    }

    async fn role_add(
        &self,
        _request: Request<pb::AuthRoleAddRequest>,
    ) -> Result<Response<pb::AuthRoleAddResponse>, Status> {
        Err(EtcdError::Unimplemented("auth role_add").into())
    }

    async fn role_get(
        &self,
        _request: Request<pb::AuthRoleGetRequest>,
    ) -> Result<Response<pb::AuthRoleGetResponse>, Status> {
        Err(EtcdError::Unimplemented("auth role_get").into())
    }

    async fn role_list(
        &self,
        _request: Request<pb::AuthRoleListRequest>,
    ) -> Result<Response<pb::AuthRoleListResponse>, Status> {
        Err(EtcdError::Unimplemented("auth role_list").into())
    }

    async fn role_delete(
        &self,
        _request: Request<pb::AuthRoleDeleteRequest>,
    ) -> Result<Response<pb::AuthRoleDeleteResponse>, Status> {
        Err(EtcdError::Unimplemented("auth role_delete").into())
    }

    async fn role_grant_permission(
        &self,
        _request: Request<pb::AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<pb::AuthRoleGrantPermissionResponse>, Status> {
        Err(EtcdError::Unimplemented("auth role_grant_permission").into())
    }

    async fn role_revoke_permission(
        &self,
        _request: Request<pb::AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<pb::AuthRoleRevokePermissionResponse>, Status> {
        Err(EtcdError::Unimplemented("auth role_revoke_permission").into())
    }
}
