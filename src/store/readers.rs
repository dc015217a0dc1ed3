//! Reads that learn who calls and what they ask about in one statement: the caller's API
//! token (looked up by its secret's hash, live or not at all), their role as an active
//! member of the account, and the member asked about with their invitation email's delivery.
//! The service decides from these facts (`service::caller`), exactly as it would from
//! separate lookups; the statement only saves the round trips.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use sea_orm::{
    ConnectionTrait, DatabaseBackend, EntityTrait, FromQueryResult, IdenStatic, Iterable,
    QueryResult, Statement, TryGetable, Value,
    sea_query::{
        Alias, Condition, Expr, ExprTrait, IntoIden, JoinType, NullOrdering, Order, Query,
        SelectStatement,
    },
};
use uuid::Uuid;

use super::entity::{api_token, invitation, membership, outbox, user};
use super::rows::{self, ACTIVE, INVITED};
use super::template::{Template, Templates, stand_in_id, stand_in_time};
use super::{Error, Store};
use crate::domain::{Credential, InvitationDelivery, Member, Role, SecretHash};

/// Who a read is for.
#[derive(Clone, Copy, Debug)]
pub enum Reader<'a> {
    /// An API token's secret, not looked up yet.
    ApiToken(&'a SecretHash),
    /// A user whose credential was checked when the call began.
    User(Uuid),
}

/// What the statement of a read found.
#[derive(Debug)]
pub struct ReadFacts<T> {
    /// The presented API token, if it is neither deleted nor expired; `None` for a
    /// [`Reader::User`].
    pub token: Option<Credential>,
    /// The caller's role as an active member of the account, not yet capped by a token's.
    /// An API token of another account finds none.
    pub member_role: Option<Role>,
    /// What the read asked for, looked up only for a member of the account.
    pub found: Option<T>,
}

const TOKEN: &str = "t";
const CALLER: &str = "cm";
const MEMBERSHIP: &str = "m";
const USER: &str = "u";
const INVITATION: &str = "i";
const OUTBOX: &str = "o";
const CALLER_ROLE: &str = "caller_role";

fn table(alias: &'static str) -> Alias {
    Alias::new(alias)
}

fn col(alias: &'static str, column: impl IntoIden) -> Expr {
    Expr::col((table(alias), column))
}

/// Selects every column of the table under `alias`, named `<alias>_<column>`.
fn select_all<C: Iterable + IdenStatic + IntoIden>(
    query: &mut SelectStatement,
    alias: &'static str,
) {
    for column in C::iter() {
        let name = format!("{alias}_{}", column.as_str());
        query.expr_as(col(alias, column), Alias::new(name));
    }
}

/// The caller's token (for a [`Reader::ApiToken`]) and role in the account: one row when
/// the token is live or the user is an active member, none otherwise.
fn caller_query(reader: Reader<'_>, account_id: Uuid, now: DateTime<Utc>) -> SelectStatement {
    let mut query = Query::select();
    match reader {
        Reader::ApiToken(hash) => {
            query.from_as(api_token::Entity, table(TOKEN));
            select_all::<api_token::Column>(&mut query, TOKEN);
            query
                .join_as(
                    JoinType::LeftJoin,
                    membership::Entity,
                    table(CALLER),
                    Condition::all()
                        .add(col(CALLER, membership::Column::AccountId).eq(account_id))
                        .add(
                            col(CALLER, membership::Column::UserId)
                                .equals((table(TOKEN), api_token::Column::IssuerId)),
                        )
                        .add(col(CALLER, membership::Column::Status).eq(ACTIVE))
                        .add(col(TOKEN, api_token::Column::AccountId).eq(account_id)),
                )
                .and_where(col(TOKEN, api_token::Column::SecretHash).eq(hash.as_str()))
                .and_where(col(TOKEN, api_token::Column::DeletedAt).is_null())
                .cond_where(
                    Condition::any()
                        .add(col(TOKEN, api_token::Column::ExpiresAt).is_null())
                        .add(col(TOKEN, api_token::Column::ExpiresAt).gt(now)),
                );
        }
        Reader::User(user_id) => {
            query
                .from_as(membership::Entity, table(CALLER))
                .and_where(col(CALLER, membership::Column::AccountId).eq(account_id))
                .and_where(col(CALLER, membership::Column::UserId).eq(user_id))
                .and_where(col(CALLER, membership::Column::Status).eq(ACTIVE));
        }
    }
    query.expr_as(
        col(CALLER, membership::Column::Role),
        Alias::new(CALLER_ROLE),
    );
    query
}

/// As [`caller_query`], with the member asked about and, while they are pending, their
/// invitation's newest email: joined only when the caller is a member.
fn member_query(
    reader: Reader<'_>,
    account_id: Uuid,
    user_id: Uuid,
    now: DateTime<Utc>,
) -> SelectStatement {
    let mut query = caller_query(reader, account_id, now);
    select_all::<membership::Column>(&mut query, MEMBERSHIP);
    select_all::<user::Column>(&mut query, USER);
    for column in [
        outbox::Column::Id,
        outbox::Column::Attempts,
        outbox::Column::LastError,
        outbox::Column::LastAttemptAt,
        outbox::Column::SentAt,
        outbox::Column::DeadAt,
    ] {
        let name = format!("{OUTBOX}_{}", column.as_str());
        query.expr_as(col(OUTBOX, column), Alias::new(name));
    }
    query
        .join_as(
            JoinType::LeftJoin,
            membership::Entity,
            table(MEMBERSHIP),
            Condition::all()
                .add(col(MEMBERSHIP, membership::Column::AccountId).eq(account_id))
                .add(col(MEMBERSHIP, membership::Column::UserId).eq(user_id))
                .add(col(CALLER, membership::Column::Role).is_not_null()),
        )
        .join_as(
            JoinType::LeftJoin,
            user::Entity,
            table(USER),
            col(USER, user::Column::Id).equals((table(MEMBERSHIP), membership::Column::UserId)),
        )
        .join_as(
            JoinType::LeftJoin,
            invitation::Entity,
            table(INVITATION),
            Condition::all()
                .add(
                    col(INVITATION, invitation::Column::MembershipId)
                        .equals((table(MEMBERSHIP), membership::Column::Id)),
                )
                .add(col(MEMBERSHIP, membership::Column::Status).eq(INVITED)),
        )
        .join_as(
            JoinType::LeftJoin,
            outbox::Entity,
            table(OUTBOX),
            col(OUTBOX, outbox::Column::InvitationId)
                .equals((table(INVITATION), invitation::Column::Id)),
        )
        // One email per invitation; should there be more, the newest speaks for it.
        .order_by_expr_with_nulls(
            col(OUTBOX, outbox::Column::CreatedAt),
            Order::Desc,
            NullOrdering::Last,
        )
        .limit(1);
    query
}

// Stand-ins for the arguments of the templates below: values no statement binds otherwise.
const STAND_IN_ACCOUNT: Uuid = stand_in_id(1);
const STAND_IN_USER: Uuid = stand_in_id(2);
const STAND_IN_CALLER: Uuid = stand_in_id(3);
static STAND_IN_HASH: LazyLock<SecretHash> = LazyLock::new(|| SecretHash::of("stand-in"));

/// A read's arguments in the order of the stand-ins: the account, the member asked about,
/// the reader (token hash or user id), the time.
fn arguments(
    reader: Reader<'_>,
    account_id: Uuid,
    user_id: Uuid,
    now: DateTime<Utc>,
) -> [Value; 4] {
    let reader = match reader {
        Reader::ApiToken(hash) => Value::from(hash.as_str()),
        Reader::User(caller) => Value::from(caller),
    };
    [account_id.into(), user_id.into(), reader, now.into()]
}

/// The templates of one read: by API token, and by a user's id.
struct ReadTemplates {
    by_token: Templates,
    by_user: Templates,
}

impl ReadTemplates {
    const fn new() -> Self {
        Self {
            by_token: Templates::new(),
            by_user: Templates::new(),
        }
    }

    /// `query`'s statement for these arguments: its SQL built once per backend and kind of
    /// reader, with stand-ins, then the call's values bound in their places.
    fn statement(
        &self,
        backend: DatabaseBackend,
        reader: Reader<'_>,
        query: impl FnOnce(Reader<'_>, Uuid, Uuid, DateTime<Utc>) -> SelectStatement,
        arguments: &[Value; 4],
    ) -> Statement {
        let (templates, stand_in) = match reader {
            Reader::ApiToken(_) => (&self.by_token, Reader::ApiToken(&STAND_IN_HASH)),
            Reader::User(_) => (&self.by_user, Reader::User(STAND_IN_CALLER)),
        };
        let now = stand_in_time();
        templates
            .get(backend, || {
                let stand_ins = self::arguments(stand_in, STAND_IN_ACCOUNT, STAND_IN_USER, now);
                let query = query(stand_in, STAND_IN_ACCOUNT, STAND_IN_USER, now);
                Template::new(backend, &stand_ins, &query)
            })
            .statement(arguments)
    }
}

static MEMBER_STATEMENTS: ReadTemplates = ReadTemplates::new();
static CALLER_STATEMENTS: ReadTemplates = ReadTemplates::new();

/// The statement [`Store::member_for`] sends (also for `EXPLAIN` and the pgbench scripts).
pub fn member_statement(
    backend: DatabaseBackend,
    reader: Reader<'_>,
    account_id: Uuid,
    user_id: Uuid,
    now: DateTime<Utc>,
) -> Statement {
    MEMBER_STATEMENTS.statement(
        backend,
        reader,
        member_query,
        &arguments(reader, account_id, user_id, now),
    )
}

/// The statement [`Store::caller_facts`] sends.
pub fn caller_statement(
    backend: DatabaseBackend,
    reader: Reader<'_>,
    account_id: Uuid,
    now: DateTime<Utc>,
) -> Statement {
    CALLER_STATEMENTS.statement(
        backend,
        reader,
        |reader, account_id, _, now| caller_query(reader, account_id, now),
        &arguments(reader, account_id, Uuid::nil(), now),
    )
}

/// A row's columns in the order the statement selects them ([`select_all`] follows each
/// entity's `Column` order, which is its `Model`'s field order). Reading by position costs a
/// fraction of looking every column up by a prefixed name. Debug builds also decode each
/// row by name and compare (`debug_assert!`), so every test that reads checks the order.
struct Columns<'r> {
    row: &'r QueryResult,
    next: usize,
}

impl<'r> Columns<'r> {
    fn new(row: &'r QueryResult) -> Self {
        Self { row, next: 0 }
    }

    fn get<T: TryGetable>(&mut self) -> Result<T, Error> {
        let value = self.row.try_get_by_index(self.next)?;
        self.next += 1;
        Ok(value)
    }

    /// A left-joined table of `E`'s columns, first its key: `None` when the key is NULL.
    fn joined<E: EntityTrait, T>(
        &mut self,
        read: impl FnOnce(Uuid, &mut Self) -> Result<T, Error>,
    ) -> Result<Option<T>, Error> {
        let start = self.next;
        let found = match self.get::<Option<Uuid>>()? {
            Some(id) => Some(read(id, self)?),
            None => None,
        };
        self.next = start + E::Column::iter().count();
        Ok(found)
    }
}

fn token_model(id: Uuid, columns: &mut Columns<'_>) -> Result<api_token::Model, Error> {
    Ok(api_token::Model {
        id,
        account_id: columns.get()?,
        issuer_id: columns.get()?,
        name: columns.get()?,
        description: columns.get()?,
        role: columns.get()?,
        secret_hash: columns.get()?,
        expires_at: columns.get()?,
        created_at: columns.get()?,
        last_used_at: columns.get()?,
        deleted_at: columns.get()?,
    })
}

fn membership_model(id: Uuid, columns: &mut Columns<'_>) -> Result<membership::Model, Error> {
    Ok(membership::Model {
        id,
        account_id: columns.get()?,
        user_id: columns.get()?,
        role: columns.get()?,
        cloud_access: columns.get()?,
        status: columns.get()?,
        invited_by: columns.get()?,
        invited_at: columns.get()?,
        invitation_expires_at: columns.get()?,
        accepted_at: columns.get()?,
        invited_name: columns.get()?,
        invited_name_lower: columns.get()?,
        invited_language: columns.get()?,
        created_at: columns.get()?,
    })
}

fn user_model(id: Uuid, columns: &mut Columns<'_>) -> Result<user::Model, Error> {
    Ok(user::Model {
        id,
        email: columns.get()?,
        name: columns.get()?,
        name_lower: columns.get()?,
        language: columns.get()?,
        password_hash: columns.get()?,
        activated: columns.get()?,
        two_factor_enabled: columns.get()?,
        created_at: columns.get()?,
    })
}

/// The same table's columns read by their prefixed names: what debug builds compare with.
fn by_name<M: FromQueryResult + PartialEq>(
    row: &QueryResult,
    alias: &str,
    read: &Option<M>,
) -> bool {
    Option::<M>::from_query_result(row, &format!("{alias}_")).is_ok_and(|named| named == *read)
}

/// The token and the caller's role out of the first columns of a row of [`caller_query`].
fn caller_facts(reader: Reader<'_>, columns: &mut Columns<'_>) -> Result<ReadFacts<()>, Error> {
    let token = match reader {
        Reader::ApiToken(_) => {
            let token = columns.joined::<api_token::Entity, _>(token_model)?;
            debug_assert!(
                by_name(columns.row, TOKEN, &token),
                "token columns out of order"
            );
            token.map(|token| rows::credential(&token)).transpose()?
        }
        Reader::User(_) => None,
    };
    let member_role = columns.get::<Option<i32>>()?.map(rows::role).transpose()?;
    Ok(ReadFacts {
        token,
        member_role,
        found: None,
    })
}

fn delivery(row: &QueryResult) -> Result<Option<InvitationDelivery>, Error> {
    let prefixed = |column: outbox::Column| format!("{OUTBOX}_{}", column.as_str());
    if row
        .try_get::<Option<Uuid>>("", &prefixed(outbox::Column::Id))?
        .is_none()
    {
        return Ok(None);
    }
    let sent_at: Option<DateTime<Utc>> = row.try_get("", &prefixed(outbox::Column::SentAt))?;
    let dead_at: Option<DateTime<Utc>> = row.try_get("", &prefixed(outbox::Column::DeadAt))?;
    let attempts: i32 = row.try_get("", &prefixed(outbox::Column::Attempts))?;
    Ok(Some(InvitationDelivery {
        state: InvitationDelivery::state_of(sent_at.is_some(), dead_at.is_some()),
        attempts: u32::try_from(attempts).unwrap_or_default(),
        last_error: row.try_get("", &prefixed(outbox::Column::LastError))?,
        last_attempt_at: row.try_get("", &prefixed(outbox::Column::LastAttemptAt))?,
        sent_at,
    }))
}

impl Store {
    /// The caller's token and role in the account, in one statement.
    #[tracing::instrument(skip_all, fields(%account_id), err(level = "info"))]
    pub async fn caller_facts(
        &self,
        reader: Reader<'_>,
        account_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<ReadFacts<()>, Error> {
        let statement = caller_statement(self.backend(), reader, account_id, now);
        match self.reader.query_one_raw(statement).await? {
            Some(row) => caller_facts(reader, &mut Columns::new(&row)),
            None => Ok(ReadFacts {
                token: None,
                member_role: None,
                found: None,
            }),
        }
    }

    /// The caller's token and role in the account, and the member asked about as the
    /// account sees them (R17), in one statement.
    #[tracing::instrument(skip_all, fields(%account_id, %user_id), err(level = "info"))]
    pub async fn member_for(
        &self,
        reader: Reader<'_>,
        account_id: Uuid,
        user_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<ReadFacts<Member>, Error> {
        let statement = member_statement(self.backend(), reader, account_id, user_id, now);
        let Some(row) = self.reader.query_one_raw(statement).await? else {
            return Ok(ReadFacts {
                token: None,
                member_role: None,
                found: None,
            });
        };
        let mut columns = Columns::new(&row);
        let facts = caller_facts(reader, &mut columns)?;
        let membership = columns.joined::<membership::Entity, _>(membership_model)?;
        let user = columns.joined::<user::Entity, _>(user_model)?;
        debug_assert!(
            by_name(&row, MEMBERSHIP, &membership),
            "membership columns out of order"
        );
        debug_assert!(by_name(&row, USER, &user), "user columns out of order");
        let found = match (membership, user) {
            (Some(membership), Some(user)) => {
                let pending = membership.status == INVITED;
                let mut member = rows::member(membership, user, now)?;
                if pending {
                    member.invitation_delivery = delivery(&row)?;
                }
                Some(member)
            }
            _ => None,
        };
        Ok(ReadFacts {
            token: facts.token,
            member_role: facts.member_role,
            found,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The statement with its placeholders replaced, last first (`$10` before `$1`).
    pub(crate) fn with_values(sql: &str, values: &[&str]) -> String {
        let mut sql = sql.to_string();
        for (n, value) in values.iter().enumerate().rev() {
            sql = sql.replace(&format!("${}", n + 1), value);
        }
        sql
    }

    /// The statements of a pgbench script, without its comments and meta-commands.
    pub(crate) fn script_statements(script: &str) -> Vec<String> {
        script
            .lines()
            .filter(|line| !line.starts_with("--") && !line.starts_with('\\') && !line.is_empty())
            .map(|line| line.trim_end_matches(';').to_string())
            .collect()
    }

    #[test]
    fn the_pgbench_script_of_get_user_sends_what_the_service_sends() {
        let hash = SecretHash::of("x");
        let statement = member_statement(
            DatabaseBackend::Postgres,
            Reader::ApiToken(&hash),
            Uuid::nil(),
            Uuid::nil(),
            Utc::now(),
        );
        let expected = with_values(
            &statement.sql,
            &[
                ":account_id",
                "'active'",
                ":account_id",
                ":account_id",
                ":user_id",
                "'invited'",
                ":token_hash",
                "now()",
                "1",
            ],
        );
        let script = script_statements(include_str!("../../benches/pgbench/get_user.sql"));
        assert_eq!(script, [expected]);
    }

    /// The statements on every call's path come from templates; they must be exactly what
    /// sea-query builds for the same arguments: they hold the tenant boundary.
    #[test]
    fn the_templates_send_what_a_fresh_build_sends_for_any_arguments() {
        use rand::Rng;
        let mut rng = rand::rng();
        for _ in 0..50 {
            let (account, user, caller) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
            let hash = SecretHash::of(&Uuid::new_v4().to_string());
            let now =
                DateTime::<Utc>::from_timestamp_micros(rng.random_range(0..4_000_000_000_000_000))
                    .unwrap();
            for backend in [DatabaseBackend::Postgres, DatabaseBackend::Sqlite] {
                for reader in [Reader::ApiToken(&hash), Reader::User(caller)] {
                    assert_eq!(
                        member_statement(backend, reader, account, user, now),
                        backend.build(&member_query(reader, account, user, now)),
                        "{backend:?} {reader:?}"
                    );
                    assert_eq!(
                        caller_statement(backend, reader, account, now),
                        backend.build(&caller_query(reader, account, now)),
                        "{backend:?} {reader:?}"
                    );
                }
            }
        }
        // Also when the arguments are the stand-ins themselves, or equal to each other.
        let reader = Reader::ApiToken(&STAND_IN_HASH);
        for (account, user) in [
            (STAND_IN_ACCOUNT, STAND_IN_USER),
            (STAND_IN_USER, STAND_IN_USER),
        ] {
            let now = stand_in_time();
            assert_eq!(
                member_statement(DatabaseBackend::Postgres, reader, account, user, now),
                DatabaseBackend::Postgres.build(&member_query(reader, account, user, now)),
            );
        }
    }

    #[test]
    fn a_user_reads_without_a_token_and_only_members_find_the_target() {
        let statement = member_statement(
            DatabaseBackend::Sqlite,
            Reader::User(Uuid::nil()),
            Uuid::nil(),
            Uuid::nil(),
            Utc::now(),
        );
        assert!(!statement.sql.contains("api_tokens"));
        assert!(statement.sql.contains(r#""cm"."role" IS NOT NULL"#));
    }
}
