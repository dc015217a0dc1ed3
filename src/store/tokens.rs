//! API tokens: issuing, listing, deleting, and finding one as a credential.

use std::collections::HashSet;

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait,
    DatabaseConnection, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::Expr,
};
use uuid::Uuid;

use super::Actor;
use super::audit;
use super::changes::lock_account;
use super::entity::{api_token, membership, user};
use crate::domain::{ApiTokenSecret, Role, SecretHash};

/// An account may hold this many live tokens at most.
pub const MAX_LIVE_PER_ACCOUNT: u64 = 100;

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

/// The token with this secret hash, if it is neither deleted nor expired at `now`.
#[tracing::instrument(skip_all, err)]
pub async fn find_live_by_hash(
    db: &impl ConnectionTrait,
    hash: &SecretHash,
    now: DateTime<Utc>,
) -> Result<Option<api_token::Model>, DbErr> {
    api_token::Entity::find()
        .filter(api_token::Column::SecretHash.eq(hash.as_str()))
        .filter(live(now))
        .one(db)
        .await
}

/// Records a use of the token, unless one was recorded within the last minute: most calls
/// write nothing.
pub async fn touch(
    db: &impl ConnectionTrait,
    token: &api_token::Model,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    if token
        .last_used_at
        .is_some_and(|last| now - last < LAST_USED_PRECISION)
    {
        return Ok(());
    }
    api_token::Entity::update_many()
        .filter(api_token::Column::Id.eq(token.id))
        .col_expr(api_token::Column::LastUsedAt, Expr::value(now))
        .exec(db)
        .await?;
    Ok(())
}

/// The highest role among the live tokens the user issued in the account.
pub async fn highest_live_role(
    db: &impl ConnectionTrait,
    account_id: Uuid,
    issuer_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Option<Role>, DbErr> {
    let roles: Vec<i32> = api_token::Entity::find()
        .select_only()
        .column(api_token::Column::Role)
        .filter(api_token::Column::AccountId.eq(account_id))
        .filter(api_token::Column::IssuerId.eq(issuer_id))
        .filter(live(now))
        .into_tuple()
        .all(db)
        .await?;
    Ok(roles.into_iter().filter_map(Role::from_id).max())
}

pub struct NewToken<'a> {
    pub account_id: Uuid,
    pub name: &'a str,
    pub description: &'a str,
    pub role: Role,
    pub expires_at: Option<DateTime<Utc>>,
    pub secret: &'a ApiTokenSecret,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("the account holds the most live tokens it may")]
    TooMany,
    #[error(transparent)]
    Db(#[from] DbErr),
}

#[tracing::instrument(skip_all, fields(account_id = %new.account_id), err)]
pub async fn create(
    db: &DatabaseConnection,
    new: &NewToken<'_>,
    actor: &Actor<'_>,
) -> Result<api_token::Model, CreateError> {
    let tx = super::begin_write(db).await?;
    lock_account(&tx, new.account_id).await?;
    let live_tokens = api_token::Entity::find()
        .filter(api_token::Column::AccountId.eq(new.account_id))
        .filter(live(actor.now))
        .count(&tx)
        .await?;
    if live_tokens >= MAX_LIVE_PER_ACCOUNT {
        return Err(CreateError::TooMany);
    }
    let token = api_token::ActiveModel {
        id: Set(Uuid::now_v7()),
        account_id: Set(new.account_id),
        issuer_id: Set(actor.user_id),
        name: Set(new.name.to_string()),
        description: Set(new.description.to_string()),
        role: Set(new.role.id()),
        secret_hash: Set(new.secret.hash().into_string()),
        expires_at: Set(new.expires_at),
        created_at: Set(actor.now),
        last_used_at: Set(None),
        deleted_at: Set(None),
    }
    .insert(&tx)
    .await?;
    audit::record(
        &tx,
        token_event(&token, audit::Action::ApiTokenCreated, actor),
    )
    .await?;
    tx.commit().await?;
    Ok(token)
}

fn token_event(token: &api_token::Model, action: audit::Action, actor: &Actor<'_>) -> audit::Event {
    audit::Event {
        account_id: token.account_id,
        actor_id: Some(actor.user_id),
        action,
        target_user_id: Some(token.issuer_id),
        target_token_id: Some(token.id),
        request_id: actor.request_id.to_string(),
        changes: Vec::new(),
        at: actor.now,
    }
}

/// The account's token, unless deleted.
pub async fn find(
    db: &impl ConnectionTrait,
    account_id: Uuid,
    token_id: Uuid,
) -> Result<Option<api_token::Model>, DbErr> {
    api_token::Entity::find_by_id(token_id)
        .filter(api_token::Column::AccountId.eq(account_id))
        .filter(api_token::Column::DeletedAt.is_null())
        .one(db)
        .await
}

/// Deletes the token for good; false when it was already gone.
pub async fn delete(
    db: &DatabaseConnection,
    token: &api_token::Model,
    actor: &Actor<'_>,
) -> Result<bool, DbErr> {
    let tx = super::begin_write(db).await?;
    let deleted = api_token::Entity::update_many()
        .filter(api_token::Column::Id.eq(token.id))
        .filter(api_token::Column::DeletedAt.is_null())
        .col_expr(api_token::Column::DeletedAt, Expr::value(actor.now))
        .exec(&tx)
        .await?;
    if deleted.rows_affected == 0 {
        return Ok(false);
    }
    audit::record(
        &tx,
        token_event(token, audit::Action::ApiTokenDeleted, actor),
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// A listed token with its issuer, and whether the issuer is still a member.
pub type ListedToken = (api_token::Model, user::Model, bool);

/// One page of the account's undeleted tokens in id order, after `after`.
#[tracing::instrument(skip_all, fields(%account_id), err)]
pub async fn list(
    db: &impl ConnectionTrait,
    account_id: Uuid,
    issued_by: Option<Uuid>,
    after: Option<Uuid>,
    limit: u64,
) -> Result<Vec<ListedToken>, DbErr> {
    let mut query = api_token::Entity::find()
        .filter(api_token::Column::AccountId.eq(account_id))
        .filter(api_token::Column::DeletedAt.is_null());
    if let Some(issuer) = issued_by {
        query = query.filter(api_token::Column::IssuerId.eq(issuer));
    }
    if let Some(after) = after {
        query = query.filter(api_token::Column::Id.gt(after));
    }
    let tokens = query
        .order_by_asc(api_token::Column::Id)
        .limit(limit)
        .all(db)
        .await?;
    let issuer_ids: HashSet<Uuid> = tokens.iter().map(|token| token.issuer_id).collect();
    let issuers = user::Entity::find()
        .filter(user::Column::Id.is_in(issuer_ids.iter().copied()))
        .all(db)
        .await?;
    let members: HashSet<Uuid> = membership::Entity::find()
        .select_only()
        .column(membership::Column::UserId)
        .filter(membership::Column::AccountId.eq(account_id))
        .filter(membership::Column::UserId.is_in(issuer_ids.iter().copied()))
        .into_tuple::<Uuid>()
        .all(db)
        .await?
        .into_iter()
        .collect();
    Ok(tokens
        .into_iter()
        .filter_map(|token| {
            let issuer = issuers
                .iter()
                .find(|user| user.id == token.issuer_id)?
                .clone();
            let member = members.contains(&issuer.id);
            Some((token, issuer, member))
        })
        .collect())
}
