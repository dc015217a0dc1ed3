//! The invitation quota (USERMGMT_INVITE_QUOTA): an account's invitations and resends in
//! a sliding window, counted from the audit trail every replica writes to.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Statement,
};
use uuid::Uuid;

use super::Error;
use super::entity::audit_event;
use crate::domain::{AuditAction, invitation::InviteQuota};

/// Refuses an invitation or resend, whose event this transaction has just written, if it
/// takes the account past its quota. The last statements of the transaction: on PostgreSQL
/// it waits for the account's other invitations in flight to commit first, so replicas
/// count each other's (holding nothing another invitation could be waiting for).
pub(super) async fn check_invite_quota(
    db: &impl ConnectionTrait,
    account_id: Uuid,
    quota: Option<InviteQuota>,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let Some(quota) = quota else {
        return Ok(());
    };
    if db.get_database_backend() == DatabaseBackend::Postgres {
        db.query_one_raw(Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            "SELECT pg_advisory_xact_lock($1)",
            [lock_key(account_id).into()],
        ))
        .await?;
    }
    // This invitation is the newest; the one `limit` places before it keeps the account at
    // its limit until it leaves the window.
    let pushing_out: Option<DateTime<Utc>> = audit_event::Entity::find()
        .select_only()
        .column(audit_event::Column::CreatedAt)
        .filter(audit_event::Column::AccountId.eq(account_id))
        .filter(audit_event::Column::Action.is_in([
            AuditAction::UserInvited.as_str(),
            AuditAction::InvitationResent.as_str(),
        ]))
        .filter(audit_event::Column::CreatedAt.gt(now - quota.window))
        .order_by_desc(audit_event::Column::CreatedAt)
        .offset(u64::from(quota.limit))
        .limit(1)
        .into_tuple()
        .one(db)
        .await?;
    Ok(quota.check(pushing_out, now)?)
}

/// The account's advisory lock for its quota: its id's random half, tagged so that it
/// cannot collide with another use of advisory locks on an id.
fn lock_key(account_id: Uuid) -> i64 {
    const QUOTA: i64 = 0x7175_6f74_6100_0000; // "quota"
    let low = account_id.as_u64_pair().1;
    i64::from_ne_bytes(low.to_ne_bytes()) ^ QUOTA
}
