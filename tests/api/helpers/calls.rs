//! The service's calls as one-liners, with the bootstrapped administrator's credential
//! unless a test names another.

use chrono::{DateTime, Utc};
use tonic::{Request, Status};

use usermgmt::grpc::pb;

use super::{TestApp, invite_request, with_token};

impl TestApp {
    pub async fn invite(
        &self,
        name: &str,
        email: &str,
        role: pb::Role,
    ) -> Result<pb::User, Status> {
        self.users
            .clone()
            .invite_user(with_token(
                &self.admin_token,
                invite_request(self.account_id, name, email, role),
            ))
            .await
            .map(|response| response.into_inner().user.expect("a user"))
    }

    pub async fn list(
        &self,
        token: &str,
        request: pb::ListUsersRequest,
    ) -> Result<pb::ListUsersResponse, Status> {
        self.users
            .clone()
            .list_users(with_token(token, request))
            .await
            .map(tonic::Response::into_inner)
    }

    pub fn list_request(&self) -> pb::ListUsersRequest {
        pb::ListUsersRequest {
            account_id: self.account_id.to_string(),
            ..Default::default()
        }
    }

    pub async fn resend(&self, user_id: &str) -> Result<pb::User, Status> {
        self.users
            .clone()
            .resend_invitation(with_token(
                &self.admin_token,
                pb::ResendInvitationRequest {
                    account_id: self.account_id.to_string(),
                    user_id: user_id.into(),
                    ..Default::default()
                },
            ))
            .await
            .map(|response| response.into_inner().user.expect("a user"))
    }

    pub async fn accept(
        &self,
        token: &str,
        password: Option<&str>,
    ) -> Result<pb::AcceptInvitationResponse, Status> {
        self.users
            .clone()
            .accept_invitation(Request::new(pb::AcceptInvitationRequest {
                token: token.into(),
                password: password.map(Into::into),
            }))
            .await
            .map(tonic::Response::into_inner)
    }

    pub async fn update(
        &self,
        token: &str,
        request: pb::UpdateUserRequest,
    ) -> Result<pb::User, Status> {
        self.users
            .clone()
            .update_user(with_token(token, request))
            .await
            .map(|response| response.into_inner().user.expect("a user"))
    }

    /// An UpdateUserRequest for a member of this account, changing nothing yet.
    pub fn update_request(&self, user_id: impl ToString) -> pb::UpdateUserRequest {
        pb::UpdateUserRequest {
            account_id: self.account_id.to_string(),
            user_id: user_id.to_string(),
            ..Default::default()
        }
    }

    pub async fn delete(&self, token: &str, user_id: impl ToString) -> Result<(), Status> {
        self.users
            .clone()
            .delete_user(with_token(
                token,
                pb::DeleteUserRequest {
                    account_id: self.account_id.to_string(),
                    user_id: user_id.to_string(),
                },
            ))
            .await
            .map(drop)
    }

    /// Issues a token in this account with `token`'s credential.
    pub async fn create_token(
        &self,
        token: &str,
        role: pb::Role,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<(pb::ApiToken, String), Status> {
        self.tokens
            .clone()
            .create_api_token(with_token(
                token,
                pb::CreateApiTokenRequest {
                    account_id: self.account_id.to_string(),
                    name: "CI deploys".into(),
                    description: "used by the pipeline".into(),
                    role: role as i32,
                    expires_at: expires_at.map(|at| prost_types::Timestamp {
                        seconds: at.timestamp(),
                        nanos: 0,
                    }),
                },
            ))
            .await
            .map(|response| {
                let response = response.into_inner();
                (response.token.expect("a token"), response.secret)
            })
    }

    pub async fn list_tokens(
        &self,
        token: &str,
        issued_by: Option<String>,
    ) -> Result<Vec<pb::ApiToken>, Status> {
        self.tokens
            .clone()
            .list_api_tokens(with_token(
                token,
                pb::ListApiTokensRequest {
                    account_id: self.account_id.to_string(),
                    page_size: 1000,
                    page_token: String::new(),
                    issued_by,
                },
            ))
            .await
            .map(|response| response.into_inner().tokens)
    }

    pub async fn delete_token(&self, token: &str, token_id: &str) -> Result<(), Status> {
        self.tokens
            .clone()
            .delete_api_token(with_token(
                token,
                pb::DeleteApiTokenRequest {
                    account_id: self.account_id.to_string(),
                    token_id: token_id.into(),
                },
            ))
            .await
            .map(drop)
    }

    pub async fn audit(
        &self,
        request: pb::ListAuditEventsRequest,
    ) -> Result<pb::ListAuditEventsResponse, Status> {
        self.users
            .clone()
            .list_audit_events(with_token(&self.admin_token, request))
            .await
            .map(tonic::Response::into_inner)
    }
}
