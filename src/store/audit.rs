//! The audit trail: written in the transaction of the change it records.

use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Statement,
    sea_query::{Alias, CommonTableExpression, Expr, Query, WithClause, WithQuery},
};
use uuid::Uuid;

use super::entity::{account_change_sequence as sequence, audit_event};
use super::template::{Template, Templates, stand_in_id, stand_in_time};
use super::{Error, Store, feed, rows};
use crate::domain::{Actor, AuditAction, AuditEvent, FieldChange, LinkDelivery};

/// An event about to be recorded: built from the actor, then told what it targets.
pub struct Event<'a> {
    actor: &'a Actor,
    account_id: Uuid,
    action: AuditAction,
    target_user_id: Option<Uuid>,
    target_token_id: Option<Uuid>,
    changes: Vec<FieldChange>,
    link_delivery: Option<LinkDelivery>,
}

impl<'a> Event<'a> {
    pub fn new(actor: &'a Actor, account_id: Uuid, action: AuditAction) -> Self {
        Self {
            actor,
            account_id,
            action,
            target_user_id: None,
            target_token_id: None,
            changes: Vec::new(),
            link_delivery: None,
        }
    }

    pub fn user(mut self, user_id: Uuid) -> Self {
        self.target_user_id = Some(user_id);
        self
    }

    pub fn token(mut self, token_id: Uuid) -> Self {
        self.target_token_id = Some(token_id);
        self
    }

    pub fn changes(mut self, changes: Vec<FieldChange>) -> Self {
        self.changes = changes;
        self
    }

    /// How the invitation's link went out.
    pub fn link(mut self, delivery: LinkDelivery) -> Self {
        self.link_delivery = Some(delivery);
        self
    }

    /// Writes the event with the transaction it belongs to, numbered in its account's change
    /// stream (see [`feed`]): the account's counter stays locked until the transaction ends,
    /// so record the event as the transaction's last write.
    pub async fn record(self, db: &impl ConnectionTrait) -> Result<(), DbErr> {
        let changes =
            serde_json::to_string(&self.changes).map_err(|e| DbErr::Custom(e.to_string()))?;
        let link_delivery = self
            .link_delivery
            .map(|delivery| delivery.as_str().to_string());
        let values: [sea_orm::Value; 11] = [
            Uuid::now_v7().into(),
            self.account_id.into(),
            Some(self.actor.user_id).into(),
            self.actor.acting.audit_name().into(),
            self.action.as_str().into(),
            self.target_user_id.into(),
            self.target_token_id.into(),
            self.actor.request_id.clone().into(),
            changes.into(),
            self.actor.now.into(),
            link_delivery.into(),
        ];
        if db.get_database_backend() == DatabaseBackend::Postgres {
            // The number, the event and the watchers' announcement in one statement: one
            // round trip while the account's counter is locked.
            db.execute_raw(numbered_statement(values)?).await?;
            return Ok(());
        }
        feed::wake_watchers(self.account_id);
        let seq = feed::next_seq(db, self.account_id).await?;
        let mut insert = Query::insert();
        insert
            .into_table(audit_event::Entity)
            .columns(COLUMNS)
            .values(values.into_iter().chain([seq.into()]).map(Expr::val))
            .map_err(|error| DbErr::Custom(error.to_string()))?;
        db.execute(&insert).await?;
        Ok(())
    }
}

/// Stand-ins for an event's values, in the order of [`COLUMNS`] (its number aside).
fn stand_in_values() -> [sea_orm::Value; 11] {
    [
        stand_in_id(21).into(),
        stand_in_id(22).into(),
        Some(stand_in_id(23)).into(),
        "\u{0}stand-in credential".into(),
        "\u{0}stand-in action".into(),
        Some(stand_in_id(24)).into(),
        Some(stand_in_id(25)).into(),
        "\u{0}stand-in request".into(),
        "\u{0}stand-in changes".into(),
        stand_in_time().into(),
        Some("\u{0}stand-in link".to_string()).into(),
    ]
}

static NUMBERED: Templates = Templates::new();

/// [`numbered_insert`] for these values (the account's id is the second), from its
/// template: the SQL built once, the values bound per event.
fn numbered_statement(values: [sea_orm::Value; 11]) -> Result<Statement, DbErr> {
    let template = NUMBERED.try_get(DatabaseBackend::Postgres, || {
        let stand_ins = stand_in_values();
        let query = numbered_insert(stand_in_id(22), stand_ins.clone())?;
        Ok::<_, DbErr>(Template::new(DatabaseBackend::Postgres, &stand_ins, &query))
    })?;
    Ok(template.statement(&values))
}

/// PostgreSQL: the account's next number taken, the event written with it and the watchers
/// told ([`feed::announcement`]), in one statement. `values`: the event's columns but its
/// number, in the order of [`COLUMNS`].
fn numbered_insert(account_id: Uuid, values: [sea_orm::Value; 11]) -> Result<WithQuery, DbErr> {
    let numbered = Query::select()
        .exprs(values.map(Expr::val))
        .column((Alias::new(SEQ), sequence::Column::LastSeq))
        .from(Alias::new(SEQ))
        .to_owned();
    let mut insert = Query::insert();
    insert
        .into_table(audit_event::Entity)
        .columns(COLUMNS)
        .select_from(numbered)
        .map_err(|error| DbErr::Custom(error.to_string()))?
        .returning(Query::returning().expr(feed::announcement(Expr::col((
            audit_event::Entity,
            audit_event::Column::AccountId,
        )))));
    Ok(WithClause::new()
        .cte(
            CommonTableExpression::new()
                .query(feed::next_seq_statement(account_id)?)
                .table_name(Alias::new(SEQ))
                .to_owned(),
        )
        .to_owned()
        .query(insert))
}

/// The name of the account's next number in the event's statement.
const SEQ: &str = "seq";

/// The event's columns, in the order `Event::record` gives their values.
const COLUMNS: [audit_event::Column; 12] = [
    audit_event::Column::Id,
    audit_event::Column::AccountId,
    audit_event::Column::ActorId,
    audit_event::Column::ActorCredential,
    audit_event::Column::Action,
    audit_event::Column::TargetUserId,
    audit_event::Column::TargetTokenId,
    audit_event::Column::RequestId,
    audit_event::Column::Changes,
    audit_event::Column::CreatedAt,
    audit_event::Column::LinkDelivery,
    audit_event::Column::Seq,
];

impl Store {
    /// One page of the account's events, newest first, before `before`.
    #[tracing::instrument(skip_all, fields(%account_id), err(level = "info"))]
    pub async fn list_audit_events(
        &self,
        account_id: Uuid,
        target_user_id: Option<Uuid>,
        action: Option<AuditAction>,
        before: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<AuditEvent>, Error> {
        let mut query =
            audit_event::Entity::find().filter(audit_event::Column::AccountId.eq(account_id));
        if let Some(target) = target_user_id {
            query = query.filter(audit_event::Column::TargetUserId.eq(target));
        }
        if let Some(action) = action {
            query = query.filter(audit_event::Column::Action.eq(action.as_str()));
        }
        if let Some(before) = before {
            query = query.filter(audit_event::Column::Id.lt(before));
        }
        query
            .order_by_desc(audit_event::Column::Id)
            .limit(limit)
            .all(&self.reader)
            .await?
            .into_iter()
            .map(rows::audit_event)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::readers::tests::{script_statements, with_values};
    use sea_orm::DbBackend;

    /// The event's statement comes from a template: exactly what a fresh build sends, for
    /// any values, absent ones too.
    #[test]
    fn the_event_template_sends_what_a_fresh_build_sends_for_any_values() {
        for n in 0..40_i64 {
            let account = Uuid::new_v4();
            let maybe = |id: Uuid| (n % 2 == 0).then_some(id);
            let values: [sea_orm::Value; 11] = [
                Uuid::now_v7().into(),
                account.into(),
                Some(Uuid::new_v4()).into(),
                format!("api_token:{n}").into(),
                "user.invited".into(),
                maybe(Uuid::new_v4()).into(),
                maybe(Uuid::new_v4()).into(),
                Uuid::new_v4().to_string().into(),
                format!("[{n}]").into(),
                (chrono::Utc::now() + chrono::TimeDelta::microseconds(n)).into(),
                (n % 3 == 0).then(|| "email".to_string()).into(),
            ];
            assert_eq!(
                numbered_statement(values.clone()).unwrap(),
                DbBackend::Postgres.build(&numbered_insert(account, values).unwrap()),
            );
        }
    }

    #[test]
    fn the_pgbench_script_of_invite_user_numbers_its_event_as_the_service_does() {
        let values: [sea_orm::Value; 11] = std::array::from_fn(|_| sea_orm::Value::Int(None));
        let sql = DbBackend::Postgres
            .build(&numbered_insert(Uuid::nil(), values).unwrap())
            .sql;
        let id = |n: u32| {
            format!("('ffffffff-ffff-700{n}-8000-' || lpad(to_hex(:n::bigint), 12, '0'))::uuid")
        };
        let expected = with_values(
            &sql,
            &[
                ":account_id::uuid",
                "1",
                "1",
                &id(4),
                ":account_id::uuid",
                ":admin_id::uuid",
                "'api_token:' || :token_id::text",
                "'user.invited'",
                &id(0),
                "NULL::uuid",
                "'dafb5767-f403-485d-9791-7248d99a01aa'",
                "'[]'",
                "now()",
                "'email'",
            ],
        );
        let script = script_statements(include_str!("../../benches/pgbench/invite_user.sql"));
        assert!(script.contains(&expected), "{expected}");
    }
}
