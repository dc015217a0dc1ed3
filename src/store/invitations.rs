//! Invitations: their emails, resending (R8) and accepting (R9).

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr,
    EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, sea_query::Expr,
};
use serde_json::json;
use uuid::Uuid;

use super::Actor;
use super::audit;
use super::entity::{account, invitation, membership, user};
use super::members::{self, InvitationKind, Member};
use super::outbox;
use crate::domain::{InvitationSecret, Language, MemberStatus, SecretHash};

/// What an invitation email says, snapshotted when it is queued.
pub struct EmailFacts<'a> {
    pub account_id: Uuid,
    pub inviter_id: Uuid,
    pub invitee: &'a user::Model,
    pub invitation_id: Uuid,
    pub kind: InvitationKind,
    pub secret: &'a InvitationSecret,
    pub expires_at: DateTime<Utc>,
    pub now: DateTime<Utc>,
}

/// Queues the invitation email in the caller's transaction.
pub async fn enqueue_email(db: &impl ConnectionTrait, facts: &EmailFacts<'_>) -> Result<(), DbErr> {
    let account_name = account::Entity::find_by_id(facts.account_id)
        .one(db)
        .await?
        .map(|account| account.name)
        .unwrap_or_default();
    let inviter_name = user::Entity::find_by_id(facts.inviter_id)
        .one(db)
        .await?
        .map(|inviter| inviter.name)
        .unwrap_or_default();
    let language = Language::from_code(&facts.invitee.language).unwrap_or(Language::En);
    let payload = json!({
        "kind": facts.kind.as_str(),
        "to": facts.invitee.email,
        "invitee_name": facts.invitee.name,
        "language": language.code(),
        "account_name": account_name,
        "inviter_name": inviter_name,
        "expires_at": facts.expires_at,
        "secret": facts.secret.expose(),
    });
    outbox::new_row(
        "invitation",
        Some(facts.invitation_id),
        payload.to_string(),
        facts.now,
    )
    .insert(db)
    .await?;
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum ResendError {
    #[error("no such member")]
    NotFound,
    #[error("the invitation was accepted")]
    Accepted,
    #[error("resent too recently")]
    TooSoon { retry_after: TimeDelta },
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// Replaces the member's pending invitation with a new one: new secret, new expiry, the
/// same kind of email; the old link stops working and its unsent email is retired.
pub struct Resend<'a> {
    pub account_id: Uuid,
    pub user_id: Uuid,
    pub secret: &'a InvitationSecret,
    pub expires_at: DateTime<Utc>,
    /// A member's invitation is resent at most this often.
    pub min_interval: TimeDelta,
}

#[tracing::instrument(skip_all, fields(account_id = %resend.account_id, user_id = %resend.user_id), err)]
pub async fn resend(
    db: &DatabaseConnection,
    resend: &Resend<'_>,
    actor: &Actor<'_>,
) -> Result<Member, ResendError> {
    let Resend {
        account_id,
        user_id,
        secret,
        expires_at,
        min_interval,
    } = *resend;
    let (now, resender_id) = (actor.now, actor.user_id);
    let tx = super::begin_write(db).await?;
    let (membership, user) = members::find(&tx, account_id, user_id)
        .await?
        .ok_or(ResendError::NotFound)?;
    if membership.status == MemberStatus::STORED_ACTIVE {
        return Err(ResendError::Accepted);
    }
    let previous = invitation::Entity::find()
        .filter(invitation::Column::MembershipId.eq(membership.id))
        .order_by_desc(invitation::Column::CreatedAt)
        .all(&tx)
        .await?;
    if let Some(latest) = previous.first() {
        let since = now - latest.created_at;
        if since < min_interval {
            return Err(ResendError::TooSoon {
                retry_after: min_interval - since,
            });
        }
    }
    let kind = match previous.first().map(|latest| latest.kind.as_str()) {
        Some("existing_user") => InvitationKind::ExistingUser,
        _ => InvitationKind::NewUser,
    };
    let previous_ids: Vec<Uuid> = previous.iter().map(|old| old.id).collect();
    invitation::Entity::delete_many()
        .filter(invitation::Column::MembershipId.eq(membership.id))
        .exec(&tx)
        .await?;
    outbox::retire_for_invitations(&tx, &previous_ids, now).await?;

    let invitation = invitation::ActiveModel {
        id: Set(Uuid::now_v7()),
        membership_id: Set(membership.id),
        secret_hash: Set(secret.hash().into_string()),
        kind: Set(kind.as_str().to_string()),
        created_at: Set(now),
        expires_at: Set(expires_at),
        consumed_at: Set(None),
    }
    .insert(&tx)
    .await?;
    let mut renewed = membership.into_active_model();
    renewed.invited_at = Set(now);
    renewed.invitation_expires_at = Set(Some(expires_at));
    renewed.invited_by = Set(Some(resender_id));
    let membership = renewed.update(&tx).await?;
    enqueue_email(
        &tx,
        &EmailFacts {
            account_id,
            inviter_id: resender_id,
            invitee: &user,
            invitation_id: invitation.id,
            kind,
            secret,
            expires_at,
            now,
        },
    )
    .await?;
    audit::record(
        &tx,
        audit::Event {
            account_id,
            actor_id: Some(resender_id),
            action: audit::Action::InvitationResent,
            target_user_id: Some(user_id),
            target_token_id: None,
            request_id: actor.request_id.to_string(),
            changes: Vec::new(),
            at: now,
        },
    )
    .await?;
    tx.commit().await?;
    Ok((membership, user))
}

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

pub async fn pending(
    db: &impl ConnectionTrait,
    hash: &SecretHash,
    now: DateTime<Utc>,
) -> Result<Pending, DbErr> {
    let Some(found) = find_unconsumed(db, hash).await? else {
        return Ok(Pending::Unknown);
    };
    if found.expires_at <= now {
        return Ok(Pending::Expired);
    }
    let needs_password = match membership::Entity::find_by_id(found.membership_id)
        .find_also_related(user::Entity)
        .one(db)
        .await?
    {
        Some((_, Some(user))) => !user.activated,
        _ => return Ok(Pending::Unknown),
    };
    Ok(Pending::Valid { needs_password })
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

#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error("unknown invitation")]
    Unknown,
    #[error("expired invitation")]
    Expired,
    #[error("a password is required")]
    PasswordRequired,
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// Consumes the secret and activates the membership (and the user) in one transaction.
/// The consuming update is conditional, so of two concurrent accepts only one succeeds.
#[tracing::instrument(skip_all, err)]
pub async fn accept(
    db: &DatabaseConnection,
    hash: &SecretHash,
    password_hash: Option<String>,
    request_id: &str,
    now: DateTime<Utc>,
) -> Result<(Uuid, Uuid), AcceptError> {
    let tx = super::begin_write(db).await?;
    let consumed = invitation::Entity::update_many()
        .col_expr(invitation::Column::ConsumedAt, Expr::value(now))
        .filter(invitation::Column::SecretHash.eq(hash.as_str()))
        .filter(invitation::Column::ConsumedAt.is_null())
        .filter(invitation::Column::ExpiresAt.gt(now))
        .exec(&tx)
        .await?;
    if consumed.rows_affected != 1 {
        return Err(match find_unconsumed(&tx, hash).await? {
            Some(_) => AcceptError::Expired,
            None => AcceptError::Unknown,
        });
    }
    let invitation = invitation::Entity::find()
        .filter(invitation::Column::SecretHash.eq(hash.as_str()))
        .one(&tx)
        .await?
        .ok_or(AcceptError::Unknown)?;
    let (membership, user) = membership::Entity::find_by_id(invitation.membership_id)
        .find_also_related(user::Entity)
        .one(&tx)
        .await?
        .and_then(|(membership, user)| Some((membership, user?)))
        .ok_or(AcceptError::Unknown)?;
    let (account_id, user_id) = (membership.account_id, user.id);

    if !user.activated {
        let Some(password_hash) = password_hash else {
            return Err(AcceptError::PasswordRequired);
        };
        let mut activated = user.into_active_model();
        activated.password_hash = Set(Some(password_hash));
        activated.activated = Set(true);
        activated.update(&tx).await?;
    }
    let mut joined = membership.into_active_model();
    joined.status = Set(MemberStatus::STORED_ACTIVE.to_string());
    joined.accepted_at = Set(Some(now));
    joined.invitation_expires_at = Set(None);
    joined.update(&tx).await?;
    audit::record(
        &tx,
        audit::Event {
            account_id,
            actor_id: Some(user_id),
            action: audit::Action::InvitationAccepted,
            target_user_id: Some(user_id),
            target_token_id: None,
            request_id: request_id.to_string(),
            changes: Vec::new(),
            at: now,
        },
    )
    .await?;
    tx.commit().await?;
    Ok((account_id, user_id))
}
