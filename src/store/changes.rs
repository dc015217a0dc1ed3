//! Changing and removing members, under the account's invariants: it keeps an active
//! administrator, and nobody's role falls below a live token they issued.

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr,
    EntityTrait, IntoActiveModel, PaginatorTrait, QueryFilter, QuerySelect,
};
use uuid::Uuid;

use super::Actor;
use super::audit::{self, Change};
use super::entity::{account, invitation, membership};
use super::members::{Member, find, to_json};
use crate::domain::{CloudAccess, DisplayName, Language, MemberStatus, Role};

/// Serialises the changes that must keep an account's invariants (its last administrator,
/// its token cap) by locking the account's row for the rest of the transaction. SQLite
/// already runs one writer at a time.
pub async fn lock_account(db: &impl ConnectionTrait, account_id: Uuid) -> Result<(), DbErr> {
    account::Entity::find_by_id(account_id)
        .lock_exclusive()
        .one(db)
        .await?;
    Ok(())
}

/// Whether the membership is the account's only active administrator.
async fn is_last_administrator(
    db: &impl ConnectionTrait,
    membership: &membership::Model,
) -> Result<bool, DbErr> {
    if membership.role != Role::Administrators.id()
        || membership.status != MemberStatus::STORED_ACTIVE
    {
        return Ok(false);
    }
    let others = membership::Entity::find()
        .filter(membership::Column::AccountId.eq(membership.account_id))
        .filter(membership::Column::Role.eq(Role::Administrators.id()))
        .filter(membership::Column::Status.eq(MemberStatus::STORED_ACTIVE))
        .filter(membership::Column::Id.ne(membership.id))
        .count(db)
        .await?;
    Ok(others == 0)
}

/// What UpdateUser changes; `None` keeps the value.
#[derive(Debug, Default)]
pub struct MemberChanges {
    pub name: Option<DisplayName>,
    pub language: Option<Language>,
    pub role: Option<Role>,
    pub cloud_access: Option<CloudAccess>,
    pub two_factor_enabled: Option<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("no such member")]
    NotFound,
    #[error("the account's last administrator")]
    LastAdministrator,
    #[error("the member issued a live token with a higher role")]
    TokenRoleAbove,
    #[error("the member has live tokens")]
    HasLiveTokens,
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// Applies the changes the caller may make, keeping the last administrator and the rule
/// that nobody's role falls below a live token they issued; records the before and after.
#[tracing::instrument(skip_all, fields(%account_id, %user_id), err)]
pub async fn update(
    db: &DatabaseConnection,
    account_id: Uuid,
    user_id: Uuid,
    changes: MemberChanges,
    actor: &Actor<'_>,
) -> Result<Member, ChangeError> {
    let tx = super::begin_write(db).await?;
    lock_account(&tx, account_id).await?;
    let (membership, user) = find(&tx, account_id, user_id)
        .await?
        .ok_or(ChangeError::NotFound)?;
    let mut log = Vec::new();
    let mut note = |field: &str, before: String, after: String| {
        if before != after {
            log.push(Change {
                field: field.into(),
                before,
                after,
            });
        }
    };
    let mut new_membership = membership.clone().into_active_model();
    if let Some(role) = changes.role {
        if !role.is_administrator() && is_last_administrator(&tx, &membership).await? {
            return Err(ChangeError::LastAdministrator);
        }
        let highest_token =
            super::tokens::highest_live_role(&tx, account_id, user_id, actor.now).await?;
        if highest_token.is_some_and(|token_role| token_role > role) {
            return Err(ChangeError::TokenRoleAbove);
        }
        note("role", membership.role.to_string(), role.id().to_string());
        new_membership.role = Set(role.id());
        // Cloud access follows the role unless the request names it.
        if changes.cloud_access.is_none() {
            let access = to_json(&CloudAccess::default_for(role))?;
            note(
                "cloud_access",
                membership.cloud_access.clone(),
                access.clone(),
            );
            new_membership.cloud_access = Set(access);
        }
    }
    if let Some(access) = &changes.cloud_access {
        let access = to_json(access)?;
        note(
            "cloud_access",
            membership.cloud_access.clone(),
            access.clone(),
        );
        new_membership.cloud_access = Set(access);
    }
    let mut new_user = user.clone().into_active_model();
    if let Some(name) = &changes.name {
        note("name", user.name.clone(), name.as_str().to_string());
        new_user.name = Set(name.as_str().to_string());
        new_user.name_lower = Set(name.as_str().to_lowercase());
    }
    if let Some(language) = changes.language {
        note(
            "language",
            user.language.clone(),
            language.code().to_string(),
        );
        new_user.language = Set(language.code().to_string());
    }
    if let Some(enabled) = changes.two_factor_enabled {
        note(
            "two_factor_enabled",
            user.two_factor_enabled.to_string(),
            enabled.to_string(),
        );
        new_user.two_factor_enabled = Set(enabled);
    }
    let membership = if new_membership.is_changed() {
        new_membership.update(&tx).await?
    } else {
        membership
    };
    let user = if new_user.is_changed() {
        new_user.update(&tx).await?
    } else {
        user
    };
    if !log.is_empty() {
        audit::record(
            &tx,
            audit::Event {
                account_id,
                actor_id: Some(actor.user_id),
                action: audit::Action::UserUpdated,
                target_user_id: Some(user_id),
                target_token_id: None,
                request_id: actor.request_id.to_string(),
                changes: log,
                at: actor.now,
            },
        )
        .await?;
    }
    tx.commit().await?;
    Ok((membership, user))
}

/// Removes the membership of this account only. A user left with no membership can no
/// longer sign in (their password is cleared) but keeps name and email for the tokens they
/// issued; inviting them again treats them as a new user.
#[tracing::instrument(skip_all, fields(%account_id, %user_id), err)]
pub async fn remove(
    db: &DatabaseConnection,
    account_id: Uuid,
    user_id: Uuid,
    actor: &Actor<'_>,
) -> Result<(), ChangeError> {
    let tx = super::begin_write(db).await?;
    lock_account(&tx, account_id).await?;
    let (membership, user) = find(&tx, account_id, user_id)
        .await?
        .ok_or(ChangeError::NotFound)?;
    if is_last_administrator(&tx, &membership).await? {
        return Err(ChangeError::LastAdministrator);
    }
    if super::tokens::highest_live_role(&tx, account_id, user_id, actor.now)
        .await?
        .is_some()
    {
        return Err(ChangeError::HasLiveTokens);
    }
    let invitation_ids: Vec<Uuid> = invitation::Entity::find()
        .filter(invitation::Column::MembershipId.eq(membership.id))
        .all(&tx)
        .await?
        .into_iter()
        .map(|invitation| invitation.id)
        .collect();
    super::outbox::retire_for_invitations(&tx, &invitation_ids, actor.now).await?;
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
    audit::record(
        &tx,
        audit::Event {
            account_id,
            actor_id: Some(actor.user_id),
            action: audit::Action::UserDeleted,
            target_user_id: Some(user_id),
            target_token_id: None,
            request_id: actor.request_id.to_string(),
            changes: Vec::new(),
            at: actor.now,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
