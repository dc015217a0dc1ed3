//! The ApiTokens service (R15).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Caller, Error, Presented, UserService, page_token};
use crate::domain::{
    Actor, ApiToken, ApiTokenSecret, DisplayName, Role, TokenGrant,
    token::{listed_issuer, visible_roles},
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
        let issued = self.issue(&request, &self.actor(caller)).await?;
        tracing::info!(token_id = %issued.token.id, "API token issued");
        Ok(issued)
    }

    /// Issues a token from the actor: the store checks the grant against the actor's role
    /// and credential under the account's lock.
    pub(super) async fn issue(
        &self,
        request: &NewApiToken,
        actor: &Actor,
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
            .create_token(&new, self.token_limits, actor)
            .await?;
        Ok(IssuedToken { token, secret })
    }

    /// Administrators see every token of the account, other members only their own; no
    /// credential sees a token above its own role.
    #[tracing::instrument(skip_all, fields(account_id = %query.account_id), err(level = "info"))]
    pub async fn list_tokens(
        &self,
        presented: &Presented,
        query: TokenQuery,
    ) -> Result<TokenPage, Error> {
        let (caller, role) = self.reader_in(presented, query.account_id).await?;
        let issued_by = listed_issuer(role, caller.user_id, query.issued_by)?;
        let roles = visible_roles(role);
        let pages = page_token::Query::new(
            "tokens",
            &(
                query.account_id,
                issued_by,
                roles.iter().map(|role| role.id()).collect::<Vec<_>>(),
            ),
        );
        let after = pages.decode(&query.page_token)?;
        let tokens = self
            .store
            .list_tokens(
                query.account_id,
                issued_by,
                &roles,
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

    /// Administrators may delete any token of the account, other members only their own;
    /// no credential a token above its own role. Tokens the caller may not delete read as
    /// absent.
    #[tracing::instrument(skip_all, fields(%account_id, %token_id), err(level = "info"))]
    pub async fn delete_token(
        &self,
        caller: &Caller,
        account_id: Uuid,
        token_id: Uuid,
    ) -> Result<(), Error> {
        self.store
            .delete_token(account_id, token_id, &self.actor(caller))
            .await?;
        tracing::info!("API token deleted");
        Ok(())
    }
}
