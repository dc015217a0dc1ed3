//! The invitation quota (USERMGMT_INVITE_QUOTA): an account's invitations and resends in
//! a sliding window, counted from the audit trail every replica writes to.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::Expr,
};
use uuid::Uuid;

use super::Error;
use super::entity::audit_event;
use crate::domain::invitation::InviteQuota;

/// The events the quota counts, as the partial index's condition says them (migration
/// 000015); a unit test keeps them equal to the actions' stored names.
const INVITATION_ACTIONS: &str =
    "\"audit_events\".\"action\" IN ('user.invited', 'invitation.resent')";

/// Refuses an invitation or resend, whose event this transaction has just written, if it
/// takes the account past its quota. Recording that event took the account's change
/// counter (`feed::next_seq`), which stays locked until commit: the account's invitations
/// count here one after another, each seeing those committed before it, on every replica.
pub(super) async fn check_invite_quota(
    db: &impl ConnectionTrait,
    account_id: Uuid,
    quota: Option<InviteQuota>,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let Some(quota) = quota else {
        return Ok(());
    };
    // This invitation is the newest; the one `limit` places before it keeps the account at
    // its limit until it leaves the window.
    let pushing_out: Option<DateTime<Utc>> = audit_event::Entity::find()
        .select_only()
        .column(audit_event::Column::CreatedAt)
        .filter(audit_event::Column::AccountId.eq(account_id))
        // Written out, not bound: the planner matches the partial index
        // ix_audit_events_invitations by its very condition.
        .filter(Expr::cust(INVITATION_ACTIONS))
        .filter(audit_event::Column::CreatedAt.gt(now - quota.window))
        .order_by_desc(audit_event::Column::CreatedAt)
        .offset(u64::from(quota.limit))
        .limit(1)
        .into_tuple()
        .one(db)
        .await?;
    Ok(quota.check(pushing_out, now)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::AuditAction;

    #[test]
    fn the_counted_actions_are_the_invitations_and_resends() {
        let expected = format!(
            "\"audit_events\".\"action\" IN ('{}', '{}')",
            AuditAction::UserInvited.as_str(),
            AuditAction::InvitationResent.as_str()
        );
        assert_eq!(INVITATION_ACTIONS, expected);
    }
}
