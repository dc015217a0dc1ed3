//! API tokens: issuing, listing, deleting, and finding one as a credential.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, DatabaseBackend, DbErr, EntityTrait, FromQueryResult,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait, Statement, Value,
    sea_query::{Expr, SelectStatement},
};
use uuid::Uuid;

use super::audit::Event;
use super::entity::{api_token, membership, user};
use super::template::{Template, Templates, stand_in_time};
use super::{Error, Store, lock_account, lock_account_shared, members, rows};
use crate::domain::{
    Acting, Actor, ApiToken, ApiTokenSecret, AuditAction, Credential, Role, SecretHash, TokenGrant,
    TokenLimits,
    token::{IssuerFacts, check_grant, may_see},
};

/// `last_used_at` is written at most this often per token.
const LAST_USED_PRECISION: TimeDelta = TimeDelta::minutes(1);

fn live(now: DateTime<Utc>) -> Condition {
    Condition::all()
        .add(api_token::Column::DeletedAt.is_null())
        .add(
            Condition::any()
                .add(api_token::Column::ExpiresAt.is_null())
                .add(api_token::Column::ExpiresAt.gt(now)),
        )
}

/// The live token with this secret hash: [`credential_query`]'s SQL built once per backend.
fn credential_statement(backend: DatabaseBackend, hash: &str, now: DateTime<Utc>) -> Statement {
    static TEMPLATES: Templates = Templates::new();
    const STAND_IN_HASH: &str = "\u{0}stand-in hash";
    let arguments = |hash: &str, now: DateTime<Utc>| [Value::from(hash), now.into()];
    TEMPLATES
        .get(backend, || {
            let query = credential_query(STAND_IN_HASH, stand_in_time());
            Template::new(backend, &arguments(STAND_IN_HASH, stand_in_time()), &query)
        })
        .statement(&arguments(hash, now))
}

fn credential_query(hash: &str, now: DateTime<Utc>) -> SelectStatement {
    api_token::Entity::find()
        .filter(api_token::Column::SecretHash.eq(hash))
        .filter(live(now))
        .limit(1)
        .into_query()
}

/// Whether the token is still neither deleted nor expired: a write made with a token asks
/// again inside its transaction, so a token revoked while its call waited does not act.
pub(super) async fn is_live(
    db: &impl ConnectionTrait,
    token_id: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    Ok(api_token::Entity::find_by_id(token_id)
        .filter(live(now))
        .count(db)
        .await?
        > 0)
}

/// The highest role among the live tokens the user issued in the account.
pub(super) async fn highest_live_role(
    db: &impl ConnectionTrait,
    account_id: Uuid,
    issuer_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Option<Role>, Error> {
    let stored: Vec<i32> = api_token::Entity::find()
        .select_only()
        .column(api_token::Column::Role)
        .filter(api_token::Column::AccountId.eq(account_id))
        .filter(api_token::Column::IssuerId.eq(issuer_id))
        .filter(live(now))
        .into_tuple()
        .all(db)
        .await?;
    let roles = stored
        .into_iter()
        .map(rows::role)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(roles.into_iter().max())
}

/// A token to issue.
pub struct NewToken<'a> {
    pub account_id: Uuid,
    pub name: &'a str,
    pub description: &'a str,
    pub grant: TokenGrant,
    pub secret: &'a ApiTokenSecret,
}

impl Store {
    /// The token with this secret hash, if it is neither deleted nor expired at `now`.
    #[tracing::instrument(skip_all, err(level = "info"))]
    pub async fn credential(
        &self,
        hash: &SecretHash,
        now: DateTime<Utc>,
    ) -> Result<Option<Credential>, Error> {
        let statement = credential_statement(self.backend(), hash.as_str(), now);
        match self.reader.query_one_raw(statement).await? {
            Some(row) => {
                rows::credential(&api_token::Model::from_query_result(&row, "")?).map(Some)
            }
            None => Ok(None),
        }
    }

    /// Records a use of the token, unless one was recorded within the last minute: most
    /// calls write nothing.
    #[tracing::instrument(skip_all, fields(otel.name = "db.transaction touch_token"))]
    pub async fn touch_token(
        &self,
        credential: &Credential,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        if credential
            .last_used_at
            .is_some_and(|last| now - last < LAST_USED_PRECISION)
        {
            return Ok(());
        }
        api_token::Entity::update_many()
            .filter(api_token::Column::Id.eq(credential.token_id))
            .col_expr(api_token::Column::LastUsedAt, Expr::value(now))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Issues a token from the actor, under the account's lock: the actor's effective
    /// role, their credential's expiry and the live tokens of the account and of the actor
    /// are loaded there and the domain's rule decides.
    #[tracing::instrument(skip_all, fields(otel.name = "db.transaction create_token", account_id = %new.account_id), err(level = "info"))]
    pub async fn create_token(
        &self,
        new: &NewToken<'_>,
        limits: TokenLimits,
        actor: &Actor,
    ) -> Result<ApiToken, Error> {
        let tx = self.begin_write().await?;
        lock_account(&tx, new.account_id).await?;
        let role = members::acting_role(&tx, new.account_id, actor).await?;
        let live_in_account = || {
            api_token::Entity::find()
                .filter(api_token::Column::AccountId.eq(new.account_id))
                .filter(live(actor.now))
        };
        let issuer = IssuerFacts {
            role,
            credential_expiry: match &actor.acting {
                Acting::ApiToken(credential) => Some(credential.expires_at),
                Acting::Jwt { .. } | Acting::Operator | Acting::Invitation => None,
            },
            live_tokens_in_account: live_in_account().count(&tx).await?,
            live_tokens_of_issuer: live_in_account()
                .filter(api_token::Column::IssuerId.eq(actor.user_id))
                .count(&tx)
                .await?,
        };
        check_grant(&issuer, new.grant, limits, actor.now)?;
        let token = api_token::ActiveModel {
            id: Set(Uuid::now_v7()),
            account_id: Set(new.account_id),
            issuer_id: Set(actor.user_id),
            name: Set(new.name.to_string()),
            description: Set(new.description.to_string()),
            role: Set(new.grant.role.id()),
            secret_hash: Set(new.secret.hash().into_string()),
            expires_at: Set(new.grant.expires_at),
            created_at: Set(actor.now),
            last_used_at: Set(None),
            deleted_at: Set(None),
        }
        .insert(&tx)
        .await?;
        Event::new(actor, token.account_id, AuditAction::ApiTokenCreated)
            .user(token.issuer_id)
            .token(token.id)
            .record(&tx)
            .await?;
        let issuer = user::Entity::find_by_id(actor.user_id)
            .one(&tx)
            .await?
            .ok_or(Error::AccountNotFound(new.account_id))?;
        tx.commit().await?;
        rows::api_token(token, &issuer, true, actor.now)
    }

    /// Deletes the token for good, if the actor may see it: administrators any token of the
    /// account, other members their own, and nobody a token above their effective role.
    /// Decided under the account's lock.
    #[tracing::instrument(skip_all, fields(otel.name = "db.transaction delete_token", %account_id, %token_id), err(level = "info"))]
    pub async fn delete_token(
        &self,
        account_id: Uuid,
        token_id: Uuid,
        actor: &Actor,
    ) -> Result<(), Error> {
        let not_found = || Error::TokenNotFound {
            account_id,
            token_id,
        };
        let tx = self.begin_write().await?;
        lock_account_shared(&tx, account_id).await?;
        let role = members::acting_role(&tx, account_id, actor).await?;
        let token = api_token::Entity::find_by_id(token_id)
            .filter(api_token::Column::AccountId.eq(account_id))
            .filter(api_token::Column::DeletedAt.is_null())
            .one(&tx)
            .await?
            .ok_or_else(not_found)?;
        // Tokens the actor may not see read as absent.
        if !may_see(
            role,
            actor.user_id,
            token.issuer_id,
            rows::role(token.role)?,
        ) {
            return Err(not_found());
        }
        let deleted = api_token::Entity::update_many()
            .col_expr(api_token::Column::DeletedAt, Expr::value(actor.now))
            .filter(api_token::Column::Id.eq(token.id))
            .filter(api_token::Column::DeletedAt.is_null())
            .exec(&tx)
            .await?;
        // A concurrent deletion of the same token got there first.
        if deleted.rows_affected == 0 {
            return Err(not_found());
        }
        Event::new(actor, account_id, AuditAction::ApiTokenDeleted)
            .user(token.issuer_id)
            .token(token.id)
            .record(&tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// One page of the account's undeleted tokens of these roles in id order, after
    /// `after`.
    #[tracing::instrument(skip_all, fields(%account_id), err(level = "info"))]
    pub async fn list_tokens(
        &self,
        account_id: Uuid,
        issued_by: Option<Uuid>,
        roles: &[Role],
        after: Option<Uuid>,
        limit: u64,
        now: DateTime<Utc>,
    ) -> Result<Vec<ApiToken>, Error> {
        let mut query = api_token::Entity::find()
            .filter(api_token::Column::AccountId.eq(account_id))
            .filter(api_token::Column::DeletedAt.is_null())
            .filter(api_token::Column::Role.is_in(roles.iter().map(|role| role.id())));
        if let Some(issuer) = issued_by {
            query = query.filter(api_token::Column::IssuerId.eq(issuer));
        }
        if let Some(after) = after {
            query = query.filter(api_token::Column::Id.gt(after));
        }
        let tokens = query
            .order_by_asc(api_token::Column::Id)
            .limit(limit)
            .all(&self.reader)
            .await?;
        with_issuers(&self.reader, account_id, tokens, now).await
    }
}

/// The tokens as read models, with their issuers and whether each is still a member.
async fn with_issuers(
    db: &impl ConnectionTrait,
    account_id: Uuid,
    tokens: Vec<api_token::Model>,
    now: DateTime<Utc>,
) -> Result<Vec<ApiToken>, Error> {
    let issuer_ids: HashSet<Uuid> = tokens.iter().map(|token| token.issuer_id).collect();
    let issuers: HashMap<Uuid, user::Model> = user::Entity::find()
        .filter(user::Column::Id.is_in(issuer_ids.iter().copied()))
        .all(db)
        .await?
        .into_iter()
        .map(|user| (user.id, user))
        .collect();
    let members = member_ids(db, account_id, &issuer_ids).await?;
    tokens
        .into_iter()
        .filter_map(|token| {
            let issuer = issuers.get(&token.issuer_id)?;
            Some(rows::api_token(
                token,
                issuer,
                members.contains(&issuer.id),
                now,
            ))
        })
        .collect()
}

async fn member_ids(
    db: &impl ConnectionTrait,
    account_id: Uuid,
    user_ids: &HashSet<Uuid>,
) -> Result<HashSet<Uuid>, DbErr> {
    Ok(membership::Entity::find()
        .select_only()
        .column(membership::Column::UserId)
        .filter(membership::Column::AccountId.eq(account_id))
        .filter(membership::Column::UserId.is_in(user_ids.iter().copied()))
        .into_tuple::<Uuid>()
        .all(db)
        .await?
        .into_iter()
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The credential lookup comes from a template: exactly what a fresh build sends.
    #[test]
    fn the_credential_template_sends_what_a_fresh_build_sends_for_any_token() {
        for n in 0..40 {
            let hash = SecretHash::of(&format!("umk_{n}{}", Uuid::new_v4()));
            let now = Utc::now() + TimeDelta::microseconds(n * 7_919);
            for backend in [DatabaseBackend::Postgres, DatabaseBackend::Sqlite] {
                assert_eq!(
                    credential_statement(backend, hash.as_str(), now),
                    backend.build(&credential_query(hash.as_str(), now)),
                );
            }
        }
    }
}
