//! The email outbox: rows committed with the change that caused them, delivered by the
//! notifier. Claiming leases a row (pushes its next attempt forward) so that replicas
//! sharing one database never hand the same email to the mail server together; a replica
//! that dies mid-send leaves the lease to run out, and another sends the email again with
//! the same Message-ID.

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseBackend, DbErr, EntityTrait,
    QueryFilter, QuerySelect, Statement, sea_query::Expr,
};
use uuid::Uuid;

use super::entity::outbox;

const CLAIM_POSTGRES: &str = r#"
UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $1
WHERE id IN (
    SELECT id FROM outbox
    WHERE sent_at IS NULL AND dead_at IS NULL AND next_attempt_at <= $2
    ORDER BY next_attempt_at, id
    LIMIT $3
    FOR UPDATE SKIP LOCKED
)
RETURNING *"#;

// SQLite runs one writer at a time, so the plain UPDATE already claims exclusively.
const CLAIM_SQLITE: &str = r#"
UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?
WHERE id IN (
    SELECT id FROM outbox
    WHERE sent_at IS NULL AND dead_at IS NULL AND next_attempt_at <= ?
    ORDER BY next_attempt_at, id
    LIMIT ?
)
RETURNING *"#;

/// Claims up to `limit` due emails for `lease`, counting the attempt.
#[tracing::instrument(skip_all, err)]
pub async fn claim_due(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    lease: TimeDelta,
    limit: u64,
) -> Result<Vec<outbox::Model>, DbErr> {
    let statement = claim_statement(db.get_database_backend(), now, lease, limit);
    outbox::Entity::find().from_raw_sql(statement).all(db).await
}

/// The statement [`claim_due`] runs, for `EXPLAIN`.
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
        [(now + lease).into(), now.into(), (limit as i64).into()],
    )
}

/// Marks the email sent and erases the link's secret from it.
pub async fn mark_sent(
    db: &impl ConnectionTrait,
    email: &outbox::Model,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    outbox::Entity::update_many()
        .filter(outbox::Column::Id.eq(email.id))
        .col_expr(outbox::Column::SentAt, Expr::value(now))
        .col_expr(
            outbox::Column::Payload,
            Expr::value(without_secret(&email.payload)),
        )
        .col_expr(
            outbox::Column::LastError,
            Expr::value(Option::<String>::None),
        )
        .exec(db)
        .await?;
    Ok(())
}

/// Records a failed attempt: retried at `retry_at`, or dead when `retry_at` is `None`
/// (and its secret erased, since it will never be sent).
pub async fn mark_failed(
    db: &impl ConnectionTrait,
    email: &outbox::Model,
    error: &str,
    retry_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let mut update = outbox::Entity::update_many()
        .filter(outbox::Column::Id.eq(email.id))
        .col_expr(
            outbox::Column::LastError,
            Expr::value(truncate(error, 1000)),
        );
    update = match retry_at {
        Some(at) => update.col_expr(outbox::Column::NextAttemptAt, Expr::value(at)),
        None => update
            .col_expr(outbox::Column::DeadAt, Expr::value(now))
            .col_expr(
                outbox::Column::Payload,
                Expr::value(without_secret(&email.payload)),
            ),
    };
    update.exec(db).await?;
    Ok(())
}

/// Retires the unsent emails of invitations a resend replaced: their links no longer work.
pub async fn retire_for_invitations(
    db: &impl ConnectionTrait,
    invitation_ids: &[Uuid],
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
        .col_expr(
            outbox::Column::LastError,
            Expr::value("superseded by a resent invitation"),
        )
        .exec(db)
        .await?;
    Ok(())
}

/// When the earliest waiting email falls due, if any waits.
pub async fn next_due_at(db: &impl ConnectionTrait) -> Result<Option<DateTime<Utc>>, DbErr> {
    outbox::Entity::find()
        .select_only()
        .column_as(outbox::Column::NextAttemptAt.min(), "next")
        .filter(outbox::Column::SentAt.is_null())
        .filter(outbox::Column::DeadAt.is_null())
        .into_tuple::<Option<DateTime<Utc>>>()
        .one(db)
        .await
        .map(Option::flatten)
}

pub fn new_row(
    kind: &str,
    invitation_id: Option<Uuid>,
    payload: String,
    now: DateTime<Utc>,
) -> outbox::ActiveModel {
    outbox::ActiveModel {
        id: Set(Uuid::now_v7()),
        kind: Set(kind.to_string()),
        invitation_id: Set(invitation_id),
        payload: Set(payload),
        attempts: Set(0),
        next_attempt_at: Set(now),
        last_error: Set(None),
        created_at: Set(now),
        sent_at: Set(None),
        dead_at: Set(None),
    }
}

fn without_secret(payload: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(payload) {
        Ok(mut value) => {
            if let Some(object) = value.as_object_mut() {
                object.remove("secret");
            }
            value.to_string()
        }
        Err(_) => "{}".to_string(),
    }
}

fn truncate(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_is_erased_and_the_rest_kept() {
        let erased = without_secret(r#"{"to":"a@b.example","secret":"s3cret"}"#);
        assert!(!erased.contains("s3cret"));
        assert!(erased.contains("a@b.example"));
        assert_eq!(without_secret("not json"), "{}");
    }
}
