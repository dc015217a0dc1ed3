//! Code the benchmarks share.

use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};

/// Creates the PostgreSQL database the URL names, through the server's `postgres` database.
pub async fn ensure_postgres_database(url: &str) {
    let base = url.split('?').next().unwrap_or(url);
    let (server, name) = base.rsplit_once('/').expect("a database URL with a path");
    assert!(
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "the database name must be letters, digits and underscores"
    );
    let admin = Database::connect(format!("{server}/postgres"))
        .await
        .expect("connect to the `postgres` database");
    let exists = admin
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT 1 FROM pg_database WHERE datname = $1",
            [name.into()],
        ))
        .await
        .expect("look the database up")
        .is_some();
    if !exists {
        eprintln!("creating database {name}");
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
            .expect("create the database");
    }
    admin.close().await.ok();
}
