//! Changing and removing members, under the account's lock: the facts the domain's rules
//! need are loaded, the rules decide, and the decision is written with its audit event.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel,
    PaginatorTrait, QueryFilter,
};
use uuid::Uuid;

use super::audit::Event;
use super::entity::{invitation, membership};
use super::rows::{self, ACTIVE};
use super::{Error, Store, lock_account, members, outbox, tokens};
use crate::domain::{
    Actor, AuditAction, Member, MemberChanges, MemberStatus, Role,
    administrators::{check_administrator, check_removal},
    edit::{MemberFacts, apply_changes, check_editable},
};

/// What the rules need to know about the member's account, read under its lock.
async fn facts(
    db: &impl ConnectionTrait,
    membership: &membership::Model,
    now: DateTime<Utc>,
) -> Result<MemberFacts, Error> {
    let other_active_administrators = membership::Entity::find()
        .filter(membership::Column::AccountId.eq(membership.account_id))
        .filter(membership::Column::Role.eq(Role::Administrators.id()))
        .filter(membership::Column::Status.eq(ACTIVE))
        .filter(membership::Column::Id.ne(membership.id))
        .count(db)
        .await?;
    let highest_live_token_role =
        tokens::highest_live_role(db, membership.account_id, membership.user_id, now).await?;
    Ok(MemberFacts {
        other_active_administrators,
        highest_live_token_role,
    })
}

impl Store {
    /// Applies the changes the domain allows the actor and records the before and after;
    /// who may change which field is decided under the account's lock, with the actor's
    /// role as it is then.
    #[tracing::instrument(skip_all, fields(otel.name = "db.transaction update_member", %account_id, %user_id), err(level = "info"))]
    pub async fn update_member(
        &self,
        account_id: Uuid,
        user_id: Uuid,
        changes: MemberChanges,
        actor: &Actor,
    ) -> Result<Member, Error> {
        let tx = self.begin_write().await?;
        lock_account(&tx, account_id).await?;
        let role = members::acting_role(&tx, account_id, actor).await?;
        // A member learns nothing about other members' existence from this answer that
        // ListUsers would not tell them.
        check_editable(role.is_administrator(), actor.user_id == user_id, &changes)?;
        let (membership, user) = members::get(&tx, account_id, user_id).await?;
        let facts = facts(&tx, &membership, actor.now).await?;
        let current = rows::member(membership.clone(), user.clone(), actor.now)?;
        let edited = apply_changes(&current, changes, facts)?;
        let after = &edited.member;
        if after.role != current.role || after.cloud_access != current.cloud_access {
            let mut changed = membership.into_active_model();
            changed.role = Set(after.role.id());
            changed.cloud_access = Set(after.cloud_access.to_text());
            changed.update(&tx).await?;
        }
        // A pending member reads as the invitation wrote them (R17): only an accepted
        // member's profile is theirs to change.
        let profile_changed = after.name != current.name
            || after.language != current.language
            || after.two_factor_enabled != current.two_factor_enabled;
        if profile_changed && current.status == MemberStatus::Active {
            let mut changed = user.into_active_model();
            changed.name = Set(after.name.clone());
            changed.name_lower = Set(after.name.to_lowercase());
            changed.language = Set(after.language.code().to_string());
            changed.two_factor_enabled = Set(after.two_factor_enabled);
            changed.update(&tx).await?;
        }
        if !edited.changes.is_empty() {
            Event::new(actor, account_id, AuditAction::UserUpdated)
                .user(user_id)
                .changes(edited.changes)
                .record(&tx)
                .await?;
        }
        tx.commit().await?;
        Ok(edited.member)
    }

    /// Removes the membership of this account only. A user left with no membership can no
    /// longer sign in (their password is cleared) but keeps name and email for the tokens
    /// they issued; inviting them again treats them as a new user.
    #[tracing::instrument(skip_all, fields(otel.name = "db.transaction remove_member", %account_id, %user_id), err(level = "info"))]
    pub async fn remove_member(
        &self,
        account_id: Uuid,
        user_id: Uuid,
        actor: &Actor,
    ) -> Result<(), Error> {
        let tx = self.begin_write().await?;
        lock_account(&tx, account_id).await?;
        check_administrator(
            members::acting_role(&tx, account_id, actor).await?,
            "remove users",
        )?;
        let (membership, user) = members::get(&tx, account_id, user_id).await?;
        let facts = facts(&tx, &membership, actor.now).await?;
        let member = rows::member(membership.clone(), user.clone(), actor.now)?;
        check_removal(
            &member,
            facts.other_active_administrators,
            facts.highest_live_token_role.is_some(),
        )?;
        let invitation_ids: Vec<Uuid> = invitation::Entity::find()
            .filter(invitation::Column::MembershipId.eq(membership.id))
            .all(&tx)
            .await?
            .into_iter()
            .map(|invitation| invitation.id)
            .collect();
        outbox::retire_for_invitations(
            &tx,
            &invitation_ids,
            crate::domain::delivery::LinkGone::Removed,
            actor.now,
        )
        .await?;
        invitation::Entity::delete_many()
            .filter(invitation::Column::MembershipId.eq(membership.id))
            .exec(&tx)
            .await?;
        membership::Entity::delete_by_id(membership.id)
            .exec(&tx)
            .await?;
        let elsewhere = membership::Entity::find()
            .filter(membership::Column::UserId.eq(user_id))
            .count(&tx)
            .await?;
        if elsewhere == 0 {
            let mut signed_out = user.into_active_model();
            signed_out.password_hash = Set(None);
            signed_out.activated = Set(false);
            signed_out.update(&tx).await?;
        }
        Event::new(actor, account_id, AuditAction::UserDeleted)
            .user(user_id)
            .record(&tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
