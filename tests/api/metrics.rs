//! Prometheus metrics at `/metrics`: the text parses, the call counters move with calls and
//! carry the code the client got (those the layers answer too), and the outbox gauges and
//! the email and invitation counters follow the mail path.

use std::time::Duration;

use chrono::TimeDelta;
use http::uri::PathAndQuery;
use prometheus_parse::{LineInfo, Scrape, Value};
use sea_orm::{
    ConnectionTrait, DatabaseBackend, DatabaseTransaction, DbBackend, Statement, TransactionTrait,
};
use tonic::{Code, Request, transport::Channel};
use usermgmt::{grpc::pb, notifier::Outcome, store};

use crate::helpers::{
    TestApp, fresh_database, invite_request, spawn_app, spawn_app_with, with_token,
};

/// Every line of the answer is a comment the format knows or a sample; then the parsed
/// samples.
async fn scrape(app: &TestApp) -> Scrape {
    let response = reqwest::get(format!("http://{}/metrics", app.metrics_addr))
        .await
        .expect("/metrics answers");
    assert!(response.status().is_success(), "{response:?}");
    let content_type = response.headers()[reqwest::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    assert!(text.ends_with("# EOF\n"), "{text}");
    for line in text.lines() {
        let known_comment = ["# HELP ", "# TYPE ", "# UNIT ", "# EOF"]
            .iter()
            .any(|prefix| line.starts_with(prefix));
        assert!(
            known_comment || matches!(LineInfo::parse(line), LineInfo::Sample { .. }),
            "not Prometheus text: {line:?}"
        );
    }
    Scrape::parse(text.lines().map(|line| Ok(line.to_string()))).expect("Prometheus text")
}

/// The value of the sample `name` whose labels include `labels`; 0 when there is none.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let matching: Vec<_> = scrape
        .samples
        .iter()
        .filter(|sample| sample.metric == name)
        .filter(|sample| {
            labels
                .iter()
                .all(|(key, value)| sample.labels.get(key) == Some(value))
        })
        .collect();
    assert!(matching.len() <= 1, "{name} {labels:?}: {matching:?}");
    matching.first().map_or(0.0, |sample| match &sample.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        other => panic!("{name} is not a number: {other:?}"),
    })
}

fn handled(scrape: &Scrape, method: &str, code: &str) -> f64 {
    value(
        scrape,
        "grpc_server_handled_total",
        &[
            ("grpc_type", "unary"),
            ("grpc_service", "usermgmt.v1.UserManagement"),
            ("grpc_method", method),
            ("grpc_code", code),
        ],
    )
}

/// Holds what InviteUser needs until the transaction is dropped: on SQLite the single
/// writer connection, on PostgreSQL the memberships table.
async fn hold_writes(app: &TestApp) -> DatabaseTransaction {
    let held = app.db.begin().await.expect("a transaction");
    if held.get_database_backend() == DbBackend::Postgres {
        held.execute_unprepared("LOCK TABLE memberships IN ACCESS EXCLUSIVE MODE")
            .await
            .expect("the memberships table locked");
    }
    held
}

#[tokio::test]
async fn call_counters_move_with_calls_and_carry_the_code_even_when_a_layer_answers() {
    let app = spawn_app_with(false).await;
    let before = scrape(&app).await;

    app.invite("Ok", "ok@example.com", pb::Role::Users)
        .await
        .unwrap();
    // The handler refuses it.
    let invalid = app
        .invite("Bad", "not an email", pb::Role::Users)
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), Code::InvalidArgument);
    // The credential layer refuses it.
    let anonymous = app
        .users
        .clone()
        .get_user(Request::new(pb::GetUserRequest {
            account_id: app.account_id.to_string(),
            user_id: app.admin_id.to_string(),
        }))
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    // The deadline layer ends it.
    let held = hold_writes(&app).await;
    let mut late = with_token(
        &app.admin_token,
        invite_request(app.account_id, "Late", "late@example.com", pb::Role::Users),
    );
    late.set_timeout(Duration::from_millis(300));
    let late = app.users.clone().invite_user(late).await.unwrap_err();
    held.rollback().await.unwrap();
    assert!(
        matches!(late.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{late:?}"
    );

    let after = scrape(&app).await;
    let moved =
        |method: &str, code: &str| handled(&after, method, code) - handled(&before, method, code);
    assert_eq!(moved("InviteUser", "OK"), 1.0);
    assert_eq!(moved("InviteUser", "InvalidArgument"), 1.0);
    assert_eq!(moved("GetUser", "Unauthenticated"), 1.0);
    assert_eq!(moved("InviteUser", "DeadlineExceeded"), 1.0);
    let started = |scrape: &Scrape| {
        value(
            scrape,
            "grpc_server_started_total",
            &[("grpc_method", "InviteUser")],
        )
    };
    assert_eq!(started(&after) - started(&before), 3.0);
    // The latency histogram counts the same calls, with buckets up to +Inf.
    let histogram = after
        .samples
        .iter()
        .find(|sample| {
            sample.metric == "grpc_server_handling_seconds"
                && sample.labels.get("grpc_method") == Some("InviteUser")
                && sample.labels.get("grpc_code") == Some("OK")
        })
        .expect("a latency histogram");
    let Value::Histogram(buckets) = &histogram.value else {
        panic!("{histogram:?}")
    };
    let infinite = buckets.last().expect("buckets");
    assert!(infinite.less_than.is_infinite());
    assert_eq!(infinite.count, 1.0);
    assert_eq!(
        value(
            &after,
            "grpc_server_handling_seconds_count",
            &[("grpc_method", "InviteUser"), ("grpc_code", "OK")]
        ),
        1.0
    );
}

#[tokio::test]
async fn a_path_that_is_no_method_is_counted_under_unknown_not_under_its_name() {
    let app = spawn_app_with(false).await;
    let channel = Channel::from_shared(format!("http://{}", app.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let status = grpc
        .unary::<(), (), _>(
            Request::new(()),
            PathAndQuery::from_static("/nosuch.v1.Service/NoSuchMethod"),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);
    let scrape = scrape(&app).await;
    let unknown = [
        ("grpc_type", "unary"),
        ("grpc_service", "unknown"),
        ("grpc_method", "unknown"),
        ("grpc_code", "Unimplemented"),
    ];
    assert_eq!(value(&scrape, "grpc_server_handled_total", &unknown), 1.0);
    assert!(
        !scrape
            .samples
            .iter()
            .any(|sample| sample.labels.get("grpc_method") == Some("NoSuchMethod"))
    );
}

#[tokio::test]
async fn outbox_gauges_and_email_counters_follow_an_email_through_a_relay_outage() {
    let app = spawn_app().await;
    let before = scrape(&app).await;
    assert_eq!(value(&before, "usermgmt_outbox_emails_waiting", &[]), 0.0);
    assert_eq!(
        value(&before, "usermgmt_outbox_oldest_waiting_age_seconds", &[]),
        0.0
    );
    assert!(
        before
            .samples
            .iter()
            .any(|sample| sample.metric == "usermgmt_db_connections_in_use"
                && sample.labels.get("pool") == Some("writer")),
        "the pool's use is reported"
    );

    app.mail.set_down(true);
    app.invite("Waiting", "waiting@example.com", pb::Role::Users)
        .await
        .unwrap();
    app.wait_deliveries(1, Outcome::WillRetry).await;
    // Past its retry delay: tried and failed once more.
    app.advance(TimeDelta::seconds(90));
    app.wait_deliveries(1, Outcome::WillRetry).await;
    let waiting = scrape(&app).await;
    assert_eq!(value(&waiting, "usermgmt_outbox_emails_waiting", &[]), 1.0);
    assert_eq!(value(&waiting, "usermgmt_outbox_emails_failed", &[]), 0.0);
    assert_eq!(
        value(&waiting, "usermgmt_outbox_oldest_waiting_age_seconds", &[]),
        90.0
    );
    assert_eq!(
        value(&waiting, "usermgmt_email_send_failures_total", &[]),
        2.0
    );
    assert_eq!(value(&waiting, "usermgmt_emails_sent_total", &[]), 0.0);
    assert_eq!(
        value(&waiting, "usermgmt_invitations_created_total", &[]),
        1.0
    );

    app.mail.set_down(false);
    app.advance(TimeDelta::minutes(2));
    app.wake_notifier();
    app.wait_deliveries(1, Outcome::Sent).await;
    let sent = scrape(&app).await;
    assert_eq!(value(&sent, "usermgmt_outbox_emails_waiting", &[]), 0.0);
    assert_eq!(
        value(&sent, "usermgmt_outbox_oldest_waiting_age_seconds", &[]),
        0.0
    );
    assert_eq!(value(&sent, "usermgmt_emails_sent_total", &[]), 1.0);

    let token = app.mail.mails()[0].token();
    app.accept(&token, Some("a long enough password"))
        .await
        .unwrap();
    let accepted = scrape(&app).await;
    assert_eq!(
        value(&accepted, "usermgmt_invitations_accepted_total", &[]),
        1.0
    );
}

#[tokio::test]
async fn an_email_given_up_counts_as_failed() {
    let app = spawn_app_with(false).await;
    let user = app
        .invite("Twice", "twice@example.com", pb::Role::Users)
        .await
        .unwrap();
    // The resend supersedes the first email: it can no longer be sent.
    app.advance(TimeDelta::minutes(2));
    app.resend(&user.id).await.unwrap();
    let scrape = scrape(&app).await;
    assert_eq!(value(&scrape, "usermgmt_outbox_emails_failed", &[]), 1.0);
    assert_eq!(value(&scrape, "usermgmt_outbox_emails_waiting", &[]), 1.0);
    assert_eq!(
        value(&scrape, "usermgmt_invitations_created_total", &[]),
        2.0
    );
}

/// The plan of `statement`: PostgreSQL's `EXPLAIN` lines or SQLite's `EXPLAIN QUERY PLAN`
/// details.
async fn plan(db: &impl ConnectionTrait, statement: Statement) -> String {
    let (prefix, column) = match db.get_database_backend() {
        DatabaseBackend::Postgres => ("EXPLAIN ", 0),
        _ => ("EXPLAIN QUERY PLAN ", 3),
    };
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
async fn the_outbox_gauges_read_partial_indexes_not_the_whole_outbox() {
    let database = fresh_database().await;
    let db = store::connect(database.url()).await.unwrap();
    store::migrate(&db).await.unwrap();
    let [waiting, failed] = store::stats::outbox_stats_statements(db.get_database_backend());
    let txn = db.begin().await.unwrap();
    if txn.get_database_backend() == DatabaseBackend::Postgres {
        // An empty table is cheapest to scan whole; ask what the planner does once a scan
        // of the table is the expensive choice, as it is once the outbox has grown.
        txn.execute_unprepared("SET LOCAL enable_seqscan = off")
            .await
            .unwrap();
    }
    let waiting = plan(&txn, waiting).await;
    let failed = plan(&txn, failed).await;
    txn.rollback().await.unwrap();
    // Either partial index of the waiting rows will do.
    assert!(
        waiting.contains("ix_outbox_waiting") || waiting.contains("ix_outbox_lease"),
        "plan:\n{waiting}"
    );
    assert!(failed.contains("ix_outbox_dead"), "plan:\n{failed}");
}

#[tokio::test]
async fn calls_shed_beyond_the_in_flight_limit_count_as_resource_exhausted() {
    let app = spawn_app_with(false)
        .await
        .restart_with_server(|server| server.max_in_flight = 1)
        .await;
    let before = scrape(&app).await;
    let held = hold_writes(&app).await;
    let spawn_held = || {
        let (mut users, request) = (
            app.users.clone(),
            with_token(
                &app.admin_token,
                invite_request(app.account_id, "Held", "held@example.com", pb::Role::Users),
            ),
        );
        tokio::spawn(async move { users.invite_user(request).await })
    };
    let mut held_call = spawn_held();
    // Calls without a credential, until the held call has taken the only place: until then
    // they are admitted and refused by the credential layer.
    let (mut refused, mut shed) = (0.0, 0.0);
    let mut probe = app.users.clone();
    while shed < 3.0 {
        // Without probes in the way, the held call takes the place (or it came while a
        // probe had it, was shed, and goes again).
        if let Ok(answer) = tokio::time::timeout(Duration::from_millis(50), &mut held_call).await {
            let status = answer.unwrap().unwrap_err();
            assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
            held_call = spawn_held();
            continue;
        }
        let status = probe
            .get_user(Request::new(pb::GetUserRequest {
                account_id: app.account_id.to_string(),
                user_id: app.admin_id.to_string(),
            }))
            .await
            .unwrap_err();
        match status.code() {
            Code::ResourceExhausted => shed += 1.0,
            Code::Unauthenticated => refused += 1.0,
            other => panic!("unexpected {other:?}: {status:?}"),
        }
        assert!(refused < 10_000.0, "the held call never took its place");
        tokio::task::yield_now().await;
    }
    held.rollback().await.unwrap();
    held_call.await.unwrap().expect("the held call completes");

    let after = scrape(&app).await;
    let moved =
        |method: &str, code: &str| handled(&after, method, code) - handled(&before, method, code);
    assert_eq!(moved("GetUser", "ResourceExhausted"), shed);
    assert_eq!(moved("GetUser", "Unauthenticated"), refused);
    assert_eq!(moved("InviteUser", "OK"), 1.0);
}
