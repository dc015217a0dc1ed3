//! Handlers of `usermgmt.v1.UserManagement`: convert, one service call, convert back.

use futures_util::stream::{BoxStream, StreamExt};
use tonic::{Request, Response, Status};

use super::{RequestId, convert, pb};
use crate::service::{Caller, Error, UserService};

pub struct UserApi {
    users: UserService,
}

impl UserApi {
    pub fn new(users: UserService) -> Self {
        Self { users }
    }
}

/// The caller the auth layer put in the request.
pub(super) fn caller<T>(request: &Request<T>) -> Result<Caller, Status> {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Error::Unauthenticated("A credential is required").into())
}

#[tonic::async_trait]
impl pb::user_management_server::UserManagement for UserApi {
    type WatchChangesStream = BoxStream<'static, Result<pb::ChangeEvent, Status>>;

    async fn invite_user(
        &self,
        request: Request<pb::InviteUserRequest>,
    ) -> Result<Response<pb::InviteUserResponse>, Status> {
        let caller = caller(&request)?;
        let invite = convert::invite(request.into_inner())?;
        let member = self.users.invite(&caller, invite).await?;
        Ok(Response::new(pb::InviteUserResponse {
            user: Some(convert::user(member)),
        }))
    }

    async fn resend_invitation(
        &self,
        request: Request<pb::ResendInvitationRequest>,
    ) -> Result<Response<pb::ResendInvitationResponse>, Status> {
        let caller = caller(&request)?;
        let (account_id, user_id) = convert::resend(request.into_inner())?;
        let member = self.users.resend(&caller, account_id, user_id).await?;
        Ok(Response::new(pb::ResendInvitationResponse {
            user: Some(convert::user(member)),
        }))
    }

    /// Needs no caller: the secret is the credential.
    async fn accept_invitation(
        &self,
        request: Request<pb::AcceptInvitationRequest>,
    ) -> Result<Response<pb::AcceptInvitationResponse>, Status> {
        let request_id = request
            .extensions()
            .get::<RequestId>()
            .map(|id| id.0.clone())
            .unwrap_or_default();
        let (token, password) = convert::accept(request.into_inner())?;
        let accepted = self.users.accept(&token, password, &request_id).await?;
        Ok(Response::new(pb::AcceptInvitationResponse {
            user_id: accepted.user_id.to_string(),
            account_id: accepted.account_id.to_string(),
        }))
    }

    async fn get_user(
        &self,
        request: Request<pb::GetUserRequest>,
    ) -> Result<Response<pb::GetUserResponse>, Status> {
        let caller = caller(&request)?;
        let (account_id, user_id) = convert::get(request.into_inner())?;
        let member = self.users.get(&caller, account_id, user_id).await?;
        Ok(Response::new(pb::GetUserResponse {
            user: Some(convert::user(member)),
        }))
    }

    async fn update_user(
        &self,
        request: Request<pb::UpdateUserRequest>,
    ) -> Result<Response<pb::UpdateUserResponse>, Status> {
        let caller = caller(&request)?;
        let update = convert::update(request.into_inner())?;
        let member = self.users.update(&caller, update).await?;
        Ok(Response::new(pb::UpdateUserResponse {
            user: Some(convert::user(member)),
        }))
    }

    async fn delete_user(
        &self,
        request: Request<pb::DeleteUserRequest>,
    ) -> Result<Response<pb::DeleteUserResponse>, Status> {
        let caller = caller(&request)?;
        let (account_id, user_id) = convert::delete(request.into_inner())?;
        self.users.delete(&caller, account_id, user_id).await?;
        Ok(Response::new(pb::DeleteUserResponse {}))
    }

    async fn list_audit_events(
        &self,
        request: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        let caller = caller(&request)?;
        let query = convert::list_audit(request.into_inner())?;
        let page = self.users.list_audit(&caller, query).await?;
        Ok(Response::new(pb::ListAuditEventsResponse {
            events: page.events.into_iter().map(convert::audit_event).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        let caller = caller(&request)?;
        let query = convert::list(request.into_inner())?;
        let page = self.users.list(&caller, query).await?;
        Ok(Response::new(pb::ListUsersResponse {
            users: page.members.into_iter().map(convert::user).collect(),
            next_page_token: page.next_page_token,
            total_size: i32::try_from(page.total_size).unwrap_or(i32::MAX),
        }))
    }

    async fn watch_changes(
        &self,
        request: Request<pb::WatchChangesRequest>,
    ) -> Result<Response<Self::WatchChangesStream>, Status> {
        let caller = caller(&request)?;
        let query = convert::watch(request.into_inner())?;
        let changes = self.users.watch_changes(&caller, query).await?;
        Ok(Response::new(
            changes
                .map(|watched| watched.map(convert::watched).map_err(Status::from))
                .boxed(),
        ))
    }
}
