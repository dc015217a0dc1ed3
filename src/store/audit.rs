//! The audit trail: written in the transaction of the change it records.

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

use super::entity::audit_event;
use super::{Error, Store, feed, rows};
use crate::domain::{Actor, AuditAction, AuditEvent, FieldChange, LinkDelivery};

/// An event about to be recorded: built from the actor, then told what it targets.
pub struct Event<'a> {
    actor: &'a Actor,
    account_id: Uuid,
    action: AuditAction,
    target_user_id: Option<Uuid>,
    target_token_id: Option<Uuid>,
    changes: Vec<FieldChange>,
    link_delivery: Option<LinkDelivery>,
}

impl<'a> Event<'a> {
    pub fn new(actor: &'a Actor, account_id: Uuid, action: AuditAction) -> Self {
        Self {
            actor,
            account_id,
            action,
            target_user_id: None,
            target_token_id: None,
            changes: Vec::new(),
            link_delivery: None,
        }
    }

    pub fn user(mut self, user_id: Uuid) -> Self {
        self.target_user_id = Some(user_id);
        self
    }

    pub fn token(mut self, token_id: Uuid) -> Self {
        self.target_token_id = Some(token_id);
        self
    }

    pub fn changes(mut self, changes: Vec<FieldChange>) -> Self {
        self.changes = changes;
        self
    }

    /// How the invitation's link went out.
    pub fn link(mut self, delivery: LinkDelivery) -> Self {
        self.link_delivery = Some(delivery);
        self
    }

    /// Writes the event with the transaction it belongs to, numbered in its account's change
    /// stream (see [`feed`]): the account's counter stays locked until the transaction ends,
    /// so record the event as the transaction's last write.
    pub async fn record(self, db: &impl ConnectionTrait) -> Result<(), DbErr> {
        feed::announce(db, self.account_id).await?;
        let seq = feed::next_seq(db, self.account_id).await?;
        audit_event::ActiveModel {
            id: Set(Uuid::now_v7()),
            account_id: Set(self.account_id),
            actor_id: Set(Some(self.actor.user_id)),
            actor_credential: Set(self.actor.acting.audit_name()),
            action: Set(self.action.as_str().to_string()),
            target_user_id: Set(self.target_user_id),
            target_token_id: Set(self.target_token_id),
            request_id: Set(self.actor.request_id.clone()),
            changes: Set(
                serde_json::to_string(&self.changes).map_err(|e| DbErr::Custom(e.to_string()))?
            ),
            created_at: Set(self.actor.now),
            link_delivery: Set(self
                .link_delivery
                .map(|delivery| delivery.as_str().to_string())),
            seq: Set(seq),
        }
        .insert(db)
        .await?;
        Ok(())
    }
}

impl Store {
    /// One page of the account's events, newest first, before `before`.
    #[tracing::instrument(skip_all, fields(%account_id), err(level = "info"))]
    pub async fn list_audit_events(
        &self,
        account_id: Uuid,
        target_user_id: Option<Uuid>,
        action: Option<AuditAction>,
        before: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<AuditEvent>, Error> {
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
            .all(&self.reader)
            .await?
            .into_iter()
            .map(rows::audit_event)
            .collect()
    }
}
