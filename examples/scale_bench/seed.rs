//! Seeds one account of N members through the tables (so that triggers fire), or finds the
//! account an earlier run seeded.

use std::time::Instant;

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection,
    DbBackend, EntityTrait, PaginatorTrait, QueryFilter, Statement, TransactionTrait, sqlx,
};
use uuid::Uuid;

use usermgmt::{
    domain::{ApiTokenSecret, CloudAccess, DisplayName, Email, Language, Role},
    store::{
        Store,
        entity::{account, api_token, membership, user},
    },
};

/// The benchmark's account, ready to be called.
pub struct Seeded {
    pub account_id: Uuid,
    pub admin_id: Uuid,
    /// Seconds the members' INSERTs (or COPY) and the ANALYZE took; `None` when reused.
    pub seconds: Option<f64>,
}

pub const ADMIN_EMAIL: &str = "scale-admin@example.com";

pub fn member_email(i: u32) -> String {
    format!("member{i}@example.com")
}

/// The mix of members: member `i`'s status, role and second factor.
struct Mix {
    invited: bool,
    expired: bool,
    role: Role,
    two_factor: bool,
}

impl Mix {
    /// 95 % active; every 20th invited, every other one of those with an expired link.
    /// Administrators every 50th, Engineers every 10th, the two Purge roles every 7th and
    /// 11th, Users otherwise. Every 4th active member has two-factor authentication.
    fn of(i: u32) -> Self {
        let invited = i.is_multiple_of(20);
        let role = match i {
            i if i.is_multiple_of(50) => Role::Administrators,
            i if i.is_multiple_of(10) => Role::Engineers,
            i if i.is_multiple_of(7) => Role::PurgeAndPrefetchApiWeb,
            i if i.is_multiple_of(11) => Role::PurgeAndPrefetchApi,
            _ => Role::Users,
        };
        Mix {
            invited,
            expired: i.is_multiple_of(40),
            role,
            two_factor: !invited && i.is_multiple_of(4),
        }
    }
}

pub fn account_name(members: u32) -> String {
    format!("Scale bench: {members} members")
}

/// The account of `members` members: reused when an earlier run seeded it, else created
/// and seeded in one transaction.
pub async fn prepare(db: &DatabaseConnection, members: u32, now: DateTime<Utc>) -> Seeded {
    let name = account_name(members);
    let existing = account::Entity::find()
        .filter(account::Column::Name.eq(name.as_str()))
        .one(db)
        .await
        .expect("look the account up");
    let (account_id, admin_id) = match existing {
        Some(existing) => {
            let count = membership::Entity::find()
                .filter(membership::Column::AccountId.eq(existing.id))
                .count(db)
                .await
                .expect("count the members");
            let admin = user::Entity::find()
                .filter(user::Column::Email.eq(ADMIN_EMAIL))
                .one(db)
                .await
                .expect("look the administrator up")
                .expect("the account has its administrator");
            // Earlier runs' InviteUser phases add members after the seeded ones.
            if count > u64::from(members) {
                eprintln!("reusing account {} ({count} memberships)", existing.id);
                return Seeded {
                    account_id: existing.id,
                    admin_id: admin.id,
                    seconds: None,
                };
            }
            assert_eq!(
                count, 1,
                "the account holds {count} memberships: use a fresh database"
            );
            (existing.id, admin.id)
        }
        None => {
            let created = Store::new(db.clone())
                .create_account(
                    &DisplayName::parse(&name).expect("a valid account name"),
                    &Email::parse(ADMIN_EMAIL).expect("a valid email"),
                    &DisplayName::parse("Scale Admin").expect("a valid name"),
                    now,
                )
                .await
                .expect("bootstrap the account");
            (created.account_id, created.user_id)
        }
    };
    let started = Instant::now();
    let rows = Rows {
        account_id,
        admin_id,
        now,
        ids: (0..members)
            .map(|_| (Uuid::now_v7(), Uuid::now_v7()))
            .collect(),
    };
    match db.get_database_backend() {
        DbBackend::Postgres => copy_postgres(db, &rows, members).await,
        _ => insert_many(db, &rows, members).await,
    }
    eprintln!(
        "inserted {members} members in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    analyze(db).await;
    let seconds = started.elapsed().as_secs_f64();
    eprintln!("seeded and analyzed in {seconds:.1} s");
    Seeded {
        account_id,
        admin_id,
        seconds: Some(seconds),
    }
}

/// Fresh planner statistics (and on PostgreSQL a vacuumed visibility map, as autovacuum
/// leaves a table that is not being bulk-loaded).
pub async fn analyze(db: &DatabaseConnection) {
    let statement = match db.get_database_backend() {
        DbBackend::Postgres => "VACUUM (ANALYZE)",
        _ => "ANALYZE",
    };
    db.execute_unprepared(statement)
        .await
        .expect("analyze the tables");
}

struct Rows {
    account_id: Uuid,
    admin_id: Uuid,
    now: DateTime<Utc>,
    /// Member `i`'s user and membership ids at `i - 1`.
    ids: Vec<(Uuid, Uuid)>,
}

/// Member `i`'s user and membership. Membership ids are UUIDv7 made in order, after the
/// administrator's, so member `i` is at list position `i + 1`; the same `i` gives the
/// same rows.
fn member(rows: &Rows, i: u32) -> (user::Model, membership::Model) {
    let mix = Mix::of(i);
    let name = format!("Member {i}");
    let (user_id, membership_id) = rows.ids[(i - 1) as usize];
    let user = user::Model {
        id: user_id,
        email: member_email(i),
        name_lower: name.to_lowercase(),
        name: name.clone(),
        language: Language::En.code().to_string(),
        password_hash: None,
        activated: !mix.invited,
        two_factor_enabled: mix.two_factor,
        created_at: rows.now - TimeDelta::days(3),
    };
    let invited_at = rows.now - TimeDelta::days(2);
    let expires_at = if mix.expired {
        rows.now - TimeDelta::days(1)
    } else {
        rows.now + TimeDelta::days(5)
    };
    let membership = membership::Model {
        id: membership_id,
        account_id: rows.account_id,
        user_id: user.id,
        role: mix.role.id(),
        cloud_access: CloudAccess::default_for(mix.role).to_text(),
        status: if mix.invited { "invited" } else { "active" }.to_string(),
        invited_by: Some(rows.admin_id),
        invited_at,
        invitation_expires_at: mix.invited.then_some(expires_at),
        accepted_at: (!mix.invited).then_some(invited_at + TimeDelta::hours(1)),
        invited_name_lower: name.to_lowercase(),
        invited_name: name,
        invited_language: Language::En.code().to_string(),
        created_at: invited_at,
    };
    (user, membership)
}

/// SQLite: multi-row INSERTs of as many rows as its 32,766 bound values allow, all in one
/// transaction.
async fn insert_many(db: &DatabaseConnection, rows: &Rows, members: u32) {
    const BATCH: u32 = 2000;
    let tx = db.begin().await.expect("begin the seeding transaction");
    let mut first = 1;
    while first <= members {
        let last = members.min(first + BATCH - 1);
        let (users, memberships): (Vec<_>, Vec<_>) = (first..=last)
            .map(|i| member(rows, i))
            .map(|(u, m)| {
                (
                    user::ActiveModel::from(u).reset_all(),
                    membership::ActiveModel::from(m).reset_all(),
                )
            })
            .unzip();
        user::Entity::insert_many(users)
            .exec_without_returning(&tx)
            .await
            .expect("insert users");
        membership::Entity::insert_many(memberships)
            .exec_without_returning(&tx)
            .await
            .expect("insert memberships");
        if last % 100_000 < BATCH || last == members {
            eprintln!("inserted {last}/{members}");
        }
        first = last + 1;
    }
    tx.commit().await.expect("commit the seeding transaction");
}

/// PostgreSQL: COPY into `users`, then into `memberships`, in one transaction.
async fn copy_postgres(db: &DatabaseConnection, rows: &Rows, members: u32) {
    const CHUNK: u32 = 20_000;
    let pool = db.get_postgres_connection_pool();
    let mut conn = pool.acquire().await.expect("a connection");
    sqlx::query("BEGIN")
        .execute(&mut *conn)
        .await
        .expect("begin");
    for (table, columns) in [
        (
            "users",
            "id, email, name, name_lower, language, password_hash, activated, \
             two_factor_enabled, created_at",
        ),
        (
            "memberships",
            "id, account_id, user_id, role, cloud_access, status, invited_by, invited_at, \
             invitation_expires_at, accepted_at, invited_name, invited_name_lower, \
             invited_language, created_at",
        ),
    ] {
        let mut copy = conn
            .copy_in_raw(&format!("COPY {table} ({columns}) FROM STDIN"))
            .await
            .expect("start COPY");
        let mut first = 1;
        while first <= members {
            let last = members.min(first + CHUNK - 1);
            let mut text = String::with_capacity(CHUNK as usize * 200);
            for i in first..=last {
                let (u, m) = member(rows, i);
                if table == "users" {
                    push_user(&mut text, &u);
                } else {
                    push_membership(&mut text, &m);
                }
            }
            copy.send(text.into_bytes()).await.expect("send COPY data");
            if last % 200_000 < CHUNK || last == members {
                eprintln!("copied {last}/{members} {table}");
            }
            first = last + 1;
        }
        copy.finish().await.expect("finish COPY");
    }
    sqlx::query("COMMIT")
        .execute(&mut *conn)
        .await
        .expect("commit");
}

/// One line of COPY's text format.
fn push_line(text: &mut String, fields: &[Option<String>]) {
    for (n, field) in fields.iter().enumerate() {
        if n > 0 {
            text.push('\t');
        }
        match field {
            None => text.push_str("\\N"),
            Some(value) => {
                for c in value.chars() {
                    match c {
                        '\\' => text.push_str("\\\\"),
                        '\t' => text.push_str("\\t"),
                        '\n' => text.push_str("\\n"),
                        c => text.push(c),
                    }
                }
            }
        }
    }
    text.push('\n');
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string()
}

fn push_user(text: &mut String, u: &user::Model) {
    push_line(
        text,
        &[
            Some(u.id.to_string()),
            Some(u.email.clone()),
            Some(u.name.clone()),
            Some(u.name_lower.clone()),
            Some(u.language.clone()),
            u.password_hash.clone(),
            Some(u.activated.to_string()),
            Some(u.two_factor_enabled.to_string()),
            Some(timestamp(u.created_at)),
        ],
    );
}

fn push_membership(text: &mut String, m: &membership::Model) {
    push_line(
        text,
        &[
            Some(m.id.to_string()),
            Some(m.account_id.to_string()),
            Some(m.user_id.to_string()),
            Some(m.role.to_string()),
            Some(m.cloud_access.clone()),
            Some(m.status.clone()),
            m.invited_by.map(|id| id.to_string()),
            Some(timestamp(m.invited_at)),
            m.invitation_expires_at.map(timestamp),
            m.accepted_at.map(timestamp),
            Some(m.invited_name.clone()),
            Some(m.invited_name_lower.clone()),
            Some(m.invited_language.clone()),
            Some(timestamp(m.created_at)),
        ],
    );
}

/// An API token of the administrator: its id, its secret and the hash stored for it.
pub struct Issued {
    pub id: Uuid,
    pub secret: String,
    pub hash: String,
}

/// `count` fresh administrator API tokens of the account's administrator.
pub async fn issue_tokens(
    db: &DatabaseConnection,
    seeded: &Seeded,
    count: usize,
    now: DateTime<Utc>,
) -> Vec<Issued> {
    let mut tokens = Vec::with_capacity(count);
    for n in 0..count {
        let secret = ApiTokenSecret::generate();
        let id = Uuid::now_v7();
        api_token::ActiveModel {
            id: Set(id),
            account_id: Set(seeded.account_id),
            issuer_id: Set(seeded.admin_id),
            name: Set(format!("scale_bench {n}")),
            description: Set(String::new()),
            role: Set(Role::Administrators.id()),
            secret_hash: Set(secret.hash().into_string()),
            expires_at: Set(None),
            created_at: Set(now),
            last_used_at: Set(None),
            deleted_at: Set(None),
        }
        .insert(db)
        .await
        .expect("issue an API token");
        tokens.push(Issued {
            id,
            secret: secret.expose().to_string(),
            hash: secret.hash().into_string(),
        });
    }
    tokens
}

/// The id of member `i`'s membership and user.
pub async fn member_ids(db: &DatabaseConnection, account_id: Uuid, i: u32) -> (Uuid, Uuid) {
    let user = user::Entity::find()
        .filter(user::Column::Email.eq(member_email(i)))
        .one(db)
        .await
        .expect("look the member up")
        .expect("the member exists");
    let membership = membership::Entity::find()
        .filter(membership::Column::AccountId.eq(account_id))
        .filter(membership::Column::UserId.eq(user.id))
        .one(db)
        .await
        .expect("look the membership up")
        .expect("the membership exists");
    (membership.id, user.id)
}

/// The database's version, for the report.
pub async fn version(db: &DatabaseConnection) -> String {
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => "SELECT version() AS v",
        _ => "SELECT 'SQLite ' || sqlite_version() AS v",
    };
    db.query_one_raw(Statement::from_string(backend, sql))
        .await
        .ok()
        .flatten()
        .and_then(|row| row.try_get::<String>("", "v").ok())
        .unwrap_or_else(|| "unknown".into())
}
