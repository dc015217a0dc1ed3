//! Members of an account: a membership joined with its user, read and listed.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Select,
    sea_query::{Expr, ExprTrait, LikeExpr},
};
use uuid::Uuid;

use super::entity::{membership, user};
use super::rows::{self, ACTIVE, INVITED};
use super::{Error, Keyed, Store};
use crate::domain::{Email, Member, MemberStatus, Role};

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

/// What ListUsers narrows the account's members to.
#[derive(Clone, Debug, Default)]
pub struct MemberFilter {
    pub status: Option<MemberStatus>,
    pub two_factor_enabled: Option<bool>,
    pub role: Option<Role>,
    /// Lower-cased text to find in the email or the name, and the user id it may also be.
    pub search: Option<(String, Option<Uuid>)>,
}

impl MemberFilter {
    fn reads_users(&self) -> bool {
        self.search.is_some() || self.two_factor_enabled.is_some()
    }
}

/// The account's memberships the filter keeps; joined with their users when `with_users`
/// or when the filter reads them.
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
        let pending = membership::Column::Status.eq(INVITED);
        query = query.filter(match status {
            MemberStatus::Active => membership::Column::Status.eq(ACTIVE),
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

impl Store {
    /// One member of the account, pending or accepted.
    #[tracing::instrument(skip_all, err)]
    pub async fn member(
        &self,
        account_id: Uuid,
        user_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Member, Error> {
        let (membership, user) = get(&self.reader, account_id, user_id).await?;
        rows::member(membership, user, now)
    }

    /// The user's role in the account if they are an active member of it.
    #[tracing::instrument(skip_all, err)]
    pub async fn active_role(
        &self,
        account_id: Uuid,
        user_id: Uuid,
    ) -> Result<Option<Role>, Error> {
        active_role(&self.reader, account_id, user_id).await
    }

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

    /// One page of members in membership-id order, starting after `after`.
    #[tracing::instrument(skip_all, fields(%account_id, limit), err)]
    pub async fn list_members(
        &self,
        account_id: Uuid,
        filter: &MemberFilter,
        after: Option<Uuid>,
        limit: u64,
        now: DateTime<Utc>,
    ) -> Result<Vec<Keyed<Member>>, Error> {
        let mut query = filtered(account_id, filter, now, true);
        if let Some(after) = after {
            query = query.filter(membership::Column::Id.gt(after));
        }
        let found = query
            .order_by_asc(membership::Column::Id)
            .limit(limit)
            .select_also(user::Entity)
            .all(&self.reader)
            .await?;
        found
            .into_iter()
            .filter_map(|(membership, user)| Some((membership, user?)))
            .map(|(membership, user)| {
                let key = membership.id;
                rows::member(membership, user, now).map(|item| Keyed { key, item })
            })
            .collect()
    }

    /// How many members match the filter, on all pages.
    #[tracing::instrument(skip_all, fields(%account_id), err)]
    pub async fn count_members(
        &self,
        account_id: Uuid,
        filter: &MemberFilter,
        now: DateTime<Utc>,
    ) -> Result<u64, Error> {
        // Without a filter on the users, counting memberships alone skips the join: an
        // index-only scan instead of a hash join over both tables.
        Ok(filtered(account_id, filter, now, false)
            .count(&self.reader)
            .await?)
    }
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
