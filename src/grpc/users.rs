//! Handlers of `usermgmt.v1.UserManagement`: convert, one service call, convert back.

use futures_util::stream::{BoxStream, StreamExt};
use tonic::{Request, Response, Status};

use super::{RequestId, convert, pb};
use crate::service::{Caller, Error, Presented, UserService};

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

/// The credential the auth layer left for a read to look up (see
/// `layers::looks_up_its_token`), or the caller it resolved.
pub(super) fn presented<T>(request: &Request<T>) -> Result<Presented, Status> {
    if let Some(presented) = request.extensions().get::<Presented>() {
        return Ok(presented.clone());
    }
    caller(request).map(Presented::Caller)
}

/// A request refused as invalid: a credential the auth layer did not look up is checked
/// first, so an unknown one is refused as it would have been before the request was read.
pub(super) async fn invalid(users: &UserService, presented: &Presented, error: Error) -> Status {
    users.credential_first(presented, error).await.into()
}

/// A status as the `google.rpc.Status` message a call answered with it would carry.
fn rpc_status(status: &Status) -> tonic_types::pb::Status {
    use prost::Message;
    tonic_types::pb::Status::decode(status.details())
        .ok()
        .filter(|decoded| decoded.code == status.code() as i32)
        .unwrap_or_else(|| tonic_types::pb::Status {
            code: status.code() as i32,
            message: status.message().to_string(),
            details: Vec::new(),
        })
}

#[tonic::async_trait]
impl pb::user_management_server::UserManagement for UserApi {
    type WatchChangesStream = BoxStream<'static, Result<pb::ChangeEvent, Status>>;

    async fn invite_user(
        &self,
        request: Request<pb::InviteUserRequest>,
    ) -> Result<Response<pb::InviteUserResponse>, Status> {
        let presented = presented(&request)?;
        let invite = match convert::invite(request.into_inner()) {
            Ok(invite) => invite,
            Err(error) => return Err(invalid(&self.users, &presented, error).await),
        };
        let invitation = self.users.invite(&presented, invite).await?;
        Ok(Response::new(pb::InviteUserResponse {
            user: Some(convert::user(invitation.member)),
            accept_url: convert::returned_link(invitation.accept_url),
        }))
    }

    async fn batch_invite_users(
        &self,
        request: Request<pb::BatchInviteUsersRequest>,
    ) -> Result<Response<pb::BatchInviteUsersResponse>, Status> {
        let caller = caller(&request)?;
        let (account_id, rows) = convert::batch_invite(request.into_inner())?;
        let answers = self.users.batch_invite(&caller, account_id, rows).await?;
        let results = answers
            .into_iter()
            .map(|answer| match answer {
                Ok(invitation) => pb::BatchInviteResult {
                    result: Some(pb::batch_invite_result::Result::User(convert::user(
                        invitation.member,
                    ))),
                    accept_url: convert::returned_link(invitation.accept_url),
                },
                Err(error) => pb::BatchInviteResult {
                    result: Some(pb::batch_invite_result::Result::Error(rpc_status(
                        &error.into(),
                    ))),
                    accept_url: String::new(),
                },
            })
            .collect();
        Ok(Response::new(pb::BatchInviteUsersResponse { results }))
    }

    async fn resend_invitation(
        &self,
        request: Request<pb::ResendInvitationRequest>,
    ) -> Result<Response<pb::ResendInvitationResponse>, Status> {
        let caller = caller(&request)?;
        let resend = convert::resend(request.into_inner())?;
        let invitation = self.users.resend(&caller, resend).await?;
        Ok(Response::new(pb::ResendInvitationResponse {
            user: Some(convert::user(invitation.member)),
            accept_url: convert::returned_link(invitation.accept_url),
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
        let presented = presented(&request)?;
        let (account_id, user_id) = match convert::get(request.into_inner()) {
            Ok(ids) => ids,
            Err(error) => return Err(invalid(&self.users, &presented, error).await),
        };
        let member = self.users.get(&presented, account_id, user_id).await?;
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
        let presented = presented(&request)?;
        let query = match convert::list_audit(request.into_inner()) {
            Ok(query) => query,
            Err(error) => return Err(invalid(&self.users, &presented, error).await),
        };
        let page = self.users.list_audit(&presented, query).await?;
        Ok(Response::new(pb::ListAuditEventsResponse {
            events: page.events.into_iter().map(convert::audit_event).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        let presented = presented(&request)?;
        let query = match convert::list(request.into_inner()) {
            Ok(query) => query,
            Err(error) => return Err(invalid(&self.users, &presented, error).await),
        };
        let page = self.users.list(&presented, query).await?;
        Ok(Response::new(pb::ListUsersResponse {
            users: page.members.into_iter().map(convert::user).collect(),
            next_page_token: page.next_page_token,
            total_size: i32::try_from(page.total_size.members).unwrap_or(i32::MAX),
            total_size_is_lower_bound: page.total_size.is_lower_bound,
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
