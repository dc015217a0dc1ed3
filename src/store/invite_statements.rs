//! The statements of an invitation's transaction: its facts read in one statement once the
//! account is locked, and its rows written in one statement (a chain of `INSERT`s in a
//! `WITH` on PostgreSQL; one statement per row on SQLite, which has no round trips to save).

use std::{
    any::TypeId,
    sync::{LazyLock, PoisonError, RwLock},
};

use chrono::{DateTime, Utc};

use sea_orm::{
    ActiveModelTrait, ActiveValue, ConnectionTrait, DatabaseBackend, DbErr, EntityTrait,
    FromQueryResult, IdenStatic, Iterable, QueryTrait, Statement, Value, Values,
    sea_query::{
        Alias, CommonTableExpression, Condition, Expr, ExprTrait, InsertStatement, IntoIden,
        JoinType, Query, SelectStatement, WithClause,
    },
};
use uuid::Uuid;

use super::entity::{account, api_token, invite_request, membership, user};
use super::rows::{self, ACTIVE};
use super::template::{Template, Templates, stand_in_id, stand_in_time};
use super::{Error, InviteRequestId, Inviter};
use crate::domain::{Acting, Actor, Credential, Email, Role, SecretHash};

/// What an invitation decides from, read under the account's lock.
pub(super) struct InviteFacts {
    pub account_name: String,
    /// The actor's role as an active member of the account, not yet capped by a token's.
    pub member_role: Option<Role>,
    /// Whether the actor's API token, if they act with one, is still live.
    pub token_live: bool,
    /// For an [`Inviter::ApiToken`]: the token with that secret's hash, if it is live.
    pub token: Option<Credential>,
    pub inviter_name: String,
    /// The earlier invitation with the same `request_id`: its hash, account and user.
    pub first_request: Option<invite_request::Model>,
    /// The user who already has the email, and whether they are a member of the account.
    pub existing: Option<(user::Model, bool)>,
}

fn col(alias: &'static str, column: impl IntoIden) -> Expr {
    Expr::col((Alias::new(alias), column))
}

fn select_all<C: Iterable + IdenStatic + IntoIden>(
    query: &mut SelectStatement,
    alias: &'static str,
) {
    for column in C::iter() {
        let name = format!("{alias}_{}", column.as_str());
        query.expr_as(col(alias, column), Alias::new(name));
    }
}

/// The caller's user id, as the facts statement knows it: bound, or the issuer of the API
/// token it finds.
fn caller_id(inviter: &Inviter<'_>) -> Expr {
    match inviter {
        Inviter::Actor(actor) => Expr::val(actor.user_id),
        Inviter::ApiToken { .. } => col("t", api_token::Column::IssuerId),
    }
}

/// A live API token's condition beside `found`: neither deleted nor expired at `now`.
fn live_token(found: Expr, now: DateTime<Utc>) -> Condition {
    Condition::all()
        .add(found)
        .add(col("t", api_token::Column::DeletedAt).is_null())
        .add(
            Condition::any()
                .add(col("t", api_token::Column::ExpiresAt).is_null())
                .add(col("t", api_token::Column::ExpiresAt).gt(now)),
        )
}

/// One row when the account exists: the facts of [`InviteFacts`].
fn facts_query(
    account_id: Uuid,
    email: &Email,
    request: Option<&InviteRequestId>,
    inviter: &Inviter<'_>,
) -> SelectStatement {
    let now = inviter.now();
    let mut query = Query::select();
    query
        .from_as(account::Entity, Alias::new("a"))
        .expr_as(col("a", account::Column::Name), Alias::new("account_name"))
        .expr_as(
            col("cm", membership::Column::Role),
            Alias::new("caller_role"),
        )
        .expr_as(col("cu", user::Column::Name), Alias::new("inviter_name"))
        .expr_as(
            col("em", membership::Column::Id),
            Alias::new("member_of_account"),
        );
    // The token first: the caller's joins below may name its issuer.
    match inviter {
        Inviter::Actor(actor) => {
            if let Acting::ApiToken(credential) = &actor.acting {
                query
                    .expr_as(col("t", api_token::Column::Id), Alias::new("live_token"))
                    .join_as(
                        JoinType::LeftJoin,
                        api_token::Entity,
                        Alias::new("t"),
                        live_token(col("t", api_token::Column::Id).eq(credential.token_id), now),
                    );
            }
        }
        Inviter::ApiToken { hash, .. } => {
            select_all::<api_token::Column>(&mut query, "t");
            query.join_as(
                JoinType::LeftJoin,
                api_token::Entity,
                Alias::new("t"),
                live_token(
                    col("t", api_token::Column::SecretHash).eq(hash.as_str()),
                    now,
                ),
            );
        }
    }
    query
        .join_as(
            JoinType::LeftJoin,
            membership::Entity,
            Alias::new("cm"),
            Condition::all()
                .add(col("cm", membership::Column::AccountId).equals(("a", account::Column::Id)))
                .add(col("cm", membership::Column::UserId).eq(caller_id(inviter)))
                .add(col("cm", membership::Column::Status).eq(ACTIVE)),
        )
        .join_as(
            JoinType::LeftJoin,
            user::Entity,
            Alias::new("cu"),
            col("cu", user::Column::Id).eq(caller_id(inviter)),
        )
        .join_as(
            JoinType::LeftJoin,
            user::Entity,
            Alias::new("eu"),
            col("eu", user::Column::Email).eq(email.as_str()),
        )
        .join_as(
            JoinType::LeftJoin,
            membership::Entity,
            Alias::new("em"),
            Condition::all()
                .add(col("em", membership::Column::AccountId).equals(("a", account::Column::Id)))
                .add(col("em", membership::Column::UserId).equals(("eu", user::Column::Id))),
        )
        .and_where(col("a", account::Column::Id).eq(account_id));
    select_all::<user::Column>(&mut query, "eu");
    if let Some(request) = request {
        select_all::<invite_request::Column>(&mut query, "r");
        query.join_as(
            JoinType::LeftJoin,
            invite_request::Entity,
            Alias::new("r"),
            Condition::all()
                .add(col("r", invite_request::Column::CallerId).eq(caller_id(inviter)))
                .add(col("r", invite_request::Column::RequestId).eq(request.request_id.as_str())),
        );
    }
    query
}

const STAND_IN_ACCOUNT: Uuid = stand_in_id(11);
const STAND_IN_ACTOR: Uuid = stand_in_id(12);
const STAND_IN_TOKEN: Uuid = stand_in_id(13);
const STAND_IN_REQUEST: &str = "\u{0}stand-in request";
static STAND_IN_EMAIL: LazyLock<Option<Email>> =
    LazyLock::new(|| Email::parse("stand-in@template.invalid").ok());
static STAND_IN_HASH: LazyLock<SecretHash> = LazyLock::new(|| SecretHash::of("stand-in inviter"));

/// The facts statement's shapes: who invites (an actor without an API token, one with a
/// token known by its id, an API token found by its hash), with a request id or not.
static FACTS: [Templates; 6] = [const { Templates::new() }; 6];

fn shape(inviter: &Inviter<'_>, request: Option<&InviteRequestId>) -> usize {
    let who = match inviter {
        Inviter::Actor(actor) => usize::from(matches!(actor.acting, Acting::ApiToken(_))),
        Inviter::ApiToken { .. } => 2,
    };
    who * 2 + usize::from(request.is_some())
}

/// The arguments of [`facts_query`], in the order of its stand-ins. An argument a shape
/// does not send is NULL (the caller's id and the token's id beside a token found by its
/// hash; the hash beside an actor); no shape binds a NULL, so none is taken for another.
fn facts_arguments(
    account_id: Uuid,
    email: &str,
    request: Option<&InviteRequestId>,
    inviter: &Inviter<'_>,
) -> [Value; 7] {
    let (user_id, token_id, hash) = match inviter {
        Inviter::Actor(actor) => {
            let token_id = match &actor.acting {
                Acting::ApiToken(credential) => Some(credential.token_id),
                Acting::Jwt { .. } | Acting::Operator | Acting::Invitation => None,
            };
            (Some(actor.user_id), token_id, None)
        }
        Inviter::ApiToken { hash, .. } => (None, None, Some(hash.as_str())),
    };
    [
        account_id.into(),
        user_id.into(),
        email.into(),
        token_id.into(),
        inviter.now().into(),
        request.map(|request| request.request_id.clone()).into(),
        hash.into(),
    ]
}

/// The same kind of inviter as `inviter`, made of stand-ins.
fn stand_in_inviter(inviter: &Inviter<'_>) -> Inviter<'static> {
    let now = stand_in_time();
    match inviter {
        Inviter::Actor(actor) => {
            let acting = match actor.acting {
                Acting::ApiToken(_) => Acting::ApiToken(Credential {
                    token_id: STAND_IN_TOKEN,
                    account_id: STAND_IN_ACCOUNT,
                    issuer_id: STAND_IN_ACTOR,
                    role: Role::Users,
                    expires_at: None,
                    last_used_at: None,
                }),
                _ => Acting::Operator,
            };
            Inviter::Actor(Actor::new(STAND_IN_ACTOR, acting, "", now))
        }
        Inviter::ApiToken { .. } => Inviter::ApiToken {
            hash: &STAND_IN_HASH,
            request_id: "",
            now,
        },
    }
}

/// The statement [`invite_facts`] sends (also for the pgbench scripts): its SQL built once
/// per backend and shape, with stand-ins, then this invitation's values bound.
pub fn invite_facts_statement(
    backend: DatabaseBackend,
    account_id: Uuid,
    email: &Email,
    request: Option<&InviteRequestId>,
    inviter: &Inviter<'_>,
) -> Statement {
    let Some(stand_in_email) = STAND_IN_EMAIL.as_ref() else {
        return backend.build(&facts_query(account_id, email, request, inviter));
    };
    let template = FACTS[shape(inviter, request)].get(backend, || {
        let inviter = stand_in_inviter(inviter);
        let request = request.map(|_| InviteRequestId {
            request_id: STAND_IN_REQUEST.into(),
            request_hash: String::new(),
        });
        let stand_ins = facts_arguments(
            STAND_IN_ACCOUNT,
            stand_in_email.as_str(),
            request.as_ref(),
            &inviter,
        );
        let query = facts_query(STAND_IN_ACCOUNT, stand_in_email, request.as_ref(), &inviter);
        Template::new(backend, &stand_ins, &query)
    });
    template.statement(&facts_arguments(
        account_id,
        email.as_str(),
        request,
        inviter,
    ))
}

/// Reads the facts of an invitation; `None` when the account does not exist.
pub(super) async fn invite_facts(
    db: &impl ConnectionTrait,
    account_id: Uuid,
    email: &Email,
    request: Option<&InviteRequestId>,
    inviter: &Inviter<'_>,
) -> Result<Option<InviteFacts>, Error> {
    let statement = invite_facts_statement(
        db.get_database_backend(),
        account_id,
        email,
        request,
        inviter,
    );
    let Some(row) = db.query_one_raw(statement).await? else {
        return Ok(None);
    };
    let existing = Option::<user::Model>::from_query_result(&row, "eu_")?;
    let member_of_account = row
        .try_get::<Option<Uuid>>("", "member_of_account")?
        .is_some();
    let (token_live, token) = match inviter {
        Inviter::Actor(actor) => match actor.acting {
            Acting::ApiToken(_) => (
                row.try_get::<Option<Uuid>>("", "live_token")?.is_some(),
                None,
            ),
            Acting::Jwt { .. } | Acting::Operator | Acting::Invitation => (true, None),
        },
        Inviter::ApiToken { .. } => {
            let token = Option::<api_token::Model>::from_query_result(&row, "t_")?
                .map(|token| rows::credential(&token))
                .transpose()?;
            (token.is_some(), token)
        }
    };
    Ok(Some(InviteFacts {
        account_name: row.try_get("", "account_name")?,
        member_role: row
            .try_get::<Option<i32>>("", "caller_role")?
            .map(rows::role)
            .transpose()?,
        token_live,
        token,
        inviter_name: row
            .try_get::<Option<String>>("", "inviter_name")?
            .unwrap_or_default(),
        first_request: match request {
            Some(_) => Option::<invite_request::Model>::from_query_result(&row, "r_")?,
            None => None,
        },
        existing: existing.map(|user| (user, member_of_account)),
    }))
}

/// The rows' inserts as one statement: on PostgreSQL each but the last in a `WITH`; on
/// SQLite none (see [`write_rows`]).
pub fn chained_inserts(
    backend: DatabaseBackend,
    mut inserts: Vec<InsertStatement>,
) -> Option<Statement> {
    let last = inserts.pop()?;
    if inserts.is_empty() {
        return Some(backend.build(&last));
    }
    let mut with = WithClause::new();
    for (n, insert) in inserts.into_iter().enumerate() {
        with.cte(
            CommonTableExpression::new()
                .query(insert)
                .table_name(Alias::new(format!("row{n}")))
                .to_owned(),
        );
    }
    Some(backend.build(&with.query(last)))
}

/// A row to insert, kept as its active model: its statement is built only when its shape's
/// SQL is not kept yet.
pub(super) trait NewRow: Send {
    /// Appends the values of its set columns, in its columns' order, and says its shape:
    /// its entity and which of its columns are set. `None` when a column past the 64th is
    /// set: such a shape is not told.
    fn collect(&self, values: &mut Vec<Value>) -> Option<(TypeId, u64)>;
    /// Its statement, built anew.
    fn insert(&self) -> InsertStatement;
}

impl<A> NewRow for A
where
    A: ActiveModelTrait + Clone + Send + 'static,
{
    fn collect(&self, values: &mut Vec<Value>) -> Option<(TypeId, u64)> {
        let mut set = 0u64;
        for (n, column) in <A::Entity as EntityTrait>::Column::iter().enumerate() {
            match self.get(column) {
                ActiveValue::Set(value) | ActiveValue::Unchanged(value) => {
                    set |= 1u64.checked_shl(u32::try_from(n).ok()?)?;
                    values.push(value);
                }
                ActiveValue::NotSet => {}
            }
        }
        Some((TypeId::of::<A>(), set))
    }

    fn insert(&self) -> InsertStatement {
        A::Entity::insert(self.clone()).into_query()
    }
}

/// Which rows a chained statement writes: each row's entity and set columns.
type Shape = Vec<(TypeId, u64)>;

/// The most shapes kept: an invitation writes 8; a caller whose rows' set columns varied
/// with their values would otherwise grow the list without end.
const MOST_SHAPES: usize = 32;

/// The SQL of the chained statements sent so far, by shape (an invitation has at most
/// eight). Building it from the active models took about a tenth of an InviteUser's work
/// (docs/benchmarks.md §6); only the values change from one invitation to the next.
static CHAINED: RwLock<Vec<(Shape, String)>> = RwLock::new(Vec::new());

/// The rows of one invitation, written in one statement on PostgreSQL.
#[derive(Default)]
pub(super) struct NewRows {
    rows: Vec<Box<dyn NewRow>>,
}

impl NewRows {
    pub fn push(&mut self, row: impl NewRow + 'static) {
        self.rows.push(Box::new(row));
    }

    fn inserts(&self) -> Vec<InsertStatement> {
        self.rows.iter().map(|row| row.insert()).collect()
    }

    /// The rows as one statement, as [`chained_inserts`] builds it: its SQL kept per shape
    /// once a fresh build has shown that the rows' own values are the statement's.
    pub fn chained(&self) -> Option<Statement> {
        let backend = DatabaseBackend::Postgres;
        let mut values = Vec::new();
        let shape: Option<Shape> = self
            .rows
            .iter()
            .map(|row| row.collect(&mut values))
            .collect();
        let Some(shape) = shape else {
            return chained_inserts(backend, self.inserts());
        };
        let kept = CHAINED
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|(kept, _)| *kept == shape)
            .map(|(_, sql)| sql.clone());
        if let Some(sql) = kept {
            let statement = Statement {
                sql,
                values: Some(Values(values)),
                db_backend: backend,
            };
            debug_assert_eq!(
                Some(&statement),
                chained_inserts(backend, self.inserts()).as_ref(),
                "the kept SQL and values are a fresh build's"
            );
            return Some(statement);
        }
        let statement = chained_inserts(backend, self.inserts())?;
        if statement.values.as_ref().map(|built| &built.0) == Some(&values) {
            let mut chained = CHAINED.write().unwrap_or_else(PoisonError::into_inner);
            if chained.len() < MOST_SHAPES && !chained.iter().any(|(kept, _)| *kept == shape) {
                chained.push((shape, statement.sql.clone()));
            }
        }
        Some(statement)
    }
}

/// Writes the rows, in one statement where the database allows it.
pub(super) async fn write_rows(db: &impl ConnectionTrait, rows: NewRows) -> Result<(), DbErr> {
    match db.get_database_backend() {
        DatabaseBackend::Postgres => {
            if let Some(statement) = rows.chained() {
                db.execute_raw(statement).await?;
            }
        }
        _ => {
            for insert in &rows.inserts() {
                db.execute(insert).await?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::readers::tests::{script_statements, with_values};
    use chrono::Utc;

    #[test]
    fn the_pgbench_script_of_invite_user_reads_the_facts_the_service_reads() {
        let hash = SecretHash::of("umk_bench");
        let inviter = Inviter::ApiToken {
            hash: &hash,
            request_id: "",
            now: Utc::now(),
        };
        let email = Email::parse("ada@example.com").unwrap();
        let statement = invite_facts_statement(
            DatabaseBackend::Postgres,
            Uuid::nil(),
            &email,
            None,
            &inviter,
        );
        let expected = with_values(
            &statement.sql,
            &[
                ":token_hash",
                "now()",
                "'active'",
                "'bench' || :n::text || '@invite.example'",
                ":account_id",
            ],
        );
        let script = script_statements(include_str!("../../benches/pgbench/invite_user.sql"));
        assert!(script.contains(&expected), "{expected}");
    }

    /// The facts come from templates; they must be exactly what a fresh build sends, for
    /// every shape and any arguments.
    #[test]
    fn the_facts_template_sends_what_a_fresh_build_sends_for_any_arguments() {
        assert!(STAND_IN_EMAIL.is_some(), "the stand-in is an email");
        for n in 0..40 {
            let email = Email::parse(&format!("person{n}.{}@example.com", Uuid::new_v4())).unwrap();
            let request = InviteRequestId {
                request_id: Uuid::new_v4().to_string(),
                request_hash: "h".into(),
            };
            let now = Utc::now() + chrono::TimeDelta::microseconds(n * 7_919);
            let token = Credential {
                token_id: Uuid::new_v4(),
                account_id: Uuid::new_v4(),
                issuer_id: Uuid::new_v4(),
                role: Role::Engineers,
                expires_at: Some(now),
                last_used_at: None,
            };
            let actings = [
                Acting::ApiToken(token),
                Acting::Jwt {
                    jti: Some("j".into()),
                },
                Acting::Operator,
            ];
            let hash = SecretHash::of(&Uuid::new_v4().to_string());
            let inviters = actings
                .into_iter()
                .map(|acting| Inviter::Actor(Actor::new(Uuid::new_v4(), acting, "request", now)))
                .chain([Inviter::ApiToken {
                    hash: &hash,
                    request_id: "request",
                    now,
                }]);
            for inviter in inviters {
                for backend in [DatabaseBackend::Postgres, DatabaseBackend::Sqlite] {
                    for request in [None, Some(&request)] {
                        let account = Uuid::new_v4();
                        assert_eq!(
                            invite_facts_statement(backend, account, &email, request, &inviter),
                            backend.build(&facts_query(account, &email, request, &inviter)),
                        );
                    }
                }
            }
        }
    }

    /// Rows of every shape an invitation writes (and a user row with a column left unset),
    /// with random values.
    fn random_rows(user: Option<bool>, email: bool, request: bool) -> NewRows {
        use crate::store::entity::{invitation, outbox};
        use sea_orm::{ActiveValue::NotSet, IntoActiveModel};
        let now = Utc::now() + chrono::TimeDelta::microseconds(rand::random_range(0..1_000_000));
        let text = || Uuid::new_v4().to_string();
        let mut rows = NewRows::default();
        if let Some(password_set) = user {
            let mut row = user::Model {
                id: Uuid::new_v4(),
                email: text(),
                name: text(),
                name_lower: text(),
                language: text(),
                password_hash: rand::random::<bool>().then(text),
                activated: rand::random(),
                two_factor_enabled: rand::random(),
                created_at: now,
            }
            .into_active_model()
            .reset_all();
            if !password_set {
                row.password_hash = NotSet;
            }
            rows.push(row);
        }
        rows.push(
            membership::Model {
                id: Uuid::new_v4(),
                account_id: Uuid::new_v4(),
                user_id: Uuid::new_v4(),
                role: rand::random_range(0..6),
                cloud_access: text(),
                status: text(),
                invited_by: rand::random::<bool>().then(Uuid::new_v4),
                invited_at: now,
                invitation_expires_at: Some(now),
                accepted_at: None,
                invited_name: text(),
                invited_name_lower: text(),
                invited_language: text(),
                created_at: now,
            }
            .into_active_model()
            .reset_all(),
        );
        rows.push(
            invitation::Model {
                id: Uuid::new_v4(),
                membership_id: Uuid::new_v4(),
                secret_hash: text(),
                kind: text(),
                created_at: now,
                expires_at: now,
                consumed_at: None,
            }
            .into_active_model()
            .reset_all(),
        );
        if email {
            rows.push(
                outbox::Model {
                    id: Uuid::new_v4(),
                    kind: text(),
                    invitation_id: Some(Uuid::new_v4()),
                    payload: text(),
                    attempts: 0,
                    next_attempt_at: now,
                    last_error: None,
                    created_at: now,
                    sent_at: None,
                    dead_at: None,
                    lease_id: None,
                    last_attempt_at: None,
                    trace_context: rand::random::<bool>().then(text),
                }
                .into_active_model()
                .reset_all(),
            );
        }
        if request {
            rows.push(
                invite_request::Model {
                    caller_id: Uuid::new_v4(),
                    request_id: text(),
                    request_hash: text(),
                    account_id: Uuid::new_v4(),
                    user_id: Uuid::new_v4(),
                    created_at: now,
                }
                .into_active_model()
                .reset_all(),
            );
        }
        rows
    }

    /// The chained statement's SQL is kept per shape; what it sends must be exactly what a
    /// fresh build sends, for every shape and any values, and the SQL must be kept.
    #[test]
    fn the_chained_rows_send_what_a_fresh_build_sends_and_their_sql_is_kept() {
        for _ in 0..20 {
            for user in [None, Some(true), Some(false)] {
                for email in [false, true] {
                    for request in [false, true] {
                        let rows = random_rows(user, email, request);
                        let fresh = chained_inserts(DatabaseBackend::Postgres, rows.inserts());
                        assert_eq!(rows.chained(), fresh);
                        let mut values = Vec::new();
                        let shape: Shape = rows
                            .rows
                            .iter()
                            .map(|row| row.collect(&mut values).unwrap())
                            .collect();
                        let chained = CHAINED.read().unwrap();
                        assert!(chained.iter().any(|(kept, _)| *kept == shape), "{shape:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn one_insert_is_sent_alone_and_several_are_chained() {
        let insert = |table: &str| {
            Query::insert()
                .into_table(Alias::new(table))
                .columns([Alias::new("id")])
                .values_panic([Uuid::nil().into()])
                .to_owned()
        };
        let one = chained_inserts(DatabaseBackend::Postgres, vec![insert("a")]).unwrap();
        assert!(one.sql.starts_with("INSERT"));
        let three = chained_inserts(
            DatabaseBackend::Postgres,
            vec![insert("a"), insert("b"), insert("c")],
        )
        .unwrap();
        assert!(three.sql.starts_with("WITH"), "{}", three.sql);
        assert_eq!(three.sql.matches("INSERT INTO").count(), 3);
        assert!(chained_inserts(DatabaseBackend::Postgres, Vec::new()).is_none());
    }
}
