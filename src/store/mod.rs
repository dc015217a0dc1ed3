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
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};
use uuid::Uuid;

/// Opens a pool on the database the URL names.
pub async fn connect(url: &str) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url);
    options
        .sqlx_logging(false)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(10));
    if url.starts_with("sqlite:") {
        // SQLite has one writer at a time: one connection serialises every transaction
        // instead of failing them with SQLITE_BUSY under load.
        options.max_connections(1).min_connections(1);
    } else {
        options.max_connections(20).min_connections(1);
    }
    Database::connect(options).await
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
