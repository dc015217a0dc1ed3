//! The ApiTokens service (R15).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Caller, Error, UserService, caller, page_token};
use crate::domain::{ApiTokenSecret, DisplayName, Role};
use crate::store::{
    self, Actor,
    tokens::{CreateError, ListedToken, NewToken},
};

/// A validated CreateApiToken request.
#[derive(Debug)]
pub struct NewApiToken {
    pub account_id: Uuid,
    pub name: DisplayName,
    pub description: String,
    pub role: Role,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A token as its readers see it.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenView {
    pub id: Uuid,
    pub account_id: Uuid,
    pub name: String,
    pub description: String,
    pub role: Role,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub expired: bool,
    pub issuer_id: Uuid,
    pub issuer_name: String,
    pub issuer_email: String,
    /// The issuer is no longer a member of the account.
    pub issuer_deleted: bool,
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
    pub tokens: Vec<TokenView>,
    pub next_page_token: String,
}

fn view((token, issuer, member): ListedToken, now: DateTime<Utc>) -> Result<TokenView, Error> {
    Ok(TokenView {
        id: token.id,
        account_id: token.account_id,
        name: token.name,
        description: token.description,
        role: Role::from_id(token.role).ok_or(Error::Internal("stored token role is not valid"))?,
        expires_at: token.expires_at,
        created_at: token.created_at,
        last_used_at: token.last_used_at,
        expired: token.expires_at.is_some_and(|at| at <= now),
        issuer_id: issuer.id,
        issuer_name: issuer.name,
        issuer_email: issuer.email,
        issuer_deleted: !member,
    })
}

impl UserService {
    /// Issues a token; the secret is returned once and only its hash is kept.
    #[tracing::instrument(skip_all, fields(account_id = %request.account_id), err)]
    pub async fn create_token(
        &self,
        caller: &Caller,
        request: NewApiToken,
    ) -> Result<(TokenView, ApiTokenSecret), Error> {
        let own_role = caller::role_in(&self.db, caller, request.account_id).await?;
        if request.role > own_role {
            return Err(Error::PermissionDenied {
                reason: "ROLE_ABOVE_CALLER",
                message: "A token's role may not be higher than its issuer's".into(),
            });
        }
        let now = self.clock.now();
        if request.expires_at.is_some_and(|at| at <= now) {
            return Err(Error::invalid("expires_at", "must be in the future"));
        }
        let secret = ApiTokenSecret::generate();
        let actor = Actor {
            user_id: caller.user_id,
            request_id: &caller.request_id,
            now,
        };
        let new = NewToken {
            account_id: request.account_id,
            name: request.name.as_str(),
            description: &request.description,
            role: request.role,
            expires_at: request.expires_at,
            secret: &secret,
        };
        let token = store::tokens::create(&self.db, &new, &actor)
            .await
            .map_err(|error| match error {
                CreateError::TooMany => Error::TooManyTokens,
                CreateError::Db(err) => Error::Storage(err),
            })?;
        let issuer = store::members::find(&self.db, request.account_id, caller.user_id)
            .await?
            .ok_or(Error::AccountNotFound(request.account_id))?
            .1;
        tracing::info!(token_id = %token.id, "API token issued");
        Ok((view((token, issuer, true), now)?, secret))
    }

    /// Administrators see every token of the account; other members only their own.
    #[tracing::instrument(skip_all, fields(account_id = %query.account_id), err)]
    pub async fn list_tokens(
        &self,
        caller: &Caller,
        query: TokenQuery,
    ) -> Result<TokenPage, Error> {
        let role = caller::role_in(&self.db, caller, query.account_id).await?;
        let issued_by = if role.is_administrator() {
            query.issued_by
        } else {
            match query.issued_by {
                Some(issuer) if issuer != caller.user_id => {
                    return Err(Error::PermissionDenied {
                        reason: "ADMINISTRATOR_REQUIRED",
                        message: "Only administrators may list other members' tokens".into(),
                    });
                }
                _ => Some(caller.user_id),
            }
        };
        let canonical = format!("tokens|{}|{:?}", query.account_id, issued_by);
        let after = page_token::decode(&query.page_token, &canonical)?;
        let rows = store::tokens::list(
            &self.db,
            query.account_id,
            issued_by,
            after,
            query.page_size + 1,
        )
        .await?;
        let (rows, next_page_token) =
            page_token::paginate(rows, query.page_size, &canonical, |(token, _, _)| token.id);
        let now = self.clock.now();
        Ok(TokenPage {
            tokens: rows
                .into_iter()
                .map(|row| view(row, now))
                .collect::<Result<_, _>>()?,
            next_page_token,
        })
    }

    /// Administrators may delete any token of the account; other members only their own.
    #[tracing::instrument(skip_all, fields(%account_id, %token_id), err)]
    pub async fn delete_token(
        &self,
        caller: &Caller,
        account_id: Uuid,
        token_id: Uuid,
    ) -> Result<(), Error> {
        let role = caller::role_in(&self.db, caller, account_id).await?;
        let not_found = Error::TokenNotFound {
            account_id,
            token_id,
        };
        let token = store::tokens::find(&self.db, account_id, token_id)
            .await?
            .ok_or(Error::TokenNotFound {
                account_id,
                token_id,
            })?;
        if !role.is_administrator() && token.issuer_id != caller.user_id {
            // Others' tokens are invisible to a member, so they read as absent.
            return Err(not_found);
        }
        let actor = Actor {
            user_id: caller.user_id,
            request_id: &caller.request_id,
            now: self.clock.now(),
        };
        if !store::tokens::delete(&self.db, &token, &actor).await? {
            return Err(not_found);
        }
        tracing::info!("API token deleted");
        Ok(())
    }
}
