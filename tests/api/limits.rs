//! The limits that keep one caller from starving the rest: deadlines, the server's in-flight
//! bound, message size, the size of cloud access, and credentials refused before any
//! database work.

use std::time::Duration;

use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait, QueryFilter,
    QuerySelect, TransactionTrait, sea_query::Expr,
};
use tonic::{Code, Request, transport::Channel};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use usermgmt::{
    config::Settings,
    domain::{ApiTokenSecret, Role, SecretHash},
    grpc::pb::{self, user_management_client::UserManagementClient},
    service::UNKNOWN_TOKEN_REMEMBERED_FOR,
    store::entity,
};

use crate::helpers::{
    TestApp, bad_fields, invite_request, spawn_app, spawn_app_with, with_bearer, with_token,
};

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

/// Ends what [`hold_writes`] held.
async fn release(held: DatabaseTransaction) {
    held.rollback().await.expect("the held transaction ends");
}

fn invite(app: &TestApp, email: &str) -> Request<pb::InviteUserRequest> {
    with_token(
        &app.admin_token,
        invite_request(app.account_id, "Held", email, pb::Role::Users),
    )
}

/// A client that sends `grpc-timeout` without enforcing it itself, as tonic's channel does,
/// so that the test sees what the server answers.
fn client_without_own_timer(
    app: &TestApp,
) -> UserManagementClient<Client<HttpConnector, tonic::body::Body>> {
    let http = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let origin = format!("http://{}", app.addr).parse().expect("a URI");
    UserManagementClient::with_origin(http, origin)
}

fn get_admin(app: &TestApp) -> pb::GetUserRequest {
    pb::GetUserRequest {
        account_id: app.account_id.to_string(),
        user_id: app.admin_id.to_string(),
    }
}

async fn health(app: &TestApp) -> ServingStatus {
    let channel = Channel::from_shared(format!("http://{}", app.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: "usermgmt.v1.UserManagement".into(),
        })
        .await
        .expect("health answers")
        .into_inner()
        .status()
}

#[tokio::test]
async fn a_call_past_its_grpc_timeout_ends_with_deadline_exceeded() {
    let app = spawn_app().await;
    let held = hold_writes(&app).await;
    let mut request = invite(&app, "late@example.com");
    request.set_timeout(Duration::from_millis(200));
    let status = client_without_own_timer(&app)
        .invite_user(request)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(crate::helpers::reason(&status), "DEADLINE_EXCEEDED");
    release(held).await;

    // The abandoned call changed nothing, and the server goes on.
    let again = app
        .invite("Late", "late@example.com", pb::Role::Users)
        .await
        .unwrap();
    assert_eq!(again.email, "late@example.com");
}

#[tokio::test]
async fn a_client_deadline_longer_than_the_server_maximum_is_cut_to_it() {
    let app = spawn_app_with(false)
        .await
        .restart_with_server(|server| server.request_timeout = Duration::from_millis(200))
        .await;
    let held = hold_writes(&app).await;
    let mut request = invite(&app, "late@example.com");
    request.set_timeout(Duration::from_secs(3600));
    let status = client_without_own_timer(&app)
        .invite_user(request)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    release(held).await;
}

#[tokio::test]
async fn beyond_the_in_flight_limit_calls_are_shed_at_once_and_health_still_answers() {
    let app = spawn_app_with(false)
        .await
        .restart_with_server(|server| server.max_in_flight = 1)
        .await;
    let held = hold_writes(&app).await;
    let spawn_held = || {
        let (mut users, request) = (app.users.clone(), invite(&app, "held@example.com"));
        tokio::spawn(async move { users.invite_user(request).await })
    };
    let mut held_call = spawn_held();
    // Wait until the held call has taken the only place: until then a call without a
    // credential is admitted and refused at once.
    let mut probe = app.users.clone();
    let mut admitted = 0;
    loop {
        // Without probes in the way, the held call takes the place (or it came while a
        // probe had it, was shed, and goes again).
        if let Ok(answer) = tokio::time::timeout(Duration::from_millis(50), &mut held_call).await {
            let shed = answer.unwrap().unwrap_err();
            assert_eq!(shed.code(), Code::ResourceExhausted, "{shed:?}");
            held_call = spawn_held();
            continue;
        }
        let status = probe
            .get_user(Request::new(get_admin(&app)))
            .await
            .unwrap_err();
        match status.code() {
            Code::ResourceExhausted => break,
            Code::Unauthenticated => admitted += 1,
            other => panic!("unexpected {other:?}: {status:?}"),
        }
        assert!(admitted < 10_000, "the held call never took its place");
        tokio::task::yield_now().await;
    }

    let shed = app
        .users
        .clone()
        .get_user(with_token(&app.admin_token, get_admin(&app)))
        .await
        .unwrap_err();
    assert_eq!(shed.code(), Code::ResourceExhausted, "{shed:?}");
    assert_eq!(crate::helpers::reason(&shed), "SERVER_BUSY");
    assert_eq!(health(&app).await, ServingStatus::Serving);

    release(held).await;
    let invited = held_call.await.unwrap().expect("the held call completes");
    assert_eq!(invited.into_inner().user.unwrap().email, "held@example.com");
    let user = app
        .users
        .clone()
        .get_user(with_token(&app.admin_token, get_admin(&app)))
        .await
        .expect("calls are admitted again");
    assert_eq!(user.into_inner().user.unwrap().id, app.admin_id.to_string());
}

#[tokio::test]
async fn malformed_credentials_are_refused_without_touching_the_database() {
    let app = spawn_app().await;
    // Every token lookup now fails inside the database. (PostgreSQL's prepared statements
    // follow a renamed table, so there it goes.)
    let away = match app.db.get_database_backend() {
        DbBackend::Postgres => "DROP TABLE api_tokens CASCADE",
        _ => "ALTER TABLE api_tokens RENAME TO api_tokens_away",
    };
    app.db.execute_unprepared(away).await.unwrap();
    let mut users = app.users.clone();
    let unknown = ApiTokenSecret::generate();
    let failing = users
        .get_user(with_token(unknown.expose(), get_admin(&app)))
        .await
        .unwrap_err();
    assert_eq!(
        failing.code(),
        Code::Internal,
        "a lookup fails: {failing:?}"
    );

    let malformed_tokens = [
        "umk_short".to_string(),
        format!("{}x", unknown.expose()),
        format!("umk_{}", "*".repeat(43)),
        "x".repeat(4000),
    ];
    for token in &malformed_tokens {
        let status = users
            .get_user(with_token(token, get_admin(&app)))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{token}: {status:?}");
    }
    for jwt in ["one.two", "a.b.c.d", "a.b.", "not a jwt", "a.b!.c"] {
        let status = users
            .get_user(with_bearer(jwt, get_admin(&app)))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{jwt}: {status:?}");
    }
}

#[tokio::test]
async fn an_unknown_token_is_remembered_briefly_and_works_once_it_exists_and_the_entry_expires() {
    let app = spawn_app().await;
    let secret = ApiTokenSecret::generate();
    let call = || {
        let mut users = app.users.clone();
        let request = with_token(secret.expose(), get_admin(&app));
        async move { users.get_user(request).await }
    };
    let unknown = call().await.unwrap_err();
    assert_eq!(unknown.code(), Code::Unauthenticated);

    // The token comes to exist with that very secret (a real token's secret is drawn when it
    // is created, so it was never presented before; this one was, on purpose).
    let issued = app
        .issue_token(app.account_id, app.admin_id, Role::Administrators, None)
        .await;
    let updated = entity::api_token::Entity::update_many()
        .col_expr(
            entity::api_token::Column::SecretHash,
            Expr::value(secret.hash().into_string()),
        )
        .filter(entity::api_token::Column::SecretHash.eq(SecretHash::of(&issued).into_string()))
        .exec(&app.db)
        .await
        .unwrap();
    assert_eq!(updated.rows_affected, 1);

    let remembered = call().await.unwrap_err();
    assert_eq!(remembered.code(), Code::Unauthenticated, "still remembered");
    app.advance(UNKNOWN_TOKEN_REMEMBERED_FOR);
    let user = call()
        .await
        .expect("the token works once the entry expired");
    assert_eq!(user.into_inner().user.unwrap().id, app.admin_id.to_string());
}

#[tokio::test]
async fn a_request_larger_than_the_message_limit_is_refused_unread() {
    let app = spawn_app().await;
    let mut users = app.users.clone();
    let sized = |bytes: usize| {
        let request = invite_request(
            app.account_id,
            &"n".repeat(bytes),
            "big@example.com",
            pb::Role::Users,
        );
        with_token(&app.admin_token, request)
    };
    // Under the default 4 MiB the request is read, and its name refused.
    let read = users.invite_user(sized(1 << 20)).await.unwrap_err();
    assert_eq!(bad_fields(&read), ["name"]);
    let refused = users.invite_user(sized(5 << 20)).await.unwrap_err();
    assert_eq!(refused.code(), Code::OutOfRange, "{refused:?}");
}

#[tokio::test]
async fn cloud_access_naming_more_than_a_thousand_projects_is_refused() {
    let app = spawn_app().await;
    let projects = |n: i64| pb::CloudAccess {
        scope: Some(pb::cloud_access::Scope::Projects(pb::ProjectAccess {
            roles: (1..=n)
                .map(|project_id| pb::ProjectRole {
                    project_id,
                    role: pb::CloudRole::Observer as i32,
                })
                .collect(),
        })),
    };
    let mut request = invite_request(app.account_id, "Many", "many@example.com", pb::Role::Users);
    request.cloud_access = Some(projects(1001));
    let status = app
        .users
        .clone()
        .invite_user(with_token(&app.admin_token, request.clone()))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&status), ["cloud_access.projects.roles"]);
    assert!(status.message().contains("at most 1000"), "{status:?}");
    assert_eq!(app.count_users().await, 1, "nothing was stored");

    request.cloud_access = Some(projects(1000));
    app.users
        .clone()
        .invite_user(with_token(&app.admin_token, request))
        .await
        .expect("a thousand projects are allowed");
}

/// Holds the account's row, as a change of roles does, until the transaction is dropped:
/// InviteUser waits for it, reads do not. (On SQLite the held transaction is the single
/// writer connection.)
async fn hold_account(app: &TestApp) -> DatabaseTransaction {
    let held = app.db.begin().await.expect("a transaction");
    if held.get_database_backend() == DbBackend::Postgres {
        entity::account::Entity::find_by_id(app.account_id)
            .lock_exclusive()
            .one(&held)
            .await
            .expect("the account's row locked");
    }
    held
}

/// GetUser of the administrator by `token`, giving up after 100 ms.
async fn get_admin_briefly(app: &TestApp, token: &str) -> Result<(), tonic::Status> {
    let mut request = with_token(token, get_admin(app));
    request.set_timeout(Duration::from_millis(100));
    client_without_own_timer(app)
        .get_user(request)
        .await
        .map(drop)
}

#[tokio::test]
async fn a_caller_beyond_its_share_waits_behind_itself_while_other_callers_go_on() {
    let app = spawn_app_with(false)
        .await
        .restart_with_server(|server| {
            server.max_calls_per_caller = 1;
            server.max_queued_per_caller = 1;
        })
        .await;
    let other = app
        .issue_token(app.account_id, app.admin_id, Role::Administrators, None)
        .await;
    // Both tokens record their use now, so that the reads below write nothing. (Without a
    // brief deadline: on a busy machine this first read and its write may take a while.)
    for token in [&app.admin_token, &other] {
        app.users
            .clone()
            .get_user(with_token(token, get_admin(&app)))
            .await
            .expect("a read");
    }

    let held = hold_account(&app).await;
    let (mut users, request) = (app.users.clone(), invite(&app, "held@example.com"));
    let running = tokio::spawn(async move { users.invite_user(request).await });
    // A read the database would answer at once waits behind the held invitation until its
    // deadline, once the invitation has taken the caller's one place.
    let mut answered = 0;
    let late = loop {
        match get_admin_briefly(&app, &app.admin_token).await {
            Ok(()) => answered += 1,
            Err(status) => break status,
        }
        assert!(
            answered < 10_000,
            "the held call never took the caller's share"
        );
    };
    assert_eq!(late.code(), Code::DeadlineExceeded, "{late:?}");

    // One more call of the caller waits in its queue; the next is refused at once.
    let (mut users, request) = (
        app.users.clone(),
        with_token(&app.admin_token, get_admin(&app)),
    );
    let queued = tokio::spawn(async move { users.get_user(request).await });
    let busy = loop {
        let status = get_admin_briefly(&app, &app.admin_token)
            .await
            .expect_err("the caller's share is taken");
        if status.code() != Code::DeadlineExceeded {
            break status;
        }
    };
    assert_eq!(busy.code(), Code::ResourceExhausted, "{busy:?}");
    assert_eq!(crate::helpers::reason(&busy), "CALLER_BUSY");

    // Another credential of the same account is served meanwhile.
    // (Given seconds, not 100 ms: on PostgreSQL it may open a new connection.)
    let mut request = with_token(&other, get_admin(&app));
    request.set_timeout(Duration::from_secs(5));
    client_without_own_timer(&app)
        .get_user(request)
        .await
        .expect("another caller is not queued behind the first");

    release(held).await;
    running.await.unwrap().expect("the held call completes");
    queued
        .await
        .unwrap()
        .expect("the queued call runs in its turn");
}

#[tokio::test]
async fn a_refused_credential_is_answered_late_and_keeps_its_callers_place_meanwhile() {
    // The defaults: 100 ms late, four calls of one caller at a time.
    let defaults = Settings::for_database("sqlite::memory:").server;
    let app = spawn_app_with(false)
        .await
        .restart_with_server(|server| {
            server.unauthenticated_delay = defaults.unauthenticated_delay;
            server.max_calls_per_caller = defaults.max_calls_per_caller;
        })
        .await;
    assert_eq!(defaults.unauthenticated_delay, Duration::from_millis(100));
    assert_eq!(defaults.max_calls_per_caller, 4);
    let junk = format!("{}{}", ApiTokenSecret::PREFIX, "A".repeat(43));
    let started = std::time::Instant::now();
    let calls = (0..8).map(|_| {
        let mut users = app.users.clone();
        let request = with_token(&junk, get_admin(&app));
        async move { users.get_user(request).await }
    });
    for answer in futures::future::join_all(calls).await {
        assert_eq!(answer.unwrap_err().code(), Code::Unauthenticated);
    }
    // Eight refusals, four at a time, each at least 100 ms late.
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(200), "{elapsed:?}");
}

#[tokio::test]
async fn calls_answered_late_for_their_credential_leave_the_in_flight_limit_to_others() {
    let app = spawn_app_with(false)
        .await
        .restart_with_server(|server| {
            server.max_in_flight = 1;
            server.unauthenticated_delay = Duration::from_secs(5);
        })
        .await;
    // A well-formed token nobody issued, a new one each call: a new caller each time.
    let junk_calls: Vec<_> = (0..4)
        .map(|_| {
            let junk = ApiTokenSecret::generate().expose().to_string();
            let (mut users, request) = (app.users.clone(), with_token(&junk, get_admin(&app)));
            tokio::spawn(async move { users.get_user(request).await })
        })
        .collect();
    // Each is refused after one lookup, then waits out its delay holding none of the
    // server's one place: a valid call gets it before any of them is answered.
    loop {
        assert!(
            junk_calls.iter().all(|call| !call.is_finished()),
            "a refusal was answered before the valid call got the server's place"
        );
        match app
            .users
            .clone()
            .get_user(with_token(&app.admin_token, get_admin(&app)))
            .await
        {
            Ok(_) => break,
            Err(status) => {
                assert_eq!(crate::helpers::reason(&status), "SERVER_BUSY", "{status:?}");
                tokio::task::yield_now().await;
            }
        }
    }
    for call in junk_calls {
        call.abort();
    }
}
