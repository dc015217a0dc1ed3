//! How the database runs the service's queries: the notifier's claim walks the partial index
//! of waiting emails in order instead of sorting the backlog; search reads the trigram
//! indexes (on PostgreSQL of users, and of pending members' invited names; on SQLite its
//! FTS5 search table) and, for a short text, prefix indexes; the counted filters' totals
//! read the counters alone; on PostgreSQL each statement is planned for its values.

use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, Statement, TransactionTrait};
use usermgmt::domain::{MemberStatus, Role};
use usermgmt::store::{self, MemberFilter, Store};

use crate::helpers::{create_account, fresh_database, fresh_postgres_database};

#[tokio::test]
async fn the_outbox_claim_reads_the_waiting_index_in_order() {
    let database = fresh_database().await;
    let db = store::connect(database.url()).await.unwrap();
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

// SQLite's search table: see below.
#[tokio::test]
#[ignore = "needs PostgreSQL"]
async fn postgres_search_in_a_large_account_reads_the_trigram_indexes() {
    let database = fresh_postgres_database().await;
    let db = store::connect(database.url()).await.unwrap();
    store::migrate(&db).await.unwrap();
    let now: DateTime<Utc> = "2026-11-29T09:00:00Z".parse().unwrap();
    let account = create_account(&db, "Acme", "admin@acme.example", "Alice Admin", now)
        .await
        .id;
    // Over a small account, walking its members is the cheaper plan; the indexes are for
    // accounts whose members outnumber a search's matches by far.
    for sql in [
        "INSERT INTO users (id, email, name, name_lower, language, activated, \
         two_factor_enabled, created_at) \
         SELECT gen_random_uuid(), 'member' || i || '@example.com', 'Member ' || i, \
         'member ' || i, 'en', true, false, now() FROM generate_series(1, 5000) AS i"
            .to_string(),
        format!(
            "INSERT INTO memberships (id, account_id, user_id, role, cloud_access, status, \
             invited_at, accepted_at, invited_name, invited_name_lower, invited_language, \
             created_at) \
             SELECT gen_random_uuid(), '{account}', id, 1, '[]', 'active', now(), now(), \
             name, name_lower, language, now() \
             FROM users WHERE email LIKE 'member%'"
        ),
        // A tenth of them not yet accepted: search finds those by their invited name.
        "UPDATE memberships SET status = 'invited', accepted_at = NULL, \
         invitation_expires_at = now() + interval '1 day', invited_name = 'Invitee ' || id, \
         invited_name_lower = 'invitee ' || id \
         WHERE user_id IN (SELECT id FROM users WHERE email LIKE 'member%0@example.com')"
            .to_string(),
        // As autovacuum would: statistics, and the new index entries merged from GIN's
        // pending list into the index proper.
        "VACUUM ANALYZE users".to_string(),
        "VACUUM ANALYZE memberships".to_string(),
    ] {
        db.execute_unprepared(&sql).await.unwrap();
    }
    // The statement ListUsers sends for a search, as sent.
    let (store, captured) = capturing(&db);
    // A part of the email or name, and (shorter than 3 characters) a prefix.
    for text in ["lovelace", "zq"] {
        let filter = MemberFilter {
            search: Some((text.into(), None)),
            ..MemberFilter::default()
        };
        let found = store
            .list_members(account, &filter, None, 51, now)
            .await
            .unwrap();
        assert!(found.is_empty());
        let search = captured
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .expect("the list statement");

        let plan = explain(&db, "EXPLAIN ", search, 0).await;

        assert!(
            plan.contains("ix_users_email_trgm"),
            "{text}; plan:\n{plan}"
        );
        assert!(
            plan.contains("ix_users_name_lower_trgm"),
            "{text}; plan:\n{plan}"
        );
        assert!(
            plan.contains("ix_memberships_invited_name_lower_trgm"),
            "pending members are found by their invited name; {text}; plan:\n{plan}"
        );
    }
}

/// The statements a store call sends, in order.
fn capturing(db: &DatabaseConnection) -> (Store, Arc<Mutex<Vec<Statement>>>) {
    let captured: Arc<Mutex<Vec<Statement>>> = Arc::default();
    let mut probe = db.clone();
    let sink = captured.clone();
    probe.set_metric_callback(move |info| {
        sink.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(info.statement.clone());
    });
    (Store::new(probe), captured)
}

// PostgreSQL reads its trigram indexes (above).
#[tokio::test]
async fn sqlite_search_reads_the_trigram_and_prefix_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("plans.db").display()
    );
    let db = store::connect(&url).await.unwrap();
    store::migrate(&db).await.unwrap();
    let now: DateTime<Utc> = "2026-11-29T09:00:00Z".parse().unwrap();
    let account = create_account(&db, "Acme", "admin@acme.example", "Alice Admin", now)
        .await
        .id;
    let (store, captured) = capturing(&db);
    for (text, indexes) in [
        ("lovelace", &["member_search VIRTUAL TABLE INDEX"][..]),
        (
            "lo",
            &["ix_member_search_rows_email", "ix_member_search_rows_name"][..],
        ),
    ] {
        let filter = MemberFilter {
            search: Some((text.into(), None)),
            ..MemberFilter::default()
        };
        let found = store
            .list_members(account, &filter, None, 51, now)
            .await
            .unwrap();
        assert!(found.is_empty());
        let search = captured
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .expect("the list statement");

        let plan = explain(&db, "EXPLAIN QUERY PLAN ", search, 3).await;

        for index in indexes {
            assert!(plan.contains(index), "{text}: {index}; plan:\n{plan}");
        }
    }
}

#[tokio::test]
async fn counts_of_the_counted_filters_read_the_counters_only() {
    let database = fresh_database().await;
    let db = store::connect(database.url()).await.unwrap();
    store::migrate(&db).await.unwrap();
    let now: DateTime<Utc> = "2026-11-29T09:00:00Z".parse().unwrap();
    let account = create_account(&db, "Acme", "admin@acme.example", "Alice Admin", now)
        .await
        .id;
    let (store, captured) = capturing(&db);
    let filter = MemberFilter {
        status: Some(MemberStatus::Active),
        role: Some(Role::Administrators),
        two_factor_enabled: Some(false),
        ..MemberFilter::default()
    };

    let count = store.count_members(account, &filter, now).await.unwrap();

    assert_eq!((count.members, count.is_lower_bound), (1, false));
    let statements = captured
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    assert_eq!(statements.len(), 1, "{statements:?}");
    assert!(
        statements[0].sql.contains("member_counts"),
        "{statements:?}"
    );
    assert!(!statements[0].sql.contains("memberships"), "{statements:?}");
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

// SQLite plans every statement afresh.
#[tokio::test]
#[ignore = "needs PostgreSQL"]
async fn postgres_list_queries_are_planned_for_their_values_and_the_rest_keep_their_plans() {
    let database = fresh_postgres_database().await;
    let store = Store::connect(database.url()).await.unwrap();
    assert_eq!(
        plan_cache_mode(store.list_connection()).await,
        "force_custom_plan"
    );
    assert_eq!(plan_cache_mode(store.read_connection()).await, "auto");
    assert_eq!(plan_cache_mode(store.connection()).await, "auto");
    store.close().await.unwrap();
}

async fn plan_cache_mode(db: &impl ConnectionTrait) -> String {
    let show = Statement::from_string(DatabaseBackend::Postgres, "SHOW plan_cache_mode");
    let row = db.query_one_raw(show).await.unwrap().unwrap();
    row.try_get_by_index::<String>(0).unwrap()
}
