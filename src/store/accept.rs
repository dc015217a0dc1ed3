//! Accepting an invitation (R9): the secret alone is the credential, and it works once.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait,
    IntoActiveModel, QueryFilter, QuerySelect, sea_query::Expr,
};
use uuid::Uuid;

use super::audit::Event;
use super::entity::{invitation, membership, user};
use super::rows::ACTIVE;
use super::{Error, Store, lock_account_shared};
use crate::domain::{Acting, Actor, AuditAction, SecretHash};

/// What a secret opens, as far as accepting is concerned.
#[derive(Debug, PartialEq, Eq)]
pub enum Pending {
    /// Unknown, used, or replaced by a resend.
    Unknown,
    Expired,
    /// Valid; a user who never set a password must set one now.
    Valid {
        needs_password: bool,
    },
}

/// Who joined which account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accepted {
    pub account_id: Uuid,
    pub user_id: Uuid,
}

async fn find_unconsumed(
    db: &impl ConnectionTrait,
    hash: &SecretHash,
) -> Result<Option<invitation::Model>, DbErr> {
    invitation::Entity::find()
        .filter(invitation::Column::SecretHash.eq(hash.as_str()))
        .filter(invitation::Column::ConsumedAt.is_null())
        .one(db)
        .await
}

impl Store {
    pub async fn pending_invitation(
        &self,
        hash: &SecretHash,
        now: DateTime<Utc>,
    ) -> Result<Pending, Error> {
        let Some(found) = find_unconsumed(&self.reader, hash).await? else {
            return Ok(Pending::Unknown);
        };
        if found.expires_at <= now {
            return Ok(Pending::Expired);
        }
        let needs_password = match membership::Entity::find_by_id(found.membership_id)
            .find_also_related(user::Entity)
            .one(&self.reader)
            .await?
        {
            Some((_, Some(user))) => !user.activated,
            _ => return Ok(Pending::Unknown),
        };
        Ok(Pending::Valid { needs_password })
    }

    /// Consumes the secret and activates the membership (and the user) in one transaction.
    /// The membership's row is locked first, as a resend locks it, so an accept and a
    /// resend of one member run one after the other; the consuming update is conditional,
    /// so of two concurrent accepts only one succeeds.
    #[tracing::instrument(skip_all, fields(otel.name = "db.transaction accept"), err(level = "info"))]
    pub async fn accept(
        &self,
        hash: &SecretHash,
        password_hash: Option<String>,
        request_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Accepted, Error> {
        let tx = self.begin_write().await?;
        let pending = find_unconsumed(&tx, hash)
            .await?
            .ok_or(Error::InvitationNotFound)?;
        // Locks in the order every change takes them: the account, then the membership.
        let account_id = membership::Entity::find_by_id(pending.membership_id)
            .one(&tx)
            .await?
            .ok_or(Error::InvitationNotFound)?
            .account_id;
        lock_account_shared(&tx, account_id).await?;
        let membership = membership::Entity::find_by_id(pending.membership_id)
            .lock_exclusive()
            .one(&tx)
            .await?
            .ok_or(Error::InvitationNotFound)?;
        let consumed = invitation::Entity::update_many()
            .col_expr(invitation::Column::ConsumedAt, Expr::value(now))
            .filter(invitation::Column::SecretHash.eq(hash.as_str()))
            .filter(invitation::Column::ConsumedAt.is_null())
            .filter(invitation::Column::ExpiresAt.gt(now))
            .exec(&tx)
            .await?;
        if consumed.rows_affected != 1 {
            return Err(match find_unconsumed(&tx, hash).await? {
                Some(_) => Error::InvitationExpired,
                None => Error::InvitationNotFound,
            });
        }
        // The consumed invitation is the one found above (a secret has one invitation), and
        // the membership's row has been locked since: neither is read again.
        let user = user::Entity::find_by_id(membership.user_id)
            .one(&tx)
            .await?
            .ok_or(Error::InvitationNotFound)?;
        let accepted = Accepted {
            account_id: membership.account_id,
            user_id: user.id,
        };
        if !user.activated {
            let Some(password_hash) = password_hash else {
                return Err(Error::PasswordRequired);
            };
            let mut activated = user.into_active_model();
            activated.password_hash = Set(Some(password_hash));
            activated.activated = Set(true);
            activated.update(&tx).await?;
        }
        let mut joined = membership.into_active_model();
        joined.status = Set(ACTIVE.to_string());
        joined.accepted_at = Set(Some(now));
        joined.invitation_expires_at = Set(None);
        joined.update(&tx).await?;
        // The invitee is the one who acts, with the invitation's secret.
        let actor = Actor::new(accepted.user_id, Acting::Invitation, request_id, now);
        Event::new(&actor, accepted.account_id, AuditAction::InvitationAccepted)
            .user(accepted.user_id)
            .record(&tx)
            .await?;
        tx.commit().await?;
        Ok(accepted)
    }
}
