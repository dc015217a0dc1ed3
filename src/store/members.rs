//! Members of an account: a membership joined with its user.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Select,
    sea_query::{Expr, ExprTrait, LikeExpr},
};
use uuid::Uuid;

use super::Actor;
use super::audit;
use super::entity::{invitation, invite_request, membership, user};
use crate::domain::{
    CloudAccess, DisplayName, Email, InvitationSecret, Language, MemberStatus, Role,
};

/// A membership with its user.
pub type Member = (membership::Model, user::Model);

pub async fn find_user_by_email(
    db: &impl ConnectionTrait,
    email: &Email,
) -> Result<Option<user::Model>, DbErr> {
    user::Entity::find()
        .filter(user::Column::Email.eq(email.as_str()))
        .one(db)
        .await
}

/// The user's accepted membership of the account, if any.
#[tracing::instrument(skip_all, err)]
pub async fn find_active_membership(
    db: &impl ConnectionTrait,
    account_id: Uuid,
    user_id: Uuid,
) -> Result<Option<membership::Model>, DbErr> {
    membership::Entity::find()
        .filter(membership::Column::AccountId.eq(account_id))
        .filter(membership::Column::UserId.eq(user_id))
        .filter(membership::Column::Status.eq(MemberStatus::STORED_ACTIVE))
        .one(db)
        .await
}

#[tracing::instrument(skip_all, err)]
pub async fn find(
    db: &impl ConnectionTrait,
    account_id: Uuid,
    user_id: Uuid,
) -> Result<Option<Member>, DbErr> {
    let found = membership::Entity::find()
        .filter(membership::Column::AccountId.eq(account_id))
        .filter(membership::Column::UserId.eq(user_id))
        .find_also_related(user::Entity)
        .one(db)
        .await?;
    Ok(found.and_then(|(membership, user)| Some((membership, user?))))
}

/// Which kind of email an invitation sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvitationKind {
    /// The invitee has no password yet: the link lets them create one.
    NewUser,
    /// The invitee already signs in: the email notifies them of the new account.
    ExistingUser,
}

impl InvitationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            InvitationKind::NewUser => "new_user",
            InvitationKind::ExistingUser => "existing_user",
        }
    }
}

/// The caller's `request_id` of an invitation (AIP-155) and a hash of what it asked.
pub struct InviteRequestId {
    pub request_id: String,
    pub request_hash: String,
}

pub struct NewInvitation<'a> {
    pub account_id: Uuid,
    /// The inviter, the call and its time.
    pub actor: &'a Actor<'a>,
    pub email: &'a Email,
    pub name: &'a DisplayName,
    pub language: Language,
    pub role: Role,
    pub cloud_access: &'a CloudAccess,
    pub secret: &'a InvitationSecret,
    pub expires_at: DateTime<Utc>,
    pub request: Option<InviteRequestId>,
}

#[derive(Debug, thiserror::Error)]
pub enum InviteError {
    #[error("the request was made before")]
    Repeated { account_id: Uuid, user_id: Uuid },
    #[error("the request id was used for another request")]
    RequestIdReused,
    #[error("user {user_id} is already a member")]
    AlreadyMember { user_id: Uuid },
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// Writes the membership, the invitation (its secret's hash only) and the outbox email in
/// one transaction, creating the user when the email has none (R3) and reusing it when it
/// has (R4).
#[tracing::instrument(skip_all, fields(account_id = %new.account_id), err)]
pub async fn invite(
    db: &DatabaseConnection,
    new: &NewInvitation<'_>,
) -> Result<(Member, InvitationKind), InviteError> {
    let tx = super::begin_write(db).await?;
    if let Some(request) = &new.request
        && let Some(first) =
            invite_request::Entity::find_by_id((new.actor.user_id, request.request_id.clone()))
                .one(&tx)
                .await?
    {
        return Err(if first.request_hash == request.request_hash {
            InviteError::Repeated {
                account_id: first.account_id,
                user_id: first.user_id,
            }
        } else {
            InviteError::RequestIdReused
        });
    }
    let existing = find_user_by_email(&tx, new.email).await?;
    if let Some(user) = &existing
        && find(&tx, new.account_id, user.id).await?.is_some()
    {
        return Err(InviteError::AlreadyMember { user_id: user.id });
    }
    let (user, kind) = match existing {
        // A user who never set a password is still a new user to the email they get.
        Some(user) if user.activated => (user, InvitationKind::ExistingUser),
        Some(user) => (user, InvitationKind::NewUser),
        None => (insert_user(&tx, new).await?, InvitationKind::NewUser),
    };
    let membership = membership::ActiveModel {
        id: Set(Uuid::now_v7()),
        account_id: Set(new.account_id),
        user_id: Set(user.id),
        role: Set(new.role.id()),
        cloud_access: Set(to_json(new.cloud_access)?),
        status: Set(MemberStatus::STORED_INVITED.to_string()),
        invited_by: Set(Some(new.actor.user_id)),
        invited_at: Set(new.actor.now),
        invitation_expires_at: Set(Some(new.expires_at)),
        accepted_at: Set(None),
    }
    .insert(&tx)
    .await?;
    let invitation = invitation::ActiveModel {
        id: Set(Uuid::now_v7()),
        membership_id: Set(membership.id),
        secret_hash: Set(new.secret.hash().into_string()),
        kind: Set(kind.as_str().to_string()),
        created_at: Set(new.actor.now),
        expires_at: Set(new.expires_at),
        consumed_at: Set(None),
    }
    .insert(&tx)
    .await?;
    super::invitations::enqueue_email(
        &tx,
        &super::invitations::EmailFacts {
            account_id: new.account_id,
            inviter_id: new.actor.user_id,
            invitee: &user,
            invitation_id: invitation.id,
            kind,
            secret: new.secret,
            expires_at: new.expires_at,
            now: new.actor.now,
        },
    )
    .await?;
    audit::record(
        &tx,
        audit::Event {
            account_id: new.account_id,
            actor_id: Some(new.actor.user_id),
            action: audit::Action::UserInvited,
            target_user_id: Some(user.id),
            target_token_id: None,
            request_id: new.actor.request_id.to_string(),
            changes: Vec::new(),
            at: new.actor.now,
        },
    )
    .await?;
    if let Some(request) = &new.request {
        invite_request::ActiveModel {
            caller_id: Set(new.actor.user_id),
            request_id: Set(request.request_id.clone()),
            request_hash: Set(request.request_hash.clone()),
            account_id: Set(new.account_id),
            user_id: Set(user.id),
            created_at: Set(new.actor.now),
        }
        .insert(&tx)
        .await?;
    }
    tx.commit().await?;
    Ok(((membership, user), kind))
}

async fn insert_user(
    db: &impl ConnectionTrait,
    new: &NewInvitation<'_>,
) -> Result<user::Model, DbErr> {
    user::ActiveModel {
        id: Set(Uuid::now_v7()),
        email: Set(new.email.to_string()),
        name: Set(new.name.as_str().to_string()),
        name_lower: Set(new.name.as_str().to_lowercase()),
        language: Set(new.language.code().to_string()),
        password_hash: Set(None),
        activated: Set(false),
        two_factor_enabled: Set(false),
        created_at: Set(new.actor.now),
    }
    .insert(db)
    .await
}

pub(super) fn to_json(access: &CloudAccess) -> Result<String, DbErr> {
    serde_json::to_string(access).map_err(|e| DbErr::Custom(e.to_string()))
}

/// What ListUsers narrows the account's members to.
#[derive(Clone, Debug, Default)]
pub struct MemberFilter {
    pub status: Option<MemberStatus>,
    pub two_factor_enabled: Option<bool>,
    pub role: Option<Role>,
    /// Lower-cased text to find in the email or the name, and the user id it may also be.
    pub search: Option<(String, Option<Uuid>)>,
}

/// The account's memberships the filter keeps; joined with their users when `with_users`
/// or when the filter reads them.
impl MemberFilter {
    fn reads_users(&self) -> bool {
        self.search.is_some() || self.two_factor_enabled.is_some()
    }
}

fn filtered(
    account_id: Uuid,
    filter: &MemberFilter,
    now: DateTime<Utc>,
    with_users: bool,
) -> Select<membership::Entity> {
    let mut query = membership::Entity::find().filter(membership::Column::AccountId.eq(account_id));
    if with_users || filter.reads_users() {
        query = query.inner_join(user::Entity);
    }
    if let Some(status) = filter.status {
        let pending = membership::Column::Status.eq(MemberStatus::STORED_INVITED);
        query = query.filter(match status {
            MemberStatus::Active => membership::Column::Status.eq(MemberStatus::STORED_ACTIVE),
            MemberStatus::Invited => pending.and(membership::Column::InvitationExpiresAt.gt(now)),
            MemberStatus::Expired => pending.and(membership::Column::InvitationExpiresAt.lte(now)),
        });
    }
    if let Some(enabled) = filter.two_factor_enabled {
        query = query.filter(user::Column::TwoFactorEnabled.eq(enabled));
    }
    if let Some(role) = filter.role {
        query = query.filter(membership::Column::Role.eq(role.id()));
    }
    if let Some((text, maybe_id)) = &filter.search {
        let pattern = LikeExpr::new(format!("%{}%", escape_like(text))).escape('\\');
        let mut any = Condition::any()
            .add(Expr::col((user::Entity, user::Column::Email)).like(pattern.clone()))
            .add(Expr::col((user::Entity, user::Column::NameLower)).like(pattern));
        if let Some(id) = maybe_id {
            any = any.add(user::Column::Id.eq(*id));
        }
        query = query.filter(any);
    }
    query
}

fn escape_like(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// One page of members in membership-id order, starting after `after`.
#[tracing::instrument(skip_all, fields(%account_id, limit), err)]
pub async fn list(
    db: &impl ConnectionTrait,
    account_id: Uuid,
    filter: &MemberFilter,
    after: Option<Uuid>,
    limit: u64,
    now: DateTime<Utc>,
) -> Result<Vec<Member>, DbErr> {
    let mut query = filtered(account_id, filter, now, true);
    if let Some(after) = after {
        query = query.filter(membership::Column::Id.gt(after));
    }
    let rows = query
        .order_by_asc(membership::Column::Id)
        .limit(limit)
        .select_also(user::Entity)
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(membership, user)| Some((membership, user?)))
        .collect())
}

/// How many members match the filter, on all pages.
#[tracing::instrument(skip_all, fields(%account_id), err)]
pub async fn count(
    db: &impl ConnectionTrait,
    account_id: Uuid,
    filter: &MemberFilter,
    now: DateTime<Utc>,
) -> Result<u64, DbErr> {
    // Without a filter on the users, counting memberships alone skips the join: an
    // index-only scan instead of a hash join over both tables.
    filtered(account_id, filter, now, false).count(db).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_wildcards_in_search_text_are_escaped() {
        assert_eq!(escape_like("50%_off\\"), "50\\%\\_off\\\\");
        assert_eq!(escape_like("ada"), "ada");
    }
}
