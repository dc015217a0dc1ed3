//! The ApiTokens service (R15).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Caller, Error, UserService, caller, page_token};
use crate::domain::{
    ApiToken, ApiTokenSecret, DisplayName, Role, TokenGrant,
    token::{listed_issuer, may_manage},
};
use crate::store::NewToken;

/// A validated CreateApiToken request.
#[derive(Debug)]
pub struct NewApiToken {
    pub account_id: Uuid,
    pub name: DisplayName,
    pub description: String,
    pub role: Role,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A token just issued, and its secret: shown this once, only its hash is kept.
pub struct IssuedToken {
    pub token: ApiToken,
    pub secret: ApiTokenSecret,
}

#[derive(Clone, Debug)]
pub struct TokenQuery {
    pub account_id: Uuid,
    pub page_size: u64,
    pub page_token: String,
    pub issued_by: Option<Uuid>,
}

#[derive(Debug)]
pub struct TokenPage {
    pub tokens: Vec<ApiToken>,
    pub next_page_token: String,
}

impl UserService {
    /// Issues a token; the secret is returned once and only its hash is kept.
    #[tracing::instrument(skip_all, fields(account_id = %request.account_id), err(level = "info"))]
    pub async fn create_token(
        &self,
        caller: &Caller,
        request: NewApiToken,
    ) -> Result<IssuedToken, Error> {
        caller::role_in(&self.store, caller, request.account_id).await?;
        let issued = self
            .issue(&request, caller.credential_role(), &self.actor(caller))
            .await?;
        tracing::info!(token_id = %issued.token.id, "API token issued");
        Ok(issued)
    }

    /// Issues a token from the actor: the store checks the grant against the actor's role,
    /// capped by `credential_role`, under the account's lock.
    pub(super) async fn issue(
        &self,
        request: &NewApiToken,
        credential_role: Option<Role>,
        actor: &crate::domain::Actor,
    ) -> Result<IssuedToken, Error> {
        let secret = ApiTokenSecret::generate();
        let new = NewToken {
            account_id: request.account_id,
            name: request.name.as_str(),
            description: &request.description,
            grant: TokenGrant {
                role: request.role,
                expires_at: request.expires_at,
            },
            secret: &secret,
        };
        let token = self
            .store
            .create_token(&new, credential_role, actor)
            .await?;
        Ok(IssuedToken { token, secret })
    }

    /// Administrators see every token of the account; other members only their own.
    #[tracing::instrument(skip_all, fields(account_id = %query.account_id), err(level = "info"))]
    pub async fn list_tokens(
        &self,
        caller: &Caller,
        query: TokenQuery,
    ) -> Result<TokenPage, Error> {
        let role = caller::role_in(&self.store, caller, query.account_id).await?;
        let issued_by = listed_issuer(role, caller.user_id, query.issued_by)?;
        let pages = page_token::Query::new("tokens", &(query.account_id, issued_by));
        let after = pages.decode(&query.page_token)?;
        let tokens = self
            .store
            .list_tokens(
                query.account_id,
                issued_by,
                after,
                query.page_size + 1,
                self.clock.now(),
            )
            .await?;
        let (tokens, next_page_token) = pages.paginate(tokens, query.page_size, |token| token.id);
        Ok(TokenPage {
            tokens,
            next_page_token,
        })
    }

    /// Administrators may delete any token of the account; other members only their own.
    #[tracing::instrument(skip_all, fields(%account_id, %token_id), err(level = "info"))]
    pub async fn delete_token(
        &self,
        caller: &Caller,
        account_id: Uuid,
        token_id: Uuid,
    ) -> Result<(), Error> {
        let role = caller::role_in(&self.store, caller, account_id).await?;
        let token = self
            .store
            .token(account_id, token_id, self.clock.now())
            .await?;
        if !may_manage(role, caller.user_id, token.issuer_id) {
            // Others' tokens are invisible to a member, so they read as absent.
            return Err(Error::TokenNotFound {
                account_id,
                token_id,
            });
        }
        self.store
            .delete_token(account_id, token_id, &self.actor(caller))
            .await?;
        tracing::info!("API token deleted");
        Ok(())
    }
}
