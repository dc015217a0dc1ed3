//! The audit trail: written in the transaction of the change it records.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::entity::audit_event;

/// What an event records; stored as its `as_str()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    UserInvited,
    InvitationResent,
    InvitationAccepted,
    UserUpdated,
    UserDeleted,
    ApiTokenCreated,
    ApiTokenDeleted,
}

impl Action {
    pub const ALL: [Action; 7] = [
        Action::UserInvited,
        Action::InvitationResent,
        Action::InvitationAccepted,
        Action::UserUpdated,
        Action::UserDeleted,
        Action::ApiTokenCreated,
        Action::ApiTokenDeleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::UserInvited => "user.invited",
            Action::InvitationResent => "invitation.resent",
            Action::InvitationAccepted => "invitation.accepted",
            Action::UserUpdated => "user.updated",
            Action::UserDeleted => "user.deleted",
            Action::ApiTokenCreated => "api_token.created",
            Action::ApiTokenDeleted => "api_token.deleted",
        }
    }

    pub fn parse(stored: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|action| action.as_str() == stored)
    }
}

/// One changed field, as text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub field: String,
    pub before: String,
    pub after: String,
}

pub struct Event {
    pub account_id: Uuid,
    pub actor_id: Option<Uuid>,
    pub action: Action,
    pub target_user_id: Option<Uuid>,
    pub target_token_id: Option<Uuid>,
    pub request_id: String,
    pub changes: Vec<Change>,
    pub at: DateTime<Utc>,
}

pub async fn record(db: &impl ConnectionTrait, event: Event) -> Result<(), DbErr> {
    audit_event::ActiveModel {
        id: Set(Uuid::now_v7()),
        account_id: Set(event.account_id),
        actor_id: Set(event.actor_id),
        action: Set(event.action.as_str().to_string()),
        target_user_id: Set(event.target_user_id),
        target_token_id: Set(event.target_token_id),
        request_id: Set(event.request_id),
        changes: Set(
            serde_json::to_string(&event.changes).map_err(|e| DbErr::Custom(e.to_string()))?
        ),
        created_at: Set(event.at),
    }
    .insert(db)
    .await?;
    Ok(())
}

/// One page of the account's events, newest first, before `before`.
#[tracing::instrument(skip_all, fields(%account_id), err)]
pub async fn list(
    db: &impl ConnectionTrait,
    account_id: Uuid,
    target_user_id: Option<Uuid>,
    action: Option<Action>,
    before: Option<Uuid>,
    limit: u64,
) -> Result<Vec<audit_event::Model>, DbErr> {
    let mut query =
        audit_event::Entity::find().filter(audit_event::Column::AccountId.eq(account_id));
    if let Some(target) = target_user_id {
        query = query.filter(audit_event::Column::TargetUserId.eq(target));
    }
    if let Some(action) = action {
        query = query.filter(audit_event::Column::Action.eq(action.as_str()));
    }
    if let Some(before) = before {
        query = query.filter(audit_event::Column::Id.lt(before));
    }
    query
        .order_by_desc(audit_event::Column::Id)
        .limit(limit)
        .all(db)
        .await
}
