//! Storage: SeaORM entities and the queries of each use case, one transaction per change.
//! Works on SQLite (the embedded default) and PostgreSQL (production).

pub mod accounts;
pub mod audit;
pub mod changes;
pub mod entity;
pub mod invitations;
pub mod members;
pub mod outbox;
pub mod tokens;

use std::time::Duration;

use chrono::{DateTime, Utc};
use migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::SqliteJournalMode;
use sea_orm::{
    ConnectOptions, Database, DatabaseConnection, DatabaseTransaction, DbErr,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use uuid::Uuid;

/// Opens a pool on the database the URL names.
pub async fn connect(url: &str) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url);
    options
        .sqlx_logging(false)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(10));
    if url.starts_with("sqlite:") {
        // SQLite has one writer at a time: one connection serialises this process's
        // transactions instead of failing them with SQLITE_BUSY under load. WAL lets
        // readers in other processes go on while one writes; the busy timeout makes a
        // second process on the same file wait its turn.
        options
            .max_connections(1)
            .min_connections(1)
            .map_sqlx_sqlite_opts(|sqlite| {
                sqlite
                    .journal_mode(SqliteJournalMode::Wal)
                    .busy_timeout(Duration::from_secs(10))
            });
    } else {
        // sqlx prepares each statement once per connection. After five executions
        // PostgreSQL may switch it to a generic plan that knows neither the account nor the
        // search pattern, and picks worse indexes for it; a custom plan costs a fraction of
        // a millisecond to make.
        options
            .max_connections(20)
            .min_connections(1)
            .map_sqlx_postgres_opts(|postgres| {
                postgres.options([("plan_cache_mode", "force_custom_plan")])
            });
    }
    Database::connect(options).await
}

/// Begins a transaction that will write.
///
/// On SQLite it starts with `BEGIN IMMEDIATE`: the write lock is taken up front, so a second
/// process on the same file waits for it (busy timeout) instead of failing when its
/// read-then-write transaction cannot upgrade. PostgreSQL ignores the mode.
pub async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..TransactionOptions::default()
    })
    .await
}

/// Applies every pending migration.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    Migrator::up(db, None).await
}

/// Whether the error is a broken unique constraint, which a concurrent writer can cause.
pub fn is_unique_violation(err: &DbErr) -> bool {
    matches!(
        err.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}

/// Who changes what, for the audit trail.
pub struct Actor<'a> {
    pub user_id: Uuid,
    pub request_id: &'a str,
    pub now: DateTime<Utc>,
}
