//! Members of an account: a membership joined with its user, read and listed.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseBackend, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, QueryTrait, Select,
    sea_query::{Expr, ExprTrait, LikeExpr, SelectStatement, UnionType},
};
use uuid::Uuid;

use super::entity::{membership, user};
use super::rows::{self, ACTIVE, INVITED};
use super::{Error, Keyed, Store, outbox, tokens};
use crate::domain::{
    Acting, Actor, DeliveryState, Email, Member, MemberStatus, Role, token::effective_role,
};

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

/// What ListUsers narrows the account's members to.
#[derive(Clone, Debug, Default)]
pub struct MemberFilter {
    pub status: Option<MemberStatus>,
    pub two_factor_enabled: Option<bool>,
    pub role: Option<Role>,
    /// Lower-cased text to find in the email or the name, and the user id it may also be.
    pub search: Option<(String, Option<Uuid>)>,
    /// Pending members whose invitation email is in this state.
    pub delivery_state: Option<DeliveryState>,
}

impl MemberFilter {
    fn reads_users(&self, backend: DatabaseBackend) -> bool {
        self.two_factor_enabled.is_some()
            || (self.search.is_some() && backend != DatabaseBackend::Postgres)
    }
}

/// The account's memberships the filter keeps; joined with their users when `with_users`
/// or when the filter reads them. A pending member reads as the invitation wrote them
/// (`domain::member::visible_profile`): two-factor authentication off, the invited name.
fn filtered(
    account_id: Uuid,
    filter: &MemberFilter,
    now: DateTime<Utc>,
    with_users: bool,
    backend: DatabaseBackend,
) -> Select<membership::Entity> {
    let mut query = membership::Entity::find().filter(membership::Column::AccountId.eq(account_id));
    if with_users || filter.reads_users(backend) {
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
        let accepted = membership::Column::Status.eq(ACTIVE);
        query = query.filter(if enabled {
            Condition::all()
                .add(accepted)
                .add(user::Column::TwoFactorEnabled.eq(true))
        } else {
            Condition::any()
                .add(accepted.not())
                .add(user::Column::TwoFactorEnabled.eq(false))
        });
    }
    if let Some(role) = filter.role {
        query = query.filter(membership::Column::Role.eq(role.id()));
    }
    if let Some(state) = filter.delivery_state {
        query = query
            .filter(membership::Column::Status.eq(INVITED))
            .filter(Expr::exists(outbox::delivery_in(state)));
    }
    if let Some((text, maybe_id)) = &filter.search {
        let search = Search::new(text, *maybe_id);
        query = query.filter(match backend {
            DatabaseBackend::Postgres => Condition::all()
                .add(membership::Column::Id.in_subquery(search.by_indexes(account_id))),
            _ => search.in_one_walk(),
        });
    }
    query
}

/// What a search matches: the email or the user id; the user's own name once they
/// accepted; the invited name while they have not (R17).
struct Search {
    by_user: Condition,
    by_invitation: Condition,
}

impl Search {
    fn new(text: &str, maybe_id: Option<Uuid>) -> Self {
        let pattern = LikeExpr::new(format!("%{}%", escape_like(text))).escape('\\');
        let accepted = membership::Column::Status.eq(ACTIVE);
        let mut by_user = Condition::any()
            .add(Expr::col((user::Entity, user::Column::Email)).like(pattern.clone()))
            .add(
                Condition::all()
                    .add(accepted.clone())
                    .add(Expr::col((user::Entity, user::Column::NameLower)).like(pattern.clone())),
            );
        if let Some(id) = maybe_id {
            by_user = by_user.add(user::Column::Id.eq(id));
        }
        let by_invitation = Condition::all().add(accepted.not()).add(
            Expr::col((membership::Entity, membership::Column::InvitedNameLower)).like(pattern),
        );
        Self {
            by_user,
            by_invitation,
        }
    }

    /// The matching membership ids, one branch per table, so that PostgreSQL reads each
    /// branch through its trigram indexes.
    fn by_indexes(self, account_id: Uuid) -> SelectStatement {
        let of_account = || {
            membership::Entity::find()
                .select_only()
                .column(membership::Column::Id)
                .filter(membership::Column::AccountId.eq(account_id))
        };
        of_account()
            .inner_join(user::Entity)
            .filter(self.by_user)
            .into_query()
            .union(
                UnionType::All,
                of_account().filter(self.by_invitation).into_query(),
            )
            .to_owned()
    }

    /// One condition on the members joined with their users: with no index to read (SQLite),
    /// one walk of the account's members beats one per branch.
    fn in_one_walk(self) -> Condition {
        Condition::any().add(self.by_user).add(self.by_invitation)
    }
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
    #[tracing::instrument(skip_all, fields(%account_id, limit), err(level = "info"))]
    pub async fn list_members(
        &self,
        account_id: Uuid,
        filter: &MemberFilter,
        after: Option<Uuid>,
        limit: u64,
        now: DateTime<Utc>,
    ) -> Result<Vec<Keyed<Member>>, Error> {
        let backend = self.db.get_database_backend();
        let mut query = filtered(account_id, filter, now, true, backend);
        if let Some(after) = after {
            query = query.filter(membership::Column::Id.gt(after));
        }
        let found = query
            .order_by_asc(membership::Column::Id)
            .limit(limit)
            .select_also(user::Entity)
            .all(&self.reader)
            .await?;
        let pending: Vec<Uuid> = found
            .iter()
            .filter(|(membership, _)| membership.status == INVITED)
            .map(|(membership, _)| membership.id)
            .collect();
        let mut deliveries = outbox::deliveries(&self.reader, &pending).await?;
        found
            .into_iter()
            .filter_map(|(membership, user)| Some((membership, user?)))
            .map(|(membership, user)| {
                let key = membership.id;
                let mut item = rows::member(membership, user, now)?;
                item.invitation_delivery = deliveries.remove(&key);
                Ok(Keyed { key, item })
            })
            .collect()
    }

    /// How many members match the filter, on all pages.
    #[tracing::instrument(skip_all, fields(%account_id), err(level = "info"))]
    pub async fn count_members(
        &self,
        account_id: Uuid,
        filter: &MemberFilter,
        now: DateTime<Utc>,
    ) -> Result<u64, Error> {
        // Without a filter on the users, counting memberships alone skips the join: an
        // index-only scan instead of a hash join over both tables.
        let backend = self.db.get_database_backend();
        Ok(filtered(account_id, filter, now, false, backend)
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
