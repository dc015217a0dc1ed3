//! How the database runs the service's queries: the notifier's claim walks the partial index
//! of waiting emails in order instead of sorting the backlog, and PostgreSQL plans each
//! statement for its values.

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::{ConnectionTrait, DatabaseBackend, Statement, TransactionTrait};
use usermgmt::store;

use crate::helpers::fresh_database;

#[tokio::test]
async fn the_outbox_claim_reads_the_waiting_index_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let db = store::connect(&fresh_database(&dir).await).await.unwrap();
    store::migrate(&db).await.unwrap();
    let now: DateTime<Utc> = "2026-11-29T09:00:00Z".parse().unwrap();
    let backend = db.get_database_backend();
    let claim = store::outbox::claim_statement(backend, now, TimeDelta::minutes(2), 64);

    let txn = db.begin().await.unwrap();
    let plan = match backend {
        DatabaseBackend::Postgres => {
            // An empty table is cheapest to scan whole; ask what the planner does once
            // a scan of the table is the expensive choice, as it is with a backlog.
            txn.execute_unprepared("SET LOCAL enable_seqscan = off")
                .await
                .unwrap();
            explain(&txn, "EXPLAIN ", claim, 0).await
        }
        _ => explain(&txn, "EXPLAIN QUERY PLAN ", claim, 3).await,
    };
    txn.rollback().await.unwrap();

    assert!(plan.contains("ix_outbox_waiting"), "plan:\n{plan}");
    assert!(
        !plan.contains("Sort"),
        "no sort of the backlog; plan:\n{plan}"
    );
    assert!(
        !plan.contains("TEMP B-TREE"),
        "no sort of the backlog; plan:\n{plan}"
    );
}

/// The plan's lines, taken from the result column at `column`.
async fn explain(
    db: &impl ConnectionTrait,
    prefix: &str,
    statement: Statement,
    column: usize,
) -> String {
    let explain = Statement {
        sql: format!("{prefix}{}", statement.sql),
        ..statement
    };
    let rows = db.query_all_raw(explain).await.unwrap();
    rows.iter()
        .map(|row| row.try_get_by_index::<String>(column).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn postgres_connections_plan_each_statement_for_its_values() {
    let dir = tempfile::tempdir().unwrap();
    let db = store::connect(&fresh_database(&dir).await).await.unwrap();
    if db.get_database_backend() != DatabaseBackend::Postgres {
        return; // SQLite plans every statement afresh.
    }
    let show = Statement::from_string(DatabaseBackend::Postgres, "SHOW plan_cache_mode");
    let row = db.query_one_raw(show).await.unwrap().unwrap();
    let mode: String = row.try_get_by_index(0).unwrap();
    assert_eq!(mode, "force_custom_plan");
}
