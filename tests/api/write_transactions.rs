//! PostgreSQL's transactions that write run on connections that go back to their pool
//! without a round trip. A transaction that ends without its COMMIT — refused by a rule, or
//! given up half-way at its call's deadline — must not leave a transaction open on the
//! database (its locks would stop every change of the account) nor a connection that
//! answers a later call with what the abandoned statement returned.

use std::time::Duration;

use sea_orm::{ConnectionTrait, TransactionTrait};
use tonic::Code;
use usermgmt::grpc::pb;

use crate::health::{expect_given_up, wait_for_blocked_calls, wait_for_sessions};
use crate::helpers::{TestApp, invite_request, spawn_app, with_token};

const PATIENCE: Duration = Duration::from_secs(10);

/// Waits until none of the database's other sessions on the test's database is inside a
/// transaction or waiting for a lock.
async fn wait_until_no_transaction_is_open(app: &TestApp) {
    wait_for_sessions(
        app,
        "state LIKE 'idle in transaction%' OR wait_event_type = 'Lock'",
        |open| open == 0,
        "transactions stayed open after their calls ended",
    )
    .await;
}

fn invite(app: &TestApp, name: &str, email: &str) -> tonic::Request<pb::InviteUserRequest> {
    with_token(
        &app.admin_token,
        invite_request(app.account_id, name, email, pb::Role::Users),
    )
}

/// UpdateUser of a role takes the account's row exclusively: it waits for any transaction
/// that still holds it in share mode.
async fn make_engineer(app: &TestApp, user_id: &str) -> Result<pb::User, tonic::Status> {
    let mut request = with_token(
        &app.admin_token,
        pb::UpdateUserRequest {
            role: Some(pb::Role::Engineers as i32),
            ..app.update_request(user_id)
        },
    );
    request.set_timeout(PATIENCE);
    app.users
        .clone()
        .update_user(request)
        .await
        .map(|response| response.into_inner().user.expect("a user"))
}

/// Invites `n` members and makes each an engineer: writes that must work on whichever
/// connections the pool gives them. Their emails.
async fn write_members(app: &TestApp, n: usize) -> Vec<String> {
    let mut invited = Vec::new();
    for i in 0..n {
        let user = app
            .invite("Kept", &format!("kept{i}@example.com"), pb::Role::Users)
            .await
            .expect("InviteUser after the earlier writes");
        assert_eq!(user.email, format!("kept{i}@example.com"));
        let engineer = make_engineer(app, &user.id)
            .await
            .expect("UpdateUser after the earlier writes");
        assert_eq!(engineer.id, user.id);
        assert_eq!(engineer.role, pb::Role::Engineers as i32);
        invited.push(user.email);
    }
    invited
}

#[tokio::test]
#[ignore = "needs PostgreSQL"]
async fn refused_writes_leave_no_transaction_open() {
    let app = spawn_app().await;
    let ada = app
        .invite("Ada", "ada@example.com", pb::Role::Users)
        .await
        .unwrap();

    // Inviting a member again is refused after the transaction has locked the account and
    // read its facts: each transaction ends without COMMIT.
    let mut refused = Vec::new();
    for _ in 0..8 {
        let mut users = app.users.clone();
        let request = invite(&app, "Ada", "ada@example.com");
        refused.push(tokio::spawn(
            async move { users.invite_user(request).await },
        ));
    }
    for call in refused {
        let status = call.await.unwrap().expect_err("Ada is a member already");
        assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
    }

    wait_until_no_transaction_is_open(&app).await;
    let engineer = make_engineer(&app, &ada.id)
        .await
        .expect("the account's row is free");
    assert_eq!(engineer.role, pb::Role::Engineers as i32);
    app.stop().await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL"]
async fn writes_cut_short_by_their_deadline_leave_no_transaction_and_no_stray_connection() {
    let app = spawn_app().await;

    // The test's transaction holds the members' table: each invitation's transaction waits
    // for it after locking the account.
    let lock = app.db.begin().await.unwrap();
    lock.execute_unprepared("LOCK TABLE memberships IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    const ABANDONED: usize = 4;
    let mut abandoned = Vec::new();
    for i in 0..ABANDONED {
        let mut users = app.users.clone();
        let mut request = invite(&app, "Gone", &format!("gone{i}@example.com"));
        request.set_timeout(Duration::from_secs(2));
        abandoned.push(tokio::spawn(
            async move { users.invite_user(request).await },
        ));
    }
    wait_for_blocked_calls(&app, ABANDONED as i64).await;
    expect_given_up(abandoned).await;
    // The database now runs the abandoned statements, for connections nobody reads.
    lock.rollback().await.unwrap();
    wait_until_no_transaction_is_open(&app).await;

    // Later writes work, whichever connection they are given, and none of the abandoned
    // invitations was committed.
    let invited = write_members(&app, 3 * ABANDONED).await;
    let listed = app
        .users
        .clone()
        .list_users(with_token(
            &app.admin_token,
            pb::ListUsersRequest {
                account_id: app.account_id.to_string(),
                page_size: 100,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let emails: Vec<&str> = listed
        .users
        .iter()
        .map(|user| user.email.as_str())
        .collect();
    assert!(
        !emails.iter().any(|email| email.starts_with("gone")),
        "an abandoned invitation was committed: {emails:?}"
    );
    for email in &invited {
        assert!(emails.contains(&email.as_str()), "{email} is listed");
    }
    app.stop().await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL"]
async fn statements_the_database_refuses_mid_transaction_leave_connections_in_step() {
    let app = spawn_app().await;
    // Concurrent invitations of one new email: those that lose the race meet the unique
    // email inside their transaction (the database refuses the INSERT), retry, and are
    // refused as a member already.
    let attempts = (0..8).map(|_| app.invite("Ada", "ada@example.com", pb::Role::Users));
    let results = futures::future::join_all(attempts).await;
    assert_eq!(
        results.iter().filter(|result| result.is_ok()).count(),
        1,
        "{results:?}"
    );
    wait_until_no_transaction_is_open(&app).await;

    // The connections that carried the refused statements serve the next writes.
    write_members(&app, 16).await;
    app.stop().await;
}
