//! The email outbox: rows committed with the change that caused them, delivered by the
//! notifier. Claiming leases a row (pushes its next attempt forward and stamps it with the
//! claim's lease id) so that replicas sharing one database never hand the same email to the
//! mail server together. The claimer renews its lease while it sends; a replica that dies
//! mid-send leaves the lease to run out within seconds, and another sends the email again
//! with the same Message-ID. Only the holder of a row's current lease can mark it sent or
//! failed: a late worker whose lease ran out changes nothing. Nothing is deleted.

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, DatabaseBackend, DbErr, EntityTrait, QueryFilter,
    QuerySelect, Statement,
    sea_query::{Expr, ExprTrait, Query, SelectStatement},
};
use uuid::Uuid;

use super::entity::{account, invitation, membership, outbox, user};
use super::{Error, Store};
use crate::domain::{
    DeliveryState, InvitationDelivery, InvitationEmail, InvitationKind, InvitationSecret, Language,
    Member,
    delivery::{LinkFacts, LinkGone, check_link},
};

/// An email the notifier has claimed.
pub struct OutboxEmail {
    pub id: Uuid,
    /// The lease of the claim that handed it out.
    pub lease_id: Uuid,
    /// The invitation whose link it carries.
    pub invitation_id: Option<Uuid>,
    /// Attempts so far, this one included.
    pub attempts: u32,
    /// The message, or why its stored form cannot be read.
    pub message: Result<InvitationEmail, String>,
    /// The trace context of the call that queued it (see [`crate::telemetry`]).
    pub trace_context: Option<String>,
}

// By hand: the message holds the link's secret.
impl std::fmt::Debug for OutboxEmail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxEmail")
            .field("id", &self.id)
            .field("lease_id", &self.lease_id)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

impl From<outbox::Model> for OutboxEmail {
    fn from(row: outbox::Model) -> Self {
        Self {
            id: row.id,
            lease_id: row.lease_id.unwrap_or_default(),
            invitation_id: row.invitation_id,
            attempts: u32::try_from(row.attempts).unwrap_or_default(),
            message: serde_json::from_str(&row.payload)
                .map_err(|e| format!("unreadable outbox payload: {e}")),
            trace_context: row.trace_context,
        }
    }
}

/// What an invitation email says, snapshotted when it is queued.
pub(super) struct Invitation<'a> {
    pub invitation_id: Uuid,
    pub invitee: &'a Member,
    pub kind: InvitationKind,
    pub secret: &'a InvitationSecret,
    pub expires_at: DateTime<Utc>,
    pub now: DateTime<Utc>,
}

/// The names an invitation email speaks with, as they are when it is queued.
pub(super) struct EmailNames {
    pub account_name: String,
    pub inviter_name: String,
    /// The invitee's own name and language, when they already have a user.
    pub invitee_own: Option<(String, Language)>,
}

/// Queues the invitation email in the inviting transaction, with the account's and the
/// inviter's names as they are now; `invitee_own` is the invitee's user as the transaction
/// read it. Returns the delivery of the queued email.
pub(super) async fn enqueue_invitation(
    db: &impl ConnectionTrait,
    inviter_id: Uuid,
    invitation: &Invitation<'_>,
    invitee_own: Option<(String, Language)>,
) -> Result<InvitationDelivery, Error> {
    let account_name = account::Entity::find_by_id(invitation.invitee.account_id)
        .one(db)
        .await?
        .map(|account| account.name)
        .unwrap_or_default();
    let inviter_name = user::Entity::find_by_id(inviter_id)
        .one(db)
        .await?
        .map(|inviter| inviter.name)
        .unwrap_or_default();
    let names = EmailNames {
        account_name,
        inviter_name,
        invitee_own,
    };
    invitation_email(invitation, names)?.insert(db).await?;
    Ok(InvitationDelivery::queued())
}

/// The outbox row of an invitation email. The email goes to the person, not to the
/// account: a user who already signs in is addressed by their own name in their own
/// language; a new user as the invitation names them.
pub(super) fn invitation_email(
    invitation: &Invitation<'_>,
    names: EmailNames,
) -> Result<outbox::ActiveModel, Error> {
    let invitee = invitation.invitee;
    let (invitee_name, language) = match (invitation.kind, names.invitee_own) {
        (InvitationKind::ExistingUser, Some(own)) => own,
        (InvitationKind::NewUser, _) | (InvitationKind::ExistingUser, None) => {
            (invitee.name.clone(), invitee.language)
        }
    };
    let message = InvitationEmail {
        kind: invitation.kind,
        to: invitee.email.clone(),
        invitee_name,
        language,
        account_name: names.account_name,
        inviter_name: names.inviter_name,
        expires_at: invitation.expires_at,
        secret: Some(invitation.secret.expose().to_string()),
    };
    Ok(outbox::ActiveModel {
        id: Set(Uuid::now_v7()),
        kind: Set("invitation".to_string()),
        invitation_id: Set(Some(invitation.invitation_id)),
        payload: Set(to_payload(&message)?),
        attempts: Set(0),
        next_attempt_at: Set(invitation.now),
        last_error: Set(None),
        created_at: Set(invitation.now),
        sent_at: Set(None),
        dead_at: Set(None),
        lease_id: Set(None),
        last_attempt_at: Set(None),
        trace_context: Set(crate::telemetry::trace_context()),
    })
}

fn to_payload(message: &InvitationEmail) -> Result<String, DbErr> {
    serde_json::to_string(message).map_err(|e| DbErr::Custom(e.to_string()))
}

/// What is kept of a message once it no longer needs its secret.
fn without_secret(email: &OutboxEmail) -> String {
    email
        .message
        .as_ref()
        .ok()
        .and_then(|message| to_payload(&message.without_secret()).ok())
        .unwrap_or_else(|| "{}".to_string())
}

const CLAIM_POSTGRES: &str = r#"
UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $1, lease_id = $2,
    last_attempt_at = $3
WHERE id IN (
    SELECT id FROM outbox
    WHERE sent_at IS NULL AND dead_at IS NULL AND next_attempt_at <= $4
    ORDER BY next_attempt_at, id
    LIMIT $5
    FOR UPDATE SKIP LOCKED
)
RETURNING *"#;

// SQLite runs one writer at a time, so the plain UPDATE already claims exclusively.
const CLAIM_SQLITE: &str = r#"
UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, lease_id = ?,
    last_attempt_at = ?
WHERE id IN (
    SELECT id FROM outbox
    WHERE sent_at IS NULL AND dead_at IS NULL AND next_attempt_at <= ?
    ORDER BY next_attempt_at, id
    LIMIT ?
)
RETURNING *"#;

/// The statement [`Store::claim_emails`] runs, for `EXPLAIN`: it claims under a new lease.
pub fn claim_statement(
    backend: DatabaseBackend,
    now: DateTime<Utc>,
    lease: TimeDelta,
    limit: u64,
) -> Statement {
    let sql = match backend {
        DatabaseBackend::Postgres => CLAIM_POSTGRES,
        _ => CLAIM_SQLITE,
    };
    Statement::from_sql_and_values(
        backend,
        sql,
        [
            (now + lease).into(),
            Uuid::now_v7().into(),
            now.into(),
            now.into(),
            (limit as i64).into(),
        ],
    )
}

/// The rows of one email that its current lease holder may still mark.
fn held(email: &OutboxEmail) -> Condition {
    Condition::all()
        .add(outbox::Column::Id.eq(email.id))
        .add(outbox::Column::LeaseId.eq(email.lease_id))
        .add(outbox::Column::SentAt.is_null())
        .add(outbox::Column::DeadAt.is_null())
}

impl Store {
    /// Claims up to `limit` due emails under one new lease that runs for `lease`, counting
    /// the attempt.
    #[tracing::instrument(skip_all, err(level = "info"))]
    pub async fn claim_emails(
        &self,
        now: DateTime<Utc>,
        lease: TimeDelta,
        limit: u64,
    ) -> Result<Vec<OutboxEmail>, Error> {
        let statement = claim_statement(self.db.get_database_backend(), now, lease, limit);
        let claimed = outbox::Entity::find()
            .from_raw_sql(statement)
            .all(&self.db)
            .await?;
        Ok(claimed.into_iter().map(OutboxEmail::from).collect())
    }

    /// Extends the lease to `now + lease` on the emails it still holds; how many those are.
    #[tracing::instrument(skip_all, fields(%lease_id), err(level = "info"))]
    pub async fn renew_lease(
        &self,
        lease_id: Uuid,
        now: DateTime<Utc>,
        lease: TimeDelta,
    ) -> Result<u64, Error> {
        let renewed = outbox::Entity::update_many()
            .filter(outbox::Column::LeaseId.eq(lease_id))
            .filter(outbox::Column::SentAt.is_null())
            .filter(outbox::Column::DeadAt.is_null())
            .col_expr(outbox::Column::NextAttemptAt, Expr::value(now + lease))
            .exec(&self.db)
            .await?;
        Ok(renewed.rows_affected)
    }

    /// Whether this claim still holds the email with time left on its lease: a claim whose
    /// lease ran out (the renewals failed) may have been taken over by another replica, and
    /// sending then could send the email twice.
    pub async fn holds_lease(
        &self,
        email: &OutboxEmail,
        now: DateTime<Utc>,
    ) -> Result<bool, Error> {
        Ok(outbox::Entity::find()
            .select_only()
            .column(outbox::Column::Id)
            .filter(held(email))
            .filter(outbox::Column::NextAttemptAt.gt(now))
            .into_tuple::<Uuid>()
            .one(&self.db)
            .await?
            .is_some())
    }

    /// Why the email's link no longer works, if it does not: it must not be sent then.
    pub async fn link_gone(
        &self,
        email: &OutboxEmail,
        now: DateTime<Utc>,
    ) -> Result<Option<LinkGone>, Error> {
        let Some(invitation_id) = email.invitation_id else {
            return Ok(None);
        };
        let facts = invitation::Entity::find_by_id(invitation_id)
            .one(&self.db)
            .await?
            .map(|invitation| LinkFacts {
                consumed: invitation.consumed_at.is_some(),
                expires_at: invitation.expires_at,
            });
        Ok(check_link(facts, now).err())
    }

    /// Marks the email sent and erases the link's secret from it. `false` when the lease is
    /// no longer the email's: nothing changed.
    pub async fn mark_sent(&self, email: &OutboxEmail, now: DateTime<Utc>) -> Result<bool, Error> {
        let marked = outbox::Entity::update_many()
            .filter(held(email))
            .col_expr(outbox::Column::SentAt, Expr::value(now))
            .col_expr(outbox::Column::Payload, Expr::value(without_secret(email)))
            .col_expr(
                outbox::Column::LastError,
                Expr::value(Option::<String>::None),
            )
            .col_expr(outbox::Column::LeaseId, Expr::value(Option::<Uuid>::None))
            .exec(&self.db)
            .await?;
        Ok(marked.rows_affected == 1)
    }

    /// Records a failed attempt, to be retried at `retry_at`, and releases the lease.
    /// `false` when the lease is no longer the email's: nothing changed.
    pub async fn mark_retry(
        &self,
        email: &OutboxEmail,
        error: &str,
        retry_at: DateTime<Utc>,
    ) -> Result<bool, Error> {
        let marked = outbox::Entity::update_many()
            .filter(held(email))
            .col_expr(
                outbox::Column::LastError,
                Expr::value(truncate(error, 1000)),
            )
            .col_expr(outbox::Column::NextAttemptAt, Expr::value(retry_at))
            .col_expr(outbox::Column::LeaseId, Expr::value(Option::<Uuid>::None))
            .exec(&self.db)
            .await?;
        Ok(marked.rows_affected == 1)
    }

    /// Gives the email up for `reason` (the mail server's refusal, or why its link stopped
    /// working) and erases its secret, since it will never be sent. `false` when the lease
    /// is no longer the email's: nothing changed.
    pub async fn mark_failed(
        &self,
        email: &OutboxEmail,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, Error> {
        let marked = outbox::Entity::update_many()
            .filter(held(email))
            .col_expr(
                outbox::Column::LastError,
                Expr::value(truncate(reason, 1000)),
            )
            .col_expr(outbox::Column::DeadAt, Expr::value(now))
            .col_expr(outbox::Column::Payload, Expr::value(without_secret(email)))
            .col_expr(outbox::Column::LeaseId, Expr::value(Option::<Uuid>::None))
            .exec(&self.db)
            .await?;
        Ok(marked.rows_affected == 1)
    }

    /// When the earliest waiting email falls due, if any waits.
    pub async fn next_email_due_at(&self) -> Result<Option<DateTime<Utc>>, Error> {
        Ok(outbox::Entity::find()
            .select_only()
            .column_as(outbox::Column::NextAttemptAt.min(), "next")
            .filter(outbox::Column::SentAt.is_null())
            .filter(outbox::Column::DeadAt.is_null())
            .into_tuple::<Option<DateTime<Utc>>>()
            .one(&self.reader)
            .await?
            .flatten())
    }
}

/// Gives up the unsent emails of invitations whose links stopped working in the same
/// transaction: replaced by a resend, or removed with their membership.
pub(super) async fn retire_for_invitations(
    db: &impl ConnectionTrait,
    invitation_ids: &[Uuid],
    why: LinkGone,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    if invitation_ids.is_empty() {
        return Ok(());
    }
    outbox::Entity::update_many()
        .filter(outbox::Column::InvitationId.is_in(invitation_ids.iter().copied()))
        .filter(outbox::Column::SentAt.is_null())
        .filter(outbox::Column::DeadAt.is_null())
        .col_expr(outbox::Column::DeadAt, Expr::value(now))
        .col_expr(outbox::Column::Payload, Expr::value("{}"))
        .col_expr(outbox::Column::LastError, Expr::value(why.reason()))
        .col_expr(outbox::Column::LeaseId, Expr::value(Option::<Uuid>::None))
        .exec(db)
        .await?;
    Ok(())
}

/// The delivery of each membership's current invitation email, by membership id: two
/// indexed lookups (the invitations of the memberships, then their emails).
pub(super) async fn deliveries(
    db: &impl ConnectionTrait,
    membership_ids: &[Uuid],
) -> Result<HashMap<Uuid, InvitationDelivery>, DbErr> {
    if membership_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let invitations: HashMap<Uuid, Uuid> = invitation::Entity::find()
        .filter(invitation::Column::MembershipId.is_in(membership_ids.iter().copied()))
        .all(db)
        .await?
        .into_iter()
        .map(|invitation| (invitation.id, invitation.membership_id))
        .collect();
    if invitations.is_empty() {
        return Ok(HashMap::new());
    }
    let emails = outbox::Entity::find()
        .filter(outbox::Column::InvitationId.is_in(invitations.keys().copied()))
        .all(db)
        .await?;
    let mut found: HashMap<Uuid, outbox::Model> = HashMap::new();
    for email in emails {
        let Some(membership_id) = email.invitation_id.and_then(|id| invitations.get(&id)) else {
            continue;
        };
        // One email per invitation; should there be more, the newest speaks for it.
        match found.get(membership_id) {
            Some(kept) if kept.created_at >= email.created_at => {}
            _ => {
                found.insert(*membership_id, email);
            }
        }
    }
    Ok(found
        .into_iter()
        .map(|(membership_id, email)| (membership_id, delivery(email)))
        .collect())
}

fn delivery(email: outbox::Model) -> InvitationDelivery {
    InvitationDelivery {
        state: InvitationDelivery::state_of(email.sent_at.is_some(), email.dead_at.is_some()),
        attempts: u32::try_from(email.attempts).unwrap_or_default(),
        last_error: email.last_error,
        last_attempt_at: email.last_attempt_at,
        sent_at: email.sent_at,
    }
}

/// Memberships whose current invitation's email is in `state`: a correlated `EXISTS`
/// that follows the membership's invitation (`ix_invitations_membership`) to its email
/// (`ix_outbox_invitation`).
pub(super) fn delivery_in(state: DeliveryState) -> SelectStatement {
    let sent = Expr::col((outbox::Entity, outbox::Column::SentAt));
    let given_up = Expr::col((outbox::Entity, outbox::Column::DeadAt));
    let in_state = match state {
        DeliveryState::Sent => Condition::all().add(sent.is_not_null()),
        DeliveryState::Failed => Condition::all()
            .add(sent.is_null())
            .add(given_up.is_not_null()),
        DeliveryState::Pending => Condition::all().add(sent.is_null()).add(given_up.is_null()),
    };
    Query::select()
        .expr(Expr::val(1))
        .from(invitation::Entity)
        .inner_join(
            outbox::Entity,
            Expr::col((outbox::Entity, outbox::Column::InvitationId))
                .equals((invitation::Entity, invitation::Column::Id)),
        )
        .and_where(
            Expr::col((invitation::Entity, invitation::Column::MembershipId))
                .equals((membership::Entity, membership::Column::Id)),
        )
        .cond_where(in_state)
        .to_owned()
}

fn truncate(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Language;

    #[test]
    fn the_secret_is_erased_and_the_rest_kept() {
        let message = InvitationEmail {
            kind: InvitationKind::NewUser,
            to: "a@b.example".into(),
            invitee_name: "A".into(),
            language: Language::En,
            account_name: "Acme".into(),
            inviter_name: "B".into(),
            expires_at: "2026-11-29T09:00:00Z".parse().unwrap(),
            secret: Some("s3cret".into()),
        };
        let email = |message| OutboxEmail {
            id: Uuid::now_v7(),
            lease_id: Uuid::now_v7(),
            invitation_id: None,
            attempts: 1,
            message,
            trace_context: None,
        };
        let erased = without_secret(&email(Ok(message)));
        assert!(!erased.contains("s3cret"));
        assert!(erased.contains("a@b.example"));
        assert_eq!(without_secret(&email(Err("not json".into()))), "{}");
    }
}
