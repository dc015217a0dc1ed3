//! Members of an account: a membership joined with its user, read and listed.

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect};
use uuid::Uuid;

use super::entity::{membership, user};
use super::rows::{self, ACTIVE, INVITED};
use super::{Error, Store, outbox, tokens};
use crate::domain::{Acting, Actor, Email, Member, Role, token::effective_role};

pub(super) async fn find_user_by_email(
    db: &impl ConnectionTrait,
    email: &Email,
) -> Result<Option<user::Model>, DbErr> {
    user::Entity::find()
        .filter(user::Column::Email.eq(email.as_str()))
        .one(db)
        .await
}

/// The user's accepted membership of the account, if any.
pub(super) async fn find_active_membership(
    db: &impl ConnectionTrait,
    account_id: Uuid,
    user_id: Uuid,
) -> Result<Option<membership::Model>, DbErr> {
    membership::Entity::find()
        .filter(membership::Column::AccountId.eq(account_id))
        .filter(membership::Column::UserId.eq(user_id))
        .filter(membership::Column::Status.eq(ACTIVE))
        .one(db)
        .await
}

/// The user's role in the account if they are an active member of it.
pub(super) async fn active_role(
    db: &impl ConnectionTrait,
    account_id: Uuid,
    user_id: Uuid,
) -> Result<Option<Role>, Error> {
    find_active_membership(db, account_id, user_id)
        .await?
        .map(|membership| rows::role(membership.role))
        .transpose()
}

/// The actor's effective role in the account: their role as an active member, capped by
/// their credential's; an actor who is not an active member, or whose token belongs to
/// another account, finds no account.
///
/// A write asks inside its transaction: an API token is checked again there, so a token
/// revoked while its call waited for the lock does not act.
pub(super) async fn acting_role(
    db: &impl ConnectionTrait,
    account_id: Uuid,
    actor: &Actor,
) -> Result<Role, Error> {
    if let Acting::ApiToken(credential) = &actor.acting
        && !tokens::is_live(db, credential.token_id, actor.now).await?
    {
        return Err(Error::CredentialRevoked);
    }
    reading_role(db, account_id, actor).await
}

/// As [`acting_role`] for a read, whose credential was checked when the call began.
async fn reading_role(
    db: &impl ConnectionTrait,
    account_id: Uuid,
    actor: &Actor,
) -> Result<Role, Error> {
    if !actor.acting.works_in(account_id) {
        return Err(Error::AccountNotFound(account_id));
    }
    let member_role = active_role(db, account_id, actor.user_id)
        .await?
        .ok_or(Error::AccountNotFound(account_id))?;
    Ok(effective_role(member_role, actor.acting.role_ceiling()))
}

/// The user's membership of the account, pending or accepted, with the user.
pub(super) async fn find(
    db: &impl ConnectionTrait,
    account_id: Uuid,
    user_id: Uuid,
) -> Result<Option<(membership::Model, user::Model)>, DbErr> {
    let found = membership::Entity::find()
        .filter(membership::Column::AccountId.eq(account_id))
        .filter(membership::Column::UserId.eq(user_id))
        .find_also_related(user::Entity)
        .one(db)
        .await?;
    Ok(found.and_then(|(membership, user)| Some((membership, user?))))
}

/// The member as their account sees them, with the delivery of their pending invitation's
/// email.
pub(super) async fn read(
    db: &impl ConnectionTrait,
    membership: membership::Model,
    user: user::Model,
    now: DateTime<Utc>,
) -> Result<Member, Error> {
    let pending = membership.status == INVITED;
    let membership_id = membership.id;
    let mut member = rows::member(membership, user, now)?;
    if pending {
        member.invitation_delivery = outbox::deliveries(db, &[membership_id])
            .await?
            .remove(&membership_id);
    }
    Ok(member)
}

/// As [`find`], or [`Error::MemberNotFound`].
pub(super) async fn get(
    db: &impl ConnectionTrait,
    account_id: Uuid,
    user_id: Uuid,
) -> Result<(membership::Model, user::Model), Error> {
    find(db, account_id, user_id)
        .await?
        .ok_or(Error::MemberNotFound {
            account_id,
            user_id,
        })
}

/// As [`get`], holding the membership's row lock for the rest of the transaction: a
/// resend and an accept of the same member wait for each other.
pub(super) async fn get_locked(
    db: &impl ConnectionTrait,
    account_id: Uuid,
    user_id: Uuid,
) -> Result<(membership::Model, user::Model), Error> {
    let not_found = || Error::MemberNotFound {
        account_id,
        user_id,
    };
    let membership = membership::Entity::find()
        .filter(membership::Column::AccountId.eq(account_id))
        .filter(membership::Column::UserId.eq(user_id))
        .lock_exclusive()
        .one(db)
        .await?
        .ok_or_else(not_found)?;
    let user = user::Entity::find_by_id(user_id)
        .one(db)
        .await?
        .ok_or_else(not_found)?;
    Ok((membership, user))
}

impl Store {
    /// The user with this email, with their role, if they are an active member of the
    /// account.
    pub async fn active_member_by_email(
        &self,
        account_id: Uuid,
        email: &Email,
    ) -> Result<Option<(Uuid, Role)>, Error> {
        let Some(user) = find_user_by_email(&self.reader, email).await? else {
            return Ok(None);
        };
        Ok(active_role(&self.reader, account_id, user.id)
            .await?
            .map(|role| (user.id, role)))
    }
}
