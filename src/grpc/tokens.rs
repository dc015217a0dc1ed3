//! Handlers of `usermgmt.v1.ApiTokens`.

use tonic::{Request, Response, Status};

use super::{
    convert, pb,
    users::{caller, invalid, presented},
};
use crate::service::UserService;

pub struct TokenApi {
    users: UserService,
}

impl TokenApi {
    pub fn new(users: UserService) -> Self {
        Self { users }
    }
}

#[tonic::async_trait]
impl pb::api_tokens_server::ApiTokens for TokenApi {
    async fn create_api_token(
        &self,
        request: Request<pb::CreateApiTokenRequest>,
    ) -> Result<Response<pb::CreateApiTokenResponse>, Status> {
        let caller = caller(&request)?;
        let new = convert::create_token(request.into_inner())?;
        let issued = self.users.create_token(&caller, new).await?;
        Ok(Response::new(pb::CreateApiTokenResponse {
            secret: issued.secret.expose().to_string(),
            token: Some(convert::token(issued.token)),
        }))
    }

    async fn list_api_tokens(
        &self,
        request: Request<pb::ListApiTokensRequest>,
    ) -> Result<Response<pb::ListApiTokensResponse>, Status> {
        let presented = presented(&request)?;
        let query = match convert::list_tokens(request.into_inner()) {
            Ok(query) => query,
            Err(error) => return Err(invalid(&self.users, &presented, error).await),
        };
        let page = self.users.list_tokens(&presented, query).await?;
        Ok(Response::new(pb::ListApiTokensResponse {
            tokens: page.tokens.into_iter().map(convert::token).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn delete_api_token(
        &self,
        request: Request<pb::DeleteApiTokenRequest>,
    ) -> Result<Response<pb::DeleteApiTokenResponse>, Status> {
        let caller = caller(&request)?;
        let (account_id, token_id) = convert::delete_token(request.into_inner())?;
        self.users
            .delete_token(&caller, account_id, token_id)
            .await?;
        Ok(Response::new(pb::DeleteApiTokenResponse {}))
    }
}
