//! API tokens as credentials.

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter};

use super::entity::api_token;
use crate::domain::SecretHash;

/// The token with this secret hash, if it is neither deleted nor expired at `now`.
#[tracing::instrument(skip_all, err)]
pub async fn find_live_by_hash(
    db: &impl ConnectionTrait,
    hash: &SecretHash,
    now: DateTime<Utc>,
) -> Result<Option<api_token::Model>, DbErr> {
    api_token::Entity::find()
        .filter(api_token::Column::SecretHash.eq(hash.as_str()))
        .filter(api_token::Column::DeletedAt.is_null())
        .filter(
            Condition::any()
                .add(api_token::Column::ExpiresAt.is_null())
                .add(api_token::Column::ExpiresAt.gt(now)),
        )
        .one(db)
        .await
}
